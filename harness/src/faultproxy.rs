//! A fault-injecting HTTP proxy in front of a [`Moto`] server: [`FaultProxy`].
//!
//! moto has no capacity shortages, quotas, service-linked roles or eventual
//! consistency, so the faults a real account produces cannot come from it.
//! The proxy sits between the SDK and moto (point `--endpoint-url` at
//! [`FaultProxy::url`]) and answers chosen calls itself, with the status and
//! error XML EC2 really sends; every other request goes through to moto.
//!
//! EC2 speaks the query protocol: each request is a form body with
//! `Action=RunInstances&...`. A [`Fault`] matches one action, optionally
//! only when the decoded body contains a substring (e.g.
//! `TagSpecification.1.Tag.2.Value=worker` for the worker launch, or
//! `InstanceId.2=` for a terminate batch of two or more), and answers it a
//! number of times or always. SSM speaks JSON with the operation in the
//! `X-Amz-Target` header; it is recorded (as `ssm:GetParameter`) and passed
//! through, never faulted.
//!
//! Every request is recorded as an IAM-style action (`ec2:RunInstances`)
//! with its decoded body, faulted or not: the IAM policy test reads the
//! actions, the zone test reads the `CreateFleet` body.
//!
//! Plain std threads, like the IMDS stub: one accept loop, one thread per
//! kept-alive connection, requests with a `Content-Length` body (what the
//! SDK sends); forwarding uses a blocking reqwest client.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::moto::Moto;
use crate::serve::{lock, Acceptor};

/// The largest request head or body the proxy reads.
const MAX_REQUEST: usize = 4 * 1024 * 1024;
/// One forwarded call may take this long at moto.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(60);

/// One injected fault: which call it catches, how often, and the answer.
#[derive(Debug, Clone)]
pub struct Fault {
    /// The EC2 action, e.g. `RunInstances`.
    action: String,
    /// Only requests whose decoded form body contains this.
    body_contains: Option<String>,
    /// How many more requests it answers; `None` for every one.
    remaining: Option<usize>,
    /// The HTTP status EC2 uses for this error.
    status: u16,
    /// The EC2 error code, e.g. `InsufficientInstanceCapacity`.
    code: String,
    /// The error message, as EC2 words it.
    message: String,
}

impl Fault {
    /// Answers `action` with EC2's error `code` and `message` at HTTP
    /// `status` (400 for most client errors, 403 for
    /// `UnauthorizedOperation`, 500 for capacity), every time until
    /// [`Fault::times`] limits it.
    pub fn error(action: &str, status: u16, code: &str, message: &str) -> Fault {
        Fault {
            action: action.to_string(),
            body_contains: None,
            remaining: None,
            status,
            code: code.to_string(),
            message: message.to_string(),
        }
    }

    /// Only requests whose decoded form body contains `needle`, e.g.
    /// `Value=worker` or `InstanceId.2=`.
    pub fn when_body_contains(mut self, needle: &str) -> Fault {
        self.body_contains = Some(needle.to_string());
        self
    }

    /// Answers only the next `n` matching requests, then lets them through.
    pub fn times(mut self, n: usize) -> Fault {
        self.remaining = Some(n);
        self
    }

    fn matches(&self, action: &str, body: &str) -> bool {
        self.action == action
            && self.remaining != Some(0)
            && self
                .body_contains
                .as_ref()
                .is_none_or(|needle| body.contains(needle.as_str()))
    }
}

/// One request the proxy saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// IAM-style: `ec2:RunInstances`, `ssm:GetParameter`.
    pub action: String,
    /// The form body, percent-decoded (EC2), or the JSON body (SSM).
    pub body: String,
    /// The error code the proxy answered with; `None` when moto answered.
    pub faulted: Option<String>,
}

#[derive(Debug, Default)]
struct Shared {
    faults: Mutex<Vec<Fault>>,
    calls: Mutex<Vec<Call>>,
}

/// The proxy on `127.0.0.1:<free port>`, forwarding to one moto server;
/// stops on drop.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _accept: Acceptor,
}

impl FaultProxy {
    /// Starts a proxy in front of `moto`; it answers at once.
    pub fn start(moto: &Moto) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("the fault proxy binds 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let addr = listener.local_addr().expect("the proxy's address");
        let shared = Arc::new(Shared::default());
        let upstream = moto.url();
        let accept = {
            let shared = shared.clone();
            // The blocking client is built on the accept thread, away from
            // the test's runtime. Connection threads end on EOF or on the
            // stop flag.
            Acceptor::start(listener, "fault proxy", move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(FORWARD_TIMEOUT)
                    .build()
                    .expect("a blocking HTTP client");
                move |stream, stop: &AtomicBool| {
                    let _ = serve_connection(stream, &client, &upstream, &shared, stop);
                }
            })
        };
        FaultProxy {
            addr,
            shared,
            _accept: accept,
        }
    }

    /// `http://127.0.0.1:PORT`: the `--endpoint-url` for EC2 and SSM.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds a fault; earlier faults match first.
    pub fn inject(&self, fault: Fault) {
        lock(&self.shared.faults).push(fault);
    }

    /// Removes every fault: all requests go through to moto again.
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Every request so far, in arrival order.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.shared.calls).clone()
    }

    /// The distinct IAM-style actions seen so far, sorted.
    pub fn actions(&self) -> Vec<String> {
        let mut actions: Vec<String> = self.calls().into_iter().map(|c| c.action).collect();
        actions.sort();
        actions.dedup();
        actions
    }

    /// Forgets the recorded calls (faults stay).
    pub fn clear_calls(&self) {
        lock(&self.shared.calls).clear();
    }
}

/// One request as read off the connection.
struct Request {
    method: String,
    path: String,
    /// Header names in lower case.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A status, headers and body to write back to the SDK.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn serve_connection(
    mut stream: TcpStream,
    client: &reqwest::blocking::Client,
    upstream: &str,
    shared: &Shared,
    stop: &AtomicBool,
) -> io::Result<()> {
    crate::serve::blocking_with_ticks(&stream)?;
    let mut buffer = Vec::new();
    loop {
        let Some(request) = read_request(&mut stream, &mut buffer, stop)? else {
            return Ok(());
        };
        let answer = handle(&request, client, upstream, shared);
        let mut head = format!("HTTP/1.1 {} {}\r\n", answer.status, reason(answer.status));
        for (name, value) in &answer.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", answer.body.len()));
        stream.write_all(head.as_bytes())?;
        stream.write_all(&answer.body)?;
        stream.flush()?;
    }
}

/// Records the request, then answers it with a matching fault or moto's answer.
fn handle(
    request: &Request,
    client: &reqwest::blocking::Client,
    upstream: &str,
    shared: &Shared,
) -> Answer {
    let raw = String::from_utf8_lossy(&request.body).into_owned();
    let (action, body) = match request.header("x-amz-target") {
        // JSON protocols (SSM): `AmazonSSM.GetParameter`.
        Some(target) => {
            let operation = target.rsplit('.').next().unwrap_or(target);
            (format!("ssm:{operation}"), raw)
        }
        None => {
            let body = form_decode(&raw);
            let action = form_value(&raw, "Action").unwrap_or_default();
            (format!("ec2:{action}"), body)
        }
    };
    let fault = {
        let mut faults = lock(&shared.faults);
        let ec2_action = action.strip_prefix("ec2:").unwrap_or("");
        faults
            .iter_mut()
            .find(|f| f.matches(ec2_action, &body))
            .map(|f| {
                if let Some(n) = f.remaining.as_mut() {
                    *n -= 1;
                }
                f.clone()
            })
    };
    lock(&shared.calls).push(Call {
        action,
        body,
        faulted: fault.as_ref().map(|f| f.code.clone()),
    });
    match fault {
        Some(fault) => error_answer(&fault),
        None => forward(request, client, upstream),
    }
}

/// EC2's error document, as the query protocol answers it.
fn error_answer(fault: &Fault) -> Answer {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    let request_id = format!("5e1f0e1c-0000-4000-8000-{id:012x}");
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code>\
         <Message>{}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>",
        xml_escape(&fault.code),
        xml_escape(&fault.message)
    );
    Answer {
        status: fault.status,
        headers: vec![
            ("Content-Type".into(), "text/xml;charset=UTF-8".into()),
            ("x-amzn-RequestId".into(), request_id),
            ("Server".into(), "AmazonEC2".into()),
        ],
        body: body.into_bytes(),
    }
}

/// The request as moto answers it; a 502 with the reason when moto does not.
fn forward(request: &Request, client: &reqwest::blocking::Client, upstream: &str) -> Answer {
    let method =
        reqwest::Method::from_bytes(request.method.as_bytes()).unwrap_or(reqwest::Method::POST);
    let mut outgoing = client.request(method, format!("{upstream}{}", request.path));
    for (name, value) in &request.headers {
        if !matches!(
            name.as_str(),
            "host" | "content-length" | "connection" | "transfer-encoding"
        ) {
            outgoing = outgoing.header(name.as_str(), value.as_str());
        }
    }
    let reply = outgoing.body(request.body.clone()).send();
    match reply {
        Ok(reply) => {
            let status = reply.status().as_u16();
            let headers = reply
                .headers()
                .iter()
                .filter(|(name, _)| {
                    !matches!(
                        name.as_str(),
                        "content-length" | "connection" | "transfer-encoding" | "keep-alive"
                    )
                })
                .map(|(name, value)| {
                    (
                        name.as_str().to_string(),
                        value.to_str().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            let body = reply.bytes().map(|b| b.to_vec()).unwrap_or_default();
            Answer {
                status,
                headers,
                body,
            }
        }
        Err(err) => Answer {
            status: 502,
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: format!("fault proxy: moto did not answer: {err}").into_bytes(),
        },
    }
}

/// Reads one request (head and `Content-Length` body); `None` on EOF or stop.
fn read_request(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    stop: &AtomicBool,
) -> io::Result<Option<Request>> {
    let head_end = loop {
        if let Some(end) = find(buffer, b"\r\n\r\n") {
            break end;
        }
        if !fill(stream, buffer, stop)? {
            return Ok(None);
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split_whitespace();
    let method = first.next().unwrap_or("GET").to_string();
    let path = first.next().unwrap_or("/").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    if length > MAX_REQUEST {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "body too large"));
    }
    let body_start = head_end + 4;
    while buffer.len() < body_start + length {
        if !fill(stream, buffer, stop)? {
            return Ok(None);
        }
    }
    let body = buffer[body_start..body_start + length].to_vec();
    buffer.drain(..body_start + length);
    Ok(Some(Request {
        method,
        path,
        headers,
        body,
    }))
}

/// Reads more bytes; false on EOF or when the proxy stops.
fn fill(stream: &mut TcpStream, buffer: &mut Vec<u8>, stop: &AtomicBool) -> io::Result<bool> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(false);
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                buffer.extend_from_slice(&chunk[..n]);
                if buffer.len() > MAX_REQUEST + 64 * 1024 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "request too large",
                    ));
                }
                return Ok(true);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The decoded value of form field `name` in `body`.
fn form_value(body: &str, name: &str) -> Option<String> {
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| percent_decode(key) == name)
        .map(|(_, value)| percent_decode(value))
}

/// `a=1&b=x%20y` → `a=1&b=x y`: field by field, so `&` and `=` inside
/// values stay distinguishable only by position, which substring matching
/// does not need.
fn form_decode(body: &str) -> String {
    body.split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) => format!("{}={}", percent_decode(key), percent_decode(value)),
            None => percent_decode(pair),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_decode_field_by_field() {
        let body = "Action=RunInstances&TagSpecification.1.Tag.1.Key=spotload%3Afleet&X=a+b%2Fc";
        assert_eq!(form_value(body, "Action").as_deref(), Some("RunInstances"));
        assert_eq!(
            form_decode(body),
            "Action=RunInstances&TagSpecification.1.Tag.1.Key=spotload:fleet&X=a b/c"
        );
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%4"), "%4");
    }

    #[test]
    fn a_fault_matches_its_action_body_and_count() {
        let fault = Fault::error("TerminateInstances", 400, "X", "y")
            .when_body_contains("InstanceId.2=")
            .times(1);
        assert!(fault.matches("TerminateInstances", "InstanceId.1=a&InstanceId.2=b"));
        assert!(!fault.matches("TerminateInstances", "InstanceId.1=a"));
        assert!(!fault.matches("RunInstances", "InstanceId.2=b"));
        let spent = fault.times(0);
        assert!(!spent.matches("TerminateInstances", "InstanceId.2=b"));
    }

    #[test]
    fn the_error_body_is_ec2s() {
        let answer = error_answer(&Fault::error("RunInstances", 500, "Insufficient<", "a & b"));
        let body = String::from_utf8(answer.body).unwrap();
        assert!(body.contains("<Response><Errors><Error><Code>Insufficient&lt;</Code>"));
        assert!(body.contains("<Message>a &amp; b</Message>"));
        assert!(body.contains("<RequestID>"));
        assert_eq!(answer.status, 500);
    }
}
