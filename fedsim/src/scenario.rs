//! The scenario: one TOML file that says what to split, where the sites run and what they compute.
//!
//! Every error names the file, the line and column, the key and what was expected, because a
//! scenario is usually edited by hand and a bare "invalid type" sends people hunting.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::de::{DeTable, DeValue};

/// A scenario as written by the user, after validation. Paths are resolved against the scenario's
/// own directory, so a scenario runs the same from any working directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub scenario: Meta,
    pub data: DataSpec,
    pub partition: PartitionSpec,
    #[serde(default)]
    pub fleet: FleetSpec,
    pub algorithm: AlgorithmSpec,
    #[serde(default)]
    pub compare: CompareSpec,
    #[serde(default)]
    pub federation: FederationSpec,
    /// The coordinator's portal, and whether browsers click it instead of programs calling its API.
    #[serde(default)]
    pub gui: GuiSpec,
    /// Faults to inject, for testing what breaks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<FaultSpec>,
    /// The sites' hosts, for provider "ssh" (one `[[sites]]` table per site, in order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sites: Vec<SiteSpec>,
    /// The file this scenario came from (not a TOML key).
    #[serde(skip)]
    pub source: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    pub name: String,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// CSV or Parquet, relative to the scenario file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
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
}

/// A synthetic data set, for sizes no real file here has (benchmarks, high dimension).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Generate {
    pub kind: GenerateKind,
    pub rows: usize,
    pub cols: usize,
    /// low_rank: rank of the signal (default 10).
    #[serde(default = "default_rank")]
    pub rank: usize,
    /// Standard deviation of the added noise (default 0.1).
    #[serde(default = "default_noise")]
    pub noise: f64,
}

fn default_rank() -> usize {
    10
}
fn default_noise() -> f64 {
    0.1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionKind {
    Horizontal,
    Vertical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    Uniform,
    Sizes,
    Dirichlet,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionSpec {
    pub kind: PartitionKind,
    pub sites: usize,
    #[serde(default = "default_strategy")]
    pub strategy: Strategy,
    /// Fractions of the rows per site, for `strategy = "sizes"`.
    #[serde(default)]
    pub sizes: Option<Vec<f64>>,
    /// Concentration of the label skew, for `strategy = "dirichlet"` (small = more skew).
    #[serde(default)]
    pub alpha: Option<f64>,
    /// Column whose values drive the label skew; default the target.
    #[serde(default)]
    pub label: Option<String>,
    /// A continuous label is cut into this many quantile bins before the skew.
    #[serde(default = "default_bins")]
    pub bins: usize,
}

fn default_strategy() -> Strategy {
    Strategy::Uniform
}
fn default_bins() -> usize {
    5
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    #[default]
    Local,
    Ssh,
    Vagrant,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSpec {
    #[serde(default)]
    pub provider: Provider,
    /// Address the coordinator listens on; port 0 picks a free one.
    #[serde(default = "default_coordinator")]
    pub coordinator: String,
    /// vagrant: the folder holding the Vagrantfile (relative to the scenario file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vagrant_dir: Option<PathBuf>,
    /// ssh/vagrant: agents reach the coordinator through an SSH reverse forward (for sites that
    /// cannot reach the coordinator's address).
    #[serde(default)]
    pub tunnel: bool,
}

impl Default for FleetSpec {
    fn default() -> Self {
        FleetSpec {
            provider: Provider::Local,
            coordinator: default_coordinator(),
            vagrant_dir: None,
            tunnel: false,
        }
    }
}

/// One site host reached over SSH. No passwords: key files only, host keys checked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SiteSpec {
    pub name: String,
    pub host: String,
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    pub user: String,
    /// Private key file (relative to the scenario file).
    pub key: PathBuf,
    /// known_hosts file holding this host's key (default ~/.ssh/known_hosts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts: Option<PathBuf>,
    /// A `.env` with this site's own credentials (FEDSIM_TOKEN); default: a fresh token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<PathBuf>,
    /// Fault injection: a command run on the controller that cuts this site's network link
    /// (the test fleet in namespaces writes `ip link set <veth> down`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut_command: Option<String>,
}

fn default_ssh_port() -> u16 {
    22
}

fn default_coordinator() -> String {
    "127.0.0.1:0".into()
}

/// `[gui]`: the portal the coordinator serves, and the browsers that may drive it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuiSpec {
    /// Each account clicks through the portal in its own headless browser (WebDriver), instead
    /// of fedsim calling the portal's JSON API for it.
    #[serde(default)]
    pub enabled: bool,
    /// The step script; by default the one for fedsim's own portal (`resources/gui/portal.toml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<PathBuf>,
    /// Address the portal listens on; port 0 picks a free one.
    #[serde(default = "default_coordinator")]
    pub portal: String,
    /// How long one step may take (a `wait_for` step may say otherwise).
    #[serde(default = "default_step_timeout")]
    pub step_timeout_secs: f64,
    /// How long the coordinator waits for the start once every site is connected.
    #[serde(default = "default_start_timeout")]
    pub start_timeout_secs: f64,
    #[serde(default = "default_chromedriver")]
    pub chromedriver: PathBuf,
    #[serde(default = "default_browser")]
    pub browser: PathBuf,
}

impl Default for GuiSpec {
    fn default() -> Self {
        GuiSpec {
            enabled: false,
            script: None,
            portal: default_coordinator(),
            step_timeout_secs: default_step_timeout(),
            start_timeout_secs: default_start_timeout(),
            chromedriver: default_chromedriver(),
            browser: default_browser(),
        }
    }
}

fn default_step_timeout() -> f64 {
    30.0
}
fn default_start_timeout() -> f64 {
    300.0
}
fn default_chromedriver() -> PathBuf {
    PathBuf::from("/usr/bin/chromedriver")
}
fn default_browser() -> PathBuf {
    PathBuf::from("/usr/bin/chromium")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlgorithmKind {
    LinearRegression,
    LogisticRegression,
    Svd,
}

impl AlgorithmKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlgorithmKind::LinearRegression => "linear_regression",
            AlgorithmKind::LogisticRegression => "logistic_regression",
            AlgorithmKind::Svd => "svd",
        }
    }
    pub fn needs_target(self) -> bool {
        !matches!(self, AlgorithmKind::Svd)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SvdMethod {
    /// Gram route when the aggregated matrix is small, subspace iteration otherwise.
    #[default]
    Auto,
    /// Exact: sum the d x d (horizontal) or n x n (vertical) Gram matrix and decompose it.
    Gram,
    /// Federated randomized subspace iteration: only d x k (or n x k) blocks travel.
    Subspace,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlgorithmSpec {
    pub kind: AlgorithmKind,
    /// Regressions: add an intercept term (`const`), as statsmodels' `add_constant` (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intercept: Option<bool>,
    /// logistic_regression (Newton) and svd (subspace): iteration limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_iter: Option<usize>,
    /// logistic_regression: largest Newton step that counts as converged; svd: subspace change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tol: Option<f64>,
    /// svd: number of components.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<usize>,
    /// svd: subtract column means (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub center: Option<bool>,
    /// svd: divide columns by their standard deviation, ddof 1 (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<bool>,
    /// svd: "auto" | "gram" | "subspace".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<SvdMethod>,
    /// svd subspace: extra vectors iterated beyond k, for faster convergence (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oversample: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareSpec {
    /// Largest relative difference between federated and centralised results that passes.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// svd: largest angle (degrees) between federated and centralised vectors that passes,
    /// checked for components whose singular values are separated.
    #[serde(default = "default_angle_tolerance")]
    pub angle_tolerance_deg: f64,
    /// Optional JSON-lines file of independent reference results (e.g. statsmodels).
    #[serde(default)]
    pub reference: Option<PathBuf>,
}

impl Default for CompareSpec {
    fn default() -> Self {
        CompareSpec {
            tolerance: default_tolerance(),
            angle_tolerance_deg: default_angle_tolerance(),
            reference: None,
        }
    }
}

fn default_angle_tolerance() -> f64 {
    0.01
}

fn default_tolerance() -> f64 {
    1e-8
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationSpec {
    /// How long the coordinator waits for every site to connect.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: f64,
    /// How long one round may take before the slowest site is declared lost.
    #[serde(default = "default_round_timeout")]
    pub round_timeout_secs: f64,
    /// Both ends send a heartbeat this often; four missed in a row and the peer is lost.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_secs: f64,
    /// What a lost site does to the run: "fail" it, or "continue" with the others.
    #[serde(default)]
    pub on_dropout: OnDropout,
    /// With on_dropout = "continue": the fewest sites the run may go on with.
    #[serde(default = "default_min_sites")]
    pub min_sites: usize,
    /// Sites add pairwise masks that cancel in the sum, so the coordinator learns only sums.
    #[serde(default)]
    pub secure_aggregation: bool,
}

impl Default for FederationSpec {
    fn default() -> Self {
        FederationSpec {
            connect_timeout_secs: default_connect_timeout(),
            round_timeout_secs: default_round_timeout(),
            heartbeat_secs: default_heartbeat(),
            on_dropout: OnDropout::Fail,
            min_sites: default_min_sites(),
            secure_aggregation: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnDropout {
    #[default]
    Fail,
    Continue,
}

fn default_heartbeat() -> f64 {
    1.0
}
fn default_min_sites() -> usize {
    1
}

/// A fault injected on purpose, to see what the run does.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub site: String,
    pub kind: FaultKind,
    /// The round in which it strikes (1 = the algorithm's first round); none for the portal's
    /// wrong_password and wrong_token, which strike before the run.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub round: u32,
    /// slow: seconds the site waits before answering that round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_secs: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// The site's agent process is killed (SIGKILL) as the round starts.
    Kill,
    /// The site's network link goes down as the round starts (ssh test fleet in namespaces).
    Cut,
    /// The site answers the round `delay_secs` late (userspace delay; heartbeats go on).
    Slow,
    /// The site's person mistypes its portal password.
    WrongPassword,
    /// The site's person mistypes the join token the coordinator sent.
    WrongToken,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn default_connect_timeout() -> f64 {
    30.0
}
fn default_round_timeout() -> f64 {
    120.0
}

/// What is wrong with a scenario, located in its file.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {key}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        key: String,
        message: String,
    },
}

impl Scenario {
    /// Read, parse and validate a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Scenario::parse(&text, path)
    }

    /// Parse and validate scenario text; `path` names the file in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
        let locator = Locator { text, path };
        let mut scenario: Scenario = deserialize(text, &locator)?;
        scenario.source = path.to_path_buf();
        let base = path.parent().unwrap_or(Path::new("."));
        let tree = DeTable::parse(text).map_err(|e| locator.toml_error(&e, ""))?;
        let root = DeValue::Table(tree.into_inner());
        validate(&scenario, &|key, message| locator.at(&root, key, message))?;
        scenario.data.path = scenario.data.path.as_ref().map(|p| base.join(p));
        for site in &mut scenario.sites {
            site.key = base.join(&site.key);
            site.known_hosts = site.known_hosts.as_ref().map(|k| base.join(k));
            site.env = site.env.as_ref().map(|e| base.join(e));
        }
        if let Some(d) = &scenario.fleet.vagrant_dir {
            scenario.fleet.vagrant_dir = Some(base.join(d));
        }
        if let Some(r) = &scenario.compare.reference {
            scenario.compare.reference = Some(base.join(r));
        }
        if let Some(g) = &scenario.gui.script {
            scenario.gui.script = Some(base.join(g));
        }
        Ok(scenario)
    }
}

/// Parse another hand-written TOML file (a GUI step script) with the scenario's error style:
/// serde errors and `check`'s errors both come out as `file:line:column: key: message`.
pub fn parse_located<T: serde::de::DeserializeOwned>(
    text: &str,
    path: &Path,
    check: impl FnOnce(&T, &Locate) -> Result<(), ScenarioError>,
) -> Result<T, ScenarioError> {
    let locator = Locator { text, path };
    let value: T = deserialize(text, &locator)?;
    let tree = DeTable::parse(text).map_err(|e| locator.toml_error(&e, ""))?;
    let root = DeValue::Table(tree.into_inner());
    check(&value, &|key, message| locator.at(&root, key, message))?;
    Ok(value)
}

fn deserialize<T: serde::de::DeserializeOwned>(
    text: &str,
    locator: &Locator,
) -> Result<T, ScenarioError> {
    let de = toml::Deserializer::parse(text).map_err(|e| locator.toml_error(&e, ""))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        locator.toml_error(e.inner(), &key)
    })
}

/// Turns byte spans and key paths into `file:line:column` errors.
struct Locator<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Locator<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |nl| nl + 1);
        // Columns count characters, as editors do, not bytes.
        (line, before[line_start..].chars().count() + 1)
    }

    fn error(&self, span: Option<Range<usize>>, key: &str, message: String) -> ScenarioError {
        let (line, column) = span.map_or((1, 1), |s| self.line_col(s.start));
        let key = if key.is_empty() {
            "(document)".to_string()
        } else {
            key.to_string()
        };
        ScenarioError::Invalid {
            path: self.path.to_path_buf(),
            line,
            column,
            key,
            message,
        }
    }

    /// A TOML or serde error: keep its span, add the key and a "did you mean" where one helps.
    fn toml_error(&self, e: &toml::de::Error, key: &str) -> ScenarioError {
        let message = plain_words(e.message().trim(), key);
        let message = add_suggestion(&message);
        self.error(e.span(), key, message)
    }

    /// A semantic error about the value at `key` (dotted path), located via the parsed tree.
    fn at(&self, root: &DeValue, key: &str, message: String) -> ScenarioError {
        let mut node: Option<&DeValue> = Some(root);
        let mut span = None;
        for part in key.split('.') {
            let next = match part.parse::<usize>() {
                Ok(i) => node.and_then(|n| n.get(i)),
                Err(_) => node.and_then(|n| n.get(part)),
            };
            let Some(next) = next else { break };
            span = Some(next.span());
            node = Some(next.get_ref());
        }
        self.error(span, key, message)
    }
}

/// serde speaks of fields and Rust types; a scenario has keys, sections and numbers.
fn plain_words(message: &str, key: &str) -> String {
    let mut m = message.to_string();
    if let Some(name) = m
        .strip_prefix("missing field `")
        .and_then(|r| r.strip_suffix('`'))
    {
        m = if key.is_empty() {
            format!("missing section [{name}]")
        } else {
            format!("missing key `{name}`")
        };
    }
    for (rust, words) in [
        ("expected usize", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected u32", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected a boolean", "expected true or false"),
    ] {
        m = m.replace(rust, words);
    }
    m
}

/// serde says "unknown field `sitez`, expected one of `kind`, `sites`"; people want the nearest.
fn add_suggestion(message: &str) -> String {
    let unknown = ["unknown field `", "unknown variant `"]
        .iter()
        .find_map(|p| message.strip_prefix(p))
        .and_then(|rest| rest.split('`').next());
    let Some(unknown) = unknown else {
        return message.to_string();
    };
    let expected: Vec<&str> = message
        .split_once("expected")
        .map(|(_, tail)| tail.split('`').skip(1).step_by(2).collect())
        .unwrap_or_default();
    let best = expected
        .iter()
        .map(|cand| (strsim::jaro_winkler(unknown, cand), *cand))
        .filter(|(score, _)| *score > 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((_, cand)) => format!("{message} (did you mean `{cand}`?)"),
        None => message.to_string(),
    }
}

pub type Locate<'a> = dyn Fn(&str, String) -> ScenarioError + 'a;

/// Rules serde cannot express: ranges, combinations, and options that belong to one kind only.
fn validate(s: &Scenario, at: &Locate) -> Result<(), ScenarioError> {
    if s.scenario.name.trim().is_empty()
        || !s
            .scenario
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(at(
            "scenario.name",
            format!(
                "expected a non-empty name of letters, digits, '-', '_' or '.', found {:?}",
                s.scenario.name
            ),
        ));
    }
    match (&s.data.path, &s.data.generate) {
        (None, None) => {
            return Err(at(
                "data",
                "missing key `path`: give a CSV or Parquet file (or `generate` for synthetic data)"
                    .into(),
            ))
        }
        (Some(_), Some(_)) => {
            return Err(at(
                "data.generate",
                "give either `path` or `generate`, not both".into(),
            ))
        }
        (Some(path), None) => {
            let ext = path
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or("")
                .to_ascii_lowercase();
            if !matches!(ext.as_str(), "csv" | "parquet" | "pq") {
                return Err(at(
                    "data.path",
                    format!(
                        "expected a .csv or .parquet file, found {:?}",
                        path.display().to_string()
                    ),
                ));
            }
        }
        (None, Some(g)) => {
            if g.rows < 2 || g.cols < 1 || g.rows.saturating_mul(g.cols) > 200_000_000 {
                return Err(at(
                    "data.generate",
                    format!(
                        "expected rows >= 2, cols >= 1 and rows x cols <= 2e8, found {} x {}",
                        g.rows, g.cols
                    ),
                ));
            }
            if g.rank == 0 || g.rank > g.cols.min(g.rows) {
                return Err(at(
                    "data.generate.rank",
                    format!("expected a rank from 1 to {}", g.cols.min(g.rows)),
                ));
            }
            if !(g.noise.is_finite() && g.noise >= 0.0) {
                return Err(at(
                    "data.generate.noise",
                    format!("expected a standard deviation >= 0, found {}", g.noise),
                ));
            }
        }
    }
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
        (Some(_), false) => {
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
    let p = &s.partition;
    if p.sites == 0 || p.sites > 1024 {
        return Err(at(
            "partition.sites",
            format!(
                "expected a number of sites from 1 to 1024, found {}",
                p.sites
            ),
        ));
    }
    if p.kind == PartitionKind::Vertical {
        if kind != AlgorithmKind::Svd {
            return Err(at(
                "partition.kind",
                format!(
                    "vertical partitions are supported for svd only, not {} (use \"horizontal\")",
                    kind.as_str()
                ),
            ));
        }
        if p.strategy == Strategy::Dirichlet {
            return Err(at(
                "partition.strategy",
                "a vertical split shares columns, which have no labels: use \"uniform\" or \"sizes\"".into(),
            ));
        }
    }
    match p.strategy {
        Strategy::Sizes => {
            let Some(sizes) = &p.sizes else {
                return Err(at(
                    "partition",
                    "missing key `sizes`: strategy \"sizes\" needs a list of fractions, one per site, e.g. sizes = [0.5, 0.3, 0.2]".into(),
                ));
            };
            if sizes.len() != p.sites {
                return Err(at(
                    "partition.sizes",
                    format!("expected {} fractions (one per site), found {}", p.sites, sizes.len()),
                ));
            }
            if sizes.iter().any(|x| !x.is_finite() || *x <= 0.0) {
                return Err(at("partition.sizes", "expected fractions greater than 0".into()));
            }
            let total: f64 = sizes.iter().sum();
            if (total - 1.0).abs() > 1e-6 {
                return Err(at(
                    "partition.sizes",
                    format!("expected fractions that sum to 1, they sum to {total}"),
                ));
            }
        }
        Strategy::Dirichlet => match p.alpha {
            None => {
                return Err(at(
                    "partition",
                    "missing key `alpha`: strategy \"dirichlet\" needs a concentration > 0, e.g. alpha = 0.5".into(),
                ))
            }
            Some(a) if !(a.is_finite() && a > 0.0) => {
                return Err(at("partition.alpha", format!("expected a number > 0, found {a}")))
            }
            Some(_) => {}
        },
        Strategy::Uniform => {}
    }
    let strategy_only = [
        ("sizes", p.sizes.is_some(), Strategy::Sizes),
        ("alpha", p.alpha.is_some(), Strategy::Dirichlet),
        ("label", p.label.is_some(), Strategy::Dirichlet),
    ];
    for (key, present, owner) in strategy_only {
        if present && p.strategy != owner {
            return Err(at(
                &format!("partition.{key}"),
                format!(
                    "`{key}` only applies to strategy \"{}\"",
                    strategy_name(owner)
                ),
            ));
        }
    }
    if p.strategy == Strategy::Dirichlet && p.label.is_none() && s.data.target.is_none() {
        return Err(at(
            "partition",
            "missing key `label`: the dirichlet skew needs a label column when there is no target"
                .into(),
        ));
    }
    if p.bins < 2 {
        return Err(at(
            "partition.bins",
            format!("expected at least 2 bins, found {}", p.bins),
        ));
    }
    validate_sites(s, at)?;
    validate_federation(s, at)?;
    if s.fleet.coordinator.parse::<std::net::SocketAddr>().is_err() {
        return Err(at(
            "fleet.coordinator",
            format!(
                "expected an IP address and port such as \"127.0.0.1:0\", found {:?}",
                s.fleet.coordinator
            ),
        ));
    }
    validate_algorithm(s, at)?;
    validate_gui(s, at)?;
    let a = s.compare.angle_tolerance_deg;
    if !(a.is_finite() && a > 0.0 && a <= 90.0) {
        return Err(at(
            "compare.angle_tolerance_deg",
            format!("expected degrees in (0, 90], found {a}"),
        ));
    }
    let t = s.compare.tolerance;
    if !(t.is_finite() && t > 0.0) {
        return Err(at(
            "compare.tolerance",
            format!("expected a number > 0, found {t:e}"),
        ));
    }
    for (key, v) in [
        (
            "federation.connect_timeout_secs",
            s.federation.connect_timeout_secs,
        ),
        (
            "federation.round_timeout_secs",
            s.federation.round_timeout_secs,
        ),
    ] {
        if !(v.is_finite() && v > 0.0) {
            return Err(at(
                key,
                format!("expected a number of seconds > 0, found {v}"),
            ));
        }
    }
    Ok(())
}

/// Heartbeats, dropout policy, secure aggregation and faults.
fn validate_federation(s: &Scenario, at: &Locate) -> Result<(), ScenarioError> {
    let f = &s.federation;
    if !(f.heartbeat_secs.is_finite() && f.heartbeat_secs >= 0.05 && f.heartbeat_secs <= 60.0) {
        return Err(at(
            "federation.heartbeat_secs",
            format!(
                "expected seconds from 0.05 to 60, found {}",
                f.heartbeat_secs
            ),
        ));
    }
    if f.min_sites == 0 || f.min_sites > s.partition.sites {
        return Err(at(
            "federation.min_sites",
            format!(
                "expected 1 to {} (partition.sites), found {}",
                s.partition.sites, f.min_sites
            ),
        ));
    }
    if f.on_dropout == OnDropout::Continue && (s.partition.kind == PartitionKind::Vertical) {
        return Err(at("federation.on_dropout", "a vertical split cannot go on without a site: its columns would be missing; use \"fail\"".into()));
    }
    if f.secure_aggregation && s.partition.kind == PartitionKind::Vertical {
        return Err(at("federation.secure_aggregation", "secure aggregation masks sums of same-shaped statistics; a vertical split sends different blocks per site".into()));
    }
    if f.secure_aggregation && s.partition.sites < 2 {
        return Err(at(
            "federation.secure_aggregation",
            "secure aggregation needs at least 2 sites (one site's sum is its own statistic)"
                .into(),
        ));
    }
    let names: Vec<String> = if s.sites.is_empty() {
        (1..=s.partition.sites)
            .map(|i| format!("site-{i}"))
            .collect()
    } else {
        s.sites.iter().map(|x| x.name.clone()).collect()
    };
    for (i, fault) in s.faults.iter().enumerate() {
        let key = |k: &str| format!("faults.{i}.{k}");
        if !names.contains(&fault.site) {
            return Err(at(
                &key("site"),
                format!("no site {:?}; sites are {}", fault.site, names.join(", ")),
            ));
        }
        let portal = matches!(fault.kind, FaultKind::WrongPassword | FaultKind::WrongToken);
        if portal && fault.round != 0 {
            return Err(at(
                &key("round"),
                "a portal fault strikes before the first round; remove `round`".into(),
            ));
        }
        if !portal && fault.round == 0 {
            return Err(at(
                &key("round"),
                "expected the round it strikes in, counting from 1".into(),
            ));
        }
        match (fault.kind, fault.delay_secs) {
            (FaultKind::Slow, None) => return Err(at(&format!("faults.{i}"), "missing key `delay_secs`: a slow fault needs the delay".into())),
            (FaultKind::Slow, Some(d)) if !(d.is_finite() && d >= 0.0) => {
                return Err(at(&key("delay_secs"), format!("expected seconds >= 0, found {d}")))
            }
            (FaultKind::Kill | FaultKind::Cut | FaultKind::WrongPassword | FaultKind::WrongToken, Some(_)) => return Err(at(&key("delay_secs"), "`delay_secs` applies to kind \"slow\" only".into())),
            (FaultKind::Cut, None) if !s.sites.iter().any(|x| x.name == fault.site && x.cut_command.is_some()) => {
                return Err(at(&key("kind"), "a network cut needs the site's `cut_command` in its [[sites]] entry (the ssh test fleet in namespaces writes one); local sites share this host's network".into()))
            }
            _ => {}
        }
    }
    Ok(())
}

/// `[gui]`: a portal address, positive timeouts.
fn validate_gui(s: &Scenario, at: &Locate) -> Result<(), ScenarioError> {
    let g = &s.gui;
    if g.portal.parse::<std::net::SocketAddr>().is_err() {
        return Err(at(
            "gui.portal",
            format!(
                "expected an IP address and port such as \"127.0.0.1:0\", found {:?}",
                g.portal
            ),
        ));
    }
    for (key, v) in [
        ("gui.step_timeout_secs", g.step_timeout_secs),
        ("gui.start_timeout_secs", g.start_timeout_secs),
    ] {
        if !(v.is_finite() && v > 0.0) {
            return Err(at(
                key,
                format!("expected a number of seconds > 0, found {v}"),
            ));
        }
    }
    Ok(())
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// `[[sites]]`: one per site for provider "ssh", none otherwise; unique, usable names.
fn validate_sites(s: &Scenario, at: &Locate) -> Result<(), ScenarioError> {
    match s.fleet.provider {
        Provider::Ssh => {
            if s.sites.len() != s.partition.sites {
                return Err(at(
                    "partition.sites",
                    format!(
                        "provider \"ssh\" needs one [[sites]] entry per site: partition.sites = {}, but {} [[sites]] are given",
                        s.partition.sites,
                        s.sites.len()
                    ),
                ));
            }
        }
        Provider::Local | Provider::Vagrant => {
            if s.fleet.tunnel && s.fleet.provider == Provider::Local {
                return Err(at("fleet.tunnel", "tunnel applies to providers \"ssh\" and \"vagrant\"; local sites reach the coordinator directly".into()));
            }
            if !s.sites.is_empty() {
                return Err(at(
                    "sites",
                    "[[sites]] entries are for provider \"ssh\" (local sites need no hosts; vagrant finds its own)".into(),
                ));
            }
        }
    }
    let mut seen = BTreeSet::new();
    for (i, site) in s.sites.iter().enumerate() {
        let key = |k: &str| format!("sites.{i}.{k}");
        if !valid_name(&site.name) {
            return Err(at(
                &key("name"),
                format!(
                    "expected a site name of letters, digits, '-', '_' or '.', found {:?}",
                    site.name
                ),
            ));
        }
        if !seen.insert(site.name.as_str()) {
            return Err(at(
                &key("name"),
                format!(
                    "duplicate site name {:?}: every site needs its own name",
                    site.name
                ),
            ));
        }
        if site.host.trim().is_empty() {
            return Err(at(&key("host"), "expected a host name or address".into()));
        }
        if site.user.trim().is_empty() {
            return Err(at(&key("user"), "expected a user name".into()));
        }
    }
    Ok(())
}

/// Each option belongs to the algorithms that use it; elsewhere it is a mistake worth reporting.
fn validate_algorithm(s: &Scenario, at: &Locate) -> Result<(), ScenarioError> {
    use AlgorithmKind::*;
    let a = &s.algorithm;
    let owners: [(&str, bool, &[AlgorithmKind]); 8] = [
        (
            "intercept",
            a.intercept.is_some(),
            &[LinearRegression, LogisticRegression],
        ),
        ("max_iter", a.max_iter.is_some(), &[LogisticRegression, Svd]),
        ("tol", a.tol.is_some(), &[LogisticRegression, Svd]),
        ("k", a.k.is_some(), &[Svd]),
        ("center", a.center.is_some(), &[Svd]),
        ("scale", a.scale.is_some(), &[Svd]),
        ("method", a.method.is_some(), &[Svd]),
        ("oversample", a.oversample.is_some(), &[Svd]),
    ];
    for (key, present, kinds) in owners {
        if present && !kinds.contains(&a.kind) {
            let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
            return Err(at(
                &format!("algorithm.{key}"),
                format!(
                    "`{key}` applies to {} only, not {}",
                    names.join(" and "),
                    a.kind.as_str()
                ),
            ));
        }
    }
    if a.max_iter == Some(0) || a.max_iter.is_some_and(|m| m > 100_000) {
        return Err(at(
            "algorithm.max_iter",
            "expected a number of iterations from 1 to 100000".into(),
        ));
    }
    if let Some(t) = a.tol {
        if !(t.is_finite() && t > 0.0 && t < 1.0) {
            return Err(at(
                "algorithm.tol",
                format!("expected a number between 0 and 1, found {t:e}"),
            ));
        }
    }
    if a.k == Some(0) {
        return Err(at("algorithm.k", "expected at least 1 component".into()));
    }
    if a.kind == Svd && a.k.is_none() {
        return Err(at(
            "algorithm",
            "missing key `k`: svd needs the number of components, e.g. k = 10".into(),
        ));
    }
    if a.scale == Some(true) && a.center == Some(false) {
        return Err(at(
            "algorithm.scale",
            "scale = true needs center = true (a z-score centres first)".into(),
        ));
    }
    Ok(())
}

fn strategy_name(s: Strategy) -> &'static str {
    match s {
        Strategy::Uniform => "uniform",
        Strategy::Sizes => "sizes",
        Strategy::Dirichlet => "dirichlet",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[scenario]
name = "t"
[data]
path = "x.csv"
target = "y"
[partition]
kind = "horizontal"
sites = 3
[algorithm]
kind = "linear_regression"
"#;

    #[test]
    fn minimal_scenario_gets_defaults() {
        let s = Scenario::parse(GOOD, Path::new("dir/s.toml")).unwrap();
        assert_eq!(s.partition.strategy, Strategy::Uniform);
        assert_eq!(s.fleet.provider, Provider::Local);
        assert_eq!(s.compare.tolerance, 1e-8);
        assert_eq!(s.data.path.as_deref(), Some(Path::new("dir/x.csv")));
    }

    #[test]
    fn suggestion_picks_nearest_key() {
        let m =
            add_suggestion("unknown field `sitez`, expected one of `kind`, `sites`, `strategy`");
        assert!(m.ends_with("(did you mean `sites`?)"), "{m}");
        let m = add_suggestion("unknown field `zzzzzz`, expected `kind` or `sites`");
        assert!(!m.contains("did you mean"), "{m}");
    }
}
