//! One worker connection on the master: its handshake, its route, its
//! reader (frames into the master's queue, within their byte budgets and
//! time) and writer side by side, and the timers that close it (not joined
//! in time, silent too long).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use super::{ConnId, Held, Inbound, Peer, Routes, UnjoinedSlot};
use crate::logs::shown_bytes;
use crate::protocol::transport::{keepalive, write_loop, Out, MAX_FRAME, QUEUE};
use crate::protocol::zmtp::{self, ZmtpError};

/// The read buffer of a connection: frame headers and small frames (a
/// heartbeat is about 100 bytes) go through it, bigger bodies are read
/// straight into their own buffer. Every connection, joined or not, holds
/// one, so it stays small.
const READ_BUFFER: usize = 8 * 1024;

/// Socket types a ROUTER talks to (as libzmq checks).
const PEER_TYPES: [&str; 3] = ["DEALER", "REQ", "ROUTER"];

/// Why a connection ended.
enum End {
    Peer(ZmtpError),
    Write(std::io::Error),
    Replaced,
    MasterGone,
    NeverJoined,
    Silent(Duration),
}

/// One connection: handshake, route, then read and write until either ends.
pub(super) async fn serve(
    stream: TcpStream,
    addr: SocketAddr,
    routes: Arc<Routes>,
    in_tx: mpsc::Sender<Inbound>,
    slot: UnjoinedSlot,
) {
    let _ = stream.set_nodelay(true);
    keepalive(&stream);
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::with_capacity(READ_BUFFER, r);
    let ready = tokio::select! {
        ready = zmtp::handshake(&mut r, &mut w, "ROUTER", None, &routes.mechanism) => ready,
        _ = in_tx.closed() => return,
    };
    let ready = match ready {
        Ok(ready) => ready,
        // A port probe (a health check, a test waiting for the port).
        Err(ZmtpError::Io(err)) if err.kind() == std::io::ErrorKind::UnexpectedEof => {
            tracing::debug!("a connection from {addr} closed before its ZMTP handshake");
            return;
        }
        Err(ZmtpError::Unauthenticated { why }) => {
            routes.refused(addr.ip(), &why, || {
                format!("refused a worker at {addr}: {why}")
            });
            return;
        }
        Err(err) => {
            routes.warn("handshake", addr.ip(), || {
                format!("closed a connection from {addr} during the ZMTP handshake: {err}")
            });
            return;
        }
    };
    if !PEER_TYPES.contains(&ready.socket_type.as_str()) {
        routes.warn("socket type", addr.ip(), || {
            format!(
                "closed a connection from {addr}: a {:?} socket cannot talk to a ROUTER",
                crate::logs::shown(&ready.socket_type).to_string()
            )
        });
        return;
    }
    let id = if ready.identity.is_empty() {
        let mut generated = vec![0u8];
        generated.extend_from_slice(&rand::random::<u32>().to_be_bytes());
        Bytes::from(generated)
    } else {
        ready.identity
    };
    let name = shown_bytes(&id);
    let (queue, rx) = mpsc::channel(QUEUE);
    let pongs = queue.downgrade();
    let (close, mut closed) = oneshot::channel();
    let (joined_tx, mut joined_rx) = watch::channel(false);
    let heard = Arc::new(AtomicU64::new(routes.now_ms()));
    let conn = routes.next_conn.fetch_add(1, Ordering::Relaxed);
    let peer = Peer {
        conn,
        addr,
        queue: queue.clone(),
        _close: close,
        heard: heard.clone(),
        joined: joined_tx,
        unwarned_drops: 0,
        warned: None,
    };
    if let Err(live_at) = routes.claim(&id, peer) {
        routes.warn("identity", addr.ip(), || {
            format!(
                "refused a connection from {addr} as worker {name}: that identity is live on {live_at}"
            )
        });
        return;
    }
    tracing::debug!("worker {name} connected from {addr}");
    let limits = routes.limits.clone();
    let reader = Reader {
        id: id.clone(),
        conn,
        source: addr.ip(),
        in_tx: in_tx.clone(),
        pongs,
        joined: joined_rx.clone(),
        heard: heard.clone(),
        peer_budget: Arc::new(Semaphore::new(limits.peer_bytes)),
        total_budget: routes.budget.clone(),
        routes: routes.clone(),
    };
    let reading = reader.run(&mut r);
    let writing = write_loop(&mut w, rx);
    tokio::pin!(reading, writing);
    let join_deadline = tokio::time::sleep(limits.join_timeout);
    tokio::pin!(join_deadline);
    let mut ping = tokio::time::interval(limits.ping_every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut slot = Some(slot);
    let end = loop {
        let joined = slot.is_none();
        tokio::select! {
            end = &mut reading => break end,
            written = &mut writing => break match written {
                Ok(()) => End::Replaced,
                Err(err) => End::Write(err),
            },
            _ = &mut closed => break End::Replaced,
            _ = in_tx.closed() => break End::MasterGone,
            () = &mut join_deadline, if !joined => break End::NeverJoined,
            changed = joined_rx.changed(), if !joined => {
                if changed.is_err() {
                    break End::Replaced;
                }
                if *joined_rx.borrow() {
                    slot = None;
                    ping.reset();
                }
            }
            _ = ping.tick(), if joined => {
                let silent_ms = routes.now_ms().saturating_sub(heard.load(Ordering::Relaxed));
                let silent = Duration::from_millis(silent_ms);
                if silent > limits.silence {
                    break End::Silent(silent);
                }
                if ready.minor >= 1 {
                    let _ = queue.try_send(Out::Raw(zmtp::ping(limits.silence)));
                }
            }
        }
    };
    drop(slot);
    routes.remove(&id, conn);
    match end {
        End::Peer(err @ ZmtpError::TooLarge { .. }) => routes.warn("too large", addr.ip(), || {
            format!("closed the connection of worker {name} at {addr}: {err}")
        }),
        End::Peer(ZmtpError::Io(err)) if err.kind() == std::io::ErrorKind::UnexpectedEof => {
            tracing::debug!("worker {name} at {addr} disconnected");
        }
        End::Peer(err) => routes.warn("disconnected", addr.ip(), || {
            format!("worker {name} at {addr} disconnected: {err}")
        }),
        End::Write(err) => routes.warn("disconnected", addr.ip(), || {
            format!("worker {name} at {addr} disconnected: {err}")
        }),
        End::NeverJoined => routes.warn("never joined", addr.ip(), || {
            format!(
                "closed the connection of {name} at {addr}: it did not join (client_ready) within {:?}",
                limits.join_timeout
            )
        }),
        End::Silent(silent) => routes.warn("silent", addr.ip(), || {
            format!(
                "closed the connection of worker {name} at {addr}: nothing heard for {:.0} s",
                silent.as_secs_f64()
            )
        }),
        End::Replaced => tracing::debug!("closed the older connection of worker {name} at {addr}"),
        End::MasterGone => {}
    }
}

/// A connection's reading side.
struct Reader {
    id: Bytes,
    conn: ConnId,
    source: IpAddr,
    in_tx: mpsc::Sender<Inbound>,
    pongs: mpsc::WeakSender<Out>,
    joined: watch::Receiver<bool>,
    heard: Arc<AtomicU64>,
    peer_budget: Arc<Semaphore>,
    total_budget: Arc<Semaphore>,
    routes: Arc<Routes>,
}

impl Reader {
    /// Reads messages into the master's queue and answers PINGs until the
    /// peer fails or the master goes.
    async fn run<R: AsyncRead + Unpin>(self, r: &mut R) -> End {
        let limits = &self.routes.limits;
        let mut total: u64 = 0;
        let mut in_message = false;
        loop {
            let (flags, size) = match zmtp::read_header(r).await {
                Ok(header) => header,
                Err(err) => return End::Peer(err),
            };
            self.heard.store(self.routes.now_ms(), Ordering::Relaxed);
            if flags & zmtp::COMMAND != 0 {
                match self.command(r, in_message, size).await {
                    Ok(()) => continue,
                    Err(err) => return End::Peer(err),
                }
            }
            let (cap, what) = if *self.joined.borrow() {
                (MAX_FRAME, "frame")
            } else {
                (limits.unjoined_frame, "frame before joining")
            };
            total = total.saturating_add(size);
            if size > cap as u64 || total > cap as u64 {
                return End::Peer(ZmtpError::TooLarge {
                    what,
                    announced: total,
                    limit: cap,
                });
            }
            // The size fits in the budgets: the cap is at most MAX_FRAME.
            let Some(held) = self.hold(size as u32).await else {
                return End::MasterGone;
            };
            let body = tokio::time::timeout(limits.frame_time, zmtp::read_body(r, size as usize));
            let payload = match body.await {
                Ok(Ok(payload)) => payload,
                Ok(Err(err)) => return End::Peer(err),
                Err(_) => {
                    return End::Peer(ZmtpError::Protocol(format!(
                        "a frame of {size} bytes did not arrive within {:?}",
                        limits.frame_time
                    )))
                }
            };
            self.heard.store(self.routes.now_ms(), Ordering::Relaxed);
            if flags & zmtp::MORE != 0 {
                // Only the last frame of a message is kept.
                in_message = true;
                continue;
            }
            (total, in_message) = (0, false);
            let frame = Inbound {
                peer: self.id.clone(),
                conn: self.conn,
                source: self.source,
                payload,
                _held: Some(held),
            };
            if self.in_tx.send(frame).await.is_err() {
                return End::MasterGone;
            }
        }
    }

    /// Reads a command frame and answers it (a PING gets its PONG).
    async fn command<R: AsyncRead + Unpin>(
        &self,
        r: &mut R,
        in_message: bool,
        size: u64,
    ) -> Result<(), ZmtpError> {
        if in_message {
            return Err(ZmtpError::Protocol(
                "command frame inside a multi-frame message".into(),
            ));
        }
        if size > zmtp::MAX_COMMAND as u64 {
            return Err(ZmtpError::TooLarge {
                what: "command",
                announced: size,
                limit: zmtp::MAX_COMMAND,
            });
        }
        let body = tokio::time::timeout(
            self.routes.limits.frame_time,
            zmtp::read_body(r, size as usize),
        )
        .await
        .map_err(|_| ZmtpError::Protocol("a command frame did not arrive in time".into()))??;
        tracing::trace!("command from {}: {body:?}", shown_bytes(&self.id));
        if let (Some(pong), Some(queue)) = (zmtp::answer_command(&body), self.pongs.upgrade()) {
            let _ = queue.try_send(Out::Raw(pong.freeze()));
        }
        Ok(())
    }

    /// Waits until `size` bytes fit in this peer's budget and the total.
    async fn hold(&self, size: u32) -> Option<Held> {
        let peer = self
            .peer_budget
            .clone()
            .acquire_many_owned(size)
            .await
            .ok()?;
        let total = tokio::select! {
            total = self.total_budget.clone().acquire_many_owned(size) => total.ok()?,
            _ = self.in_tx.closed() => return None,
        };
        Some(Held {
            _peer: peer,
            _total: total,
        })
    }
}
