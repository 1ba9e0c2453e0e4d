//! Federated Kaplan-Meier curves, per group, and the log-rank test between the groups.
//!
//! The distinct event times of every group are agreed before round 1 (see [`super::survival`]:
//! they are disclosed). Round 1 is the only round: each site sends, for each group, its rows
//! and, at every event time of any group, its rows at risk (time >= t) and its events at t;
//! all are sums. The coordinator computes the rest as statsmodels' `SurvfuncRight` and
//! `survdiff` do: the estimate (as exp of the summed logs of 1 - d/n), Greenwood's standard
//! error, the pointwise 95% log-log interval (R's `conf.type = "log-log"`), the median (the
//! first time the estimate is below 1/2) and the log-rank chi² on groups - 1 degrees of freedom.

use serde::{Deserialize, Serialize};

use super::survival::{self, Curve, Rows, Timeline};
use super::{AlgoError, AlgorithmConfig, Estimates, Federated, LocalData, Step, Values};

/// A Kaplan-Meier analysis's own options; `curves` are filled in once the times are agreed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KmParams {
    pub time: String,
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub curves: Vec<Timeline>,
}

impl KmParams {
    pub fn columns(&self) -> Vec<String> {
        [Some(&self.time), Some(&self.event), self.group.as_ref()]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }

    /// Every event time of any group, ascending: where the risk sets are counted.
    pub fn all_times(&self) -> Vec<f64> {
        let mut t: Vec<f64> = self.curves.iter().flat_map(|c| c.times.clone()).collect();
        t.sort_by(f64::total_cmp);
        t.dedup();
        t
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    Counts,
}

/// Per group (in the agreed order): its rows, then at each time of [`KmParams::all_times`]
/// the rows at risk and the events.
#[derive(Debug, Serialize, Deserialize)]
pub struct Reply {
    pub counts: Vec<f64>,
}

/// A group's pooled counts at the common times.
#[derive(Debug, Clone)]
pub struct Counts {
    pub code: Option<f64>,
    pub n: f64,
    pub at_risk: Vec<f64>,
    pub events: Vec<f64>,
}

pub struct KaplanMeier {
    params: KmParams,
}

impl KaplanMeier {
    pub fn new(_config: AlgorithmConfig, params: KmParams) -> Self {
        KaplanMeier { params }
    }
}

impl Federated for KaplanMeier {
    type Request = Request;
    type Reply = Reply;

    fn local(&self, _request: &Request, data: &LocalData) -> Result<Reply, AlgoError> {
        let p = &self.params;
        let rows = Rows::of(data, &p.time, &p.event, p.group.as_deref())?;
        let times = p.all_times();
        let mut counts = Vec::with_capacity(p.curves.len() * (1 + 2 * times.len()));
        for c in &p.curves {
            counts.extend(survival::risk_counts(&rows, c.code, &times));
        }
        Ok(Reply { counts })
    }

    fn start(&mut self) -> Request {
        Request::Counts
    }

    /// Every number of the reply is a count: a group's rows, at risk, events at a time.
    fn counts(&self, _: &Request, reply: &Reply, _: &LocalData) -> Vec<(&'static str, f64)> {
        reply
            .counts
            .iter()
            .map(|&c| {
                (
                    "a group's rows, or its number at risk or of events at an event time",
                    c,
                )
            })
            .collect()
    }

    fn values(reply: &Reply) -> Vec<f64> {
        reply.counts.clone()
    }

    fn with_values(t: &Reply, v: &mut Values) -> Result<Reply, AlgoError> {
        Ok(Reply {
            counts: v.take(t.counts.len())?,
        })
    }

    fn aggregate(&mut self, replies: Vec<Reply>) -> Result<Step<Request>, AlgoError> {
        let p = &self.params;
        let times = p.all_times();
        let width = p.curves.len() * (1 + 2 * times.len());
        let sum = super::sum_replies::<KaplanMeier>(&replies)?.counts;
        if sum.len() != width {
            return Err(AlgoError::Protocol(format!(
                "the sites sent {} counts, expected {width}",
                sum.len()
            )));
        }
        let groups = p
            .curves
            .iter()
            .enumerate()
            .map(|(g, c)| {
                let at = g * (1 + 2 * times.len());
                Counts {
                    code: c.code,
                    n: sum[at],
                    at_risk: (0..times.len()).map(|k| sum[at + 1 + 2 * k]).collect(),
                    events: (0..times.len()).map(|k| sum[at + 2 + 2 * k]).collect(),
                }
            })
            .collect::<Vec<_>>();
        Ok(Step::Done(Box::new(estimates(
            p.group.as_deref(),
            &times,
            &groups,
        )?)))
    }
}

/// One group's curve from its counts at the common times (the times where it has events).
pub fn curve(times: &[f64], c: &Counts) -> Curve {
    let z = crate::distributions::normal_isf(0.025);
    let mut out = Curve {
        n: c.n,
        ..Default::default()
    };
    let (mut log_s, mut greenwood) = (0.0f64, 0.0f64);
    for (k, &t) in times.iter().enumerate() {
        let (n, d) = (c.at_risk[k], c.events[k]);
        if d <= 0.0 {
            continue;
        }
        log_s += (1.0 - d / n).ln();
        let s = log_s.exp();
        greenwood += if n == d { f64::NAN } else { d / (n * (n - d)) };
        let se = Some(greenwood.sqrt() * s).filter(|v| v.is_finite());
        let (low, high) = match se {
            Some(se) if s > 0.0 && s < 1.0 => {
                let w = (z * (se / s) / s.ln()).exp();
                let (a, b) = (s.powf(w), s.powf(1.0 / w));
                (Some(a.min(b)), Some(a.max(b)))
            }
            _ => (None, None),
        };
        if out.median.is_none() && s < 0.5 {
            out.median = Some(t);
        }
        out.time.push(t);
        out.surv.push(s);
        out.surv_se.push(se);
        out.conf_low.push(low);
        out.conf_high.push(high);
        out.n_risk.push(n);
        out.n_events.push(d);
    }
    out
}

/// The log-rank test of equal hazards across the groups (statsmodels' `survdiff`): chi² and
/// its degrees of freedom.
pub fn logrank(groups: &[Counts]) -> Result<(f64, usize), AlgoError> {
    let g = groups.len();
    if g < 2 {
        return Err(AlgoError::Data(
            "the log-rank test needs at least 2 groups; the data has 1".into(),
        ));
    }
    let k = groups[0].at_risk.len();
    let mut o_e = vec![0.0; g];
    let mut v = vec![vec![0.0; g]; g];
    for t in 0..k {
        let n: f64 = groups.iter().map(|c| c.at_risk[t]).sum();
        let d: f64 = groups.iter().map(|c| c.events[t]).sum();
        if d <= 0.0 || n <= 0.0 {
            continue;
        }
        for (a, ca) in groups.iter().enumerate() {
            o_e[a] += ca.events[t] - d * ca.at_risk[t] / n;
            if n > 1.0 {
                let f = d * (n - d) / (n - 1.0);
                for (b, cb) in groups.iter().enumerate() {
                    let delta = if a == b { 1.0 } else { 0.0 };
                    v[a][b] += f * (ca.at_risk[t] / n) * (delta - cb.at_risk[t] / n);
                }
            }
        }
    }
    // The first g - 1 groups (the last is their complement): solve V x = O - E.
    let m = g - 1;
    let mut a: Vec<Vec<f64>> = (0..m)
        .map(|i| {
            let mut row = v[i][..m].to_vec();
            row.push(o_e[i]);
            row
        })
        .collect();
    for col in 0..m {
        let pivot = (col..m)
            .max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))
            .unwrap_or(col);
        a.swap(col, pivot);
        if a[col][col].abs() < 1e-300 {
            return Err(AlgoError::Numeric(
                "the log-rank variance is singular (a group has no one at risk at any event time)"
                    .into(),
            ));
        }
        let pivot_row = a[col].clone();
        for (r, row) in a.iter_mut().enumerate() {
            if r != col {
                let f = row[col] / pivot_row[col];
                row.iter_mut()
                    .zip(&pivot_row)
                    .skip(col)
                    .for_each(|(x, p)| *x -= f * p);
            }
        }
    }
    let chi2 = (0..m).map(|i| o_e[i] * a[i][m] / a[i][i]).sum();
    Ok((chi2, m))
}

/// The whole result from the groups' counts: each curve and, with a group column, the test.
pub fn estimates(
    group: Option<&str>,
    times: &[f64],
    groups: &[Counts],
) -> Result<Estimates, AlgoError> {
    let mut e = Estimates {
        n: groups.iter().map(|c| c.n).sum::<f64>().round() as usize,
        ..Default::default()
    };
    if e.n == 0 {
        return Err(AlgoError::Data("no rows".into()));
    }
    for c in groups {
        let key = group.zip(c.code);
        curve(times, c).add_named(&mut e.named, key);
    }
    if group.is_some() {
        let (chi2, df) = logrank(groups)?;
        e.named
            .insert("logrank_chi2".into(), serde_json::json!(chi2));
        e.named.insert("logrank_df".into(), serde_json::json!(df));
        e.named.insert(
            "logrank_p".into(),
            serde_json::json!(crate::distributions::chi2_sf(chi2, df as u32)),
        );
    }
    Ok(e)
}

/// The pooled answer by another route: the rows sorted by time once, each group's risk set
/// counted down from the latest time (not by comparing every row with every time).
pub fn pooled(params: &KmParams, data: &LocalData) -> Result<Estimates, AlgoError> {
    let rows = Rows::of(data, &params.time, &params.event, params.group.as_deref())?;
    let n = rows.time.len();
    let mut codes: Vec<Option<f64>> = match rows.group {
        None => vec![None],
        Some(g) => {
            let mut c: Vec<f64> = g.to_vec();
            c.sort_by(f64::total_cmp);
            c.dedup();
            c.into_iter().map(Some).collect()
        }
    };
    codes.dedup();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| rows.time[a].total_cmp(&rows.time[b]));
    let mut times: Vec<f64> = order
        .iter()
        .filter(|&&i| rows.is_event(i))
        .map(|&i| rows.time[i])
        .collect();
    times.dedup();
    let groups = codes
        .iter()
        .map(|&code| {
            let mut at_risk = vec![0.0; times.len()];
            let mut events = vec![0.0; times.len()];
            // Walk the rows from the latest time down, with a pointer into the times.
            let (mut k, mut count) = (times.len(), 0.0);
            for &i in order.iter().rev() {
                if !rows.in_group(i, code) {
                    continue;
                }
                while k > 0 && times[k - 1] > rows.time[i] {
                    k -= 1;
                    at_risk[k] = count;
                }
                count += 1.0;
                if rows.is_event(i) {
                    // times[k - 1] == this row's time: it is an event time.
                    events[k - 1] += 1.0;
                }
            }
            while k > 0 {
                k -= 1;
                at_risk[k] = count;
            }
            Counts {
                code,
                n: count,
                at_risk,
                events,
            }
        })
        .collect::<Vec<_>>();
    estimates(params.group.as_deref(), &times, &groups)
}
