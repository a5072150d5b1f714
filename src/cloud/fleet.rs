//! The fleet's domain types: its name, the roles its instances play, one
//! instance as EC2 reports it, and what a launched fleet consists of.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::plan::PlanError;
use crate::role::Role;

/// Tag that marks every resource spotload creates with the fleet's name.
pub const TAG_FLEET: &str = "spotload:fleet";
/// Tag that gives each instance its role.
pub const TAG_ROLE: &str = "spotload:role";

/// Longest fleet name: it goes into resource names and the 64-character
/// client tokens that make launches safe to retry.
const MAX_NAME_LEN: usize = 32;

/// A validated fleet name: letters, digits, `-` and `_`, starting with a
/// letter or digit, at most 32 characters. Safe in tags, resource names and
/// file names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FleetName(String);

impl FleetName {
    /// Checks `name` against the rules above (`--fleet`, or a fleet file's field).
    pub fn parse(name: &str) -> Result<FleetName, PlanError> {
        let mut chars = name.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
        let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !first_ok || !rest_ok || name.len() > MAX_NAME_LEN {
            return Err(PlanError::FleetName(name.to_string()));
        }
        Ok(FleetName(name.to_string()))
    }

    /// The name as given: the value of the `spotload:fleet` tag.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Name for the security group and key pair spotload creates.
    pub fn resource_name(&self) -> String {
        format!("spotload-{}", self.0)
    }
}

impl fmt::Display for FleetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for FleetName {
    type Error = PlanError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        FleetName::parse(&value)
    }
}

impl From<FleetName> for String {
    fn from(name: FleetName) -> String {
        name.0
    }
}

/// One instance as EC2 reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// The EC2 instance id (`i-...`).
    pub id: String,
    /// `None` when the role tag is missing (someone edited the tags).
    pub role: Option<Role>,
    /// The EC2 instance type, e.g. `c5.large`.
    pub instance_type: String,
    /// `spot` or `on-demand`.
    pub lifecycle: String,
    /// EC2's state name: `pending`, `running`, `shutting-down`, ...
    pub state: String,
    /// Why EC2 says the instance is in its state (e.g. a spot interruption).
    pub state_reason: Option<String>,
    /// What this machine connects to; `None` until running, or in a subnet
    /// that gives no public addresses.
    pub public_ip: Option<IpAddr>,
    /// Its public DNS name (`ec2-203-0-113-7.compute-1.amazonaws.com`),
    /// when the VPC gives one: the master's UI is opened under it.
    #[serde(default)]
    pub public_dns: Option<String>,
    /// What the other hosts use inside the VPC (workers reach nginx and the master
    /// there).
    pub private_ip: Option<IpAddr>,
    /// Launch time, seconds since the Unix epoch.
    pub launched_at: Option<i64>,
    /// The zone it runs in, e.g. `us-east-1a`; spot prices differ per zone.
    pub availability_zone: Option<String>,
    /// The spot instance request it came from: `destroy` cancels it so nothing
    /// relaunches; `None` for on-demand instances.
    pub spot_request_id: Option<String>,
    /// The key pair the instance accepts.
    pub key_name: Option<String>,
}

#[cfg(test)]
impl Instance {
    /// A running t3.micro spot instance in us-east-1a, launched at epoch 0,
    /// with no addresses: tests change what they look at.
    pub(crate) fn sample(id: &str, role: Option<Role>) -> Instance {
        Instance {
            id: id.into(),
            role,
            instance_type: "t3.micro".into(),
            lifecycle: "spot".into(),
            state: "running".into(),
            state_reason: None,
            public_ip: None,
            public_dns: None,
            private_ip: None,
            launched_at: Some(0),
            availability_zone: Some("us-east-1a".into()),
            spot_request_id: None,
            key_name: None,
        }
    }
}

impl Instance {
    /// The role for display: `?` when the tag is missing.
    pub fn role_name(&self) -> &'static str {
        self.role.map_or("?", Role::as_str)
    }
}

/// The key pair instances accept for SSH.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetKey {
    /// The EC2 key pair name.
    pub name: String,
    /// The private key on this machine, when known.
    pub private_key: Option<PathBuf>,
    /// True when spotload created the key pair (and `destroy` deletes it).
    pub created: bool,
}

/// A launched fleet: what the fleet file records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fleet {
    /// The fleet's name, as tagged on all its resources.
    pub name: FleetName,
    /// The AWS region it runs in.
    pub region: String,
    /// The fleet's one security group (`sg-...`), which opens SSH, HTTP and the
    /// web UI to `--allow-cidr` and the master and nginx to the group's members.
    pub security_group_id: String,
    /// The key pair for SSH to every instance.
    pub key: FleetKey,
    /// Webserver first, then master, then workers.
    pub instances: Vec<Instance>,
    /// Launch template used for a multi-type worker fleet.
    pub launch_template_id: Option<String>,
}

impl Fleet {
    /// The instances playing `role`.
    pub fn with_role(&self, role: Role) -> impl Iterator<Item = &Instance> {
        self.instances
            .iter()
            .filter(move |instance| instance.role == Some(role))
    }
}
