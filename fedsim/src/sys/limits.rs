//! Open files and process IDs. Every local site is one connection, so one descriptor, in the
//! controller; a thousand sites need more than the usual soft limit of 1024. Like servers do,
//! fedsim raises its soft limit to the hard one when it starts, and refuses a run the hard limit
//! cannot carry before anything starts, naming the limit and the fix. Every local site is also a
//! process of 4 threads, and each thread takes a process ID: past some 5000 sites the kernel's
//! `pid_max` (32768 by default) is the next wall, refused the same way.
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

/// Sites sharded over hosts (`[[sites]] count`) share their host's SSH sessions: per site, its
/// connection (both ends with a tunnel, whose pump runs in the controller); per host, its
/// session, its tunnel's session and forward.
const SHARDED_PER_SITE: u64 = 2;
const PER_HOST: u64 = 4;

/// What a run of `scenario` needs open at once, at most, and how much of it per site.
fn files_needed(scenario: &Scenario) -> (u64, u64) {
    let sites = scenario.partition.sites as u64;
    if scenario.fleet.provider == Provider::Ssh && scenario.sites.iter().any(|s| s.count > 1) {
        let hosts = scenario.sites.len() as u64;
        return (
            BASE + SHARDED_PER_SITE * sites + PER_HOST * hosts,
            SHARDED_PER_SITE,
        );
    }
    let per = per_site(scenario.fleet.provider);
    (BASE + per * sites, per)
}

/// What a run of `scenario` needs open at once, at most.
pub fn needed(scenario: &Scenario) -> u64 {
    files_needed(scenario).0
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

/// Raise the soft limit on this user's processes to the hard one (a site host's supervisor, whose
/// hundreds of agents each run a few threads, and every thread counts), and return it.
pub fn raise_processes() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given; setrlimit reads it, raising the soft
    // limit no higher than the hard one, which needs no privilege.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NPROC, &mut r) != 0 {
            return 0;
        }
        if r.rlim_cur < r.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NPROC, &raised) == 0 {
                return r.rlim_max;
            }
        }
    }
    r.rlim_cur
}

/// What the machine cannot carry.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error(transparent)]
    Files(#[from] TooFewFiles),
    #[error(transparent)]
    Tasks(#[from] TooFewTasks),
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

/// Threads of one local site's agent with one core to itself, as many sites have (measured by
/// `fedsim bench --sites`: its frame reader, its worker, its heartbeat, and polars' one
/// reading thread).
pub const AGENT_THREADS: u64 = 4;
/// The controller's threads per local site (its handshake, then its part of each round's
/// exchange), and per linked site on the real clock (its relay: the listener, and a reader and
/// writer each way).
pub const CONTROLLER_THREADS: u64 = 2;
pub const RELAY_THREADS: u64 = 5;
/// Threads fedsim needs beside its sites (the runtime, the portal, the logs).
pub const BASE_THREADS: u64 = 64;

/// The sites need more process IDs (every thread takes one) than the machine has free.
#[derive(Debug, thiserror::Error)]
#[error("{sites} {provider} sites need about {needed} process IDs ({per} threads per site and {BASE_THREADS} for fedsim itself: every thread takes one), but this machine has {free} free (kernel.pid_max = {pid_max}, {used} in use); raise it (as root: `sysctl -w kernel.pid_max=4194304`), or run fewer sites on this machine")]
pub struct TooFewTasks {
    pub sites: usize,
    pub provider: Provider,
    pub needed: u64,
    pub per: u64,
    pub free: u64,
    pub pid_max: u64,
    pub used: u64,
}

/// The threads a run of `scenario` starts on this machine, at most: a local site's agent and
/// the controller's share; for sites over SSH, the controller's share only (their agents run
/// elsewhere), which only hosts with thousands of sites (`count`) make count. VMs' sites
/// are few.
pub fn tasks_needed(scenario: &Scenario) -> Option<(u64, u64)> {
    let agent = match scenario.fleet.provider {
        Provider::Local => AGENT_THREADS,
        Provider::Ssh => 0,
        Provider::Vm | Provider::Vagrant => return None,
    };
    let relays = !scenario.links.is_empty() && !scenario.clock.simulated();
    let per = agent + CONTROLLER_THREADS + if relays { RELAY_THREADS } else { 0 };
    Some((per, BASE_THREADS + per * scenario.partition.sites as u64))
}

/// The kernel's limit on process IDs, and how many tasks exist now.
pub fn tasks() -> Option<(u64, u64)> {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let pid_max = read("/proc/sys/kernel/pid_max")?.trim().parse().ok()?;
    let threads_max: u64 = read("/proc/sys/kernel/threads-max")?.trim().parse().ok()?;
    let (_, used) = super::proc::tasks_now()?;
    Some((u64::min(pid_max, threads_max), used))
}

/// Raise the soft limit and check that it, and the process IDs, carry the scenario's sites.
pub fn check(scenario: &Scenario) -> Result<(), LimitError> {
    check_files(scenario)?;
    if let (Some((per, needed)), Some((pid_max, used))) = (tasks_needed(scenario), tasks()) {
        check_tasks(
            (scenario.partition.sites, scenario.fleet.provider),
            per,
            needed,
            pid_max,
            used,
        )?;
    }
    Ok(())
}

/// Whether `needed` tasks fit beside the `used` ones under `pid_max`.
fn check_tasks(
    (sites, provider): (usize, Provider),
    per: u64,
    needed: u64,
    pid_max: u64,
    used: u64,
) -> Result<(), TooFewTasks> {
    let free = pid_max.saturating_sub(used);
    if needed > free {
        return Err(TooFewTasks {
            sites,
            provider,
            needed,
            per,
            free,
            pid_max,
            used,
        });
    }
    Ok(())
}

/// Raise the soft limit on open files and check that it carries the scenario's sites.
fn check_files(scenario: &Scenario) -> Result<(), TooFewFiles> {
    let have = raise_open_files();
    let (needed, per) = files_needed(scenario);
    if needed > have {
        return Err(TooFewFiles {
            sites: scenario.partition.sites,
            provider: scenario.fleet.provider,
            needed,
            per,
            hard: open_files().1,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// At 6 threads a site, 5000 sites fit under the default pid_max of 32768; 6000 do not,
    /// and the refusal says how many are needed and how to raise the limit.
    #[test]
    fn process_ids_are_the_wall_past_five_thousand_sites() {
        let per = AGENT_THREADS + CONTROLLER_THREADS;
        let need = |sites: u64| BASE_THREADS + per * sites;
        assert!(check_tasks((5000, Provider::Local), per, need(5000), 32768, 400).is_ok());
        let e = check_tasks((6000, Provider::Local), per, need(6000), 32768, 400)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("6000 local sites need about 36064 process IDs (6 threads per site")
                && e.contains("32368 free (kernel.pid_max = 32768, 400 in use)")
                && e.contains("sysctl -w kernel.pid_max="),
            "{e}"
        );
    }
}
