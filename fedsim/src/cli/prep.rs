//! `fedsim prep`: plan and write each site's bundle, nothing more.

use std::path::PathBuf;

use super::{Exit, Global, ScenarioArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    scenario: ScenarioArgs,
    /// Where the bundles go (default runs/<name>-<UTC time>/); must be new or empty.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn exec(a: Args, g: &Global) -> Exit {
    let opts = match super::options(a.out, g) {
        Ok(o) => o,
        Err(exit) => return exit,
    };
    match a
        .scenario
        .load()
        .and_then(|(_, s)| fedsim::run::prep_only(&s, &opts))
    {
        Ok((dir, bundles)) => {
            for b in bundles.iter().filter(|_| !g.quiet) {
                eprintln!(
                    "{}: {} rows, data sha256 {}",
                    b.name,
                    b.rows,
                    &b.data_sha256[..12]
                );
            }
            say!("{}", dir.path().display());
            Exit::Succeeded
        }
        Err(e) => super::fail(&e),
    }
}
