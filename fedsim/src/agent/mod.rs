//! The site agent (`fedsim-agent agent`, or `fedsim agent`): reads its own bundle, dials the
//! coordinator, and answers rounds with aggregates of its partition. It exits when the
//! coordinator says so or goes away.

pub mod cli;
pub mod supervise;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::algorithms::{self, external, LocalData};
use crate::auth;
use crate::bundle::env::SiteEnv;
use crate::data::design::Levels;
use crate::data::frame::{Frame, ReadOptions};
use crate::federation::frame::{Channel, FrameError, Sender};
use crate::federation::{secagg, Message};
use crate::logs::Milestone;

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
    #[error("cannot start a thread (the machine's process or memory limits?): {0}")]
    Threads(String),
}

/// This process's own peak resident memory in KiB (VmHWM: unlike getrusage's high-water mark,
/// it does not carry over the memory of a controller this agent was forked from).
pub fn peak_rss_kib() -> u64 {
    crate::sys::proc::peak_rss_kib()
}

/// Use at most `n` threads for local computations (faer and rayon) and for reading the data
/// (polars' own pool). Call before any thread is started: it sets polars' variable.
///
/// With one thread no rayon pool is started at all (faer computes in the calling thread): a
/// thousand sites sharing a machine each get one, and every idle pool thread costs a process
/// ID and a stack.
pub fn limit_threads(n: usize) {
    let n = n.max(1);
    if std::env::var_os("POLARS_MAX_THREADS").is_none() {
        std::env::set_var("POLARS_MAX_THREADS", n.to_string());
    }
    if n == 1 {
        faer::set_global_parallelism(faer::Par::Seq);
        return;
    }
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
    faer::set_global_parallelism(faer::Par::rayon(n));
}

/// Run one agent to the end of its run.
///
/// This thread only reads frames, so a `Shutdown` ends the agent at once (with success) even
/// while a worker thread is still loading data, computing or sleeping off an injected delay.
pub fn run(
    dir: &Path,
    coordinator: Option<&str>,
    connect_timeout: Duration,
) -> Result<(), AgentError> {
    let env = SiteEnv::load(dir).map_err(|e| AgentError::Bundle {
        dir: dir.to_path_buf(),
        reason: format!("{}: {e}", crate::bundle::env::FILE),
    })?;
    let addr = coordinator.unwrap_or(&env.coordinator).to_string();
    let span = tracing::info_span!("agent", site = %env.site);
    let _enter = span.enter();
    let stream = connect(&addr, connect_timeout)?;
    let key = auth::frame_key(&env.token);
    let mut ch = Channel::connect(stream, &key, &env.site, Instant::now() + connect_timeout)?;
    ch.send(&Message::Hello {
        site: env.site.clone(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        pid: std::process::id(),
    })?;
    let (run_id, configs, heartbeat, delays, secure) = match ch
        .recv(Instant::now() + connect_timeout, None)?
    {
        Message::Welcome {
            run_id,
            analyses,
            heartbeat_secs,
            delays,
            secure,
        } if !analyses.is_empty() => (
            run_id,
            analyses,
            Duration::from_secs_f64(heartbeat_secs.max(0.05)),
            delays,
            secure,
        ),
        Message::Shutdown { status } => {
            tracing::info!(phase = "finish", %status, "coordinator ended the run before it began");
            return Ok(());
        }
        other => {
            return Err(AgentError::Protocol(format!(
                "expected Welcome, got {other:?}"
            )))
        }
    };
    tracing::info!(phase = "launch", milestone = %Milestone::Connected, run_id = %run_id, pid = std::process::id(), coordinator = %addr, "connected to coordinator");

    // Heartbeats from a thread of their own, so loading and long local steps still say "alive".
    let (sender, beating) = (ch.sender(), Arc::new(AtomicBool::new(true)));
    let flag = beating.clone();
    // It only sleeps and sends: a small stack.
    std::thread::Builder::new()
        .name("heartbeat".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            while flag.load(Ordering::Relaxed) {
                std::thread::sleep(heartbeat);
                if sender.send(&Message::Heartbeat).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| AgentError::Threads(e.to_string()))?;
    // The work (data, rounds) on another thread; it raises `stopped` when it cannot go on.
    let (tasks, inbox) = mpsc::channel();
    let (outcome_tx, outcome) = mpsc::channel();
    let stopped = Arc::new(AtomicBool::new(false));
    let rules = crate::disclosure::decode(&env.rules).map_err(|reason| AgentError::Bundle {
        dir: dir.to_path_buf(),
        reason: format!(
            "{}: {}: {reason}",
            crate::bundle::env::FILE,
            crate::bundle::env::RULES
        ),
    })?;
    let bad_dp = |reason: String| AgentError::Bundle {
        dir: dir.to_path_buf(),
        reason: format!(
            "{}: {}: {reason}",
            crate::bundle::env::FILE,
            crate::bundle::env::DP
        ),
    };
    // The site's budget is split over every round its analyses plan, and its noise is its own.
    let dp = match env.dp.as_str() {
        "" => None,
        text => {
            let spec = crate::dp::decode(text).map_err(bad_dp)?;
            let rounds = crate::dp::run_rounds(&configs).map_err(bad_dp)?;
            Some(crate::dp::SiteDp::new(&spec, rounds, None))
        }
    };
    let worker = Worker {
        dp: std::cell::RefCell::new(dp),
        rules,
        sender: ch.sender(),
        site: env.site.clone(),
        data: dir.join(&env.data),
        configs,
        delays,
        seeds: secure.then_some(env.pair_seeds),
        speed: env.speed.unwrap_or(1.0),
        started: Instant::now(),
    };
    let flag = stopped.clone();
    std::thread::Builder::new()
        .name("worker".into())
        .spawn(move || {
            let _ = outcome_tx.send(worker.run(inbox));
            flag.store(true, Ordering::Relaxed);
        })
        .map_err(|e| AgentError::Threads(e.to_string()))?;
    let result = listen(&mut ch, tasks, heartbeat, &stopped, outcome, dir);
    beating.store(false, Ordering::Relaxed);
    // A user's local step still running (a hung one) ends with the agent.
    external::kill_running();
    result
}

/// Why the worker stopped.
enum Stop {
    /// The site cannot take part (its data, its secure-aggregation seeds): tell the coordinator.
    GiveUp(String),
    /// The link failed under it.
    Frame(FrameError),
}

/// What the reading thread hands the worker.
enum Inbox {
    /// Load the next analysis (its index).
    Begin(usize),
    /// The agreed levels of the categorical columns (before round 1).
    Levels(Levels),
    Task(Task),
}

/// One round's request, handed to the worker.
struct Task {
    round: u32,
    body: Vec<u8>,
    sites: u32,
    active: Vec<String>,
}

/// Read frames until the coordinator ends the run, goes away or falls silent, or the worker stops.
fn listen(
    ch: &mut Channel,
    tasks: mpsc::Sender<Inbox>,
    heartbeat: Duration,
    stopped: &AtomicBool,
    outcome: mpsc::Receiver<Result<(), Stop>>,
    dir: &Path,
) -> Result<(), AgentError> {
    let silence = heartbeat * 4;
    loop {
        match ch.recv(Instant::now() + silence, Some(stopped)) {
            Ok(Message::Heartbeat) => {}
            Ok(Message::Task {
                round,
                body,
                sites,
                active,
            }) => {
                // A send fails only once the worker has stopped, which `stopped` reports next.
                let _ = tasks.send(Inbox::Task(Task {
                    round,
                    body,
                    sites,
                    active,
                }));
            }
            Ok(Message::Levels { levels }) => {
                let _ = tasks.send(Inbox::Levels(levels));
            }
            Ok(Message::Begin { analysis }) => {
                let _ = tasks.send(Inbox::Begin(analysis as usize));
            }
            Ok(Message::Shutdown { status }) => {
                tracing::info!(phase = "finish", %status, "coordinator ended the run");
                return Ok(());
            }
            Ok(other) => return Err(AgentError::Protocol(format!("unexpected {other:?}"))),
            Err(FrameError::Cancelled) => {
                return match outcome.recv() {
                    Ok(Err(Stop::GiveUp(reason))) => {
                        tracing::error!(phase = "launch", %reason, "cannot prepare local data");
                        let _ = ch.send(&Message::Failed {
                            round: 0,
                            reason: reason.clone(),
                        });
                        Err(AgentError::Bundle {
                            dir: dir.to_path_buf(),
                            reason,
                        })
                    }
                    Ok(Err(Stop::Frame(e))) => Err(e.into()),
                    Ok(Ok(())) | Err(_) => Err(AgentError::Protocol(
                        "the worker stopped unexpectedly".into(),
                    )),
                };
            }
            Err(FrameError::Closed) => {
                // A run that ends says so (Shutdown); a connection that just closes means the
                // controller went away: not a clean end, and the exit code says it.
                tracing::error!(
                    phase = "finish",
                    "coordinator closed the connection without ending the run"
                );
                return Err(AgentError::Protocol(
                    "the coordinator closed the connection without ending the run (was the controller stopped or killed?)".into(),
                ));
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

/// The site's side of the analyses: reads its data, then for each analysis in turn loads its
/// rows and answers its rounds.
struct Worker {
    /// The site's differential privacy: its budget over the run, and its noise.
    dp: std::cell::RefCell<Option<crate::dp::SiteDp>>,
    /// The site's own disclosure rules: what it refuses to release.
    rules: crate::scenario::RuleSpec,
    sender: Sender,
    site: String,
    data: PathBuf,
    /// The run's analyses, in order.
    configs: Vec<algorithms::AlgorithmConfig>,
    delays: Vec<(u32, f64)>,
    /// Secure aggregation is on: this site's pair seeds, if its `.env` has them.
    seeds: Option<Option<secagg::PairSeeds>>,
    /// The server's speed (`[[availability]] speed`): work that took t takes t / speed.
    speed: f64,
    /// When the worker began: the first analysis's loading counts from here.
    started: Instant,
}

/// This site's pair seeds, with its name, when replies go masked.
type Masking<'a> = Option<(&'a str, &'a secagg::PairSeeds)>;

impl Worker {
    /// A slower server: work that took `worked` here is made to take `worked / speed`.
    fn stretch(&self, worked: Duration) {
        if self.speed < 1.0 {
            std::thread::sleep(worked.mul_f64(1.0 / self.speed - 1.0));
        }
    }
}

/// One analysis's data at this site, as its local step reads it.
struct Loaded {
    /// Which of the run's analyses (its index).
    index: usize,
    /// The site's rows for the analysis (an external step's file's rows).
    rows: usize,
    config: algorithms::AlgorithmConfig,
    algorithm: Box<dyn algorithms::Runner>,
    /// The design matrix of a built-in algorithm (None: an external one reads the file).
    data: Option<LocalData>,
    /// Under differential privacy: what the site clips this analysis's values and rows to.
    clipping: Option<crate::dp::Clipping>,
    /// A persistent external local step's process, kept between the analysis's rounds.
    session: std::cell::RefCell<Option<external::Session>>,
}

impl Worker {
    /// Read the site's file once, every column a category for some analysis as text.
    fn read(&self) -> Result<Frame, String> {
        let mut text: Vec<String> = Vec::new();
        for c in self.configs.iter().flat_map(|c| &c.categorical) {
            if !text.contains(c) {
                text.push(c.clone());
            }
        }
        let options = ReadOptions {
            // Bundles are written by prep with `,`.
            delimiter: Some(b','),
            text,
            decimal_comma: false,
        };
        Frame::load(&self.data, &options).map_err(|e| e.to_string())
    }

    /// The rows an analysis keeps (all of them, unless `missing` is "drop"), with the levels of
    /// its categorical columns among them.
    fn rows_of(
        &self,
        config: &algorithms::AlgorithmConfig,
        frame: &Frame,
    ) -> Result<(Vec<usize>, Levels), String> {
        if config.external().is_some() {
            // The user's step reads the file itself; only its size is told.
            return Ok(((0..frame.rows()).collect(), Vec::new()));
        }
        frame
            .check(
                &self.data,
                &config.numeric_columns(),
                &config.categorical,
                config.missing,
            )
            .map_err(|e| e.to_string())?;
        let rows = frame.complete_rows(&config.used_columns());
        let levels = config.site_levels(frame, &rows);
        Ok((rows, levels))
    }

    fn run(self, inbox: mpsc::Receiver<Inbox>) -> Result<(), Stop> {
        let frame = self.read().map_err(Stop::GiveUp)?;
        let masking = match &self.seeds {
            None => None,
            Some(Some(seeds)) => Some((self.site.as_str(), seeds)),
            Some(None) => {
                return Err(Stop::GiveUp(
                    "secure aggregation is on but this site's .env has no FEDSIM_PAIR_SEEDS".into(),
                ))
            }
        };
        let mut inbox = inbox.into_iter();
        // Tasks answered so far, across analyses: injected delays count rounds on across them.
        let mut answered = 0u32;
        let mut next = Some(0);
        while let Some(index) = next {
            next = self.analysis(index, &frame, masking, &mut inbox, &mut answered)?;
        }
        Ok(())
    }

    /// Analysis `index`: load its rows and say Ready, code them with the agreed levels, then
    /// answer its rounds. Returns the analysis the coordinator begins next (None: the run is
    /// over). With several analyses, one this site cannot load is refused (Failed) and the
    /// site waits for the next; a run of one gives up, as the site cannot take part.
    fn analysis(
        &self,
        index: usize,
        frame: &Frame,
        masking: Masking,
        inbox: &mut impl Iterator<Item = Inbox>,
        answered: &mut u32,
    ) -> Result<Option<usize>, Stop> {
        let send = |m: &Message| self.sender.send(m).map_err(Stop::Frame);
        let several = self.configs.len() > 1;
        let refuse = |reason: String, inbox: &mut dyn Iterator<Item = Inbox>| {
            if !several {
                return Err(Stop::GiveUp(reason));
            }
            tracing::error!(phase = "launch", analysis = index, %reason, "cannot load this analysis's data");
            send(&Message::Failed { round: 0, reason })?;
            Ok(next_begin(inbox))
        };
        let Some(config) = self.configs.get(index) else {
            return Err(Stop::GiveUp(format!(
                "asked for analysis {} of a run of {}",
                index + 1,
                self.configs.len()
            )));
        };
        // The first analysis's loading includes reading the file, which began with the worker.
        let began = if index == 0 {
            self.started
        } else {
            Instant::now()
        };
        let (rows, levels) = match self.rows_of(config, frame) {
            Ok(loaded) => loaded,
            Err(reason) => return refuse(reason, inbox),
        };
        // The site's rules, before anything of this analysis leaves it.
        let refusals = crate::disclosure::check_load(
            &self.rules,
            &crate::disclosure::Loaded {
                config,
                frame,
                rows: &rows,
            },
            crate::disclosure::parameters(&config.with_levels(&levels)),
        );
        if let Some(refusal) = refusals.into_iter().next() {
            tracing::warn!(phase = "launch", analysis = index, rule = %refusal.rule, %refusal, "refused to load the analysis");
            send(&Message::Refused { round: 0, refusal })?;
            return Ok(next_begin(inbox));
        }
        let dropped = frame.rows() - rows.len();
        // Under secure aggregation even the site's size is sent only inside masked sums, and
        // under differential privacy only with noise.
        let noisy = self.dp.borrow().is_some();
        let hide = |n: usize| {
            if masking.is_some() || noisy {
                0
            } else {
                n as u64
            }
        };
        // A slower server takes longer to load too; the time is said with the Ready.
        self.stretch(began.elapsed());
        let ready = Message::Ready {
            rows: hide(rows.len()),
            peak_rss_kib: peak_rss_kib(),
            dropped: hide(dropped),
            levels: levels.clone(),
            load_secs: began.elapsed().as_secs_f64(),
        };
        audit_ready(
            &ready,
            (index, config),
            frame,
            &rows,
            masking.is_some() || noisy,
        );
        send(&ready)?;
        if dropped > 0 {
            tracing::info!(
                phase = "launch",
                dropped,
                "incomplete rows left out (missing = \"drop\")"
            );
        }
        // With categorical columns, every site codes its rows with the levels of all sites.
        let levels = if !config.agrees_levels() {
            levels
        } else {
            match inbox.next() {
                Some(Inbox::Levels(all)) => all,
                Some(Inbox::Begin(next)) => return Ok(Some(next)),
                Some(Inbox::Task(_)) => {
                    return Err(Stop::GiveUp(
                        "a round began before the categorical levels were agreed".into(),
                    ))
                }
                None => return Ok(None),
            }
        };
        let coded = config.with_levels(&levels);
        // The built-in algorithms compute on the design matrix; an external one on the file.
        let mut data = match coded.external() {
            Some(_) => None,
            None => {
                match LocalData::encoded(&config.design(&levels), frame, &rows, &coded, &self.data)
                {
                    Ok(data) => Some(data),
                    Err(e) => return refuse(e.to_string(), inbox),
                }
            }
        };
        // Under differential privacy every value is clipped to its bounds, from here on.
        let clipping = match self
            .dp
            .borrow()
            .as_ref()
            .map(|dp| dp.clipping(config, &levels))
        {
            None => None,
            Some(Ok(clipping)) => {
                if let Some(d) = data.as_mut() {
                    clipping.clip_data(d);
                }
                Some(clipping)
            }
            Some(Err(e)) => return refuse(e, inbox),
        };
        let loaded = Loaded {
            clipping,
            index,
            rows: rows.len(),
            algorithm: algorithms::build(&coded),
            config: coded,
            data,
            session: Default::default(),
        };
        tracing::info!(phase = "launch", milestone = %Milestone::DataLoaded, rows = rows.len(), "data loaded");
        // Ends when the reading thread returns (the run is over) or the next analysis begins.
        for message in inbox {
            let task = match message {
                Inbox::Task(t) => t,
                Inbox::Begin(next) => return Ok(Some(next)),
                Inbox::Levels(_) => continue,
            };
            *answered += 1;
            self.answer(&loaded, task, *answered, masking)?;
        }
        Ok(None)
    }

    /// One round's task: the local step (after an injected delay, if one is due), its reply
    /// masked under secure aggregation, sent.
    fn answer(
        &self,
        loaded: &Loaded,
        Task {
            round,
            body,
            sites,
            active,
        }: Task,
        algorithm_round: u32,
        masking: Masking,
    ) -> Result<(), Stop> {
        let send = |m: &Message| self.sender.send(m).map_err(Stop::Frame);
        if let Some((_, secs)) = self.delays.iter().find(|(r, _)| *r == algorithm_round) {
            tracing::warn!(
                phase = "federate",
                round,
                delay_secs = secs,
                "injected fault: answering late"
            );
            std::thread::sleep(Duration::from_secs_f64(*secs));
        }
        let started = Instant::now();
        // An external step's time is its process's: start, JSON and compute.
        let answer = match (&loaded.data, loaded.config.external()) {
            (Some(data), _) => loaded
                .algorithm
                .local(&body, data)
                .map_err(|e| e.to_string()),
            (None, Some(spec)) => {
                let dir = self.data.parent().unwrap_or(Path::new("."));
                let mut session = loaded.session.borrow_mut();
                external::local_step(
                    spec,
                    dir,
                    &self.data,
                    &self.site,
                    round,
                    &body,
                    &mut session,
                )
                .map(|(reply, _)| reply)
            }
            (None, None) => Err("no data loaded".to_string()),
        };
        let reply = match answer {
            Ok(reply) => reply,
            Err(e) => {
                tracing::error!(phase = "federate", round, error = %e, "local step failed");
                return send(&Message::Failed {
                    round,
                    reason: e.to_string(),
                });
            }
        };
        // The counts the reply releases, held to the site's rules before it leaves.
        let counts = match &loaded.data {
            Some(data) => loaded
                .algorithm
                .counts(&body, &reply, data)
                .unwrap_or_default(),
            None => vec![("the site's number of rows", loaded.rows as f64)],
        };
        let refusals = crate::disclosure::check_reply(&self.rules, &counts, sites as usize);
        if let Some(refusal) = refusals.into_iter().next() {
            tracing::warn!(phase = "federate", round, rule = %refusal.rule, %refusal, "refused to release the round's reply");
            return send(&Message::Refused { round, refusal });
        }
        // Under differential privacy: the round's share of the budget, the rows clipped, noise.
        let (reply, noise) = match (
            &loaded.clipping,
            &loaded.data,
            self.dp.borrow_mut().as_mut(),
        ) {
            (Some(clipping), Some(data), Some(dp)) => {
                match dp.release(clipping, loaded.algorithm.as_ref(), &body, data) {
                    Ok((noisy, noise)) => (noisy, Some(noise)),
                    Err(crate::dp::DpError::Refused(refusal)) => {
                        tracing::warn!(phase = "federate", round, rule = %refusal.rule, %refusal, "refused to release the round's reply");
                        return send(&Message::Refused { round, refusal });
                    }
                    Err(crate::dp::DpError::Algorithm(e)) => {
                        tracing::error!(phase = "federate", round, error = %e, "local step failed");
                        return send(&Message::Failed {
                            round,
                            reason: e.to_string(),
                        });
                    }
                }
            }
            _ => (reply, None),
        };
        self.stretch(started.elapsed());
        let compute_secs = started.elapsed().as_secs_f64();
        tracing::info!(
            phase = "federate",
            milestone = %Milestone::RoundComputed,
            round,
            compute_secs,
            bytes = reply.len(),
            "round computed"
        );
        let reply_for_audit = reply.clone();
        let (body, masked) = match masking {
            None => (reply, None),
            Some((me, seeds)) => {
                // Only the shape travels in clear; the numbers go masked.
                let masked = loaded
                    .algorithm
                    .split(&reply)
                    .map_err(|e| e.to_string())
                    .and_then(|(shape, values)| {
                        let lost = secagg::below_resolution(&values);
                        if lost > 0 {
                            tracing::warn!(phase = "federate", round, values = lost, resolution = secagg::RESOLUTION, "values below secure aggregation's fixed-point resolution count as 0 in the sum");
                        }
                        secagg::mask(&values, me, &active, seeds, round)
                            .map(|m| (shape, m))
                            .map_err(|e| e.to_string())
                    });
                match masked {
                    Ok((shape, m)) => (shape, Some(m)),
                    Err(reason) => {
                        tracing::error!(phase = "federate", round, %reason, "cannot mask the reply");
                        return send(&Message::Failed { round, reason });
                    }
                }
            }
        };
        let message = Message::Reply {
            round,
            body,
            compute_secs,
            peak_rss_kib: peak_rss_kib(),
            masked,
        };
        let statistics = loaded
            .algorithm
            .statistics(&reply_for_audit)
            .unwrap_or_else(|e| format!("(unreadable: {e})"));
        let numbers = loaded
            .algorithm
            .split(&reply_for_audit)
            .map_or(0, |(_, v)| v.len());
        audit(
            &message,
            (loaded.index, round),
            (statistics, numbers),
            &counts,
            noise,
        );
        send(&message)
    }
}

/// The release audit's record of a message leaving this site: what it holds, its size, and
/// the smallest count behind any of its numbers (see `disclosure`). Under secure aggregation
/// the coordinator sees the shape and masked numbers only; the record says so.
fn audit(
    message: &Message,
    (analysis, round): (usize, u32),
    (statistics, numbers): (String, usize),
    counts: &[(&str, f64)],
    noise: Option<crate::dp::Noise>,
) {
    let bytes = postcard::to_allocvec(message).map_or(0, |b| b.len());
    let masked = matches!(
        message,
        Message::Reply {
            masked: Some(_),
            ..
        }
    );
    let min_count = counts
        .iter()
        .map(|(_, c)| *c)
        .filter(|c| *c > 0.0)
        .fold(f64::INFINITY, f64::min);
    let smallest = counts
        .iter()
        .find(|(_, c)| *c == min_count)
        .map_or("", |(what, _)| *what);
    tracing::info!(
        phase = "federate",
        milestone = %Milestone::Released,
        analysis,
        round,
        %statistics,
        numbers,
        bytes,
        min_count = if min_count.is_finite() { min_count } else { 0.0 },
        smallest,
        masked,
        dp_mechanism = noise.map(|n| n.mechanism.as_str()),
        dp_clip = noise.map(|n| n.clip),
        dp_scale = noise.map(|n| n.scale),
        dp_cost = noise.map(|n| n.cost),
        "released"
    );
}

/// What the audit calls the rows behind an event time a `Ready` sends in clear.
pub const EVENT_TIME_ROWS: &str = "the event rows at an event time it sends in clear";

/// The audit's record of a `Ready`: the rows, and the levels and event times it sends in
/// clear, with the fewest rows behind any of them.
fn audit_ready(
    ready: &Message,
    (analysis, config): (usize, &algorithms::AlgorithmConfig),
    frame: &Frame,
    rows: &[usize],
    masked: bool,
) {
    let Message::Ready { levels, .. } = ready else {
        return;
    };
    let mut counts: Vec<(&str, f64)> = vec![("the site's number of rows", rows.len() as f64)];
    for column in &config.categorical {
        counts.extend(
            crate::disclosure::level_counts(frame, column, rows)
                .into_iter()
                .map(|(_, c)| ("the rows of a category level", c as f64)),
        );
    }
    if let Some((time, event, group)) = config.params.survival_columns() {
        counts.extend(
            crate::disclosure::event_time_counts(frame, rows, time, event, group)
                .into_iter()
                .map(|c| (EVENT_TIME_ROWS, c as f64)),
        );
    }
    let shapes: Vec<String> = levels
        .iter()
        .map(|(c, l)| format!("{c}: {}", l.len()))
        .collect();
    // Under secure aggregation the row counts go as 0: the levels still travel in clear.
    let statistics = format!(
        "Ready{{rows: {}, levels{{{}}}}}",
        if masked { 0 } else { 1 },
        shapes.join(", ")
    );
    let numbers = levels.iter().map(|(_, l)| l.len()).sum::<usize>() + usize::from(!masked) * 2;
    audit(ready, (analysis, 0), (statistics, numbers), &counts, None);
}

/// Skip to the next analysis the coordinator begins (None: the run is over).
fn next_begin(inbox: &mut dyn Iterator<Item = Inbox>) -> Option<usize> {
    for message in inbox {
        if let Inbox::Begin(next) = message {
            return Some(next);
        }
    }
    None
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
