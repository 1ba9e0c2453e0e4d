//! The processes fedsim starts on this machine (agents, chromedriver and its browsers): each in a
//! process group of its own, tracked so that a second Ctrl-C can kill them all at once, and tied
//! to the controller's life so that none outlives it even when the controller is killed.

use std::process::Command;
use std::sync::Mutex;

/// Have the kernel kill `cmd`'s process when the controller dies without cleaning up (e.g.
/// SIGKILL), so no child of fedsim (chromedriver) is ever orphaned. Forces a fork: use it for
/// the odd helper process, not for a thousand agents.
pub fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe, which is all pre_exec asks of the closure.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Set by the local fleet to the controller's pid: the agent asks the kernel to kill it when
/// the controller dies (PR_SET_PDEATHSIG), and exits at once if the controller is already gone.
pub const PARENT_VAR: &str = "FEDSIM_PARENT_PID";

/// Called first thing in an agent: die with the controller that started it, if one did.
pub fn die_with_controller() {
    let Some(parent) = std::env::var(PARENT_VAR)
        .ok()
        .and_then(|p| p.parse::<i32>().ok())
    else {
        return;
    };
    // SAFETY: prctl and getppid touch no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != parent {
            // The controller died between spawning us and the prctl.
            std::process::exit(1);
        }
    }
}

/// Every process group fedsim started and has not reaped, so a signal handler can kill them all.
static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Kill every process group this process started, with everything in them (second Ctrl-C).
pub fn kill_all() {
    if let Ok(pids) = LIVE.lock() {
        for &pid in pids.iter() {
            // SAFETY: signalling process groups we created; no memory is touched.
            unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
        }
    }
}

/// Remember a process group (a child started with `process_group(0)`: its pid is the group).
pub fn track(pid: u32) {
    if let Ok(mut l) = LIVE.lock() {
        l.push(pid);
    }
}

/// Forget a process group once its leader has been reaped.
pub fn untrack(pid: u32) {
    if let Ok(mut l) = LIVE.lock() {
        l.retain(|p| *p != pid);
    }
}

/// The process groups (leaders' pids) started and not yet reaped, e.g. to measure their memory.
pub fn tracked() -> Vec<u32> {
    LIVE.lock().map(|l| l.clone()).unwrap_or_default()
}
