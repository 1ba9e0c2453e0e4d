//! The whole job, one stage after the other:
//! plan -> prep -> provision -> enrol -> federate -> results -> collect -> baseline -> compare -> report.
//!
//! Everything that can be bad input is checked in [`plan`], before anything is written or
//! started. From the moment the run directory exists, every outcome (a failure, a cancel, a portal
//! that cannot start) ends in a truthful `summary.json`, and no agent, browser or remote process
//! outlives the run. Each stage takes what the one before handed over; the cancel flag is checked
//! between stages, and inside the long ones.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::algorithms::Estimates;
use crate::bundle::{self, Bundle, GivenCredentials, PrepError};
use crate::compare::{self, Against, CompareError, Comparison};
use crate::enrol::participants::DriveReport;
use crate::enrol::{Enrolment, People};
use crate::federation::coordinator::{self, Analysed, FedError, LostSite, RoundMetrics, SiteAuth};
use crate::fleet::{faults::Injector, Fleet, FleetError};
use crate::metrics::{Metrics, PhaseClock};
use crate::plan::{Plan, PlanError, Study};
use crate::progress::Progress;
use crate::reference::{self, Analysis, ReferenceError, ReferenceRow};
use crate::rundir::{PlanFile, RunDir, RunDirError};
use crate::scenario::{OnDropout, Scenario, ScenarioError};
use crate::summary::{
    AnalysisFindings, FailureInfo, Findings, ReferenceCheck, SiteSummary, Stopped, Summary,
    SummaryHead, Warning,
};
use crate::sys::cancel;
use crate::{baseline, logs};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    #[error("{0}")]
    Gui(String),
    #[error(transparent)]
    Prep(#[from] PrepError),
    #[error(transparent)]
    Fleet(#[from] FleetError),
    #[error("coordinator cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    /// `fedsim prep` of a vm scenario puts the bundles onto its fleet; none is up.
    #[error("no fleet of {scenario} is up: fedsim prep puts the bundles onto the VMs of a fleet that is up; boot it first with `fedsim fleet up -c {}`", source_file.display())]
    NoFleet {
        scenario: String,
        source_file: PathBuf,
    },
    #[error(transparent)]
    Limits(#[from] crate::sys::limits::LimitError),
    /// An availability trace that cannot be read or does not fit the sites.
    #[error(transparent)]
    Trace(#[from] crate::clock::trace::TraceError),
    #[error("{0}")]
    BrokenFleet(String),
    #[error("cannot write the shipped example into fedsim's cache: {0}")]
    Example(#[from] std::io::Error),
    /// Cancelled before the run directory existed: nothing was written.
    #[error("cancelled before the run started; nothing was written")]
    Cancelled,
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

pub struct RunOutcome {
    pub dir: RunDir,
    pub summary: Summary,
    pub metrics: Metrics,
    /// The sites could not be provisioned as the scenario describes them (unreachable host,
    /// unknown or changed host key, failed login): bad input, exit code 2.
    pub input_error: bool,
}

/// What planning found: the plan, and the inputs it checked (credentials, reference rows).
pub struct Planned {
    pub plan: Arc<Study>,
    pub tokens: Vec<Option<GivenCredentials>>,
    /// Per analysis, the reference row it is held against (with `[compare] reference`).
    pub reference: Vec<Option<(PathBuf, ReferenceRow)>>,
}

/// Check everything that can be checked without writing or starting anything: `--out`, the
/// scenario's data, columns and partition, the per-site `.env` files, the browsers (when they
/// will be used), and the reference row. Loading or generating the data can be cancelled.
pub fn plan(scenario: &Scenario, out: Option<&Path>, browsers: bool) -> Result<Planned, RunError> {
    crate::rundir::check_out(out)?;
    crate::sys::limits::check(scenario)?;
    // A fleet kept up that a fault broke is refused before anything is written.
    if scenario.fleet.provider == crate::scenario::Provider::Vm {
        if let Some(state) = crate::fleet::vm::FleetState::load(&scenario.scenario.name) {
            state
                .usable(&scenario.source)
                .map_err(|e| RunError::BrokenFleet(e.to_string()))?;
        }
    }
    let gui = &scenario.gui;
    if gui.enabled {
        crate::enrol::gui::script::Script::load(gui.script.as_deref())?;
        if browsers {
            crate::enrol::gui::check_binaries(&gui.chromedriver, &gui.browser)
                .map_err(RunError::Gui)?;
        }
    }
    let tokens = site_tokens(scenario)?;
    let owned = scenario.clone();
    let plan = match cancel::wait_for("plan", move || Study::make(&owned)) {
        Ok(Ok(plan)) => plan,
        // The data's own loops saw the flag first: a cancel all the same, not bad input.
        Err(_) | Ok(Err(PlanError::Data(crate::data::DataError::Cancelled))) => {
            return Err(RunError::Cancelled)
        }
        Ok(Err(e)) => return Err(e.into()),
    };
    if let Some(dp) = &scenario.privacy.dp {
        crate::dp::check_bounds(scenario, dp, &plan.analyses).map_err(PlanError::from)?;
    }
    crate::clock::check_traces(scenario)?;
    // The reference file must describe every analysis.
    let reference = plan
        .analyses
        .iter()
        .map(|p| match &scenario.compare.reference {
            Some(path) => Ok(Some((
                path.clone(),
                reference::find(path, &Analysis::of(p))?,
            ))),
            None => Ok(None),
        })
        .collect::<Result<Vec<_>, RunError>>()?;
    Ok(Planned {
        plan: Arc::new(plan),
        tokens,
        reference,
    })
}

/// The sites whose servers are slower (or faster) on the real clock, where their agents stretch
/// their computing; on the simulated clock the projection divides by the speed instead.
fn live_speeds(scenario: &Scenario) -> Vec<(String, f64)> {
    if scenario.clock.simulated() {
        return Vec::new();
    }
    scenario
        .site_names()
        .into_iter()
        .filter_map(|n| {
            let speed = scenario.availability_of(&n)?.speed;
            (speed != 1.0).then_some((n, speed))
        })
        .collect()
}

/// Credentials the scenario provides per site (`[[sites]] env`), else None for fresh ones.
fn site_tokens(scenario: &Scenario) -> Result<Vec<Option<GivenCredentials>>, RunError> {
    let mut tokens = vec![None; scenario.partition.sites];
    for (i, site) in scenario.site_specs().iter().enumerate() {
        if let Some(env) = &site.env {
            tokens[i] = Some(bundle::token_from_env_file(&site.name, env)?);
        }
    }
    Ok(tokens)
}

/// The coordinator's socket: bound before the run directory exists, so its address is known to
/// the bundles and a taken port fails before anything is written.
fn listen(scenario: &Scenario) -> Result<(TcpListener, SocketAddr), RunError> {
    let addr = &scenario.fleet.coordinator;
    let listen = |source| RunError::Listen {
        addr: addr.clone(),
        source,
    };
    let listener = TcpListener::bind(addr).map_err(listen)?;
    let local = listener.local_addr().map_err(listen)?;
    Ok((listener, local))
}

/// `fedsim prep`: plan and write the site bundles, nothing else.
pub fn prep_only(
    scenario: &Scenario,
    opts: &RunOptions,
) -> Result<(RunDir, Vec<Bundle>), RunError> {
    let planned = plan(scenario, opts.out.as_deref(), false)?;
    if scenario.fleet.provider == crate::scenario::Provider::Vm
        && crate::fleet::vm::FleetState::load(&scenario.scenario.name).is_none()
    {
        return Err(RunError::NoFleet {
            scenario: scenario.scenario.name.clone(),
            source_file: scenario.source.clone(),
        });
    }
    let dir = RunDir::create(opts.out.as_deref(), &scenario.scenario.name)?;
    let mut bundles = bundle::make_bundles(
        &planned.plan,
        &coordinator_in_bundles(scenario, &scenario.fleet.coordinator),
        &planned.tokens,
        scenario.federation.secure_aggregation,
        &scenario.privacy,
        &live_speeds(scenario),
    )?;
    dir.write_plan(scenario, &PlanFile::new(scenario, &planned.plan, &bundles))?;
    let shas = bundles
        .iter()
        .map(|b| (b.name.clone(), b.data_sha256.clone()))
        .collect();
    let mut fleet = crate::fleet::for_scenario(
        scenario,
        &dir.fleet_paths(),
        &opts.agent_exe,
        opts.progress,
        false,
    )?;
    fleet.install(&mut bundles)?;
    if scenario.fleet.provider == crate::scenario::Provider::Vm {
        let prepared = crate::fleet::vm::Prepared {
            prep_dir: std::path::absolute(dir.path()).unwrap_or(dir.path().to_path_buf()),
            data_sha256: shas,
        };
        crate::fleet::vm::mark_prepared(&scenario.scenario.name, &prepared)
            .map_err(|e| RunError::Fleet(e.into()))?;
    }
    Ok((dir, bundles))
}

/// The coordinator address a bundle's `.env` holds: the real one for local sites; for remote
/// ones, whose agents are told it when they start, a mark that keeps the bundle the same from run
/// to run (so what `fedsim prep` put on a site can be used as it is).
fn coordinator_in_bundles(scenario: &Scenario, addr: &str) -> String {
    match scenario.fleet.provider {
        crate::scenario::Provider::Local => addr.to_string(),
        _ => bundle::COORDINATOR_AT_START.to_string(),
    }
}

/// `fedsim run`.
pub fn run(scenario: &Scenario, opts: &RunOptions) -> Result<RunOutcome, RunError> {
    let progress = Progress::new(crate::progress::wanted(opts.progress));
    let mut clock = PhaseClock::default();
    cancel::pause_point("plan");
    progress.phase("plan: checking the scenario and data");
    let planned = plan(scenario, opts.out.as_deref(), !opts.by_hand)?;
    let (listener, addr) = listen(scenario)?;
    clock.lap("plan");
    cancel::check().map_err(|_| RunError::Cancelled)?;
    let dir = RunDir::create(opts.out.as_deref(), &scenario.scenario.name)?;
    let mut run = Run::new(scenario, opts, dir, progress, clock, planned.plan.clone());
    let mut found = Found::default();
    let ended = run.pipeline(planned, &listener, addr, &mut found);
    drop(listener);
    run.finish(ended, found)
}

/// The stages after planning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Prep,
    Provision,
    Enrol,
    Federate,
    Results,
    Collect,
    Baseline,
    Compare,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Prep => "prep",
            Phase::Provision => "provision",
            Phase::Enrol => "enrol",
            Phase::Federate => "federate",
            Phase::Results => "results",
            Phase::Collect => "collect",
            Phase::Baseline => "baseline",
            Phase::Compare => "compare",
        }
    }
}

/// Why the pipeline stopped before its end.
enum Stop {
    Cancelled,
    Failed {
        message: String,
        site: Option<String>,
    },
}

impl Stop {
    fn failed(message: impl Into<String>) -> Stop {
        Stop::Failed {
            message: message.into(),
            site: None,
        }
    }
}

impl From<cancel::Cancelled> for Stop {
    fn from(_: cancel::Cancelled) -> Stop {
        Stop::Cancelled
    }
}

impl From<FedError> for Stop {
    fn from(e: FedError) -> Stop {
        match e {
            FedError::Cancelled => Stop::Cancelled,
            e => Stop::Failed {
                site: e.site().map(str::to_string),
                message: e.to_string(),
            },
        }
    }
}

impl From<CompareError> for Stop {
    fn from(e: CompareError) -> Stop {
        Stop::failed(e.to_string())
    }
}

/// What the federation handed over.
struct Federated {
    /// Per analysis that began: its estimates (or why it failed alone) and its sites.
    analyses: Vec<Analysed>,
    /// What ended the federation before every analysis had run.
    ended: Option<FedError>,
    /// Sites the run went on without.
    lost: Vec<LostSite>,
    /// What people must read the result with (a level only one site holds, the resolution of
    /// secure aggregation).
    warnings: Vec<Warning>,
    connect_secs: f64,
    rounds: Vec<RoundMetrics>,
}

/// What the stages handed over, gathered by the pipeline as each one finishes, so that a run
/// stopped halfway still reports all it learned; `finish` turns it into the summary and metrics.
#[derive(Default)]
struct Found {
    findings: Findings,
    connect_secs: Option<f64>,
    rounds: Vec<RoundMetrics>,
}

/// One run, from its directory's creation to its summary.
struct Run<'a> {
    scenario: &'a Scenario,
    opts: &'a RunOptions,
    dir: RunDir,
    run_id: String,
    progress: Progress,
    clock: PhaseClock,
    plan: Arc<Study>,
    /// One per site, filled in as the stages learn more (location, pid, exit).
    sites: Vec<SiteSummary>,
    portal: Option<DriveReport>,
    input_error: bool,
    /// Live until torn down: the sites and the portal.
    fleet: Option<Box<dyn Fleet>>,
    fleet_running: bool,
    enrolment: Option<Enrolment>,
    logs_collected: bool,
    /// Log sources besides the controller and the sites (a platform's server, its run).
    extra_logs: Vec<String>,
    /// Disk set aside in the run directory for the summary, should the disk fill.
    reserve: Option<crate::sys::fsio::Reserve>,
    /// Every controller log line carries the run id.
    _span: tracing::span::EnteredSpan,
}

impl<'a> Run<'a> {
    fn new(
        scenario: &'a Scenario,
        opts: &'a RunOptions,
        dir: RunDir,
        progress: Progress,
        clock: PhaseClock,
        plan: Arc<Study>,
    ) -> Run<'a> {
        let _ = logs::attach(&dir.controller_log());
        let run_id = dir
            .path()
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let span = tracing::info_span!("run", run_id = %run_id).entered();
        tracing::info!(phase = "prep", dir = %dir.path().display(), sites = plan.sites().len(), rows = plan.frame.rows(), "run directory created");
        let reserve = crate::sys::fsio::Reserve::take(dir.path())
            .map_err(
                |e| tracing::warn!(phase = "prep", error = %e, "no disk reserve for the summary"),
            )
            .ok();
        Run {
            scenario,
            opts,
            dir,
            run_id,
            progress,
            clock,
            plan,
            sites: Vec::new(),
            portal: None,
            input_error: false,
            fleet: None,
            fleet_running: false,
            enrolment: None,
            logs_collected: false,
            extra_logs: Vec::new(),
            reserve,
            _span: span,
        }
    }

    /// The pipeline, one call per stage; each stage's output goes to the next, and into
    /// `found` as soon as it exists.
    fn pipeline(
        &mut self,
        planned: Planned,
        listener: &TcpListener,
        addr: SocketAddr,
        found: &mut Found,
    ) -> Result<(), (Phase, Stop)> {
        let (mut bundles, people) = self.stage(Phase::Prep, |r| r.prep(&planned, addr))?;
        found
            .findings
            .warnings
            .extend(isolation_warning(self.scenario));
        for view in self.scenario.analyses() {
            found
                .findings
                .warnings
                .extend(disclosure_warning(&view, self.plan.named));
        }
        if self.scenario.privacy.probe {
            let probes = self.stage(Phase::Prep, |r| r.probe())?;
            found.findings.warnings.extend(probes);
        }
        // A platform's nodes read the data file each bundle has, once installed; its own
        // simulation gets the same rows (taken before the install takes the files).
        let paths = self.dir.fleet_paths();
        let sites_dir = std::path::absolute(&paths.sites).unwrap_or(paths.sites);
        let seats: Vec<crate::platform::SiteSeat> = match self.scenario.platform {
            None => Vec::new(),
            Some(_) => bundles
                .iter()
                .enumerate()
                .map(|(index, b)| crate::platform::SiteSeat {
                    name: b.name.clone(),
                    index,
                    sites: bundles.len(),
                    data_name: b
                        .files
                        .as_ref()
                        .map(|f| f.data_name.clone())
                        .unwrap_or_default(),
                    dir: sites_dir.join(&b.name),
                    rows: b.rows,
                    data: std::sync::Arc::new(
                        b.files.as_ref().map(|f| f.data.clone()).unwrap_or_default(),
                    ),
                })
                .collect(),
        };
        self.stage(Phase::Provision, |r| r.provision(&mut bundles))?;
        let fed = match &self.scenario.platform {
            // The platform brings its own enrolment and federation.
            Some(spec) => self.stage(Phase::Federate, |r| r.federate_platform(spec, &seats))?,
            None => {
                self.stage(Phase::Enrol, |r| r.enrol(people))?;
                self.stage(Phase::Federate, |r| r.federate(listener, addr, &bundles))?
            }
        };
        found.connect_secs = Some(fed.connect_secs);
        found.rounds = fed.rounds;
        found.findings.warnings.extend(fed.warnings);
        found.findings.lost_sites = fed.lost;
        let mut analyses = fed.analyses;
        if !self.plan.named {
            // One analysis: its failure is the run's, in the stage it happened.
            if let Some(e) = fed.ended {
                return Err((Phase::Federate, Stop::from(e)));
            }
            let mut analysed = analyses.pop().expect("one analysis ran");
            let result = std::mem::replace(&mut analysed.result, Err(FedError::Cancelled));
            let estimates = result.map_err(|e| (Phase::Federate, Stop::from(e)))?;
            found.findings.results = Some(estimates.clone());
            self.stage(Phase::Results, |r| r.results(&[Ok(&estimates)]))?;
            self.stage(Phase::Collect, |r| r.collect())?;
            let concluded = self.conclude(0, &estimates, &analysed, &planned.reference[0]);
            let (baseline, comparison, reference) = concluded?;
            found.findings.baseline = Some(baseline);
            found.findings.comparison = Some(comparison);
            found.findings.reference = reference;
            return Ok(());
        }
        // Several analyses: each is judged on its own; only a cancel ends them all here.
        found.findings.analyses = self
            .plan
            .analyses
            .iter()
            .map(|p| AnalysisFindings {
                name: p.name.clone(),
                algorithm: p.config.kind().as_str().to_string(),
                // Until it runs: an analysis that never ran has no phase it failed in.
                stopped: Some(Stopped {
                    cancelled: matches!(fed.ended, Some(FedError::Cancelled)),
                    failure: FailureInfo {
                        message: match &fed.ended {
                            Some(e) => format!("did not run: the run ended before it ({e})"),
                            None => "did not run".to_string(),
                        },
                        site: None,
                        phase: None,
                    },
                }),
                ..Default::default()
            })
            .collect();
        let results: Vec<Result<&Estimates, &FedError>> =
            analyses.iter().map(|a| a.result.as_ref()).collect();
        self.stage(Phase::Results, |r| r.results(&results))?;
        self.stage(Phase::Collect, |r| r.collect())?;
        for (k, analysed) in analyses.iter_mut().enumerate() {
            let findings = &mut found.findings.analyses[k];
            findings.lost_sites = analysed.lost.clone();
            findings.stopped = None;
            let result = std::mem::replace(&mut analysed.result, Err(FedError::Cancelled));
            let estimates = match result {
                Ok(estimates) => estimates,
                Err(e) => {
                    findings.stopped = Some(stopped(Phase::Federate.name(), Stop::from(e)));
                    continue;
                }
            };
            findings.results = Some(estimates.clone());
            match self.conclude(k, &estimates, analysed, &planned.reference[k]) {
                Ok((baseline, comparison, reference)) => {
                    let findings = &mut found.findings.analyses[k];
                    findings.baseline = Some(baseline);
                    findings.comparison = Some(comparison);
                    findings.reference = reference;
                }
                Err((phase, Stop::Cancelled)) => return Err((phase, Stop::Cancelled)),
                Err((phase, stop)) => {
                    found.findings.analyses[k].stopped = Some(stopped(phase.name(), stop));
                }
            }
        }
        match fed.ended {
            Some(e) => {
                // The analysis the run ended in failed with it; those after it did not run.
                if let Some(current) = found.findings.analyses.get_mut(analyses.len()) {
                    current.stopped = Some(stopped(
                        Phase::Federate.name(),
                        match &e {
                            FedError::Cancelled => Stop::Cancelled,
                            e => Stop::Failed {
                                site: e.site().map(str::to_string),
                                message: e.to_string(),
                            },
                        },
                    ));
                }
                Err((Phase::Federate, Stop::from(e)))
            }
            None => Ok(()),
        }
    }

    /// baseline and compare for analysis `k`: its pooled answer on the sites it ended with, and
    /// the verdicts against it and against the reference row (held only against a result of
    /// every site: a reference describes all the data).
    fn conclude(
        &mut self,
        k: usize,
        estimates: &Estimates,
        analysed: &Analysed,
        reference: &Option<(PathBuf, ReferenceRow)>,
    ) -> Result<(Estimates, Comparison, Option<ReferenceCheck>), (Phase, Stop)> {
        let survivors = survivors(analysed);
        let baseline = self.stage(Phase::Baseline, |r| r.baseline(k, &survivors))?;
        let reference = reference.clone().filter(|_| analysed.lost.is_empty());
        let (comparison, reference) = self.stage(Phase::Compare, |r| {
            r.compare(estimates, &baseline, reference, (k, &survivors))
        })?;
        Ok((baseline, comparison, reference))
    }

    /// Run one stage: a cancel check first, then the stage, timed.
    fn stage<T>(
        &mut self,
        phase: Phase,
        f: impl FnOnce(&mut Self) -> Result<T, Stop>,
    ) -> Result<T, (Phase, Stop)> {
        cancel::pause_point(phase.name());
        let result = cancel::check().map_err(Stop::from).and_then(|()| f(self));
        self.clock.lap(phase.name());
        result.map_err(|s| (phase, s))
    }

    /// prep: every site's bundle (its rows and its own `.env`), the plan on disk, the people.
    fn prep(&mut self, planned: &Planned, addr: SocketAddr) -> Result<(Vec<Bundle>, People), Stop> {
        self.progress
            .phase("prep: splitting the data into site bundles");
        let (plan, mut tokens) = (planned.plan.clone(), planned.tokens.clone());
        // Bundles `fedsim prep` put on a fleet that is up: the same credentials, so the same
        // bundles, which provisioning then finds there (by checksum) and leaves as they are.
        if self.scenario.fleet.provider == crate::scenario::Provider::Vm {
            if let Some(given) = crate::fleet::vm::prepared_credentials(self.scenario) {
                tokens = given.map_err(|e| Stop::failed(e.to_string()))?;
            }
        }
        let addr = coordinator_in_bundles(self.scenario, &addr.to_string());
        let secure = self.scenario.federation.secure_aggregation;
        let privacy = self.scenario.privacy.clone();
        let speeds = live_speeds(self.scenario);
        let bundles = cancel::wait_for("prep", move || {
            bundle::make_bundles(&plan, &addr, &tokens, secure, &privacy, &speeds)
        })?
        .map_err(|e| Stop::failed(e.to_string()))?;
        self.dir
            .write_plan(
                self.scenario,
                &PlanFile::new(self.scenario, &self.plan, &bundles),
            )
            .map_err(|e| Stop::failed(e.to_string()))?;
        let first = self.plan.first();
        let planned = |name: &str| first.sites.iter().find(|p| p.name == name);
        self.sites = bundles
            .iter()
            .map(|b| SiteSummary {
                outcome: planned(&b.name).and_then(|p| p.outcome(first)),
                name: b.name.clone(),
                rows: b.rows,
                data_sha256: b.data_sha256.clone(),
                location: None,
                link: self.scenario.link_of(&b.name).map(|l| l.describe()),
                dropped_rows: (self.scenario.data.missing == crate::scenario::Missing::Drop)
                    .then(|| planned(&b.name).map_or(0, |p| p.dropped(first))),
                pid: None,
                exit: None,
            })
            .collect();
        let people = People::from_bundles(self.scenario, &bundles)
            .map_err(|e| Stop::failed(e.to_string()))?;
        Ok((bundles, people))
    }

    /// The differencing probe on the planned partition (`[privacy] probe = true`): `probe.json`,
    /// and a warning per analysis whose releases show a record's values.
    fn probe(&mut self) -> Result<Vec<Warning>, Stop> {
        let (plan, dp) = (self.plan.clone(), self.scenario.privacy.dp.clone());
        let probes = cancel::wait_for("probe", move || {
            crate::probe::probe(&plan, None, dp.as_ref())
        })?
        .map_err(|e| Stop::failed(format!("the differencing probe: {e}")))?;
        self.dir
            .write_probe(&probes)
            .map_err(|e| Stop::failed(e.to_string()))?;
        Ok(probes
            .iter()
            .filter(|p| !p.exposures.is_empty())
            .map(|p| Warning {
                kind: "differencing".into(),
                message: format!(
                    "{}: run again without one record of {}, the difference of its replies shows {} of the record's {} values exactly ({}); the sum over the sites shows {} of them, so secure aggregation does not hide it (probe.json)",
                    p.analysis,
                    p.site,
                    p.exposed("site").len(),
                    p.values.len(),
                    p.exposed("site").join(", "),
                    p.exposed("sum").len(),
                ),
                site: Some(p.site.clone()),
            })
            .collect())
    }

    /// provision: put each bundle on its site. Takes the files out of the bundles, so the
    /// controller holds no site's token afterwards.
    fn provision(&mut self, bundles: &mut [Bundle]) -> Result<(), Stop> {
        let provider = self.scenario.fleet.provider;
        tracing::info!(phase = "provision", sites = bundles.len(), provider = %provider, "installing the sites");
        self.progress
            .phase(format!("provision: installing {} sites", bundles.len()));
        self.progress
            .sites(&bundles.iter().map(|b| b.name.clone()).collect::<Vec<_>>());
        let fleet = crate::fleet::for_scenario(
            self.scenario,
            &self.dir.fleet_paths(),
            &self.opts.agent_exe,
            self.opts.progress,
            true,
        )
        .map_err(|e| {
            if cancel::requested() {
                Stop::Cancelled
            } else if e.is_input() {
                self.bad_hosts(e)
            } else {
                Stop::Failed {
                    site: Some(e.site().to_string()),
                    message: e.to_string(),
                }
            }
        })?;
        let fleet = self.fleet.insert(fleet);
        let began = std::time::Instant::now();
        let installed = fleet.install(bundles);
        if installed.is_ok() {
            tracing::info!(
                phase = "provision",
                secs = began.elapsed().as_secs_f64(),
                "sites installed"
            );
        }
        for s in &mut self.sites {
            s.location = fleet.location(&s.name);
        }
        match installed {
            Err(_) if cancel::requested() => Err(Stop::Cancelled),
            // Local sites are folders of the run directory: failing to write one (a full disk)
            // is this machine's trouble, not bad input.
            Err(e) if provider == crate::scenario::Provider::Local => Err(Stop::Failed {
                site: Some(e.site().to_string()),
                message: e.to_string(),
            }),
            Err(e) => Err(self.bad_hosts(e)),
            Ok(()) => Ok(()),
        }
    }

    /// Hosts that cannot be used as the scenario describes them: bad input (exit 2).
    fn bad_hosts(&mut self, e: FleetError) -> Stop {
        self.input_error = true;
        Stop::Failed {
            site: Some(e.site().to_string()),
            message: e.to_string(),
        }
    }

    /// enrol: serve the portal; every account logs in, the sites join, the coordinator starts.
    fn enrol(&mut self, people: People) -> Result<(), Stop> {
        self.progress.phase("enrol: serving the portal");
        let enrolment = Enrolment::start(crate::enrol::Setup {
            scenario: self.scenario,
            algorithm: &self.algorithm(),
            people,
            controller_env: self.dir.controller_env(),
            portal_dir: self.dir.portal(),
            chromedriver_log: self.dir.chromedriver_log(),
            project: &self.scenario.scenario.name,
            by_hand: self.opts.by_hand,
        })
        .map_err(|e| {
            if matches!(e, crate::enrol::EnrolError::Script(_)) {
                self.input_error = true;
            }
            Stop::failed(format!("the portal could not start: {e}"))
        })?;
        self.enrolment = Some(enrolment);
        Ok(())
    }

    fn algorithm(&self) -> String {
        if self.plan.named {
            let names: Vec<String> = self
                .plan
                .analyses
                .iter()
                .map(|p| format!("{} ({})", p.name, p.config.kind().as_str()))
                .collect();
            return format!("{} analyses: {}", names.len(), names.join(", "));
        }
        let c = &self.plan.first().config;
        match &c.target {
            Some(t) => format!(
                "{} of {t} on {} features",
                c.kind().as_str(),
                c.features.len()
            ),
            None => format!("{} of {} features", c.kind().as_str(), c.features.len()),
        }
    }

    /// federate: start the agents, let the coordinator drive the rounds, stop the agents.
    fn federate(
        &mut self,
        listener: &TcpListener,
        addr: SocketAddr,
        bundles: &[Bundle],
    ) -> Result<Federated, Stop> {
        let scenario = self.scenario;
        let site_keys: Vec<SiteAuth> = bundles
            .iter()
            .map(|b| SiteAuth {
                name: b.name.clone(),
                key: b.key,
                configs: b.configs.clone(),
                delays: delays(scenario, &b.name),
            })
            .collect();
        // Local and ssh sites behind a link dial its relay; VMs shape theirs in the guest. On
        // the simulated clock nothing waits: the links are the projection's.
        let linked: Vec<(String, crate::scenario::SiteLink)> = match scenario.fleet.provider {
            _ if scenario.clock.simulated() => Vec::new(),
            crate::scenario::Provider::Local | crate::scenario::Provider::Ssh => bundles
                .iter()
                .filter_map(|b| scenario.link_of(&b.name).map(|l| (b.name.clone(), l)))
                .collect(),
            _ => Vec::new(),
        };
        let relays = crate::relay::Relays::start(&linked, addr, scenario.scenario.seed)
            .map_err(|e| Stop::failed(format!("cannot start the link relays: {e}")))?;
        let dial = crate::fleet::Dial {
            coordinator: addr,
            relays: relays.addrs(),
        };
        let fleet = self.fleet.as_mut().expect("provisioned");
        let enrolment = self.enrolment.as_ref().expect("enrolled");
        self.fleet_running = true;
        fleet.start(&dial).map_err(|e| Stop::Failed {
            site: Some(e.site().to_string()),
            message: e.to_string(),
        })?;
        tracing::info!(phase = "launch", sites = bundles.len(), %addr, "agents started; coordinating");
        let kinds: Vec<&str> = self
            .plan
            .analyses
            .iter()
            .map(|p| p.config.kind().as_str())
            .collect();
        self.progress.phase(format!(
            "federate: {} on {} sites (portal {})",
            kinds.join(", "),
            bundles.len(),
            enrolment.url
        ));
        // Test hook: record every frame the coordinator receives (what it can and cannot see).
        let recording = std::env::var_os("FEDSIM_RECORD_FRAMES")
            .and_then(|p| std::fs::File::create(p).ok())
            .map(std::sync::Mutex::new);
        let fed = &scenario.federation;
        let settings = coordinator::Settings {
            run_id: self.run_id.clone(),
            connect_timeout: Duration::from_secs_f64(fed.connect_timeout_secs),
            round_timeout: Duration::from_secs_f64(fed.round_timeout_secs),
            cancel: &cancel::CANCEL,
            progress: Some(&self.progress),
            heartbeat: Duration::from_secs_f64(fed.heartbeat_secs),
            secure: fed.secure_aggregation,
            record: recording.as_ref(),
            continue_with: (fed.on_dropout == OnDropout::Continue).then_some(fed.min_sites),
            refusals_continue_with: (scenario.privacy.on_refusal
                == crate::scenario::OnRefusal::Continue)
                .then_some(fed.min_sites),
            portal: Some(&*enrolment.board),
            start_timeout: Duration::from_secs_f64(scenario.gui.start_timeout_secs),
        };
        let mut watch = Injector::new(fleet.as_mut(), &scenario.faults);
        let configs = self.plan.configs();
        let names: Vec<String> = self.plan.analyses.iter().map(|p| p.name.clone()).collect();
        let outcome = coordinator::run(
            listener,
            &site_keys,
            &configs,
            self.plan.named.then_some(&names[..]),
            &settings,
            &mut watch,
        );
        self.stop_sites();
        let outcome = outcome?;
        let mut warnings = Vec::new();
        for (analysed, plan) in outcome.analyses.iter().zip(&self.plan.analyses) {
            check_rows(&analysed.joined, bundles, plan);
            warnings.extend(self.analysis_warnings(analysed, plan));
        }
        if self.scenario.federation.secure_aggregation {
            // What the verdict must be read with: the sum's resolution.
            warnings.push(Warning {
                kind: "secure_aggregation".into(),
                message: format!(
                    "secure aggregation sums in fixed point with 64 fractional bits: each site's value is rounded to {:.1e} (2^-64), and a value smaller than that counts as 0 in the sum; the sites' logs say when one did",
                    crate::federation::secagg::RESOLUTION
                ),
                site: None,
            });
        }
        let mut analyses = outcome.analyses;
        for (analysed, plan) in analyses.iter_mut().zip(&self.plan.analyses) {
            let sites = survivors(analysed);
            if let (Ok(estimates), Some(_)) = (&mut analysed.result, plan.config.external()) {
                // An external result has no row count of its own: the sites' rows, as prep wrote them.
                estimates.n = plan.rows_of(&sites);
            }
        }
        Ok(Federated {
            analyses,
            ended: outcome.ended,
            lost: outcome.lost,
            warnings,
            connect_secs: outcome.connect_secs,
            rounds: outcome.rounds,
        })
    }

    /// federate on a platform (`[platform]`): its server at the coordinator, a node per site
    /// (behind the site's link relay when it has one), the App's run under the scenario's faults;
    /// then the same App in the platform's own simulation on the same partitions, side by side.
    fn federate_platform(
        &mut self,
        spec: &crate::scenario::PlatformSpec,
        sites: &[crate::platform::SiteSeat],
    ) -> Result<Federated, Stop> {
        use crate::platform::{self, flower::Flower, SiteSeat};
        let scenario = self.scenario;
        let local = scenario.fleet.provider == crate::scenario::Provider::Local;
        // A local node logs straight into the run's logs; a remote one's log is pulled as an
        // agent's is.
        self.logs_collected = local;
        let bin = platform::flower::find_flwr(spec).map_err(|e| {
            self.input_error = true;
            Stop::failed(e.to_string())
        })?;
        let root = std::path::absolute(self.dir.path()).unwrap_or_else(|_| self.dir.path().into());
        let logs = std::path::absolute(self.dir.logs()).unwrap_or_else(|_| self.dir.logs());
        let failed = |e: platform::PlatformError| match e {
            platform::PlatformError::Cancelled => Stop::Cancelled,
            e => Stop::Failed {
                site: e.site().map(str::to_string),
                message: e.to_string(),
            },
        };
        let timeout = Duration::from_secs_f64(spec.timeout_secs);
        self.progress.phase(format!(
            "federate: the Flower App {} on {} sites",
            spec.app.display(),
            sites.len()
        ));
        // Every node dials a relay of its own, which forwards to the SuperLink once it is up and
        // counts the bytes each way; a local or ssh site's relay also carries its link (a VM's
        // link is shaped in the guest).
        let relayed: Vec<(String, crate::scenario::SiteLink)> = sites
            .iter()
            .map(|s| {
                let link = match scenario.fleet.provider {
                    crate::scenario::Provider::Vm => None,
                    _ => scenario.link_of(&s.name),
                };
                (s.name.clone(), link.unwrap_or_default())
            })
            .collect();
        let relays = std::sync::Mutex::new(None::<crate::relay::Relays>);
        let dial = |site: &str, server: SocketAddr| {
            let mut r = relays.lock().expect("relays");
            if r.is_none() {
                match crate::relay::Relays::start(&relayed, server, scenario.scenario.seed) {
                    Ok(started) => *r = Some(started),
                    Err(e) => {
                        tracing::warn!(phase = "federate", error = %e, "cannot start the sites' relays; sites dial the SuperLink directly, unshaped and uncounted")
                    }
                }
            }
            r.as_ref()
                .map_or(server, |r| r.addrs().get(site).copied().unwrap_or(server))
        };
        let carried = || relays.lock().expect("relays").as_ref().map(|r| r.carried());
        let wires = platform::Wires {
            dial: &dial,
            carried: &carried,
        };
        let fed = &scenario.federation;
        let go_on = fed.on_dropout == OnDropout::Continue;
        let mut deployment = Flower::new(spec, bin.clone(), &root, &logs, false, sites.len())
            .map_err(failed)?
            .with_min_nodes(if go_on { fed.min_sites } else { sites.len() });
        if !local {
            let fleet = self
                .fleet
                .as_mut()
                .ok_or_else(|| Stop::failed("no fleet"))?;
            let names = sites.iter().map(|s| s.name.clone()).collect();
            // As long as an agent would wait for the coordinator.
            let give_up = scenario.federation.connect_timeout_secs.max(30.0);
            deployment = deployment.on_remote_sites(
                platform::nodes::RemoteSites::new(fleet.as_mut(), names),
                give_up,
            );
        }
        self.extra_logs.extend(deployment.log_sources());
        self.fleet_running = true;
        let deployed = platform::deploy(
            &mut deployment,
            sites,
            &wires,
            &scenario.faults,
            timeout,
            !go_on,
        );
        drop(deployment);
        drop(relays);
        self.fleet_running = false;
        let lost: Vec<LostSite> = deployed
            .lost
            .iter()
            .map(|(site, round, cause)| LostSite {
                site: site.clone(),
                round: *round,
                cause: cause.clone(),
            })
            .collect();
        let deployed_result = match deployed.result {
            Err(platform::PlatformError::Cancelled) => return Err(Stop::Cancelled),
            Err(e) => {
                let site = e
                    .site()
                    .map(str::to_string)
                    .or_else(|| lost.first().map(|l| l.site.clone()));
                let mut message = match (&site, &e) {
                    (Some(s), platform::PlatformError::Timeout(_)) => {
                        format!("{e} (after {s} was lost: {})", lost[0].cause)
                    }
                    _ => e.to_string(),
                };
                if !deployed.notes.is_empty() {
                    message.push_str(&format!("; Flower said: {}", deployed.notes.join("; ")));
                }
                return Err(Stop::Failed { site, message });
            }
            Ok(r) => r,
        };
        // Flower's own simulation of the same App on the same partitions.
        let mut side = platform::Side {
            platform: "flower".into(),
            deployment: Some(deployed_result.clone()),
            simulation: None,
            simulation_error: None,
            max_rel_diff: None,
        };
        if spec.simulation {
            self.progress
                .phase("federate: the same App in Flower's simulation engine");
            let mut sim =
                Flower::new(spec, bin, &root, &logs, true, sites.len()).map_err(failed)?;
            self.extra_logs.extend(sim.log_sources());
            let simulated = platform::deploy(
                &mut sim,
                sites,
                &platform::Wires::direct(),
                &[],
                timeout,
                true,
            );
            match simulated.result {
                Err(platform::PlatformError::Cancelled) => return Err(Stop::Cancelled),
                Err(e) => side.simulation_error = Some(e.to_string()),
                Ok(r) => {
                    side.max_rel_diff = platform::max_rel_diff(&deployed_result.result, &r.result);
                    side.simulation = Some(r);
                }
            }
        }
        let mut warnings = Vec::new();
        if !deployed.notes.is_empty() {
            // What Flower did with the lost sites, in its own words.
            warnings.push(Warning {
                kind: "platform".into(),
                message: format!(
                    "Flower ended rounds without some sites' replies: {}",
                    deployed.notes.join("; ")
                ),
                site: lost.first().map(|l| l.site.clone()),
            });
        }
        match (&side.simulation_error, side.max_rel_diff) {
            (Some(e), _) => warnings.push(Warning {
                kind: "simulation".into(),
                message: format!("Flower's simulation of the App gave no result: {e}"),
                site: None,
            }),
            (None, Some(d)) if d > scenario.compare.tolerance => warnings.push(Warning {
                kind: "simulation".into(),
                message: format!(
                    "the deployment and Flower's simulation of the same App differ by up to {d:.3e} (relative){}",
                    if lost.is_empty() { "" } else { ": the deployment lost sites the simulation kept" }
                ),
                site: None,
            }),
            _ => {}
        }
        if let Err(e) = self.dir.write_platform(&side) {
            tracing::warn!(phase = "federate", error = %e, "platform.json not written");
        }
        let survivors: Vec<&SiteSeat> = sites
            .iter()
            .filter(|s| !lost.iter().any(|l| l.site == s.name))
            .collect();
        let joined = survivors
            .iter()
            .map(|s| coordinator::JoinedSite {
                name: s.name.clone(),
                pid: 0,
                rows: s.rows as u64,
                agent_version: "flwr".into(),
                dropped: 0,
                levels: Default::default(),
            })
            .collect();
        let mut result = deployed_result.result.clone();
        result.n = survivors.iter().map(|s| s.rows).sum();
        // Each round's wall time, as the ServerApp measured it.
        let rounds = deployed_result
            .round_secs()
            .into_iter()
            .enumerate()
            .map(|(i, wall_secs)| RoundMetrics {
                round: i as u32 + 1,
                analysis: None,
                wall_secs,
                sites: Vec::new(),
            })
            .collect();
        Ok(Federated {
            analyses: vec![Analysed {
                result: Ok(result),
                joined,
                agreed: Default::default(),
                lost: lost.clone(),
            }],
            ended: None,
            lost,
            warnings,
            connect_secs: deployed.connect_secs,
            rounds,
        })
    }

    /// What one analysis's result must be read with: a level only one site holds, event times
    /// sent in clear. With several analyses, each warning names its analysis.
    fn analysis_warnings(&self, analysed: &Analysed, plan: &Plan) -> Vec<Warning> {
        let of = |message: String| match self.plan.named {
            true => format!("analysis {}: {message}", plan.name),
            false => message,
        };
        let mut warnings: Vec<Warning> = analysed
            .agreed
            .lonely
            .iter()
            .map(|(column, level, site)| Warning {
                kind: "privacy".into(),
                message: of(format!(
                    "level {level:?} of {column:?} is held by site {site} alone: the sums of its indicator column are that site's own (how many of its rows have it, and their totals)"
                )),
                site: Some(site.clone()),
            })
            .collect();
        if plan.config.params.survival_columns().is_some() && analysed.agreed.levels.is_some() {
            // The union of event times is agreed in clear (see algorithms::survival).
            warnings.push(Warning {
                kind: "disclosure".into(),
                message: of("each site sent the coordinator its distinct event times (per group or stratum) in clear before round 1, outside any secure aggregation: the risk sets are counted at them; everything after that is sums".into()),
                site: None,
            });
        }
        warnings
    }

    /// Stop the agents (briefly, after a cancel) and record how each ended.
    fn stop_sites(&mut self) {
        let Some(fleet) = self.fleet.as_mut().filter(|_| self.fleet_running) else {
            return;
        };
        let grace = if cancel::requested() {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(5)
        };
        let pids = fleet.pids();
        let exits = fleet.stop(grace);
        self.fleet_running = false;
        for s in &mut self.sites {
            s.pid = pids.iter().find(|(n, _)| *n == s.name).map(|(_, p)| *p);
            s.exit = exits.iter().find(|e| e.site == s.name).cloned();
        }
    }

    /// results: everyone at the portal sees the end and downloads the results, each download
    /// byte for byte the coordinator's.
    fn results(&mut self, results: &[Result<&Estimates, &FedError>]) -> Result<(), Stop> {
        for (plan, result) in self.plan.analyses.iter().zip(results) {
            let Ok(estimates) = result else { continue };
            let name = self.plan.named.then_some(plan.name.as_str());
            if let Err(e) = self.dir.write_vectors(plan, name, estimates) {
                tracing::warn!(phase = "results", error = %e, "cannot write the component vectors");
            }
        }
        let entries: Vec<crate::enrol::Entry> = self
            .plan
            .analyses
            .iter()
            .zip(results)
            .map(|(plan, result)| crate::enrol::Entry {
                name: self.plan.named.then_some(plan.name.as_str()),
                kind: plan.config.kind(),
                result: result.map_err(|e| e.to_string()),
            })
            .collect();
        let bytes =
            crate::enrol::results_document(&self.scenario.scenario.name, &self.run_id, &entries);
        let Some(mut enrolment) = self.enrolment.take() else {
            return Ok(());
        };
        let driven = enrolment.finish(Ok(bytes.clone()), Duration::from_secs(120));
        self.portal = driven.as_ref().ok().cloned();
        match driven {
            Ok(report) => {
                crate::enrol::participants::check_downloads(&report, &bytes).map_err(Stop::failed)
            }
            Err(e) => Err(Stop::Failed {
                site: e
                    .account()
                    .filter(|a| self.sites.iter().any(|s| s.name == *a))
                    .map(str::to_string),
                message: e.to_string(),
            }),
        }
    }

    /// collect: every site's log, merged later into one timeline.
    fn collect(&mut self) -> Result<(), Stop> {
        self.collect_logs();
        Ok(())
    }

    fn collect_logs(&mut self) {
        let Some(fleet) = self.fleet.as_mut() else {
            return;
        };
        self.logs_collected = true;
        // After a cancel there is no time to pull logs over SSH; `fedsim logs` does it later.
        if cancel::requested() && self.scenario.fleet.provider != crate::scenario::Provider::Local {
            tracing::warn!(
                phase = "collect",
                "cancelled: site logs not pulled; `fedsim logs RUN_DIR` pulls them"
            );
            return;
        }
        if let Err(e) = fleet.collect_logs(&self.dir.logs()) {
            tracing::warn!(phase = "collect", error = %e, "log collection incomplete");
        }
    }

    /// baseline: the same analysis on the pooled data of the sites that finished (after a
    /// dropout, the survivors' rows).
    fn baseline(&mut self, k: usize, survivors: &[String]) -> Result<Estimates, Stop> {
        // The study itself, shared, not a copy of the analysis's plan and its data.
        let study = self.plan.clone();
        let name = study.analyses[k].name.clone();
        tracing::info!(phase = "baseline", analysis = %name, "computing the centralised baseline");
        self.progress
            .phase(format!("baseline: {name} on the pooled data"));
        let survivors = survivors.to_vec();
        let pooled_file = self.dir.pooled_csv();
        let base = cancel::wait_for("baseline", move || {
            let plan = &study.analyses[k];
            if let Some(spec) = plan.config.external() {
                // The user's pooled command, on a file of the survivors' rows, removed after.
                let rows = plan.rows_of(&survivors);
                let result = plan
                    .pooled_frame_of(&survivors)
                    .into_bytes("csv", &pooled_file)
                    .map_err(|e| e.to_string())
                    .and_then(|b| std::fs::write(&pooled_file, b).map_err(|e| e.to_string()))
                    .and_then(|_| {
                        crate::algorithms::external::pooled(spec, &pooled_file)
                            .map_err(|e| e.to_string())
                    });
                let _ = std::fs::remove_file(&pooled_file);
                return result.map(|mut e| {
                    e.n = rows;
                    e
                });
            }
            // Shaped a block of rows at a time where the analysis can (svd): the plan already
            // holds the data, and a high-dimensional set is not held again.
            let rows = plan.pooled_rows_of(&survivors);
            let shaped = |r: std::ops::Range<usize>| {
                plan.shaped(&rows[r])
                    .map_err(|e| crate::algorithms::AlgoError::Shape(e.to_string()))
            };
            let pooled = baseline::Pooled {
                rows: rows.len(),
                shaped: &shaped,
            };
            baseline::compute_pooled(&plan.analysis(), &pooled).map_err(|e| e.to_string())
        })?
        .map_err(|m| Stop::failed(format!("centralised baseline failed: {m}")))?;
        Ok(base)
    }

    /// compare: federated against the baseline, and against the reference row if there is
    /// one to hold it against; under differential privacy, with the noise's predicted cost.
    fn compare(
        &mut self,
        fed: &Estimates,
        base: &Estimates,
        reference: Option<(PathBuf, ReferenceRow)>,
        (k, survivors): (usize, &[String]),
    ) -> Result<(Comparison, Option<ReferenceCheck>), Stop> {
        compare::finite_results(fed, base)?;
        let (mut cmp, mut reference) = self.compare_exact(fed, base, reference)?;
        if let Some(spec) = &self.scenario.privacy.dp {
            let configs = self.plan.configs();
            let plan = self.plan.analyses[k].clone();
            let (spec, survivors, base) = (spec.clone(), survivors.to_vec(), base.clone());
            let cost = cancel::wait_for("compare", move || {
                crate::dp::run_rounds(&configs).and_then(|rounds| {
                    crate::dp::predict::predict(&plan, &survivors, &spec, rounds, &base)
                })
            })?
            .map_err(|e| Stop::failed(format!("the noise's cost cannot be predicted: {e}")))?;
            compare::hold_to_noise(&mut cmp, &cost);
            if let Some(r) = reference.as_mut() {
                compare::hold_to_noise(&mut r.comparison, &cost);
            }
        }
        Ok((cmp, reference))
    }

    fn compare_exact(
        &mut self,
        fed: &Estimates,
        base: &Estimates,
        reference: Option<(PathBuf, ReferenceRow)>,
    ) -> Result<(Comparison, Option<ReferenceCheck>), Stop> {
        let c = &self.scenario.compare;
        let cmp = compare::compare(
            fed,
            base,
            Against::Centralised,
            c.tolerance,
            Some(c.angle_tolerance_deg),
        )?;
        let reference = match reference {
            Some((source, row)) => Some(ReferenceCheck {
                source,
                comparison: compare::compare(
                    fed,
                    &row.estimates_like(fed),
                    Against::Reference,
                    c.tolerance,
                    None,
                )?,
            }),
            None => None,
        };
        Ok((cmp, reference))
    }

    /// Tear down what is still running, then report: metrics, merged log, report.html and,
    /// last, summary.json.
    fn finish(
        mut self,
        ended: Result<(), (Phase, Stop)>,
        found: Found,
    ) -> Result<RunOutcome, RunError> {
        let Found {
            mut findings,
            connect_secs,
            rounds,
        } = found;
        self.stop_sites();
        if let Some(mut enrolment) = self.enrolment.take() {
            // The portal shows how the run ended before it goes (not after a cancel: no time).
            if let (Err((_, Stop::Failed { message, .. })), false) = (&ended, cancel::requested()) {
                self.portal = enrolment
                    .finish(Err(message.clone()), Duration::from_secs(3))
                    .ok();
            }
        }
        if !self.logs_collected {
            self.collect_logs();
        }
        cancel::pause_point("report");
        findings.stopped = match ended {
            Ok(()) => None,
            Err((phase, stop)) => Some(stopped(phase.name(), stop)),
        };
        let metrics =
            crate::metrics::collect(&self.clock, connect_secs, rounds, self.portal.take());
        let head = || SummaryHead {
            scenario: self.scenario.scenario.name.clone(),
            run_id: self.run_id.clone(),
            algorithm: match &self.scenario.platform {
                // The App is the analysis.
                Some(p) => format!(
                    "flower app {}",
                    p.app.file_name().unwrap_or_default().to_string_lossy()
                ),
                None => self
                    .plan
                    .analyses
                    .iter()
                    .map(|p| p.config.kind().as_str())
                    .collect::<Vec<_>>()
                    .join("+"),
            },
        };
        let mut summary = Summary::decide(head(), self.sites.clone(), findings);
        log_end(&summary);
        self.progress.finish(format!(
            "{}: {}",
            self.scenario.scenario.name, summary.status
        ));
        // The metrics and the merged log; a write that fails (a full disk) makes the run
        // failed, and the summary, written next on the reserve's space, says why.
        let mut unwritten = Vec::new();
        if let Err(e) = self.dir.write_metrics(&metrics) {
            unwritten.push(format!("metrics.json: {e}"));
        }
        logs::detach();
        let names: Vec<String> = self.sites.iter().map(|s| s.name.clone()).collect();
        let sources: Vec<String> = names.iter().chain(&self.extra_logs).cloned().collect();
        if let Err(e) = self.dir.merge_logs(&sources) {
            unwritten.push(format!("logs/merged.jsonl: {e}"));
        }
        let analyses: Vec<String> = self.plan.analyses.iter().map(|p| p.name.clone()).collect();
        if let Err(e) = self.dir.write_releases(&analyses) {
            unwritten.push(format!("releases.jsonl: {e}"));
        }
        if let Some(spec) = &self.scenario.privacy.dp {
            summary.privacy_spent = crate::releases::spent(&self.dir.read_releases(), spec);
        }
        if self.scenario.clock.simulated() {
            match crate::clock::project(self.scenario, &names, &metrics) {
                Ok(p) => {
                    if let Err(e) = self.dir.write_projection(&p) {
                        unwritten.push(format!("projection.json: {e}"));
                    }
                    summary.projection = Some(p.summary);
                }
                Err(e) => summary.warnings.push(Warning {
                    kind: "projection".into(),
                    message: format!("no projection of the study's duration: {e}"),
                    site: None,
                }),
            }
        }
        if !unwritten.is_empty() && summary.status != crate::summary::Status::Cancelled {
            summary.status = crate::summary::Status::Failed;
            summary.error = Some(FailureInfo {
                message: format!(
                    "the run directory is incomplete: cannot write {}",
                    unwritten.join("; ")
                ),
                site: None,
                phase: Some("report".into()),
            });
        }
        // A cancel that came while the run was finishing still makes it "cancelled".
        if cancel::requested() && summary.status != crate::summary::Status::Cancelled {
            summary.status = crate::summary::Status::Cancelled;
            summary.error = Some(FailureInfo {
                message: "run cancelled while the report was written".into(),
                site: None,
                phase: Some("report".into()),
            });
        }
        // summary.json before the report: a report that fails, or hangs, cannot cost it.
        if let Some(reserve) = self.reserve.take() {
            reserve.release();
        }
        self.dir.write_summary(&summary)?;
        // The report on a thread of its own, so a cancel is obeyed within the 2 s promise even
        // while it renders; the run is then "cancelled" in phase report (its results complete).
        let (dir, s2, m2) = (self.dir.clone(), summary.clone(), metrics.clone());
        let write = move || crate::report::write_from(&dir, &s2, &m2);
        let written = if cancel::requested() {
            // Cancelled already: the report if it comes within a second, else `fedsim report`.
            cancel::wait_at_most("report", Duration::from_secs(1), write).ok_or(cancel::Cancelled)
        } else {
            cancel::wait_for("report", write)
        };
        match written {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(phase = "report", error = %e, "report.html not written"),
            Err(cancel::Cancelled) => {
                if summary.status != crate::summary::Status::Cancelled {
                    summary.status = crate::summary::Status::Cancelled;
                    summary.error = Some(FailureInfo {
                        message: "run cancelled while the report was written (the results are complete; `fedsim report RUN_DIR` writes it)".into(),
                        site: None,
                        phase: Some("report".into()),
                    });
                    self.dir.write_summary(&summary)?;
                }
            }
        }
        Ok(RunOutcome {
            dir: self.dir.clone(),
            summary,
            metrics,
            input_error: self.input_error,
        })
    }
}

/// Local sites on a kernel whose Landlock cannot wall them off completely: said, not hidden.
fn isolation_warning(scenario: &Scenario) -> Option<Warning> {
    if scenario.fleet.provider != crate::scenario::Provider::Local {
        return None;
    }
    let abi = crate::sys::confine::available();
    (abi < 6).then(|| Warning {
        kind: "isolation".into(),
        message: if abi == 0 {
            "Landlock is not available on this kernel: local sites run as processes of one user, and a step at one site could read another's files".into()
        } else {
            format!("this kernel's Landlock (ABI {abi}) walls local sites' files off, but not their TCP connections (ABI 4) or signals (ABI 6)")
        },
        site: None,
    })
}

/// describe with `extremes = true` reports each column's min and max: single records' values.
fn disclosure_warning(view: &Scenario, named: bool) -> Option<Warning> {
    let a = &view.algorithm;
    let message = "extremes = true: each column's min and max are single records' values, and the result shows them (the coordinator learns them to the bisection's width)";
    (a.kind == crate::scenario::AlgorithmKind::Describe && a.extremes == Some(true)).then(|| {
        Warning {
            kind: "disclosure".into(),
            message: match named {
                true => format!("analysis {}: {message}", view.analysis_name()),
                false => message.into(),
            },
            site: None,
        }
    })
}

/// The sites an analysis's result comes from.
fn survivors(analysed: &Analysed) -> Vec<String> {
    analysed.joined.iter().map(|j| j.name.clone()).collect()
}

/// The injected delays for a site: (algorithm round, seconds).
fn delays(scenario: &Scenario, site: &str) -> Vec<(u32, f64)> {
    scenario
        .faults
        .iter()
        .filter(|f| f.site == site && f.kind == crate::scenario::FaultKind::Slow)
        .map(|f| (f.round, f.delay_secs.unwrap_or(0.0)))
        .collect()
}

fn stopped(phase: &str, stop: Stop) -> Stopped {
    match stop {
        Stop::Cancelled => Stopped {
            cancelled: true,
            failure: FailureInfo {
                message: format!("run cancelled during {phase}"),
                site: None,
                phase: Some(phase.into()),
            },
        },
        Stop::Failed { message, site, .. } => Stopped {
            cancelled: false,
            failure: FailureInfo {
                message,
                site,
                phase: Some(phase.into()),
            },
        },
    }
}

fn log_end(summary: &Summary) {
    let status = summary.status.as_str();
    match &summary.error {
        None => tracing::info!(phase = "report", status, "run finished"),
        Some(e) => {
            tracing::error!(phase = "report", status, site = e.site.as_deref().unwrap_or(""), error = %e.message, "run finished")
        }
    }
}

/// The complete rows each agent loaded must be those prep gave it.
fn check_rows(joined: &[coordinator::JoinedSite], bundles: &[Bundle], plan: &Plan) {
    for j in joined {
        let Some(b) = bundles.iter().find(|b| b.name == j.name) else {
            continue;
        };
        let dropped = plan
            .sites
            .iter()
            .find(|p| p.name == j.name)
            .map_or(0, |p| p.dropped(plan));
        // 0: the site keeps its size to itself (secure aggregation).
        if j.rows != 0 && (j.rows as usize != b.rows - dropped || j.dropped as usize != dropped) {
            tracing::warn!(phase = "launch", site = %j.name, loaded = j.rows, dropped = j.dropped, written = b.rows, expected_dropped = dropped, "site kept a different number of rows than prep expects");
        }
    }
}
