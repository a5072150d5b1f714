//! One connection to the web UI, from accept to close: the TLS handshake
//! (or a plain-HTTP client told to use https), HTTP/1.1 through hyper with
//! the header-read timeout, each request's body read within its bound, and
//! a watch that closes the connection when nothing moves on it.
//!
//! [`ConnState`] is what the accept loop sees of a connection: whether a
//! request on it is being answered, since when it has been waiting for a
//! client, when a byte last moved, and the token that closes it (evicted to
//! make room, see `server.rs`).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::server::{Limits, MAX_BODY_BYTES, MAX_HEAD_BYTES};
use crate::shutdown::Shutdown;

/// A connection as the accept loop and the idle watch see it. Times are
/// milliseconds since the server started (its `epoch`).
#[derive(Debug)]
pub(super) struct ConnState {
    epoch: Instant,
    /// Requests on this connection whose handler has not answered yet.
    handling: AtomicUsize,
    /// Since when the connection has been waiting on its client: accepted,
    /// or its last answer was handed over. The longest waiting is evicted
    /// first.
    waiting_since: AtomicU64,
    /// When a byte last moved either way.
    last_progress: AtomicU64,
    /// Closes the connection at once (eviction).
    close: CancellationToken,
}

impl ConnState {
    pub(super) fn new(epoch: Instant) -> ConnState {
        let state = ConnState {
            epoch,
            handling: AtomicUsize::new(0),
            waiting_since: AtomicU64::new(0),
            last_progress: AtomicU64::new(0),
            close: CancellationToken::new(),
        };
        let now = state.now();
        state.waiting_since.store(now, Ordering::Relaxed);
        state.last_progress.store(now, Ordering::Relaxed);
        state
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn progressed(&self) {
        self.last_progress.store(self.now(), Ordering::Relaxed);
    }

    /// May be closed to make room: no request on it is being answered, and
    /// it is not closing already. Returns since when it has been waiting.
    pub(super) fn evictable_since(&self) -> Option<u64> {
        let idle = self.handling.load(Ordering::Acquire) == 0 && !self.close.is_cancelled();
        idle.then(|| self.waiting_since.load(Ordering::Relaxed))
    }

    /// Closes the connection now, whatever it is doing.
    pub(super) fn evict(&self) {
        self.close.cancel();
    }

    /// Resolves once nothing has moved for `idle` while no request was being
    /// answered.
    async fn gone_quiet(&self, idle: Duration) {
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        loop {
            let quiet = self
                .now()
                .saturating_sub(self.last_progress.load(Ordering::Relaxed));
            let busy = self.handling.load(Ordering::Acquire) > 0;
            if !busy && quiet >= idle_ms {
                return;
            }
            let wait = if busy { idle_ms } else { idle_ms - quiet };
            tokio::time::sleep(Duration::from_millis(wait.max(1))).await;
        }
    }
}

/// Counts a request as being answered while it lives; its end restarts the
/// connection's waiting and quiet clocks (a handler that took a while must
/// not leave the answer it is about to write looking idle).
struct Busy(Arc<ConnState>);

impl Busy {
    fn start(state: &Arc<ConnState>) -> Busy {
        state.handling.fetch_add(1, Ordering::AcqRel);
        Busy(state.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let now = self.0.now();
        self.0.waiting_since.store(now, Ordering::Relaxed);
        self.0.last_progress.store(now, Ordering::Relaxed);
        self.0.handling.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A socket that notes every byte moved on its [`ConnState`].
struct Watched<S> {
    inner: S,
    state: Arc<ConnState>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.progressed();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.state.progressed();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The app as hyper calls it, once per request on the connection.
#[derive(Clone)]
struct Tracked {
    app: Router,
    state: Arc<ConnState>,
    body_read_timeout: Duration,
}

impl hyper::service::Service<Request<Incoming>> for Tracked {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let busy = Busy::start(&self.state);
        let app = self.app.clone();
        let limit = self.body_read_timeout;
        Box::pin(async move {
            let _busy = busy;
            match read_body(request, limit).await {
                Ok(request) => app.oneshot(request).await,
                Err(refusal) => Ok(refusal),
            }
        })
    }
}

/// The request with its body read whole: at most [`MAX_BODY_BYTES`],
/// within `limit`. A client dripping a body would otherwise hold a
/// connection that counts as busy, which the idle watch leaves alone.
async fn read_body(request: Request<Incoming>, limit: Duration) -> Result<Request<Body>, Response> {
    let (parts, body) = request.into_parts();
    let refuse = |status: StatusCode, message: String| {
        (status, [(header::CONNECTION, "close")], message).into_response()
    };
    match tokio::time::timeout(limit, Limited::new(body, MAX_BODY_BYTES).collect()).await {
        Ok(Ok(collected)) => Ok(Request::from_parts(parts, Body::from(collected.to_bytes()))),
        Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => Err(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over {MAX_BODY_BYTES} bytes: the UI's forms are far smaller\n"),
        )),
        Ok(Err(err)) => Err(refuse(
            StatusCode::BAD_REQUEST,
            format!("could not read the request body: {err}\n"),
        )),
        Err(_) => Err(refuse(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request body did not arrive within {limit:?}\n"),
        )),
    }
}

/// The first byte of every TLS connection (a handshake record).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Everything one accepted connection needs.
pub(super) struct Connection {
    pub(super) stream: TcpStream,
    pub(super) app: Router,
    pub(super) tls: Option<tokio_rustls::TlsAcceptor>,
    pub(super) limits: Limits,
    pub(super) state: Arc<ConnState>,
    pub(super) shutdown: Shutdown,
}

impl Connection {
    /// Serves the connection until the client leaves, a bound closes it,
    /// it is evicted, or the server drains.
    pub(super) async fn run(self) {
        let state = self.state.clone();
        let idle = self.limits.idle_timeout;
        tokio::select! {
            () = self.serve() => {}
            () = state.close.cancelled() => tracing::debug!("web UI connection evicted"),
            () = state.gone_quiet(idle) => tracing::debug!("web UI connection idle for {idle:?}: closed"),
        }
    }

    async fn serve(self) {
        let Connection {
            stream,
            app,
            tls,
            limits,
            state,
            shutdown,
        } = self;
        let Some(acceptor) = tls else {
            let io = Watched {
                inner: stream,
                state: state.clone(),
            };
            return serve_http(io, app, limits, state, shutdown).await;
        };
        let handshake = async {
            if first_byte(&stream).await? != TLS_HANDSHAKE_RECORD {
                refuse_plain_http(stream).await;
                return Ok(None);
            }
            let io = Watched {
                inner: stream,
                state: state.clone(),
            };
            acceptor.accept(io).await.map(Some)
        };
        let accepted = tokio::select! {
            accepted = tokio::time::timeout(limits.tls_handshake_timeout, handshake) => accepted,
            () = shutdown.requested() => return,
        };
        match accepted {
            Ok(Ok(Some(tls_stream))) => serve_http(tls_stream, app, limits, state, shutdown).await,
            Ok(Ok(None)) => {}
            Ok(Err(err)) => tracing::debug!("web UI TLS handshake failed: {err}"),
            Err(_) => tracing::debug!(
                "web UI TLS handshake not done within {:?}: closed",
                limits.tls_handshake_timeout
            ),
        }
    }
}

/// Waits for the client's first byte without taking it.
async fn first_byte(stream: &TcpStream) -> io::Result<u8> {
    let mut byte = [0u8; 1];
    match stream.peek(&mut byte).await? {
        0 => Err(io::ErrorKind::UnexpectedEof.into()),
        _ => Ok(byte[0]),
    }
}

/// A plain HTTP request on the TLS port: answered in plain HTTP with what
/// to do instead, then closed (nothing of it reaches the app).
async fn refuse_plain_http(mut stream: TcpStream) {
    let body = "this web UI is served over HTTPS: use https:// with the same address and port\n";
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// HTTP/1.1 on `io` until the client leaves or hyper's header-read
/// timeout closes it; on shutdown, the request in flight is answered and
/// the connection closed.
async fn serve_http<I>(
    io: I,
    app: Router,
    limits: Limits,
    state: Arc<ConnState>,
    shutdown: Shutdown,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = Tracked {
        app,
        state,
        body_read_timeout: limits.body_read_timeout,
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    let connection = http.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let mut draining = false;
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(err) = served {
                    tracing::debug!("web UI connection ended: {err}");
                }
                return;
            }
            () = shutdown.requested(), if !draining => {
                connection.as_mut().graceful_shutdown();
                draining = true;
            }
        }
    }
}
