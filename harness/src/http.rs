//! HTTP for tests, through reqwest's blocking client: [`http_get`],
//! [`http_post_form`] and the general [`try_http`];
//! [`try_http_with_headers`] and [`http_post_form_with_headers`] add
//! request headers (an `Origin`, say); [`https_request`] trusts one given
//! certificate. A master's API in its types is
//! [`crate::Api`]; these are for the raw status and body.
//!
//! Every request opens a fresh connection (no pool) and follows no
//! redirect: tests restart servers on the same port and check exact
//! statuses, so nothing may be reused or answered behind their back.

use std::sync::OnceLock;
use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::redirect::Policy;

/// The most one request may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// The client every test request goes through (it runs its own thread).
pub(crate) fn client() -> &'static Client {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        Client::builder()
            .timeout(HTTP_TIMEOUT)
            .pool_max_idle_per_host(0)
            .redirect(Policy::none())
            .build()
            .expect("cannot build reqwest's blocking client")
    })
}

/// GET `url`; panics if the server cannot be reached. Returns the status
/// and the body.
pub fn http_get(url: &str) -> (u16, String) {
    try_http("GET", url, None).unwrap_or_else(|e| panic!("GET {url} failed: {e}"))
}

/// POST `form` as `application/x-www-form-urlencoded`, like a browser form
/// (this is how Locust's `/swarm` takes its parameters).
pub fn http_post_form(url: &str, form: &[(&str, &str)]) -> (u16, String) {
    http_post_form_with_headers(url, &[], form)
}

/// POST `form` like [`http_post_form`], with extra request headers (an
/// `Origin`, say); panics if the server cannot be reached.
pub fn http_post_form_with_headers(
    url: &str,
    headers: &[(&str, &str)],
    form: &[(&str, &str)],
) -> (u16, String) {
    outside_async(|| {
        let mut request = client().post(url).form(form);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        send_now(request)
    })
    .unwrap_or_else(|e| panic!("POST {url} failed: {e}"))
}

/// One request; `body` is `(content_type, bytes)`. An `Err` says why the
/// server could not be reached or did not answer.
pub fn try_http(
    method: &str,
    url: &str,
    body: Option<(&str, &[u8])>,
) -> Result<(u16, String), String> {
    try_http_with_headers(method, url, &[], body)
}

/// [`try_http`] with extra request headers (`Origin`, `User-Agent`, ...).
pub fn try_http_with_headers(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, &[u8])>,
) -> Result<(u16, String), String> {
    outside_async(|| {
        let mut request = prepare(method, url, headers)?;
        if let Some((content_type, bytes)) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(bytes.to_vec());
        }
        send_now(request)
    })
}

/// A whole answer: status, headers (`name: value` lines) and body.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status code, e.g. 200 or 503.
    pub status: u16,
    /// The response headers as `name: value` lines, one per header; read
    /// one with [`Reply::header`].
    pub head: String,
    /// The response body, decoded as (lossy) UTF-8 text.
    pub body: String,
}

impl Reply {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then_some(value.trim())
        })
    }
}

/// One request with headers and, when `form` is given, a urlencoded body;
/// the whole answer, headers included.
pub fn http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    form: Option<&[(&str, &str)]>,
) -> Result<Reply, String> {
    outside_async(|| {
        let mut request = prepare(method, url, headers)?;
        if let Some(form) = form {
            request = request.form(form);
        }
        reply(request)
    })
}

/// One request to an HTTPS server whose certificate is `cert_pem`, the
/// only root the client trusts (the host name in `url` is checked against
/// the certificate's names); otherwise as [`http_request`].
pub fn https_request(
    cert_pem: &[u8],
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    form: Option<&[(&str, &str)]>,
) -> Result<Reply, String> {
    outside_async(|| {
        let certs = reqwest::Certificate::from_pem_bundle(cert_pem)
            .map_err(|e| format!("not a PEM certificate: {}", describe(&e)))?;
        let client = Client::builder()
            .timeout(HTTP_TIMEOUT)
            .pool_max_idle_per_host(0)
            .redirect(Policy::none())
            .tls_certs_only(certs)
            .build()
            .map_err(|e| describe(&e))?;
        let verb = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| format!("bad method {method:?}: {e}"))?;
        let mut request = client.request(verb, url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(form) = form {
            request = request.form(form);
        }
        reply(request)
    })
}

/// A request of `method` to `url` with `headers`, not yet sent.
fn prepare(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<reqwest::blocking::RequestBuilder, String> {
    let verb = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|e| format!("bad method {method:?}: {e}"))?;
    let mut request = client().request(verb, url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    Ok(request)
}

fn reply(request: reqwest::blocking::RequestBuilder) -> Result<Reply, String> {
    let response = request.send().map_err(|e| describe(&e))?;
    let status = response.status().as_u16();
    let head = response
        .headers()
        .iter()
        .map(|(name, value)| format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes())))
        .collect();
    let body = response.text().map_err(|e| describe(&e))?;
    Ok(Reply { status, head, body })
}

/// Runs `f` on a thread of its own when called from inside a tokio
/// runtime (a `#[tokio::test]` starting moto, say): reqwest's blocking
/// client refuses to run, or be dropped, there.
pub(crate) fn outside_async<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|scope| match scope.spawn(f).join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

fn send_now(request: reqwest::blocking::RequestBuilder) -> Result<(u16, String), String> {
    let response = request.send().map_err(|e| describe(&e))?;
    let status = response.status().as_u16();
    let body = response.text().map_err(|e| describe(&e))?;
    Ok((status, body))
}

/// The error and its causes on one line ("connection refused" hides in
/// the sources of reqwest's error).
pub(crate) fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
