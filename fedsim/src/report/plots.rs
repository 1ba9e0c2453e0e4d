//! The report's plots, drawn with plotters as inline SVG, each with a legend: a timeline of
//! phases and rounds per site, convergence per iteration, the federated-minus-centralised
//! difference of every checked number on the verdict's scale, and traffic per round.

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

/// The series' legend, in the upper right on a light background: the same on every plot.
fn legend<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
) -> Result<(), String>
where
    X: Ranged,
    Y: Ranged,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 11))
        .draw()
        .map_err(e2s)
}

/// Up to this many sites get a colour and a legend entry each; more are coloured by what they
/// do (loading, computing), so 1000 sites still make a readable chart.
const SITE_COLOURS: usize = 12;

fn colour(i: usize) -> RGBColor {
    let c = Palette99::pick(i).to_rgba();
    RGBColor(c.0, c.1, c.2)
}

/// One bar of the timeline: its row, its span and its series (legend entry).
struct Bar {
    row: usize,
    from: f64,
    to: f64,
    series: usize,
}

/// Gantt chart: the controller's phases and each site's data loading and rounds, in real time,
/// with a legend: the phases, then one colour per site (or per activity, for many sites).
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
    // Series: each phase, then each site (or "loading" and "computing").
    let per_site = sites.len() <= SITE_COLOURS;
    let mut series: Vec<(String, RGBColor)> = phases
        .iter()
        .enumerate()
        // Phases in a ramp of slate blues (they follow each other), sites in bright colours.
        .map(|(i, (p, secs))| {
            let k = (i % 10) as u8;
            (
                format!("{p} ({secs:.2} s)"),
                RGBColor(40 + 18 * k, 60 + 17 * k, 90 + 15 * k),
            )
        })
        .collect();
    let first_site = series.len();
    if per_site {
        series.extend(
            sites
                .iter()
                .enumerate()
                .map(|(i, s)| (s.clone(), colour(i))),
        );
    } else {
        series.push(("sites: loading data".into(), colour(0)));
        series.push(("sites: computing a round".into(), colour(1)));
    }
    let mut bars: Vec<Bar> = Vec::new();
    let mut start = 0.0;
    for (i, (_, secs)) in phases.iter().enumerate() {
        bars.push(Bar {
            row: 0,
            from: start,
            to: start + secs,
            series: i,
        });
        start += secs;
    }
    let total = start.max(1e-3);
    if let Some(t0) = t0 {
        for (row, site) in sites.iter().enumerate() {
            for l in run.log.iter().filter(|l| l["source"] == site.as_str()) {
                let Some(t) = seconds_since(t0, l) else {
                    continue;
                };
                let (from, computing) = match l["message"].as_str() {
                    Some("round computed") => (t - l["compute_secs"].as_f64().unwrap_or(0.0), true),
                    Some("data loaded") | Some("connected to coordinator") => (t, false),
                    _ => continue,
                };
                bars.push(Bar {
                    row: row + 1,
                    from,
                    to: t.max(from + total * 0.004),
                    series: if per_site {
                        first_site + row
                    } else {
                        first_site + usize::from(computing)
                    },
                });
            }
        }
    }
    let rows = sites.len() + 1;
    let names: Vec<String> = std::iter::once("controller".to_string())
        .chain(sites)
        .collect();
    let height = (120 + 22 * rows as u32 + 16 * series.len() as u32).min(1400);
    svg("timeline", (900, height), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                "Timeline: phases, and each site's loading and rounds",
                ("sans-serif", 14),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(90)
            .build_cartesian_2d(0f64..total * 1.35, (0..rows as i32).into_segmented())
            .map_err(e2s)?;
        chart
            .configure_mesh()
            .y_labels(rows.min(60) + 1)
            .y_label_formatter(&|y| match y {
                SegmentValue::CenterOf(r) | SegmentValue::Exact(r) => {
                    names.get(*r as usize).cloned().unwrap_or_default()
                }
                SegmentValue::Last => String::new(),
            })
            .x_desc("seconds since the run started")
            .draw()
            .map_err(e2s)?;
        for (i, (label, c)) in series.iter().enumerate() {
            let c = *c;
            chart
                .draw_series(bars.iter().filter(|b| b.series == i).map(|b| {
                    let r = b.row as i32;
                    Rectangle::new(
                        [
                            (b.from, SegmentValue::Exact(r)),
                            (b.to, SegmentValue::Exact(r + 1)),
                        ],
                        c.filled(),
                    )
                }))
                .map_err(e2s)?
                .label(label.as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
        }
        legend(&mut chart)?;
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

/// Federated minus centralised, per checked number, on the scale the verdict uses (`diff` of
/// each check, log axis), one colour per quantity, with the tolerance drawn across. A difference
/// of exactly 0 is drawn at the floor, 1e-18, and the caption says how many there are.
pub fn difference(run: &RunView) -> Result<Option<String>, ReportError> {
    let Some(c) = &run.summary.comparison else {
        return Ok(None);
    };
    let checks: Vec<&crate::compare::Check> = c
        .checks
        .iter()
        .filter(|k| k.quantity != crate::compare::Quantity::Angle)
        .collect();
    if checks.is_empty() {
        return Ok(None);
    }
    const FLOOR: f64 = 1e-18;
    let zeros = checks.iter().filter(|k| k.diff <= FLOOR).count();
    let mut quantities: Vec<crate::compare::Quantity> = Vec::new();
    for k in &checks {
        if !quantities.contains(&k.quantity) {
            quantities.push(k.quantity);
        }
    }
    let hi = checks
        .iter()
        .map(|k| k.diff.max(k.tolerance))
        .fold(FLOOR, f64::max);
    let tolerance = c.tolerance;
    let caption = if zeros > 0 {
        format!("Federated vs centralised, on the verdict's scale ({zeros} exactly equal, drawn at 1e-18)")
    } else {
        "Federated vs centralised, on the verdict's scale".to_string()
    };
    svg("difference", (900, 360), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(caption, ("sans-serif", 14))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(
                0f64..checks.len() as f64 * 1.3 + 1.0,
                (FLOOR * 0.5..hi * 10.0).log_scale(),
            )
            .map_err(e2s)?;
        chart
            .configure_mesh()
            .x_desc("checked number (in the order of the comparison table)")
            .y_desc("|federated - centralised| / scale")
            .y_label_formatter(&|y| format!("{y:.0e}"))
            .draw()
            .map_err(e2s)?;
        for (qi, q) in quantities.iter().enumerate() {
            let c = colour(qi);
            chart
                .draw_series(
                    checks
                        .iter()
                        .enumerate()
                        .filter(|(_, k)| k.quantity == *q)
                        .map(|(i, k)| {
                            Circle::new((i as f64 + 1.0, k.diff.max(FLOOR)), 3, c.filled())
                        }),
                )
                .map_err(e2s)?
                .label(q.as_str())
                .legend(move |(x, y)| Circle::new((x + 6, y), 4, c.filled()));
        }
        chart
            .draw_series(LineSeries::new(
                [(0.0, tolerance), (checks.len() as f64 + 1.0, tolerance)],
                &RED,
            ))
            .map_err(e2s)?
            .label(format!("tolerance {tolerance:.0e}"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 12, y)], RED));
        legend(&mut chart)?;
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
            .build_cartesian_2d(0.5f64..max_round as f64 * 1.35 + 0.5, 0f64..max_bytes * 1.1)
            .map_err(e2s)?;
        chart
            .configure_mesh()
            .x_desc("round")
            .y_desc("bytes")
            .draw()
            .map_err(e2s)?;
        let many = series.len() > SITE_COLOURS;
        for (i, (site, points)) in series.iter().enumerate() {
            // Many sites: each in light grey, the mean on top (below); few: a colour each.
            let color = if many {
                RGBColor(200, 200, 200)
            } else {
                colour(i)
            };
            let line = chart
                .draw_series(LineSeries::new(
                    points.iter().map(|(r, b)| (*r as f64, *b)),
                    &color,
                ))
                .map_err(e2s)?;
            if !many {
                line.label(site.as_str())
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 12, y)], color));
            } else if i == 0 {
                line.label(format!("each of {} sites", series.len()))
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 12, y)], color));
            }
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|(r, b)| Circle::new((*r as f64, *b), 3, color.filled())),
                )
                .map_err(e2s)?;
        }
        if many {
            let mut mean: std::collections::BTreeMap<u32, (f64, usize)> = Default::default();
            for (r, b) in series.values().flatten() {
                let e = mean.entry(*r).or_default();
                e.0 += b;
                e.1 += 1;
            }
            chart
                .draw_series(LineSeries::new(
                    mean.iter()
                        .map(|(r, (sum, n))| (*r as f64, sum / *n as f64)),
                    &BLUE,
                ))
                .map_err(e2s)?
                .label("mean over the sites")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 12, y)], BLUE));
        }
        legend(&mut chart)?;
        Ok(())
    })
    .map(Some)
}
