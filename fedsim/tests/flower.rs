//! Flower's deployment engine under fedsim (`[platform] kind = "flower"`), with real flwr: the
//! shipped example on local sites against the pooled fit and against Flower's own simulation, a
//! site killed mid-run (Flower goes on without it, or the run fails at once, as the scenario
//! says), a 100 ms link on every site, TLS on the wire (the relay's bytes carry nothing readable;
//! an insecure run's do, which shows the check can see it), a SuperNode the run did not enrol
//! refused, and nothing left running after success, failure or Ctrl-C. Needs flwr (`.ci/run`
//! installs it into ~/.cache/fedsim-flwr); says SKIPPED otherwise.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Nothing of the run in `out` is still running: no process in its folders, no Flower program
/// naming it.
fn nothing_left(out: &Path) {
    let left = leftovers(0, out);
    assert!(left.is_empty(), "left running: {left:?}");
    let named = pgrep(&out.display().to_string());
    assert!(named.trim().is_empty(), "processes naming the run: {named}");
}

fn platform_json(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("platform.json")).unwrap()).unwrap()
}

fn named(v: &serde_json::Value) -> Vec<(String, f64)> {
    v["result"]["named"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, x)| (k.clone(), x.as_f64().unwrap()))
        .collect()
}

#[test]
fn the_example_matches_the_pooled_fit_and_flowers_simulation() {
    let Some(_) = flwr_installed() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cfg = example(tmp.path(), "");
    let out = tmp.path().join("run");
    let o = run_to(tmp.path(), &cfg, &out, &[]);
    let s = expect_status(&o, &out, Status::Succeeded);
    assert!(s.algorithm.starts_with("flower app"), "{}", s.algorithm);
    let c = s.comparison.as_ref().unwrap();
    assert!(c.passed && c.max_diff < 1e-9, "{}", pretty(c));
    // Independently of the App's own pooled command: statsmodels' Logit of all the rows.
    let script = format!(
        "import json, pandas as pd, statsmodels.api as sm\n\
         d = pd.read_csv({:?})\n\
         f = ['mean_radius', 'mean_texture', 'mean_smoothness', 'mean_concavity']\n\
         fit = sm.Logit(d['target'], sm.add_constant(d[f])).fit(method='newton', tol=1e-12, disp=0)\n\
         print(json.dumps({{'coef_' + k: v for k, v in fit.params.items()}}))",
        test_data("breast_cancer.csv").display().to_string()
    );
    // The first python3 on PATH that has statsmodels (.ci/run installs it for the one it finds
    // first; the snakemake venv's comes before it in the tests).
    let path = std::env::var_os("PATH").unwrap_or_default();
    let py = std::env::split_paths(&path)
        .map(|d| d.join("python3"))
        .filter(|p| p.is_file())
        .filter_map(|p| {
            std::process::Command::new(p)
                .args(["-c", &script])
                .output()
                .ok()
        })
        .find(|o| o.status.success())
        .expect("a python3 with statsmodels and pandas (.ci/run installs them)");
    let want: std::collections::BTreeMap<String, f64> = serde_json::from_slice(&py.stdout).unwrap();
    let got = &s.results.as_ref().unwrap().named;
    assert_eq!(got.len(), want.len(), "{}", pretty(got));
    for (k, w) in &want {
        let g = got[k].as_f64().unwrap();
        assert!(
            (g - w).abs() <= 1e-8 * w.abs(),
            "{k}: federated {g}, statsmodels {w}"
        );
    }
    // Side by side with Flower's simulation of the same App on the same partitions.
    let p = platform_json(&out);
    let (dep, sim) = (&p["deployment"], &p["simulation"]);
    assert!(p["simulation_error"].is_null(), "{p}");
    let rounds = |v: &serde_json::Value| v["round_ends"].as_array().unwrap().len();
    assert_eq!((rounds(dep), rounds(sim)), (10, 10), "{p}");
    let max = p["max_rel_diff"].as_f64().unwrap();
    let recomputed = named(dep)
        .iter()
        .zip(named(sim))
        .map(|((a, x), (b, y))| {
            assert_eq!(*a, b);
            (x - y).abs() / x.abs().max(y.abs())
        })
        .fold(0.0, f64::max);
    assert!(
        (max - recomputed).abs() < 1e-18 && max < 1e-10,
        "{max} {recomputed}"
    );
    // Each round's bytes on the sites' wires, as the relays the nodes dial counted them: a like
    // amount each round (the same messages, polls and heartbeats); the simulation has no wire.
    let totals: Vec<u64> = dep["round_bytes"]
        .as_array()
        .expect("the deployment's bytes per round")
        .iter()
        .map(|b| {
            let (up, down) = (b["up"].as_u64().unwrap(), b["down"].as_u64().unwrap());
            assert!(up > 1000 && down > 1000, "{b}");
            up + down
        })
        .collect();
    assert_eq!(totals.len(), 10, "{p}");
    let (least, most) = (totals.iter().min().unwrap(), totals.iter().max().unwrap());
    assert!(*most < 3 * least, "{totals:?}");
    assert!(sim.get("round_bytes").is_none(), "{p}");
    // Each round's time, from the App, in the metrics and the report's table.
    let m = metrics(&out);
    assert_eq!(m.rounds.len(), 10);
    assert!(m.rounds.iter().all(|r| r.wall_secs > 0.0));
    let report = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        report.contains("Deployment and Flower's simulation") && report.contains("KiB up"),
        "report without the table or its bytes"
    );
    // One timeline: the SuperLink, each SuperNode, the run and the simulation, with sources.
    let log = merged_log(&out, &[]);
    for source in [
        "flower-superlink",
        "flwr-run",
        "site-1",
        "site-2",
        "site-3",
        "flower-simulation",
        "controller",
    ] {
        assert!(
            log.iter().any(|l| l["source"] == source),
            "no line from {source} in the merged log"
        );
    }
    assert!(log
        .iter()
        .any(|l| l["source"] == "flwr-run"
            && l["message"].as_str().unwrap().contains("[ROUND 10/10]")));
    // SuperNode authentication: each site's key registered, none joins unregistered.
    let superlink = |needle: &str| {
        log.iter()
            .filter(|l| {
                l["source"] == "flower-superlink" && l["message"].as_str().unwrap().contains(needle)
            })
            .count()
    };
    assert_eq!(
        superlink("[ControlServicer.RegisterNode] Created node_id"),
        3
    );
    assert_eq!(superlink("SuperNode authentication is disabled"), 0);
    nothing_left(&out);
}

#[test]
fn a_killed_site_is_lost_as_flower_goes_on_without_it_or_the_run_fails() {
    let Some(_) = flwr_installed() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let kill = "[[faults]]\nsite = \"site-2\"\nkind = \"kill\"\nround = 3\n";
    // Flower goes on with the two left: its round 3 ends once the dead node misses its
    // heartbeats, the later rounds are the survivors' Newton steps, so the fit is theirs.
    let (s, out) = site_2_lost_in_round_3(tmp.path(), "continue", "kill", "", &[]);
    let said = flowers_words(&s);
    assert!(said.contains("Received 2 results and 1 failures"), "{said}");
    nothing_left(&out);
    // Or the run fails as the site is lost, naming it, with nothing left running.
    let cfg = example(tmp.path(), kill);
    let out = tmp.path().join("fail");
    let o = run_to(
        tmp.path(),
        &cfg,
        &out,
        &["--set", "platform.simulation=false"],
    );
    let s = expect_status(&o, &out, Status::Failed);
    let e = s.error.unwrap();
    assert_eq!(e.site.as_deref(), Some("site-2"));
    assert!(e.message.contains("on_dropout"), "{}", e.message);
    nothing_left(&out);
}

#[test]
fn a_link_slows_each_flower_exchange_and_tls_hides_what_crosses_it() {
    let Some(_) = flwr_installed() else { return };
    let tmp = tempfile::tempdir().unwrap();
    // Two sites, six rounds, not yet the pooled fit (these runs do not judge it).
    let short = [
        "--set",
        "platform.simulation=false",
        "--set",
        "platform.rounds=6",
        "--set",
        "partition.sites=2",
        "--set",
        "compare.tolerance=1",
    ];
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let median_round = |out: &Path| {
        // The rounds after the first (which starts each node's first ClientApp).
        median(
            metrics(out)
                .rounds
                .iter()
                .skip(1)
                .map(|r| r.wall_secs)
                .collect(),
        )
    };
    // A SuperNode's exchanges with the SuperLink, from its own log: pulling a message
    // ("Receiving" to "Received successfully") and pushing the reply ("Sending" to "Sent").
    let exchanges = |out: &Path| {
        let stamp = |l: &serde_json::Value| {
            chrono::DateTime::parse_from_rfc3339(l["timestamp"].as_str().unwrap())
                .unwrap()
                .timestamp_micros() as f64
                / 1e6
        };
        let mut took = Vec::new();
        for site in ["site-1", "site-2"] {
            let text = std::fs::read_to_string(out.join(format!("logs/{site}.jsonl"))).unwrap();
            let mut began = None;
            for l in text
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            {
                let m = l["message"].as_str().unwrap();
                if m.contains("Receiving:") || m.contains("Sending:") {
                    began = Some(stamp(&l));
                } else if m.contains("Received successfully") || m.contains("Sent successfully") {
                    if let Some(b) = began.take() {
                        took.push(stamp(&l) - b);
                    }
                }
            }
        }
        assert!(
            took.len() >= 20,
            "{}: {} exchanges",
            out.display(),
            took.len()
        );
        median(took)
    };
    let plain = tmp.path().join("plain");
    let cfg = example(tmp.path(), "");
    expect_status(
        &run_to(tmp.path(), &cfg, &plain, &short),
        &plain,
        Status::Succeeded,
    );
    let linked = "[[links]]\nsites = \"*\"\ndelay_ms = 100.0\n";
    let cfg = example(tmp.path(), linked);
    let out = tmp.path().join("linked");
    let tap = tmp.path().join("wire.bin");
    let o = run_command(tmp.path(), &cfg, &out)
        .args(short)
        .env("FEDSIM_RECORD_RELAY", &tap)
        .output()
        .unwrap();
    expect_status(&o, &out, Status::Succeeded);
    let (before, after) = (median_round(&plain), median_round(&out));
    let (quick, slow) = (exchanges(&plain), exchanges(&out));
    eprintln!(
        "behind 100 ms links: a SuperNode's exchange {quick:.3} s -> {slow:.3} s, a round {before:.3} s -> {after:.3} s"
    );
    // Each exchange is a new TLS connection and its request: several round trips.
    assert!(
        slow - quick > 0.2,
        "a 100 ms link adds at least two round trips to each exchange: {quick} -> {slow}"
    );
    // Flower's round is paced by polling (the SuperNode for messages, its SuperExec for a
    // ClientApp, the ServerApp for replies, about 2 s each here). The link's time on the
    // round's path (two exchanges: the message pulled, the reply pushed) either hides in those
    // waits or pushes a step past one: the round grows by nothing up to that time and a
    // polling period of each waiting side (measured: 6.33 -> 6.35 s, and 6.39 -> 9.33 s).
    let grew = after - before;
    assert!(
        grew > -0.5 && grew < 2.0 * (slow - quick) + 4.5,
        "rounds {before} -> {after}, exchanges {quick} -> {slow}"
    );
    // What crossed the links: TLS records, nothing readable of Flower's messages.
    let wire = std::fs::read(&tap).unwrap();
    assert!(
        wire.len() > 10_000,
        "the relays carried {} bytes",
        wire.len()
    );
    // The bytes per round are the relays' own: together, less than all they carried (the
    // handshakes before round 1 are no round's), and most of it.
    let counted: u64 = platform_json(&out)["deployment"]["round_bytes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["up"].as_u64().unwrap() + b["down"].as_u64().unwrap())
        .sum();
    let all = wire.len() as u64;
    assert!(
        counted <= all && counted > all / 2,
        "rounds {counted} bytes, the wire {all}"
    );
    let seen = |needle: &str| wire.windows(needle.len()).any(|w| w == needle.as_bytes());
    for plain_text in ["num-examples", "HTTP/1.1", "POST ", "arrays"] {
        assert!(
            !seen(plain_text),
            "{plain_text:?} crossed the link in clear"
        );
    }
    assert_eq!(wire[0], 0x16, "a TLS handshake record first");
    // The same run with platform.insecure: the check sees Flower's messages in clear.
    let out = tmp.path().join("insecure");
    let clear = tmp.path().join("clear.bin");
    let o = run_command(tmp.path(), &cfg, &out)
        .args(short)
        .args(["--set", "platform.insecure=true"])
        .env("FEDSIM_RECORD_RELAY", &clear)
        .output()
        .unwrap();
    expect_status(&o, &out, Status::Succeeded);
    let clear = std::fs::read(&clear).unwrap();
    assert!(
        clear.windows(12).any(|w| w == b"num-examples"),
        "an insecure run's messages are readable on the link"
    );
    nothing_left(tmp.path());
}

/// A SuperNode that fedsim did not enrol, dialling the run's SuperLink with the run's CA (so TLS
/// lets it in) and a key of its own: Flower must refuse to activate it.
fn an_unregistered_supernode_is_refused(bin: &Path, out: &Path) {
    let config =
        std::fs::read_to_string(out.join("flower/deployment/home/flwr/.flwr/config.toml")).unwrap();
    let addr = config
        .lines()
        .find_map(|l| l.strip_prefix("address = "))
        .expect("the SuperLink's address")
        .trim_matches('"');
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("intruder");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ecdsa", "-b", "384", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(made.success());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut intruder = std::process::Command::new(bin.join("flower-supernode"))
        .args(["--superlink", addr, "--port", &port.to_string()])
        .arg("--root-certificates")
        .arg(out.join("flower/deployment/ca.pem"))
        .arg("--auth-supernode-private-key")
        .arg(&key)
        .args(["--max-wait-time", "20"])
        .env("HOME", dir.path())
        .env("FLWR_HOME", dir.path().join(".flwr"))
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .env("FLWR_TELEMETRY_ENABLED", "0")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    while intruder.try_wait().unwrap().is_none() {
        if Instant::now() > until {
            let _ = intruder.kill();
            panic!("an unregistered SuperNode was not refused within 60 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let o = intruder.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!o.status.success(), "{said}");
    assert!(said.contains("Failed to activate SuperNode"), "{said}");
    let superlink = std::fs::read_to_string(out.join("logs/flower-superlink.jsonl")).unwrap();
    assert!(
        superlink.contains("Attempted to register SuperNode with public key"),
        "the SuperLink's log says nothing of the refusal"
    );
}

#[test]
fn ctrl_c_mid_run_leaves_nothing_and_an_unregistered_supernode_is_refused() {
    let Some(bin) = flwr_installed() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cfg = example(tmp.path(), "");
    let out = tmp.path().join("run");
    let mut child = run_command(tmp.path(), &cfg, &out).spawn().unwrap();
    // Wait for round 2 of the deployment, then Ctrl-C.
    wait_for_round_2(&out);
    let supernodes = pgrep(&format!("flower-supernode.*{}", out.display()));
    assert!(!supernodes.trim().is_empty(), "the SuperNodes run");
    an_unregistered_supernode_is_refused(&bin, &out);
    let sent = Instant::now();
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    eprintln!("stopped {:.2} s after Ctrl-C", sent.elapsed().as_secs_f64());
    assert_eq!(status.code(), Some(130), "{status}");
    assert_eq!(summary(&out).status, Status::Cancelled);
    nothing_left(&out);
}

/// Until the deployment in `out` is in round 2.
fn wait_for_round_2(out: &Path) {
    let until = Instant::now() + Duration::from_secs(300);
    loop {
        let log = std::fs::read_to_string(out.join("logs/flwr-run.jsonl")).unwrap_or_default();
        if log.contains("[ROUND 2/") {
            break;
        }
        assert!(Instant::now() < until, "round 2 never came");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Nothing of a run left on the test host of `user`: no node, SuperExec, ClientApp or agent.
fn nothing_left_on_host(user: &str) {
    let left = pgrep_user(user, "flower|[.]fedsim/");
    assert!(left.is_empty(), "left on {user}: {left}");
}

/// The example run to `dir/name` with site-2 struck by a `kind` fault in round 3 and
/// `on_dropout = "continue"` (`extra`: more of the scenario; `args`: more of the command): it is
/// degraded, having lost site-2 in round 3, with the survivors' fit.
fn site_2_lost_in_round_3(
    dir: &Path,
    name: &str,
    kind: &str,
    extra: &str,
    args: &[&str],
) -> (Summary, PathBuf) {
    let cfg = example(
        dir,
        &format!(
            "[federation]\non_dropout = \"continue\"\nmin_sites = 2\n\n[[faults]]\nsite = \"site-2\"\nkind = \"{kind}\"\nround = 3\n\n{extra}"
        ),
    );
    let out = dir.join(name);
    let o = run_command(dir, &cfg, &out)
        .args(args)
        .args(["--set", "platform.simulation=false"])
        .output()
        .unwrap();
    let s = expect_status(&o, &out, Status::Degraded);
    lost_site_2_in_round_3(&s);
    (s, out)
}

/// What Flower said of the lost site, as the run's `platform` warning has it.
fn flowers_words(s: &Summary) -> String {
    s.warnings
        .iter()
        .find(|w| w.kind == "platform")
        .unwrap_or_else(|| panic!("no platform warning: {}", pretty(&s.warnings)))
        .message
        .clone()
}

/// The run lost site-2 in round 3 and its fit is the two survivors' pooled one.
fn lost_site_2_in_round_3(s: &Summary) {
    assert_eq!(s.lost_sites.len(), 1, "{}", pretty(&s.lost_sites));
    assert_eq!(
        (s.lost_sites[0].site.as_str(), s.lost_sites[0].round),
        ("site-2", 3)
    );
    let c = s.comparison.as_ref().unwrap();
    assert!(c.passed && c.max_diff < 1e-9, "{}", pretty(c));
    assert_eq!(s.results.as_ref().unwrap().n, 379, "the survivors' rows");
}

/// What the run's log says of the wheels: whether they were sent to the sites.
fn wheels_sent(out: &Path) -> bool {
    std::fs::read_to_string(out.join("logs/controller.jsonl"))
        .unwrap()
        .contains("sending the platform's wheels")
}

#[test]
fn the_example_on_ssh_sites_installs_flower_once_and_a_killed_node_is_lost() {
    let Some(_) = flwr_installed() else { return };
    let fleet = TestFleet::up(3, "127.0.4", "fedsim-fl");
    let tmp = tempfile::tempdir().unwrap();
    let fleet_toml = fleet.path("fleet.toml");
    let fleet_arg = fleet_toml.to_str().unwrap();
    let out = tmp.path().join("ssh");
    // The shipped scenario as docs/flower.md has it: named relatively, from the project's folder.
    let o = run_to(
        &root(),
        Path::new("resources/config_flower.toml"),
        &out,
        &["--fleet", fleet_arg, "--set", "platform.simulation=false"],
    );
    let s = expect_status(&o, &out, Status::Succeeded);
    let c = s.comparison.as_ref().unwrap();
    assert!(c.passed && c.max_diff < 1e-9, "{}", pretty(c));
    assert!(wheels_sent(&out), "a fresh host gets the wheels");
    let merged = std::fs::read_to_string(out.join("logs/merged.jsonl")).unwrap();
    for i in 1..=3 {
        let home = fleet.home(i);
        // Flower installed in the site's own venv, from the wheels the controller sent.
        let venvs: Vec<PathBuf> = std::fs::read_dir(home.join(".fedsim/venvs"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        assert_eq!(venvs.len(), 1, "{venvs:?}");
        assert!(venvs[0].join("bin/flower-supernode").is_file());
        assert!(venvs[0].join(".ok").is_file());
        // The node's key was made at the site and stays there; the controller has its public
        // half only.
        let work = home.join(".fedsim/flower-logreg/runs/ssh");
        let key = std::fs::metadata(work.join("flower-node-key")).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o777,
            0o600
        );
        let public = out.join(format!("flower/deployment/keys/site-{i}.pub"));
        assert!(std::fs::read_to_string(&public)
            .unwrap()
            .starts_with("ecdsa-sha2-nistp384 "));
        // Its SuperNode's lines, pulled from the site into the one timeline.
        let log = std::fs::read_to_string(out.join(format!("logs/site-{i}.jsonl"))).unwrap();
        let tag = format!("\"process\":\"flower-supernode site-{i}\"");
        assert!(
            log.contains(&tag) && log.contains("Sent successfully"),
            "{log}"
        );
        assert!(merged.contains(&tag), "site-{i} not in the merged log");
        nothing_left_on_host(&format!("fedsim-fl{i}"));
    }
    let private = std::process::Command::new("find")
        .arg(&out)
        .args(["-name", "flower-node-key"])
        .output()
        .unwrap();
    assert!(
        private.stdout.is_empty(),
        "a site's private key at the controller"
    );
    nothing_left(&out);

    // Again, site-2's node killed in round 3: the venvs are reused (no wheels sent) and Flower
    // goes on with the two left.
    let (_, out) =
        site_2_lost_in_round_3(tmp.path(), "ssh-kill", "kill", "", &["--fleet", fleet_arg]);
    assert!(
        !wheels_sent(&out),
        "the sites' venvs are reused by checksum"
    );
    for i in 1..=3 {
        nothing_left_on_host(&format!("fedsim-fl{i}"));
    }
    nothing_left(&out);

    // Again, stopped by Ctrl-C in round 2: nothing is left on any host.
    let out = tmp.path().join("ssh-ctrl-c");
    let mut child = run_command(&root(), Path::new("resources/config_flower.toml"), &out)
        .args(["--fleet", fleet_arg, "--set", "platform.simulation=false"])
        .spawn()
        .unwrap();
    wait_for_round_2(&out);
    for i in 1..=3 {
        let user = format!("fedsim-fl{i}");
        assert!(
            !pgrep_user(&user, "flower-supernode").is_empty(),
            "no SuperNode runs as {user}"
        );
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status}");
    assert_eq!(summary(&out).status, Status::Cancelled);
    for i in 1..=3 {
        nothing_left_on_host(&format!("fedsim-fl{i}"));
    }
    nothing_left(&out);
}

#[test]
fn a_platform_scenario_that_cannot_run_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = example(tmp.path(), "");
    let sub = tmp.path().join("both");
    std::fs::create_dir(&sub).unwrap();
    let both = example(&sub, "[algorithm]\nkind = \"svd\"\nk = 1\n");
    let slow = tmp.path().join("slow");
    std::fs::create_dir(&slow).unwrap();
    let slow = example(
        &slow,
        "[[faults]]\nsite = \"site-1\"\nkind = \"slow\"\nround = 2\ndelay_secs = 1.0\n",
    );
    let cases: [(&Path, &[&str], &str); 9] = [
        (
            &cfg,
            &["--set", "fleet.provider=\"vagrant\""],
            "fleet.provider",
        ),
        (
            &cfg,
            &[
                "--set",
                "fleet.provider=\"vm\"",
                "--set",
                "platform.insecure=true",
            ],
            "platform.insecure",
        ),
        (&cfg, &["--set", "platform.app=nowhere"], "platform.app"),
        (
            &cfg,
            &["--set", "platform.flwr=/nonexistent"],
            "Flower is not installed",
        ),
        (
            &cfg,
            &["--set", "platform.run_config.min-nodes=3"],
            "set by fedsim",
        ),
        (&cfg, &["--set", "platform.pooled=[]"], "platform.pooled"),
        (&cfg, &["--set", "clock.mode=\"simulated\""], "clock.mode"),
        (&both, &[], "leave out [algorithm]"),
        (&slow, &[], "faults.0.kind"),
    ];
    for (i, (cfg, extra, says)) in cases.into_iter().enumerate() {
        let out = tmp.path().join(format!("run{i}"));
        let o = run_to(tmp.path(), cfg, &out, extra);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {e}");
        assert!(e.contains(says), "{extra:?}: {e}");
        assert!(!out.exists(), "{extra:?}: {} written", out.display());
    }
}

#[test]
fn a_cut_link_loses_the_site_and_its_node_gives_up_by_itself() {
    let Some(_) = flwr_installed() else { return };
    // Each site in a network namespace of its own, its node reaching the SuperLink through the
    // SSH tunnel; site-2's link is taken down in round 3.
    let fleet = TestFleet::up_netns(3, "8", "fedsim-fc");
    let tmp = tempfile::tempdir().unwrap();
    let sites = std::fs::read_to_string(fleet.path("fleet.toml"))
        .unwrap()
        .replace(
            "provider = \"ssh\"\n",
            "provider = \"ssh\"\ntunnel = true\n",
        );
    let (s, out) = site_2_lost_in_round_3(tmp.path(), "cut", "cut", &sites, &[]);
    let ended = Instant::now();
    assert!(
        s.lost_sites[0].cause.contains("cut"),
        "{}",
        pretty(&s.lost_sites)
    );
    // What Flower did, in its words: the rounds went on with fewer replies.
    let said = flowers_words(&s);
    assert!(said.contains("Received 2 results and 1 failures"), "{said}");
    eprintln!(
        "Flower on the cut: {said}; rounds (s): {}",
        platform_json(&out)["deployment"]["round_ends"]
    );
    for user in ["fedsim-fc1", "fedsim-fc3"] {
        nothing_left_on_host(user);
    }
    // fedsim cannot reach the cut site to stop its node: the node gives up by itself, after the
    // connect timeout (30 s) without the SuperLink.
    let until = ended + Duration::from_secs(120);
    while !pgrep_user("fedsim-fc2", "flower|[.]fedsim/").is_empty() {
        assert!(
            Instant::now() < until,
            "the cut site's node still runs 120 s after the run: {}",
            pgrep_user("fedsim-fc2", "flower|[.]fedsim/")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "the cut site's node ended {:.1} s after the run",
        ended.elapsed().as_secs_f64()
    );
    // Stopped by its reaper, once the controller's lease went unheard through the cut tunnel.
    let log = std::fs::read_to_string(
        fleet
            .home(2)
            .join(".fedsim/flower-logreg/runs/cut/node.jsonl"),
    )
    .unwrap();
    assert!(
        log.contains("the controller's lease went unheard for 30 s: stopping"),
        "{log}"
    );
    nothing_left(&out);
}
