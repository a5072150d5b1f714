//! The `stats` message body in msgpack: Locust's field names, ints or floats
//! accepted wherever Locust may send either.

use std::collections::BTreeMap;

use rmpv::Value;

use super::{StatsEntry, StatsError};
use crate::protocol::{capped, MAX_CLASSES, MAX_CLASS_NAME, MAX_ERROR, MAX_METHOD, MAX_NAME};

/// The longest error key kept (the sender's opaque key; rows are merged by
/// what the error is, not by it).
const MAX_ERROR_KEY: usize = 256;

/// What a worker reports every few seconds: deltas since its last report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatsReport {
    /// One delta per (method, name) that saw requests since the last report.
    pub stats: Vec<StatsEntry>,
    /// The delta of the `Aggregated` total.
    pub stats_total: StatsEntry,
    /// Keyed by the sender's opaque error key.
    pub errors: BTreeMap<String, StatsError>,
    /// Users running now per user class (not a delta).
    pub user_classes_count: BTreeMap<String, u64>,
    /// Users running now on the worker, all classes (not a delta).
    pub user_count: u64,
    /// Our extension (`seq`, which a Locust master ignores): the report's
    /// number, counting from 1 per worker process. A master merges each
    /// number once, so a report sent again after a reconnect (its first
    /// copy may or may not have arrived) is never counted twice. `None`
    /// from Locust workers.
    pub seq: Option<u64>,
    /// Our extension (`dropped_iterations`, which a Locust master ignores):
    /// the open model's starts the worker dropped since its last report,
    /// none of its users free for them (a delta, counted once with the
    /// report's `seq`). Read as any `u64` (the master adds it saturating);
    /// absent, from Locust workers and closed runs, 0.
    pub dropped_iterations: u64,
}

impl StatsReport {
    /// A busy worker's delta for benchmarks and the fleet simulator: one
    /// entry per name with `per_name` requests over the 3 s before `now`,
    /// 0.2 ms to about 50 ms (1% slow), 2% failures; `seed` varies them.
    pub fn synthetic(seed: u64, names: &[&str], per_name: u64, now: f64) -> StatsReport {
        let mut report = StatsReport::default();
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        for name in names {
            let mut entry = StatsEntry::new(name, "GET", now - 3.0);
            for i in 0..per_name {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let spike = if state.is_multiple_of(100) {
                    state % 50_000
                } else {
                    0
                };
                let us = 200 + (state >> 40) % 800 + spike;
                entry.log(
                    us as f64 / 1000.0,
                    1,
                    i.is_multiple_of(50),
                    now - (i % 3) as f64,
                );
            }
            report.stats_total.extend(&entry);
            report.stats.push(entry);
        }
        report
    }

    /// Adds a later report into this one (a worker holding what it could
    /// not send yet): entries by (method, name), the total, the errors; the
    /// user counts are the later report's.
    pub fn absorb(&mut self, later: StatsReport) {
        for entry in later.stats {
            match self
                .stats
                .iter_mut()
                .find(|e| e.method == entry.method && e.name == entry.name)
            {
                Some(known) => known.extend(&entry),
                None => self.stats.push(entry),
            }
        }
        self.stats_total.extend(&later.stats_total);
        for (key, error) in later.errors {
            match self.errors.get_mut(&key) {
                Some(known) => known.extend(&error),
                None => {
                    self.errors.insert(key, error);
                }
            }
        }
        self.user_classes_count = later.user_classes_count;
        self.user_count = later.user_count;
        self.dropped_iterations = self
            .dropped_iterations
            .saturating_add(later.dropped_iterations);
    }

    /// Whether it carries any request, error or dropped iteration.
    pub fn is_empty(&self) -> bool {
        self.stats_total.num_requests == 0
            && self.stats_total.num_failures == 0
            && self.errors.is_empty()
            && self.dropped_iterations == 0
    }
}

impl Default for StatsEntry {
    fn default() -> Self {
        StatsEntry::new(super::AGGREGATED, "", 0.0)
    }
}

/// A `stats` body that does not have the shape Locust's peers send.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("stats message: {0}")]
pub struct WireError(pub String);

fn missing(what: &str) -> WireError {
    WireError(format!("missing or malformed `{what}`"))
}

/// A msgpack map with string keys, read field by field.
pub(crate) struct Fields<'a>(pub(crate) &'a [(Value, Value)]);

impl<'a> Fields<'a> {
    pub(crate) fn of(value: &'a Value, what: &str) -> Result<Self, WireError> {
        value
            .as_map()
            .map(|m| Fields(m))
            .ok_or_else(|| missing(what))
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.0
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    pub(crate) fn req(&self, key: &str) -> Result<&'a Value, WireError> {
        self.get(key).ok_or_else(|| missing(key))
    }

    pub(crate) fn f64(&self, key: &str) -> Result<f64, WireError> {
        self.req(key)
            .and_then(|v| as_f64(v).ok_or_else(|| missing(key)))
    }

    pub(crate) fn opt_f64(&self, key: &str) -> Result<Option<f64>, WireError> {
        match self.get(key) {
            None | Some(Value::Nil) => Ok(None),
            Some(v) => as_f64(v).map(Some).ok_or_else(|| missing(key)),
        }
    }

    pub(crate) fn u64(&self, key: &str) -> Result<u64, WireError> {
        self.req(key)
            .and_then(|v| as_u64(v).ok_or_else(|| missing(key)))
    }

    pub(crate) fn string(&self, key: &str) -> Result<String, WireError> {
        self.req(key)
            .and_then(|v| v.as_str().map(str::to_string).ok_or_else(|| missing(key)))
    }

    /// A required string, cut to `max` bytes (see `protocol::capped`).
    pub(crate) fn text(&self, key: &str, max: usize) -> Result<String, WireError> {
        self.req(key).and_then(|v| {
            v.as_str()
                .map(|s| capped(s, max).into_owned())
                .ok_or_else(|| missing(key))
        })
    }

    /// User class → count; at most [`MAX_CLASSES`] classes (the rest are
    /// not kept), names cut to [`MAX_CLASS_NAME`] bytes.
    pub(crate) fn counts(&self, key: &str) -> Result<BTreeMap<String, u64>, WireError> {
        let map = self.req(key)?.as_map().ok_or_else(|| missing(key))?;
        map.iter()
            .take(MAX_CLASSES)
            .map(|(k, v)| {
                Ok((
                    capped(k.as_str().ok_or_else(|| missing(key))?, MAX_CLASS_NAME).into_owned(),
                    as_u64(v).ok_or_else(|| missing(key))?,
                ))
            })
            .collect()
    }
}

pub(crate) fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::F64(f) => Some(*f),
        Value::F32(f) => Some(f64::from(*f)),
        Value::Integer(i) => i.as_f64(),
        _ => None,
    }
}

pub(crate) fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Integer(i) => i.as_u64(),
        Value::F64(f) if *f >= 0.0 && f.fract() == 0.0 => Some(*f as u64),
        _ => None,
    }
}

/// Maps keyed by numbers (`{bucket: count}`, `{second: count}`); Locust
/// sends int keys, but a float key is tolerated.
fn number_map(value: &Value, what: &str) -> Result<Vec<(f64, u64)>, WireError> {
    let map = value.as_map().ok_or_else(|| missing(what))?;
    map.iter()
        .map(|(k, v)| {
            Ok((
                as_f64(k).ok_or_else(|| missing(what))?,
                as_u64(v).ok_or_else(|| missing(what))?,
            ))
        })
        .collect()
}

fn int_map<K: Into<Value> + Copy>(map: &BTreeMap<K, u64>) -> Value {
    Value::Map(
        map.iter()
            .map(|(k, v)| ((*k).into(), Value::from(*v)))
            .collect(),
    )
}

fn str_map(map: &BTreeMap<String, u64>) -> Value {
    Value::Map(
        map.iter()
            .map(|(k, v)| (Value::from(k.as_str()), Value::from(*v)))
            .collect(),
    )
}

fn opt(v: Option<f64>) -> Value {
    v.map_or(Value::Nil, Value::from)
}

impl StatsEntry {
    /// This entry as Locust's msgpack map, plus our `hdr_v2` histogram when
    /// the microsecond times are kept.
    pub fn to_value(&self) -> Value {
        let mut fields = vec![
            ("name".into(), self.name.as_str().into()),
            ("method".into(), self.method.as_str().into()),
            (
                "last_request_timestamp".into(),
                opt(self.last_request_timestamp),
            ),
            ("start_time".into(), self.start_time.into()),
            ("num_requests".into(), self.num_requests.into()),
            ("num_none_requests".into(), self.num_none_requests.into()),
            ("num_failures".into(), self.num_failures.into()),
            (
                "total_response_time".into(),
                self.total_response_time.into(),
            ),
            ("max_response_time".into(), self.max_response_time.into()),
            ("min_response_time".into(), opt(self.min_response_time)),
            (
                "total_content_length".into(),
                self.total_content_length.into(),
            ),
            ("response_times".into(), int_map(&self.response_times)),
            ("num_reqs_per_sec".into(), int_map(&self.num_reqs_per_sec)),
            ("num_fail_per_sec".into(), int_map(&self.num_fail_per_sec)),
        ];
        // Our extension, beside Locust's buckets: a Locust master reads the
        // keys it knows and ignores this one.
        if let Some(hdr) = self.precise() {
            fields.push(("hdr_v2".into(), Value::Binary(hdr.to_v2())));
            // How many of its times goose back-filled (coordinated omission
            // mitigation); a Locust master ignores this key too.
            if self.backfilled > 0 {
                fields.push(("co_backfilled".into(), self.backfilled.into()));
            }
            // The failed requests' own times, so the successful ones can
            // be told apart (a ramp charts them); only when some failed.
            if let Some(failed) = self.failed_precise().filter(|h| h.count() > 0) {
                fields.push(("hdr_failed_v2".into(), Value::Binary(failed.to_v2())));
            }
        }
        Value::Map(fields)
    }

    /// Reads an entry from a peer's msgpack map (Locust's or ours), taking
    /// `hdr_v2` when present and valid.
    pub fn from_value(value: &Value) -> Result<Self, WireError> {
        Self::read(value, true)
    }

    /// [`StatsEntry::from_value`]; without `histogram`, `hdr_v2` is not
    /// read and the entry counts by Locust's buckets, as a Locust worker's.
    fn read(value: &Value, histogram: bool) -> Result<Self, WireError> {
        let f = Fields::of(value, "stats entry")?;
        let mut entry = StatsEntry::new(
            &f.text("name", MAX_NAME)?,
            &f.text("method", MAX_METHOD)?,
            f.f64("start_time")?,
        );
        entry.last_request_timestamp = f.opt_f64("last_request_timestamp")?;
        entry.num_requests = f.u64("num_requests")?;
        entry.num_none_requests = f.get("num_none_requests").and_then(as_u64).unwrap_or(0);
        entry.num_failures = f.u64("num_failures")?;
        entry.total_response_time = f.f64("total_response_time")?;
        entry.max_response_time = f.f64("max_response_time")?;
        entry.min_response_time = f.opt_f64("min_response_time")?;
        entry.total_content_length = f.get("total_content_length").and_then(as_u64).unwrap_or(0);
        entry.hdr = match f.get("hdr_v2") {
            _ if !histogram => None,
            Some(Value::Binary(bytes)) => {
                Some(super::Hdr::from_v2(bytes).map_err(|e| WireError(e.to_string()))?)
            }
            // Nothing timed: nothing to lose.
            _ if entry.timed_requests() == 0 => Some(super::Hdr::new()),
            // A Locust worker's entry: percentiles come from the buckets.
            _ => None,
        };
        if entry.hdr.is_some() {
            entry.backfilled = f.get("co_backfilled").and_then(as_u64).unwrap_or(0);
        }
        entry.failed_hdr = match f.get("hdr_failed_v2") {
            _ if entry.hdr.is_none() => None,
            Some(Value::Binary(bytes)) => {
                Some(super::Hdr::from_v2(bytes).map_err(|e| WireError(e.to_string()))?)
            }
            _ if entry.num_failures == 0 => Some(super::Hdr::new()),
            // Failures without their times (an older worker): the
            // successful requests cannot be told apart.
            _ => None,
        };
        for (ms, count) in number_map(f.req("response_times")?, "response_times")? {
            // Re-bucket rather than trust the key: a peer rounding differently
            // must not widen the bucket map without bound.
            let bucket = entry
                .response_times
                .entry(super::bucket_ms(ms))
                .or_default();
            *bucket = bucket.saturating_add(count);
        }
        for (key, target) in [
            ("num_reqs_per_sec", &mut entry.num_reqs_per_sec),
            ("num_fail_per_sec", &mut entry.num_fail_per_sec),
        ] {
            for (second, count) in number_map(f.req(key)?, key)? {
                let slot = target.entry(second as i64).or_default();
                *slot = slot.saturating_add(count);
            }
        }
        Ok(entry)
    }
}

impl StatsError {
    fn to_value(&self) -> Value {
        Value::Map(vec![
            ("name".into(), self.name.as_str().into()),
            ("method".into(), self.method.as_str().into()),
            ("error".into(), self.error.as_str().into()),
            ("occurrences".into(), self.occurrences.into()),
            ("first_seen".into(), opt(self.first_seen)),
            ("last_seen".into(), opt(self.last_seen)),
        ])
    }

    fn from_value(value: &Value) -> Result<Self, WireError> {
        let f = Fields::of(value, "error")?;
        Ok(StatsError {
            name: f.text("name", MAX_NAME)?,
            method: f.text("method", MAX_METHOD)?,
            // Locust sends the error's repr; a nil error still counts.
            error: f
                .get("error")
                .map(|v| value_text(v, MAX_ERROR))
                .unwrap_or_default(),
            occurrences: f.u64("occurrences")?,
            first_seen: f.opt_f64("first_seen")?,
            last_seen: f.opt_f64("last_seen")?,
        })
    }
}

/// Text of a value that should be a string but may be something else,
/// cut to `max` bytes.
pub(crate) fn value_text(v: &Value, max: usize) -> String {
    match v.as_str() {
        Some(s) => capped(s, max).into_owned(),
        None => crate::protocol::rendered_capped(v, max),
    }
}

impl StatsReport {
    /// This report as the `data` of a Locust `stats` message.
    pub fn to_value(&self) -> Value {
        let mut fields = vec![
            (
                "stats".into(),
                Value::Array(self.stats.iter().map(StatsEntry::to_value).collect()),
            ),
            ("stats_total".into(), self.stats_total.to_value()),
            (
                "errors".into(),
                Value::Map(
                    self.errors
                        .iter()
                        .map(|(k, e)| (k.as_str().into(), e.to_value()))
                        .collect(),
                ),
            ),
            (
                "user_classes_count".into(),
                str_map(&self.user_classes_count),
            ),
            ("user_count".into(), self.user_count.into()),
        ];
        if let Some(seq) = self.seq {
            fields.push(("seq".into(), seq.into()));
        }
        if self.dropped_iterations > 0 {
            fields.push(("dropped_iterations".into(), self.dropped_iterations.into()));
        }
        Value::Map(fields)
    }

    /// Reads the `data` of a `stats` message from a Locust or swarm worker.
    /// Only the first [`MAX_HDR_ROWS`](super::MAX_HDR_ROWS) entries keep
    /// their histograms (the master keeps no more names precise): a
    /// message of thousands of entries each declaring an hour-long
    /// histogram (188 KiB) cannot make the master allocate gigabytes.
    pub fn from_value(value: &Value) -> Result<Self, WireError> {
        let f = Fields::of(value, "stats data")?;
        let stats = f.req("stats")?.as_array().ok_or_else(|| missing("stats"))?;
        let errors = f.req("errors")?.as_map().ok_or_else(|| missing("errors"))?;
        Ok(StatsReport {
            stats: stats
                .iter()
                .enumerate()
                .map(|(i, entry)| StatsEntry::read(entry, i < super::MAX_HDR_ROWS))
                .collect::<Result<_, _>>()?,
            stats_total: StatsEntry::from_value(f.req("stats_total")?)?,
            errors: errors
                .iter()
                .map(|(k, v)| Ok((value_text(k, MAX_ERROR_KEY), StatsError::from_value(v)?)))
                .collect::<Result<_, WireError>>()?,
            user_classes_count: f.counts("user_classes_count")?,
            user_count: f.u64("user_count")?,
            seq: f.get("seq").and_then(as_u64),
            dropped_iterations: f.get("dropped_iterations").and_then(as_u64).unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Hdr;

    #[test]
    fn report_round_trips() {
        let mut entry = StatsEntry::new("/", "GET", 100.0);
        entry.log(12.0, 3, false, 101.5);
        entry.log(250.0, 1, true, 102.0);
        let mut total = StatsEntry::default();
        total.extend(&entry);
        let error = StatsError {
            method: "GET".into(),
            name: "/".into(),
            error: "500".into(),
            occurrences: 1,
            first_seen: Some(101.0),
            last_seen: None,
        };
        let report = StatsReport {
            stats: vec![entry],
            stats_total: total,
            errors: [(error.wire_key(), error)].into_iter().collect(),
            user_classes_count: [("WebsiteUser".to_string(), 5)].into_iter().collect(),
            user_count: 5,
            seq: Some(3),
            dropped_iterations: 12,
        };
        let back = StatsReport::from_value(&report.to_value()).expect("decodes");
        assert_eq!(back, report);
        // The failure's own time travels: the successful ones are apart.
        let row = &back.stats[0];
        assert_eq!(row.failed_precise().map(Hdr::count), Some(1));
        let ok = row.succeeded_precise().expect("successful times");
        assert_eq!((ok.count(), ok.max_ms().round()), (3, 12.0));
    }

    /// What the microsecond histogram adds to a stats message: an entry of
    /// 3 s at 20k requests/s with a realistic spread of times.
    #[test]
    fn the_histogram_adds_little_to_a_report() {
        let mut entry = StatsEntry::new("/", "GET", 0.0);
        let mut seed = 7u64;
        for _ in 0..60_000 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // 0.2 ms to ~50 ms, most of them fast.
            let us = 200
                + (seed >> 40) % 800
                + if seed.is_multiple_of(100) {
                    seed % 50_000
                } else {
                    0
                };
            entry.log(us as f64 / 1000.0, 1, false, 1.0);
        }
        let encode = |entry: &StatsEntry| {
            let mut out = Vec::new();
            rmpv::encode::write_value(&mut out, &entry.to_value()).expect("into a Vec");
            out.len()
        };
        let with = encode(&entry);
        entry.hdr = None;
        let without = encode(&entry);
        println!(
            "stats entry: {without} bytes with Locust's buckets, {with} with the histogram too"
        );
        assert!(with - without < 8 * 1024, "{with} vs {without}");
    }

    #[test]
    fn only_the_first_hundred_entries_keep_their_histograms() {
        let names: Vec<String> = (0..super::super::MAX_HDR_ROWS + 5)
            .map(|i| format!("/{i}"))
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let report = StatsReport::synthetic(1, &names, 10, 100.0);
        let back = StatsReport::from_value(&report.to_value()).expect("decodes");
        let kept = back.stats.iter().filter(|e| e.hdr.is_some()).count();
        assert_eq!(kept, super::super::MAX_HDR_ROWS);
        assert!(back.stats[super::super::MAX_HDR_ROWS].hdr.is_none());
        assert!(back.stats_total.hdr.is_some(), "the total keeps its own");
        let requests: u64 = back.stats.iter().map(|e| e.num_requests).sum();
        assert_eq!(requests, 10 * names.len() as u64, "every request counts");
    }

    #[test]
    fn missing_keys_are_named() {
        let value = Value::Map(vec![("stats".into(), Value::Array(vec![]))]);
        let err = StatsReport::from_value(&value).unwrap_err();
        assert!(err.to_string().contains("errors"), "{err}");
    }
}
