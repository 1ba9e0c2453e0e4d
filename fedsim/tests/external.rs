//! The user's own algorithm through the language-neutral protocol: real processes at real
//! (local) sites, checked like the built-in ones, and every way a step can go wrong named.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn examples() -> PathBuf {
    root()
        .join("algorithms/examples")
        .canonicalize()
        .expect("algorithms/examples present")
}

/// The shipped moments example's scenario (3 sites, raw diabetes data), `extra` appended, in
/// `dir` beside copies of the example's files (its commands and files are relative to it).
fn moments(dir: &Path, name: &str, extra: &str) -> PathBuf {
    for e in std::fs::read_dir(examples()).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "py") {
            std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
        }
    }
    let text = std::fs::read_to_string(examples().join("moments.toml"))
        .unwrap()
        .replace("name = \"moments\"", &format!("name = \"{name}\""))
        .replace(
            "\"../../test_data/",
            &format!("\"{}/", test_data("").display()),
        );
    scenario(dir, name, &format!("{text}\n{extra}"))
}

/// The pooled mean and covariance of the raw diabetes data, from numpy, if it is installed.
fn numpy_moments() -> Option<(Vec<f64>, Vec<Vec<f64>>)> {
    let o = Command::new("python3")
        .args([
            "-c",
            "import json,sys,numpy as np; x=np.genfromtxt(sys.argv[1],delimiter=',',skip_header=1); print(json.dumps([x.mean(0).tolist(), np.cov(x, rowvar=False).tolist()]))",
            test_data("diabetes_raw.csv").to_str().unwrap(),
        ])
        .output()
        .ok()?;
    if !o.status.success() {
        eprintln!("SKIPPED numpy cross-check: {}", stderr(&o));
        return None;
    }
    serde_json::from_slice(&o.stdout).ok()
}

#[test]
fn the_moments_example_equals_the_pooled_run_and_numpy() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = moments(tmp.path(), "moments", "");
    let out = tmp.path().join("run");
    let s = run_expecting(tmp.path(), &cfg, &out, Status::Succeeded);
    let c = s.comparison.as_ref().expect("a comparison");
    assert!(c.max_diff <= 1e-12, "{}", pretty(c));
    assert!(c.passed);
    // The example's own results, as it wrote them.
    let fed = &s.results.as_ref().expect("results").named;
    let base = &s.baseline.as_ref().expect("a baseline").named;
    assert_eq!(fed["n"], 442);
    assert_eq!(base["n"], 442);
    // Every number of both results is a check.
    let checks = &c.checks;
    assert_eq!(
        checks.len(),
        1 + 11 + 11 * 11,
        "n, 11 means, an 11 x 11 covariance"
    );
    // Labelled by the example's --columns (issue 19.9): cov[bmi,bp], not a position.
    assert!(checks.iter().any(|k| k.term == "cov[bmi,bp]"));
    assert!(checks.iter().any(|k| k.term == "mean[progression]"));
    if let Some((mean, cov)) = numpy_moments() {
        assert!(max_rel(&floats(&fed["mean"]["values"]), &mean) < 1e-12);
        for (row, want) in fed["cov"]["values"].as_array().unwrap().iter().zip(&cov) {
            assert!(max_rel(&floats(row), want) < 1e-11);
        }
    }
    // Two rounds, each with every site's step and the aggregate's time in it.
    let m = metrics(&out);
    let rounds: Vec<_> = m.rounds.iter().filter(|r| r.round > 0).collect();
    assert_eq!(rounds.len(), 2);
    for r in rounds {
        for site in &r.sites {
            assert!(site.compute_secs > 0.0, "{}", site.site);
        }
    }
    // The sites ran the shipped files in their own directories, and nothing else of ours.
    for i in 1..=3 {
        assert!(out.join(format!("sites/site-{i}/moments.py")).is_file());
    }
    // Issue 19.9: integer codes reach the step as written (`2`, not `2.0`).
    let data = std::fs::read_to_string(out.join("sites/site-1/data.csv")).unwrap();
    let sex: Vec<&str> = data
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap())
        .collect();
    assert!(
        !sex.is_empty() && sex.iter().all(|v| *v == "1" || *v == "2"),
        "{sex:?}"
    );
    let report = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        report.contains("cov[bmi,bp]"),
        "the report shows the named results"
    );
}

/// Issue 19.1: the pooled step ran in `workdir` with a `FEDSIM_DATA` relative to where fedsim
/// was started, so the shipped example failed whenever the scenario and the run directory were
/// given as relative paths. Every path a step is handed is absolute.
#[test]
fn relative_scenario_and_run_directory_work_from_another_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let examples = tmp.path().join("algorithms/examples");
    std::fs::create_dir_all(&examples).unwrap();
    moments(&examples, "moments", "");
    let o = Command::new(bin())
        .args([
            "run",
            "-q",
            "-c",
            "algorithms/examples/moments.toml",
            "--out",
            "runs/m",
        ])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let s = expect_status(&o, &tmp.path().join("runs/m"), Status::Succeeded);
    assert_eq!(s.baseline.expect("a baseline").named["n"], 442);
}

#[test]
fn secure_aggregation_masks_the_sum_replies() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = moments(
        tmp.path(),
        "moments-secure",
        "[federation]\nsecure_aggregation = true\n",
    );
    let out = tmp.path().join("run");
    let s = run_expecting(tmp.path(), &cfg, &out, Status::Succeeded);
    assert!(s.comparison.expect("a comparison").max_diff <= 1e-12);
}

/// The moments scenario whose local step is a script, shipped with it: the site `bad`
/// misbehaves with `how`, the others run the example's own local step.
fn sabotaged(dir: &Path, name: &str, bad: &str, how: &str, extra: &str) -> PathBuf {
    let cfg = moments(dir, name, extra);
    let text = std::fs::read_to_string(&cfg).unwrap();
    let local = text
        .lines()
        .find(|l| l.starts_with("local = "))
        .expect("a local command")
        .to_string();
    let mut words: Vec<String> =
        serde_json::from_str(local.trim_start_matches("local = ")).unwrap();
    words.remove(0);
    std::fs::write(
        dir.join("local.sh"),
        format!(
            "if [ \"$FEDSIM_SITE\" = {bad} ]; then {how}; fi\nexec python3 {}\n",
            words.join(" ")
        ),
    )
    .unwrap();
    let text = text
        .replace(&local, "local = [\"sh\", \"local.sh\"]")
        .replace("files = [", "files = [\"local.sh\", ");
    std::fs::write(&cfg, text).unwrap();
    cfg
}

/// The sabotaged run, which must fail; its summary.
fn failed_run(name: &str, bad: &str, how: &str, extra: &str) -> Summary {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = sabotaged(tmp.path(), name, bad, how, extra);
    let out = tmp.path().join("run");
    run_expecting(tmp.path(), &cfg, &out, Status::Failed)
}

#[test]
fn a_failing_step_is_named_with_its_site_round_code_and_message() {
    let s = failed_run(
        "exit3",
        "site-2",
        "echo 'cannot open the registry extract' >&2; exit 3",
        "",
    );
    let e = s.error.expect("a failed run says why");
    assert_eq!(e.site.as_deref(), Some("site-2"));
    let m = &e.message;
    assert!(
        m.contains("round 1")
            && m.contains("exited with code 3")
            && m.contains("cannot open the registry extract"),
        "{m}"
    );
}

#[test]
fn malformed_json_is_named() {
    let s = failed_run("badjson", "site-3", "echo '{\"sum\": [1, 2'; exit 0", "");
    let e = s.error.expect("a failed run says why");
    assert_eq!(e.site.as_deref(), Some("site-3"));
    let m = &e.message;
    assert!(
        m.contains("invalid JSON") && m.contains("{\\\"sum\\\": [1, 2")
            || m.contains("{\"sum\": [1, 2"),
        "{m}"
    );
}

#[test]
fn a_hanging_step_hits_the_round_deadline_and_is_stopped() {
    let marker = "fedsim-hang-4471";
    let s = failed_run(
        "hang",
        "site-1",
        &format!("python3 -c 'import time; time.sleep(600)' {marker}; exit 0"),
        "[federation]\nround_timeout_secs = 2\n",
    );
    let e = s.error.expect("a failed run says why");
    assert_eq!(e.site.as_deref(), Some("site-1"));
    let m = &e.message;
    assert!(m.contains("deadline"), "{m}");
    // The step and what it started went with the run.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let left = pgrep(marker);
    assert!(left.is_empty(), "left running: {left}");
}

#[test]
fn a_lost_site_may_be_left_behind_when_the_scenario_allows() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = sabotaged(
        tmp.path(),
        "dropout",
        "site-3",
        "sleep 600",
        "[federation]\nround_timeout_secs = 2\non_dropout = \"continue\"\nmin_sites = 2\n",
    );
    let out = tmp.path().join("run");
    let s = run_expecting(tmp.path(), &cfg, &out, Status::Degraded);
    assert_eq!(s.lost_sites[0].site, "site-3");
    assert!(
        s.comparison.expect("a comparison").passed,
        "the survivors' pooled run agrees"
    );
}

#[test]
fn bad_algorithm_entries_are_refused_at_validate() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = moments(tmp.path(), "bad", "");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let cases = [
        (
            text.lines()
                .filter(|l| !l.starts_with("aggregate = "))
                .collect::<Vec<_>>()
                .join("\n"),
            vec!["missing key `aggregate`"],
        ),
        (
            text.replace("files = [", "files = [\"nowhere.py\", "),
            vec!["algorithm.files.0", "no such file"],
        ),
        (
            text.replace("pooled = [\"python3\"", "pooled = [\"python-not-here\""),
            vec!["algorithm.pooled", "\"python-not-here\" not found"],
        ),
        (
            text.replace("files = [", "files = [\"../escape.py\", "),
            vec!["algorithm.files.0", "inside the scenario's directory"],
        ),
    ];
    for (body, needles) in cases {
        std::fs::write(&cfg, &body).unwrap();
        let o = fedsim(tmp.path(), &["validate", "-c", cfg.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{body}\n{}", stderr(&o));
        for n in needles {
            assert!(stderr(&o).contains(n), "{:?} lacks {n:?}", stderr(&o));
        }
    }
}

#[test]
fn the_newton_example_gives_statsmodels_logit() {
    let has_numpy = Command::new("python3")
        .args(["-c", "import numpy"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_numpy {
        eprintln!("SKIPPED: logistic_newton.py needs numpy, which python3 here does not have");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(examples()).unwrap().flatten() {
        std::fs::copy(e.path(), tmp.path().join(e.file_name())).unwrap();
    }
    let text = std::fs::read_to_string(examples().join("logistic.toml"))
        .unwrap()
        .replace(
            "\"../../test_data/",
            &format!("\"{}/", test_data("").display()),
        );
    let cfg = scenario(tmp.path(), "logistic", &text);
    let out = tmp.path().join("run");
    let o = run_to(tmp.path(), &cfg, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = summary(&out);
    let want = reference("spector.csv", "logit");
    // The example's own results, as it wrote them.
    let fed = &s.results.as_ref().expect("results").named;
    for q in ["coef", "se"] {
        let d = max_rel(&floats(&fed[q]), &floats(&want[q]));
        assert!(d < 1e-8, "{q} differs from statsmodels by {d:e}");
    }
    let ll = (fed["loglik"].as_f64().unwrap() - want["loglik"].as_f64().unwrap()).abs();
    assert!(ll < 1e-8, "loglik differs by {ll:e}");
    assert!(s.comparison.expect("a comparison").max_diff < 1e-10);
}

/// Issue 20.2: a federated number about 1e293 away from the pooled one made plotters' log axis
/// spin for minutes while no summary existed. Plots now clamp their range to finite bounds and
/// summary.json is written before the report: the run ends failed (the comparison fails), with
/// its summary and its report, and a guard kills it if it ever hangs again.
#[test]
fn a_result_far_from_the_pooled_one_gets_its_summary_and_report() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("far.sh"),
        r#"read input
case "$1" in
  local) echo '{"sum": {"x": 1}}' ;;
  aggregate) case "$FEDSIM_ROUND" in 0) echo '{"request": 1, "state": 0}' ;; *) echo '{"result": {"v": [1e293, 2.5, -1e-300]}}' ;; esac ;;
  pooled) echo '{"result": {"v": [0.5, 2.5, 0]}}' ;;
esac
"#,
    )
    .unwrap();
    let cfg = scenario(
        tmp.path(),
        "far",
        &format!(
            "[scenario]\nname = \"far\"\n[data]\npath = \"{}\"\n[partition]\nkind = \"horizontal\"\nsites = 2\n[algorithm]\nkind = \"external\"\nlocal = [\"sh\", \"far.sh\", \"local\"]\naggregate = [\"sh\", \"far.sh\", \"aggregate\"]\npooled = [\"sh\", \"far.sh\", \"pooled\"]\nfiles = [\"far.sh\"]\n",
            test_data("diabetes_raw.csv").display()
        ),
    );
    let out = tmp.path().join("run");
    let mut child = run_command(tmp.path(), &cfg, &out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > std::time::Duration::from_secs(120) {
            let _ = child.kill();
            panic!("the run hung (before: the difference plot's log axis spun for minutes)");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    let s = expect_status(&o, &out, Status::Failed);
    assert!(!s.comparison.expect("a comparison").passed);
    let html = std::fs::read_to_string(out.join("report.html")).expect("report.html written");
    assert!(html.contains("data-plot=\"difference\"") && html.contains("\n1e280\n"));
    let e = &s.error.expect("an error").message;
    assert!(e.contains("(federated 1e293, expected 0.5"), "{e}");
}

/// Issue 20.4: under secure aggregation a site whose reply has other names or sizes was summed
/// into the others' numbers (its `b` added to their `a`). The shapes travel in clear; they must
/// agree, and the odd site is named.
#[test]
fn secure_replies_of_another_shape_are_refused_naming_the_site() {
    let s = failed_run(
        "moments-odd",
        "site-2",
        "read input; echo '{\"sum\": {\"b\": [1, 2], \"n\": 1}}'; exit 0",
        "[federation]\nsecure_aggregation = true\n",
    );
    let e = s.error.expect("a failed run says why");
    assert_eq!(e.site.as_deref(), Some("site-2"), "{}", pretty(&e));
    let m = &e.message;
    assert!(
        m.contains("another shape than site-1's") && m.contains("\"b\""),
        "{m}"
    );
}

/// Issue 20.6: a step that detaches (a double fork and `setsid`) left its process running after
/// the run. Every step now runs under `fedsim reap`, a child subreaper that kills whatever is
/// left of it, detached or not, when it ends.
#[test]
fn a_step_that_detaches_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    // The pid goes into the site's own folder (the only one its steps may write).
    let cfg = sabotaged(
        tmp.path(),
        "moments-daemon",
        "site-2",
        "(setsid sh -c 'sleep 300 & echo $! > \"$PWD/daemon.pid\"' &)",
        "",
    );
    let out = tmp.path().join("run");
    run_expecting(tmp.path(), &cfg, &out, Status::Succeeded);
    let pid: u32 = std::fs::read_to_string(out.join("sites/site-2/daemon.pid"))
        .expect("the step started its daemon")
        .trim()
        .parse()
        .expect("a pid");
    for _ in 0..40 {
        if !alive(pid) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!alive(pid), "the detached process {pid} outlived the run");
}

/// `fedsim reap --lease`: a program on a site fedsim can no longer reach (its link cut) is
/// stopped, with everything it started, when the controller's lease goes unheard; and at once
/// when the lease ends.
#[test]
fn the_reaper_stops_its_program_when_the_lease_goes_unheard_or_ends() {
    use std::io::Write;
    use std::time::{Duration, Instant};
    let tmp = tempfile::tempdir().unwrap();
    for ends in [false, true] {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let log = tmp.path().join(format!("node-{ends}.jsonl"));
        let pid = tmp.path().join(format!("worker-{ends}.pid"));
        let began = Instant::now();
        let mut reaper = std::process::Command::new(bin())
            .args(["reap", "--log"])
            .arg(&log)
            .args(["--lease", &addr, "--lease-secs", "2", "--", "sh", "-c"])
            .arg(format!(
                "(setsid sleep 300 & echo $! > {}); sleep 300",
                pid.display()
            ))
            .spawn()
            .unwrap();
        // The controller's side: a byte a second for 3 s, then silence (a cut link) or the end.
        let (mut conn, _) = listener.accept().unwrap();
        let mut last = Instant::now();
        for _ in 0..3 {
            std::thread::sleep(Duration::from_secs(1));
            conn.write_all(b".").unwrap();
            last = Instant::now();
        }
        if ends {
            drop(conn);
        }
        let until = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = reaper.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < until, "the reaper ignored its lease");
            std::thread::sleep(Duration::from_millis(50));
        };
        let took = last.elapsed().as_secs_f64();
        assert_eq!(status.code(), Some(143), "{status}");
        // Heard for 3 s, so not stopped early; then within the 2 s unheard, or at once.
        assert!(began.elapsed().as_secs_f64() >= 3.0);
        assert!(
            if ends {
                took < 1.0
            } else {
                (1.5..4.0).contains(&took)
            },
            "stopped {took:.2} s after the lease {}",
            if ends { "ended" } else { "went quiet" }
        );
        let said = std::fs::read_to_string(&log).unwrap();
        let why = if ends {
            "the controller ended the lease: stopping"
        } else {
            "the controller's lease went unheard for 2 s: stopping"
        };
        assert!(said.contains(why), "{said}");
        let worker: u32 = std::fs::read_to_string(&pid)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(!alive(worker), "the detached worker outlived its reaper");
    }
}

/// The moments scenario with `persistent = true`, each site's local step a wrapper that says
/// its process id on stderr (and, at site `bad`, does `how` first) before it becomes the
/// example's own step.
fn persistent(dir: &Path, name: &str, bad: &str, how: &str, extra: &str) -> PathBuf {
    let cfg = sabotaged(dir, name, bad, how, extra);
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("max_rounds = 10", "max_rounds = 10\npersistent = true");
    std::fs::write(&cfg, text).unwrap();
    let wrapper = std::fs::read_to_string(dir.join("local.sh")).unwrap();
    std::fs::write(
        dir.join("local.sh"),
        format!("echo \"local step process $$\" >&2\n{wrapper}"),
    )
    .unwrap();
    cfg
}

/// Issue 26: `persistent = true` keeps one local process per site (and one aggregate) for the
/// whole analysis, and gives the one-shot answer.
#[test]
fn persistent_steps_answer_every_round_from_one_process_per_site() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = persistent(tmp.path(), "persistent", "none", "true", "");
    let out = tmp.path().join("run");
    let s = run_expecting(tmp.path(), &cfg, &out, Status::Succeeded);
    let c = s.comparison.as_ref().expect("a comparison");
    assert!(c.passed && c.max_diff <= 1e-12, "{}", pretty(c));
    assert_eq!(s.results.as_ref().expect("results").named["n"], 442);
    let m = metrics(&out);
    assert_eq!(m.rounds.iter().filter(|r| r.round > 0).count(), 2);
    for i in 1..=3 {
        let log = std::fs::read_to_string(out.join(format!("logs/site-{i}.jsonl"))).unwrap();
        let started = log.matches("local step process").count();
        assert_eq!(
            started, 1,
            "site-{i} started {started} local processes:\n{log}"
        );
    }
    // Nothing of the sessions is left once the run is over: no process works in the run.
    let run = out.canonicalize().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let left: Vec<_> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path().join("cwd")).ok())
        .filter(|cwd| cwd.starts_with(&run))
        .collect();
    assert!(left.is_empty(), "left running in the run: {left:?}");
}

#[test]
fn a_persistent_step_that_dies_is_named_with_its_site_and_message() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = persistent(
        tmp.path(),
        "persistent-exit",
        "site-2",
        "echo 'cannot open the registry extract' >&2; exit 3",
        "",
    );
    let s = run_expecting(tmp.path(), &cfg, &tmp.path().join("run"), Status::Failed);
    let e = s.error.expect("a failed run says why");
    assert_eq!(e.site.as_deref(), Some("site-2"));
    let m = &e.message;
    assert!(
        m.contains("ended without answering")
            && m.contains("exit status: 3")
            && m.contains("cannot open the registry extract"),
        "{m}"
    );
}

#[test]
fn a_hanging_persistent_step_hits_the_round_deadline_and_is_stopped() {
    let marker = "fedsim-hang-persistent-5813";
    let tmp = tempfile::tempdir().unwrap();
    let cfg = persistent(
        tmp.path(),
        "persistent-hang",
        "site-1",
        &format!("python3 -c 'import time; time.sleep(600)' {marker}; exit 0"),
        "[federation]\nround_timeout_secs = 2\n",
    );
    let s = run_expecting(tmp.path(), &cfg, &tmp.path().join("run"), Status::Failed);
    let e = s.error.expect("a failed run says why");
    assert_eq!(e.site.as_deref(), Some("site-1"));
    assert!(e.message.contains("deadline"), "{}", e.message);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let left = pgrep(marker);
    assert!(left.is_empty(), "left running: {left}");
}
