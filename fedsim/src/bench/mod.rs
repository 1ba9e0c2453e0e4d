//! `fedsim bench`: what federation costs, as ratios to the centralised baseline measured in the
//! same command on the same machine (absolute seconds mean little across machines).
//!
//! Two cases, each a full `fedsim run` on local sites: OLS on 1 000 000 x 50 over 10 sites and
//! svd k = 10 on 20 000 x 2 000 over 5 sites (federated subspace iteration). `--quick` shrinks both
//! (for tests and smoke checks) and keeps their shape. `--sites` measures scaling in sites instead
//! ([`sites`]), and for the logistic workload sets Flower beside it where flwr is found
//! ([`flower`]).

pub mod flower;
pub mod sites;

/// What `fedsim bench` writes into its folder.
pub const FILE: &str = "bench.json";

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::run::{self, RunError, RunOptions, RunOutcome};
use crate::scenario::Scenario;

const CASES: [(&str, &str); 2] = [
    (
        "bench_ols.toml",
        include_str!("../../../resources/bench_ols.toml"),
    ),
    (
        "config_svd_highdim.toml",
        include_str!("../../../resources/config_svd_highdim.toml"),
    ),
];

#[derive(Debug, Serialize)]
pub struct RoundTraffic {
    pub round: u32,
    pub wall_secs: f64,
    /// Bytes each site sent (its aggregates), largest and mean over sites.
    pub max_bytes_sent_per_site: u64,
    pub mean_bytes_sent_per_site: f64,
    /// Bytes each site received (the coordinator's request).
    pub max_bytes_received_per_site: u64,
}

#[derive(Debug, Serialize)]
pub struct CaseResult {
    pub scenario: String,
    pub rows: usize,
    pub cols: usize,
    pub sites: usize,
    pub status: String,
    /// Largest federated-vs-centralised difference, on each check's own scale.
    pub max_diff: Option<f64>,
    /// Splitting the data and writing the site bundles.
    pub prep_secs: f64,
    /// Sites started, connected, authenticated and loaded their data.
    pub launch_secs: f64,
    /// The algorithm's rounds: local steps, transfer, aggregation.
    pub rounds_secs: f64,
    /// launch + rounds: what a federated run costs once the bundles exist.
    pub federated_secs: f64,
    /// The centralised baseline on the pooled data, in the same run.
    pub baseline_secs: f64,
    pub rounds_over_baseline: f64,
    pub federated_over_baseline: f64,
    pub traffic: Vec<RoundTraffic>,
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub fedsim_version: &'static str,
    pub quick: bool,
    pub cores: usize,
    pub cases: Vec<CaseResult>,
}

fn phase(outcome: &RunOutcome, name: &str) -> f64 {
    outcome
        .metrics
        .phases
        .iter()
        .find(|(n, _)| n == name)
        .map_or(0.0, |(_, s)| *s)
}

fn summarise(scenario: &Scenario, outcome: &RunOutcome) -> CaseResult {
    let m = &outcome.metrics;
    let g = scenario.data.generate.as_ref();
    let launch_secs = m.connect_secs.unwrap_or(0.0)
        + m.rounds
            .iter()
            .filter(|r| r.round == 0)
            .map(|r| r.wall_secs)
            .sum::<f64>();
    let rounds_secs: f64 = m
        .rounds
        .iter()
        .filter(|r| r.round > 0)
        .map(|r| r.wall_secs)
        .sum();
    let baseline_secs = phase(outcome, "baseline");
    let federated_secs = launch_secs + rounds_secs;
    let ratio = |x: f64| {
        if baseline_secs > 0.0 {
            x / baseline_secs
        } else {
            f64::NAN
        }
    };
    CaseResult {
        scenario: scenario.scenario.name.clone(),
        rows: g.map_or(0, |g| g.rows),
        cols: g.map_or(0, |g| g.cols),
        sites: scenario.partition.sites,
        status: outcome.summary.status.to_string(),
        max_diff: outcome.summary.comparison.as_ref().map(|c| c.max_diff),
        prep_secs: phase(outcome, "prep"),
        launch_secs,
        rounds_secs,
        federated_secs,
        baseline_secs,
        rounds_over_baseline: ratio(rounds_secs),
        federated_over_baseline: ratio(federated_secs),
        traffic: m
            .rounds
            .iter()
            .map(|r| RoundTraffic {
                round: r.round,
                wall_secs: r.wall_secs,
                max_bytes_sent_per_site: r.sites.iter().map(|s| s.bytes_sent).max().unwrap_or(0),
                mean_bytes_sent_per_site: r.sites.iter().map(|s| s.bytes_sent as f64).sum::<f64>()
                    / r.sites.len().max(1) as f64,
                max_bytes_received_per_site: r
                    .sites
                    .iter()
                    .map(|s| s.bytes_received)
                    .max()
                    .unwrap_or(0),
            })
            .collect(),
    }
}

/// Run both cases under `out` and return the report (also written to `out/bench.json`).
pub fn run(out: &Path, quick: bool, agent_exe: PathBuf) -> Result<BenchReport, RunError> {
    let mut cases = Vec::new();
    for (file, text) in CASES {
        let mut scenario = Scenario::parse(text, &Path::new("resources").join(file))?;
        if quick {
            if let Some(g) = scenario.data.generate.as_mut() {
                g.rows = (g.rows / 50).max(2000);
                g.cols = (g.cols / 5).max(10);
            }
        }
        let dir = out.join(&scenario.scenario.name);
        tracing::info!(phase = "bench", scenario = %scenario.scenario.name, "running");
        let outcome = run::run(
            &scenario,
            &RunOptions {
                out: Some(dir),
                agent_exe: agent_exe.clone(),
                progress: false,
                by_hand: false,
            },
        )?;
        cases.push(summarise(&scenario, &outcome));
    }
    let report = BenchReport {
        fedsim_version: env!("CARGO_PKG_VERSION"),
        quick,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cases,
    };
    write_report(out, FILE, &report)?;
    Ok(report)
}

/// A benchmark's report, written atomically into its directory.
pub(crate) fn write_report<T: Serialize>(
    out: &Path,
    file: &str,
    report: &T,
) -> Result<(), RunError> {
    crate::sys::fsio::write_json_atomic(&out.join(file), report).map_err(|source| {
        RunError::RunDir(crate::rundir::RunDirError::Io {
            path: out.to_path_buf(),
            source,
        })
    })
}

/// The report as a table for people.
pub fn table(report: &BenchReport) -> String {
    let mut s = format!(
        "{:<14} {:>9} {:>6} {:>5} {:>8} {:>8} {:>8} {:>9} {:>10} {:>10} {:>14}\n",
        "scenario",
        "rows",
        "cols",
        "sites",
        "prep s",
        "launch s",
        "rounds s",
        "baseline s",
        "rounds/base",
        "fed/base",
        "max B/site/rnd"
    );
    for c in &report.cases {
        let max_bytes = c
            .traffic
            .iter()
            .filter(|t| t.round > 0)
            .map(|t| t.max_bytes_sent_per_site)
            .max()
            .unwrap_or(0);
        s.push_str(&format!(
            "{:<14} {:>9} {:>6} {:>5} {:>8.2} {:>8.2} {:>8.2} {:>9.2} {:>10.2} {:>10.2} {:>14}\n",
            c.scenario,
            c.rows,
            c.cols,
            c.sites,
            c.prep_secs,
            c.launch_secs,
            c.rounds_secs,
            c.baseline_secs,
            c.rounds_over_baseline,
            c.federated_over_baseline,
            max_bytes
        ));
    }
    s
}
