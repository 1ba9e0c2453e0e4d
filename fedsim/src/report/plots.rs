//! The report's plots, drawn with plotters as inline SVG, each with a legend: a timeline of
//! phases and rounds per site, convergence per iteration, the federated-minus-centralised
//! difference of every checked number on the verdict's scale, and traffic per round.

use crate::logs::{LogLine, Milestone};
use plotters::coord::Shift;
use plotters::prelude::*;

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

fn seconds_since(t0: chrono::DateTime<chrono::FixedOffset>, l: &LogLine) -> Option<f64> {
    let ts = l.time()?;
    Some((ts - t0).num_microseconds()? as f64 * 1e-6)
}

/// The series' legend, in the upper right on a light background: the same on every plot.
pub(super) fn legend<'a, X, Y>(
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

/// The phases' colours: ColorBrewer's Set2 and Dark2, muted and far apart from each other (the
/// earlier ramp of slate blues made neighbouring phases look the same).
const PHASE_COLOURS: [RGBColor; 12] = [
    RGBColor(102, 194, 165),
    RGBColor(252, 141, 98),
    RGBColor(141, 160, 203),
    RGBColor(231, 138, 195),
    RGBColor(166, 216, 84),
    RGBColor(255, 217, 47),
    RGBColor(229, 196, 148),
    RGBColor(179, 179, 179),
    RGBColor(27, 158, 119),
    RGBColor(217, 95, 2),
    RGBColor(117, 112, 179),
    RGBColor(102, 166, 30),
];

/// A log10 axis drawn as a linear one over exponents: plotters' log axis labels only some
/// decades (none below 1e-14 on a wide range) and, given a range near the float limits, spends
/// minutes placing its ticks. Values are clamped to [1e-300, 1e300] and every decade or second
/// decade is labelled `1e-16`.
pub struct LogAxis {
    pub lo: f64,
    pub hi: f64,
}

impl LogAxis {
    /// The exponent range covering `values` (positive, finite ones), with a decade of margin.
    pub fn over(values: impl IntoIterator<Item = f64>) -> LogAxis {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values {
            let e = exponent(v);
            lo = lo.min(e);
            hi = hi.max(e);
        }
        if !(lo.is_finite() && hi.is_finite()) {
            (lo, hi) = (-1.0, 1.0);
        }
        LogAxis {
            lo: lo.floor() - 0.5,
            hi: hi.ceil() + 0.5,
        }
    }

    /// How many labels: one per decade up to 20 decades, else one every second or more.
    pub fn labels(&self) -> usize {
        let decades = (self.hi - self.lo).ceil() as usize;
        decades.clamp(2, 20) + 1
    }

    pub fn format(y: f64) -> String {
        let e = y.round();
        if (y - e).abs() > 1e-6 {
            return String::new();
        }
        format!("1e{e:.0}")
    }
}

/// log10 of a value for a [`LogAxis`], clamped to ±300 (0 and non-finite values too).
pub fn exponent(v: f64) -> f64 {
    if v.is_nan() || v <= 0.0 {
        -300.0
    } else {
        v.log10().clamp(-300.0, 300.0)
    }
}

pub(super) fn colour(i: usize) -> RGBColor {
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
        .filter(|l| l.source == "controller")
        .find_map(LogLine::time)
        .map(|t| t - chrono::Duration::microseconds((plan_secs * 1e6) as i64));
    // Series: each phase, then each site (or "loading" and "computing").
    let per_site = sites.len() <= SITE_COLOURS;
    let mut series: Vec<(String, RGBColor)> = phases
        .iter()
        .enumerate()
        // Phases in muted colours that tell apart at a glance, sites in bright ones.
        .map(|(i, (p, secs))| {
            (
                format!("{p} ({secs:.2} s)"),
                PHASE_COLOURS[i % PHASE_COLOURS.len()],
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
            for l in run.log.iter().filter(|l| l.source == *site) {
                let Some(t) = seconds_since(t0, l) else {
                    continue;
                };
                let (from, computing) = match l.milestone {
                    Some(Milestone::RoundComputed) => {
                        (t - l.number("compute_secs").unwrap_or(0.0), true)
                    }
                    Some(Milestone::DataLoaded | Milestone::Connected) => (t, false),
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
    let axis = LogAxis::over(trace.iter().copied());
    svg("convergence", (900, 320), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                format!("Convergence: {what} per iteration"),
                ("sans-serif", 14),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(1usize..trace.len(), axis.lo..axis.hi)
            .map_err(e2s)?;
        chart
            .configure_mesh()
            .x_desc("iteration")
            .y_labels(axis.labels())
            .y_label_formatter(&|y| LogAxis::format(*y))
            .draw()
            .map_err(e2s)?;
        let points: Vec<(usize, f64)> = trace
            .iter()
            .enumerate()
            .map(|(i, v)| (i + 1, exponent(*v)))
            .collect();
        chart
            .draw_series(LineSeries::new(points.iter().copied(), &BLUE))
            .map_err(e2s)?;
        chart
            .draw_series(points.iter().map(|p| Circle::new(*p, 3, BLUE.filled())))
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
    let tolerance = c.tolerance;
    let axis = LogAxis::over(
        checks
            .iter()
            .map(|k| k.diff.max(FLOOR))
            .chain([tolerance, FLOOR]),
    );
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
            .build_cartesian_2d(0f64..checks.len() as f64 * 1.3 + 1.0, axis.lo..axis.hi)
            .map_err(e2s)?;
        chart
            .configure_mesh()
            .x_desc("checked number (in the order of the comparison table)")
            .y_desc("|federated - centralised| / scale")
            .y_labels(axis.labels())
            .y_label_formatter(&|y| LogAxis::format(*y))
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
                            Circle::new(
                                (i as f64 + 1.0, exponent(k.diff.max(FLOOR))),
                                3,
                                c.filled(),
                            )
                        }),
                )
                .map_err(e2s)?
                .label(q.as_str())
                .legend(move |(x, y)| Circle::new((x + 6, y), 4, c.filled()));
        }
        chart
            .draw_series(LineSeries::new(
                [
                    (0.0, exponent(tolerance)),
                    (checks.len() as f64 + 1.0, exponent(tolerance)),
                ],
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

/// Bytes each site sent in each round, as bars side by side per round: sites that send the same
/// number of bytes (the usual case: the same aggregates) stand next to each other instead of
/// hiding behind one another. Past 12 sites, the spread (least, mean and most) per round.
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
    // Site order as in the run, not alphabetical (site-10 after site-9).
    let order: Vec<&String> = run
        .summary
        .sites
        .iter()
        .map(|s| &s.name)
        .filter(|n| series.contains_key(*n))
        .collect();
    let max_round = series.values().flatten().map(|p| p.0).max().unwrap_or(1);
    let max_bytes = series.values().flatten().map(|p| p.1).fold(1.0, f64::max);
    let many = order.len() > SITE_COLOURS;
    svg("traffic", (900, 320), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                "Bytes sent by each site per round (aggregates only)",
                ("sans-serif", 14),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(80)
            .build_cartesian_2d(0.5f64..max_round as f64 * 1.3 + 0.5, 0f64..max_bytes * 1.15)
            .map_err(e2s)?;
        chart
            .configure_mesh()
            .x_desc("round")
            .y_desc("bytes")
            .x_labels((2 * max_round as usize + 2).min(60))
            .x_label_formatter(&|x| {
                if (x - x.round()).abs() < 1e-9 && *x >= 1.0 {
                    format!("{x:.0}")
                } else {
                    String::new()
                }
            })
            .draw()
            .map_err(e2s)?;
        if many {
            let mut spread: std::collections::BTreeMap<u32, (f64, f64, f64, usize)> =
                Default::default();
            for (r, b) in series.values().flatten() {
                let e = spread.entry(*r).or_insert((f64::MAX, 0.0, 0.0, 0));
                e.0 = e.0.min(*b);
                e.1 += b;
                e.2 = e.2.max(*b);
                e.3 += 1;
            }
            let grey = RGBColor(170, 170, 170);
            chart
                .draw_series(spread.iter().map(|(r, (lo, _, hi, _))| {
                    let x = *r as f64;
                    Rectangle::new([(x - 0.3, *lo), (x + 0.3, *hi)], grey.filled())
                }))
                .map_err(e2s)?
                .label(format!("least to most, over {} sites", order.len()))
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], grey.filled()));
            chart
                .draw_series(LineSeries::new(
                    spread
                        .iter()
                        .map(|(r, (_, sum, _, n))| (*r as f64, sum / *n as f64)),
                    &BLUE,
                ))
                .map_err(e2s)?
                .label("mean over the sites")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 12, y)], BLUE));
        } else {
            let width = 0.8 / order.len() as f64;
            for (i, site) in order.iter().enumerate() {
                let color = colour(i);
                let offset = -0.4 + width * i as f64;
                chart
                    .draw_series(series[*site].iter().map(|(r, b)| {
                        let x = *r as f64 + offset;
                        Rectangle::new([(x, 0.0), (x + width * 0.9, *b)], color.filled())
                    }))
                    .map_err(e2s)?
                    .label(site.as_str())
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                    });
            }
        }
        legend(&mut chart)?;
        Ok(())
    })
    .map(Some)
}

/// The coefficients with their 95% intervals, one row per term (the intercept aside: its scale
/// would squeeze the others): federated as a filled dot with its interval, the centralised value
/// as a ring over it. The statistician's first look: which effects are there, and whether the
/// federation moved any.
pub fn coefficients(run: &RunView) -> Result<Option<String>, ReportError> {
    let (Some(fed), Some(base)) = (&run.summary.results, &run.summary.baseline) else {
        return Ok(None);
    };
    if fed.coef.is_empty() || fed.conf_low.len() != fed.coef.len() {
        return Ok(None);
    }
    let rows: Vec<usize> = (0..fed.coef.len())
        .filter(|&i| fed.terms.get(i).is_some_and(|t| t != "const"))
        .filter(|&i| fed.conf_low[i].is_finite() && fed.conf_high[i].is_finite())
        .collect();
    if rows.is_empty() {
        return Ok(None);
    }
    let lo = rows
        .iter()
        .map(|&i| fed.conf_low[i])
        .fold(f64::INFINITY, f64::min);
    let hi = rows
        .iter()
        .map(|&i| fed.conf_high[i])
        .fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let pad = (hi - lo).max(f64::MIN_POSITIVE) * 0.08;
    let n = rows.len();
    let names: Vec<String> = rows.iter().map(|&i| fed.terms[i].clone()).collect();
    let height = (110 + 26 * n as u32).min(1600);
    svg("coefficients", (900, height), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                "Coefficients with 95% intervals: federated (dot and bar), centralised (ring)",
                ("sans-serif", 14),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(150)
            .build_cartesian_2d((lo - pad)..(hi + pad), (0..n as i32).into_segmented())
            .map_err(e2s)?;
        chart
            .configure_mesh()
            .y_labels(n.min(60) + 1)
            .y_label_formatter(&|y| match y {
                SegmentValue::CenterOf(r) | SegmentValue::Exact(r) => {
                    names.get(*r as usize).cloned().unwrap_or_default()
                }
                SegmentValue::Last => String::new(),
            })
            .x_desc("coefficient")
            .draw()
            .map_err(e2s)?;
        chart
            .draw_series(LineSeries::new(
                [(0.0, SegmentValue::Exact(0)), (0.0, SegmentValue::Last)],
                &BLACK.mix(0.4),
            ))
            .map_err(e2s)?;
        let blue = RGBColor(31, 119, 180);
        chart
            .draw_series(rows.iter().enumerate().map(|(r, &i)| {
                PathElement::new(
                    [
                        (fed.conf_low[i], SegmentValue::CenterOf(r as i32)),
                        (fed.conf_high[i], SegmentValue::CenterOf(r as i32)),
                    ],
                    blue.stroke_width(2),
                )
            }))
            .map_err(e2s)?
            .label("federated 95% interval")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 12, y)], blue.stroke_width(2)));
        chart
            .draw_series(rows.iter().enumerate().map(|(r, &i)| {
                Circle::new(
                    (fed.coef[i], SegmentValue::CenterOf(r as i32)),
                    4,
                    blue.filled(),
                )
            }))
            .map_err(e2s)?
            .label("federated coefficient")
            .legend(move |(x, y)| Circle::new((x + 6, y), 4, blue.filled()));
        chart
            .draw_series(rows.iter().enumerate().filter_map(|(r, &i)| {
                let b = *base.coef.get(i)?;
                Some(Circle::new(
                    (b, SegmentValue::CenterOf(r as i32)),
                    7,
                    RED.stroke_width(1),
                ))
            }))
            .map_err(e2s)?
            .label("centralised coefficient")
            .legend(|(x, y)| Circle::new((x + 6, y), 6, RED.stroke_width(1)));
        legend(&mut chart)?;
        Ok(())
    })
    .map(Some)
}

/// Each site's target, as the simulation split it: a box from the 25th to the 75th percentile,
/// whiskers to the 10th and 90th, the median and the mean (a Dirichlet skew shows as boxes that
/// no longer line up). Past 60 sites, the first 60.
pub fn outcomes(run: &RunView) -> Result<Option<String>, ReportError> {
    let sites: Vec<(&str, &crate::summary::Outcome)> = run
        .summary
        .sites
        .iter()
        .filter_map(|s| Some((s.name.as_str(), s.outcome.as_ref()?)))
        .take(60)
        .collect();
    if sites.is_empty() {
        return Ok(None);
    }
    let target = run
        .plan
        .as_ref()
        .and_then(|p| p.algorithm.target.clone())
        .unwrap_or_else(|| "target".into());
    let lo = sites
        .iter()
        .map(|(_, o)| o.percentiles[0].min(o.mean))
        .fold(f64::INFINITY, f64::min);
    let hi = sites
        .iter()
        .map(|(_, o)| o.percentiles[4].max(o.mean))
        .fold(f64::NEG_INFINITY, f64::max);
    let pad = (hi - lo).abs().max(1e-9) * 0.08;
    let n = sites.len();
    let names: Vec<String> = sites
        .iter()
        .map(|(s, o)| format!("{s} (n = {})", o.n))
        .collect();
    let height = (110 + 26 * n as u32).min(1700);
    svg("outcomes", (900, height), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                format!(
                    "{target} at each site (as the simulation split the rows; no site sends this)"
                ),
                ("sans-serif", 14),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(150)
            .build_cartesian_2d((lo - pad)..(hi + pad), (0..n as i32).into_segmented())
            .map_err(e2s)?;
        chart
            .configure_mesh()
            .y_labels(n + 1)
            .y_label_formatter(&|y| match y {
                SegmentValue::CenterOf(r) | SegmentValue::Exact(r) => {
                    names.get(*r as usize).cloned().unwrap_or_default()
                }
                SegmentValue::Last => String::new(),
            })
            .x_desc(target.as_str())
            .draw()
            .map_err(e2s)?;
        let box_colour = RGBColor(141, 160, 203);
        let at = |r: usize, x: f64| (x, SegmentValue::CenterOf(r as i32));
        chart
            .draw_series(sites.iter().enumerate().map(|(r, (_, o))| {
                PathElement::new([at(r, o.percentiles[0]), at(r, o.percentiles[4])], BLACK)
            }))
            .map_err(e2s)?
            .label("10th to 90th percentile")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 12, y)], BLACK));
        chart
            .draw_series(sites.iter().enumerate().map(|(r, (_, o))| {
                Rectangle::new(
                    [
                        (o.percentiles[1], SegmentValue::Exact(r as i32)),
                        (o.percentiles[3], SegmentValue::Exact(r as i32 + 1)),
                    ],
                    box_colour.mix(0.8).filled(),
                )
            }))
            .map_err(e2s)?
            .label("25th to 75th percentile")
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 12, y + 5)], box_colour.filled())
            });
        chart
            .draw_series(sites.iter().enumerate().map(|(r, (_, o))| {
                PathElement::new(
                    [
                        (o.percentiles[2], SegmentValue::Exact(r as i32)),
                        (o.percentiles[2], SegmentValue::Exact(r as i32 + 1)),
                    ],
                    BLACK.stroke_width(2),
                )
            }))
            .map_err(e2s)?
            .label("median")
            .legend(|(x, y)| {
                PathElement::new([(x + 6, y - 5), (x + 6, y + 5)], BLACK.stroke_width(2))
            });
        chart
            .draw_series(
                sites
                    .iter()
                    .enumerate()
                    .map(|(r, (_, o))| Circle::new(at(r, o.mean), 4, RED.filled())),
            )
            .map_err(e2s)?
            .label("mean")
            .legend(|(x, y)| Circle::new((x + 6, y), 4, RED.filled()));
        legend(&mut chart)?;
        Ok(())
    })
    .map(Some)
}
