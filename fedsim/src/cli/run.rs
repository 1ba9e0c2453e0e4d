//! `fedsim run`: the whole pipeline, then the verdict on the terminal and the exit code.

use std::path::PathBuf;

use fedsim::run::RunOptions;
use fedsim::summary::{Status, Summary};

use super::{Exit, Global, ScenarioArgs};

#[derive(clap::Args)]
pub struct Args {
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
}

pub fn exec(a: Args, g: &Global) -> Exit {
    let scenario = match a.scenario.load() {
        Ok((_, s)) => s,
        Err(e) => return super::fail(&e),
    };
    let opts = match super::options(a.out, g) {
        Ok(o) => RunOptions {
            by_hand: a.by_hand,
            ..o
        },
        Err(exit) => return exit,
    };
    super::install_signal_handler(g);
    match fedsim::run::run(&scenario, &opts) {
        Ok(outcome) => {
            if !g.quiet {
                tell_outcome(&outcome.summary);
            } else if let Some(e) = &outcome.summary.error {
                eprintln!("error: {}", e.message);
            }
            if let Some(path) = &a.junit {
                let xml = fedsim::report::junit::render(&outcome.summary);
                if let Err(e) = fedsim::sys::fsio::write_atomic(path, xml.as_bytes()) {
                    return super::failed(format!("cannot write {}: {e}", path.display()));
                }
            }
            println!("{}", outcome.dir.path().display());
            Exit::of_outcome(&outcome)
        }
        Err(e) => super::fail(&e),
    }
}

/// The run's end, for people: the verdicts and the error, on stderr.
fn tell_outcome(s: &Summary) {
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
            if s.status == Status::Degraded {
                "degraded"
            } else {
                "error"
            },
            e.message
        );
    }
}
