//! `fedsim validate`: the scenario and its data checked, nothing written.

use super::{Exit, ScenarioArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    scenario: ScenarioArgs,
}

pub fn exec(a: Args) -> Exit {
    let planned = a
        .scenario
        .load()
        .and_then(|(config, s)| fedsim::run::plan(&s, None, true).map(|p| (config, s, p.plan)));
    let (config, s, p) = match planned {
        Ok(x) => x,
        Err(e) => return super::fail(&e),
    };
    let first = p.first();
    let shares: Vec<String> = p
        .sites()
        .iter()
        .map(|site| match &site.columns {
            Some(c) => format!("{} columns", c.len()),
            None => format!("{} rows", site.rows(first)),
        })
        .collect();
    // Past a dozen sites, the range of their shares, not a line of a thousand.
    let shares = if shares.len() > 12 {
        let mut sorted = shares.clone();
        sorted.sort_by_key(|x| x.split(' ').next().and_then(|n| n.parse::<usize>().ok()));
        format!("from {} to {}", sorted[0], sorted[sorted.len() - 1])
    } else {
        shares.join(", ")
    };
    let what = |plan: &fedsim::plan::Plan| {
        let dropped = plan.frame.rows() - plan.complete.len();
        let rows = if dropped > 0 {
            format!(
                "{} complete rows ({dropped} incomplete dropped)",
                plan.complete.len()
            )
        } else {
            format!("{} rows", plan.frame.rows())
        };
        // A platform's App is the analysis; `external` is only its pooled counterpart.
        let kind = match &s.platform {
            Some(p) => format!(
                "the Flower App {}",
                p.app.file_name().unwrap_or_default().to_string_lossy()
            ),
            None => plan.config.kind().as_str().to_string(),
        };
        format!(
            "{kind} on {rows}, {} features",
            plan.analysis().features.len()
        )
    };
    if !p.named {
        say!(
            "{}: ok ({}; {} sites: {shares})",
            config.display(),
            what(first),
            p.sites().len(),
        );
        predict(&s, &p);
        return Exit::Succeeded;
    }
    say!(
        "{}: ok ({} analyses on {} sites: {shares})",
        config.display(),
        p.analyses.len(),
        p.sites().len(),
    );
    for plan in &p.analyses {
        say!("  {}: {}", plan.name, what(plan));
    }
    predict(&s, &p);
    Exit::Succeeded
}

/// The sites' links and availability, grouped by what they are, and the clock they run on.
fn conditions(s: &fedsim::scenario::Scenario) {
    if s.clock.simulated() {
        say!(
            "clock: simulated, from {} (the run waits for nothing; the study is projected)",
            s.clock.start().to_rfc3339()
        );
    }
    let names = s.site_names();
    let groups = |describe: &dyn Fn(&str) -> Option<String>| {
        let mut by: Vec<(String, Vec<&str>)> = Vec::new();
        for n in &names {
            if let Some(d) = describe(n) {
                match by.iter_mut().find(|(x, _)| *x == d) {
                    Some((_, v)) => v.push(n),
                    None => by.push((d, vec![n])),
                }
            }
        }
        by
    };
    let sites = |v: &[&str]| match v {
        [one] => one.to_string(),
        _ if v.len() == names.len() => format!("all {} sites", v.len()),
        _ if v.len() > 4 => format!("{} sites", v.len()),
        _ => v.join(", "),
    };
    for (d, v) in groups(&|n| s.link_of(n).map(|l| l.describe())) {
        say!("  link of {}: {d}", sites(&v));
    }
    for (d, v) in groups(&|n| s.availability_of(n).map(|a| a.describe())) {
        say!("  availability of {}: {d}", sites(&v));
    }
}

/// Under `[privacy.dp]`: each site's budget over the run's rounds, and what the noise is
/// predicted to cost each coefficient, before anything starts.
fn predict_noise(s: &fedsim::scenario::Scenario, p: &fedsim::plan::Study) {
    let Some(spec) = &s.privacy.dp else { return };
    let Ok(rounds) = fedsim::dp::run_rounds(&p.configs()) else {
        return;
    };
    let budget = fedsim::dp::Budget::new(
        spec.mechanism,
        spec.epsilon,
        spec.delta.unwrap_or(0.0),
        rounds,
    );
    say!(
        "differential privacy ({}): each site spends epsilon = {} over the run's {rounds} rounds, {} = {:.3e} each",
        spec.mechanism.as_str(),
        spec.epsilon,
        match spec.mechanism {
            fedsim::scenario::Mechanism::Gaussian => "rho",
            fedsim::scenario::Mechanism::Laplace => "epsilon",
        },
        budget.total / rounds as f64
    );
    let sites: Vec<String> = p.sites().iter().map(|s| s.name.clone()).collect();
    for plan in &p.analyses {
        let pooled = plan.pooled().map_err(|e| e.to_string()).and_then(|d| {
            fedsim::baseline::compute(&plan.analysis(), &d).map_err(|e| e.to_string())
        });
        let cost = pooled.and_then(|pooled| {
            fedsim::dp::predict::predict(plan, &sites, spec, rounds, &pooled).map(|c| (c, pooled))
        });
        match cost {
            Ok((cost, pooled)) => {
                for (term, value) in pooled.terms.iter().zip(&pooled.coef) {
                    if let Some(t) = cost.term(&format!("coef[{term}]")) {
                        say!(
                            "  {} coef[{term}] = {value:.6e}: the noise's sd {:.3e}, clipping bias {:.3e}, bound {:.3e}",
                            plan.name,
                            t.sd,
                            t.bias,
                            t.bound
                        );
                    }
                }
            }
            Err(e) => say!("  {}: the noise's cost cannot be predicted: {e}", plan.name),
        }
    }
}

/// With disclosure rules: each site's verdict on each analysis, predicted from the planned
/// partition by the checks the sites run (see `fedsim::disclosure`).
fn predict(s: &fedsim::scenario::Scenario, p: &fedsim::plan::Study) {
    conditions(s);
    predict_noise(s, p);
    if !s.privacy.any() {
        return;
    }
    say!(
        "disclosure rules (on_refusal = {}): what each site would release",
        match s.privacy.on_refusal {
            fedsim::scenario::OnRefusal::Fail => "fail",
            fedsim::scenario::OnRefusal::Continue => "continue",
        }
    );
    for (plan, predicted) in p
        .analyses
        .iter()
        .zip(fedsim::disclosure::predict(p, &s.privacy))
    {
        let Some(sites) = predicted else {
            say!(
                "  {}: not predicted (an external algorithm releases what its program sends)",
                plan.name
            );
            continue;
        };
        for site in sites {
            let rules = fedsim::disclosure::encode(&s.privacy.rules_of(&site.site));
            match site.refusals.as_slice() {
                [] => say!(
                    "  {} {}: passes ({})",
                    plan.name,
                    site.site,
                    if rules.is_empty() {
                        "no rules".into()
                    } else {
                        rules
                    }
                ),
                refusals => {
                    let when = match site.round {
                        0 => "at load".to_string(),
                        r => format!("in its round {r}"),
                    };
                    for r in refusals {
                        say!(
                            "  {} {}: refuses {when}: {} = {}: {}",
                            plan.name,
                            site.site,
                            r.rule,
                            r.threshold,
                            r.statistic
                        );
                    }
                }
            }
        }
    }
}
