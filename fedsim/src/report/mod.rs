//! What a person reads: `report.html` from a run directory alone (self-contained: inline CSS and
//! SVG plots, nothing fetched), a table across several runs, and JUnit XML for CI systems.
//!
//! The report renders the same typed [`Summary`] and [`Metrics`] the run writes, so a renamed
//! field is a compile error here, not a silently blank cell. `fedsim report RUN_DIR` reads them
//! back from the directory, so it works on any finished run, also one copied from elsewhere.

mod across;
pub mod junit;
mod platform;
mod plots;
mod projection;
mod survival;
mod table;

use std::fmt::Write as _;
use std::path::PathBuf;

pub use across::compare;

use crate::algorithms::{Estimates, Params};
use crate::compare::{Check, Comparison, Quantity};
use crate::enrol::participants::DriveReport;
use crate::logs::LogLine;
use crate::metrics::Metrics;
use crate::rundir::{PlanFile, RunDir, RunDirError};
use crate::summary::{Status, Summary};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    #[error("plot {0}: {1}")]
    Plot(&'static str, String),
    #[error("{} is a {algorithm} run, {} a {expected} run: runs of different analyses cannot share one comparison", run.display(), first.display())]
    Mixed {
        run: PathBuf,
        algorithm: String,
        first: PathBuf,
        expected: String,
    },
    #[error("--by {key}: no run's scenario has this key{}; keys are dotted as in the scenario, e.g. partition.sites", suggestion.as_ref().map(|s| format!(" (did you mean {s}?)")).unwrap_or_default())]
    UnknownKey {
        key: String,
        suggestion: Option<String>,
    },
    /// An option that does not apply to what was asked (it would be ignored).
    #[error("{0}")]
    Usage(String),
    #[error("{} exists; give --out another name, or --force to replace it", path.display())]
    Exists { path: PathBuf },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Everything a report is made from.
pub struct RunView {
    pub dir: RunDir,
    pub summary: Summary,
    pub metrics: Metrics,
    /// Absent only for a directory whose plan was never written.
    pub plan: Option<PlanFile>,
    /// The merged log.
    pub log: Vec<LogLine>,
}

impl RunView {
    pub fn load(dir: &RunDir) -> Result<RunView, ReportError> {
        Ok(RunView::with(dir, dir.read_summary()?, dir.read_metrics()?))
    }

    /// The run's summary and metrics as given, its plan and log from the directory.
    fn with(dir: &RunDir, summary: Summary, metrics: Metrics) -> RunView {
        RunView {
            dir: dir.clone(),
            summary,
            metrics,
            plan: dir.read_plan().ok(),
            log: dir.read_log(),
        }
    }
}

pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn num(x: f64) -> String {
    if x == 0.0 || (1e-3..1e6).contains(&x.abs()) {
        format!("{x:.6}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        format!("{x:.4e}")
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.ok{color:#0a7d32;font-weight:bold}
.bad{color:#b00020;font-weight:bold}.note{color:#666}td small{white-space:nowrap;color:#555}figure.plot{margin:1em 0}code{background:#f3f3f3;padding:0 3px}";

fn verdict(ok: bool) -> &'static str {
    if ok {
        "<span class=\"ok\">passed</span>"
    } else {
        "<span class=\"bad\">FAILED</span>"
    }
}

/// The checks of one comparison, grouped by term (or component) in their order.
fn by_term(c: &Comparison) -> Vec<(&str, Vec<&Check>)> {
    let mut rows: Vec<(&str, Vec<&Check>)> = Vec::new();
    for check in &c.checks {
        match rows.iter_mut().find(|(t, _)| *t == check.term) {
            Some((_, checks)) => checks.push(check),
            None => rows.push((&check.term, vec![check])),
        }
    }
    rows
}

/// The comparison table: one row per term (regressions) or component (svd), each value with its
/// difference on the scale it is judged on, and the verdict.
/// An external algorithm's results, one number a row: what it is named, both values, the
/// difference and how it is judged.
fn named_table(c: &Comparison) -> String {
    let mut t = String::from("<table id=\"named\"><tr><th>name</th><th>federated</th><th>pooled</th><th>difference</th><th>judged on</th><th>verdict</th></tr>");
    for k in c.checks.iter().filter(|k| k.quantity == Quantity::Value) {
        let _ = write!(
            t,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.3e}</td><td>{:.2e} (tolerance {:.1e})</td><td>{}</td></tr>",
            esc(&k.term),
            num(k.got),
            num(k.want),
            k.got - k.want,
            k.diff,
            k.tolerance,
            verdict(k.passed)
        );
    }
    t.push_str("</table>");
    t
}

/// One value of the table: the federated number, and under it the centralised one and their
/// difference on the verdict's scale; machine-readable in its attributes.
fn cell(check: Option<&Check>) -> String {
    match check {
        None => "<td>-</td>".to_string(),
        Some(k) => format!(
            "<td data-q=\"{q}\" data-term=\"{term}\" data-value=\"{got:e}\" data-centralised=\"{want:e}\" data-diff=\"{diff:e}\"{class}><b>{g}</b><br><small>{w} · Δ {diff:.1e}</small></td>",
            q = k.quantity.as_str(),
            term = esc(&k.term),
            got = k.got,
            want = k.want,
            diff = k.diff,
            class = if k.passed { "" } else { " class=\"bad\"" },
            g = num(k.got),
            w = num(k.want),
        ),
    }
}

/// The comparison, laid out as people know it: a regression as statsmodels' summary table
/// (coef, std err, t or z, P, the 95% interval), with the model's numbers under it; an svd per
/// component. Each value is the federated one, with the centralised one and their difference.
fn comparison_table(
    c: &Comparison,
    svd: bool,
    iterated: Option<&str>,
    sides: Option<(&Estimates, &Estimates)>,
) -> String {
    let named = c.checks.iter().any(|k| k.quantity == Quantity::Value);
    if named && !c.checks.iter().any(|k| k.quantity == Quantity::Coef) {
        return named_table(c);
    }
    let find =
        |q: Quantity, term: &str| c.checks.iter().find(|k| k.quantity == q && k.term == term);
    let mut t = String::new();
    if svd {
        t.push_str("<table id=\"comparison\"><tr><th>component</th><th>singular value</th><th>explained variance</th><th>explained variance ratio</th><th>angle (deg)</th><th>verdict</th></tr>");
        for (term, checks) in by_term(c).into_iter().filter(|(t, _)| !t.is_empty()) {
            let angle = checks
                .iter()
                .find(|k| k.quantity == Quantity::Angle)
                .map_or("-".to_string(), |a| format!("{:.2e}", a.got));
            let notes: Vec<&str> = checks.iter().filter_map(|c| c.note.as_deref()).collect();
            let _ = write!(
                t,
                "<tr><td>{}</td>{}{}{}<td>{angle}</td><td>{}{}</td></tr>",
                esc(term),
                cell(find(Quantity::SingularValue, term)),
                cell(find(Quantity::ExplainedVariance, term)),
                cell(find(Quantity::ExplainedVarianceRatio, term)),
                verdict(checks.iter().all(|c| c.passed)),
                if notes.is_empty() {
                    String::new()
                } else {
                    format!(" <span class=\"note\">({})</span>", esc(&notes.join("; ")))
                }
            );
        }
        t.push_str("</table>");
    } else {
        let (stat, p) = if iterated.is_some() {
            ("z", "P&gt;|z|")
        } else {
            ("t", "P&gt;|t|")
        };
        let _ = write!(
            t,
            "<table id=\"comparison\"><tr><th>term</th><th>coef</th><th>std err</th><th>{stat}</th><th>{p}</th><th>[0.025</th><th>0.975]</th><th>verdict</th></tr>"
        );
        for (term, checks) in by_term(c).into_iter().filter(|(t, _)| !t.is_empty()) {
            let _ = write!(t, "<tr><td>{}</td>", esc(term));
            for q in [
                Quantity::Coef,
                Quantity::Se,
                Quantity::T,
                Quantity::P,
                Quantity::ConfLow,
                Quantity::ConfHigh,
            ] {
                t.push_str(&cell(find(q, term)));
            }
            let _ = write!(
                t,
                "<td>{}</td></tr>",
                verdict(checks.iter().all(|c| c.passed))
            );
        }
        t.push_str("</table>");
        // The model's own numbers, under the table as in statsmodels' summary (each kind has
        // its own; those it has not are not checked, so not shown).
        let rows: &[(Quantity, &str)] = &[
            (Quantity::DfResid, "Df Residuals"),
            (Quantity::DfModel, "Df Model"),
            (Quantity::Dispersion, "Scale"),
            (Quantity::R2, "R-squared"),
            (Quantity::AdjR2, "Adj. R-squared"),
            (Quantity::Fvalue, "F-statistic"),
            (Quantity::FPvalue, "Prob (F-statistic)"),
            (Quantity::PseudoR2, "Pseudo R-squ."),
            (Quantity::Loglik, "Log-Likelihood"),
            (Quantity::Llnull, "LL-Null"),
            (Quantity::Llr, "LLR"),
            (Quantity::LlrPvalue, "LLR p-value"),
            (Quantity::Deviance, "Deviance"),
            (Quantity::PearsonChi2, "Pearson chi2"),
            (Quantity::NullDeviance, "Null deviance"),
            (Quantity::Aic, "AIC"),
            (Quantity::Bic, "BIC"),
        ];
        t.push_str("<table id=\"fit\"><tr><th>model</th><th>federated (centralised · Δ)</th><th>verdict</th></tr>");
        // Counts are exact on both sides, or the comparison would not have been made.
        if let Some((fed, base)) = sides {
            let _ = write!(
                t,
                "<tr><td>No. Observations</td><td data-q=\"n\" data-value=\"{}\"><b>{}</b><br><small>{}</small></td><td>{}</td></tr>",
                fed.n,
                fed.n,
                base.n,
                verdict(fed.n == base.n)
            );
            if let (Some(how), Some(i), Some(j)) = (iterated, fed.iterations, base.iterations) {
                let _ = write!(
                    t,
                    "<tr><td>Iterations ({how})</td><td data-q=\"iterations\" data-value=\"{i}\"><b>{i}</b><br><small>{j}</small></td><td class=\"note\">not judged</td></tr>"
                );
            }
        }
        for (q, label) in rows {
            if let Some(k) = find(*q, "") {
                let _ = write!(
                    t,
                    "<tr><td>{label}</td>{}<td>{}</td></tr>",
                    cell(Some(k)),
                    verdict(k.passed)
                );
            }
        }
        if let Some((fed, base)) = sides {
            let words = |e: &Estimates| {
                (
                    e.converged.map_or("-".to_string(), |c| c.to_string()),
                    e.cov_type.clone().unwrap_or_else(|| "-".into()),
                )
            };
            let ((fc, ft), (bc, bt)) = (words(fed), words(base));
            if iterated.is_some() {
                let _ = write!(
                    t,
                    "<tr><td>converged</td><td data-q=\"converged\" data-text=\"{fc}\"><b>{fc}</b><br><small>{bc}</small></td><td>{}</td></tr>",
                    verdict(fc == bc)
                );
            }
            let _ = write!(
                t,
                "<tr><td>Covariance Type</td><td data-q=\"cov_type\" data-text=\"{ft}\"><b>{ft}</b><br><small>{bt}</small></td><td>{}</td></tr>",
                verdict(ft == bt)
            );
        }
        t.push_str("</table>");
    }
    t.push_str("</table>");
    if named {
        // A regression's named results besides its table (a Cox model's hazard ratios).
        t.push_str(&named_table(c));
    }
    let _ = write!(
        t,
        "<p>Federated vs centralised: largest difference <b>{:.3e}</b> at <code>{}</code> (absolute {:.3e}), tolerance {:.1e}: {}</p>",
        c.max_diff,
        esc(&c.worst),
        c.max_abs_diff,
        c.tolerance,
        verdict(c.passed)
    );
    t.push_str("<p class=\"note\">Each cell: the federated value, and under it the centralised value and their difference divided by the scale the verdict uses. A coefficient (and a confidence bound) is judged on the larger of |centralised value| and its standard error; a standard error, singular value or explained variance on its own size; t on max(|t|, 1); P on P·max(t², 1); R² values absolutely; log-likelihoods, AIC, BIC, F, LLR and a GLM's deviances and Pearson chi2 on max(|value|, 1), its scale on its own size; the F test's P on P·max(Df Model·F/2, 1), the LLR test's on P·max(LLR/2, 1); degrees of freedom exactly; vectors by their angle.</p>");
    t
}

/// `report.html` for one run.
pub fn render(run: &RunView) -> Result<String, ReportError> {
    let s = &run.summary;
    let m = &run.metrics;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>fedsim: {name}</title><style>{STYLE}</style></head><body>\
         <h1>fedsim run <code>{name}</code>: {badge}</h1>\
         <p>Run <code>{id}</code>, algorithm <b>{alg}</b>, fedsim {ver}.</p>",
        name = esc(&s.scenario),
        badge = badge(s.status),
        id = esc(&s.run_id),
        alg = esc(&s.algorithm),
        ver = esc(&s.fedsim_version),
    );
    if let Some(e) = &s.error {
        h.push_str(&error_line(e));
    }
    let named = !s.analyses.is_empty();
    if let Some(line) = model_line(run).filter(|_| !named) {
        let _ = write!(h, "<p id=\"model\"><b>{}</b></p>", esc(&line));
    }
    h.push_str("<h2>Scenario</h2><table id=\"scenario\"><tr><th>item</th><th>value</th></tr>");
    let mut row = |k: &str, v: String| {
        let _ = write!(h, "<tr><td>{k}</td><td>{}</td></tr>", esc(&v));
    };
    if let Some(p) = &run.plan {
        row("data", p.data.display().to_string());
        row("seed", p.seed.to_string());
        row(
            "partition",
            format!(
                "{} / {} over {} sites",
                serde_plain(&p.partition.kind),
                serde_plain(&p.partition.strategy),
                p.partition.sites
            ),
        );
        if named {
            let names: Vec<String> = p
                .analyses
                .iter()
                .map(|a| format!("{} ({})", a.name, a.algorithm.kind().as_str()))
                .collect();
            row("analyses", names.join(", "));
        } else {
            row("features", p.algorithm.features.len().to_string());
        }
    }
    if !named {
        row(
            "rows",
            s.results.as_ref().map_or("-".into(), |r| r.n.to_string()),
        );
    }
    h.push_str("</table><h2>Sites</h2><table id=\"sites\"><tr><th>site</th><th>rows</th><th>where</th><th>link</th><th>mean answer (s)</th><th>agent exit</th><th>peak memory (MiB)</th></tr>");
    for site in &s.sites {
        let exit = match &site.exit {
            Some(e) if e.killed => "killed".to_string(),
            Some(e) => e.code.map_or("signal".into(), |c| c.to_string()),
            None => "-".to_string(),
        };
        let mem = m
            .sites_peak_rss_kib
            .get(&site.name)
            .map_or("-".into(), |k| format!("{:.0}", *k as f64 / 1024.0));
        // Request out to answer in, over the algorithm's rounds: where the link shows.
        let answers: Vec<f64> = m
            .rounds
            .iter()
            .filter(|r| r.round > 0)
            .flat_map(|r| r.sites.iter().filter(|x| x.site == site.name))
            .map(|x| x.answer_secs)
            .collect();
        let answer = if answers.is_empty() {
            "-".to_string()
        } else {
            format!("{:.3}", answers.iter().sum::<f64>() / answers.len() as f64)
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{answer}</td><td>{exit}</td><td>{mem}</td></tr>",
            esc(&site.name),
            match site.dropped_rows {
                Some(d) => format!("{} ({d} incomplete, dropped)", site.rows),
                None => site.rows.to_string(),
            },
            esc(site.location.as_deref().unwrap_or("")),
            esc(site.link.as_deref().unwrap_or("-"))
        );
    }
    h.push_str("</table>");
    h.push_str(&releases(run));
    if !s.warnings.is_empty() {
        h.push_str("<h2>Warnings</h2><ul id=\"warnings\">");
        for w in &s.warnings {
            let _ = write!(
                h,
                "<li class=\"warn\"><b>{}</b>: {}</li>",
                esc(&w.kind),
                esc(&w.message)
            );
        }
        h.push_str("</ul>");
    }
    if !named {
        h.push_str(&results(run, 2)?);
        h.push_str("<h2>How the run went</h2>");
        h.push_str(&plots::timeline(run)?);
        for plot in [
            plots::convergence(run)?,
            plots::difference(run)?,
            plots::traffic(run)?,
        ]
        .into_iter()
        .flatten()
        {
            h.push_str(&plot);
        }
    } else {
        // A section per analysis, each as a run of it alone would be reported.
        for a in &s.analyses {
            let view = analysis_view(run, a);
            let _ = write!(
                h,
                "<section id=\"analysis-{id}\"><h2>Analysis <code>{name}</code> ({kind}): {badge}</h2>",
                id = esc(&a.name),
                name = esc(&a.name),
                kind = esc(&a.algorithm),
                badge = badge(a.status),
            );
            if let Some(e) = &a.error {
                h.push_str(&error_line(e));
            }
            if let Some(line) = model_line(&view) {
                let _ = write!(h, "<p class=\"model\"><b>{}</b></p>", esc(&line));
            }
            h.push_str(&results(&view, 3)?);
            for plot in [plots::convergence(&view)?, plots::difference(&view)?]
                .into_iter()
                .flatten()
            {
                h.push_str(&plot);
            }
            h.push_str("</section>");
        }
        h.push_str("<h2>How the run went</h2>");
        h.push_str(&plots::timeline(run)?);
        if let Some(plot) = plots::traffic(run)? {
            h.push_str(&plot);
        }
    }
    h.push_str(&projection::section(run));
    h.push_str(&platform::section(run));
    h.push_str("<h2>Costs</h2><table id=\"metrics\"><tr><th>phase</th><th>seconds</th></tr>");
    for (phase, secs) in &m.phases {
        let _ = write!(h, "<tr><td>{}</td><td>{secs:.3}</td></tr>", esc(phase));
    }
    let _ = write!(
        h,
        "</table><p>Controller CPU {:.2} s, controller peak memory {:.0} MiB.</p>",
        m.controller_cpu_secs,
        m.controller_peak_rss_kib as f64 / 1024.0
    );
    if let Some(p) = &m.portal {
        h.push_str(&portal(p));
    }
    let problems: Vec<&LogLine> = run.log.iter().filter(|l| l.is_problem()).collect();
    let _ = write!(h, "<h2>Errors and warnings ({})</h2>", problems.len());
    if !problems.is_empty() {
        h.push_str("<table id=\"errors\"><tr><th>time</th><th>source</th><th>level</th><th>message</th></tr>");
        for l in problems {
            let detail = l
                .text("error")
                .or(l.text("reason"))
                .map(|d| format!(": {d}"))
                .unwrap_or_default();
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td></tr>",
                esc(&l.timestamp),
                esc(&l.source),
                esc(&l.level),
                esc(&l.message),
                esc(&detail)
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</body></html>\n");
    Ok(h)
}

/// "What left each site": per site, the messages it released (their numbers and bytes), the
/// smallest count behind any number, and what a data steward must look at: a count below the
/// site's `min_cell` (or 5 without one), a single record's value, a model with as many
/// parameters as the site has rows, a category level only that site holds.
fn releases(run: &RunView) -> String {
    let all = run.dir.read_releases();
    if all.is_empty() {
        return String::new();
    }
    let privacy: crate::scenario::PrivacySpec = std::fs::read_to_string(run.dir.scenario_toml())
        .ok()
        .and_then(|t| toml::from_str::<toml::Table>(&t).ok())
        .and_then(|t| t.get("privacy").cloned())
        .and_then(|v| v.try_into().ok())
        .unwrap_or_default();
    let mut h = String::from("<h2>What left each site</h2><p class=\"note\">Every message a site sent with its data in it, as the site recorded it (<code>releases.jsonl</code>): under secure aggregation the coordinator saw the shapes and masked numbers only.</p><table id=\"releases\"><tr><th>site</th><th>messages</th><th>numbers</th><th>bytes</th><th>smallest count</th><th>flags</th></tr>");
    let plan = run.plan.as_ref();
    for site in &run.summary.sites {
        let mine: Vec<&crate::releases::Release> =
            all.iter().filter(|r| r.site == site.name).collect();
        if mine.is_empty() {
            continue;
        }
        let min_cell = privacy.rules_of(&site.name).min_cell.unwrap_or(5) as f64;
        let smallest = mine
            .iter()
            .filter(|r| r.min_count > 0.0)
            .min_by(|a, b| a.min_count.total_cmp(&b.min_count));
        let mut flags = Vec::new();
        if let Some(r) = smallest.filter(|r| r.min_count < min_cell) {
            flags.push(format!(
                "a released count below {min_cell}: {} ({} in {})",
                r.smallest, r.min_count, r.analysis
            ));
        }
        if mine
            .iter()
            .any(|r| r.min_count == 1.0 && r.smallest == crate::agent::EVENT_TIME_ROWS)
        {
            flags.push("a single-record value: an event time one row holds, sent in clear".into());
        }
        let configs: Vec<&crate::algorithms::AlgorithmConfig> = match plan {
            Some(p) if !p.analyses.is_empty() => p.analyses.iter().map(|a| &a.algorithm).collect(),
            Some(p) => vec![&p.algorithm],
            None => Vec::new(),
        };
        if configs
            .iter()
            .any(|c| matches!(&c.params, Params::Describe(d) if d.extremes))
        {
            flags.push("a single-record value: each column's min and max".into());
        }
        let rows = site.rows - site.dropped_rows.unwrap_or(0);
        let models = configs.iter().filter(|c| {
            matches!(
                c.params,
                Params::LinearRegression
                    | Params::LogisticRegression(_)
                    | Params::Glm(_)
                    | Params::Cox(_)
            )
        });
        if models.into_iter().any(|c| c.terms().len() >= rows) {
            flags.push(format!(
                "a saturated model: as many parameters as the site's {rows} rows"
            ));
        }
        for w in run
            .summary
            .warnings
            .iter()
            .filter(|w| w.kind == "privacy" && w.site.as_deref() == Some(&site.name))
        {
            flags.push(format!(
                "a category level only this site holds ({})",
                w.message
            ));
        }
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&site.name),
            mine.len(),
            mine.iter().map(|r| r.numbers).sum::<u64>(),
            mine.iter().map(|r| r.bytes).sum::<u64>(),
            smallest.map_or("-".into(), |r| format!(
                "{} <small>{}</small>",
                r.min_count,
                esc(&r.smallest)
            )),
            if flags.is_empty() {
                "<span class=\"ok\">none</span>".to_string()
            } else {
                flags
                    .iter()
                    .map(|f| format!("<span class=\"bad\">{}</span>", esc(f)))
                    .collect::<Vec<_>>()
                    .join("<br>")
            }
        );
    }
    h.push_str("</table>");
    if !run.summary.privacy_spent.is_empty() {
        h.push_str("<h3>Privacy budget spent</h3><p class=\"note\">Each site's own accountant, from its release records: Gaussian rounds compose in zero-concentrated DP (their ρ add up, then ε = ρ + 2√(ρ ln 1/δ)); Laplace rounds add their ε.</p><table id=\"budget\"><tr><th>site</th><th>mechanism</th><th>noisy releases</th><th>cost (ρ or ε)</th><th>ε spent</th><th>budget</th></tr>");
        for b in &run.summary.privacy_spent {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
                esc(&b.site),
                b.mechanism.as_str(),
                b.rounds,
                num(b.cost),
                if b.epsilon <= b.budget * (1.0 + 1e-9) { "ok" } else { "bad" },
                num(b.epsilon),
                num(b.budget)
            );
        }
        h.push_str("</table>");
    }
    h
}

/// A status as a coloured word.
fn badge(status: Status) -> String {
    let class = if status == Status::Succeeded {
        "ok"
    } else {
        "bad"
    };
    format!("<span class=\"{class}\">{status}</span>")
}

/// Why a run (or an analysis) did not succeed: the phase, the site at fault, the message.
fn error_line(e: &crate::summary::FailureInfo) -> String {
    let site = e
        .site
        .as_deref()
        .map(|x| format!(" (site <b>{}</b>)", esc(x)))
        .unwrap_or_default();
    let phase = e
        .phase
        .as_deref()
        .map(|p| format!(" in {}", esc(p)))
        .unwrap_or_default();
    format!(
        "<p class=\"bad\">Error{phase}{site}: {}</p>",
        esc(&e.message)
    )
}

/// One analysis's results: the comparison with the pooled fit, the reference check, and the
/// plots a statistician looks at first (headings at `level`).
fn results(run: &RunView, level: u8) -> Result<String, ReportError> {
    let s = &run.summary;
    let mut h = String::new();
    if let Some(c) = &s.comparison {
        let _ = write!(h, "<h{level}>Federated vs centralised</h{level}>");
        let sides = s.results.as_ref().zip(s.baseline.as_ref());
        h.push_str(&comparison_table(
            c,
            s.algorithm == "svd",
            match s.algorithm.as_str() {
                "logistic_regression" => Some("Newton"),
                "glm" => Some("IRLS"),
                "cox" => Some("Newton"),
                _ => None,
            },
            sides,
        ));
    }
    if let Some(cost) = s.comparison.as_ref().and_then(|c| c.noise.as_ref()) {
        h.push_str(&noise_cost(
            cost,
            s.comparison.as_ref().expect("held to the noise"),
        ));
    }
    if let Some(r) = &s.reference {
        let _ = write!(
            h,
            "<p>Against the independent reference <code>{}</code>: largest difference <b>{:.3e}</b> at <code>{}</code>: {}</p>",
            esc(&r.source.display().to_string()),
            r.comparison.max_diff,
            esc(&r.comparison.worst),
            verdict(r.comparison.passed)
        );
    }
    // What a statistician looks at first: the effects, and how the sites' outcomes differ.
    for plot in [
        plots::coefficients(run)?,
        survival::kaplan_meier(run)?,
        table::crosstab(run),
        plots::outcomes(run)?,
    ]
    .into_iter()
    .flatten()
    {
        h.push_str(&plot);
    }
    Ok(h)
}

/// "What ε costs each estimate": per check the noise reaches, the predicted spread of its
/// error, the clipping's bias, the 99% bound the verdict holds it to, and the error it had.
fn noise_cost(cost: &crate::compare::Cost, c: &Comparison) -> String {
    let budget = match cost.delta {
        Some(d) => format!("ε = {}, δ = {d:e}", cost.epsilon),
        None => format!("ε = {}", cost.epsilon),
    };
    let mut h = format!(
        "<h3>What {budget} costs each estimate</h3><p class=\"note\">Each site clipped its values to the bounds and added {} noise to everything it released, its budget split over the run's {} rounds ({} in this analysis). The spread is predicted by moving every released number by its noise; the verdict holds each error to its clipping bias plus {:.2} spreads, so that all {} estimates the noise moves stay within their bounds 99% of the time together.</p><table id=\"noise-cost\"><tr><th>estimate</th><th>centralised</th><th>federated</th><th>error</th><th>predicted sd</th><th>clipping bias</th><th>bound</th><th>share of bound</th></tr>",
        cost.mechanism.as_str(),
        cost.run_rounds,
        cost.rounds,
        cost.z,
        cost.held
    );
    for check in c.checks.iter() {
        let Some(t) = cost.term(&check.name()).filter(|t| t.bound > 0.0) else {
            continue;
        };
        let _ = write!(
            h,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{:.0}%</td></tr>",
            esc(&check.name()),
            num(check.want),
            num(check.got),
            num(check.abs_diff),
            num(t.sd),
            num(t.bias),
            num(t.bound),
            if check.passed { "ok" } else { "bad" },
            100.0 * check.abs_diff / t.bound
        );
    }
    h.push_str("</table>");
    h
}

/// A run of several analyses seen as a run of one of them: its verdict and numbers in the
/// summary's place, its configuration as the plan's, its rounds only.
fn analysis_view(run: &RunView, a: &crate::summary::AnalysisSummary) -> RunView {
    let mut summary = run.summary.clone();
    summary.analyses = Vec::new();
    summary.algorithm = a.algorithm.clone();
    summary.status = a.status;
    summary.error = a.error.clone();
    summary.results = a.results.clone();
    summary.baseline = a.baseline.clone();
    summary.comparison = a.comparison.clone();
    summary.reference = a.reference.clone();
    summary.lost_sites = a.lost_sites.clone();
    let mut metrics = run.metrics.clone();
    metrics
        .rounds
        .retain(|r| r.analysis.as_deref() == Some(a.name.as_str()));
    let plan = run.plan.clone().map(|mut p| {
        if let Some(mine) = p.analyses.iter().find(|x| x.name == a.name) {
            p.algorithm = mine.algorithm.clone();
        }
        p.analyses = Vec::new();
        p
    });
    RunView {
        dir: run.dir.clone(),
        summary,
        metrics,
        plan,
        log: Vec::new(),
    }
}

/// The model in one line, as a statistician names it: "OLS: body_mass_g ~ const + 8 terms, 333
/// of 344 rows (11 incomplete dropped)".
fn model_line(run: &RunView) -> Option<String> {
    let s = &run.summary;
    let e = s.results.as_ref().or(s.baseline.as_ref())?;
    let model = match s.algorithm.as_str() {
        "linear_regression" => "OLS",
        "logistic_regression" => "Logit",
        "glm" => "GLM",
        "svd" => "PCA",
        "crosstab" => "Crosstab",
        "describe" => "Describe",
        "cox" => "Cox",
        _ => return None,
    };
    let rows: usize = s.sites.iter().map(|x| x.rows).sum();
    let dropped: usize = s.sites.iter().filter_map(|x| x.dropped_rows).sum();
    let used = if dropped > 0 {
        format!("{} of {rows} rows ({dropped} incomplete dropped)", e.n)
    } else {
        format!("{} rows", e.n)
    };
    if model == "Crosstab" {
        // The labels of `counts`: the row levels, then the column levels.
        let levels = |i: usize| {
            e.named
                .get("counts")
                .and_then(|c| c["labels"][i].as_array().map(Vec::len))
                .unwrap_or(0)
        };
        let columns = run
            .plan
            .as_ref()
            .map(|p| p.algorithm.categorical.join(" x "))
            .unwrap_or_default();
        return Some(format!(
            "Crosstab: {columns} ({} x {} levels), {used}",
            levels(0),
            levels(1)
        ));
    }
    if model == "Describe" {
        return Some(format!("Describe: {} columns, {used}", e.terms.len()));
    }
    if model == "PCA" {
        let k = e.singular_values.len();
        let features = run.plan.as_ref().map_or(0, |p| p.algorithm.features.len());
        // A vertical split gives every site all rows: count them once.
        return Some(format!(
            "PCA: {k} components of {features} columns, {} rows",
            e.n
        ));
    }
    if let Some(Params::Cox(c)) = run.plan.as_ref().map(|p| &p.algorithm.params) {
        let strata = c
            .strata
            .as_ref()
            .map_or(String::new(), |s| format!(", strata {s}"));
        let events = e
            .named
            .get("events")
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0);
        return Some(format!(
            "Cox ({} ties{strata}): ({}, {}) ~ {} terms, {used}, {events} events",
            c.ties.as_str(),
            c.time,
            c.event,
            e.terms.len()
        ));
    }
    let target = run.plan.as_ref()?.algorithm.target.clone()?;
    let intercept = e.terms.first().is_some_and(|t| t == "const");
    let others = e.terms.len() - usize::from(intercept);
    let rhs = if intercept {
        format!("const + {others} terms")
    } else {
        format!("{others} terms, no intercept")
    };
    let family = match run.plan.as_ref().map(|p| &p.algorithm.params) {
        Some(Params::Glm(g)) => {
            let mut words = vec![
                g.family.as_str().to_string(),
                format!("{} link", g.link.as_str()),
            ];
            for (what, column) in [
                ("offset", &g.offset),
                ("exposure", &g.exposure),
                ("frequency weights", &g.weights),
            ] {
                if let Some(c) = column {
                    words.push(format!("{what} {c}"));
                }
            }
            format!(" ({})", words.join(", "))
        }
        _ => String::new(),
    };
    Some(format!("{model}{family}: {target} ~ {rhs}, {used}"))
}

/// An enum as the scenario spells it (its serde name).
fn serde_plain<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The portal: how the accounts enrolled (API or browsers), the time per phase, the slowest steps
/// and links to the screenshots.
fn portal(p: &DriveReport) -> String {
    let how = match p.driver.as_str() {
        "gui" => "every account in its own headless browser",
        "people" => "people in their browsers",
        _ => "JSON API",
    };
    let mut h = format!(
        "<h2>Portal ({how})</h2><table id=\"portal\"><tr><th>phase</th><th>seconds</th></tr>"
    );
    for (phase, secs) in &p.phases {
        let _ = write!(h, "<tr><td>{}</td><td>{secs:.3}</td></tr>", esc(phase));
    }
    h.push_str("</table>");
    let mut steps: Vec<_> = p.steps.iter().collect();
    steps.sort_by(|a, b| b.secs.total_cmp(&a.secs));
    h.push_str("<table id=\"portal-steps\"><tr><th>slowest steps</th><th>account</th><th>phase</th><th>seconds</th></tr>");
    for s in steps.iter().take(5) {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td></tr>",
            esc(&s.step),
            esc(&s.account),
            esc(&s.phase),
            s.secs
        );
    }
    h.push_str("</table>");
    let shots: Vec<String> = p
        .screenshots
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .filter_map(|s| s.find("portal/").map(|i| s[i..].to_string()))
        .collect();
    if !shots.is_empty() {
        h.push_str("<p>Screenshots: ");
        for (i, s) in shots.iter().enumerate() {
            let _ = write!(
                h,
                "{}<a href=\"{}\">{}</a>",
                if i > 0 { ", " } else { "" },
                esc(s),
                esc(s.trim_start_matches("portal/"))
            );
        }
        h.push_str("</p>");
    }
    h
}

/// Write `report.html` into a run directory from its files.
pub fn write(dir: &RunDir) -> Result<PathBuf, ReportError> {
    write_view(&RunView::load(dir)?)
}

/// Write `report.html` for a run that is finishing, from its summary and metrics in hand.
pub fn write_from(
    dir: &RunDir,
    summary: &Summary,
    metrics: &Metrics,
) -> Result<PathBuf, ReportError> {
    write_view(&RunView::with(dir, summary.clone(), metrics.clone()))
}

fn write_view(run: &RunView) -> Result<PathBuf, ReportError> {
    let html = render(run)?;
    let path = run.dir.report_html();
    crate::sys::fsio::write_atomic(&path, html.as_bytes()).map_err(|source| {
        ReportError::Write {
            path: path.clone(),
            source,
        }
    })?;
    Ok(path)
}
