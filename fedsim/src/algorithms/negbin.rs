//! Federated negative binomial regression (NB2), as statsmodels' discrete `NegativeBinomial`:
//! the mean is exp(x'b + offset), the variance mu + alpha mu², and alpha is estimated with the
//! coefficients by maximum likelihood. Exact: each round the sites send the gradient, Hessian
//! and log-likelihood sums of their rows at the point the coordinator names.
//!
//! Rounds: a Poisson GLM first (its coefficients start the fit), then Newton on (b, ln alpha)
//! (ln alpha keeps alpha positive; a step that lowers the likelihood is halved), then the
//! constant-only model the same way, for LL-Null. The standard errors are those of the inverse
//! Hessian in (b, alpha), as statsmodels reports them.

use faer::Mat;
use serde::{Deserialize, Serialize};

use super::glm::{self, Glm, GlmParams, Model};
use super::linreg::solve_scaled;
use super::{
    add_rows, to_rows, z_pvalues, AlgoError, AlgorithmConfig, Estimates, Federated, LocalData,
    Step, Values,
};
use crate::scenario::Family;

#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// The Poisson fit that starts the coefficients.
    Poisson(glm::Request),
    /// The NB2 sums at (b, ln alpha).
    Newton { model: Model, theta: Vec<f64> },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    Poisson(glm::Reply),
    Newton(Sums),
}

/// One site's sums at one point, in (b, alpha).
#[derive(Debug, Serialize, Deserialize)]
pub struct Sums {
    pub grad: Vec<f64>,
    /// Row-major (k + 1) x (k + 1) Hessian of the log-likelihood.
    pub hess: Vec<f64>,
    pub loglik: f64,
}

/// ψ(x), by recurrence up to 20 and the asymptotic series (its first omitted term is below
/// 1e-17 there).
fn digamma(mut x: f64) -> f64 {
    let mut r = 0.0;
    while x < 20.0 {
        r -= 1.0 / x;
        x += 1.0;
    }
    let f = 1.0 / (x * x);
    r + x.ln()
        - 0.5 / x
        - f * (1.0 / 12.0 - f * (1.0 / 120.0 - f * (1.0 / 252.0 - f * (1.0 / 240.0 - f / 132.0))))
}

/// ψ'(x), likewise.
fn trigamma(mut x: f64) -> f64 {
    let mut r = 0.0;
    while x < 20.0 {
        r += 1.0 / (x * x);
        x += 1.0;
    }
    let f = 1.0 / (x * x);
    r + 1.0 / x + f / 2.0 + f / x * (1.0 / 6.0 - f * (1.0 / 30.0 - f * (1.0 / 42.0 - f / 30.0)))
}

/// ψ(y + r) - ψ(r) and ψ'(y + r) - ψ'(r): finite sums for a whole count (exact, no
/// cancellation), the functions otherwise.
fn gamma_differences(y: f64, r: f64) -> (f64, f64) {
    if y.fract() == 0.0 && (0.0..=10_000.0).contains(&y) {
        (0..y as usize).fold((0.0, 0.0), |(d, t), j| {
            let v = r + j as f64;
            (d + 1.0 / v, t - 1.0 / (v * v))
        })
    } else {
        (digamma(y + r) - digamma(r), trigamma(y + r) - trigamma(r))
    }
}

/// Where alpha starts: the Poisson fit's overdispersion, Var = mu + alpha mu² read at the
/// mean (Pearson chi² / df_resid = 1 + alpha ȳ), at least 0.05.
fn start_alpha(poisson: &Estimates, ybar: f64) -> f64 {
    let dispersion = poisson.pearson_chi2.unwrap_or(0.0) / poisson.df_resid.unwrap_or(1.0);
    ((dispersion - 1.0) / ybar).max(0.05)
}

/// The NB2 log-likelihood sums of the rows at (b, alpha): `model` Null uses the constant only.
fn sums(
    data: &LocalData,
    params: &GlmParams,
    intercept: bool,
    model: Model,
    beta: &[f64],
    alpha: f64,
) -> Result<Sums, AlgoError> {
    let rows = glm::Rows::of(data, params)?;
    let (n, d) = (data.x.nrows(), data.x.ncols());
    let c = usize::from(intercept || model == Model::Null);
    let k = if model == Model::Null { 1 } else { d + c };
    if beta.len() != k {
        return Err(AlgoError::Protocol(format!(
            "{} coefficients, expected {k}",
            beta.len()
        )));
    }
    let value = |i: usize, j: usize| if j < c { 1.0 } else { data.x[(i, j - c)] };
    let (a, r) = (alpha, 1.0 / alpha);
    let mut grad = vec![0.0; k + 1];
    let mut hess = Mat::<f64>::zeros(k + 1, k + 1);
    // Rows scaled by sqrt(-H_bb weight), so that the b block is one Gram product.
    let mut xw = Mat::<f64>::zeros(n, k);
    let mut ll = 0.0;
    for i in 0..n {
        let (y, w) = (rows.y[i], rows.weight(i));
        let eta = rows.offset(i) + (0..k).map(|j| value(i, j) * beta[j]).sum::<f64>();
        let mu = eta.exp();
        let am = 1.0 + a * mu;
        let (dg, tg) = gamma_differences(y, r);
        let lg = libm::lgamma;
        ll += w
            * (lg(y + r) - lg(r) - lg(y + 1.0) + if y > 0.0 { y * (a * mu).ln() } else { 0.0 }
                - (y + r) * am.ln());
        let gb = (y - mu) / am;
        let ga = -dg / (a * a) + y / a + am.ln() / (a * a) - (y + r) * mu / am;
        let haa = tg / a.powi(4) + 2.0 * dg / a.powi(3) - y / (a * a) + 2.0 * mu / (a * a * am)
            - 2.0 * am.ln() / a.powi(3)
            + (y + r) * mu * mu / (am * am);
        let hba = -(y - mu) * mu / (am * am);
        let hbb = mu * (1.0 + a * y) / (am * am);
        let root = (w * hbb).sqrt();
        for j in 0..k {
            let x = value(i, j);
            grad[j] += w * gb * x;
            hess[(j, k)] += w * hba * x;
            xw[(i, j)] = root * x;
        }
        grad[k] += w * ga;
        hess[(k, k)] += w * haa;
    }
    let gram = xw.transpose() * &xw;
    for i in 0..k {
        for j in 0..k {
            hess[(i, j)] = -gram[(i, j)];
        }
        hess[(k, i)] = hess[(i, k)];
    }
    Ok(Sums {
        grad,
        hess: to_rows(&hess),
        loglik: ll,
    })
}

/// Newton on (b, ln alpha) for one model, with step halving.
struct Newton {
    model: Model,
    theta: Vec<f64>,
    accepted: Option<(Vec<f64>, f64)>,
    halvings: usize,
    steps: Vec<f64>,
}

impl Newton {
    fn new(model: Model, theta: Vec<f64>) -> Newton {
        Newton {
            model,
            theta,
            accepted: None,
            halvings: 0,
            steps: Vec::new(),
        }
    }
}

/// What one Newton evaluation leads to.
enum Next {
    Evaluate,
    /// Converged: (b, alpha), the covariance in (b, alpha), the log-likelihood.
    Done(Vec<f64>, Mat<f64>, f64),
}

/// The model's fit, kept while the constant-only one runs.
#[derive(Clone)]
struct Fitted {
    /// (b, alpha), its covariance, the log-likelihood, Newton's steps.
    coef: Vec<f64>,
    cov: Mat<f64>,
    loglik: f64,
    steps: Vec<f64>,
}

pub struct NegativeBinomial {
    config: AlgorithmConfig,
    params: GlmParams,
    poisson: Glm,
    newton: Option<Newton>,
    full: Option<Fitted>,
    rows: usize,
    n: f64,
}

impl NegativeBinomial {
    pub fn new(config: AlgorithmConfig, params: GlmParams) -> Self {
        let poisson = GlmParams {
            family: Family::Poisson,
            link: crate::scenario::Link::Log,
            ..params.clone()
        };
        NegativeBinomial {
            poisson: Glm::new(config.clone(), poisson),
            config,
            params,
            newton: None,
            full: None,
            rows: 0,
            n: 0.0,
        }
    }

    fn request(&self) -> Request {
        let nt = self.newton.as_ref().expect("newton started");
        Request::Newton {
            model: nt.model,
            theta: nt.theta.clone(),
        }
    }

    fn names(&self, model: Model) -> Vec<String> {
        let mut t = match model {
            Model::Null => vec!["const".to_string()],
            Model::Full => self.config.terms(),
        };
        t.push("alpha".into());
        t
    }

    /// One Newton evaluation's sums: halve back, step, or stop.
    fn newton_step(&mut self, s: Sums) -> Result<Next, AlgoError> {
        let max_iter = self.params.max_iter;
        let tol = self.params.tol;
        let nt = self.newton.as_mut().expect("newton started");
        let names = match nt.model {
            Model::Null => vec!["const".to_string(), "alpha".into()],
            Model::Full => {
                let mut t = self.config.terms();
                t.push("alpha".into());
                t
            }
        };
        let k1 = names.len();
        if s.grad.len() != k1 {
            return Err(AlgoError::Protocol(format!(
                "gradient has {} values, expected {k1}",
                s.grad.len()
            )));
        }
        let mut hess = Mat::<f64>::zeros(k1, k1);
        add_rows(&mut hess, &s.hess, "Hessian")?;
        if let Some((prev, prev_ll)) = &nt.accepted {
            if s.loglik.is_nan() || s.loglik < prev_ll - 1e-12 * prev_ll.abs().max(1.0) {
                nt.halvings += 1;
                if nt.halvings > 40 {
                    return Err(AlgoError::Numeric(
                        "negative binomial: step halving did not increase the likelihood".into(),
                    ));
                }
                nt.theta = prev
                    .iter()
                    .zip(&nt.theta)
                    .map(|(a, b)| 0.5 * (a + b))
                    .collect();
                return Ok(Next::Evaluate);
            }
        }
        nt.halvings = 0;
        nt.accepted = Some((nt.theta.clone(), s.loglik));
        let alpha = nt.theta[k1 - 1].exp();
        // To ln alpha: g_t = alpha g_a, H_tt = alpha² H_aa + alpha g_a, H_bt = alpha H_ba.
        let mut info = Mat::from_fn(k1, k1, |i, j| -hess[(i, j)]);
        let mut grad = s.grad.clone();
        let last = k1 - 1;
        for j in 0..last {
            info[(j, last)] *= alpha;
            info[(last, j)] *= alpha;
        }
        info[(last, last)] = alpha * alpha * info[(last, last)] - alpha * s.grad[last];
        grad[last] *= alpha;
        // Far from the optimum the likelihood need not be concave in ln alpha: then move alpha
        // alone by a factor e towards a higher likelihood, and let halving settle it.
        let step = match solve_scaled(&info, &grad, &names) {
            Ok((step, _)) if info[(last, last)] > 0.0 => step,
            _ => {
                let mut step = vec![0.0; k1];
                step[last] = grad[last].signum();
                step
            }
        };
        let size = step.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let scale = nt.theta.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        nt.steps.push(size);
        let next: Vec<f64> = nt.theta.iter().zip(&step).map(|(a, b)| a + b).collect();
        if size <= tol * scale {
            let info = Mat::from_fn(k1, k1, |i, j| -hess[(i, j)]);
            let zero = vec![0.0; k1];
            let (_, cov) = solve_scaled(&info, &zero, &names)?;
            let mut coef = next;
            coef[last] = coef[last].exp();
            return Ok(Next::Done(coef, cov, s.loglik));
        }
        if nt.steps.len() >= max_iter {
            return Err(AlgoError::Numeric(format!(
                "negative binomial: Newton did not converge in {max_iter} iterations (last step {size:.3e})"
            )));
        }
        if next.iter().any(|v| !v.is_finite()) || next[last] > 700.0 {
            return Err(AlgoError::Numeric(
                "negative binomial: the estimates diverge (alpha grows without bound)".into(),
            ));
        }
        nt.theta = next;
        Ok(Next::Evaluate)
    }

    fn estimates(&self, llnull: f64) -> Estimates {
        let Fitted {
            coef,
            cov,
            loglik: ll,
            steps,
        } = self.full.clone().expect("full model fitted");
        let iterations = steps.len();
        let k = coef.len() as f64 - 1.0;
        let se: Vec<f64> = (0..coef.len()).map(|j| cov[(j, j)].sqrt()).collect();
        let z: Vec<f64> = coef.iter().zip(&se).map(|(b, s)| b / s).collect();
        let df_model = k - f64::from(u8::from(self.config.intercept));
        let mut e = Estimates {
            n: self.rows,
            terms: self.names(Model::Full),
            p: z_pvalues(&z),
            coef,
            se,
            t: z,
            loglik: Some(ll),
            llnull: Some(llnull),
            df_model: Some(df_model),
            df_resid: Some(self.n - k),
            aic: Some(-2.0 * ll + 2.0 * (k + 1.0)),
            bic: Some(-2.0 * ll + (k + 1.0) * self.n.ln()),
            iterations: Some(iterations),
            convergence: steps,
            converged: Some(true),
            cov_type: Some("nonrobust".into()),
            ..Default::default()
        };
        e.add_z_conf_int();
        e
    }
}

impl Federated for NegativeBinomial {
    type Request = Request;
    type Reply = Reply;

    fn local(&self, request: &Request, data: &LocalData) -> Result<Reply, AlgoError> {
        match request {
            Request::Poisson(r) => Ok(Reply::Poisson(Federated::local(&self.poisson, r, data)?)),
            Request::Newton { model, theta } => {
                let (beta, ln_alpha) = theta.split_at(theta.len().saturating_sub(1));
                let alpha = ln_alpha
                    .first()
                    .ok_or_else(|| AlgoError::Protocol("no alpha".into()))?
                    .exp();
                Ok(Reply::Newton(sums(
                    data,
                    &self.params,
                    self.config.intercept,
                    *model,
                    beta,
                    alpha,
                )?))
            }
        }
    }

    fn start(&mut self) -> Request {
        Request::Poisson(Federated::start(&mut self.poisson))
    }

    fn values(reply: &Reply) -> Vec<f64> {
        match reply {
            Reply::Poisson(r) => Glm::values(r),
            Reply::Newton(s) => [&s.grad[..], &s.hess, &[s.loglik]].concat(),
        }
    }

    fn with_values(t: &Reply, v: &mut Values) -> Result<Reply, AlgoError> {
        Ok(match t {
            Reply::Poisson(r) => Reply::Poisson(Glm::with_values(r, v)?),
            Reply::Newton(s) => Reply::Newton(Sums {
                grad: v.take(s.grad.len())?,
                hess: v.take(s.hess.len())?,
                loglik: v.one()?,
            }),
        })
    }

    fn aggregate(&mut self, replies: Vec<Reply>) -> Result<Step<Request>, AlgoError> {
        let s = match super::sum_replies::<NegativeBinomial>(&replies)? {
            Reply::Newton(s) => s,
            // Already the sites' sum: the Poisson fit aggregates it as one reply.
            Reply::Poisson(total) => {
                return match Federated::aggregate(&mut self.poisson, vec![total])? {
                    Step::Next(r) => Ok(Step::Next(Request::Poisson(r))),
                    Step::Done(e) => {
                        self.rows = e.n;
                        self.n = e.df_resid.unwrap_or_default() + e.coef.len() as f64;
                        let mut theta = e.coef.clone();
                        theta.push(start_alpha(&e, self.poisson.mean()).ln());
                        self.newton = Some(Newton::new(Model::Full, theta));
                        Ok(Step::Next(self.request()))
                    }
                };
            }
        };
        match self.newton_step(s)? {
            Next::Evaluate => Ok(Step::Next(self.request())),
            Next::Done(coef, cov, ll) => {
                let nt = self.newton.take().expect("newton started");
                if nt.model == Model::Full {
                    let alpha = *coef.last().expect("alpha");
                    self.full = Some(Fitted {
                        coef,
                        cov,
                        loglik: ll,
                        steps: nt.steps,
                    });
                    // The constant-only model starts from the Poisson mean and this alpha.
                    let start = vec![self.poisson_null_const(), alpha.ln()];
                    self.newton = Some(Newton::new(Model::Null, start));
                    Ok(Step::Next(self.request()))
                } else {
                    Ok(Step::Done(Box::new(self.estimates(ll))))
                }
            }
        }
    }
}

impl NegativeBinomial {
    /// A start for the constant-only model: the first coefficient of the Poisson fit when the
    /// model has an intercept, else 0.
    fn poisson_null_const(&self) -> f64 {
        self.poisson.null_const().unwrap_or(0.0)
    }
}

/// The pooled NB2 fit, by a different route: full Newton directly in (b, alpha) on the pooled
/// rows from the pooled Poisson fit, each step solved by an LU of the Hessian.
pub fn pooled(
    config: &AlgorithmConfig,
    params: &GlmParams,
    data: &LocalData,
    poisson: Estimates,
) -> Result<Estimates, AlgoError> {
    let n_rows = data.x.nrows();
    let rows = glm::Rows::of(data, params)?;
    let wnobs: f64 = (0..n_rows).map(|i| rows.weight(i)).sum();
    let fit = |model: Model,
               mut theta: Vec<f64>|
     -> Result<(Vec<f64>, Mat<f64>, f64, usize), AlgoError> {
        let mut last_ll = f64::NEG_INFINITY;
        for iteration in 1..=500 {
            crate::sys::cancel::check().map_err(|_| AlgoError::Numeric("cancelled".into()))?;
            let k1 = theta.len();
            let (beta, alpha) = (&theta[..k1 - 1], theta[k1 - 1]);
            let s = sums(data, params, config.intercept, model, beta, alpha)?;
            let hess = Mat::from_fn(k1, k1, |i, j| s.hess[i * k1 + j]);
            let neg = -&hess;
            let lu = neg.partial_piv_lu();
            let g = Mat::from_fn(k1, 1, |i, _| s.grad[i]);
            let mut step = faer::linalg::solvers::Solve::solve(&lu, &g);
            if neg[(k1 - 1, k1 - 1)] <= 0.0 {
                // Not concave in alpha here: double or halve alpha alone, uphill.
                step = Mat::from_fn(k1, 1, |i, _| {
                    if i + 1 < k1 {
                        0.0
                    } else if s.grad[i] > 0.0 {
                        alpha
                    } else {
                        -alpha / 2.0
                    }
                });
            }
            let mut t = 1.0;
            let mut next: Vec<f64>;
            loop {
                next = (0..k1).map(|i| theta[i] + t * step[(i, 0)]).collect();
                if next[k1 - 1] > 0.0 {
                    break;
                }
                t /= 2.0;
            }
            let size = (0..k1).fold(0.0f64, |m, i| m.max((t * step[(i, 0)]).abs()));
            if size <= 1e-13 * theta.iter().fold(1.0f64, |m, v| m.max(v.abs())) {
                let cov = faer::linalg::solvers::DenseSolveCore::inverse(&lu);
                return Ok((next, cov, s.loglik, iteration));
            }
            if s.loglik < last_ll - 1e-9 * last_ll.abs() && iteration > 50 {
                break;
            }
            last_ll = s.loglik;
            theta = next;
        }
        Err(AlgoError::Numeric(
            "pooled negative binomial did not converge".into(),
        ))
    };
    let ybar = (0..n_rows).map(|i| rows.weight(i) * rows.y[i]).sum::<f64>() / wnobs;
    let mut start = poisson.coef.clone();
    start.push(start_alpha(&poisson, ybar));
    let (coef, cov, ll, iterations) = fit(Model::Full, start)?;
    let const0 = if rows.has_offset() {
        poisson.coef.first().copied().unwrap_or(0.0)
    } else {
        ybar.ln()
    };
    let (_, _, llnull, _) = fit(Model::Null, vec![const0, coef[coef.len() - 1]])?;
    let nb = NegativeBinomial {
        full: Some(Fitted {
            coef,
            cov,
            loglik: ll,
            steps: vec![0.0; iterations],
        }),
        rows: n_rows,
        n: wnobs,
        ..NegativeBinomial::new(config.clone(), params.clone())
    };
    Ok(nb.estimates(llnull))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digamma_and_trigamma_match_known_values() {
        // ψ(1) = -γ, ψ'(1) = π²/6, ψ(0.5) = -γ - 2 ln 2.
        let gamma = 0.577_215_664_901_532_9;
        assert!((digamma(1.0) + gamma).abs() < 2e-15);
        assert!((digamma(0.5) + gamma + 2.0 * 2f64.ln()).abs() < 1e-14);
        assert!((trigamma(1.0) - std::f64::consts::PI.powi(2) / 6.0).abs() < 1e-14);
        let (d, t) = gamma_differences(3.0, 2.5);
        assert!((d - (digamma(5.5) - digamma(2.5))).abs() < 1e-14);
        assert!((t - (trigamma(5.5) - trigamma(2.5))).abs() < 1e-14);
    }

    /// The analytic gradient and Hessian are the derivatives of the log-likelihood.
    #[test]
    fn sums_are_the_derivatives_of_the_likelihood() {
        let n = 40;
        let x = Mat::from_fn(n, 2, |i, j| ((i * (3 + j)) % 7) as f64 / 3.0 - 1.0);
        let y: Vec<f64> = (0..n).map(|i| ((i * 5) % 9) as f64).collect();
        let data = LocalData::new(x, Some(y));
        let mut config = AlgorithmConfig::ols(&["a", "b"]);
        let params = GlmParams {
            family: Family::NegativeBinomial,
            link: crate::scenario::Link::Log,
            offset: None,
            exposure: None,
            weights: None,
            max_iter: 100,
            tol: 1e-10,
        };
        config.params = super::super::Params::Glm(params.clone());
        let beta = [0.7, 0.2, -0.3];
        let alpha = 0.4;
        let at = |b: &[f64], a: f64| sums(&data, &params, true, Model::Full, b, a).unwrap();
        let s = at(&beta, alpha);
        let h = 1e-6;
        for j in 0..4 {
            let shift = |d: f64| {
                let mut b = beta.to_vec();
                let mut a = alpha;
                if j < 3 {
                    b[j] += d;
                } else {
                    a += d;
                }
                at(&b, a)
            };
            let (up, down) = (shift(h), shift(-h));
            let g = (up.loglik - down.loglik) / (2.0 * h);
            assert!(
                (g - s.grad[j]).abs() < 1e-6 * g.abs().max(1.0),
                "grad {j}: {g} vs {}",
                s.grad[j]
            );
            for i in 0..4 {
                let hd = (up.grad[i] - down.grad[i]) / (2.0 * h);
                let got = s.hess[i * 4 + j];
                assert!(
                    (hd - got).abs() < 1e-5 * hd.abs().max(1.0),
                    "hess {i},{j}: {hd} vs {got}"
                );
            }
        }
    }
}
