//! The noise a site adds to a reply. A reply is a sum of per-row terms; under `[privacy.dp]` the
//! site clips its values to the bounds, clips each row's term to the norm `clip` (L2 for the
//! Gaussian mechanism, L1 for Laplace), sums, and adds noise scaled to `clip`. Adding or
//! removing one record then moves the sum by at most `clip`, whatever the algorithm: that is
//! the sensitivity, and it holds by construction, not by an algorithm's own analysis.
//!
//! `clip` is public: the largest norm of one row's term over a grid on the bounds (every bounded
//! column at its lo, its hi and, while the grid stays small, points between; each category at
//! each of its levels), at the round's request. For products of bounded columns the corners
//! hold the largest term, so no row of bounded data is clipped; a term that peaks inside the
//! box (a logistic weight) is seen at the grid's points, and a row beyond them is clipped,
//! which biases: the bias is in the prediction.

use std::collections::BTreeMap;

use faer::Mat;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::algorithms::{AlgoError, LocalData, Runner};
use crate::data::design::Design;
use crate::scenario::Mechanism;

use super::accountant::Charge;

/// The most one-row terms evaluated to find `clip` (corners times level patterns).
pub const MAX_CORNERS: usize = 1 << 16;

/// What a site clips an analysis's values and rows to.
#[derive(Debug, Clone)]
pub struct Clipping {
    /// Per design column: its bounds, or None for a category's indicator (0 or 1).
    x: Vec<Option<[f64; 2]>>,
    /// How many indicator columns each category has (they come first).
    groups: Vec<usize>,
    y: Option<[f64; 2]>,
    aux: Vec<(String, [f64; 2])>,
    mechanism: Mechanism,
}

/// The noise one release carried: the mechanism, the sensitivity and the noise's scale (σ or
/// b) on the weighted scale (see [`Scaling`]), and the round's cost (ρ or ε).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Noise {
    pub mechanism: Mechanism,
    pub clip: f64,
    pub scale: f64,
    pub cost: f64,
}

impl Clipping {
    /// The clipping of an analysis of `design`: every numeric column it reads needs bounds.
    pub fn new(
        design: &Design,
        bounds: &BTreeMap<String, [f64; 2]>,
        mechanism: Mechanism,
    ) -> Result<Clipping, String> {
        let bound = |c: &str| {
            bounds.get(c).copied().ok_or_else(|| {
                format!("column {c:?} has no bounds in [privacy.dp] bounds, and the noise is scaled to them")
            })
        };
        let groups = design.indicator_groups();
        let indicators: usize = groups.iter().sum();
        let mut x: Vec<Option<[f64; 2]>> = vec![None; indicators];
        for c in &design.numeric {
            x.push(Some(bound(c)?));
        }
        let y = design.target.as_deref().map(bound).transpose()?;
        let aux = design
            .aux
            .iter()
            .map(|c| bound(c).map(|b| (c.clone(), b)))
            .collect::<Result<_, _>>()?;
        let c = Clipping {
            x,
            groups,
            y,
            aux,
            mechanism,
        };
        if c.corners() > MAX_CORNERS {
            return Err(format!(
                "{} bounded columns and the categories' levels make {} corners to scale the noise to, more than {MAX_CORNERS}",
                c.bounded(),
                c.corners()
            ));
        }
        Ok(c)
    }

    fn bounded(&self) -> usize {
        self.x.iter().flatten().count() + usize::from(self.y.is_some()) + self.aux.len()
    }

    fn patterns(&self) -> usize {
        self.groups
            .iter()
            .fold(1usize, |p, g| p.saturating_mul(g + 1))
    }

    /// Points per bounded column on the grid `clip` is found over: both bounds and, while the
    /// grid stays within [`MAX_CORNERS`], points between them (a term that peaks inside the
    /// box, as a logistic weight does where the linear predictor is 0, is then seen).
    /// The target stays at its bounds (a 0/1 target has no value between).
    fn levels(&self) -> usize {
        let inner = (self.bounded() - usize::from(self.y.is_some())) as u32;
        let ends = if self.y.is_some() { 2 } else { 1 };
        [5usize, 3, 2]
            .into_iter()
            .find(|l| {
                l.checked_pow(inner)
                    .and_then(|g| g.checked_mul(ends * self.patterns()))
                    .is_some_and(|g| g <= MAX_CORNERS)
            })
            .unwrap_or(2)
    }

    /// How many one-row terms finding `clip` evaluates.
    pub fn corners(&self) -> usize {
        let inner = (self.bounded() - usize::from(self.y.is_some())) as u32;
        self.levels()
            .checked_pow(inner)
            .unwrap_or(usize::MAX)
            .saturating_mul(if self.y.is_some() { 2 } else { 1 })
            .saturating_mul(self.patterns())
    }

    /// Every value into its column's bounds (what the site computes on from then on).
    pub fn clip_data(&self, data: &mut LocalData) {
        for (j, b) in self.x.iter().enumerate() {
            if let (Some([lo, hi]), true) = (b, j < data.x.ncols()) {
                for i in 0..data.x.nrows() {
                    data.x[(i, j)] = data.x[(i, j)].clamp(*lo, *hi);
                }
            }
        }
        if let (Some([lo, hi]), Some(y)) = (self.y, data.y.as_mut()) {
            y.iter_mut().for_each(|v| *v = v.clamp(lo, hi));
        }
        for (c, [lo, hi]) in &self.aux {
            if let Some(v) = data.aux.get_mut(c) {
                v.iter_mut().for_each(|v| *v = v.clamp(*lo, *hi));
            }
        }
    }

    fn norm(&self, v: &[f64]) -> f64 {
        match self.mechanism {
            Mechanism::Gaussian => v.iter().map(|x| x * x).sum::<f64>().sqrt(),
            Mechanism::Laplace => v.iter().map(|x| x.abs()).sum(),
        }
    }

    /// The scaling at this request: each number's largest one-row term at the corners, and
    /// the largest norm of a term so weighted.
    pub fn scaling(&self, algorithm: &dyn Runner, request: &[u8]) -> Result<Scaling, AlgoError> {
        let terms = self.corner_terms(algorithm, request)?;
        if terms.iter().flatten().any(|v| !v.is_finite()) {
            // An exposure or a log link at a bound of 0, say: no noise can cover an infinity.
            return Err(AlgoError::Data(
                "a row at the [privacy.dp] bounds would release a number that is not finite (an exposure or a log at 0?): narrow the bounds".into(),
            ));
        }
        let width = terms.first().map_or(0, Vec::len);
        let mut weights = vec![0.0f64; width];
        for t in &terms {
            weights
                .iter_mut()
                .zip(t)
                .for_each(|(w, v)| *w = w.max(v.abs()));
        }
        let clip = terms
            .iter()
            .map(|t| self.norm(&weigh(t, &weights)))
            .fold(0.0f64, f64::max);
        Ok(Scaling { weights, clip })
    }

    /// One row's term at every corner of the bounds.
    fn corner_terms(
        &self,
        algorithm: &dyn Runner,
        request: &[u8],
    ) -> Result<Vec<Vec<f64>>, AlgoError> {
        let d = self.x.len();
        let numeric: Vec<usize> = (0..d).filter(|&j| self.x[j].is_some()).collect();
        let levels = self.levels();
        let inner = (numeric.len() + self.aux.len()) as u32;
        let ends = if self.y.is_some() { 2 } else { 1 };
        let mut out = Vec::new();
        let mut row = vec![0.0; d];
        for point in 0..levels.pow(inner) * ends {
            let at = |k: usize, [lo, hi]: [f64; 2]| {
                let step = point / levels.pow(k as u32) % levels;
                lo + (hi - lo) * step as f64 / (levels - 1) as f64
            };
            for (k, &j) in numeric.iter().enumerate() {
                row[j] = at(k, self.x[j].expect("numeric"));
            }
            let aux: BTreeMap<String, Vec<f64>> = self
                .aux
                .iter()
                .enumerate()
                .map(|(i, (c, b))| (c.clone(), vec![at(numeric.len() + i, *b)]))
                .collect();
            let y = self.y.map(|[lo, hi]| {
                if point / levels.pow(inner) == 1 {
                    hi
                } else {
                    lo
                }
            });
            for pattern in 0..self.patterns() {
                // Each category at none (its reference level) or one of its indicators.
                let (mut p, mut start) = (pattern, 0);
                for &g in &self.groups {
                    let pick = p % (g + 1);
                    p /= g + 1;
                    for i in 0..g {
                        row[start + i] = f64::from(u8::from(pick == i + 1));
                    }
                    start += g;
                }
                let one = LocalData {
                    x: Mat::from_fn(1, d, |_, j| row[j]),
                    y: y.map(|v| vec![v]),
                    aux: aux.clone(),
                };
                out.push(algorithm.split(&algorithm.local(request, &one)?)?.1);
            }
        }
        Ok(out)
    }

    /// The site's reply with each row's weighted term clipped to `scaling.clip`: its shape,
    /// and its numbers on the weighted scale.
    pub fn clipped_sum(
        &self,
        algorithm: &dyn Runner,
        request: &[u8],
        data: &LocalData,
        scaling: &Scaling,
    ) -> Result<(Vec<u8>, Vec<f64>), AlgoError> {
        let (shape, values) = algorithm.split(&algorithm.local(request, data)?)?;
        if values.len() != scaling.weights.len() {
            return Err(AlgoError::Protocol(
                "the site's reply has another shape than one row's".into(),
            ));
        }
        let mut total = vec![0.0; values.len()];
        for i in 0..data.rows() {
            let one = LocalData {
                x: Mat::from_fn(1, data.x.ncols(), |_, j| data.x[(i, j)]),
                y: data.y.as_ref().map(|y| vec![y[i]]),
                aux: data
                    .aux
                    .iter()
                    .map(|(c, v)| (c.clone(), vec![v[i]]))
                    .collect(),
            };
            let term = weigh(
                &algorithm.split(&algorithm.local(request, &one)?)?.1,
                &scaling.weights,
            );
            let norm = self.norm(&term);
            let shrink = if norm > scaling.clip && norm > 0.0 {
                scaling.clip / norm
            } else {
                1.0
            };
            total
                .iter_mut()
                .zip(&term)
                .for_each(|(t, v)| *t += v * shrink);
        }
        Ok((shape, total))
    }

    /// The site's reply as it leaves under the mechanism: rows clipped, summed, noise of the
    /// charged round's scale added on the weighted scale, and the weights put back.
    pub fn release(
        &self,
        algorithm: &dyn Runner,
        request: &[u8],
        data: &LocalData,
        charge: Charge,
        rng: &mut impl Rng,
    ) -> Result<(Vec<u8>, Noise), AlgoError> {
        let scaling = self.scaling(algorithm, request)?;
        let (shape, mut values) = self.clipped_sum(algorithm, request, data, &scaling)?;
        let scale = charge.scale(scaling.clip);
        for (v, w) in values.iter_mut().zip(&scaling.weights) {
            *v = (*v + scale * draw(self.mechanism, rng)) * w;
        }
        Ok((
            algorithm.join(&shape, &values)?,
            Noise {
                mechanism: self.mechanism,
                clip: scaling.clip,
                scale,
                cost: charge.cost,
            },
        ))
    }

    /// The sum of the rows' terms clipped as [`Clipping::release`] clips them, without noise.
    pub fn noiseless(
        &self,
        algorithm: &dyn Runner,
        request: &[u8],
        data: &LocalData,
    ) -> Result<Vec<u8>, AlgoError> {
        let scaling = self.scaling(algorithm, request)?;
        let (shape, values) = self.clipped_sum(algorithm, request, data, &scaling)?;
        let values: Vec<f64> = values
            .iter()
            .zip(&scaling.weights)
            .map(|(v, w)| v * w)
            .collect();
        algorithm.join(&shape, &values)
    }
}

/// How a round's numbers are put on one scale before they are clipped and noised: each
/// divided by its largest one-row term (`weights`, public: from the bounds and the request),
/// so that every statistic gets noise in proportion to its own range (a sum of squares of the
/// target does not drown a count); `clip` is the sensitivity on that scale.
#[derive(Debug, Clone, PartialEq)]
pub struct Scaling {
    pub weights: Vec<f64>,
    pub clip: f64,
}

impl Scaling {
    /// The variance of the noise a release adds to each number, at the charged round.
    pub fn variances(&self, charge: &Charge) -> Vec<f64> {
        let v = charge.variance(self.clip);
        self.weights.iter().map(|w| v * w * w).collect()
    }
}

/// A term on the weighted scale (a number no corner moves stays 0).
fn weigh(term: &[f64], weights: &[f64]) -> Vec<f64> {
    term.iter()
        .zip(weights)
        .map(|(t, w)| if *w > 0.0 { t / w } else { 0.0 })
        .collect()
}

/// One draw of unit scale: standard normal, or Laplace with b = 1 (by its inverse CDF).
fn draw(mechanism: Mechanism, rng: &mut impl Rng) -> f64 {
    match mechanism {
        Mechanism::Gaussian => StandardNormal.sample(rng),
        Mechanism::Laplace => {
            let u: f64 = rng.random::<f64>() - 0.5;
            -u.signum() * (1.0 - 2.0 * u.abs()).max(f64::MIN_POSITIVE).ln()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithms::linreg::Request;
    use crate::algorithms::{build, AlgorithmConfig};

    /// Rows of (a, b, y) inside a = [0, 10], b = [-5, 5], y = [0, 100], and one far outside.
    fn data(n: usize, outlier: bool) -> LocalData {
        let mut rows: Vec<[f64; 3]> = (0..n)
            .map(|i| {
                let t = i as f64 / n as f64;
                [
                    10.0 * t,
                    5.0 * (7.0 * t).sin(),
                    100.0 * (3.0 * t).cos().abs(),
                ]
            })
            .collect();
        if outlier {
            rows.push([1e6, -1e6, 1e9]);
        }
        LocalData::new(
            Mat::from_fn(rows.len(), 2, |i, j| rows[i][j]),
            Some(rows.iter().map(|r| r[2]).collect()),
        )
    }

    /// The sensitivity by construction: with the values clipped to their bounds, adding one
    /// record (even one far outside them) moves each round's weighted sum by at most `clip`;
    /// and rows inside the bounds are summed as they are (the noiseless release is the reply).
    #[test]
    fn one_record_moves_a_release_by_at_most_clip() {
        let config = AlgorithmConfig::ols(&["a", "b"]);
        let design = Design::new(
            &["a".to_string(), "b".to_string()],
            &[],
            &Vec::new(),
            Some("y".into()),
            true,
        );
        let bounds = BTreeMap::from([
            ("a".to_string(), [0.0, 10.0]),
            ("b".to_string(), [-5.0, 5.0]),
            ("y".to_string(), [0.0, 100.0]),
        ]);
        for mechanism in [Mechanism::Gaussian, Mechanism::Laplace] {
            let c = Clipping::new(&design, &bounds, mechanism).unwrap();
            let alg = build(&config);
            let requests = [
                Request::Moments,
                Request::Centred {
                    mean_x: vec![5.0, 0.0],
                    mean_y: 50.0,
                },
                Request::Residuals {
                    intercept: 10.0,
                    slopes: vec![2.0, -1.0],
                },
            ];
            for request in requests.iter().map(|r| postcard::to_stdvec(r).unwrap()) {
                let scaling = c.scaling(alg.as_ref(), &request).unwrap();
                assert!(scaling.clip > 0.0);
                let (mut without, mut with) = (data(50, false), data(50, true));
                c.clip_data(&mut without);
                c.clip_data(&mut with);
                let sum = |d: &LocalData| {
                    c.clipped_sum(alg.as_ref(), &request, d, &scaling)
                        .unwrap()
                        .1
                };
                let moved: Vec<f64> = sum(&with)
                    .iter()
                    .zip(sum(&without))
                    .map(|(a, b)| a - b)
                    .collect();
                assert!(
                    c.norm(&moved) <= scaling.clip * (1.0 + 1e-12),
                    "{mechanism:?}"
                );
                // Inside the bounds nothing is clipped: the noiseless release is the reply.
                let plain = alg
                    .split(&alg.local(&request, &without).unwrap())
                    .unwrap()
                    .1;
                let noiseless = alg
                    .split(&c.noiseless(alg.as_ref(), &request, &without).unwrap())
                    .unwrap()
                    .1;
                for (a, b) in plain.iter().zip(&noiseless) {
                    assert!((a - b).abs() <= 1e-9 * a.abs().max(1.0), "{a} vs {b}");
                }
            }
        }
    }
}
