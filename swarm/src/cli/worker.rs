//! `loadtest worker`: join a master and generate load with goose.

use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::flags::{JoinSecretFlags, TargetTlsFlags, UserFlags};
use super::scenarios::{ScenarioBuilder, ScenarioOptions};
use crate::co_mitigation::CoMitigation;
use crate::protocol::DEFAULT_MASTER_PORT;
use crate::shutdown::Shutdown;
use crate::worker::{DriverOptions, Worker, WorkerConfig};

/// `loadtest worker`'s flags: where the master is and how to run goose.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Host or IP address of the master.
    #[arg(long, default_value = "127.0.0.1")]
    pub master_host: String,
    /// Port of the master (its --master-bind-port).
    #[arg(long, default_value_t = DEFAULT_MASTER_PORT)]
    pub master_port: u16,
    /// The secret this worker presents to join the master.
    #[command(flatten)]
    pub join_secret: JoinSecretFlags,
    /// Default target, used when the master sends no host.
    #[arg(short = 'H', long)]
    pub host: Option<String>,
    /// How the users behave.
    #[command(flatten)]
    pub users: UserFlags,
    /// Write goose's request log (one line per request) to this file.
    #[arg(long)]
    pub request_log: Option<String>,
    /// Quit after this many seconds without hearing from the master (it
    /// keeps reconnecting until then, and rejoins a restarted master).
    #[arg(long, default_value_t = 60)]
    pub master_timeout: u64,
    /// Do not watch the EC2 instance metadata for spot interruption notices
    /// (watched by default; AWS_EC2_METADATA_DISABLED=true also turns it off).
    #[arg(long)]
    pub no_spot_watch: bool,
    /// Back-fill the requests a user stalled by the target would have made
    /// (goose's coordinated omission mitigation), from the user's average,
    /// maximum or minimum cadence; the percentiles the master shows are then
    /// marked corrected. A spawn from a master run with --co-mitigation
    /// overrides it. Off by default.
    #[arg(long, value_name = "CADENCE", value_parser = CoMitigation::from_str)]
    pub co_mitigation: Option<CoMitigation>,
    /// How the users trust HTTPS targets when the master sends nothing
    /// about it (a Locust master); a spawn from a master given these flags
    /// replaces them.
    #[command(flatten)]
    pub target_tls: TargetTlsFlags,
}

impl WorkerArgs {
    /// Joins the master and generates load until it says quit, it stays
    /// silent past `--master-timeout`, or `shutdown` fires; exits 0 after a
    /// clean end, 1 otherwise.
    pub async fn run(
        self,
        build: &ScenarioBuilder,
        shutdown: Shutdown,
    ) -> anyhow::Result<ExitCode> {
        if let Some(host) = &self.host {
            crate::web::check_host(host)
                .map_err(anyhow::Error::msg)
                .context("--host")?;
        }
        let scenarios = build.build(&ScenarioOptions {
            wait: self.users.wait,
        })?;
        let target_tls = self.target_tls.load()?.unwrap_or_default();
        if target_tls.accept_invalid_certs {
            tracing::warn!("users' HTTPS accepts {} unless the master sends otherwise: for staging servers only", target_tls.describe());
        } else if target_tls.ca.is_some() {
            tracing::info!(
                "users' HTTPS trusts {} unless the master sends otherwise",
                target_tls.describe()
            );
        }
        let mut config = WorkerConfig::new(&self.master_host, self.master_port);
        config.join_secret = self.join_secret.load()?;
        config.master_timeout = Duration::from_secs(self.master_timeout.clamp(1, 86_400));
        config.driver = DriverOptions {
            host: self.host.clone(),
            request_log: self.request_log.clone(),
            shared_client: self.users.shared_client,
            co_mitigation: self.co_mitigation.map(Into::into),
            target_tls,
        };
        if !self.no_spot_watch {
            config.spot_endpoint = crate::worker::spot::endpoint_from_env();
        }
        let worker = Worker::connect(config, scenarios).await.with_context(|| {
            format!(
                "worker could not start (master {}:{})",
                self.master_host, self.master_port
            )
        })?;
        tracing::info!(
            "worker {} connecting to {}:{}",
            worker.node_id(),
            self.master_host,
            self.master_port
        );
        let exit = worker.run(shutdown).await?;
        Ok(if exit.is_clean() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}
