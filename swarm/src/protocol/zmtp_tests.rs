//! Codec unit tests: frames, greeting, READY and PING, over in-memory
//! readers (no sockets).

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
    let ours = greeting();
    assert_eq!(ours[0], 0xFF);
    assert_eq!(ours[9], 0x7F);
    assert_eq!(&ours[10..12], &[3, 1], "ZMTP 3.1: PING and PONG");
    assert_eq!(&ours[12..16], b"NULL");
    assert!(ours[16..].iter().all(|&b| b == 0));
    check_greeting(&ours).expect("ours is valid");
    // libzmq's padding carries its identity length; still valid.
    let mut libzmq = ours;
    libzmq[8] = 5;
    libzmq[11] = 1;
    check_greeting(&libzmq).expect("libzmq's is valid");
    let mut old = ours;
    old[10] = 2;
    assert!(check_greeting(&old).is_err());
    let mut plain = ours;
    plain[12..17].copy_from_slice(b"PLAIN");
    assert!(check_greeting(&plain).is_err());
    assert!(check_greeting(&[b'G'; 64]).is_err());
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

#[tokio::test]
async fn handshake_between_two_ends() {
    let (a, b) = tokio::io::duplex(4096);
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let (left, right) = tokio::join!(
        handshake(&mut ar, &mut aw, "ROUTER", None),
        handshake(&mut br, &mut bw, "DEALER", Some(b"node_1")),
    );
    let left = left.expect("router side");
    let right = right.expect("dealer side");
    assert_eq!(left.socket_type, "DEALER");
    assert_eq!(&left.identity[..], b"node_1");
    assert_eq!(right.socket_type, "ROUTER");
    assert!(right.identity.is_empty());
}
