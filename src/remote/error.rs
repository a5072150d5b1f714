//! [`RemoteError`]: what can go wrong talking to a host, each message naming
//! the host (and file or command) and saying what to do next.

use std::path::PathBuf;
use std::time::Duration;

/// A failure reaching a host or running something on it.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The private key file could not be read or parsed.
    #[error("cannot use SSH key {path}: {detail}")]
    Key { path: PathBuf, detail: String },

    /// No SSH session within the wait limit; `last` is the last attempt's error.
    #[error(
        "{host}: no SSH connection within {:.1}s ({attempts} attempts); last error: {last}",
        waited.as_secs_f64()
    )]
    Unreachable {
        host: String,
        waited: Duration,
        attempts: u32,
        last: String,
    },

    /// The host presents a key other than the one recorded for it.
    #[error(
        "{host}: host key changed: it now presents {fingerprint}, but {file} line {line} records \
         another key for it; connection refused. If the host was really replaced (cloud \
         addresses get reused), delete that line and deploy again; otherwise someone may be \
         intercepting the connection"
    )]
    HostKeyChanged {
        host: String,
        file: PathBuf,
        line: usize,
        fingerprint: String,
    },

    /// The known_hosts file could not be read or written.
    #[error("{host}: cannot use known_hosts file {file}: {detail}")]
    KnownHosts {
        host: String,
        file: PathBuf,
        detail: String,
    },

    /// The server refused the key for this user.
    #[error(
        "{host}: the server refused key {key} for user {user}: check the user name and that \
         the key's public half is in that user's authorized_keys"
    )]
    AuthRejected {
        host: String,
        user: String,
        key: PathBuf,
    },

    /// An SSH-level failure after the session was up (channel, transport).
    #[error("{host}: SSH {action} failed: {detail}")]
    Ssh {
        host: String,
        action: &'static str,
        detail: String,
    },

    /// A command ran longer than its time limit.
    #[error("{host}: command did not finish within {limit:?}")]
    Timeout { host: String, limit: Duration },
}

impl RemoteError {
    /// Whether trying to connect again may succeed: a fresh cloud host
    /// refuses connections, or rejects the key until cloud-init installed it.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RemoteError::Unreachable { .. }
                | RemoteError::AuthRejected { .. }
                | RemoteError::Ssh { .. }
                | RemoteError::Timeout { .. }
        )
    }
}
