//! The `ssh` provider with sites sharded over hosts (`[[sites]] count`): a host runs many sites,
//! each still its own agent process in its own folder, under one supervisor (`fedsim-agent
//! supervise`). Per host, not per site: one SSH session, one agent install, one SFTP session
//! for every bundle, one supervisor, one command per poll reporting every site, one transfer of
//! every log, and with `[fleet] tunnel` one reverse forward its sites share.
//!
//! On a host, under `~/.fedsim/<scenario>/`: `sites/<site>/` each site's bundle (data, `.env`;
//! reused by checksum), and `runs/<run id>/` the run's folder: `supervise.json` (what the
//! supervisor starts), its records (`supervisor.pids`, `supervisor.exits`, `supervisor.done`),
//! `supervise.out`, and `<site>/` each site's working folder (`agent.jsonl`, `agent.out`,
//! `agent.exit`, `output/`), as a host with one site has.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::remote::{
    in_parallel, install_agent, other_run, package, prerequisites, step_error, KEEP_RUNS,
    POLL_LIMIT,
};
use super::ssh::{shell_quote, Ssh};
use super::tunnel::Tunnel;
use super::{Dial, Fleet, FleetError, SiteExit};
use crate::agent::supervise::{SuperviseSpec, SupervisedSite, DONE, EXITS, PIDS};
use crate::bundle::Bundle;
use crate::scenario::SiteSpec;

struct Host {
    /// The `[[sites]]` entry: how to reach the host (its name is its sites' prefix).
    spec: SiteSpec,
    /// Its sites, as indices into `HostFleet::sites`.
    sites: Vec<usize>,
}

struct Site {
    name: String,
    host: usize,
    pid: Option<u32>,
    exit: Option<SiteExit>,
}

pub struct HostFleet {
    hosts: Vec<Host>,
    sites: Vec<Site>,
    conns: Vec<Option<Ssh>>,
    /// The scenario's folder on a host, relative to the user's home.
    dir: String,
    /// This run's folder on a host (`<dir>/runs/<run id>`).
    work: String,
    run_id: String,
    agent_exe: PathBuf,
    connect_timeout: Duration,
    agent: Option<String>,
    cores: Vec<usize>,
    supervisors: Vec<Option<u32>>,
    tunnel: bool,
    tunnels: Vec<Tunnel>,
    /// Hosts whose link a fault injection cut.
    cut: Vec<bool>,
    /// Hosts not to poll any more (no answer in time: the heartbeats decide).
    quiet: Vec<bool>,
    /// Deaths found and not yet reported.
    dead: VecDeque<(String, String)>,
    bars: MultiProgress,
    last_poll: Instant,
}

/// One line of `supervisor.exits`: site, pid, code, killed.
fn parse_exit(line: &str) -> Option<(String, SiteExit)> {
    let mut w = line.split_whitespace();
    let site = w.next()?.to_string();
    let pid = w.next()?.parse().ok()?;
    let code: i32 = w.next()?.parse().ok()?;
    let killed = w.next()? == "1";
    Some((
        site.clone(),
        SiteExit {
            site,
            pid,
            code: (code >= 0 && !killed).then_some(code),
            killed,
        },
    ))
}

impl HostFleet {
    /// `entries`: the scenario's `[[sites]]`, each a host with `count` sites.
    pub fn new(
        entries: &[SiteSpec],
        scenario: &str,
        run_id: &str,
        agent_exe: PathBuf,
        connect_timeout: Duration,
        progress: bool,
    ) -> Self {
        let mut hosts: Vec<Host> = entries
            .iter()
            .map(|e| Host {
                spec: e.clone(),
                sites: Vec::new(),
            })
            .collect();
        let mut sites = Vec::new();
        for (h, spec) in crate::scenario::expand_sites(entries) {
            hosts[h].sites.push(sites.len());
            sites.push(Site {
                name: spec.name,
                host: h,
                pid: None,
                exit: None,
            });
        }
        let n = hosts.len();
        let target = if progress && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        HostFleet {
            hosts,
            sites,
            conns: (0..n).map(|_| None).collect(),
            dir: format!(".fedsim/{scenario}"),
            work: format!(".fedsim/{scenario}/runs/{run_id}"),
            run_id: run_id.to_string(),
            agent_exe,
            connect_timeout,
            agent: None,
            cores: vec![1; n],
            supervisors: vec![None; n],
            tunnel: false,
            tunnels: Vec::new(),
            cut: vec![false; n],
            quiet: vec![false; n],
            dead: VecDeque::new(),
            bars: MultiProgress::with_draw_target(target),
            last_poll: Instant::now(),
        }
    }

    /// Agents dial the coordinator through SSH reverse forwards instead of directly.
    pub fn with_tunnel(mut self, tunnel: bool) -> Self {
        self.tunnel = tunnel;
        self
    }

    fn site_index(&self, site: &str) -> Result<usize, FleetError> {
        self.sites
            .iter()
            .position(|s| s.name == site)
            .ok_or_else(|| FleetError::Start {
                site: site.into(),
                reason: "no such site".into(),
            })
    }

    /// Run `f` for every host in parallel, with its connection and a progress bar; collect
    /// every failure, naming each host's entry and its sites' prefix.
    fn each<T: Send>(
        &mut self,
        step: &str,
        f: impl Fn(usize, &SiteSpec, &mut Option<Ssh>, &ProgressBar) -> Result<T, String> + Sync,
    ) -> Result<Vec<T>, FleetError> {
        let bars: Vec<ProgressBar> = self
            .hosts
            .iter()
            .map(|h| {
                let bar = self.bars.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {prefix:<16} {wide_msg}")
                        .expect("static template"),
                );
                bar.set_prefix(format!("{} ({} sites)", h.spec.host, h.sites.len()));
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            })
            .collect();
        let specs: Vec<&SiteSpec> = self.hosts.iter().map(|h| &h.spec).collect();
        let results = in_parallel(
            step,
            &mut self.conns,
            &specs,
            &bars,
            |i, spec, conn, bar| f(i, spec, conn, bar),
        );
        let failures: Vec<(String, String)> = results
            .iter()
            .zip(&self.hosts)
            .filter_map(|(r, h)| {
                r.as_ref().err().map(|e| {
                    let first = h.sites.first().map(|&s| self.sites[s].name.clone());
                    (
                        first.unwrap_or_else(|| h.spec.name.clone()),
                        format!("host {} ({} sites): {e}", h.spec.host, h.sites.len()),
                    )
                })
            })
            .collect();
        if let Some(e) = step_error(step, failures) {
            return Err(e);
        }
        Ok(results.into_iter().map(|r| r.expect("checked")).collect())
    }

    /// The names of host `h`'s sites.
    fn names(&self, h: usize) -> Vec<String> {
        self.hosts[h]
            .sites
            .iter()
            .map(|&s| self.sites[s].name.clone())
            .collect()
    }

    /// Read every host's `supervisor.pids`, for the sites whose pid is not known yet.
    fn read_pids(&mut self) {
        for h in 0..self.hosts.len() {
            let unknown = self.hosts[h]
                .sites
                .iter()
                .any(|&s| self.sites[s].pid.is_none());
            let (Some(ssh), true, false) = (&self.conns[h], unknown, self.cut[h]) else {
                continue;
            };
            let file = shell_quote(&format!("{}/{PIDS}", self.work));
            let Ok((0, out, _)) = ssh.exec_within(&format!("cat {file}"), POLL_LIMIT) else {
                continue;
            };
            let pids: BTreeMap<&str, u32> = out
                .lines()
                .filter_map(|l| {
                    let (s, p) = l.split_once(' ')?;
                    Some((s, p.trim().parse().ok()?))
                })
                .collect();
            for &s in &self.hosts[h].sites {
                if let Some(&p) = pids.get(self.sites[s].name.as_str()) {
                    self.sites[s].pid = Some(p);
                }
            }
        }
    }
}

/// Threads each of a host's agents may use: the host's cores shared by every site on it (a
/// loopback host shares this machine's cores with every other loopback host's sites).
fn threads_for(h: usize, hosts: &[Host], remote_cores: usize) -> usize {
    let loopback = |s: &SiteSpec| {
        s.host
            .parse::<IpAddr>()
            .map(|a| a.is_loopback())
            .unwrap_or(s.host == "localhost")
    };
    let spec = &hosts[h].spec;
    let (cores, sharing) = if loopback(spec) {
        (
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            hosts
                .iter()
                .filter(|x| loopback(&x.spec))
                .map(|x| x.sites.len())
                .sum::<usize>(),
        )
    } else {
        (
            remote_cores,
            hosts
                .iter()
                .filter(|x| x.spec.host == spec.host)
                .map(|x| x.sites.len())
                .sum(),
        )
    };
    (cores / sharing.max(1)).max(1)
}

impl Fleet for HostFleet {
    fn install(&mut self, bundles: &mut [Bundle]) -> Result<(), FleetError> {
        use sha2::{Digest, Sha256};
        let package = package(&self.agent_exe)?;
        let mut files: BTreeMap<String, crate::bundle::BundleFiles> = BTreeMap::new();
        for b in bundles.iter_mut() {
            if let Some(f) = b.files.take() {
                files.insert(b.name.clone(), f);
            }
        }
        let names: Vec<Vec<String>> = (0..self.hosts.len()).map(|h| self.names(h)).collect();
        let (dir, work) = (self.dir.clone(), self.work.clone());
        let timeout = self.connect_timeout;
        let local_arch = std::env::consts::ARCH;
        let env_file = crate::bundle::env::FILE;
        let cores = self.each("install", |h, spec, conn, bar| {
            bar.set_message("connecting");
            if conn.is_none() {
                *conn = Some(Ssh::connect(spec, timeout).map_err(|e| e.to_string())?);
            }
            let ssh = conn.as_ref().expect("connected");
            bar.set_message("checking prerequisites");
            let pre = prerequisites(ssh).map_err(|e| e.to_string())?;
            if let Some(m) = pre.missing {
                return Err(m);
            }
            if pre.arch != local_arch {
                return Err(format!(
                    "host is {} but the agent is built for {local_arch}",
                    pre.arch
                ));
            }
            bar.set_message("installing the agent");
            install_agent(ssh, &package).map_err(|e| e.to_string())?;
            let (q, w) = (shell_quote(&dir), shell_quote(&work));
            let quoted: Vec<String> = names[h].iter().map(|n| shell_quote(n)).collect();
            // This run's folder, fresh; each site's bundle folder as it is; earlier runs'
            // folders beyond the newest few removed.
            ssh.run(
                "site directories",
                &format!(
                    "mkdir -p -m 700 {q} {q}/runs {q}/sites && chmod 700 .fedsim {q} && rm -rf {w} && mkdir -m 700 {w} && (cd {q}/sites && mkdir -p -m 700 {all}) && cd {q}/runs && ls -1t | tail -n +{keep} | xargs -r rm -rf",
                    all = quoted.join(" "),
                    keep = KEEP_RUNS + 1
                ),
            )
            .map_err(|e| e.to_string())?;
            // What is there already, by checksum: one command for every site of the host.
            bar.set_message("comparing checksums");
            let (_, listed, _) = ssh
                .exec(&format!(
                    "cd {q}/sites && find . -mindepth 2 -maxdepth 2 -type f -exec sha256sum {{}} + 2>/dev/null"
                ))
                .map_err(|e| e.to_string())?;
            let there: BTreeMap<&str, &str> = listed
                .lines()
                .filter_map(|l| {
                    let (sum, path) = l.split_once("  ")?;
                    Some((path.trim_start_matches("./"), sum))
                })
                .collect();
            let mut uploads: Vec<(&[u8], String, i32)> = Vec::new();
            let mut parents: Vec<String> = Vec::new();
            let mut reused = 0;
            for name in &names[h] {
                let f = files
                    .get(name)
                    .ok_or_else(|| format!("no bundle for site {name}"))?;
                // An external algorithm's files: small, always sent as they are now.
                for (extra, bytes) in &f.extra {
                    let path = format!("{dir}/sites/{name}/{extra}");
                    if let Some((parent, _)) = path.rsplit_once('/') {
                        parents.push(shell_quote(parent));
                    }
                    uploads.push((bytes.as_slice(), path, 0o700));
                }
                let data_key = format!("{name}/{}", f.data_name);
                let env_key = format!("{name}/{env_file}");
                let same = |key: &str, bytes: &[u8]| {
                    there.get(key).copied() == Some(hex::encode(Sha256::digest(bytes)).as_str())
                };
                if same(&data_key, &f.data) && same(&env_key, f.env.as_bytes()) {
                    reused += 1;
                    continue;
                }
                uploads.push((f.data.as_slice(), format!("{dir}/sites/{data_key}"), 0o600));
                uploads.push((f.env.as_bytes(), format!("{dir}/sites/{env_key}"), 0o600));
            }
            if !parents.is_empty() {
                parents.sort();
                parents.dedup();
                ssh.run("algorithm files", &format!("mkdir -p {}", parents.join(" ")))
                    .map_err(|e| e.to_string())?;
            }
            if reused > 0 {
                tracing::info!(phase = "provision", host = %spec.host, sites = reused, "data and .env already on the host match the plan by checksum: used as they are");
            }
            bar.set_message(format!("uploading {} files", uploads.len()));
            ssh.upload_all(&uploads).map_err(|e| e.to_string())?;
            Ok(pre.cores)
        })?;
        self.agent = Some(format!(".fedsim/bin/{}", package.name));
        self.cores = cores;
        Ok(())
    }

    fn start(&mut self, dial: &Dial) -> Result<(), FleetError> {
        let agent = self.agent.clone().ok_or(FleetError::Start {
            site: "all".into(),
            reason: "install first".into(),
        })?;
        let mut targets: Vec<String> = self
            .sites
            .iter()
            .map(|s| dial.of(&s.name).to_string())
            .collect();
        if self.tunnel {
            // One reverse forward per host and address dialled (one per host unless links give
            // its sites relays of their own), shared by the sites that dial it.
            let mut wanted: Vec<(usize, std::net::SocketAddr)> = self
                .sites
                .iter()
                .map(|s| (s.host, dial.of(&s.name)))
                .collect();
            wanted.sort();
            wanted.dedup();
            let timeout = self.connect_timeout;
            let hosts = &self.hosts;
            let opened: Vec<_> = std::thread::scope(|scope| {
                let handles: Vec<_> = wanted
                    .iter()
                    .map(|&(h, to)| scope.spawn(move || Tunnel::open(&hosts[h].spec, to, timeout)))
                    .collect();
                handles.into_iter().map(|h| h.join()).collect()
            });
            let mut ports = BTreeMap::new();
            for (&(h, to), t) in wanted.iter().zip(opened) {
                let t = t
                    .map_err(|_| "tunnel thread panicked".to_string())
                    .and_then(|t| t.map_err(|e| e.to_string()))
                    .map_err(|reason| FleetError::Start {
                        site: self.hosts[h].spec.name.clone(),
                        reason,
                    })?;
                ports.insert((h, to), t.remote_port);
                tracing::info!(phase = "launch", host = %self.hosts[h].spec.host, remote = %format!("127.0.0.1:{}", t.remote_port), "reverse tunnel open");
                self.tunnels.push(t);
            }
            for (i, s) in self.sites.iter().enumerate() {
                targets[i] = format!("127.0.0.1:{}", ports[&(s.host, dial.of(&s.name))]);
            }
        }
        let connect_secs = self.connect_timeout.as_secs_f64().max(30.0);
        let specs: Vec<SuperviseSpec> = (0..self.hosts.len())
            .map(|h| SuperviseSpec {
                threads: threads_for(h, &self.hosts, self.cores[h]),
                connect_timeout: connect_secs,
                sites: self.hosts[h]
                    .sites
                    .iter()
                    .map(|&s| SupervisedSite {
                        name: self.sites[s].name.clone(),
                        bundle: PathBuf::from(format!("../../sites/{}", self.sites[s].name)),
                        work: PathBuf::from(&self.sites[s].name),
                        coordinator: targets[s].clone(),
                    })
                    .collect(),
            })
            .collect();
        let work = self.work.clone();
        let pids = self.each("start", |h, _, conn, bar| {
            let ssh = conn.as_ref().ok_or("not connected")?;
            bar.set_message("starting the supervisor");
            let json = serde_json::to_vec(&specs[h]).map_err(|e| e.to_string())?;
            ssh.upload(&json, &format!("{work}/supervise.json"), 0o600)
                .map_err(|e| e.to_string())?;
            // Detached as one site's agent is: it outlives this channel.
            let cmd = format!(
                "cd {w} || exit 1; setsid nohup \"$HOME\"/{a} supervise --spec supervise.json > supervise.out 2>&1 < /dev/null & echo $!",
                w = shell_quote(&work),
                a = shell_quote(&agent),
            );
            let out = ssh.run("supervisor start", &cmd).map_err(|e| e.to_string())?;
            out.trim()
                .parse::<u32>()
                .map_err(|_| format!("supervisor start printed {:?}, not a pid", out.trim()))
        })?;
        self.supervisors = pids.into_iter().map(Some).collect();
        Ok(())
    }

    fn dead_site(&mut self) -> Option<(String, String)> {
        if let Some(d) = self.dead.pop_front() {
            return Some(d);
        }
        if self.last_poll.elapsed() < Duration::from_secs(1) {
            return None;
        }
        self.last_poll = Instant::now();
        for h in 0..self.hosts.len() {
            let (Some(ssh), Some(sup), false) =
                (&self.conns[h], self.supervisors[h], self.quiet[h])
            else {
                continue;
            };
            if self.hosts[h]
                .sites
                .iter()
                .all(|&s| self.sites[s].exit.is_some())
            {
                continue;
            }
            let w = shell_quote(&self.work);
            // One command for every site of the host: who has ended, and is the supervisor
            // still there.
            let asked = Instant::now();
            let out = match ssh.exec_within(
                &format!("cd {w} && cat {EXITS} 2>/dev/null; test -e {DONE} || kill -0 {sup} 2>/dev/null || echo '#gone'"),
                POLL_LIMIT,
            ) {
                Ok((_, out, _)) => out,
                Err(_) if asked.elapsed() >= POLL_LIMIT => {
                    self.quiet[h] = true;
                    tracing::warn!(phase = "federate", host = %self.hosts[h].spec.host, "no answer over SSH in time; the heartbeats decide whether its sites are lost");
                    continue;
                }
                Err(e) => {
                    let first = self.hosts[h].sites[0];
                    return Some((
                        self.sites[first].name.clone(),
                        format!("lost the SSH connection to its host: {e}"),
                    ));
                }
            };
            let mut fresh = Vec::new();
            for (site, exit) in out.lines().filter_map(parse_exit) {
                if let Some(&s) = self.hosts[h]
                    .sites
                    .iter()
                    .find(|&&s| self.sites[s].name == site)
                {
                    if self.sites[s].exit.is_none() {
                        self.sites[s].exit = Some(exit);
                        fresh.push(s);
                    }
                }
            }
            for s in fresh {
                let name = self.sites[s].name.clone();
                let code = self.sites[s]
                    .exit
                    .as_ref()
                    .and_then(|e| e.code)
                    .map_or("?".to_string(), |c| c.to_string());
                let tail = ssh
                    .exec_within(
                        &format!("tail -n 3 {w}/{}/agent.out", shell_quote(&name)),
                        POLL_LIMIT,
                    )
                    .map(|(_, o, _)| o)
                    .unwrap_or_default();
                let tail: Vec<&str> = tail.lines().filter(|l| !l.trim().is_empty()).collect();
                self.dead.push_back((
                    name,
                    format!("agent exited early (code {code}): {}", tail.join(" | ")),
                ));
            }
            if out.lines().any(|l| l == "#gone") {
                for &s in &self.hosts[h].sites {
                    if self.sites[s].exit.is_none() {
                        self.sites[s].exit = Some(SiteExit {
                            site: self.sites[s].name.clone(),
                            pid: self.sites[s].pid.unwrap_or(0),
                            code: None,
                            killed: true,
                        });
                        self.dead.push_back((
                            self.sites[s].name.clone(),
                            format!(
                                "the supervisor on its host {} is gone",
                                self.hosts[h].spec.host
                            ),
                        ));
                    }
                }
            }
            if let Some(d) = self.dead.pop_front() {
                return Some(d);
            }
        }
        None
    }

    fn stop(&mut self, grace: Duration) -> Vec<SiteExit> {
        self.read_pids();
        let work = self.work.clone();
        let sups = self.supervisors.clone();
        let names: Vec<Vec<String>> = (0..self.hosts.len()).map(|h| self.names(h)).collect();
        let cut = self.cut.clone();
        let read = |ssh: &Ssh| -> (BTreeMap<String, SiteExit>, bool) {
            let cmd = format!(
                "cd {} && cat {EXITS} 2>/dev/null; test -e {DONE} && echo '#done'",
                shell_quote(&work)
            );
            match ssh.exec(&cmd) {
                Ok((_, out, _)) => (
                    out.lines().filter_map(parse_exit).collect(),
                    out.lines().any(|l| l == "#done"),
                ),
                Err(_) => (BTreeMap::new(), false),
            }
        };
        let exits = self.each("stop", |h, _, conn, bar| {
            if cut[h] {
                return Ok(BTreeMap::new());
            }
            let Some(sup) = sups[h] else {
                return Err("not started".into());
            };
            let ssh = conn.as_ref().ok_or("not connected")?;
            bar.set_message("waiting for the agents to exit");
            let deadline = Instant::now() + grace;
            loop {
                let (exits, done) = read(ssh);
                if done || exits.len() >= names[h].len() {
                    return Ok(exits);
                }
                if Instant::now() >= deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            // The supervisor kills every agent left (TERM, half a second, KILL) and records it.
            bar.set_message("stopping the agents");
            let _ = ssh.exec(&format!("kill -TERM {sup} 2>/dev/null"));
            let until = Instant::now() + Duration::from_secs(5);
            loop {
                let (exits, done) = read(ssh);
                if done || Instant::now() >= until {
                    if !done {
                        let _ = ssh.exec(&format!("kill -s KILL -- -{sup} 2>/dev/null"));
                    }
                    return Ok(exits);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        self.tunnels.clear();
        let exits = match exits {
            Ok(e) => e,
            Err(err) => {
                tracing::warn!(phase = "finish", error = %err, "could not confirm every agent stopped");
                return Vec::new();
            }
        };
        for (h, mut found) in exits.into_iter().enumerate() {
            for &s in &self.hosts[h].sites {
                let site = &mut self.sites[s];
                if site.exit.is_some() && !found.contains_key(&site.name) {
                    continue;
                }
                site.exit = Some(found.remove(&site.name).unwrap_or(SiteExit {
                    site: site.name.clone(),
                    pid: site.pid.unwrap_or(0),
                    code: None,
                    killed: !self.cut[h],
                }));
            }
        }
        self.sites.iter().filter_map(|s| s.exit.clone()).collect()
    }

    fn collect_logs(&mut self, dest: &Path) -> Result<Vec<String>, FleetError> {
        let work = self.work.clone();
        let run_id = self.run_id.clone();
        let dest = dest.to_path_buf();
        let timeout = self.connect_timeout;
        let cut = self.cut.clone();
        let names: Vec<Vec<String>> = (0..self.hosts.len()).map(|h| self.names(h)).collect();
        let got = self.each("logs", |h, spec, conn, bar| {
            if cut[h] {
                return Err("its network was cut; its sites' logs stay on the host".into());
            }
            bar.set_message("pulling the logs");
            if conn.is_none() {
                *conn = Some(Ssh::connect(spec, timeout).map_err(|e| e.to_string())?);
            }
            let ssh = conn.as_ref().expect("connected");
            // Every site's log in one transfer: per site a line `<site> <bytes>` (-1: no log)
            // and then that many bytes.
            let cmd = format!(
                "cd {} || exit 1; for s in {}; do f=\"$s/agent.jsonl\"; if [ -f \"$f\" ]; then n=$(wc -c < \"$f\"); printf '%s %s\\n' \"$s\" \"$n\"; head -c \"$n\" \"$f\"; else printf '%s -1\\n' \"$s\"; fi; done",
                shell_quote(&work),
                names[h].iter().map(|n| shell_quote(n)).collect::<Vec<_>>().join(" ")
            );
            let out = ssh.run("log transfer", &cmd).map_err(|e| e.to_string())?;
            let mut rest = out.as_bytes();
            let mut written = Vec::new();
            let mut missing = Vec::new();
            while !rest.is_empty() {
                let nl = rest
                    .iter()
                    .position(|&b| b == b'\n')
                    .ok_or("the log transfer ended in the middle of a header")?;
                let header = String::from_utf8_lossy(&rest[..nl]).to_string();
                rest = &rest[nl + 1..];
                let (site, n) = header
                    .rsplit_once(' ')
                    .ok_or_else(|| format!("the log transfer sent {header:?}, not a header"))?;
                let Ok(n) = n.trim().parse::<usize>() else {
                    missing.push(format!("{site}: no log {work}/{site}/agent.jsonl"));
                    continue;
                };
                if n > rest.len() {
                    return Err(format!("the log of {site} was cut short"));
                }
                let (log, more) = rest.split_at(n);
                rest = more;
                if let Some(other) = other_run(log, &run_id) {
                    missing.push(format!(
                        "{site}: its log {work}/{site}/agent.jsonl belongs to run {other}, not {run_id}"
                    ));
                    continue;
                }
                crate::sys::fsio::write_atomic(&dest.join(format!("{site}.jsonl")), log)
                    .map_err(|e| e.to_string())?;
                written.push(site.to_string());
            }
            if !missing.is_empty() {
                return Err(missing.join("; "));
            }
            Ok(written)
        })?;
        Ok(got.into_iter().flatten().collect())
    }

    fn kill(&mut self, site: &str) -> Result<(), FleetError> {
        let i = self.site_index(site)?;
        let fail = |reason: String| FleetError::Start {
            site: site.into(),
            reason,
        };
        if self.sites[i].pid.is_none() {
            self.read_pids();
        }
        let pid = self.sites[i]
            .pid
            .ok_or_else(|| fail("not started".into()))?;
        let ssh = self.conns[self.sites[i].host]
            .as_ref()
            .ok_or_else(|| fail("not connected".into()))?;
        // The agent leads a process group of its own: kill all of it.
        ssh.run("kill", &format!("kill -s KILL -- -{pid}"))
            .map(|_| ())
            .map_err(|e| fail(e.to_string()))
    }

    fn cut(&mut self, site: &str) -> Result<(), FleetError> {
        let i = self.site_index(site)?;
        let h = self.sites[i].host;
        let fail = |reason: String| FleetError::Start {
            site: site.into(),
            reason,
        };
        let cmd = self.hosts[h]
            .spec
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
        // Its host is unreachable from now on: nothing more is asked of it over SSH.
        for &s in &self.hosts[h].sites {
            let site = &mut self.sites[s];
            site.exit.get_or_insert(SiteExit {
                site: site.name.clone(),
                pid: site.pid.unwrap_or(0),
                code: None,
                killed: false,
            });
        }
        self.conns[h] = None;
        self.cut[h] = true;
        Ok(())
    }

    fn pids(&mut self) -> Vec<(String, u32)> {
        self.read_pids();
        self.sites
            .iter()
            .filter_map(|s| s.pid.map(|p| (s.name.clone(), p)))
            .collect()
    }

    fn location(&self, site: &str) -> Option<String> {
        let s = self.sites.iter().find(|s| s.name == site)?;
        let h = &self.hosts[s.host].spec;
        Some(format!(
            "{}@{}:{}/~/{}/sites/{}",
            h.user, h.host, h.port, self.dir, s.name
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_supervisor_record_reads_as_the_sites_exit() {
        let (site, e) = parse_exit("h-3 4121 0 0").unwrap();
        assert_eq!(
            (site.as_str(), e.pid, e.code, e.killed),
            ("h-3", 4121, Some(0), false)
        );
        let (_, e) = parse_exit("h-4 4122 137 1").unwrap();
        assert_eq!((e.code, e.killed), (None, true));
        assert!(parse_exit("h-5 x").is_none());
    }
}
