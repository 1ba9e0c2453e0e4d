//! Length-prefixed, versioned, authenticated frames over one TCP connection.
//!
//! Layout: `u32 length (big endian) | u8 version | postcard payload | 32-byte HMAC-SHA256 tag`.
//! The tag covers the version, the direction, a per-direction sequence number and the session
//! nonces, so a frame can be neither forged without the site's key, nor replayed, reordered or
//! reflected back. Frames are authenticated, not encrypted: across hosts they travel inside SSH.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::Sha256;

use crate::auth::FrameKey;

pub const VERSION: u8 = 1;
/// Largest frame accepted; a garbage length must not make us allocate gigabytes.
pub const MAX_FRAME: usize = 1 << 30;
const TAG: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed by peer")]
    Closed,
    #[error("timed out after {0:.1} s waiting for the peer")]
    Timeout(f64),
    #[error("cancelled")]
    Cancelled,
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("peer speaks frame version {0}, this build speaks version {VERSION}")]
    Version(u8),
    #[error("frame failed authentication (wrong token, tampered or replayed frame)")]
    BadTag,
    #[error("refused: {0}")]
    Refused(String),
    #[error("malformed frame: {0}")]
    Decode(String),
}

/// Which end of the connection we are; part of the tag so frames cannot be reflected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Coordinator,
    Agent,
}

impl Role {
    fn byte(self) -> u8 {
        match self {
            Role::Coordinator => b'C',
            Role::Agent => b'A',
        }
    }
    fn peer(self) -> Role {
        match self {
            Role::Coordinator => Role::Agent,
            Role::Agent => Role::Coordinator,
        }
    }
}

/// Encode a raw frame body (payload + tag input) — split out so the decoder can be fuzzed alone.
pub fn decode_body(body: &[u8]) -> Result<(&[u8], &[u8]), FrameError> {
    if body.len() < 1 + TAG {
        return Err(FrameError::Decode(format!(
            "frame of {} bytes is shorter than its header",
            body.len()
        )));
    }
    if body[0] != VERSION {
        return Err(FrameError::Version(body[0]));
    }
    let (payload, tag) = body[1..].split_at(body.len() - 1 - TAG);
    Ok((payload, tag))
}

fn tag(key: &FrameKey, session: &[u8], from: Role, seq: u64, payload: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(&[VERSION, from.byte()]);
    mac.update(&seq.to_be_bytes());
    mac.update(&(session.len() as u32).to_be_bytes());
    mac.update(session);
    mac.update(payload);
    mac
}

/// The sending half: shared, so a heartbeat thread can send while the owner waits to receive.
struct Tx {
    stream: TcpStream,
    key: FrameKey,
    role: Role,
    session: Vec<u8>,
    seq: u64,
    bytes: u64,
}

impl Tx {
    fn send<T: Serialize>(&mut self, msg: &T) -> Result<(), FrameError> {
        let payload = postcard::to_stdvec(msg).map_err(|e| FrameError::Decode(e.to_string()))?;
        let tag = tag(&self.key, &self.session, self.role, self.seq, &payload)
            .finalize()
            .into_bytes();
        let len = 1 + payload.len() + TAG;
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge(len));
        }
        let mut buf = Vec::with_capacity(4 + len);
        buf.extend_from_slice(&(len as u32).to_be_bytes());
        buf.push(VERSION);
        buf.extend_from_slice(&payload);
        buf.extend_from_slice(&tag);
        self.stream.write_all(&buf)?;
        self.seq += 1;
        self.bytes += buf.len() as u64;
        Ok(())
    }
}

/// A handle that sends on a channel from another thread (heartbeats).
#[derive(Clone)]
pub struct Sender(Arc<Mutex<Tx>>);

impl Sender {
    pub fn send<T: Serialize>(&self, msg: &T) -> Result<(), FrameError> {
        self.0.lock().map_err(|_| FrameError::Closed)?.send(msg)
    }
}

/// One authenticated connection with byte counters.
pub struct Channel {
    stream: TcpStream,
    tx: Arc<Mutex<Tx>>,
    key: FrameKey,
    role: Role,
    session: Vec<u8>,
    recv_seq: u64,
    pub bytes_received: u64,
}

impl Channel {
    pub fn new(stream: TcpStream, key: FrameKey, role: Role) -> Channel {
        let _ = stream.set_nodelay(true);
        let writer = stream.try_clone().expect("a TCP stream can be cloned");
        let tx = Tx {
            stream: writer,
            key,
            role,
            session: Vec::new(),
            seq: 0,
            bytes: 0,
        };
        Channel {
            stream,
            tx: Arc::new(Mutex::new(tx)),
            key,
            role,
            session: Vec::new(),
            recv_seq: 0,
            bytes_received: 0,
        }
    }

    fn with_tx<R>(&self, f: impl FnOnce(&mut Tx) -> R) -> R {
        let mut tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut tx)
    }

    /// Bind all later frames to this session (both sides' nonces).
    pub fn set_session(&mut self, agent_nonce: &[u8], coordinator_nonce: &[u8]) {
        self.session = [agent_nonce, coordinator_nonce].concat();
        let session = self.session.clone();
        self.with_tx(|tx| tx.session = session);
    }

    /// Replace the key (the coordinator learns which site is calling only from the first frame).
    pub fn set_key(&mut self, key: FrameKey) {
        self.key = key;
        self.with_tx(|tx| tx.key = key);
    }

    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.stream.peer_addr().ok()
    }

    pub fn bytes_sent(&self) -> u64 {
        self.with_tx(|tx| tx.bytes)
    }

    /// A sender for another thread.
    pub fn sender(&self) -> Sender {
        Sender(self.tx.clone())
    }

    /// Close both directions now (the peer sees the connection end).
    pub fn shutdown(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }

    pub fn send<T: Serialize>(&mut self, msg: &T) -> Result<(), FrameError> {
        self.with_tx(|tx| tx.send(msg))
    }

    /// Wait for the next frame until `deadline`, checking `cancel` every 100 ms.
    pub fn recv<T: DeserializeOwned>(
        &mut self,
        deadline: Instant,
        cancel: Option<&AtomicBool>,
    ) -> Result<T, FrameError> {
        let body = self.read_body(deadline, cancel)?;
        self.open(&body)
    }

    /// Receive a first frame whose key depends on its content (the site it claims to come from):
    /// decode it unverified, ask `lookup` for that site's key, then verify with that key.
    pub fn recv_keyed<T: DeserializeOwned>(
        &mut self,
        deadline: Instant,
        lookup: impl FnOnce(&T) -> Result<FrameKey, String>,
    ) -> Result<T, FrameError> {
        let body = self.read_body(deadline, None)?;
        let (payload, _) = decode_body(&body)?;
        let claimed: T =
            postcard::from_bytes(payload).map_err(|e| FrameError::Decode(e.to_string()))?;
        let key = lookup(&claimed).map_err(FrameError::Refused)?;
        self.set_key(key);
        self.open(&body)
    }

    fn read_body(
        &mut self,
        deadline: Instant,
        cancel: Option<&AtomicBool>,
    ) -> Result<Vec<u8>, FrameError> {
        self.wait_readable(deadline, cancel)?;
        // Data is there: read the whole frame, allowing the remaining time (at least a few seconds).
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(5));
        self.stream.set_read_timeout(Some(left))?;
        let mut len = [0u8; 4];
        self.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge(len));
        }
        let mut body = vec![0u8; len];
        self.read_exact(&mut body)?;
        self.bytes_received += 4 + len as u64;
        Ok(body)
    }

    fn open<T: DeserializeOwned>(&mut self, body: &[u8]) -> Result<T, FrameError> {
        let (payload, tag_bytes) = decode_body(body)?;
        tag(
            &self.key,
            &self.session,
            self.role.peer(),
            self.recv_seq,
            payload,
        )
        .verify_slice(tag_bytes)
        .map_err(|_| FrameError::BadTag)?;
        self.recv_seq += 1;
        postcard::from_bytes(payload).map_err(|e| FrameError::Decode(e.to_string()))
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), FrameError> {
        self.stream.read_exact(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => FrameError::Closed,
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                FrameError::Timeout(0.0)
            }
            _ => FrameError::Io(e),
        })
    }

    fn wait_readable(
        &mut self,
        deadline: Instant,
        cancel: Option<&AtomicBool>,
    ) -> Result<(), FrameError> {
        let started = Instant::now();
        let mut probe = [0u8; 1];
        loop {
            if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(FrameError::Cancelled);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(FrameError::Timeout((now - started).as_secs_f64()));
            }
            let slice = (deadline - now).min(Duration::from_millis(100));
            self.stream
                .set_read_timeout(Some(slice.max(Duration::from_millis(1))))?;
            match self.stream.peek(&mut probe) {
                Ok(0) => return Err(FrameError::Closed),
                Ok(_) => return Ok(()),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    return Err(FrameError::Closed)
                }
                Err(e) => return Err(FrameError::Io(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn pair(key_a: FrameKey, key_c: FrameKey) -> (Channel, Channel) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (c, _) = l.accept().unwrap();
        (
            Channel::new(a, key_a, Role::Agent),
            Channel::new(c, key_c, Role::Coordinator),
        )
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[test]
    fn frames_round_trip_and_count_bytes() {
        let (mut a, mut c) = pair([7; 32], [7; 32]);
        a.send(&(1u32, vec![1.5f64, -2.0])).unwrap();
        let got: (u32, Vec<f64>) = c.recv(soon(), None).unwrap();
        assert_eq!(got, (1, vec![1.5, -2.0]));
        assert_eq!(a.bytes_sent(), c.bytes_received);
        c.send(&"ok".to_string()).unwrap();
        assert_eq!(a.recv::<String>(soon(), None).unwrap(), "ok");
    }

    #[test]
    fn wrong_key_is_refused() {
        let (mut a, mut c) = pair([1; 32], [2; 32]);
        a.send(&5u8).unwrap();
        assert!(matches!(
            c.recv::<u8>(soon(), None),
            Err(FrameError::BadTag)
        ));
    }

    #[test]
    fn reflected_frame_is_refused() {
        // A frame the coordinator sent, echoed back to it, must not verify.
        let (mut a, mut c) = pair([3; 32], [3; 32]);
        c.send(&9u8).unwrap();
        let mut raw = vec![0u8; 4 + 1 + 1 + TAG];
        a.stream.read_exact(&mut raw).unwrap();
        a.stream.write_all(&raw).unwrap();
        assert!(matches!(
            c.recv::<u8>(soon(), None),
            Err(FrameError::BadTag)
        ));
    }

    #[test]
    fn version_and_size_are_checked() {
        assert!(matches!(
            decode_body(&[9u8; 40]),
            Err(FrameError::Version(9))
        ));
        assert!(matches!(
            decode_body(&[VERSION; 3]),
            Err(FrameError::Decode(_))
        ));
        let (mut a, mut c) = pair([1; 32], [1; 32]);
        a.stream.write_all(&u32::MAX.to_be_bytes()).unwrap();
        assert!(matches!(
            c.recv::<u8>(soon(), None),
            Err(FrameError::TooLarge(_))
        ));
    }

    /// `cargo test --release -p fedsim --lib frame::tests::throughput -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement: run it in release"]
    fn throughput_of_a_64_mib_round_trip() {
        use crate::federation::Message;
        let (mut a, mut c) = pair([4; 32], [4; 32]);
        let body = vec![0x5a_u8; 64 << 20];
        let echo = std::thread::spawn(move || {
            for _ in 0..5 {
                let Message::Reply { body, .. } = c.recv(soon(), None).unwrap() else {
                    panic!("expected a Reply")
                };
                c.send(&Message::Task {
                    round: 1,
                    body,
                    active: Vec::new(),
                })
                .unwrap();
            }
        });
        let mut secs = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            a.send(&Message::Reply {
                round: 1,
                body: body.clone(),
                compute_secs: 0.0,
                peak_rss_kib: 0,
                masked: None,
            })
            .unwrap();
            let Message::Task { body: back, .. } = a.recv(soon(), None).unwrap() else {
                panic!("expected a Task")
            };
            secs.push(started.elapsed().as_secs_f64());
            assert_eq!(back.len(), body.len());
        }
        echo.join().unwrap();
        secs.sort_by(f64::total_cmp);
        println!(
            "64 MiB round trip: best {:.3} s, median {:.3} s ({:.0} MiB/s each way at the median)",
            secs[0],
            secs[2],
            128.0 / secs[2]
        );
    }

    #[test]
    fn silence_times_out() {
        let (_a, mut c) = pair([1; 32], [1; 32]);
        let r = c.recv::<u8>(Instant::now() + Duration::from_millis(200), None);
        assert!(matches!(r, Err(FrameError::Timeout(_))));
    }
}
