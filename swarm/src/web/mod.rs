//! The master's web app on :8089: Locust's HTTP API (same paths, form
//! fields, JSON keys and CSV headers) and our own page, all served by the
//! binary — no CDN.
//!
//! [`app`] builds the whole router in one place, so tests drive it with
//! `oneshot` and no socket; [`serve`] runs it on our own bounded server
//! (`server.rs`, `connection.rs`), over HTTPS with a [`WebTls`].

mod auth;
mod connection;
mod form;
mod handlers;
mod origin;
mod report;
mod script_json;
mod server;
#[cfg(test)]
mod server_tests;
#[cfg(test)]
mod tests;
mod tls;

use axum::routing::{get, post};
use axum::Router;

pub use auth::WebAuth;
pub use form::{check_host, parse_swarm_form, FormError};
pub use handlers::{exceptions_answer, stats_requests, total_answer};
pub use origin::AllowedHosts;
pub use report::render_report;
pub use script_json::json_for_script;
pub use server::{
    serve, Limits, ServeOptions, WebServer, BODY_READ_TIMEOUT, DRAIN_TIMEOUT, HEADER_READ_TIMEOUT,
    IDLE_TIMEOUT, MAX_BODY_BYTES, MAX_CONNECTIONS, MAX_HEAD_BYTES, TLS_HANDSHAKE_TIMEOUT,
};
pub use tls::{TlsError, WebTls};

use crate::master::MasterHandle;

/// What every handler needs.
#[derive(Clone)]
pub struct WebState {
    /// The running master the API reads and drives.
    pub master: MasterHandle,
}

/// Who may do what on the UI: the password, and the names besides IP
/// addresses and `localhost` under which it accepts state changes.
#[derive(Clone, Debug, Default)]
pub struct WebAccess {
    /// HTTP basic auth for every path (`--web-auth`); `None`: open.
    pub auth: Option<WebAuth>,
    /// `--web-allowed-host` names (see [`AllowedHosts`]).
    pub allowed_hosts: AllowedHosts,
}

/// The router: the page, the report and Locust's API, behind `access`.
pub fn app(master: MasterHandle, access: WebAccess) -> Router {
    let router = Router::new()
        .route("/", get(handlers::index))
        .route("/common.js", get(handlers::common_js))
        .route("/swarm", post(handlers::swarm))
        .route("/stop", get(handlers::stop).post(handlers::stop))
        .route("/stats/reset", get(handlers::reset).post(handlers::reset))
        .route("/stats/requests", get(handlers::requests))
        .route("/stats/total", get(handlers::total))
        .route("/stats/requests/csv", get(handlers::requests_csv))
        .route("/stats/failures/csv", get(handlers::failures_csv))
        .route("/stats/history", get(handlers::history))
        .route("/stats/report", get(handlers::report))
        .route("/exceptions", get(handlers::exceptions))
        .route("/exceptions/csv", get(handlers::exceptions_csv))
        .with_state(WebState { master })
        .layer(axum::middleware::from_fn_with_state(
            access.allowed_hosts,
            origin::guard,
        ));
    match access.auth {
        Some(auth) => router.layer(axum::middleware::from_fn_with_state(auth, auth::require)),
        None => router,
    }
}
