//! `[data]`: a file or a synthetic data set, the target and the columns to use.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Locate, Scenario, ScenarioError};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// CSV or Parquet, relative to the scenario file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Instead of a file: a synthetic data set made from the scenario's seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate: Option<Generate>,
    /// Regression target; absent for svd.
    #[serde(default)]
    pub target: Option<String>,
    /// Feature columns to use, in order; default all columns but the target.
    #[serde(default)]
    pub features: Option<Vec<String>>,
    /// Columns to leave out (e.g. a class label before an svd).
    #[serde(default)]
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GenerateKind {
    /// Features x1..xd: a rank-r signal with separated singular values, plus Gaussian noise.
    LowRank,
    /// Features x1..xd ~ N(0, 1) and target y = 1 + X beta + noise.
    Linear,
    /// Features x1..xd ~ N(0, 1) and a 0/1 target y drawn from a logistic model.
    Logistic,
}

/// A synthetic data set, for sizes no real file here has (benchmarks, high dimension).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Generate {
    pub kind: GenerateKind,
    pub rows: usize,
    pub cols: usize,
    /// low_rank: rank of the signal (default 10).
    #[serde(default = "default_rank")]
    pub rank: usize,
    /// Standard deviation of the added noise (default 0.1).
    #[serde(default = "default_noise")]
    pub noise: f64,
}

fn default_rank() -> usize {
    10
}
fn default_noise() -> f64 {
    0.1
}

/// Exactly one source; a target where the algorithm needs one; feature lists without repeats.
pub(super) fn validate(s: &Scenario, at: &Locate) -> Result<(), ScenarioError> {
    match (&s.data.path, &s.data.generate) {
        (None, None) => {
            return Err(at(
                "data",
                "missing key `path`: give a CSV or Parquet file (or `generate` for synthetic data)"
                    .into(),
            ))
        }
        (Some(_), Some(_)) => {
            return Err(at(
                "data.generate",
                "give either `path` or `generate`, not both".into(),
            ))
        }
        (Some(path), None) => {
            let ext = path
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or("")
                .to_ascii_lowercase();
            if !matches!(ext.as_str(), "csv" | "parquet" | "pq") {
                return Err(at(
                    "data.path",
                    format!(
                        "expected a .csv or .parquet file, found {:?}",
                        path.display().to_string()
                    ),
                ));
            }
        }
        (None, Some(g)) => validate_generate(g, at)?,
    }
    let kind = s.algorithm.kind;
    match (&s.data.target, kind.needs_target()) {
        (None, true) => {
            return Err(at(
                "data",
                format!(
                    "missing key `target`: algorithm {} needs a target column",
                    kind.as_str()
                ),
            ))
        }
        (Some(_), false) => {
            return Err(at(
                "data.target",
                format!(
                "algorithm {} takes no target column; remove `target` (or list it in `exclude`)",
                kind.as_str()
            ),
            ))
        }
        _ => {}
    }
    if let Some(f) = &s.data.features {
        if f.is_empty() {
            return Err(at(
                "data.features",
                "expected at least one feature column".into(),
            ));
        }
        let mut seen = BTreeSet::new();
        if let Some(dup) = f.iter().find(|c| !seen.insert(c.as_str())) {
            return Err(at(
                "data.features",
                format!("column {dup:?} is listed twice"),
            ));
        }
        if let Some(t) = &s.data.target {
            if f.contains(t) {
                return Err(at(
                    "data.features",
                    format!("the target {t:?} cannot also be a feature"),
                ));
            }
        }
    }
    Ok(())
}

/// Sizes this machine can hold, and a rank the matrix can have.
fn validate_generate(g: &Generate, at: &Locate) -> Result<(), ScenarioError> {
    if g.rows < 2 || g.cols < 1 || g.rows.saturating_mul(g.cols) > 200_000_000 {
        return Err(at(
            "data.generate",
            format!(
                "expected rows >= 2, cols >= 1 and rows x cols <= 2e8, found {} x {}",
                g.rows, g.cols
            ),
        ));
    }
    if g.rank == 0 || g.rank > g.cols.min(g.rows) {
        return Err(at(
            "data.generate.rank",
            format!("expected a rank from 1 to {}", g.cols.min(g.rows)),
        ));
    }
    if !(g.noise.is_finite() && g.noise >= 0.0) {
        return Err(at(
            "data.generate.noise",
            format!("expected a standard deviation >= 0, found {}", g.noise),
        ));
    }
    Ok(())
}
