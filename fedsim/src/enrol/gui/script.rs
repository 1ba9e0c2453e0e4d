//! Step scripts: what a person clicks on a platform's pages, as data. A script names its phases;
//! every browser finishes a phase before any begins the next (the coordinator's tokens exist
//! before sites join; everyone has joined before the start). Values come from `${VAR}`: the
//! account's own `.env`, what another account sent it (a `read` step), or fedsim's built-ins.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::scenario::{parse_located, Locate, ScenarioError};

/// The script for fedsim's own portal, built in so that `[gui] enabled = true` needs nothing else.
pub const PORTAL_SCRIPT: &str = include_str!("../../../../resources/gui/portal.toml");
/// Its name in errors and metrics.
pub const PORTAL_SCRIPT_NAME: &str = "resources/gui/portal.toml";

/// Variables fedsim provides to every account.
pub const BUILTINS: [&str; 3] = ["PORTAL_URL", "ACCOUNT", "PROJECT"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// The platform the pages belong to.
    pub platform: String,
    /// Whether fedsim's tests run this script end to end. A script marked false is a starting
    /// point whose selectors have not been checked against the live pages.
    #[serde(default = "yes")]
    pub exercised: bool,
    #[serde(default)]
    pub description: Option<String>,
    /// Phase names, in the order they run.
    pub phases: Vec<String>,
    #[serde(rename = "step")]
    pub steps: Vec<Step>,
    /// Where the script came from (not a key).
    #[serde(skip)]
    pub source: PathBuf,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Who {
    #[default]
    Everyone,
    Coordinator,
    Sites,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Open `url`.
    Goto,
    /// Type `value` into the field at `selector` (cleared first).
    Fill,
    /// Click the element at `selector`.
    Click,
    /// Wait until `selector` is present (and holds `text`, if given).
    WaitFor,
    /// Read the text of every element at `selector` into variable `into`; with `key_attribute`,
    /// each value is sent to the account that attribute names (a join token to its site); with
    /// `in_order`, the values go one per site in site order; otherwise the first goes to everyone.
    Read,
    /// Click the link at `selector` and keep the downloaded file as `save_as`.
    Download,
    /// Save a picture of the page as `name`.png.
    Screenshot,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Goto => "goto",
            Action::Fill => "fill",
            Action::Click => "click",
            Action::WaitFor => "wait_for",
            Action::Read => "read",
            Action::Download => "download",
            Action::Screenshot => "screenshot",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub phase: String,
    #[serde(default)]
    pub who: Who,
    #[serde(rename = "do")]
    pub action: Action,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub selector: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    /// While waiting: if this selector appears, the step fails at once with that element's text
    /// (the page's own error message).
    #[serde(default)]
    pub fail_on: Option<String>,
    #[serde(default)]
    pub into: Option<String>,
    #[serde(default)]
    pub key_attribute: Option<String>,
    /// read: hand the values out one per site, in site order (tokens not tied to a site).
    #[serde(default)]
    pub in_order: Option<bool>,
    #[serde(default)]
    pub save_as: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub timeout_secs: Option<f64>,
}

impl Step {
    /// A short description for metrics and errors: the action and its target, never a value.
    pub fn describe(&self) -> String {
        let target = match self.action {
            Action::Goto => self.url.clone(),
            Action::Screenshot => self.name.clone(),
            _ => self.selector.clone(),
        };
        match target {
            Some(t) => format!("{} {t}", self.action.as_str()),
            None => self.action.as_str().to_string(),
        }
    }

    pub fn applies_to(&self, coordinator: bool) -> bool {
        match self.who {
            Who::Everyone => true,
            Who::Coordinator => coordinator,
            Who::Sites => !coordinator,
        }
    }
}

impl Script {
    /// Load a script file, or the built-in portal script for `None`.
    pub fn load(path: Option<&Path>) -> Result<Script, ScenarioError> {
        match path {
            None => Script::parse(PORTAL_SCRIPT, Path::new(PORTAL_SCRIPT_NAME)),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ScenarioError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                Script::parse(&text, p)
            }
        }
    }

    pub fn parse(text: &str, path: &Path) -> Result<Script, ScenarioError> {
        let mut script: Script = parse_located(text, path, validate)?;
        script.source = path.to_path_buf();
        Ok(script)
    }
}

/// Which keys each action needs, and which it may have besides `phase`, `who`, `do`, `timeout_secs`.
fn keys(action: Action) -> (&'static [&'static str], &'static [&'static str]) {
    match action {
        Action::Goto => (&["url"], &[]),
        Action::Fill => (&["selector", "value"], &[]),
        Action::Click => (&["selector"], &["fail_on"]),
        Action::WaitFor => (&["selector"], &["text", "fail_on"]),
        Action::Read => (&["selector", "into"], &["key_attribute", "in_order"]),
        Action::Download => (&["selector", "save_as"], &[]),
        Action::Screenshot => (&["name"], &[]),
    }
}

fn validate(s: &Script, at: &Locate) -> Result<(), ScenarioError> {
    if s.phases.is_empty() {
        return Err(at("phases", "expected at least one phase name".into()));
    }
    for (i, p) in s.phases.iter().enumerate() {
        if s.phases[..i].contains(p) {
            return Err(at(
                &format!("phases.{i}"),
                format!("phase {p:?} is listed twice"),
            ));
        }
    }
    if s.steps.is_empty() {
        return Err(at("", "expected at least one [[step]]".into()));
    }
    for (i, step) in s.steps.iter().enumerate() {
        let key = |k: &str| format!("step.{i}.{k}");
        if !s.phases.contains(&step.phase) {
            return Err(at(
                &key("phase"),
                format!(
                    "no phase {:?}; phases are {}",
                    step.phase,
                    s.phases.join(", ")
                ),
            ));
        }
        let present = [
            ("url", &step.url),
            ("selector", &step.selector),
            ("value", &step.value),
            ("text", &step.text),
            ("fail_on", &step.fail_on),
            ("into", &step.into),
            ("key_attribute", &step.key_attribute),
            ("save_as", &step.save_as),
            ("name", &step.name),
            ("in_order", &step.in_order.map(|b| b.to_string())),
        ];
        let (needs, may) = keys(step.action);
        let act = step.action.as_str();
        for (k, v) in present {
            match (v, needs.contains(&k) || may.contains(&k)) {
                (None, _) if needs.contains(&k) => {
                    return Err(at(
                        &format!("step.{i}"),
                        format!("missing key `{k}`: a {act:?} step needs it"),
                    ))
                }
                (Some(_), false) => {
                    return Err(at(
                        &key(k),
                        format!("`{k}` does not apply to a {act:?} step"),
                    ))
                }
                (Some(v), true) => check_template(v).map_err(|m| at(&key(k), m))?,
                _ => {}
            }
        }
        if let Some(t) = step.timeout_secs {
            if !(t.is_finite() && t > 0.0) {
                return Err(at(
                    &key("timeout_secs"),
                    format!("expected a number of seconds > 0, found {t}"),
                ));
            }
        }
        for (k, v) in [("save_as", &step.save_as), ("name", &step.name)] {
            if let Some(v) = v {
                if v.is_empty() || v.contains('/') || v.contains("..") || v.contains("${") {
                    return Err(at(
                        &key(k),
                        format!("expected a plain file name, found {v:?}"),
                    ));
                }
            }
        }
        if step.key_attribute.is_some() && step.in_order == Some(true) {
            return Err(at(
                &key("in_order"),
                "give `key_attribute` or `in_order`, not both".into(),
            ));
        }
        if let Some(v) = &step.into {
            if !is_var_name(v) {
                return Err(at(
                    &key("into"),
                    format!("expected a variable name of capitals, digits and _, found {v:?}"),
                ));
            }
        }
    }
    Ok(())
}

fn is_var_name(n: &str) -> bool {
    !n.is_empty()
        && n.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// `${NAME}` references must be closed and name a variable.
fn check_template(t: &str) -> Result<(), String> {
    expand(t, |_| Some(String::new())).map(|_| ())
}

/// Replace every `${NAME}` via `lookup`; the error names the variable, never a value.
pub fn expand(t: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = t;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed ${{ in {t:?}"))?;
        let name = &after[..end];
        if !is_var_name(name) {
            return Err(format!(
                "${{{name}}}: expected a variable name of capitals, digits and _"
            ));
        }
        let value = lookup(name).ok_or_else(|| format!("${{{name}}} is not defined"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_scripts_are_valid_and_say_whether_they_are_exercised() {
        let s = Script::load(None).unwrap();
        assert!(s.exercised);
        assert!(s.phases.len() >= 4);
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../resources/gui");
        let fc = Script::load(Some(&root.join("featurecloud.toml"))).unwrap();
        assert_eq!(fc.platform, "FeatureCloud");
        assert!(!fc.exercised, "no test drives the live FeatureCloud site");
        assert_eq!(fc.phases, ["login", "create", "join"]);
        let own = Script::load(Some(&root.join("portal.toml"))).unwrap();
        assert_eq!(own.steps.len(), s.steps.len());
    }

    #[test]
    fn expand_substitutes_and_names_what_is_missing() {
        let look = |n: &str| (n == "A").then(|| "1".to_string());
        assert_eq!(expand("x${A}y${A}", look).unwrap(), "x1y1");
        assert_eq!(expand("${B}", look).unwrap_err(), "${B} is not defined");
        assert!(expand("${A", look).unwrap_err().contains("unclosed"));
        assert!(expand("${a}", look).unwrap_err().contains("variable name"));
    }

    #[test]
    fn bad_steps_are_located() {
        let text = "platform = \"p\"\nphases = [\"a\"]\n\n[[step]]\nphase = \"a\"\ndo = \"click\"\nurl = \"x\"\n";
        let e = Script::parse(text, Path::new("s.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("s.toml:7:"), "{e}");
        assert!(
            e.contains("`url` does not apply to a \"click\" step"),
            "{e}"
        );
        let text = "platform = \"p\"\nphases = [\"a\"]\n\n[[step]]\nphase = \"b\"\ndo = \"goto\"\nurl = \"x\"\n";
        let e = Script::parse(text, Path::new("s.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("s.toml:5:") && e.contains("no phase \"b\""),
            "{e}"
        );
        let text = "platform = \"p\"\nphases = [\"a\"]\n\n[[step]]\nphase = \"a\"\ndo = \"fill\"\nselector = \"#x\"\n";
        let e = Script::parse(text, Path::new("s.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing key `value`"), "{e}");
        let text = "platform = \"p\"\nphases = [\"a\"]\n\n[[step]]\nphase = \"a\"\ndo = \"clik\"\n";
        let e = Script::parse(text, Path::new("s.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("did you mean `click`"), "{e}");
    }
}
