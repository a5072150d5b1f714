//! The worker: joins a master (spotload's or Locust's) over Locust's
//! protocol, runs the users it is given with goose, and reports stats
//! deltas every few seconds.
//!
//! One [`Worker`] owns the link to the master and the goose driver; its
//! `run` loop reacts to master messages and to its own timers (heartbeat,
//! stats, master silence). Goose is controlled only through its Controller.

pub mod controller;
mod goose_driver;
mod snapshot;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use goose::prelude::Scenario;
use tokio::time::{interval, Instant, MissedTickBehavior};

pub use goose_driver::{DriverError, DriverOptions, GooseDriver, MAX_USERS_PER_WORKER};
pub use snapshot::GooseSnapshot;

use crate::protocol::transport::{connect_worker, WorkerLink};
use crate::protocol::{
    new_node_id, Heartbeat, ToMaster, ToWorker, WorkerState, LOCUST_COMPAT_VERSION,
};
use crate::stats::StatsReport;

/// Where the master is and how patient to be with it.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub master_host: String,
    pub master_port: u16,
    /// Seconds without any message from the master before the worker quits.
    pub master_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub stats_interval: Duration,
    pub driver: DriverOptions,
}

impl WorkerConfig {
    pub fn new(master_host: &str, master_port: u16) -> Self {
        Self {
            master_host: master_host.to_string(),
            master_port,
            master_timeout: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(1),
            stats_interval: Duration::from_secs(3),
            driver: DriverOptions::default(),
        }
    }
}

/// Why a worker ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerExit {
    /// The master said `quit`.
    MasterQuit,
    /// Nothing heard from the master for `master_timeout`.
    MasterLost,
    /// Ctrl-C or goose ended on its own.
    Interrupted,
}

/// A connected worker.
pub struct Worker {
    config: WorkerConfig,
    node_id: String,
    link: WorkerLink,
    goose: GooseDriver,
    /// Read by the heartbeat task, which runs on its own so a slow goose
    /// command never delays a heartbeat.
    state: Arc<StateCell>,
    heartbeats: tokio::task::JoinHandle<()>,
    /// Per-class targets of the last accepted spawn.
    classes: BTreeMap<String, u64>,
    last_spawn: f64,
    last_heard: Instant,
}

impl Worker {
    /// Starts goose idle and connects to the master.
    pub async fn connect(config: WorkerConfig, scenarios: Vec<Scenario>) -> anyhow::Result<Self> {
        let node_id = new_node_id();
        let goose = GooseDriver::launch(scenarios, &config.driver).await?;
        let link = connect_within(&config, &node_id).await?;
        Ok(Worker {
            config,
            node_id,
            link,
            goose,
            state: Arc::new(StateCell::default()),
            heartbeats: tokio::spawn(async {}),
            classes: BTreeMap::new(),
            last_spawn: f64::MIN,
            last_heard: Instant::now(),
        })
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Serves the master until it quits, goes silent, or Ctrl-C.
    pub async fn run(mut self) -> anyhow::Result<WorkerExit> {
        self.send(ToMaster::ClientReady {
            version: LOCUST_COMPAT_VERSION.into(),
        })
        .await;
        self.start_heartbeats();
        let mut watchdog = interval(self.config.heartbeat_interval);
        let mut stats = interval(self.config.stats_interval);
        stats.set_missed_tick_behavior(MissedTickBehavior::Delay);
        watchdog.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let exit = loop {
            tokio::select! {
                frame = self.link.incoming.recv() => {
                    let Some(frame) = frame else { break WorkerExit::MasterLost };
                    if let Some(exit) = self.on_frame(&frame).await? {
                        break exit;
                    }
                }
                _ = watchdog.tick() => {
                    if self.last_heard.elapsed() > self.config.master_timeout {
                        tracing::error!("no message from the master at {}:{} for {:?}; quitting", self.config.master_host, self.config.master_port, self.config.master_timeout);
                        break WorkerExit::MasterLost;
                    }
                    if self.goose.has_ended() {
                        break WorkerExit::Interrupted;
                    }
                }
                _ = stats.tick() => self.report_stats().await?,
                _ = tokio::signal::ctrl_c() => break WorkerExit::Interrupted,
            }
        };
        self.finish().await;
        Ok(exit)
    }

    async fn on_frame(&mut self, frame: &Bytes) -> anyhow::Result<Option<WorkerExit>> {
        let message = match ToWorker::from_wire(frame) {
            Ok(m) => m,
            Err(err) => {
                tracing::warn!("ignored a message from the master: {err}");
                return Ok(None);
            }
        };
        self.last_heard = Instant::now();
        match message {
            ToWorker::Ack { index } => {
                tracing::info!("joined the master as worker {index} ({})", self.node_id)
            }
            ToWorker::Heartbeat | ToWorker::SpawningComplete { .. } | ToWorker::UpdateUserClass => {
            }
            ToWorker::Spawn(order) => {
                if order.timestamp <= self.last_spawn {
                    tracing::debug!("ignored a spawn no newer than the last one");
                    return Ok(None);
                }
                self.last_spawn = order.timestamp;
                self.state.set(WorkerState::Spawning);
                self.send(ToMaster::Spawning).await;
                let users = order.user_count();
                if let Some(report) = self.goose.set_users(&order.host, users).await? {
                    self.send_report(report).await;
                }
                self.classes = order.user_classes_count;
                self.state.set(WorkerState::Running);
                self.send(ToMaster::SpawningComplete {
                    user_classes_count: self.classes.clone(),
                    user_count: users,
                })
                .await;
            }
            ToWorker::Stop => {
                let report = self.goose.stop().await?;
                self.send_report(report).await;
                self.classes.clear();
                self.state.set(WorkerState::Ready);
                self.send(ToMaster::ClientStopped).await;
                self.send(ToMaster::ClientReady {
                    version: LOCUST_COMPAT_VERSION.into(),
                })
                .await;
            }
            ToWorker::Quit => return Ok(Some(WorkerExit::MasterQuit)),
            ToWorker::Reconnect => {
                self.link = connect_within(&self.config, &self.node_id).await?;
                self.start_heartbeats();
                self.send(ToMaster::ClientReady {
                    version: LOCUST_COMPAT_VERSION.into(),
                })
                .await;
            }
            ToWorker::Unknown(kind) => {
                tracing::warn!("ignored an unknown message type {kind:?} from the master")
            }
        }
        Ok(None)
    }

    async fn report_stats(&mut self) -> anyhow::Result<()> {
        let report = self.goose.take_delta().await?;
        self.send_report(report).await;
        Ok(())
    }

    async fn send_report(&mut self, mut report: StatsReport) {
        report.user_classes_count = self.classes.clone();
        report.user_count = self.goose.users();
        self.send(ToMaster::Stats(Box::new(report))).await;
    }

    /// (Re)starts the heartbeat task on the current link.
    fn start_heartbeats(&mut self) {
        self.heartbeats.abort();
        let beat = HeartbeatTask {
            outgoing: self.link.outgoing.clone(),
            node_id: self.node_id.clone(),
            state: self.state.clone(),
            interval: self.config.heartbeat_interval,
        };
        self.heartbeats = tokio::spawn(beat.run());
    }

    /// Stops the users, sends what they measured, then says goodbye.
    async fn finish(mut self) {
        self.heartbeats.abort();
        match self.goose.stop().await {
            Ok(report) => self.send_report(report).await,
            Err(err) => tracing::warn!("could not read goose's last metrics: {err}"),
        }
        self.send(ToMaster::Quit).await;
        // Give the socket task a moment to flush before the process exits.
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.goose.shutdown().await;
    }

    async fn send(&mut self, message: ToMaster) {
        if self
            .link
            .outgoing
            .send(Bytes::from(message.to_wire(&self.node_id)))
            .await
            .is_err()
        {
            tracing::warn!("the link to the master is closed");
        }
    }
}

/// Connects to the master, giving up after `master_timeout` as a worker
/// that hears nothing from its master does.
async fn connect_within(config: &WorkerConfig, node_id: &str) -> anyhow::Result<WorkerLink> {
    let connect = connect_worker(&config.master_host, config.master_port, node_id);
    match tokio::time::timeout(config.master_timeout, connect).await {
        Ok(link) => Ok(link?),
        Err(_) => anyhow::bail!(
            "no master answered at {}:{} within {:?}: start `loadtest master` there, or check --master-host/--master-port",
            config.master_host,
            config.master_port,
            config.master_timeout
        ),
    }
}

/// The worker's state, shared with its heartbeat task.
#[derive(Debug, Default)]
struct StateCell(AtomicU8);

impl StateCell {
    fn set(&self, state: WorkerState) {
        self.0.store(state as u8, Ordering::Relaxed);
    }

    fn get(&self) -> WorkerState {
        match self.0.load(Ordering::Relaxed) {
            x if x == WorkerState::Spawning as u8 => WorkerState::Spawning,
            x if x == WorkerState::Running as u8 => WorkerState::Running,
            x if x == WorkerState::Stopped as u8 => WorkerState::Stopped,
            _ => WorkerState::Ready,
        }
    }
}

/// Sends a heartbeat every interval, whatever the worker's loop is doing.
struct HeartbeatTask {
    outgoing: tokio::sync::mpsc::Sender<Bytes>,
    node_id: String,
    state: Arc<StateCell>,
    interval: Duration,
}

impl HeartbeatTask {
    async fn run(self) {
        let mut probe = ResourceProbe::new();
        let mut tick = interval(self.interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (cpu_usage, memory_usage) = probe.sample();
            let beat = ToMaster::Heartbeat(Heartbeat {
                state: self.state.get(),
                cpu_usage,
                memory_usage,
            });
            if self
                .outgoing
                .send(Bytes::from(beat.to_wire(&self.node_id)))
                .await
                .is_err()
            {
                break;
            }
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
