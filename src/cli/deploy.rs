//! `spotload deploy`: launch (or reuse) the fleet, or read an inventory of
//! existing hosts, then set every host up over SSH and print the UI address.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};

use super::aws::runtime;
use super::launch::LaunchArgs;
use crate::cloud::plan::parse_duration;
use crate::cloud::{FleetPlan, Instance, Role};
use crate::remote::{self, inventory, ConnectLimits, DeployPlan, Host, HostPlan, KnownHosts};

/// Deploy nginx (webserver), `loadtest master` and `loadtest worker` over
/// SSH, check that every worker joined, and print the web UI address.
///
/// Without --inventory: uses the fleet's running instances, launching the
/// fleet first when none exists (the launch options apply then). With
/// --inventory FILE: deploys onto the hosts listed there, no EC2 involved;
/// one host per line, `ADDRESS[:PORT] USER KEY ROLE [PRIVATE_ADDRESS]`.
/// Running deploy again replaces the binary and restarts everything.
#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(
        flatten,
        next_help_heading = "Fleet, and launching it when it does not exist"
    )]
    pub launch: LaunchArgs,
    /// Deploy onto the hosts in FILE (`ADDRESS[:PORT] USER KEY ROLE
    /// [PRIVATE_ADDRESS]` per line) instead of an EC2 fleet.
    #[arg(long, value_name = "FILE", help_heading = "Deploy")]
    pub inventory: Option<PathBuf>,
    /// The loadtest binary to ship [default: `cargo build --release -p
    /// loadtest --target x86_64-unknown-linux-gnu` in this checkout].
    #[arg(long, value_name = "PATH", help_heading = "Deploy")]
    pub loadtest_bin: Option<PathBuf>,
    /// Reach fleet instances at their public or private addresses (private
    /// when spotload runs inside the VPC).
    #[arg(long, value_enum, default_value_t = ConnectVia::Public, help_heading = "Deploy")]
    pub connect_via: ConnectVia,
    /// Log-in user on fleet instances (`ubuntu` for Ubuntu AMIs).
    #[arg(
        long,
        default_value = "ec2-user",
        value_name = "USER",
        help_heading = "Deploy"
    )]
    pub ssh_user: String,
    /// Known-hosts file for host key checks (trust on first use) [default:
    /// known_hosts in the fleet's state directory].
    #[arg(long, value_name = "FILE", help_heading = "Deploy")]
    pub known_hosts: Option<PathBuf>,
    /// Time limit of one SSH connection attempt.
    #[arg(
        long,
        default_value = "10s",
        value_name = "DURATION",
        help_heading = "Deploy"
    )]
    pub connect_timeout: String,
    /// How long to keep retrying while hosts refuse SSH [default: 5m for a
    /// fleet, 30s with --inventory].
    #[arg(long, value_name = "DURATION", help_heading = "Deploy")]
    pub ssh_wait: Option<String>,
    /// HTTP basic auth for the master's web UI, which anyone who reaches
    /// :8089 could otherwise drive; by default (or without a value) a
    /// password is generated for user `spotload` and printed.
    #[arg(long, value_name = "USER:PASS", num_args = 0..=1, default_missing_value = "", help_heading = "Deploy")]
    pub web_auth: Option<String>,
    /// Serve the web UI without a password (only behind your own access control).
    #[arg(long, conflicts_with = "web_auth", help_heading = "Deploy")]
    pub no_web_auth: bool,
    /// How long the workers get to join the master.
    #[arg(
        long,
        default_value = "60s",
        value_name = "DURATION",
        help_heading = "Deploy"
    )]
    pub join_timeout: String,
}

/// Which of an instance's addresses to connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConnectVia {
    Public,
    Private,
}

/// `--ssh-wait` defaults: a fresh fleet needs a minute or two for cloud-init.
const FLEET_SSH_WAIT: Duration = Duration::from_secs(5 * 60);
const INVENTORY_SSH_WAIT: Duration = Duration::from_secs(30);

impl DeployArgs {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let wait_default = if self.inventory.is_some() {
            INVENTORY_SSH_WAIT
        } else {
            FLEET_SSH_WAIT
        };
        let limits = ConnectLimits {
            attempt: duration("--connect-timeout", &self.connect_timeout)?,
            wait: match &self.ssh_wait {
                Some(text) => duration("--ssh-wait", text)?,
                None => wait_default,
            },
        };
        let join_timeout = duration("--join-timeout", &self.join_timeout)?;
        let web_auth = match (&self.web_auth, self.no_web_auth) {
            (_, true) => None,
            (given, false) => Some(web_auth(given.as_deref().unwrap_or_default())?),
        };
        // Validate the launch options before the (long) build, and build
        // before launching, so a compile error leaves nothing billing.
        let fleet_plan = match &self.inventory {
            Some(_) => None,
            None => Some(FleetPlan::from_flags(&self.launch.flags())?),
        };
        let loadtest = Arc::new(self.loadtest_binary()?);
        let state = self.launch.aws.state()?;
        let runtime = runtime()?;
        let hosts = match (&self.inventory, fleet_plan) {
            (Some(file), _) => DeployPlan::group(inventory::load(file)?)?,
            (None, Some(plan)) => runtime.block_on(self.fleet_hosts(plan, &state))?,
            (None, None) => bail!("nothing to deploy onto"),
        };
        let known_hosts = match &self.known_hosts {
            Some(path) => path.clone(),
            None => state
                .fleet_dir(&self.launch.aws.fleet_name()?)
                .join("known_hosts"),
        };
        let plan = DeployPlan {
            hosts,
            loadtest,
            web_auth: web_auth.clone(),
            known_hosts: KnownHosts::new(known_hosts),
            limits,
            join_timeout,
        };
        let master = plan.first(Role::Master).map(|m| m.host.clone());
        let report = runtime.block_on(remote::deploy(plan));
        if !report.succeeded() {
            eprint!("{}", report.render_failures());
            bail!(report.headline());
        }
        println!(
            "deployed: nginx, loadtest master and {} worker host(s)",
            report
                .hosts
                .iter()
                .filter(|h| h.plan.has(Role::Worker))
                .count()
        );
        if let Some(master) = master {
            let address = if master.address.contains(':') {
                format!("[{}]", master.address)
            } else {
                master.address
            };
            println!(
                "master web UI: http://{address}:{}",
                remote::recipe::WEB_PORT
            );
        }
        if let Some(auth) = web_auth {
            let (user, pass) = auth.split_once(':').unwrap_or((auth.as_str(), ""));
            println!("web UI login: user {user}, password {pass}");
        }
        Ok(ExitCode::SUCCESS)
    }

    /// The fleet's instances as hosts: reused when the fleet runs,
    /// launched (and waited for) when it does not exist.
    async fn fleet_hosts(
        &self,
        plan: FleetPlan,
        state: &crate::cloud::StateDir,
    ) -> anyhow::Result<Vec<HostPlan>> {
        let name = plan.fleet.clone();
        let ec2 = self.launch.aws.connect().await?;
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
            let key = self
                .launch
                .key_file
                .clone()
                .or_else(|| saved.and_then(|f| f.key.private_key))
                .or(created);
            (existing, key)
        };
        let key = key.with_context(|| {
            format!("no private key known for fleet {name}: pass --key-file PATH (the key of its key pair)")
        })?;
        let mut entries = Vec::new();
        for instance in &instances {
            entries.push(self.entry(instance, &key)?);
        }
        DeployPlan::group(entries).with_context(|| format!("fleet {name} cannot be deployed as it is; `spotload status --fleet {name}` shows it, `spotload destroy --fleet {name}` ends it"))
    }

    fn entry(&self, instance: &Instance, key: &Path) -> anyhow::Result<inventory::Entry> {
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
        let address = match self.connect_via {
            ConnectVia::Private => private,
            ConnectVia::Public => instance.public_ip.with_context(|| {
                format!("instance {id} ({role}) has no public address: run spotload inside the VPC with --connect-via private")
            })?,
        };
        Ok(inventory::Entry {
            host: Host {
                address: address.to_string(),
                port: 22,
                user: self.ssh_user.clone(),
                key: key.to_path_buf(),
            },
            role,
            private_address: private.to_string(),
        })
    }

    /// Reads `--loadtest-bin`, or builds the release binary for x86_64.
    fn loadtest_binary(&self) -> anyhow::Result<Vec<u8>> {
        let path = match &self.loadtest_bin {
            Some(path) => path.clone(),
            None => build_loadtest()?,
        };
        std::fs::read(&path)
            .with_context(|| format!("cannot read the loadtest binary {}", path.display()))
    }
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

fn duration(flag: &str, text: &str) -> anyhow::Result<Duration> {
    parse_duration(text)
        .filter(|d| !d.is_zero())
        .with_context(|| format!("{flag} {text:?}: give a duration like 30s, 5m or 1h"))
}

/// `USER:PASS` as given, or `spotload:<random>` for a bare `--web-auth`.
/// Characters that systemd or the shell would interpret are refused.
fn web_auth(given: &str) -> anyhow::Result<String> {
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
