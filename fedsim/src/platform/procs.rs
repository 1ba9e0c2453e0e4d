//! A platform's processes on this machine: each under fedsim's reaper (so a child that detaches,
//! like Flower's `flower-superexec`, dies with it), in a process group of its own, tied to the
//! controller's life, with every line it prints kept as a JSON log line of the run.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::PlatformError;
use crate::sys::children;

/// Called with each line a process prints (as `logs::plain_text` has it).
pub type OnLine = Box<dyn Fn(&str) + Send + Sync>;

/// One running process of the platform.
pub struct Proc {
    pub what: String,
    pub child: Child,
    pub log: PathBuf,
    readers: Vec<std::thread::JoinHandle<()>>,
    /// Its exit, once seen.
    pub exited: Option<std::process::ExitStatus>,
}

/// Start `program args` in `dir` with `env` added to a scrubbed environment, its output kept in
/// `log` as JSON lines whose `process` is `what`.
pub fn spawn(
    what: &str,
    program: &Path,
    args: &[String],
    dir: &Path,
    env: &[(&str, String)],
    log: &Path,
    on_line: Option<OnLine>,
) -> Result<Proc, PlatformError> {
    use std::os::unix::process::CommandExt;
    let start = |reason: String| PlatformError::Start {
        what: what.to_string(),
        reason,
    };
    let mut cmd: Command = crate::sys::reaper::command(&program.to_string_lossy(), args);
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LANG", "C.UTF-8")
        // Nothing phones home; output comes line by line and without colours.
        .env("FLWR_TELEMETRY_ENABLED", "0")
        .env("RAY_USAGE_STATS_ENABLED", "0")
        .env("PYTHONUNBUFFERED", "1")
        .env("NO_COLOR", "1")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    children::die_with_parent(&mut cmd);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| start(format!("cannot open its log {}: {e}", log.display())))?;
    let file = Arc::new(Mutex::new(file));
    let mut child = cmd
        .spawn()
        .map_err(|e| start(format!("{}: {e}", program.display())))?;
    children::track(child.id());
    let on_line = on_line.map(Arc::new);
    let mut readers = Vec::new();
    let outs: Vec<Box<dyn Read + Send>> = vec![
        Box::new(child.stdout.take().expect("piped")),
        Box::new(child.stderr.take().expect("piped")),
    ];
    for out in outs {
        let (file, what, on_line) = (file.clone(), what.to_string(), on_line.clone());
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let Some(v) = crate::logs::program_line(&what, &line) else {
                    continue;
                };
                if let Some(f) = &on_line {
                    f(&crate::logs::plain_text(&line));
                }
                if let Ok(mut f) = file.lock() {
                    let _ = writeln!(f, "{v}");
                }
            }
        }));
    }
    Ok(Proc {
        what: what.to_string(),
        child,
        log: log.to_path_buf(),
        readers,
        exited: None,
    })
}

impl Proc {
    /// Its exit status if it has exited (reaped once).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        if self.exited.is_none() {
            if let Ok(Some(s)) = self.child.try_wait() {
                children::untrack(self.child.id());
                self.exited = Some(s);
            }
        }
        self.exited
    }

    /// SIGKILL to its whole group at once.
    pub fn kill(&mut self) {
        if self.exited().is_none() {
            // SAFETY: signalling the process group we created.
            unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        }
    }

    /// SIGTERM to its group (the reaper then kills every descendant, detached ones too), SIGKILL
    /// after `grace`; returns once it has exited and its output is all logged.
    pub fn stop(mut self, grace: Duration) {
        if self.exited().is_none() {
            // SAFETY: signalling the process group we created.
            unsafe { libc::kill(-(self.child.id() as i32), libc::SIGTERM) };
            let until = Instant::now() + grace;
            while self.exited().is_none() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            if self.exited().is_none() {
                unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
                let _ = self.child.wait();
                children::untrack(self.child.id());
            }
        }
        // Anything left in the group (the reaper was killed before it could) goes too.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

/// A free loopback port, as the kernel hands one out.
pub fn free_port() -> Result<u16, PlatformError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| PlatformError::Start {
            what: "a loopback port".into(),
            reason: e.to_string(),
        })
}

/// Wait until something accepts on `addr`, `p` is still running, within `secs`.
pub fn wait_listening(
    p: &mut Proc,
    addr: std::net::SocketAddr,
    secs: u64,
) -> Result<(), PlatformError> {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(s) = p.exited() {
            return Err(PlatformError::Start {
                what: p.what.clone(),
                reason: format!("it exited ({s}); its log: {}", p.log.display()),
            });
        }
        if crate::sys::cancel::requested() {
            return Err(PlatformError::Cancelled);
        }
        if Instant::now() > until {
            return Err(PlatformError::NotUp {
                what: p.what.clone(),
                secs,
                log: p.log.clone(),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
