//! Hostile input on the master's port 5557 is logged and ignored: garbage
//! bytes, frames of the wrong shape, a `stats` message missing keys, an
//! unknown message type. Meanwhile a real worker keeps being served, and its
//! requests are all counted.
//!
//! Two rogues send them: one that never joins (so its frames must stay
//! small: 64 KiB before a `client_ready`), and one that joins, sends the
//! big and the unknown frames, and quits. No join secret: the master
//! speaks NULL here, as Locust's does.

use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use harness::*;
use rmpv::Value;
use swarm::api::RunState;
use swarm::protocol::transport::{connect_worker, WorkerLink};
use swarm::protocol::{Envelope, ToMaster};

fn msgpack(value: &Value) -> Bytes {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, value).expect("encoding into a Vec");
    Bytes::from(out)
}

/// A rogue peer that speaks ZeroMQ, connected as `node`.
async fn rogue(port: u16, node: &str) -> WorkerLink {
    let mut rogue = connect_worker("127.0.0.1", port, node, None).expect("rogue identity");
    tokio::time::timeout(
        Duration::from_secs(10),
        rogue.connected.wait_for(|count| *count > 0),
    )
    .await
    .expect("rogue connects in time")
    .expect("rogue link open");
    rogue
}

/// Every kind of bad frame, from two rogue peers (see the module's doc).
/// Returns their links: keep them until the master has read the frames.
async fn send_hostile_frames(port: u16) -> [WorkerLink; 2] {
    let mut joiner = rogue(port, "joiner_0123").await;
    let ready = ToMaster::ClientReady {
        version: "2.47.0".into(),
    };
    joiner
        .outgoing
        .try_send(Bytes::from(ready.to_wire("joiner_0123")))
        .expect("rogue link open");
    // Big frames only once joined: wait for the master's `ack`.
    let ack = tokio::time::timeout(Duration::from_secs(10), joiner.incoming.recv()).await;
    assert!(matches!(ack, Ok(Some(_))), "the joiner was acknowledged");
    for frame in [
        // Two million `nil`s in 2 MB: refused before decoding would
        // allocate a value for each.
        many_nils(2_000_000),
        Bytes::from(Envelope::encode(
            "frobnicate",
            Value::from(42),
            "joiner_0123",
        )),
        Bytes::from(ToMaster::Quit { reason: None }.to_wire("joiner_0123")),
    ] {
        joiner.outgoing.try_send(frame).expect("rogue link open");
    }
    let rogue = rogue(port, "rogue_0123").await;
    let node = "rogue_0123";
    let frames = [
        // An array of three that ends after its first element.
        Bytes::from_static(b"\x93\xa5stats"),
        Bytes::from_static(b"\xc1\xff garbage"),
        msgpack(&Value::from("just a string")),
        msgpack(&Value::Array(vec!["stats".into(), Value::Nil])),
        Bytes::from(Envelope::encode(
            "stats",
            Value::Map(vec![("stats".into(), Value::Array(vec![]))]),
            node,
        )),
        Bytes::from(Envelope::encode(
            "heartbeat",
            Value::Map(vec![("state".into(), "dancing".into())]),
            node,
        )),
        Bytes::from(Envelope::encode("client_ready", Value::Nil, node)),
        // A well-formed heartbeat from an unknown node: answered with `reconnect`.
        Bytes::from(
            ToMaster::Heartbeat(swarm::protocol::Heartbeat {
                state: swarm::protocol::WorkerState::Ready,
                cpu_usage: 1.0,
                memory_usage: 1,
                cpu_cores: None,
            })
            .to_wire(node),
        ),
    ];
    for frame in frames {
        rogue.outgoing.try_send(frame).expect("rogue link open");
    }
    [joiner, rogue]
}

/// An array of `n` nils, one byte each.
fn many_nils(n: u32) -> Bytes {
    let mut frame = vec![0xdd];
    frame.extend_from_slice(&n.to_be_bytes());
    frame.resize(5 + n as usize, 0xc0);
    Bytes::from(frame)
}

/// Waits until the master has logged `line` `times` times.
fn wait_for_log(master: &Process, line: &str, times: usize) {
    wait_until(
        Duration::from_secs(20),
        format!("{times} × {line:?}"),
        || (master.stderr().matches(line).count() >= times).then_some(()),
    );
}

#[test]
fn hostile_frames_are_logged_and_ignored() {
    let nginx = Nginx::start(NginxOptions::default());
    let dir = TempDir::new("swarm-bad-frames");
    let (mut master, port, api) = loadtest!().master_with_ui(&dir, &["--host", &nginx.url()]);
    let _worker = loadtest!().worker(&dir, port, &[]);
    let client = Api::new(&api);
    wait_until(Duration::from_secs(20), "the worker to join", || {
        (client.requests().worker_count == 1).then_some(())
    });

    // Raw garbage on the TCP port: not even a ZeroMQ greeting.
    let mut raw = std::net::TcpStream::connect(loopback(port)).expect("raw connect");
    raw.write_all(b"GET / HTTP/1.1\r\n\r\n\x00\xff\x13garbage")
        .expect("raw write");
    drop(raw);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    // The whole batch was read once the joiner's unknown type is logged
    // and the other's heartbeat refused (it comes last).
    let rogue = runtime.block_on(send_hostile_frames(port));
    wait_for_log(&master, "unknown message type \"frobnicate\"", 1);
    wait_for_log(&master, "ignored a heartbeat from rogue_0123", 1);
    drop(rogue);

    client.swarm(4, 4.0);
    // More garbage while the run is going. It had its chance once the
    // master has read from it and the real worker has reported since.
    // (Only its first frames are ever logged, sleep or no sleep: see the
    // report of the harness change.)
    let rogue = runtime.block_on(send_hostile_frames(port));
    wait_for_log(&master, "not msgpack", 2);
    let read_at = client.total_requests();
    let counted = wait_until(Duration::from_secs(20), "a later worker report", || {
        let n = client.total_requests();
        (n > read_at && n > 1_000).then_some(n)
    });
    drop(rogue);
    let stats = client.requests();
    assert_eq!(
        stats.worker_count, 1,
        "only the real worker is registered: {:?}",
        stats.workers
    );
    assert_eq!(stats.state, RunState::Running);
    client.stop();
    wait_until(Duration::from_secs(15), "the run to stop", || {
        (client.requests().state == RunState::Stopped).then_some(())
    });
    let total = client.total_requests() as f64;
    assert!(
        total > counted as f64,
        "the master kept counting after the garbage"
    );
    assert_close(
        total,
        nginx.count_requests() as f64,
        0.005,
        "requests: master vs nginx log",
    );

    master.signal("INT");
    exit_code(&mut master, Duration::from_secs(20));
    let log = master.stderr();
    for expected in [
        "not msgpack",
        "holds more than 1000000 msgpack values",
        "got \"just a string\"",
        "got [\"stats\", nil]",
        "`stats` message: missing or malformed `errors`",
        "unknown state \"dancing\"",
        "needs a version",
        "unknown message type \"frobnicate\"",
    ] {
        assert!(
            log.contains(expected),
            "master log should mention {expected:?}:\n{log}"
        );
    }
}
