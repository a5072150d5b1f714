//! The step loop against a fake master whose target breaks at a known user
//! count: every read advances it one tick, so runs are exact and instant.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::*;
use crate::master::{RunState, WorkerEvent, WorkerEventKind};
use crate::stats::StatsEntry;

/// What the fake target and its workers do.
#[derive(Default)]
struct Script {
    /// From this many users on, half the requests get a 503.
    breaks_at: Option<u64>,
    /// Every request fails without an HTTP answer.
    unreachable: bool,
    /// At these read numbers one worker goes away.
    drop_worker_at: Vec<usize>,
    /// These reads bring no new requests (a late report).
    silent_reads: Vec<usize>,
    /// At these read numbers a worker is reclaimed (a spot notice event).
    reclaim_at: Vec<usize>,
    /// From this many users on, the worker's CPU is saturated (97%).
    saturates_at: Option<u64>,
    workers: usize,
}

struct Fake {
    script: Script,
    state: Mutex<FakeState>,
}

struct FakeState {
    users: u64,
    /// The arrival rate asked, in a rate ramp.
    rate: Option<u64>,
    workers: usize,
    reads: usize,
    total: StatsEntry,
    errors: BTreeMap<String, u64>,
    events: Vec<WorkerEvent>,
}

impl Fake {
    fn new(script: Script) -> Fake {
        let workers = script.workers.max(1);
        Fake {
            script,
            state: Mutex::new(FakeState {
                users: 0,
                rate: None,
                workers,
                reads: 0,
                total: StatsEntry::new("Aggregated", "", 0.0),
                errors: BTreeMap::new(),
                events: Vec::new(),
            }),
        }
    }

    fn error() -> RampDriverError {
        RampDriverError::Remote {
            url: "fake".into(),
            message: "poisoned".into(),
        }
    }
}

#[async_trait]
impl RampDriver for Fake {
    async fn set_load(&self, users: u64, _spawn: f64, rate: f64) -> Result<(), RampDriverError> {
        let mut s = self.state.lock().map_err(|_| Fake::error())?;
        s.users = users;
        s.rate = (rate > 0.0).then_some(rate as u64);
        Ok(())
    }

    /// One tick: each user makes ten requests taking `users × 10` ms; in a
    /// rate ramp the rate stands for the users.
    async fn read(&self) -> Result<Reading, RampDriverError> {
        let mut s = self.state.lock().map_err(|_| Fake::error())?;
        s.reads += 1;
        if self.script.drop_worker_at.contains(&s.reads) {
            s.workers = s.workers.saturating_sub(1);
        }
        if self.script.reclaim_at.contains(&s.reads) {
            s.workers = s.workers.saturating_sub(1);
            let worker = format!("w{}", s.reads);
            s.events.push(WorkerEvent {
                time: crate::stats::now_epoch(),
                worker,
                event: WorkerEventKind::Reclaimed,
                detail: "terminate at 2026-11-30T12:00:00Z".into(),
            });
        }
        let load = s.rate.unwrap_or(s.users);
        let requests = if self.script.silent_reads.contains(&s.reads) {
            0
        } else {
            load * 10
        };
        let (failures, error) = if self.script.unreachable {
            (requests, "error sending request /: Connection refused")
        } else if self.script.breaks_at.is_some_and(|b| load >= b) {
            (requests / 2, "503 Service Unavailable: /")
        } else {
            (0, "")
        };
        let ms = (load * 10) as f64;
        s.total.log(ms, requests - failures, false, 1.0);
        s.total.log(ms, failures, true, 1.0);
        if failures > 0 {
            *s.errors.entry(error.to_string()).or_default() += failures;
        }
        Ok(Reading {
            total: s.total.clone(),
            errors: s.errors.clone(),
            workers: s.workers,
            users: if s.workers > 0 { s.users } else { 0 },
            target_users: s.users,
            state: RunState::Running,
            events: s.events.clone(),
            worker_cpu: if self.script.saturates_at.is_some_and(|at| s.users >= at) {
                0.97
            } else {
                0.3
            },
        })
    }

    async fn stop(&self) -> Result<(), RampDriverError> {
        self.state.lock().map_err(|_| Fake::error())?.users = 0;
        Ok(())
    }
}

/// The rule the ramp's threshold step broke.
fn criterion(report: &RampReport) -> Option<&str> {
    report.criterion.as_ref().map(Criterion::as_str)
}

fn plan(spec: &str, limits: Limits, refine: bool) -> RampPlan {
    let spec = RampSpec::parse(spec).expect("spec");
    let mut plan = RampPlan::new(spec, Duration::from_secs(3), limits, 1000.0);
    plan.window = Duration::from_millis(1);
    plan.settle = Duration::from_millis(1);
    plan.refine = refine;
    plan
}

async fn ramp(script: Script, plan: &RampPlan) -> RampReport {
    let fake = Fake::new(script);
    let mut report = RampReport::new(plan, None, 0.0);
    run_ramp(&fake, plan, &mut report, &mut Quiet).await;
    report
}

fn users(report: &RampReport) -> Vec<u64> {
    report.steps.iter().map(|s| s.users).collect()
}

fn breaking_at(users: u64) -> Script {
    Script {
        breaks_at: Some(users),
        ..Script::default()
    }
}

#[tokio::test]
async fn stops_at_the_first_failing_step() {
    let r = ramp(breaking_at(7), &plan("2:2:10", Limits::default(), false)).await;
    assert_eq!(users(&r), vec![2, 4, 6, 8]);
    assert_eq!(r.threshold_users, Some(8));
    assert_eq!(r.last_healthy_users, Some(6));
    assert_eq!(criterion(&r), Some("error-rate<=1%"));
    assert_eq!(r.error, None);
    let six = &r.steps[2];
    assert_eq!((six.requests, six.failures), (60, 0), "one tick per window");
    // The fake logs every request at users x 10 ms: to the microsecond.
    assert!((six.p95_ms - 60.0).abs() <= 0.06, "{}", six.p95_ms);
}

#[tokio::test]
async fn refine_bisects_to_the_exact_count() {
    let r = ramp(breaking_at(7), &plan("2:4:14", Limits::default(), true)).await;
    assert_eq!(users(&r), vec![2, 6, 10, 8, 7]);
    assert_eq!(r.threshold_users, Some(7));
    assert_eq!(r.last_healthy_users, Some(6));
    // A failing first step is bisected from no load.
    let r = ramp(breaking_at(3), &plan("8:8:16", Limits::default(), true)).await;
    assert_eq!(users(&r), vec![8, 4, 2, 3]);
    assert_eq!(
        (r.threshold_users, r.last_healthy_users),
        (Some(3), Some(2))
    );
}

#[tokio::test]
async fn a_healthy_target_reaches_max() {
    let r = ramp(Script::default(), &plan("2:3:10", Limits::default(), true)).await;
    assert_eq!(users(&r), vec![2, 5, 8, 10]);
    assert_eq!(r.threshold_users, None);
    assert_eq!(r.criterion, None);
    assert_eq!(r.last_healthy_users, Some(10));
    assert!(r.answered());
}

#[tokio::test]
async fn a_p95_limit_can_set_the_threshold() {
    let limits = Limits::new(0.01, Some(45.0), None, &[]).expect("limits");
    let r = ramp(Script::default(), &plan("2:2:10", limits, false)).await;
    assert_eq!(r.threshold_users, Some(6));
    assert_eq!(criterion(&r), Some("p95<=45ms"));
}

#[tokio::test]
async fn an_unreachable_target_gives_no_answer() {
    let script = Script {
        unreachable: true,
        ..Script::default()
    };
    let r = ramp(script, &plan("2:2:10", Limits::default(), true)).await;
    assert!(r.steps.is_empty());
    let error = r.error.clone().unwrap_or_default();
    assert!(error.contains("unreachable"), "{error}");
    assert!(error.contains("Connection refused"), "{error}");
    assert_eq!(r.threshold_users, None);
    assert!(!r.answered());
}

#[tokio::test]
async fn a_fractional_p99_limit_is_judged_to_the_microsecond() {
    // Steps log users x 10 ms: 40 ms at 4 users passes 40.5, 60 ms fails.
    let limits = Limits::new(0.01, None, Some(40.5), &[]).expect("limits");
    let r = ramp(Script::default(), &plan("2:2:10", limits, false)).await;
    assert_eq!(r.threshold_users, Some(6));
    assert_eq!(criterion(&r), Some("p99<=40.5ms"));
    assert_eq!(r.last_healthy_users, Some(4));
}

#[tokio::test]
async fn a_saturated_generator_ends_the_ramp_generator_bound() {
    let script = Script {
        saturates_at: Some(6),
        breaks_at: Some(8),
        ..Script::default()
    };
    let r = ramp(script, &plan("2:2:10", Limits::default(), false)).await;
    assert_eq!(
        users(&r),
        vec![2, 4, 6],
        "no step after the generator saturated"
    );
    assert_eq!(r.generator_bound_users, Some(6));
    assert_eq!(r.threshold_users, None, "no target threshold was found");
    assert_eq!(r.criterion, Some(Criterion::GeneratorCpu));
    assert_eq!(r.last_healthy_users, Some(4));
    assert_eq!(r.steps[2].worker_cpu, 0.97);
    assert!(r.answered());
}

#[tokio::test]
async fn a_lost_worker_repeats_the_step_and_is_noted() {
    // Reads per attempt: spawn poll, window start, window end; read 8 is
    // the third step's window start, so that attempt is spoiled.
    let script = Script {
        breaks_at: Some(7),
        workers: 2,
        drop_worker_at: vec![8],
        ..Script::default()
    };
    let r = ramp(script, &plan("2:2:10", Limits::default(), false)).await;
    assert_eq!(users(&r), vec![2, 4, 6, 8]);
    assert_eq!(r.threshold_users, Some(8));
    assert_eq!(r.notes.len(), 1, "{:?}", r.notes);
    assert!(r.notes[0].contains("from 2 to 1 during the 6-user step"));
    let workers: Vec<usize> = r.steps.iter().map(|s| s.workers).collect();
    assert_eq!(workers, vec![2, 2, 1, 1]);
}

#[tokio::test]
async fn a_reclaimed_worker_is_noted_beside_its_step() {
    let script = Script {
        workers: 2,
        reclaim_at: vec![5],
        ..Script::default()
    };
    let report = ramp(script, &plan("2:2:4", Limits::default(), false)).await;
    let noted: Vec<&String> = report
        .notes
        .iter()
        .filter(|n| n.contains("reclaimed by a spot interruption"))
        .collect();
    assert_eq!(noted.len(), 1, "{:?}", report.notes);
    assert!(
        noted[0].contains("terminate at 2026-11-30T12:00:00Z") && noted[0].contains("-user step"),
        "{}",
        noted[0]
    );
    assert!(report.error.is_none(), "{:?}", report.error);
}

#[tokio::test]
async fn a_worker_lost_between_steps_is_noted() {
    // Read 4 is the second step's spawn poll.
    let script = Script {
        workers: 3,
        drop_worker_at: vec![4],
        ..Script::default()
    };
    let r = ramp(script, &plan("2:2:6", Limits::default(), false)).await;
    assert_eq!(users(&r), vec![2, 4, 6]);
    assert_eq!(
        r.notes,
        vec![
            "workers changed from 3 to 2 between the 2-user and 4-user steps; the ramp goes on with 2"
        ]
    );
    assert!(r.answered());
}

#[tokio::test]
async fn a_late_report_extends_the_window() {
    // Read 3 is the first step's window end.
    let script = Script {
        silent_reads: vec![3],
        ..Script::default()
    };
    let r = ramp(script, &plan("2:2:4", Limits::default(), false)).await;
    assert_eq!(users(&r), vec![2, 4]);
    assert_eq!(r.steps[0].requests, 20);
    assert!(r.notes[0].contains("2-user step's window in time; it was extended by"));
    // A window nothing reaches at all cannot be judged.
    let script = Script {
        silent_reads: (6..200).collect(),
        ..Script::default()
    };
    let mut plan = plan("2:2:4", Limits::default(), false);
    plan.late_reports = Duration::from_millis(600);
    let r = ramp(script, &plan).await;
    assert_eq!(users(&r), vec![2]);
    let error = r.error.clone().unwrap_or_default();
    assert!(
        error.contains("no request finished during the 4-user step"),
        "{error}"
    );
}

#[tokio::test]
async fn losing_every_worker_ends_without_an_answer() {
    let script = Script {
        workers: 1,
        drop_worker_at: vec![5],
        ..Script::default()
    };
    let r = ramp(script, &plan("2:2:10", Limits::default(), false)).await;
    assert_eq!(users(&r), vec![2]);
    let error = r.error.clone().unwrap_or_default();
    assert!(error.contains("every worker has gone"), "{error}");
}

#[test]
fn http_errors_are_told_from_transport_errors() {
    assert!(is_http_error("503 Service Unavailable: /"));
    assert!(is_http_error("500: /"));
    assert!(is_http_error("HTTPError('503 Server Error: x')"));
    assert!(!is_http_error(
        "error sending request /: Connection refused"
    ));
    assert!(!is_http_error(
        "ConnectionRefusedError(111, 'Connection refused')"
    ));
    assert!(!is_http_error("12"));
}

/// A rate ramp steps the arrival rate with the pool of users fixed; its
/// answer is in iterations per second, and refinement bisects in rate.
#[tokio::test]
async fn a_rate_ramp_steps_the_rate_and_answers_in_it() {
    let script = Script {
        breaks_at: Some(7),
        ..Script::default()
    };
    let mut rate_plan = plan("2:2:10", Limits::default(), true);
    rate_plan.pool = Some(40);
    let r = ramp(script, &rate_plan).await;
    assert_eq!((r.threshold_rps, r.last_healthy_rps), (Some(7), Some(6)));
    assert_eq!((r.threshold_users, r.last_healthy_users), (None, None));
    assert!(r.steps.iter().all(|s| s.users == 40), "{:?}", r.steps);
    let rates: Vec<Option<u64>> = r.steps.iter().map(|s| s.arrival_rate).collect();
    assert_eq!(rates, [Some(2), Some(4), Some(6), Some(8), Some(7)]);
    let json = serde_json::to_value(&r).expect("serializes");
    assert_eq!(
        (json["threshold_rps"].as_u64(), json["pool_users"].as_u64()),
        (Some(7), Some(40))
    );
}
