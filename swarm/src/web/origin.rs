//! Cross-site request refusal: a page on another origin must not start,
//! stop or reset a run through a user's browser (the UI has no CSRF token;
//! Locust's has none either). Requests that change state are refused when
//! the browser says they come from elsewhere — an `Origin` that is not
//! `http(s)://<Host>`, or `Sec-Fetch-Site` other than `same-origin`/`none`.
//! Scripts (curl, Locust API clients) send neither header and pass.

use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Paths that change the run, whatever their method.
const STATE_CHANGING: [&str; 3] = ["/swarm", "/stop", "/stats/reset"];

pub(super) async fn same_origin_only(request: Request, next: Next) -> Response {
    let changes_state =
        request.method() != Method::GET || STATE_CHANGING.contains(&request.uri().path());
    if changes_state {
        if let Some(why) = cross_site(&request) {
            return (
                StatusCode::FORBIDDEN,
                format!("refused a cross-site {} {}: {why}; use the web UI itself, or a client that sends no Origin header\n", request.method(), request.uri().path()),
            )
                .into_response();
        }
    }
    next.run(request).await
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
