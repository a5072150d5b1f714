//! The spot interruption notice: on EC2 a worker asks the instance
//! metadata service (IMDSv2: a token by `PUT`, then `GET`s carrying it)
//! every [`POLL`] whether its instance is about to be reclaimed
//! (`spot/instance-action`, 404 until AWS gives its two minutes' notice).
//!
//! The endpoint is `AWS_EC2_METADATA_SERVICE_ENDPOINT` when set, as in the
//! AWS SDKs, else `http://169.254.169.254`; `AWS_EC2_METADATA_DISABLED=true`
//! turns the watch off, as it does for the SDKs. Off EC2 the first token
//! request fails and the watch goes quiet for good.

use std::time::Duration;

/// How often the notice is polled (AWS suggests every 5 s; a local GET is
/// cheap, and every second gained is drain time).
pub const POLL: Duration = Duration::from_secs(2);

/// One metadata request's limit: the service answers in milliseconds.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";

/// AWS's two minutes' notice, as the metadata service words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpotNotice {
    /// `terminate`, `stop` or `hibernate`.
    pub action: String,
    /// When it happens (ISO 8601, UTC).
    pub time: String,
}

impl std::fmt::Display for SpotNotice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at {}", self.action, self.time)
    }
}

/// The metadata endpoint to watch, or `None` when the environment turns the
/// watch off.
pub fn endpoint_from_env() -> Option<String> {
    let disabled = std::env::var("AWS_EC2_METADATA_DISABLED")
        .is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if disabled {
        return None;
    }
    let endpoint = std::env::var("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
    Some(endpoint.trim().trim_end_matches('/').to_string())
}

/// Polls `endpoint` until a notice comes, and returns it. Never returns
/// when the service cannot be reached at the first try (not on EC2).
pub async fn next_notice(endpoint: String) -> SpotNotice {
    let client = match reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .no_proxy()
        .build()
    {
        Ok(client) => client,
        Err(err) => {
            tracing::warn!("spot notice watch off: no HTTP client: {err}");
            return std::future::pending().await;
        }
    };
    let mut token = match fetch_token(&client, &endpoint).await {
        Ok(token) => token,
        Err(err) => {
            tracing::debug!("no instance metadata at {endpoint} ({err}): not on EC2, so no spot notices to watch");
            return std::future::pending().await;
        }
    };
    tracing::info!("watching {endpoint} for a spot interruption notice");
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match poll(&client, &endpoint, &token).await {
            Ok(Some(notice)) => return notice,
            Ok(None) => {}
            Err(Poll::TokenExpired) => match fetch_token(&client, &endpoint).await {
                Ok(fresh) => token = fresh,
                Err(err) => tracing::warn!("instance metadata token: {err}"),
            },
            Err(Poll::Failed(err)) => tracing::warn!("spot notice poll: {err}"),
        }
    }
}

enum Poll {
    TokenExpired,
    Failed(String),
}

async fn fetch_token(client: &reqwest::Client, endpoint: &str) -> Result<String, String> {
    let response = client
        .put(format!("{endpoint}/latest/api/token"))
        .header("X-aws-ec2-metadata-token-ttl-seconds", "21600")
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("token request answered {}", response.status()));
    }
    response.text().await.map_err(|e| e.to_string())
}

async fn poll(
    client: &reqwest::Client,
    endpoint: &str,
    token: &str,
) -> Result<Option<SpotNotice>, Poll> {
    let response = client
        .get(format!("{endpoint}/latest/meta-data/spot/instance-action"))
        .header("X-aws-ec2-metadata-token", token)
        .send()
        .await
        .map_err(|e| Poll::Failed(e.to_string()))?;
    match response.status().as_u16() {
        404 => Ok(None),
        401 => Err(Poll::TokenExpired),
        200 => {
            let body = response
                .text()
                .await
                .map_err(|e| Poll::Failed(e.to_string()))?;
            parse_notice(&body).map(Some).map_err(Poll::Failed)
        }
        other => Err(Poll::Failed(format!("instance-action answered {other}"))),
    }
}

/// `{"action": "terminate", "time": "2026-11-30T12:00:00Z"}`.
pub fn parse_notice(body: &str) -> Result<SpotNotice, String> {
    #[derive(serde::Deserialize)]
    struct Wire {
        action: String,
        time: String,
    }
    let wire: Wire = serde_json::from_str(body).map_err(|e| {
        format!("instance-action is not the notice AWS documents ({e}): {body:.200}")
    })?;
    Ok(SpotNotice {
        action: wire.action,
        time: wire.time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_notice_parses() {
        let notice =
            parse_notice(r#"{"action": "terminate", "time": "2026-11-30T12:00:00Z"}"#).expect("ok");
        assert_eq!(notice.to_string(), "terminate at 2026-11-30T12:00:00Z");
        assert!(parse_notice("<html>").is_err());
    }
}
