//! Disclosure rules (`[privacy]`) enforced by each site's agent before anything leaves it, each
//! refusing exactly at its threshold; the presets; per-site overrides; `on_refusal`; what
//! `fedsim validate` predicts equal to what the run does; the release audit against the frames
//! counted on the wire; the report's "What left each site".

mod common;

use common::*;
use std::path::{Path, PathBuf};

/// The lung study (crosstab, Kaplan-Meier, Cox on 3 sites of 75, 74 and 74 rows) with
/// `privacy` appended as the body of `[privacy]` (and any further sections), keeping only the
/// analyses named in `keep`.
fn study(dir: &Path, name: &str, keep: &[&str], privacy: &str) -> PathBuf {
    let text = std::fs::read_to_string(root().join("resources/config_study.toml"))
        .unwrap()
        .replace("../test_data/", &format!("{}/", test_data("").display()));
    // Entries are separated by blank lines; drop the ones not kept.
    let kept: Vec<&str> = text
        .split("\n\n")
        .filter(
            |block| match block.trim_start().strip_prefix("[[analysis]]\nname = \"") {
                Some(rest) => keep.iter().any(|k| rest.starts_with(&format!("{k}\""))),
                None => true,
            },
        )
        .collect();
    scenario(
        dir,
        name,
        &format!("{}\n[privacy]\n{privacy}\n", kept.join("\n\n")),
    )
}

/// `fedsim validate`'s predictions: (analysis, site, "pass" or the first rule refused).
fn predicted(dir: &Path, cfg: &Path) -> Vec<(String, String, String)> {
    let o = fedsim(dir, &["validate", "-c", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let mut out: Vec<(String, String, String)> = Vec::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("  ") && l.contains(": "))
    {
        let (who, verdict) = line.trim().split_once(": ").unwrap();
        let Some((analysis, site)) = who.split_once(' ') else {
            continue;
        };
        let verdict = if verdict.starts_with("passes") {
            "pass".to_string()
        } else {
            // "refuses at load: min_rows = 75: ..." -> min_rows
            verdict
                .split(": ")
                .nth(1)
                .unwrap()
                .split(" = ")
                .next()
                .unwrap()
                .to_string()
        };
        if !out.iter().any(|(a, s, _)| a == analysis && s == site) {
            out.push((analysis.into(), site.into(), verdict));
        }
    }
    out
}

/// The verdicts `validate` predicts for one analysis, in site order.
fn verdicts_of(p: &[(String, String, String)], analysis: &str) -> Vec<String> {
    p.iter()
        .filter(|(a, _, _)| a == analysis)
        .map(|(_, _, v)| v.clone())
        .collect()
}

/// Each rule refuses exactly past its threshold and passes at it, as `validate` predicts from
/// the planned partition (site-1 holds 75 complete rows, the others 74; site-1's smallest table
/// cell is 5).
#[test]
fn each_rule_refuses_past_its_threshold_and_passes_at_it() {
    let tmp = tempfile::tempdir().unwrap();
    let table = ["table"];
    let cases: [(&[&str], &str, &str, [&str; 3]); 12] = [
        (&table, "min_rows = 74", "table", ["pass", "pass", "pass"]),
        (
            &table,
            "min_rows = 75",
            "table",
            ["pass", "min_rows", "min_rows"],
        ),
        (&table, "min_cell = 5", "table", ["pass", "pass", "pass"]),
        (
            &table,
            "min_cell = 6",
            "table",
            ["min_cell", "pass", "pass"],
        ),
        (
            &table,
            "max_levels_density = 0.02702702702702703",
            "table",
            ["pass", "pass", "pass"],
        ),
        (
            &table,
            "max_levels_density = 0.027",
            "table",
            ["pass", "max_levels_density", "max_levels_density"],
        ),
        (
            &["cox"],
            "max_params_ratio = 0.06756756756756757",
            "cox",
            ["pass", "pass", "pass"],
        ),
        (
            &["cox"],
            "max_params_ratio = 0.0675",
            "cox",
            ["pass", "max_params_ratio", "max_params_ratio"],
        ),
        (
            &["curves"],
            "extremes = true",
            "curves",
            ["pass", "pass", "pass"],
        ),
        (
            &["curves"],
            "extremes = false",
            "curves",
            ["extremes", "extremes", "extremes"],
        ),
        (&table, "min_sites = 3", "table", ["pass", "pass", "pass"]),
        // A hospital with stricter rules of its own.
        (
            &table,
            "[[privacy.sites]]\nsite = \"site-3\"\nmin_rows = 75",
            "table",
            ["pass", "pass", "min_rows"],
        ),
    ];
    for (i, (keep, rules, analysis, want)) in cases.into_iter().enumerate() {
        let cfg = study(tmp.path(), &format!("r{i}"), keep, rules);
        let p = predicted(tmp.path(), &cfg);
        assert_eq!(verdicts_of(&p, analysis), want, "{rules}: {p:?}");
    }
}

/// What `validate` predicts is what the run does: the first refusing site (in site order) is the
/// one the run's analysis fails naming, with that rule; the passing analyses match.
#[test]
fn the_run_refuses_as_validate_predicted() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, keep, rules) in [
        ("cell", &["table", "cox"][..], "min_cell = 6"),
        (
            "rows",
            &["table"][..],
            "[[privacy.sites]]\nsite = \"site-3\"\nmin_rows = 75",
        ),
        (
            "preset",
            &["table", "curves", "cox"][..],
            "preset = \"datashield\"",
        ),
        ("v6", &["table", "cox"][..], "preset = \"vantage6\""),
    ] {
        let cfg = study(tmp.path(), name, keep, rules);
        let p = predicted(tmp.path(), &cfg);
        let out = tmp.path().join(format!("run-{name}"));
        let o = run_to(tmp.path(), &cfg, &out, &[]);
        let s = summary(&out);
        for a in &s.analyses {
            let first = p.iter().find(|(x, _, v)| *x == a.name && v != "pass");
            match first {
                None => assert_eq!(
                    a.status,
                    Status::Succeeded,
                    "{name} {}: {}",
                    a.name,
                    pretty(a)
                ),
                Some((_, site, rule)) => {
                    assert_eq!(a.status, Status::Failed, "{name} {}", a.name);
                    let e = a.error.as_ref().unwrap();
                    assert_eq!(
                        e.site.as_deref(),
                        Some(site.as_str()),
                        "{name}: {}",
                        e.message
                    );
                    assert!(
                        e.message
                            .contains(&format!("by its disclosure rules: {rule} = ")),
                        "{name}: {}",
                        e.message
                    );
                }
            }
        }
        let failed = s.analyses.iter().any(|a| a.status == Status::Failed);
        assert_eq!(o.status.code(), Some(if failed { 1 } else { 0 }), "{name}");
        no_agent_left(&s);
    }
}

/// `on_refusal = "continue"` lets the refusing site go as a dropout: the analysis runs on the
/// others, matches their pooled fit, and the run ends degraded, naming the site and the rule.
/// The refusing site is the first: the others' Ready, sent beside its refusal, still counts.
#[test]
fn a_refusing_site_is_let_go_under_on_refusal_continue() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = study(
        tmp.path(),
        "cont",
        &["table", "cox"],
        "on_refusal = \"continue\"\n[[privacy.sites]]\nsite = \"site-1\"\nmin_rows = 76",
    );
    let out = tmp.path().join("run");
    let o = run_to(tmp.path(), &cfg, &out, &[]);
    let s = expect_status(&o, &out, Status::Degraded);
    assert_eq!(s.lost_sites.len(), 1, "{}", pretty(&s.lost_sites));
    let lost = &s.lost_sites[0];
    assert_eq!(lost.site, "site-1");
    assert!(lost.cause.contains("min_rows = 76"), "{}", lost.cause);
    // The first site refused as the others said Ready: the table's levels were agreed from
    // theirs, and both analyses ran on them.
    for a in &s.analyses {
        assert_eq!(a.status, Status::Degraded, "{}", pretty(a));
        assert!(a.comparison.as_ref().unwrap().passed);
        assert_eq!(a.results.as_ref().unwrap().n, 74 + 74);
    }
}

/// `min_sites` is held at every round: after a site is lost (and the run goes on), the others
/// refuse a round shared among fewer sites than their rule asks.
#[test]
fn min_sites_refuses_a_round_shared_among_too_few() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = study(
        tmp.path(),
        "few",
        &["cox"],
        "min_sites = 3\n[federation]\non_dropout = \"continue\"\nmin_sites = 2\nheartbeat_secs = 0.2\nround_timeout_secs = 5\n[[faults]]\nsite = \"site-3\"\nkind = \"kill\"\nround = 2\n",
    );
    let out = tmp.path().join("run");
    let o = run_to(tmp.path(), &cfg, &out, &[]);
    let s = expect_status(&o, &out, Status::Failed);
    let e = s.analyses[0].error.as_ref().unwrap();
    assert_eq!(e.site.as_deref(), Some("site-1"), "{}", e.message);
    assert!(
        e.message
            .contains("min_sites = 3: the round would be shared among fewer than 3 sites"),
        "{}",
        e.message
    );
    no_agent_left(&s);
}

/// Every message a site sent with data in it has its record in releases.jsonl, as the frames
/// the coordinator received show them: one per Ready and per reply, the same numbers, never
/// more bytes than the wire carried; under secure aggregation the records say masked.
#[test]
fn the_audit_records_every_release_as_the_wire_carried_it() {
    for secure in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let extra = if secure {
            "min_cell = 1\n[federation]\nsecure_aggregation = true"
        } else {
            "min_cell = 1"
        };
        let cfg = study(tmp.path(), "audit", &["table", "cox"], extra);
        let out = tmp.path().join("run");
        let frames = tmp.path().join("frames.jsonl");
        let o = run_command(tmp.path(), &cfg, &out)
            .env("FEDSIM_RECORD_FRAMES", &frames)
            .output()
            .unwrap();
        expect_status(&o, &out, Status::Succeeded);
        let releases: Vec<serde_json::Value> = std::fs::read_to_string(out.join("releases.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let sent: Vec<serde_json::Value> = std::fs::read_to_string(&frames)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|f| f["frame"].get("Reply").is_some() || f["frame"].get("Ready").is_some())
            .collect();
        assert_eq!(releases.len(), sent.len(), "secure {secure}");
        let m = metrics(&out);
        for f in &sent {
            let (site, round) = (f["site"].as_str().unwrap(), f["round"].as_u64().unwrap());
            let reply = f["frame"].get("Reply");
            // The agent numbers a Ready 0 for each analysis; the coordinator numbers its loading.
            let matching: Vec<&serde_json::Value> = releases
                .iter()
                .filter(|r| {
                    r["site"] == site
                        && (reply.is_none()
                            && r["statistics"].as_str().unwrap().starts_with("Ready")
                            || reply.is_some() && r["round"] == round)
                })
                .collect();
            assert!(
                !matching.is_empty(),
                "no record of {site}'s frame in round {round}"
            );
            if let Some(reply) = reply {
                let r = matching[0];
                assert_eq!(r["masked"], secure, "{r}");
                if secure {
                    assert_eq!(
                        r["numbers"].as_u64().unwrap() as usize,
                        f["masked"].as_array().unwrap().len()
                    );
                }
                let wire = m
                    .rounds
                    .iter()
                    .find(|x| u64::from(x.round) == round)
                    .and_then(|x| x.sites.iter().find(|y| y.site == site))
                    .map(|y| y.bytes_sent)
                    .unwrap();
                assert!(r["bytes"].as_u64().unwrap() <= wire, "{r} > {wire}");
                assert!(reply["round"] == round);
            }
        }
        // Under secure aggregation the Ready keeps the site's size to itself.
        if secure {
            assert!(releases.iter().all(|r| !r["statistics"]
                .as_str()
                .unwrap()
                .starts_with("Ready{rows: 1")));
        }
    }
}

/// The report's "What left each site" flags what a data steward must look at: event times one
/// row holds sent in clear (Kaplan-Meier), and nothing for a table whose cells are all 5 or more.
#[test]
fn the_report_says_what_left_each_site_and_flags_it() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = study(tmp.path(), "flags", &["table", "curves"], "");
    let out = tmp.path().join("run");
    run_expecting(tmp.path(), &cfg, &out, Status::Succeeded);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let section = &html[html
        .find("<h2>What left each site</h2>")
        .expect("the section")..];
    let section = &section[..section.find("</table>").unwrap()];
    assert_eq!(section.matches("<tr><td>site-").count(), 3, "{section}");
    assert_eq!(
        section
            .matches("a single-record value: an event time one row holds")
            .count(),
        3,
        "{section}"
    );
    let cfg = study(tmp.path(), "table", &["table"], "");
    let out = tmp.path().join("run-table");
    run_expecting(tmp.path(), &cfg, &out, Status::Succeeded);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let section = &html[html.find("<h2>What left each site</h2>").unwrap()..];
    let section = &section[..section.find("</table>").unwrap()];
    assert_eq!(section.matches(">none<").count(), 3, "{section}");
}

/// The probe's findings (`fedsim probe --json`) for a scenario.
fn probe(dir: &Path, cfg: Option<&Path>, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["probe", "--json"];
    if let Some(cfg) = cfg {
        args.extend(["-c", cfg.to_str().unwrap()]);
    }
    args.extend(extra);
    let o = fedsim(dir, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Values (names) a view shows.
fn shown(p: &serde_json::Value, view: &str) -> Vec<String> {
    let mut v: Vec<String> = p["exposures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["view"] == view)
        .map(|e| e["value"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The differencing attack recovers a record exactly where the releases are sums of its values:
/// the shipped OLS's first round (column sums) shows every feature and the target, in the
/// site's own reply and in the sum over the sites alike (secure aggregation does not hide a
/// difference). Where the releases are not sums of the values (a table's counts, Kaplan-Meier's
/// numbers at risk) no released number shows a value: the probe finds nothing there.
#[test]
fn the_probe_recovers_a_record_exactly_from_plain_sums_only() {
    let tmp = tempfile::tempdir().unwrap();
    for secure in ["false", "true"] {
        let set = format!("federation.secure_aggregation={secure}");
        let ols = probe(tmp.path(), None, &["--set", &set]);
        assert_eq!(ols.len(), 1);
        let p = &ols[0];
        let mut all: Vec<String> = p["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        all.sort();
        assert_eq!(all.len(), 11, "{p}");
        assert_eq!(shown(p, "site"), all, "{p}");
        assert_eq!(shown(p, "sum"), all, "{p}");
        // Read off the column sums of round 1, where both runs asked the same.
        let target = p["exposures"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["value"] == "progression" && e["view"] == "sum")
            .unwrap();
        assert_eq!(target["quantity"], "Moments.sum_y");
        assert_eq!(target["round"], 1);
        assert_eq!(
            p["compared"],
            serde_json::json!([1]),
            "the later rounds ask about other means"
        );
    }
    let cfg = study(tmp.path(), "probe", &["table", "curves", "cox"], "");
    let found = probe(tmp.path(), Some(&cfg), &["--site", "site-2"]);
    let of = |name: &str| found.iter().find(|p| p["analysis"] == name).unwrap();
    for name in ["table", "curves"] {
        assert!(shown(of(name), "site").is_empty(), "{}", of(name));
        assert!(shown(of(name), "sum").is_empty(), "{}", of(name));
    }
    // Cox's first round sends the covariates' sums: the record's covariates show.
    assert!(
        shown(of("cox"), "sum").contains(&"age".to_string()),
        "{}",
        of("cox")
    );
    let o = fedsim(
        tmp.path(),
        &["probe", "-c", cfg.to_str().unwrap(), "--site", "site-9"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no site is named \"site-9\""),
        "{}",
        stderr(&o)
    );
}

/// `[privacy] probe = true` runs the probe with the run: probe.json, and a warning naming what
/// the difference shows.
#[test]
fn a_run_with_probe_true_writes_what_the_probe_found() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = study(tmp.path(), "withprobe", &["table", "cox"], "probe = true");
    let out = tmp.path().join("run");
    let s = run_expecting(tmp.path(), &cfg, &out, Status::Succeeded);
    let probes: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("probe.json")).unwrap()).unwrap();
    assert_eq!(probes.len(), 2);
    let w: Vec<&fedsim::summary::Warning> = s
        .warnings
        .iter()
        .filter(|w| w.kind == "differencing")
        .collect();
    assert_eq!(
        w.len(),
        1,
        "only cox's releases show values: {}",
        pretty(&s.warnings)
    );
    assert!(
        w[0].message
            .starts_with("cox: run again without one record of site-1"),
        "{}",
        w[0].message
    );
}
