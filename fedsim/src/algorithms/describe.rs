//! Federated descriptive statistics of numeric columns: per column the count, mean, standard
//! deviation (ddof 1) and quantiles, the correlation matrix, and on request min and max.
//! Every reply is a vector of sums, so all of it runs under secure aggregation.
//!
//! Rounds:
//! 1. counts and sums per column: the means m;
//! 2. centred sums Σ (x - m) and cross products Σ (x_j - m_j)(x_k - m_k): the two-pass
//!    corrected algorithm, mean = m + Σ (x - m) / n and S_jk = Σ (x_j - m_j)(x_k - m_k) -
//!    Σ (x_j - m_j) Σ (x_k - m_k) / n, stable where Σ x² - n m² cancels; sd = √(S_jj / (n - 1)),
//!    corr = S_jk / √(S_jj S_kk);
//! 3. (from round 2 on, alongside) quantiles by federated bisection. The quantile of
//!    probability q is numpy's `inverted_cdf` (R's type 1): the k-th smallest value, k =
//!    max(1, ⌈q n⌉), i.e. the smallest value v with at least q n values at or below it. Each
//!    round the coordinator proposes 15 candidates strictly inside each open bracket (lo, hi],
//!    evenly spaced over the doubles between them (in their order as integers, so the search
//!    covers every double in 16 rounds at most), and each site sends how many of its values are
//!    at or below each: a sum. The bracket keeps count(≤ lo) < k ≤ count(≤ hi); when lo and hi
//!    are adjacent doubles, hi is the k-th value exactly. With `quantile_tol` > 0 the search
//!    stops once hi - lo ≤ quantile_tol x sd, and hi is within that of the value (the result
//!    states the tolerance). Min and max are the quantiles k = 1 and k = n.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{AlgoError, AlgorithmConfig, Estimates, Federated, LocalData, Step, Values};

/// describe's own options, defaults filled in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DescribeParams {
    /// Probabilities of the quantiles, each in [0, 1].
    pub quantiles: Vec<f64>,
    /// The bracket's width at which bisection stops, relative to the column's sd (0: exact).
    pub quantile_tol: f64,
    /// Also find and report min and max.
    pub extremes: bool,
}

/// Candidates per open bracket and round: 4 bits of the 64 a double has.
const CANDIDATES: u128 = 15;

/// A double's place in the order of doubles, as an integer (monotone: a < b iff key(a) <
/// key(b), for numbers that are not NaN; -0 sits just below +0).
pub fn key(x: f64) -> u64 {
    let b = x.to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | (1 << 63)
    }
}

/// The double at a place in that order.
pub fn from_key(k: u64) -> f64 {
    if k >> 63 == 1 {
        f64::from_bits(k & !(1 << 63))
    } else {
        f64::from_bits(!k)
    }
}

/// Which value of a sorted column each searched number is: the k-th smallest (1-based).
pub fn rank(q: f64, n: usize) -> usize {
    // numpy's inverted_cdf: the smallest index with at least q n values at or below it.
    ((q * n as f64).ceil() as usize).clamp(1, n.max(1))
}

/// The ranks searched per column: the quantiles', then (with extremes) 1 and n.
fn ranks(p: &DescribeParams, n: usize) -> Vec<usize> {
    let mut r: Vec<usize> = p.quantiles.iter().map(|q| rank(*q, n)).collect();
    if p.extremes {
        r.extend([1, n]);
    }
    r
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// Counts and sums per column.
    Moments,
    /// With `centre`: the centred sums and cross products about it; and for each (column,
    /// candidates) the number of values at or below each candidate.
    Sums {
        centre: Option<Vec<f64>>,
        candidates: Vec<(usize, Vec<f64>)>,
    },
}

/// Every reply is a flat vector of sums in the layout the request implies.
#[derive(Debug, Serialize, Deserialize)]
pub struct Reply {
    pub sums: Vec<f64>,
}

/// One searched value: its column and rank, and the bracket (lo, hi] as keys.
#[derive(Debug, Clone)]
struct Bracket {
    column: usize,
    rank: usize,
    lo: u64,
    hi: u64,
}

impl Bracket {
    fn open(&self, tol: f64, sd: Option<f64>) -> bool {
        if self.hi - self.lo <= 1 {
            return false;
        }
        match sd {
            Some(sd) if tol > 0.0 => from_key(self.hi) - from_key(self.lo) > tol * sd,
            _ => true,
        }
    }

    fn candidates(&self) -> Vec<f64> {
        let (lo, hi) = (self.lo as u128, self.hi as u128);
        let m = CANDIDATES.min(hi - lo - 1);
        (1..=m)
            .map(|i| from_key((lo + (hi - lo) * i / (m + 1)) as u64))
            .collect()
    }
}

pub struct Describe {
    config: AlgorithmConfig,
    params: DescribeParams,
    n: usize,
    centre: Vec<f64>,
    mean: Vec<f64>,
    /// Centred cross products S, d x d, once round 2 is in.
    s: Option<Vec<f64>>,
    brackets: Vec<Bracket>,
    /// The brackets asked about in the last request, in its order.
    asked: Vec<usize>,
}

impl Describe {
    pub fn new(config: AlgorithmConfig, params: DescribeParams) -> Self {
        Describe {
            config,
            params,
            n: 0,
            centre: Vec::new(),
            mean: Vec::new(),
            s: None,
            brackets: Vec::new(),
            asked: Vec::new(),
        }
    }

    fn d(&self) -> usize {
        self.config.features.len()
    }

    fn sd(&self) -> Option<Vec<f64>> {
        let (d, n) = (self.d(), self.n as f64);
        self.s
            .as_ref()
            .map(|s| (0..d).map(|j| (s[j * d + j] / (n - 1.0)).sqrt()).collect())
    }

    /// The next request: the open brackets' candidates (and the centre, in round 2).
    fn next(&mut self, centre: bool) -> Step<Request> {
        let sd = self.sd();
        let tol = self.params.quantile_tol;
        self.asked = (0..self.brackets.len())
            .filter(|&i| {
                let b = &self.brackets[i];
                b.open(tol, sd.as_ref().map(|s| s[b.column]))
            })
            .collect();
        Step::Next(Request::Sums {
            centre: centre.then(|| self.centre.clone()),
            candidates: self
                .asked
                .iter()
                .map(|&i| (self.brackets[i].column, self.brackets[i].candidates()))
                .collect(),
        })
    }

    fn result(&self) -> Result<Estimates, AlgoError> {
        let d = self.d();
        let s = self
            .s
            .as_ref()
            .ok_or_else(|| AlgoError::Protocol("no centred sums".into()))?;
        let per: Vec<usize> = ranks(&self.params, self.n);
        let found: Vec<Vec<f64>> = (0..d)
            .map(|j| {
                (0..per.len())
                    .map(|t| {
                        let v = from_key(self.brackets[j * per.len() + t].hi);
                        // -0 and +0 are one value.
                        if v == 0.0 {
                            0.0
                        } else {
                            v
                        }
                    })
                    .collect()
            })
            .collect();
        finish(
            &self.config.features,
            &self.params,
            self.n,
            &self.mean,
            s,
            &found,
            Some(self.params.quantile_tol),
        )
    }
}

/// The result from the pieces: `n`, then per column `count`, `mean`, `sd`, `quantiles` (with
/// their probabilities as column labels), `min` and `max` (with extremes), and `corr`.
/// `searched[j]` holds column j's searched values in [`ranks`] order.
fn finish(
    terms: &[String],
    p: &DescribeParams,
    n: usize,
    mean: &[f64],
    s: &[f64],
    searched: &[Vec<f64>],
    quantile_tol: Option<f64>,
) -> Result<Estimates, AlgoError> {
    let d = terms.len();
    if n < 2 {
        return Err(AlgoError::Data(format!(
            "{n} complete row(s): a standard deviation needs at least 2"
        )));
    }
    if let Some(j) = (0..d).find(|&j| s[j * d + j] <= 0.0) {
        return Err(AlgoError::Numeric(format!(
            "column {:?} is constant: its correlations are not defined (leave it out of the features)",
            terms[j]
        )));
    }
    let sd: Vec<f64> = (0..d)
        .map(|j| (s[j * d + j] / (n as f64 - 1.0)).sqrt())
        .collect();
    if let Some(j) = (0..d).find(|&j| !(mean[j].is_finite() && sd[j].is_finite())) {
        return Err(AlgoError::Numeric(format!(
            "column {:?}: its sums of squares overflow (mean {}, sd {}); rescale it",
            terms[j], mean[j], sd[j]
        )));
    }
    let corr: Vec<Vec<f64>> = (0..d)
        .map(|j| {
            (0..d)
                .map(|k| (s[j * d + k] / (s[j * d + j] * s[k * d + k]).sqrt()).clamp(-1.0, 1.0))
                .collect()
        })
        .collect();
    let nq = p.quantiles.len();
    let probs: Vec<String> = p.quantiles.iter().map(|q| q.to_string()).collect();
    let mut named = BTreeMap::new();
    named.insert("n".to_string(), json!(n));
    named.insert(
        "count".to_string(),
        json!({"labels": terms, "values": vec![n; d]}),
    );
    named.insert("mean".to_string(), json!({"labels": terms, "values": mean}));
    named.insert("sd".to_string(), json!({"labels": terms, "values": sd}));
    if nq > 0 {
        let q: Vec<&[f64]> = searched.iter().map(|v| &v[..nq]).collect();
        named.insert(
            "quantiles".to_string(),
            json!({"labels": [terms, probs], "values": q}),
        );
    }
    if p.extremes {
        let at = |i: usize| searched.iter().map(|v| v[i]).collect::<Vec<f64>>();
        named.insert(
            "min".to_string(),
            json!({"labels": terms, "values": at(nq)}),
        );
        named.insert(
            "max".to_string(),
            json!({"labels": terms, "values": at(nq + 1)}),
        );
    }
    named.insert("corr".to_string(), json!({"labels": terms, "values": corr}));
    Ok(Estimates {
        n,
        terms: terms.to_vec(),
        analysis: Some("describe".into()),
        quantile_tol,
        named,
        ..Default::default()
    })
}

impl Federated for Describe {
    type Request = Request;
    type Reply = Reply;

    fn local(&self, request: &Request, data: &LocalData) -> Result<Reply, AlgoError> {
        let (n, d) = (data.x.nrows(), data.x.ncols());
        if d != self.d() {
            return Err(AlgoError::Data(format!(
                "{d} columns, expected {}",
                self.d()
            )));
        }
        let mut sums = Vec::new();
        match request {
            Request::Moments => {
                sums.extend(std::iter::repeat_n(n as f64, d));
                sums.extend((0..d).map(|j| data.x.col(j).iter().sum::<f64>()));
            }
            Request::Sums { centre, candidates } => {
                if let Some(m) = centre {
                    if m.len() != d {
                        return Err(AlgoError::Protocol(format!(
                            "{} means, expected {d}",
                            m.len()
                        )));
                    }
                    let dev = |i: usize, j: usize| data.x[(i, j)] - m[j];
                    sums.extend((0..d).map(|j| (0..n).map(|i| dev(i, j)).sum::<f64>()));
                    for j in 0..d {
                        for k in 0..d {
                            sums.push((0..n).map(|i| dev(i, j) * dev(i, k)).sum());
                        }
                    }
                }
                for (j, cands) in candidates {
                    if *j >= d {
                        return Err(AlgoError::Protocol(format!("no column {j}")));
                    }
                    let mut col: Vec<f64> = data.x.col(*j).iter().copied().collect();
                    col.sort_by(f64::total_cmp);
                    // Values at or below c: -0 and +0 count alike, as `<=` has them.
                    sums.extend(cands.iter().map(|c| col.partition_point(|v| v <= c) as f64));
                }
            }
        }
        Ok(Reply { sums })
    }

    fn start(&mut self) -> Request {
        Request::Moments
    }

    /// The rows of each column, and each count of values at or below a candidate (with the
    /// count above it, as telling).
    fn counts(
        &self,
        request: &Request,
        reply: &Reply,
        data: &LocalData,
    ) -> Vec<(&'static str, f64)> {
        let (n, d) = (data.rows() as f64, self.d());
        let mut out = vec![("the site's number of rows", n)];
        if let Request::Sums { centre, .. } = request {
            let skip = if centre.is_some() { d + d * d } else { 0 };
            for &c in reply.sums.iter().skip(skip) {
                out.push(("the rows at or below a quantile's candidate value", c));
                out.push(("the rows above a quantile's candidate value", n - c));
            }
        }
        out
    }

    fn values(reply: &Reply) -> Vec<f64> {
        reply.sums.clone()
    }

    fn with_values(t: &Reply, v: &mut Values) -> Result<Reply, AlgoError> {
        Ok(Reply {
            sums: v.take(t.sums.len())?,
        })
    }

    fn aggregate(&mut self, replies: Vec<Reply>) -> Result<Step<Request>, AlgoError> {
        let d = self.d();
        let total = super::sum_replies::<Describe>(&replies)?.sums;
        let mut v = Values::new(&total);
        if self.centre.is_empty() {
            // Round 1: counts and sums.
            let counts: Vec<u64> = (0..d).map(|_| v.count()).collect::<Result<_, _>>()?;
            let sums = v.take(d)?;
            v.done()?;
            let n = if self.config.noisy {
                // Each column's count has its own noise: their mean is the better estimate.
                (counts.iter().sum::<u64>() as f64 / d.max(1) as f64).round() as usize
            } else {
                counts.first().copied().unwrap_or(0) as usize
            };
            if !self.config.noisy && counts.iter().any(|c| *c as usize != n) {
                return Err(AlgoError::Protocol(format!(
                    "columns counted differently: {counts:?}"
                )));
            }
            if n < 2 {
                return Err(AlgoError::Data(format!(
                    "{n} complete row(s): a standard deviation needs at least 2"
                )));
            }
            self.n = n;
            self.centre = sums.iter().map(|s| s / n as f64).collect();
            let per = ranks(&self.params, n);
            self.brackets = (0..d)
                .flat_map(|column| {
                    per.iter().map(move |&rank| Bracket {
                        column,
                        rank,
                        lo: key(f64::NEG_INFINITY),
                        hi: key(f64::INFINITY),
                    })
                })
                .collect();
            return Ok(self.next(true));
        }
        if self.s.is_none() {
            let n = self.n as f64;
            let dev = v.take(d)?;
            let cross = v.take(d * d)?;
            self.mean = (0..d).map(|j| self.centre[j] + dev[j] / n).collect();
            self.s = Some(
                (0..d * d)
                    .map(|i| cross[i] - dev[i / d] * dev[i % d] / n)
                    .collect(),
            );
        }
        for &i in &self.asked.clone() {
            let b = &mut self.brackets[i];
            let cands = b.candidates();
            let counts: Vec<u64> = (0..cands.len())
                .map(|_| v.count())
                .collect::<Result<_, _>>()?;
            for (c, count) in cands.iter().zip(counts) {
                if (count as usize) < b.rank {
                    b.lo = b.lo.max(key(*c));
                } else {
                    b.hi = b.hi.min(key(*c));
                }
            }
        }
        v.done()?;
        match self.next(false) {
            Step::Next(Request::Sums { candidates, .. }) if candidates.is_empty() => {
                Ok(Step::Done(Box::new(self.result()?)))
            }
            step => Ok(step),
        }
    }
}

/// The pooled statistics, by a different route: means and centred cross products by Welford's
/// one-pass updates, quantiles, min and max by sorting each column and taking the k-th value.
pub fn pooled(
    config: &AlgorithmConfig,
    params: &DescribeParams,
    data: &LocalData,
) -> Result<Estimates, AlgoError> {
    let (n, d) = (data.x.nrows(), data.x.ncols());
    let mut mean = vec![0.0; d];
    let mut s = vec![0.0; d * d];
    for i in 0..n {
        let w = (i + 1) as f64;
        let before: Vec<f64> = (0..d).map(|j| data.x[(i, j)] - mean[j]).collect();
        for j in 0..d {
            mean[j] += before[j] / w;
        }
        for j in 0..d {
            for k in 0..d {
                s[j * d + k] += before[j] * (data.x[(i, k)] - mean[k]);
            }
        }
    }
    let per = ranks(params, n);
    let searched: Vec<Vec<f64>> = (0..d)
        .map(|j| {
            let mut col: Vec<f64> = data.x.col(j).iter().copied().collect();
            col.sort_by(f64::total_cmp);
            per.iter()
                .map(|&r| col.get(r - 1).copied().unwrap_or(f64::NAN))
                .collect()
        })
        .collect();
    finish(&config.features, params, n, &mean, &s, &searched, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_order_doubles() {
        let xs = [
            f64::NEG_INFINITY,
            -1e300,
            -1.0,
            -f64::MIN_POSITIVE,
            -0.0,
            0.0,
            5e-324,
            1.0,
            1.0000000000000002,
            f64::MAX,
            f64::INFINITY,
        ];
        for w in xs.windows(2) {
            assert!(key(w[0]) < key(w[1]), "{} {}", w[0], w[1]);
        }
        for x in xs {
            assert_eq!(from_key(key(x)).to_bits(), x.to_bits());
        }
        assert_eq!(key(1.0) + 1, key(1.0000000000000002));
    }

    /// The federated rounds, run by hand over three sites, find every quantile the pooled sort
    /// finds: ties, negative numbers, zeros of both signs, tiny and huge values.
    #[test]
    fn bisection_finds_the_sorted_values_bit_for_bit() {
        use faer::Mat;
        let values: Vec<f64> = (0..97)
            .map(|i| match i % 7 {
                0 => -0.0,
                1 => 0.0,
                2 => 3.5,
                3 => -1e-300 * i as f64,
                4 => 1e100 / (i as f64 + 1.0),
                5 => (i as f64 * 0.37).sin(),
                _ => 3.5,
            })
            .collect();
        let other: Vec<f64> = (0..97).map(|i| (i * i % 13) as f64).collect();
        let site = |r: std::ops::Range<usize>| {
            LocalData::new(
                Mat::from_fn(r.len(), 2, |i, j| {
                    if j == 0 {
                        values[r.start + i]
                    } else {
                        other[r.start + i]
                    }
                }),
                None,
            )
        };
        let sites = [site(0..30), site(30..31), site(31..97)];
        let mut config = AlgorithmConfig::ols(&["a", "b"]);
        config.intercept = false;
        config.target = None;
        let params = DescribeParams {
            quantiles: vec![0.0, 0.01, 0.1, 0.25, 0.5, 0.7, 0.99, 1.0],
            quantile_tol: 0.0,
            extremes: true,
        };
        let mut d = Describe::new(config.clone(), params.clone());
        let mut request = d.start();
        let mut rounds = 0;
        let fed = loop {
            rounds += 1;
            let replies = sites
                .iter()
                .map(|s| d.local(&request, s).unwrap())
                .collect();
            match d.aggregate(replies).unwrap() {
                Step::Next(r) => request = r,
                Step::Done(e) => break e,
            }
        };
        assert!(rounds <= 18, "{rounds} rounds");
        let all = site(0..97);
        let pooled = pooled(&config, &params, &all).unwrap();
        for k in ["quantiles", "min", "max", "count"] {
            assert_eq!(fed.named[k], pooled.named[k], "{k}");
        }
        let close = |k: &str| {
            let f = super::super::external::flatten(k, &fed.named[k]);
            let p = super::super::external::flatten(k, &pooled.named[k]);
            for (a, b) in f.iter().zip(&p) {
                assert!(
                    (a.1 - b.1).abs() <= 1e-12 * b.1.abs().max(1.0),
                    "{k}: {a:?} {b:?}"
                );
            }
        };
        close("sd");
        close("corr");
    }

    #[test]
    fn ranks_are_numpys_inverted_cdf() {
        // numpy.quantile(range(1, 443), [0.25, 0.5, 0.75], method="inverted_cdf") = 111, 221, 332.
        assert_eq!(rank(0.25, 442), 111);
        assert_eq!(rank(0.5, 442), 221);
        assert_eq!(rank(0.75, 442), 332);
        assert_eq!(rank(0.0, 442), 1);
        assert_eq!(rank(1.0, 442), 442);
    }
}
