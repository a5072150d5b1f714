//! `spotload deploy`'s work, as a library: the hosts to deploy onto — the
//! fleet's instances, launched when the fleet does not exist or reused —
//! what each fleet host's self-destruct should arm (from its instance's
//! expiry tag), the `loadtest` binary to ship (given, or built from this
//! checkout; stripped, its debug info kept on this machine, compressed) and
//! the web UI's credentials. The command line only turns flags into a plan
//! and calls these.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use clap::ValueEnum;

use crate::cloud::userdata::TagValue;
use crate::cloud::{Ec2, FleetName, FleetPlan, Instance, StateDir};
use crate::expiry::ArmSettings;
use crate::remote::arm::ArmPlan;
use crate::remote::shipment::megabytes;
use crate::remote::{inventory, DeployPlan, Host, HostPlan, Shipment};

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
/// launched (and waited for) when it does not exist. Each host carries the
/// self-destruct its instance should arm ([`HostPlan::arm`]).
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
    let hosts: Vec<Host> = entries.iter().map(|e| e.host.clone()).collect();
    let mut plans = DeployPlan::group(entries).with_context(|| format!("fleet {name} cannot be deployed as it is; `spotload status --fleet {name}` shows it, `spotload destroy --fleet {name}` ends it"))?;
    let tags = ec2.expiries(&instances).await?;
    let arms = arm_plans(&name, &instances, &tags, ec2.is_aws());
    set_arms(&mut plans, hosts.into_iter().zip(arms));
    Ok(plans)
}

/// What each fleet instance should arm, in the order of `instances`: the
/// expiry its tag holds (`tags`, read by [`Ec2::expiries`]). Behind an
/// EC2-compatible endpoint (`on_aws` false: moto, LocalStack) the hosts are
/// no EC2 instances, with no instance metadata to re-arm from: nothing is
/// armed, and the step says why.
pub fn arm_plans(
    fleet: &FleetName,
    instances: &[Instance],
    tags: &BTreeMap<String, TagValue>,
    on_aws: bool,
) -> Vec<ArmPlan> {
    let skip = (!on_aws).then(|| {
        "not armed: the fleet is behind --endpoint-url, not EC2 (no instance metadata)".to_string()
    });
    instances
        .iter()
        .map(|instance| ArmPlan {
            fleet: fleet.to_string(),
            instance_id: instance.id.clone(),
            expected: tags
                .get(&instance.id)
                .and_then(|t| t.as_ref().ok().copied()),
            settings: ArmSettings::default(),
            skip: skip.clone(),
        })
        .collect()
}

/// Gives each grouped host the plan of the instance at its address and
/// port (a fleet's instances each have their own).
fn set_arms(hosts: &mut [HostPlan], arms: impl IntoIterator<Item = (Host, ArmPlan)>) {
    for (host, arm) in arms {
        let found = hosts
            .iter_mut()
            .find(|h| h.host.address == host.address && h.host.port == host.port);
        if let Some(plan) = found {
            plan.arm = Some(arm);
        }
    }
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
    let public_names = instance
        .public_ip
        .map(|ip| ip.to_string())
        .into_iter()
        .chain(instance.public_dns.clone())
        .collect();
    Ok(inventory::Entry {
        host: Host {
            address: address.to_string(),
            port: 22,
            user: access.ssh_user.clone(),
            key: key.to_path_buf(),
        },
        role,
        private_address: private.to_string(),
        public_names,
    })
}

/// The binary to ship: `--loadtest-bin`, or the release binary built for
/// x86_64; stripped, its debug info split off into `keep/loadtest.debug`
/// (the stripped binary, what the hosts run, is `keep/loadtest`, linked to
/// it by `.gnu_debuglink`), digested and compressed.
pub fn loadtest_release(given: Option<&Path>, keep: &Path) -> anyhow::Result<Shipment> {
    let path = match given {
        Some(path) => path.to_path_buf(),
        None => build_loadtest()?,
    };
    let raw = std::fs::read(&path)
        .with_context(|| format!("cannot read the loadtest binary {}", path.display()))?;
    let raw_size = raw.len();
    let binary = match strip(&path, &raw, keep) {
        Ok(Some(stripped)) => stripped,
        Ok(None) => raw,
        Err(why) => {
            eprintln!("note: shipping {} unstripped: {why:#}", path.display());
            raw
        }
    };
    let shipment = Shipment::new(binary).context("cannot compress the loadtest binary")?;
    let stripped = if shipment.binary.len() < raw_size {
        format!(
            ", stripped {} (debug info in {})",
            megabytes(shipment.binary.len()),
            keep.join("loadtest.debug").display()
        )
    } else {
        String::new()
    };
    eprintln!(
        "shipping loadtest: {}{stripped}, {} zstd, sha256 {}",
        megabytes(raw_size),
        megabytes(shipment.compressed.len()),
        shipment.short_digest()
    );
    Ok(shipment)
}

/// `objcopy --only-keep-debug` then `--strip-all --add-gnu-debuglink`
/// into `keep`; `None` for a file that is not ELF (checked later, per
/// host), an error when objcopy is missing or fails.
fn strip(path: &Path, raw: &[u8], keep: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    if !raw.starts_with(b"\x7fELF") {
        return Ok(None);
    }
    std::fs::create_dir_all(keep).with_context(|| format!("cannot create {}", keep.display()))?;
    let debug = keep.join("loadtest.debug");
    let stripped = keep.join("loadtest");
    let objcopy = |args: &[&std::ffi::OsStr]| -> anyhow::Result<()> {
        let out = Command::new("objcopy")
            .args(args)
            .output()
            .context("objcopy is not installed (Debian/Ubuntu: apt-get install binutils)")?;
        if !out.status.success() {
            bail!(
                "objcopy failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    };
    let link = format!("--add-gnu-debuglink={}", debug.display());
    objcopy(&[
        "--only-keep-debug".as_ref(),
        path.as_os_str(),
        debug.as_os_str(),
    ])?;
    objcopy(&[
        "--strip-all".as_ref(),
        link.as_ref(),
        path.as_os_str(),
        stripped.as_os_str(),
    ])?;
    let bytes =
        std::fs::read(&stripped).with_context(|| format!("cannot read {}", stripped.display()))?;
    Ok(Some(bytes))
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
    use crate::expiry::Expiry;
    use crate::role::Role;

    fn instance(id: &str, role: Role, ip: &str) -> Instance {
        Instance {
            id: id.into(),
            role: Some(role),
            instance_type: "t3.micro".into(),
            lifecycle: "spot".into(),
            state: "running".into(),
            state_reason: None,
            public_ip: Some(ip.parse().unwrap()),
            public_dns: None,
            private_ip: Some(ip.parse().unwrap()),
            launched_at: None,
            availability_zone: None,
            spot_request_id: None,
            key_name: None,
        }
    }

    /// Each fleet host carries its own instance's tag; a bad or missing tag
    /// arms nothing (the step refuses), and behind an endpoint nothing is
    /// armed at all.
    #[test]
    fn every_fleet_host_carries_its_own_instance_plan() {
        let fleet = FleetName::parse("demo").unwrap();
        let instances = [
            instance("i-web", Role::Webserver, "10.0.0.1"),
            instance("i-master", Role::Master, "10.0.0.2"),
            instance("i-worker", Role::Worker, "10.0.0.3"),
        ];
        let tags = BTreeMap::from([
            ("i-web".to_string(), Ok(Expiry::at(8200))),
            ("i-master".to_string(), Err("soon".to_string())),
        ]);
        let access = FleetAccess {
            connect_via: ConnectVia::Private,
            ssh_user: "root".into(),
            key_file: None,
        };
        let entries: Vec<_> = instances
            .iter()
            .map(|i| host_entry(i, Path::new("/k"), &access).unwrap())
            .collect();
        let hosts: Vec<Host> = entries.iter().map(|e| e.host.clone()).collect();
        let mut plans = DeployPlan::group(entries).unwrap();
        assert!(plans.iter().all(|p| p.arm.is_none()));
        set_arms(
            &mut plans,
            hosts
                .into_iter()
                .zip(arm_plans(&fleet, &instances, &tags, true)),
        );
        let arm = |address: &str| {
            let plan = plans.iter().find(|p| p.host.address == address).unwrap();
            plan.arm.clone().unwrap()
        };
        assert_eq!(arm("10.0.0.1").instance_id, "i-web");
        assert_eq!(arm("10.0.0.1").expected, Some(Expiry::at(8200)));
        assert_eq!(arm("10.0.0.2").instance_id, "i-master");
        assert_eq!(arm("10.0.0.2").expected, None);
        assert_eq!(arm("10.0.0.3").instance_id, "i-worker");
        assert_eq!(arm("10.0.0.3").expected, None);
        assert_eq!(arm("10.0.0.3").fleet, "demo");
        assert!(arm("10.0.0.3").skip.is_none());

        let behind = arm_plans(&fleet, &instances, &tags, false);
        assert!(behind.iter().all(|p| p
            .skip
            .as_deref()
            .is_some_and(|s| s.contains("--endpoint-url"))));
    }

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
