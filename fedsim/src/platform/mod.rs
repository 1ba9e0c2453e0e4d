//! Third-party federated platforms run on fedsim's sites, under its links and faults, judged
//! like its own federation. One trait, one adapter per platform (`flower.rs`: Flower's
//! deployment engine); the pipeline drives any of them the same way (`deploy`): the server side,
//! each site's node (dialling its link's relay when it has one), the run, its end (by deadline,
//! cancel or fault), the result, and everything stopped and its logs kept.

pub mod certs;
pub mod flower;
pub mod nodes;
mod procs;
pub mod wheelhouse;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::algorithms::Estimates;
use crate::scenario::{FaultKind, FaultSpec};
use crate::sys::cancel;

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make the run's TLS certificates: {0}")]
    Certs(String),
    #[error("{0}")]
    Missing(String),
    #[error("cannot start {what}: {reason}")]
    Start { what: String, reason: String },
    #[error("{what} did not come up within {secs} s (its log: {})", log.display())]
    NotUp {
        what: String,
        secs: u64,
        log: PathBuf,
    },
    #[error("{0}")]
    Run(String),
    #[error("the platform's run took longer than {0} s; stopped")]
    Timeout(u64),
    #[error("cannot inject fault {kind:?} on {site}: {reason}")]
    Fault {
        site: String,
        kind: FaultKind,
        reason: String,
    },
    #[error("{what} on {site}: {reason}")]
    Site {
        site: String,
        what: String,
        reason: String,
    },
    #[error("cancelled")]
    Cancelled,
}

impl PlatformError {
    /// The site to blame, when one is.
    pub fn site(&self) -> Option<&str> {
        match self {
            PlatformError::Site { site, .. } | PlatformError::Fault { site, .. } => Some(site),
            _ => None,
        }
    }
}

/// A site as the platform sees it: its name, its place among the sites, its rows' file.
#[derive(Debug, Clone)]
pub struct SiteSeat {
    pub name: String,
    /// 0-based, in the order of the sites.
    pub index: usize,
    pub sites: usize,
    /// The name of the site's data file in its bundle.
    pub data_name: String,
    /// The site's folder on this machine, where a local site's node runs and its bundle is.
    pub dir: PathBuf,
    /// How many rows the site holds.
    pub rows: usize,
    /// The site's data file as its bundle has it: the platform's own simulation gets it as a
    /// partition here, wherever the site runs.
    pub data: std::sync::Arc<Vec<u8>>,
}

/// What a finished platform run handed back: its named result and when each round ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlatformResult {
    pub result: Estimates,
    /// Seconds from the strategy's start to each round's end, as the App measured them.
    pub round_ends: Vec<f64>,
    /// From submitting the run to its result.
    pub run_secs: f64,
    /// From starting the server to the first round's end: start-up and the first round.
    #[serde(default)]
    pub first_round_secs: f64,
    /// The largest total proportional memory of every process the platform ran at once (KiB),
    /// sampled twice a second.
    #[serde(default)]
    pub peak_pss_kib: u64,
    /// The bytes each round put on the sites' wires, as the relays every node dials through
    /// counted them (TLS records and all), from one round's start line to the next; empty
    /// where nothing counted (the simulation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub round_bytes: Vec<RoundBytes>,
}

/// One round's bytes, every site together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RoundBytes {
    /// From the sites to the server.
    pub up: u64,
    /// From the server to the sites.
    pub down: u64,
}

impl PlatformResult {
    /// Each round's own seconds (from the previous round's end).
    pub fn round_secs(&self) -> Vec<f64> {
        let starts = std::iter::once(0.0).chain(self.round_ends.iter().copied());
        self.round_ends
            .iter()
            .zip(starts)
            .map(|(end, start)| end - start)
            .collect()
    }
}

/// How a run on a platform ended, one adapter or another.
pub trait Platform {
    /// The platform's name in logs and the report.
    fn name(&self) -> &'static str;
    /// Start the server side at the coordinator; returns the address sites dial.
    fn start_server(&mut self) -> Result<SocketAddr, PlatformError>;
    /// Start every site's node, each dialling `dial(site)` (the server, or its link's relay).
    fn start_sites(
        &mut self,
        sites: &[SiteSeat],
        dial: &dyn Fn(&str) -> SocketAddr,
    ) -> Result<(), PlatformError>;
    /// Cut one site's network (fault injection), where its provider can.
    fn cut_site(&mut self, site: &str) -> Result<(), PlatformError> {
        Err(PlatformError::Fault {
            site: site.into(),
            kind: FaultKind::Cut,
            reason: "sites on this provider cannot be cut".into(),
        })
    }
    /// Submit the App's run.
    fn start_run(&mut self) -> Result<(), PlatformError>;
    /// Whether the run has ended: Some(Ok(())) when it finished, Some(Err) when it broke.
    fn poll(&mut self) -> Option<Result<(), PlatformError>>;
    /// The round the run is in (0 before the first), as the platform reports it.
    fn round(&self) -> u32;
    /// A site's node that has died on its own, with how.
    fn dead_site(&mut self) -> Option<(String, String)>;
    /// Kill one site's node at once (fault injection).
    fn kill_site(&mut self, site: &str) -> Result<(), PlatformError>;
    /// The App's result, once the run has finished.
    fn result(&mut self) -> Result<PlatformResult, PlatformError>;
    /// What the platform said of failures as it ran (a round ending with failures, a node
    /// found unavailable), in order: what it did when a site was lost.
    fn notes(&self) -> Vec<String>;
    /// The processes it started and runs now (each with what it started in turn).
    fn pids(&self) -> Vec<u32>;
    /// Stop everything this adapter started; returns when nothing is left.
    fn stop(&mut self);
}

/// What the deployment did, for the summary: the result (or why none), what was lost and how.
pub struct Deployed {
    pub result: Result<PlatformResult, PlatformError>,
    /// Sites killed or dead during the run: the round it happened in, and why.
    pub lost: Vec<(String, u32, String)>,
    /// Seconds until every node was up.
    pub connect_secs: f64,
    /// The platform's own words on failures (`Platform::notes`).
    pub notes: Vec<String>,
}

/// How the sites reach the server: where each dials (given the server's address), and the bytes
/// carried so far (up, down), when something on the way counts them.
pub struct Wires<'w> {
    pub dial: &'w dyn Fn(&str, SocketAddr) -> SocketAddr,
    pub carried: &'w dyn Fn() -> Option<(u64, u64)>,
}

impl Wires<'_> {
    /// Straight to the server, uncounted.
    pub fn direct() -> Wires<'static> {
        Wires {
            dial: &|_, a| a,
            carried: &|| None,
        }
    }
}

/// Drive a platform through one run on `sites`: server, nodes, run, faults as their rounds come,
/// the end (finished, broken, timed out or cancelled), the result; and stop it, whatever happened.
/// `fail_on_loss`: a lost site ends the run at once (`on_dropout = "fail"`); otherwise the
/// platform goes on as it does.
pub fn deploy(
    p: &mut dyn Platform,
    sites: &[SiteSeat],
    wires: &Wires,
    faults: &[FaultSpec],
    timeout: Duration,
    fail_on_loss: bool,
) -> Deployed {
    let began = Instant::now();
    let mut lost = Vec::new();
    let mut connect_secs = 0.0;
    let mut peak_pss_kib = 0u64;
    let result = (|| {
        let server = p.start_server()?;
        cancel::check().map_err(|_| PlatformError::Cancelled)?;
        p.start_sites(sites, &|site| (wires.dial)(site, server))?;
        connect_secs = began.elapsed().as_secs_f64();
        p.start_run()?;
        let submitted = began.elapsed().as_secs_f64();
        let mut sampled = Instant::now() - Duration::from_secs(1);
        let mut pending: Vec<&FaultSpec> = faults
            .iter()
            .filter(|f| matches!(f.kind, FaultKind::Kill | FaultKind::Cut))
            .collect();
        let deadline = Instant::now() + timeout;
        // The bytes carried when each round started, and at the end.
        let mut marks: Vec<(u64, u64)> = Vec::new();
        loop {
            if cancel::requested() {
                return Err(PlatformError::Cancelled);
            }
            if sampled.elapsed() >= Duration::from_millis(500) {
                sampled = Instant::now();
                let pss = crate::sys::proc::with_descendants(&p.pids())
                    .into_iter()
                    .filter_map(crate::sys::proc::pss_kib)
                    .sum::<u64>();
                peak_pss_kib = peak_pss_kib.max(pss);
            }
            if let Some(end) = p.poll() {
                end?;
                marks.extend((wires.carried)());
                break;
            }
            // Each fault once, as its round starts.
            let round = p.round();
            if let Some(now) = (wires.carried)() {
                marks.resize(round as usize, now);
            }
            while let Some(i) = pending.iter().position(|f| f.round.max(1) <= round) {
                let f = pending.remove(i);
                let cause = match f.kind {
                    FaultKind::Cut => {
                        tracing::warn!(phase = "federate", site = %f.site, round, fault = "cut", "fault: cutting the site's network");
                        p.cut_site(&f.site)?;
                        "its network cut by a fault"
                    }
                    _ => {
                        tracing::warn!(phase = "federate", site = %f.site, round, fault = "kill", "fault: killing the site's node");
                        p.kill_site(&f.site)?;
                        "killed by a fault"
                    }
                };
                lost.push((f.site.clone(), round, cause.to_string()));
            }
            if let Some((site, why)) = p.dead_site() {
                if !lost.iter().any(|(s, _, _)| *s == site) {
                    tracing::warn!(phase = "federate", site = %site, reason = %why, "a site's node died");
                    lost.push((site, p.round(), why));
                }
            }
            if let (true, Some((site, round, why))) = (fail_on_loss, lost.first()) {
                return Err(PlatformError::Run(format!(
                    "{site} was lost in round {round} ({why}) and on_dropout = \"fail\""
                )));
            }
            if Instant::now() > deadline {
                return Err(PlatformError::Timeout(timeout.as_secs()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut r = p.result()?;
        r.peak_pss_kib = peak_pss_kib;
        r.round_bytes = marks
            .windows(2)
            .map(|w| RoundBytes {
                up: w[1].0 - w[0].0,
                down: w[1].1 - w[0].1,
            })
            .collect();
        r.first_round_secs = submitted + r.round_ends.first().copied().unwrap_or(0.0);
        Ok(r)
    })();
    p.stop();
    Deployed {
        result,
        lost,
        connect_secs,
        notes: p.notes(),
    }
}

/// `platform.json`: the deployment against Flower's own simulation of the same App on the same
/// partitions, side by side (the report's table).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Side {
    pub platform: String,
    pub deployment: Option<PlatformResult>,
    pub simulation: Option<PlatformResult>,
    /// Why the simulation has no result, when it has none.
    #[serde(default)]
    pub simulation_error: Option<String>,
    /// The largest relative difference of a named number between the two.
    #[serde(default)]
    pub max_rel_diff: Option<f64>,
}

/// The largest relative difference between two named results (their common numbers).
pub fn max_rel_diff(a: &Estimates, b: &Estimates) -> Option<f64> {
    use crate::algorithms::external::flatten;
    let mut worst: Option<f64> = None;
    for (name, va) in &a.named {
        let vb = b.named.get(name)?;
        for ((_, x), (_, y)) in flatten(name, va).iter().zip(flatten(name, vb)) {
            let d = (x - y).abs() / x.abs().max(y.abs()).max(1e-300);
            worst = Some(worst.map_or(d, |w: f64| w.max(d)));
        }
    }
    worst
}
