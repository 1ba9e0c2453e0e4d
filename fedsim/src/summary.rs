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
    /// A run of `[[analysis]]` entries: each analysis's verdict and numbers, in the order they
    /// ran (`results`, `baseline`, `comparison` and `reference` above are then null, and
    /// `status` is the worst of theirs). Empty for a run of one `[algorithm]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analyses: Vec<AnalysisSummary>,
    /// Under `[privacy.dp]`: what each site spent of its budget, from its release records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub privacy_spent: Vec<crate::releases::Spent>,
    /// The study on the simulated clock (`[clock] mode = "simulated"`); projection.json has its
    /// rounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projection: Option<crate::clock::ProjectionSummary>,
}

/// One analysis of a run of several: its own verdict, as a run of it alone would have it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnalysisSummary {
    pub name: String,
    pub algorithm: String,
    pub status: Status,
    #[serde(default)]
    pub error: Option<FailureInfo>,
    #[serde(default)]
    pub results: Option<Estimates>,
    #[serde(default)]
    pub baseline: Option<Estimates>,
    #[serde(default)]
    pub comparison: Option<Comparison>,
    #[serde(default)]
    pub reference: Option<ReferenceCheck>,
    /// Sites lost before this analysis ended: its result is the others'.
    #[serde(default)]
    pub lost_sites: Vec<LostSite>,
}

/// One section of a run's results: the run itself (one `[algorithm]`, `name` None) or one of
/// its analyses. The report and JUnit render each the same way.
pub struct Section<'a> {
    pub name: Option<&'a str>,
    pub algorithm: &'a str,
    pub status: Status,
    pub error: Option<&'a FailureInfo>,
    pub results: Option<&'a Estimates>,
    pub baseline: Option<&'a Estimates>,
    pub comparison: Option<&'a Comparison>,
    pub reference: Option<&'a ReferenceCheck>,
}

impl Summary {
    /// The largest difference from the centralised baseline over every analysis (None: none
    /// was compared).
    pub fn max_diff(&self) -> Option<f64> {
        self.sections()
            .iter()
            .filter_map(|s| s.comparison.map(|c| c.max_diff))
            .reduce(f64::max)
    }

    /// The largest difference from the reference rows over every analysis held against one.
    pub fn max_reference_diff(&self) -> Option<f64> {
        self.sections()
            .iter()
            .filter_map(|s| s.reference.map(|r| r.comparison.max_diff))
            .reduce(f64::max)
    }

    /// The run's result sections: one per analysis, or the run's own.
    pub fn sections(&self) -> Vec<Section<'_>> {
        if self.analyses.is_empty() {
            return vec![Section {
                name: None,
                algorithm: &self.algorithm,
                status: self.status,
                error: self.error.as_ref(),
                results: self.results.as_ref(),
                baseline: self.baseline.as_ref(),
                comparison: self.comparison.as_ref(),
                reference: self.reference.as_ref(),
            }];
        }
        self.analyses
            .iter()
            .map(|a| Section {
                name: Some(&a.name),
                algorithm: &a.algorithm,
                status: a.status,
                error: a.error.as_ref(),
                results: a.results.as_ref(),
                baseline: a.baseline.as_ref(),
                comparison: a.comparison.as_ref(),
                reference: a.reference.as_ref(),
            })
            .collect()
    }
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
    /// A run of `[[analysis]]` entries: what each analysis found (the fields above then hold
    /// only the run's own: lost sites, warnings, a stop).
    pub analyses: Vec<AnalysisFindings>,
}

/// What one analysis of several found.
#[derive(Default)]
pub struct AnalysisFindings {
    pub name: String,
    pub algorithm: String,
    pub results: Option<Estimates>,
    pub baseline: Option<Estimates>,
    pub comparison: Option<Comparison>,
    pub reference: Option<ReferenceCheck>,
    pub lost_sites: Vec<LostSite>,
    /// The stage that ended this analysis alone, if one did.
    pub stopped: Option<Stopped>,
}

impl AnalysisFindings {
    /// Its verdict, as a run of it alone would have it.
    fn decide(self) -> AnalysisSummary {
        let (status, error) = match &self.stopped {
            Some(s) => (
                if s.cancelled {
                    Status::Cancelled
                } else {
                    Status::Failed
                },
                Some(s.failure.clone()),
            ),
            None => verdict(
                self.comparison.as_ref(),
                self.reference.as_ref(),
                &self.lost_sites,
            ),
        };
        AnalysisSummary {
            name: self.name,
            algorithm: self.algorithm,
            status,
            error,
            results: self.results,
            baseline: self.baseline,
            comparison: self.comparison,
            reference: self.reference,
            lost_sites: self.lost_sites,
        }
    }
}

/// The worse of two statuses: cancelled, then failed, then degraded, then succeeded.
fn worse(a: Status, b: Status) -> Status {
    let rank = |s: Status| match s {
        Status::Succeeded => 0,
        Status::Degraded => 1,
        Status::Failed => 2,
        Status::Cancelled => 3,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
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
    pub fn decide(head: SummaryHead, sites: Vec<SiteSummary>, mut f: Findings) -> Summary {
        let analyses: Vec<AnalysisSummary> = std::mem::take(&mut f.analyses)
            .into_iter()
            .map(AnalysisFindings::decide)
            .collect();
        let (status, error) = match &f.stopped {
            Some(s) => (
                if s.cancelled {
                    Status::Cancelled
                } else {
                    Status::Failed
                },
                Some(s.failure.clone()),
            ),
            None if !analyses.is_empty() => {
                // The worst analysis decides, and its error (named) is the run's.
                let status = analyses
                    .iter()
                    .fold(Status::Succeeded, |s, a| worse(s, a.status));
                let error = analyses
                    .iter()
                    .find(|a| a.status == status && a.error.is_some())
                    .and_then(|a| {
                        a.error.as_ref().map(|e| FailureInfo {
                            message: format!("analysis {}: {}", a.name, e.message),
                            ..e.clone()
                        })
                    });
                (status, error)
            }
            None => verdict(f.comparison.as_ref(), f.reference.as_ref(), &f.lost_sites),
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
            analyses,
            privacy_spent: Vec::new(),
            projection: None,
        }
    }
}

/// Who the summary is about.
pub struct SummaryHead {
    pub scenario: String,
    pub run_id: String,
    pub algorithm: String,
}

/// The verdict of a run (or an analysis) that went to the end.
fn verdict(
    comparison: Option<&Comparison>,
    reference: Option<&ReferenceCheck>,
    lost_sites: &[LostSite],
) -> (Status, Option<FailureInfo>) {
    let failed = [
        comparison.map(|c| ("centralised baseline", c)),
        reference.map(|r| ("reference", &r.comparison)),
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
    if comparison.is_none() {
        return (
            Status::Failed,
            Some(FailureInfo {
                message: "the run ended without a comparison".into(),
                site: None,
                phase: Some("compare".into()),
            }),
        );
    }
    if lost_sites.is_empty() {
        return (Status::Succeeded, None);
    }
    let names: Vec<&str> = lost_sites.iter().map(|l| l.site.as_str()).collect();
    let detail: Vec<String> = lost_sites
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
