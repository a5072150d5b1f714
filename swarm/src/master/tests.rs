//! The master's fault handling, without sockets: a real [`Master`] over
//! [`memory_master_link`], and simulated workers that answer what it sends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{
    Master, MasterConfig, MasterHandle, MasterSnapshot, NodeState, RunState, SwarmRequest,
    UserClass, WorkerEventKind,
};
use crate::co_mitigation::CoMitigation;
use crate::protocol::transport::{memory_master_link, Inbound};
use crate::protocol::{Heartbeat, QuitReason, ToMaster, ToWorker, WorkerState};
use crate::stats::StatsReport;

mod shape;

const LIMIT: Duration = Duration::from_secs(3);

/// Feeds worker frames and records the largest user count any snapshot
/// taken after a fed frame showed.
#[derive(Clone)]
struct Feeder {
    frames: mpsc::Sender<Inbound>,
    handle: MasterHandle,
    max_users: Arc<AtomicU64>,
}

impl Feeder {
    async fn feed(&self, id: &str, message: ToMaster) {
        let frame = Inbound::memory(id, message.to_wire(id));
        self.feed_frame(frame).await;
    }

    async fn feed_frame(&self, frame: Inbound) {
        self.frames.send(frame).await.expect("the master runs");
        self.snapshot().await;
    }

    async fn snapshot(&self) -> MasterSnapshot {
        let snapshot = self.handle.snapshot().await.expect("the master runs");
        self.max_users
            .fetch_max(snapshot.user_count, Ordering::SeqCst);
        snapshot
    }
}

/// A master with simulated workers. Every message the master sends is
/// forwarded to `seen`; a worker that is not paused answers a spawn with
/// `spawning_complete` of what it was asked and a stop with
/// `client_stopped`, and sends heartbeats every 50 ms.
struct Fleet {
    feeder: Feeder,
    seen: mpsc::UnboundedReceiver<(String, ToWorker)>,
    paused: HashMap<String, Arc<AtomicBool>>,
}

fn config() -> MasterConfig {
    let classes = vec![UserClass {
        name: "WebsiteUser".into(),
        weight: 1,
    }];
    let mut config = MasterConfig::new("http://127.0.0.1:1", classes);
    config.heartbeat_interval = Duration::from_millis(100);
    config.stop_timeout = Duration::from_secs(2);
    config
}

fn heartbeat() -> ToMaster {
    ToMaster::Heartbeat(Heartbeat {
        state: WorkerState::Running,
        cpu_usage: 1.0,
        memory_usage: 1 << 20,
        cpu_cores: None,
    })
}

fn spawned(order: &ToWorker) -> Option<u64> {
    match order {
        ToWorker::Spawn(order) => Some(order.user_count()),
        _ => None,
    }
}

impl Fleet {
    fn start(config: MasterConfig) -> Fleet {
        let (link, frames, mut sent) = memory_master_link(1024);
        let (master, handle) = Master::new(config, link);
        tokio::spawn(master.run());
        let feeder = Feeder {
            frames,
            handle,
            max_users: Arc::new(AtomicU64::new(0)),
        };
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let answering = feeder.clone();
        tokio::spawn(async move {
            while let Some(frame) = sent.recv().await {
                let peer = String::from_utf8_lossy(&frame.peer).into_owned();
                let message =
                    ToWorker::from_wire(&frame.payload).expect("the master sends good frames");
                match &message {
                    ToWorker::Spawn(order) => {
                        let answer = ToMaster::SpawningComplete {
                            user_classes_count: order.user_classes_count.clone(),
                            user_count: order.user_count(),
                        };
                        answering.feed(&peer, answer).await;
                    }
                    ToWorker::Stop => answering.feed(&peer, ToMaster::ClientStopped).await,
                    _ => {}
                }
                if seen_tx.send((peer, message)).is_err() {
                    break;
                }
            }
        });
        Fleet {
            feeder,
            seen,
            paused: HashMap::new(),
        }
    }

    fn handle(&self) -> &MasterHandle {
        &self.feeder.handle
    }

    /// Joins a worker and starts its heartbeats.
    async fn join(&mut self, id: &str) {
        let paused = Arc::new(AtomicBool::new(false));
        self.paused.insert(id.to_string(), paused.clone());
        self.feeder
            .feed(
                id,
                ToMaster::ClientReady {
                    version: "2.47.0".into(),
                },
            )
            .await;
        self.expect(|to, m| to == id && matches!(m, ToWorker::Ack { .. }))
            .await;
        let feeder = self.feeder.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(50));
            loop {
                every.tick().await;
                if feeder.frames.is_closed() {
                    break;
                }
                if !paused.load(Ordering::SeqCst) {
                    feeder.feed(&id, heartbeat()).await;
                }
            }
        });
    }

    fn pause(&self, id: &str, paused: bool) {
        self.paused[id].store(paused, Ordering::SeqCst);
    }

    /// The next message the master sends that `wanted` accepts.
    async fn expect(&mut self, wanted: impl Fn(&str, &ToWorker) -> bool) -> (String, ToWorker) {
        let found = tokio::time::timeout(LIMIT, async {
            loop {
                let (to, message) = self.seen.recv().await.expect("the master runs");
                if wanted(&to, &message) {
                    return (to, message);
                }
            }
        })
        .await;
        found.expect("the master sent the message in time")
    }

    /// Waits for a spawn to each of `wanted` (worker, users), in any order.
    async fn expect_spawns(&mut self, wanted: &[(&str, u64)]) {
        let mut missing: Vec<(String, u64)> =
            wanted.iter().map(|(w, n)| (w.to_string(), *n)).collect();
        while !missing.is_empty() {
            let (to, message) = self.expect(|_, m| spawned(m).is_some()).await;
            let users = spawned(&message).unwrap_or_default();
            missing.retain(|(w, n)| !(*w == to && *n == users));
        }
    }

    /// Snapshots until one satisfies `done` (each is counted), or panics.
    async fn wait_for(&self, what: &str, done: impl Fn(&MasterSnapshot) -> bool) -> MasterSnapshot {
        let deadline = Instant::now() + LIMIT;
        loop {
            let snapshot = self.feeder.snapshot().await;
            if done(&snapshot) {
                return snapshot;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn swarm(&self, user_count: u64, run_time: Option<Duration>) {
        let request = SwarmRequest {
            user_count,
            spawn_rate: 1000.0,
            host: None,
            run_time,
            co_mitigation: None,
            user_classes: None,
            arrival_rate: None,
        };
        self.handle()
            .swarm(request)
            .await
            .expect("the swarm starts");
        self.feeder.snapshot().await;
    }

    fn max_users(&self) -> u64 {
        self.feeder.max_users.load(Ordering::SeqCst)
    }
}

fn state_of(snapshot: &MasterSnapshot, id: &str) -> Option<NodeState> {
    snapshot
        .workers
        .iter()
        .find(|w| w.id == id)
        .map(|w| w.state)
}

/// Two workers joined and running 10 users, 5 each.
async fn two_workers_running_ten() -> Fleet {
    two_workers_running_ten_with(config()).await
}

/// [`two_workers_running_ten`] with another config.
async fn two_workers_running_ten_with(config: MasterConfig) -> Fleet {
    let mut fleet = Fleet::start(config);
    fleet.join("w1").await;
    fleet.join("w2").await;
    fleet.swarm(10, None).await;
    fleet.expect_spawns(&[("w1", 5), ("w2", 5)]).await;
    fleet
        .wait_for("10 users running", |s| s.user_count == 10)
        .await;
    fleet
}

/// The run ends by itself (its deadline), within the tests' patience.
async fn assert_stops_by_itself(fleet: &Fleet) {
    assert!(
        fleet
            .handle()
            .wait_for_state(|s| s == RunState::Stopped, LIMIT)
            .await,
        "the run stopped by itself (state {:?})",
        fleet.handle().state()
    );
}

#[tokio::test]
async fn a_worker_back_from_missing_gets_a_fresh_dispatch_and_the_total_never_exceeds_the_target() {
    let mut fleet = two_workers_running_ten().await;

    // w2 falls silent: it goes missing and w1 takes all ten.
    fleet.pause("w2", true);
    fleet.expect_spawns(&[("w1", 10)]).await;
    fleet
        .wait_for("w2 missing", |s| {
            state_of(s, "w2") == Some(NodeState::Missing)
        })
        .await;
    fleet
        .wait_for("w1 running 10", |s| {
            s.workers.iter().any(|w| w.id == "w1" && w.user_count == 10)
        })
        .await;

    // w2 still runs its five and says so, then is heard from again.
    let five = || {
        ToMaster::Stats(Box::new(StatsReport {
            user_count: 5,
            user_classes_count: [("WebsiteUser".to_string(), 5)].into_iter().collect(),
            ..StatsReport::default()
        }))
    };
    fleet.feeder.feed("w2", five()).await;
    fleet.pause("w2", false);
    fleet.feeder.feed("w2", five()).await;
    fleet.expect_spawns(&[("w1", 5), ("w2", 5)]).await;
    let snapshot = fleet
        .wait_for("a back event", |s| {
            s.events
                .iter()
                .any(|e| e.worker == "w2" && e.event == WorkerEventKind::Back)
        })
        .await;
    assert!(
        snapshot
            .events
            .iter()
            .any(|e| e.worker == "w2" && e.event == WorkerEventKind::Missing),
        "{:?}",
        snapshot.events
    );
    fleet
        .wait_for("10 users again", |s| {
            s.user_count == 10 && state_of(s, "w2") == Some(NodeState::Running)
        })
        .await;
    assert!(
        fleet.max_users() <= 10,
        "a snapshot showed {} users for a target of 10",
        fleet.max_users()
    );
}

#[tokio::test]
async fn an_edit_keeps_the_deadline() {
    let mut fleet = Fleet::start(config());
    fleet.join("w1").await;
    let started = Instant::now();
    fleet.swarm(2, Some(Duration::from_secs(1))).await;
    fleet.expect_spawns(&[("w1", 2)]).await;
    // The edit names no run time: the first one's deadline stays.
    fleet.swarm(4, None).await;
    fleet.expect_spawns(&[("w1", 4)]).await;
    assert_stops_by_itself(&fleet).await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "stopped after {:?}, before the run time",
        started.elapsed()
    );
}

#[tokio::test]
async fn ui_runs_get_the_default_run_time() {
    let mut config = config();
    config.default_run_time = Some(Duration::from_secs(1));
    let mut fleet = Fleet::start(config);
    fleet.join("w1").await;
    fleet.swarm(3, None).await;
    fleet.expect_spawns(&[("w1", 3)]).await;
    assert_stops_by_itself(&fleet).await;
    fleet
        .expect(|to, m| to == "w1" && *m == ToWorker::Stop)
        .await;
}

#[tokio::test]
async fn a_reclaimed_worker_is_an_event_and_its_users_move() {
    let mut fleet = two_workers_running_ten().await;
    fleet.pause("w1", true);
    fleet
        .feeder
        .feed(
            "w1",
            ToMaster::Quit {
                reason: Some(QuitReason::SpotInterruption {
                    notice: "terminate at T".into(),
                }),
            },
        )
        .await;
    fleet.expect_spawns(&[("w2", 10)]).await;
    let snapshot = fleet
        .wait_for("w1 gone", |s| state_of(s, "w1").is_none())
        .await;
    let reclaimed: Vec<_> = snapshot
        .events
        .iter()
        .filter(|e| e.event == WorkerEventKind::Reclaimed)
        .collect();
    assert_eq!(reclaimed.len(), 1, "{:?}", snapshot.events);
    assert_eq!(reclaimed[0].worker, "w1");
    assert_eq!(reclaimed[0].detail, "terminate at T");
    fleet
        .wait_for("w2 running 10", |s| s.user_count == 10)
        .await;
    assert!(fleet.max_users() <= 10, "{}", fleet.max_users());
}

#[tokio::test]
async fn a_heartbeat_from_an_unknown_worker_is_answered_with_reconnect() {
    let mut fleet = Fleet::start(config());
    fleet.feeder.feed("ghost", heartbeat()).await;
    fleet
        .expect(|to, m| to == "ghost" && *m == ToWorker::Reconnect)
        .await;
    let snapshot = fleet.feeder.snapshot().await;
    assert!(snapshot.workers.is_empty(), "{:?}", snapshot.workers);
}

#[tokio::test]
async fn a_swarm_request_s_co_mitigation_reaches_the_workers_spawns() {
    let mut fleet = Fleet::start(config());
    fleet.join("w1").await;
    fleet.swarm(2, None).await;
    let (_, first) = fleet.expect(|_, m| spawned(m).is_some()).await;
    let ToWorker::Spawn(first) = first else {
        unreachable!("expect returned a spawn")
    };
    assert_eq!(first.co_mitigation, None, "the master's own setting: none");
    let request = SwarmRequest {
        user_count: 3,
        spawn_rate: 1000.0,
        host: None,
        run_time: None,
        co_mitigation: Some(CoMitigation::Average),
        user_classes: None,
        arrival_rate: None,
    };
    fleet
        .handle()
        .swarm(request)
        .await
        .expect("the edit is taken");
    let (_, next) = fleet.expect(|_, m| spawned(m) == Some(3)).await;
    let ToWorker::Spawn(next) = next else {
        unreachable!("expect returned a spawn")
    };
    assert_eq!(next.co_mitigation, Some(CoMitigation::Average));
}

#[tokio::test]
async fn the_masters_https_trust_reaches_every_workers_spawn() {
    let tls = crate::protocol::SpawnTls {
        ca_cert_pem: Some("-----BEGIN CERTIFICATE-----\n".into()),
        accept_invalid_certs: false,
    };
    let mut config = config();
    config.target_tls = Some(tls.clone());
    let mut fleet = Fleet::start(config);
    fleet.join("w1").await;
    fleet.join("w2").await;
    fleet.swarm(2, None).await;
    let mut missing = vec!["w1", "w2"];
    while !missing.is_empty() {
        let (to, spawn) = fleet.expect(|_, m| spawned(m).is_some()).await;
        let ToWorker::Spawn(spawn) = spawn else {
            unreachable!("expect returned a spawn")
        };
        assert_eq!(spawn.target_tls.as_ref(), Some(&tls), "{to}");
        missing.retain(|w| *w != to);
    }
}

/// A stats report of `requests` to `/`, at the current second.
fn report_of(requests: u64) -> StatsReport {
    let now = crate::stats::now_epoch();
    let mut entry = crate::stats::StatsEntry::new("/", "GET", now);
    entry.log(5.0, requests, false, now);
    let mut report = StatsReport::default();
    report.stats_total.extend(&entry);
    report.stats.push(entry);
    report
}

#[tokio::test]
async fn only_joined_connections_speak_for_a_worker() {
    let mut fleet = two_workers_running_ten().await;
    let feeder = fleet.feeder.clone();
    // A peer that never joined: its stats are dropped, counted, and it is
    // told to join.
    feeder
        .feed(
            "stranger",
            ToMaster::Stats(Box::new(report_of(1_000_000_000))),
        )
        .await;
    fleet
        .expect(|to, m| to == "stranger" && matches!(m, ToWorker::Reconnect))
        .await;
    // w1's identity on another connection: neither its stats nor a quit
    // count.
    let forged = |message: ToMaster| Inbound::memory("w1", message.to_wire("w1")).on_conn(7);
    feeder
        .feed_frame(forged(ToMaster::Stats(Box::new(report_of(1_000)))))
        .await;
    feeder
        .feed_frame(forged(ToMaster::Quit { reason: None }))
        .await;
    // A frame whose node id is not its sender's identity.
    let claims_w2 = Inbound::memory("w1", ToMaster::Quit { reason: None }.to_wire("w2"));
    feeder.feed_frame(claims_w2).await;
    // What w1 itself reports counts.
    feeder
        .feed("w1", ToMaster::Stats(Box::new(report_of(3))))
        .await;
    let snapshot = fleet
        .wait_for("w1's own report", |s| s.stats.total.num_requests > 0)
        .await;
    assert_eq!(snapshot.stats.total.num_requests, 3);
    assert_eq!(snapshot.refused.stats_not_joined, 2);
    assert_eq!(snapshot.refused.not_joined, 3);
    assert_eq!(snapshot.refused.wrong_node_id, 1);
    assert_eq!(snapshot.active_workers(), 2, "no forged quit was taken");
    assert_eq!(state_of(&snapshot, "w1"), Some(NodeState::Running));
}

#[tokio::test]
async fn joins_in_a_burst_cost_one_round_of_orders() {
    let mut fleet = two_workers_running_ten().await;
    while fleet.seen.try_recv().is_ok() {}
    let feeder = fleet.feeder.clone();
    for i in 0..50 {
        let id = format!("burst{i}");
        let ready = ToMaster::ClientReady {
            version: "2.47.0".into(),
        };
        feeder
            .frames
            .send(Inbound::memory(&id, ready.to_wire(&id)))
            .await
            .expect("runs");
    }
    fleet
        .wait_for("52 workers", |s| s.active_workers() == 52)
        .await;
    // One round of orders to all 52 (the ten users over 52 workers)...
    let mut spawns = 0;
    let deadline = Instant::now() + LIMIT;
    while spawns < 52 {
        let (_, message) = fleet.expect(|_, m| spawned(m).is_some()).await;
        assert!(spawned(&message).is_some());
        spawns += 1;
        assert!(Instant::now() < deadline);
    }
    // ...and no second round: the next message to w1 is not a spawn
    // before a stop the test sends now.
    fleet.handle().stop().await.expect("stops");
    let (_, next) = fleet
        .expect(|to, m| to == "w1" && !matches!(m, ToWorker::Heartbeat { .. }))
        .await;
    assert!(matches!(next, ToWorker::Stop), "{next:?}");
}

#[tokio::test]
async fn joins_over_the_rate_of_one_address_are_refused() {
    let fleet = Fleet::start(config());
    let feeder = fleet.feeder.clone();
    let joins = crate::master::JOIN_BURST as usize + 500;
    for i in 0..joins {
        let id = format!("flood{i}");
        let ready = ToMaster::ClientReady {
            version: "2.47.0".into(),
        };
        feeder
            .frames
            .send(Inbound::memory(&id, ready.to_wire(&id)))
            .await
            .expect("runs");
    }
    let snapshot = fleet
        .wait_for("every join dealt with", |s| {
            s.workers.len() as u64 + s.refused.join_rate == joins as u64
        })
        .await;
    assert!(snapshot.refused.join_rate > 0, "{:?}", snapshot.refused);
    assert!(snapshot.workers.len() >= crate::master::JOIN_BURST as usize);
}

#[tokio::test]
async fn a_report_is_merged_once_and_heartbeats_say_which() {
    let mut fleet = two_workers_running_ten().await;
    let feeder = fleet.feeder.clone();
    let numbered = |seq: u64| {
        let mut report = report_of(10);
        report.seq = Some(seq);
        ToMaster::Stats(Box::new(report))
    };
    feeder.feed("w1", numbered(1)).await;
    feeder.feed("w1", numbered(2)).await;
    // Sent again after a reconnect: merged once.
    feeder.feed("w1", numbered(2)).await;
    // A Locust worker's reports carry no number: each counts.
    feeder
        .feed("w2", ToMaster::Stats(Box::new(report_of(5))))
        .await;
    let snapshot = fleet
        .wait_for("the reports merged", |s| s.stats.total.num_requests >= 25)
        .await;
    assert_eq!(snapshot.stats.total.num_requests, 25);
    assert_eq!(snapshot.refused.duplicate_stats, 1);
    fleet
        .expect(|to, m| to == "w1" && matches!(m, ToWorker::Heartbeat { stats_seq: Some(2) }))
        .await;
}

/// A frame from `id` the master decodes whole before finding it is no
/// report: a `stats` message whose data is just under a million short
/// strings, the slowest frame it still decodes.
fn slow_frame(id: &str) -> Vec<u8> {
    const VALUES: u32 = 999_990;
    let mut frame = vec![0x93, 0xa5];
    frame.extend_from_slice(b"stats");
    frame.push(0xdd);
    frame.extend_from_slice(&VALUES.to_be_bytes());
    for i in 0..VALUES {
        frame.push(0xa7);
        frame.extend_from_slice(format!("{:07}", i % 10_000_000).as_bytes());
    }
    frame.push(0xa0 | u8::try_from(id.len()).expect("a short id"));
    frame.extend_from_slice(id.as_bytes());
    frame
}

/// Queues `frames` slow frames from a joined `flooder` in a task of its
/// own, as a flood of them waits on a socket.
async fn flood_slow_frames(fleet: &mut Fleet, frames: u64) -> tokio::task::JoinHandle<()> {
    fleet.join("flooder").await;
    let frame = slow_frame("flooder");
    let flood = fleet.feeder.frames.clone();
    tokio::spawn(async move {
        for _ in 0..frames {
            let inbound = Inbound::memory("flooder", frame.clone());
            flood.send(inbound).await.expect("the master runs");
        }
    })
}

// Two threads, as the master has: heartbeats arrive while it decodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_heard_behind_slow_frames_are_not_missing() {
    const FRAMES: u64 = 12;
    // Liveness 1.5 s (the workers beat every 50 ms): room for a test
    // process busy with other tests, well below the seconds the flood
    // takes the master to read.
    let mut config = config();
    config.heartbeat_interval = Duration::from_millis(500);
    let mut fleet = two_workers_running_ten_with(config).await;
    // The workers' heartbeats come while the flood is read. (The
    // flooder's own wait behind its frames: it may go missing.)
    let feeding = flood_slow_frames(&mut fleet, FRAMES).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let snapshot = fleet.feeder.snapshot().await;
        let missing: Vec<_> = snapshot
            .events
            .iter()
            .filter(|e| e.event == WorkerEventKind::Missing && e.worker != "flooder")
            .collect();
        assert!(missing.is_empty(), "went missing: {missing:?}");
        if snapshot.refused.malformed == FRAMES {
            break;
        }
        assert!(Instant::now() < deadline, "the flood was not read in time");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    feeding.await.expect("the feeder");
}

// Two threads, as the master has: the UI asks while the master decodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_is_answered_while_slow_frames_decode() {
    const FRAMES: u64 = 12;
    let mut fleet = two_workers_running_ten().await;
    let feeding = flood_slow_frames(&mut fleet, FRAMES).await;
    // A snapshot asked while slow frames wait is answered at once (at
    // worst after the frame in hand), not after the queue.
    let mut seen = fleet.feeder.snapshot().await.refused.malformed;
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen < FRAMES {
        assert!(Instant::now() < deadline, "the flood was not read in time");
        let now = fleet.feeder.snapshot().await.refused.malformed;
        assert!(
            now <= seen + 1,
            "a snapshot waited for {} slow frames",
            now - seen
        );
        seen = now;
    }
    feeding.await.expect("the feeder");
}

/// The arrival rate of a spawn to each worker, with its users.
async fn rate_shares(fleet: &mut Fleet, workers: usize) -> HashMap<String, (u64, f64)> {
    let mut shares = HashMap::new();
    while shares.len() < workers {
        let (to, spawn) = fleet.expect(|_, m| spawned(m).is_some()).await;
        let ToWorker::Spawn(spawn) = spawn else {
            unreachable!("expect returned a spawn")
        };
        let rate = spawn.arrival_rate.expect("a share of the rate");
        shares.insert(to, (spawn.user_count(), rate));
    }
    shares
}

#[tokio::test]
async fn the_arrival_rate_is_split_by_users_and_again_when_a_worker_joins() {
    let mut config = config();
    config.arrival_rate = Some(300.0);
    let mut fleet = Fleet::start(config);
    fleet.join("w1").await;
    fleet.join("w2").await;
    fleet.swarm(10, None).await;
    let shares = rate_shares(&mut fleet, 2).await;
    assert_eq!(shares["w1"], (5, 150.0));
    assert_eq!(shares["w2"], (5, 150.0));
    fleet.join("w3").await;
    let shares = rate_shares(&mut fleet, 3).await;
    let total: f64 = shares.values().map(|(_, rate)| rate).sum();
    assert!((total - 300.0).abs() < 1e-9, "{shares:?}");
    for (users, rate) in shares.values() {
        assert!((rate - 30.0 * *users as f64).abs() < 1e-9, "{shares:?}");
    }
    assert_eq!(fleet.feeder.snapshot().await.arrival_rate, Some(300.0));
    // An edit to 0: the closed model, no share sent.
    let request = SwarmRequest {
        arrival_rate: Some(0.0),
        ..closed_request(10)
    };
    fleet.handle().swarm(request).await.expect("the edit");
    let (_, spawn) = fleet.expect(|_, m| spawned(m).is_some()).await;
    let ToWorker::Spawn(spawn) = spawn else {
        unreachable!("expect returned a spawn")
    };
    assert_eq!(spawn.arrival_rate, None);
    assert_eq!(fleet.feeder.snapshot().await.arrival_rate, None);
    // A rate no run can have is refused, naming the field.
    let refused = fleet
        .handle()
        .swarm(SwarmRequest {
            arrival_rate: Some(f64::INFINITY),
            ..closed_request(10)
        })
        .await
        .expect_err("refused");
    assert!(refused.to_string().contains("arrival_rate"), "{refused}");
}

fn closed_request(user_count: u64) -> SwarmRequest {
    SwarmRequest {
        user_count,
        spawn_rate: 1000.0,
        host: None,
        run_time: None,
        co_mitigation: None,
        arrival_rate: None,
        user_classes: None,
    }
}

#[tokio::test]
async fn dropped_iterations_count_once_and_reset_with_the_stats() {
    let mut fleet = two_workers_running_ten().await;
    let feeder = fleet.feeder.clone();
    let dropped = |seq: u64, n: u64| {
        let mut report = report_of(1);
        report.seq = Some(seq);
        report.dropped_iterations = n;
        ToMaster::Stats(Box::new(report))
    };
    feeder.feed("w1", dropped(1, 7)).await;
    // Sent again after a blip: counted once.
    feeder.feed("w1", dropped(1, 7)).await;
    feeder.feed("w1", dropped(2, 3)).await;
    let snapshot = fleet
        .wait_for("the reports merged", |s| s.stats.total.num_requests >= 2)
        .await;
    assert_eq!(snapshot.stats.total.num_requests, 2);
    assert_eq!(snapshot.stats.dropped_iterations, 10);
    feeder.feed("w2", dropped(1, u64::MAX)).await;
    let snapshot = fleet
        .wait_for("w2's report merged", |s| s.stats.total.num_requests >= 3)
        .await;
    assert_eq!(snapshot.stats.dropped_iterations, u64::MAX, "saturating");
    fleet.handle().reset_stats().await.expect("reset");
    feeder.feed("w1", dropped(3, 5)).await;
    let snapshot = fleet
        .wait_for("a report after the reset", |s| {
            s.stats.total.num_requests >= 1
        })
        .await;
    assert_eq!(snapshot.stats.dropped_iterations, 5);
    fleet
        .expect(|to, m| to == "w1" && matches!(m, ToWorker::Heartbeat { stats_seq: Some(3) }))
        .await;
}
