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
use crate::sys::proc::{pss_kib, threads_and_fds};

/// The analysis each site count runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    /// OLS of y on 10 features.
    Ols,
    /// Logistic regression of a 0/1 y on 2 features (the workload of `bench/flower_logreg.py`
    /// and `bench/flower_message.py`; the latter runs after fedsim's counts where flwr is found).
    Logistic,
    /// A GLM by IRLS: binomial with the (non-canonical) cloglog link, on the logistic data.
    Glm,
    /// Cox regression (Efron ties) on generated survival data: 2 covariates, times in days.
    Cox,
    /// The external protocol's cost: the moments example (`algorithms/examples/moments.py`, two
    /// rounds) on the same data, with the built-in OLS run in the same command for comparison.
    External,
    /// The same with `persistent = true`: one process per site and one aggregate for the whole
    /// analysis, a line of JSON per call.
    Persistent,
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
    /// Whether it runs through the external protocol (and is compared with a built-in OLS).
    fn external(self) -> bool {
        matches!(self, Workload::External | Workload::Persistent)
    }

    fn scenario(self, sites: usize, rows: usize) -> String {
        let (kind, generate) = match self {
            Workload::Ols | Workload::External | Workload::Persistent => (
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
            Workload::External | Workload::Persistent => format!(
                "kind = \"external\"\n\
                 local = [\"python3\", \"moments.py\", \"local\"]\n\
                 aggregate = [\"python3\", \"moments.py\", \"aggregate\"]\n\
                 pooled = [\"python3\", \"moments.py\", \"pooled\"]\n\
                 files = [\"moments.py\", \"fedsim_protocol.py\"]\n\
                 persistent = {}\n",
                self == Workload::Persistent
            ),
            Workload::Glm => "kind = \"glm\"\nfamily = \"binomial\"\nlink = \"cloglog\"\n".into(),
            Workload::Cox => {
                "kind = \"cox\"\ntime = \"time\"\nevent = \"event\"\nties = \"efron\"\n".into()
            }
            _ => format!("kind = \"{kind}\"\n"),
        };
        let (name, target) = match self {
            Workload::External => ("bench-external", ""),
            Workload::Persistent => ("bench-persistent", ""),
            Workload::Cox => ("bench-cox", ""),
            _ => ("bench-sites", "target = \"y\"\n"),
        };
        format!(
            "[scenario]\nname = \"{name}-{sites}\"\nseed = 11\n\
             [data]\ngenerate = {{ {generate} }}\n{target}\
             [partition]\nkind = \"horizontal\"\nsites = {sites}\n\
             [algorithm]\n{algorithm}\
             [federation]\nconnect_timeout_secs = {connect}\nheartbeat_secs = {heartbeat}\n",
            connect = 30.0 + sites as f64 * 0.1,
            // Liveness costs two frames per site and interval, each waking a process: at ten
            // thousand sites and 1 s that alone is 20 000 wake-ups a second on this machine.
            heartbeat = (sites as f64 / 1000.0).clamp(1.0, 10.0),
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
    /// From the start of the run to the end of its first round (plan, prep, start, connect,
    /// enrolment, data loading, round 1).
    pub first_round_secs: f64,
    /// Peak over the run of the summed PSS of the controller and every agent.
    pub total_pss_mib: f64,
    /// The controller's own peak PSS, sampled, and its peak RSS (VmHWM).
    pub controller_pss_mib: f64,
    /// Peak over the run of the summed PSS of every agent.
    pub agents_pss_mib: f64,
    /// The controller's most threads and descriptors over the run, per site, and an agent's on
    /// average when the agents had the most threads.
    pub controller_threads_per_site: f64,
    pub controller_fds_per_site: f64,
    pub agent_threads: f64,
    pub agent_fds: f64,
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
    /// Workload "logistic": the same counts, rows and rounds through Flower's Message API, run
    /// by the same command, and its figures over fedsim's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flower: Option<super::flower::FlowerVsFedsim>,
}

#[derive(Debug, Serialize)]
pub struct SitesReport {
    pub fedsim_version: &'static str,
    pub workload: Workload,
    pub rows: usize,
    pub cores: usize,
    pub cases: Vec<SitesCase>,
    /// Workload "logistic": whether Flower ran, was skipped (no flwr, `--no-flower`) or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flower: Option<super::flower::Flower>,
}

/// What the sampler saw at its peaks.
#[derive(Debug, Default, Clone, Copy)]
struct Peaks {
    /// KiB: the controller and the agents together, the controller, the agents.
    total: u64,
    controller: u64,
    agents: u64,
    /// The controller's most threads and descriptors; at the sample with the most agent
    /// threads, how many agents were alive, and their threads and descriptors together.
    alive: u64,
    controller_threads: u64,
    controller_fds: u64,
    agent_threads: u64,
    agent_fds: u64,
}

/// Peak memory, threads and descriptors of the controller and its agents, sampled on a thread
/// while a run goes.
struct Sampler {
    stop: Arc<AtomicBool>,
    peaks: Arc<Mutex<Peaks>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(every: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peaks = Arc::new(Mutex::new(Peaks::default()));
        let (s, p) = (stop.clone(), peaks.clone());
        let thread = std::thread::spawn(move || {
            let me = std::process::id();
            while !s.load(Ordering::Relaxed) {
                let began = Instant::now();
                let own = pss_kib(me).unwrap_or(0);
                let agents = crate::sys::children::tracked();
                let pss: u64 = agents.iter().copied().filter_map(pss_kib).sum();
                let counts: Vec<(u64, u64)> =
                    agents.iter().copied().filter_map(threads_and_fds).collect();
                let (threads, fds) = threads_and_fds(me).unwrap_or((0, 0));
                if let Ok(mut p) = p.lock() {
                    p.total = p.total.max(own + pss);
                    p.controller = p.controller.max(own);
                    p.agents = p.agents.max(pss);
                    p.controller_threads = p.controller_threads.max(threads);
                    p.controller_fds = p.controller_fds.max(fds);
                    let agent_threads: u64 = counts.iter().map(|c| c.0).sum();
                    if agent_threads > p.agent_threads {
                        p.alive = counts.len() as u64;
                        p.agent_threads = agent_threads;
                        p.agent_fds = counts.iter().map(|c| c.1).sum();
                    }
                }
                // Reading thousands of smaps walks their page tables: at 1000 sites a sample
                // took a fifth of the run's CPU, slowing what it measured. A sample may use at
                // most a fifth of one core.
                std::thread::sleep(every.max(began.elapsed() * 4));
            }
        });
        Sampler {
            stop,
            peaks,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Peaks {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peaks.lock().map(|p| *p).unwrap_or_default()
    }
}

/// Seconds from `start` to the end of the first round, from the run's own log (the
/// coordinator's `round_aggregated` milestone of round 1).
fn first_round_secs(log: &Path, start: chrono::DateTime<chrono::Utc>) -> Option<f64> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        if v.get("milestone").and_then(|m| m.as_str()) != Some("round_aggregated")
            || v.get("round").and_then(|r| r.as_u64()) != Some(1)
        {
            return None;
        }
        let at = chrono::DateTime::parse_from_rfc3339(v.get("timestamp")?.as_str()?).ok()?;
        Some((at.with_timezone(&chrono::Utc) - start).as_seconds_f64())
    })
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
        Workload::Persistent => "persistent-",
        _ => "",
    };
    let scenario = Scenario::parse(
        &workload.scenario(n, rows),
        &out.join(format!("sites-{tag}{n}.toml")),
    )?;
    tracing::info!(phase = "bench", sites = n, "running");
    let sampler = Sampler::start(Duration::from_millis(50));
    let started = Instant::now();
    let wall = chrono::Utc::now();
    let dir = out.join(format!("sites-{tag}{n}"));
    let outcome = run::run(
        &scenario,
        &RunOptions {
            out: Some(dir.clone()),
            agent_exe: agent_exe.to_path_buf(),
            progress: false,
            by_hand: false,
        },
    );
    let run_secs = started.elapsed().as_secs_f64();
    let peaks = sampler.finish();
    let per = |count: u64, of: u64| count as f64 / of.max(1) as f64;
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
        first_round_secs: first_round_secs(&dir.join("logs/controller.jsonl"), wall)
            .unwrap_or(f64::NAN),
        total_pss_mib: peaks.total as f64 / MIB,
        controller_pss_mib: peaks.controller as f64 / MIB,
        agents_pss_mib: peaks.agents as f64 / MIB,
        controller_threads_per_site: per(peaks.controller_threads, n as u64),
        controller_fds_per_site: per(peaks.controller_fds, n as u64),
        agent_threads: per(peaks.agent_threads, peaks.alive),
        agent_fds: per(peaks.agent_fds, peaks.alive),
        controller_peak_rss_mib: m.controller_peak_rss_kib as f64 / MIB,
        largest_site_peak_rss_mib: m.sites_peak_rss_kib.values().copied().max().unwrap_or(0) as f64
            / MIB,
        centralised_secs: centralised,
        round_to_centralised: mean_round / centralised.max(1e-9),
        builtin_mean_round_secs: None,
        round_ratio_to_builtin: None,
        flower: None,
    })
}

/// Run the workload once per site count under `out`; the report also goes to `out/sites.json`.
/// With `flower` and the logistic workload, Flower runs the same counts afterwards
/// ([`super::flower`]).
pub fn run(
    out: &Path,
    counts: &[usize],
    workload: Workload,
    rows: usize,
    agent_exe: &Path,
    flower: bool,
) -> Result<SitesReport, RunError> {
    let mut cases = Vec::new();
    if workload.external() {
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
        if workload.external() {
            // The same sites and rows through a built-in algorithm, in this command.
            let builtin = one(out, n, Workload::Ols, rows, agent_exe)?;
            case.builtin_mean_round_secs = Some(builtin.mean_round_secs);
            case.round_ratio_to_builtin =
                Some(case.mean_round_secs / builtin.mean_round_secs.max(1e-9));
        }
        cases.push(case);
        crate::sys::cancel::check().map_err(|_| RunError::Cancelled)?;
    }
    let flower = match (workload, flower) {
        (Workload::Logistic, true) => {
            Some(super::flower::compare(out, &mut cases, rows).map_err(|_| RunError::Cancelled)?)
        }
        (Workload::Logistic, false) => Some(super::flower::Flower::Skipped {
            reason: "--no-flower".into(),
        }),
        _ => None,
    };
    let report = SitesReport {
        fedsim_version: env!("CARGO_PKG_VERSION"),
        workload,
        rows,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cases,
        flower,
    };
    super::write_report(out, FILE, &report)?;
    Ok(report)
}

/// The report as a table for people.
pub fn table(r: &SitesReport) -> String {
    let mut s = format!(
        "{:>6} {:>10} {:>8} {:>9} {:>7} {:>10} {:>9} {:>9} {:>9} {:>10} {:>9} {:>9} {:>11} {:>11}\n",
        "sites",
        "status",
        "run s",
        "1st rnd s",
        "rounds",
        "mean rnd s",
        "max rnd s",
        "pooled s",
        "rnd/pool",
        "total MiB",
        "ctrl MiB",
        "site KiB",
        "thr ctrl/ag",
        "fds ctrl/ag"
    );
    for c in &r.cases {
        if let (Some(b), Some(x)) = (c.builtin_mean_round_secs, c.round_ratio_to_builtin) {
            s.push_str(&format!(
                "{:>6} external protocol{}: mean round {:.4} s, built-in OLS {:.4} s on the same sites: x{x:.1}, {:.1} ms more a round\n",
                c.sites,
                if r.workload == Workload::Persistent { " (persistent)" } else { "" },
                c.mean_round_secs,
                b,
                (c.mean_round_secs - b) * 1e3
            ));
        }
        s.push_str(&format!(
            "{:>6} {:>10} {:>8.2} {:>9.2} {:>7} {:>10.3} {:>9.3} {:>9.4} {:>9.3} {:>10.0} {:>9.0} {:>9.0} {:>11} {:>11}\n",
            c.sites,
            c.status,
            c.run_secs,
            c.first_round_secs,
            c.rounds,
            c.mean_round_secs,
            c.max_round_secs,
            c.centralised_secs,
            c.round_to_centralised,
            c.total_pss_mib,
            c.controller_pss_mib,
            c.agents_pss_mib * MIB / c.sites.max(1) as f64,
            format!("{:.1}/{:.1}", c.controller_threads_per_site, c.agent_threads),
            format!("{:.1}/{:.1}", c.controller_fds_per_site, c.agent_fds),
        ));
    }
    s.push_str("(site KiB: the agents' summed PSS per site; thr and fds: the controller's per site / one agent's)\n");
    if let Some(f) = &r.flower {
        s.push_str(&super::flower::table(f, &r.cases));
    }
    s
}
