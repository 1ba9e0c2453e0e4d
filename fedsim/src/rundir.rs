//! The run directory, one owner for every file in it. A run's files are named here and nowhere
//! else; the pipeline writes and the report, `fedsim logs` and the tests read them through
//! [`RunDir`], typed. `--out` must be absent or empty: a run never mixes its files with another's.
//!
//! ```text
//! RUN_DIR/
//!   scenario.toml        the scenario as resolved (paths absolute)
//!   plan.json            the analysis and who got which rows (PlanFile; no secrets)
//!   summary.json         the verdict and every number (Summary)
//!   metrics.json         phases, bytes, rounds, memory (Metrics)
//!   releases.jsonl       the release audit: every message a site sent with its data in it
//!   probe.json           the differencing probe's findings ([privacy] probe = true)
//!   report.html          the page people read
//!   junit.xml            when asked for (--junit)
//!   pooled.csv           the pooled rows an external algorithm's baseline read
//!   components.csv       svd: the federated right singular vectors
//!   sample_vectors.csv   svd: the left singular vectors (when kept)
//!   controller.env       the coordinator's own credentials (portal runs; mode 0600)
//!   logs/controller.jsonl, logs/<site>.jsonl, logs/<site>.console.jsonl, logs/merged.jsonl,
//!   logs/chromedriver.log, logs/vagrant.log
//!   sites/<site>/        local sites' folders (their bundle, data and agent log)
//!   portal/<account>/    what each portal account downloaded
//!   vms/                 provider vm: overlay disks, consoles, keys
//! ```

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::algorithms::{AlgorithmConfig, Estimates};
use crate::bundle::Bundle;
use crate::data::DataError;
use crate::fleet::RunPaths;
use crate::logs::LogLine;
use crate::metrics::Metrics;
use crate::plan::{Plan, Study};
use crate::scenario::{PartitionSpec, Scenario};
use crate::summary::Summary;
use crate::sys::fsio;

#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    #[error("--out {}: {reason}", path.display())]
    Unusable { path: PathBuf, reason: String },
    #[error("run directory {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A run file that is missing or not what fedsim writes.
    #[error("{}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
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

/// A run's directory. Every file has a method; JSON files are read and written typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir(PathBuf);

impl RunDir {
    /// Make the run directory: `out`, or `runs/<name>-<UTC time>` (made unique if two runs start
    /// within the same second). Holds `logs/` from the start.
    pub fn create(out: Option<&Path>, name: &str) -> Result<RunDir, RunDirError> {
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
        Ok(RunDir(dir))
    }

    /// An existing run's directory (nothing is checked until a file is read).
    pub fn open(path: &Path) -> RunDir {
        RunDir(path.to_path_buf())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn scenario_toml(&self) -> PathBuf {
        self.0.join("scenario.toml")
    }
    pub fn plan_json(&self) -> PathBuf {
        self.0.join("plan.json")
    }
    pub fn summary_json(&self) -> PathBuf {
        self.0.join("summary.json")
    }
    pub fn metrics_json(&self) -> PathBuf {
        self.0.join("metrics.json")
    }
    /// The study on the simulated clock, round by round.
    pub fn projection_json(&self) -> PathBuf {
        self.0.join("projection.json")
    }
    pub fn report_html(&self) -> PathBuf {
        self.0.join("report.html")
    }
    pub fn probe_json(&self) -> PathBuf {
        self.0.join("probe.json")
    }
    pub fn releases_jsonl(&self) -> PathBuf {
        self.0.join("releases.jsonl")
    }
    pub fn pooled_csv(&self) -> PathBuf {
        self.0.join("pooled.csv")
    }
    pub fn components_csv(&self) -> PathBuf {
        self.0.join("components.csv")
    }
    pub fn sample_vectors_csv(&self) -> PathBuf {
        self.0.join("sample_vectors.csv")
    }
    pub fn controller_env(&self) -> PathBuf {
        self.0.join("controller.env")
    }
    pub fn logs(&self) -> PathBuf {
        self.0.join("logs")
    }
    pub fn controller_log(&self) -> PathBuf {
        self.logs().join("controller.jsonl")
    }
    pub fn merged_log(&self) -> PathBuf {
        self.logs().join("merged.jsonl")
    }
    /// A site's log as pulled from where it ran.
    pub fn site_log(&self, site: &str) -> PathBuf {
        self.logs().join(format!("{site}.jsonl"))
    }
    /// A VM site's serial console, as JSON lines.
    pub fn console_log(&self, site: &str) -> PathBuf {
        self.logs().join(format!("{site}.console.jsonl"))
    }
    pub fn chromedriver_log(&self) -> PathBuf {
        self.logs().join("chromedriver.log")
    }
    /// Where local sites get their folders.
    pub fn sites(&self) -> PathBuf {
        self.0.join("sites")
    }
    pub fn site(&self, site: &str) -> PathBuf {
        self.sites().join(site)
    }
    /// What the portal's accounts downloaded, a folder per account.
    pub fn portal(&self) -> PathBuf {
        self.0.join("portal")
    }
    /// Provider vm's per-run material.
    pub fn vms(&self) -> PathBuf {
        self.0.join("vms")
    }
    /// The host keys this run pinned (remote sites).
    pub fn known_hosts(&self) -> PathBuf {
        self.0.join("known_hosts")
    }

    /// What a fleet may write, and where.
    pub fn fleet_paths(&self) -> RunPaths {
        RunPaths {
            root: self.0.clone(),
            sites: self.sites(),
            logs: self.logs(),
            known_hosts: self.known_hosts(),
            vms: self.vms(),
        }
    }

    /// Merge the controller's and every site's log (and VM consoles, where there are any) into
    /// `logs/merged.jsonl`, one timeline on the controller's clock. Returns the lines written.
    pub fn merge_logs(&self, sites: &[String]) -> std::io::Result<usize> {
        let mut sources = vec![("controller".to_string(), self.controller_log())];
        sources.extend(sites.iter().map(|s| (s.clone(), self.site_log(s))));
        // A VM's serial console (provider "vm"): boot problems in their place.
        sources.extend(
            sites
                .iter()
                .map(|s| (format!("{s}/console"), self.console_log(s))),
        );
        crate::logs::merge(&sources, &self.merged_log())
    }

    /// `releases.jsonl` from the merged log: every release a site recorded, one JSON line
    /// each; `names` names the analyses by index. Returns how many.
    pub fn write_releases(&self, names: &[String]) -> std::io::Result<usize> {
        let releases = crate::releases::from_log(&self.read_log(), names);
        let mut text = String::new();
        for r in &releases {
            text.push_str(&serde_json::to_string(r).map_err(std::io::Error::other)?);
            text.push('\n');
        }
        fsio::write_atomic(&self.releases_jsonl(), text.as_bytes())?;
        Ok(releases.len())
    }

    /// `probe.json`: what the differencing probe found (`[privacy] probe = true`).
    pub fn write_probe(&self, probes: &[crate::probe::Probe]) -> Result<(), RunDirError> {
        self.write_json(&self.probe_json(), probes)
    }

    /// `releases.jsonl`, read back (empty if the run has none).
    pub fn read_releases(&self) -> Vec<crate::releases::Release> {
        std::fs::read_to_string(self.releases_jsonl())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn read_summary(&self) -> Result<Summary, RunDirError> {
        read_json(&self.summary_json())
    }
    pub fn write_summary(&self, summary: &Summary) -> Result<(), RunDirError> {
        self.write_json(&self.summary_json(), summary)
    }
    pub fn read_metrics(&self) -> Result<Metrics, RunDirError> {
        read_json(&self.metrics_json())
    }
    pub fn write_metrics(&self, metrics: &Metrics) -> Result<(), RunDirError> {
        self.write_json(&self.metrics_json(), metrics)
    }
    /// A platform's run against its own simulation (`[platform]`): the report's side-by-side.
    pub fn platform_json(&self) -> PathBuf {
        self.0.join("platform.json")
    }
    pub fn write_platform(&self, p: &crate::platform::Side) -> Result<(), RunDirError> {
        self.write_json(&self.platform_json(), p)
    }
    pub fn read_platform(&self) -> Option<crate::platform::Side> {
        read_json(&self.platform_json()).ok()
    }
    pub fn write_projection(&self, p: &crate::clock::Projection) -> Result<(), RunDirError> {
        self.write_json(&self.projection_json(), p)
    }
    pub fn read_projection(&self) -> Option<crate::clock::Projection> {
        read_json(&self.projection_json()).ok()
    }
    pub fn read_plan(&self) -> Result<PlanFile, RunDirError> {
        read_json(&self.plan_json())
    }

    /// `scenario.toml` (as resolved) and `plan.json`.
    pub fn write_plan(&self, scenario: &Scenario, file: &PlanFile) -> Result<(), RunDirError> {
        let resolved = toml::to_string_pretty(&scenario.with_absolute_paths())
            .map_err(|e| self.io(std::io::Error::other(e)))?;
        fsio::write_atomic(&self.scenario_toml(), resolved.as_bytes()).map_err(|e| self.io(e))?;
        self.write_json(&self.plan_json(), file)
    }

    /// svd: the coordinator's vectors as CSV: right singular vectors per feature
    /// (`components.csv`, horizontal), or sample-side vectors per row (`sample_vectors.csv`,
    /// vertical; the feature-side ones stay on the sites).
    /// With several analyses, a named one's files are `<name>-components.csv` and
    /// `<name>-sample_vectors.csv`.
    pub fn write_vectors(
        &self,
        plan: &Plan,
        name: Option<&str>,
        est: &Estimates,
    ) -> Result<(), DataError> {
        if est.vectors.is_empty() {
            return Ok(());
        }
        let named = |path: PathBuf| match name {
            Some(n) => path.with_file_name(format!(
                "{n}-{}",
                path.file_name().unwrap_or_default().to_string_lossy()
            )),
            None => path,
        };
        let pcs: Vec<String> = (1..=est.vectors.len()).map(|i| format!("pc{i}")).collect();
        if plan.config.vertical {
            let rows: Vec<String> = (1..=plan.frame.rows()).map(|r| r.to_string()).collect();
            crate::data::write_labeled_csv(
                &named(self.sample_vectors_csv()),
                "row",
                &rows,
                &pcs,
                &est.vectors,
            )
        } else {
            crate::data::write_labeled_csv(
                &named(self.components_csv()),
                "feature",
                &plan.analysis().features,
                &pcs,
                &est.vectors,
            )
        }
    }

    /// The merged log, line by line; lines that are not fedsim's JSON are left out.
    pub fn read_log(&self) -> Vec<LogLine> {
        std::fs::read_to_string(self.merged_log())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn write_json<T: Serialize + ?Sized>(&self, path: &Path, value: &T) -> Result<(), RunDirError> {
        fsio::write_json_atomic(path, value).map_err(|source| RunDirError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    fn io(&self, source: std::io::Error) -> RunDirError {
        RunDirError::Io {
            path: self.0.clone(),
            source,
        }
    }
}

/// Read a JSON file the run wrote into its typed form, naming the file on failure.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, RunDirError> {
    let read = |reason: String| RunDirError::Read {
        path: path.into(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| read(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| read(e.to_string()))
}

/// `plan.json`: the resolved analysis and who got which rows. No secrets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanFile {
    pub scenario: String,
    pub seed: u64,
    pub data: PathBuf,
    /// The analysis (with several: the first one).
    pub algorithm: AlgorithmConfig,
    /// A run of `[[analysis]]` entries: each analysis, named, in the order they ran.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analyses: Vec<PlannedAnalysis>,
    pub partition: PartitionSpec,
    pub sites: Vec<PlannedSite>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedAnalysis {
    pub name: String,
    pub algorithm: AlgorithmConfig,
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
    pub fn new(scenario: &Scenario, study: &Study, bundles: &[Bundle]) -> PlanFile {
        let plan = study.first();
        PlanFile {
            scenario: scenario.scenario.name.clone(),
            seed: scenario.scenario.seed,
            data: plan.data_path.clone(),
            algorithm: plan.config.clone(),
            analyses: match study.named {
                true => study
                    .analyses
                    .iter()
                    .map(|p| PlannedAnalysis {
                        name: p.name.clone(),
                        algorithm: p.config.clone(),
                    })
                    .collect(),
                false => Vec::new(),
            },
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
        let e = RunDir::create(Some(tmp.path()), "x").unwrap_err();
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
