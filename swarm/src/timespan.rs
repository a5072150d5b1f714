//! Durations written the way Locust users write them: `30`, `30s`, `5m`,
//! `1h30m`, `2h5m10s`.

use std::time::Duration;

/// Why a time span did not parse; the message shows the accepted forms.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid time {0:?}: use a whole number of seconds or units, e.g. 20, 20s, 3m, 2h, 1h20m, 3h30m10s")]
pub struct TimespanError(pub String);

/// Parses `20`, `20s`, `3m`, `1h20m`, `3h30m10s` (a bare number is seconds).
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
            'h' => (1, 3600),
            'm' => (2, 60),
            's' => (3, 1),
            _ => return Err(err()),
        };
        // Units in order h, m, s, each at most once, each with a number.
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
    }

    #[test]
    fn nonsense_is_refused() {
        for bad in ["", "-5s", "abc", "5x", "m5", "5m3h", "1.5h", "5s5"] {
            assert!(parse_timespan(bad).is_err(), "{bad}");
        }
    }
}
