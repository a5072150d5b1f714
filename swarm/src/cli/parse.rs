//! Flag values shared by `loadtest` and `spotload`: each parser's error
//! says what was wrong and shows a valid value.

use std::time::Duration;

/// A spawn rate: users per second above 0.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!("{text:?} is not a spawn rate: use a number of users per second above 0, e.g. 10 or 0.5")),
    }
}

/// A run time such as `30s`, `5m`, `1h30m`.
pub fn parse_run_time(text: &str) -> Result<Duration, String> {
    crate::timespan::parse_timespan(text).map_err(|e| e.to_string())
}

/// A time above zero, such as a ramp step's `30s`.
pub fn parse_step_time(text: &str) -> Result<Duration, String> {
    match crate::timespan::parse_timespan(text) {
        Ok(d) if d.is_zero() => Err("a step needs a time above 0, e.g. 30s".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
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
