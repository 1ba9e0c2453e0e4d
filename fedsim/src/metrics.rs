//! `metrics.json`: what the run cost. Wall time per phase, traffic and compute per round and site,
//! and memory, each process measured by itself.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::federation::coordinator::RoundMetrics;
use crate::participants::DriveReport;

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
    pub fn load(dir: &Path) -> Result<Metrics, crate::report::ReportError> {
        crate::report::read_json(&dir.join("metrics.json"))
    }

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
        controller_cpu_secs: cpu_secs(),
        controller_peak_rss_kib: peak_rss_kib(),
        sites_peak_rss_kib,
        portal,
    }
}

/// This process's CPU seconds (user + system).
pub fn cpu_secs() -> f64 {
    // SAFETY: getrusage only writes the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

/// This process's own peak resident memory in KiB: `VmHWM` from `/proc/self/status`. Unlike
/// getrusage's `ru_maxrss`, it starts afresh at exec, so an agent forked from a large controller
/// reports its own peak, not the controller's.
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| vm_hwm_kib(&s))
        .unwrap_or(0)
}

fn vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A process's proportional set size in KiB (`Pss` of `/proc/PID/smaps_rollup`): its private
/// memory plus its share of what it shares, so that summing it over processes counts shared
/// pages (the agents' common binary) once.
pub fn pss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_memory_is_read_from_proc_and_grows_with_use() {
        assert_eq!(
            vm_hwm_kib("Name:\tx\nVmHWM:\t   12345 kB\nVmRSS:\t1 kB\n"),
            Some(12345)
        );
        let before = peak_rss_kib();
        assert!(before > 100, "{before}");
        // Touch 64 MiB: the high-water mark must see it.
        let block = vec![1u8; 64 << 20];
        std::hint::black_box(&block);
        let after = peak_rss_kib();
        assert!(after >= before + 60 * 1024, "{before} -> {after}");
    }
}
