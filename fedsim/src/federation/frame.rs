//! Length-prefixed, versioned, encrypted frames over one TCP connection.
//!
//! A connection opens with a Noise handshake (`Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s`) whose
//! pre-shared key is the site's frame key. The first frame names the site in the clear, because
//! the coordinator must know whose key to use; nothing else travels unencrypted. After the
//! handshake each frame is a run of Noise transport messages (ChaCha20-Poly1305, at most 64 KiB
//! each, a key per direction, the message count as nonce), so a frame can be neither read nor
//! forged without the site's key, nor replayed, reordered or reflected back. The first message
//! carries the frame's version and length, so a frame cut short does not open either.
//!
//! Handshake frames: `u32 length (big endian) | u8 version | body`, at most [`MAX_HANDSHAKE_FRAME`]
//! bytes, so a peer that has not proved it holds the key cannot make us allocate much.
//! Data frames: `u32 length | u8 version | Noise messages`, which open to
//! `u8 version | u32 payload length | postcard payload`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use snow::StatelessTransportState;

use crate::auth::FrameKey;

/// 4: the Welcome carries a run's analyses, and `Begin` starts each next one. 3: the Welcome
/// carries the analysis, a tagged enum, as JSON. 2 brought the Noise handshake and encrypted
/// frames; 1 was HMAC-tagged plain text.
pub const VERSION: u8 = 4;
/// Largest frame accepted once the peer is authenticated; a garbage length must not make us
/// allocate gigabytes.
pub const MAX_FRAME: usize = 1 << 30;
/// Largest frame accepted before the peer has proved it holds the site's key.
pub const MAX_HANDSHAKE_FRAME: usize = 4096;
const TAG: usize = 16;
/// Noise's largest message, tag included.
const CHUNK: usize = 65535;
/// Version and payload length, sealed at the front of every data frame.
const INNER: usize = 5;
const NOISE: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";

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
    #[error("frame of {len} bytes exceeds the {limit}-byte limit")]
    TooLarge { len: usize, limit: usize },
    #[error("peer speaks frame version {0}, this build speaks version {VERSION}")]
    Version(u8),
    #[error("frame failed authentication (wrong token, tampered or replayed frame)")]
    BadTag,
    #[error("handshake: {0}")]
    Handshake(String),
    #[error("refused: {0}")]
    Refused(String),
    #[error("malformed frame: {0}")]
    Decode(String),
}

impl From<snow::Error> for FrameError {
    fn from(e: snow::Error) -> Self {
        match e {
            // A message did not verify under our key.
            snow::Error::Decrypt => FrameError::BadTag,
            other => FrameError::Handshake(other.to_string()),
        }
    }
}

/// The agent's first frame, in the clear: which site is calling, and Noise's first message.
#[derive(Debug, Serialize, Deserialize)]
pub struct Opening {
    pub site: String,
    pub noise: Vec<u8>,
}

/// Parse a handshake frame body: version, then the rest.
fn handshake_body(body: &[u8]) -> Result<&[u8], FrameError> {
    match body.first() {
        None => Err(FrameError::Decode("empty frame".into())),
        Some(&VERSION) => Ok(&body[1..]),
        Some(&v) => Err(FrameError::Version(v)),
    }
}

/// Parse the agent's first frame (the only one whose contents an unauthenticated peer chooses
/// and the coordinator reads), split out so it can be fuzzed alone.
pub fn decode_opening(body: &[u8]) -> Result<Opening, FrameError> {
    postcard::from_bytes(handshake_body(body)?).map_err(|e| FrameError::Decode(e.to_string()))
}

/// How many Noise messages a data frame's `sealed` bytes hold: full 64 KiB ones, then the rest.
/// Every message holds its tag and at least one byte; the first holds the inner header too.
fn message_count(sealed: usize) -> Result<usize, FrameError> {
    let last = sealed % CHUNK;
    if sealed < INNER + TAG || (last != 0 && last <= TAG) {
        return Err(FrameError::Decode(format!(
            "{sealed} sealed bytes do not split into messages"
        )));
    }
    Ok(sealed.div_ceil(CHUNK))
}

/// Split a data frame body into its Noise messages, checking version and sizes, as
/// [`Channel::recv`] does while it reads; split out so the decoder can be fuzzed alone.
pub fn decode_body(body: &[u8]) -> Result<std::slice::Chunks<'_, u8>, FrameError> {
    let Some((&version, sealed)) = body.split_first() else {
        return Err(FrameError::Decode("empty frame".into()));
    };
    if version != VERSION {
        return Err(FrameError::Version(version));
    }
    message_count(sealed.len())?;
    Ok(sealed.chunks(CHUNK))
}

/// Check an opened frame's inner header, and return its payload; split out to be fuzzed.
pub fn decode_plain(plain: &[u8]) -> Result<&[u8], FrameError> {
    if plain.len() < INNER || plain[0] != VERSION {
        return Err(FrameError::Decode("bad inner header".into()));
    }
    let len = u32::from_be_bytes(plain[1..INNER].try_into().expect("4 bytes")) as usize;
    if len != plain.len() - INNER {
        return Err(FrameError::Decode(format!(
            "frame says {len} bytes but holds {}",
            plain.len() - INNER
        )));
    }
    Ok(&plain[INNER..])
}

/// The Noise prologue binds the handshake to this protocol and to the site named in the clear.
fn handshake(
    key: &FrameKey,
    site: &str,
    initiator: bool,
) -> Result<snow::HandshakeState, FrameError> {
    let prologue = [b"fedsim frames v2\0".as_slice(), site.as_bytes()].concat();
    let builder = snow::Builder::new(NOISE.parse()?)
        .psk(0, key)?
        .prologue(&prologue)?;
    Ok(if initiator {
        builder.build_initiator()?
    } else {
        builder.build_responder()?
    })
}

/// Serialises after the inner header, byte by byte as postcard's own `to_stdvec` does (its
/// `to_extend` is several times slower unoptimised).
struct Plain(Vec<u8>);

impl postcard::ser_flavors::Flavor for Plain {
    type Output = Vec<u8>;
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }
    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.0)
    }
}

/// The sending half: shared, so a heartbeat thread can send while the owner waits to receive.
struct Tx {
    /// Shared with the channel's reading side: one descriptor per connection, not two (a
    /// thousand sites on one controller count them).
    stream: Arc<TcpStream>,
    noise: Arc<StatelessTransportState>,
    /// The next message's nonce.
    seq: u64,
    bytes: u64,
}

impl Tx {
    fn send<T: Serialize>(&mut self, msg: &T) -> Result<(), FrameError> {
        let mut plain = postcard::serialize_with_flavor(msg, Plain(vec![VERSION, 0, 0, 0, 0]))
            .map_err(|e| FrameError::Decode(e.to_string()))?;
        let payload = plain.len() - INNER;
        let messages = plain.len().div_ceil(CHUNK - TAG);
        let len = 1 + plain.len() + messages * TAG;
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge {
                len,
                limit: MAX_FRAME,
            });
        }
        plain[1..INNER].copy_from_slice(&(payload as u32).to_be_bytes());
        // Seal and write one message at a time: the peer opens each while the next is sealed,
        // and no sealed copy of the whole frame is made.
        let mut out = vec![0u8; 5 + CHUNK.min(plain.len() + TAG)];
        out[..4].copy_from_slice(&(len as u32).to_be_bytes());
        out[4] = VERSION;
        let mut header = 5;
        for (i, piece) in plain.chunks(CHUNK - TAG).enumerate() {
            let end = header + piece.len() + TAG;
            let n = self
                .noise
                .write_message(self.seq + i as u64, piece, &mut out[header..end])?;
            (&*self.stream).write_all(&out[..header + n])?;
            self.bytes += (header + n) as u64;
            header = 0;
        }
        self.seq += messages as u64;
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

/// One encrypted, authenticated connection with byte counters (bytes on the wire, handshake
/// included).
pub struct Channel {
    stream: Arc<TcpStream>,
    tx: Arc<Mutex<Tx>>,
    noise: Arc<StatelessTransportState>,
    /// The next incoming message's nonce.
    recv_seq: u64,
    pub bytes_received: u64,
}

/// The handshake's plain frames, before there is a channel.
struct Clear {
    stream: TcpStream,
    sent: u64,
    received: u64,
}

impl Clear {
    fn new(stream: TcpStream) -> Result<Clear, FrameError> {
        stream.set_nonblocking(false)?;
        let _ = stream.set_nodelay(true);
        Ok(Clear {
            stream,
            sent: 0,
            received: 0,
        })
    }

    fn send(&mut self, body: &[u8]) -> Result<(), FrameError> {
        let len = 1 + body.len();
        if len > MAX_HANDSHAKE_FRAME {
            return Err(FrameError::TooLarge {
                len,
                limit: MAX_HANDSHAKE_FRAME,
            });
        }
        let mut buf = Vec::with_capacity(4 + len);
        buf.extend_from_slice(&(len as u32).to_be_bytes());
        buf.push(VERSION);
        buf.extend_from_slice(body);
        self.stream.write_all(&buf)?;
        self.sent += buf.len() as u64;
        Ok(())
    }

    fn recv(
        &mut self,
        deadline: Instant,
        cancel: Option<&AtomicBool>,
    ) -> Result<Vec<u8>, FrameError> {
        let body = read_frame(&self.stream, deadline, cancel, MAX_HANDSHAKE_FRAME)?;
        self.received += 4 + body.len() as u64;
        Ok(body)
    }

    /// Read one whole handshake frame's body, by `deadline` at the latest: the peer has not
    /// proved anything yet, so no grace.
    fn recv_strict(
        &mut self,
        deadline: Instant,
        cancel: Option<&AtomicBool>,
    ) -> Result<Vec<u8>, FrameError> {
        let (len, until) = read_len(&self.stream, deadline, cancel, MAX_HANDSHAKE_FRAME, true)?;
        let mut body = vec![0u8; len];
        read_exact_until(&self.stream, &mut body, until, cancel)?;
        self.received += 4 + len as u64;
        Ok(body)
    }

    /// The channel, keyed by the finished handshake.
    fn into_channel(self, hs: snow::HandshakeState) -> Result<Channel, FrameError> {
        let noise = Arc::new(hs.into_stateless_transport_mode()?);
        let stream = Arc::new(self.stream);
        let tx = Tx {
            stream: stream.clone(),
            noise: noise.clone(),
            seq: 0,
            bytes: self.sent,
        };
        Ok(Channel {
            stream,
            tx: Arc::new(Mutex::new(tx)),
            noise,
            recv_seq: 0,
            bytes_received: self.received,
        })
    }
}

impl Channel {
    /// The agent's side: name the site, prove we hold its key, and check the coordinator does.
    pub fn connect(
        stream: TcpStream,
        key: &FrameKey,
        site: &str,
        deadline: Instant,
    ) -> Result<Channel, FrameError> {
        let mut wire = Clear::new(stream)?;
        let mut hs = handshake(key, site, true)?;
        let mut msg = [0u8; 256];
        let n = hs.write_message(&[], &mut msg)?;
        let opening = postcard::to_stdvec(&Opening {
            site: site.to_string(),
            noise: msg[..n].to_vec(),
        })
        .map_err(|e| FrameError::Decode(e.to_string()))?;
        wire.send(&opening)?;
        let reply = wire.recv(deadline, None)?;
        hs.read_message(handshake_body(&reply)?, &mut msg)?;
        wire.into_channel(hs)
    }

    /// The coordinator's side: read which site is calling, ask `lookup` for its key (or a
    /// refusal), and answer the handshake. The caller should still wait for one data frame from
    /// the peer before trusting it: only that shows the peer finished the handshake, rather than
    /// replaying a recorded first message.
    pub fn accept(
        stream: TcpStream,
        deadline: Instant,
        cancel: Option<&AtomicBool>,
        lookup: impl FnOnce(&str) -> Result<FrameKey, String>,
    ) -> Result<Channel, FrameError> {
        let mut wire = Clear::new(stream)?;
        let body = wire.recv_strict(deadline, cancel)?;
        wire.answer(&body, lookup)
    }

    /// [`Channel::accept`] for a connection whose opening frame (`body`, after its length) was
    /// read already: the coordinator reads openings itself, so that peers that never send one
    /// cost no handshake thread.
    pub fn accept_opening(
        stream: TcpStream,
        body: &[u8],
        lookup: impl FnOnce(&str) -> Result<FrameKey, String>,
    ) -> Result<Channel, FrameError> {
        let mut wire = Clear::new(stream)?;
        wire.received = 4 + body.len() as u64;
        wire.answer(body, lookup)
    }
}

impl Clear {
    /// The responder's half of the handshake, from the opening's body: find the site's key, check
    /// the opening with it, answer.
    fn answer(
        mut self,
        body: &[u8],
        lookup: impl FnOnce(&str) -> Result<FrameKey, String>,
    ) -> Result<Channel, FrameError> {
        let wire = &mut self;
        let opening = decode_opening(body)?;
        let key = lookup(&opening.site).map_err(FrameError::Refused)?;
        let mut hs = handshake(&key, &opening.site, false)?;
        let mut msg = [0u8; 256];
        hs.read_message(&opening.noise, &mut msg)?;
        let n = hs.write_message(&[], &mut msg)?;
        wire.send(&msg[..n])?;
        self.into_channel(hs)
    }
}

impl Channel {
    fn with_tx<R>(&self, f: impl FnOnce(&mut Tx) -> R) -> R {
        let mut tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut tx)
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
        self.recv_capped(deadline, cancel, MAX_FRAME)
    }

    /// [`Channel::recv`] with the handshake's size limit: for the first data frame, which a peer
    /// replaying a recorded handshake could still send.
    pub fn recv_small<T: DeserializeOwned>(
        &mut self,
        deadline: Instant,
        cancel: Option<&AtomicBool>,
    ) -> Result<T, FrameError> {
        self.recv_capped(deadline, cancel, MAX_HANDSHAKE_FRAME)
    }

    fn recv_capped<T: DeserializeOwned>(
        &mut self,
        deadline: Instant,
        cancel: Option<&AtomicBool>,
        limit: usize,
    ) -> Result<T, FrameError> {
        let (len, until) = read_len(&self.stream, deadline, cancel, limit, false)?;
        self.bytes_received += 4 + len as u64;
        let read = |buf: &mut [u8]| read_exact_until(&self.stream, buf, until, cancel);
        let skip = |n: usize| skip(&self.stream, n, until, cancel);
        // Read and open one message at a time, so opening overlaps the transfer. A frame that
        // fails is still read to its end, so the stream stays in step.
        let mut version = [0u8; 1];
        let Some(sealed) = len.checked_sub(1) else {
            return Err(FrameError::Decode("empty frame".into()));
        };
        read(&mut version)?;
        let checked = match version[0] {
            VERSION => message_count(sealed),
            v => Err(FrameError::Version(v)),
        };
        let count = match checked {
            Ok(count) => count,
            Err(e) => {
                skip(sealed)?;
                return Err(e);
            }
        };
        let mut plain = vec![0u8; sealed - count * TAG];
        let mut message = vec![0u8; sealed.min(CHUNK)];
        let (mut at, mut left) = (0, sealed);
        for i in 0..count {
            let n = left.min(CHUNK);
            read(&mut message[..n])?;
            left -= n;
            let opened = self.noise.read_message(
                self.recv_seq + i as u64,
                &message[..n],
                &mut plain[at..at + n - TAG],
            );
            match opened {
                Ok(m) => at += m,
                Err(e) => {
                    skip(left)?;
                    return Err(e.into());
                }
            }
        }
        let payload = decode_plain(&plain)?;
        // Only a whole frame moves the nonce on.
        self.recv_seq += count as u64;
        postcard::from_bytes(payload).map_err(|e| FrameError::Decode(e.to_string()))
    }
}

/// Read and drop the rest of a frame that failed, by `until`.
fn skip(
    stream: &TcpStream,
    mut bytes: usize,
    until: Instant,
    cancel: Option<&AtomicBool>,
) -> Result<(), FrameError> {
    let mut sink = vec![0u8; bytes.min(CHUNK)];
    while bytes > 0 {
        let n = bytes.min(sink.len());
        read_exact_until(stream, &mut sink[..n], until, cancel)?;
        bytes -= n;
    }
    Ok(())
}

/// The slowest rate a frame may arrive at once it has begun, beyond the first seconds: a site
/// on a thin link sends a large block in its own time, a peer trickling bytes does not hold a
/// reader for ever.
const MIN_RATE: f64 = 64.0 * 1024.0;

/// Wait for a frame and read its length, refusing lengths over `limit` before reading on. Returns
/// the length and the time by which the whole frame must have arrived: `deadline` itself for a
/// `strict` (handshake) frame; else at least 5 s, and what `MIN_RATE` needs for its length.
fn read_len(
    stream: &TcpStream,
    deadline: Instant,
    cancel: Option<&AtomicBool>,
    limit: usize,
    strict: bool,
) -> Result<(usize, Instant), FrameError> {
    wait_readable(stream, deadline, cancel)?;
    let began = Instant::now();
    let grace = |d: Duration| {
        if strict {
            deadline
        } else {
            deadline.max(began + d)
        }
    };
    let mut len = [0u8; 4];
    read_exact_until(stream, &mut len, grace(Duration::from_secs(5)), cancel)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > limit {
        return Err(FrameError::TooLarge { len, limit });
    }
    let transfer = Duration::from_secs(5) + Duration::from_secs_f64(len as f64 / MIN_RATE);
    Ok((len, grace(transfer)))
}

/// Read one handshake frame's body (after its length), by `deadline` at the latest.
fn read_frame(
    stream: &TcpStream,
    deadline: Instant,
    cancel: Option<&AtomicBool>,
    limit: usize,
) -> Result<Vec<u8>, FrameError> {
    let (len, until) = read_len(stream, deadline, cancel, limit, true)?;
    let mut body = vec![0u8; len];
    read_exact_until(stream, &mut body, until, cancel)?;
    Ok(body)
}

/// Which of `channels` have bytes (or an end) to read, waiting up to `wait` for any: one
/// `poll` for many sites, where a thread each would wake each of them to look.
pub fn readable<'a>(channels: impl Iterator<Item = &'a Channel>, wait: Duration) -> Vec<bool> {
    use std::os::fd::AsRawFd;
    let mut fds: Vec<libc::pollfd> = channels
        .map(|c| libc::pollfd {
            fd: c.stream.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = wait.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `fds` is a live, initialised array of `fds.len()` pollfd, and every descriptor
    // belongs to a channel borrowed for the call. An interrupted poll reports none ready.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    fds.iter().map(|f| n > 0 && f.revents != 0).collect()
}

/// Fill `buf` by `until`, however the peer spreads its bytes: one deadline for the whole read,
/// not one per `read()` (a byte every few seconds would otherwise hold a reader for hours).
fn read_exact_until(
    mut stream: &TcpStream,
    buf: &mut [u8],
    until: Instant,
    cancel: Option<&AtomicBool>,
) -> Result<(), FrameError> {
    let started = Instant::now();
    let mut at = 0;
    while at < buf.len() {
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(FrameError::Cancelled);
        }
        let now = Instant::now();
        if now >= until {
            return Err(FrameError::Timeout((now - started).as_secs_f64()));
        }
        let slice = (until - now).min(Duration::from_millis(100));
        stream.set_read_timeout(Some(slice.max(Duration::from_millis(1))))?;
        match stream.read(&mut buf[at..]) {
            Ok(0) => return Err(FrameError::Closed),
            Ok(n) => at += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Err(FrameError::Closed)
            }
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(())
}

fn wait_readable(
    stream: &TcpStream,
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
        stream.set_read_timeout(Some(slice.max(Duration::from_millis(1))))?;
        match stream.peek(&mut probe) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    /// Both ends of a handshake over loopback: the agent's result, then the coordinator's.
    fn handshake_pair(
        key_a: FrameKey,
        key_c: FrameKey,
    ) -> (Result<Channel, FrameError>, Result<Channel, FrameError>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let agent = std::thread::spawn(move || {
            Channel::connect(TcpStream::connect(addr).unwrap(), &key_a, "site-1", soon())
        });
        let (c, _) = l.accept().unwrap();
        let coordinator = Channel::accept(c, soon(), None, |site| {
            assert_eq!(site, "site-1");
            Ok(key_c)
        });
        (agent.join().unwrap(), coordinator)
    }

    fn pair(key: FrameKey) -> (Channel, Channel) {
        let (a, c) = handshake_pair(key, key);
        (a.unwrap(), c.unwrap())
    }

    /// One whole frame as it travels, read off the socket without opening it.
    fn raw_frame(mut stream: &TcpStream) -> Vec<u8> {
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).unwrap();
        let mut frame = len.to_vec();
        frame.resize(4 + u32::from_be_bytes(len) as usize, 0);
        stream.read_exact(&mut frame[4..]).unwrap();
        frame
    }

    #[test]
    fn frames_round_trip_and_count_bytes_on_the_wire() {
        let (mut a, mut c) = pair([7; 32]);
        a.send(&(1u32, vec![1.5f64, -2.0])).unwrap();
        let got: (u32, Vec<f64>) = c.recv(soon(), None).unwrap();
        assert_eq!(got, (1, vec![1.5, -2.0]));
        // A frame far over the handshake limit is fine once authenticated.
        let big = vec![3u8; 1 << 20];
        c.send(&big).unwrap();
        assert_eq!(a.recv::<Vec<u8>>(soon(), None).unwrap(), big);
        assert_eq!(a.bytes_sent(), c.bytes_received);
        assert_eq!(c.bytes_sent(), a.bytes_received);
        // The handshake's bytes count too: 4 + 1 + the opening, and 4 + 1 + 48 back.
        assert!(
            a.bytes_sent() > 5 + 48 + 5 + 8 + 1 + 16,
            "{}",
            a.bytes_sent()
        );
        assert!(
            a.bytes_received > (1 << 20) + 5 + 48,
            "{}",
            a.bytes_received
        );
    }

    /// A loopback relay to `target` that forwards one connection both ways and keeps every
    /// byte it saw: what an observer on the wire gets.
    fn eavesdropper(target: std::net::SocketAddr) -> (std::net::SocketAddr, Arc<Mutex<Vec<u8>>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            let (inside, _) = l.accept().unwrap();
            let outside = TcpStream::connect(target).unwrap();
            let pipe = |mut from: TcpStream, mut to: TcpStream, log: Arc<Mutex<Vec<u8>>>| {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 1 << 16];
                    while let Ok(n @ 1..) = from.read(&mut buf) {
                        log.lock().unwrap().extend_from_slice(&buf[..n]);
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Write);
                })
            };
            pipe(
                inside.try_clone().unwrap(),
                outside.try_clone().unwrap(),
                log.clone(),
            );
            pipe(outside, inside, log);
        });
        (addr, seen)
    }

    #[test]
    fn frames_are_encrypted_and_only_the_site_name_is_clear() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let (relay, seen) = eavesdropper(l.local_addr().unwrap());
        let key = [0x5e; 32];
        let agent = std::thread::spawn(move || {
            let mut a =
                Channel::connect(TcpStream::connect(relay).unwrap(), &key, "site-1", soon())
                    .unwrap();
            a.send(&"the site's secret statistic 123456789".to_string())
                .unwrap();
            let answer: String = a.recv(soon(), None).unwrap();
            (a, answer)
        });
        let (c, _) = l.accept().unwrap();
        let mut c = Channel::accept(c, soon(), None, |_| Ok(key)).unwrap();
        let got: String = c.recv(soon(), None).unwrap();
        assert_eq!(got, "the site's secret statistic 123456789");
        c.send(&"the coordinator's answer 987654321".to_string())
            .unwrap();
        let (a, answer) = agent.join().unwrap();
        assert_eq!(answer, "the coordinator's answer 987654321");
        let seen = seen.lock().unwrap().clone();
        let has = |needle: &[u8]| seen.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"site-1"), "the opening names the site in the clear");
        for secret in [
            b"statistic".as_slice(),
            b"123456789",
            b"answer",
            b"987654321",
            &key,
        ] {
            assert!(
                !has(secret),
                "{:?} readable on the wire",
                String::from_utf8_lossy(secret)
            );
        }
        // The counters count exactly what crossed the wire, handshake included.
        assert_eq!(seen.len() as u64, a.bytes_sent() + a.bytes_received);
        assert_eq!(a.bytes_sent(), c.bytes_received);
    }

    #[test]
    fn wrong_key_is_refused_at_the_handshake() {
        let (a, c) = handshake_pair([1; 32], [2; 32]);
        assert!(matches!(c, Err(FrameError::BadTag)), "{:?}", c.err());
        // The agent hears nothing back: the coordinator closed the connection.
        assert!(a.is_err());
    }

    #[test]
    fn unknown_site_is_refused_with_the_reason() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let agent = std::thread::spawn(move || {
            Channel::connect(
                TcpStream::connect(addr).unwrap(),
                &[1; 32],
                "nobody",
                soon(),
            )
        });
        let (c, _) = l.accept().unwrap();
        let r = Channel::accept(c, soon(), None, |site| {
            Err(format!("unknown site {site:?}"))
        });
        assert!(
            matches!(&r, Err(FrameError::Refused(m)) if m == "unknown site \"nobody\""),
            "{:?}",
            r.err()
        );
        assert!(agent.join().unwrap().is_err());
    }

    #[test]
    fn reflected_frame_is_refused() {
        // A frame the coordinator sent, echoed back to it, must not open: each direction has
        // its own key.
        let (a, mut c) = pair([3; 32]);
        c.send(&9u8).unwrap();
        let raw = raw_frame(&a.stream);
        (&*a.stream).write_all(&raw).unwrap();
        assert!(matches!(
            c.recv::<u8>(soon(), None),
            Err(FrameError::BadTag)
        ));
    }

    #[test]
    fn tampered_frame_is_refused() {
        let (mut a, mut c) = pair([3; 32]);
        a.send(&"pay site-2".to_string()).unwrap();
        let mut raw = raw_frame(&c.stream);
        for flip in [4 + 1 + 3, raw.len() - 1] {
            raw[flip] ^= 1;
            (&*a.stream).write_all(&raw).unwrap();
            assert!(
                matches!(c.recv::<String>(soon(), None), Err(FrameError::BadTag)),
                "byte {flip} flipped"
            );
            raw[flip] ^= 1;
        }
        // The version byte is checked before anything else.
        raw[4] = 1;
        (&*a.stream).write_all(&raw).unwrap();
        assert!(matches!(
            c.recv::<String>(soon(), None),
            Err(FrameError::Version(1))
        ));
        // Untouched, the same frame opens: only the tampering was refused.
        raw[4] = VERSION;
        (&*a.stream).write_all(&raw).unwrap();
        assert_eq!(c.recv::<String>(soon(), None).unwrap(), "pay site-2");
        // A frame of two messages whose first is tampered fails whole, yet is read to its end,
        // so the next frame still opens.
        let long = "x".repeat(100_000);
        a.send(&long).unwrap();
        let mut raw = raw_frame(&c.stream);
        raw[4 + 1 + 10] ^= 1;
        (&*a.stream).write_all(&raw).unwrap();
        assert!(matches!(
            c.recv::<String>(soon(), None),
            Err(FrameError::BadTag)
        ));
        raw[4 + 1 + 10] ^= 1;
        (&*a.stream).write_all(&raw).unwrap();
        assert_eq!(c.recv::<String>(soon(), None).unwrap(), long);
    }

    #[test]
    fn a_frame_cut_short_is_refused() {
        // 200 KB travels as four Noise messages; dropping the last one (and fixing the length
        // prefix to match) leaves three that each verify, but the frame's sealed length does not.
        let (mut a, mut c) = pair([8; 32]);
        let big = vec![1u8; 200_000];
        a.send(&big).unwrap();
        let raw = raw_frame(&c.stream);
        let cut = 4 + 1 + 3 * CHUNK;
        assert!(raw.len() > cut + TAG);
        let mut short = raw[..cut].to_vec();
        short[..4].copy_from_slice(&((cut - 4) as u32).to_be_bytes());
        (&*a.stream).write_all(&short).unwrap();
        let r = c.recv::<Vec<u8>>(soon(), None);
        assert!(matches!(r, Err(FrameError::Decode(_))), "{:?}", r.err());
        (&*a.stream).write_all(&raw).unwrap();
        assert_eq!(c.recv::<Vec<u8>>(soon(), None).unwrap(), big);
    }

    #[test]
    fn replayed_and_reordered_frames_are_refused() {
        let (mut a, mut c) = pair([6; 32]);
        a.send(&0u32).unwrap();
        a.send(&1u32).unwrap();
        let first = raw_frame(&c.stream);
        let second = raw_frame(&c.stream);
        // Out of order: the second frame where the first is due.
        (&*a.stream).write_all(&second).unwrap();
        assert!(matches!(
            c.recv::<u32>(soon(), None),
            Err(FrameError::BadTag)
        ));
        // In order: accepted.
        (&*a.stream).write_all(&first).unwrap();
        assert_eq!(c.recv::<u32>(soon(), None).unwrap(), 0);
        // The first frame again: a replay.
        (&*a.stream).write_all(&first).unwrap();
        assert!(matches!(
            c.recv::<u32>(soon(), None),
            Err(FrameError::BadTag)
        ));
        (&*a.stream).write_all(&second).unwrap();
        assert_eq!(c.recv::<u32>(soon(), None).unwrap(), 1);
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
        assert!(matches!(
            decode_opening(&[1, 0, 0]),
            Err(FrameError::Version(1))
        ));
        // A last message too short to hold its tag.
        let mut body = vec![VERSION; 1 + CHUNK + TAG + 1];
        assert!(decode_body(&body).is_ok());
        body.pop();
        assert!(matches!(decode_body(&body), Err(FrameError::Decode(_))));
        // The sealed header must state the length that arrived.
        assert_eq!(decode_plain(&[VERSION, 0, 0, 0, 2, 7, 8]).unwrap(), [7, 8]);
        assert!(decode_plain(&[VERSION, 0, 0, 0, 3, 7, 8]).is_err());
        assert!(decode_plain(&[1, 0, 0, 0, 2, 7, 8]).is_err());
        let (a, mut c) = pair([1; 32]);
        (&*a.stream).write_all(&u32::MAX.to_be_bytes()).unwrap();
        assert!(matches!(
            c.recv::<u8>(soon(), None),
            Err(FrameError::TooLarge {
                limit: MAX_FRAME,
                ..
            })
        ));
    }

    #[test]
    fn frames_before_authentication_are_capped_small() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut peer = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (c, _) = l.accept().unwrap();
        // A first frame that claims 4 KiB + 1: refused from its length alone, at once, without
        // waiting for (or allocating) the body.
        peer.write_all(&(MAX_HANDSHAKE_FRAME as u32 + 1).to_be_bytes())
            .unwrap();
        let started = Instant::now();
        let r = Channel::accept(c, soon(), None, |_| Ok([0; 32]));
        assert!(
            matches!(
                r,
                Err(FrameError::TooLarge {
                    len: 4097,
                    limit: MAX_HANDSHAKE_FRAME
                })
            ),
            "{:?}",
            r.err()
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        // The agent's side caps the coordinator's answer the same way.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let agent = std::thread::spawn(move || {
            Channel::connect(
                TcpStream::connect(addr).unwrap(),
                &[1; 32],
                "site-1",
                soon(),
            )
        });
        let (mut c, _) = l.accept().unwrap();
        let _opening = raw_frame(&c);
        c.write_all(&(1u32 << 20).to_be_bytes()).unwrap();
        assert!(matches!(
            agent.join().unwrap(),
            Err(FrameError::TooLarge {
                limit: MAX_HANDSHAKE_FRAME,
                ..
            })
        ));
        // After the handshake, the first data frame can be read with the small cap too.
        let (mut a, mut c) = pair([2; 32]);
        a.send(&vec![0u8; MAX_HANDSHAKE_FRAME]).unwrap();
        assert!(matches!(
            c.recv_small::<Vec<u8>>(soon(), None),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn silence_times_out() {
        let (_a, mut c) = pair([1; 32]);
        let r = c.recv::<u8>(Instant::now() + Duration::from_millis(200), None);
        assert!(matches!(r, Err(FrameError::Timeout(_))));
    }

    /// `cargo test --release -p fedsim --lib frame::tests::throughput -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement: run it in release"]
    fn throughput_of_a_64_mib_round_trip() {
        use crate::federation::Message;
        let later = || Instant::now() + Duration::from_secs(120);
        let (mut a, mut c) = pair([4; 32]);
        let body = vec![0x5a_u8; 64 << 20];
        let echo = std::thread::spawn(move || {
            for _ in 0..5 {
                let Message::Reply { body, .. } = c.recv(later(), None).unwrap() else {
                    panic!("expected a Reply")
                };
                c.send(&Message::Task {
                    round: 1,
                    body,
                    sites: 1,
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
            let Message::Task { body: back, .. } = a.recv(later(), None).unwrap() else {
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
}
