//! The answer of a ramp: every measured step, the threshold it found, and
//! why a run could not answer. `ramp.json` is this, serialized.

use serde::Serialize;

use super::plan::RampPlan;
use super::step::Criterion;
use super::step::StepResult;

/// A ramp's outcome. The first five fields are the answer; the rest say
/// how it was measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RampReport {
    /// Lowest user count that failed; `None` when every step was healthy.
    pub threshold_users: Option<u64>,
    /// Highest healthy user count below the threshold.
    pub last_healthy_users: Option<u64>,
    /// The limit the threshold step broke (`generator_cpu` when the ramp
    /// ended generator-bound).
    pub criterion: Option<Criterion>,
    /// The user count at which a worker saturated its CPU, when it did: the
    /// ramp stopped there, and no target threshold was found below it.
    pub generator_bound_users: Option<u64>,
    /// The knee: the last user count after which requests/s stopped
    /// growing (by less than [`KNEE_GROWTH`] while users grew by more)
    /// and p95 grew — the capacity of the target, or of the generator;
    /// `None` when requests/s kept growing with users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knee_users: Option<u64>,
    /// Every step in the order measured (refinement probes last).
    pub steps: Vec<StepResult>,
    /// Why the ramp could not answer (no workers, target unreachable...);
    /// `None` when it did.
    pub error: Option<String>,
    /// What happened along the way that a reader should know, e.g. a
    /// worker lost and the step measured again.
    pub notes: Vec<String>,
    /// The ramp asked for, `START:STEP:MAX`.
    pub ramp: String,
    /// Each step's measuring window, seconds.
    pub step_time_s: f64,
    /// The rules each step was judged by, in goose's `--threshold`
    /// grammar: the shorthands' (`--fail-ratio 0.01` is `error-rate<=1%`,
    /// `--max-p95 200` is `p95<=200ms`), then the `--threshold` rules.
    pub rules: Vec<String>,
    /// Whether `--refine` bisected between the last healthy and first failing count.
    pub refine: bool,
    /// The target host, when the ramp named one.
    pub host: Option<String>,
    /// Epoch seconds.
    pub started_at: f64,
    /// When the ramp ended, epoch seconds; `None` while it runs.
    pub finished_at: Option<f64>,
}

/// Growth below which requests/s count as flat (5%).
pub const KNEE_GROWTH: f64 = 0.05;

impl RampReport {
    /// An empty report for `plan`, started at epoch second `now`.
    pub fn new(plan: &RampPlan, host: Option<String>, now: f64) -> Self {
        RampReport {
            threshold_users: None,
            last_healthy_users: None,
            criterion: None,
            generator_bound_users: None,
            knee_users: None,
            steps: Vec::new(),
            error: None,
            notes: Vec::new(),
            ramp: plan.spec.to_string(),
            step_time_s: plan.window.as_secs_f64(),
            rules: plan.limits.texts(),
            refine: plan.refine,
            host,
            started_at: now,
            finished_at: None,
        }
    }

    /// Derives the answer from the steps: the threshold is the lowest
    /// failing count, the last healthy the highest healthy count below it.
    pub fn conclude(&mut self) {
        let first_failing = self
            .steps
            .iter()
            .filter(|s| !s.is_healthy())
            .min_by_key(|s| s.users);
        self.criterion = first_failing.and_then(|s| s.failed.clone());
        let generator_bound = self.criterion == Some(Criterion::GeneratorCpu);
        self.generator_bound_users = first_failing.filter(|_| generator_bound).map(|s| s.users);
        self.threshold_users = first_failing.filter(|_| !generator_bound).map(|s| s.users);
        let limit = first_failing.map_or(u64::MAX, |s| s.users);
        self.last_healthy_users = self
            .steps
            .iter()
            .filter(|s| s.is_healthy() && s.users < limit)
            .map(|s| s.users)
            .max();
        self.knee_users = self.knee().map(|(at, _)| at.users);
    }

    /// The knee step and the step after it: the first pair of steps (by
    /// users) where users grew by more than [`KNEE_GROWTH`], requests/s by
    /// less, and p95 grew.
    pub fn knee(&self) -> Option<(&StepResult, &StepResult)> {
        let steps = self.steps_by_users();
        steps
            .windows(2)
            .find(|pair| {
                let (at, next) = (pair[0], pair[1]);
                let users_grew = next.users as f64 > at.users as f64 * (1.0 + KNEE_GROWTH);
                let rps_flat = next.rps < at.rps * (1.0 + KNEE_GROWTH);
                users_grew && at.rps > 0.0 && rps_flat && next.p95_ms > at.p95_ms
            })
            .map(|pair| (pair[0], pair[1]))
    }

    /// Whether the run answered: 0 as an exit code, otherwise 1.
    pub fn answered(&self) -> bool {
        self.error.is_none()
    }

    /// The last measurement at `users`.
    pub fn step_at(&self, users: Option<u64>) -> Option<&StepResult> {
        let users = users?;
        self.steps.iter().rev().find(|s| s.users == users)
    }

    /// The step the threshold comes from.
    pub fn threshold_step(&self) -> Option<&StepResult> {
        self.step_at(self.threshold_users)
    }

    /// The highest healthy step below the threshold.
    pub fn last_healthy_step(&self) -> Option<&StepResult> {
        self.step_at(self.last_healthy_users)
    }

    /// Steps by user count (the last measurement of each), for charts.
    pub fn steps_by_users(&self) -> Vec<&StepResult> {
        let mut steps: Vec<&StepResult> = Vec::new();
        for step in self.steps.iter().rev() {
            if !steps.iter().any(|s| s.users == step.users) {
                steps.push(step);
            }
        }
        steps.sort_by_key(|s| s.users);
        steps
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ramp::{Limits, RampSpec};

    pub(crate) fn step(users: u64, failed: Option<Criterion>) -> StepResult {
        StepResult {
            users,
            workers: 1,
            duration_s: 3.0,
            requests: 100,
            failures: if failed.is_some() { 50 } else { 0 },
            fail_ratio: if failed.is_some() { 0.5 } else { 0.0 },
            rps: 33.33,
            p50_ms: 10.0,
            p95_ms: 20.0,
            p99_ms: 30.0,
            p999_ms: 40.0,
            co_backfilled: 0,
            worker_cpu: 0.25,
            failed,
        }
    }

    pub(crate) fn report(steps: Vec<StepResult>) -> RampReport {
        let spec = RampSpec::parse("2:2:10").expect("spec");
        let plan = RampPlan::new(spec, Duration::from_secs(3), Limits::default(), 10.0);
        let mut report = RampReport::new(&plan, Some("http://127.0.0.1:1".into()), 0.0);
        report.steps = steps;
        report.conclude();
        report
    }

    /// Steps whose requests/s grow with users up to `plateau` users, then
    /// stay flat while p95 grows.
    pub(crate) fn saturating(counts: &[u64], plateau: u64) -> Vec<StepResult> {
        counts
            .iter()
            .map(|&users| {
                let mut s = step(users, None);
                s.rps = 100.0 * users.min(plateau) as f64;
                s.p95_ms = if users > plateau { users as f64 } else { 2.0 };
                s
            })
            .collect()
    }

    #[test]
    fn the_knee_is_where_requests_per_second_stop_growing_as_latency_grows() {
        let r = report(saturating(&[2, 4, 6, 8, 10], 6));
        assert_eq!(r.knee_users, Some(6));
        let json = serde_json::to_value(&r).expect("serializes");
        assert_eq!(json["knee_users"], 6);
        // Still growing: no knee.
        assert_eq!(report(saturating(&[2, 4, 6], 6)).knee_users, None);
        // Flat requests/s without latency growing (a think-time bound
        // generator): no knee either.
        assert_eq!(report(vec![step(2, None), step(4, None)]).knee_users, None);
        // A step of one user in a hundred is no plateau.
        assert_eq!(report(saturating(&[100, 101], 6)).knee_users, None);
    }

    #[test]
    fn the_answer_comes_from_the_steps() {
        let fail = Some(Criterion::failing("error-rate<=1%", "50%"));
        let r = report(vec![step(2, None), step(4, None), step(6, fail.clone())]);
        assert_eq!(r.threshold_users, Some(6));
        assert_eq!(r.last_healthy_users, Some(4));
        assert_eq!(r.criterion, fail);
        // Refinement probes below the first failing count move both ends.
        let r = report(vec![
            step(2, None),
            step(6, fail.clone()),
            step(4, None),
            step(5, Some(Criterion::failing("p95<=20ms", "20ms"))),
        ]);
        assert_eq!(r.threshold_users, Some(5));
        assert_eq!(r.last_healthy_users, Some(4));
        assert_eq!(r.criterion, Some(Criterion::failing("p95<=20ms", "20ms")));
        let users: Vec<u64> = r.steps_by_users().iter().map(|s| s.users).collect();
        assert_eq!(users, vec![2, 4, 5, 6]);
    }

    #[test]
    fn a_healthy_ramp_has_no_threshold() {
        let r = report(vec![step(2, None), step(4, None)]);
        assert_eq!(r.threshold_users, None);
        assert_eq!(r.criterion, None);
        assert_eq!(r.last_healthy_users, Some(4));
        assert!(r.answered());
        let r = report(vec![step(
            2,
            Some(Criterion::failing("error-rate<=1%", "50%")),
        )]);
        assert_eq!(r.last_healthy_users, None);
        assert_eq!(r.threshold_step().map(|s| s.users), Some(2));
    }

    #[test]
    fn json_has_the_issue_field_names() {
        let r = report(vec![step(2, None)]);
        let json = serde_json::to_value(&r).expect("serializes");
        for key in [
            "threshold_users",
            "last_healthy_users",
            "criterion",
            "steps",
        ] {
            assert!(json.get(key).is_some(), "{key} in {json}");
        }
        assert!(json["threshold_users"].is_null());
        assert!(json["criterion"].is_null());
        let step = &json["steps"][0];
        for key in [
            "users",
            "duration_s",
            "requests",
            "failures",
            "fail_ratio",
            "rps",
            "p50_ms",
            "p95_ms",
            "p99_ms",
        ] {
            assert!(step.get(key).is_some(), "{key} in {step}");
        }
    }
}
