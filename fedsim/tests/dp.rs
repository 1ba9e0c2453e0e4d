//! Differential privacy (`[privacy.dp]`): every site clips its values, adds noise to everything
//! it releases and spends its own budget; the verdict holds the federated answer to the error
//! the mechanism predicts. Checked statistically: over 200 fixed seeds, the spread of the error
//! of the sites' own release path is the predicted one within 10%, and no noise appears that
//! the accountant did not charge.

mod common;

use common::*;
use std::path::{Path, PathBuf};

use fedsim::dp::predict::{predict, Sites};
use fedsim::plan::Study;
use fedsim::scenario::Scenario;

/// A 3-site scenario on `csv` with `[data]` keys `data`, `[algorithm]` keys `algorithm` and
/// `[privacy.dp]` keys `dp`.
fn dp_scenario(
    dir: &Path,
    name: &str,
    csv: &str,
    (data, algorithm): (&str, &str),
    dp: &str,
) -> PathBuf {
    scenario(
        dir,
        name,
        &format!(
            "[scenario]\nname = \"{name}\"\nseed = 11\n\n[data]\npath = \"{}\"\n{data}\n\n[partition]\nkind = \"horizontal\"\nsites = 3\n\n[algorithm]\n{algorithm}\n\n[privacy.dp]\n{dp}\n",
            test_data(csv).display()
        ),
    )
}

/// One coefficient's error over the seeds against its prediction.
struct Spread {
    term: String,
    /// The errors' standard deviation over the seeds, and the predicted one.
    seen: f64,
    predicted: f64,
    /// The errors' mean, and the predicted clipping bias.
    mean: f64,
    bias: f64,
}

/// The scenario's analysis run `seeds` times in this process through the sites' own release
/// path (`SiteDp::release`, as the agents call it), against the prediction the verdict uses.
fn spreads(cfg: &Path, seeds: u64) -> Vec<Spread> {
    let s = Scenario::load(cfg).unwrap();
    let study = Study::make(&s).unwrap();
    let plan = &study.analyses[0];
    let spec = s.privacy.dp.clone().unwrap();
    let names: Vec<String> = plan.sites.iter().map(|s| s.name.clone()).collect();
    let rounds = fedsim::dp::run_rounds(std::slice::from_ref(&plan.config)).unwrap();
    let pooled = fedsim::baseline::compute(&plan.analysis(), &plan.pooled().unwrap()).unwrap();
    let cost = predict(plan, &names, &spec, rounds, &pooled).unwrap();
    let sites = Sites::of(plan, &names, &spec).unwrap();
    let mut errors: Vec<Vec<f64>> = vec![Vec::new(); pooled.coef.len()];
    for seed in 0..seeds {
        let (e, budgets) = sites.noisy(&spec, rounds, seed).unwrap();
        // Every noisy release was charged, and the charges add up to the whole budget.
        for b in &budgets {
            assert_eq!(b.budget.charged, rounds);
            assert!((b.budget.epsilon_spent() - spec.epsilon).abs() < 1e-9 * spec.epsilon);
        }
        for (j, (a, b)) in e.coef.iter().zip(&pooled.coef).enumerate() {
            errors[j].push(a - b);
        }
    }
    pooled
        .terms
        .iter()
        .enumerate()
        .map(|(j, t)| {
            let n = errors[j].len() as f64;
            let mean = errors[j].iter().sum::<f64>() / n;
            let var = errors[j].iter().map(|e| (e - mean).powi(2)).sum::<f64>() / (n - 1.0);
            let c = cost.term(&format!("coef[{t}]")).unwrap();
            Spread {
                term: t.clone(),
                seen: var.sqrt(),
                predicted: c.sd,
                mean,
                bias: c.bias,
            }
        })
        .collect()
}

/// Over 200 seeds the error's spread is the predicted one within 10%, and its mean is the
/// predicted clipping bias within 4 standard errors: OLS under the Gaussian and the Laplace
/// mechanism, a logistic regression's noisy Newton rounds under the Gaussian. (The data sets
/// are small, so epsilon is large enough for the noise to stay in the range where the estimates
/// move linearly with it, which is where the prediction is meant to hold.)
#[test]
fn the_noise_s_spread_is_the_predicted_one() {
    let dir = tempfile::tempdir().unwrap();
    let ols = (
        "target = \"progression\"\nfeatures = [\"bmi\", \"bp\", \"s5\"]",
        "kind = \"linear_regression\"",
    );
    let ols_bounds =
        "bounds = { bmi = [18, 43], bp = [60, 135], s5 = [3.2, 6.2], progression = [25, 346] }";
    let cases = [
        dp_scenario(
            dir.path(),
            "ols",
            "diabetes_raw.csv",
            ols,
            &format!("epsilon = 50.0\ndelta = 1e-6\n{ols_bounds}"),
        ),
        dp_scenario(
            dir.path(),
            "ols-laplace",
            "diabetes_raw.csv",
            ols,
            &format!("epsilon = 100.0\nmechanism = \"laplace\"\n{ols_bounds}"),
        ),
        dp_scenario(
            dir.path(),
            "logit",
            "breast_cancer.csv",
            (
                "target = \"target\"\nfeatures = [\"mean_radius\", \"mean_texture\"]",
                "kind = \"logistic_regression\"\nmax_iter = 6",
            ),
            "epsilon = 1e5\ndelta = 1e-6\nbounds = { mean_radius = [6, 29], mean_texture = [9, 40], target = [0, 1] }",
        ),
    ];
    let mut report = Vec::new();
    let mut wrong = Vec::new();
    for cfg in &cases {
        for s in spreads(cfg, 200) {
            let ratio = s.seen / s.predicted;
            let se = s.seen / 200f64.sqrt();
            let line = format!(
                "{} {}: sd {:.4e} seen, {:.4e} predicted (ratio {ratio:.3}); mean {:.3e}, bias {:.3e}",
                cfg.file_stem().unwrap().to_string_lossy(),
                s.term,
                s.seen,
                s.predicted,
                s.mean,
                s.bias
            );
            if !(0.9..=1.1).contains(&ratio) || (s.mean - s.bias).abs() > 4.0 * se {
                wrong.push(line.clone());
            }
            report.push(line);
        }
    }
    println!("{}", report.join("\n"));
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The shipped example end to end: real agents add the noise, the verdict holds the answer to
/// the predicted bounds, each site spends exactly its epsilon, and what left each site says so.
#[test]
fn a_dp_run_adds_noise_at_every_site_and_spends_each_budget() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let cfg = root().join("resources/config_dp.toml");
    let s = run_expecting(dir.path(), &cfg, &run, Status::Succeeded);
    let c = s.comparison.as_ref().unwrap();
    let cost = c.noise.as_ref().expect("held to the noise");
    assert_eq!((cost.rounds, cost.run_rounds), (3, 3));
    // The answer carries noise (it is not the pooled one), within every bound.
    let (fed, base) = (s.results.as_ref().unwrap(), s.baseline.as_ref().unwrap());
    assert!(fed.coef.iter().zip(&base.coef).all(|(a, b)| a != b));
    for check in c.checks.iter().filter(|c| c.quantity.as_str() == "coef") {
        let t = cost.term(&check.name()).unwrap();
        assert!(check.abs_diff <= t.bound && t.sd > 0.0, "{check:?}");
    }
    // Each site spent its whole epsilon = 1 over its 3 releases, as its records say.
    assert_eq!(s.privacy_spent.len(), 3);
    for b in &s.privacy_spent {
        assert_eq!(b.rounds, 3);
        assert!((b.epsilon - 1.0).abs() < 1e-9, "{b:?}");
    }
    let releases: Vec<serde_json::Value> = std::fs::read_to_string(run.join("releases.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let rho = fedsim::dp::accountant::rho_of(1.0, 1e-6);
    for r in &releases {
        if r["round"] == 0 {
            // Even the site's size leaves only with noise.
            assert!(r["statistics"].as_str().unwrap().contains("rows: 0"), "{r}");
            continue;
        }
        let noise = &r["noise"];
        assert!(
            (noise["cost"].as_f64().unwrap() - rho / 3.0).abs() < 1e-12,
            "{r}"
        );
        assert!(noise["scale"].as_f64().unwrap() > 0.0);
    }
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(
        html.contains("id=\"noise-cost\"")
            && html.contains("What ε = 1, δ = 1e-6 costs each estimate")
    );
    assert!(html.contains("id=\"budget\""));
    no_agent_left(&s);
}

/// What cannot run under noise, or has no bounds to scale it to, is refused by `validate`
/// with the key and what was expected, before anything starts.
#[test]
fn validate_refuses_what_the_noise_cannot_cover() {
    let dir = tempfile::tempdir().unwrap();
    let ols = (
        "target = \"progression\"\nfeatures = [\"bmi\", \"bp\"]",
        "kind = \"linear_regression\"",
    );
    let cases = [
        (ols, "epsilon = 1.0\nbounds = { bmi = [18, 43], bp = [60, 135], progression = [25, 346] }", "privacy.dp.delta", "needs delta"),
        (ols, "epsilon = 0.0\ndelta = 1e-6\nbounds = {}", "privacy.dp.epsilon", "above 0"),
        (ols, "epsilon = 1.0\ndelta = 1e-6\nbounds = { bmi = [43, 18] }", "privacy.dp.bounds.bmi", "lo < hi"),
        (ols, "epsilon = 1.0\ndelta = 1e-6\nbounds = { bmi = [18, 43], progression = [25, 346] }", "privacy.dp.bounds", "column \"bp\" has no bounds"),
        (ols, "epsilon = 1.0\ndelta = 1e-6\nbounds = { bmi = [18, 43], bp = [60, 135], progression = [25, 346], s5 = [3, 7] }", "privacy.dp.bounds.s5", "no analysis reads \"s5\""),
        (("features = [\"bmi\"]", "kind = \"describe\""), "epsilon = 1.0\ndelta = 1e-6\nbounds = { bmi = [18, 43] }", "algorithm.kind", "quantiles = []"),
        (("features = [\"bmi\", \"bp\"]", "kind = \"svd\"\nk = 1"), "epsilon = 1.0\ndelta = 1e-6\nbounds = { bmi = [18, 43], bp = [60, 135] }", "algorithm.kind", "svd cannot run under [privacy.dp]"),
    ];
    for (i, (keys, dp, key, expected)) in cases.iter().enumerate() {
        let cfg = dp_scenario(
            dir.path(),
            &format!("bad{i}"),
            "diabetes_raw.csv",
            *keys,
            dp,
        );
        let o = fedsim(dir.path(), &["validate", "-c", cfg.to_str().unwrap()]);
        let err = stderr(&o);
        assert!(!o.status.success(), "case {i} passed");
        assert!(
            err.contains(key) && err.contains(expected),
            "case {i}: {err}"
        );
        assert!(
            err.contains(&format!("bad{i}.toml")),
            "case {i} names no file: {err}"
        );
    }
}

/// The differencing probe recovers a record's values exactly from plain sums, and none of them
/// once every site releases with noise (the same data, record and rounds).
#[test]
fn the_probe_recovers_a_record_from_plain_sums_but_not_through_the_noise() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dp_scenario(
        dir.path(),
        "probe",
        "diabetes_raw.csv",
        (
            "target = \"progression\"\nfeatures = [\"bmi\", \"bp\"]",
            "kind = \"linear_regression\"",
        ),
        "epsilon = 1.0\ndelta = 1e-6\nbounds = { bmi = [18, 43], bp = [60, 135], progression = [25, 346] }",
    );
    let s = Scenario::load(&cfg).unwrap();
    let study = Study::make(&s).unwrap();
    let plain = fedsim::probe::probe(&study, None, None).unwrap();
    assert_eq!(
        plain[0].exposed("site"),
        ["bmi", "bp", "progression"],
        "{:?}",
        plain[0]
    );
    let noisy = fedsim::probe::probe(&study, None, s.privacy.dp.as_ref()).unwrap();
    assert_eq!(noisy[0].compared, [1]);
    assert!(noisy[0].exposures.is_empty(), "{:?}", noisy[0]);
}
