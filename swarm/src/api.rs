//! The master's HTTP API as types: the bodies of Locust's web API (same
//! paths, keys and meanings, so Locust's scripts and tools work) and of our
//! extensions. The axum handlers build them, [`crate::client::MasterClient`]
//! reads them — from our master or from a stock Locust master — and the
//! tests use both; no JSON shape is written by hand anywhere else.
//!
//! Reading is lenient where Locust's master is: a number may come as an
//! integer, a float or `null`, and our extension keys may be missing.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

pub use crate::co_mitigation::CoMitigation;
pub use crate::master::{
    HistorySample, NodeState, Refusals, RunState, WorkerEvent, WorkerEventKind,
};
use crate::stats::StatsEntry;
use crate::test_plan::PlanState;
pub use crate::thresholds::Verdict;

/// `USER:PASS`, the credentials of the web UI (`--web-auth`), parsed once
/// for the server, the client and `spotload deploy`.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name, before the first `:`.
    pub user: String,
    /// The password, after the first `:` (may itself contain `:`).
    pub pass: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}:…)", self.user)
    }
}

impl std::str::FromStr for Credentials {
    type Err = String;

    /// `USER:PASS`, both non-empty (the password may contain `:`).
    fn from_str(spec: &str) -> Result<Self, String> {
        match spec.split_once(':') {
            Some((user, pass)) if !user.is_empty() && !pass.is_empty() => Ok(Credentials {
                user: user.to_string(),
                pass: pass.to_string(),
            }),
            _ => Err(format!(
                "{spec:?} is not USER:PASS: expected both parts, non-empty, e.g. ops:s3cret"
            )),
        }
    }
}

impl std::fmt::Display for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.user, self.pass)
    }
}

/// `POST /swarm`'s form, as a client sends it; the master turns it into a
/// [`crate::master::SwarmRequest`] with `SwarmRequest::try_from` (see
/// [`crate::web::parse_swarm_form`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwarmForm {
    /// Users to run across all workers.
    pub user_count: u64,
    /// Users started (or stopped) per second, across all workers, until the
    /// count is reached.
    pub spawn_rate: f64,
    /// The target host to load; `None` keeps the master's current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `30s`, `5m`, `1h30m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_time: Option<String>,
    /// Our extension: `average`, `maximum`, `minimum` or `disabled`, the
    /// coordinated omission mitigation the workers use from now on; `None`
    /// keeps the master's (`--co-mitigation`). Locust's master ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub co_mitigation: Option<CoMitigation>,
    /// Our extension: iterations started per second across the swarm (the
    /// open model, see `docs/load-models.md`); 0 runs the closed model;
    /// `None` keeps the run's (an edit) or takes the master's
    /// `--arrival-rate` (a new run). Locust's master ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrival_rate: Option<f64>,
}

impl SwarmForm {
    /// `user_count` users, started (or stopped) at `spawn_rate` per second;
    /// the host, run time and mitigation as the master has them.
    pub fn new(user_count: u64, spawn_rate: f64) -> Self {
        SwarmForm {
            user_count,
            spawn_rate,
            host: None,
            run_time: None,
            co_mitigation: None,
            arrival_rate: None,
        }
    }
}

/// `POST /swarm`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwarmAnswer {
    /// Whether the master took the order.
    pub success: bool,
    /// Locust's human-readable outcome, e.g. `Swarming started`, or why not.
    pub message: String,
    /// The host the users will load, as the master settled it.
    #[serde(default)]
    pub host: Option<String>,
    /// Locust adds the run time, in whole seconds, when one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_time: Option<u64>,
}

/// `POST /stop`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StopAnswer {
    /// Whether the master stopped the run.
    pub success: bool,
    /// Locust's human-readable outcome.
    pub message: String,
}

/// One row of `GET /stats/requests` (`Aggregated` last).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsRow {
    /// The HTTP method; empty on the `Aggregated` row.
    pub method: String,
    /// The request name, as Locust groups it (the path by default), or
    /// `Aggregated`.
    pub name: String,
    /// Requests finished since the run (or the last reset) began.
    pub num_requests: u64,
    /// Of those, how many failed.
    pub num_failures: u64,
    /// Fastest response, ms (rounded; 0 before any).
    #[serde(deserialize_with = "lenient_u64")]
    pub min_response_time: u64,
    /// Slowest response, ms (rounded).
    #[serde(deserialize_with = "lenient_u64")]
    pub max_response_time: u64,
    /// Requests per second over the last seconds (Locust's 10 s window).
    #[serde(deserialize_with = "lenient_f64")]
    pub current_rps: f64,
    /// Failures per second over the same window.
    #[serde(deserialize_with = "lenient_f64")]
    pub current_fail_per_sec: f64,
    /// Mean response time of timed requests, ms.
    #[serde(deserialize_with = "lenient_f64")]
    pub avg_response_time: f64,
    /// 50th percentile, ms (a Locust bucket).
    #[serde(deserialize_with = "lenient_u64")]
    pub median_response_time: u64,
    /// Requests per second over the whole run.
    #[serde(deserialize_with = "lenient_f64")]
    pub total_rps: f64,
    /// Failures per second over the whole run.
    #[serde(deserialize_with = "lenient_f64")]
    pub total_fail_per_sec: f64,
    #[serde(
        rename = "response_time_percentile_0.95",
        deserialize_with = "lenient_u64"
    )]
    /// 95th percentile over the whole run, ms (a Locust bucket).
    pub p95: u64,
    #[serde(
        rename = "response_time_percentile_0.99",
        deserialize_with = "lenient_u64"
    )]
    /// 99th percentile over the whole run, ms (a Locust bucket).
    pub p99: u64,
    /// Mean response body size, bytes.
    #[serde(deserialize_with = "lenient_f64")]
    pub avg_content_length: f64,
    /// Our extension: the same times to the microsecond (a Locust client
    /// reads the keys it knows and never sees it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precise: Option<PreciseTimes>,
}

/// Response times in ms with their fractions, and where percentiles came
/// from: `"hdr"` (merged microsecond histograms) or `"buckets"` (Locust's
/// rounded buckets, when a report without a histogram was merged in).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreciseTimes {
    /// `"hdr"`, `"hdr+co"` (the histograms, corrected for coordinated
    /// omission) or `"buckets"`: where the percentiles below came from.
    pub source: String,
    /// Requests goose back-filled for stalled users (coordinated omission
    /// mitigation), counted in the percentiles and slowest time only; 0
    /// (and absent) without mitigation.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub co_backfilled: u64,
    /// Fastest response, ms to the µs.
    pub min_ms: f64,
    /// Mean response time, ms to the µs.
    pub avg_ms: f64,
    /// Slowest response, ms to the µs.
    pub max_ms: f64,
    /// Median, ms.
    pub p50_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// 99.9th percentile, ms.
    pub p999_ms: f64,
    /// 99.99th percentile, ms.
    pub p9999_ms: f64,
}

impl PreciseTimes {
    /// An entry's times; `None` before it timed any request.
    pub fn of(entry: &StatsEntry) -> Option<PreciseTimes> {
        if entry.timed_requests() == 0 {
            return None;
        }
        let round = |ms: f64| (ms * 1000.0).round() / 1000.0;
        Some(PreciseTimes {
            source: entry.percentile_source().to_string(),
            co_backfilled: if entry.co_corrected() {
                entry.backfilled
            } else {
                0
            },
            min_ms: round(entry.min_response_time.unwrap_or(0.0)),
            avg_ms: round(entry.avg_response_time()),
            max_ms: round(entry.max_response_time),
            p50_ms: round(entry.percentile_ms(0.5)),
            p95_ms: round(entry.percentile_ms(0.95)),
            p99_ms: round(entry.percentile_ms(0.99)),
            p999_ms: round(entry.percentile_ms(0.999)),
            p9999_ms: round(entry.percentile_ms(0.9999)),
        })
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One row of the errors table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorRow {
    /// The HTTP method of the failed requests.
    pub method: String,
    /// The request name they were logged under.
    pub name: String,
    /// The error's text, as the worker reported it.
    pub error: String,
    /// How many times it happened.
    pub occurrences: u64,
    /// First occurrence, epoch seconds, when known (newer Locust and ours).
    #[serde(default)]
    pub first_seen: Option<f64>,
    /// Latest occurrence, epoch seconds, when known.
    #[serde(default)]
    pub last_seen: Option<f64>,
}

/// One worker as the master lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerRow {
    /// The worker's node id (`hostname_<uuid>` in Locust).
    pub id: String,
    /// What the worker is doing, as the master last heard.
    pub state: NodeState,
    /// Users the worker runs now.
    pub user_count: u64,
    /// Our extension: users per class the worker reported running (in its
    /// `spawning_complete`, then with each `stats`), as Locust's master
    /// keeps them for its ratios.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub user_classes_count: std::collections::BTreeMap<String, u64>,
    /// The worker process's CPU, percent of one core.
    #[serde(deserialize_with = "lenient_f64")]
    pub cpu_usage: f64,
    /// The worker process's resident memory, bytes.
    #[serde(deserialize_with = "lenient_u64")]
    pub memory_usage: u64,
    /// Our extension: the CPU as a share of the cores the worker may use
    /// (1.0: all busy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_share: Option<f64>,
}

/// p50 and p95 of the last few seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CurrentPercentiles {
    #[serde(
        rename = "response_time_percentile_0.5",
        deserialize_with = "lenient_u64"
    )]
    /// Median of the recent window, ms.
    pub p50: u64,
    #[serde(
        rename = "response_time_percentile_0.95",
        deserialize_with = "lenient_u64"
    )]
    /// 95th percentile of the recent window, ms.
    pub p95: u64,
}

/// `GET /stats/requests`: the live view of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsRequests {
    /// One row per (method, name), then `Aggregated`.
    pub stats: Vec<StatsRow>,
    /// The errors table.
    pub errors: Vec<ErrorRow>,
    /// All requests per second over the recent window.
    #[serde(deserialize_with = "lenient_f64")]
    pub current_rps: f64,
    /// All failures per second over the recent window.
    #[serde(deserialize_with = "lenient_f64")]
    pub current_fail_per_sec: f64,
    /// All requests per second over the whole run.
    #[serde(deserialize_with = "lenient_f64")]
    pub total_rps: f64,
    /// All failures per second over the whole run.
    #[serde(deserialize_with = "lenient_f64")]
    pub total_fail_per_sec: f64,
    /// Failures as a fraction of all requests (0..=1).
    #[serde(deserialize_with = "lenient_f64")]
    pub fail_ratio: f64,
    /// Percentiles of the recent window, all requests.
    pub current_response_time_percentiles: CurrentPercentiles,
    /// The connected workers (Locust lists them only on a master).
    #[serde(default)]
    pub workers: Vec<WorkerRow>,
    /// How many workers are connected.
    #[serde(default)]
    pub worker_count: usize,
    /// Where the run is: ready, spawning, running, stopped...
    pub state: RunState,
    /// Users running now across all workers.
    pub user_count: u64,
    /// Our extension (Locust names it elsewhere): the current target.
    #[serde(default)]
    pub host: Option<String>,
    /// Our extension: the fleet's events, oldest first.
    #[serde(default)]
    pub worker_events: Vec<WorkerEvent>,
    /// Our extension: frames from peers the master dropped unread, by why
    /// (someone who never joined, or spoke for another worker).
    #[serde(default)]
    pub refused_frames: Refusals,
    /// Our extension: every `--threshold` rule, what it observed and
    /// whether it passes (live while the run goes, final once stopped).
    #[serde(default)]
    pub thresholds: Vec<Verdict>,
    /// Our extension: the master's `--test-plan` and where the run is in
    /// it (step, elapsed, the users asked now); null without a plan.
    #[serde(default)]
    pub test_plan: Option<PlanState>,
    /// Our extension: the user classes the run spreads its users over.
    #[serde(default)]
    pub user_classes: Vec<String>,
    /// Our extension: with `--class-picker`, the classes a run may choose
    /// (Locust's `user_classes` form field); null without it.
    #[serde(default)]
    pub class_picker: Option<Vec<ClassRow>>,
    /// Our extension: the arrival rate asked of the whole swarm, iterations
    /// per second; null in a closed run.
    #[serde(default)]
    pub arrival_rate: Option<f64>,
    /// Our extension: the open model's starts no user was free for, all
    /// workers, since the run (or the last reset) began.
    #[serde(default)]
    pub dropped_iterations: u64,
}

/// A user class a run may choose, with its weight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassRow {
    /// The class (scenario) name, as the form's `user_classes` gives it.
    pub name: String,
    /// Its weight among the classes chosen.
    pub weight: u64,
}

impl StatsRequests {
    /// The `Aggregated` row (the last one).
    pub fn aggregated(&self) -> Option<&StatsRow> {
        self.stats
            .iter()
            .rev()
            .find(|r| r.name == crate::stats::AGGREGATED)
    }
}

/// Occurrences of one error text, all request names together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorCount {
    /// The error's text.
    pub error: String,
    /// How many times it happened, all names together.
    pub occurrences: u64,
}

/// `GET /stats/total` (our extension): the `Aggregated` entry in full,
/// with its bucket maps, so a remote ramp measures exact windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TotalAnswer {
    /// Where the run is.
    pub state: RunState,
    /// Users running now across all workers.
    pub user_count: u64,
    /// Users the last `swarm` asked for; `user_count` climbs towards it.
    pub target_user_count: u64,
    /// How many workers are connected.
    pub worker_count: usize,
    /// The target host the users load.
    pub host: String,
    /// The `Aggregated` entry, with its buckets and per-second counters.
    pub total: StatsEntry,
    /// Occurrences per error text, so a ramp can tell what failed in a window.
    #[serde(default)]
    pub errors: Vec<ErrorCount>,
    /// The fleet's events (joins, losses, quits), oldest first.
    #[serde(default)]
    pub worker_events: Vec<WorkerEvent>,
    /// The busiest worker's CPU, as a share of its cores (1.0: all busy).
    #[serde(default)]
    pub busiest_worker_cpu: f64,
}

/// One row of `GET /exceptions`; `nodes` is one comma-separated string, as
/// in Locust.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExceptionJson {
    /// How many times workers reported this exception.
    pub count: u64,
    /// The exception's message.
    pub msg: String,
    /// The traceback the worker sent.
    pub traceback: String,
    /// Ids of the reporting workers, comma-separated.
    pub nodes: String,
}

/// `GET /exceptions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExceptionsAnswer {
    /// One row per distinct (message, traceback).
    pub exceptions: Vec<ExceptionJson>,
}

/// A JSON number, or `null` (as 0): Locust sends floats and nulls where we
/// send integers.
fn lenient_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(0.0))
}

/// As [`lenient_f64`], rounded to a whole number.
fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let value = lenient_f64(d)?;
    Ok(if value.is_finite() && value > 0.0 {
        value.round() as u64
    } else {
        0
    })
}

/// Error text → occurrences, for [`TotalAnswer::errors`].
pub fn error_counts(errors: &BTreeMap<String, u64>) -> Vec<ErrorCount> {
    errors
        .iter()
        .map(|(error, occurrences)| ErrorCount {
            error: error.clone(),
            occurrences: *occurrences,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_parse_once_and_say_what_is_wrong() {
        let c: Credentials = "ops:pa:ss".parse().expect("valid");
        assert_eq!((c.user.as_str(), c.pass.as_str()), ("ops", "pa:ss"));
        assert_eq!(c.to_string(), "ops:pa:ss");
        assert!(
            !format!("{c:?}").contains("pa:ss"),
            "Debug hides the password"
        );
        for bad in ["", "ops", ":x", "ops:"] {
            let err = bad.parse::<Credentials>().unwrap_err();
            assert!(err.contains("USER:PASS"), "{err}");
        }
    }

    #[test]
    fn locust_numbers_and_nulls_are_read() {
        let row: StatsRow = serde_json::from_value(serde_json::json!({
            "method": "GET", "name": "/", "num_requests": 3, "num_failures": 0,
            "min_response_time": 1.4, "max_response_time": null,
            "current_rps": 2, "current_fail_per_sec": 0, "avg_response_time": 1.5,
            "median_response_time": 1, "total_rps": 1.5, "total_fail_per_sec": 0.0,
            "response_time_percentile_0.95": 2.0, "response_time_percentile_0.99": 2,
            "avg_content_length": 612
        }))
        .expect("reads Locust's row");
        assert_eq!(
            (row.min_response_time, row.max_response_time, row.p95),
            (1, 0, 2)
        );
        let state: RunState = serde_json::from_value(serde_json::json!("cleanup")).expect("alias");
        assert_eq!(state, RunState::Stopping);
    }
}
