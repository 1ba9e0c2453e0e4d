//! Helpers shared by the end-to-end tests: real binaries, real data, independent references.
//! By concern: `run` runs fedsim and reads what a run wrote (its summary and metrics typed, as
//! the crate writes them), `fleet` is the SSH test fleet, `procs` looks for what a run may have left running, `scenarios` writes
//! scenario texts. Paths and the independent references are here.
// Each test binary uses some of these; what one leaves unused is no warning there.
#![allow(dead_code, unused_imports)]

mod fleet;
mod procs;
mod run;
mod scenarios;

pub use fleet::*;
pub use procs::*;
pub use run::*;
pub use scenarios::*;

/// The types of a run's files, the one place the tests name them.
pub use fedsim::metrics::Metrics;
pub use fedsim::summary::{Status, Summary};

use std::path::{Path, PathBuf};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_fedsim")
}

/// The repository's root (resources/, test_data/, README.md, ...).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repository root")
}

pub fn test_data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../test_data")
        .join(name)
        .canonicalize()
        .expect("test data present")
}

/// A reference row from `test_data/reference.jsonl` (numpy / statsmodels, computed independently).
pub fn reference(csv: &str, kind: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(test_data("reference.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["csv"] == csv && v["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} reference for {csv}"))
}

pub fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

/// Largest relative difference, element by element (lengths must agree).
pub fn max_rel(got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "length differs: {got:?} vs {want:?}");
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs() / b.abs().max(f64::MIN_POSITIVE))
        .fold(0.0, f64::max)
}

/// Where `.ci/run` puts Snakemake (and the SLURM plugin): a venv outside the clone.
pub fn venv_bin() -> PathBuf {
    Path::new(&std::env::var("HOME").expect("HOME is set")).join(".cache/fedsim-venv/bin")
}

/// PATH for the sweep: this build's fedsim first (the jobs run `fedsim` from PATH, which sbatch
/// passes on to the node), then the Snakemake venv (the jobs run its Python), then the rest.
pub fn path_with_fedsim() -> String {
    let mut paths = vec![Path::new(bin()).parent().unwrap().to_path_buf(), venv_bin()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}
