//! `[gui]`: the portal the coordinator serves, and the browsers that may drive it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{check_address, default_address, Locate, Scenario, ScenarioError};

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
    #[serde(default = "default_address")]
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
            portal: default_address(),
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

/// A portal address, positive timeouts.
pub(super) fn validate(s: &Scenario, at: &Locate) -> Result<(), ScenarioError> {
    let g = &s.gui;
    check_address(at, "gui.portal", &g.portal)?;
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
