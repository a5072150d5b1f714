//! A frame's msgpack, counted before it is decoded. Decoding allocates a
//! value (tens of bytes) for every element, so 8 MiB of one-byte `nil`s
//! would cost hundreds of megabytes for a moment; [`check_values`] walks
//! the bytes without allocating and refuses a frame holding more values
//! than any real message needs, or declaring more than it carries.

/// The most values one frame may hold: a `stats` message of a few
/// thousand names with their response-time buckets and histograms stays
/// well below. Decoding this many takes up to about 100 MiB for a moment
/// (48 bytes a value as the decoder builds them, in a vector that doubles
/// as it grows) and most of a second in a debug build, so the master
/// decodes such frames off its task, one at a time.
pub const MAX_VALUES: usize = 1_000_000;

/// Why a frame's msgpack was refused unread.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoundError {
    /// More values than [`MAX_VALUES`] (or the limit given).
    #[error("it holds more than {0} msgpack values")]
    TooMany(usize),
    /// A length or a value runs past the end of the frame.
    #[error("it declares more than its {0} bytes carry")]
    Truncated(usize),
    /// A byte that starts no msgpack value (0xc1).
    #[error("byte 0x{0:02x} at offset {1} starts no msgpack value")]
    Reserved(u8, usize),
}

/// Checks that `bytes` start with one msgpack value of at most `limit`
/// values in all (containers and what they hold), every one present.
pub fn check_values(bytes: &[u8], limit: usize) -> Result<(), BoundError> {
    let truncated = || BoundError::Truncated(bytes.len());
    let mut at = 0usize;
    // Values still to read; each takes at least one byte, so more of them
    // than bytes left means the frame lies about its lengths.
    let mut pending: u64 = 1;
    let mut seen = 0usize;
    while pending > 0 {
        if pending > (bytes.len() - at) as u64 {
            return Err(truncated());
        }
        pending -= 1;
        seen += 1;
        if seen > limit {
            return Err(BoundError::TooMany(limit));
        }
        let marker = bytes[at];
        at += 1;
        // (payload bytes to skip, values it contains)
        let (skip, contains): (u64, u64) = match marker {
            0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => (0, 0),
            0x80..=0x8f => (0, 2 * u64::from(marker & 0x0f)),
            0x90..=0x9f => (0, u64::from(marker & 0x0f)),
            0xa0..=0xbf => (u64::from(marker & 0x1f), 0),
            0xc1 => return Err(BoundError::Reserved(marker, at - 1)),
            0xc4 | 0xd9 => (length(bytes, &mut at, 1)?, 0),
            0xc5 | 0xda => (length(bytes, &mut at, 2)?, 0),
            0xc6 | 0xdb => (length(bytes, &mut at, 4)?, 0),
            0xc7 => (length(bytes, &mut at, 1)? + 1, 0),
            0xc8 => (length(bytes, &mut at, 2)? + 1, 0),
            0xc9 => (length(bytes, &mut at, 4)? + 1, 0),
            0xca => (4, 0),
            0xcb => (8, 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xce | 0xd2 => (4, 0),
            0xcf | 0xd3 => (8, 0),
            0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xdc => (0, length(bytes, &mut at, 2)?),
            0xdd => (0, length(bytes, &mut at, 4)?),
            0xde => (0, 2 * length(bytes, &mut at, 2)?),
            0xdf => (0, 2 * length(bytes, &mut at, 4)?),
        };
        if skip > (bytes.len() - at) as u64 {
            return Err(truncated());
        }
        // `skip` is at most the bytes left, so it fits a usize.
        at += skip as usize;
        pending += contains;
    }
    Ok(())
}

/// Reads a big-endian length of `width` bytes at `at`, moving past it.
fn length(bytes: &[u8], at: &mut usize, width: usize) -> Result<u64, BoundError> {
    let field = bytes
        .get(*at..*at + width)
        .ok_or(BoundError::Truncated(bytes.len()))?;
    *at += width;
    Ok(field.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(value: &rmpv::Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, value).expect("encodes");
        out
    }

    #[test]
    fn real_values_pass_and_count_every_element() {
        use rmpv::Value;
        let value = Value::Array(vec![
            "stats".into(),
            Value::Map(vec![
                ("n".into(), Value::from(u64::MAX)),
                ("f".into(), Value::F64(0.5)),
                ("b".into(), Value::Binary(vec![0; 300])),
                ("s".into(), Value::from("x".repeat(70_000))),
                ("neg".into(), Value::from(-40_000i64)),
                ("ext".into(), Value::Ext(5, vec![1, 2, 3])),
            ]),
            Value::Nil,
        ]);
        let bytes = encoded(&value);
        // 1 array + 1 string + 1 map with 6 pairs (12) + 1 nil = 16.
        assert_eq!(check_values(&bytes, 16), Ok(()));
        assert_eq!(check_values(&bytes, 15), Err(BoundError::TooMany(15)));
    }

    #[test]
    fn a_frame_of_millions_of_nils_is_refused_unread() {
        let n: u32 = 8_000_000;
        let mut bytes = vec![0xdd];
        bytes.extend_from_slice(&n.to_be_bytes());
        bytes.resize(5 + n as usize, 0xc0);
        assert_eq!(
            check_values(&bytes, MAX_VALUES),
            Err(BoundError::TooMany(MAX_VALUES))
        );
    }

    #[test]
    fn lengths_past_the_end_are_refused() {
        // An array claiming 2^32-1 elements in five bytes.
        assert!(matches!(
            check_values(&[0xdd, 0xff, 0xff, 0xff, 0xff], MAX_VALUES),
            Err(BoundError::Truncated(5))
        ));
        // A string claiming 4 GiB.
        assert!(matches!(
            check_values(&[0xdb, 0xff, 0xff, 0xff, 0xff, b'a'], MAX_VALUES),
            Err(BoundError::Truncated(6))
        ));
        // A length cut short, and nothing at all.
        assert!(check_values(&[0xdc, 0x01], MAX_VALUES).is_err());
        assert!(check_values(&[], MAX_VALUES).is_err());
        assert_eq!(
            check_values(&[0xc1], MAX_VALUES),
            Err(BoundError::Reserved(0xc1, 0))
        );
    }
}
