//! Who may reach the fleet: its security group and rules, its key pair, and
//! the caller's public address when no `--allow-cidr` is given.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{
    Filter, IpPermission, IpRange, Ipv6Range, KeyType, ResourceType, Tag, TagSpecification,
    UserIdGroupPair,
};

use super::plan::Cidr;
use super::{error, CloudError, Ec2, FleetName, Role, TAG_FLEET, TAG_ROLE};

/// Ports the operator reaches from `--allow-cidr`: SSH, Nginx, the swarm UI.
pub const PUBLIC_PORTS: [(i32, &str); 3] = [(22, "ssh"), (80, "http"), (8089, "swarm web ui")];
/// Port workers use to reach the master; open only inside the group.
pub const SWARM_PORT: i32 = 5557;
/// Ports open to members of the group: workers reach the master's swarm
/// port, and the webserver's Nginx at its private address (the load itself
/// never crosses `--allow-cidr`); during a deploy, hosts fetch the
/// `loadtest` binary from the master.
pub const GROUP_PORTS: [(i32, &str); 3] = [
    (80, "workers to the webserver"),
    (SWARM_PORT, "workers to master"),
    (
        crate::role::SHIP_PORT as i32,
        "hosts fetch loadtest from the master",
    ),
];
/// Learning the caller's address must not hold up a launch for long.
const PUBLIC_IP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a just-created resource may stay invisible to other calls
/// (EC2 is eventually consistent) before spotload gives up on it.
pub(crate) const CONSISTENCY_LIMIT: Duration = Duration::from_secs(60);
/// First pause before retrying a call that did not yet see a new resource;
/// it doubles up to [`CONSISTENCY_PAUSE_MAX`].
pub(crate) const CONSISTENCY_PAUSE: Duration = Duration::from_millis(500);
/// Longest pause between such retries.
pub(crate) const CONSISTENCY_PAUSE_MAX: Duration = Duration::from_secs(8);

/// A default subnet of the default VPC: one per availability zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subnet {
    /// `subnet-...`.
    pub id: String,
    /// Its zone, e.g. `us-east-1a`.
    pub zone: String,
}

/// Tags for one resource of the fleet (and its role, for instances).
pub(crate) fn tagging(
    kind: ResourceType,
    fleet: &FleetName,
    role: Option<Role>,
) -> TagSpecification {
    let mut spec = TagSpecification::builder()
        .resource_type(kind)
        .tags(Tag::builder().key(TAG_FLEET).value(fleet.as_str()).build());
    if let Some(role) = role {
        spec = spec
            .tags(Tag::builder().key(TAG_ROLE).value(role.as_str()).build())
            .tags(
                Tag::builder()
                    .key("Name")
                    .value(format!("{}-{role}", fleet.resource_name()))
                    .build(),
            );
    }
    spec.build()
}

/// The caller's public address as a /32 (or /128), from a service that
/// answers with the address as plain text.
pub(crate) async fn learn_caller_cidr(url: &str) -> Result<Cidr, CloudError> {
    let unknown = |detail: String| CloudError::PublicAddressUnknown {
        url: url.to_string(),
        detail,
    };
    let client = reqwest::Client::builder()
        .timeout(PUBLIC_IP_TIMEOUT)
        .build()
        .map_err(|err| unknown(error::root_cause(&err)))?;
    let response = client
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|err| unknown(error::root_cause(&err)))?;
    let body = response
        .text()
        .await
        .map_err(|err| unknown(error::root_cause(&err)))?;
    let addr: IpAddr = body
        .trim()
        .parse()
        .map_err(|_| unknown(format!("the answer {:?} is not an address", body.trim())))?;
    Ok(Cidr::host(addr))
}

impl Ec2 {
    /// Fails unless key pair `name` exists in this region.
    pub(crate) async fn check_key_pair(&self, name: &str) -> Result<(), CloudError> {
        let found = self
            .ec2
            .describe_key_pairs()
            .filters(Filter::builder().name("key-name").values(name).build())
            .send()
            .await
            .map_err(|err| self.sdk_error(format!("DescribeKeyPairs ({name})"), err))?;
        if found.key_pairs().is_empty() {
            return Err(CloudError::KeyPairMissing {
                name: name.to_string(),
                region: self.region.clone(),
            });
        }
        Ok(())
    }

    /// Creates the fleet's ed25519 key pair; returns its name and private key.
    pub(crate) async fn create_key_pair(
        &self,
        fleet: &FleetName,
    ) -> Result<(String, String), CloudError> {
        let name = fleet.resource_name();
        let created = self
            .ec2
            .create_key_pair()
            .key_name(&name)
            .key_type(KeyType::Ed25519)
            .tag_specifications(tagging(ResourceType::KeyPair, fleet, None))
            .send()
            .await
            .map_err(|err| self.sdk_error(format!("CreateKeyPair ({name})"), err))?;
        let material = created
            .key_material()
            .ok_or_else(|| CloudError::Unexpected {
                action: format!("CreateKeyPair ({name})"),
                detail: "the answer holds no private key".into(),
            })?;
        Ok((name, material.to_string()))
    }

    /// The default VPC's id: spotload makes no network of its own.
    pub(crate) async fn default_vpc(&self) -> Result<String, CloudError> {
        let vpcs = self
            .ec2
            .describe_vpcs()
            .filters(Filter::builder().name("is-default").values("true").build())
            .send()
            .await
            .map_err(|err| self.sdk_error("DescribeVpcs (is-default)", err))?;
        vpcs.vpcs()
            .iter()
            .find_map(|vpc| vpc.vpc_id())
            .map(str::to_string)
            .ok_or_else(|| CloudError::NoDefaultVpc {
                region: self.region.clone(),
            })
    }

    /// The default subnets of `vpc`, one per zone, sorted by zone.
    pub(crate) async fn default_subnets(&self, vpc: &str) -> Result<Vec<Subnet>, CloudError> {
        let action = format!("DescribeSubnets ({vpc}, default-for-az)");
        let mut pages = self
            .ec2
            .describe_subnets()
            .filters(Filter::builder().name("vpc-id").values(vpc).build())
            .filters(
                Filter::builder()
                    .name("default-for-az")
                    .values("true")
                    .build(),
            )
            .into_paginator()
            .send();
        let mut subnets = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| self.sdk_error(&action, err))?;
            subnets.extend(page.subnets().iter().filter_map(|s| {
                Some(Subnet {
                    id: s.subnet_id()?.to_string(),
                    zone: s.availability_zone()?.to_string(),
                })
            }));
        }
        if subnets.is_empty() {
            return Err(CloudError::Unexpected {
                action,
                detail: format!(
                    "the default VPC {vpc} has no default subnets; create one per zone with \
                     `aws ec2 create-default-subnet --availability-zone ZONE --region {}`",
                    self.region
                ),
            });
        }
        subnets.sort_by(|a, b| a.zone.cmp(&b.zone));
        Ok(subnets)
    }

    /// Whether DescribeSecurityGroups shows `group` yet (or still).
    pub(crate) async fn group_visible(&self, group: &str) -> Result<bool, CloudError> {
        let found = self
            .ec2
            .describe_security_groups()
            .filters(Filter::builder().name("group-id").values(group).build())
            .send()
            .await
            .map_err(|err| self.sdk_error(format!("DescribeSecurityGroups ({group})"), err))?;
        Ok(!found.security_groups().is_empty())
    }

    /// Creates the fleet's security group in `vpc`; returns its id.
    pub(crate) async fn create_security_group(
        &self,
        fleet: &FleetName,
        vpc: &str,
    ) -> Result<String, CloudError> {
        let name = fleet.resource_name();
        let created = self
            .ec2
            .create_security_group()
            .group_name(&name)
            .description(format!("spotload fleet {fleet}"))
            .vpc_id(vpc)
            .tag_specifications(tagging(ResourceType::SecurityGroup, fleet, None))
            .send()
            .await
            .map_err(|err| self.sdk_error(format!("CreateSecurityGroup ({name} in {vpc})"), err))?;
        created
            .group_id()
            .map(str::to_string)
            .ok_or_else(|| CloudError::Unexpected {
                action: format!("CreateSecurityGroup ({name})"),
                detail: "the answer holds no group id".into(),
            })
    }

    /// Opens 22, 80 and 8089 to `cidrs`, and 80 and 5557 to members of the
    /// group. Right after CreateSecurityGroup EC2 may answer
    /// `InvalidGroup.NotFound`: the call is retried with backoff for up to
    /// [`CONSISTENCY_LIMIT`], each time after DescribeSecurityGroups is
    /// asked whether the group shows yet.
    pub(crate) async fn authorize_fleet_access(
        &self,
        group: &str,
        cidrs: &[Cidr],
    ) -> Result<(), CloudError> {
        let listed: Vec<String> = cidrs.iter().map(Cidr::to_string).collect();
        let action = format!(
            "AuthorizeSecurityGroupIngress ({group} from {})",
            listed.join(" ")
        );
        let deadline = Instant::now() + CONSISTENCY_LIMIT;
        let mut pause = CONSISTENCY_PAUSE;
        let mut retried = false;
        loop {
            let result = self
                .ec2
                .authorize_security_group_ingress()
                .group_id(group)
                .set_ip_permissions(Some(ingress_rules(group, cidrs)))
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(()),
                Err(err) => self.sdk_error(&action, err),
            };
            match err.code() {
                // A retry after an answer that was lost on the way: the
                // rules are in.
                Some("InvalidPermission.Duplicate") if retried => return Ok(()),
                Some("InvalidGroup.NotFound") if Instant::now() < deadline => {
                    let visible = self.group_visible(group).await?;
                    super::progress(format!(
                        "security group {group} is not visible to {} yet ({}); retrying in {}ms",
                        "AuthorizeSecurityGroupIngress",
                        if visible {
                            "DescribeSecurityGroups shows it"
                        } else {
                            "DescribeSecurityGroups does not show it either"
                        },
                        pause.as_millis()
                    ));
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(CONSISTENCY_PAUSE_MAX);
                    retried = true;
                }
                _ => return Err(err),
            }
        }
    }
}

/// The group's whole ingress: nothing else is opened.
fn ingress_rules(group: &str, cidrs: &[Cidr]) -> Vec<IpPermission> {
    let mut rules: Vec<IpPermission> = PUBLIC_PORTS
        .iter()
        .map(|(port, what)| {
            let (v6, v4): (Vec<&Cidr>, Vec<&Cidr>) = cidrs.iter().partition(|c| c.is_ipv6());
            let description = format!("spotload: {what}");
            let v4 = v4.iter().map(|c| {
                IpRange::builder()
                    .cidr_ip(c.to_string())
                    .description(&description)
                    .build()
            });
            let v6 = v6.iter().map(|c| {
                Ipv6Range::builder()
                    .cidr_ipv6(c.to_string())
                    .description(&description)
                    .build()
            });
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(*port)
                .to_port(*port)
                .set_ip_ranges(Some(v4.collect()).filter(|r: &Vec<_>| !r.is_empty()))
                .set_ipv6_ranges(Some(v6.collect()).filter(|r: &Vec<_>| !r.is_empty()))
                .build()
        })
        .collect();
    rules.extend(GROUP_PORTS.iter().map(|(port, what)| {
        IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(*port)
            .to_port(*port)
            .user_id_group_pairs(
                UserIdGroupPair::builder()
                    .group_id(group)
                    .description(format!("spotload: {what}"))
                    .build(),
            )
            .build()
    }));
    rules
}
