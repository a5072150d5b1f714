//! Hosts over SSH and the deploy recipes that turn them into a load-test
//! fleet: nginx on the webserver, `loadtest master` and `loadtest worker`.
//!
//! - `host`: [`Host`] (where and as whom) and [`Shell`] (run a command);
//!   [`Local`] runs them here, [`Session`] over SSH.
//! - `ssh`: the russh [`Session`]: connect with retries, log in, exec.
//! - `known_hosts`: trust on first use into the fleet's known_hosts file.
//! - `script`: shell quoting, sudo, helper functions for step scripts.
//! - `recipe`: the steps per role, each idempotent.
//! - `inventory`: the `--inventory` file format.
//! - `plan`: which host plays which roles, validated.
//! - `shipment`: the binary, its digest and zstd form; how it travels (once
//!   from the operator to the master, from there to the other hosts).
//! - `arm`: the self-destruct step, built from what each host should arm.
//! - `deploy`: all hosts in parallel with progress lines; `report`: what
//!   happened on each, and the check that every worker joined.
//!
//! Nothing here knows about EC2: `spotload deploy` turns a fleet or an
//! inventory into a [`DeployPlan`].

pub mod arm;
mod deploy;
mod error;
mod host;
pub mod inventory;
pub mod known_hosts;
mod plan;
pub mod recipe;
mod report;
pub mod script;
pub mod shipment;
mod ssh;

pub use deploy::deploy;
pub use error::RemoteError;
pub use host::{Host, Local, Output, Shell};
pub use known_hosts::KnownHosts;
pub use plan::{DeployPlan, HostPlan};
pub use report::{HostReport, Outcome, Report};
pub use shipment::Shipment;
pub use ssh::{load_key, ConnectLimits, Session};
