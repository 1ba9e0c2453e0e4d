//! `supervise --spec FILE`: the one process an ssh host with many sites (`[[sites]] count`) runs
//! for them. It starts each site's agent as a process of its own (its own process group, its own
//! working folder holding `agent.jsonl`, `agent.out`, `agent.exit`), paced as the local fleet
//! paces its agents, records each agent's exit as it happens, and kills every agent when it is
//! killed or told to stop (SIGTERM, SIGINT, SIGHUP); each agent also asks the kernel to kill it
//! if the supervisor dies (`PR_SET_PDEATHSIG`), so nothing outlives it. The controller reads
//! what it records with one command per host: [`PIDS`] (site and pid as each starts), [`EXITS`]
//! (site, pid, code and whether it was killed, as each ends) and [`DONE`] once every agent has.

use std::fs::File;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::sys::children::PARENT_VAR;

/// The supervisor's records, in its working folder.
pub const PIDS: &str = "supervisor.pids";
pub const EXITS: &str = "supervisor.exits";
pub const DONE: &str = "supervisor.done";

/// What a supervisor starts: written by the controller, read by `supervise --spec`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuperviseSpec {
    /// Worker threads per agent.
    pub threads: usize,
    /// Seconds each agent keeps trying to reach its coordinator.
    pub connect_timeout: f64,
    pub sites: Vec<SupervisedSite>,
}

/// One site under a supervisor. Paths are relative to the supervisor's working folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisedSite {
    pub name: String,
    /// The site's bundle (data, `.env`).
    pub bundle: PathBuf,
    /// The site's working folder for this run (its log, output and exit land there).
    pub work: PathBuf,
    /// Where its agent dials.
    pub coordinator: String,
}

/// Agents started without pacing (as the local fleet's first burst).
const BURST: usize = 64;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

struct Running {
    site: String,
    work: PathBuf,
    pid: u32,
    ended: bool,
}

/// Append a line to one of the records, flushed at once (the controller may read it any time).
fn record(path: &Path, line: &str) {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(format!("{line}\n").as_bytes());
    }
}

/// The exit code as a shell reports it: the code, or 128 + the signal.
fn code_of(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        -1
    }
}

/// Run the sites of `spec` to their end; returns whether every agent was started.
pub fn supervise(spec: &SuperviseSpec, agent: &Path) -> std::io::Result<bool> {
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
    // Every agent is a process of this user with a few threads and descriptors: hundreds of
    // them pass the usual soft limits, which the agents inherit.
    crate::sys::limits::raise_open_files();
    crate::sys::limits::raise_processes();
    let me = std::process::id().to_string();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let before = crate::sys::proc::tasks_now().map_or(0, |(r, _)| r);
    let busy = before + 4 * cores;
    let mut running: Vec<Running> = Vec::with_capacity(spec.sites.len());
    let mut all_started = true;
    for (i, site) in spec.sites.iter().enumerate() {
        if STOP.load(Ordering::Relaxed) {
            all_started = false;
            break;
        }
        // Past the first burst, no faster than the host runs what was started.
        while i >= BURST
            && crate::sys::proc::tasks_now().is_some_and(|(r, _)| r > busy)
            && !STOP.load(Ordering::Relaxed)
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        let bundle = std::path::absolute(&site.bundle)?;
        std::fs::create_dir_all(&site.work)?;
        let out = File::create(site.work.join("agent.out"))?;
        let started = Command::new(agent)
            .arg("agent")
            .arg("--dir")
            .arg(&bundle)
            .arg("--log")
            .arg("agent.jsonl")
            .arg("--coordinator")
            .arg(&site.coordinator)
            .arg("--threads")
            .arg(spec.threads.max(1).to_string())
            .arg("--connect-timeout")
            .arg(spec.connect_timeout.to_string())
            .current_dir(&site.work)
            .env(PARENT_VAR, &me)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0)
            .spawn();
        match started {
            Ok(child) => {
                let pid = child.id();
                // Reaped below by waitpid; the handle has nothing more to do.
                drop(child);
                record(Path::new(PIDS), &format!("{} {pid}", site.name));
                running.push(Running {
                    site: site.name.clone(),
                    work: site.work.clone(),
                    pid,
                    ended: false,
                });
            }
            Err(e) => {
                all_started = false;
                let _ = std::fs::write(
                    site.work.join("agent.out"),
                    format!("cannot start {}: {e}\n", agent.display()),
                );
                let _ = std::fs::write(site.work.join("agent.exit"), "127\n");
                record(Path::new(EXITS), &format!("{} 0 127 0", site.name));
            }
        }
    }
    let end = |r: &mut Running, status: libc::c_int, killed: bool| {
        let code = code_of(status);
        r.ended = true;
        let _ = std::fs::write(r.work.join("agent.exit"), format!("{code}\n"));
        record(
            Path::new(EXITS),
            &format!("{} {} {code} {}", r.site, r.pid, u8::from(killed)),
        );
    };
    let mut stopping: Option<Instant> = None;
    loop {
        // Reap whatever has ended.
        loop {
            let mut status: libc::c_int = 0;
            // SAFETY: waitpid writes the status it is given.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            if let Some(r) = running.iter_mut().find(|r| r.pid == pid as u32) {
                end(r, status, stopping.is_some());
            }
        }
        if running.iter().all(|r| r.ended) {
            break;
        }
        if STOP.load(Ordering::Relaxed) {
            match stopping {
                None => {
                    // TERM to each agent's group, half a second to go, then KILL.
                    for r in running.iter().filter(|r| !r.ended) {
                        // SAFETY: signalling process groups this process created.
                        unsafe { libc::kill(-(r.pid as i32), libc::SIGTERM) };
                    }
                    stopping = Some(Instant::now());
                }
                Some(t) if t.elapsed() > Duration::from_millis(500) => {
                    for r in running.iter().filter(|r| !r.ended) {
                        // SAFETY: as above.
                        unsafe { libc::kill(-(r.pid as i32), libc::SIGKILL) };
                    }
                }
                Some(_) => {}
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    record(Path::new(DONE), "");
    Ok(all_started)
}
