//! Federated versus centralised (and versus an independent reference): the one place where a
//! difference is computed and judged. `summary.json`, `report.html` and the JUnit file all show
//! the [`Comparison`] made here, so they cannot disagree.
//!
//! The rule, per quantity:
//! - a coefficient is judged on the scale of its own uncertainty:
//!   `|got - want| <= tolerance * max(|want|, se_want)`. A coefficient whose true value is 0 is
//!   estimated as rounding noise on both sides, and relative to itself that noise is huge; relative
//!   to its standard error it is nothing, which is what the statistics say it is.
//! - a standard error, and a singular value, relative to itself: `|got - want| <= tolerance * |want|`.
//!   A singular value below the spectrum's resolution (`sqrt(eps) * s_1`, where the Gram route can
//!   no longer resolve it) is judged on that resolution instead.
//! - what a fit's summary adds, on the scale its error follows from those: t on `max(|t|, 1)`
//!   (t = coef / se), p on `p * max(t², 1)` (an error e in t moves a small p by about p t² e),
//!   confidence bounds like coefficients, R², adjusted and pseudo R² absolutely (scale 1),
//!   log-likelihoods, AIC, BIC, F, the likelihood ratio and a GLM's deviances and Pearson chi²
//!   relative to `max(|v|, 1)`, a GLM's scale relative to itself, the F
//!   test's P on `p * max(d1 F / 2, 1)` and the likelihood-ratio test's on `p * max(LLR / 2, 1)`,
//!   degrees of freedom exactly, explained variance and its ratio relative with twice the
//!   tolerance (they are squares of singular values) and `eps * top` as their floor.
//! - a component vector (svd) by the sign-invariant angle to the centralised one, for components
//!   whose singular value is separated from its neighbours (elsewhere the vector is not defined).

use serde::{Deserialize, Serialize};

use crate::algorithms::Estimates;

/// What a check compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantity {
    Coef,
    Se,
    T,
    P,
    ConfLow,
    ConfHigh,
    R2,
    AdjR2,
    Loglik,
    Llnull,
    PseudoR2,
    DfModel,
    DfResid,
    Fvalue,
    FPvalue,
    Aic,
    Bic,
    Llr,
    LlrPvalue,
    /// GLM: deviance, Pearson's chi², the estimated scale and the null model's deviance.
    Deviance,
    PearsonChi2,
    #[serde(rename = "scale")]
    Dispersion,
    NullDeviance,
    SingularValue,
    ExplainedVariance,
    ExplainedVarianceRatio,
    Angle,
    /// A number of an external algorithm's named result.
    Value,
}

impl Quantity {
    pub fn as_str(self) -> &'static str {
        match self {
            Quantity::Coef => "coef",
            Quantity::Se => "se",
            Quantity::T => "t",
            Quantity::P => "p",
            Quantity::ConfLow => "conf_low",
            Quantity::ConfHigh => "conf_high",
            Quantity::R2 => "r2",
            Quantity::AdjR2 => "adj_r2",
            Quantity::Loglik => "loglik",
            Quantity::Llnull => "llnull",
            Quantity::PseudoR2 => "pseudo_r2",
            Quantity::DfModel => "df_model",
            Quantity::DfResid => "df_resid",
            Quantity::Fvalue => "fvalue",
            Quantity::FPvalue => "f_pvalue",
            Quantity::Aic => "aic",
            Quantity::Bic => "bic",
            Quantity::Llr => "llr",
            Quantity::LlrPvalue => "llr_pvalue",
            Quantity::Deviance => "deviance",
            Quantity::PearsonChi2 => "pearson_chi2",
            Quantity::Dispersion => "scale",
            Quantity::NullDeviance => "null_deviance",
            Quantity::ExplainedVariance => "explained_variance",
            Quantity::ExplainedVarianceRatio => "explained_variance_ratio",
            Quantity::SingularValue => "singular_value",
            Quantity::Angle => "angle",
            Quantity::Value => "value",
        }
    }
}

/// One number checked: both values, the scale it is judged on and the verdict.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Check {
    pub quantity: Quantity,
    /// The term (`const`, `bmi`) or component (`pc1`).
    pub term: String,
    /// Federated value (angles: the angle in degrees).
    pub got: f64,
    /// Centralised or reference value (angles: 0).
    pub want: f64,
    pub abs_diff: f64,
    /// What the difference is divided by (see the module's rule; 1 for angles).
    pub scale: f64,
    /// `abs_diff / scale`: the number held against `tolerance`.
    pub diff: f64,
    pub tolerance: f64,
    pub passed: bool,
    /// Why the check is judged differently, or not at all (e.g. an unseparated component).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Check {
    /// `coef[bmi]`, `angle[pc2]`: stable across runs of one scenario (no measured values).
    pub fn name(&self) -> String {
        match self.quantity {
            // Already `mean[2]`, `cov[1,2]`: the result's own name.
            Quantity::Value => self.term.clone(),
            // One number for the whole model (`r2`, `loglik`).
            q if self.term.is_empty() => q.as_str().to_string(),
            q => format!("{}[{}]", q.as_str(), self.term),
        }
    }
}

/// Every check against one side (the centralised baseline or a reference), and the verdict.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Comparison {
    pub tolerance: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub angle_tolerance_deg: Option<f64>,
    pub passed: bool,
    /// Largest `diff` over the value checks (coef, se, singular values).
    pub max_diff: f64,
    /// Largest absolute difference over the value checks.
    pub max_abs_diff: f64,
    /// The value check with the largest `diff`, e.g. `se[bmi]`.
    pub worst: String,
    /// svd: largest angle among the separated components.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_angle_deg: Option<f64>,
    /// Under `[privacy.dp]`: what the noise costs each estimate; the checks it reaches are
    /// held to their predicted bound (missed together once in a million runs) (their `diff` is the share of it used, their
    /// tolerance 1); see [`hold_to_noise`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise: Option<Cost>,
    pub checks: Vec<Check>,
}

impl Comparison {
    /// The failed checks, worst first.
    pub fn failures(&self) -> Vec<&Check> {
        let mut f: Vec<&Check> = self.checks.iter().filter(|c| !c.passed).collect();
        f.sort_by(|a, b| (b.diff / b.tolerance).total_cmp(&(a.diff / a.tolerance)));
        f
    }

    /// One line for people: the worst value check, and the angles.
    pub fn describe(&self) -> String {
        let mut m = if self.noise.is_some() {
            format!(
                "largest difference {:.2} of the noise's predicted bound, at {}",
                self.max_diff, self.worst
            )
        } else {
            format!(
                "max difference {:.3e} at {} (tolerance {:.1e})",
                self.max_diff, self.worst, self.tolerance
            )
        };
        if let (Some(a), Some(t)) = (self.max_angle_deg, self.angle_tolerance_deg) {
            m.push_str(&format!(", max angle {a:.2e} deg (tolerance {t} deg)"));
        }
        if let Some(f) = self.failures().first() {
            m.push_str(&format!(
                "; {} differs by {:.3e} (federated {}, expected {}, scale {:.3e})",
                f.name(),
                f.diff,
                readable(f.got),
                readable(f.want),
                f.scale
            ));
        }
        m
    }
}

/// A number in a message: every digit where that is short, else in exponent form (a value of
/// 1e293 printed in full is three hundred digits).
fn readable(x: f64) -> String {
    if x == 0.0 || (1e-4..1e15).contains(&x.abs()) {
        x.to_string()
    } else {
        format!("{x:e}")
    }
}

/// A difference that cannot be computed: which term, and why.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum CompareError {
    #[error("cannot compare {quantity}[{term}]: the {side} value is {value}")]
    NotFinite {
        quantity: &'static str,
        term: String,
        side: &'static str,
        value: f64,
    },
    #[error("cannot compare {quantity}: the federated result has {got} values, the {side} {want}")]
    Length {
        quantity: &'static str,
        side: &'static str,
        got: usize,
        want: usize,
    },
    #[error("cannot compare {quantity}[{term}]: its scale is 0 (value 0 with standard error 0) and the values differ ({got} vs {want})")]
    ZeroScale {
        quantity: &'static str,
        term: String,
        got: f64,
        want: f64,
    },
    #[error("cannot compare result {name:?}: {reason}")]
    Named { name: String, reason: String },
    /// A whole result holds a number that is not finite (checked before any comparison).
    #[error("the {side} result has a non-finite {what}")]
    NotFiniteResult { side: &'static str, what: String },
}

/// Both results hold only finite numbers: a NaN or infinity is named, with its side, before
/// any check could judge it.
pub fn finite_results(federated: &Estimates, centralised: &Estimates) -> Result<(), CompareError> {
    for (side, est) in [("federated", federated), ("centralised", centralised)] {
        if let Some(what) = est.non_finite() {
            return Err(CompareError::NotFiniteResult { side, what });
        }
    }
    Ok(())
}

/// What the federated result is held against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Against {
    Centralised,
    Reference,
}

impl Against {
    fn side(self) -> &'static str {
        match self {
            Against::Centralised => "centralised",
            Against::Reference => "reference",
        }
    }
}

/// Compare every quantity both sides estimate. `angle_tolerance_deg` adds the vector angles
/// (when both sides have vectors, i.e. against the centralised svd).
pub fn compare(
    got: &Estimates,
    want: &Estimates,
    against: Against,
    tolerance: f64,
    angle_tolerance_deg: Option<f64>,
) -> Result<Comparison, CompareError> {
    let side = against.side();
    let term = |i: usize| want.terms.get(i).cloned().unwrap_or_else(|| i.to_string());
    let mut checks = Vec::new();
    let pairs = |q: Quantity, a: &[f64], b: &[f64]| -> Result<Vec<(String, f64, f64)>, _> {
        if a.len() != b.len() {
            return Err(CompareError::Length {
                quantity: q.as_str(),
                side,
                got: a.len(),
                want: b.len(),
            });
        }
        let label = |i: usize| match q {
            Quantity::SingularValue => format!("pc{}", i + 1),
            _ => term(i),
        };
        a.iter()
            .zip(b)
            .enumerate()
            .map(|(i, (x, y))| {
                finite(q, &label(i), *x, *y, against)?;
                Ok((label(i), *x, *y))
            })
            .collect()
    };
    // Coefficients on the scale of their uncertainty (the reference's or baseline's own se).
    if !(got.coef.is_empty() && want.coef.is_empty()) {
        let se = (want.se.len() == want.coef.len()).then_some(&want.se);
        for (i, (t, a, b)) in pairs(Quantity::Coef, &got.coef, &want.coef)?
            .into_iter()
            .enumerate()
        {
            let se_b = se.map_or(0.0, |s| s[i].abs());
            checks.push(judge(
                Quantity::Coef,
                t,
                a,
                b,
                b.abs().max(se_b),
                tolerance,
            )?);
        }
    }
    if !(got.se.is_empty() && want.se.is_empty()) {
        for (t, a, b) in pairs(Quantity::Se, &got.se, &want.se)? {
            checks.push(judge(Quantity::Se, t, a, b, b.abs(), tolerance)?);
        }
    }
    if !(got.singular_values.is_empty() && want.singular_values.is_empty()) {
        let sv = pairs(
            Quantity::SingularValue,
            &got.singular_values,
            &want.singular_values,
        )?;
        let top = want
            .singular_values
            .iter()
            .fold(0.0f64, |m, s| m.max(s.abs()));
        let resolution = f64::EPSILON.sqrt() * top;
        for (t, a, b) in sv {
            let mut c = if b.abs() >= resolution {
                judge(Quantity::SingularValue, t, a, b, b.abs(), tolerance)?
            } else {
                // Numerically zero: judged on the spectrum's resolution, at tolerance 1.
                let mut c = judge(Quantity::SingularValue, t, a, b, resolution, 1.0)?;
                c.note = Some(format!(
                    "below the spectrum's resolution sqrt(eps) * s_1 = {resolution:.3e}: judged on it"
                ));
                c
            };
            c.tolerance = c.tolerance.min(1.0);
            checks.push(c);
        }
    }
    checks.extend(summary_checks(got, want, against, tolerance)?);
    let mut max_angle_deg = None;
    if let Some(angle_tol) =
        angle_tolerance_deg.filter(|_| !got.vectors.is_empty() && !want.vectors.is_empty())
    {
        let k = got.vectors.len().min(want.vectors.len());
        let sep = separated(&want.spectrum, k);
        let mut max = 0.0f64;
        for (i, is_separated) in sep.iter().enumerate() {
            let a = angle_deg(&got.vectors[i], &want.vectors[i]);
            if *is_separated {
                max = max.max(a);
            }
            checks.push(Check {
                quantity: Quantity::Angle,
                term: format!("pc{}", i + 1),
                got: a,
                want: 0.0,
                abs_diff: a,
                scale: 1.0,
                diff: a,
                tolerance: angle_tol,
                passed: !is_separated || a <= angle_tol,
                note: (!is_separated).then(|| {
                    "singular value not separated from its neighbours: the vector is not defined, the angle is not judged".to_string()
                }),
            });
        }
        max_angle_deg = Some(max);
    }
    checks.extend(named(got, want, against, tolerance)?);
    let values = || checks.iter().filter(|c| c.quantity != Quantity::Angle);
    let worst = values().max_by(|a, b| a.diff.total_cmp(&b.diff));
    Ok(Comparison {
        tolerance,
        angle_tolerance_deg: max_angle_deg.and(angle_tolerance_deg),
        passed: checks.iter().all(|c| c.passed),
        max_diff: worst.map_or(0.0, |c| c.diff),
        max_abs_diff: values().map(|c| c.abs_diff).fold(0.0, f64::max),
        worst: worst.map(Check::name).unwrap_or_default(),
        max_angle_deg,
        noise: None,
        checks,
    })
}

/// What differential privacy's noise costs one estimate (see `dp::predict`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TermCost {
    /// The check's name: `coef[bmi]`, `r2`.
    pub name: String,
    /// The predicted standard deviation of the noise's error.
    pub sd: f64,
    /// The clipping's bias: the noiseless clipped answer against the pooled one.
    pub bias: f64,
    /// |bias| + z sd: what the verdict holds the federated answer to (see [`Cost::z`]; `dp::predict` makes it).
    pub bound: f64,
}

/// What `[privacy.dp]` costs one analysis's estimates.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Cost {
    pub mechanism: crate::scenario::Mechanism,
    /// Each site's budget over the run.
    pub epsilon: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<f64>,
    /// The rounds this analysis ran without noise, and the run's planned rounds the budget is
    /// split over.
    pub rounds: usize,
    pub run_rounds: usize,
    /// The normal quantile each bound is drawn at: the `held` estimates miss together once in a
    /// million runs.
    pub z: f64,
    pub held: usize,
    pub terms: Vec<TermCost>,
}

impl Cost {
    pub fn term(&self, name: &str) -> Option<&TermCost> {
        self.terms.iter().find(|t| t.name == name)
    }
}

/// A DP run's verdict: every check the noise reaches is held to the bound the mechanism
/// predicts for it (its clipping bias plus a quantile of its spread, missed once in a million runs) instead of the
/// exact rule; one the noise cannot move (a degree of freedom) keeps the exact rule.
pub fn hold_to_noise(c: &mut Comparison, cost: &Cost) {
    for check in &mut c.checks {
        let Some(t) = cost.term(&check.name()).filter(|t| t.bound > 0.0) else {
            continue;
        };
        check.scale = t.bound;
        check.diff = check.abs_diff / t.bound;
        check.tolerance = 1.0;
        check.passed = check.diff <= 1.0;
        check.note = Some(format!(
            "differential privacy: held to the noise's bound {:.3e} (bias {:.3e} + {:.2} sd of {:.3e}: all {} estimates within, but once in a million runs)",
            t.bound, t.bias, cost.z, t.sd, cost.held
        ));
    }
    // A P-value moves with the noise far from linearly (1e-39 to 1e-9 for a t of 13 against
    // one of 10), and so does an R², a ratio of noisy sums whose error has heavy tails (at
    // epsilon = 1 it went 6.4 of its linear spreads off in one run of twelve): each is judged
    // through the statistic it is a monotone function of (R² = 1 - 1 / (1 + F df_model /
    // df_resid); McFadden's pseudo R² = LLR / (-2 llnull)).
    let statistic = |q: Quantity| match q {
        Quantity::P => Some(Quantity::T),
        Quantity::FPvalue | Quantity::R2 | Quantity::AdjR2 => Some(Quantity::Fvalue),
        Quantity::LlrPvalue | Quantity::PseudoR2 => Some(Quantity::Llr),
        _ => None,
    };
    let judged: Vec<Option<(f64, bool, String)>> = c
        .checks
        .iter()
        .map(|p| {
            let q = statistic(p.quantity)?;
            let s = c
                .checks
                .iter()
                .find(|s| s.quantity == q && s.term == p.term && s.note.is_some())?;
            Some((s.diff, s.passed, s.name()))
        })
        .collect();
    for (check, j) in c.checks.iter_mut().zip(judged) {
        if let Some((diff, passed, name)) = j {
            check.scale = check.abs_diff / diff.max(f64::MIN_POSITIVE);
            check.diff = diff;
            check.tolerance = 1.0;
            check.passed = passed;
            check.note = Some(format!(
                "differential privacy: {} moves with the noise far from linearly; judged through {name}",
                check.name()
            ));
        }
    }
    // How much of its allowance each check used (a check held exactly at 0 uses none or all).
    let used = |c: &Check| match (c.diff, c.tolerance) {
        (d, t) if t > 0.0 => d / t,
        (0.0, _) => 0.0,
        _ => f64::INFINITY,
    };
    let values = || c.checks.iter().filter(|c| c.quantity != Quantity::Angle);
    let worst = values().max_by(|a, b| used(a).total_cmp(&used(b)));
    c.max_diff = worst.map_or(0.0, used);
    c.worst = worst.map(Check::name).unwrap_or_default();
    c.passed = c.checks.iter().all(|c| c.passed);
    c.noise = Some(cost.clone());
}

/// What a fit's summary adds (t, p, confidence intervals, R², log-likelihoods, explained
/// variance), each on the scale its own error follows from the coefficients' and standard
/// errors' (see the module's rule). Only what both sides report is compared.
fn summary_checks(
    got: &Estimates,
    want: &Estimates,
    against: Against,
    tolerance: f64,
) -> Result<Vec<Check>, CompareError> {
    let mut checks = Vec::new();
    let term = |i: usize| {
        want.terms
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("pc{}", i + 1))
    };
    let both = |a: &[f64], b: &[f64]| !a.is_empty() && !b.is_empty();
    let mut per_term = |q: Quantity,
                        a: &[f64],
                        b: &[f64],
                        scale: &dyn Fn(usize, f64) -> f64,
                        tol: f64|
     -> Result<(), CompareError> {
        if !both(a, b) {
            return Ok(());
        }
        if a.len() != b.len() {
            return Err(CompareError::Length {
                quantity: q.as_str(),
                side: against.side(),
                got: a.len(),
                want: b.len(),
            });
        }
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            let label = if q == Quantity::ExplainedVariance || q == Quantity::ExplainedVarianceRatio
            {
                format!("pc{}", i + 1)
            } else {
                term(i)
            };
            finite(q, &label, *x, *y, against)?;
            checks.push(judge(q, label, *x, *y, scale(i, *y), tol)?);
        }
        Ok(())
    };
    let se = |i: usize| want.se.get(i).copied().unwrap_or(0.0).abs();
    let t = |i: usize| want.t.get(i).copied().unwrap_or(0.0).abs();
    // t = coef / se: the coefficient's rule, divided by se.
    per_term(
        Quantity::T,
        &got.t,
        &want.t,
        &|_, y| y.abs().max(1.0),
        tolerance,
    )?;
    // p = 2 sf(|t|): an error of e in t moves p by about p t² e for large t.
    per_term(
        Quantity::P,
        &got.p,
        &want.p,
        &|i, y| y.max(f64::MIN_POSITIVE) * t(i).powi(2).max(1.0),
        tolerance,
    )?;
    per_term(
        Quantity::ConfLow,
        &got.conf_low,
        &want.conf_low,
        &|i, y| y.abs().max(se(i)),
        tolerance,
    )?;
    per_term(
        Quantity::ConfHigh,
        &got.conf_high,
        &want.conf_high,
        &|i, y| y.abs().max(se(i)),
        tolerance,
    )?;
    // Squares of singular values: twice their relative error, and their resolution squared.
    let top = want
        .explained_variance
        .first()
        .copied()
        .unwrap_or(0.0)
        .abs();
    per_term(
        Quantity::ExplainedVariance,
        &got.explained_variance,
        &want.explained_variance,
        &|_, y| y.abs().max(f64::EPSILON * top),
        2.0 * tolerance.min(1.0),
    )?;
    let top_ratio = want
        .explained_variance_ratio
        .first()
        .copied()
        .unwrap_or(0.0)
        .abs();
    per_term(
        Quantity::ExplainedVarianceRatio,
        &got.explained_variance_ratio,
        &want.explained_variance_ratio,
        &|_, y| y.abs().max(f64::EPSILON * top_ratio),
        2.0 * tolerance.min(1.0),
    )?;
    // One number per model: R²s on an absolute scale (they live in [0, 1]); log-likelihoods,
    // information criteria, F and the likelihood ratio relative to themselves (at least 1);
    // degrees of freedom are whole numbers, so any difference fails; a test's P-value like the
    // coefficients' (its error follows from the statistic's: about p (d1 F / 2) e for F with d1
    // degrees of freedom, p (LLR / 2) e for the likelihood ratio).
    let relative = |y: f64| y.abs().max(1.0);
    let f_scale = |y: f64| {
        let stretch = want
            .fvalue
            .zip(want.df_model)
            .map_or(1.0, |(f, d)| f * d / 2.0);
        y.max(f64::MIN_POSITIVE) * stretch.max(1.0)
    };
    let llr_scale = |y: f64| {
        let stretch = want.llr.map_or(1.0, |l| l / 2.0);
        y.max(f64::MIN_POSITIVE) * stretch.max(1.0)
    };
    type Scale<'a> = &'a dyn Fn(f64) -> f64;
    let models: [(Quantity, Option<f64>, Option<f64>, Scale); 17] = [
        (Quantity::R2, got.r2, want.r2, &|_| 1.0),
        (Quantity::AdjR2, got.adj_r2, want.adj_r2, &|_| 1.0),
        (Quantity::PseudoR2, got.pseudo_r2, want.pseudo_r2, &|_| 1.0),
        (Quantity::Loglik, got.loglik, want.loglik, &relative),
        (Quantity::Llnull, got.llnull, want.llnull, &relative),
        (Quantity::DfModel, got.df_model, want.df_model, &|_| 1.0),
        (Quantity::DfResid, got.df_resid, want.df_resid, &|_| 1.0),
        (Quantity::Fvalue, got.fvalue, want.fvalue, &relative),
        (Quantity::FPvalue, got.f_pvalue, want.f_pvalue, &f_scale),
        (Quantity::Aic, got.aic, want.aic, &relative),
        (Quantity::Bic, got.bic, want.bic, &relative),
        (Quantity::Llr, got.llr, want.llr, &relative),
        (
            Quantity::LlrPvalue,
            got.llr_pvalue,
            want.llr_pvalue,
            &llr_scale,
        ),
        (Quantity::Deviance, got.deviance, want.deviance, &relative),
        (
            Quantity::PearsonChi2,
            got.pearson_chi2,
            want.pearson_chi2,
            &relative,
        ),
        (Quantity::Dispersion, got.scale, want.scale, &|y| y.abs()),
        (
            Quantity::NullDeviance,
            got.null_deviance,
            want.null_deviance,
            &relative,
        ),
    ];
    for (q, a, b, scale) in models {
        let (Some(x), Some(y)) = (a, b) else { continue };
        finite(q, "", x, y, against)?;
        let tol = if matches!(q, Quantity::DfModel | Quantity::DfResid) {
            0.0
        } else {
            tolerance
        };
        checks.push(judge(q, String::new(), x, y, scale(y), tol)?);
    }
    Ok(checks)
}

fn finite(
    q: Quantity,
    term: &str,
    got: f64,
    want: f64,
    against: Against,
) -> Result<(), CompareError> {
    for (value, side) in [(got, "federated"), (want, against.side())] {
        if !value.is_finite() {
            return Err(CompareError::NotFinite {
                quantity: q.as_str(),
                term: term.to_string(),
                side,
                value,
            });
        }
    }
    Ok(())
}

/// An external algorithm's named results: the same names and shapes on both sides, each number
/// relative to itself, with a floor of `sqrt(eps)` times the largest magnitude in its result
/// (a number that is zero up to rounding is judged on the scale of its neighbours).
fn named(
    got: &Estimates,
    want: &Estimates,
    against: Against,
    tolerance: f64,
) -> Result<Vec<Check>, CompareError> {
    use crate::algorithms::external::flatten;
    let differ = |name: &str, reason: String| CompareError::Named {
        name: name.to_string(),
        reason,
    };
    if let Some(n) = want.named.keys().find(|n| !got.named.contains_key(*n)) {
        return Err(differ(
            n,
            format!(
                "the {} result has it, the federated one does not",
                against.side()
            ),
        ));
    }
    if let Some(n) = got.named.keys().find(|n| !want.named.contains_key(*n)) {
        return Err(differ(
            n,
            format!(
                "the federated result has it, the {} one does not",
                against.side()
            ),
        ));
    }
    let mut checks = Vec::new();
    for (name, w) in &want.named {
        let (a, b) = (flatten(name, &got.named[name]), flatten(name, w));
        let labels = |v: &[(String, f64)]| v.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
        if labels(&a) != labels(&b) {
            return Err(differ(
                name,
                format!(
                    "its shape differs: federated {} values ({}), {} {} ({})",
                    a.len(),
                    a.last().map_or("", |x| x.0.as_str()),
                    against.side(),
                    b.len(),
                    b.last().map_or("", |x| x.0.as_str())
                ),
            ));
        }
        let analysis = want.analysis.as_deref().or(got.analysis.as_deref());
        if let Some(kind) = analysis {
            for (i, ((label, x), (_, y))) in a.into_iter().zip(b).enumerate() {
                finite(Quantity::Value, &label, x, y, against)?;
                let (scale, tol, note) = table_rule(kind, name, i, y, got, want, tolerance);
                let mut c = judge(Quantity::Value, label, x, y, scale, tol)?;
                c.note = note;
                checks.push(c);
            }
            continue;
        }
        let top = b.iter().fold(0.0f64, |m, x| m.max(x.1.abs()));
        let floor = f64::EPSILON.sqrt() * top;
        for ((label, x), (_, y)) in a.into_iter().zip(b) {
            finite(Quantity::Value, &label, x, y, against)?;
            checks.push(judge(
                Quantity::Value,
                label,
                x,
                y,
                y.abs().max(floor),
                tolerance,
            )?);
        }
    }
    Ok(checks)
}

/// How one number of a crosstab's or describe's result is judged: (scale, tolerance, note).
///
/// - counts, `n`, `df` and `count` are whole numbers: exactly (tolerance 0);
/// - expected counts and chi² relative to themselves (chi² to at least 1, as a deviance);
///   a test's P on `p * max(chi² / 2, 1)`, as the likelihood-ratio test's;
/// - a mean on `max(|mean|, sd)` (a mean near 0 on its column's spread), an sd relative to
///   itself, a correlation absolutely (it lives in [-1, 1]);
/// - quantiles, min and max on the column's sd, with the tolerance the bisection states
///   (`quantile_tol`) when it is wider than the comparison's.
fn table_rule(
    kind: &str,
    name: &str,
    index: usize,
    want_value: f64,
    got: &Estimates,
    want: &Estimates,
    tolerance: f64,
) -> (f64, f64, Option<String>) {
    use crate::algorithms::external::flatten;
    let number = |e: &Estimates, k: &str| {
        e.named
            .get(k)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0)
    };
    // The column a per-column number belongs to: its row in the flattened table.
    let width = |k: &str| {
        want.named
            .get(k)
            .and_then(|v| v.get("values"))
            .and_then(|v| v.get(0))
            .and_then(serde_json::Value::as_array)
            .map_or(1, |r| r.len().max(1))
    };
    let sd = |column: usize| {
        want.named
            .get("sd")
            .map(|v| flatten("sd", v))
            .and_then(|v| v.get(column).map(|x| x.1.abs()))
            .unwrap_or(0.0)
    };
    let exact = (1.0, 0.0, None);
    match (kind, name) {
        ("crosstab", "n" | "counts" | "df") | ("describe", "n" | "count") => exact,
        ("crosstab", "p" | "p_yates") => {
            let chi2 = number(want, if name == "p" { "chi2" } else { "chi2_yates" });
            (
                want_value.max(f64::MIN_POSITIVE) * (chi2 / 2.0).max(1.0),
                tolerance,
                None,
            )
        }
        ("crosstab", "chi2" | "chi2_yates") => (want_value.abs().max(1.0), tolerance, None),
        ("describe", "mean") => (want_value.abs().max(sd(index)), tolerance, None),
        ("describe", "corr") => (1.0, tolerance, None),
        ("describe", "quantiles" | "min" | "max") => {
            let stated = got.quantile_tol.unwrap_or(0.0);
            let column = index / width(name);
            if stated > tolerance {
                (
                    sd(column),
                    stated,
                    Some(format!(
                        "bisected to {stated:e} standard deviations (quantile_tol)"
                    )),
                )
            } else {
                (sd(column), tolerance, None)
            }
        }
        _ => (want_value.abs(), tolerance, None),
    }
}

fn judge(
    quantity: Quantity,
    term: String,
    got: f64,
    want: f64,
    scale: f64,
    tolerance: f64,
) -> Result<Check, CompareError> {
    let abs_diff = (got - want).abs();
    let diff = if scale > 0.0 {
        abs_diff / scale
    } else if abs_diff == 0.0 {
        0.0
    } else {
        return Err(CompareError::ZeroScale {
            quantity: quantity.as_str(),
            term,
            got,
            want,
        });
    };
    Ok(Check {
        quantity,
        term,
        got,
        want,
        abs_diff,
        scale,
        diff,
        tolerance,
        passed: diff <= tolerance,
        note: None,
    })
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

/// Whether each of the first `k` values of `spectrum` is separated from its neighbours (relative
/// gap above 1e-3); only for those is the vector well defined and its angle judged.
pub fn separated(spectrum: &[f64], k: usize) -> Vec<bool> {
    (0..k)
        .map(|i| {
            let Some(&s) = spectrum.get(i) else {
                return false;
            };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn est(coef: Vec<f64>, se: Vec<f64>) -> Estimates {
        Estimates {
            terms: vec!["a".into(), "b".into()],
            se,
            coef,
            ..Default::default()
        }
    }

    fn cmp(got: &Estimates, want: &Estimates) -> Comparison {
        compare(got, want, Against::Centralised, 1e-8, None).unwrap()
    }

    #[test]
    fn finds_the_worst_term() {
        let want = est(vec![1.0, 2.0], vec![0.1, 0.1]);
        let c = cmp(&est(vec![1.0, 2.0 + 2e-6], vec![0.1, 0.1]), &want);
        assert!(!c.passed);
        assert_eq!(c.worst, "coef[b]");
        assert!((c.max_diff - 1e-6).abs() < 1e-12);
        assert_eq!(c.failures()[0].name(), "coef[b]");
        assert!(c.describe().contains("coef[b]"), "{}", c.describe());
        assert!(cmp(&want, &want).passed);
        assert_eq!(cmp(&want, &want).checks.len(), 4);
    }

    #[test]
    fn a_true_zero_coefficient_is_judged_on_its_standard_error() {
        // The case from the field: an orthogonal covariate, -8e-17 federated vs 3e-17 pooled,
        // standard error 2.6. Relative to itself that is 3.7; relative to its se, 4e-17.
        let want = est(vec![3e-17, 5.0], vec![2.6, 0.5]);
        let got = est(vec![-8e-17, 5.0], vec![2.6, 0.5]);
        let c = cmp(&got, &want);
        assert!(c.passed, "{c:?}");
        let zero = &c.checks[0];
        assert_eq!(zero.scale, 2.6);
        assert!(zero.diff < 1e-16);
        // A real difference on that scale still fails.
        let off = est(vec![1e-7, 5.0], vec![2.6, 0.5]);
        assert!(!cmp(&off, &want).passed);
    }

    #[test]
    fn non_finite_and_length_mismatch_are_errors_naming_the_term() {
        let want = est(vec![1.0, 2.0], vec![0.1, 0.1]);
        let e = compare(
            &est(vec![f64::NAN, 2.0], vec![0.1, 0.1]),
            &want,
            Against::Reference,
            1e-8,
            None,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot compare coef[a]: the federated value is NaN"
        );
        let e = compare(
            &est(vec![1.0], vec![0.1]),
            &want,
            Against::Reference,
            1e-8,
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("1 values, the reference 2"), "{e}");
    }

    #[test]
    fn a_numerically_zero_singular_value_is_judged_on_the_resolution() {
        let sv = |v: Vec<f64>| Estimates {
            singular_values: v,
            ..Default::default()
        };
        // s_3 is zero in truth; the Gram route resolves it only to sqrt(eps) * s_1.
        let c = cmp(&sv(vec![10.0, 5.0, 1.2e-7]), &sv(vec![10.0, 5.0, 3e-15]));
        assert!(c.passed, "{c:?}");
        assert!(c.checks[2].note.is_some());
        assert_eq!(c.checks[2].name(), "singular_value[pc3]");
        assert!(!cmp(&sv(vec![10.0, 5.0 + 1e-6, 0.0]), &sv(vec![10.0, 5.0, 0.0])).passed);
    }

    /// A crosstab's counts are judged exactly, describe's quantiles on the column's sd at the
    /// width the bisection states.
    #[test]
    fn table_numbers_are_judged_by_their_own_rules() {
        use serde_json::json;
        let table = |counts: serde_json::Value, chi2: f64| Estimates {
            analysis: Some("crosstab".into()),
            named: [
                (
                    "counts".to_string(),
                    json!({"labels": [["a", "b"], ["x"]], "values": counts}),
                ),
                ("chi2".to_string(), json!(chi2)),
            ]
            .into(),
            ..Default::default()
        };
        let want = table(json!([[3], [4]]), 2.0);
        assert!(cmp(&table(json!([[3], [4]]), 2.0 + 1e-9), &want).passed);
        let off = cmp(&table(json!([[3], [5]]), 2.0), &want);
        assert!(!off.passed);
        assert_eq!(off.failures()[0].name(), "counts[b,x]");
        assert_eq!(off.failures()[0].tolerance, 0.0);
        let describe = |q: f64, tol: Option<f64>| Estimates {
            analysis: Some("describe".into()),
            quantile_tol: tol,
            named: [
                ("sd".to_string(), json!({"labels": ["v"], "values": [2.0]})),
                (
                    "quantiles".to_string(),
                    json!({"labels": [["v"], ["0.5"]], "values": [[q]]}),
                ),
            ]
            .into(),
            ..Default::default()
        };
        let want = describe(10.0, None);
        // 1e-4 off: 5e-5 standard deviations, too far for 1e-8, within a stated 1e-4.
        assert!(!cmp(&describe(10.0001, Some(0.0)), &want).passed);
        let c = cmp(&describe(10.0001, Some(1e-4)), &want);
        assert!(c.passed, "{c:?}");
        let q = c
            .checks
            .iter()
            .find(|k| k.term == "quantiles[v,0.5]")
            .unwrap();
        assert_eq!((q.scale, q.tolerance), (2.0, 1e-4));
        assert!(q.note.as_deref().unwrap().contains("quantile_tol"));
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
    fn unseparated_components_are_listed_but_not_judged() {
        let e = |v: Vec<Vec<f64>>| Estimates {
            singular_values: vec![10.0, 5.0, 5.0],
            spectrum: vec![10.0, 5.0, 5.0],
            vectors: v,
            ..Default::default()
        };
        let want = e(vec![
            vec![1.0, 0.0, 0.0],
            vec![0.0, 1.0, 0.0],
            vec![0.0, 0.0, 1.0],
        ]);
        let got = e(vec![
            vec![1.0, 0.0, 0.0],
            vec![0.0, 1.0, 1.0],
            vec![0.0, 1.0, -1.0],
        ]);
        let c = compare(&got, &want, Against::Centralised, 1e-8, Some(0.01)).unwrap();
        assert!(c.passed, "{c:?}");
        let angles: Vec<&Check> = c
            .checks
            .iter()
            .filter(|c| c.quantity == Quantity::Angle)
            .collect();
        assert_eq!(angles.len(), 3);
        assert!(angles[1].got > 1.0 && angles[1].note.is_some());
        assert_eq!(c.max_angle_deg, Some(0.0));
    }
}
