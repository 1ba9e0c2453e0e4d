//! The run directory: where it goes, what `plan.json` holds, and writes a reader never sees half
//! done. `--out` must be absent or empty: a run never mixes its files with another's.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::algorithms::AlgorithmConfig;
use crate::prep::{Bundle, Plan};
use crate::scenario::{PartitionSpec, Scenario};

#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    #[error("--out {}: {reason}", path.display())]
    Unusable { path: PathBuf, reason: String },
    #[error("run directory {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `--out` is usable: absent, or an empty directory. Checked before anything starts.
pub fn check_out(out: Option<&Path>) -> Result<(), RunDirError> {
    let Some(d) = out else { return Ok(()) };
    let unusable = |reason: &str| RunDirError::Unusable {
        path: d.to_path_buf(),
        reason: reason.into(),
    };
    match std::fs::read_dir(d).map(|mut entries| entries.next().is_none()) {
        Ok(true) => Ok(()),
        Ok(false) => Err(unusable(
            "exists and is not empty; give a new or empty directory (a run never mixes its files with another's)",
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            Err(unusable("exists and is not a directory"))
        }
        Err(e) => Err(unusable(&e.to_string())),
    }
}

/// Make the run directory: `out`, or `runs/<name>-<UTC time>` (made unique if two runs start
/// within the same second). Holds `logs/` from the start.
pub fn create(out: Option<&Path>, name: &str) -> Result<PathBuf, RunDirError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RunDirError::Io { path, source }
    };
    let dir = match out {
        Some(d) => {
            check_out(Some(d))?;
            std::fs::create_dir_all(d).map_err(io(d))?;
            d.to_path_buf()
        }
        None => {
            let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
            let root = PathBuf::from("runs");
            std::fs::create_dir_all(&root).map_err(io(&root))?;
            let mut i = 1;
            loop {
                let dir = root.join(if i == 1 {
                    format!("{name}-{stamp}")
                } else {
                    format!("{name}-{stamp}-{i}")
                });
                match std::fs::create_dir(&dir) {
                    Ok(()) => break dir,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => i += 1,
                    Err(source) => return Err(RunDirError::Io { path: dir, source }),
                }
            }
        }
    };
    std::fs::create_dir_all(dir.join("logs")).map_err(io(&dir))?;
    Ok(dir)
}

/// Write JSON via a temporary file and a rename, so a reader never sees half a file.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    crate::fsio::write_json_atomic(path, value)
}

/// `plan.json`: the resolved analysis and who got which rows. No secrets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanFile {
    pub scenario: String,
    pub seed: u64,
    pub data: PathBuf,
    pub algorithm: AlgorithmConfig,
    pub partition: PartitionSpec,
    pub sites: Vec<PlannedSite>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedSite {
    pub name: String,
    pub rows: usize,
    pub data_sha256: String,
    /// Horizontal split: the 0-based rows of the data file this site holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_rows: Option<Vec<usize>>,
    /// Vertical split: the feature columns this site holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
}

impl PlanFile {
    pub fn new(scenario: &Scenario, plan: &Plan, bundles: &[Bundle]) -> PlanFile {
        PlanFile {
            scenario: scenario.scenario.name.clone(),
            seed: scenario.scenario.seed,
            data: plan.data_path.clone(),
            algorithm: plan.config.clone(),
            partition: scenario.partition.clone(),
            sites: plan
                .sites
                .iter()
                .zip(bundles)
                .map(|(p, b)| PlannedSite {
                    name: p.name.clone(),
                    rows: b.rows,
                    data_sha256: b.data_sha256.clone(),
                    source_rows: p.source_rows.clone(),
                    columns: p.columns.clone().filter(|_| p.source_rows.is_none()),
                })
                .collect(),
        }
    }

    pub fn load(dir: &Path) -> Result<PlanFile, crate::report::ReportError> {
        crate::report::read_json(&dir.join("plan.json"))
    }
}

/// `scenario.toml` (as resolved) and `plan.json`.
pub fn write_plan(dir: &Path, scenario: &Scenario, file: &PlanFile) -> Result<(), RunDirError> {
    let io = |source| RunDirError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let resolved = toml::to_string_pretty(&scenario.with_absolute_paths())
        .map_err(|e| io(std::io::Error::other(e)))?;
    crate::fsio::write_atomic(&dir.join("scenario.toml"), resolved.as_bytes()).map_err(io)?;
    write_json_atomic(&dir.join("plan.json"), file).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_must_be_absent_or_empty_and_is_left_untouched_otherwise() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(check_out(Some(&tmp.path().join("new"))).is_ok());
        assert!(check_out(Some(tmp.path())).is_ok());
        std::fs::write(tmp.path().join("keep.txt"), "mine").unwrap();
        let e = create(Some(tmp.path()), "x").unwrap_err();
        assert!(e.to_string().contains("not empty"), "{e}");
        let names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "nothing added");
        let file = tmp.path().join("keep.txt");
        assert!(check_out(Some(&file))
            .unwrap_err()
            .to_string()
            .contains("not a directory"));
    }
}
