//! One row of statistics: counts, response-time buckets and per-second
//! counters for a (method, name), or for all requests (`Aggregated`).

use std::collections::BTreeMap;

use super::Hdr;

/// The percentiles Locust's CSV and report list.
pub const PERCENTILES_TO_REPORT: [f64; 11] = [
    0.50, 0.66, 0.75, 0.80, 0.90, 0.95, 0.98, 0.99, 0.999, 0.9999, 1.0,
];

/// The largest response time kept apart: an hour, in ms (goose's default
/// request timeout is a minute).
pub const MAX_BUCKET_MS: f64 = 3_600_000.0;

/// Locust's response-time bucket for a time in milliseconds: exact below
/// 100 ms, then to 10, 100 and 1,000 ms, rounding half to even as Python does.
pub fn bucket_ms(ms: f64) -> u64 {
    // Beyond an hour every time is one bucket, so a hostile peer cannot
    // grow the bucket map without bound.
    let ms = if ms.is_finite() && ms > 0.0 {
        ms.min(MAX_BUCKET_MS)
    } else {
        0.0
    };
    let step = if ms < 100.0 {
        1.0
    } else if ms < 1_000.0 {
        10.0
    } else if ms < 10_000.0 {
        100.0
    } else {
        1_000.0
    };
    ((ms / step).round_ties_even() * step) as u64
}

/// Statistics for one request name, or the total. Field names and meaning
/// follow Locust's `StatsEntry`, so a worker's delta is one of these and the
/// master's total is the sum of all of them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StatsEntry {
    /// The request name, as Locust groups it (the path by default), or
    /// `Aggregated` for the total.
    pub name: String,
    /// The HTTP method (`GET`, `POST`, ...); empty for the `Aggregated` total.
    pub method: String,
    /// Requests finished, successful or not, including those without a time.
    pub num_requests: u64,
    /// Requests that reported no response time (Locust's `None`); they count
    /// as requests but stay out of the percentiles.
    pub num_none_requests: u64,
    /// Requests that failed; each also counts in `num_requests`.
    pub num_failures: u64,
    /// Sum of response times, ms.
    pub total_response_time: f64,
    /// Fastest response time seen, ms; `None` until a timed request arrives.
    pub min_response_time: Option<f64>,
    /// Slowest response time seen, ms; 0 until a timed request arrives.
    pub max_response_time: f64,
    /// Sum of response body sizes, bytes.
    pub total_content_length: u64,
    /// Locust bucket (ms) → number of requests.
    pub response_times: BTreeMap<u64, u64>,
    /// Epoch second → requests finished in it.
    pub num_reqs_per_sec: BTreeMap<i64, u64>,
    /// Epoch second → failures in it.
    pub num_fail_per_sec: BTreeMap<i64, u64>,
    /// When the latest request finished, epoch seconds; `None` before any.
    pub last_request_timestamp: Option<f64>,
    /// When counting began for this row, epoch seconds; rates over the whole
    /// run divide by the time since.
    pub start_time: f64,
    /// The same times to the microsecond, while every report merged in
    /// carried them (our workers do; Locust's do not): `None` means the
    /// percentiles come from `response_times`.
    #[serde(default)]
    pub hdr: Option<Hdr>,
    /// Requests goose back-filled for users a stalled target held up
    /// (coordinated omission mitigation): never sent, so they count in no
    /// Locust field, only in `hdr` beside the real ones. Non-zero: the
    /// percentiles read off `hdr` are corrected for coordinated omission.
    #[serde(default)]
    pub backfilled: u64,
    /// The failed requests' times alone, to the microsecond (a part of
    /// `hdr`): the successful requests' times are `hdr` less these, so a
    /// ramp can chart the target's answers apart from its fast errors.
    #[serde(default)]
    pub failed_hdr: Option<Hdr>,
}

impl StatsEntry {
    /// An empty row for `method` `name`, counting from `start_time` (epoch
    /// seconds), with a microsecond histogram ready to take times.
    pub fn new(name: &str, method: &str, start_time: f64) -> Self {
        Self {
            name: name.to_string(),
            method: method.to_string(),
            num_requests: 0,
            num_none_requests: 0,
            num_failures: 0,
            total_response_time: 0.0,
            min_response_time: None,
            max_response_time: 0.0,
            total_content_length: 0,
            response_times: BTreeMap::new(),
            num_reqs_per_sec: BTreeMap::new(),
            num_fail_per_sec: BTreeMap::new(),
            last_request_timestamp: None,
            start_time,
            hdr: Some(Hdr::new()),
            backfilled: 0,
            failed_hdr: Some(Hdr::new()),
        }
    }

    /// Records `count` requests goose back-filled at `ms` each (coordinated
    /// omission mitigation): in the histogram only, as corrections.
    pub fn log_backfilled(&mut self, ms: f64, count: u64) {
        if let Some(hdr) = self.hdr.as_mut() {
            hdr.record(micros(ms), count);
            add(&mut self.backfilled, count);
        }
    }

    /// Records `count` requests that took `ms` each and finished at epoch
    /// second `at`.
    pub fn log(&mut self, ms: f64, count: u64, failed: bool, at: f64) {
        if count == 0 {
            return;
        }
        self.num_requests = self.num_requests.saturating_add(count);
        self.total_response_time += ms * count as f64;
        self.min_response_time = Some(self.min_response_time.map_or(ms, |m| m.min(ms)));
        self.max_response_time = self.max_response_time.max(ms);
        add(self.response_times.entry(bucket_ms(ms)).or_default(), count);
        if let Some(hdr) = self.hdr.as_mut() {
            hdr.record(micros(ms), count);
        }
        add(self.num_reqs_per_sec.entry(at as i64).or_default(), count);
        if failed {
            if let Some(hdr) = self.failed_hdr.as_mut() {
                hdr.record(micros(ms), count);
            }
            add(&mut self.num_failures, count);
            add(self.num_fail_per_sec.entry(at as i64).or_default(), count);
        }
        self.last_request_timestamp = Some(self.last_request_timestamp.map_or(at, |t| t.max(at)));
    }

    /// Adds another entry's counts into this one: the one merge operation,
    /// used for worker deltas and for the total alike.
    pub fn extend(&mut self, other: &StatsEntry) {
        self.hdr = match (self.hdr.take(), &other.hdr) {
            (Some(mut mine), Some(theirs)) => {
                mine.add(theirs);
                Some(mine)
            }
            // Nothing timed in the other: nothing to lose.
            (mine, None) if other.timed_requests() == 0 => mine,
            // Either side without microseconds: the buckets must do.
            _ => None,
        };
        self.failed_hdr = match (self.failed_hdr.take(), &other.failed_hdr) {
            (Some(mut mine), Some(theirs)) => {
                mine.add(theirs);
                Some(mine)
            }
            (mine, None) if other.num_failures == 0 => mine,
            _ => None,
        };
        self.last_request_timestamp =
            match (self.last_request_timestamp, other.last_request_timestamp) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        self.start_time = self.start_time.min(other.start_time);
        add(&mut self.num_requests, other.num_requests);
        add(&mut self.num_none_requests, other.num_none_requests);
        add(&mut self.num_failures, other.num_failures);
        self.total_response_time += other.total_response_time;
        self.max_response_time = self.max_response_time.max(other.max_response_time);
        self.min_response_time = match (self.min_response_time, other.min_response_time) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        add(&mut self.total_content_length, other.total_content_length);
        add(&mut self.backfilled, other.backfilled);
        for (bucket, count) in &other.response_times {
            add(self.response_times.entry(*bucket).or_default(), *count);
        }
        for (second, count) in &other.num_reqs_per_sec {
            add(self.num_reqs_per_sec.entry(*second).or_default(), *count);
        }
        for (second, count) in &other.num_fail_per_sec {
            add(self.num_fail_per_sec.entry(*second).or_default(), *count);
        }
    }

    /// What was added to this entry since `earlier`, a copy of it taken
    /// before: counts and buckets subtract; min and max are the extreme
    /// buckets of the difference. Used for a window of a running test.
    pub fn since(&self, earlier: &StatsEntry) -> StatsEntry {
        let mut delta = StatsEntry::new(
            &self.name,
            &self.method,
            earlier.last_request_timestamp.unwrap_or(earlier.start_time),
        );
        delta.num_requests = self.num_requests.saturating_sub(earlier.num_requests);
        delta.num_none_requests = self
            .num_none_requests
            .saturating_sub(earlier.num_none_requests);
        delta.num_failures = self.num_failures.saturating_sub(earlier.num_failures);
        delta.total_response_time =
            (self.total_response_time - earlier.total_response_time).max(0.0);
        delta.total_content_length = self
            .total_content_length
            .saturating_sub(earlier.total_content_length);
        for (bucket, count) in &self.response_times {
            let new =
                count.saturating_sub(earlier.response_times.get(bucket).copied().unwrap_or(0));
            if new > 0 {
                delta.response_times.insert(*bucket, new);
            }
        }
        delta.hdr = match (&self.hdr, &earlier.hdr) {
            (Some(now), Some(then)) => Some(now.since(then)),
            _ => None,
        };
        delta.failed_hdr = match (&self.failed_hdr, &earlier.failed_hdr) {
            (Some(now), Some(then)) => Some(now.since(then)),
            _ => None,
        };
        delta.backfilled = self.backfilled.saturating_sub(earlier.backfilled);
        match delta.hdr.as_ref().filter(|h| h.count() > 0) {
            Some(hdr) => {
                delta.min_response_time = Some(hdr.min_ms());
                delta.max_response_time = hdr.max_ms();
            }
            None => {
                delta.min_response_time = delta.response_times.keys().next().map(|b| *b as f64);
                delta.max_response_time = delta
                    .response_times
                    .keys()
                    .next_back()
                    .map_or(0.0, |b| *b as f64);
            }
        }
        delta.last_request_timestamp = self.last_request_timestamp;
        delta
    }

    /// Whether every per-second counter is for a second in `seconds`.
    pub fn seconds_within(&self, seconds: &std::ops::RangeInclusive<i64>) -> bool {
        self.num_reqs_per_sec
            .keys()
            .chain(self.num_fail_per_sec.keys())
            .all(|second| seconds.contains(second))
    }

    /// A copy keeping only the per-second counters for seconds in
    /// `seconds`, its last request no later than their end.
    pub fn keeping_seconds(&self, seconds: &std::ops::RangeInclusive<i64>) -> StatsEntry {
        let mut kept = self.clone();
        kept.num_reqs_per_sec
            .retain(|second, _| seconds.contains(second));
        kept.num_fail_per_sec
            .retain(|second, _| seconds.contains(second));
        let latest = (*seconds.end() + 1) as f64;
        kept.last_request_timestamp = kept.last_request_timestamp.map(|t| t.min(latest));
        kept
    }

    /// Drops per-second counters before epoch second `oldest`.
    pub fn trim_per_sec(&mut self, oldest: i64) {
        self.num_reqs_per_sec = self.num_reqs_per_sec.split_off(&oldest);
        self.num_fail_per_sec = self.num_fail_per_sec.split_off(&oldest);
    }

    /// The time `percent` (0..=1) of requests finished within, in ms: to
    /// the microsecond from the histogram when there is one, else Locust's
    /// bucket.
    pub fn percentile_ms(&self, percent: f64) -> f64 {
        match self.precise() {
            Some(hdr) => hdr.quantile_ms(percent),
            None => self.percentile(percent) as f64,
        }
    }

    /// The microsecond histogram, when it holds every timed request (and
    /// the back-filled ones, when goose mitigated coordinated omission).
    pub fn precise(&self) -> Option<&Hdr> {
        let expected = self.timed_requests().saturating_add(self.backfilled);
        self.hdr
            .as_ref()
            .filter(|h| h.count() > 0 && h.count() == expected)
    }

    /// The failed requests' times, when the entry is precise and holds the
    /// time of every failure.
    pub fn failed_precise(&self) -> Option<&Hdr> {
        self.precise()?;
        self.failed_hdr
            .as_ref()
            .filter(|h| h.count() == self.num_failures)
    }

    /// The successful requests' times (back-filled ones among them): the
    /// histogram less the failures'; `None` without both.
    pub fn succeeded_precise(&self) -> Option<Hdr> {
        Some(self.precise()?.since(self.failed_precise()?))
    }

    /// Whether the percentiles (and the slowest time) read off this entry
    /// are corrected for coordinated omission: they come from the histogram
    /// and it holds back-filled requests.
    pub fn co_corrected(&self) -> bool {
        self.backfilled > 0 && self.precise().is_some()
    }

    /// Where percentiles come from: `"hdr"`, `"hdr+co"` (the histograms,
    /// corrected for coordinated omission) or `"buckets"`.
    pub fn percentile_source(&self) -> &'static str {
        match self.precise() {
            Some(_) if self.backfilled > 0 => "hdr+co",
            Some(_) => "hdr",
            None => "buckets",
        }
    }

    /// Requests that carried a response time.
    pub fn timed_requests(&self) -> u64 {
        self.num_requests.saturating_sub(self.num_none_requests)
    }

    /// The response time (a bucket, ms) that `percent` (0..=1) of requests
    /// finished within, by Locust's walk from the slowest bucket down.
    pub fn percentile(&self, percent: f64) -> u64 {
        percentile_of(&self.response_times, self.timed_requests(), percent)
    }

    /// The 50th percentile, a Locust bucket in ms.
    pub fn median_response_time(&self) -> u64 {
        self.percentile(0.5)
    }

    /// Mean response time over the timed requests, ms; 0 when there are none.
    pub fn avg_response_time(&self) -> f64 {
        let n = self.timed_requests();
        if n == 0 {
            0.0
        } else {
            self.total_response_time / n as f64
        }
    }

    /// Mean response body size over all requests, bytes; 0 when there are none.
    pub fn avg_content_length(&self) -> f64 {
        if self.num_requests == 0 {
            0.0
        } else {
            self.total_content_length as f64 / self.num_requests as f64
        }
    }

    /// Failures as a fraction of requests (0..=1); 0 when there are none.
    pub fn fail_ratio(&self) -> f64 {
        if self.num_requests == 0 {
            0.0
        } else {
            self.num_failures as f64 / self.num_requests as f64
        }
    }

    /// Requests per second over the whole run, `run` being the run's
    /// `Aggregated` total (or this entry, when it is the total): as Locust,
    /// every row is divided by the run's span, from its start to its last
    /// request, so a name requested only at the start shows a low rate.
    pub fn total_rps(&self, run: &StatsEntry) -> f64 {
        per_sec_over_run(self.num_requests, run)
    }

    /// Failures per second over the whole run (see [`StatsEntry::total_rps`]).
    pub fn total_fail_per_sec(&self, run: &StatsEntry) -> f64 {
        per_sec_over_run(self.num_failures, run)
    }

    /// Requests per second over Locust's recent window: the ten whole
    /// seconds that end two seconds before the run's last request (the
    /// newest seconds are still being reported), no earlier than the run's
    /// start; `run` as for [`StatsEntry::total_rps`].
    pub fn current_rps(&self, run: &StatsEntry) -> f64 {
        current_rate(&self.num_reqs_per_sec, run)
    }

    /// Failures per second over the same recent window as `current_rps`.
    pub fn current_fail_per_sec(&self, run: &StatsEntry) -> f64 {
        current_rate(&self.num_fail_per_sec, run)
    }
}

/// `count` per second over `run`'s span, from its start to its last request.
fn per_sec_over_run(count: u64, run: &StatsEntry) -> f64 {
    let Some(last) = run.last_request_timestamp else {
        return 0.0;
    };
    let span = last - run.start_time;
    if span > 0.0 {
        count as f64 / span
    } else {
        0.0
    }
}

/// A time in ms as whole microseconds.
fn micros(ms: f64) -> u64 {
    if ms.is_finite() && ms > 0.0 {
        (ms * 1000.0).round() as u64
    } else {
        0
    }
}

/// Counts from the wire are a peer's word: they saturate instead of
/// overflowing (a panic in debug builds, a wrap in release).
fn add(total: &mut u64, more: u64) {
    *total = total.saturating_add(more);
}

/// Locust's percentile: with n timed requests and k = floor(n × p), walk the
/// buckets from the largest down and return the first one where
/// n − (requests at or above it) ≤ k.
pub fn percentile_of(buckets: &BTreeMap<u64, u64>, n: u64, percent: f64) -> u64 {
    if n == 0 {
        return 0;
    }
    let k = (n as f64 * percent).floor() as u64;
    let mut processed = 0u64;
    for (bucket, count) in buckets.iter().rev() {
        add(&mut processed, *count);
        if n.saturating_sub(processed) <= k {
            return *bucket;
        }
    }
    0
}

fn current_rate(per_sec: &BTreeMap<i64, u64>, run: &StatsEntry) -> f64 {
    let Some(last) = run.last_request_timestamp else {
        return 0.0;
    };
    // The second in progress is incomplete, and workers report every 3 s, so
    // leave out the last two seconds as Locust does.
    // Saturating: the timestamps are a peer's word.
    let end = (last as i64).saturating_sub(2);
    let start = end
        .saturating_sub(super::CURRENT_WINDOW_SECS)
        .max(run.start_time as i64);
    if end <= start {
        return 0.0;
    }
    let count: u64 = per_sec.range(start..end).map(|(_, c)| c).sum();
    count as f64 / (end - start) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_round_like_python() {
        assert_eq!(bucket_ms(0.4), 0);
        assert_eq!(bucket_ms(0.5), 0);
        assert_eq!(bucket_ms(1.5), 2);
        assert_eq!(bucket_ms(99.0), 99);
        assert_eq!(bucket_ms(105.0), 100);
        assert_eq!(bucket_ms(115.0), 120);
        assert_eq!(bucket_ms(1_250.0), 1_200);
        assert_eq!(bucket_ms(1_350.0), 1_400);
        assert_eq!(bucket_ms(12_500.0), 12_000);
        assert_eq!(bucket_ms(f64::NAN), 0);
    }

    #[test]
    fn percentile_walks_from_the_top() {
        let mut e = StatsEntry::new("/", "GET", 0.0);
        for ms in 1..=100 {
            e.log(f64::from(ms), 1, false, 1.0);
        }
        // The values Locust 2.47's StatsEntry gives for the same samples.
        assert_eq!(e.percentile(0.5), 51);
        assert_eq!(e.percentile(0.95), 96);
        assert_eq!(e.percentile(0.99), 100);
        assert_eq!(e.percentile(1.0), 100);
    }

    #[test]
    fn merged_percentiles_are_those_of_the_union() {
        let mut fast = StatsEntry::new("/", "GET", 0.0);
        let mut slow = StatsEntry::new("/", "GET", 0.0);
        fast.log(2.0, 900, false, 1.0);
        slow.log(400.0, 100, false, 1.0);
        let mut union = StatsEntry::new("/", "GET", 0.0);
        union.extend(&fast);
        union.extend(&slow);
        assert_eq!(union.num_requests, 1000);
        assert_eq!(union.percentile(0.5), 2);
        assert_eq!(union.percentile(0.95), 400);
        assert_eq!(union.min_response_time, Some(2.0));
        assert_eq!(union.max_response_time, 400.0);
    }

    #[test]
    fn since_isolates_a_window() {
        let mut e = StatsEntry::new("/", "GET", 0.0);
        e.log(5.0, 10, false, 1.0);
        let before = e.clone();
        e.log(300.0, 4, true, 2.0);
        let window = e.since(&before);
        assert_eq!(window.num_requests, 4);
        assert_eq!(window.num_failures, 4);
        assert_eq!(window.percentile(0.5), 300);
        // From the microsecond histogram: within its 0.1%.
        let min = window.min_response_time.unwrap_or(0.0);
        assert!((min - 300.0).abs() <= 0.3, "{min}");
    }
}
