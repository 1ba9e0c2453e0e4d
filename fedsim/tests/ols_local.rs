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
    scenario(
        dir,
        &format!("ols-{sites}-{strategy}"),
        &format!(
            r#"
[scenario]
name = "ols-{sites}-{strategy}"
seed = 11
[data]
path = "{data}"
target = "progression"
[partition]
kind = "horizontal"
sites = {sites}
strategy = "{strategy}"
{extra}
[fleet]
provider = "local"
[algorithm]
kind = "linear_regression"
[compare]
tolerance = 1e-8
"#,
            data = test_data(csv).display()
        ),
    )
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
    let s = summary(&out);
    assert_eq!(s["status"], "succeeded");
    assert_eq!(s["algorithm"], "linear_regression");
    let rows: Vec<u64> = s["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["rows"].as_u64().unwrap())
        .collect();
    assert_eq!(rows.len(), sites);
    assert_eq!(rows.iter().sum::<u64>(), 442);
    let r = reference(csv, "ols");
    assert_eq!(s["results"]["terms"], r["terms"]);
    for field in ["coef", "se"] {
        let fed = max_rel(&floats(&s["results"][field]), &floats(&r[field]));
        let base = max_rel(&floats(&s["baseline"][field]), &floats(&r[field]));
        assert!(
            fed <= 1e-8,
            "{csv} {sites} sites {strategy}: federated {field} off statsmodels by {fed:e}"
        );
        assert!(
            base <= 1e-8,
            "{csv}: baseline {field} off statsmodels by {base:e}"
        );
    }
    let r2 = s["results"]["r2"].as_f64().unwrap();
    assert!((r2 - r["r2"].as_f64().unwrap()).abs() <= 1e-10);
    let sigma2 = s["results"]["sigma2"].as_f64().unwrap();
    assert!((sigma2 / r["sigma2"].as_f64().unwrap() - 1.0).abs() <= 1e-8);
    let c = &s["comparison"];
    assert_eq!(c["passed"], true);
    assert_eq!(c["tolerance"], 1e-8);
    assert!(c["max_diff"].as_f64().unwrap() <= 1e-8);
    assert!(c["max_abs_diff"].as_f64().is_some());
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
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let cfg = root.join("resources/config_linreg.toml");
    let o = run_to(tmp.path(), &cfg, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = summary(&out);
    assert_eq!(s["status"], "succeeded");
    assert_eq!(s["reference"]["passed"], true);
    assert!(s["reference"]["max_diff"].as_f64().unwrap() <= 1e-8);
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
