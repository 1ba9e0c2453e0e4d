//! `[algorithm]`: what the sites compute, and the options each kind takes.

use serde::{Deserialize, Serialize};

use super::{Locate, Scenario, ScenarioError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlgorithmKind {
    LinearRegression,
    LogisticRegression,
    Svd,
}

impl AlgorithmKind {
    /// As written in a scenario.
    pub fn as_str(self) -> &'static str {
        match self {
            AlgorithmKind::LinearRegression => "linear_regression",
            AlgorithmKind::LogisticRegression => "logistic_regression",
            AlgorithmKind::Svd => "svd",
        }
    }
    pub fn needs_target(self) -> bool {
        !matches!(self, AlgorithmKind::Svd)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SvdMethod {
    /// Gram route when the aggregated matrix is small, subspace iteration otherwise.
    #[default]
    Auto,
    /// Exact: sum the d x d (horizontal) or n x n (vertical) Gram matrix and decompose it.
    Gram,
    /// Federated randomized subspace iteration: only d x k (or n x k) blocks travel.
    Subspace,
}

impl SvdMethod {
    /// As written in a scenario.
    pub fn as_str(self) -> &'static str {
        match self {
            SvdMethod::Auto => "auto",
            SvdMethod::Gram => "gram",
            SvdMethod::Subspace => "subspace",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlgorithmSpec {
    pub kind: AlgorithmKind,
    /// Regressions: add an intercept term (`const`), as statsmodels' `add_constant` (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intercept: Option<bool>,
    /// logistic_regression (Newton) and svd (subspace): iteration limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_iter: Option<usize>,
    /// logistic_regression: largest Newton step that counts as converged; svd: subspace change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tol: Option<f64>,
    /// svd: number of components.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<usize>,
    /// svd: subtract column means (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub center: Option<bool>,
    /// svd: divide columns by their standard deviation, ddof 1 (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<bool>,
    /// svd: "auto" | "gram" | "subspace".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<SvdMethod>,
    /// svd subspace: extra vectors iterated beyond k, for faster convergence (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oversample: Option<usize>,
}

/// Each option belongs to the algorithms that use it; elsewhere it is a mistake worth reporting.
pub(super) fn validate(s: &Scenario, at: &Locate) -> Result<(), ScenarioError> {
    use AlgorithmKind::*;
    let a = &s.algorithm;
    let owners: [(&str, bool, &[AlgorithmKind]); 8] = [
        (
            "intercept",
            a.intercept.is_some(),
            &[LinearRegression, LogisticRegression],
        ),
        ("max_iter", a.max_iter.is_some(), &[LogisticRegression, Svd]),
        ("tol", a.tol.is_some(), &[LogisticRegression, Svd]),
        ("k", a.k.is_some(), &[Svd]),
        ("center", a.center.is_some(), &[Svd]),
        ("scale", a.scale.is_some(), &[Svd]),
        ("method", a.method.is_some(), &[Svd]),
        ("oversample", a.oversample.is_some(), &[Svd]),
    ];
    for (key, present, kinds) in owners {
        if present && !kinds.contains(&a.kind) {
            let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
            return Err(at(
                &format!("algorithm.{key}"),
                format!(
                    "`{key}` applies to {} only, not {}",
                    names.join(" and "),
                    a.kind.as_str()
                ),
            ));
        }
    }
    if a.max_iter == Some(0) || a.max_iter.is_some_and(|m| m > 100_000) {
        return Err(at(
            "algorithm.max_iter",
            "expected a number of iterations from 1 to 100000".into(),
        ));
    }
    if let Some(t) = a.tol {
        if !(t.is_finite() && t > 0.0 && t < 1.0) {
            return Err(at(
                "algorithm.tol",
                format!("expected a number between 0 and 1, found {t:e}"),
            ));
        }
    }
    if a.k == Some(0) {
        return Err(at("algorithm.k", "expected at least 1 component".into()));
    }
    if a.kind == Svd && a.k.is_none() {
        return Err(at(
            "algorithm",
            "missing key `k`: svd needs the number of components, e.g. k = 10".into(),
        ));
    }
    if a.scale == Some(true) && a.center == Some(false) {
        return Err(at(
            "algorithm.scale",
            "scale = true needs center = true (a z-score centres first)".into(),
        ));
    }
    Ok(())
}
