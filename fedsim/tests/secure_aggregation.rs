//! Secure aggregation: every frame the coordinator receives is recorded; no single site's
//! statistic can be read from them, yet their sum is exact and the result matches statsmodels.

mod common;

use common::*;
use std::path::Path;

const SCALE: f64 = 18_446_744_073_709_551_616.0; // 2^64, the fixed-point scale

fn scenario_text(secure: bool) -> String {
    format!(
        "[scenario]\nname = \"secagg\"\nseed = 4\n[data]\npath = \"{}\"\ntarget = \"progression\"\n[partition]\nkind = \"horizontal\"\nsites = 3\n[algorithm]\nkind = \"linear_regression\"\n[federation]\nsecure_aggregation = {secure}\n",
        test_data("diabetes.csv").display()
    )
}

/// A site's own round-1 statistic (what plain OLS would send): n, column sums, sum of y.
fn moments(csv: &Path) -> Vec<f64> {
    let text = std::fs::read_to_string(csv).unwrap();
    let rows: Vec<Vec<f64>> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|x| x.parse().unwrap()).collect())
        .collect();
    let cols = rows[0].len();
    let mut out = vec![rows.len() as f64];
    out.extend((0..cols).map(|j| rows.iter().map(|r| r[j]).sum::<f64>()));
    out
}

#[test]
fn the_coordinator_learns_only_sums_and_the_result_is_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let frames = tmp.path().join("frames.jsonl");
    let cfg = scenario(tmp.path(), "secure", &scenario_text(true));
    let out = tmp.path().join("secure");
    let o = run_command(tmp.path(), &cfg, &out)
        .env("FEDSIM_RECORD_FRAMES", &frames)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let s = summary(&out);
    let results = s.results.as_ref().expect("results");

    // Same numbers as statsmodels, and as the plain run.
    let r = reference("diabetes.csv", "ols");
    for (field, got) in [("coef", &results.coef), ("se", &results.se)] {
        let d = max_rel(got, &floats(&r[field]));
        assert!(d <= 1e-8, "{field} off statsmodels by {d:e}");
    }
    let plain_cfg = scenario(tmp.path(), "plain", &scenario_text(false));
    let plain_out = tmp.path().join("plain");
    assert!(run_to(tmp.path(), &plain_cfg, &plain_out, &[])
        .status
        .success());
    let plain = summary(&plain_out);
    let d = max_rel(&results.coef, &plain.results.expect("plain results").coef);
    assert!(
        d <= 1e-12,
        "secure vs plain coefficients differ by {d:e} (documented tolerance 1e-12)"
    );

    // What the coordinator received.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&frames)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let replies: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["frame"]["Reply"].is_object())
        .collect();
    assert_eq!(replies.len(), 3 * 3, "3 sites x 3 rounds");
    for l in lines.iter().filter(|l| l["frame"]["Ready"].is_object()) {
        assert_eq!(
            l["frame"]["Ready"]["rows"], 0,
            "a site's size travels only inside masked sums"
        );
    }
    let mut round1: Vec<(String, Vec<u128>)> = Vec::new();
    for l in &replies {
        let reply = &l["frame"]["Reply"];
        // The clear part is only the shape: every number in it is zero.
        let body: Vec<u64> = reply["body"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_u64().unwrap())
            .collect();
        assert!(
            body.iter().filter(|b| **b != 0).count() <= 4,
            "clear body carries data: {body:?}"
        );
        assert!(!reply["masked"].is_null(), "every reply is masked");
        let masked: Vec<u128> = l["masked"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().parse::<u128>().unwrap())
            .collect();
        assert!(!masked.is_empty());
        // Read as numbers, masked values are noise far beyond any real statistic (< 1e9 here).
        for m in &masked {
            let as_value = (*m as i128) as f64 / SCALE;
            assert!(as_value.abs() > 1e9, "a masked value reads as {as_value}");
        }
        if l["round"] == 1 {
            round1.push((l["site"].as_str().unwrap().to_string(), masked));
        }
    }
    // Round 1: no site's own moments can be read off its frame, but the frames' sum is exact.
    round1.sort();
    let truth: Vec<Vec<f64>> = (1..=3)
        .map(|i| moments(&out.join(format!("sites/site-{i}/data.csv"))))
        .collect();
    for ((site, masked), own) in round1.iter().zip(&truth) {
        assert_eq!(masked.len(), own.len());
        for (m, t) in masked.iter().zip(own) {
            let read = (*m as i128) as f64 / SCALE;
            assert!(
                (read - t).abs() > 1e6 * t.abs().max(1.0),
                "{site}: masked {read} reveals {t}"
            );
        }
    }
    let total: Vec<f64> = (0..truth[0].len())
        .map(|k| truth.iter().map(|t| t[k]).sum())
        .collect();
    let sum: Vec<f64> = (0..truth[0].len())
        .map(|k| {
            (round1
                .iter()
                .fold(0u128, |acc, (_, m)| acc.wrapping_add(m[k])) as i128) as f64
                / SCALE
        })
        .collect();
    for (a, b) in sum.iter().zip(&total) {
        assert!(
            (a - b).abs() <= 1e-9 * b.abs().max(1.0),
            "sum of masked frames {a} vs pooled {b}"
        );
    }
    assert_eq!(sum[0], 442.0, "the total count, exactly");
}

/// Issue 20.11: values below the fixed point's resolution (2^-64, about 5.4e-20) counted as 0
/// in the sum without a word. A secure run's summary now states the resolution, and a site that
/// sends such a value says so in its log.
#[test]
fn the_fixed_points_resolution_is_stated_and_tiny_values_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("tiny.sh"),
        r#"read input
case "$1" in
  local) echo '{"sum": {"x": [1e-25, 2.0]}}' ;;
  aggregate) case "$FEDSIM_ROUND" in 0) echo '{"request": 1, "state": 0}' ;; *) echo '{"result": {"two": 2.0}}' ;; esac ;;
  pooled) echo '{"result": {"two": 2.0}}' ;;
esac
"#,
    )
    .unwrap();
    let cfg = scenario(
        tmp.path(),
        "tiny",
        &format!(
            "[scenario]\nname = \"tiny\"\n[data]\npath = \"{}\"\n[partition]\nkind = \"horizontal\"\nsites = 2\n[algorithm]\nkind = \"external\"\nlocal = [\"sh\", \"tiny.sh\", \"local\"]\naggregate = [\"sh\", \"tiny.sh\", \"aggregate\"]\npooled = [\"sh\", \"tiny.sh\", \"pooled\"]\nfiles = [\"tiny.sh\"]\n[federation]\nsecure_aggregation = true\n",
            test_data("diabetes_raw.csv").display()
        ),
    );
    let out = tmp.path().join("run");
    let o = run_to(tmp.path(), &cfg, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = summary(&out);
    let stated = s
        .warnings
        .iter()
        .any(|w| w.kind == "secure_aggregation" && w.message.contains("5.4e-20"));
    assert!(stated, "{}", pretty(&s.warnings));
    let log = std::fs::read_to_string(out.join("logs/merged.jsonl")).unwrap();
    assert!(
        log.lines()
            .filter(|l| l.contains("below secure aggregation's fixed-point resolution"))
            .count()
            >= 2,
        "each site says so"
    );
}
