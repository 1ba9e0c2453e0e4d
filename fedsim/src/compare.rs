//! Federated versus centralised (and versus an independent reference): how far apart, and
//! whether that is within the scenario's tolerance.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::algorithms::Estimates;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Comparison {
    pub max_abs_diff: f64,
    pub max_rel_diff: f64,
    pub tolerance: f64,
    pub passed: bool,
    /// The quantity with the largest relative difference, e.g. `se[bmi]`.
    pub worst: String,
}

/// Relative difference that falls back to absolute where the reference is exactly zero.
fn rel(a: f64, b: f64) -> f64 {
    let d = (a - b).abs();
    if b == 0.0 {
        d
    } else {
        d / b.abs()
    }
}

/// Compare every estimated quantity both sides have (coefficients, standard errors, singular values).
pub fn estimates(got: &Estimates, want: &Estimates, tolerance: f64) -> Comparison {
    let mut pairs: Vec<(String, f64, f64)> = Vec::new();
    let label = |i: usize| want.terms.get(i).cloned().unwrap_or_else(|| i.to_string());
    let mut add = |name: &str, a: &[f64], b: &[f64]| {
        if a.len() != b.len() {
            pairs.push((
                format!("{name} (length {} vs {})", a.len(), b.len()),
                f64::INFINITY,
                0.0,
            ));
            return;
        }
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            pairs.push((format!("{name}[{}]", label(i)), *x, *y));
        }
    };
    add("coef", &got.coef, &want.coef);
    add("se", &got.se, &want.se);
    add(
        "singular_values",
        &got.singular_values,
        &want.singular_values,
    );
    let mut out = Comparison {
        max_abs_diff: 0.0,
        max_rel_diff: 0.0,
        tolerance,
        passed: true,
        worst: String::new(),
    };
    for (name, a, b) in pairs {
        let (abs, r) = ((a - b).abs(), rel(a, b));
        let (abs, r) = if abs.is_nan() {
            (f64::INFINITY, f64::INFINITY)
        } else {
            (abs, r)
        };
        out.max_abs_diff = out.max_abs_diff.max(abs);
        if r > out.max_rel_diff || out.worst.is_empty() {
            out.max_rel_diff = out.max_rel_diff.max(r);
            out.worst = name;
        }
    }
    out.passed = out.max_rel_diff <= tolerance;
    out
}

/// One line of a reference file (numpy / statsmodels results), as in `reference.jsonl`.
#[derive(Debug, Clone, Deserialize)]
pub struct ReferenceRow {
    pub csv: String,
    pub kind: String,
    #[serde(default)]
    pub n: usize,
    #[serde(default)]
    pub terms: Vec<String>,
    #[serde(default)]
    pub coef: Vec<f64>,
    #[serde(default)]
    pub se: Vec<f64>,
    #[serde(default)]
    pub singular_values: Vec<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("cannot read reference file {}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("reference file {}, line {line}: {reason}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("reference file {} has no {kind:?} row for {csv:?}", path.display())]
    NotFound {
        path: PathBuf,
        csv: String,
        kind: String,
    },
}

/// The row for this data file and kind of analysis.
pub fn find_reference(path: &Path, csv: &str, kind: &str) -> Result<ReferenceRow, ReferenceError> {
    let text = std::fs::read_to_string(path).map_err(|e| ReferenceError::Read {
        path: path.into(),
        reason: e.to_string(),
    })?;
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let row: ReferenceRow = serde_json::from_str(line).map_err(|e| ReferenceError::Parse {
            path: path.into(),
            line: i + 1,
            reason: e.to_string(),
        })?;
        if row.csv == csv && row.kind == kind {
            return Ok(row);
        }
    }
    Err(ReferenceError::NotFound {
        path: path.into(),
        csv: csv.into(),
        kind: kind.into(),
    })
}

impl ReferenceRow {
    pub fn estimates(&self) -> Estimates {
        Estimates {
            n: self.n,
            terms: self.terms.clone(),
            coef: self.coef.clone(),
            se: self.se.clone(),
            singular_values: self.singular_values.clone(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn est(coef: Vec<f64>) -> Estimates {
        Estimates {
            terms: vec!["a".into(), "b".into()],
            se: vec![1.0, 1.0],
            coef,
            ..Default::default()
        }
    }

    #[test]
    fn finds_the_worst_term() {
        let c = estimates(&est(vec![1.0, 2.0 + 2e-6]), &est(vec![1.0, 2.0]), 1e-8);
        assert!(!c.passed);
        assert_eq!(c.worst, "coef[b]");
        assert!((c.max_rel_diff - 1e-6).abs() < 1e-12);
        assert!(estimates(&est(vec![1.0, 2.0]), &est(vec![1.0, 2.0]), 1e-8).passed);
    }

    #[test]
    fn nan_and_length_mismatch_fail() {
        assert!(!estimates(&est(vec![f64::NAN, 2.0]), &est(vec![1.0, 2.0]), 1e-8).passed);
        assert!(!estimates(&est(vec![1.0]), &est(vec![1.0, 2.0]), 1e-8).passed);
    }
}
