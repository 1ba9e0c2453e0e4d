//! The `ssh` provider: each site is a host (VM, cloud, bare metal) reached over SSH. Provisioning
//! runs in parallel, one progress bar per site: check prerequisites, install the agent (same
//! architecture, skipped when already there), upload the bundle by SFTP (`.env` created with mode
//! 600), start the agent detached. The agent dials the coordinator, so sites open no port.
//!
//! On a site everything lives under `~/.fedsim/` (mode 700): `bin/fedsim-<hash>`, and for each
//! scenario `<scenario>/` holding the bundle (data, `.env`, an external algorithm's files: kept
//! from run to run and reused by checksum) and `<scenario>/runs/<run id>/`, each run's own
//! working directory (`agent.jsonl`, `agent.out`, `agent.exit`, `output/`). Two runs of one
//! scenario never share a log, `fedsim logs RUN_DIR` pulls that run's, and the newest
//! [`KEEP_RUNS`] runs are kept on the site.

use crate::logs::{LogLine, Milestone};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::package::AgentPackage;
use super::ssh::{last_line, shell_quote, Ssh, SshError};
use super::tunnel::Tunnel;
use super::{Dial, Fleet, FleetError, SiteExit};
use crate::bundle::Bundle;
use crate::scenario::SiteSpec;

const PREREQ: &str = include_str!("../../../provision/prereq.sh");

/// Run directories kept on a site per scenario (older ones are removed at the next install).
pub const KEEP_RUNS: usize = 5;

/// How long a command that does real work on a site (checksums, unpacking the agent) may take:
/// ten emulated VMs on two cores took more than the 20 s a plain command gets.
const WORK_LIMIT: Duration = Duration::from_secs(300);

/// How long a poll for a dead agent may wait for its host.
pub(super) const POLL_LIMIT: Duration = Duration::from_secs(2);

pub struct SshFleet {
    specs: Vec<SiteSpec>,
    /// The bundle's folder on the site, relative to the site user's home.
    dir: String,
    /// This run's working folder on the site (`<dir>/runs/<run id>`).
    work: String,
    run_id: String,
    agent_exe: PathBuf,
    connect_timeout: Duration,
    conns: Vec<Option<Ssh>>,
    pids: Vec<Option<u32>>,
    agent: Option<String>,
    bars: MultiProgress,
    last_poll: Instant,
    exits: Vec<Option<SiteExit>>,
    /// Cores each site reported, for its agent's thread count.
    cores: Vec<usize>,
    /// Reach the coordinator through SSH reverse forwards, one per site.
    tunnel: bool,
    tunnels: Vec<Tunnel>,
    /// Sites whose link a fault injection cut.
    cut: Vec<bool>,
    /// Sites not to poll for now (a VM whose link is cut): their silence is the coordinator's to
    /// notice, by heartbeats, not an SSH call's to wait out.
    quiet: Vec<bool>,
    /// What runs on the sites: `agent`, or a platform's `node` (`start_script`). Its files in
    /// the run's folder are named for it: `.jsonl` (log), `.out`, `.exit`.
    program: &'static str,
}

/// The environment mark of everything a site starts for a run (`FEDSIM_SITE_RUN=<run>/<site>`),
/// so that what leaves the process group (a platform's detached workers) is still found.
fn mark(run_id: &str, site: &str) -> String {
    format!("FEDSIM_SITE_RUN={run_id}/{site}")
}

/// A command that kills, on the site, every process carrying `mark` (its environment read from
/// /proc by one grep), what a group kill misses.
fn sweep(mark: &str) -> String {
    format!(
        "for f in $(grep -lzxF {m} /proc/[0-9]*/environ 2>/dev/null); do p=${{f#/proc/}}; kill -s KILL \"${{p%/environ}}\" 2>/dev/null; done; true",
        m = shell_quote(mark)
    )
}

/// The run a site's log says it joined, if that is not `run_id` (the agent logs the Welcome's
/// run id when it connects; a log without one, from before it joined, belongs to no other run).
pub(super) fn other_run(log: &[u8], run_id: &str) -> Option<String> {
    let text = String::from_utf8_lossy(log);
    let joined: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<LogLine>(l).ok())
        .filter(|l| l.milestone == Some(Milestone::Connected))
        .filter_map(|l| l.text("run_id"))
        .collect();
    (!joined.is_empty() && !joined.iter().any(|r| r == run_id)).then(|| joined[0].clone())
}

/// Run `f` for each of `items` in parallel, each with its connection and its progress bar,
/// which ends saying how `step` went; every outcome, in order.
pub(super) fn in_parallel<S: Sync, T: Send>(
    step: &str,
    conns: &mut [Option<Ssh>],
    items: &[S],
    bars: &[ProgressBar],
    f: impl Fn(usize, &S, &mut Option<Ssh>, &ProgressBar) -> Result<T, String> + Sync,
) -> Vec<Result<T, String>> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = conns
            .iter_mut()
            .zip(items)
            .zip(bars)
            .enumerate()
            .map(|(i, ((conn, item), bar))| {
                let f = &f;
                scope.spawn(move || {
                    let r = f(i, item, conn, bar);
                    match &r {
                        Ok(_) => bar.finish_with_message(format!("{step}: done")),
                        Err(e) => bar.abandon_with_message(format!("{step}: FAILED: {e}")),
                    }
                    r
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(format!("{step}: its thread panicked")))
            })
            .collect()
    })
}

/// `step`'s failures, each as (the site to blame, what went wrong), as one error blaming the
/// first and telling all; None when there were none. Named for the step: a log that cannot be
/// pulled is no install error.
pub(super) fn step_error(step: &str, failures: Vec<(String, String)>) -> Option<FleetError> {
    let site = failures.first()?.0.clone();
    let reason = failures
        .iter()
        .map(|(_, r)| r.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    Some(match step {
        "logs" => FleetError::Logs { site, reason },
        "start" | "stop" => FleetError::Start { site, reason },
        _ => FleetError::Install { site, reason },
    })
}

/// What one site's provisioning found.
#[derive(Debug, Clone, Default)]
pub struct Prereqs {
    pub arch: String,
    pub cores: usize,
    pub missing: Option<String>,
}

impl SshFleet {
    /// `scenario` names the site-side folder `~/.fedsim/<scenario>`, `run_id` the run's own
    /// folder in it.
    pub fn new(
        specs: Vec<SiteSpec>,
        scenario: &str,
        run_id: &str,
        agent_exe: PathBuf,
        connect_timeout: Duration,
        progress: bool,
    ) -> Self {
        let n = specs.len();
        let target = if progress && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        SshFleet {
            specs,
            dir: format!(".fedsim/{scenario}"),
            work: format!(".fedsim/{scenario}/runs/{run_id}"),
            run_id: run_id.to_string(),
            agent_exe,
            connect_timeout,
            conns: (0..n).map(|_| None).collect(),
            pids: vec![None; n],
            agent: None,
            bars: MultiProgress::with_draw_target(target),
            last_poll: Instant::now(),
            exits: vec![None; n],
            cores: vec![1; n],
            tunnel: false,
            tunnels: Vec::new(),
            cut: vec![false; n],
            quiet: vec![false; n],
            program: "agent",
        }
    }

    /// Stop (or resume) polling `site` over SSH: its link is cut (or back).
    pub fn set_quiet(&mut self, site: &str, quiet: bool) {
        if let Some(i) = self.specs.iter().position(|s| s.name == site) {
            self.quiet[i] = quiet;
        }
    }

    fn site_index(&self, site: &str) -> Result<usize, FleetError> {
        self.specs
            .iter()
            .position(|s| s.name == site)
            .ok_or_else(|| FleetError::Start {
                site: site.into(),
                reason: "no such site".into(),
            })
    }

    /// Agents dial the coordinator through SSH reverse forwards instead of directly.
    pub fn with_tunnel(mut self, tunnel: bool) -> Self {
        self.tunnel = tunnel;
        self
    }

    /// Where each site's program dials: its address in `dial`, or with a tunnel the tunnel's end
    /// on the site (the tunnels opened here, kept until `stop`); and with a tunnel, where the
    /// controller's lease is heard on the site.
    fn targets(&mut self, dial: &Dial) -> Result<Vec<(String, String)>, FleetError> {
        let mut targets: Vec<(String, String)> = self
            .specs
            .iter()
            .map(|s| (dial.of(&s.name).to_string(), String::new()))
            .collect();
        if self.tunnel {
            // Each tunnel is an SSH login of its own (its session pumps on its own thread): all
            // at once, since a login to an emulated VM takes about a second.
            let timeout = self.connect_timeout;
            let opened: Vec<_> = std::thread::scope(|scope| {
                let handles: Vec<_> = self
                    .specs
                    .iter()
                    .map(|spec| {
                        let to = dial.of(&spec.name);
                        // Logged in here, after the links are shaped: with the login made
                        // during the install instead, a VM's link added 0.22 s a round against
                        // 0.10 s on local sites (tests/vm_agreement.rs; cause not found).
                        scope.spawn(move || Tunnel::open(spec, to, timeout))
                    })
                    .collect();
                handles.into_iter().map(|h| h.join()).collect()
            });
            for ((i, spec), t) in self.specs.iter().enumerate().zip(opened) {
                let t = t
                    .map_err(|_| "tunnel thread panicked".to_string())
                    .and_then(|t| t.map_err(|e| e.to_string()))
                    .map_err(|reason| FleetError::Start {
                        site: spec.name.clone(),
                        reason,
                    })?;
                targets[i] = (
                    format!("127.0.0.1:{}", t.remote_port),
                    format!("127.0.0.1:{}", t.lease_port),
                );
                tracing::info!(phase = "launch", site = %spec.name, remote = %targets[i].0, "reverse tunnel open");
                self.tunnels.push(t);
            }
        }
        Ok(targets)
    }

    /// The variables a platform's steps and node get on a site (see `Fleet::run_each`), as shell
    /// assignments.
    fn site_env(&self, agent: &str) -> String {
        format!(
            "FEDSIM_BUNDLE=\"$HOME\"/{d} FEDSIM_ROOT=\"$HOME\"/.fedsim FEDSIM_AGENT=\"$HOME\"/{a}",
            d = shell_quote(&self.dir),
            a = shell_quote(agent),
        )
    }

    /// The agent this install put on the sites.
    fn installed_agent(&self) -> Result<String, FleetError> {
        self.agent.clone().ok_or(FleetError::Start {
            site: "all".into(),
            reason: "install first".into(),
        })
    }

    fn bar(&self, site: &str) -> ProgressBar {
        let bar = self.bars.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix:<12} {wide_msg}")
                .expect("static template"),
        );
        bar.set_prefix(site.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }

    /// Run `f` for every site in parallel, each with its connection and progress bar; collect
    /// every failure, naming each site.
    fn each<T: Send>(
        &mut self,
        step: &str,
        f: impl Fn(usize, &SiteSpec, &mut Option<Ssh>, &ProgressBar) -> Result<T, String> + Sync,
    ) -> Result<Vec<T>, FleetError> {
        let bars: Vec<ProgressBar> = self.specs.iter().map(|s| self.bar(&s.name)).collect();
        let results = in_parallel(step, &mut self.conns, &self.specs, &bars, f);
        let failures: Vec<(String, String)> = results
            .iter()
            .zip(&self.specs)
            .filter_map(|(r, s)| {
                r.as_ref()
                    .err()
                    .map(|e| (s.name.clone(), format!("{}: {e}", s.name)))
            })
            .collect();
        if let Some(e) = step_error(step, failures) {
            return Err(e);
        }
        Ok(results.into_iter().map(|r| r.expect("checked")).collect())
    }

    fn connect(spec: &SiteSpec, conn: &mut Option<Ssh>, timeout: Duration) -> Result<(), String> {
        if conn.is_none() {
            *conn = Some(Ssh::connect(spec, timeout).map_err(|e| e.to_string())?);
        }
        Ok(())
    }

    /// Run `cmds[i]` on the i-th site (None: nothing there), all at once over the run's own
    /// connections, since a new login to an emulated VM takes about a second. A connection that
    /// fails (a link that was cut and came back) is made again, once. Each outcome.
    pub fn exec_each(&mut self, cmds: &[Option<String>]) -> Vec<Result<String, String>> {
        self.exec_each_within(cmds, None)
    }

    /// [`SshFleet::exec_each`], each command given up to `limit` (else a plain command's).
    fn exec_each_within(
        &mut self,
        cmds: &[Option<String>],
        limit: Option<Duration>,
    ) -> Vec<Result<String, String>> {
        let bars: Vec<ProgressBar> = cmds.iter().map(|_| ProgressBar::hidden()).collect();
        let timeout = self.connect_timeout;
        let specs = self.specs.clone();
        in_parallel("exec", &mut self.conns, cmds, &bars, |i, cmd, conn, _| {
            let Some(cmd) = cmd else {
                return Ok(String::new());
            };
            let mut tried = 0;
            loop {
                Self::connect(&specs[i], conn, timeout)?;
                let ssh = conn.as_ref().expect("connected");
                let done = match limit {
                    Some(l) => ssh.exec_within(cmd, l),
                    None => ssh.exec(cmd),
                };
                match done {
                    Ok((0, out, _)) => return Ok(out),
                    Ok((_, out, err)) => return Err(format!("{out}{err}").trim().to_string()),
                    Err(e) if tried > 0 => return Err(e.to_string()),
                    Err(_) => {
                        *conn = None;
                        tried += 1;
                    }
                }
            }
        })
    }
}

/// Run the prerequisites script on a site.
pub fn prerequisites(ssh: &Ssh) -> Result<Prereqs, SshError> {
    let (status, out, _) = ssh.exec(&format!("sh -c {}", shell_quote(PREREQ)))?;
    Ok(Prereqs::read(status, &out))
}

/// The value of `KEY=` in a script's `KEY=VALUE` lines, or "".
fn value_of(out: &str, key: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or("")
        .trim()
        .to_string()
}

impl Prereqs {
    /// What the prerequisites script printed, and how it exited.
    fn read(status: i32, out: &str) -> Prereqs {
        Prereqs {
            arch: value_of(out, "ARCH"),
            cores: value_of(out, "CORES").parse().unwrap_or(1),
            missing: (status != 0).then(|| match value_of(out, "MISSING") {
                m if m.is_empty() => format!("prerequisites script exited {status}"),
                m => format!("missing on the site: {m}"),
            }),
        }
    }
}

/// This build packaged for the sites; failing that, an install error of the controller's.
pub(super) fn package(exe: &Path) -> Result<AgentPackage, FleetError> {
    AgentPackage::build(exe).map_err(|e| FleetError::Install {
        site: "controller".into(),
        reason: format!("cannot package the agent: {e}"),
    })
}

/// What one login found on a site before its install.
struct Survey {
    pre: Prereqs,
    /// The site holds this agent build, by its SHA-256.
    agent_there: bool,
    /// The site holds this bundle: its data by SHA-256 and its `.env` the same.
    bundle_there: bool,
}

/// One command that checks a site's prerequisites, makes its folders ready (this run's fresh,
/// other agent builds and the oldest runs' folders gone) and checksums what it holds, so that an
/// install to a site that has everything is one round trip: each is about a third of a second to
/// an emulated VM, and the steps one by one were most of a run on a fleet kept up.
fn survey(
    ssh: &Ssh,
    package: &AgentPackage,
    dir: &str,
    work: &str,
    files: &crate::bundle::BundleFiles,
) -> Result<Survey, SshError> {
    use sha2::{Digest, Sha256};
    let (q, w) = (shell_quote(dir), shell_quote(work));
    let parents: Vec<String> = files
        .extra
        .iter()
        .filter_map(|(name, _)| {
            format!("{dir}/{name}")
                .rsplit_once('/')
                .map(|(p, _)| shell_quote(p))
        })
        .collect();
    let step =
        |what: &str, cmd: String| format!("{{ {cmd}; }} || {{ echo 'FAILED={what}'; exit 1; }}\n");
    let mut script = format!("sh -c {} || exit $?\n", shell_quote(PREREQ));
    script += &step(
        "agent directory",
        format!(
            "mkdir -p -m 700 .fedsim/bin && chmod 700 .fedsim .fedsim/bin && find .fedsim/bin -maxdepth 1 -name 'fedsim-*' ! -name {} ! -name {} -exec rm -f {{}} +",
            shell_quote(&package.name),
            shell_quote(&format!("{}.ok", package.name))
        ),
    );
    // This run's folder, fresh; the bundle's folder as it is; earlier runs' folders beyond the
    // newest few removed (never the ones of runs still to be read back).
    script += &step(
        "site directory",
        format!(
            "mkdir -p -m 700 {q} {q}/runs && chmod 700 .fedsim {q} && rm -rf {w} && mkdir -m 700 {w} && (cd {q}/runs && ls -1t | tail -n +{keep} | xargs -r rm -rf)",
            keep = KEEP_RUNS + 1
        ),
    );
    if !parents.is_empty() {
        script += &step("algorithm files", format!("mkdir -p {}", parents.join(" ")));
    }
    let sum = |path: String| {
        format!(
            "$(sha256sum {} 2>/dev/null | cut -d' ' -f1)",
            shell_quote(&path)
        )
    };
    script += &format!(
        "{}\necho DATA_SHA={}\necho ENV_SHA={}\n",
        agent_sum(package),
        sum(format!("{dir}/{}", files.data_name)),
        sum(format!("{dir}/{}", crate::bundle::env::FILE)),
    );
    let (status, out, err) = ssh.exec_within(&script, WORK_LIMIT)?;
    let value = |k: &str| value_of(&out, k);
    let failed = value("FAILED");
    if !failed.is_empty() {
        return Err(SshError::Remote {
            site: ssh.site.clone(),
            what: failed,
            reason: format!("exit {status}: {}", last_line(err.trim())),
        });
    }
    let pre = Prereqs::read(status, &out);
    let hex = |bytes: &[u8]| hex::encode(Sha256::digest(bytes));
    Ok(Survey {
        agent_there: value("AGENT_SHA") == package.sha256,
        bundle_there: value("DATA_SHA") == hex(&files.data)
            && value("ENV_SHA") == hex(files.env.as_bytes()),
        pre,
    })
}

/// The file's size, modification time and inode (`stat`), recorded with its SHA-256 once checked.
const STAMP: &str = "stat -c '%s %Y %i'";

/// A command that prints `AGENT_SHA=` of this build on the site: from the record made when its
/// SHA-256 was last checked (`<name>.ok`: the SHA-256 and the file's stamp), if the file is
/// unchanged since, else by `sha256sum` (and then recorded if it is this build). Hashing tens of
/// MB in an emulated VM takes a second a run.
fn agent_sum(package: &AgentPackage) -> String {
    let a = shell_quote(&format!(".fedsim/bin/{}", package.name));
    let want = &package.sha256;
    format!(
        "stamp=$({STAMP} {a} 2>/dev/null); if [ -n \"$stamp\" ] && [ \"$(cat {a}.ok 2>/dev/null)\" = \"{want} $stamp\" ]; then echo AGENT_SHA={want}; else s=$(sha256sum {a} 2>/dev/null | cut -d' ' -f1); echo AGENT_SHA=$s; [ \"$s\" = {want} ] && [ -n \"$stamp\" ] && echo \"$s $stamp\" > {a}.ok; true; fi"
    )
}

/// Put this build on a site that does not hold it, and check what landed by its SHA-256.
fn upload_agent(ssh: &Ssh, package: &AgentPackage) -> Result<String, SshError> {
    let path = format!(".fedsim/bin/{}", package.name);
    let p = shell_quote(&path);
    ssh.upload(&package.gz, &format!("{path}.gz"), 0o700)?;
    let (status, out, err) = ssh.exec_within(
        &format!("rm -f {p}.ok && gunzip -f {p}.gz && chmod 700 {p} && sha256sum {p}"),
        WORK_LIMIT,
    )?;
    if status != 0 {
        return Err(SshError::Remote {
            site: ssh.site.clone(),
            what: "agent unpack".into(),
            reason: format!("exit {status}: {}", last_line(err.trim())),
        });
    }
    let landed = out.split_whitespace().next().unwrap_or("missing");
    if landed != package.sha256 {
        return Err(SshError::Remote {
            site: ssh.site.clone(),
            what: "agent install".into(),
            reason: format!(
                "the agent's SHA-256 on the site is {landed}, not {}",
                package.sha256
            ),
        });
    }
    Ok(path)
}

/// Put this build on the site, unless the site has it: by its SHA-256, not its name (a file
/// of that name that answers `--version` proves nothing). Other builds are removed, so builds do
/// not pile up (each is tens of MB).
pub(super) fn install_agent(ssh: &Ssh, package: &AgentPackage) -> Result<String, SshError> {
    let path = format!(".fedsim/bin/{}", package.name);
    let p = shell_quote(&path);
    let sha = |ssh: &Ssh| -> Result<Option<String>, SshError> {
        let (status, out, _) = ssh.exec(&format!("test -f {p} && sha256sum {p}"))?;
        Ok((status == 0).then(|| out.split_whitespace().next().unwrap_or("").to_string()))
    };
    ssh.run(
        "agent directory",
        "mkdir -p -m 700 .fedsim/bin && chmod 700 .fedsim .fedsim/bin",
    )?;
    if sha(ssh)?.as_deref() != Some(package.sha256.as_str()) {
        upload_agent(ssh, package)?;
    }
    ssh.run(
        "old agent builds",
        &format!(
            "find .fedsim/bin -maxdepth 1 -name 'fedsim-*' ! -name {} -exec rm -f {{}} +",
            shell_quote(&package.name)
        ),
    )?;
    Ok(path)
}

/// Cores this site's agent may use: a loopback host shares this machine with the other sites.
fn threads_for(spec: &SiteSpec, all: &[SiteSpec], remote_cores: usize) -> usize {
    let local = spec
        .host
        .parse::<IpAddr>()
        .map(|a| a.is_loopback())
        .unwrap_or(spec.host == "localhost");
    let sharing = if local {
        all.iter()
            .filter(|s| {
                s.host
                    .parse::<IpAddr>()
                    .map(|a| a.is_loopback())
                    .unwrap_or(s.host == "localhost")
            })
            .count()
    } else {
        all.iter().filter(|s| s.host == spec.host).count()
    };
    let cores = if local {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        remote_cores
    };
    (cores / sharing.max(1)).max(1)
}

impl Fleet for SshFleet {
    fn install(&mut self, bundles: &mut [Bundle]) -> Result<(), FleetError> {
        let package = package(&self.agent_exe)?;
        let files: Vec<_> = bundles.iter_mut().map(|b| b.files.take()).collect();
        let dir = self.dir.clone();
        let work = self.work.clone();
        let timeout = self.connect_timeout;
        let local_arch = std::env::consts::ARCH;
        let paths = self.each("install", |i, spec, conn, bar| {
            bar.set_message("connecting");
            Self::connect(spec, conn, timeout)?;
            let ssh = conn.as_ref().expect("connected");
            bar.set_message("checking the site");
            let files = files[i].as_ref().ok_or("bundle already installed")?;
            let found = survey(ssh, &package, &dir, &work, files).map_err(|e| e.to_string())?;
            if let Some(m) = found.pre.missing {
                return Err(m);
            }
            if found.pre.arch != local_arch {
                return Err(format!(
                    "site is {} but the agent is built for {local_arch}",
                    found.pre.arch
                ));
            }
            let agent = if found.agent_there {
                format!(".fedsim/bin/{}", package.name)
            } else {
                bar.set_message(format!(
                    "installing the agent ({} MB)",
                    package.gz.len() / 1_000_000
                ));
                upload_agent(ssh, &package).map_err(|e| e.to_string())?
            };
            // An external algorithm's files (small, always sent as they are now), and the
            // bundle unless an earlier `fedsim prep` or run put this very one there: one SFTP
            // session for all.
            let mut put: Vec<(&[u8], String, i32)> = files
                .extra
                .iter()
                .map(|(name, bytes)| (bytes.as_slice(), format!("{dir}/{name}"), 0o700))
                .collect();
            if found.bundle_there {
                tracing::info!(phase = "provision", site = %spec.name, "data and .env already on the site (from fedsim prep or an earlier run) match the plan by checksum: used as they are");
                bar.set_message("bundle already there, checksums match");
            } else {
                bar.set_message("uploading the bundle");
                put.push((&files.data, format!("{dir}/{}", files.data_name), 0o600));
                put.push((
                    files.env.as_bytes(),
                    format!("{dir}/{}", crate::bundle::env::FILE),
                    0o600,
                ));
            }
            if !put.is_empty() {
                ssh.upload_all(&put).map_err(|e| e.to_string())?;
            }
            Ok((agent, found.pre.cores))
        })?;
        self.agent = paths.first().map(|(p, _)| p.clone());
        self.cores = paths.iter().map(|(_, c)| *c).collect();
        Ok(())
    }

    fn start(&mut self, dial: &Dial) -> Result<(), FleetError> {
        let agent = self.installed_agent()?;
        let targets = self.targets(dial)?;
        let (dir, work) = (self.dir.clone(), self.work.clone());
        let all = self.specs.clone();
        let cores = self.cores.clone();
        let connect_secs = self.connect_timeout.as_secs_f64().max(30.0);
        let run_id = self.run_id.clone();
        let pids = self.each("start", |i, spec, conn, bar| {
            let ssh = conn.as_ref().ok_or("not connected")?;
            let threads = threads_for(spec, &all, cores[i]);
            bar.set_message("starting the agent");
            // A detached session: the agent outlives this SSH channel, writes its exit code last.
            // `cd` is its own statement: in `cd X && setsid ... &` bash backgrounds the whole list
            // in a subshell that holds the channel open until the agent exits.
            // It runs in this run's folder (its log, output and exit land there) on the bundle.
            let cmd = format!(
                "cd {w} || exit 1; export {m}; setsid nohup sh -c '\"$0\" agent --dir \"$4\" --log agent.jsonl --coordinator \"$1\" --threads \"$2\" --connect-timeout \"$3\" > agent.out 2>&1; echo $? > agent.exit' \"$HOME\"/{a} {c} {t} {s} \"$HOME\"/{d} < /dev/null > /dev/null 2>&1 & echo $!",
                w = shell_quote(&work),
                d = shell_quote(&dir),
                a = shell_quote(&agent),
                c = shell_quote(&targets[i].0),
                t = threads,
                s = connect_secs,
                m = shell_quote(&mark(&run_id, &spec.name)),
            );
            let out = ssh.run("agent start", &cmd).map_err(|e| e.to_string())?;
            out.trim().parse::<u32>().map_err(|_| format!("agent start printed {:?}, not a pid", out.trim()))
        })?;
        self.pids = pids.into_iter().map(Some).collect();
        Ok(())
    }

    fn dead_site(&mut self) -> Option<(String, String)> {
        if self.last_poll.elapsed() < Duration::from_secs(1) {
            return None;
        }
        self.last_poll = Instant::now();
        for (i, conn) in self.conns.iter().enumerate() {
            // Each death is reported once.
            let (Some(ssh), Some(_), None, false) =
                (conn, self.pids[i], &self.exits[i], self.quiet[i])
            else {
                continue;
            };
            let d = shell_quote(&self.work);
            // A short poll: a host that does not answer in time is not declared dead here (the
            // coordinator's heartbeats decide, within their own four periods).
            let asked = Instant::now();
            match ssh.exec_within(
                &format!(
                    "cat {d}/{p}.exit 2>/dev/null && tail -n 3 {d}/{p}.out",
                    p = self.program
                ),
                POLL_LIMIT,
            ) {
                Ok((0, out, _)) if !out.trim().is_empty() => {
                    let mut lines = out.lines();
                    let code = lines.next().unwrap_or("?").trim().to_string();
                    let tail: Vec<&str> = lines.filter(|l| !l.trim().is_empty()).collect();
                    return Some((
                        self.specs[i].name.clone(),
                        format!(
                            "{} exited early (code {code}): {}",
                            self.program,
                            tail.join(" | ")
                        ),
                    ));
                }
                Ok(_) => {}
                Err(_) if asked.elapsed() >= POLL_LIMIT => {
                    self.quiet[i] = true;
                    tracing::warn!(phase = "federate", site = %self.specs[i].name, "no answer over SSH in time; the heartbeats decide whether the site is lost");
                }
                Err(e) => {
                    return Some((
                        self.specs[i].name.clone(),
                        format!("lost the SSH connection: {e}"),
                    ))
                }
            }
        }
        None
    }

    fn stop(&mut self, grace: Duration) -> Vec<SiteExit> {
        let dir = self.work.clone();
        let pids = self.pids.clone();
        let known = self.exits.clone();
        let (program, run_id) = (self.program, self.run_id.clone());
        let exits = self.each("stop", |i, spec, conn, bar| {
            if let Some(exit) = &known[i] {
                return Ok(exit.clone());
            }
            let Some(pid) = pids[i] else { return Err("not started".into()) };
            let ssh = conn.as_ref().ok_or("not connected")?;
            bar.set_message(format!("waiting for the {program} to exit"));
            let exit_file = format!("{}/{program}.exit", shell_quote(&dir));
            let deadline = Instant::now() + grace;
            let mut killed = false;
            let code = loop {
                // The site waits for the exit code itself, up to the grace left: one round
                // trip, not one per poll.
                let left = deadline.saturating_duration_since(Instant::now());
                let ticks = (left.as_secs_f64() / 0.1).ceil() as u64;
                let wait = format!("i=0; while [ ! -s {exit_file} ] && [ $i -lt {ticks} ]; do sleep 0.1 2>/dev/null || sleep 1; i=$((i+1)); done; cat {exit_file}");
                if let Ok((0, out, _)) = ssh.exec_within(&wait, left + POLL_LIMIT) {
                    if let Ok(code) = out.trim().parse::<i32>() {
                        break Some(code);
                    }
                }
                if Instant::now() >= deadline {
                    killed = true;
                    // TERM, half a second to go, then KILL: the whole process group, and what
                    // left it.
                    let _ = ssh.exec(&format!("kill -s TERM -- -{pid} 2>/dev/null; for i in 1 2 3 4 5; do kill -s 0 -- -{pid} 2>/dev/null || break; sleep 0.1; done; kill -s KILL -- -{pid} 2>/dev/null; {}", sweep(&mark(&run_id, &spec.name))));
                    break None;
                }
                std::thread::sleep(Duration::from_millis(100));
            };
            Ok(SiteExit { site: spec.name.clone(), pid, code, killed })
        });
        self.tunnels.clear();
        match exits {
            Ok(e) => {
                self.exits = e.iter().cloned().map(Some).collect();
                e
            }
            Err(err) => {
                tracing::warn!(phase = "finish", error = %err, "could not confirm every agent stopped");
                Vec::new()
            }
        }
    }

    fn collect_logs(&mut self, dest: &Path) -> Result<Vec<String>, FleetError> {
        let dir = self.work.clone();
        let run_id = self.run_id.clone();
        let program = self.program;
        let dest = dest.to_path_buf();
        let timeout = self.connect_timeout;
        let cut = self.cut.clone();
        self.each("logs", |i, spec, conn, bar| {
            if cut[i] {
                return Err("its network was cut; its log stays on the site".into());
            }
            bar.set_message("pulling the log");
            Self::connect(spec, conn, timeout)?;
            let ssh = conn.as_ref().expect("connected");
            let log = ssh
                .download(&format!("{dir}/{program}.jsonl"))
                .map_err(|e| format!("cannot download its log {dir}/{program}.jsonl: {e}"))?;
            // The agent logs the run it joined: a log of another run is never merged.
            if let Some(other) = other_run(&log, &run_id) {
                return Err(format!(
                    "its log {dir}/{program}.jsonl belongs to run {other}, not {run_id}"
                ));
            }
            crate::sys::fsio::write_atomic(&dest.join(format!("{}.jsonl", spec.name)), &log)
                .map_err(|e| e.to_string())?;
            Ok(spec.name.clone())
        })
    }

    fn kill(&mut self, site: &str) -> Result<(), FleetError> {
        let i = self.site_index(site)?;
        let fail = |reason: String| FleetError::Start {
            site: site.into(),
            reason,
        };
        let pid = self.pids[i].ok_or_else(|| fail("not started".into()))?;
        let ssh = self.conns[i]
            .as_ref()
            .ok_or_else(|| fail("not connected".into()))?;
        // The agent is the child of the session leader `pid`: kill the whole process group, and
        // what left it.
        let sweep = sweep(&mark(&self.run_id, site));
        ssh.run("kill", &format!("kill -s KILL -- -{pid}; {sweep}"))
            .map(|_| ())
            .map_err(|e| fail(e.to_string()))
    }

    fn cut(&mut self, site: &str) -> Result<(), FleetError> {
        let i = self.site_index(site)?;
        let fail = |reason: String| FleetError::Start {
            site: site.into(),
            reason,
        };
        let cmd = self.specs[i]
            .cut_command
            .clone()
            .ok_or_else(|| fail("no cut_command for this site".into()))?;
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .status()
            .map_err(|e| fail(e.to_string()))?;
        if !status.success() {
            return Err(fail(format!("`{cmd}` exited {status}")));
        }
        // The site is unreachable from now on: nothing more is asked of it over SSH.
        self.exits[i] = Some(SiteExit {
            site: site.into(),
            pid: self.pids[i].unwrap_or(0),
            code: None,
            killed: false,
        });
        self.conns[i] = None;
        self.cut[i] = true;
        Ok(())
    }

    fn run_each(
        &mut self,
        scripts: &[Option<String>],
        limit: Duration,
    ) -> Vec<Result<String, String>> {
        let Ok(agent) = self.installed_agent() else {
            return scripts
                .iter()
                .map(|_| Err("install first".into()))
                .collect();
        };
        let cmds: Vec<Option<String>> = scripts
            .iter()
            .map(|script| {
                script.as_ref().map(|script| {
                    format!(
                        "cd {w} || exit 1; {env} sh -c {s}",
                        w = shell_quote(&self.work),
                        env = self.site_env(&agent),
                        s = shell_quote(script),
                    )
                })
            })
            .collect();
        self.exec_each_within(&cmds, Some(limit))
    }

    fn put_each(&mut self, files: &[Vec<super::SiteFile>]) -> Vec<Result<(), String>> {
        let bars: Vec<ProgressBar> = files.iter().map(|_| ProgressBar::hidden()).collect();
        let (timeout, work, specs) = (self.connect_timeout, self.work.clone(), self.specs.clone());
        in_parallel(
            "upload",
            &mut self.conns,
            files,
            &bars,
            |i, files, conn, _| {
                if files.is_empty() {
                    return Ok(());
                }
                Self::connect(&specs[i], conn, timeout)?;
                let ssh = conn.as_ref().expect("connected");
                let mut parents: Vec<String> = files
                    .iter()
                    .filter_map(|(_, p, _)| p.rsplit_once('/').map(|(d, _)| format!("{work}/{d}")))
                    .collect();
                parents.sort();
                parents.dedup();
                if !parents.is_empty() {
                    let quoted: Vec<String> = parents.iter().map(|p| shell_quote(p)).collect();
                    ssh.run("folders", &format!("mkdir -p {}", quoted.join(" ")))
                        .map_err(|e| e.to_string())?;
                }
                let put: Vec<(&[u8], String, i32)> = files
                    .iter()
                    .map(|(bytes, path, mode)| (&bytes[..], format!("{work}/{path}"), *mode))
                    .collect();
                ssh.upload_all(&put).map_err(|e| e.to_string())
            },
        )
    }

    fn start_script(&mut self, dial: &Dial, script: &str) -> Result<(), FleetError> {
        let agent = self.installed_agent()?;
        let targets = self.targets(dial)?;
        self.program = "node";
        let (env, work, run_id) = (
            self.site_env(&agent),
            self.work.clone(),
            self.run_id.clone(),
        );
        let pids = self.each("start", |i, spec, conn, bar| {
            let ssh = conn.as_ref().ok_or("not connected")?;
            bar.set_message("starting the node");
            // Detached as the agent is (see `start`), its exit code written last. The script gets
            // where to dial and, through a tunnel, where the lease is heard (else "").
            let cmd = format!(
                "cd {w} || exit 1; export {m} {env}; setsid nohup sh -c 'sh \"$0\" \"$1\" \"$2\" > node.out 2>&1; echo $? > node.exit' {s} {t} {l} < /dev/null > /dev/null 2>&1 & echo $!",
                w = shell_quote(&work),
                m = shell_quote(&mark(&run_id, &spec.name)),
                s = shell_quote(script),
                t = shell_quote(&targets[i].0),
                l = shell_quote(&targets[i].1),
            );
            let out = ssh.run("node start", &cmd).map_err(|e| e.to_string())?;
            out.trim()
                .parse::<u32>()
                .map_err(|_| format!("node start printed {:?}, not a pid", out.trim()))
        })?;
        self.pids = pids.into_iter().map(Some).collect();
        Ok(())
    }

    fn pids(&mut self) -> Vec<(String, u32)> {
        self.specs
            .iter()
            .zip(&self.pids)
            .filter_map(|(s, p)| p.map(|p| (s.name.clone(), p)))
            .collect()
    }

    fn location(&self, site: &str) -> Option<String> {
        self.specs
            .iter()
            .find(|s| s.name == site)
            .map(|s| format!("{}@{}:{}/~/{}", s.user, s.host, s.port, self.dir))
    }
}
