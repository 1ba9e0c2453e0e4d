//! The ground floor: what fedsim asks of the operating system. Cancel flags and signal handling,
//! child processes and their reaping, resource limits, Landlock confinement, whole-or-nothing
//! file writes, and the /proc probes. Nothing here knows a scenario, a site or a run.

pub mod cancel;
pub mod children;
pub mod confine;
pub mod exit;
pub mod fsio;
pub mod limits;
pub mod proc;
pub mod reaper;
