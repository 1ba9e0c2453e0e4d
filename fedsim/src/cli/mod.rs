//! The command line: what people type, one file per subcommand, each returning an [`Exit`].
//! The library does the work; this wing parses, prints and decides the exit code (in
//! [`exit`], the one table of them).

mod bench;
mod check;
pub mod exit;
mod fleet;
mod logs;
mod prep;
mod probe;
mod report;
mod run;
mod validate;
mod vm;

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use clap::{Parser, Subcommand};

use fedsim::run::{RunError, RunOptions};
use fedsim::scenario::Scenario;

pub use exit::{Exit, Outcome};

#[derive(Parser)]
#[command(
    name = "fedsim",
    version,
    about = "Simulate a federated analysis across isolated sites and compare it with the pooled answer",
    after_help = "Documentation: README.md and docs/ (an mdBook: `mdbook build docs`). Exit codes: 0 succeeded, 1 failed, 2 bad input, 3 degraded, 130 cancelled (docs/run-directory.md)."
)]
pub struct Cli {
    /// More log detail on the terminal (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on the terminal.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a scenario end to end: prep, sites, federation, baseline, comparison.
    #[command(
        after_help = "The scenario: docs/scenario.md. What a run writes: docs/run-directory.md. How results are judged: docs/verdicts.md."
    )]
    Run(run::Args),
    /// Write RUN_DIR/report.html again, or with --compare one table across several runs.
    #[command(after_help = "The report: docs/report.md.")]
    Report(report::Args),
    /// Split the data and write each site's bundle (data and .env), nothing more.
    #[command(after_help = "Bundles and where they go: docs/providers.md.")]
    Prep(prep::Args),
    /// Check a scenario and its data without writing anything.
    #[command(after_help = "Every key of a scenario: docs/scenario.md.")]
    Validate(validate::Args),
    /// The differencing attack on each analysis: run twice on the planned partition, once
    /// without one record of a site; which released numbers show that record's values.
    #[command(after_help = "What a site releases, and what the probe finds: docs/privacy.md.")]
    Probe(probe::Args),
    /// Health of every site (ssh, host key, prerequisites, agent, data, credentials, network).
    #[command(after_help = "Providers and their checks: docs/providers.md.")]
    Check(check::Args),
    /// Pull every site's log again and rebuild RUN_DIR/logs/merged.jsonl.
    #[command(after_help = "The logs of a run: docs/run-directory.md.")]
    Logs(logs::Args),
    /// Exit 0 if a TCP connection to ADDR opens within 5 s (used by `check` on the sites).
    #[command(hide = true)]
    Reach(fedsim::agent::cli::ReachArgs),
    /// Run PROGRAM and leave none of its descendants behind (every external step runs so).
    #[command(hide = true)]
    Reap(fedsim::agent::cli::ReapArgs),
    /// Start the agents of the sites an ssh host runs (`[[sites]] count`) and outlive none.
    #[command(hide = true)]
    Supervise(fedsim::agent::cli::SuperviseArgs),
    /// Measure federated vs centralised time and traffic: OLS 1e6 x 50 on 10 sites, svd 2e4 x 2e3 on 5.
    #[command(
        after_help = "What is measured and the numbers: docs/scale.md and docs/measured.md."
    )]
    Bench(bench::Args),
    /// The site image for provider "vm".
    #[command(after_help = "VMs and Vagrant: docs/providers.md.")]
    Vm {
        #[command(subcommand)]
        what: vm::Command,
    },
    /// VMs that stay up between runs (provider "vm" or "vagrant"): boot, look at, stop.
    #[command(after_help = "VMs and Vagrant: docs/providers.md.")]
    Fleet {
        #[command(subcommand)]
        what: fleet::Command,
    },
    /// Run a site agent from its bundle directory (started by fedsim on each site).
    #[command(
        after_help = "What a site runs and sends: docs/architecture.md and docs/privacy.md."
    )]
    Agent(fedsim::agent::cli::AgentArgs),
}

/// Which scenario, where its sites run, and what to change in it.
#[derive(clap::Args)]
pub struct ScenarioArgs {
    /// The scenario file (TOML). Without it: the shipped example, federated OLS on the diabetes
    /// data over 3 local sites, held against statsmodels.
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// A fleet file: its [fleet], [[sites]] and [vm] replace the scenario's (e.g. the
    /// fleet.toml that provision/testfleet.sh writes). Its paths are relative to itself.
    #[arg(long, value_name = "FILE")]
    pub fleet: Option<PathBuf>,
    /// Change a scenario key, e.g. --set partition.sites=5 (repeatable; the value is TOML,
    /// or a string).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl ScenarioArgs {
    /// The scenario file named, or the shipped example (written into fedsim's cache).
    fn path(&self) -> Result<PathBuf, RunError> {
        match &self.config {
            Some(p) => Ok(p.clone()),
            None => fedsim::demo::scenario().map_err(RunError::from),
        }
    }

    /// The scenario, its fleet file laid over it and the `--set` overrides applied.
    pub fn load(&self) -> Result<(PathBuf, Scenario), RunError> {
        let path = self.path()?;
        let sets = self
            .set
            .iter()
            .map(|s| fedsim::scenario::Set::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        let s = Scenario::load_layered(&path, self.fleet.as_deref(), &sets)?;
        Ok((path, s))
    }
}

/// Options every subcommand that shares the terminal gets.
pub struct Global {
    pub quiet: bool,
}

/// Run the subcommand. `agent` and `reap` run as site processes, without the controller's
/// logging and limits.
pub fn dispatch(cli: Cli) -> std::process::ExitCode {
    let g = Global { quiet: cli.quiet };
    match cli.command {
        Command::Reap(a) => fedsim::agent::cli::reap(a),
        Command::Agent(a) => fedsim::agent::cli::agent(a),
        Command::Reach(a) => fedsim::agent::cli::reach(a),
        Command::Supervise(a) => fedsim::agent::cli::supervise(a),
        command => {
            // As servers do: the soft limit on open files up to the hard one (a local site is
            // one descriptor; a thousand of them exceed the usual 1024).
            fedsim::sys::limits::raise_open_files();
            fedsim::logs::init_controller(cli.verbose, cli.quiet);
            let exit = match command {
                Command::Run(a) => run::exec(a, &g),
                Command::Report(a) => report::exec(a),
                Command::Prep(a) => prep::exec(a, &g),
                Command::Validate(a) => validate::exec(a),
                Command::Probe(a) => probe::exec(a),
                Command::Check(a) => check::exec(a, &g),
                Command::Logs(a) => logs::exec(a, &g),
                Command::Bench(a) => bench::exec(a, &g),
                Command::Vm { what } => vm::exec(what, &g),
                Command::Fleet { what } => fleet::exec(what, &g),
                Command::Agent(_)
                | Command::Reap(_)
                | Command::Reach(_)
                | Command::Supervise(_) => {
                    unreachable!("dispatched above")
                }
            };
            exit.into()
        }
    }
}

/// Print a run error and give its exit code.
fn fail(e: &RunError) -> Exit {
    eprintln!("error: {e}");
    Exit::of_error(e)
}

/// Print any error as a failure.
fn failed(e: impl std::fmt::Display) -> Exit {
    eprintln!("error: {e}");
    Exit::Failed
}

/// The run options: where the run goes, and the binary the agents run as.
fn options(out: Option<PathBuf>, g: &Global) -> Result<RunOptions, Exit> {
    match std::env::current_exe().map(fedsim::fleet::package::site_binary) {
        Ok(agent_exe) => Ok(RunOptions {
            out,
            agent_exe,
            progress: !g.quiet,
            by_hand: false,
        }),
        Err(e) => Err(failed(format!(
            "cannot locate the fedsim binary for the agents: {e}"
        ))),
    }
}

/// The scenario file given with `-c`, nothing laid over it.
fn load(path: &std::path::Path) -> Result<Scenario, RunError> {
    Ok(Scenario::load(path)?)
}

/// First Ctrl-C / SIGTERM: cancel the run cleanly. Second: kill everything fedsim started and
/// leave at once.
fn install_signal_handler(g: &Global) {
    let quiet = g.quiet;
    let _ = ctrlc::set_handler(move || {
        if fedsim::sys::cancel::CANCEL.swap(true, Ordering::SeqCst) {
            fedsim::sys::children::kill_all();
            std::process::exit(Exit::Cancelled.code().into());
        }
        if !quiet {
            eprintln!("cancelling: stopping the sites (press Ctrl-C again to force)");
        }
    });
}
