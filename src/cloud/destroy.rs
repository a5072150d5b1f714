//! `destroy`: removes everything tagged for a fleet, from tags alone.
//!
//! Order matters: open spot requests are cancelled and instant EC2 Fleets
//! deleted first (so nothing relaunches), then instances terminate and are
//! waited for, then the security group (which EC2 keeps while instances hold
//! it), the key pair and launch templates go. Each removal treats "already
//! gone" as done, so a second run is a no-op, and one failure does not stop
//! the others.
//!
//! EC2 is eventually consistent: right after a launch, TerminateInstances
//! may answer `InvalidInstanceID.NotFound` for the whole batch, and
//! DeleteSecurityGroup `InvalidGroup.NotFound`. A refused batch is retried
//! one id at a time; "not found" is believed only once DescribeInstances or
//! DescribeSecurityGroups agrees, and retried with backoff until then.
//! Whatever is still there at the end is listed by id in the error.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::access::{CONSISTENCY_LIMIT, CONSISTENCY_PAUSE, CONSISTENCY_PAUSE_MAX};
use super::{progress, CloudError, Ec2, FleetName, StateDir};

/// EC2 takes at most this many ids in one terminate or cancel call.
const IDS_PER_CALL: usize = 100;
/// DeleteFleets takes at most this many instant fleets in one call.
const FLEETS_PER_CALL: usize = 25;
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
    /// Instant EC2 Fleets deleted (`fleet-...`).
    pub fleets: Vec<String>,
    /// Local files removed from the state directory.
    pub local_files: Vec<PathBuf>,
    /// One line per removal that failed.
    pub problems: Vec<String>,
    /// What is still there after the problems, by id ("instances i-1 i-2,
    /// security group sg-1"); empty when nothing is.
    pub left: String,
}

impl DestroyReport {
    /// True when there was nothing to remove in the cloud.
    pub fn removed_nothing(&self) -> bool {
        self.instances.is_empty()
            && self.spot_requests.is_empty()
            && self.security_groups.is_empty()
            && self.key_pairs.is_empty()
            && self.launch_templates.is_empty()
            && self.fleets.is_empty()
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
        add("deleted", "EC2 fleets", &self.fleets);
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
    pub fleets: Vec<String>,
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
                left: report.left,
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
        let fleets = union(&resources.fleets, &known.fleets);
        match self.delete_fleets(&fleets).await {
            Ok(()) => report.fleets = fleets,
            Err(err) => report.problems.push(err.to_string()),
        }
        let tagged_ids: Vec<String> = tagged.iter().map(|i| i.id.clone()).collect();
        let instances = union(&tagged_ids, &known.instances);
        let problems_before = report.problems.len();
        let terminated = self.terminate(&instances, &mut report.problems).await;
        if !terminated.is_empty() {
            let limit = deadline.saturating_duration_since(Instant::now());
            if let Err(err) = self.wait_terminated(&terminated, limit).await {
                report.problems.push(err.to_string());
            }
        }
        let instances_gone = report.problems.len() == problems_before;
        report.instances = terminated;
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
        if !report.problems.is_empty() {
            report.left = self.what_is_left(fleet, &known).await;
        }
        Ok(report)
    }

    /// Everything of the fleet still there, by id, for the error that says
    /// so: tagged or known instances not terminated, and tagged resources.
    async fn what_is_left(&self, fleet: &FleetName, known: &Known) -> String {
        let mut parts = Vec::new();
        let tagged = self.describe(fleet).await;
        let known_live = self.describe_ids(&known.instances).await;
        match (tagged, known_live) {
            (Ok(tagged), Ok(known_live)) => {
                let ids: BTreeSet<String> = tagged
                    .iter()
                    .chain(known_live.iter().filter(|i| i.state != "terminated"))
                    .map(|i| format!("{} ({})", i.id, i.state))
                    .collect();
                if !ids.is_empty() {
                    let ids: Vec<String> = ids.into_iter().collect();
                    parts.push(format!("instances {}", ids.join(" ")));
                }
            }
            (Err(err), _) | (_, Err(err)) => {
                parts.push(format!("instances unknown ({err})"));
            }
        }
        match self.resources(fleet).await {
            Ok(resources) if !resources.is_empty() => parts.push(resources.summary()),
            Ok(_) => {}
            Err(err) => parts.push(format!("other resources unknown ({err})")),
        }
        let groups: Vec<&String> = known
            .security_groups
            .iter()
            .filter(|g| !parts.iter().any(|p| p.contains(g.as_str())))
            .collect();
        for group in groups {
            if self.group_visible(group).await.unwrap_or(true) {
                parts.push(format!("security group {group}"));
            }
        }
        if parts.is_empty() {
            "nothing".into()
        } else {
            parts.join(", ")
        }
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

    /// Deletes instant EC2 Fleets (terminating their instances, as EC2
    /// requires for instant fleets); an id EC2 no longer knows is done.
    async fn delete_fleets(&self, ids: &[String]) -> Result<(), CloudError> {
        for chunk in ids.chunks(FLEETS_PER_CALL) {
            let action = format!("DeleteFleets ({})", chunk.join(" "));
            let answer = self
                .ec2
                .delete_fleets()
                .set_fleet_ids(Some(chunk.to_vec()))
                .terminate_instances(true)
                .send()
                .await
                .map_err(|err| self.sdk_error(&action, err))?;
            let failed: Vec<String> = answer
                .unsuccessful_fleet_deletions()
                .iter()
                .filter_map(|item| {
                    let error = item.error()?;
                    let code = error.code().map_or("UnknownError", |c| c.as_str());
                    (code != "fleetIdDoesNotExist").then(|| {
                        format!(
                            "{} {code}: {}",
                            item.fleet_id().unwrap_or("?"),
                            error.message().unwrap_or("no message")
                        )
                    })
                })
                .collect();
            if !failed.is_empty() {
                return Err(CloudError::Unexpected {
                    action,
                    detail: failed.join("; "),
                });
            }
            progress(format!("deleted EC2 fleets {}", chunk.join(" ")));
        }
        Ok(())
    }

    /// Asks EC2 to terminate `ids`, 100 a call; a refused batch is retried
    /// one id at a time so one bad id does not keep the others running.
    /// Returns the ids EC2 accepted (or confirmed gone); each refusal lands
    /// in `problems`.
    async fn terminate(&self, ids: &[String], problems: &mut Vec<String>) -> Vec<String> {
        let mut accepted = Vec::new();
        for chunk in ids.chunks(IDS_PER_CALL) {
            match self.terminate_call(chunk).await {
                Ok(()) => accepted.extend_from_slice(chunk),
                Err(err) => {
                    progress(format!(
                        "{err}; terminating those {} instances one at a time",
                        chunk.len()
                    ));
                    for id in chunk {
                        match self.terminate_one(id).await {
                            Ok(()) => accepted.push(id.clone()),
                            Err(err) => problems.push(err.to_string()),
                        }
                    }
                }
            }
        }
        if !accepted.is_empty() {
            progress(format!(
                "terminating {} instances: {}",
                accepted.len(),
                accepted.join(" ")
            ));
        }
        accepted
    }

    async fn terminate_call(&self, ids: &[String]) -> Result<(), CloudError> {
        self.ec2
            .terminate_instances()
            .set_instance_ids(Some(ids.to_vec()))
            .send()
            .await
            .map_err(|err| self.sdk_error(format!("TerminateInstances ({})", ids.join(" ")), err))
            .map(drop)
    }

    /// Terminates one instance. `InvalidInstanceID.NotFound` is believed
    /// only when DescribeInstances shows the instance terminated (or EC2
    /// keeps not knowing it for [`CONSISTENCY_LIMIT`]); until then the
    /// call is retried with backoff.
    async fn terminate_one(&self, id: &str) -> Result<(), CloudError> {
        let deadline = Instant::now() + CONSISTENCY_LIMIT;
        let mut pause = CONSISTENCY_PAUSE;
        let ids = [id.to_string()];
        loop {
            let err = match self.terminate_call(&ids).await {
                Ok(()) => return Ok(()),
                Err(err) => err,
            };
            if err.code() != Some("InvalidInstanceID.NotFound") {
                return Err(err);
            }
            let seen = self.describe_ids(&ids).await?;
            if seen.iter().any(|i| i.state == "terminated") {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let detail = if seen.is_empty() {
                    "DescribeInstances does not show it either"
                } else {
                    "DescribeInstances still shows it"
                };
                return Err(CloudError::Unexpected {
                    action: format!("TerminateInstances ({id})"),
                    detail: format!(
                        "EC2 kept answering InvalidInstanceID.NotFound for {} ({detail})",
                        super::plan::format_duration(CONSISTENCY_LIMIT)
                    ),
                });
            }
            progress(format!(
                "instance {id} is not visible to TerminateInstances yet; retrying in {}ms",
                pause.as_millis()
            ));
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(CONSISTENCY_PAUSE_MAX);
        }
    }

    /// Deletes a group, retrying while terminated instances still hold it.
    /// `InvalidGroup.NotFound` counts as gone once DescribeSecurityGroups
    /// agrees: right after creation it can mean "not visible yet".
    async fn delete_group(&self, group: &str, deadline: Instant) -> Result<(), CloudError> {
        let mut pause = CONSISTENCY_PAUSE;
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
                Some("InvalidGroup.NotFound") => {
                    if !self.group_visible(group).await? {
                        return Ok(());
                    }
                    if Instant::now() >= deadline {
                        return Err(err);
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(CONSISTENCY_PAUSE_MAX);
                }
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
