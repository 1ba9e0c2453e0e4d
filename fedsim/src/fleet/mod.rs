//! Where sites run. One trait, one implementation per provider; the federation does not care which.

pub mod local;

use std::net::SocketAddr;
use std::path::Path;

use crate::prep::Bundle;

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("cannot start the agent of {site}: {reason}")]
    Start { site: String, reason: String },
    #[error("cannot collect the log of {site}: {reason}")]
    Logs { site: String, reason: String },
}

/// How a site's agent ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SiteExit {
    pub site: String,
    pub pid: u32,
    /// Exit code, or None when it was killed by a signal.
    pub code: Option<i32>,
    /// True when fedsim had to kill it (it did not exit on its own when the run ended).
    pub killed: bool,
}

pub trait Fleet {
    /// Start one agent per bundle, each told to dial `coordinator`.
    fn launch(&mut self, bundles: &[Bundle], coordinator: SocketAddr) -> Result<(), FleetError>;
    /// A site whose agent has died, with the reason, if any has.
    fn dead_site(&mut self) -> Option<(String, String)>;
    /// Stop every agent (waiting briefly for a clean exit first) and report how each ended.
    fn stop(&mut self) -> Vec<SiteExit>;
    /// Copy each site's log into `dest/<site>.jsonl`.
    fn collect_logs(&mut self, dest: &Path) -> Result<Vec<String>, FleetError>;
}
