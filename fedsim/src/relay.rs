//! The link a local or ssh site is behind (`[[links]]`), made real by a relay the controller
//! runs for the site: the site dials the relay instead of the coordinator, and every byte either
//! way waits as it would on the link. The relay is TCP to both sides, so it shapes any
//! protocol: fedsim's frames, or a third-party platform's.
//!
//! The model, per direction and per chunk the relay reads (at most 16 KiB):
//! - the link sends one chunk at a time at `rate_kbit` (a chunk waits for the one before it);
//! - it arrives half the round trip (`delay_ms / 2`) later, plus jitter drawn uniformly within
//!   ± `jitter_ms / 2`, never before the chunk before it (TCP does not reorder);
//! - each of its 1448-byte segments is lost with probability `loss_pct`, and a lost segment
//!   costs a retransmission: Linux's minimum retransmission timeout, 200 ms, or the round
//!   trip if that is longer. TCP hides the loss and shows the delay; the chunks behind wait
//!   for it (head-of-line blocking);
//! - while the link is down (`down`), nothing is sent, and what arrives during an outage
//!   arrives when it ends.
//!
//! Jitter and loss are drawn from the scenario's seed and the site's place, so a run's delays
//! repeat.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::scenario::SiteLink;

/// The most a chunk holds.
const CHUNK: usize = 16 * 1024;
/// A TCP segment's payload on Ethernet (1500 bytes less IP and TCP headers with timestamps).
const SEGMENT: usize = 1448;
/// Linux's minimum retransmission timeout.
const MIN_RTO: Duration = Duration::from_millis(200);

/// One site's link, in the units the relay computes with.
#[derive(Debug, Clone)]
struct Shape {
    one_way: Duration,
    jitter: Duration,
    loss: f64,
    /// Seconds per byte (0: no limit).
    per_byte: f64,
    /// Outages, from the run's start.
    down: Vec<(Duration, Duration)>,
    rto: Duration,
}

impl Shape {
    fn of(link: &SiteLink) -> Shape {
        let rtt = Duration::from_secs_f64(link.delay_ms.unwrap_or(0.0) / 1000.0);
        Shape {
            one_way: rtt / 2,
            jitter: Duration::from_secs_f64(link.jitter_ms.unwrap_or(0.0) / 1000.0),
            loss: link.loss_pct.unwrap_or(0.0) / 100.0,
            per_byte: link.rate_kbit.map_or(0.0, |r| 8.0 / (r * 1000.0)),
            down: link
                .down
                .iter()
                .map(|(a, b)| (Duration::from_secs_f64(*a), Duration::from_secs_f64(*b)))
                .collect(),
            rto: MIN_RTO.max(rtt),
        }
    }

    /// `t` (from the run's start) moved past any outage it falls in.
    fn up_at(&self, mut t: Duration) -> Duration {
        while let Some(&(_, end)) = self.down.iter().find(|(a, b)| *a <= t && t < *b) {
            t = end;
        }
        t
    }
}

/// One direction of one connection: when each chunk arrives. The relay runs it on the real
/// clock; the simulated clock (`clock`) runs the same model on its own.
pub struct Direction {
    shape: Shape,
    rng: ChaCha8Rng,
    /// When the link is free to send again, and when the last chunk arrived.
    free: Duration,
    last: Duration,
}

/// Which way the bytes go.
#[derive(Debug, Clone, Copy)]
pub enum Way {
    /// From the site to the coordinator.
    Up = 1,
    /// From the coordinator to the site.
    Down = 2,
}

impl Direction {
    /// The `connection`-th connection (from 1) of the `i`-th linked site, one way: its draws
    /// come from the run's seed and these, so the real and the simulated clock draw alike.
    pub fn new(link: &SiteLink, seed: u64, i: usize, connection: u64, way: Way) -> Direction {
        Direction {
            shape: Shape::of(link),
            rng: ChaCha8Rng::seed_from_u64(
                seed ^ ((i as u64) << 32) ^ (connection << 8) ^ way as u64,
            ),
            free: Duration::ZERO,
            last: Duration::ZERO,
        }
    }

    /// When a message of `bytes` sent at `now` has arrived, read as the relay reads it: in
    /// chunks of at most 16 KiB.
    pub fn message(&mut self, bytes: u64, now: Duration) -> Duration {
        let mut left = bytes as usize;
        let mut at = self.arrival(left.min(CHUNK), now);
        while left > CHUNK {
            left -= CHUNK;
            at = self.arrival(left.min(CHUNK), now);
        }
        at
    }

    /// The arrival time (from the run's start) of `bytes` read at `now`.
    fn arrival(&mut self, bytes: usize, now: Duration) -> Duration {
        let s = &self.shape;
        let start = s.up_at(now.max(self.free));
        let sent = start + Duration::from_secs_f64(bytes as f64 * s.per_byte);
        self.free = sent;
        let jitter = if s.jitter.is_zero() {
            0.0
        } else {
            self.rng.random_range(-0.5..0.5) * s.jitter.as_secs_f64()
        };
        let mut at = (sent + s.one_way).as_secs_f64() + jitter;
        if s.loss > 0.0 {
            let segments = bytes.div_ceil(SEGMENT);
            let lost = (0..segments)
                .filter(|_| self.rng.random::<f64>() < s.loss)
                .count();
            at += lost as f64 * s.rto.as_secs_f64();
        }
        let at = s.up_at(Duration::from_secs_f64(at.max(0.0))).max(self.last);
        self.last = at;
        at
    }
}

/// Pump `from` into `to` through the link: a reader that stamps each chunk with its arrival,
/// and a writer that delivers it then.
fn pump(
    mut from: TcpStream,
    to: TcpStream,
    mut dir: Direction,
    epoch: Instant,
    tap: Tap,
    carried: Arc<AtomicU64>,
) {
    let (tx, rx) = mpsc::channel::<(Duration, Vec<u8>)>();
    let mut writer = to;
    std::thread::spawn(move || {
        for (at, chunk) in rx {
            if let Some(wait) = at.checked_sub(epoch.elapsed()) {
                std::thread::sleep(wait);
            }
            if writer.write_all(&chunk).is_err() {
                let _ = writer.shutdown(Shutdown::Both);
                return;
            }
        }
        // The sender closed its side: so does the link, once everything is delivered.
        let _ = writer.shutdown(Shutdown::Write);
    });
    let mut buf = vec![0u8; CHUNK];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                carried.fetch_add(n as u64, Ordering::Relaxed);
                if let Some(t) = &tap {
                    if let Ok(mut f) = t.lock() {
                        let _ = f.write_all(&buf[..n]);
                    }
                }
                let at = dir.arrival(n, epoch.elapsed());
                if tx.send((at, buf[..n].to_vec())).is_err() {
                    break;
                }
            }
        }
    }
}

/// Test hook: every byte the relays carry, both ways, appended to the file `FEDSIM_RECORD_RELAY`
/// names (what an eavesdropper on the link would see).
type Tap = Option<Arc<std::sync::Mutex<std::fs::File>>>;

/// The relays of a run's linked sites.
pub struct Relays {
    addrs: BTreeMap<String, SocketAddr>,
    stop: Arc<AtomicBool>,
    /// Bytes carried so far, every site together: to the coordinator, and back.
    carried: [Arc<AtomicU64>; 2],
}

impl Relays {
    /// A relay for each of `links` (site, link), listening on `coordinator`'s address (so that
    /// whoever can reach the coordinator can reach it) and forwarding to the coordinator. Their
    /// outages count from now.
    pub fn start(
        links: &[(String, SiteLink)],
        coordinator: SocketAddr,
        seed: u64,
    ) -> std::io::Result<Relays> {
        let stop = Arc::new(AtomicBool::new(false));
        let epoch = Instant::now();
        let tap: Tap = std::env::var_os("FEDSIM_RECORD_RELAY")
            .and_then(|p| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .ok()
            })
            .map(|f| Arc::new(std::sync::Mutex::new(f)));
        let mut addrs = BTreeMap::new();
        let carried: [Arc<AtomicU64>; 2] = Default::default();
        for (i, (site, link)) in links.iter().enumerate() {
            let listener = TcpListener::bind(SocketAddr::new(coordinator.ip(), 0))?;
            listener.set_nonblocking(true)?;
            addrs.insert(site.clone(), listener.local_addr()?);
            let (link, stop, site, tap) = (link.clone(), stop.clone(), site.clone(), tap.clone());
            let [up_bytes, down_bytes] = carried.clone();
            let shape = Some(link.describe()).filter(|d| !d.is_empty());
            let shape = shape.unwrap_or_else(|| "none (counts bytes only)".into());
            tracing::info!(phase = "launch", %site, link = %shape, relay = %listener.local_addr()?, "link relay listening");
            std::thread::spawn(move || {
                let mut connection = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let Ok((inbound, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    let Ok(outbound) = TcpStream::connect(coordinator) else {
                        continue;
                    };
                    let _ = inbound.set_nonblocking(false);
                    let _ = (inbound.set_nodelay(true), outbound.set_nodelay(true));
                    connection += 1;
                    let up = Direction::new(&link, seed, i, connection, Way::Up);
                    let down = Direction::new(&link, seed, i, connection, Way::Down);
                    let (a, b) = match (inbound.try_clone(), outbound.try_clone()) {
                        (Ok(a), Ok(b)) => (a, b),
                        _ => continue,
                    };
                    let (tap2, count) = (tap.clone(), up_bytes.clone());
                    std::thread::spawn(move || pump(inbound, outbound, up, epoch, tap2, count));
                    let (tap2, count) = (tap.clone(), down_bytes.clone());
                    std::thread::spawn(move || pump(b, a, down, epoch, tap2, count));
                }
                tracing::debug!(%site, "link relay stopped");
            });
        }
        Ok(Relays {
            addrs,
            stop,
            carried,
        })
    }

    /// Where each linked site dials instead of the coordinator.
    pub fn addrs(&self) -> BTreeMap<String, SocketAddr> {
        self.addrs.clone()
    }

    /// The bytes the relays have carried so far, every site together, as each end read them:
    /// (to the coordinator, back to the sites).
    pub fn carried(&self) -> (u64, u64) {
        (
            self.carried[0].load(Ordering::Relaxed),
            self.carried[1].load(Ordering::Relaxed),
        )
    }
}

impl Drop for Relays {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn direction(link: SiteLink) -> Direction {
        Direction::new(&link, 1, 0, 1, Way::Up)
    }

    /// A relay with no link to shape passes every byte as it comes, and counts them each way.
    #[test]
    fn a_relay_counts_the_bytes_it_carries_each_way() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let coordinator = server.local_addr().unwrap();
        let echo = std::thread::spawn(move || {
            let (mut c, _) = server.accept().unwrap();
            let mut got = vec![0u8; 50_000];
            c.read_exact(&mut got).unwrap();
            c.write_all(&got[..20_000]).unwrap();
        });
        let relays = Relays::start(&[("s".into(), SiteLink::default())], coordinator, 1).unwrap();
        let mut site = TcpStream::connect(relays.addrs()["s"]).unwrap();
        site.write_all(&[7u8; 50_000]).unwrap();
        let mut back = vec![0u8; 20_000];
        site.read_exact(&mut back).unwrap();
        echo.join().unwrap();
        assert_eq!(relays.carried(), (50_000, 20_000));
    }

    /// Half the round trip each way, the rate's serialisation, chunks in order.
    #[test]
    fn a_chunk_arrives_after_its_sending_and_half_the_round_trip() {
        let mut d = direction(SiteLink {
            delay_ms: Some(100.0),
            rate_kbit: Some(8_000.0),
            ..Default::default()
        });
        // 10 000 bytes at 1 MB/s: 10 ms to send, then 50 ms on the way.
        let t = d.arrival(10_000, Duration::ZERO);
        assert!((t.as_secs_f64() - 0.060).abs() < 1e-9, "{t:?}");
        // The next one waits for the link.
        let t = d.arrival(10_000, Duration::ZERO);
        assert!((t.as_secs_f64() - 0.070).abs() < 1e-9, "{t:?}");
    }

    /// Each lost segment costs a retransmission timeout; an outage holds everything to its end.
    #[test]
    fn loss_costs_retransmissions_and_an_outage_holds_the_link() {
        let mut d = direction(SiteLink {
            loss_pct: Some(100.0),
            ..Default::default()
        });
        // Three segments, all lost once: 3 x 200 ms.
        let t = d.arrival(3 * SEGMENT, Duration::ZERO);
        assert!((t.as_secs_f64() - 0.6).abs() < 1e-9, "{t:?}");
        let mut d = direction(SiteLink {
            delay_ms: Some(20.0),
            down: vec![(1.0, 3.0)],
            ..Default::default()
        });
        let t = d.arrival(100, Duration::from_secs(2));
        assert!((t.as_secs_f64() - 3.01).abs() < 1e-9, "{t:?}");
    }
}
