//! fedsim's tail and quantile functions (`distributions.rs`) against the truth (mpmath at 50
//! digits) and against scipy (what statsmodels reports) over a grid: normal, Student t from 1 to
//! a million degrees of freedom, F and chi² (`test_data/distributions.jsonl`, made by
//! `test_data/make_reference.py`). P-values, intervals and model tests are built on these.

mod common;

use common::*;
use fedsim::distributions as d;

/// Our value for a row of the grid.
fn ours(f: &str, a: &[f64]) -> f64 {
    match f {
        "normal_two_sided" => d::normal_two_sided(a[0]),
        "normal_isf" => d::normal_isf(a[0]),
        "t_two_sided" => d::t_two_sided(a[0], a[1]),
        "t_isf" => d::t_isf(a[0], a[1]),
        "f_sf" => d::f_sf(a[0], a[1], a[2]),
        "chi2_sf" => d::chi2_sf(a[0], a[1] as u32),
        other => panic!("unknown function {other}"),
    }
}

fn rel(a: f64, b: f64) -> f64 {
    if a == b {
        0.0
    } else if b == 0.0 {
        a.abs()
    } else {
        (a - b).abs() / b.abs().max(f64::MIN_POSITIVE)
    }
}

/// Within a few units in the last place of the truth, everywhere on the grid: 5e-15 plus what
/// the exponent's own rounding costs in a tail (eps |ln p|, the condition of e^x). Prints the
/// worst error per function, ours and scipy's.
#[test]
fn tails_and_quantiles_match_mpmath_and_scipy_over_a_grid() {
    let text = std::fs::read_to_string(test_data("distributions.jsonl")).unwrap();
    let mut worst: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
    let mut failures = Vec::new();
    for line in text.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let f = row["f"].as_str().unwrap();
        let args = floats(&row["args"]);
        let truth = row["mpmath"].as_f64().unwrap();
        let scipy = row["scipy"].as_f64().unwrap();
        let got = ours(f, &args);
        let allowed = 5e-15 + f64::EPSILON * truth.abs().ln().abs();
        let (e, e_scipy) = (rel(got, truth), rel(scipy, truth));
        let w = worst.entry(f.to_string()).or_default();
        *w = (w.0.max(e), w.1.max(e_scipy));
        if e.is_nan() || e > allowed {
            failures.push(format!(
                "{f}{args:?}: {got:e} vs mpmath {truth:e}: {e:.1e} (allowed {allowed:.1e}; scipy {e_scipy:.1e})"
            ));
        }
    }
    for (f, (ours, scipy)) in &worst {
        eprintln!("{f}: worst relative error {ours:.1e} (scipy {scipy:.1e})");
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
