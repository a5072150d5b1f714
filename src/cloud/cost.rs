//! An estimate of what each spot instance has cost so far, and will have
//! cost at its expiry, from the spot price history (DescribeSpotPriceHistory,
//! `Linux/UNIX`) of its type and availability zone since it launched.
//! Spot billing is per second at the price in effect, so the estimate so far
//! is the price curve integrated over the instance's uptime; the projection
//! adds the latest price until the instance's `spotload:expires-at`.
//! EBS volumes and data transfer are not counted.

use std::collections::BTreeMap;

use aws_sdk_ec2::primitives::DateTime;
use aws_sdk_ec2::types::InstanceType;

use super::userdata::TagValue;
use super::{CloudError, Ec2, Instance, Role};

/// What one instance has cost and costs now, in USD.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    /// Spent from launch until now.
    pub so_far: f64,
    /// The price per hour now: the latest point of the history.
    pub hourly: f64,
}

impl Cost {
    /// Spent by `expiry` (Unix seconds): so far, plus the current price
    /// until then; just so far once it has passed.
    pub fn at_expiry(&self, now: i64, expiry: i64) -> f64 {
        let left = expiry.saturating_sub(now).max(0);
        self.so_far + self.hourly * left as f64 / 3600.0
    }
}

/// A price in USD per hour, in effect from a time (Unix seconds) on.
pub(crate) type PricePoint = (i64, f64);

impl Ec2 {
    /// What each instance has cost so far and costs now, `None` where no
    /// estimate can be made (on-demand, no launch time, or no price history).
    pub async fn estimate_costs(
        &self,
        instances: &[Instance],
        now: i64,
    ) -> Result<Vec<Option<Cost>>, CloudError> {
        // One history per type and zone, from the earliest launch among them:
        // a fleet of twenty workers costs one call, not twenty.
        let mut earliest: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        for instance in instances.iter().filter(|i| i.lifecycle == "spot") {
            if let (Some(at), Some(zone)) = (instance.launched_at, &instance.availability_zone) {
                let from = earliest
                    .entry((&instance.instance_type, zone))
                    .or_insert(at);
                *from = (*from).min(at);
            }
        }
        let mut histories = BTreeMap::new();
        for ((instance_type, zone), from) in earliest {
            let history = self.price_history(instance_type, zone, from, now).await?;
            histories.insert((instance_type, zone), history);
        }
        Ok(instances
            .iter()
            .map(|instance| {
                let zone = instance.availability_zone.as_deref()?;
                let history = histories.get(&(instance.instance_type.as_str(), zone))?;
                Some(Cost {
                    so_far: integrate(history, instance.launched_at?, now)?,
                    hourly: latest(history, now)?,
                })
            })
            .collect())
    }

    async fn price_history(
        &self,
        instance_type: &str,
        zone: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<PricePoint>, CloudError> {
        let action = format!("DescribeSpotPriceHistory ({instance_type} in {zone})");
        let mut pages = self
            .ec2
            .describe_spot_price_history()
            .instance_types(InstanceType::from(instance_type))
            .availability_zone(zone)
            .product_descriptions("Linux/UNIX")
            .start_time(DateTime::from_secs(from))
            .end_time(DateTime::from_secs(to))
            .into_paginator()
            .send();
        let mut points = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| self.sdk_error(&action, err))?;
            for entry in page.spot_price_history() {
                // Other zones can slip through endpoints that ignore the filter.
                if entry.availability_zone().is_some_and(|z| z != zone) {
                    continue;
                }
                let price = entry.spot_price().and_then(|p| p.parse::<f64>().ok());
                if let (Some(at), Some(price)) = (entry.timestamp(), price) {
                    points.push((at.secs(), price));
                }
            }
        }
        Ok(points)
    }
}

/// USD for running from `from` to `to` under a step price curve: each point's
/// price holds until the next point. Before the first point its price is
/// assumed (the history starts with the price in effect at `from`).
pub(crate) fn integrate(points: &[PricePoint], from: i64, to: i64) -> Option<f64> {
    if points.is_empty() || to <= from {
        return if points.is_empty() { None } else { Some(0.0) };
    }
    let mut sorted = points.to_vec();
    sorted.sort_by_key(|(at, _)| *at);
    let mut total = 0.0;
    for (index, (at, price)) in sorted.iter().enumerate() {
        let start = if index == 0 { from } else { (*at).max(from) };
        let end = sorted
            .get(index + 1)
            .map_or(to, |(next, _)| (*next).min(to));
        if end > start {
            total += price * (end - start) as f64 / 3600.0;
        }
    }
    Some(total)
}

/// The price in effect at `now`: the latest point not after it (the
/// earliest point when all are later).
pub(crate) fn latest(points: &[PricePoint], now: i64) -> Option<f64> {
    let before = points
        .iter()
        .filter(|(at, _)| *at <= now)
        .max_by_key(|(at, _)| *at);
    before
        .or_else(|| points.iter().min_by_key(|(at, _)| *at))
        .map(|(_, price)| *price)
}

/// The spend of one role (or of the whole fleet), in USD.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleCost {
    /// `webserver`, `master`, `worker`, `?` (no role tag) or `total`.
    pub label: &'static str,
    /// Instances in the row.
    pub instances: usize,
    /// Of those, the ones with an estimate.
    pub priced: usize,
    /// Spent so far by the priced instances.
    pub so_far: f64,
    /// Their price per hour now.
    pub hourly: f64,
    /// What they will have spent at their expiry; `None` when one of them
    /// has no (valid) expiry tag, so no end to project to.
    pub at_expiry: Option<f64>,
}

/// One row per role present, in role order, then the total. `costs` and
/// `instances` go together by index; `expiries` by instance id.
pub fn by_role(
    instances: &[Instance],
    costs: &[Option<Cost>],
    expiries: &BTreeMap<String, TagValue>,
    now: i64,
) -> Vec<RoleCost> {
    let labels = [
        Some(Role::Webserver),
        Some(Role::Master),
        Some(Role::Worker),
        None,
    ];
    let row = |label: &'static str, pick: &dyn Fn(&Instance) -> bool| {
        let mut total = RoleCost {
            label,
            instances: 0,
            priced: 0,
            so_far: 0.0,
            hourly: 0.0,
            at_expiry: Some(0.0),
        };
        for (instance, cost) in instances.iter().zip(costs) {
            if !pick(instance) {
                continue;
            }
            total.instances += 1;
            let Some(cost) = cost else { continue };
            total.priced += 1;
            total.so_far += cost.so_far;
            total.hourly += cost.hourly;
            let expiry = expiries.get(&instance.id).and_then(|tag| tag.as_ref().ok());
            total.at_expiry = match (total.at_expiry, expiry) {
                (Some(sum), Some(expiry)) => Some(sum + cost.at_expiry(now, expiry.unix())),
                _ => None,
            };
        }
        total
    };
    let mut rows: Vec<RoleCost> = labels
        .iter()
        .map(|role| {
            let label = role.map_or("?", Role::as_str);
            row(label, &|i: &Instance| i.role == *role)
        })
        .filter(|r| r.instances > 0)
        .collect();
    rows.push(row("total", &|_| true));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expiry::Expiry;

    fn instance(id: &str, role: Option<Role>) -> Instance {
        Instance::sample(id, role)
    }

    #[test]
    fn the_latest_price_is_the_one_in_effect() {
        let points = [(100, 0.2), (0, 0.1), (500, 0.3)];
        assert_eq!(latest(&points, 200), Some(0.2));
        assert_eq!(latest(&points, 500), Some(0.3));
        assert_eq!(latest(&points, -5), Some(0.1));
        assert_eq!(latest(&[], 5), None);
    }

    #[test]
    fn projection_adds_the_current_price_until_expiry() {
        let cost = Cost {
            so_far: 0.05,
            hourly: 0.10,
        };
        assert!((cost.at_expiry(3600, 3600 + 1800) - 0.10).abs() < 1e-12);
        // Past its expiry an instance costs what it has cost.
        assert!((cost.at_expiry(3600, 0) - 0.05).abs() < 1e-12);
    }

    #[test]
    fn roles_sum_and_an_untagged_instance_has_no_projection() {
        let instances = [
            instance("i-w", Some(Role::Webserver)),
            instance("i-1", Some(Role::Worker)),
            instance("i-2", Some(Role::Worker)),
            instance("i-3", Some(Role::Worker)),
        ];
        let cost = Some(Cost {
            so_far: 0.01,
            hourly: 0.02,
        });
        let costs = [cost, cost, cost, None];
        let mut expiries = BTreeMap::new();
        for id in ["i-w", "i-1", "i-3"] {
            expiries.insert(id.to_string(), Ok(Expiry::at(3600 + 3600)));
        }
        let rows = by_role(&instances, &costs, &expiries, 3600);
        let labels: Vec<&str> = rows.iter().map(|r| r.label).collect();
        assert_eq!(labels, ["webserver", "worker", "total"]);
        let webserver = &rows[0];
        assert_eq!((webserver.instances, webserver.priced), (1, 1));
        assert!((webserver.at_expiry.unwrap() - 0.03).abs() < 1e-12);
        // i-2 is priced but has no expiry: the workers' projection is unknown.
        let workers = &rows[1];
        assert_eq!((workers.instances, workers.priced), (3, 2));
        assert!((workers.so_far - 0.02).abs() < 1e-12);
        assert_eq!(workers.at_expiry, None);
        assert_eq!(rows[2].instances, 4);
        assert!((rows[2].hourly - 0.06).abs() < 1e-12);
    }

    #[test]
    fn one_price_over_an_hour() {
        let cost = integrate(&[(0, 0.10)], 1000, 1000 + 3600).unwrap();
        assert!((cost - 0.10).abs() < 1e-9, "{cost}");
    }

    #[test]
    fn price_changes_split_the_uptime() {
        // 0.10 for the first half hour, 0.20 for the second.
        let points = [(5400, 0.20), (0, 0.10)];
        let cost = integrate(&points, 3600, 7200).unwrap();
        assert!((cost - 0.15).abs() < 1e-9, "{cost}");
    }

    #[test]
    fn no_history_no_estimate() {
        assert_eq!(integrate(&[], 0, 10), None);
        assert_eq!(integrate(&[(0, 1.0)], 10, 10), Some(0.0));
    }
}
