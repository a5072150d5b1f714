//! What happened to the fleet during a run — workers joining, going
//! missing, coming back, quitting, being reclaimed — for the Workers tab,
//! the logs and the ramp report. Kept in a bounded list of bounded
//! entries, cleared with the stats.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::protocol::{capped, MAX_DETAIL, MAX_IDENTITY};

/// At most this many events are kept; the oldest go first. Each holds a
/// node id of at most [`MAX_IDENTITY`] bytes and a detail of at most
/// [`MAX_DETAIL`], so the log stays under 500 KiB whatever peers send.
const MAX_EVENTS: usize = 500;

/// What happened to a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerEventKind {
    /// Said `client_ready` (first time or after a reconnect).
    Joined,
    /// Silent for three heartbeats; its users went to the others.
    Missing,
    /// Heard from again after being missing; the users were spread anew.
    Back,
    /// Said `quit` for a reason other than a spot reclaim.
    Quit,
    /// Left on a spot interruption notice, after its final report.
    Reclaimed,
}

/// One event, as `GET /stats/requests` lists it under `worker_events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerEvent {
    /// Epoch seconds.
    pub time: f64,
    /// The worker's node id.
    pub worker: String,
    /// What happened.
    pub event: WorkerEventKind,
    /// Free text: the version it joined with, why it quit...; may be empty.
    pub detail: String,
}

/// The run's events, oldest first.
#[derive(Debug, Default)]
pub struct EventLog {
    events: VecDeque<WorkerEvent>,
}

impl EventLog {
    pub fn record(&mut self, time: f64, worker: &str, event: WorkerEventKind, detail: String) {
        if self.events.len() == MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(WorkerEvent {
            time,
            worker: capped(worker, MAX_IDENTITY).into_owned(),
            event,
            detail: capped(&detail, MAX_DETAIL).into_owned(),
        });
    }

    /// Forgets every event (with the stats they went with).
    pub fn clear(&mut self) {
        self.events.clear();
    }

    pub fn to_vec(&self) -> Vec<WorkerEvent> {
        self.events.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_is_bounded_and_keeps_the_newest() {
        let mut log = EventLog::default();
        for i in 0..(MAX_EVENTS + 10) {
            log.record(i as f64, "w", WorkerEventKind::Joined, String::new());
        }
        let events = log.to_vec();
        assert_eq!(events.len(), MAX_EVENTS);
        assert_eq!(events[0].time, 10.0);
        log.record(
            0.0,
            &"w".repeat(300),
            WorkerEventKind::Joined,
            "v".repeat(1 << 20),
        );
        let newest = log.to_vec().pop().expect("an event");
        assert!(newest.worker.len() <= MAX_IDENTITY && newest.detail.len() <= MAX_DETAIL);
        log.clear();
        assert!(log.to_vec().is_empty());
        assert_eq!(
            serde_json::to_value(WorkerEventKind::Reclaimed).ok(),
            Some(serde_json::json!("reclaimed"))
        );
    }
}
