//! The master's ROUTER-like end: one accept loop, one task per connection
//! (its reader and writer run side by side), a bounded queue per peer, and a
//! routing table from identity to connection shared with [`RouterSender`].
//!
//! What a peer can make the master hold is bounded ([`RouterLimits`]):
//! - **Connections that have not joined.** A connection counts as
//!   unjoined from its accept until the master took its `client_ready`
//!   ([`RouterSender::mark_joined`]); at most `unjoined_per_source` of them
//!   per source address and `unjoined_total` in all are kept (more are
//!   closed at once), and one that has not joined `join_timeout` after its
//!   handshake is closed. Unjoined peers may send frames of at most
//!   `unjoined_frame` bytes: `client_ready` is tens of bytes.
//! - **Identities.** A second connection with a *live* identity (its
//!   connection open and heard from within `live_window`) is refused, not
//!   handed over, so no peer can take a working worker's route; a worker
//!   whose old connection closed or went silent takes its identity back.
//! - **Bytes waiting for the master.** Each frame holds its size against a
//!   per-peer budget and a total one until the master has dealt with it; a
//!   peer over its budget waits (its socket is not read), others go on.
//! - **Time.** A frame's body must arrive within `frame_time`; a joined
//!   peer is sent a ZMTP PING every `ping_every` when it speaks ZMTP 3.1,
//!   and a connection silent for `silence` is closed, as is one whose TCP
//!   keepalive probes go unanswered.
//!
//! Everything ends when the master drops [`MasterLink::incoming`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};

mod connection;
mod limits;

pub use limits::RouterLimits;

use super::secret::JoinSecret;
use super::transport::{Frame, Out, TransportError};
use super::zmtp::Mechanism;
use crate::logs::{shown_bytes, Throttle};

/// How often a source refused for its join secret is warned about.
const AUTH_WARN_EVERY: Duration = Duration::from_secs(30);

/// How often a peer whose queue overflows is warned about.
const DROP_WARN_EVERY: Duration = Duration::from_secs(10);

/// Frames from all peers waiting for the master, by count; their bytes are
/// bounded by [`RouterLimits::total_bytes`].
const INCOMING_FRAMES: usize = 4096;

/// Which connection a frame came on: a reconnect gets a new one, so a
/// message can be told from one of the same identity on another socket.
pub type ConnId = u64;

/// A frame from a worker: its identity, the connection it came on, its
/// source address and the payload. It holds its bytes against the peer's
/// and the total budget until dropped.
#[derive(Debug)]
pub struct Inbound {
    /// The sender's ZeroMQ identity (its node id).
    pub peer: Bytes,
    /// The connection it came on.
    pub conn: ConnId,
    /// The address it came from.
    pub source: IpAddr,
    /// One msgpack-encoded Locust message.
    pub payload: Bytes,
    _held: Option<Held>,
}

impl Inbound {
    /// A frame as the in-memory link carries it (tests without sockets):
    /// each identity is its own connection, from 127.0.0.1.
    pub fn memory(peer: &str, payload: Vec<u8>) -> Self {
        let conn = peer.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        Inbound {
            peer: Bytes::from(peer.as_bytes().to_vec()),
            conn,
            source: IpAddr::from([127, 0, 0, 1]),
            payload: Bytes::from(payload),
            _held: None,
        }
    }

    /// The same frame as if it came on connection `conn`.
    pub fn on_conn(mut self, conn: ConnId) -> Self {
        self.conn = conn;
        self
    }
}

/// A frame's bytes, counted against its peer's budget and the total.
#[derive(Debug)]
struct Held {
    _peer: OwnedSemaphorePermit,
    _total: OwnedSemaphorePermit,
}

/// A connected, routed peer.
struct Peer {
    conn: ConnId,
    addr: SocketAddr,
    queue: mpsc::Sender<Out>,
    /// Dropping it closes the connection (the route removed or replaced).
    _close: oneshot::Sender<()>,
    /// When anything was last read from it (ms since [`Routes::epoch`]).
    heard: Arc<AtomicU64>,
    /// Set once the master took its `client_ready`.
    joined: watch::Sender<bool>,
    /// Messages dropped since the last warning, and when that was.
    unwarned_drops: u64,
    warned: Option<Instant>,
}

/// Unjoined connections, per source address and in all.
#[derive(Default)]
struct Unjoined {
    per_source: HashMap<IpAddr, usize>,
    total: usize,
}

/// The routing table and what every connection shares.
struct Routes {
    peers: Mutex<HashMap<Bytes, Peer>>,
    unjoined: Mutex<Unjoined>,
    /// Warnings about connections, by (kind, source).
    noise: Mutex<Throttle>,
    /// Refusals for the join secret, by source: a worker with the wrong
    /// one retries every two seconds, and saying so once is enough.
    refusals: Mutex<Throttle>,
    budget: Arc<Semaphore>,
    dropped: AtomicU64,
    next_conn: AtomicU64,
    epoch: Instant,
    limits: RouterLimits,
    /// NULL, or PLAIN with the join secret.
    mechanism: Mechanism,
}

/// Locks `mutex`; a panic while holding it leaves the data consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Routes {
    fn new(limits: RouterLimits, mechanism: Mechanism) -> Self {
        Routes {
            peers: Mutex::default(),
            unjoined: Mutex::default(),
            noise: Mutex::new(Throttle::default()),
            refusals: Mutex::new(Throttle::new(1, AUTH_WARN_EVERY)),
            budget: Arc::new(Semaphore::new(limits.total_bytes)),
            dropped: AtomicU64::new(0),
            next_conn: AtomicU64::new(1),
            epoch: Instant::now(),
            limits,
            mechanism,
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Logs a warning about `source`, a few per kind and source per 10 s.
    fn warn(&self, kind: &'static str, source: IpAddr, line: impl FnOnce() -> String) {
        let verdict = lock(&self.noise).check(kind, &source.to_string());
        if verdict.allows() {
            tracing::warn!("{}{}", line(), verdict.note());
        }
    }

    /// Logs that a peer from `source` was refused for its join secret
    /// (`why`), once per source and reason per [`AUTH_WARN_EVERY`].
    fn refused(&self, source: IpAddr, why: &str, line: impl FnOnce() -> String) {
        let verdict = lock(&self.refusals).check("secret", &format!("{source} {why}"));
        if verdict.allows() {
            tracing::warn!("{}{}", line(), verdict.note());
        }
    }

    /// Counts a new connection from `source` as unjoined, if there is room.
    fn admit(self: &Arc<Self>, source: IpAddr) -> Result<UnjoinedSlot, String> {
        let mut unjoined = lock(&self.unjoined);
        let here = unjoined.per_source.get(&source).copied().unwrap_or(0);
        if here >= self.limits.unjoined_per_source {
            return Err(format!(
                "{here} connections from it have not joined yet (at most {})",
                self.limits.unjoined_per_source
            ));
        }
        if unjoined.total >= self.limits.unjoined_total {
            return Err(format!(
                "{} connections have not joined yet (at most {} in all)",
                unjoined.total, self.limits.unjoined_total
            ));
        }
        *unjoined.per_source.entry(source).or_default() += 1;
        unjoined.total += 1;
        Ok(UnjoinedSlot {
            routes: self.clone(),
            source,
        })
    }

    /// Routes `id` to a new connection, unless it is live on another.
    fn claim(&self, id: &Bytes, peer: Peer) -> Result<(), SocketAddr> {
        let mut peers = lock(&self.peers);
        if let Some(old) = peers.get(id) {
            let silent_ms = self
                .now_ms()
                .saturating_sub(old.heard.load(Ordering::Relaxed));
            let live = !old.queue.is_closed()
                && Duration::from_millis(silent_ms) <= self.limits.live_window;
            if live {
                return Err(old.addr);
            }
        }
        let old = peers.insert(id.clone(), peer);
        drop(peers);
        if let Some(old) = old {
            tracing::info!(
                "worker {} reconnected; closing its older connection from {} (silent or closed)",
                shown_bytes(id),
                old.addr
            );
        }
        Ok(())
    }

    /// Removes `id`'s route only if it is still connection `conn`.
    fn remove(&self, id: &Bytes, conn: ConnId) {
        let mut peers = lock(&self.peers);
        if peers.get(id).is_some_and(|peer| peer.conn == conn) {
            let gone = peers.remove(id);
            drop(peers);
            drop(gone);
        }
    }
}

/// One unjoined connection's place in the counts; dropped when it joins or
/// closes.
struct UnjoinedSlot {
    routes: Arc<Routes>,
    source: IpAddr,
}

impl Drop for UnjoinedSlot {
    fn drop(&mut self) {
        let mut unjoined = lock(&self.routes.unjoined);
        unjoined.total = unjoined.total.saturating_sub(1);
        if let Some(here) = unjoined.per_source.get_mut(&self.source) {
            *here = here.saturating_sub(1);
            if *here == 0 {
                unjoined.per_source.remove(&self.source);
            }
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
        let mut peers = lock(&routes.peers);
        let Some(peer) = peers.get_mut(&frame.peer) else {
            drop(peers);
            tracing::debug!(
                "no connection to worker {}; message dropped",
                shown_bytes(&frame.peer)
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
                        shown_bytes(&frame.peer)
                    );
                }
                false
            }
        }
    }

    /// The master took `peer`'s `client_ready` on connection `conn`: that
    /// connection stops counting as unjoined and may send full-size frames.
    /// False when that connection is gone (or replaced).
    pub fn mark_joined(&self, peer: &[u8], conn: ConnId) -> bool {
        match &self.target {
            Target::Memory(_) => true,
            Target::Sockets(routes) => match lock(&routes.peers).get(peer) {
                Some(routed) if routed.conn == conn => {
                    routed.joined.send_replace(true);
                    true
                }
                _ => false,
            },
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
    /// Frames from all workers, each with its sender's identity and connection.
    pub incoming: mpsc::Receiver<Inbound>,
    /// Sends a frame to one worker, by its identity; never waits.
    pub outgoing: RouterSender,
    /// The port actually bound (useful when asked for port 0).
    pub port: u16,
}

/// Binds `host:port` (`*` means every interface) with the default
/// [`RouterLimits`] and starts accepting workers: with `secret`, only
/// those presenting it (ZMTP PLAIN).
pub async fn bind_master(
    host: &str,
    port: u16,
    secret: Option<JoinSecret>,
) -> Result<MasterLink, TransportError> {
    bind_master_with(host, port, secret, RouterLimits::default()).await
}

/// [`bind_master`] with other limits (tests shorten the times).
pub async fn bind_master_with(
    host: &str,
    port: u16,
    secret: Option<JoinSecret>,
    limits: RouterLimits,
) -> Result<MasterLink, TransportError> {
    let host = if host == "*" { "0.0.0.0" } else { host };
    let endpoint = format!("{host}:{port}");
    let bind_error = |source| TransportError::Bind {
        endpoint: format!("tcp://{endpoint}"),
        source,
    };
    let listener = TcpListener::bind(&endpoint).await.map_err(bind_error)?;
    let port = listener.local_addr().map_err(bind_error)?.port();
    let routes = Arc::new(Routes::new(limits, Mechanism::server(secret)));
    let (in_tx, incoming) = mpsc::channel(INCOMING_FRAMES);
    tokio::spawn(accept_loop(listener, routes.clone(), in_tx));
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
    mpsc::Sender<Inbound>,
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

async fn accept_loop(listener: TcpListener, routes: Arc<Routes>, in_tx: mpsc::Sender<Inbound>) {
    loop {
        tokio::select! {
            _ = in_tx.closed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => match routes.admit(addr.ip()) {
                    Ok(slot) => {
                        let task = connection::serve(stream, addr, routes.clone(), in_tx.clone(), slot);
                        tokio::spawn(task);
                    }
                    Err(why) => {
                        drop(stream);
                        routes.warn("crowded", addr.ip(), || {
                            format!("closed a connection from {addr} at once: {why}")
                        });
                    }
                },
                Err(err) => {
                    // Out of file descriptors, typically: wait, do not spin.
                    let any = IpAddr::from([0, 0, 0, 0]);
                    routes.warn("accept", any, || {
                        format!("the master could not accept a connection: {err}")
                    });
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    tracing::debug!("the master's listener closed");
}
