//! `spotload destroy`: remove everything tagged for the fleet.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::aws::{runtime, AwsArgs};
use crate::cloud::plan::parse_duration;

/// Terminate every instance tagged for the fleet and wait until they are
/// gone, cancel open spot requests, delete the security group and the key
/// pair spotload created. Works without the fleet file; safe to repeat.
#[derive(Debug, Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    pub aws: AwsArgs,
    /// How long to wait for instances to terminate.
    #[arg(long, default_value = "10m", value_name = "DURATION")]
    pub wait_timeout: String,
}

impl DestroyArgs {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let fleet = self.aws.fleet_name()?;
        let state = self.aws.state()?;
        let limit = parse_duration(&self.wait_timeout)
            .filter(|d| !d.is_zero())
            .with_context(|| {
                format!(
                    "--wait-timeout {:?}: give a duration like 90s, 10m or 1h",
                    self.wait_timeout
                )
            })?;
        let (region, report) = runtime()?.block_on(async {
            let ec2 = self.aws.connect().await?;
            eprintln!("destroying fleet {fleet} in {}", ec2.region());
            let report = ec2.destroy(&fleet, &state, limit).await?;
            anyhow::Ok((ec2.region().to_string(), report))
        })?;
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
