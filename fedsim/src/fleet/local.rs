//! The `local` provider: each site is its own `fedsim agent` OS process in its own working
//! directory, with a scrubbed environment. Nothing is shared but the coordinator's address.
//!
//! Agents run in process groups of their own, so a terminal's Ctrl-C (which reaches the whole
//! foreground group) goes to the controller alone, and the controller decides how they stop.
//! They are started without a `pre_exec` hook, so the standard library can use posix_spawn
//! instead of forking the (possibly large) controller; each agent ties its life to the
//! controller itself (see [`crate::sys::children`]).

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Dial, Fleet, FleetError, SiteExit};
use crate::bundle::{self, Bundle};
use crate::sys::children::{self, PARENT_VAR};

struct Agent {
    site: String,
    dir: PathBuf,
    child: Option<Child>,
    exited: Option<SiteExit>,
}

pub struct LocalFleet {
    agent_exe: PathBuf,
    /// Each site's directory is `<sites_dir>/<site>`: its bundle and working directory.
    /// The run directory: what a site may read besides its own folder.
    run_dir: PathBuf,
    sites_dir: PathBuf,
    agents: Vec<Agent>,
    connect_timeout: Duration,
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
                exited: None,
            });
        }
        Ok(())
    }

    fn start(&mut self, dial: &Dial) -> Result<(), FleetError> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = (cores / self.agents.len().max(1)).max(1);
        for a in &mut self.agents {
            let start = |reason: String| FleetError::Start {
                site: a.site.clone(),
                reason,
            };
            let out = File::create(a.dir.join("agent.out")).map_err(|e| start(e.to_string()))?;
            let err = out.try_clone().map_err(|e| start(e.to_string()))?;
            // A scratch folder of its own: the sandbox lets it write nowhere else.
            let tmp = a.dir.join("tmp");
            std::fs::create_dir_all(&tmp).map_err(|e| start(e.to_string()))?;
            let run_dir = std::path::absolute(&self.run_dir).map_err(|e| start(e.to_string()))?;
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
                .stdout(out)
                .stderr(err)
                .process_group(0);
            let child = cmd
                .spawn()
                .map_err(|e| start(format!("{}: {e}", self.agent_exe.display())))?;
            children::track(child.id());
            tracing::info!(phase = "launch", site = %a.site, pid = child.id(), "agent started");
            a.child = Some(child);
        }
        Ok(())
    }

    fn dead_site(&mut self) -> Option<(String, String)> {
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
        self.agents
            .iter()
            .filter_map(|a| a.exited.clone())
            .collect()
    }

    fn collect_logs(&mut self, dest: &Path) -> Result<Vec<String>, FleetError> {
        let mut names = Vec::new();
        for a in &self.agents {
            let src = agent_log(&a.dir);
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

    fn pids(&self) -> Vec<(String, u32)> {
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

impl Drop for LocalFleet {
    /// Whatever happened, no agent outlives the fleet.
    fn drop(&mut self) {
        for a in &mut self.agents {
            if let (None, Some(child)) = (&a.exited, a.child.as_mut()) {
                let _ = child.kill();
                let _ = child.wait();
                children::untrack(child.id());
            }
        }
    }
}

/// Where a local site's agent writes its log: in its own folder.
pub fn agent_log(site_dir: &Path) -> PathBuf {
    site_dir.join("agent.jsonl")
}
