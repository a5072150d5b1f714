//! Everything a ramp run needs to know, fixed before it starts.

use std::time::Duration;

use super::judge::Limits;
use super::spec::RampSpec;

/// How often workers send their stats (Locust's and ours: 3 s). A window
/// lasts whole report intervals so that every worker's reports fall into
/// it equally often.
pub const WORKER_REPORT_INTERVAL: Duration = Duration::from_secs(3);

/// Wait after a step's users are running before its window opens: one
/// report interval, so the reports still carrying the previous step's
/// requests have arrived, plus a margin for the network.
pub const SETTLE: Duration = Duration::from_millis(3_500);

/// How long a window that no report reached waits for a late one (a
/// worker under heavy load can report late): three report intervals.
pub const LATE_REPORTS: Duration = Duration::from_secs(9);

/// A validated ramp.
#[derive(Debug, Clone, PartialEq)]
pub struct RampPlan {
    /// The levels to step through: user counts, or in a rate ramp arrival
    /// rates (iterations per second).
    pub spec: RampSpec,
    /// A rate ramp's pool (`--ramp-rate` with `-u`): the users that run the
    /// iterations, the same at every step; `None`: the users are stepped.
    pub pool: Option<u64>,
    /// The measuring window of each step, whole report intervals.
    pub window: Duration,
    /// What a healthy step stays within.
    pub limits: Limits,
    /// Bisect between the last healthy and the first failing count.
    pub refine: bool,
    /// Users started or stopped per second when moving between steps.
    pub spawn_rate: f64,
    /// See [`SETTLE`]; shorter only in tests.
    pub settle: Duration,
    /// See [`LATE_REPORTS`]; shorter only in tests.
    pub late_reports: Duration,
}

impl RampPlan {
    /// A plan whose window is `step_time` rounded up to whole report intervals.
    pub fn new(spec: RampSpec, step_time: Duration, limits: Limits, spawn_rate: f64) -> Self {
        RampPlan {
            spec,
            pool: None,
            window: window_for(step_time),
            limits,
            refine: false,
            spawn_rate,
            settle: SETTLE,
            late_reports: LATE_REPORTS,
        }
    }

    /// How long moving from `from` to `to` users may take before the ramp
    /// measures anyway: the spawn time at the rate, half again, plus slack
    /// for a worker dropping out and its users moving.
    pub fn spawn_limit(&self, from: u64, to: u64) -> Duration {
        let users = from.abs_diff(to) as f64;
        let rate = if self.spawn_rate > 0.0 {
            self.spawn_rate
        } else {
            1.0
        };
        let secs = (users / rate * 1.5 + 15.0).min(24.0 * 3600.0);
        Duration::from_secs_f64(secs)
    }
}

/// `step_time` rounded up to a whole number of report intervals (at least one).
pub fn window_for(step_time: Duration) -> Duration {
    let interval = WORKER_REPORT_INTERVAL.as_millis().max(1);
    let intervals = step_time.as_millis().div_ceil(interval).max(1);
    let millis = u64::try_from(intervals * interval).unwrap_or(u64::MAX);
    Duration::from_millis(millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_whole_report_intervals() {
        let secs = |s: u64| window_for(Duration::from_secs(s)).as_secs();
        assert_eq!(secs(0), 3);
        assert_eq!(secs(2), 3);
        assert_eq!(secs(3), 3);
        assert_eq!(secs(4), 6);
        assert_eq!(secs(60), 60);
        assert_eq!(secs(61), 63);
        assert_eq!(window_for(Duration::from_millis(3_001)).as_secs(), 6);
    }

    #[test]
    fn spawn_limits_grow_with_the_change() {
        let spec = RampSpec::parse("10:10:100").expect("spec");
        let plan = RampPlan::new(spec, Duration::from_secs(3), Limits::default(), 10.0);
        assert_eq!(plan.spawn_limit(0, 10), Duration::from_secs_f64(16.5));
        assert_eq!(plan.spawn_limit(100, 90), plan.spawn_limit(90, 100));
        assert!(plan.spawn_limit(0, u64::MAX) <= Duration::from_secs(24 * 3600));
    }
}
