//! A federated two-way table: the counts of every (row level, column level) pair of two
//! category columns, with Pearson's chi-square test of independence, as
//! `scipy.stats.chi2_contingency` computes it.
//!
//! One round: each site sends its r x c table of counts (a sum over its rows, so it travels
//! under secure aggregation as it is); the coordinator adds them up and computes the expected
//! counts (row total x column total / n), chi² = Σ (observed - expected)² / expected with
//! (r - 1)(c - 1) degrees of freedom and its P, and for a 2x2 table also Yates' continuity
//! correction (each |observed - expected| reduced by at most 1/2), as scipy's `correction=True`.
//!
//! The levels are agreed before the round as categorical levels are (each site reports its
//! own, the coordinator sends back the union, sorted as patsy sorts them), and each site's
//! design holds one indicator column per level of both columns.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{AlgoError, AlgorithmConfig, Estimates, Federated, LocalData, Step, Values};

/// The two columns, and (once agreed) their levels.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CrosstabParams {
    pub rows: String,
    pub cols: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub row_levels: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub col_levels: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    Counts,
}

/// A site's table, row-major, r x c.
#[derive(Debug, Serialize, Deserialize)]
pub struct Reply {
    pub counts: Vec<f64>,
}

pub struct Crosstab {
    params: CrosstabParams,
}

impl Crosstab {
    pub fn new(params: CrosstabParams) -> Self {
        Crosstab { params }
    }

    fn shape(&self) -> (usize, usize) {
        (self.params.row_levels.len(), self.params.col_levels.len())
    }
}

/// The table of `data`'s rows: the design holds r indicator columns of the row levels, then c
/// of the column levels; each row has exactly one of each.
pub fn counts(data: &LocalData, r: usize, c: usize) -> Result<Vec<f64>, AlgoError> {
    if data.x.ncols() != r + c {
        return Err(AlgoError::Data(format!(
            "the design has {} columns, expected {r} row levels and {c} column levels",
            data.x.ncols()
        )));
    }
    let mut table = vec![0.0; r * c];
    for i in 0..data.x.nrows() {
        for a in 0..r {
            let xa = data.x[(i, a)];
            if xa == 0.0 {
                continue;
            }
            for b in 0..c {
                table[a * c + b] += xa * data.x[(i, r + b)];
            }
        }
    }
    Ok(table)
}

impl Federated for Crosstab {
    type Request = Request;
    type Reply = Reply;

    fn local(&self, _: &Request, data: &LocalData) -> Result<Reply, AlgoError> {
        let (r, c) = self.shape();
        Ok(Reply {
            counts: counts(data, r, c)?,
        })
    }

    fn start(&mut self) -> Request {
        Request::Counts
    }

    /// Every number of the reply is a cell's count.
    fn counts(&self, _: &Request, reply: &Reply, _: &LocalData) -> Vec<(&'static str, f64)> {
        reply
            .counts
            .iter()
            .map(|&c| ("a cell of the table", c))
            .collect()
    }

    fn values(reply: &Reply) -> Vec<f64> {
        reply.counts.clone()
    }

    fn with_values(t: &Reply, v: &mut Values) -> Result<Reply, AlgoError> {
        Ok(Reply {
            counts: v.take(t.counts.len())?,
        })
    }

    fn aggregate(&mut self, replies: Vec<Reply>) -> Result<Step<Request>, AlgoError> {
        let (r, c) = self.shape();
        if r == 0 || c == 0 {
            // No level was agreed for a column: nothing to tabulate (and no chunk of 0).
            return Err(AlgoError::Data(format!(
                "no levels of {:?} or {:?} were agreed: the sites hold no complete row",
                self.params.rows, self.params.cols
            )));
        }
        let mut total = vec![0u64; r * c];
        for reply in replies {
            if reply.counts.len() != r * c {
                return Err(AlgoError::Protocol(format!(
                    "a table of {} counts, expected {r} x {c}",
                    reply.counts.len()
                )));
            }
            for (t, v) in total.iter_mut().zip(&reply.counts) {
                // Counts travel as numbers; masked sums come back to within rounding.
                *t += v.round().max(0.0) as u64;
            }
        }
        let table: Vec<Vec<u64>> = total.chunks(c).map(<[u64]>::to_vec).collect();
        Ok(Step::Done(Box::new(estimates(&self.params, &table)?)))
    }
}

/// What scipy's `chi2_contingency` reports for a table of counts (r x c, each row and column
/// with at least one count): expected counts, chi², df and P; for df = 1 also Yates'.
pub struct Test {
    pub expected: Vec<Vec<f64>>,
    pub chi2: f64,
    pub df: u32,
    pub p: f64,
    /// 2x2 tables: Yates' corrected chi² and its P.
    pub yates: Option<(f64, f64)>,
}

pub fn test(table: &[Vec<u64>]) -> Result<Test, AlgoError> {
    let r = table.len();
    let c = table.first().map_or(0, Vec::len);
    let row: Vec<f64> = table.iter().map(|t| t.iter().sum::<u64>() as f64).collect();
    let col: Vec<f64> = (0..c)
        .map(|j| table.iter().map(|t| t[j]).sum::<u64>() as f64)
        .collect();
    let n: f64 = row.iter().sum();
    if let Some(i) = row.iter().position(|v| *v == 0.0) {
        return Err(AlgoError::Data(format!(
            "row {} of the table is empty",
            i + 1
        )));
    }
    if let Some(j) = col.iter().position(|v| *v == 0.0) {
        return Err(AlgoError::Data(format!(
            "column {} of the table is empty",
            j + 1
        )));
    }
    // scipy: expected_freq = reduce(np.multiply, margsums) / observed.sum() ** (d - 1).
    let expected: Vec<Vec<f64>> = row
        .iter()
        .map(|ri| col.iter().map(|cj| ri * cj / n).collect())
        .collect();
    let df = ((r - 1) * (c - 1)) as u32;
    let statistic = |yates: bool| -> f64 {
        let mut chi2 = 0.0;
        for (i, t) in table.iter().enumerate() {
            for (j, &o) in t.iter().enumerate() {
                let e = expected[i][j];
                let mut d = o as f64 - e;
                if yates {
                    d = d.signum() * (d.abs() - d.abs().min(0.5));
                }
                chi2 += d * d / e;
            }
        }
        chi2
    };
    if df == 0 {
        // scipy: no degrees of freedom, chi² 0 and P 1 (a table of one row or column).
        return Ok(Test {
            expected,
            chi2: 0.0,
            df,
            p: 1.0,
            yates: None,
        });
    }
    let chi2 = statistic(false);
    let yates = (df == 1).then(|| {
        let y = statistic(true);
        (y, crate::distributions::chi2_sf(y, 1))
    });
    Ok(Test {
        expected,
        p: crate::distributions::chi2_sf(chi2, df),
        chi2,
        df,
        yates,
    })
}

/// The result of a table: `n`, `counts` and `expected` labelled by the levels, `chi2`, `df`,
/// `p` and, for a 2x2 table, `chi2_yates` and `p_yates`.
pub fn estimates(params: &CrosstabParams, table: &[Vec<u64>]) -> Result<Estimates, AlgoError> {
    // A level agreed on but without rows (its site left the run): scipy refuses a zero
    // expected count, and so does this, naming the level.
    let empty = |column: &str, levels: &[String], i: usize| {
        AlgoError::Data(format!(
            "level {:?} of {column:?} has no rows left (was its site lost?): the table's expected counts would be 0",
            levels.get(i).map_or("", String::as_str)
        ))
    };
    if let Some(i) = table.iter().position(|r| r.iter().all(|v| *v == 0)) {
        return Err(empty(&params.rows, &params.row_levels, i));
    }
    let c = table.first().map_or(0, Vec::len);
    if let Some(j) = (0..c).find(|&j| table.iter().all(|r| r[j] == 0)) {
        return Err(empty(&params.cols, &params.col_levels, j));
    }
    let t = test(table)?;
    let n: u64 = table.iter().flatten().sum();
    let labels = json!([params.row_levels, params.col_levels]);
    let mut named = std::collections::BTreeMap::new();
    named.insert("n".to_string(), json!(n));
    named.insert(
        "counts".to_string(),
        json!({"labels": labels, "values": table}),
    );
    named.insert(
        "expected".to_string(),
        json!({"labels": labels, "values": t.expected}),
    );
    named.insert("chi2".to_string(), json!(t.chi2));
    named.insert("df".to_string(), json!(t.df));
    named.insert("p".to_string(), json!(t.p));
    if let Some((chi2, p)) = t.yates {
        named.insert("chi2_yates".to_string(), json!(chi2));
        named.insert("p_yates".to_string(), json!(p));
    }
    Ok(Estimates {
        n: n as usize,
        analysis: Some("crosstab".into()),
        named,
        ..Default::default()
    })
}

/// The pooled table, by a different route: each row's level pair looked up by name in the
/// design's column names (not multiplied out), counted in a map.
pub fn pooled(
    config: &AlgorithmConfig,
    params: &CrosstabParams,
    data: &LocalData,
) -> Result<Estimates, AlgoError> {
    let (r, c) = (params.row_levels.len(), params.col_levels.len());
    let name = |col: &str, level: &str| format!("{col}[{level}]");
    let find = |n: String| {
        config
            .features
            .iter()
            .position(|f| *f == n)
            .ok_or_else(|| AlgoError::Data(format!("no design column {n:?}")))
    };
    let rows: Vec<usize> = params
        .row_levels
        .iter()
        .map(|l| find(name(&params.rows, l)))
        .collect::<Result<_, _>>()?;
    let cols: Vec<usize> = params
        .col_levels
        .iter()
        .map(|l| find(name(&params.cols, l)))
        .collect::<Result<_, _>>()?;
    let mut seen: std::collections::BTreeMap<(usize, usize), u64> = Default::default();
    for i in 0..data.x.nrows() {
        let a = rows.iter().position(|&k| data.x[(i, k)] == 1.0);
        let b = cols.iter().position(|&k| data.x[(i, k)] == 1.0);
        match (a, b) {
            (Some(a), Some(b)) => *seen.entry((a, b)).or_default() += 1,
            _ => {
                return Err(AlgoError::Data(format!(
                    "row {} has no level of {} or {}",
                    i + 1,
                    params.rows,
                    params.cols
                )))
            }
        }
    }
    let table: Vec<Vec<u64>> = (0..r)
        .map(|a| {
            (0..c)
                .map(|b| seen.get(&(a, b)).copied().unwrap_or(0))
                .collect()
        })
        .collect();
    estimates(params, &table)
}

/// The levels a reference row names, as text (JSON numbers as Python prints whole numbers).
pub fn level_names(levels: &[Value]) -> Vec<String> {
    levels
        .iter()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// scipy.stats.chi2_contingency([[15, 3], [6, 8]]) (spector.csv PSI x GRADE) and the
    /// penguins' species x island table.
    #[test]
    fn the_test_is_scipys() {
        let t = test(&[vec![15, 3], vec![6, 8]]).unwrap();
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs();
        assert!(close(t.chi2, 5.719233147804577), "{}", t.chi2);
        assert!(close(t.p, 0.016780057660534), "{}", t.p);
        let (y, py) = t.yates.unwrap();
        assert!(close(y, 4.06569092283378), "{y}");
        assert!(close(py, 0.043762778440377445), "{py}");
        assert_eq!(t.df, 1);
        assert_eq!(t.expected[0], [11.8125, 6.1875]);
        let t = test(&[vec![44, 56, 52], vec![0, 68, 0], vec![124, 0, 0]]).unwrap();
        assert!(close(t.chi2, 299.55032743148195), "{}", t.chi2);
        assert!(
            (t.p - 1.3545738297192517e-63).abs() <= 1e-9 * 1.3545738297192517e-63,
            "{}",
            t.p
        );
        assert_eq!(t.df, 4);
        assert!(t.yates.is_none());
    }

    #[test]
    fn a_level_without_rows_is_named() {
        let p = CrosstabParams {
            rows: "species".into(),
            cols: "sex".into(),
            row_levels: vec!["Adelie".into(), "Gentoo".into()],
            col_levels: vec!["female".into(), "male".into()],
        };
        let e = estimates(&p, &[vec![3, 4], vec![0, 0]])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("level \"Gentoo\" of \"species\" has no rows"),
            "{e}"
        );
    }

    #[test]
    fn one_level_has_no_degrees_of_freedom() {
        let t = test(&[vec![3, 4]]).unwrap();
        assert_eq!((t.chi2, t.df, t.p), (0.0, 0, 1.0));
    }
}
