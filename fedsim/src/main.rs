//! The `fedsim` command line: the controller's subcommands and the site agent.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::{Parser, Subcommand};

use fedsim::run::{self, RunError, RunOptions};

#[derive(Parser)]
#[command(
    name = "fedsim",
    version,
    about = "Simulate a federated analysis across isolated sites and compare it with the pooled answer"
)]
struct Cli {
    /// More log detail on the terminal (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors on the terminal.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario end to end: prep, sites, federation, baseline, comparison.
    Run {
        #[command(flatten)]
        scenario: ScenarioArgs,
        /// Run directory (default runs/<name>-<UTC time>/).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also write a JUnit XML file: one test case per comparison check.
        #[arg(long)]
        junit: Option<PathBuf>,
        /// Serve the portal and wait for people to log in, join and start in their browsers
        /// (credentials: RUN_DIR/controller.env and each site's .env), instead of acting for them.
        #[arg(long)]
        by_hand: bool,
    },
    /// Write RUN_DIR/report.html again, or with --compare one table across several runs.
    Report {
        /// Run directories.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Compare the runs in one table and plot (written to --out, default compare.html).
        #[arg(long)]
        compare: bool,
        /// With --compare: the page to write (default compare.html).
        #[arg(long)]
        out: Option<PathBuf>,
        /// With --compare: plot the difference and the time against this scenario key
        /// (repeatable), e.g. --by partition.sites.
        #[arg(long)]
        by: Vec<String>,
        /// With --compare: replace --out if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Split the data and write each site's bundle (data and .env), nothing more.
    Prep {
        #[command(flatten)]
        scenario: ScenarioArgs,
        /// Where the bundles go (default runs/<name>-<UTC time>/); must be new or empty.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check a scenario and its data without writing anything.
    Validate {
        #[command(flatten)]
        scenario: ScenarioArgs,
    },
    /// Health of every site (ssh, host key, prerequisites, agent, data, credentials, network).
    Check {
        #[command(flatten)]
        scenario: ScenarioArgs,
    },
    /// Pull every site's log again and rebuild RUN_DIR/logs/merged.jsonl.
    Logs {
        /// A run directory made by `fedsim run`.
        run_dir: PathBuf,
    },
    /// Exit 0 if a TCP connection to ADDR opens within 5 s (used by `check` on the sites).
    #[command(hide = true)]
    Probe { addr: String },
    /// Run PROGRAM and leave none of its descendants behind (every external step runs so).
    #[command(hide = true)]
    Reap {
        /// The program and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Measure federated vs centralised time and traffic: OLS 1e6 x 50 on 10 sites, svd 2e4 x 2e3 on 5.
    Bench {
        /// Where the benchmark's runs and bench.json go (default runs/bench-<UTC time>/).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Smaller data (1/50 of the rows, 1/5 of the columns), same shape of work.
        #[arg(long)]
        quick: bool,
        /// Measure scaling in sites instead: one run per count, e.g. --sites 10,100,1000.
        #[arg(long, value_delimiter = ',')]
        sites: Vec<usize>,
        /// With --sites: the analysis each count runs.
        #[arg(long, value_enum, default_value = "ols")]
        workload: fedsim::bench::sites::Workload,
        /// With --sites: rows of generated data.
        #[arg(long, default_value_t = 20_000)]
        rows: usize,
    },
    /// The site image for provider "vm".
    Vm {
        #[command(subcommand)]
        what: VmCommand,
    },
    /// VMs that stay up between runs (provider "vm"): boot, look at, stop.
    Fleet {
        #[command(subcommand)]
        what: FleetCommand,
    },
    /// Run a site agent from its bundle directory (started by fedsim on each site).
    Agent {
        /// The site's bundle directory (holds .env and the data).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Where the agent writes its JSON-lines log (default: DIR/agent.jsonl). Remote sites
        /// keep each run's log in that run's own folder.
        #[arg(long)]
        log: Option<PathBuf>,
        /// Wall this agent and its steps off with Landlock: nothing of RUN_DIR but DIR is
        /// readable, nothing but DIR writable, TCP only to the coordinator (local sites).
        #[arg(long, value_name = "RUN_DIR")]
        confine: Option<PathBuf>,
        /// Coordinator address, overriding the bundle's.
        #[arg(long)]
        coordinator: Option<String>,
        /// Seconds to keep trying to reach the coordinator.
        #[arg(long, default_value_t = 30.0)]
        connect_timeout: f64,
        /// Worker threads for the local computations (default: all cores). Sites sharing one
        /// machine should split the cores, or their thread pools fight over them.
        #[arg(long)]
        threads: Option<usize>,
    },
}

/// Which scenario, where its sites run, and what to change in it.
#[derive(clap::Args)]
struct ScenarioArgs {
    /// The scenario file (TOML). Without it: the shipped example, federated OLS on the diabetes
    /// data over 3 local sites, held against statsmodels.
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// A fleet file: its [fleet], [[sites]] and [vm] replace the scenario's (e.g. the
    /// fleet.toml that provision/testfleet.sh writes). Its paths are relative to itself.
    #[arg(long, value_name = "FILE")]
    fleet: Option<PathBuf>,
    /// Change a scenario key, e.g. --set partition.sites=5 (repeatable; the value is TOML,
    /// or a string).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

impl ScenarioArgs {
    /// The scenario file named, or the shipped example (written into fedsim's cache).
    fn path(&self) -> Result<PathBuf, RunError> {
        match &self.config {
            Some(p) => Ok(p.clone()),
            None => fedsim::demo::scenario().map_err(RunError::from),
        }
    }

    fn load(&self) -> Result<(PathBuf, fedsim::scenario::Scenario), RunError> {
        let path = self.path()?;
        let s = run::load_layered(&path, self.fleet.as_deref(), &self.set)?;
        Ok((path, s))
    }
}

#[derive(Subcommand)]
enum VmCommand {
    /// Build the site image (Debian bookworm, mmdebstrap) into fedsim's cache, unless this
    /// recipe's image is there already, and print where it is.
    Image {
        /// Build again even if the image is there.
        #[arg(long)]
        rebuild: bool,
    },
    /// Pack the image as a local Vagrant box (libvirt) and print the `vagrant box add` command.
    Box,
}

#[derive(Subcommand)]
enum FleetCommand {
    /// Boot the scenario's VMs (one per site) and leave them up for later runs.
    Up {
        /// The scenario whose sites the VMs are for (provider "vm" or "vagrant").
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Every fleet that is up: each VM, its qemu and whether it answers SSH.
    Status,
    /// Stop the scenario's VMs and remove their disks.
    Down {
        /// The scenario whose fleet to stop.
        #[arg(short, long)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Ok(exe) = std::env::current_exe() {
        fedsim::reaper::set_binary(exe);
    }
    match cli.command {
        Command::Reap { command } => {
            let code = fedsim::reaper::run(&command[0], &command[1..]);
            ExitCode::from(code.clamp(0, 255) as u8)
        }
        Command::Agent {
            dir,
            log,
            confine,
            coordinator,
            connect_timeout,
            threads,
        } => {
            if let Some(n) = threads {
                fedsim::federation::agent::limit_threads(n);
            }
            let log = log.unwrap_or_else(|| dir.join("agent.jsonl"));
            agent(
                &dir,
                &log,
                confine.as_deref(),
                coordinator.as_deref(),
                connect_timeout,
            )
        }
        command => {
            // As servers do: the soft limit on open files up to the hard one (a local site is
            // one descriptor; a thousand of them exceed the usual 1024).
            fedsim::limits::raise_open_files();
            fedsim::logs::init_controller(cli.verbose, cli.quiet);
            controller(command, cli.quiet)
        }
    }
}

fn fail(e: &RunError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(e.exit_code())
}

fn options(out: Option<PathBuf>, quiet: bool) -> Result<RunOptions, ExitCode> {
    match std::env::current_exe() {
        Ok(agent_exe) => Ok(RunOptions {
            out,
            agent_exe,
            progress: !quiet,
            by_hand: false,
        }),
        Err(e) => {
            eprintln!("error: cannot locate the fedsim binary for the agents: {e}");
            Err(ExitCode::from(1))
        }
    }
}

fn controller(command: Command, quiet: bool) -> ExitCode {
    match command {
        Command::Check { scenario } => {
            let opts = match options(None, quiet) {
                Ok(o) => o,
                Err(code) => return code,
            };
            let result = scenario
                .load()
                .and_then(|(_, s)| run::plan(&s, None, false).map(|p| (s, p)))
                .and_then(|(s, p)| {
                    fedsim::check::check(&s, &p.plan, &opts.agent_exe).map(|h| (s, h))
                });
            match result {
                Ok((s, health)) if health.is_empty() => {
                    if s.fleet.provider == fedsim::scenario::Provider::Vagrant {
                        println!("no Vagrant VM of {} is up: `fedsim fleet up -c FILE` brings them up, then check finds them; `fedsim validate` checks the scenario and data", s.scenario.name);
                    } else if s.fleet.provider == fedsim::scenario::Provider::Vm {
                        println!("no fleet of {} is up: `fedsim fleet up -c FILE` boots it, then check finds its VMs; `fedsim validate` checks the scenario and data", s.scenario.name);
                    } else {
                        println!("provider {} has no hosts to check; `fedsim validate` checks the scenario and data", s.fleet.provider);
                    }
                    ExitCode::SUCCESS
                }
                Ok((_, health)) => {
                    print!("{}", fedsim::check::table(&health));
                    if health.iter().all(|h| h.ok()) {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(e) => fail(&e),
            }
        }
        Command::Logs { run_dir } => {
            let opts = match options(None, quiet) {
                Ok(o) => o,
                Err(code) => return code,
            };
            match fedsim::logs::pull_again(&run_dir, &opts.agent_exe) {
                Ok(lines) => {
                    if !quiet {
                        eprintln!("{lines} log lines merged");
                    }
                    println!("{}", run_dir.join("logs/merged.jsonl").display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Probe { addr } => {
            let reached = addr
                .parse::<std::net::SocketAddr>()
                .map_err(|e| e.to_string())
                .and_then(|a| {
                    std::net::TcpStream::connect_timeout(&a, Duration::from_secs(5))
                        .map_err(|e| e.to_string())
                });
            match reached {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    println!("cannot connect: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Validate { scenario } => {
            match scenario
                .load()
                .and_then(|(config, s)| run::plan(&s, None, true).map(|p| (config, s, p.plan)))
            {
                Ok((config, s, p)) => {
                    let shares: Vec<String> = p
                        .sites
                        .iter()
                        .map(|site| match &site.columns {
                            Some(c) => format!("{} columns", c.len()),
                            None => format!("{} rows", site.rows(&p)),
                        })
                        .collect();
                    let dropped = p.frame.rows() - p.complete.len();
                    let rows = if dropped > 0 {
                        format!(
                            "{} complete rows ({dropped} incomplete dropped)",
                            p.complete.len()
                        )
                    } else {
                        format!("{} rows", p.frame.rows())
                    };
                    // Past a dozen sites, the range of their shares, not a line of a thousand.
                    let shares = if shares.len() > 12 {
                        let mut sorted = shares.clone();
                        sorted.sort_by_key(|x| {
                            x.split(' ').next().and_then(|n| n.parse::<usize>().ok())
                        });
                        format!("from {} to {}", sorted[0], sorted[sorted.len() - 1])
                    } else {
                        shares.join(", ")
                    };
                    println!(
                        "{}: ok ({} on {rows}, {} features; {} sites: {shares})",
                        config.display(),
                        s.algorithm.kind.as_str(),
                        p.analysis().features.len(),
                        p.sites.len(),
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Command::Prep { scenario, out } => {
            let opts = match options(out, quiet) {
                Ok(o) => o,
                Err(code) => return code,
            };
            match scenario.load().and_then(|(_, s)| run::prep_only(&s, &opts)) {
                Ok((dir, bundles)) => {
                    for b in bundles.iter().filter(|_| !quiet) {
                        eprintln!(
                            "{}: {} rows, data sha256 {}",
                            b.name,
                            b.rows,
                            &b.data_sha256[..12]
                        );
                    }
                    println!("{}", dir.display());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Command::Report {
            runs,
            compare,
            out,
            by,
            force,
        } => {
            // An option that would be ignored is refused: people would believe it took effect.
            let misplaced = [
                (out.is_some(), "--out"),
                (!by.is_empty(), "--by"),
                (force, "--force"),
            ]
            .into_iter()
            .find(|(given, _)| *given && !compare);
            if let Some((_, option)) = misplaced {
                let e = fedsim::report::ReportError::Usage(format!(
                    "{option} applies to --compare (did you mean `fedsim report --compare {option} ...`?); a single run's report is always RUN_DIR/report.html"
                ));
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
            let result = if compare {
                let path = out.unwrap_or_else(|| PathBuf::from("compare.html"));
                let exists = (path.exists() && !force)
                    .then(|| fedsim::report::ReportError::Exists { path: path.clone() });
                exists
                    .map_or(Ok(()), Err)
                    .and_then(|()| fedsim::report::compare(&runs, &by))
                    .and_then(|html| {
                        fedsim::fsio::write_atomic(&path, html.as_bytes())
                            .map(|()| vec![path.clone()])
                            .map_err(|source| fedsim::report::ReportError::Write { path, source })
                    })
            } else {
                runs.iter().map(|r| fedsim::report::write(r)).collect()
            };
            match result {
                Ok(paths) => {
                    for p in paths {
                        println!("{}", p.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Run {
            scenario,
            out,
            junit,
            by_hand,
        } => {
            let scenario = match scenario.load() {
                Ok((_, s)) => s,
                Err(e) => return fail(&e),
            };
            let opts = match options(out, quiet) {
                Ok(o) => RunOptions { by_hand, ..o },
                Err(code) => return code,
            };
            install_signal_handler(quiet);
            match run::run(&scenario, &opts) {
                Ok(outcome) => {
                    if !quiet {
                        tell_outcome(&outcome.summary);
                    } else if let Some(e) = &outcome.summary.error {
                        eprintln!("error: {}", e.message);
                    }
                    if let Some(path) = &junit {
                        let xml = fedsim::report::junit::render(&outcome.summary);
                        if let Err(e) = fedsim::fsio::write_atomic(path, xml.as_bytes()) {
                            eprintln!("error: cannot write {}: {e}", path.display());
                            return ExitCode::from(1);
                        }
                    }
                    println!("{}", outcome.dir.display());
                    ExitCode::from(outcome.exit_code())
                }
                Err(e) => fail(&e),
            }
        }
        Command::Bench {
            out,
            quick,
            sites,
            workload,
            rows,
        } => {
            let out = out.unwrap_or_else(|| {
                PathBuf::from(format!(
                    "runs/bench-{}",
                    chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
                ))
            });
            let agent_exe = match options(None, quiet) {
                Ok(o) => o.agent_exe,
                Err(code) => return code,
            };
            install_signal_handler(quiet);
            if !sites.is_empty() {
                return match fedsim::bench::sites::run(&out, &sites, workload, rows, &agent_exe) {
                    Ok(report) => {
                        eprint!("{}", fedsim::bench::sites::table(&report));
                        println!("{}", out.join("sites.json").display());
                        if report.cases.iter().all(|c| c.status == "succeeded") {
                            ExitCode::SUCCESS
                        } else {
                            ExitCode::from(1)
                        }
                    }
                    Err(e) => fail(&e),
                };
            }
            match fedsim::bench::run(&out, quick, agent_exe) {
                Ok(report) => {
                    eprint!("{}", fedsim::bench::table(&report));
                    println!("{}", out.join("bench.json").display());
                    if report.cases.iter().all(|c| c.status == "succeeded") {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(e) => fail(&e),
            }
        }
        Command::Vm {
            what: VmCommand::Image { rebuild },
        } => {
            let built = if rebuild {
                fedsim::fleet::vm::image::Image::build()
            } else {
                fedsim::fleet::vm::image::Image::ensure()
            };
            match built {
                Ok(image) => {
                    println!("{}", image.dir.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Vm {
            what: VmCommand::Box,
        } => {
            use fedsim::fleet::vm::image;
            match image::Image::ensure().and_then(|i| image::pack_box(&i)) {
                Ok(file) => {
                    if !quiet {
                        eprintln!(
                            "add it with: vagrant box add --name fedsim/bookworm {}",
                            file.display()
                        );
                    }
                    println!("{}", file.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Fleet { what } => fleet(what, quiet),
        Command::Agent { .. } | Command::Reap { .. } => unreachable!("handled in main"),
    }
}

/// `fedsim fleet up|status|down`.
fn fleet(what: FleetCommand, quiet: bool) -> ExitCode {
    use fedsim::fleet::vm;
    let scenario_of = |config: &PathBuf| -> Result<fedsim::scenario::Scenario, ExitCode> {
        let s = run::load(config).map_err(|e| fail(&e))?;
        if !matches!(
            s.fleet.provider,
            fedsim::scenario::Provider::Vm | fedsim::scenario::Provider::Vagrant
        ) {
            eprintln!(
                "error: {}: fleet.provider is \"{}\"; fleets that stay up are for providers \"vm\" and \"vagrant\"",
                config.display(),
                s.fleet.provider
            );
            return Err(ExitCode::from(2));
        }
        Ok(s)
    };
    match what {
        FleetCommand::Up { config } => {
            let s = match scenario_of(&config) {
                Ok(s) => s,
                Err(code) => return code,
            };
            install_signal_handler(quiet);
            let started = std::time::Instant::now();
            if s.fleet.provider == fedsim::scenario::Provider::Vagrant {
                return vagrant_fleet_up(&s, started, quiet);
            }
            match vm::up(&s) {
                Ok(state) => {
                    if !quiet {
                        eprintln!(
                            "fleet {}: {} VMs up after {:.1} s",
                            state.scenario,
                            state.machines.len(),
                            started.elapsed().as_secs_f64()
                        );
                    }
                    println!("{}", vm::fleet_dir(&state.scenario).display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(if fedsim::cancel::requested() { 130 } else { 1 })
                }
            }
        }
        FleetCommand::Status => {
            let fleets = vm::FleetState::all();
            if fleets.is_empty() {
                println!("no fleet is up");
            }
            let mut healthy = true;
            for f in &fleets {
                println!("fleet {} (up since {})", f.scenario, f.started);
                if let Some(why) = &f.broken {
                    healthy = false;
                    println!("  ✘ broken: {why}; `fedsim fleet down`, then `fedsim fleet up`");
                }
                for (m, running) in vm::status(f) {
                    let ssh = running && vm::reachable(f, &m);
                    healthy &= ssh;
                    println!(
                        "  {} {:<10} qemu pid {:<8} {:<8} ssh 127.0.0.1:{} {}",
                        if ssh { "✔" } else { "✘" },
                        m.site,
                        m.pid,
                        if running { "running" } else { "gone" },
                        m.port,
                        if ssh { "answers" } else { "does not answer" }
                    );
                }
            }
            if healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        FleetCommand::Down { config } => {
            let s = match scenario_of(&config) {
                Ok(s) => s,
                Err(code) => return code,
            };
            if s.fleet.provider == fedsim::scenario::Provider::Vagrant {
                return vagrant_fleet_down(&s, quiet);
            }
            match vm::down(&s.scenario.name) {
                Ok(n) => {
                    if !quiet {
                        eprintln!("fleet {}: {n} VMs stopped", s.scenario.name);
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// `fedsim fleet up` for provider "vagrant": `vagrant up` of the sites that are not running,
/// their host keys read from their consoles, and the VMs left up for later runs.
fn vagrant_fleet_up(
    s: &fedsim::scenario::Scenario,
    started: std::time::Instant,
    quiet: bool,
) -> ExitCode {
    use fedsim::fleet::vagrant::{Machines, Vagrant};
    let up = Vagrant::new(&fedsim::fleet::vagrant_dir(s), s.partition.sites).and_then(|v| {
        let state = v.state_dir();
        std::fs::create_dir_all(&state).map_err(|e| {
            fedsim::fleet::vagrant::VagrantError::Command {
                args: "up".into(),
                dir: v.dir().to_path_buf(),
                reason: format!("{}: {e}", state.display()),
            }
        })?;
        let dir = v.dir().to_path_buf();
        Machines::up(
            v,
            true,
            &state.join("vagrant-up.log"),
            &state.join("known_hosts"),
        )
        .map(|(m, specs)| (m, specs, dir))
    });
    match up {
        Ok((machines, specs, dir)) => {
            machines.keep();
            if !quiet {
                eprintln!(
                    "fleet {}: {} Vagrant VMs up after {:.1} s (`vagrant status` in {})",
                    s.scenario.name,
                    specs.len(),
                    started.elapsed().as_secs_f64(),
                    dir.display()
                );
            }
            println!("{}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(if fedsim::cancel::requested() { 130 } else { 1 })
        }
    }
}

/// `fedsim fleet down` for provider "vagrant": `vagrant destroy -f` of the scenario's sites.
fn vagrant_fleet_down(s: &fedsim::scenario::Scenario, quiet: bool) -> ExitCode {
    use fedsim::fleet::vagrant::Vagrant;
    let v = match Vagrant::new(&fedsim::fleet::vagrant_dir(s), s.partition.sites) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let running = match v.running() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let sites: Vec<String> = (1..=s.partition.sites)
        .map(|i| format!("site-{i}"))
        .collect();
    if !v.destroy(&sites) {
        eprintln!(
            "error: `vagrant destroy -f` failed in {}",
            v.dir().display()
        );
        return ExitCode::from(1);
    }
    if !quiet {
        eprintln!(
            "fleet {}: {} Vagrant VMs destroyed",
            s.scenario.name,
            running.len()
        );
    }
    ExitCode::SUCCESS
}

/// The run's end, for people: the verdicts and the error, on stderr.
fn tell_outcome(s: &fedsim::summary::Summary) {
    if let Some(c) = &s.comparison {
        eprintln!(
            "{}: {} | federated vs centralised: max difference {:.2e} at {} (tolerance {:.0e}) {}",
            s.scenario,
            s.status,
            c.max_diff,
            c.worst,
            c.tolerance,
            if c.passed { "passed" } else { "FAILED" }
        );
    }
    if let Some(r) = &s.reference {
        eprintln!(
            "reference {}: max difference {:.2e} {}",
            r.source.display(),
            r.comparison.max_diff,
            if r.comparison.passed {
                "passed"
            } else {
                "FAILED"
            }
        );
    }
    if let Some(e) = &s.error {
        eprintln!(
            "{}: {}",
            if s.status == fedsim::summary::Status::Degraded {
                "degraded"
            } else {
                "error"
            },
            e.message
        );
    }
}

/// First Ctrl-C / SIGTERM: cancel the run cleanly. Second: kill everything fedsim started and
/// leave at once.
fn install_signal_handler(quiet: bool) {
    let _ = ctrlc::set_handler(move || {
        if fedsim::cancel::CANCEL.swap(true, Ordering::SeqCst) {
            fedsim::children::kill_all();
            std::process::exit(130);
        }
        if !quiet {
            eprintln!("cancelling: stopping the sites (press Ctrl-C again to force)");
        }
    });
}

fn agent(
    dir: &std::path::Path,
    log: &std::path::Path,
    confine: Option<&std::path::Path>,
    coordinator: Option<&str>,
    connect_timeout: f64,
) -> ExitCode {
    fedsim::children::die_with_controller();
    if let Err(e) = fedsim::logs::init_agent(log) {
        eprintln!("error: cannot write the agent log {}: {e}", log.display());
        return ExitCode::from(1);
    }
    if let Some(run_dir) = confine {
        let port = coordinator
            .and_then(|c| c.parse::<std::net::SocketAddr>().ok())
            .map_or(0, |a| a.port());
        match fedsim::confine::confine(run_dir, dir, port) {
            fedsim::confine::Confinement::Full => {
                tracing::info!(
                    phase = "launch",
                    "confined (Landlock): this site's folder only"
                )
            }
            fedsim::confine::Confinement::Partial(why)
            | fedsim::confine::Confinement::None(why) => {
                tracing::warn!(phase = "launch", reason = %why, "not fully confined")
            }
        }
    }
    match fedsim::federation::agent::run(
        dir,
        coordinator,
        Duration::from_secs_f64(connect_timeout.max(0.0)),
    ) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(phase = "finish", error = %e, "agent failed");
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
