//! `fedsim check`: a health table per site, like `hagrid check`. For each site: SSH reachable,
//! host key, login, prerequisites, agent build, data present (checksum against the plan),
//! credentials present (mode 600), and whether the site can reach the coordinator.
//!
//! Each row is ok, info or failed, and only a failed row fails the check: it names what would make
//! `fedsim run` fail. What a run puts in place itself (the agent, the data, the `.env`) is info
//! until then, so a fresh, healthy fleet passes before its first run. A row that depends on a
//! failed one says so.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::fleet::package::AgentPackage;
use crate::fleet::remote::prerequisites;
use crate::fleet::ssh::{last_line, shell_quote, Ssh, SshError};
use crate::plan::Study;
use crate::run::RunError;
use crate::scenario::{Provider, Scenario, SiteSpec};

/// A row's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Ok,
    /// Not in place yet, or not checked, and no reason for the run to fail: `fedsim run`
    /// installs, uploads or replaces it.
    Info,
    /// `fedsim run` would fail on this.
    Failed,
}

impl State {
    fn mark(self) -> &'static str {
        match self {
            State::Ok => "✔",
            State::Info => "·",
            State::Failed => "✘",
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub check: &'static str,
    pub state: State,
    pub detail: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SiteHealth {
    pub site: String,
    pub rows: Vec<Row>,
}

impl SiteHealth {
    /// No row failed: the run can go ahead on this site.
    pub fn ok(&self) -> bool {
        self.rows.iter().all(|r| r.state != State::Failed)
    }
}

const CHECKS: [&str; 8] = [
    "ssh reachable",
    "host key",
    "login",
    "prerequisites",
    "agent build",
    "data",
    "credentials",
    "coordinator reachable",
];

/// What every site is checked against.
struct Expect<'a> {
    /// `data.<format>`
    data: String,
    /// The agent package this controller would install, or why it cannot make one.
    package: Result<&'a AgentPackage, String>,
    /// The address the site's probe dials.
    coordinator: SocketAddr,
    /// Agents reach the coordinator through SSH reverse forwards, not its address.
    tunnel: bool,
    /// An external algorithm, whose local command must run on the site.
    external: Option<&'a crate::algorithms::external::ExternalSpec>,
}

/// Sites checked at once.
const CHECKS_AT_ONCE: usize = 16;

/// Check every site of the scenario, in parallel.
pub fn check(
    scenario: &Scenario,
    study: &Study,
    agent_exe: &std::path::Path,
) -> Result<Vec<SiteHealth>, RunError> {
    // The hosts: the scenario's, or the VMs of its fleet that is up (`fedsim fleet up`).
    let sites: Vec<SiteSpec> = match scenario.fleet.provider {
        Provider::Ssh => scenario.site_specs(),
        Provider::Vm => match crate::fleet::vm::FleetState::load(&scenario.scenario.name) {
            Some(state) => {
                state
                    .usable(&scenario.source)
                    .map_err(|e| RunError::Fleet(e.into()))?;
                crate::fleet::vm::site_specs(&state)
            }
            None => return Ok(Vec::new()),
        },
        // The Vagrant VMs that are up (a check boots none).
        Provider::Vagrant => {
            let fail = |e: crate::fleet::vagrant::VagrantError| RunError::Fleet(e.into());
            let v = crate::fleet::vagrant::Vagrant::new(
                &crate::fleet::vagrant_dir(scenario),
                scenario.partition.sites,
            )
            .map_err(fail)?;
            if v.running().map_err(fail)?.is_empty() {
                return Ok(Vec::new());
            }
            let state = v.state_dir();
            std::fs::create_dir_all(&state).map_err(|e| {
                fail(crate::fleet::vagrant::VagrantError::Command {
                    args: "ssh-config".into(),
                    dir: v.dir().to_path_buf(),
                    reason: format!("{}: {e}", state.display()),
                })
            })?;
            v.ssh_sites(&state.join("known_hosts")).map_err(fail)?
        }
        Provider::Local => return Ok(Vec::new()),
    };
    let package = AgentPackage::build(agent_exe)
        .map_err(|e| format!("cannot package this fedsim binary for the sites: {e}"));
    let plan = study.first();
    let expected: Vec<String> = study
        .sites()
        .iter()
        .map(|s| {
            study
                .site_frame(s)
                .and_then(|t| t.to_bytes(study.format, &plan.data_path))
                .map(|b| hex::encode(Sha256::digest(&b)))
        })
        .collect::<Result<_, _>>()
        .map_err(|e| RunError::Plan(e.into()))?;
    // A listener like the coordinator's, for the sites to dial.
    let bind = scenario.fleet.coordinator.clone();
    let listener =
        TcpListener::bind(&bind).map_err(|source| RunError::Listen { addr: bind, source })?;
    let addr = listener.local_addr().map_err(|source| RunError::Listen {
        addr: scenario.fleet.coordinator.clone(),
        source,
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| RunError::Listen {
            addr: addr.to_string(),
            source,
        })?;
    // A host with many sites keeps each one's bundle in a folder of its own (fleet/hosts.rs).
    let sharded = scenario.sites.iter().any(|s| s.count > 1);
    let base = format!(".fedsim/{}", scenario.scenario.name);
    let site_dir = |spec: &SiteSpec| match sharded {
        true => format!("{base}/sites/{}", spec.name),
        false => base.clone(),
    };
    let expect = Expect {
        data: format!("data.{}", study.format),
        package: package.as_ref().map_err(Clone::clone),
        coordinator: addr,
        tunnel: scenario.fleet.tunnel(),
        // (The first external analysis's local command stands for every one's.)
        external: study.analyses.iter().find_map(|p| p.config.external()),
    };
    let stop = std::sync::atomic::AtomicBool::new(false);
    let health = std::thread::scope(|scope| {
        let acceptor = scope.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Accept and drop: the site's probe only needs the connection to open.
                if listener.accept().is_err() {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        });
        // A few logins at a time: a host with hundreds of sites (`count`) would refuse the rest
        // (sshd's MaxStartups).
        let mut out: Vec<SiteHealth> = Vec::new();
        let each: Vec<(&SiteSpec, &String)> = sites.iter().zip(&expected).collect();
        for chunk in each.chunks(CHECKS_AT_ONCE) {
            let handles: Vec<_> = chunk
                .iter()
                .map(|&(spec, sha)| {
                    let expect = &expect;
                    let dir = site_dir(spec);
                    scope.spawn(move || check_site(spec, sha, expect, &dir))
                })
                .collect();
            out.extend(handles.into_iter().map(|h| h.join().expect("check thread")));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = acceptor.join();
        out
    });
    Ok(health)
}

fn row(check: &'static str, state: State, detail: impl Into<String>) -> Row {
    Row {
        check,
        state,
        detail: detail.into(),
    }
}

/// One site's checks; `dir` holds its bundle (`.fedsim/<scenario>`, or its own folder under it
/// on a host with many sites), relative to the site user's home.
fn check_site(spec: &SiteSpec, sha: &str, expect: &Expect, dir: &str) -> SiteHealth {
    let mut rows: Vec<Row> = Vec::new();
    let timeout = Duration::from_secs(5);
    let ssh = match Ssh::connect(spec, timeout) {
        Ok(s) => {
            let addr = format!("{}:{}", spec.host, spec.port);
            rows.push(row("ssh reachable", State::Ok, addr));
            rows.push(row("host key", State::Ok, "matches known_hosts"));
            let login = format!("as {} with {}", spec.user, spec.key.display());
            rows.push(row("login", State::Ok, login));
            s
        }
        Err(e) => {
            let (stage, reason) = match &e {
                SshError::Connect { reason, .. } => {
                    (0, format!("{}:{}: {reason}", spec.host, spec.port))
                }
                SshError::UnknownHostKey { .. }
                | SshError::ChangedHostKey { .. }
                | SshError::KnownHosts { .. } => (1, e.to_string()),
                _ => (2, e.to_string()),
            };
            for check in &CHECKS[..stage] {
                rows.push(row(
                    check,
                    State::Ok,
                    format!("{}:{}", spec.host, spec.port),
                ));
            }
            rows.push(row(CHECKS[stage], State::Failed, reason));
            for check in &CHECKS[stage + 1..] {
                let why = format!("not checked: {} failed", CHECKS[stage]);
                rows.push(row(check, State::Info, why));
            }
            return SiteHealth {
                site: spec.name.clone(),
                rows,
            };
        }
    };
    rows.push(check_prerequisites(&ssh));
    if let Some(spec) = expect.external {
        rows.push(check_local_command(&ssh, spec));
    }
    let (agent_row, agent) = check_agent(&ssh, expect);
    rows.push(agent_row);
    rows.push(check_data(&ssh, spec, sha, expect, dir));
    rows.push(check_credentials(&ssh, spec, dir));
    rows.push(check_coordinator(&ssh, agent.as_deref(), expect));
    SiteHealth {
        site: spec.name.clone(),
        rows,
    }
}

/// An external algorithm's local command needs its program on the site: an interpreter on PATH
/// (`python3`), or one of the files the run ships.
fn check_local_command(ssh: &Ssh, spec: &crate::algorithms::external::ExternalSpec) -> Row {
    let name = "algorithm";
    let program = spec.local.first().map(String::as_str).unwrap_or_default();
    if spec.files.iter().any(|f| f == program) {
        return row(
            name,
            State::Info,
            format!("{program} is shipped with each run"),
        );
    }
    match ssh.exec(&format!("command -v {}", shell_quote(program))) {
        Ok((0, out, _)) => row(name, State::Ok, format!("{program}: {}", last_line(&out))),
        Ok(_) => row(
            name,
            State::Failed,
            format!("{program} (the local command's program) is not on the site's PATH"),
        ),
        Err(e) => row(name, State::Failed, e.to_string()),
    }
}

/// The run stops on a missing tool or another architecture.
fn check_prerequisites(ssh: &Ssh) -> Row {
    let name = "prerequisites";
    match prerequisites(ssh) {
        Ok(p) => match p.missing {
            None if p.arch == std::env::consts::ARCH => {
                row(name, State::Ok, format!("{}, {} cores", p.arch, p.cores))
            }
            None => row(
                name,
                State::Failed,
                format!(
                    "site is {}, the agent is built for {}",
                    p.arch,
                    std::env::consts::ARCH
                ),
            ),
            Some(m) => row(name, State::Failed, m),
        },
        Err(e) => row(name, State::Failed, e.to_string()),
    }
}

/// This build on the site; the run installs it when it is absent or does not run. Returns the
/// row, and the agent's path when it runs (for the coordinator probe).
fn check_agent(ssh: &Ssh, expect: &Expect) -> (Row, Option<String>) {
    let name = "agent build";
    let package = match &expect.package {
        Ok(p) => p,
        Err(e) => return (row(name, State::Failed, e.as_str()), None),
    };
    let path = format!(".fedsim/bin/{}", package.name);
    let q = shell_quote(&path);
    // Its checksum, then whether it runs: a file of that name proves nothing by itself.
    let sum = ssh
        .exec(&format!("test -e {q} && sha256sum {q}"))
        .ok()
        .filter(|(status, _, _)| *status == 0)
        .map(|(_, out, _)| out.split_whitespace().next().unwrap_or("").to_string());
    if let Some(sum) = sum.filter(|s| *s != package.sha256) {
        return (
            row(
                name,
                State::Info,
                format!(
                    "{path} is not this build (SHA-256 {}…); `fedsim run` installs it again",
                    &sum[..sum.len().min(12)]
                ),
            ),
            None,
        );
    }
    match ssh.exec(&format!("test -e {q} || exit 3; {q} --version 2>&1")) {
        Ok((0, out, _)) => (
            row(
                name,
                State::Ok,
                format!("{} ({path}, SHA-256 checked)", out.trim()),
            ),
            Some(path),
        ),
        Ok((3, _, _)) => (
            row(
                name,
                State::Info,
                format!("not installed yet; `fedsim run` installs it ({path})"),
            ),
            None,
        ),
        Ok((status, out, _)) => (
            row(
                name,
                State::Info,
                format!(
                    "{path} does not run (exit {status}: {}); `fedsim run` installs it again",
                    last_line(&out)
                ),
            ),
            None,
        ),
        Err(e) => (row(name, State::Failed, e.to_string()), None),
    }
}

/// Every run uploads the data afresh, so a missing or different file is info. What fails is a
/// site folder the run cannot write: an unwritable ancestor, or a folder of another user (the run
/// sets its mode 700).
fn check_data(ssh: &Ssh, spec: &SiteSpec, sha: &str, expect: &Expect, dir: &str) -> Row {
    let name = "data";
    let data = &expect.data;
    let file = format!("{dir}/{data}");
    let (qd, qf) = (shell_quote(dir), shell_quote(&file));
    let script = format!(
        r#"d={qd}
while [ ! -e "$d" ] && [ "$d" != . ]; do d=$(dirname "$d"); done
if [ ! -d "$d" ] || [ ! -w "$d" ] || [ ! -x "$d" ]; then echo "unwritable $d"; exit 0; fi
if [ -e {qd} ] && [ ! -O {qd} ]; then echo notowner; exit 0; fi
if [ ! -e {qf} ]; then echo missing; exit 0; fi
command -v sha256sum >/dev/null 2>&1 || {{ echo nohash; exit 0; }}
sha256sum {qf} 2>/dev/null || echo unreadable"#
    );
    let out = match ssh.exec(&script) {
        Ok((0, out, _)) => out,
        Ok((status, out, err)) => {
            let why = format!(
                "the check's script exited {status}: {}",
                last_line(&(out + err.as_str()))
            );
            return row(name, State::Failed, why);
        }
        Err(e) => return row(name, State::Failed, e.to_string()),
    };
    let word = out.split_whitespace().next().unwrap_or("");
    match word {
        "unwritable" => {
            let at = out.split_whitespace().nth(1).unwrap_or(dir);
            row(
                name,
                State::Failed,
                format!(
                    "{at} is not writable by {}: `fedsim run` cannot upload the bundle",
                    spec.user
                ),
            )
        }
        "notowner" => row(
            name,
            State::Failed,
            format!(
                "{dir} belongs to another user than {}: `fedsim run` cannot make it private (mode 700)",
                spec.user
            ),
        ),
        "missing" => row(
            name,
            State::Info,
            format!("{file} not uploaded yet; `fedsim run` uploads it"),
        ),
        "nohash" => row(
            name,
            State::Info,
            format!("{file} present, not compared (no sha256sum on the site); `fedsim run` uploads it again"),
        ),
        "unreadable" => row(
            name,
            State::Info,
            format!("{file} exists but cannot be read; `fedsim run` replaces it"),
        ),
        got if got == sha => row(
            name,
            State::Ok,
            format!("{file}, sha256 {}", &sha[..12]),
        ),
        _ => row(
            name,
            State::Info,
            format!("{file} differs from this plan's split; `fedsim run` uploads the new one"),
        ),
    }
}

/// The run writes a fresh `.env` (mode 600) on every site, so only the controller's side can
/// fail here: a credentials file the scenario names (`[[sites]] env`) that is missing or bad.
fn check_credentials(ssh: &Ssh, spec: &SiteSpec, dir: &str) -> Row {
    let name = "credentials";
    if let Some(given) = &spec.env {
        if let Err(e) = crate::bundle::token_from_env_file(&spec.name, given) {
            return row(name, State::Failed, e.to_string());
        }
    }
    use crate::bundle::env::{FILE, TOKEN};
    let path = format!("{dir}/{FILE}");
    let (qdir, env) = (shell_quote(dir), shell_quote(&path));
    let script = format!(
        "test -e {qdir} && ! test -x {qdir} && exit 4; test -e {env} || exit 3; stat -c %a {env} && grep -c '^{TOKEN}=' {env}"
    );
    match ssh.exec(&script) {
        Ok((0, out, _)) => match out.lines().next().unwrap_or("").trim() {
            "600" => row(name, State::Ok, format!("{path}, mode 600, token present")),
            mode => row(
                name,
                State::Info,
                format!("{path} has mode {mode}, not 600; `fedsim run` replaces it with a mode 600 file"),
            ),
        },
        Ok((3, _, _)) => row(
            name,
            State::Info,
            format!("{path} not written yet; `fedsim run` writes it (mode 600)"),
        ),
        Ok((4, _, _)) => row(
            name,
            State::Info,
            format!("not checked: {dir} cannot be entered"),
        ),
        Ok(_) => row(
            name,
            State::Info,
            format!("{path} cannot be read or holds no {TOKEN}; `fedsim run` replaces it"),
        ),
        Err(e) => row(name, State::Failed, e.to_string()),
    }
}

/// Dial the coordinator from the site: with the agent when it is installed, else with the
/// site's own bash. Not needed when the agents come through SSH reverse forwards.
fn check_coordinator(ssh: &Ssh, agent: Option<&str>, expect: &Expect) -> Row {
    let name = "coordinator reachable";
    let addr = expect.coordinator;
    if expect.tunnel {
        return row(
            name,
            State::Info,
            "not needed: with fleet.tunnel the agent reaches the coordinator through an SSH reverse forward",
        );
    }
    let (command, with) = match agent {
        Some(path) => (
            format!("{} reach {}", shell_quote(path), shell_quote(&addr.to_string())),
            "the agent",
        ),
        None => (
            // bash's /dev/tcp opens a TCP connection; `timeout` bounds it as the probe does.
            format!(
                "command -v bash >/dev/null 2>&1 && command -v timeout >/dev/null 2>&1 || exit 3; timeout 5 bash -c {} 2>&1",
                shell_quote(&format!("</dev/tcp/{}/{}", addr.ip(), addr.port()))
            ),
            "bash, the agent is not installed yet",
        ),
    };
    let started = Instant::now();
    match ssh.exec(&command) {
        Ok((0, _, _)) => row(
            name,
            State::Ok,
            format!(
                "{addr} in {:.0} ms (dialled with {with})",
                started.elapsed().as_secs_f64() * 1e3
            ),
        ),
        Ok((3, _, _)) if agent.is_none() => row(
            name,
            State::Info,
            "not checked: the agent is not installed yet and the site has no bash and timeout to dial with",
        ),
        Ok((124, _, _)) if agent.is_none() => row(
            name,
            State::Failed,
            format!("{addr}: no connection within 5 s (dialled with bash)"),
        ),
        Ok((_, out, err)) => row(
            name,
            State::Failed,
            format!("{addr}: {}", last_line(&format!("{out}{err}"))),
        ),
        Err(e) => row(name, State::Failed, e.to_string()),
    }
}

/// The table for people: one block per site, a mark per check (✔ ok, · info, ✘ failed).
pub fn table(health: &[SiteHealth]) -> String {
    let mut out = String::new();
    for h in health {
        out.push_str(&format!("{} {}\n", if h.ok() { "✔" } else { "✘" }, h.site));
        for r in &h.rows {
            out.push_str(&format!(
                "    {} {:<22} {}\n",
                r.state.mark(),
                r.check,
                r.detail
            ));
        }
    }
    out
}
