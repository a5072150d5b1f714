//! `spotload deploy`'s work, as a library: the hosts to deploy onto — the
//! fleet's instances, launched when the fleet does not exist or reused —
//! the `loadtest` binary to ship (given, or built from this checkout) and
//! the web UI's credentials. The command line only turns flags into a plan
//! and calls these.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use clap::ValueEnum;

use crate::cloud::{Ec2, FleetPlan, Instance, StateDir};
use crate::remote::{inventory, DeployPlan, Host, HostPlan};

/// Which of an instance's addresses to connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConnectVia {
    /// Public addresses: spotload runs outside the VPC.
    Public,
    /// Private addresses: spotload runs inside the VPC.
    Private,
}

/// How to log in to the fleet's instances.
#[derive(Debug, Clone)]
pub struct FleetAccess {
    /// Which of each instance's addresses to connect to (`--connect-via`).
    pub connect_via: ConnectVia,
    /// Log-in user on every instance (`--ssh-user`; `ec2-user` on Amazon Linux).
    pub ssh_user: String,
    /// The key pair's private key, when the launch did not save it.
    pub key_file: Option<PathBuf>,
}

/// The fleet's instances as hosts: reused when the fleet runs,
/// launched (and waited for) when it does not exist.
pub async fn fleet_hosts(
    ec2: &Ec2,
    plan: FleetPlan,
    state: &StateDir,
    access: &FleetAccess,
) -> anyhow::Result<Vec<HostPlan>> {
    let name = plan.fleet.clone();
    let existing = ec2.describe(&name).await?;
    let (instances, key) = if existing.is_empty() {
        eprintln!(
            "fleet {name} does not exist in {}: launching it",
            ec2.region()
        );
        let fleet = ec2.launch(&plan, state).await?;
        eprintln!(
            "fleet {name} is running: {} instances",
            fleet.instances.len()
        );
        (fleet.instances, fleet.key.private_key)
    } else {
        eprintln!(
            "reusing fleet {name} in {}: {} instances",
            ec2.region(),
            existing.len()
        );
        let saved = state.load(&name).ok().flatten();
        let created = Some(state.key_file(&name)).filter(|p| p.exists());
        let key = access
            .key_file
            .clone()
            .or_else(|| saved.and_then(|f| f.key.private_key))
            .or(created);
        (existing, key)
    };
    let key = key.with_context(|| {
        format!(
            "no private key known for fleet {name}: pass --key-file PATH (the key of its key pair)"
        )
    })?;
    let mut entries = Vec::new();
    for instance in &instances {
        entries.push(host_entry(instance, &key, access)?);
    }
    DeployPlan::group(entries).with_context(|| format!("fleet {name} cannot be deployed as it is; `spotload status --fleet {name}` shows it, `spotload destroy --fleet {name}` ends it"))
}

/// One running instance as a host to deploy onto.
pub fn host_entry(
    instance: &Instance,
    key: &Path,
    access: &FleetAccess,
) -> anyhow::Result<inventory::Entry> {
    let id = &instance.id;
    if instance.state != "running" {
        bail!(
            "instance {id} ({}) is {}, not running: wait a moment and deploy again",
            instance.role_name(),
            instance.state
        );
    }
    let role = instance
        .role
        .with_context(|| format!("instance {id} has no spotload:role tag"))?;
    let private = instance
        .private_ip
        .with_context(|| format!("instance {id} ({role}) has no private address yet"))?;
    let address = match access.connect_via {
            ConnectVia::Private => private,
            ConnectVia::Public => instance.public_ip.with_context(|| {
                format!("instance {id} ({role}) has no public address: run spotload inside the VPC with --connect-via private")
            })?,
        };
    Ok(inventory::Entry {
        host: Host {
            address: address.to_string(),
            port: 22,
            user: access.ssh_user.clone(),
            key: key.to_path_buf(),
        },
        role,
        private_address: private.to_string(),
    })
}

/// `--loadtest-bin`'s bytes, or the release binary built for x86_64.
pub fn loadtest_binary(given: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    let path = match given {
        Some(path) => path.to_path_buf(),
        None => build_loadtest()?,
    };
    std::fs::read(&path)
        .with_context(|| format!("cannot read the loadtest binary {}", path.display()))
}

/// The target the default build is for (EC2's default instance types).
const DEFAULT_TARGET: &str = "x86_64-unknown-linux-gnu";

/// `cargo build --release -p loadtest --target x86_64-unknown-linux-gnu`
/// in the current checkout; returns the binary's path.
fn build_loadtest() -> anyhow::Result<PathBuf> {
    eprintln!("building loadtest: cargo build --release -p loadtest --target {DEFAULT_TARGET}");
    let status = Command::new("cargo")
        .args([
            "build",
            "--release",
            "-p",
            "loadtest",
            "--target",
            DEFAULT_TARGET,
        ])
        .status()
        .context("cannot run cargo to build loadtest: install Rust, or pass --loadtest-bin PATH")?;
    if !status.success() {
        bail!("building loadtest failed ({status}): run spotload deploy from the spotload checkout, or pass --loadtest-bin PATH");
    }
    let metadata = Command::new("cargo")
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("cannot run cargo metadata")?;
    let json: serde_json::Value =
        serde_json::from_slice(&metadata.stdout).context("cargo metadata printed no JSON")?;
    let target_dir = json["target_directory"]
        .as_str()
        .context("cargo metadata has no target_directory")?;
    Ok(Path::new(target_dir)
        .join(DEFAULT_TARGET)
        .join("release/loadtest"))
}

/// `USER:PASS` as given, or `spotload:<random>` for a bare `--web-auth`.
/// Characters that systemd or the shell would interpret are refused.
pub fn web_auth(given: &str) -> anyhow::Result<String> {
    if given.is_empty() {
        return Ok(format!("spotload:{}", random_password()?));
    }
    let ok = given
        .bytes()
        .all(|b| b.is_ascii_graphic() && !b"\"'\\$%`".contains(&b));
    match given.parse::<swarm::api::Credentials>() {
        Ok(credentials) if ok => Ok(credentials.to_string()),
        _ => bail!("--web-auth {given:?}: expected USER:PASS, both non-empty, without spaces, quotes, backslashes, $, % or `"),
    }
}

/// 16 random letters and digits from the kernel's generator.
fn random_password() -> anyhow::Result<String> {
    use std::io::Read;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom for a web UI password; pass --web-auth USER:PASS")?;
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_auth_is_checked_or_generated() {
        assert_eq!(web_auth("ops:pa55-word").unwrap(), "ops:pa55-word");
        let generated = web_auth("").unwrap();
        let (user, pass) = generated.split_once(':').unwrap();
        assert_eq!((user, pass.len()), ("spotload", 16));
        assert_ne!(web_auth("").unwrap(), generated);
        for bad in [
            "nopass", ":x", "u:", "u:pa ss", "u:100%", "u:$HOME", "u:it's",
        ] {
            assert!(web_auth(bad).is_err(), "{bad}");
        }
    }
}
