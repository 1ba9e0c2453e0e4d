//! `[compare]`: how close the federated answer must come to the pooled one, and an optional
//! independent reference.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Locate, Scenario, ScenarioError};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareSpec {
    /// Largest relative difference between federated and centralised results that passes.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// svd: largest angle (degrees) between federated and centralised vectors that passes,
    /// checked for components whose singular values are separated.
    #[serde(default = "default_angle_tolerance")]
    pub angle_tolerance_deg: f64,
    /// Optional JSON-lines file of independent reference results (e.g. statsmodels).
    #[serde(default)]
    pub reference: Option<PathBuf>,
}

impl Default for CompareSpec {
    fn default() -> Self {
        CompareSpec {
            tolerance: default_tolerance(),
            angle_tolerance_deg: default_angle_tolerance(),
            reference: None,
        }
    }
}

fn default_angle_tolerance() -> f64 {
    0.01
}

fn default_tolerance() -> f64 {
    1e-8
}

/// Tolerances a comparison can pass: positive, and an angle no wider than a right angle.
pub(super) fn validate(s: &Scenario, at: &Locate) -> Result<(), ScenarioError> {
    let a = s.compare.angle_tolerance_deg;
    if !(a.is_finite() && a > 0.0 && a <= 90.0) {
        return Err(at(
            "compare.angle_tolerance_deg",
            format!("expected degrees in (0, 90], found {a}"),
        ));
    }
    let t = s.compare.tolerance;
    if !(t.is_finite() && t > 0.0) {
        return Err(at(
            "compare.tolerance",
            format!("expected a number > 0, found {t:e}"),
        ));
    }
    Ok(())
}
