//! ZeroMQ sockets as channels of frames: the master's ROUTER and the
//! worker's DEALER each run in a task, so the runners above only see
//! `mpsc` channels and can be tested without sockets.

use bytes::Bytes;
use tokio::sync::mpsc;
use zeromq::{Socket, SocketRecv, SocketSend, ZmqMessage};

/// Frames waiting in either direction before the sender waits.
const QUEUE: usize = 1024;

/// A frame on the master: who sent it (or whom it is for) and the payload.
#[derive(Debug, Clone)]
pub struct Frame {
    pub peer: Bytes,
    pub payload: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot listen on {endpoint}: {source} (is another master running there? pick another --master-bind-port)")]
    Bind {
        endpoint: String,
        source: zeromq::ZmqError,
    },
    #[error("cannot connect to the master at {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: zeromq::ZmqError,
    },
    #[error("node id {0:?} is not a valid ZeroMQ identity (1 to 255 bytes)")]
    Identity(String),
}

/// The master's end: frames from workers in, frames to workers out.
pub struct MasterLink {
    pub incoming: mpsc::Receiver<Frame>,
    pub outgoing: mpsc::Sender<Frame>,
    /// The port actually bound (useful when asked for port 0).
    pub port: u16,
}

/// Binds a ROUTER on `host:port` and starts its send and receive tasks.
pub async fn bind_master(host: &str, port: u16) -> Result<MasterLink, TransportError> {
    let endpoint = format!("tcp://{host}:{port}");
    let mut socket = zeromq::RouterSocket::new();
    let bound = socket
        .bind(&endpoint)
        .await
        .map_err(|source| TransportError::Bind {
            endpoint: endpoint.clone(),
            source,
        })?;
    let port = match bound {
        zeromq::Endpoint::Tcp(_, port) => port,
        _ => port,
    };
    let (mut send_half, mut recv_half) = socket.split();
    let (in_tx, incoming) = mpsc::channel(QUEUE);
    let (outgoing, mut out_rx) = mpsc::channel::<Frame>(QUEUE);
    tokio::spawn(async move {
        loop {
            match recv_half.recv().await {
                Ok(message) => {
                    let Some(frame) = master_frame(message) else {
                        tracing::warn!(
                            "dropped a message with no payload frame on the master socket"
                        );
                        continue;
                    };
                    if in_tx.send(frame).await.is_err() {
                        break;
                    }
                }
                Err(err) => {
                    tracing::debug!("master socket receive: {err}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    if in_tx.is_closed() {
                        break;
                    }
                }
            }
        }
    });
    tokio::spawn(async move {
        while let Some(frame) = out_rx.recv().await {
            let mut message = ZmqMessage::from(frame.payload);
            message.push_front(frame.peer);
            if let Err(err) = send_half.send(message).await {
                // A worker that went away: the master notices by its heartbeats.
                tracing::debug!("send to worker failed: {err}");
            }
        }
    });
    Ok(MasterLink {
        incoming,
        outgoing,
        port,
    })
}

/// ROUTER delivers `[identity, ..., payload]`; Locust's DEALERs send one
/// payload frame, so the payload is the last frame.
fn master_frame(message: ZmqMessage) -> Option<Frame> {
    let mut frames = message.into_vecdeque();
    let peer = frames.pop_front()?;
    let payload = frames.pop_back()?;
    Some(Frame { peer, payload })
}

/// The worker's end: payloads from the master in, payloads to it out.
pub struct WorkerLink {
    pub incoming: mpsc::Receiver<Bytes>,
    pub outgoing: mpsc::Sender<Bytes>,
}

/// Connects a DEALER whose identity is `node_id` to the master.
pub async fn connect_worker(
    host: &str,
    port: u16,
    node_id: &str,
) -> Result<WorkerLink, TransportError> {
    let endpoint = format!("tcp://{host}:{port}");
    let identity: zeromq::util::PeerIdentity = Bytes::from(node_id.as_bytes().to_vec())
        .try_into()
        .map_err(|_| TransportError::Identity(node_id.to_string()))?;
    let mut options = zeromq::SocketOptions::default();
    options.peer_identity(identity);
    let mut socket = zeromq::DealerSocket::with_options(options);
    socket
        .connect(&endpoint)
        .await
        .map_err(|source| TransportError::Connect { endpoint, source })?;
    let (mut send_half, mut recv_half) = socket.split();
    let (in_tx, incoming) = mpsc::channel(QUEUE);
    let (outgoing, mut out_rx) = mpsc::channel::<Bytes>(QUEUE);
    tokio::spawn(async move {
        loop {
            match recv_half.recv().await {
                Ok(message) => {
                    let Some(payload) = message.into_vecdeque().pop_back() else {
                        continue;
                    };
                    if in_tx.send(payload).await.is_err() {
                        break;
                    }
                }
                Err(err) => {
                    tracing::debug!("worker socket receive: {err}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    if in_tx.is_closed() {
                        break;
                    }
                }
            }
        }
    });
    tokio::spawn(async move {
        while let Some(payload) = out_rx.recv().await {
            if let Err(err) = send_half.send(ZmqMessage::from(payload)).await {
                tracing::debug!("send to master failed: {err}");
            }
        }
    });
    Ok(WorkerLink { incoming, outgoing })
}
