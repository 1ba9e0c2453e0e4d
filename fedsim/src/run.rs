//! The whole job: plan -> prep -> launch -> federate -> collect -> baseline -> compare -> summary.
//!
//! Bad input is found before anything is written. Once the run directory exists, every outcome
//! ends in a truthful `summary.json` (written atomically), and no agent outlives the run.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::algorithms::Estimates;
use crate::compare::{self, Comparison, ReferenceError};
use crate::federation::coordinator::{self, FedError, JoinedSite, RoundMetrics, SiteAuth};
use crate::fleet::local::LocalFleet;
use crate::fleet::remote::SshFleet;
use crate::fleet::{vagrant, Fleet, FleetError, SiteExit};
use crate::prep::{self, Plan, PlanError, PrepError};
use crate::scenario::{FaultKind, FaultSpec, OnDropout, Provider, Scenario, ScenarioError};
use crate::{baseline, logs};

/// Set by the Ctrl-C handler; the coordinator checks it while waiting.
pub static CANCEL: AtomicBool = AtomicBool::new(false);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("run directory {}: {source}", path.display())]
    RunDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Prep(#[from] PrepError),
    #[error(transparent)]
    Fleet(#[from] FleetError),
    #[error(transparent)]
    Enrol(#[from] crate::enrol::EnrolError),
    #[error("coordinator cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

impl RunError {
    /// 2 for input the user must fix; 1 for a run that could not be carried out.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Scenario(_) | RunError::Plan(_) | RunError::Reference(_) => 2,
            RunError::Enrol(crate::enrol::EnrolError::Script(_)) => 2,
            RunError::Prep(PrepError::Credentials { .. }) => 2,
            _ => 1,
        }
    }
}

pub struct RunOptions {
    /// Exact run directory; default `runs/<name>-<UTC time>/` under the working directory.
    pub out: Option<PathBuf>,
    /// The `fedsim` binary that agents run as.
    pub agent_exe: PathBuf,
    /// Progress bars on a terminal (off with --quiet).
    pub progress: bool,
    /// Serve the portal and wait for people to log in, join and start, instead of acting for them.
    pub by_hand: bool,
}

#[derive(Debug, Serialize)]
pub struct SiteSummary {
    pub name: String,
    pub rows: usize,
    pub data_sha256: String,
    /// Where the site keeps its bundle (a directory, or user@host:port/~/path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit: Option<SiteExit>,
}

#[derive(Debug, Serialize)]
pub struct FailureInfo {
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ReferenceCheck {
    pub source: PathBuf,
    #[serde(flatten)]
    pub comparison: Comparison,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub fedsim_version: &'static str,
    pub scenario: String,
    pub run_id: String,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<FailureInfo>,
    pub algorithm: &'static str,
    pub sites: Vec<SiteSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub results: Option<Estimates>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Estimates>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Comparison>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<ReferenceCheck>,
    /// Sites the run went on without (on_dropout = "continue"): the status is then "degraded".
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lost_sites: Vec<coordinator::LostSite>,
}

#[derive(Debug, Serialize, Default)]
pub struct Metrics {
    /// Wall seconds per phase, in pipeline order.
    pub phases: Vec<(String, f64)>,
    /// Seconds until every site had connected and authenticated.
    pub connect_secs: Option<f64>,
    /// Round 0 is the sites loading their data; then the algorithm's rounds.
    pub rounds: Vec<RoundMetrics>,
    pub controller_cpu_secs: f64,
    pub controller_peak_rss_kib: i64,
    /// Largest peak RSS among this machine's agent processes (local provider).
    pub agents_peak_rss_kib: i64,
    /// Every site's peak RSS as its agent reported it (any provider).
    pub sites_peak_rss_kib: std::collections::BTreeMap<String, u64>,
    /// The portal: each account's steps (API calls or GUI steps) and their times.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub portal: Option<crate::participants::DriveReport>,
}

pub struct RunOutcome {
    pub dir: PathBuf,
    pub summary: Summary,
    pub metrics: Metrics,
    /// The sites could not be provisioned as the scenario describes them (unreachable host,
    /// unknown or changed host key, failed login): bad input, exit code 2.
    pub input_error: bool,
}

impl RunOutcome {
    pub fn succeeded(&self) -> bool {
        self.summary.status == "succeeded"
    }
}

/// `runs/<name>-<UTC time>`, made unique if two runs start within the same second.
fn fresh_run_dir(name: &str) -> Result<PathBuf, RunError> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let root = PathBuf::from("runs");
    std::fs::create_dir_all(&root).map_err(|source| RunError::RunDir {
        path: root.clone(),
        source,
    })?;
    for i in 1.. {
        let dir = root.join(if i == 1 {
            format!("{name}-{stamp}")
        } else {
            format!("{name}-{stamp}-{i}")
        });
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(RunError::RunDir { path: dir, source }),
        }
    }
    unreachable!()
}

fn make_run_dir(out: Option<&Path>, name: &str) -> Result<PathBuf, RunError> {
    let dir = match out {
        Some(d) => {
            if d.exists()
                && std::fs::read_dir(d)
                    .map(|mut r| r.next().is_some())
                    .unwrap_or(true)
            {
                return Err(RunError::RunDir {
                    path: d.to_path_buf(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "exists and is not empty",
                    ),
                });
            }
            std::fs::create_dir_all(d).map_err(|source| RunError::RunDir {
                path: d.to_path_buf(),
                source,
            })?;
            d.to_path_buf()
        }
        None => fresh_run_dir(name)?,
    };
    std::fs::create_dir_all(dir.join("logs")).map_err(|source| RunError::RunDir {
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}

/// Write JSON via a temporary file and a rename, so a reader never sees half a file.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Validate everything that can be checked without writing: scenario, data, columns, partition,
/// reference. Returns the plan.
pub fn plan(scenario: &Scenario) -> Result<Plan, RunError> {
    let plan = Plan::make(scenario)?;
    if scenario.gui.enabled {
        crate::gui::script::Script::load(scenario.gui.script.as_deref())?;
    }
    if let Some(r) = &scenario.compare.reference {
        compare::find_reference(
            r,
            &data_file_name(&plan),
            reference_kind(scenario),
            plan.config.scale,
        )?;
    }
    Ok(plan)
}

fn data_file_name(plan: &Plan) -> String {
    plan.data_path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn reference_kind(s: &Scenario) -> &'static str {
    match s.algorithm.kind {
        crate::scenario::AlgorithmKind::LinearRegression => "ols",
        crate::scenario::AlgorithmKind::LogisticRegression => "logit",
        crate::scenario::AlgorithmKind::Svd => "pca",
    }
}

/// `fedsim prep`: plan and write the site bundles, nothing else.
pub fn prep_only(
    scenario: &Scenario,
    out: Option<&Path>,
    opts: &RunOptions,
) -> Result<(PathBuf, Vec<prep::Bundle>), RunError> {
    let plan = plan(scenario)?;
    let tokens = site_tokens(scenario)?;
    let dir = make_run_dir(out, &scenario.scenario.name)?;
    let mut bundles = prep::make_bundles(
        &plan,
        &scenario.fleet.coordinator,
        &tokens,
        scenario.federation.secure_aggregation,
    )?;
    write_plan(&dir, scenario, &plan, &bundles)?;
    let mut fleet = fleet_for(scenario, &dir, opts)?;
    fleet.install(&mut bundles)?;
    Ok((dir, bundles))
}

/// Credentials the scenario provides per site (`[[sites]] env`), else None for fresh ones.
fn site_tokens(scenario: &Scenario) -> Result<Vec<Option<prep::GivenCredentials>>, RunError> {
    let mut tokens = vec![None; scenario.partition.sites];
    for (i, site) in scenario.sites.iter().enumerate() {
        if let Some(env) = &site.env {
            tokens[i] = Some(prep::token_from_env_file(&site.name, env)?);
        }
    }
    Ok(tokens)
}

/// SSH calls (connect, each command) give up after this long.
const SSH_TIMEOUT: Duration = Duration::from_secs(15);

/// The fleet the scenario asks for.
fn fleet_for(
    scenario: &Scenario,
    dir: &Path,
    opts: &RunOptions,
) -> Result<Box<dyn Fleet>, RunError> {
    let connect = Duration::from_secs_f64(scenario.federation.connect_timeout_secs);
    let name = &scenario.scenario.name;
    Ok(match scenario.fleet.provider {
        Provider::Local => Box::new(LocalFleet::new(
            opts.agent_exe.clone(),
            dir.join("sites"),
            connect,
        )),
        Provider::Ssh => Box::new(
            SshFleet::new(
                scenario.sites.clone(),
                name,
                opts.agent_exe.clone(),
                SSH_TIMEOUT,
                opts.progress,
            )
            .with_tunnel(scenario.fleet.tunnel),
        ),
        Provider::Vagrant => {
            let vdir = scenario
                .fleet
                .vagrant_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("."));
            let specs = vagrant::sites(&vdir, scenario.partition.sites, &dir.join("known_hosts"))
                .map_err(|e| {
                RunError::Fleet(FleetError::Install {
                    site: "vagrant".into(),
                    reason: e.to_string(),
                })
            })?;
            Box::new(
                SshFleet::new(
                    specs,
                    name,
                    opts.agent_exe.clone(),
                    SSH_TIMEOUT,
                    opts.progress,
                )
                .with_tunnel(scenario.fleet.tunnel),
            )
        }
    })
}

fn write_plan(
    dir: &Path,
    scenario: &Scenario,
    plan: &Plan,
    bundles: &[prep::Bundle],
) -> Result<(), RunError> {
    let io = |source| RunError::RunDir {
        path: dir.to_path_buf(),
        source,
    };
    let resolved = toml::to_string_pretty(scenario).map_err(|e| io(std::io::Error::other(e)))?;
    std::fs::write(dir.join("scenario.toml"), resolved).map_err(io)?;
    let sites: Vec<_> = plan
        .sites
        .iter()
        .zip(bundles)
        .map(|(p, b)| {
            let mut site =
                serde_json::json!({"name": p.name, "rows": b.rows, "data_sha256": b.data_sha256});
            match (&p.source_rows, &p.columns) {
                (Some(rows), _) => site["source_rows"] = serde_json::json!(rows),
                (None, Some(cols)) => site["columns"] = serde_json::json!(cols),
                (None, None) => {}
            }
            site
        })
        .collect();
    let doc = serde_json::json!({
        "scenario": scenario.scenario.name,
        "seed": scenario.scenario.seed,
        "data": plan.data_path,
        "algorithm": plan.config,
        "partition": scenario.partition,
        "sites": sites,
    });
    write_json_atomic(&dir.join("plan.json"), &doc).map_err(io)
}

fn rusage(who: i32) -> (f64, i64) {
    // SAFETY: getrusage only writes the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut u) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    (secs(u.ru_utime) + secs(u.ru_stime), u.ru_maxrss)
}

/// `fedsim run`.
pub fn run(scenario: &Scenario, opts: &RunOptions) -> Result<RunOutcome, RunError> {
    let mut phases: Vec<(String, f64)> = Vec::new();
    let mut clock = Instant::now();
    let mut lap = |name: &str, phases: &mut Vec<(String, f64)>| {
        phases.push((name.to_string(), clock.elapsed().as_secs_f64()));
        clock = Instant::now();
    };

    let progress = crate::progress::Progress::new(crate::progress::wanted(opts.progress));
    progress.phase("plan: checking the scenario and data");
    let plan = plan(scenario)?;
    tracing::info!(
        phase = "plan",
        sites = plan.sites.len(),
        rows = plan.table.rows(),
        "planned"
    );
    lap("plan", &mut phases);

    let listener =
        TcpListener::bind(&scenario.fleet.coordinator).map_err(|source| RunError::Listen {
            addr: scenario.fleet.coordinator.clone(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| RunError::Listen {
        addr: scenario.fleet.coordinator.clone(),
        source,
    })?;
    let dir = make_run_dir(opts.out.as_deref(), &scenario.scenario.name)?;
    let _ = logs::attach(&dir.join("logs/controller.jsonl"));
    let run_id = dir
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let span = tracing::info_span!("run", run_id = %run_id);
    let _enter = span.enter();
    tracing::info!(phase = "prep", dir = %dir.display(), "run directory created");

    let tokens = site_tokens(scenario)?;
    let mut bundles = prep::make_bundles(
        &plan,
        &addr.to_string(),
        &tokens,
        scenario.federation.secure_aggregation,
    )?;
    write_plan(&dir, scenario, &plan, &bundles)?;
    lap("prep", &mut phases);

    let site_keys: Vec<SiteAuth> = bundles
        .iter()
        .map(|b| SiteAuth {
            name: b.name.clone(),
            key: b.key,
            config: b.config.clone(),
            delays: scenario
                .faults
                .iter()
                .filter(|f| f.site == b.name && f.kind == FaultKind::Slow)
                .map(|f| (f.round, f.delay_secs.unwrap_or(0.0)))
                .collect(),
        })
        .collect();
    let algorithm = match &plan.config.target {
        Some(t) => format!(
            "{} of {t} on {} features",
            plan.config.kind.as_str(),
            plan.config.features.len()
        ),
        None => format!(
            "{} of {} features",
            plan.config.kind.as_str(),
            plan.config.features.len()
        ),
    };
    let mut enrolment = crate::enrol::Enrolment::start(crate::enrol::Setup {
        scenario,
        algorithm: &algorithm,
        bundles: &bundles,
        run_dir: &dir,
        project: &scenario.scenario.name,
        by_hand: opts.by_hand,
    })?;
    // Test hook: record every frame the coordinator receives (to show what it can and cannot see).
    let recording = std::env::var_os("FEDSIM_RECORD_FRAMES")
        .and_then(|p| std::fs::File::create(p).ok())
        .map(std::sync::Mutex::new);
    let settings = coordinator::Settings {
        run_id: run_id.clone(),
        connect_timeout: Duration::from_secs_f64(scenario.federation.connect_timeout_secs),
        round_timeout: Duration::from_secs_f64(scenario.federation.round_timeout_secs),
        cancel: &CANCEL,
        progress: Some(&progress),
        heartbeat: Duration::from_secs_f64(scenario.federation.heartbeat_secs),
        secure: scenario.federation.secure_aggregation,
        record: recording.as_ref(),
        continue_with: (scenario.federation.on_dropout == OnDropout::Continue)
            .then_some(scenario.federation.min_sites),
        portal: Some(&enrolment.board),
        start_timeout: Duration::from_secs_f64(scenario.gui.start_timeout_secs),
    };
    let mut fleet = fleet_for(scenario, &dir, opts)?;
    tracing::info!(phase = "provision", sites = bundles.len(), provider = ?scenario.fleet.provider, "installing the sites");
    progress.phase(format!("provision: installing {} sites", bundles.len()));
    progress.sites(&bundles.iter().map(|b| b.name.clone()).collect::<Vec<_>>());
    let installed = fleet.install(&mut bundles);
    let input_error = installed.is_err();
    lap("provision", &mut phases);
    let federated = match installed.and_then(|()| fleet.start(addr)) {
        Ok(()) => {
            tracing::info!(phase = "launch", sites = bundles.len(), %addr, "agents started; coordinating");
            progress.phase(format!(
                "federate: {} on {} sites (portal {})",
                plan.config.kind.as_str(),
                bundles.len(),
                enrolment.url
            ));
            let mut watch = FaultyFleet {
                fleet: fleet.as_mut(),
                faults: &scenario.faults,
            };
            coordinator::run(&listener, &site_keys, &plan.config, &settings, &mut watch)
                .map_err(Failure::from)
        }
        Err(e) => Err(Failure {
            site: Some(e.site().to_string()),
            message: e.to_string(),
            cancelled: false,
        }),
    };
    drop(listener);
    let pids = fleet.pids();
    let exits = fleet.stop();
    lap("federate", &mut phases);

    // Everyone at the portal sees the end and downloads the results; each download must be the
    // coordinator's results, byte for byte.
    let file = match &federated {
        Ok(o) => Ok(results_file(scenario, &run_id, &o.estimates)),
        Err(f) => Err(f.message.clone()),
    };
    let driven = enrolment.finish(file.clone(), Duration::from_secs(120));
    let portal_report = driven.as_ref().ok().cloned();
    let federated = match (federated, driven, file) {
        (Ok(o), Ok(report), Ok(bytes)) => crate::participants::check_downloads(&report, &bytes)
            .map(|()| o)
            .map_err(|message| Failure {
                message,
                site: None,
                cancelled: false,
            }),
        (Ok(_), Err(e), _) => Err(Failure {
            site: e
                .account()
                .filter(|a| bundles.iter().any(|b| b.name == *a))
                .map(str::to_string),
            message: e.to_string(),
            cancelled: false,
        }),
        (federated, _, _) => federated,
    };
    drop(enrolment);
    lap("results", &mut phases);

    let logs_dir = dir.join("logs");
    if let Err(e) = fleet.collect_logs(&logs_dir) {
        tracing::warn!(phase = "collect", error = %e, "log collection incomplete");
    }
    lap("collect", &mut phases);

    let mut summary = Summary {
        fedsim_version: env!("CARGO_PKG_VERSION"),
        scenario: scenario.scenario.name.clone(),
        run_id: run_id.clone(),
        status: "failed",
        error: None,
        algorithm: plan.config.kind.as_str(),
        sites: bundles
            .iter()
            .map(|b| SiteSummary {
                location: fleet.location(&b.name),
                name: b.name.clone(),
                rows: b.rows,
                data_sha256: b.data_sha256.clone(),
                pid: pids.iter().find(|(s, _)| *s == b.name).map(|(_, p)| *p),
                exit: exits.iter().find(|e| e.site == b.name).cloned(),
            })
            .collect(),
        results: None,
        baseline: None,
        comparison: None,
        reference: None,
        lost_sites: Vec::new(),
    };
    let mut rounds = Vec::new();
    let mut connect_secs = None;
    match federated {
        Ok(outcome) => {
            check_rows(&outcome.joined, &bundles);
            rounds = outcome.rounds;
            connect_secs = Some(outcome.connect_secs);
            let fed = outcome.estimates;
            let survivors: Vec<String> = outcome.joined.iter().map(|j| j.name.clone()).collect();
            summary.lost_sites = outcome.lost;
            if let Err(e) = write_vectors(&dir, &plan, &fed) {
                tracing::warn!(phase = "report", error = %e, "cannot write the component vectors");
            }
            tracing::info!(phase = "baseline", "computing the centralised baseline");
            progress.phase("baseline: the same analysis on the pooled data");
            // After a dropout, the centralised answer to compare with is the survivors' pooled data.
            let base = plan
                .pooled_of(&survivors)
                .map_err(|e| e.to_string())
                .and_then(|d| baseline::compute(&plan.config, &d).map_err(|e| e.to_string()));
            lap("baseline", &mut phases);
            match base {
                Ok(base) => {
                    // A reference describes all the data: after a dropout it no longer applies.
                    let (cmp, reference) =
                        evaluate(scenario, &plan, &fed, &base, summary.lost_sites.is_empty());
                    let failed_check = [
                        Some(("centralised baseline", &cmp)),
                        reference.as_ref().map(|r| ("reference", &r.comparison)),
                    ]
                    .into_iter()
                    .flatten()
                    .find(|(_, c)| !c.passed);
                    summary.status = if failed_check.is_none() {
                        "succeeded"
                    } else {
                        "failed"
                    };
                    summary.error = failed_check.map(|(what, c)| FailureInfo {
                        message: mismatch(what, c),
                        site: None,
                    });
                    summary.results = Some(fed);
                    summary.baseline = Some(base);
                    summary.comparison = Some(cmp);
                    summary.reference = reference;
                }
                Err(message) => {
                    summary.results = Some(fed);
                    summary.error = Some(FailureInfo {
                        message: format!("centralised baseline failed: {message}"),
                        site: None,
                    });
                }
            }
        }
        Err(f) => {
            summary.status = if f.cancelled { "cancelled" } else { "failed" };
            summary.error = Some(FailureInfo {
                message: f.message,
                site: f.site,
            });
        }
    }
    if summary.status == "succeeded" && !summary.lost_sites.is_empty() {
        summary.status = "degraded";
        let names: Vec<&str> = summary.lost_sites.iter().map(|l| l.site.as_str()).collect();
        summary.error = Some(FailureInfo {
            message: format!(
                "completed without {} (lost: {})",
                names.join(", "),
                summary
                    .lost_sites
                    .iter()
                    .map(|l| format!("{} in round {}: {}", l.site, l.round, l.cause))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            site: names.first().map(|s| s.to_string()),
        });
    }
    lap("compare", &mut phases);
    progress.finish(format!("{}: {}", scenario.scenario.name, summary.status));
    match &summary.error {
        None => tracing::info!(phase = "report", status = summary.status, "run finished"),
        Some(e) => {
            tracing::error!(phase = "report", status = summary.status, site = e.site.as_deref().unwrap_or(""), error = %e.message, "run finished")
        }
    }

    let (cpu, rss) = rusage(libc::RUSAGE_SELF);
    let (_, child_rss) = rusage(libc::RUSAGE_CHILDREN);
    let mut sites_peak_rss_kib = std::collections::BTreeMap::new();
    for site in rounds.iter().flat_map(|r| &r.sites) {
        let e = sites_peak_rss_kib.entry(site.site.clone()).or_insert(0);
        *e = site.peak_rss_kib.max(*e);
    }
    let metrics = Metrics {
        phases,
        connect_secs,
        rounds,
        controller_cpu_secs: cpu,
        controller_peak_rss_kib: rss,
        agents_peak_rss_kib: child_rss,
        sites_peak_rss_kib,
        portal: portal_report,
    };
    let io = |source| RunError::RunDir {
        path: dir.clone(),
        source,
    };
    write_json_atomic(&dir.join("metrics.json"), &metrics).map_err(io)?;
    logs::detach();
    let names: Vec<String> = bundles.iter().map(|b| b.name.clone()).collect();
    merge_logs(&logs_dir, &names).map_err(io)?;
    // summary.json last: its presence means the run directory is complete.
    write_json_atomic(&dir.join("summary.json"), &summary).map_err(io)?;
    if let Err(e) = crate::report::write(&dir) {
        tracing::warn!(phase = "report", error = %e, "report.html not written");
    }
    Ok(RunOutcome {
        dir,
        summary,
        metrics,
        input_error,
    })
}

/// The file the portal offers for download: the federated results and what they came from.
fn results_file(scenario: &Scenario, run_id: &str, est: &Estimates) -> Vec<u8> {
    let doc = serde_json::json!({
        "fedsim_version": env!("CARGO_PKG_VERSION"),
        "project": scenario.scenario.name,
        "run_id": run_id,
        "algorithm": reference_kind(scenario),
        "results": est,
    });
    serde_json::to_vec_pretty(&doc).unwrap_or_default()
}

/// Federated against the centralised baseline, and against the reference file when there is one.
fn evaluate(
    scenario: &Scenario,
    plan: &Plan,
    fed: &Estimates,
    base: &Estimates,
    all_sites: bool,
) -> (Comparison, Option<ReferenceCheck>) {
    let tol = scenario.compare.tolerance;
    let angle_tol = scenario.compare.angle_tolerance_deg;
    let cmp = compare::with_angles(compare::estimates(fed, base, tol), fed, base, angle_tol);
    let reference = scenario
        .compare
        .reference
        .as_ref()
        .filter(|_| all_sites)
        .and_then(|path| {
            let row = compare::find_reference(
                path,
                &data_file_name(plan),
                reference_kind(scenario),
                plan.config.scale,
            )
            .ok()?;
            let mut want = row.estimates();
            // A reference lists the leading singular values; compare as many as both sides have.
            let mut got = fed.clone();
            let m = got.singular_values.len().min(want.singular_values.len());
            got.singular_values.truncate(m);
            want.singular_values.truncate(m);
            Some(ReferenceCheck {
                source: path.clone(),
                comparison: compare::estimates(&got, &want, tol),
            })
        });
    (cmp, reference)
}

fn mismatch(what: &str, c: &Comparison) -> String {
    let mut m = format!(
        "federated result differs from the {what}: max relative difference {:.3e} at {} (tolerance {:.1e})",
        c.max_rel_diff, c.worst, c.tolerance
    );
    if let (Some(a), Some(t)) = (c.max_angle_deg, c.angle_tolerance_deg) {
        m.push_str(&format!(", max angle {a:.2e} deg (tolerance {t} deg)"));
    }
    m
}

/// svd: the coordinator's vectors as CSV: right singular vectors per feature (horizontal), or
/// sample-side vectors per row (vertical; the feature-side ones stay on the sites).
fn write_vectors(dir: &Path, plan: &Plan, est: &Estimates) -> Result<(), crate::data::DataError> {
    if est.vectors.is_empty() {
        return Ok(());
    }
    let pcs: Vec<String> = (1..=est.vectors.len()).map(|i| format!("pc{i}")).collect();
    if plan.config.vertical {
        let rows: Vec<String> = (1..=plan.table.rows()).map(|r| r.to_string()).collect();
        crate::data::write_labeled_csv(
            &dir.join("sample_vectors.csv"),
            "row",
            &rows,
            &pcs,
            &est.vectors,
        )
    } else {
        crate::data::write_labeled_csv(
            &dir.join("components.csv"),
            "feature",
            &plan.config.features,
            &pcs,
            &est.vectors,
        )
    }
}

/// Merge the controller's and every site's log into `logs/merged.jsonl`.
fn merge_logs(logs_dir: &Path, sites: &[String]) -> std::io::Result<usize> {
    let mut sources = vec![("controller".to_string(), logs_dir.join("controller.jsonl"))];
    sources.extend(
        sites
            .iter()
            .map(|s| (s.clone(), logs_dir.join(format!("{s}.jsonl")))),
    );
    logs::merge(&sources, &logs_dir.join("merged.jsonl"))
}

/// `fedsim logs RUN_DIR`: pull every site's log again (over SSH for remote sites) and re-merge.
pub fn logs(dir: &Path, opts: &RunOptions) -> Result<usize, RunError> {
    let scenario = Scenario::load(&dir.join("scenario.toml"))?;
    let io = |source| RunError::RunDir {
        path: dir.to_path_buf(),
        source,
    };
    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("plan.json")).map_err(io)?)
            .map_err(|e| io(std::io::Error::other(e)))?;
    let names: Vec<String> = plan["sites"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let logs_dir = dir.join("logs");
    std::fs::create_dir_all(&logs_dir).map_err(io)?;
    match scenario.fleet.provider {
        Provider::Local => {
            for n in &names {
                let src = dir.join("sites").join(n).join("agent.jsonl");
                std::fs::copy(&src, logs_dir.join(format!("{n}.jsonl"))).map_err(|e| {
                    RunError::Fleet(FleetError::Logs {
                        site: n.clone(),
                        reason: format!("{}: {e}", src.display()),
                    })
                })?;
            }
        }
        _ => {
            let mut fleet = fleet_for(&scenario, dir, opts)?;
            fleet.collect_logs(&logs_dir)?;
        }
    }
    merge_logs(&logs_dir, &names).map_err(io)
}

/// The coordinator's view of the fleet: who died, and the faults to inject as rounds start.
struct FaultyFleet<'a> {
    fleet: &'a mut dyn Fleet,
    faults: &'a [FaultSpec],
}

impl coordinator::Watch for FaultyFleet<'_> {
    fn dead_site(&mut self) -> Option<(String, String)> {
        self.fleet.dead_site()
    }

    fn round_starts(&mut self, round: u32) {
        for f in self.faults.iter().filter(|f| f.round == round) {
            let done = match f.kind {
                FaultKind::Kill => self.fleet.kill(&f.site),
                FaultKind::Cut => self.fleet.cut(&f.site),
                FaultKind::Slow | FaultKind::WrongPassword | FaultKind::WrongToken => continue,
            };
            match done {
                Ok(()) => {
                    tracing::warn!(phase = "federate", site = %f.site, round, fault = ?f.kind, "injected fault")
                }
                Err(e) => {
                    tracing::error!(phase = "federate", site = %f.site, round, error = %e, "could not inject fault")
                }
            }
        }
    }
}

/// A federation failure as the summary reports it.
struct Failure {
    message: String,
    site: Option<String>,
    cancelled: bool,
}

impl From<FedError> for Failure {
    fn from(e: FedError) -> Self {
        Failure {
            site: e.site().map(str::to_string),
            cancelled: matches!(e, FedError::Cancelled),
            message: e.to_string(),
        }
    }
}

/// The rows each agent loaded must be the rows prep gave it.
fn check_rows(joined: &[JoinedSite], bundles: &[prep::Bundle]) {
    for j in joined {
        let Some(b) = bundles.iter().find(|b| b.name == j.name) else {
            continue;
        };
        // 0: the site keeps its size to itself (secure aggregation).
        if j.rows != 0 && j.rows as usize != b.rows {
            tracing::warn!(phase = "launch", site = %j.name, loaded = j.rows, written = b.rows, "site loaded a different number of rows than prep wrote");
        }
    }
}

/// Load a scenario for a command: the error already names file, line and key.
pub fn load(path: &Path) -> Result<Scenario, RunError> {
    Ok(Scenario::load(path)?)
}
