//! fedsim: simulate a federated analysis across isolated sites and check that it gives the
//! pooled (centralised) answer. One module per pipeline stage, in the order a run takes them:
//! scenario -> prep (plan, partition, bundles) -> fleet (where sites run) -> enrol (portal) ->
//! federation (coordinator and agents) -> algorithms -> baseline -> compare (and reference) ->
//! summary, metrics, report. `run` strings the stages together.

pub mod agent;
pub mod algorithms;
pub mod auth;
pub mod baseline;
pub mod bench;
pub mod bundle;
pub mod check;
pub mod compare;
pub mod data;
pub mod demo;
pub mod distributions;
pub mod enrol;
pub mod federation;
pub mod fleet;
pub mod logs;
pub mod metrics;
pub mod partition;
pub mod plan;
pub mod portal;
pub mod progress;
pub mod reference;
pub mod report;
pub mod run;
pub mod rundir;
pub mod scenario;
pub mod summary;
pub mod sys;
