//! Every row of `reference.jsonl` (statsmodels OLS / Logit, numpy SVD) reproduced federated over
//! 3 and 7 local sites, by every route; vertical svd equals horizontal svd.

mod common;

use common::*;
use std::path::{Path, PathBuf};

struct Run {
    dir: PathBuf,
    summary: Summary,
    _tmp: tempfile::TempDir,
}

/// Run a scenario made of `data` + `partition` + `algorithm` TOML bodies and expect success.
fn run(csv: &str, data_extra: &str, partition: &str, algorithm: &str, tolerance: f64) -> Run {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = scenario(
        tmp.path(),
        "s",
        &format!(
            "[scenario]\nname = \"ref\"\nseed = 2\n[data]\npath = \"{}\"\n{data_extra}\n[partition]\n{partition}\n[algorithm]\n{algorithm}\n[compare]\ntolerance = {tolerance:e}\n",
            test_data(csv).display()
        ),
    );
    let dir = tmp.path().join("run");
    let o = run_to(tmp.path(), &cfg, &dir, &[]);
    assert!(
        o.status.success(),
        "{csv} [{partition}] [{algorithm}]: {}\n{}",
        stderr(&o),
        std::fs::read_to_string(dir.join("summary.json")).unwrap_or_default()
    );
    let summary = expect_status(&o, &dir, Status::Succeeded);
    Run {
        dir,
        summary,
        _tmp: tmp,
    }
}

fn horizontal(sites: usize) -> String {
    format!("kind = \"horizontal\"\nsites = {sites}")
}

#[test]
fn logistic_regression_matches_statsmodels_logit() {
    let r = reference("spector.csv", "logit");
    for sites in [3, 7] {
        let run = run(
            "spector.csv",
            "target = \"GRADE\"",
            &horizontal(sites),
            "kind = \"logistic_regression\"",
            1e-6,
        );
        let res = run.summary.results.as_ref().expect("results");
        assert_eq!(serde_json::json!(res.terms), r["terms"]);
        for (field, got) in [("coef", &res.coef), ("se", &res.se)] {
            let d = max_rel(got, &floats(&r[field]));
            assert!(d <= 1e-6, "{sites} sites: {field} off statsmodels by {d:e}");
        }
        let ll = res.loglik.expect("loglik");
        assert!(
            (ll - r["loglik"].as_f64().unwrap()).abs() <= 1e-8,
            "loglik {ll}"
        );
        // Newton ran to convergence, not a fixed number of steps; the trace is recorded.
        let steps = &res.convergence;
        assert!(
            steps.len() >= 3 && *steps.last().unwrap() < 1e-9,
            "{steps:?}"
        );
        assert_eq!(res.iterations.expect("iterations"), steps.len());
    }
}

#[test]
fn ols_on_raw_diabetes_matches_statsmodels_on_3_and_7_sites() {
    let r = reference("diabetes_raw.csv", "ols");
    for sites in [3, 7] {
        let run = run(
            "diabetes_raw.csv",
            "target = \"progression\"",
            &horizontal(sites),
            "kind = \"linear_regression\"",
            1e-8,
        );
        let res = run.summary.results.as_ref().expect("results");
        for (field, got) in [("coef", &res.coef), ("se", &res.se)] {
            let d = max_rel(got, &floats(&r[field]));
            assert!(d <= 1e-8, "{sites} sites: {field} off statsmodels by {d:e}");
        }
    }
}

/// Check singular values and explained variance against numpy, and the vector angles against
/// the centralised baseline, for the given route.
fn check_pca(csv: &str, sites: usize, method: &str, partition: &str) -> Run {
    let r = reference(csv, "pca");
    let zscore = r["scale"].as_bool().unwrap();
    let want_sv = floats(&r["singular_values"]);
    let k = want_sv.len();
    let tol = if method == "gram" { 1e-9 } else { 1e-6 };
    let algorithm =
        format!("kind = \"svd\"\nk = {k}\ncenter = true\nscale = {zscore}\nmethod = \"{method}\"");
    let run = run(csv, "exclude = [\"target\"]", partition, &algorithm, tol);
    let res = run.summary.results.as_ref().expect("results");
    assert_eq!(res.method.as_deref(), Some(method));
    let sv = max_rel(&res.singular_values, &want_sv);
    assert!(
        sv <= tol,
        "{csv} {sites} sites {method}: singular values off numpy by {sv:e}"
    );
    let ev = max_rel(&res.explained_variance, &floats(&r["explained_variance"]));
    assert!(
        ev <= 2.0 * tol,
        "{csv}: explained variance off numpy by {ev:e}"
    );
    // Vector angles against the centralised baseline, for the separated components.
    let checks = &run
        .summary
        .comparison
        .as_ref()
        .expect("a comparison")
        .checks;
    let angles: Vec<_> = checks
        .iter()
        .filter(|c| c.quantity.as_str() == "angle")
        .collect();
    assert_eq!(angles.len(), k);
    let judged = angles.iter().filter(|a| a.note.is_none()).count();
    assert!(judged >= k - 2, "most leading components are separated");
    for a in &angles {
        let deg = a.got;
        assert!(deg <= 90.0);
        if a.note.is_none() {
            assert!(deg < 0.01, "{csv} {method}: {} at {deg} degrees", a.term);
        }
    }
    run
}

#[test]
fn digits_pca_matches_numpy_by_both_routes() {
    for sites in [3, 7] {
        for method in ["gram", "subspace"] {
            let run = check_pca("digits.csv", sites, method, &horizontal(sites));
            if method == "subspace" {
                let trace = &run.summary.results.as_ref().expect("results").convergence;
                assert!(
                    trace.len() > 1 && *trace.last().unwrap() <= 1e-10,
                    "{trace:?}"
                );
            }
        }
    }
}

#[test]
fn zscored_breast_cancer_pca_matches_numpy_by_both_routes() {
    for sites in [3, 7] {
        for method in ["gram", "subspace"] {
            check_pca("breast_cancer.csv", sites, method, &horizontal(sites));
        }
    }
}

fn site_file(run: &Run, site: usize, file: &str) -> String {
    std::fs::read_to_string(run.dir.join(format!("sites/site-{site}/output/{file}")))
        .unwrap_or_else(|e| panic!("site-{site} {file}: {e}"))
}

#[test]
fn vertical_svd_equals_horizontal_and_keeps_feature_vectors_on_sites() {
    for (csv, method) in [("breast_cancer.csv", "gram"), ("digits.csv", "subspace")] {
        let vertical = check_pca(csv, 3, method, "kind = \"vertical\"\nsites = 3");
        let horizontal = check_pca(csv, 3, method, &horizontal(3));
        let tol = if method == "gram" { 1e-9 } else { 1e-6 };
        let d = max_rel(
            &vertical
                .summary
                .results
                .as_ref()
                .expect("results")
                .singular_values,
            &horizontal
                .summary
                .results
                .as_ref()
                .expect("results")
                .singular_values,
        );
        assert!(
            d <= tol,
            "{csv}: vertical vs horizontal singular values differ by {d:e}"
        );
        // Each site wrote the rows of V for its own columns, and only those.
        let plan: serde_json::Value =
            serde_json::from_slice(&std::fs::read(vertical.dir.join("plan.json")).unwrap())
                .unwrap();
        let mut all = Vec::new();
        for site in 1..=3 {
            let cols: Vec<String> = plan["sites"][site - 1]["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_string())
                .collect();
            let text = site_file(&vertical, site, "components.csv");
            let rows: Vec<&str> = text
                .lines()
                .skip(1)
                .map(|l| l.split(',').next().unwrap())
                .collect();
            assert_eq!(rows, cols, "site-{site} components are for its own columns");
            all.extend(cols);
        }
        let features = plan["algorithm"]["features"].as_array().unwrap().len();
        let held = all.len();
        all.sort();
        all.dedup();
        assert_eq!(
            (held, all.len()),
            (features, features),
            "every feature is at exactly one site"
        );
        // The coordinator holds the sample-side vectors only.
        assert!(vertical.dir.join("sample_vectors.csv").exists());
        assert!(!vertical.dir.join("components.csv").exists());
        // Horizontal: the coordinator has V; each site keeps its own projections.
        assert!(horizontal.dir.join("components.csv").exists());
        let total: usize = (1..=3)
            .map(|s| site_file(&horizontal, s, "projections.csv").lines().count() - 1)
            .sum();
        assert_eq!(
            total,
            horizontal.summary.results.as_ref().expect("results").n
        );
    }
}

/// A run on `csv` that must fail, saying `want`.
fn expect_failure(csv: &str, data_extra: &str, algorithm: &str, want: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = scenario(
        tmp.path(),
        "f",
        &format!(
            "[scenario]\nname = \"f\"\n[data]\npath = \"{}\"\n{data_extra}\n[partition]\nkind = \"horizontal\"\nsites = 2\n[algorithm]\n{algorithm}\n",
            Path::new(csv).display()
        ),
    );
    let dir = tmp.path().join("run");
    let s = run_expecting(tmp.path(), &cfg, &dir, Status::Failed);
    let msg = &s.error.expect("an error").message;
    assert!(msg.contains(want), "{msg}");
}

#[test]
fn separation_and_non_convergence_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let sep = tmp.path().join("separated.csv");
    let mut body = String::from("x,y\n");
    for i in 0..40 {
        body.push_str(&format!("{},{}\n", i as f64 / 10.0, u8::from(i >= 20)));
    }
    std::fs::write(&sep, body).unwrap();
    // One feature that separates is found in the data before anything starts (bad input).
    let cfg = scenario(
        tmp.path(),
        "one",
        &format!(
            "[scenario]\nname = \"f\"\n[data]\npath = \"{}\"\ntarget = \"y\"\n[partition]\nkind = \"horizontal\"\nsites = 2\n[algorithm]\nkind = \"logistic_regression\"\n",
            sep.display()
        ),
    );
    let o = run_to(tmp.path(), &cfg, &tmp.path().join("never"), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("feature \"x\" separates the target"));
    // Two that separate together, neither alone: the Newton iterations find it, and name them.
    let both = tmp.path().join("both.csv");
    let mut body = String::from("a,b,y\n");
    for i in 0..60 {
        let (a, b) = (((i * 7) % 20) as f64 - 10.0, ((i * 13) % 17) as f64 - 8.3);
        body.push_str(&format!("{a},{b},{}\n", u8::from(a + b > 0.0)));
    }
    std::fs::write(&both, body).unwrap();
    expect_failure(
        both.to_str().unwrap(),
        "target = \"y\"",
        "kind = \"logistic_regression\"",
        "predicted exactly by the features `a`, `b`",
    );
    let spector = test_data("spector.csv");
    expect_failure(
        spector.to_str().unwrap(),
        "target = \"GRADE\"",
        "kind = \"logistic_regression\"\nmax_iter = 2",
        "did not converge in 2 iterations",
    );
}

/// Issue 19.11: what statsmodels' summary shows besides coef and se (t or z, P, the 95%
/// interval, F and its P, AIC, BIC, LL-Null, the likelihood-ratio test), federated and
/// centralised, held against the reference rows (statsmodels and scipy; LL-Null in closed form)
/// to 1e-12 on each check's scale (P on p max(t², 1): its error follows from t's).
#[test]
fn summary_statistics_match_statsmodels_to_reference_accuracy() {
    let cases = [
        (
            "diabetes.csv",
            "target = \"progression\"",
            "kind = \"linear_regression\"",
            9,
        ),
        (
            "spector.csv",
            "target = \"GRADE\"",
            "kind = \"logistic_regression\"",
            9,
        ),
    ];
    for (csv, data, algorithm, model_numbers) in cases {
        let with_reference = format!(
            "{data}\n[compare]\nreference = \"{}\"\n[algorithm]\n{algorithm}",
            test_data("reference.jsonl").display()
        );
        let tmp = tempfile::tempdir().unwrap();
        let cfg = scenario(
            tmp.path(),
            "s",
            &format!(
                "[scenario]\nname = \"ref\"\nseed = 2\n[data]\npath = \"{}\"\n{}\n[partition]\n{}\n",
                test_data(csv).display(),
                with_reference,
                horizontal(3)
            ),
        );
        let out = tmp.path().join("run");
        let o = run_to(tmp.path(), &cfg, &out, &[]);
        assert!(o.status.success(), "{csv}: {}", stderr(&o));
        let s = &summary(&out);
        let reference = &s.reference.as_ref().expect("a reference").comparison;
        assert!(reference.passed, "{csv}: {}", pretty(reference));
        let checks = &reference.checks;
        let quantities: std::collections::BTreeSet<&str> =
            checks.iter().map(|c| c.quantity.as_str()).collect();
        for q in [
            "t",
            "p",
            "conf_low",
            "conf_high",
            "aic",
            "bic",
            "df_model",
            "df_resid",
        ] {
            assert!(
                quantities.contains(q),
                "{csv}: no {q} check in {quantities:?}"
            );
        }
        let per_model = quantities
            .iter()
            .filter(|q| !["coef", "se", "t", "p", "conf_low", "conf_high"].contains(q))
            .count();
        assert_eq!(per_model, model_numbers, "{csv}: {quantities:?}");
        for c in checks {
            let diff = c.diff;
            assert!(
                diff <= 1e-12,
                "{csv}: {} differs by {diff:e} from statsmodels",
                c.quantity.as_str()
            );
        }
        // The baseline computes them by its own route and agrees as closely.
        let base = s.comparison.as_ref().expect("a comparison");
        assert!(base.max_diff <= 1e-12, "{csv}: {}", pretty(base));
    }
}
