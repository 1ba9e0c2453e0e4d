//! `[data]`: a file, a file per site or a synthetic data set; how to read it (delimiter,
//! categorical columns, missing values); the target and the columns to use.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Locate, Scenario, ScenarioError};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// CSV or Parquet, relative to the scenario file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Instead of one file to split: one file per site, in site order (a real deployment never
    /// starts from a pooled file). The pooled baseline is their union.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<PathBuf>>,
    /// Instead of a file: a synthetic data set made from the scenario's seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate: Option<Generate>,
    /// Regression target; absent for svd.
    #[serde(default)]
    pub target: Option<String>,
    /// Feature columns to use, in order; default all columns but the target.
    #[serde(default)]
    pub features: Option<Vec<String>>,
    /// Columns to leave out (e.g. a class label before an svd).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// CSV field separator, one character; default: detected from the header line, else `,`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<String>,
    /// The decimal mark of CSV numbers: "." (default) or "," (`32,24`, as many European
    /// exports write them; the delimiter must then be another character).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decimal: Option<String>,
    /// Text columns used as categories, treatment-coded as statsmodels' formula API does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categorical: Vec<String>,
    /// What an empty cell in a used column means.
    #[serde(default)]
    pub missing: Missing,
}

/// `[data] missing`: refuse an incomplete row (naming the cell), or leave it out, as
/// statsmodels' `missing = 'drop'` does (listwise, over the used columns only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Missing {
    #[default]
    Error,
    Drop,
}

impl Missing {
    pub fn as_str(self) -> &'static str {
        match self {
            Missing::Error => "error",
            Missing::Drop => "drop",
        }
    }
}

/// The separators a `delimiter` may name.
pub const DELIMITERS: [(char, &str); 5] = [
    (',', "\",\""),
    (';', "\";\""),
    ('\t', "\"\\t\""),
    ('|', "\"|\""),
    (' ', "\" \""),
];

impl DataSpec {
    /// Whether numbers are written with a decimal comma.
    pub fn decimal_comma(&self) -> bool {
        self.decimal.as_deref() == Some(",")
    }

    /// The separator as a byte, if one is set (validated to be one of [`DELIMITERS`]).
    pub fn delimiter_byte(&self) -> Option<u8> {
        self.delimiter
            .as_deref()
            .and_then(|d| d.chars().next())
            .map(|c| c as u8)
    }

    /// The data files (one, or one per site), none for generated data.
    pub fn sources(&self) -> Vec<&PathBuf> {
        self.path
            .iter()
            .chain(self.files.iter().flatten())
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GenerateKind {
    /// Features x1..xd: a rank-r signal with separated singular values, plus Gaussian noise.
    LowRank,
    /// Features x1..xd ~ N(0, 1) and target y = 1 + X beta + noise.
    Linear,
    /// Features x1..xd ~ N(0, 1) and a 0/1 target y drawn from a logistic model.
    Logistic,
    /// Features x1..xd ~ N(0, 1), a follow-up `time` in whole days (ties included) from a
    /// proportional-hazards model, cut by uniform censoring, and its `event` (1 or 0).
    Survival,
}

/// A synthetic data set, for sizes no real file here has (benchmarks, high dimension).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Generate {
    pub kind: GenerateKind,
    pub rows: usize,
    pub cols: usize,
    /// low_rank only: rank of the signal (default 10, filled in when the scenario is loaded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<usize>,
    /// Standard deviation of the added noise (default 0.1).
    #[serde(default = "default_noise")]
    pub noise: f64,
}

/// The signal rank of a low_rank data set that does not say.
pub const DEFAULT_RANK: usize = 10;

impl Generate {
    /// The rank of a low_rank signal: as written, else the default.
    pub fn signal_rank(&self) -> usize {
        self.rank.unwrap_or(DEFAULT_RANK)
    }
}

impl GenerateKind {
    /// As written in a scenario.
    pub fn as_str(self) -> &'static str {
        match self {
            GenerateKind::LowRank => "low_rank",
            GenerateKind::Linear => "linear",
            GenerateKind::Logistic => "logistic",
            GenerateKind::Survival => "survival",
        }
    }
}

fn default_noise() -> f64 {
    0.1
}

/// Exactly one source; a target where the algorithm needs one; feature lists without repeats.
pub(super) fn validate(s: &Scenario, at: &Locate) -> Result<(), ScenarioError> {
    let d = &s.data;
    let given = [
        ("path", d.path.is_some()),
        ("files", d.files.is_some()),
        ("generate", d.generate.is_some()),
    ];
    let named: Vec<&str> = given.iter().filter(|g| g.1).map(|g| g.0).collect();
    match named.as_slice() {
        [] => {
            return Err(at(
                "data",
                "missing key `path`: give a CSV or Parquet file (or `files`, one per site, or `generate` for synthetic data)"
                    .into(),
            ))
        }
        [_] => {}
        [_, second, ..] => {
            return Err(at(
                &format!("data.{second}"),
                format!("give only one of `path`, `files` and `generate`, not `{}` and `{second}`", named[0]),
            ))
        }
    }
    let file_key = |i: Option<usize>| match i {
        None => "data.path".to_string(),
        Some(i) => format!("data.files.{i}"),
    };
    let mut files: Vec<(String, &PathBuf)> = d.path.iter().map(|p| (file_key(None), p)).collect();
    if let Some(list) = &d.files {
        if list.is_empty() {
            return Err(at(
                "data.files",
                "expected at least one file, one per site, found none".into(),
            ));
        }
        files.extend(list.iter().enumerate().map(|(i, p)| (file_key(Some(i)), p)));
    }
    for (key, path) in &files {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        if !matches!(ext.as_str(), "csv" | "parquet" | "pq") {
            return Err(at(
                key,
                format!(
                    "expected a .csv or .parquet file, found {:?}",
                    path.display().to_string()
                ),
            ));
        }
    }
    if let Some(g) = &d.generate {
        validate_generate(g, at)?;
    }
    validate_reading(s, at)?;
    let kind = s.algorithm.kind;
    match (&s.data.target, kind.needs_target()) {
        (None, true) => {
            return Err(at(
                "data",
                format!(
                    "missing key `target`: algorithm {} needs a target column",
                    kind.as_str()
                ),
            ))
        }
        (Some(_), false) if kind != super::AlgorithmKind::External => {
            return Err(at(
                "data.target",
                format!(
                "algorithm {} takes no target column; remove `target` (or list it in `exclude`)",
                kind.as_str()
            ),
            ))
        }
        _ => {}
    }
    if let Some(f) = &s.data.features {
        if f.is_empty() {
            return Err(at(
                "data.features",
                "expected at least one feature column".into(),
            ));
        }
        let mut seen = BTreeSet::new();
        if let Some(dup) = f.iter().find(|c| !seen.insert(c.as_str())) {
            return Err(at(
                "data.features",
                format!("column {dup:?} is listed twice"),
            ));
        }
        if let Some(t) = &s.data.target {
            if f.contains(t) {
                return Err(at(
                    "data.features",
                    format!("the target {t:?} cannot also be a feature"),
                ));
            }
        }
    }
    Ok(())
}

/// A delimiter that is one known separator (and only for CSV), categorical columns that are not
/// the target, and options a vertical split cannot honour.
fn validate_reading(s: &Scenario, at: &Locate) -> Result<(), ScenarioError> {
    let d = &s.data;
    if let Some(delim) = &d.delimiter {
        let known = DELIMITERS
            .iter()
            .any(|(c, _)| delim.chars().eq(std::iter::once(*c)));
        if !known {
            let names: Vec<&str> = DELIMITERS.iter().map(|(_, n)| *n).collect();
            return Err(at(
                "data.delimiter",
                format!(
                    "expected one of {} (one character), found {delim:?}",
                    names.join(", ")
                ),
            ));
        }
        let csv = d.sources().iter().any(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
        });
        if !csv {
            return Err(at(
                "data.delimiter",
                "`delimiter` applies to CSV files only; this data is not read from CSV".into(),
            ));
        }
    }
    if let Some(mark) = &d.decimal {
        if mark != "," && mark != "." {
            return Err(at(
                "data.decimal",
                format!("expected \",\" or \".\", found {mark:?}"),
            ));
        }
        if mark == "," && d.delimiter.as_deref() == Some(",") {
            return Err(at(
                "data.decimal",
                "a decimal comma needs another delimiter: `,` already separates the fields".into(),
            ));
        }
        if d.generate.is_some() {
            return Err(at(
                "data.decimal",
                "`decimal` applies to CSV files; generated data has no text to read".into(),
            ));
        }
    }
    let mut seen = BTreeSet::new();
    for (i, c) in d.categorical.iter().enumerate() {
        let key = format!("data.categorical.{i}");
        if !seen.insert(c.as_str()) {
            return Err(at(&key, format!("column {c:?} is listed twice")));
        }
        if d.target.as_ref() == Some(c) {
            return Err(at(
                &key,
                format!("the target {c:?} must be numeric; only features can be categorical"),
            ));
        }
    }
    if !d.categorical.is_empty() && d.generate.is_some() {
        return Err(at(
            "data.categorical",
            "generated data has numeric columns only; `categorical` needs a data file".into(),
        ));
    }
    if s.algorithm.kind == super::AlgorithmKind::External
        && (!d.categorical.is_empty() || d.missing == Missing::Drop)
    {
        return Err(at(
            if d.categorical.is_empty() { "data.missing" } else { "data.categorical" },
            "an external algorithm reads its sites' files itself: text columns and empty cells reach it as they are".into(),
        ));
    }
    if s.partition.kind == super::PartitionKind::Vertical {
        if !d.categorical.is_empty() {
            return Err(at(
                "data.categorical",
                "categorical columns are supported for horizontal splits only".into(),
            ));
        }
        if d.missing == Missing::Drop {
            return Err(at(
                "data.missing",
                "\"drop\" needs whole rows at each site; a vertical split holds columns, so rows cannot be dropped at one site alone".into(),
            ));
        }
    }
    Ok(())
}

/// Sizes this machine can hold, and a rank the matrix can have.
fn validate_generate(g: &Generate, at: &Locate) -> Result<(), ScenarioError> {
    if g.rows < 2 || g.cols < 1 || g.rows.saturating_mul(g.cols) > 200_000_000 {
        return Err(at(
            "data.generate",
            format!(
                "expected rows >= 2, cols >= 1 and rows x cols <= 2e8, found {} x {}",
                g.rows, g.cols
            ),
        ));
    }
    // Only low_rank has a rank: the other kinds draw full-rank features.
    let most = g.cols.min(g.rows);
    match (g.kind, g.rank) {
        (GenerateKind::LowRank, Some(r)) if r == 0 || r > most => {
            return Err(at(
                "data.generate.rank",
                format!("expected a rank from 1 to {most}"),
            ));
        }
        (GenerateKind::LowRank, None) if DEFAULT_RANK > most => {
            return Err(at(
                "data.generate.rank",
                format!(
                    "the default rank {DEFAULT_RANK} needs at least {DEFAULT_RANK} rows and columns; give a rank from 1 to {most}"
                ),
            ));
        }
        (GenerateKind::Linear | GenerateKind::Logistic | GenerateKind::Survival, Some(_)) => {
            return Err(at(
                "data.generate.rank",
                format!(
                    "`rank` applies to kind \"low_rank\" only, not \"{}\"",
                    g.kind.as_str()
                ),
            ));
        }
        _ => {}
    }
    if !(g.noise.is_finite() && g.noise >= 0.0) {
        return Err(at(
            "data.generate.noise",
            format!("expected a standard deviation >= 0, found {}", g.noise),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{Scenario, ScenarioError};
    use super::*;

    /// A scenario whose data is `generate = GENERATE` (on line 4), for `algorithm`.
    fn generated(generate: &str, algorithm: &str) -> Result<Scenario, ScenarioError> {
        let (target, k) = if algorithm == "svd" {
            ("", "k = 1\n")
        } else {
            ("target = \"y\"\n", "")
        };
        let text = format!(
            "[scenario]\nname = \"g\"\n[data]\ngenerate = {generate}\n{target}[partition]\nkind = \"horizontal\"\nsites = 2\n[algorithm]\nkind = \"{algorithm}\"\n{k}"
        );
        Scenario::parse(&text, Path::new("g.toml"))
    }

    #[test]
    fn logistic_and_linear_data_need_no_rank() {
        let s = generated(
            r#"{ kind = "logistic", rows = 10000, cols = 2 }"#,
            "logistic_regression",
        )
        .unwrap();
        let g = s.data.generate.unwrap();
        assert_eq!(
            (g.kind, g.rows, g.cols, g.rank),
            (GenerateKind::Logistic, 10000, 2, None)
        );
        generated(
            r#"{ kind = "linear", rows = 3, cols = 1 }"#,
            "linear_regression",
        )
        .unwrap();
    }

    #[test]
    fn rank_for_another_kind_is_a_located_error() {
        let e = generated(
            r#"{ kind = "linear", rows = 100, cols = 20, rank = 3 }"#,
            "linear_regression",
        )
        .unwrap_err();
        let ScenarioError::Invalid {
            line,
            column,
            key,
            message,
            ..
        } = &e
        else {
            panic!("{e}")
        };
        // The column is that of `3`.
        assert_eq!((*line, key.as_str()), (4, "data.generate.rank"), "{e}");
        assert_eq!(
            *column,
            "generate = { kind = \"linear\", rows = 100, cols = 20, rank = ".len() + 1,
            "{e}"
        );
        assert_eq!(
            message,
            "`rank` applies to kind \"low_rank\" only, not \"linear\""
        );
    }

    #[test]
    fn low_rank_gets_the_default_rank_written_down_or_a_clear_error() {
        let s = generated(r#"{ kind = "low_rank", rows = 50, cols = 20 }"#, "svd").unwrap();
        let g = s.data.generate.as_ref().unwrap();
        assert_eq!(
            (g.rank, g.signal_rank()),
            (Some(DEFAULT_RANK), DEFAULT_RANK)
        );
        // The resolved scenario a run writes states the rank it used.
        let resolved = toml::to_string_pretty(&s).unwrap();
        assert!(resolved.contains("rank = 10"), "{resolved}");

        let e = generated(r#"{ kind = "low_rank", rows = 50, cols = 4 }"#, "svd")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("data.generate.rank: the default rank 10 needs at least 10 rows and columns; give a rank from 1 to 4"),
            "{e}"
        );
        let e = generated(
            r#"{ kind = "low_rank", rows = 50, cols = 4, rank = 5 }"#,
            "svd",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("expected a rank from 1 to 4"), "{e}");
        generated(
            r#"{ kind = "low_rank", rows = 50, cols = 4, rank = 4 }"#,
            "svd",
        )
        .unwrap();
    }
}
