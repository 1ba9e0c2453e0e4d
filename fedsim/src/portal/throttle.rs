//! Password guessing at the portal, slowed down: failed logins per account and per source
//! address, each with a growing lock-out. Only failures count, so a thousand sites logging in
//! from one address (local sites all come from 127.0.0.1) are never held back, while a guesser
//! gets a handful of tries and then waits, without costing an argon2 hash per guess.
//!
//! Bounded: at most [`MAX_KEYS`] accounts and addresses are remembered (the oldest forgotten).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failures an account may have before it is locked out for a while.
pub const ACCOUNT_FREE: u32 = 5;
/// Failures an address may have (over every account it tries) before it is locked out.
pub const SOURCE_FREE: u32 = 100;
/// The longest lock-out; each failure past the free ones doubles it, from 1 s.
pub const MAX_LOCK: Duration = Duration::from_secs(60);
/// Accounts and addresses remembered at most.
pub const MAX_KEYS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    locked_until: Option<Instant>,
    last: Instant,
}

/// Failures of one kind of key (accounts, addresses).
struct Counter<K> {
    free: u32,
    records: HashMap<K, Record>,
}

impl<K: Hash + Eq + Clone> Counter<K> {
    fn new(free: u32) -> Self {
        Counter {
            free,
            records: HashMap::new(),
        }
    }

    /// Seconds `key` must still wait, if it is locked out now.
    fn wait(&self, key: &K, now: Instant) -> Option<u64> {
        let until = self.records.get(key)?.locked_until?;
        (until > now).then(|| ((until - now).as_secs_f64().ceil() as u64).max(1))
    }

    fn fail(&mut self, key: K, now: Instant) {
        if self.records.len() >= MAX_KEYS && !self.records.contains_key(&key) {
            let oldest = self
                .records
                .iter()
                .min_by_key(|(_, r)| r.last)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.records.remove(&k);
            }
        }
        let r = self.records.entry(key).or_insert(Record {
            failures: 0,
            locked_until: None,
            last: now,
        });
        r.failures += 1;
        r.last = now;
        if r.failures > self.free {
            let doublings = (r.failures - self.free - 1).min(16);
            let lock = Duration::from_secs(1 << doublings).min(MAX_LOCK);
            r.locked_until = Some(now + lock);
        }
    }

    fn succeed(&mut self, key: &K) {
        self.records.remove(key);
    }
}

/// Who is locked out of logging in, and for how long.
pub struct Throttle {
    accounts: Counter<String>,
    sources: Counter<IpAddr>,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            accounts: Counter::new(ACCOUNT_FREE),
            sources: Counter::new(SOURCE_FREE),
        }
    }
}

impl Throttle {
    /// Seconds to wait before `user` may try again from `source`, if either is locked out.
    pub fn wait(&self, user: &str, source: Option<IpAddr>) -> Option<u64> {
        let now = Instant::now();
        let account = self.accounts.wait(&user.to_string(), now);
        let address = source.and_then(|s| self.sources.wait(&s, now));
        account.max(address)
    }

    pub fn failed(&mut self, user: &str, source: Option<IpAddr>) {
        let now = Instant::now();
        self.accounts.fail(user.to_string(), now);
        if let Some(s) = source {
            self.sources.fail(s, now);
        }
    }

    /// A right password clears the account's failures (not the address's: a guesser that also
    /// holds one account must not reset its count with it).
    pub fn succeeded(&mut self, user: &str) {
        self.accounts.succeed(&user.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_past_the_free_ones_lock_out_for_growing_times() {
        let mut t = Throttle::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..ACCOUNT_FREE {
            assert_eq!(t.wait("north", Some(ip)), None);
            t.failed("north", Some(ip));
        }
        assert_eq!(t.wait("north", Some(ip)), None);
        t.failed("north", Some(ip));
        assert_eq!(t.wait("north", Some(ip)), Some(1));
        t.failed("north", Some(ip));
        assert_eq!(t.wait("north", Some(ip)), Some(2));
        // Another account from the same address is not held back by north's failures...
        assert_eq!(t.wait("south", Some(ip)), None);
        // ...until the address itself has failed too often.
        for i in 0..SOURCE_FREE {
            t.failed(&format!("guess-{i}"), Some(ip));
        }
        assert!(t.wait("south", Some(ip)).is_some());
        // The lock-out never grows past its cap.
        for _ in 0..50 {
            t.failed("north", None);
        }
        assert!(t.wait("north", None).unwrap() <= MAX_LOCK.as_secs());
        t.succeeded("north");
        assert_eq!(t.wait("north", None), None);
    }

    #[test]
    fn memory_is_bounded() {
        let mut t = Throttle::default();
        for i in 0..(MAX_KEYS + 50) {
            t.failed(&format!("user-{i}"), None);
        }
        assert!(t.accounts.records.len() <= MAX_KEYS);
    }
}
