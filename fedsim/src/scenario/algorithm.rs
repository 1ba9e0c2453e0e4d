//! `[algorithm]`: what the sites compute, and the options each kind takes.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Locate, Scenario, ScenarioError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlgorithmKind {
    LinearRegression,
    LogisticRegression,
    /// A generalised linear model (family, link, offset, weights), by federated IRLS.
    Glm,
    Svd,
    /// The user's own method, as three commands speaking JSON (see `algorithms::external`).
    External,
    /// Kaplan-Meier survival curves (per group) and the log-rank test.
    KaplanMeier,
    /// A two-way table of counts of two category columns, with the chi-square test of
    /// independence (see `algorithms::crosstab`).
    Crosstab,
    /// Per-column count, mean, sd, quantiles (federated bisection) and the correlation matrix
    /// of the numeric feature columns (see `algorithms::describe`).
    Describe,
    /// Cox proportional-hazards regression (Breslow or Efron ties, optional strata).
    Cox,
}

impl AlgorithmKind {
    /// As written in a scenario.
    pub fn as_str(self) -> &'static str {
        match self {
            AlgorithmKind::LinearRegression => "linear_regression",
            AlgorithmKind::LogisticRegression => "logistic_regression",
            AlgorithmKind::Glm => "glm",
            AlgorithmKind::Svd => "svd",
            AlgorithmKind::External => "external",
            AlgorithmKind::KaplanMeier => "kaplan_meier",
            AlgorithmKind::Crosstab => "crosstab",
            AlgorithmKind::Describe => "describe",
            AlgorithmKind::Cox => "cox",
        }
    }
    pub fn needs_target(self) -> bool {
        !matches!(
            self,
            AlgorithmKind::Svd
                | AlgorithmKind::External
                | AlgorithmKind::KaplanMeier
                | AlgorithmKind::Crosstab
                | AlgorithmKind::Describe
                | AlgorithmKind::Cox
        )
    }
    /// Survival analyses read a time and an event column instead of a target.
    pub fn is_survival(self) -> bool {
        matches!(self, AlgorithmKind::KaplanMeier | AlgorithmKind::Cox)
    }
}

/// How a Cox regression's partial likelihood treats tied event times (statsmodels' PHReg
/// `ties`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Ties {
    /// Every tied event sees the whole risk set (statsmodels' default).
    #[default]
    Breslow,
    /// The tied events leave the risk set in equal parts, one l/d share at a time.
    Efron,
}

impl Ties {
    pub fn as_str(self) -> &'static str {
        match self {
            Ties::Breslow => "breslow",
            Ties::Efron => "efron",
        }
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

/// A GLM's error distribution (statsmodels' `families`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Gaussian,
    Binomial,
    Poisson,
    Gamma,
    /// NB2, with its dispersion alpha estimated (statsmodels' discrete `NegativeBinomial`).
    NegativeBinomial,
}

/// A GLM's link function, named as statsmodels names it (snake case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Link {
    Identity,
    Log,
    Logit,
    Probit,
    Cloglog,
    InversePower,
    InverseSquared,
    Sqrt,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Gaussian => "gaussian",
            Family::Binomial => "binomial",
            Family::Poisson => "poisson",
            Family::Gamma => "gamma",
            Family::NegativeBinomial => "negative_binomial",
        }
    }

    /// statsmodels' default link for the family.
    pub fn default_link(self) -> Link {
        match self {
            Family::Gaussian => Link::Identity,
            Family::Binomial => Link::Logit,
            Family::Poisson | Family::NegativeBinomial => Link::Log,
            Family::Gamma => Link::InversePower,
        }
    }

    /// The links statsmodels accepts for the family (a GLM's mean must stay in the family's
    /// range for some linear predictor).
    pub fn links(self) -> &'static [Link] {
        use Link::*;
        match self {
            Family::Gaussian => &[Identity, Log, InversePower],
            Family::Binomial => &[Logit, Probit, Cloglog, Log, Identity],
            Family::Poisson => &[Log, Identity, Sqrt],
            Family::Gamma => &[InversePower, Log, Identity],
            Family::NegativeBinomial => &[Log],
        }
    }
}

impl Link {
    pub fn as_str(self) -> &'static str {
        match self {
            Link::Identity => "identity",
            Link::Log => "log",
            Link::Logit => "logit",
            Link::Probit => "probit",
            Link::Cloglog => "cloglog",
            Link::InversePower => "inverse_power",
            Link::InverseSquared => "inverse_squared",
            Link::Sqrt => "sqrt",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlgorithmSpec {
    pub kind: AlgorithmKind,
    /// `[[analysis]]`: the entry's name (its report section, its JUnit cases, and
    /// `--set analysis.NAME.key=value`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `[[analysis]]`: this analysis's target column, when not `[data]`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `[[analysis]]`: this analysis's feature columns, when not `[data]`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<String>>,
    /// `[[analysis]]`: the columns this analysis leaves out, when not `[data]`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<Vec<String>>,
    /// Regressions: add an intercept term (`const`), as statsmodels' `add_constant` (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intercept: Option<bool>,
    /// logistic_regression (Newton) and svd (subspace): iteration limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_iter: Option<usize>,
    /// logistic_regression: largest Newton step that counts as converged; svd: subspace change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tol: Option<f64>,
    /// glm: "gaussian" | "binomial" | "poisson" | "gamma" | "negative_binomial".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<Family>,
    /// glm: the link (default: the family's, as statsmodels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<Link>,
    /// glm: a column added to the linear predictor with coefficient 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<String>,
    /// glm: a column whose log is the offset (e.g. person-years at risk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposure: Option<String>,
    /// glm: frequency weights, a column of counts (statsmodels' `freq_weights`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<String>,
    /// cox: "breslow" (default, as statsmodels' PHReg) or "efron".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ties: Option<Ties>,
    /// cox: a numeric column of stratum codes: a baseline hazard of its own per stratum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strata: Option<String>,
    /// kaplan_meier, cox: the column of follow-up times (0 or more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// kaplan_meier, cox: the column saying whether the time is an event (1) or censored (0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// kaplan_meier: a numeric column of group codes: one curve per group and the log-rank test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// crosstab: the category column whose levels are the table's rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<String>,
    /// crosstab: the category column whose levels are the table's columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cols: Option<String>,
    /// describe: the probabilities of the quantiles (default [0.25, 0.5, 0.75]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantiles: Option<Vec<f64>>,
    /// describe: the width the bisection brackets each quantile to, relative to the column's
    /// standard deviation (default 0: to adjacent doubles, i.e. exact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantile_tol: Option<f64>,
    /// describe: also report each column's min and max (single records' values; default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extremes: Option<bool>,
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
    /// external: the command each site runs, in its own directory, once per round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<Vec<String>>,
    /// external: the command the coordinator runs once per round, in the scenario's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<Vec<String>>,
    /// external: the command run once on the pooled data (the baseline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooled: Option<Vec<String>>,
    /// external: the directory the aggregate and pooled commands run in, and `files` are
    /// relative to (default, and relative to: the scenario's directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<PathBuf>,
    /// external: files (relative to `workdir`, inside it) shipped to every site at the same
    /// relative path, where the local command runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<PathBuf>,
    /// external: the most rounds the aggregate may ask for (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rounds: Option<usize>,
    /// external: the largest reply (stdout) a step may write, in bytes (default 16 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_reply_bytes: Option<usize>,
    /// external: keep one local process per site and one aggregate process up for the whole
    /// analysis, one JSON object per line each way (default false: a process per call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent: Option<bool>,
}

/// Each option belongs to the algorithms that use it; elsewhere it is a mistake worth reporting.
pub(super) fn validate(s: &Scenario, at: &Locate) -> Result<(), ScenarioError> {
    use AlgorithmKind::*;
    let a = &s.algorithm;
    let owners: [(&str, bool, &[AlgorithmKind]); 31] = [
        ("time", a.time.is_some(), &[KaplanMeier, Cox]),
        ("event", a.event.is_some(), &[KaplanMeier, Cox]),
        ("ties", a.ties.is_some(), &[Cox]),
        ("strata", a.strata.is_some(), &[Cox]),
        ("group", a.group.is_some(), &[KaplanMeier]),
        ("rows", a.rows.is_some(), &[Crosstab]),
        ("cols", a.cols.is_some(), &[Crosstab]),
        ("quantiles", a.quantiles.is_some(), &[Describe]),
        ("quantile_tol", a.quantile_tol.is_some(), &[Describe]),
        ("extremes", a.extremes.is_some(), &[Describe]),
        ("family", a.family.is_some(), &[Glm]),
        ("link", a.link.is_some(), &[Glm]),
        ("offset", a.offset.is_some(), &[Glm]),
        ("exposure", a.exposure.is_some(), &[Glm]),
        ("weights", a.weights.is_some(), &[Glm]),
        ("workdir", a.workdir.is_some(), &[External]),
        ("local", a.local.is_some(), &[External]),
        ("aggregate", a.aggregate.is_some(), &[External]),
        ("pooled", a.pooled.is_some(), &[External]),
        ("files", !a.files.is_empty(), &[External]),
        ("max_rounds", a.max_rounds.is_some(), &[External]),
        ("max_reply_bytes", a.max_reply_bytes.is_some(), &[External]),
        ("persistent", a.persistent.is_some(), &[External]),
        (
            "intercept",
            a.intercept.is_some(),
            &[LinearRegression, LogisticRegression, Glm],
        ),
        (
            "max_iter",
            a.max_iter.is_some(),
            &[LogisticRegression, Glm, Svd, Cox],
        ),
        ("tol", a.tol.is_some(), &[LogisticRegression, Glm, Svd, Cox]),
        ("k", a.k.is_some(), &[Svd]),
        ("center", a.center.is_some(), &[Svd]),
        ("scale", a.scale.is_some(), &[Svd]),
        ("method", a.method.is_some(), &[Svd]),
        ("oversample", a.oversample.is_some(), &[Svd]),
    ];
    if s.view.is_none() {
        // Only an `[[analysis]]` entry has a name and columns of its own.
        let entry_keys = [
            (
                "name",
                a.name.is_some(),
                "names an [[analysis]] entry; a single [algorithm] needs none",
            ),
            (
                "target",
                a.target.is_some(),
                "belongs in [data] (an [[analysis]] entry may set its own)",
            ),
            (
                "features",
                a.features.is_some(),
                "belongs in [data] (an [[analysis]] entry may set its own)",
            ),
            (
                "exclude",
                a.exclude.is_some(),
                "belongs in [data] (an [[analysis]] entry may set its own)",
            ),
        ];
        if let Some((key, _, why)) = entry_keys.iter().find(|(_, present, _)| *present) {
            return Err(at(&format!("algorithm.{key}"), format!("`{key}` {why}")));
        }
    }
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
    if a.kind == External {
        for (key, cmd) in [
            ("local", &a.local),
            ("aggregate", &a.aggregate),
            ("pooled", &a.pooled),
        ] {
            match cmd {
                None => {
                    return Err(at(
                        "algorithm",
                        format!("missing key `{key}`: an external algorithm needs its {key} command, e.g. {key} = [\"python3\", \"moments.py\", \"{key}\"]"),
                    ))
                }
                Some(c) if c.first().is_none_or(|p| p.trim().is_empty()) => {
                    return Err(at(
                        &format!("algorithm.{key}"),
                        "expected a command: a program and its arguments, e.g. [\"python3\", \"moments.py\"]".into(),
                    ))
                }
                Some(_) => {}
            }
        }
        if a.max_rounds == Some(0) || a.max_rounds.is_some_and(|m| m > 100_000) {
            return Err(at(
                "algorithm.max_rounds",
                "expected a number of rounds from 1 to 100000".into(),
            ));
        }
        if a.max_reply_bytes == Some(0) {
            return Err(at(
                "algorithm.max_reply_bytes",
                "expected a size in bytes above 0".into(),
            ));
        }
        for (i, f) in a.files.iter().enumerate() {
            let inside = f.is_relative()
                && f.components().all(|c| {
                    matches!(
                        c,
                        std::path::Component::Normal(_) | std::path::Component::CurDir
                    )
                });
            if !inside {
                return Err(at(
                    &format!("algorithm.files.{i}"),
                    format!(
                        "expected a path inside the scenario's directory (each file is shipped to the same relative path at every site), found {:?}",
                        f.display().to_string()
                    ),
                ));
            }
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
    if a.kind == Glm {
        validate_glm(a, at)?;
    }
    if a.kind.is_survival() {
        validate_survival(s, at)?;
    }
    if a.kind == Crosstab {
        validate_crosstab(a, at)?;
    }
    if a.kind == Describe {
        validate_describe(a, at)?;
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

/// A GLM names its family, a link that family takes, and at most one of offset and exposure.
fn validate_glm(a: &AlgorithmSpec, at: &Locate) -> Result<(), ScenarioError> {
    let Some(family) = a.family else {
        return Err(at(
            "algorithm",
            "missing key `family`: a glm needs its family, one of gaussian, binomial, poisson, gamma, negative_binomial".into(),
        ));
    };
    if let Some(link) = a.link {
        if !family.links().contains(&link) {
            let names: Vec<&str> = family.links().iter().map(|l| l.as_str()).collect();
            return Err(at(
                "algorithm.link",
                format!(
                    "the {} family does not take the {} link; it takes {}",
                    family.as_str(),
                    link.as_str(),
                    names.join(", ")
                ),
            ));
        }
    }
    if a.offset.is_some() && a.exposure.is_some() {
        return Err(at(
            "algorithm.exposure",
            "give `offset` or `exposure`, not both (the exposure's log is the offset)".into(),
        ));
    }
    Ok(())
}

/// A survival analysis names its time and event columns, runs on row blocks, and a
/// Kaplan-Meier curve has no features.
fn validate_survival(s: &Scenario, at: &Locate) -> Result<(), ScenarioError> {
    let a = &s.algorithm;
    for (key, value, what) in [
        (
            "time",
            &a.time,
            "the column of follow-up times, e.g. time = \"time\"",
        ),
        (
            "event",
            &a.event,
            "the column of event indicators (1 event, 0 censored), e.g. event = \"status\"",
        ),
    ] {
        if value.is_none() {
            return Err(at(
                "algorithm",
                format!("missing key `{key}`: {} needs {what}", a.kind.as_str()),
            ));
        }
    }
    if s.partition.kind == super::PartitionKind::Vertical {
        return Err(at(
            "partition.kind",
            format!(
                "{} needs each site to hold whole rows: use a horizontal partition",
                a.kind.as_str()
            ),
        ));
    }
    // A Cox model's covariates are not its time, event or strata columns.
    let own = [&a.time, &a.event, &a.strata];
    for (i, f) in s.data.features.iter().flatten().enumerate() {
        if let Some(key) = own
            .iter()
            .zip(["time", "event", "strata"])
            .find(|(c, _)| c.as_ref() == Some(f))
            .map(|(_, k)| k)
        {
            if a.kind == AlgorithmKind::Cox {
                return Err(at(
                    &format!("data.features.{i}"),
                    format!("{f:?} is the `{key}` column: it cannot also be a covariate"),
                ));
            }
        }
    }
    if a.kind == AlgorithmKind::KaplanMeier && s.data.features.is_some() {
        return Err(at(
            "data.features",
            "kaplan_meier takes no features: it reads `time`, `event` and an optional `group`"
                .into(),
        ));
    }
    Ok(())
}

/// A crosstab names two different columns, `rows` and `cols`.
fn validate_crosstab(a: &AlgorithmSpec, at: &Locate) -> Result<(), ScenarioError> {
    for (key, value) in [("rows", &a.rows), ("cols", &a.cols)] {
        match value {
            None => {
                return Err(at(
                    "algorithm",
                    format!("missing key `{key}`: a crosstab needs the category columns of its rows and columns, e.g. rows = \"species\", cols = \"island\""),
                ))
            }
            Some(c) if c.trim().is_empty() => {
                return Err(at(
                    &format!("algorithm.{key}"),
                    "expected a column name".into(),
                ))
            }
            Some(_) => {}
        }
    }
    if a.rows == a.cols {
        return Err(at(
            "algorithm.cols",
            format!(
                "`rows` and `cols` are both {:?}: a table of a column against itself tests nothing; name two different columns",
                a.cols.as_deref().unwrap_or_default()
            ),
        ));
    }
    Ok(())
}

/// Quantile probabilities lie in [0, 1]; the bracket's width is 0 or more.
fn validate_describe(a: &AlgorithmSpec, at: &Locate) -> Result<(), ScenarioError> {
    if let Some(q) = &a.quantiles {
        if let Some(i) = q.iter().position(|p| !(0.0..=1.0).contains(p)) {
            return Err(at(
                &format!("algorithm.quantiles.{i}"),
                format!("expected a probability from 0 to 1, found {}", q[i]),
            ));
        }
    }
    if let Some(t) = a.quantile_tol {
        if !(t.is_finite() && (0.0..1.0).contains(&t)) {
            return Err(at(
                "algorithm.quantile_tol",
                format!(
                    "expected a width from 0 (exact) to below 1 standard deviation, found {t:e}"
                ),
            ));
        }
    }
    Ok(())
}

/// `[[analysis]]` entries: each has a name (a letter, then letters, digits, `_` or `-`), no two
/// the same, and they share whole rows (a vertical split gives sites one analysis's columns).
pub(super) fn validate_entries(s: &Scenario, at: &Locate) -> Result<(), ScenarioError> {
    for (i, a) in s.analysis.iter().enumerate() {
        let Some(name) = &a.name else {
            return Err(at(
                &format!("analysis.{i}"),
                "missing key `name`: each [[analysis]] entry is named, e.g. name = \"survival\" (its report section, its JUnit cases, --set analysis.NAME.key=value)".into(),
            ));
        };
        let well_formed = name.len() <= 64
            && name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !well_formed {
            return Err(at(
                &format!("analysis.{i}.name"),
                format!("expected a name of at most 64 letters, digits, `_` or `-`, starting with a letter, found {name:?}"),
            ));
        }
        if let Some(j) = s.analysis[..i]
            .iter()
            .position(|b| b.name.as_ref() == Some(name))
        {
            return Err(at(
                &format!("analysis.{i}.name"),
                format!("analysis {name:?} is named twice (entries {} and {}): each name is one analysis", j + 1, i + 1),
            ));
        }
    }
    if s.partition.kind == super::PartitionKind::Vertical && s.analysis.len() > 1 {
        return Err(at(
            "partition.kind",
            "several [[analysis]] entries share the sites' rows: a vertical split hands out one analysis's feature columns; use a horizontal partition".into(),
        ));
    }
    Ok(())
}
