//! The web server's bounds over real loopback sockets, with short limits
//! and a small router: a `/slow` handler that answers when the test says,
//! so connections can be held busy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::{get, post};
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::{serve, Limits, ServeOptions, WebServer};
use crate::shutdown::{Reason, Shutdown};

/// Short bounds, far apart, so each test can tell which one closed a
/// connection.
const LIMITS: Limits = Limits {
    max_connections: 4,
    header_read_timeout: Duration::from_millis(600),
    idle_timeout: Duration::from_secs(30),
    body_read_timeout: Duration::from_millis(600),
    tls_handshake_timeout: Duration::from_millis(600),
    drain_timeout: Duration::from_secs(5),
};

/// A server on the test router.
struct Fixture {
    server: WebServer,
    /// `/slow` answers once the test adds a permit here.
    release: Arc<Semaphore>,
    /// `/slow` adds a permit here when its handler starts.
    entered: Arc<Semaphore>,
    shutdown: Shutdown,
}

impl Fixture {
    async fn start(limits: Limits) -> Fixture {
        let release = Arc::new(Semaphore::new(0));
        let entered = Arc::new(Semaphore::new(0));
        let (gate, enter) = (release.clone(), entered.clone());
        let slow = move || async move {
            enter.add_permits(1);
            let _ = gate
                .acquire()
                .await
                .map(tokio::sync::SemaphorePermit::forget);
            "slow\n"
        };
        let app = Router::new()
            .route("/fast", get(|| async { "fast\n" }))
            .route("/echo", post(|body: String| async move { body }))
            .route("/slow", get(slow));
        let shutdown = Shutdown::new();
        let options = ServeOptions { tls: None, limits };
        let server = serve(([127, 0, 0, 1], 0).into(), app, options, shutdown.clone())
            .await
            .expect("binds");
        Fixture {
            server,
            release,
            entered,
            shutdown,
        }
    }

    /// Waits until `n` more `/slow` handlers have started.
    async fn handlers_entered(&self, n: u32) {
        let entered = tokio::time::timeout(Duration::from_secs(5), self.entered.acquire_many(n));
        entered
            .await
            .expect("the handlers start")
            .expect("open")
            .forget();
    }
}

async fn connect(server: &WebServer) -> TcpStream {
    TcpStream::connect(server.addr()).await.expect("connects")
}

/// Everything the server sends until it closes; panics if it does not
/// close within `limit`.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> String {
    let mut got = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "still open after {limit:?}");
    String::from_utf8_lossy(&got).into_owned()
}

async fn get_once(server: &WebServer, path: &str) -> String {
    let mut stream = connect(server).await;
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("sends");
    until_closed(&mut stream, Duration::from_secs(5)).await
}

#[tokio::test]
async fn a_dripped_request_head_is_cut_at_the_header_timeout() {
    let fixture = Fixture::start(LIMITS).await;
    let server = &fixture.server;
    let mut slow = connect(server).await;
    let opened = Instant::now();
    slow.write_all(b"GET /fast HTTP/1.1\r\nHost: t\r\n")
        .await
        .expect("sends");
    let drip = async {
        for _ in 0..50 {
            if slow.write_all(b"X-Drip: 1\r\n").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let other = async {
        // Meanwhile another client is answered.
        tokio::time::sleep(Duration::from_millis(200)).await;
        get_once(server, "/fast").await
    };
    let ((), answer) = tokio::join!(drip, other);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answer = until_closed(&mut slow, Duration::from_secs(5)).await;
    let held = opened.elapsed();
    assert!(
        !answer.contains("200 OK"),
        "the dripped request was not served: {answer}"
    );
    assert!(
        held >= LIMITS.header_read_timeout && held < Duration::from_secs(3),
        "held {held:?}"
    );
}

#[tokio::test]
async fn a_silent_or_idle_connection_is_closed_after_the_idle_timeout() {
    let limits = Limits {
        idle_timeout: Duration::from_millis(300),
        header_read_timeout: Duration::from_secs(30),
        ..LIMITS
    };
    let fixture = Fixture::start(limits).await;
    let server = &fixture.server;
    let mut silent = connect(server).await;
    let opened = Instant::now();
    until_closed(&mut silent, Duration::from_secs(5)).await;
    let held = opened.elapsed();
    assert!(
        held >= limits.idle_timeout && held < Duration::from_secs(3),
        "held {held:?}"
    );

    // Kept alive after an answer: closed once idle.
    let mut kept = connect(server).await;
    kept.write_all(b"GET /fast HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("sends");
    let answered = Instant::now();
    let answer = until_closed(&mut kept, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answered.elapsed() >= limits.idle_timeout,
        "{:?}",
        answered.elapsed()
    );
}

#[tokio::test]
async fn at_the_cap_the_longest_waiting_connection_makes_room() {
    // Long enough that only eviction closes a connection here.
    let limits = Limits {
        header_read_timeout: Duration::from_secs(30),
        ..LIMITS
    };
    let fixture = Fixture::start(limits).await;
    let server = &fixture.server;
    let mut waiting = Vec::new();
    for _ in 0..LIMITS.max_connections {
        waiting.push(connect(server).await);
        // Distinct waiting-since times, the first one oldest.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answer = get_once(server, "/fast").await;
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "a newcomer is served: {answer}"
    );
    // The oldest was evicted; the others are still open.
    until_closed(&mut waiting[0], Duration::from_secs(1)).await;
    for stream in &mut waiting[2..] {
        let mut byte = [0u8; 1];
        let open = tokio::time::timeout(Duration::from_millis(50), stream.read(&mut byte)).await;
        assert!(open.is_err(), "a younger connection stayed open");
    }

    // Every slot busy answering: a newcomer is refused at once.
    drop(waiting);
    let mut busy = Vec::new();
    for _ in 0..LIMITS.max_connections {
        let mut stream = connect(server).await;
        stream
            .write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .expect("sends");
        busy.push(stream);
    }
    fixture.handlers_entered(4).await;
    let refused = get_once(server, "/fast").await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("try again"), "{refused}");
    fixture.release.add_permits(LIMITS.max_connections);
    for stream in &mut busy {
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.expect("answered");
        assert_eq!(&head, b"HTTP/1.1 200");
    }
}

#[tokio::test]
async fn a_dripped_body_is_refused_at_its_timeout() {
    let fixture = Fixture::start(LIMITS).await;
    let server = &fixture.server;
    let mut stream = connect(server).await;
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nab")
        .await
        .expect("sends");
    let sent = Instant::now();
    let answer = until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(sent.elapsed() >= LIMITS.body_read_timeout);
    let mut big = connect(server).await;
    let head = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        super::MAX_BODY_BYTES + 1
    );
    big.write_all(head.as_bytes()).await.expect("sends");
    let _ = big.write_all(&vec![b'x'; super::MAX_BODY_BYTES + 1]).await;
    let answer = until_closed(&mut big, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[tokio::test]
async fn shutdown_answers_the_request_in_flight_then_stops() {
    let Fixture {
        server,
        release,
        entered,
        shutdown,
    } = Fixture::start(LIMITS).await;
    let mut idle = connect(&server).await;
    let mut in_flight = connect(&server).await;
    in_flight
        .write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("sends");
    let started = tokio::time::timeout(Duration::from_secs(5), entered.acquire()).await;
    started.expect("the handler starts").expect("open").forget();
    shutdown.trigger(Reason::Terminate);
    // The idle one goes at once; the busy one is answered, then closed.
    until_closed(&mut idle, Duration::from_secs(2)).await;
    release.add_permits(1);
    let answer = until_closed(&mut in_flight, Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("slow\n"), "{answer}");
    let addr = server.addr();
    tokio::time::timeout(Duration::from_secs(3), server.stopped())
        .await
        .expect("stops once drained");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
}
