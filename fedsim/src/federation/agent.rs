//! The site agent (`fedsim agent`): reads its own bundle, dials the coordinator, and answers rounds
//! with aggregates of its partition. It exits when the coordinator says so or goes away.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::frame::{Channel, FrameError, Role};
use super::{secagg, Message};
use crate::algorithms::{self, LocalData};
use crate::auth;
use crate::data::Table;

/// What a site's `.env` holds.
pub struct SiteEnv {
    pub site: String,
    pub token: String,
    pub coordinator: String,
    pub data: PathBuf,
    /// Seeds shared with each other site (secure aggregation only).
    pub pair_seeds: Option<secagg::PairSeeds>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("site bundle {}: {reason}", dir.display())]
    Bundle { dir: PathBuf, reason: String },
    #[error("cannot reach the coordinator at {addr} within {secs} s: {reason}")]
    Connect {
        addr: String,
        secs: f64,
        reason: String,
    },
    #[error("coordinator link: {0}")]
    Frame(#[from] FrameError),
    #[error("protocol: {0}")]
    Protocol(String),
}

impl SiteEnv {
    /// Read `DIR/.env`; the data path in it is relative to DIR.
    pub fn load(dir: &Path) -> Result<SiteEnv, AgentError> {
        let bundle = |reason: String| AgentError::Bundle {
            dir: dir.to_path_buf(),
            reason,
        };
        let path = dir.join(".env");
        let mut vars = std::collections::HashMap::new();
        let iter = dotenvy::from_path_iter(&path).map_err(|e| bundle(format!(".env: {e}")))?;
        for item in iter {
            let (k, v) = item.map_err(|e| bundle(format!(".env: {e}")))?;
            vars.insert(k, v);
        }
        let mut take = |k: &str| {
            vars.remove(k)
                .ok_or_else(|| bundle(format!(".env has no {k}")))
        };
        Ok(SiteEnv {
            site: take("FEDSIM_SITE")?,
            token: take("FEDSIM_TOKEN")?,
            coordinator: take("FEDSIM_COORDINATOR")?,
            data: dir.join(take("FEDSIM_DATA")?),
            pair_seeds: match vars.remove("FEDSIM_PAIR_SEEDS") {
                Some(v) => Some(
                    secagg::decode_seeds(&v)
                        .ok_or_else(|| bundle("FEDSIM_PAIR_SEEDS is malformed".into()))?,
                ),
                None => None,
            },
        })
    }
}

/// This process's peak resident memory in KiB (Linux getrusage).
pub fn peak_rss_kib() -> u64 {
    // SAFETY: getrusage only writes the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    u.ru_maxrss.max(0) as u64
}

/// Use at most `n` threads for local computations (faer and rayon).
pub fn limit_threads(n: usize) {
    let n = n.max(1);
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
    faer::set_global_parallelism(if n == 1 {
        faer::Par::Seq
    } else {
        faer::Par::rayon(n)
    });
}

/// Run one agent to the end of its run.
pub fn run(
    dir: &Path,
    coordinator: Option<&str>,
    connect_timeout: Duration,
) -> Result<(), AgentError> {
    let env = SiteEnv::load(dir)?;
    let addr = coordinator.unwrap_or(&env.coordinator).to_string();
    let span = tracing::info_span!("agent", site = %env.site);
    let _enter = span.enter();
    let stream = connect(&addr, connect_timeout)?;
    let mut ch = Channel::new(stream, auth::frame_key(&env.token), Role::Agent);
    let nonce = auth::nonce();
    ch.send(&Message::Hello {
        site: env.site.clone(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        pid: std::process::id(),
        nonce,
    })?;
    let (run_id, config, heartbeat, delays, secure) =
        match ch.recv(Instant::now() + connect_timeout, None)? {
            Message::Welcome {
                run_id,
                nonce: theirs,
                algorithm,
                heartbeat_secs,
                delays,
                secure,
            } => {
                ch.set_session(&nonce, &theirs);
                (
                    run_id,
                    algorithm,
                    Duration::from_secs_f64(heartbeat_secs.max(0.05)),
                    delays,
                    secure,
                )
            }
            other => {
                return Err(AgentError::Protocol(format!(
                    "expected Welcome, got {other:?}"
                )))
            }
        };
    tracing::info!(phase = "launch", run_id = %run_id, pid = std::process::id(), coordinator = %addr, "connected to coordinator");

    let prepared = Table::load(&env.data)
        .map_err(|e| e.to_string())
        .and_then(|t| LocalData::from_table(&t, &config, &env.data).map_err(|e| e.to_string()))
        .and_then(|d| {
            algorithms::build(&config)
                .map(|a| (d, a))
                .map_err(|e| e.to_string())
        });
    let (data, algorithm) = match prepared {
        Ok(v) => v,
        Err(reason) => {
            tracing::error!(phase = "launch", %reason, "cannot prepare local data");
            return Err(give_up(&mut ch, dir, reason));
        }
    };
    let masking = match (secure, &env.pair_seeds) {
        (false, _) => None,
        (true, Some(seeds)) => Some((env.site.as_str(), seeds)),
        (true, None) => {
            let reason = "secure aggregation is on but this site's .env has no FEDSIM_PAIR_SEEDS";
            return Err(give_up(&mut ch, dir, reason.into()));
        }
    };
    ch.send(&Message::Ready {
        // Under secure aggregation even the site's size is sent only inside masked sums.
        rows: if secure { 0 } else { data.rows() as u64 },
        peak_rss_kib: peak_rss_kib(),
    })?;
    tracing::info!(phase = "launch", rows = data.rows(), "data loaded");

    // Heartbeats from a thread of their own, so a long local step still says "alive".
    let beating = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (sender, flag) = (ch.sender(), beating.clone());
    std::thread::spawn(move || {
        while flag.load(std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(heartbeat);
            if sender.send(&Message::Heartbeat).is_err() {
                break;
            }
        }
    });
    let result = serve(
        &mut ch,
        algorithm.as_ref(),
        &data,
        heartbeat,
        &delays,
        masking,
    );
    beating.store(false, std::sync::atomic::Ordering::Relaxed);
    result
}

/// Tell the coordinator this site cannot take part (round 0), and why.
fn give_up(ch: &mut Channel, dir: &Path, reason: String) -> AgentError {
    let _ = ch.send(&Message::Failed {
        round: 0,
        reason: reason.clone(),
    });
    AgentError::Bundle {
        dir: dir.to_path_buf(),
        reason,
    }
}

/// Answer rounds until the coordinator ends the run, goes away or falls silent.
fn serve(
    ch: &mut Channel,
    algorithm: &dyn algorithms::Runner,
    data: &LocalData,
    heartbeat: Duration,
    delays: &[(u32, f64)],
    masking: Option<(&str, &secagg::PairSeeds)>,
) -> Result<(), AgentError> {
    let silence = heartbeat * 4;
    let mut algorithm_round = 0;
    loop {
        match ch.recv(Instant::now() + silence, None) {
            Ok(Message::Heartbeat) => {}
            Ok(Message::Task {
                round,
                body,
                active,
            }) => {
                algorithm_round += 1;
                if let Some((_, secs)) = delays.iter().find(|(r, _)| *r == algorithm_round) {
                    tracing::warn!(
                        phase = "federate",
                        round,
                        delay_secs = secs,
                        "injected fault: answering late"
                    );
                    std::thread::sleep(Duration::from_secs_f64(*secs));
                }
                let started = Instant::now();
                match algorithm.local(&body, data) {
                    Ok(reply) => {
                        let compute_secs = started.elapsed().as_secs_f64();
                        tracing::info!(
                            phase = "federate",
                            round,
                            compute_secs,
                            bytes = reply.len(),
                            "round computed"
                        );
                        let (body, masked) = match masking {
                            None => (reply, None),
                            Some((me, seeds)) => {
                                // Only the shape travels in clear; the numbers go masked.
                                let masked = algorithm
                                    .split(&reply)
                                    .map_err(|e| e.to_string())
                                    .and_then(|(shape, values)| {
                                        secagg::mask(&values, me, &active, seeds, round)
                                            .map(|m| (shape, m))
                                            .map_err(|e| e.to_string())
                                    });
                                match masked {
                                    Ok((shape, m)) => (shape, Some(m)),
                                    Err(reason) => {
                                        ch.send(&Message::Failed { round, reason })?;
                                        continue;
                                    }
                                }
                            }
                        };
                        ch.send(&Message::Reply {
                            round,
                            body,
                            compute_secs,
                            peak_rss_kib: peak_rss_kib(),
                            masked,
                        })?;
                    }
                    Err(e) => {
                        tracing::error!(phase = "federate", round, error = %e, "local step failed");
                        ch.send(&Message::Failed {
                            round,
                            reason: e.to_string(),
                        })?;
                    }
                }
            }
            Ok(Message::Shutdown { status }) => {
                tracing::info!(phase = "finish", %status, "coordinator ended the run");
                return Ok(());
            }
            Ok(other) => return Err(AgentError::Protocol(format!("unexpected {other:?}"))),
            Err(FrameError::Closed) => {
                tracing::warn!(phase = "finish", "coordinator closed the connection");
                return Ok(());
            }
            Err(FrameError::Timeout(_)) => {
                tracing::error!(
                    phase = "finish",
                    silence_secs = silence.as_secs_f64(),
                    "coordinator silent: giving up"
                );
                return Err(AgentError::Protocol(format!(
                    "no word from the coordinator for {:.1} s",
                    silence.as_secs_f64()
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
}
/// Dial with retries: the coordinator may still be starting.
fn connect(addr: &str, timeout: Duration) -> Result<TcpStream, AgentError> {
    let sock: SocketAddr = addr.parse().map_err(|e| AgentError::Connect {
        addr: addr.into(),
        secs: 0.0,
        reason: format!("not an address: {e}"),
    })?;
    let started = Instant::now();
    loop {
        match TcpStream::connect_timeout(&sock, Duration::from_secs(2)) {
            Ok(s) => return Ok(s),
            Err(e) if started.elapsed() >= timeout => {
                return Err(AgentError::Connect {
                    addr: addr.into(),
                    secs: timeout.as_secs_f64(),
                    reason: e.to_string(),
                })
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
