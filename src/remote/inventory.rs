//! The inventory file: existing hosts to deploy onto, no EC2 involved.
//!
//! One host per line, columns separated by spaces or tabs, `#` starts a
//! comment:
//!
//! ```text
//! # ADDRESS[:PORT]   USER      KEY                   ROLE       [PRIVATE_ADDRESS]
//! 203.0.113.10       ubuntu    ~/.ssh/spotload.pem   webserver  10.0.1.10
//! 203.0.113.11       ubuntu    ~/.ssh/spotload.pem   master     10.0.1.11
//! 203.0.113.12:2222  ec2-user  keys/worker_ed25519   worker
//! ```
//!
//! ADDRESS is what spotload connects to (an IP address or a name; IPv6 with
//! a port as `[fd00::1]:2222`). ROLE is `webserver`, `master` or `worker`.
//! PRIVATE_ADDRESS, when given, is how the other hosts reach this one (the
//! master's target URL, the workers' master address); it defaults to
//! ADDRESS. A relative KEY is relative to the inventory file; `~/` is the
//! home directory. A host may be listed once per role it plays.

use std::path::{Path, PathBuf};

use crate::remote::Host;
use crate::role::Role;

/// One line of the inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Where to connect and how to log in: ADDRESS[:PORT], USER and KEY.
    pub host: Host,
    /// ROLE: what this line asks the host to run.
    pub role: Role,
    /// How the other hosts reach this one.
    pub private_address: String,
    /// Other names and addresses the host is reached under from outside
    /// (a fleet instance's public IP and DNS name); the master's UI
    /// certificate names them and its UI answers to them.
    pub public_names: Vec<String>,
}

/// A line that is not an inventory entry, with its line number.
#[derive(Debug, thiserror::Error)]
#[error("{file} line {line}: {message}")]
pub struct InventoryError {
    /// The inventory file, as given on the command line.
    pub file: String,
    /// The line number, counting from 1.
    pub line: usize,
    /// What is wrong with the line and what it should look like.
    pub message: String,
}

/// Reads and parses an inventory file.
pub fn load(path: &Path) -> anyhow::Result<Vec<Entry>> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| anyhow::anyhow!("cannot read inventory {}: {err}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let home = std::env::var_os("HOME").map(PathBuf::from);
    Ok(parse(
        &text,
        &path.display().to_string(),
        base,
        home.as_deref(),
    )?)
}

/// Parses inventory text; `base` resolves relative key paths, `home` `~/`.
pub fn parse(
    text: &str,
    file: &str,
    base: &Path,
    home: Option<&Path>,
) -> Result<Vec<Entry>, InventoryError> {
    let mut entries = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let error = |message: String| InventoryError {
            file: file.to_string(),
            line: index + 1,
            message,
        };
        let columns: Vec<&str> = line.split_whitespace().collect();
        let [address, user, key, role, rest @ ..] = columns.as_slice() else {
            return Err(error(format!(
                "expected ADDRESS USER KEY ROLE [PRIVATE_ADDRESS], got {line:?}"
            )));
        };
        if rest.len() > 1 {
            return Err(error(format!(
                "too many columns: expected ADDRESS USER KEY ROLE [PRIVATE_ADDRESS], got {line:?}"
            )));
        }
        let (address, port) = split_address(address).map_err(error)?;
        let role = Role::from_tag(role).ok_or_else(|| {
            error(format!(
                "unknown role {role:?}: use webserver, master or worker"
            ))
        })?;
        let key = resolve_key(key, base, home).map_err(error)?;
        let private_address = rest
            .first()
            .map_or(address.clone(), std::string::ToString::to_string);
        let entry = Entry {
            host: Host {
                address,
                port,
                user: user.to_string(),
                key,
            },
            role,
            private_address,
            public_names: Vec::new(),
        };
        let duplicate = entries.iter().any(|e: &Entry| {
            e.host.address == entry.host.address && e.host.port == entry.host.port && e.role == role
        });
        if duplicate {
            return Err(error(format!(
                "{} is already listed as {role}",
                entry.host.label()
            )));
        }
        entries.push(entry);
    }
    if entries.is_empty() {
        return Err(InventoryError {
            file: file.to_string(),
            line: 0,
            message: "no hosts listed (one per line: ADDRESS USER KEY ROLE [PRIVATE_ADDRESS])"
                .into(),
        });
    }
    Ok(entries)
}

/// `host`, `host:port`, `[v6]:port` or a bare IPv6 address.
fn split_address(text: &str) -> Result<(String, u16), String> {
    let bad_port = |port: &str| format!("bad port {port:?} in address {text:?}");
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("unclosed [ in address {text:?}"))?;
        return match after.strip_prefix(':') {
            Some(port) => Ok((host.into(), port.parse().map_err(|_| bad_port(port))?)),
            None if after.is_empty() => Ok((host.into(), 22)),
            None => Err(format!("unexpected {after:?} after ] in {text:?}")),
        };
    }
    match text.split_once(':') {
        Some((host, port)) if !port.contains(':') => {
            Ok((host.into(), port.parse().map_err(|_| bad_port(port))?))
        }
        _ => Ok((text.into(), 22)),
    }
}

fn resolve_key(key: &str, base: &Path, home: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(rest) = key.strip_prefix("~/") {
        let home = home.ok_or_else(|| format!("cannot expand {key:?}: HOME is not set"))?;
        return Ok(home.join(rest));
    }
    let path = Path::new(key);
    Ok(if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Vec<Entry> {
        parse(
            text,
            "inv",
            Path::new("/etc/inv"),
            Some(Path::new("/home/me")),
        )
        .unwrap()
    }

    #[test]
    fn reads_columns_ports_keys_and_private_addresses() {
        let entries = parse_ok(
            "# fleet\n\
             203.0.113.10  ubuntu ~/.ssh/k.pem webserver 10.0.1.10  # the target\n\
             \n\
             203.0.113.11:2222\tec2-user /abs/key master\n\
             [fd00::5]:22 root keys/w worker\n\
             fd00::6 root keys/w worker\n",
        );
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[0].host.key, PathBuf::from("/home/me/.ssh/k.pem"));
        assert_eq!(entries[0].private_address, "10.0.1.10");
        assert_eq!(entries[1].host.port, 2222);
        assert_eq!(entries[1].host.user, "ec2-user");
        assert_eq!(entries[1].private_address, "203.0.113.11");
        assert_eq!(entries[1].role, Role::Master);
        assert_eq!(entries[2].host.address, "fd00::5");
        assert_eq!(entries[2].host.key, PathBuf::from("/etc/inv/keys/w"));
        assert_eq!(entries[3].host.address, "fd00::6");
        assert_eq!(entries[3].host.port, 22);
    }

    #[test]
    fn errors_name_the_line_and_the_expected_form() {
        let err = |text: &str| {
            parse(text, "inv", Path::new("."), None)
                .unwrap_err()
                .to_string()
        };
        assert!(
            err("\n10.0.0.1 root key\n").starts_with("inv line 2: expected ADDRESS USER KEY ROLE")
        );
        assert!(err("10.0.0.1 root key cook\n").contains("unknown role \"cook\""));
        assert!(err("10.0.0.1:x root key worker\n").contains("bad port"));
        assert!(err("10.0.0.1 root ~/k worker\n").contains("HOME is not set"));
        assert!(
            err("a r k worker\na r k worker\n").contains("line 2: a is already listed as worker")
        );
        assert!(err("# nothing\n").contains("no hosts listed"));
        assert!(err("a r k worker b c\n").contains("too many columns"));
    }
}
