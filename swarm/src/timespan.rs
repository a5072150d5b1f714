//! Durations written the way Locust users write them — `30`, `30s`, `5m`,
//! `1h30m`, `2d` — the one grammar of every duration flag in `loadtest`
//! and `spotload`, and [`format_timespan`] to write one back.

use std::time::Duration;

/// Why a time span did not parse; the message shows the accepted forms.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid time {0:?}: use a whole number of seconds or units, e.g. 20, 20s, 3m, 2h, 1h20m, 3h30m10s, 2d")]
pub struct TimespanError(pub String);

/// Parses `20`, `20s`, `3m`, `1h20m`, `3h30m10s`, `1d12h` (a bare number
/// is seconds; units in the order d, h, m, s, each at most once).
pub fn parse_timespan(text: &str) -> Result<Duration, TimespanError> {
    let err = || TimespanError(text.to_string());
    let text = text.trim();
    if text.is_empty() {
        return Err(err());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = 0u64;
    let mut digits = String::new();
    let mut last_unit = 0u8;
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let (rank, scale) = match c {
            'd' => (1, 86_400),
            'h' => (2, 3600),
            'm' => (3, 60),
            's' => (4, 1),
            _ => return Err(err()),
        };
        // Units in order d, h, m, s, each at most once, each with a number.
        if digits.is_empty() || rank <= last_unit {
            return Err(err());
        }
        let n: u64 = digits.parse().map_err(|_| err())?;
        total = n
            .checked_mul(scale)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(err)?;
        digits.clear();
        last_unit = rank;
    }
    if !digits.is_empty() {
        return Err(err());
    }
    Ok(Duration::from_secs(total))
}

/// Writes whole seconds the way [`parse_timespan`] reads them: `1h30m`,
/// `1d1h1m1s`, `0s`.
pub fn format_timespan(duration: Duration) -> String {
    let secs = duration.as_secs();
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    for (amount, unit) in [(d, 'd'), (h, 'h'), (m, 'm'), (s, 's')] {
        if amount > 0 {
            out.push_str(&format!("{amount}{unit}"));
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_locust_accepts() {
        assert_eq!(parse_timespan("20"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_timespan("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_timespan("3m"), Ok(Duration::from_secs(180)));
        assert_eq!(parse_timespan("1h20m"), Ok(Duration::from_secs(4800)));
        assert_eq!(parse_timespan("3h30m10s"), Ok(Duration::from_secs(12610)));
        assert_eq!(parse_timespan("2d"), Ok(Duration::from_secs(172_800)));
    }

    #[test]
    fn written_back_as_read() {
        assert_eq!(format_timespan(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_timespan(Duration::from_secs(0)), "0s");
        assert_eq!(format_timespan(Duration::from_secs(90_061)), "1d1h1m1s");
        for secs in [0, 1, 59, 61, 3600, 90_061, 7 * 86_400] {
            let d = Duration::from_secs(secs);
            assert_eq!(parse_timespan(&format_timespan(d)), Ok(d));
        }
    }

    #[test]
    fn nonsense_is_refused() {
        for bad in [
            "",
            "-5s",
            "abc",
            "5x",
            "m5",
            "5m3h",
            "1.5h",
            "5s5",
            "99999999999999999999d",
        ] {
            assert!(parse_timespan(bad).is_err(), "{bad}");
        }
    }
}
