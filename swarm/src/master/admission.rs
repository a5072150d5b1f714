//! How fast peers may join, and what the master refused.
//!
//! Joins are rate-limited per source address with token buckets: a rate
//! that admits a whole fleet behind one address joining at once (the fleet
//! simulator's 10,000 workers at 1,000 a second) and turns a flood of tens
//! of thousands a second into a trickle. The `reconnect` answer to a peer
//! the master does not know is rate-limited as well, so a flood of
//! heartbeats from strangers cannot make the master write as much back.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Joins accepted per second from one source address, sustained.
pub const JOIN_RATE: f64 = 1_000.0;

/// Joins accepted at once from one source address (the bucket's size).
pub const JOIN_BURST: f64 = 1_000.0;

/// `reconnect` answers to unknown peers per second, all peers together:
/// workers whose connection broke join on their own when it comes back;
/// this answer is only for the rare worker a live connection forgot.
pub const RECONNECT_RATE: f64 = 200.0;

/// Sources whose join buckets are kept; a full bucket is forgotten first.
const SOURCES: usize = 4096;

/// A token bucket: `rate` tokens a second, at most `burst` kept.
#[derive(Debug, Clone)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
    rate: f64,
    burst: f64,
}

impl Bucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64) -> Self {
        Bucket {
            tokens: burst,
            at: Instant::now(),
            rate,
            burst,
        }
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens + elapsed * self.rate >= self.burst
    }
}

/// Join buckets per source address.
#[derive(Debug, Default)]
pub struct Joins {
    sources: HashMap<IpAddr, Bucket>,
}

impl Joins {
    /// Whether a join from `source` is admitted now.
    pub fn admit(&mut self, source: IpAddr, now: Instant) -> bool {
        if self.sources.len() >= SOURCES && !self.sources.contains_key(&source) {
            // A full bucket is the same as no bucket: forget those.
            self.sources.retain(|_, bucket| !bucket.is_full(now));
            if self.sources.len() >= SOURCES {
                self.sources.clear();
            }
        }
        self.sources
            .entry(source)
            .or_insert_with(|| Bucket::new(JOIN_RATE, JOIN_BURST))
            .take(now)
    }
}

/// Frames the master dropped unread, by why: our extension in
/// `/stats/requests` as `refused_frames`, so an operator (and a test) sees
/// that someone tried.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusals {
    /// Frames that were not a Locust message (bad msgpack, bad shape).
    pub malformed: u64,
    /// Frames whose `node_id` is not the sender's socket identity.
    pub wrong_node_id: u64,
    /// Messages other than `client_ready` from a connection that has not
    /// joined (or joined under another identity, or was replaced).
    pub not_joined: u64,
    /// `client_ready`s over the join rate of their source address.
    pub join_rate: u64,
    /// `stats` reports among `not_joined`: never merged.
    pub stats_not_joined: u64,
    /// `stats` reports of a joined worker that were merged already: sent
    /// again after a reconnect (not counted in [`Refusals::total`]: nothing
    /// hostile about them).
    #[serde(default)]
    pub duplicate_stats: u64,
    /// Frames a peer sent while more than a thousand of its frames waited
    /// behind one of its own still decoding (`decoding.rs`).
    #[serde(default)]
    pub behind_slow_frame: u64,
}

impl Refusals {
    /// Every frame dropped, whatever the reason.
    pub fn total(&self) -> u64 {
        self.malformed
            .saturating_add(self.wrong_node_id)
            .saturating_add(self.not_joined)
            .saturating_add(self.join_rate)
            .saturating_add(self.behind_slow_frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_admits_its_burst_then_its_rate() {
        let start = Instant::now();
        let mut bucket = Bucket::new(10.0, 5.0);
        let taken = (0..100).filter(|_| bucket.take(start)).count();
        assert_eq!(taken, 5);
        assert!(bucket.take(start + Duration::from_millis(100)));
        assert!(!bucket.take(start + Duration::from_millis(100)));
    }

    #[test]
    fn a_fleet_behind_one_address_joins_and_a_flood_does_not() {
        let start = Instant::now();
        let mut joins = Joins::default();
        let one = IpAddr::from([10, 0, 0, 1]);
        // 10,000 workers at 1,000 a second: all in.
        let admitted = (0..10_000u64)
            .filter(|i| joins.admit(one, start + Duration::from_millis(*i)))
            .count();
        assert_eq!(admitted, 10_000);
        // 50,000 in one second from another: about burst + rate.
        let flood = IpAddr::from([10, 0, 0, 2]);
        let admitted = (0..50_000u64)
            .filter(|i| joins.admit(flood, start + Duration::from_micros(*i * 20)))
            .count();
        assert!(admitted <= 2_001, "{admitted}");
    }
}
