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
use crate::scenario::{Scenario, Strategy};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("data file {}: {source}", path.display())]
    Partition {
        source: PartitionError,
        path: PathBuf,
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
}

#[derive(Debug, Clone, Serialize)]
pub struct SitePlan {
    pub name: String,
    /// 0-based indices of the data file's rows that this site holds.
    pub source_rows: Vec<usize>,
}

impl Plan {
    pub fn make(s: &Scenario) -> Result<Plan, PlanError> {
        let path = s.data.path.clone();
        let full = Table::load(&path)?;
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
        let labels = match s.partition.strategy {
            Strategy::Dirichlet => s
                .partition
                .label
                .as_ref()
                .or(s.data.target.as_ref())
                .and_then(|c| full.column(c)),
            _ => None,
        };
        let parts = partition::horizontal(table.rows(), &s.partition, labels, s.scenario.seed)
            .map_err(|source| PlanError::Partition {
                source,
                path: path.clone(),
            })?;
        let sites = parts
            .into_iter()
            .enumerate()
            .map(|(i, source_rows)| SitePlan {
                name: format!("site-{}", i + 1),
                source_rows,
            })
            .collect();
        let config = AlgorithmConfig {
            kind: s.algorithm.kind,
            features,
            target: s.data.target.clone(),
            intercept: s.algorithm.intercept,
        };
        Ok(Plan {
            config,
            table,
            data_path: path,
            sites,
        })
    }

    /// The pooled data, shaped for the algorithm (what the centralised baseline sees).
    pub fn pooled(&self) -> Result<LocalData, DataError> {
        LocalData::from_table(&self.table, &self.config, &self.data_path)
    }
}

/// A written site bundle, as the controller knows it: never the token, only the derived key.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub name: String,
    pub dir: PathBuf,
    pub rows: usize,
    pub data_sha256: String,
    pub key: FrameKey,
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
}

fn io_at(path: &Path) -> impl Fn(std::io::Error) -> PrepError + '_ {
    move |source| PrepError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Write every site's bundle under `sites_dir/<site>/`: `data.csv` and `.env` (mode 600).
pub fn write_bundles(
    plan: &Plan,
    sites_dir: &Path,
    coordinator: &str,
) -> Result<Vec<Bundle>, PrepError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(sites_dir)
        .map_err(io_at(sites_dir))?;
    plan.sites
        .iter()
        .map(|site| {
            let dir = sites_dir.join(&site.name);
            fs::DirBuilder::new().mode(0o700).create(&dir).map_err(io_at(&dir))?;
            let data_path = dir.join("data.csv");
            plan.table.select_rows(&site.source_rows).write_csv(&data_path)?;
            let bytes = fs::read(&data_path).map_err(io_at(&data_path))?;
            let token = auth::new_token();
            let env_path = dir.join(".env");
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&env_path)
                .map_err(io_at(&env_path))?;
            write!(
                f,
                "# fedsim site credentials: this site's only. Do not share.\nFEDSIM_SITE={}\nFEDSIM_TOKEN={}\nFEDSIM_COORDINATOR={}\nFEDSIM_DATA=data.csv\n",
                site.name, token, coordinator
            )
            .map_err(io_at(&env_path))?;
            Ok(Bundle {
                name: site.name.clone(),
                dir,
                rows: site.source_rows.len(),
                data_sha256: hex::encode(Sha256::digest(&bytes)),
                key: auth::frame_key(&token),
            })
        })
        .collect()
}
