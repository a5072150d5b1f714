//! Refusing state changes a browser was tricked into sending. The UI has
//! no CSRF token (Locust's has none either), so requests that change the
//! run — `POST /swarm`, `/stop`, `/stats/reset`, and any method other than
//! GET — pass two checks:
//!
//! - **The name the browser used** (DNS rebinding): a page on
//!   `rebind.example` can point its own name at this machine, and its
//!   requests then carry `Host: rebind.example` and a matching `Origin`.
//!   The `Host` must be an IP literal (`10.0.0.5`, `[::1]`, with or
//!   without a port), a loopback name (`localhost`, `*.localhost`) or a
//!   name given with `--web-allowed-host` — the defence Jupyter and
//!   webpack-dev-server use. Reads stay open whatever the `Host`, so
//!   scripts reading Locust's API through any name keep working.
//! - **Where the request comes from** (cross-site requests): an `Origin`
//!   that is not `http(s)://<Host>`, or `Sec-Fetch-Site` other than
//!   `same-origin`/`none`, is refused. Scripts (curl, Locust API clients)
//!   send neither header and pass.

use std::net::{Ipv4Addr, Ipv6Addr};

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Paths that change the run, whatever their method.
const STATE_CHANGING: [&str; 3] = ["/swarm", "/stop", "/stats/reset"];

/// Longest name `--web-allowed-host` takes (DNS's limit).
const MAX_NAME_LEN: usize = 253;

/// Host names, besides IP literals and loopback names, under which the
/// UI's state-changing requests are accepted (`--web-allowed-host`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    /// Lowercase, without a trailing dot.
    names: Vec<String>,
}

impl AllowedHosts {
    /// The names given, each checked with [`AllowedHosts::parse_name`].
    pub fn new<S: AsRef<str>>(names: &[S]) -> Result<Self, String> {
        let names = names
            .iter()
            .map(|n| Self::parse_name(n.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(AllowedHosts { names })
    }

    /// A DNS name as `--web-allowed-host` takes it: letters, digits, `-`
    /// and `.`, no port, no scheme; returned lowercase without a trailing
    /// dot.
    pub fn parse_name(text: &str) -> Result<String, String> {
        let name = text.trim_end_matches('.').to_ascii_lowercase();
        let valid = !name.is_empty()
            && name.len() <= MAX_NAME_LEN
            && name.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if valid {
            Ok(name)
        } else {
            Err(format!(
                "{text:?} is not a host name: give the name alone, e.g. ec2-203-0-113-7.compute-1.amazonaws.com (no scheme, no port; IP addresses are always allowed)"
            ))
        }
    }

    /// The names, lowercase.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Whether a request whose `Host` header is `host` may change state.
    pub fn allows(&self, host: &str) -> bool {
        match parse_host(host) {
            Some(HostKind::Ip) => true,
            Some(HostKind::Name(name)) => {
                name == "localhost" || name.ends_with(".localhost") || self.names.contains(&name)
            }
            None => false,
        }
    }
}

/// What a `Host` header names.
#[derive(Debug, PartialEq, Eq)]
enum HostKind {
    /// An IPv4 literal, or an IPv6 literal in brackets.
    Ip,
    /// A name, lowercase, without a trailing dot.
    Name(String),
}

/// Reads `host[:port]`; `None` when it is neither an IP literal nor a
/// plausible name (bad port, an IPv6 address without brackets).
fn parse_host(text: &str) -> Option<HostKind> {
    let port_ok = |port: &str| port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = text.strip_prefix('[') {
        let (address, after) = rest.split_once(']')?;
        address.parse::<Ipv6Addr>().ok()?;
        return match after.strip_prefix(':') {
            None if after.is_empty() => Some(HostKind::Ip),
            Some(port) if port_ok(port) => Some(HostKind::Ip),
            _ => None,
        };
    }
    let name = match text.rsplit_once(':') {
        Some((name, port)) if port_ok(port) => name,
        Some(_) => return None,
        None => text,
    };
    if name.contains(':') || name.is_empty() {
        return None;
    }
    if name.parse::<Ipv4Addr>().is_ok() {
        return Some(HostKind::Ip);
    }
    Some(HostKind::Name(
        name.trim_end_matches('.').to_ascii_lowercase(),
    ))
}

/// The middleware: state-changing requests pass the `Host` check, then
/// the cross-site check; every other request passes untouched.
pub(super) async fn guard(
    State(allowed): State<AllowedHosts>,
    request: Request,
    next: Next,
) -> Response {
    let changes_state =
        request.method() != Method::GET || STATE_CHANGING.contains(&request.uri().path());
    if changes_state {
        let refusal = rebound(&allowed, &request).or_else(|| {
            cross_site(&request).map(|why| {
                format!("refused a cross-site {} {}: {why}; use the web UI itself, or a client that sends no Origin header\n", request.method(), request.uri().path())
            })
        });
        if let Some(message) = refusal {
            return (StatusCode::FORBIDDEN, message).into_response();
        }
    }
    next.run(request).await
}

/// The refusal when the request names this UI by a name it was not told
/// to answer to. A request without a `Host` header came from no browser
/// (every browser sends one), so it cannot be a rebinding page's.
fn rebound(allowed: &AllowedHosts, request: &Request) -> Option<String> {
    let host = match request.headers().get(header::HOST) {
        Some(value) => value.to_str().ok().unwrap_or("(not text)").to_string(),
        None => request.uri().authority()?.as_str().to_string(),
    };
    if allowed.allows(&host) {
        return None;
    }
    let name = match parse_host(&host) {
        Some(HostKind::Name(name)) => name,
        _ => "NAME".into(),
    };
    Some(format!(
        "refused {} {}: Host {host:?} is not an IP address, localhost or a name this UI answers to \
         (a page elsewhere can point any name at this machine: DNS rebinding); \
         if you open the UI under this name, start the master with --web-allowed-host {name}\n",
        request.method(),
        request.uri().path()
    ))
}

/// Why the request comes from another site, if it does.
fn cross_site(request: &Request) -> Option<String> {
    let headers = request.headers();
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &axum::http::HeaderValue| v.to_str().ok())
    };
    if let Some(site) = text("sec-fetch-site") {
        if site != "same-origin" && site != "none" {
            return Some(format!("Sec-Fetch-Site is {site:?}"));
        }
    }
    let origin = text(header::ORIGIN.as_str())?;
    let host = text(header::HOST.as_str()).unwrap_or_default();
    let own = ["http://", "https://"]
        .iter()
        .any(|scheme| origin.strip_prefix(scheme) == Some(host));
    (!own).then(|| format!("Origin {origin:?} is not this UI ({host})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_literals_and_loopback_names_pass_other_names_only_when_allowed() {
        let none = AllowedHosts::default();
        for host in [
            "127.0.0.1",
            "127.0.0.1:8089",
            "10.0.0.5:8089",
            "[::1]",
            "[::1]:8089",
            "[2001:db8::7]:80",
            "localhost",
            "LOCALHOST:8089",
            "ui.localhost:8089",
            "localhost.",
        ] {
            assert!(none.allows(host), "{host}");
        }
        for host in [
            "rebind.example",
            "rebind.example:8089",
            "localhost.example",
            "mylocalhost",
            "::1",
            "[::1]x",
            "127.0.0.1:80:80",
            "127.0.0.1:port",
            "2130706433",
            "",
            ":8089",
        ] {
            assert!(!none.allows(host), "{host}");
        }
        let allowed = AllowedHosts::new(&["UI.Example.", "ec2-1-2-3-4.compute-1.amazonaws.com"])
            .expect("valid names");
        assert!(allowed.allows("ui.example"));
        assert!(allowed.allows("ui.EXAMPLE.:8089"));
        assert!(allowed.allows("ec2-1-2-3-4.compute-1.amazonaws.com:8089"));
        assert!(!allowed.allows("evil.ui.example"));
        assert!(!allowed.allows("rebind.example"));
    }

    #[test]
    fn allowed_names_are_names_alone() {
        assert_eq!(
            AllowedHosts::parse_name("Host-1.Example.").unwrap(),
            "host-1.example"
        );
        for bad in [
            "",
            "http://x.example",
            "x.example:8089",
            "a..b",
            "-a.example",
            "a b",
            "*.example",
        ] {
            let err = AllowedHosts::parse_name(bad).unwrap_err();
            assert!(err.contains("not a host name"), "{bad}: {err}");
        }
    }
}
