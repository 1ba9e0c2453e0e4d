//! What a site may release. Each site holds its releases to its own disclosure rules
//! (`[privacy]`), in its agent, before anything leaves it, as a real site's server would: when
//! it loads an analysis (its rows, its model's parameters, its category levels, the event times
//! it would send in clear) and at every round (each count its reply holds, the sites it is
//! shared with). A refusal names the rule, its threshold and the statistic that would have
//! broken it, never the value. The same checks, run by `fedsim validate` on the planned
//! partition, predict every refusal before anything starts ([`predict`]).

use serde::{Deserialize, Serialize};

use crate::algorithms::simulate::Simulation;
use crate::algorithms::{AlgorithmConfig, LocalData, Params};
use crate::data::frame::Frame;
use crate::plan::Study;
use crate::scenario::{PrivacySpec, RuleSpec};

/// Why a site refused to release: the rule, its threshold, and what would have broken it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    pub rule: String,
    pub threshold: String,
    /// What would have broken it, in words and without the value: "the count of level \"b\"
    /// of group is below 5".
    pub statistic: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} = {}: {}", self.rule, self.threshold, self.statistic)
    }
}

fn refuse(rule: &str, threshold: impl std::fmt::Display, statistic: String) -> Refusal {
    Refusal {
        rule: rule.into(),
        threshold: threshold.to_string(),
        statistic,
    }
}

/// The rules as a site's `.env` holds them: `min_rows=3,min_cell=3,...` (empty: no rule).
pub fn encode(r: &RuleSpec) -> String {
    let mut parts = Vec::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            parts.push(format!("{k}={v}"));
        }
    };
    put("min_rows", r.min_rows.map(|v| v.to_string()));
    put("min_cell", r.min_cell.map(|v| v.to_string()));
    put(
        "max_params_ratio",
        r.max_params_ratio.map(|v| v.to_string()),
    );
    put(
        "max_levels_density",
        r.max_levels_density.map(|v| v.to_string()),
    );
    put("min_sites", r.min_sites.map(|v| v.to_string()));
    put("extremes", r.extremes.map(|v| v.to_string()));
    parts.join(",")
}

/// The rules back from [`encode`]'s text.
pub fn decode(text: &str) -> Result<RuleSpec, String> {
    let mut r = RuleSpec::default();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("rule {part:?} is not key=value"))?;
        fn value<T: std::str::FromStr>(k: &str, v: &str) -> Result<Option<T>, String> {
            v.parse()
                .map(Some)
                .map_err(|_| format!("rule {k} has a malformed value"))
        }
        match k {
            "min_rows" => r.min_rows = value(k, v)?,
            "min_cell" => r.min_cell = value(k, v)?,
            "max_params_ratio" => r.max_params_ratio = value(k, v)?,
            "max_levels_density" => r.max_levels_density = value(k, v)?,
            "min_sites" => r.min_sites = value(k, v)?,
            "extremes" => r.extremes = value(k, v)?,
            other => return Err(format!("unknown rule {other:?}")),
        }
    }
    Ok(r)
}

/// A count that breaks `min_cell`: above 0 and below the threshold (0 discloses nobody).
fn small(count: f64, min_cell: Option<u64>) -> bool {
    min_cell.is_some_and(|m| count > 0.0 && count < m as f64)
}

/// What a site holds for one analysis, for the checks at load: its raw configuration, its
/// complete rows of the file, and their number.
pub struct Loaded<'a> {
    pub config: &'a AlgorithmConfig,
    pub frame: &'a Frame,
    pub rows: &'a [usize],
}

/// The rules broken by loading an analysis, in the order a site checks them: too few rows, a
/// level (or an event time) of too few rows, too many levels or parameters for the rows, a
/// single record's value that would leave. Empty: the site goes on.
pub fn check_load(rules: &RuleSpec, l: &Loaded, parameters: usize) -> Vec<Refusal> {
    let mut out = Vec::new();
    let n = l.rows.len();
    if let Some(m) = rules.min_rows {
        if (n as u64) < m {
            out.push(refuse(
                "min_rows",
                m,
                format!("the analysis would use fewer than {m} rows at this site"),
            ));
        }
    }
    for column in &l.config.categorical {
        let counts = level_counts(l.frame, column, l.rows);
        // The level is not named: that the site holds it is what would be disclosed.
        if counts.iter().any(|(_, c)| small(*c as f64, rules.min_cell)) {
            out.push(refuse(
                "min_cell",
                rules.min_cell.unwrap_or_default(),
                format!(
                    "a level of {column:?} would be held by fewer than {} rows",
                    rules.min_cell.unwrap_or_default()
                ),
            ));
        }
        if let Some(d) = rules.max_levels_density {
            if n > 0 && counts.len() as f64 / n as f64 > d {
                out.push(refuse(
                    "max_levels_density",
                    d,
                    format!("{column:?} would have more than {d} levels per row"),
                ));
            }
        }
    }
    if let Some((time, event, group)) = l.config.params.survival_columns() {
        // Each distinct event time leaves in clear, before any round.
        let counts = event_time_counts(l.frame, l.rows, time, event, group);
        if rules.extremes == Some(false) && counts.contains(&1) {
            out.push(refuse(
                "extremes",
                false,
                "an event time held by one row would leave in clear (the event times are agreed before the rounds)".into(),
            ));
        }
        if counts.iter().any(|c| small(*c as f64, rules.min_cell)) {
            out.push(refuse(
                "min_cell",
                rules.min_cell.unwrap_or_default(),
                format!(
                    "an event time held by fewer than {} rows would leave in clear",
                    rules.min_cell.unwrap_or_default()
                ),
            ));
        }
    }
    if let (Some(r), true) = (rules.max_params_ratio, is_model(&l.config.params)) {
        if n == 0 || parameters as f64 / n as f64 > r {
            out.push(refuse(
                "max_params_ratio",
                r,
                format!("the model's {parameters} parameters would be more than {r} per row of the site"),
            ));
        }
    }
    if let Params::Describe(d) = &l.config.params {
        if d.extremes && rules.extremes == Some(false) {
            out.push(refuse(
                "extremes",
                false,
                "each column's min and max are single records' values".into(),
            ));
        }
    }
    out
}

/// The rules a round's reply breaks: a count it holds below `min_cell`, or fewer sites to
/// share it with than `min_sites`.
pub fn check_reply(rules: &RuleSpec, counts: &[(&str, f64)], sites: usize) -> Vec<Refusal> {
    let mut out = Vec::new();
    if let Some(m) = rules.min_sites {
        if (sites as u64) < m {
            out.push(refuse(
                "min_sites",
                m,
                format!("the round would be shared among fewer than {m} sites"),
            ));
        }
    }
    if let Some((what, _)) = counts.iter().find(|(_, c)| small(*c, rules.min_cell)) {
        out.push(refuse(
            "min_cell",
            rules.min_cell.unwrap_or_default(),
            format!(
                "{what} would be a count below {}",
                rules.min_cell.unwrap_or_default()
            ),
        ));
    }
    out
}

/// Whether the analysis fits a model whose parameters count against the rows.
fn is_model(p: &Params) -> bool {
    matches!(
        p,
        Params::LinearRegression | Params::LogisticRegression(_) | Params::Glm(_) | Params::Cox(_)
    )
}

/// The model's parameters: its terms, and a negative binomial's alpha.
pub fn parameters(coded: &AlgorithmConfig) -> usize {
    let alpha = matches!(&coded.params, Params::Glm(g) if g.family == crate::scenario::Family::NegativeBinomial);
    coded.terms().len() + usize::from(alpha)
}

/// Each level of a column among `rows`, with how many rows hold it.
pub fn level_counts(frame: &Frame, column: &str, rows: &[usize]) -> Vec<(String, usize)> {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    if let Some(cells) = frame.column(column) {
        for &r in rows {
            if let Some(l) = cells.label(r) {
                *counts.entry(l).or_default() += 1;
            }
        }
    }
    counts.into_iter().collect()
}

/// How many event rows share each distinct event time (per group), among `rows`.
pub fn event_time_counts(
    frame: &Frame,
    rows: &[usize],
    time: &str,
    event: &str,
    group: Option<&str>,
) -> Vec<usize> {
    let t = frame.numbers(time, rows).unwrap_or_default();
    let e = frame.numbers(event, rows).unwrap_or_default();
    let g = group.and_then(|g| frame.numbers(g, rows));
    let mut counts: std::collections::BTreeMap<(String, String), usize> = Default::default();
    for i in (0..t.len()).filter(|&i| e.get(i) == Some(&1.0)) {
        let code = g.as_ref().map_or(String::new(), |g| g[i].to_string());
        *counts.entry((code, t[i].to_string())).or_default() += 1;
    }
    counts.into_values().collect()
}

/// One site's predicted verdict on one analysis: the rules it would refuse by (empty: it
/// releases everything the analysis asks of it), and the round it would refuse in (0: at load).
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    pub site: String,
    pub analysis: String,
    pub round: u32,
    pub refusals: Vec<Refusal>,
}

/// Every site's verdict on every analysis, from the planned partition: the checks at load on
/// its rows, then the analysis run in this process round by round (every site's local step on
/// its rows, the coordinator's aggregate on their sum) with each reply's checks. Rounds are the
/// analysis's own, from 1. An external analysis's releases are its own program's and
/// are not predicted (None).
pub fn predict(study: &Study, privacy: &PrivacySpec) -> Vec<Option<Vec<Prediction>>> {
    study
        .analyses
        .iter()
        .map(|plan| predict_one(plan, privacy))
        .collect()
}

fn predict_one(plan: &crate::plan::Plan, privacy: &PrivacySpec) -> Option<Vec<Prediction>> {
    if plan.config.external().is_some() {
        return None;
    }
    let coded = plan.analysis();
    let sites: Vec<(&str, Vec<usize>)> = plan
        .sites
        .iter()
        .map(|s| s.name.as_str())
        .zip(plan.site_rows())
        .collect();
    let mut out: Vec<Prediction> = sites
        .iter()
        .map(|(name, rows)| {
            let loaded = Loaded {
                config: &plan.config,
                frame: &plan.frame,
                rows,
            };
            // The parameters as the site counts them: with the levels it holds.
            let own = plan
                .config
                .with_levels(&plan.config.site_levels(&plan.frame, rows));
            Prediction {
                site: name.to_string(),
                analysis: plan.name.clone(),
                round: 0,
                refusals: check_load(&privacy.rules_of(name), &loaded, parameters(&own)),
            }
        })
        .collect();
    // The rounds, with the sites' data as they would code it (the pooled levels are the union
    // the sites agree on).
    let data: Option<Vec<LocalData>> = sites
        .iter()
        .map(|(_, rows)| plan.shaped(rows).ok())
        .collect();
    let Some(Ok(mut sim)) = data.map(|d| Simulation::start(&coded, d)) else {
        return Some(out);
    };
    for round in 1..=10_000u32 {
        let Ok(replies) = sim.answer() else {
            return Some(out);
        };
        for (i, (reply, d)) in replies.iter().zip(&sim.data).enumerate() {
            if out[i].refusals.is_empty() {
                let counts = sim
                    .algorithm
                    .counts(&sim.request, reply, d)
                    .unwrap_or_default();
                let refused = check_reply(&privacy.rules_of(&out[i].site), &counts, sites.len());
                if !refused.is_empty() {
                    out[i].round = round;
                    out[i].refusals = refused;
                }
            }
        }
        if !sim.advance(replies) {
            break;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_travel_in_a_site_s_env_and_back() {
        let r = crate::scenario::Preset::Vantage6.rules();
        assert_eq!(decode(&encode(&r)).unwrap(), r);
        assert_eq!(decode("").unwrap(), RuleSpec::default());
        assert!(decode("min_cell=x").unwrap_err().contains("min_cell"));
        assert!(decode("max_cells=3").unwrap_err().contains("unknown rule"));
    }

    /// A count refuses past the threshold only: 0 discloses nobody, the threshold itself passes.
    #[test]
    fn a_count_refuses_below_min_cell_only() {
        let rules = RuleSpec {
            min_cell: Some(5),
            min_sites: Some(3),
            ..Default::default()
        };
        let verdict = |c: f64, sites: usize| {
            check_reply(&rules, &[("a cell of the table", c)], sites)
                .iter()
                .map(|r| r.rule.clone())
                .collect::<Vec<_>>()
        };
        assert!(verdict(0.0, 3).is_empty());
        assert!(verdict(5.0, 3).is_empty());
        assert_eq!(verdict(4.0, 3), ["min_cell"]);
        assert_eq!(verdict(1.0, 2), ["min_sites", "min_cell"]);
        // The refusal names the rule and the statistic, never the count.
        let r = &check_reply(&rules, &[("a cell of the table", 2.0)], 3)[0];
        assert_eq!(
            r.to_string(),
            "min_cell = 5: a cell of the table would be a count below 5"
        );
    }
}
