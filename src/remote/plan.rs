//! [`DeployPlan`]: which host plays which roles, validated before any
//! connection is made (one webserver, one master, at least one worker).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use swarm::protocol::JoinSecret;

use super::arm::ArmPlan;
use super::inventory::Entry;
use super::known_hosts::KnownHosts;
use super::recipe::{TargetTrust, UiTls};
use super::shipment::Shipment;
use super::ssh::ConnectLimits;
use super::Host;
use crate::role::Role;

/// One host and everything it should run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPlan {
    /// Where to connect and how to log in.
    pub host: Host,
    /// In recipe order: webserver, master, worker.
    pub roles: Vec<Role>,
    /// How the other hosts reach this one.
    pub private_address: String,
    /// Other names and addresses it is reached under from outside (see
    /// [`Entry::public_names`]).
    pub public_names: Vec<String>,
    /// The self-destruct to arm on this host: set for a fleet's instances
    /// (by `provision::fleet_hosts`), `None` for hosts from an inventory.
    pub arm: Option<ArmPlan>,
}

impl HostPlan {
    /// `webserver`, `master+worker`, for progress lines.
    pub fn role_names(&self) -> String {
        let names: Vec<&str> = self.roles.iter().map(|r| r.as_str()).collect();
        names.join("+")
    }

    /// True when this host plays `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Every name and address a web UI on this host may be opened under,
    /// once each: where spotload connects, the public names, the private
    /// address and 127.0.0.1 (the deploy's own checks, on the host).
    pub fn ui_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        let all = std::iter::once(&self.host.address)
            .chain(&self.public_names)
            .chain(std::iter::once(&self.private_address));
        for name in all.map(String::as_str).chain(["127.0.0.1"]) {
            if !name.is_empty() && !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                names.push(name.to_string());
            }
        }
        names
    }

    /// Of [`HostPlan::ui_names`], the DNS names (not IP addresses) the
    /// master takes as `--web-allowed-host`: what its UI must be told to
    /// answer to. A name it would refuse (an underscore, say) is left out
    /// rather than stopping the master.
    pub fn ui_host_names(&self) -> Vec<String> {
        self.ui_names()
            .into_iter()
            .filter(|name| name.parse::<std::net::IpAddr>().is_err())
            .filter_map(|name| swarm::web::AllowedHosts::parse_name(&name).ok())
            .collect()
    }
}

/// Everything a deploy needs, checked.
#[derive(Debug, Clone)]
pub struct DeployPlan {
    /// Every host once, with all its roles; see [`DeployPlan::group`].
    pub hosts: Vec<HostPlan>,
    /// The `loadtest` binary shipped to master and workers, with its digest
    /// and compressed form.
    pub loadtest: Arc<Shipment>,
    /// `USER:PASS` protecting the master's web UI.
    pub web_auth: Option<String>,
    /// The secret workers present to join the master: one per deploy,
    /// written on the master and worker hosts only.
    pub join_secret: JoinSecret,
    /// The master's UI certificate and key: the UI is served over HTTPS
    /// and checked with that certificate; `None`: plain HTTP.
    pub web_tls: Option<UiTls>,
    /// The fleet's known_hosts file: host keys are learned on first contact and
    /// checked after.
    pub known_hosts: KnownHosts,
    /// How long SSH connections are retried (fresh instances refuse for a while).
    pub limits: ConnectLimits,
    /// How long the workers get to show up in the master's API.
    pub join_timeout: Duration,
    /// Extra arguments for every `loadtest worker` (how its users behave).
    pub worker_args: Vec<String>,
    /// How the users' HTTPS trusts the target: given to the master, which
    /// sends it to every worker with each spawn.
    pub target_trust: TargetTrust,
}

impl DeployPlan {
    /// Groups entries by host (address and port) and checks the roles.
    /// No host arms a self-destruct ([`HostPlan::arm`] is `None`): what an
    /// entry is on EC2 is the caller's to know.
    pub fn group(entries: Vec<Entry>) -> anyhow::Result<Vec<HostPlan>> {
        let mut hosts: Vec<HostPlan> = Vec::new();
        for entry in entries {
            let existing = hosts
                .iter_mut()
                .find(|h| h.host.address == entry.host.address && h.host.port == entry.host.port);
            match existing {
                Some(plan) if plan.host != entry.host => bail!(
                    "{} is listed with different users or keys ({} with {}, {} with {}): use one log-in per host",
                    entry.host.label(),
                    plan.host.user,
                    plan.host.key.display(),
                    entry.host.user,
                    entry.host.key.display()
                ),
                Some(plan) => plan.roles.push(entry.role),
                None => hosts.push(HostPlan {
                    host: entry.host,
                    roles: vec![entry.role],
                    private_address: entry.private_address,
                    public_names: entry.public_names,
                    arm: None,
                }),
            }
        }
        for plan in &mut hosts {
            plan.roles.sort();
        }
        let count = |role| hosts.iter().filter(|h| h.has(role)).count();
        let mut counts = BTreeMap::new();
        for role in Role::ALL {
            counts.insert(role, count(role));
        }
        let (webservers, masters, workers) = (
            counts[&Role::Webserver],
            counts[&Role::Master],
            counts[&Role::Worker],
        );
        if webservers != 1 || masters != 1 || workers == 0 {
            bail!(
                "a deploy needs exactly 1 webserver, exactly 1 master and at least 1 worker; \
                 got {webservers} webserver(s), {masters} master(s), {workers} worker(s)"
            );
        }
        Ok(hosts)
    }

    /// The host playing `role` first in the list.
    pub fn first(&self, role: Role) -> Option<&HostPlan> {
        self.hosts.iter().find(|h| h.has(role))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::inventory::parse;
    use std::path::Path;

    fn group(text: &str) -> anyhow::Result<Vec<HostPlan>> {
        DeployPlan::group(parse(text, "inv", Path::new("/k"), None).unwrap())
    }

    #[test]
    fn one_host_may_play_several_roles() {
        let hosts = group(
            "10.0.0.1 root key worker\n10.0.0.1 root key master\n10.0.0.2 root key webserver\n",
        )
        .unwrap();
        assert_eq!(hosts.len(), 2);
        assert_eq!(hosts[0].role_names(), "master+worker");
        assert!(hosts.iter().all(|h| h.arm.is_none()));
    }

    #[test]
    fn a_hosts_ui_names_are_its_addresses_public_names_and_loopback() {
        let mut hosts = group(
            "203.0.113.7 root key master\n10.0.0.2 root key webserver\n10.0.0.3 root key worker\n",
        )
        .unwrap();
        let master = &mut hosts[0];
        master.private_address = "10.0.0.1".into();
        master.public_names = vec![
            "ec2-203-0-113-7.compute-1.amazonaws.com".into(),
            "203.0.113.7".into(),
        ];
        assert_eq!(
            master.ui_names(),
            [
                "203.0.113.7",
                "ec2-203-0-113-7.compute-1.amazonaws.com",
                "10.0.0.1",
                "127.0.0.1"
            ]
        );
        assert_eq!(
            master.ui_host_names(),
            ["ec2-203-0-113-7.compute-1.amazonaws.com"]
        );
        let by_name = group(
            "ui.example root key master\nui.example root key webserver\nui.example root key worker\n",
        )
        .unwrap();
        assert_eq!(by_name[0].ui_host_names(), ["ui.example"]);
    }

    #[test]
    fn roles_are_counted_and_logins_must_agree() {
        let err = group("10.0.0.1 root key worker\n").unwrap_err().to_string();
        assert!(
            err.contains("got 0 webserver(s), 0 master(s), 1 worker(s)"),
            "{err}"
        );
        let err =
            group("10.0.0.1 root key webserver\n10.0.0.1 admin key master\n10.0.0.2 r k worker\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("different users or keys"), "{err}");
    }
}
