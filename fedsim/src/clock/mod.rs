//! The simulated clock: the study as hospitals would live it, projected from what a run
//! measured. A run in `[clock] mode = "simulated"` waits for nothing (no relay, no netem); it
//! measures each site's compute and the bytes of every message, round by round. This module
//! then lays those rounds on a timeline where each message crosses its site's link (the relay's
//! own model, `relay::Direction`), each site computes only while it is up (its office hours,
//! days, maintenance and trace, `calendar`), slowed by its `speed`, after its data steward's
//! approval (log-normal), and the coordinator starts a round when the last answer of the one
//! before has arrived. The same seed draws the same approvals, jitter and losses.
//!
//! What it does not model: messages outside the recorded rounds other than the handshake
//! (the levels the coordinator announces, heartbeats), and sites that drop out (a round
//! counts the sites that answered it).

pub mod calendar;
pub mod trace;

use std::collections::BTreeMap;
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};
use serde::{Deserialize, Serialize};

use crate::federation::coordinator::RoundMetrics;
use crate::metrics::Metrics;
use crate::relay::{Direction, Way};
use crate::scenario::{Approval, Scenario};
use calendar::Calendar;

/// What the projection cannot do.
#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    #[error(transparent)]
    Trace(#[from] trace::TraceError),
    #[error("site {site} is never up again after {after} (its hours, days, maintenance or trace leave no time), so the study cannot finish")]
    NeverUp { site: String, after: String },
}

/// Where a stretch of time went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Breakdown {
    /// Waiting for a data steward's approval.
    pub approval_secs: f64,
    /// Waiting for the site to be up (off-hours, maintenance, offline in its trace).
    pub offline_secs: f64,
    pub computing_secs: f64,
    /// On the link, both ways (latency, bandwidth, retransmissions, outages).
    pub transferring_secs: f64,
    /// The coordinator's own work between rounds.
    #[serde(default)]
    pub coordinator_secs: f64,
}

impl Breakdown {
    fn add(&mut self, o: &Breakdown) {
        self.approval_secs += o.approval_secs;
        self.offline_secs += o.offline_secs;
        self.computing_secs += o.computing_secs;
        self.transferring_secs += o.transferring_secs;
        self.coordinator_secs += o.coordinator_secs;
    }
}

/// One site's share of the study.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SiteProjection {
    pub site: String,
    #[serde(flatten)]
    pub spent: Breakdown,
    /// Waiting for the other sites.
    pub idle_secs: f64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Seconds this site was the last to answer (on the critical path).
    pub critical_secs: f64,
}

/// One site in one round, on the simulated clock (seconds after the study's start).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SiteStep {
    pub site: String,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub asked_at: f64,
    pub starts_at: f64,
    pub done_at: f64,
    pub answered_at: f64,
}

/// One round (the handshake is round "connect"), on the simulated clock.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoundProjection {
    /// `connect`, or the round's number as metrics.json has it.
    pub round: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<String>,
    pub from_secs: f64,
    pub to_secs: f64,
    /// The site whose answer came last.
    pub critical_site: Option<String>,
    /// Where the critical site's time in this round went.
    pub critical: Breakdown,
    pub sites: Vec<SiteStep>,
}

/// The study on the simulated clock: what summary.json keeps of it, and its rounds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Projection {
    #[serde(flatten)]
    pub summary: ProjectionSummary,
    pub rounds: Vec<RoundProjection>,
}

/// The study's duration and where it went (summary.json's `projection`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProjectionSummary {
    /// The study's start and end, as dates.
    pub start: String,
    pub end: String,
    pub duration_secs: f64,
    /// For people: "3 days 4 hours, of which 2 days waiting for approvals".
    pub words: String,
    /// The critical path's time, by what it was spent on (sums to the duration).
    pub critical: Breakdown,
    /// The site on the critical path longest.
    pub bottleneck: Option<String>,
    pub sites: Vec<SiteProjection>,
}

impl std::ops::Deref for Projection {
    type Target = ProjectionSummary;

    fn deref(&self) -> &ProjectionSummary {
        &self.summary
    }
}

/// Bytes of the handshake's three crossings (site's opening, coordinator's answer, Hello):
/// a Noise NN message each way and a sealed Hello, as the frames are.
const HANDSHAKE: [(Way, u64); 3] = [(Way::Up, 64), (Way::Down, 80), (Way::Up, 96)];

/// One site as the projection walks it.
struct Walker {
    name: String,
    calendar: Calendar,
    speed: f64,
    approval: Option<Approval>,
    rng: ChaCha8Rng,
    links: Option<(Direction, Direction)>,
    total: SiteProjection,
}

impl Walker {
    fn cross(&mut self, way: Way, bytes: u64, at: f64) -> f64 {
        match &mut self.links {
            None => at,
            Some((up, down)) => {
                let d = match way {
                    Way::Up => up,
                    Way::Down => down,
                };
                d.message(bytes, Duration::from_secs_f64(at.max(0.0)))
                    .as_secs_f64()
            }
        }
    }

    fn approval_delay(&mut self) -> f64 {
        let Some(a) = self.approval else { return 0.0 };
        let sigma = (a.p90_secs / a.median_secs).ln() / 1.281_551_565_544_600_4;
        LogNormal::new(a.median_secs.ln(), sigma).map_or(a.median_secs, |d| d.sample(&mut self.rng))
    }

    /// When a site asked at `asked` can begin: after its steward's approval (if `approve`)
    /// and once it is up. Returns (begins, approval, offline).
    fn begin(&mut self, asked: f64, approve: bool) -> Result<(f64, f64, f64), ClockError> {
        let approval = if approve { self.approval_delay() } else { 0.0 };
        let approved = asked + approval;
        let (up, _) = self
            .calendar
            .next_up(approved)
            .ok_or_else(|| self.never(approved))?;
        let begins = up.max(approved);
        Ok((begins, approval, begins - approved))
    }

    fn never(&self, t: f64) -> ClockError {
        ClockError::NeverUp {
            site: self.name.clone(),
            after: self.calendar.instant(t).to_rfc3339(),
        }
    }

    /// The site is asked at `asked` (the request arrived); it waits for approval (if
    /// `approve`) and up-time, spends `time` (as measured: its computing, which its speed
    /// scales, and the rest), and answers `bytes`. Returns (began, done computing, answer
    /// arrived, where its time went).
    fn answer(
        &mut self,
        asked: f64,
        approve: bool,
        time: SiteTime,
        bytes: u64,
    ) -> Result<(f64, f64, f64, Breakdown), ClockError> {
        let (begins, approval, offline) = self.begin(asked, approve)?;
        let work = time.computing / self.speed + time.rest;
        let done = self
            .calendar
            .work(begins, work)
            .ok_or_else(|| self.never(begins))?;
        let answered = self.cross(Way::Up, bytes, done);
        let spent = Breakdown {
            approval_secs: approval,
            offline_secs: (offline + (done - begins - work)).max(0.0),
            computing_secs: work,
            transferring_secs: answered - done,
            coordinator_secs: 0.0,
        };
        Ok((begins, done, answered, spent))
    }
}

/// Every trace the scenario's sites use, read and checked against the sites it covers, so a
/// bad one is refused before the run begins.
pub fn check_traces(scenario: &Scenario) -> Result<(), trace::TraceError> {
    let sites = scenario.site_names();
    for (path, covered) in traces(scenario, &sites) {
        trace::load_for(&path, &sites, &covered, scenario.clock.start())?;
    }
    Ok(())
}

/// Each trace file, with the sites it covers.
fn traces(scenario: &Scenario, sites: &[String]) -> BTreeMap<std::path::PathBuf, Vec<String>> {
    let mut traces: BTreeMap<std::path::PathBuf, Vec<String>> = BTreeMap::new();
    for s in sites {
        if let Some(p) = scenario.availability_of(s).and_then(|a| a.trace) {
            traces.entry(p).or_default().push(s.clone());
        }
    }
    traces
}

/// Project `metrics` (a run in simulated mode) onto the study's clock.
pub fn project(
    scenario: &Scenario,
    sites: &[String],
    metrics: &Metrics,
) -> Result<Projection, ClockError> {
    let start = scenario.clock.start();
    let seed = scenario.scenario.seed;
    // Traces, each read once.
    let mut loaded = BTreeMap::new();
    for (path, covered) in &traces(scenario, sites) {
        loaded.insert(path.clone(), trace::load_for(path, sites, covered, start)?);
    }
    let mut linked = 0;
    let mut walkers: Vec<Walker> = sites
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let a = scenario.availability_of(s);
            let calendar = match &a {
                None => Calendar::always(start),
                Some(a) => {
                    let t = a
                        .trace
                        .as_ref()
                        .and_then(|p| loaded.get(p))
                        .and_then(|t: &trace::Intervals| t.get(s))
                        .cloned();
                    Calendar::of(a, start, t)
                }
            };
            let links = scenario.link_of(s).map(|l| {
                linked += 1;
                (
                    Direction::new(&l, seed, linked - 1, 1, Way::Up),
                    Direction::new(&l, seed, linked - 1, 1, Way::Down),
                )
            });
            Walker {
                name: s.clone(),
                calendar,
                speed: a.as_ref().map_or(1.0, |a| a.speed),
                approval: a.as_ref().and_then(|a| a.approval),
                rng: ChaCha8Rng::seed_from_u64(seed ^ 0x0A99_0000_0000 ^ ((i as u64) << 8)),
                links,
                total: SiteProjection {
                    site: s.clone(),
                    spent: Breakdown::default(),
                    idle_secs: 0.0,
                    bytes_sent: 0,
                    bytes_received: 0,
                    critical_secs: 0.0,
                },
            }
        })
        .collect();
    let index: BTreeMap<&str, usize> = sites
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i))
        .collect();
    let mut rounds = Vec::new();
    let mut critical = Breakdown::default();

    // The handshake: each site dials once its steward approved and it is up, after the agent's
    // start (as measured), and is connected when its Hello arrives.
    let started = metrics.connect_secs.unwrap_or(0.0);
    let mut steps = Vec::new();
    let mut connected = vec![0.0; walkers.len()];
    let mut worst: Option<(usize, f64, Breakdown)> = None;
    for (i, w) in walkers.iter_mut().enumerate() {
        let (dials, approval, offline) = w.begin(0.0, true)?;
        let mut t = dials + started;
        for (way, bytes) in HANDSHAKE {
            t = w.cross(way, bytes, t);
        }
        let spent = Breakdown {
            approval_secs: approval,
            offline_secs: offline,
            computing_secs: started,
            transferring_secs: t - dials - started,
            coordinator_secs: 0.0,
        };
        connected[i] = t;
        steps.push(SiteStep {
            site: w.name.clone(),
            bytes_sent: 0,
            bytes_received: 0,
            asked_at: 0.0,
            starts_at: dials,
            done_at: dials + started,
            answered_at: t,
        });
        w.total.spent.add(&spent);
        if worst.as_ref().is_none_or(|(_, at, _)| t > *at) {
            worst = Some((i, t, spent));
        }
    }
    let mut now = worst.as_ref().map_or(0.0, |w| w.1);
    rounds.push(close(
        &mut walkers,
        &mut critical,
        "connect".into(),
        None,
        0.0,
        now,
        worst,
        steps,
        0.0,
    ));

    // The rounds, in order; each analysis's first is its loading, where a steward who approves
    // each analysis does so.
    let mut previous: Option<Option<String>> = None;
    for r in &metrics.rounds {
        let first_of_analysis = previous.as_ref() != Some(&r.analysis);
        previous = Some(r.analysis.clone());
        let from = now;
        let mut steps = Vec::new();
        let mut worst: Option<(usize, f64, Breakdown)> = None;
        for s in &r.sites {
            let Some(&i) = index.get(s.site.as_str()) else {
                continue;
            };
            let w = &mut walkers[i];
            // The first loading follows the Welcome each site got on connecting.
            let sent = if r.round == 0 { connected[i] } else { from };
            let asked = w.cross(Way::Down, s.bytes_received, sent);
            let approve =
                first_of_analysis && r.round != 0 && w.approval.is_some_and(|a| a.each_analysis);
            let (starts, done, answered, mut spent) =
                w.answer(asked, approve, SiteTime::of(s), s.bytes_sent)?;
            spent.transferring_secs += asked - sent;
            w.total.spent.add(&spent);
            w.total.bytes_sent += s.bytes_sent;
            w.total.bytes_received += s.bytes_received;
            steps.push(SiteStep {
                site: s.site.clone(),
                bytes_sent: s.bytes_sent,
                bytes_received: s.bytes_received,
                asked_at: asked,
                starts_at: starts,
                done_at: done,
                answered_at: answered,
            });
            if worst.as_ref().is_none_or(|(_, at, _)| answered > *at) {
                worst = Some((i, answered, spent));
            }
        }
        let last = worst.as_ref().map_or(from, |w| w.1).max(from);
        let coordinator = coordinator_secs(r);
        now = last + coordinator;
        rounds.push(close(
            &mut walkers,
            &mut critical,
            r.round.to_string(),
            r.analysis.clone(),
            from,
            now,
            worst,
            steps,
            coordinator,
        ));
    }

    for w in &mut walkers {
        let s = &w.total.spent;
        w.total.idle_secs =
            (now - s.approval_secs - s.offline_secs - s.computing_secs - s.transferring_secs)
                .max(0.0);
    }
    let sites: Vec<SiteProjection> = walkers.into_iter().map(|w| w.total).collect();
    let bottleneck = sites
        .iter()
        .filter(|s| s.critical_secs > 0.0)
        .max_by(|a, b| a.critical_secs.total_cmp(&b.critical_secs))
        .map(|s| s.site.clone());
    let end = Calendar::always(start).instant(now);
    Ok(Projection {
        summary: ProjectionSummary {
            start: start.to_rfc3339(),
            end: end.to_rfc3339(),
            duration_secs: now,
            words: words(now, &critical),
            critical,
            bottleneck,
            sites,
        },
        rounds,
    })
}

/// The round's critical site and its time, credited.
#[allow(clippy::too_many_arguments)]
fn close(
    walkers: &mut [Walker],
    critical: &mut Breakdown,
    round: String,
    analysis: Option<String>,
    from: f64,
    to: f64,
    worst: Option<(usize, f64, Breakdown)>,
    sites: Vec<SiteStep>,
    coordinator: f64,
) -> RoundProjection {
    let mut spent = worst.as_ref().map(|w| w.2).unwrap_or_default();
    // What the critical site did before it was asked (a Welcome sent at its own connecting)
    // does not count twice: the round's length is what the path spends.
    let length = to - from - coordinator;
    let used =
        spent.approval_secs + spent.offline_secs + spent.computing_secs + spent.transferring_secs;
    if used > length && used > 0.0 {
        let k = length / used;
        spent.approval_secs *= k;
        spent.offline_secs *= k;
        spent.computing_secs *= k;
        spent.transferring_secs *= k;
    } else {
        // Any rest is the coordinator's (it started the round late on nothing else).
        spent.coordinator_secs += length - used;
    }
    spent.coordinator_secs += coordinator;
    critical.add(&spent);
    if let Some((i, _, _)) = &worst {
        walkers[*i].total.critical_secs += to - from;
    }
    RoundProjection {
        round,
        analysis,
        from_secs: from,
        to_secs: to,
        critical_site: worst.map(|(i, _, _)| walkers[i].name.clone()),
        critical: spent,
        sites,
    }
}

/// A site's own time in a round of a run that waited for nothing.
#[derive(Debug, Clone, Copy)]
struct SiteTime {
    /// Its computing (its loading, in round 0): what a slower server takes longer for, as the
    /// agent stretches it on the real clock.
    computing: f64,
    /// The rest of the time from the request leaving to the answer arriving over loopback:
    /// reading, decoding and encoding the messages.
    rest: f64,
}

impl SiteTime {
    fn of(s: &crate::federation::coordinator::SiteRound) -> SiteTime {
        SiteTime {
            computing: s.compute_secs,
            // A site loading its data began before the round's clock did: no rest then.
            rest: (s.answer_secs - s.compute_secs).max(0.0),
        }
    }
}

/// The coordinator's own time in a round: all of it but the slowest answer.
fn coordinator_secs(r: &RoundMetrics) -> f64 {
    let slowest = r.sites.iter().map(|s| s.answer_secs).fold(0.0, f64::max);
    (r.wall_secs - slowest).max(0.0)
}

/// `3 days 4 hours`, `2 hours 5 minutes`, `41.2 s`.
pub fn span(secs: f64) -> String {
    if secs < 60.0 {
        return format!("{secs:.1} s");
    }
    let units = [
        ("day", 86_400.0),
        ("hour", 3600.0),
        ("minute", 60.0),
        ("second", 1.0),
    ];
    let mut left = secs.round();
    let mut parts = Vec::new();
    for (name, size) in units {
        let n = (left / size).floor();
        if n >= 1.0 {
            parts.push(format!("{n} {name}{}", if n == 1.0 { "" } else { "s" }));
            left -= n * size;
        }
        if parts.len() == 2 || (!parts.is_empty() && n < 1.0) {
            break;
        }
    }
    parts.join(" ")
}

/// The duration for people, with what dominated its waiting.
fn words(secs: f64, critical: &Breakdown) -> String {
    let mut out = span(secs);
    let waits = [
        (critical.approval_secs, "waiting for approvals"),
        (critical.offline_secs, "waiting for sites to be up"),
        (critical.transferring_secs, "on the links"),
        (critical.computing_secs, "computing"),
    ];
    if let Some((w, what)) = waits
        .iter()
        .filter(|(w, _)| *w >= 0.25 * secs && *w > 0.0)
        .max_by(|a, b| a.0.total_cmp(&b.0))
    {
        out.push_str(&format!(", of which {} {what}", span(*w)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_as_people_say_them() {
        assert_eq!(span(41.23), "41.2 s");
        assert_eq!(span(3.0 * 86_400.0 + 4.0 * 3600.0 + 17.0), "3 days 4 hours");
        assert_eq!(span(3600.0 + 300.0), "1 hour 5 minutes");
        assert_eq!(span(86_400.0 + 60.0), "1 day");
    }
}
