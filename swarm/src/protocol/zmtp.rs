//! ZMTP 3.0 (RFC 23) with the NULL mechanism, as much of it as Locust's
//! ROUTER/DEALER pair uses: the 64-byte greeting, the READY handshake, the
//! frame codec and the PING/PONG commands a 3.1 peer may send.
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

/// Frame flag: more frames of this message follow.
pub(crate) const MORE: u8 = 0x01;
/// Frame flag: the size is 8 bytes big-endian instead of 1 byte.
pub(crate) const LONG: u8 = 0x02;
/// Frame flag: the frame is a command, not message data.
pub(crate) const COMMAND: u8 = 0x04;

/// Largest command body accepted (READY with a 255-byte identity is ~300
/// bytes; PING is at most 19).
pub(crate) const MAX_COMMAND: usize = 64 * 1024;

/// Time a peer has to complete the greeting and READY exchange.
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
        }
    }
}

impl From<io::Error> for ZmtpError {
    fn from(err: io::Error) -> Self {
        ZmtpError::Io(err)
    }
}

/// Our greeting: ZMTP 3.1 (PING and PONG), NULL mechanism, not as-server.
pub(crate) fn greeting() -> [u8; 64] {
    let mut g = [0u8; 64];
    g[0] = 0xFF;
    g[9] = 0x7F;
    g[10] = 3;
    g[11] = 1;
    g[12..16].copy_from_slice(b"NULL");
    g
}

/// Checks a peer's greeting. Only bytes 0 and 9 of the signature are
/// checked: libzmq puts its identity length + 1 in the padding.
pub(crate) fn check_greeting(g: &[u8; 64]) -> Result<(), ZmtpError> {
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
    if &mechanism[..end] != b"NULL" || mechanism[end..].iter().any(|&b| b != 0) {
        return Err(ZmtpError::Protocol(format!(
            "security mechanism {:?} is not supported (only NULL)",
            String::from_utf8_lossy(&mechanism[..end])
        )));
    }
    Ok(())
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
    let mut data = Vec::new();
    for (name, value) in properties {
        data.push(name.len() as u8);
        data.extend_from_slice(name.as_bytes());
        data.extend_from_slice(&(value.len() as u32).to_be_bytes());
        data.extend_from_slice(value);
    }
    encode_command("READY", &data, out);
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

/// What the peer said about itself in its READY.
#[derive(Debug, Clone)]
pub(crate) struct PeerReady {
    pub socket_type: String,
    pub identity: Bytes,
    /// The minor version of ZMTP 3 the peer greeted with: 1 and up
    /// understand PING.
    pub minor: u8,
}

/// Runs the greeting and READY exchange (bounded by [`HANDSHAKE_TIMEOUT`]):
/// sends ours whole first, then reads the peer's.
pub(crate) async fn handshake<R, W>(
    r: &mut R,
    w: &mut W,
    socket_type: &str,
    identity: Option<&[u8]>,
) -> Result<PeerReady, ZmtpError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let exchange = async {
        w.write_all(&greeting()).await?;
        let mut theirs = [0u8; 64];
        r.read_exact(&mut theirs).await?;
        check_greeting(&theirs)?;
        let mut out = BytesMut::new();
        let mut props: Vec<(&str, &[u8])> = vec![("Socket-Type", socket_type.as_bytes())];
        if let Some(id) = identity {
            props.push(("Identity", id));
        }
        encode_ready(&props, &mut out);
        w.write_all(&out).await?;
        let Incoming::Command(body) = read_incoming(r, MAX_COMMAND).await? else {
            return Err(ZmtpError::Protocol(
                "a message before the READY command".into(),
            ));
        };
        let (name, data) = parse_command(&body)?;
        if name == b"ERROR" {
            let reason = data.get(1..).unwrap_or_default();
            return Err(ZmtpError::Protocol(format!(
                "peer refused the handshake: {}",
                String::from_utf8_lossy(reason)
            )));
        }
        if name != b"READY" {
            return Err(ZmtpError::Protocol(format!(
                "expected READY, got command {:?}",
                String::from_utf8_lossy(name)
            )));
        }
        let mut ready = PeerReady {
            socket_type: String::new(),
            identity: Bytes::new(),
            minor: if theirs[10] > 3 { u8::MAX } else { theirs[11] },
        };
        for (name, value) in parse_properties(data)? {
            if name.eq_ignore_ascii_case(b"Socket-Type") {
                ready.socket_type = String::from_utf8_lossy(value).into_owned();
            } else if name.eq_ignore_ascii_case(b"Identity") {
                ready.identity = Bytes::copy_from_slice(value);
            }
        }
        Ok(ready)
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

#[cfg(test)]
#[path = "zmtp_tests.rs"]
mod tests;
