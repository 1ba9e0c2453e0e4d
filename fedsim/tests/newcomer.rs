//! A newcomer's first hour (issue 19): the install and the first command as the README gives
//! them, help that says what every option does, options that are refused rather than ignored,
//! and a summary whose keys are always there.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

/// `fedsim ARGS` in `cwd` with fedsim's cache in `cache` (the shipped example and fleets live
/// there), so the test sees no fleet or file of another.
fn fedsim_cached(cwd: &Path, cache: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .env("FEDSIM_CACHE", cache)
        .output()
        .unwrap()
}

/// 19.7: `fedsim run` with no scenario runs the shipped OLS example from any directory, held
/// against statsmodels; `validate` checks the same; the README's install names the Rust version
/// that Cargo.toml declares.
#[test]
fn the_embedded_default_runs_from_an_empty_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let v = fedsim_cached(&work, &cache, &["validate"]);
    assert!(v.status.success(), "{}", stderr(&v));
    let o = fedsim_cached(&work, &cache, &["run", "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dir = work.join(String::from_utf8_lossy(&o.stdout).trim());
    assert!(dir.starts_with(work.join("runs")), "{}", dir.display());
    let s = summary(&dir);
    assert_eq!(s.status, Status::Succeeded);
    assert_eq!(s.scenario, "diabetes-ols");
    assert!(s.reference.expect("a reference").comparison.passed);
    let want = reference("diabetes.csv", "ols");
    let coef = &s.results.expect("results").coef;
    assert!(max_rel(coef, &floats(&want["coef"])) < 1e-8);
    // A second run reuses the files in the cache as they are.
    let o = fedsim_cached(&work, &cache, &["run", "-q", "--out", "again"]);
    assert!(o.status.success(), "{}", stderr(&o));

    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let top: String = readme.lines().take(60).collect::<Vec<_>>().join("\n");
    for command in [
        "cargo install --path fedsim --locked",
        "\nfedsim run\n",
        "cargo test --workspace",
    ] {
        assert!(top.contains(command), "the README's top lacks {command:?}");
    }
    let cargo = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let version = cargo
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .expect("rust-version declared")
        .trim_matches('"');
    assert!(
        top.contains(&format!("Rust {version} or newer")),
        "the README names Rust {version}"
    );
}

/// 19.8: `report` refuses what it would ignore: `--out`, `--by` or `--force` without
/// `--compare`, and a `--by` key no run has (with the nearest key).
#[test]
fn report_refuses_options_it_would_ignore() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = root().join("resources/config_linreg.toml");
    let run = tmp.path().join("run");
    let o = run_to(tmp.path(), &cfg, &run, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = run.to_str().unwrap();
    for (args, want) in [
        (
            vec!["report", "--out", "x.html", r],
            "--out applies to --compare",
        ),
        (
            vec!["report", "--by", "partition.sites", r],
            "--by applies to --compare",
        ),
        (vec!["report", "--force", r], "--force applies to --compare"),
        (
            vec![
                "report",
                "--compare",
                "--by",
                "partition.sitez",
                "--out",
                "x.html",
                r,
            ],
            "--by partition.sitez: no run's scenario has this key (did you mean partition.sites?)",
        ),
    ] {
        let o = fedsim(tmp.path(), &args);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        assert!(e.contains(want), "{args:?}: {e}");
        assert!(!tmp.path().join("x.html").exists());
    }
    let o = fedsim(
        tmp.path(),
        &[
            "report",
            "--compare",
            "--by",
            "partition.sites",
            "--out",
            "x.html",
            r,
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

/// 19.9: every option of every subcommand says what it does in `--help`.
#[test]
fn every_option_has_help() {
    let commands: &[&[&str]] = &[
        &["run"],
        &["prep"],
        &["validate"],
        &["check"],
        &["report"],
        &["logs"],
        &["bench"],
        &["vm", "image"],
        &["vm", "box"],
        &["fleet", "up"],
        &["fleet", "status"],
        &["fleet", "down"],
        &["agent"],
    ];
    for cmd in commands {
        let mut args = cmd.to_vec();
        args.push("--help");
        let o = Command::new(bin()).args(&args).output().unwrap();
        assert!(o.status.success());
        let help = String::from_utf8_lossy(&o.stdout).into_owned();
        let options = help
            .split("Options:")
            .nth(1)
            .unwrap_or_else(|| panic!("{cmd:?}: no options in {help}"));
        // An option is `  -c, --config <X>  Text`, or (long help) its text on the next line.
        let lines: Vec<&str> = options.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if !(line.starts_with("  -") || line.starts_with("      --")) {
                continue;
            }
            let inline = line
                .trim()
                .split("  ")
                .filter(|p| !p.trim().is_empty())
                .count()
                >= 2;
            let below = lines
                .get(i + 1)
                .is_some_and(|next| !next.trim().is_empty() && !next.trim_start().starts_with('-'));
            assert!(
                inline || below,
                "fedsim {}: blank help: {line:?}",
                cmd.join(" ")
            );
        }
    }
}

/// 19.9: a vm scenario's `prep` with no fleet up is bad input (exit 2), says what to do, and
/// writes nothing; the docs of provision/ know every provider; what sweeps and examples leave
/// behind is ignored by git.
#[test]
fn prep_without_a_fleet_is_bad_input_and_leftovers_are_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = root().join("resources/config_vm.toml");
    let o = fedsim_cached(
        tmp.path(),
        &tmp.path().join("cache"),
        &["prep", "-c", cfg.to_str().unwrap(), "--out", "bundles"],
    );
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains("no fleet of diabetes-vm is up") && e.contains("fedsim fleet up -c"),
        "{e}"
    );
    assert!(!tmp.path().join("bundles").exists());

    let provision = std::fs::read_to_string(root().join("provision/README.md")).unwrap();
    for provider in ["local", "ssh", "vm", "vagrant"] {
        assert!(
            provision.contains(&format!("`{provider}`")),
            "provision/README.md: {provider}"
        );
    }
    assert!(!provision.contains("only provider"));

    if Command::new("git").arg("--version").output().is_ok() && root().join(".git").exists() {
        for path in [
            ".snakemake/log/x.log",
            "sweeps/diabetes-ols/sweep.csv",
            "runs/x/summary.json",
            "algorithms/examples/runs/moments-1/summary.json",
            "compare.html",
        ] {
            let ignored = Command::new("git")
                .args(["check-ignore", "-q", "--no-index", path])
                .current_dir(root())
                .status()
                .unwrap();
            assert!(ignored.success(), "{path} is not ignored by git");
        }
    }
}

/// 19.9: summary.json always has `error`, `reference`, `lost_sites` and `warnings` (null or
/// empty when there is nothing), as the README says.
#[test]
fn every_summary_key_is_always_there() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = scenario(
        tmp.path(),
        "plain",
        &ols_toml("plain", "diabetes.csv", 2, ""),
    );
    let out = tmp.path().join("run");
    let o = run_to(tmp.path(), &cfg, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The keys as the file has them (the type would fill in a missing one).
    let raw: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let keys = raw.as_object().unwrap();
    for key in [
        "error",
        "results",
        "baseline",
        "comparison",
        "reference",
        "lost_sites",
        "warnings",
    ] {
        assert!(keys.contains_key(key), "summary.json lacks {key}");
    }
    let s = summary(&out);
    assert!(s.error.is_none() && s.reference.is_none());
    assert!(s.lost_sites.is_empty());
}
