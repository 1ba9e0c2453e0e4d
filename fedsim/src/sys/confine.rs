//! Local sites walled off from each other with Landlock (Linux 5.13+; TCP rules 6.7+, signal
//! scoping 6.12+): a local agent, and every step it runs, may
//! - read and run anything on the machine except the run directory,
//! - read and write its own site folder (and `/dev`), and nothing else,
//! - connect by TCP to the coordinator's port only, and bind none,
//! - signal no process outside its own sandbox (not another site's agent, not the controller).
//!
//! So a step at site-1 can read neither site-2's `.env` nor `controller.env`, nor write outside
//! its folder. The agent confines itself before it reads its data (the local fleet asks it to
//! with `--confine RUN_DIR`). Where Landlock is missing, or partly (an older kernel), the agent
//! says what is not enforced in its log, and the run's summary carries a warning: the sites are
//! then as separate as processes of one user are. Over SSH and in VMs other walls stand (users,
//! machines), and these rules are not needed.

use std::path::{Component, Path, PathBuf};

use landlock::{
    Access, AccessFs, AccessNet, NetPort, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};

/// The ABI the sandbox is written for (Linux 6.12): files, TCP, scopes.
const ABI_WANTED: ABI = ABI::V6;

/// The Landlock ABI this kernel offers (0: none).
pub fn available() -> i32 {
    const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1;
    // SAFETY: with a null attribute and the VERSION flag, landlock_create_ruleset only returns
    // the ABI version (or an error); it creates nothing.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    v.max(0) as i32
}

/// How well a sandbox could be put up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confinement {
    Full,
    /// Some rules are not enforced here (the kernel's Landlock ABI is older).
    Partial(String),
    None(String),
}

/// Every path to allow reading: everything under `/` except the branch that leads into
/// `run_dir`, walked around level by level, so that its siblings stay readable.
fn around(run_dir: &Path) -> Vec<PathBuf> {
    let mut allowed = Vec::new();
    let mut at = PathBuf::from("/");
    for part in run_dir.components() {
        let Component::Normal(name) = part else {
            continue;
        };
        if let Ok(entries) = std::fs::read_dir(&at) {
            for e in entries.flatten() {
                if e.file_name() != name {
                    allowed.push(e.path());
                }
            }
        }
        at.push(name);
    }
    allowed
}

/// Confine this process, and everything it starts, to its site: see the module's rules.
/// `run_dir`: the run directory (the other sites and `controller.env` live in it); `site_dir`:
/// this site's folder in it; `coordinator_port`: the one TCP port it may connect to.
pub fn confine(run_dir: &Path, site_dir: &Path, coordinator_port: u16) -> Confinement {
    let abi = available();
    if abi == 0 {
        return Confinement::None(
            "Landlock is not available on this kernel: local sites are not walled off from each other".into(),
        );
    }
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let (run_dir, site_dir) = (absolute(run_dir), absolute(site_dir));
    let read = AccessFs::from_read(ABI_WANTED);
    let all = AccessFs::from_all(ABI_WANTED);
    let built = (|| -> Result<RulesetStatus, landlock::RulesetError> {
        let mut ruleset = Ruleset::default()
            .handle_access(all)?
            .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)?
            .scope(Scope::AbstractUnixSocket | Scope::Signal)?
            .create()?;
        for path in around(&run_dir) {
            if let Ok(fd) = PathFd::new(&path) {
                ruleset = ruleset.add_rule(PathBeneath::new(fd, read))?;
            }
        }
        for (path, access) in [(site_dir.as_path(), all), (Path::new("/dev"), all)] {
            if let Ok(fd) = PathFd::new(path) {
                ruleset = ruleset.add_rule(PathBeneath::new(fd, access))?;
            }
        }
        ruleset = ruleset.add_rule(NetPort::new(coordinator_port, AccessNet::ConnectTcp))?;
        Ok(ruleset.restrict_self()?.ruleset)
    })();
    match built {
        Ok(RulesetStatus::FullyEnforced) => Confinement::Full,
        Ok(RulesetStatus::PartiallyEnforced) => Confinement::Partial(format!(
            "Landlock ABI {abi} enforces part of the sandbox (files from ABI 1, TCP from 4, signal scoping from 6)"
        )),
        Ok(RulesetStatus::NotEnforced) => Confinement::None(format!(
            "Landlock ABI {abi} could not enforce the sandbox"
        )),
        Err(e) => Confinement::None(format!("Landlock refused the sandbox: {e}")),
    }
}
