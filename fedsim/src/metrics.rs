//! `metrics.json`: what the run cost. Wall time per phase, traffic and compute per round and site,
//! and memory, each process measured by itself.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::enrol::participants::DriveReport;
use crate::federation::coordinator::RoundMetrics;

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Metrics {
    /// Wall seconds per phase, in pipeline order.
    pub phases: Vec<(String, f64)>,
    /// Seconds until every site had connected and authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_secs: Option<f64>,
    /// Round 0 is the sites loading their data; then the algorithm's rounds.
    #[serde(default)]
    pub rounds: Vec<RoundMetrics>,
    pub controller_cpu_secs: f64,
    /// The controller's own peak resident memory (VmHWM).
    pub controller_peak_rss_kib: u64,
    /// Every site's peak resident memory, as its agent measured it (its own VmHWM).
    #[serde(default)]
    pub sites_peak_rss_kib: BTreeMap<String, u64>,
    /// The portal: each account's steps (API calls or GUI steps) and their times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portal: Option<DriveReport>,
}

impl Metrics {
    /// Seconds a phase took, if it ran.
    pub fn phase_secs(&self, name: &str) -> Option<f64> {
        self.phases.iter().find(|p| p.0 == name).map(|p| p.1)
    }

    /// Total bytes the sites sent, over every round.
    pub fn bytes_sent(&self) -> u64 {
        self.rounds
            .iter()
            .flat_map(|r| &r.sites)
            .map(|s| s.bytes_sent)
            .sum()
    }
}

/// Wall time per phase, lap by lap.
pub struct PhaseClock {
    phases: Vec<(String, f64)>,
    since: Instant,
}

impl Default for PhaseClock {
    fn default() -> Self {
        PhaseClock {
            phases: Vec::new(),
            since: Instant::now(),
        }
    }
}

impl PhaseClock {
    /// Close the phase that has been running since the last lap.
    pub fn lap(&mut self, name: &str) {
        self.phases
            .push((name.to_string(), self.since.elapsed().as_secs_f64()));
        self.since = Instant::now();
    }

    pub fn phases(&self) -> &[(String, f64)] {
        &self.phases
    }
}

/// Assemble the run's metrics: phases, rounds, portal, and this process's own CPU and memory.
pub fn collect(
    clock: &PhaseClock,
    connect_secs: Option<f64>,
    rounds: Vec<RoundMetrics>,
    portal: Option<DriveReport>,
) -> Metrics {
    let mut sites_peak_rss_kib = BTreeMap::new();
    for site in rounds.iter().flat_map(|r| &r.sites) {
        let e = sites_peak_rss_kib.entry(site.site.clone()).or_insert(0);
        *e = site.peak_rss_kib.max(*e);
    }
    Metrics {
        phases: clock.phases().to_vec(),
        connect_secs,
        rounds,
        controller_cpu_secs: crate::sys::proc::cpu_secs(),
        controller_peak_rss_kib: crate::sys::proc::peak_rss_kib(),
        sites_peak_rss_kib,
        portal,
    }
}
