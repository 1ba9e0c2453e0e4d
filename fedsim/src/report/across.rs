//! Several runs side by side (`fedsim report --compare`): one table and a plot of federation
//! time by number of sites, e.g. the same scenario on 2, 5 and 10 sites.

use std::fmt::Write as _;
use std::path::PathBuf;

use plotters::prelude::*;

use super::plots::{e2s, svg};
use super::{esc, ReportError, RunView, STYLE};

/// One table (and a plot) across several runs, e.g. the same scenario on 2, 5 and 10 sites.
pub fn compare(dirs: &[PathBuf]) -> Result<String, ReportError> {
    let runs: Vec<RunView> = dirs
        .iter()
        .map(|d| RunView::load(d))
        .collect::<Result<_, _>>()?;
    let mut h = format!("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>fedsim: {} runs</title><style>{STYLE}</style></head><body><h1>fedsim: {} runs compared</h1>", runs.len(), runs.len());
    h.push_str("<table id=\"runs\"><tr><th>run</th><th>scenario</th><th>algorithm</th><th>sites</th><th>status</th><th>max diff</th><th>federate s</th><th>rounds</th><th>bytes sent (all sites)</th></tr>");
    let mut points = Vec::new();
    for r in &runs {
        let sites = r.summary.sites.len();
        let federate = r.metrics.phase_secs("federate").unwrap_or(0.0);
        let rounds = r.metrics.rounds.iter().filter(|x| x.round > 0).count();
        let bytes = r.metrics.bytes_sent();
        let diff = r.summary.comparison.as_ref().map(|c| c.max_diff);
        points.push((sites as f64, federate));
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{sites}</td><td>{}</td><td>{}</td><td>{federate:.3}</td><td>{rounds}</td><td>{bytes}</td></tr>",
            esc(&r.dir.display().to_string()),
            esc(&r.summary.scenario),
            esc(&r.summary.algorithm),
            r.summary.status,
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
