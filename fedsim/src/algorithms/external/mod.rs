//! The user's own algorithm, in any language: three commands that each read one JSON object on
//! stdin and write one on stdout (protocol version 1, docs/external-protocol.md).
//!
//! - `aggregate` (coordinator, in `workdir`): `{"round", "replies", "state"}` in;
//!   `{"request", "state"}` (another round) or `{"result": {...}}` (done) out. Round 0 has no
//!   replies and a null state.
//! - `local` (each site, in its own directory; `FEDSIM_DATA`, `FEDSIM_SITE`, `FEDSIM_ROUND`):
//!   `{"round", "request"}` in, its reply out.
//! - `pooled` (once, on the pooled data): `{}` in, `{"result": {...}}` out, with the same names.
//!
//! Each call is a process of its own, in a process group of its own, killed if fedsim goes away
//! or the call outlives its deadline. Its stderr goes to the log line by line; its last lines
//! are kept for the error when it fails. Under secure aggregation a reply is `{"sum": {...}}`
//! only; its numbers are masked, and the aggregate receives one reply holding their total.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{AlgoError, Estimates, Runner, Step};

mod persistent;
pub use persistent::Session;

/// What every side needs to know of an external algorithm.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExternalSpec {
    pub local: Vec<String>,
    pub aggregate: Vec<String>,
    pub pooled: Vec<String>,
    /// Files shipped to each site, by their path relative to `workdir`.
    pub files: Vec<String>,
    /// Where aggregate and pooled run (the controller's side only).
    pub workdir: PathBuf,
    pub max_rounds: usize,
    pub max_reply_bytes: usize,
    /// How long the aggregate and pooled calls may take.
    pub timeout_secs: f64,
    /// Local and aggregate steps stay up for the analysis, a line per call ([`Session`]).
    #[serde(default)]
    pub persistent: bool,
}

/// Why a call failed; each says which command, and what it said on stderr.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{role} command {program:?} could not start: {reason}")]
    Start {
        role: &'static str,
        program: String,
        reason: String,
    },
    #[error("{role} step exited with code {code}{}", tail_text(stderr))]
    Exit {
        role: &'static str,
        code: i32,
        stderr: String,
    },
    #[error("{role} step was killed by signal {signal}{}", tail_text(stderr))]
    Signal {
        role: &'static str,
        signal: i32,
        stderr: String,
    },
    #[error(
        "{role} step wrote invalid JSON ({reason}); it began {head:?}{}",
        tail_text(stderr)
    )]
    BadJson {
        role: &'static str,
        reason: String,
        head: String,
        stderr: String,
    },
    #[error("{role} step wrote more than {limit} bytes (max_reply_bytes); it was stopped")]
    TooLarge { role: &'static str, limit: usize },
    #[error(
        "{role} step took longer than {secs:.1} s; it was stopped{}",
        tail_text(stderr)
    )]
    Timeout {
        role: &'static str,
        secs: f64,
        stderr: String,
    },
    #[error("{role} step cancelled")]
    Cancelled { role: &'static str },
    #[error(
        "{role} step (persistent) ended without answering: {how}{}",
        tail_text(stderr)
    )]
    Ended {
        role: &'static str,
        how: String,
        stderr: String,
    },
}

fn tail_text(stderr: &str) -> String {
    if stderr.trim().is_empty() {
        String::new()
    } else {
        format!("; stderr: {}", stderr.trim())
    }
}

/// One call's answer and how long the process ran.
#[derive(Debug)]
pub struct Answer {
    pub output: Value,
    pub bytes: Vec<u8>,
    pub secs: f64,
}

/// Process groups of the steps running now, so that whoever ends (an agent told to stop) can
/// take them along: a step's own children do not get its parent-death signal.
static RUNNING: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Kill every step still running, with all it started: its reaper is asked first (it kills the
/// descendants that left the step's group), then the group goes.
pub fn kill_running() {
    if let Ok(groups) = RUNNING.lock() {
        for pgid in groups.iter() {
            stop_group(*pgid, None);
        }
    }
}

/// Stop a step's process group whose leader is its reaper (or the step itself, without one):
/// SIGTERM to the reaper, which kills every descendant, even detached ones, and exits; then,
/// after at most a second (or at once when `child` says it has exited), SIGKILL to the group.
fn stop_group(pgid: i32, mut child: Option<&mut std::process::Child>) {
    // SAFETY: signalling a process (group) this process started; no memory is touched.
    unsafe {
        libc::kill(pgid, libc::SIGTERM);
    }
    if crate::sys::reaper::active() {
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until {
            let gone = match child.as_mut() {
                Some(c) => c.try_wait().map_or(true, |s| s.is_some()),
                // SAFETY: signal 0 only asks whether the process is there.
                None => (unsafe { libc::kill(pgid, 0) }) != 0,
            };
            if gone {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // SAFETY: as above.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// Removes a step's group from [`RUNNING`] when its call returns, and kills what is left of it.
struct Registered(i32);

impl Drop for Registered {
    fn drop(&mut self) {
        // SAFETY: signalling the step's own process group.
        unsafe {
            libc::kill(-self.0, libc::SIGKILL);
        }
        if let Ok(mut groups) = RUNNING.lock() {
            groups.retain(|g| *g != self.0);
        }
    }
}

/// The last lines of a stream, bounded.
const TAIL_LINES: usize = 12;
const TAIL_CHARS: usize = 2000;

/// One role's command, where it runs and what it is told in its environment.
pub struct Process<'a> {
    pub role: &'static str,
    pub cmd: &'a [String],
    pub cwd: &'a Path,
    /// The data file it reads (`FEDSIM_DATA`), if any.
    pub data: Option<&'a Path>,
    pub env: Vec<(&'static str, String)>,
}

/// A path as a program is given it: absolute, because the program runs in a directory of its
/// own (the site's, or `workdir`) where a path relative to ours would point elsewhere.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Start a step's process under the reaper, in its own process group, dying with the thread
/// that started it, its stdin, stdout and stderr piped; registered in [`RUNNING`] until the
/// returned guard drops.
fn spawn(p: &Process) -> Result<(std::process::Child, Registered), CallError> {
    let (role, cmd, env) = (p.role, p.cmd, &p.env);
    let program = cmd.first().cloned().unwrap_or_default();
    // Under `fedsim reap`, which leaves nothing of the step behind however it detaches.
    let mut command = crate::sys::reaper::command(&program, &cmd[1..]);
    command
        .current_dir(absolute(p.cwd))
        .envs(env.iter().map(|(k, v)| (k, v)));
    if let Some(data) = p.data {
        command.env("FEDSIM_DATA", absolute(data));
    }
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: prctl is async-signal-safe; the step dies with the thread that started it, so no
    // step outlives an agent or a controller that is killed.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().map_err(|e| CallError::Start {
        role,
        program: program.clone(),
        reason: e.to_string(),
    })?;
    let pgid = child.id() as i32;
    if let Ok(mut groups) = RUNNING.lock() {
        groups.push(pgid);
    }
    Ok((child, Registered(pgid)))
}

/// Log a step's stderr line by line, keeping its last lines in `tail` for an error.
fn log_stderr(
    role: &'static str,
    stderr: std::process::ChildStderr,
    tail: Arc<Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<()> {
    let span = tracing::Span::current();
    std::thread::spawn(move || {
        let _enter = span.enter();
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            tracing::info!(phase = "federate", step = role, "{line}");
            let mut t = tail.lock().expect("tail lock");
            t.push(line);
            if t.len() > TAIL_LINES {
                t.remove(0);
            }
        }
    })
}

/// Run a command with `input` on stdin and read one JSON value from stdout. `deadline`: kill
/// the process after that long; `cancelled`: polled, kills the process when it says so.
pub fn call(
    p: &Process,
    input: &Value,
    limit: usize,
    deadline: Option<Duration>,
    cancelled: &dyn Fn() -> bool,
) -> Result<Answer, CallError> {
    let role = p.role;
    let program = p.cmd.first().cloned().unwrap_or_default();
    let started = Instant::now();
    let (mut child, _registered) = spawn(p)?;
    let pgid = child.id() as i32;
    let body = serde_json::to_vec(input).unwrap_or_default();
    let mut stdin = child.stdin.take().expect("piped");
    let writer = std::thread::spawn(move || {
        // A step that exits without reading its input is its own business.
        let _ = stdin.write_all(&body);
    });
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let r = (&mut stdout).take(limit as u64 + 1).read_to_end(&mut out);
        // Drain the rest so the step is not blocked writing; it is stopped for its size anyway.
        let over = out.len() > limit;
        if over {
            let _ = std::io::copy(&mut stdout, &mut std::io::sink());
        }
        (r.map(|_| out), over)
    });
    let tail = Arc::new(Mutex::new(Vec::<String>::new()));
    let logger = log_stderr(role, child.stderr.take().expect("piped"), tail.clone());
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) => {}
            Err(e) => break Err(e),
        }
        if cancelled() {
            stop_group(pgid, Some(&mut child));
            let _ = child.wait();
            return Err(CallError::Cancelled { role });
        }
        if let Some(d) = deadline.filter(|d| started.elapsed() > *d) {
            stop_group(pgid, Some(&mut child));
            let _ = child.wait();
            let _ = logger.join();
            return Err(CallError::Timeout {
                role,
                secs: d.as_secs_f64(),
                stderr: joined(&tail),
            });
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let secs = started.elapsed().as_secs_f64();
    // Whatever the step left running in its group goes with it (its reaper has taken the rest).
    // SAFETY: signalling the step's own process group.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
    let _ = writer.join();
    let (out, over) = reader.join().unwrap_or((Ok(Vec::new()), false));
    let _ = logger.join();
    let stderr = joined(&tail);
    let status = status.map_err(|e| CallError::Start {
        role,
        program: program.clone(),
        reason: e.to_string(),
    })?;
    if over {
        return Err(CallError::TooLarge { role, limit });
    }
    if !status.success() {
        use std::os::unix::process::ExitStatusExt;
        return Err(match status.code() {
            Some(code) => CallError::Exit { role, code, stderr },
            None => CallError::Signal {
                role,
                signal: status.signal().unwrap_or(0),
                stderr,
            },
        });
    }
    let bytes = out.unwrap_or_default();
    let output: Value = serde_json::from_slice(&bytes).map_err(|e| CallError::BadJson {
        role,
        reason: e.to_string(),
        head: String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned(),
        stderr: stderr.clone(),
    })?;
    Ok(Answer {
        output,
        bytes,
        secs,
    })
}

fn joined(tail: &Mutex<Vec<String>>) -> String {
    let t = tail.lock().map(|t| t.join("\n")).unwrap_or_default();
    let skip = t.chars().count().saturating_sub(TAIL_CHARS);
    t.chars().skip(skip).collect()
}

/// A named result is a number, a list of numbers or a list of equally long lists of numbers.
fn check_shape(name: &str, v: &Value) -> Result<(), String> {
    let numbers = |v: &Value| v.as_array().is_some_and(|a| a.iter().all(Value::is_number));
    let bad = || {
        format!(
            "result {name:?} is not a number, a list of numbers, a list of equally long lists of numbers, or {{\"labels\": [...], \"values\": ...}}"
        )
    };
    let (values, labels) = match v {
        Value::Object(o) => {
            if let Some(k) = o.keys().find(|k| *k != "labels" && *k != "values") {
                return Err(format!(
                    "result {name:?}: unknown key {k:?}; a labelled result is {{\"labels\": [...], \"values\": ...}}"
                ));
            }
            (o.get("values").ok_or_else(bad)?, o.get("labels"))
        }
        v => (v, None),
    };
    let ok = match values {
        Value::Number(_) => labels.is_none(),
        Value::Array(a) if a.iter().all(Value::is_number) => true,
        Value::Array(a) => {
            a.iter().all(numbers)
                && a.iter()
                    .map(|r| r.as_array().map_or(0, Vec::len))
                    .collect::<std::collections::BTreeSet<_>>()
                    .len()
                    <= 1
        }
        _ => false,
    };
    if !ok {
        return Err(bad());
    }
    if let Some(labels) = labels {
        let shape = Labels::of(values);
        if Labels::read(labels, &shape).is_none() {
            return Err(format!(
                "result {name:?}: \"labels\" must be a list of {} strings{}",
                shape.rows,
                if shape.cols.is_some() {
                    " (the same for rows and columns of a square matrix), or [[row labels], [column labels]]"
                } else {
                    ""
                }
            ));
        }
    }
    Ok(())
}

/// The shape of a named result's values, and its labels: given by the algorithm, or the
/// 0-based positions (`mean[0]`, `cov[1,2]`), as indices in Python, numpy or JSON count.
struct Labels {
    rows: usize,
    cols: Option<usize>,
}

impl Labels {
    fn of(values: &Value) -> Labels {
        match values {
            Value::Array(rows) if rows.iter().any(Value::is_array) => Labels {
                rows: rows.len(),
                cols: Some(rows.first().and_then(Value::as_array).map_or(0, Vec::len)),
            },
            Value::Array(xs) => Labels {
                rows: xs.len(),
                cols: None,
            },
            _ => Labels {
                rows: 0,
                cols: None,
            },
        }
    }

    /// Row and column labels from `labels`, if it fits the shape.
    fn read(labels: &Value, shape: &Labels) -> Option<(Vec<String>, Vec<String>)> {
        let strings = |v: &Value, n: usize| -> Option<Vec<String>> {
            let a = v.as_array()?;
            let s: Vec<String> = a
                .iter()
                .map(|x| x.as_str().map(str::to_string))
                .collect::<Option<_>>()?;
            (s.len() == n).then_some(s)
        };
        match shape.cols {
            None => Some((strings(labels, shape.rows)?, Vec::new())),
            Some(cols) => {
                if let Some(both) = strings(labels, shape.rows).filter(|_| cols == shape.rows) {
                    return Some((both.clone(), both));
                }
                let pair = labels.as_array().filter(|a| a.len() == 2)?;
                Some((strings(&pair[0], shape.rows)?, strings(&pair[1], cols)?))
            }
        }
    }
}

/// The `result` object of an answer, checked.
pub fn parse_result(answer: &Value, role: &str) -> Result<BTreeMap<String, Value>, AlgoError> {
    let Some(Value::Object(result)) = answer.get("result") else {
        return Err(AlgoError::Protocol(format!(
            "{role} answered without a \"result\" object"
        )));
    };
    if result.is_empty() {
        return Err(AlgoError::Protocol(format!(
            "{role} returned an empty result"
        )));
    }
    result
        .iter()
        .map(|(k, v)| {
            check_shape(k, v).map_err(AlgoError::Protocol)?;
            Ok((k.clone(), v.clone()))
        })
        .collect()
}

/// The numbers of a named result in order, each with its name: `cov[age,bmi]` with labels,
/// else its 0-based position (`mean[0]`, `cov[1,2]`).
pub fn flatten(name: &str, v: &Value) -> Vec<(String, f64)> {
    let num = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let (values, given) = match v {
        Value::Object(o) => (o.get("values").unwrap_or(&Value::Null), o.get("labels")),
        v => (v, None),
    };
    let shape = Labels::of(values);
    let (rows, cols) = given
        .and_then(|l| Labels::read(l, &shape))
        .unwrap_or_else(|| {
            let count = |n: usize| (0..n).map(|i| i.to_string()).collect();
            (count(shape.rows), count(shape.cols.unwrap_or(0)))
        });
    match values {
        Value::Array(r) if shape.cols.is_some() => r
            .iter()
            .enumerate()
            .flat_map(|(i, row)| {
                let (rows, cols) = (&rows, &cols);
                row.as_array()
                    .into_iter()
                    .flatten()
                    .enumerate()
                    .map(move |(j, x)| (format!("{name}[{},{}]", rows[i], cols[j]), num(x)))
            })
            .collect(),
        Value::Array(xs) => xs
            .iter()
            .enumerate()
            .map(|(i, x)| (format!("{name}[{}]", rows[i]), num(x)))
            .collect(),
        x => vec![(name.to_string(), num(x))],
    }
}

/// A reply's numbers, depth first, for masking.
fn numbers(v: &Value, out: &mut Vec<f64>) -> Result<(), AlgoError> {
    match v {
        Value::Number(n) => out.push(n.as_f64().unwrap_or(f64::NAN)),
        Value::Array(a) => a.iter().try_for_each(|x| numbers(x, out))?,
        Value::Object(o) => o.values().try_for_each(|x| numbers(x, out))?,
        other => {
            return Err(AlgoError::Protocol(format!(
                "under secure aggregation a reply's \"sum\" holds numbers only, found {other}"
            )))
        }
    }
    Ok(())
}

/// The same shape with the numbers taken in order from `values`.
fn refill(v: &Value, values: &mut super::Values) -> Result<Value, AlgoError> {
    Ok(match v {
        Value::Number(_) => json!(values.one()?),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| refill(x, values))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| Ok((k.clone(), refill(x, values)?)))
                .collect::<Result<_, AlgoError>>()?,
        ),
        other => other.clone(),
    })
}

/// The `sum` of a reply, the only thing a reply may hold under secure aggregation.
fn summed(reply: &Value) -> Result<&Value, AlgoError> {
    match reply.as_object() {
        Some(o) if o.len() == 1 && o.contains_key("sum") => Ok(&o["sum"]),
        _ => Err(AlgoError::Protocol(
            "under secure aggregation a reply must be {\"sum\": {...}} and nothing else: anything beside the sum would reach the coordinator in clear".into(),
        )),
    }
}

fn decode(bytes: &[u8], what: &str) -> Result<Value, AlgoError> {
    serde_json::from_slice(bytes).map_err(|e| AlgoError::Protocol(format!("{what}: {e}")))
}

/// Set in a persistent step's environment: read a line per call until stdin ends.
pub const PERSISTENT_VAR: &str = "FEDSIM_PERSISTENT";

/// The coordinator's side: one aggregate call per round, its state carried between them.
pub struct External {
    spec: ExternalSpec,
    state: Value,
    round: usize,
    /// The aggregate process, when the steps are persistent (started at round 0).
    session: Option<Session>,
}

impl External {
    pub fn new(spec: ExternalSpec) -> External {
        External {
            spec,
            state: Value::Null,
            round: 0,
            session: None,
        }
    }

    fn call_aggregate(&mut self, replies: Vec<Value>) -> Result<Step<Vec<u8>>, AlgoError> {
        let input = json!({"round": self.round, "replies": replies, "state": self.state});
        let deadline = Some(Duration::from_secs_f64(self.spec.timeout_secs));
        let process = Process {
            role: "aggregate",
            cmd: &self.spec.aggregate,
            cwd: &self.spec.workdir,
            data: None,
            env: vec![("FEDSIM_ROUND", self.round.to_string())],
        };
        let answer = if self.spec.persistent {
            step_in_session(
                &mut self.session,
                process,
                self.spec.max_reply_bytes,
                &input,
                deadline,
                &crate::sys::cancel::requested,
            )
        } else {
            call(
                &process,
                &input,
                self.spec.max_reply_bytes,
                deadline,
                &crate::sys::cancel::requested,
            )
        }
        .map_err(|e| AlgoError::Numeric(e.to_string()))?;
        tracing::info!(
            phase = "federate",
            round = self.round,
            secs = answer.secs,
            "aggregate step ran"
        );
        let out = answer.output;
        if out.get("result").is_some() {
            let named = parse_result(&out, "aggregate")?;
            return Ok(Step::Done(Box::new(Estimates {
                named,
                iterations: Some(self.round),
                ..Default::default()
            })));
        }
        let Some(request) = out.get("request") else {
            return Err(AlgoError::Protocol(
                "aggregate answered neither {\"request\": ..., \"state\": ...} nor {\"result\": {...}}".into(),
            ));
        };
        if self.round >= self.spec.max_rounds {
            return Err(AlgoError::Numeric(format!(
                "the aggregate asked for round {} but max_rounds is {}",
                self.round + 1,
                self.spec.max_rounds
            )));
        }
        self.state = out.get("state").cloned().unwrap_or(Value::Null);
        Ok(Step::Next(serde_json::to_vec(request).unwrap_or_default()))
    }
}

impl Runner for External {
    fn local(&self, _: &[u8], _: &super::LocalData) -> Result<Vec<u8>, AlgoError> {
        Err(AlgoError::Protocol(
            "an external local step runs as a process at the site".into(),
        ))
    }

    fn start(&mut self) -> Result<Vec<u8>, AlgoError> {
        match self.call_aggregate(Vec::new())? {
            Step::Next(r) => Ok(r),
            Step::Done(_) => Err(AlgoError::Protocol(
                "the aggregate returned a result in round 0, before any site took part".into(),
            )),
        }
    }

    fn aggregate(&mut self, replies: Vec<Vec<u8>>) -> Result<Step<Vec<u8>>, AlgoError> {
        self.round += 1;
        let replies = replies
            .iter()
            .map(|r| decode(r, "a site's reply"))
            .collect::<Result<Vec<_>, _>>()?;
        self.call_aggregate(replies)
    }

    fn split(&self, reply: &[u8]) -> Result<(Vec<u8>, Vec<f64>), AlgoError> {
        let reply = decode(reply, "reply")?;
        let sum = summed(&reply)?;
        let mut values = Vec::new();
        numbers(sum, &mut values)?;
        let zeros = vec![0.0; values.len()];
        let shape = json!({"sum": refill(sum, &mut super::Values::new(&zeros))?});
        Ok((serde_json::to_vec(&shape).unwrap_or_default(), values))
    }

    fn join(&self, template: &[u8], values: &[f64]) -> Result<Vec<u8>, AlgoError> {
        let template = decode(template, "reply shape")?;
        let mut v = super::Values::new(values);
        let total = json!({"sum": refill(summed(&template)?, &mut v)?});
        v.done()?;
        Ok(serde_json::to_vec(&total).unwrap_or_default())
    }

    /// What counts a user's step releases is its own business: the agent counts the site's
    /// rows (the file the step reads).
    fn counts(
        &self,
        _: &[u8],
        _: &[u8],
        _: &super::LocalData,
    ) -> Result<Vec<(&'static str, f64)>, AlgoError> {
        Ok(Vec::new())
    }

    fn statistics(&self, reply: &[u8]) -> Result<String, AlgoError> {
        Ok(super::shape(&decode(reply, "reply")?))
    }

    fn json(&self, reply: &[u8]) -> Result<Value, AlgoError> {
        decode(reply, "reply")
    }
}

/// A call through the session in `session`, started with `process` first if there is none: a
/// persistent step's environment says so, and has no round (the round is in each input).
fn step_in_session(
    session: &mut Option<Session>,
    mut process: Process,
    limit: usize,
    input: &Value,
    deadline: Option<Duration>,
    cancelled: &dyn Fn() -> bool,
) -> Result<Answer, CallError> {
    if session.is_none() {
        process.env.retain(|(k, _)| *k != "FEDSIM_ROUND");
        process.env.push((PERSISTENT_VAR, "1".into()));
        *session = Some(Session::start(&process, limit)?);
    }
    session
        .as_mut()
        .expect("started above")
        .call(input, deadline, cancelled)
}

/// A site's local step for one round: the reply's bytes and the process's time. With
/// persistent steps, `session` keeps the site's process between rounds.
pub fn local_step(
    spec: &ExternalSpec,
    site_dir: &Path,
    data: &Path,
    site: &str,
    round: u32,
    request: &[u8],
    session: &mut Option<Session>,
) -> Result<(Vec<u8>, f64), String> {
    let request = decode(request, "request").map_err(|e| e.to_string())?;
    let process = Process {
        role: "local",
        cmd: &spec.local,
        cwd: site_dir,
        data: Some(data),
        env: vec![
            ("FEDSIM_SITE", site.to_string()),
            ("FEDSIM_ROUND", round.to_string()),
        ],
    };
    let input = json!({"round": round, "request": request});
    let answer = if spec.persistent {
        step_in_session(
            session,
            process,
            spec.max_reply_bytes,
            &input,
            None,
            &|| false,
        )
    } else {
        call(&process, &input, spec.max_reply_bytes, None, &|| false)
    }
    .map_err(|e| e.to_string())?;
    Ok((answer.bytes, answer.secs))
}

/// The baseline: the pooled command on the pooled data file.
pub fn pooled(spec: &ExternalSpec, data: &Path) -> Result<Estimates, AlgoError> {
    let answer = call(
        &Process {
            role: "pooled",
            cmd: &spec.pooled,
            cwd: &spec.workdir,
            data: Some(data),
            env: vec![],
        },
        &json!({}),
        spec.max_reply_bytes,
        Some(Duration::from_secs_f64(spec.timeout_secs)),
        &crate::sys::cancel::requested,
    )
    .map_err(|e| AlgoError::Numeric(e.to_string()))?;
    Ok(Estimates {
        named: parse_result(&answer.output, "pooled")?,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    fn run(script: &str, limit: usize, deadline: Option<f64>) -> Result<Answer, CallError> {
        call(
            &Process {
                role: "local",
                cmd: &sh(script),
                cwd: Path::new("."),
                data: None,
                env: vec![("FEDSIM_ROUND", "3".into())],
            },
            &json!({"x": 1}),
            limit,
            deadline.map(Duration::from_secs_f64),
            &|| false,
        )
    }

    fn session(script: &str, limit: usize) -> Session {
        Session::start(
            &Process {
                role: "local",
                cmd: &sh(script),
                cwd: Path::new("."),
                data: None,
                env: vec![],
            },
            limit,
        )
        .unwrap()
    }

    /// One process answers every call, a line each; what goes wrong in a call is named, and
    /// the session answers no more after it.
    #[test]
    fn a_session_answers_each_line_from_one_process() {
        // Counts its calls and says its pid: the same pid three times, the count going up.
        let mut s = session(
            "n=0; while read -r line; do n=$((n+1)); echo; echo \"{\\\"n\\\": $n, \\\"pid\\\": $$}\"; done",
            1000,
        );
        let answers: Vec<Value> = (0..3)
            .map(|_| s.call(&json!({"x": 1}), None, &|| false).unwrap().output)
            .collect();
        assert_eq!(
            answers
                .iter()
                .map(|a| a["n"].as_u64().unwrap())
                .collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert!(answers.iter().all(|a| a["pid"] == answers[0]["pid"]));
        drop(s);

        let mut s = session(
            "read -r line; head -c 5000 /dev/zero | tr '\\0' x; echo",
            1000,
        );
        let e = s.call(&json!({}), None, &|| false).unwrap_err();
        assert!(matches!(e, CallError::TooLarge { limit: 1000, .. }), "{e}");
        let again = s.call(&json!({}), None, &|| false).unwrap_err().to_string();
        assert!(again.contains("failed earlier"), "{again}");

        let mut s = session("read -r line; echo 'gone for good' >&2; exit 4", 1000);
        let e = s.call(&json!({}), None, &|| false).unwrap_err().to_string();
        assert!(
            e.contains("ended without answering")
                && e.contains("exit status: 4")
                && e.contains("gone for good"),
            "{e}"
        );

        let mut s = session("read -r line; sleep 30", 1000);
        let started = Instant::now();
        let e = s
            .call(&json!({}), Some(Duration::from_millis(200)), &|| false)
            .unwrap_err();
        assert!(matches!(e, CallError::Timeout { .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_step_reads_its_input_and_answers_json() {
        let a = run(
            "read l; echo \"{\\\"got\\\": $l, \\\"r\\\": $FEDSIM_ROUND}\"",
            1000,
            None,
        )
        .unwrap();
        assert_eq!(a.output, json!({"got": {"x": 1}, "r": 3}));
    }

    #[test]
    fn failures_are_named_with_their_stderr() {
        let e = run("echo 'no data here' >&2; exit 3", 1000, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("exited with code 3") && e.contains("no data here"),
            "{e}"
        );
        let e = run("echo '{oops'", 1000, None).unwrap_err().to_string();
        assert!(e.contains("invalid JSON") && e.contains("{oops"), "{e}");
        let e = run("head -c 5000 /dev/zero | tr '\\0' 1", 100, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than 100 bytes"), "{e}");
        let started = Instant::now();
        let e = run("sleep 30", 1000, Some(0.3)).unwrap_err().to_string();
        assert!(e.contains("longer than 0.3 s"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// Issue 19.9: numbers are named by their 0-based position, or by the labels the algorithm
    /// gives; labels that do not fit the shape are refused, naming the result.
    #[test]
    fn results_are_named_by_position_from_zero_or_by_their_labels() {
        let names = |v: Value| -> Vec<String> {
            check_shape("r", &v).unwrap();
            flatten("r", &v).into_iter().map(|x| x.0).collect()
        };
        assert_eq!(names(json!([1.0, 2.0])), ["r[0]", "r[1]"]);
        assert_eq!(
            names(json!([[1.0, 2.0], [3.0, 4.0]])),
            ["r[0,0]", "r[0,1]", "r[1,0]", "r[1,1]"]
        );
        assert_eq!(
            names(json!({"labels": ["a", "b"], "values": [1.0, 2.0]})),
            ["r[a]", "r[b]"]
        );
        assert_eq!(
            names(json!({"labels": ["a", "b"], "values": [[1.0, 2.0], [3.0, 4.0]]})),
            ["r[a,a]", "r[a,b]", "r[b,a]", "r[b,b]"]
        );
        assert_eq!(
            names(json!({"labels": [["x"], ["a", "b"]], "values": [[1.0, 2.0]]})),
            ["r[x,a]", "r[x,b]"]
        );
        for bad in [
            json!({"labels": ["a"], "values": [1.0, 2.0]}),
            json!({"labels": ["a", "b"], "values": [[1.0, 2.0]]}),
            json!({"labels": ["a"], "values": 3.0}),
            json!({"names": ["a"], "values": [1.0]}),
            json!({"labels": ["a"]}),
        ] {
            let e = check_shape("r", &bad).unwrap_err();
            assert!(e.contains("result \"r\""), "{e}");
        }
    }

    #[test]
    fn secure_replies_split_into_numbers_and_join_back() {
        let ext = External::new(ExternalSpec {
            local: vec![],
            aggregate: vec![],
            pooled: vec![],
            files: vec![],
            workdir: PathBuf::from("."),
            max_rounds: 3,
            max_reply_bytes: 1000,
            timeout_secs: 1.0,
            persistent: false,
        });
        let reply = br#"{"sum": {"n": 3, "s": [1.5, 2.5], "c": [[1, 2], [3, 4]]}}"#;
        let (shape, values) = ext.split(reply).unwrap();
        assert_eq!(values.len(), 7);
        let doubled: Vec<f64> = values.iter().map(|v| 2.0 * v).collect();
        let back: Value = serde_json::from_slice(&ext.join(&shape, &doubled).unwrap()).unwrap();
        assert_eq!(back["sum"]["s"], json!([3.0, 5.0]));
        assert_eq!(back["sum"]["c"][1], json!([6.0, 8.0]));
        assert!(ext.split(br#"{"sum": {"n": 1}, "site_mean": 2}"#).is_err());
    }
}
