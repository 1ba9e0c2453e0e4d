//! Federated algorithms. Each is a local step (runs on a site, sees only its partition) and an
//! aggregate step (runs on the coordinator, sees only what sites sent). The transport never looks
//! inside: requests and replies travel as bytes.

pub mod cox;
pub mod crosstab;
pub mod describe;
pub mod external;
pub mod glm;
pub mod kaplan_meier;
pub mod linreg;
pub mod logreg;
pub mod negbin;
pub mod simulate;
pub mod survival;
pub mod svd;

use faer::Mat;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::data::design::{Design, Levels};
use crate::data::Table;
use crate::scenario::{AlgorithmKind, SvdMethod};

/// What a site needs to know about the analysis; sent to each agent when it joins. The options
/// every analysis has sit here; what one kind alone has sits in its [`Params`] variant, so no
/// kind carries another's options and no state is impossible.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AlgorithmConfig {
    /// The kind of analysis (`kind` in JSON) and its own options.
    #[serde(flatten)]
    pub params: Params,
    /// The feature columns, in order (for a vertical split: this site's columns only).
    pub features: Vec<String>,
    pub target: Option<String>,
    pub intercept: bool,
    /// Sites hold column blocks of the same rows, not row blocks.
    pub vertical: bool,
    /// The scenario's seed (svd's random start, an external step's `seed`).
    pub seed: u64,
    /// Raw feature columns that are categories; their levels are agreed before the rounds,
    /// and `features` then names the design's columns (see [`AlgorithmConfig::with_levels`]).
    #[serde(default)]
    pub categorical: Vec<String>,
    /// What a site does with an incomplete row.
    #[serde(default)]
    pub missing: crate::scenario::Missing,
    /// The sites add noise to what they release (`[privacy.dp]`): an iterative fit runs its
    /// `max_iter` steps, which its budget was split over, and stops there (a noisy step never
    /// falls below `tol`); counts that should agree are averaged, not required equal.
    #[serde(default)]
    pub noisy: bool,
}

/// One variant per kind of analysis, each with only its own options. A new kind is one variant
/// here and one file beside this one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Params {
    LinearRegression,
    LogisticRegression(Newton),
    /// A generalised linear model: family, link, offset, weights, fitted by federated IRLS.
    Glm(glm::GlmParams),
    Svd(SvdParams),
    /// The user's own method: its commands and files.
    External(external::ExternalSpec),
    /// Kaplan-Meier curves per group, and the log-rank test.
    KaplanMeier(kaplan_meier::KmParams),
    /// A two-way table of two category columns and its chi-square test.
    Crosstab(crosstab::CrosstabParams),
    /// Count, mean, sd, quantiles and correlations of the numeric features.
    Describe(describe::DescribeParams),
    /// Cox proportional-hazards regression on the features.
    Cox(cox::CoxParams),
}

impl Params {
    /// The numeric columns this kind reads besides the features and the target, by name (a
    /// GLM's offset, exposure and weights): they travel with the rows but are never terms.
    pub fn aux_columns(&self) -> Vec<String> {
        match self {
            Params::Glm(g) => g.columns(),
            Params::KaplanMeier(k) => k.columns(),
            Params::Cox(c) => c.columns(),
            _ => Vec::new(),
        }
    }

    /// A survival analysis's time, event and group (or stratum) columns.
    pub fn survival_columns(&self) -> Option<(&str, &str, Option<&str>)> {
        match self {
            Params::KaplanMeier(k) => Some((&k.time, &k.event, k.group.as_deref())),
            Params::Cox(c) => Some((&c.time, &c.event, c.strata.as_deref())),
            _ => None,
        }
    }

    /// The same options with the agreed event times (survival analyses; others unchanged).
    fn with_timelines(&self, levels: &Levels) -> Params {
        let mut p = self.clone();
        match &mut p {
            Params::KaplanMeier(k) => k.curves = survival::timelines(levels),
            Params::Cox(c) => c.timelines = survival::timelines(levels),
            _ => {}
        }
        p
    }
}

/// Newton-Raphson's iteration limit and convergence tolerance.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Newton {
    pub max_iter: usize,
    pub tol: f64,
}

/// svd: components, centring, z-scoring, route, extra iterated vectors, and the subspace
/// iteration's limit and tolerance.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct SvdParams {
    pub k: usize,
    pub center: bool,
    pub scale: bool,
    pub method: SvdMethod,
    pub oversample: usize,
    pub max_iter: usize,
    pub tol: f64,
}

impl AlgorithmConfig {
    /// An OLS of `y` on `features` with an intercept: the analysis unit tests start from.
    #[cfg(test)]
    pub(crate) fn ols(features: &[&str]) -> AlgorithmConfig {
        AlgorithmConfig {
            params: Params::LinearRegression,
            features: features.iter().map(|f| f.to_string()).collect(),
            target: Some("y".into()),
            intercept: true,
            vertical: false,
            seed: 1,
            categorical: Vec::new(),
            missing: Default::default(),
            noisy: false,
        }
    }

    /// The kind, as a scenario names it.
    pub fn kind(&self) -> AlgorithmKind {
        match self.params {
            Params::LinearRegression => AlgorithmKind::LinearRegression,
            Params::LogisticRegression(_) => AlgorithmKind::LogisticRegression,
            Params::Glm(_) => AlgorithmKind::Glm,
            Params::Svd(_) => AlgorithmKind::Svd,
            Params::External(_) => AlgorithmKind::External,
            Params::KaplanMeier(_) => AlgorithmKind::KaplanMeier,
            Params::Crosstab(_) => AlgorithmKind::Crosstab,
            Params::Describe(_) => AlgorithmKind::Describe,
            Params::Cox(_) => AlgorithmKind::Cox,
        }
    }

    /// The external algorithm's commands and files, if this is one.
    pub fn external(&self) -> Option<&external::ExternalSpec> {
        match &self.params {
            Params::External(spec) => Some(spec),
            _ => None,
        }
    }

    /// How this analysis turns raw columns into the design, given the categorical levels.
    pub fn design(&self, levels: &Levels) -> Design {
        Design::new(
            &self.features,
            &self.categorical,
            levels,
            self.target.clone(),
            self.intercept,
        )
        .with_aux(self.params.aux_columns())
        .with_all_levels(matches!(self.params, Params::Crosstab(_)))
    }

    /// The raw columns that must hold numbers: the features that are not categories, the
    /// target, and the kind's own columns (a GLM's offset and weights).
    pub fn numeric_columns(&self) -> Vec<String> {
        self.features
            .iter()
            .filter(|f| !self.categorical.contains(f))
            .chain(&self.target)
            .cloned()
            .chain(self.params.aux_columns())
            .collect()
    }

    /// Every raw column the analysis reads: a row missing any of them is incomplete.
    pub fn used_columns(&self) -> Vec<String> {
        self.features
            .iter()
            .chain(&self.target)
            .cloned()
            .chain(self.params.aux_columns())
            .collect()
    }

    /// Whether the sites' levels are agreed before round 1: those of categorical columns, and
    /// a survival analysis's event times (see [`survival`]).
    pub fn agrees_levels(&self) -> bool {
        !self.categorical.is_empty() || self.params.survival_columns().is_some()
    }

    /// What a site reports in `Ready`: the levels of its categorical columns among `rows`, and
    /// for a survival analysis its event times.
    pub fn site_levels(&self, frame: &crate::data::frame::Frame, rows: &[usize]) -> Levels {
        let mut levels = crate::data::design::levels_of(frame, &self.categorical, rows);
        if let Some((time, event, group)) = self.params.survival_columns() {
            levels.extend(survival::site_levels(frame, rows, time, event, group));
        }
        levels
    }

    /// The analysis on the design's columns: what the algorithms compute on.
    pub fn with_levels(&self, levels: &Levels) -> AlgorithmConfig {
        let mut c = self.clone();
        c.params = self.params.with_timelines(levels);
        c.features = self.design(levels).columns();
        c.categorical.clear();
        if let Params::Crosstab(t) = &mut c.params {
            let of = |column: &str| {
                levels
                    .iter()
                    .find(|(name, _)| name == column)
                    .map(|(_, l)| l.clone())
                    .unwrap_or_default()
            };
            t.row_levels = of(&t.rows);
            t.col_levels = of(&t.cols);
        }
        c
    }

    /// Names of the estimated terms, intercept first as `const` (statsmodels' convention).
    pub fn terms(&self) -> Vec<String> {
        let mut t = Vec::with_capacity(self.features.len() + 1);
        if self.intercept {
            t.push("const".to_string());
        }
        t.extend(self.features.iter().cloned());
        t
    }
}

/// A site's partition, shaped for the algorithm: features as an n x d matrix, the target, and
/// the kind's own columns ([`Params::aux_columns`]) by name.
pub struct LocalData {
    pub x: Mat<f64>,
    pub y: Option<Vec<f64>>,
    pub aux: std::collections::BTreeMap<String, Vec<f64>>,
}

impl LocalData {
    pub fn from_table(
        table: &Table,
        config: &AlgorithmConfig,
        path: &std::path::Path,
    ) -> Result<LocalData, crate::data::DataError> {
        let mut shaper = Shaper::new(config, table.rows());
        for (name, values) in table.columns.iter().zip(&table.data) {
            if shaper.wants(name) {
                shaper.take(name.clone(), values.clone());
            }
        }
        shaper.finish(path)
    }

    /// The design's columns of these rows of the frame, shaped for the algorithm: each column
    /// goes into the matrix as soon as it is coded, so the numbers are held once here (not as a
    /// table and then again as the matrix).
    pub fn encoded(
        design: &Design,
        frame: &crate::data::frame::Frame,
        rows: &[usize],
        config: &AlgorithmConfig,
        path: &std::path::Path,
    ) -> Result<LocalData, crate::data::DataError> {
        let mut shaper = Shaper::new(config, rows.len());
        design.encode_each(frame, rows, path, |name, values| {
            if shaper.wants(&name) {
                shaper.take(name, values);
            }
        })?;
        shaper.finish(path)
    }

    /// Features and target only, as the regressions' unit tests build them.
    pub fn new(x: Mat<f64>, y: Option<Vec<f64>>) -> LocalData {
        LocalData {
            x,
            y,
            aux: Default::default(),
        }
    }

    pub fn rows(&self) -> usize {
        self.x.nrows()
    }

    /// A column of the kind's own (offset, weights...), if the analysis names one.
    pub fn aux(&self, name: Option<&str>) -> Option<&[f64]> {
        name.and_then(|n| self.aux.get(n)).map(Vec::as_slice)
    }
}

/// [`LocalData`] made from named columns as they come, each name's first column taken (as
/// [`Table::select_columns`] takes it): a feature's copied into the matrix, the target and the
/// kind's own columns kept as they are.
struct Shaper<'a> {
    config: &'a AlgorithmConfig,
    aux_names: Vec<String>,
    x: Mat<f64>,
    filled: Vec<bool>,
    y: Option<Vec<f64>>,
    aux: std::collections::BTreeMap<String, Vec<f64>>,
    /// Every column name offered, in order (for the error naming what there was).
    seen: Vec<String>,
}

impl<'a> Shaper<'a> {
    fn new(config: &'a AlgorithmConfig, rows: usize) -> Shaper<'a> {
        Shaper {
            config,
            aux_names: config.params.aux_columns(),
            x: Mat::zeros(rows, config.features.len()),
            filled: vec![false; config.features.len()],
            y: None,
            aux: Default::default(),
            seen: Vec::new(),
        }
    }

    /// Whether the column is one the analysis reads and the first of its name.
    fn wants(&mut self, name: &str) -> bool {
        if self.seen.iter().any(|s| s == name) {
            return false;
        }
        self.seen.push(name.to_string());
        self.config.features.iter().any(|f| f == name)
            || self.config.target.as_deref() == Some(name)
            || self.aux_names.iter().any(|a| a == name)
    }

    fn take(&mut self, name: String, values: Vec<f64>) {
        for (j, f) in self.config.features.iter().enumerate() {
            if *f == name {
                self.x
                    .col_mut(j)
                    .copy_from(faer::ColRef::from_slice(&values));
                self.filled[j] = true;
            }
        }
        if self.aux_names.contains(&name) {
            self.aux.insert(name.clone(), values.clone());
        }
        if self.config.target.as_deref() == Some(name.as_str()) {
            self.y = Some(values);
        }
    }

    fn finish(self, path: &std::path::Path) -> Result<LocalData, crate::data::DataError> {
        let missing = self
            .config
            .features
            .iter()
            .zip(&self.filled)
            .find(|(_, filled)| !**filled)
            .map(|(f, _)| f)
            .or(self.config.target.as_ref().filter(|_| self.y.is_none()))
            .or(self.aux_names.iter().find(|a| !self.aux.contains_key(*a)));
        if let Some(column) = missing {
            return Err(crate::data::DataError::NoColumn {
                path: path.to_path_buf(),
                column: column.clone(),
                available: self.seen.join(", "),
            });
        }
        Ok(LocalData {
            x: self.x,
            y: self.y,
            aux: self.aux,
        })
    }
}

/// Fitted values, the same shape for the federated result and the baseline.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Estimates {
    pub n: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub terms: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub coef: Vec<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub se: Vec<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub t: Vec<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub p: Vec<f64>,
    /// 95% confidence interval of each coefficient: t(df_resid) for OLS, normal for Logit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conf_low: Vec<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conf_high: Vec<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r2: Option<f64>,
    /// OLS: R² adjusted for the terms, as statsmodels' `rsquared_adj`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adj_r2: Option<f64>,
    /// Residual degrees of freedom, n - terms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub df_resid: Option<f64>,
    /// Model degrees of freedom: the terms other than the intercept (statsmodels' `df_model`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub df_model: Option<f64>,
    /// OLS: the F-statistic of the model against the intercept alone, and its P-value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fvalue: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f_pvalue: Option<f64>,
    /// Akaike's and Bayes' information criteria: -2 llf + 2 k and -2 llf + k ln n, k the terms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aic: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bic: Option<f64>,
    /// Logit: the likelihood-ratio statistic 2 (llf - llnull) and its chi² P-value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llr: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llr_pvalue: Option<f64>,
    /// Whether the iterations converged (Newton); a fit that did not is an error, so this is
    /// `true` wherever it is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converged: Option<bool>,
    /// The covariance behind the standard errors: "nonrobust" (the model's own), as statsmodels
    /// names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cov_type: Option<String>,
    /// Logit: log-likelihood of the constant-only model, and McFadden's pseudo R².
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llnull: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pseudo_r2: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma2: Option<f64>,
    /// Log-likelihood at the estimate (OLS: Gaussian, as statsmodels' `llf`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loglik: Option<f64>,
    /// GLM: the deviance, Pearson's chi², the scale (1 for binomial and Poisson, else Pearson's
    /// chi² over df_resid) and the intercept-only model's deviance, as statsmodels' summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deviance: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pearson_chi2: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub null_deviance: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub singular_values: Vec<f64>,
    /// s^2 / (n - 1) for each component.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub explained_variance: Vec<f64>,
    /// s^2 over the total sum of squares of the (centred, scaled) matrix, per component.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub explained_variance_ratio: Vec<f64>,
    /// Which svd route ran ("gram" or "subspace").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Iterations (Newton steps or subspace iterations) until convergence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iterations: Option<usize>,
    /// Convergence measure per iteration: Newton step size, or subspace residual.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub convergence: Vec<f64>,
    /// Component vectors, one Vec per component: right singular vectors (d long) for a horizontal
    /// split, sample-side vectors (n long) for a vertical one. Written to CSV, not to the summary.
    #[serde(skip)]
    pub vectors: Vec<Vec<f64>>,
    /// Every singular value (the baseline's), to tell which components are well separated.
    #[serde(skip)]
    pub spectrum: Vec<f64>,
    /// An external algorithm's named results (a number, a list, or a list of lists each);
    /// a crosstab's and describe's results too.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub named: std::collections::BTreeMap<String, serde_json::Value>,
    /// Which built-in analysis the named results are ("crosstab", "describe"): each of their
    /// numbers is then judged by its own rule (see `compare`), not an external result's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<String>,
    /// describe: the width the quantiles (and min, max) were bracketed to, relative to each
    /// column's sd; 0 when the bisection ran to adjacent doubles (exact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantile_tol: Option<f64>,
}

impl Estimates {
    /// The first number that is not finite, named (`p[bmi]`, `r2`): the summary promises numbers,
    /// and JSON would turn NaN into null.
    pub fn non_finite(&self) -> Option<String> {
        let term = |i: usize| {
            self.terms
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("pc{}", i + 1))
        };
        let lists: [(&str, &[f64]); 9] = [
            ("coef", &self.coef),
            ("se", &self.se),
            ("t", &self.t),
            ("p", &self.p),
            ("conf_low", &self.conf_low),
            ("conf_high", &self.conf_high),
            ("singular_value", &self.singular_values),
            ("explained_variance", &self.explained_variance),
            ("explained_variance_ratio", &self.explained_variance_ratio),
        ];
        for (name, values) in lists {
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                return Some(format!("{name}[{}] ({})", term(i), values[i]));
            }
        }
        [
            ("r2", self.r2),
            ("adj_r2", self.adj_r2),
            ("sigma2", self.sigma2),
            ("loglik", self.loglik),
            ("llnull", self.llnull),
            ("pseudo_r2", self.pseudo_r2),
            ("fvalue", self.fvalue),
            ("f_pvalue", self.f_pvalue),
            ("aic", self.aic),
            ("bic", self.bic),
            ("llr", self.llr),
            ("llr_pvalue", self.llr_pvalue),
            ("deviance", self.deviance),
            ("pearson_chi2", self.pearson_chi2),
            ("scale", self.scale),
            ("null_deviance", self.null_deviance),
        ]
        .into_iter()
        .find(|(_, v)| v.is_some_and(|v| !v.is_finite()))
        .map(|(name, v)| format!("{name} ({})", v.unwrap_or_default()))
        .or_else(|| {
            self.convergence
                .iter()
                .position(|v| !v.is_finite())
                .map(|i| format!("convergence[{}]", i + 1))
        })
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum AlgoError {
    #[error("{0}")]
    Numeric(String),
    #[error("site data does not fit the analysis: {0}")]
    Data(String),
    #[error("unexpected message: {0}")]
    Protocol(String),
    /// The pooled rows could not be shaped for the analysis (the baseline shapes them as it reads).
    #[error("{0}")]
    Shape(String),
}

/// After aggregating a round: ask the sites for another, or stop with the estimates.
pub enum Step<R> {
    Next(R),
    Done(Box<Estimates>),
}

/// One federated algorithm: the site step and the coordinator step, with typed messages.
pub trait Federated: Send {
    type Request: Serialize + DeserializeOwned;
    type Reply: Serialize + DeserializeOwned;

    /// Site side: computes aggregates of the local partition only.
    fn local(&self, request: &Self::Request, data: &LocalData) -> Result<Self::Reply, AlgoError>;
    /// Coordinator side: the first request.
    fn start(&mut self) -> Self::Request;
    /// Coordinator side: combine one reply per site (in site order). Every reply is a sum of
    /// per-row terms, so one reply holding the sum over sites aggregates the same way (that is
    /// what secure aggregation delivers).
    fn aggregate(&mut self, replies: Vec<Self::Reply>) -> Result<Step<Self::Request>, AlgoError>;

    /// The counts a reply releases, each with what it counts: what a site's `min_cell` rule
    /// holds to, and the release audit's smallest count. Every reply is over the site's rows;
    /// the kinds that release counts of their own (a table's cells, numbers at risk) add them.
    fn counts(
        &self,
        _request: &Self::Request,
        _reply: &Self::Reply,
        data: &LocalData,
    ) -> Vec<(&'static str, f64)> {
        vec![("the site's number of rows", data.rows() as f64)]
    }

    /// Secure aggregation: the reply's numbers in a fixed order...
    fn values(reply: &Self::Reply) -> Vec<f64>;
    /// ...and a reply of the same shape holding `values` (e.g. the sum over sites).
    fn with_values(template: &Self::Reply, values: &mut Values) -> Result<Self::Reply, AlgoError>;
}

/// One round's replies summed into one reply of their shape, in the clear: what secure
/// aggregation delivers masked (see [`Runner::split`] and [`Runner::join`]). Replies of another
/// shape (another variant, other lengths) are a protocol error, not added into each other.
pub fn sum_replies<A: Federated>(replies: &[A::Reply]) -> Result<A::Reply, AlgoError> {
    let first = replies
        .first()
        .ok_or_else(|| AlgoError::Protocol("no replies".into()))?;
    let shape = |r: &A::Reply| -> Result<Vec<u8>, AlgoError> {
        let zeros = vec![0.0; A::values(r).len()];
        Ok(encode(&A::with_values(r, &mut Values::new(&zeros))?))
    };
    let template = shape(first)?;
    let mut total = A::values(first);
    for r in &replies[1..] {
        if shape(r)? != template {
            return Err(AlgoError::Protocol(
                "sites sent replies of different shapes".into(),
            ));
        }
        total
            .iter_mut()
            .zip(A::values(r))
            .for_each(|(a, b)| *a += b);
    }
    A::with_values(first, &mut Values::new(&total))
}

/// Numbers handed out in order, to rebuild a reply from a flat vector.
pub struct Values<'a> {
    values: &'a [f64],
    at: usize,
}

impl<'a> Values<'a> {
    pub fn new(values: &'a [f64]) -> Self {
        Values { values, at: 0 }
    }

    pub fn take(&mut self, n: usize) -> Result<Vec<f64>, AlgoError> {
        let end = self.at + n;
        let part = self
            .values
            .get(self.at..end)
            .ok_or_else(|| AlgoError::Protocol("too few aggregated values".into()))?;
        self.at = end;
        Ok(part.to_vec())
    }

    pub fn one(&mut self) -> Result<f64, AlgoError> {
        Ok(self.take(1)?[0])
    }

    /// A count (sent as a number, summed exactly).
    pub fn count(&mut self) -> Result<u64, AlgoError> {
        Ok(self.one()?.round().max(0.0) as u64)
    }

    pub fn done(&self) -> Result<(), AlgoError> {
        if self.at == self.values.len() {
            Ok(())
        } else {
            Err(AlgoError::Protocol(format!(
                "{} aggregated values left over",
                self.values.len() - self.at
            )))
        }
    }
}

/// The byte-level face of [`Federated`] that the coordinator and agents drive.
pub trait Runner: Send {
    fn local(&self, request: &[u8], data: &LocalData) -> Result<Vec<u8>, AlgoError>;
    fn start(&mut self) -> Result<Vec<u8>, AlgoError>;
    fn aggregate(&mut self, replies: Vec<Vec<u8>>) -> Result<Step<Vec<u8>>, AlgoError>;
    /// A reply's numbers, and the reply with every number zeroed (its shape only).
    fn split(&self, reply: &[u8]) -> Result<(Vec<u8>, Vec<f64>), AlgoError>;
    /// The reply of `template`'s shape holding `values`.
    fn join(&self, template: &[u8], values: &[f64]) -> Result<Vec<u8>, AlgoError>;
    /// The counts a reply releases (see [`Federated::counts`]).
    fn counts(
        &self,
        request: &[u8],
        reply: &[u8],
        data: &LocalData,
    ) -> Result<Vec<(&'static str, f64)>, AlgoError>;
    /// What a reply holds, for the release audit: each statistic's name and shape, as
    /// `Name{field: 3, other: 1}` (a number's shape is 1, a list's its length).
    fn statistics(&self, reply: &[u8]) -> Result<String, AlgoError>;
    /// A reply as JSON, its numbers in place (the differencing probe reads it).
    fn json(&self, reply: &[u8]) -> Result<serde_json::Value, AlgoError>;
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).expect("algorithm messages always serialize")
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, AlgoError> {
    postcard::from_bytes(b).map_err(|e| AlgoError::Protocol(e.to_string()))
}

impl<A: Federated> Runner for A {
    fn local(&self, request: &[u8], data: &LocalData) -> Result<Vec<u8>, AlgoError> {
        Federated::local(self, &decode(request)?, data).map(|r| encode(&r))
    }
    fn start(&mut self) -> Result<Vec<u8>, AlgoError> {
        Ok(encode(&Federated::start(self)))
    }
    fn split(&self, reply: &[u8]) -> Result<(Vec<u8>, Vec<f64>), AlgoError> {
        let reply: A::Reply = decode(reply)?;
        let values = A::values(&reply);
        let zeros = vec![0.0; values.len()];
        let template = A::with_values(&reply, &mut Values::new(&zeros))?;
        Ok((encode(&template), values))
    }

    fn join(&self, template: &[u8], values: &[f64]) -> Result<Vec<u8>, AlgoError> {
        let template: A::Reply = decode(template)?;
        let mut v = Values::new(values);
        let reply = A::with_values(&template, &mut v)?;
        v.done()?;
        Ok(encode(&reply))
    }

    fn counts(
        &self,
        request: &[u8],
        reply: &[u8],
        data: &LocalData,
    ) -> Result<Vec<(&'static str, f64)>, AlgoError> {
        Ok(Federated::counts(
            self,
            &decode(request)?,
            &decode(reply)?,
            data,
        ))
    }

    fn statistics(&self, reply: &[u8]) -> Result<String, AlgoError> {
        Ok(shape(&self.json(reply)?))
    }

    fn json(&self, reply: &[u8]) -> Result<serde_json::Value, AlgoError> {
        let reply: A::Reply = decode(reply)?;
        serde_json::to_value(&reply).map_err(|e| AlgoError::Protocol(e.to_string()))
    }

    fn aggregate(&mut self, replies: Vec<Vec<u8>>) -> Result<Step<Vec<u8>>, AlgoError> {
        let replies = replies
            .iter()
            .map(|b| decode(b))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(match Federated::aggregate(self, replies)? {
            Step::Next(r) => Step::Next(encode(&r)),
            Step::Done(e) => Step::Done(e),
        })
    }
}

/// A reply's JSON as names and shapes: `{"Moments": {"n": 5, "sum": [1, 2]}}` is
/// `Moments{n: 1, sum: 2}`.
pub(crate) fn shape(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let fields: Vec<String> = m
                .iter()
                .map(|(k, v)| match v {
                    Value::Object(_) => format!("{k}{}", shape(v)),
                    _ => format!("{k}: {}", shape(v)),
                })
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
        Value::Array(items) if items.iter().any(|i| i.is_array()) => {
            format!(
                "{}x{}",
                items.len(),
                items
                    .first()
                    .map_or(0, |i| i.as_array().map_or(1, Vec::len))
            )
        }
        Value::Array(items) => items.len().to_string(),
        _ => "1".into(),
    }
}

/// The algorithm a configuration names, ready to run on either side.
pub fn build(config: &AlgorithmConfig) -> Box<dyn Runner> {
    match &config.params {
        Params::LinearRegression => Box::new(linreg::LinearRegression::new(config.clone())),
        Params::LogisticRegression(newton) => {
            Box::new(logreg::LogisticRegression::new(config.clone(), *newton))
        }
        Params::Glm(g) if g.family == crate::scenario::Family::NegativeBinomial => {
            Box::new(negbin::NegativeBinomial::new(config.clone(), g.clone()))
        }
        Params::Glm(g) => Box::new(glm::Glm::new(config.clone(), g.clone())),
        Params::Svd(p) => Box::new(svd::Svd::new(config.clone(), *p)),
        Params::External(spec) => Box::new(external::External::new(spec.clone())),
        Params::KaplanMeier(k) => {
            Box::new(kaplan_meier::KaplanMeier::new(config.clone(), k.clone()))
        }
        Params::Crosstab(t) => Box::new(crosstab::Crosstab::new(t.clone())),
        Params::Describe(p) => Box::new(describe::Describe::new(config.clone(), p.clone())),
        Params::Cox(c) => Box::new(cox::Cox::new(config.clone(), c.clone())),
    }
}

impl Estimates {
    /// What an OLS fit's summary adds to its coefficients, from the residual and total sums of
    /// squares (the total about the mean with an intercept, about 0 without, as statsmodels):
    /// `rsquared_adj`, `llf`, `df_model`, `df_resid`, `fvalue`, `f_pvalue`, `aic`, `bic` and
    /// `conf_int()` (t quantile).
    pub fn add_ols_summary(&mut self, rss: f64, tss: f64, intercept: bool) {
        let n = self.n as f64;
        let k = self.coef.len() as f64;
        let df = n - k;
        let df_model = k - f64::from(u8::from(intercept));
        if let Some(r2) = self.r2 {
            self.adj_r2 = Some(1.0 - (n - f64::from(u8::from(intercept))) / df * (1.0 - r2));
        }
        let llf = -n / 2.0 * ((2.0 * std::f64::consts::PI).ln() + (rss / n).ln() + 1.0);
        self.loglik = Some(llf);
        self.df_resid = Some(df);
        self.df_model = Some(df_model);
        if df_model > 0.0 {
            let f = ((tss - rss) / df_model) / (rss / df);
            self.fvalue = Some(f);
            self.f_pvalue = Some(crate::distributions::f_sf(f, df_model, df));
        }
        self.add_information_criteria(llf, k, n);
        self.cov_type = Some("nonrobust".into());
        self.add_conf_int(t_quantile(df));
    }

    /// What a Logit fit's summary adds, from the number of ones in the target: the
    /// constant-only log-likelihood (in closed form: n1 ln ȳ + n0 ln(1 - ȳ), exact where
    /// statsmodels fits it numerically), McFadden's pseudo R², the likelihood-ratio test, the
    /// information criteria and `conf_int()` (normal quantile).
    pub fn add_logit_summary(&mut self, ones: f64, intercept: bool) {
        let n = self.n as f64;
        let k = self.coef.len() as f64;
        let ybar = ones / n;
        let part = |k: f64, q: f64| if k > 0.0 { k * q.ln() } else { 0.0 };
        let llnull = part(ones, ybar) + part(n - ones, 1.0 - ybar);
        let df_model = k - f64::from(u8::from(intercept));
        self.llnull = Some(llnull);
        self.pseudo_r2 = self.loglik.map(|ll| 1.0 - ll / llnull);
        self.df_resid = Some(n - k);
        self.df_model = Some(df_model);
        if let Some(llf) = self.loglik {
            let llr = 2.0 * (llf - llnull);
            self.llr = Some(llr);
            if df_model >= 1.0 {
                self.llr_pvalue = Some(crate::distributions::chi2_sf(llr, df_model as u32));
            }
            self.add_information_criteria(llf, k, n);
        }
        self.converged = Some(true);
        self.cov_type = Some("nonrobust".into());
        self.add_conf_int(z_quantile());
    }

    fn add_information_criteria(&mut self, llf: f64, k: f64, n: f64) {
        self.aic = Some(-2.0 * llf + 2.0 * k);
        self.bic = Some(-2.0 * llf + k * n.ln());
    }

    /// The 95% interval on the normal scale (statsmodels' GLM and Logit).
    pub fn add_z_conf_int(&mut self) {
        self.add_conf_int(z_quantile());
    }

    fn add_conf_int(&mut self, q: f64) {
        self.conf_low = self
            .coef
            .iter()
            .zip(&self.se)
            .map(|(b, s)| b - q * s)
            .collect();
        self.conf_high = self
            .coef
            .iter()
            .zip(&self.se)
            .map(|(b, s)| b + q * s)
            .collect();
    }
}

/// The 0.975 quantile of Student's t with `df` degrees of freedom.
pub fn t_quantile(df: f64) -> f64 {
    crate::distributions::t_isf(0.025, df)
}

/// The 0.975 quantile of the standard normal.
pub fn z_quantile() -> f64 {
    crate::distributions::normal_isf(0.025)
}

/// Two-sided p-values of t statistics with `df` degrees of freedom.
pub fn t_pvalues(t: &[f64], df: f64) -> Vec<f64> {
    t.iter()
        .map(|x| crate::distributions::t_two_sided(*x, df))
        .collect()
}

/// Two-sided p-values of z statistics (standard normal), as statsmodels reports for Logit.
pub fn z_pvalues(z: &[f64]) -> Vec<f64> {
    z.iter()
        .map(|x| crate::distributions::normal_two_sided(*x))
        .collect()
}

/// Row-major copy of a matrix, for the wire.
pub fn to_rows(m: &Mat<f64>) -> Vec<f64> {
    (0..m.nrows())
        .flat_map(|i| (0..m.ncols()).map(move |j| m[(i, j)]))
        .collect()
}

/// Add a row-major block from the wire into `acc`, checking its size.
pub fn add_rows(acc: &mut Mat<f64>, rows: &[f64], what: &str) -> Result<(), AlgoError> {
    let (r, c) = (acc.nrows(), acc.ncols());
    if rows.len() != r * c {
        return Err(AlgoError::Protocol(format!(
            "{what} has {} values, expected {}",
            rows.len(),
            r * c
        )));
    }
    for i in 0..r {
        for j in 0..c {
            acc[(i, j)] += rows[i * c + j];
        }
    }
    Ok(())
}
