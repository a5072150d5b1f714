//! The `loadtest` binary a deploy ships, and how it travels: from the
//! operator once, to the master, zstd-compressed; from the master to every
//! other host over the fleet's private network (the master runs the hidden
//! `loadtest serve-file` for the deploy's duration); checked by SHA-256 on
//! arrival everywhere. A host that already runs the same digest gets nothing.
//!
//! [`Shipment`] is the binary with its digest and compressed form;
//! [`Source`] is what the master announces to the hosts waiting to fetch.

use std::fmt::Write as _;
use std::sync::Arc;

use sha2::{Digest, Sha256};

/// zstd level for the one upload: 9 takes about half a second for a 15 MB
/// binary and is within 12% of level 19's size at a twentieth of its time.
const ZSTD_LEVEL: i32 = 9;

/// The binary every master and worker host ends up running.
#[derive(Debug, Clone)]
pub struct Shipment {
    /// The executable, as the hosts run it (stripped by `spotload deploy`).
    pub binary: Arc<Vec<u8>>,
    /// SHA-256 of `binary`, 64 lowercase hex digits: every host checks it.
    pub digest: String,
    /// `binary` zstd-compressed: what crosses the operator's link when the
    /// master has the `zstd` command, and what hosts with it fetch.
    pub compressed: Arc<Vec<u8>>,
}

impl Shipment {
    /// Digests and compresses `binary` (CPU-bound: half a second for 15 MB).
    pub fn new(binary: Vec<u8>) -> std::io::Result<Shipment> {
        let digest = sha256_hex(&binary);
        let compressed = zstd::bulk::compress(&binary, ZSTD_LEVEL)?;
        Ok(Shipment {
            binary: Arc::new(binary),
            digest,
            compressed: Arc::new(compressed),
        })
    }

    /// The digest's first 12 digits, for progress lines.
    pub fn short_digest(&self) -> &str {
        &self.digest[..12.min(self.digest.len())]
    }
}

/// SHA-256 of `bytes` as 64 lowercase hex digits (what `sha256sum` prints).
pub fn sha256_hex(bytes: &[u8]) -> String {
    let mut hex = String::with_capacity(64);
    for byte in Sha256::digest(bytes) {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// "5.0 MB", for progress lines.
pub fn megabytes(bytes: usize) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// What the master tells the hosts that need the binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The master has not got the binary ready yet.
    Pending,
    /// Fetch it from `base` (`http://ADDRESS:PORT`): `/<digest>`, and
    /// `/<digest>.zst` when `compressed`.
    Ready {
        /// `http://ADDRESS:PORT`, the master's private address.
        base: String,
        /// The master also serves the zstd form.
        compressed: bool,
    },
    /// The master cannot serve it, and why.
    Failed(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_matches_sha256sum_and_compression_round_trips() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let binary: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let shipment = Shipment::new(binary.clone()).unwrap();
        assert!(shipment.compressed.len() < binary.len() / 4);
        let back = zstd::bulk::decompress(&shipment.compressed, binary.len()).unwrap();
        assert_eq!(back, binary);
        assert_eq!(shipment.short_digest().len(), 12);
        assert_eq!(megabytes(5_040_225), "5.0 MB");
    }
}
