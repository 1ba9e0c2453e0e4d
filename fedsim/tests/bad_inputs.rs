//! The bad-input corpus in `test_data/bad/run/`: each file gets a clear error naming the file,
//! the place and the problem, exit code 2, and nothing written outside the run directory.

mod common;

use common::*;
use std::path::PathBuf;

fn corpus() -> PathBuf {
    root().join("test_data/bad/run")
}

/// (file, fragments the error must contain, whether a run directory may exist afterwards).
const CASES: &[(&str, &[&str], bool)] = &[
    (
        "nan_cell.toml",
        &[
            "nan_cell.csv",
            "line 8",
            "column \"bp\"",
            "missing value (an empty cell, or NA, NaN",
        ],
        false,
    ),
    (
        "inf_cell.toml",
        &[
            "inf_cell.csv",
            "line 13",
            "column \"progression\"",
            "inf is not a finite number",
        ],
        false,
    ),
    (
        "ragged_row.toml",
        &[
            "ragged_row.csv",
            "line 6",
            "7 fields, but the header has 11",
        ],
        false,
    ),
    (
        "text_in_numeric.toml",
        &[
            "text_in_numeric.csv",
            "line 22",
            "column \"bmi\"",
            "expected a number, found \"male\"",
        ],
        false,
    ),
    (
        "empty_cell.toml",
        &[
            "empty_cell.csv",
            "line 11",
            "column \"s2\"",
            "missing value (an empty cell",
        ],
        false,
    ),
    (
        "header_only.toml",
        &["header_only.csv", "has no rows"],
        false,
    ),
    (
        "two_rows.toml",
        &[
            "two_rows.csv",
            "cannot split 2 rows into 3 sites",
            "site 3 would get no rows",
        ],
        false,
    ),
    (
        "missing_file.toml",
        &["no_such_file.csv", "cannot read data file", "No such file"],
        false,
    ),
    (
        "missing_column.toml",
        &[
            "diabetes.csv",
            "no column \"cholesterol\"",
            "columns are: age, sex",
        ],
        false,
    ),
    // References must describe the analysis: same file, kind, target and terms.
    (
        "reference_terms.toml",
        &[
            "reference.jsonl, line 1",
            "describes another analysis",
            "terms [const, age, sex, bmi",
            "(the analysis: [const, age, bmi, bp])",
        ],
        false,
    ),
    (
        "reference_missing.toml",
        &["reference.jsonl", "no \"ols\" row for \"spector.csv\""],
        false,
    ),
    // Browsers asked for but not there: found before anything starts.
    (
        "gui_no_chromedriver.toml",
        &[
            "[gui] chromedriver",
            "/nonexistent/chromedriver",
            "not found",
            "chromium-driver",
        ],
        false,
    ),
    // A site's own .env is read before anything starts; its token is never echoed.
    (
        "site_env_short_token.toml",
        &[
            "hospital-a",
            "short_token.credentials",
            "shorter than 32 characters",
        ],
        false,
    ),
    // A link profile that does not exist, with the nearest one named.
    (
        "links_unknown_profile.toml",
        &[
            "links_unknown_profile.toml",
            "links.0.profile",
            "did you mean \"hospital-vpn\"",
        ],
        false,
    ),
    // Availability: a misspelt time zone or site gets the nearest name; windows that overlap,
    // and waiting on the real clock are refused, naming why.
    (
        "availability_unknown_timezone.toml",
        &[
            "availability_unknown_timezone.toml:21:12",
            "availability.0.timezone",
            "did you mean \"Europe/Berlin\"",
        ],
        false,
    ),
    (
        "availability_unknown_site.toml",
        &["availability.0.site", "did you mean \"site-2\""],
        false,
    ),
    (
        "availability_overlapping_maintenance.toml",
        &["availability.0.maintenance.1", "overlaps maintenance.0"],
        false,
    ),
    (
        "availability_on_the_real_clock.toml",
        &["availability.0.hours", "[clock] mode = \"simulated\""],
        false,
    ),
    // A trace is read before anything is written, its errors located in it.
    (
        "availability_trace_unknown_site.toml",
        &[
            "availability_trace_unknown_site.csv:3",
            "no site \"site-9\"",
        ],
        false,
    ),
    // The hosts are only tried once the run has started: a run directory records the failure.
    (
        "unreachable_host.toml",
        &[
            "hospital-a",
            "cannot reach 127.0.0.1:1",
            "Connection refused",
        ],
        true,
    ),
];

#[test]
fn every_bad_input_is_refused_with_its_reason_and_exit_code_2() {
    let mut seen: Vec<String> = std::fs::read_dir(corpus())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    seen.sort();
    let mut listed: Vec<String> = CASES.iter().map(|c| c.0.to_string()).collect();
    listed.sort();
    assert_eq!(
        seen, listed,
        "every corpus file has a case, and every case a file"
    );

    for (file, fragments, run_dir) in CASES {
        let work = tempfile::tempdir().unwrap();
        let cfg = corpus().join(file);
        let first = std::fs::read_to_string(&cfg).unwrap();
        assert!(
            first.starts_with("# Bad "),
            "{file} says what is wrong on its first line"
        );
        let o = fedsim(
            work.path(),
            &["run", "-q", "-c", cfg.to_str().unwrap(), "--out", "run"],
        );
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{file}: {err}");
        assert!(!err.contains("abc123"), "{file}: a secret in the error");
        for f in *fragments {
            assert!(err.contains(f), "{file}: {err:?} lacks {f:?}");
        }
        let written: Vec<PathBuf> = std::fs::read_dir(work.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        if *run_dir {
            assert_eq!(
                written,
                vec![work.path().join("run")],
                "{file}: wrote outside the run directory"
            );
            let s = summary(&work.path().join("run"));
            assert_eq!(s.status, Status::Failed, "{file}");
            assert!(s.results.is_none(), "{file}: a failed run claims no result");
        } else {
            assert!(written.is_empty(), "{file}: wrote {written:?}");
        }
    }
}
