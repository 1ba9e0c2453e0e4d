//! The scenario: one TOML file that says what to split, where the sites run and what they compute.
//!
//! Every error names the file, the line and column, the key and what was expected, because a
//! scenario is usually edited by hand and a bare "invalid type" sends people hunting.
//!
//! One file per section of the scenario, each with its types, defaults and checks; this file
//! holds the whole, its loading and the resolution of its paths.

mod algorithm;
mod availability;
mod clock;
mod compare;
mod data;
mod federation;
mod fleet;
mod gui;
mod links;
mod locate;
mod meta;
mod overrides;
mod partition;
mod platform;
mod privacy;
mod vm;

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use algorithm::{AlgorithmKind, AlgorithmSpec, Family, Link, SvdMethod, Ties};
pub use availability::{Approval, ApprovalSpec, AvailabilitySpec, SiteAvailability, Window};
pub use clock::{parse_instant, ClockMode, ClockSpec, DEFAULT_START};
pub use compare::CompareSpec;
pub use data::{DataSpec, Generate, GenerateKind, Missing, DELIMITERS};
pub use federation::{FaultKind, FaultSpec, FederationSpec, OnDropout};
pub use fleet::{expand_sites, FleetSpec, Provider, SiteSpec};
pub use gui::GuiSpec;
pub use links::{LinkSpec, Outage, Profile, SiteLink, Sites, PROFILES};
pub use locate::{parse_located, Locate};
pub use meta::Meta;
pub use overrides::{FleetFile, Set};
pub use partition::{PartitionKind, PartitionSpec, Strategy};
pub use platform::{PlatformKind, PlatformSpec};
pub use privacy::{DpSpec, Mechanism, OnRefusal, Preset, PrivacySpec, RuleSpec, SiteRules};
pub use vm::{Accel, VmSpec};

/// A scenario as written by the user, after validation. Paths are resolved against the scenario's
/// own directory, so a scenario runs the same from any working directory.
///
/// What the sites compute is one `[algorithm]`, or several `[[analysis]]` entries run in order on
/// the same sites; [`Scenario::analyses`] gives each as a scenario of its own (a view), so every
/// per-analysis check and stage reads `algorithm` and `[data]`'s columns as it always has.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "ScenarioFile", into = "ScenarioFile")]
pub struct Scenario {
    pub scenario: Meta,
    pub data: DataSpec,
    pub partition: PartitionSpec,
    pub fleet: FleetSpec,
    /// The analysis (with `[[analysis]]`: the first one; each is a view's `algorithm`).
    pub algorithm: AlgorithmSpec,
    /// `[[analysis]]`: several analyses, run in order in one run (empty with `[algorithm]`).
    pub analysis: Vec<AlgorithmSpec>,
    pub compare: CompareSpec,
    pub federation: FederationSpec,
    /// What each site may release: its disclosure rules.
    pub privacy: PrivacySpec,
    /// The coordinator's portal, and whether browsers click it instead of programs calling its API.
    pub gui: GuiSpec,
    /// Faults to inject, for testing what breaks.
    pub faults: Vec<FaultSpec>,
    /// The sites' hosts, for provider "ssh" (one `[[sites]]` table per site, in order).
    pub sites: Vec<SiteSpec>,
    /// The VMs of provider "vm".
    pub vm: VmSpec,
    /// The network each site is behind.
    pub links: Vec<LinkSpec>,
    /// When each site can answer, and how fast it is.
    pub availability: Vec<AvailabilitySpec>,
    /// Whether the run waits as the study would, or projects it on a simulated clock.
    pub clock: ClockSpec,
    /// A third-party platform (Flower) run on the sites instead of fedsim's own federation.
    pub platform: Option<PlatformSpec>,
    /// The file this scenario came from (not a TOML key).
    pub source: PathBuf,
    /// A view of one `[[analysis]]` entry: its index, so errors point at its keys.
    pub view: Option<usize>,
}

/// The scenario as its file has it: `[algorithm]` or `[[analysis]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    scenario: Meta,
    data: DataSpec,
    #[serde(default)]
    partition: PartitionSpec,
    #[serde(default)]
    fleet: FleetSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    algorithm: Option<AlgorithmSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    analysis: Vec<AlgorithmSpec>,
    #[serde(default)]
    compare: CompareSpec,
    #[serde(default)]
    federation: FederationSpec,
    #[serde(default, skip_serializing_if = "PrivacySpec::is_unset")]
    privacy: PrivacySpec,
    #[serde(default)]
    gui: GuiSpec,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    faults: Vec<FaultSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    sites: Vec<SiteSpec>,
    #[serde(default)]
    vm: VmSpec,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    links: Vec<LinkSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    availability: Vec<AvailabilitySpec>,
    #[serde(default, skip_serializing_if = "ClockSpec::is_unset")]
    clock: ClockSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    platform: Option<PlatformSpec>,
}

impl TryFrom<ScenarioFile> for Scenario {
    type Error = String;

    fn try_from(f: ScenarioFile) -> Result<Scenario, String> {
        let algorithm = match (f.algorithm, f.analysis.first(), &f.platform) {
            // The App computes; fedsim runs its pooled counterpart as the baseline.
            (None, None, Some(p)) => p.as_algorithm(),
            (_, _, Some(_)) => return Err("[platform] runs the App's own analysis: leave out [algorithm] and [[analysis]] (the App's pooled counterpart is platform.pooled)".into()),
            (Some(a), None, None) => a,
            (None, Some(first), None) => first.clone(),
            (None, None, None) => return Err("missing section [algorithm]: say what the sites compute in [algorithm], or in [[analysis]] entries to run several analyses".into()),
            (Some(_), Some(_), None) => return Err("[algorithm] and [[analysis]] both given: one analysis goes in [algorithm], several in [[analysis]] entries (each with its name)".into()),
        };
        Ok(Scenario {
            scenario: f.scenario,
            data: f.data,
            partition: f.partition,
            fleet: f.fleet,
            algorithm,
            analysis: f.analysis,
            compare: f.compare,
            federation: f.federation,
            privacy: f.privacy,
            gui: f.gui,
            faults: f.faults,
            sites: f.sites,
            vm: f.vm,
            links: f.links,
            availability: f.availability,
            clock: f.clock,
            platform: f.platform,
            source: PathBuf::new(),
            view: None,
        })
    }
}

impl From<Scenario> for ScenarioFile {
    fn from(s: Scenario) -> ScenarioFile {
        ScenarioFile {
            scenario: s.scenario,
            data: s.data,
            partition: s.partition,
            fleet: s.fleet,
            // A platform's algorithm is made from `[platform]`, not written.
            algorithm: (s.analysis.is_empty() && s.platform.is_none()).then_some(s.algorithm),
            analysis: s.analysis,
            compare: s.compare,
            federation: s.federation,
            privacy: s.privacy,
            gui: s.gui,
            faults: s.faults,
            sites: s.sites,
            vm: s.vm,
            links: s.links,
            availability: s.availability,
            clock: s.clock,
            platform: s.platform,
        }
    }
}

/// What is wrong with a scenario, located in its file.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A `--set KEY=VALUE` from the command line that does not fit the scenario.
    #[error("--set {set}: {}{message}", if key.is_empty() { String::new() } else { format!("{key}: ") })]
    Set {
        set: String,
        key: String,
        message: String,
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

    /// Read a scenario file with `--set` overrides applied.
    pub fn load_with(path: &Path, sets: &[Set]) -> Result<Scenario, ScenarioError> {
        Scenario::load_layered(path, None, sets)
    }

    /// Read a scenario file, its fleet sections taken from a fleet file (`--fleet`), with
    /// `--set` overrides applied last.
    pub fn load_layered(
        path: &Path,
        fleet: Option<&Path>,
        sets: &[Set],
    ) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let fleet = fleet.map(FleetFile::load).transpose()?;
        overrides::parse_layered(&text, path, fleet.as_ref(), sets)
    }

    /// Parse and validate scenario text; `path` names the file in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
        let mut scenario: Scenario = parse_located(text, path, validate)?;
        scenario.source = path.to_path_buf();
        scenario.resolve(path.parent().unwrap_or(Path::new(".")));
        Ok(scenario)
    }

    /// Anchor every relative path at `base`, the scenario's directory, and write down the
    /// defaults that depend on other keys, so the resolved scenario a run keeps says what ran.
    fn resolve(&mut self, base: &Path) {
        if let Some(g) = &mut self.data.generate {
            if g.kind == GenerateKind::LowRank {
                g.rank = Some(g.signal_rank());
            }
        }
        if let Some(files) = &self.data.files {
            self.partition.sites = files.len();
        }
        if self.vm.memory_mib.is_none() {
            self.vm.memory_mib = Some(match self.platform {
                Some(_) => vm::PLATFORM_MEMORY_MIB,
                None => vm::DEFAULT_MEMORY_MIB,
            });
        }
        for a in std::iter::once(&mut self.algorithm).chain(&mut self.analysis) {
            if a.kind == AlgorithmKind::External && a.workdir.is_none() {
                a.workdir = Some(PathBuf::from("."));
            }
        }
        self.map_paths(|p| normalize(&base.join(p)));
    }

    /// Each analysis as a scenario of its own, in the order they run: `[algorithm]` as it is, or
    /// per `[[analysis]]` entry a view whose `algorithm` is the entry, whose `[data]` target,
    /// features and exclusions are the entry's where it gives them (a target of `[data]` only
    /// for a kind that takes one), and whose Dirichlet split has one label for all (its
    /// `partition.label`, else `[data]`'s target, else the first entry's), so every analysis
    /// sees the same sites.
    pub fn analyses(&self) -> Vec<Scenario> {
        if self.analysis.is_empty() || self.view.is_some() {
            return vec![self.clone()];
        }
        (0..self.analysis.len()).map(|i| self.view_of(i)).collect()
    }

    fn view_of(&self, i: usize) -> Scenario {
        let a = &self.analysis[i];
        let mut v = self.clone();
        v.view = Some(i);
        v.algorithm = a.clone();
        let takes_target = a.kind.needs_target() || a.kind == AlgorithmKind::External;
        v.data.target = a
            .target
            .clone()
            .or_else(|| self.data.target.clone().filter(|_| takes_target));
        if a.features.is_some() {
            v.data.features = a.features.clone();
        }
        if let Some(exclude) = &a.exclude {
            v.data.exclude = exclude.clone();
        }
        if v.partition.strategy == Strategy::Dirichlet && v.partition.label.is_none() {
            // One label for every view: `[data]`'s target, else the first entry's own.
            v.partition.label = self
                .data
                .target
                .clone()
                .or_else(|| self.analysis.iter().find_map(|a| a.target.clone()));
        }
        v
    }

    /// The sites' names, in order: their `[[sites]]` names (an entry with `count` = N gives
    /// `<name>-1`..`<name>-N`), else `site-1`, `site-2`, ...
    pub fn site_names(&self) -> Vec<String> {
        let hosts = self.site_specs();
        (0..self.partition.sites)
            .map(|i| {
                hosts
                    .get(i)
                    .map_or_else(|| format!("site-{}", i + 1), |x| x.name.clone())
            })
            .collect()
    }

    /// The ssh sites, one spec per site: the `[[sites]]` entries expanded by their `count`.
    pub fn site_specs(&self) -> Vec<SiteSpec> {
        fleet::expand_sites(&self.sites)
            .into_iter()
            .map(|(_, s)| s)
            .collect()
    }

    /// The analysis's name: its `[[analysis]]` name, or its kind for a single `[algorithm]`.
    pub fn analysis_name(&self) -> String {
        self.algorithm
            .name
            .clone()
            .unwrap_or_else(|| self.algorithm.kind.as_str().to_string())
    }

    /// Where `key`, as a view's checks name it, is written in the file: an `[[analysis]]`
    /// entry's `algorithm.x` is `analysis.N.x`, and so are the `[data]` keys it sets itself.
    pub fn file_key(&self, key: &str) -> String {
        let Some(i) = self.view else {
            return key.to_string();
        };
        let a = &self.analysis[i];
        let entry = format!("analysis.{i}");
        let owned = [
            ("data.target", a.target.is_some(), "target"),
            ("data.features", a.features.is_some(), "features"),
            ("data.exclude", a.exclude.is_some(), "exclude"),
        ];
        if key == "algorithm" {
            return entry;
        }
        if let Some(rest) = key.strip_prefix("algorithm.") {
            return format!("{entry}.{rest}");
        }
        for (prefix, set, name) in owned {
            if set && (key == prefix || key.starts_with(&format!("{prefix}."))) {
                return format!("{entry}.{name}{}", &key[prefix.len()..]);
            }
        }
        key.to_string()
    }

    /// An error about the value at `key` (dotted path), located in this scenario's file: for
    /// what only the data can tell (a column that is not there).
    pub fn locate(&self, key: &str, message: String) -> ScenarioError {
        let key = &self.file_key(key);
        match std::fs::read_to_string(&self.source) {
            Ok(text) => locate::relocate(&text, &self.source, key, message),
            Err(_) => ScenarioError::Invalid {
                path: self.source.clone(),
                line: 1,
                column: 1,
                key: key.into(),
                message,
            },
        }
    }

    /// Every path key, changed by `f`.
    fn map_paths(&mut self, f: impl Fn(&Path) -> PathBuf) {
        self.data.path = self.data.path.as_deref().map(&f);
        for file in self.data.files.iter_mut().flatten() {
            *file = f(file);
        }
        for site in &mut self.sites {
            site.key = f(&site.key);
            site.known_hosts = site.known_hosts.as_deref().map(&f);
            site.env = site.env.as_deref().map(&f);
        }
        self.fleet.vagrant_dir = self.fleet.vagrant_dir.as_deref().map(&f);
        self.compare.reference = self.compare.reference.as_deref().map(&f);
        for a in std::iter::once(&mut self.algorithm).chain(&mut self.analysis) {
            a.workdir = a.workdir.as_deref().map(&f);
        }
        self.gui.script = self.gui.script.as_deref().map(&f);
        for a in &mut self.availability {
            a.trace = a.trace.as_deref().map(&f);
        }
        if let Some(p) = &mut self.platform {
            p.map_paths(&f);
        }
    }

    /// The scenario with every path absolute (against the working directory), as a run records
    /// it: `fedsim logs RUN_DIR` reloads it from the run directory, where relative paths would
    /// point elsewhere.
    pub fn with_absolute_paths(&self) -> Scenario {
        let mut s = self.clone();
        s.map_paths(|p| std::path::absolute(p).map_or_else(|_| p.to_path_buf(), |a| normalize(&a)));
        s
    }
}

/// `resources/../test_data/x.csv` -> `test_data/x.csv`, without asking the filesystem, so the
/// paths a run prints and records are the short ones people would write. Like Go's
/// `filepath.Clean`, a `..` undoes the component before it even if that is a symlink.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                // `/..` is `/`.
                Some(Component::RootDir | Component::Prefix(_)) => {}
                // Nothing left to undo: a relative path keeps its leading `..`.
                None | Some(Component::ParentDir | Component::CurDir) => out.push(".."),
            },
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// One section's checks.
type SectionCheck = fn(&Scenario, &Locate) -> Result<(), ScenarioError>;

/// Rules serde cannot express: ranges, combinations, and options that belong to one kind only.
/// Each section checks its own keys (some against other sections); the first error is reported.
fn validate(s: &Scenario, at: &Locate) -> Result<(), ScenarioError> {
    // A file per site sets the number of sites, which other sections check against.
    let filled;
    let s = match &s.data.files {
        Some(files) if s.partition.sites == partition::SITES_UNSET => {
            filled = Scenario {
                partition: PartitionSpec {
                    sites: files.len(),
                    ..s.partition.clone()
                },
                ..s.clone()
            };
            &filled
        }
        _ => s,
    };
    let sections: [SectionCheck; 14] = [
        meta::validate,
        data::validate,
        partition::validate,
        fleet::validate,
        federation::validate,
        // Before the algorithm made from it, so its errors name its own keys.
        platform::validate,
        algorithm::validate,
        gui::validate,
        compare::validate,
        vm::validate,
        links::validate,
        clock::validate,
        availability::validate,
        privacy::validate,
    ];
    if s.analysis.is_empty() {
        return sections.iter().try_for_each(|check| check(s, at));
    }
    algorithm::validate_entries(s, at)?;
    for view in s.analyses() {
        let at = |key: &str, message: String| at(&view.file_key(key), message);
        sections.iter().try_for_each(|check| check(&view, &at))?;
    }
    Ok(())
}

/// Site names for a message: all of them when few, else the first and last and how many.
pub(crate) fn names_in_short(names: &[String]) -> String {
    match names {
        [first, second, .., last] if names.len() > 8 => {
            format!("{first}, {second}, ..., {last} ({} sites)", names.len())
        }
        _ => names.join(", "),
    }
}

/// People read the words they wrote: the kinds print as the scenario spells them (`local`, not
/// `Local`).
macro_rules! display_as_written {
    ($($kind:ty),*) => {$(
        impl std::fmt::Display for $kind {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}

display_as_written!(
    AlgorithmKind,
    FaultKind,
    GenerateKind,
    OnDropout,
    PartitionKind,
    Provider,
    Strategy,
    SvdMethod,
    Accel
);

/// Where the coordinator and the portal listen unless told otherwise: loopback, a free port.
fn default_address() -> String {
    "127.0.0.1:0".into()
}

/// A listening address is written `IP:port` (port 0 picks a free one).
fn check_address(at: &Locate, key: &str, value: &str) -> Result<(), ScenarioError> {
    if value.parse::<std::net::SocketAddr>().is_err() {
        return Err(at(
            key,
            format!("expected an IP address and port such as \"127.0.0.1:0\", found {value:?}"),
        ));
    }
    Ok(())
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

    /// `as_str` (and so `Display`) spells every kind as serde reads it from a scenario.
    #[test]
    fn kinds_print_as_the_scenario_spells_them() {
        fn same<T: Serialize + std::fmt::Display>(values: &[T]) {
            for v in values {
                let serde = serde_json::to_value(v).unwrap();
                assert_eq!(serde.as_str(), Some(v.to_string().as_str()));
            }
        }
        use AlgorithmKind::*;
        same(&[LinearRegression, LogisticRegression, Svd]);
        use FaultKind::*;
        same(&[Kill, Cut, Slow, WrongPassword, WrongToken]);
        same(&[
            GenerateKind::LowRank,
            GenerateKind::Linear,
            GenerateKind::Logistic,
            GenerateKind::Survival,
        ]);
        same(&[OnDropout::Fail, OnDropout::Continue]);
        same(&[PartitionKind::Horizontal, PartitionKind::Vertical]);
        same(&[
            Provider::Local,
            Provider::Ssh,
            Provider::Vm,
            Provider::Vagrant,
        ]);
        same(&[Strategy::Uniform, Strategy::Sizes, Strategy::Dirichlet]);
        same(&[SvdMethod::Auto, SvdMethod::Gram, SvdMethod::Subspace]);
        assert_eq!(format!("provider {}", Provider::Local), "provider local");
    }

    #[test]
    fn paths_are_normalized_without_the_filesystem() {
        for (given, want) in [
            ("resources/../test_data/x.csv", "test_data/x.csv"),
            ("./a/./b/", "a/b"),
            ("a/b/../../c", "c"),
            ("a/..", "."),
            ("../../x", "../../x"),
            ("a/../../x", "../x"),
            ("/../x/./y/..", "/x"),
            ("/no/such/dir/../f", "/no/such/f"),
            ("", "."),
        ] {
            assert_eq!(normalize(Path::new(given)), Path::new(want), "{given}");
        }
    }

    #[test]
    fn resolved_paths_are_clean() {
        let text = GOOD.replace("x.csv", "../data/./x.csv")
            + "[compare]\nreference = \"../data/ref.jsonl\"\n";
        let s = Scenario::parse(&text, Path::new("work/resources/s.toml")).unwrap();
        assert_eq!(s.data.path.as_deref(), Some(Path::new("work/data/x.csv")));
        assert_eq!(
            s.compare.reference.as_deref(),
            Some(Path::new("work/data/ref.jsonl"))
        );
        // The scenario's own path stays as given: errors name the file the user typed.
        assert_eq!(s.source, Path::new("work/resources/s.toml"));
    }

    #[test]
    fn minimal_scenario_gets_defaults() {
        let s = Scenario::parse(GOOD, Path::new("dir/s.toml")).unwrap();
        assert_eq!(s.partition.strategy, Strategy::Uniform);
        assert_eq!(s.fleet.provider, Provider::Local);
        assert_eq!(s.compare.tolerance, 1e-8);
        assert_eq!(s.data.path.as_deref(), Some(Path::new("dir/x.csv")));
    }
}
