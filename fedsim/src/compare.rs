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
    /// svd: sign-invariant angle (degrees, 0..=90) between each federated and centralised vector.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub angles_deg: Vec<f64>,
    /// svd: whether each component's singular value is separated from its neighbours (relative
    /// gap above 1e-3); only for those is the vector well defined and its angle checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub separated: Vec<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_angle_deg: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub angle_tolerance_deg: Option<f64>,
}

/// Sign-invariant angle between two vectors, in degrees (0..=90). Computed from the chord
/// between the unit vectors, 2 asin(|a - b| / 2), which stays accurate near 0 where acos does not.
pub fn angle_deg(a: &[f64], b: &[f64]) -> f64 {
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    if !(na > 0.0 && nb > 0.0) || a.len() != b.len() {
        return 90.0;
    }
    let sign = if a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>() < 0.0 {
        -1.0
    } else {
        1.0
    };
    let chord = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x / na - sign * y / nb).powi(2))
        .sum::<f64>()
        .sqrt();
    2.0 * (chord / 2.0).min(1.0).asin().to_degrees()
}

/// Relative gaps of `spectrum[i]` to its neighbours, for the first `k` values.
pub fn separated(spectrum: &[f64], k: usize) -> Vec<bool> {
    (0..k.min(spectrum.len()))
        .map(|i| {
            let s = spectrum[i];
            let before = if i > 0 {
                spectrum[i - 1] - s
            } else {
                f64::INFINITY
            };
            let after = spectrum.get(i + 1).map_or(f64::INFINITY, |n| s - n);
            s > 0.0 && before.min(after) / s > 1e-3
        })
        .collect()
}

/// Add the svd vector check to a comparison: angles, and the pass verdict on separated components.
pub fn with_angles(
    mut c: Comparison,
    got: &Estimates,
    want: &Estimates,
    tolerance_deg: f64,
) -> Comparison {
    if got.vectors.is_empty() || want.vectors.is_empty() {
        return c;
    }
    let k = got.vectors.len().min(want.vectors.len());
    let angles: Vec<f64> = (0..k)
        .map(|i| angle_deg(&got.vectors[i], &want.vectors[i]))
        .collect();
    let sep = separated(&want.spectrum, k);
    let max = angles
        .iter()
        .zip(&sep)
        .filter(|(_, s)| **s)
        .map(|(a, _)| *a)
        .fold(0.0, f64::max);
    c.passed &= max <= tolerance_deg;
    c.angles_deg = angles;
    c.separated = sep;
    c.max_angle_deg = Some(max);
    c.angle_tolerance_deg = Some(tolerance_deg);
    c
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
        angles_deg: Vec::new(),
        separated: Vec::new(),
        max_angle_deg: None,
        angle_tolerance_deg: None,
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
    /// pca rows: whether columns were z-scored.
    #[serde(default)]
    pub zscore: Option<bool>,
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
pub fn find_reference(
    path: &Path,
    csv: &str,
    kind: &str,
    zscore: bool,
) -> Result<ReferenceRow, ReferenceError> {
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
        if row.csv == csv && row.kind == kind && row.zscore.unwrap_or(false) == zscore {
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
    fn angles_ignore_sign_and_scale() {
        assert_eq!(angle_deg(&[1.0, 0.0], &[-3.0, 0.0]), 0.0);
        assert!((angle_deg(&[1.0, 0.0], &[1.0, 1.0]) - 45.0).abs() < 1e-12);
        assert!((angle_deg(&[1.0, 0.0], &[0.0, 2.0]) - 90.0).abs() < 1e-12);
        let tiny = angle_deg(&[1.0, 0.0], &[1.0, 1e-9]);
        assert!((tiny - 1e-9f64.to_degrees()).abs() < 1e-20, "{tiny}");
        assert_eq!(
            separated(&[10.0, 5.0, 4.999999, 1.0], 4),
            vec![true, false, false, true]
        );
    }

    #[test]
    fn nan_and_length_mismatch_fail() {
        assert!(!estimates(&est(vec![f64::NAN, 2.0]), &est(vec![1.0, 2.0]), 1e-8).passed);
        assert!(!estimates(&est(vec![1.0]), &est(vec![1.0, 2.0]), 1e-8).passed);
    }
}
