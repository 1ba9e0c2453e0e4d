//! `fedsim bench`: federated against centralised time and traffic, or scaling in sites.

use std::path::PathBuf;

use super::{Exit, Global};

#[derive(clap::Args)]
pub struct Args {
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
    /// With --sites and --workload logistic: do not run the same counts through Flower (which
    /// runs where a Python with flwr is found: $FEDSIM_FLWR_PYTHON, ~/.cache/fedsim-flwr, python3).
    #[arg(long)]
    no_flower: bool,
}

pub fn exec(a: Args, g: &Global) -> Exit {
    let out = a.out.unwrap_or_else(|| {
        PathBuf::from(format!(
            "runs/bench-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
        ))
    });
    let agent_exe = match super::options(None, g) {
        Ok(o) => o.agent_exe,
        Err(exit) => return exit,
    };
    super::install_signal_handler(g);
    if !a.sites.is_empty() {
        let flower = !a.no_flower;
        return match fedsim::bench::sites::run(
            &out, &a.sites, a.workload, a.rows, &agent_exe, flower,
        ) {
            Ok(report) => {
                eprint!("{}", fedsim::bench::sites::table(&report));
                say!("{}", out.join(fedsim::bench::sites::FILE).display());
                Exit::ok_if(
                    report.cases.iter().all(|c| c.status == "succeeded")
                        && !report.flower.as_ref().is_some_and(|f| f.failed()),
                )
            }
            Err(e) => super::fail(&e),
        };
    }
    match fedsim::bench::run(&out, a.quick, agent_exe) {
        Ok(report) => {
            eprint!("{}", fedsim::bench::table(&report));
            say!("{}", out.join(fedsim::bench::FILE).display());
            Exit::ok_if(report.cases.iter().all(|c| c.status == "succeeded"))
        }
        Err(e) => super::fail(&e),
    }
}
