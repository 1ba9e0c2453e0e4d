//! The report a person reads: rendered from a real run, checked for its content, and
//! photographed in headless Chromium (the screenshot is kept as a test artefact).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn artifacts() -> PathBuf {
    let dir = Path::new(bin()).parent().unwrap().join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn shipped(name: &str) -> PathBuf {
    root().join("resources").join(name)
}

/// Count of `needle` in `hay`.
/// The inside of `<table id="ID">` in `html`.
fn table_in<'a>(html: &'a str, id: &str) -> &'a str {
    html.split(&format!("<table id=\"{id}\">"))
        .nth(1)
        .unwrap_or_else(|| panic!("no table {id}"))
        .split("</table>")
        .next()
        .unwrap()
}

fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

#[test]
fn report_of_a_real_run_has_its_tables_and_plots_and_fetches_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("logit");
    let junit = tmp.path().join("junit.xml");
    let o = run_to(
        tmp.path(),
        &shipped("config_logreg.toml"),
        &out,
        &["--junit", junit.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let html = std::fs::read_to_string(out.join("report.html")).expect("run writes report.html");
    for id in ["scenario", "sites", "comparison", "metrics"] {
        assert!(
            html.contains(&format!("<table id=\"{id}\"")),
            "no {id} table"
        );
    }
    // One comparison row per term, with the federated and centralised values side by side.
    let s = summary(&out);
    let terms = &s.results.as_ref().expect("results").terms;
    let table = table_in(&html, "comparison");
    assert_eq!(count(table, "<tr>") - 1, terms.len());
    assert!(table.contains("<td>GPA</td>") && table.contains("<td>const</td>"));
    // Logistic regression: the coefficients and the sites' outcomes, then the timeline,
    // convergence, the per-number difference, traffic.
    assert_eq!(count(&html, "<svg"), 6, "plots");
    for plot in [
        "coefficients",
        "outcomes",
        "timeline",
        "convergence",
        "difference",
        "traffic",
    ] {
        assert!(
            html.contains(&format!("data-plot=\"{plot}\"")),
            "no {plot} plot"
        );
    }
    assert!(html.contains("passed") && html.contains("independent reference"));
    // How the accounts enrolled at the portal, phase by phase.
    assert!(html.contains("<h2>Portal (JSON API)</h2>"));
    let portal = table_in(&html, "portal");
    for phase in ["login", "create", "join", "start", "finish"] {
        assert!(portal.contains(&format!("<td>{phase}</td>")), "{phase}");
    }
    // Self-contained: nothing to fetch.
    for bad in [
        "http://",
        "https://",
        "<script src",
        "<link",
        "@import",
        "url(",
    ] {
        assert!(!html.contains(bad), "report references {bad}");
    }
    // Re-rendered from the directory alone, it is the same document.
    let before = html.clone();
    std::fs::remove_file(out.join("report.html")).unwrap();
    let o = fedsim(tmp.path(), &["report", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(out.join("report.html")).unwrap(),
        before
    );
    // JUnit: the run, each site, and one case per check against either side, none failing.
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("failures=\"0\""), "{xml}");
    let checks = s.comparison.as_ref().expect("a comparison").checks.len()
        + s.reference
            .as_ref()
            .expect("a reference")
            .comparison
            .checks
            .len();
    assert_eq!(count(&xml, "<testcase"), 1 + 3 + checks, "{xml}");
    for case in [
        "run completes",
        "site site-2 takes part to the end",
        "coef[GPA] federated vs centralised",
        "se[const] federated vs centralised",
        "coef[PSI] federated vs reference",
    ] {
        assert!(xml.contains(&format!("name=\"{case}\"")), "{case}: {xml}");
    }

    // A screenshot in real headless Chromium, kept for people to look at.
    let png = artifacts().join("report-logit.png");
    let _ = std::fs::remove_file(&png);
    let profile = tempfile::tempdir().unwrap();
    let status = Command::new("/usr/bin/chromium")
        .args(fedsim::enrol::gui::browser::FLAGS)
        .arg("--window-size=1000,1400")
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", out.join("report.html").display()))
        .output()
        .expect("chromium is installed (.ci/run installs it)");
    assert!(
        status.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let bytes = std::fs::read(&png).expect("screenshot written");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert!(
        bytes.len() > 20_000,
        "a blank page would be tiny: {} bytes",
        bytes.len()
    );
}

#[test]
fn svd_report_plots_singular_values_and_a_failed_run_shows_its_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("svd");
    let o = run_to(tmp.path(), &shipped("config_svd.toml"), &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let table = table_in(&html, "comparison");
    assert_eq!(count(table, "<tr>") - 1, 10, "one row per component");
    assert!(table.contains("<td>pc10</td>"));
    // gram route: no iterations to plot.
    assert_eq!(count(&html, "<svg"), 3);
    assert!(html.contains("data-plot=\"difference\""));

    // A run that fails says why, and where.
    let data = tmp.path().join("collinear.csv");
    let mut body = String::from("a,b,y\n");
    for i in 0..30 {
        body.push_str(&format!("{i},{},{}\n", 3 * i, i % 4));
    }
    std::fs::write(&data, body).unwrap();
    let cfg = scenario(
        tmp.path(),
        "bad",
        &format!("[scenario]\nname = \"bad\"\n[data]\npath = \"{}\"\ntarget = \"y\"\n[partition]\nkind = \"horizontal\"\nsites = 2\n[algorithm]\nkind = \"linear_regression\"\n", data.display()),
    );
    let out = tmp.path().join("bad");
    let junit = tmp.path().join("bad.xml");
    let o = run_to(
        tmp.path(),
        &cfg,
        &out,
        &["--junit", junit.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains("class=\"bad\">failed") && html.contains("singular"),
        "{html}"
    );
    assert!(html.contains("<table id=\"errors\">") && html.contains("<td>controller</td>"));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("failures=\"1\"") && xml.contains("singular"),
        "{xml}"
    );
}

#[test]
fn compare_puts_several_runs_in_one_table_and_plot() {
    let tmp = tempfile::tempdir().unwrap();
    let mut dirs = Vec::new();
    for sites in [2, 5, 10] {
        let cfg = scenario(
            tmp.path(),
            &format!("s{sites}"),
            &format!(
                "[scenario]\nname = \"ols-{sites}\"\n[data]\npath = \"{}\"\ntarget = \"progression\"\n[partition]\nkind = \"horizontal\"\nsites = {sites}\n[algorithm]\nkind = \"linear_regression\"\n",
                test_data("diabetes.csv").display()
            ),
        );
        let out = tmp.path().join(format!("run{sites}"));
        let o = run_to(tmp.path(), &cfg, &out, &[]);
        assert!(o.status.success(), "{}", stderr(&o));
        dirs.push(out.to_str().unwrap().to_string());
    }
    let page = tmp.path().join("compare.html");
    let mut args = vec!["report", "--compare", "--out", page.to_str().unwrap()];
    args.extend(dirs.iter().map(String::as_str));
    let o = fedsim(tmp.path(), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let html = std::fs::read_to_string(&page).unwrap();
    let table = table_in(&html, "runs");
    assert_eq!(count(table, "<tr>") - 1, 3);
    for name in ["ols-2", "ols-5", "ols-10"] {
        assert!(
            table.contains(&format!("<td>{name}</td>")),
            "{name} missing"
        );
    }
    assert_eq!(count(&html, "<svg"), 1);
    assert!(!html.contains("http://") && !html.contains("https://"));
}

/// Every `<td data-q=.. data-term=.. data-value=..>` of the report: (quantity, term, value,
/// centralised value).
fn cells(html: &str) -> Vec<(String, String, f64, Option<f64>)> {
    let attr = |tag: &str, name: &str| {
        tag.split(&format!("{name}=\""))
            .nth(1)
            .map(|r| r.split('"').next().unwrap().to_string())
    };
    html.split("<td data-q=\"")
        .skip(1)
        .filter_map(|rest| {
            let tag = format!("data-q=\"{}", rest.split('>').next().unwrap());
            // Numbers only (converged and the covariance type are words, in data-text).
            Some((
                attr(&tag, "data-q").unwrap(),
                attr(&tag, "data-term")
                    .unwrap_or_default()
                    .replace("&amp;", "&"),
                attr(&tag, "data-value")?.parse().unwrap(),
                attr(&tag, "data-centralised").map(|v| v.parse().unwrap()),
            ))
        })
        .collect()
}

#[test]
fn the_tables_show_the_numbers_of_summary_json_and_the_plots_have_legends() {
    let tmp = tempfile::tempdir().unwrap();
    for (cfg, quantities) in [
        (
            "config_linreg.toml",
            &[
                "coef",
                "se",
                "t",
                "p",
                "conf_low",
                "conf_high",
                "r2",
                "adj_r2",
                "loglik",
                "df_model",
                "df_resid",
                "fvalue",
                "f_pvalue",
                "aic",
                "bic",
            ][..],
        ),
        (
            "config_logreg.toml",
            &[
                "coef",
                "se",
                "t",
                "p",
                "conf_low",
                "conf_high",
                "loglik",
                "llnull",
                "pseudo_r2",
                "df_model",
                "df_resid",
                "llr",
                "llr_pvalue",
                "aic",
                "bic",
            ][..],
        ),
        (
            "config_glm.toml",
            &[
                "coef",
                "se",
                "t",
                "p",
                "conf_low",
                "conf_high",
                "df_resid",
                "df_model",
                "scale",
                "loglik",
                "deviance",
                "pearson_chi2",
                "null_deviance",
                "aic",
                "bic",
            ][..],
        ),
        (
            "config_svd.toml",
            &[
                "singular_value",
                "explained_variance",
                "explained_variance_ratio",
            ][..],
        ),
    ] {
        let out = tmp.path().join(cfg);
        let o = run_to(tmp.path(), &shipped(cfg), &out, &[]);
        assert!(o.status.success(), "{cfg}: {}", stderr(&o));
        let s = summary(&out);
        let html = std::fs::read_to_string(out.join("report.html")).unwrap();
        let cells = cells(&html);
        let fed = s.results.as_ref().expect("results");
        let base = s.baseline.as_ref().expect("a baseline");
        let terms: Vec<String> = if !fed.terms.is_empty() {
            fed.terms.clone()
        } else {
            assert!(
                !fed.singular_values.is_empty(),
                "{cfg}: no terms, no components"
            );
            (1..=fed.singular_values.len())
                .map(|i| format!("pc{i}"))
                .collect()
        };
        // The numbers of a quantity in the summary: one per term or component (None when the
        // quantity has one number for the model, or none)...
        let per_term = |centralised: bool, q: &str| {
            let e = if centralised { base } else { fed };
            let v = match q {
                "coef" => &e.coef,
                "se" => &e.se,
                "t" => &e.t,
                "p" => &e.p,
                "conf_low" => &e.conf_low,
                "conf_high" => &e.conf_high,
                "singular_value" => &e.singular_values,
                "explained_variance" => &e.explained_variance,
                "explained_variance_ratio" => &e.explained_variance_ratio,
                _ => return None,
            };
            // (an empty list is not written to summary.json)
            Some(v.clone()).filter(|v| !v.is_empty())
        };
        // ...or the model's one number.
        let for_model = |centralised: bool, q: &str| {
            let e = if centralised { base } else { fed };
            match q {
                "r2" => e.r2,
                "adj_r2" => e.adj_r2,
                "loglik" => e.loglik,
                "llnull" => e.llnull,
                "pseudo_r2" => e.pseudo_r2,
                "df_model" => e.df_model,
                "df_resid" => e.df_resid,
                "fvalue" => e.fvalue,
                "f_pvalue" => e.f_pvalue,
                "aic" => e.aic,
                "bic" => e.bic,
                "llr" => e.llr,
                "llr_pvalue" => e.llr_pvalue,
                "scale" => e.scale,
                "deviance" => e.deviance,
                "pearson_chi2" => e.pearson_chi2,
                "null_deviance" => e.null_deviance,
                other => panic!("{cfg}: {other} is no number of the summary"),
            }
        };
        for q in quantities {
            let shown: Vec<&(String, String, f64, Option<f64>)> =
                cells.iter().filter(|c| c.0 == *q).collect();
            match per_term(false, q) {
                // One value per term or component, in order.
                Some(values) => {
                    let centralised = per_term(true, q).unwrap_or_default();
                    assert_eq!(shown.len(), values.len(), "{cfg}: {q}");
                    for (i, c) in shown.iter().enumerate() {
                        assert_eq!(c.1, terms[i], "{cfg}: {q}");
                        assert_eq!(c.2, values[i], "{cfg}: {q}[{}]", c.1);
                        assert_eq!(
                            c.3,
                            centralised.get(i).copied(),
                            "{cfg}: centralised {q}[{}]",
                            c.1
                        );
                    }
                }
                // One value for the model.
                None => {
                    assert_eq!(shown.len(), 1, "{cfg}: {q}");
                    let value = for_model(false, q).unwrap_or_else(|| panic!("{cfg}: no {q}"));
                    assert_eq!(shown[0].2, value, "{cfg}: {q}");
                    assert_eq!(shown[0].3, for_model(true, q), "{cfg}: centralised {q}");
                }
            }
        }
        // Every site is in the timeline's and the traffic plot's legends (beside its axis label).
        let plot = |name: &str| {
            html.split(&format!("data-plot=\"{name}\""))
                .nth(1)
                .unwrap()
                .split("</figure>")
                .next()
                .unwrap()
                .to_string()
        };
        for site in &s.sites {
            // plotters writes each label as its own text element, on a line of its own.
            let name = format!("\n{}\n", site.name);
            assert!(
                count(&plot("timeline"), &name) >= 2,
                "{cfg}: timeline legend lacks {name}"
            );
            assert!(
                count(&plot("traffic"), &name) >= 1,
                "{cfg}: traffic legend lacks {name}"
            );
        }
        assert!(plot("difference").contains("tolerance"), "{cfg}");
    }
}

/// The inside of the plot named `name` (its `<figure>`).
fn plot<'a>(html: &'a str, name: &str) -> &'a str {
    html.split(&format!("data-plot=\"{name}\""))
        .nth(1)
        .unwrap_or_else(|| panic!("no {name} plot"))
        .split("</figure>")
        .next()
        .unwrap()
}

/// The fill colours of the rectangles in an SVG fragment, in order.
fn fills(svg: &str) -> Vec<(u8, u8, u8)> {
    svg.split("<rect")
        .skip(1)
        .filter_map(|r| {
            let hex = r.split("fill=\"#").nth(1)?.get(..6)?;
            let v = u32::from_str_radix(hex, 16).ok()?;
            Some(((v >> 16) as u8, (v >> 8) as u8, v as u8))
        })
        .collect()
}

/// Issue 19.10: the report a statistician reads. The model named in one line; statsmodels'
/// model statistics (Df, F and its P, AIC, BIC, LLR p-value, converged, covariance type); a
/// coefficient plot with intervals before the engineering plots; each site's outcome (a Dirichlet
/// skew shows); bars that do not hide each other; phases told apart; a log axis labelled in every
/// decade down to the smallest difference.
#[test]
fn the_report_reads_as_a_statisticians_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("penguins");
    let o = run_to(
        tmp.path(),
        &shipped("config_penguins.toml"),
        &out,
        &[
            "--set",
            "partition.strategy=dirichlet",
            "--set",
            "partition.alpha=0.3",
            "--set",
            "partition.label=body_mass_g",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains(
            "<p id=\"model\"><b>OLS: body_mass_g ~ const + 8 terms, 333 of 344 rows (11 incomplete dropped)</b></p>"
        ),
        "the model line"
    );
    let fit = table_in(&html, "fit");
    for row in [
        "Df Residuals",
        "Df Model",
        "F-statistic",
        "Prob (F-statistic)",
        "AIC",
        "BIC",
        "Covariance Type",
    ] {
        assert!(fit.contains(&format!("<td>{row}</td>")), "{row}");
    }
    // The effects first, then how the run went.
    let at = |name: &str| html.find(&format!("data-plot=\"{name}\"")).unwrap();
    assert!(at("coefficients") < at("outcomes") && at("outcomes") < at("timeline"));
    let s = summary(&out);
    let coefficients = plot(&html, "coefficients");
    for term in s.results.as_ref().expect("results").terms.iter().skip(1) {
        assert!(coefficients.contains(term.as_str()), "{term}");
    }
    // One row per site with its size, and the sites' medians differ (the skew is visible).
    let outcomes = plot(&html, "outcomes");
    let sites = &s.sites;
    let medians: Vec<f64> = sites
        .iter()
        .map(|x| x.outcome.as_ref().expect("an outcome").percentiles[2])
        .collect();
    for x in sites {
        let n = x.outcome.as_ref().expect("an outcome").n;
        let label = format!("{} (n = {n})", x.name);
        assert!(outcomes.contains(&label), "{label}");
    }
    let spread = medians.iter().fold(f64::MIN, |a, b| a.max(*b))
        - medians.iter().fold(f64::MAX, |a, b| a.min(*b));
    assert!(spread > 200.0, "medians {medians:?}");

    // Traffic: a bar per site and round, even where sites sent the same bytes.
    let m = metrics(&out);
    let bars = m
        .rounds
        .iter()
        .filter(|r| r.round > 0)
        .map(|r| r.sites.len())
        .sum::<usize>();
    let traffic = fills(plot(&html, "traffic"));
    let site_colours: std::collections::BTreeSet<_> = traffic.iter().collect();
    assert!(
        traffic.len() >= bars + sites.len(),
        "{} rectangles for {bars} bars and {} legend entries",
        traffic.len(),
        sites.len()
    );
    assert!(site_colours.len() >= sites.len());

    // The phases' colours are far apart (the old ramp differed by 18 in each channel).
    let phases = m.phases.len();
    let legend: Vec<(u8, u8, u8)> = {
        let mut seen = Vec::new();
        for c in fills(plot(&html, "timeline")) {
            if !seen.contains(&c) && c != (255, 255, 255) {
                seen.push(c);
            }
        }
        seen.into_iter().take(phases).collect()
    };
    for (i, a) in legend.iter().enumerate() {
        for b in &legend[i + 1..] {
            let d = (a.0 as i32 - b.0 as i32).abs()
                + (a.1 as i32 - b.1 as i32).abs()
                + (a.2 as i32 - b.2 as i32).abs();
            assert!(d >= 60, "phase colours {a:?} and {b:?} are too close");
        }
    }

    // The difference plot labels every decade from its smallest difference to the tolerance.
    let difference = plot(&html, "difference");
    for decade in ["1e-8", "1e-12", "1e-14", "1e-15", "1e-16"] {
        assert!(
            difference.contains(&format!(">{decade}<"))
                || difference.contains(&format!("\n{decade}\n")),
            "no {decade} label"
        );
    }
}
