//! `fedsim agent`: a site's program, started by fedsim on each site from its bundle folder.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use fedsim::sys::confine::{self, Confinement};

use super::Exit;

#[derive(clap::Args)]
pub struct Args {
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
}

pub fn exec(a: Args) -> ExitCode {
    if let Some(n) = a.threads {
        fedsim::agent::limit_threads(n);
    }
    let log = a
        .log
        .unwrap_or_else(|| fedsim::fleet::local::agent_log(&a.dir));
    fedsim::sys::children::die_with_controller();
    if let Err(e) = fedsim::logs::init_agent(&log) {
        eprintln!("error: cannot write the agent log {}: {e}", log.display());
        return Exit::Failed.into();
    }
    if let Some(run_dir) = &a.confine {
        let port = a
            .coordinator
            .as_deref()
            .and_then(|c| c.parse::<std::net::SocketAddr>().ok())
            .map_or(0, |addr| addr.port());
        match confine::confine(run_dir, &a.dir, port) {
            Confinement::Full => {
                tracing::info!(
                    phase = "launch",
                    "confined (Landlock): this site's folder only"
                )
            }
            Confinement::Partial(why) | Confinement::None(why) => {
                tracing::warn!(phase = "launch", reason = %why, "not fully confined")
            }
        }
    }
    match fedsim::agent::run(
        &a.dir,
        a.coordinator.as_deref(),
        Duration::from_secs_f64(a.connect_timeout.max(0.0)),
    ) {
        Ok(()) => Exit::Succeeded.into(),
        Err(e) => {
            tracing::error!(phase = "finish", error = %e, "agent failed");
            eprintln!("error: {e}");
            Exit::Failed.into()
        }
    }
}
