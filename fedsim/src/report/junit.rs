//! JUnit XML for CI systems: one test case per check. Case names name the check and the term
//! (`coef[bmi] federated vs centralised`), never a measured value, so a CI system can follow each
//! case from run to run; the numbers go in the failure message, from the comparison itself.

use std::fmt::Write as _;

use super::esc;
use crate::compare::{Check, Comparison};
use crate::summary::{Status, Summary};

/// One test case: its name, and the failure message if it failed.
struct Case {
    name: String,
    failure: Option<String>,
}

fn check_cases(cases: &mut Vec<Case>, prefix: &str, c: &Comparison, against: &str) {
    for check in &c.checks {
        cases.push(Case {
            name: format!("{prefix}{} federated vs {against}", check.name()),
            failure: (!check.passed).then(|| message(check)),
        });
    }
}

fn message(c: &Check) -> String {
    format!(
        "difference {:.3e} > tolerance {:.1e} (federated {}, expected {}, |diff| {:.3e} on scale {:.3e})",
        c.diff, c.tolerance, c.got, c.want, c.abs_diff, c.scale
    )
}

pub fn render(summary: &Summary) -> String {
    let mut cases = Vec::new();
    // The run itself: it reached its results (a comparison failure is its own case below).
    // With several analyses: every one of them ran (one may have failed alone).
    let reached = summary.status != Status::Cancelled
        && summary.sections().iter().all(|s| {
            // (An analysis that never ran has no phase to its error.)
            s.results.is_some() || s.name.is_some() && s.error.is_some_and(|e| e.phase.is_some())
        });
    cases.push(Case {
        name: "run completes".into(),
        failure: (!reached).then(|| {
            summary
                .error
                .as_ref()
                .map_or_else(|| summary.status.to_string(), |e| e.message.clone())
        }),
    });
    // Every site takes part to the end: a site the run went on without is a failed case.
    for site in &summary.sites {
        let lost = summary.lost_sites.iter().find(|l| l.site == site.name);
        cases.push(Case {
            name: format!("site {} takes part to the end", site.name),
            failure: lost.map(|l| format!("lost in round {}: {}", l.round, l.cause)),
        });
    }
    // Each analysis's checks (a run of several: named by analysis, and each one's own
    // failure, should it have none to check).
    for section in summary.sections() {
        let prefix = section
            .name
            .map_or(String::new(), |n| format!("analysis {n}: "));
        if let Some(c) = section.comparison {
            check_cases(&mut cases, &prefix, c, "centralised");
        }
        if let Some(r) = section.reference {
            check_cases(&mut cases, &prefix, &r.comparison, "reference");
        }
        let why = || {
            section
                .error
                .map_or_else(|| section.status.to_string(), |e| e.message.clone())
        };
        if section.name.is_some() && section.results.is_none() {
            cases.push(Case {
                name: format!("{prefix}completes"),
                failure: Some(why()),
            });
        }
        if section.results.is_some() && section.comparison.is_none() {
            // Results, but no verdict: say why (baseline or comparison error) in a case of its own.
            cases.push(Case {
                name: format!("{prefix}comparison computed"),
                failure: Some(why()),
            });
        }
    }
    let failures = cases.iter().filter(|c| c.failure.is_some()).count();
    let name = esc(&summary.scenario);
    let mut x = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites><testsuite name=\"{name}\" tests=\"{}\" failures=\"{failures}\">\n",
        cases.len()
    );
    for case in &cases {
        let _ = write!(
            x,
            "  <testcase classname=\"fedsim.{name}\" name=\"{}\"",
            esc(&case.name)
        );
        match &case.failure {
            Some(f) => {
                let _ = writeln!(x, "><failure message=\"{}\"/></testcase>", esc(f));
            }
            None => x.push_str("/>\n"),
        }
    }
    x.push_str("</testsuite></testsuites>\n");
    x
}
