//! Every verdict and every status true: a correct result is never judged wrong (a coefficient
//! that is truly 0), references must describe the analysis, bad input is refused before anything
//! is written, JUnit case names are stable, and the shipped reference numbers can be regenerated.

mod common;

use common::*;
use std::path::Path;

/// 40 rows where the OLS coefficient of `z` is exactly 0: `z` is orthogonal to the constant,
/// to `a` and to `y` (blocks of +1 -1 -1 +1 against a linear `a`), yet it has a real standard
/// error. Both sides estimate it as rounding noise of either sign.
fn orthogonal_covariate(dir: &Path) -> std::path::PathBuf {
    let mut csv = String::from("a,z,y\n");
    for i in 0..40 {
        let z = [1.0, -1.0, -1.0, 1.0][i % 4];
        let noise = [0.5, 0.5, -0.5, -0.5][i % 4];
        let a = i as f64 * 0.37 + 1.0;
        csv.push_str(&format!("{a},{z},{}\n", 3.0 + 2.0 * a + noise));
    }
    let p = dir.join("orthogonal.csv");
    std::fs::write(&p, csv).unwrap();
    p
}

#[test]
fn a_coefficient_that_is_truly_zero_passes_on_the_scale_of_its_standard_error() {
    let tmp = tempfile::tempdir().unwrap();
    let data = orthogonal_covariate(tmp.path());
    let mut relative = Vec::new();
    for sites in [2, 3, 5] {
        let cfg = scenario(
            tmp.path(),
            &format!("zero{sites}"),
            &format!(
                "[scenario]\nname = \"zero\"\nseed = {sites}\n[data]\npath = \"{}\"\ntarget = \"y\"\n[partition]\nkind = \"horizontal\"\nsites = {sites}\n[algorithm]\nkind = \"linear_regression\"\n",
                data.display()
            ),
        );
        let out = tmp.path().join(format!("run{sites}"));
        let o = run_to(tmp.path(), &cfg, &out, &[]);
        assert!(o.status.success(), "{sites} sites: {}", stderr(&o));
        let s = expect_status(&o, &out, Status::Succeeded);
        let checks = &s.comparison.as_ref().expect("a comparison").checks;
        let z = checks
            .iter()
            .find(|c| c.quantity.as_str() == "coef" && c.term == "z")
            .unwrap();
        let (got, want, se) = (
            z.got,
            z.want,
            s.baseline.as_ref().expect("a baseline").se[2],
        );
        // Truly zero: rounding noise on both sides, next to a real standard error.
        assert!(got.abs() < 1e-12 && want.abs() < 1e-12, "{got} {want}");
        assert!(se > 0.01, "se {se}");
        // Judged on its uncertainty, not on its own (noise-sized) value.
        assert_eq!(z.scale, se);
        assert!(z.diff < 1e-10);
        assert!(z.passed);
        relative.push((got - want).abs() / want.abs());
        // Every number in the summary is a number: no null where one is expected (only the
        // top-level keys of what did not happen, here `error` and `reference`, are null). A
        // question about the file's JSON itself, so asked of the JSON.
        let text = std::fs::read_to_string(out.join("summary.json")).unwrap();
        let raw: serde_json::Value = serde_json::from_str(&text).unwrap();
        for (key, value) in raw.as_object().unwrap() {
            if value.is_null() {
                assert!(
                    ["error", "reference"].contains(&key.as_str()),
                    "{key}: {text}"
                );
            } else {
                assert!(!value.to_string().contains("null"), "{key}: {text}");
            }
        }
    }
    // Judged relative to itself, as it used to be, this correct run would have failed.
    assert!(relative.iter().any(|r| *r > 1e-8), "{relative:?}");
}

#[test]
fn a_reference_for_another_analysis_is_refused_by_validate_and_run() {
    let tmp = tempfile::tempdir().unwrap();
    let body = format!(
        "[scenario]\nname = \"subset\"\n[data]\npath = \"{}\"\ntarget = \"progression\"\nfeatures = [\"age\", \"bmi\", \"bp\"]\n[partition]\nkind = \"horizontal\"\nsites = 3\n[algorithm]\nkind = \"linear_regression\"\n[compare]\nreference = \"{}\"\n",
        test_data("diabetes.csv").display(),
        test_data("reference.jsonl").display()
    );
    let cfg = scenario(tmp.path(), "subset", &body);
    for args in [
        vec!["validate", "-c", cfg.to_str().unwrap()],
        vec!["run", "-q", "-c", cfg.to_str().unwrap(), "--out", "out"],
    ] {
        let o = fedsim(tmp.path(), &args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("reference.jsonl, line 1") && err.contains("describes another analysis"),
            "{err}"
        );
        assert!(!tmp.path().join("out").exists(), "nothing written");
    }
    // The same scenario with every feature matches the row and runs.
    let full = body.replace("features = [\"age\", \"bmi\", \"bp\"]\n", "");
    let cfg = scenario(tmp.path(), "full", &full);
    let o = fedsim(tmp.path(), &["validate", "-c", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_non_empty_out_directory_is_refused_and_left_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = scenario(tmp.path(), "ols", &ols_toml("ols", "diabetes.csv", 2, ""));
    let out = tmp.path().join("busy");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let o = run_to(tmp.path(), &cfg, &out, &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("busy") && err.contains("not empty"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
    assert_eq!(left.len(), 1, "nothing added to {}", out.display());
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).unwrap(),
        "mine"
    );
}

/// The `name` attributes of a JUnit file's test cases, in order.
fn case_names(xml: &str) -> Vec<String> {
    xml.split("<testcase ")
        .skip(1)
        .map(|c| {
            let start = c.find(" name=\"").unwrap() + 7;
            c[start..start + c[start..].find('"').unwrap()].to_string()
        })
        .collect()
}

#[test]
fn junit_case_names_are_stable_across_seeds_and_a_lost_site_is_a_failed_case() {
    let tmp = tempfile::tempdir().unwrap();
    let mut names = Vec::new();
    for seed in [1, 2] {
        let cfg = scenario(
            tmp.path(),
            &format!("s{seed}"),
            &ols_toml("stable", "diabetes.csv", 3, "")
                .replace("[data]", &format!("seed = {seed}\n[data]")),
        );
        let out = tmp.path().join(format!("run{seed}"));
        let xml = tmp.path().join(format!("junit{seed}.xml"));
        let o = run_to(tmp.path(), &cfg, &out, &["--junit", xml.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        let text = std::fs::read_to_string(&xml).unwrap();
        assert!(text.contains("failures=\"0\""), "{text}");
        names.push(case_names(&text));
    }
    assert_eq!(
        names[0], names[1],
        "same scenario, other seed: the same cases"
    );
    // Per term coef, se, t, p and the interval's bounds; for the model R², adjusted R², loglik,
    // Df Model, Df Residuals, F and its P, AIC and BIC.
    assert_eq!(names[0].len(), 1 + 3 + 6 * 11 + 9);
    assert!(names[0].contains(&"coef[bmi] federated vs centralised".to_string()));
    // Names say what is checked, never a measured value.
    for n in &names[0] {
        let known = n == "run completes"
            || (n.starts_with("site site-") && n.ends_with(" takes part to the end"))
            || (["coef[", "se[", "t[", "p[", "conf_low[", "conf_high["]
                .iter()
                .any(|q| n.starts_with(q))
                && n.ends_with("] federated vs centralised"))
            || [
                "r2", "adj_r2", "loglik", "df_model", "df_resid", "fvalue", "f_pvalue", "aic",
                "bic",
            ]
            .iter()
            .any(|q| *n == format!("{q} federated vs centralised"));
        assert!(known, "{n}");
    }

    // A degraded run: the lost site is a failed case of its own, the checks still pass.
    let cfg = scenario(
        tmp.path(),
        "lost",
        &ols_toml(
            "lost",
            "diabetes.csv",
            4,
            "[federation]\non_dropout = \"continue\"\nmin_sites = 3\nround_timeout_secs = 5\n[[faults]]\nsite = \"site-4\"\nkind = \"kill\"\nround = 1\n",
        ),
    );
    let out = tmp.path().join("lost");
    let xml = tmp.path().join("lost.xml");
    let o = run_to(tmp.path(), &cfg, &out, &["--junit", xml.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let text = std::fs::read_to_string(&xml).unwrap();
    assert!(text.contains("failures=\"1\""), "{text}");
    assert!(
        text.contains(
            "name=\"site site-4 takes part to the end\"><failure message=\"lost in round 1"
        ),
        "{text}"
    );
}

#[test]
fn a_portal_that_cannot_start_ends_in_a_failed_summary() {
    let tmp = tempfile::tempdir().unwrap();
    // The portal's address is taken by someone else.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let cfg = scenario(
        tmp.path(),
        "portal",
        &ols_toml(
            "portal",
            "diabetes.csv",
            2,
            &format!("[gui]\nportal = \"{addr}\"\n"),
        ),
    );
    let out = tmp.path().join("run");
    let s = run_expecting(tmp.path(), &cfg, &out, Status::Failed);
    let error = s.error.as_ref().expect("an error");
    assert_eq!(error.phase.as_deref(), Some("enrol"));
    assert!(error.message.contains(&addr.to_string()), "{}", pretty(&s));
    assert!(out.join("report.html").exists());
}

#[test]
fn make_reference_regenerates_the_shipped_numbers() {
    let have = std::process::Command::new("python3")
        .args(["-c", "import statsmodels, numpy, pandas"])
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        eprintln!(
            "SKIPPED: python3 with statsmodels, numpy and pandas is not installed \
             (pip install statsmodels); .ci/run installs them"
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let made = tmp.path().join("reference.jsonl");
    let script = root().join("test_data/make_reference.py");
    let o = std::process::Command::new("python3")
        .arg(&script)
        .arg("--out")
        .arg(&made)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = |p: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (shipped, regenerated) = (rows(&test_data("reference.jsonl")), rows(&made));
    assert_eq!(shipped.len(), regenerated.len());
    for (a, b) in shipped.iter().zip(&regenerated) {
        for key in [
            "csv", "kind", "target", "terms", "n", "k", "center", "scale",
        ] {
            assert_eq!(a.get(key), b.get(key), "{key} of {}", a["csv"]);
        }
        for key in [
            "coef",
            "se",
            "t",
            "p",
            "conf_low",
            "conf_high",
            "singular_values",
            "explained_variance",
        ] {
            let (Some(x), Some(y)) = (a.get(key), b.get(key)) else {
                assert_eq!(a.get(key), b.get(key), "{key} of {}", a["csv"]);
                continue;
            };
            // A crosstab's `p` is one number, a regression's a list.
            let list = |v: &serde_json::Value| match v {
                serde_json::Value::Number(_) => serde_json::json!([v]),
                v => v.clone(),
            };
            // Other library versions may differ in the last bits, no more.
            let d = max_rel(&floats(&list(y)), &floats(&list(x)));
            assert!(
                d <= 1e-10,
                "{} {key}: regenerated differs by {d:e}",
                a["csv"]
            );
        }
        for key in [
            "r2",
            "adj_r2",
            "loglik",
            "llnull",
            "pseudo_r2",
            "llr",
            "llr_pvalue",
            "df_model",
            "df_resid",
            "fvalue",
            "f_pvalue",
            "aic",
            "bic",
        ] {
            let (Some(x), Some(y)) = (a.get(key), b.get(key)) else {
                assert_eq!(a.get(key), b.get(key), "{key} of {}", a["csv"]);
                continue;
            };
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-10 * x.abs().max(1.0),
                "{} {key}: regenerated {y} vs shipped {x}",
                a["csv"]
            );
        }
    }
}
