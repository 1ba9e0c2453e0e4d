//! The non-GUI path: the same portal actions as the pages, through the JSON API. Each actor logs in
//! with its own `.env` credentials; the coordinator creates the project and the join tokens and
//! "sends" each site its own; the sites join; the coordinator starts; everyone waits for the end
//! and downloads the results.

use crate::portal::api;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use serde_json::Value;

use super::Role;

use crate::enrol::participants::{
    Actor, DriveError, DriveReport, Leave, StepFailure, StepTime, PASSWORD_VAR, TOKEN_VAR, USER_VAR,
};

/// How long one status request may wait for the run's state to change (a long poll: a watcher
/// sends a few requests a run, not twenty a second).
const LONG_POLL_SECS: f64 = 20.0;

/// Accounts acting at once. Each request in flight holds two descriptors in this process (the
/// client's socket and the portal's), so a thousand accounts at once would need two thousand
/// beside the thousand agents' connections; 32 at a time keep the portal's share constant.
const AT_ONCE: usize = 32;

/// Run `steps` with at most [`AT_ONCE`] in flight; their results in the order they finish.
/// (The steps come made, in a Vec: a stream over a borrowing closure would not be `Send` for
/// every lifetime, which the runtime's spawn asks of it.)
async fn bounded<F: std::future::Future>(steps: Vec<F>) -> Vec<F::Output> {
    stream::iter(steps)
        .buffer_unordered(AT_ONCE)
        .collect()
        .await
}

struct Api {
    http: reqwest::Client,
    base: String,
}

/// A step's failure before it is tied to an actor and phase.
type Reason = String;

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        session: Option<&str>,
        body: Option<Value>,
    ) -> Result<Vec<u8>, Reason> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(s) = session {
            req = req.bearer_auth(s);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("portal unreachable: {e}"))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?;
        if !status.is_success() {
            let said = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            return Err(format!("the portal answered {status}: {said}"));
        }
        Ok(bytes.to_vec())
    }

    async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        session: Option<&str>,
        body: Option<Value>,
    ) -> Result<Value, Reason> {
        let bytes = self.call(method, path, session, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| format!("the portal sent bad JSON: {e}"))
    }
}

/// A request body as the portal reads it.
fn body<T: serde::Serialize>(value: &T) -> Option<Value> {
    serde_json::to_value(value).ok()
}

/// Times steps and turns reasons into errors that name the actor.
#[derive(Default)]
struct Log {
    steps: std::sync::Mutex<Vec<StepTime>>,
}

impl Log {
    async fn step<T>(
        &self,
        actor: &Actor,
        phase: &str,
        step: &str,
        f: impl std::future::Future<Output = Result<T, Reason>>,
    ) -> Result<T, DriveError> {
        let t = Instant::now();
        let out = f.await;
        if let Ok(mut s) = self.steps.lock() {
            s.push(StepTime {
                account: actor.account.clone(),
                phase: phase.into(),
                step: step.into(),
                secs: t.elapsed().as_secs_f64(),
            });
        }
        out.map_err(|reason| {
            DriveError::Step(Box::new(StepFailure {
                account: actor.account.clone(),
                role: actor.role,
                phase: phase.into(),
                step: step.into(),
                reason,
                screenshot: None,
            }))
        })
    }
}

fn missing(actor: &Actor, var: &str) -> Reason {
    format!("{var} is not in {}'s .env", actor.account)
}

/// Keep what each actor's step gave; a site whose step failed leaves if `leave` lets it (and is
/// `None` from then on), any other failure ends the drive.
fn settle<T>(
    results: Vec<(usize, Result<T, DriveError>)>,
    leave: Leave<'_>,
    out: &mut [Option<T>],
) -> Result<(), DriveError> {
    for (i, r) in results {
        match r {
            Ok(v) => out[i] = Some(v),
            Err(DriveError::Step(f)) if f.role == Role::Participant && leave(&f) => out[i] = None,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One account's view of the run's end: status requests (each waiting up to `wait` seconds for
/// a change) until the run has finished (true) or failed (false).
async fn watch(
    log: &Log,
    api: &Api,
    a: &Actor,
    session: &str,
    wait: f64,
) -> Result<bool, DriveError> {
    log.step(
        a,
        "finish",
        "GET /api/project/status until the run ends",
        async {
            let mut seen = String::from("running");
            loop {
                let v = api
                    .json(
                        reqwest::Method::GET,
                        &format!("{}?since=0&state={seen}&wait={wait}", api::STATUS),
                        Some(session),
                        None,
                    )
                    .await?;
                match v["state"].as_str() {
                    Some("finished") => return Ok(true),
                    Some("failed") => return Ok(false),
                    Some(other) => seen = other.to_string(),
                    None => return Err("no state in the answer".to_string()),
                }
            }
        },
    )
    .await
}

/// Drive every actor through the API, phase by phase. A failing step ends the drive, unless the
/// failing actor is a site that `leave` lets go.
pub async fn drive(
    url: &str,
    project: &str,
    coordinator: &Actor,
    sites: &[Actor],
    portal_dir: &Path,
    leave: Leave<'_>,
) -> Result<DriveReport, DriveError> {
    let api = Api {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(AT_ONCE)
            .build()
            .map_err(|e| DriveError::Setup(format!("HTTP client: {e}")))?,
        base: url.trim_end_matches('/').to_string(),
    };
    let log = Log::default();
    let mut phases = Vec::new();
    let none = BTreeMap::new();
    let everyone: Vec<&Actor> = std::iter::once(coordinator).chain(sites).collect();

    // login
    let t = Instant::now();
    let logins = bounded(
        everyone
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let (log, api, none) = (&log, &api, &none);
                async move {
                    let r = log
                        .step(a, "login", "POST /api/login", async {
                            let user = a.var(USER_VAR, none).ok_or_else(|| missing(a, USER_VAR))?;
                            let password = a
                                .var(PASSWORD_VAR, none)
                                .ok_or_else(|| missing(a, PASSWORD_VAR))?;
                            let v = api
                                .json(
                                    reqwest::Method::POST,
                                    api::LOGIN,
                                    None,
                                    body(&api::Login { user, password }),
                                )
                                .await?;
                            v["session"]
                                .as_str()
                                .map(str::to_string)
                                .ok_or_else(|| "no session in the answer".to_string())
                        })
                        .await;
                    (i, r)
                }
            })
            .collect(),
    )
    .await;
    let mut sessions: Vec<Option<String>> = vec![None; everyone.len()];
    settle(logins, leave, &mut sessions)?;
    phases.push(("login".to_string(), t.elapsed().as_secs_f64()));
    let coord = sessions[0].clone().unwrap_or_default();
    let coord = coord.as_str();

    // create: the project and one join token per site
    let t = Instant::now();
    log.step(coordinator, "create", "POST /api/project", async {
        api.json(
            reqwest::Method::POST,
            api::PROJECT,
            Some(coord),
            body(&api::Create {
                name: project.to_string(),
            }),
        )
        .await
    })
    .await?;
    let tokens = log
        .step(coordinator, "create", "POST /api/project/tokens", async {
            let v = api
                .json(reqwest::Method::POST, api::TOKENS, Some(coord), None)
                .await?;
            serde_json::from_value::<BTreeMap<String, String>>(v)
                .map_err(|e| format!("tokens: {e}"))
        })
        .await?;
    phases.push(("create".to_string(), t.elapsed().as_secs_f64()));

    // join: each site with the token sent to it
    let t = Instant::now();
    let joins = bounded(
        everyone
            .iter()
            .zip(&sessions)
            .enumerate()
            .skip(1)
            .filter_map(|(i, (a, s))| s.as_deref().map(|s| (i, a, s)))
            .map(|(i, a, s)| {
                let tokens = &tokens;
                let log = &log;
                let api = &api;
                async move {
                    let r = log
                        .step(a, "join", "POST /api/project/join", async {
                            let sent: BTreeMap<String, String> = tokens
                                .get(&a.account)
                                .map(|t| (TOKEN_VAR.to_string(), t.clone()))
                                .into_iter()
                                .collect();
                            let token = a.var(TOKEN_VAR, &sent).ok_or_else(|| {
                                "the coordinator made no join token for this site".to_string()
                            })?;
                            api.json(
                                reqwest::Method::POST,
                                api::JOIN,
                                Some(s),
                                body(&api::Join {
                                    token: token.to_string(),
                                }),
                            )
                            .await
                            .map(|_| s.to_string())
                        })
                        .await;
                    (i, r)
                }
            })
            .collect(),
    )
    .await;
    settle(joins, leave, &mut sessions)?;
    phases.push(("join".to_string(), t.elapsed().as_secs_f64()));

    // start
    let t = Instant::now();
    log.step(coordinator, "start", "POST /api/project/start", async {
        api.json(reqwest::Method::POST, api::START, Some(coord), None)
            .await
    })
    .await?;
    phases.push(("start".to_string(), t.elapsed().as_secs_f64()));

    // finish: the coordinator watches the run to its end; then everyone looks at the state and
    // downloads the results (a thousand accounts each holding a long poll open would hold two
    // thousand descriptors for the whole run).
    let t = Instant::now();
    let active: Vec<(&Actor, &str)> = everyone
        .iter()
        .zip(&sessions)
        .filter_map(|(a, s)| s.as_deref().map(|s| (*a, s)))
        .collect();
    let mut finished = watch(&log, &api, coordinator, coord, LONG_POLL_SECS).await?;
    let states = bounded(
        active
            .iter()
            .skip(1)
            .map(|(a, s)| watch(&log, &api, a, s, 0.0))
            .collect(),
    )
    .await
    .into_iter()
    .collect::<Result<Vec<bool>, _>>()?;
    finished &= states.iter().all(|&f| f);
    let mut downloads = BTreeMap::new();
    if finished {
        let saved = bounded(
            active
                .iter()
                .map(|(a, s)| {
                    log.step(a, "finish", "GET /api/project/results", async {
                        let bytes = api
                            .call(reqwest::Method::GET, api::RESULTS, Some(s), None)
                            .await?;
                        let dir = a.dir(portal_dir);
                        let path = dir.join("results.json");
                        std::fs::create_dir_all(&dir)
                            .and_then(|()| crate::sys::fsio::write_atomic(&path, &bytes))
                            .map_err(|e| format!("saving {}: {e}", path.display()))?;
                        Ok((a.account.clone(), path))
                    })
                })
                .collect(),
        )
        .await;
        for s in saved {
            let (account, path) = s?;
            downloads.insert(account, path);
        }
    }
    phases.push(("finish".to_string(), t.elapsed().as_secs_f64()));

    let steps = log.steps.into_inner().unwrap_or_default();
    Ok(DriveReport {
        driver: "api".into(),
        url: url.to_string(),
        script: None,
        steps,
        phases,
        downloads,
        screenshots: Vec::new(),
        finished,
    })
}
