//! What a person reads: `report.html` from a run directory alone (self-contained: inline CSS and
//! SVG plots, nothing fetched), a table across several runs, and JUnit XML for CI systems.
//!
//! The report is rebuilt from the files the run wrote (summary, metrics, plan, merged log), so
//! `fedsim report RUN_DIR` works on any finished run, also one copied from another machine.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("plot {0}: {1}")]
    Plot(&'static str, String),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn read_json(path: &Path) -> Result<Value, ReportError> {
    let text = std::fs::read_to_string(path).map_err(|e| ReportError::Read {
        path: path.into(),
        reason: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| ReportError::Read {
        path: path.into(),
        reason: e.to_string(),
    })
}

/// Everything a report is made from.
pub struct RunFiles {
    pub dir: PathBuf,
    pub summary: Value,
    pub metrics: Value,
    pub plan: Value,
    pub log: Vec<Value>,
}

impl RunFiles {
    pub fn load(dir: &Path) -> Result<RunFiles, ReportError> {
        let log = std::fs::read_to_string(dir.join("logs/merged.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        Ok(RunFiles {
            dir: dir.to_path_buf(),
            summary: read_json(&dir.join("summary.json"))?,
            metrics: read_json(&dir.join("metrics.json"))?,
            plan: read_json(&dir.join("plan.json")).unwrap_or(Value::Null),
            log,
        })
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

fn num(x: f64) -> String {
    if x == 0.0 || (1e-3..1e6).contains(&x.abs()) {
        format!("{x:.6}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        format!("{x:.4e}")
    }
}

type Draw<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Render an SVG plot into a string, inline-ready (no XML namespace URL, which inline SVG in
/// HTML does not need).
fn svg(
    name: &'static str,
    size: (u32, u32),
    draw: impl FnOnce(&Draw) -> Result<(), String>,
) -> Result<String, ReportError> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, size).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| ReportError::Plot(name, e.to_string()))?;
        draw(&root).map_err(|e| ReportError::Plot(name, e))?;
        root.present()
            .map_err(|e| ReportError::Plot(name, e.to_string()))?;
    }
    let buf = buf.replace(" xmlns=\"http://www.w3.org/2000/svg\"", "");
    Ok(format!(
        "<figure class=\"plot\" data-plot=\"{name}\">{buf}</figure>"
    ))
}

fn e2s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

fn seconds_since(t0: chrono::DateTime<chrono::FixedOffset>, v: &Value) -> Option<f64> {
    let ts = chrono::DateTime::parse_from_rfc3339(v["timestamp"].as_str()?).ok()?;
    Some((ts - t0).num_microseconds()? as f64 * 1e-6)
}

/// Gantt chart: the controller's phases and each site's data loading and rounds, in real time.
fn timeline(run: &RunFiles) -> Result<String, ReportError> {
    let sites: Vec<String> = run.summary["sites"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let phases: Vec<(String, f64)> = run.metrics["phases"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| Some((p[0].as_str()?.to_string(), p[1].as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    let plan_secs = phases.first().map_or(0.0, |p| p.1);
    let t0 = run
        .log
        .iter()
        .filter(|l| l["source"] == "controller")
        .find_map(|l| chrono::DateTime::parse_from_rfc3339(l["timestamp"].as_str()?).ok())
        .map(|t| t - chrono::Duration::microseconds((plan_secs * 1e6) as i64));
    let mut bars: Vec<(usize, f64, f64, RGBColor)> = Vec::new();
    let mut start = 0.0;
    let colors = [
        RGBColor(99, 110, 250),
        RGBColor(239, 85, 59),
        RGBColor(0, 204, 150),
        RGBColor(171, 99, 250),
        RGBColor(255, 161, 90),
        RGBColor(25, 211, 243),
        RGBColor(255, 102, 146),
    ];
    for (i, (_, secs)) in phases.iter().enumerate() {
        bars.push((0, start, start + secs, colors[i % colors.len()]));
        start += secs;
    }
    let total = start.max(1e-3);
    if let Some(t0) = t0 {
        for (row, site) in sites.iter().enumerate() {
            for l in run.log.iter().filter(|l| l["source"] == site.as_str()) {
                let Some(t) = seconds_since(t0, l) else {
                    continue;
                };
                let (from, color) = match l["message"].as_str() {
                    Some("round computed") => (
                        t - l["compute_secs"].as_f64().unwrap_or(0.0),
                        RGBColor(0, 204, 150),
                    ),
                    Some("data loaded") | Some("connected to coordinator") => {
                        (t, RGBColor(99, 110, 250))
                    }
                    _ => continue,
                };
                bars.push((row + 1, from, t.max(from + total * 0.004), color));
            }
        }
    }
    let rows = sites.len() + 1;
    let names: Vec<String> = std::iter::once("controller".to_string())
        .chain(sites)
        .collect();
    let height = (80 + 22 * rows as u32).min(1200);
    let legend = phases
        .iter()
        .map(|(p, s)| format!("{p} {s:.2}s"))
        .collect::<Vec<_>>()
        .join(" | ");
    svg("timeline", (900, height), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(format!("Timeline (s): {legend}"), ("sans-serif", 14))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(90)
            .build_cartesian_2d(0f64..total * 1.02, (0..rows as i32).into_segmented())
            .map_err(e2s)?;
        chart
            .configure_mesh()
            .y_labels(rows + 1)
            .y_label_formatter(&|y| match y {
                SegmentValue::CenterOf(r) | SegmentValue::Exact(r) => {
                    names.get(*r as usize).cloned().unwrap_or_default()
                }
                SegmentValue::Last => String::new(),
            })
            .x_desc("seconds since the run started")
            .draw()
            .map_err(e2s)?;
        chart
            .draw_series(bars.iter().map(|(row, a, b, c)| {
                let r = *row as i32;
                Rectangle::new(
                    [
                        (*a, SegmentValue::Exact(r)),
                        (*b, SegmentValue::Exact(r + 1)),
                    ],
                    c.filled(),
                )
            }))
            .map_err(e2s)?;
        Ok(())
    })
}

fn convergence(run: &RunFiles) -> Result<Option<String>, ReportError> {
    let trace: Vec<f64> = floats(&run.summary["results"]["convergence"])
        .into_iter()
        .filter(|v| *v > 0.0)
        .collect();
    if trace.len() < 2 {
        return Ok(None);
    }
    let what = if run.summary["algorithm"] == "svd" {
        "subspace residual"
    } else {
        "Newton step (max |step|)"
    };
    let (lo, hi) = trace
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    svg("convergence", (900, 320), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                format!("Convergence: {what} per iteration"),
                ("sans-serif", 14),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(1usize..trace.len(), (lo * 0.5..hi * 2.0).log_scale())
            .map_err(e2s)?;
        chart
            .configure_mesh()
            .x_desc("iteration")
            .y_label_formatter(&|y| format!("{y:.0e}"))
            .draw()
            .map_err(e2s)?;
        chart
            .draw_series(LineSeries::new(
                trace.iter().enumerate().map(|(i, v)| (i + 1, *v)),
                &BLUE,
            ))
            .map_err(e2s)?;
        chart
            .draw_series(
                trace
                    .iter()
                    .enumerate()
                    .map(|(i, v)| Circle::new((i + 1, *v), 3, BLUE.filled())),
            )
            .map_err(e2s)?;
        Ok(())
    })
    .map(Some)
}

/// Federated against centralised: coefficients on the diagonal, or singular values side by side.
fn agreement(run: &RunFiles) -> Result<Option<String>, ReportError> {
    let (res, base) = (&run.summary["results"], &run.summary["baseline"]);
    let svd = run.summary["algorithm"] == "svd";
    let (fed, cen) = if svd {
        (
            floats(&res["singular_values"]),
            floats(&base["singular_values"]),
        )
    } else {
        (floats(&res["coef"]), floats(&base["coef"]))
    };
    if fed.is_empty() || fed.len() != cen.len() {
        return Ok(None);
    }
    let (lo, hi) = fed
        .iter()
        .chain(&cen)
        .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    let pad = ((hi - lo) * 0.05).max(1e-9);
    if svd {
        return svg("agreement", (900, 320), |root| {
            let mut chart = ChartBuilder::on(root)
                .caption(
                    "Singular values: federated (points) and centralised (line)",
                    ("sans-serif", 14),
                )
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(70)
                .build_cartesian_2d(
                    0.5f64..fed.len() as f64 + 0.5,
                    (lo - pad).max(0.0)..hi + pad,
                )
                .map_err(e2s)?;
            chart
                .configure_mesh()
                .x_desc("component")
                .draw()
                .map_err(e2s)?;
            chart
                .draw_series(LineSeries::new(
                    cen.iter().enumerate().map(|(i, v)| (i as f64 + 1.0, *v)),
                    &RED,
                ))
                .map_err(e2s)?;
            chart
                .draw_series(
                    fed.iter()
                        .enumerate()
                        .map(|(i, v)| Circle::new((i as f64 + 1.0, *v), 4, BLUE.filled())),
                )
                .map_err(e2s)?;
            Ok(())
        })
        .map(Some);
    }
    svg("agreement", (480, 420), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Coefficients: federated vs centralised", ("sans-serif", 14))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(70)
            .build_cartesian_2d(lo - pad..hi + pad, lo - pad..hi + pad)
            .map_err(e2s)?;
        chart
            .configure_mesh()
            .x_desc("centralised")
            .y_desc("federated")
            .draw()
            .map_err(e2s)?;
        chart
            .draw_series(LineSeries::new(
                [(lo - pad, lo - pad), (hi + pad, hi + pad)],
                &RED,
            ))
            .map_err(e2s)?;
        chart
            .draw_series(
                cen.iter()
                    .zip(&fed)
                    .map(|(x, y)| Circle::new((*x, *y), 4, BLUE.filled())),
            )
            .map_err(e2s)?;
        Ok(())
    })
    .map(Some)
}

/// Bytes each site sent in each round.
fn traffic(run: &RunFiles) -> Result<Option<String>, ReportError> {
    let rounds = run.metrics["rounds"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut series: std::collections::BTreeMap<String, Vec<(u32, f64)>> = Default::default();
    for r in rounds
        .iter()
        .filter(|r| r["round"].as_u64().unwrap_or(0) > 0)
    {
        let round = r["round"].as_u64().unwrap_or(0) as u32;
        for s in r["sites"].as_array().into_iter().flatten() {
            let name = s["site"].as_str().unwrap_or("?").to_string();
            series
                .entry(name)
                .or_default()
                .push((round, s["bytes_sent"].as_f64().unwrap_or(0.0)));
        }
    }
    if series.is_empty() {
        return Ok(None);
    }
    let max_round = series.values().flatten().map(|p| p.0).max().unwrap_or(1);
    let max_bytes = series.values().flatten().map(|p| p.1).fold(1.0, f64::max);
    svg("traffic", (900, 320), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                "Bytes sent by each site per round (aggregates only)",
                ("sans-serif", 14),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(80)
            .build_cartesian_2d(0.5f64..max_round as f64 + 0.5, 0f64..max_bytes * 1.1)
            .map_err(e2s)?;
        chart
            .configure_mesh()
            .x_desc("round")
            .y_desc("bytes")
            .draw()
            .map_err(e2s)?;
        for (i, points) in series.values().enumerate() {
            let color = Palette99::pick(i);
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(|(r, b)| (*r as f64, *b)),
                    &color,
                ))
                .map_err(e2s)?;
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|(r, b)| Circle::new((*r as f64, *b), 3, color.filled())),
                )
                .map_err(e2s)?;
        }
        Ok(())
    })
    .map(Some)
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.ok{color:#0a7d32;font-weight:bold}
.bad{color:#b00020;font-weight:bold}figure.plot{margin:1em 0}code{background:#f3f3f3;padding:0 3px}";

fn verdict(ok: bool) -> &'static str {
    if ok {
        "<span class=\"ok\">passed</span>"
    } else {
        "<span class=\"bad\">FAILED</span>"
    }
}

/// The comparison table: per term (regressions) or per component (svd).
fn comparison_table(s: &Value) -> String {
    let (res, base, reference) = (&s["results"], &s["baseline"], &s["reference"]);
    let mut t = String::new();
    let c = &s["comparison"];
    if s["algorithm"] == "svd" {
        let (f, b) = (
            floats(&res["singular_values"]),
            floats(&base["singular_values"]),
        );
        let angles = floats(&c["angles_deg"]);
        t.push_str("<table id=\"comparison\"><tr><th>component</th><th>federated s</th><th>centralised s</th><th>rel. diff</th><th>angle (deg)</th></tr>");
        for i in 0..f.len().min(b.len()) {
            let rel = (f[i] - b[i]).abs() / b[i].abs().max(f64::MIN_POSITIVE);
            let angle = angles.get(i).map_or("-".into(), |a| format!("{a:.2e}"));
            let _ = write!(
                t,
                "<tr><td>pc{}</td><td>{}</td><td>{}</td><td>{rel:.2e}</td><td>{angle}</td></tr>",
                i + 1,
                num(f[i]),
                num(b[i])
            );
        }
    } else {
        let terms: Vec<String> = res["terms"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let (fc, bc, fs, bs) = (
            floats(&res["coef"]),
            floats(&base["coef"]),
            floats(&res["se"]),
            floats(&base["se"]),
        );
        t.push_str("<table id=\"comparison\"><tr><th>term</th><th>federated coef</th><th>centralised coef</th><th>rel. diff</th><th>federated se</th><th>centralised se</th><th>rel. diff</th></tr>");
        for (i, term) in terms.iter().enumerate() {
            let get = |v: &[f64]| v.get(i).copied().unwrap_or(f64::NAN);
            let rel = |a: f64, b: f64| (a - b).abs() / b.abs().max(f64::MIN_POSITIVE);
            let _ = write!(
                t,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.2e}</td><td>{}</td><td>{}</td><td>{:.2e}</td></tr>",
                esc(term),
                num(get(&fc)),
                num(get(&bc)),
                rel(get(&fc), get(&bc)),
                num(get(&fs)),
                num(get(&bs)),
                rel(get(&fs), get(&bs))
            );
        }
    }
    t.push_str("</table>");
    if c.is_object() {
        let _ = write!(
            t,
            "<p>Federated vs centralised: max relative difference <b>{:.3e}</b> at <code>{}</code>, max absolute {:.3e}, tolerance {:.1e}: {}</p>",
            c["max_rel_diff"].as_f64().unwrap_or(f64::NAN),
            esc(c["worst"].as_str().unwrap_or("")),
            c["max_abs_diff"].as_f64().unwrap_or(f64::NAN),
            c["tolerance"].as_f64().unwrap_or(f64::NAN),
            verdict(c["passed"] == true)
        );
    }
    if reference.is_object() {
        let _ = write!(
            t,
            "<p>Against the independent reference <code>{}</code>: max relative difference <b>{:.3e}</b>: {}</p>",
            esc(reference["source"].as_str().unwrap_or("")),
            reference["max_rel_diff"].as_f64().unwrap_or(f64::NAN),
            verdict(reference["passed"] == true)
        );
    }
    t
}

/// `report.html` for one run.
pub fn render(run: &RunFiles) -> Result<String, ReportError> {
    let s = &run.summary;
    let m = &run.metrics;
    let status = s["status"].as_str().unwrap_or("unknown");
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>fedsim: {name}</title><style>{STYLE}</style></head><body>\
         <h1>fedsim run <code>{name}</code>: {badge}</h1>\
         <p>Run <code>{id}</code>, algorithm <b>{alg}</b>, fedsim {ver}.</p>",
        name = esc(s["scenario"].as_str().unwrap_or("")),
        badge = if status == "succeeded" { format!("<span class=\"ok\">{status}</span>") } else { format!("<span class=\"bad\">{}</span>", esc(status)) },
        id = esc(s["run_id"].as_str().unwrap_or("")),
        alg = esc(s["algorithm"].as_str().unwrap_or("")),
        ver = esc(s["fedsim_version"].as_str().unwrap_or("")),
    );
    if let Some(e) = s["error"].as_object() {
        let site = e
            .get("site")
            .and_then(Value::as_str)
            .map(|x| format!(" (site <b>{}</b>)", esc(x)))
            .unwrap_or_default();
        let _ = write!(
            h,
            "<p class=\"bad\">Error{site}: {}</p>",
            esc(e.get("message").and_then(Value::as_str).unwrap_or(""))
        );
    }
    h.push_str("<h2>Scenario</h2><table id=\"scenario\"><tr><th>item</th><th>value</th></tr>");
    let p = &run.plan;
    let mut row = |k: &str, v: String| {
        let _ = write!(h, "<tr><td>{k}</td><td>{}</td></tr>", esc(&v));
    };
    row("data", p["data"].as_str().unwrap_or("").to_string());
    row("seed", p["seed"].to_string());
    row(
        "partition",
        format!(
            "{} / {} over {} sites",
            p["partition"]["kind"].as_str().unwrap_or("?"),
            p["partition"]["strategy"].as_str().unwrap_or("?"),
            p["partition"]["sites"]
        ),
    );
    row(
        "features",
        p["algorithm"]["features"]
            .as_array()
            .map_or(0, Vec::len)
            .to_string(),
    );
    row(
        "rows",
        s["results"]["n"]
            .as_u64()
            .map_or("-".into(), |n| n.to_string()),
    );
    h.push_str("</table><h2>Sites</h2><table id=\"sites\"><tr><th>site</th><th>rows</th><th>where</th><th>agent exit</th><th>peak memory (MiB)</th></tr>");
    for site in s["sites"].as_array().into_iter().flatten() {
        let name = site["name"].as_str().unwrap_or("?");
        let exit = match (&site["exit"]["code"], site["exit"]["killed"] == true) {
            (_, true) => "killed".to_string(),
            (Value::Number(c), _) => c.to_string(),
            _ => "-".to_string(),
        };
        let mem = m["sites_peak_rss_kib"][name]
            .as_f64()
            .map_or("-".into(), |k| format!("{:.0}", k / 1024.0));
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{exit}</td><td>{mem}</td></tr>",
            esc(name),
            site["rows"],
            esc(site["location"].as_str().unwrap_or(""))
        );
    }
    h.push_str("</table>");
    if s["results"].is_object() && s["baseline"].is_object() {
        h.push_str("<h2>Federated vs centralised</h2>");
        h.push_str(&comparison_table(s));
    }
    h.push_str("<h2>Plots</h2>");
    h.push_str(&timeline(run)?);
    for plot in [convergence(run)?, agreement(run)?, traffic(run)?]
        .into_iter()
        .flatten()
    {
        h.push_str(&plot);
    }
    h.push_str("<h2>Costs</h2><table id=\"metrics\"><tr><th>phase</th><th>seconds</th></tr>");
    for ph in m["phases"].as_array().into_iter().flatten() {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{:.3}</td></tr>",
            esc(ph[0].as_str().unwrap_or("")),
            ph[1].as_f64().unwrap_or(0.0)
        );
    }
    let _ = write!(
        h,
        "</table><p>Controller CPU {:.2} s, controller peak memory {:.0} MiB.</p>",
        m["controller_cpu_secs"].as_f64().unwrap_or(0.0),
        m["controller_peak_rss_kib"].as_f64().unwrap_or(0.0) / 1024.0
    );
    h.push_str(&portal(&m["portal"]));
    let problems: Vec<&Value> = run
        .log
        .iter()
        .filter(|l| matches!(l["level"].as_str(), Some("ERROR") | Some("WARN")))
        .collect();
    let _ = write!(h, "<h2>Errors and warnings ({})</h2>", problems.len());
    if !problems.is_empty() {
        h.push_str("<table id=\"errors\"><tr><th>time</th><th>source</th><th>level</th><th>message</th></tr>");
        for l in problems {
            let detail = l["error"]
                .as_str()
                .or(l["reason"].as_str())
                .map(|d| format!(": {d}"))
                .unwrap_or_default();
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td></tr>",
                esc(l["timestamp"].as_str().unwrap_or("")),
                esc(l["source"].as_str().unwrap_or("")),
                esc(l["level"].as_str().unwrap_or("")),
                esc(l["message"].as_str().unwrap_or("")),
                esc(&detail)
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</body></html>\n");
    Ok(h)
}

/// The portal: how the accounts enrolled (API or browsers), the time per phase, the slowest steps
/// and links to the screenshots.
fn portal(p: &Value) -> String {
    let Some(driver) = p["driver"].as_str() else {
        return String::new();
    };
    let mut h = format!(
        "<h2>Portal ({})</h2><table id=\"portal\"><tr><th>phase</th><th>seconds</th></tr>",
        if driver == "gui" {
            "every account in its own headless browser"
        } else {
            "JSON API"
        }
    );
    for ph in p["phases"].as_array().into_iter().flatten() {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{:.3}</td></tr>",
            esc(ph[0].as_str().unwrap_or("")),
            ph[1].as_f64().unwrap_or(0.0)
        );
    }
    h.push_str("</table>");
    let mut steps: Vec<&Value> = p["steps"].as_array().into_iter().flatten().collect();
    steps.sort_by(|a, b| {
        b["secs"]
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&a["secs"].as_f64().unwrap_or(0.0))
    });
    h.push_str("<table id=\"portal-steps\"><tr><th>slowest steps</th><th>account</th><th>phase</th><th>seconds</th></tr>");
    for s in steps.iter().take(5) {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td></tr>",
            esc(s["step"].as_str().unwrap_or("")),
            esc(s["account"].as_str().unwrap_or("")),
            esc(s["phase"].as_str().unwrap_or("")),
            s["secs"].as_f64().unwrap_or(0.0)
        );
    }
    h.push_str("</table>");
    let shots: Vec<&str> = p["screenshots"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str())
        .filter_map(|s| s.find("portal/").map(|i| &s[i..]))
        .collect();
    if !shots.is_empty() {
        h.push_str("<p>Screenshots: ");
        for (i, s) in shots.iter().enumerate() {
            let _ = write!(
                h,
                "{}<a href=\"{}\">{}</a>",
                if i > 0 { ", " } else { "" },
                esc(s),
                esc(s.trim_start_matches("portal/"))
            );
        }
        h.push_str("</p>");
    }
    h
}

/// Write `report.html` into the run directory.
pub fn write(dir: &Path) -> Result<PathBuf, ReportError> {
    let html = render(&RunFiles::load(dir)?)?;
    let path = dir.join("report.html");
    std::fs::write(&path, html).map_err(|source| ReportError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// One table (and a plot) across several runs, e.g. the same scenario on 2, 5 and 10 sites.
pub fn compare(dirs: &[PathBuf]) -> Result<String, ReportError> {
    let runs: Vec<RunFiles> = dirs
        .iter()
        .map(|d| RunFiles::load(d))
        .collect::<Result<_, _>>()?;
    let mut h = format!("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>fedsim: {} runs</title><style>{STYLE}</style></head><body><h1>fedsim: {} runs compared</h1>", runs.len(), runs.len());
    h.push_str("<table id=\"runs\"><tr><th>run</th><th>scenario</th><th>algorithm</th><th>sites</th><th>status</th><th>max rel. diff</th><th>federate s</th><th>rounds</th><th>bytes sent (all sites)</th></tr>");
    let mut points = Vec::new();
    for r in &runs {
        let sites = r.summary["sites"].as_array().map_or(0, Vec::len);
        let federate = r.metrics["phases"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p[0] == "federate")
            .and_then(|p| p[1].as_f64())
            .unwrap_or(0.0);
        let rounds = r.metrics["rounds"].as_array().map_or(0, |a| {
            a.iter()
                .filter(|x| x["round"].as_u64().unwrap_or(0) > 0)
                .count()
        });
        let bytes: f64 = r.metrics["rounds"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|x| x["sites"].as_array().into_iter().flatten())
            .filter_map(|x| x["bytes_sent"].as_f64())
            .sum();
        let diff = r.summary["comparison"]["max_rel_diff"].as_f64();
        points.push((sites as f64, federate));
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{sites}</td><td>{}</td><td>{}</td><td>{federate:.3}</td><td>{rounds}</td><td>{bytes:.0}</td></tr>",
            esc(&r.dir.display().to_string()),
            esc(r.summary["scenario"].as_str().unwrap_or("")),
            esc(r.summary["algorithm"].as_str().unwrap_or("")),
            esc(r.summary["status"].as_str().unwrap_or("")),
            diff.map_or("-".into(), |d| format!("{d:.2e}"))
        );
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
    h.push_str("</body></html>\n");
    Ok(h)
}

/// JUnit XML: one test case per comparison check, for CI systems.
pub fn junit(summary: &Value) -> String {
    let mut cases: Vec<(String, Option<String>)> = Vec::new();
    let (res, base) = (&summary["results"], &summary["baseline"]);
    let tol = summary["comparison"]["tolerance"].as_f64().unwrap_or(0.0);
    let status = summary["status"].as_str().unwrap_or("unknown");
    let run_failure = summary["error"]["message"].as_str().map(String::from);
    cases.push((
        "run completes".into(),
        (status != "succeeded" && res.is_null())
            .then(|| run_failure.clone().unwrap_or_else(|| status.into())),
    ));
    for field in ["coef", "se", "singular_values"] {
        let (f, b) = (floats(&res[field]), floats(&base[field]));
        if f.is_empty() && b.is_empty() {
            continue;
        }
        let worst = f
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs() / y.abs().max(f64::MIN_POSITIVE))
            .fold(0.0, f64::max);
        let failed = f.len() != b.len() || worst.is_nan() || worst > tol;
        cases.push((
            format!(
                "{field}: federated vs centralised (rel. diff {worst:.2e}, tolerance {tol:.1e})"
            ),
            failed.then(|| format!("max relative difference {worst:.3e} > {tol:.1e}")),
        ));
    }
    if let Some(a) = summary["comparison"]["max_angle_deg"].as_f64() {
        let t = summary["comparison"]["angle_tolerance_deg"]
            .as_f64()
            .unwrap_or(0.0);
        cases.push((
            format!("component angles (max {a:.2e} deg, tolerance {t} deg)"),
            (a > t).then(|| format!("angle {a:.3e} deg > {t}")),
        ));
    }
    if summary["reference"].is_object() {
        let r = &summary["reference"];
        let d = r["max_rel_diff"].as_f64().unwrap_or(f64::NAN);
        cases.push((
            format!("independent reference (rel. diff {d:.2e})"),
            (r["passed"] != true).then(|| format!("max relative difference {d:.3e}")),
        ));
    }
    let failures = cases.iter().filter(|c| c.1.is_some()).count();
    let name = esc(summary["scenario"].as_str().unwrap_or("fedsim"));
    let mut x = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites><testsuite name=\"{name}\" tests=\"{}\" failures=\"{failures}\">\n", cases.len());
    for (case, failure) in &cases {
        let _ = write!(
            x,
            "  <testcase classname=\"fedsim.{name}\" name=\"{}\"",
            esc(case)
        );
        match failure {
            Some(f) => {
                let _ = writeln!(x, "><failure message=\"{}\"/></testcase>", esc(f));
            }
            None => x.push_str("/>\n"),
        }
    }
    x.push_str("</testsuite></testsuites>\n");
    x
}
