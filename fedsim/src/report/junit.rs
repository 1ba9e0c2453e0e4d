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

fn check_cases(cases: &mut Vec<Case>, c: &Comparison, against: &str) {
    for check in &c.checks {
        cases.push(Case {
            name: format!("{} federated vs {against}", check.name()),
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
    let reached = summary.results.is_some() && summary.status != Status::Cancelled;
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
    if let Some(c) = &summary.comparison {
        check_cases(&mut cases, c, "centralised");
    }
    if let Some(r) = &summary.reference {
        check_cases(&mut cases, &r.comparison, "reference");
    }
    if summary.results.is_some() && summary.comparison.is_none() {
        // Results, but no verdict: say why (baseline or comparison error) in a case of its own.
        cases.push(Case {
            name: "comparison computed".into(),
            failure: Some(
                summary
                    .error
                    .as_ref()
                    .map_or_else(|| summary.status.to_string(), |e| e.message.clone()),
            ),
        });
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
