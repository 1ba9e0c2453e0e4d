//! Kaplan-Meier curves and the log-rank test, federated over local sites: statsmodels'
//! numbers (`reference.jsonl`, lung.csv) on 3 and 4 sites, with and without secure
//! aggregation; sites and groups without events; bad survival inputs refused before the run.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;

/// The kaplan_meier reference row for lung.csv with this group column (or none).
fn km_reference(group: Option<&str>) -> Value {
    let text = std::fs::read_to_string(test_data("reference.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| {
            v["csv"] == "lung.csv" && v["kind"] == "kaplan_meier" && v["group"].as_str() == group
        })
        .expect("a kaplan_meier row")
}

fn toml(data: &str, partition: &str, algorithm: &str, extra: &str) -> String {
    format!(
        "[scenario]\nname = \"km\"\nseed = 3\n[data]\n{data}\n[partition]\n{partition}\n[algorithm]\nkind = \"kaplan_meier\"\ntime = \"time\"\nevent = \"status\"\n{algorithm}\n{extra}"
    )
}

/// Run and expect success; the summary.
fn run_ok(dir: &Path, body: &str) -> Summary {
    let cfg = scenario(dir, "km", body);
    let out = dir.join("run");
    let o = run_to(dir, &cfg, &out, &[]);
    assert!(
        o.status.success(),
        "{}\n{}",
        stderr(&o),
        std::fs::read_to_string(out.join("summary.json")).unwrap_or_default()
    );
    expect_status(&o, &out, Status::Succeeded)
}

/// Largest absolute differences of the federated curves from the reference row's: (surv,
/// surv_se, interval bounds, log-rank chi²). Every time, count and median must agree exactly.
fn differences(named: &std::collections::BTreeMap<String, Value>, r: &Value) -> [f64; 4] {
    let group = r["group"].as_str();
    let mut max = [0.0f64; 4];
    for g in r["groups"].as_array().unwrap() {
        let key = |name: &str| match group {
            None => name.to_string(),
            Some(c) => format!("{name}[{c}={}]", g["group"]),
        };
        let labels: Vec<String> = floats(&g["time"]).iter().map(|t| t.to_string()).collect();
        // (labels, values) of a named list.
        let list = |name: &str| -> (Vec<String>, Vec<f64>) {
            let v = &named[&key(name)];
            let l = v["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_string())
                .collect();
            (l, floats(&v["values"]))
        };
        assert_eq!(named[&key("n")].as_f64(), g["n"].as_f64(), "{}", key("n"));
        for exact in ["n_risk", "n_events"] {
            let (l, v) = list(exact);
            assert_eq!(l, labels, "{}", key(exact));
            assert_eq!(v, floats(&g[exact]), "{}", key(exact));
        }
        assert_eq!(
            named.get(&key("median")).and_then(Value::as_f64),
            g["median"].as_f64(),
            "{}",
            key("median")
        );
        for (slot, field) in [
            (0, "surv"),
            (1, "surv_se"),
            (2, "conf_low"),
            (2, "conf_high"),
        ] {
            let (l, v) = list(field);
            // The reference's nulls (S = 0) are left out of the federated list.
            let want: Vec<(String, f64)> = labels
                .iter()
                .zip(g[field].as_array().unwrap())
                .filter_map(|(t, x)| x.as_f64().map(|x| (t.clone(), x)))
                .collect();
            assert_eq!(
                l,
                want.iter().map(|w| w.0.clone()).collect::<Vec<_>>(),
                "{}",
                key(field)
            );
            for (a, (_, b)) in v.iter().zip(&want) {
                max[slot] = max[slot].max((a - b).abs());
            }
        }
    }
    if let Some(lr) = r.get("logrank").filter(|l| !l.is_null()) {
        let chi2 = named["logrank_chi2"].as_f64().unwrap();
        max[3] = (chi2 - lr["chi2"].as_f64().unwrap()).abs();
        assert_eq!(named["logrank_df"], lr["df"]);
        let p = named["logrank_p"].as_f64().unwrap();
        let want = lr["p_sf"].as_f64().unwrap();
        assert!((p - want).abs() <= 1e-9 * want, "p {p} vs {want}");
    }
    max
}

fn assert_close(d: [f64; 4], what: &str) {
    assert!(d[0] <= 1e-10, "{what}: surv off statsmodels by {:e}", d[0]);
    assert!(
        d[1] <= 1e-10,
        "{what}: surv_se off statsmodels by {:e}",
        d[1]
    );
    assert!(d[2] <= 1e-10, "{what}: interval off by {:e}", d[2]);
    assert!(d[3] <= 1e-9, "{what}: log-rank chi2 off by {:e}", d[3]);
}

#[test]
fn kaplan_meier_matches_statsmodels_on_3_and_4_sites() {
    for group in [None, Some("sex"), Some("ph_ecog")] {
        for sites in [3, 4] {
            let tmp = tempfile::tempdir().unwrap();
            let s = run_ok(
                tmp.path(),
                &toml(
                    &format!("path = \"{}\"", test_data("lung.csv").display()),
                    &format!("kind = \"horizontal\"\nsites = {sites}"),
                    &group.map_or(String::new(), |g| format!("group = \"{g}\"")),
                    &format!(
                        "[compare]\ntolerance = 1e-10\nreference = \"{}\"",
                        test_data("reference.jsonl").display()
                    ),
                ),
            );
            let what = format!("{group:?} on {sites} sites");
            let res = s.results.as_ref().expect("results");
            assert_eq!(res.n, 223);
            assert_close(differences(&res.named, &km_reference(group)), &what);
            // The run's own verdicts: against the pooled baseline and statsmodels' row.
            let c = s.comparison.as_ref().expect("comparison");
            assert!(c.passed && c.checks.len() > 500, "{what}: {}", c.describe());
            let r = s.reference.as_ref().expect("reference check");
            assert!(r.comparison.passed, "{what}: {}", r.comparison.describe());
            // The event times were disclosed, and the report says so.
            assert!(
                s.warnings.iter().any(|w| w.kind == "disclosure"),
                "{:?}",
                s.warnings
            );
        }
    }
}

/// lung.csv split so that site a holds only censored rows (no events at all) and site b has
/// no events in group sex = 2; the union is lung.csv, so statsmodels' numbers still hold.
fn awkward_sites(dir: &Path) -> String {
    let text = std::fs::read_to_string(test_data("lung.csv")).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let mut files = [String::new(), String::new(), String::new()];
    for f in &mut files {
        f.push_str(header);
        f.push('\n');
    }
    for l in lines {
        let cells: Vec<&str> = l.split(',').collect();
        let (status, sex) = (cells[1], cells[3]);
        let site = match (status, sex) {
            ("0", "1") => 0,
            ("0", _) | ("1", "1") => 1,
            _ => 2,
        };
        files[site].push_str(l);
        files[site].push('\n');
    }
    let names = ["a.csv", "b.csv", "c.csv"];
    for (n, f) in names.iter().zip(&files) {
        std::fs::write(dir.join(n), f).unwrap();
    }
    "files = [\"a.csv\", \"b.csv\", \"c.csv\"]".to_string()
}

#[test]
fn a_site_without_events_and_a_group_without_events_at_a_site() {
    let tmp = tempfile::tempdir().unwrap();
    let data = awkward_sites(tmp.path());
    let s = run_ok(
        tmp.path(),
        &toml(
            &data,
            "kind = \"horizontal\"\nsites = 3",
            "group = \"sex\"",
            "[compare]\ntolerance = 1e-10",
        ),
    );
    let res = s.results.as_ref().expect("results");
    assert_eq!(res.n, 223);
    assert_close(
        differences(&res.named, &km_reference(Some("sex"))),
        "awkward sites",
    );
    let c = s.comparison.as_ref().expect("comparison");
    assert!(c.passed, "{}", c.describe());
}

#[test]
fn kaplan_meier_under_secure_aggregation_is_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let s = run_ok(
        tmp.path(),
        &toml(
            &format!("path = \"{}\"", test_data("lung.csv").display()),
            "kind = \"horizontal\"\nsites = 3",
            "group = \"ph_ecog\"",
            "[federation]\nsecure_aggregation = true\n[compare]\ntolerance = 1e-10",
        ),
    );
    let res = s.results.as_ref().expect("results");
    assert_close(
        differences(&res.named, &km_reference(Some("ph_ecog"))),
        "secure aggregation",
    );
    let c = s.comparison.as_ref().expect("comparison");
    assert!(c.passed, "{}", c.describe());
    let kinds: Vec<&str> = s.warnings.iter().map(|w| w.kind.as_str()).collect();
    assert!(
        kinds.contains(&"disclosure") && kinds.contains(&"secure_aggregation"),
        "{kinds:?}"
    );
}

/// Bad survival input: a named error, exit code 2, before anything starts.
#[test]
fn bad_survival_inputs_are_refused_with_exit_code_2() {
    let text = std::fs::read_to_string(test_data("lung.csv")).unwrap();
    // Line 5 of the file (the 4th row): its status made 2, or its time made negative.
    let edit = |f: &dyn Fn(&mut Vec<String>)| {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let mut cells: Vec<String> = lines[4].split(',').map(str::to_string).collect();
        f(&mut cells);
        lines[4] = cells.join(",");
        lines.join("\n") + "\n"
    };
    let cases: [(&str, String, &str, &[&str]); 4] = [
        (
            "event.csv",
            edit(&|c| c[1] = "2".into()),
            "",
            &[
                "event.csv",
                "line 5",
                "column \"status\"",
                "an event indicator must be 1 (event) or 0 (censored), found 2",
            ],
        ),
        (
            "time.csv",
            edit(&|c| c[0] = "-3".into()),
            "",
            &[
                "time.csv",
                "line 5",
                "column \"time\"",
                "a follow-up time must be 0 or more, found -3",
            ],
        ),
        (
            "no_time.csv",
            text.clone(),
            "time",
            &["missing key `time`", "kaplan_meier needs"],
        ),
        (
            "no_event.csv",
            text.clone(),
            "event",
            &["missing key `event`", "kaplan_meier needs"],
        ),
    ];
    for (file, csv, drop_key, fragments) in cases {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(file), csv).unwrap();
        let body = toml(
            &format!("path = \"{file}\""),
            "kind = \"horizontal\"\nsites = 3",
            "",
            "",
        )
        .lines()
        .filter(|l| drop_key.is_empty() || !l.starts_with(&format!("{drop_key} =")))
        .collect::<Vec<_>>()
        .join("\n");
        let cfg = scenario(tmp.path(), "bad", &body);
        let out = tmp.path().join("run");
        let o = run_to(tmp.path(), &cfg, &out, &[]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{file}: {err}");
        for f in fragments {
            assert!(err.contains(f), "{file}: {f:?} not in {err}");
        }
        assert!(
            !out.join("summary.json").exists()
                || !std::fs::read_to_string(out.join("summary.json"))
                    .unwrap()
                    .contains("\"succeeded\""),
            "{file}: the run started"
        );
    }
}

#[test]
fn kaplan_meier_takes_no_features_and_no_intercept() {
    let tmp = tempfile::tempdir().unwrap();
    for (extra_data, extra_alg, fragment) in [
        ("features = [\"age\"]", "", "kaplan_meier takes no features"),
        ("", "intercept = true", "`intercept` applies to"),
    ] {
        let body = toml(
            &format!(
                "path = \"{}\"\n{extra_data}",
                test_data("lung.csv").display()
            ),
            "kind = \"horizontal\"\nsites = 3",
            extra_alg,
            "",
        );
        let cfg = scenario(tmp.path(), "bad", &body);
        let o = run_to(tmp.path(), &cfg, &tmp.path().join("run"), &[]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(fragment), "{fragment:?} not in {err}");
    }
}

/// The report draws each group's step curve with its band, and the number-at-risk table starts
/// at each group's rows (statsmodels' `n`) and never grows.
#[test]
fn the_report_draws_the_curves_and_the_number_at_risk() {
    let tmp = tempfile::tempdir().unwrap();
    run_ok(
        tmp.path(),
        &toml(
            &format!("path = \"{}\"", test_data("lung.csv").display()),
            "kind = \"horizontal\"\nsites = 3",
            "group = \"sex\"",
            "",
        ),
    );
    let html = std::fs::read_to_string(tmp.path().join("run/report.html")).unwrap();
    let plot = html
        .split("data-plot=\"survival\"")
        .nth(1)
        .expect("a survival plot");
    let plot = &plot[..plot.find("</figure>").unwrap()];
    for label in ["sex=1", "sex=2", "95% interval"] {
        assert!(plot.contains(label), "the legend names {label}");
    }
    let table = html
        .split("id=\"at-risk\"")
        .nth(1)
        .expect("a number-at-risk table");
    let table = &table[..table.find("</table>").unwrap()];
    for g in km_reference(Some("sex"))["groups"].as_array().unwrap() {
        let label = format!("sex={}", g["group"]);
        let row = table
            .split("<tr>")
            .find(|r| r.contains(&format!("<td>{label}</td>")))
            .unwrap_or_else(|| panic!("a row for {label}: {table}"));
        let counts: Vec<f64> = row
            .split("<td>")
            .skip(2)
            .map(|c| c.split('<').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(counts.len(), 6, "{row}");
        assert_eq!(counts[0], g["n"].as_f64().unwrap(), "{label}");
        assert!(
            counts.windows(2).all(|w| w[1] <= w[0]),
            "{label}: {counts:?}"
        );
    }
}
