//! Cancellation (Ctrl-C, SIGTERM). The signal handler only sets a flag; the run checks it between
//! stages, waits (sockets, portal) check it every 100 ms, and long computations check it inside.
//! A computation that cannot stop mid-way (a dense SVD in faer) runs on its own thread, so the run
//! can leave it behind and still end within a moment.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// Set once the run is asked to stop.
pub static CANCEL: AtomicBool = AtomicBool::new(false);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

pub fn requested() -> bool {
    CANCEL.load(Ordering::Relaxed)
}

pub fn check() -> Result<(), Cancelled> {
    if requested() {
        Err(Cancelled)
    } else {
        Ok(())
    }
}

/// Run `f` on a thread of its own and wait for it, giving up as soon as the run is cancelled.
/// The thread is then left to finish (or to notice the flag) on its own; the process exits soon.
pub fn wait_for<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Cancelled> {
    check()?;
    let (tx, rx) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name(format!("fedsim-{name}"))
        .spawn(move || {
            let _ = tx.send(f());
        })
        .expect("the OS can start a thread");
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(v) => return Ok(v),
            Err(mpsc::RecvTimeoutError::Timeout) => check()?,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("the {name} thread panicked")
            }
        }
    }
}

/// Run `f` on a thread of its own and wait at most `limit` for it, whatever the flag says: for
/// what a cancelled run still writes (its report), within the time a cancel allows.
pub fn wait_at_most<T: Send + 'static>(
    name: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name(format!("fedsim-{name}"))
        .spawn(move || {
            let _ = tx.send(f());
        })
        .ok()?;
    rx.recv_timeout(limit).ok()
}

/// Test hook: `FEDSIM_TEST_PAUSE=<phase>=<file>` holds the run at the start of `phase` (creating
/// `file` to say it got there) until it is cancelled, so tests can cancel in every phase, even
/// those that take milliseconds.
pub fn pause_point(phase: &str) {
    let Some(spec) = std::env::var_os("FEDSIM_TEST_PAUSE") else {
        return;
    };
    let spec = spec.to_string_lossy();
    let Some((at, marker)) = spec.split_once('=') else {
        return;
    };
    if at != phase {
        return;
    }
    let _ = std::fs::write(marker, phase);
    for _ in 0..3000 {
        if requested() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
