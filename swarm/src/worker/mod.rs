//! The worker: joins a master (spotload's or Locust's) over Locust's
//! protocol, runs the users it is given with goose, and reports stats
//! deltas every few seconds.
//!
//! One [`Worker`] owns the link to the master and the goose driver; its
//! `run` loop reacts to master messages and to its own timers (heartbeat,
//! stats, master silence), to a spot interruption notice ([`spot`]) and to
//! the process's shutdown. Goose is controlled only through its Controller.
//!
//! Everything that talks to goose lives in `goose/`, behind one
//! [`GooseDriver`] (its module doc draws a request's path through it);
//! this module, `heartbeat.rs` and `spot.rs` know goose only through it.
//!
//! Faults: the link reconnects by itself and the worker joins again on
//! every new connection; stats that could not be delivered are held and
//! sent once a master takes them; a master silent for its liveness has
//! moved this worker's users, so the worker stops them itself.

pub mod arrival;
mod goose;
mod heartbeat;
pub mod spot;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ::goose::prelude::Scenario;
use bytes::Bytes;
use tokio::time::{interval, Instant, MissedTickBehavior};

pub(crate) use self::goose::pause;
pub use self::goose::{
    controller, read_body, read_response, user_client_builder, DriverError, DriverOptions,
    GooseDriver, ReadResponse, Spawned, UserClientError, FAILURE_LOG_WINDOW, MAX_USERS_PER_WORKER,
};
pub use arrival::{Arrivals, Start, MAX_ARRIVAL_RATE};
pub use spot::SpotNotice;

use self::goose::controller::ControllerError;
use crate::protocol::transport::{connect_worker, WorkerLink};
use crate::protocol::{
    new_node_id, JoinSecret, QuitReason, SpawnOrder, ToMaster, ToWorker, WorkerState,
    LOCUST_COMPAT_VERSION,
};
use crate::shutdown::{Reason, Shutdown};
use crate::stats::StatsReport;
use crate::target_tls::TargetTls;
use heartbeat::{HeartbeatTask, ReadyOn, StateCell};

/// Where the master is and how patient to be with it.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The master's host name or address.
    pub master_host: String,
    /// The master's worker port (Locust's `--master-bind-port`, 5557 by default).
    pub master_port: u16,
    /// Seconds without any message from the master before the worker quits.
    pub master_timeout: Duration,
    /// How often the worker sends a heartbeat (1 s, as Locust).
    pub heartbeat_interval: Duration,
    /// How often the worker sends its stats deltas (3 s, as Locust).
    pub stats_interval: Duration,
    /// How goose runs the users.
    pub driver: DriverOptions,
    /// Instance metadata to watch for spot notices; `None`: no watch.
    pub spot_endpoint: Option<String>,
    /// The secret to present to the master (ZMTP PLAIN); `None`: join
    /// without one (ZMTP NULL, as Locust's workers do).
    pub join_secret: Option<JoinSecret>,
}

impl WorkerConfig {
    /// A config for the master at `master_host:master_port` with Locust's
    /// timings: 1 s heartbeats, 3 s stats, quit after 60 s of master silence.
    pub fn new(master_host: &str, master_port: u16) -> Self {
        Self {
            master_host: master_host.to_string(),
            master_port,
            master_timeout: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(1),
            stats_interval: Duration::from_secs(3),
            driver: DriverOptions::default(),
            spot_endpoint: None,
            join_secret: None,
        }
    }

    /// Silence after which the master has surely marked this worker missing
    /// and moved its users (its liveness: three heartbeats).
    fn master_silence(&self) -> Duration {
        self.heartbeat_interval * crate::protocol::HEARTBEAT_LIVENESS
    }
}

/// Why a worker ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerExit {
    /// The master said `quit`.
    MasterQuit,
    /// Nothing heard from the master for `master_timeout`.
    MasterLost,
    /// SIGINT or SIGTERM.
    Shutdown(Reason),
    /// A spot interruption notice: drained and gone before the reclaim.
    Reclaimed(SpotNotice),
    /// Goose's attack ended by itself.
    GooseEnded,
    /// Goose could not be steered (its controller failed): the worker
    /// still sent what was measured and said `quit` (see [`Worker::run`]).
    Failed(String),
}

/// Why a worker could not start, or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Goose could not start, or could not be steered.
    #[error(transparent)]
    Goose(#[from] DriverError),
    /// The link to the master could not start.
    #[error(transparent)]
    Link(#[from] crate::protocol::transport::TransportError),
}

impl WorkerExit {
    /// Whether the worker ended as asked (exit code 0).
    pub fn is_clean(&self) -> bool {
        matches!(
            self,
            WorkerExit::MasterQuit | WorkerExit::Shutdown(_) | WorkerExit::Reclaimed(_)
        )
    }

    fn quit_reason(&self) -> QuitReason {
        let detail = match self {
            WorkerExit::Reclaimed(notice) => {
                return QuitReason::SpotInterruption {
                    notice: notice.to_string(),
                }
            }
            WorkerExit::MasterQuit => "the master said quit".to_string(),
            WorkerExit::MasterLost => "lost the master".to_string(),
            WorkerExit::Shutdown(reason) => reason.describe().to_string(),
            WorkerExit::GooseEnded => "goose ended".to_string(),
            WorkerExit::Failed(why) => format!("failed: {why}"),
        };
        QuitReason::Shutdown { detail }
    }
}

/// A worker with its goose attack and its link to the master.
pub struct Worker {
    config: WorkerConfig,
    node_id: String,
    link: WorkerLink,
    goose: GooseDriver,
    /// Read by the heartbeat task, which runs on its own so a slow goose
    /// command never delays a heartbeat.
    state: Arc<StateCell>,
    heartbeats: Beating,
    /// Per-class targets of the last accepted spawn.
    classes: BTreeMap<String, u64>,
    last_spawn: f64,
    /// When the master last said anything; `None` before it ever did.
    last_heard: Option<Instant>,
    started: Instant,
    /// The master acknowledged our `client_ready` on this connection, so
    /// stats sent now are counted.
    joined: bool,
    /// Measured but not delivered yet (the link was down, or the master had
    /// not taken us back): sent as soon as it can be.
    held: Option<StatsReport>,
    /// The number the next report sent gets (its `seq`).
    next_seq: u64,
    /// Reports sent on this connection that the master has not said it
    /// merged yet (our master's heartbeat says which it has); at most
    /// [`IN_FLIGHT`] of them.
    in_flight: VecDeque<StatsReport>,
    /// Reports to send again, as they were, once joined anew: their first
    /// copy went out on a connection that broke before the master said it
    /// had them. The master merges a number once.
    resend: VecDeque<StatsReport>,
    /// Whether the master says which reports it merged: `None` until its
    /// first heartbeat answer, `Some(false)` for a Locust master (reports
    /// are then let go once sent, as Locust's workers do).
    master_acks: Option<bool>,
    /// When the last `client_ready` went out, so a burst of `reconnect`s
    /// (one per heartbeat) does not make a burst of joins.
    ready_sent: Option<Instant>,
    /// The connection that `client_ready` went out on: the heartbeat task
    /// beats only there.
    ready_on: ReadyOn,
}

impl Worker {
    /// Starts goose idle and starts connecting to the master (the link
    /// keeps reconnecting on its own).
    pub async fn connect(
        config: WorkerConfig,
        scenarios: Vec<Scenario>,
    ) -> Result<Self, WorkerError> {
        let node_id = new_node_id();
        let goose = GooseDriver::launch(scenarios, &config.driver, &node_id).await?;
        let link = connect_worker(
            &config.master_host,
            config.master_port,
            &node_id,
            config.join_secret.clone(),
        )?;
        Ok(Worker {
            config,
            node_id,
            link,
            goose,
            state: Arc::new(StateCell::default()),
            heartbeats: Beating(tokio::spawn(async {})),
            classes: BTreeMap::new(),
            last_spawn: f64::MIN,
            last_heard: None,
            started: Instant::now(),
            joined: false,
            held: None,
            next_seq: 1,
            in_flight: VecDeque::new(),
            resend: VecDeque::new(),
            master_acks: None,
            ready_sent: None,
            ready_on: ReadyOn::default(),
        })
    }

    /// This worker's node id (`hostname_<uuid>`, as Locust makes it), its
    /// identity on the master.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Serves the master until it quits, goes silent for good, a spot
    /// notice comes, or `shutdown`; always ends with the last stats and
    /// `quit`, whatever ended it: an error too goes through that end before
    /// it is returned, and the heartbeat task ends with the worker.
    pub async fn run(mut self, shutdown: Shutdown) -> Result<WorkerExit, WorkerError> {
        self.start_heartbeats();
        let mut watchdog = interval(self.config.heartbeat_interval);
        let mut stats = interval(self.config.stats_interval);
        stats.set_missed_tick_behavior(MissedTickBehavior::Delay);
        watchdog.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut connected = self.link.connected.clone();
        let mut notice: std::pin::Pin<Box<dyn std::future::Future<Output = SpotNotice> + Send>> =
            match self.config.spot_endpoint.clone() {
                Some(endpoint) => Box::pin(spot::next_notice(endpoint)),
                None => Box::pin(std::future::pending()),
            };
        let ended: Result<WorkerExit, WorkerError> = loop {
            tokio::select! {
                changed = connected.changed() => {
                    if changed.is_err() {
                        break Ok(WorkerExit::MasterLost);
                    }
                    // A new connection may lead to a new master: join it,
                    // and send again what the old one did not confirm.
                    self.joined = false;
                    self.resend_unconfirmed();
                    self.join();
                }
                frame = self.link.incoming.recv() => {
                    let Some(frame) = frame else { break Ok(WorkerExit::MasterLost) };
                    // Whatever else is queued is read with it, so stale
                    // orders are skipped rather than obeyed in turn.
                    let mut frames = vec![frame];
                    while frames.len() < BATCH {
                        match self.link.incoming.try_recv() {
                            Ok(more) => frames.push(more),
                            Err(_) => break,
                        }
                    }
                    match self.on_frames(&frames).await {
                        Ok(None) => {}
                        Ok(Some(exit)) => break Ok(exit),
                        Err(err) => break Err(err),
                    }
                }
                _ = watchdog.tick() => match self.check_master().await {
                    Ok(None) => {}
                    Ok(Some(exit)) => break Ok(exit),
                    Err(err) => break Err(err),
                },
                _ = stats.tick() => {
                    if let Err(err) = self.report_stats().await {
                        break Err(err);
                    }
                }
                notice = &mut notice => {
                    tracing::warn!("spot interruption notice ({notice}): draining — final stats, then quit");
                    break Ok(WorkerExit::Reclaimed(notice));
                }
                () = shutdown.requested() => {
                    break Ok(WorkerExit::Shutdown(shutdown.reason().unwrap_or(Reason::Interrupt)));
                }
            }
        };
        let exit = match &ended {
            Ok(exit) => exit.clone(),
            Err(err) => {
                tracing::error!(
                    "the worker cannot go on: {err}; sending what it measured and quitting"
                );
                WorkerExit::Failed(err.to_string())
            }
        };
        self.finish(&exit).await;
        ended
    }

    /// The watchdog: a master silent for its liveness has moved our users,
    /// so stop them (keeping their stats); silent for `master_timeout`, give up.
    async fn check_master(&mut self) -> Result<Option<WorkerExit>, WorkerError> {
        let silent = self.last_heard.unwrap_or(self.started).elapsed();
        let (host, port) = (&self.config.master_host, self.config.master_port);
        if silent > self.config.master_timeout {
            match self.last_heard {
                Some(_) => tracing::error!("no message from the master at {host}:{port} for {:?}; quitting", self.config.master_timeout),
                None => tracing::error!("no master answered at {host}:{port} within {:?}: start `loadtest master` there, or check --master-host/--master-port", self.config.master_timeout),
            }
            return Ok(Some(WorkerExit::MasterLost));
        }
        if self.goose.has_ended() {
            return Ok(Some(WorkerExit::GooseEnded));
        }
        if self.last_heard.is_some()
            && silent > self.config.master_silence()
            && self.goose.running()
        {
            let users = self.goose.users();
            let report = self.goose.stop().await?;
            self.hold(report);
            self.classes.clear();
            self.state.set(WorkerState::Ready);
            tracing::warn!("no word from the master for {:.1} s: stopped {users} users (it has moved them); keeping what they measured until it answers", silent.as_secs_f64());
        }
        Ok(None)
    }

    /// Acts on the master's messages that arrived together. Only the
    /// latest orders count: a `quit` ends the worker whatever came before
    /// it; of several `stop`s the last is obeyed, and spawns before it are
    /// skipped; of the spawns after it only the newest is applied.
    async fn on_frames(&mut self, frames: &[Bytes]) -> Result<Option<WorkerExit>, WorkerError> {
        let mut messages = Vec::with_capacity(frames.len());
        for frame in frames {
            match ToWorker::from_wire(frame) {
                Ok(message) => messages.push(message),
                Err(err) => tracing::warn!("ignored a message from the master: {err}"),
            }
        }
        if messages.is_empty() {
            return Ok(None);
        }
        self.last_heard = Some(Instant::now());
        if messages.iter().any(|m| matches!(m, ToWorker::Quit)) {
            return Ok(Some(WorkerExit::MasterQuit));
        }
        let last_stop = messages.iter().rposition(|m| matches!(m, ToWorker::Stop));
        let newest_spawn = messages
            .iter()
            .enumerate()
            .skip(last_stop.map_or(0, |i| i + 1))
            .filter_map(|(i, m)| match m {
                ToWorker::Spawn(order) => Some((i, order.timestamp)),
                _ => None,
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, _)| i);
        let mut skipped = 0;
        for (i, message) in messages.into_iter().enumerate() {
            let obeyed = match &message {
                ToWorker::Spawn(_) => Some(i) == newest_spawn,
                ToWorker::Stop => Some(i) == last_stop,
                _ => true,
            };
            if obeyed {
                self.on_message(message).await?;
            } else {
                skipped += 1;
            }
        }
        if skipped > 0 {
            tracing::debug!("skipped {skipped} orders that later ones replaced");
        }
        Ok(None)
    }

    async fn on_message(&mut self, message: ToWorker) -> Result<(), WorkerError> {
        match message {
            ToWorker::Ack { index } => {
                tracing::info!("joined the master as worker {index} ({})", self.node_id);
                self.joined = true;
                self.deliver();
            }
            ToWorker::Heartbeat { stats_seq } => self.confirmed(stats_seq),
            ToWorker::SpawningComplete { .. } | ToWorker::UpdateUserClass => {}
            ToWorker::Spawn(order) => self.on_spawn(order).await?,
            ToWorker::Stop => {
                let report = self.goose.stop().await?;
                self.hold(report);
                self.deliver();
                self.classes.clear();
                self.state.set(WorkerState::Ready);
                self.send(ToMaster::ClientStopped);
                self.join();
            }
            // Handled before any other message in `on_frames`.
            ToWorker::Quit => {}
            ToWorker::Reconnect => {
                // The master does not know us (it restarted, or forgot us):
                // join again, unless a `client_ready` is already on its way.
                self.joined = false;
                self.resend_unconfirmed();
                if self
                    .ready_sent
                    .is_none_or(|at| at.elapsed() > READY_PATIENCE)
                {
                    tracing::info!("the master does not know this worker; joining again");
                    self.join();
                }
            }
            ToWorker::Unknown(kind) => {
                tracing::warn!(
                    "ignored an unknown message type {} from the master",
                    crate::logs::shown(&kind)
                );
            }
        }
        Ok(())
    }

    async fn on_spawn(&mut self, order: SpawnOrder) -> Result<(), WorkerError> {
        if order.timestamp <= self.last_spawn {
            tracing::debug!("ignored a spawn no newer than the last one");
            return Ok(());
        }
        self.last_spawn = order.timestamp;
        let began = Instant::now();
        self.state.set(WorkerState::Spawning);
        self.send(ToMaster::Spawning);
        let asked = order.user_count();
        // The master's choice of coordinated omission mitigation, for the
        // users this spawn starts; without one, the worker's own.
        self.goose
            .set_co_mitigation(order.co_mitigation.map(Into::into));
        if let Err(msg) = self.take_target_tls(&order) {
            self.refuse_spawn(msg).await;
            return Ok(());
        }
        if asked > MAX_USERS_PER_WORKER {
            let msg = format!("worker {} was asked for {asked} users; goose runs at most {MAX_USERS_PER_WORKER} per worker, so it runs {MAX_USERS_PER_WORKER}: add workers", self.node_id);
            tracing::warn!("{msg}");
            self.send(ToMaster::Exception {
                msg,
                traceback: String::new(),
                count: 1,
            });
        }
        let running = match self
            .goose
            .set_classes(&order.host, &order.user_classes_count, &self.link.urgent)
            .await
        {
            Ok(spawned) => {
                if let Some(report) = spawned.flushed {
                    self.hold(report);
                    self.deliver();
                }
                spawned.classes
            }
            // Goose said no (e.g. no target host): the master hears why and
            // this worker stays, idle, for the next spawn.
            Err(DriverError::Controller(ControllerError::Refused { command, reply })) => {
                let hint = if order.host.is_empty() && reply.contains("host") {
                    ": give the target with --host on the master or the worker"
                } else {
                    ""
                };
                let msg = format!(
                    "worker {} cannot run {asked} users: goose refused `{command}`: {reply}{hint}",
                    self.node_id
                );
                self.refuse_spawn(msg).await;
                return Ok(());
            }
            Err(err) => return Err(err.into()),
        };
        // The open model at this worker's share of the swarm's rate, or
        // the closed one: each spawn says which (set once the users run).
        self.goose.set_arrival_rate(order.arrival_rate);
        if let Some(rate) = order.arrival_rate {
            tracing::info!(
                "{} users run the open model: {rate} iterations/s on this worker (its users were ready {:?} after the order)",
                self.goose.users(),
                began.elapsed()
            );
        }
        // What runs, class by class, as a Locust worker reports it.
        self.classes = running;
        self.state.set(WorkerState::Running);
        self.send(ToMaster::SpawningComplete {
            user_classes_count: self.classes.clone(),
            user_count: self.goose.users(),
        });
        Ok(())
    }

    /// The users' HTTPS trust for this spawn: the master's when it sends
    /// one, else this worker's own; set up anew only when it changed. The
    /// error says why the spawn cannot be run.
    fn take_target_tls(&mut self, order: &SpawnOrder) -> Result<(), String> {
        let trust = match &order.target_tls {
            Some(sent) => TargetTls::from_spawn(sent).map_err(|e| {
                format!(
                    "worker {} cannot trust the master's --ca-cert: {e}",
                    self.node_id
                )
            })?,
            None => self.config.driver.target_tls.clone(),
        };
        match self.goose.set_target_tls(&trust) {
            Ok(true) => {
                if trust.accept_invalid_certs {
                    tracing::warn!(
                        "users' HTTPS now accepts {}: for staging servers only",
                        trust.describe()
                    );
                } else {
                    tracing::info!("users' HTTPS now trusts {}", trust.describe());
                }
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(e) => Err(format!("worker {}: {e}", self.node_id)),
        }
    }

    /// Tells the master this worker cannot run the spawn it sent, and
    /// why; its users stop, and it stays, idle, for the next spawn.
    async fn refuse_spawn(&mut self, msg: String) {
        tracing::error!("{msg}");
        self.send(ToMaster::Exception {
            msg,
            traceback: String::new(),
            count: 1,
        });
        if self.goose.running() {
            match self.goose.stop().await {
                Ok(report) => {
                    self.hold(report);
                    self.deliver();
                }
                Err(err) => tracing::warn!("could not stop the users: {err}"),
            }
        }
        self.classes.clear();
        self.state.set(WorkerState::Ready);
        self.send(ToMaster::SpawningComplete {
            user_classes_count: BTreeMap::new(),
            user_count: 0,
        });
    }

    async fn report_stats(&mut self) -> Result<(), WorkerError> {
        let report = self.goose.take_delta().await?;
        self.hold(report);
        self.deliver();
        if self.joined {
            // Goose transaction errors, as Locust's Exceptions tab lists them.
            for (msg, count) in self.goose.take_exceptions() {
                self.send(ToMaster::Exception {
                    msg,
                    traceback: String::new(),
                    count,
                });
            }
        }
        Ok(())
    }

    /// Adds a report to what waits for delivery.
    fn hold(&mut self, mut report: StatsReport) {
        report.user_classes_count = self.classes.clone();
        report.user_count = self.goose.users();
        match self.held.as_mut() {
            Some(held) => held.absorb(report),
            None => self.held = Some(report),
        }
    }

    /// Sends what is held, if the master will count it now: first the
    /// reports to send again (as they were), then a new one.
    fn deliver(&mut self) {
        if !self.joined {
            return;
        }
        while let Some(report) = self.resend.pop_front() {
            if !self.send_report(&report) {
                self.resend.push_front(report);
                return;
            }
            self.track(report);
        }
        let Some(mut report) = self.held.take() else {
            return;
        };
        report.user_classes_count = self.classes.clone();
        report.user_count = self.goose.users();
        report.seq = Some(self.next_seq);
        if self.send_report(&report) {
            self.next_seq += 1;
            self.track(report);
        } else {
            report.seq = None;
            self.held = Some(report);
        }
    }

    /// Queues one report; false (and it stays with the caller) when the
    /// link cannot take it now.
    fn send_report(&self, report: &StatsReport) -> bool {
        let bytes = Bytes::from(ToMaster::Stats(Box::new(report.clone())).to_wire(&self.node_id));
        // Only on the connection it joined on: on a newer one the master
        // would refuse it until the worker joins there too.
        match self.link.outgoing.try_send_on(self.ready_on.get(), bytes) {
            Ok(()) => true,
            Err(err) => {
                tracing::debug!("stats kept for later: {err}");
                false
            }
        }
    }

    /// Keeps a sent report until the master says it merged it, unless the
    /// master never says so (a Locust master).
    fn track(&mut self, report: StatsReport) {
        if self.master_acks == Some(false) {
            return;
        }
        if self.in_flight.len() == IN_FLIGHT {
            // A minute of reports unconfirmed: the oldest is let go.
            self.in_flight.pop_front();
        }
        self.in_flight.push_back(report);
    }

    /// The master's heartbeat answer: which reports it has merged.
    fn confirmed(&mut self, stats_seq: Option<u64>) {
        match stats_seq {
            Some(merged) => {
                self.master_acks = Some(true);
                self.in_flight
                    .retain(|report| report.seq.is_some_and(|seq| seq > merged));
            }
            None => {
                self.master_acks = Some(false);
                self.in_flight.clear();
            }
        }
    }

    /// The connection broke, or the master forgot us: what it did not
    /// confirm goes out again once joined.
    fn resend_unconfirmed(&mut self) {
        self.resend.extend(self.in_flight.drain(..));
        // The master there may be another, Locust's even: ask it anew.
        self.master_acks = None;
    }

    /// (Re)starts the heartbeat task on the current link.
    fn start_heartbeats(&mut self) {
        self.heartbeats.0.abort();
        let beat = HeartbeatTask {
            outgoing: self.link.outgoing.clone(),
            connected: self.link.connected.clone(),
            ready_on: self.ready_on.clone(),
            node_id: self.node_id.clone(),
            state: self.state.clone(),
            interval: self.config.heartbeat_interval,
        };
        self.heartbeats = Beating(tokio::spawn(beat.run()));
    }

    /// Stops the users and delivers what they measured — at once what is
    /// counted so far, then the rest once goose has stopped — then says
    /// goodbye and waits (bounded) until that has left.
    async fn finish(mut self, exit: &WorkerExit) {
        // Ended, not only told to end: a heartbeat being built right now
        // would otherwise go out after the `quit`.
        self.heartbeats.end().await;
        // No new requests from here on; once those in flight are done, one
        // read of goose's metrics has them all.
        self.goose.halt().await;
        if let Err(err) = self.report_stats().await {
            tracing::warn!("could not read goose's metrics: {err}");
        }
        match self.goose.stop().await {
            Ok(report) => {
                self.hold(report);
                self.deliver();
            }
            Err(err) => tracing::warn!("could not read goose's last metrics: {err}"),
        }
        let unsent: u64 = self
            .held
            .iter()
            .chain(&self.resend)
            .map(|report| report.stats_total.num_requests)
            .sum();
        if unsent > 0 {
            tracing::warn!(
                "{unsent} requests measured here never reached a master (it was not there to take them)"
            );
        }
        self.send(ToMaster::Quit {
            reason: Some(exit.quit_reason()),
        });
        if !self.link.outgoing.flush(FLUSH_LIMIT).await && self.joined {
            tracing::warn!("the last stats and `quit` may not have reached the master");
        }
        self.goose.shutdown().await;
    }

    /// Asks the master to take this worker (Locust's `client_ready`).
    fn join(&mut self) {
        self.ready_sent = Some(Instant::now());
        // The connection is read first: if a newer one comes up meanwhile,
        // heartbeats wait for the join the loop makes on it.
        let connection = *self.link.connected.borrow();
        self.send(ToMaster::ClientReady {
            version: LOCUST_COMPAT_VERSION.into(),
        });
        self.ready_on.set(connection);
    }

    /// Queues a message; one that cannot go now (no connection) is dropped:
    /// the protocol repeats what matters (heartbeats, `client_ready` on
    /// every new connection), and stats go through [`Worker::deliver`].
    fn send(&self, message: ToMaster) {
        let bytes = Bytes::from(message.to_wire(&self.node_id));
        if let Err(err) = self.link.outgoing.try_send(bytes) {
            tracing::debug!("not sent to the master: {err}");
        }
    }
}

/// The most queued messages from the master read in one go: the whole
/// queue of the connection.
const BATCH: usize = 1024;

/// Reports kept until the master confirms them: a minute of them.
const IN_FLIGHT: usize = 20;

/// The heartbeat task, aborted when its worker goes, however it goes.
struct Beating(tokio::task::JoinHandle<()>);

impl Beating {
    /// Aborts the task and waits until it has stopped running.
    async fn end(&mut self) {
        self.0.abort();
        let _ = (&mut self.0).await;
    }
}

impl Drop for Beating {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How long a leaving worker waits for its last messages to go out.
const FLUSH_LIMIT: Duration = Duration::from_secs(2);

/// How long a `client_ready` may wait for its `ack` before a `reconnect`
/// makes the worker send another.
const READY_PATIENCE: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests;
