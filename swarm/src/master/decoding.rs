//! Frames that take long to decode, off the master's task.
//!
//! Decoding is the one step of a frame that can take long: a frame may
//! hold a million msgpack values, most of a second for a debug build. The
//! master decodes small frames (every heartbeat, a busy worker's report)
//! where it stands, and hands a big one to a blocking thread, one at a
//! time (so one decode's worth of memory, as before). Meanwhile it goes on
//! with everyone else's frames, its commands and its timers: a peer whose
//! frames are slow to decode delays itself, not the workers' heartbeats or
//! the web UI.
//!
//! Each peer's frames are still dealt with in the order they came, on
//! whichever of its connections (a worker that reconnects joins on the new
//! one after what it sent on the old): those behind a frame of its being
//! decoded (or waiting to be) wait too, at most [`HELD_PER_PEER`] of them;
//! a peer that sends more while its slow frame decodes loses them (counted
//! in `refused_frames`).

use std::collections::{HashMap, HashSet, VecDeque};

use bytes::Bytes;
use tokio::task::JoinHandle;

use super::inbox::Decoded;
use crate::protocol::transport::Inbound;

/// Frames above this size are decoded on a blocking thread: a heartbeat is
/// about 100 bytes and a busy worker's report a few KiB.
pub const DECODE_INLINE: usize = 16 * 1024;

/// Frames one peer may have waiting behind its own slow frame: a worker
/// sends a heartbeat a second and a report every three, so a thousand is
/// far more than a real one ever has.
pub const HELD_PER_PEER: usize = 1024;

/// What became of a frame handed to the [`Decoder`].
pub(super) enum Taken {
    /// Decoded already: deal with it now.
    Now(Decoded),
    /// Decoding, or waiting its turn; it comes back from
    /// [`Decoder::decoded`] or [`Decoder::release`].
    Later,
    /// Its peer has too many frames waiting: dropped.
    Dropped(Inbound),
}

/// The big frame being decoded, and the frames waiting behind it.
#[derive(Default)]
pub(super) struct Decoder {
    current: Option<(Bytes, JoinHandle<Decoded>)>,
    waiting: VecDeque<Inbound>,
    /// How many of `waiting` are each peer's (by identity).
    per_peer: HashMap<Bytes, usize>,
}

impl Decoder {
    /// Whether no frame is being decoded or waiting.
    #[cfg(test)]
    fn is_idle(&self) -> bool {
        self.current.is_none() && self.waiting.is_empty()
    }

    /// Takes a frame off the link.
    pub(super) fn take(&mut self, frame: Inbound) -> Taken {
        let behind = self.per_peer.get(&frame.peer).copied().unwrap_or(0);
        let decoding_its = self
            .current
            .as_ref()
            .is_some_and(|(peer, _)| *peer == frame.peer);
        if behind > 0 || decoding_its {
            if behind >= HELD_PER_PEER {
                return Taken::Dropped(frame);
            }
            self.hold(frame);
            return Taken::Later;
        }
        if frame.payload.len() <= DECODE_INLINE {
            return Taken::Now(Decoded::from(frame));
        }
        if self.current.is_none() {
            self.start(frame);
        } else {
            self.hold(frame);
        }
        Taken::Later
    }

    /// The frame decoded off the master's task, once it is; never while
    /// none is being decoded. `None` when its decoding did not finish (the
    /// runtime is shutting down: the frame is lost). Call
    /// [`Decoder::release`] after it.
    pub(super) async fn decoded(&mut self) -> Option<Decoded> {
        let Some((_, decoding)) = self.current.as_mut() else {
            return std::future::pending().await;
        };
        let decoded = decoding.await.ok();
        self.current = None;
        decoded
    }

    /// The waiting frames that may go now, in their order (decoded), once
    /// a decode has finished; the next big frame starts decoding.
    pub(super) fn release(&mut self) -> Vec<Decoded> {
        let mut ready = Vec::new();
        let mut kept = VecDeque::with_capacity(self.waiting.len());
        let mut blocked: HashSet<Bytes> =
            self.current.iter().map(|(peer, _)| peer.clone()).collect();
        while let Some(frame) = self.waiting.pop_front() {
            if blocked.contains(&frame.peer) {
                kept.push_back(frame);
                continue;
            }
            self.forget_one(&frame.peer);
            if frame.payload.len() <= DECODE_INLINE {
                ready.push(Decoded::from(frame));
                continue;
            }
            blocked.insert(frame.peer.clone());
            if self.current.is_none() {
                self.start(frame);
            } else {
                *self.per_peer.entry(frame.peer.clone()).or_default() += 1;
                kept.push_back(frame);
            }
        }
        self.waiting = kept;
        ready
    }

    fn start(&mut self, frame: Inbound) {
        let peer = frame.peer.clone();
        let decoding = tokio::task::spawn_blocking(move || Decoded::from(frame));
        self.current = Some((peer, decoding));
    }

    fn hold(&mut self, frame: Inbound) {
        *self.per_peer.entry(frame.peer.clone()).or_default() += 1;
        self.waiting.push_back(frame);
    }

    fn forget_one(&mut self, peer: &Bytes) {
        if let Some(count) = self.per_peer.get_mut(peer) {
            *count -= 1;
            if *count == 0 {
                self.per_peer.remove(peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame of `size` bytes from peer `w{peer}` on connection `conn`.
    fn frame_on(peer: u8, conn: u64, size: usize) -> Inbound {
        let mut payload = vec![0x93, 0xa5];
        payload.extend_from_slice(b"hello");
        // Padding past the end is ignored by the decoder: only the size
        // matters here.
        payload.resize(size.max(payload.len()), 0xc0);
        Inbound::memory(&format!("w{peer}"), payload).on_conn(conn)
    }

    /// A frame of `size` bytes from peer `w{peer}`.
    fn frame(peer: u8, size: usize) -> Inbound {
        frame_on(peer, u64::from(peer), size)
    }

    #[tokio::test]
    async fn other_peers_pass_a_slow_frame_and_each_keeps_its_order() {
        let mut decoder = Decoder::default();
        assert!(matches!(decoder.take(frame(1, 100_000)), Taken::Later));
        // Peer 1's next frame waits behind its slow one, even on a new
        // connection (a worker joining again); 2's goes.
        assert!(matches!(decoder.take(frame_on(1, 9, 10)), Taken::Later));
        assert!(matches!(decoder.take(frame(1, 10)), Taken::Later));
        assert!(matches!(decoder.take(frame(2, 10)), Taken::Now(_)));
        // Another slow frame waits for the decoder.
        assert!(matches!(decoder.take(frame(3, 100_000)), Taken::Later));
        assert!(matches!(decoder.take(frame(3, 10)), Taken::Later));
        assert!(!decoder.is_idle());
        assert!(decoder.decoded().await.is_some());
        // 1's small frames go; 3's slow one starts, its small one waits.
        let ready = decoder.release();
        assert_eq!(ready.len(), 2);
        assert!(decoder.decoded().await.is_some());
        assert_eq!(decoder.release().len(), 1);
        assert!(decoder.is_idle());
    }

    #[tokio::test]
    async fn a_peer_sending_on_behind_its_slow_frame_is_bounded() {
        let mut decoder = Decoder::default();
        assert!(matches!(decoder.take(frame(1, 100_000)), Taken::Later));
        for _ in 0..HELD_PER_PEER {
            assert!(matches!(decoder.take(frame(1, 10)), Taken::Later));
        }
        assert!(matches!(decoder.take(frame(1, 10)), Taken::Dropped(_)));
        assert!(decoder.decoded().await.is_some());
        assert_eq!(decoder.release().len(), HELD_PER_PEER);
        assert!(decoder.is_idle());
    }
}
