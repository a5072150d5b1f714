//! Peers that lie about who they are: forged stats, a live worker's
//! identity taken, forged quits, and log lines forged through the text a
//! peer sends. NULL mode, no join secret (see the suite's doc).

use std::thread;
use std::time::{Duration, Instant};

use harness::strip_ansi;
use harness::zmtp::{message, RawPeer};
use rmpv::Value;
use swarm::api::WorkerEventKind;
use swarm::protocol::{Envelope, QuitReason, ToMaster, ToWorker, WorkerState};
use swarm::stats::{now_epoch, StatsEntry, StatsError, StatsReport};

use super::{client_ready, heartbeat, mib, peer_id, quit, Rig};

/// Requests a forged report claims, in all.
const FORGED_REQUESTS: u64 = 1_000_000_000_000;
/// Rows in one forged report: as many as fit a frame a peer that has
/// not joined may send (64 KiB).
const FORGED_ROWS: usize = 100;
/// Forged reports of each kind sent, in rounds some time apart (so the
/// real workers report during the attack).
const FORGED_REPORTS: u64 = 50;
/// See [`FORGED_REPORTS`].
const FORGED_ROUNDS: u64 = 10;
/// See [`FORGED_REPORTS`].
const FORGED_PAUSE: Duration = Duration::from_millis(400);
/// Memory the forgery tests may cost the master: forged frames are small
/// and dropped unread, so what grows is the run's own numbers and a few
/// warnings; 32 MiB is room for that and the allocator's slack.
const FORGERY_RSS: u64 = mib(32);
/// How long the identity takeover keeps connecting.
const TAKEOVER_TIME: Duration = Duration::from_secs(10);
/// The most takeover connections made (one every 20 ms or so).
const TAKEOVER_MAX: u32 = 1_000;
/// How long the master may take to close a connection that claims a live
/// identity: it refuses it once the handshake is read.
const TAKEOVER_CLOSE: Duration = Duration::from_millis(500);
/// Rounds of forged quits (each ~100 ms apart).
const QUIT_ROUNDS: u64 = 30;

/// A `stats` report from `node` claiming [`FORGED_REQUESTS`] requests
/// over [`FORGED_ROWS`] rows, with failures and errors: Locust's shape,
/// no histograms.
fn forged_stats(node: &str) -> Vec<u8> {
    let now = now_epoch();
    let per_row = FORGED_REQUESTS / FORGED_ROWS as u64;
    let mut report = StatsReport {
        user_count: 1_000_000,
        ..StatsReport::default()
    };
    report.stats_total.hdr = None;
    for row in 0..FORGED_ROWS {
        let name = format!("/forged/{row}");
        let mut entry = StatsEntry::new(&name, "GET", now - 3.0);
        entry.hdr = None;
        entry.log(1.0, per_row, row % 2 == 0, now);
        report.stats_total.extend(&entry);
        report.stats.push(entry);
        if row % 10 == 0 {
            let error = StatsError {
                method: "GET".into(),
                name,
                error: "forged".into(),
                occurrences: per_row,
                first_seen: Some(now),
                last_seen: Some(now),
            };
            report.errors.insert(error.wire_key(), error);
        }
    }
    ToMaster::Stats(Box::new(report)).to_wire(node)
}

/// An `exception` from `node` claiming a trillion occurrences.
fn forged_exception(node: &str) -> Vec<u8> {
    ToMaster::Exception {
        msg: "forged exception".into(),
        traceback: "forged traceback".into(),
        count: FORGED_REQUESTS,
    }
    .to_wire(node)
}

/// Whether any row or exception of `stats` is a forged one.
fn shows_forgery(stats: &swarm::api::StatsRequests) -> bool {
    stats
        .stats
        .iter()
        .any(|row| row.name.starts_with("/forged"))
        || stats.errors.iter().any(|row| row.error.contains("forged"))
}

/// 1. Forged stats: a peer that never sent `client_ready` sends
///    well-formed `stats` claiming 10^12 requests, rows and errors, and
///    exceptions, under its own node id and under a real worker's; a peer
///    that joined (NULL mode admits it) sends stats in a real worker's
///    name. None of it is counted: every frame lands in a refusal
///    counter, the stranger is told to `reconnect`, and the totals stay
///    nginx's.
#[test]
fn forged_stats_are_never_counted() {
    let rig = Rig::start("forged stats");
    let victim = rig.ids[0].clone();
    let base = rig.refused();
    let watcher = rig.watch();

    let stranger_id = peer_id("forger");
    let mut stranger = RawPeer::connect(rig.port, stranger_id.as_bytes()).expect("connect");
    stranger
        .handshake(Duration::from_secs(5))
        .expect("the master's handshake");
    let own = forged_stats(&stranger_id);
    assert!(
        own.len() < 60 * 1024,
        "a forged report must fit an unjoined peer's 64 KiB frames: {} bytes",
        own.len()
    );
    let for_victim = forged_stats(&victim);
    // A joined peer speaks for the victim too (and leaves as itself).
    let insider_id = peer_id("insider");
    let mut insider = rig.join_raw(&insider_id, "2.47.0");
    for _ in 0..FORGED_ROUNDS {
        let (mut outside, mut inside) = (Vec::new(), Vec::new());
        for _ in 0..FORGED_REPORTS / FORGED_ROUNDS {
            outside.extend(message(&own));
            outside.extend(message(&forged_exception(&stranger_id)));
            outside.extend(message(&for_victim));
            inside.extend(message(&for_victim));
            inside.extend(message(&forged_exception(&victim)));
        }
        inside.extend(message(&heartbeat(&insider_id, WorkerState::Ready)));
        stranger
            .write_raw(&outside)
            .expect("the stranger's forgeries");
        insider.write_raw(&inside).expect("the insider's forgeries");
        thread::sleep(FORGED_PAUSE);
    }
    insider
        .send(&quit(&insider_id))
        .expect("the insider's quit");

    let n = FORGED_REPORTS;
    let refused = rig.wait_refused("every forged frame", |r| {
        r.stats_not_joined >= base.stats_not_joined + n
            && r.not_joined >= base.not_joined + 2 * n
            && r.wrong_node_id >= base.wrong_node_id + 3 * n
    });
    // The stranger heard `reconnect` (its stats were refused, not lost).
    let mut reconnects = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while reconnects == 0 && Instant::now() < deadline {
        if let Ok(Some(bytes)) = stranger.recv(Duration::from_millis(200)) {
            reconnects += usize::from(matches!(
                ToWorker::from_wire(&bytes),
                Ok(ToWorker::Reconnect)
            ));
        }
    }
    // The insider's own quit came after its forgeries: once it is gone,
    // they were all read.
    rig.wait_workers(2);
    let shown = rig.client.requests();
    let counted = rig.stop_and_count();
    let watched = watcher.finish();
    let exceptions = rig.client.exceptions();

    let extra = format!(
        "sent {} forged stats, {} forged exceptions ({} rows, 10^12 requests each); refused +{} not joined (+{} stats), +{} wrong node id; {reconnects} reconnect(s) read; peak total seen {}",
        3 * n,
        2 * n,
        FORGED_ROWS,
        refused.not_joined - base.not_joined,
        refused.stats_not_joined - base.stats_not_joined,
        refused.wrong_node_id - base.wrong_node_id,
        watched.peak_requests,
    );
    rig.assert_held(&watched, &counted, FORGERY_RSS, &extra);
    assert!(reconnects > 0, "the stranger was never told to reconnect");
    assert!(!shows_forgery(&shown), "a forged row is shown: {shown:?}");
    assert!(
        watched.peak_requests <= counted.nginx,
        "an answer showed {} requests, more than nginx served ({})",
        watched.peak_requests,
        counted.nginx
    );
    assert!(
        exceptions
            .exceptions
            .iter()
            .all(|e| !e.msg.contains("forged")),
        "a forged exception is listed: {exceptions:?}"
    );
}

/// 2. Identity takeover: for 10 s, connections keep coming with a real
///    worker's identity, each saying `client_ready`, a heartbeat, forged
///    stats and `quit` in its name. The master closes every one of them
///    once their handshake is read (the identity is live), and the real
///    worker never notices: its log says nothing about its connection
///    during the attack, the master logged it joining once, and the
///    run's events have nothing about it.
#[test]
fn a_live_workers_identity_cannot_be_taken_over() {
    let rig = Rig::start("identity takeover");
    let victim = rig.ids[0].clone();
    let watcher = rig.watch();
    let mut claims = Vec::new();
    for frame in [
        client_ready(&victim),
        heartbeat(&victim, WorkerState::Running),
        forged_stats(&victim),
        quit(&victim),
    ] {
        claims.extend(message(&frame));
    }
    let lines = |process: &harness::Process| strip_ansi(&process.stderr());
    let (master_before, worker_before) = (lines(&rig.master), lines(&rig.workers[0]));
    let started = Instant::now();
    let (mut attempts, mut closed, mut slowest) = (0u32, 0u32, Duration::ZERO);
    let mut still_open = Vec::new();
    while started.elapsed() < TAKEOVER_TIME && attempts < TAKEOVER_MAX {
        attempts += 1;
        let mut peer = RawPeer::connect(rig.port, victim.as_bytes()).expect("connect");
        // The master may already have closed it: a failed write is fine.
        let _ = peer.write_raw(&claims);
        match peer.wait_closed(Duration::from_secs(2)) {
            Ok(took) => {
                closed += 1;
                slowest = slowest.max(took);
            }
            Err(e) => still_open.push(format!("attempt {attempts}: {e}")),
        }
        thread::sleep(Duration::from_millis(20));
    }
    // What the victim and the master said during the attack (a stop
    // makes workers join again, as Locust's do).
    let master_log = lines(&rig.master)[master_before.len()..].to_string();
    let worker_log = lines(&rig.workers[0])[worker_before.len()..].to_string();
    let events = rig.client.requests().worker_events;
    let counted = rig.stop_and_count();
    let watched = watcher.finish();

    let refusals = master_log
        .matches(&format!("as worker {victim}: that identity is live"))
        .count();
    let joins = (master_before.clone() + &master_log)
        .matches(&format!("worker {victim} joined"))
        .count();
    let victim_events: Vec<_> = events.iter().filter(|e| e.worker == victim).collect();
    let extra = format!(
        "{attempts} takeover connections in {:.1} s, {closed} closed by the master (slowest {} ms); {refusals} refusal line(s) logged; victim joined {joins}× in the master's log, {} event(s) since the run began",
        started.elapsed().as_secs_f64(),
        slowest.as_millis(),
        victim_events.len()
    );
    rig.assert_held(&watched, &counted, FORGERY_RSS, &extra);
    assert!(
        still_open.is_empty(),
        "takeover connections left open: {still_open:?}"
    );
    assert!(
        slowest <= TAKEOVER_CLOSE,
        "a takeover connection stayed open {slowest:?}"
    );
    assert!(
        refusals > 0,
        "the master never logged a refusal:\n{master_log}"
    );
    assert_eq!(joins, 1, "the victim joined once:\n{master_log}");
    assert!(
        victim_events.is_empty(),
        "the victim has events since the run began: {victim_events:?}"
    );
    for line in [
        "connected to the master",
        "joined the master",
        "lost the master",
        "joining again",
        "reconnect",
    ] {
        assert!(
            !worker_log.contains(line),
            "the victim noticed ({line:?}):\n{worker_log}"
        );
    }
}

/// 3. Forged quits: for 3 s, `quit`s (and `client_stopped`s) carrying the
///    real workers' node ids come from a peer that never joined and from
///    one that joined under its own name. The worker count never drops
///    below the real two, no real worker gets a `quit` event, every forged
///    frame is refused as speaking for another node, and the insider's own
///    `quit`, sent last, is honoured.
#[test]
fn forged_quits_never_remove_a_worker() {
    let rig = Rig::start("forged quit");
    let base = rig.refused();
    let watcher = rig.watch();
    let stranger_id = peer_id("quitter");
    let mut stranger = RawPeer::connect(rig.port, stranger_id.as_bytes()).expect("connect");
    let insider_id = peer_id("insider");
    let mut insider = rig.join_raw(&insider_id, "2.47.0");
    let stopped = |id: &str| ToMaster::ClientStopped.to_wire(id);
    let (mut forged, mut strangers) = (0u64, 0u64);
    for _ in 0..QUIT_ROUNDS {
        let (mut from_stranger, mut from_insider) = (Vec::new(), Vec::new());
        for victim in &rig.ids {
            from_stranger.extend(message(&quit(victim)));
            from_insider.extend(message(&quit(victim)));
            from_insider.extend(message(&stopped(victim)));
            forged += 3;
        }
        // The stranger's own quit: it never joined, so it is nobody's.
        from_stranger.extend(message(&quit(&stranger_id)));
        strangers += 1;
        from_insider.extend(message(&heartbeat(&insider_id, WorkerState::Ready)));
        stranger
            .write_raw(&from_stranger)
            .expect("the stranger's quits");
        insider
            .write_raw(&from_insider)
            .expect("the insider's quits");
        thread::sleep(Duration::from_millis(100));
    }
    insider
        .send(&quit(&insider_id))
        .expect("the insider's own quit");
    let refused = rig.wait_refused("every forged quit", |r| {
        r.wrong_node_id >= base.wrong_node_id + forged
            && r.not_joined >= base.not_joined + strangers
    });
    rig.wait_workers(2);
    let events = rig.client.requests().worker_events;
    let counted = rig.stop_and_count();
    let watched = watcher.finish();

    let quit_events = |id: &str| {
        events
            .iter()
            .filter(|e| e.worker == id && e.event == WorkerEventKind::Quit)
            .count()
    };
    let extra = format!(
        "{forged} forged quits/client_stopped for real workers, {strangers} from a stranger; refused +{} wrong node id, +{} not joined; workers counted {}..={}; insider's own quit events {}",
        refused.wrong_node_id - base.wrong_node_id,
        refused.not_joined - base.not_joined,
        watched.min_workers,
        watched.max_workers,
        quit_events(&insider_id)
    );
    rig.assert_held(&watched, &counted, FORGERY_RSS, &extra);
    assert!(
        watched.min_workers >= 2,
        "the worker count dropped to {}",
        watched.min_workers
    );
    for id in &rig.ids {
        assert_eq!(quit_events(id), 0, "real worker {id} got a quit event");
    }
    assert_eq!(quit_events(&insider_id), 1, "the insider's own quit counts");
}

/// 9. Log injection: identities, a version, a message type, a heartbeat
///    state, a socket type and a quit reason carrying `\n`, `\r`, ANSI
///    escapes and text that looks like a log line of the master's. The
///    master's stderr has no forged line: every such text appears on a
///    line of its own making, escaped.
#[test]
fn peer_text_cannot_forge_log_lines() {
    const FORGED_TIME: &str = "2026-12-06T18:30:00.000000Z";
    let rig = Rig::start("log injection");
    let watcher = rig.watch();
    let identity =
        format!("inj\n{FORGED_TIME}  INFO swarm::master: FORGED-JOIN-LINE all is well\r\x1b[2K");
    // A version is cut to 64 bytes: the marker comes first.
    let version = "1\nFORGED-VERSION-LINE\u{2028}\x1b[2K".to_string();
    let mut joined = rig.join_raw(&identity, &version);
    let odd_state = Envelope::encode(
        "heartbeat",
        Value::Map(vec![
            ("state".into(), "dancing\nFORGED-STATE-LINE".into()),
            ("current_cpu_usage".into(), 1.0.into()),
        ]),
        &identity,
    );
    let odd_kind = Envelope::encode("x\nFORGED-KIND-LINE", Value::Nil, &identity);
    let leaving = ToMaster::Quit {
        reason: Some(QuitReason::Shutdown {
            detail: format!("bye\n{FORGED_TIME}  WARN FORGED-QUIT-LINE"),
        }),
    }
    .to_wire(&identity);
    for frame in [odd_state, odd_kind, leaving] {
        joined.send(&frame).expect("the injector's frames");
    }
    let stranger_id = format!("stranger\n{FORGED_TIME}  INFO FORGED-STRANGER-LINE");
    let mut stranger = RawPeer::connect(rig.port, stranger_id.as_bytes()).expect("connect");
    stranger
        .send(&heartbeat(&stranger_id, WorkerState::Ready))
        .expect("the stranger's heartbeat");
    let odd_type = format!("PUB\n{FORGED_TIME}  INFO FORGED-TYPE-LINE");
    let stream = std::net::TcpStream::connect(harness::loopback(rig.port)).expect("connect");
    let _typed = RawPeer::greet_as(stream, odd_type.as_bytes(), b"typed").expect("greet");

    let markers = [
        "FORGED-JOIN-LINE",
        "FORGED-VERSION-LINE",
        "FORGED-STATE-LINE",
        "FORGED-KIND-LINE",
        "FORGED-QUIT-LINE",
        "FORGED-STRANGER-LINE",
        "FORGED-TYPE-LINE",
    ];
    // Every text had its chance once the master logged each of them.
    harness::wait_until(
        Duration::from_secs(20),
        "the master to log every injected text",
        || {
            let log = rig.master.stderr();
            markers.iter().all(|m| log.contains(m)).then_some(())
        },
    );
    rig.wait_workers(2);
    let counted = rig.stop_and_count();
    let watched = watcher.finish();

    let raw = rig.master.stderr();
    let log = strip_ansi(&raw);
    let forged_lines: Vec<&str> = log
        .lines()
        .filter(|line| line.starts_with(FORGED_TIME) || line.starts_with("FORGED-"))
        .collect();
    let carrying: Vec<&str> = log.lines().filter(|l| l.contains("FORGED-")).collect();
    let extra = format!(
        "{} markers sent, {} master log lines carry them (all escaped), {} forged lines",
        markers.len(),
        carrying.len(),
        forged_lines.len()
    );
    rig.assert_held(&watched, &counted, FORGERY_RSS, &extra);
    assert!(
        forged_lines.is_empty(),
        "forged log lines: {forged_lines:#?}"
    );
    for line in &carrying {
        let escaped = line.contains("\\u{a}") || line.contains("\\n");
        assert!(escaped, "a marker without its escaped newline: {line}");
    }
    assert!(
        !raw.contains('\r') && !raw.contains("\x1b[2K") && !raw.contains('\u{2028}'),
        "a raw control character reached the log"
    );
}
