//! What a site's target looks like, described without sending it: the numbers the report's
//! box plots draw (the simulation knows every site's rows; no site sends these).

use serde::{Deserialize, Serialize};

/// A target's distribution at one site: its size, mean and standard deviation (ddof 1), and
/// its 10th, 25th, 50th, 75th and 90th percentiles (linear interpolation, as numpy's default).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Outcome {
    pub n: usize,
    pub mean: f64,
    pub sd: f64,
    pub percentiles: [f64; 5],
}

impl Outcome {
    /// The percentiles reported, in order.
    pub const AT: [f64; 5] = [10.0, 25.0, 50.0, 75.0, 90.0];

    pub fn of(values: &[f64]) -> Option<Outcome> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n as f64;
        let sd = if n > 1 {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        let at = |q: f64| {
            let h = (n - 1) as f64 * q / 100.0;
            let (lo, frac) = (h.floor() as usize, h - h.floor());
            v[lo] + frac * (v[(lo + 1).min(n - 1)] - v[lo])
        };
        Some(Outcome {
            n,
            mean,
            sd,
            percentiles: Outcome::AT.map(at),
        })
    }
}
