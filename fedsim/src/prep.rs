//! Plan and prep: resolve which columns and rows each site gets, then write each site's bundle
//! (its rows and its own `.env`) into the run directory.
//!
//! Planning touches no file, so a bad scenario or data set leaves nothing behind.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::algorithms::{AlgorithmConfig, LocalData};
use crate::auth::{self, FrameKey};
use crate::data::{DataError, Table};
use crate::partition::{self, PartitionError};
use crate::portal::{Account, Role};
use crate::scenario::{AlgorithmKind, PartitionKind, Scenario, Strategy};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Data(#[from] DataError),
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
    #[error("data file {}: k = {k} components, but the data has only {rows} rows and {cols} feature columns", path.display())]
    TooManyComponents {
        path: PathBuf,
        k: usize,
        rows: usize,
        cols: usize,
    },
    #[error("data file {}: no feature columns left (columns: {available})", path.display())]
    NoFeatures { path: PathBuf, available: String },
}

/// Who gets which rows; the analysis every site runs.
#[derive(Debug, Clone)]
pub struct Plan {
    pub config: AlgorithmConfig,
    /// The used columns (features, then target) of the whole data set.
    pub table: Table,
    pub data_path: PathBuf,
    pub sites: Vec<SitePlan>,
    /// File format of the site bundles' data: "csv" or "parquet".
    pub format: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct SitePlan {
    pub name: String,
    /// 0-based indices of the data file's rows that this site holds (horizontal split).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_rows: Option<Vec<usize>>,
    /// The feature columns this site holds (vertical split; every site has all rows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
}

impl SitePlan {
    /// This site's share of the used table.
    pub fn table(&self, plan: &Plan) -> Result<Table, DataError> {
        match (&self.source_rows, &self.columns) {
            (Some(rows), _) => Ok(plan.table.select_rows(rows)),
            (None, Some(cols)) => plan.table.select_columns(cols, &plan.data_path),
            (None, None) => Ok(plan.table.clone()),
        }
    }

    /// What this site's agent must compute on (its own columns, for a vertical split).
    pub fn config(&self, plan: &Plan) -> AlgorithmConfig {
        let mut c = plan.config.clone();
        if let Some(cols) = &self.columns {
            c.features = cols.clone();
        }
        c
    }

    pub fn rows(&self, plan: &Plan) -> usize {
        self.source_rows
            .as_ref()
            .map_or(plan.table.rows(), Vec::len)
    }
}

impl Plan {
    pub fn make(s: &Scenario) -> Result<Plan, PlanError> {
        let (path, full) = match (&s.data.path, &s.data.generate) {
            (Some(p), _) => (p.clone(), Table::load(p)?),
            (None, Some(g)) => (
                PathBuf::from(format!("generated-{}-{}x{}", g.kind, g.rows, g.cols)),
                Table::generate(g, s.scenario.seed)?,
            ),
            (None, None) => unreachable!("validated: path or generate"),
        };
        let no_column = |c: &str| DataError::NoColumn {
            path: path.clone(),
            column: c.to_string(),
            available: full.columns.join(", "),
        };
        for c in s
            .data
            .target
            .iter()
            .chain(&s.data.exclude)
            .chain(&s.partition.label)
        {
            full.column(c).ok_or_else(|| no_column(c))?;
        }
        let features: Vec<String> = match &s.data.features {
            Some(f) => f.clone(),
            None => full
                .columns
                .iter()
                .filter(|c| Some(*c) != s.data.target.as_ref() && !s.data.exclude.contains(c))
                .cloned()
                .collect(),
        };
        if features.is_empty() {
            return Err(PlanError::NoFeatures {
                path,
                available: full.columns.join(", "),
            });
        }
        let used: Vec<String> = features.iter().chain(&s.data.target).cloned().collect();
        let table = full.select_columns(&used, &path)?;
        let a = &s.algorithm;
        if a.kind == AlgorithmKind::LogisticRegression {
            let target = s.data.target.as_deref().unwrap_or_default();
            let y = table.column(target).unwrap_or_default();
            if let Some(i) = y.iter().position(|v| *v != 0.0 && *v != 1.0) {
                return Err(PlanError::Target {
                    path,
                    column: target.into(),
                    line: i + 2,
                    value: y[i],
                });
            }
        }
        let partition_error = |source| PlanError::Partition {
            source,
            path: path.clone(),
        };
        let name = |i: usize| {
            s.sites
                .get(i)
                .map_or_else(|| format!("site-{}", i + 1), |x| x.name.clone())
        };
        let vertical = s.partition.kind == PartitionKind::Vertical;
        let sites: Vec<SitePlan> = if vertical {
            partition::vertical(features.len(), &s.partition, s.scenario.seed)
                .map_err(partition_error)?
                .into_iter()
                .enumerate()
                .map(|(i, cols)| SitePlan {
                    name: name(i),
                    source_rows: None,
                    columns: Some(cols.into_iter().map(|c| features[c].clone()).collect()),
                })
                .collect()
        } else {
            let labels = match s.partition.strategy {
                Strategy::Dirichlet => s
                    .partition
                    .label
                    .as_ref()
                    .or(s.data.target.as_ref())
                    .and_then(|c| full.column(c)),
                _ => None,
            };
            partition::horizontal(table.rows(), &s.partition, labels, s.scenario.seed)
                .map_err(partition_error)?
                .into_iter()
                .enumerate()
                .map(|(i, rows)| SitePlan {
                    name: name(i),
                    source_rows: Some(rows),
                    columns: None,
                })
                .collect()
        };
        let svd = a.kind == AlgorithmKind::Svd;
        let k = a.k.unwrap_or(0);
        if svd && k > features.len().min(table.rows()) {
            return Err(PlanError::TooManyComponents {
                path,
                k,
                rows: table.rows(),
                cols: features.len(),
            });
        }
        let config = AlgorithmConfig {
            kind: a.kind,
            features,
            target: s.data.target.clone(),
            intercept: a.intercept.unwrap_or(true) && !svd,
            max_iter: a.max_iter.unwrap_or(if svd { 1000 } else { 100 }),
            tol: a.tol.unwrap_or(1e-10),
            k,
            center: a.center.unwrap_or(true),
            scale: a.scale.unwrap_or(false),
            method: a.method.unwrap_or_default(),
            oversample: a.oversample.unwrap_or(10),
            vertical,
            seed: s.scenario.seed,
        };
        // Generated and Parquet data travel as Parquet: exact and compact.
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some("csv") => "csv",
            _ => "parquet",
        };
        Ok(Plan {
            config,
            table,
            data_path: path,
            sites,
            format,
        })
    }

    /// The pooled rows of the named sites only (the survivors of a dropout), shaped for the algorithm.
    pub fn pooled_of(&self, sites: &[String]) -> Result<LocalData, DataError> {
        let all = self.sites.iter().all(|s| sites.contains(&s.name));
        if all || self.config.vertical {
            return self.pooled();
        }
        let mut rows: Vec<usize> = self
            .sites
            .iter()
            .filter(|s| sites.contains(&s.name))
            .flat_map(|s| s.source_rows.clone().unwrap_or_default())
            .collect();
        rows.sort_unstable();
        LocalData::from_table(
            &self.table.select_rows(&rows),
            &self.config,
            &self.data_path,
        )
    }

    /// The pooled data, shaped for the algorithm (what the centralised baseline sees).
    pub fn pooled(&self) -> Result<LocalData, DataError> {
        LocalData::from_table(&self.table, &self.config, &self.data_path)
    }
}

/// A site's bundle as the controller holds it until the fleet installs it on the site. Then
/// `files` is dropped, and the controller keeps only the key derived from the token.
pub struct Bundle {
    pub name: String,
    pub rows: usize,
    pub data_sha256: String,
    pub key: FrameKey,
    /// The analysis as this site runs it (its own columns, for a vertical split).
    pub config: AlgorithmConfig,
    /// The site's portal account (name and password verifier).
    pub portal: Account,
    pub files: Option<BundleFiles>,
}

/// What goes onto the site: its data and its `.env`.
pub struct BundleFiles {
    pub data_name: String,
    pub data: Vec<u8>,
    pub env: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PrepError {
    #[error("cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("site {site}: credentials file {}: {reason}", path.display())]
    Credentials {
        site: String,
        path: PathBuf,
        reason: String,
    },
}

fn io_at(path: &Path) -> impl Fn(std::io::Error) -> PrepError + '_ {
    move |source| PrepError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a remote site's `.env` says of the coordinator: it is given to the agent when it starts
/// (an address, or a tunnel's port on the site), so a bundle stays valid from one run to the next.
pub const COORDINATOR_AT_START: &str = "given-at-start";

/// Credentials a site brings in a `.env` it was given (provider ssh, `env = ...`).
#[derive(Clone, Default)]
pub struct GivenCredentials {
    pub token: String,
    /// Its portal password, if the file has one (else a fresh one is made).
    pub portal_password: Option<String>,
    /// fedsim made these (an earlier `fedsim prep`): the password is random, not chosen.
    pub generated: bool,
}

/// A site's own token (and portal password, if any) from a `.env` it was given. Values are never
/// echoed in an error.
pub fn token_from_env_file(site: &str, path: &Path) -> Result<GivenCredentials, PrepError> {
    let text = std::fs::read_to_string(path).map_err(|e| PrepError::Credentials {
        site: site.into(),
        path: path.into(),
        reason: e.to_string(),
    })?;
    credentials_from_env_text(site, path, &text)
}

/// The same, from a `.env`'s text (`path` names it in errors: a file, or a site's copy).
pub fn credentials_from_env_text(
    site: &str,
    path: &Path,
    text: &str,
) -> Result<GivenCredentials, PrepError> {
    let fail = |reason: String| PrepError::Credentials {
        site: site.into(),
        path: path.into(),
        reason,
    };
    let iter = dotenvy::from_read_iter(text.as_bytes());
    let mut given = GivenCredentials::default();
    for item in iter {
        let (k, v) = item.map_err(|_| fail("malformed line".into()))?;
        match k.as_str() {
            "FEDSIM_TOKEN" if v.len() < 32 => {
                return Err(fail("FEDSIM_TOKEN is shorter than 32 characters".into()))
            }
            "FEDSIM_TOKEN" => given.token = v,
            crate::participants::PASSWORD_VAR if v.len() < 12 => {
                return Err(fail(format!(
                    "{} is shorter than 12 characters",
                    crate::participants::PASSWORD_VAR
                )))
            }
            crate::participants::PASSWORD_VAR => given.portal_password = Some(v),
            _ => {}
        }
    }
    if given.token.is_empty() {
        return Err(fail("no FEDSIM_TOKEN".into()));
    }
    Ok(given)
}

/// Make every site's bundle in memory: its share of the data, and a `.env` with its token and
/// portal password (`given[i]`, or fresh random ones) and, with `secure`, its pairwise mask seeds.
/// The bundle keeps the portal password's verifier, not the password.
pub fn make_bundles(
    plan: &Plan,
    coordinator: &str,
    given: &[Option<GivenCredentials>],
    secure: bool,
) -> Result<Vec<Bundle>, PrepError> {
    let names: Vec<String> = plan.sites.iter().map(|s| s.name.clone()).collect();
    // Secure aggregation: each pair's seed goes into the two sites' own .env files, nowhere else.
    let seeds = secure.then(|| crate::federation::secagg::pair_seeds(&names));
    plan.sites
        .iter()
        .enumerate()
        .map(|(i, site)| {
            crate::cancel::check().map_err(|_| DataError::Cancelled)?;
            let data_name = format!("data.{}", plan.format);
            let data = site.table(plan)?.to_bytes(plan.format, &plan.data_path)?;
            let given = given.get(i).cloned().flatten();
            let token = given
                .as_ref()
                .map(|g| g.token.clone())
                .unwrap_or_else(auth::new_token);
            // A password someone chose gets argon2; one fedsim made is random enough for SHA-256.
            let generated = given.as_ref().is_some_and(|g| g.generated);
            let (password, portal) = match given.and_then(|g| g.portal_password) {
                Some(p) if generated => {
                    let account = Account::generated(&site.name, Role::Participant, &p);
                    (p, account)
                }
                Some(p) => {
                    let account = Account::new(&site.name, Role::Participant, &p);
                    (p, account)
                }
                None => {
                    let p = auth::new_password();
                    let account = Account::generated(&site.name, Role::Participant, &p);
                    (p, account)
                }
            };
            let mut env = format!(
                "# fedsim site credentials: this site's only. Do not share.\nFEDSIM_SITE={}\nFEDSIM_TOKEN={}\nFEDSIM_COORDINATOR={}\nFEDSIM_DATA={}\n{}={}\n{}={}\n",
                site.name, token, coordinator, data_name,
                crate::participants::USER_VAR, site.name,
                crate::participants::PASSWORD_VAR, password,
            );
            if let Some(seeds) = &seeds {
                env.push_str(&format!("FEDSIM_PAIR_SEEDS={}\n", crate::federation::secagg::encode_seeds(&seeds[i])));
            }
            Ok(Bundle {
                name: site.name.clone(),
                rows: site.rows(plan),
                config: site.config(plan),
                data_sha256: hex::encode(Sha256::digest(&data)),
                key: auth::frame_key(&token),
                portal,
                files: Some(BundleFiles { data_name, data, env }),
            })
        })
        .collect()
}

/// Write a bundle's files into `dir` (created, mode 700): the data, and `.env` created with mode 600.
pub fn write_files(files: &BundleFiles, dir: &Path) -> Result<(), PrepError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_at(dir))?;
    let data_path = dir.join(&files.data_name);
    fs::write(&data_path, &files.data).map_err(io_at(&data_path))?;
    let env_path = dir.join(".env");
    write_private(&env_path, &files.env).map_err(io_at(&env_path))
}

/// Create `path` (it must not exist) with mode 600 from the start, and write `text`: the way
/// every credentials file is written, so none is ever readable by others, even briefly.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}
