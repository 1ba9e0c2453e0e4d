//! Federated Cox proportional-hazards regression: exact Newton-Raphson on the log partial
//! likelihood, Breslow's or Efron's handling of tied event times, optional strata.
//!
//! The distinct event times of every stratum are agreed before round 1 (see
//! [`super::survival`]: they are disclosed). Each round the coordinator sends the coefficients
//! b; each site returns, for every stratum and each of its agreed event times t, sums over its
//! own rows only: over the rows at risk (time >= t) S0 = Σ exp(x'b), S1 = Σ x exp(x'b) and
//! S2 = Σ x x' exp(x'b); over the rows with an event at t their count d and Σ x; and for
//! Efron the same S0, S1, S2 over those tied events alone. All are sums, so a reply summed over
//! sites (secure aggregation) aggregates the same way. The coordinator forms the log partial
//! likelihood, its gradient and information from the summed terms, and steps as the logistic
//! regression does: halving a step that lowers the likelihood, stopping when the step is below
//! `tol` relative to the coefficients.
//!
//! Each site also returns Σ x over its rows. From round 2 on, the coordinator sends with b the
//! pooled covariate means m from round 1, and the sites use x - m in every sum: the partial
//! likelihood, its gradient and information do not change (exp(m'b) cancels from every ratio),
//! but a covariate with a large mean (a calendar year) neither overflows the exponential nor
//! loses the information's digits to cancellation.

use faer::Mat;
use serde::{Deserialize, Serialize};

use super::linreg::solve_scaled;
use super::survival::{Rows, Timeline};
use super::{z_pvalues, AlgoError, AlgorithmConfig, Estimates, Federated, LocalData, Step, Values};
use crate::scenario::Ties;

/// A Cox regression's own options; `timelines` are filled in once the event times are agreed
/// (one per stratum, sorted by code; a single one without strata).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CoxParams {
    pub time: String,
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strata: Option<String>,
    pub ties: Ties,
    pub max_iter: usize,
    pub tol: f64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timelines: Vec<Timeline>,
}

impl CoxParams {
    pub fn columns(&self) -> Vec<String> {
        [Some(&self.time), Some(&self.event), self.strata.as_ref()]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }
}

/// How many numbers one event time takes in a reply, for `p` covariates.
fn width(p: usize, ties: Ties) -> usize {
    // S0, S1, S2; d, Σx; Efron: the tied events' S0, S1, S2.
    let risk = 1 + p + p * p;
    risk + 1 + p + if ties == Ties::Efron { risk } else { 0 }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub beta: Vec<f64>,
    /// Subtracted from every row's covariates (empty: nothing; see the module's notes).
    pub center: Vec<f64>,
}

/// The site's rows, then per stratum (in the agreed order) and per agreed event time the sums
/// of [`width`] numbers each (see the module's documentation).
#[derive(Debug, Serialize, Deserialize)]
pub struct Reply {
    pub n: f64,
    /// Σ x over the site's rows (for the pooled means).
    pub xsum: Vec<f64>,
    pub sums: Vec<f64>,
}

pub struct Cox {
    config: AlgorithmConfig,
    params: CoxParams,
    beta: Vec<f64>,
    /// Last accepted point and its log partial likelihood, for step halving.
    accepted: Option<(Vec<f64>, f64)>,
    halvings: usize,
    steps: Vec<f64>,
    /// The pooled covariate means, once round 1 has brought them.
    means: Option<Vec<f64>>,
}

impl Cox {
    pub fn new(config: AlgorithmConfig, params: CoxParams) -> Self {
        let p = config.features.len();
        Cox {
            config,
            params,
            beta: vec![0.0; p],
            accepted: None,
            halvings: 0,
            steps: Vec::new(),
            means: None,
        }
    }

    fn reply_len(&self) -> usize {
        let times: usize = self.params.timelines.iter().map(|t| t.times.len()).sum();
        times * width(self.beta.len(), self.params.ties)
    }
}

/// Add `w`, `w` x and `w` x x' of row `i` into a slice of 1 + p + p² numbers (S0, S1, S2).
fn add_row(acc: &mut [f64], x: &Mat<f64>, i: usize, w: f64) {
    let p = x.ncols();
    acc[0] += w;
    for j in 0..p {
        let xj = x[(i, j)] * w;
        acc[1 + j] += xj;
        for k in 0..p {
            acc[1 + p + j * p + k] += xj * x[(i, k)];
        }
    }
}

impl Federated for Cox {
    type Request = Request;
    type Reply = Reply;

    fn local(&self, request: &Request, data: &LocalData) -> Result<Reply, AlgoError> {
        let p = self.beta.len();
        if request.beta.len() != p || data.x.ncols() != p || ![0, p].contains(&request.center.len())
        {
            return Err(AlgoError::Protocol(format!(
                "{} coefficients for {} covariates, expected {p}",
                request.beta.len(),
                data.x.ncols()
            )));
        }
        let ps = &self.params;
        let rows = Rows::of(data, &ps.time, &ps.event, ps.strata.as_deref())?;
        let w = width(p, ps.ties);
        let risk = 1 + p + p * p;
        let c = |j: usize| request.center.get(j).copied().unwrap_or(0.0);
        let x = Mat::from_fn(data.x.nrows(), p, |i, j| data.x[(i, j)] - c(j));
        let eta = |i: usize| (0..p).map(|j| x[(i, j)] * request.beta[j]).sum::<f64>();
        let mut sums = Vec::with_capacity(self.reply_len());
        for line in &ps.timelines {
            let times = &line.times;
            let mut block = vec![0.0; times.len() * w];
            let mut mine: Vec<usize> = (0..rows.time.len())
                .filter(|&i| rows.in_group(i, line.code))
                .collect();
            // Latest first: each row joins the risk sets of the times at or before its own.
            mine.sort_by(|&a, &b| rows.time[b].total_cmp(&rows.time[a]));
            let mut running = vec![0.0; risk];
            let mut next = 0;
            for k in (0..times.len()).rev() {
                while next < mine.len() && rows.time[mine[next]] >= times[k] {
                    let i = mine[next];
                    add_row(&mut running, &x, i, eta(i).exp());
                    next += 1;
                }
                block[k * w..k * w + risk].copy_from_slice(&running);
            }
            for &i in mine.iter().filter(|&&i| rows.is_event(i)) {
                let k = times
                    .binary_search_by(|t| t.total_cmp(&rows.time[i]))
                    .map_err(|_| {
                        AlgoError::Protocol(format!(
                            "event time {} is not among the agreed times",
                            rows.time[i]
                        ))
                    })?;
                let at = &mut block[k * w + risk..(k + 1) * w];
                at[0] += 1.0;
                for j in 0..p {
                    at[1 + j] += x[(i, j)];
                }
                if ps.ties == Ties::Efron {
                    add_row(&mut at[1 + p..], &x, i, eta(i).exp());
                }
            }
            sums.extend(block);
        }
        Ok(Reply {
            n: rows.time.len() as f64,
            xsum: (0..p).map(|j| data.x.col(j).iter().sum()).collect(),
            sums,
        })
    }

    /// The sums at each event time stand on the rows at risk then and the events at it.
    fn counts(&self, _: &Request, _: &Reply, data: &LocalData) -> Vec<(&'static str, f64)> {
        let ps = &self.params;
        let Ok(rows) = Rows::of(data, &ps.time, &ps.event, ps.strata.as_deref()) else {
            return vec![("the site's number of rows", data.rows() as f64)];
        };
        ps.timelines
            .iter()
            .flat_map(|line| super::survival::risk_counts(&rows, line.code, &line.times))
            .map(|c| {
                (
                    "a stratum's rows, or its number at risk or of events at an event time",
                    c,
                )
            })
            .collect()
    }

    fn start(&mut self) -> Request {
        Request {
            beta: self.beta.clone(),
            center: self.means.clone().unwrap_or_default(),
        }
    }

    fn values(reply: &Reply) -> Vec<f64> {
        [&[reply.n][..], &reply.xsum, &reply.sums].concat()
    }

    fn with_values(t: &Reply, v: &mut Values) -> Result<Reply, AlgoError> {
        Ok(Reply {
            n: v.one()?,
            xsum: v.take(t.xsum.len())?,
            sums: v.take(t.sums.len())?,
        })
    }

    fn aggregate(&mut self, replies: Vec<Reply>) -> Result<Step<Request>, AlgoError> {
        let p = self.beta.len();
        let len = self.reply_len();
        let Reply { n, xsum, sums: sum } = super::sum_replies::<Cox>(&replies)?;
        if sum.len() != len || xsum.len() != p {
            return Err(AlgoError::Protocol(format!(
                "the sites sent {} sums, expected {len}",
                sum.len()
            )));
        }
        let (ll, grad, info, events) = partial_likelihood(&sum, &self.beta, self.params.ties);
        if self.means.is_none() && n > 0.0 {
            self.means = Some(xsum.iter().map(|s| s / n).collect());
        }
        if let Some((prev, prev_ll)) = &self.accepted {
            if ll < prev_ll - 1e-12 * prev_ll.abs().max(1.0) {
                self.halvings += 1;
                if self.halvings > 40 {
                    return Err(AlgoError::Numeric(
                        "Newton step halving did not increase the partial likelihood".into(),
                    ));
                }
                self.beta = prev
                    .iter()
                    .zip(&self.beta)
                    .map(|(a, b)| 0.5 * (a + b))
                    .collect();
                return Ok(Step::Next(self.start()));
            }
        }
        self.halvings = 0;
        self.accepted = Some((self.beta.clone(), ll));
        if events == 0.0 {
            return Err(AlgoError::Data(
                "no events: a Cox regression needs at least one".into(),
            ));
        }
        let terms = self.config.terms();
        let (step, cov) = newton_step(&info, &grad, &terms)?;
        let size = step.iter().fold(0.0f64, |m, s| m.max(s.abs()));
        let scale = self.beta.iter().fold(1.0f64, |m, b| m.max(b.abs()));
        self.steps.push(size);
        let next: Vec<f64> = self.beta.iter().zip(&step).map(|(b, s)| b + s).collect();
        if size <= self.params.tol * scale {
            // As the logistic regression: the final step takes the point within `tol` of the
            // optimum to rounding level; the information is the one at the point evaluated.
            let mut e = estimates(terms, next, &cov, ll, n, events);
            e.iterations = Some(self.steps.len());
            e.convergence = self.steps.clone();
            return Ok(Step::Done(Box::new(e)));
        }
        if self.steps.len() >= self.params.max_iter {
            return Err(AlgoError::Numeric(format!(
                "Newton-Raphson did not converge in {} iterations (last step {size:.3e}, tolerance {:.1e}); raise max_iter, or look for a covariate that orders the event times perfectly (monotone likelihood)",
                self.params.max_iter, self.params.tol
            )));
        }
        if next.iter().any(|b| !b.is_finite() || b.abs() > 1e8) {
            return Err(AlgoError::Numeric(
                "coefficients diverge: a covariate orders the event times perfectly (monotone likelihood), so the estimates do not exist".into(),
            ));
        }
        self.beta = next;
        Ok(Step::Next(self.start()))
    }
}

/// The Newton step and the inverse information. A covariate that does not vary within any risk
/// set (constant, or constant within every stratum) has no information: it is named.
fn newton_step(
    info: &Mat<f64>,
    grad: &[f64],
    terms: &[String],
) -> Result<(Vec<f64>, Mat<f64>), AlgoError> {
    let scale = (0..info.nrows()).fold(0.0f64, |m, j| m.max(info[(j, j)]));
    let none = |v: f64| v.is_nan() || v <= 1e-13 * scale;
    if let Some(j) = (0..info.nrows()).find(|&j| none(info[(j, j)])) {
        return Err(AlgoError::Numeric(format!(
            "covariate `{}` does not vary within the risk sets (it is constant, or constant within every stratum), so its coefficient cannot be estimated; leave it out",
            terms[j]
        )));
    }
    solve_scaled(info, grad, terms).map_err(|e| {
        AlgoError::Numeric(format!(
            "{e} (in the information matrix of the partial likelihood)"
        ))
    })
}

/// Log partial likelihood, its gradient and information matrix, and the events, from the
/// summed sums of every stratum and event time (the reply's layout).
pub fn partial_likelihood(
    sums: &[f64],
    beta: &[f64],
    ties: Ties,
) -> (f64, Vec<f64>, Mat<f64>, f64) {
    let p = beta.len();
    let w = width(p, ties);
    let risk = 1 + p + p * p;
    let (mut ll, mut grad, mut info, mut events) = (0.0, vec![0.0; p], Mat::zeros(p, p), 0.0);
    for at in sums.chunks_exact(w) {
        let d = at[risk];
        if d <= 0.0 {
            continue;
        }
        events += d;
        let xsum = &at[risk + 1..risk + 1 + p];
        ll += xsum.iter().zip(beta).map(|(x, b)| x * b).sum::<f64>();
        grad.iter_mut().zip(xsum).for_each(|(g, x)| *g += x);
        // Breslow: d times the whole risk set; Efron: l = 0..d-1, each less l/d of the ties.
        let shares: Vec<(f64, f64)> = match ties {
            Ties::Breslow => vec![(0.0, d)],
            Ties::Efron => (0..d.round() as usize)
                .map(|l| (l as f64 / d, 1.0))
                .collect(),
        };
        for (c, m) in shares {
            let tied = |j: usize| {
                if c == 0.0 {
                    0.0
                } else {
                    c * at[risk + 1 + p + j]
                }
            };
            let s0 = at[0] - tied(0);
            ll -= m * s0.ln();
            let mean: Vec<f64> = (0..p).map(|j| (at[1 + j] - tied(1 + j)) / s0).collect();
            for j in 0..p {
                grad[j] -= m * mean[j];
                for k in 0..p {
                    let s2 = at[1 + p + j * p + k] - tied(1 + p + j * p + k);
                    info[(j, k)] += m * (s2 / s0 - mean[j] * mean[k]);
                }
            }
        }
    }
    (ll, grad, info, events)
}

/// What a fit reports, from its coefficients and the inverse information: z tests, the normal
/// 95% interval, hazard ratios with their interval (exp of the coefficients' and interval's),
/// the log partial likelihood, rows and events.
pub fn estimates(
    terms: Vec<String>,
    coef: Vec<f64>,
    cov: &Mat<f64>,
    loglik: f64,
    n: f64,
    events: f64,
) -> Estimates {
    let se: Vec<f64> = (0..coef.len()).map(|j| cov[(j, j)].sqrt()).collect();
    let z: Vec<f64> = coef.iter().zip(&se).map(|(b, s)| b / s).collect();
    let mut e = Estimates {
        n: n.round() as usize,
        p: z_pvalues(&z),
        coef,
        se,
        t: z,
        loglik: Some(loglik),
        converged: Some(true),
        cov_type: Some("nonrobust".into()),
        ..Default::default()
    };
    e.add_z_conf_int();
    let list = |v: &[f64]| {
        serde_json::json!({
            "values": v.iter().map(|x| x.exp()).collect::<Vec<_>>(),
            "labels": terms,
        })
    };
    e.named.insert("hazard_ratio".into(), list(&e.coef));
    e.named.insert("hr_low".into(), list(&e.conf_low));
    e.named.insert("hr_high".into(), list(&e.conf_high));
    e.named.insert("events".into(), serde_json::json!(events));
    e.terms = terms;
    e
}

/// The pooled answer by another route: per stratum the rows sorted by time, latest first, the
/// covariates centred at their pooled means and the weights scaled by the stratum's largest
/// exp(x'b), so that one sweep with running sums gives each tie group's risk set; the
/// likelihood, gradient and information are accumulated tie group by tie group, and Newton
/// runs until its step is below 1e-12 relative (statsmodels' reference tolerance).
pub fn pooled(
    config: &AlgorithmConfig,
    params: &CoxParams,
    data: &LocalData,
) -> Result<Estimates, AlgoError> {
    let rows = Rows::of(data, &params.time, &params.event, params.strata.as_deref())?;
    let (n, p) = (data.x.nrows(), data.x.ncols());
    if n == 0 {
        return Err(AlgoError::Data("no rows".into()));
    }
    let mean: Vec<f64> = (0..p)
        .map(|j| data.x.col(j).iter().sum::<f64>() / n as f64)
        .collect();
    let x = Mat::from_fn(n, p, |i, j| data.x[(i, j)] - mean[j]);
    let mut codes: Vec<f64> = rows.group.map_or_else(|| vec![0.0], <[f64]>::to_vec);
    codes.sort_by(f64::total_cmp);
    codes.dedup();
    let strata: Vec<Vec<usize>> = codes
        .iter()
        .map(|&c| {
            let mut r: Vec<usize> = (0..n).filter(|&i| rows.in_group(i, Some(c))).collect();
            r.sort_by(|&a, &b| rows.time[b].total_cmp(&rows.time[a]));
            r
        })
        .collect();
    let events = (0..n).filter(|&i| rows.is_event(i)).count() as f64;
    if events == 0.0 {
        return Err(AlgoError::Data(
            "no events: a Cox regression needs at least one".into(),
        ));
    }
    let terms = config.terms();
    let mut beta = vec![0.0; p];
    for _ in 0..params.max_iter.max(100) {
        crate::sys::cancel::check().map_err(|_| AlgoError::Numeric("cancelled".into()))?;
        let (mut ll, mut grad, mut info) = (0.0, vec![0.0; p], Mat::<f64>::zeros(p, p));
        for order in &strata {
            sweep(
                &x,
                &rows,
                order,
                &beta,
                params.ties,
                &mut ll,
                &mut grad,
                &mut info,
            );
        }
        let (step, cov) = newton_step(&info, &grad, &terms)?;
        let size = step.iter().fold(0.0f64, |m, s| m.max(s.abs()));
        let scale = beta.iter().fold(1.0f64, |m, b| m.max(b.abs()));
        beta.iter_mut().zip(&step).for_each(|(b, s)| *b += s);
        if size <= 1e-12 * scale {
            return Ok(estimates(terms, beta, &cov, ll, n as f64, events));
        }
        if beta.iter().any(|b| !b.is_finite()) {
            break;
        }
    }
    Err(AlgoError::Numeric(
        "pooled Newton-Raphson on the partial likelihood did not converge".into(),
    ))
}

/// One stratum's share of the log partial likelihood, gradient and information, its rows in
/// `order` (latest time first), centred covariates in `x`.
#[allow(clippy::too_many_arguments)]
fn sweep(
    x: &Mat<f64>,
    rows: &Rows,
    order: &[usize],
    beta: &[f64],
    ties: Ties,
    ll: &mut f64,
    grad: &mut [f64],
    info: &mut Mat<f64>,
) {
    let p = beta.len();
    let eta: Vec<f64> = order
        .iter()
        .map(|&i| (0..p).map(|j| x[(i, j)] * beta[j]).sum())
        .collect();
    let top = eta.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    // Running risk-set sums (weights exp(eta - top)) as a vector and a matrix.
    let (mut r0, mut r1, mut r2) = (0.0, vec![0.0; p], Mat::<f64>::zeros(p, p));
    let mut g = 0;
    while g < order.len() {
        // The tie group: every row at this time.
        let t = rows.time[order[g]];
        let end = (g..order.len())
            .find(|&k| rows.time[order[k]] != t)
            .unwrap_or(order.len());
        let (mut e0, mut e1, mut e2, mut d) = (0.0, vec![0.0; p], Mat::<f64>::zeros(p, p), 0.0);
        for k in g..end {
            let i = order[k];
            let w = (eta[k] - top).exp();
            let xi: Vec<f64> = (0..p).map(|j| x[(i, j)]).collect();
            r0 += w;
            for j in 0..p {
                r1[j] += w * xi[j];
                for l in 0..p {
                    r2[(j, l)] += w * xi[j] * xi[l];
                }
            }
            if rows.is_event(i) {
                d += 1.0;
                *ll += eta[k];
                for j in 0..p {
                    grad[j] += xi[j];
                    e1[j] += w * xi[j];
                    for l in 0..p {
                        e2[(j, l)] += w * xi[j] * xi[l];
                    }
                }
                e0 += w;
            }
        }
        if d > 0.0 {
            let parts = match ties {
                Ties::Breslow => 1,
                Ties::Efron => d as usize,
            };
            for l in 0..parts {
                let (c, m) = match ties {
                    Ties::Breslow => (0.0, d),
                    Ties::Efron => (l as f64 / d, 1.0),
                };
                let s0 = r0 - c * e0;
                *ll -= m * (s0.ln() + top);
                let a: Vec<f64> = (0..p).map(|j| (r1[j] - c * e1[j]) / s0).collect();
                for j in 0..p {
                    grad[j] -= m * a[j];
                    for k in 0..p {
                        info[(j, k)] += m * ((r2[(j, k)] - c * e2[(j, k)]) / s0 - a[j] * a[k]);
                    }
                }
            }
        }
        g = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Eight rows with tied event times (two events at 2, a censored row at 2, two events at 5
    /// with one of them in the other stratum) and two covariates.
    fn rows() -> (Mat<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
        let x = [
            [0.5, 1.0],
            [-1.0, 0.0],
            [2.0, 1.0],
            [0.3, 0.0],
            [-0.7, 1.0],
            [1.1, 0.0],
            [0.0, 1.0],
            [-0.2, 0.0],
        ];
        let time = vec![2.0, 2.0, 2.0, 5.0, 5.0, 7.0, 1.0, 9.0];
        let event = vec![1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0];
        let stratum = vec![1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 1.0];
        (Mat::from_fn(8, 2, |i, j| x[i][j]), time, event, stratum)
    }

    fn data(rows: &[usize], strata: bool) -> LocalData {
        let (x, time, event, stratum) = super::tests::rows();
        let pick = |v: &[f64]| rows.iter().map(|&i| v[i]).collect::<Vec<_>>();
        let mut d = LocalData::new(Mat::from_fn(rows.len(), 2, |i, j| x[(rows[i], j)]), None);
        d.aux.insert("t".into(), pick(&time));
        d.aux.insert("e".into(), pick(&event));
        if strata {
            d.aux.insert("s".into(), pick(&stratum));
        }
        d
    }

    fn params(ties: Ties, strata: bool) -> CoxParams {
        let (_, time, event, stratum) = rows();
        let codes: Vec<Option<f64>> = if strata {
            vec![Some(1.0), Some(2.0)]
        } else {
            vec![None]
        };
        let timelines = codes
            .into_iter()
            .map(|code| {
                let mut times: Vec<f64> = (0..8)
                    .filter(|&i| event[i] == 1.0 && code.is_none_or(|c| stratum[i] == c))
                    .map(|i| time[i])
                    .collect();
                times.sort_by(f64::total_cmp);
                times.dedup();
                Timeline { code, times }
            })
            .collect();
        CoxParams {
            time: "t".into(),
            event: "e".into(),
            strata: strata.then(|| "s".into()),
            ties,
            max_iter: 100,
            tol: 1e-10,
            timelines,
        }
    }

    /// The log partial likelihood by its definition, row by row.
    fn by_definition(beta: &[f64], ties: Ties, strata: bool) -> f64 {
        let (x, time, event, stratum) = rows();
        let eta = |i: usize| x[(i, 0)] * beta[0] + x[(i, 1)] * beta[1];
        let same = |i: usize, j: usize| !strata || stratum[i] == stratum[j];
        let mut ll = 0.0;
        let mut seen: Vec<(f64, f64)> = Vec::new();
        for i in (0..8).filter(|&i| event[i] == 1.0) {
            let key = (time[i], if strata { stratum[i] } else { 0.0 });
            if seen.contains(&key) {
                continue;
            }
            seen.push(key);
            let tied: Vec<usize> = (0..8)
                .filter(|&j| event[j] == 1.0 && time[j] == time[i] && same(i, j))
                .collect();
            let risk: f64 = (0..8)
                .filter(|&j| time[j] >= time[i] && same(i, j))
                .map(|j| eta(j).exp())
                .sum();
            let own: f64 = tied.iter().map(|&j| eta(j).exp()).sum();
            let d = tied.len() as f64;
            ll += tied.iter().map(|&j| eta(j)).sum::<f64>();
            for l in 0..tied.len() {
                let share = if ties == Ties::Efron {
                    l as f64 / d
                } else {
                    0.0
                };
                ll -= (risk - share * own).ln();
            }
        }
        ll
    }

    fn config() -> AlgorithmConfig {
        let mut c = AlgorithmConfig::ols(&["a", "b"]);
        c.intercept = false;
        c.target = None;
        c
    }

    /// Two sites' sums give the definition's likelihood, a gradient that matches its
    /// central differences, and the pooled sweep's likelihood, gradient and information.
    #[test]
    fn cox_sums_give_the_partial_likelihood_by_definition() {
        let beta = [0.4, -0.3];
        for ties in [Ties::Breslow, Ties::Efron] {
            for strata in [false, true] {
                let p = params(ties, strata);
                let cox = Cox::new(config(), p.clone());
                let request = Request {
                    beta: beta.to_vec(),
                    // Any centre: the likelihood and its derivatives do not change.
                    center: vec![0.7, -0.2],
                };
                let a = cox.local(&request, &data(&[0, 3, 6], strata)).unwrap();
                let b = cox
                    .local(&request, &data(&[1, 2, 4, 5, 7], strata))
                    .unwrap();
                let sums: Vec<f64> = a.sums.iter().zip(&b.sums).map(|(x, y)| x + y).collect();
                let (ll, grad, info, events) = partial_likelihood(&sums, &beta, ties);
                let what = format!("{ties:?} strata {strata}");
                assert_eq!(events, 5.0, "{what}");
                let want = by_definition(&beta, ties, strata);
                assert!((ll - want).abs() < 1e-13, "{what}: {ll} vs {want}");
                for j in 0..2 {
                    let h = 1e-6;
                    let mut up = beta;
                    let mut down = beta;
                    up[j] += h;
                    down[j] -= h;
                    let numeric = (by_definition(&up, ties, strata)
                        - by_definition(&down, ties, strata))
                        / (2.0 * h);
                    assert!((grad[j] - numeric).abs() < 1e-8, "{what}: grad[{j}]");
                }
                // The pooled route on all rows, centred: the same likelihood and derivatives.
                let all = data(&[0, 1, 2, 3, 4, 5, 6, 7], strata);
                let rows = Rows::of(&all, "t", "e", p.strata.as_deref()).unwrap();
                let mean: Vec<f64> = (0..2)
                    .map(|j| all.x.col(j).iter().sum::<f64>() / 8.0)
                    .collect();
                let xc = Mat::from_fn(8, 2, |i, j| all.x[(i, j)] - mean[j]);
                let (mut pll, mut pgrad, mut pinfo) = (0.0, vec![0.0; 2], Mat::zeros(2, 2));
                for code in if strata { vec![1.0, 2.0] } else { vec![0.0] } {
                    let mut order: Vec<usize> =
                        (0..8).filter(|&i| rows.in_group(i, Some(code))).collect();
                    order.sort_by(|&a, &b| rows.time[b].total_cmp(&rows.time[a]));
                    sweep(
                        &xc, &rows, &order, &beta, ties, &mut pll, &mut pgrad, &mut pinfo,
                    );
                }
                assert!((pll - ll).abs() < 1e-13, "{what}: pooled {pll} vs {ll}");
                for j in 0..2 {
                    assert!((pgrad[j] - grad[j]).abs() < 1e-13, "{what}");
                    for k in 0..2 {
                        assert!((pinfo[(j, k)] - info[(j, k)]).abs() < 1e-13, "{what}");
                    }
                }
            }
        }
    }

    /// Efron's correction vanishes without ties: both give the same likelihood.
    #[test]
    fn cox_efron_equals_breslow_without_ties() {
        let beta = [0.1, 0.2];
        // One event per time: rows 0, 3 and 5 (times 2, 5 and 7), the rest censored.
        let d = data(&[0, 2, 3, 5, 6, 7], false);
        let ll = |ties: Ties| {
            let mut p = params(ties, false);
            p.timelines = vec![Timeline {
                code: None,
                times: vec![2.0, 5.0, 7.0],
            }];
            let request = Request {
                beta: beta.to_vec(),
                center: Vec::new(),
            };
            let r = Cox::new(config(), p).local(&request, &d).unwrap();
            let (ll, _, _, events) = partial_likelihood(&r.sums, &beta, ties);
            assert_eq!(events, 3.0);
            ll
        };
        assert!((ll(Ties::Efron) - ll(Ties::Breslow)).abs() < 1e-15);
    }
}
