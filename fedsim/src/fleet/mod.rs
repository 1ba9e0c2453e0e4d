//! Where sites run. One trait, one implementation per provider; the federation does not care which.

pub mod faults;
pub mod hosts;
pub mod local;
pub mod package;
pub mod remote;
pub mod ssh;
pub mod tunnel;
pub mod vagrant;
pub mod vm;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::bundle::Bundle;
use crate::scenario::{Provider, Scenario};

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("cannot install site {site}: {reason}")]
    Install { site: String, reason: String },
    #[error("cannot start the agent of {site}: {reason}")]
    Start { site: String, reason: String },
    #[error("cannot collect the log of {site}: {reason}")]
    Logs { site: String, reason: String },
    #[error("vagrant: {0}")]
    Vagrant(#[from] vagrant::VagrantError),
}

impl FleetError {
    pub fn site(&self) -> &str {
        match self {
            FleetError::Install { site, .. }
            | FleetError::Start { site, .. }
            | FleetError::Logs { site, .. } => site,
            FleetError::Vagrant(e) => e.site().unwrap_or("vagrant"),
        }
    }

    /// Whether the scenario or its hosts are at fault (exit 2), not a step that failed on
    /// the way (a `vagrant up` that broke, exit 1).
    pub fn is_input(&self) -> bool {
        match self {
            FleetError::Vagrant(e) => e.is_input(),
            _ => true,
        }
    }
}

/// How a site's agent ended.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SiteExit {
    pub site: String,
    pub pid: u32,
    /// Exit code, or None when it was killed by a signal.
    pub code: Option<i32>,
    /// True when fedsim had to kill it (it did not exit on its own when the run ended).
    pub killed: bool,
}

/// Where each site's agent dials: the coordinator, or the relay of the link it is behind.
#[derive(Debug, Clone)]
pub struct Dial {
    pub coordinator: SocketAddr,
    pub relays: std::collections::BTreeMap<String, SocketAddr>,
}

impl Dial {
    pub fn of(&self, site: &str) -> SocketAddr {
        self.relays.get(site).copied().unwrap_or(self.coordinator)
    }
}

/// A file for a site: its bytes (shared: the same wheels go to many sites), its path relative
/// to the site's folder for this run, its mode.
pub type SiteFile = (std::sync::Arc<[u8]>, String, i32);

/// What a fleet that installs no other program than the agent says when asked to.
const NO_NODES: &str = "this provider cannot run a platform's nodes";

pub trait Fleet {
    /// Put each bundle on its site (data and `.env`). Takes the files out of the bundles, so
    /// the controller holds no site's token afterwards.
    fn install(&mut self, bundles: &mut [Bundle]) -> Result<(), FleetError>;
    /// Start one agent per site, each told to dial its address in `dial`.
    fn start(&mut self, dial: &Dial) -> Result<(), FleetError>;
    /// A site whose agent has died, with the reason, if any has.
    fn dead_site(&mut self) -> Option<(String, String)>;
    /// Stop every agent (waiting up to `grace` for a clean exit first) and report how each ended.
    fn stop(&mut self, grace: Duration) -> Vec<SiteExit>;
    /// Copy each site's log into `dest/<site>.jsonl`.
    fn collect_logs(&mut self, dest: &Path) -> Result<Vec<String>, FleetError>;
    /// Kill a site's agent at once (fault injection).
    fn kill(&mut self, site: &str) -> Result<(), FleetError>;
    /// Cut a site's network link (fault injection); only fleets with their own links can.
    fn cut(&mut self, site: &str) -> Result<(), FleetError> {
        Err(FleetError::Start {
            site: site.into(),
            reason: "this fleet cannot cut a site's network".into(),
        })
    }
    /// Agent process ids, per site.
    fn pids(&mut self) -> Vec<(String, u32)>;
    /// Run `scripts[i]` with `sh` in the i-th site's folder for this run (None: nothing there),
    /// with `FEDSIM_BUNDLE` (the bundle's folder), `FEDSIM_ROOT` (fedsim's folder on the site)
    /// and `FEDSIM_AGENT` (the installed agent) set; what each printed, or why it failed. A
    /// third-party platform's nodes are set up so, on fleets that install over SSH. Each may
    /// take up to `limit`.
    fn run_each(
        &mut self,
        scripts: &[Option<String>],
        limit: Duration,
    ) -> Vec<Result<String, String>> {
        let _ = limit;
        scripts.iter().map(|_| Err(NO_NODES.to_string())).collect()
    }
    /// Put `files[i]` on the i-th site.
    fn put_each(&mut self, files: &[Vec<SiteFile>]) -> Vec<Result<(), String>> {
        files.iter().map(|_| Err(NO_NODES.to_string())).collect()
    }
    /// Start `sh SCRIPT TARGET LEASE` on every site instead of the agent, detached, in the site's
    /// folder for this run (with the variables of `run_each`), TARGET being the address it
    /// dials (its tunnel's end on the site, when the fleet tunnels) and LEASE where the
    /// controller's lease is heard (`fedsim reap --lease`; "" without a tunnel). Its log is
    /// `node.jsonl` there, what `collect_logs` pulls; `dead_site`, `kill`, `cut` and `stop` then
    /// act on it.
    fn start_script(&mut self, dial: &Dial, script: &str) -> Result<(), FleetError> {
        let _ = (dial, script);
        Err(FleetError::Start {
            site: "all".into(),
            reason: NO_NODES.into(),
        })
    }
    /// Where a site keeps its bundle, for people.
    fn location(&self, site: &str) -> Option<String>;
}

/// SSH calls (connect, each command) give up after this long.
const SSH_TIMEOUT: Duration = Duration::from_secs(15);

/// A run's id: its directory's name (as the coordinator tells the agents).
pub fn run_id_of(run_dir: &Path) -> String {
    let absolute = std::path::absolute(run_dir).unwrap_or_else(|_| run_dir.to_path_buf());
    absolute
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Where a fleet keeps its part of a run: handed in by the pipeline, which owns the run
/// directory's layout.
#[derive(Debug, Clone)]
pub struct RunPaths {
    /// The run directory itself (local sites may read it, nothing above).
    pub root: PathBuf,
    /// Local sites' folders.
    pub sites: PathBuf,
    /// Pulled site logs, consoles, `vagrant.log`.
    pub logs: PathBuf,
    /// The host keys the run pinned.
    pub known_hosts: PathBuf,
    /// Provider vm's per-run VMs.
    pub vms: PathBuf,
}

/// The fleet a scenario asks for, its files where `paths` says. `boot`: a run may bring Vagrant
/// VMs up (and takes down those it did); `fedsim prep` and `fedsim logs` use VMs that are up
/// already.
pub fn for_scenario(
    scenario: &Scenario,
    paths: &RunPaths,
    agent_exe: &Path,
    progress: bool,
    boot: bool,
) -> Result<Box<dyn Fleet>, FleetError> {
    let connect = Duration::from_secs_f64(scenario.federation.connect_timeout_secs);
    let name = &scenario.scenario.name;
    let run_id = run_id_of(&paths.root);
    let ssh = |specs| {
        remote::SshFleet::new(
            specs,
            name,
            &run_id,
            agent_exe.to_path_buf(),
            SSH_TIMEOUT,
            progress,
        )
        .with_tunnel(scenario.fleet.tunnel())
    };
    Ok(match scenario.fleet.provider {
        Provider::Local => Box::new(local::LocalFleet::new(
            agent_exe.to_path_buf(),
            paths.root.clone(),
            paths.sites.clone(),
            connect,
        )),
        // Hosts with many sites (`count`) run them under one supervisor each.
        Provider::Ssh if scenario.sites.iter().any(|s| s.count > 1) => Box::new(
            hosts::HostFleet::new(
                &scenario.sites,
                name,
                &run_id,
                agent_exe.to_path_buf(),
                SSH_TIMEOUT,
                progress,
            )
            .with_tunnel(scenario.fleet.tunnel()),
        ),
        Provider::Ssh => Box::new(ssh(scenario.sites.clone())),
        Provider::Vm => Box::new(vm::VmFleet::new(scenario, paths, agent_exe, progress)?),
        Provider::Vagrant => {
            let v = vagrant::Vagrant::new(&vagrant_dir(scenario), scenario.partition.sites)?;
            let _ = std::fs::create_dir_all(&paths.logs);
            let (machines, specs) = vagrant::Machines::up(
                v,
                boot,
                &paths.logs.join("vagrant.log"),
                &paths.known_hosts,
            )?;
            Box::new(vagrant::VagrantFleet::new(ssh(specs), machines))
        }
    })
}

/// The folder of a vagrant scenario's Vagrantfile: `fleet.vagrant_dir` (made absolute against
/// the scenario file when it was loaded), else the scenario file's own folder.
pub fn vagrant_dir(scenario: &Scenario) -> PathBuf {
    scenario.fleet.vagrant_dir.clone().unwrap_or_else(|| {
        // `-c s.toml` from the project's folder: its parent is "", which is ".".
        scenario
            .source
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `fedsim fleet down -c s.toml` typed in the project's folder: the Vagrantfile is there.
    #[test]
    fn a_scenario_named_without_a_folder_finds_its_vagrantfile_here() {
        let text = "[scenario]\nname = \"v\"\n[data]\npath = \"d.csv\"\n[partition]\nsites = 2\n[algorithm]\nkind = \"svd\"\nk = 1\n[fleet]\nprovider = \"vagrant\"\n";
        let s = Scenario::parse(text, Path::new("s.toml")).unwrap();
        assert_eq!(vagrant_dir(&s), PathBuf::from("."));
        let s = Scenario::parse(text, Path::new("/p/q/s.toml")).unwrap();
        assert_eq!(vagrant_dir(&s), PathBuf::from("/p/q"));
    }
}
