//! An SSH [`Session`] on russh: connect (with a time limit per attempt, and
//! retries with backoff while a fresh host still refuses), verify the host
//! key against the fleet's known_hosts, log in with a private key, run
//! commands with their exit status and output.
//!
//! Files are uploaded by streaming them to `cat > FILE` on the command's
//! standard input (see the recipes): that needs nothing but a shell on the
//! host and composes with `sudo`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::client;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect};

use super::known_hosts::{KnownHosts, Trust};
use super::{Host, Output, RemoteError, Shell};

/// How long to keep trying, and how long one try may take.
#[derive(Debug, Clone, Copy)]
pub struct ConnectLimits {
    /// One TCP connect + handshake + log-in.
    pub attempt: Duration,
    /// Keep retrying transient failures until this much time has passed.
    pub wait: Duration,
}

/// Pause before the second attempt; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A silent connection is probed this often, and dropped after
/// [`KEEPALIVE_MAX`] unanswered probes: a long `dnf install` stays quiet.
const KEEPALIVE: Duration = Duration::from_secs(15);
const KEEPALIVE_MAX: usize = 4;

/// A logged-in SSH connection to one host.
pub struct Session {
    handle: client::Handle<Verifier>,
    /// Named in every error.
    label: String,
    /// The host key's fingerprint when this connection recorded it (first
    /// contact), for the progress output.
    learned: Option<String>,
}

/// russh's callbacks: here only the host key check.
struct Verifier {
    known: KnownHosts,
    address: String,
    port: u16,
    /// Set when the key was recorded now; read back after the handshake.
    learned: Arc<std::sync::Mutex<Option<String>>>,
}

/// What the handshake can fail with: russh's own errors, or our refusal.
#[derive(Debug)]
enum HandshakeError {
    Ssh(russh::Error),
    Refused(RemoteError),
}

impl From<russh::Error> for HandshakeError {
    fn from(err: russh::Error) -> Self {
        HandshakeError::Ssh(err)
    }
}

impl client::Handler for Verifier {
    type Error = HandshakeError;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = server_key.public_key();
        match self.known.verify(&self.address, self.port, &key) {
            Ok(Trust::Known) => Ok(true),
            Ok(Trust::Learned { fingerprint }) => {
                if let Ok(mut learned) = self.learned.lock() {
                    *learned = Some(fingerprint);
                }
                Ok(true)
            }
            Err(err) => Err(HandshakeError::Refused(err)),
        }
    }
}

/// Reads a private key: PKCS#1 RSA PEM (what EC2 hands out for RSA key
/// pairs) or OpenSSH format (ed25519 or RSA), unencrypted.
pub fn load_key(host: &Host) -> Result<Arc<PrivateKey>, RemoteError> {
    russh::keys::load_secret_key(&host.key, None)
        .map(Arc::new)
        .map_err(|err| RemoteError::Key {
            path: host.key.clone(),
            detail: format!("{err} (an unencrypted RSA PEM or OpenSSH key is expected)"),
        })
}

impl Session {
    /// Connects, retrying transient failures (refused, unreachable, key not
    /// yet accepted) with backoff until `limits.wait` has passed. A changed
    /// host key or an unusable key file fails at once.
    pub async fn connect(
        host: &Host,
        key: Arc<PrivateKey>,
        known: &KnownHosts,
        limits: ConnectLimits,
    ) -> Result<Session, RemoteError> {
        let start = Instant::now();
        let mut attempts = 0;
        let mut backoff = FIRST_BACKOFF;
        loop {
            attempts += 1;
            let remaining = limits.wait.saturating_sub(start.elapsed());
            let budget = limits
                .attempt
                .min(remaining)
                .max(Duration::from_millis(100));
            let outcome = tokio::time::timeout(budget, Session::try_once(host, &key, known)).await;
            let err = match outcome {
                Ok(Ok(session)) => return Ok(session),
                Ok(Err(err)) if !err.is_transient() => return Err(err),
                Ok(Err(err)) => reason(&err),
                Err(_) => format!("no answer within {budget:?}"),
            };
            let waited = start.elapsed();
            if waited + backoff >= limits.wait {
                return Err(RemoteError::Unreachable {
                    host: host.label(),
                    waited,
                    attempts,
                    last: err,
                });
            }
            tracing::debug!("{err}; retrying in {backoff:?}");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One TCP connect, handshake and log-in.
    async fn try_once(
        host: &Host,
        key: &Arc<PrivateKey>,
        known: &KnownHosts,
    ) -> Result<Session, RemoteError> {
        let label = host.label();
        let config = Arc::new(client::Config {
            keepalive_interval: Some(KEEPALIVE),
            keepalive_max: KEEPALIVE_MAX,
            nodelay: true,
            ..Default::default()
        });
        let learned = Arc::new(std::sync::Mutex::new(None));
        let verifier = Verifier {
            known: known.clone(),
            address: host.address.clone(),
            port: host.port,
            learned: learned.clone(),
        };
        let addr = (host.address.as_str(), host.port);
        let mut handle =
            client::connect(config, addr, verifier)
                .await
                .map_err(|err| match err {
                    HandshakeError::Refused(err) => err,
                    HandshakeError::Ssh(err) => ssh_error(&label, "connect", err),
                })?;
        let hash = if key.algorithm().is_rsa() {
            // Current Amazon Linux and Ubuntu refuse SHA-1 `ssh-rsa`: use
            // what the server says it takes, else SHA-256.
            match handle.best_supported_rsa_hash().await {
                Ok(Some(best)) => best,
                _ => Some(russh::keys::HashAlg::Sha256),
            }
        } else {
            None
        };
        let auth = handle
            .authenticate_publickey(&host.user, PrivateKeyWithHashAlg::new(key.clone(), hash))
            .await
            .map_err(|err| ssh_error(&label, "log-in", err))?;
        if !auth.success() {
            return Err(RemoteError::AuthRejected {
                host: label,
                user: host.user.clone(),
                key: host.key.clone(),
            });
        }
        let learned = learned.lock().ok().and_then(|mut l| l.take());
        Ok(Session {
            handle,
            label,
            learned,
        })
    }

    /// The host key's fingerprint if this connection was the first contact
    /// and recorded it in the known_hosts file.
    pub fn learned_host_key(&self) -> Option<&str> {
        self.learned.as_deref()
    }

    /// Ends the session politely; errors do not matter any more then.
    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
    }

    /// Runs one command on a new channel. Output is read until the channel
    /// closes, not just until the exit status: output can follow it.
    async fn exec(
        &self,
        command: &str,
        input: Option<Arc<Vec<u8>>>,
    ) -> Result<Output, RemoteError> {
        let channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|err| ssh_error(&self.label, "channel open", err))?;
        channel
            .exec(true, command)
            .await
            .map_err(|err| ssh_error(&self.label, "exec", err))?;
        let (mut reader, writer) = channel.split();
        let send = async {
            if let Some(bytes) = input {
                writer.data(&bytes[..]).await?;
            }
            writer.eof().await
        };
        let receive = async {
            let mut out = Output::default();
            let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
            while let Some(message) = reader.wait().await {
                match message {
                    ChannelMsg::Data { data } => stdout.extend_from_slice(&data),
                    ChannelMsg::ExtendedData { data, ext: 1 } => stderr.extend_from_slice(&data),
                    ChannelMsg::ExitStatus { exit_status } => out.status = Some(exit_status),
                    _ => {}
                }
            }
            out.stdout = String::from_utf8_lossy(&stdout).into_owned();
            out.stderr = String::from_utf8_lossy(&stderr).into_owned();
            out
        };
        let (sent, out) = tokio::join!(send, receive);
        // A command that exits without reading all its input makes the send
        // fail; its exit status says what happened, so only report a failed
        // send when there is no status.
        match sent {
            Err(err) if out.status.is_none() => Err(ssh_error(&self.label, "send input", err)),
            _ => Ok(out),
        }
    }
}

impl Shell for Session {
    async fn run(&self, command: &str, input: Option<Arc<Vec<u8>>>) -> Result<Output, RemoteError> {
        self.exec(command, input).await
    }
}

/// Why one attempt failed, without the host name the final error repeats.
fn reason(err: &RemoteError) -> String {
    match err {
        RemoteError::Ssh { action, detail, .. } => format!("{action}: {detail}"),
        RemoteError::AuthRejected { user, key, .. } => format!(
            "the server refused key {} for user {user} (check the user and authorized_keys)",
            key.display()
        ),
        other => other.to_string(),
    }
}

fn ssh_error(label: &str, action: &'static str, err: russh::Error) -> RemoteError {
    RemoteError::Ssh {
        host: label.to_string(),
        action,
        detail: err.to_string(),
    }
}
