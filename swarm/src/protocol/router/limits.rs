//! What one peer may make the master hold, and for how long.

use std::time::Duration;

use crate::protocol::transport::MAX_FRAME;

/// What one peer may make the master hold, and for how long. The defaults
/// are the product's; tests shorten the times.
#[derive(Debug, Clone)]
pub struct RouterLimits {
    /// A connection that has not joined this long after its ZMTP handshake
    /// is closed: real workers say `client_ready` at once.
    pub join_timeout: Duration,
    /// Unjoined connections kept per source address: a fleet of workers
    /// behind one address (the fleet simulator's 10,000 joining at 1,000/s)
    /// joins within milliseconds each, so a few hundred waiting at once is
    /// already a flood.
    pub unjoined_per_source: usize,
    /// Unjoined connections kept in all: well below the open-file limit,
    /// so joined workers and the web UI always find a descriptor.
    pub unjoined_total: usize,
    /// Largest frame an unjoined peer may send: `client_ready` and a
    /// heartbeat are tens of bytes.
    pub unjoined_frame: usize,
    /// Bytes of one peer's frames waiting for the master: two of the
    /// largest frames, so a big report never waits for its own budget.
    pub peer_bytes: usize,
    /// Bytes of all peers' frames waiting for the master.
    pub total_bytes: usize,
    /// An identity heard from within this is live and cannot be taken
    /// over: three of Locust's one-second heartbeats.
    pub live_window: Duration,
    /// How often a joined ZMTP 3.1 peer is sent a PING.
    pub ping_every: Duration,
    /// A connection silent this long (no frame, no PONG) is closed.
    pub silence: Duration,
    /// The longest a frame's body may take to arrive once its header has:
    /// 8 MiB needs 800 KiB/s.
    pub frame_time: Duration,
}

impl Default for RouterLimits {
    fn default() -> Self {
        RouterLimits {
            join_timeout: Duration::from_secs(5),
            unjoined_per_source: 256,
            unjoined_total: 1024,
            unjoined_frame: 64 * 1024,
            peer_bytes: 2 * MAX_FRAME,
            total_bytes: 8 * MAX_FRAME,
            live_window: Duration::from_secs(3),
            ping_every: Duration::from_secs(5),
            silence: Duration::from_secs(15),
            frame_time: Duration::from_secs(10),
        }
    }
}
