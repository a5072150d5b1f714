//! ZMTP PLAIN (RFC 24), both ends: the worker presents the join secret
//! as HELLO's password; the master checks it in constant time (any
//! username) and answers WELCOME, or ERROR and the connection ends. Then
//! INITIATE carries the client's metadata and READY the server's.
//! Nothing here is encrypted: PLAIN proves who joins, it hides nothing.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::{
    encode_command, encode_metadata_command, encode_ready, error_reason, parse_command,
    read_command, read_metadata, take_short_string, PeerReady, ZmtpError, MAX_COMMAND,
};
use crate::protocol::secret::{JoinSecret, JOIN_SECRET_ENV};

/// Largest HELLO accepted: its name (6 bytes) and two ZMTP short strings,
/// username and password, of at most 1 + 255 bytes each. Checked before
/// anything of it is read, so an unauthenticated peer holds no more.
pub(crate) const MAX_HELLO: usize = 6 + 2 * (1 + 255);

/// The username our workers present; a PLAIN server here accepts any.
const PLAIN_USERNAME: &str = "spotload";

/// The reason our master gives in its ERROR to a wrong secret.
const WRONG_SECRET: &str = "wrong join secret";

/// Appends a ZMTP short string: one length byte, then at most 255 bytes
/// (longer input is cut; every caller passes checked values).
fn put_short_string(text: &[u8], out: &mut Vec<u8>) {
    let text = &text[..text.len().min(255)];
    out.push(text.len() as u8);
    out.extend_from_slice(text);
}

/// PLAIN's client side: HELLO with the secret, WELCOME (or ERROR: refused),
/// INITIATE with our metadata, READY with theirs.
pub(super) async fn client<R, W>(
    r: &mut R,
    w: &mut W,
    secret: &JoinSecret,
    props: &[(&str, &[u8])],
    minor: u8,
) -> Result<PeerReady, ZmtpError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut hello = Vec::with_capacity(MAX_HELLO);
    put_short_string(PLAIN_USERNAME.as_bytes(), &mut hello);
    put_short_string(secret.reveal().as_bytes(), &mut hello);
    let mut out = BytesMut::new();
    encode_command("HELLO", &hello, &mut out);
    w.write_all(&out).await?;
    let answer = read_command(r, MAX_COMMAND, "WELCOME").await?;
    if let Some(reason) = error_reason(&answer) {
        return Err(ZmtpError::Unauthenticated {
            why: format!(
                "the master refused this worker's join secret ({reason:?}): give the worker \
                 the master's secret with --join-secret-file PATH or {JOIN_SECRET_ENV}"
            ),
        });
    }
    let (name, _) = parse_command(&answer)?;
    if name != b"WELCOME" {
        return Err(ZmtpError::Protocol(format!(
            "expected WELCOME or ERROR after HELLO, got command {:?}",
            String::from_utf8_lossy(name)
        )));
    }
    out.clear();
    encode_metadata_command("INITIATE", props, &mut out);
    w.write_all(&out).await?;
    read_metadata(r, "READY", minor).await
}

/// PLAIN's server side: HELLO, its password checked in constant time
/// (any username), WELCOME or ERROR, then INITIATE and our READY.
pub(super) async fn server<R, W>(
    r: &mut R,
    w: &mut W,
    secret: &JoinSecret,
    props: &[(&str, &[u8])],
    minor: u8,
) -> Result<PeerReady, ZmtpError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let hello = read_command(r, MAX_HELLO, "HELLO").await?;
    let (name, data) = parse_command(&hello)?;
    if name != b"HELLO" {
        return Err(ZmtpError::Protocol(format!(
            "expected HELLO, got command {:?}",
            String::from_utf8_lossy(name)
        )));
    }
    let (_username, rest) = take_short_string(data, "HELLO username")?;
    let (password, rest) = take_short_string(rest, "HELLO password")?;
    if !rest.is_empty() {
        return Err(ZmtpError::Protocol(
            "HELLO carries more than a username and a password".into(),
        ));
    }
    let mut out = BytesMut::new();
    if !secret.matches(password) {
        let mut reason = Vec::new();
        put_short_string(WRONG_SECRET.as_bytes(), &mut reason);
        encode_command("ERROR", &reason, &mut out);
        w.write_all(&out).await?;
        return Err(ZmtpError::Unauthenticated {
            why: format!(
                "the peer presented a wrong join secret: give the worker this master's \
                 secret with --join-secret-file PATH or {JOIN_SECRET_ENV}"
            ),
        });
    }
    encode_command("WELCOME", &[], &mut out);
    w.write_all(&out).await?;
    let ready = read_metadata(r, "INITIATE", minor).await?;
    out.clear();
    encode_ready(props, &mut out);
    w.write_all(&out).await?;
    Ok(ready)
}
