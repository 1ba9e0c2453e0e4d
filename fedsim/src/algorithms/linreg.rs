//! Federated ordinary least squares, exact: equal to pooled OLS (statsmodels) to rounding.
//!
//! Three rounds, each sending only aggregates:
//! 1. counts and column sums -> global means;
//! 2. the Gram matrix and cross products of the globally centred data;
//! 3. the residual sum of squares of the fitted model.
//!
//! Centring with the global means and solving on the correlation scale keeps the condition number
//! of the solve that of the correlations, not of the raw columns (raw diabetes data would otherwise
//! lose about six digits), and the separate residual round avoids the cancellation in
//! `y'y - b'X'y` when the fit is good.

use faer::linalg::solvers::DenseSolveCore;
use faer::{Mat, Side};
use serde::{Deserialize, Serialize};

use super::{t_pvalues, AlgoError, AlgorithmConfig, Estimates, Federated, LocalData, Step};

#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    Moments,
    Centred { mean_x: Vec<f64>, mean_y: f64 },
    Residuals { intercept: f64, slopes: Vec<f64> },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    Moments {
        n: u64,
        sum_x: Vec<f64>,
        sum_y: f64,
    },
    /// Row-major d x d Gram matrix, d cross products, and the centred sum of squares of y.
    Centred {
        xtx: Vec<f64>,
        xty: Vec<f64>,
        yty: f64,
    },
    Residuals {
        rss: f64,
    },
}

pub struct LinearRegression {
    config: AlgorithmConfig,
    n: usize,
    mean_x: Vec<f64>,
    mean_y: f64,
    /// Inverse of the centred Gram matrix, kept for the standard errors.
    gram_inv: Mat<f64>,
    tss: f64,
    intercept: f64,
    slopes: Vec<f64>,
}

impl LinearRegression {
    pub fn new(config: AlgorithmConfig) -> Self {
        LinearRegression {
            config,
            n: 0,
            mean_x: Vec::new(),
            mean_y: 0.0,
            gram_inv: Mat::zeros(0, 0),
            tss: 0.0,
            intercept: 0.0,
            slopes: Vec::new(),
        }
    }

    fn terms(&self) -> usize {
        self.config.features.len() + usize::from(self.config.intercept)
    }
}

fn target(data: &LocalData) -> Result<&[f64], AlgoError> {
    data.y
        .as_deref()
        .ok_or_else(|| AlgoError::Data("linear regression needs a target column".into()))
}

fn expect_len(what: &str, got: usize, want: usize) -> Result<(), AlgoError> {
    if got == want {
        Ok(())
    } else {
        Err(AlgoError::Protocol(format!(
            "{what} has {got} values, expected {want}"
        )))
    }
}

impl Federated for LinearRegression {
    type Request = Request;
    type Reply = Reply;

    fn local(&self, request: &Request, data: &LocalData) -> Result<Reply, AlgoError> {
        let y = target(data)?;
        let (n, d) = (data.x.nrows(), data.x.ncols());
        expect_len("feature list", d, self.config.features.len())?;
        match request {
            Request::Moments => Ok(Reply::Moments {
                n: n as u64,
                sum_x: (0..d).map(|j| data.x.col(j).iter().sum()).collect(),
                sum_y: y.iter().sum(),
            }),
            Request::Centred { mean_x, mean_y } => {
                expect_len("mean vector", mean_x.len(), d)?;
                let xc = Mat::from_fn(n, d, |i, j| data.x[(i, j)] - mean_x[j]);
                let yc: Vec<f64> = y.iter().map(|v| v - mean_y).collect();
                let gram = xc.transpose() * &xc;
                let xty = (0..d)
                    .map(|j| xc.col(j).iter().zip(&yc).map(|(a, b)| a * b).sum())
                    .collect();
                Ok(Reply::Centred {
                    xtx: (0..d)
                        .flat_map(|i| (0..d).map(move |j| (i, j)))
                        .map(|(i, j)| gram[(i, j)])
                        .collect(),
                    xty,
                    yty: yc.iter().map(|v| v * v).sum(),
                })
            }
            Request::Residuals { intercept, slopes } => {
                expect_len("coefficient vector", slopes.len(), d)?;
                let rss = (0..n)
                    .map(|i| {
                        let fit: f64 =
                            intercept + (0..d).map(|j| data.x[(i, j)] * slopes[j]).sum::<f64>();
                        (y[i] - fit).powi(2)
                    })
                    .sum();
                Ok(Reply::Residuals { rss })
            }
        }
    }

    fn start(&mut self) -> Request {
        Request::Moments
    }

    fn values(reply: &Reply) -> Vec<f64> {
        match reply {
            Reply::Moments { n, sum_x, sum_y } => [&[*n as f64][..], sum_x, &[*sum_y]].concat(),
            Reply::Centred { xtx, xty, yty } => [&xtx[..], xty, &[*yty]].concat(),
            Reply::Residuals { rss } => vec![*rss],
        }
    }

    fn with_values(template: &Reply, v: &mut super::Values) -> Result<Reply, AlgoError> {
        Ok(match template {
            Reply::Moments { sum_x, .. } => Reply::Moments {
                n: v.count()?,
                sum_x: v.take(sum_x.len())?,
                sum_y: v.one()?,
            },
            Reply::Centred { xtx, xty, .. } => Reply::Centred {
                xtx: v.take(xtx.len())?,
                xty: v.take(xty.len())?,
                yty: v.one()?,
            },
            Reply::Residuals { .. } => Reply::Residuals { rss: v.one()? },
        })
    }

    fn aggregate(&mut self, replies: Vec<Reply>) -> Result<Step<Request>, AlgoError> {
        let d = self.config.features.len();
        let first = replies
            .first()
            .ok_or_else(|| AlgoError::Protocol("no replies".into()))?;
        match first {
            Reply::Moments { .. } => {
                let (mut n, mut sx, mut sy) = (0u64, vec![0.0; d], 0.0);
                for r in &replies {
                    let Reply::Moments { n: k, sum_x, sum_y } = r else {
                        return Err(mixed());
                    };
                    expect_len("column sums", sum_x.len(), d)?;
                    n += k;
                    sx.iter_mut().zip(sum_x).for_each(|(a, b)| *a += b);
                    sy += sum_y;
                }
                self.n = n as usize;
                if self.n <= self.terms() {
                    return Err(AlgoError::Numeric(format!(
                        "{} rows in all sites cannot fit {} terms",
                        self.n,
                        self.terms()
                    )));
                }
                // Without an intercept the model is fitted about the origin, as statsmodels does.
                let centre = if self.config.intercept {
                    1.0 / n as f64
                } else {
                    0.0
                };
                self.mean_x = sx.iter().map(|s| s * centre).collect();
                self.mean_y = sy * centre;
                Ok(Step::Next(Request::Centred {
                    mean_x: self.mean_x.clone(),
                    mean_y: self.mean_y,
                }))
            }
            Reply::Centred { .. } => {
                let (mut gram, mut xty, mut yty) = (Mat::<f64>::zeros(d, d), vec![0.0; d], 0.0);
                for r in &replies {
                    let Reply::Centred {
                        xtx,
                        xty: v,
                        yty: s,
                    } = r
                    else {
                        return Err(mixed());
                    };
                    expect_len("Gram matrix", xtx.len(), d * d)?;
                    expect_len("cross products", v.len(), d)?;
                    for i in 0..d {
                        for j in 0..d {
                            gram[(i, j)] += xtx[i * d + j];
                        }
                    }
                    xty.iter_mut().zip(v).for_each(|(a, b)| *a += b);
                    yty += s;
                }
                if self.config.intercept {
                    // A constant column centres to rounding noise, not to 0: judge its spread
                    // against its level (a standard deviation below 1e-10 of its mean).
                    let n = self.n as f64;
                    if let Some(j) = (0..d).find(|&j| {
                        let sd = (gram[(j, j)].max(0.0) / n).sqrt();
                        sd.is_nan() || sd <= 1e-10 * self.mean_x[j].abs()
                    }) {
                        return Err(AlgoError::Numeric(format!(
                            "column {:?} is constant (every row holds {}), so it duplicates `const` and cannot be estimated; leave it out with [data] exclude",
                            self.config.features[j],
                            short(self.mean_x[j])
                        )));
                    }
                }
                let (slopes, gram_inv) = solve_scaled(&gram, &xty, &self.config.features)?;
                self.intercept = self.mean_y
                    - self
                        .mean_x
                        .iter()
                        .zip(&slopes)
                        .map(|(m, b)| m * b)
                        .sum::<f64>();
                self.slopes = slopes;
                self.gram_inv = gram_inv;
                self.tss = yty;
                Ok(Step::Next(Request::Residuals {
                    intercept: self.intercept,
                    slopes: self.slopes.clone(),
                }))
            }
            Reply::Residuals { .. } => {
                let mut rss = 0.0;
                for r in &replies {
                    let Reply::Residuals { rss: s } = r else {
                        return Err(mixed());
                    };
                    rss += s;
                }
                Ok(Step::Done(Box::new(self.estimates(rss))))
            }
        }
    }
}

fn mixed() -> AlgoError {
    AlgoError::Protocol("sites answered different rounds".into())
}

impl LinearRegression {
    fn estimates(&self, rss: f64) -> Estimates {
        let d = self.slopes.len();
        let df = (self.n - self.terms()) as f64;
        let sigma2 = rss / df;
        let mut coef = Vec::with_capacity(d + 1);
        let mut se = Vec::with_capacity(d + 1);
        if self.config.intercept {
            // Var(b0) = sigma2 (1/n + m' S^-1 m) for the intercept of a centred fit.
            let m = &self.mean_x;
            let quad: f64 = (0..d)
                .flat_map(|i| (0..d).map(move |j| (i, j)))
                .map(|(i, j)| m[i] * self.gram_inv[(i, j)] * m[j])
                .sum();
            coef.push(self.intercept);
            se.push((sigma2 * (1.0 / self.n as f64 + quad)).sqrt());
        }
        for j in 0..d {
            coef.push(self.slopes[j]);
            se.push((sigma2 * self.gram_inv[(j, j)]).sqrt());
        }
        let t: Vec<f64> = coef.iter().zip(&se).map(|(c, s)| c / s).collect();
        let mut e = Estimates {
            n: self.n,
            terms: self.config.terms(),
            p: t_pvalues(&t, df),
            coef,
            se,
            t,
            r2: Some(1.0 - rss / self.tss),
            sigma2: Some(sigma2),
            ..Default::default()
        };
        e.add_ols_summary(rss, self.tss, self.config.intercept);
        e
    }
}

/// The smallest eigenvalue of the correlation-scale matrix, relative to its largest, below which a
/// design is singular. The Gram route squares the condition number: at 1e-12 a solve keeps about
/// four digits, too few for a result that must equal the pooled QR, so fedsim refuses rather than
/// report finite garbage.
pub const SINGULAR_TOL: f64 = 1e-12;

/// Solve `S b = v` for a symmetric positive definite `S` on the correlation scale (unit diagonal),
/// returning `b` and `S^-1`. A zero column, or a set of dependent ones, is reported by name: the
/// eigenvector of the smallest eigenvalue says which columns combine to (nearly) nothing.
pub fn solve_scaled(
    s: &Mat<f64>,
    v: &[f64],
    names: &[String],
) -> Result<(Vec<f64>, Mat<f64>), AlgoError> {
    let d = s.nrows();
    let scale: Vec<f64> = (0..d).map(|i| s[(i, i)].sqrt()).collect();
    if let Some(j) = scale.iter().position(|x| !(*x > 0.0 && x.is_finite())) {
        return Err(AlgoError::Numeric(format!(
            "column {:?} is constant, so it cannot be estimated (with an intercept it duplicates `const`)",
            names.get(j).map_or("?", String::as_str)
        )));
    }
    let c = Mat::from_fn(d, d, |i, j| s[(i, j)] / (scale[i] * scale[j]));
    if let Ok(evd) = c.self_adjoint_eigen(Side::Lower) {
        let (values, vectors) = (evd.S(), evd.U());
        let top = values[d - 1];
        if d > 1 && (values[0].is_nan() || values[0] <= SINGULAR_TOL * top) {
            let null: Vec<f64> = (0..d).map(|i| vectors[(i, 0)] / scale[i]).collect();
            let weights: Vec<f64> = (0..d).map(|i| vectors[(i, 0)]).collect();
            return Err(AlgoError::Numeric(format!(
                "the design matrix is singular: {} (the smallest eigenvalue of the columns' correlation matrix is {:.1e} of the largest; fedsim refuses below {SINGULAR_TOL:.0e})",
                dependence(names, &weights, &null),
                values[0] / top
            )));
        }
    }
    let llt = c.llt(Side::Lower).map_err(|_| {
        AlgoError::Numeric(
            "the design matrix is singular: some feature columns are linear combinations of others"
                .into(),
        )
    })?;
    let c_inv = llt.inverse();
    let inv = Mat::from_fn(d, d, |i, j| c_inv[(i, j)] / (scale[i] * scale[j]));
    let b = (0..d)
        .map(|i| (0..d).map(|j| inv[(i, j)] * v[j]).sum())
        .collect();
    Ok((b, inv))
}

/// "columns `a`, `b` and `c` are linearly dependent (c ≈ a + 2 b)": the columns that carry a
/// null direction (`weights`, on the correlation scale) and, from `null` (the same direction on the
/// columns' own scale), the combination people can check in their data.
pub fn dependence(names: &[String], weights: &[f64], null: &[f64]) -> String {
    let name = |j: usize| names.get(j).map_or("?", String::as_str);
    let big = weights.iter().fold(0.0f64, |m, w| m.max(w.abs()));
    let involved: Vec<usize> = (0..weights.len())
        .filter(|&j| weights[j].abs() > 1e-3 * big)
        .collect();
    // The last one is written as a combination of the others, as a QR in column order finds it.
    let Some(&lead) = involved.last() else {
        return "some feature columns are linear combinations of others".into();
    };
    let listed: Vec<String> = involved.iter().map(|&j| format!("`{}`", name(j))).collect();
    let listed = match listed.as_slice() {
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
        [] => String::new(),
    };
    if involved.len() == 1 {
        return format!(
            "column {listed} is constant or zero (it duplicates `const` or holds nothing)"
        );
    }
    let mut combination = String::new();
    for (k, &j) in involved.iter().filter(|&&j| j != lead).enumerate() {
        let w = -null[j] / null[lead];
        let sign = match (k, w < 0.0) {
            (0, true) => "-",
            (0, false) => "",
            (_, true) => " - ",
            (_, false) => " + ",
        };
        let factor = match short(w.abs()).as_str() {
            "1" => String::new(),
            f => format!("{f} "),
        };
        combination.push_str(&format!("{sign}{factor}{}", name(j)));
    }
    format!(
        "columns {listed} are linearly dependent ({} ≈ {combination})",
        name(lead)
    )
}

/// A number as people write it: six significant digits, no trailing zeros.
pub fn short(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let digits = (5 - x.abs().log10().floor() as i32).clamp(0, 12) as usize;
    let s = format!("{x:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}
