//! `spotload destroy`: remove everything tagged for the fleet.

use std::process::ExitCode;

use clap::Args;
use swarm::cli::parse::parse_positive_time;

use super::aws::AwsArgs;

/// Terminate every instance tagged for the fleet and wait until they are
/// gone, cancel open spot requests, delete the security group and the key
/// pair spotload created. Works without the fleet file; safe to repeat.
#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// Which fleet, and how to reach AWS.
    #[command(flatten)]
    pub aws: AwsArgs,
    /// How long to wait for instances to terminate.
    #[arg(long, default_value = "10m", value_name = "DURATION", value_parser = parse_positive_time)]
    pub wait_timeout: std::time::Duration,
}

impl DestroyArgs {
    /// Destroys the fleet and prints what was removed; fails when something is
    /// left, after trying everything.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let fleet = self.aws.fleet_name()?;
        let state = self.aws.state()?;
        let ec2 = self.aws.connect().await?;
        eprintln!("destroying fleet {fleet} in {}", ec2.region());
        let report = ec2.destroy(&fleet, &state, self.wait_timeout).await?;
        let region = ec2.region().to_string();
        if report.removed_nothing() {
            println!("fleet {fleet} in {region}: nothing to destroy");
        } else {
            println!("fleet {fleet} in {region}: {}", report.summary());
        }
        for path in &report.local_files {
            println!("removed {}", path.display());
        }
        Ok(ExitCode::SUCCESS)
    }
}
