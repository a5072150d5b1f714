//! What a host is, learned once before its recipes run: CPU architecture
//! (to refuse a binary that cannot run there), hostname (workers announce
//! themselves to the master by it), init system, how to become root, and
//! the digest of the `loadtest` it has (to send nothing when it is current).

use std::time::Duration;

use super::{tail, StepFailure};
use crate::remote::script::Privilege;
use crate::remote::Shell;

/// A host's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// `uname -m`: `x86_64`, `aarch64`.
    pub arch: String,
    /// `uname -n`, what a worker's node id starts with.
    pub hostname: String,
    /// How step scripts become root: the user is root, or may `sudo -n`.
    pub privilege: Privilege,
    /// systemd is the running init (`/run/systemd/system` exists).
    pub systemd: bool,
    /// `PRETTY_NAME` from /etc/os-release.
    pub os: String,
    /// SHA-256 of the installed `/opt/spotload/bin/loadtest`, if any: a
    /// host already running the deploy's digest is sent nothing.
    pub loadtest_sha256: Option<String>,
    /// The `zstd` command is installed: the binary travels compressed.
    pub zstd: bool,
}

/// Waits for cloud-init (a fresh instance is still installing packages and
/// keys; at most 10 minutes, a host where it never finishes still gets
/// deployed), then prints `key=value` lines. Runs as the log-in user.
const FACTS_SCRIPT: &str = r#"if command -v cloud-init >/dev/null 2>&1; then
    timeout 600 cloud-init status --wait >/dev/null 2>&1 || true
fi
echo "arch=$(uname -m)"
echo "hostname=$(uname -n)"
echo "uid=$(id -u)"
if [ -d /run/systemd/system ]; then echo "init=systemd"; else echo "init=other"; fi
if [ "$(id -u)" != 0 ]; then
    if sudo -n true >/dev/null 2>&1; then echo "sudo=yes"; else echo "sudo=no"; fi
fi
os=unknown
if [ -r /etc/os-release ]; then os=$(. /etc/os-release && echo "${PRETTY_NAME:-$ID}"); fi
echo "os=$os"
if [ -f /opt/spotload/bin/loadtest ] && command -v sha256sum >/dev/null 2>&1; then
    echo "loadtest_sha256=$(sha256sum < /opt/spotload/bin/loadtest | cut -c1-64)"
fi
if command -v zstd >/dev/null 2>&1; then echo "zstd=yes"; fi
"#;

/// Fresh instances can spend minutes in cloud-init.
const FACTS_LIMIT: Duration = Duration::from_secs(15 * 60);

impl Facts {
    /// Runs the facts script on `shell` as `user` (after waiting for cloud-init,
    /// up to 10 minutes); fails when the host's answer is incomplete or `user` can
    /// neither act as root nor `sudo -n`.
    pub async fn gather(shell: &impl Shell, user: &str) -> Result<Facts, StepFailure> {
        let step = "inspect host";
        let failure = |reason: String, output: String| StepFailure {
            step: step.into(),
            command: "uname -m; uname -n; id -u; sudo -n true".into(),
            reason,
            output,
        };
        let out = match tokio::time::timeout(FACTS_LIMIT, shell.run(FACTS_SCRIPT, None)).await {
            Err(_) => {
                return Err(failure(
                    format!("no answer within {FACTS_LIMIT:?}"),
                    "".into(),
                ))
            }
            Ok(Err(err)) => return Err(failure(err.to_string(), String::new())),
            Ok(Ok(out)) if !out.success() => {
                return Err(failure(out.status_text(), tail(&out.combined(), 20)))
            }
            Ok(Ok(out)) => out,
        };
        Facts::parse(&out.stdout)
            .map_err(|reason| failure(reason, tail(&out.combined(), 20)))
            .and_then(|facts| match facts {
                Some(facts) => Ok(facts),
                None => Err(failure(
                    format!("user {user} is not root and cannot `sudo -n`: give it passwordless sudo, or log in as root"),
                    String::new(),
                )),
            })
    }

    /// `Ok(None)` when the user can neither act as root nor sudo.
    fn parse(stdout: &str) -> Result<Option<Facts>, String> {
        let value = |key: &str| {
            stdout
                .lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
                .map(str::trim)
                .map(str::to_string)
        };
        let missing = |key: &str| format!("the host did not report {key}");
        let arch = value("arch").ok_or_else(|| missing("arch"))?;
        let hostname = value("hostname").ok_or_else(|| missing("hostname"))?;
        let privilege = match (value("uid").as_deref(), value("sudo").as_deref()) {
            (Some("0"), _) => Privilege::Root,
            (_, Some("yes")) => Privilege::Sudo,
            _ => return Ok(None),
        };
        Ok(Some(Facts {
            arch,
            hostname,
            privilege,
            systemd: value("init").as_deref() == Some("systemd"),
            os: value("os").unwrap_or_else(|| "unknown".into()),
            loadtest_sha256: value("loadtest_sha256").filter(|d| d.len() == 64),
            zstd: value("zstd").as_deref() == Some("yes"),
        }))
    }
}

/// The `uname -m` name of the CPU an ELF executable is built for, from its
/// header; `None` for anything else (not ELF, another CPU).
pub fn elf_arch(binary: &[u8]) -> Option<&'static str> {
    if binary.len() < 20 || &binary[..4] != b"\x7fELF" {
        return None;
    }
    // e_machine, at offset 18, in the file's byte order (byte 5: 1 = little).
    let raw = [binary[18], binary[19]];
    let machine = if binary[5] == 2 {
        u16::from_be_bytes(raw)
    } else {
        u16::from_le_bytes(raw)
    };
    match machine {
        62 => Some("x86_64"),
        183 => Some("aarch64"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::Local;

    #[test]
    fn parses_root_and_sudo_users() {
        let root = "arch=x86_64\nhostname=web-1\nuid=0\ninit=other\nos=Debian GNU/Linux 13\n";
        let facts = Facts::parse(root).unwrap().unwrap();
        assert_eq!(facts.privilege, Privilege::Root);
        assert_eq!(facts.hostname, "web-1");
        assert!(!facts.systemd);
        let user = "arch=aarch64\nhostname=ip-10-0-0-5\nuid=1000\ninit=systemd\nsudo=yes\nos=Amazon Linux 2023\n";
        let facts = Facts::parse(user).unwrap().unwrap();
        assert_eq!(facts.privilege, Privilege::Sudo);
        assert!(facts.systemd);
        assert_eq!((facts.loadtest_sha256, facts.zstd), (None, false));
        let shipped = format!("{root}loadtest_sha256={}\nzstd=yes\n", "e3".repeat(32));
        let facts = Facts::parse(&shipped).unwrap().unwrap();
        assert_eq!(facts.loadtest_sha256, Some("e3".repeat(32)));
        assert!(facts.zstd);
        let no_sudo = "arch=x86_64\nhostname=h\nuid=1000\nsudo=no\n";
        assert_eq!(Facts::parse(no_sudo).unwrap(), None);
        assert!(Facts::parse("hostname=h\n").is_err());
    }

    #[tokio::test]
    async fn gathers_this_machine() {
        let facts = Facts::gather(&Local, "me").await;
        // Root, or a user with sudo, or refused with a message naming the user.
        match facts {
            Ok(facts) => assert_eq!(facts.arch, std::env::consts::ARCH),
            Err(failure) => assert!(failure.reason.contains("me"), "{failure:?}"),
        }
    }

    #[test]
    fn reads_the_elf_machine() {
        let this = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(elf_arch(&this), Some(std::env::consts::ARCH));
        assert_eq!(elf_arch(b"#!/bin/sh\necho not elf at all\n"), None);
    }
}
