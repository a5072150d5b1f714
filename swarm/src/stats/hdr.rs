//! Response times to the microsecond: an HDR histogram (3 significant
//! digits, so every figure read from it is within 0.1%) that merges exactly
//! across workers. It travels beside Locust's rounded buckets in each
//! `stats` entry, in HdrHistogram's standard V2 encoding, under a key a
//! Locust master ignores (`hdr_v2`).
//!
//! Reading one from a peer is bounded: only the plain V2 encoding is taken
//! (no zlib), its header must describe a histogram no larger than ours, and
//! its payload must fit in the bytes received — so a hostile entry cannot
//! make the master allocate more than one of our own histograms.
//!
//! Histograms start small and grow to cover the largest time recorded (up
//! to the hour), so a fast target's histogram, and what the master
//! allocates to read it, hold 16 KiB rather than the hour's 188 KiB, and
//! the master merges a peer's histogram as it was read, without copying
//! it. (A stats message keeps at most `MAX_HDR_ROWS` of them.)

use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;

/// The longest time kept apart, in µs: one hour (longer ones count as an hour).
const HIGHEST_US: u64 = 3_600_000_000;
/// Significant digits: every value is within 0.1% of the truth.
const SIGFIG: u8 = 3;
/// HdrHistogram's cookie of the plain (uncompressed) V2 encoding (its
/// base 0x1c849303 with the word-size bits of 8-byte counts).
const V2_COOKIE: u32 = 0x1c84_9313;
/// The V2 header: cookie, payload length, offset, digits, low, high, ratio.
const V2_HEADER: usize = 40;

/// Response times in µs.
#[derive(Clone, PartialEq)]
pub struct Hdr(Histogram<u64>);

impl std::fmt::Debug for Hdr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hdr({} values)", self.0.len())
    }
}

impl Default for Hdr {
    fn default() -> Self {
        Hdr::new()
    }
}

/// Why a peer's histogram was not taken.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("hdr_v2: {0}")]
pub struct HdrError(pub String);

impl Hdr {
    /// An empty histogram of times in microseconds, from 1 µs up to what
    /// it has recorded (at most one hour).
    pub fn new() -> Hdr {
        match Histogram::new(SIGFIG) {
            Ok(histogram) => Hdr(histogram),
            Err(_) => unreachable!("constant digits the crate accepts"),
        }
    }

    /// Records `count` times of `micros` each (clamped to 1 µs .. one hour),
    /// growing the histogram to cover them.
    pub fn record(&mut self, micros: u64, count: u64) {
        let micros = micros.clamp(1, HIGHEST_US);
        if self.0.record_n(micros, count).is_err() {
            // Only a histogram that may not grow refuses a value.
            self.0.saturating_record_n(micros, count);
        }
    }

    /// Adds another histogram's counts (the one merge).
    pub fn add(&mut self, other: &Hdr) {
        if self.0.add(&other.0).is_err() {
            // Same bounds on both sides (ours, or checked on the way in):
            // only a count overflow could fail; record the rest saturating.
            for value in other.0.iter_recorded() {
                self.0
                    .saturating_record_n(value.value_iterated_to(), value.count_at_value());
            }
        }
    }

    /// What was added since `earlier`, a copy taken before.
    pub fn since(&self, earlier: &Hdr) -> Hdr {
        let mut delta = self.clone();
        if delta.0.subtract(&earlier.0).is_err() {
            return Hdr::new();
        }
        delta
    }

    /// How many times were recorded.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The time `quantile` (0..=1) of the values were at or below, in ms.
    pub fn quantile_ms(&self, quantile: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.value_at_quantile(quantile.clamp(0.0, 1.0)) as f64 / 1000.0
    }

    /// The smallest and largest values, in ms.
    pub fn min_ms(&self) -> f64 {
        self.0.min() as f64 / 1000.0
    }

    /// The largest value recorded, in ms.
    pub fn max_ms(&self) -> f64 {
        self.0.max() as f64 / 1000.0
    }

    /// HdrHistogram's V2 encoding.
    pub fn to_v2(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing into a Vec cannot fail for a histogram of ours.
        let _ = V2Serializer::new().serialize(&self.0, &mut out);
        out
    }

    /// Reads a peer's V2 encoding, refusing anything larger than ours.
    pub fn from_v2(bytes: &[u8]) -> Result<Hdr, HdrError> {
        let bad = |why: &str| HdrError(why.to_string());
        if bytes.len() < V2_HEADER {
            return Err(bad("shorter than the V2 header"));
        }
        let word = |at: usize| -> u32 {
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let long = |at: usize| -> u64 {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_be_bytes(b)
        };
        if word(0) != V2_COOKIE {
            return Err(bad("not the plain V2 encoding"));
        }
        let payload = word(4) as usize;
        if payload > bytes.len() - V2_HEADER {
            return Err(bad("its payload is longer than what was received"));
        }
        if word(12) > u32::from(SIGFIG) || long(16) < 1 || long(24) > HIGHEST_US {
            return Err(bad("it is larger than the histograms spotload keeps"));
        }
        let mut histogram: Histogram<u64> = Deserializer::new()
            .deserialize(&mut &bytes[..])
            .map_err(|e| HdrError(format!("{e:?}")))?;
        if long(16) == 1 && word(12) == u32::from(SIGFIG) {
            // Our own layout: taken as read, free to grow like ours.
            histogram.auto(true);
            return Ok(Hdr(histogram));
        }
        let mut ours = Hdr::new();
        ours.add(&Hdr(histogram));
        Ok(ours)
    }
}

impl serde::Serialize for Hdr {
    /// As the base64 of its V2 encoding (JSON has no bytes).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use base64::Engine;
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(self.to_v2()))
    }
}

impl<'de> serde::Deserialize<'de> for Hdr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use base64::Engine;
        let text = String::deserialize(deserializer)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)?;
        Hdr::from_v2(&bytes).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_quantiles_are_those_of_the_union_within_a_tenth_of_a_percent() {
        let (mut fast, mut slow) = (Hdr::new(), Hdr::new());
        for us in 0..9_000u64 {
            fast.record(150 + us % 100, 1);
        }
        for us in 0..1_000u64 {
            slow.record(20_000 + us, 1);
        }
        let mut union = Hdr::new();
        union.add(&fast);
        union.add(&slow);
        assert_eq!(union.count(), 10_000);
        // The exact figures of the union: 9,000 fast values, 90 of each of
        // 150..=249 µs, then 1,000 slow ones, 20,000..=20,999 µs.
        let mut all: Vec<u64> = (0..9_000u64).map(|us| 150 + us % 100).collect();
        all.extend(20_000..21_000);
        all.sort_unstable();
        for q in [0.5, 0.95, 0.99, 0.999] {
            let exact = all[((all.len() as f64 * q).ceil() as usize).max(1) - 1] as f64 / 1000.0;
            let got = union.quantile_ms(q);
            assert!(
                (got - exact).abs() <= exact * 0.001,
                "p{q}: {got} vs {exact}"
            );
        }
        let back = Hdr::from_v2(&union.to_v2()).expect("round trip");
        assert_eq!(back, union);
        assert_eq!(union.since(&fast).count(), 1_000);
    }

    #[test]
    fn hostile_encodings_are_refused_before_allocating() {
        assert!(Hdr::from_v2(b"short").is_err());
        let mut bytes = Hdr::new().to_v2();
        // A payload longer than the bytes that carry it.
        bytes[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(Hdr::from_v2(&bytes).is_err());
        // A histogram far larger than ours (highest value 2^62).
        let mut bytes = Hdr::new().to_v2();
        bytes[24..32].copy_from_slice(&(1u64 << 62).to_be_bytes());
        assert!(Hdr::from_v2(&bytes).unwrap_err().0.contains("larger"));
        // The zlib-compressed cookie.
        let mut bytes = Hdr::new().to_v2();
        bytes[0..4].copy_from_slice(&0x1c84_9314u32.to_be_bytes());
        assert!(Hdr::from_v2(&bytes).is_err());
    }
}
