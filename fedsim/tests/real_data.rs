//! Data as it really comes: text columns coded as categories, empty cells dropped, a file per
//! site with different levels at each, any delimiter. Every answer is held against statsmodels'
//! formula API (`test_data/reference.jsonl`, made by `test_data/make_reference.py`).

mod common;

use common::*;
use std::path::{Path, PathBuf};

/// The shipped scenario, with its relative paths made absolute, and `edit` applied.
fn shipped(dir: &Path, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(root().join("resources").join(name))
        .unwrap()
        .replace(
            "\"../test_data/",
            &format!("\"{}/", test_data("").display()),
        );
    scenario(dir, "s", &edit(text))
}

/// federated == centralised == statsmodels, term by term, on the formula API's names.
fn assert_matches_statsmodels(s: &Summary) {
    let want = reference("penguins.csv", "ols");
    let fed = s.results.as_ref().expect("federated results");
    let base = s.baseline.as_ref().expect("a centralised baseline");
    let want_terms: Vec<&str> = want["terms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(fed.terms, want_terms, "terms and their order");
    assert_eq!(base.terms, want_terms);
    assert_eq!(Some(fed.n as u64), want["n"].as_u64());
    assert_eq!(Some(base.n as u64), want["n"].as_u64());
    for (q, f, b) in [("coef", &fed.coef, &base.coef), ("se", &fed.se, &base.se)] {
        for side in [f, b] {
            let d = max_rel(side, &floats(&want[q]));
            assert!(d < 1e-8, "{q}: {d:e} from statsmodels");
        }
        let d = max_rel(f, b);
        assert!(d < 1e-8, "{q}: {d:e} federated vs centralised");
    }
    let r2 = (fed.r2.expect("r2") - want["r2"].as_f64().unwrap()).abs();
    assert!(r2 < 1e-10, "r2 differs by {r2:e}");
}

#[test]
fn text_columns_and_empty_cells_give_the_formula_apis_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = shipped(tmp.path(), "config_penguins.toml", |t| t);
    let out = tmp.path().join("run");
    let s = run_expecting(tmp.path(), &cfg, &out, Status::Succeeded);
    assert_matches_statsmodels(&s);
    assert!(s.reference.as_ref().expect("a reference").comparison.passed);
    // 344 rows, 11 incomplete: each site dropped its own, and says how many.
    let sites = &s.sites;
    let rows: usize = sites.iter().map(|x| x.rows).sum();
    let dropped: usize = sites
        .iter()
        .map(|x| x.dropped_rows.expect("dropped rows counted"))
        .sum();
    assert_eq!((rows, dropped), (344, 11));
    // The sites hold the text and the gaps; nobody coded or cleaned their rows for them.
    let site1 = std::fs::read_to_string(out.join("sites/site-1/data.csv")).unwrap();
    assert!(site1
        .lines()
        .next()
        .unwrap()
        .starts_with("species,island,sex,"));
    assert!(site1.contains("Adelie") || site1.contains("Gentoo"));
    let report = std::fs::read_to_string(out.join("report.html")).unwrap();
    for x in sites {
        let cell = format!(
            "{} ({} incomplete, dropped)",
            x.rows,
            x.dropped_rows.expect("dropped rows counted")
        );
        assert!(report.contains(&cell), "report lacks {cell}");
    }
}

#[test]
fn a_file_per_site_with_different_levels_agrees_on_them_and_warns() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = shipped(tmp.path(), "config_penguins_sites.toml", |t| t);
    let out = tmp.path().join("run");
    let s = run_expecting(tmp.path(), &cfg, &out, Status::Succeeded);
    // The union of the islands' rows is the pooled file; row order does not change OLS.
    assert_matches_statsmodels(&s);
    let rows: Vec<usize> = s.sites.iter().map(|x| x.rows).collect();
    assert_eq!(rows, [168, 124, 52], "one site per file, in file order");
    // Gentoo lives only on Biscoe (site-1), Chinstrap only on Dream (site-2).
    let warnings = &s.warnings;
    let lonely = |level: &str, site: &str| {
        warnings.iter().any(|w| {
            w.kind == "privacy"
                && w.site.as_deref() == Some(site)
                && w.message.contains(&format!("{level:?}"))
        })
    };
    assert!(
        lonely("Gentoo", "site-1") && lonely("Chinstrap", "site-2"),
        "{warnings:?}"
    );
    assert!(!lonely("Adelie", "site-1"), "Adelie is on every island");
    let report = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(report.contains("id=\"warnings\"") && report.contains("Chinstrap"));
    // Torgersen's file has no Gentoo or Chinstrap row, yet its site coded both columns: the
    // answer above needs every site's design to have the same columns.
    let torgersen = std::fs::read_to_string(out.join("sites/site-3/data.csv")).unwrap();
    assert!(!torgersen.contains("Gentoo") && !torgersen.contains("Chinstrap"));
}

#[test]
fn secure_aggregation_codes_categories_too() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = shipped(tmp.path(), "config_penguins.toml", |t| {
        t + "[federation]\nsecure_aggregation = true\n"
    });
    let out = tmp.path().join("run");
    assert_matches_statsmodels(&run_expecting(tmp.path(), &cfg, &out, Status::Succeeded));
}

/// `fedsim validate` and `fedsim run` both refuse, with exit 2, saying `needles`; the run
/// directory is not made.
fn refused(cfg: &Path, needles: &[&str]) {
    let dir = cfg.parent().unwrap();
    let v = fedsim(dir, &["validate", "-c", cfg.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(2), "validate: {}", stderr(&v));
    let out = dir.join("never");
    let r = run_to(dir, cfg, &out, &[]);
    assert_eq!(r.status.code(), Some(2), "run: {}", stderr(&r));
    assert!(!out.exists(), "a refused run wrote {}", out.display());
    let e = stderr(&r);
    for n in needles {
        assert!(e.contains(n), "{e:?} lacks {n:?}");
    }
}

#[test]
fn an_empty_cell_is_named_unless_missing_is_drop() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = shipped(tmp.path(), "config_penguins.toml", |t| {
        t.replace("missing = \"drop\"", "")
    });
    // Line 5 is the Torgersen bird with no measurements.
    refused(
        &cfg,
        &[
            "penguins.csv, line 5, column \"bill_length_mm\": missing value",
            "set [data] missing = \"drop\"",
        ],
    );
}

#[test]
fn an_undeclared_text_column_is_named_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = shipped(tmp.path(), "config_penguins.toml", |t| {
        t.replace(
            "categorical = [\"species\", \"island\", \"sex\"]",
            "categorical = [\"island\", \"sex\"]",
        )
    });
    refused(
        &cfg,
        &[
            "column \"species\" holds text (line 2: \"Adelie\")",
            "list it in [data] categorical",
        ],
    );
}

#[test]
fn an_unknown_delimiter_is_refused_at_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = shipped(tmp.path(), "config_penguins.toml", |t| {
        t.replace(
            "missing = \"drop\"",
            "missing = \"drop\"\ndelimiter = \"::\"",
        )
    });
    refused(
        &cfg,
        &[
            "s.toml:18:",
            "data.delimiter: expected one of",
            "found \"::\"",
        ],
    );
}

#[test]
fn a_site_file_with_other_columns_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let odd = tmp.path().join("dream.csv");
    let text = std::fs::read_to_string(test_data("penguins_sites/dream.csv")).unwrap();
    std::fs::write(&odd, text.replacen("flipper_length_mm", "flipper_mm", 1)).unwrap();
    let cfg = shipped(tmp.path(), "config_penguins_sites.toml", |t| {
        t.replace(
            &format!("{}/penguins_sites/dream.csv", test_data("").display()),
            &odd.display().to_string(),
        )
    });
    refused(
        &cfg,
        &[
            "dream.csv: has no column \"flipper_length_mm\" that",
            "biscoe.csv",
            "must share their columns",
        ],
    );
}

#[test]
fn a_column_that_is_not_there_gets_did_you_mean_and_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = shipped(tmp.path(), "config_penguins.toml", |t| {
        t.replace("target = \"body_mass_g\"", "target = \"body_mass\"")
    });
    refused(
        &cfg,
        &[
            "s.toml:14:",
            "data.target",
            "no column \"body_mass\" (did you mean \"body_mass_g\"?)",
        ],
    );
    let cfg = shipped(tmp.path(), "config_penguins.toml", |t| {
        t.replace(
            "\"bill_depth_mm\", \"flipper",
            "\"bill_dept_mm\", \"flipper",
        )
    });
    refused(
        &cfg,
        &["data.features.4", "(did you mean \"bill_depth_mm\"?)"],
    );
}

/// `diabetes_raw.csv` rewritten as a European spreadsheet exports it: `;` between fields, a decimal
/// comma in the numbers.
fn decimal_comma_copy(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(test_data("diabetes_raw.csv")).unwrap();
    let out = dir.join("komma.csv");
    let converted: String = text
        .lines()
        .map(|l| l.replace(',', ";").replace('.', ",") + "\n")
        .collect();
    std::fs::write(&out, converted).unwrap();
    out
}

/// Issue 19.5: `32,24` in a `;` file was refused with the hint to list the column as categories,
/// which would have made a number into levels. The hint is now `[data] decimal = ","`, and with
/// it the run gives the same answer as the `.` file.
#[test]
fn decimal_commas_get_their_own_option_and_hint() {
    let tmp = tempfile::tempdir().unwrap();
    decimal_comma_copy(tmp.path());
    let body = "[scenario]\nname = \"komma\"\nseed = 3\n[data]\npath = \"komma.csv\"\ntarget = \"progression\"\n[partition]\nkind = \"horizontal\"\nsites = 3\n[algorithm]\nkind = \"linear_regression\"\n";
    let cfg = scenario(tmp.path(), "komma", body);
    let v = fedsim(tmp.path(), &["validate", "-c", cfg.to_str().unwrap()]);
    let e = stderr(&v);
    assert_eq!(v.status.code(), Some(2), "{e}");
    assert!(
        e.contains("komma.csv, line 2, column \"bmi\"")
            && e.contains("decimal comma: set [data] decimal = \",\"")
            && !e.contains("categorical"),
        "{e}"
    );
    let cfg = scenario(
        tmp.path(),
        "komma",
        &body.replace("target = ", "decimal = \",\"\ntarget = "),
    );
    let komma = run_expecting(tmp.path(), &cfg, &tmp.path().join("run"), Status::Succeeded);
    let dot = tmp.path().join("dot");
    std::fs::create_dir(&dot).unwrap();
    let cfg = scenario(
        &dot,
        "dot",
        &body.replace("komma.csv", test_data("diabetes_raw.csv").to_str().unwrap()),
    );
    let plain = run_expecting(&dot, &cfg, &dot.join("run"), Status::Succeeded);
    let komma = komma.results.expect("results with decimal commas");
    assert_eq!(komma.coef, plain.results.expect("results").coef);
    assert_eq!(komma.n, 442);
    // A decimal comma cannot share the field separator.
    let cfg = scenario(
        tmp.path(),
        "clash",
        &body.replace("target = ", "decimal = \",\"\ndelimiter = \",\"\ntarget = "),
    );
    refused(
        &cfg,
        &["data.decimal: a decimal comma needs another delimiter"],
    );
}

/// Issue 19.6: a singular design names its dependent columns (with the combination), a constant
/// column is named as such, on the federated side and in the pooled baseline alike; and a feature
/// that separates a 0/1 target is named before anything starts.
#[test]
fn singular_designs_and_separation_name_their_columns() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(test_data("diabetes_raw.csv")).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let mut data = format!("{header},combo,konst\n");
    for l in lines {
        let v: Vec<f64> = l.split(',').map(|x| x.parse().unwrap()).collect();
        // bmi is column 2, bp column 3.
        data.push_str(&format!("{l},{},5\n", v[2] + 2.0 * v[3]));
    }
    std::fs::write(tmp.path().join("x.csv"), data).unwrap();
    let body = |exclude: &str| {
        format!("[scenario]\nname = \"sing\"\n[data]\npath = \"x.csv\"\ntarget = \"progression\"\nexclude = [\"{exclude}\"]\n[partition]\nkind = \"horizontal\"\nsites = 3\n[algorithm]\nkind = \"linear_regression\"\n")
    };
    for (exclude, want) in [
        (
            "konst",
            "columns `bmi`, `bp` and `combo` are linearly dependent (combo ≈ bmi + 2 bp)",
        ),
        ("combo", "column \"konst\" is constant (every row holds 5)"),
    ] {
        let cfg = scenario(tmp.path(), exclude, &body(exclude));
        let out = tmp.path().join(format!("run-{exclude}"));
        let s = run_expecting(tmp.path(), &cfg, &out, Status::Failed);
        let e = &s.error.as_ref().expect("an error").message;
        assert!(e.contains(want), "{e}");
    }
    // A feature that separates the target: refused before anything starts, named.
    let mut sep = String::from("score,group,passed\n");
    for i in 0..60 {
        let score = i as f64 / 2.0;
        sep.push_str(&format!(
            "{score},{},{}\n",
            ["a", "b", "c"][i % 3],
            u8::from(score >= 15.0)
        ));
    }
    std::fs::write(tmp.path().join("sep.csv"), sep).unwrap();
    let cfg = scenario(
        tmp.path(),
        "sep",
        "[scenario]\nname = \"sep\"\n[data]\npath = \"sep.csv\"\ntarget = \"passed\"\ncategorical = [\"group\"]\n[partition]\nkind = \"horizontal\"\nsites = 2\n[algorithm]\nkind = \"logistic_regression\"\n",
    );
    refused(
        &cfg,
        &["perfect separation: feature \"score\" separates the target: every row with score <= 14.5 has passed = 0"],
    );
}

/// Issue 20.7: `nan` in lowercase was no gap (`NaN` was): under `missing = "drop"` its row was
/// kept and the errors misled. Every spelling pandas reads as missing is a gap, in numeric and in
/// categorical columns alike: the run drops exactly those rows, and gives the answer of the file
/// without them.
#[test]
fn every_spelling_of_a_missing_value_is_a_gap() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(test_data("diabetes_raw.csv")).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let spellings = fedsim::data::frame::MISSING;
    // One spelling per row, in the bmi column (rows 1..=18), and the same rows left out of a
    // second file; plus a text column holding a spelling where it means "no level".
    let mut kept = vec![format!("{},grp", lines[0])];
    let mut with_gaps = vec![format!("{},grp", lines[0])];
    for (i, line) in lines.iter_mut().enumerate().skip(1) {
        let group = if i % 2 == 0 { "a" } else { "b" };
        let mut cells: Vec<String> = line.split(',').map(String::from).collect();
        if i <= spellings.len() {
            cells[2] = spellings[i - 1].to_string();
            with_gaps.push(format!("{},{group}", cells.join(",")));
        } else if i == spellings.len() + 1 {
            with_gaps.push(format!("{},NA", cells.join(",")));
        } else {
            with_gaps.push(format!("{line},{group}"));
            kept.push(format!("{line},{group}"));
        }
    }
    std::fs::write(tmp.path().join("gaps.csv"), with_gaps.join("\n") + "\n").unwrap();
    std::fs::write(tmp.path().join("kept.csv"), kept.join("\n") + "\n").unwrap();
    let body = |file: &str, missing: &str| {
        format!("[scenario]\nname = \"gaps\"\nseed = 1\n[data]\npath = \"{file}\"\ntarget = \"progression\"\ncategorical = [\"grp\"]\nmissing = \"{missing}\"\n[partition]\nkind = \"horizontal\"\nsites = 3\n[algorithm]\nkind = \"linear_regression\"\n")
    };
    let cfg = scenario(tmp.path(), "gaps", &body("gaps.csv", "drop"));
    let gaps = run_expecting(tmp.path(), &cfg, &tmp.path().join("run"), Status::Succeeded);
    let gaps_results = gaps.results.as_ref().expect("results");
    assert_eq!(gaps_results.n, 442 - spellings.len() - 1);
    let dropped: usize = gaps
        .sites
        .iter()
        .map(|s| s.dropped_rows.expect("dropped rows counted"))
        .sum();
    assert_eq!(dropped, spellings.len() + 1);
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::copy(tmp.path().join("kept.csv"), other.join("kept.csv")).unwrap();
    let cfg = scenario(&other, "kept", &body("kept.csv", "drop"));
    let kept = run_expecting(&other, &cfg, &other.join("run"), Status::Succeeded);
    let d = max_rel(&gaps_results.coef, &kept.results.expect("results").coef);
    assert!(d < 1e-12, "{d:e}");
    // Under "error", the first one is named as missing, not as text or a constant column.
    let cfg = scenario(tmp.path(), "strict", &body("gaps.csv", "error"));
    refused(&cfg, &["gaps.csv, line 2, column \"bmi\": missing value"]);
}

/// Issue 20.11: a quoted header with doubled quotes (`"b""m""i"`) passed validate and then every
/// site failed (polars kept the doubled quotes, and wrote them doubled again); and a 50 MB text
/// cell made a 50 MB error line.
#[test]
fn quoted_headers_and_huge_cells_are_read_and_named_readably() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(test_data("diabetes_raw.csv")).unwrap();
    let quoted = text.replacen("bmi", "\"b\"\"m\"\"i\"", 1);
    std::fs::write(tmp.path().join("q.csv"), &quoted).unwrap();
    let body = |file: &str| {
        format!("[scenario]\nname = \"q\"\n[data]\npath = \"{file}\"\ntarget = \"progression\"\n[partition]\nkind = \"horizontal\"\nsites = 2\n[algorithm]\nkind = \"linear_regression\"\n")
    };
    let cfg = scenario(tmp.path(), "q", &body("q.csv"));
    let s = run_expecting(tmp.path(), &cfg, &tmp.path().join("run"), Status::Succeeded);
    assert_eq!(s.results.expect("results").terms[3], "b\"m\"i");

    let big = "x".repeat(5_000_000);
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let mut cells: Vec<String> = lines[7].split(',').map(String::from).collect();
    cells[4] = big;
    lines[7] = cells.join(",");
    std::fs::write(tmp.path().join("big.csv"), lines.join("\n") + "\n").unwrap();
    let cfg = scenario(tmp.path(), "big", &body("big.csv"));
    let o = fedsim(tmp.path(), &["validate", "-c", cfg.to_str().unwrap()]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(e.len() < 600, "an error line of {} bytes", e.len());
    assert!(
        e.contains("(5000000 characters)") && e.contains("line 8"),
        "{e}"
    );
}
