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
    let shares: Vec<String> = p
        .sites
        .iter()
        .map(|site| match &site.columns {
            Some(c) => format!("{} columns", c.len()),
            None => format!("{} rows", site.rows(&p)),
        })
        .collect();
    let dropped = p.frame.rows() - p.complete.len();
    let rows = if dropped > 0 {
        format!(
            "{} complete rows ({dropped} incomplete dropped)",
            p.complete.len()
        )
    } else {
        format!("{} rows", p.frame.rows())
    };
    // Past a dozen sites, the range of their shares, not a line of a thousand.
    let shares = if shares.len() > 12 {
        let mut sorted = shares.clone();
        sorted.sort_by_key(|x| x.split(' ').next().and_then(|n| n.parse::<usize>().ok()));
        format!("from {} to {}", sorted[0], sorted[sorted.len() - 1])
    } else {
        shares.join(", ")
    };
    println!(
        "{}: ok ({} on {rows}, {} features; {} sites: {shares})",
        config.display(),
        s.algorithm.kind.as_str(),
        p.analysis().features.len(),
        p.sites.len(),
    );
    Exit::Succeeded
}
