//! `spotload status`: the fleet as the cloud sees it, found by tags alone,
//! with each instance's time left before its self-destruct and what the
//! fleet has cost so far and will have cost by then.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::aws::AwsArgs;
use crate::cloud::cost::{by_role, Cost, RoleCost};
use crate::cloud::plan::format_duration;
use crate::cloud::userdata::TagValue;
use crate::cloud::{Fleet, Instance};
use crate::expiry::{Expiry, TAG_EXPIRES_AT};

/// Show every instance of the fleet with role, type, lifecycle, state,
/// addresses, uptime, time left before its self-destruct and its cost so
/// far; then the spend so far and at expiry per role and in total (from
/// the spot price history).
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Which fleet, and how to reach AWS.
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Print JSON (one object per instance) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// What status shows beside EC2's own view of each instance.
struct Extras {
    /// By index, as the instances.
    costs: Vec<Option<Cost>>,
    /// By instance id; absent when the instance has no expiry tag.
    expiries: BTreeMap<String, TagValue>,
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
        let extras = Extras {
            costs: ec2.estimate_costs(instances, now).await?,
            expiries: ec2.expiries(instances).await?,
        };
        let leftovers = match fleet {
            Some(_) => String::new(),
            None => ec2.leftovers(&name).await?,
        };
        let region = ec2.region().to_string();
        if self.json {
            print_json(instances, &extras, now)?;
            return Ok(ExitCode::SUCCESS);
        }
        let Some(fleet) = fleet else {
            println!("fleet {name} in {region}: no instances");
            if !leftovers.is_empty() {
                println!("left over: {leftovers}; `spotload destroy --fleet {name}` removes them");
            }
            return Ok(ExitCode::SUCCESS);
        };
        print_fleet(&fleet, &extras, now);
        Ok(ExitCode::SUCCESS)
    }
}

fn print_fleet(fleet: &Fleet, extras: &Extras, now: i64) {
    println!(
        "fleet {} in {}: {} instances, security group {}, key pair {}",
        fleet.name,
        fleet.region,
        fleet.instances.len(),
        fleet.security_group_id,
        fleet.key.name
    );
    print!("{}", status_table(&fleet.instances, extras, now));
    println!(
        "{}",
        self_destruct_line(&fleet.instances, &extras.expiries, now)
    );
    println!(
        "  `spotload extend --fleet {} --ttl DURATION` moves it",
        fleet.name
    );
    print!(
        "{}",
        cost_table(&by_role(
            &fleet.instances,
            &extras.costs,
            &extras.expiries,
            now
        ))
    );
    if let Some(key) = &fleet.key.private_key {
        println!("private key: {}", key.display());
    }
}

/// "self-destruct: 2025-06-01T14:30:00Z (in 1h29m) on all 5 instances",
/// or the earliest and latest, and the instances without a valid tag.
fn self_destruct_line(
    instances: &[Instance],
    expiries: &BTreeMap<String, TagValue>,
    now: i64,
) -> String {
    let valid: Vec<Expiry> = instances
        .iter()
        .filter_map(|i| expiries.get(&i.id).and_then(|t| t.as_ref().ok().copied()))
        .collect();
    let show = |e: Expiry| format!("{e} ({})", e.left_text(now));
    let mut line = match (valid.iter().min(), valid.iter().max()) {
        (Some(first), Some(last)) if first == last && valid.len() == instances.len() => {
            format!(
                "self-destruct: {} on all {} instances",
                show(*first),
                valid.len()
            )
        }
        (Some(first), Some(last)) if first == last => {
            format!(
                "self-destruct: {} on {} instances",
                show(*first),
                valid.len()
            )
        }
        (Some(first), Some(last)) => format!(
            "self-destruct: from {} to {} on {} instances",
            show(*first),
            show(*last),
            valid.len()
        ),
        _ => "self-destruct: unknown".to_string(),
    };
    let unarmed: Vec<String> = instances
        .iter()
        .filter_map(|i| match expiries.get(&i.id) {
            None => Some(format!("{} (no tag)", i.id)),
            Some(Err(text)) => Some(format!("{} ({text:?} is no time)", i.id)),
            Some(Ok(_)) => None,
        })
        .collect();
    if !unarmed.is_empty() {
        line.push_str(&format!(
            "; WARNING: no valid {TAG_EXPIRES_AT} on {}",
            unarmed.join(", ")
        ));
    }
    line
}

/// The per-role spend, or a line saying why there is none.
fn cost_table(rows: &[RoleCost]) -> String {
    let priced = rows.last().map_or(0, |total| total.priced);
    if priced == 0 {
        return "cost: no estimate (no spot price history for these instances)\n".into();
    }
    let money = |usd: f64| format!("${usd:.4}");
    let mut table = vec![vec![
        "ROLE".to_string(),
        "INSTANCES".into(),
        "PER HOUR".into(),
        "SO FAR".into(),
        "AT EXPIRY".into(),
    ]];
    for row in rows {
        let count = if row.priced == row.instances {
            row.instances.to_string()
        } else {
            format!("{} ({} priced)", row.instances, row.priced)
        };
        table.push(vec![
            row.label.to_string(),
            count,
            money(row.hourly),
            money(row.so_far),
            row.at_expiry.map_or("-".into(), money),
        ]);
    }
    format!(
        "cost, estimated from the spot price history of each type and zone \
         (at expiry: the current price until then; instances only):\n{}",
        render(table)
    )
}

fn print_json(instances: &[Instance], extras: &Extras, now: i64) -> anyhow::Result<()> {
    let rows: Vec<serde_json::Value> = instances
        .iter()
        .zip(&extras.costs)
        .map(|(instance, cost)| {
            let mut row = serde_json::to_value(instance)?;
            let expiry = extras.expiries.get(&instance.id);
            let valid = expiry.and_then(|t| t.as_ref().ok().copied());
            row["expires_at"] = match expiry {
                Some(Ok(e)) => serde_json::json!(e.to_string()),
                Some(Err(text)) => serde_json::json!(text),
                None => serde_json::Value::Null,
            };
            row["seconds_left"] = serde_json::json!(valid.map(|e| e.seconds_left(now)));
            row["estimated_cost_usd"] = serde_json::json!(cost.map(|c| c.so_far));
            row["hourly_price_usd"] = serde_json::json!(cost.map(|c| c.hourly));
            row["projected_cost_usd"] = serde_json::json!(match (cost, valid) {
                (Some(c), Some(e)) => Some(c.at_expiry(now, e.unix())),
                _ => None,
            });
            Ok(row)
        })
        .collect::<Result<_, serde_json::Error>>()?;
    println!("{}", serde_json::to_string_pretty(&rows)?);
    Ok(())
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_now() -> i64 {
    crate::expiry::unix_now()
}

/// The instance table `launch` prints; a COST column (so far) when `costs`
/// is given (one entry per instance).
pub(crate) fn instance_table(
    instances: &[Instance],
    costs: Option<&[Option<f64>]>,
    now: i64,
) -> String {
    let mut header = base_header();
    if costs.is_some() {
        header.push("COST".into());
    }
    let mut rows = vec![header];
    for (index, i) in instances.iter().enumerate() {
        let mut row = base_row(i, now);
        if let Some(costs) = costs {
            let cost = costs.get(index).copied().flatten();
            row.push(cost.map_or("-".to_string(), |c| format!("${c:.4}")));
        }
        rows.push(row);
    }
    render(rows)
}

/// The instance table `status` prints: time left before each instance's
/// self-destruct and its cost so far after the common columns.
fn status_table(instances: &[Instance], extras: &Extras, now: i64) -> String {
    let mut header = base_header();
    header.extend(["EXPIRES".into(), "COST".into()]);
    let mut rows = vec![header];
    for (index, i) in instances.iter().enumerate() {
        let mut row = base_row(i, now);
        row.push(match extras.expiries.get(&i.id) {
            Some(Ok(expiry)) => expiry.left_text(now),
            Some(Err(_)) => "bad tag".into(),
            None => "-".into(),
        });
        let cost = extras.costs.get(index).copied().flatten();
        row.push(cost.map_or("-".to_string(), |c| format!("${:.4}", c.so_far)));
        rows.push(row);
    }
    render(rows)
}

fn base_header() -> Vec<String> {
    [
        "ROLE",
        "INSTANCE",
        "TYPE",
        "LIFECYCLE",
        "STATE",
        "PUBLIC",
        "PRIVATE",
        "UPTIME",
    ]
    .iter()
    .map(std::string::ToString::to_string)
    .collect()
}

fn base_row(i: &Instance, now: i64) -> Vec<String> {
    let address = |a: Option<std::net::IpAddr>| a.map_or("-".to_string(), |a| a.to_string());
    vec![
        i.role_name().to_string(),
        i.id.clone(),
        i.instance_type.clone(),
        i.lifecycle.clone(),
        i.state.clone(),
        address(i.public_ip),
        address(i.private_ip),
        i.launched_at.map_or("-".to_string(), |at| uptime(now - at)),
    ]
}

/// Columns padded to their widest cell, two spaces apart.
fn render(rows: Vec<Vec<String>>) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
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
            private_ip: Some("10.0.0.5".parse().unwrap()),
            launched_at: Some(1000),
            availability_zone: None,
            ..Instance::sample("i-1", Some(Role::Worker))
        };
        let table = instance_table(&[instance], Some(&[Some(0.01234)]), 1000 + 3725);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("ROLE    INSTANCE  TYPE"), "{table}");
        assert!(lines[1].contains("  -  "), "{table}");
        assert!(lines[1].contains("1h2m"), "{table}");
        assert!(lines[1].ends_with("$0.0123"), "{table}");
    }

    fn worker(id: &str) -> Instance {
        Instance::sample(id, Some(Role::Worker))
    }

    #[test]
    fn status_shows_time_left_and_cost_per_instance() {
        let instances = [worker("i-1"), worker("i-2"), worker("i-3")];
        let mut expiries = BTreeMap::new();
        expiries.insert("i-1".to_string(), Ok(Expiry::at(7200)));
        expiries.insert("i-2".to_string(), Err("soon".to_string()));
        let cost = Cost {
            so_far: 0.0125,
            hourly: 0.0125,
        };
        let extras = Extras {
            costs: vec![Some(cost), None, Some(cost)],
            expiries,
        };
        let table = status_table(&instances, &extras, 3600);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].ends_with("UPTIME  EXPIRES  COST"), "{table}");
        assert!(lines[1].ends_with("1h      in 1h    $0.0125"), "{table}");
        assert!(lines[2].ends_with("bad tag  -"), "{table}");
        assert!(lines[3].ends_with("-        $0.0125"), "{table}");

        let line = self_destruct_line(&instances, &extras.expiries, 3600);
        assert_eq!(
            line,
            "self-destruct: 1970-01-01T02:00:00Z (in 1h) on 1 instances; WARNING: no valid \
             spotload:expires-at on i-2 (\"soon\" is no time), i-3 (no tag)"
        );
        let all = BTreeMap::from([
            ("i-1".to_string(), Ok(Expiry::at(7200))),
            ("i-2".to_string(), Ok(Expiry::at(7200))),
            ("i-3".to_string(), Ok(Expiry::at(7200))),
        ]);
        assert_eq!(
            self_destruct_line(&instances, &all, 3600),
            "self-destruct: 1970-01-01T02:00:00Z (in 1h) on all 3 instances"
        );
    }

    #[test]
    fn cost_table_has_a_row_per_role_and_a_total() {
        let rows = [
            RoleCost {
                label: "worker",
                instances: 2,
                priced: 1,
                so_far: 0.5,
                hourly: 0.25,
                at_expiry: Some(1.0),
            },
            RoleCost {
                label: "total",
                instances: 2,
                priced: 1,
                so_far: 0.5,
                hourly: 0.25,
                at_expiry: None,
            },
        ];
        let table = cost_table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("cost, estimated from the spot price history"));
        assert_eq!(
            lines[1],
            "ROLE    INSTANCES     PER HOUR  SO FAR   AT EXPIRY"
        );
        assert_eq!(lines[2], "worker  2 (1 priced)  $0.2500   $0.5000  $1.0000");
        assert_eq!(lines[3], "total   2 (1 priced)  $0.2500   $0.5000  -");
        let none = RoleCost {
            priced: 0,
            ..rows[1].clone()
        };
        assert!(cost_table(&[none]).starts_with("cost: no estimate"));
    }
}
