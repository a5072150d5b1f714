//! The join secret: what a worker presents to prove it belongs to this
//! master's swarm (as the password of ZMTP PLAIN, RFC 24).
//!
//! A [`JoinSecret`] comes from a file (`--join-secret-file PATH`, one line)
//! or from the environment ([`JOIN_SECRET_ENV`]), never from a plain
//! command-line value: `ps` shows every process's arguments to every user.
//! It is checked once, when it is read (1 to [`MAX_JOIN_SECRET`] visible
//! ASCII characters), so the handshake never meets a secret it cannot send.
//! Its `Debug` and `Display` never show the value, and [`JoinSecret::matches`]
//! takes the same time wherever a guess goes wrong.

use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// The environment variable holding the join secret itself (the file flag
/// carries a path instead).
pub const JOIN_SECRET_ENV: &str = "SPOTLOAD_JOIN_SECRET";

/// The longest join secret: PLAIN sends the password as a ZMTP short string,
/// whose length is one byte.
pub const MAX_JOIN_SECRET: usize = 255;

/// Hex characters in a generated secret: 128 random bits, far beyond
/// guessing over a network, and short enough to paste.
const GENERATED_HEX: usize = 32;

/// A shared secret workers present to join a master. The value is only
/// reachable through [`JoinSecret::reveal`].
#[derive(Clone)]
pub struct JoinSecret {
    /// 1 to [`MAX_JOIN_SECRET`] bytes of visible ASCII (checked when made).
    value: String,
}

/// Where a secret came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretOrigin {
    /// `--join-secret-file PATH`.
    File(PathBuf),
    /// [`JOIN_SECRET_ENV`].
    Env,
    /// A value handed over in code.
    Value,
}

impl fmt::Display for SecretOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretOrigin::File(path) => write!(f, "the join secret file {}", path.display()),
            SecretOrigin::Env => write!(f, "the environment variable {JOIN_SECRET_ENV}"),
            SecretOrigin::Value => write!(f, "the join secret given"),
        }
    }
}

/// Why a join secret could not be used. Each message names where the
/// secret came from, what is wrong with it and what to do; none shows it.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file could not be read.
    #[error("cannot read the join secret file {}: {cause}: write the secret on one line there (e.g. `openssl rand -hex 16 > FILE && chmod 600 FILE`), or pass another --join-secret-file", path.display())]
    Read {
        /// The file named by `--join-secret-file`.
        path: PathBuf,
        /// Why reading failed (in the message, so not a `source` as well:
        /// an error chain would say it twice).
        cause: std::io::Error,
    },
    /// Nothing in it.
    #[error("{0} is empty: put the secret there (1 to {MAX_JOIN_SECRET} visible ASCII characters, e.g. 32 hex digits)")]
    Empty(SecretOrigin),
    /// Longer than PLAIN can carry.
    #[error("{origin} holds {len} bytes, over the limit of {MAX_JOIN_SECRET} (ZMTP PLAIN sends the secret as a short string): use a shorter one, e.g. 32 hex digits")]
    TooLong {
        /// Where it came from.
        origin: SecretOrigin,
        /// Its length in bytes.
        len: usize,
    },
    /// More than one line (after its one trailing newline).
    #[error("{0} holds more than one line: the secret is the file's only line")]
    Lines(SecretOrigin),
    /// A byte that is not visible ASCII.
    #[error("{origin} has a space, control or non-ASCII character at byte {at}: a join secret is visible ASCII only (letters, digits, punctuation), e.g. 32 hex digits")]
    NotPrintable {
        /// Where it came from.
        origin: SecretOrigin,
        /// Offset of the first bad byte.
        at: usize,
    },
}

impl JoinSecret {
    /// Checks `value` as a join secret (from code: a test, a generated one).
    pub fn new(value: impl Into<String>) -> Result<JoinSecret, SecretError> {
        Self::checked(value.into(), SecretOrigin::Value)
    }

    /// Reads the secret from `path`: one line, its trailing newline (`\n`
    /// or `\r\n`) dropped. Warns when other users may read the file.
    pub fn from_file(path: &Path) -> Result<JoinSecret, SecretError> {
        let read = |cause| SecretError::Read {
            path: path.to_path_buf(),
            cause,
        };
        let meta = std::fs::metadata(path).map_err(read)?;
        // A secret file is small: a huge one is a mistake, never read whole.
        if meta.len() > (MAX_JOIN_SECRET + 2) as u64 {
            return Err(SecretError::TooLong {
                origin: SecretOrigin::File(path.to_path_buf()),
                len: usize::try_from(meta.len()).unwrap_or(usize::MAX),
            });
        }
        let mode = meta.permissions().mode();
        if mode & 0o044 != 0 {
            tracing::warn!(
                "the join secret file {} is readable by other users (mode {:04o}): run `chmod 600 {}`",
                path.display(),
                mode & 0o7777,
                path.display()
            );
        }
        let bytes = std::fs::read(path).map_err(read)?;
        let line = bytes
            .strip_suffix(b"\n")
            .map(|rest| rest.strip_suffix(b"\r").unwrap_or(rest))
            .unwrap_or(&bytes);
        let origin = SecretOrigin::File(path.to_path_buf());
        if line.contains(&b'\n') {
            return Err(SecretError::Lines(origin));
        }
        let text = match std::str::from_utf8(line) {
            Ok(text) => text.to_string(),
            Err(err) => {
                return Err(SecretError::NotPrintable {
                    origin,
                    at: err.valid_up_to(),
                })
            }
        };
        Self::checked(text, origin)
    }

    /// The secret in [`JOIN_SECRET_ENV`], if that is set (set but empty
    /// is an error: a master must not run open by a typo).
    pub fn from_env() -> Result<Option<JoinSecret>, SecretError> {
        match std::env::var_os(JOIN_SECRET_ENV) {
            None => Ok(None),
            Some(value) => match value.into_string() {
                Ok(text) => Self::checked(text, SecretOrigin::Env).map(Some),
                Err(raw) => {
                    let at = raw
                        .as_encoded_bytes()
                        .iter()
                        .position(|b| !b.is_ascii())
                        .unwrap_or(0);
                    Err(SecretError::NotPrintable {
                        origin: SecretOrigin::Env,
                        at,
                    })
                }
            },
        }
    }

    /// The secret a command runs with: from `file` when given (it wins
    /// over the environment, as a flag does), else from [`JOIN_SECRET_ENV`],
    /// else none.
    pub fn resolve(file: Option<&Path>) -> Result<Option<JoinSecret>, SecretError> {
        let Some(path) = file else {
            return Self::from_env();
        };
        if std::env::var_os(JOIN_SECRET_ENV).is_some() {
            tracing::info!(
                "{JOIN_SECRET_ENV} is set too: the secret in {} is the one used",
                path.display()
            );
        }
        Self::from_file(path).map(Some)
    }

    /// A fresh secret of 32 random hex digits (128 bits from the thread's
    /// cryptographic generator), for spotload to hand to the processes it
    /// starts.
    pub fn generate() -> JoinSecret {
        let value = format!("{:0width$x}", rand::random::<u128>(), width = GENERATED_HEX);
        JoinSecret { value }
    }

    /// The value itself: for the PLAIN handshake and for writing it where
    /// the processes that need it read it. Never log it.
    pub fn reveal(&self) -> &str {
        &self.value
    }

    /// Whether `presented` is this secret, in time that depends only on
    /// the length of `presented`: every byte is compared, and a wrong length
    /// costs as much as a wrong byte.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let ours = self.value.as_bytes();
        // `ours` is never empty (checked when made), so `i % len` is valid.
        let mut diff = u8::from(ours.len() != presented.len());
        for (i, byte) in presented.iter().enumerate() {
            diff |= byte ^ ours[i % ours.len()];
        }
        std::hint::black_box(diff) == 0
    }

    /// Writes the secret as one line to a new file at `path` that only its
    /// owner can read (mode 0600, created here: an existing file is an
    /// error, so nobody can have opened it first).
    pub fn write_private(&self, path: &Path) -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(self.value.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()
    }

    fn checked(value: String, origin: SecretOrigin) -> Result<JoinSecret, SecretError> {
        if value.is_empty() {
            return Err(SecretError::Empty(origin));
        }
        if value.len() > MAX_JOIN_SECRET {
            return Err(SecretError::TooLong {
                origin,
                len: value.len(),
            });
        }
        if let Some(at) = value.bytes().position(|b| !b.is_ascii_graphic()) {
            return Err(SecretError::NotPrintable { origin, at });
        }
        Ok(JoinSecret { value })
    }
}

impl fmt::Debug for JoinSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JoinSecret(<hidden>)")
    }
}

impl fmt::Display for JoinSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<join secret>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory for one test, removed at its end.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!(
                "swarm-secret-{name}-{}-{:x}",
                std::process::id(),
                rand::random::<u64>()
            ));
            std::fs::create_dir(&dir).expect("scratch dir");
            Scratch(dir)
        }

        fn file(&self, name: &str, bytes: &[u8], mode: u32) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, bytes).expect("write");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            path
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_file_holds_one_line_and_its_newline_is_dropped() {
        let dir = Scratch::new("file");
        for bytes in [&b"s3cret\n"[..], b"s3cret", b"s3cret\r\n"] {
            let path = dir.file("secret", bytes, 0o600);
            let secret = JoinSecret::from_file(&path).expect("valid");
            assert_eq!(secret.reveal(), "s3cret");
        }
        let two = dir.file("two", b"one\ntwo\n", 0o600);
        let err = JoinSecret::from_file(&two).expect_err("two lines");
        assert!(matches!(err, SecretError::Lines(_)), "{err}");
        assert!(err.to_string().contains("two"), "names the file: {err}");
        let empty = dir.file("empty", b"\n", 0o600);
        let err = JoinSecret::from_file(&empty).expect_err("empty");
        assert!(err.to_string().contains("is empty"), "{err}");
        let missing = dir.0.join("missing");
        let err = JoinSecret::from_file(&missing).expect_err("missing");
        assert!(
            err.to_string().contains("cannot read the join secret file")
                && err.to_string().contains("missing"),
            "{err}"
        );
        let huge = dir.file("huge", &[b'a'; 4096], 0o600);
        assert!(matches!(
            JoinSecret::from_file(&huge),
            Err(SecretError::TooLong { len: 4096, .. })
        ));
    }

    #[test]
    fn bounds_and_characters_are_checked() {
        assert!(JoinSecret::new("x").is_ok());
        assert!(JoinSecret::new("a".repeat(MAX_JOIN_SECRET)).is_ok());
        let err = JoinSecret::new("a".repeat(MAX_JOIN_SECRET + 1)).expect_err("too long");
        assert!(err.to_string().contains("256 bytes"), "{err}");
        assert!(matches!(
            JoinSecret::new(""),
            Err(SecretError::Empty(SecretOrigin::Value))
        ));
        for (bad, at) in [("with space", 4), ("tab\there", 3), ("naïve", 2)] {
            match JoinSecret::new(bad) {
                Err(SecretError::NotPrintable { at: found, .. }) => assert_eq!(found, at, "{bad}"),
                other => panic!("{bad:?} accepted or misjudged: {other:?}"),
            }
        }
    }

    #[test]
    fn the_value_never_shows_in_debug_display_or_errors() {
        let secret = JoinSecret::new("hunter2-value").expect("valid");
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert!(!format!("{secret}").contains("hunter2"));
        let err = JoinSecret::new("hunter2 value").expect_err("space");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn only_the_exact_secret_matches() {
        let secret = JoinSecret::new("abc123").expect("valid");
        assert!(secret.matches(b"abc123"));
        for wrong in [
            &b""[..],
            b"abc12",
            b"abc1234",
            b"abc124",
            b"Abc123",
            b"abc123abc123",
        ] {
            assert!(
                !secret.matches(wrong),
                "{:?}",
                String::from_utf8_lossy(wrong)
            );
        }
    }

    #[test]
    fn generated_secrets_are_fresh_hex() {
        let (a, b) = (JoinSecret::generate(), JoinSecret::generate());
        assert_eq!(a.reveal().len(), GENERATED_HEX);
        assert!(a.reveal().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.reveal(), b.reveal());
        assert!(JoinSecret::new(a.reveal()).is_ok());
    }

    #[test]
    fn a_written_secret_is_private_and_reads_back() {
        let dir = Scratch::new("write");
        let path = dir.0.join("join-secret");
        let secret = JoinSecret::generate();
        secret.write_private(&path).expect("written");
        let mode = std::fs::metadata(&path)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let back = JoinSecret::from_file(&path).expect("reads back");
        assert!(back.matches(secret.reveal().as_bytes()));
        let again = secret.write_private(&path).expect_err("never overwrites");
        assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists);
    }
}
