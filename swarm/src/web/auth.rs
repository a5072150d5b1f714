//! HTTP basic auth for the web app (`--web-auth USER:PASS`), so browsers
//! prompt and `curl -u` keeps working.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

use crate::api::Credentials;

/// The one user allowed in.
#[derive(Clone, Debug)]
pub struct WebAuth {
    expected: String,
}

impl WebAuth {
    /// Parses `USER:PASS` (see [`Credentials`]).
    pub fn parse(spec: &str) -> Result<Self, String> {
        spec.parse::<Credentials>()
            .map(|c| WebAuth::new(&c))
            .map_err(|e| format!("--web-auth: {e}"))
    }

    /// Checks requests against `credentials`, as HTTP basic auth.
    pub fn new(credentials: &Credentials) -> Self {
        WebAuth {
            expected: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(credentials.to_string())
            ),
        }
    }
}

pub(super) async fn require(State(auth): State<WebAuth>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if given.is_some_and(|g| constant_time_eq(g.as_bytes(), auth.expected.as_bytes())) {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"spotload\"")],
        "authentication required: pass the --web-auth credentials (curl -u USER:PASS)\n",
    )
        .into_response()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
