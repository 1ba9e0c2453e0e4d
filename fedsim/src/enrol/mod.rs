//! Enrolment, between provisioning and the rounds: the coordinator serves its portal, and every
//! account (the coordinator and each site, each with only its own credentials) logs in; the
//! coordinator creates the project and join tokens, the sites join, the coordinator starts. Then
//! everyone watches the run and downloads the results. Programs do this through the JSON API;
//! with `[gui] enabled = true`, headless browsers click the pages instead.
//!
//! This wing owns everything about enrolment: the participants' contract ([`participants`]),
//! the JSON API client that acts for them ([`api`]), the browsers that click for them
//! ([`gui`]), and the start gate the coordinator waits on. `portal/` is the server alone.

pub mod api;
pub mod gui;
pub mod participants;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use crate::bundle::Bundle;
use crate::federation::{NoStart, StartGate};
use crate::portal::{Account, Board, Role, Server};
use crate::scenario::{FaultKind, OnDropout, Scenario};
use gui::script::Script;
use gui::GuiOptions;
use participants::{Actor, DriveError, DriveReport, StepFailure, PASSWORD_VAR, TOKEN_VAR};

/// The coordinator's own portal account name.
pub use crate::federation::COORDINATOR;

#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    #[error("cannot start the portal's runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Script(#[from] crate::scenario::ScenarioError),
    #[error("the portal cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("site {0}: its bundle has no .env to take portal credentials from")]
    NoEnv(String),
}

/// The portal and the actors driving it, running on their own small runtime.
pub struct Enrolment {
    rt: tokio::runtime::Runtime,
    pub board: Arc<Board>,
    pub url: String,
    server: Option<Server>,
    task: Option<tokio::task::JoinHandle<Result<DriveReport, DriveError>>>,
}

/// The sites' people at the portal, each with only its own credentials. Taken from the bundles'
/// `.env` files at prep, while the controller still holds them (provisioning then moves them
/// onto the sites).
pub struct People {
    sites: Vec<Actor>,
    accounts: Vec<Account>,
    names: Vec<String>,
}

impl People {
    pub fn from_bundles(scenario: &Scenario, bundles: &[Bundle]) -> Result<People, EnrolError> {
        let mut sites = Vec::new();
        let mut accounts = Vec::new();
        for b in bundles {
            let env = b
                .files
                .as_ref()
                .map(|f| f.env.as_str())
                .ok_or_else(|| EnrolError::NoEnv(b.name.clone()))?;
            let mut actor = Actor::from_env_text(&b.name, Role::Participant, env);
            for f in scenario.faults.iter().filter(|f| f.site == b.name) {
                match f.kind {
                    FaultKind::WrongPassword => actor.typos.insert(PASSWORD_VAR.into()),
                    FaultKind::WrongToken => actor.typos.insert(TOKEN_VAR.into()),
                    _ => false,
                };
            }
            sites.push(actor);
            accounts.push(b.portal.clone());
        }
        Ok(People {
            sites,
            accounts,
            names: bundles.iter().map(|b| b.name.clone()).collect(),
        })
    }
}

/// Everything enrolment needs from the run.
pub struct Setup<'a> {
    pub scenario: &'a Scenario,
    pub algorithm: &'a str,
    pub people: People,
    /// Where the coordinator's credentials go (mode 600).
    pub controller_env: PathBuf,
    /// Where each account's downloads go, a folder per account.
    pub portal_dir: PathBuf,
    pub chromedriver_log: PathBuf,
    pub project: &'a str,
    /// Wait for people to do it all in their browsers.
    pub by_hand: bool,
}

impl Enrolment {
    /// Serve the portal and set the actors going. The coordinator's credentials are made here and
    /// written to `controller.env` (mode 600) in the run directory; each site's come from its own
    /// bundle's `.env`.
    pub fn start(s: Setup<'_>) -> Result<Enrolment, EnrolError> {
        let gui = &s.scenario.gui;
        // Checked at plan time already; this fails only for a file changed since.
        let script = gui
            .enabled
            .then(|| Script::load(gui.script.as_deref()))
            .transpose()?;
        let password = crate::auth::new_password();
        let controller_env = s.controller_env.clone();
        let text = crate::bundle::env::controller_text(COORDINATOR, &password);
        crate::bundle::write_private(&controller_env, &text).map_err(|source| {
            EnrolError::Write {
                path: controller_env.clone(),
                source,
            }
        })?;
        let coordinator = Actor::from_env_text(COORDINATOR, Role::Coordinator, &text);
        let People {
            sites,
            accounts: site_accounts,
            names,
        } = s.people;
        let mut accounts = vec![Account::generated(
            COORDINATOR,
            Role::Coordinator,
            &password,
        )];
        accounts.extend(site_accounts);
        let board = Board::new(s.algorithm, names, accounts);
        let fed = &s.scenario.federation;
        board.continue_with((fed.on_dropout == OnDropout::Continue).then_some(fed.min_sites));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fedsim-portal")
            .enable_all()
            .build()
            .map_err(EnrolError::Runtime)?;
        let addr: SocketAddr = gui.portal.parse().map_err(|_| EnrolError::Listen {
            addr: gui.portal.clone(),
            source: std::io::Error::other("not an address"),
        })?;
        let server = rt
            .block_on(crate::portal::serve(board.clone(), addr))
            .map_err(|source| EnrolError::Listen {
                addr: gui.portal.clone(),
                source,
            })?;
        let url = server.url();
        tracing::info!(phase = "enrol", %url, driver = if gui.enabled { "gui" } else { "api" }, "portal serving; log in with the credentials in controller.env");
        if s.by_hand {
            eprintln!(
                "portal {url}: waiting up to {:.0} s for people to log in, create the project, join \
                 and start. The coordinator's credentials are in {}; each site's are \
                 FEDSIM_PORTAL_USER and FEDSIM_PORTAL_PASSWORD in its own .env.",
                gui.start_timeout_secs,
                controller_env.display()
            );
            return Ok(Enrolment {
                rt,
                board,
                url,
                server: Some(server),
                task: None,
            });
        }
        let task = {
            let (board, url, project) = (board.clone(), url.clone(), s.project.to_string());
            let (portal_dir, chromedriver_log) = (s.portal_dir.clone(), s.chromedriver_log.clone());
            let (chromedriver, browser) = (gui.chromedriver.clone(), gui.browser.clone());
            let step_timeout = Duration::from_secs_f64(gui.step_timeout_secs);
            rt.spawn(async move {
                let leave = |f: &StepFailure| {
                    let gone = board.leave(&f.account, &f.detail());
                    if gone {
                        tracing::warn!(phase = "enrol", site = %f.account, error = %f.detail(), "site left at the portal; going on without it");
                    }
                    gone
                };
                let driven = match &script {
                    None => {
                        crate::enrol::api::drive(
                            &url,
                            &project,
                            &coordinator,
                            &sites,
                            &portal_dir,
                            &leave,
                        )
                        .await
                    }
                    Some(script) => {
                        if !script.exercised {
                            tracing::warn!(phase = "enrol", script = %script.source.display(), "this step script is not exercised by fedsim's tests; its selectors may be stale");
                        }
                        let opts = GuiOptions {
                            chromedriver: &chromedriver,
                            browser: &browser,
                            step_timeout,
                            portal_url: url.clone(),
                            project,
                            portal_dir: &portal_dir,
                            chromedriver_log: &chromedriver_log,
                        };
                        crate::enrol::gui::drive(script, &opts, &coordinator, &sites, &leave).await
                    }
                };
                if let Err(e) = &driven {
                    let (who, why) = match e {
                        DriveError::Step(f) => (f.account.clone(), f.detail()),
                        DriveError::Setup(m) => ("browser".to_string(), m.clone()),
                    };
                    tracing::error!(phase = "enrol", account = %who, error = %why, "portal step failed");
                    board.abort(&who, &why);
                }
                driven
            })
        };
        Ok(Enrolment {
            rt,
            board,
            url,
            server: Some(server),
            task: Some(task),
        })
    }

    /// The run is over: publish its results (or its failure), let the actors see it and download,
    /// and collect what they did. Waits at most `wait`.
    pub fn finish(
        &mut self,
        results: Result<Vec<u8>, String>,
        wait: Duration,
    ) -> Result<DriveReport, DriveError> {
        // After a failure there is nothing to download: only give the pages time to show it.
        let wait = match results {
            Ok(bytes) => {
                self.board.finish(bytes);
                wait
            }
            Err(message) => {
                self.board.fail(&message);
                wait.min(Duration::from_secs(3))
            }
        };
        let Some(mut task) = self.task.take() else {
            // By hand: give the people time to fetch the results before the portal goes.
            if self.board.state() == crate::portal::RunState::Finished {
                eprintln!(
                    "portal {}: the results are ready; waiting up to {:.0} s until everyone has downloaded them",
                    self.url,
                    wait.as_secs_f64()
                );
                let until = std::time::Instant::now() + wait;
                while !self.board.all_downloaded() && std::time::Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            self.server.take();
            return Ok(DriveReport {
                driver: "people".into(),
                url: self.url.clone(),
                finished: self.board.state() == crate::portal::RunState::Finished,
                ..DriveReport::default()
            });
        };
        let out = self.rt.block_on(async {
            match tokio::time::timeout(wait, &mut task).await {
                Ok(Ok(driven)) => driven,
                Ok(Err(join)) => Err(DriveError::Setup(format!("the driver stopped: {join}"))),
                Err(_) => {
                    task.abort();
                    let _ = task.await;
                    Err(DriveError::Setup(format!(
                        "the accounts did not finish within {:.0} s of the run's end",
                        wait.as_secs_f64()
                    )))
                }
            }
        });
        self.server.take();
        out.map(|mut report| {
            report.url = self.url.clone();
            report
        })
    }
}

impl Drop for Enrolment {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        self.server.take();
    }
}

/// The portal's board holds the rounds until the coordinator's account presses start.
impl StartGate for Board {
    fn wait_start(&self, wait: Duration, cancel: &AtomicBool) -> Result<(), NoStart> {
        Board::wait_start(self, wait, cancel).map_err(|e| match e {
            crate::portal::NoStart::Aborted { site, reason } => NoStart::Aborted { site, reason },
            crate::portal::NoStart::TimedOut => NoStart::TimedOut,
            crate::portal::NoStart::Cancelled => NoStart::Cancelled,
        })
    }
    fn left(&self) -> Vec<(String, String)> {
        Board::left(self)
    }
    fn event(&self, site: Option<&str>, text: String) {
        Board::event(self, site, text)
    }
    fn set_round(&self, round: u32) {
        Board::set_round(self, round)
    }
}

/// One analysis's entry in the results document: its name (a run of several), kind, and
/// estimates or why it failed.
pub struct Entry<'a> {
    pub name: Option<&'a str>,
    pub kind: crate::scenario::AlgorithmKind,
    pub result: Result<&'a crate::algorithms::Estimates, String>,
}

/// The file the portal offers for download: the federated results and what they came from (a
/// run of several analyses: each one's, named, under `analyses`).
pub fn results_document(project: &str, run_id: &str, entries: &[Entry]) -> Vec<u8> {
    let mut doc = serde_json::json!({
        "fedsim_version": env!("CARGO_PKG_VERSION"),
        "project": project,
        "run_id": run_id,
    });
    match entries {
        [Entry {
            name: None,
            kind,
            result,
        }] => {
            doc["algorithm"] = crate::reference::kind_name(*kind).into();
            doc["results"] = serde_json::to_value(result.as_ref().ok()).unwrap_or_default();
        }
        _ => {
            doc["analyses"] = entries
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "name": e.name,
                        "algorithm": crate::reference::kind_name(e.kind),
                        "results": e.result.as_ref().ok(),
                        "error": e.result.as_ref().err(),
                    })
                })
                .collect();
        }
    }
    serde_json::to_vec_pretty(&doc).unwrap_or_default()
}
