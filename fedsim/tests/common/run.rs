//! Running fedsim, and reading what a run wrote: its summary and metrics (typed, as the crate
//! writes them), its merged log, its secrets.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::{bin, Metrics, Status, Summary};

/// `fedsim ARGS` with `cwd` as working directory.
pub fn fedsim(cwd: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("fedsim runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The command `fedsim run -q -c CFG --out OUT` in `cwd`, for callers that spawn it themselves
/// (to learn its pid, or to set its environment).
pub fn run_command(cwd: &Path, cfg: &Path, out: &Path) -> Command {
    let mut c = Command::new(bin());
    c.args([
        "run",
        "-q",
        "-c",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
    .current_dir(cwd);
    c
}

/// `fedsim run -q -c CFG --out OUT EXTRA...` in `cwd`.
pub fn run_to(cwd: &Path, cfg: &Path, out: &Path, extra: &[&str]) -> Output {
    run_command(cwd, cfg, out)
        .args(extra)
        .output()
        .expect("fedsim runs")
}

/// The run's `summary.json`, read as the crate's own type.
pub fn summary(run_dir: &Path) -> Summary {
    let bytes = std::fs::read(run_dir.join("summary.json")).expect("summary.json written");
    serde_json::from_slice::<Summary>(&bytes)
        .unwrap_or_else(|e| panic!("{}/summary.json: {e}", run_dir.display()))
}

/// The run's `metrics.json`, read as the crate's own type.
pub fn metrics(run_dir: &Path) -> Metrics {
    let bytes = std::fs::read(run_dir.join("metrics.json")).expect("metrics.json written");
    serde_json::from_slice::<Metrics>(&bytes)
        .unwrap_or_else(|e| panic!("{}/metrics.json: {e}", run_dir.display()))
}

/// A summary (or any part of one) as the pretty JSON a person reads in a failed assertion.
pub fn pretty<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap()
}

/// The wall seconds of the phase `name`, which must have run.
pub fn phase_secs(m: &Metrics, name: &str) -> f64 {
    m.phases
        .iter()
        .find(|p| p.0 == name)
        .map(|p| p.1)
        .unwrap_or_else(|| panic!("no phase {name} in {:?}", m.phases))
}

/// The exit code a run with this status must end with (the README's table), written out here
/// rather than taken from the crate, so that a changed code fails the tests.
fn exit_code(status: Status) -> i32 {
    match status {
        Status::Succeeded => 0,
        Status::Failed => 1,
        Status::Degraded => 3,
        Status::Cancelled => 130,
    }
}

/// A finished `fedsim run` (its output `o`, its run directory `out`) checked to have ended with
/// `status` and that status's exit code; its summary.
pub fn expect_status(o: &Output, out: &Path, status: Status) -> Summary {
    let written = std::fs::read_to_string(out.join("summary.json")).unwrap_or_default();
    assert_eq!(
        o.status.code(),
        Some(exit_code(status)),
        "expected a {status} run: {}\n{written}",
        stderr(o)
    );
    let s = summary(out);
    assert_eq!(s.status, status, "{}", pretty(&s));
    s
}

/// `fedsim run -q -c CFG --out OUT` in `cwd`, which must end with `status`; its summary.
pub fn run_expecting(cwd: &Path, cfg: &Path, out: &Path, status: Status) -> Summary {
    expect_status(&run_to(cwd, cfg, out, &[]), out, status)
}

/// Every file under `dir`, recursively.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// The run's merged log, checked to hold a line from every one of `sources` and to be in time order.
pub fn merged_log(run_dir: &Path, sources: &[&str]) -> Vec<serde_json::Value> {
    let merged = std::fs::read_to_string(run_dir.join("logs/merged.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = merged
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for source in sources {
        assert!(
            lines.iter().any(|l| l["source"] == *source),
            "{}: no log line from {source}",
            run_dir.display()
        );
    }
    let stamps: Vec<&str> = lines
        .iter()
        .map(|l| l["timestamp"].as_str().unwrap())
        .collect();
    assert!(
        stamps.windows(2).all(|w| w[0] <= w[1]),
        "merged log out of order"
    );
    lines
}

/// Every secret a run made: each site's token, portal password and mask seeds (from the bundles'
/// own `.env`), and the coordinator's portal password (`controller.env`).
pub fn run_secrets(out: &Path, sites: &[&str]) -> Vec<(String, String)> {
    let mut secrets: Vec<(String, String)> = Vec::new();
    for site in sites {
        let env = std::fs::read_to_string(out.join("sites").join(site).join(".env")).unwrap();
        for line in env.lines() {
            if let Some(token) = line.strip_prefix("FEDSIM_TOKEN=") {
                secrets.push((format!("{site} token"), token.to_string()));
            }
            if let Some(pw) = line.strip_prefix("FEDSIM_PORTAL_PASSWORD=") {
                secrets.push((format!("{site} portal password"), pw.to_string()));
            }
            if let Some(seeds) = line.strip_prefix("FEDSIM_PAIR_SEEDS=") {
                for pair in seeds.split(',') {
                    let (peer, seed) = pair.split_once(':').unwrap();
                    secrets.push((format!("{site}/{peer} mask seed"), seed.to_string()));
                }
            }
        }
    }
    let controller = std::fs::read_to_string(out.join("controller.env")).unwrap();
    let pw = controller
        .lines()
        .find_map(|l| l.strip_prefix("FEDSIM_PORTAL_PASSWORD="))
        .unwrap();
    secrets.push(("coordinator portal password".into(), pw.to_string()));
    assert!(secrets.iter().all(|(_, s)| s.len() >= 32));
    secrets
}

/// No secret appears in `extra` (the terminal, ...) or in any file of the run directory other than
/// the bundles' `.env` and `controller.env`. Returns the places searched.
pub fn assert_secrets_stay_home(
    out: &Path,
    secrets: &[(String, String)],
    mut places: Vec<(String, Vec<u8>)>,
) -> Vec<(String, Vec<u8>)> {
    for f in files(out) {
        let in_bundle_env =
            f.file_name().is_some_and(|n| n == ".env") && f.starts_with(out.join("sites"));
        if !in_bundle_env && f != out.join("controller.env") {
            places.push((f.display().to_string(), std::fs::read(&f).unwrap()));
        }
    }
    for (what, secret) in secrets {
        for (place, bytes) in &places {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{what} found in {place}"
            );
        }
    }
    places
}

/// The relays a run's controller opened (`link relay listening`) and the addresses its agents
/// dialed (`connected to coordinator`), from the merged log.
pub fn relays_and_dials(run_dir: &Path, sources: &[&str]) -> (Vec<String>, Vec<String>) {
    let log = merged_log(run_dir, sources);
    let field = |message: &str, key: &str| -> Vec<String> {
        log.iter()
            .filter(|l| l["message"] == message)
            .map(|l| l[key].as_str().unwrap_or_default().to_string())
            .collect()
    };
    (
        field("link relay listening", "relay"),
        field("connected to coordinator", "coordinator"),
    )
}

/// The median over a run's answers (round 1 on) of the time a site's answer spent outside its
/// computing: the link both ways plus the transport's own handling. Robust where the mean is not:
/// emulated VMs on two cores answer with long, run-to-run different tails of scheduling delay.
pub fn median_wire(out: &Path) -> f64 {
    let m = metrics(out);
    let mut v: Vec<f64> = m
        .rounds
        .iter()
        .filter(|r| r.round > 0)
        .flat_map(|r| &r.sites)
        .map(|s| (s.answer_secs - s.compute_secs).max(0.0))
        .collect();
    assert!(!v.is_empty(), "no answers in {}", out.display());
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Mean time from request to answer over the algorithm's rounds, of `site` or of every site.
pub fn mean_answer(out: &Path, site: Option<&str>) -> f64 {
    let m = metrics(out);
    let v: Vec<f64> = m
        .rounds
        .iter()
        .filter(|r| r.round > 0)
        .flat_map(|r| &r.sites)
        .filter(|s| site.is_none_or(|x| s.site == x))
        .map(|s| s.answer_secs)
        .collect();
    assert!(!v.is_empty(), "no answers in {}", out.display());
    v.iter().sum::<f64>() / v.len() as f64
}
