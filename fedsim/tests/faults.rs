//! Faults: a killed agent or a site past its deadline ends the run as failed, in bounded time,
//! naming the site and the round; with `on_dropout = "continue"` the run completes without the
//! site, says so, and matches the centralised answer on the sites that remained.

mod common;

use common::*;
use std::time::Instant;

fn faulty(dir: &std::path::Path, name: &str, federation: &str, fault: &str) -> std::path::PathBuf {
    let extra = format!("[federation]\nheartbeat_secs = 0.2\nround_timeout_secs = 3\n{federation}\n[[faults]]\nsite = \"site-3\"\n{fault}\n");
    scenario(dir, name, &ols_toml(name, "diabetes.csv", 4, &extra))
}

/// Run `cfg` into `dir/NAME`, which must end with `status` (and its exit code): its summary, and
/// the seconds the run took.
fn timed(
    dir: &std::path::Path,
    cfg: &std::path::Path,
    name: &str,
    status: Status,
) -> (Summary, f64) {
    let out = dir.join(name);
    let started = Instant::now();
    let o = run_to(dir, cfg, &out, &[]);
    let secs = started.elapsed().as_secs_f64();
    (expect_status(&o, &out, status), secs)
}

#[test]
fn a_killed_agent_fails_the_run_naming_site_and_round() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = faulty(
        tmp.path(),
        "kill",
        "on_dropout = \"fail\"",
        "kind = \"kill\"\nround = 2",
    );
    let (s, secs) = timed(tmp.path(), &cfg, "kill", Status::Failed);
    let error = s.error.as_ref().expect("a failed run says why");
    assert_eq!(error.site.as_deref(), Some("site-3"));
    let msg = &error.message;
    assert!(msg.contains("site-3") && msg.contains("round 2"), "{msg}");
    assert!(secs < 3.0, "took {secs} s, more than the round deadline");
    assert!(
        s.results.is_none() && s.comparison.is_none(),
        "a failed run claims no result"
    );
    no_agent_left(&s);
    // The run directory is complete and consistent: metrics and the merged log exist too.
    assert!(
        tmp.path().join("kill/metrics.json").exists()
            && tmp.path().join("kill/logs/merged.jsonl").exists()
    );
}

#[test]
fn with_continue_the_run_completes_without_the_lost_site_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = faulty(
        tmp.path(),
        "cont",
        "on_dropout = \"continue\"\nmin_sites = 3",
        "kind = \"kill\"\nround = 2",
    );
    // Degraded exits 3.
    let (s, _) = timed(tmp.path(), &cfg, "cont", Status::Degraded);
    let lost = &s.lost_sites;
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].site, "site-3");
    assert_eq!(lost[0].round, 2);
    let msg = &s.error.as_ref().expect("a degraded run says why").message;
    assert!(msg.contains("completed without site-3"), "{msg}");
    // The federated answer is the survivors' pooled answer, exactly.
    let site3 = s.sites.iter().find(|x| x.name == "site-3").unwrap().rows;
    let results = s.results.as_ref().expect("results");
    assert_eq!(results.n, 442 - site3);
    assert_eq!(s.baseline.as_ref().expect("a baseline").n, results.n);
    assert!(s.comparison.as_ref().expect("a comparison").passed);
    no_agent_left(&s);

    // Not enough sites left: the run fails instead.
    let cfg = faulty(
        tmp.path(),
        "few",
        "on_dropout = \"continue\"\nmin_sites = 4",
        "kind = \"kill\"\nround = 1",
    );
    let (s, _) = timed(tmp.path(), &cfg, "few", Status::Failed);
    assert_eq!(s.error.expect("an error").site.as_deref(), Some("site-3"));
}

#[test]
fn a_slow_site_is_waited_for_within_the_deadline_and_lost_past_it() {
    let tmp = tempfile::tempdir().unwrap();
    // Slow but alive (heartbeats keep coming): the run waits and succeeds.
    let cfg = faulty(
        tmp.path(),
        "slow",
        "",
        "kind = \"slow\"\nround = 2\ndelay_secs = 1.0",
    );
    let (_, secs) = timed(tmp.path(), &cfg, "slow", Status::Succeeded);
    assert!(secs >= 1.0);
    let round2 = metrics(&tmp.path().join("slow")).rounds[2].wall_secs;
    assert!(round2 >= 1.0, "round 2 took {round2} s");
    // Slower than the round deadline: lost, named, within the deadline plus a margin.
    let cfg = faulty(
        tmp.path(),
        "late",
        "",
        "kind = \"slow\"\nround = 2\ndelay_secs = 8.0",
    );
    let (s, secs) = timed(tmp.path(), &cfg, "late", Status::Failed);
    let error = s.error.expect("an error");
    assert_eq!(error.site.as_deref(), Some("site-3"));
    assert!(
        error.message.contains("missed the round deadline of 3.0 s"),
        "{}",
        error.message
    );
    assert!(secs < 3.0 + 6.0, "took {secs} s");
}

/// Issue 20.8: a full disk cut report.html at 4096 bytes, truncated a site's data and left empty
/// `*.tmp` files, and no summary said what happened. Every file is now written whole or not at
/// all, and a disk reserve kept in the run directory is given back for the summary. Run on an
/// 8 MiB tmpfs in a mount namespace of the test's own (needs root, as CI has).
#[test]
fn a_full_disk_ends_in_a_failed_summary_and_leaves_no_partial_file() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let cfg = scenario(
        tmp.path(),
        "big",
        "[scenario]\nname = \"big\"\n[data]\ngenerate = { kind = \"linear\", rows = 40000, cols = 30 }\ntarget = \"y\"\n[partition]\nkind = \"horizontal\"\nsites = 3\n[algorithm]\nkind = \"linear_regression\"\n",
    );
    let out = mnt.join("run");
    let o = std::process::Command::new("unshare")
        .args(["-m", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o size=8m tmpfs {m} || exit 99; \"$0\" run -q -c {c} --out {o}; code=$?; cp -a {m} {m}.copy; exit $code",
            m = mnt.display(),
            c = cfg.display(),
            o = out.display()
        ))
        .arg(bin())
        .output()
        .unwrap();
    if o.status.code() == Some(99) || (!o.status.success() && stderr(&o).contains("unshare")) {
        eprintln!(
            "SKIPPED: no mount namespace here (root is needed): {}",
            stderr(&o)
        );
        return;
    }
    // What the run left on the full disk (copied out of the namespace before it went).
    let left = tmp.path().join("mnt.copy/run");
    let s = expect_status(&o, &left, Status::Failed);
    let e = &s.error.as_ref().expect("an error").message;
    assert!(e.contains("No space left on device"), "{e}");
    for f in files(&left) {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        assert!(!name.ends_with(".tmp"), "{} left behind", f.display());
        if name.starts_with("data.") {
            // A site's data is whole: it reads back with every row it was given.
            let rows = s
                .sites
                .iter()
                .find(|x| f.starts_with(left.join("sites").join(&x.name)))
                .unwrap()
                .rows;
            let t = fedsim::data::Table::load(&f).expect("a whole data file");
            assert_eq!(t.rows(), rows, "{}", f.display());
        }
    }
    if let Ok(html) = std::fs::read_to_string(left.join("report.html")) {
        assert!(html.trim_end().ends_with("</html>"), "report.html is cut");
    }
}
