//! ZMTP 3.1 (RFC 23, 37) with the NULL and PLAIN (RFC 24) mechanisms, as
//! much of it as Locust's ROUTER/DEALER pair uses: the 64-byte greeting,
//! the handshake of each mechanism, the frame codec and the PING/PONG
//! commands a 3.1 peer may send.
//!
//! NULL is what Locust speaks: anyone who reaches the port joins. PLAIN
//! carries the join secret ([`JoinSecret`]) as its password: the master
//! ([`Mechanism::PlainServer`]) checks it in constant time and answers
//! WELCOME or ERROR; it authenticates, it does not encrypt. A peer whose
//! mechanism differs from ours is refused with
//! [`ZmtpError::Unauthenticated`], saying which side lacks the secret;
//! like libzmq, we close without an ERROR then (the peer learns the
//! mismatch from our greeting). Greetings go in two steps, as libzmq
//! sends them, so the peer's mechanism is read before it can hang up.
//!
//! Every size a peer announces is checked against a cap *before* anything is
//! allocated for it, and a frame's body is read as it arrives (a peer that
//! announces 8 MiB and sends nothing costs nothing). A peer that breaks the
//! protocol gets an [`ZmtpError`] naming what it did; the caller logs it and
//! closes that connection only.

use std::fmt;
use std::io;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::secret::{JoinSecret, JOIN_SECRET_ENV};

/// Frame flag: more frames of this message follow.
pub(crate) const MORE: u8 = 0x01;
/// Frame flag: the size is 8 bytes big-endian instead of 1 byte.
pub(crate) const LONG: u8 = 0x02;
/// Frame flag: the frame is a command, not message data.
pub(crate) const COMMAND: u8 = 0x04;

/// Largest command body accepted (READY or INITIATE with a 255-byte
/// identity is ~300 bytes; PING is at most 19): room for a peer's extra
/// metadata, while bounding what one connection can make us hold.
pub(crate) const MAX_COMMAND: usize = 64 * 1024;

/// The ZMTP version we greet with: 3.1, which adds PING/PONG (RFC 37).
const VERSION: (u8, u8) = (3, 1);

/// Time a peer has to complete the greeting and the handshake of its
/// mechanism (for PLAIN: HELLO to READY).
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What went wrong on one connection.
#[derive(Debug)]
pub(crate) enum ZmtpError {
    Io(io::Error),
    /// The peer broke the protocol (bad greeting, unexpected command...).
    Protocol(String),
    /// The peer announced more than we accept.
    TooLarge {
        what: &'static str,
        announced: u64,
        limit: usize,
    },
    /// The peer did not finish the handshake in time.
    Timeout,
    /// The peers disagree on the join secret: one has none, or it is not
    /// the same. `why` says which, and what to do.
    Unauthenticated {
        why: String,
    },
}

impl fmt::Display for ZmtpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ZmtpError::Io(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
                write!(f, "connection closed")
            }
            ZmtpError::Io(err) => write!(f, "{err}"),
            ZmtpError::Protocol(why) => write!(f, "protocol error: {why}"),
            ZmtpError::TooLarge {
                what,
                announced,
                limit,
            } => write!(
                f,
                "{what} of {announced} bytes announced, over the limit of {limit} bytes"
            ),
            ZmtpError::Timeout => write!(
                f,
                "no ZMTP handshake within {}s",
                HANDSHAKE_TIMEOUT.as_secs()
            ),
            ZmtpError::Unauthenticated { why } => f.write_str(why),
        }
    }
}

impl From<io::Error> for ZmtpError {
    fn from(err: io::Error) -> Self {
        ZmtpError::Io(err)
    }
}

/// How one end of a connection authenticates: the security mechanism of
/// its greeting (RFC 23), and for PLAIN the join secret.
#[derive(Debug, Clone)]
pub(crate) enum Mechanism {
    /// No authentication (Locust's): anyone who connects is a peer.
    Null,
    /// The master's end of PLAIN: peers must present this secret.
    PlainServer(JoinSecret),
    /// A worker's end of PLAIN: it presents this secret.
    PlainClient(JoinSecret),
}

impl Mechanism {
    /// The master's mechanism: PLAIN with a secret, NULL without.
    pub(crate) fn server(secret: Option<JoinSecret>) -> Mechanism {
        secret.map_or(Mechanism::Null, Mechanism::PlainServer)
    }

    /// A worker's mechanism: PLAIN with a secret, NULL without.
    pub(crate) fn client(secret: Option<JoinSecret>) -> Mechanism {
        secret.map_or(Mechanism::Null, Mechanism::PlainClient)
    }

    /// The name in the greeting.
    fn name(&self) -> &'static [u8] {
        match self {
            Mechanism::Null => b"NULL",
            Mechanism::PlainServer(_) | Mechanism::PlainClient(_) => b"PLAIN",
        }
    }
}

/// Our greeting: ZMTP 3.1 with `mechanism`'s name, and the as-server flag
/// set for a PLAIN server (RFC 24).
pub(crate) fn greeting(mechanism: &Mechanism) -> [u8; 64] {
    let mut g = [0u8; 64];
    g[0] = 0xFF;
    g[9] = 0x7F;
    (g[10], g[11]) = VERSION;
    let name = mechanism.name();
    g[12..12 + name.len()].copy_from_slice(name);
    g[32] = u8::from(matches!(mechanism, Mechanism::PlainServer(_)));
    g
}

/// What a peer's greeting says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Greeting {
    /// Its minor version (3.1 and later understand PING/PONG).
    pub minor: u8,
    /// Its security mechanism's name, e.g. `NULL`, `PLAIN`, `CURVE`.
    pub mechanism: String,
}

/// Checks a peer's greeting. Only bytes 0 and 9 of the signature are
/// checked: libzmq puts its identity length + 1 in the padding. Nor is the
/// as-server flag: libzmq 4.3.5 sends 0 from its PLAIN servers too.
pub(crate) fn check_greeting(g: &[u8; 64]) -> Result<Greeting, ZmtpError> {
    if g[0] != 0xFF || g[9] & 0x01 == 0 {
        return Err(ZmtpError::Protocol(
            "not a ZMTP 3 greeting (bad signature)".into(),
        ));
    }
    if g[10] < 3 {
        return Err(ZmtpError::Protocol(format!(
            "ZMTP version {}.{} is too old (3.0 needed)",
            g[10], g[11]
        )));
    }
    let mechanism = &g[12..32];
    let end = mechanism.iter().position(|&b| b == 0).unwrap_or(20);
    let name = String::from_utf8_lossy(&mechanism[..end]).into_owned();
    if mechanism[end..].iter().any(|&b| b != 0) {
        return Err(ZmtpError::Protocol(format!(
            "malformed security mechanism {name:?} in the greeting"
        )));
    }
    Ok(Greeting {
        minor: g[11],
        mechanism: name,
    })
}

/// The greeting's first part: the signature (10 bytes) and the major
/// version. libzmq sends the rest of its greeting only once it has read
/// this much of ours, and reads our mechanism only after that.
const GREETING_HEAD: usize = 11;

/// Exchanges greetings in two steps, as libzmq does: our signature and
/// major version, then theirs; then the rest of ours, then theirs. So the
/// peer's mechanism is always read, even from a libzmq peer that hangs up
/// as soon as it sees ours is not its own.
async fn exchange_greetings<R, W>(
    r: &mut R,
    w: &mut W,
    mechanism: &Mechanism,
) -> Result<Greeting, ZmtpError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let ours = greeting(mechanism);
    w.write_all(&ours[..GREETING_HEAD]).await?;
    let mut theirs = [0u8; 64];
    r.read_exact(&mut theirs[..GREETING_HEAD]).await?;
    if theirs[0] != 0xFF || theirs[9] & 0x01 == 0 {
        return Err(ZmtpError::Protocol(
            "not a ZMTP 3 greeting (bad signature)".into(),
        ));
    }
    w.write_all(&ours[GREETING_HEAD..]).await?;
    r.read_exact(&mut theirs[GREETING_HEAD..]).await?;
    check_greeting(&theirs)
}

/// The refusal when the peer's mechanism is not ours: which side lacks the
/// secret, said from this end (`we_are_master`) with what to do.
fn mismatch(ours: &Mechanism, theirs: &str, we_are_master: bool) -> ZmtpError {
    let why = match (ours, theirs, we_are_master) {
        (Mechanism::PlainServer(_), "NULL", _) => format!(
            "the peer has no join secret (it speaks ZMTP NULL) but this master requires one: \
             start the worker with --join-secret-file PATH or {JOIN_SECRET_ENV} \
             (a stock Locust worker cannot present one)"
        ),
        (Mechanism::PlainClient(_), "NULL", _) => format!(
            "the master has no join secret but this worker was given one: start the master \
             with the same --join-secret-file or {JOIN_SECRET_ENV}, or this worker without one"
        ),
        (Mechanism::Null, "PLAIN", true) => format!(
            "the peer presents a join secret (ZMTP PLAIN) but this master has none: start the \
             master with the same --join-secret-file or {JOIN_SECRET_ENV}, or the worker without one"
        ),
        (Mechanism::Null, "PLAIN", false) => format!(
            "this master requires the join secret: start the worker with \
             --join-secret-file PATH or {JOIN_SECRET_ENV}"
        ),
        (_, other, _) => format!(
            "the peer speaks security mechanism {other:?}; this end speaks {}: \
             only NULL (no join secret) and PLAIN (a join secret) are supported",
            String::from_utf8_lossy(ours.name())
        ),
    };
    ZmtpError::Unauthenticated { why }
}

/// Appends one frame (header and body) to `out`.
pub(crate) fn encode_frame(flags: u8, body: &[u8], out: &mut BytesMut) {
    if body.len() > 255 {
        out.reserve(9 + body.len());
        out.put_u8(flags | LONG);
        out.put_u64(body.len() as u64);
    } else {
        out.reserve(2 + body.len());
        out.put_u8(flags & !LONG);
        out.put_u8(body.len() as u8);
    }
    out.put_slice(body);
}

/// Appends a command frame `name` + `data` to `out`.
pub(crate) fn encode_command(name: &str, data: &[u8], out: &mut BytesMut) {
    let mut body = Vec::with_capacity(1 + name.len() + data.len());
    body.push(name.len() as u8);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(data);
    encode_frame(COMMAND, &body, out);
}

/// Appends a READY command with these metadata properties.
pub(crate) fn encode_ready(properties: &[(&str, &[u8])], out: &mut BytesMut) {
    encode_metadata_command("READY", properties, out);
}

/// Appends command `name` (READY, INITIATE) carrying metadata properties.
fn encode_metadata_command(name: &str, properties: &[(&str, &[u8])], out: &mut BytesMut) {
    let mut data = Vec::new();
    for (name, value) in properties {
        data.push(name.len() as u8);
        data.extend_from_slice(name.as_bytes());
        data.extend_from_slice(&(value.len() as u32).to_be_bytes());
        data.extend_from_slice(value);
    }
    encode_command(name, &data, out);
}

/// Splits a ZMTP short string off the front of `data`.
fn take_short_string<'a>(data: &'a [u8], what: &str) -> Result<(&'a [u8], &'a [u8]), ZmtpError> {
    let bad = || ZmtpError::Protocol(format!("malformed {what}"));
    let (&len, rest) = data.split_first().ok_or_else(bad)?;
    let len = usize::from(len);
    let text = rest.get(..len).ok_or_else(bad)?;
    Ok((text, &rest[len..]))
}

/// The reason in an ERROR command body, or `None` when `body` is not one.
/// Two spellings are taken: RFC 23's (`\x05ERROR`), and libzmq 4.3's,
/// whose C literal `"\x05ERROR"` makes one byte of `\x05E` and so sends
/// `\x5ERROR` (seen on the wire from pyzmq 27 / libzmq 4.3.5).
pub(crate) fn error_reason(body: &[u8]) -> Option<String> {
    let data = body
        .strip_prefix(b"\x05ERROR")
        .or_else(|| body.strip_prefix(b"\x5eRROR"))?;
    let reason = match take_short_string(data, "ERROR") {
        Ok((reason, _)) => reason,
        // A reason cut short is still worth showing, as a short string.
        Err(_) => {
            let rest = data.get(1..).unwrap_or_default();
            &rest[..rest.len().min(255)]
        }
    };
    Some(String::from_utf8_lossy(reason).into_owned())
}

/// Splits a command body into its name and data.
pub(crate) fn parse_command(body: &[u8]) -> Result<(&[u8], &[u8]), ZmtpError> {
    let (&len, rest) = body
        .split_first()
        .ok_or_else(|| ZmtpError::Protocol("empty command frame".into()))?;
    let len = usize::from(len);
    if rest.len() < len {
        return Err(ZmtpError::Protocol("truncated command name".into()));
    }
    Ok(rest.split_at(len))
}

/// One metadata property: (name, value).
pub(crate) type Property<'a> = (&'a [u8], &'a [u8]);

/// Parses READY's (or any command's) metadata into (name, value) pairs.
pub(crate) fn parse_properties(mut data: &[u8]) -> Result<Vec<Property<'_>>, ZmtpError> {
    let bad = || ZmtpError::Protocol("malformed READY metadata".into());
    let mut props = Vec::new();
    while let Some((&name_len, rest)) = data.split_first() {
        let name_len = usize::from(name_len);
        let name = rest.get(..name_len).ok_or_else(bad)?;
        let rest = &rest[name_len..];
        let len_bytes: [u8; 4] = rest
            .get(..4)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?;
        let value_len = u32::from_be_bytes(len_bytes) as usize;
        let rest = &rest[4..];
        let value = rest.get(..value_len).ok_or_else(bad)?;
        props.push((name, value));
        data = &rest[value_len..];
    }
    Ok(props)
}

/// Reads one frame header: (flags, announced size).
pub(crate) async fn read_header<R: AsyncRead + Unpin>(r: &mut R) -> Result<(u8, u64), ZmtpError> {
    let flags = r.read_u8().await?;
    let size = if flags & LONG != 0 {
        r.read_u64().await?
    } else {
        u64::from(r.read_u8().await?)
    };
    Ok((flags, size))
}

/// Reads `size` bytes, allocating only as they arrive.
pub(crate) async fn read_body<R: AsyncRead + Unpin>(
    r: &mut R,
    size: usize,
) -> Result<Bytes, ZmtpError> {
    let mut body = Vec::with_capacity(size.min(64 * 1024));
    (&mut *r).take(size as u64).read_to_end(&mut body).await?;
    if body.len() != size {
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
    }
    Ok(Bytes::from(body))
}

/// What one read brought in.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// A complete message: its last frame (Locust sends one frame).
    Message(Bytes),
    /// A command frame: its whole body (name length, name, data).
    Command(Bytes),
}

/// Reads the next message or command. Each frame's announced size and the
/// message's running total are checked against `cap` before reading.
pub(crate) async fn read_incoming<R: AsyncRead + Unpin>(
    r: &mut R,
    cap: usize,
) -> Result<Incoming, ZmtpError> {
    let mut total: u64 = 0;
    let mut in_message = false;
    loop {
        let (flags, size) = read_header(r).await?;
        if flags & COMMAND != 0 {
            if in_message {
                return Err(ZmtpError::Protocol(
                    "command frame inside a multi-frame message".into(),
                ));
            }
            if size > MAX_COMMAND as u64 {
                return Err(ZmtpError::TooLarge {
                    what: "command",
                    announced: size,
                    limit: MAX_COMMAND,
                });
            }
            return Ok(Incoming::Command(read_body(r, size as usize).await?));
        }
        if size > cap as u64 {
            return Err(ZmtpError::TooLarge {
                what: "frame",
                announced: size,
                limit: cap,
            });
        }
        total += size;
        if total > cap as u64 {
            return Err(ZmtpError::TooLarge {
                what: "message",
                announced: total,
                limit: cap,
            });
        }
        // Only the last frame is kept; earlier ones are read and dropped.
        let last = read_body(r, size as usize).await?;
        if flags & MORE == 0 {
            return Ok(Incoming::Message(last));
        }
        in_message = true;
    }
}

/// Reads one handshake command whose body may be at most `limit` bytes:
/// the announced size is checked before anything is read.
async fn read_command<R: AsyncRead + Unpin>(
    r: &mut R,
    limit: usize,
    what: &'static str,
) -> Result<Bytes, ZmtpError> {
    let (flags, size) = read_header(r).await?;
    if flags & COMMAND == 0 {
        return Err(ZmtpError::Protocol(format!(
            "a message before the handshake's {what}"
        )));
    }
    if size > limit as u64 {
        return Err(ZmtpError::TooLarge {
            what,
            announced: size,
            limit,
        });
    }
    read_body(r, size as usize).await
}

/// Reads the peer's metadata command (`expected`: READY or INITIATE); an
/// ERROR instead is the peer's refusal.
async fn read_metadata<R: AsyncRead + Unpin>(
    r: &mut R,
    expected: &'static str,
    minor: u8,
) -> Result<PeerReady, ZmtpError> {
    let body = read_command(r, MAX_COMMAND, expected).await?;
    if let Some(reason) = error_reason(&body) {
        return Err(ZmtpError::Protocol(format!(
            "peer refused the handshake: {reason:?}"
        )));
    }
    let (name, data) = parse_command(&body)?;
    if name != expected.as_bytes() {
        return Err(ZmtpError::Protocol(format!(
            "expected {expected}, got command {:?}",
            String::from_utf8_lossy(name)
        )));
    }
    let mut ready = PeerReady {
        socket_type: String::new(),
        identity: Bytes::new(),
        minor,
    };
    for (name, value) in parse_properties(data)? {
        if name.eq_ignore_ascii_case(b"Socket-Type") {
            ready.socket_type = String::from_utf8_lossy(value).into_owned();
        } else if name.eq_ignore_ascii_case(b"Identity") {
            ready.identity = Bytes::copy_from_slice(value);
        }
    }
    Ok(ready)
}

/// What the peer said about itself in its READY (or INITIATE).
#[derive(Debug, Clone)]
pub(crate) struct PeerReady {
    pub socket_type: String,
    pub identity: Bytes,
    /// The minor version of the peer's ZMTP 3 greeting: 1 and up (3.1)
    /// understand PING/PONG (RFC 37).
    pub minor: u8,
}

/// Runs the greeting and the handshake of `mechanism` (bounded by
/// [`HANDSHAKE_TIMEOUT`]). A `ROUTER` end is the master in the messages of
/// [`ZmtpError::Unauthenticated`].
pub(crate) async fn handshake<R, W>(
    r: &mut R,
    w: &mut W,
    socket_type: &str,
    identity: Option<&[u8]>,
    mechanism: &Mechanism,
) -> Result<PeerReady, ZmtpError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let exchange = async {
        let peer = exchange_greetings(r, w, mechanism).await?;
        if peer.mechanism.as_bytes() != mechanism.name() {
            return Err(mismatch(
                mechanism,
                &peer.mechanism,
                socket_type == "ROUTER",
            ));
        }
        let mut props: Vec<(&str, &[u8])> = vec![("Socket-Type", socket_type.as_bytes())];
        if let Some(id) = identity {
            props.push(("Identity", id));
        }
        match mechanism {
            Mechanism::Null => {
                let mut out = BytesMut::new();
                encode_ready(&props, &mut out);
                w.write_all(&out).await?;
                read_metadata(r, "READY", peer.minor).await
            }
            Mechanism::PlainClient(secret) => plain::client(r, w, secret, &props, peer.minor).await,
            Mechanism::PlainServer(secret) => plain::server(r, w, secret, &props, peer.minor).await,
        }
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange)
        .await
        .map_err(|_| ZmtpError::Timeout)?
}

/// The answer to a command received after the handshake, if any: PONG with
/// the ping's context for a PING, nothing for anything else.
pub(crate) fn answer_command(body: &[u8]) -> Option<BytesMut> {
    let (name, data) = parse_command(body).ok()?;
    if name != b"PING" {
        return None;
    }
    // PING = TTL (2 bytes) + context (0 to 16 bytes).
    let context = data.get(2..).unwrap_or_default();
    let context = &context[..context.len().min(16)];
    let mut out = BytesMut::new();
    encode_command("PONG", context, &mut out);
    Some(out)
}

/// A PING command (ZMTP 3.1, RFC 37) telling the peer to treat the
/// connection as dead after `ttl` of silence (in deciseconds on the wire,
/// at most 6,553.5 s), with no context.
pub(crate) fn ping(ttl: Duration) -> Bytes {
    let deciseconds = u16::try_from(ttl.as_millis() / 100).unwrap_or(u16::MAX);
    let mut out = BytesMut::new();
    encode_command("PING", &deciseconds.to_be_bytes(), &mut out);
    out.freeze()
}

#[path = "zmtp_plain.rs"]
mod plain;

#[cfg(test)]
#[path = "zmtp_tests.rs"]
mod tests;
