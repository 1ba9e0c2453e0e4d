//! Structured logs: every process writes JSON lines (time, level, phase, round, site); the
//! controller also talks to people on stderr. After a run, all logs merge into one timeline.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The controller's JSON log file, set once the run directory exists.
static RUN_LOG: Mutex<Option<File>> = Mutex::new(None);

#[derive(Clone, Copy)]
struct RunLog;

impl Write for RunLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match RUN_LOG.lock().ok().as_mut().and_then(|g| g.as_mut()) {
            Some(f) => f.write(buf),
            None => Ok(buf.len()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match RUN_LOG.lock().ok().as_mut().and_then(|g| g.as_mut()) {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl<'a> MakeWriter<'a> for RunLog {
    type Writer = RunLog;
    fn make_writer(&'a self) -> Self::Writer {
        RunLog
    }
}

fn filter(default: &str) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default))
}

/// Controller logging: human lines on stderr (level from `-v`/`--quiet`/`RUST_LOG`), JSON to the run log.
pub fn init_controller(verbose: u8, quiet: bool) {
    // At a terminal the progress lines tell the story; the log adds only warnings and errors.
    let bars = crate::progress::wanted(!quiet);
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) if bars => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    // Colours only for a terminal: piped into a file or CI log they are noise.
    let human = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .compact()
        .with_filter(if verbose > 0 || quiet || bars {
            EnvFilter::new(level)
        } else {
            filter(level)
        });
    let json = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(RunLog)
        .with_filter(EnvFilter::new("info"));
    let _ = tracing_subscriber::registry()
        .with(human)
        .with(json)
        .try_init();
}

/// Start writing the controller's JSON log to `path`.
pub fn attach(path: &Path) -> std::io::Result<()> {
    let f = File::create(path)?;
    *RUN_LOG.lock().expect("log lock") = Some(f);
    Ok(())
}

/// Stop writing the run log (flushes and closes it).
pub fn detach() {
    if let Ok(mut g) = RUN_LOG.lock() {
        if let Some(mut f) = g.take() {
            let _ = f.flush();
        }
    }
}

/// Agent logging: JSON lines into `path` (in the site's own directory) and plain lines on stderr.
pub fn init_agent(path: &Path) -> std::io::Result<()> {
    let file = File::create(path)?;
    let json = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(Mutex::new(file))
        .with_filter(filter("info"));
    let plain = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .with_filter(filter("warn"));
    let _ = tracing_subscriber::registry()
        .with(json)
        .with(plain)
        .try_init();
    Ok(())
}

/// Merge JSON-lines logs into one file ordered by time; each line gains `"source"`.
/// Returns the number of lines written.
pub fn merge(sources: &[(String, std::path::PathBuf)], out: &Path) -> std::io::Result<usize> {
    let mut lines: Vec<(String, usize, serde_json::Value)> = Vec::new();
    for (source, path) in sources {
        let Ok(f) = File::open(path) else { continue };
        for line in BufReader::new(f).lines() {
            let line = line?;
            let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let ts = v
                .get("timestamp")
                .and_then(|t| t.as_str())
                .unwrap_or("")
                .to_string();
            if let Some(obj) = v.as_object_mut() {
                obj.insert("source".into(), source.clone().into());
            }
            let seq = lines.len();
            lines.push((ts, seq, v));
        }
    }
    // RFC 3339 UTC timestamps of one format sort as text; ties keep file order.
    lines.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut w = Vec::new();
    for (_, _, v) in &lines {
        serde_json::to_writer(&mut w, v)?;
        w.push(b'\n');
    }
    crate::fsio::write_atomic(out, &w)?;
    Ok(lines.len())
}

/// Merge the controller's and every site's log of a run into `logs/merged.jsonl`.
pub fn merge_run(logs_dir: &Path, sites: &[String]) -> std::io::Result<usize> {
    let mut sources = vec![("controller".to_string(), logs_dir.join("controller.jsonl"))];
    sources.extend(
        sites
            .iter()
            .map(|s| (s.clone(), logs_dir.join(format!("{s}.jsonl")))),
    );
    // A VM's serial console, where there is one (provider "vm"): boot problems in their place.
    sources.extend(sites.iter().map(|s| {
        (
            format!("{s}/console"),
            logs_dir.join(format!("{s}.console.jsonl")),
        )
    }));
    merge(&sources, &logs_dir.join("merged.jsonl"))
}

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Scenario(#[from] crate::scenario::ScenarioError),
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    #[error(transparent)]
    Fleet(#[from] crate::fleet::FleetError),
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// `fedsim logs RUN_DIR`: pull every site's log again (over SSH for remote sites) and re-merge.
pub fn pull_again(dir: &Path, agent_exe: &Path) -> Result<usize, PullError> {
    use crate::fleet::FleetError;
    let scenario = crate::scenario::Scenario::load(&dir.join("scenario.toml"))?;
    let plan = crate::rundir::PlanFile::load(dir)?;
    let names: Vec<String> = plan.sites.iter().map(|s| s.name.clone()).collect();
    let logs_dir = dir.join("logs");
    let io = |source| PullError::Io {
        path: logs_dir.clone(),
        source,
    };
    std::fs::create_dir_all(&logs_dir).map_err(io)?;
    if scenario.fleet.provider == crate::scenario::Provider::Local {
        for n in &names {
            let src = dir.join("sites").join(n).join("agent.jsonl");
            std::fs::copy(&src, logs_dir.join(format!("{n}.jsonl"))).map_err(|e| {
                FleetError::Logs {
                    site: n.clone(),
                    reason: format!("{}: {e}", src.display()),
                }
            })?;
        }
    } else {
        let mut fleet = crate::fleet::for_scenario(&scenario, dir, agent_exe, false)?;
        fleet.collect_logs(&logs_dir)?;
    }
    merge_run(&logs_dir, &names).map_err(io)
}
