//! `summary.json`: what a run promises. Written last and atomically, read back by the report, the
//! JUnit writer and `fedsim report`. The status is decided here, in one place, from what the
//! stages handed over.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::algorithms::Estimates;
use crate::compare::Comparison;
pub use crate::data::outcome::Outcome;
use crate::federation::coordinator::LostSite;
use crate::fleet::SiteExit;

/// How a run ended. Every value is a promise: `succeeded` means the federated result matched
/// (baseline and reference) with every site to the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Succeeded,
    /// Completed and matched, but without the sites in `lost_sites` (on_dropout = "continue").
    Degraded,
    Failed,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Succeeded => "succeeded",
            Status::Degraded => "degraded",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SiteSummary {
    pub name: String,
    pub rows: usize,
    pub data_sha256: String,
    /// Where the site keeps its bundle (a directory, or user@host:port/~/path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The network conditions the site is behind (`[[links]]`), in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Incomplete rows the site left out (`missing = "drop"`); `rows` counts them too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped_rows: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<SiteExit>,
    /// How the target is distributed over this site's complete rows, as the simulation split
    /// them (no site sends this): what makes a Dirichlet skew visible in the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
}

/// Why a run did not succeed: the message, the site at fault and the phase it happened in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FailureInfo {
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}

/// The federated result held against an independent reference file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReferenceCheck {
    pub source: PathBuf,
    #[serde(flatten)]
    pub comparison: Comparison,
}

/// `summary.json`. Every field is written, `null` or `[]` when there is nothing, so scripts read a
/// key without first asking whether it exists.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub fedsim_version: String,
    pub scenario: String,
    pub run_id: String,
    pub status: Status,
    #[serde(default)]
    pub error: Option<FailureInfo>,
    pub algorithm: String,
    pub sites: Vec<SiteSummary>,
    #[serde(default)]
    pub results: Option<Estimates>,
    #[serde(default)]
    pub baseline: Option<Estimates>,
    /// Federated against the centralised baseline.
    #[serde(default)]
    pub comparison: Option<Comparison>,
    #[serde(default)]
    pub reference: Option<ReferenceCheck>,
    /// Sites the run went on without (on_dropout = "continue").
    #[serde(default)]
    pub lost_sites: Vec<LostSite>,
    /// What a person should know that does not change the verdict (e.g. privacy risks).
    #[serde(default)]
    pub warnings: Vec<Warning>,
}

/// A finding that does not change the status.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Warning {
    /// `privacy` (a level only one site holds), ...
    pub kind: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
}

/// What the stages handed over, from which the status follows.
#[derive(Default)]
pub struct Findings {
    pub results: Option<Estimates>,
    pub baseline: Option<Estimates>,
    pub comparison: Option<Comparison>,
    pub reference: Option<ReferenceCheck>,
    pub lost_sites: Vec<LostSite>,
    pub warnings: Vec<Warning>,
    /// The stage that stopped the run, if one did.
    pub stopped: Option<Stopped>,
}

/// A stage that ended the run early.
#[derive(Debug, Clone)]
pub struct Stopped {
    pub cancelled: bool,
    pub failure: FailureInfo,
}

impl Summary {
    /// Decide the status: cancelled or failed if a stage stopped the run; failed if a check
    /// failed; degraded if a site was lost; else succeeded.
    pub fn decide(head: SummaryHead, sites: Vec<SiteSummary>, f: Findings) -> Summary {
        let (status, error) = match &f.stopped {
            Some(s) => (
                if s.cancelled {
                    Status::Cancelled
                } else {
                    Status::Failed
                },
                Some(s.failure.clone()),
            ),
            None => verdict(&f),
        };
        Summary {
            fedsim_version: env!("CARGO_PKG_VERSION").to_string(),
            scenario: head.scenario,
            run_id: head.run_id,
            status,
            error,
            algorithm: head.algorithm,
            sites,
            results: f.results,
            baseline: f.baseline,
            comparison: f.comparison,
            reference: f.reference,
            lost_sites: f.lost_sites,
            warnings: f.warnings,
        }
    }
}

/// Who the summary is about.
pub struct SummaryHead {
    pub scenario: String,
    pub run_id: String,
    pub algorithm: String,
}

/// The verdict of a run that went to the end.
fn verdict(f: &Findings) -> (Status, Option<FailureInfo>) {
    let failed = [
        f.comparison.as_ref().map(|c| ("centralised baseline", c)),
        f.reference.as_ref().map(|r| ("reference", &r.comparison)),
    ]
    .into_iter()
    .flatten()
    .find(|(_, c)| !c.passed);
    if let Some((what, c)) = failed {
        return (
            Status::Failed,
            Some(FailureInfo {
                message: format!("federated result differs from the {what}: {}", c.describe()),
                site: None,
                phase: Some("compare".into()),
            }),
        );
    }
    if f.comparison.is_none() {
        return (
            Status::Failed,
            Some(FailureInfo {
                message: "the run ended without a comparison".into(),
                site: None,
                phase: Some("compare".into()),
            }),
        );
    }
    if f.lost_sites.is_empty() {
        return (Status::Succeeded, None);
    }
    let names: Vec<&str> = f.lost_sites.iter().map(|l| l.site.as_str()).collect();
    let detail: Vec<String> = f
        .lost_sites
        .iter()
        .map(|l| format!("{} in round {}: {}", l.site, l.round, l.cause))
        .collect();
    (
        Status::Degraded,
        Some(FailureInfo {
            message: format!(
                "completed without {} (lost: {})",
                names.join(", "),
                detail.join("; ")
            ),
            site: names.first().map(|s| s.to_string()),
            phase: Some("federate".into()),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{compare, Against};

    fn head() -> SummaryHead {
        SummaryHead {
            scenario: "s".into(),
            run_id: "r".into(),
            algorithm: "linear_regression".into(),
        }
    }

    fn matched(off: f64) -> Findings {
        let want = Estimates {
            terms: vec!["a".into()],
            coef: vec![1.0],
            se: vec![0.5],
            ..Default::default()
        };
        let mut got = want.clone();
        got.coef[0] += off;
        Findings {
            comparison: Some(compare(&got, &want, Against::Centralised, 1e-8, None).unwrap()),
            results: Some(got),
            baseline: Some(want),
            ..Default::default()
        }
    }

    #[test]
    fn status_follows_the_findings() {
        assert_eq!(
            Summary::decide(head(), vec![], matched(0.0)).status,
            Status::Succeeded
        );
        let s = Summary::decide(head(), vec![], matched(1e-3));
        assert_eq!(s.status, Status::Failed);
        assert!(s.error.unwrap().message.contains("coef[a]"));
        let mut lost = matched(0.0);
        lost.lost_sites.push(LostSite {
            site: "site-2".into(),
            round: 1,
            cause: "killed".into(),
        });
        let s = Summary::decide(head(), vec![], lost);
        assert_eq!(
            (s.status, s.error.unwrap().site.as_deref()),
            (Status::Degraded, Some("site-2"))
        );
        let mut stopped = matched(0.0);
        stopped.stopped = Some(Stopped {
            cancelled: true,
            failure: FailureInfo {
                message: "run cancelled".into(),
                site: None,
                phase: Some("baseline".into()),
            },
        });
        let s = Summary::decide(head(), vec![], stopped);
        assert_eq!(s.status, Status::Cancelled);
        // Round trip: the report reads what the run wrote.
        let text = serde_json::to_string(&s).unwrap();
        let back: Summary = serde_json::from_str(&text).unwrap();
        assert_eq!(back.status, Status::Cancelled);
        assert!(text.contains("\"cancelled\""));
    }
}
