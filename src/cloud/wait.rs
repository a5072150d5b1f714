//! Waiting on instances: every wait has an explicit time limit, reports
//! progress while it lasts, and names what it was still waiting for when
//! the limit runs out.

use std::time::{Duration, Instant};

use super::plan::format_duration;
use super::{CloudError, Ec2, Instance, Role};

/// First pause between polls; doubles up to [`POLL_MAX`] so a slow boot does
/// not turn into a stream of API calls.
const POLL_MIN: Duration = Duration::from_millis(500);
const POLL_MAX: Duration = Duration::from_secs(5);
/// Repeat an unchanged progress line this often, so a long wait looks alive.
const PROGRESS_EVERY: Duration = Duration::from_secs(15);

/// States from which an instance never comes back to `running`.
const GONE_STATES: [&str; 4] = ["shutting-down", "terminated", "stopping", "stopped"];

/// What one poll found: done, still waiting (one description per instance),
/// or failed for good.
type Check = Result<Vec<String>, CloudError>;

impl Ec2 {
    /// Waits until every expected instance runs and has its private address
    /// (a public one, where the subnet gives it, comes with `running`). An
    /// instance that dies on the way (spot capacity) fails the wait at once.
    pub(crate) async fn wait_running(
        &self,
        expected: &[(Role, String)],
        limit: Duration,
    ) -> Result<Vec<Instance>, CloudError> {
        let ids: Vec<String> = expected.iter().map(|(_, id)| id.clone()).collect();
        let what = format!("{} instances to run", ids.len());
        self.poll(&what, &ids, limit, |found| running(expected, found))
            .await
    }

    /// Waits until every instance is terminated (or gone from the API).
    pub(crate) async fn wait_terminated(
        &self,
        ids: &[String],
        limit: Duration,
    ) -> Result<(), CloudError> {
        let what = format!("{} instances to terminate", ids.len());
        self.poll(&what, ids, limit, terminated).await.map(drop)
    }

    async fn poll(
        &self,
        what: &str,
        ids: &[String],
        limit: Duration,
        check: impl Fn(&[Instance]) -> Check,
    ) -> Result<Vec<Instance>, CloudError> {
        let started = Instant::now();
        let deadline = started + limit;
        let mut pause = POLL_MIN;
        let mut last: Option<(String, Instant)> = None;
        loop {
            let found = self.describe_ids(ids).await?;
            let pending = check(&found)?;
            if pending.is_empty() {
                return Ok(found);
            }
            let line = format!("waiting for {what}: {}", pending.join(", "));
            let stale = last
                .as_ref()
                .is_none_or(|(text, at)| *text != line || at.elapsed() >= PROGRESS_EVERY);
            if stale {
                let waited = format_duration(Duration::from_secs(started.elapsed().as_secs()));
                super::progress(format!("{line} ({waited} of {})", format_duration(limit)));
                last = Some((line, Instant::now()));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(CloudError::Timeout {
                    what: what.to_string(),
                    limit: format_duration(limit),
                    pending: pending.join(", "),
                });
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(POLL_MAX);
        }
    }
}

/// Which expected instances are not yet running with an address, or the
/// first one that was lost.
fn running(expected: &[(Role, String)], found: &[Instance]) -> Check {
    let mut pending = Vec::new();
    for (role, id) in expected {
        let Some(instance) = found.iter().find(|i| &i.id == id) else {
            pending.push(format!("{role} {id} (not visible yet)"));
            continue;
        };
        if GONE_STATES.contains(&instance.state.as_str()) {
            return Err(CloudError::InstanceLost {
                role: *role,
                id: id.clone(),
                state: instance.state.clone(),
                reason: instance
                    .state_reason
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default(),
            });
        }
        if instance.state != "running" {
            pending.push(format!("{role} {id} ({})", instance.state));
        } else if instance.private_ip.is_none() {
            pending.push(format!("{role} {id} (no address yet)"));
        }
    }
    Ok(pending)
}

/// Instances not yet terminated; ones the API no longer shows are gone.
fn terminated(found: &[Instance]) -> Check {
    Ok(found
        .iter()
        .filter(|i| i.state != "terminated")
        .map(|i| format!("{} {} ({})", i.role_name(), i.id, i.state))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(id: &str, state: &str, private: Option<&str>) -> Instance {
        Instance {
            id: id.into(),
            role: Some(Role::Worker),
            instance_type: "t3.micro".into(),
            lifecycle: "spot".into(),
            state: state.into(),
            state_reason: Some("Server.SpotInstanceTermination".into()),
            public_ip: None,
            public_dns: None,
            private_ip: private.map(|p| p.parse().unwrap()),
            launched_at: None,
            availability_zone: None,
            spot_request_id: None,
            key_name: None,
        }
    }

    #[test]
    fn running_needs_state_and_address() {
        let expected = vec![
            (Role::Master, "i-1".to_string()),
            (Role::Worker, "i-2".to_string()),
            (Role::Worker, "i-3".to_string()),
        ];
        let found = vec![
            instance("i-1", "running", Some("10.0.0.1")),
            instance("i-2", "pending", None),
        ];
        let pending = running(&expected, &found).unwrap();
        assert_eq!(
            pending,
            vec!["worker i-2 (pending)", "worker i-3 (not visible yet)"]
        );
        let all = vec![
            instance("i-1", "running", Some("10.0.0.1")),
            instance("i-2", "running", Some("10.0.0.2")),
            instance("i-3", "running", Some("10.0.0.3")),
        ];
        assert!(running(&expected, &all).unwrap().is_empty());
    }

    #[test]
    fn a_lost_instance_is_named_with_its_role() {
        let expected = vec![(Role::Worker, "i-9".to_string())];
        let found = vec![instance("i-9", "terminated", None)];
        let err = running(&expected, &found).unwrap_err().to_string();
        assert_eq!(
            err,
            "worker instance i-9 was lost while booting: it is terminated \
             (Server.SpotInstanceTermination)"
        );
    }

    #[test]
    fn terminated_ignores_gone_instances() {
        let found = vec![
            instance("i-1", "terminated", None),
            instance("i-2", "shutting-down", None),
        ];
        assert_eq!(
            terminated(&found).unwrap(),
            vec!["worker i-2 (shutting-down)"]
        );
    }
}
