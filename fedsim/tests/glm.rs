//! Generalised linear models: every `glm` row of `reference.jsonl` (statsmodels GLM on real data:
//! each family, the non-default links, an exposure, an offset, frequency weights) reproduced
//! federated over local sites, judged by fedsim's own comparison (every number of the summary,
//! P-values and intervals included) and checked here again against the row; `glm` binomial
//! equals `logistic_regression`; secure aggregation changes nothing; bad input is refused.

mod common;

use common::*;
use std::path::Path;

fn glm_rows() -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(test_data("reference.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "glm")
        .collect()
}

/// The scenario that describes a reference row, over `sites` sites.
fn scenario_of(row: &serde_json::Value, sites: usize, extra: &str) -> String {
    let features: Vec<String> = row["terms"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| *t != "const")
        .map(|t| t.to_string())
        .collect();
    let mut algorithm = format!(
        "kind = \"glm\"\nfamily = {}\nlink = {}\n",
        row["family"], row["link"]
    );
    for key in ["offset", "exposure", "weights"] {
        if let Some(c) = row[key].as_str() {
            algorithm.push_str(&format!("{key} = \"{c}\"\n"));
        }
    }
    format!(
        "[scenario]\nname = \"glm\"\nseed = 5\n[data]\npath = \"{}\"\ntarget = {}\nfeatures = [{}]\n[partition]\nkind = \"horizontal\"\nsites = {sites}\n[algorithm]\n{algorithm}{extra}\n[compare]\ntolerance = 1e-8\nreference = \"{}\"\n",
        test_data(row["csv"].as_str().unwrap()).display(),
        row["target"],
        features.join(", "),
        test_data("reference.jsonl").display()
    )
}

fn run_ok(dir: &Path, name: &str, text: &str) -> Summary {
    let cfg = scenario(dir, name, text);
    run_expecting(dir, &cfg, &dir.join(name), Status::Succeeded)
}

/// |got - want| on the coefficient's own uncertainty, as the comparison rule judges it.
fn coef_diff(got: &[f64], want: &[f64], se: &[f64]) -> f64 {
    got.iter()
        .zip(want)
        .zip(se)
        .map(|((a, b), s)| (a - b).abs() / b.abs().max(*s))
        .fold(0.0, f64::max)
}

#[test]
fn every_glm_reference_row_is_matched_federated() {
    let rows = glm_rows();
    assert!(rows.len() >= 10, "{} glm rows", rows.len());
    let families: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r["family"].as_str().unwrap()).collect();
    assert_eq!(
        families.into_iter().collect::<Vec<_>>(),
        ["binomial", "gamma", "gaussian", "poisson"]
    );
    let tmp = tempfile::tempdir().unwrap();
    for (i, row) in rows.iter().enumerate() {
        let what = format!(
            "{} {}/{} {}",
            row["csv"], row["family"], row["link"], row["weights"]
        );
        let sites = if i % 2 == 0 { 3 } else { 5 };
        let s = run_ok(tmp.path(), &format!("g{i}"), &scenario_of(row, sites, ""));
        let res = s.results.as_ref().expect("results");
        // The run's own verdict held every number against the row (reference = ...).
        let reference = s
            .reference
            .as_ref()
            .expect("held against the reference row");
        assert!(reference.comparison.passed, "{what}: {}", pretty(reference));
        let want_se = floats(&row["se"]);
        let d = coef_diff(&res.coef, &floats(&row["coef"]), &want_se);
        assert!(d <= 1e-8, "{what}: coef off statsmodels by {d:e}");
        let d = max_rel(&res.se, &want_se);
        assert!(d <= 1e-8, "{what}: se off statsmodels by {d:e}");
        for (field, got) in [
            ("deviance", res.deviance),
            ("pearson_chi2", res.pearson_chi2),
            ("scale", res.scale),
            ("null_deviance", res.null_deviance),
            ("loglik", res.loglik),
            ("aic", res.aic),
            ("bic", res.bic),
            ("df_resid", res.df_resid),
            ("df_model", res.df_model),
        ] {
            let want = row[field].as_f64().unwrap();
            let got = got.unwrap_or_else(|| panic!("{what}: no {field}"));
            let d = (got - want).abs() / want.abs().max(1.0);
            assert!(d <= 1e-9, "{what}: {field} {got} against {want} ({d:e})");
        }
        assert!(res.iterations.unwrap() >= 1, "{what}");
    }
}

#[test]
fn glm_binomial_equals_logistic_regression_and_secure_aggregation_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let row = glm_rows()
        .into_iter()
        .find(|r| r["csv"] == "spector.csv" && r["link"] == "logit")
        .unwrap();
    let glm = run_ok(tmp.path(), "glm", &scenario_of(&row, 3, ""));
    let logit = run_ok(
        tmp.path(),
        "logit",
        &format!(
            "[scenario]\nname = \"l\"\nseed = 5\n[data]\npath = \"{}\"\ntarget = \"GRADE\"\n[partition]\nkind = \"horizontal\"\nsites = 3\n[algorithm]\nkind = \"logistic_regression\"\n",
            test_data("spector.csv").display()
        ),
    );
    let (g, l) = (glm.results.unwrap(), logit.results.unwrap());
    assert!(
        max_rel(&g.coef, &l.coef) <= 1e-9,
        "{:?} {:?}",
        g.coef,
        l.coef
    );
    assert!(max_rel(&g.se, &l.se) <= 1e-9);
    assert!((g.loglik.unwrap() - l.loglik.unwrap()).abs() <= 1e-10);

    // Under secure aggregation the coordinator sees only masked sums: the same fit.
    let poisson = glm_rows()
        .into_iter()
        .find(|r| r["exposure"] == "service")
        .unwrap();
    let plain = run_ok(tmp.path(), "plain", &scenario_of(&poisson, 4, ""));
    let secure = run_ok(
        tmp.path(),
        "secure",
        &scenario_of(&poisson, 4, "[federation]\nsecure_aggregation = true\n"),
    );
    let (p, s) = (plain.results.unwrap(), secure.results.unwrap());
    let d = coef_diff(&s.coef, &p.coef, &p.se);
    assert!(d <= 1e-10, "secure vs plain: {d:e}");
    assert!((s.deviance.unwrap() - p.deviance.unwrap()).abs() <= 1e-9);
}

#[test]
fn a_glm_that_does_not_fit_its_data_is_refused_before_anything_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let base = |target: &str, algorithm: &str| {
        format!(
            "[scenario]\nname = \"bad\"\n[data]\npath = \"{}\"\ntarget = \"{target}\"\nfeatures = [\"bmi\", \"bp\"]\n[partition]\nkind = \"horizontal\"\nsites = 3\n[algorithm]\nkind = \"glm\"\n{algorithm}\n",
            test_data("diabetes.csv").display()
        )
    };
    let cases = [
        (
            base("s1", "family = \"poisson\""),
            "column \"s1\": the poisson family needs a target of counts, 0 or more, found -",
        ),
        (
            base("progression", "family = \"binomial\""),
            "column \"progression\": the binomial family needs a 0/1 target, found 151",
        ),
        (
            base("s1", "family = \"gamma\""),
            "the gamma family needs a target above 0",
        ),
        (
            base("progression", "family = \"poisson\"\nlink = \"logitt\""),
            "unknown variant `logitt`",
        ),
        (
            base("progression", "family = \"poisson\"\nlink = \"logit\""),
            "the poisson family does not take the logit link; it takes log, identity, sqrt",
        ),
        (
            base("progression", "link = \"log\""),
            "missing key `family`",
        ),
        (
            base("progression", "family = \"poisson\"\nexposure = \"age\""),
            "column \"age\": an exposure must be above 0",
        ),
        (
            base(
                "progression",
                "family = \"poisson\"\noffset = \"age\"\nexposure = \"sex\"",
            ),
            "give `offset` or `exposure`, not both",
        ),
        (
            base("progression", "family = \"poisson\"\nweights = \"agee\""),
            "has no column \"agee\" (did you mean \"age\"?)",
        ),
        (
            base("progression", "family = \"poisson\"\nk = 3"),
            "`k` applies to svd only, not glm",
        ),
        (
            base("progression", "family = \"poisson\"\noffset = \"bmi\""),
            "algorithm.offset: column \"bmi\" is both the offset and a feature",
        ),
        (
            base(
                "progression",
                "family = \"poisson\"\nweights = \"progression\"",
            ),
            "column \"progression\" is both the weights and the target",
        ),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let cfg = scenario(tmp.path(), &format!("bad{i}"), text);
        let out = tmp.path().join(format!("bad{i}-run"));
        let o = run_to(tmp.path(), &cfg, &out, &[]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "case {i}: {err}");
        assert!(
            err.contains(expected),
            "case {i}: expected {expected:?} in {err}"
        );
        assert!(
            !out.exists(),
            "case {i}: a refused run left {}",
            out.display()
        );
    }
}

/// NB2 (statsmodels' discrete `NegativeBinomial`): alpha estimated with the coefficients, by
/// federated Newton, under secure aggregation; every number of the row, alpha's included.
#[test]
fn negative_binomial_matches_statsmodels_with_alpha() {
    let row = reference("randhie.csv", "negative_binomial");
    let tmp = tempfile::tempdir().unwrap();
    let text = format!(
        "[scenario]\nname = \"nb\"\nseed = 5\n[data]\npath = \"{}\"\ntarget = \"mdvis\"\n[partition]\nkind = \"horizontal\"\nsites = 4\n[algorithm]\nkind = \"glm\"\nfamily = \"negative_binomial\"\n[federation]\nsecure_aggregation = true\n[compare]\ntolerance = 1e-8\nreference = \"{}\"\n",
        test_data("randhie.csv").display(),
        test_data("reference.jsonl").display()
    );
    let s = run_ok(tmp.path(), "nb", &text);
    let reference = s
        .reference
        .as_ref()
        .expect("held against the reference row");
    assert!(reference.comparison.passed, "{}", pretty(reference));
    let res = s.results.as_ref().unwrap();
    assert_eq!(res.terms.last().map(String::as_str), Some("alpha"));
    let want_se = floats(&row["se"]);
    let d = coef_diff(&res.coef, &floats(&row["coef"]), &want_se);
    assert!(d <= 1e-8, "coef (alpha included) off statsmodels by {d:e}");
    assert!(max_rel(&res.se, &want_se) <= 1e-8);
    for (field, got) in [
        ("loglik", res.loglik),
        ("llnull", res.llnull),
        ("aic", res.aic),
        ("bic", res.bic),
    ] {
        let want = row[field].as_f64().unwrap();
        let got = got.unwrap();
        assert!(
            (got - want).abs() / want.abs() <= 1e-10,
            "{field}: {got} against {want}"
        );
    }
}
