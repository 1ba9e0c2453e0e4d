//! The `vm` provider: one virtual machine per site, booted by fedsim from an image it built
//! ([`image`]), each on its own restricted user-mode network ([`machine`]). Once a VM answers SSH
//! with the host key it announced on its serial console, the `ssh` provider does the rest
//! (agent, bundle, start, logs), with the coordinator reached through SSH reverse tunnels.
//!
//! VMs are slow to boot, so a fleet can stay up between runs: `fedsim fleet up` boots it and
//! writes down where each VM is (in fedsim's cache, under `fleets/<scenario>`); `fedsim run`
//! uses a fleet that is up and leaves it up, and otherwise boots its own and stops it at the end.

pub mod console;
pub mod image;
pub mod machine;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::remote::SshFleet;
use super::ssh::Ssh;
use super::{Dial, Fleet, FleetError, SiteExit};
use crate::bundle::Bundle;
use crate::scenario::{Scenario, SiteLink, SiteSpec, VmSpec};
use console::ConsoleLog;
use image::Image;
use machine::{Machine, MachineState};

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("site image: {reason}{}", log.as_ref().map(|l| format!(" (log: {})", l.display())).unwrap_or_default())]
    Image {
        reason: String,
        log: Option<PathBuf>,
    },
    #[error("VM of site {site}: {reason}")]
    Boot { site: String, reason: String },
    #[error("fleet {name}: {reason}")]
    Fleet { name: String, reason: String },
}

impl From<VmError> for FleetError {
    fn from(e: VmError) -> FleetError {
        let site = match &e {
            VmError::Boot { site, .. } => site.clone(),
            _ => "all".to_string(),
        };
        FleetError::Install {
            site,
            reason: e.to_string(),
        }
    }
}

/// What `fedsim fleet up` writes down, so later commands find the VMs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetState {
    pub scenario: String,
    pub image: PathBuf,
    pub known_hosts: PathBuf,
    pub started: String,
    pub machines: Vec<MachineState>,
    /// Why the fleet cannot serve another run (a kill fault powered a VM off), if it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken: Option<String>,
}

/// Where the fleet of a scenario that stays up is kept.
pub fn fleet_dir(scenario: &str) -> PathBuf {
    image::cache_root().join("fleets").join(scenario)
}

impl FleetState {
    pub fn load(name: &str) -> Option<FleetState> {
        let text = std::fs::read_to_string(fleet_dir(name).join("fleet.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Refuse a fleet a fault broke: its next run says what happened and what to do.
    pub fn usable(&self, source: &Path) -> Result<(), VmError> {
        match &self.broken {
            None => Ok(()),
            Some(why) => Err(VmError::Fleet {
                name: self.scenario.clone(),
                reason: format!(
                    "is broken: {why}; run `fedsim fleet down -c {s}`, then `fedsim fleet up -c {s}`",
                    s = source.display()
                ),
            }),
        }
    }

    fn save(&self) -> Result<(), VmError> {
        let dir = fleet_dir(&self.scenario);
        crate::sys::fsio::write_json_atomic(&dir.join("fleet.json"), self).map_err(|e| {
            VmError::Fleet {
                name: self.scenario.clone(),
                reason: e.to_string(),
            }
        })
    }

    /// Every fleet that stays up, by scenario name.
    pub fn all() -> Vec<FleetState> {
        let mut out: Vec<FleetState> = std::fs::read_dir(image::cache_root().join("fleets"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| FleetState::load(&e.file_name().to_string_lossy()))
            .collect();
        out.sort_by(|a, b| a.scenario.cmp(&b.scenario));
        out
    }
}

/// The site names of a scenario on provider "vm".
fn site_names(s: &Scenario) -> Vec<String> {
    (1..=s.partition.sites)
        .map(|i| format!("site-{i}"))
        .collect()
}

/// SSH to one VM: root, the image's key, the run's (or the fleet's) known_hosts.
fn ssh_spec(m: &MachineState, key: &Path, known_hosts: &Path) -> SiteSpec {
    SiteSpec {
        name: m.site.clone(),
        count: 1,
        host: "127.0.0.1".into(),
        port: m.port,
        user: "root".into(),
        key: key.to_path_buf(),
        known_hosts: Some(known_hosts.to_path_buf()),
        env: None,
        cut_command: None,
    }
}

/// Boot one VM per site, in parallel, and wait until every one answers SSH with the host key
/// it announced on its console (pinned in `known_hosts`; nothing is trusted on first use).
fn boot_all(
    image: &Image,
    sites: &[String],
    dir: &Path,
    spec: &VmSpec,
    owned: bool,
    known_hosts: &Path,
    started: &mut dyn FnMut(&[MachineState]) -> Result<(), VmError>,
) -> Result<(Vec<Machine>, Vec<ConsoleLog>), VmError> {
    let mut machines: Vec<Machine> = Vec::new();
    let mut consoles = Vec::new();
    // Any failure, a cancel included, takes down every VM started so far: none is left running
    // unrecorded (a fleet that stays up is recorded as each qemu starts, by `started`).
    let fail = |machines: &mut Vec<Machine>, e: VmError| {
        for m in machines.iter_mut() {
            m.destroy();
        }
        e
    };
    for site in sites {
        let m = match Machine::boot(image, site, &dir.join(site), spec, owned) {
            Ok(m) => m,
            Err(e) => return Err(fail(&mut machines, e)),
        };
        consoles.push(ConsoleLog::follow(m.console(), site.clone(), 0));
        machines.push(m);
        let states: Vec<MachineState> = machines.iter().map(|m| m.state.clone()).collect();
        if let Err(e) = started(&states) {
            return Err(fail(&mut machines, e));
        }
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(spec.boot_timeout_secs);
    let mut keys: Vec<Option<String>> = vec![None; machines.len()];
    let mut ready = vec![false; machines.len()];
    let mut refused: Vec<Option<String>> = vec![None; machines.len()];
    while ready.iter().any(|r| !r) {
        if crate::sys::cancel::requested() {
            let e = VmError::Fleet {
                name: "boot".into(),
                reason: "cancelled; every VM started was stopped".into(),
            };
            return Err(fail(&mut machines, e));
        }
        for i in 0..machines.len() {
            if ready[i] {
                continue;
            }
            let m = &mut machines[i];
            if !m.alive() {
                let log = std::fs::read_to_string(m.state.dir.join("qemu.log")).unwrap_or_default();
                let e = VmError::Boot {
                    site: m.state.site.clone(),
                    reason: format!(
                        "qemu exited while booting: {}",
                        crate::fleet::ssh::last_line(&log)
                    ),
                };
                return Err(fail(&mut machines, e));
            }
            if keys[i].is_none() {
                keys[i] = m.announced_host_key();
                if let Some(k) = &keys[i] {
                    let line = format!("[127.0.0.1]:{} {k}\n", m.state.port);
                    use std::io::Write;
                    let written = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(known_hosts)
                        .and_then(|mut f| f.write_all(line.as_bytes()));
                    if let Err(err) = written {
                        let e = VmError::Boot {
                            site: m.state.site.clone(),
                            reason: format!("{}: {err}", known_hosts.display()),
                        };
                        return Err(fail(&mut machines, e));
                    }
                    tracing::info!(phase = "provision", site = %m.state.site, secs = started.elapsed().as_secs_f64(), "VM announced its host key");
                }
                continue;
            }
            let spec = ssh_spec(&m.state, &image.key, known_hosts);
            match Ssh::connect(&spec, Duration::from_secs(3)) {
                Ok(_) => {
                    ready[i] = true;
                    tracing::info!(phase = "provision", site = %m.state.site, secs = started.elapsed().as_secs_f64(), "VM answers SSH");
                }
                Err(e) => refused[i] = Some(e.to_string()),
            }
        }
        if Instant::now() >= deadline {
            let late: Vec<usize> = (0..machines.len()).filter(|&i| !ready[i]).collect();
            let first = late.first().copied().unwrap_or(0);
            // The VMs go, and their consoles with them: the error carries the console's end.
            let console = std::fs::read_to_string(machines[first].console()).unwrap_or_default();
            let tail: Vec<&str> = console
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            let tail = tail[tail.len().saturating_sub(3)..].join(" | ");
            let e = VmError::Boot {
                site: machines[first].state.site.clone(),
                reason: format!(
                    "not answering SSH after {:.0} s ([vm] boot_timeout_secs){}; every VM started was stopped; its console ended with: {}",
                    spec.boot_timeout_secs,
                    refused[first]
                        .as_ref()
                        .map(|e| format!(" (the last login: {e})"))
                        .unwrap_or_default(),
                    if tail.is_empty() { "(nothing)" } else { tail.as_str() }
                ),
            };
            return Err(fail(&mut machines, e));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    Ok((machines, consoles))
}

/// `fedsim fleet up`: boot the scenario's VMs and leave them up.
pub fn up(scenario: &Scenario) -> Result<FleetState, VmError> {
    let name = scenario.scenario.name.clone();
    if let Some(state) = FleetState::load(&name) {
        let mut alive = state.machines.clone().into_iter().map(Machine::adopt);
        if alive.all(|m| m.is_running()) {
            return Ok(state);
        }
        down(&name)?;
    }
    let image = Image::ensure()?;
    let dir = fleet_dir(&name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| VmError::Fleet {
        name: name.clone(),
        reason: e.to_string(),
    })?;
    let known_hosts = dir.join("known_hosts");
    let mut state = FleetState {
        scenario: name.clone(),
        image: image.dir.clone(),
        known_hosts: known_hosts.clone(),
        started: chrono::Utc::now().to_rfc3339(),
        machines: Vec::new(),
        broken: None,
    };
    // Recorded as each qemu starts: `fleet status` and `fleet down` find every VM there is, even
    // while the fleet boots, or if this process is killed before it ends.
    let mut record = |machines: &[MachineState]| {
        state.machines = machines.to_vec();
        state.save()
    };
    match boot_all(
        &image,
        &site_names(scenario),
        &dir,
        &scenario.vm,
        false,
        &known_hosts,
        &mut record,
    ) {
        Ok(_) => Ok(state),
        Err(e) => {
            let _ = down(&name);
            Err(e)
        }
    }
}

/// `fedsim fleet down`: stop the VMs of a fleet that stays up and remove its files.
pub fn down(name: &str) -> Result<usize, VmError> {
    let dir = fleet_dir(name);
    let machines = FleetState::load(name)
        .map(|s| s.machines)
        .unwrap_or_default();
    let n = machines.len();
    for m in machines {
        Machine::adopt(m).destroy();
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| VmError::Fleet {
            name: name.to_string(),
            reason: format!("{}: {e}", dir.display()),
        })?;
    }
    Ok(n)
}

/// For `fedsim fleet status`: each VM and whether its qemu is running.
pub fn status(state: &FleetState) -> Vec<(MachineState, bool)> {
    state
        .machines
        .iter()
        .map(|m| {
            let alive = Machine::adopt(m.clone()).alive();
            (m.clone(), alive)
        })
        .collect()
}

pub struct VmFleet {
    scenario: String,
    sites: Vec<String>,
    spec: VmSpec,
    /// Each linked site's link, resolved from the `[[links]]` entries that cover it.
    links: Vec<(String, SiteLink)>,
    agent_exe: PathBuf,
    progress: bool,
    /// This run's own VMs live here (a fleet that stays up lives in the cache).
    run_dir: PathBuf,
    vms_dir: PathBuf,
    /// The fleet was up before the run, and stays up after it.
    kept: bool,
    image: Option<Image>,
    known_hosts: PathBuf,
    machines: Vec<Machine>,
    consoles: Vec<ConsoleLog>,
    inner: Option<SshFleet>,
    /// Sites whose power-off was already reported.
    reported: Vec<String>,
    /// Sites whose link a fault cut: reconnected when the run stops, so their agents can be
    /// stopped and their logs pulled.
    cut: Vec<String>,
}

/// SSH calls give up after this long: an emulated CPU busy starting the agent can keep sshd
/// from answering for many seconds.
const SSH_TIMEOUT: Duration = Duration::from_secs(20);

impl VmFleet {
    /// The fleet for a run: the scenario's fleet if it is up, else VMs of the run's own.
    pub fn new(
        scenario: &Scenario,
        paths: &crate::fleet::RunPaths,
        agent_exe: &Path,
        progress: bool,
    ) -> Result<VmFleet, VmError> {
        let name = scenario.scenario.name.clone();
        let sites = site_names(scenario);
        let mut fleet = VmFleet {
            scenario: name.clone(),
            sites: sites.clone(),
            spec: scenario.vm.clone(),
            // On the simulated clock the links are the projection's, not netem's.
            links: scenario
                .site_names()
                .into_iter()
                .filter(|_| !scenario.clock.simulated())
                .filter_map(|name| scenario.link_of(&name).map(|l| (name, l)))
                .collect(),
            agent_exe: agent_exe.to_path_buf(),
            progress,
            run_dir: paths.root.clone(),
            vms_dir: paths.vms.clone(),
            kept: false,
            image: None,
            known_hosts: paths.known_hosts.clone(),
            machines: Vec::new(),
            consoles: Vec::new(),
            inner: None,
            reported: Vec::new(),
            cut: Vec::new(),
        };
        if let Some(state) = FleetState::load(&name) {
            state.usable(&scenario.source)?;
            let mut machines: Vec<Machine> =
                state.machines.iter().cloned().map(Machine::adopt).collect();
            let names: Vec<&str> = machines.iter().map(|m| m.state.site.as_str()).collect();
            if names != sites.iter().map(String::as_str).collect::<Vec<_>>() {
                return Err(VmError::Fleet {
                    name,
                    reason: format!(
                        "is up with sites {} but the scenario has {}; `fedsim fleet down` it first",
                        names.join(", "),
                        sites.join(", ")
                    ),
                });
            }
            if let Some(dead) = machines.iter_mut().find(|m| !m.is_running()) {
                return Err(VmError::Fleet {
                    name,
                    reason: format!(
                        "VM of {} is not running; `fedsim fleet down` and `fedsim fleet up` again",
                        dead.state.site
                    ),
                });
            }
            tracing::info!(phase = "provision", fleet = %name, "using the fleet that is up");
            fleet.consoles = machines
                .iter()
                .map(|m| {
                    let from = std::fs::metadata(m.console()).map_or(0, |md| md.len());
                    ConsoleLog::follow(m.console(), m.state.site.clone(), from)
                })
                .collect();
            fleet.kept = true;
            fleet.known_hosts = state.known_hosts.clone();
            fleet.image = Some(image::Image {
                key: state.image.join("id_ed25519"),
                base: state.image.join("base.raw"),
                kernel: state.image.join("vmlinuz"),
                initrd: state.image.join("initrd.img"),
                dir: state.image,
            });
            fleet.machines = machines;
        }
        Ok(fleet)
    }

    /// Whether the scenario's fleet is up (for `fedsim prep`, which distributes onto it).
    pub fn is_up(&self) -> bool {
        self.kept
    }

    fn ensure_booted(&mut self) -> Result<(), VmError> {
        if !self.machines.is_empty() {
            return Ok(());
        }
        let image = Image::ensure()?;
        let (machines, consoles) = boot_all(
            &image,
            &self.sites,
            &self.vms_dir,
            &self.spec,
            true,
            &self.known_hosts,
            &mut |_| Ok(()),
        )?;
        self.machines = machines;
        self.consoles = consoles;
        self.image = Some(image);
        Ok(())
    }

    fn machine(&mut self, site: &str) -> Result<&mut Machine, FleetError> {
        self.machines
            .iter_mut()
            .find(|m| m.state.site == site)
            .ok_or_else(|| FleetError::Start {
                site: site.into(),
                reason: "no such VM".into(),
            })
    }

    /// Shape each site's link (netem on the guest's interface, for what the site sends), or
    /// take the shaping off again (`clear`): all sites at once, over the run's SSH connections.
    fn shape_links(&mut self, clear: bool) -> Result<(), FleetError> {
        let dev = "$(ip -o -4 route show to 10.0.2.0/24 | awk '{print $3; exit}')";
        let cmds: Vec<Option<String>> = self
            .machines
            .iter()
            .map(|m| {
                let (_, l) = self.links.iter().find(|(s, _)| *s == m.state.site)?;
                Some(if clear {
                    format!("tc qdisc del dev {dev} root 2>/dev/null; true")
                } else {
                    format!("tc qdisc replace dev {dev} root netem {}", l.netem())
                })
            })
            .collect();
        let inner = self.inner.as_mut().ok_or(FleetError::Start {
            site: "all".into(),
            reason: "install first".into(),
        })?;
        let shaped = inner.exec_each(&cmds);
        for (m, done) in self.machines.iter().zip(shaped) {
            let site = &m.state.site;
            done.map_err(|reason| FleetError::Start {
                site: site.clone(),
                reason: format!("link conditions: {reason}"),
            })?;
            if let (false, Some((_, l))) = (clear, self.links.iter().find(|(s, _)| s == site)) {
                tracing::info!(phase = "launch", %site, link = %l.describe(), "link conditions applied");
            }
        }
        Ok(())
    }
}

impl VmFleet {
    /// The installed fleet, its links' conditions applied: what starts anything on the sites.
    fn shaped(&mut self) -> Result<&mut SshFleet, FleetError> {
        self.shape_links(false)?;
        self.inner.as_mut().ok_or(FleetError::Start {
            site: "all".into(),
            reason: "install first".into(),
        })
    }
}

impl Fleet for VmFleet {
    fn install(&mut self, bundles: &mut [Bundle]) -> Result<(), FleetError> {
        self.ensure_booted()?;
        let key = self.image.as_ref().expect("booted").key.clone();
        let specs: Vec<SiteSpec> = self
            .machines
            .iter()
            .map(|m| ssh_spec(&m.state, &key, &self.known_hosts))
            .collect();
        let inner = self.inner.insert(
            SshFleet::new(
                specs,
                &self.scenario,
                &super::run_id_of(&self.run_dir),
                self.agent_exe.clone(),
                SSH_TIMEOUT,
                self.progress,
            )
            .with_tunnel(true),
        );
        inner.install(bundles)
    }

    fn start(&mut self, dial: &Dial) -> Result<(), FleetError> {
        self.shaped()?.start(dial)
    }

    fn dead_site(&mut self) -> Option<(String, String)> {
        for m in &mut self.machines {
            if !self.reported.contains(&m.state.site) && !m.alive() {
                self.reported.push(m.state.site.clone());
                return Some((
                    m.state.site.clone(),
                    "its VM is powered off (qemu exited)".into(),
                ));
            }
        }
        self.inner.as_mut()?.dead_site()
    }

    fn stop(&mut self, grace: Duration) -> Vec<SiteExit> {
        for site in std::mem::take(&mut self.cut) {
            if let Some(m) = self.machines.iter().find(|m| m.state.site == site) {
                if let Err(e) = m.monitor("set_link n0 on") {
                    tracing::warn!(phase = "finish", %site, error = %e, "link not restored");
                }
            }
            if let Some(inner) = self.inner.as_mut() {
                inner.set_quiet(&site, false);
            }
        }
        let exits = self
            .inner
            .as_mut()
            .map(|i| i.stop(grace))
            .unwrap_or_default();
        if self.kept && !self.links.is_empty() {
            if let Err(e) = self.shape_links(true) {
                tracing::warn!(phase = "finish", error = %e, "link conditions not removed");
            }
        }
        exits
    }

    fn collect_logs(&mut self, dest: &Path) -> Result<Vec<String>, FleetError> {
        // The consoles first: they matter most when a VM is the problem.
        self.consoles.clear();
        for m in &self.machines {
            let from = console::jsonl(&m.console());
            let _ = std::fs::copy(&from, dest.join(format!("{}.console.jsonl", m.state.site)));
        }
        match self.inner.as_mut() {
            Some(i) => i.collect_logs(dest),
            None => Ok(Vec::new()),
        }
    }

    fn kill(&mut self, site: &str) -> Result<(), FleetError> {
        self.machine(site)?.power_off();
        if self.kept {
            // A fleet that stays up has lost a VM: say so where its next run and `fleet status`
            // look, instead of a bare "Connection refused" later.
            if let Some(mut state) = FleetState::load(&self.scenario) {
                state.broken = Some(format!(
                    "the VM of {site} was powered off by a kill fault (run {})",
                    super::run_id_of(&self.run_dir)
                ));
                if let Err(e) = state.save() {
                    tracing::warn!(phase = "federate", error = %e, "the fleet could not be marked broken");
                }
            }
        }
        Ok(())
    }

    fn cut(&mut self, site: &str) -> Result<(), FleetError> {
        let m = self.machine(site)?;
        m.monitor("set_link n0 off")
            .map_err(|e| FleetError::Start {
                site: site.into(),
                reason: e.to_string(),
            })?;
        self.cut.push(site.to_string());
        if let Some(inner) = self.inner.as_mut() {
            inner.set_quiet(site, true);
        }
        Ok(())
    }

    fn pids(&mut self) -> Vec<(String, u32)> {
        self.inner.as_mut().map(|i| i.pids()).unwrap_or_default()
    }

    fn run_each(
        &mut self,
        scripts: &[Option<String>],
        limit: Duration,
    ) -> Vec<Result<String, String>> {
        match self.inner.as_mut() {
            Some(i) => i.run_each(scripts, limit),
            None => scripts
                .iter()
                .map(|_| Err("install first".into()))
                .collect(),
        }
    }

    fn put_each(&mut self, files: &[Vec<super::SiteFile>]) -> Vec<Result<(), String>> {
        match self.inner.as_mut() {
            Some(i) => i.put_each(files),
            None => files.iter().map(|_| Err("install first".into())).collect(),
        }
    }

    fn start_script(&mut self, dial: &Dial, script: &str) -> Result<(), FleetError> {
        self.shaped()?.start_script(dial, script)
    }

    fn location(&self, site: &str) -> Option<String> {
        let m = self.machines.iter().find(|m| m.state.site == site)?;
        Some(format!(
            "VM {} (qemu pid {}, ssh 127.0.0.1:{}){}",
            site,
            m.state.pid,
            m.state.port,
            if self.kept { ", fleet kept up" } else { "" }
        ))
    }
}

/// How to reach each VM of a fleet that is up (for `fedsim check`).
pub fn site_specs(state: &FleetState) -> Vec<SiteSpec> {
    let key = state.image.join("id_ed25519");
    state
        .machines
        .iter()
        .map(|m| ssh_spec(m, &key, &state.known_hosts))
        .collect()
}

/// For `fedsim fleet status`: can each VM be reached over SSH right now?
pub fn reachable(state: &FleetState, m: &MachineState) -> bool {
    let spec = ssh_spec(m, &state.image.join("id_ed25519"), &state.known_hosts);
    Ssh::connect(&spec, Duration::from_secs(3))
        .and_then(|s| s.exec("true"))
        .is_ok_and(|(code, _, _)| code == 0)
}

/// `fedsim prep` put bundles on this fleet: what it put, so a run can tell whether to reuse.
#[derive(Debug, Serialize, Deserialize)]
pub struct Prepared {
    pub prep_dir: PathBuf,
    /// Each site's data checksum, as prep wrote it.
    pub data_sha256: Vec<(String, String)>,
}

/// Record that `fedsim prep` put these bundles on the scenario's fleet.
pub fn mark_prepared(scenario: &str, prepared: &Prepared) -> Result<(), VmError> {
    crate::sys::fsio::write_json_atomic(&fleet_dir(scenario).join("prepared.json"), prepared)
        .map_err(|e| VmError::Fleet {
            name: scenario.into(),
            reason: e.to_string(),
        })
}

/// The credentials `fedsim prep` put on each site of the scenario's fleet (each read from the
/// site's own `.env`, as the person at that site would), so a run reuses the bundles there. None
/// when no fleet is up or prep did not put bundles on it.
pub fn prepared_credentials(
    scenario: &Scenario,
) -> Option<Result<Vec<Option<crate::bundle::GivenCredentials>>, FleetError>> {
    let name = &scenario.scenario.name;
    let state = FleetState::load(name)?;
    if let Err(e) = state.usable(&scenario.source) {
        return Some(Err(FleetError::Install {
            site: "fleet".into(),
            reason: e.to_string(),
        }));
    }
    let text = std::fs::read_to_string(fleet_dir(name).join("prepared.json")).ok()?;
    let prepared: Prepared = serde_json::from_str(&text).ok()?;
    let key = state.image.join("id_ed25519");
    let read = |m: &MachineState| -> Result<Option<crate::bundle::GivenCredentials>, FleetError> {
        let fail = |reason: String| FleetError::Install {
            site: m.site.clone(),
            reason,
        };
        let ssh = Ssh::connect(&ssh_spec(m, &key, &state.known_hosts), SSH_TIMEOUT)
            .map_err(|e| fail(e.to_string()))?;
        let path = format!(".fedsim/{name}/{}", crate::bundle::env::FILE);
        match ssh.exec(&format!(
            "cat {} 2>/dev/null",
            super::ssh::shell_quote(&path)
        )) {
            Ok((0, text, _)) => {
                let mut given =
                    crate::bundle::credentials_from_env_text(&m.site, Path::new(&path), &text)
                        .map_err(|e| fail(e.to_string()))?;
                given.generated = true;
                Ok(Some(given))
            }
            _ => Ok(None),
        }
    };
    tracing::info!(phase = "prep", fleet = %name, prep = %prepared.prep_dir.display(), "the fleet holds bundles from fedsim prep; reading each site's credentials there");
    Some(state.machines.iter().map(read).collect())
}
