//! The workers a master knows: their state, load and last heartbeat, and
//! the connection each joined on (only that connection speaks for it).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::logs::shown;
use crate::protocol::transport::ConnId;
use crate::protocol::{WorkerState, HEARTBEAT_LIVENESS};

/// How long a missing worker is remembered before it is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(60);

/// A worker's state as the master shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Connected, running no users.
    Ready,
    /// Moving towards the users it was asked for.
    Spawning,
    /// At the users it was asked for.
    Running,
    /// Locust also says `stopping` and `cleanup`.
    #[serde(alias = "stopping", alias = "cleanup")]
    Stopped,
    /// Silent for three heartbeats; its users were given to the others.
    Missing,
}

impl From<WorkerState> for NodeState {
    fn from(state: WorkerState) -> Self {
        match state {
            WorkerState::Ready => Self::Ready,
            WorkerState::Spawning => Self::Spawning,
            WorkerState::Running => Self::Running,
            WorkerState::Stopped => Self::Stopped,
        }
    }
}

/// One worker as the master sees it.
#[derive(Debug, Clone)]
pub struct WorkerNode {
    /// The worker's node id, its ZeroMQ identity.
    pub id: String,
    /// The connection it joined on: only frames from it count.
    pub conn: ConnId,
    /// The address it joined from.
    pub source: IpAddr,
    /// Order of joining, as sent in `ack`.
    pub index: u64,
    /// What the worker is doing, from its last heartbeat (or missing).
    pub state: NodeState,
    /// Users the worker last reported running.
    pub user_count: u64,
    /// Users per class the worker last reported running (its
    /// `spawning_complete`, then each `stats`).
    pub user_classes_count: BTreeMap<String, u64>,
    /// Users the master last asked of it.
    pub assigned: u64,
    /// The worker process's CPU from its last heartbeat, percent of one core.
    pub cpu_usage: f64,
    /// The same as a share of the cores the worker may use (1.0: all busy).
    pub cpu_share: f64,
    /// Whether the master already warned that this worker passed 90%.
    pub cpu_warned: bool,
    /// Whether the master already warned that this worker (a Locust one)
    /// runs the closed model whatever the arrival rate.
    pub closed_model_warned: bool,
    /// The worker process's resident memory from its last heartbeat, bytes.
    pub memory_usage: u64,
    /// When the master last heard a heartbeat; drives `Missing`.
    pub last_heartbeat: Instant,
    /// Whether it answered the last `stop` (`client_stopped`).
    pub stopped_ack: bool,
    /// The newest `stats` report (by its `seq`) merged from it; kept when
    /// it joins again, so a report it sends twice counts once.
    pub stats_seq: u64,
}

/// All known workers, by node id. State changes go through its methods,
/// which keep the count of active (not missing) workers, so reading it is
/// free however big the fleet.
#[derive(Debug, Default)]
pub struct Registry {
    nodes: BTreeMap<String, WorkerNode>,
    next_index: u64,
    missing: usize,
}

impl Registry {
    /// Adds a worker that joined on `conn` from `source`, or marks a known
    /// one ready again (on whatever connection it joined now). Returns its
    /// index.
    pub fn join(&mut self, id: &str, conn: ConnId, source: IpAddr, now: Instant) -> u64 {
        if let Some(node) = self.nodes.get_mut(id) {
            if node.state == NodeState::Missing {
                self.missing -= 1;
            }
            node.state = NodeState::Ready;
            node.conn = conn;
            node.source = source;
            node.user_count = 0;
            node.assigned = 0;
            node.last_heartbeat = now;
            return node.index;
        }
        let index = self.next_index;
        self.next_index += 1;
        self.nodes.insert(
            id.to_string(),
            WorkerNode {
                id: id.to_string(),
                conn,
                source,
                index,
                state: NodeState::Ready,
                user_count: 0,
                user_classes_count: BTreeMap::new(),
                assigned: 0,
                cpu_usage: 0.0,
                closed_model_warned: false,
                cpu_share: 0.0,
                cpu_warned: false,
                memory_usage: 0,
                last_heartbeat: now,
                stopped_ack: false,
                stats_seq: 0,
            },
        );
        index
    }

    /// The worker `id` if it joined on connection `conn`: what speaks for
    /// it. Its state changes through [`Registry::set_state`].
    pub fn joined(&mut self, id: &str, conn: ConnId) -> Option<&mut WorkerNode> {
        self.nodes.get_mut(id).filter(|node| node.conn == conn)
    }

    /// The worker `id`, whatever its connection.
    pub fn get_mut(&mut self, id: &str) -> Option<&mut WorkerNode> {
        self.nodes.get_mut(id)
    }

    /// Sets a worker's state; returns the state it had.
    pub fn set_state(&mut self, id: &str, state: NodeState) -> Option<NodeState> {
        let node = self.nodes.get_mut(id)?;
        let was = node.state;
        match (was == NodeState::Missing, state == NodeState::Missing) {
            (true, false) => self.missing -= 1,
            (false, true) => self.missing += 1,
            _ => {}
        }
        node.state = state;
        Some(was)
    }

    pub fn remove(&mut self, id: &str) -> Option<WorkerNode> {
        let node = self.nodes.remove(id)?;
        if node.state == NodeState::Missing {
            self.missing -= 1;
        }
        Some(node)
    }

    pub fn nodes(&self) -> impl Iterator<Item = &WorkerNode> {
        self.nodes.values()
    }

    /// Workers that can take users, in joining order.
    pub fn active_ids(&self) -> Vec<String> {
        let mut active: Vec<&WorkerNode> = self
            .nodes
            .values()
            .filter(|n| n.state != NodeState::Missing)
            .collect();
        active.sort_by_key(|n| n.index);
        active.into_iter().map(|n| n.id.clone()).collect()
    }

    pub fn active_count(&self) -> usize {
        self.nodes.len() - self.missing
    }

    /// Users running as far as the master can tell: what each active worker
    /// reported, but never more than it was last asked for (a decrease takes
    /// effect when it is sent; an increase when the worker reports it).
    pub fn running_users(&self) -> u64 {
        self.nodes
            .values()
            .filter(|n| n.state != NodeState::Missing)
            .map(|n| n.user_count.min(n.assigned))
            .fold(0u64, u64::saturating_add)
    }

    /// Marks workers silent for too long as missing and forgets the long
    /// gone. Returns the workers newly marked missing.
    pub fn check_heartbeats(&mut self, now: Instant, interval: Duration) -> Vec<String> {
        let mut missing = Vec::new();
        let mut forgotten = 0;
        let limit = interval * HEARTBEAT_LIVENESS;
        self.nodes.retain(|id, node| {
            let silent = now.saturating_duration_since(node.last_heartbeat);
            if node.state != NodeState::Missing && silent > limit {
                tracing::warn!(
                    "worker {} missed {HEARTBEAT_LIVENESS} heartbeats; marked missing",
                    shown(id)
                );
                node.state = NodeState::Missing;
                node.user_count = 0;
                node.assigned = 0;
                missing.push(id.clone());
            }
            if node.state == NodeState::Missing && silent > FORGET_AFTER {
                tracing::warn!("forgot worker {}, missing for {FORGET_AFTER:?}", shown(id));
                forgotten += 1;
                return false;
            }
            true
        });
        self.missing = self.missing + missing.len() - forgotten;
        missing
    }
}
