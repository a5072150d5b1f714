//! Connections by the thousand: idle ones that handshake and say nothing,
//! and a fleet of simulated workers joining just before a stop. NULL
//! mode, no join secret (see the suite's doc).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use harness::zmtp;
use harness::{loadtest, node_id, strip_ansi, wait_until};
use swarm::protocol::transport::{connect_worker, RouterLimits};
use swarm::protocol::{ToMaster, ToWorker, WorkerState, LOCUST_COMPAT_VERSION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{heartbeat, mib, peer_id, Rig, WORKER_WAIT};

// ---------------------------------------------------------------------------
// 8. Idle connection floods
// ---------------------------------------------------------------------------

/// Where the idle connections come from: not the master's address, so
/// the real workers' (127.0.0.1) is a different source.
const IDLE_SOURCE: [u8; 4] = [127, 0, 0, 2];
/// Connections per wave, and waves (the second while the first's are
/// still held).
const IDLE_WAVE: usize = 1_500;
/// See [`IDLE_WAVE`].
const IDLE_WAVES: usize = 2;
/// The pause between waves: well inside the join timeout.
const WAVE_GAP: Duration = Duration::from_millis(2_500);
/// How late past the join timeout the close may come (a busy 2-core
/// machine), and how soon a connection over the cap must be closed.
const CLOSE_SLACK: Duration = Duration::from_millis(1_500);
/// See [`CLOSE_SLACK`].
const AT_ONCE: Duration = Duration::from_secs(1);
/// Descriptors the master may open above its first sample besides the
/// unjoined connections it keeps from one source: a new worker's, and a
/// few accepted for a moment before they are closed at once.
const FD_SLACK: usize = 64;
/// Memory the idle connections may cost: 256 of them held, each a task,
/// its queues and an 8 KiB read buffer (about 30 KiB in all, 8 MiB for
/// the 256), and the new worker's.
const IDLE_RSS: u64 = mib(16);

/// What became of one idle connection.
#[derive(Debug)]
struct Idle {
    /// The master greeted it (it was kept, not closed at once).
    greeted: bool,
    /// How long after its connect the master closed it.
    closed_after: Option<Duration>,
    error: Option<String>,
}

/// One connection from `source` that handshakes and then says nothing,
/// until the master closes it (at most 10 s). Times count from the
/// connection's establishment (a burst of connects overflows the listen
/// backlog, and the kernel retries those a second later).
async fn idle_connection(source: IpAddr, master: SocketAddr, held: Arc<AtomicUsize>) -> Idle {
    let mut idle = Idle {
        greeted: false,
        closed_after: None,
        error: None,
    };
    let connected = async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(source, 0))?;
        socket.connect(master).await
    };
    let mut stream = match tokio::time::timeout(Duration::from_secs(10), connected).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            idle.error = Some(format!("connect: {e}"));
            return idle;
        }
        Err(_) => {
            idle.error = Some("no connection within 10 s".into());
            return idle;
        }
    };
    let started = Instant::now();
    let mut hello = zmtp::greeting().to_vec();
    hello.extend(zmtp::ready(peer_id("idle").as_bytes()));
    // A write error means it is closed already: read to see.
    let _ = stream.write_all(&hello).await;
    let mut got = 0usize;
    let mut buf = [0u8; 1024];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if got < 64 && got + n >= 64 {
                        held.fetch_add(1, Ordering::SeqCst);
                    }
                    got += n;
                }
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), read_all)
        .await
        .is_ok()
    {
        idle.closed_after = Some(started.elapsed());
    } else {
        idle.error = Some("still open after 10 s".into());
    }
    idle.greeted = got >= 64;
    if idle.greeted {
        held.fetch_sub(1, Ordering::SeqCst);
    }
    idle
}

/// 8. Idle connection floods: two waves of 1,500 connections from
///    127.0.0.2 (the master binds 127.0.0.1) handshake and say nothing.
///    The master keeps 256 (its cap per source) and closes the others at
///    once; those it kept it closes when the join timeout (5 s) runs out.
///    Its open descriptors stay bounded, and a new real worker joins from
///    127.0.0.1 while the flood holds the cap.
#[test]
fn idle_connection_floods_are_capped() {
    raise_open_files(2 * IDLE_WAVE as u64 + 1_024);
    let limits = RouterLimits::default();
    let (per_source, join_timeout) = (limits.unjoined_per_source, limits.join_timeout);
    let fd_bound = per_source + FD_SLACK;
    let mut rig = Rig::start("idle connections");
    let watcher = rig.watch();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let master = harness::loopback(rig.port);
    let source = IpAddr::from(IDLE_SOURCE);
    let held = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    let started = Instant::now();
    for wave in 0..IDLE_WAVES {
        for _ in 0..IDLE_WAVE {
            tasks.push(runtime.spawn(idle_connection(source, master, held.clone())));
        }
        if wave == 0 {
            // While the first wave holds the cap, a new worker joins.
            wait_until(Duration::from_secs(5), "the cap to fill", || {
                (held.load(Ordering::SeqCst) >= per_source).then_some(())
            });
            let mut newcomer = loadtest!().worker(&rig.dir, rig.port, WORKER_WAIT);
            let id = node_id(&mut newcomer);
            wait_until(Duration::from_secs(10), "the new worker to join", || {
                let s = rig.client.requests();
                s.workers.iter().any(|w| w.id == id).then_some(())
            });
            let held_then = held.load(Ordering::SeqCst);
            println!(
                "new worker joined {:.1} s into the flood, with {held_then} idle connections held",
                started.elapsed().as_secs_f64()
            );
            assert!(held_then > 0, "the flood let go before the worker joined");
            watcher.require_worker(&id);
            rig.workers.push(newcomer);
            if let Some(rest) = WAVE_GAP.checked_sub(started.elapsed()) {
                std::thread::sleep(rest);
            }
        }
    }
    let idles: Vec<Idle> = runtime.block_on(async {
        let mut idles = Vec::new();
        for task in tasks {
            idles.push(task.await.expect("an idle connection's task"));
        }
        idles
    });
    let flood = watcher.now();
    let counted = rig.stop_and_count();
    let watched = watcher.finish();

    let errors: Vec<&String> = idles.iter().filter_map(|i| i.error.as_ref()).collect();
    let kept: Vec<&Idle> = idles.iter().filter(|i| i.greeted).collect();
    let at_once: Vec<&Idle> = idles.iter().filter(|i| !i.greeted).collect();
    let slowest = |list: &[&Idle]| {
        list.iter()
            .filter_map(|i| i.closed_after)
            .max()
            .unwrap_or_default()
    };
    let fastest_kept = kept
        .iter()
        .filter_map(|i| i.closed_after)
        .min()
        .unwrap_or_default();
    let extra = format!(
        "{} connections from {source}: {} kept (closed {:.1}–{:.1} s after connecting), {} closed at once (slowest {} ms); master fds {} → peak {} (bound +{fd_bound}); {} errors",
        idles.len(),
        kept.len(),
        fastest_kept.as_secs_f64(),
        slowest(&kept).as_secs_f64(),
        at_once.len(),
        slowest(&at_once).as_millis(),
        flood.first_fds,
        flood.peak_fds,
        errors.len()
    );
    rig.assert_held(&watched, &counted, IDLE_RSS, &extra);
    assert!(errors.is_empty(), "idle connections failed: {errors:?}");
    assert!(
        !kept.is_empty() && kept.len() <= IDLE_WAVES * per_source,
        "{} kept",
        kept.len()
    );
    assert!(
        at_once.len() >= IDLE_WAVES * IDLE_WAVE - IDLE_WAVES * per_source,
        "only {} closed at once",
        at_once.len()
    );
    assert!(slowest(&at_once) <= AT_ONCE);
    assert!(
        fastest_kept >= join_timeout - Duration::from_millis(100)
            && slowest(&kept) <= join_timeout + CLOSE_SLACK,
        "kept connections closed {fastest_kept:?}..{:?} after connecting",
        slowest(&kept)
    );
    assert!(
        flood.peak_fds <= flood.first_fds + fd_bound,
        "the master held {} descriptors",
        flood.peak_fds
    );
    let log = strip_ansi(&rig.master.stderr());
    for line in ["at once", "did not join (client_ready) within"] {
        assert!(log.contains(line), "the master never logged {line:?}");
    }
}

/// Raises this process's soft limit on open files to its hard limit when
/// it is below `needed` (the idle flood holds thousands of sockets).
fn raise_open_files(needed: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the one struct given.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) };
    assert_eq!(got, 0, "getrlimit(RLIMIT_NOFILE) failed");
    if limit.rlim_cur >= needed {
        return;
    }
    assert!(
        limit.rlim_max >= needed,
        "the hard open-file limit ({}) is below the {needed} this test needs",
        limit.rlim_max
    );
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: as above.
    let set = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) };
    assert_eq!(set, 0, "setrlimit(RLIMIT_NOFILE) failed");
}

// ---------------------------------------------------------------------------
// 10. A join storm, then a stop
// ---------------------------------------------------------------------------

/// Simulated workers in the storm.
const SIMULATED: usize = 200;
/// Users the real worker runs once the swarm is spread over everyone.
const REAL_USERS: u64 = 20;
/// How soon after `/stop` answers the real worker must have stopped.
const STOPPED_WITHIN: f64 = 1.0;
/// Memory 200 simulated workers may cost: a registry entry, a route and
/// two queues each, and their heartbeats — a few MiB.
const SIMULATED_RSS: u64 = mib(32);

/// One simulated worker: joins, heartbeats every second, answers a stop
/// with `client_stopped`, until `done` (at most a minute).
async fn simulated(port: u16, index: usize, joined: Arc<AtomicUsize>, done: Arc<AtomicBool>) {
    let id = peer_id(&format!("sim{index:03}"));
    let Ok(mut link) = connect_worker("127.0.0.1", port, &id, None) else {
        return;
    };
    if link.connected.wait_for(|up| *up > 0).await.is_err() {
        return;
    }
    let send = |message: &ToMaster| {
        let _ = link.outgoing.try_send(Bytes::from(message.to_wire(&id)));
    };
    send(&ToMaster::ClientReady {
        version: LOCUST_COMPAT_VERSION.to_string(),
    });
    let started = Instant::now();
    let mut state = WorkerState::Ready;
    let mut beat = tokio::time::interval(Duration::from_secs(1));
    while !done.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(60) {
        tokio::select! {
            frame = link.incoming.recv() => {
                let Some(frame) = frame else { return };
                match ToWorker::from_wire(&frame) {
                    Ok(ToWorker::Ack { .. }) => {
                        joined.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(ToWorker::Stop) => {
                        state = WorkerState::Ready;
                        send(&ToMaster::ClientStopped);
                    }
                    Ok(ToWorker::Spawn(_)) => state = WorkerState::Running,
                    _ => {}
                }
            }
            _ = beat.tick() => {
                let _ = link.outgoing.try_send(Bytes::from(heartbeat(&id, state)));
            }
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

/// 10. A join storm, then a stop: one real worker runs users; 200
///     simulated workers (the worker's own transport: `client_ready`,
///     heartbeats every second) join at once, the users are spread over
///     all 201, and the run is stopped. The real worker stops sending
///     requests within 1 s of `/stop`'s answer (nginx's log, by its
///     User-Agent), and the count is nginx's.
#[test]
fn a_stop_after_a_join_storm_stops_the_real_worker() {
    let rig = Rig::start_with("join storm and stop", 1, REAL_USERS);
    let real = rig.ids[0].clone();
    let watcher = rig.watch();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let joined = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let sims: Vec<_> = (0..SIMULATED)
        .map(|i| runtime.spawn(simulated(rig.port, i, joined.clone(), done.clone())))
        .collect();
    wait_until(
        Duration::from_secs(20),
        "every simulated worker to join",
        || (joined.load(Ordering::SeqCst) == SIMULATED).then_some(()),
    );
    let storm_took = started.elapsed();
    rig.wait_workers(SIMULATED + 1);
    // Spread the users over everyone: the real worker gets its share back.
    let everyone = REAL_USERS * (SIMULATED as u64 + 1);
    rig.client.swarm(everyone, everyone as f64);
    wait_until(
        Duration::from_secs(20),
        "the real worker to run its share",
        || {
            let s = rig.client.requests();
            let users = s
                .workers
                .iter()
                .find(|w| w.id == real)
                .map(|w| w.user_count);
            (users == Some(REAL_USERS)).then_some(())
        },
    );
    let counted = rig.stop_and_count();
    let (asked, answered) = (counted.stop_asked_at, counted.stop_answered_at);
    done.store(true, Ordering::SeqCst);
    runtime.block_on(async {
        for sim in sims {
            let _ = sim.await;
        }
    });
    let watched = watcher.finish();

    let log = rig.nginx.access_log();
    let mine: Vec<f64> = log
        .iter()
        .filter(|l| l.user_agent.contains(&real))
        .map(|l| l.time)
        .collect();
    let last = mine.iter().copied().fold(0.0, f64::max);
    let after_answer = mine
        .iter()
        .filter(|t| **t > answered + STOPPED_WITHIN)
        .count();
    let extra = format!(
        "{SIMULATED} simulated workers joined in {:.2} s; {everyone} users, {REAL_USERS} on the real worker; /stop answered in {} ms; the real worker's last request {:+.3} s after /stop was asked, {:+.3} s after its answer; {} of its {} requests more than {STOPPED_WITHIN} s after the answer",
        storm_took.as_secs_f64(),
        counted.stop_took.as_millis(),
        last - asked,
        last - answered,
        after_answer,
        mine.len()
    );
    rig.assert_held(&watched, &counted, SIMULATED_RSS, &extra);
    assert!(
        !mine.is_empty(),
        "nginx saw no request from the real worker"
    );
    assert_eq!(
        after_answer, 0,
        "the real worker kept sending after the stop (last {last}, answer {answered})"
    );
}
