//! The worker's goose attack: started idle inside this process, steered
//! only through goose's telnet Controller (users, rates, start, stop) and
//! read through its `metricsjson` command.

use std::time::Duration;

use goose::config::GooseConfiguration;
use goose::prelude::*;
use tokio::task::JoinHandle;

use super::controller::{Controller, ControllerError};
use super::snapshot::GooseSnapshot;
use crate::stats::{now_epoch, StatsReport};

/// How fast goose may start users: the master paces the ramp by sending new
/// targets every second, so the worker reaches each at once. (No decrease
/// rate is set: with one, goose plans a ramp down right after the ramp up
/// and ends the run by itself.)
const FOLLOW_RATE: u32 = 10_000;

/// Goose's own limit on users per attack.
pub const MAX_USERS_PER_WORKER: u64 = 100_000;

/// How goose should run, from the worker's command line.
#[derive(Debug, Clone, Default)]
pub struct DriverOptions {
    /// Default target when the master sends none.
    pub host: Option<String>,
    /// Goose's request log, one line per request (for auditing a run).
    pub request_log: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Controller(#[from] ControllerError),
    #[error("goose could not start: {0}")]
    Goose(String),
    #[error("goose's metrics were not readable JSON: {0}")]
    Metrics(String),
    #[error("no free local port for goose's controller: {0}")]
    Port(std::io::Error),
}

/// A running (possibly idle) goose attack and the last metrics read from it.
pub struct GooseDriver {
    controller: Controller,
    attack: JoinHandle<Result<(), String>>,
    /// Host goose is configured with.
    host: Option<String>,
    /// Users goose is running now; 0 while idle.
    users: u64,
    /// Metrics as last reported to the master, and when.
    reported: GooseSnapshot,
    reported_at: f64,
}

impl GooseDriver {
    /// Starts goose idle with the given scenarios.
    /// `node_id` goes into every request's `User-Agent`
    /// (`loadtest/VERSION (NODE_ID)`), so a target's access log tells which
    /// worker sent what.
    pub async fn launch(
        scenarios: Vec<Scenario>,
        options: &DriverOptions,
        node_id: &str,
    ) -> Result<Self, DriverError> {
        let port = free_local_port().map_err(DriverError::Port)?;
        let client = goose::client::GooseClientBuilder::new()
            .without_cookies()
            .user_agent(format!(
                "loadtest/{} ({node_id})",
                env!("CARGO_PKG_VERSION")
            ));
        let mut attack = GooseAttack::initialize_with_config(configuration(port, options))
            .and_then(|attack| attack.set_client_builder_without_cookies(client))
            .map_err(|e| DriverError::Goose(e.to_string()))?;
        for scenario in scenarios {
            attack = attack.register_scenario(scenario);
        }
        let handle = tokio::spawn(async move {
            attack
                .execute()
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        let addr = format!("127.0.0.1:{port}");
        let controller = match Controller::connect(&addr, Duration::from_secs(10)).await {
            Ok(c) => c,
            Err(err) => {
                if handle.is_finished() {
                    if let Ok(Err(goose)) = handle.await {
                        return Err(DriverError::Goose(goose));
                    }
                }
                return Err(err.into());
            }
        };
        let mut driver = GooseDriver {
            controller,
            attack: handle,
            host: options.host.clone(),
            users: 0,
            reported: GooseSnapshot::default(),
            reported_at: now_epoch(),
        };
        driver
            .controller
            .expect_ok(&format!("increaserate {FOLLOW_RATE}"))
            .await?;
        Ok(driver)
    }

    pub fn users(&self) -> u64 {
        self.users
    }

    /// Whether goose ended on its own (it handles Ctrl-C itself).
    pub fn has_ended(&self) -> bool {
        self.attack.is_finished()
    }

    /// Brings goose to `users` against `host` (empty: keep the current one).
    /// Returns the stats of a run that had to stop for a new host.
    pub async fn set_users(
        &mut self,
        host: &str,
        users: u64,
    ) -> Result<Option<StatsReport>, DriverError> {
        let users = users.min(MAX_USERS_PER_WORKER);
        let host_changes = !host.is_empty() && self.host.as_deref() != Some(host);
        let mut flushed = None;
        if self.users > 0 && (users == 0 || host_changes) {
            flushed = Some(self.stop().await?);
        }
        if users == 0 {
            return Ok(flushed);
        }
        if host_changes {
            self.controller.expect_ok(&format!("host {host}")).await?;
            self.host = Some(host.to_string());
        }
        self.controller.expect_ok(&format!("users {users}")).await?;
        if self.users == 0 {
            self.controller.expect_ok("start").await?;
        }
        self.users = users;
        Ok(flushed)
    }

    /// Stops every user; goose goes idle. Returns the last requests made.
    pub async fn stop(&mut self) -> Result<StatsReport, DriverError> {
        if self.users == 0 {
            return self.take_delta().await;
        }
        let reply = self.controller.command("stop").await?;
        if reply.contains("not running") {
            // Goose ended the run by itself; its metrics are still there.
            tracing::warn!("goose had already stopped: {reply}");
        } else if !reply.contains("stopped") {
            tracing::warn!("goose answered `stop` with: {reply}");
        }
        self.users = 0;
        self.settle().await
    }

    /// Requests made since the last call, as a Locust stats delta.
    pub async fn take_delta(&mut self) -> Result<StatsReport, DriverError> {
        let snapshot = self.snapshot().await?;
        Ok(self.report(snapshot))
    }

    fn report(&mut self, snapshot: GooseSnapshot) -> StatsReport {
        let now = now_epoch();
        let report = snapshot.delta_since(&self.reported, self.reported_at, now);
        self.reported = snapshot;
        self.reported_at = now;
        report
    }

    async fn snapshot(&mut self) -> Result<GooseSnapshot, DriverError> {
        let json = self.controller.command("metricsjson").await?;
        GooseSnapshot::parse(&json).map_err(|e| {
            DriverError::Metrics(format!(
                "{e}: {}",
                json.chars().take(200).collect::<String>()
            ))
        })
    }

    /// After a stop goose's metrics catch up with its users' last batches:
    /// read until two reads agree, within a bound (kept short: a Locust
    /// master waits only 0.5 s for a quitting worker's last report).
    async fn settle(&mut self) -> Result<StatsReport, DriverError> {
        let mut last = self.snapshot().await?;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(25)).await;
            let next = self.snapshot().await?;
            let same = next.request_count() == last.request_count();
            last = next;
            if same {
                break;
            }
        }
        Ok(self.report(last))
    }

    /// Stops goose for good.
    pub async fn shutdown(mut self) {
        let _ = self.controller.command("shutdown").await;
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.attack).await;
    }
}

fn configuration(telnet_port: u16, options: &DriverOptions) -> GooseConfiguration {
    let mut config = GooseConfiguration::default();
    config.host = options.host.clone();
    config.no_autostart = true;
    config.telnet_host = Some("127.0.0.1".into());
    config.telnet_port = Some(telnet_port);
    // Metrics accumulate across user-count changes; the worker diffs them.
    config.no_reset_metrics = true;
    config.no_print_metrics = true;
    config.quiet = 1;
    // Only request metrics travel to Locust's master.
    config.no_transaction_metrics = true;
    config.no_scenario_metrics = true;
    config.no_percentiles_over_time = true;
    config.request_log = options.request_log.clone();
    if config.request_log.is_some() {
        config.request_format = Some(goose::logger::GooseLogFormat::Json);
    }
    config
}

fn free_local_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
