//! The fleet's roles — webserver, master, worker — the vocabulary that
//! both [`crate::cloud`] (instances tagged by role) and [`crate::remote`]
//! (what each host is set up as) speak, so neither depends on the other.

use std::fmt;

/// The port the master serves the `loadtest` binary on to the other hosts
/// during a deploy (`loadtest serve-file`), open only inside the fleet.
pub const SHIP_PORT: u16 = 5558;

use serde::{Deserialize, Serialize};

/// What an instance does in the load test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Nginx, the system under test.
    Webserver,
    /// The swarm master with the web UI on :8089.
    Master,
    /// Load generators that join the master on :5557.
    Worker,
}

impl Role {
    /// Every role, in launch and deploy order.
    pub const ALL: [Role; 3] = [Role::Webserver, Role::Master, Role::Worker];

    /// The `spotload:role` tag value.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Webserver => "webserver",
            Role::Master => "master",
            Role::Worker => "worker",
        }
    }

    /// The role a `spotload:role` tag value names; `None` for anything else.
    pub fn from_tag(value: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == value)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
