//! The commands a site runs, shared by `fedsim` and the slim `fedsim-agent` binary (which is what
//! the sites get): `agent` (answer the coordinator from a bundle), `reach` (is an address
//! reachable from here?, for `fedsim check`), `reap` (run an external step and leave none of
//! its descendants) and `supervise` (start the agents of the many sites one ssh host runs).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::sys::confine::{self, Confinement};
use crate::sys::exit::{self, Exit};

#[derive(clap::Args)]
pub struct AgentArgs {
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

#[derive(clap::Args)]
pub struct ReachArgs {
    addr: String,
}

#[derive(clap::Args)]
pub struct SuperviseArgs {
    /// The sites to start, as JSON (written by the controller; paths relative to the current
    /// folder).
    #[arg(long)]
    spec: PathBuf,
}

#[derive(clap::Args)]
pub struct ReapArgs {
    /// Keep what the program prints (stdout and stderr) in FILE as JSON log lines, stamped as
    /// they come: a platform's node on a site logs so.
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// The `process` those lines name (default: the program's name).
    #[arg(long, requires = "log")]
    process: Option<String>,
    /// Hold the controller's lease at ADDR (a tunnel's end on this site): when it is not heard
    /// for `--lease-secs`, or ends, the program and all it started are stopped. fedsim cannot
    /// reach a site whose link was cut to stop what runs there; this is how that ends.
    #[arg(long, value_name = "ADDR")]
    lease: Option<std::net::SocketAddr>,
    /// How long the lease may go unheard.
    #[arg(long, value_name = "SECS", default_value_t = 30.0, requires = "lease")]
    lease_secs: f64,
    /// The program and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    command: Vec<String>,
}

/// Where a site's agent writes its log unless told otherwise: in its own folder.
pub fn log_path(site_dir: &Path) -> PathBuf {
    site_dir.join("agent.jsonl")
}

/// `agent`: one site's part of the run, to its end.
pub fn agent(a: AgentArgs) -> ExitCode {
    if let Some(n) = a.threads {
        super::limit_threads(n);
    }
    let log = a.log.unwrap_or_else(|| log_path(&a.dir));
    crate::sys::children::die_with_controller();
    if let Err(e) = crate::logs::init_agent(&log) {
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
    match super::run(
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

/// `reach ADDR`: exit 0 if a TCP connection to ADDR opens within 5 s.
pub fn reach(a: ReachArgs) -> ExitCode {
    let reached = a
        .addr
        .parse::<std::net::SocketAddr>()
        .map_err(|e| e.to_string())
        .and_then(|addr| {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .map_err(|e| e.to_string())
        });
    match reached {
        Ok(_) => Exit::Succeeded.into(),
        Err(e) => {
            use std::io::Write as _;
            let _ = writeln!(std::io::stdout(), "cannot connect: {e}");
            Exit::Failed.into()
        }
    }
}

/// `reap PROGRAM ARGS...`: the step's own exit code is passed on; it is not one of fedsim's.
pub fn reap(a: ReapArgs) -> ExitCode {
    let what = a.process.unwrap_or_else(|| a.command[0].clone());
    let format: crate::sys::reaper::LineFormat = std::sync::Arc::new(move |line| {
        crate::logs::program_line(&what, line).map(|v| v.to_string())
    });
    let lease = a.lease.map(|addr| {
        (
            addr,
            Duration::from_secs_f64(a.lease_secs.clamp(1.0, 86_400.0)),
        )
    });
    exit::passed_on(crate::sys::reaper::run(
        &a.command[0],
        &a.command[1..],
        a.log.as_deref().map(|f| (f, format)),
        lease,
    ))
}

/// `supervise --spec FILE`: start the agents of this host's sites and see them to their end.
pub fn supervise(a: SuperviseArgs) -> ExitCode {
    let spec = std::fs::read_to_string(&a.spec)
        .map_err(|e| format!("cannot read {}: {e}", a.spec.display()))
        .and_then(|t| {
            serde_json::from_str::<super::supervise::SuperviseSpec>(&t)
                .map_err(|e| format!("{}: {e}", a.spec.display()))
        });
    let spec = match spec {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::BadInput.into();
        }
    };
    let agent = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("error: cannot find this program: {e}");
            return Exit::Failed.into();
        }
    };
    match super::supervise::supervise(&spec, &agent) {
        Ok(true) => Exit::Succeeded.into(),
        Ok(false) => Exit::Failed.into(),
        Err(e) => {
            eprintln!("error: {e}");
            Exit::Failed.into()
        }
    }
}
