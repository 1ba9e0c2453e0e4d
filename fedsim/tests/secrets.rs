//! Secret hygiene: no token, portal password or mask seed of any site (nor the coordinator's
//! portal password) appears in a log, the report, the JUnit file, the terminal, or anywhere in the
//! run directory outside the site bundles' own `.env` and the controller's `controller.env`.

mod common;

use common::*;

#[test]
fn no_secret_leaves_its_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = scenario(
        tmp.path(),
        "secrets",
        &format!(
            "[scenario]\nname = \"secrets\"\n[data]\npath = \"{}\"\ntarget = \"GRADE\"\n[partition]\nkind = \"horizontal\"\nsites = 3\n[algorithm]\nkind = \"logistic_regression\"\n[federation]\nsecure_aggregation = true\n",
            test_data("spector.csv").display()
        ),
    );
    let out = tmp.path().join("run");
    let junit = tmp.path().join("junit.xml");
    let o = fedsim(
        tmp.path(),
        &[
            "run",
            "-vv",
            "-c",
            cfg.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
        ],
    );
    expect_status(&o, &out, Status::Succeeded);
    let terminal = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));

    let secrets = run_secrets(&out, &["site-1", "site-2", "site-3"]);
    assert_eq!(
        secrets.len(),
        3 + 3 + 6 + 1,
        "a token, a password and 2 seeds per site; the coordinator's password"
    );
    let places = assert_secrets_stay_home(
        &out,
        &secrets,
        vec![
            ("terminal".into(), terminal.into_bytes()),
            ("junit".into(), std::fs::read(&junit).unwrap()),
        ],
    );
    assert!(
        places.iter().any(|(p, _)| p.ends_with("report.html"))
            && places.iter().any(|(p, _)| p.ends_with("merged.jsonl"))
    );
}
