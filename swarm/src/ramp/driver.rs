//! How a ramp talks to a master: a small trait, so the step loop runs the
//! same against the master in this process ([`MasterDriver`]), a master
//! across the network ([`super::HttpDriver`]) or a fake in unit tests.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

use crate::api::SwarmForm;
use crate::master::{MasterError, MasterHandle, RunState, SwarmRequest, WorkerEvent};
use crate::stats::StatsEntry;

/// How often waits poll the master.
const POLL: Duration = Duration::from_millis(200);

/// The master could not be driven.
#[derive(Debug, thiserror::Error)]
pub enum RampDriverError {
    /// The in-process master refused or has stopped.
    #[error(transparent)]
    Master(#[from] MasterError),
    /// The master refused a swarm request (its message says why).
    #[error("the master refused {users} users: {message}")]
    Refused {
        /// The user count asked for.
        users: u64,
        /// The master's answer.
        message: String,
    },
    /// A remote master did not answer, or answered nonsense.
    #[error("master at {url}: {message}")]
    Remote {
        /// The URL called.
        url: String,
        /// What went wrong.
        message: String,
    },
}

/// What the ramp reads of a master at one instant.
#[derive(Debug, Clone)]
pub struct Reading {
    /// The `Aggregated` entry, cumulative since the run started.
    pub total: StatsEntry,
    /// Error text → occurrences so far, all request names together.
    pub errors: BTreeMap<String, u64>,
    /// Workers connected and not missing.
    pub workers: usize,
    /// Users the workers report running.
    pub users: u64,
    /// Users the master is dispatching toward.
    pub target_users: u64,
    /// The master's run state.
    pub state: RunState,
    /// The fleet's events so far (joins, missing, reclaims…), oldest first.
    pub events: Vec<WorkerEvent>,
    /// The busiest worker's CPU now, as a share of its cores (1.0: all busy).
    pub worker_cpu: f64,
}

impl Reading {
    /// Whether the master has spread exactly `users` and the workers run them.
    pub fn spawned(&self, users: u64) -> bool {
        self.state == RunState::Running && self.target_users == users && self.users == users
    }
}

/// The few things a ramp needs from a master.
#[async_trait]
pub trait RampDriver: Send + Sync {
    /// Asks for `users` users, started (or stopped) at `spawn_rate` per
    /// second, starting `arrival_rate` iterations per second across the
    /// swarm (the open model; 0: the closed model).
    async fn set_load(
        &self,
        users: u64,
        spawn_rate: f64,
        arrival_rate: f64,
    ) -> Result<(), RampDriverError>;

    /// Asks for `users` users of the closed model, started (or stopped) at
    /// `spawn_rate` per second.
    async fn set_users(&self, users: u64, spawn_rate: f64) -> Result<(), RampDriverError> {
        self.set_load(users, spawn_rate, 0.0).await
    }

    /// Asks for `users` users running `rate` iterations per second across
    /// the swarm (the open model), started at `spawn_rate` users per second.
    async fn set_rate(
        &self,
        users: u64,
        rate: f64,
        spawn_rate: f64,
    ) -> Result<(), RampDriverError> {
        self.set_load(users, spawn_rate, rate).await
    }
    /// The master's numbers now.
    async fn read(&self) -> Result<Reading, RampDriverError>;
    /// Stops the users (the workers stay connected).
    async fn stop(&self) -> Result<(), RampDriverError>;

    /// Waits until `users` run (see [`Reading::spawned`]) or `limit` passes;
    /// returns the last reading and whether spawning completed.
    async fn wait_spawned(
        &self,
        users: u64,
        limit: Duration,
    ) -> Result<(Reading, bool), RampDriverError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let reading = self.read().await?;
            if reading.spawned(users) {
                return Ok((reading, true));
            }
            if tokio::time::Instant::now() >= deadline || reading.workers == 0 {
                return Ok((reading, false));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until `wanted` workers are connected or `limit` passes;
    /// `Err` holds how many were.
    async fn wait_for_workers(&self, wanted: usize, limit: Duration) -> Result<(), usize> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let seen = self.read().await.map(|r| r.workers).unwrap_or(0);
            if seen >= wanted {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(seen);
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The master running in this process.
pub struct MasterDriver {
    master: MasterHandle,
    /// Target for the swarm requests; `None` keeps the master's.
    host: Option<String>,
}

impl MasterDriver {
    /// Drives `master`, sending `host` with each swarm request when given.
    pub fn new(master: MasterHandle, host: Option<String>) -> Self {
        MasterDriver { master, host }
    }

    /// Asks for `users` at `spawn_rate`, starting `arrival_rate`
    /// iterations per second (0: the closed model).
    async fn swarm(
        &self,
        users: u64,
        spawn_rate: f64,
        arrival_rate: f64,
    ) -> Result<(), RampDriverError> {
        let form = SwarmForm {
            host: self.host.clone(),
            arrival_rate: Some(arrival_rate),
            ..SwarmForm::new(users, spawn_rate)
        };
        let request = SwarmRequest::try_from(form).map_err(|err| RampDriverError::Refused {
            users,
            message: err.to_string(),
        })?;
        match self.master.swarm(request).await {
            Ok(message) => {
                tracing::debug!("{message}");
                Ok(())
            }
            Err(MasterError::Gone) => Err(MasterError::Gone.into()),
            Err(err) => Err(RampDriverError::Refused {
                users,
                message: err.to_string(),
            }),
        }
    }
}

#[async_trait]
impl RampDriver for MasterDriver {
    async fn set_load(
        &self,
        users: u64,
        spawn_rate: f64,
        arrival_rate: f64,
    ) -> Result<(), RampDriverError> {
        self.swarm(users, spawn_rate, arrival_rate).await
    }

    async fn read(&self) -> Result<Reading, RampDriverError> {
        let snapshot = self.master.snapshot().await?;
        Ok(Reading {
            errors: snapshot.error_counts(),
            workers: snapshot.active_workers(),
            users: snapshot.user_count,
            target_users: snapshot.target_user_count,
            state: snapshot.state,
            worker_cpu: snapshot.busiest_worker_cpu(),
            total: snapshot.stats.total,
            events: snapshot.events,
        })
    }

    async fn stop(&self) -> Result<(), RampDriverError> {
        Ok(self.master.stop().await?)
    }
}
