//! The master's side of the rules: it follows the run's holds, checks every
//! rule once a second while the users are all spawned (after
//! `--threshold-abort-delay`), and stops the run at the first failing rule
//! unless told not to (`--no-threshold-abort`).

use std::time::{Duration, Instant};

use super::holds::Holds;
use super::judge::{first_failure, judge_all, Check, Verdict};
use super::rule::Rule;
use crate::stats::RequestStats;

/// How often rules are checked while the run holds its users (goose's
/// cadence).
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The longest `--threshold-abort-delay`: a day (a longer wait is a run
/// that never checks).
pub const MAX_ABORT_DELAY: Duration = Duration::from_secs(86_400);

/// The most `--threshold` rules a run takes: each is judged every second
/// on the master's task.
pub const MAX_RULES: usize = 100;

/// The rules and how they act, as the flags gave them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ThresholdConfig {
    /// The rules, in the order given; the first failing one is named.
    pub rules: Vec<Rule>,
    /// Whether a failing rule stops the run (not `--no-threshold-abort`).
    pub abort: bool,
    /// Wait after the users are all spawned before the first check.
    pub abort_delay: Duration,
}

/// A rule that failed mid-run and stopped it.
#[derive(Debug, Clone, PartialEq)]
pub struct Abort {
    /// The rule's index.
    pub index: usize,
    /// What it observed then, as reports show it.
    pub observed: String,
}

impl Abort {
    /// `threshold "p95<5ms" failed: observed 7.312ms`.
    pub fn describe(&self, config: &ThresholdConfig) -> String {
        let rule = config
            .rules
            .get(self.index)
            .map_or("?", |r| r.text.as_str());
        format!("threshold {rule:?} failed: observed {}", self.observed)
    }
}

/// The rules' state through one run.
#[derive(Debug, Clone, Default)]
pub struct ThresholdWatch {
    config: ThresholdConfig,
    holds: Holds,
    holding: bool,
    next_check: Option<Instant>,
    aborted: Option<Abort>,
}

impl ThresholdWatch {
    /// Watches `config`'s rules.
    pub fn new(config: ThresholdConfig) -> Self {
        ThresholdWatch {
            config,
            ..ThresholdWatch::default()
        }
    }

    /// The rules and how they act.
    pub fn config(&self) -> &ThresholdConfig {
        &self.config
    }

    /// A new run begins: nothing held, nothing failed.
    pub fn new_run(&mut self) {
        *self = ThresholdWatch::new(std::mem::take(&mut self.config));
    }

    /// The stats were reset at `now` (epoch seconds).
    pub fn reset(&mut self, now: f64) {
        self.holds.reset(&self.config.rules, now);
    }

    /// The rule that stopped the run, if one did.
    pub fn aborted(&self) -> Option<&Abort> {
        self.aborted.as_ref()
    }

    /// Follows the run: `holding` says whether every asked user runs now.
    /// Returns the failure that must stop the run, once.
    pub fn tick(
        &mut self,
        holding: bool,
        stats: &RequestStats,
        now: f64,
        clock: Instant,
    ) -> Option<Abort> {
        if self.config.rules.is_empty() {
            return None;
        }
        if holding && !self.holding {
            self.holds.enter(&self.config.rules, stats, now);
            // Each time the users reach the asked count, the delay starts again.
            self.next_check = self
                .config
                .abort
                .then(|| clock.checked_add(self.config.abort_delay))
                .flatten();
        } else if !holding && self.holding {
            self.holds.leave(&self.config.rules, stats, now);
            self.next_check = None;
        }
        self.holding = holding;
        let due = self.next_check.is_some_and(|at| clock >= at);
        if !holding || !due || self.aborted.is_some() {
            return None;
        }
        self.next_check = Some(clock + CHECK_EVERY);
        let (index, observed) = first_failure(&self.config.rules, stats, &self.holds, now)?;
        let abort = Abort {
            index,
            observed: observed.shown,
        };
        self.aborted = Some(abort.clone());
        Some(abort)
    }

    /// Every rule judged on `stats` at `now`: finally once the run ended.
    pub fn verdicts(&self, stats: &RequestStats, now: f64, ended: bool) -> Vec<Verdict> {
        let check = if ended { Check::Final } else { Check::MidRun };
        let aborted = self
            .aborted
            .as_ref()
            .map(|a| (a.index, a.observed.as_str()));
        judge_all(&self.config.rules, stats, &self.holds, now, check, aborted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(rules: &[&str], abort: bool, delay: Duration) -> ThresholdConfig {
        ThresholdConfig {
            rules: rules.iter().map(|r| r.parse().expect("rule")).collect(),
            abort,
            abort_delay: delay,
        }
    }

    fn slow_stats() -> RequestStats {
        let mut stats = RequestStats::new(0.0);
        stats.total.log(50.0, 10, false, 1.0);
        stats
    }

    #[test]
    fn a_failing_rule_stops_the_run_once_held_and_after_the_delay() {
        let mut watch = ThresholdWatch::new(config(&["p95<10ms"], true, Duration::from_secs(5)));
        let t0 = Instant::now();
        let stats = slow_stats();
        assert!(
            watch.tick(false, &stats, 0.0, t0).is_none(),
            "spawning: no check"
        );
        assert!(
            watch.tick(true, &stats, 1.0, t0).is_none(),
            "the delay runs"
        );
        assert!(watch
            .tick(true, &stats, 5.0, t0 + Duration::from_secs(4))
            .is_none());
        let abort = watch
            .tick(true, &stats, 6.0, t0 + Duration::from_secs(5))
            .expect("fails after the delay");
        assert_eq!(
            abort.describe(watch.config()),
            "threshold \"p95<10ms\" failed: observed 50.015ms"
        );
        assert!(
            watch
                .tick(true, &stats, 7.0, t0 + Duration::from_secs(7))
                .is_none(),
            "once"
        );
        let verdicts = watch.verdicts(&stats, 8.0, true);
        assert!(verdicts[0].aborted && !verdicts[0].passed);
        watch.new_run();
        assert!(watch.aborted().is_none());
    }

    #[test]
    fn without_abort_rules_are_judged_only_at_the_end() {
        let mut watch = ThresholdWatch::new(config(&["p95<10ms"], false, Duration::ZERO));
        let t0 = Instant::now();
        let stats = slow_stats();
        for s in 0..5u32 {
            assert!(watch
                .tick(
                    true,
                    &stats,
                    f64::from(s),
                    t0 + Duration::from_secs(s.into())
                )
                .is_none());
        }
        let verdicts = watch.verdicts(&stats, 5.0, true);
        assert!(!verdicts[0].passed && !verdicts[0].aborted);
    }
}
