//! The coordinator: waits for every site to dial in and authenticate, then drives the algorithm's
//! rounds. The worst site decides the run: one lost or failing site ends it, named, with its round.

use std::net::{TcpListener, TcpStream};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::frame::{Channel, FrameError, Role};
use super::Message;
use crate::algorithms::{self, AlgoError, AlgorithmConfig, Estimates, Step};
use crate::auth::FrameKey;

/// What the coordinator knows of a site: its name and the key derived from its token.
pub struct SiteAuth {
    pub name: String,
    pub key: FrameKey,
    /// Injected delays for this site: (algorithm round, seconds).
    pub delays: Vec<(u32, f64)>,
    /// The analysis as this site runs it (differs per site only in a vertical split).
    pub config: AlgorithmConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum FedError {
    #[error("site {site} did not connect within {secs:.1} s{detail}")]
    NotConnected {
        site: String,
        secs: f64,
        detail: String,
    },
    #[error("site {site} failed in round {round}: {reason}")]
    SiteFailed {
        site: String,
        round: u32,
        reason: String,
    },
    #[error("site {site} was lost in round {round}: {cause}")]
    SiteLost {
        site: String,
        round: u32,
        cause: FrameError,
    },
    #[error("aggregation failed after round {round}: {source}")]
    Algorithm { round: u32, source: AlgoError },
    #[error("run cancelled")]
    Cancelled,
    #[error(
        "{} could not take part through the portal: {reason}",
        portal_who(site)
    )]
    Portal { site: String, reason: String },
    #[error("nobody started the run in the portal within {secs:.1} s of every site connecting")]
    NotStarted { secs: f64 },
    #[error("coordinator socket: {0}")]
    Io(#[from] std::io::Error),
}

impl FedError {
    /// The round the failure happened in.
    pub fn round(&self) -> u32 {
        match self {
            FedError::SiteFailed { round, .. }
            | FedError::SiteLost { round, .. }
            | FedError::Algorithm { round, .. } => *round,
            _ => 0,
        }
    }

    /// The site this failure is attributed to, if any.
    pub fn site(&self) -> Option<&str> {
        match self {
            FedError::NotConnected { site, .. }
            | FedError::SiteFailed { site, .. }
            | FedError::SiteLost { site, .. } => Some(site),
            FedError::Portal { site, .. } if !is_operator(site) => Some(site),
            _ => None,
        }
    }
}

/// The coordinator's own account and the browser machinery are not sites.
fn is_operator(account: &str) -> bool {
    account == crate::enrol::COORDINATOR || account == "browser"
}

fn portal_who(account: &str) -> String {
    if is_operator(account) {
        account.to_string()
    } else {
        format!("site {account}")
    }
}

/// Per-site traffic and compute for one round, seen from the site.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SiteRound {
    pub site: String,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub compute_secs: f64,
    /// The site process's peak resident memory (KiB), as it reported.
    pub peak_rss_kib: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoundMetrics {
    /// 0 is the sites loading their data; 1.. are the algorithm's rounds.
    pub round: u32,
    pub wall_secs: f64,
    pub sites: Vec<SiteRound>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinedSite {
    pub name: String,
    pub pid: u32,
    pub rows: u64,
    pub agent_version: String,
}

pub struct Outcome {
    /// Seconds until every site had connected and authenticated.
    pub connect_secs: f64,
    pub estimates: Estimates,
    /// The sites that finished the run (all of them unless some were lost and the run went on).
    pub joined: Vec<JoinedSite>,
    pub rounds: Vec<RoundMetrics>,
    pub lost: Vec<LostSite>,
}

pub struct Settings<'a> {
    /// Live per-site progress lines (drawn only at a terminal).
    pub progress: Option<&'a crate::progress::Progress>,
    pub run_id: String,
    pub connect_timeout: Duration,
    pub round_timeout: Duration,
    /// Heartbeat period; a peer silent for four periods is lost.
    pub heartbeat: Duration,
    /// Sites mask their replies pairwise; the coordinator sums the masked numbers.
    pub secure: bool,
    /// Test hook: every frame received from a site is appended here as a JSON line.
    pub record: Option<&'a std::sync::Mutex<std::fs::File>>,
    /// Go on without a lost site while at least this many remain (None: fail the run).
    pub continue_with: Option<usize>,
    pub cancel: &'a AtomicBool,
    /// The portal: rounds begin only once its coordinator account presses start, and it shows
    /// each site's progress to that site.
    pub portal: Option<&'a crate::portal::Board>,
    /// How long to wait for that start once every site is connected.
    pub start_timeout: Duration,
}

/// What the coordinator asks of the world outside the sockets.
pub trait Watch {
    /// A site whose agent is known to be gone (e.g. its process exited), with the reason.
    fn dead_site(&mut self) -> Option<(String, String)>;
    /// Called as each round starts, before the requests go out (fault injection).
    fn round_starts(&mut self, _round: u32) {}
}

/// A site the run went on without.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LostSite {
    pub site: String,
    pub round: u32,
    pub cause: String,
}

pub fn run(
    listener: &TcpListener,
    sites: &[SiteAuth],
    config: &AlgorithmConfig,
    settings: &Settings,
    watch: &mut dyn Watch,
) -> Result<Outcome, FedError> {
    let started = Instant::now();
    let (mut channels, mut joined) = accept_all(listener, sites, settings, watch)?;
    let connect_secs = started.elapsed().as_secs_f64();
    let mut lost = Vec::new();
    if let Some(board) = settings.portal {
        // The agents wait too, and take silence for a lost coordinator.
        let senders: Vec<_> = channels.iter().map(Channel::sender).collect();
        with_heartbeats(senders, settings, || wait_for_start(board, settings, watch))?;
        // Sites that failed at the portal and were let go (on_dropout = "continue").
        for (site, reason) in board.left() {
            let Some(i) = joined.iter().position(|j| j.name == site) else {
                continue;
            };
            let mut ch = channels.remove(i);
            let _ = ch.send(&Message::Shutdown {
                status: "left".into(),
            });
            ch.shutdown();
            joined.remove(i);
            tracing::warn!(phase = "federate", %site, %reason, "site left at the portal; going on without it");
            lost.push(LostSite {
                site,
                round: 0,
                cause: format!("could not take part through the portal: {reason}"),
            });
        }
    }
    let mut rounds = Vec::new();
    let mut first_round = 0;
    let result = loop {
        let senders: Vec<_> = channels.iter().map(Channel::sender).collect();
        let attempt = with_heartbeats(senders, settings, || {
            drive(
                &mut channels,
                &mut joined,
                config,
                settings,
                watch,
                first_round,
                &mut rounds,
            )
        });
        match attempt {
            Err(e) => {
                let (Some(min), Some(site)) =
                    (settings.continue_with, e.site().map(str::to_string))
                else {
                    break Err(e);
                };
                let Some(i) = joined.iter().position(|j| j.name == site) else {
                    break Err(e);
                };
                if joined.len() - 1 < min {
                    tracing::error!(phase = "federate", %site, remaining = joined.len() - 1, min, "too few sites left to continue");
                    break Err(e);
                }
                let round = e.round();
                tracing::warn!(phase = "federate", %site, round, cause = %e, "site lost; continuing without it from the first round");
                if let Some(b) = settings.portal {
                    b.event(
                        Some(&site),
                        format!("lost in round {round}: {e}; the run goes on without it"),
                    );
                }
                lost.push(LostSite {
                    site,
                    round,
                    cause: e.to_string(),
                });
                channels.remove(i).shutdown();
                joined.remove(i);
                first_round = rounds.last().map_or(0, |r: &RoundMetrics| r.round) + 1;
            }
            Ok(estimates) => break Ok(estimates),
        }
    };
    let status = if result.is_ok() {
        "succeeded"
    } else {
        "failed"
    };
    for ch in channels.iter_mut() {
        let _ = ch.send(&Message::Shutdown {
            status: status.into(),
        });
    }
    let estimates = result?;
    Ok(Outcome {
        connect_secs,
        estimates,
        joined,
        rounds,
        lost,
    })
}

/// Run `f` while a thread sends a heartbeat to every site each period.
fn with_heartbeats<R>(
    senders: Vec<super::frame::Sender>,
    settings: &Settings,
    f: impl FnOnce() -> R,
) -> R {
    /// Stops the heartbeat thread however `f` ends, a panic included.
    struct Stop<'a>(&'a AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut next = Instant::now() + settings.heartbeat;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if Instant::now() >= next {
                    for s in &senders {
                        let _ = s.send(&Message::Heartbeat);
                    }
                    next += settings.heartbeat;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let _stop = Stop(&stop);
        f()
    })
}

/// Hold the rounds until the coordinator account presses start in the portal. A site whose
/// driver gave up (say, its login was refused) fails the run, named.
fn wait_for_start(
    board: &crate::portal::Board,
    settings: &Settings,
    watch: &mut dyn Watch,
) -> Result<(), FedError> {
    use crate::portal::NoStart;
    board.event(None, "every agent is connected; waiting for the start");
    let started = Instant::now();
    loop {
        if let Some((site, reason)) = watch.dead_site() {
            return Err(FedError::SiteFailed {
                site,
                round: 0,
                reason,
            });
        }
        let left = settings.start_timeout.saturating_sub(started.elapsed());
        match board.wait_start(left.min(Duration::from_millis(200)), settings.cancel) {
            Ok(()) => return Ok(()),
            Err(NoStart::Aborted { site, reason }) => {
                return Err(FedError::Portal { site, reason });
            }
            Err(NoStart::Cancelled) => return Err(FedError::Cancelled),
            Err(NoStart::TimedOut) if left.is_zero() => {
                return Err(FedError::NotStarted {
                    secs: started.elapsed().as_secs_f64(),
                })
            }
            Err(NoStart::TimedOut) => {}
        }
    }
}

/// Wait until every site has connected and proved it holds its token.
fn accept_all(
    listener: &TcpListener,
    sites: &[SiteAuth],
    settings: &Settings,
    watch: &mut dyn Watch,
) -> Result<(Vec<Channel>, Vec<JoinedSite>), FedError> {
    listener.set_nonblocking(true)?;
    let started = Instant::now();
    let deadline = started + settings.connect_timeout;
    let mut slots: Vec<Option<(Channel, JoinedSite)>> = sites.iter().map(|_| None).collect();
    let mut refusals: Vec<String> = Vec::new();
    while slots.iter().any(Option::is_none) {
        if settings.cancel.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(FedError::Cancelled);
        }
        if let Some((site, reason)) = watch.dead_site() {
            return Err(FedError::SiteFailed {
                site,
                round: 0,
                reason,
            });
        }
        if Instant::now() >= deadline {
            let missing = slots
                .iter()
                .position(Option::is_none)
                .expect("loop condition");
            let detail = if refusals.is_empty() {
                String::new()
            } else {
                format!(" (refused: {})", refusals.join("; "))
            };
            return Err(FedError::NotConnected {
                site: sites[missing].name.clone(),
                secs: started.elapsed().as_secs_f64(),
                detail,
            });
        }
        match listener.accept() {
            Ok((stream, peer)) => match handshake(stream, sites, &slots, settings) {
                Ok((idx, ch, site)) => {
                    tracing::info!(phase = "launch", site = %site.name, pid = site.pid, %peer, "site joined");
                    if let Some(b) = settings.portal {
                        b.event(
                            Some(&site.name),
                            format!("agent connected from {peer} and authenticated"),
                        );
                    }
                    slots[idx] = Some((ch, site));
                }
                Err(reason) => {
                    tracing::warn!(phase = "launch", %peer, %reason, "connection refused");
                    refusals.push(reason);
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(slots.into_iter().map(|s| s.expect("all joined")).unzip())
}

fn handshake(
    stream: TcpStream,
    sites: &[SiteAuth],
    slots: &[Option<(Channel, JoinedSite)>],
    settings: &Settings,
) -> Result<(usize, Channel, JoinedSite), String> {
    stream.set_nonblocking(false).map_err(|e| e.to_string())?;
    let mut ch = Channel::new(stream, [0; 32], Role::Coordinator);
    let mut idx = None;
    let hello = ch
        .recv_keyed(
            Instant::now() + Duration::from_secs(10),
            |m: &Message| match m {
                Message::Hello { site, .. } => {
                    let i = sites
                        .iter()
                        .position(|s| &s.name == site)
                        .ok_or(format!("unknown site {site:?}"))?;
                    if slots[i].is_some() {
                        return Err(format!("site {site} is already connected"));
                    }
                    idx = Some(i);
                    Ok(sites[i].key)
                }
                other => Err(format!("expected Hello, got {}", kind(other))),
            },
        )
        .map_err(|e| match (e, idx) {
            (FrameError::BadTag, Some(i)) => {
                format!("site {} failed authentication (wrong token)", sites[i].name)
            }
            (e, _) => e.to_string(),
        })?;
    let Message::Hello {
        site,
        agent_version,
        pid,
        nonce,
    } = hello
    else {
        unreachable!("checked in lookup")
    };
    let idx = idx.expect("set by lookup");
    let ours = crate::auth::nonce();
    ch.send(&Message::Welcome {
        run_id: settings.run_id.clone(),
        nonce: ours,
        algorithm: sites[idx].config.clone(),
        heartbeat_secs: settings.heartbeat.as_secs_f64(),
        delays: sites[idx].delays.clone(),
        secure: settings.secure,
    })
    .map_err(|e| e.to_string())?;
    ch.set_session(&nonce, &ours);
    let joined = JoinedSite {
        name: site,
        pid,
        rows: 0,
        agent_version,
    };
    Ok((idx, ch, joined))
}

fn kind(m: &Message) -> &'static str {
    match m {
        Message::Hello { .. } => "Hello",
        Message::Welcome { .. } => "Welcome",
        Message::Ready { .. } => "Ready",
        Message::Task { .. } => "Task",
        Message::Reply { .. } => "Reply",
        Message::Failed { .. } => "Failed",
        Message::Shutdown { .. } => "Shutdown",
        Message::Heartbeat => "Heartbeat",
    }
}

/// Send one request to every site in parallel and collect one answer each, in site order.
/// Heartbeats keep a slow site alive; silence beyond four heartbeat periods, or the round
/// deadline, loses it.
fn exchange(
    channels: &mut [Channel],
    names: &[String],
    round: u32,
    request: Option<&[u8]>,
    settings: &Settings,
) -> Result<Vec<(Message, SiteRound)>, FedError> {
    let deadline = Instant::now() + settings.round_timeout;
    let silence = settings.heartbeat * 4;
    let results: Vec<Result<(Message, SiteRound), FedError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = channels
            .iter_mut()
            .zip(names)
            .enumerate()
            .map(|(index, (ch, name))| {
                scope.spawn(move || {
                    let (sent0, recv0) = (ch.bytes_sent(), ch.bytes_received);
                    let lost = |cause| FedError::SiteLost {
                        site: name.clone(),
                        round,
                        cause,
                    };
                    if let Some(body) = request {
                        ch.send(&Message::Task {
                            round,
                            body: body.to_vec(),
                            active: names.to_vec(),
                        })
                        .map_err(lost)?;
                    }
                    let msg = loop {
                        let heard_by = Instant::now() + silence;
                        let until = heard_by.min(deadline);
                        match ch.recv::<Message>(until, Some(settings.cancel)) {
                            Ok(Message::Heartbeat) => continue,
                            Ok(m) => {
                                record(settings, name, round, &m);
                                break m;
                            }
                            Err(FrameError::Cancelled) => return Err(FedError::Cancelled),
                            Err(FrameError::Timeout(_)) if until == deadline => {
                                return Err(lost(FrameError::Refused(format!(
                                    "missed the round deadline of {:.1} s",
                                    settings.round_timeout.as_secs_f64()
                                ))))
                            }
                            Err(FrameError::Timeout(_)) => {
                                return Err(lost(FrameError::Refused(format!(
                                    "no heartbeat for {:.1} s (network cut or host down)",
                                    silence.as_secs_f64()
                                ))))
                            }
                            Err(e) => return Err(lost(e)),
                        }
                    };
                    let (compute_secs, peak_rss_kib) = match &msg {
                        Message::Reply {
                            compute_secs,
                            peak_rss_kib,
                            ..
                        } => (*compute_secs, *peak_rss_kib),
                        Message::Ready { peak_rss_kib, .. } => (0.0, *peak_rss_kib),
                        _ => (0.0, 0),
                    };
                    if let Some(b) = settings.portal {
                        b.event(
                            Some(name),
                            format!(
                                "round {round}: sent {} B, {compute_secs:.3} s computing",
                                ch.bytes_received - recv0
                            ),
                        );
                    }
                    if let Some(p) = settings.progress {
                        p.site(
                            index,
                            format!(
                                "round {round}: {} B sent, {compute_secs:.3} s computing",
                                ch.bytes_received - recv0
                            ),
                        );
                    }
                    Ok((
                        msg,
                        SiteRound {
                            site: name.clone(),
                            bytes_sent: ch.bytes_received - recv0,
                            bytes_received: ch.bytes_sent() - sent0,
                            compute_secs,
                            peak_rss_kib,
                        },
                    ))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("site thread does not panic"))
            .collect()
    });
    // The worst site decides: the first failure in site order.
    results.into_iter().collect()
}

/// Append a received frame to the recording, if there is one.
fn record(settings: &Settings, site: &str, round: u32, m: &Message) {
    let Some(file) = settings.record else { return };
    // 128-bit masked values go as decimal strings, which every JSON reader keeps exact.
    let masked: Vec<String> = match m {
        Message::Reply {
            masked: Some(v), ..
        } => v.iter().map(u128::to_string).collect(),
        _ => Vec::new(),
    };
    let line = serde_json::to_string(m).map(|frame| serde_json::json!({"site": site, "round": round, "masked": masked, "frame": serde_json::from_str::<serde_json::Value>(&frame).unwrap_or_default()}));
    if let (Ok(mut f), Ok(line)) = (file.lock(), line) {
        use std::io::Write;
        let _ = writeln!(f, "{line}");
    }
}

/// One attempt at the whole algorithm with the current sites; rounds are numbered from `first`.
fn drive(
    channels: &mut [Channel],
    joined: &mut [JoinedSite],
    config: &AlgorithmConfig,
    settings: &Settings,
    watch: &mut dyn Watch,
    first: u32,
    rounds: &mut Vec<RoundMetrics>,
) -> Result<Estimates, FedError> {
    let names: Vec<String> = joined.iter().map(|j| j.name.clone()).collect();
    let site_failed = |i: usize, round: u32, reason: String| FedError::SiteFailed {
        site: names[i].clone(),
        round,
        reason,
    };
    if first == 0 {
        // Round 0: every site loads its data and says how many rows it holds.
        let started = Instant::now();
        let ready = exchange(channels, &names, 0, None, settings)?;
        rounds.push(RoundMetrics {
            round: 0,
            wall_secs: started.elapsed().as_secs_f64(),
            sites: ready.iter().map(|(_, t)| t.clone()).collect(),
        });
        for (i, (msg, _)) in ready.into_iter().enumerate() {
            match msg {
                Message::Ready { rows, .. } => joined[i].rows = rows,
                Message::Failed { reason, .. } => return Err(site_failed(i, 0, reason)),
                other => {
                    return Err(site_failed(
                        i,
                        0,
                        format!("expected Ready, got {}", kind(&other)),
                    ))
                }
            }
        }
    }
    let mut algorithm =
        algorithms::build(config).map_err(|source| FedError::Algorithm { round: 0, source })?;
    let mut request = algorithm.start();
    let mut algorithm_round = 0;
    for round in first.max(1).. {
        algorithm_round += 1;
        watch.round_starts(algorithm_round);
        // A death among the sites still in the run (a site already dropped may be reported late).
        if let Some((site, reason)) = watch.dead_site().filter(|(site, _)| names.contains(site)) {
            return Err(FedError::SiteLost {
                site,
                round,
                cause: FrameError::Refused(reason),
            });
        }
        if let Some(b) = settings.portal {
            b.set_round(round);
        }
        let started = Instant::now();
        let answers = exchange(channels, &names, round, Some(&request), settings)?;
        let mut bodies = Vec::with_capacity(answers.len());
        let mut masked = Vec::with_capacity(answers.len());
        let mut per_site = Vec::with_capacity(answers.len());
        for (i, (msg, traffic)) in answers.into_iter().enumerate() {
            match msg {
                Message::Reply {
                    round: r,
                    body,
                    masked: m,
                    ..
                } if r == round && m.is_some() == settings.secure => {
                    bodies.push(body);
                    masked.extend(m);
                }
                Message::Failed { reason, .. } => return Err(site_failed(i, round, reason)),
                other => {
                    return Err(site_failed(
                        i,
                        round,
                        format!(
                            "expected a {}Reply to round {round}, got {}",
                            if settings.secure { "masked " } else { "" },
                            kind(&other)
                        ),
                    ))
                }
            }
            per_site.push(traffic);
        }
        if settings.secure {
            // The masks cancel in the sum: one reply holding the sites' total.
            let sum = super::secagg::unmask_sum(&masked).map_err(|e| FedError::Algorithm {
                round,
                source: algorithms::AlgoError::Protocol(e.to_string()),
            })?;
            let total = algorithm
                .join(&bodies[0], &sum)
                .map_err(|source| FedError::Algorithm { round, source })?;
            bodies = vec![total];
        }
        let step = algorithm
            .aggregate(bodies)
            .map_err(|source| FedError::Algorithm { round, source })?;
        let wall_secs = started.elapsed().as_secs_f64();
        tracing::info!(phase = "federate", round, wall_secs, "round aggregated");
        rounds.push(RoundMetrics {
            round,
            wall_secs,
            sites: per_site,
        });
        match step {
            Step::Next(next) => request = next,
            Step::Done(estimates) => return Ok(*estimates),
        }
    }
    unreachable!("rounds are unbounded; the algorithm ends them")
}
