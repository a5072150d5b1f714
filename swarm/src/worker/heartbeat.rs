//! The worker's heartbeat: a task of its own that tells the master every
//! interval what the worker is doing and what it costs, whatever the
//! worker's loop is busy with.
//!
//! A heartbeat goes only on a connection the worker has said
//! `client_ready` on ([`ReadyOn`]): the master takes nothing but a join
//! from a connection that has not joined, so a beat sent first — the
//! heartbeat's tick landing between a new connection and its
//! `client_ready` — would be refused, counted in `refused_frames`, warned
//! about, and answered with `reconnect`.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::{interval, MissedTickBehavior};

use crate::protocol::transport::DealerSender;
use crate::protocol::{Heartbeat, ToMaster, WorkerState};

/// The worker's state, shared with its heartbeat task.
#[derive(Debug, Default)]
pub(super) struct StateCell(AtomicU8);

impl StateCell {
    pub(super) fn set(&self, state: WorkerState) {
        self.0.store(state as u8, Ordering::Relaxed);
    }

    pub(super) fn get(&self) -> WorkerState {
        match self.0.load(Ordering::Relaxed) {
            x if x == WorkerState::Spawning as u8 => WorkerState::Spawning,
            x if x == WorkerState::Running as u8 => WorkerState::Running,
            x if x == WorkerState::Stopped as u8 => WorkerState::Stopped,
            _ => WorkerState::Ready,
        }
    }
}

/// The connection (its number in `WorkerLink::connected`) the worker last
/// said `client_ready` on; 0 before it ever did.
#[derive(Debug, Default, Clone)]
pub(super) struct ReadyOn(Arc<AtomicU64>);

impl ReadyOn {
    /// The worker queued `client_ready` on connection `connection`.
    pub(super) fn set(&self, connection: u64) {
        self.0.store(connection, Ordering::Relaxed);
    }

    pub(super) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Sends a heartbeat every interval, on a connection that has joined.
pub(super) struct HeartbeatTask {
    pub(super) outgoing: DealerSender,
    /// The connection that is up now (its number).
    pub(super) connected: watch::Receiver<u64>,
    pub(super) ready_on: ReadyOn,
    pub(super) node_id: String,
    pub(super) state: Arc<StateCell>,
    pub(super) interval: Duration,
}

impl HeartbeatTask {
    pub(super) async fn run(self) {
        let mut probe = ResourceProbe::new();
        let mut tick = interval(self.interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // Not joined on this connection yet: the worker's loop is
            // about to say `client_ready`; the next beat goes after it.
            if self.ready_on.get() != *self.connected.borrow() {
                continue;
            }
            let (cpu_usage, memory_usage) = probe.sample();
            let beat = ToMaster::Heartbeat(Heartbeat {
                state: self.state.get(),
                cpu_usage,
                memory_usage,
                // The cores this process may run on (its affinity, e.g. a
                // taskset), so the master can tell a saturated generator.
                cpu_cores: std::thread::available_parallelism()
                    .ok()
                    .and_then(|n| u32::try_from(n.get()).ok()),
            });
            // Not connected, or a newer connection came up since the check
            // above: the beat is skipped; the next one may go.
            let _ = self.outgoing.try_send_on(
                self.ready_on.get(),
                Bytes::from(beat.to_wire(&self.node_id)),
            );
        }
    }
}

/// This process's CPU (percent of one core) and resident memory.
struct ResourceProbe {
    system: sysinfo::System,
    pid: Option<sysinfo::Pid>,
}

impl ResourceProbe {
    fn new() -> Self {
        Self {
            system: sysinfo::System::new(),
            pid: sysinfo::get_current_pid().ok(),
        }
    }

    fn sample(&mut self) -> (f64, u64) {
        let Some(pid) = self.pid else { return (0.0, 0) };
        self.system
            .refresh_processes(sysinfo::ProcessesToUpdate::Some(&[pid]), true);
        self.system
            .process(pid)
            .map_or((0.0, 0), |p| (f64::from(p.cpu_usage()), p.memory()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::transport::{bind_master, connect_worker};
    use crate::protocol::LOCUST_COMPAT_VERSION;

    /// A connection's first frame is its `client_ready`, however many
    /// heartbeat ticks came before it.
    #[tokio::test]
    async fn heartbeats_wait_for_the_join_on_each_connection() {
        let mut master = bind_master("127.0.0.1", 0, None).await.expect("bind");
        let mut link = connect_worker("127.0.0.1", master.port, "w", None).expect("an identity");
        let up = *link.connected.wait_for(|n| *n > 0).await.expect("connects");
        let ready_on = ReadyOn::default();
        let task = HeartbeatTask {
            outgoing: link.outgoing.clone(),
            connected: link.connected.clone(),
            ready_on: ready_on.clone(),
            node_id: "w".into(),
            state: Arc::default(),
            interval: Duration::from_millis(20),
        };
        let beating = tokio::spawn(task.run());
        // Ten ticks go by before the worker joins.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let ready = ToMaster::ClientReady {
            version: LOCUST_COMPAT_VERSION.into(),
        };
        link.outgoing
            .try_send(Bytes::from(ready.to_wire("w")))
            .expect("connected");
        ready_on.set(up);
        let mut kinds = Vec::new();
        while kinds.len() < 3 {
            let frame = tokio::time::timeout(Duration::from_secs(5), master.incoming.recv())
                .await
                .expect("frames in time")
                .expect("the link runs");
            let (message, _) = ToMaster::from_wire(&frame.payload).expect("a message");
            kinds.push(message.kind());
        }
        beating.abort();
        assert_eq!(kinds, ["client_ready", "heartbeat", "heartbeat"]);
    }
}
