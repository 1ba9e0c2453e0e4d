//! What the survival analyses (Kaplan-Meier, Cox) share: their columns, and the event times.
//!
//! Both need, before round 1, the distinct event times of all sites (per group or stratum):
//! a risk set is counted at each of them. A union of times is not a sum, so it cannot travel
//! inside a (masked) sum: each site reports its event times beside its categorical levels in
//! `Ready` (outside secure aggregation's masking), and the coordinator sends back the union as
//! it does the levels. **The event times are disclosed** to the coordinator, each site's own:
//! the report says so in a warning. Everything after that is sums.

use serde::{Deserialize, Serialize};

use super::{AlgoError, LocalData};
use crate::data::design::Levels;
use crate::data::frame::Frame;

/// The prefix of the pseudo-columns that carry event times through the levels' channel:
/// `@event_times` (no groups) or `@event_times:<code>` (a group's or stratum's).
pub const EVENT_TIMES: &str = "@event_times";

/// The distinct event times of one group (or stratum), ascending.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Timeline {
    /// The group's code; none when the analysis has no groups.
    pub code: Option<f64>,
    pub times: Vec<f64>,
}

/// A group code as people read it: `1`, not `1.0`.
pub fn code_label(code: f64) -> String {
    format!("{code}")
}

/// A time as a label (shortest form that reads back exactly).
pub fn time_label(t: f64) -> String {
    format!("{t}")
}

/// Whether a levels column is one of the event-time pseudo-columns.
pub fn is_event_times(column: &str) -> bool {
    column.starts_with(EVENT_TIMES)
}

/// A site's event times per group (every group present among `rows`, with or without
/// events), as levels to report in `Ready`.
pub fn site_levels(
    frame: &Frame,
    rows: &[usize],
    time: &str,
    event: &str,
    group: Option<&str>,
) -> Levels {
    let t = frame.numbers(time, rows).unwrap_or_default();
    let e = frame.numbers(event, rows).unwrap_or_default();
    let g = group.and_then(|g| frame.numbers(g, rows));
    let mut by: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for i in 0..t.len() {
        let key = match &g {
            Some(g) => format!("{EVENT_TIMES}:{}", code_label(g[i])),
            None => EVENT_TIMES.to_string(),
        };
        let times = by.entry(key).or_default();
        if e.get(i) == Some(&1.0) {
            times.push(t[i]);
        }
    }
    by.into_iter()
        .map(|(k, mut v)| {
            v.sort_by(f64::total_cmp);
            v.dedup();
            (k, v.into_iter().map(time_label).collect())
        })
        .collect()
}

/// The agreed timelines from the levels, sorted by code; empty if none were agreed.
pub fn timelines(levels: &Levels) -> Vec<Timeline> {
    let mut out: Vec<Timeline> = levels
        .iter()
        .filter(|(c, _)| is_event_times(c))
        .map(|(c, ls)| {
            let code = c
                .strip_prefix(EVENT_TIMES)
                .and_then(|r| r.strip_prefix(':'))
                .and_then(|r| r.parse::<f64>().ok());
            let mut times: Vec<f64> = ls.iter().filter_map(|l| l.parse().ok()).collect();
            times.sort_by(f64::total_cmp);
            times.dedup();
            Timeline { code, times }
        })
        .collect();
    out.sort_by(|a, b| {
        a.code
            .unwrap_or(f64::NEG_INFINITY)
            .total_cmp(&b.code.unwrap_or(f64::NEG_INFINITY))
    });
    out
}

/// A group's counts at `times`: its rows, then at each time the number at risk (rows whose
/// time is at or after it) and of events at it. Kaplan-Meier's reply; what a Cox reply's sums
/// stand on.
pub fn risk_counts(rows: &Rows, code: Option<f64>, times: &[f64]) -> Vec<f64> {
    // The group's times, and its event times, sorted: each count is then two binary searches,
    // not a pass over the rows per time.
    let mine = |events: bool| {
        let mut v: Vec<f64> = (0..rows.time.len())
            .filter(|&i| rows.in_group(i, code) && (!events || rows.is_event(i)))
            .map(|i| rows.time[i])
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let (all, events) = (mine(false), mine(true));
    let mut counts = Vec::with_capacity(1 + 2 * times.len());
    counts.push(all.len() as f64);
    for &t in times {
        counts.push((all.len() - all.partition_point(|x| *x < t)) as f64);
        let at = events.partition_point(|x| *x < t);
        counts.push((events.partition_point(|x| *x <= t) - at) as f64);
    }
    counts
}

/// The time, event and group (or stratum) columns of a site's rows.
pub struct Rows<'a> {
    pub time: &'a [f64],
    pub event: &'a [f64],
    pub group: Option<&'a [f64]>,
}

impl<'a> Rows<'a> {
    pub fn of(
        data: &'a LocalData,
        time: &str,
        event: &str,
        group: Option<&str>,
    ) -> Result<Rows<'a>, AlgoError> {
        let column = |n: &str| {
            data.aux(Some(n))
                .ok_or_else(|| AlgoError::Data(format!("no column {n:?}")))
        };
        Ok(Rows {
            time: column(time)?,
            event: column(event)?,
            group: group.map(column).transpose()?,
        })
    }

    /// Whether row `i` is in the group coded `code` (every row is when there are no groups).
    pub fn in_group(&self, i: usize, code: Option<f64>) -> bool {
        match (self.group, code) {
            (Some(g), Some(c)) => g[i] == c,
            _ => true,
        }
    }

    pub fn is_event(&self, i: usize) -> bool {
        self.event[i] == 1.0
    }
}

/// One curve as reported: at each event time the estimate, its Greenwood standard error and
/// pointwise interval (none where undefined: where S is 0, and the interval also where S is
/// 1), the number at risk and of events; the group's rows and its median (none if S never
/// falls below 1/2).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Curve {
    pub n: f64,
    pub time: Vec<f64>,
    pub surv: Vec<f64>,
    pub surv_se: Vec<Option<f64>>,
    pub conf_low: Vec<Option<f64>>,
    pub conf_high: Vec<Option<f64>>,
    pub n_risk: Vec<f64>,
    pub n_events: Vec<f64>,
    pub median: Option<f64>,
}

/// Where a group's results are named: `surv` alone, or `surv[sex=1]`.
pub fn named_key(name: &str, group: Option<(&str, f64)>) -> String {
    match group {
        None => name.to_string(),
        Some((column, code)) => format!("{name}[{column}={}]", code_label(code)),
    }
}

impl Curve {
    /// Into an estimate's named results: each list labelled by its times (so both sides must
    /// have the same event times), the undefined entries left out on both sides alike.
    pub fn add_named(
        &self,
        named: &mut std::collections::BTreeMap<String, serde_json::Value>,
        group: Option<(&str, f64)>,
    ) {
        let key = |n: &str| named_key(n, group);
        let list = |values: &[Option<f64>]| {
            let (labels, values): (Vec<String>, Vec<f64>) = self
                .time
                .iter()
                .zip(values)
                .filter_map(|(t, v)| v.map(|v| (time_label(*t), v)))
                .unzip();
            serde_json::json!({ "values": values, "labels": labels })
        };
        let all = |v: &[f64]| v.iter().map(|x| Some(*x)).collect::<Vec<_>>();
        named.insert(key("n"), serde_json::json!(self.n));
        named.insert(key("surv"), list(&all(&self.surv)));
        named.insert(key("surv_se"), list(&self.surv_se));
        named.insert(key("conf_low"), list(&self.conf_low));
        named.insert(key("conf_high"), list(&self.conf_high));
        named.insert(key("n_risk"), list(&all(&self.n_risk)));
        named.insert(key("n_events"), list(&all(&self.n_events)));
        if let Some(m) = self.median {
            named.insert(key("median"), serde_json::json!(m));
        }
    }
}
