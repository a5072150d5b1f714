//! The transport over real loopback sockets: our DEALER end against our
//! ROUTER end, and hand-written ZMTP peers (bytes built here, not with the
//! codec) that misbehave. Every wait is for a positive signal, bounded.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::protocol::JoinSecret;

const PATIENCE: Duration = Duration::from_secs(10);

async fn master() -> MasterLink {
    bind_master("127.0.0.1", 0, None).await.expect("bind")
}

/// A worker link whose first connection is up.
async fn worker(port: u16, id: &str) -> WorkerLink {
    let mut link = connect_worker("127.0.0.1", port, id, None).expect("valid identity");
    wait_connections(&mut link, 1).await;
    link
}

async fn wait_connections(link: &mut WorkerLink, count: u64) {
    tokio::time::timeout(PATIENCE, link.connected.wait_for(|n| *n >= count))
        .await
        .expect("connected in time")
        .expect("the dialer runs");
}

/// The next frame the master receives from `peer` (others are skipped).
async fn next_frame_from(master: &mut MasterLink, peer: &[u8]) -> Inbound {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(left, master.incoming.recv())
            .await
            .expect("a frame in time")
            .expect("the master's link is open");
        if frame.peer == peer {
            return frame;
        }
    }
}

/// The payload of the next frame the master receives from `peer`.
async fn next_from(master: &mut MasterLink, peer: &[u8]) -> Bytes {
    next_frame_from(master, peer).await.payload
}

/// Worker → master → worker, with fresh payloads.
async fn round_trip(master: &mut MasterLink, worker: &mut WorkerLink, id: &str) {
    let question = Bytes::from(format!("question from {id}"));
    worker
        .outgoing
        .try_send(question.clone())
        .expect("worker sends");
    assert_eq!(next_from(master, id.as_bytes()).await, question);
    let answer = Bytes::from(format!("answer to {id}"));
    assert!(master.outgoing.send(Frame {
        peer: Bytes::from(id.as_bytes().to_vec()),
        payload: answer.clone(),
    }));
    let got = tokio::time::timeout(PATIENCE, worker.incoming.recv())
        .await
        .expect("an answer in time")
        .expect("the worker's link is open");
    assert_eq!(got, answer);
}

/// A ZMTP 3.0 NULL greeting, byte by byte.
fn raw_greeting() -> Vec<u8> {
    raw_greeting_with(b"NULL")
}

/// A ZMTP 3.0 client greeting with `mechanism`, byte by byte.
fn raw_greeting_with(mechanism: &[u8]) -> Vec<u8> {
    let mut g = vec![0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0x7F, 3, 0];
    g.extend_from_slice(mechanism);
    g.resize(64, 0);
    g
}

/// A READY command frame from a DEALER with `identity`, byte by byte.
fn raw_ready(identity: &[u8]) -> Vec<u8> {
    let mut body = vec![5];
    body.extend_from_slice(b"READY");
    body.push(11);
    body.extend_from_slice(b"Socket-Type");
    body.extend_from_slice(&6u32.to_be_bytes());
    body.extend_from_slice(b"DEALER");
    body.push(8);
    body.extend_from_slice(b"Identity");
    body.extend_from_slice(&(identity.len() as u32).to_be_bytes());
    body.extend_from_slice(identity);
    let mut frame = vec![0x04, body.len() as u8];
    frame.extend_from_slice(&body);
    frame
}

/// A hand-written DEALER, handshaken, that has sent "hello": once the
/// master got that, `identity` is routed to this connection. It has not
/// joined (see [`joined_raw_dealer`]).
async fn raw_dealer(master: &mut MasterLink, identity: &str) -> TcpStream {
    raw_dealer_on(master, identity).await.0
}

/// [`raw_dealer`], and the connection the master saw it on.
async fn raw_dealer_on(master: &mut MasterLink, identity: &str) -> (TcpStream, ConnId) {
    let mut s = TcpStream::connect(("127.0.0.1", master.port))
        .await
        .expect("connect");
    s.write_all(&raw_greeting()).await.expect("greeting");
    s.write_all(&raw_ready(identity.as_bytes()))
        .await
        .expect("ready");
    let mut theirs = [0u8; 64];
    s.read_exact(&mut theirs).await.expect("their greeting");
    assert_eq!((theirs[0], theirs[9], theirs[10]), (0xFF, 0x7F, 3));
    assert_eq!(&theirs[12..16], b"NULL");
    let mut header = [0u8; 2];
    s.read_exact(&mut header).await.expect("their READY header");
    assert_eq!(header[0], 0x04, "a short command frame");
    let mut body = vec![0u8; usize::from(header[1])];
    s.read_exact(&mut body).await.expect("their READY");
    assert_eq!(&body[..6], b"\x05READY");
    s.write_all(b"\x00\x05hello").await.expect("hello");
    let hello = next_frame_from(master, identity.as_bytes()).await;
    assert_eq!(&hello.payload[..], b"hello");
    (s, hello.conn)
}

/// A [`raw_dealer`] the master has taken as joined (as after its
/// `client_ready`), so it may send full-size frames.
async fn joined_raw_dealer(master: &mut MasterLink, identity: &str) -> TcpStream {
    let (s, conn) = raw_dealer_on(master, identity).await;
    assert!(master.outgoing.mark_joined(identity.as_bytes(), conn));
    s
}

/// Reads until the master closes the connection (EOF or reset).
async fn closed_by_master(s: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the master did not close the connection"),
        }
    }
}

#[tokio::test]
async fn worker_and_master_round_trip() {
    let mut master = master().await;
    let mut w = worker(master.port, "w_1").await;
    assert_eq!(*w.connected.borrow(), 1);
    assert!(w.outgoing.is_connected());
    round_trip(&mut master, &mut w, "w_1").await;
    assert!(w.outgoing.flush(PATIENCE).await);
    // Unknown peers are refused without waiting.
    assert!(!master.outgoing.send(Frame {
        peer: Bytes::from_static(b"nobody"),
        payload: Bytes::from_static(b"x"),
    }));
}

#[tokio::test]
async fn the_worker_reconnects_to_a_new_master_on_the_same_port() {
    let mut first = master().await;
    let port = first.port;
    let mut w = worker(port, "w_2").await;
    round_trip(&mut first, &mut w, "w_2").await;
    drop(first);
    let deadline = Instant::now() + PATIENCE;
    while w.outgoing.is_connected() {
        assert!(Instant::now() < deadline, "the worker saw its master go");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(matches!(
        w.outgoing.try_send(Bytes::from_static(b"lost")),
        Err(SendError::NotConnected)
    ));
    assert!(!w.outgoing.flush(Duration::from_millis(100)).await);
    let mut second = loop {
        match bind_master("127.0.0.1", port, None).await {
            Ok(link) => break link,
            Err(err) => {
                assert!(Instant::now() < deadline, "rebind: {err}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_connections(&mut w, 2).await;
    assert_eq!(*w.connected.borrow(), 2);
    round_trip(&mut second, &mut w, "w_2").await;
}

#[tokio::test]
async fn frames_over_the_cap_close_only_their_connection() {
    let mut master = master().await;
    let mut w = worker(master.port, "w_3").await;

    let mut huge = raw_dealer(&mut master, "huge").await;
    let mut header = vec![0x02];
    header.extend_from_slice(&(1u64 << 50).to_be_bytes());
    huge.write_all(&header).await.expect("huge header");
    closed_by_master(&mut huge).await;
    round_trip(&mut master, &mut w, "w_3").await;

    let mut over = raw_dealer(&mut master, "over").await;
    let mut header = vec![0x02];
    header.extend_from_slice(&(MAX_FRAME as u64 + 1).to_be_bytes());
    over.write_all(&header).await.expect("over header");
    closed_by_master(&mut over).await;

    let mut fits = joined_raw_dealer(&mut master, "fits").await;
    let mut frame = vec![0x02];
    frame.extend_from_slice(&(MAX_FRAME as u64).to_be_bytes());
    frame.resize(9 + MAX_FRAME, 0xAB);
    let writer = tokio::spawn(async move {
        fits.write_all(&frame).await.expect("a frame at the cap");
        fits
    });
    let payload = next_from(&mut master, b"fits").await;
    assert_eq!(payload.len(), MAX_FRAME);
    assert!(payload.iter().all(|&b| b == 0xAB));
    let _fits = writer.await.expect("writer");
    round_trip(&mut master, &mut w, "w_3").await;
}

#[tokio::test]
async fn a_peer_that_never_reads_does_not_block_the_master() {
    let mut master = master().await;
    let mut w = worker(master.port, "w_4").await;
    let _slow = raw_dealer(&mut master, "slow").await;
    let payload = Bytes::from(vec![7u8; 1024]);
    let started = Instant::now();
    for _ in 0..100_000 {
        master.outgoing.send(Frame {
            peer: Bytes::from_static(b"slow"),
            payload: payload.clone(),
        });
    }
    assert!(
        started.elapsed() < PATIENCE,
        "100,000 sends took {:?}",
        started.elapsed()
    );
    assert!(master.outgoing.dropped() > 0);
    round_trip(&mut master, &mut w, "w_4").await;
}

#[tokio::test]
async fn a_garbage_greeting_closes_only_its_connection() {
    let mut master = master().await;
    let mut w = worker(master.port, "w_5").await;
    let mut raw = TcpStream::connect(("127.0.0.1", master.port))
        .await
        .expect("connect");
    let mut garbage = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    garbage.resize(64, b'!');
    raw.write_all(&garbage).await.expect("garbage");
    closed_by_master(&mut raw).await;
    round_trip(&mut master, &mut w, "w_5").await;
}

/// Connects a raw DEALER with `identity` and completes its handshake,
/// sending nothing more.
async fn raw_handshake(port: u16, identity: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(&raw_greeting()).await.expect("greeting");
    s.write_all(&raw_ready(identity.as_bytes()))
        .await
        .expect("ready");
    s
}

#[tokio::test]
async fn a_live_identity_is_not_handed_over() {
    let mut master = master().await;
    let mut older = raw_dealer(&mut master, "dup").await;
    // The older connection was heard from just now: the newer is refused.
    let mut newer = raw_handshake(master.port, "dup").await;
    closed_by_master(&mut newer).await;
    assert!(master.outgoing.send(Frame {
        peer: Bytes::from_static(b"dup"),
        payload: Bytes::from_static(b"for the older"),
    }));
    let mut got = [0u8; 15];
    read_in_time(&mut older, &mut got).await;
    assert_eq!(&got, b"\x00\x0dfor the older");
    // Once the older is gone, a new connection takes the identity.
    drop(older);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut again = raw_handshake(master.port, "dup").await;
        again.write_all(b"\x00\x05again").await.expect("again");
        let mut buf = [0u8; 64];
        let answered = tokio::time::timeout(Duration::from_millis(500), again.read(&mut buf)).await;
        if matches!(answered, Ok(Ok(n)) if n > 0) {
            assert_eq!(&next_from(&mut master, b"dup").await[..], b"again");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the identity was never free again"
        );
    }
}

#[tokio::test]
async fn a_silent_identity_is_taken_back() {
    let limits = RouterLimits {
        live_window: Duration::from_millis(300),
        ..RouterLimits::default()
    };
    let mut master = bind_master_with("127.0.0.1", 0, None, limits)
        .await
        .expect("bind");
    let mut older = raw_dealer(&mut master, "quiet").await;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut newer = raw_handshake(master.port, "quiet").await;
    newer.write_all(b"\x00\x05newer").await.expect("newer");
    assert_eq!(&next_from(&mut master, b"quiet").await[..], b"newer");
    closed_by_master(&mut older).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn an_unjoined_connection_is_closed_after_the_join_timeout() {
    let limits = RouterLimits {
        join_timeout: Duration::from_millis(300),
        ..RouterLimits::default()
    };
    let mut master = bind_master_with("127.0.0.1", 0, None, limits)
        .await
        .expect("bind");
    let (mut idle, _) = raw_dealer_on(&mut master, "idle").await;
    let (kept, conn) = raw_dealer_on(&mut master, "kept").await;
    assert!(master.outgoing.mark_joined(b"kept", conn));
    let started = Instant::now();
    closed_by_master(&mut idle).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    // The joined one is still served.
    let mut kept = kept;
    kept.write_all(b"\x00\x04kept").await.expect("kept");
    assert_eq!(&next_from(&mut master, b"kept").await[..], b"kept");
}

#[tokio::test]
async fn unjoined_connections_are_capped_per_source() {
    let limits = RouterLimits {
        unjoined_per_source: 3,
        ..RouterLimits::default()
    };
    let mut master = bind_master_with("127.0.0.1", 0, None, limits)
        .await
        .expect("bind");
    let mut held = Vec::new();
    for i in 0..3 {
        held.push(raw_dealer(&mut master, &format!("held{i}")).await);
    }
    // A fourth from the same address is closed at once.
    let mut fourth = raw_handshake(master.port, "fourth").await;
    closed_by_master(&mut fourth).await;
    // One joins: its place is free again.
    let (joined, conn) = {
        drop(held.pop());
        raw_dealer_on(&mut master, "joiner").await
    };
    assert!(master.outgoing.mark_joined(b"joiner", conn));
    let fifth = raw_dealer(&mut master, "fifth").await;
    drop((joined, fifth, held));
}

#[tokio::test]
async fn an_unjoined_peer_may_send_only_small_frames() {
    let mut master = master().await;
    let mut peer = raw_dealer(&mut master, "small").await;
    let mut header = vec![0x02];
    header.extend_from_slice(&(RouterLimits::default().unjoined_frame as u64 + 1).to_be_bytes());
    peer.write_all(&header).await.expect("header");
    closed_by_master(&mut peer).await;
}

#[tokio::test]
async fn a_peer_over_its_byte_budget_waits_while_others_go_on() {
    let limits = RouterLimits {
        peer_bytes: 100_000,
        total_bytes: 1_000_000,
        ..RouterLimits::default()
    };
    let mut master = bind_master_with("127.0.0.1", 0, None, limits)
        .await
        .expect("bind");
    let mut hog = joined_raw_dealer(&mut master, "hog").await;
    let mut other = joined_raw_dealer(&mut master, "other").await;
    // Three frames of 40,000 bytes: the third does not fit the hog's
    // budget while the master holds the first two.
    let mut frame = vec![0x02];
    frame.extend_from_slice(&40_000u64.to_be_bytes());
    frame.resize(9 + 40_000, 1);
    for _ in 0..3 {
        hog.write_all(&frame).await.expect("hog frame");
    }
    let first = next_frame_from(&mut master, b"hog").await;
    let second = next_frame_from(&mut master, b"hog").await;
    // The other peer is not held up by the hog's budget.
    other.write_all(b"\x00\x05other").await.expect("other");
    assert_eq!(&next_from(&mut master, b"other").await[..], b"other");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), master.incoming.recv())
            .await
            .is_err(),
        "the third frame waits for the budget"
    );
    // Dealt with, the first two free it.
    drop((first, second));
    assert_eq!(next_from(&mut master, b"hog").await.len(), 40_000);
}

#[tokio::test]
async fn a_joined_3_1_peer_is_pinged_and_a_silent_one_closed() {
    let limits = RouterLimits {
        ping_every: Duration::from_millis(100),
        silence: Duration::from_millis(600),
        ..RouterLimits::default()
    };
    let mut master = bind_master_with("127.0.0.1", 0, None, limits)
        .await
        .expect("bind");
    let mut greeting = raw_greeting();
    greeting[11] = 1; // ZMTP 3.1
    let mut peer = TcpStream::connect(("127.0.0.1", master.port))
        .await
        .expect("connect");
    peer.write_all(&greeting).await.expect("greeting");
    peer.write_all(&raw_ready(b"pinged")).await.expect("ready");
    peer.write_all(b"\x00\x05hello").await.expect("hello");
    let hello = next_frame_from(&mut master, b"pinged").await;
    assert!(master.outgoing.mark_joined(b"pinged", hello.conn));
    // Their greeting and READY, then a PING with a TTL of 0.6 s.
    let mut handshake = [0u8; 64 + 2 + 28];
    read_in_time(&mut peer, &mut handshake).await;
    let mut ping = [0u8; 9];
    read_in_time(&mut peer, &mut ping).await;
    assert_eq!(&ping, b"\x04\x07\x04PING\x00\x06");
    // A PONG keeps it open past the silence limit...
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(900) {
        peer.write_all(b"\x04\x05\x04PONG").await.expect("pong");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    peer.write_all(b"\x00\x05alive").await.expect("alive");
    assert_eq!(&next_from(&mut master, b"pinged").await[..], b"alive");
    // ...and silence closes it.
    let silent = Instant::now();
    closed_by_master(&mut peer).await;
    assert!(
        silent.elapsed() >= Duration::from_millis(500),
        "{:?}",
        silent.elapsed()
    );
}

#[tokio::test]
async fn the_memory_link_carries_frames_both_ways() {
    let (mut link, frames, mut sent) = memory_master_link(4);
    frames
        .send(Inbound::memory("w", b"in".to_vec()))
        .await
        .expect("in");
    assert_eq!(link.incoming.recv().await.expect("frame").payload, "in");
    let frame = Frame {
        peer: Bytes::from_static(b"w"),
        payload: Bytes::from_static(b"in"),
    };
    assert!(link.outgoing.send(frame));
    assert_eq!(sent.recv().await.expect("sent").payload, "in");
}

#[test]
fn identities_must_be_1_to_255_bytes() {
    assert!(matches!(
        connect_worker("127.0.0.1", 1, "", None),
        Err(TransportError::Identity(_))
    ));
    assert!(matches!(
        connect_worker("127.0.0.1", 1, &"x".repeat(256), None),
        Err(TransportError::Identity(_))
    ));
}

#[tokio::test]
async fn the_master_answers_a_ping_with_its_context() {
    let mut master = master().await;
    let mut peer = raw_dealer(&mut master, "pinger").await;
    // PING: name, TTL 10 (deciseconds), context "ab".
    peer.write_all(b"\x04\x09\x04PING\x00\x0aab")
        .await
        .expect("ping");
    let mut pong = [0u8; 9];
    read_in_time(&mut peer, &mut pong).await;
    assert_eq!(&pong, b"\x04\x07\x04PONGab");
    // The connection still carries messages afterwards.
    peer.write_all(b"\x00\x05again").await.expect("again");
    assert_eq!(&next_from(&mut master, b"pinger").await[..], b"again");
}

#[tokio::test]
async fn a_master_that_never_reads_fills_the_worker_queue() {
    // A hand-written ROUTER that handshakes and then reads nothing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        s.write_all(&raw_greeting()).await.expect("greeting");
        let mut theirs = [0u8; 64];
        s.read_exact(&mut theirs).await.expect("greeting");
        let mut ready = b"\x05READY\x0bSocket-Type\x00\x00\x00\x06ROUTER".to_vec();
        ready.splice(0..0, [0x04, ready.len() as u8]);
        s.write_all(&ready).await.expect("ready");
        s
    });
    let w = worker(port, "w_full").await;
    let _server = server.await.expect("server");
    let payload = Bytes::from(vec![1u8; 1024]);
    let mut full = false;
    for _ in 0..1_000_000 {
        match w.outgoing.try_send(payload.clone()) {
            Ok(()) => tokio::task::yield_now().await,
            Err(SendError::Full) => {
                full = true;
                break;
            }
            Err(SendError::NotConnected) => panic!("the connection dropped"),
        }
    }
    assert!(full, "the queue filled up");
    assert!(w.outgoing.is_connected());
    assert!(!w.outgoing.flush(Duration::from_millis(50)).await);
}

/// Fills `buf` from `stream`, failing the test after [`PATIENCE`].
async fn read_in_time(stream: &mut (impl AsyncReadExt + Unpin), buf: &mut [u8]) {
    tokio::time::timeout(PATIENCE, stream.read_exact(buf))
        .await
        .expect("in time")
        .expect("read");
}

#[tokio::test]
async fn with_a_join_secret_only_workers_presenting_it_are_routed() {
    let secret = JoinSecret::new("s3cret-for-the-swarm").expect("valid");
    let mut master = bind_master("127.0.0.1", 0, Some(secret.clone()))
        .await
        .expect("bind");
    // A hand-written PLAIN client with the wrong password: ERROR, then closed.
    let mut wrong = TcpStream::connect(("127.0.0.1", master.port))
        .await
        .expect("connect");
    wrong
        .write_all(&raw_greeting_with(b"PLAIN"))
        .await
        .expect("greeting");
    let mut theirs = [0u8; 64];
    read_in_time(&mut wrong, &mut theirs).await;
    assert_eq!(&theirs[10..18], b"\x03\x01PLAIN\0", "ZMTP 3.1, PLAIN");
    assert_eq!(theirs[32], 1, "as-server");
    wrong
        .write_all(b"\x04\x12\x05HELLO\x03bob\x07guessed")
        .await
        .expect("hello");
    let mut error = [0u8; 26];
    read_in_time(&mut wrong, &mut error).await;
    assert_eq!(&error, b"\x04\x18\x05ERROR\x11wrong join secret");
    closed_by_master(&mut wrong).await;
    // A NULL peer (a worker without the secret, or stock Locust): closed
    // after the greetings, before any READY.
    let mut open = TcpStream::connect(("127.0.0.1", master.port))
        .await
        .expect("connect");
    open.write_all(&raw_greeting()).await.expect("greeting");
    open.write_all(&raw_ready(b"nosecret"))
        .await
        .expect("ready");
    let mut theirs = [0u8; 64];
    read_in_time(&mut open, &mut theirs).await;
    closed_by_master(&mut open).await;
    // Our worker with the secret joins and is routed.
    let mut w =
        connect_worker("127.0.0.1", master.port, "w_plain", Some(secret)).expect("valid identity");
    wait_connections(&mut w, 1).await;
    round_trip(&mut master, &mut w, "w_plain").await;
}
