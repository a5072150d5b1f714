//! `spotload deploy`: launch (or reuse) the fleet, or read an inventory of
//! existing hosts, then set every host up over SSH and print the UI address.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use swarm::cli::parse::parse_positive_time;
use swarm::protocol::JoinSecret;

use super::hosts::HostsArgs;
use super::launch::LaunchArgs;
use crate::cloud::FleetPlan;
use crate::provision::{self, FleetAccess};
use crate::remote::recipe::{TargetTrust, UiTls};
use crate::remote::{self, inventory, ConnectLimits, DeployPlan, HostPlan, KnownHosts};
use crate::role::Role;
use crate::web_cert::WebCert;

/// Deploy nginx (webserver), `loadtest master` and `loadtest worker` over
/// SSH, check that every worker joined, and print the web UI address.
///
/// The UI is served over HTTPS with a self-signed certificate made for
/// this deploy; its fingerprint is printed, and the certificate is kept
/// in the fleet's state directory, where `spotload ramp` trusts it.
///
/// Without --inventory: uses the fleet's running instances, launching the
/// fleet first when none exists (the launch options apply then). With
/// --inventory FILE: deploys onto the hosts listed there, no EC2 involved;
/// one host per line, `ADDRESS[:PORT] USER KEY ROLE [PRIVATE_ADDRESS]`.
/// Running deploy again replaces the binary and restarts everything.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The fleet, and how to launch it when it does not exist yet.
    #[command(
        flatten,
        next_help_heading = "Fleet, and launching it when it does not exist"
    )]
    pub launch: LaunchArgs,
    /// The hosts: an inventory file, or the fleet's instances.
    #[command(flatten, next_help_heading = "Deploy")]
    pub hosts: HostsArgs,
    /// The loadtest binary to ship [default: `cargo build --release -p
    /// loadtest --target x86_64-unknown-linux-gnu` in this checkout].
    #[arg(long, value_name = "PATH", help_heading = "Deploy")]
    pub loadtest_bin: Option<PathBuf>,
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
        value_parser = parse_positive_time,
        help_heading = "Deploy"
    )]
    pub connect_timeout: Duration,
    /// How long to keep retrying while hosts refuse SSH [default: 5m for a
    /// fleet, 30s with --inventory].
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_time, help_heading = "Deploy")]
    pub ssh_wait: Option<Duration>,
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
        value_parser = parse_positive_time,
        help_heading = "Deploy"
    )]
    pub join_timeout: Duration,
    /// How each worker's users behave, passed on to every worker.
    #[command(flatten)]
    pub users: swarm::cli::flags::UserFlags,
    /// How the users trust an HTTPS target: the CA file is installed on
    /// the master's host, and the master sends it to every worker.
    #[command(flatten)]
    pub target_tls: swarm::cli::flags::TargetTlsFlags,
}

/// A new certificate for the master's UI, named for every address and
/// name it is opened under, saved (without its key) in the fleet's state
/// directory for `spotload ramp`. A deploy that fails before the master's
/// step leaves the saved one ahead of the master's: deploy again.
fn ui_certificate(
    hosts: &[HostPlan],
    fleet_dir: &Path,
) -> anyhow::Result<Option<(WebCert, PathBuf)>> {
    let Some(master) = hosts.iter().find(|h| h.has(Role::Master)) else {
        return Ok(None);
    };
    let cert = WebCert::generate(&master.ui_names())?;
    let saved = cert.save(fleet_dir)?;
    Ok(Some((cert, saved)))
}

/// `--ssh-wait` defaults: a fresh fleet needs a minute or two for cloud-init.
const FLEET_SSH_WAIT: Duration = Duration::from_secs(5 * 60);
const INVENTORY_SSH_WAIT: Duration = Duration::from_secs(30);

impl DeployArgs {
    /// Builds (or takes) the binary, finds or launches the hosts, deploys, and
    /// prints the web UI address and login; fails when any host or the join check
    /// failed.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let wait_default = if self.hosts.inventory.is_some() {
            INVENTORY_SSH_WAIT
        } else {
            FLEET_SSH_WAIT
        };
        let limits = ConnectLimits {
            attempt: self.connect_timeout,
            wait: self.ssh_wait.unwrap_or(wait_default),
        };
        // The CA file is read and checked before anything is built or launched.
        let target_trust = match self.target_tls.load()? {
            Some(trust) => TargetTrust {
                ca_pem: trust.ca.map(|ca| Arc::new(ca.pem().as_bytes().to_vec())),
                accept_invalid_certs: trust.accept_invalid_certs,
            },
            None => TargetTrust::default(),
        };
        let web_auth = match (&self.web_auth, self.no_web_auth) {
            (_, true) => None,
            (given, false) => Some(provision::web_auth(given.as_deref().unwrap_or_default())?),
        };
        // Validate the launch options before the (long) build, and build
        // before launching, so a compile error leaves nothing billing.
        let fleet_plan = match &self.hosts.inventory {
            Some(_) => None,
            None => Some(FleetPlan::from_flags(&self.launch.flags())?),
        };
        let state = self.launch.aws.state()?;
        let fleet_dir = state.fleet_dir(&self.launch.aws.fleet_name()?);
        let loadtest = Arc::new(provision::loadtest_release(
            self.loadtest_bin.as_deref(),
            &fleet_dir.join("release"),
        )?);
        let hosts = match (&self.hosts.inventory, fleet_plan) {
            (Some(file), _) => DeployPlan::group(inventory::load(file)?)?,
            (None, Some(plan)) => {
                let access = FleetAccess {
                    connect_via: self.hosts.connect_via,
                    ssh_user: self.ssh_user.clone(),
                    key_file: self.launch.key_file.clone(),
                };
                let ec2 = self.launch.aws.connect().await?;
                provision::fleet_hosts(&ec2, plan, &state, &access).await?
            }
            (None, None) => bail!("nothing to deploy onto"),
        };
        let known_hosts = match &self.known_hosts {
            Some(path) => path.clone(),
            None => fleet_dir.join("known_hosts"),
        };
        let web_cert = ui_certificate(&hosts, &fleet_dir)?;
        let web_tls = web_cert.as_ref().map(|(cert, _)| UiTls {
            cert_pem: Arc::new(cert.cert_pem.clone().into_bytes()),
            key_pem: Arc::new(cert.key_pem().as_bytes().to_vec()),
        });
        let plan = DeployPlan {
            hosts,
            loadtest,
            web_auth: web_auth.clone(),
            // A fresh one each deploy: every worker gets it with its master.
            join_secret: JoinSecret::generate(),
            web_tls,
            known_hosts: KnownHosts::new(known_hosts),
            limits,
            join_timeout: self.join_timeout,
            worker_args: self.users.to_args(),
            target_trust,
        };
        let master = plan.first(Role::Master).map(|m| m.host.clone());
        let report = remote::deploy(plan).await;
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
                "master web UI: https://{address}:{}",
                remote::recipe::WEB_PORT
            );
        }
        if let Some((cert, saved)) = &web_cert {
            println!(
                "web UI certificate: self-signed, SHA-256 {}",
                cert.fingerprint
            );
            println!(
                "  valid for {}; kept in {}, which spotload ramp trusts (a browser warns: accept it if it shows this fingerprint)",
                cert.names.join(", "),
                saved.display()
            );
        }
        if let Some(auth) = web_auth {
            let (user, pass) = auth.split_once(':').unwrap_or((auth.as_str(), ""));
            println!("web UI login: user {user}, password {pass}");
        }
        Ok(ExitCode::SUCCESS)
    }
}
