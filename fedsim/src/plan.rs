//! The plan: which columns and rows each site gets, and the analysis each runs. Pure: planning
//! reads the data and touches no file, so a bad scenario or data set leaves nothing behind.
//! What a site then receives is `bundle`'s.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::algorithms::cox::CoxParams;
use crate::algorithms::external::ExternalSpec;
use crate::algorithms::glm::GlmParams;
use crate::algorithms::kaplan_meier::KmParams;
use crate::algorithms::{AlgorithmConfig, LocalData, Newton, Params, SvdParams};
use crate::data::design::{self, Design};
use crate::data::frame::{Cells, Frame, ReadOptions};
use crate::data::{DataError, Table};
use crate::partition::{self, PartitionError};
use crate::scenario::{AlgorithmKind, Family, PartitionKind, Scenario, ScenarioError, Strategy};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Data(#[from] DataError),
    /// What only the data can tell about the scenario (a column it names is not there), located
    /// in the scenario file.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("data file {}: {source}", path.display())]
    Partition {
        source: PartitionError,
        path: PathBuf,
    },
    #[error("data file {}, line {line}, column {column:?}: logistic regression needs a 0/1 target, found {value}", path.display())]
    Target {
        path: PathBuf,
        column: String,
        line: usize,
        value: f64,
    },
    #[error("data file {}, line {line}, column {column:?}: {expected}, found {value}", path.display())]
    Value {
        path: PathBuf,
        column: String,
        line: usize,
        value: f64,
        expected: String,
    },
    #[error("data file {}: k = {k} components, but the data has only {rows} rows and {cols} feature columns", path.display())]
    TooManyComponents {
        path: PathBuf,
        k: usize,
        rows: usize,
        cols: usize,
    },
    #[error("data file {}: perfect separation: {how}, so the maximum-likelihood estimate of its coefficient does not exist (statsmodels stops with PerfectSeparation); leave it out, or merge categories that hold only one outcome", path.display())]
    Separation { path: PathBuf, how: String },
    #[error("data file {}: no feature columns left (columns: {available})", path.display())]
    NoFeatures { path: PathBuf, available: String },
    #[error("data file {}: {what} column {column:?} {side} {}; the files of the sites must share their columns", path.display(), first.display())]
    FilesDiffer {
        path: PathBuf,
        column: String,
        what: &'static str,
        side: &'static str,
        first: PathBuf,
    },
    #[error("data file {}: column {column:?} holds text (line {line}: {}); list it in [data] categorical to use it as categories, or leave it out of the features", path.display(), crate::data::clip(value))]
    TextColumn {
        path: PathBuf,
        column: String,
        line: usize,
        value: String,
    },
    #[error("data file {}: no complete rows left in the used columns after dropping the incomplete ones", path.display())]
    NoCompleteRows { path: PathBuf },
    #[error("data file {}: column {column:?} holds text (line {line}: {}); describe summarises numeric columns: leave it out of the features (kind = \"crosstab\" counts categories)", path.display(), crate::data::clip(value))]
    DescribeText {
        path: PathBuf,
        column: String,
        line: usize,
        value: String,
    },
    #[error("data file {}: column {column:?} has one level only ({level:?}) among the complete rows: a table of it against another column tests nothing", path.display())]
    OneLevel {
        path: PathBuf,
        column: String,
        level: String,
    },
}

/// A run's analyses on one split of the data: what prep bundles and the run drives. A scenario
/// with `[algorithm]` has one analysis; one with `[[analysis]]` entries has one per entry, in
/// their order, every one on the same sites' rows.
#[derive(Debug, Clone)]
pub struct Study {
    /// In the order they run.
    pub analyses: Vec<Plan>,
    /// What each site's bundle holds: every column an analysis uses, all rows, as read (a column
    /// any analysis reads as text kept as text, so each site reads back its cells as written).
    pub frame: Frame,
    /// File format of the site bundles' data: "csv" or "parquet".
    pub format: &'static str,
    /// The analyses are `[[analysis]]` entries, named: the summary and the report have a
    /// section per analysis.
    pub named: bool,
}

impl Study {
    /// Plan every analysis (each one's columns, cells, complete rows and checks, as a single
    /// analysis is planned), then hand every one the first one's split: the views share the
    /// seed and the split's label, so the splits are the same, and sharing it makes that a fact.
    pub fn make(s: &Scenario) -> Result<Study, PlanError> {
        let mut analyses = Vec::new();
        for view in s.analyses() {
            crate::sys::cancel::check().map_err(|_| DataError::Cancelled)?;
            let mut plan = Plan::make(&view)?;
            plan.name = view.analysis_name();
            analyses.push(plan);
        }
        let sites = analyses[0].sites.clone();
        for plan in &mut analyses[1..] {
            plan.sites = sites.clone();
        }
        let frame = bundle_frame(&analyses);
        let format = if analyses.iter().any(|p| p.format == "csv") {
            "csv"
        } else {
            "parquet"
        };
        Ok(Study {
            analyses,
            frame,
            format,
            named: !s.analysis.is_empty(),
        })
    }

    /// Every analysis's configuration, in the order they run.
    pub fn configs(&self) -> Vec<AlgorithmConfig> {
        self.analyses.iter().map(|p| p.config.clone()).collect()
    }

    /// The first analysis: what a single-analysis run is about, and whose split every one shares.
    pub fn first(&self) -> &Plan {
        &self.analyses[0]
    }

    pub fn sites(&self) -> &[SitePlan] {
        &self.first().sites
    }

    /// A site's bundle data: its share of every used column, as read (its own incomplete rows
    /// included: the site drops them itself).
    pub fn site_frame(&self, site: &SitePlan) -> Result<Frame, DataError> {
        let first = self.first();
        match (&site.source_rows, &site.columns) {
            (Some(rows), _) => Ok(self.frame.select_rows(rows)),
            (None, Some(cols)) => self.frame.select_columns(cols, &first.data_path),
            (None, None) => Ok(self.frame.clone()),
        }
    }
}

/// Every analysis's used columns in one frame, each column once, in order of first use; a
/// column one analysis reads as a category is taken as read as text.
fn bundle_frame(analyses: &[Plan]) -> Frame {
    if analyses.len() == 1 {
        return analyses[0].frame.clone();
    }
    let mut columns: Vec<String> = Vec::new();
    let mut cells = Vec::new();
    for plan in analyses {
        for name in &plan.frame.columns {
            if columns.contains(name) {
                continue;
            }
            let source = analyses
                .iter()
                .find(|p| p.config.categorical.contains(name) && p.frame.column(name).is_some())
                .unwrap_or(plan);
            if let Some(c) = source.frame.column(name) {
                columns.push(name.clone());
                cells.push(c.clone());
            }
        }
    }
    Frame { columns, cells }
}

/// Who gets which rows; the analysis every site runs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The analysis's name: its `[[analysis]]` name, else its kind.
    pub name: String,
    /// The analysis as the sites get it (raw feature names; categorical columns still raw).
    pub config: AlgorithmConfig,
    /// The used columns (features, then target) of all rows, as read: text and gaps included.
    pub frame: Frame,
    /// The design on the pooled complete rows (the levels the federation must agree on).
    pub design: Design,
    /// Rows of `frame` with every used cell present.
    pub complete: Vec<usize>,
    /// The data file (the first one, with a file per site), for messages.
    pub data_path: PathBuf,
    /// The data's name as reference rows know it: the file's name, or the files' names joined
    /// with `+`.
    pub data_name: String,
    pub sites: Vec<SitePlan>,
    /// File format of the site bundles' data: "csv" or "parquet".
    pub format: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct SitePlan {
    pub name: String,
    /// 0-based indices of the data's rows that this site holds (horizontal split).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_rows: Option<Vec<usize>>,
    /// The feature columns this site holds (vertical split; every site has all rows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
}

impl SitePlan {
    /// What this site's agent must compute on (its own columns, for a vertical split).
    pub fn config(&self, plan: &Plan) -> AlgorithmConfig {
        let mut c = plan.config.clone();
        if let Some(cols) = &self.columns {
            c.features = cols.clone();
        }
        // A site runs its step in its own directory: the controller's is none of its business.
        if let Params::External(spec) = &mut c.params {
            spec.workdir = PathBuf::from(".");
        }
        c
    }

    /// The target over this site's complete rows (horizontal splits with a target only).
    pub fn outcome(&self, plan: &Plan) -> Option<crate::data::outcome::Outcome> {
        let target = plan.config.target.as_deref()?;
        let rows: Vec<usize> = self
            .source_rows
            .as_ref()?
            .iter()
            .copied()
            .filter(|r| plan.complete.binary_search(r).is_ok())
            .collect();
        crate::data::outcome::Outcome::of(&plan.frame.numbers(target, &rows)?)
    }

    /// Rows in this site's file.
    pub fn rows(&self, plan: &Plan) -> usize {
        self.source_rows
            .as_ref()
            .map_or(plan.frame.rows(), Vec::len)
    }

    /// Rows the site leaves out as incomplete (`missing = "drop"`).
    pub fn dropped(&self, plan: &Plan) -> usize {
        let complete = match &self.source_rows {
            Some(rows) => rows
                .iter()
                .filter(|r| plan.complete.binary_search(r).is_ok())
                .count(),
            None => plan.complete.len(),
        };
        self.rows(plan) - complete
    }
}

/// The columns an analysis names under `[algorithm]` (a GLM's offset, exposure and weights),
/// with their keys.
fn aux_keys(s: &Scenario) -> Vec<(&'static str, &String)> {
    let a = &s.algorithm;
    [
        ("offset", &a.offset),
        ("exposure", &a.exposure),
        ("weights", &a.weights),
        ("time", &a.time),
        ("event", &a.event),
        ("group", &a.group),
        ("strata", &a.strata),
    ]
    .into_iter()
    .filter_map(|(k, c)| c.as_ref().map(|c| (k, c)))
    .collect()
}

/// The columns read as categories: `[data] categorical`, and a crosstab's `rows` and `cols`.
fn categorical_columns(s: &Scenario) -> Vec<String> {
    let mut c = s.data.categorical.clone();
    for t in table_keys(s) {
        if !c.contains(t.1) {
            c.push(t.1.clone());
        }
    }
    c
}

/// A crosstab's two columns, with their keys.
fn table_keys(s: &Scenario) -> Vec<(&'static str, &String)> {
    let a = &s.algorithm;
    if a.kind != AlgorithmKind::Crosstab {
        return Vec::new();
    }
    [("rows", &a.rows), ("cols", &a.cols)]
        .into_iter()
        .filter_map(|(k, c)| c.as_ref().map(|c| (k, c)))
        .collect()
}

/// "did you mean" for a column name, from the columns the data has.
fn nearest<'a>(name: &str, columns: &'a [String]) -> Option<&'a str> {
    columns
        .iter()
        .map(|c| (strsim::jaro_winkler(name, c), c.as_str()))
        .filter(|(score, _)| *score > 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Read the scenario's data: one file, a file per site (same columns, checked), or generated.
/// Returns the frames (one per file) and the file each came from.
fn read_sources(s: &Scenario) -> Result<Vec<(PathBuf, Frame)>, PlanError> {
    let options = ReadOptions {
        delimiter: s.data.delimiter_byte(),
        text: categorical_columns(s),
        decimal_comma: s.data.decimal_comma(),
    };
    if let Some(g) = &s.data.generate {
        let name = PathBuf::from(format!("generated-{}-{}x{}", g.kind, g.rows, g.cols));
        // Moved into the frame, not copied: the generated numbers are held once.
        return Ok(vec![(
            name,
            Frame::from(Table::generate(g, s.scenario.seed)?),
        )]);
    }
    let mut out: Vec<(PathBuf, Frame)> = Vec::new();
    for (i, path) in s.data.sources().into_iter().enumerate() {
        crate::sys::cancel::check().map_err(|_| DataError::Cancelled)?;
        if let Err(e) = std::fs::File::open(path) {
            // Most often a path written relative to the wrong folder: say which one it is.
            let key = match &s.data.files {
                Some(_) => format!("data.files.{i}"),
                None => "data.path".to_string(),
            };
            let folder = s.source.parent().filter(|d| !d.as_os_str().is_empty());
            let folder = folder.map_or("the current directory".to_string(), |d| {
                format!("{}/", d.display())
            });
            return Err(s
                .locate(
                    &key,
                    format!(
                        "cannot read data file {}: {e}; paths in a scenario are relative to the scenario's own folder ({folder})",
                        path.display()
                    ),
                )
                .into());
        }
        let frame = Frame::load(path, &options)?;
        if let Some((first_path, first)) = out.first() {
            let differ = |column: &str, what, side| PlanError::FilesDiffer {
                path: path.clone(),
                column: column.to_string(),
                what,
                side,
                first: first_path.clone(),
            };
            if let Some(c) = first.columns.iter().find(|c| !frame.columns.contains(c)) {
                return Err(differ(c, "has no", "that"));
            }
            if let Some(c) = frame.columns.iter().find(|c| !first.columns.contains(c)) {
                return Err(differ(c, "has a", "that is not in"));
            }
        }
        out.push((path.clone(), frame));
    }
    Ok(out)
}

impl Plan {
    /// The plan, in named steps, each a pass down: the columns, the cells of every file, the
    /// complete rows, the target's own checks, who gets which rows, the analysis, and the form
    /// the data travels in.
    pub fn make(s: &Scenario) -> Result<Plan, PlanError> {
        let sources = read_sources(s)?;
        let path = sources[0].0.clone();
        let columns = resolve_columns(s, &sources[0])?;
        let (frame, file_rows) = read_cells(s, &sources, &columns)?;
        let complete = complete_rows(s, &frame, &columns, &path)?;
        check_target(s, &sources, &file_rows, &frame, &complete, &columns, &path)?;
        let sites = split(s, &sources, &file_rows, &frame, &columns.features, &path)?;
        let (config, design) = analysis(s, columns, &frame, &complete, &path)?;
        let (format, data_name) = travel_form(s, &sources, &path);
        Ok(Plan {
            name: s.analysis_name(),
            config,
            frame,
            design,
            complete,
            data_path: path,
            data_name,
            sites,
            format,
        })
    }

    /// The analysis as the algorithms run it: on the design's columns.
    pub fn analysis(&self) -> AlgorithmConfig {
        self.config.with_levels(&self.design.categorical)
    }

    /// The pooled complete rows of the named sites only (the survivors of a dropout), shaped
    /// for the algorithm.
    pub fn pooled_of(&self, sites: &[String]) -> Result<LocalData, DataError> {
        self.shaped(&self.pooled_rows_of(sites))
    }

    /// The pooled complete rows of the named sites, in data order (all of them, for a vertical
    /// split or when every site is named).
    pub fn pooled_rows_of(&self, sites: &[String]) -> Vec<usize> {
        let all = self.sites.iter().all(|s| sites.contains(&s.name));
        if all || self.config.vertical {
            return self.complete.clone();
        }
        let mut rows: Vec<usize> = self
            .sites
            .iter()
            .filter(|s| sites.contains(&s.name))
            .flat_map(|s| s.source_rows.clone().unwrap_or_default())
            .filter(|r| self.complete.binary_search(r).is_ok())
            .collect();
        rows.sort_unstable();
        rows
    }

    /// Each site's complete rows for this analysis (all rows, for a vertical split), in site
    /// order: what each site computes on.
    pub fn site_rows(&self) -> Vec<Vec<usize>> {
        self.sites
            .iter()
            .map(|s| {
                s.source_rows
                    .clone()
                    .unwrap_or_else(|| (0..self.frame.rows()).collect())
                    .into_iter()
                    .filter(|r| self.complete.binary_search(r).is_ok())
                    .collect()
            })
            .collect()
    }

    /// The rows the named sites hold, as prep wrote them.
    pub fn rows_of(&self, sites: &[String]) -> usize {
        self.sites
            .iter()
            .filter(|s| sites.contains(&s.name))
            .map(|s| s.rows(self))
            .sum()
    }

    /// The named sites' rows as read (an external algorithm's pooled data), in data order.
    pub fn pooled_frame_of(&self, sites: &[String]) -> Frame {
        let mut rows: Vec<usize> = self
            .sites
            .iter()
            .filter(|s| sites.contains(&s.name))
            .flat_map(|s| s.source_rows.clone().unwrap_or_default())
            .collect();
        rows.sort_unstable();
        if self.config.vertical || rows.is_empty() {
            return self.frame.clone();
        }
        self.frame.select_rows(&rows)
    }

    /// The pooled data, shaped for the algorithm (what the centralised baseline sees).
    pub fn pooled(&self) -> Result<LocalData, DataError> {
        self.shaped(&self.complete)
    }

    /// These rows of the data, shaped for the algorithm (a site's, or the pooled ones).
    pub fn shaped(&self, rows: &[usize]) -> Result<LocalData, DataError> {
        LocalData::encoded(
            &self.design,
            &self.frame,
            rows,
            &self.analysis(),
            &self.data_path,
        )
    }
}

/// A program a command names can be found: on PATH, or as a file relative to `dir` (or one of
/// the shipped `files`, for a site's command).
fn program_found(program: &str, dir: &Path, shipped: &[String]) -> bool {
    if program.contains('/') {
        shipped.iter().any(|f| Path::new(f) == Path::new(program)) || dir.join(program).is_file()
    } else {
        crate::sys::proc::which(program).is_some()
    }
}

/// The columns an analysis uses, every one of them found in the data.
struct Columns {
    features: Vec<String>,
    categorical: Vec<String>,
    /// Features that are not categories, and the target.
    numeric: Vec<String>,
    /// Features and target.
    used: Vec<String>,
}

/// Every column the scenario names exists (else located in the scenario, with the nearest
/// name); the features default to every column but the target and the excluded ones.
fn resolve_columns(s: &Scenario, (path, first): &(PathBuf, Frame)) -> Result<Columns, PlanError> {
    let all = first.columns.clone();
    let aux: Vec<&String> = aux_keys(s).into_iter().map(|(_, c)| c).collect();
    let named = s
        .data
        .target
        .iter()
        .map(|t| ("data.target".to_string(), t))
        .chain(
            s.data
                .features
                .iter()
                .flatten()
                .enumerate()
                .map(|(i, f)| (format!("data.features.{i}"), f)),
        )
        .chain(
            s.data
                .exclude
                .iter()
                .enumerate()
                .map(|(i, f)| (format!("data.exclude.{i}"), f)),
        )
        .chain(
            s.data
                .categorical
                .iter()
                .enumerate()
                .map(|(i, f)| (format!("data.categorical.{i}"), f)),
        )
        .chain(
            s.partition
                .label
                .iter()
                .map(|l| ("partition.label".to_string(), l)),
        )
        .chain(
            aux_keys(s)
                .into_iter()
                .chain(table_keys(s))
                .map(|(key, c)| (format!("algorithm.{key}"), c)),
        );
    for (key, column) in named {
        if !all.contains(column) {
            let hint = nearest(column, &all)
                .map(|c| format!(" (did you mean {c:?}?)"))
                .unwrap_or_default();
            return Err(s
                .locate(
                    &key,
                    format!(
                        "data file {} has no column {column:?}{hint}; its columns are: {}",
                        path.display(),
                        all.join(", ")
                    ),
                )
                .into());
        }
    }
    let table: Vec<String> = table_keys(s).into_iter().map(|(_, c)| c.clone()).collect();
    if !table.is_empty() && s.data.features.is_some() {
        return Err(s
            .locate(
                "data.features",
                "a crosstab counts its `rows` and `cols` columns: remove `features`".into(),
            )
            .into());
    }
    let features: Vec<String> = match &s.data.features {
        // A survival curve has no covariates.
        _ if s.algorithm.kind == AlgorithmKind::KaplanMeier => Vec::new(),
        _ if !table.is_empty() => table.clone(),
        Some(f) => f.clone(),
        None => all
            .iter()
            .filter(|c| {
                Some(*c) != s.data.target.as_ref()
                    && !s.data.exclude.contains(c)
                    && !aux.contains(c)
            })
            .cloned()
            .collect(),
    };
    // A column the analysis reads for a role of its own (an offset, weights, a time) is not also
    // a feature or the target: it would be two columns of one name at the sites.
    for (key, column) in aux_keys(s) {
        let role = if features.contains(column) {
            "a feature"
        } else if s.data.target.as_ref() == Some(column) {
            "the target"
        } else {
            continue;
        };
        return Err(s
            .locate(
                &format!("algorithm.{key}"),
                format!(
                    "column {column:?} is both the {key} and {role}; a column plays one part (leave it out of [data] features, or name another)"
                ),
            )
            .into());
    }
    if s.algorithm.kind == AlgorithmKind::Describe {
        if let Some(i) = s.data.categorical.iter().position(|c| features.contains(c)) {
            return Err(s
                .locate(
                    &format!("data.categorical.{i}"),
                    format!(
                        "describe summarises numeric columns, and {:?} is categorical: leave it out of the features (or `exclude` it); kind = \"crosstab\" counts categories",
                        s.data.categorical[i]
                    ),
                )
                .into());
        }
    }
    if features.is_empty() && s.algorithm.kind != AlgorithmKind::KaplanMeier {
        return Err(PlanError::NoFeatures {
            path: path.clone(),
            available: all.join(", "),
        });
    }
    let categorical: Vec<String> = features
        .iter()
        .filter(|f| s.data.categorical.contains(f) || table.contains(f))
        .cloned()
        .collect();
    let numeric: Vec<String> = features
        .iter()
        .filter(|f| !categorical.contains(f))
        .chain(&s.data.target)
        .chain(aux.iter().copied())
        .cloned()
        .collect();
    let used: Vec<String> = features
        .iter()
        .chain(&s.data.target)
        .chain(aux.iter().copied())
        .cloned()
        .collect();
    Ok(Columns {
        features,
        categorical,
        numeric,
        used,
    })
}

/// The used columns of every file, each file checked on its own so an error names that file
/// and its line; then the files as one frame, and each file's row count.
fn read_cells(
    s: &Scenario,
    sources: &[(PathBuf, Frame)],
    c: &Columns,
) -> Result<(Frame, Vec<usize>), PlanError> {
    let mut frames = Vec::with_capacity(sources.len());
    let mut file_rows = Vec::with_capacity(sources.len());
    let external = s.algorithm.kind == AlgorithmKind::External;
    for (p, f) in sources {
        let f = f.select_columns(&c.used, p)?;
        // An external algorithm reads its sites' files itself: text and gaps are its own.
        let checked = if external {
            Ok(())
        } else {
            f.check(p, &c.numeric, &c.categorical, s.data.missing)
        };
        if let Err(e) = checked {
            let describe = s.algorithm.kind == AlgorithmKind::Describe;
            return Err(match e {
                // A column that is text throughout is a categorical one not declared (or, for
                // describe, a column it cannot summarise).
                DataError::NotNumeric {
                    path,
                    column,
                    line,
                    value,
                } if value.trim().parse::<f64>().is_err()
                    && !crate::data::frame::looks_like_decimal_comma(&value)
                    && is_text_column(&f, &column) =>
                {
                    if describe {
                        PlanError::DescribeText {
                            path,
                            column,
                            line,
                            value,
                        }
                    } else {
                        PlanError::TextColumn {
                            path,
                            column,
                            line,
                            value,
                        }
                    }
                }
                e => e.into(),
            });
        }
        file_rows.push(f.rows());
        frames.push(f);
    }
    Ok((Frame::concat(frames), file_rows))
}

/// The rows the analysis can use: every row for an external algorithm (its gaps are its own),
/// else those with every used cell present. None at all is an error.
fn complete_rows(
    s: &Scenario,
    frame: &Frame,
    c: &Columns,
    path: &Path,
) -> Result<Vec<usize>, PlanError> {
    let complete = if s.algorithm.kind == AlgorithmKind::External {
        (0..frame.rows()).collect()
    } else {
        frame.complete_rows(&c.used)
    };
    if complete.is_empty() {
        return Err(PlanError::NoCompleteRows {
            path: path.to_path_buf(),
        });
    }
    Ok(complete)
}

/// A logistic regression's target is 0/1 (the offending row named in its own file) and no
/// feature or category level separates it.
fn check_target(
    s: &Scenario,
    sources: &[(PathBuf, Frame)],
    file_rows: &[usize],
    frame: &Frame,
    complete: &[usize],
    c: &Columns,
    path: &Path,
) -> Result<(), PlanError> {
    let a = &s.algorithm;
    if a.kind == AlgorithmKind::Glm {
        check_glm_values(s, sources, file_rows, frame, complete)?;
    }
    if a.kind.is_survival() {
        check_survival_values(s, sources, file_rows, frame, complete)?;
    }
    let binomial = a.kind == AlgorithmKind::Glm && a.family == Some(Family::Binomial);
    if a.kind != AlgorithmKind::LogisticRegression && !binomial {
        return Ok(());
    }
    let target = s.data.target.as_deref().unwrap_or_default();
    let y = frame.numbers(target, complete).unwrap_or_default();
    if let Some(i) = y.iter().position(|v| *v != 0.0 && *v != 1.0) {
        let (file, row) = locate_row(sources, file_rows, complete[i]);
        return Err(PlanError::Target {
            path: file,
            column: target.into(),
            line: row + 2,
            value: y[i],
        });
    }
    if a.intercept.unwrap_or(true) {
        if let Some(how) = separation(frame, complete, &y, &c.numeric, &c.categorical, target) {
            return Err(PlanError::Separation {
                path: path.to_path_buf(),
                how,
            });
        }
    }
    Ok(())
}

/// A GLM's target lies in its family's range, an exposure is positive and weights are counts;
/// the first offending cell is named in its own file.
fn check_glm_values(
    s: &Scenario,
    sources: &[(PathBuf, Frame)],
    file_rows: &[usize],
    frame: &Frame,
    complete: &[usize],
) -> Result<(), PlanError> {
    let a = &s.algorithm;
    let family = a.family.unwrap_or(Family::Gaussian);
    let (fits, range): (fn(f64) -> bool, &str) = match family {
        Family::Gaussian => (|_| true, ""),
        Family::Binomial => (|v| v == 0.0 || v == 1.0, "a 0/1 target"),
        Family::Poisson | Family::NegativeBinomial => {
            (|v| v >= 0.0, "a target of counts, 0 or more")
        }
        Family::Gamma => (|v| v > 0.0, "a target above 0"),
    };
    let target_rule = format!("the {} family needs {range}", family.as_str());
    let rules: [Rule; 3] = [
        (s.data.target.as_ref(), fits, target_rule),
        (
            a.exposure.as_ref(),
            |v| v > 0.0,
            "an exposure must be above 0 (its log is the offset)".into(),
        ),
        (
            a.weights.as_ref(),
            |v| v >= 0.0,
            "frequency weights must be 0 or more".into(),
        ),
    ];
    first_misfit(&rules, sources, file_rows, frame, complete)
}

/// A column a rule names, the test its values must pass, and what it expects, said in words.
type Rule<'a> = (Option<&'a String>, fn(f64) -> bool, String);

/// The first value among the complete rows that a rule refuses, named in its own file.
fn first_misfit(
    rules: &[Rule],
    sources: &[(PathBuf, Frame)],
    file_rows: &[usize],
    frame: &Frame,
    complete: &[usize],
) -> Result<(), PlanError> {
    for (column, fits, expected) in rules {
        let Some(column) = column else { continue };
        let values = frame.numbers(column, complete).unwrap_or_default();
        if let Some(i) = values.iter().position(|v| !fits(*v)) {
            let (file, row) = locate_row(sources, file_rows, complete[i]);
            return Err(PlanError::Value {
                path: file,
                column: (*column).clone(),
                line: row + 2,
                value: values[i],
                expected: expected.clone(),
            });
        }
    }
    Ok(())
}

/// A survival analysis's times are 0 or more and its events 0 or 1 (and its group codes
/// numbers, checked with every numeric column); the first offending cell is named in its file.
fn check_survival_values(
    s: &Scenario,
    sources: &[(PathBuf, Frame)],
    file_rows: &[usize],
    frame: &Frame,
    complete: &[usize],
) -> Result<(), PlanError> {
    let a = &s.algorithm;
    let rules: [Rule; 2] = [
        (
            a.time.as_ref(),
            |v| v >= 0.0,
            "a follow-up time must be 0 or more".into(),
        ),
        (
            a.event.as_ref(),
            |v| v == 0.0 || v == 1.0,
            "an event indicator must be 1 (event) or 0 (censored)".into(),
        ),
    ];
    first_misfit(&rules, sources, file_rows, frame, complete)
}

/// Who gets which rows (or, vertically, which columns): a file per site as given, else the
/// partition's strategy, deterministic for the seed.
fn split(
    s: &Scenario,
    sources: &[(PathBuf, Frame)],
    file_rows: &[usize],
    frame: &Frame,
    features: &[String],
    path: &Path,
) -> Result<Vec<SitePlan>, PlanError> {
    let partition_error = |source| PlanError::Partition {
        source,
        path: path.to_path_buf(),
    };
    let names = s.site_names();
    let name = |i: usize| {
        names
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("site-{}", i + 1))
    };
    let rows_of = |(i, rows): (usize, Vec<usize>)| SitePlan {
        name: name(i),
        source_rows: Some(rows),
        columns: None,
    };
    if s.data.files.is_some() {
        // A file per site: the files are the partition.
        let mut start = 0;
        return Ok(file_rows
            .iter()
            .map(|n| {
                let rows: Vec<usize> = (start..start + n).collect();
                start += n;
                rows
            })
            .enumerate()
            .map(rows_of)
            .collect());
    }
    if s.partition.kind == PartitionKind::Vertical {
        return Ok(
            partition::vertical(features.len(), &s.partition, s.scenario.seed)
                .map_err(partition_error)?
                .into_iter()
                .enumerate()
                .map(|(i, cols)| SitePlan {
                    name: name(i),
                    source_rows: None,
                    columns: Some(cols.into_iter().map(|c| features[c].clone()).collect()),
                })
                .collect(),
        );
    }
    let labels = match s.partition.strategy {
        Strategy::Dirichlet => s
            .partition
            .label
            .as_ref()
            .or(s.data.target.as_ref())
            .and_then(|c| {
                sources
                    .iter()
                    .map(|(_, f)| f.label_values(c))
                    .collect::<Option<Vec<_>>>()
                    .map(|v| v.concat())
            }),
        _ => None,
    };
    Ok(partition::horizontal(
        frame.rows(),
        &s.partition,
        labels.as_deref(),
        s.scenario.seed,
    )
    .map_err(partition_error)?
    .into_iter()
    .enumerate()
    .map(rows_of)
    .collect())
}

/// The analysis every site runs, and the design its categories make; svd's components must
/// fit the data.
fn analysis(
    s: &Scenario,
    c: Columns,
    frame: &Frame,
    complete: &[usize],
    path: &Path,
) -> Result<(AlgorithmConfig, Design), PlanError> {
    let a = &s.algorithm;
    let svd = a.kind == AlgorithmKind::Svd;
    let no_model = matches!(a.kind, AlgorithmKind::Crosstab | AlgorithmKind::Describe);
    let config = AlgorithmConfig {
        params: params(s)?,
        features: c.features,
        target: s.data.target.clone(),
        intercept: a.intercept.unwrap_or(true) && !svd && !no_model && !a.kind.is_survival(),
        vertical: s.partition.kind == PartitionKind::Vertical,
        seed: s.scenario.seed,
        categorical: c.categorical,
        missing: s.data.missing,
        noisy: s.privacy.dp.is_some(),
    };
    let levels = design::levels_of(frame, &config.categorical, complete);
    if a.kind == AlgorithmKind::Crosstab {
        if let Some((column, l)) = levels.iter().find(|(_, l)| l.len() < 2) {
            return Err(PlanError::OneLevel {
                path: path.to_path_buf(),
                column: column.clone(),
                level: l.first().cloned().unwrap_or_default(),
            });
        }
    }
    let design = config.design(&levels);
    let width = design.columns().len();
    let k = a.k.unwrap_or(0);
    if svd && k > width.min(complete.len()) {
        return Err(PlanError::TooManyComponents {
            path: path.to_path_buf(),
            k,
            rows: complete.len(),
            cols: width,
        });
    }
    Ok((config, design))
}

/// How the rows travel, and the data's name. Generated and Parquet data travel as Parquet:
/// exact and compact. An external algorithm reads CSV, whatever the source.
fn travel_form(s: &Scenario, sources: &[(PathBuf, Frame)], path: &Path) -> (&'static str, String) {
    let format = match path.extension().and_then(|e| e.to_str()) {
        _ if s.algorithm.kind == AlgorithmKind::External => "csv",
        Some("csv") => "csv",
        _ => "parquet",
    };
    let data_name = sources
        .iter()
        .map(|(p, _)| {
            p.file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("+");
    (format, data_name)
}

/// The analysis's own options, defaults filled in: Newton's limits for a logistic regression,
/// svd's components and route, an external algorithm's checked commands.
fn params(s: &Scenario) -> Result<Params, PlanError> {
    let a = &s.algorithm;
    Ok(match a.kind {
        AlgorithmKind::LinearRegression => Params::LinearRegression,
        AlgorithmKind::LogisticRegression => Params::LogisticRegression(Newton {
            max_iter: a.max_iter.unwrap_or(100),
            tol: a.tol.unwrap_or(1e-10),
        }),
        AlgorithmKind::Glm => {
            let family = a.family.unwrap_or(Family::Gaussian);
            Params::Glm(GlmParams {
                family,
                link: a.link.unwrap_or(family.default_link()),
                offset: a.offset.clone(),
                exposure: a.exposure.clone(),
                weights: a.weights.clone(),
                max_iter: a.max_iter.unwrap_or(100),
                tol: a.tol.unwrap_or(1e-12),
            })
        }
        AlgorithmKind::Svd => Params::Svd(SvdParams {
            k: a.k.unwrap_or(0),
            center: a.center.unwrap_or(true),
            scale: a.scale.unwrap_or(false),
            method: a.method.unwrap_or_default(),
            oversample: a.oversample.unwrap_or(10),
            max_iter: a.max_iter.unwrap_or(1000),
            tol: a.tol.unwrap_or(1e-10),
        }),
        AlgorithmKind::External => Params::External(external_spec(s)?),
        AlgorithmKind::KaplanMeier => Params::KaplanMeier(KmParams {
            time: a.time.clone().unwrap_or_default(),
            event: a.event.clone().unwrap_or_default(),
            group: a.group.clone(),
            curves: Vec::new(),
        }),
        AlgorithmKind::Crosstab => Params::Crosstab(crate::algorithms::crosstab::CrosstabParams {
            rows: a.rows.clone().unwrap_or_default(),
            cols: a.cols.clone().unwrap_or_default(),
            row_levels: Vec::new(),
            col_levels: Vec::new(),
        }),
        AlgorithmKind::Describe => Params::Describe(crate::algorithms::describe::DescribeParams {
            quantiles: a.quantiles.clone().unwrap_or_else(|| vec![0.25, 0.5, 0.75]),
            quantile_tol: a.quantile_tol.unwrap_or(0.0),
            extremes: a.extremes.unwrap_or(false),
        }),
        AlgorithmKind::Cox => Params::Cox(CoxParams {
            time: a.time.clone().unwrap_or_default(),
            event: a.event.clone().unwrap_or_default(),
            strata: a.strata.clone(),
            ties: a.ties.unwrap_or_default(),
            max_iter: a.max_iter.unwrap_or(100),
            tol: a.tol.unwrap_or(1e-10),
            timelines: Vec::new(),
        }),
    })
}

/// An external algorithm's commands and files, checked against this machine: every shipped
/// file exists under `workdir`, and the aggregate and pooled programs (and, for local sites,
/// the local one) can be found. A problem is located at its key in the scenario.
fn external_spec(s: &Scenario) -> Result<ExternalSpec, PlanError> {
    let a = &s.algorithm;
    let workdir = a.workdir.clone().unwrap_or_else(|| PathBuf::from("."));
    let mut files = Vec::new();
    for (i, f) in a.files.iter().enumerate() {
        if !workdir.join(f).is_file() {
            return Err(s
                .locate(
                    &format!("algorithm.files.{i}"),
                    format!(
                        "no such file: {} (files are relative to {})",
                        workdir.join(f).display(),
                        workdir.display()
                    ),
                )
                .into());
        }
        files.push(f.to_string_lossy().into_owned());
    }
    let command = |c: &Option<Vec<String>>| c.clone().unwrap_or_default();
    let mut spec = ExternalSpec {
        local: command(&a.local),
        aggregate: command(&a.aggregate),
        pooled: command(&a.pooled),
        files,
        workdir: workdir.clone(),
        max_rounds: a.max_rounds.unwrap_or(100),
        max_reply_bytes: a.max_reply_bytes.unwrap_or(16 << 20),
        timeout_secs: s.federation.round_timeout_secs,
        persistent: a.persistent.unwrap_or(false),
    };
    if let Some(p) = &s.platform {
        let project = p.app.join("pyproject.toml");
        let text = std::fs::read_to_string(&project).unwrap_or_default();
        if !text.contains("[tool.flwr.app]") {
            return Err(s
                .locate(
                    "platform.app",
                    format!(
                        "expected a Flower App's folder: {} {}",
                        project.display(),
                        if project.is_file() {
                            "has no [tool.flwr.app] table"
                        } else {
                            "does not exist"
                        }
                    ),
                )
                .into());
        }
        let bin = p
            .flwr_bin()
            .map_err(|e| PlanError::from(s.locate("platform.flwr", e)))?;
        // The App's pooled counterpart runs with the App's Python (flwr's environment, where
        // the App's packages are) when it names one by its bare name.
        if let Some(program) = spec.pooled.first_mut() {
            if !program.contains('/') && bin.join(&*program).is_file() {
                *program = bin.join(&*program).display().to_string();
            }
        }
    }
    let mut checks = vec![
        ("aggregate", &spec.aggregate, Vec::new()),
        ("pooled", &spec.pooled, Vec::new()),
    ];
    if s.platform.is_some() {
        // A platform's App does the local and aggregate steps; only its pooled command runs here.
        checks.retain(|(key, _, _)| *key == "pooled");
    } else if s.fleet.provider == crate::scenario::Provider::Local {
        checks.push(("local", &spec.local, spec.files.clone()));
    }
    let section = if s.platform.is_some() {
        "platform"
    } else {
        "algorithm"
    };
    for (key, cmd, shipped) in checks {
        let program = &cmd[0];
        if !program_found(program, &workdir, &shipped) {
            return Err(s
                .locate(
                    &format!("{section}.{key}"),
                    format!(
                        "program {program:?} not found ({})",
                        if program.contains('/') {
                            format!("no such file under {}", workdir.display())
                        } else {
                            "not on PATH".to_string()
                        }
                    ),
                )
                .into());
        }
    }
    Ok(spec)
}

/// A pooled row's file and its row in that file.
fn locate_row(sources: &[(PathBuf, Frame)], file_rows: &[usize], row: usize) -> (PathBuf, usize) {
    let mut start = 0;
    for ((p, _), n) in sources.iter().zip(file_rows) {
        if row < start + n {
            return (p.clone(), row - start);
        }
        start += n;
    }
    (sources[0].0.clone(), row)
}

/// Whether no cell of the column reads as a number: text, not a typo in a numeric column.
/// One column that (quasi-)separates a 0/1 target, in words: a numeric feature whose values for
/// y = 0 and y = 1 do not overlap, or a category level whose rows all have one outcome. The
/// maximum-likelihood estimate of its coefficient is then infinite (statsmodels stops with
/// PerfectSeparation), so the run is refused before anything starts. Separation by a combination
/// of columns is found by the Newton iterations instead.
fn separation(
    frame: &Frame,
    rows: &[usize],
    y: &[f64],
    numeric: &[String],
    categorical: &[String],
    target: &str,
) -> Option<String> {
    for name in numeric.iter().filter(|c| c.as_str() != target) {
        let x = frame.numbers(name, rows)?;
        let (mut lo, mut hi) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
        for (v, t) in x.iter().zip(y) {
            let k = usize::from(*t == 1.0);
            lo[k] = lo[k].min(*v);
            hi[k] = hi[k].max(*v);
        }
        if lo[0] == hi[0] && lo[1] == hi[1] && lo[0] == lo[1] {
            continue; // constant: reported as such elsewhere
        }
        if hi[0] <= lo[1] {
            return Some(format!(
                "feature {name:?} separates the target: every row with {name} <= {} has {target} = 0 or ties, every row with {name} >= {} has {target} = 1",
                hi[0], lo[1]
            ));
        }
        if hi[1] <= lo[0] {
            return Some(format!(
                "feature {name:?} separates the target: every row with {name} <= {} has {target} = 1 or ties, every row with {name} >= {} has {target} = 0",
                hi[1], lo[0]
            ));
        }
    }
    for name in categorical {
        let cells = frame.column(name)?;
        let mut outcomes: std::collections::BTreeMap<String, [usize; 2]> = Default::default();
        for (&r, t) in rows.iter().zip(y) {
            if let Some(level) = cells.label(r) {
                outcomes.entry(level).or_default()[usize::from(*t == 1.0)] += 1;
            }
        }
        if outcomes.len() < 2 {
            continue;
        }
        if let Some((level, n)) = outcomes.iter().find(|(_, n)| n[0] == 0 || n[1] == 0) {
            let (count, value) = if n[0] == 0 { (n[1], 1) } else { (n[0], 0) };
            return Some(format!(
                "level {level:?} of {name:?} separates the target: all {count} of its rows have {target} = {value}"
            ));
        }
    }
    None
}

fn is_text_column(f: &Frame, column: &str) -> bool {
    match f.column(column) {
        Some(Cells::Text(v)) => v.iter().flatten().all(|t| t.trim().parse::<f64>().is_err()),
        _ => false,
    }
}
