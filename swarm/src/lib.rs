//! swarm: the distributed load engine behind `loadtest`, with no cloud or
//! SSH dependencies.
//!
//! - [`api`]: the master's HTTP API as types (Locust's bodies and ours).
//! - [`client`]: [`client::MasterClient`], that API from the other side.
//! - [`logs`]: log lines that input from the wire cannot break or flood.
//! - [`locust`]: Locust's idioms on goose (user classes, `@task` picks, waits).
//! - [`co_mitigation`]: goose's coordinated omission mitigation, parsed once.
//! - `cli` (feature `cli`): the `loadtest` command line (`master`, `worker`), headless runs.
//! - [`master`]: worker registry, heartbeats, user dispatch, runner states, aggregation.
//! - [`protocol`]: Locust's master/worker messages, msgpack codec, ZeroMQ transport.
//! - [`ramp`]: headless step ramps that find the failure threshold, and their reports.
//! - [`stats`]: mergeable stats entries, percentiles, Locust CSV.
//! - [`web`]: the master's web app on :8089 (Locust's HTTP API and our page).
//! - [`shutdown`]: the process's one cancellation, from SIGINT, SIGTERM or code.
//! - [`test_plan`]: `--test-plan` shapes in goose's grammar, and where a run is in one.
//! - [`thresholds`]: pass/fail rules (`--threshold p95<500ms`) judged on the merged stats.
//! - [`target_tls`]: how the users' HTTPS trusts the target (`--ca-cert`, `--accept-invalid-certs`).
//! - [`timespan`]: `30s`, `5m`, `1h30m` durations.
//! - [`worker`]: drives goose through its controller, reports stats deltas.
pub mod api;
#[cfg(feature = "cli")]
pub mod cli;
pub mod client;
pub mod co_mitigation;
pub mod locust;
pub mod logs;
pub mod master;
pub mod protocol;
pub mod ramp;
pub mod shutdown;
pub mod stats;
pub mod target_tls;
pub mod test_plan;
pub mod thresholds;
pub mod timespan;
pub mod web;
pub mod worker;
