//! The report's "Deployment and Flower's simulation": a platform's App as it ran deployed on the
//! sites and as Flower's own simulation engine ran it on the same partitions, side by side: the
//! results, each round's time, the whole run. Flower reports no bytes; the table says so.

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
    let rounds = |r: Option<&crate::platform::PlatformResult>| {
        r.map(|r| {
            let mut at = 0.0;
            r.round_ends
                .iter()
                .map(|e| {
                    let d = e - at;
                    at = *e;
                    d
                })
                .collect::<Vec<f64>>()
        })
        .unwrap_or_default()
    };
    let mean = |v: &[f64]| match v.len() {
        0 => "-".to_string(),
        n => format!("{:.3}", v.iter().sum::<f64>() / n as f64),
    };
    let (rd, rs) = (rounds(dep), rounds(sim));
    let ratio = |a: &str, b: &str| match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(a), Ok(b)) if b > 0.0 => format!("{:.1}×", a / b),
        _ => "-".into(),
    };
    let (md, ms) = (mean(&rd), mean(&rs));
    let _ = write!(
        h,
        "<tr><td>rounds</td><td>{}</td><td>{}</td><td></td></tr><tr><td>mean round (s)</td><td>{md}</td><td>{ms}</td><td>deployment {}</td></tr>",
        rd.len(),
        rs.len(),
        ratio(&md, &ms)
    );
    let secs = |r: Option<&crate::platform::PlatformResult>| {
        r.map_or("-".to_string(), |r| format!("{:.2}", r.run_secs))
    };
    let first = |r: Option<&crate::platform::PlatformResult>| {
        r.map_or("-".to_string(), |r| format!("{:.2}", r.first_round_secs))
    };
    let (fd, fs) = (first(dep), first(sim));
    let mib = |r: Option<&crate::platform::PlatformResult>| {
        r.map_or("-".to_string(), |r| {
            format!("{:.0}", r.peak_pss_kib as f64 / 1024.0)
        })
    };
    let (pd, ps) = (mib(dep), mib(sim));
    let _ = write!(
        h,
        "<tr><td>start to the first round's end (s)</td><td>{fd}</td><td>{fs}</td><td>deployment {}</td></tr><tr><td>peak memory, every process (PSS, MiB)</td><td>{pd}</td><td>{ps}</td><td>deployment {}</td></tr>",
        ratio(&fd, &fs),
        ratio(&pd, &ps)
    );
    let (sd, ss) = (secs(dep), secs(sim));
    let _ = write!(
        h,
        "<tr><td>run, submitted to result (s)</td><td>{sd}</td><td>{ss}</td><td>deployment {}</td></tr><tr><td>bytes per round</td><td colspan=\"3\">not reported by Flower</td></tr></table>",
        ratio(&sd, &ss)
    );
    if !rd.is_empty() {
        h.push_str("<table id=\"platform-rounds\"><tr><th>round</th><th>deployment (s)</th><th>simulation (s)</th></tr>");
        for (i, d) in rd.iter().enumerate() {
            let s = rs.get(i).map_or("-".into(), |s| format!("{s:.3}"));
            let _ = write!(h, "<tr><td>{}</td><td>{d:.3}</td><td>{s}</td></tr>", i + 1);
        }
        h.push_str("</table>");
    }
    h
}
