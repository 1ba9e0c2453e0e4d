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
