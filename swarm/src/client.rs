//! [`MasterClient`]: the master's web API from the caller's side — the
//! remote ramp, `spotload`'s commands and the tests all read a master
//! (ours, or a stock Locust master) through it, in the types of
//! [`crate::api`].

use std::time::Duration;

use crate::api::{
    Credentials, ExceptionsAnswer, StatsRequests, StopAnswer, SwarmAnswer, SwarmForm, TotalAnswer,
};

/// How long one API call may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a kept-alive connection waits in the pool: less than our
/// master's [`crate::web::IDLE_TIMEOUT`], so the client lets go of a
/// connection before the master closes it under a request.
const POOL_IDLE: Duration = Duration::from_secs(4);

/// A call that failed: which URL, and why.
#[derive(Debug, thiserror::Error)]
#[error("master at {url}: {message}")]
pub struct ClientError {
    /// The URL called.
    pub url: String,
    /// What went wrong: the transport error, the status and body, or the
    /// body that did not parse.
    pub message: String,
}

/// A master's web API at a base URL such as `http://10.0.0.7:8089`.
#[derive(Debug, Clone)]
pub struct MasterClient {
    http: reqwest::Client,
    base: String,
    credentials: Option<Credentials>,
}

impl MasterClient {
    /// A client for the master at `base_url`, sending `credentials` as basic
    /// auth when given; an `https://` master must have a certificate the
    /// system trusts. Fails only if no HTTP client can be built.
    pub fn new(base_url: &str, credentials: Option<Credentials>) -> Result<Self, ClientError> {
        Self::build(base_url, credentials, None)
    }

    /// A client for an `https://` master whose certificate is `cert_pem`
    /// (PEM, e.g. the self-signed one `spotload deploy` made): the only
    /// root trusted, the host name in `base_url` checked against its
    /// names. Fails when `cert_pem` holds no certificate.
    pub fn pinned(
        base_url: &str,
        credentials: Option<Credentials>,
        cert_pem: &[u8],
    ) -> Result<Self, ClientError> {
        Self::build(base_url, credentials, Some(cert_pem))
    }

    fn build(
        base_url: &str,
        credentials: Option<Credentials>,
        cert_pem: Option<&[u8]>,
    ) -> Result<Self, ClientError> {
        let base = base_url.trim_end_matches('/').to_string();
        let error = |message: String| ClientError {
            url: base.clone(),
            message,
        };
        let mut builder = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .pool_idle_timeout(POOL_IDLE);
        if let Some(pem) = cert_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| error(format!("the master's certificate is not PEM: {e}")))?;
            if certs.is_empty() {
                return Err(error(
                    "the master's certificate file holds no certificate".into(),
                ));
            }
            builder = builder.tls_certs_only(certs);
        }
        let http = builder
            .build()
            .map_err(|e| error(format!("cannot build an HTTP client: {e}")))?;
        Ok(MasterClient {
            http,
            base,
            credentials,
        })
    }

    /// The base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `POST /swarm`; a refusal is an `Ok` answer with `success: false`.
    pub async fn swarm(&self, form: &SwarmForm) -> Result<SwarmAnswer, ClientError> {
        let request = self.http.post(self.url("/swarm")).form(form);
        self.json("/swarm", request).await
    }

    /// `POST /stop`.
    pub async fn stop(&self) -> Result<StopAnswer, ClientError> {
        let request = self.http.post(self.url("/stop"));
        self.json("/stop", request).await
    }

    /// `POST /stats/reset`.
    pub async fn reset_stats(&self) -> Result<(), ClientError> {
        let request = self.http.post(self.url("/stats/reset"));
        self.text("/stats/reset", request).await.map(|_| ())
    }

    /// `GET /stats/requests`.
    pub async fn requests(&self) -> Result<StatsRequests, ClientError> {
        let request = self.http.get(self.url("/stats/requests"));
        self.json("/stats/requests", request).await
    }

    /// `GET /stats/total` (ours only).
    pub async fn total(&self) -> Result<TotalAnswer, ClientError> {
        let request = self.http.get(self.url("/stats/total"));
        self.json("/stats/total", request).await
    }

    /// `GET /exceptions`.
    pub async fn exceptions(&self) -> Result<ExceptionsAnswer, ClientError> {
        let request = self.http.get(self.url("/exceptions"));
        self.json("/exceptions", request).await
    }

    /// `GET path` as text, e.g. a CSV download.
    pub async fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let request = self.http.get(self.url(path));
        self.text(path, request).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn error(&self, path: &str, message: impl std::fmt::Display) -> ClientError {
        ClientError {
            url: self.url(path),
            message: message.to_string(),
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let body = self.text(path, request).await?;
        serde_json::from_str(&body).map_err(|e| {
            let excerpt: String = body.chars().take(200).collect();
            self.error(path, format!("unexpected answer ({e}): {excerpt}"))
        })
    }

    /// Sends the request and returns the body of a 2xx answer.
    async fn text(
        &self,
        path: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<String, ClientError> {
        let request = match &self.credentials {
            Some(c) => request.basic_auth(&c.user, Some(&c.pass)),
            None => request,
        };
        let response = request
            .send()
            .await
            .map_err(|e| {
                let text = error_chain(&e);
                let hint = if text.contains("invalid peer certificate") {
                    " (the master serves a certificate this client does not trust: give it the master's certificate)"
                } else {
                    ""
                };
                self.error(path, format!("{text}{hint}"))
            })?;
        let status = response.status();
        let body = response.text().await.map_err(|e| self.error(path, e))?;
        if !status.is_success() {
            let excerpt: String = body.chars().take(200).collect();
            let hint = if status == reqwest::StatusCode::UNAUTHORIZED {
                " (pass the UI's credentials, --web-auth USER:PASS)"
            } else {
                ""
            };
            return Err(self.error(path, format!("HTTP {status}{hint}: {excerpt}")));
        }
        Ok(body)
    }
}

/// An error with its causes on one line: reqwest hides why a TLS
/// handshake failed ("invalid peer certificate: ...") in its sources.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
