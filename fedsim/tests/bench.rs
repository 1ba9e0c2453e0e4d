//! `fedsim bench --quick`: both cases run for real, succeed, and report ratios and traffic.
//! No timing is asserted (speed is read from the report, never tested against a clock).

mod common;

use common::*;

#[test]
fn quick_bench_reports_ratios_and_aggregate_sized_traffic() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("bench");
    let o = fedsim(
        tmp.path(),
        &["bench", "-q", "--quick", "--out", out.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let table = stderr(&o);
    assert!(
        table.contains("rounds/base")
            && table.contains("bench-ols")
            && table.contains("lowrank-svd"),
        "{table}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("bench.json")).unwrap()).unwrap();
    assert_eq!(report["quick"], true);
    let cases = report["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    for c in cases {
        assert_eq!(c["status"], "succeeded", "{c:#}");
        for key in [
            "rounds_over_baseline",
            "federated_over_baseline",
            "baseline_secs",
            "rounds_secs",
        ] {
            let v = c[key].as_f64().unwrap();
            assert!(v.is_finite() && v > 0.0, "{key} = {v}");
        }
        assert!(c["max_diff"].as_f64().unwrap() < 1e-6);
    }
    // svd: each site sends d x p doubles per subspace round, whatever its number of rows.
    let svd = &cases[1];
    let (d, p) = (svd["cols"].as_u64().unwrap(), 10 + 10);
    let payload = 8 * d * p;
    let rounds: Vec<&serde_json::Value> = svd["traffic"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["round"].as_u64().unwrap() >= 2)
        .collect();
    assert!(rounds.len() >= 2, "subspace iterations recorded");
    for t in &rounds[..rounds.len() - 1] {
        let sent = t["max_bytes_sent_per_site"].as_u64().unwrap();
        assert!(
            sent >= payload && sent < payload + 4096,
            "sent {sent} bytes for a {d} x {p} block"
        );
    }
    // OLS: the Gram round sends d x d doubles, far less than the site's rows.
    let ols = &cases[0];
    let d = ols["cols"].as_u64().unwrap();
    let gram = ols["traffic"][2]["max_bytes_sent_per_site"]
        .as_u64()
        .unwrap();
    assert!(
        gram >= 8 * d * d && gram < 8 * d * d + 4096,
        "Gram round sent {gram} bytes"
    );
}

#[test]
fn sites_bench_reports_each_count_with_its_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sites");
    let o = fedsim(
        tmp.path(),
        &[
            "bench",
            "-q",
            "--sites",
            "2,8",
            "--rows",
            "2000",
            "--workload",
            "logistic",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("total MiB"), "{}", stderr(&o));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("sites.json")).unwrap()).unwrap();
    let cases = report["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    for (c, sites) in cases.iter().zip([2, 8]) {
        assert_eq!(c["sites"], sites);
        assert_eq!(c["status"], "succeeded", "{c:#}");
        assert!(c["rounds"].as_u64().unwrap() >= 3, "Newton rounds: {c:#}");
        // The controller is part of the total; agents add to it.
        let (total, controller) = (
            c["total_pss_mib"].as_f64().unwrap(),
            c["controller_pss_mib"].as_f64().unwrap(),
        );
        assert!(controller > 0.0 && total >= controller, "{c:#}");
        assert!(c["largest_site_peak_rss_mib"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn the_protocol_bench_measures_external_rounds_against_the_builtin_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("protocol");
    let o = fedsim(
        tmp.path(),
        &[
            "bench",
            "-q",
            "--sites",
            "3",
            "--rows",
            "300",
            "--workload",
            "external",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("external protocol: mean round"),
        "{}",
        stderr(&o)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("sites.json")).unwrap()).unwrap();
    let c = &report["cases"][0];
    assert_eq!(c["status"], "succeeded", "{c:#}");
    assert_eq!(c["rounds"], 2, "the moments example's two rounds");
    let (ext, builtin) = (
        c["mean_round_secs"].as_f64().unwrap(),
        c["builtin_mean_round_secs"].as_f64().unwrap(),
    );
    assert!(ext > 0.0 && builtin > 0.0, "{c:#}");
    let ratio = c["round_ratio_to_builtin"].as_f64().unwrap();
    assert!((ratio - ext / builtin).abs() <= 1e-9 * ratio, "{c:#}");
    // The built-in run sits beside the external one, made by the same command.
    assert!(out.join("sites-3/summary.json").is_file());
    assert!(out.join("sites-external-3/summary.json").is_file());
}
