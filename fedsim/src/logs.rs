//! Structured logs: every process writes JSON lines (time, level, phase, round, site); the
//! controller also talks to people on stderr. After a run, all logs merge into one timeline.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// A line another program printed, as log text: terminal escapes (colours), carriage returns
/// and other controls removed, trailing space trimmed. A VM's console and a platform's
/// processes are logged through it.
pub fn plain_text(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for n in chars.by_ref() {
                        if n.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
            }
            '\r' => {}
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.trim_end().to_string()
}

/// A log line for a line another program printed, stamped now: `timestamp`, `level`, `message`;
/// the caller adds the fields that say where it came from.
pub fn stamped(level: &str, message: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert(
        "timestamp".into(),
        chrono::Utc::now()
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            .into(),
    );
    m.insert("level".into(), level.into());
    m.insert("message".into(), message.into());
    m
}

/// A line another program printed, as one JSON log line whose `process` is `what` (None for a
/// line with nothing on it). The level is the one the line states (`ERROR`, `WARNING`, as Flower
/// and uvicorn print them), else info. The platform's processes here and on the sites log so.
pub fn program_line(what: &str, line: &str) -> Option<serde_json::Value> {
    let line = plain_text(line);
    let text = line.trim();
    if text.is_empty() {
        return None;
    }
    let mut v = stamped(level_of(text), text);
    v.insert("process".into(), what.into());
    Some(serde_json::Value::Object(v))
}

/// The level a program's line states, else info.
fn level_of(line: &str) -> &'static str {
    if line.starts_with("ERROR") || line.contains(" ERROR ") || line.starts_with("Traceback") {
        "ERROR"
    } else if line.starts_with("WARNING") || line.contains(" WARNING ") {
        "WARN"
    } else {
        "INFO"
    }
}

/// A milestone in a site's (or the coordinator's) life that the merged log's clock correction
/// and the report's timeline rely on. Logged as the `milestone` field next to a human message,
/// so rewording the message changes nothing; matched as this enum, one definition for both ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Milestone {
    /// The agent has its Welcome: it belongs to the run.
    Connected,
    /// The agent has loaded (and coded) its data.
    DataLoaded,
    /// The agent computed its answer to a round (with `compute_secs`).
    RoundComputed,
    /// The coordinator accepted a site (with `site`).
    SiteJoined,
    /// A site sent a release (with `round`, `statistics`, `numbers`, `bytes`, `min_count`,
    /// `masked`): the release audit's record.
    Released,
    /// The coordinator aggregated a round (with `round` and `wall_secs`).
    RoundAggregated,
}

impl Milestone {
    pub const fn as_str(self) -> &'static str {
        match self {
            Milestone::Connected => "connected",
            Milestone::DataLoaded => "data_loaded",
            Milestone::RoundComputed => "round_computed",
            Milestone::SiteJoined => "site_joined",
            Milestone::Released => "released",
            Milestone::RoundAggregated => "round_aggregated",
        }
    }
}

impl std::fmt::Display for Milestone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of a JSON log as fedsim writes it (tracing's JSON with flattened fields), with
/// `source` added by the merge. The fields every line may have are typed; the rest stay in
/// `fields`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogLine {
    pub timestamp: String,
    #[serde(default)]
    pub level: String,
    /// `controller`, a site's name, or `<site>/console`.
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub milestone: Option<Milestone>,
    #[serde(flatten)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl LogLine {
    /// A field as text (strings as they are, other values as JSON).
    pub fn text(&self, name: &str) -> Option<String> {
        self.fields.get(name).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    pub fn number(&self, name: &str) -> Option<f64> {
        self.fields.get(name).and_then(|v| v.as_f64())
    }

    pub fn time(&self) -> Option<chrono::DateTime<chrono::FixedOffset>> {
        chrono::DateTime::parse_from_rfc3339(&self.timestamp).ok()
    }

    pub fn is_problem(&self) -> bool {
        matches!(self.level.as_str(), "ERROR" | "WARN")
    }
}

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

/// A site whose clock is off by more than this from the controller's has its lines moved onto
/// the controller's clock in the merged log.
const SKEW: f64 = 0.05;

/// Put every site's lines on the controller's clock. A VM's clock can be seconds off, which put
/// its lines out of order: the offset is measured where both ends log the same moment (the
/// controller's `SiteJoined` milestone as it sends the Welcome, the agent's `Connected` as it
/// reads it; the transfer between is milliseconds). A corrected line keeps its own time in
/// `site_timestamp` and the offset in `clock_offset_secs`.
fn correct_clocks(lines: &mut [(String, usize, serde_json::Value)]) {
    use chrono::{DateTime, SecondsFormat, Utc};
    let parse = |t: &str| {
        DateTime::parse_from_rfc3339(t)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    };
    let joined: std::collections::HashMap<String, DateTime<Utc>> = lines
        .iter()
        .filter(|(_, _, v)| {
            v["source"] == "controller" && milestone(v) == Some(Milestone::SiteJoined)
        })
        .filter_map(|(ts, _, v)| Some((v["site"].as_str()?.to_string(), parse(ts)?)))
        .collect();
    let mut offsets: std::collections::HashMap<String, chrono::Duration> = Default::default();
    for (ts, _, v) in lines.iter() {
        let Some(source) = v["source"].as_str() else {
            continue;
        };
        if milestone(v) != Some(Milestone::Connected) || offsets.contains_key(source) {
            continue;
        }
        if let (Some(at_site), Some(at_controller)) = (parse(ts), joined.get(source)) {
            offsets.insert(source.to_string(), at_site - *at_controller);
        }
    }
    for (ts, _, v) in lines.iter_mut() {
        let Some(offset) = v["source"].as_str().and_then(|s| offsets.get(s)).copied() else {
            continue;
        };
        let secs = offset.num_microseconds().unwrap_or(0) as f64 / 1e6;
        if secs.abs() <= SKEW {
            continue;
        }
        if let Some(t) = parse(ts) {
            let fixed = (t - offset).to_rfc3339_opts(SecondsFormat::Micros, true);
            if let Some(obj) = v.as_object_mut() {
                obj.insert("site_timestamp".into(), ts.clone().into());
                obj.insert("clock_offset_secs".into(), secs.into());
                obj.insert("timestamp".into(), fixed.clone().into());
            }
            *ts = fixed;
        }
    }
}

/// The milestone a raw log line marks, if any.
pub fn milestone(v: &serde_json::Value) -> Option<Milestone> {
    serde_json::from_value(v.get("milestone")?.clone()).ok()
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
    correct_clocks(&mut lines);
    // RFC 3339 UTC timestamps of one format sort as text; ties keep file order.
    lines.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut w = Vec::new();
    for (_, _, v) in &lines {
        serde_json::to_writer(&mut w, v)?;
        w.push(b'\n');
    }
    crate::sys::fsio::write_atomic(out, &w)?;
    Ok(lines.len())
}

#[cfg(test)]
mod clock_tests {
    use super::*;

    /// A site whose clock runs 30 s ahead (a VM's) is put back on the controller's clock: its
    /// round comes after the join and before the controller aggregates it.
    #[test]
    fn a_skewed_sites_lines_are_put_on_the_controllers_clock() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("controller.jsonl"),
            "{\"timestamp\":\"2026-01-01T10:00:00.000000Z\",\"message\":\"site joined\",\"milestone\":\"site_joined\",\"site\":\"site-1\"}\n{\"timestamp\":\"2026-01-01T10:00:01.500000Z\",\"message\":\"round aggregated\"}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("site-1.jsonl"),
            "{\"timestamp\":\"2026-01-01T10:00:30.010000Z\",\"message\":\"connected to coordinator\",\"milestone\":\"connected\"}\n{\"timestamp\":\"2026-01-01T10:00:31.000000Z\",\"message\":\"round computed\"}\n",
        )
        .unwrap();
        let sources = [
            (
                "controller".to_string(),
                dir.path().join("controller.jsonl"),
            ),
            ("site-1".to_string(), dir.path().join("site-1.jsonl")),
        ];
        merge(&sources, &dir.path().join("merged.jsonl")).unwrap();
        let merged = std::fs::read_to_string(dir.path().join("merged.jsonl")).unwrap();
        let order: Vec<String> = merged
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["message"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(
            order,
            [
                "site joined",
                "connected to coordinator",
                "round computed",
                "round aggregated"
            ]
        );
        assert!(merged.contains("\"clock_offset_secs\":30.01"), "{merged}");
        assert!(merged.contains("\"site_timestamp\":\"2026-01-01T10:00:31.000000Z\""));
    }
}
