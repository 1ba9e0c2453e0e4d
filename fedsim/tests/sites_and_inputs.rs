//! Sites are real, separate processes that end with the run; bundles keep secrets to their site;
//! bad data is refused before anything is written.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn ols(dir: &Path, data: &Path, sites: usize) -> std::path::PathBuf {
    Ols::on_file("procs", data, sites).write(dir, "s")
}

#[test]
fn agents_are_separate_processes_that_exit_with_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = ols(tmp.path(), &test_data("diabetes.csv"), 4);
    let out = tmp.path().join("run");
    let child = run_command(tmp.path(), &cfg, &out).spawn().unwrap();
    let controller = child.id();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    let s = summary(&out);
    let sites = &s.sites;
    let mut pids: Vec<u32> = sites.iter().map(|x| x.pid.expect("pid recorded")).collect();
    for (site, &pid) in sites.iter().zip(&pids) {
        let name = &site.name;
        assert_ne!(pid, controller, "{name} ran inside the controller");
        assert!(
            !alive(pid),
            "{name} (pid {pid}) is still running after the run"
        );
        let exit = site.exit.as_ref().expect("how the agent ended");
        assert_eq!(exit.code, Some(0), "{name} did not exit cleanly");
        assert!(!exit.killed, "{name} had to be killed");
        // The process that authenticated and computed is the one that was started, in its own directory.
        let log =
            std::fs::read_to_string(out.join("sites").join(name).join("agent.jsonl")).unwrap();
        assert!(
            log.contains(&format!("\"pid\":{pid}")),
            "{name}'s own log does not carry its pid: {log}"
        );
        assert!(log.contains("round computed"));
    }
    pids.sort();
    pids.dedup();
    assert_eq!(pids.len(), 4, "each site has its own process");
    // The merged timeline holds the controller and every site, in time order.
    merged_log(
        &out,
        &["controller", "site-1", "site-2", "site-3", "site-4"],
    );
}

#[test]
fn each_bundle_holds_its_own_secret_and_nothing_else_does() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = ols(tmp.path(), &test_data("diabetes.csv"), 3);
    let out = tmp.path().join("run");
    let o = fedsim(
        tmp.path(),
        &[
            "run",
            "-c",
            cfg.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let mut tokens = Vec::new();
    for site in ["site-1", "site-2", "site-3"] {
        let env = out.join("sites").join(site).join(".env");
        let mode = std::fs::metadata(&env).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{site}/.env mode {mode:o}");
        let text = std::fs::read_to_string(&env).unwrap();
        assert!(text.contains(&format!("FEDSIM_SITE={site}")));
        let token = text
            .lines()
            .find_map(|l| l.strip_prefix("FEDSIM_TOKEN="))
            .unwrap()
            .to_string();
        assert!(token.len() >= 32);
        tokens.push((site, token));
    }
    let terminal = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    for (site, token) in &tokens {
        assert!(
            !terminal.contains(token.as_str()),
            "{site}'s token reached the terminal"
        );
        for f in files(&out) {
            let own = f.starts_with(out.join("sites").join(site));
            if own {
                continue;
            }
            let bytes = std::fs::read(&f).unwrap();
            let found = bytes.windows(token.len()).any(|w| w == token.as_bytes());
            assert!(!found, "{site}'s token found in {}", f.display());
        }
    }
}

/// Bad data: exit 2, a message naming the problem, and no run directory at all.
fn refused(data_body: Option<&str>, target: &str, want: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data.csv");
    if let Some(body) = data_body {
        std::fs::write(&data, body).unwrap();
    }
    let cfg = scenario(
        tmp.path(),
        "bad",
        &format!(
            "[scenario]\nname = \"bad\"\n[data]\npath = \"data.csv\"\ntarget = \"{target}\"\n[partition]\nkind = \"horizontal\"\nsites = 2\n[algorithm]\nkind = \"linear_regression\"\n"
        ),
    );
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let out = work.join("run");
    for cmd in ["run", "prep", "validate"] {
        let mut args = vec![cmd, "-c", cfg.to_str().unwrap()];
        if cmd != "validate" {
            args.extend(["--out", out.to_str().unwrap()]);
        }
        let o = fedsim(&work, &args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {err}");
        for w in want {
            assert!(err.contains(w), "{cmd}: {err:?} lacks {w:?}");
        }
        assert!(
            std::fs::read_dir(&work).unwrap().next().is_none(),
            "{cmd} wrote something: {:?}",
            files(&work)
        );
    }
}

#[test]
fn unreadable_data_file_is_refused() {
    refused(
        None,
        "y",
        &["data.csv", "cannot read data file", "No such file"],
    );
}

#[test]
fn missing_target_column_is_refused() {
    refused(
        Some("a,b,y\n1,2,3\n4,5,6\n7,8,10\n1,1,1\n"),
        "outcome",
        &["data.csv", "no column \"outcome\"", "a, b, y"],
    );
}

#[test]
fn non_numeric_column_is_refused_with_its_line() {
    refused(
        Some("a,b,y\n1,2,3\n4,five,6\n7,8,10\n1,1,1\n"),
        "y",
        &["data.csv", "line 3", "column \"b\"", "\"five\""],
    );
}

#[test]
fn nan_cell_is_refused() {
    refused(
        Some("a,b,y\n1,2,3\n4,5,6\n7,nan,10\n1,1,1\n"),
        "y",
        &["data.csv", "line 4", "column \"b\"", "missing value"],
    );
}

#[test]
fn a_site_with_too_few_rows_for_the_sites_is_refused() {
    refused(
        Some("a,y\n1,2\n"),
        "y",
        &["data.csv", "cannot split 1 rows into 2 sites"],
    );
}

#[test]
fn a_run_that_fails_writes_a_summary_that_says_so() {
    // A collinear design fails in aggregation: the run directory holds a summary saying "failed".
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("collinear.csv");
    let mut body = String::from("a,b,progression\n");
    for i in 0..50 {
        body.push_str(&format!("{i},{},{}\n", 2 * i, i % 7));
    }
    std::fs::write(&data, body).unwrap();
    let cfg = ols(tmp.path(), &data, 2);
    let out = tmp.path().join("run");
    let s = run_expecting(tmp.path(), &cfg, &out, Status::Failed);
    let error = s.error.as_ref().expect("an error");
    assert!(error.message.contains("singular"), "{}", pretty(error));
    assert!(s.comparison.is_none());
}

#[test]
fn check_names_the_provider_as_the_scenario_spells_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = scenario(
        dir.path(),
        "s",
        &ols_toml("local-check", "diabetes.csv", 2, ""),
    );
    let o = fedsim(dir.path(), &["check", "-c", cfg.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(
        out.starts_with("provider local has no hosts to check"),
        "{out}"
    );
}

#[test]
fn paths_relative_to_the_scenario_are_recorded_and_printed_normalised() {
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join("resources")).unwrap();
    std::fs::create_dir_all(work.path().join("data")).unwrap();
    std::fs::copy(
        test_data("diabetes.csv"),
        work.path().join("data/diabetes.csv"),
    )
    .unwrap();
    let body = |csv: &str| Ols::on_file("norm", Path::new(csv), 2).toml();
    scenario(
        &work.path().join("resources"),
        "s",
        &body("../data/./diabetes.csv"),
    );
    let o = fedsim(
        work.path(),
        &["prep", "-q", "-c", "resources/s.toml", "--out", "prep"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let resolved = std::fs::read_to_string(work.path().join("prep/scenario.toml")).unwrap();
    // The resolved scenario records absolute paths, so it can be reloaded from anywhere.
    let absolute = work.path().join("data/diabetes.csv");
    assert!(
        resolved.contains(&format!("path = \"{}\"", absolute.display()))
            && !resolved.contains(".."),
        "{resolved}"
    );
    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.path().join("prep/plan.json")).unwrap())
            .unwrap();
    assert_eq!(plan["data"], "data/diabetes.csv");

    // An error about the data names the clean path too.
    scenario(
        &work.path().join("resources"),
        "gone",
        &body("../data/gone.csv"),
    );
    let o = fedsim(work.path(), &["validate", "-c", "resources/gone.toml"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("data/gone.csv") && !stderr(&o).contains(".."),
        "{}",
        stderr(&o)
    );
}
