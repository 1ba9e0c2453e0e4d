//! Federated logistic regression by Newton-Raphson on summed gradients and Hessians.
//!
//! Each round the coordinator sends the current coefficients; every site returns its gradient,
//! Hessian and log-likelihood at that point (aggregates only). The coordinator takes the Newton step
//! and stops when the step is below `tol` relative to the coefficients. It does not stop after a
//! fixed number of steps, the way some deployed apps stop after one. A step that lowers the likelihood is
//! halved. Separation (a perfectly predicted target) and non-convergence end the run with a
//! message that says which.

use faer::Mat;
use serde::{Deserialize, Serialize};

use super::linreg::solve_scaled;
use super::{
    add_rows, to_rows, z_pvalues, AlgoError, AlgorithmConfig, Estimates, Federated, LocalData,
    Newton, Step,
};

#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub beta: Vec<f64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Reply {
    pub n: u64,
    /// Ones in the target (for the constant-only model's likelihood).
    pub ones: f64,
    pub grad: Vec<f64>,
    /// Row-major p x p observed information (X' W X).
    pub hess: Vec<f64>,
    pub loglik: f64,
}

/// Gradient, information matrix and log-likelihood of rows `x` (without the intercept column)
/// at `beta`. Shared by the sites and the pooled baseline.
pub fn stats(
    x: &Mat<f64>,
    y: &[f64],
    beta: &[f64],
    intercept: bool,
) -> Result<(Vec<f64>, Mat<f64>, f64), AlgoError> {
    let (n, d) = (x.nrows(), x.ncols());
    let c = usize::from(intercept);
    let p = d + c;
    let row = |i: usize, j: usize| if j < c { 1.0 } else { x[(i, j - c)] };
    let mut grad = vec![0.0; p];
    let mut ll = 0.0;
    // Rows scaled by sqrt(w) so that the information matrix is one Gram product.
    let mut xw = Mat::<f64>::zeros(n, p);
    for i in 0..n {
        let yi = y[i];
        if yi != 0.0 && yi != 1.0 {
            return Err(AlgoError::Data(format!(
                "logistic regression needs a 0/1 target, found {yi} in row {}",
                i + 1
            )));
        }
        let eta: f64 = (0..p).map(|j| row(i, j) * beta[j]).sum();
        let prob = 1.0 / (1.0 + (-eta).exp());
        // log(1 + e^eta), without overflow for large |eta|.
        let softplus = if eta > 0.0 {
            eta + (-eta).exp().ln_1p()
        } else {
            eta.exp().ln_1p()
        };
        ll += yi * eta - softplus;
        let w = (prob * (1.0 - prob)).sqrt();
        for j in 0..p {
            grad[j] += (yi - prob) * row(i, j);
            xw[(i, j)] = w * row(i, j);
        }
    }
    let hess = xw.transpose() * &xw;
    Ok((grad, hess, ll))
}

pub struct LogisticRegression {
    config: AlgorithmConfig,
    newton: Newton,
    beta: Vec<f64>,
    /// Last accepted point and its log-likelihood, for step halving.
    accepted: Option<(Vec<f64>, f64)>,
    halvings: usize,
    steps: Vec<f64>,
    /// Each term's root mean square, from the first round's information matrix (at beta = 0 it
    /// is X'X / 4): puts the coefficients on one scale to tell which terms separate the target.
    rms: Vec<f64>,
}

impl LogisticRegression {
    pub fn new(config: AlgorithmConfig, newton: Newton) -> Self {
        let p = config.features.len() + usize::from(config.intercept);
        LogisticRegression {
            config,
            newton,
            beta: vec![0.0; p],
            accepted: None,
            halvings: 0,
            steps: Vec::new(),
            rms: Vec::new(),
        }
    }

    fn terms(&self) -> Vec<String> {
        self.config.terms()
    }

    /// The terms that carry a separation: the largest coefficients on the terms' own scale
    /// (|beta| x root mean square), the intercept aside.
    fn separating(&self) -> String {
        let terms = self.terms();
        let c = usize::from(self.config.intercept);
        let mut size: Vec<(f64, &str)> = (c..self.beta.len())
            .map(|j| {
                let rms = self.rms.get(j).copied().unwrap_or(1.0);
                ((self.beta[j] * rms).abs(), terms[j].as_str())
            })
            .collect();
        size.sort_by(|a, b| b.0.total_cmp(&a.0));
        let top = size.first().map_or(0.0, |s| s.0);
        let named: Vec<String> = size
            .iter()
            .take_while(|s| s.0 >= 0.25 * top)
            .take(3)
            .map(|s| format!("`{}`", s.1))
            .collect();
        if named.is_empty() {
            return "the features".into();
        }
        format!(
            "{} {}",
            if named.len() == 1 {
                "the feature"
            } else {
                "the features"
            },
            named.join(", ")
        )
    }
}

impl Federated for LogisticRegression {
    type Request = Request;
    type Reply = Reply;

    fn local(&self, request: &Request, data: &LocalData) -> Result<Reply, AlgoError> {
        let y = data
            .y
            .as_deref()
            .ok_or_else(|| AlgoError::Data("logistic regression needs a target column".into()))?;
        if request.beta.len() != self.beta.len() {
            return Err(AlgoError::Protocol(format!(
                "{} coefficients, expected {}",
                request.beta.len(),
                self.beta.len()
            )));
        }
        let (grad, hess, loglik) = stats(&data.x, y, &request.beta, self.config.intercept)?;
        Ok(Reply {
            n: data.rows() as u64,
            ones: y.iter().sum(),
            grad,
            hess: to_rows(&hess),
            loglik,
        })
    }

    fn start(&mut self) -> Request {
        Request {
            beta: self.beta.clone(),
        }
    }

    fn values(r: &Reply) -> Vec<f64> {
        [&[r.n as f64, r.ones][..], &r.grad, &r.hess, &[r.loglik]].concat()
    }

    fn with_values(t: &Reply, v: &mut super::Values) -> Result<Reply, AlgoError> {
        Ok(Reply {
            n: v.count()?,
            ones: v.one()?,
            grad: v.take(t.grad.len())?,
            hess: v.take(t.hess.len())?,
            loglik: v.one()?,
        })
    }

    fn aggregate(&mut self, replies: Vec<Reply>) -> Result<Step<Request>, AlgoError> {
        let p = self.beta.len();
        let (mut n, mut ones, mut grad, mut hess, mut ll) =
            (0u64, 0.0, vec![0.0; p], Mat::<f64>::zeros(p, p), 0.0);
        for r in &replies {
            if r.grad.len() != p {
                return Err(AlgoError::Protocol(format!(
                    "gradient has {} values, expected {p}",
                    r.grad.len()
                )));
            }
            n += r.n;
            ones += r.ones;
            grad.iter_mut().zip(&r.grad).for_each(|(a, b)| *a += b);
            add_rows(&mut hess, &r.hess, "Hessian")?;
            ll += r.loglik;
        }
        if self.rms.is_empty() && n > 0 {
            self.rms = (0..p)
                .map(|j| (4.0 * hess[(j, j)] / n as f64).max(0.0).sqrt())
                .collect();
        }
        // A noisy likelihood cannot tell an overshoot from the noise: every step is taken.
        if let (Some((prev, prev_ll)), false) = (&self.accepted, self.config.noisy) {
            if ll < prev_ll - 1e-12 * prev_ll.abs().max(1.0) {
                // The full step overshot: go half way back and evaluate again.
                self.halvings += 1;
                if self.halvings > 40 {
                    return Err(AlgoError::Numeric(
                        "Newton step halving did not increase the likelihood".into(),
                    ));
                }
                self.beta = prev
                    .iter()
                    .zip(&self.beta)
                    .map(|(a, b)| 0.5 * (a + b))
                    .collect();
                return Ok(Step::Next(Request {
                    beta: self.beta.clone(),
                }));
            }
        }
        self.halvings = 0;
        self.accepted = Some((self.beta.clone(), ll));
        // A noisy likelihood near 0 is the noise, not a separation.
        if !self.config.noisy && ll > -1e-7 * n as f64 {
            return Err(AlgoError::Numeric(format!(
                "perfect separation: the target is predicted exactly by {} (the coefficients grow without bound), so the maximum-likelihood estimates do not exist; leave one out, or merge categories that hold only one outcome",
                self.separating()
            )));
        }
        let terms = self.terms();
        let (step, cov) = solve_scaled(&hess, &grad, &terms).map_err(|e| {
            AlgoError::Numeric(format!(
                "{e} (in the Hessian; quasi-separation or collinear features)"
            ))
        })?;
        let size = step.iter().fold(0.0f64, |m, s| m.max(s.abs()));
        let scale = self.beta.iter().fold(1.0f64, |m, b| m.max(b.abs()));
        self.steps.push(size);
        let next: Vec<f64> = self.beta.iter().zip(&step).map(|(b, s)| b + s).collect();
        // Under noise every planned step is taken: the budget was split over them.
        let done = if self.config.noisy {
            self.steps.len() >= self.newton.max_iter
        } else {
            size <= self.newton.tol * scale
        };
        if done {
            // Converged: the point just evaluated is within `tol` of the optimum, and the final
            // step takes it to rounding level; the information matrix is the one at that point.
            let se: Vec<f64> = (0..p).map(|j| cov[(j, j)].sqrt()).collect();
            let z: Vec<f64> = next.iter().zip(&se).map(|(b, s)| b / s).collect();
            let mut e = Estimates {
                n: n as usize,
                terms,
                p: z_pvalues(&z),
                coef: next,
                se,
                t: z,
                loglik: Some(ll),
                iterations: Some(self.steps.len()),
                convergence: self.steps.clone(),
                ..Default::default()
            };
            e.add_logit_summary(ones, self.config.intercept);
            return Ok(Step::Done(Box::new(e)));
        }
        if self.steps.len() >= self.newton.max_iter {
            return Err(AlgoError::Numeric(format!(
                "Newton-Raphson did not converge in {} iterations (last step {size:.3e}, tolerance {:.1e}); raise max_iter or check for separation",
                self.newton.max_iter, self.newton.tol
            )));
        }
        if next.iter().any(|b| !b.is_finite() || b.abs() > 1e8) {
            return Err(AlgoError::Numeric(format!(
                "coefficients diverge: the target is (quasi-)separated by {}",
                self.separating()
            )));
        }
        self.beta = next;
        Ok(Step::Next(Request {
            beta: self.beta.clone(),
        }))
    }
}
