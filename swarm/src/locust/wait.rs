//! Locust's `wait_time` functions as values: [`between`], [`constant`],
//! [`constant_pacing`] and [`constant_throughput`], and the per-user clock
//! pacing needs ([`Pacer`]).
//!
//! `between` and `constant` are goose's own wait (a scenario's
//! `transaction_wait`, drawn after every transaction): a [`super::User`]
//! has one transaction per task, so that is Locust's wait after every
//! task. Pacing cannot be goose's wait, which is drawn without regard to
//! how long the task took: the task picker waits itself, after the task,
//! for what is left of the period (see [`Pacer`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::LocustError;

/// How long a user waits after each task, as Locust's `wait_time` says.
#[derive(Debug, Clone, PartialEq)]
pub enum WaitTime {
    /// A time drawn at random between the two, inclusive, after each task
    /// (Locust's `between`).
    Between {
        /// The shortest wait.
        min: Duration,
        /// The longest wait.
        max: Duration,
    },
    /// The same time after each task (Locust's `constant`; Locust's
    /// default is `constant(0)`: no wait).
    Constant(Duration),
    /// Whatever makes each task and its wait together take this long: the
    /// task starts once a period, however long it takes (Locust's
    /// `constant_pacing`); a task longer than the period is followed by no
    /// wait, and the next period starts when it ends (no catching up).
    ConstantPacing(Duration),
}

impl Default for WaitTime {
    /// Locust's default: `constant(0)`.
    fn default() -> WaitTime {
        WaitTime::Constant(Duration::ZERO)
    }
}

impl WaitTime {
    /// goose's wait for this (a scenario's `transaction_wait`: MIN ≤ MAX),
    /// or `None` when goose must not wait (no wait, or pacing, which the
    /// task picker does).
    pub fn goose_wait(&self) -> Option<(Duration, Duration)> {
        match *self {
            WaitTime::Between { min, max } => Some((min, max)),
            WaitTime::Constant(wait) if wait.is_zero() => None,
            WaitTime::Constant(wait) => Some((wait, wait)),
            WaitTime::ConstantPacing(_) => None,
        }
    }

    /// The period, when this wait paces.
    pub fn pacing(&self) -> Option<Duration> {
        match *self {
            WaitTime::ConstantPacing(period) => Some(period),
            _ => None,
        }
    }
}

/// Locust's `between(min, max)`: a wait drawn at random between the two
/// (in either order, as Locust's arithmetic allows), to the millisecond as
/// goose draws it.
pub fn between(min: Duration, max: Duration) -> WaitTime {
    WaitTime::Between {
        min: min.min(max),
        max: min.max(max),
    }
}

/// Locust's `constant(wait)`: the same wait after each task.
pub fn constant(wait: Duration) -> WaitTime {
    WaitTime::Constant(wait)
}

/// Locust's `constant_pacing(period)`: each task starts a period after the
/// last one started (or at once, when the last took longer).
pub fn constant_pacing(period: Duration) -> WaitTime {
    WaitTime::ConstantPacing(period)
}

/// Locust's `constant_throughput(runs_per_second)`: `constant_pacing(1 /
/// runs_per_second)`, per user. A task of several requests makes that many
/// times the requests. The rate must be a positive, finite number, as
/// Locust requires.
pub fn constant_throughput(runs_per_second: f64) -> Result<WaitTime, LocustError> {
    let period = (runs_per_second.is_finite() && runs_per_second > 0.0)
        .then(|| Duration::try_from_secs_f64(1.0 / runs_per_second).ok())
        .flatten()
        .ok_or(LocustError::Throughput {
            rate: runs_per_second,
        })?;
    Ok(WaitTime::ConstantPacing(period))
}

/// Each user's pacing clock, as Locust keeps it on the user: when its last
/// wait ended (at first, when the user started). The next wait ends a
/// period after that, or at once if that time has passed:
/// `max(now, last_end + period)`, which is Locust's `constant_pacing`
/// arithmetic. Keyed by goose's user index, so it holds at most one entry
/// per goose user of the worker (a user started again resets its own).
#[derive(Debug)]
pub(crate) struct Pacer {
    period: Duration,
    last_end: Mutex<HashMap<usize, Instant>>,
}

impl Pacer {
    pub(crate) fn new(period: Duration) -> Pacer {
        Pacer {
            period,
            last_end: Mutex::new(HashMap::new()),
        }
    }

    /// Starts `user`'s clock now (Locust starts it when the user is made).
    pub(crate) fn start(&self, user: usize, now: Instant) {
        if let Ok(mut last_end) = self.last_end.lock() {
            last_end.insert(user, now);
        }
    }

    /// How long `user` waits now, after a task, and notes when that wait
    /// ends. A user whose clock never started starts it now.
    pub(crate) fn wait_after_task(&self, user: usize, now: Instant) -> Duration {
        let Ok(mut last_end) = self.last_end.lock() else {
            return Duration::ZERO;
        };
        let since = *last_end.entry(user).or_insert(now);
        let end = since
            .checked_add(self.period)
            .map_or(now, |due| due.max(now));
        last_end.insert(user, end);
        end.saturating_duration_since(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn between_takes_its_bounds_in_either_order() {
        assert_eq!(between(5 * MS, 3 * MS), between(3 * MS, 5 * MS));
        assert_eq!(between(5 * MS, 3 * MS).goose_wait(), Some((3 * MS, 5 * MS)));
    }

    #[test]
    fn only_between_and_constant_are_goose_s_wait() {
        assert_eq!(constant(Duration::ZERO).goose_wait(), None);
        assert_eq!(constant(2 * MS).goose_wait(), Some((2 * MS, 2 * MS)));
        assert_eq!(constant_pacing(10 * MS).goose_wait(), None);
        assert_eq!(constant_pacing(10 * MS).pacing(), Some(10 * MS));
        assert_eq!(WaitTime::default(), constant(Duration::ZERO));
    }

    #[test]
    fn throughput_is_pacing_by_its_inverse_and_refuses_no_rate() {
        assert_eq!(
            constant_throughput(4.0).ok(),
            Some(constant_pacing(250 * MS))
        );
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-300] {
            let err = constant_throughput(rate).err().map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.contains("positive")),
                "{rate}: {err:?}"
            );
        }
    }

    /// Locust's arithmetic: the wait makes task and wait a period long; a
    /// task longer than the period gets no wait, and no catching up.
    #[test]
    fn pacing_fills_each_period_and_never_catches_up() {
        let pacer = Pacer::new(100 * MS);
        let t0 = Instant::now();
        pacer.start(7, t0);
        // The first task (and the user's start) took 30 ms.
        assert_eq!(pacer.wait_after_task(7, t0 + 30 * MS), 70 * MS);
        // The next began at 100 ms and took 10 ms.
        assert_eq!(pacer.wait_after_task(7, t0 + 110 * MS), 90 * MS);
        // The next began at 200 ms and took 250 ms: no wait...
        assert_eq!(pacer.wait_after_task(7, t0 + 450 * MS), Duration::ZERO);
        // ... and the period after it counts from its end, not from 300 ms.
        assert_eq!(pacer.wait_after_task(7, t0 + 460 * MS), 90 * MS);
        // Another user has a clock of its own, started at its first task.
        assert_eq!(pacer.wait_after_task(8, t0 + 460 * MS), 100 * MS);
        // A user started again starts its clock again.
        pacer.start(7, t0 + 1_000 * MS);
        assert_eq!(pacer.wait_after_task(7, t0 + 1_020 * MS), 80 * MS);
    }
}
