//! A run's two ends with its workers: how many it waits for before the
//! first user starts ([`Expect`]), and how it lets them go when the process
//! is going away ([`end_run`]). Shared by the web UI run, the fixed headless
//! run and the ramp, so none of them reaches into another's file for it.

use std::time::Duration;

use crate::master::MasterHandle;
use crate::shutdown::{Reason, Shutdown};

/// The workers a run waits for before it starts.
#[derive(Debug, Clone)]
pub struct Expect {
    /// Workers to wait for (`--expect-workers`).
    pub workers: usize,
    /// How long to wait for them (`--expect-workers-max-wait`; 0 there means
    /// in effect forever).
    pub limit: Duration,
    /// What to do when they do not come, e.g. which command starts them.
    pub hint: String,
}

impl Expect {
    /// Workers to wait for: at least one, since a run without any measures
    /// nothing.
    pub fn wanted(&self) -> usize {
        self.workers.max(1)
    }

    /// What to say when only `seen` of them joined within the limit.
    pub fn shortfall(&self, seen: usize) -> String {
        format!(
            "only {seen} of {} workers connected within {}s: {}",
            self.wanted(),
            self.limit.as_secs(),
            self.hint
        )
    }
}

/// Ends the run for a process that is going away: Ctrl-C quits the workers
/// (as Locust's master does); SIGTERM — a restart, a redeploy — only stops
/// them, so they wait for the master to come back and rejoin it. Either way
/// the workers' final stats are in before this returns.
pub(super) async fn end_run(handle: &MasterHandle, shutdown: &Shutdown) {
    let result = match shutdown.reason() {
        Some(Reason::Interrupt) | None => {
            tracing::info!("stopping the workers and telling them to quit");
            handle.quit().await
        }
        Some(reason) => {
            tracing::info!(
                "{}: stopping the workers; they rejoin when a master is back",
                reason.describe()
            );
            handle.stop().await
        }
    };
    if let Err(err) = result {
        tracing::warn!("could not stop the workers: {err}");
    }
}
