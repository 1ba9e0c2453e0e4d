//! `fedsim probe`: the differencing attack on each analysis of a scenario, from its planned
//! partition, nothing started or written (see `fedsim::probe`).

use super::{Exit, ScenarioArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    scenario: ScenarioArgs,
    /// The site a record is taken out of (default: the first).
    #[arg(long)]
    site: Option<String>,
    /// The findings as JSON on stdout.
    #[arg(long)]
    json: bool,
}

pub fn exec(a: Args) -> Exit {
    let planned = a.scenario.load().and_then(|(_, s)| {
        fedsim::run::plan(&s, None, false).map(|p| (p.plan, s.privacy.dp.clone()))
    });
    let (study, dp) = match planned {
        Ok(p) => p,
        Err(e) => return super::fail(&e),
    };
    let probes = match fedsim::probe::probe(&study, a.site.as_deref(), dp.as_ref()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::BadInput;
        }
    };
    if a.json {
        say!(
            "{}",
            serde_json::to_string_pretty(&probes).unwrap_or_default()
        );
        return Exit::Succeeded;
    }
    for p in &probes {
        say!(
            "{}: one record of {} (row {} of the data) taken out; rounds compared: {:?}",
            p.analysis,
            p.site,
            p.row,
            p.compared
        );
        for (view, words) in [
            (
                "site",
                format!("{}'s own reply (no secure aggregation)", p.site),
            ),
            (
                "sum",
                "the sum over the sites (all secure aggregation shows)".to_string(),
            ),
        ] {
            let shown = p.exposed(view);
            if shown.is_empty() {
                say!(
                    "  {words}: shows none of its {} values exactly",
                    p.values.len()
                );
                continue;
            }
            say!(
                "  {words}: shows {} of its {} values exactly: {}",
                shown.len(),
                p.values.len(),
                shown.join(", ")
            );
            let mut examples: Vec<String> = Vec::new();
            for e in p.exposures.iter().filter(|e| e.view == view) {
                if !examples
                    .iter()
                    .any(|x| x.ends_with(&format!("= {}", e.value)))
                {
                    examples.push(format!("round {} {} = {}", e.round, e.quantity, e.value));
                }
            }
            say!("    {}", examples.join("; "));
        }
    }
    Exit::Succeeded
}
