//! The coordinator's web portal: accounts, one project, join tokens, run state, per-site logs and
//! results, as HTML pages for people and as a JSON API for programs (the non-GUI path).
//!
//! All state lives in a [`Board`] that the HTTP handlers and the coordinator share. The board keeps
//! password verifiers (argon2), never passwords; join tokens are shown to the coordinator only until
//! they are used.

pub mod api;
mod pages;
mod routes;
pub mod throttle;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Argon2, PasswordHash};
use serde::{Deserialize, Serialize};

pub use routes::{serve, Server};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Coordinator,
    Participant,
}

/// A portal account: its name, role and password verifier.
#[derive(Clone)]
pub struct Account {
    pub user: String,
    pub role: Role,
    verifier: Verifier,
}

/// How a password is checked. A slow KDF protects secrets people choose, which can be guessed;
/// against a random 128-bit secret that fedsim made, a guess is hopeless either way, and a hash
/// of 19 MiB of argon2 memory per login only stops a thousand sites from logging in at once.
#[derive(Clone)]
enum Verifier {
    /// A secret fedsim generated (at least 128 random bits): its SHA-256.
    Generated([u8; 32]),
    /// A secret a person chose: argon2id with a fresh salt (PHC string), slow on purpose.
    Chosen(String),
}

fn sha256(password: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(password.as_bytes()).into()
}

/// Argon2 hashes running at once: each takes 19 MiB, so a crowd of logins queues here instead
/// of taking the machine's memory.
static ARGON2_SLOTS: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

fn with_argon2_slot<T>(f: impl FnOnce() -> T) -> T {
    let most = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (count, freed) = &ARGON2_SLOTS;
    {
        let mut n = count.lock().unwrap_or_else(|p| p.into_inner());
        while *n >= most {
            n = freed.wait(n).unwrap_or_else(|p| p.into_inner());
        }
        *n += 1;
    }
    /// Gives the slot back however `f` ends.
    struct Release;
    impl Drop for Release {
        fn drop(&mut self) {
            let (count, freed) = &ARGON2_SLOTS;
            *count.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
            freed.notify_one();
        }
    }
    let _release = Release;
    f()
}

impl Account {
    /// An account whose password a person chose (or was given by someone): argon2, fresh salt.
    /// The password itself is not kept.
    pub fn new(user: &str, role: Role, password: &str) -> Account {
        let phc = with_argon2_slot(|| {
            Argon2::default()
                .hash_password(password.as_bytes())
                .expect("argon2 with default parameters hashes any password")
                .to_string()
        });
        Account {
            user: user.to_string(),
            role,
            verifier: Verifier::Chosen(phc),
        }
    }

    /// An account whose password fedsim generated (see [`crate::auth::new_password`]).
    pub fn generated(user: &str, role: Role, password: &str) -> Account {
        Account {
            user: user.to_string(),
            role,
            verifier: Verifier::Generated(sha256(password)),
        }
    }

    fn verify(&self, password: &str) -> bool {
        match &self.verifier {
            Verifier::Generated(digest) => {
                let got = sha256(password);
                // Constant time: every byte is compared whatever the first difference.
                got.iter()
                    .zip(digest)
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
            }
            Verifier::Chosen(phc) => PasswordHash::new(phc)
                .map(|h| {
                    with_argon2_slot(|| {
                        Argon2::default()
                            .verify_password(password.as_bytes(), &h)
                            .is_ok()
                    })
                })
                .unwrap_or(false),
        }
    }
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("user", &self.user)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// No project has been created yet.
    NoProject,
    /// Project created; sites are joining.
    Open,
    Running,
    Finished,
    Failed,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::NoProject => "no project",
            RunState::Open => "open",
            RunState::Running => "running",
            RunState::Finished => "finished",
            RunState::Failed => "failed",
        }
    }
}

/// One log line; `site` None is the coordinator's own, which only the coordinator sees.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub seq: usize,
    pub secs: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    pub text: String,
}

/// Who is asking: the account behind a session.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub user: String,
    pub role: Role,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortalError {
    #[error("wrong user name or password")]
    Login,
    #[error("not logged in")]
    NoSession,
    #[error("only the coordinator can {0}")]
    CoordinatorOnly(&'static str),
    #[error("only a participating site can {0}")]
    ParticipantOnly(&'static str),
    #[error("there is no project yet")]
    NoProject,
    #[error("a project already exists")]
    ProjectExists,
    #[error("the project name must not be empty")]
    EmptyName,
    #[error("this join token is not valid for this site")]
    BadToken,
    #[error("this site has already joined")]
    AlreadyJoined,
    #[error("this site has not joined the project")]
    NotJoined,
    #[error("cannot start yet: waiting for {0} to join")]
    NotAllJoined(String),
    #[error("the run has already started")]
    AlreadyStarted,
    #[error("no results: the run is {0}")]
    NoResults(&'static str),
    /// Too many wrong passwords for this account, or from this address.
    #[error("too many failed logins: try again in {secs} s")]
    TooMany { secs: u64 },
    /// More password checks queued than the portal takes at once.
    #[error("the portal is busy checking passwords: try again in a moment")]
    Busy,
}

/// A project as one viewer may see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProjectView {
    pub name: String,
    pub algorithm: String,
    pub state: RunState,
    pub round: u32,
    /// Every invited site with whether it has joined.
    pub sites: Vec<SiteView>,
    /// Unused join tokens by site: the coordinator's view only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tokens: BTreeMap<String, String>,
    pub tokens_made: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SiteView {
    pub name: String,
    pub joined: bool,
    /// It failed at the portal and the run goes on without it.
    #[serde(default)]
    pub left: bool,
}

/// The small, frequently polled part: what pages refresh in place.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub state: RunState,
    pub round: u32,
    pub joined: Vec<String>,
    pub sites: usize,
    /// Log lines this viewer may see, from `since` on.
    pub events: Vec<Event>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

struct Project {
    name: String,
    /// Join tokens by site; a site's token is dropped once used.
    tokens: BTreeMap<String, String>,
    tokens_made: bool,
    /// A set: a thousand sites joining each ask whether they have, and each page lists them.
    joined: std::collections::BTreeSet<String>,
}

struct State {
    accounts: Vec<Account>,
    sessions: HashMap<String, usize>,
    invited: Vec<String>,
    algorithm: String,
    project: Option<Project>,
    state: RunState,
    round: u32,
    /// The log, the newest [`MAX_EVENTS`] lines; `next_seq` numbers them.
    events: std::collections::VecDeque<Event>,
    next_seq: usize,
    results: Option<Vec<u8>>,
    failure: Option<String>,
    /// A site's driver gave up (e.g. its login failed): the run cannot start.
    abort: Option<(String, String)>,
    /// Sites that failed at the portal and were let go, with why.
    left: Vec<(String, String)>,
    /// With on_dropout = "continue": the fewest sites the run may go on with.
    continue_with: Option<usize>,
    /// Accounts that have downloaded the results.
    downloaded: std::collections::BTreeSet<String>,
}

/// The portal's state, shared by the HTTP handlers, the coordinator and the controller.
pub struct Board {
    state: Mutex<State>,
    changed: Condvar,
    /// The run state, for HTTP handlers that wait for it to change (long polls) without holding
    /// a thread each: a thousand sites watching a run cost a thousand idle futures.
    watch: tokio::sync::watch::Sender<RunState>,
    started: Instant,
    /// Failed logins per account and per address: guessing is slowed down.
    throttle: Mutex<throttle::Throttle>,
}

/// The portal keeps this many log lines (the page shows them; a flood of refusals must not grow
/// it without end).
pub const MAX_EVENTS: usize = 10_000;

/// Why waiting for the coordinator's start ended without one.
#[derive(Debug)]
pub enum NoStart {
    Aborted { site: String, reason: String },
    TimedOut,
    Cancelled,
}

impl Board {
    /// `invited`: the sites' names, in order; `accounts`: the coordinator's and the sites'.
    pub fn new(algorithm: &str, invited: Vec<String>, accounts: Vec<Account>) -> Arc<Board> {
        Arc::new(Board {
            state: Mutex::new(State {
                accounts,
                sessions: HashMap::new(),
                invited,
                algorithm: algorithm.to_string(),
                project: None,
                state: RunState::NoProject,
                round: 0,
                events: Default::default(),
                next_seq: 0,
                results: None,
                failure: None,
                abort: None,
                left: Vec::new(),
                continue_with: None,
                downloaded: Default::default(),
            }),
            changed: Condvar::new(),
            watch: tokio::sync::watch::Sender::new(RunState::NoProject),
            started: Instant::now(),
            throttle: Mutex::new(throttle::Throttle::default()),
        })
    }

    /// Let a site that fails at the portal leave while at least `min` sites remain (the
    /// scenario's on_dropout = "continue"); without this, such a failure stops the run.
    pub fn continue_with(&self, min: Option<usize>) {
        self.lock().continue_with = min;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push_event(&self, st: &mut State, site: Option<&str>, text: String) {
        let seq = st.next_seq;
        st.next_seq += 1;
        if st.events.len() >= MAX_EVENTS {
            st.events.pop_front();
        }
        st.events.push_back(Event {
            seq,
            secs: self.started.elapsed().as_secs_f64(),
            site: site.map(str::to_string),
            text,
        });
    }

    /// A log line for `site` (None: the coordinator's own).
    pub fn event(&self, site: Option<&str>, text: impl Into<String>) {
        let mut st = self.lock();
        self.push_event(&mut st, site, text.into());
        self.changed.notify_all();
    }

    /// Check a password (slow on purpose, argon2, for a password a person chose) and open a session.
    /// `source`: the address the attempt comes from. An account or address locked out after
    /// failed attempts is refused before any password check.
    pub fn login(
        &self,
        user: &str,
        password: &str,
        source: Option<std::net::IpAddr>,
    ) -> Result<(String, Viewer), PortalError> {
        let throttle = || self.throttle.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(secs) = throttle().wait(user, source) {
            return Err(PortalError::TooMany { secs });
        }
        let account = {
            let st = self.lock();
            st.accounts
                .iter()
                .position(|a| a.user == user)
                .map(|i| (i, st.accounts[i].clone()))
        };
        let Some((index, account)) = account else {
            // The work of a generated account's check (account names are no secret: the project
            // page lists the sites).
            let _ = Account::generated("", Role::Participant, password).verify(password);
            throttle().failed(user, source);
            return Err(PortalError::Login);
        };
        if !account.verify(password) {
            let mut t = throttle();
            let was_free = t.wait(user, None).is_none();
            t.failed(user, source);
            let locked = t.wait(user, None);
            drop(t);
            // One line for the first refusals and one each time the account is locked: a
            // guesser's thousands of tries do not each become a line of the site's log.
            let site = (account.role == Role::Participant).then_some(user);
            match locked {
                None => self.event(site, "login refused: wrong password"),
                Some(secs) if was_free => self.event(
                    site,
                    format!("login refused: wrong password; further logins wait {secs} s"),
                ),
                Some(_) => {}
            }
            return Err(PortalError::Login);
        }
        throttle().succeeded(user);
        let session = crate::auth::new_token();
        let mut st = self.lock();
        st.sessions.insert(session.clone(), index);
        let site = (account.role == Role::Participant).then_some(user);
        self.push_event(&mut st, site, format!("{user} logged in"));
        Ok((
            session,
            Viewer {
                user: account.user,
                role: account.role,
            },
        ))
    }

    pub fn logout(&self, session: &str) {
        self.lock().sessions.remove(session);
    }

    pub fn viewer(&self, session: Option<&str>) -> Result<Viewer, PortalError> {
        let st = self.lock();
        let i = session
            .and_then(|s| st.sessions.get(s))
            .ok_or(PortalError::NoSession)?;
        let a = &st.accounts[*i];
        Ok(Viewer {
            user: a.user.clone(),
            role: a.role,
        })
    }

    pub fn create_project(&self, who: &Viewer, name: &str) -> Result<(), PortalError> {
        if who.role != Role::Coordinator {
            return Err(PortalError::CoordinatorOnly("create a project"));
        }
        let name = name.trim();
        if name.is_empty() {
            return Err(PortalError::EmptyName);
        }
        let mut st = self.lock();
        if st.project.is_some() {
            return Err(PortalError::ProjectExists);
        }
        st.project = Some(Project {
            name: name.to_string(),
            tokens: BTreeMap::new(),
            tokens_made: false,
            joined: Default::default(),
        });
        self.set_state(&mut st, RunState::Open);
        self.push_event(&mut st, None, format!("project {name:?} created"));
        self.changed.notify_all();
        Ok(())
    }

    /// One fresh token per invited site that has not joined (replacing any unused one).
    pub fn make_tokens(&self, who: &Viewer) -> Result<BTreeMap<String, String>, PortalError> {
        if who.role != Role::Coordinator {
            return Err(PortalError::CoordinatorOnly("create join tokens"));
        }
        let mut st = self.lock();
        let invited = remaining(&st);
        let project = st.project.as_mut().ok_or(PortalError::NoProject)?;
        for site in invited.iter().filter(|s| !project.joined.contains(*s)) {
            // Short enough to type, long enough not to guess: 128 bits.
            let token = crate::auth::new_token()[..32].to_string();
            project.tokens.insert(site.clone(), token);
        }
        project.tokens_made = true;
        let tokens = project.tokens.clone();
        self.push_event(
            &mut st,
            None,
            format!("join tokens created for {} sites", tokens.len()),
        );
        self.changed.notify_all();
        Ok(tokens)
    }

    /// A site joins with the token made for it; a token works once, and for its own site only.
    pub fn join(&self, who: &Viewer, token: &str) -> Result<(), PortalError> {
        if who.role != Role::Participant {
            return Err(PortalError::ParticipantOnly("join a project"));
        }
        let mut st = self.lock();
        let project = st.project.as_mut().ok_or(PortalError::NoProject)?;
        if project.joined.contains(&who.user) {
            return Err(PortalError::AlreadyJoined);
        }
        let expected = project.tokens.get(&who.user);
        if !expected.is_some_and(|t| same_secret(t, token.trim())) {
            self.push_event(
                &mut st,
                Some(&who.user.clone()),
                "join refused: the token is not valid for this site".to_string(),
            );
            return Err(PortalError::BadToken);
        }
        project.tokens.remove(&who.user);
        project.joined.insert(who.user.clone());
        self.push_event(
            &mut st,
            Some(&who.user.clone()),
            format!("{} joined the project", who.user),
        );
        self.changed.notify_all();
        Ok(())
    }

    pub fn start(&self, who: &Viewer) -> Result<(), PortalError> {
        if who.role != Role::Coordinator {
            return Err(PortalError::CoordinatorOnly("start the run"));
        }
        let mut st = self.lock();
        let invited = remaining(&st);
        let state = st.state;
        let project = st.project.as_ref().ok_or(PortalError::NoProject)?;
        if state != RunState::Open {
            return Err(PortalError::AlreadyStarted);
        }
        let missing: Vec<&str> = invited
            .iter()
            .filter(|s| !project.joined.contains(*s))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(PortalError::NotAllJoined(missing.join(", ")));
        }
        self.set_state(&mut st, RunState::Running);
        self.push_event(&mut st, None, "run started by the coordinator".to_string());
        self.changed.notify_all();
        Ok(())
    }

    pub fn project(&self, who: &Viewer) -> Result<ProjectView, PortalError> {
        let st = self.lock();
        let project = st.project.as_ref().ok_or(PortalError::NoProject)?;
        if who.role == Role::Participant && !project.joined.contains(&who.user) {
            return Err(PortalError::NotJoined);
        }
        Ok(ProjectView {
            name: project.name.clone(),
            algorithm: st.algorithm.clone(),
            state: st.state,
            round: st.round,
            sites: st
                .invited
                .iter()
                .map(|s| SiteView {
                    name: s.clone(),
                    joined: project.joined.contains(s),
                    left: st.left.iter().any(|(l, _)| l == s),
                })
                .collect(),
            tokens: if who.role == Role::Coordinator {
                project.tokens.clone()
            } else {
                BTreeMap::new()
            },
            tokens_made: project.tokens_made,
            failure: st.failure.clone(),
        })
    }

    /// Run state and the log lines `who` may see: a site its own, the coordinator all.
    pub fn status(&self, who: &Viewer, since: usize) -> Status {
        let st = self.lock();
        let member = who.role == Role::Coordinator
            || st
                .project
                .as_ref()
                .is_some_and(|p| p.joined.contains(&who.user));
        let joined = if member { joined(&st) } else { Vec::new() };
        Status {
            state: st.state,
            round: if member { st.round } else { 0 },
            joined,
            sites: remaining(&st).len(),
            events: st
                .events
                .iter()
                .filter(|e| e.seq >= since)
                .filter(|e| visible(who, e))
                .cloned()
                .collect(),
            failure: if member { st.failure.clone() } else { None },
        }
    }

    /// The results file, for the coordinator and the sites that took part.
    pub fn results(&self, who: &Viewer) -> Result<Vec<u8>, PortalError> {
        self.fetch_results(who, true)
    }

    /// The results to show on a page (not counted as a download).
    pub fn results_to_show(&self, who: &Viewer) -> Result<Vec<u8>, PortalError> {
        self.fetch_results(who, false)
    }

    fn fetch_results(&self, who: &Viewer, download: bool) -> Result<Vec<u8>, PortalError> {
        let mut st = self.lock();
        let project = st.project.as_ref().ok_or(PortalError::NoProject)?;
        if who.role == Role::Participant && !project.joined.contains(&who.user) {
            return Err(PortalError::NotJoined);
        }
        let results = st
            .results
            .clone()
            .ok_or(PortalError::NoResults(st.state.as_str()))?;
        if download {
            st.downloaded.insert(who.user.clone());
        }
        Ok(results)
    }

    /// Whether the coordinator and every site that joined have fetched the results.
    pub fn all_downloaded(&self) -> bool {
        let st = self.lock();
        let joined: std::collections::BTreeSet<String> = joined(&st).into_iter().collect();
        st.accounts
            .iter()
            .filter(|a| a.role == Role::Coordinator || joined.contains(&a.user))
            .all(|a| st.downloaded.contains(&a.user))
    }

    pub fn project_name(&self) -> Option<String> {
        self.lock().project.as_ref().map(|p| p.name.clone())
    }

    // --- the controller's and coordinator's side ---

    /// Block until the coordinator presses start, a site's driver gives up, `cancel` is set or
    /// `timeout` passes.
    pub fn wait_start(
        &self,
        timeout: Duration,
        cancel: &std::sync::atomic::AtomicBool,
    ) -> Result<(), NoStart> {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            if let Some((site, reason)) = st.abort.clone() {
                return Err(NoStart::Aborted { site, reason });
            }
            if st.state == RunState::Running {
                return Ok(());
            }
            if cancel.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(NoStart::Cancelled);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(NoStart::TimedOut);
            }
            let wait = (deadline - now).min(Duration::from_millis(100));
            st = self
                .changed
                .wait_timeout(st, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// A site's driver failed: the run must not start (or must end) and names the site.
    pub fn abort(&self, site: &str, reason: &str) {
        let mut st = self.lock();
        if st.abort.is_none() {
            st.abort = Some((site.to_string(), reason.to_string()));
        }
        self.changed.notify_all();
    }

    pub fn aborted(&self) -> Option<(String, String)> {
        self.lock().abort.clone()
    }

    /// A site failed at the portal: let it go if the policy allows (true), so the others can
    /// start without it.
    pub fn leave(&self, site: &str, reason: &str) -> bool {
        let mut st = self.lock();
        let Some(min) = st.continue_with else {
            return false;
        };
        if st.state != RunState::NoProject && st.state != RunState::Open {
            return false;
        }
        if !st.invited.iter().any(|s| s == site) || remaining(&st).len() <= min {
            return false;
        }
        st.left.push((site.to_string(), reason.to_string()));
        if let Some(p) = st.project.as_mut() {
            p.tokens.remove(site);
        }
        self.push_event(
            &mut st,
            Some(site),
            format!("{site} left the project: {reason}; the others go on without it"),
        );
        self.changed.notify_all();
        true
    }

    /// The sites that left at the portal, with why.
    pub fn left(&self) -> Vec<(String, String)> {
        self.lock().left.clone()
    }

    pub fn set_round(&self, round: u32) {
        let mut st = self.lock();
        st.round = round;
        self.changed.notify_all();
    }

    /// The run is over with these results (the file sites download).
    pub fn finish(&self, results: Vec<u8>) {
        let mut st = self.lock();
        st.results = Some(results);
        self.set_state(&mut st, RunState::Finished);
        self.push_event(&mut st, None, "run finished; results are ready".to_string());
        self.changed.notify_all();
    }

    pub fn fail(&self, message: &str) {
        let mut st = self.lock();
        if matches!(st.state, RunState::Finished | RunState::Failed) {
            return;
        }
        st.failure = Some(message.to_string());
        self.set_state(&mut st, RunState::Failed);
        self.push_event(&mut st, None, format!("run failed: {message}"));
        self.changed.notify_all();
    }

    pub fn state(&self) -> RunState {
        self.lock().state
    }

    fn set_state(&self, st: &mut State, state: RunState) {
        st.state = state;
        self.watch.send_replace(state);
    }

    /// Wait (asynchronously) until the run's state is no longer `from`, at most `wait`.
    pub async fn state_change(&self, from: RunState, wait: Duration) {
        let mut rx = self.watch.subscribe();
        let _ = tokio::time::timeout(wait, rx.wait_for(|s| *s != from)).await;
    }
}

/// The sites that have joined the project (none before there is one).
fn joined(st: &State) -> Vec<String> {
    st.project
        .as_ref()
        .map(|p| p.joined.iter().cloned().collect())
        .unwrap_or_default()
}

/// The invited sites that have not left.
fn remaining(st: &State) -> Vec<String> {
    st.invited
        .iter()
        .filter(|s| !st.left.iter().any(|(l, _)| l == *s))
        .cloned()
        .collect()
}

fn visible(who: &Viewer, e: &Event) -> bool {
    who.role == Role::Coordinator || e.site.as_deref() == Some(who.user.as_str())
}

/// Compare two secrets through their digests, so timing says nothing about the prefix.
fn same_secret(a: &str, b: &str) -> bool {
    use sha2::{Digest, Sha256};
    Sha256::digest(a.as_bytes()) == Sha256::digest(b.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board() -> Arc<Board> {
        Board::new(
            "linear regression",
            vec!["a".into(), "b".into()],
            vec![
                Account::new("coordinator", Role::Coordinator, "pc"),
                Account::new("a", Role::Participant, "pa"),
                Account::new("b", Role::Participant, "pb"),
            ],
        )
    }

    #[test]
    fn project_lifecycle_and_who_may_do_what() {
        let b = board();
        assert_eq!(b.login("a", "pb", None).unwrap_err(), PortalError::Login);
        assert_eq!(
            b.login("nobody", "pa", None).unwrap_err(),
            PortalError::Login
        );
        let (_, c) = b.login("coordinator", "pc", None).unwrap();
        let (_, a) = b.login("a", "pa", None).unwrap();
        let (_, bb) = b.login("b", "pb", None).unwrap();
        assert_eq!(
            b.create_project(&a, "x").unwrap_err(),
            PortalError::CoordinatorOnly("create a project")
        );
        b.create_project(&c, "study").unwrap();
        assert_eq!(b.project(&a).unwrap_err(), PortalError::NotJoined);
        let tokens = b.make_tokens(&c).unwrap();
        assert_eq!(tokens.len(), 2);
        // b's token does not let a in, and a garbled one neither.
        assert_eq!(b.join(&a, &tokens["b"]).unwrap_err(), PortalError::BadToken);
        assert_eq!(b.join(&a, "0000").unwrap_err(), PortalError::BadToken);
        b.join(&a, &tokens["a"]).unwrap();
        assert_eq!(
            b.join(&a, &tokens["a"]).unwrap_err(),
            PortalError::AlreadyJoined
        );
        assert_eq!(
            b.start(&c).unwrap_err(),
            PortalError::NotAllJoined("b".into())
        );
        assert_eq!(
            b.start(&a).unwrap_err(),
            PortalError::CoordinatorOnly("start the run")
        );
        b.join(&bb, &tokens["b"]).unwrap();
        // Used tokens are no longer shown.
        assert!(b.project(&c).unwrap().tokens.is_empty());
        b.start(&c).unwrap();
        assert_eq!(b.start(&c).unwrap_err(), PortalError::AlreadyStarted);
        b.event(Some("a"), "round 1 for a");
        b.event(Some("b"), "round 1 for b");
        let seen_by_a = b.status(&a, 0).events;
        assert!(seen_by_a.iter().all(|e| e.site.as_deref() == Some("a")));
        assert!(seen_by_a.iter().any(|e| e.text == "round 1 for a"));
        let seen_by_c = b.status(&c, 0).events;
        assert!(seen_by_c.iter().any(|e| e.text == "round 1 for b"));
        assert!(seen_by_c.iter().any(|e| e.site.is_none()));
        assert_eq!(
            b.results(&a).unwrap_err(),
            PortalError::NoResults("running")
        );
        b.finish(b"{}".to_vec());
        assert_eq!(b.results(&bb).unwrap(), b"{}");
    }

    #[test]
    fn an_abort_ends_the_wait_for_start_naming_the_site() {
        let b = board();
        let never = std::sync::atomic::AtomicBool::new(false);
        b.abort("b", "login refused");
        match b.wait_start(Duration::from_secs(5), &never) {
            Err(NoStart::Aborted { site, .. }) => assert_eq!(site, "b"),
            other => panic!("{other:?}"),
        }
    }
}
