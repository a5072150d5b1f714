//! `spotload local`: the whole fleet on this machine.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::local::{self, LocalPlan};

/// Run a target web server, a master with the web UI and N workers here.
///
/// Anything after `--` goes to `loadtest master`, e.g.
/// `spotload local -- --headless -u 50 -r 10 -t 1m`.
#[derive(Debug, Args)]
pub struct LocalArgs {
    /// Worker processes to start.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: u16,
    /// Load an existing server instead of starting one (e.g. http://127.0.0.1:8080).
    #[arg(long)]
    pub target: Option<String>,
    /// Port of the web UI.
    #[arg(long, default_value_t = 8089)]
    pub web_port: u16,
    /// Port the master listens on for workers.
    #[arg(long, default_value_t = 5557)]
    pub master_port: u16,
    /// The loadtest binary (default: next to spotload, then PATH).
    #[arg(long)]
    pub loadtest_bin: Option<PathBuf>,
    /// Arguments for `loadtest master`, after `--`.
    #[arg(last = true)]
    pub master_args: Vec<String>,
}

impl LocalArgs {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        if let Some(target) = &self.target {
            swarm::web::check_host(target).map_err(anyhow::Error::msg)?;
        }
        let loadtest = match self.loadtest_bin {
            Some(path) => path,
            None => local::find_loadtest()?,
        };
        local::check_executable(&loadtest)?;
        let plan = LocalPlan {
            workers: usize::from(self.workers),
            target: self.target,
            web_port: self.web_port,
            master_port: self.master_port,
            loadtest,
            master_args: self.master_args,
        };
        let runtime = tokio::runtime::Runtime::new()?;
        let code = runtime.block_on(local::run(plan))?;
        Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
    }
}
