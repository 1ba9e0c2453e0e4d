//! `fedsim logs RUN_DIR`: every site's log pulled again (over SSH for remote sites) and the
//! merged timeline rebuilt.

use std::path::{Path, PathBuf};

use fedsim::fleet::FleetError;
use fedsim::rundir::{RunDir, RunDirError};
use fedsim::scenario::{Provider, Scenario, ScenarioError};

use super::{Exit, Global};

#[derive(clap::Args)]
pub struct Args {
    /// A run directory made by `fedsim run`.
    run_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
enum PullError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    #[error(transparent)]
    Fleet(#[from] FleetError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub fn exec(a: Args, g: &Global) -> Exit {
    let opts = match super::options(None, g) {
        Ok(o) => o,
        Err(exit) => return exit,
    };
    let dir = RunDir::open(&a.run_dir);
    match pull_again(&dir, &opts.agent_exe) {
        Ok(lines) => {
            if !g.quiet {
                eprintln!("{lines} log lines merged");
            }
            say!("{}", dir.merged_log().display());
            Exit::Succeeded
        }
        Err(e) => super::failed(e),
    }
}

fn pull_again(dir: &RunDir, agent_exe: &Path) -> Result<usize, PullError> {
    let scenario = Scenario::load(&dir.scenario_toml())?;
    let plan = dir.read_plan()?;
    let names: Vec<String> = plan.sites.iter().map(|s| s.name.clone()).collect();
    let logs = dir.logs();
    let io = |source| PullError::Io {
        path: logs.clone(),
        source,
    };
    std::fs::create_dir_all(&logs).map_err(io)?;
    if scenario.fleet.provider == Provider::Local {
        for n in &names {
            let src = fedsim::agent::cli::log_path(&dir.site(n));
            std::fs::copy(&src, dir.site_log(n)).map_err(|e| FleetError::Logs {
                site: n.clone(),
                reason: format!("{}: {e}", src.display()),
            })?;
        }
    } else {
        let mut fleet =
            fedsim::fleet::for_scenario(&scenario, &dir.fleet_paths(), agent_exe, false, false)?;
        fleet.collect_logs(&logs)?;
    }
    dir.merge_logs(&names).map_err(io)
}
