//! Several analyses in one run (`[[analysis]]`): one provisioning and enrolment, each analysis
//! judged on its own against the pooled fit and statsmodels/scipy, with its report section and
//! JUnit cases; the run's status is the worst of theirs; `--set analysis.NAME.key`; a lost site
//! and a failing analysis; bad entries refused before anything starts.

mod common;

use common::*;
use std::path::Path;

/// The shipped study (crosstab, Kaplan-Meier by sex, Cox with Efron ties) on lung.csv, with
/// `extra` appended (its paths made absolute, so it runs from any directory).
fn study(dir: &Path, extra: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(root().join("resources/config_study.toml"))
        .unwrap()
        .replace("../test_data/", &format!("{}/", test_data("").display()));
    scenario(dir, "study", &format!("{text}\n{extra}"))
}

/// The study with site-3 killed in algorithm round `round` (counted on across the analyses),
/// heartbeats quick, and `federation` lines added.
fn killed(dir: &Path, round: u32, federation: &str) -> std::path::PathBuf {
    study(
        dir,
        &format!("[federation]\n{federation}heartbeat_secs = 0.2\nround_timeout_secs = 5\n[[faults]]\nsite = \"site-3\"\nkind = \"kill\"\nround = {round}\n"),
    )
}

/// One analysis's section of the summary.
fn section<'a>(s: &'a Summary, name: &str) -> &'a fedsim::summary::AnalysisSummary {
    s.analyses
        .iter()
        .find(|a| a.name == name)
        .unwrap_or_else(|| panic!("no analysis {name}: {}", pretty(s)))
}

/// The three analyses run on one set of agents, each matches the pooled fit and its reference
/// row, the rounds are labelled by analysis, and each has its report section and JUnit cases.
/// The numbers are those of each analysis run alone, to the last bit.
#[test]
fn a_study_runs_its_analyses_in_one_run_each_judged_on_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = study(tmp.path(), "");
    let out = tmp.path().join("run");
    let junit = tmp.path().join("junit.xml");
    let o = run_to(
        tmp.path(),
        &cfg,
        &out,
        &["--junit", junit.to_str().unwrap()],
    );
    let s = expect_status(&o, &out, Status::Succeeded);
    assert_eq!(s.algorithm, "crosstab+kaplan_meier+cox");
    assert!(
        s.results.is_none() && s.comparison.is_none(),
        "{}",
        pretty(&s)
    );
    let names: Vec<&str> = s.analyses.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["table", "curves", "cox"]);
    for a in &s.analyses {
        assert_eq!(a.status, Status::Succeeded, "{}", pretty(a));
        let c = a.comparison.as_ref().unwrap();
        assert!(
            c.passed && c.max_diff < 1e-10,
            "{}: {}",
            a.name,
            c.describe()
        );
        let r = a.reference.as_ref().expect("held against reference.jsonl");
        assert!(
            r.comparison.passed,
            "{}: {}",
            a.name,
            r.comparison.describe()
        );
        assert_eq!(a.results.as_ref().unwrap().n, 223);
    }
    // One provisioning: each site's agent connected once, and loaded three analyses' data.
    for site in ["site-1", "site-2", "site-3"] {
        let log = std::fs::read_to_string(out.join(format!("logs/{site}.jsonl"))).unwrap();
        assert_eq!(log.matches("\"connected\"").count(), 1, "{site}: {log}");
        assert_eq!(log.matches("\"data_loaded\"").count(), 3, "{site}: {log}");
    }
    // Rounds go on across the analyses, each labelled with its analysis.
    let m = metrics(&out);
    let labels: Vec<(u32, &str)> = m
        .rounds
        .iter()
        .map(|r| (r.round, r.analysis.as_deref().unwrap()))
        .collect();
    assert_eq!(
        &labels[..4],
        [(0, "table"), (1, "table"), (2, "curves"), (3, "curves")]
    );
    assert!(labels[4..].iter().all(|(_, a)| *a == "cox"), "{labels:?}");
    assert!(
        labels.windows(2).all(|w| w[1].0 == w[0].0 + 1),
        "{labels:?}"
    );
    // The plan names each analysis with its configuration.
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("plan.json")).unwrap()).unwrap();
    assert_eq!(plan["analyses"][2]["algorithm"]["kind"], "cox");
    assert_eq!(plan["analyses"][2]["algorithm"]["ties"], "efron");
    // A report section per analysis, and JUnit cases named by analysis.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    for name in ["table", "curves", "cox"] {
        assert!(
            html.contains(&format!("<section id=\"analysis-{name}\">")),
            "{name}"
        );
    }
    assert!(html.contains("Cox (efron ties): (time, status) ~ 5 terms, 223 rows, 160 events"));
    let xml = std::fs::read_to_string(&junit).unwrap();
    for case in [
        "analysis cox: coef[age] federated vs reference",
        "analysis cox: coef[age] federated vs centralised",
        "analysis table: ",
        "analysis curves: ",
    ] {
        assert!(xml.contains(case), "{case}: {xml}");
    }
    assert!(!xml.contains("<failure"), "{xml}");
    // Each analysis gives what it gives alone, to the last bit (same split, same sums).
    for (name, kind, options) in [
        ("table", "crosstab", "rows = \"sex\"\ncols = \"status\""),
        (
            "cox",
            "cox",
            "time = \"time\"\nevent = \"status\"\nties = \"efron\"",
        ),
    ] {
        let alone = scenario(
            tmp.path(),
            name,
            &format!(
                "[scenario]\nname = \"{name}\"\nseed = 11\n[data]\npath = \"{}\"\n[partition]\nkind = \"horizontal\"\nsites = 3\n[algorithm]\nkind = \"{kind}\"\n{options}\n",
                test_data("lung.csv").display()
            ),
        );
        let dir = tmp.path().join(format!("alone-{name}"));
        let single = run_expecting(tmp.path(), &alone, &dir, Status::Succeeded);
        let (a, b) = (
            single.results.unwrap(),
            section(&s, name).results.clone().unwrap(),
        );
        assert_eq!(pretty(&a), pretty(&b), "{name}");
    }
    no_agent_left(&s);
}

/// `--set analysis.NAME.key=value` reaches the entry of that name; an unknown name is a
/// `--set` error that lists the names, with exit 2 and nothing written.
#[test]
fn an_analysis_is_changed_from_the_command_line_by_its_name() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = study(tmp.path(), "");
    let out = tmp.path().join("run");
    let o = run_to(
        tmp.path(),
        &cfg,
        &out,
        &[
            "--set",
            "analysis.cox.ties=breslow",
            "--set",
            "analysis.curves.group=ph_ecog",
        ],
    );
    let s = expect_status(&o, &out, Status::Succeeded);
    let plan = std::fs::read_to_string(out.join("plan.json")).unwrap();
    assert!(plan.contains("\"ties\": \"breslow\""), "{plan}");
    // The breslow and ph_ecog reference rows were found and matched.
    for name in ["cox", "curves"] {
        let r = section(&s, name).reference.as_ref().unwrap();
        assert!(r.comparison.passed, "{name}: {}", r.comparison.describe());
    }
    let bad = tmp.path().join("bad");
    let o = run_to(
        tmp.path(),
        &cfg,
        &bad,
        &["--set", "analysis.coxx.ties=efron"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("--set analysis.coxx.ties=efron") && e.contains("table, curves, cox"),
        "{e}"
    );
    assert!(!bad.exists());
}

/// An analysis that fails on its own (here Cox's Newton given 2 iterations) fails alone: the
/// sites stay in step, the next analysis runs and matches, and the run's status is the worst,
/// its error naming the analysis.
#[test]
fn a_failing_analysis_fails_alone_and_the_run_is_as_bad_as_its_worst() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(study(tmp.path(), "")).unwrap();
    // Cox second, with too few iterations; the curves after it.
    let text = text.replace(
        "[[analysis]]\nname = \"cox\"\nkind = \"cox\"\ntime = \"time\"\nevent = \"status\"\nties = \"efron\"\n",
        "",
    );
    let text = text.replace(
        "[[analysis]]\nname = \"curves\"",
        "[[analysis]]\nname = \"cox\"\nkind = \"cox\"\ntime = \"time\"\nevent = \"status\"\nmax_iter = 2\n\n[[analysis]]\nname = \"curves\"",
    );
    let cfg = scenario(tmp.path(), "failing", &text);
    let out = tmp.path().join("run");
    let junit = tmp.path().join("junit.xml");
    let o = run_to(
        tmp.path(),
        &cfg,
        &out,
        &["--junit", junit.to_str().unwrap()],
    );
    let s = expect_status(&o, &out, Status::Failed);
    let names: Vec<(&str, Status)> = s
        .analyses
        .iter()
        .map(|a| (a.name.as_str(), a.status))
        .collect();
    assert_eq!(
        names,
        [
            ("table", Status::Succeeded),
            ("cox", Status::Failed),
            ("curves", Status::Succeeded)
        ]
    );
    let e = s.error.as_ref().unwrap();
    assert!(
        e.message.starts_with("analysis cox: ")
            && e.message.contains("did not converge in 2 iterations"),
        "{}",
        e.message
    );
    assert_eq!(e.phase.as_deref(), Some("federate"));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("name=\"analysis cox: completes\"><failure"),
        "{xml}"
    );
    assert!(xml.contains("name=\"run completes\"/>"), "{xml}");
    assert_eq!(xml.matches("<failure").count(), 1, "{xml}");
    no_agent_left(&s);
}

/// A site killed in the third analysis's rounds, under `on_dropout = "continue"`: the analyses
/// before it kept every site and succeeded; the third restarts without it and is degraded (its
/// baseline is the survivors', its reference is not held against it); the run is degraded.
#[test]
fn a_site_lost_in_a_later_analysis_degrades_that_analysis_only() {
    let tmp = tempfile::tempdir().unwrap();
    // Rounds of the algorithms count on across analyses: table 1, curves 2, cox 3...
    let cfg = killed(tmp.path(), 4, "on_dropout = \"continue\"\nmin_sites = 2\n");
    let out = tmp.path().join("run");
    let o = run_to(tmp.path(), &cfg, &out, &[]);
    let s = expect_status(&o, &out, Status::Degraded);
    for name in ["table", "curves"] {
        let a = section(&s, name);
        assert_eq!(a.status, Status::Succeeded, "{}", pretty(a));
        assert!(a.lost_sites.is_empty() && a.reference.is_some());
    }
    let cox = section(&s, "cox");
    assert_eq!(cox.status, Status::Degraded, "{}", pretty(cox));
    assert_eq!(cox.lost_sites[0].site, "site-3");
    assert!(cox.comparison.as_ref().unwrap().passed);
    assert!(
        cox.reference.is_none(),
        "a reference describes all the data"
    );
    let rows: usize = s
        .sites
        .iter()
        .filter(|x| x.name != "site-3")
        .map(|x| x.rows)
        .sum();
    assert_eq!(cox.results.as_ref().unwrap().n, rows);
    no_agent_left(&s);
}

/// A site lost under `on_dropout = "fail"` ends the run: the analyses before keep their
/// verdicts, the one it was lost in failed naming the site, the ones after did not run.
#[test]
fn a_site_lost_under_fail_ends_the_run_after_the_analyses_before_it() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = killed(tmp.path(), 2, "");
    let out = tmp.path().join("run");
    let junit = tmp.path().join("junit.xml");
    let o = run_to(
        tmp.path(),
        &cfg,
        &out,
        &["--junit", junit.to_str().unwrap()],
    );
    let s = expect_status(&o, &out, Status::Failed);
    assert_eq!(s.error.as_ref().unwrap().site.as_deref(), Some("site-3"));
    assert_eq!(section(&s, "table").status, Status::Succeeded);
    let curves = section(&s, "curves");
    assert_eq!(curves.status, Status::Failed);
    let e = curves.error.as_ref().unwrap();
    assert_eq!(
        (e.site.as_deref(), e.phase.as_deref()),
        (Some("site-3"), Some("federate")),
        "{}",
        e.message
    );
    let cox = section(&s, "cox");
    assert_eq!(cox.status, Status::Failed);
    let e = cox.error.as_ref().unwrap();
    assert!(
        e.message.starts_with("did not run") && e.phase.is_none(),
        "{}",
        e.message
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("name=\"run completes\"><failure"), "{xml}");
    assert!(
        xml.contains("name=\"analysis cox: completes\"><failure"),
        "{xml}"
    );
    no_agent_left(&s);
}

/// Under secure aggregation every analysis of the study still matches its reference.
#[test]
fn a_study_runs_under_secure_aggregation() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = study(tmp.path(), "[federation]\nsecure_aggregation = true\n");
    let out = tmp.path().join("run");
    let s = run_expecting(tmp.path(), &cfg, &out, Status::Succeeded);
    for a in &s.analyses {
        let r = a.reference.as_ref().unwrap();
        assert!(
            r.comparison.passed,
            "{}: {}",
            a.name,
            r.comparison.describe()
        );
    }
}

/// Bad `[[analysis]]` entries are refused before anything starts, located at the entry's key,
/// with exit 2.
#[test]
fn bad_analysis_entries_are_refused_at_their_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(study(tmp.path(), "")).unwrap();
    let line_of =
        |text: &str, needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    for (what, text, want) in [
        (
            "no name",
            base.replace("name = \"curves\"\n", ""),
            "analysis.1: missing key `name`".to_string(),
        ),
        (
            "a name twice",
            base.replace("name = \"curves\"", "name = \"table\""),
            format!(
                "{}:8: analysis.1.name: analysis \"table\" is named twice",
                line_of(&base, "name = \"curves\"")
            ),
        ),
        (
            "a name that is no name",
            base.replace("name = \"curves\"", "name = \"2 curves\""),
            "analysis.1.name: expected a name".to_string(),
        ),
        (
            "a column that is not there",
            base.replace("group = \"sex\"", "group = \"sexx\""),
            format!(
                "{}:9: analysis.1.group: data file",
                line_of(&base, "group = \"sex\"")
            ),
        ),
        (
            "an option of another kind",
            base.replace("ties = \"efron\"", "ties = \"efron\"\nfamily = \"poisson\""),
            "analysis.2.family: `family` applies to glm only, not cox".to_string(),
        ),
        (
            "both [algorithm] and [[analysis]]",
            format!("{base}\n[algorithm]\nkind = \"describe\"\n"),
            "[algorithm] and [[analysis]] both given".to_string(),
        ),
        (
            "a vertical split",
            base.replace("kind = \"horizontal\"", "kind = \"vertical\""),
            "partition.kind: several [[analysis]] entries share the sites' rows".to_string(),
        ),
    ] {
        let cfg = scenario(tmp.path(), "bad", &text);
        let out = tmp.path().join("out");
        let o = run_to(tmp.path(), &cfg, &out, &[]);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{what}: {e}");
        assert!(e.contains(&want), "{what}: want {want:?} in {e}");
        assert!(!out.exists(), "{what}: nothing written");
    }
    // `name` and columns of their own are an [[analysis]] entry's, not [algorithm]'s.
    let single = "[scenario]\nname = \"s\"\n[data]\npath = \"x.csv\"\n[partition]\nkind = \"horizontal\"\nsites = 2\n[algorithm]\nkind = \"describe\"\nname = \"d\"\n";
    let cfg = scenario(tmp.path(), "single", single);
    let o = run_to(tmp.path(), &cfg, &tmp.path().join("o2"), &[]);
    assert!(
        stderr(&o).contains("algorithm.name: `name` names an [[analysis]] entry"),
        "{}",
        stderr(&o)
    );
}
