//! `spotload status`: the fleet as the cloud sees it, found by tags alone.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;

use super::aws::AwsArgs;
use crate::cloud::plan::format_duration;
use crate::cloud::{Fleet, Instance};

/// Show every instance of the fleet with role, type, lifecycle, state,
/// addresses, uptime and an estimated cost so far (from spot price history).
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Which fleet, and how to reach AWS.
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Print JSON (one object per instance) instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl StatusArgs {
    /// Describes the fleet by its tags and prints the table (or JSON).
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let name = self.aws.fleet_name()?;
        let state = self.aws.state()?;
        let now = unix_now();
        let ec2 = self.aws.connect().await?;
        let fleet = ec2.find(&name, &state).await?;
        let instances = fleet.as_ref().map_or(&[][..], |f| &f.instances[..]);
        let costs = ec2.estimate_costs(instances, now).await?;
        let leftovers = match fleet {
            Some(_) => String::new(),
            None => ec2.leftovers(&name).await?,
        };
        let region = ec2.region().to_string();
        if self.json {
            let instances = fleet.as_ref().map_or(&[][..], |f| &f.instances[..]);
            print_json(instances, &costs)?;
            return Ok(ExitCode::SUCCESS);
        }
        let Some(fleet) = fleet else {
            println!("fleet {name} in {region}: no instances");
            if !leftovers.is_empty() {
                println!("left over: {leftovers}; `spotload destroy --fleet {name}` removes them");
            }
            return Ok(ExitCode::SUCCESS);
        };
        print_fleet(&fleet, &costs, now);
        Ok(ExitCode::SUCCESS)
    }
}

fn print_fleet(fleet: &Fleet, costs: &[Option<f64>], now: i64) {
    println!(
        "fleet {} in {}: {} instances, security group {}, key pair {}",
        fleet.name,
        fleet.region,
        fleet.instances.len(),
        fleet.security_group_id,
        fleet.key.name
    );
    print!("{}", instance_table(&fleet.instances, Some(costs), now));
    let known: Vec<f64> = costs.iter().flatten().copied().collect();
    if !known.is_empty() {
        let total: f64 = known.iter().sum();
        println!(
            "estimated cost so far: ${total:.4} (spot price history, {} of {} instances)",
            known.len(),
            costs.len()
        );
    }
    if let Some(key) = &fleet.key.private_key {
        println!("private key: {}", key.display());
    }
}

fn print_json(instances: &[Instance], costs: &[Option<f64>]) -> anyhow::Result<()> {
    let rows: Vec<serde_json::Value> = instances
        .iter()
        .zip(costs)
        .map(|(instance, cost)| {
            let mut row = serde_json::to_value(instance)?;
            row["estimated_cost_usd"] = serde_json::json!(cost);
            Ok(row)
        })
        .collect::<Result<_, serde_json::Error>>()?;
    println!("{}", serde_json::to_string_pretty(&rows)?);
    Ok(())
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The instance table `launch` and `status` print; a COST column when
/// `costs` is given (one entry per instance).
pub(crate) fn instance_table(
    instances: &[Instance],
    costs: Option<&[Option<f64>]>,
    now: i64,
) -> String {
    let mut header = vec![
        "ROLE",
        "INSTANCE",
        "TYPE",
        "LIFECYCLE",
        "STATE",
        "PUBLIC",
        "PRIVATE",
        "UPTIME",
    ];
    if costs.is_some() {
        header.push("COST");
    }
    let mut rows = vec![header
        .iter()
        .map(std::string::ToString::to_string)
        .collect::<Vec<_>>()];
    for (index, i) in instances.iter().enumerate() {
        let address = |a: Option<std::net::IpAddr>| a.map_or("-".to_string(), |a| a.to_string());
        let mut row = vec![
            i.role_name().to_string(),
            i.id.clone(),
            i.instance_type.clone(),
            i.lifecycle.clone(),
            i.state.clone(),
            address(i.public_ip),
            address(i.private_ip),
            i.launched_at.map_or("-".to_string(), |at| uptime(now - at)),
        ];
        if let Some(costs) = costs {
            let cost = costs.get(index).copied().flatten();
            row.push(cost.map_or("-".to_string(), |c| format!("${c:.4}")));
        }
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|col| rows.iter().map(|r| r[col].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `45s`, `12m`, `3h5m`: minutes are enough past the first one.
fn uptime(secs: i64) -> String {
    let secs = u64::try_from(secs).unwrap_or(0);
    let shown = if secs < 60 { secs } else { secs - secs % 60 };
    format_duration(Duration::from_secs(shown))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::Role;

    #[test]
    fn table_aligns_and_shows_missing_values_as_dashes() {
        let instance = Instance {
            id: "i-1".into(),
            role: Some(Role::Worker),
            instance_type: "t3.micro".into(),
            lifecycle: "spot".into(),
            state: "running".into(),
            state_reason: None,
            public_ip: None,
            private_ip: Some("10.0.0.5".parse().unwrap()),
            launched_at: Some(1000),
            availability_zone: None,
            spot_request_id: None,
            key_name: None,
        };
        let table = instance_table(&[instance], Some(&[Some(0.01234)]), 1000 + 3725);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("ROLE    INSTANCE  TYPE"), "{table}");
        assert!(lines[1].contains("  -  "), "{table}");
        assert!(lines[1].contains("1h2m"), "{table}");
        assert!(lines[1].ends_with("$0.0123"), "{table}");
    }
}
