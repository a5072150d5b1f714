//! The web UI's own HTTP server: an accept loop on hyper, so that a
//! client cannot hold what the master needs. `axum::serve` had no
//! header-read timeout: 600 clients sending their request heads slowly
//! were held for 75 s, their sockets in the descriptor table the worker
//! port needs too.
//!
//! Bounds, each a named constant below: a connection cap (at the cap, the
//! connection that has waited longest on its client is evicted to make
//! room — a client dripping a request head is evicted before a browser
//! that just got an answer; with every connection busy answering, a new
//! one is closed at once), the header-read timeout, an idle timeout (no
//! byte moved either way while no request is being answered: an idle
//! keep-alive connection, a silent client, a client that stopped reading
//! its answer), a bounded request body, a TLS handshake limit, and a
//! bounded drain on shutdown.
//!
//! [`serve`] binds, spawns the loop and returns a [`WebServer`]; the
//! [`Shutdown`] token ends it: no new connections, requests in flight are
//! answered, and after [`DRAIN_TIMEOUT`] what is left is closed.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::connection::{ConnState, Connection};
use super::tls::WebTls;
use crate::shutdown::Shutdown;

/// Connections the UI holds at once. The master's descriptor table is
/// shared with the worker port: at the common soft limit of 1024 open
/// files this leaves three quarters for workers, and a browser opens at
/// most six connections to a host, so 256 serves dozens of viewers.
pub const MAX_CONNECTIONS: usize = 256;

/// A request head must arrive whole within this, counted from when the
/// server starts waiting for it (hyper restarts it after each answer). The
/// page and API clients send their heads in one packet; only a client
/// dripping bytes (slowloris) takes longer.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection on which nothing moved either way for this long, while
/// no request on it was being answered, is closed: an idle keep-alive
/// connection (the page polls every two seconds, so its own never idle
/// this long), a client that connected and sent nothing, or one that
/// stopped reading its answer. Apache's keep-alive default.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// A request body must arrive whole within this: the UI's forms are a few
/// hundred bytes, and a client dripping one would hold a connection that
/// counts as busy.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest request body read: the `/swarm` form is under 1 KiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// hyper's read buffer per connection, which bounds a request head:
/// 256 connections hold at most 16 MiB (hyper's default, ~400 KiB each,
/// would allow 100 MiB).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// A TLS handshake must be done within this (the same allowance as a
/// request head: a client dripping handshake bytes is the same slowloris).
pub const TLS_HANDSHAKE_TIMEOUT: Duration = HEADER_READ_TIMEOUT;

/// On shutdown, requests in flight get this long to be answered; then the
/// connections left are closed. Long enough for the slowest handler,
/// `/stop`, at its default 10 s stop timeout.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// At the cap, how long an accepted connection waits for the evicted one
/// to let go of its slot (it closes on its next poll, microseconds).
const EVICTION_WAIT: Duration = Duration::from_secs(1);

/// After a failed accept (out of descriptors, say), the loop pauses this
/// long instead of spinning on the same error.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The bounds one server applies; [`Limits::default`] is the constants
/// above. Tests shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// [`MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// [`HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// [`IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// [`BODY_READ_TIMEOUT`].
    pub body_read_timeout: Duration,
    /// [`TLS_HANDSHAKE_TIMEOUT`].
    pub tls_handshake_timeout: Duration,
    /// [`DRAIN_TIMEOUT`].
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: MAX_CONNECTIONS,
            header_read_timeout: HEADER_READ_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            body_read_timeout: BODY_READ_TIMEOUT,
            tls_handshake_timeout: TLS_HANDSHAKE_TIMEOUT,
            drain_timeout: DRAIN_TIMEOUT,
        }
    }
}

/// How to serve: plain HTTP or TLS, and the bounds.
#[derive(Clone, Default)]
pub struct ServeOptions {
    /// Serve HTTPS with this certificate and key; `None`: plain HTTP.
    pub tls: Option<WebTls>,
    /// The bounds; the constants of this module by default.
    pub limits: Limits,
}

/// A running server; dropping it stops the server at once.
#[derive(Debug)]
pub struct WebServer {
    addr: SocketAddr,
    https: bool,
    task: Option<JoinHandle<()>>,
}

impl WebServer {
    /// The address bound (the port the OS chose for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http(s)://ADDR`, with 127.0.0.1 for an unspecified address.
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        if self.addr.ip().is_unspecified() {
            format!("{scheme}://127.0.0.1:{}", self.addr.port())
        } else {
            format!("{scheme}://{}", self.addr)
        }
    }

    /// Waits until the server has drained after its shutdown (at most
    /// [`DRAIN_TIMEOUT`] after the token fired).
    pub async fn stopped(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Binds `addr` and serves `app` there until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    app: Router,
    options: ServeOptions,
    shutdown: Shutdown,
) -> io::Result<WebServer> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let https = options.tls.is_some();
    let limits = options.limits;
    let accept = AcceptLoop {
        listener,
        app,
        tls: options.tls.map(|tls| tls.acceptor()),
        limits,
        slots: Arc::new(Semaphore::new(limits.max_connections)),
        open: Arc::new(Registry::default()),
        connections: JoinSet::new(),
        epoch: Instant::now(),
        shutdown,
        last_refusal_warning: None,
    };
    Ok(WebServer {
        addr: bound,
        https,
        task: Some(tokio::spawn(accept.run())),
    })
}

/// The open connections, for eviction.
#[derive(Debug, Default)]
struct Registry {
    connections: Mutex<HashMap<u64, Arc<ConnState>>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl Registry {
    fn add(self: &Arc<Self>, state: Arc<ConnState>) -> Registration {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.lock().insert(id, state);
        Registration {
            registry: self.clone(),
            id,
        }
    }

    /// Closes the connection that has waited longest on its client and
    /// is not answering a request; false when every one is busy.
    fn evict_longest_waiting(&self) -> bool {
        let connections = self.lock();
        let victim = connections
            .values()
            .filter_map(|c| c.evictable_since().map(|since| (since, c)))
            .min_by_key(|(since, _)| *since);
        match victim {
            Some((_, state)) => {
                state.evict();
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnState>>> {
        // A panic while holding it cannot leave the map half changed.
        self.connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A connection's place in the [`Registry`] and its slot: both freed when
/// its task ends, however it ends.
struct Registration {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

/// Minimum time between two warnings about refused connections.
const REFUSAL_WARNING_EVERY: Duration = Duration::from_secs(10);

/// The accept loop and everything it owns.
struct AcceptLoop {
    listener: TcpListener,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: Limits,
    /// One permit per connection held: the cap.
    slots: Arc<Semaphore>,
    /// The open connections, to pick one to evict at the cap.
    open: Arc<Registry>,
    /// Every connection's task, drained or aborted at shutdown.
    connections: JoinSet<()>,
    /// Time zero of the connections' clocks.
    epoch: Instant,
    shutdown: Shutdown,
    /// When a refused connection was last warned about (warnings are
    /// spaced, a flood must not flood the log).
    last_refusal_warning: Option<Instant>,
}

impl AcceptLoop {
    async fn run(mut self) {
        loop {
            tokio::select! {
                () = self.shutdown.requested() => break,
                Some(ended) = self.connections.join_next(), if !self.connections.is_empty() => {
                    if let Err(err) = ended {
                        if err.is_panic() {
                            tracing::error!("web UI: a connection's task panicked: {err}");
                        }
                    }
                }
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => self.admit(stream, peer).await,
                    Err(err) => {
                        tracing::warn!("web UI: accept failed: {err}");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                },
            }
        }
        drop(self.listener);
        drain(self.connections, self.limits.drain_timeout).await;
    }

    /// Starts serving `stream`, evicting to make room at the cap, or
    /// closes it at once when no connection can be evicted.
    async fn admit(&mut self, stream: TcpStream, peer: SocketAddr) {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) if self.open.evict_longest_waiting() => self.slot_freed_by_eviction().await,
            Err(_) => None,
        };
        let Some(permit) = permit else {
            return self.refuse(stream, peer);
        };
        let state = Arc::new(ConnState::new(self.epoch));
        let registration = self.open.add(state.clone());
        let connection = Connection {
            stream,
            app: self.app.clone(),
            tls: self.tls.clone(),
            limits: self.limits,
            state,
            shutdown: self.shutdown.clone(),
        };
        self.connections.spawn(async move {
            connection.run().await;
            drop((registration, permit));
        });
    }

    async fn slot_freed_by_eviction(&self) -> Option<OwnedSemaphorePermit> {
        tokio::time::timeout(EVICTION_WAIT, self.slots.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// Every slot is busy answering a request: the new connection is
    /// closed now rather than queued. A plain-HTTP client is told why.
    fn refuse(&mut self, stream: TcpStream, peer: SocketAddr) {
        let warn = self
            .last_refusal_warning
            .is_none_or(|at| at.elapsed() >= REFUSAL_WARNING_EVERY);
        if warn {
            tracing::warn!(
                "web UI: {} connections are all answering requests; closed a new one from {peer}",
                self.limits.max_connections
            );
            self.last_refusal_warning = Some(Instant::now());
        }
        if self.tls.is_none() {
            let body = "the web UI is answering as many requests as it may; try again\n";
            let answer = format!(
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            // Best effort, never waiting: the socket's buffer is empty.
            let _ = stream.try_write(answer.as_bytes());
        }
    }
}

/// After the shutdown: requests in flight are answered (each connection's
/// hyper closes it once idle), within `limit`; the rest are closed.
async fn drain(mut connections: JoinSet<()>, limit: Duration) {
    let drained = tokio::time::timeout(limit, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "web UI: {} connection(s) still open {limit:?} after the shutdown; closed",
            connections.len()
        );
        connections.shutdown().await;
    }
}
