//! Stopping: the gate halts the users' requests at once and drains those
//! in flight, then goose's own stop ends the users (their on-stop
//! transactions run) and goose goes idle; a shutdown ends goose for good.

use std::time::Duration;

use super::controller::ControllerError;
use super::{DriverError, GooseDriver};
use crate::stats::StatsReport;

/// How long a halt waits for the requests in flight to finish.
const DRAIN_LIMIT: Duration = Duration::from_millis(300);

/// How long a stop waits for goose to end its users: a user notices the
/// stop within half a second (goose wakes a waiting user that often), then
/// runs its on-stop transactions. Within a master's default 10 s patience
/// for the stop's answer.
const USERS_END_LIMIT: Duration = Duration::from_secs(5);

impl GooseDriver {
    /// Stops the users' requests at once (goose's own stop follows in
    /// [`stop`](Self::stop)) and waits, bounded, for those in flight to
    /// finish; then every request made is in goose's metrics.
    pub async fn halt(&self) {
        if !self.gate.close_and_drain(DRAIN_LIMIT).await {
            tracing::warn!(
                "{} requests were still running {DRAIN_LIMIT:?} after the users were halted",
                self.gate.in_flight()
            );
        }
    }

    /// Stops every user, and waits (bounded) until goose has ended them,
    /// their on-stop transactions run; goose goes idle. Returns the last
    /// requests made, the on-stop ones included.
    pub async fn stop(&mut self) -> Result<StatsReport, DriverError> {
        // No schedule past a stop: its starts would all be dropped.
        self.set_arrival_rate(None);
        if self.goose_users == 0 {
            return Ok(self.last_report());
        }
        self.halt().await;
        // No transaction makes a request any more; goose's own stop ends
        // the users, each after its on-stop transactions (a log-out), as
        // Locust's users do when stopped. Their requests belong here.
        match self.controller.command("stop").await {
            Ok(_) => {}
            // Goose ended the run by itself.
            Err(ControllerError::Refused { reply, .. }) => {
                tracing::warn!("goose had already stopped: {reply}");
            }
            Err(err) => return Err(err.into()),
        }
        if !self.gate.wait_users_ended(USERS_END_LIMIT).await {
            tracing::warn!(
                "{} users had not ended {USERS_END_LIMIT:?} after the stop (an on_stop transaction still running?): what they send comes in a later report",
                self.gate.users_alive()
            );
        }
        let last = self.last_report();
        self.users = 0;
        self.goose_users = 0;
        Ok(last)
    }

    /// Everything counted until the users stopped: their requests, and the
    /// starts they dropped.
    fn last_report(&self) -> StatsReport {
        let mut last = self.tap.take(true);
        last.dropped_iterations = self.gate.take_dropped();
        last
    }

    /// Stops goose for good.
    pub async fn shutdown(mut self) {
        let _ = self.controller.command("shutdown").await;
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.attack).await;
    }
}
