//! `loadtest master`: coordinate workers; serve the web UI, or run headless.

use super::flags::{
    JoinSecretFlags, RampFlags, RunFlags, RunPlan, SpawnFlags, TargetTlsFlags, ThresholdFlags,
};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::lifecycle::{end_run, Expect};
use super::scenarios::{user_classes, ScenarioBuilder};
use super::summary::print_summary;
use crate::api::Credentials;
use crate::master::{check_class_names, Ended, Master, MasterConfig, MasterHandle};
use crate::protocol::transport::bind_master;
use crate::protocol::{DEFAULT_MASTER_PORT, JOIN_SECRET_ENV};
use crate::shutdown::{Reason, Shutdown};
use crate::thresholds::THRESHOLDS_FAILED;
use crate::web::{check_host, AllowedHosts, ServeOptions, WebAccess, WebAuth, WebTls};

/// `loadtest master`'s flags: where to listen for workers and the web UI,
/// and what to run.
#[derive(Debug, Args)]
#[command(after_help = super::ramp::RAMP_AFTER_HELP)]
pub struct MasterArgs {
    /// Interface the master listens on for workers.
    #[arg(long, default_value = "0.0.0.0")]
    pub master_bind_host: String,
    /// Port the master listens on for workers.
    #[arg(long, default_value_t = DEFAULT_MASTER_PORT)]
    pub master_bind_port: u16,
    /// The secret workers must present to join.
    #[command(flatten)]
    pub join_secret: JoinSecretFlags,
    /// Target, e.g. http://10.0.0.5 (the UI's host field can change it).
    #[arg(short = 'H', long, value_parser = parse_host)]
    pub host: Option<String>,
    /// Workers to wait for before a headless run starts.
    #[arg(long, default_value_t = 1)]
    pub expect_workers: usize,
    /// Seconds to wait for --expect-workers (0: forever).
    #[arg(long, default_value_t = 0)]
    pub expect_workers_max_wait: u64,
    /// Web UI or headless, and for how long.
    #[command(flatten)]
    pub run: RunFlags,
    /// How fast users start or stop.
    #[command(flatten)]
    pub spawn: SpawnFlags,
    /// How the workers' users trust HTTPS targets (sent with every spawn).
    #[command(flatten)]
    pub target_tls: TargetTlsFlags,
    /// Write PREFIX_stats.csv, PREFIX_stats_history.csv, PREFIX_failures.csv
    /// and PREFIX_exceptions.csv (at the end of a UI run too).
    #[arg(long, value_name = "PREFIX")]
    pub csv: Option<String>,
    /// Exit code when the run saw failures (a failed --threshold wins: 99).
    #[arg(long, default_value_t = 1)]
    pub exit_code_on_error: u8,
    /// Interface for the web UI.
    #[arg(long, default_value = "0.0.0.0")]
    pub web_host: IpAddr,
    /// Port for the web UI.
    #[arg(long, default_value_t = 8089)]
    pub web_port: u16,
    /// Protect the web UI with HTTP basic auth, USER:PASS.
    #[arg(long, value_name = "USER:PASS")]
    pub web_auth: Option<Credentials>,
    /// A host name the UI is opened under (repeatable). Starting, stopping
    /// or resetting a run is refused unless the browser's Host is an IP
    /// address, localhost or one of these names (DNS rebinding); reads are
    /// open to any name.
    #[arg(long = "web-allowed-host", value_name = "NAME", value_parser = AllowedHosts::parse_name)]
    pub web_allowed_hosts: Vec<String>,
    /// Serve the web UI over HTTPS with this certificate (PEM, the chain
    /// with the server's certificate first); needs --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Seconds to wait for workers to answer a stop or quit.
    #[arg(long, default_value_t = 10.0)]
    pub stop_timeout: f64,
    /// A headless ramp to find the failure threshold.
    #[command(flatten)]
    pub ramp: RampFlags,
    /// Run only these user classes (the load test's scenario names), their
    /// weights sharing the users, as Locust's class names after its flags;
    /// none: all of them.
    #[arg(value_name = "CLASS")]
    pub user_classes: Vec<String>,
    /// Pass/fail rules on the run's numbers (or each ramp step's).
    #[command(flatten)]
    pub verdicts: ThresholdFlags,
}

fn parse_host(text: &str) -> Result<String, String> {
    check_host(text)
}

impl MasterArgs {
    /// Runs the master until the run ends or `shutdown` fires, and says how
    /// the process should exit (2 for bad flags, `--exit-code-on-error` after
    /// failures).
    pub async fn run(
        self,
        build: &ScenarioBuilder,
        shutdown: Shutdown,
    ) -> anyhow::Result<ExitCode> {
        let plan = match self.plan() {
            Ok(plan) => plan,
            Err(message) => {
                eprintln!("error: {message}");
                return Ok(ExitCode::from(2));
            }
        };
        // Certificate files are checked before any port opens.
        let tls = self.web_tls()?;
        let target_tls = self.target_tls.load()?;
        let classes = user_classes(build)?;
        if let Err(why) = check_class_names(&classes, &self.user_classes) {
            eprintln!("error: user classes given after the flags: {why}");
            return Ok(ExitCode::from(2));
        }
        raise_open_file_limit();
        let secret = self.join_secret.load()?;
        let secured = secret.is_some();
        let link = bind_master(&self.master_bind_host, self.master_bind_port, secret).await?;
        let mut config = MasterConfig::new(self.host.as_deref().unwrap_or_default(), classes);
        config.stop_timeout = Duration::from_secs_f64(self.stop_timeout.clamp(0.5, 3600.0));
        config.co_mitigation = self.spawn.co_mitigation;
        if !matches!(plan, RunPlan::Ramp(_)) {
            // A ramp judges its steps by the rules itself (see its plan).
            config.thresholds = self.verdicts.config().map_err(anyhow::Error::msg)?;
        }
        config.arrival_rate = self.run.arrival_rate;
        if let Some(trust) = &target_tls {
            let how = trust.describe();
            if trust.accept_invalid_certs {
                tracing::warn!("the workers' users will accept {how}: for staging servers only");
            } else {
                tracing::info!("the workers' users will trust {how} for HTTPS targets");
            }
            config.target_tls = Some(trust.to_spawn());
        }
        config.chosen_classes = self.user_classes.clone();
        config.class_picker = self.run.class_picker;
        match &plan {
            RunPlan::Ui {
                run_time,
                test_plan,
            } => {
                // As in Locust: -t with the web UI limits the runs started there.
                config.default_run_time = *run_time;
                config.test_plan = test_plan.clone();
            }
            RunPlan::Planned(test_plan) => config.test_plan = Some(test_plan.clone()),
            RunPlan::Fixed { .. } | RunPlan::Ramp(_) => {}
        }
        let (master, handle) = Master::new(config, link);
        supervise(tokio::spawn(master.run()), shutdown.clone());
        self.announce_join_secret(secured);
        tracing::info!(
            "master listening for workers on {}:{}",
            self.master_bind_host,
            self.master_bind_port
        );
        let code = match &plan {
            RunPlan::Ramp(ramp) => {
                let local = super::ramp::Local {
                    host: self.host.clone(),
                    report_dir: self.ramp.report_dir.as_deref(),
                    expect: self.expect(),
                };
                super::ramp::run(&local, ramp, &handle, &shutdown).await?
            }
            RunPlan::Fixed {
                users,
                spawn_rate,
                run_time,
            } => {
                let fixed = super::headless::Fixed {
                    load: super::headless::Load::Users {
                        users: *users,
                        spawn_rate: *spawn_rate,
                        run_time: *run_time,
                    },
                    host: self.host.clone(),
                    csv: self.csv.as_deref(),
                    exit_code_on_error: self.exit_code_on_error,
                    expect: self.expect(),
                };
                super::headless::run(&fixed, &handle, &shutdown).await?
            }
            RunPlan::Planned(test_plan) => {
                let fixed = super::headless::Fixed {
                    load: super::headless::Load::Plan(test_plan),
                    host: self.host.clone(),
                    csv: self.csv.as_deref(),
                    exit_code_on_error: self.exit_code_on_error,
                    expect: self.expect(),
                };
                super::headless::run(&fixed, &handle, &shutdown).await?
            }
            RunPlan::Ui { .. } => self.serve_ui(&handle, tls, &shutdown).await?,
        };
        if shutdown.reason() == Some(Reason::Failure) {
            anyhow::bail!("the master stopped working (see the log above); its stats are lost");
        }
        Ok(code)
    }

    /// The flags, checked together: what this master will do.
    pub fn plan(&self) -> Result<RunPlan, String> {
        let plan = self.run.plan(&self.spawn, &self.ramp, &self.verdicts)?;
        if matches!(plan, RunPlan::Ramp(_)) && self.csv.is_some() {
            return Err(
                "--csv is for fixed runs and the web UI; a ramp writes --report-dir".into(),
            );
        }
        Ok(plan)
    }

    /// Says who may join: workers with the secret, or anyone who reaches
    /// the port (a warning unless that is only this machine).
    fn announce_join_secret(&self, secured: bool) {
        if secured {
            tracing::info!("workers must present the join secret (ZMTP PLAIN)");
            return;
        }
        let port = self.master_bind_port;
        let loopback = self
            .master_bind_host
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
            || self.master_bind_host == "localhost";
        if loopback {
            tracing::info!("no join secret: any process on this machine can join as a worker on port {port} (as with Locust)");
        } else {
            tracing::warn!("no join secret: any peer that reaches port {port} can join as a worker (as with Locust): give one with --join-secret-file FILE or {JOIN_SECRET_ENV}");
        }
    }

    /// The workers a headless run waits for (--expect-workers), how long
    /// (--expect-workers-max-wait, 0 for in effect forever), and how to
    /// start them.
    fn expect(&self) -> Expect {
        let limit = match self.expect_workers_max_wait {
            0 => Duration::from_secs(u64::MAX / 4),
            secs => Duration::from_secs(secs),
        };
        Expect {
            workers: self.expect_workers,
            limit,
            hint: format!(
                "start workers with `loadtest worker --master-host <this host> --master-port {}`, or lower --expect-workers",
                self.master_bind_port
            ),
        }
    }

    /// The UI's certificate and key, read and checked, when given.
    fn web_tls(&self) -> anyhow::Result<Option<WebTls>> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(WebTls::load(cert, key)?)),
            _ => Ok(None),
        }
    }

    async fn serve_ui(
        &self,
        handle: &MasterHandle,
        tls: Option<WebTls>,
        shutdown: &Shutdown,
    ) -> anyhow::Result<ExitCode> {
        let addr = SocketAddr::new(self.web_host, self.web_port);
        if !self.web_host.is_loopback() && self.web_auth.is_none() {
            tracing::warn!("the web UI on {addr} is reachable beyond this machine without a password: pass --web-auth USER:PASS or --web-host 127.0.0.1");
        }
        let access = WebAccess {
            auth: self.web_auth.as_ref().map(WebAuth::new),
            allowed_hosts: AllowedHosts::new(&self.web_allowed_hosts)
                .map_err(|e| anyhow::anyhow!("--web-allowed-host {e}"))?,
        };
        let app = crate::web::app(handle.clone(), access);
        let options = ServeOptions {
            tls,
            ..ServeOptions::default()
        };
        let server = crate::web::serve(addr, app, options, shutdown.clone())
            .await
            .with_context(|| {
                format!("cannot serve the web UI on {addr}: pick another --web-port")
            })?;
        let history = match &self.csv {
            Some(prefix) => Some(super::headless::keep_history(
                prefix,
                handle.clone(),
                shutdown.clone(),
            )?),
            None => None,
        };
        println!("web UI: {}", server.url());
        if let Some(run_time) = self.run.run_time {
            tracing::info!(
                "runs started from the UI stop after {run_time:?} unless the form says otherwise"
            );
        }
        shutdown.requested().await;
        // The server drains its requests in flight meanwhile.
        end_run(handle, shutdown).await;
        server.stopped().await;
        if let Some(history) = history {
            let _ = history.await;
        }
        let snapshot = handle.snapshot().await?;
        print_summary(&snapshot);
        if let Some(prefix) = &self.csv {
            super::headless::write_csvs(prefix, &snapshot)?;
        }
        // The last run's verdict, when there was a run.
        if snapshot.started_at.is_some() && snapshot.thresholds_failed() {
            eprintln!("{}", super::headless::thresholds_failed_line(&snapshot));
            return Ok(ExitCode::from(THRESHOLDS_FAILED));
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Open files below which a master warns: each worker holds a connection,
/// and the web UI and the logs need some too.
const FEW_OPEN_FILES: u64 = 4096;

/// Raises this process's open-file limit to its hard cap (as Locust does):
/// every worker holds a descriptor, and a default soft limit of 1,024
/// would cap a fleet at about a thousand workers.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if read != 0 {
        return;
    }
    let soft = limit.rlim_cur;
    if soft < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            limit.rlim_cur = soft;
        }
    }
    let open = limit.rlim_cur;
    if open < FEW_OPEN_FILES {
        tracing::warn!("this process may open only {open} files: at most about that many workers can connect; raise the limit (ulimit -Hn, LimitNOFILE= in systemd)");
    } else {
        tracing::debug!("open-file limit: {open}");
    }
}

/// Watches the master's task: if it ends while the process still runs (a
/// panic, a bug), the whole process ends with an error instead of serving a
/// UI that can only answer 503.
fn supervise(task: tokio::task::JoinHandle<Ended>, shutdown: Shutdown) {
    tokio::spawn(async move {
        let outcome = task.await;
        if shutdown.is_requested() {
            return;
        }
        match outcome {
            // The run is over and the process let go of it: not a failure.
            Ok(Ended::Released) => return,
            Ok(Ended::LinkLost) => {
                tracing::error!("the master lost its workers' socket; exiting");
            }
            Err(err) if err.is_panic() => {
                tracing::error!("the master's task panicked: {err}; exiting");
            }
            Err(err) => tracing::error!("the master's task ended: {err}; exiting"),
        }
        shutdown.trigger(Reason::Failure);
    });
}
