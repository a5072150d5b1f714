//! A tiny blocking HTTP/1.0 client for talking to the servers under test:
//! [`http_get`], [`http_post_form`] and the general [`try_http`];
//! [`try_http_with_headers`] and [`http_post_form_with_headers`] add
//! request headers (an `Origin`, say).
//!
//! Each request uses `Connection: close`, so the response ends at EOF and
//! no keep-alive or content-length bookkeeping is needed. `split_url` and
//! `parse_response` are shared with `webdriver`.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Timeout for each step (connect, read, write) of the tiny HTTP client.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// GET `url` (plain `http://host:port/path`); panics if the server cannot
/// be reached. Returns the status and the body.
pub fn http_get(url: &str) -> (u16, String) {
    try_http("GET", url, None).unwrap_or_else(|e| panic!("GET {url} failed: {e}"))
}

/// POST `form` as `application/x-www-form-urlencoded`, like a browser form
/// (this is how Locust's `/swarm` takes its parameters).
pub fn http_post_form(url: &str, form: &[(&str, &str)]) -> (u16, String) {
    let body = form_urlencode(form);
    let content = ("application/x-www-form-urlencoded", body.as_bytes());
    try_http("POST", url, Some(content)).unwrap_or_else(|e| panic!("POST {url} failed: {e}"))
}

/// One HTTP/1.0 request with `Connection: close`: the response then ends
/// at EOF, so no keep-alive or content-length bookkeeping is needed.
/// `body` is `(content_type, bytes)`.
pub fn try_http(method: &str, url: &str, body: Option<(&str, &[u8])>) -> io::Result<(u16, String)> {
    try_http_with_headers(method, url, &[], body)
}

/// POST `form` like [`http_post_form`], with extra request headers (an
/// `Origin`, say); panics if the server cannot be reached.
pub fn http_post_form_with_headers(
    url: &str,
    headers: &[(&str, &str)],
    form: &[(&str, &str)],
) -> (u16, String) {
    let body = form_urlencode(form);
    let content = ("application/x-www-form-urlencoded", body.as_bytes());
    try_http_with_headers("POST", url, headers, Some(content))
        .unwrap_or_else(|e| panic!("POST {url} failed: {e}"))
}

/// [`try_http`] with extra request headers, sent after `Host` and
/// `Connection` (so a test can set `Origin`, `User-Agent`, ...).
pub fn try_http_with_headers(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, &[u8])>,
) -> io::Result<(u16, String)> {
    let (authority, path) = split_url(url)?;
    let addr = authority
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other(format!("{authority} resolves to nothing")))?;
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT))?;

    let mut request =
        format!("{method} {path} HTTP/1.0\r\nHost: {authority}\r\nConnection: close\r\n");
    for (name, value) in headers {
        let _ = write!(request, "{name}: {value}\r\n");
    }
    if let Some((content_type, bytes)) = body {
        let _ = write!(
            request,
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            bytes.len()
        );
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    if let Some((_, bytes)) = body {
        stream.write_all(bytes)?;
    }

    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

/// `http://host:port/path?q` → (`host:port`, `/path?q`).
pub(super) fn split_url(url: &str) -> io::Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| io::Error::other(format!("not an http:// URL: {url}")))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let authority = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((authority, path.to_string()))
}

pub(super) fn parse_response(raw: &[u8]) -> io::Result<(u16, String)> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| io::Error::other("response without a header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line in {head:?}")))?;
    // An HTTP/1.0 request should never get a chunked answer, but decode one
    // rather than hand a test a body full of chunk sizes.
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        decode_chunked(body)
    } else {
        body.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn decode_chunked(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_field = String::from_utf8_lossy(&data[..eol]);
        let size_hex = size_field.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16).unwrap_or(0);
        let start = eol + 2;
        if size == 0 || start + size > data.len() {
            break;
        }
        out.extend_from_slice(&data[start..start + size]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

fn form_urlencode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}
