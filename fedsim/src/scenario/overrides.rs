//! `--set KEY=VALUE`: change one key of a scenario from the command line (sweeps set the number
//! of sites, the split, secure aggregation... without copies of the file). The value is read as
//! TOML (`5`, `true`, `[0.5, 0.5]`), or taken as a string when it is not TOML (`dirichlet`).
//! Errors about a key that was set name the `--set`, with the same "did you mean" a file gets.

use std::path::Path;

use super::{locate, Scenario, ScenarioError};

/// One `KEY=VALUE` from the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Set {
    pub key: String,
    pub value: toml::Value,
    /// As typed, for messages.
    pub raw: String,
}

impl Set {
    pub fn parse(raw: &str) -> Result<Set, ScenarioError> {
        let bad = |message: &str| ScenarioError::Set {
            set: raw.to_string(),
            key: String::new(),
            message: message.to_string(),
        };
        let (key, value) = raw
            .split_once('=')
            .ok_or_else(|| bad("expected KEY=VALUE, e.g. partition.sites=5"))?;
        let key = key.trim();
        if key.is_empty() || key.split('.').any(str::is_empty) {
            return Err(bad(
                "expected a dotted scenario key before `=`, e.g. partition.sites",
            ));
        }
        let value = value.trim();
        let value = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.to_string()));
        Ok(Set {
            key: key.to_string(),
            value,
            raw: raw.to_string(),
        })
    }

    /// Whether an error about `key` is about this setting (the key itself, inside it, or a
    /// section it belongs to that the setting could have made invalid).
    fn concerns(&self, key: &str) -> bool {
        key == self.key
            || key.starts_with(&format!("{}.", self.key))
            || self.key.starts_with(&format!("{key}."))
    }
}

/// Put `value` at the dotted `key` of `table` (numbers index arrays: `links.0.delay_ms`).
fn put(table: &mut toml::Table, set: &Set) -> Result<(), ScenarioError> {
    let fail = |message: String| ScenarioError::Set {
        set: set.raw.clone(),
        key: set.key.clone(),
        message,
    };
    let parts: Vec<&str> = set.key.split('.').collect();
    let mut node = table;
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        if last {
            node.insert(part.to_string(), set.value.clone());
            return Ok(());
        }
        let next = node
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = match next {
            toml::Value::Table(t) => t,
            toml::Value::Array(items) => {
                let idx: usize = parts[i + 1].parse().map_err(|_| {
                    fail(format!(
                        "`{part}` is a list: give an index, e.g. {part}.0.…"
                    ))
                })?;
                let len = items.len();
                let item = items.get_mut(idx).ok_or_else(|| {
                    fail(format!(
                        "`{part}` has {len} entries; there is no {part}.{idx}"
                    ))
                })?;
                if i + 2 == parts.len() {
                    *item = set.value.clone();
                    return Ok(());
                }
                match item {
                    toml::Value::Table(t) => {
                        // Skip the index part.
                        return put_rest(t, &parts[i + 2..], set);
                    }
                    _ => return Err(fail(format!("{part}.{idx} is not a table"))),
                }
            }
            other => {
                return Err(fail(format!(
                    "`{}` is a {} in the scenario, not a section",
                    parts[..=i].join("."),
                    other.type_str()
                )))
            }
        };
    }
    Ok(())
}

/// The setting with each list entry it names by its `name` (`analysis.survival.ties`) named
/// by its index instead (`analysis.2.ties`).
fn by_index(table: &toml::Table, set: &Set) -> Result<Set, ScenarioError> {
    let parts: Vec<&str> = set.key.split('.').collect();
    let mut out: Vec<String> = Vec::with_capacity(parts.len());
    let mut node = Some(table);
    let mut i = 0;
    while i < parts.len() {
        let part = parts[i];
        out.push(part.to_string());
        match node.and_then(|t| t.get(part)) {
            Some(toml::Value::Array(items)) if i + 1 < parts.len() => {
                let next = parts[i + 1];
                let idx = match next.parse::<usize>() {
                    Ok(idx) => idx,
                    Err(_) => {
                        let names: Vec<&str> = items
                            .iter()
                            .filter_map(|it| it.get("name").and_then(toml::Value::as_str))
                            .collect();
                        names.iter().position(|n| *n == next).ok_or_else(|| {
                            ScenarioError::Set {
                                set: set.raw.clone(),
                                key: set.key.clone(),
                                message: if names.is_empty() {
                                    format!("`{part}` is a list without names: give an index, e.g. {part}.0.…")
                                } else {
                                    format!(
                                        "no entry of `{part}` is named {next:?}; the names are: {}",
                                        names.join(", ")
                                    )
                                },
                            }
                        })?
                    }
                };
                out.push(idx.to_string());
                node = items.get(idx).and_then(toml::Value::as_table);
                i += 2;
            }
            Some(toml::Value::Table(t)) => {
                node = Some(t);
                i += 1;
            }
            _ => {
                node = None;
                i += 1;
            }
        }
    }
    Ok(Set {
        key: out.join("."),
        value: set.value.clone(),
        raw: set.raw.clone(),
    })
}

fn put_rest(table: &mut toml::Table, rest: &[&str], set: &Set) -> Result<(), ScenarioError> {
    let sub = Set {
        key: rest.join("."),
        value: set.value.clone(),
        raw: set.raw.clone(),
    };
    put(table, &sub)
}

/// A fleet file (`--fleet FILE`): where the sites run, kept apart from what they compute, so one
/// scenario runs on local sites, on a test fleet or on VMs without copies. It may hold `[fleet]`,
/// `[[sites]]` and `[vm]`, which replace the scenario's; its paths are relative to its own folder.
pub struct FleetFile {
    pub path: std::path::PathBuf,
    pub text: String,
}

/// The sections a fleet file may hold: where the sites run, not what they compute.
pub const FLEET_SECTIONS: [&str; 3] = ["fleet", "sites", "vm"];

/// The path keys of the fleet sections, relative to the file they are written in.
const FLEET_PATHS: [&str; 3] = ["key", "known_hosts", "env"];

impl FleetFile {
    pub fn load(path: &Path) -> Result<FleetFile, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(FleetFile {
            path: path.to_path_buf(),
            text,
        })
    }

    /// Its sections, checked, with every path made absolute against its own folder (the
    /// scenario's folder must not anchor them).
    fn sections(&self) -> Result<toml::Table, ScenarioError> {
        let mut table: toml::Table =
            toml::from_str(&self.text).map_err(|e| locate::syntax(&self.text, &self.path, &e))?;
        if let Some(other) = table.keys().find(|k| !FLEET_SECTIONS.contains(&k.as_str())) {
            return Err(locate::relocate(
                &self.text,
                &self.path,
                other,
                format!(
                    "a fleet file holds only [fleet], [[sites]] and [vm] (where the sites run); `{other}` belongs in the scenario"
                ),
            ));
        }
        let base =
            std::path::absolute(self.path.parent().unwrap_or(Path::new("."))).unwrap_or_default();
        let absolute = |v: &mut toml::Value| {
            if let toml::Value::String(p) = v {
                *p = super::normalize(&base.join(&*p)).display().to_string();
            }
        };
        if let Some(toml::Value::Array(sites)) = table.get_mut("sites") {
            for site in sites.iter_mut().filter_map(toml::Value::as_table_mut) {
                for key in FLEET_PATHS {
                    site.get_mut(key).map(absolute);
                }
            }
        }
        if let Some(fleet) = table.get_mut("fleet").and_then(toml::Value::as_table_mut) {
            fleet.get_mut("vagrant_dir").map(absolute);
        }
        Ok(table)
    }

    fn concerns(key: &str) -> bool {
        let section = key.split('.').next().unwrap_or("");
        FLEET_SECTIONS.contains(&section)
    }
}

/// Parse and validate `text`, its fleet sections replaced by `fleet`'s, then the settings applied
/// in order. An error names the layer it comes from: a `--set`, the fleet file or the scenario.
pub fn parse_layered(
    text: &str,
    path: &Path,
    fleet: Option<&FleetFile>,
    sets: &[Set],
) -> Result<Scenario, ScenarioError> {
    if sets.is_empty() && fleet.is_none() {
        return Scenario::parse(text, path);
    }
    let mut table: toml::Table =
        toml::from_str(text).map_err(|e| locate::syntax(text, path, &e))?;
    if let Some(f) = fleet {
        for section in FLEET_SECTIONS {
            table.remove(section);
        }
        table.extend(f.sections()?);
    }
    // `analysis.NAME.key` is `analysis.N.key`: errors come back about the numbered key.
    let sets: Vec<Set> = sets
        .iter()
        .map(|s| by_index(&table, s))
        .collect::<Result<_, _>>()?;
    let sets = &sets[..];
    for s in sets {
        put(&mut table, s)?;
    }
    let merged = toml::to_string(&table).map_err(|e| ScenarioError::Set {
        set: sets.first().map(|s| s.raw.clone()).unwrap_or_default(),
        key: String::new(),
        message: e.to_string(),
    })?;
    match Scenario::parse(&merged, path) {
        Ok(s) => Ok(s),
        Err(ScenarioError::Invalid { key, message, .. }) => {
            let message = match fleet {
                Some(f) if message.contains("[[sites]]") && !FleetFile::concerns(&key) => {
                    format!("{message} (the [[sites]] come from {})", f.path.display())
                }
                _ => message,
            };
            match sets.iter().rev().find(|s| s.concerns(&key)) {
                Some(s) => Err(ScenarioError::Set {
                    set: s.raw.clone(),
                    key,
                    message,
                }),
                None => match fleet {
                    Some(f) if FleetFile::concerns(&key) => {
                        Err(locate::relocate(&f.text, &f.path, &key, message))
                    }
                    // About a key no other layer touched: point into the file.
                    _ => Err(locate::relocate(text, path, &key, message)),
                },
            }
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[scenario]\nname = \"t\"\n[data]\npath = \"x.csv\"\ntarget = \"y\"\n[partition]\nkind = \"horizontal\"\nsites = 3\n[algorithm]\nkind = \"linear_regression\"\n";

    fn with(sets: &[&str]) -> Result<Scenario, ScenarioError> {
        let sets: Vec<Set> = sets.iter().map(|s| Set::parse(s).unwrap()).collect();
        parse_layered(BASE, Path::new("s.toml"), None, &sets)
    }

    #[test]
    fn values_are_toml_or_strings() {
        let s = with(&[
            "partition.sites=5",
            "partition.strategy=dirichlet",
            "partition.alpha=0.5",
            "federation.secure_aggregation=true",
        ])
        .unwrap();
        assert_eq!(s.partition.sites, 5);
        assert_eq!(s.partition.alpha, Some(0.5));
        assert!(s.federation.secure_aggregation);
    }

    const TWO: &str = "[scenario]\nname = \"t\"\n[data]\npath = \"x.csv\"\ntarget = \"y\"\n[partition]\nkind = \"horizontal\"\nsites = 3\n[[analysis]]\nname = \"fit\"\nkind = \"glm\"\nfamily = \"gaussian\"\n[[analysis]]\nname = \"table\"\nkind = \"crosstab\"\nrows = \"a\"\ncols = \"b\"\n";

    /// `--set analysis.NAME.key` reaches the entry of that name; an unknown name lists the
    /// names, and an error about the entry names the setting.
    #[test]
    fn an_analysis_is_set_by_its_name() {
        let set =
            |raw: &str| parse_layered(TWO, Path::new("s.toml"), None, &[Set::parse(raw).unwrap()]);
        let s = set("analysis.fit.family=poisson").unwrap();
        assert_eq!(s.analysis[0].family, Some(crate::scenario::Family::Poisson));
        assert_eq!(s.algorithm.family, Some(crate::scenario::Family::Poisson));
        assert_eq!(s.analysis[1].kind, crate::scenario::AlgorithmKind::Crosstab);
        let e = set("analysis.fitt.family=poisson").unwrap_err().to_string();
        assert!(
            e.contains("no entry of `analysis` is named \"fitt\"") && e.contains("fit, table"),
            "{e}"
        );
        let e = set("analysis.fit.link=logit").unwrap_err().to_string();
        assert!(
            e.starts_with("--set analysis.fit.link=logit: analysis.0.link:")
                && e.contains("gaussian"),
            "{e}"
        );
    }

    #[test]
    fn a_bad_key_or_value_names_the_set_and_suggests() {
        let e = with(&["partition.sitez=5"]).unwrap_err().to_string();
        assert!(
            e.starts_with("--set partition.sitez=5: partition.sitez: unknown field `sitez`"),
            "{e}"
        );
        assert!(e.contains("(did you mean `sites`?)"), "{e}");
        let e = with(&["partition.sites=many"]).unwrap_err().to_string();
        assert!(
            e.contains("--set partition.sites=many") && e.contains("expected"),
            "{e}"
        );
        let e = with(&["partition.sites=0"]).unwrap_err().to_string();
        assert!(
            e.contains("--set partition.sites=0") && e.contains("at least 1"),
            "{e}"
        );
        assert!(Set::parse("nokey").is_err());
        // A setting that leaves another key wrong: that key is named in the file.
        let e = with(&["partition.strategy=dirichlet"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("alpha"), "{e}");
    }
}
