//! One measured step: what the target did at a given user count, over the
//! step's own window.

use serde::Serialize;

use crate::stats::StatsEntry;

/// Which limit a step broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Criterion {
    /// Its failure ratio was above `--fail-ratio`.
    FailRatio,
    /// Its p95 response time was above `--max-p95`.
    P95,
}

impl Criterion {
    pub fn as_str(self) -> &'static str {
        match self {
            Criterion::FailRatio => "fail_ratio",
            Criterion::P95 => "p95",
        }
    }
}

/// A step's numbers, as `ramp.json` and `ramp.csv` list them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepResult {
    pub users: u64,
    /// Workers generating the load during the window.
    pub workers: usize,
    /// Length of the measuring window, seconds.
    pub duration_s: f64,
    pub requests: u64,
    pub failures: u64,
    pub fail_ratio: f64,
    pub rps: f64,
    pub p50_ms: u64,
    pub p95_ms: u64,
    pub p99_ms: u64,
    /// Which limit the step broke; `None` when it was healthy.
    pub failed: Option<Criterion>,
}

impl StepResult {
    /// The step's numbers from the requests finished in its window
    /// (`window` is the total at the window's end `since` its start).
    pub fn measure(users: u64, workers: usize, window: &StatsEntry, duration_s: f64) -> Self {
        let rps = if duration_s > 0.0 {
            window.num_requests as f64 / duration_s
        } else {
            0.0
        };
        StepResult {
            users,
            workers,
            duration_s: round_to(duration_s, 1e3),
            requests: window.num_requests,
            failures: window.num_failures,
            fail_ratio: round_to(window.fail_ratio(), 1e6),
            rps: round_to(rps, 1e2),
            p50_ms: window.percentile(0.50),
            p95_ms: window.percentile(0.95),
            p99_ms: window.percentile(0.99),
            failed: None,
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.failed.is_none()
    }

    /// `healthy`, `fail_ratio` or `p95`, for tables.
    pub fn verdict(&self) -> &'static str {
        self.failed.map_or("healthy", Criterion::as_str)
    }
}

/// Rounds to `1/scale` so reports do not show float noise.
fn round_to(value: f64, scale: f64) -> f64 {
    if value.is_finite() {
        (value * scale).round() / scale
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_becomes_a_step() {
        let mut before = StatsEntry::new("Aggregated", "", 0.0);
        before.log(500.0, 50, false, 1.0);
        let mut after = before.clone();
        for ms in 1..=100 {
            after.log(ms as f64, 1, ms > 97, 2.0);
        }
        let step = StepResult::measure(8, 2, &after.since(&before), 4.0);
        assert_eq!(step.requests, 100);
        assert_eq!(step.failures, 3);
        assert_eq!(step.fail_ratio, 0.03);
        assert_eq!(step.rps, 25.0);
        assert_eq!((step.p50_ms, step.p95_ms, step.p99_ms), (51, 96, 100));
        assert!(step.is_healthy());
        assert_eq!(step.verdict(), "healthy");
    }

    #[test]
    fn an_empty_window_is_all_zero() {
        let entry = StatsEntry::new("Aggregated", "", 0.0);
        let step = StepResult::measure(1, 1, &entry.since(&entry), 0.0);
        assert_eq!((step.requests, step.rps, step.p95_ms), (0, 0.0, 0));
    }
}
