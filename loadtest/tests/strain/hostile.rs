//! The hostile-peer acceptance suite: one test per class of attack on the
//! master's port, each against a live swarm — nginx as the target, a real
//! `loadtest master` with its web UI, and two real `loadtest worker`s
//! running users — with a [`Watcher`] sampling the master about every
//! 100 ms all through the attack.
//!
//! Every test shows three things, throughout its attack:
//! (a) the attack changes no number: once the run stops, the master's
//!     request total is nginx's access-log count, exactly;
//! (b) the real workers are never marked missing (nor dropped from the
//!     list), and never find the master silent;
//! (c) the master's resident memory stays within a bound stated as a
//!     named constant with its reason, and `/stats/requests` answers
//!     within [`ANSWER_LIMIT`].
//! Each also waits for the positive signal that its attack had its chance
//! (a refusal counter reaching what was sent, a log line, a closed
//! socket) before it judges, and prints what it measured as one
//! `[figures]` line.
//!
//! No join secret anywhere: the master speaks ZMTP's NULL mechanism, as
//! Locust's does, so a peer that joins properly under its own name IS
//! admitted (only a secret would stop it). What these tests hold the
//! master to is that such a peer speaks only for itself, and that nothing
//! any peer sends makes the master hold more than its bounds.
//!
//! The tests take turns ([`Rig::start`] takes the strain group's turn,
//! [`crate::take_turn`]): each strains the master's memory, descriptors or
//! CPU on a two-core machine, and one attack's load would blur another's
//! figures.

mod connections;
mod floods;
mod forgery;
mod payloads;

use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use harness::zmtp::RawPeer;
use harness::{
    loadtest, node_id, wait_until, Api, Nginx, NginxOptions, Process, TempDir, Watched, Watcher,
};
use swarm::api::{Refusals, RunState};
use swarm::protocol::{Heartbeat, ToMaster, ToWorker, WorkerState, LOCUST_COMPAT_VERSION};

/// Users the two real workers run through every attack.
const USERS: u64 = 10;
/// A pause between a user's requests: load enough to count, light on
/// two cores.
const WORKER_WAIT: &[&str] = &["--wait", "0.02:0.08"];
/// The slowest `/stats/requests` answer accepted during an attack: the
/// page polls every 2 s, and an operator watching a run notices a second.
const ANSWER_LIMIT: Duration = Duration::from_secs(1);
/// How long a raw peer waits for the master's `ack` to its `client_ready`.
const ACK_LIMIT: Duration = Duration::from_secs(10);

/// What a test measured after the run stopped.
#[derive(Debug)]
struct Counted {
    /// The master's `Aggregated` request count.
    master: u64,
    /// Lines in nginx's access log.
    nginx: u64,
    /// How long `POST /stop` took to answer.
    stop_took: Duration,
    /// When `/stop` was asked and when it answered, epoch seconds (as
    /// nginx's `$msec`).
    stop_asked_at: f64,
    /// See `stop_asked_at`.
    stop_answered_at: f64,
}

/// nginx, a master with its UI and two real workers running [`USERS`]
/// users; stopped (in this order) when dropped.
struct Rig {
    workers: Vec<Process>,
    master: Process,
    nginx: Nginx,
    dir: TempDir,
    port: u16,
    api: String,
    client: Api,
    /// The real workers' node ids.
    ids: Vec<String>,
    attack: &'static str,
    started: Instant,
    _turn: MutexGuard<'static, ()>,
}

impl Rig {
    /// Takes this test's turn, starts everything, and returns once both
    /// workers run their users and requests are counted.
    fn start(attack: &'static str) -> Rig {
        Rig::start_with(attack, 2, USERS)
    }

    /// [`Rig::start`] with `workers` real workers running `users` users.
    fn start_with(attack: &'static str, workers: usize, users: u64) -> Rig {
        let turn = crate::take_turn();
        let started = Instant::now();
        let nginx = Nginx::start(NginxOptions::default());
        let dir = TempDir::new(&attack.replace(' ', "-"));
        let (master, port, api) = loadtest!().master_with_ui(&dir, &["--host", &nginx.url()]);
        let mut processes: Vec<Process> = (0..workers)
            .map(|_| loadtest!().worker(&dir, port, WORKER_WAIT))
            .collect();
        let ids: Vec<String> = processes.iter_mut().map(node_id).collect();
        let client = Api::new(&api);
        wait_until(Duration::from_secs(20), "the real workers to join", || {
            (client.requests().worker_count == workers).then_some(())
        });
        client.swarm(users, users as f64);
        wait_until(
            Duration::from_secs(20),
            "the users to run and requests to be counted",
            || {
                let s = client.requests();
                (s.user_count == users && harness::total_requests(&s) > 50).then_some(())
            },
        );
        // Real workers never earn a refusal (a heartbeat before their
        // join would: the worker waits for its client_ready).
        let refused = client.requests().refused_frames;
        assert_eq!(
            refused,
            Refusals::default(),
            "{attack}: the master refused the real workers' frames"
        );
        Rig {
            workers: processes,
            master,
            nginx,
            dir,
            port,
            api,
            client,
            ids,
            attack,
            started,
            _turn: turn,
        }
    }

    /// A watcher of this master that requires the real workers.
    fn watch(&self) -> Watcher {
        Watcher::start(&self.api, self.master.pid(), &self.ids)
    }

    /// The master's refusal counters now.
    fn refused(&self) -> Refusals {
        self.client.requests().refused_frames
    }

    /// Waits (at most 30 s) until the refusal counters satisfy `reached`:
    /// the master has read what the attack sent.
    fn wait_refused(&self, what: &str, reached: impl Fn(&Refusals) -> bool) -> Refusals {
        let mut last = Refusals::default();
        let found = harness::try_wait_until(Duration::from_secs(30), || {
            last = self.refused();
            reached(&last).then(|| last.clone())
        });
        found.unwrap_or_else(|| {
            panic!(
                "{}: the master never counted {what}: refused_frames {last:?}\n{}",
                self.attack,
                self.master.logs()
            )
        })
    }

    /// Waits until exactly `count` workers are counted.
    fn wait_workers(&self, count: usize) {
        wait_until(
            Duration::from_secs(15),
            format!("{count} workers counted"),
            || (self.client.requests().worker_count == count).then_some(()),
        );
    }

    /// A raw peer that joined under `id` (NULL mode admits it) and was
    /// acknowledged.
    fn join_raw(&self, id: &str, version: &str) -> RawPeer {
        let mut peer = RawPeer::connect(self.port, id.as_bytes()).expect("a raw peer connects");
        let ready = ToMaster::ClientReady {
            version: version.to_string(),
        };
        peer.send(&ready.to_wire(id)).expect("client_ready sent");
        peer.handshake(ACK_LIMIT).expect("the master's handshake");
        let deadline = Instant::now() + ACK_LIMIT;
        while Instant::now() < deadline {
            let message = peer.recv(Duration::from_millis(200)).expect("still open");
            if let Some(bytes) = message {
                if matches!(ToWorker::from_wire(&bytes), Ok(ToWorker::Ack { .. })) {
                    return peer;
                }
            }
        }
        panic!("{}: no ack for {id} within {ACK_LIMIT:?}", self.attack)
    }

    /// Stops the run (`POST /stop`, answered once every worker stopped and
    /// reported its last numbers) and counts: the master's total, nginx's.
    fn stop_and_count(&self) -> Counted {
        let (asked, stop_asked_at) = (Instant::now(), harness::epoch_now());
        self.client.stop();
        let (stop_took, stop_answered_at) = (asked.elapsed(), harness::epoch_now());
        wait_until(Duration::from_secs(15), "the run to stop", || {
            (self.client.requests().state == RunState::Stopped).then_some(())
        });
        let master = self.client.total_requests();
        let nginx = self.nginx.count_requests() as u64;
        Counted {
            master,
            nginx,
            stop_took,
            stop_asked_at,
            stop_answered_at,
        }
    }

    /// Asserts what every attack must leave standing — (a), (b) and (c) of
    /// the module's doc, with `rss_bound_kib` as this attack's memory
    /// bound — after printing the figures with `extra` ones.
    fn assert_held(&self, watched: &Watched, counted: &Counted, rss_bound_kib: u64, extra: &str) {
        let refused = watched
            .last
            .as_ref()
            .map(|s| s.refused_frames.clone())
            .unwrap_or_default();
        println!(
            "[figures] {}: RSS +{:.1} MiB (bound +{:.1}) | slowest answer {} ms | requests master {} nginx {} | stop answered in {} ms | refused {refused:?} | {extra} | took {:.1} s",
            self.attack,
            watched.rss_growth_kib() as f64 / 1024.0,
            rss_bound_kib as f64 / 1024.0,
            watched.slowest.as_millis(),
            counted.master,
            counted.nginx,
            counted.stop_took.as_millis(),
            self.started.elapsed().as_secs_f64(),
        );
        println!("[watch] {}: {}", self.attack, watched.summary());
        let logs = || self.master.logs();
        assert_eq!(
            counted.master,
            counted.nginx,
            "{}: the master's total is not nginx's count\n{}",
            self.attack,
            logs()
        );
        assert!(
            watched.missing.is_empty(),
            "{}: a real worker went missing: {:?}\n{}",
            self.attack,
            watched.missing,
            logs()
        );
        // Nor did they find the master silent (they stop their users
        // then) or lose it.
        for worker in &self.workers {
            let log = harness::strip_ansi(&worker.stderr());
            for line in ["no word from the master", "lost the master"] {
                assert!(
                    !log.contains(line),
                    "{}: {} logged {line:?}:\n{log}",
                    self.attack,
                    worker.name()
                );
            }
        }
        assert!(
            watched.failures.is_empty(),
            "{}: /stats/requests failed: {:?}",
            self.attack,
            watched.failures
        );
        assert!(
            watched.slowest <= ANSWER_LIMIT,
            "{}: /stats/requests took {:?} at {:.1} s (limit {ANSWER_LIMIT:?})",
            self.attack,
            watched.slowest,
            watched.slowest_at
        );
        assert!(
            watched.rss_growth_kib() <= rss_bound_kib,
            "{}: the master's memory grew by {} KiB (bound {rss_bound_kib} KiB)",
            self.attack,
            watched.rss_growth_kib()
        );
    }
}

/// A node id in Locust's form, `tag_<32 hex>`, new each call.
fn peer_id(tag: &str) -> String {
    let fresh = swarm::protocol::new_node_id();
    let hex = fresh.rsplit('_').next().unwrap_or("0");
    format!("{tag}_{hex}")
}

/// `client_ready` from `id` with Locust's version.
fn client_ready(id: &str) -> Vec<u8> {
    ToMaster::ClientReady {
        version: LOCUST_COMPAT_VERSION.to_string(),
    }
    .to_wire(id)
}

/// A worker's heartbeat from `id`.
fn heartbeat(id: &str, state: WorkerState) -> Vec<u8> {
    ToMaster::Heartbeat(Heartbeat {
        state,
        cpu_usage: 5.0,
        memory_usage: 40 << 20,
        cpu_cores: Some(1),
    })
    .to_wire(id)
}

/// `quit` from `id`, as a Locust worker sends it.
fn quit(id: &str) -> Vec<u8> {
    ToMaster::Quit { reason: None }.to_wire(id)
}

/// KiB in `mib` MiB, for the bounds.
const fn mib(mib: u64) -> u64 {
    mib * 1024
}
