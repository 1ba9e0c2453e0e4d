//! Open files. Every local site is one connection, so one descriptor, in the controller; a
//! thousand sites need more than the usual soft limit of 1024. Like servers do, fedsim raises its
//! soft limit to the hard one when it starts, and refuses a run the hard limit cannot carry
//! before anything starts, naming the limit and the fix.
//!
//! Measured per site in the controller (`tests/scale.rs` counts them): one socket for a local
//! site (its connection to the coordinator; the reading and writing halves share it), plus a
//! constant share: the portal's connections (at most 64 in flight, 32 accounts acting at once),
//! the logs and the runtime. Remote sites add their SSH session and, with a tunnel, its forward.

use crate::scenario::{Provider, Scenario};

/// Descriptors fedsim itself needs beside its sites: logs, the runtime, the portal's 32
/// accounts at once (two ends each), listening sockets.
pub const BASE: u64 = 160;

/// The controller's descriptors per site, by provider: its connection for a local site; for a
/// remote one also its SSH session, a tunnel's forward and the listener behind it.
pub fn per_site(provider: Provider) -> u64 {
    match provider {
        Provider::Local => 1,
        Provider::Ssh | Provider::Vagrant | Provider::Vm => 4,
    }
}

/// What a run of `scenario` needs open at once, at most.
pub fn needed(scenario: &Scenario) -> u64 {
    BASE + per_site(scenario.fleet.provider) * scenario.partition.sites as u64
}

/// The soft and hard limits on open files, as they are now.
pub fn open_files() -> (u64, u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return (1024, 1024);
    }
    (r.rlim_cur, r.rlim_max)
}

/// Raise the soft limit on open files to the hard one (what a process may do without privilege),
/// and return the new soft limit.
pub fn raise_open_files() -> u64 {
    let (soft, hard) = open_files();
    if soft < hard {
        let r = libc::rlimit {
            rlim_cur: hard,
            rlim_max: hard,
        };
        // SAFETY: setrlimit reads the struct it is given; raising the soft limit up to the hard
        // one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } == 0 {
            return hard;
        }
    }
    soft
}

/// The run's sites need more open files than this process may have.
#[derive(Debug, thiserror::Error)]
#[error("{sites} {provider} sites need about {needed} open files in the controller ({per} per site and {BASE} for fedsim itself), but this process may open at most {hard} (the hard limit, `ulimit -Hn`); raise it (as root: `ulimit -n {needed}` in the shell that runs fedsim, or `nofile` in /etc/security/limits.conf), or run fewer sites on this machine")]
pub struct TooFewFiles {
    pub sites: usize,
    pub provider: Provider,
    pub needed: u64,
    pub per: u64,
    pub hard: u64,
}

/// Raise the soft limit and check that it carries the scenario's sites.
pub fn check(scenario: &Scenario) -> Result<(), TooFewFiles> {
    let have = raise_open_files();
    let needed = needed(scenario);
    if needed > have {
        return Err(TooFewFiles {
            sites: scenario.partition.sites,
            provider: scenario.fleet.provider,
            needed,
            per: per_site(scenario.fleet.provider),
            hard: open_files().1,
        });
    }
    Ok(())
}
