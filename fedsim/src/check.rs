//! `fedsim check`: a health table per site, like `hagrid check`. For each site: SSH reachable,
//! host key, login, prerequisites, agent build, data present (checksum against the plan),
//! credentials present (mode 600), and whether the site can reach the coordinator. Each row is a
//! tick or a cross with its reason; a row that depends on a failed one says so.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::fleet::package::AgentPackage;
use crate::fleet::remote::prerequisites;
use crate::fleet::ssh::{shell_quote, Ssh, SshError};
use crate::prep::Plan;
use crate::run::RunError;
use crate::scenario::{Provider, Scenario, SiteSpec};

#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub check: &'static str,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SiteHealth {
    pub site: String,
    pub rows: Vec<Row>,
}

impl SiteHealth {
    pub fn ok(&self) -> bool {
        self.rows.iter().all(|r| r.ok)
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

/// Check every site of the scenario, in parallel.
pub fn check(
    scenario: &Scenario,
    plan: &Plan,
    agent_exe: &std::path::Path,
) -> Result<Vec<SiteHealth>, RunError> {
    if scenario.fleet.provider != Provider::Ssh {
        return Ok(Vec::new());
    }
    let package = AgentPackage::build(agent_exe).ok();
    let expected: Vec<String> = plan
        .sites
        .iter()
        .map(|s| {
            s.table(plan)
                .and_then(|t| t.to_bytes(plan.format, &plan.data_path))
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
        let handles: Vec<_> = scenario
            .sites
            .iter()
            .zip(&expected)
            .map(|(spec, sha)| {
                let package = package.as_ref();
                let dir = format!(".fedsim/{}", scenario.scenario.name);
                let data = format!("data.{}", plan.format);
                scope.spawn(move || check_site(spec, &dir, &data, sha, package, &addr.to_string()))
            })
            .collect();
        let out: Vec<SiteHealth> = handles
            .into_iter()
            .map(|h| h.join().expect("check thread"))
            .collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = acceptor.join();
        out
    });
    Ok(health)
}

fn check_site(
    spec: &SiteSpec,
    dir: &str,
    data: &str,
    sha: &str,
    package: Option<&AgentPackage>,
    coordinator: &str,
) -> SiteHealth {
    let mut rows: Vec<Row> = Vec::new();
    let mut push = |check: &'static str, result: Result<String, String>| {
        let ok = result.is_ok();
        rows.push(Row {
            check,
            ok,
            detail: result.unwrap_or_else(|e| e),
        });
        ok
    };
    let skipped = |rows: &mut Vec<Row>, from: usize, why: &str| {
        for check in &CHECKS[from..] {
            rows.push(Row {
                check,
                ok: false,
                detail: format!("not checked: {why}"),
            });
        }
    };
    let timeout = Duration::from_secs(5);
    let ssh = match Ssh::connect(spec, timeout) {
        Ok(s) => {
            push("ssh reachable", Ok(format!("{}:{}", spec.host, spec.port)));
            push("host key", Ok("matches known_hosts".into()));
            push(
                "login",
                Ok(format!("as {} with {}", spec.user, spec.key.display())),
            );
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
                rows.push(Row {
                    check,
                    ok: true,
                    detail: format!("{}:{}", spec.host, spec.port),
                });
            }
            rows.push(Row {
                check: CHECKS[stage],
                ok: false,
                detail: reason,
            });
            skipped(&mut rows, stage + 1, &format!("{} failed", CHECKS[stage]));
            return SiteHealth {
                site: spec.name.clone(),
                rows,
            };
        }
    };
    match prerequisites(&ssh) {
        Ok(p) => match p.missing {
            None if p.arch == std::env::consts::ARCH => push(
                "prerequisites",
                Ok(format!("{}, {} cores", p.arch, p.cores)),
            ),
            None => push(
                "prerequisites",
                Err(format!(
                    "site is {}, the agent is built for {}",
                    p.arch,
                    std::env::consts::ARCH
                )),
            ),
            Some(m) => push("prerequisites", Err(m)),
        },
        Err(e) => push("prerequisites", Err(e.to_string())),
    };
    let agent = package.map(|p| format!(".fedsim/bin/{}", p.name));
    let agent_ok = match &agent {
        Some(path) => match ssh.exec(&format!("{} --version", shell_quote(path))) {
            Ok((0, out, _)) => push("agent build", Ok(format!("{} ({path})", out.trim()))),
            _ => push("agent build", Err(format!("this build ({path}) is not installed; `fedsim prep` or `fedsim run` installs it"))),
        },
        None => push("agent build", Err("cannot package the local binary to compare".into())),
    };
    let q = shell_quote(&format!("{dir}/{data}"));
    let got = ssh.exec(&format!(
        "sha256sum {q} 2>/dev/null || (test -f {q} && echo unreadable)"
    ));
    match got {
        Ok((0, out, _)) if out.split_whitespace().next() == Some(sha) => push("data", Ok(format!("{dir}/{data}, sha256 {}", &sha[..12]))),
        Ok((0, out, _)) if out.starts_with("unreadable") => push("data", Err(format!("{dir}/{data} exists but cannot be hashed"))),
        Ok((0, _, _)) => push("data", Err(format!("{dir}/{data} differs from the plan's split (checksum mismatch); run `fedsim prep` again"))),
        Ok(_) => push("data", Err(format!("{dir}/{data} is missing; `fedsim prep` uploads it"))),
        Err(e) => push("data", Err(e.to_string())),
    };
    let env = shell_quote(&format!("{dir}/.env"));
    match ssh.exec(&format!(
        "stat -c %a {env} && grep -c '^FEDSIM_TOKEN=' {env}"
    )) {
        Ok((0, out, _)) => {
            let mut l = out.lines();
            let mode = l.next().unwrap_or("").trim().to_string();
            if mode == "600" {
                push(
                    "credentials",
                    Ok(format!("{dir}/.env, mode 600, token present")),
                )
            } else {
                push(
                    "credentials",
                    Err(format!("{dir}/.env has mode {mode}, expected 600")),
                )
            }
        }
        _ => push(
            "credentials",
            Err(format!("{dir}/.env missing or without FEDSIM_TOKEN")),
        ),
    };
    if agent_ok {
        let path = agent.expect("agent_ok implies a path");
        let started = Instant::now();
        match ssh.exec(&format!(
            "{} probe {}",
            shell_quote(&path),
            shell_quote(coordinator)
        )) {
            Ok((0, _, _)) => push(
                "coordinator reachable",
                Ok(format!(
                    "{coordinator} in {:.0} ms",
                    started.elapsed().as_secs_f64() * 1e3
                )),
            ),
            Ok((_, out, err)) => push(
                "coordinator reachable",
                Err(format!("{coordinator}: {}", format!("{out}{err}").trim())),
            ),
            Err(e) => push("coordinator reachable", Err(e.to_string())),
        };
    } else {
        skipped(
            &mut rows,
            CHECKS.len() - 1,
            "no agent on the site to dial from",
        );
    }
    SiteHealth {
        site: spec.name.clone(),
        rows,
    }
}

/// The table for people: one block per site, a tick or a cross per check.
pub fn table(health: &[SiteHealth]) -> String {
    let mut out = String::new();
    for h in health {
        out.push_str(&format!("{} {}\n", if h.ok() { "✔" } else { "✘" }, h.site));
        for r in &h.rows {
            out.push_str(&format!(
                "    {} {:<22} {}\n",
                if r.ok { "✔" } else { "✘" },
                r.check,
                r.detail
            ));
        }
    }
    out
}
