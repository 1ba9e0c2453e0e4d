//! Error locations: byte spans and dotted key paths become `file:line:column: key: message`, and
//! serde's wording becomes a scenario's (keys, sections, numbers, "did you mean").

use std::ops::Range;
use std::path::Path;

use toml::de::{DeTable, DeValue};

use super::ScenarioError;

/// Reports a semantic error about the value at a dotted key path (`partition.sizes`,
/// `sites.0.name`), located in the file by the parsed tree.
pub type Locate<'a> = dyn Fn(&str, String) -> ScenarioError + 'a;

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
        if e.message().trim() == "duplicate key" {
            if let Some(span) = e.span() {
                if let Some((key, message)) = duplicate(self.text, span.clone()) {
                    return self.error(Some(span), &key, message);
                }
            }
        }
        let message = plain_words(e.message().trim(), key);
        let message = add_suggestion(&message);
        self.error(e.span(), key, message)
    }

    /// A semantic error about the value at `key` (dotted path), located via the parsed tree.
    /// A key the file does not have (a default) is located at its nearest written parent.
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

/// toml says only "duplicate key": name the key (as a dotted path) and the line that first
/// defined it. A plain scan of the lines before it suffices: a key is a duplicate only under the
/// same table header.
fn duplicate(text: &str, span: Range<usize>) -> Option<(String, String)> {
    let name = text.get(span.clone())?.trim().trim_matches('"').to_string();
    let line_start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[span.start..]
        .find('\n')
        .map_or(text.len(), |i| span.start + i);
    let line = text[line_start..line_end].trim();
    let header = |l: &str| {
        let h = l.trim_start_matches('[').split(']').next().unwrap_or("");
        h.trim().to_string()
    };
    let key_of = |l: &str| {
        let k = l.split('=').next().unwrap_or("");
        k.trim().trim_matches('"').to_string()
    };
    let before: Vec<&str> = text[..line_start].lines().map(str::trim).collect();
    let is_header = line.starts_with('[');
    // The table the error's key sits in: the last header before its line.
    let current = before
        .iter()
        .rev()
        .find(|l| l.starts_with('['))
        .map(|l| header(l))
        .unwrap_or_default();
    let mut table = String::new();
    let mut first = None;
    for (i, l) in before.iter().enumerate() {
        if l.starts_with('[') {
            table = header(l);
            if is_header && table == header(line) {
                first = Some(i + 1);
                break;
            }
        } else if !is_header && !l.starts_with('#') && table == current && key_of(l) == name {
            first = Some(i + 1);
            break;
        }
    }
    let (key, what) = if is_header {
        let h = header(line);
        (h.clone(), format!("[{h}]"))
    } else if current.is_empty() {
        (name.clone(), format!("`{name}`"))
    } else {
        (
            format!("{current}.{name}"),
            format!("`{name}` in [{current}]"),
        )
    };
    let mut message = match first {
        Some(n) => format!("duplicate key: {what} is already defined at line {n}"),
        None => format!("duplicate key: {what} is defined twice"),
    };
    if ["fleet", "sites", "vm"].contains(&key.split('.').next().unwrap_or("")) {
        message.push_str(
            "; to run a scenario on the hosts of a fleet file (such as the fleet.toml of provision/testfleet.sh), give it with --fleet FILE instead of appending it",
        );
    }
    Some((key, message))
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

/// Locate an error about `key` in `text` (the scenario as its file has it): for errors found on
/// a changed copy of the document, so they still point into the file people edit.
pub(super) fn relocate(text: &str, path: &Path, key: &str, message: String) -> ScenarioError {
    let locator = Locator { text, path };
    match DeTable::parse(text) {
        Ok(tree) => locator.at(&DeValue::Table(tree.into_inner()), key, message),
        Err(e) => locator.toml_error(&e, ""),
    }
}

/// A syntax error in `text`, located.
pub(super) fn syntax(text: &str, path: &Path, e: &toml::de::Error) -> ScenarioError {
    Locator { text, path }.toml_error(e, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestion_picks_nearest_key() {
        let m =
            add_suggestion("unknown field `sitez`, expected one of `kind`, `sites`, `strategy`");
        assert!(m.ends_with("(did you mean `sites`?)"), "{m}");
        let m = add_suggestion("unknown field `zzzzzz`, expected `kind` or `sites`");
        assert!(!m.contains("did you mean"), "{m}");
    }

    #[test]
    fn serde_words_become_scenario_words() {
        assert_eq!(
            plain_words("missing field `data`", ""),
            "missing section [data]"
        );
        assert_eq!(
            plain_words("missing field `kind`", "partition"),
            "missing key `kind`"
        );
        assert_eq!(
            plain_words(
                "invalid type: string \"x\", expected usize",
                "partition.sites"
            ),
            "invalid type: string \"x\", expected a whole number"
        );
    }
}
