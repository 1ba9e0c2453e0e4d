//! Independent reference results (`reference.jsonl`, made by `test_data/make_reference.py` with
//! statsmodels and numpy). A row counts only if it describes this very analysis: the same data
//! file, kind, target and terms (and for a PCA the same k, centring and scaling). A row for the
//! same file that describes another analysis is bad input, found before the run starts, because
//! holding the run against it would give a verdict about something else.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::algorithms::{Estimates, Params};
use crate::plan::Plan;
use crate::scenario::AlgorithmKind;

/// `scale` means two things: a PCA's z-scoring, a GLM's dispersion.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum ScaleField {
    Flag(bool),
    Value(f64),
}

impl ScaleField {
    fn flag(self) -> Option<bool> {
        match self {
            ScaleField::Flag(b) => Some(b),
            ScaleField::Value(_) => None,
        }
    }
    fn value(self) -> Option<f64> {
        match self {
            ScaleField::Value(v) => Some(v),
            ScaleField::Flag(_) => None,
        }
    }
}

/// `p` means two things: a regression's P-value per term, a crosstab's one test.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum PField {
    List(Vec<f64>),
    Value(f64),
}

impl Default for PField {
    fn default() -> Self {
        PField::List(Vec::new())
    }
}

/// One line of a reference file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReferenceRow {
    pub csv: String,
    /// `ols`, `logit` or `pca`.
    pub kind: String,
    #[serde(default)]
    pub target: Option<String>,
    /// Regressions: `const` then the features; pca: the feature columns.
    pub terms: Vec<String>,
    pub n: usize,
    #[serde(default)]
    pub coef: Vec<f64>,
    #[serde(default)]
    pub se: Vec<f64>,
    /// Regressions: what the fit's summary shows (t or z, P, the 95% interval, the model's
    /// statistics), so that fedsim's distribution functions are held against scipy's too.
    #[serde(default)]
    pub t: Vec<f64>,
    #[serde(default)]
    pub p: PField,
    #[serde(default)]
    pub conf_low: Vec<f64>,
    #[serde(default)]
    pub conf_high: Vec<f64>,
    #[serde(default)]
    pub r2: Option<f64>,
    #[serde(default)]
    pub adj_r2: Option<f64>,
    #[serde(default)]
    pub sigma2: Option<f64>,
    #[serde(default)]
    pub loglik: Option<f64>,
    /// Logit: the constant-only log-likelihood in closed form (statsmodels fits it numerically,
    /// to about 3e-11), and what follows from it.
    #[serde(default)]
    pub llnull: Option<f64>,
    #[serde(default)]
    pub pseudo_r2: Option<f64>,
    #[serde(default)]
    pub llr: Option<f64>,
    #[serde(default)]
    pub llr_pvalue: Option<f64>,
    #[serde(default)]
    pub df_model: Option<f64>,
    #[serde(default)]
    pub df_resid: Option<f64>,
    /// OLS: the F test of the model.
    #[serde(default)]
    pub fvalue: Option<f64>,
    #[serde(default)]
    pub f_pvalue: Option<f64>,
    #[serde(default)]
    pub aic: Option<f64>,
    #[serde(default)]
    pub bic: Option<f64>,
    /// pca: the leading `k` singular values and their explained variance.
    /// glm: the model (family, link, offset, exposure, weights) and its summary's statistics.
    #[serde(default)]
    pub family: Option<String>,
    #[serde(default)]
    pub link: Option<String>,
    #[serde(default)]
    pub offset: Option<String>,
    #[serde(default)]
    pub exposure: Option<String>,
    #[serde(default)]
    pub weights: Option<String>,
    #[serde(default)]
    pub deviance: Option<f64>,
    #[serde(default)]
    pub pearson_chi2: Option<f64>,
    #[serde(default)]
    pub null_deviance: Option<f64>,
    /// glm: statsmodels' deviance-based BIC, kept for provenance (fedsim reports `bic` from
    /// the log-likelihood, as `bic_llf`).
    #[serde(default)]
    pub bic_deviance: Option<f64>,
    /// glm with frequency weights: the weights' sum (the rows the fit counts).
    #[serde(default)]
    pub n_weighted: Option<f64>,
    #[serde(default)]
    pub singular_values: Vec<f64>,
    #[serde(default)]
    pub explained_variance: Vec<f64>,
    #[serde(default)]
    pub k: Option<usize>,
    #[serde(default)]
    pub center: Option<bool>,
    /// pca: whether columns were z-scored; glm: the estimated scale.
    #[serde(default)]
    pub scale: Option<ScaleField>,
    /// Survival analyses: the time and event columns; kaplan_meier's group column, its curves
    /// and log-rank test, and the interval's kind ("log-log").
    #[serde(default)]
    pub time: Option<String>,
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub conf_type: Option<String>,
    #[serde(default)]
    pub groups: Vec<KmGroup>,
    #[serde(default)]
    pub logrank: Option<Logrank>,
    /// crosstab: the two columns, their levels (text, or numbers for a numeric column), the
    /// table of counts and scipy's `chi2_contingency` (without and, for 2x2, with Yates').
    #[serde(default)]
    pub rows: Option<String>,
    #[serde(default)]
    pub cols: Option<String>,
    #[serde(default)]
    pub row_levels: Vec<serde_json::Value>,
    #[serde(default)]
    pub col_levels: Vec<serde_json::Value>,
    #[serde(default)]
    pub counts: Vec<Vec<u64>>,
    #[serde(default)]
    pub expected: Vec<Vec<f64>>,
    #[serde(default)]
    pub chi2: Option<f64>,
    #[serde(default)]
    pub df: Option<u32>,
    #[serde(default)]
    pub chi2_yates: Option<f64>,
    #[serde(default)]
    pub p_yates: Option<f64>,
    /// describe: numpy's per-column statistics (terms' order), quantiles by three of numpy's
    /// methods (fedsim's bisection finds `inverted_cdf`'s), and `corrcoef`.
    #[serde(default)]
    pub count: Vec<u64>,
    #[serde(default)]
    pub mean: Vec<f64>,
    #[serde(default)]
    pub sd: Vec<f64>,
    #[serde(default)]
    pub min: Vec<f64>,
    #[serde(default)]
    pub max: Vec<f64>,
    #[serde(default)]
    pub quantile_probs: Vec<f64>,
    #[serde(default)]
    pub quantiles_linear: Vec<Vec<f64>>,
    #[serde(default)]
    pub quantiles_inverted_cdf: Vec<Vec<f64>>,
    #[serde(default)]
    pub quantiles_lower: Vec<Vec<f64>>,
    #[serde(default)]
    pub corr: Vec<Vec<f64>>,
    /// cox: the handling of tied times ("breslow" or "efron"), the strata column, the events,
    /// and the hazard ratios with their interval (exp of coef and of the interval).
    #[serde(default)]
    pub ties: Option<String>,
    #[serde(default)]
    pub strata: Option<String>,
    #[serde(default)]
    pub events: Option<f64>,
    #[serde(default)]
    pub hazard_ratio: Vec<f64>,
    #[serde(default)]
    pub hr_low: Vec<f64>,
    #[serde(default)]
    pub hr_high: Vec<f64>,
    /// What computed the row (e.g. "statsmodels 0.15.0 OLS"), for provenance.
    #[serde(default)]
    pub by: Option<String>,
}

/// One Kaplan-Meier curve of a reference row (statsmodels' `SurvfuncRight`; nulls where a
/// value is undefined).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KmGroup {
    pub group: Option<f64>,
    pub n: f64,
    pub time: Vec<f64>,
    pub surv: Vec<f64>,
    pub surv_se: Vec<Option<f64>>,
    pub n_risk: Vec<f64>,
    pub n_events: Vec<f64>,
    pub median: Option<f64>,
    pub conf_low: Vec<Option<f64>>,
    pub conf_high: Vec<Option<f64>>,
}

/// statsmodels' `survdiff`: chi², its degrees of freedom, P as 1 - cdf and as scipy's sf.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Logrank {
    pub chi2: f64,
    pub df: usize,
    pub p: f64,
    pub p_sf: f64,
}

impl ReferenceRow {
    /// The row's numbers in the shape `federated` has: a describe row's min and max only
    /// when the federated result reports them (`extremes = true`).
    pub fn estimates_like(&self, federated: &Estimates) -> Estimates {
        let mut e = self.estimates();
        if e.analysis.as_deref() == Some("describe") {
            for k in ["min", "max"] {
                if !federated.named.contains_key(k) {
                    e.named.remove(k);
                }
            }
        }
        e
    }

    pub fn estimates(&self) -> Estimates {
        match self.kind.as_str() {
            "crosstab" => return self.crosstab(),
            "describe" => return self.describe(),
            _ => {}
        }
        let p = match &self.p {
            PField::List(p) => p.clone(),
            PField::Value(_) => Vec::new(),
        };
        let mut named = std::collections::BTreeMap::new();
        for g in &self.groups {
            let curve = crate::algorithms::survival::Curve {
                n: g.n,
                time: g.time.clone(),
                surv: g.surv.clone(),
                surv_se: g.surv_se.clone(),
                conf_low: g.conf_low.clone(),
                conf_high: g.conf_high.clone(),
                n_risk: g.n_risk.clone(),
                n_events: g.n_events.clone(),
                median: g.median,
            };
            curve.add_named(&mut named, self.group.as_deref().zip(g.group));
        }
        if let Some(l) = &self.logrank {
            named.insert("logrank_chi2".into(), serde_json::json!(l.chi2));
            named.insert("logrank_df".into(), serde_json::json!(l.df));
            named.insert("logrank_p".into(), serde_json::json!(l.p_sf));
        }
        for (name, values) in [
            ("hazard_ratio", &self.hazard_ratio),
            ("hr_low", &self.hr_low),
            ("hr_high", &self.hr_high),
        ] {
            if !values.is_empty() {
                named.insert(
                    name.into(),
                    serde_json::json!({ "values": values, "labels": self.terms }),
                );
            }
        }
        if let Some(events) = self.events {
            named.insert("events".into(), serde_json::json!(events));
        }
        Estimates {
            named,
            n: self.n,
            terms: self.terms.clone(),
            coef: self.coef.clone(),
            se: self.se.clone(),
            t: self.t.clone(),
            p,
            conf_low: self.conf_low.clone(),
            conf_high: self.conf_high.clone(),
            r2: self.r2,
            adj_r2: self.adj_r2,
            loglik: self.loglik,
            llnull: self.llnull,
            pseudo_r2: self.pseudo_r2,
            llr: self.llr,
            llr_pvalue: self.llr_pvalue,
            df_model: self.df_model,
            df_resid: self.df_resid,
            fvalue: self.fvalue,
            f_pvalue: self.f_pvalue,
            aic: self.aic,
            bic: self.bic,
            deviance: self.deviance,
            pearson_chi2: self.pearson_chi2,
            scale: self.scale.and_then(ScaleField::value),
            null_deviance: self.null_deviance,
            singular_values: self.singular_values.clone(),
            explained_variance: self.explained_variance.clone(),
            ..Default::default()
        }
    }
}

impl ReferenceRow {
    /// A crosstab row as the federated result names it.
    fn crosstab(&self) -> Estimates {
        use serde_json::json;
        let labels = json!([
            crate::algorithms::crosstab::level_names(&self.row_levels),
            crate::algorithms::crosstab::level_names(&self.col_levels)
        ]);
        let mut named = std::collections::BTreeMap::new();
        named.insert("n".to_string(), json!(self.n));
        named.insert(
            "counts".to_string(),
            json!({"labels": labels, "values": self.counts}),
        );
        named.insert(
            "expected".to_string(),
            json!({"labels": labels, "values": self.expected}),
        );
        let p = match self.p {
            PField::Value(p) => Some(p),
            PField::List(_) => None,
        };
        for (k, v) in [
            ("chi2", self.chi2),
            ("p", p),
            ("chi2_yates", self.chi2_yates),
            ("p_yates", self.p_yates),
        ] {
            if let Some(v) = v {
                named.insert(k.to_string(), json!(v));
            }
        }
        if let Some(df) = self.df {
            named.insert("df".to_string(), json!(df));
        }
        Estimates {
            n: self.n,
            analysis: Some("crosstab".into()),
            named,
            ..Default::default()
        }
    }

    /// A describe row as the federated result names it: its quantiles are numpy's
    /// `inverted_cdf` ones, the definition the federated bisection reaches.
    fn describe(&self) -> Estimates {
        use serde_json::json;
        let terms = &self.terms;
        let probs: Vec<String> = self.quantile_probs.iter().map(|q| q.to_string()).collect();
        let mut named = std::collections::BTreeMap::new();
        named.insert("n".to_string(), json!(self.n));
        for (k, v) in [
            ("mean", &self.mean),
            ("sd", &self.sd),
            ("min", &self.min),
            ("max", &self.max),
        ] {
            named.insert(k.to_string(), json!({"labels": terms, "values": v}));
        }
        named.insert(
            "count".to_string(),
            json!({"labels": terms, "values": self.count}),
        );
        if !probs.is_empty() {
            named.insert(
                "quantiles".to_string(),
                json!({"labels": [terms, probs], "values": self.quantiles_inverted_cdf}),
            );
        }
        named.insert(
            "corr".to_string(),
            json!({"labels": terms, "values": self.corr}),
        );
        Estimates {
            n: self.n,
            terms: terms.clone(),
            analysis: Some("describe".into()),
            named,
            ..Default::default()
        }
    }
}

/// The analysis a reference row must describe.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// The data file's name (references are made per file).
    pub csv: String,
    pub kind: &'static str,
    pub target: Option<String>,
    pub terms: Vec<String>,
    /// pca only: components, centring, scaling.
    pub k: Option<usize>,
    pub center: Option<bool>,
    pub scale: Option<bool>,
    /// The kind's own options a row must name alike (a GLM's family, link, offset, exposure
    /// and weights; a crosstab's rows and cols; describe's quantile probabilities), as (key,
    /// value or none).
    pub options: Vec<(&'static str, Option<String>)>,
}

impl Analysis {
    pub fn of(plan: &Plan) -> Analysis {
        let c = &plan.analysis();
        let svd = match &c.params {
            Params::Svd(p) => Some(p),
            _ => None,
        };
        let negbin = matches!(&c.params, Params::Glm(g) if g.family == crate::scenario::Family::NegativeBinomial);
        Analysis {
            csv: plan.data_name.clone(),
            // statsmodels fits NB2 as a discrete model of its own.
            kind: if negbin {
                "negative_binomial"
            } else {
                kind_name(c.kind())
            },
            target: c.target.clone(),
            terms: if negbin {
                [c.terms(), vec!["alpha".to_string()]].concat()
            } else if matches!(c.params, Params::Crosstab(_)) {
                // A crosstab's terms are its design's indicators; its row names none.
                Vec::new()
            } else {
                c.terms()
            },
            k: svd.map(|p| p.k),
            center: svd.map(|p| p.center),
            scale: svd.map(|p| p.scale),
            options: match &c.params {
                Params::Glm(g) if negbin => vec![
                    ("offset", g.offset.clone()),
                    ("exposure", g.exposure.clone()),
                    ("weights", g.weights.clone()),
                ],
                Params::Glm(g) => vec![
                    ("family", Some(g.family.as_str().to_string())),
                    ("link", Some(g.link.as_str().to_string())),
                    ("offset", g.offset.clone()),
                    ("exposure", g.exposure.clone()),
                    ("weights", g.weights.clone()),
                ],
                Params::KaplanMeier(k) => vec![
                    ("time", Some(k.time.clone())),
                    ("event", Some(k.event.clone())),
                    ("group", k.group.clone()),
                ],
                Params::Crosstab(t) => vec![
                    ("rows", Some(t.rows.clone())),
                    ("cols", Some(t.cols.clone())),
                ],
                Params::Describe(d) => vec![("quantiles", Some(probs(&d.quantiles)))],
                Params::Cox(k) => vec![
                    ("time", Some(k.time.clone())),
                    ("event", Some(k.event.clone())),
                    ("ties", Some(k.ties.as_str().to_string())),
                    ("strata", k.strata.clone()),
                ],
                _ => Vec::new(),
            },
        }
    }

    /// How a row differs from this analysis, in words; None when it describes it.
    fn mismatch(&self, row: &ReferenceRow) -> Option<String> {
        let mut diffs = Vec::new();
        if row.target != self.target {
            diffs.push(format!(
                "target {} (the analysis: {})",
                show(&row.target),
                show(&self.target)
            ));
        }
        if row.terms != self.terms {
            diffs.push(format!(
                "terms [{}] (the analysis: [{}])",
                row.terms.join(", "),
                self.terms.join(", ")
            ));
        }
        if self.kind == "pca" {
            for (key, theirs, ours) in [
                (
                    "k",
                    row.k.map(|k| k.to_string()),
                    self.k.map(|k| k.to_string()),
                ),
                (
                    "center",
                    row.center.map(|b| b.to_string()),
                    self.center.map(|b| b.to_string()),
                ),
                (
                    "scale",
                    row.scale.and_then(ScaleField::flag).map(|b| b.to_string()),
                    self.scale.map(|b| b.to_string()),
                ),
            ] {
                if theirs != ours {
                    diffs.push(format!(
                        "{key} = {} (the analysis: {})",
                        theirs.unwrap_or_else(|| "missing".into()),
                        ours.unwrap_or_default()
                    ));
                }
            }
        }
        for (key, ours) in &self.options {
            let theirs = match *key {
                "family" => row.family.clone(),
                "link" => row.link.clone(),
                "offset" => row.offset.clone(),
                "exposure" => row.exposure.clone(),
                "rows" => row.rows.clone(),
                "cols" => row.cols.clone(),
                "quantiles" => Some(probs(&row.quantile_probs)),
                "time" => row.time.clone(),
                "event" => row.event.clone(),
                "group" => row.group.clone(),
                "ties" => row.ties.clone(),
                "strata" => row.strata.clone(),
                _ => row.weights.clone(),
            };
            if &theirs != ours {
                diffs.push(format!(
                    "{key} {} (the analysis: {})",
                    show(&theirs),
                    show(ours)
                ));
            }
        }
        (!diffs.is_empty()).then(|| diffs.join("; "))
    }
}

/// Quantile probabilities as a row and an analysis both write them: `[0.25, 0.5, 0.75]`.
fn probs(q: &[f64]) -> String {
    let v: Vec<String> = q.iter().map(|p| p.to_string()).collect();
    format!("[{}]", v.join(", "))
}

fn show(v: &Option<String>) -> String {
    v.as_ref()
        .map_or_else(|| "none".to_string(), |t| format!("{t:?}"))
}

/// The reference file's name for an algorithm.
pub fn kind_name(kind: AlgorithmKind) -> &'static str {
    match kind {
        AlgorithmKind::LinearRegression => "ols",
        AlgorithmKind::LogisticRegression => "logit",
        AlgorithmKind::Glm => "glm",
        AlgorithmKind::Svd => "pca",
        AlgorithmKind::External => "external",
        AlgorithmKind::KaplanMeier => "kaplan_meier",
        AlgorithmKind::Crosstab => "crosstab",
        AlgorithmKind::Describe => "describe",
        AlgorithmKind::Cox => "cox",
    }
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
    #[error("reference file {} has no {kind:?} row for {csv:?}: the analysis cannot be checked against it (remove [compare] reference, or add the row with test_data/make_reference.py)", path.display())]
    NotFound {
        path: PathBuf,
        csv: String,
        kind: String,
    },
    #[error("reference file {}, line {line}: its {kind:?} row for {csv:?} describes another analysis: {differs}", path.display())]
    Mismatch {
        path: PathBuf,
        line: usize,
        csv: String,
        kind: String,
        differs: String,
    },
}

/// The row describing `analysis`. A row for the same file and kind that describes another
/// analysis is named (the first such), so people see what to fix.
pub fn find(path: &Path, analysis: &Analysis) -> Result<ReferenceRow, ReferenceError> {
    let text = std::fs::read_to_string(path).map_err(|e| ReferenceError::Read {
        path: path.into(),
        reason: e.to_string(),
    })?;
    let mut near: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parse_error = |e: serde_json::Error| ReferenceError::Parse {
            path: path.into(),
            line: i + 1,
            reason: e.to_string(),
        };
        // Only rows of this file and kind are read strictly: a row of a kind this version does
        // not know is not this analysis' business.
        let value: serde_json::Value = serde_json::from_str(line).map_err(parse_error)?;
        let field = |k: &str| value.get(k).and_then(|v| v.as_str()).unwrap_or_default();
        if field("csv") != analysis.csv || field("kind") != analysis.kind {
            continue;
        }
        let row: ReferenceRow = serde_json::from_value(value).map_err(parse_error)?;
        match analysis.mismatch(&row) {
            None => return Ok(row),
            Some(d) => {
                near.get_or_insert((i + 1, d));
            }
        }
    }
    Err(match near {
        Some((line, differs)) => ReferenceError::Mismatch {
            path: path.into(),
            line,
            csv: analysis.csv.clone(),
            kind: analysis.kind.into(),
            differs,
        },
        None => ReferenceError::NotFound {
            path: path.into(),
            csv: analysis.csv.clone(),
            kind: analysis.kind.into(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ols(terms: &[&str]) -> Analysis {
        Analysis {
            csv: "d.csv".into(),
            kind: "ols",
            target: Some("y".into()),
            terms: terms.iter().map(|t| t.to_string()).collect(),
            k: None,
            center: None,
            scale: None,
            options: Vec::new(),
        }
    }

    fn file(lines: &[&str]) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), lines.join("\n")).unwrap();
        f
    }

    #[test]
    fn rows_match_on_target_and_terms() {
        let f = file(&[
            r#"{"csv":"d.csv","kind":"ols","target":"y","terms":["const","a","b"],"n":5,"coef":[1,2,3],"se":[1,1,1]}"#,
            r#"{"csv":"d.csv","kind":"ols","target":"y","terms":["const","a"],"n":5,"coef":[1,2],"se":[1,1]}"#,
        ]);
        assert_eq!(
            find(f.path(), &ols(&["const", "a"])).unwrap().coef,
            [1.0, 2.0]
        );
        let e = find(f.path(), &ols(&["const", "b"])).unwrap_err();
        assert!(matches!(e, ReferenceError::Mismatch { line: 1, .. }), "{e}");
        assert!(
            e.to_string()
                .contains("terms [const, a, b] (the analysis: [const, b])"),
            "{e}"
        );
        let mut other = ols(&["const", "a"]);
        other.csv = "e.csv".into();
        assert!(matches!(
            find(f.path(), &other),
            Err(ReferenceError::NotFound { .. })
        ));
    }

    #[test]
    fn pca_rows_match_on_k_center_and_scale() {
        let f = file(&[
            r#"{"csv":"d.csv","kind":"pca","terms":["a","b"],"n":5,"k":2,"center":true,"scale":false,"singular_values":[2,1]}"#,
        ]);
        let mut a = Analysis {
            csv: "d.csv".into(),
            kind: "pca",
            target: None,
            terms: vec!["a".into(), "b".into()],
            k: Some(2),
            center: Some(true),
            scale: Some(false),
            options: Vec::new(),
        };
        assert!(find(f.path(), &a).is_ok());
        a.scale = Some(true);
        let e = find(f.path(), &a).unwrap_err().to_string();
        assert!(e.contains("scale = false (the analysis: true)"), "{e}");
    }

    #[test]
    fn a_malformed_line_is_named() {
        let f = file(&[r#"{"csv":"d.csv""#]);
        assert!(matches!(
            find(f.path(), &ols(&["const"])),
            Err(ReferenceError::Parse { line: 1, .. })
        ));
    }
}
