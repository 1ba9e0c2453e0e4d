//! The report's "Deployment and Flower's simulation": a platform's App as it ran deployed on the
//! sites and as Flower's own simulation engine ran it on the same partitions, side by side: the
//! results, each round's time and bytes, the whole run. Flower reports no bytes: the deployment's
//! are what the relays its nodes dial through counted; the simulation has no wire.

use std::fmt::Write as _;

use super::{esc, num, RunView};

pub(super) fn section(run: &RunView) -> String {
    let Some(p) = run.dir.read_platform() else {
        return String::new();
    };
    let mut h = String::from("<h2>Deployment and Flower's simulation</h2>");
    let (dep, sim) = (p.deployment.as_ref(), p.simulation.as_ref());
    if let Some(e) = &p.simulation_error {
        let _ = write!(
            h,
            "<p class=\"note\">The simulation gave no result: {}</p>",
            esc(e)
        );
    }
    if let Some(d) = p.max_rel_diff {
        let _ = write!(
            h,
            "<p id=\"platform-agreement\">The two results differ by at most <b>{}</b> (relative).</p>",
            num(d)
        );
    }
    h.push_str("<table id=\"platform\"><tr><th>quantity</th><th>deployment</th><th>simulation</th><th>relative difference</th></tr>");
    let names: Vec<&String> = dep
        .or(sim)
        .map(|r| r.result.named.keys().collect())
        .unwrap_or_default();
    for name in names {
        let value = |r: Option<&crate::platform::PlatformResult>| {
            r.and_then(|r| r.result.named.get(name))
                .and_then(|v| v.as_f64())
        };
        let (a, b) = (value(dep), value(sim));
        let diff = match (a, b) {
            (Some(a), Some(b)) => num((a - b).abs() / a.abs().max(b.abs()).max(1e-300)),
            _ => "-".into(),
        };
        let show = |x: Option<f64>| x.map_or("-".into(), num);
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{diff}</td></tr>",
            esc(name),
            show(a),
            show(b)
        );
    }
    type Of = fn(&crate::platform::PlatformResult) -> f64;
    let rd = dep.map(|r| r.round_secs()).unwrap_or_default();
    let rs = sim.map(|r| r.round_secs()).unwrap_or_default();
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    // One quantity on both sides, with the deployment's multiple of the simulation's.
    let mut row = |label: &str, d: Option<f64>, s: Option<f64>, digits: usize| {
        let show = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.digits$}"));
        let ratio = match (d, s) {
            (Some(d), Some(s)) if s > 0.0 => format!("deployment {:.1}×", d / s),
            _ => "-".into(),
        };
        let _ = write!(
            h,
            "<tr><td>{label}</td><td>{}</td><td>{}</td><td>{ratio}</td></tr>",
            show(d),
            show(s)
        );
    };
    let both = |f: Of| (dep.map(f), sim.map(f));
    row("mean round (s)", mean(&rd), mean(&rs), 3);
    let (d, s) = both(|r| r.first_round_secs);
    row("start to the first round's end (s)", d, s, 2);
    let (d, s) = both(|r| r.peak_pss_kib as f64 / 1024.0);
    row("peak memory, every process (PSS, MiB)", d, s, 0);
    let (d, s) = both(|r| r.run_secs);
    row("run, submitted to result (s)", d, s, 2);
    let bytes = dep.map(|r| r.round_bytes.as_slice()).unwrap_or_default();
    let per_round = match bytes.len() {
        0 => "not counted (Flower reports none)".to_string(),
        n => {
            let (up, down) = bytes
                .iter()
                .fold((0, 0), |(u, d), b| (u + b.up, d + b.down));
            format!(
                "{} up, {} down (mean of {n}, on the wire, TLS included)",
                kib(up / n as u64),
                kib(down / n as u64)
            )
        }
    };
    let _ = write!(
        h,
        "<tr><td>rounds</td><td>{}</td><td>{}</td><td></td></tr><tr><td>bytes per round</td><td>{per_round}</td><td>- (no wire)</td><td></td></tr></table>",
        rd.len(),
        rs.len()
    );
    if !rd.is_empty() {
        h.push_str("<table id=\"platform-rounds\"><tr><th>round</th><th>deployment (s)</th><th>simulation (s)</th><th>deployment, up</th><th>deployment, down</th></tr>");
        for (i, d) in rd.iter().enumerate() {
            let s = rs.get(i).map_or("-".into(), |s| format!("{s:.3}"));
            let (up, down) = bytes
                .get(i)
                .map_or(("-".into(), "-".into()), |b| (kib(b.up), kib(b.down)));
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{d:.3}</td><td>{s}</td><td>{up}</td><td>{down}</td></tr>",
                i + 1
            );
        }
        h.push_str("</table>");
    }
    h
}

/// Bytes as KiB, for the table.
fn kib(bytes: u64) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}
