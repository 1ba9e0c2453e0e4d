//! Ctrl-C at any moment: the run ends within 2 s with exit 130, a `cancelled` summary once the run
//! directory exists (nothing at all before), and no process of the run left behind. The signal
//! goes to the whole process group, as a terminal's Ctrl-C does.

mod common;

use common::*;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

fn shipped(name: &str) -> PathBuf {
    root().join("resources").join(name)
}

/// `fedsim run -q` in a process group of its own (so the test can signal it as a terminal would).
fn spawn(cwd: &Path, cfg: &Path, out: &Path, env: &[(&str, &str)]) -> Child {
    let mut c = run_command(cwd, cfg, out);
    c.envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0);
    c.spawn().expect("fedsim starts")
}

/// SIGINT to the run's whole process group; then its exit code and how long it took to exit.
fn interrupt(child: &mut Child) -> (Option<i32>, Duration) {
    let pid = child.id() as i32;
    // SAFETY: signalling the process group the test created.
    unsafe { libc::kill(-pid, libc::SIGINT) };
    let sent = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code(), sent.elapsed());
        }
        if sent.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            return (None, sent.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The outcome of one cancelled run, checked: exit 130 within 2 s, a truthful summary when the
/// run directory exists, nothing left running. Returns the phase the summary names.
fn check_cancelled(mut child: Child, out: &Path, tmp: &Path, when: &str) -> Option<String> {
    let pid = child.id();
    let (code, took) = interrupt(&mut child);
    let err = {
        use std::io::Read;
        let mut s = String::new();
        child.stderr.take().unwrap().read_to_string(&mut s).unwrap();
        s
    };
    assert_eq!(
        code,
        Some(130),
        "{when}: exit code after {took:?}; stderr: {err}"
    );
    assert!(
        took < Duration::from_secs(2),
        "{when}: took {took:?} to stop"
    );
    // Nothing of the run survives it (a moment for the kernel to reap what it killed).
    let mut left = leftovers(pid, tmp);
    for _ in 0..20 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        left = leftovers(pid, tmp);
    }
    assert!(left.is_empty(), "{when}: processes left: {left:?}");
    if !out.exists() {
        return None;
    }
    let s = summary(out);
    assert_eq!(s.status, Status::Cancelled, "{when}: {}", pretty(&s));
    assert!(
        out.join("report.html").exists() && out.join("metrics.json").exists(),
        "{when}: the run directory is complete"
    );
    // Agents stopped by the controller, not by the signal.
    for site in &s.sites {
        if let Some(exit) = &site.exit {
            assert!(
                exit.code == Some(0) || exit.killed,
                "{when}: {}",
                pretty(site)
            );
        }
    }
    Some(
        s.error
            .expect("a cancelled run says where")
            .phase
            .expect("the phase it was cancelled in"),
    )
}

#[test]
fn sigint_at_any_moment_of_the_high_dimensional_svd_cancels_it() {
    let cfg = shipped("config_svd_highdim.toml");
    let mut phases = Vec::new();
    for secs in [0.5, 2.0, 5.0, 9.0, 12.0] {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        let child = spawn(tmp.path(), &cfg, &out, &[]);
        std::thread::sleep(Duration::from_secs_f64(secs));
        let phase = check_cancelled(child, &out, tmp.path(), &format!("SIGINT at {secs} s"));
        phases.push((
            secs,
            phase.unwrap_or_else(|| "plan (no run directory yet)".into()),
        ));
    }
    eprintln!("cancelled in: {phases:?}");
}

#[test]
fn ctrl_c_in_every_phase_ends_cancelled_in_that_phase() {
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = scenario(
        cfg_dir.path(),
        "ols",
        &ols_toml("cancel", "diabetes.csv", 3, ""),
    );
    for phase in [
        "plan",
        "prep",
        "provision",
        "enrol",
        "federate",
        "results",
        "collect",
        "baseline",
        "compare",
        "report",
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        let marker = tmp.path().join("paused");
        let hook = format!("{phase}={}", marker.display());
        let mut child = spawn(tmp.path(), &cfg, &out, &[("FEDSIM_TEST_PAUSE", &hook)]);
        let until = Instant::now() + Duration::from_secs(60);
        while !marker.exists() {
            assert!(Instant::now() < until, "{phase}: never got there");
            assert!(
                child.try_wait().unwrap().is_none(),
                "{phase}: run ended first"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let named = check_cancelled(child, &out, tmp.path(), phase);
        match phase {
            "plan" => assert_eq!(named, None, "nothing is written before the run starts"),
            "report" => assert_eq!(named.as_deref(), Some("report")),
            _ => assert_eq!(named.as_deref(), Some(phase)),
        }
    }
}

/// A run whose `slow` site takes a minute over round 1, started, and waited for until that site
/// is asleep in its round: a signal then finds the agents mid-round.
fn mid_round(tmp: &Path, sites: usize, slow: &str) -> (Child, PathBuf) {
    let cfg = scenario(
        tmp,
        "slow",
        &ols_toml(
            "slow",
            "diabetes.csv",
            sites,
            &format!(
                "[[faults]]\nsite = \"{slow}\"\nkind = \"slow\"\nround = 1\ndelay_secs = 60\n"
            ),
        ),
    );
    let out = tmp.join("run");
    let child = spawn(tmp, &cfg, &out, &[]);
    let log = out.join(format!("sites/{slow}/agent.jsonl"));
    let until = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("answering late")
    {
        assert!(
            Instant::now() < until,
            "{slow} never started its slow round"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, out)
}

#[test]
fn ctrl_c_while_sites_compute_a_round_stops_them_and_says_cancelled() {
    let tmp = tempfile::tempdir().unwrap();
    let (child, out) = mid_round(tmp.path(), 3, "site-2");
    assert_eq!(
        check_cancelled(child, &out, tmp.path(), "mid-round").as_deref(),
        Some("federate")
    );
    let s = summary(&out);
    assert!(s.results.is_none(), "no results from a cancelled round");
}

#[test]
fn a_second_ctrl_c_kills_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, _) = mid_round(tmp.path(), 2, "site-1");
    let pid = child.id() as i32;
    // SAFETY: signalling the process group the test created, twice.
    unsafe { libc::kill(-pid, libc::SIGINT) };
    unsafe { libc::kill(-pid, libc::SIGINT) };
    let sent = Instant::now();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "{:?}",
        sent.elapsed()
    );
    std::thread::sleep(Duration::from_millis(200));
    let left = leftovers(pid as u32, tmp.path());
    assert!(left.is_empty(), "processes left: {left:?}");
}
