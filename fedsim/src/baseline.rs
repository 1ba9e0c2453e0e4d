//! The centralised baseline: the same analysis on the pooled rows, by a different route.
//!
//! OLS here is a tall-skinny QR of `[1 X y]`: rayon factors row chunks in parallel, the stacked R
//! factors are factored again (faer), and everything follows from the final R. QR never forms
//! X'X, so this checks the federated normal equations against a numerically independent method.

use faer::Mat;
use rayon::prelude::*;

use crate::algorithms::{t_pvalues, AlgoError, AlgorithmConfig, Estimates, LocalData};
use crate::scenario::AlgorithmKind;

pub fn compute(config: &AlgorithmConfig, data: &LocalData) -> Result<Estimates, AlgoError> {
    match config.kind {
        AlgorithmKind::LinearRegression => ols(config, data),
        other => Err(AlgoError::Protocol(format!(
            "no baseline for {}",
            other.as_str()
        ))),
    }
}

/// Rows per chunk: enough to amortise a QR, few enough that every core gets work.
fn chunk_rows(n: usize, cols: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    (n / (4 * threads)).max(8 * cols).max(256)
}

/// R factor of the row-stack of `a`, computed chunk-wise in parallel.
fn tsqr_r(a: &Mat<f64>) -> Mat<f64> {
    let (n, p) = (a.nrows(), a.ncols());
    let chunk = chunk_rows(n, p);
    let starts: Vec<usize> = (0..n).step_by(chunk).collect();
    starts
        .into_par_iter()
        .map(|s| a.subrows(s, chunk.min(n - s)).qr().thin_R().to_owned())
        .reduce_with(|top, bottom| {
            let stacked = Mat::from_fn(top.nrows() + bottom.nrows(), p, |i, j| {
                if i < top.nrows() {
                    top[(i, j)]
                } else {
                    bottom[(i - top.nrows(), j)]
                }
            });
            stacked.qr().thin_R().to_owned()
        })
        .unwrap_or_else(|| Mat::zeros(0, p))
}

fn ols(config: &AlgorithmConfig, data: &LocalData) -> Result<Estimates, AlgoError> {
    let y = data
        .y
        .as_deref()
        .ok_or_else(|| AlgoError::Data("no target".into()))?;
    let (n, d) = (data.x.nrows(), data.x.ncols());
    let c = usize::from(config.intercept);
    let p = d + c;
    if n <= p {
        return Err(AlgoError::Numeric(format!("{n} rows cannot fit {p} terms")));
    }
    let a = Mat::from_fn(n, p + 1, |i, j| match j {
        _ if j < c => 1.0,
        _ if j < p => data.x[(i, j - c)],
        _ => y[i],
    });
    let r = tsqr_r(&a);
    if r.nrows() < p + 1 {
        return Err(AlgoError::Numeric("too few rows for the QR".into()));
    }
    let rxx = r.submatrix(0, 0, p, p).to_owned();
    let diag_max = (0..p).map(|i| rxx[(i, i)].abs()).fold(0.0, f64::max);
    if let Some(j) = (0..p).find(|&i| rxx[(i, i)].abs() <= diag_max * 1e-13) {
        return Err(AlgoError::Numeric(format!(
            "the design matrix is singular at term {:?}",
            config.terms().get(j).cloned().unwrap_or_default()
        )));
    }
    let mut coef = Mat::from_fn(p, 1, |i, _| r[(i, p)]);
    rxx.as_ref().solve_upper_triangular_in_place(coef.as_mut());
    let coef: Vec<f64> = (0..p).map(|i| coef[(i, 0)]).collect();
    let rss = r[(p, p)].powi(2);
    // (X'X)^-1 = R^-1 R^-T: its diagonal is the squared row norms of R^-1.
    let mut rinv = Mat::<f64>::identity(p, p);
    rxx.as_ref().solve_upper_triangular_in_place(rinv.as_mut());
    let df = (n - p) as f64;
    let sigma2 = rss / df;
    let se: Vec<f64> = (0..p)
        .map(|i| (sigma2 * (0..p).map(|j| rinv[(i, j)].powi(2)).sum::<f64>()).sqrt())
        .collect();
    let tss = if config.intercept {
        let mean = y.par_iter().sum::<f64>() / n as f64;
        y.par_iter().map(|v| (v - mean).powi(2)).sum::<f64>()
    } else {
        y.par_iter().map(|v| v * v).sum::<f64>()
    };
    let t: Vec<f64> = coef.iter().zip(&se).map(|(b, s)| b / s).collect();
    Ok(Estimates {
        n,
        terms: config.terms(),
        p: t_pvalues(&t, df),
        coef,
        se,
        t,
        r2: Some(1.0 - rss / tss),
        sigma2: Some(sigma2),
        ..Default::default()
    })
}
