//! Secure aggregation by pairwise additive masks (the core of Bonawitz et al.'s protocol).
//!
//! Every pair of sites shares a seed. For each round, site i adds the mask stream of each pair
//! (i, j) with j after it and subtracts those with j before it, so the masks cancel exactly in
//! the sum over the sites taking part. The coordinator sees uniformly random numbers per site and
//! learns only the sum.
//!
//! The arithmetic is exact. Values are fixed-point numbers with 64 fractional bits in wrapping
//! 128-bit integers, so the masks cancel to the last bit. The result differs from a plain
//! floating-point sum by at most one rounding to f64, plus 2^-64 per value per site from
//! quantisation. The sum over the sites taking part must not wrap: with n of them, each value's
//! fixed-point magnitude is kept within (2^127 - 1) / n, i.e. |value| below 2^63 / n, and a
//! value past that is refused rather than summed into a wrong answer.
//!
//! In a real deployment the pair seeds come from a key agreement between the sites. Here prep
//! draws them and writes each into the two sites' own `.env` files only; the controller keeps none.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sha2::Sha256;

const SCALE: f64 = 18_446_744_073_709_551_616.0; // 2^64
/// 2^63: the largest magnitude 128-bit fixed point with 64 fractional bits holds.
const RANGE: f64 = 9_223_372_036_854_775_808.0;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SecAggError {
    #[error(
        "value {value:e} is too large for secure aggregation over {sites} sites: their sum could \
         overflow (each value must stay below 2^63 / {sites} = {:e})",
        RANGE / *sites as f64
    )]
    TooLarge { value: f64, sites: usize },
    #[error("value is not finite")]
    NotFinite,
    #[error("no pair seed shared with site {0:?}")]
    NoSeed(String),
    #[error("sites sent {0} and {1} masked values")]
    Length(usize, usize),
}

/// The seeds one site shares with each other site, by site name.
pub type PairSeeds = BTreeMap<String, [u8; 32]>;

/// Encode `FEDSIM_PAIR_SEEDS`: `site:hex,site:hex`.
pub fn encode_seeds(seeds: &PairSeeds) -> String {
    seeds
        .iter()
        .map(|(s, k)| format!("{s}:{}", hex::encode(k)))
        .collect::<Vec<_>>()
        .join(",")
}

pub fn decode_seeds(text: &str) -> Option<PairSeeds> {
    text.split(',')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (site, h) = pair.split_once(':')?;
            let bytes: [u8; 32] = hex::decode(h).ok()?.try_into().ok()?;
            Some((site.to_string(), bytes))
        })
        .collect()
}

/// Fresh seeds for every pair of `sites`: what each site gets.
pub fn pair_seeds(sites: &[String]) -> Vec<PairSeeds> {
    let mut out = vec![PairSeeds::new(); sites.len()];
    for i in 0..sites.len() {
        for j in i + 1..sites.len() {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).expect("the OS random source is available");
            out[i].insert(sites[j].clone(), seed);
            out[j].insert(sites[i].clone(), seed);
        }
    }
    out
}

/// `v` in fixed point, if `sites` such values can be summed without wrapping.
/// The smallest magnitude a value keeps under secure aggregation: one unit of the fixed point
/// (2^-64, about 5.4e-20). Smaller values count as 0 in the sum; each value is rounded to it.
pub const RESOLUTION: f64 = 1.0 / SCALE;

/// How many of `values` are not 0 but below [`RESOLUTION`] (they will count as 0).
pub fn below_resolution(values: &[f64]) -> usize {
    values
        .iter()
        .filter(|v| **v != 0.0 && v.abs() < RESOLUTION / 2.0)
        .count()
}

fn to_fixed(v: f64, sites: usize) -> Result<u128, SecAggError> {
    if !v.is_finite() {
        return Err(SecAggError::NotFinite);
    }
    let too_large = SecAggError::TooLarge { value: v, sites };
    // Checked first so the conversion below cannot saturate.
    if v.abs() >= RANGE {
        return Err(too_large);
    }
    let fixed = (v * SCALE).round() as i128;
    // Exact: n values each at most (2^127 - 1) / n in magnitude sum within i128.
    if fixed.unsigned_abs() > i128::MAX as u128 / sites.max(1) as u128 {
        return Err(too_large);
    }
    Ok(fixed as u128)
}

fn from_fixed(x: u128) -> f64 {
    (x as i128) as f64 / SCALE
}

/// The mask stream of one pair for one round.
fn stream(seed: &[u8; 32], round: u32) -> ChaCha20Rng {
    let mut mac = Hmac::<Sha256>::new_from_slice(seed).expect("HMAC takes any key length");
    mac.update(b"fedsim secagg round");
    mac.update(&round.to_be_bytes());
    ChaCha20Rng::from_seed(mac.finalize().into_bytes().into())
}

/// Mask this site's values for `round`, given the sites taking part (in a fixed order).
pub fn mask(
    values: &[f64],
    me: &str,
    active: &[String],
    seeds: &PairSeeds,
    round: u32,
) -> Result<Vec<u128>, SecAggError> {
    // Every site taking part checks against the same count, so no sum of theirs can wrap.
    let sites = active.len().max(1);
    let mut out = values
        .iter()
        .map(|v| to_fixed(*v, sites))
        .collect::<Result<Vec<_>, _>>()?;
    let my_pos = active.iter().position(|s| s == me);
    for (pos, other) in active.iter().enumerate().filter(|(_, s)| s.as_str() != me) {
        let seed = seeds
            .get(other)
            .ok_or_else(|| SecAggError::NoSeed(other.clone()))?;
        let mut rng = stream(seed, round);
        let add = my_pos.is_some_and(|m| m < pos);
        for x in out.iter_mut() {
            let m = ((rng.next_u64() as u128) << 64) | rng.next_u64() as u128;
            *x = if add {
                x.wrapping_add(m)
            } else {
                x.wrapping_sub(m)
            };
        }
    }
    Ok(out)
}

/// Sum masked vectors; the masks cancel and the plain sum comes out.
pub fn unmask_sum(masked: &[Vec<u128>]) -> Result<Vec<f64>, SecAggError> {
    let n = masked.first().map_or(0, Vec::len);
    if let Some(bad) = masked.iter().find(|m| m.len() != n) {
        return Err(SecAggError::Length(n, bad.len()));
    }
    Ok((0..n)
        .map(|k| from_fixed(masked.iter().fold(0u128, |acc, m| acc.wrapping_add(m[k]))))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_cancel_and_hide_each_site() {
        let sites: Vec<String> = (1..=4).map(|i| format!("site-{i}")).collect();
        let seeds = pair_seeds(&sites);
        let values: Vec<Vec<f64>> = (0..4)
            .map(|i| vec![i as f64 + 0.25, -1e6 * i as f64, 3.5e-9])
            .collect();
        let masked: Vec<Vec<u128>> = sites
            .iter()
            .enumerate()
            .map(|(i, s)| mask(&values[i], s, &sites, &seeds[i], 7).unwrap())
            .collect();
        let sum = unmask_sum(&masked).unwrap();
        let want: Vec<f64> = (0..3).map(|k| values.iter().map(|v| v[k]).sum()).collect();
        for (a, b) in sum.iter().zip(&want) {
            assert!((a - b).abs() <= 1e-15 * b.abs().max(1.0), "{a} vs {b}");
        }
        // One site's masked numbers, read as values, are nowhere near its own.
        for (i, m) in masked.iter().enumerate() {
            for (k, x) in m.iter().enumerate() {
                assert!(
                    (from_fixed(*x) - values[i][k]).abs() > 1e6,
                    "site {i} value {k} readable"
                );
            }
        }
        // A subset of sites (after a dropout) cancels among itself.
        let active = &sites[..3];
        let masked: Vec<Vec<u128>> = active
            .iter()
            .enumerate()
            .map(|(i, s)| mask(&values[i], s, active, &seeds[i], 8).unwrap())
            .collect();
        let sum = unmask_sum(&masked).unwrap();
        assert!((sum[0] - (0.25 + 1.25 + 2.25)).abs() < 1e-15);
    }

    #[test]
    fn seeds_round_trip_and_limits_hold() {
        let sites: Vec<String> = vec!["a".into(), "b".into()];
        let seeds = pair_seeds(&sites);
        assert_eq!(seeds[0]["b"], seeds[1]["a"]);
        assert_eq!(decode_seeds(&encode_seeds(&seeds[0])).unwrap(), seeds[0]);
        assert_eq!(
            mask(&[1e19], "a", &sites, &seeds[0], 1),
            Err(SecAggError::TooLarge {
                value: 1e19,
                sites: 2
            })
        );
        assert_eq!(
            mask(&[f64::NAN], "a", &sites, &seeds[0], 1),
            Err(SecAggError::NotFinite)
        );
    }

    #[test]
    fn values_whose_sum_could_wrap_are_refused_naming_the_value() {
        // 3e18 < 2^63 / 2 fits a pair of sites, and their sum comes out exact...
        let v = 3e18;
        let pair: Vec<String> = vec!["a".into(), "b".into()];
        let seeds = pair_seeds(&pair);
        let masked: Vec<Vec<u128>> = (0..2)
            .map(|i| mask(&[v], &pair[i], &pair, &seeds[i], 1).unwrap())
            .collect();
        assert_eq!(unmask_sum(&masked).unwrap(), vec![2.0 * v]);
        // ...but not four: 4 * 3e18 > 2^63 would wrap to a negative sum, so it is refused.
        let four: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        let seeds = pair_seeds(&four);
        let err = mask(&[1.0, -v], "a", &four, &seeds[0], 1).unwrap_err();
        assert_eq!(
            err,
            SecAggError::TooLarge {
                value: -v,
                sites: 4
            }
        );
        let msg = err.to_string();
        assert!(msg.contains("3e18") && msg.contains("4 sites"), "{msg}");
        // The bound is exact: the largest value allowed for 4 sites sums without wrapping.
        let edge = (i128::MAX / 4) as f64 / SCALE;
        let edge = f64::from_bits(edge.to_bits() - 1); // strictly inside after rounding to f64
        let masked: Vec<Vec<u128>> = (0..4)
            .map(|i| mask(&[edge], &four[i], &four, &seeds[i], 2).unwrap())
            .collect();
        let sum = unmask_sum(&masked).unwrap()[0];
        assert!(
            sum > 0.0 && (sum - 4.0 * edge).abs() <= 4.0 * edge * 1e-15,
            "{sum}"
        );
        // Just past it, refused; and with one site the range is the whole 2^63.
        let past = RANGE / 4.0;
        assert!(mask(&[past], "a", &four, &seeds[0], 2).is_err());
        assert!(mask(&[5e18], "a", &["a".to_string()], &PairSeeds::new(), 2).is_ok());
        assert!(mask(&[RANGE], "a", &["a".to_string()], &PairSeeds::new(), 2).is_err());
    }
}
