//! The fields of a run's `summary.json` and `metrics.json`, held against lists checked in under
//! `tests/golden/`. People's scripts read these files, so a field renamed or removed is a change
//! they see: it must be made on purpose, by updating the list (`FEDSIM_BLESS=1` rewrites it).
//!
//! A field is its key path in the file as written: objects recursed as `a.b.c`, array elements
//! as `a[]`, and objects whose keys are data (a site's or an account's name) as `a.*`. A key whose
//! value is null or an empty list is listed too, so a key that is "always there" stays there.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The objects whose keys are data, not fields: per-site memory, per-account downloads, and an
/// external algorithm's named results.
const MAPS: &[&str] = &[
    "sites_peak_rss_kib",
    "portal.downloads",
    "results.named",
    "baseline.named",
];

/// Every key path of `v` under `at` (see the module's doc).
fn key_paths(v: &serde_json::Value, at: &str, out: &mut BTreeSet<String>) {
    if !at.is_empty() {
        out.insert(at.to_string());
    }
    match v {
        serde_json::Value::Object(fields) => {
            let data_keys = MAPS.contains(&at);
            for (key, value) in fields {
                let key = if data_keys { "*" } else { key.as_str() };
                let path = if at.is_empty() {
                    key.to_string()
                } else {
                    format!("{at}.{key}")
                };
                key_paths(value, &path, out);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                key_paths(item, &format!("{at}[]"), out);
            }
        }
        _ => {}
    }
}

/// The key paths of the JSON file at `path`, sorted.
fn fields_of(path: &Path) -> BTreeSet<String> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: serde_json::Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    let mut out = BTreeSet::new();
    key_paths(&json, "", &mut out);
    out
}

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

const HEADER: &str = "# Key paths of a run's file (see fedsim/tests/run_files_schema.rs): `a.b` an object's\n\
                      # field, `a[]` an array's elements, `a.*` an object keyed by data. Rewritten by\n\
                      # FEDSIM_BLESS=1 cargo test --test run_files_schema.\n";

/// `file` (a run's `summary.json` or `metrics.json`, `what` for people) against the golden list
/// `name`: the difference, if any, as a diff. With `FEDSIM_BLESS=1`, writes the list instead.
fn compare(what: &str, file: &Path, name: &str) -> Option<String> {
    let got = fields_of(file);
    let path = golden(name);
    if std::env::var_os("FEDSIM_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let lines: Vec<&str> = got.iter().map(String::as_str).collect();
        std::fs::write(&path, format!("{HEADER}{}\n", lines.join("\n"))).unwrap();
        eprintln!("FEDSIM_BLESS=1: wrote {}", path.display());
        return None;
    }
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let want: BTreeSet<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    if got == want {
        return None;
    }
    let mut diff = format!(
        "{what}: its fields differ from {} (- only in the golden file, + only in the run):\n",
        path.display()
    );
    for gone in want.difference(&got) {
        diff.push_str(&format!("- {gone}\n"));
    }
    for new in got.difference(&want) {
        diff.push_str(&format!("+ {new}\n"));
    }
    Some(diff)
}

/// Fails with every difference found, and what to do about it.
fn assert_no_difference(diffs: Vec<Option<String>>) {
    let diffs: Vec<String> = diffs.into_iter().flatten().collect();
    assert!(
        diffs.is_empty(),
        "{}\na renamed or removed field in summary.json/metrics.json is a user-visible change: \
         update the golden file deliberately (FEDSIM_BLESS=1 cargo test --test run_files_schema \
         rewrites them; review the diff before committing it)",
        diffs.join("\n")
    );
}

/// The shipped OLS example (three local sites, a reference, the portal's API path): every
/// section of summary.json that a successful run fills, and metrics.json whole.
#[test]
fn a_runs_summary_and_metrics_have_the_golden_fields() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let cfg = root().join("resources/config_linreg.toml");
    // Read typed as well: the crate reads back what it wrote.
    let s = run_expecting(tmp.path(), &cfg, &out, Status::Succeeded);
    assert!(s.reference.is_some() && s.comparison.is_some());
    assert!(metrics(&out).portal.is_some());
    assert_no_difference(vec![
        compare(
            "summary.json",
            &out.join("summary.json"),
            "summary_fields.txt",
        ),
        compare(
            "metrics.json",
            &out.join("metrics.json"),
            "metrics_fields.txt",
        ),
    ]);
}

/// A run that fails (a site's portal password is wrong, before any round): summary.json's
/// `error`, and the sections left null or empty.
#[test]
fn a_failed_runs_summary_has_the_golden_fields() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = Ols::on("api-wrong-password", "diabetes.csv", 3)
        .extra("[[faults]]\nsite = \"site-1\"\nkind = \"wrong_password\"\n")
        .write(tmp.path(), "failed");
    let out = tmp.path().join("run");
    let s = run_expecting(tmp.path(), &cfg, &out, Status::Failed);
    let error = s.error.expect("a failed run says why");
    assert!(error.site.is_some() && error.phase.is_some(), "{error:?}");
    assert_no_difference(vec![compare(
        "summary.json of a failed run",
        &out.join("summary.json"),
        "summary_failed_fields.txt",
    )]);
}
