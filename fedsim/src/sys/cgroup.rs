//! Whether this machine can slow a process down for real: cgroup v2's `cpu.max`.

use std::path::Path;

/// Why a site cannot be slowed on the real clock here, if it cannot.
///
/// A CPU quota needs a cgroup v2 hierarchy with the cpu controller, and a cgroup of fedsim's
/// own to put the sites in (a process may not share a cgroup with child cgroups that hold
/// controllers). fedsim does not create that delegation yet, so even where the hierarchy exists
/// the answer says what is missing rather than letting a site run at full speed unsaid.
pub fn cpu_max_available() -> Result<(), String> {
    let root = Path::new("/sys/fs/cgroup");
    let Ok(controllers) = std::fs::read_to_string(root.join("cgroup.controllers")) else {
        return Err(
            "this machine has no cgroup v2 hierarchy at /sys/fs/cgroup (cgroup v1 or none)".into(),
        );
    };
    if !controllers.split_whitespace().any(|c| c == "cpu") {
        return Err("this machine's cgroup v2 hierarchy has no cpu controller".into());
    }
    Err("fedsim cannot yet delegate a cgroup of its own for the sites' cpu.max".into())
}
