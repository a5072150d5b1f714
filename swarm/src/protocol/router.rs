//! The master's ROUTER-like end: one accept loop, one task per connection
//! (its reader and writer run side by side), a bounded queue per peer, and a
//! routing table from identity to peer shared with [`RouterSender`].
//!
//! A new connection whose identity is already routed takes the route over
//! and the old connection is closed (libzmq's `ZMQ_ROUTER_HANDOVER`), so a
//! worker that reconnects after a network blip gets its replies. Incoming
//! messages from all peers go into one bounded channel; a peer's reader waits
//! there when the master is behind, so a flooding peer is slowed down while
//! the others' frames still get in. Everything ends when the master drops
//! [`MasterLink::incoming`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncRead, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use super::secret::JoinSecret;
use super::transport::{write_loop, Frame, Out, TransportError, MAX_FRAME, QUEUE};
use super::zmtp::{self, Incoming, Mechanism, ZmtpError};

/// How often a peer whose queue overflows is warned about.
const DROP_WARN_EVERY: Duration = Duration::from_secs(10);

/// Socket types a ROUTER talks to (as libzmq checks).
const PEER_TYPES: [&str; 3] = ["DEALER", "REQ", "ROUTER"];

/// A connected, routed peer.
struct Peer {
    /// Which connection this is (a reconnect gets a new one).
    conn: u64,
    addr: SocketAddr,
    queue: mpsc::Sender<Out>,
    /// Dropping it closes the connection (handover, or the route removed).
    _close: oneshot::Sender<()>,
    /// Messages dropped since the last warning, and when that was.
    unwarned_drops: u64,
    warned: Option<Instant>,
}

/// The routing table and the drop counter.
#[derive(Default)]
struct Routes {
    peers: Mutex<HashMap<Bytes, Peer>>,
    dropped: AtomicU64,
    next_conn: AtomicU64,
}

impl Routes {
    fn lock(&self) -> MutexGuard<'_, HashMap<Bytes, Peer>> {
        // A panic while holding the lock leaves the table consistent.
        self.peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Removes `id`'s route only if it is still connection `conn`.
    fn remove(&self, id: &Bytes, conn: u64) {
        let mut peers = self.lock();
        if peers.get(id).is_some_and(|peer| peer.conn == conn) {
            let gone = peers.remove(id);
            drop(peers);
            drop(gone);
        }
    }
}

#[derive(Clone)]
enum Target {
    Sockets(Arc<Routes>),
    Memory(mpsc::UnboundedSender<Frame>),
}

/// Non-blocking sending side of the master: clonable.
#[derive(Clone)]
pub struct RouterSender {
    target: Target,
}

impl RouterSender {
    /// Queues `payload` for `peer`. Never waits. Returns false when the peer
    /// is unknown/disconnected (logged at debug) or its queue is full (the
    /// message is dropped for that peer, counted in [`Self::dropped`], and
    /// warned about at most once per peer per 10 s).
    pub fn send(&self, frame: Frame) -> bool {
        let routes = match &self.target {
            Target::Memory(tx) => return tx.send(frame).is_ok(),
            Target::Sockets(routes) => routes,
        };
        let mut peers = routes.lock();
        let Some(peer) = peers.get_mut(&frame.peer) else {
            drop(peers);
            tracing::debug!(
                "no connection to worker {}; message dropped",
                String::from_utf8_lossy(&frame.peer)
            );
            return false;
        };
        match peer.queue.try_send(Out::Data(frame.payload)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
            Err(mpsc::error::TrySendError::Full(_)) => {
                routes.dropped.fetch_add(1, Ordering::Relaxed);
                peer.unwarned_drops += 1;
                let now = Instant::now();
                if peer
                    .warned
                    .is_none_or(|at| now.duration_since(at) >= DROP_WARN_EVERY)
                {
                    let (count, addr) = (peer.unwarned_drops, peer.addr);
                    peer.warned = Some(now);
                    peer.unwarned_drops = 0;
                    drop(peers);
                    tracing::warn!(
                        "worker {} at {addr} is not reading: its send queue is full; dropped {count} message(s) for it",
                        String::from_utf8_lossy(&frame.peer)
                    );
                }
                false
            }
        }
    }

    /// Frames dropped so far because a peer's queue was full (for
    /// tests/metrics).
    pub fn dropped(&self) -> u64 {
        match &self.target {
            Target::Sockets(routes) => routes.dropped.load(Ordering::Relaxed),
            Target::Memory(_) => 0,
        }
    }
}

/// The master's end: frames from workers in, frames to workers out.
pub struct MasterLink {
    /// Frames from all workers, each with its sender's identity.
    pub incoming: mpsc::Receiver<Frame>,
    /// Sends a frame to one worker, by its identity; never waits.
    pub outgoing: RouterSender,
    /// The port actually bound (useful when asked for port 0).
    pub port: u16,
}

/// Binds `host:port` (`*` means every interface) and starts accepting
/// workers: with `secret`, only those presenting it (ZMTP PLAIN).
pub async fn bind_master(
    host: &str,
    port: u16,
    secret: Option<JoinSecret>,
) -> Result<MasterLink, TransportError> {
    let host = if host == "*" { "0.0.0.0" } else { host };
    let endpoint = format!("{host}:{port}");
    let bind_error = |source| TransportError::Bind {
        endpoint: format!("tcp://{endpoint}"),
        source,
    };
    let listener = TcpListener::bind(&endpoint).await.map_err(bind_error)?;
    let port = listener.local_addr().map_err(bind_error)?.port();
    let routes = Arc::new(Routes::default());
    let (in_tx, incoming) = mpsc::channel(QUEUE);
    tokio::spawn(accept_loop(
        listener,
        routes.clone(),
        in_tx,
        Arc::new(Mechanism::server(secret)),
    ));
    Ok(MasterLink {
        incoming,
        outgoing: RouterSender {
            target: Target::Sockets(routes),
        },
        port,
    })
}

/// For unit tests of the master without sockets: a [`MasterLink`] over
/// in-memory channels, returning (link, sender of incoming frames, receiver
/// of everything the master sent).
pub fn memory_master_link(
    capacity: usize,
) -> (
    MasterLink,
    mpsc::Sender<Frame>,
    mpsc::UnboundedReceiver<Frame>,
) {
    let (in_tx, incoming) = mpsc::channel(capacity.max(1));
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let link = MasterLink {
        incoming,
        outgoing: RouterSender {
            target: Target::Memory(out_tx),
        },
        port: 0,
    };
    (link, in_tx, out_rx)
}

async fn accept_loop(
    listener: TcpListener,
    routes: Arc<Routes>,
    in_tx: mpsc::Sender<Frame>,
    mechanism: Arc<Mechanism>,
) {
    loop {
        tokio::select! {
            _ = in_tx.closed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => {
                    tokio::spawn(serve(stream, addr, routes.clone(), in_tx.clone(), mechanism.clone()));
                }
                Err(err) => {
                    // Out of file descriptors, typically: wait, do not spin.
                    tracing::warn!("the master could not accept a connection: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    tracing::debug!("the master's listener closed");
}

/// Why a connection ended.
enum End {
    Peer(ZmtpError),
    Write(std::io::Error),
    Replaced,
    MasterGone,
}

/// One connection: handshake, route, then read and write until either ends.
async fn serve(
    stream: TcpStream,
    addr: SocketAddr,
    routes: Arc<Routes>,
    in_tx: mpsc::Sender<Frame>,
    mechanism: Arc<Mechanism>,
) {
    let _ = stream.set_nodelay(true);
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::with_capacity(64 * 1024, r);
    let ready = tokio::select! {
        ready = zmtp::handshake(&mut r, &mut w, "ROUTER", None, &mechanism) => ready,
        _ = in_tx.closed() => return,
    };
    let ready = match ready {
        Ok(ready) => ready,
        Err(err) => {
            tracing::warn!("closed a connection from {addr} during the ZMTP handshake: {err}");
            return;
        }
    };
    if !PEER_TYPES.contains(&ready.socket_type.as_str()) {
        tracing::warn!(
            "closed a connection from {addr}: a {:?} socket cannot talk to a ROUTER",
            ready.socket_type
        );
        return;
    }
    let id = if ready.identity.is_empty() {
        let mut generated = vec![0u8];
        generated.extend_from_slice(&rand::random::<u32>().to_be_bytes());
        Bytes::from(generated)
    } else {
        ready.identity
    };
    let name = String::from_utf8_lossy(&id).into_owned();
    let (queue, rx) = mpsc::channel(QUEUE);
    let pongs = queue.downgrade();
    let (close, closed) = oneshot::channel();
    let conn = routes.next_conn.fetch_add(1, Ordering::Relaxed);
    let peer = Peer {
        conn,
        addr,
        queue,
        _close: close,
        unwarned_drops: 0,
        warned: None,
    };
    let old = routes.lock().insert(id.clone(), peer);
    match old {
        Some(old) => tracing::info!(
            "worker {name} reconnected from {addr}; closing its older connection from {}",
            old.addr
        ),
        None => tracing::debug!("worker {name} connected from {addr}"),
    }
    let end = tokio::select! {
        end = read_loop(&mut r, &id, &in_tx, pongs) => end,
        written = write_loop(&mut w, rx) => match written {
            Ok(()) => End::Replaced,
            Err(err) => End::Write(err),
        },
        _ = closed => End::Replaced,
        _ = in_tx.closed() => End::MasterGone,
    };
    routes.remove(&id, conn);
    match end {
        End::Peer(err @ ZmtpError::TooLarge { .. }) => {
            tracing::warn!("closed the connection of worker {name} at {addr}: {err}");
        }
        End::Peer(ZmtpError::Io(err)) if err.kind() == std::io::ErrorKind::UnexpectedEof => {
            tracing::debug!("worker {name} at {addr} disconnected");
        }
        End::Peer(err) => tracing::info!("worker {name} at {addr} disconnected: {err}"),
        End::Write(err) => tracing::info!("worker {name} at {addr} disconnected: {err}"),
        End::Replaced => tracing::debug!("closed the older connection of worker {name} at {addr}"),
        End::MasterGone => {}
    }
}

/// Reads messages into `in_tx` and answers PINGs until the peer fails.
async fn read_loop<R: AsyncRead + Unpin>(
    r: &mut R,
    id: &Bytes,
    in_tx: &mpsc::Sender<Frame>,
    pongs: mpsc::WeakSender<Out>,
) -> End {
    loop {
        match zmtp::read_incoming(r, MAX_FRAME).await {
            Ok(Incoming::Message(payload)) => {
                let frame = Frame {
                    peer: id.clone(),
                    payload,
                };
                if in_tx.send(frame).await.is_err() {
                    return End::MasterGone;
                }
            }
            Ok(Incoming::Command(body)) => {
                tracing::trace!("command from {}: {body:?}", String::from_utf8_lossy(id));
                if let (Some(pong), Some(queue)) = (zmtp::answer_command(&body), pongs.upgrade()) {
                    let _ = queue.try_send(Out::Raw(pong.freeze()));
                }
            }
            Err(err) => return End::Peer(err),
        }
    }
}
