//! A stub of the EC2 instance metadata service (IMDSv2) on a free loopback
//! port, in plain std threads: [`ImdsStub`].
//!
//! It speaks just enough of IMDSv2 for a spot watch: `PUT /latest/api/token`
//! (with `X-aws-ec2-metadata-token-ttl-seconds`) hands out a token, and
//! `GET /latest/meta-data/spot/instance-action` answers 404 — no notice —
//! until the test calls [`ImdsStub::arm`], then 200 with the notice's JSON.
//! Every GET needs the token in `X-aws-ec2-metadata-token` (401 without it),
//! as on EC2 with IMDSv2 required. Connections are kept alive (HTTP/1.1),
//! since SDK clients reuse them.
//!
//! [`ImdsStub::polls`] counts the notice GETs seen: after arming, a test
//! waits for that count to move on — the positive signal that the watcher
//! has had its chance to see the notice.
//!
//! It also serves the instance's tags, as EC2 does for an instance launched
//! with `InstanceMetadataTags=enabled`: `GET /latest/meta-data/tags/instance`
//! lists the keys, one per line, and `.../tags/instance/KEY` answers the
//! value, or 404 for a key it lacks ([`ImdsStub::set_tag`],
//! [`ImdsStub::remove_tag`]); behind the same token.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::serve::{lock, Acceptor};

/// The path of the spot interruption notice.
pub const INSTANCE_ACTION_PATH: &str = "/latest/meta-data/spot/instance-action";
/// The instance's tags: this lists the keys, `TAGS_PATH/KEY` is a value.
pub const TAGS_PATH: &str = "/latest/meta-data/tags/instance";
const TOKEN_PATH: &str = "/latest/api/token";
const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";

/// An idle keep-alive connection is closed after this long.
const IDLE_LIMIT: Duration = Duration::from_secs(60);
/// The largest request head or body the stub reads.
const MAX_REQUEST: usize = 64 * 1024;
/// Lines kept in the request log.
const MAX_LOG: usize = 10_000;

/// What the stub has seen and what it answers; shared by its threads.
#[derive(Debug, Default)]
struct Shared {
    token: String,
    /// The notice's JSON once armed.
    notice: Mutex<Option<String>>,
    /// GETs of the notice path, with or without a valid token.
    polls: AtomicUsize,
    /// Of those, the ones refused for a missing or wrong token.
    unauthorized: AtomicUsize,
    tokens_issued: AtomicUsize,
    /// The instance's tags, by key.
    tags: Mutex<BTreeMap<String, String>>,
    /// GETs under the tags path answered (with a valid token).
    tag_reads: AtomicUsize,
    /// `METHOD PATH -> STATUS`, in arrival order.
    log: Mutex<Vec<String>>,
}

/// An IMDSv2 stub on `127.0.0.1:<free port>`; stops on drop.
#[derive(Debug)]
pub struct ImdsStub {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _accept: Acceptor,
}

impl ImdsStub {
    /// Starts the stub; it answers at once.
    pub fn start() -> ImdsStub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("the IMDS stub binds 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let addr = listener.local_addr().expect("the stub's address");
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let shared = Arc::new(Shared {
            token: format!("spotload-imds-token-{nanos:x}"),
            ..Shared::default()
        });
        let accept = {
            let shared = shared.clone();
            // Connection threads end on EOF, on the stop flag, or when idle
            // for IDLE_LIMIT: none outlives the stub by much.
            Acceptor::start(listener, "imds stub", move || {
                move |stream, stop: &AtomicBool| {
                    let _ = serve_connection(stream, &shared, stop);
                }
            })
        };
        ImdsStub {
            addr,
            shared,
            _accept: accept,
        }
    }

    /// `http://127.0.0.1:PORT`, for `AWS_EC2_METADATA_SERVICE_ENDPOINT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The stub's `127.0.0.1:PORT` listening address, for a test that
    /// connects to it directly instead of through [`ImdsStub::url`].
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From now on the notice path answers 200 with
    /// `{"action": ACTION, "time": TIME}` (e.g. `"terminate"`,
    /// `"2026-11-30T12:00:00Z"`).
    pub fn arm(&self, action: &str, time: &str) {
        let body = serde_json::json!({"action": action, "time": time}).to_string();
        *lock(&self.shared.notice) = Some(body);
    }

    /// Back to 404 on the notice path.
    pub fn disarm(&self) {
        *lock(&self.shared.notice) = None;
    }

    /// GETs of the notice path seen so far (with or without a token).
    pub fn polls(&self) -> usize {
        self.shared.polls.load(Ordering::SeqCst)
    }

    /// Notice GETs refused with 401 (no token, or a wrong one).
    pub fn unauthorized_polls(&self) -> usize {
        self.shared.unauthorized.load(Ordering::SeqCst)
    }

    /// Tokens handed out by `PUT /latest/api/token`.
    pub fn tokens_issued(&self) -> usize {
        self.shared.tokens_issued.load(Ordering::SeqCst)
    }

    /// From now on the instance has tag `key` = `value` (replacing one).
    pub fn set_tag(&self, key: &str, value: &str) {
        lock(&self.shared.tags).insert(key.to_string(), value.to_string());
    }

    /// From now on the instance lacks tag `key`: its path answers 404.
    pub fn remove_tag(&self, key: &str) {
        lock(&self.shared.tags).remove(key);
    }

    /// GETs under [`TAGS_PATH`] answered with a valid token (200 or 404).
    pub fn tag_reads(&self) -> usize {
        self.shared.tag_reads.load(Ordering::SeqCst)
    }

    /// Every request so far as `METHOD PATH -> STATUS`, for failure messages.
    pub fn requests(&self) -> Vec<String> {
        lock(&self.shared.log).clone()
    }
}

/// One parsed request.
struct Request {
    method: String,
    path: String,
    /// Header names in lower case.
    headers: HashMap<String, String>,
    keep_alive: bool,
}

fn serve_connection(mut stream: TcpStream, shared: &Shared, stop: &AtomicBool) -> io::Result<()> {
    crate::serve::blocking_with_ticks(&stream)?;
    let mut buffer = Vec::new();
    loop {
        let Some(request) = read_request(&mut stream, &mut buffer, stop)? else {
            return Ok(());
        };
        let (status, extra_headers, body) = answer(&request, shared);
        {
            let mut log = lock(&shared.log);
            if log.len() < MAX_LOG {
                log.push(format!("{} {} -> {status}", request.method, request.path));
            }
        }
        let mut response = format!(
            "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\nServer: EC2ws\r\n",
            reason(status),
            body.len()
        );
        for (name, value) in extra_headers {
            response.push_str(&format!("{name}: {value}\r\n"));
        }
        let connection = if request.keep_alive {
            "keep-alive"
        } else {
            "close"
        };
        response.push_str(&format!("Connection: {connection}\r\n\r\n{body}"));
        stream.write_all(response.as_bytes())?;
        stream.flush()?;
        if !request.keep_alive {
            return Ok(());
        }
    }
}

/// Reads one request (head and body) off `stream`; `None` at EOF, on the
/// stop flag, or after IDLE_LIMIT without a byte.
fn read_request(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    stop: &AtomicBool,
) -> io::Result<Option<Request>> {
    let idle_since = Instant::now();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        if buffer.len() > MAX_REQUEST || stop.load(Ordering::SeqCst) {
            return Ok(None);
        }
        if idle_since.elapsed() > IDLE_LIMIT {
            return Ok(None);
        }
        if !read_some(stream, &mut chunk, buffer)? {
            return Ok(None);
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split_whitespace();
    let method = request_line.next().unwrap_or_default().to_string();
    let target = request_line.next().unwrap_or_default();
    let version = request_line.next().unwrap_or("HTTP/1.1").to_string();
    let path = target.split('?').next().unwrap_or_default().to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.trim().to_ascii_lowercase(), value.trim().to_string()))
        })
        .collect();
    let body_len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
        .min(MAX_REQUEST);
    buffer.drain(..head_end + 4);
    let body_deadline = Instant::now() + Duration::from_secs(10);
    while buffer.len() < body_len {
        if stop.load(Ordering::SeqCst) || Instant::now() > body_deadline {
            return Ok(None);
        }
        if !read_some(stream, &mut chunk, buffer)? {
            return Ok(None);
        }
    }
    buffer.drain(..body_len);
    let connection = headers
        .get("connection")
        .map(|v| v.to_ascii_lowercase())
        .unwrap_or_default();
    let keep_alive = if version == "HTTP/1.0" {
        connection.contains("keep-alive")
    } else {
        !connection.contains("close")
    };
    Ok(Some(Request {
        method,
        path,
        headers,
        keep_alive,
    }))
}

/// Status, extra headers and body for `request`.
fn answer(request: &Request, shared: &Shared) -> (u16, Vec<(&'static str, String)>, String) {
    let text = |s: &str| vec![("Content-Type", s.to_string())];
    match (request.method.as_str(), request.path.as_str()) {
        ("PUT", TOKEN_PATH) => {
            let ttl = request
                .headers
                .get(TTL_HEADER)
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|ttl| (1..=21_600).contains(ttl));
            match ttl {
                Some(ttl) => {
                    shared.tokens_issued.fetch_add(1, Ordering::SeqCst);
                    let mut headers = text("text/plain");
                    headers.push(("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", ttl.to_string()));
                    (200, headers, shared.token.clone())
                }
                None => (
                    400,
                    text("text/plain"),
                    "Missing or Invalid Parameters".into(),
                ),
            }
        }
        ("GET", path) => {
            let notice_poll = path == INSTANCE_ACTION_PATH;
            let authorized = request.headers.get(TOKEN_HEADER) == Some(&shared.token);
            // Decided and counted under the notice's lock: a poll counted
            // after `arm` returned has seen the notice.
            let notice = lock(&shared.notice);
            let outcome = if !authorized {
                (401, text("text/plain"), "Unauthorized".to_string())
            } else if notice_poll {
                match notice.clone() {
                    Some(notice) => (200, text("application/json"), notice),
                    None => (404, text("text/html"), "Not Found".to_string()),
                }
            } else if let Some(found) = tag_answer(path, shared) {
                shared.tag_reads.fetch_add(1, Ordering::SeqCst);
                match found {
                    Some(body) => (200, text("text/plain"), body),
                    None => (404, text("text/html"), "Not Found".to_string()),
                }
            } else {
                (404, text("text/html"), "Not Found".to_string())
            };
            if notice_poll {
                if !authorized {
                    shared.unauthorized.fetch_add(1, Ordering::SeqCst);
                }
                shared.polls.fetch_add(1, Ordering::SeqCst);
            }
            drop(notice);
            outcome
        }
        _ => (405, text("text/plain"), "Method Not Allowed".into()),
    }
}

/// For a path under [`TAGS_PATH`]: `Some(Some(body))` when it answers,
/// `Some(None)` for 404; `None` for other paths.
fn tag_answer(path: &str, shared: &Shared) -> Option<Option<String>> {
    let rest = path.strip_prefix(TAGS_PATH)?;
    let tags = lock(&shared.tags);
    match rest.trim_end_matches('/') {
        "" if tags.is_empty() => Some(None),
        "" => Some(Some(tags.keys().cloned().collect::<Vec<_>>().join("\n"))),
        key => Some(key.strip_prefix('/').and_then(|k| tags.get(k).cloned())),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Unknown",
    }
}

/// Reads what has arrived into `buffer`; `false` when the peer closed.
/// A read that times out (the socket has a short timeout) reads nothing.
fn read_some<R: Read>(stream: &mut R, chunk: &mut [u8], buffer: &mut Vec<u8>) -> io::Result<bool> {
    match stream.read(chunk) {
        Ok(0) => Ok(false),
        Ok(n) => {
            buffer.extend_from_slice(&chunk[..n]);
            Ok(true)
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Ok(true)
        }
        Err(e) => Err(e),
    }
}
