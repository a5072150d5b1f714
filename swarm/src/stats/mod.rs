//! Mergeable request statistics, shaped like Locust's so they travel in its
//! `stats` message unchanged.
//!
//! Response times live in Locust's rounded millisecond buckets
//! ([`bucket_ms`]) and, from our workers, in a microsecond histogram
//! ([`Hdr`]) beside them; every percentile is read off a merged histogram
//! (HDR when every report carried one, else the buckets), so the master's
//! p95 is the p95 of the union of all workers' samples, never an average
//! of per-worker figures. Merging is one method,
//! [`StatsEntry::extend`]; the runners only pass entries along.

mod csv;
mod entry;
mod errors;
mod hdr;
mod wire;

pub use csv::{
    civil_from_days, exceptions_csv, failures_csv, stats_csv, stats_history_csv_header,
    stats_history_csv_row,
};
pub use entry::{bucket_ms, StatsEntry, PERCENTILES_TO_REPORT};
pub use errors::{ErrorKey, ExceptionRow, StatsError};
pub use hdr::{Hdr, HdrError};
pub(crate) use wire::{as_u64 as wire_u64, value_text as wire_text, Fields};
pub use wire::{StatsReport, WireError};

/// Reads a msgpack map field by field (shared with the protocol module).
pub(crate) fn wire_fields<'a>(value: &'a rmpv::Value, what: &str) -> Result<Fields<'a>, WireError> {
    Fields::of(value, what)
}

use std::collections::BTreeMap;

/// The name Locust gives the total row.
pub const AGGREGATED: &str = "Aggregated";

/// Most request names (and error rows) kept apart; Locust's own UI lists
/// 500. Beyond this, requests still count in the `Aggregated` total. With
/// at most [`MAX_BUCKETS`] response-time buckets and a few dozen
/// per-second counters each, this bounds what a peer can make the master
/// keep to about 2,000 × 4,000 counters, whatever it sends.
pub const MAX_ROWS: usize = 2_000;

/// The most distinct response-time buckets a row can have: Locust's
/// rounding (1 ms below 100 ms, then 10, 100 and 1,000 ms) up to
/// [`MAX_BUCKET_MS`](entry::MAX_BUCKET_MS), an hour.
pub const MAX_BUCKETS: usize = 100 + 90 + 90 + 3_590;

/// How far ahead of the master's clock a worker's per-second counters
/// may be and still count for the current rates (clocks of a fleet's hosts
/// agree to well within a second; a far-future second would never be
/// trimmed).
pub const CLOCK_AHEAD_SECS: i64 = 10;

/// Names whose microsecond histogram the master keeps (about 200 KiB
/// each); further names, and every name once a report without a histogram
/// (a Locust worker's) is merged in, read their percentiles off Locust's
/// buckets. The `Aggregated` total always keeps one while it can.
pub const MAX_HDR_ROWS: usize = 100;

/// How many seconds of per-second counters are kept for current rates;
/// older seconds are dropped so memory does not grow with run time.
pub const CURRENT_WINDOW_SECS: i64 = 10;

/// Everything the master knows about requests: one entry per
/// (method, name), the `Aggregated` total and the errors table.
#[derive(Debug, Clone)]
pub struct RequestStats {
    /// One row per (method, name); at most `MAX_ROWS` of them.
    pub entries: BTreeMap<(String, String), StatsEntry>,
    /// The `Aggregated` row: every request, whatever its name.
    pub total: StatsEntry,
    /// The errors table, one row per (method, name, error).
    pub errors: BTreeMap<ErrorKey, StatsError>,
    /// The open model's starts that found no user free, all workers
    /// together since the run (or the last reset) began; saturating.
    pub dropped_iterations: u64,
}

impl Default for RequestStats {
    fn default() -> Self {
        Self::new(now_epoch())
    }
}

impl RequestStats {
    /// Empty stats counting from `start_time`, epoch seconds.
    pub fn new(start_time: f64) -> Self {
        Self {
            entries: BTreeMap::new(),
            total: StatsEntry::new(AGGREGATED, "", start_time),
            errors: BTreeMap::new(),
            dropped_iterations: 0,
        }
    }

    /// Adds one worker's report (deltas since its previous report),
    /// received at `now` (epoch seconds). Past [`MAX_ROWS`] names (or error
    /// rows) new ones still count in the total but get no row of their own:
    /// a peer cannot grow the table forever. Per-second counters outside
    /// the current-rate window (older than it, or more than
    /// [`CLOCK_AHEAD_SECS`] ahead) count in the totals only.
    pub fn merge_report(&mut self, report: &StatsReport, now: f64) {
        let seconds = (now as i64 - CURRENT_WINDOW_SECS - 2)..=(now as i64 + CLOCK_AHEAD_SECS);
        for entry in &report.stats {
            let entry = within(entry, &seconds);
            let entry = entry.as_ref();
            let key = (entry.method.clone(), entry.name.clone());
            if let Some(known) = self.entries.get_mut(&key) {
                known.extend(entry);
            } else if self.entries.len() < MAX_ROWS {
                let mut row = StatsEntry::new(&entry.name, &entry.method, entry.start_time);
                if self.entries.len() >= MAX_HDR_ROWS {
                    row.hdr = None;
                    row.failed_hdr = None;
                }
                row.extend(entry);
                self.entries.insert(key, row);
            }
        }
        self.total.extend(&within(&report.stats_total, &seconds));
        for error in report.errors.values() {
            self.add_error(error);
        }
        self.dropped_iterations = self
            .dropped_iterations
            .saturating_add(report.dropped_iterations);
    }

    /// Adds occurrences of an error, keyed by what it is rather than by the
    /// sender's opaque key, so Locust and spotload workers merge alike.
    pub fn add_error(&mut self, error: &StatsError) {
        let key = error.key();
        let room = self.errors.len() < MAX_ROWS;
        match self.errors.get_mut(&key) {
            Some(known) => known.extend(error),
            None if room => {
                self.errors.insert(key, error.clone());
            }
            None => {}
        }
    }

    /// Forgets everything measured so far; the run goes on.
    pub fn reset(&mut self, now: f64) {
        *self = Self::new(now);
    }

    /// Drops per-second counters older than the current-rate window.
    pub fn trim(&mut self, now: f64) {
        let oldest = now as i64 - CURRENT_WINDOW_SECS - 2;
        for entry in self.entries.values_mut() {
            entry.trim_per_sec(oldest);
        }
        self.total.trim_per_sec(oldest);
    }

    /// Entries sorted by name then method, as Locust lists them.
    pub fn sorted_entries(&self) -> Vec<&StatsEntry> {
        let mut rows: Vec<&StatsEntry> = self.entries.values().collect();
        rows.sort_by(|a, b| (&a.name, &a.method).cmp(&(&b.name, &b.method)));
        rows
    }
}

/// `entry`, or a copy keeping only its per-second counters in `seconds`.
fn within<'a>(
    entry: &'a StatsEntry,
    seconds: &std::ops::RangeInclusive<i64>,
) -> std::borrow::Cow<'a, StatsEntry> {
    if entry.seconds_within(seconds) {
        std::borrow::Cow::Borrowed(entry)
    } else {
        std::borrow::Cow::Owned(entry.keeping_seconds(seconds))
    }
}

/// Seconds since the Unix epoch, as Locust's timestamps are.
pub fn now_epoch() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_far_from_now_count_in_totals_only() {
        let now = 1_800_000_000.0;
        let mut entry = StatsEntry::new("/", "GET", now - 3.0);
        entry.log(5.0, 2, false, now - 1.0);
        // A thousand far-future seconds and one from long ago.
        for ahead in 0..1_000 {
            entry.log(5.0, 1, true, now + 3_600.0 * f64::from(ahead + 1));
        }
        entry.log(5.0, 1, false, 1.0);
        let mut report = StatsReport::default();
        report.stats_total.extend(&entry);
        report.stats.push(entry);
        let mut stats = RequestStats::new(now - 3.0);
        stats.merge_report(&report, now);
        assert_eq!(stats.total.num_requests, 1_003);
        assert_eq!(stats.total.num_failures, 1_000);
        for row in stats.entries.values().chain([&stats.total]) {
            assert_eq!(row.num_reqs_per_sec.len(), 1, "{:?}", row.num_reqs_per_sec);
            assert!(row.num_fail_per_sec.is_empty());
            assert!(row.last_request_timestamp.unwrap_or(0.0) <= now + 11.0);
        }
    }
}
