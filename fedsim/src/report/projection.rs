//! The report's "The study on the simulated clock": the projected duration and where it went,
//! each site's share, the critical path and the bytes per site per round.

use std::fmt::Write as _;

use crate::clock::{span, Breakdown, Projection};

use super::{esc, RunView};

/// Tables this wide stay readable; larger studies get the totals only.
const MAX_SITES: usize = 20;
const MAX_ROUNDS: usize = 40;

fn cells(b: &Breakdown) -> String {
    [
        b.approval_secs,
        b.offline_secs,
        b.computing_secs,
        b.transferring_secs,
    ]
    .iter()
    .map(|s| format!("<td>{}</td>", span(*s)))
    .collect()
}

pub(super) fn section(run: &RunView) -> String {
    let Some(p) = run.dir.read_projection() else {
        return String::new();
    };
    let mut h = String::new();
    let _ = write!(
        h,
        "<h2>The study on the simulated clock</h2><p id=\"projected\"><b>{}</b>: from {} to {}{}.</p><p class=\"note\">Each message crossed its site's link as the relay models it; each site computed only while it was up (office hours in its time zone, maintenance, its trace), at its speed, after its data steward's approval; the coordinator began each round when the last answer of the one before had arrived. Compute times and bytes are this run's.</p>",
        esc(&p.words),
        esc(&p.start),
        esc(&p.end),
        p.bottleneck
            .as_deref()
            .map_or(String::new(), |b| format!("; the site that held it up longest was <b>{}</b>", esc(b)))
    );
    let c = &p.critical;
    let _ = write!(
        h,
        "<table id=\"projection\"><tr><th>on the critical path</th><th>approval</th><th>offline</th><th>computing</th><th>transferring</th><th>coordinator</th></tr><tr><td>{}</td>{}<td>{}</td></tr></table>",
        span(p.duration_secs),
        cells(c),
        span(c.coordinator_secs)
    );
    h.push_str("<table id=\"projection-sites\"><tr><th>site</th><th>approval</th><th>offline</th><th>computing</th><th>transferring</th><th>waiting for others</th><th>on the critical path</th><th>bytes sent</th><th>bytes received</th></tr>");
    // Many sites: those that held the study up longest.
    let mut shown: Vec<_> = p.sites.iter().collect();
    if shown.len() > MAX_SITES * 10 {
        shown.sort_by(|a, b| b.critical_secs.total_cmp(&a.critical_secs));
        shown.truncate(MAX_SITES);
    }
    for s in shown {
        let _ = write!(
            h,
            "<tr><td>{}</td>{}<td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&s.site),
            cells(&s.spent),
            span(s.idle_secs),
            span(s.critical_secs),
            s.bytes_sent,
            s.bytes_received
        );
    }
    if p.sites.len() > MAX_SITES * 10 {
        let _ = write!(h, "<tr><td colspan=\"9\">the {MAX_SITES} of {} sites longest on the critical path; all in projection.json</td></tr>", p.sites.len());
    }
    h.push_str("</table>");
    h.push_str(&critical_path(&p));
    h.push_str(&bytes(&p));
    h
}

/// The rounds in order, each with the site that came last and what held it.
fn critical_path(p: &Projection) -> String {
    let mut h = String::from("<h3>Critical path</h3><table id=\"critical-path\"><tr><th>round</th><th>from</th><th>length</th><th>last site</th><th>approval</th><th>offline</th><th>computing</th><th>transferring</th></tr>");
    for r in p.rounds.iter().take(MAX_ROUNDS) {
        let _ = write!(
            h,
            "<tr><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td>{}</tr>",
            esc(&r.round),
            r.analysis
                .as_deref()
                .map_or(String::new(), |a| format!(" ({})", esc(a))),
            span(r.from_secs),
            span(r.to_secs - r.from_secs),
            r.critical_site.as_deref().map_or("-".into(), esc),
            cells(&r.critical)
        );
    }
    if p.rounds.len() > MAX_ROUNDS {
        let _ = write!(
            h,
            "<tr><td colspan=\"8\">... {} more rounds in projection.json</td></tr>",
            p.rounds.len() - MAX_ROUNDS
        );
    }
    h.push_str("</table>");
    h
}

/// Bytes each site sent and received in each round (sent / received).
fn bytes(p: &Projection) -> String {
    let rounds: Vec<_> = p.rounds.iter().filter(|r| r.round != "connect").collect();
    if p.sites.len() > MAX_SITES || rounds.len() > MAX_ROUNDS {
        return "<p class=\"note\">Bytes per site per round: in projection.json (too many to show).</p>".into();
    }
    let mut h = String::from("<h3>Bytes per site per round (sent / received)</h3><table id=\"projection-bytes\"><tr><th>site</th>");
    for r in &rounds {
        let _ = write!(h, "<th>{}</th>", esc(&r.round));
    }
    h.push_str("</tr>");
    for s in &p.sites {
        let _ = write!(h, "<tr><td>{}</td>", esc(&s.site));
        for r in &rounds {
            match r.sites.iter().find(|x| x.site == s.site) {
                Some(x) => {
                    let _ = write!(h, "<td>{} / {}</td>", x.bytes_sent, x.bytes_received);
                }
                None => h.push_str("<td>-</td>"),
            }
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
    h
}
