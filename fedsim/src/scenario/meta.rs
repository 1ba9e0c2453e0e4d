//! `[scenario]`: the name that labels the run directory, and the seed.

use serde::{Deserialize, Serialize};

use super::{Locate, Scenario, ScenarioError};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    pub name: String,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub description: Option<String>,
}

/// The name becomes a directory name here and on every site, so it keeps to a safe alphabet.
pub(super) fn validate(s: &Scenario, at: &Locate) -> Result<(), ScenarioError> {
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
    Ok(())
}
