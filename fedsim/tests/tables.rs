//! crosstab and describe: every reference row (scipy's chi2_contingency, numpy's statistics)
//! reproduced federated, plain and under secure aggregation; their bad inputs refused with
//! exit 2 before anything starts.

mod common;

use common::*;
use std::path::PathBuf;

struct Run {
    summary: Summary,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

/// A scenario on a shipped file: `data` lines, `sites` horizontal sites, `algorithm` lines,
/// held against reference.jsonl; `secure` turns on secure aggregation.
fn toml(csv: &str, data: &str, sites: usize, algorithm: &str, secure: bool) -> String {
    format!(
        "[scenario]\nname = \"tables\"\nseed = 3\n[data]\npath = \"{}\"\n{data}\n[partition]\nkind = \"horizontal\"\nsites = {sites}\n[algorithm]\n{algorithm}\n[compare]\nreference = \"{}\"\n[federation]\nsecure_aggregation = {secure}\n",
        test_data(csv).display(),
        test_data("reference.jsonl").display()
    )
}

fn run(body: &str) -> Run {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = scenario(tmp.path(), "s", body);
    let dir = tmp.path().join("run");
    let o = run_to(tmp.path(), &cfg, &dir, &[]);
    assert!(o.status.success(), "{body}\n{}", stderr(&o));
    Run {
        summary: expect_status(&o, &dir, Status::Succeeded),
        dir,
        _tmp: tmp,
    }
}

fn named<'a>(s: &'a Summary, k: &str) -> &'a serde_json::Value {
    let r = s.results.as_ref().expect("results");
    r.named
        .get(k)
        .unwrap_or_else(|| panic!("no result {k}: {}", pretty(r)))
}

fn values(v: &serde_json::Value) -> &serde_json::Value {
    v.get("values").unwrap_or(v)
}

/// Both comparisons passed, and the reference one checked every number of the result.
fn judged(s: &Summary) {
    let c = s.comparison.as_ref().expect("comparison");
    assert!(c.passed, "{}", pretty(c));
    let r = s.reference.as_ref().expect("a reference row was found");
    assert!(r.comparison.passed, "{}", pretty(&r.comparison));
    assert_eq!(c.checks.len(), r.comparison.checks.len());
}

/// Largest relative difference of two JSON numbers or (nested) lists of them.
fn rel(a: &serde_json::Value, b: &serde_json::Value) -> f64 {
    let flat = |v: &serde_json::Value| -> Vec<f64> {
        fn walk(v: &serde_json::Value, out: &mut Vec<f64>) {
            match v {
                serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
                x => out.push(x.as_f64().unwrap()),
            }
        }
        let mut out = Vec::new();
        walk(v, &mut out);
        out
    };
    max_rel(&flat(a), &flat(b))
}

#[test]
fn crosstabs_match_scipy_on_every_reference_table() {
    let cases = [
        ("penguins.csv", "species", "island", 3, false),
        ("penguins.csv", "species", "sex", 4, true),
        ("spector.csv", "PSI", "GRADE", 3, false),
        ("lung.csv", "sex", "status", 7, true),
    ];
    let (mut worst_chi2, mut worst_p) = (0.0f64, 0.0f64);
    for (csv, rows, cols, sites, secure) in cases {
        let want = reference_where(csv, "crosstab", |r| r["cols"] == cols);
        let body = toml(
            csv,
            "missing = \"drop\"",
            sites,
            &format!("kind = \"crosstab\"\nrows = \"{rows}\"\ncols = \"{cols}\""),
            secure,
        );
        let r = run(&body);
        let s = &r.summary;
        judged(s);
        assert_eq!(values(named(s, "counts")), &want["counts"], "{csv}");
        // The report's grid shows the same counts, cell by cell.
        let html = std::fs::read_to_string(r.dir.join("report.html")).unwrap();
        let grid = html
            .split("id=\"crosstab\"")
            .nth(1)
            .expect("a crosstab grid");
        let grid = &grid[..grid.find("</table>").unwrap()];
        for (i, row) in want["counts"].as_array().unwrap().iter().enumerate() {
            for (j, count) in row.as_array().unwrap().iter().enumerate() {
                let cell = grid
                    .split(&format!("data-row=\"{i}\" data-col=\"{j}\">"))
                    .nth(1)
                    .unwrap_or_else(|| panic!("{csv}: no cell {i},{j}"));
                let shown: f64 = cell.split('<').next().unwrap().parse().unwrap();
                assert_eq!(shown, count.as_f64().unwrap(), "{csv}: cell {i},{j}");
            }
        }
        assert_eq!(named(s, "df"), &want["df"], "{csv}");
        assert_eq!(named(s, "n"), &want["n"], "{csv}");
        let levels = &named(s, "counts")["labels"];
        let text = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                .collect()
        };
        assert_eq!(text(&levels[0]), text(&want["row_levels"]), "{csv}");
        assert_eq!(text(&levels[1]), text(&want["col_levels"]), "{csv}");
        for k in ["chi2", "p", "chi2_yates", "p_yates"] {
            if want.get(k).is_none() {
                assert!(!s.results.as_ref().unwrap().named.contains_key(k));
                continue;
            }
            let d = rel(named(s, k), &want[k]);
            if k.starts_with("chi2") {
                worst_chi2 = worst_chi2.max(d);
            } else {
                worst_p = worst_p.max(d);
            }
            assert!(d <= 1e-9, "{csv} {k} off scipy by {d:e}");
        }
        let html = std::fs::read_to_string(r.dir.join("report.html")).unwrap();
        let line = format!("Crosstab: {rows} x {cols}");
        assert!(html.contains(&line), "the report lacks {line:?}");
        let d = rel(values(named(s, "expected")), &want["expected"]);
        assert!(d <= 1e-12, "{csv} expected off scipy by {d:e}");
    }
    eprintln!(
        "crosstab: largest relative difference from scipy: chi2 {worst_chi2:e}, p {worst_p:e}"
    );
}

#[test]
fn describe_matches_numpy_exactly_under_secure_aggregation_and_warns_about_extremes() {
    let want = reference("diabetes_raw.csv", "describe");
    let body = toml(
        "diabetes_raw.csv",
        "features = [\"age\", \"bmi\", \"bp\", \"s5\", \"progression\"]",
        5,
        "kind = \"describe\"\nextremes = true",
        true,
    );
    let r = run(&body);
    let s = &r.summary;
    judged(s);
    // The bisection runs to adjacent doubles: numpy's inverted_cdf values, bit for bit.
    assert_eq!(
        values(named(s, "quantiles")),
        &want["quantiles_inverted_cdf"]
    );
    assert_eq!(values(named(s, "min")), &want["min"]);
    assert_eq!(values(named(s, "max")), &want["max"]);
    assert_eq!(values(named(s, "count")), &want["count"]);
    let (m, sd, corr) = (
        rel(values(named(s, "mean")), &want["mean"]),
        rel(values(named(s, "sd")), &want["sd"]),
        rel(values(named(s, "corr")), &want["corr"]),
    );
    eprintln!("describe: relative difference from numpy: mean {m:e}, sd {sd:e}, corr {corr:e}");
    assert!(
        m <= 1e-13 && sd <= 1e-13 && corr <= 1e-13,
        "{m:e} {sd:e} {corr:e}"
    );
    assert_eq!(s.results.as_ref().unwrap().quantile_tol, Some(0.0));
    let w = s
        .warnings
        .iter()
        .find(|w| w.kind == "disclosure")
        .unwrap_or_else(|| panic!("no disclosure warning: {}", pretty(&s.warnings)));
    assert!(w.message.contains("single records"), "{}", w.message);
    let html = std::fs::read_to_string(r.dir.join("report.html")).unwrap();
    assert!(
        html.contains("single records"),
        "the report shows the warning"
    );
    assert!(
        html.contains("quantiles[bmi,0.75]"),
        "the report shows the quantiles"
    );
}

#[test]
fn describe_without_extremes_reports_no_min_or_max_and_a_coarser_bracket_is_stated() {
    let body = toml(
        "diabetes_raw.csv",
        "features = [\"age\", \"bmi\", \"bp\", \"s5\", \"progression\"]",
        3,
        "kind = \"describe\"\nquantile_tol = 1e-3",
        false,
    );
    let r = run(&body);
    let s = &r.summary;
    judged(s);
    let res = s.results.as_ref().unwrap();
    assert!(!res.named.contains_key("min") && !res.named.contains_key("max"));
    assert!(s.warnings.iter().all(|w| w.kind != "disclosure"));
    assert_eq!(res.quantile_tol, Some(1e-3));
    // Judged on the stated width: within 1e-3 standard deviations of numpy's.
    let q = s
        .reference
        .as_ref()
        .unwrap()
        .comparison
        .checks
        .iter()
        .filter(|c| c.term.starts_with("quantiles["))
        .collect::<Vec<_>>();
    assert_eq!(q.len(), 15);
    assert!(
        q.iter().all(|c| c.tolerance == 1e-3 && c.diff <= 1e-3),
        "{}",
        pretty(&q)
    );
    // Fewer rounds than the exact search's 17.
    let rounds = metrics(&r.dir).rounds.len();
    assert!(rounds < 17, "{rounds} rounds");
}

/// `fedsim validate` and `fedsim run` both refuse with exit 2, saying `needles`.
fn refused(body: &str, needles: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = scenario(tmp.path(), "s", body);
    let v = fedsim(tmp.path(), &["validate", "-c", cfg.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(2), "validate: {}", stderr(&v));
    let out = tmp.path().join("never");
    let r = run_to(tmp.path(), &cfg, &out, &[]);
    assert_eq!(r.status.code(), Some(2), "run: {}", stderr(&r));
    assert!(!out.exists(), "a refused run wrote {}", out.display());
    let e = stderr(&r);
    for n in needles {
        assert!(e.contains(n), "{e:?} lacks {n:?}");
    }
}

fn crosstab(rows: &str, cols: &str) -> String {
    toml(
        "penguins.csv",
        "missing = \"drop\"",
        3,
        &format!("kind = \"crosstab\"\nrows = \"{rows}\"\ncols = \"{cols}\""),
        false,
    )
}

#[test]
fn crosstab_bad_inputs_are_named() {
    refused(
        &crosstab("specis", "island"),
        &[
            "algorithm.rows",
            "has no column \"specis\" (did you mean \"species\"?)",
        ],
    );
    refused(
        &crosstab("island", "island"),
        &["algorithm.cols", "`rows` and `cols` are both \"island\""],
    );
    refused(
        &toml(
            "penguins.csv",
            "missing = \"drop\"",
            3,
            "kind = \"crosstab\"\nrows = \"species\"",
            false,
        ),
        &["missing key `cols`"],
    );
    // The reference rows describe species x island, not island x species.
    refused(
        &crosstab("island", "species"),
        &[
            "its \"crosstab\" row for \"penguins.csv\" describes another analysis",
            "rows \"species\" (the analysis: \"island\")",
        ],
    );
    // One level left: only Adelie penguins live on Torgersen.
    let tmp = tempfile::tempdir().unwrap();
    let one = tmp.path().join("torgersen.csv");
    let text = std::fs::read_to_string(test_data("penguins.csv")).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|(i, l)| *i == 0 || l.contains("Torgersen"))
        .map(|(_, l)| l)
        .collect();
    std::fs::write(&one, kept.join("\n") + "\n").unwrap();
    refused(
        &crosstab("species", "sex").replace(
            &test_data("penguins.csv").display().to_string(),
            &one.display().to_string(),
        ),
        &["column \"species\" has one level only (\"Adelie\")"],
    );
}

#[test]
fn describe_bad_inputs_are_named() {
    let describe = |data: &str, algorithm: &str| {
        toml(
            "penguins.csv",
            data,
            3,
            &format!("kind = \"describe\"\n{algorithm}"),
            false,
        )
    };
    refused(
        &describe(
            "missing = \"drop\"\nfeatures = [\"species\", \"bill_length_mm\"]",
            "",
        ),
        &[
            "column \"species\" holds text",
            "describe summarises numeric columns",
        ],
    );
    refused(
        &describe(
            "missing = \"drop\"\nfeatures = [\"species\", \"bill_length_mm\"]\ncategorical = [\"species\"]",
            "",
        ),
        &["data.categorical.0", "\"species\" is categorical"],
    );
    refused(
        &describe(
            "missing = \"drop\"\nfeatures = [\"bill_length_mm\"]",
            "quantiles = [0.5, 1.5]",
        ),
        &[
            "algorithm.quantiles.1",
            "expected a probability from 0 to 1",
        ],
    );
    refused(
        &toml(
            "diabetes_raw.csv",
            "features = [\"age\", \"bmi\", \"bp\", \"s5\", \"progression\"]",
            3,
            "kind = \"describe\"\nquantiles = [0.5]",
            false,
        ),
        &["quantiles \"[0.25, 0.5, 0.75]\" (the analysis: \"[0.5]\")"],
    );
    refused(
        &describe(
            "missing = \"drop\"\nfeatures = [\"bill_length_mm\"]",
            "rows = \"species\"",
        ),
        &["`rows` applies to crosstab only, not describe"],
    );
}

/// The reference row of `csv` and `kind` that `pick` chooses.
fn reference_where(
    csv: &str,
    kind: &str,
    pick: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let text = std::fs::read_to_string(test_data("reference.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["csv"] == csv && r["kind"] == kind && pick(r))
        .unwrap_or_else(|| panic!("no {kind} row for {csv}"))
}

/// The shipped examples run as they say: the crosstab over a file per island (sites holding
/// different species) gives penguins.csv's species x island table and warns about the levels
/// one site holds; describe passes against numpy.
#[test]
fn the_shipped_examples_run() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = root().join("resources/config_crosstab.toml");
    let out = tmp.path().join("crosstab");
    let s = run_expecting(tmp.path(), &cfg, &out, Status::Succeeded);
    let want = reference_where("penguins.csv", "crosstab", |r| r["cols"] == "island");
    assert_eq!(values(named(&s, "counts")), &want["counts"]);
    assert_eq!(named(&s, "chi2"), &want["chi2"]);
    assert!(s.comparison.as_ref().unwrap().passed);
    assert!(
        s.warnings
            .iter()
            .any(|w| w.message.contains("level \"Gentoo\" of \"species\"")),
        "{}",
        pretty(&s.warnings)
    );
    let cfg = root().join("resources/config_describe.toml");
    let out = tmp.path().join("describe");
    let s = run_expecting(tmp.path(), &cfg, &out, Status::Succeeded);
    judged(&s);
}
