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

/// A Python that imports flwr, found as `fedsim bench` finds it: `FEDSIM_FLWR_PYTHON`, else
/// `~/.cache/fedsim-flwr/bin/python3`, else `python3`.
fn flwr_python() -> Option<std::path::PathBuf> {
    let candidates: Vec<std::path::PathBuf> = match std::env::var_os("FEDSIM_FLWR_PYTHON") {
        Some(p) => vec![p.into()],
        None => std::env::var_os("HOME")
            .map(|h| std::path::Path::new(&h).join(".cache/fedsim-flwr/bin/python3"))
            .into_iter()
            .chain([std::path::PathBuf::from("python3")])
            .collect(),
    };
    candidates.into_iter().find(|p| {
        std::process::Command::new(p)
            .args(["-c", "import flwr, numpy"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// `program` with `args`, run in a network namespace of its own with only loopback up: Ray
/// binds every interface and advertises the machine's address, and tests use loopback only.
/// None where no namespace can be made (root is needed).
fn loopback_only(
    program: impl AsRef<std::ffi::OsStr>,
    args: &[&str],
) -> Option<std::process::Command> {
    let probe = std::process::Command::new("unshare")
        .args(["--net", "ip", "link", "set", "lo", "up"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED: no network namespace here (unshare --net needs root, and ip)");
        return None;
    }
    let mut c = std::process::Command::new("unshare");
    c.args([
        "--net",
        "sh",
        "-c",
        "ip link set lo up && exec \"$@\"",
        "sh",
    ])
    .arg(program)
    .args(args);
    Some(c)
}

#[test]
fn the_logistic_sites_bench_runs_flower_message_api_beside_it() {
    if flwr_python().is_none() {
        eprintln!("SKIPPED: no Python with flwr (pip install \"flwr[simulation]==1.42.*\" numpy into ~/.cache/fedsim-flwr, or set FEDSIM_FLWR_PYTHON)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("flower");
    let Some(mut bench) = loopback_only(
        bin(),
        &[
            "bench",
            "-q",
            "--sites",
            "10",
            "--rows",
            "2000",
            "--workload",
            "logistic",
            "--out",
            out.to_str().unwrap(),
        ],
    ) else {
        return;
    };
    let child = bench
        .current_dir(tmp.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // Nothing it started is left: not the script, not one of Ray's processes.
    let left = leftovers(pid, tmp.path());
    assert!(left.is_empty(), "still running: {left:#?}");

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("sites.json")).unwrap()).unwrap();
    let flower = &report["flower"];
    assert_eq!(flower["status"], "ran", "{flower:#}");
    assert_eq!(flower["api"], "message");
    assert!(
        flower["flwr"].as_str().unwrap().starts_with("1."),
        "{flower:#}"
    );
    let c = &report["cases"][0];
    assert_eq!(c["status"], "succeeded", "{c:#}");
    let f = &c["flower"];
    // The same sites and as many Newton rounds as fedsim took, each round timed.
    assert_eq!(f["sites"], 10);
    assert_eq!(f["rounds"], c["rounds"], "{c:#}");
    assert_eq!(flower["rounds"], c["rounds"]);
    let rounds = floats(&f["round_secs"]);
    assert_eq!(rounds.len() as u64, c["rounds"].as_u64().unwrap());
    let num = |v: &serde_json::Value, k: &str| {
        v[k].as_f64()
            .unwrap_or_else(|| panic!("{k} is not a number: {v:#}"))
    };
    let mean = rounds.iter().sum::<f64>() / rounds.len() as f64;
    assert!(
        (num(f, "mean_round_secs") - mean).abs() <= 1e-9 * mean,
        "{f:#}"
    );
    assert!(num(f, "run_secs") >= rounds.iter().sum::<f64>(), "{f:#}");
    assert!(num(f, "total_pss_mib") > 0.0, "{f:#}");
    // Each ratio is Flower's figure over fedsim's, from the same report.
    for (ratio, key) in [
        ("run_ratio", "run_secs"),
        ("first_round_ratio", "first_round_secs"),
        ("mean_round_ratio", "mean_round_secs"),
        ("memory_ratio", "total_pss_mib"),
    ] {
        let (r, want) = (num(f, ratio), num(f, key) / num(c, key));
        assert!(
            r > 0.0 && (r - want).abs() <= 1e-9 * want,
            "{ratio} = {r}, {want} expected"
        );
    }
    // The federated coefficients agree with the pooled Newton fit of the same rows, which the
    // script computed with numpy; checked here again from the numbers.
    assert_eq!(f["agrees"], true, "{f:#}");
    let (beta, pooled) = (
        floats(&f["coefficients"]),
        floats(&f["pooled_coefficients"]),
    );
    assert_eq!(beta.len(), 3, "intercept and 2 features");
    let diff = beta
        .iter()
        .zip(&pooled)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(diff <= 1e-6, "{beta:?} against {pooled:?}");
    assert!((num(f, "max_diff") - diff).abs() <= 1e-15, "{f:#}");
    // The table has Flower's lines and the ratios.
    let table = stderr(&o);
    assert!(
        table.contains("(message API, simulation engine)")
            && table.contains("x run")
            && table.contains("x MiB"),
        "{table}"
    );
    let line = table
        .lines()
        .skip_while(|l| !l.starts_with("Flower "))
        .find(|l| l.split_whitespace().next() == Some("10"))
        .unwrap_or_else(|| panic!("no Flower line for 10 sites: {table}"));
    let cols: Vec<f64> = line
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(cols.len(), 11, "{line}");
    assert!((cols[7] - num(f, "run_ratio")).abs() <= 0.051, "{line}");
    assert!(
        (cols[10] - num(f, "memory_ratio")).abs() <= 0.0051,
        "{line}"
    );
    // The script it ran is in the bench folder, with Flower's log.
    assert!(out.join("flower_message.py").is_file() && out.join("flower.log").is_file());
}

#[test]
fn without_flwr_the_logistic_sites_bench_says_so_and_carries_on() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("noflwr");
    let missing = tmp.path().join("no-such-python");
    let o = std::process::Command::new(bin())
        .args(["bench", "-q", "--sites", "2", "--rows", "500"])
        .args(["--workload", "logistic", "--out", out.to_str().unwrap()])
        .env("FEDSIM_FLWR_PYTHON", &missing)
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let table = stderr(&o);
    let skipped: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("Flower: skipped"))
        .collect();
    assert_eq!(skipped.len(), 1, "{table}");
    assert!(skipped[0].contains("no-such-python"), "{}", skipped[0]);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("sites.json")).unwrap()).unwrap();
    assert_eq!(report["flower"]["status"], "skipped", "{report:#}");
    assert_eq!(report["cases"][0]["status"], "succeeded");
    assert!(report["cases"][0].get("flower").is_none(), "{report:#}");

    // --no-flower does not look for it at all.
    let out = tmp.path().join("noflower");
    let o = fedsim(
        tmp.path(),
        &[
            "bench",
            "-q",
            "--sites",
            "2",
            "--rows",
            "500",
            "--workload",
            "logistic",
            "--no-flower",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("sites.json")).unwrap()).unwrap();
    assert_eq!(report["flower"]["reason"], "--no-flower", "{report:#}");
}

#[test]
fn the_flower_script_fails_when_its_coefficients_miss_the_pooled_fit() {
    let Some(python) = flwr_python() else {
        eprintln!("SKIPPED: no Python with flwr");
        return;
    };
    // One Newton step from zero is far from the optimum: the pooled check must catch it.
    let tmp = tempfile::tempdir().unwrap();
    let script = root().join("bench/flower_message.py");
    let Some(mut flower) = loopback_only(
        python,
        &[
            script.to_str().unwrap(),
            "--sites",
            "2",
            "--rows",
            "1000",
            "--rounds",
            "1",
        ],
    ) else {
        return;
    };
    let o = flower
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let (out, err) = (String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(
        err.contains("FAILED: the coefficients with [2] sites"),
        "{err}"
    );
    let json = out
        .lines()
        .find_map(|l| l.strip_prefix("FLOWER_JSON "))
        .unwrap_or_else(|| panic!("no result line: {out}"));
    let report: serde_json::Value = serde_json::from_str(json).unwrap();
    let c = &report["cases"][0];
    assert_eq!(c["agrees"], false, "{c:#}");
    assert!(c["max_diff"].as_f64().unwrap() > 1e-3, "{c:#}");
}
