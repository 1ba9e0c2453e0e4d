//! `persistent = true`: a step that stays up for the whole analysis instead of one process per
//! call. It reads one JSON object per line on stdin and answers each with one JSON object on
//! one line of stdout; the end of stdin tells it to exit. A one-shot call costs a process start
//! (for Python, most of a round); a session costs a line each way.
//!
//! What a one-shot call guarantees holds for each call of a session: its deadline, the cancel
//! flag, its size limit, its stderr's last lines in the error, and nothing of it left behind
//! (the process runs under the reaper, registered in [`RUNNING`](super::RUNNING), and is
//! stopped with its whole group when the session ends or a call fails). A session that failed
//! answers no more: the analysis has failed with it.

use std::io::{BufRead, BufReader, Write};
use std::process::Child;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{joined, log_stderr, spawn, stop_group, Answer, CallError, Process, Registered};

/// How often a waiting call looks at the cancel flag and its deadline.
const POLL: Duration = Duration::from_millis(2);
/// How long a step may take to exit once its stdin is closed, before it is stopped.
const GRACE: Duration = Duration::from_secs(1);

/// What the reading thread hands over: a whole line, or why there is none.
enum Line {
    Text(Vec<u8>),
    TooLarge,
    /// stdout ended (the step exited or closed it).
    End,
}

/// One step process kept up across calls.
pub struct Session {
    role: &'static str,
    limit: usize,
    child: Child,
    /// Lines for the writing thread, which holds stdin: a step that stops reading blocks that
    /// thread, never the caller, whose deadline still runs. Dropped to close stdin.
    to_step: Option<mpsc::Sender<Vec<u8>>>,
    lines: mpsc::Receiver<Line>,
    reader: Option<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
    logger: Option<JoinHandle<()>>,
    tail: Arc<Mutex<Vec<String>>>,
    /// Why it answers no more, once a call failed.
    broken: Option<String>,
    _registered: Registered,
}

impl Session {
    /// Start the step. `limit` bounds each answer line (max_reply_bytes).
    pub fn start(p: &Process, limit: usize) -> Result<Session, CallError> {
        let (mut child, registered) = spawn(p)?;
        let tail = Arc::new(Mutex::new(Vec::new()));
        let logger = log_stderr(p.role, child.stderr.take().expect("piped"), tail.clone());
        let stdout = child.stdout.take().expect("piped");
        let (send, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || read_lines(stdout, limit, &send));
        let mut stdin = child.stdin.take().expect("piped");
        let (to_step, inputs) = mpsc::channel::<Vec<u8>>();
        let writer = std::thread::spawn(move || {
            for line in inputs {
                if stdin.write_all(&line).and_then(|_| stdin.flush()).is_err() {
                    return;
                }
            }
        });
        Ok(Session {
            role: p.role,
            limit,
            child,
            to_step: Some(to_step),
            lines,
            reader: Some(reader),
            writer: Some(writer),
            logger: Some(logger),
            tail,
            broken: None,
            _registered: registered,
        })
    }

    /// Send `input` as one line and wait for the step's one-line answer.
    pub fn call(
        &mut self,
        input: &Value,
        deadline: Option<Duration>,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Answer, CallError> {
        let role = self.role;
        if let Some(why) = &self.broken {
            return Err(CallError::Ended {
                role,
                how: format!("it failed earlier: {why}"),
                stderr: String::new(),
            });
        }
        let result = self.exchange(input, deadline, cancelled);
        if let Err(e) = &result {
            self.broken = Some(e.to_string());
            self.stop();
        }
        result
    }

    fn exchange(
        &mut self,
        input: &Value,
        deadline: Option<Duration>,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Answer, CallError> {
        let role = self.role;
        let started = Instant::now();
        let mut line = serde_json::to_vec(input).unwrap_or_default();
        line.push(b'\n');
        let sent = self.to_step.as_ref().map(|s| s.send(line));
        if !matches!(sent, Some(Ok(()))) {
            return Err(self.ended());
        }
        loop {
            match self.lines.recv_timeout(POLL) {
                Ok(Line::Text(bytes)) => {
                    let output: Value =
                        serde_json::from_slice(&bytes).map_err(|e| CallError::BadJson {
                            role,
                            reason: e.to_string(),
                            head: String::from_utf8_lossy(&bytes[..bytes.len().min(80)])
                                .into_owned(),
                            stderr: joined(&self.tail),
                        })?;
                    return Ok(Answer {
                        output,
                        bytes,
                        secs: started.elapsed().as_secs_f64(),
                    });
                }
                Ok(Line::TooLarge) => {
                    return Err(CallError::TooLarge {
                        role,
                        limit: self.limit,
                    })
                }
                Ok(Line::End) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(self.ended())
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if cancelled() {
                return Err(CallError::Cancelled { role });
            }
            if let Some(d) = deadline.filter(|d| started.elapsed() > *d) {
                // Stopped first, so that the error holds what it said to the end.
                self.stop();
                return Err(CallError::Timeout {
                    role,
                    secs: d.as_secs_f64(),
                    stderr: joined(&self.tail),
                });
            }
        }
    }

    /// The step went away without answering: how it ended, with its stderr.
    fn ended(&mut self) -> CallError {
        let until = Instant::now() + GRACE;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() < until => std::thread::sleep(POLL),
                _ => break None,
            }
        };
        // Its stderr is complete once it has exited.
        if let (Some(_), Some(logger)) = (status, self.logger.take()) {
            let _ = logger.join();
        }
        CallError::Ended {
            role: self.role,
            how: status.map_or("it closed its output".into(), |s| s.to_string()),
            stderr: joined(&self.tail),
        }
    }

    /// Stop the step and everything it started, at once (what a step that already exited left
    /// in its group goes when the registration drops; its pid is not signalled again).
    fn stop(&mut self) {
        self.to_step = None;
        if matches!(self.child.try_wait(), Ok(None)) {
            stop_group(self.child.id() as i32, Some(&mut self.child));
        }
        let _ = self.child.wait();
    }
}

impl Drop for Session {
    /// Close its stdin (the step's cue to exit), give it a moment, then stop what is left.
    fn drop(&mut self) {
        self.to_step = None;
        let until = Instant::now() + GRACE;
        while Instant::now() < until {
            if !matches!(self.child.try_wait(), Ok(None)) {
                break;
            }
            std::thread::sleep(POLL);
        }
        self.stop();
        for t in [self.reader.take(), self.writer.take(), self.logger.take()]
            .into_iter()
            .flatten()
        {
            let _ = t.join();
        }
    }
}

/// Read stdout line by line, each bounded by `limit` bytes; stop at the first line that is
/// longer (the step is stopped for it) or at the end.
fn read_lines(stdout: std::process::ChildStdout, limit: usize, send: &mpsc::Sender<Line>) {
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    loop {
        let buf = match reader.fill_buf() {
            Ok([]) | Err(_) => {
                let _ = send.send(Line::End);
                return;
            }
            Ok(buf) => buf,
        };
        let (taken, whole) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        line.extend_from_slice(&buf[..taken - usize::from(whole)]);
        reader.consume(taken);
        if line.len() > limit {
            let _ = send.send(Line::TooLarge);
            return;
        }
        // Blank lines between answers are not answers.
        if whole && !line.trim_ascii().is_empty() {
            if send.send(Line::Text(std::mem::take(&mut line))).is_err() {
                return;
            }
        } else if whole {
            line.clear();
        }
    }
}
