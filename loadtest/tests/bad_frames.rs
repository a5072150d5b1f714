//! Hostile input on the master's port 5557 is logged and ignored: garbage
//! bytes, frames of the wrong shape, a `stats` message missing keys, an
//! unknown message type. Meanwhile a real worker keeps being served, and its
//! requests are all counted.

mod common;

use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use common::support::{http_post_form, Nginx, NginxOptions, TempDir};
use common::*;
use rmpv::Value;
use swarm::protocol::transport::connect_worker;
use swarm::protocol::{Envelope, ToMaster};

fn msgpack(value: &Value) -> Bytes {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, value).expect("encoding into a Vec");
    Bytes::from(out)
}

/// Every kind of bad frame, from a rogue peer that speaks ZeroMQ.
async fn send_hostile_frames(port: u16) {
    let mut rogue = connect_worker("127.0.0.1", port, "rogue_0123").expect("rogue identity");
    tokio::time::timeout(
        Duration::from_secs(10),
        rogue.connected.wait_for(|count| *count > 0),
    )
    .await
    .expect("rogue connects in time")
    .expect("rogue link open");
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
        Bytes::from(Envelope::encode("frobnicate", Value::from(42), node)),
        // A well-formed heartbeat from an unknown node: answered with `reconnect`.
        Bytes::from(
            ToMaster::Heartbeat(swarm::protocol::Heartbeat {
                state: swarm::protocol::WorkerState::Ready,
                cpu_usage: 1.0,
                memory_usage: 1,
            })
            .to_wire(node),
        ),
    ];
    for frame in frames {
        rogue.outgoing.try_send(frame).expect("rogue link open");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
}

#[test]
fn hostile_frames_are_logged_and_ignored() {
    let nginx = Nginx::start(NginxOptions::default());
    let dir = TempDir::new("swarm-bad-frames");
    let (mut master, port, api) = master_with_ui(&dir, &["--host", &nginx.url()]);
    let _worker = worker(&dir, port, &[]);
    wait_until(Duration::from_secs(20), "the worker to join", || {
        (get_json(&format!("{api}/stats/requests"))["worker_count"] == 1).then_some(())
    });

    // Raw garbage on the TCP port: not even a ZeroMQ greeting.
    let mut raw = std::net::TcpStream::connect(support_addr(port)).expect("raw connect");
    raw.write_all(b"GET / HTTP/1.1\r\n\r\n\x00\xff\x13garbage")
        .expect("raw write");
    drop(raw);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(send_hostile_frames(port));

    let (status, body) = http_post_form(
        &format!("{api}/swarm"),
        &[("user_count", "4"), ("spawn_rate", "4")],
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"success\":true"), "{body}");
    // More garbage while the run is going.
    runtime.block_on(send_hostile_frames(port));
    let counted = wait_until(Duration::from_secs(20), "requests to be counted", || {
        let n = common::support::aggregated_row(&get_json(&format!("{api}/stats/requests")))
            ["num_requests"]
            .as_u64()
            .unwrap_or(0);
        (n > 1_000).then_some(n)
    });
    std::thread::sleep(Duration::from_secs(3));
    let stats = get_json(&format!("{api}/stats/requests"));
    assert_eq!(
        stats["worker_count"], 1,
        "only the real worker is registered: {}",
        stats["workers"]
    );
    assert_eq!(stats["state"], "running");
    let (status, _) = http_post_form(&format!("{api}/stop"), &[]);
    assert_eq!(status, 200);
    wait_until(Duration::from_secs(15), "the run to stop", || {
        (get_json(&format!("{api}/stats/requests"))["state"] == "stopped").then_some(())
    });
    let total = common::support::aggregated_row(&get_json(&format!("{api}/stats/requests")))
        ["num_requests"]
        .as_f64()
        .unwrap_or(0.0);
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
