//! Command definitions: one file per subcommand. Doc comments are the help.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod aws;
pub mod deploy;
pub mod destroy;
pub mod launch;
pub mod local;
pub mod ramp;
pub mod status;

/// Launch, deploy and drive goose load tests on EC2 spot fleets (or on this
/// machine with `spotload local`).
#[derive(Debug, Parser)]
#[command(name = "spotload", version, about)]
pub struct Cli {
    /// More logging (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole fleet on this machine: a target web server, a master
    /// with the web UI and N workers. Ctrl-C stops everything it started.
    Local(local::LocalArgs),
    Launch(Box<launch::LaunchArgs>),
    Status(status::StatusArgs),
    Destroy(destroy::DestroyArgs),
    Deploy(Box<deploy::DeployArgs>),
    Ramp(Box<ramp::RampArgs>),
}

impl Cli {
    /// Runs the chosen subcommand to completion (on the binary's one runtime).
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Local(args) => args.run().await,
            Command::Launch(args) => args.run().await,
            Command::Status(args) => args.run().await,
            Command::Destroy(args) => args.run().await,
            Command::Deploy(args) => args.run().await,
            Command::Ramp(args) => args.run().await,
        }
    }
}
