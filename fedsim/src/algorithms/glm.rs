//! Federated generalised linear models by iteratively reweighted least squares (IRLS), exact:
//! every round each site sends only X'WX, X'Wz and its deviance, Pearson and log-likelihood
//! sums at the point the coordinator names, and the coordinator's weighted least-squares solve
//! is the pooled one, so the fit equals statsmodels' `GLM(...).fit()` to rounding.
//!
//! Rounds:
//! 1. moments: the weighted row count and the target's weighted sum (its mean starts the fit);
//! 2. the intercept-only model with the same offset and weights, fitted by IRLS: its deviance
//!    is the null deviance (statsmodels fits the same null model);
//! 3. the model itself by IRLS, started as statsmodels starts it (`family.starting_mu`), until
//!    the coefficients change by less than `tol` relative to their size.
//!
//! The standard errors are statsmodels' IRLS ones: scale x (X'WX)^-1 with the expected
//! information's weights; the scale is 1 for binomial and Poisson, else Pearson's chi² over the
//! residual degrees of freedom.

use faer::Mat;
use serde::{Deserialize, Serialize};

use super::linreg::solve_scaled;
use super::{
    add_rows, to_rows, z_pvalues, AlgoError, AlgorithmConfig, Estimates, Federated, LocalData,
    Step, Values,
};
use crate::distributions::{normal_isf, normal_pdf, normal_sf};
use crate::scenario::{Family, Link};

/// A GLM's own options, defaults filled in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GlmParams {
    pub family: Family,
    pub link: Link,
    /// Column added to the linear predictor with coefficient 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<String>,
    /// Column whose log is added to the linear predictor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposure: Option<String>,
    /// Frequency weights: row i counts `weights[i]` times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<String>,
    pub max_iter: usize,
    pub tol: f64,
}

impl GlmParams {
    /// The columns the model reads besides the features and the target.
    pub fn columns(&self) -> Vec<String> {
        [&self.offset, &self.exposure, &self.weights]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }
}

impl Link {
    /// g(mu): the linear predictor of a mean.
    pub fn link(self, mu: f64) -> f64 {
        match self {
            Link::Identity => mu,
            Link::Log => mu.ln(),
            Link::Logit => (mu / (1.0 - mu)).ln(),
            Link::Probit => -normal_isf(mu),
            Link::Cloglog => (-(-mu).ln_1p()).ln(),
            Link::InversePower => 1.0 / mu,
            Link::InverseSquared => mu.powi(-2),
            Link::Sqrt => mu.sqrt(),
        }
    }

    /// g^-1(eta): the mean of a linear predictor.
    pub fn inverse(self, eta: f64) -> f64 {
        match self {
            Link::Identity => eta,
            Link::Log => eta.exp(),
            Link::Logit => 1.0 / (1.0 + (-eta).exp()),
            Link::Probit => normal_sf(-eta),
            Link::Cloglog => -(-(eta.exp())).exp_m1(),
            Link::InversePower => 1.0 / eta,
            Link::InverseSquared => eta.powf(-0.5),
            Link::Sqrt => eta * eta,
        }
    }

    /// g'(mu).
    pub fn deriv(self, mu: f64) -> f64 {
        match self {
            Link::Identity => 1.0,
            Link::Log => 1.0 / mu,
            Link::Logit => 1.0 / (mu * (1.0 - mu)),
            Link::Probit => 1.0 / normal_pdf(self.link(mu)),
            Link::Cloglog => 1.0 / ((mu - 1.0) * (-mu).ln_1p()),
            Link::InversePower => -1.0 / (mu * mu),
            Link::InverseSquared => -2.0 / (mu * mu * mu),
            Link::Sqrt => 0.5 / mu.sqrt(),
        }
    }
}

/// Means of a binomial model kept inside (0, 1), as statsmodels clips them.
const FLOAT_EPS: f64 = f64::EPSILON;

/// The families' IRLS pieces. The negative binomial's own likelihood is in `negbin.rs`; here it
/// is the Poisson model that starts its fit.
impl Family {
    /// The mean kept inside the family's range.
    fn clean(self, mu: f64) -> f64 {
        match self {
            Family::Binomial => mu.clamp(FLOAT_EPS, 1.0 - FLOAT_EPS),
            Family::Poisson | Family::NegativeBinomial | Family::Gamma => mu.max(1e-300),
            Family::Gaussian => mu,
        }
    }

    /// V(mu).
    pub fn variance(self, mu: f64) -> f64 {
        match self {
            Family::Gaussian => 1.0,
            Family::Binomial => mu * (1.0 - mu),
            Family::Poisson | Family::NegativeBinomial => mu,
            Family::Gamma => mu * mu,
        }
    }

    /// One row's deviance.
    pub fn unit_deviance(self, y: f64, mu: f64) -> f64 {
        // y ln(y / mu), 0 at y = 0.
        let xlogy = |y: f64, m: f64| if y == 0.0 { 0.0 } else { y * (y / m).ln() };
        match self {
            Family::Gaussian => (y - mu).powi(2),
            Family::Binomial => 2.0 * (xlogy(y, mu) + xlogy(1.0 - y, 1.0 - mu)),
            Family::Poisson | Family::NegativeBinomial => 2.0 * (xlogy(y, mu) - (y - mu)),
            Family::Gamma => 2.0 * ((y - mu) / mu - (y / mu).ln()),
        }
    }

    /// statsmodels' `starting_mu`: halfway to the mean (to 1/2 for binomial).
    fn starting_mu(self, y: f64, ybar: f64) -> f64 {
        match self {
            Family::Binomial => (y + 0.5) / 2.0,
            _ => (y + ybar) / 2.0,
        }
    }

    /// One row's parts of the log-likelihood, to be summed and finished by [`Family::loglik`]
    /// once the scale is known.
    fn loglik_parts(self, y: f64, mu: f64) -> [f64; 3] {
        match self {
            Family::Gaussian => [(y - mu).powi(2), 0.0, 0.0],
            Family::Binomial => [y * mu.ln() + (1.0 - y) * (1.0 - mu).ln(), 0.0, 0.0],
            Family::Poisson | Family::NegativeBinomial => {
                [y * mu.ln() - mu - libm::lgamma(y + 1.0), 0.0, 0.0]
            }
            Family::Gamma => [y.ln(), mu.ln(), y / mu],
        }
    }

    /// The log-likelihood from the summed parts, `n` the weighted rows, at `scale`.
    fn loglik(self, parts: &[f64], n: f64, scale: f64) -> f64 {
        match self {
            Family::Gaussian => {
                -parts[0] / (2.0 * scale) - n / 2.0 * (2.0 * std::f64::consts::PI * scale).ln()
            }
            Family::Binomial | Family::Poisson | Family::NegativeBinomial => parts[0],
            Family::Gamma => {
                let ws = 1.0 / scale;
                n * ws * ws.ln() + ws * (parts[0] - parts[1])
                    - ws * parts[2]
                    - n * libm::lgamma(ws)
                    - parts[0]
            }
        }
    }

    /// Binomial and Poisson have scale 1; the others estimate it.
    fn fixed_scale(self) -> bool {
        matches!(
            self,
            Family::Binomial | Family::Poisson | Family::NegativeBinomial
        )
    }
}

/// Which model a round fits: the intercept-only one (for the null deviance) or the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Model {
    Null,
    Full,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    Moments,
    /// The IRLS sums at `beta`, or, with none, at statsmodels' starting means (`ybar` being the
    /// target's weighted mean).
    Irls {
        model: Model,
        beta: Option<Vec<f64>>,
        ybar: f64,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    Moments {
        rows: u64,
        /// Sum of the weights (the rows with frequency weights).
        n: f64,
        sum_y: f64,
    },
    Irls(Sums),
}

/// One site's IRLS sums at one point.
#[derive(Debug, Serialize, Deserialize)]
pub struct Sums {
    /// Row-major p x p X'WX, and X'Wz.
    pub xtwx: Vec<f64>,
    pub xtwz: Vec<f64>,
    pub deviance: f64,
    pub pearson: f64,
    pub loglik: [f64; 3],
}

/// The columns a GLM reads at a site, checked.
pub(crate) struct Rows<'a> {
    x: &'a Mat<f64>,
    pub y: &'a [f64],
    offset: Option<Vec<f64>>,
    weights: Option<&'a [f64]>,
}

impl<'a> Rows<'a> {
    pub fn of(data: &'a LocalData, p: &GlmParams) -> Result<Rows<'a>, AlgoError> {
        let y = data
            .y
            .as_deref()
            .ok_or_else(|| AlgoError::Data("a glm needs a target column".into()))?;
        let column = |name: &Option<String>| -> Result<Option<&'a [f64]>, AlgoError> {
            match name {
                None => Ok(None),
                Some(n) => data
                    .aux(Some(n))
                    .map(Some)
                    .ok_or_else(|| AlgoError::Data(format!("no column {n:?}"))),
            }
        };
        let offset = match (column(&p.offset)?, column(&p.exposure)?) {
            (Some(o), _) => Some(o.to_vec()),
            (None, Some(e)) => Some(e.iter().map(|v| v.ln()).collect()),
            (None, None) => None,
        };
        Ok(Rows {
            x: &data.x,
            y,
            offset,
            weights: column(&p.weights)?,
        })
    }

    pub fn weight(&self, i: usize) -> f64 {
        self.weights.map_or(1.0, |w| w[i])
    }

    pub fn offset(&self, i: usize) -> f64 {
        self.offset.as_ref().map_or(0.0, |o| o[i])
    }

    pub fn has_offset(&self) -> bool {
        self.offset.is_some()
    }
}

/// One IRLS step's weighted problem at `beta` (or at the starting means): the rows of
/// sqrt(W) X and sqrt(W) z, and the deviance, Pearson and log-likelihood sums. A site sums it
/// into X'WX and X'Wz; the pooled baseline solves it by QR.
struct Weighted {
    xw: Mat<f64>,
    zw: Vec<f64>,
    deviance: f64,
    pearson: f64,
    loglik: [f64; 3],
}

fn weighted(
    rows: &Rows,
    p: &GlmParams,
    intercept: bool,
    model: Model,
    beta: Option<&[f64]>,
    ybar: f64,
) -> Result<Weighted, AlgoError> {
    let (n, d) = (rows.x.nrows(), rows.x.ncols());
    let c = usize::from(intercept || model == Model::Null);
    let k = if model == Model::Null { 1 } else { d + c };
    if let Some(b) = beta {
        if b.len() != k {
            return Err(AlgoError::Protocol(format!(
                "{} coefficients, expected {k}",
                b.len()
            )));
        }
    }
    let value = |i: usize, j: usize| if j < c { 1.0 } else { rows.x[(i, j - c)] };
    let mut xw = Mat::<f64>::zeros(n, k);
    let mut zw = vec![0.0; n];
    let (mut deviance, mut pearson, mut ll) = (0.0, 0.0, [0.0; 3]);
    for i in 0..n {
        let (y, w, off) = (rows.y[i], rows.weight(i), rows.offset(i));
        let (eta, mu) = match beta {
            Some(b) => {
                let eta = off + (0..k).map(|j| value(i, j) * b[j]).sum::<f64>();
                (eta, p.family.clean(p.link.inverse(eta)))
            }
            None => {
                let mu = p.family.starting_mu(y, ybar);
                (p.link.link(mu), mu)
            }
        };
        deviance += w * p.family.unit_deviance(y, mu);
        pearson += w * (y - mu).powi(2) / p.family.variance(mu);
        for (a, b) in ll.iter_mut().zip(p.family.loglik_parts(y, mu)) {
            *a += w * b;
        }
        let g = p.link.deriv(mu);
        let weight = w / (p.family.variance(mu) * g * g);
        if !weight.is_finite() {
            return Err(AlgoError::Numeric(format!(
                "the mean left the {} family's range at row {} (mu = {mu:e}); try another link or check the data",
                p.family.as_str(),
                i + 1
            )));
        }
        let root = weight.sqrt();
        for j in 0..k {
            xw[(i, j)] = root * value(i, j);
        }
        zw[i] = root * (eta - off + (y - mu) * g);
    }
    Ok(Weighted {
        xw,
        zw,
        deviance,
        pearson,
        loglik: ll,
    })
}

/// The IRLS sums of `rows` for `model` at `beta` (or at the starting means): what a site sends.
fn irls_sums(
    rows: &Rows,
    p: &GlmParams,
    intercept: bool,
    model: Model,
    beta: Option<&[f64]>,
    ybar: f64,
) -> Result<Sums, AlgoError> {
    let w = weighted(rows, p, intercept, model, beta, ybar)?;
    let xtwx = w.xw.transpose() * &w.xw;
    let xtwz = (0..w.xw.ncols())
        .map(|j| w.xw.col(j).iter().zip(&w.zw).map(|(a, b)| a * b).sum())
        .collect();
    Ok(Sums {
        xtwx: to_rows(&xtwx),
        xtwz,
        deviance: w.deviance,
        pearson: w.pearson,
        loglik: w.loglik,
    })
}

pub struct Glm {
    config: AlgorithmConfig,
    params: GlmParams,
    rows: u64,
    n: f64,
    ybar: f64,
    model: Model,
    beta: Option<Vec<f64>>,
    /// Steps of the model's own fit (the null model's are not counted).
    steps: Vec<f64>,
    /// IRLS steps in the current model, for the iteration limit.
    taken: usize,
    null_deviance: f64,
    /// The intercept-only model's constant, once fitted.
    null_const: Option<f64>,
}

impl Glm {
    pub fn new(config: AlgorithmConfig, params: GlmParams) -> Self {
        let noisy = config.noisy;
        Glm {
            config,
            params,
            rows: 0,
            n: 0.0,
            ybar: 0.0,
            // Under noise the null model's fit would cost budget for its deviance alone.
            model: if noisy { Model::Full } else { Model::Null },
            beta: None,
            steps: Vec::new(),
            taken: 0,
            null_deviance: 0.0,
            null_const: None,
        }
    }

    /// The target's weighted mean (after the first round).
    pub fn mean(&self) -> f64 {
        self.ybar
    }

    /// The intercept-only model's constant (after the null fit).
    pub fn null_const(&self) -> Option<f64> {
        self.null_const
    }

    fn terms(&self) -> Vec<String> {
        match self.model {
            Model::Null => vec!["const".into()],
            Model::Full => self.config.terms(),
        }
    }

    fn request(&self) -> Request {
        Request::Irls {
            model: self.model,
            beta: self.beta.clone(),
            ybar: self.ybar,
        }
    }

    /// One IRLS step from the summed sums; the estimates when the step is below `tol`.
    fn step(&mut self, s: Sums) -> Result<Option<Box<Estimates>>, AlgoError> {
        let terms = self.terms();
        let k = terms.len();
        let mut xtwx = Mat::<f64>::zeros(k, k);
        add_rows(&mut xtwx, &s.xtwx, "X'WX")?;
        if s.xtwz.len() != k {
            return Err(AlgoError::Protocol(format!(
                "X'Wz has {} values, expected {k}",
                s.xtwz.len()
            )));
        }
        let (next, inverse) = solve_scaled(&xtwx, &s.xtwz, &terms)?;
        if next.iter().any(|b| !b.is_finite()) {
            return Err(AlgoError::Numeric(
                "IRLS diverged: a coefficient is not finite".into(),
            ));
        }
        let Some(beta) = self.beta.replace(next.clone()) else {
            // The first step is from the starting means, not from coefficients.
            return Ok(None);
        };
        let size = beta
            .iter()
            .zip(&next)
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        let scale = beta.iter().fold(1.0f64, |m, b| m.max(b.abs()));
        if self.model == Model::Full {
            self.steps.push(size);
        }
        self.taken += 1;
        // Under noise every planned step is taken: the budget was split over them.
        let go_on = if self.config.noisy {
            self.taken < self.params.max_iter
        } else {
            size > self.params.tol * scale
        };
        if go_on {
            if self.taken >= self.params.max_iter {
                return Err(AlgoError::Numeric(format!(
                    "IRLS did not converge in {} iterations (last change {size:.3e}, tolerance {:.1e}); raise max_iter, or try another link",
                    self.params.max_iter, self.params.tol
                )));
            }
            return Ok(None);
        }
        if self.model == Model::Null {
            self.null_deviance = s.deviance;
            self.null_const = next.first().copied();
            self.model = Model::Full;
            self.beta = None;
            self.taken = 0;
            return Ok(None);
        }
        Ok(Some(Box::new(self.estimates(next, &inverse, &s))))
    }

    /// statsmodels' GLM summary at the converged point.
    fn estimates(&self, coef: Vec<f64>, inverse: &Mat<f64>, s: &Sums) -> Estimates {
        let k = coef.len() as f64;
        let df_model = k - f64::from(u8::from(self.config.intercept));
        let df_resid = self.n - k;
        let family = self.params.family;
        let scale = if family.fixed_scale() {
            1.0
        } else {
            s.pearson / df_resid
        };
        // statsmodels' Gaussian-identity llf is at the maximum-likelihood scale, RSS / n.
        let ll_scale = if family == Family::Gaussian && self.params.link == Link::Identity {
            s.loglik[0] / self.n
        } else {
            scale
        };
        let llf = family.loglik(&s.loglik, self.n, ll_scale);
        let se: Vec<f64> = (0..coef.len())
            .map(|j| (scale * inverse[(j, j)]).sqrt())
            .collect();
        let z: Vec<f64> = coef.iter().zip(&se).map(|(b, s)| b / s).collect();
        let mut e = Estimates {
            n: self.rows as usize,
            terms: self.config.terms(),
            p: z_pvalues(&z),
            coef,
            se,
            t: z,
            loglik: Some(llf),
            df_model: Some(df_model),
            df_resid: Some(df_resid),
            deviance: Some(s.deviance),
            pearson_chi2: Some(s.pearson),
            scale: Some(scale),
            null_deviance: (!self.config.noisy).then_some(self.null_deviance),
            aic: Some(-2.0 * llf + 2.0 * k),
            bic: Some(-2.0 * llf + k * self.n.ln()),
            iterations: Some(self.steps.len()),
            convergence: self.steps.clone(),
            converged: Some(true),
            cov_type: Some("nonrobust".into()),
            ..Default::default()
        };
        e.add_z_conf_int();
        e
    }
}

impl Federated for Glm {
    type Request = Request;
    type Reply = Reply;

    fn local(&self, request: &Request, data: &LocalData) -> Result<Reply, AlgoError> {
        let rows = Rows::of(data, &self.params)?;
        match request {
            Request::Moments => Ok(Reply::Moments {
                rows: data.rows() as u64,
                n: (0..data.rows()).map(|i| rows.weight(i)).sum(),
                sum_y: (0..data.rows()).map(|i| rows.weight(i) * rows.y[i]).sum(),
            }),
            Request::Irls { model, beta, ybar } => Ok(Reply::Irls(irls_sums(
                &rows,
                &self.params,
                self.config.intercept,
                *model,
                beta.as_deref(),
                *ybar,
            )?)),
        }
    }

    fn start(&mut self) -> Request {
        Request::Moments
    }

    fn values(reply: &Reply) -> Vec<f64> {
        match reply {
            Reply::Moments { rows, n, sum_y } => vec![*rows as f64, *n, *sum_y],
            Reply::Irls(s) => [&s.xtwx[..], &s.xtwz, &[s.deviance, s.pearson], &s.loglik].concat(),
        }
    }

    fn with_values(t: &Reply, v: &mut Values) -> Result<Reply, AlgoError> {
        Ok(match t {
            Reply::Moments { .. } => Reply::Moments {
                rows: v.count()?,
                n: v.one()?,
                sum_y: v.one()?,
            },
            Reply::Irls(s) => Reply::Irls(Sums {
                xtwx: v.take(s.xtwx.len())?,
                xtwz: v.take(s.xtwz.len())?,
                deviance: v.one()?,
                pearson: v.one()?,
                loglik: [v.one()?, v.one()?, v.one()?],
            }),
        })
    }

    fn aggregate(&mut self, replies: Vec<Reply>) -> Result<Step<Request>, AlgoError> {
        match super::sum_replies::<Glm>(&replies)? {
            Reply::Moments { rows, n, sum_y } => {
                if n <= 0.0 {
                    return Err(AlgoError::Data("no rows to fit".into()));
                }
                self.rows = rows;
                self.n = n;
                self.ybar = sum_y / n;
                Ok(Step::Next(self.request()))
            }
            Reply::Irls(s) => match self.step(s)? {
                Some(e) => Ok(Step::Done(e)),
                None => Ok(Step::Next(self.request())),
            },
        }
    }
}

/// The pooled fit, by a different route: each IRLS step is a weighted least-squares solve by
/// QR of sqrt(W) X (never forming X'WX), on the pooled rows. Returns the same summary.
pub fn pooled(
    config: &AlgorithmConfig,
    params: &GlmParams,
    data: &LocalData,
    qr_solve: impl Fn(&Mat<f64>, &[f64]) -> Result<(Vec<f64>, Mat<f64>), AlgoError>,
) -> Result<Estimates, AlgoError> {
    let rows = Rows::of(data, params)?;
    let n = data.x.nrows();
    let wnobs: f64 = (0..n).map(|i| rows.weight(i)).sum();
    let ybar = (0..n).map(|i| rows.weight(i) * rows.y[i]).sum::<f64>() / wnobs;
    let (mut null_deviance, mut null_done) = (0.0, false);
    for model in [Model::Null, Model::Full] {
        let mut beta: Option<Vec<f64>> = None;
        for iteration in 0..=params.max_iter.max(300) {
            crate::sys::cancel::check().map_err(|_| AlgoError::Numeric("cancelled".into()))?;
            let w = weighted(
                &rows,
                params,
                config.intercept,
                model,
                beta.as_deref(),
                ybar,
            )?;
            let (next, inverse) = qr_solve(&w.xw, &w.zw)?;
            let done = beta.as_ref().is_some_and(|b| {
                let size = b
                    .iter()
                    .zip(&next)
                    .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
                size <= 1e-13 * b.iter().fold(1.0f64, |m, x| m.max(x.abs()))
            });
            if done && model == Model::Null {
                null_deviance = w.deviance;
                null_done = true;
                break;
            }
            if done {
                let glm = Glm {
                    config: config.clone(),
                    params: params.clone(),
                    rows: n as u64,
                    n: wnobs,
                    ybar,
                    model,
                    beta: None,
                    steps: vec![0.0; iteration],
                    taken: iteration,
                    null_deviance,
                    null_const: None,
                };
                return Ok(glm.estimates(
                    next,
                    &inverse,
                    &Sums {
                        xtwx: Vec::new(),
                        xtwz: Vec::new(),
                        deviance: w.deviance,
                        pearson: w.pearson,
                        loglik: w.loglik,
                    },
                ));
            }
            beta = Some(next);
        }
        if !null_done {
            return Err(AlgoError::Numeric(
                "the pooled null model did not converge".into(),
            ));
        }
    }
    Err(AlgoError::Numeric("pooled IRLS did not converge".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sites' replies are summed field by field into one of their shape; a reply of
    /// another variant or length is refused, not added in.
    #[test]
    fn replies_sum_into_one_of_their_shape() {
        let moments = |rows, n, sum_y| Reply::Moments { rows, n, sum_y };
        let total = super::super::sum_replies::<Glm>(&[moments(3, 3.0, 1.5), moments(4, 5.0, 2.0)])
            .unwrap();
        assert!(matches!(total, Reply::Moments { rows: 7, n, sum_y } if n == 8.0 && sum_y == 3.5));
        let irls = |k: usize| {
            Reply::Irls(Sums {
                xtwx: vec![1.0; k * k],
                xtwz: vec![1.0; k],
                deviance: 1.0,
                pearson: 1.0,
                loglik: [1.0; 3],
            })
        };
        let e = super::super::sum_replies::<Glm>(&[irls(2), irls(3)]).unwrap_err();
        assert!(e.to_string().contains("different shapes"), "{e}");
        let e = super::super::sum_replies::<Glm>(&[moments(1, 1.0, 1.0), irls(1)]).unwrap_err();
        assert!(e.to_string().contains("different shapes"), "{e}");
    }
}
