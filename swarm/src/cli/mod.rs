//! The `loadtest` command line: `loadtest master` and `loadtest worker`,
//! with Locust's flag names wherever Locust has one.
//!
//! A load test crate's `main` hands its scenarios to [`main`]; everything
//! else (protocol, web UI, headless runs) comes from here.

pub mod flags;
mod headless;
mod lifecycle;
mod master;
pub mod parse;
mod ramp;
mod scenarios;
mod serve_file;
mod summary;
mod worker;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::shutdown::Shutdown;

pub use lifecycle::Expect;
pub use master::MasterArgs;
pub use ramp::{
    conclude as conclude_ramp, drive as drive_ramp, prepare_report_dir, RAMP_AFTER_HELP,
};
pub use scenarios::{user_classes, IntoScenarios, ScenarioBuilder, ScenarioOptions};
pub use summary::print_summary;
pub use worker::WorkerArgs;

/// A distributed goose load test, driven like Locust: a master with a web UI
/// (or headless) and workers that generate the load.
#[derive(Debug, Parser)]
#[command(name = "loadtest", version, about)]
struct Cli {
    /// More logging (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Coordinate workers, serve the web UI on :8089, or run headless.
    Master(Box<MasterArgs>),
    /// Join a master and generate load with goose.
    Worker(WorkerArgs),
    /// Serve the deploy's binary to the fleet's hosts for a while (used by `spotload deploy`).
    #[command(hide = true)]
    ServeFile(serve_file::ServeFileArgs),
}

/// Runs the `loadtest` command line with the load test's scenarios
/// function: `fn scenarios(options: &ScenarioOptions) -> Vec<Scenario>`,
/// or one returning a `Result` that uses `?` on goose's and
/// [`crate::locust`]'s builders (see [`IntoScenarios`]); its error ends the process before any port opens,
/// printed with what to fix.
pub fn main<R: IntoScenarios + 'static>(scenarios: fn(&ScenarioOptions) -> R) -> ExitCode {
    let build = ScenarioBuilder::new(scenarios);
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return refused(&err),
    };
    init_logging(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = Shutdown::new();
    let result = runtime.block_on(async move {
        shutdown
            .watch_signals()
            .context("cannot watch for SIGINT and SIGTERM")?;
        match cli.command {
            Command::Master(args) => args.run(&build, shutdown).await,
            Command::Worker(args) => args.run(&build, shutdown).await,
            Command::ServeFile(args) => args.run(shutdown).await,
        }
    });
    // Goose's user tasks may still be winding down; do not wait for them.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints clap's answer to a command line it refused (or `--help`), with
/// where a worker's option goes when the master was given one, and says
/// how the process exits (2 for a refused line).
fn refused(err: &clap::Error) -> ExitCode {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let _ = err.print();
    if err.kind() == ErrorKind::UnknownArgument {
        if let Some(ContextValue::String(arg)) = err.get(ContextKind::InvalidArg) {
            if let Some(hint) = flags::worker_flag_hint(arg) {
                eprintln!("\nnote: {hint}");
            }
        }
    }
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
        _ => ExitCode::from(2),
    }
}

/// The log target of the certificate verifier the users' HTTPS uses.
const CERT_VERIFIER_TARGET: &str = "rustls_platform_verifier";

/// Logs go to stderr; `RUST_LOG` overrides the level chosen by `-v`.
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        // goose warns about stale metrics after every stop: expected here.
        0 => "info,goose=error",
        1 => "debug,goose=info",
        _ => "trace",
    };
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // The platform verifier logs an ERROR for every certificate it refuses:
    // one per request against an untrusted target. The worker says it once
    // with a count instead (worker/failure_log), unless RUST_LOG asks for
    // the verifier's own lines by name.
    let named = std::env::var("RUST_LOG").is_ok_and(|v| v.contains(CERT_VERIFIER_TARGET));
    if !named {
        if let Ok(off) = format!("{CERT_VERIFIER_TARGET}=off").parse() {
            filter = filter.add_directive(off);
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
