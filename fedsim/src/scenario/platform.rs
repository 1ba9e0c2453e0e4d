//! `[platform]`: a third-party federated platform run on the sites instead of fedsim's own
//! federation (Flower's deployment engine), its App, and the App's pooled counterpart.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{AlgorithmSpec, Locate, Provider, Scenario, ScenarioError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlatformKind {
    /// Flower's deployment engine: `flower-superlink`, one `flower-supernode` per site, `flwr run`.
    Flower,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformSpec {
    pub kind: PlatformKind,
    /// The Flower App's directory (its `pyproject.toml` with `[tool.flwr.app]`).
    pub app: PathBuf,
    /// Server rounds: the App's `num-server-rounds`.
    pub rounds: u32,
    /// The App's pooled counterpart, run in the App's directory on the pooled rows (their file in
    /// `FEDSIM_DATA`), answering `{"result": {...}}` like the external protocol's `pooled`.
    pub pooled: Vec<String>,
    /// More of the App's run config (`[tool.flwr.app.config]` keys), as `flwr run --run-config`.
    #[serde(default, skip_serializing_if = "toml::Table::is_empty")]
    pub run_config: toml::Table,
    /// Where flwr is: a venv or its `bin` folder (default: `FEDSIM_FLWR`, then `PATH`, then
    /// `~/.cache/fedsim-flwr`, where `.ci/run` installs it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flwr: Option<PathBuf>,
    /// Also run the App in Flower's own simulation engine on the same partitions, and compare.
    #[serde(default = "yes")]
    pub simulation: bool,
    /// Plain HTTP between SuperNodes and the SuperLink: only on loopback, and only if asked for.
    #[serde(default)]
    pub insecure: bool,
    /// How long the whole Flower run may take, start to result.
    #[serde(default = "default_timeout")]
    pub timeout_secs: f64,
}

fn yes() -> bool {
    true
}

fn default_timeout() -> f64 {
    600.0
}

impl PlatformSpec {
    /// The analysis the rest of the pipeline sees: an external algorithm whose only command that
    /// runs is `pooled` (the baseline), in the App's directory. Its `local` and `aggregate` are
    /// the App's, run by Flower, never by fedsim.
    pub fn as_algorithm(&self) -> AlgorithmSpec {
        let mut a: AlgorithmSpec = toml::from_str(
            "kind = \"external\"\nlocal = [\"flower-clientapp\"]\naggregate = [\"flower-serverapp\"]\npooled = [\"pooled\"]\n",
        )
        .expect("a well-formed external algorithm");
        a.pooled = Some(self.pooled.clone());
        a.workdir = Some(self.app.clone());
        a
    }

    /// Where flwr's programs are: `flwr`, else `FEDSIM_FLWR`, `PATH` or `.ci/run`'s venv; why
    /// not, when none has them.
    pub fn flwr_bin(&self) -> Result<PathBuf, String> {
        let with_bin = |p: PathBuf| {
            if p.join("bin").join("flower-superlink").is_file() {
                p.join("bin")
            } else {
                p
            }
        };
        let given = self
            .flwr
            .clone()
            .or_else(|| std::env::var_os("FEDSIM_FLWR").map(PathBuf::from));
        let candidates: Vec<PathBuf> = match given {
            Some(p) => vec![with_bin(p)],
            // The folders of PATH, then the venv `.ci/run` makes.
            None => std::env::var_os("PATH")
                .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
                .unwrap_or_default()
                .into_iter()
                .chain(
                    std::env::var_os("HOME")
                        .map(|h| PathBuf::from(h).join(".cache/fedsim-flwr/bin")),
                )
                .collect(),
        };
        candidates
            .into_iter()
            .find(|d| {
                ["flower-superlink", "flower-supernode", "flwr"]
                    .iter()
                    .all(|p| d.join(p).is_file())
            })
            .ok_or_else(|| {
                    "Flower is not installed: no flower-superlink, flower-supernode and flwr in platform.flwr, FEDSIM_FLWR, PATH or ~/.cache/fedsim-flwr; install it with: python3 -m venv ~/.cache/fedsim-flwr && ~/.cache/fedsim-flwr/bin/pip install 'flwr[simulation]==1.42.*' numpy".to_string()
            })
    }

    pub(super) fn map_paths(&mut self, f: &impl Fn(&Path) -> PathBuf) {
        self.app = f(&self.app);
        self.flwr = self.flwr.as_deref().map(f);
    }
}

/// A platform runs on local, ssh (one node per host entry, tunnelled unless on loopback) or vm
/// sites, within sane rounds and time, insecure only on local sites.
pub(super) fn validate(s: &Scenario, at: &Locate) -> Result<(), ScenarioError> {
    let Some(p) = &s.platform else {
        return Ok(());
    };
    if p.rounds == 0 || p.rounds > 10_000 {
        return Err(at(
            "platform.rounds",
            format!("expected 1 to 10000 rounds, found {}", p.rounds),
        ));
    }
    if p.pooled.first().is_none_or(|c| c.trim().is_empty()) {
        return Err(at(
            "platform.pooled",
            "expected a command: a program and its arguments, e.g. [\"python3\", \"pooled.py\"]"
                .into(),
        ));
    }
    if !(p.timeout_secs.is_finite() && p.timeout_secs > 0.0) {
        return Err(at(
            "platform.timeout_secs",
            format!("expected seconds > 0, found {}", p.timeout_secs),
        ));
    }
    match s.fleet.provider {
        Provider::Local | Provider::Vm => {}
        Provider::Ssh if s.sites.iter().any(|x| x.count > 1) => {
            return Err(at(
                "sites.count",
                "a platform runs one node per SSH host entry; list each site as its own [[sites]] (count = 1)".into(),
            ))
        }
        Provider::Ssh => {
            // The SuperLink listens on this machine's loopback: a host elsewhere reaches it
            // through the tunnel.
            let loopback = |h: &str| {
                h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
            };
            if let (false, Some(far)) = (
                s.fleet.tunnel(),
                s.sites.iter().find(|x| !loopback(&x.host)),
            ) {
                return Err(at(
                    "fleet.tunnel",
                    format!(
                        "site {} ({}) is not on this machine: a platform's nodes reach the SuperLink through SSH tunnels; set [fleet] tunnel = true",
                        far.name, far.host
                    ),
                ));
            }
        }
        other => {
            return Err(at(
                "fleet.provider",
                format!(
                    "[platform] kind = \"flower\" runs on local, ssh and vm sites, found provider \"{other}\""
                ),
            ))
        }
    }
    if p.insecure && s.fleet.provider != Provider::Local {
        return Err(at(
            "platform.insecure",
            "plain HTTP only between processes of this machine (local sites); sites on SSH hosts or VMs get TLS".into(),
        ));
    }
    for key in [
        "result-dir",
        "min-nodes",
        "partition-dir",
        "num-server-rounds",
    ] {
        if p.run_config.contains_key(key) {
            return Err(at(
                &format!("platform.run_config.{key}"),
                "set by fedsim (see docs/flower.md); leave it out".into(),
            ));
        }
    }
    let cuttable = s.fleet.provider != Provider::Local;
    if let Some((i, f)) = s.faults.iter().enumerate().find(|(_, f)| match f.kind {
        super::FaultKind::Kill => false,
        super::FaultKind::Cut => !cuttable,
        _ => true,
    }) {
        return Err(at(
            &format!("faults.{i}.kind"),
            format!(
                "a platform's site can be killed (kind = \"kill\"), or cut on ssh and vm sites (kind = \"cut\"), not \"{}\"{}",
                f.kind.as_str(),
                if f.kind == super::FaultKind::Cut { " on local sites" } else { "" }
            ),
        ));
    }
    if s.clock.simulated() {
        return Err(at(
            "clock.mode",
            "a platform runs on the real clock: Flower keeps its own time".into(),
        ));
    }
    if s.federation.secure_aggregation || s.privacy.dp.is_some() || s.gui.enabled {
        return Err(at(
            "platform",
            "secure aggregation, differential privacy and the portal's GUI are fedsim's own federation's; a Flower App brings its own".into(),
        ));
    }
    Ok(())
}
