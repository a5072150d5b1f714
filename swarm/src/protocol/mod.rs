//! Locust's master/worker protocol: msgpack messages `[type, data, node_id]`
//! over ZeroMQ ROUTER (master) / DEALER (worker).
//!
//! Messages are split by direction, because Locust reuses type names
//! (`heartbeat`, `spawning_complete`) with different data each way. Each
//! direction is one enum with `from_wire`/`to_wire`; a frame that does not
//! decode is an error the receiver logs and drops, and an unknown type
//! decodes to `Unknown` so newer peers never break older ones.
//!
//! With a [`JoinSecret`], workers prove they belong to the master's swarm
//! by ZMTP PLAIN; without one, anyone reaching the master port joins, as
//! with Locust.

mod bound;
mod caps;
mod dealer;
mod message;
mod router;
mod secret;
pub mod transport;
mod zmtp;

pub use caps::{
    capped, rendered_capped, MAX_CLASSES, MAX_CLASS_NAME, MAX_DETAIL, MAX_ERROR, MAX_IDENTITY,
    MAX_MESSAGE, MAX_METHOD, MAX_NAME, MAX_TRACEBACK, MAX_VERSION,
};
pub use message::{
    Envelope, Heartbeat, ProtocolError, QuitReason, SpawnOrder, SpawnTls, ToMaster, ToWorker,
    WorkerState,
};
pub use secret::{JoinSecret, SecretError, SecretOrigin, JOIN_SECRET_ENV, MAX_JOIN_SECRET};

/// Heartbeats (one a second) a worker may miss before its master marks it
/// missing and moves its users; a worker that hears nothing from its master
/// for as long stops its users itself. Locust's `heartbeat_liveness`.
pub const HEARTBEAT_LIVENESS: u32 = 3;

/// The most users one worker runs: goose's own limit per attack. The master
/// refuses more than this many per joined worker; a worker asked for more
/// runs this many and says so.
pub const MAX_USERS_PER_WORKER: u64 = 100_000;

/// Locust's default master port.
pub const DEFAULT_MASTER_PORT: u16 = 5557;

/// The version we announce in `client_ready`; Locust masters compare it with
/// their own and only warn on a mismatch.
pub const LOCUST_COMPAT_VERSION: &str = "2.47.0";

/// A node id in Locust's form, `<hostname>_<32 hex>`; the master's
/// dispatcher reads the part before the first `_` as the host name.
pub fn new_node_id() -> String {
    let host = sysinfo::System::host_name().unwrap_or_else(|| "localhost".into());
    let host = host.replace('_', "-");
    format!("{host}_{:032x}", rand::random::<u128>())
}
