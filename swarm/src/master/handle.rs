//! The master's command interface and the snapshots it hands out.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::events::WorkerEvent;
use super::history::HistorySample;
use super::registry::WorkerNode;
use super::state::RunState;
use super::ExceptionRow;
use super::{MAX_RUN_TIME, MAX_SPAWN_RATE};
use crate::co_mitigation::CoMitigation;
use crate::protocol::MAX_USERS_PER_WORKER;
use crate::stats::RequestStats;
use crate::test_plan::{PlanState, TestPlan};
use crate::worker::arrival::{valid_arrival_rate, MAX_ARRIVAL_RATE};

/// Start or change a run, as `POST /swarm` asks.
#[derive(Debug, Clone)]
pub struct SwarmRequest {
    /// Users to run across all workers.
    pub user_count: u64,
    /// Users started (or stopped) per second, > 0.
    pub spawn_rate: f64,
    /// Target; `None` keeps the current one.
    pub host: Option<String>,
    /// Stop by itself after this long.
    pub run_time: Option<Duration>,
    /// Coordinated omission mitigation for this run's spawns; `None` keeps
    /// the master's.
    pub co_mitigation: Option<CoMitigation>,
    /// Locust's `user_classes`: the classes to run, with `--class-picker`
    /// (ignored without it, as Locust does); `None` or empty: see
    /// [`MasterConfig::class_picker`](super::MasterConfig::class_picker).
    pub user_classes: Option<Vec<String>>,
    /// Our extension: iterations started per second across the swarm (the
    /// open model), in `0..=`[`MAX_ARRIVAL_RATE`]; 0 runs the closed model.
    /// `None`: an edit keeps the run's, a new run takes the master's
    /// (`--arrival-rate`).
    pub arrival_rate: Option<f64>,
}

impl SwarmRequest {
    /// The checks of a request that starts the master's test plan: its
    /// users, rate and run time are the plan's, so only the plan's peak is
    /// checked against what `workers` can run.
    pub fn check_plan(&self, plan: &TestPlan, workers: usize) -> Result<(), MasterError> {
        let capacity = MAX_USERS_PER_WORKER.saturating_mul(workers as u64);
        let peak = plan.peak_users();
        if peak > capacity {
            return Err(MasterError::Invalid(format!(
                "The test plan {plan} peaks at {peak} users, more than {workers} worker(s) can run ({MAX_USERS_PER_WORKER} each, goose's limit): add workers"
            )));
        }
        Ok(())
    }

    /// Refuses values no run can have, naming the field: a spawn rate that
    /// is not a number in (0, [`MAX_SPAWN_RATE`]], an arrival rate beyond
    /// [`MAX_ARRIVAL_RATE`] (or negative, or no number), a run time beyond
    /// [`MAX_RUN_TIME`], more users than `workers` can run.
    pub fn check(&self, workers: usize) -> Result<(), MasterError> {
        let bad = |message: String| Err(MasterError::Invalid(message));
        if !(self.spawn_rate.is_finite() && self.spawn_rate > 0.0) {
            return bad(format!(
                "Invalid spawn_rate value: {} (must be a number above 0)",
                self.spawn_rate
            ));
        }
        if self.spawn_rate > MAX_SPAWN_RATE {
            return bad(format!(
                "Invalid spawn_rate value: {} (at most {MAX_SPAWN_RATE} users per second)",
                self.spawn_rate
            ));
        }
        if let Some(rate) = self.arrival_rate.filter(|r| !valid_arrival_rate(*r)) {
            return bad(format!(
                "Invalid arrival_rate value: {rate} (iterations per second, from 0 to {MAX_ARRIVAL_RATE}; 0 turns the open model off)"
            ));
        }
        if self.run_time.is_some_and(|t| t > MAX_RUN_TIME) {
            return bad(format!(
                "Invalid run_time: more than the longest run, {} days",
                MAX_RUN_TIME.as_secs() / 86_400
            ));
        }
        let capacity = MAX_USERS_PER_WORKER.saturating_mul(workers as u64);
        if workers > 0 && self.user_count > capacity {
            return bad(format!(
                "Invalid user_count value: {} is more than {workers} worker(s) can run ({MAX_USERS_PER_WORKER} each, goose's limit): add workers or ask for fewer users",
                self.user_count
            ));
        }
        Ok(())
    }
}

/// Why the master did not do what a handle asked.
#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    /// The master task has ended; no command reaches it any more.
    #[error("the master has stopped")]
    Gone,
    /// A swarm needs at least one connected worker.
    #[error("no workers are connected: start `loadtest worker --master-host <this host>` first")]
    NoWorkers,
    /// A swarm request with a value out of range; the message names it.
    #[error("{0}")]
    Invalid(String),
}

/// Everything a page, report or ramp reads about the master, at one instant.
#[derive(Debug, Clone)]
pub struct MasterSnapshot {
    /// Where the run is.
    pub state: RunState,
    /// The target host the users load.
    pub host: String,
    /// Users the workers last reported running, summed.
    pub user_count: u64,
    /// Users the last swarm request asked for.
    pub target_user_count: u64,
    /// The merged request stats since the run (or the last reset) began.
    pub stats: RequestStats,
    /// Every known worker, missing ones included.
    pub workers: Vec<WorkerNode>,
    /// Exceptions the workers reported, one row per (message, traceback).
    pub exceptions: Vec<ExceptionRow>,
    /// Current (recent window) p50 and p95, ms.
    pub current_percentiles: (u64, u64),
    /// When the current (or last) run started, epoch seconds; `None` before any.
    pub started_at: Option<f64>,
    /// When it stopped, epoch seconds; `None` while it runs.
    pub ended_at: Option<f64>,
    /// Workers joining, missing, back, quitting, reclaimed; oldest first.
    pub events: Vec<WorkerEvent>,
    /// Frames from peers the master dropped unread, by why.
    pub refused: super::Refusals,
    /// The test plan and where the run is in it; `None` without one.
    pub test_plan: Option<PlanState>,
    /// The classes the run spreads its users over.
    pub user_classes: Vec<String>,
    /// With `--class-picker`, the classes a run may choose from.
    pub class_picker: Option<Vec<super::UserClass>>,
    /// Every `--threshold` rule judged on `stats`: finally once the run
    /// stopped, live before.
    pub thresholds: Vec<crate::thresholds::Verdict>,
    /// The rule that stopped the run and what it observed, in words.
    pub threshold_abort: Option<String>,
    /// The run's arrival rate, iterations per second across the swarm;
    /// `None`: the closed model.
    pub arrival_rate: Option<f64>,
}

impl MasterSnapshot {
    /// Whether a `--threshold` rule failed (judged finally once stopped).
    pub fn thresholds_failed(&self) -> bool {
        self.thresholds.iter().any(|v| !v.passed)
    }

    /// Error text → occurrences, summed over request names.
    pub fn error_counts(&self) -> std::collections::BTreeMap<String, u64> {
        let mut counts = std::collections::BTreeMap::new();
        for error in self.stats.errors.values() {
            let n: &mut u64 = counts.entry(error.error.clone()).or_default();
            *n = n.saturating_add(error.occurrences);
        }
        counts
    }

    /// The busiest active worker's CPU, as a share of its cores.
    pub fn busiest_worker_cpu(&self) -> f64 {
        self.workers
            .iter()
            .filter(|w| w.state != super::NodeState::Missing)
            .map(|w| w.cpu_share)
            .fold(0.0, f64::max)
    }

    /// Workers not missing: those a swarm spreads users over.
    pub fn active_workers(&self) -> usize {
        self.workers
            .iter()
            .filter(|w| w.state != super::NodeState::Missing)
            .count()
    }
}

pub(crate) enum Command {
    Swarm(SwarmRequest, oneshot::Sender<Result<String, MasterError>>),
    Stop(oneshot::Sender<()>),
    Reset(oneshot::Sender<()>),
    Snapshot(oneshot::Sender<Box<MasterSnapshot>>),
    History(oneshot::Sender<Vec<HistorySample>>),
    /// Stop everything, tell workers to quit, wait for their last stats.
    Quit(oneshot::Sender<()>),
}

/// A cheap, clonable way to drive a running master.
#[derive(Clone)]
pub struct MasterHandle {
    pub(crate) commands: mpsc::Sender<Command>,
    /// Run state and active worker count, updated as they change.
    pub(crate) status: watch::Receiver<(RunState, usize)>,
}

impl MasterHandle {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, MasterError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| MasterError::Gone)?;
        rx.await.map_err(|_| MasterError::Gone)
    }

    /// Starts a run, or changes the running one's users, rate, host or run
    /// time; answers Locust's success message. A new run resets the stats.
    pub async fn swarm(&self, request: SwarmRequest) -> Result<String, MasterError> {
        self.ask(|tx| Command::Swarm(request, tx)).await?
    }

    /// Stops all users, keeping workers connected; returns once they answered
    /// or the stop timeout passed.
    pub async fn stop(&self) -> Result<(), MasterError> {
        self.ask(Command::Stop).await
    }

    /// Clears the stats, exceptions and history, as Locust's "Reset stats".
    pub async fn reset_stats(&self) -> Result<(), MasterError> {
        self.ask(Command::Reset).await
    }

    /// Everything the master knows now.
    pub async fn snapshot(&self) -> Result<MasterSnapshot, MasterError> {
        self.ask(Command::Snapshot).await.map(|b| *b)
    }

    /// The run's chart samples, oldest first.
    pub async fn history(&self) -> Result<Vec<HistorySample>, MasterError> {
        self.ask(Command::History).await
    }

    /// Stops the run and tells every worker to quit, waiting for their final stats.
    pub async fn quit(&self) -> Result<(), MasterError> {
        self.ask(Command::Quit).await
    }

    /// The run state now, without asking the master task.
    pub fn state(&self) -> RunState {
        self.status.borrow().0
    }

    /// Waits until at least `n` workers are connected, or `limit` passes.
    pub async fn wait_for_workers(&self, n: usize, limit: Duration) -> Result<(), usize> {
        let mut status = self.status.clone();
        let reached = tokio::time::timeout(limit, async {
            status.wait_for(|(_, count)| *count >= n).await.is_ok()
        })
        .await
        .unwrap_or(false);
        if reached {
            Ok(())
        } else {
            Err(self.status.borrow().1)
        }
    }

    /// Waits until the run state satisfies `done`, or `limit` passes.
    pub async fn wait_for_state(&self, done: impl Fn(RunState) -> bool, limit: Duration) -> bool {
        let mut status = self.status.clone();
        tokio::time::timeout(limit, async {
            status.wait_for(|(state, _)| done(*state)).await.is_ok()
        })
        .await
        .unwrap_or(false)
    }
}
