//! fedsim: simulate a federated analysis across isolated sites and check that it gives the
//! pooled (centralised) answer. `run` strings the stages together:
//! plan -> prep (bundle) -> provision (fleet) -> enrol -> federate (federation, agent) ->
//! results -> collect -> baseline -> compare (and reference) -> summary, metrics, report.
//!
//! The modules sit on floors and import only downwards (docs/architecture.md has the map;
//! tests/architecture.rs holds it): `run` over `report` over `rundir` (every file of a run)
//! over `summary`/`metrics` over the sites' side (`agent`, `fleet`, `relay`, `enrol`) over `bundle`
//! (what a site receives) over the analysis (`plan`, `federation`, `baseline`, `dp`, `compare`,
//! `reference`, `disclosure`, `probe`) over `algorithms` over `data` over the ground floor (`scenario`, `portal`,
//! `logs`, `sys`, `auth`, `progress`, `distributions`). The command line is the binary's `cli/`.

pub mod agent;
pub mod algorithms;
pub mod auth;
pub mod baseline;
pub mod bench;
pub mod bundle;
pub mod check;
pub mod clock;
pub mod compare;
pub mod data;
pub mod demo;
pub mod disclosure;
pub mod distributions;
pub mod dp;
pub mod enrol;
pub mod federation;
pub mod fleet;
pub mod logs;
pub mod metrics;
pub mod partition;
pub mod plan;
pub mod platform;
pub mod portal;
pub mod probe;
pub mod progress;
pub mod reference;
pub mod relay;
pub mod releases;
pub mod report;
pub mod run;
pub mod rundir;
pub mod scenario;
pub mod summary;
pub mod sys;
