//! Helpers shared by the end-to-end tests: real binaries, real data, independent references.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_fedsim")
}

pub fn test_data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../test_data")
        .join(name)
        .canonicalize()
        .expect("test data present")
}

/// A reference row from `test_data/reference.jsonl` (numpy / statsmodels, computed independently).
pub fn reference(csv: &str, kind: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(test_data("reference.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["csv"] == csv && v["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} reference for {csv}"))
}

pub fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

/// Largest relative difference, element by element (lengths must agree).
pub fn max_rel(got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "length differs: {got:?} vs {want:?}");
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs() / b.abs().max(f64::MIN_POSITIVE))
        .fold(0.0, f64::max)
}

/// Write a scenario into `dir` and return its path.
pub fn scenario(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, body).unwrap();
    p
}

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

pub fn summary(run_dir: &Path) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(run_dir.join("summary.json")).expect("summary.json written"),
    )
    .unwrap()
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

/// A linear-regression scenario on a shipped data set (`target = "progression"` for diabetes),
/// with `extra` TOML appended (federation settings, faults, ...).
pub fn ols_toml(name: &str, csv: &str, sites: usize, extra: &str) -> String {
    format!(
        "[scenario]\nname = \"{name}\"\n[data]\npath = \"{}\"\ntarget = \"progression\"\n[partition]\nkind = \"horizontal\"\nsites = {sites}\n[algorithm]\nkind = \"linear_regression\"\n{extra}",
        test_data(csv).display()
    )
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
