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
    /// auth when given; fails only if no HTTP client can be built.
    pub fn new(base_url: &str, credentials: Option<Credentials>) -> Result<Self, ClientError> {
        let base = base_url.trim_end_matches('/').to_string();
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| ClientError {
                url: base.clone(),
                message: format!("cannot build an HTTP client: {e}"),
            })?;
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
        let response = request.send().await.map_err(|e| self.error(path, e))?;
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
