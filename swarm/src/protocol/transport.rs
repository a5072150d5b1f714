//! Locust's sockets as channels of frames: the master's ROUTER-like end
//! ([`bind_master`]) and the worker's DEALER-like end ([`connect_worker`]),
//! speaking ZMTP 3.1 over tokio TCP (see `zmtp.rs`) with the NULL mechanism,
//! or PLAIN when given a [`JoinSecret`](super::JoinSecret), so they
//! interoperate with pyzmq/libzmq. The runners above only see `mpsc`
//! channels and can be tested without sockets ([`memory_master_link`]).
//!
//! Why our own ZMTP instead of the `zeromq` 0.7 crate:
//! - its codec reserves whatever length a frame header announces, so one
//!   header announcing 2^50 bytes killed the master; here every frame and
//!   message is capped at [`MAX_FRAME`] *before* anything is allocated, and a
//!   peer over the cap loses its own connection only;
//! - it had no frame cap at all;
//! - one send task served all peers, so a peer that did not read blocked
//!   every send of the master; here each peer has its own bounded queue and
//!   writer, and [`RouterSender::send`] never waits (a full queue drops that
//!   message for that peer, counted, and logged at most once per peer per
//!   10 s);
//! - its DEALER never reconnected; here the worker's end reconnects forever
//!   with backoff, tells its owner each time a new connection is up
//!   ([`WorkerLink::connected`]), and refuses sends while disconnected
//!   rather than queueing them for a connection that may never come.

use std::io;

use bytes::{Bytes, BytesMut};
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

pub use super::dealer::{connect_worker, DealerSender, SendError, WorkerLink};
pub use super::router::{
    bind_master, bind_master_with, memory_master_link, ConnId, Inbound, MasterLink, RouterLimits,
    RouterSender,
};

/// Largest frame (and message) accepted from a peer: 8 MiB.
///
/// A Locust `stats` report with hundreds of names and full response-time
/// bucket maps is tens of KiB, so 8 MiB leaves two orders of magnitude of
/// headroom while bounding what one peer can make the master allocate (bodies
/// are read as they arrive, so a peer pays for its allocation by sending).
pub const MAX_FRAME: usize = 8 * 1024 * 1024;

/// Frames waiting in either direction, per peer, before sends are refused
/// (outgoing) or a peer's reader waits (incoming). Frames the master sends
/// are small (a spawn order is a few hundred bytes), so a peer that never
/// reads costs it at most this many of them; what the master receives is
/// bounded in bytes as well (see [`RouterLimits`]).
pub(crate) const QUEUE: usize = 1024;

/// A frame for a worker: whom it is for and the payload.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The worker's ZeroMQ identity (its node id).
    pub peer: Bytes,
    /// One msgpack-encoded Locust message.
    pub payload: Bytes,
}

/// Why an end of the master–worker link could not start.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The master could not listen.
    #[error("cannot listen on {endpoint}: {source} (is another master running there? pick another --master-bind-port)")]
    Bind {
        /// The `host:port` asked for.
        endpoint: String,
        /// The socket error.
        source: io::Error,
    },
    /// A worker could not reach the master.
    #[error("cannot connect to the master at {endpoint}: {source}")]
    Connect {
        /// The master's `host:port`.
        endpoint: String,
        /// The socket error.
        source: io::Error,
    },
    /// The node id given, which cannot be an identity.
    #[error("node id {0:?} is not a valid ZeroMQ identity (1 to 255 bytes)")]
    Identity(String),
}

/// TCP keepalive on every master–worker connection, both ends: a peer
/// whose host vanished is found in about a minute even when nothing is
/// sent.
pub(crate) fn keepalive(stream: &TcpStream) {
    let params = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(10))
        .with_retries(3);
    let _ = socket2::SockRef::from(stream).set_tcp_keepalive(&params);
}

/// What a connection's writer is asked to do.
#[derive(Debug)]
pub(crate) enum Out {
    /// A one-frame message.
    Data(Bytes),
    /// Bytes already encoded (a PONG command).
    Raw(Bytes),
    /// Acknowledge once everything queued before was written.
    Flush(oneshot::Sender<()>),
}

/// Writes what arrives on `rx` until the channel closes (`Ok`) or the socket
/// fails. Whatever is waiting is batched into one write of up to ~64 KiB;
/// the buffer grows to what is waiting, and a quiet connection (most of a
/// master's: a heartbeat a second) keeps no more than a small one.
pub(crate) async fn write_loop<W: AsyncWrite + Unpin>(
    w: &mut W,
    mut rx: mpsc::Receiver<Out>,
) -> io::Result<()> {
    const BATCH: usize = 64 * 1024;
    const KEPT: usize = 4 * 1024;
    let mut buf = BytesMut::new();
    let mut acks = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(out) = next.take() {
            match out {
                Out::Data(payload) => super::zmtp::encode_frame(0, &payload, &mut buf),
                Out::Raw(bytes) => buf.extend_from_slice(&bytes),
                Out::Flush(ack) => acks.push(ack),
            }
            if buf.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !buf.is_empty() {
            w.write_all(&buf).await?;
            buf.clear();
            if buf.capacity() > KEPT {
                buf = BytesMut::new();
            }
        }
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "transport_tests.rs"]
mod tests;
