//! `fedsim bench --sites 10,100,1000`: how a run scales in sites on one machine. The same analysis
//! (OLS or logistic regression of 20 000 generated rows) runs once per site count, each site its
//! own agent process; for each count it reports the whole run, the enrolment (start, connect,
//! portal, data loading), the rounds, and the memory of the controller and every agent together,
//! sampled while the run goes.

/// What `fedsim bench --sites` writes into its folder.
pub const FILE: &str = "sites.json";

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::run::{self, RunError, RunOptions};
use crate::scenario::Scenario;
use crate::sys::proc::pss_kib;

/// The analysis each site count runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    /// OLS of y on 10 features.
    Ols,
    /// Logistic regression of a 0/1 y on 2 features (the workload of `bench/flower_logreg.py`).
    Logistic,
    /// A GLM by IRLS: binomial with the (non-canonical) cloglog link, on the logistic data.
    Glm,
    /// Cox regression (Efron ties) on generated survival data: 2 covariates, times in days.
    Cox,
    /// The external protocol's cost: the moments example (`algorithms/examples/moments.py`, two
    /// rounds) on the same data, with the built-in OLS run in the same command for comparison.
    External,
}

/// The moments example, carried in the binary so the bench needs no checkout.
const MOMENTS: [(&str, &str); 2] = [
    (
        "moments.py",
        include_str!("../../../algorithms/examples/moments.py"),
    ),
    (
        "fedsim_protocol.py",
        include_str!("../../../algorithms/examples/fedsim_protocol.py"),
    ),
];

impl Workload {
    fn scenario(self, sites: usize, rows: usize) -> String {
        let (kind, generate) = match self {
            Workload::Ols | Workload::External => (
                "linear_regression",
                format!("kind = \"linear\", rows = {rows}, cols = 10, noise = 1.0"),
            ),
            Workload::Logistic | Workload::Glm => (
                "logistic_regression",
                format!("kind = \"logistic\", rows = {rows}, cols = 2"),
            ),
            Workload::Cox => (
                "cox",
                format!("kind = \"survival\", rows = {rows}, cols = 2"),
            ),
        };
        let algorithm = match self {
            Workload::External => "kind = \"external\"\n\
                 local = [\"python3\", \"moments.py\", \"local\"]\n\
                 aggregate = [\"python3\", \"moments.py\", \"aggregate\"]\n\
                 pooled = [\"python3\", \"moments.py\", \"pooled\"]\n\
                 files = [\"moments.py\", \"fedsim_protocol.py\"]\n"
                .to_string(),
            Workload::Glm => "kind = \"glm\"\nfamily = \"binomial\"\nlink = \"cloglog\"\n".into(),
            Workload::Cox => {
                "kind = \"cox\"\ntime = \"time\"\nevent = \"event\"\nties = \"efron\"\n".into()
            }
            _ => format!("kind = \"{kind}\"\n"),
        };
        let (name, target) = match self {
            Workload::External => ("bench-external", ""),
            Workload::Cox => ("bench-cox", ""),
            _ => ("bench-sites", "target = \"y\"\n"),
        };
        format!(
            "[scenario]\nname = \"{name}-{sites}\"\nseed = 11\n\
             [data]\ngenerate = {{ {generate} }}\n{target}\
             [partition]\nkind = \"horizontal\"\nsites = {sites}\n\
             [algorithm]\n{algorithm}\
             [federation]\nconnect_timeout_secs = {connect}\n",
            connect = 30.0 + sites as f64 * 0.1,
        )
    }
}

#[derive(Debug, Serialize)]
pub struct SitesCase {
    pub sites: usize,
    pub status: String,
    /// The whole `run`, plan to summary.
    pub run_secs: f64,
    /// Agents started, connected and authenticated, the portal enrolment, data loaded: the
    /// federate phase less its rounds.
    pub enrol_secs: f64,
    pub rounds: usize,
    pub mean_round_secs: f64,
    pub max_round_secs: f64,
    /// Peak over the run of the summed PSS of the controller and every agent.
    pub total_pss_mib: f64,
    /// The controller's own peak PSS, sampled, and its peak RSS (VmHWM).
    pub controller_pss_mib: f64,
    pub controller_peak_rss_mib: f64,
    /// The largest peak RSS an agent reported (its own VmHWM).
    pub largest_site_peak_rss_mib: f64,
    /// The centralised fit on the pooled rows (the baseline phase), and a mean round over it:
    /// what one federated round costs against fitting the pooled data outright.
    pub centralised_secs: f64,
    pub round_to_centralised: f64,
    /// Workload "external": the built-in OLS's mean round on the same data and sites, run in
    /// the same command, and the external mean round over it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub builtin_mean_round_secs: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub round_ratio_to_builtin: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct SitesReport {
    pub fedsim_version: &'static str,
    pub workload: Workload,
    pub rows: usize,
    pub cores: usize,
    pub cases: Vec<SitesCase>,
}

/// Peak memory of the controller and its agents, sampled on a thread while a run goes.
struct Sampler {
    stop: Arc<AtomicBool>,
    peaks: Arc<Mutex<(u64, u64)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(every: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peaks = Arc::new(Mutex::new((0u64, 0u64)));
        let (s, p) = (stop.clone(), peaks.clone());
        let thread = std::thread::spawn(move || {
            let me = std::process::id();
            while !s.load(Ordering::Relaxed) {
                let own = pss_kib(me).unwrap_or(0);
                let agents: u64 = crate::sys::children::tracked()
                    .into_iter()
                    .filter_map(pss_kib)
                    .sum();
                if let Ok(mut p) = p.lock() {
                    p.0 = p.0.max(own + agents);
                    p.1 = p.1.max(own);
                }
                std::thread::sleep(every);
            }
        });
        Sampler {
            stop,
            peaks,
            thread: Some(thread),
        }
    }

    /// (total, controller) peak PSS in KiB.
    fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peaks.lock().map(|p| *p).unwrap_or((0, 0))
    }
}

const MIB: f64 = 1024.0;

/// One run of the workload with `n` sites.
fn one(
    out: &Path,
    n: usize,
    workload: Workload,
    rows: usize,
    agent_exe: &Path,
) -> Result<SitesCase, RunError> {
    let tag = match workload {
        Workload::External => "external-",
        _ => "",
    };
    let scenario = Scenario::parse(
        &workload.scenario(n, rows),
        &out.join(format!("sites-{tag}{n}.toml")),
    )?;
    tracing::info!(phase = "bench", sites = n, "running");
    let sampler = Sampler::start(Duration::from_millis(50));
    let started = Instant::now();
    let outcome = run::run(
        &scenario,
        &RunOptions {
            out: Some(out.join(format!("sites-{tag}{n}"))),
            agent_exe: agent_exe.to_path_buf(),
            progress: false,
            by_hand: false,
        },
    );
    let run_secs = started.elapsed().as_secs_f64();
    let (total, controller) = sampler.finish();
    let outcome = outcome?;
    let m = &outcome.metrics;
    let rounds: Vec<f64> = m
        .rounds
        .iter()
        .filter(|r| r.round > 0)
        .map(|r| r.wall_secs)
        .collect();
    let federate = m.phase_secs("federate").unwrap_or(0.0);
    let centralised = m.phase_secs("baseline").unwrap_or(0.0);
    let mean_round = rounds.iter().sum::<f64>() / rounds.len().max(1) as f64;
    Ok(SitesCase {
        sites: n,
        status: outcome.summary.status.to_string(),
        run_secs,
        enrol_secs: federate - rounds.iter().sum::<f64>(),
        rounds: rounds.len(),
        mean_round_secs: mean_round,
        max_round_secs: rounds.iter().copied().fold(0.0, f64::max),
        total_pss_mib: total as f64 / MIB,
        controller_pss_mib: controller as f64 / MIB,
        controller_peak_rss_mib: m.controller_peak_rss_kib as f64 / MIB,
        largest_site_peak_rss_mib: m.sites_peak_rss_kib.values().copied().max().unwrap_or(0) as f64
            / MIB,
        centralised_secs: centralised,
        round_to_centralised: mean_round / centralised.max(1e-9),
        builtin_mean_round_secs: None,
        round_ratio_to_builtin: None,
    })
}

/// Run the workload once per site count under `out`; the report also goes to `out/sites.json`.
pub fn run(
    out: &Path,
    counts: &[usize],
    workload: Workload,
    rows: usize,
    agent_exe: &Path,
) -> Result<SitesReport, RunError> {
    let mut cases = Vec::new();
    if workload == Workload::External {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| RunError::RunDir(crate::rundir::RunDirError::Io { path, source })
        };
        std::fs::create_dir_all(out).map_err(io(out))?;
        for (name, text) in MOMENTS {
            let path = out.join(name);
            crate::sys::fsio::write_atomic(&path, text.as_bytes()).map_err(io(&path))?;
        }
    }
    for &n in counts {
        let mut case = one(out, n, workload, rows, agent_exe)?;
        if workload == Workload::External {
            // The same sites and rows through a built-in algorithm, in this command.
            let builtin = one(out, n, Workload::Ols, rows, agent_exe)?;
            case.builtin_mean_round_secs = Some(builtin.mean_round_secs);
            case.round_ratio_to_builtin =
                Some(case.mean_round_secs / builtin.mean_round_secs.max(1e-9));
        }
        cases.push(case);
        crate::sys::cancel::check().map_err(|_| RunError::Cancelled)?;
    }
    let report = SitesReport {
        fedsim_version: env!("CARGO_PKG_VERSION"),
        workload,
        rows,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cases,
    };
    super::write_report(out, FILE, &report)?;
    Ok(report)
}

/// The report as a table for people.
pub fn table(r: &SitesReport) -> String {
    let mut s = format!(
        "{:>6} {:>10} {:>9} {:>9} {:>7} {:>11} {:>10} {:>9} {:>9} {:>12} {:>13} {:>11}\n",
        "sites",
        "status",
        "run s",
        "enrol s",
        "rounds",
        "mean rnd s",
        "max rnd s",
        "pooled s",
        "rnd/pool",
        "total MiB",
        "controller MiB",
        "site MiB"
    );
    for c in &r.cases {
        if let (Some(b), Some(x)) = (c.builtin_mean_round_secs, c.round_ratio_to_builtin) {
            s.push_str(&format!(
                "{:>6} external protocol: mean round {:.3} s, built-in OLS {:.3} s on the same sites: x{x:.1}\n",
                c.sites, c.mean_round_secs, b
            ));
        }
        s.push_str(&format!(
            "{:>6} {:>10} {:>9.2} {:>9.2} {:>7} {:>11.3} {:>10.3} {:>9.4} {:>9.3} {:>12.0} {:>13.0} {:>11.1}\n",
            c.sites,
            c.status,
            c.run_secs,
            c.enrol_secs,
            c.rounds,
            c.mean_round_secs,
            c.max_round_secs,
            c.centralised_secs,
            c.round_to_centralised,
            c.total_pss_mib,
            c.controller_pss_mib,
            c.largest_site_peak_rss_mib
        ));
    }
    s
}
