//! The master's task: one loop over worker frames (see `inbox.rs`),
//! commands and timers.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use super::admission::{Bucket, Joins, Refusals, RECONNECT_RATE};
use super::decoding::{Decoder, Taken};
use super::dispatch::{dispatch, UserClass};
use super::events::{EventLog, WorkerEventKind};
use super::handle::{Command, MasterError, MasterHandle, MasterSnapshot, SwarmRequest};
use super::history::History;
use super::registry::Registry;
use super::shape::{chosen, PlanRun};
use super::state::RunState;
use super::{ExceptionRow, MasterConfig};
use crate::logs::Throttle;
use crate::protocol::transport::{Frame, MasterLink};
use crate::protocol::{SpawnOrder, ToWorker};
use crate::stats::{now_epoch, RequestStats};
use crate::thresholds::ThresholdWatch;

/// Joins, leaves and returns within this long after the first of them are
/// answered with one re-dispatch: each re-dispatch sends every worker its
/// order, so a thousand joins in a burst cost one round of orders, not a
/// thousand.
pub const REDISPATCH_COALESCE: Duration = Duration::from_millis(200);

/// The most commands answered between two frames: the channel's size, so
/// a stream of them cannot keep the workers' frames waiting either.
const COMMANDS_BETWEEN_FRAMES: usize = 64;

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
    /// Workers that have not answered yet (`client_stopped` for a stop,
    /// `quit` for either); going missing counts as an answer.
    waiting: HashSet<String>,
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
    pub(super) config: MasterConfig,
    node_id: String,
    pub(super) link: MasterLink,
    commands: mpsc::Receiver<Command>,
    status: watch::Sender<(RunState, usize)>,
    pub(super) registry: Registry,
    pub(super) stats: RequestStats,
    history: History,
    pub(super) exceptions: BTreeMap<(String, String), ExceptionRow>,
    events: EventLog,
    /// Warnings about what peers send, a few per (kind, peer) per 10 s.
    noise: Throttle,
    /// Frames dropped unread, by why.
    pub(super) refused: Refusals,
    /// Join rates per source address.
    pub(super) joins: Joins,
    /// The rate of `reconnect` answers to peers the master does not know.
    pub(super) reconnects: Bucket,
    /// When the re-dispatch that joins and leaves asked for is due.
    redispatch_at: Option<tokio::time::Instant>,
    /// Big frames decoded off the master's task, and the frames of their
    /// connections waiting behind them.
    decoder: Decoder,
    pub(super) state: RunState,
    host: String,
    /// Users currently asked of the workers, all classes together.
    pub(super) dispatched: u64,
    ramp: Option<Ramp>,
    /// The test plan's run, when one was started.
    pub(super) plan_run: Option<PlanRun>,
    /// The classes users are spread over now (chosen on the command line,
    /// or by the class picker), in the load test's order.
    pub(super) active_classes: Vec<UserClass>,
    run_deadline: Option<Instant>,
    spawn_timestamp: f64,
    started_at: Option<f64>,
    ended_at: Option<f64>,
    pending: Option<Pending>,
    /// The `--threshold` rules through the run.
    thresholds: ThresholdWatch,
    /// The run's arrival rate, iterations per second across the swarm (the
    /// open model), split over the workers by their users at every
    /// dispatch; `None`: the closed model.
    pub(super) arrival_rate: Option<f64>,
}

impl Master {
    /// Builds the master over a bound link and returns it with its handle.
    pub fn new(config: MasterConfig, link: MasterLink) -> (Master, MasterHandle) {
        let (commands_tx, commands) = mpsc::channel(COMMANDS_BETWEEN_FRAMES);
        let (status, status_rx) = watch::channel((RunState::Ready, 0));
        let host = config.host.clone();
        let active_classes = chosen(&config.classes, &config.chosen_classes);
        let thresholds = ThresholdWatch::new(config.thresholds.clone());
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
            noise: Throttle::default(),
            refused: Refusals::default(),
            joins: Joins::default(),
            reconnects: Bucket::new(RECONNECT_RATE, RECONNECT_RATE),
            redispatch_at: None,
            decoder: Decoder::default(),
            state: RunState::Ready,
            host,
            dispatched: 0,
            ramp: None,
            plan_run: None,
            active_classes,
            run_deadline: None,
            spawn_timestamp: 0.0,
            started_at: None,
            ended_at: None,
            pending: None,
            thresholds,
            arrival_rate: None,
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
                    Some(frame) => {
                        match self.decoder.take(frame) {
                            Taken::Now(decoded) => self.on_frame(decoded),
                            Taken::Later => {}
                            Taken::Dropped(frame) => self.refuse_behind_slow_frame(&frame),
                        }
                        self.answer_waiting_commands();
                    }
                    None => return Ended::LinkLost,
                },
                decoded = self.decoder.decoded() => {
                    match decoded {
                        Some(decoded) => self.on_frame(decoded),
                        None => tracing::error!("a frame was lost: its decoding did not finish"),
                    }
                    for decoded in self.decoder.release() {
                        self.on_frame(decoded);
                    }
                    self.answer_waiting_commands();
                }
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => return Ended::Released,
                },
                _ = tick.tick() => self.on_tick(),
                () = redispatch_due(self.redispatch_at) => {
                    self.redispatch_at = None;
                    if self.state.is_active() {
                        self.redispatch();
                    }
                }
                _ = ramp_tick.tick() => self.ramp_step(),
                _ = sample.tick() => {
                    let now = now_epoch();
                    self.stats.trim(now);
                    let dropped = self.stats.dropped_iterations;
                    self.history.sample(&self.stats.total, self.dispatched, dropped, now);
                }
            }
        }
    }

    /// Answers the commands (web UI, ramp) that came while a frame was
    /// dealt with: with frames always waiting, the loop would otherwise
    /// pick a command only by chance, one frame at a time.
    fn answer_waiting_commands(&mut self) {
        for _ in 0..COMMANDS_BETWEEN_FRAMES {
            match self.commands.try_recv() {
                Ok(command) => self.on_command(command),
                Err(_) => break,
            }
        }
    }

    /// Tells watchers the run's state and worker count, when they changed.
    pub(super) fn publish(&self) {
        let now = (self.state, self.registry.active_count());
        self.status.send_if_modified(|status| {
            let changed = *status != now;
            *status = now;
            changed
        });
    }

    /// Logs a warning about `peer`'s input, a few per (kind, peer) per 10 s.
    pub(super) fn warn(&mut self, kind: &'static str, peer: &str, line: impl FnOnce() -> String) {
        let verdict = self.noise.check(kind, peer);
        if verdict.allows() {
            tracing::warn!("{}{}", line(), verdict.note());
        }
    }

    /// Re-dispatches once [`REDISPATCH_COALESCE`] has passed, with whatever
    /// else joined or left meanwhile.
    pub(super) fn redispatch_soon(&mut self) {
        if self.redispatch_at.is_none() {
            self.redispatch_at = Some(tokio::time::Instant::now() + REDISPATCH_COALESCE);
        }
    }

    pub(super) fn event(&mut self, worker: &str, event: WorkerEventKind, detail: String) {
        self.events.record(now_epoch(), worker, event, detail);
    }

    /// Queues a message for one worker; never waits (a worker that does not
    /// read loses messages, not the master's time).
    pub(super) fn send(&self, worker: &str, message: ToWorker) {
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

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Swarm(request, reply) => {
                let result = self.start_swarm(request);
                let _ = reply.send(result);
            }
            Command::Stop(reply) => self.stop(reply, false),
            Command::Quit(reply) => self.stop(reply, true),
            Command::Reset(reply) => {
                self.reset_numbers(now_epoch());
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
        let new_run = !self.state.is_active();
        if let Some(plan) = &self.config.test_plan {
            if !new_run {
                return Err(MasterError::Invalid(
                    "A test plan is running: it cannot be edited; stop it to start it again".into(),
                ));
            }
            request.check_plan(plan, workers)?;
        } else {
            request.check(workers)?;
        }
        self.choose_classes(request.user_classes.as_deref(), new_run)?;
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
        // 0 asks for the closed model; none keeps the run's (an edit) or
        // takes the master's (a new run).
        match request.arrival_rate {
            Some(rate) => self.arrival_rate = (rate > 0.0).then_some(rate),
            None if new_run => self.arrival_rate = self.config.arrival_rate,
            None => {}
        }

        if new_run {
            // A new run starts from clean numbers, as in Locust.
            let now = now_epoch();
            self.reset_numbers(now);
            self.started_at = Some(now);
            self.ended_at = None;
            self.dispatched = 0;
            self.thresholds.new_run();
        }
        if let Some(plan) = &self.config.test_plan {
            let message = format!("Swarming started using the test plan {plan}");
            self.run_deadline = None;
            self.ramp = None;
            self.plan_run = Some(PlanRun {
                started: Instant::now(),
                ended: None,
                finished: false,
            });
            self.state = RunState::Spawning;
            self.follow_plan();
            return Ok(message);
        }
        self.ramp = Some(Ramp {
            target: request.user_count,
            rate: request.spawn_rate,
            credit: 0.0,
        });
        self.state = RunState::Spawning;
        // An edit of the rate alone reaches every worker too: the ramp's
        // step re-dispatches even when the users stay.
        self.ramp_now();
        let model = match self.arrival_rate {
            Some(rate) => format!(", starting {rate} iterations/s"),
            None => String::new(),
        };
        Ok(format!(
            "Swarming started using {} users at a spawn rate of {} users/s{model}",
            request.user_count, request.spawn_rate
        ))
    }

    /// Forgets what was measured, and what the fleet did meanwhile.
    fn reset_numbers(&mut self, now: f64) {
        self.stats.reset(now);
        self.thresholds.reset(now);
        self.exceptions.clear();
        self.history.clear();
        self.events.clear();
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

    /// Sends every active worker its share of `dispatched` (and forgets a
    /// re-dispatch that was due: this one has them all).
    pub(super) fn redispatch(&mut self) {
        self.redispatch_at = None;
        let workers = self.registry.active_ids();
        let mut plan = dispatch(self.dispatched, &workers, &self.active_classes);
        // Classes not chosen get none, said outright: a worker stops theirs.
        for counts in plan.values_mut() {
            for class in &self.config.classes {
                counts.entry(class.name.clone()).or_insert(0);
            }
        }
        // Strictly increasing timestamps: workers ignore stale spawns.
        self.spawn_timestamp = now_epoch().max(self.spawn_timestamp + 1e-6);
        let users = |classes: &BTreeMap<String, u64>| {
            classes.values().fold(0u64, |a, b| a.saturating_add(*b))
        };
        let all_users = plan.values().map(users).fold(0u64, u64::saturating_add);
        for (id, classes) in plan {
            let assigned = users(&classes);
            if let Some(node) = self.registry.get_mut(&id) {
                node.assigned = assigned;
            }
            let order = SpawnOrder {
                arrival_rate: self
                    .arrival_rate
                    .map(|rate| share_of_rate(rate, assigned, all_users)),
                timestamp: self.spawn_timestamp,
                user_classes_count: classes,
                host: self.host.clone(),
                stop_timeout: None,
                co_mitigation: self.config.co_mitigation,
                target_tls: self.config.target_tls.clone(),
            };
            self.send(&id, ToWorker::Spawn(order));
        }
    }

    pub(super) fn stop(&mut self, reply: oneshot::Sender<()>, quit: bool) {
        self.ramp = None;
        if let Some(run) = self.plan_run.as_mut() {
            run.ended.get_or_insert_with(Instant::now);
        }
        self.run_deadline = None;
        self.redispatch_at = None;
        let message = if quit { ToWorker::Quit } else { ToWorker::Stop };
        let workers = self.registry.active_ids();
        for id in &workers {
            if let Some(node) = self.registry.get_mut(id) {
                node.stopped_ack = false;
                node.assigned = 0;
            }
            self.send(id, message.clone());
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
            waiting: workers.into_iter().collect(),
        });
        self.settle_pending();
    }

    /// Worker `id` answered a stop (`client_stopped`), or left (`quit`).
    pub(super) fn answered(&mut self, id: &str, left: bool) {
        if let Some(pending) = self.pending.as_mut() {
            if left || !pending.quit {
                pending.waiting.remove(id);
            }
        }
        self.settle_pending();
    }

    /// Finishes a stop once every worker answered (or the deadline passed).
    fn settle_pending(&mut self) {
        let Some(pending) = self.pending.as_ref() else {
            return;
        };
        let waiting = pending.waiting.len();
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
            if let Some(pending) = self.pending.as_mut() {
                pending.waiting.remove(id);
            }
        }
        if !missing.is_empty() && self.state.is_active() {
            self.redispatch_soon();
        }
        if self.run_deadline.is_some_and(|d| now >= d) {
            tracing::info!("run time is up; stopping");
            let (tx, _rx) = oneshot::channel();
            self.stop(tx, false);
        }
        self.follow_plan();
        let holding = self.state == RunState::Running;
        if let Some(abort) = self.thresholds.tick(holding, &self.stats, now_epoch(), now) {
            tracing::error!(
                "{}; stopping the run",
                abort.describe(self.thresholds.config())
            );
            let (tx, _rx) = oneshot::channel();
            self.stop(tx, false);
        }
        self.settle_pending();
        self.publish();
    }

    fn snapshot(&self) -> MasterSnapshot {
        let test_plan = self.plan_state();
        let target_user_count = match &test_plan {
            Some(plan) if self.state.is_active() => plan.target_users,
            _ => self.ramp.as_ref().map_or(self.dispatched, |r| r.target),
        };
        MasterSnapshot {
            state: self.state,
            host: self.host.clone(),
            user_count: self.registry.running_users(),
            target_user_count,
            stats: self.stats.clone(),
            workers: self.registry.nodes().cloned().collect(),
            exceptions: self.exceptions.values().cloned().collect(),
            current_percentiles: self.history.current_percentiles(&self.stats.total),
            started_at: self.started_at,
            ended_at: self.ended_at,
            events: self.events.to_vec(),
            refused: self.refused.clone(),
            test_plan,
            user_classes: self.active_classes.iter().map(|c| c.name.clone()).collect(),
            class_picker: self
                .config
                .class_picker
                .then(|| self.config.classes.clone()),
            thresholds: self.thresholds.verdicts(
                &self.stats,
                now_epoch(),
                self.state == RunState::Stopped,
            ),
            threshold_abort: self
                .thresholds
                .aborted()
                .map(|a| a.describe(self.thresholds.config())),
            arrival_rate: self.arrival_rate,
        }
    }
}

/// A worker's share of the swarm's arrival rate: in proportion to its
/// users (none without users).
fn share_of_rate(rate: f64, users: u64, all_users: u64) -> f64 {
    if all_users == 0 {
        return 0.0;
    }
    rate * users as f64 / all_users as f64
}

/// Waits until `at`, or forever when nothing is due.
async fn redispatch_due(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
