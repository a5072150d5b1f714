//! Ramps across the network: [`HttpDriver`] drives a master through its
//! web API (`POST /swarm`, `GET /stop`) and reads `GET /stats/total`, our
//! extension that carries the `Aggregated` entry with its response-time
//! buckets, so a remote ramp computes exact windows and percentiles.
//! [`total_json`] writes that body; [`parse_total`] reads it back.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

use super::driver::{error_counts, DriverError, RampDriver, Reading};
use crate::master::{MasterSnapshot, RunState, WorkerEvent};
use crate::stats::StatsEntry;

/// How long one API call may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The body of `GET /stats/total`: the run's state and the `Aggregated`
/// entry in full (bucket and per-second maps keyed by their numbers as
/// strings), plus error counts by text.
pub fn total_json(snapshot: &MasterSnapshot) -> Value {
    let e = &snapshot.stats.total;
    let keyed = |map: &BTreeMap<i64, u64>| -> BTreeMap<String, u64> {
        map.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    };
    let buckets: BTreeMap<String, u64> = e
        .response_times
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    let errors: Vec<Value> = error_counts(snapshot)
        .into_iter()
        .map(|(error, occurrences)| json!({"error": error, "occurrences": occurrences}))
        .collect();
    json!({
        "state": snapshot.state.as_str(),
        "user_count": snapshot.user_count,
        "target_user_count": snapshot.target_user_count,
        "worker_count": snapshot.active_workers(),
        "host": snapshot.host,
        "total": {
            "name": e.name,
            "method": e.method,
            "num_requests": e.num_requests,
            "num_none_requests": e.num_none_requests,
            "num_failures": e.num_failures,
            "total_response_time": e.total_response_time,
            "min_response_time": e.min_response_time,
            "max_response_time": e.max_response_time,
            "total_content_length": e.total_content_length,
            "response_times": buckets,
            "num_reqs_per_sec": keyed(&e.num_reqs_per_sec),
            "num_fail_per_sec": keyed(&e.num_fail_per_sec),
            "last_request_timestamp": e.last_request_timestamp,
            "start_time": e.start_time,
        },
        "errors": errors,
        "worker_events": snapshot.events,
    })
}

#[derive(Debug, Deserialize)]
struct TotalBody {
    state: String,
    user_count: u64,
    target_user_count: u64,
    worker_count: usize,
    total: EntryBody,
    #[serde(default)]
    errors: Vec<ErrorBody>,
    #[serde(default)]
    worker_events: Vec<WorkerEvent>,
}

#[derive(Debug, Deserialize)]
struct EntryBody {
    name: String,
    method: String,
    num_requests: u64,
    #[serde(default)]
    num_none_requests: u64,
    num_failures: u64,
    total_response_time: f64,
    min_response_time: Option<f64>,
    max_response_time: f64,
    #[serde(default)]
    total_content_length: u64,
    response_times: BTreeMap<String, u64>,
    #[serde(default)]
    num_reqs_per_sec: BTreeMap<String, u64>,
    #[serde(default)]
    num_fail_per_sec: BTreeMap<String, u64>,
    last_request_timestamp: Option<f64>,
    start_time: f64,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: String,
    occurrences: u64,
}

fn run_state(text: &str) -> Result<RunState, String> {
    [
        RunState::Ready,
        RunState::Spawning,
        RunState::Running,
        RunState::Stopping,
        RunState::Stopped,
    ]
    .into_iter()
    .find(|s| s.as_str() == text)
    .ok_or_else(|| format!("unknown state {text:?}"))
}

fn numbered<K: std::str::FromStr + Ord>(
    map: BTreeMap<String, u64>,
    what: &str,
) -> Result<BTreeMap<K, u64>, String> {
    map.into_iter()
        .map(|(k, v)| {
            k.parse::<K>()
                .map(|k| (k, v))
                .map_err(|_| format!("{what} key {k:?} is not a number"))
        })
        .collect()
}

/// Reads a `GET /stats/total` body back into a [`Reading`].
pub fn parse_total(body: &str) -> Result<Reading, String> {
    let body: TotalBody = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let e = body.total;
    let mut total = StatsEntry::new(&e.name, &e.method, e.start_time);
    total.num_requests = e.num_requests;
    total.num_none_requests = e.num_none_requests;
    total.num_failures = e.num_failures;
    total.total_response_time = e.total_response_time;
    total.min_response_time = e.min_response_time;
    total.max_response_time = e.max_response_time;
    total.total_content_length = e.total_content_length;
    total.response_times = numbered(e.response_times, "response_times")?;
    total.num_reqs_per_sec = numbered(e.num_reqs_per_sec, "num_reqs_per_sec")?;
    total.num_fail_per_sec = numbered(e.num_fail_per_sec, "num_fail_per_sec")?;
    total.last_request_timestamp = e.last_request_timestamp;
    let mut errors = BTreeMap::new();
    for error in body.errors {
        *errors.entry(error.error).or_default() += error.occurrences;
    }
    Ok(Reading {
        total,
        errors,
        workers: body.worker_count,
        users: body.user_count,
        target_users: body.target_user_count,
        state: run_state(&body.state)?,
        events: body.worker_events,
    })
}

/// A master reached over HTTP, e.g. `http://10.0.0.7:8089`.
pub struct HttpDriver {
    client: reqwest::Client,
    base: String,
    /// Target for swarm requests; `None` keeps the master's.
    host: Option<String>,
    /// `--web-auth` credentials of the master, USER and PASS.
    auth: Option<(String, String)>,
}

impl HttpDriver {
    pub fn new(
        base_url: &str,
        host: Option<String>,
        auth: Option<(String, String)>,
    ) -> Result<Self, DriverError> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| DriverError::Remote {
                url: base_url.to_string(),
                message: format!("cannot build an HTTP client: {e}"),
            })?;
        Ok(HttpDriver {
            client,
            base: base_url.trim_end_matches('/').to_string(),
            host,
            auth,
        })
    }

    fn remote(&self, path: &str, message: impl std::fmt::Display) -> DriverError {
        DriverError::Remote {
            url: format!("{}{path}", self.base),
            message: message.to_string(),
        }
    }

    /// Sends a request and returns the body of a 2xx answer.
    async fn call(
        &self,
        request: reqwest::RequestBuilder,
        path: &str,
    ) -> Result<String, DriverError> {
        let request = match &self.auth {
            Some((user, pass)) => request.basic_auth(user, Some(pass)),
            None => request,
        };
        let response = request.send().await.map_err(|e| self.remote(path, e))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| self.remote(path, e))?;
        if !status.is_success() {
            let excerpt: String = body.chars().take(200).collect();
            return Err(self.remote(path, format!("HTTP {status}: {excerpt}")));
        }
        Ok(body)
    }
}

#[async_trait]
impl RampDriver for HttpDriver {
    async fn set_users(&self, users: u64, spawn_rate: f64) -> Result<(), DriverError> {
        let mut form = vec![
            ("user_count", users.to_string()),
            ("spawn_rate", spawn_rate.to_string()),
        ];
        if let Some(host) = &self.host {
            form.push(("host", host.clone()));
        }
        let url = format!("{}/swarm", self.base);
        let body = self
            .call(self.client.post(url).form(&form), "/swarm")
            .await?;
        let answer: Value = serde_json::from_str(&body).map_err(|e| self.remote("/swarm", e))?;
        if answer["success"].as_bool() == Some(true) {
            return Ok(());
        }
        Err(DriverError::Refused {
            users,
            message: answer["message"]
                .as_str()
                .unwrap_or("no reason given")
                .to_string(),
        })
    }

    async fn read(&self) -> Result<Reading, DriverError> {
        let url = format!("{}/stats/total", self.base);
        let body = self.call(self.client.get(url), "/stats/total").await?;
        parse_total(&body).map_err(|e| self.remote("/stats/total", e))
    }

    async fn stop(&self) -> Result<(), DriverError> {
        let url = format!("{}/stop", self.base);
        self.call(self.client.get(url), "/stop").await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::master::{Master, MasterConfig, UserClass};
    use crate::stats::{RequestStats, StatsError};

    fn snapshot() -> MasterSnapshot {
        let mut stats = RequestStats::new(100.0);
        stats.total.log(12.0, 90, false, 101.0);
        stats.total.log(250.0, 10, true, 102.0);
        stats.add_error(&StatsError {
            method: "GET".into(),
            name: "/".into(),
            error: "503 Service Unavailable: /".into(),
            occurrences: 10,
            first_seen: None,
            last_seen: None,
        });
        MasterSnapshot {
            state: RunState::Running,
            host: "http://127.0.0.1:9".into(),
            user_count: 4,
            target_user_count: 4,
            stats,
            workers: Vec::new(),
            exceptions: Vec::new(),
            current_percentiles: (0, 0),
            started_at: None,
            ended_at: None,
            events: Vec::new(),
        }
    }

    #[test]
    fn the_total_survives_the_trip() {
        let snapshot = snapshot();
        let body = total_json(&snapshot).to_string();
        let reading = parse_total(&body).expect("parses");
        assert_eq!(reading.total, snapshot.stats.total);
        assert_eq!(reading.total.percentile(0.95), 250);
        assert_eq!(reading.errors.get("503 Service Unavailable: /"), Some(&10));
        assert_eq!((reading.users, reading.target_users), (4, 4));
        assert_eq!(reading.state, RunState::Running);
        assert_eq!(reading.workers, 0);
    }

    #[test]
    fn nonsense_is_refused() {
        assert!(parse_total("{}").is_err());
        let mut body = total_json(&snapshot());
        body["total"]["response_times"] = json!({"twelve": 1});
        let err = parse_total(&body.to_string()).expect_err("bad key");
        assert!(err.contains("twelve"), "{err}");
        body = total_json(&snapshot());
        body["state"] = json!("dancing");
        assert!(parse_total(&body.to_string()).is_err());
    }

    /// The web app and the driver agree, over a real socket.
    #[tokio::test]
    async fn the_driver_reads_a_live_master() {
        let link = crate::protocol::transport::bind_master("127.0.0.1", 0)
            .await
            .expect("bind");
        let classes = vec![UserClass {
            name: "WebsiteUser".into(),
            weight: 1,
        }];
        let (master, handle) = Master::new(MasterConfig::new("http://127.0.0.1:9", classes), link);
        tokio::spawn(master.run());
        let app = crate::web::app(handle, None);
        let addr = crate::web::serve(
            ([127, 0, 0, 1], 0).into(),
            app,
            crate::shutdown::Shutdown::new(),
        )
        .await
        .expect("serve");
        let driver = HttpDriver::new(&format!("http://{addr}/"), None, None).expect("client");
        let reading = driver.read().await.expect("read");
        assert_eq!(reading.state, RunState::Ready);
        assert_eq!((reading.workers, reading.total.num_requests), (0, 0));
        match driver.set_users(5, 1.0).await {
            Err(DriverError::Refused { users, message }) => {
                assert_eq!(users, 5);
                assert!(message.contains("no workers"), "{message}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(
            driver.wait_for_workers(1, Duration::from_millis(300)).await,
            Err(0)
        );
        driver.stop().await.expect("stop answers");
    }
}
