//! A data set as it comes: numeric and text columns, with empty cells, read by polars (any
//! delimiter, quoted fields). Reading judges nothing; [`Frame::check`] then holds the columns an
//! analysis uses to what it needs, naming the file, the line and the column of the first cell
//! that does not fit.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use polars::prelude::*;

use super::{DataError, Table};
use crate::scenario::Missing;

/// One column's cells; `None` is an empty cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cells {
    Num(Vec<Option<f64>>),
    /// Numbers without an empty cell (generated data, a float column with no gap), eight bytes
    /// each rather than sixteen, and shared: a clone, or the column selected whole, copies no
    /// number (a large data set is held once, however many plans and bundles take it).
    Float(Arc<Vec<f64>>),
    /// Whole numbers as the file wrote them (`6` stays `6` in every file fedsim writes).
    Int(Vec<Option<i64>>),
    Text(Vec<Option<String>>),
}

impl Cells {
    pub fn len(&self) -> usize {
        match self {
            Cells::Num(v) => v.len(),
            Cells::Float(v) => v.len(),
            Cells::Int(v) => v.len(),
            Cells::Text(v) => v.len(),
        }
    }

    /// The cell as a number, if the column is numeric (`None` inside: an empty cell).
    pub fn number(&self, row: usize) -> Option<Option<f64>> {
        match self {
            Cells::Num(v) => Some(v[row]),
            Cells::Float(v) => Some(Some(v[row])),
            Cells::Int(v) => Some(v[row].map(|x| x as f64)),
            Cells::Text(_) => None,
        }
    }

    pub fn is_numeric(&self) -> bool {
        !matches!(self, Cells::Text(_))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the cell at `row` holds a usable value. A NaN is a gap too: that is what pandas
    /// (and so statsmodels) make of one.
    pub fn present(&self, row: usize) -> bool {
        match self {
            Cells::Num(v) => v[row].is_some_and(|x| !x.is_nan()),
            Cells::Float(v) => !v[row].is_nan(),
            Cells::Int(v) => v[row].is_some(),
            Cells::Text(v) => v[row].is_some(),
        }
    }

    /// The cell as a category label (numbers as they are written).
    pub fn label(&self, row: usize) -> Option<String> {
        match self {
            Cells::Num(v) => v[row].filter(|x| !x.is_nan()).map(|x| x.to_string()),
            Cells::Float(v) => Some(v[row]).filter(|x| !x.is_nan()).map(|x| x.to_string()),
            Cells::Int(v) => v[row].map(|x| x.to_string()),
            Cells::Text(v) => v[row].clone(),
        }
    }

    fn select(&self, rows: &[usize]) -> Cells {
        match self {
            Cells::Num(v) => Cells::Num(rows.iter().map(|&r| v[r]).collect()),
            Cells::Float(v) => Cells::Float(Arc::new(rows.iter().map(|&r| v[r]).collect())),
            Cells::Int(v) => Cells::Int(rows.iter().map(|&r| v[r]).collect()),
            Cells::Text(v) => Cells::Text(rows.iter().map(|&r| v[r].clone()).collect()),
        }
    }

    fn into_text(self) -> Vec<Option<String>> {
        match self {
            Cells::Text(v) => v,
            Cells::Num(v) => v
                .into_iter()
                .map(|x| x.filter(|x| !x.is_nan()).map(|x| x.to_string()))
                .collect(),
            Cells::Float(v) => v
                .iter()
                .map(|x| Some(*x).filter(|x| !x.is_nan()).map(|x| x.to_string()))
                .collect(),
            Cells::Int(v) => v.into_iter().map(|x| x.map(|x| x.to_string())).collect(),
        }
    }

    /// The column as floats (a numeric one; text reads as gaps).
    fn into_floats(self) -> Vec<Option<f64>> {
        match self {
            Cells::Num(v) => v,
            Cells::Float(v) => v.iter().copied().map(Some).collect(),
            Cells::Int(v) => v.into_iter().map(|x| x.map(|x| x as f64)).collect(),
            Cells::Text(v) => vec![None; v.len()],
        }
    }
}

/// A table of named columns, as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub columns: Vec<String>,
    pub cells: Vec<Cells>,
}

/// How to read a file.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// CSV separator; None: detected from the header line.
    pub delimiter: Option<u8>,
    /// Columns read as text whatever they look like (categories: `01` stays `01`).
    pub text: Vec<String>,
    /// Numbers are written `32,24` (`[data] decimal = ","`).
    pub decimal_comma: bool,
}

/// Whether a cell that is not a number would be one with a decimal comma (`32,24`, `-0,5`): the
/// hint is then `[data] decimal = ","`, not categories, which would turn numbers into levels.
pub fn looks_like_decimal_comma(value: &str) -> bool {
    let v = value.trim().trim_start_matches(['-', '+']);
    match v.split_once(',') {
        Some((int, frac)) => {
            !int.is_empty()
                && !frac.is_empty()
                && int.bytes().all(|b| b.is_ascii_digit())
                && frac.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// Cells that mean "no value", as pandas reads them (`read_csv`'s default `na_values`), so that
/// fedsim, statsmodels and every site agree on which rows are incomplete: `nan` is a gap as `NaN`
/// is, and `NA` in a text column is no level. An empty cell is a gap too.
pub const MISSING: [&str; 18] = [
    "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
    "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
];

/// The separators detection considers, most usual first (ties go to the earlier one).
const CANDIDATES: [u8; 4] = [b',', b';', b'\t', b'|'];

/// The separator a CSV's header line uses most, outside quotes; `,` when it has none.
pub fn detect_delimiter(header: &str) -> u8 {
    let mut counts = [0usize; CANDIDATES.len()];
    let mut quoted = false;
    for b in header.bytes() {
        if b == b'"' {
            quoted = !quoted;
        } else if !quoted {
            if let Some(i) = CANDIDATES.iter().position(|c| *c == b) {
                counts[i] += 1;
            }
        }
    }
    let best = (0..CANDIDATES.len())
        .rev()
        .max_by_key(|&i| counts[i])
        .filter(|&i| counts[i] > 0);
    best.map_or(b',', |i| CANDIDATES[i])
}

/// A header line's names as RFC 4180 reads them: quoted fields may hold the delimiter, and a
/// doubled quote inside quotes is one quote.
fn header_names(line: &str, delimiter: u8) -> Vec<String> {
    let delimiter = delimiter as char;
    let mut names = vec![String::new()];
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        let name = names.last_mut().expect("never empty");
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                name.push('"');
            }
            '"' => quoted = !quoted,
            c if c == delimiter && !quoted => names.push(String::new()),
            c => name.push(c),
        }
    }
    names
}

/// Every record has as many fields as the header: the line of the first that does not.
/// Quotes are honoured (a separator or newline inside quotes is data).
fn check_shape(path: &Path, text: &str, delimiter: u8) -> Result<(), DataError> {
    let (mut fields, mut expected, mut quoted) = (1usize, None, false);
    let (mut line, mut record_line, mut blank) = (1usize, 1usize, true);
    let mut end_record = |fields: usize, record_line: usize, blank: bool| {
        if blank {
            return Ok(());
        }
        match expected {
            None => {
                expected = Some(fields);
                Ok(())
            }
            Some(e) if e == fields => Ok(()),
            Some(e) => Err(DataError::Ragged {
                path: path.to_path_buf(),
                line: record_line,
                fields,
                expected: e,
            }),
        }
    };
    for b in text.bytes() {
        match b {
            b'"' => {
                quoted = !quoted;
                blank = false;
            }
            b'\n' if !quoted => {
                end_record(fields, record_line, blank)?;
                line += 1;
                (fields, record_line, blank) = (1, line, true);
            }
            b'\n' => line += 1,
            b'\r' => {}
            _ if b == delimiter && !quoted => {
                fields += 1;
                blank = false;
            }
            _ => blank = false,
        }
    }
    end_record(fields, record_line, blank)
}

impl From<Table> for Frame {
    /// The table's columns as they are: moved, not copied.
    fn from(t: Table) -> Frame {
        Frame {
            columns: t.columns,
            cells: t
                .data
                .into_iter()
                .map(|c| Cells::Float(Arc::new(c)))
                .collect(),
        }
    }
}

impl Frame {
    /// Read a CSV (header row required) or Parquet file, keeping text and empty cells.
    pub fn load(path: &Path, options: &ReadOptions) -> Result<Frame, DataError> {
        let read_err = |reason: String| DataError::Read {
            path: path.to_path_buf(),
            reason,
        };
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let mut csv_names: Option<Vec<String>> = None;
        let df = if ext == "parquet" || ext == "pq" {
            let f = File::open(path).map_err(|e| read_err(e.to_string()))?;
            ParquetReader::new(f)
                .finish()
                .map_err(|e| read_err(e.to_string()))?
        } else {
            // Read first so a missing file says so plainly rather than through polars.
            let text = std::fs::read_to_string(path).map_err(|e| read_err(e.to_string()))?;
            let header = text.lines().next().unwrap_or("");
            let delimiter = options
                .delimiter
                .unwrap_or_else(|| detect_delimiter(header));
            check_shape(path, &text, delimiter)?;
            let names = header_names(header.trim_end_matches('\r'), delimiter);
            csv_names = Some(names.clone());
            let overwrite: Schema = options
                .text
                .iter()
                .filter(|c| names.contains(c))
                .map(|c| Field::new(c.as_str().into(), DataType::String))
                .collect();
            CsvReadOptions::default()
                .with_has_header(true)
                // Infer over all rows, so text far down a column is found at its line.
                .with_infer_schema_length(None)
                .with_schema_overwrite(Some(Arc::new(overwrite)))
                .map_parse_options(|p| {
                    p.with_separator(delimiter)
                        .with_decimal_comma(options.decimal_comma)
                        .with_null_values(Some(NullValues::AllColumns(
                            MISSING.iter().map(|m| (*m).into()).collect(),
                        )))
                })
                .into_reader_with_file_handle(std::io::Cursor::new(text.as_bytes()))
                .finish()
                .map_err(|e| read_err(e.to_string()))?
        };
        if df.height() == 0 {
            return Err(DataError::Empty {
                path: path.to_path_buf(),
            });
        }
        // polars keeps a quoted header's doubled quotes (`"b""m""i"` reads as `b""m""i`, and is
        // written back with every quote doubled again): take the names as RFC 4180 reads them.
        let mut df = df;
        if let Some(names) = csv_names.filter(|n| n.len() == df.width()) {
            df.set_column_names(&names.iter().map(String::as_str).collect::<Vec<_>>())
                .map_err(|e| read_err(e.to_string()))?;
        }
        let mut columns = Vec::with_capacity(df.width());
        let mut cells = Vec::with_capacity(df.width());
        // Column by column, each polars column let go once it is read: the file's numbers are
        // held about once, not twice.
        for col in df.into_columns() {
            let name = col.name().to_string();
            let s = col.as_materialized_series();
            let read = |e: PolarsError| read_err(format!("column {name:?}: {e}"));
            let c = if s.dtype().is_integer() || s.dtype().is_bool() {
                let i = s.cast(&DataType::Int64).map_err(read)?;
                Cells::Int(i.i64().map_err(read)?.iter().collect())
            } else if s.dtype().is_primitive_numeric() {
                let f = s.cast(&DataType::Float64).map_err(read)?;
                let f = f.f64().map_err(read)?;
                if f.null_count() == 0 {
                    Cells::Float(Arc::new(f.into_no_null_iter().collect()))
                } else {
                    Cells::Num(f.iter().collect())
                }
            } else {
                match s.cast(&DataType::String) {
                    Ok(t) => Cells::Text(
                        t.str()
                            .map_err(read)?
                            .iter()
                            .map(|v| v.map(str::to_string))
                            .collect(),
                    ),
                    Err(_) => {
                        return Err(DataError::BadType {
                            path: path.to_path_buf(),
                            column: name,
                            dtype: s.dtype().to_string(),
                        })
                    }
                }
            };
            columns.push(name);
            cells.push(c);
        }
        Ok(Frame { columns, cells })
    }

    pub fn from_table(t: &Table) -> Frame {
        Frame::from(t.clone())
    }

    pub fn rows(&self) -> usize {
        self.cells.first().map_or(0, Cells::len)
    }

    pub fn column(&self, name: &str) -> Option<&Cells> {
        self.columns
            .iter()
            .position(|c| c == name)
            .map(|i| &self.cells[i])
    }

    /// The same columns, only the given rows, in the given order.
    pub fn select_rows(&self, rows: &[usize]) -> Frame {
        Frame {
            columns: self.columns.clone(),
            cells: self.cells.iter().map(|c| c.select(rows)).collect(),
        }
    }

    /// Only the named columns, in the given order.
    pub fn select_columns(&self, names: &[String], path: &Path) -> Result<Frame, DataError> {
        let cells = names
            .iter()
            .map(|n| {
                self.column(n).cloned().ok_or_else(|| DataError::NoColumn {
                    path: path.to_path_buf(),
                    column: n.clone(),
                    available: self.columns.join(", "),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Frame {
            columns: names.to_vec(),
            cells,
        })
    }

    /// The rows of several frames with the same columns (in the first one's order). A column
    /// that is numeric in one file and text in another becomes text.
    pub fn concat(frames: Vec<Frame>) -> Frame {
        let Some(first) = frames.first() else {
            return Frame {
                columns: Vec::new(),
                cells: Vec::new(),
            };
        };
        let columns = first.columns.clone();
        let cells = columns
            .iter()
            .map(|name| {
                let parts: Vec<&Cells> = frames.iter().filter_map(|f| f.column(name)).collect();
                if let [only] = parts[..] {
                    // One file: its column as it is (a shared one is not copied).
                    only.clone()
                } else if parts.iter().all(|c| matches!(c, Cells::Float(_))) {
                    Cells::Float(Arc::new(
                        parts
                            .iter()
                            .flat_map(|c| match c {
                                Cells::Float(v) => v.as_slice(),
                                _ => &[],
                            })
                            .copied()
                            .collect(),
                    ))
                } else if parts.iter().all(|c| matches!(c, Cells::Int(_))) {
                    Cells::Int(
                        parts
                            .iter()
                            .flat_map(|c| match c {
                                Cells::Int(v) => v.clone(),
                                _ => Vec::new(),
                            })
                            .collect(),
                    )
                } else if parts.iter().all(|c| c.is_numeric()) {
                    Cells::Num(
                        parts
                            .iter()
                            .flat_map(|c| (*c).clone().into_floats())
                            .collect(),
                    )
                } else {
                    Cells::Text(
                        parts
                            .into_iter()
                            .flat_map(|c| c.clone().into_text())
                            .collect(),
                    )
                }
            })
            .collect();
        Frame { columns, cells }
    }

    /// Hold the used columns to what the analysis needs: `numeric` columns hold numbers,
    /// `categorical` ones anything, and a gap is an error unless `missing` is "drop". A text
    /// cell in a numeric column, an infinite number, or (under "error") an empty cell or NaN is
    /// reported with its line (rows are lines 2.. of the file this frame was read from).
    pub fn check(
        &self,
        path: &Path,
        numeric: &[String],
        categorical: &[String],
        missing: Missing,
    ) -> Result<(), DataError> {
        let line = |row: usize| row + 2;
        for name in numeric.iter().chain(categorical) {
            let cells = self.column(name).ok_or_else(|| DataError::NoColumn {
                path: path.to_path_buf(),
                column: name.clone(),
                available: self.columns.join(", "),
            })?;
            let is_numeric = numeric.contains(name);
            for row in 0..cells.len() {
                // The cell as a number (a category's text stands as 0: any text is a value).
                let value = match (cells, is_numeric) {
                    (Cells::Num(_) | Cells::Float(_) | Cells::Int(_), _) => {
                        cells.number(row).flatten()
                    }
                    (Cells::Text(v), true) => match &v[row] {
                        None => None,
                        Some(t) => {
                            Some(t.trim().parse::<f64>().map_err(|_| DataError::NotNumeric {
                                path: path.to_path_buf(),
                                column: name.clone(),
                                line: line(row),
                                value: t.clone(),
                            })?)
                        }
                    },
                    (Cells::Text(v), false) => v[row].as_ref().map(|_| 0.0),
                };
                let gap = match value {
                    None => true,
                    Some(x) if x.is_infinite() || (x.is_nan() && missing == Missing::Error) => {
                        return Err(DataError::NonFinite {
                            path: path.to_path_buf(),
                            column: name.clone(),
                            line: line(row),
                            value: x,
                        })
                    }
                    Some(x) => x.is_nan(),
                };
                if gap && missing == Missing::Error {
                    return Err(DataError::Missing {
                        path: path.to_path_buf(),
                        column: name.clone(),
                        line: line(row),
                    });
                }
            }
        }
        Ok(())
    }

    /// The rows whose cells in `used` are all present (listwise deletion).
    pub fn complete_rows(&self, used: &[String]) -> Vec<usize> {
        let cols: Vec<&Cells> = used.iter().filter_map(|c| self.column(c)).collect();
        (0..self.rows())
            .filter(|&r| cols.iter().all(|c| c.present(r)))
            .collect()
    }

    /// A column's values as numbers, for the given rows (checked numeric by [`Frame::check`]).
    pub fn numbers(&self, name: &str, rows: &[usize]) -> Option<Vec<f64>> {
        Some(match self.column(name)? {
            c @ (Cells::Num(_) | Cells::Float(_) | Cells::Int(_)) => rows
                .iter()
                .map(|&r| c.number(r).flatten().unwrap_or(f64::NAN))
                .collect(),
            Cells::Text(v) => rows
                .iter()
                .map(|&r| {
                    v[r].as_deref()
                        .and_then(|t| t.trim().parse().ok())
                        .unwrap_or(f64::NAN)
                })
                .collect(),
        })
    }

    /// A column as labels for the dirichlet skew: numbers as they are, text by the rank of its
    /// value, gaps as a class of their own.
    pub fn label_values(&self, name: &str) -> Option<Vec<f64>> {
        let cells = self.column(name)?;
        Some(match cells {
            c @ (Cells::Num(_) | Cells::Float(_) | Cells::Int(_)) => (0..c.len())
                .map(|r| {
                    c.number(r)
                        .flatten()
                        .filter(|x| !x.is_nan())
                        .unwrap_or(f64::NEG_INFINITY)
                })
                .collect(),
            Cells::Text(v) => {
                let mut levels: Vec<&String> = v.iter().flatten().collect();
                levels.sort();
                levels.dedup();
                v.iter()
                    .map(|x| {
                        x.as_ref().map_or(f64::NEG_INFINITY, |x| {
                            levels.binary_search(&x).unwrap_or(0) as f64
                        })
                    })
                    .collect()
            }
        })
    }

    fn frame(&self) -> Result<DataFrame, PolarsError> {
        let cols: Vec<Column> = self
            .columns
            .iter()
            .zip(&self.cells)
            .map(|(n, c)| match c {
                Cells::Num(v) => Column::new(n.as_str().into(), v.as_slice()),
                Cells::Float(v) => Column::new(n.as_str().into(), v.as_slice()),
                Cells::Int(v) => Column::new(n.as_str().into(), v.as_slice()),
                Cells::Text(v) => Column::new(n.as_str().into(), v.as_slice()),
            })
            .collect();
        DataFrame::new_infer_height(cols)
    }

    /// As [`Frame::frame`], handing each column of numbers without gaps to polars as it is
    /// (when no one else holds it) rather than copying it.
    fn into_frame(self) -> Result<DataFrame, PolarsError> {
        let cols: Vec<Column> = self
            .columns
            .into_iter()
            .zip(self.cells)
            .map(|(n, c)| match c {
                Cells::Float(v) => {
                    let v = Arc::try_unwrap(v).unwrap_or_else(|shared| shared.to_vec());
                    Float64Chunked::from_vec(n.as_str().into(), v)
                        .into_series()
                        .into_column()
                }
                Cells::Num(v) => Column::new(n.as_str().into(), v.as_slice()),
                Cells::Int(v) => Column::new(n.as_str().into(), v.as_slice()),
                Cells::Text(v) => Column::new(n.as_str().into(), v.as_slice()),
            })
            .collect();
        DataFrame::new_infer_height(cols)
    }

    /// The frame as file bytes: "csv" (header, `,`, floats with every digit, empty cells for
    /// gaps, text quoted where it must be) or "parquet".
    pub fn to_bytes(&self, format: &str, path: &Path) -> Result<Vec<u8>, DataError> {
        let df = self.frame().map_err(|e| write_error(path, e))?;
        dataframe_bytes(df, format, path)
    }

    /// [`Frame::to_bytes`], consuming the frame: its numbers go to polars without a copy, so
    /// writing a large share holds it about twice (the numbers, and the file's bytes).
    pub fn into_bytes(self, format: &str, path: &Path) -> Result<Vec<u8>, DataError> {
        let df = self.into_frame().map_err(|e| write_error(path, e))?;
        dataframe_bytes(df, format, path)
    }
}

fn write_error(path: &Path, e: PolarsError) -> DataError {
    DataError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// A polars frame as file bytes, "csv" or "parquet".
fn dataframe_bytes(mut df: DataFrame, format: &str, path: &Path) -> Result<Vec<u8>, DataError> {
    let write_err = |e: PolarsError| write_error(path, e);
    let mut out = Vec::new();
    if format == "parquet" {
        ParquetWriter::new(&mut out)
            .finish(&mut df)
            .map_err(write_err)?;
    } else {
        CsvWriter::new(&mut out)
            .include_header(true)
            .finish(&mut df)
            .map_err(write_err)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::write_test_file as write;

    #[test]
    fn the_delimiter_is_found_in_the_header() {
        assert_eq!(detect_delimiter("a;b;c"), b';');
        assert_eq!(detect_delimiter("a\tb"), b'\t');
        assert_eq!(detect_delimiter("\"x;y\",b"), b',');
        assert_eq!(detect_delimiter("single"), b',');
    }

    #[test]
    fn text_gaps_and_quotes_are_read_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "x.csv",
            "firm;\"value; in $\";code\n\"Acme; Inc\";1,5;01\nB;;02\n;3;03\n",
        );
        let f = Frame::load(
            &p,
            &ReadOptions {
                delimiter: None,
                text: vec!["code".into()],
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(f.columns, ["firm", "value; in $", "code"]);
        assert_eq!(
            f.cells[0],
            Cells::Text(vec![Some("Acme; Inc".into()), Some("B".into()), None])
        );
        // A decimal comma is not a number here: the column stays text, for `check` to name.
        assert!(matches!(f.cells[1], Cells::Text(_)));
        assert_eq!(
            f.cells[2],
            Cells::Text(vec![
                Some("01".into()),
                Some("02".into()),
                Some("03".into())
            ])
        );
        let e = f
            .check(&p, &["value; in $".into()], &[], Missing::Drop)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("\"1,5\""), "{e}");
        assert_eq!(f.complete_rows(&["firm".into(), "code".into()]), [0, 1]);
    }

    #[test]
    fn a_short_or_long_record_is_named_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "r.csv", "a,b\n1,2\n\"x,\ny\",3\n4\n");
        let e = Frame::load(&p, &ReadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 5") && e.contains("1 fields"), "{e}");
    }

    #[test]
    fn gaps_are_errors_or_dropped_as_asked() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "g.csv", "a,b\n1,2\n3,\nNaN,4\n");
        let f = Frame::load(&p, &ReadOptions::default()).unwrap();
        let cols = ["a".to_string(), "b".to_string()];
        // Column by column: the NaN in `a` comes before the empty cell in `b`.
        let e = f.check(&p, &cols, &[], Missing::Error).unwrap_err();
        assert!(e.to_string().contains("line 4, column \"a\""), "{e}");
        let e = f.check(&p, &cols[1..], &[], Missing::Error).unwrap_err();
        assert!(
            e.to_string().contains("line 3") && e.to_string().contains("missing value"),
            "{e}"
        );
        f.check(&p, &cols, &[], Missing::Drop).unwrap();
        assert_eq!(f.complete_rows(&cols), [0]);
        let back = f.to_bytes("csv", &p).unwrap();
        let q = write(dir.path(), "back.csv", std::str::from_utf8(&back).unwrap());
        let g = Frame::load(&q, &ReadOptions::default()).unwrap();
        assert_eq!(g.complete_rows(&cols), [0]);
    }
}
