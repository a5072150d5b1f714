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
    state: WorkerState,
    /// Per-class targets of the last accepted spawn.
    classes: BTreeMap<String, u64>,
    last_spawn: f64,
    last_heard: Instant,
    system: ResourceProbe,
}

impl Worker {
    /// Starts goose idle and connects to the master.
    pub async fn connect(config: WorkerConfig, scenarios: Vec<Scenario>) -> anyhow::Result<Self> {
        let node_id = new_node_id();
        let goose = GooseDriver::launch(scenarios, &config.driver).await?;
        let link = connect_worker(&config.master_host, config.master_port, &node_id).await?;
        Ok(Worker {
            config,
            node_id,
            link,
            goose,
            state: WorkerState::Ready,
            classes: BTreeMap::new(),
            last_spawn: f64::MIN,
            last_heard: Instant::now(),
            system: ResourceProbe::new(),
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
        let mut heartbeat = interval(self.config.heartbeat_interval);
        let mut stats = interval(self.config.stats_interval);
        stats.set_missed_tick_behavior(MissedTickBehavior::Delay);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let exit = loop {
            tokio::select! {
                frame = self.link.incoming.recv() => {
                    let Some(frame) = frame else { break WorkerExit::MasterLost };
                    if let Some(exit) = self.on_frame(&frame).await? {
                        break exit;
                    }
                }
                _ = heartbeat.tick() => {
                    if self.last_heard.elapsed() > self.config.master_timeout {
                        tracing::error!("no message from the master at {}:{} for {:?}; quitting", self.config.master_host, self.config.master_port, self.config.master_timeout);
                        break WorkerExit::MasterLost;
                    }
                    if self.goose.has_ended() {
                        break WorkerExit::Interrupted;
                    }
                    self.send_heartbeat().await;
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
                self.state = WorkerState::Spawning;
                self.send(ToMaster::Spawning).await;
                let users = order.user_count();
                if let Some(report) = self.goose.set_users(&order.host, users).await? {
                    self.send_report(report).await;
                }
                self.classes = order.user_classes_count;
                self.state = WorkerState::Running;
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
                self.state = WorkerState::Ready;
                self.send(ToMaster::ClientStopped).await;
                self.send(ToMaster::ClientReady {
                    version: LOCUST_COMPAT_VERSION.into(),
                })
                .await;
            }
            ToWorker::Quit => return Ok(Some(WorkerExit::MasterQuit)),
            ToWorker::Reconnect => {
                self.link = connect_worker(
                    &self.config.master_host,
                    self.config.master_port,
                    &self.node_id,
                )
                .await?;
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

    async fn send_heartbeat(&mut self) {
        let (cpu_usage, memory_usage) = self.system.sample();
        self.send(ToMaster::Heartbeat(Heartbeat {
            state: self.state,
            cpu_usage,
            memory_usage,
        }))
        .await;
    }

    /// Stops the users, sends what they measured, then says goodbye.
    async fn finish(mut self) {
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
