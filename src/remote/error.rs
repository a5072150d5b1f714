//! [`RemoteError`]: what can go wrong talking to a host, each message naming
//! the host (and file or command) and saying what to do next.

use std::path::PathBuf;
use std::time::Duration;

/// A failure reaching a host or running something on it.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The private key file could not be read or parsed.
    #[error("cannot use SSH key {path}: {detail}")]
    Key {
        /// The key file (an inventory's KEY column, or the fleet's key).
        path: PathBuf,
        /// Why it is unusable, with the formats that are expected.
        detail: String,
    },

    /// No SSH session within the wait limit; `last` is the last attempt's error.
    #[error(
        "{host}: no SSH connection within {:.1}s ({attempts} attempts); last error: {last}",
        waited.as_secs_f64()
    )]
    Unreachable {
        /// The host as `address[:port]`.
        host: String,
        /// How long connecting was retried.
        waited: Duration,
        /// Connection attempts made, the first included.
        attempts: u32,
        /// Why the last attempt failed.
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
        /// The host's address, as known_hosts records it.
        host: String,
        /// The known_hosts file holding the recorded key.
        file: PathBuf,
        /// The line (1-based) that records the other key: the one to delete when
        /// the host really was replaced.
        line: usize,
        /// The key the host presents now, as `ALGORITHM SHA256:...`.
        fingerprint: String,
    },

    /// The known_hosts file could not be read or written.
    #[error("{host}: cannot use known_hosts file {file}: {detail}")]
    KnownHosts {
        /// The host's address, as known_hosts records it.
        host: String,
        /// The known_hosts file.
        file: PathBuf,
        /// The I/O or parse error.
        detail: String,
    },

    /// The server refused the key for this user.
    #[error(
        "{host}: the server refused key {key} for user {user}: check the user name and that \
         the key's public half is in that user's authorized_keys"
    )]
    AuthRejected {
        /// The host as `address[:port]`.
        host: String,
        /// The log-in user tried.
        user: String,
        /// The private key file offered.
        key: PathBuf,
    },

    /// An SSH-level failure after the session was up (channel, transport).
    #[error("{host}: SSH {action} failed: {detail}")]
    Ssh {
        /// The host as `address[:port]` (`localhost` for [`super::Local`]).
        host: String,
        /// The SSH step that failed: `connect`, `log-in`, `channel open`, `exec`,
        /// `send input`.
        action: &'static str,
        /// The library's error message.
        detail: String,
    },

    /// A command ran longer than its time limit.
    #[error("{host}: command did not finish within {limit:?}")]
    Timeout {
        /// The host as `address[:port]`.
        host: String,
        /// The command's time limit.
        limit: Duration,
    },
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
