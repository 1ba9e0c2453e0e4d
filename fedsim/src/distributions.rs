//! Tail probabilities and quantiles of the normal, Student t, F and chi² distributions, accurate
//! to a few units in the last place, as the P-values and intervals of statsmodels' summaries are.
//!
//! statrs, used before, is off by up to 1e-10 (relative) in the normal tail and 7e-12 in t's: no
//! check could see it, since both sides used it. Here:
//! - the normal tail is `erfc` (FreeBSD's msun via the `libm` crate, within an ulp), as scipy's
//!   `ndtr` computes it;
//! - t and F tails are the regularized incomplete beta function I_x(a, b), by DiDonato and
//!   Morris's continued fraction, on the side of the mean where it converges, with its prefactor
//!   x^a (1-x)^b / (a B(a, b)) taken in logarithms in which nothing cancels: ln Γ(a) - ln Γ(a+b)
//!   by Stirling's series for large arguments (an ulp-accurate ln Γ of 200 alone is off by 1e-13
//!   in absolute terms), and 1 - x passed in, never formed by subtraction;
//! - chi² with whole degrees of freedom is a finite sum of positive terms (Poisson's, and erfc
//!   for odd degrees);
//! - quantiles are Newton's method on those tails.
//!
//! `tests` holds spot values; `tests/distributions.rs` holds them against mpmath (50 digits) and
//! scipy over a grid (`test_data/distributions.jsonl`, made by `test_data/make_reference.py`).

use std::f64::consts::{FRAC_1_SQRT_2, PI};

/// P(Z > z) for a standard normal Z.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * libm::erfc(z * FRAC_1_SQRT_2)
}

/// P(|Z| > |z|), a two-sided normal P-value.
pub fn normal_two_sided(z: f64) -> f64 {
    libm::erfc(z.abs() * FRAC_1_SQRT_2)
}

pub fn normal_pdf(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (2.0 * PI).sqrt()
}

/// The z with P(Z > z) = `q` (0 < q < 1): Newton's method on the tail from a rough rational
/// start (Abramowitz and Stegun 26.2.23, |error| < 4.5e-4).
pub fn normal_isf(q: f64) -> f64 {
    if q.is_nan() || q <= 0.0 || q >= 1.0 {
        return f64::NAN;
    }
    if q == 0.5 {
        return 0.0;
    }
    if q > 0.5 {
        return -normal_isf(1.0 - q);
    }
    let t = (-2.0 * q.ln()).sqrt();
    let mut z = t
        - (2.515517 + 0.802853 * t + 0.010328 * t * t)
            / (1.0 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t * t * t);
    for _ in 0..8 {
        let step = (normal_sf(z) - q) / normal_pdf(z);
        z += step;
        if step.abs() <= 1e-16 * z.abs() {
            break;
        }
    }
    z
}

/// ln Γ(x) for x > 0.
fn ln_gamma(x: f64) -> f64 {
    libm::lgamma(x)
}

/// Stirling's correction ω(z) = ln Γ(z) - [(z - ½) ln z - z + ½ ln 2π], for z ≥ 10 (the series'
/// terms fall below 1e-20 there).
fn stirling_tail(z: f64) -> f64 {
    // B_2k / (2k (2k-1)) for k = 1..8.
    const C: [f64; 8] = [
        1.0 / 12.0,
        -1.0 / 360.0,
        1.0 / 1260.0,
        -1.0 / 1680.0,
        1.0 / 1188.0,
        -691.0 / 360360.0,
        1.0 / 156.0,
        -3617.0 / 122400.0,
    ];
    let r = 1.0 / (z * z);
    let mut sum = 0.0;
    let mut power = 1.0 / z;
    for c in C {
        sum += c * power;
        power *= r;
    }
    sum
}

/// ln B(a, b), with ln Γ(big) - ln Γ(big + small) from Stirling's series when the bigger
/// argument is 10 or more, so that no two large logarithms cancel.
fn ln_beta(a: f64, b: f64) -> f64 {
    let (small, big) = if a < b { (a, b) } else { (b, a) };
    if big < 10.0 {
        return ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b);
    }
    // ln Γ(big) - ln Γ(big + small)
    //   = -(big - ½) ln(1 + small/big) - small ln(big + small) + small + ω(big) - ω(big + small)
    let diff = -(big - 0.5) * (small / big).ln_1p() - small * (big + small).ln()
        + small
        + stirling_tail(big)
        - stirling_tail(big + small);
    ln_gamma(small) + diff
}

/// x^a y^b / B(a, b), with y = 1 - x given (never formed by subtraction). The logarithm of
/// whichever is near 1 is taken as ln(1 - other): with a a million, an x rounded to the last bit
/// would otherwise cost 1e-10 in x^a.
fn beta_front(a: f64, b: f64, x: f64, y: f64) -> f64 {
    if a >= 10.0 && b >= 10.0 {
        // Both large: Stirling's formula for all three Γ's gathers the prefactor into
        // √(ab / 2π(a+b)) (x (a+b)/a)^a (y (a+b)/b)^b e^(ω(a+b) - ω(a) - ω(b)), whose bases are
        // 1 + (xb - ya)/a and 1 + (ya - xb)/b: the exponents' large parts cancel in closed form,
        // instead of in a sum of logarithms of 100 or more.
        let (u, v) = ((x * b - y * a) / a, (y * a - x * b) / b);
        let omega = stirling_tail(a + b) - stirling_tail(a) - stirling_tail(b);
        let root = (a * b / (2.0 * PI * (a + b))).sqrt();
        return root * (a * u.ln_1p() + b * v.ln_1p() + omega).exp();
    }
    let ln_x = if x > 0.5 { (-y).ln_1p() } else { x.ln() };
    let ln_y = if y > 0.5 { (-x).ln_1p() } else { y.ln() };
    (a * ln_x + b * ln_y - ln_beta(a, b)).exp()
}

/// The continued fraction of I_x(a, b) in DiDonato and Morris's form (ACM TOMS 708, `bfrac`;
/// Boost's `ibeta_fraction2`): I_x(a, b) = x^a y^b / B(a, b) / (b0 + a1/(b1 + a2/(b2 + ...))),
/// with y = 1 - x given. Its terms use `a y - b x + 1 + m (2 - x)`, where the plainer Lentz form
/// subtracts numbers near 1 for x near 1 and loses 1e-11 with a a million. Evaluated by the
/// modified Lentz method.
fn beta_fraction(a: f64, b: f64, x: f64, y: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let pair = |m: f64| {
        let den = a + 2.0 * m - 1.0;
        let an = (a + m - 1.0) * (a + b + m - 1.0) * m * (b - m) * x * x / (den * den);
        let bn = m
            + m * (b - m) * x / den
            + (a + m) * (a * y - b * x + 1.0 + m * (2.0 - x)) / (a + 2.0 * m + 1.0);
        (an, bn)
    };
    let nonzero = |v: f64| if v == 0.0 { TINY } else { v };
    // b0, the m = 0 term, written out (its other parts are 0 / 0 when a = 1).
    let mut f = nonzero(a * (a * y - b * x + 1.0) / (a + 1.0));
    let (mut c, mut d) = (f, 0.0);
    for m in 1..100_000 {
        let (an, bn) = pair(f64::from(m));
        d = 1.0 / nonzero(bn + an * d);
        c = nonzero(bn + an / c);
        let delta = c * d;
        f *= delta;
        if (delta - 1.0).abs() <= f64::EPSILON / 2.0 {
            break;
        }
    }
    f
}

/// The regularized incomplete beta function I_x(a, b), with y = 1 - x given.
pub fn ibeta(a: f64, b: f64, x: f64, y: f64) -> f64 {
    if a.is_nan() || b.is_nan() || a <= 0.0 || b <= 0.0 || !(0.0..=1.0).contains(&x) {
        return f64::NAN;
    }
    if x == 0.0 {
        return 0.0;
    }
    if y == 0.0 {
        return 1.0;
    }
    // The fraction converges fast below the mean; above it, by symmetry, 1 - I_y(b, a) (which is
    // then at least about ½, so the subtraction costs nothing).
    if x < a / (a + b) {
        beta_front(a, b, x, y) / beta_fraction(a, b, x, y)
    } else {
        1.0 - beta_front(b, a, y, x) / beta_fraction(b, a, y, x)
    }
}

/// P(|T| > |t|) for Student's t with `df` degrees of freedom: I_x(df/2, ½), x = df / (df + t²).
pub fn t_two_sided(t: f64, df: f64) -> f64 {
    if df.is_nan() || df <= 0.0 || t.is_nan() {
        return f64::NAN;
    }
    if t.is_infinite() {
        return 0.0;
    }
    let t2 = t * t;
    let (x, y) = (df / (df + t2), t2 / (df + t2));
    ibeta(df / 2.0, 0.5, x, y).min(1.0)
}

/// P(T > t) for Student's t with `df` degrees of freedom.
pub fn t_sf(t: f64, df: f64) -> f64 {
    let half = 0.5 * t_two_sided(t, df);
    if t >= 0.0 {
        half
    } else {
        1.0 - half
    }
}

fn t_pdf(t: f64, df: f64) -> f64 {
    (-(df + 1.0) / 2.0 * (t * t / df).ln_1p() - 0.5 * df.ln() - ln_beta(df / 2.0, 0.5)).exp()
}

/// The t with P(T > t) = `q` for Student's t with `df` degrees of freedom (0 < q ≤ ½): Newton's
/// method from the Cornish-Fisher expansion around the normal quantile.
pub fn t_isf(q: f64, df: f64) -> f64 {
    if q.is_nan() || df.is_nan() || q <= 0.0 || q > 0.5 || df <= 0.0 {
        return f64::NAN;
    }
    let z = normal_isf(q);
    let mut t = z
        + (z.powi(3) + z) / (4.0 * df)
        + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * df * df);
    if !t.is_finite() || t <= 0.0 {
        t = z;
    }
    for _ in 0..100 {
        let step = (t_sf(t, df) - q) / t_pdf(t, df);
        // Keep to the positive side, halving a step that would leave it (small df).
        let next = if t + step > 0.0 { t + step } else { t / 2.0 };
        let moved = (next - t).abs();
        t = next;
        if moved <= 1e-15 * t {
            break;
        }
    }
    t
}

/// P(F > f) for Fisher's F with (`d1`, `d2`) degrees of freedom: I_x(d2/2, d1/2),
/// x = d2 / (d2 + d1 f).
pub fn f_sf(f: f64, d1: f64, d2: f64) -> f64 {
    if d1.is_nan() || d2.is_nan() || d1 <= 0.0 || d2 <= 0.0 || f.is_nan() {
        return f64::NAN;
    }
    if f <= 0.0 {
        return 1.0;
    }
    if f.is_infinite() {
        return 0.0;
    }
    let denominator = d2 + d1 * f;
    ibeta(d2 / 2.0, d1 / 2.0, d2 / denominator, d1 * f / denominator)
}

/// P(X > x) for chi² with `df` degrees of freedom, a whole number: Q(df/2, x/2) as a finite sum
/// of positive terms, e^(-x/2) Σ (x/2)^j / j! for even df, with erfc(√(x/2)) added and
/// half-integer powers for odd df. The sum is taken in logarithms, so that neither e^(-x/2) nor
/// a term underflows or overflows on its own.
pub fn chi2_sf(x: f64, df: u32) -> f64 {
    if x.is_nan() || df == 0 {
        return f64::NAN;
    }
    if x <= 0.0 {
        return 1.0;
    }
    let h = x / 2.0;
    let terms: Vec<f64> = if df.is_multiple_of(2) {
        (0..df / 2)
            .map(|j| f64::from(j) * h.ln() - ln_gamma(f64::from(j) + 1.0))
            .collect()
    } else {
        (0..df / 2)
            .map(|j| (f64::from(j) + 0.5) * h.ln() - ln_gamma(f64::from(j) + 1.5))
            .collect()
    };
    let poisson = match terms.iter().copied().reduce(f64::max) {
        Some(top) => {
            let sum: f64 = terms.iter().map(|t| (t - top).exp()).sum();
            (top + sum.ln() - h).exp()
        }
        None => 0.0,
    };
    if df.is_multiple_of(2) {
        poisson
    } else {
        libm::erfc(h.sqrt()) + poisson
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64, rel: f64) {
        assert!(
            (got - want).abs() <= rel * want.abs(),
            "{got:e} vs {want:e}: {:e}",
            (got - want).abs() / want.abs()
        );
    }

    /// Values from mpmath at 50 digits (see tests/distributions.rs for the grid), as mpmath
    /// prints them.
    #[test]
    #[allow(clippy::excessive_precision)]
    fn spot_values() {
        close(normal_isf(0.025), 1.959963984540054, 1e-15);
        close(normal_two_sided(1.959963984540054), 0.05, 1e-15);
        close(t_isf(0.025, 10.0), 2.2281388519862747, 1e-15);
        close(t_isf(0.025, 1.0), 12.706204736174705, 1e-14);
        close(chi2_sf(3.0, 2), (-1.5f64).exp(), 1e-15);
        close(t_two_sided(2.0, 3.0), 0.13932596855884318, 1e-14);
        close(f_sf(2.0, 3.0, 10.0), 0.17800740737517541, 1e-14);
    }
}
