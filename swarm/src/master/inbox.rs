//! What the master does with each worker frame.
//!
//! Only the swarm speaks for the swarm: a frame is taken only when its
//! `node_id` is its sender's socket identity, and any message but
//! `client_ready` only from the connection that identity joined on. Joins
//! are rate-limited per source address ([`Joins`](super::admission::Joins)).
//! Everything else is dropped unread, counted in
//! [`Refusals`](super::admission::Refusals), and logged a few times per
//! peer and kind; a peer the master does not know that sends heartbeats or
//! stats is told to `reconnect` (rate-limited), and a worker of ours then
//! joins again before it delivers the stats it holds.

use std::time::Instant;

use super::registry::NodeState;
use super::runner::{Master, CPU_WARNING};
use super::WorkerEventKind;
use crate::logs::{shown, shown_bytes};
use crate::protocol::transport::Inbound;
use crate::protocol::{ProtocolError, QuitReason, ToMaster, ToWorker};
use crate::stats::{now_epoch, ExceptionRow};

/// Exception rows keep at most this many node ids each.
const EXCEPTION_NODES: usize = 100;

/// A frame and what it decoded to: decoding is the one step of a frame
/// that can take long (a million msgpack values), so it may run off the
/// master's task (see `decoding.rs`).
pub(super) struct Decoded {
    frame: Inbound,
    message: Result<(ToMaster, String), ProtocolError>,
}

impl Decoded {
    /// Decodes `frame`'s payload; the frame keeps its bytes and its byte
    /// budget until the master has dealt with what it said.
    pub(super) fn from(frame: Inbound) -> Decoded {
        let message = ToMaster::from_wire(&frame.payload);
        Decoded { frame, message }
    }
}

impl Master {
    pub(super) fn on_frame(&mut self, decoded: Decoded) {
        let Decoded { frame, message } = decoded;
        let (message, node_id) = match message {
            Ok(decoded) => decoded,
            Err(err) => {
                self.refused.malformed += 1;
                let peer = shown_bytes(&frame.peer);
                self.warn(err.kind(), &peer, || {
                    format!("ignored a frame from {peer} at {}: {err}", frame.source)
                });
                return;
            }
        };
        // Replies go to the socket identity, which Locust sets to the node
        // id; a frame claiming another node is someone speaking for it.
        if frame.peer != node_id.as_bytes() {
            self.refused.wrong_node_id += 1;
            let peer = shown_bytes(&frame.peer);
            self.warn("wrong node id", &peer, || {
                format!(
                    "ignored a {} from {peer} at {}: it claims to come from node {}",
                    message.kind(),
                    frame.source,
                    shown(&node_id)
                )
            });
            return;
        }
        self.on_message(&frame, &node_id, message);
        self.publish();
    }

    fn on_message(&mut self, frame: &Inbound, id: &str, message: ToMaster) {
        let now = Instant::now();
        if let ToMaster::ClientReady { version } = message {
            self.on_join(frame, id, &version, now);
            return;
        }
        if self.registry.joined(id, frame.conn).is_none() {
            self.refuse_stranger(frame, id, &message, now);
            return;
        }
        match message {
            ToMaster::ClientReady { .. } => {}
            ToMaster::Heartbeat(beat) => {
                let Some(was) = self.registry.set_state(id, beat.state.into()) else {
                    return;
                };
                if let Some(node) = self.registry.get_mut(id) {
                    node.cpu_usage = beat.cpu_usage;
                    node.cpu_share = beat.cpu_share();
                    node.memory_usage = beat.memory_usage;
                    node.last_heartbeat = now;
                    if node.cpu_share >= CPU_WARNING && !node.cpu_warned {
                        // As Locust does, once per worker: its numbers may
                        // measure the generator rather than the target.
                        node.cpu_warned = true;
                        tracing::warn!(
                            "worker {} is using {:.0}% of its CPU: it may be too busy to measure the target; add workers",
                            shown(id),
                            node.cpu_share * 100.0
                        );
                    }
                    // Our workers say how many cores they have; Locust's
                    // never do, and never read the arrival rate either.
                    if beat.cpu_cores.is_none()
                        && self.arrival_rate.is_some()
                        && !node.closed_model_warned
                    {
                        node.closed_model_warned = true;
                        tracing::warn!(
                            "worker {} is a Locust worker: it ignores the arrival rate and runs the closed model (its users loop as fast as the target answers); its share of the rate is not run",
                            shown(id)
                        );
                    }
                }
                let stats_seq = self.registry.get_mut(id).map(|node| node.stats_seq);
                self.send(id, ToWorker::Heartbeat { stats_seq });
                if was == NodeState::Missing {
                    // As Locust does: a fresh dispatch, so the users it
                    // still runs and those the others took over never
                    // add up to more than the target.
                    tracing::info!("worker {} is back; spreading the users anew", shown(id));
                    self.event(id, WorkerEventKind::Back, String::new());
                    if self.state.is_active() {
                        self.redispatch_soon();
                    }
                }
            }
            ToMaster::Spawning => {
                self.registry.set_state(id, NodeState::Spawning);
            }
            ToMaster::SpawningComplete {
                user_count,
                user_classes_count,
            } => {
                self.registry.set_state(id, NodeState::Running);
                if let Some(node) = self.registry.get_mut(id) {
                    node.user_count = user_count;
                    node.user_classes_count = user_classes_count;
                }
            }
            ToMaster::Stats(report) => {
                let Some(node) = self.registry.get_mut(id) else {
                    return;
                };
                // Sent again after a reconnect, and merged the first time.
                if report.seq.is_some_and(|seq| seq <= node.stats_seq) {
                    self.refused.duplicate_stats += 1;
                    return;
                }
                node.stats_seq = report.seq.unwrap_or(node.stats_seq);
                self.stats.merge_report(&report, now_epoch());
                node.user_count = report.user_count;
                node.user_classes_count = report.user_classes_count;
            }
            ToMaster::Exception {
                msg,
                traceback,
                count,
            } => self.on_exception(id, msg, traceback, count),
            ToMaster::ClientStopped => {
                self.registry.set_state(id, NodeState::Stopped);
                if let Some(node) = self.registry.get_mut(id) {
                    node.user_count = 0;
                    node.stopped_ack = true;
                }
                self.answered(id, false);
            }
            ToMaster::Quit { reason } => self.on_quit(id, reason),
            ToMaster::Logs => {}
            ToMaster::Unknown(kind) => {
                self.warn("unknown type", id, || {
                    format!(
                        "ignored unknown message type {:?} from {}",
                        shown(&kind).to_string(),
                        shown(id)
                    )
                });
            }
        }
    }

    /// `client_ready`: the worker joins on this connection (the transport
    /// already refused a second connection for a live identity).
    fn on_join(&mut self, frame: &Inbound, id: &str, version: &str, now: Instant) {
        if !self.joins.admit(frame.source, now) {
            self.refused.join_rate += 1;
            let source = frame.source.to_string();
            self.warn("join rate", &source, || {
                format!(
                    "ignored a join from {} at {source}: more than {} joins a second from that address",
                    shown(id),
                    super::admission::JOIN_RATE
                )
            });
            return;
        }
        let index = self.registry.join(id, frame.conn, frame.source, now);
        self.link.outgoing.mark_joined(&frame.peer, frame.conn);
        tracing::info!(
            "worker {} joined from {} (index {index}, version {})",
            shown(id),
            frame.source,
            shown(version)
        );
        self.event(id, WorkerEventKind::Joined, format!("version {version}"));
        self.send(id, ToWorker::Ack { index });
        if self.state.is_active() {
            self.redispatch_soon();
        }
        self.publish();
    }

    /// A message from a connection that has not joined: dropped. A
    /// heartbeat or stats report is answered with `reconnect` (at a
    /// bounded rate), so a worker the master forgot joins again.
    fn refuse_stranger(&mut self, frame: &Inbound, id: &str, message: &ToMaster, now: Instant) {
        self.refused.not_joined += 1;
        let is_stats = matches!(message, ToMaster::Stats(_));
        if is_stats {
            self.refused.stats_not_joined += 1;
        }
        let kind = message.kind();
        self.warn("not joined", id, || {
            format!(
                "ignored a {kind} from {} at {}: that connection has not joined (client_ready){}",
                shown(id),
                frame.source,
                if is_stats {
                    "; its numbers were not counted"
                } else {
                    ""
                }
            )
        });
        let asks_back = is_stats || matches!(message, ToMaster::Heartbeat(_));
        if asks_back && self.reconnects.take(now) {
            self.send(id, ToWorker::Reconnect);
        }
    }

    /// A frame its peer sent while too many of its frames waited behind
    /// its own slow one: dropped, counted.
    pub(super) fn refuse_behind_slow_frame(&mut self, frame: &Inbound) {
        self.refused.behind_slow_frame += 1;
        let peer = shown_bytes(&frame.peer);
        self.warn("behind slow frame", &peer, || {
            format!(
                "ignored a frame from {peer} at {}: more than {} of its frames wait behind one still decoding",
                frame.source,
                super::decoding::HELD_PER_PEER
            )
        });
    }

    fn on_exception(&mut self, id: &str, msg: String, traceback: String, count: u64) {
        let key = (msg, traceback);
        if !self.exceptions.contains_key(&key) && self.exceptions.len() >= crate::stats::MAX_ROWS {
            return;
        }
        let row = self
            .exceptions
            .entry(key)
            .or_insert_with_key(|(msg, traceback)| ExceptionRow {
                count: 0,
                msg: msg.clone(),
                traceback: traceback.clone(),
                nodes: Default::default(),
            });
        row.count = row.count.saturating_add(count);
        if row.nodes.len() < EXCEPTION_NODES {
            row.nodes.insert(id.to_string());
        }
    }

    fn on_quit(&mut self, id: &str, reason: Option<QuitReason>) {
        let Some(node) = self.registry.remove(id) else {
            return;
        };
        let was_active = node.state != NodeState::Missing;
        match reason {
            Some(QuitReason::SpotInterruption { notice }) => {
                tracing::warn!(
                    "worker {} was reclaimed (spot interruption notice: {}); its users move to the others",
                    shown(id),
                    shown(&notice)
                );
                self.event(id, WorkerEventKind::Reclaimed, notice);
            }
            Some(QuitReason::Shutdown { detail }) => {
                tracing::info!("worker {} quit ({})", shown(id), shown(&detail));
                self.event(id, WorkerEventKind::Quit, detail);
            }
            None => {
                tracing::info!("worker {} quit", shown(id));
                self.event(id, WorkerEventKind::Quit, String::new());
            }
        }
        if was_active && self.state.is_active() {
            self.redispatch_soon();
        }
        self.answered(id, true);
    }
}
