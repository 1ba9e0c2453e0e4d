//! Connections that have not yet sent their opening frame, read by the coordinator's accept loop
//! itself (poll(2) over all of them, non-blocking reads into a small buffer each), so that peers
//! which connect and stay silent, or trickle a byte every few seconds, cost a descriptor and a few
//! bytes for at most [`OPENING_TIMEOUT`], never one of the handshake threads that real sites
//! need. A real agent sends its opening (under 300 bytes) in one write as soon as it connects.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::frame::MAX_HANDSHAKE_FRAME;

/// How long a connection may take to send its whole opening frame.
pub const OPENING_TIMEOUT: Duration = Duration::from_secs(2);

/// At most this many connections wait for their opening at once; past it the oldest is dropped
/// (each costs a descriptor; a flood must not exhaust them).
pub const MAX_WAITING: usize = 512;

/// A connection whose opening frame has arrived whole: the stream and the frame's body.
pub struct Opened {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub body: Vec<u8>,
    pub accepted: Instant,
}

struct Waiting {
    stream: TcpStream,
    peer: SocketAddr,
    since: Instant,
    buf: Vec<u8>,
}

/// The connections still to send their opening, and what became of those that did not.
#[derive(Default)]
pub struct Openings {
    waiting: Vec<Waiting>,
    /// Connections dropped without a whole opening: silent or too slow until the timeout, closed
    /// early, an oversized length, or pushed out by a flood.
    pub stalled: usize,
}

impl Openings {
    /// Take every connection the listener has ready (it must be non-blocking).
    pub fn accept(&mut self, listener: &TcpListener) -> std::io::Result<usize> {
        let mut n = 0;
        loop {
            match listener.accept() {
                Ok((stream, peer)) => {
                    stream.set_nonblocking(true)?;
                    if self.waiting.len() >= MAX_WAITING {
                        self.waiting.remove(0);
                        self.stalled += 1;
                    }
                    self.waiting.push(Waiting {
                        stream,
                        peer,
                        since: Instant::now(),
                        buf: Vec::new(),
                    });
                    n += 1;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Wait up to `wait` for the listener or a waiting connection to have data, read what came,
    /// and return the connections whose opening is now whole. Expired ones are dropped.
    pub fn poll(&mut self, listener: &TcpListener, wait: Duration) -> Vec<Opened> {
        let mut fds: Vec<libc::pollfd> = std::iter::once(listener.as_raw_fd())
            .chain(self.waiting.iter().map(|w| w.stream.as_raw_fd()))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let ms = wait.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: `fds` is a valid array of pollfd for its whole length.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        let mut opened = Vec::new();
        let mut keep = Vec::with_capacity(self.waiting.len());
        let now = Instant::now();
        for (w, fd) in std::mem::take(&mut self.waiting).into_iter().zip(&fds[1..]) {
            let mut w = w;
            let readable = ready > 0 && fd.revents != 0;
            let filled = if readable { fill(&mut w) } else { Fill::More };
            match filled {
                Fill::Whole => {
                    let body = w.buf.split_off(4);
                    opened.push(Opened {
                        stream: w.stream,
                        peer: w.peer,
                        body,
                        accepted: w.since,
                    });
                }
                Fill::Gone => self.stalled += 1,
                Fill::More if now.duration_since(w.since) >= OPENING_TIMEOUT => self.stalled += 1,
                Fill::More => keep.push(w),
            }
        }
        self.waiting = keep;
        opened
    }
}

enum Fill {
    Whole,
    More,
    Gone,
}

/// Read what a waiting connection has sent: the 4-byte length, then that many bytes, no more.
fn fill(w: &mut Waiting) -> Fill {
    loop {
        let want = if w.buf.len() < 4 {
            4
        } else {
            let len = u32::from_be_bytes([w.buf[0], w.buf[1], w.buf[2], w.buf[3]]) as usize;
            if len > MAX_HANDSHAKE_FRAME {
                return Fill::Gone;
            }
            4 + len
        };
        if w.buf.len() == want && want > 4 {
            return Fill::Whole;
        }
        let mut chunk = [0u8; 512];
        let room = (want - w.buf.len()).min(chunk.len());
        match (&w.stream).read(&mut chunk[..room]) {
            Ok(0) => return Fill::Gone,
            Ok(n) => w.buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Fill::More,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Fill::Gone,
        }
    }
}
