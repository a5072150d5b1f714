//! A peer that floods the master's port and never reads does not block the
//! master: nginx, a `loadtest master` with its UI, two real workers running
//! 10 users, and a raw TCP peer speaking ZMTP 3.0 by hand that joins (a
//! peer that does not is closed within seconds) and then writes 400,000
//! heartbeats without reading a byte. Each earns a heartbeat reply the
//! peer never takes: the master must drop those once the peer's queue is
//! full, and keep serving its API and its real workers meanwhile. Then a
//! frame above 8 MiB closes that peer's connection only. No join secret:
//! the master speaks NULL, as Locust's does.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use harness::zmtp::{frame, RawPeer};
use harness::*;
use harness::{try_http, Nginx, NginxOptions, TempDir};
use swarm::api::NodeState;
use swarm::protocol::{Heartbeat, ToMaster, WorkerState};

/// Heartbeat frames the flooding peer writes.
const FLOOD_FRAMES: u64 = 400_000;
/// Frames per `write_all`.
const BATCH: u64 = 1_000;
/// The flood gives up writing after this long (a master that stops
/// reading would otherwise block it forever).
const FLOOD_LIMIT: Duration = Duration::from_secs(60);
/// The slowest `/stats/requests` answer accepted.
const ANSWER_LIMIT: Duration = Duration::from_secs(2);
/// The largest frame the master accepts.
const MAX_FRAME: u64 = 8 << 20;
const USERS: u32 = 10;
const WORKER_WAIT: &[&str] = &["--wait", "0.02:0.08"];

/// A raw peer (harness::zmtp): connected, greeted, READY sent. Reads
/// nothing.
fn raw_peer(port: u16, node_id: &str) -> io::Result<TcpStream> {
    RawPeer::connect(port, node_id.as_bytes()).map(RawPeer::into_stream)
}

fn flood_node_id(tag: &str) -> String {
    format!(
        "{tag}_{:032x}",
        u128::from(epoch_now().to_bits()) * 0x9E37_79B9
    )
}

/// What the flooding thread did.
#[derive(Debug)]
struct Flood {
    written: u64,
    took: Duration,
    error: Option<String>,
}

// ---------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------

#[test]
fn a_peer_that_floods_without_reading_never_blocks_the_master() {
    let _turn = crate::take_turn();
    let nginx = Nginx::start(NginxOptions::default());
    let dir = TempDir::new("flood");
    let (mut master, port, api) = loadtest!().master_with_ui(&dir, &["--host", &nginx.url()]);
    let mut w1 = loadtest!().worker(&dir, port, WORKER_WAIT);
    let mut w2 = loadtest!().worker(&dir, port, WORKER_WAIT);
    let ids = [node_id(&mut w1), node_id(&mut w2)];
    wait_until(Duration::from_secs(30), "both workers to join", || {
        (stats(&api).worker_count == 2).then_some(())
    });
    start_swarm(&api, USERS, USERS);
    wait_until(
        Duration::from_secs(30),
        "10 users running, requests counted",
        || {
            let s = stats(&api);
            (s.user_count == u64::from(USERS) && total_requests(&s) > 100).then_some(())
        },
    );

    // The flood, from a thread; the stream stays open (unread) until the
    // checks are done, so the master's replies to it stay stuck.
    let flood_id = flood_node_id("flood");
    let written = Arc::new(AtomicU64::new(0));
    let release = Arc::new(AtomicBool::new(false));
    let flood_done = Arc::new(AtomicBool::new(false));
    let flood = {
        let (written, release, done, id) = (
            written.clone(),
            release.clone(),
            flood_done.clone(),
            flood_id.clone(),
        );
        thread::spawn(move || {
            let result = run_flood(port, &id, &written);
            done.store(true, Ordering::SeqCst);
            // Hold the connection (never reading) until told; bounded.
            let held = Instant::now();
            while !release.load(Ordering::SeqCst) && held.elapsed() < Duration::from_secs(90) {
                thread::sleep(Duration::from_millis(50));
            }
            // Leave as a worker does, so the count goes back to the two.
            if let Some(mut stream) = result.1 {
                let quit = ToMaster::Quit { reason: None }.to_wire(&id);
                let _ = stream.write_all(&frame(0x00, &quit));
            }
            result.0
        })
    };

    // Poll through the flood and until the workers have reported three
    // more times after it (≈ 4.5 s: longer than the 3 s a starved worker
    // needs to be marked missing). The flooding peer counts as a third
    // worker while it sends (and goes missing once it stops).
    let mut slowest = Duration::ZERO;
    let mut polls = 0;
    let mut problems: Vec<String> = Vec::new();
    let mut last_total = 0;
    let mut last_growth = Instant::now();
    let mut growths_after_flood = 0;
    let started = Instant::now();
    let url = format!("{api}/stats/requests");
    while started.elapsed() < Duration::from_secs(90) {
        let asked = Instant::now();
        let answer = try_http("GET", &url, None);
        let took = asked.elapsed();
        slowest = slowest.max(took);
        polls += 1;
        let at = format!("{:.1} s", started.elapsed().as_secs_f64());
        if took > ANSWER_LIMIT {
            problems.push(format!("{at}: /stats/requests took {took:?}"));
        }
        match answer {
            Ok((200, body)) => match serde_json::from_str::<swarm::api::StatsRequests>(&body) {
                Ok(s) => {
                    for id in &ids {
                        let state = worker_entry(&s, id).map(|w| w.state);
                        if state.is_none_or(|st| st == NodeState::Missing) {
                            problems.push(format!("{at}: real worker {id} is {state:?}"));
                        }
                    }
                    if !(2..=3).contains(&s.worker_count) {
                        problems.push(format!(
                            "{at}: worker_count {} ({:?})",
                            s.worker_count,
                            worker_states(&s)
                        ));
                    }
                    let total = total_requests(&s);
                    if total > last_total {
                        last_total = total;
                        last_growth = Instant::now();
                        if flood_done.load(Ordering::SeqCst) {
                            growths_after_flood += 1;
                        }
                    } else if last_growth.elapsed() > Duration::from_millis(4500) {
                        problems.push(format!("{at}: no new requests counted for 4.5 s"));
                        last_growth = Instant::now();
                    }
                }
                Err(e) => problems.push(format!("{at}: not JSON ({e}): {body}")),
            },
            Ok((status, body)) => problems.push(format!("{at}: {status} {body}")),
            Err(e) => problems.push(format!("{at}: {e}")),
        }
        if flood_done.load(Ordering::SeqCst) && growths_after_flood >= 3 {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    let flood_running = !flood_done.load(Ordering::SeqCst);
    release.store(true, Ordering::SeqCst);
    let flood = flood.join().expect("the flood thread");
    println!(
        "flood: {} of {FLOOD_FRAMES} heartbeats written in {:?} ({}); {polls} polls, slowest answer {slowest:?}; {growths_after_flood} stats reports after it",
        flood.written,
        flood.took,
        flood.error.as_deref().unwrap_or("no error"),
    );
    problems.truncate(30);
    println!("problems during the flood (first 30): {problems:#?}");
    assert!(
        !flood_running,
        "the flood did not end within 90 s ({} written)",
        written.load(Ordering::SeqCst)
    );
    assert!(
        slowest <= ANSWER_LIMIT,
        "the master's API stalled during the flood: slowest answer {slowest:?}"
    );
    assert!(
        problems.is_empty(),
        "during the flood:\n{}\n{}",
        problems.join("\n"),
        master.logs()
    );
    assert_eq!(
        flood.written, FLOOD_FRAMES,
        "the master kept reading the flooding peer ({:?})",
        flood.error
    );

    // After the flood: a frame above 8 MiB closes that connection only.
    let oversized = oversized_frame_closes(port);
    println!("oversized frame: {oversized:?}");
    let s = wait_until(
        Duration::from_secs(10),
        "the flooding peer to leave",
        || {
            let s = stats(&api);
            (s.worker_count == 2).then_some(s)
        },
    );
    let before = total_requests(&s);
    wait_until(
        Duration::from_secs(10),
        "the real workers to still count",
        || (total_requests(&stats(&api)) > before).then_some(()),
    );
    let closed_in = oversized.unwrap_or_else(|e| {
        panic!(
            "a frame above 8 MiB did not close its connection: {e}\n{}",
            master.logs()
        )
    });
    println!("the oversized peer was closed {closed_in:?} after its frame header");
    master.signal("INT");
    exit_code(&mut master, Duration::from_secs(20));
}

/// Writes FLOOD_FRAMES heartbeats from an unknown node, never reading.
/// Returns what it did and the stream (to keep it open).
fn run_flood(port: u16, node_id: &str, written: &AtomicU64) -> (Flood, Option<TcpStream>) {
    let started = Instant::now();
    let joined = raw_peer(port, node_id).and_then(|mut stream| {
        let ready = ToMaster::ClientReady {
            version: "2.47.0".into(),
        }
        .to_wire(node_id);
        stream.write_all(&frame(0x00, &ready))?;
        Ok(stream)
    });
    let mut stream = match joined {
        Ok(stream) => stream,
        Err(e) => {
            return (
                Flood {
                    written: 0,
                    took: started.elapsed(),
                    error: Some(format!("handshake: {e}")),
                },
                None,
            )
        }
    };
    let beat = ToMaster::Heartbeat(Heartbeat {
        state: WorkerState::Ready,
        cpu_usage: 1.0,
        memory_usage: 1,
        cpu_cores: None,
    })
    .to_wire(node_id);
    let one = frame(0x00, &beat);
    let batch: Vec<u8> = one.repeat(BATCH as usize);
    let mut error = None;
    while written.load(Ordering::SeqCst) < FLOOD_FRAMES {
        if started.elapsed() > FLOOD_LIMIT {
            error = Some(format!("gave up after {FLOOD_LIMIT:?}"));
            break;
        }
        if let Err(e) = stream.write_all(&batch) {
            error = Some(format!("write: {e}"));
            break;
        }
        written.fetch_add(BATCH, Ordering::SeqCst);
    }
    (
        Flood {
            written: written.load(Ordering::SeqCst),
            took: started.elapsed(),
            error,
        },
        Some(stream),
    )
}

/// A peer that sends a 9 MiB message frame: the master must close its
/// connection. Returns how long after the frame header that took.
fn oversized_frame_closes(port: u16) -> Result<Duration, String> {
    let id = flood_node_id("oversized");
    let mut stream = raw_peer(port, &id).map_err(|e| format!("handshake: {e}"))?;
    let size = MAX_FRAME + (1 << 20);
    let mut header = vec![0x02u8];
    header.extend_from_slice(&size.to_be_bytes());
    let sent_header = Instant::now();
    stream
        .write_all(&header)
        .map_err(|e| format!("frame header: {e}"))?;
    // The body too (a master may read it before refusing); a write error
    // means the master has already closed.
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..(size >> 20) {
        if stream.write_all(&chunk).is_err() {
            break;
        }
    }
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4096];
    // Read the master's greeting and whatever it sends until EOF; bounded.
    while sent_header.elapsed() < Duration::from_secs(10) {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(sent_header.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Ok(sent_header.elapsed()),
        }
    }
    Err("still open 10 s after the frame".into())
}
