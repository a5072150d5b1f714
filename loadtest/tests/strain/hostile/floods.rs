//! Floods: joins by the thousand from one address, and frames built to
//! be slow to decode. NULL mode, no join secret (see the suite's doc).

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use harness::zmtp::{self, message, RawPeer};
use harness::{strip_ansi, try_wait_until};
use swarm::master::{JOIN_BURST, JOIN_RATE};
use swarm::protocol::WorkerState;

use super::{client_ready, heartbeat, mib, peer_id, quit, Rig};

// ---------------------------------------------------------------------------
// 4. Join storms
// ---------------------------------------------------------------------------

/// Fresh connections in the storm, each with an identity of its own.
const STORM_CONNECTIONS: usize = 1_500;
/// Connections that say `client_ready` over and over.
const REPEATERS: usize = 2;
/// `client_ready`s per repeater, in one write.
const REPEATS: usize = 3_000;
/// The storm stops making connections after this long, however many it
/// made (a connect can wait a second when the listen backlog overflows).
const STORM_TIME: Duration = Duration::from_secs(20);
/// Memory a join storm may cost: the 1,500 storm connections the master
/// holds (joined or not yet timed out), about 30 KiB each with their
/// task, queues and 8 KiB read buffer — 45 MiB — and a registry entry and
/// an event per admitted join (NULL mode admits a peer that joins
/// properly; the rate bounds how many): 64 MiB.
const STORM_RSS: u64 = mib(64);
/// CPU seconds the master may spend on the storm: each admitted join
/// costs a log line, an event, an `ack` and a share of a coalesced
/// re-dispatch, each refused one a token-bucket check; 10,000 of them
/// must not cost the master more than a few seconds of one core (it
/// measures about 1 s here).
const STORM_CPU: f64 = 6.0;

/// 4. Join storms: two connections say `client_ready` 3,000 times each,
///    6,000 within milliseconds, and 1,500 fresh connections from the
///    same address say it once each. Joins past the source's rate (1,000
///    a second, burst 1,000) are refused and counted; those admitted are
///    peers NULL mode lets in (only a join secret stops a peer that joins
///    properly). The master's CPU and memory stay bounded, its UI
///    answers, and the real workers are never missing.
#[test]
fn join_storms_are_rate_limited() {
    let rig = Rig::start("join storm");
    let base = rig.refused();
    let joins_before = joins_logged(&rig);
    let watcher = rig.watch();
    let started = Instant::now();
    let mut peers = Vec::new();
    for i in 0..REPEATERS {
        let id = peer_id(&format!("repeater{i}"));
        let mut batch = Vec::new();
        for _ in 0..REPEATS {
            batch.extend(message(&client_ready(&id)));
        }
        let mut peer = RawPeer::connect(rig.port, id.as_bytes()).expect("connect");
        peer.write_raw(&batch).expect("the repeats");
        peers.push(peer);
    }
    let repeated_in = started.elapsed();
    // Connections past the cap on unjoined ones are closed at once: a
    // write may fail then.
    let mut failed_writes = 0;
    for i in 0..STORM_CONNECTIONS {
        if started.elapsed() > STORM_TIME {
            break;
        }
        let id = peer_id(&format!("storm{i}"));
        match RawPeer::connect(rig.port, id.as_bytes()) {
            Ok(mut peer) => match peer.send(&client_ready(&id)) {
                Ok(()) => peers.push(peer),
                Err(_) => failed_writes += 1,
            },
            Err(e) if e.kind() == ErrorKind::ConnectionReset => failed_writes += 1,
            Err(e) => panic!("storm connection {i}: {e}"),
        }
    }
    let sent_for = started.elapsed();
    // The storm had its chance once every repeat was read, and the
    // counts of joins have settled.
    let sent = REPEATERS * REPEATS + peers.len() - REPEATERS + failed_writes;
    let mut last = (0, 0);
    let mut stable_since = Instant::now();
    let settled = try_wait_until(Duration::from_secs(20), || {
        let refused = rig.refused().join_rate - base.join_rate;
        let admitted = joins_logged(&rig) - joins_before;
        if (refused, admitted) != last {
            (last, stable_since) = ((refused, admitted), Instant::now());
        }
        let read_all_repeats = refused + admitted as u64 >= (REPEATERS * REPEATS) as u64;
        (read_all_repeats && stable_since.elapsed() > Duration::from_secs(1)).then_some(last)
    });
    let (refused, admitted) = settled.expect("the storm's joins to settle");
    let window = stable_since.duration_since(started);
    let storm = watcher.now();
    drop(peers);
    let counted = rig.stop_and_count();
    let watched = watcher.finish();

    let admitted_max = JOIN_BURST + JOIN_RATE * window.as_secs_f64();
    let extra = format!(
        "{sent} client_readys sent or tried in {:.2} s ({} of them in the first {} ms; {failed_writes} writes failed); {admitted} admitted, {refused} refused for the join rate, within {:.1} s (at most {admitted_max:.0} admissible); master CPU {:.2} s during the storm (bound {STORM_CPU} s); workers counted up to {}",
        sent_for.as_secs_f64(),
        REPEATERS * REPEATS,
        repeated_in.as_millis(),
        window.as_secs_f64(),
        storm.cpu_seconds,
        watched.max_workers,
    );
    rig.assert_held(&watched, &counted, STORM_RSS, &extra);
    assert!(refused > 0, "no join was refused for the rate");
    assert!(
        (admitted as f64) <= admitted_max,
        "{admitted} joins admitted in {window:?}"
    );
    assert!(
        storm.cpu_seconds <= STORM_CPU,
        "the master spent {:.2} CPU seconds on the storm",
        storm.cpu_seconds
    );
    let log = strip_ansi(&rig.master.stderr());
    assert!(
        log.contains("joins a second from that address"),
        "the master never logged a join-rate refusal"
    );
}

/// Joins the master logged so far.
fn joins_logged(rig: &Rig) -> usize {
    rig.master.stderr().matches(" joined from ").count()
}

// ---------------------------------------------------------------------------
// 7. Byte floods
// ---------------------------------------------------------------------------

/// Peers flooding at once.
const FLOODERS: usize = 2;
/// Frames each sends.
const FLOOD_FRAMES: usize = 8;
/// Values in one flood frame: just under the 1,000,000 a frame may hold.
const FLOOD_VALUES: u32 = 999_990;
/// Memory a byte flood may cost: the frames waiting for the master are
/// bounded at 16 MiB per peer (32 MiB for these two), and one frame is
/// decoded at a time — a million values as the msgpack decoder builds
/// them (40-odd bytes each, in a vector that doubles as it grows, and a
/// 7-byte string each), about 90 MiB for a moment: some 130 MiB live.
/// The allocator keeps freed pages resident a while, so the resident peak
/// is about twice that: +200 to +250 MiB over runs here, and the same
/// with three times the frames (the peak does not grow with the flood).
const FLOOD_RSS: u64 = mib(320);

/// A `stats` frame from `node` whose data is [`FLOOD_VALUES`] strings of
/// 7 bytes (8 bytes each in msgpack: just under 8 MiB). It passes the
/// value count, so the master decodes it whole before finding the data
/// is not a report.
fn slow_frame(node: &str) -> Vec<u8> {
    let mut frame = vec![0x93, 0xa5];
    frame.extend_from_slice(b"stats");
    frame.push(0xdd);
    frame.extend_from_slice(&FLOOD_VALUES.to_be_bytes());
    for i in 0..FLOOD_VALUES {
        frame.push(0xa7);
        frame.extend_from_slice(format!("{:07}", i % 10_000_000).as_bytes());
    }
    let id = node.as_bytes();
    frame.push(0xd9);
    frame.push(u8::try_from(id.len()).expect("a short node id"));
    frame.extend_from_slice(id);
    frame
}

/// 7. Byte floods: two peers that joined send 8 frames each of just under
///    8 MiB holding just under a million msgpack values — the slowest
///    frames to decode that the master still decodes (most of a second
///    each in a debug build). Each is decoded, off the master's task, and
///    refused as malformed; the master's memory stays within what its byte
///    budgets allow, its UI answers in time, and the real workers' frames
///    are not held up behind the flood: they are never missing.
#[test]
fn byte_floods_stay_within_the_budgets() {
    let rig = Rig::start("byte flood");
    let base = rig.refused();
    let watcher = rig.watch();
    let started = Instant::now();
    let flooders: Vec<_> = (0..FLOODERS)
        .map(|i| {
            let id = peer_id(&format!("flood{i}"));
            let mut peer = rig.join_raw(&id, "2.47.0");
            let frame = zmtp::message(&slow_frame(&id));
            std::thread::spawn(move || {
                for _ in 0..FLOOD_FRAMES {
                    peer.write_raw(&frame).expect("a flood frame");
                    peer.send(&heartbeat(&id, WorkerState::Ready))
                        .expect("a heartbeat");
                }
                peer.send(&quit(&id)).expect("the flooder's quit");
                peer
            })
        })
        .collect();
    let peers: Vec<RawPeer> = flooders
        .into_iter()
        .map(|f| f.join().expect("a flooding thread"))
        .collect();
    let frames = (FLOODERS * FLOOD_FRAMES) as u64;
    let refused = rig.wait_refused("every flood frame", |r| {
        r.malformed >= base.malformed + frames
    });
    let took = started.elapsed();
    rig.wait_workers(2);
    drop(peers);
    let counted = rig.stop_and_count();
    let watched = watcher.finish();
    let extra = format!(
        "{frames} frames of {:.1} MiB, {FLOOD_VALUES} values each, from {FLOODERS} peers, all read and refused ({} malformed) in {:.1} s",
        slow_frame("x").len() as f64 / 1_048_576.0,
        refused.malformed - base.malformed,
        took.as_secs_f64()
    );
    rig.assert_held(&watched, &counted, FLOOD_RSS, &extra);
}
