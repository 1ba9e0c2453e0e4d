//! `fedsim reap -- PROGRAM ARGS...`: what every external step runs under, so that nothing a step
//! starts outlives it, even a process that detaches (double fork and `setsid`, leaving the step's
//! process group). The reaper is a child subreaper (`PR_SET_CHILD_SUBREAPER`, Linux 3.4+): every
//! descendant whose parent dies is handed to it rather than to init. When the step exits, or the
//! reaper is told to stop (SIGTERM, SIGINT, or its parent dying: `PR_SET_PDEATHSIG` is SIGTERM,
//! which it can catch), it kills its children until none is left, so detached ones too, and exits
//! with the step's status (128 + signal for a step killed by one). A platform's node on a remote
//! site is also stopped when the controller's lease (`--lease`, through the site's tunnel) ends
//! or goes unheard: its parent is no fedsim process there.
//!
//! Where `PR_SET_CHILD_SUBREAPER` is refused (not Linux), the step still runs, in its own process
//! group, and only that group is killed; docs/external-protocol.md says so.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The fedsim binary steps are run under, once `main` has said which it is (a library user or a
/// unit test has none: its steps run directly).
static REAPER: OnceLock<PathBuf> = OnceLock::new();

/// Say which binary is fedsim (call once, at start).
pub fn set_binary(path: PathBuf) {
    let _ = REAPER.set(path);
}

/// `program args` as a command run under the reaper, when there is one.
pub fn command(program: &str, args: &[String]) -> Command {
    match REAPER.get() {
        Some(fedsim) => {
            let mut c = Command::new(fedsim);
            c.arg("reap").arg("--").arg(program).args(args);
            c
        }
        None => {
            let mut c = Command::new(program);
            c.args(args);
            c
        }
    }
}

/// Whether steps run under the reaper here.
pub fn active() -> bool {
    REAPER.get().is_some()
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// The reaper's own life: run `program args`, then make sure no descendant is left. Returns the
/// exit code to leave with.
/// Makes one log line of a line the program printed (None: keep nothing of it).
pub type LineFormat = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// With `log` (a file, how to write each line), what the program prints is kept there instead
/// of passed on. With `lease` (an address, how long it may go unheard), the program is stopped
/// when the lease there ends or is not heard for that long ([`hold_lease`]).
pub fn run(
    program: &str,
    args: &[String],
    log: Option<(&Path, LineFormat)>,
    lease: Option<(SocketAddr, Duration)>,
) -> i32 {
    // SAFETY: prctl, signal and the handler (an atomic store) are async-signal-safe.
    let subreaper = unsafe {
        libc::signal(libc::SIGTERM, on_stop as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_stop as *const () as libc::sighandler_t);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) == 0
    };
    if !subreaper {
        eprintln!("fedsim reap: this system does not offer child subreapers; only the step's process group will be stopped");
    }
    let mut cmd = Command::new(program);
    cmd.args(args);
    let file = match log.as_ref().map(|(path, _)| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open the log {}: {e}", path.display()))
    }) {
        Some(Err(e)) => {
            eprintln!("fedsim reap: {e}");
            return 1;
        }
        Some(Ok(f)) => {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            Some(Arc::new(Mutex::new(f)))
        }
        None => None,
    };
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot start {program}: {e}");
            return 127;
        }
    };
    if let Some((addr, within)) = lease {
        let say: Box<dyn Fn(&str) + Send> = match (&file, &log) {
            (Some(file), Some((_, format))) => {
                let (file, format) = (file.clone(), format.clone());
                Box::new(move |why: &str| {
                    append(&file, &format, &format!("fedsim reap: {why}: stopping"))
                })
            }
            _ => Box::new(|why: &str| eprintln!("fedsim reap: {why}: stopping")),
        };
        hold_lease(addr, within, say);
    }
    let readers = match (file, log) {
        (Some(file), Some((_, format))) => log_lines(&mut child, &file, format),
        _ => Vec::new(),
    };
    let code = loop {
        if STOP.load(Ordering::SeqCst) {
            let _ = child.kill();
            let _ = child.wait();
            break 128 + libc::SIGTERM;
        }
        match child.try_wait() {
            Ok(Some(status)) => {
                use std::os::unix::process::ExitStatusExt;
                break status
                    .code()
                    .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
            }
            Ok(None) => {}
            Err(_) => break 1,
        }
        // Orphans handed to us while the step runs are reaped (not killed: they are the
        // step's business until it ends).
        reap_exited();
        std::thread::sleep(Duration::from_millis(5));
    };
    kill_descendants();
    // Every writer of the pipes is gone now: the readers see their end.
    for r in readers {
        let _ = r.join();
    }
    code
}

/// Hold the lease at `addr` on a thread of its own; when it ends or goes unheard, `say` why and
/// stop the program as SIGTERM would.
fn hold_lease(addr: SocketAddr, within: Duration, say: Box<dyn Fn(&str) + Send>) {
    let _ = std::thread::Builder::new()
        .name("lease".into())
        .spawn(move || {
            say(&lease_lost(addr, within));
            STOP.store(true, Ordering::SeqCst);
        });
}

/// Connect to the lease at `addr` (trying for `within`), then read its bytes until none comes
/// for `within` or it ends; returns why it was lost.
fn lease_lost(addr: SocketAddr, within: Duration) -> String {
    use std::io::{ErrorKind, Read};
    let began = Instant::now();
    let mut conn = loop {
        match TcpStream::connect_timeout(&addr, within) {
            Ok(conn) => break conn,
            Err(e) if began.elapsed() >= within => {
                return format!("cannot reach the controller's lease at {addr}: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    };
    let _ = conn.set_read_timeout(Some(within));
    let mut buf = [0u8; 64];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return "the controller ended the lease".into(),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return format!(
                    "the controller's lease went unheard for {} s",
                    within.as_secs_f64()
                )
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return format!("the controller's lease broke: {e}"),
        }
    }
}

/// Append `line`, as `format` makes it (if it keeps it), to the log `file`.
fn append(file: &Mutex<std::fs::File>, format: &LineFormat, line: &str) {
    use std::io::Write;
    if let (Some(v), Ok(mut f)) = (format(line), file.lock()) {
        let _ = writeln!(f, "{v}");
    }
}

/// Threads that keep each line `child` prints in `file`, as `format` makes it.
fn log_lines(
    child: &mut std::process::Child,
    file: &Arc<Mutex<std::fs::File>>,
    format: LineFormat,
) -> Vec<std::thread::JoinHandle<()>> {
    use std::io::{BufRead, BufReader, Read};
    let outs: Vec<Box<dyn Read + Send>> = [
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .collect();
    outs.into_iter()
        .map(|out| {
            let (file, format) = (file.clone(), format.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    append(&file, &format, &line);
                }
            })
        })
        .collect()
}

/// Reap children that have exited, without waiting.
fn reap_exited() {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with WNOHANG on any child; `status` is ours.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
    }
}

/// The pids of this process's children, from /proc (every thread's list).
fn children() -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    out
}

/// Kill every child, and every descendant handed to us as its parent dies, until none is left.
fn kill_descendants() {
    for _ in 0..1000 {
        reap_exited();
        let left = children();
        if left.is_empty() {
            return;
        }
        for pid in left {
            // SAFETY: signalling our own children; their process groups too, which takes a
            // step's own group along in one go.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
                libc::kill(pid, libc::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
