//! `fedsim run`: the whole pipeline, then the verdict on the terminal and the exit code.

use std::path::PathBuf;

use fedsim::run::RunOptions;
use fedsim::summary::{Status, Summary};

use super::{Exit, Global, Outcome, ScenarioArgs};

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
            say!("{}", outcome.dir.path().display());
            Exit::of_outcome(&outcome)
        }
        Err(e) => super::fail(&e),
    }
}

/// The run's end, for people: the verdicts (per analysis, with several) and the error, on
/// stderr.
fn tell_outcome(s: &Summary) {
    if !s.analyses.is_empty() {
        eprintln!("{}: {}", s.scenario, s.status);
    }
    for section in s.sections() {
        tell_section(s, &section);
    }
    if let Some(p) = &s.projection {
        eprintln!(
            "projected study: {}{}",
            p.words,
            p.bottleneck
                .as_deref()
                .map_or(String::new(), |b| format!("; held up longest by {b}"))
        );
    }
    for w in s.warnings.iter().filter(|w| w.kind == "projection") {
        eprintln!("projected study: none: {}", w.message);
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

fn tell_section(s: &Summary, section: &fedsim::summary::Section) {
    let who = match section.name {
        Some(name) => format!(
            "  analysis {name} ({}): {}",
            section.algorithm, section.status
        ),
        None => format!("{}: {}", s.scenario, s.status),
    };
    match (section.comparison, section.name, section.error) {
        (Some(c), _, _) if c.noise.is_some() => eprintln!(
            "{who} | federated vs centralised under differential privacy: the largest error used {:.0}% of its predicted bound (at {}) {}",
            100.0 * c.max_diff,
            c.worst,
            if c.passed { "passed" } else { "FAILED" }
        ),
        (Some(c), _, _) => eprintln!(
            "{who} | federated vs centralised: max difference {:.2e} at {} (tolerance {:.0e}) {}",
            c.max_diff,
            c.worst,
            c.tolerance,
            if c.passed { "passed" } else { "FAILED" }
        ),
        (None, Some(_), Some(e)) => eprintln!("{who} | {}", e.message),
        _ => {}
    }
    if let Some(r) = section.reference {
        eprintln!(
            "{}reference {}: max difference {:.2e} {}",
            if section.name.is_some() { "    " } else { "" },
            r.source.display(),
            r.comparison.max_diff,
            if r.comparison.passed {
                "passed"
            } else {
                "FAILED"
            }
        );
    }
}
