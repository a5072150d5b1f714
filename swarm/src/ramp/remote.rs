//! Ramps across the network: [`HttpDriver`] drives a master through its
//! web API with a [`MasterClient`] (`POST /swarm`, `POST /stop`) and reads
//! `GET /stats/total`, our extension that carries the `Aggregated` entry
//! with its response-time buckets, so a remote ramp computes exact windows
//! and percentiles.

use async_trait::async_trait;

use super::driver::{RampDriver, RampDriverError, Reading};
use crate::api::{CoMitigation, Credentials, SwarmForm, TotalAnswer};
use crate::client::{ClientError, MasterClient};

impl From<TotalAnswer> for Reading {
    fn from(answer: TotalAnswer) -> Reading {
        let mut errors = std::collections::BTreeMap::new();
        for error in answer.errors {
            let n: &mut u64 = errors.entry(error.error).or_default();
            *n = n.saturating_add(error.occurrences);
        }
        Reading {
            total: answer.total,
            errors,
            workers: answer.worker_count,
            users: answer.user_count,
            target_users: answer.target_user_count,
            state: answer.state,
            events: answer.worker_events,
            worker_cpu: answer.busiest_worker_cpu,
        }
    }
}

impl From<ClientError> for RampDriverError {
    fn from(err: ClientError) -> Self {
        RampDriverError::Remote {
            url: err.url,
            message: err.message,
        }
    }
}

/// A master reached over HTTP, e.g. `http://10.0.0.7:8089`.
pub struct HttpDriver {
    client: MasterClient,
    /// Target for swarm requests; `None` keeps the master's.
    host: Option<String>,
    /// Coordinated omission mitigation for swarm requests; `None` keeps
    /// the master's.
    co_mitigation: Option<CoMitigation>,
}

impl HttpDriver {
    /// Drives the master at `base_url` (its web UI address) with `credentials`
    /// for `--web-auth`, sending `host` with each swarm request when given.
    pub fn new(
        base_url: &str,
        host: Option<String>,
        credentials: Option<Credentials>,
    ) -> Result<Self, RampDriverError> {
        let client = MasterClient::new(base_url, credentials)?;
        Ok(Self::from_client(client, host))
    }

    /// Drives the master `client` reaches (e.g. one pinned to the master's
    /// certificate), sending `host` with each swarm request when given.
    pub fn from_client(client: MasterClient, host: Option<String>) -> Self {
        HttpDriver {
            client,
            host,
            co_mitigation: None,
        }
    }

    /// Asks for `users` at `spawn_rate`, starting `arrival_rate`
    /// iterations per second (0: the closed model; a Locust master ignores
    /// the field).
    async fn swarm(
        &self,
        users: u64,
        spawn_rate: f64,
        arrival_rate: f64,
    ) -> Result<(), RampDriverError> {
        let form = SwarmForm {
            host: self.host.clone(),
            co_mitigation: self.co_mitigation,
            arrival_rate: Some(arrival_rate),
            ..SwarmForm::new(users, spawn_rate)
        };
        let answer = self.client.swarm(&form).await?;
        if answer.success {
            return Ok(());
        }
        Err(RampDriverError::Refused {
            users,
            message: answer.message,
        })
    }

    /// Sends `co_mitigation` with each swarm request, so the workers
    /// back-fill stalled users' requests.
    #[must_use]
    pub fn with_co_mitigation(mut self, co_mitigation: Option<CoMitigation>) -> Self {
        self.co_mitigation = co_mitigation;
        self
    }
}

#[async_trait]
impl RampDriver for HttpDriver {
    async fn set_load(
        &self,
        users: u64,
        spawn_rate: f64,
        arrival_rate: f64,
    ) -> Result<(), RampDriverError> {
        self.swarm(users, spawn_rate, arrival_rate).await
    }

    async fn read(&self) -> Result<Reading, RampDriverError> {
        Ok(self.client.total().await?.into())
    }

    async fn stop(&self) -> Result<(), RampDriverError> {
        self.client.stop().await.map(|_| ()).map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use serde_json::json;

    use crate::master::{Master, MasterConfig, MasterSnapshot, RunState, UserClass};
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
            refused: Default::default(),
            test_plan: None,
            user_classes: Vec::new(),
            class_picker: None,
            thresholds: Vec::new(),
            threshold_abort: None,
            arrival_rate: None,
        }
    }

    fn parse_total(body: &str) -> Result<Reading, String> {
        serde_json::from_str::<TotalAnswer>(body)
            .map(Reading::from)
            .map_err(|e| e.to_string())
    }

    fn total_json(snapshot: &MasterSnapshot) -> serde_json::Value {
        serde_json::to_value(crate::web::total_answer(snapshot)).expect("serializes")
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
        assert!(err.contains("key to be a number"), "{err}");
        body = total_json(&snapshot());
        body["state"] = json!("dancing");
        assert!(parse_total(&body.to_string()).is_err());
    }

    /// The web app and the driver agree, over a real socket.
    #[tokio::test]
    async fn the_driver_reads_a_live_master() {
        let link = crate::protocol::transport::bind_master("127.0.0.1", 0, None)
            .await
            .expect("bind");
        let classes = vec![UserClass {
            name: "WebsiteUser".into(),
            weight: 1,
        }];
        let (master, handle) = Master::new(MasterConfig::new("http://127.0.0.1:9", classes), link);
        tokio::spawn(master.run());
        let app = crate::web::app(handle, crate::web::WebAccess::default());
        let server = crate::web::serve(
            ([127, 0, 0, 1], 0).into(),
            app,
            crate::web::ServeOptions::default(),
            crate::shutdown::Shutdown::new(),
        )
        .await
        .expect("serve");
        let driver = HttpDriver::new(&format!("{}/", server.url()), None, None).expect("client");
        let reading = driver.read().await.expect("read");
        assert_eq!(reading.state, RunState::Ready);
        assert_eq!((reading.workers, reading.total.num_requests), (0, 0));
        match driver.set_users(5, 1.0).await {
            Err(RampDriverError::Refused { users, message }) => {
                assert_eq!(users, 5);
                assert!(message.contains("no workers"), "{message}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        // A rate ramp's step sends its rate: the form's check names it.
        match driver.set_rate(5, 2e6, 1.0).await {
            Err(RampDriverError::Refused { message, .. }) => {
                assert!(message.contains("Invalid arrival_rate"), "{message}");
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
