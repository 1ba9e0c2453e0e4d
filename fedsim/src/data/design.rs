//! The design matrix: categorical columns treatment-coded as statsmodels' formula API (patsy)
//! codes them, so federated terms carry the names and order people know from `smf.ols`:
//! `const`, then each categorical column's indicator columns `firm[T.<level>]` (reference level:
//! the first in sorted order), then the numeric features.
//!
//! The levels are the union over all sites, found federatedly: each site reports its own, the
//! coordinator sends back the union, so a site with no row of a level still has its column.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::frame::Frame;
use super::{DataError, Table};

/// Each categorical column with its levels, in the order the design uses.
pub type Levels = Vec<(String, Vec<String>)>;

/// Sort levels as patsy does: numerically when every level is a number, else as text.
pub fn sort_levels(levels: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = levels
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let numbers: Option<Vec<f64>> = v.iter().map(|l| l.trim().parse::<f64>().ok()).collect();
    if let Some(n) = numbers {
        let mut pairs: Vec<(f64, String)> = n.into_iter().zip(v).collect();
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        v = pairs.into_iter().map(|p| p.1).collect();
    }
    v
}

/// The levels of each categorical column among the given rows.
pub fn levels_of(frame: &Frame, categorical: &[String], rows: &[usize]) -> Levels {
    categorical
        .iter()
        .map(|c| {
            let cells = frame.column(c);
            let found = rows
                .iter()
                .filter_map(|&r| cells.and_then(|cells| cells.label(r)));
            (c.clone(), sort_levels(found))
        })
        .collect()
}

/// The union of several sites' levels, column by column, in the first list's column order.
pub fn union(all: &[Levels]) -> Levels {
    let mut merged: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    for levels in all {
        for (c, ls) in levels {
            if !merged.contains_key(c.as_str()) {
                order.push(c);
            }
            merged.entry(c).or_default().extend(ls.iter().cloned());
        }
    }
    order
        .into_iter()
        .map(|c| (c.to_string(), sort_levels(merged[c].iter().cloned())))
        .collect()
}

/// Levels held by exactly one of several sites: a privacy risk, since that level's indicator
/// sums are that one site's alone. As (column, level, site).
pub fn single_site_levels(sites: &[(String, Levels)]) -> Vec<(String, String, String)> {
    if sites.len() < 2 {
        return Vec::new();
    }
    let mut holders: BTreeMap<(String, String), Vec<&str>> = BTreeMap::new();
    for (site, levels) in sites {
        for (c, ls) in levels {
            for l in ls {
                holders
                    .entry((c.clone(), l.clone()))
                    .or_default()
                    .push(site);
            }
        }
    }
    holders
        .into_iter()
        .filter(|(_, h)| h.len() == 1)
        .map(|((c, l), h)| (c, l, h[0].to_string()))
        .collect()
}

/// How raw columns become the design's columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Design {
    pub categorical: Levels,
    pub numeric: Vec<String>,
    pub target: Option<String>,
    /// With an intercept every categorical column drops its reference level; without one the
    /// first keeps all its levels (patsy's full-rank coding).
    pub intercept: bool,
    /// Numeric columns the analysis reads beside the features and the target (a GLM's offset
    /// and weights, a survival analysis' time and event): carried after the target, never terms.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aux: Vec<String>,
    /// Every categorical column keeps all its levels, one indicator each (`c[level]`): a
    /// crosstab counts them, it fits no model.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_levels: bool,
}

impl Design {
    /// The design from the raw feature list: categorical ones (in their order) first.
    pub fn new(
        features: &[String],
        categorical: &[String],
        levels: &Levels,
        target: Option<String>,
        intercept: bool,
    ) -> Design {
        let coded = features
            .iter()
            .filter(|f| categorical.contains(f))
            .map(|f| {
                let ls = levels
                    .iter()
                    .find(|(c, _)| c == f)
                    .map(|(_, l)| l.clone())
                    .unwrap_or_default();
                (f.clone(), ls)
            })
            .collect();
        Design {
            categorical: coded,
            numeric: features
                .iter()
                .filter(|f| !categorical.contains(f))
                .cloned()
                .collect(),
            target,
            intercept,
            aux: Vec::new(),
            all_levels: false,
        }
    }

    /// The same design, every categorical column coded with all its levels (see
    /// [`Design::all_levels`]).
    pub fn with_all_levels(mut self, all: bool) -> Design {
        self.all_levels = all;
        self
    }

    /// The same design, also carrying the numeric columns `aux` (see [`Design::aux`]).
    pub fn with_aux(mut self, aux: Vec<String>) -> Design {
        self.aux = aux;
        self
    }

    /// Every indicator column: (name, source column, level).
    fn indicators(&self) -> Vec<(String, &str, &str)> {
        let mut out = Vec::new();
        for (i, (c, levels)) in self.categorical.iter().enumerate() {
            let full = self.all_levels || (i == 0 && !self.intercept);
            for l in levels.iter().skip(usize::from(!full)) {
                let name = if full {
                    format!("{c}[{l}]")
                } else {
                    format!("{c}[T.{l}]")
                };
                out.push((name, c.as_str(), l.as_str()));
            }
        }
        out
    }

    /// How many indicator columns each categorical column has, in the design's order (they
    /// come first among its columns).
    pub fn indicator_groups(&self) -> Vec<usize> {
        self.categorical
            .iter()
            .map(|(c, _)| self.indicators().iter().filter(|(_, s, _)| s == c).count())
            .collect()
    }

    /// The design's feature columns, named as statsmodels names them.
    pub fn columns(&self) -> Vec<String> {
        self.indicators()
            .into_iter()
            .map(|(n, _, _)| n)
            .chain(self.numeric.iter().cloned())
            .collect()
    }

    /// The raw columns the design reads (a row missing any of them is incomplete).
    pub fn used(&self) -> Vec<String> {
        self.categorical
            .iter()
            .map(|(c, _)| c.clone())
            .chain(self.numeric.iter().cloned())
            .chain(self.target.iter().cloned())
            .chain(self.aux.iter().cloned())
            .collect()
    }

    /// The numeric table the algorithms compute on: the design's columns, then the target and
    /// the auxiliary columns, for the given (complete) rows.
    pub fn encode(&self, frame: &Frame, rows: &[usize], path: &Path) -> Result<Table, DataError> {
        let (mut columns, mut data) = (Vec::new(), Vec::new());
        self.encode_each(frame, rows, path, |name, values| {
            columns.push(name);
            data.push(values);
        })?;
        Ok(Table { columns, data })
    }

    /// [`Design::encode`] a column at a time, each handed to `each` (its name, its values) as
    /// soon as it is made: whoever takes them need never hold the whole table beside its own copy.
    pub fn encode_each(
        &self,
        frame: &Frame,
        rows: &[usize],
        path: &Path,
        mut each: impl FnMut(String, Vec<f64>),
    ) -> Result<(), DataError> {
        let no_column = |c: &str| DataError::NoColumn {
            path: path.to_path_buf(),
            column: c.to_string(),
            available: frame.columns.join(", "),
        };
        for (name, source, level) in self.indicators() {
            let cells = frame.column(source).ok_or_else(|| no_column(source))?;
            each(
                name,
                rows.iter()
                    .map(|&r| f64::from(cells.label(r).as_deref() == Some(level)))
                    .collect(),
            );
        }
        for c in self.numeric.iter().chain(&self.target).chain(&self.aux) {
            each(
                c.clone(),
                frame.numbers(c, rows).ok_or_else(|| no_column(c))?,
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::frame::Cells;

    fn frame() -> Frame {
        let text = |v: &[&str]| {
            Cells::Text(
                v.iter()
                    .map(|s| (!s.is_empty()).then(|| s.to_string()))
                    .collect(),
            )
        };
        Frame {
            columns: vec!["firm".into(), "size".into(), "x".into(), "y".into()],
            cells: vec![
                text(&["b", "a", "c", "a", ""]),
                text(&["10", "9", "10", "2", "2"]),
                Cells::Num(vec![Some(1.0), Some(2.0), None, Some(4.0), Some(5.0)]),
                Cells::Num(vec![Some(0.5); 5]),
            ],
        }
    }

    #[test]
    fn levels_sort_as_patsy_sorts_them() {
        assert_eq!(
            sort_levels(["10", "9", "2", "9"].map(String::from)),
            ["2", "9", "10"]
        );
        assert_eq!(
            sort_levels(["b", "B", "a"].map(String::from)),
            ["B", "a", "b"]
        );
    }

    #[test]
    fn treatment_coding_names_and_orders_terms_like_the_formula_api() {
        let f = frame();
        let features: Vec<String> = ["x", "firm", "size"].map(String::from).to_vec();
        let cat: Vec<String> = ["firm", "size"].map(String::from).to_vec();
        let rows = f.complete_rows(&["firm".into(), "size".into(), "x".into(), "y".into()]);
        assert_eq!(rows, [0, 1, 3]);
        let levels = levels_of(&f, &cat, &rows);
        assert_eq!(
            levels,
            [
                ("firm".to_string(), vec!["a".to_string(), "b".into()]),
                (
                    "size".to_string(),
                    vec!["2".to_string(), "9".into(), "10".into()]
                )
            ]
        );
        let d = Design::new(&features, &cat, &levels, Some("y".into()), true);
        assert_eq!(d.columns(), ["firm[T.b]", "size[T.9]", "size[T.10]", "x"]);
        let t = d.encode(&f, &rows, Path::new("f.csv")).unwrap();
        assert_eq!(t.data[0], [1.0, 0.0, 0.0]);
        assert_eq!(t.data[2], [1.0, 0.0, 0.0]);
        assert_eq!(t.data[3], [1.0, 2.0, 4.0]);
        let full = Design::new(&features, &cat, &levels, None, false);
        assert_eq!(
            full.columns(),
            ["firm[a]", "firm[b]", "size[T.9]", "size[T.10]", "x"]
        );
    }

    #[test]
    fn the_union_keeps_every_level_and_names_the_lonely_ones() {
        let a: Levels = vec![("firm".into(), vec!["a".into(), "b".into()])];
        let b: Levels = vec![("firm".into(), vec!["a".into(), "c".into()])];
        assert_eq!(
            union(&[a.clone(), b.clone()]),
            [(
                "firm".to_string(),
                vec!["a".to_string(), "b".into(), "c".into()]
            )]
        );
        let lonely = single_site_levels(&[("s1".into(), a), ("s2".into(), b)]);
        assert_eq!(
            lonely,
            [
                ("firm".to_string(), "b".to_string(), "s1".to_string()),
                ("firm".to_string(), "c".to_string(), "s2".to_string())
            ]
        );
    }
}
