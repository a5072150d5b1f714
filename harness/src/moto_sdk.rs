//! AWS SDK clients for a [`Moto`] server, and the EC2 queries the cloud
//! tests make to check what the `spotload` binary did.
//!
//! Behind the `aws` feature: only the `spotload` package's tests need the
//! AWS SDK crates.

use std::collections::BTreeSet;

use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::types::{Filter, Instance, SecurityGroup};

use crate::moto::Moto;

/// The tag spotload puts on everything it creates.
pub const FLEET_TAG: &str = "spotload:fleet";

/// A client of SDK crate `$sdk` for moto at `$url`: us-east-1, moto's
/// test credentials. (Each SDK has its own `Config` type.)
macro_rules! moto_client {
    ($sdk:ident, $url:expr) => {
        $sdk::Client::from_conf(
            $sdk::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .endpoint_url($url)
                .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
                .build(),
        )
    };
}

impl Moto {
    /// An EC2 client pointed at this server.
    pub fn ec2(&self) -> aws_sdk_ec2::Client {
        moto_client!(aws_sdk_ec2, self.url())
    }

    /// An SSM client pointed at this server.
    pub fn ssm(&self) -> aws_sdk_ssm::Client {
        moto_client!(aws_sdk_ssm, self.url())
    }
}

// What moto holds, asked through the SDK: the checks tests make.

/// The value of the instance's tag `key` (e.g. [`FLEET_TAG`]), `None`
/// when the instance lacks that tag.
pub fn tag<'a>(instance: &'a Instance, key: &str) -> Option<&'a str> {
    instance
        .tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

/// A `Describe*` filter matching `name` (e.g. `tag:spotload:fleet`,
/// `group-name`) against the single `value`.
pub fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

/// The fleet's instances that are not terminated, by tag.
pub async fn live_instances(ec2: &aws_sdk_ec2::Client, fleet: &str) -> Vec<Instance> {
    let answer = ec2
        .describe_instances()
        .filters(filter(&format!("tag:{FLEET_TAG}"), fleet))
        .send()
        .await
        .expect("DescribeInstances");
    answer
        .reservations()
        .iter()
        .flat_map(aws_sdk_ec2::types::Reservation::instances)
        .filter(|i| {
            i.state()
                .and_then(|s| s.name())
                .map(aws_sdk_ec2::types::InstanceStateName::as_str)
                != Some("terminated")
        })
        .cloned()
        .collect()
}

/// The ids of the fleet's instances that are not terminated, by tag.
pub async fn live_instance_ids(ec2: &aws_sdk_ec2::Client, fleet: &str) -> Vec<String> {
    live_instances(ec2, fleet)
        .await
        .iter()
        .filter_map(|i| i.instance_id().map(String::from))
        .collect()
}

/// The data of the first version moto lists of launch template `name`:
/// what spotload asked EC2 for when it made the template.
pub async fn template_data(
    ec2: &aws_sdk_ec2::Client,
    name: &str,
) -> aws_sdk_ec2::types::ResponseLaunchTemplateData {
    let versions = ec2
        .describe_launch_template_versions()
        .launch_template_name(name)
        .send()
        .await
        .expect("DescribeLaunchTemplateVersions");
    versions.launch_template_versions()[0]
        .launch_template_data()
        .expect("template data")
        .clone()
}

/// The security group named `name` in moto, `None` when spotload has not
/// created it (or has deleted it).
pub async fn group_named(ec2: &aws_sdk_ec2::Client, name: &str) -> Option<SecurityGroup> {
    let answer = ec2
        .describe_security_groups()
        .filters(filter("group-name", name))
        .send()
        .await
        .expect("DescribeSecurityGroups");
    answer.security_groups().first().cloned()
}

/// Whether moto holds an EC2 key pair called `name`, e.g. to check that
/// spotload created its key, or removed it on teardown.
pub async fn key_pair_exists(ec2: &aws_sdk_ec2::Client, name: &str) -> bool {
    let answer = ec2
        .describe_key_pairs()
        .filters(filter("key-name", name))
        .send()
        .await
        .expect("DescribeKeyPairs");
    !answer.key_pairs().is_empty()
}

/// The group's ingress as "tcp PORT from SOURCE" lines.
pub fn ingress(group: &SecurityGroup) -> BTreeSet<String> {
    let mut rules = BTreeSet::new();
    for p in group.ip_permissions() {
        let proto = p.ip_protocol().unwrap_or("?");
        let ports = match (p.from_port(), p.to_port()) {
            (Some(a), Some(b)) if a == b => a.to_string(),
            (a, b) => format!("{a:?}-{b:?}"),
        };
        let sources = p
            .ip_ranges()
            .iter()
            .filter_map(|r| r.cidr_ip())
            .chain(p.ipv6_ranges().iter().filter_map(|r| r.cidr_ipv6()))
            .chain(p.user_id_group_pairs().iter().filter_map(|g| g.group_id()));
        for source in sources {
            rules.insert(format!("{proto} {ports} from {source}"));
        }
    }
    rules
}

/// The user data of instance `id`, base64-decoded to the text (the
/// boot script) spotload launched it with.
pub async fn user_data(ec2: &aws_sdk_ec2::Client, id: &str) -> String {
    let answer = ec2
        .describe_instance_attribute()
        .instance_id(id)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
        .send()
        .await
        .expect("DescribeInstanceAttribute userData");
    let encoded = answer
        .user_data()
        .and_then(|v| v.value())
        .unwrap_or_default();
    let bytes = aws_smithy_types::base64::decode(encoded).expect("user data is base64");
    String::from_utf8(bytes).expect("user data is text")
}

/// Instance `id`'s `InstanceInitiatedShutdownBehavior`, e.g.
/// `"terminate"` or `"stop"`; empty when moto reports none.
pub async fn shutdown_behaviour(ec2: &aws_sdk_ec2::Client, id: &str) -> String {
    let answer = ec2
        .describe_instance_attribute()
        .instance_id(id)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::InstanceInitiatedShutdownBehavior)
        .send()
        .await
        .expect("DescribeInstanceAttribute shutdown behaviour");
    answer
        .instance_initiated_shutdown_behavior()
        .and_then(|v| v.value())
        .unwrap_or_default()
        .to_string()
}

/// Everything tagged for `fleet` that moto still holds, as one line per
/// kind; empty when nothing is.
pub async fn leftovers(ec2: &aws_sdk_ec2::Client, fleet: &str) -> Vec<String> {
    let by_tag = || filter(&format!("tag:{FLEET_TAG}"), fleet);
    let groups = ec2.describe_security_groups().filters(by_tag()).send();
    let keys = ec2.describe_key_pairs().filters(by_tag()).send();
    let templates = ec2.describe_launch_templates().filters(by_tag()).send();
    let mut left = Vec::new();
    note(&mut left, "instances", &live_instance_ids(ec2, fleet).await);
    let groups = groups.await.expect("DescribeSecurityGroups");
    note(&mut left, "groups", groups.security_groups());
    let keys = keys.await.expect("DescribeKeyPairs");
    note(&mut left, "key pairs", keys.key_pairs());
    let templates = templates.await.expect("DescribeLaunchTemplates");
    note(&mut left, "templates", templates.launch_templates());
    note(&mut left, "EC2 fleets", &live_fleets(ec2, fleet).await);
    left
}

/// Adds "WHAT [items]" to `left` when there are `items`.
fn note<T: std::fmt::Debug>(left: &mut Vec<String>, what: &str, items: &[T]) {
    if !items.is_empty() {
        left.push(format!("{what} {items:?}"));
    }
}

/// EC2 Fleets tagged for `fleet` and not deleted.
pub async fn live_fleets(ec2: &aws_sdk_ec2::Client, fleet: &str) -> Vec<String> {
    let answer = ec2.describe_fleets().send().await.expect("DescribeFleets");
    answer
        .fleets()
        .iter()
        .filter(|f| {
            f.tags()
                .iter()
                .any(|t| t.key() == Some(FLEET_TAG) && t.value() == Some(fleet))
        })
        .filter(|f| {
            !f.fleet_state()
                .is_some_and(|s| s.as_str().starts_with("deleted"))
        })
        .filter_map(|f| f.fleet_id().map(String::from))
        .collect()
}
