//! The `local` provider: each site is its own `fedsim agent` OS process in its own working
//! directory, with a scrubbed environment. Nothing is shared but the coordinator's address.
//!
//! Agents run in process groups of their own, so a terminal's Ctrl-C (which reaches the whole
//! foreground group) goes to the controller alone, and the controller decides how they stop.
//! They are started without a `pre_exec` hook, so the standard library can use posix_spawn
//! instead of forking the (possibly large) controller; each agent ties its life to the
//! controller itself (see [`crate::sys::children`]).
//!
//! Agents are started in the background, by one spawning thread per core, while the coordinator
//! already accepts the first ones: with a thousand sites, starting them one after the other
//! and only then handshaking took most of the time to the first round.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Dial, Fleet, FleetError, SiteExit};
use crate::bundle::{self, Bundle};
use crate::sys::children::{self, PARENT_VAR};

struct Agent {
    site: String,
    dir: PathBuf,
    child: Option<Child>,
    /// Why its agent could not be started, until reported by `dead_site`.
    unstarted: Option<String>,
    exited: Option<SiteExit>,
}

/// Agents being started in the background: each start arrives as (agent index, child or why not).
///
/// The spawning threads live until the agents are gone: an agent asks to die with its parent
/// (`PR_SET_PDEATHSIG`), and to the kernel its parent is the thread that started it.
struct Spawning {
    spawner: JoinHandle<()>,
    arrivals: mpsc::Receiver<(usize, Result<Child, String>)>,
    /// Raised to start no more (the run is stopping).
    stop: Arc<AtomicBool>,
    /// Dropped to let the spawning threads end, once their agents have.
    release: mpsc::Sender<()>,
}

pub struct LocalFleet {
    agent_exe: PathBuf,
    /// Each site's directory is `<sites_dir>/<site>`: its bundle and working directory.
    /// The run directory: what a site may read besides its own folder.
    run_dir: PathBuf,
    sites_dir: PathBuf,
    agents: Vec<Agent>,
    connect_timeout: Duration,
    spawning: Option<Spawning>,
    last_look: Instant,
}

impl LocalFleet {
    pub fn new(
        agent_exe: PathBuf,
        run_dir: PathBuf,
        sites_dir: PathBuf,
        connect_timeout: Duration,
    ) -> Self {
        LocalFleet {
            agent_exe,
            run_dir,
            sites_dir,
            agents: Vec::new(),
            connect_timeout,
            spawning: None,
            last_look: Instant::now(),
        }
    }
}

impl Fleet for LocalFleet {
    fn install(&mut self, bundles: &mut [Bundle]) -> Result<(), FleetError> {
        for b in bundles {
            let dir = self.sites_dir.join(&b.name);
            let files = b.files.take().ok_or_else(|| FleetError::Install {
                site: b.name.clone(),
                reason: "bundle already installed".into(),
            })?;
            bundle::write_files(&files, &dir).map_err(|e| FleetError::Install {
                site: b.name.clone(),
                reason: e.to_string(),
            })?;
            self.agents.push(Agent {
                site: b.name.clone(),
                dir,
                child: None,
                unstarted: None,
                exited: None,
            });
        }
        Ok(())
    }

    fn start(&mut self, dial: &Dial) -> Result<(), FleetError> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = (cores / self.agents.len().max(1)).max(1);
        let run_dir = std::path::absolute(&self.run_dir).map_err(|e| FleetError::Start {
            site: "all".into(),
            reason: e.to_string(),
        })?;
        let mut commands = Vec::with_capacity(self.agents.len());
        for a in &self.agents {
            let start = |reason: String| FleetError::Start {
                site: a.site.clone(),
                reason,
            };
            // A scratch folder of its own: the sandbox lets it write nowhere else.
            let tmp = a.dir.join("tmp");
            std::fs::create_dir_all(&tmp).map_err(|e| start(e.to_string()))?;
            let mut cmd = Command::new(&self.agent_exe);
            cmd.arg("agent")
                .arg("--dir")
                .arg(".")
                .arg("--confine")
                .arg(&run_dir)
                .arg("--coordinator")
                .arg(dial.of(&a.site).to_string())
                .arg("--connect-timeout")
                .arg(self.connect_timeout.as_secs_f64().to_string())
                // The sites share this machine's cores: give each its share, at least one.
                .arg("--threads")
                .arg(threads.to_string())
                .current_dir(&a.dir)
                // A site sees none of the controller's environment (which may hold secrets).
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env(
                    "RUST_LOG",
                    std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
                )
                .env(PARENT_VAR, std::process::id().to_string())
                .env("TMPDIR", &tmp)
                .stdin(Stdio::null())
                .process_group(0);
            // Its output file is opened when it is started: ten thousand waiting would hold
            // twice as many descriptors.
            let out = a.dir.join("agent.out");
            commands.push(Mutex::new(Some((a.site.clone(), cmd, out))));
        }
        let (send, arrivals) = mpsc::channel();
        let (release, released) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let exe = self.agent_exe.clone();
        let halt = stop.clone();
        let spawner = std::thread::Builder::new()
            .name("spawn agents".into())
            .spawn(move || spawn_all(commands, cores, &exe, &halt, send, released))
            .map_err(|e| FleetError::Start {
                site: "all".into(),
                reason: format!("cannot start the spawning thread: {e}"),
            })?;
        self.spawning = Some(Spawning {
            spawner,
            arrivals,
            stop,
            release,
        });
        Ok(())
    }

    fn dead_site(&mut self) -> Option<(String, String)> {
        // Asked in every turn of the coordinator's loops: with ten thousand agents a look at
        // each is ten thousand system calls, so at most every 50 ms.
        if self.last_look.elapsed() < Duration::from_millis(50) {
            return None;
        }
        self.last_look = Instant::now();
        self.arrived(false);
        if let Some(a) = self.agents.iter_mut().find(|a| a.unstarted.is_some()) {
            let why = a.unstarted.take().unwrap_or_default();
            return Some((a.site.clone(), format!("cannot start the agent: {why}")));
        }
        // Each death is reported once; the agent's record then holds its exit.
        for a in self.agents.iter_mut().filter(|a| a.exited.is_none()) {
            let Some(child) = a.child.as_mut() else {
                continue;
            };
            if let Ok(Some(status)) = child.try_wait() {
                let pid = child.id();
                children::untrack(pid);
                a.exited = Some(SiteExit {
                    site: a.site.clone(),
                    pid,
                    code: status.code(),
                    killed: false,
                });
                let tail = std::fs::read_to_string(a.dir.join("agent.out")).unwrap_or_default();
                let last = tail
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .to_string();
                let detail = if last.is_empty() {
                    String::new()
                } else {
                    format!(": {last}")
                };
                return Some((
                    a.site.clone(),
                    format!("agent exited early ({status}){detail}"),
                ));
            }
        }
        None
    }

    fn stop(&mut self, grace: Duration) -> Vec<SiteExit> {
        self.arrived(true);
        let grace = Instant::now() + grace;
        for a in &mut self.agents {
            let Some(child) = a.child.as_mut() else {
                continue;
            };
            let pid = child.id();
            let mut killed = false;
            let status = loop {
                match child.try_wait() {
                    Ok(Some(s)) => break Some(s),
                    Ok(None) if Instant::now() < grace => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        killed = true;
                        let _ = child.kill();
                        break child.wait().ok();
                    }
                }
            };
            children::untrack(pid);
            a.exited = Some(SiteExit {
                site: a.site.clone(),
                pid,
                code: status.and_then(|s| s.code()),
                killed,
            });
        }
        self.release_spawners();
        self.agents
            .iter()
            .filter_map(|a| a.exited.clone())
            .collect()
    }

    fn collect_logs(&mut self, dest: &Path) -> Result<Vec<String>, FleetError> {
        let mut names = Vec::new();
        for a in &self.agents {
            let src = crate::agent::cli::log_path(&a.dir);
            let to = dest.join(format!("{}.jsonl", a.site));
            std::fs::copy(&src, &to).map_err(|e| FleetError::Logs {
                site: a.site.clone(),
                reason: format!("{}: {e}", src.display()),
            })?;
            names.push(a.site.clone());
        }
        Ok(names)
    }

    fn kill(&mut self, site: &str) -> Result<(), FleetError> {
        self.arrived(false);
        let a = self
            .agents
            .iter_mut()
            .find(|a| a.site == site)
            .ok_or_else(|| FleetError::Start {
                site: site.into(),
                reason: "no such site".into(),
            })?;
        let child = a.child.as_mut().ok_or_else(|| FleetError::Start {
            site: site.into(),
            reason: "not started".into(),
        })?;
        child.kill().map_err(|e| FleetError::Start {
            site: site.into(),
            reason: e.to_string(),
        })
    }

    fn pids(&mut self) -> Vec<(String, u32)> {
        self.arrived(false);
        self.agents
            .iter()
            .filter_map(|a| a.child.as_ref().map(|c| (a.site.clone(), c.id())))
            .collect()
    }

    fn location(&self, site: &str) -> Option<String> {
        self.agents
            .iter()
            .find(|a| a.site == site)
            .map(|a| a.dir.display().to_string())
    }
}

impl LocalFleet {
    /// Take in the agents started since the last look; with `all`, stop starting more and wait
    /// until no spawn is under way, so that none is started after.
    fn arrived(&mut self, all: bool) {
        let Some(spawning) = self.spawning.as_ref() else {
            return;
        };
        let arrivals: Vec<_> = if all {
            spawning.stop.store(true, Ordering::Relaxed);
            // Ends when every spawning thread has dropped its sender: none spawns any more.
            spawning.arrivals.iter().collect()
        } else {
            spawning.arrivals.try_iter().collect()
        };
        for (i, started) in arrivals {
            match started {
                Ok(child) => self.agents[i].child = Some(child),
                Err(why) => self.agents[i].unstarted = Some(why),
            }
        }
    }

    /// Let the spawning threads end: only once their agents have (see [`Spawning`]).
    fn release_spawners(&mut self) {
        if let Some(spawning) = self.spawning.take() {
            drop(spawning.release);
            let _ = spawning.spawner.join();
        }
    }
}

/// Agents started without pacing: fewer than this never starve a handshake.
const BURST: usize = 64;

/// Start every agent, on one thread per core, each taking the next command in turn; stop early
/// when `halt` is raised. Each start is sent as it happens. The threads then stay until
/// `released` says their agents are gone.
fn spawn_all(
    commands: Vec<Mutex<Option<(String, Command, PathBuf)>>>,
    threads: usize,
    exe: &Path,
    halt: &AtomicBool,
    send: mpsc::Sender<(usize, Result<Child, String>)>,
    released: mpsc::Receiver<()>,
) {
    let next = AtomicUsize::new(0);
    let released = Mutex::new(released);
    // Runnable tasks past which spawning waits: a few per core above what else the machine
    // was running when spawning began (a build or another run next to this one would
    // otherwise hold every start back).
    let before = crate::sys::proc::tasks_now().map_or(0, |(r, _)| r);
    let busy = before + 4 * threads.max(1) as u64;
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, commands.len().max(1)) {
            let send = send.clone();
            let (next, commands, released) = (&next, &commands, &released);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= commands.len() || halt.load(Ordering::Relaxed) {
                        break;
                    }
                    // Past the first burst, start no faster than the machine runs what was
                    // started: thousands of agents starting at once starve the handshakes of
                    // those already up, whose deadlines then pass (measured at 5000 of 10 000
                    // sites on 2 cores). A small fleet starts at once: pacing it held the last
                    // of 10 agents back while the others loaded their data, 0.2 s that a
                    // projection then counted as the sites' start.
                    while i >= BURST
                        && crate::sys::proc::tasks_now().is_some_and(|(r, _)| r > busy)
                        && !halt.load(Ordering::Relaxed)
                    {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    let Some((site, mut cmd, out)) =
                        commands[i].lock().ok().and_then(|mut c| c.take())
                    else {
                        continue;
                    };
                    let started = File::create(&out)
                        .and_then(|f| Ok((f.try_clone()?, f)))
                        .map_err(|e| format!("{}: {e}", out.display()))
                        .and_then(|(stdout, stderr)| {
                            cmd.stdout(stdout)
                                .stderr(stderr)
                                .spawn()
                                .map_err(|e| format!("{}: {e}", exe.display()))
                        });
                    // The output files' descriptors go with `cmd`, now that the agent has them.
                    drop(cmd);
                    if let Ok(child) = &started {
                        children::track(child.id());
                        tracing::info!(phase = "launch", %site, pid = child.id(), "agent started");
                    }
                    // The fleet no longer listening means its agents were killed: so this one.
                    if let Err(mpsc::SendError((_, Ok(mut child)))) = send.send((i, started)) {
                        let _ = child.kill();
                        let _ = child.wait();
                        children::untrack(child.id());
                    }
                }
                drop(send);
                // Parked until the agents are gone; the lock passes from one thread to the next.
                if let Ok(released) = released.lock() {
                    let _ = released.recv();
                }
            });
        }
        drop(send);
    });
}

impl Drop for LocalFleet {
    /// Whatever happened, no agent outlives the fleet.
    fn drop(&mut self) {
        self.arrived(true);
        for a in &mut self.agents {
            if let (None, Some(child)) = (&a.exited, a.child.as_mut()) {
                let _ = child.kill();
                let _ = child.wait();
                children::untrack(child.id());
            }
        }
        self.release_spawners();
    }
}
