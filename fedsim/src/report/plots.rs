//! The report's plots, drawn with plotters as inline SVG: a timeline of phases and rounds per
//! site, convergence per iteration, federated against centralised values, and traffic per round.

use plotters::coord::Shift;
use plotters::prelude::*;
use serde_json::Value;

use super::{ReportError, RunView};

type Draw<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Render an SVG plot into a string, inline-ready (no XML namespace URL, which inline SVG in
/// HTML does not need).
pub fn svg(
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

pub fn e2s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

fn seconds_since(t0: chrono::DateTime<chrono::FixedOffset>, v: &Value) -> Option<f64> {
    let ts = chrono::DateTime::parse_from_rfc3339(v["timestamp"].as_str()?).ok()?;
    Some((ts - t0).num_microseconds()? as f64 * 1e-6)
}

/// Gantt chart: the controller's phases and each site's data loading and rounds, in real time.
pub fn timeline(run: &RunView) -> Result<String, ReportError> {
    let sites: Vec<String> = run.summary.sites.iter().map(|s| s.name.clone()).collect();
    let phases = &run.metrics.phases;
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

pub fn convergence(run: &RunView) -> Result<Option<String>, ReportError> {
    let trace: Vec<f64> = run
        .summary
        .results
        .iter()
        .flat_map(|r| r.convergence.iter().copied())
        .filter(|v| *v > 0.0)
        .collect();
    if trace.len() < 2 {
        return Ok(None);
    }
    let what = if run.summary.algorithm == "svd" {
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
pub fn agreement(run: &RunView) -> Result<Option<String>, ReportError> {
    let (Some(res), Some(base)) = (&run.summary.results, &run.summary.baseline) else {
        return Ok(None);
    };
    let svd = run.summary.algorithm == "svd";
    let (fed, cen) = if svd {
        (&res.singular_values, &base.singular_values)
    } else {
        (&res.coef, &base.coef)
    };
    if fed.is_empty() || fed.len() != cen.len() {
        return Ok(None);
    }
    let (lo, hi) = fed
        .iter()
        .chain(cen)
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
                    .zip(fed)
                    .map(|(x, y)| Circle::new((*x, *y), 4, BLUE.filled())),
            )
            .map_err(e2s)?;
        Ok(())
    })
    .map(Some)
}

/// Bytes each site sent in each round.
pub fn traffic(run: &RunView) -> Result<Option<String>, ReportError> {
    let mut series: std::collections::BTreeMap<String, Vec<(u32, f64)>> = Default::default();
    for r in run.metrics.rounds.iter().filter(|r| r.round > 0) {
        for s in &r.sites {
            series
                .entry(s.site.clone())
                .or_default()
                .push((r.round, s.bytes_sent as f64));
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
