//! `[partition]`: how the rows (or columns) are shared out among the sites.

use serde::{Deserialize, Serialize};

use super::{AlgorithmKind, Locate, Scenario, ScenarioError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionKind {
    Horizontal,
    Vertical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    Uniform,
    Sizes,
    Dirichlet,
}

impl PartitionKind {
    /// As written in a scenario.
    pub fn as_str(self) -> &'static str {
        match self {
            PartitionKind::Horizontal => "horizontal",
            PartitionKind::Vertical => "vertical",
        }
    }
}

impl Strategy {
    /// As written in a scenario.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Uniform => "uniform",
            Strategy::Sizes => "sizes",
            Strategy::Dirichlet => "dirichlet",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionSpec {
    #[serde(default = "default_kind")]
    pub kind: PartitionKind,
    /// Filled in from `[data] files` when the data comes as a file per site
    /// ([`SITES_UNSET`] until then).
    #[serde(default = "unset")]
    pub sites: usize,
    #[serde(default = "default_strategy")]
    pub strategy: Strategy,
    /// Fractions of the rows per site, for `strategy = "sizes"`.
    #[serde(default)]
    pub sizes: Option<Vec<f64>>,
    /// Concentration of the label skew, for `strategy = "dirichlet"` (small = more skew).
    #[serde(default)]
    pub alpha: Option<f64>,
    /// Column whose values drive the label skew; default the target.
    #[serde(default)]
    pub label: Option<String>,
    /// A continuous label is cut into this many quantile bins before the skew.
    #[serde(default = "default_bins")]
    pub bins: usize,
}

impl Default for PartitionSpec {
    /// No `[partition]`: only valid with `[data] files`, which set the sites.
    fn default() -> Self {
        PartitionSpec {
            kind: default_kind(),
            sites: SITES_UNSET,
            strategy: default_strategy(),
            sizes: None,
            alpha: None,
            label: None,
            bins: default_bins(),
        }
    }
}

/// `sites` not written (only valid with `[data] files`).
pub const SITES_UNSET: usize = usize::MAX;

fn unset() -> usize {
    SITES_UNSET
}

fn default_kind() -> PartitionKind {
    PartitionKind::Horizontal
}
fn default_strategy() -> Strategy {
    Strategy::Uniform
}
fn default_bins() -> usize {
    5
}

/// A site count in range, a kind the algorithm supports, and each strategy with its own options.
pub(super) fn validate(s: &Scenario, at: &Locate) -> Result<(), ScenarioError> {
    let kind = s.algorithm.kind;
    let p = &s.partition;
    if let Some(files) = &s.data.files {
        // The files are the partition: one per site, rows as they are.
        if p.sites != SITES_UNSET && p.sites != files.len() {
            return Err(at(
                "partition.sites",
                format!(
                    "[data] files gives {} sites (one per file), but sites = {}; leave `sites` out",
                    files.len(),
                    p.sites
                ),
            ));
        }
        if p.kind != PartitionKind::Horizontal || p.strategy != Strategy::Uniform {
            return Err(at(
                "partition",
                "with [data] files each site holds its own file's rows: the split is horizontal, with no strategy".into(),
            ));
        }
        return Ok(());
    }
    if p.sites == SITES_UNSET {
        return Err(at(
            "partition",
            "missing key `sites`: how many sites share the data (or give [data] files, one per site)".into(),
        ));
    }
    // No upper bound here: what a machine carries (open files, process IDs) is checked against
    // the machine when a run is planned (`sys::limits`).
    if p.sites == 0 {
        return Err(at(
            "partition.sites",
            "expected a number of sites of at least 1, found 0".into(),
        ));
    }
    if p.kind == PartitionKind::Vertical {
        if kind != AlgorithmKind::Svd {
            return Err(at(
                "partition.kind",
                format!(
                    "vertical partitions are supported for svd only, not {} (use \"horizontal\")",
                    kind.as_str()
                ),
            ));
        }
        if p.strategy == Strategy::Dirichlet {
            return Err(at(
                "partition.strategy",
                "a vertical split shares columns, which have no labels: use \"uniform\" or \"sizes\"".into(),
            ));
        }
    }
    match p.strategy {
        Strategy::Sizes => {
            let Some(sizes) = &p.sizes else {
                return Err(at(
                    "partition",
                    "missing key `sizes`: strategy \"sizes\" needs a list of fractions, one per site, e.g. sizes = [0.5, 0.3, 0.2]".into(),
                ));
            };
            if sizes.len() != p.sites {
                return Err(at(
                    "partition.sizes",
                    format!("expected {} fractions (one per site), found {}", p.sites, sizes.len()),
                ));
            }
            if sizes.iter().any(|x| !x.is_finite() || *x <= 0.0) {
                return Err(at("partition.sizes", "expected fractions greater than 0".into()));
            }
            let total: f64 = sizes.iter().sum();
            if (total - 1.0).abs() > 1e-6 {
                return Err(at(
                    "partition.sizes",
                    format!("expected fractions that sum to 1, they sum to {total}"),
                ));
            }
        }
        Strategy::Dirichlet => match p.alpha {
            None => {
                return Err(at(
                    "partition",
                    "missing key `alpha`: strategy \"dirichlet\" needs a concentration > 0, e.g. alpha = 0.5".into(),
                ))
            }
            Some(a) if !(a.is_finite() && a > 0.0) => {
                return Err(at("partition.alpha", format!("expected a number > 0, found {a}")))
            }
            Some(_) => {}
        },
        Strategy::Uniform => {}
    }
    let strategy_only = [
        ("sizes", p.sizes.is_some(), Strategy::Sizes),
        ("alpha", p.alpha.is_some(), Strategy::Dirichlet),
        ("label", p.label.is_some(), Strategy::Dirichlet),
    ];
    for (key, present, owner) in strategy_only {
        if present && p.strategy != owner {
            return Err(at(
                &format!("partition.{key}"),
                format!("`{key}` only applies to strategy \"{}\"", owner.as_str()),
            ));
        }
    }
    if p.strategy == Strategy::Dirichlet && p.label.is_none() && s.data.target.is_none() {
        return Err(at(
            "partition",
            "missing key `label`: the dirichlet skew needs a label column when there is no target"
                .into(),
        ));
    }
    if p.bins < 2 {
        return Err(at(
            "partition.bins",
            format!("expected at least 2 bins, found {}", p.bins),
        ));
    }
    Ok(())
}
