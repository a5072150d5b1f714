//! Host key verification, trust on first use: the first key a host shows is
//! recorded in the fleet's known_hosts file (OpenSSH format, so `ssh -o
//! UserKnownHostsFile=...` reads it too); later a different key is refused.
//!
//! One file per fleet rather than `~/.ssh/known_hosts`: cloud public
//! addresses get reused by other people's instances, so old entries must not
//! outlive the fleet (`spotload destroy` removes the file).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use russh::keys::{known_hosts, HashAlg, PublicKey};

use super::RemoteError;

/// A known_hosts file shared by every connection of one deploy.
#[derive(Debug, Clone)]
pub struct KnownHosts {
    path: PathBuf,
    /// Parallel connections learn keys at the same time: one check-and-append
    /// at a time keeps the file's lines whole and a host from being added twice.
    lock: Arc<Mutex<()>>,
}

/// What [`KnownHosts::verify`] concluded about a host's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The key is the one recorded.
    Known,
    /// First contact: the key was recorded now.
    Learned {
        /// The recorded key, as `ALGORITHM SHA256:...`, for the progress line.
        fingerprint: String,
    },
}

impl KnownHosts {
    /// The file at `path` (`<state dir>/<fleet>/known_hosts`); it need not exist
    /// yet.
    pub fn new(path: impl Into<PathBuf>) -> KnownHosts {
        KnownHosts {
            path: path.into(),
            lock: Arc::new(Mutex::new(())),
        }
    }

    /// The file's location, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts `key` for `host:port` if it is the recorded one, records it if
    /// the host has no entry, and refuses it otherwise. A host recorded only
    /// with keys of other algorithms is refused too: a changed key type is
    /// as suspicious as a changed key.
    pub fn verify(&self, host: &str, port: u16, key: &PublicKey) -> Result<Trust, RemoteError> {
        let _guard = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let file_error = |detail: String| RemoteError::KnownHosts {
            host: host.to_string(),
            file: self.path.clone(),
            detail,
        };
        let recorded = known_hosts::known_host_keys_path(host, port, &self.path)
            .map_err(|err| file_error(err.to_string()))?;
        if recorded
            .iter()
            .any(|(_, known)| known.key_data() == key.key_data())
        {
            return Ok(Trust::Known);
        }
        let fingerprint = fingerprint(key);
        if let Some((line, _)) = recorded.first() {
            return Err(RemoteError::HostKeyChanged {
                host: host.to_string(),
                file: self.path.clone(),
                line: *line,
                fingerprint,
            });
        }
        self.append(host, port, key)
            .map_err(|err| file_error(format!("cannot record the host key: {err}")))?;
        Ok(Trust::Learned { fingerprint })
    }

    /// Appends `host key` as one line, in one write (owner-only file, like
    /// ssh's own).
    fn append(&self, host: &str, port: u16, key: &PublicKey) -> std::io::Result<()> {
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let existing = std::fs::read(&self.path).unwrap_or_default();
        let mut line = String::new();
        if existing.last().is_some_and(|b| *b != b'\n') {
            line.push('\n');
        }
        if port == 22 {
            line.push_str(host);
        } else {
            line.push_str(&format!("[{host}]:{port}"));
        }
        line.push(' ');
        line.push_str(&key.to_openssh().map_err(std::io::Error::other)?);
        line.push('\n');
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)?;
        file.write_all(line.as_bytes())
    }
}

/// `ssh-ed25519 SHA256:...`, as `ssh-keygen -l` shows it.
pub fn fingerprint(key: &PublicKey) -> String {
    format!(
        "{} {}",
        key.algorithm().as_str(),
        key.fingerprint(HashAlg::Sha256)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILIG2T/B0l0gaqj3puu510tu9N1OkQ4znY3LYuEm5zCF";

    fn key(text: &str) -> PublicKey {
        PublicKey::from_openssh(text).unwrap()
    }

    #[test]
    fn first_key_is_learned_then_known_and_a_new_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fleet/known_hosts");
        let known = KnownHosts::new(&file);
        let first = known.verify("10.0.0.5", 22, &key(KEY_A)).unwrap();
        assert!(matches!(first, Trust::Learned { .. }), "{first:?}");
        assert_eq!(
            known.verify("10.0.0.5", 22, &key(KEY_A)).unwrap(),
            Trust::Known
        );
        let err = known.verify("10.0.0.5", 22, &key(KEY_B)).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("10.0.0.5"), "{message}");
        assert!(message.contains(&file.display().to_string()), "{message}");
        assert!(message.contains("line 1"), "{message}");
        // Another host, or the same address on another port, is a new host.
        known.verify("10.0.0.6", 22, &key(KEY_B)).unwrap();
        known.verify("10.0.0.5", 2222, &key(KEY_B)).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.contains("[10.0.0.5]:2222 ssh-ed25519"), "{text}");
    }

    #[test]
    fn a_garbled_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_hosts");
        std::fs::write(&file, "10.0.0.5 ssh-ed25519 notbase64!!\n").unwrap();
        let err = KnownHosts::new(&file)
            .verify("10.0.0.5", 22, &key(KEY_A))
            .unwrap_err();
        assert!(matches!(err, RemoteError::KnownHosts { .. }), "{err:?}");
    }
}
