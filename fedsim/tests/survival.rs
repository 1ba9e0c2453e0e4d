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

/// The cox reference rows for lung.csv: (ties, strata, features, row).
fn cox_references() -> Vec<(String, Option<String>, Vec<String>, Value)> {
    let text = std::fs::read_to_string(test_data("reference.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["csv"] == "lung.csv" && v["kind"] == "cox")
        .map(|v| {
            let terms = v["terms"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_string())
                .collect();
            (
                v["ties"].as_str().unwrap().to_string(),
                v["strata"].as_str().map(str::to_string),
                terms,
                v,
            )
        })
        .collect()
}

fn cox_toml(data: &str, sites: usize, ties: &str, strata: Option<&str>, extra: &str) -> String {
    format!(
        "[scenario]\nname = \"cox\"\nseed = 3\n[data]\n{data}\n[partition]\nkind = \"horizontal\"\nsites = {sites}\n[algorithm]\nkind = \"cox\"\ntime = \"time\"\nevent = \"status\"\nties = \"{ties}\"\n{}\n{extra}",
        strata.map_or(String::new(), |s| format!("strata = \"{s}\""))
    )
}

fn features_line(features: &[String]) -> String {
    format!(
        "features = [{}]",
        features
            .iter()
            .map(|f| format!("{f:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The largest differences from a statsmodels row, on the compare rule's scales: coef on
/// max(|want|, se), se relative, loglik relative; hazard ratios relative. Asserts the rows
/// and events.
fn cox_differences(res: &fedsim::algorithms::Estimates, r: &Value) -> [f64; 4] {
    assert_eq!(res.n as u64, r["n"].as_u64().unwrap());
    assert_eq!(res.named["events"].as_f64(), r["events"].as_f64());
    let (coef, se) = (floats(&r["coef"]), floats(&r["se"]));
    let mut d = [0.0f64; 4];
    assert_eq!(res.coef.len(), coef.len());
    for i in 0..coef.len() {
        d[0] = d[0].max((res.coef[i] - coef[i]).abs() / coef[i].abs().max(se[i]));
        d[1] = d[1].max((res.se[i] - se[i]).abs() / se[i]);
    }
    let ll = r["loglik"].as_f64().unwrap();
    d[2] = (res.loglik.unwrap() - ll).abs() / ll.abs();
    for name in ["hazard_ratio", "hr_low", "hr_high"] {
        let got = floats(&res.named[name]["values"]);
        for (a, b) in got.iter().zip(floats(&r[name])) {
            d[3] = d[3].max((a - b).abs() / b.abs());
        }
    }
    d
}

fn assert_cox_close(d: [f64; 4], what: &str) {
    eprintln!(
        "{what}: coef {:.1e}, se {:.1e}, loglik {:.1e}, hazard ratios {:.1e}",
        d[0], d[1], d[2], d[3]
    );
    assert!(d[0] <= 1e-8, "{what}: coef off statsmodels by {:e}", d[0]);
    assert!(d[1] <= 1e-8, "{what}: se off statsmodels by {:e}", d[1]);
    assert!(
        d[2] <= 1e-10,
        "{what}: loglik off statsmodels by {:e}",
        d[2]
    );
    assert!(d[3] <= 1e-8, "{what}: hazard ratios off by {:e}", d[3]);
}

#[test]
fn cox_matches_statsmodels_on_3_and_5_sites() {
    let rows = cox_references();
    assert_eq!(rows.len(), 3, "breslow, efron, efron with strata");
    for (ties, strata, features, r) in &rows {
        for sites in [3, 5] {
            let tmp = tempfile::tempdir().unwrap();
            let s = run_ok(
                tmp.path(),
                &cox_toml(
                    &format!(
                        "path = \"{}\"\n{}",
                        test_data("lung.csv").display(),
                        features_line(features)
                    ),
                    sites,
                    ties,
                    strata.as_deref(),
                    &format!(
                        "[compare]\ntolerance = 1e-8\nreference = \"{}\"",
                        test_data("reference.jsonl").display()
                    ),
                ),
            );
            let what = format!("{ties} strata {strata:?} on {sites} sites");
            let res = s.results.as_ref().expect("results");
            assert_cox_close(cox_differences(res, r), &what);
            // Federated = pooled baseline, and the run's own verdict against statsmodels.
            let c = s.comparison.as_ref().expect("comparison");
            assert!(c.passed, "{what}: {}", c.describe());
            eprintln!("{what}: federated vs pooled {}", c.describe());
            assert!(c.max_diff <= 1e-10, "{what}: {}", c.describe());
            let reference = s.reference.as_ref().expect("reference check");
            assert!(
                reference.comparison.passed,
                "{what}: {}",
                reference.comparison.describe()
            );
            // coef, se, z, p, both bounds, 3 hazard-ratio lists per term; loglik and events.
            assert_eq!(
                reference.comparison.checks.len(),
                9 * features.len() + 2,
                "{what}"
            );
            assert!(
                s.warnings.iter().any(|w| w.kind == "disclosure"),
                "{:?}",
                s.warnings
            );
        }
    }
}

#[test]
fn cox_with_a_site_without_events() {
    for (ties, strata, features, r) in cox_references() {
        let tmp = tempfile::tempdir().unwrap();
        let data = awkward_sites(tmp.path());
        let s = run_ok(
            tmp.path(),
            &cox_toml(
                &format!("{data}\n{}", features_line(&features)),
                3,
                &ties,
                strata.as_deref(),
                "[compare]\ntolerance = 1e-8",
            ),
        );
        let what = format!("{ties} strata {strata:?}, a site without events");
        assert_cox_close(cox_differences(s.results.as_ref().unwrap(), &r), &what);
        let c = s.comparison.as_ref().expect("comparison");
        assert!(c.passed, "{what}: {}", c.describe());
    }
}

#[test]
fn cox_under_secure_aggregation() {
    let (ties, strata, features, r) = cox_references().pop().unwrap();
    assert_eq!(strata.as_deref(), Some("sex"));
    let tmp = tempfile::tempdir().unwrap();
    let s = run_ok(
        tmp.path(),
        &cox_toml(
            &format!(
                "path = \"{}\"\n{}",
                test_data("lung.csv").display(),
                features_line(&features)
            ),
            4,
            &ties,
            strata.as_deref(),
            "[federation]\nsecure_aggregation = true\n[compare]\ntolerance = 1e-8",
        ),
    );
    assert_cox_close(
        cox_differences(s.results.as_ref().unwrap(), &r),
        "secure aggregation",
    );
    let c = s.comparison.as_ref().expect("comparison");
    assert!(c.passed, "{}", c.describe());
    let kinds: Vec<&str> = s.warnings.iter().map(|w| w.kind.as_str()).collect();
    assert!(
        kinds.contains(&"disclosure") && kinds.contains(&"secure_aggregation"),
        "{kinds:?}"
    );
    // The report names the model and shows the coefficient table and the hazard ratios.
    let html = std::fs::read_to_string(tmp.path().join("run/report.html")).unwrap();
    for fragment in [
        "Cox (efron ties, strata sex): (time, status) ~ 2 terms, 223 rows, 160 events",
        "id=\"comparison\"",
        "P&gt;|z|",
        "id=\"named\"",
        "hazard_ratio[ph_ecog]",
    ] {
        assert!(html.contains(fragment), "{fragment:?} not in the report");
    }
}

/// Bad Cox input: a named error, exit code 2, before anything starts.
#[test]
fn bad_cox_inputs_are_refused_with_exit_code_2() {
    let text = std::fs::read_to_string(test_data("lung.csv")).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut cells: Vec<String> = lines[4].split(',').map(str::to_string).collect();
    cells[1] = "2".into();
    lines[4] = cells.join(",");
    let bad_event = lines.join("\n") + "\n";
    // (file, its text, ties, strata, more [algorithm] keys, what the error must say)
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        Option<&'a str>,
        &'a str,
        &'a [&'a str],
    );
    let cases: [Case; 6] = [
        (
            "ties.csv",
            &text,
            "exact",
            None,
            "",
            &["ties", "unknown variant `exact`", "breslow", "efron"],
        ),
        (
            "strata.csv",
            &text,
            "efron",
            Some("stratum"),
            "",
            &["algorithm.strata", "no column \"stratum\""],
        ),
        (
            "event.csv",
            &bad_event,
            "breslow",
            None,
            "",
            &[
                "event.csv",
                "line 5",
                "column \"status\"",
                "an event indicator must be 1 (event) or 0 (censored), found 2",
            ],
        ),
        (
            "intercept.csv",
            &text,
            "breslow",
            None,
            "intercept = true",
            &["`intercept` applies to", "not cox"],
        ),
        (
            "covariate.csv",
            &text,
            "efron",
            Some("sex"),
            "",
            &[
                "data.features.1",
                "\"sex\" is the `strata` column: it cannot also be a covariate",
            ],
        ),
        (
            "group.csv",
            &text,
            "breslow",
            None,
            "group = \"sex\"",
            &["`group` applies to kaplan_meier only, not cox"],
        ),
    ];
    for (file, csv, ties, strata, extra, fragments) in cases {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(file), csv).unwrap();
        let body = cox_toml(
            &format!(
                "path = \"{file}\"\nfeatures = [\"age\", {:?}]",
                if file == "covariate.csv" {
                    "sex"
                } else {
                    "ph_ecog"
                }
            ),
            3,
            ties,
            strata,
            extra,
        );
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

/// age moved by 100000 (a covariate far from 0, like a calendar year): exp(x'b) would overflow
/// and the information lose its digits without the sites' centring; the fit is unchanged (the
/// partial likelihood is invariant to a shift of a covariate), so statsmodels' numbers hold.
#[test]
fn cox_with_a_covariate_far_from_0() {
    let text = std::fs::read_to_string(test_data("lung.csv")).unwrap();
    let moved: String = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let mut cells: Vec<String> = l.split(',').map(str::to_string).collect();
            if i > 0 {
                cells[2] = (cells[2].parse::<f64>().unwrap() + 100000.0).to_string();
            }
            cells.join(",") + "\n"
        })
        .collect();
    let (ties, strata, features, r) = cox_references().remove(1);
    assert_eq!((ties.as_str(), &strata), ("efron", &None));
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("moved.csv"), moved).unwrap();
    let s = run_ok(
        tmp.path(),
        &cox_toml(
            &format!("path = \"moved.csv\"\n{}", features_line(&features)),
            3,
            &ties,
            None,
            "[compare]\ntolerance = 1e-8",
        ),
    );
    let res = s.results.as_ref().unwrap();
    assert_cox_close(cox_differences(res, &r), "age + 100000");
    let c = s.comparison.as_ref().expect("comparison");
    assert!(c.passed, "{}", c.describe());
}

/// A covariate without variation (a column of ones) has no information: the run fails,
/// naming it.
#[test]
fn cox_names_a_covariate_that_does_not_vary() {
    let text = std::fs::read_to_string(test_data("lung.csv")).unwrap();
    let with_ones: String = text
        .lines()
        .enumerate()
        .map(|(i, l)| format!("{l},{}\n", if i == 0 { "one" } else { "1" }))
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("ones.csv"), with_ones).unwrap();
    let body = cox_toml(
        "path = \"ones.csv\"\nfeatures = [\"age\", \"one\"]",
        3,
        "efron",
        None,
        "",
    );
    let cfg = scenario(tmp.path(), "cox", &body);
    let out = tmp.path().join("run");
    let o = run_to(tmp.path(), &cfg, &out, &[]);
    let s = expect_status(&o, &out, Status::Failed);
    let error = s.error.expect("the failure").message;
    assert!(
        error.contains("covariate `one` does not vary within the risk sets"),
        "{error}"
    );
}
