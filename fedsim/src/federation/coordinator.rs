//! The coordinator: waits for every site to dial in and authenticate, then drives the algorithm's
//! rounds. The worst site decides the run: one lost or failing site ends it, named, with its round.

use crate::logs::Milestone;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::frame::{Channel, FrameError};
use super::openings::{Opened, Openings, OPENING_TIMEOUT};
use super::Message;
use crate::algorithms::{self, AlgoError, AlgorithmConfig, Estimates, Step};
use crate::auth::FrameKey;
use crate::data::design::{self, Levels};

/// What the coordinator knows of a site: its name and the key derived from its token.
pub struct SiteAuth {
    pub name: String,
    pub key: FrameKey,
    /// Injected delays for this site: (algorithm round, seconds).
    pub delays: Vec<(u32, f64)>,
    /// Each analysis as this site runs it (differs per site only in a vertical split).
    pub configs: Vec<AlgorithmConfig>,
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
    #[error("site {site} refused in round {round} by its disclosure rules: {refusal}")]
    Refused {
        site: String,
        round: u32,
        refusal: crate::disclosure::Refusal,
    },
    #[error("aggregation failed after round {round}: {source}")]
    Algorithm { round: u32, source: AlgoError },
    /// A fault the scenario asks for could not be made: the run would not be the scenario's,
    /// so it does not go on as if it were.
    #[error("the {kind} fault on site {site} in round {round} could not be injected: {reason}")]
    Fault {
        site: String,
        round: u32,
        kind: String,
        reason: String,
    },
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
            | FedError::Refused { round, .. }
            | FedError::SiteLost { round, .. }
            | FedError::Algorithm { round, .. }
            | FedError::Fault { round, .. } => *round,
            _ => 0,
        }
    }

    /// The site this failure is attributed to, if any.
    pub fn site(&self) -> Option<&str> {
        match self {
            FedError::NotConnected { site, .. }
            | FedError::SiteFailed { site, .. }
            | FedError::Refused { site, .. }
            | FedError::SiteLost { site, .. } => Some(site),
            FedError::Portal { site, .. } if !is_operator(site) => Some(site),
            _ => None,
        }
    }
}

/// The coordinator's own account and the browser machinery are not sites.
fn is_operator(account: &str) -> bool {
    account == super::COORDINATOR || account == "browser"
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
    /// The site's computing (in round 0, its loading of the data: `Ready`'s `load_secs`).
    pub compute_secs: f64,
    /// From the request going out to the site's answer arriving, as the coordinator saw it:
    /// compute plus the site's network (latency, bandwidth) both ways.
    #[serde(default)]
    pub answer_secs: f64,
    /// The site process's peak resident memory (KiB), as it reported.
    pub peak_rss_kib: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoundMetrics {
    /// 0 is the sites loading their data; 1.. are the algorithm's rounds. With several analyses
    /// the numbers go on across them (each next analysis's loading takes a number too).
    pub round: u32,
    /// The analysis the round belongs to, when a run has several (`[[analysis]]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<String>,
    pub wall_secs: f64,
    pub sites: Vec<SiteRound>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinedSite {
    pub name: String,
    pub pid: u32,
    pub rows: u64,
    pub agent_version: String,
    /// Incomplete rows the site left out (`missing = "drop"`).
    #[serde(default)]
    pub dropped: u64,
    /// The levels of the categorical columns the site holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub levels: Levels,
}

/// What the sites agreed before the rounds: the categorical levels of all of them, and the
/// levels only one site holds (column, level, site), which the report warns about.
#[derive(Debug, Clone, Default)]
pub struct Agreed {
    pub levels: Option<Levels>,
    pub lonely: Vec<(String, String, String)>,
}

pub struct Outcome {
    /// Seconds until every site had connected and authenticated.
    pub connect_secs: f64,
    /// One per analysis that began, in order.
    pub analyses: Vec<Analysed>,
    /// What ended the federation before every analysis had run: a lost site, a cancel.
    pub ended: Option<FedError>,
    pub rounds: Vec<RoundMetrics>,
    pub lost: Vec<LostSite>,
}

/// One analysis, federated.
pub struct Analysed {
    /// Its estimates, or why it failed on its own (its aggregation could not go on, or a site
    /// refused its step): the sites are still in step, and the next analysis runs.
    pub result: Result<Estimates, FedError>,
    /// The sites it ran on to its end, with what each loaded for it.
    pub joined: Vec<JoinedSite>,
    pub agreed: Agreed,
    /// The sites lost before its end (this analysis's or an earlier one's).
    pub lost: Vec<LostSite>,
}

/// A name for each analysis in the round metrics (None: a run of one unnamed analysis).
pub type Names<'a> = Option<&'a [String]>;

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
    /// Let a site that refuses by its disclosure rules go, as a dropout, while at least this
    /// many remain (None: the analysis fails).
    pub refusals_continue_with: Option<usize>,
    pub cancel: &'a AtomicBool,
    /// The portal: rounds begin only once its coordinator account presses start, and it shows
    /// each site's progress to that site.
    pub portal: Option<&'a dyn super::StartGate>,
    /// How long to wait for that start once every site is connected.
    pub start_timeout: Duration,
}

/// What the coordinator asks of the world outside the sockets.
pub trait Watch {
    /// A site whose agent is known to be gone (e.g. its process exited), with the reason.
    fn dead_site(&mut self) -> Option<(String, String)>;
    /// Called as each round starts, before the requests go out (fault injection).
    fn round_starts(&mut self, _round: u32) -> Result<(), FedError> {
        Ok(())
    }
}

/// A site the run went on without.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LostSite {
    pub site: String,
    pub round: u32,
    pub cause: String,
}

/// Connect every site, then run each analysis (`configs`, in order) on them. Fails outright only
/// when the sites never all joined; after that, the outcome says what each analysis gave and
/// what, if anything, ended the federation early.
pub fn run(
    listener: &TcpListener,
    sites: &[SiteAuth],
    configs: &[AlgorithmConfig],
    names: Names,
    settings: &Settings,
    watch: &mut dyn Watch,
) -> Result<Outcome, FedError> {
    let started = Instant::now();
    let (mut channels, mut joined) = accept_all(listener, sites, settings, watch)?;
    let connect_secs = started.elapsed().as_secs_f64();
    let mut record = Record::default();
    let result = federate(
        &mut channels,
        &mut joined,
        &mut record,
        configs,
        names,
        settings,
        watch,
    );
    let failed = record.analyses.iter().any(|a| a.result.is_err());
    shut_down(&mut channels, end_status(result.as_ref().err(), failed));
    Ok(Outcome {
        connect_secs,
        analyses: record.analyses,
        ended: result.err(),
        rounds: record.rounds,
        lost: record.lost,
    })
}

/// How a run that ended this way is announced to the agents.
fn end_status(error: Option<&FedError>, an_analysis_failed: bool) -> &'static str {
    match error {
        None if an_analysis_failed => "failed",
        None => "succeeded",
        Some(FedError::Cancelled) => "cancelled",
        Some(_) => "failed",
    }
}

/// Tell every agent still connected that the run is over, and how it ended.
fn shut_down(channels: &mut [Channel], status: &str) {
    for ch in channels.iter_mut() {
        let _ = ch.send(&Message::Shutdown {
            status: status.into(),
        });
    }
}

/// What the rounds leave behind, across restarts without a lost site and across analyses.
#[derive(Default)]
struct Record {
    rounds: Vec<RoundMetrics>,
    lost: Vec<LostSite>,
    analyses: Vec<Analysed>,
    /// Algorithm rounds of the analyses before this one: fault rounds count on across them.
    rounds_before: u32,
    /// Algorithm rounds of this analysis's latest attempt.
    attempt_rounds: u32,
}

/// Everything after enrolment: the portal's start, then each analysis in turn. Ends early (an
/// error) only when the run cannot go on: a cancel, or a site lost beyond what the dropout
/// policy allows.
fn federate(
    channels: &mut Vec<Channel>,
    joined: &mut Vec<JoinedSite>,
    record: &mut Record,
    configs: &[AlgorithmConfig],
    names: Names,
    settings: &Settings,
    watch: &mut dyn Watch,
) -> Result<(), FedError> {
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
            record.lost.push(LostSite {
                site,
                round: 0,
                cause: format!("could not take part through the portal: {reason}"),
            });
        }
    }
    for (index, config) in configs.iter().enumerate() {
        let name = names.and_then(|n| n.get(index)).map(String::as_str);
        if let Some(name) = name {
            tracing::info!(
                phase = "federate",
                analysis = name,
                index,
                "analysis begins"
            );
        }
        let analysed = analyse(
            channels,
            joined,
            record,
            (index, name),
            config,
            settings,
            watch,
        )?;
        if let (Err(e), Some(name)) = (&analysed.result, name) {
            tracing::error!(phase = "federate", analysis = name, error = %e, "analysis failed; the next one runs");
        }
        record.analyses.push(analysed);
    }
    Ok(())
}

/// One analysis, restarted without a lost site while the dropout policy allows. A failure of
/// its own (its aggregation, or a site refusing its step) leaves the sites in step and ends
/// only it; a lost site (beyond the policy) or a cancel ends the run.
fn analyse(
    channels: &mut Vec<Channel>,
    joined: &mut Vec<JoinedSite>,
    record: &mut Record,
    (index, name): (usize, Option<&str>),
    config: &AlgorithmConfig,
    settings: &Settings,
    watch: &mut dyn Watch,
) -> Result<Analysed, FedError> {
    let mut agreed = Agreed::default();
    let mut begin = true;
    loop {
        let senders: Vec<_> = channels.iter().map(Channel::sender).collect();
        let attempt = with_heartbeats(senders, settings, || {
            drive(
                channels,
                joined,
                record,
                &mut agreed,
                (index, name, begin),
                config,
                settings,
                watch,
            )
        });
        let e = match attempt {
            Ok(estimates) => {
                record.rounds_before += record.attempt_rounds;
                return Ok(Analysed {
                    result: Ok(estimates),
                    joined: joined.clone(),
                    agreed,
                    lost: record.lost.clone(),
                });
            }
            Err(e) => e,
        };
        begin = false;
        let alone = matches!(
            e,
            FedError::Algorithm { .. } | FedError::SiteFailed { .. } | FedError::Refused { .. }
        );
        let on_alone = |record: &mut Record, e: FedError, joined: &[JoinedSite]| {
            record.rounds_before += record.attempt_rounds;
            Ok(Analysed {
                result: Err(e),
                joined: joined.to_vec(),
                agreed: agreed.clone(),
                lost: record.lost.clone(),
            })
        };
        // A refusal lets the site go only under on_refusal = "continue"; a lost or failing
        // site under on_dropout = "continue".
        let policy = match e {
            FedError::Refused { .. } => settings.refusals_continue_with,
            _ => settings.continue_with,
        };
        let (Some(min), Some(site)) = (policy, e.site().map(str::to_string)) else {
            return if alone {
                on_alone(record, e, joined)
            } else {
                Err(e)
            };
        };
        let Some(i) = joined.iter().position(|j| j.name == site) else {
            return if alone {
                on_alone(record, e, joined)
            } else {
                Err(e)
            };
        };
        if joined.len() - 1 < min {
            tracing::error!(phase = "federate", %site, remaining = joined.len() - 1, min, "too few sites left to continue");
            return Err(e);
        }
        let round = e.round();
        tracing::warn!(phase = "federate", %site, round, cause = %e, "site lost; continuing without it from the first round");
        if let Some(b) = settings.portal {
            b.event(
                Some(&site),
                format!("lost in round {round}: {e}; the run goes on without it"),
            );
        }
        record.lost.push(LostSite {
            site,
            round,
            cause: e.to_string(),
        });
        channels.remove(i).shutdown();
        joined.remove(i);
    }
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
    board: &dyn super::StartGate,
    settings: &Settings,
    watch: &mut dyn Watch,
) -> Result<(), FedError> {
    use super::NoStart;
    board.event(
        None,
        "every agent is connected; waiting for the start".into(),
    );
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

/// Handshakes in flight at once, each on its own thread. Only connections that sent a whole
/// opening get one (see [`openings`](super::openings)), so silent peers take none.
const MAX_PENDING: usize = 64;
/// How long one connection may take, from its accept, to complete its handshake and say Hello:
/// one deadline for the whole exchange.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection that completed its handshake and said Hello: which site, and from where.
struct Arrival {
    idx: usize,
    channel: Channel,
    agent_version: String,
    pid: u32,
}

/// Set on drop: handshake threads still running give up within 100 ms.
struct Stop(Arc<AtomicBool>);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Wait until every site has connected and proved it holds its token. Openings are read by
/// this loop without a thread each, and handshakes run concurrently, so neither a silent nor a
/// slow connection holds up the sites behind it.
fn accept_all(
    listener: &TcpListener,
    sites: &[SiteAuth],
    settings: &Settings,
    watch: &mut dyn Watch,
) -> Result<(Vec<Channel>, Vec<JoinedSite>), FedError> {
    listener.set_nonblocking(true)?;
    let started = Instant::now();
    let deadline = started + settings.connect_timeout;
    let keys: Arc<Vec<(String, FrameKey)>> =
        Arc::new(sites.iter().map(|s| (s.name.clone(), s.key)).collect());
    let stop = Stop(Arc::new(AtomicBool::new(false)));
    let (done, arrivals) = mpsc::channel::<(SocketAddr, Result<Arrival, String>)>();
    let mut pending = 0usize;
    let mut openings = Openings::default();
    let mut ready: std::collections::VecDeque<Opened> = Default::default();
    let mut slots: Vec<Option<(Channel, JoinedSite)>> = sites.iter().map(|_| None).collect();
    let mut refusals: Vec<String> = Vec::new();
    // Enrolment failed: the sites that already joined hear so, not just a closed connection.
    let abandon = |slots: Vec<Option<(Channel, JoinedSite)>>, e: FedError| {
        let mut joined: Vec<Channel> = slots.into_iter().flatten().map(|(c, _)| c).collect();
        shut_down(&mut joined, end_status(Some(&e), false));
        e
    };
    // Sites that joined early hear heartbeats while the others arrive (with a thousand sites
    // that takes seconds), or they would take the silence for a lost coordinator.
    let mut next_beat = Instant::now() + settings.heartbeat;
    while slots.iter().any(Option::is_none) {
        if settings.cancel.load(Ordering::Relaxed) {
            return Err(abandon(slots, FedError::Cancelled));
        }
        if Instant::now() >= next_beat {
            for (ch, _) in slots.iter_mut().flatten() {
                let _ = ch.send(&Message::Heartbeat);
            }
            next_beat = Instant::now() + settings.heartbeat;
        }
        if let Some((site, reason)) = watch.dead_site() {
            let e = FedError::SiteFailed {
                site,
                round: 0,
                reason,
            };
            return Err(abandon(slots, e));
        }
        if Instant::now() >= deadline {
            let missing = slots
                .iter()
                .position(Option::is_none)
                .expect("loop condition");
            let mut said = Vec::new();
            if openings.stalled > 0 {
                said.push(format!(
                    "{} other connections never completed a handshake (silent, closed, or slower than {} s to send their opening: peers that are not sites?)",
                    openings.stalled,
                    OPENING_TIMEOUT.as_secs()
                ));
            }
            if !refusals.is_empty() {
                said.push(format!("refused: {}", refusals.join("; ")));
            }
            let detail = if said.is_empty() {
                String::new()
            } else {
                format!(" ({})", said.join("; "))
            };
            let e = FedError::NotConnected {
                site: sites[missing].name.clone(),
                secs: started.elapsed().as_secs_f64(),
                detail,
            };
            return Err(abandon(slots, e));
        }
        if let Err(e) = openings.accept(listener) {
            return Err(abandon(slots, e.into()));
        }
        // Whole openings, while there are threads: each handshakes on a thread of its own.
        while pending < MAX_PENDING {
            let Some(opened) = ready.pop_front() else {
                break;
            };
            let (keys, stop, done) = (keys.clone(), stop.0.clone(), done.clone());
            let peer = opened.peer;
            let spawned = std::thread::Builder::new()
                .name("handshake".into())
                .spawn(move || {
                    let _ = done.send((peer, handshake(opened, &keys, &stop)));
                });
            match spawned {
                Ok(_) => pending += 1,
                Err(e) => {
                    tracing::warn!(phase = "launch", %peer, error = %e, "no thread for a handshake; connection dropped")
                }
            }
        }
        ready.extend(openings.poll(listener, Duration::from_millis(10)));
        while let Ok((peer, outcome)) = arrivals.try_recv() {
            pending -= 1;
            match outcome.and_then(|a| welcome(a, sites, &slots, settings)) {
                Ok((idx, channel, site)) => {
                    tracing::info!(phase = "launch", milestone = %Milestone::SiteJoined, site = %site.name, pid = site.pid, %peer, "site joined");
                    if let Some(b) = settings.portal {
                        b.event(
                            Some(&site.name),
                            format!("agent connected from {peer} and authenticated"),
                        );
                    }
                    slots[idx] = Some((channel, site));
                }
                Err(reason) => {
                    tracing::warn!(phase = "launch", %peer, %reason, "connection refused");
                    refusals.push(reason);
                }
            }
        }
    }
    if openings.stalled > 0 {
        tracing::warn!(
            phase = "launch",
            connections = openings.stalled,
            "connections that never completed a handshake were dropped"
        );
    }
    Ok(slots.into_iter().map(|s| s.expect("all joined")).unzip())
}

/// One connection's handshake, on its own thread, from its whole opening: which site it is for,
/// checked by the Noise handshake with that site's key, then the agent's Hello under the session
/// keys, all within [`HANDSHAKE_TIMEOUT`] of this thread taking it up. The peer had at most
/// [`OPENING_TIMEOUT`] for its opening; the wait for a thread in between is the coordinator's
/// own (ten thousand sites arriving at once queue for the 64 threads), not the peer's to use.
fn handshake(
    opened: Opened,
    keys: &[(String, FrameKey)],
    stop: &AtomicBool,
) -> Result<Arrival, String> {
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let mut idx = None;
    let refusal = |e: FrameError, idx: Option<usize>| match (e, idx) {
        (FrameError::BadTag, Some(i)) => {
            format!("site {} failed authentication (wrong token)", keys[i].0)
        }
        (e, Some(i)) => format!("site {}: {e}", keys[i].0),
        (e, None) => e.to_string(),
    };
    let mut channel = Channel::accept_opening(opened.stream, &opened.body, |site| {
        let i = keys
            .iter()
            .position(|(name, _)| name == site)
            .ok_or(format!("unknown site {site:?}"))?;
        idx = Some(i);
        Ok(keys[i].1)
    })
    .map_err(|e| refusal(e, idx))?;
    let idx = idx.expect("set by lookup");
    // Only a peer that completed the handshake can seal this frame: a replayed first message
    // gets no further than here.
    match channel
        .recv_small(deadline, Some(stop))
        .map_err(|e| refusal(e, Some(idx)))?
    {
        Message::Hello {
            site,
            agent_version,
            pid,
        } if site == keys[idx].0 => Ok(Arrival {
            idx,
            channel,
            agent_version,
            pid,
        }),
        Message::Hello { site, .. } => Err(format!("site {} said Hello as {site:?}", keys[idx].0)),
        other => Err(format!(
            "site {}: expected Hello, got {}",
            keys[idx].0,
            kind(&other)
        )),
    }
}

/// Take an authenticated site into its slot and send it what to compute.
fn welcome(
    arrival: Arrival,
    sites: &[SiteAuth],
    slots: &[Option<(Channel, JoinedSite)>],
    settings: &Settings,
) -> Result<(usize, Channel, JoinedSite), String> {
    let Arrival {
        idx,
        mut channel,
        agent_version,
        pid,
    } = arrival;
    let site = &sites[idx];
    if slots[idx].is_some() {
        channel.shutdown();
        return Err(format!("site {} is already connected", site.name));
    }
    channel
        .send(&Message::Welcome {
            run_id: settings.run_id.clone(),
            analyses: site.configs.clone(),
            heartbeat_secs: settings.heartbeat.as_secs_f64(),
            delays: site.delays.clone(),
            secure: settings.secure,
        })
        .map_err(|e| format!("site {}: {e}", site.name))?;
    let joined = JoinedSite {
        name: site.name.clone(),
        pid,
        rows: 0,
        agent_version,
        dropped: 0,
        levels: Vec::new(),
    };
    Ok((idx, channel, joined))
}

fn kind(m: &Message) -> &'static str {
    match m {
        Message::Hello { .. } => "Hello",
        Message::Welcome { .. } => "Welcome",
        Message::Ready { .. } => "Ready",
        Message::Levels { .. } => "Levels",
        Message::Begin { .. } => "Begin",
        Message::Task { .. } => "Task",
        Message::Reply { .. } => "Reply",
        Message::Failed { .. } => "Failed",
        Message::Refused { .. } => "Refused",
        Message::Shutdown { .. } => "Shutdown",
        Message::Heartbeat => "Heartbeat",
    }
}

/// Send one request to every site in parallel and collect one answer each, in site order.
/// Heartbeats keep a slow site alive; silence beyond four heartbeat periods, or the round
/// deadline, loses it. The worst site decides: the first failure in site order.
fn exchange(
    channels: &mut [Channel],
    names: &[String],
    round: u32,
    ask: Ask,
    settings: &Settings,
) -> Result<Vec<(Message, SiteRound)>, FedError> {
    exchange_each(channels, names, round, ask, settings)
        .into_iter()
        .collect()
}

/// Sites past which one exchange thread serves several, waiting on all of them in one `poll`.
/// A thread per site per round cost about 50 µs a site (against 20 µs served in turn), and each
/// blocked reader woke ten times a second to look at the cancel flag: with rounds as long as
/// the sites are many, that made a round quadratic in the sites.
const FANOUT: usize = 64;

/// The same, every site's outcome kept: what the sites that answered said is not lost with a
/// site that did not. Up to [`FANOUT`] threads, each asking its share of the sites in turn and
/// then reading each answer as it arrives, so each site's answer time stays its own.
fn exchange_each(
    channels: &mut [Channel],
    names: &[String],
    round: u32,
    ask: Ask,
    settings: &Settings,
) -> Vec<Result<(Message, SiteRound), FedError>> {
    let deadline = Instant::now() + settings.round_timeout;
    let share = channels.len().div_ceil(FANOUT).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = channels
            .chunks_mut(share)
            .zip(names.chunks(share))
            .enumerate()
            .map(|(c, (chs, mine))| {
                let exchange = Exchange {
                    first: c * share,
                    names,
                    round,
                    settings,
                    deadline,
                };
                scope.spawn(move || exchange.serve(chs, mine, ask))
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("exchange thread does not panic"))
            .collect()
    })
}

/// One exchange thread's view of a round.
struct Exchange<'a> {
    /// Index of its first site among all.
    first: usize,
    /// Every site in the round, for the request.
    names: &'a [String],
    round: u32,
    settings: &'a Settings<'a>,
    deadline: Instant,
}

/// A site asked and not yet answered.
#[derive(Clone, Copy)]
struct Asked {
    at: Instant,
    /// Silent past this, it is lost.
    heard_by: Instant,
    sent: u64,
    received: u64,
}

impl Exchange<'_> {
    fn lost(&self, site: &str, cause: FrameError) -> FedError {
        FedError::SiteLost {
            site: site.to_string(),
            round: self.round,
            cause,
        }
    }

    fn ask(&self, ch: &mut Channel, ask: Ask) -> Result<(), FrameError> {
        match ask {
            Ask::Nothing => Ok(()),
            Ask::Begin(analysis) => ch.send(&Message::Begin { analysis }),
            Ask::Task(body) => ch.send(&Message::Task {
                round: self.round,
                body: body.to_vec(),
                sites: self.names.len() as u32,
                active: if self.settings.secure {
                    self.names.to_vec()
                } else {
                    Vec::new()
                },
            }),
        }
    }

    /// Ask each of `chs` in turn, then read every answer as it comes: heartbeats keep a slow
    /// site alive; silence beyond four heartbeat periods, or the round deadline, loses it.
    fn serve(
        &self,
        chs: &mut [Channel],
        names: &[String],
        ask: Ask,
    ) -> Vec<Result<(Message, SiteRound), FedError>> {
        let settings = self.settings;
        let silence = settings.heartbeat * 4;
        let mut done: Vec<Option<Result<(Message, SiteRound), FedError>>> =
            chs.iter().map(|_| None).collect();
        let mut asked: Vec<Option<Asked>> = vec![None; chs.len()];
        for (j, ch) in chs.iter_mut().enumerate() {
            let (sent, received) = (ch.bytes_sent(), ch.bytes_received);
            let at = Instant::now();
            match self.ask(ch, ask) {
                Ok(()) => {
                    asked[j] = Some(Asked {
                        at,
                        heard_by: at + silence,
                        sent,
                        received,
                    })
                }
                Err(e) => done[j] = Some(Err(self.lost(&names[j], e))),
            }
        }
        loop {
            let waiting: Vec<(usize, Asked)> = asked
                .iter()
                .enumerate()
                .filter(|(j, _)| done[*j].is_none())
                .filter_map(|(j, a)| a.map(|a| (j, a)))
                .collect();
            if waiting.is_empty() {
                break;
            }
            if settings.cancel.load(Ordering::Relaxed) {
                for (j, _) in waiting {
                    done[j] = Some(Err(FedError::Cancelled));
                }
                break;
            }
            let wake = waiting
                .iter()
                .map(|(_, a)| a.heard_by.min(self.deadline))
                .min()
                .unwrap_or(self.deadline);
            // At most 100 ms, to see a cancel.
            let wait = wake
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100));
            let ready = super::frame::readable(waiting.iter().map(|(j, _)| &chs[*j]), wait);
            let now = Instant::now();
            for ((j, a), ready) in waiting.into_iter().zip(ready) {
                let until = a.heard_by.min(self.deadline);
                if !ready && now < until {
                    continue;
                }
                let ch = &mut chs[j];
                // Bytes already there are read even if the limit just passed: they came in time.
                let limit = if ready {
                    until.max(now + Duration::from_millis(50))
                } else {
                    until
                };
                match ch.recv::<Message>(limit, Some(settings.cancel)) {
                    Ok(Message::Heartbeat) => {
                        if let Some(a) = asked[j].as_mut() {
                            a.heard_by = Instant::now() + silence;
                        }
                    }
                    Ok(m) => {
                        record(settings, &names[j], self.round, &m);
                        done[j] = Some(Ok(self.answered(self.first + j, &names[j], ch, a, m)));
                    }
                    Err(FrameError::Cancelled) => done[j] = Some(Err(FedError::Cancelled)),
                    Err(FrameError::Timeout(_)) if until == self.deadline => {
                        done[j] = Some(Err(self.lost(
                            &names[j],
                            FrameError::Refused(format!(
                                "missed the round deadline of {:.1} s",
                                settings.round_timeout.as_secs_f64()
                            )),
                        )))
                    }
                    Err(FrameError::Timeout(_)) => {
                        done[j] = Some(Err(self.lost(
                            &names[j],
                            FrameError::Refused(format!(
                                "no heartbeat for {:.1} s (network cut or host down)",
                                silence.as_secs_f64()
                            )),
                        )))
                    }
                    Err(e) => done[j] = Some(Err(self.lost(&names[j], e))),
                }
            }
        }
        done.into_iter()
            .map(|d| d.unwrap_or(Err(FedError::Cancelled)))
            .collect()
    }

    /// A site's answer, with what it cost; shown on the portal and the progress line.
    fn answered(
        &self,
        index: usize,
        name: &str,
        ch: &Channel,
        asked: Asked,
        msg: Message,
    ) -> (Message, SiteRound) {
        let round = self.round;
        let (compute_secs, peak_rss_kib) = match &msg {
            Message::Reply {
                compute_secs,
                peak_rss_kib,
                ..
            } => (*compute_secs, *peak_rss_kib),
            Message::Ready {
                peak_rss_kib,
                load_secs,
                ..
            } => (*load_secs, *peak_rss_kib),
            _ => (0.0, 0),
        };
        let sent = ch.bytes_received - asked.received;
        if let Some(b) = self.settings.portal {
            b.event(
                Some(name),
                format!("round {round}: sent {sent} B, {compute_secs:.3} s computing"),
            );
        }
        if let Some(p) = self.settings.progress {
            p.site(
                index,
                format!("round {round}: {sent} B sent, {compute_secs:.3} s computing"),
            );
        }
        (
            msg,
            SiteRound {
                site: name.to_string(),
                bytes_sent: sent,
                bytes_received: ch.bytes_sent() - asked.sent,
                compute_secs,
                answer_secs: asked.at.elapsed().as_secs_f64(),
                peak_rss_kib,
            },
        )
    }
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

/// What a round asks of the sites.
#[derive(Clone, Copy)]
enum Ask<'a> {
    /// Nothing: the first analysis's `Ready` comes unasked, once a site has loaded its data.
    Nothing,
    /// Load analysis N and say `Ready`.
    Begin(u32),
    /// One round's request.
    Task(&'a [u8]),
}

/// One attempt at one analysis with the current sites: with `begin`, the sites first load its
/// data and say Ready (the first analysis unasked, the next ones on `Begin`); rounds are
/// numbered on from the last one recorded.
#[allow(clippy::too_many_arguments)]
fn drive(
    channels: &mut [Channel],
    joined: &mut [JoinedSite],
    record: &mut Record,
    agreed: &mut Agreed,
    (index, analysis, begin): (usize, Option<&str>, bool),
    config: &AlgorithmConfig,
    settings: &Settings,
    watch: &mut dyn Watch,
) -> Result<Estimates, FedError> {
    let names: Vec<String> = joined.iter().map(|j| j.name.clone()).collect();
    let site_failed = |i: usize, round: u32, reason: String| FedError::SiteFailed {
        site: names[i].clone(),
        round,
        reason,
    };
    let refused = |i: usize, round: u32, refusal| FedError::Refused {
        site: names[i].clone(),
        round,
        refusal,
    };
    let next_round = |rounds: &[RoundMetrics]| rounds.last().map_or(0, |r| r.round + 1);
    let analysis_name = analysis.map(str::to_string);
    record.attempt_rounds = 0;
    if begin {
        // The sites load the analysis's data and say how many rows they hold.
        let (round, ask) = match index {
            0 => (0, Ask::Nothing),
            i => (next_round(&record.rounds), Ask::Begin(i as u32)),
        };
        let started = Instant::now();
        let ready = exchange_each(channels, &names, round, ask, settings);
        record.rounds.push(RoundMetrics {
            round,
            analysis: analysis_name.clone(),
            wall_secs: started.elapsed().as_secs_f64(),
            sites: ready.iter().flatten().map(|(_, t)| t.clone()).collect(),
        });
        // Every site that said Ready is recorded before the first failure is reported: a run
        // that goes on without the failing site agrees its levels from the others' Ready.
        let mut first_failure = None;
        for (i, outcome) in ready.into_iter().enumerate() {
            let msg = match outcome {
                Ok((msg, _)) => msg,
                Err(e) => {
                    first_failure.get_or_insert(e);
                    continue;
                }
            };
            let failure = match msg {
                Message::Ready {
                    rows,
                    dropped,
                    levels,
                    ..
                } => {
                    joined[i].rows = rows;
                    joined[i].dropped = dropped;
                    joined[i].levels = levels;
                    continue;
                }
                Message::Failed { reason, .. } => site_failed(i, round, reason),
                Message::Refused { refusal, .. } => refused(i, round, refusal),
                other => site_failed(i, round, format!("expected Ready, got {}", kind(&other))),
            };
            first_failure.get_or_insert(failure);
        }
        if let Some(e) = first_failure {
            return Err(e);
        }
    }
    if agreed.levels.is_none() && config.agrees_levels() {
        agree_on_levels(channels, joined, agreed)?;
    }
    // The analysis on the design's columns (the levels stay those agreed after loading, also
    // when the run goes on without a lost site: the sites coded their rows with them).
    let config = &config.with_levels(agreed.levels.as_ref().unwrap_or(&Vec::new()));
    let mut algorithm = algorithms::build(config);
    let mut request = algorithm
        .start()
        .map_err(|source| FedError::Algorithm { round: 0, source })?;
    let mut algorithm_round = 0;
    let first = next_round(&record.rounds).max(1);
    for round in first.. {
        algorithm_round += 1;
        record.attempt_rounds = algorithm_round;
        watch.round_starts(record.rounds_before + algorithm_round)?;
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
        let answers = exchange(channels, &names, round, Ask::Task(&request), settings)?;
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
                Message::Refused { refusal, .. } => return Err(refused(i, round, refusal)),
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
        if !settings.secure {
            // A number that is not one (NaN, infinite) would poison the sum without a word and
            // the run would end blaming the algorithm: name the site that sent it. (Under secure
            // aggregation a site cannot mask one: its agent refuses before sending.)
            for (i, body) in bodies.iter().enumerate() {
                let (_, values) = algorithm
                    .split(body)
                    .map_err(|e| site_failed(i, round, format!("its reply cannot be read: {e}")))?;
                if let Some(k) = values.iter().position(|v| !v.is_finite()) {
                    return Err(site_failed(
                        i,
                        round,
                        format!(
                            "its reply holds a value that is not a finite number ({}) at position {} of {}",
                            values[k],
                            k + 1,
                            values.len()
                        ),
                    ));
                }
            }
        }
        if settings.secure {
            // Only the shapes travel in clear, and only the sum is seen: replies of different
            // shapes (another name, another length) would be added into each other silently.
            // The odd one out is the site whose shape differs from most sites'.
            let same = |a: usize| {
                (0..bodies.len())
                    .filter(|&b| bodies[b] == bodies[a])
                    .count()
            };
            if let Some(common) = (0..bodies.len()).max_by_key(|&a| (same(a), std::cmp::Reverse(a)))
            {
                let odd = (0..bodies.len()).find(|&i| {
                    bodies[i] != bodies[common] || masked[i].len() != masked[common].len()
                });
                if let Some(i) = odd {
                    return Err(site_failed(
                        i,
                        round,
                        format!(
                            "its reply has another shape than {}'s ({} against {}): under secure aggregation every site must send the same names and sizes, since only their sum is seen",
                            names[common],
                            shape_of(&bodies[i], masked[i].len()),
                            shape_of(&bodies[common], masked[common].len())
                        ),
                    ));
                }
            }
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
        let step = algorithm.aggregate(bodies).map_err(|source| {
            let source = match source {
                // The sites' noise, not the data, is the likelier cause.
                algorithms::AlgoError::Numeric(m) if config.noisy => algorithms::AlgoError::Numeric(format!(
                    "{m} — under [privacy.dp] the noise the sites added can swamp what it hides: raise epsilon, tighten the bounds, or lower max_iter (fedsim validate predicts each estimate's cost)"
                )),
                other => other,
            };
            FedError::Algorithm { round, source }
        })?;
        let wall_secs = started.elapsed().as_secs_f64();
        tracing::info!(phase = "federate", milestone = %Milestone::RoundAggregated, round, wall_secs, "round aggregated");
        record.rounds.push(RoundMetrics {
            round,
            analysis: analysis_name.clone(),
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

/// A reply's shape for a message: its JSON (an external algorithm's, numbers zeroed) cut to a
/// readable length, else how many numbers it holds.
fn shape_of(body: &[u8], numbers: usize) -> String {
    match std::str::from_utf8(body)
        .ok()
        .filter(|t| t.starts_with('{'))
    {
        Some(text) if text.chars().count() > 200 => {
            format!(
                "{}... ({numbers} numbers)",
                text.chars().take(200).collect::<String>()
            )
        }
        Some(text) => format!("{text} ({numbers} numbers)"),
        None => format!("{numbers} numbers"),
    }
}

/// Tell every site the levels of all sites together, and note the levels only one site holds.
fn agree_on_levels(
    channels: &mut [Channel],
    joined: &[JoinedSite],
    agreed: &mut Agreed,
) -> Result<(), FedError> {
    let each: Vec<Levels> = joined.iter().map(|j| j.levels.clone()).collect();
    let levels = design::union(&each);
    // Event times (survival analyses) are disclosed whoever holds them, and are no indicator
    // columns: only categorical levels are warned about.
    let named: Vec<(String, Levels)> = joined
        .iter()
        .map(|j| {
            let categorical = j
                .levels
                .iter()
                .filter(|(c, _)| !algorithms::survival::is_event_times(c))
                .cloned()
                .collect();
            (j.name.clone(), categorical)
        })
        .collect();
    agreed.lonely = design::single_site_levels(&named);
    for (column, level, site) in &agreed.lonely {
        tracing::warn!(phase = "federate", %site, %column, %level, "only one site holds this level: its indicator sums are that site's alone");
    }
    for (ch, j) in channels.iter_mut().zip(joined) {
        ch.send(&Message::Levels {
            levels: levels.clone(),
        })
        .map_err(|cause| FedError::SiteLost {
            site: j.name.clone(),
            round: 0,
            cause,
        })?;
    }
    tracing::info!(
        phase = "federate",
        columns = levels.len(),
        "categorical levels agreed"
    );
    agreed.levels = Some(levels);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpStream;

    struct Quiet;
    impl Watch for Quiet {
        fn dead_site(&mut self) -> Option<(String, String)> {
            None
        }
    }

    fn sites(n: usize) -> Vec<SiteAuth> {
        (1..=n)
            .map(|i| SiteAuth {
                name: format!("site-{i}"),
                key: [i as u8; 32],
                delays: Vec::new(),
                configs: vec![AlgorithmConfig::ols(&["x"])],
            })
            .collect()
    }

    fn settings(cancel: &AtomicBool, connect_timeout: Duration) -> Settings<'_> {
        Settings {
            progress: None,
            run_id: "test".into(),
            connect_timeout,
            round_timeout: Duration::from_secs(5),
            heartbeat: Duration::from_millis(200),
            secure: false,
            record: None,
            continue_with: None,
            refusals_continue_with: None,
            cancel,
            portal: None,
            start_timeout: Duration::from_secs(5),
        }
    }

    /// A real agent's opening: handshake, Hello, then the Welcome (or whatever comes instead).
    fn agent(
        addr: SocketAddr,
        site: &str,
        key: FrameKey,
    ) -> std::thread::JoinHandle<Result<(Message, Channel), FrameError>> {
        let site = site.to_string();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut ch = Channel::connect(TcpStream::connect(addr)?, &key, &site, deadline)?;
            ch.send(&Message::Hello {
                site,
                agent_version: "test".into(),
                pid: 7,
            })?;
            Ok((ch.recv(deadline, None)?, ch))
        })
    }

    /// A site whose reply holds NaN is named as the one that failed, in that round, not the
    /// algorithm: a hostile or broken peer is blamed, and the run ends.
    #[test]
    fn a_reply_holding_nan_fails_the_run_naming_the_site() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let sites = sites(2);
        let cancel = AtomicBool::new(false);
        let settings = settings(&cancel, Duration::from_secs(10));
        let agents: Vec<_> = sites
            .iter()
            .map(|s| {
                let (name, key) = (s.name.clone(), s.key);
                std::thread::spawn(move || {
                    let (welcome, mut ch) = agent(addr, &name, key).join().unwrap().unwrap();
                    assert!(matches!(welcome, Message::Welcome { .. }), "{welcome:?}");
                    let deadline = Instant::now() + Duration::from_secs(20);
                    ch.send(&Message::Ready {
                        rows: 10,
                        peak_rss_kib: 1,
                        dropped: 0,
                        levels: Vec::new(),
                        load_secs: 0.0,
                    })
                    .unwrap();
                    // Answer round 1 (OLS moments); site-2 with a NaN in its sums.
                    loop {
                        match ch.recv(deadline, None) {
                            Ok(Message::Task { round, .. }) => {
                                let bad = if name == "site-2" { f64::NAN } else { 1.0 };
                                let body = postcard::to_stdvec(
                                    &crate::algorithms::linreg::Reply::Moments {
                                        n: 10,
                                        sum_x: vec![bad],
                                        sum_y: 2.0,
                                    },
                                )
                                .unwrap();
                                ch.send(&Message::Reply {
                                    round,
                                    body,
                                    compute_secs: 0.0,
                                    peak_rss_kib: 1,
                                    masked: None,
                                })
                                .unwrap();
                            }
                            Ok(Message::Shutdown { .. }) | Err(_) => break,
                            Ok(_) => {}
                        }
                    }
                })
            })
            .collect();
        let outcome = run(
            &listener,
            &sites,
            &[AlgorithmConfig::ols(&["x"])],
            None,
            &settings,
            &mut Quiet,
        )
        .unwrap();
        // A site failing its step fails the analysis (alone: the sites are still in step).
        let e = match outcome.analyses.into_iter().next().map(|a| a.result) {
            Some(Err(e)) => e,
            _ => panic!("a NaN reply was aggregated"),
        };
        for a in agents {
            a.join().unwrap();
        }
        assert_eq!(e.site(), Some("site-2"), "{e}");
        assert_eq!(e.round(), 1, "{e}");
        assert!(
            e.to_string()
                .contains("not a finite number (NaN) at position 2 of 3"),
            "{e}"
        );
    }

    #[test]
    /// Issue 20.1: 70 peers trickling a byte a second (more than the 64 handshake threads) and
    /// 200 silent ones, all connected before the sites: before, each read had its own 5 s
    /// timeout, so the tricklers held every handshake slot for as long as they liked and no site
    /// enrolled. Openings are now read without threads, by one deadline (2 s) for the whole
    /// opening, so the sites enrol well within an 8 s connect timeout.
    fn trickling_and_silent_peers_do_not_starve_enrolment() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        // Each attacker connects on its own thread: more connections than the listen backlog
        // holds can only arrive while the coordinator accepts.
        let tricklers: Vec<_> = (0..70)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
                    else {
                        return;
                    };
                    // A length of 200, then a byte a second: never a whole opening in time.
                    let _ = s.write_all(&[0, 0, 0]);
                    while !stop.load(Ordering::Relaxed) {
                        if s.write_all(&[200]).is_err() {
                            break;
                        }
                        std::thread::sleep(Duration::from_secs(1));
                    }
                })
            })
            .collect();
        let silent = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let held: Vec<TcpStream> = (0..200)
                    .take_while(|_| !stop.load(Ordering::Relaxed))
                    .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok())
                    .collect();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                held.len()
            })
        };
        // The flood first in the queue.
        std::thread::sleep(Duration::from_millis(200));
        let sites = sites(3);
        let agents: Vec<_> = sites.iter().map(|s| agent(addr, &s.name, s.key)).collect();
        let cancel = AtomicBool::new(false);
        let joined = accept_all(
            &listener,
            &sites,
            &settings(&cancel, Duration::from_secs(8)),
            &mut Quiet,
        );
        stop.store(true, Ordering::Relaxed);
        let (channels, joined) = joined.expect("every site enrols despite the squatters");
        assert_eq!(channels.len(), 3);
        assert_eq!(joined.len(), 3);
        for a in agents {
            assert!(a.join().unwrap().is_ok());
        }
        assert!(silent.join().unwrap() > 0);
        for t in tricklers {
            let _ = t.join();
        }
    }

    #[test]
    /// A site that never connects is named, and the failure says what else happened: the
    /// connections that never completed a handshake (the attack above, or a broken agent).
    fn a_missing_site_is_named_with_the_connections_that_stalled() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let silent: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let sites = sites(2);
        let one = agent(addr, &sites[0].name, sites[0].key);
        let cancel = AtomicBool::new(false);
        let e = accept_all(
            &listener,
            &sites,
            &settings(&cancel, Duration::from_secs(3)),
            &mut Quiet,
        )
        .err()
        .expect("site-2 never connects");
        let said = e.to_string();
        assert!(
            said.starts_with("site site-2 did not connect within")
                && said.contains("5 other connections never completed a handshake"),
            "{said}"
        );
        assert_eq!(e.site(), Some("site-2"));
        drop(silent);
        let _ = one.join();
    }

    #[test]
    fn silent_connections_do_not_hold_up_the_sites() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // First in the queue: peers that connect and say nothing, or half a length and stop.
        let mut squatters: Vec<TcpStream> =
            (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        squatters[2].write_all(&[0, 0]).unwrap();
        let sites = sites(3);
        let agents: Vec<_> = sites.iter().map(|s| agent(addr, &s.name, s.key)).collect();
        let cancel = AtomicBool::new(false);
        let started = Instant::now();
        let (channels, joined) = accept_all(
            &listener,
            &sites,
            &settings(&cancel, Duration::from_secs(30)),
            &mut Quiet,
        )
        .unwrap();
        let secs = started.elapsed().as_secs_f64();
        // One at a time, each squatter would have held enrolment for the 10 s handshake limit.
        assert!(secs < 3.0, "enrolment took {secs:.1} s");
        assert_eq!(channels.len(), 3);
        let names: Vec<_> = joined.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["site-1", "site-2", "site-3"]);
        assert!(joined.iter().all(|j| j.pid == 7));
        for a in agents {
            let (welcome, _) = a.join().unwrap().unwrap();
            assert!(
                matches!(welcome, Message::Welcome { ref run_id, .. } if run_id == "test"),
                "{welcome:?}"
            );
        }
    }

    #[test]
    fn refusals_name_the_site_and_the_reason_but_no_key() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let sites = sites(2);
        let wrong = agent(addr, "site-2", [9; 32]);
        let stranger = agent(addr, "site-9", [9; 32]);
        let ok = agent(addr, "site-1", sites[0].key);
        let cancel = AtomicBool::new(false);
        let r = accept_all(
            &listener,
            &sites,
            &settings(&cancel, Duration::from_secs(2)),
            &mut Quiet,
        );
        assert!(wrong.join().unwrap().is_err());
        assert!(stranger.join().unwrap().is_err());
        let Err(e) = r else {
            panic!("site-2 never joined")
        };
        let msg = e.to_string();
        assert!(msg.starts_with("site site-2 did not connect"), "{msg}");
        assert!(
            msg.contains("site site-2 failed authentication (wrong token)"),
            "{msg}"
        );
        assert!(msg.contains("unknown site \"site-9\""), "{msg}");
        for key in [sites[0].key, sites[1].key, [9; 32]] {
            assert!(!msg.contains(&hex::encode(key)), "{msg}");
        }
        // The site that had joined is told the run is over, and why.
        let (_, mut ch) = ok.join().unwrap().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let shutdown = loop {
            match ch.recv::<Message>(deadline, None).unwrap() {
                Message::Heartbeat => continue,
                m => break m,
            }
        };
        assert!(
            matches!(shutdown, Message::Shutdown { ref status } if status == "failed"),
            "{shutdown:?}"
        );
    }

    #[test]
    fn a_cancelled_enrolment_tells_the_joined_sites_cancelled() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let sites = sites(2);
        let first = agent(addr, "site-1", sites[0].key);
        let cancel = AtomicBool::new(false);
        let r = std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(500));
                cancel.store(true, Ordering::Relaxed);
            });
            accept_all(
                &listener,
                &sites,
                &settings(&cancel, Duration::from_secs(30)),
                &mut Quiet,
            )
        });
        assert!(matches!(r, Err(FedError::Cancelled)));
        let (_, mut ch) = first.join().unwrap().unwrap();
        // Heartbeats came while the other site was awaited; then the end.
        let deadline = Instant::now() + Duration::from_secs(5);
        let m = loop {
            match ch.recv::<Message>(deadline, None).unwrap() {
                Message::Heartbeat => continue,
                m => break m,
            }
        };
        assert!(
            matches!(m, Message::Shutdown { ref status } if status == "cancelled"),
            "{m:?}"
        );
    }
}
