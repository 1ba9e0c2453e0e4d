//! What the kernel says about this process and this machine: CPU time, peak and proportional
//! memory, and where a program lives on PATH. No fedsim types: every layer may ask.

use std::path::PathBuf;

/// This process's CPU seconds (user + system).
pub fn cpu_secs() -> f64 {
    // SAFETY: getrusage only writes the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

/// This process's own peak resident memory in KiB: `VmHWM` from `/proc/self/status`. Unlike
/// getrusage's `ru_maxrss`, it starts afresh at exec, so an agent forked from a large controller
/// reports its own peak, not the controller's.
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| vm_hwm_kib(&s))
        .unwrap_or(0)
}

fn vm_hwm_kib(status: &str) -> Option<u64> {
    field(status, "VmHWM:")
}

/// The number after `key` in a `/proc` file of "Key: value" lines (a trailing "kB" dropped).
fn field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A process's proportional set size in KiB (`Pss` of `/proc/PID/smaps_rollup`): its private
/// memory plus its share of what it shares, so that summing it over processes counts shared
/// pages (the agents' common binary) once.
pub fn pss_kib(pid: u32) -> Option<u64> {
    field(
        &std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?,
        "Pss:",
    )
}

/// `roots` and every process descended from them (by parent pid, from /proc), e.g. to sum the
/// memory of what a process started, detached children included when a subreaper holds them.
pub fn with_descendants(roots: &[u32]) -> Vec<u32> {
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            // The parent is the second field after the command's closing parenthesis.
            let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')?
                        .1
                        .split_whitespace()
                        .nth(1)?
                        .parse::<u32>()
                        .ok()
                });
            if let Some(ppid) = ppid {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut found: Vec<u32> = roots.to_vec();
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(parent_of.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    found.sort_unstable();
    found.dedup();
    found
}

/// A program on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// A process's threads (`Threads:` of `/proc/PID/status`) and open descriptors (the entries
/// of `/proc/PID/fd`), or None once it is gone.
pub fn threads_and_fds(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let threads = field(&status, "Threads:")?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some((threads, fds))
}

/// Tasks on this machine right now: how many are runnable, and how many exist (the fourth
/// field of `/proc/loadavg`, "runnable/total").
pub fn tasks_now() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let (runnable, total) = text.split_whitespace().nth(3)?.split_once('/')?;
    Some((runnable.parse().ok()?, total.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_memory_is_read_from_proc_and_grows_with_use() {
        assert_eq!(
            vm_hwm_kib("Name:\tx\nVmHWM:\t   12345 kB\nVmRSS:\t1 kB\n"),
            Some(12345)
        );
        let before = peak_rss_kib();
        assert!(before > 100, "{before}");
        // Touch 64 MiB: the high-water mark must cover the resident set that holds it. (Not
        // "before + 64 MiB": other tests of this process may have raised the mark and freed
        // their memory, which a new block then reuses.)
        let block = vec![1u8; 64 << 20];
        std::hint::black_box(&block);
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let rss: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap();
        assert!(rss >= 64 * 1024, "resident {rss} KiB holding 64 MiB");
        let after = peak_rss_kib();
        assert!(
            after >= rss && after >= before,
            "{before} -> {after} (resident {rss})"
        );
    }
}
