//! Several runs side by side (`fedsim report --compare`): one table, and for each scenario key
//! asked for (`--by partition.sites`), the difference and the federation time against it. The
//! runs must be of one kind of analysis: differences of an OLS and of a PCA do not share a scale.

use crate::rundir::RunDir;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::plots::{e2s, svg};
use super::{esc, ReportError, RunView, STYLE};

/// A key's value in a run's resolved scenario (`partition.sites` -> `5`), as text.
fn scenario_value(dir: &RunDir, key: &str) -> String {
    let Ok(text) = std::fs::read_to_string(dir.scenario_toml()) else {
        return "-".into();
    };
    let Ok(mut node) = toml::from_str::<toml::Value>(&text) else {
        return "-".into();
    };
    for part in key.split('.') {
        let next = match (&node, part.parse::<usize>()) {
            (toml::Value::Array(a), Ok(i)) => a.get(i).cloned(),
            // An entry by its name (`analysis.cox.ties`), as `--set` addresses it.
            (toml::Value::Array(a), Err(_)) => a
                .iter()
                .find(|e| e.get("name").and_then(toml::Value::as_str) == Some(part))
                .cloned(),
            (toml::Value::Table(t), _) => t.get(part).cloned(),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => return "-".into(),
        }
    }
    match node {
        toml::Value::String(s) => s,
        other => other.to_string(),
    }
}

/// Every dotted key of a run's resolved scenario (`partition.sites`, `links.0.delay_ms`).
fn scenario_keys(dir: &Path) -> Vec<String> {
    fn walk(prefix: &str, v: &toml::Value, out: &mut Vec<String>) {
        let join = |k: &str| {
            if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            }
        };
        match v {
            toml::Value::Table(t) => t.iter().for_each(|(k, v)| walk(&join(k), v, out)),
            toml::Value::Array(a) if a.iter().all(toml::Value::is_table) && !a.is_empty() => {
                a.iter().enumerate().for_each(|(i, v)| {
                    walk(&join(&i.to_string()), v, out);
                    // Named entries are also keyed by their name (`analysis.cox.ties`).
                    if let Some(name) = v.get("name").and_then(toml::Value::as_str) {
                        walk(&join(name), v, out);
                    }
                })
            }
            _ => out.push(prefix.to_string()),
        }
    }
    let mut out = Vec::new();
    if let Some(v) = std::fs::read_to_string(RunDir::open(dir).scenario_toml())
        .ok()
        .and_then(|t| toml::from_str::<toml::Value>(&t).ok())
    {
        walk("", &v, &mut out);
    }
    out
}

/// A `--by` key no run has is a typo: refuse it, with the nearest key the runs do have.
fn check_keys(dirs: &[PathBuf], by: &[String]) -> Result<(), ReportError> {
    let known: Vec<String> = dirs.iter().flat_map(|d| scenario_keys(d)).collect();
    for key in by {
        if !known.contains(key) {
            let suggestion = known
                .iter()
                .map(|k| (strsim::jaro_winkler(key, k), k))
                .filter(|(score, _)| *score > 0.8)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, k)| k.clone());
            return Err(ReportError::UnknownKey {
                key: key.clone(),
                suggestion,
            });
        }
    }
    Ok(())
}

/// One table (and plots) across several runs, e.g. the same scenario on 2, 5 and 10 sites.
pub fn compare(dirs: &[PathBuf], by: &[String]) -> Result<String, ReportError> {
    let runs: Vec<RunView> = dirs
        .iter()
        .map(|d| RunView::load(&RunDir::open(d)))
        .collect::<Result<_, _>>()?;
    check_keys(dirs, by)?;
    if let Some(first) = runs.first() {
        if let Some(odd) = runs
            .iter()
            .find(|r| r.summary.algorithm != first.summary.algorithm)
        {
            return Err(ReportError::Mixed {
                run: odd.dir.path().to_path_buf(),
                algorithm: odd.summary.algorithm.clone(),
                first: first.dir.path().to_path_buf(),
                expected: first.summary.algorithm.clone(),
            });
        }
    }
    let mut h = format!("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>fedsim: {} runs</title><style>{STYLE}</style></head><body><h1>fedsim: {} runs compared</h1>", runs.len(), runs.len());
    h.push_str(
        "<table id=\"runs\"><tr><th>run</th><th>scenario</th><th>algorithm</th><th>sites</th>",
    );
    for key in by {
        let _ = write!(h, "<th>{}</th>", esc(key));
    }
    h.push_str("<th>status</th><th>max diff</th><th>vs reference</th><th>federate s</th><th>rounds</th><th>bytes sent (all sites)</th><th>projected study</th></tr>");
    let mut rows: Vec<Row> = Vec::new();
    let mut points = Vec::new();
    for r in &runs {
        let sites = r.summary.sites.len();
        let federate = r.metrics.phase_secs("federate").unwrap_or(0.0);
        let rounds = r.metrics.rounds.iter().filter(|x| x.round > 0).count();
        let bytes = r.metrics.bytes_sent();
        // (A run of several analyses: the largest over them.)
        let diff = r.summary.max_diff();
        let reference = r.summary.max_reference_diff();
        let values: Vec<String> = by.iter().map(|k| scenario_value(&r.dir, k)).collect();
        points.push((sites as f64, federate));
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{sites}</td>",
            esc(&r.dir.path().display().to_string()),
            esc(&r.summary.scenario),
            esc(&r.summary.algorithm),
        );
        for v in &values {
            let _ = write!(h, "<td>{}</td>", esc(v));
        }
        let _ = write!(
            h,
            "<td>{}</td><td>{}</td><td>{}</td><td>{federate:.3}</td><td>{rounds}</td><td>{bytes}</td><td>{}</td></tr>",
            r.summary.status,
            diff.map_or("-".into(), |d| format!("{d:.2e}")),
            reference.map_or("-".into(), |d| format!("{d:.2e}")),
            r.summary.projection.as_ref().map_or("-".into(), |p| esc(&p.words)),
        );
        rows.push(Row {
            values,
            diff,
            federate,
            projected: r.summary.projection.as_ref().map(|p| p.duration_secs),
        });
    }
    h.push_str("</table>");
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let xmax = points.iter().map(|p| p.0).fold(1.0, f64::max);
    let ymax = points.iter().map(|p| p.1).fold(1e-3, f64::max);
    h.push_str(&svg("federate-time-by-sites", (700, 320), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                "Federation wall time by number of sites",
                ("sans-serif", 14),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..xmax * 1.1, 0f64..ymax * 1.2)
            .map_err(e2s)?;
        chart
            .configure_mesh()
            .x_desc("sites")
            .y_desc("seconds")
            .draw()
            .map_err(e2s)?;
        chart
            .draw_series(LineSeries::new(points.iter().copied(), &BLUE))
            .map_err(e2s)?;
        chart
            .draw_series(points.iter().map(|p| Circle::new(*p, 4, BLUE.filled())))
            .map_err(e2s)?;
        Ok(())
    })?);
    for (k, key) in by.iter().enumerate() {
        h.push_str(&by_key(key, k, &rows)?);
    }
    h.push_str("</body></html>\n");
    Ok(h)
}

/// The x axis of the plots by key: one place per value of the key.
struct Axis<'a> {
    key: &'a str,
    n: f64,
    labels: usize,
    label: &'a dyn Fn(&f64) -> String,
}

/// A scatter of `points` (y from 0 to `ymax`) over a key's values.
fn scatter(
    id: &'static str,
    caption: &str,
    axis: &Axis,
    points: &[(f64, f64)],
    ymax: f64,
    color: RGBColor,
) -> Result<String, ReportError> {
    svg(id, (460, 300), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(caption, ("sans-serif", 14))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5f64..axis.n - 0.5, 0f64..ymax)
            .map_err(e2s)?;
        chart
            .configure_mesh()
            .x_labels(axis.labels)
            .x_label_formatter(axis.label)
            .x_desc(axis.key)
            .draw()
            .map_err(e2s)?;
        chart
            .draw_series(points.iter().map(|p| Circle::new(*p, 4, color.filled())))
            .map_err(e2s)?;
        Ok(())
    })
}

/// One run, as the plots by key see it.
struct Row {
    /// The values of the `by` keys.
    values: Vec<String>,
    diff: Option<f64>,
    federate: f64,
    /// The study's duration on the simulated clock, for runs that projected it.
    projected: Option<f64>,
}

/// The difference (log scale), the federation time and the projected study duration of every
/// run against one key's values, in the order the values first appear (numbers sorted).
fn by_key(key: &str, k: usize, rows: &[Row]) -> Result<String, ReportError> {
    let mut levels: Vec<String> = Vec::new();
    for Row { values: v, .. } in rows {
        if !levels.contains(&v[k]) {
            levels.push(v[k].clone());
        }
    }
    if levels.iter().all(|l| l.parse::<f64>().is_ok()) {
        levels.sort_by(|a, b| {
            a.parse::<f64>()
                .unwrap_or(0.0)
                .total_cmp(&b.parse().unwrap_or(0.0))
        });
    }
    let at = |v: &str| levels.iter().position(|l| l == v).unwrap_or(0) as f64;
    let n = levels.len() as f64;
    let labels = levels.clone();
    let label = move |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 {
            labels.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let diffs: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.diff.map(|d| (at(&r.values[k]), d.max(1e-18))))
        .collect();
    let times: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| (at(&r.values[k]), r.federate))
        .collect();
    let projected: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.projected.map(|p| (at(&r.values[k]), p / 3600.0)))
        .collect();
    let (dlo, dhi) = diffs
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let (dlo, dhi) = if diffs.is_empty() {
        (1e-16, 1e-8)
    } else {
        (dlo / 10.0, dhi * 10.0)
    };
    let tmax = times.iter().map(|p| p.1).fold(1e-3, f64::max) * 1.2;
    let diff_plot = svg("difference-by-key", (460, 300), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(format!("Max difference by {key}"), ("sans-serif", 14))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.5f64..n - 0.5, (dlo..dhi).log_scale())
            .map_err(e2s)?;
        chart
            .configure_mesh()
            .x_labels(levels.len() + 1)
            .x_label_formatter(&label)
            .y_label_formatter(&|y| format!("{y:.0e}"))
            .x_desc(key)
            .draw()
            .map_err(e2s)?;
        chart
            .draw_series(diffs.iter().map(|p| Circle::new(*p, 4, RED.filled())))
            .map_err(e2s)?;
        Ok(())
    })?;
    let axis = Axis {
        key,
        n,
        labels: levels.len() + 1,
        label: &label,
    };
    let time_plot = scatter(
        "time-by-key",
        &format!("Federation seconds by {key}"),
        &axis,
        &times,
        tmax,
        BLUE,
    )?;
    let projected_plot = if projected.is_empty() {
        String::new()
    } else {
        let pmax = projected.iter().map(|p| p.1).fold(1e-6, f64::max) * 1.2;
        scatter(
            "projected-by-key",
            &format!("Projected study (hours) by {key}"),
            &axis,
            &projected,
            pmax,
            GREEN,
        )?
    };
    Ok(format!(
        "<h2>By <code>{}</code></h2>{diff_plot}{time_plot}{projected_plot}",
        esc(key)
    ))
}
