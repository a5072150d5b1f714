//! `spotload extend`: move the fleet's self-destruct. Every instance's
//! `spotload:expires-at` tag gets the new time (CreateTags), is read back
//! to confirm it, and each instance's timer re-reads its tag within a
//! minute; nothing is done over SSH.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use clap::Args;

use super::aws::AwsArgs;
use crate::cloud::plan::{format_duration, parse_duration, PlanError, MAX_TTL};
use crate::expiry::{unix_now, Expiry, TAG_EXPIRES_AT};

/// The shortest `--ttl`, as launch's.
const MIN_TTL: Duration = Duration::from_secs(60);

/// Move the fleet's self-destruct to --ttl from now: every instance's
/// spotload:expires-at tag is set, and each instance's timer follows its
/// tag within a minute.
#[derive(Debug, Args)]
pub struct ExtendArgs {
    /// Which fleet, and how to reach AWS.
    #[command(flatten)]
    pub aws: AwsArgs,
    /// The new self-destruct, counted from now, as launch's --ttl (e.g.
    /// 90m, 2h, 1h30m; 1m to 7d). Shorter than what is left brings it
    /// forward.
    #[arg(long, value_name = "DURATION")]
    pub ttl: String,
}

impl ExtendArgs {
    /// Tags every live instance of the fleet with the new expiry, confirms
    /// it, and prints it; fails naming the instances that did not take it.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let ttl = ttl(&self.ttl)?;
        let name = self.aws.fleet_name()?;
        let ec2 = self.aws.connect().await?;
        let region = ec2.region().to_string();
        let instances = ec2.describe(&name).await?;
        if instances.is_empty() {
            bail!(
                "fleet {name} in {region} has no instances: nothing to extend \
                 (`spotload launch --fleet {name} --ttl {}` starts one)",
                format_duration(ttl)
            );
        }
        let expiry = Expiry::after(unix_now(), ttl);
        let ids: Vec<String> = instances.iter().map(|i| i.id.clone()).collect();
        eprintln!(
            "setting {TAG_EXPIRES_AT}={expiry} on {} instances of fleet {name}",
            ids.len()
        );
        ec2.set_expiry(&ids, expiry).await?;
        let tags = ec2.expiries(&instances).await?;
        let missed: Vec<String> = ids
            .iter()
            .filter(|id| tags.get(*id) != Some(&Ok(expiry)))
            .cloned()
            .collect();
        if !missed.is_empty() {
            bail!(
                "{TAG_EXPIRES_AT} still does not read {expiry} on {}: run `spotload extend \
                 --fleet {name} --ttl {}` again",
                missed.join(" "),
                self.ttl
            );
        }
        println!(
            "fleet {name} in {region}: self-destruct moved to {expiry} ({}) on all {} instances",
            expiry.left_text(unix_now()),
            ids.len()
        );
        println!(
            "each instance follows its tag within a minute; `spotload status --fleet {name}` \
             shows the time left"
        );
        Ok(ExitCode::SUCCESS)
    }
}

/// `--ttl` in the one duration grammar, bounded as launch's is.
fn ttl(value: &str) -> Result<Duration, PlanError> {
    let ttl = parse_duration(value).ok_or_else(|| PlanError::Duration {
        flag: "--ttl",
        value: value.to_string(),
    })?;
    if ttl < MIN_TTL || ttl > MAX_TTL {
        return Err(PlanError::DurationRange {
            flag: "--ttl",
            value: value.to_string(),
            min: format_duration(MIN_TTL),
            max: format_duration(MAX_TTL),
        });
    }
    Ok(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_takes_launch_s_grammar_and_bounds() {
        assert_eq!(ttl("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(ttl("7d"), Ok(MAX_TTL));
        assert_eq!(
            ttl("30s").unwrap_err().to_string(),
            "--ttl 30s: must be between 1m and 7d"
        );
        assert_eq!(
            ttl("8d").unwrap_err().to_string(),
            "--ttl 8d: must be between 1m and 7d"
        );
        assert_eq!(
            ttl("forever").unwrap_err().to_string(),
            "--ttl \"forever\": give a duration like 90s, 15m, 2h or 1h30m"
        );
    }
}
