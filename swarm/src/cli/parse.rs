//! Flag values shared by `loadtest` and `spotload`: each parser's error
//! says what was wrong and shows a valid value.

use std::time::Duration;

use crate::master::{MAX_RUN_TIME, MAX_SPAWN_RATE};
use crate::worker::arrival::{valid_arrival_rate, MAX_ARRIVAL_RATE};

/// A spawn rate: users per second above 0, at most [`MAX_SPAWN_RATE`].
pub fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 && rate <= MAX_SPAWN_RATE => Ok(rate),
        _ => Err(format!("{text:?} is not a spawn rate: use a number of users per second above 0 and at most {MAX_SPAWN_RATE}, e.g. 10 or 0.5")),
    }
}

/// An arrival rate: iterations started per second across the swarm, above
/// 0 and at most [`MAX_ARRIVAL_RATE`].
pub fn parse_arrival_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate > 0.0 && valid_arrival_rate(rate) => Ok(rate),
        _ => Err(format!("{text:?} is not an arrival rate: use a number of iterations per second above 0 and at most {MAX_ARRIVAL_RATE}, e.g. 300")),
    }
}

/// A run time such as `30s`, `5m`, `1h30m`, at most [`MAX_RUN_TIME`].
pub fn parse_run_time(text: &str) -> Result<Duration, String> {
    let time = crate::timespan::parse_timespan(text).map_err(|e| e.to_string())?;
    if time > MAX_RUN_TIME {
        return Err(format!(
            "{text:?} is longer than the longest run, {} days",
            MAX_RUN_TIME.as_secs() / 86_400
        ));
    }
    Ok(time)
}

/// A time above zero, such as a time limit's `30s`.
pub fn parse_positive_time(text: &str) -> Result<Duration, String> {
    match crate::timespan::parse_timespan(text) {
        Ok(d) if d.is_zero() => Err("it needs a time above 0, e.g. 30s".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// `--threshold-abort-delay`: a time such as `30s`, at most
/// [`crate::thresholds::MAX_ABORT_DELAY`].
pub fn parse_abort_delay(text: &str) -> Result<Duration, String> {
    let max = crate::thresholds::MAX_ABORT_DELAY;
    match crate::timespan::parse_timespan(text) {
        Ok(d) if d <= max => Ok(d),
        Ok(_) => Err(format!(
            "{text:?} is longer than a day, the longest wait before checking"
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// A ramp step's time, above zero, such as `30s`.
pub fn parse_step_time(text: &str) -> Result<Duration, String> {
    parse_positive_time(text).map_err(|e| e.replace("it needs", "a step needs"))
}

/// A time limit in milliseconds above 0, fractions allowed (`0.5`).
pub fn parse_ms(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(ms) if ms.is_finite() && ms > 0.0 && ms <= 86_400_000.0 => Ok(ms),
        _ => Err(format!(
            "{text:?} is not a time limit: use milliseconds above 0, e.g. 200 or 0.5"
        )),
    }
}

/// A ratio from 0 to 1, such as a failure ratio limit.
pub fn parse_ratio(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!(
            "{text:?} is not a ratio: use a number from 0 to 1, e.g. 0.01 for 1%"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_values_are_refused_with_the_valid_range() {
        assert!(parse_rate("1e300").unwrap_err().contains("at most"));
        assert!(parse_rate("inf").is_err());
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        assert!(parse_run_time("18446744073709551615")
            .unwrap_err()
            .contains("30 days"));
        assert_eq!(parse_run_time("30s"), Ok(Duration::from_secs(30)));
    }
}
