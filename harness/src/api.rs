//! [`Api`]: a master's web API (ours or a stock Locust master's) for plain
//! `#[test]` functions — [`swarm::client::MasterClient`] on a small
//! current-thread tokio runtime, answering [`swarm::api`] types and
//! panicking, with the URL and the reason, when a call fails.
//!
//! Blocking: from a `#[tokio::test]`, call it inside `spawn_blocking`.

use swarm::api::{
    Credentials, ExceptionsAnswer, StatsRequests, StatsRow, StopAnswer, SwarmAnswer, SwarmForm,
    TotalAnswer, WorkerRow,
};
use swarm::client::{ClientError, MasterClient};
use tokio::runtime::Runtime;

/// A master's web API at a base URL such as `http://127.0.0.1:8089`.
#[derive(Debug)]
pub struct Api {
    client: MasterClient,
    runtime: Runtime,
}

impl Api {
    /// The API at `base_url`, without credentials.
    pub fn new(base_url: &str) -> Api {
        Api::with_credentials(base_url, None)
    }

    /// The API at `base_url` behind `--web-auth USER:PASS`.
    pub fn with_credentials(base_url: &str, credentials: Option<Credentials>) -> Api {
        let client = MasterClient::new(base_url, credentials)
            .unwrap_or_else(|e| panic!("cannot make a client for {base_url}: {e}"));
        Api::on(client)
    }

    /// The API of an `https://` master whose certificate is `cert_pem`, the
    /// only one trusted (as `spotload ramp` trusts the one deploy made).
    pub fn pinned(base_url: &str, cert_pem: &[u8]) -> Api {
        let client = MasterClient::pinned(base_url, None, cert_pem)
            .unwrap_or_else(|e| panic!("cannot make a client for {base_url}: {e}"));
        Api::on(client)
    }

    fn on(client: MasterClient) -> Api {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start a tokio runtime: {e}"));
        Api { client, runtime }
    }

    /// The base URL, without a trailing slash.
    pub fn url(&self) -> &str {
        self.client.base()
    }

    /// `GET /stats/requests`; `Err` when the master does not answer (yet).
    pub fn try_requests(&self) -> Result<StatsRequests, ClientError> {
        self.runtime.block_on(self.client.requests())
    }

    /// `GET /stats/requests`.
    pub fn requests(&self) -> StatsRequests {
        self.try_requests().unwrap_or_else(|e| panic!("{e}"))
    }

    /// `GET /stats/total` (ours only).
    pub fn total(&self) -> TotalAnswer {
        self.runtime
            .block_on(self.client.total())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `GET /exceptions`.
    pub fn exceptions(&self) -> ExceptionsAnswer {
        self.runtime
            .block_on(self.client.exceptions())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `GET path` as text (a CSV download, say).
    pub fn get_text(&self, path: &str) -> String {
        self.runtime
            .block_on(self.client.get_text(path))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `POST /swarm` with this form; a refusal is `success: false`.
    pub fn swarm_form(&self, form: &SwarmForm) -> SwarmAnswer {
        self.runtime
            .block_on(self.client.swarm(form))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `POST /swarm` with these users and rate; panics unless it answers
    /// `success: true`.
    pub fn swarm(&self, users: u64, spawn_rate: f64) -> SwarmAnswer {
        self.swarm_accepted(&SwarmForm::new(users, spawn_rate))
    }

    /// `POST /swarm`: `users` users, all started at once, against `host`;
    /// panics unless it answers `success: true`.
    pub fn swarm_at_once(&self, users: u64, host: &str) -> SwarmAnswer {
        self.swarm_accepted(&SwarmForm {
            host: Some(host.to_string()),
            ..SwarmForm::new(users, users as f64)
        })
    }

    fn swarm_accepted(&self, form: &SwarmForm) -> SwarmAnswer {
        let answer = self.swarm_form(form);
        assert!(
            answer.success,
            "POST {}/swarm refused: {answer:?}",
            self.url()
        );
        answer
    }

    /// `POST /stop`; panics unless it succeeds.
    pub fn stop(&self) -> StopAnswer {
        let answer = self
            .runtime
            .block_on(self.client.stop())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            answer.success,
            "POST {}/stop refused: {answer:?}",
            self.url()
        );
        answer
    }

    /// `POST /stats/reset`; panics unless the master answers.
    pub fn reset_stats(&self) {
        self.runtime
            .block_on(self.client.reset_stats())
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// The `Aggregated` request count (0 before any request).
    pub fn total_requests(&self) -> u64 {
        total_requests(&self.requests())
    }
}

/// The `Aggregated` row of a `/stats/requests` answer.
pub fn aggregated(stats: &StatsRequests) -> Option<&StatsRow> {
    stats.aggregated()
}

/// The `Aggregated` request count of a `/stats/requests` answer (0 if none).
pub fn total_requests(stats: &StatsRequests) -> u64 {
    stats.aggregated().map_or(0, |row| row.num_requests)
}

/// The listed worker with this node id.
pub fn worker_entry<'a>(stats: &'a StatsRequests, id: &str) -> Option<&'a WorkerRow> {
    stats.workers.iter().find(|w| w.id == id)
}

/// `(id, state, user_count)` of each listed worker, for messages and checks,
/// with the state spelt as the API spells it (`"running"`, `"missing"`).
pub fn worker_states(stats: &StatsRequests) -> Vec<(String, String, u64)> {
    stats
        .workers
        .iter()
        .map(|w| {
            let state = serde_json::to_value(w.state).ok();
            let state = state.as_ref().and_then(|s| s.as_str()).unwrap_or("?");
            (w.id.clone(), state.to_string(), w.user_count)
        })
        .collect()
}

/// The `Aggregated` count once it has not changed for 4 s (longer than a
/// worker's 3 s report interval).
pub fn settled_requests(api_url: &str, limit: std::time::Duration) -> u64 {
    let api = Api::new(api_url);
    let mut last = u64::MAX;
    let mut stable_since = std::time::Instant::now();
    crate::wait::wait_until(limit, "the request count to settle", || {
        let n = api.total_requests();
        if n != last {
            (last, stable_since) = (n, std::time::Instant::now());
        }
        (stable_since.elapsed() >= std::time::Duration::from_secs(4)).then_some(n)
    })
}

/// `GET {api_url}/stats/requests`, for a test that reads it once.
pub fn stats(api_url: &str) -> StatsRequests {
    Api::new(api_url).requests()
}

/// `POST {api_url}/swarm` with these users and rate (no `Origin`, like a
/// script); panics unless it answers `success: true`.
pub fn start_swarm(api_url: &str, users: u32, spawn_rate: u32) -> SwarmAnswer {
    Api::new(api_url).swarm(users.into(), spawn_rate.into())
}
