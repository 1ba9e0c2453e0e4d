//! Secret hygiene: no token or mask seed of any site appears in a log, the report, the JUnit
//! file, the terminal, or anywhere in the run directory outside the site bundles' own `.env`.

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
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(summary(&out)["status"], "succeeded");
    let terminal = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));

    // Every secret of the scenario, from the bundles themselves.
    let mut secrets: Vec<(String, String)> = Vec::new();
    for site in ["site-1", "site-2", "site-3"] {
        let env = std::fs::read_to_string(out.join("sites").join(site).join(".env")).unwrap();
        for line in env.lines() {
            if let Some(token) = line.strip_prefix("FEDSIM_TOKEN=") {
                secrets.push((format!("{site} token"), token.to_string()));
            }
            if let Some(seeds) = line.strip_prefix("FEDSIM_PAIR_SEEDS=") {
                for pair in seeds.split(',') {
                    let (peer, seed) = pair.split_once(':').unwrap();
                    secrets.push((format!("{site}/{peer} mask seed"), seed.to_string()));
                }
            }
        }
    }
    assert_eq!(secrets.len(), 3 + 6, "3 tokens and 2 seeds per site");
    assert!(secrets.iter().all(|(_, s)| s.len() >= 64));

    let mut places: Vec<(String, Vec<u8>)> = vec![
        ("terminal".into(), terminal.into_bytes()),
        ("junit".into(), std::fs::read(&junit).unwrap()),
    ];
    for f in files(&out) {
        let in_bundle_env =
            f.file_name().is_some_and(|n| n == ".env") && f.starts_with(out.join("sites"));
        if !in_bundle_env {
            places.push((f.display().to_string(), std::fs::read(&f).unwrap()));
        }
    }
    assert!(
        places.iter().any(|(p, _)| p.ends_with("report.html"))
            && places.iter().any(|(p, _)| p.ends_with("merged.jsonl"))
    );
    for (what, secret) in &secrets {
        for (place, bytes) in &places {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{what} found in {place}"
            );
        }
    }
}
