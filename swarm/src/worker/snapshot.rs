//! Goose's cumulative metrics (its controller's `metricsjson`) turned into
//! Locust stats deltas: each poll is diffed against the previous one.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use crate::stats::{StatsEntry, StatsError, StatsReport};

/// The parts of goose's `GooseMetrics` JSON that the worker reads.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct GooseSnapshot {
    #[serde(default)]
    history: Vec<HistoryStep>,
    #[serde(default)]
    requests: HashMap<String, RequestAggregate>,
    #[serde(default)]
    errors: BTreeMap<String, ErrorAggregate>,
}

#[derive(Debug, Clone, Deserialize)]
struct HistoryStep {
    timestamp: String,
}

#[derive(Debug, Clone, Deserialize)]
struct RequestAggregate {
    path: String,
    method: String,
    #[serde(default)]
    custom_method: String,
    raw_data: Timing,
}

#[derive(Debug, Clone, Deserialize)]
struct Timing {
    /// Bucket floor in µs → count.
    times_us: BTreeMap<u64, u64>,
}

#[derive(Debug, Clone, Deserialize)]
struct ErrorAggregate {
    method: String,
    #[serde(default)]
    custom_method: String,
    name: String,
    error: String,
    occurrences: u64,
}

/// Goose spells methods `Get`, Locust `GET`.
fn locust_method(method: &str, custom: &str) -> String {
    if custom.is_empty() {
        method.to_ascii_uppercase()
    } else {
        custom.to_string()
    }
}

impl GooseSnapshot {
    pub fn parse(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// Goose restarts its metrics on every `start`; the first step of its
    /// history tells one run from the next.
    /// Requests counted so far, to tell when goose's metrics settle.
    pub fn request_count(&self) -> u64 {
        self.requests
            .values()
            .flat_map(|r| r.raw_data.times_us.values())
            .sum()
    }

    fn run_id(&self) -> Option<&str> {
        self.history.first().map(|s| s.timestamp.as_str())
    }

    /// The requests and errors in `self` that `previous` did not have yet,
    /// as Locust entries finishing at epoch second `now`; `since` is when
    /// `previous` was taken, so the per-second counters spread the interval.
    pub fn delta_since(&self, previous: &GooseSnapshot, since: f64, now: f64) -> StatsReport {
        let empty = GooseSnapshot::default();
        let base = if previous.run_id() == self.run_id() {
            previous
        } else {
            &empty
        };
        let mut report = StatsReport {
            stats_total: StatsEntry::new(crate::stats::AGGREGATED, "", since),
            ..StatsReport::default()
        };
        let mut failures: HashMap<(String, String), u64> = HashMap::new();
        for (key, error) in &self.errors {
            let before = base.errors.get(key).map_or(0, |e| e.occurrences);
            let new = error.occurrences.saturating_sub(before);
            if new == 0 {
                continue;
            }
            let method = locust_method(&error.method, &error.custom_method);
            *failures
                .entry((method.clone(), error.name.clone()))
                .or_default() += new;
            let row = StatsError {
                method,
                name: error.name.clone(),
                error: error.error.clone(),
                occurrences: new,
                first_seen: Some(now),
                last_seen: Some(now),
            };
            report.errors.insert(row.wire_key(), row);
        }
        for (key, request) in &self.requests {
            let before = base.requests.get(key).map(|r| &r.raw_data.times_us);
            let method = locust_method(&request.method, &request.custom_method);
            let failed = failures
                .remove(&(method.clone(), request.path.clone()))
                .unwrap_or(0);
            let entry = entry_delta(
                &request.path,
                &method,
                &request.raw_data.times_us,
                before,
                failed,
                since,
                now,
            );
            if entry.num_requests > 0 || entry.num_failures > 0 {
                report.stats_total.extend(&entry);
                report.stats.push(entry);
            }
        }
        report.stats_total.start_time = since;
        report
    }
}

/// One entry's new requests: the bucket counts that grew since `before`.
fn entry_delta(
    name: &str,
    method: &str,
    now_times: &BTreeMap<u64, u64>,
    before: Option<&BTreeMap<u64, u64>>,
    failures: u64,
    since: f64,
    now: f64,
) -> StatsEntry {
    let mut entry = StatsEntry::new(name, method, since);
    let mut new_counts: Vec<(f64, u64)> = Vec::new();
    for (us, count) in now_times {
        let old = before.and_then(|b| b.get(us)).copied().unwrap_or(0);
        let new = count.saturating_sub(old);
        if new > 0 {
            new_counts.push((*us as f64 / 1000.0, new));
        }
    }
    let total: u64 = new_counts.iter().map(|(_, c)| c).sum();
    for (ms, count) in new_counts {
        entry.log(ms, count, false, now);
    }
    spread_per_second(&mut entry.num_reqs_per_sec, total, since, now);
    entry.num_failures = failures;
    if failures > 0 {
        spread_per_second(&mut entry.num_fail_per_sec, failures, since, now);
    }
    entry
}

/// Goose tells counts, not when each request finished: spread `count`
/// evenly over the whole seconds between two polls, so current rates on the
/// master stay smooth instead of spiking once per report.
fn spread_per_second(target: &mut BTreeMap<i64, u64>, count: u64, since: f64, now: f64) {
    target.clear();
    if count == 0 {
        return;
    }
    let first = (since as i64).min(now as i64);
    let last = now as i64;
    let seconds = (last - first + 1) as u64;
    let (share, extra) = (count / seconds, count % seconds);
    for (i, second) in (first..=last).enumerate() {
        let n = share + u64::from((i as u64) < extra);
        if n > 0 {
            target.insert(second, n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(run: &str, counts: &[(u64, u64)], bad: u64) -> GooseSnapshot {
        let times: String = counts
            .iter()
            .map(|(us, c)| format!("\"{us}\":{c}"))
            .collect::<Vec<_>>()
            .join(",");
        GooseSnapshot::parse(&format!(
            r#"{{"history":[{{"timestamp":"{run}"}}],"requests":{{"GET /":{{"path":"/","method":"Get","raw_data":{{"times_us":{{{times}}}}}}}}},
            "errors":{{"e":{{"method":"Get","name":"/","error":"500: /","occurrences":{bad}}}}}}}"#
        ))
        .expect("parses")
    }

    #[test]
    fn deltas_count_each_request_once() {
        let first = snapshot("a", &[(400, 10), (120_000, 1)], 1);
        let second = snapshot("a", &[(400, 25), (120_000, 1), (2_000, 4)], 3);
        let d1 = first.delta_since(&GooseSnapshot::default(), 100.0, 103.0);
        let d2 = second.delta_since(&first, 103.0, 106.0);
        assert_eq!(d1.stats_total.num_requests, 11);
        assert_eq!(d2.stats_total.num_requests, 19);
        assert_eq!(d2.stats_total.num_failures, 2);
        assert_eq!(
            d2.stats[0].response_times,
            [(0, 15), (2, 4)].into_iter().collect()
        );
        assert_eq!(d1.stats[0].response_times.get(&120), Some(&1));
        assert_eq!(d2.stats[0].num_reqs_per_sec.values().sum::<u64>(), 19);
    }

    #[test]
    fn a_new_goose_run_starts_from_zero() {
        let old = snapshot("a", &[(400, 50)], 0);
        let restarted = snapshot("b", &[(400, 7)], 0);
        assert_eq!(
            restarted
                .delta_since(&old, 0.0, 3.0)
                .stats_total
                .num_requests,
            7
        );
    }
}
