//! Whether anything of a run is left running: its agents, the processes started for it, the
//! browsers and VMs it drove. Read from /proc (and pgrep), independently of fedsim.

use std::collections::BTreeMap;
use std::path::Path;

use super::Summary;

/// Every process now running, by pid.
pub fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .collect()
}

/// A process's command line, its arguments separated by spaces ("" once it is gone).
pub fn cmdline(pid: u32) -> String {
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&cmd).replace('\0', " ")
}

/// Whether `pid` is running. A reaped process has no /proc entry; a zombie would still show as
/// state Z.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.contains(") Z "),
        Err(_) => false,
    }
}

/// No site's agent (by the pid the summary records) is still running.
pub fn no_agent_left(s: &Summary) {
    for site in &s.sites {
        let pid = site
            .pid
            .unwrap_or_else(|| panic!("{}: no pid recorded", site.name));
        assert!(!alive(pid), "{} (pid {pid}) still running", site.name);
    }
}

/// Whether process `p` was started for the run whose controller is `controller` (its
/// environment names it, as every agent's does).
fn started_for(p: u32, controller: u32) -> bool {
    let marker = format!("FEDSIM_PARENT_PID={controller}");
    let environ = std::fs::read(format!("/proc/{p}/environ")).unwrap_or_default();
    environ.split(|b| *b == 0).any(|v| v == marker.as_bytes())
}

/// Processes started for the run that `pid` was: any process whose environment names `pid` as
/// its controller (agents), or whose working directory is under `dir`. Each as "pid: command".
pub fn leftovers(pid: u32, dir: &Path) -> Vec<String> {
    let mut left = Vec::new();
    for p in pids() {
        let ours = started_for(p, pid);
        let cwd = std::fs::read_link(format!("/proc/{p}/cwd")).ok();
        if ours || cwd.is_some_and(|c| c.starts_with(dir)) {
            left.push(format!("{p}: {}", cmdline(p)));
        }
    }
    left
}

/// The sites' agents now running for the controller `pid`, by site (from their working dirs).
pub fn agents_of(pid: u32) -> BTreeMap<String, u32> {
    let mut found = BTreeMap::new();
    for p in pids() {
        if !started_for(p, pid) {
            continue;
        }
        if let Some(site) = std::fs::read_link(format!("/proc/{p}/cwd"))
            .ok()
            .and_then(|c| c.file_name().map(|f| f.to_string_lossy().into_owned()))
        {
            found.insert(site, p);
        }
    }
    found
}

/// qemu processes whose command line mentions `needle`.
pub fn qemus(needle: &str) -> Vec<String> {
    pids()
        .into_iter()
        .map(cmdline)
        .filter(|cmd| cmd.starts_with("qemu-system") && cmd.contains(needle))
        .collect()
}

/// What `pgrep -f PATTERN` finds running (its output: one pid a line; empty when nothing).
pub fn pgrep(pattern: &str) -> String {
    let out = std::process::Command::new("pgrep")
        .args(["-f", pattern])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The processes of `user` whose command line matches `pattern`, each with its command line.
pub fn pgrep_user(user: &str, pattern: &str) -> String {
    let out = std::process::Command::new("pgrep")
        .args(["-a", "-u", user, "-f", pattern])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The browsers' scratch folders (profile and downloads) in the temporary directory now.
pub fn browser_scratch() -> std::collections::BTreeSet<std::path::PathBuf> {
    std::fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("fedsim-browser-"))
        })
        .collect()
}

/// No browser or chromedriver that fedsim started outlives its run, and no browser profile is
/// left of it (`before`: the scratch folders there were before the run).
pub fn no_browser_left(before: &std::collections::BTreeSet<std::path::PathBuf>) {
    let left = pgrep("fedsim-browser-");
    assert!(left.is_empty(), "browser processes left behind: {left}");
    let new: Vec<_> = browser_scratch().difference(before).cloned().collect();
    assert!(new.is_empty(), "browser profiles left behind: {new:?}");
}

/// Whether this machine can boot the VM tests' machines: root, qemu and mmdebstrap.
pub fn can_boot_vms() -> bool {
    let have = |p: &str| {
        std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).any(|d| d.join(p).is_file()))
            .unwrap_or(false)
    };
    // SAFETY: geteuid reads a process attribute.
    let root = unsafe { libc::geteuid() } == 0;
    let ok = root && have("qemu-system-x86_64") && have("qemu-img") && have("mmdebstrap");
    if !ok {
        eprintln!(
            "SKIPPED: VM tests need root, qemu-system-x86 and mmdebstrap (.ci/run installs them)"
        );
    }
    ok
}
