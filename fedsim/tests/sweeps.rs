//! Sweeps and CI jobs: `--set` overrides, the Snakemake workflow over a scenario grid (every
//! point checked against the reference), `report --compare` refusing to mix analyses, and the CI
//! simulation script that the shipped GitHub and GitLab jobs call.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

#[test]
fn set_overrides_keys_and_bad_ones_name_the_set() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = root().join("resources/config_linreg.toml");
    let out = tmp.path().join("run");
    let o = run_to(
        tmp.path(),
        &cfg,
        &out,
        &[
            "--set",
            "partition.sites=5",
            "--set",
            "partition.strategy=dirichlet",
            "--set",
            "partition.alpha=0.5",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let s = summary(&out);
    assert_eq!(s.sites.len(), 5);
    let resolved = std::fs::read_to_string(out.join("scenario.toml")).unwrap();
    assert!(
        resolved.contains("strategy = \"dirichlet\"") && resolved.contains("alpha = 0.5"),
        "{resolved}"
    );
    for command in ["run", "validate", "prep"] {
        let mut args = vec![
            command,
            "-q",
            "-c",
            cfg.to_str().unwrap(),
            "--set",
            "partition.sitez=5",
        ];
        if command != "validate" {
            args.extend(["--out", "never"]);
        }
        let o = fedsim(tmp.path(), &args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{command}: {err}");
        assert!(
            err.contains("--set partition.sitez=5: partition.sitez: unknown field `sitez`")
                && err.contains("(did you mean `sites`?)"),
            "{command}: {err}"
        );
        assert!(!tmp.path().join("never").exists());
    }
    let o = fedsim(
        tmp.path(),
        &[
            "validate",
            "-c",
            cfg.to_str().unwrap(),
            "--set",
            "partition.sites=0",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(
            "--set partition.sites=0: partition.sites: expected a number of sites of at least 1"
        ),
        "{}",
        stderr(&o)
    );
}

#[test]
fn compare_refuses_mixed_analyses_and_existing_output() {
    let tmp = tempfile::tempdir().unwrap();
    let mut dirs = Vec::new();
    for name in ["config_linreg.toml", "config_logreg.toml"] {
        let out = tmp.path().join(name);
        let o = run_to(tmp.path(), &root().join("resources").join(name), &out, &[]);
        assert!(o.status.success(), "{}", stderr(&o));
        dirs.push(out);
    }
    let page = tmp.path().join("cmp.html");
    let o = fedsim(
        tmp.path(),
        &[
            "report",
            "--compare",
            "--out",
            page.to_str().unwrap(),
            dirs[0].to_str().unwrap(),
            dirs[1].to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("config_logreg.toml is a logistic_regression run")
            && err.contains("linear_regression"),
        "{err}"
    );
    assert!(!page.exists());
    std::fs::write(&page, "mine").unwrap();
    let o = fedsim(
        tmp.path(),
        &[
            "report",
            "--compare",
            "--out",
            page.to_str().unwrap(),
            dirs[0].to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("exists"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&page).unwrap(), "mine");
}

fn snakemake() -> Option<String> {
    let path = path_with_fedsim();
    std::env::split_paths(&path)
        .map(|d| d.join("snakemake"))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}

/// Run the shipped Snakefile with `config` in `dir`; its output.
fn sweep(snakemake: &str, dir: &Path, config: &Path) -> std::process::Output {
    Command::new(snakemake)
        .args(["-s", root().join("workflows/Snakefile").to_str().unwrap()])
        .args(["--cores", "2", "--configfile", config.to_str().unwrap()])
        .current_dir(dir)
        .env("PATH", path_with_fedsim())
        .output()
        .unwrap()
}

/// Run a sweep that must succeed; its sweep.csv.
fn sweep_ok(snakemake: &str, dir: &Path, config: &Path, out: &Path) -> String {
    let o = sweep(snakemake, dir, config);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::read_to_string(out.join("sweep.csv")).unwrap()
}

/// A sweep.csv: its header and rows.
fn table(csv: &str) -> (Vec<&str>, Vec<Vec<&str>>) {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    (header, lines.map(|l| l.split(',').collect()).collect())
}

#[test]
fn a_six_point_sweep_checks_every_point_against_the_reference() {
    let Some(snakemake) = snakemake() else {
        eprintln!("SKIPPED: snakemake is not installed (.ci/run puts it in ~/.cache/fedsim-venv)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sweep");
    let config = tmp.path().join("sweep.yaml");
    let shipped = std::fs::read_to_string(root().join("workflows/sweep.yaml")).unwrap();
    std::fs::write(
        &config,
        shipped.replace(
            "scenario: resources/config_linreg.toml",
            &format!(
                "scenario: {}\nout: {}",
                root().join("resources/config_linreg.toml").display(),
                out.display()
            ),
        ),
    )
    .unwrap();
    let csv = sweep_ok(&snakemake, tmp.path(), &config, &out);
    let (header, rows) = table(&csv);
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    assert_eq!(rows.len(), 6, "{csv}");
    let mut grid = Vec::new();
    for r in &rows {
        assert_eq!(r[col("status")], "succeeded", "{csv}");
        assert_eq!(r[col("reference_passed")], "True", "{csv}");
        grid.push((r[col("partition.sites")], r[col("partition.strategy")]));
        // Independently of the sweep's own verdict: the point's coefficients are statsmodels'.
        let s = summary(&out.join("runs").join(r[col("point")]));
        let want = reference("diabetes.csv", "ols");
        let coef = &s.results.expect("results").coef;
        let d = max_rel(coef, &floats(&want["coef"]));
        assert!(d <= 1e-8, "{}: {d:e}", r[col("point")]);
    }
    grid.sort();
    assert_eq!(
        grid,
        [
            ("2", "dirichlet"),
            ("2", "uniform"),
            ("3", "dirichlet"),
            ("3", "uniform"),
            ("5", "dirichlet"),
            ("5", "uniform")
        ]
    );
    let html = std::fs::read_to_string(out.join("sweep.html")).unwrap();
    assert!(html.contains("By <code>partition.sites</code>") && html.matches("<svg").count() >= 5);
    // Issue 19.4: runs/ holds run directories only (each with its JUnit file inside), so
    // `fedsim report --compare runs/*` takes them as they are.
    let mut runs: Vec<String> = std::fs::read_dir(out.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .inspect(|p| assert!(p.is_dir(), "{} is not a run directory", p.display()))
        .map(|p| {
            assert!(p.join("junit.xml").is_file(), "{}", p.display());
            p.display().to_string()
        })
        .collect();
    runs.sort();
    let mut args = vec!["report", "--compare", "--out", "all.html"];
    args.extend(runs.iter().map(String::as_str));
    let o = fedsim(tmp.path(), &args);
    assert!(o.status.success(), "{}", stderr(&o));

    // A point that fails is a row with its status; the others run; snakemake says it failed.
    let failing = tmp.path().join("failing.yaml");
    std::fs::write(
        &failing,
        format!(
            "scenario: {}\nout: {}\nsweep:\n  compare.tolerance: [1.0e-8, 1.0e-30]\n",
            root().join("resources/config_linreg.toml").display(),
            tmp.path().join("failing").display()
        ),
    )
    .unwrap();
    let o = Command::new(&snakemake)
        .args(["-s", root().join("workflows/Snakefile").to_str().unwrap()])
        .args([
            "--cores",
            "2",
            "--keep-going",
            "--configfile",
            failing.to_str().unwrap(),
        ])
        .current_dir(tmp.path())
        .env("PATH", path_with_fedsim())
        .output()
        .unwrap();
    assert!(!o.status.success(), "a failed point fails the sweep");
    let csv = std::fs::read_to_string(tmp.path().join("failing/sweep.csv")).unwrap();
    assert!(
        csv.contains(",succeeded,") && csv.contains(",failed,"),
        "{csv}"
    );
    assert!(tmp.path().join("failing/sweep.html").exists());
}

/// A sweep addresses an analysis of a study by its name (`analysis.cox.ties`): every point
/// runs all three analyses, each held against its reference row, and the table says how each
/// analysis ended.
#[test]
fn a_sweep_addresses_an_analysis_by_its_name() {
    let Some(snakemake) = snakemake() else {
        eprintln!("SKIPPED: snakemake is not installed (.ci/run puts it in ~/.cache/fedsim-venv)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sweep");
    let config = tmp.path().join("sweep.yaml");
    std::fs::write(
        &config,
        format!(
            "scenario: {}\nout: {}\nsweep:\n  analysis.cox.ties: [breslow, efron]\n  analysis.curves.group: [sex, ph_ecog]\n",
            root().join("resources/config_study.toml").display(),
            out.display()
        ),
    )
    .unwrap();
    let csv = sweep_ok(&snakemake, tmp.path(), &config, &out);
    let (header, rows) = table(&csv);
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    assert_eq!(rows.len(), 4, "{csv}");
    for r in &rows {
        assert_eq!(r[col("status")], "succeeded", "{csv}");
        assert_eq!(r[col("reference_passed")], "True", "{csv}");
        assert_eq!(
            r[col("analyses")],
            "table:succeeded curves:succeeded cox:succeeded",
            "{csv}"
        );
        // The point ran what its settings say.
        let plan =
            std::fs::read_to_string(out.join("runs").join(r[col("point")]).join("plan.json"))
                .unwrap();
        let ties = r[col("analysis.cox.ties")];
        assert!(
            plan.contains(&format!("\"ties\": \"{ties}\"")),
            "{ties}: {plan}"
        );
        let d: f64 = r[col("max_diff_reference")].parse().unwrap();
        assert!(d < 1e-10, "{csv}");
    }
}

/// A sweep over the number of sites under a site's disclosure rules shows where a study stops
/// passing: the lung table passes DataSHIELD's filters on 3 sites; on 10, sites hold table
/// cells below 3 and refuse.
#[test]
fn a_sweep_shows_at_which_split_a_study_stops_passing_its_disclosure_rules() {
    let Some(snakemake) = snakemake() else {
        eprintln!("SKIPPED: snakemake is not installed (.ci/run puts it in ~/.cache/fedsim-venv)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let scenario = tmp.path().join("table.toml");
    std::fs::write(
        &scenario,
        format!(
            "[scenario]\nname = \"table\"\nseed = 11\n[data]\npath = \"{}\"\n[partition]\nkind = \"horizontal\"\nsites = 3\n[algorithm]\nkind = \"crosstab\"\nrows = \"sex\"\ncols = \"status\"\n[privacy]\npreset = \"datashield\"\n",
            test_data("lung.csv").display()
        ),
    )
    .unwrap();
    let out = tmp.path().join("sweep");
    let config = tmp.path().join("sweep.yaml");
    std::fs::write(
        &config,
        format!(
            "scenario: {}\nout: {}\nsweep:\n  partition.sites: [3, 10]\n",
            scenario.display(),
            out.display()
        ),
    )
    .unwrap();
    let o = sweep(&snakemake, tmp.path(), &config);
    assert!(!o.status.success(), "the 10-site point fails the sweep");
    let csv = std::fs::read_to_string(out.join("sweep.csv")).unwrap();
    let (header, rows) = table(&csv);
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let mut status: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r[col("partition.sites")], r[col("status")]))
        .collect();
    status.sort();
    assert_eq!(status, [("10", "failed"), ("3", "succeeded")], "{csv}");
    let failed = rows
        .iter()
        .find(|r| r[col("partition.sites")] == "10")
        .unwrap();
    assert!(
        failed[col("error")].contains("by its disclosure rules: min_cell = 3"),
        "{csv}"
    );
}

#[test]
fn the_ci_simulation_script_fails_exactly_when_a_comparison_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let script = root().join("workflows/ci/simulate.sh");
    let good = root().join("resources/config_linreg.toml");
    let o = Command::new(&script)
        .arg(tmp.path().join("ok"))
        .arg(&good)
        .env("PATH", path_with_fedsim())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let junit = std::fs::read_to_string(tmp.path().join("ok/junit/config_linreg.xml")).unwrap();
    assert!(junit.contains("failures=\"0\""));
    assert!(tmp
        .path()
        .join("ok/runs/config_linreg/report.html")
        .exists());
    // Too tight a tolerance: the comparison fails, and so does the job.
    let strict = tmp.path().join("strict.toml");
    std::fs::write(
        &strict,
        std::fs::read_to_string(&good)
            .unwrap()
            .replace("tolerance = 1e-8", "tolerance = 1e-30")
            .replace(
                "\"../test_data/",
                &format!("\"{}/test_data/", root().display()),
            ),
    )
    .unwrap();
    let o = Command::new(&script)
        .arg(tmp.path().join("bad"))
        .arg(&good)
        .arg(&strict)
        .env("PATH", path_with_fedsim())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        said.contains("ok      config_linreg") && said.contains("FAILED  strict"),
        "{said}"
    );
    let junit = std::fs::read_to_string(tmp.path().join("bad/junit/strict.xml")).unwrap();
    assert!(!junit.contains("failures=\"0\""), "{junit}");
}

/// Issue 19.3: a sweep whose points all fail keeps sweep.csv (each point's error in it) and says
/// why on the terminal, instead of losing the table with the failed rule.
#[test]
fn a_sweep_whose_points_all_fail_keeps_its_table_and_says_why() {
    let Some(snakemake) = snakemake() else {
        eprintln!("SKIPPED: snakemake is not installed (.ci/run puts it in ~/.cache/fedsim-venv)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let scenario = tmp.path().join("sized.toml");
    std::fs::write(
        &scenario,
        std::fs::read_to_string(root().join("resources/config_linreg.toml"))
            .unwrap()
            .replace(
                "strategy = \"uniform\"",
                "strategy = \"sizes\"\nsizes = [0.6, 0.3, 0.1]",
            )
            .replace(
                "\"../test_data/",
                &format!("\"{}/test_data/", root().display()),
            ),
    )
    .unwrap();
    let config = tmp.path().join("sweep.yaml");
    std::fs::write(
        &config,
        format!(
            "scenario: {}\nout: {}\nsweep:\n  partition.sites: [2, 5]\n",
            scenario.display(),
            tmp.path().join("out").display()
        ),
    )
    .unwrap();
    let o = Command::new(&snakemake)
        .args(["-s", root().join("workflows/Snakefile").to_str().unwrap()])
        .args(["--cores", "2", "--configfile", config.to_str().unwrap()])
        .current_dir(tmp.path())
        .env("PATH", path_with_fedsim())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let said =
        String::from_utf8_lossy(&o.stderr).to_string() + &*String::from_utf8_lossy(&o.stdout);
    assert!(
        said.contains("2 of 2 points did not succeed")
            && said.contains("sites-2: bad input")
            && said.contains("partition.sizes"),
        "{said}"
    );
    let csv = std::fs::read_to_string(tmp.path().join("out/sweep.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(
        csv.lines()
            .skip(1)
            .all(|l| l.contains("bad input") && l.contains("partition.sizes")),
        "{csv}"
    );
    let page = std::fs::read_to_string(tmp.path().join("out/sweep.html")).unwrap();
    assert!(page.contains("No point of the sweep finished"), "{page}");
}

/// A sweep over the sites' round trip on the simulated clock: each point's projected study is
/// in sweep.csv, it grows with the latency (a round trip per round at least), and sweep.html
/// plots it against the key.
#[test]
fn a_sweep_projects_the_study_against_the_links_latency() {
    let Some(snakemake) = snakemake() else {
        eprintln!("SKIPPED: snakemake is not installed (.ci/run puts it in ~/.cache/fedsim-venv)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let scenario = tmp.path().join("latency.toml");
    std::fs::write(
        &scenario,
        Ols::on("latency", "diabetes.csv", 3)
            .extra("[clock]\nmode = \"simulated\"\n\n[[links]]\nsites = \"*\"\ndelay_ms = 50.0\nrate_kbit = 10000.0\n")
            .toml(),
    )
    .unwrap();
    let out = tmp.path().join("sweep");
    let config = tmp.path().join("sweep.yaml");
    std::fs::write(
        &config,
        format!(
            "scenario: {}\nout: {}\nsweep:\n  links.0.delay_ms: [50, 500, 5000]\n",
            scenario.display(),
            out.display()
        ),
    )
    .unwrap();
    let csv = sweep_ok(&snakemake, tmp.path(), &config, &out);
    let (header, rows) = table(&csv);
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let mut points: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| {
            (
                r[col("links.0.delay_ms")].parse().unwrap(),
                r[col("projected_secs")].parse().unwrap(),
            )
        })
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(points.len(), 3, "{csv}");
    for (delay, projected) in &points {
        // The handshake and 4 rounds (loading included), a round trip each at least.
        assert!(
            *projected >= 5.0 * delay / 1000.0,
            "{delay} ms: {projected} s\n{csv}"
        );
    }
    assert!(
        points[0].1 < points[1].1 && points[1].1 < points[2].1,
        "{points:?}"
    );
    let html = std::fs::read_to_string(out.join("sweep.html")).unwrap();
    assert!(
        html.contains("projected-by-key"),
        "sweep.html plots the projection"
    );
}
