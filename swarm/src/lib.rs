//! swarm: the distributed load engine behind `loadtest`, with no cloud or
//! SSH dependencies.
//!
//! - [`protocol`]: Locust's master/worker messages, msgpack codec, ZeroMQ transport.
//! - [`stats`]: mergeable stats entries, percentiles, Locust CSV.
//! - [`worker`]: drives goose through its controller, reports stats deltas.
pub mod protocol;
pub mod stats;
pub mod worker;
