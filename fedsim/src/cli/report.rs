//! `fedsim report`: a run's page written again, or one table across several runs.

use std::path::PathBuf;

use fedsim::report::ReportError;
use fedsim::rundir::RunDir;

use super::Exit;

#[derive(clap::Args)]
pub struct Args {
    /// Run directories.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// Compare the runs in one table and plot (written to --out, default compare.html).
    #[arg(long)]
    compare: bool,
    /// With --compare: the page to write (default compare.html).
    #[arg(long)]
    out: Option<PathBuf>,
    /// With --compare: plot the difference and the time against this scenario key
    /// (repeatable), e.g. --by partition.sites.
    #[arg(long)]
    by: Vec<String>,
    /// With --compare: replace --out if it exists.
    #[arg(long)]
    force: bool,
}

pub fn exec(a: Args) -> Exit {
    // An option that would be ignored is refused: people would believe it took effect.
    let misplaced = [
        (a.out.is_some(), "--out"),
        (!a.by.is_empty(), "--by"),
        (a.force, "--force"),
    ]
    .into_iter()
    .find(|(given, _)| *given && !a.compare);
    if let Some((_, option)) = misplaced {
        let e = ReportError::Usage(format!(
            "{option} applies to --compare (did you mean `fedsim report --compare {option} ...`?); a single run's report is always RUN_DIR/report.html"
        ));
        eprintln!("error: {e}");
        return Exit::BadInput;
    }
    let result = if a.compare {
        let path = a.out.unwrap_or_else(|| PathBuf::from("compare.html"));
        let exists =
            (path.exists() && !a.force).then(|| ReportError::Exists { path: path.clone() });
        exists
            .map_or(Ok(()), Err)
            .and_then(|()| fedsim::report::compare(&a.runs, &a.by))
            .and_then(|html| {
                fedsim::sys::fsio::write_atomic(&path, html.as_bytes())
                    .map(|()| vec![path.clone()])
                    .map_err(|source| ReportError::Write { path, source })
            })
    } else {
        a.runs
            .iter()
            .map(|r| fedsim::report::write(&RunDir::open(r)))
            .collect()
    };
    match result {
        Ok(paths) => {
            for p in paths {
                say!("{}", p.display());
            }
            Exit::Succeeded
        }
        Err(e) => {
            eprintln!("error: {e}");
            Exit::BadInput
        }
    }
}
