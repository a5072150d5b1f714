//! The master: registers workers, watches their heartbeats, spreads users
//! over them at the spawn rate, and aggregates their stats deltas.
//!
//! [`Master`] owns all state and runs as one task ([`Master::run`]); the web
//! API, headless runs and ramps talk to it through a [`MasterHandle`]
//! (commands with replies) and read its state as [`MasterSnapshot`]s.

mod admission;
mod decoding;
mod dispatch;
mod events;
mod handle;
mod history;
mod inbox;
mod registry;
mod runner;
mod shape;
mod state;
#[cfg(test)]
mod tests;

pub use admission::{Refusals, JOIN_BURST, JOIN_RATE, RECONNECT_RATE};
pub use decoding::{DECODE_INLINE, HELD_PER_PEER};
pub use dispatch::{dispatch, split_by_weight, UserClass};
pub use events::{WorkerEvent, WorkerEventKind};
pub use handle::{MasterError, MasterHandle, MasterSnapshot, SwarmRequest};
pub use history::HistorySample;
pub use registry::{NodeState, WorkerNode};
pub use runner::{Ended, Master, CPU_WARNING, REDISPATCH_COALESCE};
pub use shape::check_class_names;
pub use state::RunState;

pub use crate::stats::ExceptionRow;

use std::time::Duration;

/// The fastest spawn rate accepted (goose's own limit on its rates).
pub const MAX_SPAWN_RATE: f64 = 100_000.0;

/// The longest run time accepted: 30 days.
pub const MAX_RUN_TIME: Duration = Duration::from_secs(30 * 86_400);

/// How the master runs.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// Default target, when a swarm request names none.
    pub host: String,
    /// The load test's user classes, with their weights: those a run may
    /// choose from.
    pub classes: Vec<UserClass>,
    /// Run time for a run started without one (`-t` with the web UI).
    pub default_run_time: Option<Duration>,
    /// Heartbeat interval workers use; a worker silent for three is missing.
    pub heartbeat_interval: Duration,
    /// How long a stop or quit waits for workers to answer.
    pub stop_timeout: Duration,
    /// Goose's coordinated omission mitigation for the workers' users, sent
    /// with every spawn; `None`: each worker's own.
    pub co_mitigation: Option<crate::co_mitigation::CoMitigation>,
    /// How the workers' users trust HTTPS targets (`--ca-cert`,
    /// `--accept-invalid-certs`, the CA's certificates themselves), sent
    /// with every spawn; `None`: each worker's own.
    pub target_tls: Option<crate::protocol::SpawnTls>,
    /// `--test-plan`: every run started follows it (the form's users, rate
    /// and run time are then ignored, as Locust's `LoadTestShape` does).
    pub test_plan: Option<crate::test_plan::TestPlan>,
    /// The classes a run starts with (the names after `loadtest master`'s
    /// flags); empty: all of [`MasterConfig::classes`].
    pub chosen_classes: Vec<String>,
    /// `--class-picker`: a swarm request's `user_classes` choose the run's
    /// classes; without it they are ignored, as Locust does.
    pub class_picker: bool,
    /// The `--threshold` rules, judged on the merged stats; a failing one
    /// stops the run unless `abort` is off.
    pub thresholds: crate::thresholds::ThresholdConfig,
    /// The open model's rate for runs that ask none (`--arrival-rate`),
    /// iterations per second across the swarm; `None`: the closed model.
    pub arrival_rate: Option<f64>,
}

impl MasterConfig {
    /// A config for `host` and `classes` with the defaults: no run time, 1 s
    /// heartbeats, a 10 s stop timeout.
    pub fn new(host: &str, classes: Vec<UserClass>) -> Self {
        Self {
            host: host.to_string(),
            classes,
            default_run_time: None,
            heartbeat_interval: Duration::from_secs(1),
            stop_timeout: Duration::from_secs(10),
            co_mitigation: None,
            target_tls: None,
            test_plan: None,
            chosen_classes: Vec::new(),
            class_picker: false,
            thresholds: crate::thresholds::ThresholdConfig::default(),
            arrival_rate: None,
        }
    }
}
