//! Splitting rows among sites: deterministic for a seed, every row in exactly one site.
//!
//! Real federations are rarely balanced: `sizes` gives unequal sites and `dirichlet` gives each site
//! its own label mix (the usual non-IID benchmark: per class, site shares drawn from Dir(alpha)).

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma};

use crate::scenario::{PartitionSpec, Strategy};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PartitionError {
    #[error("cannot split {rows} rows into {sites} sites: site {site} would get no rows")]
    EmptySite {
        rows: usize,
        sites: usize,
        site: usize,
    },
    #[error("cannot split {cols} columns into {sites} sites: site {site} would get no columns")]
    EmptyColumns {
        cols: usize,
        sites: usize,
        site: usize,
    },
    #[error("the dirichlet split left a site without rows in {tries} draws (alpha {alpha}, {rows} rows, {sites} sites); raise alpha or use fewer sites")]
    DirichletEmpty {
        tries: usize,
        alpha: f64,
        rows: usize,
        sites: usize,
    },
}

/// Row indices per site (each list ascending). `labels` drives the dirichlet skew.
pub fn horizontal(
    rows: usize,
    spec: &PartitionSpec,
    labels: Option<&[f64]>,
    seed: u64,
) -> Result<Vec<Vec<usize>>, PartitionError> {
    let sites = spec.sites;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let parts = match spec.strategy {
        Strategy::Uniform => shuffled_chunks(rows, &vec![1.0 / sites as f64; sites], &mut rng),
        Strategy::Sizes => shuffled_chunks(rows, spec.sizes.as_deref().unwrap_or(&[]), &mut rng),
        Strategy::Dirichlet => {
            let alpha = spec.alpha.unwrap_or(1.0);
            let classes = classes(labels.unwrap_or(&[]), rows, spec.bins);
            const TRIES: usize = 100;
            let mut found = None;
            for _ in 0..TRIES {
                let parts = dirichlet(&classes, sites, alpha, &mut rng);
                if parts.iter().all(|p| !p.is_empty()) {
                    found = Some(parts);
                    break;
                }
            }
            found.ok_or(PartitionError::DirichletEmpty {
                tries: TRIES,
                alpha,
                rows,
                sites,
            })?
        }
    };
    if let Some(site) = parts.iter().position(Vec::is_empty) {
        return Err(PartitionError::EmptySite {
            rows,
            sites,
            site: site + 1,
        });
    }
    Ok(parts)
}

/// Column indices per site for a vertical split (each list ascending): `uniform` or `sizes`
/// fractions of the columns, assigned at random for the seed.
pub fn vertical(
    cols: usize,
    spec: &PartitionSpec,
    seed: u64,
) -> Result<Vec<Vec<usize>>, PartitionError> {
    let sites = spec.sites;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let shares = match spec.strategy {
        Strategy::Sizes => spec.sizes.clone().unwrap_or_default(),
        _ => vec![1.0 / sites as f64; sites],
    };
    let parts = shuffled_chunks(cols, &shares, &mut rng);
    if let Some(site) = parts.iter().position(Vec::is_empty) {
        return Err(PartitionError::EmptyColumns {
            cols,
            sites,
            site: site + 1,
        });
    }
    Ok(parts)
}

/// Counts proportional to `shares` that add up to `total` exactly (largest remainder).
fn apportion(total: usize, shares: &[f64]) -> Vec<usize> {
    let sum: f64 = shares.iter().sum();
    let exact: Vec<f64> = shares.iter().map(|s| s / sum * total as f64).collect();
    let mut counts: Vec<usize> = exact.iter().map(|x| x.floor() as usize).collect();
    let mut order: Vec<usize> = (0..shares.len()).collect();
    order.sort_by(|&a, &b| {
        (exact[b] - exact[b].floor())
            .total_cmp(&(exact[a] - exact[a].floor()))
            .then(a.cmp(&b))
    });
    let short = total - counts.iter().sum::<usize>();
    for &i in order.iter().take(short) {
        counts[i] += 1;
    }
    counts
}

fn shuffled_chunks(rows: usize, shares: &[f64], rng: &mut ChaCha8Rng) -> Vec<Vec<usize>> {
    let mut idx: Vec<usize> = (0..rows).collect();
    idx.shuffle(rng);
    let mut out = Vec::with_capacity(shares.len());
    let mut start = 0;
    for n in apportion(rows, shares) {
        let mut part = idx[start..start + n].to_vec();
        part.sort_unstable();
        out.push(part);
        start += n;
    }
    out
}

/// Group rows into classes: the distinct values of a discrete label, or quantile bins of a
/// continuous one.
fn classes(labels: &[f64], rows: usize, bins: usize) -> Vec<Vec<usize>> {
    if labels.len() != rows {
        return vec![(0..rows).collect()];
    }
    let mut distinct: Vec<f64> = labels.to_vec();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    if distinct.len() <= bins {
        return distinct
            .iter()
            .map(|v| (0..rows).filter(|&r| labels[r] == *v).collect())
            .collect();
    }
    let mut order: Vec<usize> = (0..rows).collect();
    order.sort_by(|&a, &b| labels[a].total_cmp(&labels[b]).then(a.cmp(&b)));
    apportion(rows, &vec![1.0; bins])
        .into_iter()
        .scan(0, |start, n| {
            let part = order[*start..*start + n].to_vec();
            *start += n;
            Some(part)
        })
        .collect()
}

fn dirichlet(
    classes: &[Vec<usize>],
    sites: usize,
    alpha: f64,
    rng: &mut ChaCha8Rng,
) -> Vec<Vec<usize>> {
    let gamma = Gamma::new(alpha, 1.0).expect("alpha was validated > 0");
    let mut out = vec![Vec::new(); sites];
    for class in classes {
        let draws: Vec<f64> = (0..sites)
            .map(|_| gamma.sample(rng).max(f64::MIN_POSITIVE))
            .collect();
        let mut members = class.clone();
        members.shuffle(rng);
        let mut start = 0;
        for (site, n) in apportion(members.len(), &draws).into_iter().enumerate() {
            out[site].extend_from_slice(&members[start..start + n]);
            start += n;
        }
    }
    for part in &mut out {
        part.sort_unstable();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::PartitionKind;

    fn spec(sites: usize, strategy: Strategy) -> PartitionSpec {
        PartitionSpec {
            kind: PartitionKind::Horizontal,
            sites,
            strategy,
            sizes: (strategy == Strategy::Sizes).then(|| {
                let w: Vec<f64> = (1..=sites).map(|i| i as f64).collect();
                let s: f64 = w.iter().sum();
                w.iter().map(|x| x / s).collect()
            }),
            alpha: (strategy == Strategy::Dirichlet).then_some(0.5),
            label: None,
            bins: 5,
        }
    }

    fn assert_exact_cover(parts: &[Vec<usize>], rows: usize) {
        let mut seen = vec![0u32; rows];
        for p in parts {
            assert!(!p.is_empty());
            for &r in p {
                seen[r] += 1;
            }
        }
        assert!(
            seen.iter().all(|&c| c == 1),
            "every row must be in exactly one site"
        );
    }

    #[test]
    fn every_strategy_covers_each_row_once_and_is_deterministic() {
        let labels: Vec<f64> = (0..442).map(|i| ((i * 37) % 101) as f64).collect();
        for strategy in [Strategy::Uniform, Strategy::Sizes, Strategy::Dirichlet] {
            for sites in [1, 3, 10] {
                let s = spec(sites, strategy);
                let a = horizontal(442, &s, Some(&labels), 7).unwrap();
                assert_eq!(a.len(), sites);
                assert_exact_cover(&a, 442);
                assert_eq!(
                    a,
                    horizontal(442, &s, Some(&labels), 7).unwrap(),
                    "same seed, same split"
                );
                if sites > 1 {
                    assert_ne!(
                        a,
                        horizontal(442, &s, Some(&labels), 8).unwrap(),
                        "seed matters"
                    );
                }
            }
        }
    }

    #[test]
    fn sizes_follow_the_fractions() {
        let mut s = spec(3, Strategy::Sizes);
        s.sizes = Some(vec![0.5, 0.3, 0.2]);
        let p = horizontal(442, &s, None, 1).unwrap();
        let n: Vec<usize> = p.iter().map(Vec::len).collect();
        assert_eq!(n, vec![221, 133, 88]);
    }

    #[test]
    fn dirichlet_skews_labels() {
        // Two classes, strong skew: some site must be far from the 50/50 mix.
        let labels: Vec<f64> = (0..1000).map(|i| (i % 2) as f64).collect();
        let mut s = spec(4, Strategy::Dirichlet);
        s.alpha = Some(0.1);
        let p = horizontal(1000, &s, Some(&labels), 3).unwrap();
        let skew = p
            .iter()
            .map(|part| {
                let ones = part.iter().filter(|&&r| labels[r] == 1.0).count() as f64;
                (ones / part.len() as f64 - 0.5).abs()
            })
            .fold(0.0, f64::max);
        assert!(skew > 0.2, "max deviation from the global mix was {skew}");
    }

    #[test]
    fn vertical_split_shares_out_every_column_once() {
        let s = spec(3, Strategy::Uniform);
        let cols = vertical(10, &s, 4).unwrap();
        assert_exact_cover(&cols, 10);
        assert_eq!(cols.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 3, 3]);
        assert_eq!(cols, vertical(10, &s, 4).unwrap());
        assert!(vertical(2, &s, 4).is_err());
    }

    #[test]
    fn too_many_sites_is_an_error() {
        let e = horizontal(2, &spec(3, Strategy::Uniform), None, 0).unwrap_err();
        assert_eq!(
            e,
            PartitionError::EmptySite {
                rows: 2,
                sites: 3,
                site: 3
            }
        );
    }
}
