//! The self-destruct as EC2 carries it: the expiry tag and metadata
//! options at launch, the user data that arms the timer at first boot, and
//! reading or moving the tag afterwards.
//!
//! Instances launch with shutdown behaviour `terminate`, so powering off
//! ends them for good. At launch each instance gets the tag
//! [`TAG_EXPIRES_AT`] (launch time + `--ttl`) and metadata options that
//! require IMDSv2 and let it read its own tags. Its user data runs
//! [`install_script`] at first boot (cloud-init); `spotload deploy` runs the
//! same script over SSH, so it holds on AMIs without cloud-init too once
//! deployed. The expiry, the arming script and its installer are the
//! neutral [`crate::expiry`]'s, shared with the deploy. `spotload extend`
//! only moves the tag ([`Ec2::set_expiry`]); `status` reads it
//! ([`Ec2::expiries`]).

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ec2::types::{
    Filter, HttpTokensState, InstanceMetadataEndpointState, InstanceMetadataOptionsRequest,
    InstanceMetadataTagsState, LaunchTemplateHttpTokensState,
    LaunchTemplateInstanceMetadataEndpointState, LaunchTemplateInstanceMetadataOptionsRequest,
    LaunchTemplateInstanceMetadataTagsState, ResourceType, Tag, TagSpecification,
};

use super::plan::format_duration;
use super::{CloudError, Ec2, FleetName, Instance};
use crate::expiry::{install_script, ArmSettings, Expiry, TAG_EXPIRES_AT};

/// Marker line tests and operators can grep for in an instance's user data.
pub const TIMER_MARKER: &str = "# spotload self-destruct timer";

/// `spec` with the expiry tag added when it tags instances (volumes and
/// spot requests need none).
pub(crate) fn with_expiry(spec: TagSpecification, expiry: Expiry) -> TagSpecification {
    if spec.resource_type() != Some(&ResourceType::Instance) {
        return spec;
    }
    let mut tags = spec.tags().to_vec();
    tags.push(expiry_tag(expiry));
    TagSpecification::builder()
        .resource_type(ResourceType::Instance)
        .set_tags(Some(tags))
        .build()
}

fn expiry_tag(expiry: Expiry) -> Tag {
    Tag::builder()
        .key(TAG_EXPIRES_AT)
        .value(expiry.to_string())
        .build()
}

/// RunInstances metadata options: IMDSv2 only, and the instance's tags
/// readable under `/latest/meta-data/tags/instance/`.
pub(crate) fn metadata_options() -> InstanceMetadataOptionsRequest {
    InstanceMetadataOptionsRequest::builder()
        .http_endpoint(InstanceMetadataEndpointState::Enabled)
        .http_tokens(HttpTokensState::Required)
        .instance_metadata_tags(InstanceMetadataTagsState::Enabled)
        .build()
}

/// The same options for a launch template (the worker fleet's).
pub(crate) fn template_metadata_options() -> LaunchTemplateInstanceMetadataOptionsRequest {
    LaunchTemplateInstanceMetadataOptionsRequest::builder()
        .http_endpoint(LaunchTemplateInstanceMetadataEndpointState::Enabled)
        .http_tokens(LaunchTemplateHttpTokensState::Required)
        .instance_metadata_tags(LaunchTemplateInstanceMetadataTagsState::Enabled)
        .build()
}

/// The user data every instance boots with: installs and arms the
/// self-destruct (cloud-init runs user data that starts with `#!`). The
/// launch's expiry is the fallback while the tag cannot be read.
pub fn self_destruct_script(fleet: &FleetName, expiry: Expiry, ttl: Duration) -> String {
    format!(
        "#!/bin/sh\n\
         {TIMER_MARKER}: fleet {fleet}, expires at {expiry} (ttl {ttl}).\n\
         # Shutdown behaviour is terminate: the power-off at the instance's\n\
         # {TAG_EXPIRES_AT} tag ends the instance. Re-armed at every boot.\n\
         {install}",
        ttl = format_duration(ttl),
        install = install_script(&ArmSettings::default(), Some(expiry)),
    )
}

/// The script base64-encoded, as RunInstances and launch templates take it.
pub fn encoded(fleet: &FleetName, expiry: Expiry, ttl: Duration) -> String {
    aws_smithy_types::base64::encode(self_destruct_script(fleet, expiry, ttl))
}

/// An expiry tag as found on an instance: the time, or the text that is
/// not one.
pub type TagValue = Result<Expiry, String>;

/// EC2 takes at most this many values in one filter, and ids in one call.
const BATCH: usize = 100;

impl Ec2 {
    /// True when this talks to AWS itself, not to an EC2-compatible
    /// endpoint (`--endpoint-url` or `AWS_ENDPOINT_URL[_EC2]`: moto,
    /// LocalStack), whose instances have no instance metadata to re-arm from.
    pub fn is_aws(&self) -> bool {
        let overridden = ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2"]
            .iter()
            .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
        !self.endpoint.contains("://") && !overridden
    }

    /// The expiry tag of each instance that has one (DescribeTags), by id.
    pub async fn expiries(
        &self,
        instances: &[Instance],
    ) -> Result<BTreeMap<String, TagValue>, CloudError> {
        let ids: Vec<String> = instances.iter().map(|i| i.id.clone()).collect();
        let mut found = BTreeMap::new();
        for chunk in ids.chunks(BATCH) {
            let action = format!("DescribeTags ({TAG_EXPIRES_AT} of {})", chunk.join(" "));
            let mut pages = self
                .ec2
                .describe_tags()
                .filters(
                    Filter::builder()
                        .name("resource-id")
                        .set_values(Some(chunk.to_vec()))
                        .build(),
                )
                .filters(Filter::builder().name("key").values(TAG_EXPIRES_AT).build())
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|err| self.sdk_error(&action, err))?;
                for tag in page.tags() {
                    let (Some(id), Some(TAG_EXPIRES_AT)) = (tag.resource_id(), tag.key()) else {
                        continue;
                    };
                    let value = tag.value().unwrap_or_default();
                    let parsed = Expiry::parse(value).ok_or_else(|| value.to_string());
                    found.insert(id.to_string(), parsed);
                }
            }
        }
        Ok(found)
    }

    /// Sets every instance's expiry tag to `expiry` (CreateTags replaces a
    /// tag's value). The instances' timers pick it up within a minute.
    pub async fn set_expiry(&self, ids: &[String], expiry: Expiry) -> Result<(), CloudError> {
        for chunk in ids.chunks(BATCH) {
            let action = format!(
                "CreateTags ({TAG_EXPIRES_AT}={expiry} on {})",
                chunk.join(" ")
            );
            self.ec2
                .create_tags()
                .set_resources(Some(chunk.to_vec()))
                .tags(expiry_tag(expiry))
                .send()
                .await
                .map_err(|err| self.sdk_error(&action, err))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expiry::ARMING_SCRIPT;

    fn demo() -> FleetName {
        FleetName::parse("demo").unwrap()
    }

    /// What RunInstances carries: the tag on instances only, and metadata
    /// options that let the instance read it through IMDSv2.
    #[test]
    fn launch_requests_carry_the_tag_and_metadata_tags() {
        let expiry = Expiry::at(1_748_788_200);
        let instance = TagSpecification::builder()
            .resource_type(ResourceType::Instance)
            .tags(Tag::builder().key("spotload:fleet").value("demo").build())
            .build();
        let tagged = with_expiry(instance, expiry);
        let tags: Vec<(&str, &str)> = tagged
            .tags()
            .iter()
            .map(|t| (t.key().unwrap(), t.value().unwrap()))
            .collect();
        assert_eq!(
            tags,
            [
                ("spotload:fleet", "demo"),
                (TAG_EXPIRES_AT, "2025-06-01T14:30:00Z")
            ]
        );
        let volume = TagSpecification::builder()
            .resource_type(ResourceType::Volume)
            .build();
        assert!(with_expiry(volume, expiry).tags().is_empty());

        let options = metadata_options();
        assert_eq!(
            options.instance_metadata_tags(),
            Some(&InstanceMetadataTagsState::Enabled)
        );
        assert_eq!(options.http_tokens(), Some(&HttpTokensState::Required));
        let template = template_metadata_options();
        assert_eq!(
            template.instance_metadata_tags(),
            Some(&LaunchTemplateInstanceMetadataTagsState::Enabled)
        );
        assert_eq!(
            template.http_tokens(),
            Some(&LaunchTemplateHttpTokensState::Required)
        );
    }

    #[test]
    fn user_data_installs_the_script_and_seeds_the_launch_expiry() {
        let expiry = Expiry::at(1_748_788_200);
        let script = self_destruct_script(&demo(), expiry, Duration::from_secs(7200));
        assert!(script.starts_with("#!/bin/sh\n"));
        assert!(script.contains(TIMER_MARKER));
        assert!(script.contains("expires at 2025-06-01T14:30:00Z (ttl 2h)"));
        assert!(script.contains(ARMING_SCRIPT));
        assert!(script.contains("systemctl enable spotload-expiry.timer"));
        assert!(script.ends_with(
            "SPOTLOAD_EXPIRES_AT=2025-06-01T14:30:00Z /opt/spotload/expiry/spotload-expiry check\n"
        ));
        // No shutdown(8) timer, so no /run/nologin before the end.
        assert!(!script.contains("shutdown -h +"), "{script}");
        // EC2 refuses user data above 16 KiB.
        assert!(script.len() < 16 * 1024, "{} bytes", script.len());
    }

    #[test]
    fn encoding_round_trips() {
        let expiry = Expiry::at(1_748_788_200);
        let encoded = encoded(&demo(), expiry, Duration::from_secs(600));
        let decoded = aws_smithy_types::base64::decode(&encoded).unwrap();
        assert_eq!(
            String::from_utf8(decoded).unwrap(),
            self_destruct_script(&demo(), expiry, Duration::from_secs(600))
        );
    }
}
