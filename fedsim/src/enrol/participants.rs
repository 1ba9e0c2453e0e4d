//! The people at the portal: one actor per account (the coordinator and each site), each holding
//! only its own credentials, and what driving them produced (step times, downloads, failures).
//! Two drivers act for them: the JSON API ([`crate::enrol::api`]) and a browser ([`crate::enrol::gui`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::portal::Role;

/// The variables holding an account's portal login, in its `.env` (named by the bundle).
pub use crate::bundle::env::{PORTAL_PASSWORD as PASSWORD_VAR, PORTAL_USER as USER_VAR};
/// The variable a site's join token arrives in (from the coordinator).
pub const TOKEN_VAR: &str = "JOIN_TOKEN";

/// One account at the portal, with its own `.env` and nothing else.
pub struct Actor {
    pub account: String,
    pub role: Role,
    env: BTreeMap<String, String>,
    /// Variables whose value this actor's person mistypes (fault injection).
    pub typos: BTreeSet<String>,
}

impl std::fmt::Debug for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Actor")
            .field("account", &self.account)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl Actor {
    /// From the text of a `.env` file (comments and blank lines skipped).
    pub fn from_env_text(account: &str, role: Role, text: &str) -> Actor {
        // A malformed file gives an actor with nothing to type: its login fails, named.
        let env = crate::bundle::env::vars(text).unwrap_or_default();
        Actor {
            account: account.to_string(),
            role,
            env,
            typos: BTreeSet::new(),
        }
    }

    /// A variable from this actor's `.env`, or from what was sent to it (`sent`), as typed: a
    /// variable in `typos` comes out with its last character changed.
    pub fn var(&self, name: &str, sent: &BTreeMap<String, String>) -> Option<String> {
        let value = self.env.get(name).or_else(|| sent.get(name))?.clone();
        Some(if self.typos.contains(name) {
            mistype(&value)
        } else {
            value
        })
    }

    pub fn is_site(&self) -> bool {
        self.role == Role::Participant
    }

    /// Where this actor's downloads and screenshots go: its own folder among the portal's.
    pub fn dir(&self, portal_dir: &Path) -> PathBuf {
        portal_dir.join(&self.account)
    }
}

fn mistype(v: &str) -> String {
    let mut s: Vec<char> = v.chars().collect();
    match s.last_mut() {
        Some(c) => *c = if *c == 'x' { 'y' } else { 'x' },
        None => s.push('x'),
    }
    s.into_iter().collect()
}

/// How long one step took.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepTime {
    pub account: String,
    pub phase: String,
    /// What was done, e.g. "click #login" or "POST /api/login" (never a value typed).
    pub step: String,
    pub secs: f64,
}

/// What a driver did for all actors.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct DriveReport {
    /// "api" or "gui".
    pub driver: String,
    /// Where the portal was served.
    pub url: String,
    /// The step script, for the GUI driver.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    pub steps: Vec<StepTime>,
    /// Seconds per phase (from the first step starting to the last ending), in order.
    pub phases: Vec<(String, f64)>,
    /// The results file each account downloaded.
    pub downloads: BTreeMap<String, PathBuf>,
    /// Screenshots taken on purpose (step "screenshot"), by account.
    pub screenshots: Vec<PathBuf>,
    /// Whether the run reached "finished" while the actors watched.
    pub finished: bool,
}

/// Why driving the actors stopped.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DriveError {
    #[error(transparent)]
    Step(Box<StepFailure>),
    /// The browsers could not be set up (no chromedriver, no browser): nobody's fault at a site.
    #[error("browser setup: {0}")]
    Setup(String),
}

impl DriveError {
    /// The account whose step failed.
    pub fn account(&self) -> Option<&str> {
        match self {
            DriveError::Step(s) => Some(&s.account),
            DriveError::Setup(_) => None,
        }
    }
}

/// Asked when a site's step fails: true lets that site go and the others carry on.
pub type Leave<'a> = &'a (dyn Fn(&StepFailure) -> bool + Sync);

/// One actor's step failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {phase} step {step}: {reason}{}", who(.role, .account), shot(.screenshot))]
pub struct StepFailure {
    pub account: String,
    pub role: Role,
    pub phase: String,
    pub step: String,
    pub reason: String,
    pub screenshot: Option<PathBuf>,
}

impl StepFailure {
    /// The failure without the account's name (for messages that already name it).
    pub fn detail(&self) -> String {
        format!(
            "{} step {}: {}{}",
            self.phase,
            self.step,
            self.reason,
            shot(&self.screenshot)
        )
    }
}

fn who(role: &Role, account: &str) -> String {
    match role {
        Role::Coordinator => format!("coordinator account {account}"),
        Role::Participant => format!("site {account}"),
    }
}

fn shot(s: &Option<PathBuf>) -> String {
    s.as_ref()
        .map(|p| format!(" (screenshot: {})", p.display()))
        .unwrap_or_default()
}

/// Every download holds the results the coordinator computed, byte for byte.
pub fn check_downloads(report: &DriveReport, expected: &[u8]) -> Result<(), String> {
    for (account, path) in &report.downloads {
        let got = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if got != expected {
            return Err(format!(
                "the results {account} downloaded ({}) differ from the coordinator's",
                path.display()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_actor_reads_its_env_and_mistypes_only_what_it_is_told_to() {
        let mut a = Actor::from_env_text(
            "a",
            Role::Participant,
            "# c\nFEDSIM_PORTAL_USER=a\nFEDSIM_PORTAL_PASSWORD=secret\n",
        );
        let sent = BTreeMap::from([("JOIN_TOKEN".to_string(), "abc".to_string())]);
        assert_eq!(a.var(USER_VAR, &sent).as_deref(), Some("a"));
        assert_eq!(a.var(TOKEN_VAR, &sent).as_deref(), Some("abc"));
        assert_eq!(a.var("NOPE", &sent), None);
        a.typos.insert(PASSWORD_VAR.into());
        assert_eq!(a.var(PASSWORD_VAR, &sent).as_deref(), Some("secrex"));
        assert!(!format!("{a:?}").contains("secret"));
    }
}
