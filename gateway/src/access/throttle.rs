//! Back-off after failed credentials, per key (a client address, an account).
//!
//! The first few failures cost nothing; each one after them doubles the wait before the
//! key may try again, up to a ceiling, so a guessing client slows to a crawl while a
//! user who mistyped is never locked out for good. A success forgets the key. Sans-IO:
//! the caller passes `now`.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// How the back-off grows.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Failures allowed before any wait.
    pub free: u32,
    /// The first wait; each later failure doubles it.
    pub base: Duration,
    /// The longest wait.
    pub max: Duration,
    /// A key with no failure for this long is forgotten.
    pub forget_after: Duration,
    /// Most keys remembered; beyond it the stalest are forgotten first.
    pub max_keys: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            free: 5,
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
            forget_after: Duration::from_secs(3600),
            max_keys: 100_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    until: Instant,
    last: Instant,
}

/// Failures per key, and until when each key must wait.
#[derive(Debug)]
pub struct Throttle<K> {
    policy: Policy,
    keys: HashMap<K, Entry>,
}

impl<K: Hash + Eq + Clone> Throttle<K> {
    /// An empty throttle.
    pub fn new(policy: Policy) -> Self {
        Self { policy, keys: HashMap::new() }
    }

    /// `Err(wait)` while `key` must still wait after its failures.
    pub fn check(&self, key: &K, now: Instant) -> Result<(), Duration> {
        match self.keys.get(key) {
            Some(e) if e.until > now => Err(e.until - now),
            _ => Ok(()),
        }
    }

    /// Counts a failure; returns the wait it imposes (zero while failures are free).
    pub fn failed(&mut self, key: K, now: Instant) -> Duration {
        self.prune(&key, now);
        let p = self.policy;
        let e = self.keys.entry(key).or_insert(Entry { failures: 0, until: now, last: now });
        e.failures = e.failures.saturating_add(1);
        e.last = now;
        let over = e.failures.saturating_sub(p.free);
        let wait = if over == 0 {
            Duration::ZERO
        } else {
            p.base.saturating_mul(1u32.checked_shl(over - 1).unwrap_or(u32::MAX)).min(p.max)
        };
        e.until = now + wait;
        wait
    }

    /// Forgets `key`'s failures.
    pub fn succeeded(&mut self, key: &K) {
        self.keys.remove(key);
    }

    /// Keys remembered now.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Makes room when full: keys not seen for `forget_after` go first, then the
    /// stalest half; `keep` (the key being counted) always stays.
    fn prune(&mut self, keep: &K, now: Instant) {
        if self.keys.len() < self.policy.max_keys {
            return;
        }
        let forget = self.policy.forget_after;
        self.keys.retain(|k, e| k == keep || now.saturating_duration_since(e.last) < forget);
        if self.keys.len() >= self.policy.max_keys {
            let mut lasts: Vec<Instant> = self.keys.values().map(|e| e.last).collect();
            lasts.sort_unstable();
            let cut = lasts[lasts.len() / 2];
            self.keys.retain(|k, e| k == keep || e.last > cut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy { max_keys: 8, ..Policy::default() }
    }

    #[test]
    fn five_free_failures_then_doubling_waits_up_to_the_ceiling() {
        let mut t = Throttle::new(policy());
        let mut now = Instant::now();
        for _ in 0..5 {
            assert_eq!(t.failed("ip", now), Duration::ZERO);
            assert!(t.check(&"ip", now).is_ok());
        }
        let mut waits = Vec::new();
        for _ in 0..12 {
            let w = t.failed("ip", now);
            assert_eq!(t.check(&"ip", now), Err(w));
            waits.push(w.as_secs());
            now += w;
            assert!(t.check(&"ip", now).is_ok(), "free to try once the wait is over");
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
    }

    #[test]
    fn success_forgets_and_other_keys_are_not_affected() {
        let mut t = Throttle::new(policy());
        let now = Instant::now();
        for _ in 0..7 {
            t.failed("a", now);
        }
        assert!(t.check(&"a", now).is_err());
        assert!(t.check(&"b", now).is_ok());
        t.succeeded(&"a");
        assert!(t.check(&"a", now).is_ok());
        assert_eq!(t.failed("a", now), Duration::ZERO, "counting starts again");
    }

    #[test]
    fn memory_is_bounded_by_max_keys() {
        let mut t = Throttle::new(policy());
        let mut now = Instant::now();
        for i in 0..1000u32 {
            for _ in 0..6 {
                t.failed(i, now);
            }
            now += Duration::from_millis(1);
            assert!(t.len() <= 8, "{} keys", t.len());
        }
        assert!(t.check(&999, now).is_err(), "the newest key is still throttled");
    }
}
