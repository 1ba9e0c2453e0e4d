//! `[clock]`: whether the run waits as the study would (`real`), or runs at full speed and
//! projects the study's duration on a simulated clock (`simulated`), from a start date.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Locate, Scenario, ScenarioError};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClockMode {
    /// Links are applied as the bytes flow (relays, netem); nothing else is modelled.
    #[default]
    Real,
    /// Nothing waits: links, availability, approvals and slow sites are applied to a simulated
    /// timeline built from what the run measured.
    Simulated,
}

/// The study's start when `[clock] start` is not given: a Monday morning, so that office hours
/// play out the same in every run.
pub const DEFAULT_START: &str = "2027-01-04T08:00:00Z";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockSpec {
    #[serde(default)]
    pub mode: ClockMode,
    /// When the study starts on the simulated clock (RFC 3339, e.g. `2027-01-04T08:00:00+01:00`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
}

impl ClockSpec {
    pub fn is_unset(&self) -> bool {
        *self == ClockSpec::default()
    }

    pub fn simulated(&self) -> bool {
        self.mode == ClockMode::Simulated
    }

    /// The simulated study's start.
    pub fn start(&self) -> DateTime<Utc> {
        parse_instant(self.start.as_deref().unwrap_or(DEFAULT_START)).expect("validated")
    }
}

/// An instant as RFC 3339 (`2027-01-04T08:00:00+01:00` or `...Z`).
pub fn parse_instant(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            format!("expected a date and time with its offset, like \"2027-01-04T08:00:00+01:00\", found {text:?} ({e})")
        })
}

pub(super) fn validate(s: &Scenario, at: &Locate) -> Result<(), ScenarioError> {
    if let Some(start) = &s.clock.start {
        parse_instant(start).map_err(|e| at("clock.start", e))?;
    }
    Ok(())
}
