//! `fedsim run` end to end on `local` sites: federated OLS equals statsmodels for every split.

mod common;

use common::*;
use std::path::Path;

fn ols_scenario(dir: &Path, csv: &str, sites: usize, strategy: &str) -> std::path::PathBuf {
    let extra = match strategy {
        "sizes" => {
            let w: Vec<f64> = (1..=sites).map(|i| i as f64).collect();
            let total: f64 = w.iter().sum();
            let sizes: Vec<String> = w.iter().map(|x| format!("{}", x / total)).collect();
            format!("sizes = [{}]", sizes.join(", "))
        }
        "dirichlet" => "alpha = 0.5".to_string(),
        _ => String::new(),
    };
    let name = format!("ols-{sites}-{strategy}");
    Ols::on(&name, csv, sites)
        .seed(11)
        .partition(&format!("strategy = \"{strategy}\"\n{extra}"))
        .extra("[fleet]\nprovider = \"local\"\n[compare]\ntolerance = 1e-8\n")
        .write(dir, &name)
}

fn check_against_statsmodels(csv: &str, sites: usize, strategy: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = ols_scenario(tmp.path(), csv, sites, strategy);
    let out = tmp.path().join("run");
    let o = run_to(tmp.path(), &cfg, &out, &[]);
    assert!(
        o.status.success(),
        "{csv} {sites} {strategy}: {}",
        stderr(&o)
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        out.display().to_string(),
        "run dir printed last"
    );
    let s = expect_status(&o, &out, Status::Succeeded);
    assert_eq!(s.algorithm, "linear_regression");
    let rows: Vec<usize> = s.sites.iter().map(|x| x.rows).collect();
    assert_eq!(rows.len(), sites);
    assert_eq!(rows.iter().sum::<usize>(), 442);
    let r = reference(csv, "ols");
    let results = s.results.as_ref().expect("results");
    let baseline = s.baseline.as_ref().expect("a baseline");
    assert_eq!(serde_json::json!(results.terms), r["terms"]);
    for (field, got, centralised) in [
        ("coef", &results.coef, &baseline.coef),
        ("se", &results.se, &baseline.se),
    ] {
        let fed = max_rel(got, &floats(&r[field]));
        let base = max_rel(centralised, &floats(&r[field]));
        assert!(
            fed <= 1e-8,
            "{csv} {sites} sites {strategy}: federated {field} off statsmodels by {fed:e}"
        );
        assert!(
            base <= 1e-8,
            "{csv}: baseline {field} off statsmodels by {base:e}"
        );
    }
    let r2 = results.r2.expect("r2");
    assert!((r2 - r["r2"].as_f64().unwrap()).abs() <= 1e-10);
    let sigma2 = results.sigma2.expect("sigma2");
    assert!((sigma2 / r["sigma2"].as_f64().unwrap() - 1.0).abs() <= 1e-8);
    let c = s.comparison.as_ref().expect("a comparison");
    assert!(c.passed);
    assert_eq!(c.tolerance, 1e-8);
    assert!(c.max_diff <= 1e-8);
    assert!(c.max_abs_diff.is_finite());
}

#[test]
fn diabetes_matches_statsmodels_on_1_3_10_sites_for_every_strategy() {
    for strategy in ["uniform", "sizes", "dirichlet"] {
        for sites in [1, 3, 10] {
            check_against_statsmodels("diabetes.csv", sites, strategy);
        }
    }
}

#[test]
fn ill_conditioned_raw_diabetes_matches_statsmodels() {
    check_against_statsmodels("diabetes_raw.csv", 7, "uniform");
}

#[test]
fn shipped_scenario_runs_and_checks_its_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let cfg = root().join("resources/config_linreg.toml");
    let s = run_expecting(tmp.path(), &cfg, &out, Status::Succeeded);
    let reference = s.reference.expect("a reference").comparison;
    assert!(reference.passed);
    assert!(reference.max_diff <= 1e-8);
}

#[test]
fn same_seed_gives_the_same_split_and_bundles() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = ols_scenario(tmp.path(), "diabetes.csv", 4, "dirichlet");
    let mut hashes = Vec::new();
    for i in 0..2 {
        let out = tmp.path().join(format!("prep{i}"));
        let o = fedsim(
            tmp.path(),
            &[
                "prep",
                "-q",
                "-c",
                cfg.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let plan: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("plan.json")).unwrap()).unwrap();
        let sites: Vec<(String, String)> = plan["sites"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["data_sha256"].as_str().unwrap().to_string(),
                    s["source_rows"].to_string(),
                )
            })
            .collect();
        hashes.push(sites);
    }
    assert_eq!(hashes[0], hashes[1]);
}
