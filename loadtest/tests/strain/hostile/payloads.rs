//! Peers that join properly (NULL mode admits them) and send values built
//! to make the master hold too much: strings of tens of KiB, and
//! per-second counters for thousands of seconds far in the future.

use std::time::Duration;

use harness::strip_ansi;
use harness::zmtp::message;
use swarm::protocol::{
    ToMaster, WorkerState, MAX_CLASSES, MAX_CLASS_NAME, MAX_ERROR, MAX_MESSAGE, MAX_METHOD,
    MAX_NAME, MAX_TRACEBACK, MAX_VERSION,
};
use swarm::stats::{now_epoch, StatsEntry, StatsError, StatsReport, CLOCK_AHEAD_SECS};

use super::{heartbeat, mib, peer_id, quit, Rig};

/// The length of every long string sent: tens of KiB, far above any cap.
const LONG: usize = 40 * 1024;
/// The longest `client_ready` a peer that has not joined may send (its
/// frames are capped at 64 KiB).
const LONG_VERSION: usize = 60 * 1024;
/// Rows (and error rows) of long names sent: with their 40 KiB methods,
/// error texts and keys, about 6 MiB, under the 8 MiB a frame may hold.
const LONG_ROWS: usize = 20;
/// The most bytes `/stats/requests` may take with the long rows: the real
/// run's rows, plus per long row its capped name and method and per error
/// row its name and error, with 1 KiB of JSON around each.
const LONG_BODY: usize = 16 * 1024
    + LONG_ROWS * (MAX_NAME + MAX_METHOD + 1024) * 2
    + LONG_ROWS * (MAX_NAME + MAX_ERROR + 1024);
/// The longest master log line accepted: a line shows at most a few
/// pieces of peer text of 120 characters each, escaped.
const LOG_LINE: usize = 1024;
/// Memory the long strings may cost: rows keep capped strings (a few KiB
/// each), so what remains is decoding one message of a few MiB.
const LONG_RSS: u64 = mib(48);

/// Far-future seconds per entry (per-second map).
const FUTURE_SECONDS: i64 = 4_000;
/// Entries per far-future report (with the total): 100 × 4,000 keys ×
/// 2 values is 800,000 values, under the 1,000,000 a frame may hold.
const FUTURE_ENTRIES: usize = 99;
/// Far-future reports sent.
const FUTURE_REPORTS: usize = 12;
/// Memory the far-future counters may cost: 16 MiB of this peer's reports
/// waiting, and one decoded at a time — 400,000 key-value pairs as the
/// msgpack decoder builds them (96 bytes a pair, in a vector that doubles
/// as it grows: about 60 MiB) and the 400,000 counters parsed from them
/// before the window drops them — with the allocator's slack: +120 to
/// +160 MiB here. Kept, the 4.8 million distinct keys would add well over
/// 100 MiB more, and more with every report.
const FUTURE_RSS: u64 = mib(192);

/// `s` repeated to `len` bytes, with a marker at the start.
fn long(marker: &str, len: usize) -> String {
    let mut text = format!("{marker}-");
    while text.len() < len {
        text.push_str("long text ");
    }
    text.truncate(len);
    text
}

/// 5. Long strings: a peer joins with a 60 KiB version (the most a peer
///    that has not joined may send) and a 255-byte identity, then sends
///    rows, errors, an exception and user classes whose names and texts
///    are 40 KiB each — with zero requests. The master keeps each capped:
///    `/stats/requests` stays small, every string in it within its cap,
///    every log line short, memory bounded, and the rows had their chance
///    (they are listed, cut and marked `…`).
#[test]
fn long_strings_are_capped_everywhere() {
    let rig = Rig::start("long strings");
    let watcher = rig.watch();
    let id = format!("{}_", peer_id("long")).repeat(8)[..255].to_string();
    let mut peer = rig.join_raw(&id, &long("VERSION", LONG_VERSION));
    let now = now_epoch();
    let mut report = StatsReport::default();
    for row in 0..LONG_ROWS {
        let name = long(&format!("ROW{row}"), LONG);
        let method = long("METHOD", LONG);
        report.stats.push(StatsEntry::new(&name, &method, now));
        let error = StatsError {
            method: "GET".into(),
            name,
            error: long("ERROR", LONG),
            occurrences: 0,
            first_seen: None,
            last_seen: None,
        };
        report
            .errors
            .insert(long(&format!("KEY{row}"), LONG), error);
    }
    report.user_classes_count = (0..MAX_CLASSES + 50)
        .map(|i| (long(&format!("CLASS{i}"), 4 * 1024), 0))
        .collect();
    let frames = [
        ToMaster::Stats(Box::new(report)).to_wire(&id),
        ToMaster::Exception {
            msg: long("MESSAGE", 100 * 1024),
            traceback: long("TRACEBACK", 100 * 1024),
            count: 0,
        }
        .to_wire(&id),
        ToMaster::Unknown(long("KIND", LONG)).to_wire(&id),
        heartbeat(&id, WorkerState::Ready),
    ];
    let mut batch = Vec::new();
    for frame in &frames {
        batch.extend(message(frame));
    }
    peer.write_raw(&batch).expect("the long strings");
    // They had their chance once the rows are listed.
    let shown = harness::wait_until(Duration::from_secs(20), "the long rows", || {
        let s = rig.client.requests();
        let rows = s.stats.iter().filter(|r| r.name.starts_with("ROW")).count();
        (rows == LONG_ROWS).then_some(s)
    });
    let body = harness::http_get(&format!("{}/stats/requests", rig.api)).1;
    let exceptions = rig.client.exceptions();
    peer.send(&quit(&id)).expect("the peer's quit");
    rig.wait_workers(2);
    let counted = rig.stop_and_count();
    let watched = watcher.finish();

    let log = strip_ansi(&rig.master.stderr());
    let longest_line = log.lines().map(str::len).max().unwrap_or(0);
    let extra = format!(
        "{LONG_ROWS} rows and error rows of {} KiB names, a {} KiB version, {} classes; /stats/requests {} KiB (bound {} KiB, largest sampled {} KiB); longest log line {longest_line} B",
        LONG / 1024,
        LONG_VERSION / 1024,
        MAX_CLASSES + 50,
        body.len() / 1024,
        LONG_BODY / 1024,
        watched.largest_body / 1024,
    );
    rig.assert_held(&watched, &counted, LONG_RSS, &extra);
    assert!(
        body.len() <= LONG_BODY,
        "/stats/requests is {} bytes",
        body.len()
    );
    assert!(watched.largest_body <= LONG_BODY);
    for row in &shown.stats {
        assert!(row.name.len() <= MAX_NAME && row.method.len() <= MAX_METHOD);
    }
    assert!(
        shown
            .stats
            .iter()
            .any(|r| r.name.starts_with("ROW") && r.name.ends_with('…')),
        "the long names are cut and marked"
    );
    for row in &shown.errors {
        assert!(row.name.len() <= MAX_NAME && row.error.len() <= MAX_ERROR);
    }
    for event in &shown.worker_events {
        assert!(
            event.detail.len() <= MAX_VERSION + "version ".len(),
            "{event:?}"
        );
    }
    for worker in &shown.workers {
        assert!(worker.user_classes_count.len() <= MAX_CLASSES);
        assert!(worker
            .user_classes_count
            .keys()
            .all(|k| k.len() <= MAX_CLASS_NAME));
    }
    assert!(exceptions
        .exceptions
        .iter()
        .any(|e| e.msg.starts_with("MESSAGE")));
    for e in &exceptions.exceptions {
        assert!(e.msg.len() <= MAX_MESSAGE && e.traceback.len() <= MAX_TRACEBACK);
    }
    assert!(
        longest_line <= LOG_LINE,
        "a master log line of {longest_line} bytes"
    );
}

/// Report `round` of the far-future flood: `FUTURE_ENTRIES` rows (and
/// the total) with zero requests but [`FUTURE_SECONDS`] per-second
/// counters each, an hour apart, starting an hour from now and past the
/// seconds of every earlier round (so none repeats one kept before).
fn far_future_report(round: i64) -> StatsReport {
    let now = now_epoch();
    let first = now as i64 + 3_600 * (1 + round * FUTURE_SECONDS);
    let future = |entry: &mut StatsEntry| {
        for k in 0..FUTURE_SECONDS {
            entry.num_reqs_per_sec.insert(first + k * 3_600, 1);
        }
    };
    let mut report = StatsReport::default();
    future(&mut report.stats_total);
    for row in 0..FUTURE_ENTRIES {
        let mut entry = StatsEntry::new(&format!("/future/{row}"), "GET", now);
        entry.hdr = None;
        future(&mut entry);
        report.stats.push(entry);
    }
    report
}

/// 6. Far-future per-second counters: a peer that joined sends reports
///    with zero requests but 4,000 per-second keys an hour apart, starting
///    an hour ahead (each report's after the last one's), in each of 100
///    entries. Their rows are listed (they
///    were merged), but none of the keys is kept: the total's per-second
///    counters stay within the current window, the numbers are nginx's,
///    and memory stays bounded.
#[test]
fn far_future_seconds_are_not_kept() {
    let rig = Rig::start("far-future counters");
    let watcher = rig.watch();
    let id = peer_id("future");
    let mut peer = rig.join_raw(&id, "2.47.0");
    for round in 0..FUTURE_REPORTS {
        let report = far_future_report(round as i64);
        let frame = ToMaster::Stats(Box::new(report)).to_wire(&id);
        peer.send(&frame).expect("a far-future report");
        peer.send(&heartbeat(&id, WorkerState::Ready))
            .expect("the peer's heartbeat");
    }
    // They had their chance once a last report, sent after them on the
    // same connection, is listed.
    let mut done = StatsReport::default();
    done.stats
        .push(StatsEntry::new("/future/done", "GET", now_epoch()));
    peer.send(&ToMaster::Stats(Box::new(done)).to_wire(&id))
        .expect("the last report");
    harness::wait_until(Duration::from_secs(30), "the far-future reports", || {
        let s = rig.client.requests();
        s.stats
            .iter()
            .any(|r| r.name == "/future/done")
            .then_some(())
    });
    let total = rig.client.total();
    peer.send(&quit(&id)).expect("the peer's quit");
    rig.wait_workers(2);
    let counted = rig.stop_and_count();
    let watched = watcher.finish();

    let now = now_epoch() as i64;
    let seconds: Vec<i64> = total.total.num_reqs_per_sec.keys().copied().collect();
    let extra = format!(
        "{FUTURE_REPORTS} reports × {} entries × {FUTURE_SECONDS} far-future seconds ({} keys); the total keeps {} per-second keys, newest {:+} s from now",
        FUTURE_ENTRIES + 1,
        FUTURE_REPORTS * (FUTURE_ENTRIES + 1) * FUTURE_SECONDS as usize,
        seconds.len(),
        seconds.last().map_or(0, |s| s - now),
    );
    rig.assert_held(&watched, &counted, FUTURE_RSS, &extra);
    assert!(
        seconds.iter().all(|s| *s <= now + CLOCK_AHEAD_SECS + 1),
        "far-future seconds were kept: {seconds:?}"
    );
    assert!(seconds.len() <= 30, "{} per-second keys", seconds.len());
}
