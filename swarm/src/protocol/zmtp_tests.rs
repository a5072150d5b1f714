//! Codec unit tests: frames, greetings, the NULL and PLAIN handshakes and
//! PING, over in-memory readers and duplex pipes (no sockets).

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

async fn decode(bytes: &[u8], cap: usize) -> Result<Incoming, ZmtpError> {
    let mut r = bytes;
    read_incoming(&mut r, cap).await
}

#[test]
fn short_frames_have_a_one_byte_size() {
    let mut out = BytesMut::new();
    encode_frame(0, b"hello", &mut out);
    assert_eq!(&out[..], b"\x00\x05hello");
    out.clear();
    encode_frame(MORE, &[7u8; 255], &mut out);
    assert_eq!(&out[..2], &[MORE, 255]);
    assert_eq!(out.len(), 257);
}

#[test]
fn long_frames_have_an_eight_byte_size() {
    let mut out = BytesMut::new();
    encode_frame(0, &[1u8; 256], &mut out);
    assert_eq!(out[0], LONG);
    assert_eq!(&out[1..9], &256u64.to_be_bytes());
    assert_eq!(out.len(), 9 + 256);
}

#[tokio::test]
async fn frames_decode_short_and_long() {
    let mut out = BytesMut::new();
    encode_frame(0, b"abc", &mut out);
    assert_eq!(
        decode(&out, 1024).await.expect("short"),
        Incoming::Message(Bytes::from_static(b"abc"))
    );
    let big = vec![9u8; 1000];
    out.clear();
    encode_frame(0, &big, &mut out);
    assert_eq!(
        decode(&out, 1024).await.expect("long"),
        Incoming::Message(Bytes::from(big))
    );
}

#[tokio::test]
async fn a_multi_frame_message_yields_its_last_frame() {
    let mut out = BytesMut::new();
    encode_frame(MORE, b"", &mut out);
    encode_frame(MORE, b"middle", &mut out);
    encode_frame(0, b"payload", &mut out);
    encode_frame(0, b"next", &mut out);
    let mut r = &out[..];
    assert_eq!(
        read_incoming(&mut r, 1024).await.expect("first"),
        Incoming::Message(Bytes::from_static(b"payload"))
    );
    assert_eq!(
        read_incoming(&mut r, 1024).await.expect("second"),
        Incoming::Message(Bytes::from_static(b"next"))
    );
}

#[tokio::test]
async fn sizes_over_the_cap_are_refused_before_reading() {
    // 2^50 announced, no body at all: refused from the header alone.
    let mut huge = vec![LONG];
    huge.extend_from_slice(&(1u64 << 50).to_be_bytes());
    match decode(&huge, 1024).await {
        Err(ZmtpError::TooLarge { announced, .. }) => assert_eq!(announced, 1 << 50),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // Two frames of 600 under a cap of 1000: the message total is refused.
    let mut out = BytesMut::new();
    encode_frame(MORE, &[0u8; 600], &mut out);
    encode_frame(0, &[0u8; 600], &mut out);
    match decode(&out, 1000).await {
        Err(ZmtpError::TooLarge { what, .. }) => assert_eq!(what, "message"),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // A command over MAX_COMMAND.
    let mut cmd = vec![COMMAND | LONG];
    cmd.extend_from_slice(&(MAX_COMMAND as u64 + 1).to_be_bytes());
    assert!(matches!(
        decode(&cmd, usize::MAX).await,
        Err(ZmtpError::TooLarge {
            what: "command",
            ..
        })
    ));
}

#[tokio::test]
async fn a_truncated_frame_is_an_error() {
    assert!(matches!(
        decode(b"\x00\x05hel", 1024).await,
        Err(ZmtpError::Io(_))
    ));
}

#[test]
fn greetings_are_checked() {
    let ours = greeting(&Mechanism::Null);
    assert_eq!(ours[0], 0xFF);
    assert_eq!(ours[9], 0x7F);
    assert_eq!(&ours[10..12], &[3, 1], "ZMTP 3.1: PING and PONG");
    assert_eq!(&ours[12..16], b"NULL");
    assert!(ours[16..].iter().all(|&b| b == 0));
    let parsed = check_greeting(&ours).expect("ours is valid");
    assert_eq!((parsed.minor, parsed.mechanism.as_str()), (1, "NULL"));
    // libzmq's padding carries its identity length; a 3.0 peer is fine.
    let mut libzmq = ours;
    libzmq[8] = 5;
    libzmq[11] = 0;
    assert_eq!(check_greeting(&libzmq).expect("libzmq's is valid").minor, 0);
    let mut old = ours;
    old[10] = 2;
    assert!(check_greeting(&old).is_err());
    let mut junk = ours;
    junk[12..20].copy_from_slice(b"NU\0LLxyz");
    assert!(check_greeting(&junk).is_err(), "bytes after the name's end");
    assert!(check_greeting(&[b'G'; 64]).is_err());
}

#[test]
fn plain_greetings_name_the_mechanism_and_the_server() {
    let secret = JoinSecret::new("s3cret").expect("valid");
    let server = greeting(&Mechanism::PlainServer(secret.clone()));
    let client = greeting(&Mechanism::PlainClient(secret));
    for g in [server, client] {
        assert_eq!(&g[10..12], &[3, 1]);
        assert_eq!(&g[12..18], b"PLAIN\0");
        let parsed = check_greeting(&g).expect("valid");
        assert_eq!(parsed.mechanism, "PLAIN");
    }
    assert_eq!((server[32], client[32]), (1, 0), "as-server flags");
}

#[tokio::test]
async fn ready_round_trips() {
    let mut out = BytesMut::new();
    encode_ready(
        &[("Socket-Type", b"DEALER"), ("Identity", b"w_1")],
        &mut out,
    );
    let Incoming::Command(body) = decode(&out, 0).await.expect("command") else {
        panic!("not a command");
    };
    let (name, data) = parse_command(&body).expect("parse");
    assert_eq!(name, b"READY");
    let props = parse_properties(data).expect("properties");
    assert_eq!(
        props,
        vec![
            (&b"Socket-Type"[..], &b"DEALER"[..]),
            (&b"Identity"[..], &b"w_1"[..])
        ]
    );
    assert!(parse_properties(b"\x05Ident").is_err());
    assert!(parse_properties(b"\x01a\x00\x00\x00\x09short").is_err());
}

#[tokio::test]
async fn ping_is_answered_with_its_context() {
    let mut ping = BytesMut::new();
    encode_command("PING", b"\x00\x0actx", &mut ping);
    let Incoming::Command(body) = decode(&ping, 0).await.expect("command") else {
        panic!("not a command");
    };
    let pong = answer_command(&body).expect("a pong");
    let mut expected = BytesMut::new();
    encode_command("PONG", b"ctx", &mut expected);
    assert_eq!(pong, expected);
    let mut other = BytesMut::new();
    encode_command("SUBSCRIBE", b"", &mut other);
    assert!(answer_command(&other[2..]).is_none());
}

/// Both ends of one in-memory connection, handshaking at once with the
/// given mechanisms: (router side, dealer side).
async fn handshake_pair(
    router: Mechanism,
    dealer: Mechanism,
) -> (Result<PeerReady, ZmtpError>, Result<PeerReady, ZmtpError>) {
    let (a, b) = tokio::io::duplex(4096);
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    tokio::join!(
        handshake(&mut ar, &mut aw, "ROUTER", None, &router),
        handshake(&mut br, &mut bw, "DEALER", Some(b"node_1"), &dealer),
    )
}

fn secret(value: &str) -> JoinSecret {
    JoinSecret::new(value).expect("a valid secret")
}

/// The `why` of an [`ZmtpError::Unauthenticated`], or a panic naming what
/// came instead.
fn refusal(result: Result<PeerReady, ZmtpError>) -> String {
    match result {
        Err(ZmtpError::Unauthenticated { why }) => why,
        other => panic!("expected Unauthenticated, got {other:?}"),
    }
}

#[tokio::test]
async fn handshake_between_two_ends() {
    let (left, right) = handshake_pair(Mechanism::Null, Mechanism::Null).await;
    let left = left.expect("router side");
    let right = right.expect("dealer side");
    assert_eq!(left.socket_type, "DEALER");
    assert_eq!(&left.identity[..], b"node_1");
    assert_eq!(left.minor, 1, "we greet as 3.1");
    assert_eq!(right.socket_type, "ROUTER");
    assert!(right.identity.is_empty());
}

#[tokio::test]
async fn plain_with_the_same_secret_carries_the_metadata_both_ways() {
    let (master, worker) = handshake_pair(
        Mechanism::server(Some(secret("s3cret-Value"))),
        Mechanism::client(Some(secret("s3cret-Value"))),
    )
    .await;
    let master = master.expect("the master admits the worker");
    let worker = worker.expect("the worker is admitted");
    assert_eq!(master.socket_type, "DEALER");
    assert_eq!(&master.identity[..], b"node_1", "from INITIATE");
    assert_eq!(worker.socket_type, "ROUTER", "from READY");
    assert_eq!((master.minor, worker.minor), (1, 1));
}

#[tokio::test]
async fn a_wrong_secret_is_refused_on_both_ends_with_the_reason() {
    let (master, worker) = handshake_pair(
        Mechanism::server(Some(secret("right"))),
        Mechanism::client(Some(secret("wrong"))),
    )
    .await;
    let master = refusal(master);
    assert!(master.contains("wrong join secret"), "{master}");
    assert!(master.contains("--join-secret-file"), "{master}");
    let worker = refusal(worker);
    assert!(
        worker.contains("refused this worker's join secret")
            && worker.contains("\"wrong join secret\""),
        "the master's reason, quoted: {worker}"
    );
    assert!(!worker.contains("right") && !master.contains("right"));
}

#[tokio::test]
async fn null_and_plain_refuse_each_other_saying_who_lacks_the_secret() {
    // A worker without a secret at a master with one.
    let (master, worker) =
        handshake_pair(Mechanism::server(Some(secret("s"))), Mechanism::Null).await;
    let master = refusal(master);
    assert!(
        master.contains("no join secret") && master.contains("this master requires one"),
        "{master}"
    );
    let worker = refusal(worker);
    assert!(
        worker.starts_with("this master requires the join secret")
            && worker.contains("--join-secret-file")
            && worker.contains("SPOTLOAD_JOIN_SECRET"),
        "{worker}"
    );
    // A worker with a secret at a master without one.
    let (master, worker) =
        handshake_pair(Mechanism::Null, Mechanism::client(Some(secret("s")))).await;
    let master = refusal(master);
    assert!(master.contains("this master has none"), "{master}");
    let worker = refusal(worker);
    assert!(
        worker.starts_with("the master has no join secret but this worker was given one"),
        "{worker}"
    );
}

/// A PLAIN server end over one side of a duplex; the test drives the
/// other side by hand, having read the server's greeting.
async fn plain_server_facing_raw_peer(
    secret_value: &str,
) -> (
    tokio::task::JoinHandle<Result<PeerReady, ZmtpError>>,
    tokio::io::DuplexStream,
) {
    let (ours, mut raw) = tokio::io::duplex(1 << 16);
    let mechanism = Mechanism::server(Some(secret(secret_value)));
    let server = tokio::spawn(async move {
        let (mut r, mut w) = tokio::io::split(ours);
        handshake(&mut r, &mut w, "ROUTER", None, &mechanism).await
    });
    let client = greeting(&Mechanism::PlainClient(secret("x")));
    raw.write_all(&client).await.expect("client greeting");
    let mut theirs = [0u8; 64];
    raw.read_exact(&mut theirs).await.expect("server greeting");
    (server, raw)
}

#[tokio::test]
async fn an_oversized_hello_is_refused_from_its_header() {
    // 2^40 bytes announced and nothing sent: refused at once, not after
    // waiting for (or reserving) the body.
    let (server, mut raw) = plain_server_facing_raw_peer("s").await;
    let mut header = vec![COMMAND | LONG];
    header.extend_from_slice(&(1u64 << 40).to_be_bytes());
    raw.write_all(&header).await.expect("header");
    let started = std::time::Instant::now();
    match server.await.expect("server task") {
        Err(ZmtpError::TooLarge {
            what: "HELLO",
            announced,
            limit,
        }) => {
            assert_eq!(announced, 1 << 40);
            assert_eq!(limit, plain::MAX_HELLO);
        }
        other => panic!("expected TooLarge HELLO, got {other:?}"),
    }
    assert!(started.elapsed() < HANDSHAKE_TIMEOUT / 2);
    // Under the general command cap but over HELLO's: refused too.
    let (server, mut raw) = plain_server_facing_raw_peer("s").await;
    let mut header = vec![COMMAND | LONG];
    header.extend_from_slice(&(plain::MAX_HELLO as u64 + 1).to_be_bytes());
    raw.write_all(&header).await.expect("header");
    assert!(matches!(
        server.await.expect("server task"),
        Err(ZmtpError::TooLarge { what: "HELLO", .. })
    ));
}

#[tokio::test]
async fn the_server_answers_a_wrong_hello_with_an_error_command() {
    let (server, mut raw) = plain_server_facing_raw_peer("right").await;
    // Any username; password "nope".
    let mut hello = BytesMut::new();
    encode_command("HELLO", b"\x05alice\x04nope", &mut hello);
    raw.write_all(&hello).await.expect("hello");
    let Incoming::Command(body) = read_incoming(&mut raw, 0).await.expect("an answer") else {
        panic!("not a command");
    };
    assert_eq!(&body[..], b"\x05ERROR\x11wrong join secret");
    assert!(matches!(
        server.await.expect("server task"),
        Err(ZmtpError::Unauthenticated { .. })
    ));
    // The right password under another username is welcome.
    let (server, mut raw) = plain_server_facing_raw_peer("right").await;
    hello.clear();
    encode_command("HELLO", b"\x03bob\x05right", &mut hello);
    raw.write_all(&hello).await.expect("hello");
    let Incoming::Command(body) = read_incoming(&mut raw, 0).await.expect("an answer") else {
        panic!("not a command");
    };
    assert_eq!(&body[..], b"\x07WELCOME");
    let mut initiate = BytesMut::new();
    encode_metadata_command("INITIATE", &[("Socket-Type", b"DEALER")], &mut initiate);
    raw.write_all(&initiate).await.expect("initiate");
    let ready = server.await.expect("server task").expect("admitted");
    assert_eq!(ready.socket_type, "DEALER");
}

#[test]
fn error_reasons_are_read_in_both_spellings() {
    assert_eq!(
        error_reason(b"\x05ERROR\x11wrong join secret").as_deref(),
        Some("wrong join secret")
    );
    // libzmq 4.3.5's, as captured from a pyzmq PLAIN server refusing a
    // password (its ZAP handler's status code as the reason).
    assert_eq!(error_reason(b"\x5eRROR\x03400").as_deref(), Some("400"));
    assert_eq!(error_reason(b"\x05READY").as_deref(), None);
}

#[tokio::test]
async fn a_libzmq_error_after_hello_is_a_refusal() {
    let (ours, mut raw) = tokio::io::duplex(1 << 16);
    let mechanism = Mechanism::client(Some(secret("pw")));
    let client = tokio::spawn(async move {
        let (mut r, mut w) = tokio::io::split(ours);
        handshake(&mut r, &mut w, "DEALER", Some(b"node_1"), &mechanism).await
    });
    raw.write_all(&greeting(&Mechanism::PlainServer(secret("other"))))
        .await
        .expect("server greeting");
    let mut theirs = [0u8; 64];
    raw.read_exact(&mut theirs).await.expect("client greeting");
    let Incoming::Command(hello) = read_incoming(&mut raw, 0).await.expect("hello") else {
        panic!("not a command");
    };
    assert_eq!(&hello[..], b"\x05HELLO\x08spotload\x02pw");
    raw.write_all(b"\x04\x09\x5eRROR\x03400")
        .await
        .expect("libzmq's ERROR");
    let why = refusal(client.await.expect("client task"));
    assert!(why.contains("\"400\""), "{why}");
}

#[tokio::test]
async fn a_libzmq_peer_gets_our_greeting_in_two_steps_and_its_mechanism_is_read() {
    // As libzmq (a stock Locust worker) does: its signature at once, its
    // major version once it has our signature, the rest once it has our
    // major version; it hangs up as soon as it reads a mechanism not its own.
    let (ours, mut raw) = tokio::io::duplex(1 << 16);
    let mechanism = Mechanism::server(Some(secret("s")));
    let server = tokio::spawn(async move {
        let (mut r, mut w) = tokio::io::split(ours);
        handshake(&mut r, &mut w, "ROUTER", None, &mechanism).await
    });
    let null = greeting(&Mechanism::Null);
    raw.write_all(&null[..10]).await.expect("signature");
    let mut head = [0u8; 11];
    raw.read_exact(&mut head)
        .await
        .expect("our signature and major");
    assert_eq!((head[0], head[9], head[10]), (0xFF, 0x7F, 3));
    raw.write_all(&null[10..])
        .await
        .expect("the rest of theirs");
    let mut rest = [0u8; 53];
    raw.read_exact(&mut rest).await.expect("the rest of ours");
    assert_eq!(&rest[1..6], b"PLAIN");
    drop(raw);
    let why = refusal(server.await.expect("server task"));
    assert!(
        why.starts_with("the peer has no join secret (it speaks ZMTP NULL)")
            && why.contains("stock Locust worker"),
        "{why}"
    );
}
