//! The wire protocol end to end, with the real binary: agents leave as soon as the coordinator
//! ends the run (even mid-round), and a cancelled run tells them "cancelled".

mod common;

use common::*;
use std::time::{Duration, Instant};

/// Four diabetes sites; site-3 sleeps `delay` seconds in round 2 (heartbeats go on).
fn slow_site(
    dir: &std::path::Path,
    name: &str,
    round_timeout: f64,
    delay: f64,
) -> std::path::PathBuf {
    let extra = format!(
        "[federation]\nheartbeat_secs = 0.2\nround_timeout_secs = {round_timeout}\n[[faults]]\nsite = \"site-3\"\nkind = \"slow\"\nround = 2\ndelay_secs = {delay}\n"
    );
    scenario(dir, name, &ols_toml(name, "diabetes.csv", 4, &extra))
}

/// Every site's agent exited by itself with 0 (fedsim did not have to kill it).
fn all_agents_exited_cleanly(s: &Summary) {
    for site in &s.sites {
        let exit = site
            .exit
            .as_ref()
            .unwrap_or_else(|| panic!("{}", pretty(site)));
        assert_eq!(exit.code, Some(0), "{}", pretty(site));
        assert!(!exit.killed, "{}", pretty(site));
    }
}

/// What each agent logged when the coordinator ended the run: site -> status.
fn shutdown_statuses(run_dir: &std::path::Path) -> Vec<(String, String)> {
    let mut got: Vec<(String, String)> = merged_log(run_dir, &[])
        .into_iter()
        .filter(|l| l["message"] == "coordinator ended the run")
        .map(|l| {
            (
                l["source"].as_str().unwrap_or_default().to_string(),
                l["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    got.sort();
    got
}

#[test]
fn a_site_still_busy_when_the_run_fails_exits_0_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    // site-3 would sleep 20 s; the round deadline (2 s) loses it and ends the run.
    let cfg = slow_site(tmp.path(), "late", 2.0, 20.0);
    let out = tmp.path().join("late");
    let started = Instant::now();
    let o = run_to(tmp.path(), &cfg, &out, &[]);
    let secs = started.elapsed().as_secs_f64();
    let s = expect_status(&o, &out, Status::Failed);
    assert_eq!(
        s.error.as_ref().expect("an error").site.as_deref(),
        Some("site-3")
    );
    // Asleep mid-round, site-3 still reads the Shutdown and leaves: no 5 s grace, no kill.
    all_agents_exited_cleanly(&s);
    assert!(secs < 2.0 + 4.0, "took {secs:.1} s");
    let statuses = shutdown_statuses(&out);
    assert_eq!(statuses.len(), 4, "{statuses:?}");
    assert!(
        statuses.iter().all(|(_, st)| st == "failed"),
        "{statuses:?}"
    );
}

#[test]
fn a_cancelled_run_tells_the_agents_cancelled() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = slow_site(tmp.path(), "stop", 60.0, 30.0);
    let out = tmp.path().join("stop");
    let mut child = run_command(tmp.path(), &cfg, &out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until round 2 is under way (site-3 asleep in it), then Ctrl-C.
    let deadline = Instant::now() + Duration::from_secs(30);
    let in_round_2 = || {
        std::fs::read_to_string(out.join("sites/site-3/agent.jsonl"))
            .is_ok_and(|l| l.contains("injected fault: answering late"))
    };
    while !in_round_2() {
        assert!(Instant::now() < deadline, "site-3 never reached round 2");
        std::thread::sleep(Duration::from_millis(50));
    }
    let interrupted = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = child.wait().unwrap().code();
    let secs = interrupted.elapsed().as_secs_f64();
    assert_eq!(code, Some(130));
    let s = summary(&out);
    assert_eq!(s.status, Status::Cancelled, "{}", pretty(&s));
    all_agents_exited_cleanly(&s);
    assert!(secs < 4.0, "took {secs:.1} s to stop");
    let statuses = shutdown_statuses(&out);
    assert_eq!(statuses.len(), 4, "{statuses:?}");
    assert!(
        statuses.iter().all(|(_, st)| st == "cancelled"),
        "{statuses:?}"
    );
}
