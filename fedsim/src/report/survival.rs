//! A Kaplan-Meier run's figure, as clinical papers show it: each group's step curve with its
//! pointwise 95% band, and under it the number at risk per group at evenly spaced times.
//! Drawn from the federated results' named values (`surv[...]`, `conf_low[...]`, ...), which
//! carry their event times as labels.

use std::fmt::Write as _;

use plotters::prelude::*;
use serde_json::Value;

use super::plots::{colour, e2s, legend, svg};
use super::{esc, ReportError, RunView};

/// One group's curve: event times, survival, its band, and the rows at risk before each time.
struct Curve {
    group: String,
    n: f64,
    times: Vec<f64>,
    surv: Vec<f64>,
    low: Vec<f64>,
    high: Vec<f64>,
    at_risk: Vec<f64>,
}

/// The curves in the named results, one per `surv[...]` entry.
fn curves(named: &std::collections::BTreeMap<String, Value>) -> Vec<Curve> {
    let list = |key: &str| -> Option<(Vec<f64>, Vec<f64>)> {
        let v = named.get(key)?;
        let values: Vec<f64> = v["values"]
            .as_array()?
            .iter()
            .map(|x| x.as_f64().unwrap_or(f64::NAN))
            .collect();
        let times: Vec<f64> = v["labels"]
            .as_array()?
            .iter()
            .map(|x| x.as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN))
            .collect();
        (values.len() == times.len()).then_some((times, values))
    };
    named
        .keys()
        .filter_map(|k| k.strip_prefix("surv[").and_then(|r| r.strip_suffix(']')))
        .filter_map(|group| {
            let (times, surv) = list(&format!("surv[{group}]"))?;
            let (_, at_risk) = list(&format!("n_risk[{group}]"))?;
            // The band where it is defined (not where the estimate is 0): by time.
            let band = |key: &str| -> Vec<f64> {
                list(&format!("{key}[{group}]"))
                    .map(|(t, v)| {
                        times
                            .iter()
                            .map(|x| t.iter().position(|y| y == x).map_or(f64::NAN, |i| v[i]))
                            .collect()
                    })
                    .unwrap_or_else(|| vec![f64::NAN; times.len()])
            };
            Some(Curve {
                group: group.to_string(),
                n: named
                    .get(&format!("n[{group}]"))
                    .and_then(Value::as_f64)
                    .unwrap_or(f64::NAN),
                low: band("conf_low"),
                high: band("conf_high"),
                times,
                surv,
                at_risk,
            })
        })
        .collect()
}

/// Rows at risk at time `t`: those at risk before the first event time at or after `t` (a
/// lower bound between event times, where censored rows leave unseen); 0 past the last.
fn at_risk(c: &Curve, t: f64) -> Option<f64> {
    if t <= 0.0 {
        return Some(c.n);
    }
    c.times.iter().position(|x| *x >= t).map(|i| c.at_risk[i])
}

/// The step curves with their bands, and the number-at-risk table; None for other kinds.
pub fn kaplan_meier(run: &RunView) -> Result<Option<String>, ReportError> {
    let Some(fed) = &run.summary.results else {
        return Ok(None);
    };
    let curves = curves(&fed.named);
    if curves.is_empty() {
        return Ok(None);
    }
    let end = curves
        .iter()
        .flat_map(|c| c.times.iter().copied())
        .filter(|t| t.is_finite())
        .fold(0.0f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let plot = svg("survival", (900, 420), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                "Kaplan-Meier estimate per group, with its pointwise 95% interval (log-log)",
                ("sans-serif", 14),
            )
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..end * 1.02, 0.0..1.02)
            .map_err(e2s)?;
        chart
            .configure_mesh()
            .x_desc("time")
            .y_desc("survival")
            .draw()
            .map_err(e2s)?;
        for (i, c) in curves.iter().enumerate() {
            let col = colour(i);
            // Steps: level 1 until the first event time, then each estimate until the next.
            let mut steps = vec![(0.0, 1.0)];
            let mut level = 1.0;
            for (t, s) in c.times.iter().zip(&c.surv) {
                steps.push((*t, level));
                steps.push((*t, *s));
                level = *s;
            }
            steps.push((end * 1.02, level));
            for (values, what) in [(&c.low, "low"), (&c.high, "high")] {
                let mut band = Vec::new();
                for (w, (t, v)) in c.times.iter().zip(values.iter()).enumerate() {
                    if !v.is_finite() {
                        continue;
                    }
                    let next = c.times.get(w + 1).copied().unwrap_or(end * 1.02);
                    band.push((*t, *v));
                    band.push((next, *v));
                }
                if !band.is_empty() {
                    let series = chart
                        .draw_series(LineSeries::new(band, col.mix(0.45).stroke_width(1)))
                        .map_err(e2s)?;
                    if what == "low" && i == 0 {
                        series.label("95% interval").legend(move |(x, y)| {
                            PathElement::new([(x, y), (x + 12, y)], col.mix(0.45))
                        });
                    }
                }
            }
            chart
                .draw_series(LineSeries::new(steps, col.stroke_width(2)))
                .map_err(e2s)?
                .label(c.group.clone())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 12, y)], col.stroke_width(2)));
        }
        legend(&mut chart)?;
        Ok(())
    })?;
    // Number at risk, at six evenly spaced times, as under a published curve.
    let marks: Vec<f64> = (0..6).map(|k| end * k as f64 / 5.0).collect();
    let mut t = String::from(
        "<table id=\"at-risk\"><caption>Number at risk: the rows still followed at the first event time at or after each time (at 0, the group's rows)</caption><tr><th>group</th>",
    );
    for m in &marks {
        let _ = write!(t, "<th>{}</th>", super::num(m.round()));
    }
    t.push_str("</tr>");
    for c in &curves {
        let _ = write!(t, "<tr><td>{}</td>", esc(&c.group));
        for m in &marks {
            let cell = at_risk(c, *m).map_or("0".to_string(), |v| format!("{v}"));
            let _ = write!(t, "<td>{cell}</td>");
        }
        t.push_str("</tr>");
    }
    t.push_str("</table>");
    Ok(Some(format!("{plot}{t}")))
}
