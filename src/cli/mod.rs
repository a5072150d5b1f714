//! Command definitions: one file per subcommand. Doc comments are the help.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod aws;
pub mod deploy;
pub mod destroy;
pub mod extend;
mod hosts;
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
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// `spotload`'s subcommands. A variant's doc comment becomes the subcommand's
/// help in place of its `Args` struct's doc, so most repeat that doc word for
/// word.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole fleet on this machine: a target web server, a master
    /// with the web UI and N workers. Ctrl-C stops everything it started.
    Local(Box<local::LocalArgs>),
    /// Launch a spot fleet: 1 webserver, 1 master and N workers, each role its
    /// own size, in one security group, with a self-destruct timer. A failed
    /// launch removes whatever it created.
    Launch(Box<launch::LaunchArgs>),
    /// Show every instance of the fleet with role, type, lifecycle, state,
    /// addresses, uptime, time left before its self-destruct and its cost so
    /// far; then the spend so far and at expiry per role and in total (from
    /// the spot price history).
    Status(status::StatusArgs),
    /// Move the fleet's self-destruct to --ttl from now: every instance's
    /// spotload:expires-at tag is set, and each instance's timer follows its
    /// tag within a minute.
    Extend(extend::ExtendArgs),
    /// Terminate every instance tagged for the fleet and wait until they are
    /// gone, cancel open spot requests, delete the security group and the key
    /// pair spotload created. Works without the fleet file; safe to repeat.
    Destroy(destroy::DestroyArgs),
    /// Deploy nginx (webserver), `loadtest master` and `loadtest worker` over
    /// SSH, check that every worker joined, and print the web UI address.
    ///
    /// Without --inventory: uses the fleet's running instances, launching the
    /// fleet first when none exists (the launch options apply then). With
    /// --inventory FILE: deploys onto the hosts listed there, no EC2 involved;
    /// one host per line, `ADDRESS[:PORT] USER KEY ROLE [PRIVATE_ADDRESS]`.
    /// Running deploy again replaces the binary and restarts everything.
    Deploy(Box<deploy::DeployArgs>),
    /// Run a headless ramp on the deployed fleet through its master: step the
    /// users START:STEP:MAX until requests fail, print the step table and the
    /// failure threshold, write ramp.json/csv/html.
    ///
    /// The master is --master URL, else the master of --inventory FILE, else
    /// the fleet's master instance (found by tags, like `spotload status`).
    Ramp(Box<ramp::RampArgs>),
}

impl Cli {
    /// Runs the chosen subcommand to completion (on the binary's one runtime).
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Local(args) => args.run().await,
            Command::Launch(args) => args.run().await,
            Command::Status(args) => args.run().await,
            Command::Extend(args) => args.run().await,
            Command::Destroy(args) => args.run().await,
            Command::Deploy(args) => args.run().await,
            Command::Ramp(args) => args.run().await,
        }
    }
}
