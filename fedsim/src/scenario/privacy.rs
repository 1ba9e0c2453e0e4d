//! `[privacy]`: the disclosure rules each site holds what it releases to, as a data steward would
//! set them (DataSHIELD's filters, vantage6's thresholds), with per-site overrides for a
//! hospital with stricter rules, and what a refusal does to the run.

use serde::{Deserialize, Serialize};

use super::{Locate, Scenario, ScenarioError};

/// The rules a site may set; every one optional (no rule: nothing refused on its account).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Fewest complete rows the site computes on (after incomplete rows are dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_rows: Option<u64>,
    /// Smallest count the site releases other than 0: table cells, the rows of a category
    /// level, numbers at risk and events at a time, counts below a quantile's candidate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_cell: Option<u64>,
    /// Largest number of a model's parameters per row at the site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_params_ratio: Option<f64>,
    /// Largest number of a category column's levels per row at the site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_levels_density: Option<f64>,
    /// Fewest sites a round may be shared with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_sites: Option<u64>,
    /// Whether single records' values may leave (min and max, an event time one row holds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extremes: Option<bool>,
}

/// A named set of rules from a platform hospitals use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// dsBase's default filters: nfilter.tab 3, nfilter.subset 3, nfilter.glm 0.33,
    /// nfilter.levels.density 0.33; no single-record values.
    Datashield,
    /// vantage6's community algorithms: 5 per cell, 10 rows per site, 3 organisations,
    /// 0.1 parameters per row; no single-record values.
    Vantage6,
}

impl Preset {
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::Datashield => "datashield",
            Preset::Vantage6 => "vantage6",
        }
    }

    pub fn rules(self) -> RuleSpec {
        match self {
            Preset::Datashield => RuleSpec {
                min_rows: Some(3),
                min_cell: Some(3),
                max_params_ratio: Some(0.33),
                max_levels_density: Some(0.33),
                min_sites: None,
                extremes: Some(false),
            },
            Preset::Vantage6 => RuleSpec {
                min_rows: Some(10),
                min_cell: Some(5),
                max_params_ratio: Some(0.1),
                max_levels_density: None,
                min_sites: Some(3),
                extremes: Some(false),
            },
        }
    }
}

/// What a site's refusal does to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnRefusal {
    /// The analysis fails, naming the site and the rule.
    #[default]
    Fail,
    /// The site is let go as a dropout would be, and the analysis goes on without it.
    Continue,
}

/// One site's own rules, over the shared ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteRules {
    pub site: String,
    /// A preset for this site alone (its keys then override it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
    #[serde(flatten)]
    pub rules: RuleSpec,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacySpec {
    /// Start from a platform's rules; the keys below override it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
    #[serde(default)]
    pub on_refusal: OnRefusal,
    /// Run the differencing probe with the run (as `fedsim probe` does): `probe.json` and a
    /// warning for each analysis whose releases show a record's values.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub probe: bool,
    /// Per-site overrides (`[[privacy.sites]]`, each with its `site`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sites: Vec<SiteRules>,
    /// Differential privacy: every site adds calibrated noise to what it releases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dp: Option<DpSpec>,
    #[serde(flatten)]
    pub rules: RuleSpec,
}

/// The noise a site adds to everything it releases (`[privacy.dp]`), and the budget it
/// spends: each site's own, over every round of every analysis of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpSpec {
    /// The whole run's privacy loss at each site.
    pub epsilon: f64,
    /// The (epsilon, delta) guarantee's delta (Gaussian mechanism; 0 with Laplace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<f64>,
    #[serde(default)]
    pub mechanism: Mechanism,
    /// `column = [lo, hi]` for every numeric column an analysis uses: sensitivity comes from
    /// them, and a site clips its values to them.
    pub bounds: std::collections::BTreeMap<String, [f64; 2]>,
}

/// How a site draws its noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    /// Normal noise on the L2 sensitivity; rounds compose in zero-concentrated DP.
    #[default]
    Gaussian,
    /// Laplace noise on the L1 sensitivity; pure epsilon-DP, rounds compose by summing.
    Laplace,
}

impl Mechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::Gaussian => "gaussian",
            Mechanism::Laplace => "laplace",
        }
    }
}

impl RuleSpec {
    /// `self` where it sets a rule, else `under`.
    fn over(&self, under: &RuleSpec) -> RuleSpec {
        RuleSpec {
            min_rows: self.min_rows.or(under.min_rows),
            min_cell: self.min_cell.or(under.min_cell),
            max_params_ratio: self.max_params_ratio.or(under.max_params_ratio),
            max_levels_density: self.max_levels_density.or(under.max_levels_density),
            min_sites: self.min_sites.or(under.min_sites),
            extremes: self.extremes.or(under.extremes),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == RuleSpec::default()
    }
}

impl PrivacySpec {
    /// The rules `site` holds its releases to: its own keys, its own preset, the shared keys,
    /// the shared preset, in that order.
    pub fn rules_of(&self, site: &str) -> RuleSpec {
        let shared = self
            .rules
            .over(&self.preset.map(Preset::rules).unwrap_or_default());
        match self.sites.iter().find(|s| s.site == site) {
            Some(own) => own.rules.over(
                &own.preset
                    .map(Preset::rules)
                    .unwrap_or_default()
                    .over(&shared),
            ),
            None => shared,
        }
    }

    /// Nothing set: the section is left out of a resolved scenario.
    pub fn is_unset(&self) -> bool {
        *self == PrivacySpec::default()
    }

    /// Whether any site has a rule (differential privacy aside).
    pub fn any(&self) -> bool {
        self.preset.is_some() || !self.rules.is_empty() || !self.sites.is_empty()
    }
}

/// Ratios lie in (0, 1]; counts are at least 1; an override names a site of the scenario, once.
pub(super) fn validate(s: &Scenario, at: &Locate) -> Result<(), ScenarioError> {
    let p = &s.privacy;
    let check = |prefix: &str, r: &RuleSpec| -> Result<(), ScenarioError> {
        for (key, value) in [
            ("max_params_ratio", r.max_params_ratio),
            ("max_levels_density", r.max_levels_density),
        ] {
            if let Some(v) = value {
                if !(v.is_finite() && v > 0.0 && v <= 1.0) {
                    return Err(at(
                        &format!("{prefix}.{key}"),
                        format!("expected a ratio above 0 and at most 1, found {v}"),
                    ));
                }
            }
        }
        for (key, value) in [
            ("min_rows", r.min_rows),
            ("min_cell", r.min_cell),
            ("min_sites", r.min_sites),
        ] {
            if value == Some(0) {
                return Err(at(
                    &format!("{prefix}.{key}"),
                    "expected at least 1 (leave the key out for no rule)".into(),
                ));
            }
        }
        Ok(())
    };
    check("privacy", &p.rules)?;
    if let Some(dp) = &p.dp {
        validate_dp(s, dp, at)?;
    }
    let names = s.site_names();
    for (i, own) in p.sites.iter().enumerate() {
        let prefix = format!("privacy.sites.{i}");
        if !names.contains(&own.site) {
            return Err(at(
                &format!("{prefix}.site"),
                format!(
                    "no site is named {:?}; the sites are {}",
                    own.site,
                    names.join(", ")
                ),
            ));
        }
        if p.sites[..i].iter().any(|o| o.site == own.site) {
            return Err(at(
                &format!("{prefix}.site"),
                format!("site {:?} has its rules twice", own.site),
            ));
        }
        check(&prefix, &own.rules)?;
    }
    if let Some(n) = (0..names.len())
        .map(|i| p.rules_of(&names[i]).min_sites)
        .find(|m| m.is_some_and(|m| m as usize > names.len()))
        .flatten()
    {
        return Err(at(
            "privacy.min_sites",
            format!(
                "a site asks for at least {n} sites, but the scenario has {}: every round would be refused",
                names.len()
            ),
        ));
    }
    Ok(())
}

/// The budget is positive and finite, delta goes with the Gaussian mechanism, every bound is an
/// interval, and every analysis releases only sums the noise can cover.
fn validate_dp(s: &Scenario, dp: &DpSpec, at: &Locate) -> Result<(), ScenarioError> {
    use super::AlgorithmKind as K;
    if !(dp.epsilon.is_finite() && dp.epsilon > 0.0) {
        return Err(at(
            "privacy.dp.epsilon",
            format!("expected a number above 0, found {}", dp.epsilon),
        ));
    }
    match (dp.mechanism, dp.delta) {
        (Mechanism::Gaussian, None) => {
            return Err(at(
                "privacy.dp.delta",
                "the Gaussian mechanism needs delta (e.g. 1e-6, well below 1 / rows)".into(),
            ))
        }
        (Mechanism::Gaussian, Some(d)) if !(d > 0.0 && d < 1.0) => {
            return Err(at(
                "privacy.dp.delta",
                format!("expected a number above 0 and below 1, found {d}"),
            ))
        }
        (Mechanism::Laplace, Some(d)) if d != 0.0 => {
            return Err(at(
                "privacy.dp.delta",
                "the Laplace mechanism is pure epsilon-DP: leave delta out (or 0)".into(),
            ))
        }
        _ => {}
    }
    for (column, [lo, hi]) in &dp.bounds {
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return Err(at(
                &format!("privacy.dp.bounds.{column}"),
                format!("expected [lo, hi] with lo < hi, both finite, found [{lo}, {hi}]"),
            ));
        }
    }
    if s.partition.kind == super::PartitionKind::Vertical {
        return Err(at(
            "privacy.dp",
            "differential privacy needs a horizontal split (each site's rows its own)".into(),
        ));
    }
    let a = &s.algorithm;
    let why = match a.kind {
        K::LinearRegression | K::LogisticRegression | K::Crosstab => None,
        K::Glm if a.family == Some(super::Family::NegativeBinomial) => {
            Some("a negative binomial's alpha is searched over the data, not summed")
        }
        K::Glm => None,
        K::Describe if a.quantiles.as_ref().is_none_or(|q| !q.is_empty()) => Some(
            "describe's quantiles are searched by bisection on exact counts; set quantiles = [] for noisy counts, means, sds and correlations",
        ),
        K::Describe if a.extremes == Some(true) => Some("min and max are single records' values"),
        K::Describe => None,
        K::KaplanMeier | K::Cox => {
            Some("the event times every site holds are agreed in clear before the rounds")
        }
        K::Svd => Some("the subspace iteration's products have no bound the noise could cover"),
        K::External => Some("an external step's replies are its own program's"),
    };
    if let Some(why) = why {
        return Err(at(
            "algorithm.kind",
            format!(
                "{} cannot run under [privacy.dp]: {why}; differential privacy covers linear_regression, logistic_regression, glm (not negative_binomial), describe and crosstab",
                a.kind
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_site_s_own_keys_win_then_its_preset_then_the_shared_ones() {
        let p = PrivacySpec {
            preset: Some(Preset::Datashield),
            rules: RuleSpec {
                min_cell: Some(4),
                ..Default::default()
            },
            sites: vec![SiteRules {
                site: "b".into(),
                preset: Some(Preset::Vantage6),
                rules: RuleSpec {
                    min_rows: Some(50),
                    ..Default::default()
                },
            }],
            ..Default::default()
        };
        let a = p.rules_of("a");
        assert_eq!(
            (a.min_rows, a.min_cell, a.max_params_ratio, a.extremes),
            (Some(3), Some(4), Some(0.33), Some(false))
        );
        let b = p.rules_of("b");
        assert_eq!(
            (b.min_rows, b.min_cell, b.max_params_ratio, b.min_sites),
            (Some(50), Some(5), Some(0.1), Some(3))
        );
        // A level-density rule of the shared preset stays where vantage6 has none.
        assert_eq!(b.max_levels_density, Some(0.33));
    }
}
