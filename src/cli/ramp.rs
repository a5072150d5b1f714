//! `spotload ramp`: a headless step ramp on a deployed fleet, driven through
//! the master's web API (the swarm crate's ramp engine with its HTTP
//! driver), with the same table, answer, reports and exit codes as
//! `loadtest master --headless --ramp`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use swarm::cli::flags::{RampFlags, SpawnFlags, ThresholdFlags};
use swarm::cli::parse::parse_step_time;
use swarm::cli::Expect;

use anyhow::{bail, Context};
use clap::Args;
use swarm::api::Credentials;
use swarm::client::MasterClient;
use swarm::ramp::{HttpDriver, RampDriver};

use super::aws::AwsArgs;
use super::hosts::HostsArgs;
use crate::provision::ConnectVia;
use crate::remote::{inventory, recipe::WEB_PORT};
use crate::role::Role;
use crate::web_cert;

/// Exit codes, shown at the end of `spotload ramp --help`.
const AFTER_HELP: &str = "\
Exit codes:
  0  the ramp ran to an answer: a threshold, or MAX reached with every step healthy
  1  it could not measure: the master was unreachable, no workers joined in
     time, the target was unreachable at the first step, every worker left, Ctrl-C
  2  bad arguments, e.g. a ramp spec not of the form START:STEP:MAX
  3  generator-bound: a worker used 90% or more of its CPU cores; add workers";

/// Run a headless ramp on the deployed fleet through its master: step the
/// users START:STEP:MAX until requests fail, print the step table and the
/// failure threshold, write ramp.json/csv/html.
///
/// The master is --master URL, else the master of --inventory FILE, else
/// the fleet's master instance (found by tags, like `spotload status`).
/// Its UI certificate, kept by `spotload deploy` in the fleet's state
/// directory (or --web-cert), is the only one trusted.
#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
pub struct RampArgs {
    /// The ramp: START:STEP:MAX, step time, thresholds, report directory.
    #[command(flatten)]
    pub ramp: RampFlags,
    /// How fast users start at each step.
    #[command(flatten)]
    pub spawn: SpawnFlags,
    /// Rules each step is judged by, besides --fail-ratio and --max-p95/99.
    #[command(flatten)]
    pub verdicts: ThresholdFlags,
    /// The master's web API, e.g. https://203.0.113.7:8089.
    #[arg(
        long,
        value_name = "URL",
        conflicts_with = "inventory",
        help_heading = "Master"
    )]
    pub master: Option<String>,
    /// The certificate the master's UI serves, trusted alone (PEM)
    /// [default: the one `spotload deploy` kept in the fleet's state
    /// directory, web-ui-cert.pem].
    #[arg(long, value_name = "PEM", help_heading = "Master")]
    pub web_cert: Option<PathBuf>,
    /// The web UI credentials `spotload deploy` printed.
    #[arg(
        long,
        value_name = "USER:PASS",
        env = "SPOTLOAD_WEB_AUTH",
        help_heading = "Master"
    )]
    pub web_auth: Option<Credentials>,
    /// The users that run a --ramp-rate's iterations (the pool).
    #[arg(short = 'u', long, value_name = "N")]
    pub users: Option<u64>,
    /// Target URL for the users [default: the master's, the webserver].
    #[arg(short = 'H', long, value_name = "URL")]
    pub host: Option<String>,
    /// Workers that must have joined before the ramp starts.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub expect_workers: usize,
    /// How long to wait for them.
    #[arg(long, default_value = "60s", value_name = "DURATION", value_parser = parse_step_time)]
    pub expect_workers_max_wait: Duration,
    /// The hosts: the master of an inventory file, or the fleet's master
    /// instance. Last but for --fleet's group, whose heading follows: the
    /// heading given here holds for every flag after it.
    #[command(flatten, next_help_heading = "Master")]
    pub hosts: HostsArgs,
    /// The fleet whose master to drive, when neither --master nor --inventory is
    /// given.
    #[command(flatten, next_help_heading = "Fleet (where its master is found)")]
    pub aws: AwsArgs,
}

impl RampArgs {
    /// Runs the ramp through the master's API and exits like `loadtest master
    /// --headless --ramp`: 0 an answer, 1 could not measure, 2 bad arguments.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let plan = match self
            .ramp
            .plan(self.spawn.or(10.0), &self.verdicts, self.users)
        {
            Ok(Some(plan)) => plan,
            Ok(None) => {
                eprintln!("error: --ramp START:STEP:MAX (users) or --ramp-rate START:STEP:MAX with -u (iterations per second) is required, e.g. --ramp 10:10:100 --step-time 30s");
                return Ok(ExitCode::from(2));
            }
            Err(message) => {
                eprintln!("error: {message}");
                return Ok(ExitCode::from(2));
            }
        };
        if let Err(code) = swarm::cli::prepare_report_dir(self.ramp.report_dir.as_deref()) {
            return Ok(code);
        }
        let cert = self.web_cert()?;
        let master = self.master_url(cert.is_some()).await?;
        let client = match (&cert, master.starts_with("https://")) {
            (Some((pem, _)), true) => MasterClient::pinned(&master, self.web_auth.clone(), pem)?,
            _ => MasterClient::new(&master, self.web_auth.clone())?,
        };
        if let (Some((_, from)), true) = (&cert, master.starts_with("https://")) {
            println!(
                "trusting only the master's certificate in {}",
                from.display()
            );
        }
        let driver = HttpDriver::from_client(client, self.host.clone())
            .with_co_mitigation(self.spawn.co_mitigation);
        println!("ramp {} on the master at {master}", plan.spec);
        let expect = Expect {
            workers: self.expect_workers,
            limit: self.expect_workers_max_wait,
            hint: "check that `spotload deploy` finished, or lower --expect-workers".into(),
        };
        let shutdown = swarm::shutdown::Shutdown::new();
        shutdown
            .watch_signals()
            .context("cannot watch for SIGINT and SIGTERM")?;
        let (report, interrupted) =
            swarm::cli::drive_ramp(&driver, &plan, self.host.clone(), &expect, &shutdown).await;
        if interrupted {
            // Leave the fleet idle; its workers stay for the next run.
            let _ = driver.stop().await;
        }
        swarm::cli::conclude_ramp(self.ramp.report_dir.as_deref(), &report)
    }

    /// The master's certificate and where it came from: --web-cert, else
    /// the one the fleet's last deploy kept, if any.
    fn web_cert(&self) -> anyhow::Result<Option<(Vec<u8>, PathBuf)>> {
        if let Some(path) = &self.web_cert {
            let pem = std::fs::read(path)
                .with_context(|| format!("--web-cert {}: cannot read it", path.display()))?;
            return Ok(Some((pem, path.clone())));
        }
        // Without a state directory (no HOME) there is simply no kept one.
        let Ok(state) = self.aws.state() else {
            return Ok(None);
        };
        let fleet_dir = state.fleet_dir(&self.aws.fleet_name()?);
        let kept = web_cert::load(&fleet_dir)?;
        Ok(kept.map(|pem| (pem, fleet_dir.join(web_cert::CERT_FILE))))
    }

    /// The master's base URL from --master, the inventory or the fleet;
    /// `https` when the master's certificate is known.
    async fn master_url(&self, https: bool) -> anyhow::Result<String> {
        if let Some(url) = &self.master {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("--master {url:?}: give a URL like https://203.0.113.7:{WEB_PORT}");
            }
            return Ok(url.trim_end_matches('/').to_string());
        }
        let address = match &self.hosts.inventory {
            Some(file) => inventory::load(file)?
                .into_iter()
                .find(|e| e.role == Role::Master)
                .map(|e| e.host.address)
                .with_context(|| format!("{}: no host has the master role", file.display()))?,
            None => self.fleet_master().await?,
        };
        let scheme = if https { "https" } else { "http" };
        Ok(if address.contains(':') {
            format!("{scheme}://[{address}]:{WEB_PORT}")
        } else {
            format!("{scheme}://{address}:{WEB_PORT}")
        })
    }

    async fn fleet_master(&self) -> anyhow::Result<String> {
        let fleet = self.aws.fleet_name()?;
        let ec2 = self.aws.connect().await?;
        let instances = ec2.describe(&fleet).await?;
        let master = instances
            .iter()
            .find(|i| i.role == Some(Role::Master) && i.state == "running")
            .with_context(|| {
                format!(
                    "fleet {fleet} has no running master: `spotload deploy --fleet {fleet}` first"
                )
            })?;
        let address = match self.hosts.connect_via {
            ConnectVia::Public => master.public_ip,
            ConnectVia::Private => master.private_ip,
        };
        let kind = match self.hosts.connect_via {
            ConnectVia::Public => "public",
            ConnectVia::Private => "private",
        };
        address
            .map(|a| a.to_string())
            .with_context(|| format!("the master {} has no {kind} address", master.id))
    }
}
