//! Finding a fleet in EC2 from its tags alone: its instances, and the other
//! resources spotload created for it (group, key pair, launch template,
//! spot requests).

use aws_sdk_ec2::types::{self, Filter};

use super::{
    CloudError, Ec2, Fleet, FleetKey, FleetName, Instance, Role, StateDir, TAG_FLEET, TAG_ROLE,
};

/// Every state but `terminated`: what still exists, or may still bill.
const LIVE_STATES: [&str; 5] = ["pending", "running", "shutting-down", "stopping", "stopped"];
/// EC2 takes at most this many values in one filter.
const FILTER_VALUES_MAX: usize = 100;

/// The filter that selects a fleet's resources.
pub(crate) fn fleet_filter(fleet: &FleetName) -> Filter {
    Filter::builder()
        .name(format!("tag:{TAG_FLEET}"))
        .values(fleet.as_str())
        .build()
}

fn filter(name: &str, values: &[&str]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(
            values
                .iter()
                .map(std::string::ToString::to_string)
                .collect(),
        ))
        .build()
}

/// The non-instance resources tagged for a fleet.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Resources {
    pub security_groups: Vec<String>,
    pub key_pairs: Vec<String>,
    pub launch_templates: Vec<String>,
    /// Open or active spot requests only: closed ones cost nothing.
    pub spot_requests: Vec<String>,
    /// EC2 Fleets (`fleet-...`) not yet deleted: instant fleets stay
    /// listed until deleted.
    pub fleets: Vec<String>,
}

impl Resources {
    pub fn is_empty(&self) -> bool {
        self.security_groups.is_empty()
            && self.key_pairs.is_empty()
            && self.launch_templates.is_empty()
            && self.spot_requests.is_empty()
            && self.fleets.is_empty()
    }

    /// "security group sg-1, key pair spotload-x" for messages.
    pub fn summary(&self) -> String {
        let parts = [
            ("security group", &self.security_groups),
            ("key pair", &self.key_pairs),
            ("launch template", &self.launch_templates),
            ("spot request", &self.spot_requests),
            ("EC2 fleet", &self.fleets),
        ];
        parts
            .iter()
            .filter(|(_, ids)| !ids.is_empty())
            .map(|(what, ids)| format!("{what} {}", ids.join(" ")))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Ec2 {
    /// The fleet's instances that are not terminated, found by tag; webserver
    /// first, then master, then workers.
    pub async fn describe(&self, fleet: &FleetName) -> Result<Vec<Instance>, CloudError> {
        let filters = vec![
            fleet_filter(fleet),
            filter("instance-state-name", &LIVE_STATES),
        ];
        let mut instances = self
            .describe_instances(filters, format!("DescribeInstances (fleet {fleet})"))
            .await?;
        sort(&mut instances);
        Ok(instances)
    }

    /// The instances with these ids, in any state. Ids EC2 does not show yet
    /// (just launched) are simply absent.
    pub(crate) async fn describe_ids(&self, ids: &[String]) -> Result<Vec<Instance>, CloudError> {
        let mut instances = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(FILTER_VALUES_MAX) {
            let values: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let action = format!("DescribeInstances ({})", chunk.join(" "));
            let found = self
                .describe_instances(vec![filter("instance-id", &values)], action)
                .await?;
            instances.extend(found);
        }
        sort(&mut instances);
        Ok(instances)
    }

    async fn describe_instances(
        &self,
        filters: Vec<Filter>,
        action: String,
    ) -> Result<Vec<Instance>, CloudError> {
        let mut pages = self
            .ec2
            .describe_instances()
            .set_filters(Some(filters))
            .into_paginator()
            .send();
        let mut instances = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| self.sdk_error(&action, err))?;
            let found = page
                .reservations()
                .iter()
                .flat_map(aws_sdk_ec2::types::Reservation::instances);
            instances.extend(found.map(instance_from_sdk));
        }
        Ok(instances)
    }

    /// The fleet as far as it can be known: instances and group from tags,
    /// the key from the fleet file, else from the tags and the state
    /// directory. `None` when no instance of the fleet is live.
    pub async fn find(
        &self,
        fleet: &FleetName,
        state: &StateDir,
    ) -> Result<Option<Fleet>, CloudError> {
        let instances = self.describe(fleet).await?;
        if instances.is_empty() {
            return Ok(None);
        }
        let resources = self.resources(fleet).await?;
        // The file is a convenience: unreadable is as good as absent.
        let saved = state.load(fleet).ok().flatten();
        let key = match (saved, resources.key_pairs.first()) {
            (Some(saved), _) => saved.key,
            (None, Some(created)) => FleetKey {
                name: created.clone(),
                private_key: Some(state.key_file(fleet)).filter(|path| path.exists()),
                created: true,
            },
            (None, None) => FleetKey {
                name: instances
                    .iter()
                    .find_map(|i| i.key_name.clone())
                    .unwrap_or_default(),
                private_key: None,
                created: false,
            },
        };
        Ok(Some(Fleet {
            name: fleet.clone(),
            region: self.region.clone(),
            security_group_id: resources
                .security_groups
                .first()
                .cloned()
                .unwrap_or_default(),
            key,
            instances,
            launch_template_id: resources.launch_templates.first().cloned(),
        }))
    }

    /// What besides instances is still tagged for the fleet, as a phrase
    /// ("security group sg-1, key pair spotload-demo"); empty when nothing is.
    pub async fn leftovers(&self, fleet: &FleetName) -> Result<String, CloudError> {
        Ok(self.resources(fleet).await?.summary())
    }

    /// Everything but instances that is tagged for the fleet.
    pub(crate) async fn resources(&self, fleet: &FleetName) -> Result<Resources, CloudError> {
        let groups = self
            .ec2
            .describe_security_groups()
            .filters(fleet_filter(fleet))
            .send()
            .await
            .map_err(|err| {
                self.sdk_error(format!("DescribeSecurityGroups (fleet {fleet})"), err)
            })?;
        let keys = self
            .ec2
            .describe_key_pairs()
            .filters(fleet_filter(fleet))
            .send()
            .await
            .map_err(|err| self.sdk_error(format!("DescribeKeyPairs (fleet {fleet})"), err))?;
        let templates = self
            .ec2
            .describe_launch_templates()
            .filters(fleet_filter(fleet))
            .send()
            .await
            .map_err(|err| {
                self.sdk_error(format!("DescribeLaunchTemplates (fleet {fleet})"), err)
            })?;
        Ok(Resources {
            security_groups: collect(
                groups.security_groups(),
                aws_sdk_ec2::types::SecurityGroup::group_id,
            ),
            key_pairs: collect(keys.key_pairs(), aws_sdk_ec2::types::KeyPairInfo::key_name),
            launch_templates: collect(
                templates.launch_templates(),
                aws_sdk_ec2::types::LaunchTemplate::launch_template_id,
            ),
            spot_requests: self.open_spot_requests(fleet).await?,
            fleets: self.live_fleets(fleet).await?,
        })
    }

    /// EC2 Fleets tagged for the fleet that are not deleted. DescribeFleets
    /// has no tag filter, so the tags are checked here.
    pub(crate) async fn live_fleets(&self, fleet: &FleetName) -> Result<Vec<String>, CloudError> {
        let action = format!("DescribeFleets (fleet {fleet})");
        let mut pages = self.ec2.describe_fleets().into_paginator().send();
        let mut fleets = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| self.sdk_error(&action, err))?;
            for item in page.fleets() {
                let ours = item
                    .tags()
                    .iter()
                    .any(|t| t.key() == Some(TAG_FLEET) && t.value() == Some(fleet.as_str()));
                let state = item.fleet_state().map_or("", |s| s.as_str());
                let live = !matches!(
                    state,
                    "deleted" | "deleted_running" | "deleted_terminating" | "failed"
                );
                if let (true, true, Some(id)) = (ours, live, item.fleet_id()) {
                    fleets.push(id.to_string());
                }
            }
        }
        Ok(fleets)
    }

    /// Open or active spot requests tagged for the fleet.
    pub(crate) async fn open_spot_requests(
        &self,
        fleet: &FleetName,
    ) -> Result<Vec<String>, CloudError> {
        let requests = self
            .ec2
            .describe_spot_instance_requests()
            .filters(fleet_filter(fleet))
            .filters(filter("state", &["open", "active"]))
            .send()
            .await
            .map_err(|err| {
                self.sdk_error(format!("DescribeSpotInstanceRequests (fleet {fleet})"), err)
            })?;
        Ok(collect(requests.spot_instance_requests(), |r| {
            r.spot_instance_request_id()
        }))
    }
}

fn collect<T>(items: &[T], id: impl Fn(&T) -> Option<&str>) -> Vec<String> {
    items.iter().filter_map(id).map(str::to_string).collect()
}

/// Webserver, master, workers, then untagged; by id within a role.
fn sort(instances: &mut [Instance]) {
    instances
        .sort_by(|a, b| (a.role.is_none(), a.role, &a.id).cmp(&(b.role.is_none(), b.role, &b.id)));
}

pub(crate) fn instance_from_sdk(instance: &types::Instance) -> Instance {
    let tag = |key: &str| {
        instance
            .tags()
            .iter()
            .find(|tag| tag.key() == Some(key))
            .and_then(|tag| tag.value())
    };
    Instance {
        id: instance.instance_id().unwrap_or_default().to_string(),
        role: tag(TAG_ROLE).and_then(Role::from_tag),
        instance_type: instance
            .instance_type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        lifecycle: instance
            .instance_lifecycle()
            .map_or("on-demand", |l| l.as_str())
            .to_string(),
        state: instance
            .state()
            .and_then(|s| s.name())
            .map_or("unknown", |n| n.as_str())
            .to_string(),
        state_reason: instance
            .state_reason()
            .and_then(|r| r.message().or(r.code()))
            .filter(|reason| !reason.is_empty())
            .map(str::to_string),
        public_ip: instance.public_ip_address().and_then(|a| a.parse().ok()),
        // EC2 answers "" for an instance without one.
        public_dns: instance
            .public_dns_name()
            .filter(|name| !name.is_empty())
            .map(str::to_string),
        private_ip: instance.private_ip_address().and_then(|a| a.parse().ok()),
        launched_at: instance.launch_time().map(aws_smithy_types::DateTime::secs),
        availability_zone: instance
            .placement()
            .and_then(|p| p.availability_zone())
            .map(str::to_string),
        spot_request_id: instance.spot_instance_request_id().map(str::to_string),
        key_name: instance.key_name().map(str::to_string),
    }
}
