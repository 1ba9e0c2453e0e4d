//! The centralised baseline: the same analysis on the pooled rows, by a different route.
//!
//! OLS here is a tall-skinny QR of `[1 X y]`: rayon factors row chunks in parallel, the stacked R
//! factors are factored again (faer), and everything follows from the final R. QR never forms
//! X'X, so this checks the federated normal equations against a numerically independent method.
//!
//! SVD is a QR too, of the standardised rows, but folded a block at a time into each thread's R
//! ([`streamed_r`]), the rows shaped a block at a time from the plan ([`compute_pooled`]): a
//! high-dimensional data set is held once, by the plan, and the work space is a few blocks of
//! rows, neither a shaped nor a standardised copy of the data.
//!
//! Every route checks the cancel flag between chunks and iterations; the run waits for it on a
//! thread of its own (see [`crate::sys::cancel::wait_for`]), so a cancel never waits for a dense step.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::reborrow::ReborrowMut;
use faer::{Mat, MatMut, Par};
use rayon::prelude::*;
use std::ops::Range;

use crate::algorithms::linreg::solve_scaled;
use crate::algorithms::{
    logreg, t_pvalues, z_pvalues, AlgoError, AlgorithmConfig, Estimates, LocalData, Newton, Params,
    SvdParams,
};

/// The pooled answer of a built-in analysis; an external one's baseline is its own pooled
/// command (see `algorithms::external::pooled`), run by the pipeline.
pub fn compute(config: &AlgorithmConfig, data: &LocalData) -> Result<Estimates, AlgoError> {
    match &config.params {
        Params::LinearRegression => ols(config, data),
        Params::LogisticRegression(newton) => logit(config, newton, data),
        Params::Glm(g) if g.family == crate::scenario::Family::NegativeBinomial => {
            let poisson = crate::algorithms::glm::GlmParams {
                family: crate::scenario::Family::Poisson,
                ..g.clone()
            };
            let start = crate::algorithms::glm::pooled(config, &poisson, data, least_squares)?;
            crate::algorithms::negbin::pooled(config, g, data, start)
        }
        Params::Glm(g) => crate::algorithms::glm::pooled(config, g, data, least_squares),
        Params::Svd(p) => {
            let shaped = |r: Range<usize>| {
                Ok(LocalData::new(
                    data.x.subrows(r.start, r.len()).to_owned(),
                    None,
                ))
            };
            svd(
                config,
                p,
                &Pooled {
                    rows: data.x.nrows(),
                    shaped: &shaped,
                },
            )
        }
        Params::KaplanMeier(k) => crate::algorithms::kaplan_meier::pooled(k, data),
        Params::Crosstab(t) => crate::algorithms::crosstab::pooled(config, t, data),
        Params::Describe(p) => crate::algorithms::describe::pooled(config, p, data),
        Params::Cox(c) => crate::algorithms::cox::pooled(config, c, data),
        Params::External(_) => Err(AlgoError::Protocol(
            "an external algorithm's baseline is its pooled command".into(),
        )),
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
        .map(|s| {
            if crate::sys::cancel::requested() {
                // The result is thrown away: stop factoring.
                return Mat::zeros(p, p);
            }
            a.subrows(s, chunk.min(n - s)).qr().thin_R().to_owned()
        })
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
        // Column j is a combination of the ones before it: R[..j, ..j] c = R[..j, j].
        let mut c = Mat::from_fn(j, 1, |i, _| rxx[(i, j)]);
        rxx.submatrix(0, 0, j, j)
            .solve_upper_triangular_in_place(c.as_mut());
        let null: Vec<f64> = (0..p)
            .map(|i| match i {
                _ if i < j => -c[(i, 0)],
                _ if i == j => 1.0,
                _ => 0.0,
            })
            .collect();
        let norm = |i: usize| (0..=i).map(|k| rxx[(k, i)].powi(2)).sum::<f64>().sqrt();
        let weights: Vec<f64> = (0..p).map(|i| null[i] * norm(i)).collect();
        return Err(AlgoError::Numeric(format!(
            "the design matrix is singular: {}",
            crate::algorithms::linreg::dependence(&config.terms(), &weights, &null)
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
    let mut e = Estimates {
        n,
        terms: config.terms(),
        p: t_pvalues(&t, df),
        coef,
        se,
        t,
        r2: Some(1.0 - rss / tss),
        sigma2: Some(sigma2),
        ..Default::default()
    };
    e.add_ols_summary(rss, tss, config.intercept);
    Ok(e)
}

/// The least-squares solution of `a b = z` and (A'A)^-1, by the parallel QR of `[a z]`: a GLM's
/// pooled IRLS steps are solved this way, never through A'A.
fn least_squares(a: &Mat<f64>, z: &[f64]) -> Result<(Vec<f64>, Mat<f64>), AlgoError> {
    let (n, k) = (a.nrows(), a.ncols());
    if n <= k {
        return Err(AlgoError::Numeric(format!("{n} rows cannot fit {k} terms")));
    }
    let az = Mat::from_fn(n, k + 1, |i, j| if j < k { a[(i, j)] } else { z[i] });
    let r = tsqr_r(&az);
    if r.nrows() < k + 1 {
        return Err(AlgoError::Numeric("too few rows for the QR".into()));
    }
    let rkk = r.submatrix(0, 0, k, k).to_owned();
    let diag_max = (0..k).map(|i| rkk[(i, i)].abs()).fold(0.0, f64::max);
    if (0..k).any(|i| rkk[(i, i)].abs() <= diag_max * 1e-13) {
        return Err(AlgoError::Numeric(
            "the weighted design matrix is singular".into(),
        ));
    }
    let mut b = Mat::from_fn(k, 1, |i, _| r[(i, k)]);
    rkk.as_ref().solve_upper_triangular_in_place(b.as_mut());
    let mut rinv = Mat::<f64>::identity(k, k);
    rkk.as_ref().solve_upper_triangular_in_place(rinv.as_mut());
    let inverse = &rinv * rinv.transpose();
    Ok(((0..k).map(|i| b[(i, 0)]).collect(), inverse))
}

/// Pooled Newton-Raphson: gradient and information summed over row chunks in parallel, iterated
/// to full convergence (step below 1e-13 relative).
fn logit(
    config: &AlgorithmConfig,
    newton: &Newton,
    data: &LocalData,
) -> Result<Estimates, AlgoError> {
    let y = data
        .y
        .as_deref()
        .ok_or_else(|| AlgoError::Data("no target".into()))?;
    let (n, d) = (data.x.nrows(), data.x.ncols());
    let p = d + usize::from(config.intercept);
    let chunk = chunk_rows(n, p);
    let terms = config.terms();
    let mut beta = vec![0.0; p];
    for iteration in 1..=newton.max_iter.max(100) {
        crate::sys::cancel::check().map_err(|_| AlgoError::Numeric("cancelled".into()))?;
        let starts: Vec<usize> = (0..n).step_by(chunk).collect();
        let (grad, hess, ll) = starts
            .into_par_iter()
            .map(|s| {
                let rows = chunk.min(n - s);
                let x = data.x.subrows(s, rows).to_owned();
                logreg::stats(&x, &y[s..s + rows], &beta, config.intercept)
            })
            .try_reduce_with(|(g1, h1, l1), (g2, h2, l2)| {
                let g = g1.iter().zip(&g2).map(|(a, b)| a + b).collect();
                Ok((g, &h1 + &h2, l1 + l2))
            })
            .unwrap_or_else(|| Err(AlgoError::Data("no rows".into())))?;
        let (step, cov) = solve_scaled(&hess, &grad, &terms)?;
        let size = step.iter().fold(0.0f64, |m, s| m.max(s.abs()));
        let scale = beta.iter().fold(1.0f64, |m, b| m.max(b.abs()));
        beta.iter_mut().zip(&step).for_each(|(b, s)| *b += s);
        if size <= 1e-13 * scale {
            let se: Vec<f64> = (0..p).map(|j| cov[(j, j)].sqrt()).collect();
            let z: Vec<f64> = beta.iter().zip(&se).map(|(b, s)| b / s).collect();
            let mut e = Estimates {
                n,
                terms,
                p: z_pvalues(&z),
                coef: beta,
                se,
                t: z,
                loglik: Some(ll),
                iterations: Some(iteration),
                ..Default::default()
            };
            e.add_logit_summary(y.iter().sum(), config.intercept);
            return Ok(e);
        }
    }
    Err(AlgoError::Numeric(
        "pooled Newton-Raphson did not converge".into(),
    ))
}

/// The pooled rows as the baseline reads them: how many there are, and any range of them shaped
/// for the algorithm on demand (the plan's design applied to those rows only).
pub struct Pooled<'a> {
    pub rows: usize,
    pub shaped: &'a (dyn Fn(Range<usize>) -> Result<LocalData, AlgoError> + Sync),
}

/// The pooled answer from rows shaped on demand: SVD reads them a block at a time and never
/// holds them whole (a high-dimensional data set is then held once, by the plan, not again
/// shaped); every other kind shapes them all at once and is [`compute`]d.
pub fn compute_pooled(config: &AlgorithmConfig, pooled: &Pooled) -> Result<Estimates, AlgoError> {
    match &config.params {
        Params::Svd(p) => svd(config, p, pooled),
        _ => compute(config, &(pooled.shaped)(0..pooled.rows)?),
    }
}

/// Rows shaped at a time when the SVD reads the pooled rows.
const SHAPED_ROWS: usize = 512;

/// Pooled SVD of the standardised matrix: the R of a tall-skinny QR has the same singular values
/// and right singular vectors, and a dense SVD of the small R gets them all, to rounding.
///
/// Neither the data nor its standardised copy is formed whole: the means and deviations are
/// summed over blocks of rows, in row order (so to the same bits as over whole columns), and
/// each of rayon's threads takes a contiguous share of the rows and folds them, a block at a
/// time, into the R it holds (the block standardised into the rows below that R, then factored
/// in place). The work space is a block per thread however many rows there are.
fn svd(config: &AlgorithmConfig, p: &SvdParams, pooled: &Pooled) -> Result<Estimates, AlgoError> {
    let (n, d) = (pooled.rows, config.features.len());
    // Every block of rows `start..end`, shaped, in order.
    let blocks = |start: usize, end: usize, each: &mut dyn FnMut(usize, &Mat<f64>)| {
        for s in (start..end).step_by(SHAPED_ROWS) {
            let block = (pooled.shaped)(s..(s + SHAPED_ROWS).min(end))?;
            each(s, &block.x);
        }
        Ok::<(), AlgoError>(())
    };
    let mut sum = vec![0.0; d];
    if p.center {
        blocks(0, n, &mut |_, x| {
            for (j, s) in sum.iter_mut().enumerate() {
                *s = x.col(j).iter().fold(*s, |a, v| a + v);
            }
        })?;
    }
    let mean: Vec<f64> = sum.iter().map(|s| s / n as f64).collect();
    let mut ss = vec![0.0; d];
    if p.scale {
        blocks(0, n, &mut |_, x| {
            for (j, s) in ss.iter_mut().enumerate() {
                *s = x.col(j).iter().fold(*s, |a, v| a + (v - mean[j]).powi(2));
            }
        })?;
    }
    let inv_sd: Vec<f64> = ss
        .iter()
        .enumerate()
        .map(|(j, ss)| {
            if !p.scale {
                return Ok(1.0);
            }
            let sd = (ss / (n as f64 - 1.0)).sqrt();
            if sd > 0.0 {
                Ok(1.0 / sd)
            } else {
                Err(AlgoError::Numeric(format!(
                    "column {:?} is constant and cannot be scaled",
                    config.features[j]
                )))
            }
        })
        .collect::<Result<_, _>>()?;
    // Rows `start..` of the standardised matrix, into `out`.
    let standardised = |start: usize, mut out: MatMut<'_, f64>| {
        blocks(start, start + out.nrows(), &mut |s, x| {
            for j in 0..d {
                let x = x.col(j);
                for i in 0..x.nrows() {
                    out[(s - start + i, j)] = (x[i] - mean[j]) * inv_sd[j];
                }
            }
        })
    };
    let r = streamed_r(n, d, &standardised)?;
    crate::sys::cancel::check().map_err(|_| AlgoError::Numeric("cancelled".into()))?;
    let (spectrum, v) = spectrum_and_right_vectors(&r)?;
    drop(r);
    let k = p.k.min(spectrum.len());
    let vectors: Vec<Vec<f64>> = if config.vertical {
        // Sample-side vectors u_i = X v_i / s_i, the ones a vertical federation shares, a block
        // of standardised rows at a time.
        let vk = Mat::from_fn(d, k, |r, c| v[(r, c)]);
        let mut u: Vec<Vec<f64>> = (0..k).map(|_| Vec::with_capacity(n)).collect();
        let mut block = Mat::<f64>::zeros(SHAPED_ROWS, d);
        for start in (0..n).step_by(SHAPED_ROWS) {
            let m = SHAPED_ROWS.min(n - start);
            standardised(start, block.as_mut().subrows_mut(0, m))?;
            let uk = block.as_ref().subrows(0, m) * &vk;
            for (c, col) in u.iter_mut().enumerate() {
                col.extend((0..m).map(|r| uk[(r, c)] / spectrum[c]));
            }
        }
        u
    } else {
        (0..k)
            .map(|c| (0..d).map(|r| v[(r, c)]).collect())
            .collect()
    };
    let sigma = spectrum[..k].to_vec();
    // The total sum of squares is the sum of every squared singular value.
    let total: f64 = spectrum.iter().map(|s| s * s).sum();
    Ok(Estimates {
        n,
        explained_variance: sigma.iter().map(|s| s * s / (n as f64 - 1.0)).collect(),
        explained_variance_ratio: sigma.iter().map(|s| s * s / total).collect(),
        singular_values: sigma,
        spectrum,
        vectors,
        ..Default::default()
    })
}

/// Rows of the standardised matrix written into a block (its first row's index, the block).
type Fill<'a> = dyn Fn(usize, MatMut<'_, f64>) -> Result<(), AlgoError> + Sync + 'a;

/// Rows a block of [`streamed_r`] adds at a time: as many as there are columns (the block then
/// holds twice R's rows, and factoring it costs at most 5/3 of a plain QR of those rows), and no
/// fewer than 512, so narrow data is not factored in slivers.
fn block_rows(cols: usize) -> usize {
    cols.max(512)
}

/// The R factor of an `n x d` matrix whose rows `fill` writes, block by block: each of rayon's
/// threads folds a contiguous share of the rows into its own R, and the threads' R factors are
/// then stacked and factored again. Holds a block of rows (and an R) per thread, whatever `n` is.
fn streamed_r(n: usize, d: usize, fill: &Fill) -> Result<Mat<f64>, AlgoError> {
    let threads = rayon::current_num_threads().max(1);
    let share = n.div_ceil(threads).max(1);
    let shares: Vec<(usize, usize)> = (0..n)
        .step_by(share)
        .map(|s| (s, (s + share).min(n)))
        .collect();
    let folded: Vec<(Mat<f64>, usize)> = shares
        .into_par_iter()
        .map(|(lo, hi)| fold_rows(lo, hi, d, fill))
        .collect::<Result<_, _>>()?;
    // Each share's R stacked under the first one's (its buffer has room: an R has at most d
    // rows, the buffer d + block_rows(d) >= 2d) and factored again.
    let mut shares = folded.into_iter();
    let Some((mut buf, mut have)) = shares.next() else {
        return Ok(Mat::zeros(0, d));
    };
    for (other, rows) in shares {
        if crate::sys::cancel::requested() {
            break;
        }
        buf.as_mut()
            .submatrix_mut(have, 0, rows, d)
            .copy_from(other.as_ref().submatrix(0, 0, rows, d));
        drop(other);
        have = factor_top(buf.as_mut(), have + rows, faer::get_global_parallelism());
    }
    Ok(buf.as_ref().submatrix(0, 0, have, d).to_owned())
}

/// Rows `lo..hi` folded into one R: the buffer (its R in the top rows, upper triangular) and how
/// many rows that R has.
fn fold_rows(lo: usize, hi: usize, d: usize, fill: &Fill) -> Result<(Mat<f64>, usize), AlgoError> {
    let mut buf = Mat::<f64>::zeros(d + block_rows(d), d);
    let (mut have, mut start) = (0, lo);
    while start < hi {
        if crate::sys::cancel::requested() {
            // The result is thrown away: stop factoring.
            break;
        }
        let take = (buf.nrows() - have).min(hi - start);
        fill(start, buf.as_mut().subrows_mut(have, take))?;
        start += take;
        have = factor_top(buf.as_mut(), have + take, Par::Seq);
    }
    Ok((buf, have))
}

/// Factor the top `rows` rows of `buf` in place (Householder QR, no pivoting) and leave only R
/// there: its rows (returned: at most the number of columns) upper triangular, zeros below.
fn factor_top(mut buf: MatMut<'_, f64>, rows: usize, par: Par) -> usize {
    use faer::linalg::qr::no_pivoting::factor;
    let d = buf.ncols();
    let size = rows.min(d);
    if size == 0 {
        return 0;
    }
    let block = factor::recommended_block_size::<f64>(rows, d);
    let mut coeff = Mat::<f64>::zeros(block, size);
    let mut mem = MemBuffer::new(factor::qr_in_place_scratch::<f64>(
        rows,
        d,
        block,
        par,
        Default::default(),
    ));
    factor::qr_in_place(
        buf.rb_mut().subrows_mut(0, rows),
        coeff.as_mut(),
        par,
        MemStack::new(&mut mem),
        Default::default(),
    );
    // Below R's diagonal lie the Householder vectors, and below its rows the rest of them.
    for j in 0..d {
        for i in (j + 1).min(rows)..rows {
            buf[(i, j)] = 0.0;
        }
    }
    size
}

/// Every singular value of `r` (descending) and its right singular vectors; the left ones are
/// not needed, and not computed.
fn spectrum_and_right_vectors(r: &Mat<f64>) -> Result<(Vec<f64>, Mat<f64>), AlgoError> {
    use faer::linalg::svd::{self, ComputeSvdVectors};
    let (m, d) = r.shape();
    let size = m.min(d);
    let mut s = faer::diag::Diag::<f64>::zeros(size);
    let mut v = Mat::<f64>::zeros(d, size);
    let par = faer::get_global_parallelism();
    let mut mem = MemBuffer::new(svd::svd_scratch::<f64>(
        m,
        d,
        ComputeSvdVectors::No,
        ComputeSvdVectors::Thin,
        par,
        Default::default(),
    ));
    svd::svd(
        r.as_ref(),
        s.as_mut(),
        None,
        Some(v.as_mut()),
        par,
        MemStack::new(&mut mem),
        Default::default(),
    )
    .map_err(|e| AlgoError::Numeric(format!("SVD failed: {e:?}")))?;
    Ok(((0..size).map(|i| s[i]).collect(), v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ols_config(features: &[&str]) -> AlgorithmConfig {
        AlgorithmConfig::ols(features)
    }

    /// The pooled QR names a dependent set of columns and its combination, as the federated
    /// Gram route does, so the two sides say the same thing about the same data.
    #[test]
    fn a_dependent_column_is_named_with_its_combination() {
        let n = 50;
        let a: Vec<f64> = (0..n).map(|i| ((i * 7) % 11) as f64).collect();
        let b: Vec<f64> = (0..n).map(|i| ((i * 5) % 13) as f64 * 0.5).collect();
        let x = Mat::from_fn(n, 3, |i, j| match j {
            0 => a[i],
            1 => b[i],
            _ => a[i] - 3.0 * b[i],
        });
        let y = (0..n).map(|i| a[i] + (i % 3) as f64).collect();
        let data = LocalData::new(x, Some(y));
        let e = compute(&ols_config(&["a", "b", "c"]), &data)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("columns `a`, `b` and `c` are linearly dependent (c ≈ a - 3 b)"),
            "{e}"
        );
    }
}
