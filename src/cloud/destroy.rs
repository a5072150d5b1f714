//! `destroy`: removes everything tagged for a fleet, from tags alone.
//!
//! Order matters: open spot requests are cancelled first (so nothing
//! relaunches), then instances terminate and are waited for, then the
//! security group (which EC2 keeps while instances hold it), the key pair and
//! launch templates go. Each removal treats "already gone" as done, so a
//! second run is a no-op, and one failure does not stop the others.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{progress, CloudError, Ec2, FleetName, StateDir};

/// EC2 takes at most this many ids in one terminate or cancel call.
const IDS_PER_CALL: usize = 100;
/// Pause between attempts to delete a group still held by terminating instances.
const GROUP_RETRY: Duration = Duration::from_secs(5);

/// What a destroy (or a launch's rollback) removed, and what it could not.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DestroyReport {
    /// Instances asked to terminate, by id (`i-...`).
    pub instances: Vec<String>,
    /// Spot instance requests cancelled, so none relaunches (`sir-...`).
    pub spot_requests: Vec<String>,
    /// Security groups deleted (`sg-...`).
    pub security_groups: Vec<String>,
    /// Key pairs deleted, by name: only those spotload created carry the tag.
    pub key_pairs: Vec<String>,
    /// Launch templates deleted (`lt-...`), left by multi-type worker launches.
    pub launch_templates: Vec<String>,
    /// Local files removed from the state directory.
    pub local_files: Vec<PathBuf>,
    /// One line per removal that failed.
    pub problems: Vec<String>,
}

impl DestroyReport {
    /// True when there was nothing to remove in the cloud.
    pub fn removed_nothing(&self) -> bool {
        self.instances.is_empty()
            && self.spot_requests.is_empty()
            && self.security_groups.is_empty()
            && self.key_pairs.is_empty()
            && self.launch_templates.is_empty()
    }

    /// "terminated 2 instances (i-1 i-2), deleted security group sg-1, ..."
    pub fn summary(&self) -> String {
        if self.removed_nothing() {
            return "nothing to remove".into();
        }
        let mut parts = Vec::new();
        let mut add = |verb: &str, what: &str, ids: &[String]| {
            if !ids.is_empty() {
                parts.push(format!("{verb} {what} {}", ids.join(" ")));
            }
        };
        add("terminated", "instances", &self.instances);
        add("cancelled", "spot requests", &self.spot_requests);
        add("deleted", "security group", &self.security_groups);
        add("deleted", "key pair", &self.key_pairs);
        add("deleted", "launch template", &self.launch_templates);
        parts.join(", ")
    }
}

/// Resources a launch knows it created, removed even if their tags are missing.
#[derive(Debug, Default, Clone)]
pub(crate) struct Known {
    pub instances: Vec<String>,
    pub security_groups: Vec<String>,
    pub key_pairs: Vec<String>,
    pub launch_templates: Vec<String>,
}

fn union(a: &[String], b: &[String]) -> Vec<String> {
    a.iter()
        .chain(b)
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

impl Ec2 {
    /// Removes every resource tagged for `fleet`, waiting up to `limit` for
    /// instances to terminate, then forgets the fleet's local state.
    pub async fn destroy(
        &self,
        fleet: &FleetName,
        state: &StateDir,
        limit: Duration,
    ) -> Result<DestroyReport, CloudError> {
        let mut report = self.tear_down(fleet, Known::default(), limit).await?;
        if !report.problems.is_empty() {
            return Err(CloudError::Incomplete {
                fleet: fleet.to_string(),
                problems: report.problems.join("; "),
            });
        }
        report.local_files = state.forget(fleet)?;
        Ok(report)
    }

    /// The removal shared by destroy and rollback. Errors only when the fleet
    /// can't even be looked up; later failures land in `problems`.
    pub(crate) async fn tear_down(
        &self,
        fleet: &FleetName,
        known: Known,
        limit: Duration,
    ) -> Result<DestroyReport, CloudError> {
        let deadline = Instant::now() + limit;
        let tagged = self.describe(fleet).await?;
        let resources = self.resources(fleet).await?;
        let mut report = DestroyReport::default();
        let from_instances: Vec<String> = tagged
            .iter()
            .filter_map(|i| i.spot_request_id.clone())
            .collect();
        let requests = union(&resources.spot_requests, &from_instances);
        match self.cancel_spot_requests(&requests).await {
            Ok(()) => report.spot_requests = requests,
            Err(err) => report.problems.push(err.to_string()),
        }
        let tagged_ids: Vec<String> = tagged.iter().map(|i| i.id.clone()).collect();
        let instances = union(&tagged_ids, &known.instances);
        let mut instances_gone = true;
        if let Err(err) = self.terminate(&instances, deadline).await {
            report.problems.push(err.to_string());
            instances_gone = false;
        }
        report.instances = instances;
        if instances_gone {
            let groups = union(&resources.security_groups, &known.security_groups);
            for group in groups {
                match self.delete_group(&group, deadline).await {
                    Ok(()) => report.security_groups.push(group),
                    Err(err) => report.problems.push(err.to_string()),
                }
            }
        }
        for key in union(&resources.key_pairs, &known.key_pairs) {
            match self.delete_key_pair(&key).await {
                Ok(()) => report.key_pairs.push(key),
                Err(err) => report.problems.push(err.to_string()),
            }
        }
        for template in union(&resources.launch_templates, &known.launch_templates) {
            match self.delete_launch_template(&template).await {
                Ok(()) => report.launch_templates.push(template),
                Err(err) => report.problems.push(err.to_string()),
            }
        }
        Ok(report)
    }

    async fn cancel_spot_requests(&self, ids: &[String]) -> Result<(), CloudError> {
        for chunk in ids.chunks(IDS_PER_CALL) {
            self.ec2
                .cancel_spot_instance_requests()
                .set_spot_instance_request_ids(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|err| {
                    self.sdk_error(
                        format!("CancelSpotInstanceRequests ({})", chunk.join(" ")),
                        err,
                    )
                })?;
            progress(format!("cancelled spot requests {}", chunk.join(" ")));
        }
        Ok(())
    }

    async fn terminate(&self, ids: &[String], deadline: Instant) -> Result<(), CloudError> {
        if ids.is_empty() {
            return Ok(());
        }
        for chunk in ids.chunks(IDS_PER_CALL) {
            self.ec2
                .terminate_instances()
                .set_instance_ids(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|err| {
                    self.sdk_error(format!("TerminateInstances ({})", chunk.join(" ")), err)
                })?;
        }
        progress(format!(
            "terminating {} instances: {}",
            ids.len(),
            ids.join(" ")
        ));
        let limit = deadline.saturating_duration_since(Instant::now());
        self.wait_terminated(ids, limit).await
    }

    /// Deletes a group, retrying while terminated instances still hold it.
    async fn delete_group(&self, group: &str, deadline: Instant) -> Result<(), CloudError> {
        loop {
            let result = self
                .ec2
                .delete_security_group()
                .group_id(group)
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(()),
                Err(err) => self.sdk_error(format!("DeleteSecurityGroup ({group})"), err),
            };
            match err.code() {
                Some("InvalidGroup.NotFound") => return Ok(()),
                Some("DependencyViolation" | "InvalidGroup.InUse") if Instant::now() < deadline => {
                    tokio::time::sleep(GROUP_RETRY).await;
                }
                _ => return Err(err),
            }
        }
    }

    async fn delete_key_pair(&self, name: &str) -> Result<(), CloudError> {
        let result = self.ec2.delete_key_pair().key_name(name).send().await;
        match result.map_err(|err| self.sdk_error(format!("DeleteKeyPair ({name})"), err)) {
            Err(err) if err.code() != Some("InvalidKeyPair.NotFound") => Err(err),
            _ => Ok(()),
        }
    }

    async fn delete_launch_template(&self, id: &str) -> Result<(), CloudError> {
        let result = self
            .ec2
            .delete_launch_template()
            .launch_template_id(id)
            .send()
            .await;
        match result.map_err(|err| self.sdk_error(format!("DeleteLaunchTemplate ({id})"), err)) {
            Err(err) if !err.code().is_some_and(|c| c.contains("NotFound")) => Err(err),
            _ => Ok(()),
        }
    }
}
