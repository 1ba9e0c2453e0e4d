//! Scenario texts: written into a directory, or built for the common case of a linear regression.

use std::path::{Path, PathBuf};

use super::{root, test_data};

/// Write a scenario into `dir` and return its path.
pub fn scenario(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, body).unwrap();
    p
}

/// A linear-regression scenario on a shipped data set (`target = "progression"` for diabetes),
/// with `extra` TOML appended (federation settings, faults, ...).
pub fn ols_toml(name: &str, csv: &str, sites: usize, extra: &str) -> String {
    Ols::on(name, csv, sites).extra(extra).toml()
}

/// A linear-regression scenario over `sites` horizontal sites, built up: the data, a seed,
/// further partition keys, and sections appended after `[algorithm]` (in the order given).
#[derive(Debug, Clone)]
pub struct Ols {
    name: String,
    seed: Option<u64>,
    /// The lines of `[data]`.
    data: String,
    sites: usize,
    /// Lines of `[partition]` after `kind` and `sites`.
    partition: String,
    /// Sections after `[algorithm]`.
    extra: String,
}

impl Ols {
    /// On the shipped data set `csv` (under test_data/), target `progression`.
    pub fn on(name: &str, csv: &str, sites: usize) -> Ols {
        Ols::on_file(name, &test_data(csv), sites)
    }

    /// On the file at `path` (written into the scenario as given), target `progression`.
    pub fn on_file(name: &str, path: &Path, sites: usize) -> Ols {
        let data = format!("path = \"{}\"\ntarget = \"progression\"\n", path.display());
        Ols::with_data(name, data, sites)
    }

    /// On data fedsim generates (`kind = "linear"`, noise 1), target `y`.
    pub fn generated(name: &str, rows: usize, cols: usize, sites: usize) -> Ols {
        let data = format!(
            "generate = {{ kind = \"linear\", rows = {rows}, cols = {cols}, noise = 1.0 }}\ntarget = \"y\"\n"
        );
        Ols::with_data(name, data, sites)
    }

    fn with_data(name: &str, data: String, sites: usize) -> Ols {
        Ols {
            name: name.to_string(),
            seed: None,
            data,
            sites,
            partition: String::new(),
            extra: String::new(),
        }
    }

    pub fn seed(mut self, seed: u64) -> Ols {
        self.seed = Some(seed);
        self
    }

    /// More `[partition]` keys (a strategy, its sizes or alpha).
    pub fn partition(mut self, lines: &str) -> Ols {
        self.partition.push_str(lines);
        self.partition.push('\n');
        self
    }

    /// TOML appended after `[algorithm]`.
    pub fn extra(mut self, toml: &str) -> Ols {
        self.extra.push_str(toml);
        self
    }

    /// `[compare] reference` on the shipped statsmodels numbers (`test_data/reference.jsonl`).
    pub fn reference(self) -> Ols {
        let line = format!(
            "[compare]\nreference = \"{}\"\n",
            test_data("reference.jsonl").display()
        );
        self.extra(&line)
    }

    pub fn toml(&self) -> String {
        let seed = self
            .seed
            .map(|s| format!("seed = {s}\n"))
            .unwrap_or_default();
        format!(
            "[scenario]\nname = \"{}\"\n{seed}[data]\n{}[partition]\nkind = \"horizontal\"\nsites = {}\n{}[algorithm]\nkind = \"linear_regression\"\n{}",
            self.name, self.data, self.sites, self.partition, self.extra
        )
    }

    /// The scenario written into `dir` as `FILE.toml`; its path.
    pub fn write(&self, dir: &Path, file: &str) -> PathBuf {
        scenario(dir, file, &self.toml())
    }
}

/// Where `.ci/run` installs flwr, if it is there (else says SKIPPED).
pub fn flwr_installed() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from)?;
    let venv = home.join(".cache/fedsim-flwr/bin");
    if venv.join("flower-superlink").is_file() {
        return Some(venv);
    }
    eprintln!("SKIPPED: flwr not installed in ~/.cache/fedsim-flwr (.ci/run installs it)");
    None
}

/// The shipped Flower example with `extra` lines added, its paths made absolute, in `dir`.
pub fn example(dir: &Path, extra: &str) -> PathBuf {
    let text = std::fs::read_to_string(root().join("resources/config_flower.toml")).unwrap();
    let text = text
        .replace(
            "\"../test_data/",
            &format!("\"{}/", root().join("test_data").display()),
        )
        .replace(
            "app = \"flower/logreg\"",
            &format!(
                "app = \"{}\"",
                root().join("resources/flower/logreg").display()
            ),
        );
    let path = dir.join("flower.toml");
    std::fs::write(&path, format!("{text}\n{extra}")).unwrap();
    path
}
