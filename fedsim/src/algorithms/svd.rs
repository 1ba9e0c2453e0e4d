//! Federated SVD / PCA of the (centred, optionally z-scored) data matrix, over row blocks
//! (horizontal) or column blocks (vertical).
//!
//! Horizontal: global means and standard deviations come from summed moments, so the scaling is
//! the pooled one. The operator is X'X (d x d), a sum of the sites' X_i'X_i.
//! Vertical: each site holds whole columns, so it centres and scales them itself. The operator is
//! XX' (n x n), a sum of the sites' X_i X_i'. A site's feature-side vectors (its rows of V) never
//! leave it: they are written only into its own `output/`.
//!
//! Two routes to the top k eigenpairs of the summed operator:
//! - gram: sites send their whole block of the operator; exact (one eigendecomposition);
//! - subspace: randomized subspace iteration (Halko et al.; the route of Hartebrodt et al. and the
//!   FeatureCloud federated-svd app). Sites send only the operator applied to a dim x p block, so
//!   sample-side vectors stay on the sites. Rayleigh-Ritz each round; the run stops when every
//!   wanted Ritz pair's residual is below `tol`.

use std::path::Path;

use faer::{Mat, Side};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use super::{
    add_rows, to_rows, AlgoError, AlgorithmConfig, Estimates, Federated, LocalData, Step, SvdParams,
};
use crate::scenario::SvdMethod;

/// Largest operator dimension for which `method = "auto"` sends whole Gram blocks.
pub const AUTO_GRAM_MAX_DIM: usize = 1000;

/// How a site standardises its columns: `(x - mean) * inv_sd`. Empty for a vertical split,
/// where each site standardises its own columns.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Shift {
    pub mean: Vec<f64>,
    pub inv_sd: Vec<f64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    Moments,
    Spread {
        mean: Vec<f64>,
    },
    Gram {
        shift: Shift,
    },
    /// Apply the site's operator to a row-major dim x cols block.
    Multiply {
        shift: Shift,
        block: Vec<f64>,
        cols: u32,
    },
    /// Keep the site-side results: projections (horizontal) or feature-side vectors (vertical).
    Finish {
        shift: Shift,
        vectors: Vec<f64>,
        cols: u32,
        sigma: Vec<f64>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    Moments {
        n: u64,
        sum: Vec<f64>,
    },
    Spread {
        ss: Vec<f64>,
    },
    Gram {
        rows: Vec<f64>,
    },
    Multiply {
        block: Vec<f64>,
    },
    /// `ss`: the site's sum of squares of its (centred, scaled) block, for the explained
    /// variance ratio.
    Finished {
        rows: u64,
        ss: f64,
    },
}

/// Where each site keeps its own results, relative to its working directory.
pub const SITE_OUTPUT: &str = "output";

enum Phase {
    Moments,
    Spread,
    Main,
    Finish,
}

pub struct Svd {
    config: AlgorithmConfig,
    p: SvdParams,
    phase: Phase,
    n: usize,
    dim: usize,
    shift: Shift,
    method: SvdMethod,
    /// Current orthonormal block (subspace route).
    basis: Mat<f64>,
    residuals: Vec<f64>,
    result: Option<(Vec<f64>, Mat<f64>)>,
}

impl Svd {
    pub fn new(config: AlgorithmConfig, p: SvdParams) -> Self {
        Svd {
            config,
            p,
            phase: Phase::Moments,
            n: 0,
            dim: 0,
            shift: Shift::default(),
            method: SvdMethod::Auto,
            basis: Mat::zeros(0, 0),
            residuals: Vec::new(),
            result: None,
        }
    }

    fn main_request(&mut self) -> Result<Request, AlgoError> {
        let k = self.p.k;
        if k > self.dim.min(self.n) {
            return Err(AlgoError::Numeric(format!(
                "k = {k} exceeds the rank bound min(n, d) = {}",
                self.dim.min(self.n)
            )));
        }
        self.method = match self.p.method {
            SvdMethod::Auto if self.dim <= AUTO_GRAM_MAX_DIM => SvdMethod::Gram,
            SvdMethod::Auto => SvdMethod::Subspace,
            m => m,
        };
        self.phase = Phase::Main;
        if self.method == SvdMethod::Gram {
            return Ok(Request::Gram {
                shift: self.shift.clone(),
            });
        }
        let p = (k + self.p.oversample).min(self.dim);
        let mut rng = ChaCha8Rng::seed_from_u64(self.config.seed ^ 0x5bd1_e995);
        let start = Mat::from_fn(self.dim, p, |_, _| StandardNormal.sample(&mut rng));
        self.basis = orthonormal(&start);
        Ok(self.multiply())
    }

    fn multiply(&self) -> Request {
        Request::Multiply {
            shift: self.shift.clone(),
            block: to_rows(&self.basis),
            cols: self.basis.ncols() as u32,
        }
    }

    fn finish(&mut self, sigma: Vec<f64>, vectors: Mat<f64>) -> Request {
        self.phase = Phase::Finish;
        let req = Request::Finish {
            shift: self.shift.clone(),
            vectors: to_rows(&vectors),
            cols: vectors.ncols() as u32,
            sigma: sigma.clone(),
        };
        self.result = Some((sigma, vectors));
        req
    }
}

/// Thin Q of a QR factorisation: an orthonormal basis of the columns.
fn orthonormal(m: &Mat<f64>) -> Mat<f64> {
    m.qr().compute_thin_Q()
}

/// Top `k` eigenpairs of a symmetric matrix, largest first.
pub fn top_eigen(m: &Mat<f64>, k: usize) -> Result<(Vec<f64>, Mat<f64>), AlgoError> {
    let evd = m
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| AlgoError::Numeric(format!("eigendecomposition failed: {e:?}")))?;
    let (s, u) = (evd.S(), evd.U());
    let d = m.nrows();
    let values = (0..k).map(|i| s[d - 1 - i]).collect();
    let vectors = Mat::from_fn(d, k, |r, c| u[(r, d - 1 - c)]);
    Ok((values, vectors))
}

fn from_rows(rows: &[f64], r: usize, c: usize, what: &str) -> Result<Mat<f64>, AlgoError> {
    let mut m = Mat::zeros(r, c);
    add_rows(&mut m, rows, what)?;
    Ok(m)
}

/// The site's standardised block: with `shift` from the coordinator (horizontal), or computed from
/// the site's own whole columns (vertical).
fn standardised(
    x: &Mat<f64>,
    shift: &Shift,
    config: &AlgorithmConfig,
    p: &SvdParams,
) -> Result<Mat<f64>, AlgoError> {
    let (n, d) = (x.nrows(), x.ncols());
    let own;
    let shift = if config.vertical {
        own = column_shift(x, p, &config.features)?;
        &own
    } else {
        shift
    };
    if shift.mean.len() != d || shift.inv_sd.len() != d {
        return Err(AlgoError::Protocol(format!(
            "standardisation for {} columns, site has {d}",
            shift.mean.len()
        )));
    }
    Ok(Mat::from_fn(n, d, |i, j| {
        (x[(i, j)] - shift.mean[j]) * shift.inv_sd[j]
    }))
}

/// Means and inverse standard deviations (ddof 1) of whole columns, as the config asks.
fn column_shift(x: &Mat<f64>, config: &SvdParams, names: &[String]) -> Result<Shift, AlgoError> {
    let (n, d) = (x.nrows(), x.ncols());
    let mean: Vec<f64> = (0..d)
        .map(|j| {
            if config.center {
                x.col(j).iter().sum::<f64>() / n as f64
            } else {
                0.0
            }
        })
        .collect();
    let ss: Vec<f64> = (0..d)
        .map(|j| x.col(j).iter().map(|v| (v - mean[j]).powi(2)).sum())
        .collect();
    Ok(Shift {
        inv_sd: inverse_sd(&ss, n, config.scale, names)?,
        mean,
    })
}

fn inverse_sd(ss: &[f64], n: usize, scale: bool, names: &[String]) -> Result<Vec<f64>, AlgoError> {
    if !scale {
        return Ok(vec![1.0; ss.len()]);
    }
    ss.iter()
        .enumerate()
        .map(|(j, s)| {
            let sd = (s / (n as f64 - 1.0)).sqrt();
            if sd > 0.0 && sd.is_finite() {
                Ok(1.0 / sd)
            } else {
                Err(AlgoError::Numeric(format!(
                    "column {:?} is constant, so it cannot be scaled to unit variance (use scale = false or exclude it)",
                    names.get(j).map_or("?", String::as_str)
                )))
            }
        })
        .collect()
}

impl Federated for Svd {
    type Request = Request;
    type Reply = Reply;

    fn local(&self, request: &Request, data: &LocalData) -> Result<Reply, AlgoError> {
        let x = &data.x;
        let vertical = self.config.vertical;
        match request {
            Request::Moments => Ok(Reply::Moments {
                n: x.nrows() as u64,
                sum: (0..x.ncols()).map(|j| x.col(j).iter().sum()).collect(),
            }),
            Request::Spread { mean } => {
                if mean.len() != x.ncols() {
                    return Err(AlgoError::Protocol(
                        "mean vector of the wrong length".into(),
                    ));
                }
                Ok(Reply::Spread {
                    ss: (0..x.ncols())
                        .map(|j| x.col(j).iter().map(|v| (v - mean[j]).powi(2)).sum())
                        .collect(),
                })
            }
            Request::Gram { shift } => {
                let xs = standardised(x, shift, &self.config, &self.p)?;
                let g = if vertical {
                    &xs * xs.transpose()
                } else {
                    xs.transpose() * &xs
                };
                Ok(Reply::Gram { rows: to_rows(&g) })
            }
            Request::Multiply { shift, block, cols } => {
                let xs = standardised(x, shift, &self.config, &self.p)?;
                let dim = if vertical { xs.nrows() } else { xs.ncols() };
                let b = from_rows(block, dim, *cols as usize, "block")?;
                let w = if vertical {
                    &xs * (xs.transpose() * &b)
                } else {
                    xs.transpose() * (&xs * &b)
                };
                Ok(Reply::Multiply { block: to_rows(&w) })
            }
            Request::Finish {
                shift,
                vectors,
                cols,
                sigma,
            } => {
                let xs = standardised(x, shift, &self.config, &self.p)?;
                let k = *cols as usize;
                let out = Path::new(SITE_OUTPUT);
                std::fs::create_dir_all(out)
                    .map_err(|e| AlgoError::Data(format!("cannot create {SITE_OUTPUT}/: {e}")))?;
                let pcs: Vec<String> = (1..=k).map(|i| format!("pc{i}")).collect();
                if vertical {
                    // This site's rows of V: V_i = X_i' U diag(1/s). They stay here.
                    let u = from_rows(vectors, xs.nrows(), k, "sample vectors")?;
                    let v = xs.transpose() * &u;
                    let cols: Vec<Vec<f64>> = (0..k)
                        .map(|c| {
                            (0..v.nrows())
                                .map(|r| v[(r, c)] / sigma[c].max(f64::MIN_POSITIVE))
                                .collect()
                        })
                        .collect();
                    crate::data::write_labeled_csv(
                        &out.join("components.csv"),
                        "feature",
                        &self.config.features,
                        &pcs,
                        &cols,
                    )
                    .map_err(|e| AlgoError::Data(e.to_string()))?;
                } else {
                    // This site's scores X_i V: sample-side, they stay here.
                    let v = from_rows(vectors, xs.ncols(), k, "components")?;
                    let p = &xs * &v;
                    let cols: Vec<Vec<f64>> = (0..k)
                        .map(|c| (0..p.nrows()).map(|r| p[(r, c)]).collect())
                        .collect();
                    let rows: Vec<String> = (1..=p.nrows()).map(|r| r.to_string()).collect();
                    crate::data::write_labeled_csv(
                        &out.join("projections.csv"),
                        "row",
                        &rows,
                        &pcs,
                        &cols,
                    )
                    .map_err(|e| AlgoError::Data(e.to_string()))?;
                }
                Ok(Reply::Finished {
                    rows: x.nrows() as u64,
                    ss: xs.squared_norm_l2(),
                })
            }
        }
    }

    fn start(&mut self) -> Request {
        Request::Moments
    }

    fn values(reply: &Reply) -> Vec<f64> {
        match reply {
            Reply::Moments { n, sum } => [&[*n as f64][..], sum].concat(),
            Reply::Spread { ss } => ss.clone(),
            Reply::Gram { rows } => rows.clone(),
            Reply::Multiply { block } => block.clone(),
            Reply::Finished { rows, ss } => vec![*rows as f64, *ss],
        }
    }

    fn with_values(template: &Reply, v: &mut super::Values) -> Result<Reply, AlgoError> {
        Ok(match template {
            Reply::Moments { sum, .. } => Reply::Moments {
                n: v.count()?,
                sum: v.take(sum.len())?,
            },
            Reply::Spread { ss } => Reply::Spread {
                ss: v.take(ss.len())?,
            },
            Reply::Gram { rows } => Reply::Gram {
                rows: v.take(rows.len())?,
            },
            Reply::Multiply { block } => Reply::Multiply {
                block: v.take(block.len())?,
            },
            Reply::Finished { .. } => Reply::Finished {
                rows: v.count()?,
                ss: v.one()?,
            },
        })
    }

    fn aggregate(&mut self, replies: Vec<Reply>) -> Result<Step<Request>, AlgoError> {
        let wrong = || AlgoError::Protocol("sites answered different rounds".into());
        match self.phase {
            Phase::Moments => {
                let mut sums: Vec<f64> = Vec::new();
                let mut counts = Vec::new();
                for r in &replies {
                    let Reply::Moments { n, sum } = r else {
                        return Err(wrong());
                    };
                    counts.push(*n as usize);
                    if sums.is_empty() {
                        sums = vec![0.0; sum.len()];
                    }
                    if sum.len() != sums.len() && !self.config.vertical {
                        return Err(AlgoError::Protocol(
                            "sites hold different numbers of columns".into(),
                        ));
                    }
                    sums.iter_mut().zip(sum).for_each(|(a, b)| *a += b);
                }
                if self.config.vertical {
                    if counts.iter().any(|c| *c != counts[0]) {
                        return Err(AlgoError::Data(format!("a vertical split needs the same rows at every site; row counts are {counts:?}")));
                    }
                    self.n = counts[0];
                    self.dim = self.n;
                    return self.main_request().map(Step::Next);
                }
                self.n = counts.iter().sum();
                self.dim = sums.len();
                let mean: Vec<f64> = sums
                    .iter()
                    .map(|s| {
                        if self.p.center {
                            s / self.n as f64
                        } else {
                            0.0
                        }
                    })
                    .collect();
                self.shift = Shift {
                    inv_sd: vec![1.0; self.dim],
                    mean: mean.clone(),
                };
                if self.p.scale {
                    self.phase = Phase::Spread;
                    return Ok(Step::Next(Request::Spread { mean }));
                }
                self.main_request().map(Step::Next)
            }
            Phase::Spread => {
                let mut ss = vec![0.0; self.dim];
                for r in &replies {
                    let Reply::Spread { ss: s } = r else {
                        return Err(wrong());
                    };
                    ss.iter_mut().zip(s).for_each(|(a, b)| *a += b);
                }
                self.shift.inv_sd = inverse_sd(&ss, self.n, true, &self.config.features)?;
                self.main_request().map(Step::Next)
            }
            Phase::Main if self.method == SvdMethod::Gram => {
                let mut g = Mat::zeros(self.dim, self.dim);
                for r in &replies {
                    let Reply::Gram { rows } = r else {
                        return Err(wrong());
                    };
                    add_rows(&mut g, rows, "Gram matrix")?;
                }
                let (values, vectors) = top_eigen(&g, self.p.k)?;
                let sigma = values.iter().map(|l| l.max(0.0).sqrt()).collect();
                Ok(Step::Next(self.finish(sigma, vectors)))
            }
            Phase::Main => {
                let p = self.basis.ncols();
                let mut w = Mat::zeros(self.dim, p);
                for r in &replies {
                    let Reply::Multiply { block } = r else {
                        return Err(wrong());
                    };
                    add_rows(&mut w, block, "block")?;
                }
                // Rayleigh-Ritz on the current basis: H = V' C V, with C V = W.
                let h = self.basis.transpose() * &w;
                let h = Mat::from_fn(p, p, |i, j| 0.5 * (h[(i, j)] + h[(j, i)]));
                let (values, q) = top_eigen(&h, p)?;
                let k = self.p.k;
                let cq = &w * &q;
                let vq = &self.basis * &q;
                let top = values[0].abs().max(f64::MIN_POSITIVE);
                let residual = (0..k)
                    .map(|c| {
                        (0..self.dim)
                            .map(|r| (cq[(r, c)] - values[c] * vq[(r, c)]).powi(2))
                            .sum::<f64>()
                            .sqrt()
                            / top
                    })
                    .fold(0.0, f64::max);
                self.residuals.push(residual);
                if residual <= self.p.tol {
                    let sigma = values[..k].iter().map(|l| l.max(0.0).sqrt()).collect();
                    let vectors = Mat::from_fn(self.dim, k, |r, c| vq[(r, c)]);
                    return Ok(Step::Next(self.finish(sigma, vectors)));
                }
                if self.residuals.len() >= self.p.max_iter {
                    return Err(AlgoError::Numeric(format!(
                        "subspace iteration did not converge in {} iterations (residual {residual:.3e} > tol {:.1e}); raise max_iter or oversample",
                        self.p.max_iter, self.p.tol
                    )));
                }
                self.basis = orthonormal(&w);
                Ok(Step::Next(self.multiply()))
            }
            Phase::Finish => {
                let mut total = 0.0;
                for r in &replies {
                    let Reply::Finished { ss, .. } = r else {
                        return Err(wrong());
                    };
                    total += ss;
                }
                let (sigma, vectors) = self.result.take().ok_or_else(wrong)?;
                let denom = (self.n as f64 - 1.0).max(1.0);
                Ok(Step::Done(Box::new(Estimates {
                    n: self.n,
                    explained_variance: sigma.iter().map(|s| s * s / denom).collect(),
                    explained_variance_ratio: sigma.iter().map(|s| s * s / total).collect(),
                    singular_values: sigma,
                    method: Some(
                        if self.method == SvdMethod::Gram {
                            "gram"
                        } else {
                            "subspace"
                        }
                        .into(),
                    ),
                    iterations: Some(self.residuals.len().max(1)),
                    convergence: self.residuals.clone(),
                    vectors: (0..vectors.ncols())
                        .map(|c| (0..vectors.nrows()).map(|r| vectors[(r, c)]).collect())
                        .collect(),
                    ..Default::default()
                })))
            }
        }
    }
}
