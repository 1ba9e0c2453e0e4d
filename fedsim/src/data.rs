//! Reading a data set (CSV or Parquet, with polars) into a dense numeric table, and writing a
//! site's share of it back out.
//!
//! Everything federated is numeric; a text cell, an empty cell or a NaN would silently poison
//! every aggregate, so each is refused with the file, the column and the line that holds it,
//! unless the scenario says what it means (`categorical`, `missing = "drop"`: see [`frame`] and
//! [`design`]).

pub mod design;
pub mod frame;
pub mod outcome;

use std::path::{Path, PathBuf};

use polars::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::scenario::{Generate, GenerateKind};

/// A numeric table held column by column (the layout polars gives and the algorithms want).
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub columns: Vec<String>,
    pub data: Vec<Vec<f64>>,
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cancelled while making the data")]
    Cancelled,
    #[error("cannot read data file {}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("data file {} has no rows", path.display())]
    Empty { path: PathBuf },
    #[error("data file {}: no column {column:?} (columns are: {available})", path.display())]
    NoColumn {
        path: PathBuf,
        column: String,
        available: String,
    },
    #[error("data file {}, line {line}, column {column:?}: expected a number, found {} ({})", path.display(), clip(value), not_numeric_hint(value))]
    NotNumeric {
        path: PathBuf,
        column: String,
        line: usize,
        value: String,
    },
    #[error("data file {}, line {line}: {fields} fields, but the header has {expected}", path.display())]
    Ragged {
        path: PathBuf,
        line: usize,
        fields: usize,
        expected: usize,
    },
    #[error("data file {}, line {line}, column {column:?}: missing value (an empty cell, or NA, NaN, nan, null, None, N/A... as pandas reads them); every used cell must hold a value, or set [data] missing = \"drop\" to leave incomplete rows out (as statsmodels' missing='drop')", path.display())]
    Missing {
        path: PathBuf,
        column: String,
        line: usize,
    },
    #[error("data file {}, line {line}, column {column:?}: {value} is not a finite number{}", path.display(), if value.is_nan() { "; a NaN is a gap: set [data] missing = \"drop\" to leave incomplete rows out" } else { "" })]
    NonFinite {
        path: PathBuf,
        column: String,
        line: usize,
        value: f64,
    },
    #[error("data file {}, column {column:?}: type {dtype} is not numeric", path.display())]
    BadType {
        path: PathBuf,
        column: String,
        dtype: String,
    },
    #[error("cannot write {}: {reason}", path.display())]
    Write { path: PathBuf, reason: String },
}

/// A cell's text for a message, quoted, cut to a readable length: a 50 MB cell must not become a
/// 50 MB error line.
pub fn clip(value: &str) -> String {
    const MOST: usize = 60;
    let n = value.chars().count();
    if n <= MOST {
        format!("{value:?}")
    } else {
        let head: String = value.chars().take(MOST).collect();
        format!("{head:?}... ({n} characters)")
    }
}

/// What to do about a cell that is not a number: a decimal comma has its own option; anything
/// else may be a category.
fn not_numeric_hint(value: &str) -> &'static str {
    if frame::looks_like_decimal_comma(value) {
        "it looks like a number with a decimal comma: set [data] decimal = \",\""
    } else {
        "if the column holds categories, list it in [data] categorical"
    }
}

impl Table {
    pub fn rows(&self) -> usize {
        self.data.first().map_or(0, Vec::len)
    }

    pub fn column(&self, name: &str) -> Option<&[f64]> {
        self.columns
            .iter()
            .position(|c| c == name)
            .map(|i| self.data[i].as_slice())
    }

    /// The same columns, only the given rows, in the given order.
    pub fn select_rows(&self, rows: &[usize]) -> Table {
        Table {
            columns: self.columns.clone(),
            data: self
                .data
                .iter()
                .map(|col| rows.iter().map(|&r| col[r]).collect())
                .collect(),
        }
    }

    /// Only the named columns, in the given order.
    pub fn select_columns(&self, names: &[String], path: &Path) -> Result<Table, DataError> {
        let data = names
            .iter()
            .map(|n| {
                self.column(n)
                    .map(<[f64]>::to_vec)
                    .ok_or_else(|| DataError::NoColumn {
                        path: path.to_path_buf(),
                        column: n.clone(),
                        available: self.columns.join(", "),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Table {
            columns: names.to_vec(),
            data,
        })
    }

    /// Load a CSV (header row required, any usual delimiter) or Parquet file and insist that
    /// every cell is a finite number.
    pub fn load(path: &Path) -> Result<Table, DataError> {
        let f = frame::Frame::load(path, &frame::ReadOptions::default())?;
        f.check(path, &f.columns, &[], crate::scenario::Missing::Error)?;
        let rows: Vec<usize> = (0..f.rows()).collect();
        let data = f
            .columns
            .iter()
            .map(|c| f.numbers(c, &rows).unwrap_or_default())
            .collect();
        Ok(Table {
            columns: f.columns,
            data,
        })
    }

    /// The table as file bytes: "csv" (header, floats with every digit, so a site reads back
    /// exactly its rows) or "parquet" (binary, exact, compact).
    pub fn to_bytes(&self, format: &str, path: &Path) -> Result<Vec<u8>, DataError> {
        frame::Frame::from_table(self).to_bytes(format, path)
    }

    /// Write in the format the file name says (.parquet / .pq, else CSV).
    pub fn write(&self, path: &Path) -> Result<(), DataError> {
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some("parquet") | Some("pq") => "parquet",
            _ => "csv",
        };
        let bytes = self.to_bytes(format, path)?;
        crate::sys::fsio::write_atomic(path, &bytes).map_err(|e| DataError::Write {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }
}

/// Write a CSV whose first column holds text labels (feature names, row numbers) and the rest numbers.
pub fn write_labeled_csv(
    path: &Path,
    label: &str,
    labels: &[String],
    names: &[String],
    columns: &[Vec<f64>],
) -> Result<(), DataError> {
    let write_err = |reason: String| DataError::Write {
        path: path.to_path_buf(),
        reason,
    };
    let mut cols = vec![Column::new(label.into(), labels)];
    cols.extend(
        names
            .iter()
            .zip(columns)
            .map(|(n, v)| Column::new(n.as_str().into(), v.as_slice())),
    );
    let mut df = DataFrame::new_infer_height(cols).map_err(|e| write_err(e.to_string()))?;
    let mut bytes = Vec::new();
    CsvWriter::new(&mut bytes)
        .include_header(true)
        .finish(&mut df)
        .map_err(|e| write_err(e.to_string()))?;
    crate::sys::fsio::write_atomic(path, &bytes).map_err(|e| write_err(e.to_string()))
}

impl Table {
    /// A synthetic data set, deterministic for the seed.
    /// Checks the cancel flag column by column: tens of millions of draws take seconds.
    pub fn generate(g: &Generate, seed: u64) -> Result<Table, DataError> {
        let column_done = || crate::sys::cancel::check().map_err(|_| DataError::Cancelled);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (n, d) = (g.rows, g.cols);
        let mut normal = move || -> f64 { StandardNormal.sample(&mut rng) };
        let mut columns: Vec<String> = (1..=d).map(|j| format!("x{j}")).collect();
        let mut data: Vec<Vec<f64>>;
        match g.kind {
            GenerateKind::LowRank => {
                // X = A diag(w) B + noise: rank-r signal with well separated singular values.
                let r = g.signal_rank();
                let a = faer::Mat::<f64>::from_fn(n, r, |_, _| normal());
                let b = faer::Mat::<f64>::from_fn(r, d, |_, _| normal());
                let w: Vec<f64> = (0..r).map(|i| (r - i) as f64 / r as f64).collect();
                let aw = faer::Mat::<f64>::from_fn(n, r, |i, k| a[(i, k)] * w[k]);
                // The signal a block of columns at a time, never the whole n x d product beside
                // the table: the data set is held once.
                const BLOCK: usize = 64;
                data = Vec::with_capacity(d);
                for j0 in (0..d).step_by(BLOCK) {
                    let x = &aw * b.subcols(j0, BLOCK.min(d - j0));
                    for j in 0..x.ncols() {
                        column_done()?;
                        data.push((0..n).map(|i| x[(i, j)] + g.noise * normal()).collect());
                    }
                }
            }
            GenerateKind::Linear | GenerateKind::Logistic => {
                data = (0..d)
                    .map(|_| {
                        column_done()?;
                        Ok((0..n).map(|_| normal()).collect())
                    })
                    .collect::<Result<_, DataError>>()?;
                // Coefficients 1, -1/2, 1/3, ...: every term matters, none dominates.
                let beta: Vec<f64> = (0..d)
                    .map(|j| if j % 2 == 0 { 1.0 } else { -1.0 } / (j + 1) as f64)
                    .collect();
                let eta: Vec<f64> = (0..n)
                    .map(|i| 0.5 + (0..d).map(|j| data[j][i] * beta[j]).sum::<f64>())
                    .collect();
                let y = match g.kind {
                    GenerateKind::Linear => eta.iter().map(|e| e + g.noise * normal()).collect(),
                    _ => {
                        let mut uniform = ChaCha8Rng::seed_from_u64(seed ^ 0x9e37_79b9);
                        eta.iter()
                            .map(|e| {
                                f64::from(
                                    rand::Rng::random::<f64>(&mut uniform)
                                        < 1.0 / (1.0 + (-e).exp()),
                                )
                            })
                            .collect()
                    }
                };
                columns.push("y".into());
                data.push(y);
            }
            GenerateKind::Survival => {
                data = (0..d)
                    .map(|_| {
                        column_done()?;
                        Ok((0..n).map(|_| normal()).collect())
                    })
                    .collect::<Result<_, DataError>>()?;
                // Hazard exp(x'b) with b = 1/2, -1/4, 1/6, ...; event times exponential,
                // censoring uniform on (0, 2) years; both in whole days, so times tie.
                let mut uniform = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_5e7f);
                let mut u = move || 1.0 - rand::Rng::random::<f64>(&mut uniform);
                let (mut time, mut event) = (Vec::with_capacity(n), Vec::with_capacity(n));
                let beta: Vec<f64> = (0..d)
                    .map(|j| if j % 2 == 0 { 0.5 } else { -0.25 } / (j / 2 + 1) as f64)
                    .collect();
                let eta: Vec<f64> = (0..n)
                    .map(|i| data.iter().zip(&beta).map(|(x, b)| x[i] * b).sum())
                    .collect();
                for eta in eta {
                    let t = -u().ln() / eta.exp();
                    let c = 2.0 * u();
                    time.push((365.0 * t.min(c)).ceil());
                    event.push(f64::from(t <= c));
                }
                columns.extend(["time".to_string(), "event".to_string()]);
                data.push(time);
                data.push(event);
            }
        }
        Ok(Table { columns, data })
    }
}

/// A file written for a test, its path returned.
#[cfg(test)]
pub(crate) fn write_test_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[cfg(test)]
mod tests {
    use super::write_test_file as write;
    use super::*;

    #[test]
    fn csv_round_trips_bit_for_bit() {
        let dir = tempfile::tempdir().unwrap();
        let t = Table {
            columns: vec!["a".into(), "b".into()],
            data: vec![
                vec![0.1 + 0.2, -1e-300, 12345.678901234567],
                vec![1.0 / 3.0, 2.0, f64::MAX],
            ],
        };
        for name in ["t.csv", "t.parquet"] {
            let p = dir.path().join(name);
            t.write(&p).unwrap();
            assert_eq!(Table::load(&p).unwrap(), t, "{name}");
        }
    }

    #[test]
    fn generated_data_is_deterministic_and_low_rank_has_its_rank() {
        let g = Generate {
            kind: GenerateKind::LowRank,
            rows: 200,
            cols: 30,
            rank: Some(4),
            noise: 0.0,
        };
        let t = Table::generate(&g, 5).unwrap();
        assert_eq!(t, Table::generate(&g, 5).unwrap());
        assert_ne!(t, Table::generate(&g, 6).unwrap());
        let x = faer::Mat::<f64>::from_fn(200, 30, |i, j| t.data[j][i]);
        let s = x.singular_values().unwrap();
        assert!(s[3] > 1e-3 * s[0] && s[4] < 1e-10 * s[0], "{s:?}");
        let lin = Table::generate(
            &Generate {
                kind: GenerateKind::Logistic,
                rows: 100,
                cols: 3,
                rank: None,
                noise: 0.0,
            },
            1,
        )
        .unwrap();
        assert_eq!(lin.columns, ["x1", "x2", "x3", "y"]);
        assert!(lin.data[3].iter().all(|v| *v == 0.0 || *v == 1.0));
    }

    #[test]
    fn text_cell_is_reported_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "x.csv", "a,b\n1,2\n3,oops\n");
        let e = Table::load(&p).unwrap_err().to_string();
        assert!(
            e.contains("line 3") && e.contains("\"b\"") && e.contains("oops"),
            "{e}"
        );
    }

    #[test]
    fn nan_and_empty_cells_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        // NaN is read as pandas reads it: a missing value.
        let p = write(dir.path(), "n.csv", "a,b\n1,2\n3,NaN\n");
        let e = Table::load(&p).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("missing value"), "{e}");
        let p = write(dir.path(), "e.csv", "a,b\n1,2\n3,\n");
        let e = Table::load(&p).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("empty cell"), "{e}");
    }
}
