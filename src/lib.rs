//! spotload: launch a spot fleet, deploy nginx and the `loadtest` swarm onto
//! it, drive it, and tear it down.
//!
//! - [`cli`]: one file per subcommand, each an `Args` struct with `run()`.
//! - [`local`]: the whole fleet as processes on this machine (`spotload local`).
//! - [`cloud`]: EC2 spot fleets: plan, launch, wait, describe, destroy.
//! - [`provision`]: `spotload deploy`'s work: the hosts (launched, reused or
//!   listed), the binary to ship, the UI's credentials.
//! - [`remote`]: hosts over SSH and the deploy recipes per role.
//! - [`role`]: the fleet's roles, shared by `cloud` and `remote`.
//! - [`expiry`]: the self-destruct's expiry, arming script and installer,
//!   shared by `cloud` (user data, tags) and `remote` (the deploy step).
//! - [`shell`]: POSIX `sh` quoting, shared by `cloud` and `remote`.
//! - [`web_cert`]: the master's self-signed web UI certificate, made by
//!   `deploy`, kept in the fleet's state, trusted by `ramp`.
//!
//! The load engine itself lives in the `swarm` crate, which has no cloud or
//! SSH dependencies; the `loadtest` binary is built from it.

pub mod cli;
pub mod cloud;
pub mod expiry;
pub mod local;
pub mod provision;
pub mod remote;
pub mod role;
pub mod shell;
pub mod web_cert;

/// Logs go to stderr; `RUST_LOG` overrides the level chosen by `-v`
/// (the same set-up as `loadtest`).
pub use swarm::cli::init_logging;
