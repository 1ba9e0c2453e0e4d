//! Every bad scenario in `test_data/bad/scenario/` must fail with an error that names the file,
//! the exact line and key, and says what is wrong. Each file carries exactly one fault (its first
//! line says which); its data path points at the real `test_data/diabetes.csv`, so nothing but the
//! intended fault can trigger.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use fedsim::scenario::{Scenario, ScenarioError};

struct Case {
    file: &'static str,
    line: usize,
    key: &'static str,
    fragments: &'static [&'static str],
}

const fn case(
    file: &'static str,
    line: usize,
    key: &'static str,
    fragments: &'static [&'static str],
) -> Case {
    Case {
        file,
        line,
        key,
        fragments,
    }
}

/// (file, expected line, expected key, fragments the message must contain).
const CASES: &[Case] = &[
    // Parse-level faults (TOML syntax and serde), located by the TOML span.
    case(
        "malformed.toml",
        3,
        "(document)",
        &["invalid basic string", "expected `\"`"],
    ),
    case(
        "duplicate_key.toml",
        12,
        "partition.sites",
        &["duplicate key: `sites` in [partition] is already defined at line 11"],
    ),
    case(
        "duplicate_section.toml",
        19,
        "fleet",
        &[
            "duplicate key: [fleet] is already defined at line 13",
            "give it with --fleet FILE",
        ],
    ),
    case(
        "unknown_key.toml",
        11,
        "partition.sitez",
        &["unknown field `sitez`", "did you mean `sites`"],
    ),
    case(
        "unknown_section.toml",
        13,
        "fleets",
        &["unknown field `fleets`", "did you mean `fleet`"],
    ),
    case(
        "wrong_type.toml",
        11,
        "partition.sites",
        &["invalid type: string \"three\"", "expected a whole number"],
    ),
    case(
        "negative_sites.toml",
        11,
        "partition.sites",
        &["invalid value: integer `-2`", "expected a whole number"],
    ),
    case(
        "bad_enum.toml",
        10,
        "partition.kind",
        &[
            "unknown variant `horizantal`",
            "`horizontal` or `vertical`",
            "did you mean `horizontal`",
        ],
    ),
    case(
        "bad_strategy.toml",
        12,
        "partition.strategy",
        &[
            "unknown variant `random`",
            "expected one of `uniform`, `sizes`, `dirichlet`",
        ],
    ),
    case(
        "missing_section.toml",
        1,
        "(document)",
        &["missing section [algorithm]"],
    ),
    case(
        "sites_missing.toml",
        9,
        "partition",
        &["missing key `sites`"],
    ),
    // Semantic faults found by validation, located on the offending value (or its table header
    // when the key is missing).
    case(
        "bad_name.toml",
        3,
        "scenario.name",
        &["expected a non-empty name of letters", "\"my run/1\""],
    ),
    case(
        "bad_extension.toml",
        6,
        "data.path",
        &["expected a .csv or .parquet file", "\"x.txt\""],
    ),
    case(
        "missing_target.toml",
        5,
        "data",
        &[
            "missing key `target`",
            "linear_regression needs a target column",
        ],
    ),
    case(
        "duplicate_feature.toml",
        8,
        "data.features",
        &["column \"bmi\" is listed twice"],
    ),
    case(
        "target_as_feature.toml",
        8,
        "data.features",
        &["the target \"progression\" cannot also be a feature"],
    ),
    case(
        "zero_sites.toml",
        11,
        "partition.sites",
        &["expected a number of sites of at least 1", "found 0"],
    ),
    case(
        "vertical.toml",
        10,
        "partition.kind",
        &[
            "vertical partitions are supported for svd only, not linear_regression",
            "use \"horizontal\"",
        ],
    ),
    case(
        "sizes_missing.toml",
        9,
        "partition",
        &["missing key `sizes`", "strategy \"sizes\"", "sizes = ["],
    ),
    case(
        "sizes_wrong_count.toml",
        13,
        "partition.sizes",
        &["expected 3 fractions (one per site), found 2"],
    ),
    case(
        "sizes_not_positive.toml",
        13,
        "partition.sizes",
        &["expected fractions greater than 0"],
    ),
    case(
        "sizes_not_one.toml",
        13,
        "partition.sizes",
        &["expected fractions that sum to 1", "sum to 1.2"],
    ),
    case(
        "dirichlet_no_alpha.toml",
        9,
        "partition",
        &[
            "missing key `alpha`",
            "strategy \"dirichlet\"",
            "alpha = 0.5",
        ],
    ),
    case(
        "alpha_negative.toml",
        13,
        "partition.alpha",
        &["expected a number > 0", "found -0.5"],
    ),
    case(
        "alpha_wrong_strategy.toml",
        13,
        "partition.alpha",
        &["`alpha` only applies to strategy \"dirichlet\""],
    ),
    case(
        "bins_too_few.toml",
        14,
        "partition.bins",
        &["expected at least 2 bins, found 1"],
    ),
    case(
        "bad_provider.toml",
        14,
        "fleet.provider",
        &[
            "unknown variant `kubernetes`",
            "`local`, `ssh`, `vm`, `vagrant`",
        ],
    ),
    case(
        "vagrant_loopback_coordinator.toml",
        15,
        "fleet.tunnel",
        &[
            "Vagrant VMs cannot reach 127.0.0.1:0 on this machine's loopback",
            "leave fleet.tunnel on (the default for vagrant)",
        ],
    ),
    case(
        "ssh_remote_loopback_coordinator.toml",
        15,
        "fleet.coordinator",
        &[
            "site site-2 at 192.0.2.7 cannot reach the coordinator at 127.0.0.1:0",
            "(sites.1.host)",
            "set fleet.tunnel = true",
        ],
    ),
    case(
        "ssh_without_sites.toml",
        11,
        "partition.sites",
        &[
            "provider \"ssh\" needs one [[sites]] entry per site",
            "0 [[sites]] are given",
        ],
    ),
    case(
        "duplicate_site_name.toml",
        26,
        "sites.1.name",
        &["duplicate site name \"hospital-a\""],
    ),
    case(
        "bad_coordinator.toml",
        15,
        "fleet.coordinator",
        &["expected an IP address and port", "\"localhost\""],
    ),
    case(
        "option_for_other_algorithm.toml",
        15,
        "algorithm.k",
        &["`k` applies to svd only, not logistic_regression"],
    ),
    case(
        "svd_without_k.toml",
        13,
        "algorithm",
        &["missing key `k`", "e.g. k = 10"],
    ),
    case(
        "vertical_dirichlet.toml",
        12,
        "partition.strategy",
        &["vertical split shares columns", "\"uniform\" or \"sizes\""],
    ),
    case(
        "path_and_generate.toml",
        7,
        "data.generate",
        &["give only one of `path`, `files` and `generate`, not `path` and `generate`"],
    ),
    case(
        "bad_tolerance.toml",
        17,
        "compare.tolerance",
        &["expected a number > 0", "found -1e-8"],
    ),
    case(
        "bad_timeout.toml",
        18,
        "federation.round_timeout_secs",
        &["expected a number of seconds > 0", "found 0"],
    ),
    case(
        "gui_bad_portal.toml",
        18,
        "gui.portal",
        &["expected an IP address and port", "\"localhost:8080\""],
    ),
    case(
        "gui_unknown_key.toml",
        17,
        "gui.enable",
        &["unknown field `enable`", "did you mean `enabled`"],
    ),
    case(
        "gui_bad_step_timeout.toml",
        18,
        "gui.step_timeout_secs",
        &["expected a number of seconds > 0", "found -5"],
    ),
    case(
        "portal_fault_round.toml",
        22,
        "faults.0.round",
        &["a portal fault strikes before the first round; remove `round`"],
    ),
];

/// Files also run through the real `fedsim validate` binary.
const CLI_CASES: &[&str] = &[
    "unknown_key.toml",
    "malformed.toml",
    "zero_sites.toml",
    "sizes_missing.toml",
    "bad_extension.toml",
    "missing_target.toml",
];

fn bad_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../test_data/bad/scenario")
}

fn find(file: &str) -> &'static Case {
    CASES
        .iter()
        .find(|c| c.file == file)
        .unwrap_or_else(|| panic!("{file} is not in CASES"))
}

#[test]
fn every_bad_scenario_reports_file_line_key_and_message() {
    let mut failures = Vec::new();
    for c in CASES {
        let path = bad_dir().join(c.file);
        let err = match Scenario::load(&path) {
            Ok(_) => {
                failures.push(format!("{}: loaded without error", c.file));
                continue;
            }
            Err(e) => e,
        };
        let shown = err.to_string();
        let ScenarioError::Invalid {
            path: err_path,
            line,
            key,
            message,
            ..
        } = &err
        else {
            failures.push(format!("{}: not ScenarioError::Invalid: {shown}", c.file));
            continue;
        };
        let mut problems = Vec::new();
        if err_path != &path {
            problems.push(format!("path {} != {}", err_path.display(), path.display()));
        }
        if *line != c.line {
            problems.push(format!("line {line}, expected {}", c.line));
        }
        if key != c.key {
            problems.push(format!("key {key:?}, expected {:?}", c.key));
        }
        let prefix = format!("{}:{}:", path.display(), c.line);
        if !shown.starts_with(&prefix) {
            problems.push(format!("display does not start with {prefix:?}"));
        }
        if !shown.contains(&format!(": {}: ", c.key)) {
            problems.push(format!("display does not name the key {:?}", c.key));
        }
        for f in c.fragments {
            if !message.contains(f) || !shown.contains(f) {
                problems.push(format!("message lacks {f:?}"));
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {}\n    got: {shown}",
                c.file,
                problems.join("; ")
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn table_covers_every_file_in_the_corpus() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(bad_dir())
        .expect("read test_data/bad/scenario")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let in_table: BTreeSet<String> = CASES.iter().map(|c| c.file.to_string()).collect();
    assert_eq!(
        in_table.len(),
        CASES.len(),
        "a file is listed twice in CASES"
    );
    let untested: Vec<_> = on_disk.difference(&in_table).collect();
    let missing: Vec<_> = in_table.difference(&on_disk).collect();
    assert!(untested.is_empty(), "files without a case: {untested:?}");
    assert!(missing.is_empty(), "cases without a file: {missing:?}");
    assert!(CASES.len() >= 14);
    for c in CASES {
        let text = std::fs::read_to_string(bad_dir().join(c.file)).unwrap();
        let first = text.lines().next().unwrap_or("");
        assert!(
            first.starts_with("# ") && first.len() > 2,
            "{}: first line must be a `# ` comment saying what is wrong",
            c.file
        );
    }
}

#[test]
fn validate_command_exits_2_and_names_the_place() {
    let exe = env!("CARGO_BIN_EXE_fedsim");
    for file in CLI_CASES {
        let c = find(file);
        let path = bad_dir().join(c.file).canonicalize().unwrap();
        let cwd = tempfile::TempDir::new().unwrap();
        let out = Command::new(exe)
            .args(["validate", "-c"])
            .arg(&path)
            .current_dir(cwd.path())
            .output()
            .expect("run fedsim validate");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}: exit status {:?}, stderr:\n{stderr}",
            c.file,
            out.status
        );
        let error_line = stderr
            .lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_else(|| panic!("{}: no `error:` line in stderr:\n{stderr}", c.file));
        let place = format!("{}:{}:", path.display(), c.line);
        assert!(
            error_line.contains(&place),
            "{}: stderr lacks {place:?}:\n{stderr}",
            c.file
        );
        assert!(
            error_line.contains(c.file),
            "{}: stderr lacks the file name:\n{stderr}",
            c.file
        );
        assert!(
            error_line.contains(&format!(": {}: ", c.key)),
            "{}: stderr lacks the key {:?}:\n{stderr}",
            c.file,
            c.key
        );
        for f in c.fragments {
            assert!(
                error_line.contains(f),
                "{}: stderr lacks {f:?}:\n{stderr}",
                c.file
            );
        }
        assert!(
            out.stdout.is_empty(),
            "{}: unexpected stdout: {}",
            c.file,
            String::from_utf8_lossy(&out.stdout)
        );
        let left: Vec<_> = std::fs::read_dir(cwd.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            left.is_empty(),
            "{}: validate wrote into its working directory: {left:?}",
            c.file
        );
    }
}

/// Issue 19.2: a data path written relative to the wrong folder is named at its line in the
/// scenario, with the rule (relative to the scenario's own folder), and nothing is written.
#[test]
fn a_data_path_that_cannot_be_read_is_located_with_the_rule() {
    let cwd = tempfile::TempDir::new().unwrap();
    let dir = cwd.path().join("elsewhere");
    std::fs::create_dir(&dir).unwrap();
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../resources/config_linreg.toml"),
    )
    .unwrap();
    let line = text.lines().position(|l| l.starts_with("path =")).unwrap() + 1;
    std::fs::write(dir.join("s.toml"), &text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fedsim"))
        .args(["validate", "-c", "elsewhere/s.toml"])
        .current_dir(cwd.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "elsewhere/s.toml:{line}:8: data.path: cannot read data file test_data/diabetes.csv"
        )) && stderr.contains("relative to the scenario's own folder (elsewhere/)"),
        "{stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(cwd.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "only the scenario's folder");
}
