//! Test plans: `--test-plan "users,time;users,time;..."`, in goose 0.19's
//! grammar and meaning, and where a run is in one.
//!
//! Each step goes linearly from the previous step's users (0 before the
//! first) to its own `users` over its `time`; a step that keeps the users
//! holds them. Steps are split by `;`, a step is `{users},{timespan}` with
//! white space ignored around each part; a time span is whole seconds (`90`)
//! or hours, minutes and seconds in that order (`1h30m`, `2m10s`), units in
//! either case, and an empty one is 0. A plan must start at least one user.
//!
//! One difference from goose, which keeps a last step's users running until
//! it is stopped: here the run ends with the plan, the last step's time
//! included (`-t` ends a run the same way), so a plan always ends by itself.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::master::MAX_RUN_TIME;
use crate::protocol::MAX_USERS_PER_WORKER;

/// The most steps a plan may have: a plan is written by hand on a command
/// line, and the page and `/stats/requests` show every step, so a bound
/// keeps both small (a step a minute for a week fits ten times over).
pub const MAX_PLAN_STEPS: usize = 1_000;

/// The most users a step may ask for: a thousand workers at goose's limit
/// per worker ([`MAX_USERS_PER_WORKER`]), beyond any fleet spotload
/// launches; the master still refuses, at start, more than its workers can
/// run.
pub const MAX_PLAN_USERS: u64 = 1_000 * MAX_USERS_PER_WORKER;

/// The longest a whole plan may last: the longest run ([`MAX_RUN_TIME`]),
/// so no deadline computed from a plan can overflow.
pub const MAX_PLAN_TIME: Duration = MAX_RUN_TIME;

/// What a step that does not parse is told, as goose words it.
const STEP_FORMAT: &str = "expected {users},{timespan} steps split by ';', e.g. \"10,1m;10,5m;0,30s\": {users} a whole number, {timespan} whole seconds or \"30s\", \"20m\", \"3h\", \"1h30m\"";

/// One step: reach `users` over `duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanStep {
    /// Users at the end of the step.
    pub users: u64,
    /// How long the step lasts, whole seconds.
    #[serde(rename = "seconds", with = "whole_seconds")]
    pub duration: Duration,
}

mod whole_seconds {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        <u64 as serde::Deserialize>::deserialize(d).map(Duration::from_secs)
    }
}

/// A checked test plan: 1 to [`MAX_PLAN_STEPS`] steps, each at most
/// [`MAX_PLAN_USERS`], at most [`MAX_PLAN_TIME`] in all, starting someone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestPlan {
    steps: Vec<PlanStep>,
}

/// Why a plan was refused; the message names the plan and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --test-plan {plan:?}: {reason}")]
pub struct PlanError {
    /// The plan as given.
    pub plan: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Where a run is in its plan, at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanPosition {
    /// The step under way (0-based); the last one once the plan is over.
    pub step: usize,
    /// Time since the plan started.
    pub elapsed: Duration,
    /// The users the plan asks for now.
    pub target: u64,
    /// Whether the plan's time is over.
    pub finished: bool,
}

/// A plan and where the run is in it, as `/stats/requests` (our key
/// `test_plan`) and the page show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanState {
    /// The plan in canonical form (`users,seconds;...`).
    pub plan: String,
    /// Its steps, in order.
    pub steps: Vec<PlanStep>,
    /// The whole plan's length, seconds.
    pub seconds: u64,
    /// The step under way, 0-based; `None` before a run started it.
    pub step: Option<usize>,
    /// Seconds since the run started the plan (frozen when it ended).
    pub elapsed: f64,
    /// The users the plan asks for now.
    pub target_users: u64,
    /// Whether the run went through the whole plan.
    pub finished: bool,
}

impl PlanState {
    /// `plan` not started yet.
    pub fn ready(plan: &TestPlan) -> PlanState {
        PlanState {
            plan: plan.to_string(),
            steps: plan.steps.clone(),
            seconds: plan.duration().as_secs(),
            step: None,
            elapsed: 0.0,
            target_users: 0,
            finished: false,
        }
    }

    /// `plan` at `position`.
    pub fn at(plan: &TestPlan, position: PlanPosition) -> PlanState {
        PlanState {
            step: Some(position.step),
            elapsed: position.elapsed.as_secs_f64(),
            target_users: position.target,
            finished: position.finished,
            ..PlanState::ready(plan)
        }
    }
}

impl TestPlan {
    /// The steps, in order.
    pub fn steps(&self) -> &[PlanStep] {
        &self.steps
    }

    /// The whole plan's length.
    pub fn duration(&self) -> Duration {
        self.steps.iter().map(|s| s.duration).sum()
    }

    /// The most users any step asks for.
    pub fn peak_users(&self) -> u64 {
        self.steps.iter().map(|s| s.users).max().unwrap_or(0)
    }

    /// Where a plan that started `elapsed` ago is: its step, and its users
    /// now, moved linearly from the previous step's (rounded toward them,
    /// as goose starts a step's users one at a time over its time).
    pub fn position(&self, elapsed: Duration) -> PlanPosition {
        let mut from = 0u64;
        let mut start = Duration::ZERO;
        for (step, s) in self.steps.iter().enumerate() {
            let end = start.saturating_add(s.duration);
            if elapsed < end {
                let into = elapsed.saturating_sub(start).as_secs_f64();
                let share = into / s.duration.as_secs_f64();
                let moved = (s.users.abs_diff(from) as f64 * share).floor() as u64;
                let target = if s.users >= from {
                    from.saturating_add(moved).min(s.users)
                } else {
                    from.saturating_sub(moved).max(s.users)
                };
                return PlanPosition {
                    step,
                    elapsed,
                    target,
                    finished: false,
                };
            }
            from = s.users;
            start = end;
        }
        PlanPosition {
            step: self.steps.len().saturating_sub(1),
            elapsed,
            target: from,
            finished: true,
        }
    }
}

impl FromStr for TestPlan {
    type Err = PlanError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let refuse = |reason: String| PlanError {
            plan: text.to_string(),
            reason,
        };
        let mut steps = Vec::new();
        for (index, part) in text.split(';').enumerate() {
            if index >= MAX_PLAN_STEPS {
                return Err(refuse(format!("more than {MAX_PLAN_STEPS} steps")));
            }
            let step = parse_step(part)
                .map_err(|why| refuse(format!("step {} ({part:?}): {why}", index + 1)))?;
            steps.push(step);
        }
        if steps.iter().all(|s| s.users == 0) {
            return Err(refuse(
                "it starts no users: at least one step needs users".into(),
            ));
        }
        let total = steps
            .iter()
            .try_fold(Duration::ZERO, |sum, s| sum.checked_add(s.duration))
            .filter(|total| *total <= MAX_PLAN_TIME);
        if total.is_none() {
            return Err(refuse(format!(
                "it lasts more than the longest run, {} days",
                MAX_PLAN_TIME.as_secs() / 86_400
            )));
        }
        Ok(TestPlan { steps })
    }
}

/// One `{users},{timespan}` step; the error says what is wrong with it.
fn parse_step(part: &str) -> Result<PlanStep, String> {
    let (users, time) = part.split_once(',').ok_or(STEP_FORMAT)?;
    let users = users.trim();
    if users.is_empty() || !users.bytes().all(|b| b.is_ascii_digit()) {
        return Err(STEP_FORMAT.into());
    }
    let users = users
        .parse::<u64>()
        .ok()
        .filter(|u| *u <= MAX_PLAN_USERS)
        .ok_or_else(|| format!("asks for more than {MAX_PLAN_USERS} users"))?;
    let seconds = step_seconds(time.trim()).ok_or(STEP_FORMAT)?;
    if seconds > MAX_PLAN_TIME.as_secs() {
        return Err(format!(
            "lasts more than the longest run, {} days",
            MAX_PLAN_TIME.as_secs() / 86_400
        ));
    }
    Ok(PlanStep {
        users,
        duration: Duration::from_secs(seconds),
    })
}

/// goose's time span: whole seconds, or `h`, `m`, `s` parts in that order,
/// each at most once, units in either case; empty is 0. `None` when it is
/// none of those (or too large for a `u64`).
fn step_seconds(span: &str) -> Option<u64> {
    if span.bytes().all(|b| b.is_ascii_digit()) {
        return if span.is_empty() {
            Some(0)
        } else {
            span.parse().ok()
        };
    }
    let mut total = 0u64;
    let mut digits = 0..0;
    let mut last_rank = 0;
    for (i, b) in span.bytes().enumerate() {
        if b.is_ascii_digit() {
            if digits.is_empty() {
                digits = i..i;
            }
            digits.end = i + 1;
            continue;
        }
        let (rank, scale) = match b.to_ascii_lowercase() {
            b'h' => (1, 3_600),
            b'm' => (2, 60),
            b's' => (3, 1),
            _ => return None,
        };
        if digits.is_empty() || rank <= last_rank {
            return None;
        }
        let n: u64 = span.get(digits.clone())?.parse().ok()?;
        total = total.checked_add(n.checked_mul(scale)?)?;
        digits = 0..0;
        last_rank = rank;
    }
    digits.is_empty().then_some(total)
}

/// The canonical form, as goose writes it: each step's time in whole
/// seconds (`10,1h30m` is `10,5400`); it parses back to the same plan.
impl fmt::Display for TestPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, step) in self.steps.iter().enumerate() {
            if index > 0 {
                f.write_str(";")?;
            }
            write!(f, "{},{}", step.users, step.duration.as_secs())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(plan: &str) -> Vec<(u64, u64)> {
        plan.parse::<TestPlan>()
            .expect(plan)
            .steps()
            .iter()
            .map(|s| (s.users, s.duration.as_secs()))
            .collect()
    }

    #[test]
    fn goose_grammar_parses_the_same_steps() {
        for (plan, expected) in [
            ("10,", vec![(10, 0)]),
            ("10,90", vec![(10, 90)]),
            ("10,1h30m", vec![(10, 5_400)]),
            ("0,5s;10,20s", vec![(0, 5), (10, 20)]),
            (" 3 , 2m10s ;0,1h2m3s", vec![(3, 130), (0, 3_723)]),
            ("2,1M", vec![(2, 60)]),
            ("10,1H30M;0,5S", vec![(10, 5_400), (0, 5)]),
        ] {
            assert_eq!(steps(plan), expected, "{plan}");
        }
    }

    #[test]
    fn goose_refusals_are_refused_naming_the_plan() {
        for plan in [
            "2,15mins",
            "2,5 junk",
            "2,1m1h",
            "2,h",
            "2,1d",
            "2,ms",
            "2,s",
            "2,1h1h",
            "2,1h 30m",
            "2,5\u{17f}",
            "2,\u{661}h",
            "x",
            "2",
            "",
            "2,5s;",
            "-1,5s",
            "0,5s;0,1s",
        ] {
            let err = plan.parse::<TestPlan>().expect_err(plan);
            assert!(err.to_string().contains(&format!("{plan:?}")), "{err}");
        }
        let none = "0,5s".parse::<TestPlan>().expect_err("no users");
        assert!(none.reason.contains("starts no users"), "{none}");
    }

    #[test]
    fn bounds_are_named() {
        let long = "1,1;".repeat(MAX_PLAN_STEPS) + "1,1";
        let err = long.parse::<TestPlan>().expect_err("too many steps");
        assert!(
            err.reason.contains("more than 1000 steps"),
            "{}",
            err.reason
        );
        let err = format!("{},1s", MAX_PLAN_USERS + 1)
            .parse::<TestPlan>()
            .expect_err("too many users");
        assert!(err.reason.contains("users"), "{}", err.reason);
        let err = "1,721h".parse::<TestPlan>().expect_err("too long");
        assert!(err.reason.contains("longest run"), "{}", err.reason);
        let err = "1,400h;1,400h".parse::<TestPlan>().expect_err("too long");
        assert!(err.reason.contains("longest run"), "{}", err.reason);
        let huge = "1,99999999999999999999999".parse::<TestPlan>();
        assert!(huge.is_err());
    }

    #[test]
    fn display_round_trips_in_canonical_form() {
        for (plan, written) in [
            ("10,5s;10,30s;0,5s", "10,5;10,30;0,5"),
            ("10,1h30m;0,0", "10,5400;0,0"),
            (" 3 , 2m10s ;0,1h2m3s", "3,130;0,3723"),
        ] {
            let parsed: TestPlan = plan.parse().expect(plan);
            assert_eq!(parsed.to_string(), written);
            assert_eq!(written.parse::<TestPlan>().expect(written), parsed);
        }
    }

    #[test]
    fn position_moves_linearly_and_ends_with_the_plan() {
        let plan: TestPlan = "4,4s;4,2s;0,2s".parse().expect("plan");
        assert_eq!(plan.duration(), Duration::from_secs(8));
        assert_eq!(plan.peak_users(), 4);
        let at = |ms: u64| plan.position(Duration::from_millis(ms));
        assert_eq!((at(0).step, at(0).target), (0, 0));
        assert_eq!(at(1_000).target, 1);
        assert_eq!(at(2_999).target, 2);
        assert_eq!((at(4_000).step, at(4_000).target), (1, 4));
        assert_eq!((at(6_500).step, at(6_500).target), (2, 3));
        assert!(!at(7_999).finished);
        let end = at(8_000);
        assert!(end.finished);
        assert_eq!((end.step, end.target), (2, 0));
        // A step of no time jumps at once.
        let jump: TestPlan = "5,0;5,1s".parse().expect("plan");
        assert_eq!(jump.position(Duration::ZERO).target, 5);
    }
}
