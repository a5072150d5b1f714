//! An estimate of what each spot instance has cost so far, from the spot
//! price history of its type and availability zone since it launched.
//! Spot billing is per second at the price in effect, so the estimate is the
//! price curve integrated over the instance's uptime.

use std::collections::BTreeMap;

use aws_sdk_ec2::primitives::DateTime;
use aws_sdk_ec2::types::InstanceType;

use super::{CloudError, Ec2, Instance};

/// A price in USD per hour, in effect from a time (Unix seconds) on.
pub(crate) type PricePoint = (i64, f64);

impl Ec2 {
    /// USD spent so far per instance, `None` where no estimate can be made
    /// (on-demand, no launch time, or no price history).
    pub async fn estimate_costs(
        &self,
        instances: &[Instance],
        now: i64,
    ) -> Result<Vec<Option<f64>>, CloudError> {
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
                integrate(history, instance.launched_at?, now)
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

#[cfg(test)]
mod tests {
    use super::*;

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
