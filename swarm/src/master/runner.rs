//! The master's task: one loop over worker frames, commands and timers.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use super::dispatch::dispatch;
use super::events::{EventLog, WorkerEventKind};
use super::handle::{Command, MasterError, MasterHandle, MasterSnapshot, SwarmRequest};
use super::history::History;
use super::registry::{NodeState, Registry};
use super::state::RunState;
use super::{ExceptionRow, MasterConfig};
use crate::protocol::transport::{Frame, MasterLink};
use crate::protocol::{QuitReason, SpawnOrder, ToMaster, ToWorker};
use crate::stats::{now_epoch, RequestStats};

/// A ramp toward a user count, a step each second.
#[derive(Debug)]
struct Ramp {
    target: u64,
    rate: f64,
    /// Fractional users owed by rates below one per second.
    credit: f64,
}

/// The share of its cores above which a worker is reported as busy, as
/// Locust warns at 90% of one core.
pub const CPU_WARNING: f64 = 0.9;

/// What the master is waiting for after a stop or quit.
struct Pending {
    reply: oneshot::Sender<()>,
    deadline: Instant,
    quit: bool,
}

/// Why [`Master::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Every [`MasterHandle`] was dropped: the process is done with it.
    Released,
    /// The workers' socket ended under it: the master can no longer work.
    LinkLost,
}

/// The master's state, owned by its task.
pub struct Master {
    config: MasterConfig,
    node_id: String,
    link: MasterLink,
    commands: mpsc::Receiver<Command>,
    status: watch::Sender<(RunState, usize)>,
    registry: Registry,
    stats: RequestStats,
    history: History,
    exceptions: BTreeMap<(String, String), ExceptionRow>,
    events: EventLog,
    /// Caps the warnings a flood of bad frames can print.
    noise: WarnBudget,
    state: RunState,
    host: String,
    /// Users currently asked of the workers, all classes together.
    dispatched: u64,
    ramp: Option<Ramp>,
    run_deadline: Option<Instant>,
    spawn_timestamp: f64,
    started_at: Option<f64>,
    ended_at: Option<f64>,
    pending: Option<Pending>,
}

impl Master {
    /// Builds the master over a bound link and returns it with its handle.
    pub fn new(config: MasterConfig, link: MasterLink) -> (Master, MasterHandle) {
        let (commands_tx, commands) = mpsc::channel(64);
        let (status, status_rx) = watch::channel((RunState::Ready, 0));
        let host = config.host.clone();
        let master = Master {
            config,
            node_id: crate::protocol::new_node_id(),
            link,
            commands,
            status,
            registry: Registry::default(),
            stats: RequestStats::default(),
            history: History::default(),
            exceptions: BTreeMap::new(),
            events: EventLog::default(),
            noise: WarnBudget::default(),
            state: RunState::Ready,
            host,
            dispatched: 0,
            ramp: None,
            run_deadline: None,
            spawn_timestamp: 0.0,
            started_at: None,
            ended_at: None,
            pending: None,
        };
        (
            master,
            MasterHandle {
                commands: commands_tx,
                status: status_rx,
            },
        )
    }

    /// Serves until every handle is dropped ([`Ended::Released`]), or until
    /// the workers' socket ends under it ([`Ended::LinkLost`]).
    pub async fn run(mut self) -> Ended {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut sample = tokio::time::interval(Duration::from_secs(2));
        let mut ramp_tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                frame = self.link.incoming.recv() => match frame {
                    Some(frame) => self.on_frame(frame),
                    None => return Ended::LinkLost,
                },
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => return Ended::Released,
                },
                _ = tick.tick() => self.on_tick(),
                _ = ramp_tick.tick() => self.ramp_step(),
                _ = sample.tick() => {
                    let now = now_epoch();
                    self.stats.trim(now);
                    self.history.sample(&self.stats.total, self.dispatched, now);
                }
            }
        }
    }

    fn publish(&self) {
        let _ = self.status.send((self.state, self.registry.active_count()));
    }

    /// Queues a message for one worker; never waits (a worker that does not
    /// read loses messages, not the master's time).
    fn send(&self, worker: &str, message: ToWorker) {
        let frame = Frame {
            peer: Bytes::from(worker.as_bytes().to_vec()),
            payload: Bytes::from(message.to_wire(&self.node_id)),
        };
        self.link.outgoing.send(frame);
    }

    fn broadcast(&self, message: ToWorker) {
        for id in self.registry.active_ids() {
            self.send(&id, message.clone());
        }
    }

    fn on_frame(&mut self, frame: Frame) {
        let (message, node_id) = match ToMaster::from_wire(&frame.payload) {
            Ok(decoded) => decoded,
            Err(err) => {
                if self.noise.allow() {
                    tracing::warn!(
                        "ignored a frame from {}: {err}",
                        String::from_utf8_lossy(&frame.peer)
                    );
                }
                return;
            }
        };
        // Replies go to the socket identity, which Locust sets to the node id.
        let peer = String::from_utf8_lossy(&frame.peer).into_owned();
        if peer != node_id {
            tracing::debug!("frame from {peer} claims node id {node_id}");
        }
        self.on_message(&peer, message);
        self.publish();
    }

    fn event(&mut self, worker: &str, event: WorkerEventKind, detail: String) {
        self.events.record(now_epoch(), worker, event, detail);
    }

    fn on_message(&mut self, id: &str, message: ToMaster) {
        let now = Instant::now();
        match message {
            ToMaster::ClientReady { version } => {
                let index = self.registry.ready(id, now);
                tracing::info!("worker {id} joined (index {index}, version {version})");
                self.event(id, WorkerEventKind::Joined, format!("version {version}"));
                self.send(id, ToWorker::Ack { index });
                if self.state.is_active() {
                    self.redispatch();
                }
            }
            ToMaster::Heartbeat(beat) => match self.registry.get_mut(id) {
                Some(node) => {
                    let was_missing = node.state == NodeState::Missing;
                    node.state = beat.state.into();
                    node.cpu_usage = beat.cpu_usage;
                    node.cpu_share = beat.cpu_share();
                    if node.cpu_share >= CPU_WARNING && !node.cpu_warned {
                        // As Locust does, once per worker: its numbers may
                        // measure the generator rather than the target.
                        node.cpu_warned = true;
                        tracing::warn!(
                            "worker {id} is using {:.0}% of its CPU: it may be too busy to measure the target; add workers",
                            node.cpu_share * 100.0
                        );
                    }
                    node.memory_usage = beat.memory_usage;
                    node.last_heartbeat = now;
                    self.send(id, ToWorker::Heartbeat);
                    if was_missing {
                        // As Locust does: a fresh dispatch, so the users it
                        // still runs and those the others took over never
                        // add up to more than the target.
                        tracing::info!("worker {id} is back; spreading the users anew");
                        self.event(id, WorkerEventKind::Back, String::new());
                        if self.state.is_active() {
                            self.redispatch();
                        }
                    }
                }
                // A worker of an earlier master (this one restarted): ask it
                // to join again.
                None => self.send(id, ToWorker::Reconnect),
            },
            ToMaster::Spawning => {
                if let Some(node) = self.registry.get_mut(id) {
                    node.state = NodeState::Spawning;
                }
            }
            ToMaster::SpawningComplete {
                user_count,
                user_classes_count,
            } => {
                if let Some(node) = self.registry.get_mut(id) {
                    node.state = NodeState::Running;
                    node.user_count = user_count;
                    node.user_classes_count = user_classes_count;
                }
            }
            ToMaster::Stats(report) => {
                // Counted even from unknown or departing workers: what was
                // measured is never dropped.
                self.stats.merge_report(&report);
                if let Some(node) = self.registry.get_mut(id) {
                    node.user_count = report.user_count;
                    node.user_classes_count
                        .clone_from(&report.user_classes_count);
                }
            }
            ToMaster::Exception {
                msg,
                traceback,
                count,
            } => {
                if !self
                    .exceptions
                    .contains_key(&(msg.clone(), traceback.clone()))
                    && self.exceptions.len() >= crate::stats::MAX_ROWS
                {
                    return;
                }
                let row = self
                    .exceptions
                    .entry((msg.clone(), traceback.clone()))
                    .or_insert_with(|| ExceptionRow {
                        count: 0,
                        msg,
                        traceback,
                        nodes: Default::default(),
                    });
                row.count = row.count.saturating_add(count);
                if row.nodes.len() < 100 {
                    row.nodes.insert(id.to_string());
                }
            }
            ToMaster::ClientStopped => {
                if let Some(node) = self.registry.get_mut(id) {
                    node.state = NodeState::Stopped;
                    node.user_count = 0;
                    node.stopped_ack = true;
                }
                self.settle_pending();
            }
            ToMaster::Quit { reason } => self.on_quit(id, reason),
            ToMaster::Logs => {}
            ToMaster::Unknown(kind) => {
                if self.noise.allow() {
                    tracing::warn!("ignored unknown message type {kind:?} from {id}");
                }
            }
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
                    "worker {id} was reclaimed (spot interruption notice: {notice}); its users move to the others"
                );
                self.event(id, WorkerEventKind::Reclaimed, notice);
            }
            Some(QuitReason::Shutdown { detail }) => {
                tracing::info!("worker {id} quit ({detail})");
                self.event(id, WorkerEventKind::Quit, detail);
            }
            None => {
                tracing::info!("worker {id} quit");
                self.event(id, WorkerEventKind::Quit, String::new());
            }
        }
        if was_active && self.state.is_active() {
            self.redispatch();
        }
        self.settle_pending();
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Swarm(request, reply) => {
                let result = self.start_swarm(request);
                let _ = reply.send(result);
            }
            Command::Stop(reply) => self.stop(reply, false),
            Command::Quit(reply) => self.stop(reply, true),
            Command::Reset(reply) => {
                let now = now_epoch();
                self.stats.reset(now);
                self.exceptions.clear();
                self.history.clear();
                let _ = reply.send(());
            }
            Command::Snapshot(reply) => {
                let _ = reply.send(Box::new(self.snapshot()));
            }
            Command::History(reply) => {
                let _ = reply.send(self.history.samples().to_vec());
            }
        }
        self.publish();
    }

    fn start_swarm(&mut self, request: SwarmRequest) -> Result<String, MasterError> {
        let workers = self.registry.active_count();
        if workers == 0 {
            return Err(MasterError::NoWorkers);
        }
        request.check(workers)?;
        let new_run = !self.state.is_active();
        // An edit keeps the run's deadline unless it names a new one; a new
        // run without one gets the default (`-t` with the web UI).
        let run_time = match request.run_time {
            Some(t) => Some(t),
            None if new_run => self.config.default_run_time,
            None => None,
        };
        if let Some(run_time) = run_time {
            // check() bounds the run time, so this cannot overflow.
            self.run_deadline = Instant::now().checked_add(run_time);
        } else if new_run {
            self.run_deadline = None;
        }
        if let Some(host) = request.host.filter(|h| !h.is_empty()) {
            self.host = host;
        }
        if let Some(co_mitigation) = request.co_mitigation {
            self.config.co_mitigation = Some(co_mitigation);
        }
        if new_run {
            // A new run starts from clean numbers, as in Locust.
            let now = now_epoch();
            self.stats.reset(now);
            self.exceptions.clear();
            self.history.clear();
            self.started_at = Some(now);
            self.ended_at = None;
            self.dispatched = 0;
        }
        self.ramp = Some(Ramp {
            target: request.user_count,
            rate: request.spawn_rate,
            credit: 0.0,
        });
        self.state = RunState::Spawning;
        self.ramp_now();
        Ok(format!(
            "Swarming started using {} users at a spawn rate of {} users/s",
            request.user_count, request.spawn_rate
        ))
    }

    /// A ramp tick: move `dispatched` toward the target by the rate.
    fn ramp_step(&mut self) {
        if self.ramp.is_some() && self.state == RunState::Spawning {
            self.ramp_now();
        }
    }

    fn ramp_now(&mut self) {
        let Some(ramp) = self.ramp.as_mut() else {
            return;
        };
        ramp.credit += ramp.rate;
        let step = ramp
            .credit
            .floor()
            .max(if self.dispatched == 0 { 1.0 } else { 0.0 }) as u64;
        if step == 0 {
            return;
        }
        ramp.credit = (ramp.credit - step as f64).max(0.0);
        let target = ramp.target;
        self.dispatched = if self.dispatched < target {
            self.dispatched.saturating_add(step).min(target)
        } else {
            self.dispatched.saturating_sub(step).max(target)
        };
        self.redispatch();
        if self.dispatched == target {
            self.ramp = None;
            self.state = RunState::Running;
            self.broadcast(ToWorker::SpawningComplete { user_count: target });
            tracing::info!("all {target} users spawned");
        }
    }

    /// Sends every active worker its share of `dispatched`.
    fn redispatch(&mut self) {
        let workers = self.registry.active_ids();
        let plan = dispatch(self.dispatched, &workers, &self.config.classes);
        // Strictly increasing timestamps: workers ignore stale spawns.
        self.spawn_timestamp = now_epoch().max(self.spawn_timestamp + 1e-6);
        for (id, classes) in plan {
            if let Some(node) = self.registry.get_mut(&id) {
                node.assigned = classes.values().fold(0u64, |a, b| a.saturating_add(*b));
            }
            let order = SpawnOrder {
                timestamp: self.spawn_timestamp,
                user_classes_count: classes,
                host: self.host.clone(),
                stop_timeout: None,
                co_mitigation: self.config.co_mitigation.clone(),
            };
            self.send(&id, ToWorker::Spawn(order));
        }
    }

    fn stop(&mut self, reply: oneshot::Sender<()>, quit: bool) {
        self.ramp = None;
        self.run_deadline = None;
        let message = if quit { ToWorker::Quit } else { ToWorker::Stop };
        for id in self.registry.active_ids() {
            if let Some(node) = self.registry.get_mut(&id) {
                node.stopped_ack = false;
                node.assigned = 0;
            }
            self.send(&id, message.clone());
        }
        if self.state != RunState::Ready || quit {
            self.state = RunState::Stopping;
        }
        self.dispatched = 0;
        if let Some(previous) = self.pending.take() {
            let _ = previous.reply.send(());
        }
        self.pending = Some(Pending {
            reply,
            deadline: Instant::now() + self.config.stop_timeout,
            quit,
        });
        self.settle_pending();
    }

    /// Finishes a stop once every worker answered (or the deadline passed).
    fn settle_pending(&mut self) {
        let Some(pending) = self.pending.as_ref() else {
            return;
        };
        let waiting = self
            .registry
            .nodes()
            .filter(|n| n.state != NodeState::Missing && (pending.quit || !n.stopped_ack))
            .count();
        if waiting > 0 && Instant::now() < pending.deadline {
            return;
        }
        if waiting > 0 {
            tracing::warn!("{waiting} worker(s) did not answer the stop in time");
        }
        if let Some(pending) = self.pending.take() {
            if self.state == RunState::Stopping {
                self.state = RunState::Stopped;
                self.ended_at = Some(now_epoch());
            }
            let _ = pending.reply.send(());
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        let missing = self
            .registry
            .check_heartbeats(now, self.config.heartbeat_interval);
        for id in &missing {
            self.event(id, WorkerEventKind::Missing, "missed 3 heartbeats".into());
        }
        if !missing.is_empty() && self.state.is_active() {
            self.redispatch();
        }
        if self.run_deadline.is_some_and(|d| now >= d) {
            tracing::info!("run time is up; stopping");
            let (tx, _rx) = oneshot::channel();
            self.stop(tx, false);
        }
        self.settle_pending();
        self.publish();
    }

    fn snapshot(&self) -> MasterSnapshot {
        MasterSnapshot {
            state: self.state,
            host: self.host.clone(),
            user_count: self.registry.running_users(),
            target_user_count: self.ramp.as_ref().map_or(self.dispatched, |r| r.target),
            stats: self.stats.clone(),
            workers: self.registry.nodes().cloned().collect(),
            exceptions: self.exceptions.values().cloned().collect(),
            current_percentiles: self.history.current_percentiles(&self.stats.total),
            started_at: self.started_at,
            ended_at: self.ended_at,
            events: self.events.to_vec(),
        }
    }
}

/// A bound on warnings about bad input: a few per ten seconds, then a
/// count of what was left out, so a flood of bad frames cannot keep the
/// master busy writing logs.
#[derive(Debug)]
struct WarnBudget {
    window: Instant,
    used: u32,
    suppressed: u64,
}

impl Default for WarnBudget {
    fn default() -> Self {
        WarnBudget {
            window: Instant::now(),
            used: 0,
            suppressed: 0,
        }
    }
}

impl WarnBudget {
    const PER_WINDOW: u32 = 10;
    const WINDOW: Duration = Duration::from_secs(10);

    /// Whether one more warning may be printed now.
    fn allow(&mut self) -> bool {
        if self.window.elapsed() >= Self::WINDOW {
            if self.suppressed > 0 {
                tracing::warn!(
                    "{} more bad frames were ignored without a warning",
                    self.suppressed
                );
            }
            *self = WarnBudget::default();
        }
        if self.used < Self::PER_WINDOW {
            self.used += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}
