//! fedsim: simulate a federated analysis across isolated sites and check that it gives the
//! pooled (centralised) answer. One module per pipeline stage:
//! scenario -> prep (plan, partition, bundles) -> fleet (where sites run) -> federation
//! (coordinator and agents) -> algorithms -> baseline -> compare -> run (summary, metrics, logs).

pub mod algorithms;
pub mod auth;
pub mod baseline;
pub mod bench;
pub mod check;
pub mod compare;
pub mod data;
pub mod enrol;
pub mod federation;
pub mod fleet;
pub mod gui;
pub mod logs;
pub mod participants;
pub mod partition;
pub mod portal;
pub mod prep;
pub mod progress;
pub mod report;
pub mod run;
pub mod scenario;
