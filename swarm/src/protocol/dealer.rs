//! The worker's DEALER-like end: one task that connects to the master,
//! handshakes with the worker's node id as identity, and reconnects forever
//! (backoff 100 ms doubling to 2 s, reset after a successful handshake)
//! until the [`WorkerLink`] is dropped.
//!
//! Each connection gets a fresh bounded send queue; [`DealerSender`] only
//! ever queues on the connection that is up now, so nothing written while
//! disconnected is sent to a later master (the caller keeps what it could
//! not send, and says `client_ready` again on each new connection).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};

use super::message::ToWorker;
use super::secret::JoinSecret;
use super::transport::{write_loop, Out, TransportError, MAX_FRAME, QUEUE};
use super::zmtp::{self, Incoming, Mechanism, ZmtpError};

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Socket types a DEALER talks to (as libzmq checks).
const PEER_TYPES: [&str; 3] = ["ROUTER", "DEALER", "REP"];

/// The worker's end: payloads from the master in, payloads to it out.
pub struct WorkerLink {
    /// Messages from the master, across reconnections, in order.
    pub incoming: mpsc::Receiver<Bytes>,
    /// Sends to the master on the connection that is up now.
    pub outgoing: DealerSender,
    /// Increments each time a new connection to the master completes its
    /// handshake; 0 until the first. The worker sends `client_ready` on
    /// every change.
    pub connected: watch::Receiver<u64>,
    /// Increments as soon as a `stop` or `quit` arrives, before the worker
    /// reads it from [`WorkerLink::incoming`]: work in progress (a spawn
    /// waiting for its users) watches it and yields, so those orders go
    /// ahead of anything queued.
    pub urgent: watch::Receiver<u64>,
}

/// Why a message to the master was not queued; the caller keeps it.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection to the master is up.
    #[error("not connected to the master")]
    NotConnected,
    /// The connection's send queue is full (`QUEUE` frames waiting).
    #[error("the send queue to the master is full")]
    Full,
}

/// The connection that is up: its number (as [`WorkerLink::connected`]
/// counts them) and its send queue.
type Current = Option<(u64, mpsc::Sender<Out>)>;

/// Sending side of the worker: clonable, never waits.
#[derive(Clone)]
pub struct DealerSender {
    /// The connection that is up, if any.
    current: Arc<Mutex<Current>>,
}

impl DealerSender {
    fn current(&self) -> MutexGuard<'_, Current> {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues a payload on the current connection; never waits.
    /// `Err(NotConnected)` while disconnected (nothing is queued for a later
    /// connection — the caller keeps what it could not send), `Err(Full)`
    /// when the queue (capacity 1024) is full.
    pub fn try_send(&self, payload: Bytes) -> Result<(), SendError> {
        let current = self.current();
        let (_, queue) = current.as_ref().ok_or(SendError::NotConnected)?;
        Self::queue(queue, payload)
    }

    /// [`DealerSender::try_send`], only while `connection` (a number of
    /// [`WorkerLink::connected`]) is the one up: what belongs after a join
    /// never goes out first on a newer connection, where the master would
    /// refuse it.
    pub fn try_send_on(&self, connection: u64, payload: Bytes) -> Result<(), SendError> {
        let current = self.current();
        match current.as_ref() {
            Some((up, queue)) if *up == connection => Self::queue(queue, payload),
            _ => Err(SendError::NotConnected),
        }
    }

    fn queue(queue: &mpsc::Sender<Out>, payload: Bytes) -> Result<(), SendError> {
        queue.try_send(Out::Data(payload)).map_err(|err| match err {
            mpsc::error::TrySendError::Full(_) => SendError::Full,
            mpsc::error::TrySendError::Closed(_) => SendError::NotConnected,
        })
    }

    /// Whether a connection is up now.
    pub fn is_connected(&self) -> bool {
        self.current()
            .as_ref()
            .is_some_and(|(_, queue)| !queue.is_closed())
    }

    /// Waits (bounded by `limit`) until everything queued so far was written
    /// to the socket (used before a worker exits so its last stats and
    /// `quit` leave). Returns false on timeout or disconnect.
    pub async fn flush(&self, limit: Duration) -> bool {
        let Some((_, queue)) = self.current().clone() else {
            return false;
        };
        let (ack, done) = oneshot::channel();
        let flushed =
            async move { queue.send(Out::Flush(ack)).await.is_ok() && done.await.is_ok() };
        tokio::time::timeout(limit, flushed).await.unwrap_or(false)
    }
}

/// Starts a task that connects to tcp `host:port` with identity `node_id`
/// and reconnects forever until the [`WorkerLink`] is dropped. Returns at
/// once; `Err` only for an invalid identity (empty or over 255 bytes).
/// With `secret`, it is presented to the master (ZMTP PLAIN).
pub fn connect_worker(
    host: &str,
    port: u16,
    node_id: &str,
    secret: Option<JoinSecret>,
) -> Result<WorkerLink, TransportError> {
    if node_id.is_empty() || node_id.len() > 255 {
        return Err(TransportError::Identity(node_id.to_string()));
    }
    let (in_tx, incoming) = mpsc::channel(QUEUE);
    let (up, connected) = watch::channel(0);
    let (urgent_tx, urgent) = watch::channel(0);
    let outgoing = DealerSender {
        current: Arc::new(Mutex::new(None)),
    };
    let dialer = Dialer {
        addr: format!("{host}:{port}"),
        identity: Bytes::from(node_id.as_bytes().to_vec()),
        mechanism: Mechanism::client(secret),
        sender: outgoing.clone(),
        in_tx,
        up,
        urgent: urgent_tx,
    };
    tokio::spawn(dialer.run());
    Ok(WorkerLink {
        incoming,
        outgoing,
        connected,
        urgent,
    })
}

/// The reconnecting task's state.
struct Dialer {
    addr: String,
    identity: Bytes,
    /// NULL, or PLAIN with the join secret.
    mechanism: Mechanism,
    sender: DealerSender,
    in_tx: mpsc::Sender<Bytes>,
    up: watch::Sender<u64>,
    urgent: watch::Sender<u64>,
}

impl Dialer {
    async fn run(self) {
        let mut backoff = MIN_BACKOFF;
        let mut connections = 0u64;
        // One message per outage: the first failure after being up (or at
        // start) is logged, the retries after it only at debug.
        let mut outage_told = false;
        loop {
            let attempt = tokio::select! {
                attempt = self.connect() => attempt,
                _ = self.in_tx.closed() => return,
            };
            match attempt {
                Ok((mut r, mut w)) => {
                    backoff = MIN_BACKOFF;
                    let (queue, rx) = mpsc::channel(QUEUE);
                    connections += 1;
                    *self.sender.current() = Some((connections, queue.clone()));
                    self.up.send_replace(connections);
                    tracing::info!("connected to the master at {}", self.addr);
                    let mut said_quit = false;
                    let lost = tokio::select! {
                        err = read_loop(&mut r, &self.in_tx, &queue, &self.urgent, &mut said_quit) => err.map(|err| err.to_string()),
                        written = write_loop(&mut w, rx) => Some(match written {
                            Ok(()) => "send queue closed".to_string(),
                            Err(err) => err.to_string(),
                        }),
                        _ = self.in_tx.closed() => None,
                    };
                    *self.sender.current() = None;
                    let Some(reason) = lost else {
                        return; // the worker dropped its link
                    };
                    if said_quit {
                        // The normal end of a run: the worker is quitting too
                        // (and any retry before it has is told at debug only).
                        tracing::debug!("the master said quit and closed the connection: {reason}");
                        outage_told = true;
                    } else {
                        tracing::warn!("lost the master at {}: {reason}; reconnecting", self.addr);
                        outage_told = true;
                    }
                }
                Err(err) if outage_told => {
                    tracing::debug!("still no master at {}: {err}", self.addr);
                }
                Err(err) => {
                    tracing::info!("no master at {} yet: {err}; retrying", self.addr);
                    outage_told = true;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.in_tx.closed() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One attempt: TCP connect (resolving the host name anew), then the
    /// ZMTP handshake.
    async fn connect(&self) -> Result<(BufReader<OwnedReadHalf>, OwnedWriteHalf), ZmtpError> {
        let stream = tokio::time::timeout(zmtp::HANDSHAKE_TIMEOUT, TcpStream::connect(&self.addr))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "TCP connect timed out")
            })??;
        let _ = stream.set_nodelay(true);
        super::transport::keepalive(&stream);
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::with_capacity(64 * 1024, r);
        let ready = zmtp::handshake(
            &mut r,
            &mut w,
            "DEALER",
            Some(&self.identity),
            &self.mechanism,
        )
        .await?;
        if !PEER_TYPES.contains(&ready.socket_type.as_str()) {
            return Err(ZmtpError::Protocol(format!(
                "a {:?} socket cannot talk to a DEALER",
                ready.socket_type
            )));
        }
        Ok((r, w))
    }
}

/// Reads messages into `in_tx` and answers PINGs; a `stop` or `quit` also
/// bumps `urgent` at once. Returns the error that ended the connection, or
/// `None` when the worker dropped its link.
async fn read_loop<R: AsyncRead + Unpin>(
    r: &mut R,
    in_tx: &mpsc::Sender<Bytes>,
    queue: &mpsc::Sender<Out>,
    urgent: &watch::Sender<u64>,
    said_quit: &mut bool,
) -> Option<ZmtpError> {
    loop {
        match zmtp::read_incoming(r, MAX_FRAME).await {
            Ok(Incoming::Message(payload)) => {
                match ToWorker::urgency(&payload) {
                    Some(ToWorker::Quit) => {
                        *said_quit = true;
                        urgent.send_modify(|n| *n += 1);
                    }
                    Some(_) => urgent.send_modify(|n| *n += 1),
                    None => {}
                }
                if in_tx.send(payload).await.is_err() {
                    return None;
                }
            }
            Ok(Incoming::Command(body)) => {
                tracing::trace!("command from the master: {body:?}");
                if let Some(pong) = zmtp::answer_command(&body) {
                    let _ = queue.try_send(Out::Raw(pong.freeze()));
                }
            }
            Err(err) => return Some(err),
        }
    }
}
