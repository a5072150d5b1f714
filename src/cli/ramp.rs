//! `spotload ramp`: a headless step ramp on a deployed fleet, driven through
//! the master's web API (the swarm crate's ramp engine with its HTTP
//! driver), with the same table, answer, reports and exit codes as
//! `loadtest master --headless --ramp`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use swarm::cli::parse::{parse_rate, parse_ratio, parse_step_time};

use anyhow::{bail, Context};
use clap::Args;
use swarm::ramp::{
    run_ramp, HttpDriver, Limits, RampDriver, RampPlan, RampReport, RampSpec, StepTable,
    DEFAULT_FAIL_RATIO,
};
use swarm::stats::now_epoch;

use super::aws::{runtime, AwsArgs};
use super::deploy::ConnectVia;
use crate::cloud::Role;
use crate::remote::{inventory, recipe::WEB_PORT};

/// Exit codes, shown at the end of `spotload ramp --help`.
const AFTER_HELP: &str = "\
Exit codes:
  0  the ramp ran to an answer: a threshold, or MAX reached with every step healthy
  1  it could not measure: the master was unreachable, no workers joined in
     time, the target was unreachable at the first step, every worker left, Ctrl-C
  2  bad arguments, e.g. a ramp spec not of the form START:STEP:MAX";

/// Run a headless ramp on the deployed fleet through its master: step the
/// users START:STEP:MAX until requests fail, print the step table and the
/// failure threshold, write ramp.json/csv/html.
///
/// The master is --master URL, else the master of --inventory FILE, else
/// the fleet's master instance (found by tags, like `spotload status`).
#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
pub struct RampArgs {
    /// Ramp the users START:STEP:MAX, e.g. 10:10:100.
    #[arg(long, value_name = "START:STEP:MAX")]
    pub ramp: RampSpec,
    /// How long each step measures, e.g. 30s, 2m (rounded up to whole 3 s
    /// worker report intervals).
    #[arg(long, value_name = "DURATION", value_parser = parse_step_time)]
    pub step_time: Duration,
    /// A step fails when more than this fraction of its requests fail.
    #[arg(long, value_name = "RATIO", default_value_t = DEFAULT_FAIL_RATIO, value_parser = parse_ratio)]
    pub fail_ratio: f64,
    /// A step also fails when its p95 response time exceeds MS milliseconds.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_p95: Option<u64>,
    /// After the first failing step, bisect between it and the last healthy one.
    #[arg(long)]
    pub refine: bool,
    /// Users started (or stopped) per second.
    #[arg(short = 'r', long, value_name = "RATE", default_value_t = 10.0, value_parser = parse_rate)]
    pub spawn_rate: f64,
    /// Write ramp.json, ramp.csv and ramp.html into DIR (created if missing).
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
    /// The master's web API, e.g. http://203.0.113.7:8089.
    #[arg(long, value_name = "URL", help_heading = "Master")]
    pub master: Option<String>,
    /// Use the master listed in this inventory file (see `spotload deploy`).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "master",
        help_heading = "Master"
    )]
    pub inventory: Option<PathBuf>,
    /// Reach the fleet's master at its public or private address.
    #[arg(long, value_enum, default_value_t = ConnectVia::Public, help_heading = "Master")]
    pub connect_via: ConnectVia,
    /// The web UI credentials `spotload deploy --web-auth` printed.
    #[arg(
        long,
        value_name = "USER:PASS",
        env = "SPOTLOAD_WEB_AUTH",
        help_heading = "Master"
    )]
    pub web_auth: Option<String>,
    /// Target URL for the users [default: the master's, the webserver].
    #[arg(short = 'H', long, value_name = "URL")]
    pub host: Option<String>,
    /// Workers that must have joined before the ramp starts.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub expect_workers: usize,
    /// How long to wait for them.
    #[arg(long, default_value = "60s", value_name = "DURATION", value_parser = parse_step_time)]
    pub expect_workers_max_wait: Duration,
    #[command(flatten, next_help_heading = "Fleet (where its master is found)")]
    pub aws: AwsArgs,
}

impl RampArgs {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let auth = match &self.web_auth {
            Some(text) => match text.split_once(':') {
                Some((user, pass)) => Some((user.to_string(), pass.to_string())),
                None => {
                    eprintln!("error: --web-auth {text:?}: expected USER:PASS");
                    return Ok(ExitCode::from(2));
                }
            },
            None => None,
        };
        if let Some(dir) = &self.report_dir {
            if let Err(err) = std::fs::create_dir_all(dir) {
                eprintln!(
                    "error: --report-dir {}: cannot create it: {err}",
                    dir.display()
                );
                return Ok(ExitCode::from(2));
            }
        }
        let mut plan = RampPlan::new(
            self.ramp,
            self.step_time,
            Limits {
                fail_ratio: self.fail_ratio,
                max_p95_ms: self.max_p95,
            },
            self.spawn_rate,
        );
        plan.refine = self.refine;
        let runtime = runtime()?;
        let master = runtime.block_on(self.master_url())?;
        let driver = HttpDriver::new(&master, self.host.clone(), auth)?;
        let mut report = RampReport::new(&plan, self.host.clone(), now_epoch());
        println!("ramp {} on the master at {master}", plan.spec);
        let shutdown = swarm::shutdown::Shutdown::new();
        let interrupted = runtime.block_on(async {
            shutdown
                .watch_signals()
                .context("cannot watch for SIGINT and SIGTERM")?;
            anyhow::Ok(tokio::select! {
                () = self.ramp_with_workers(&driver, &plan, &mut report) => false,
                () = shutdown.requested() => true,
            })
        })?;
        if interrupted {
            let why = shutdown.reason().map_or("a signal", |r| r.describe());
            report.error = Some(format!(
                "interrupted by {why} before the ramp had an answer"
            ));
            report.conclude();
            report.finished_at = Some(now_epoch());
            let _ = runtime.block_on(driver.stop());
        }
        swarm::cli::conclude_ramp(self.report_dir.as_deref(), &plan, &report)
    }

    async fn ramp_with_workers(
        &self,
        driver: &HttpDriver,
        plan: &RampPlan,
        report: &mut RampReport,
    ) {
        let wanted = self.expect_workers.max(1);
        if let Err(seen) = driver
            .wait_for_workers(wanted, self.expect_workers_max_wait)
            .await
        {
            report.error = Some(match driver.read().await {
                Err(err) => format!("cannot read the master's stats: {err}"),
                Ok(_) => format!(
                    "only {seen} of {wanted} workers joined within {:?}: check `spotload deploy` finished, or lower --expect-workers",
                    self.expect_workers_max_wait
                ),
            });
            report.finished_at = Some(now_epoch());
            return;
        }
        run_ramp(driver, plan, report, &mut StepTable::stdout()).await;
    }

    /// The master's base URL from --master, the inventory or the fleet.
    async fn master_url(&self) -> anyhow::Result<String> {
        if let Some(url) = &self.master {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("--master {url:?}: give a URL like http://203.0.113.7:{WEB_PORT}");
            }
            return Ok(url.trim_end_matches('/').to_string());
        }
        let address = match &self.inventory {
            Some(file) => inventory::load(file)?
                .into_iter()
                .find(|e| e.role == Role::Master)
                .map(|e| e.host.address)
                .with_context(|| format!("{}: no host has the master role", file.display()))?,
            None => self.fleet_master().await?,
        };
        Ok(if address.contains(':') {
            format!("http://[{address}]:{WEB_PORT}")
        } else {
            format!("http://{address}:{WEB_PORT}")
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
        let address = match self.connect_via {
            ConnectVia::Public => master.public_ip,
            ConnectVia::Private => master.private_ip,
        };
        let kind = match self.connect_via {
            ConnectVia::Public => "public",
            ConnectVia::Private => "private",
        };
        address
            .map(|a| a.to_string())
            .with_context(|| format!("the master {} has no {kind} address", master.id))
    }
}
