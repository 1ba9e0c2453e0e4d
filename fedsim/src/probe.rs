//! The differencing probe (`fedsim probe`): the classic differencing attack, run on the planned
//! partition in this process. Each analysis runs twice, once on every site's rows and once with
//! one record taken out of one site; wherever the two runs ask the sites the same question, the
//! difference between the two answers is that record's contribution. When the answers are sums
//! of the rows' values, the difference *is* the record's values: the probe says which released
//! quantities show which of them, as the coordinator sees them without secure aggregation (the
//! site's own reply) and with it (the sum over sites: masking hides a site's reply, not what
//! the sum's difference shows).

use serde::Serialize;

use crate::algorithms::simulate::Simulation;
use crate::algorithms::{self, LocalData, Runner};
use crate::plan::{Plan, Study};

/// One released number that equals one of the record's values.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Exposure {
    /// The analysis's round (from 1).
    pub round: u32,
    /// "site" (the site's own reply: no secure aggregation) or "sum" (the sum over the sites:
    /// all the coordinator sees under secure aggregation).
    pub view: &'static str,
    /// The released quantity, as a path into the reply: `Moments.sum_x[2]`.
    pub quantity: String,
    /// The record's value it equals: its design column, target or own column.
    pub value: String,
}

/// The probe of one analysis.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub analysis: String,
    pub site: String,
    /// The record taken out: its row of the data file (0-based, header not counted).
    pub row: usize,
    /// The record's values the probe looked for (names only: the values are the data's).
    pub values: Vec<String>,
    /// The rounds whose questions were the same in both runs (only those can be differenced).
    pub compared: Vec<u32>,
    pub exposures: Vec<Exposure>,
}

impl Probe {
    /// The record's values that a released number shows exactly, in the given view.
    pub fn exposed(&self, view: &str) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .exposures
            .iter()
            .filter(|e| e.view == view)
            .map(|e| e.value.as_str())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// Probe every analysis (external ones excepted: their releases are their program's) with a
/// record of `site` (default: the first site): its first complete row. Under `dp` every site
/// releases as its agent would, clipped and with its own noise in each run.
pub fn probe(
    study: &Study,
    site: Option<&str>,
    dp: Option<&crate::scenario::DpSpec>,
) -> Result<Vec<Probe>, String> {
    let site = match site {
        Some(s) => s.to_string(),
        None => study.sites()[0].name.clone(),
    };
    if !study.sites().iter().any(|s| s.name == site) {
        let names: Vec<&str> = study.sites().iter().map(|s| s.name.as_str()).collect();
        return Err(format!(
            "no site is named {site:?}; the sites are {}",
            names.join(", ")
        ));
    }
    study
        .analyses
        .iter()
        .filter(|p| p.config.external().is_none())
        .map(|p| probe_one(p, &site, dp))
        .collect()
}

fn probe_one(
    plan: &Plan,
    site: &str,
    dp: Option<&crate::scenario::DpSpec>,
) -> Result<Probe, String> {
    let coded = plan.analysis();
    let clipping = dp
        .map(|spec| crate::dp::Clipping::new(&plan.design, &spec.bounds, spec.mechanism))
        .transpose()?;
    let at = plan
        .sites
        .iter()
        .position(|s| s.name == site)
        .expect("checked");
    let full = plan.site_rows();
    let Some(&row) = full[at].first() else {
        return Err(format!(
            "{}: site {site} has no complete row to take out",
            plan.name
        ));
    };
    let shape = |rows: &[usize]| -> Result<LocalData, String> {
        let mut d = plan.shaped(rows).map_err(|e| e.to_string())?;
        if let Some(c) = &clipping {
            c.clip_data(&mut d);
        }
        Ok(d)
    };
    let data = |sets: &[Vec<usize>]| sets.iter().map(|r| shape(r)).collect::<Result<Vec<_>, _>>();
    // The record's values, named: its design row, its target, its own columns.
    let named = |r: usize| -> Result<Vec<(String, f64)>, String> {
        let record = shape(&[r])?;
        let mut values: Vec<(String, f64)> = coded
            .features
            .iter()
            .enumerate()
            .map(|(j, f)| (f.clone(), record.x[(0, j)]))
            .collect();
        if let (Some(t), Some(y)) = (&coded.target, &record.y) {
            values.push((t.clone(), y[0]));
        }
        for (name, v) in &record.aux {
            values.push((name.clone(), v[0]));
        }
        Ok(values)
    };
    // A second record of the same site confirms each finding: a number that shows a value for
    // both records shows it, not a coincidence (a count's difference of 1 and a value of 1).
    // It is the one of the site's next rows that differs from the first in the most values.
    let first = named(row)?;
    let differing = |r: usize| -> usize {
        named(r).map_or(0, |v| {
            v.iter()
                .zip(&first)
                .filter(|((_, a), (_, b))| a != b)
                .count()
        })
    };
    let second = full[at]
        .iter()
        .skip(1)
        .take(200)
        .copied()
        .max_by_key(|&r| (differing(r), std::cmp::Reverse(r)));
    let records: Vec<usize> = std::iter::once(row).chain(second).collect();
    let start = |d| Simulation::start(&coded, d).map_err(|e| e.to_string());
    let mut runs = vec![start(data(&full)?)?];
    for r in &records {
        let mut less = full.clone();
        less[at].retain(|x| x != r);
        runs.push(start(data(&less)?)?);
    }
    let values: Vec<Vec<(String, f64)>> = records
        .iter()
        .map(|&r| named(r))
        .collect::<Result<_, _>>()?;
    // Under differential privacy each run's sites have their own budget and noise.
    let mut noise: Vec<Vec<crate::dp::SiteDp>> = match dp {
        None => Vec::new(),
        Some(spec) => {
            let rounds = crate::dp::run_rounds(std::slice::from_ref(&plan.config))?;
            (0..runs.len() as u64)
                .map(|k| {
                    (0..full.len() as u64)
                        .map(|i| crate::dp::SiteDp::new(spec, rounds, Some(k * 1000 + i)))
                        .collect()
                })
                .collect()
        }
    };
    let mut probe = Probe {
        analysis: plan.name.clone(),
        site: site.to_string(),
        row,
        values: values[0].iter().map(|(n, _)| n.clone()).collect(),
        compared: Vec::new(),
        exposures: Vec::new(),
    };
    for round in 1..=1000u32 {
        let replies = match &clipping {
            None => runs
                .iter()
                .map(Simulation::answer)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?,
            Some(c) => runs
                .iter()
                .zip(noise.iter_mut())
                .map(|(run, sites)| {
                    run.data
                        .iter()
                        .zip(sites.iter_mut())
                        .map(|(d, site)| {
                            site.release(c, run.algorithm.as_ref(), &run.request, d)
                                .map(|(reply, _)| reply)
                                .map_err(|e| e.to_string())
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        if runs.iter().all(|r| r.request == runs[0].request) {
            probe.compared.push(round);
            for (view, of) in [("site", View::Site(at)), ("sum", View::Sum)] {
                let seen: Vec<serde_json::Value> = runs
                    .iter()
                    .zip(&replies)
                    .map(|(run, r)| of.json(&*run.algorithm, r))
                    .collect::<Result<_, _>>()
                    .map_err(|e| e.to_string())?;
                // Found for every record taken out.
                let found: Vec<Vec<(String, String)>> = (1..seen.len())
                    .map(|k| exposures(&seen[0], &seen[k], &values[k - 1]))
                    .collect();
                for (quantity, value) in &found[0] {
                    if found[1..]
                        .iter()
                        .all(|f| f.contains(&(quantity.clone(), value.clone())))
                    {
                        probe.exposures.push(Exposure {
                            round,
                            view,
                            quantity: quantity.clone(),
                            value: value.clone(),
                        });
                    }
                }
            }
        }
        // Every run asks another round, or the probe is over.
        let more: Vec<bool> = runs
            .iter_mut()
            .zip(replies)
            .map(|(run, r)| run.advance(r))
            .collect();
        if more.contains(&false) {
            break;
        }
    }
    Ok(probe)
}

/// What the coordinator sees of a round: one site's reply, or the sum over the sites.
enum View {
    Site(usize),
    Sum,
}

impl View {
    fn json(
        &self,
        alg: &dyn Runner,
        replies: &[Vec<u8>],
    ) -> Result<serde_json::Value, algorithms::AlgoError> {
        match self {
            View::Site(i) => alg.json(&replies[*i]),
            View::Sum => sum(alg, replies),
        }
    }
}

/// The sum of the sites' replies, as one reply of their shape (secure aggregation's view).
fn sum(alg: &dyn Runner, replies: &[Vec<u8>]) -> Result<serde_json::Value, algorithms::AlgoError> {
    let mut total: Vec<f64> = Vec::new();
    let mut template = Vec::new();
    for r in replies {
        let (shape, values) = alg.split(r)?;
        if total.is_empty() {
            total = values;
            template = shape;
        } else {
            total.iter_mut().zip(values).for_each(|(t, v)| *t += v);
        }
    }
    alg.json(&alg.join(&template, &total)?)
}

/// Every number of `x` minus `y` (the two runs' answers) that equals one of the record's
/// non-zero values (to 1e-9 of its size), as (quantity, value's name).
fn exposures(
    x: &serde_json::Value,
    y: &serde_json::Value,
    values: &[(String, f64)],
) -> Vec<(String, String)> {
    let (mut fx, mut fy) = (Vec::new(), Vec::new());
    flatten("", x, &mut fx);
    flatten("", y, &mut fy);
    let mut out = Vec::new();
    if fx.len() != fy.len() {
        return out;
    }
    for ((path, a), (_, b)) in fx.iter().zip(&fy) {
        let d = a - b;
        for (name, v) in values.iter().filter(|(_, v)| *v != 0.0) {
            if (d - v).abs() <= 1e-9 * v.abs().max(1.0) {
                out.push((path.clone(), name.clone()));
            }
        }
    }
    out
}

/// A JSON value's numbers with their paths (`Moments.sum_x[2]`).
fn flatten(path: &str, v: &serde_json::Value, out: &mut Vec<(String, f64)>) {
    use serde_json::Value;
    match v {
        Value::Number(n) => out.push((path.to_string(), n.as_f64().unwrap_or(f64::NAN))),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                flatten(&format!("{path}[{i}]"), item, out);
            }
        }
        Value::Object(m) => {
            for (k, item) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                flatten(&p, item, out);
            }
        }
        _ => {}
    }
}
