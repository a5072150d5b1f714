//! Requests that got no response — a refused connection, a certificate
//! the users do not trust — in the worker's log: once per distinct error
//! with a count, never once per request. Such a failure usually repeats on
//! every request (7,526 lines in 4 s before this), and the failures table
//! counts each one already; the log only has to say that it happens, why,
//! what to do, and how often.
//!
//! The first request failing with an error logs a line at once, with a
//! hint when the cause is a known one; the next ones are counted, a line
//! per [`FAILURE_LOG_WINDOW`] says how many while it goes on, and the end
//! of a run (the users stopped) says how many since the last line.
//! The text is the one in the failures table: goose's, with the causes it
//! leaves out when the scenario reads its responses with
//! [`read_response`](super::read_response) or
//! [`read_body`](super::read_body).

use std::time::Duration;

use crate::logs::{shown, Throttle};

/// At most one line per distinct error per window, with the count of those
/// left out: a failure that lasts a whole run logs a line a minute.
pub const FAILURE_LOG_WINDOW: Duration = Duration::from_secs(60);

/// The throttle's kind for these lines.
const NO_RESPONSE: &str = "no response";

/// How many requests failed without a response, per error, and what has
/// been said about them.
#[derive(Debug)]
pub(crate) struct FailureLog {
    throttle: Throttle,
}

impl Default for FailureLog {
    fn default() -> Self {
        FailureLog {
            throttle: Throttle::new(1, FAILURE_LOG_WINDOW),
        }
    }
}

impl FailureLog {
    /// One request failed with `error` and no response.
    pub(crate) fn failed(&mut self, error: &str) {
        let verdict = self.throttle.check(NO_RESPONSE, error);
        if verdict.allows() {
            tracing::warn!(
                "requests get no response: {}{}{}; each is counted in the failures table, and repeats are counted here, not logged",
                shown_error(error),
                hint(error),
                verdict.note()
            );
        }
    }

    /// The users stopped: says how many failed since each error's last line.
    pub(crate) fn flush(&mut self) {
        for (error, count) in self.throttle.take_left_out(NO_RESPONSE) {
            tracing::warn!(
                "{count} more requests got no response: {}",
                shown_error(&error)
            );
        }
    }
}

/// The most causes [`with_causes`] follows down an error's chain.
const MAX_CAUSES: usize = 8;

/// goose's text for a request that got no response (`error sending request
/// GET /: client error (Connect)`: its error and the first cause), with
/// the causes under those that it leaves out (`: invalid peer certificate:
/// UnknownIssuer`), each once, cut to the failures table's
/// [`MAX_ERROR`](crate::protocol::MAX_ERROR).
pub(crate) fn with_causes(goose_text: &str, error: &reqwest::Error) -> String {
    let mut text = goose_text.to_string();
    let mut cause = std::error::Error::source(error);
    for _ in 0..MAX_CAUSES {
        let Some(current) = cause else { break };
        let said = current.to_string();
        if !said.is_empty() && !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = current.source();
    }
    crate::protocol::capped(&text, crate::protocol::MAX_ERROR).into_owned()
}

/// An error text for a log line: escaped, and cut where `shown` cuts.
fn shown_error(error: &str) -> String {
    shown(error).to_string()
}

/// What to do about a known cause, after a dash; empty for others.
fn hint(error: &str) -> &'static str {
    const HINTS: [(&str, &str); 6] = [
        ("UnknownIssuer", " — the target's certificate comes from a CA the users do not trust: give the master --ca-cert FILE with that CA (or --accept-invalid-certs, for a staging server)"),
        ("CaUsedAsEndEntity", " — the target serves a CA certificate (CA:TRUE, as `openssl req -x509` makes by default) as its own: give the master that very certificate with --ca-cert FILE (it is then trusted as given), or use --accept-invalid-certs"),
        ("NotValidForName", " — the target's certificate does not name the host the users connect to: use a name it holds in --host"),
        ("Expired", " — the target's certificate has expired"),
        ("Connection refused", " — nothing listens there: check the target address (--host) and that the server runs"),
        ("timed out", " — the target did not answer in time"),
    ];
    HINTS
        .iter()
        .find(|(cause, _)| error.contains(cause))
        .map_or("", |(_, hint)| hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_causes_get_a_hint() {
        assert!(hint("error sending request GET /: client error (Connect): invalid peer certificate: UnknownIssuer").contains("--ca-cert"));
        assert!(hint("…: tcp connect error: Connection refused (os error 111)").contains("--host"));
        assert_eq!(hint("500: GET /"), "");
    }

    #[test]
    fn repeats_are_counted_once_and_taken_at_the_end() {
        let mut log = FailureLog::default();
        for _ in 0..1000 {
            log.failed("refused");
        }
        assert_eq!(
            log.throttle.take_left_out(NO_RESPONSE),
            vec![("refused".to_string(), 999)]
        );
        log.flush();
        assert!(log.throttle.take_left_out(NO_RESPONSE).is_empty());
    }
}
