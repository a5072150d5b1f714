//! The `spotload` integration tests, one binary (one link) with a module
//! per area. Each starts real components itself: moto for EC2, sshd test
//! hosts in network namespaces, nginx, `loadtest`.

mod cloud;
mod cloud_faults;
mod deploy;
mod deploy_ship;
mod docs;
mod expiry;
mod harness_selfcheck;
mod local;
