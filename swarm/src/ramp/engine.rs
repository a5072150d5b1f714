//! The step loop: set the users, wait until they run, let the previous
//! step's reports drain, measure a window, judge it; stop at the first
//! failing step, then bisect if asked.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::bisect::Bisection;
use super::driver::{RampDriver, RampDriverError, Reading};
use super::plan::RampPlan;
use super::result::RampReport;
use super::step::StepResult;
use crate::master::WorkerEventKind;
use crate::stats::now_epoch;

/// How often one user count is measured again after workers came or went
/// during its window, before the ramp gives up.
const MAX_ATTEMPTS: u32 = 3;

/// How often that wait polls.
const POLL: Duration = Duration::from_millis(250);

/// How often a window reads the workers' CPU (they report it every second).
const CPU_POLL: Duration = Duration::from_secs(1);

/// Why a ramp could not measure; the message goes to the terminal and to
/// `ramp.json`'s `error`.
#[derive(Debug, thiserror::Error)]
pub enum Unmeasurable {
    /// No worker is left to generate the load.
    #[error("every worker has gone (at the {users}-user step): nothing generates load")]
    NoWorkers {
        /// The step's user count.
        users: u64,
    },
    /// The first step's requests all failed without an HTTP response.
    #[error("the target is unreachable: every one of the {requests} requests of the first step ({users} users) failed without an HTTP response, e.g. {example:?}; check the target address (--host) and that the server is up")]
    Unreachable {
        /// The first step's user count.
        users: u64,
        /// How many requests it sent, all failed.
        requests: u64,
        /// One of the errors, to say what went wrong.
        example: String,
    },
    /// A step's window saw no finished request.
    #[error("no request finished during the {users}-user step's {window_s:.0} s window (waited for late reports too): the target may have stopped answering, or the workers are overloaded; a longer --step-time may help")]
    NoRequests {
        /// The step's user count.
        users: u64,
        /// The window's length, seconds.
        window_s: f64,
    },
    /// The worker count changed during every try at a step's window.
    #[error("workers kept joining or leaving during the {users}-user step ({MAX_ATTEMPTS} tries); no stable window to measure")]
    Unstable {
        /// The step's user count.
        users: u64,
    },
    /// The master could not be driven.
    #[error(transparent)]
    Driver(#[from] RampDriverError),
}

/// Hears about the ramp as it goes: the terminal table, or a test.
pub trait Progress: Send {
    /// A step is about to start.
    fn step_started(&mut self, _users: u64) {}
    /// A step was measured and judged.
    fn step_done(&mut self, _step: &StepResult) {}
    /// Something the report notes (also pushed to `RampReport::notes`).
    fn note(&mut self, _text: &str) {}
}

/// Ignores everything.
pub struct Quiet;

impl Progress for Quiet {}

/// One user count's attempt: measured, or spoiled by workers coming or going.
enum Window {
    Measured(StepResult),
    WorkersChanged { before: usize, after: usize },
}

/// The state of one run, owned while it goes.
struct Run<'a> {
    driver: &'a dyn RampDriver,
    plan: &'a RampPlan,
    report: &'a mut RampReport,
    progress: &'a mut dyn Progress,
    /// Users asked for last, to bound the next spawn wait.
    current_users: u64,
    /// Workers seen at the end of the last measured step, to note a
    /// change between steps.
    known_workers: Option<usize>,
    /// Time of the newest fleet event already noted.
    events_noted: f64,
}

/// Runs the ramp to its end, filling `report` (steps, answer, `error`) as it
/// goes, so a caller that stops it early (Ctrl-C) keeps what was measured.
/// Stops the users at the end.
pub async fn run_ramp(
    driver: &dyn RampDriver,
    plan: &RampPlan,
    report: &mut RampReport,
    progress: &mut dyn Progress,
) {
    let mut run = Run {
        driver,
        plan,
        report,
        progress,
        current_users: 0,
        known_workers: None,
        events_noted: now_epoch(),
    };
    if let Err(err) = run.steps().await {
        run.report.error = Some(err.to_string());
    }
    run.report.conclude();
    run.report.finished_at = Some(now_epoch());
    if let Err(err) = driver.stop().await {
        tracing::warn!("could not stop the users after the ramp: {err}");
    }
}

impl Run<'_> {
    async fn steps(&mut self) -> Result<(), Unmeasurable> {
        for (i, users) in self.plan.spec.user_counts().into_iter().enumerate() {
            let step = self.measure(users, i == 0).await?;
            let healthy = step.is_healthy();
            self.record(step);
            if !healthy {
                break;
            }
        }
        if self.plan.refine {
            self.refine().await?;
        }
        Ok(())
    }

    /// Bisects between the last healthy and the first failing count.
    async fn refine(&mut self) -> Result<(), Unmeasurable> {
        self.report.conclude();
        let Some(failing) = self.report.threshold_users else {
            return Ok(());
        };
        let healthy = self.report.last_healthy_users.unwrap_or(0);
        let Some(mut bracket) = Bisection::new(healthy, failing) else {
            return Ok(());
        };
        if bracket.probe().is_none() {
            self.note(format!(
                "--refine: {healthy} and {failing} users are adjacent; the threshold is exact"
            ));
        }
        while let Some(users) = bracket.probe() {
            let step = self.measure(users, false).await?;
            bracket.record(users, step.is_healthy());
            self.record(step);
        }
        Ok(())
    }

    fn record(&mut self, step: StepResult) {
        self.progress.step_done(&step);
        self.report.steps.push(step);
        self.report.conclude();
    }

    fn note(&mut self, text: String) {
        tracing::warn!("{text}");
        self.progress.note(&text);
        self.report.notes.push(text);
    }

    /// Measures `users`, again when workers came or went during the window.
    async fn measure(&mut self, users: u64, first: bool) -> Result<StepResult, Unmeasurable> {
        self.progress.step_started(users);
        for attempt in 1..=MAX_ATTEMPTS {
            match self.attempt(users, first).await? {
                Window::Measured(step) => return Ok(step),
                Window::WorkersChanged { before, after } => {
                    self.known_workers = Some(after);
                    let again = if attempt < MAX_ATTEMPTS {
                        format!("; measuring {users} users again with {after}")
                    } else {
                        String::new()
                    };
                    self.note(format!(
                        "workers changed from {before} to {after} during the {users}-user step{again}"
                    ));
                }
            }
        }
        Err(Unmeasurable::Unstable { users })
    }

    async fn attempt(&mut self, users: u64, first: bool) -> Result<Window, Unmeasurable> {
        let spawned = self.spawn(users).await?;
        tokio::time::sleep(self.plan.settle).await;
        let start = self.read_with_workers(users).await?;
        if start.workers != spawned.workers {
            return Ok(changed(spawned.workers, start.workers));
        }
        let opened = Instant::now();
        let mut cpu = start.worker_cpu;
        let closes = opened + self.plan.window;
        // Heartbeats carry the workers' CPU every second: watch it through
        // the window, so a saturated generator is seen even briefly.
        while let Some(left) = closes.checked_duration_since(Instant::now()) {
            if left.is_zero() {
                break;
            }
            tokio::time::sleep(left.min(CPU_POLL)).await;
            if Instant::now() < closes {
                if let Ok(reading) = self.driver.read().await {
                    cpu = cpu.max(reading.worker_cpu);
                }
            }
        }
        let end = self.read_with_workers(users).await?;
        let cpu = cpu.max(end.worker_cpu);
        let end = self.await_late_reports(users, &start, end).await?;
        if end.workers != start.workers {
            return Ok(changed(start.workers, end.workers));
        }
        let window = end.total.since(&start.total);
        let duration = opened.elapsed().as_secs_f64();
        let mut step = StepResult::measure(users, end.workers, &window, duration);
        step.worker_cpu = (cpu * 1000.0).round() / 1000.0;
        if step.requests == 0 {
            return Err(Unmeasurable::NoRequests {
                users,
                window_s: duration,
            });
        }
        if first {
            check_reachable(&step, &start.errors, &end.errors)?;
        }
        step.failed = self.plan.limits.judge(&step, &window);
        Ok(Window::Measured(step))
    }

    /// Asks for `users` and waits (bounded) until they run.
    async fn spawn(&mut self, users: u64) -> Result<Reading, Unmeasurable> {
        self.driver.set_users(users, self.plan.spawn_rate).await?;
        let limit = self.plan.spawn_limit(self.current_users, users);
        let previous = self.current_users;
        self.current_users = users;
        let (reading, done) = self.driver.wait_spawned(users, limit).await?;
        if reading.workers == 0 {
            return Err(Unmeasurable::NoWorkers { users });
        }
        if !done {
            self.note(format!(
                "spawning {users} users did not complete within {:.0} s ({} running on {} workers); measured anyway",
                limit.as_secs_f64(),
                reading.users,
                reading.workers
            ));
        }
        if let Some(known) = self.known_workers.filter(|k| *k != reading.workers) {
            self.note(format!(
                "workers changed from {known} to {} between the {previous}- and {users}-user steps; the ramp goes on with {}",
                reading.workers, reading.workers
            ));
        }
        self.known_workers = Some(reading.workers);
        Ok(reading)
    }

    /// A window no report reached is extended until one does (a loaded
    /// worker can send late), by at most `plan.late_reports`; the step's
    /// duration is then the longer window.
    async fn await_late_reports(
        &mut self,
        users: u64,
        start: &Reading,
        mut end: Reading,
    ) -> Result<Reading, Unmeasurable> {
        let arrived = |r: &Reading| r.total.num_requests != start.total.num_requests;
        if arrived(&end) {
            return Ok(end);
        }
        let waited = Instant::now();
        while !arrived(&end)
            && waited.elapsed() < self.plan.late_reports
            && end.workers == start.workers
        {
            tokio::time::sleep(POLL).await;
            end = self.read_with_workers(users).await?;
        }
        if arrived(&end) {
            self.note(format!(
                "no report reached the {users}-user step's window in time; it was extended by {:.1} s",
                waited.elapsed().as_secs_f64()
            ));
        }
        Ok(end)
    }

    async fn read_with_workers(&mut self, users: u64) -> Result<Reading, Unmeasurable> {
        let reading = self.driver.read().await?;
        self.note_events(&reading, users);
        if reading.workers == 0 {
            return Err(Unmeasurable::NoWorkers { users });
        }
        Ok(reading)
    }

    /// Notes the fleet events (a reclaimed, missing or returning worker)
    /// that happened since the last reading, beside the step they hit.
    fn note_events(&mut self, reading: &Reading, users: u64) {
        let fresh: Vec<String> = reading
            .events
            .iter()
            .filter(|e| e.time > self.events_noted && e.event != WorkerEventKind::Joined)
            .map(|e| {
                let detail = if e.detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", e.detail)
                };
                format!(
                    "worker {} {}{detail} during the {users}-user step",
                    e.worker,
                    event_words(e.event)
                )
            })
            .collect();
        if let Some(newest) = reading.events.iter().map(|e| e.time).reduce(f64::max) {
            self.events_noted = self.events_noted.max(newest);
        }
        for text in fresh {
            self.note(text);
        }
    }
}

fn event_words(event: WorkerEventKind) -> &'static str {
    match event {
        WorkerEventKind::Joined => "joined",
        WorkerEventKind::Missing => "went missing",
        WorkerEventKind::Back => "came back",
        WorkerEventKind::Quit => "quit",
        WorkerEventKind::Reclaimed => "was reclaimed by a spot interruption",
    }
}

fn changed(before: usize, after: usize) -> Window {
    Window::WorkersChanged { before, after }
}

/// Whether an error is an HTTP answer (goose: `503 Service Unavailable: /`;
/// Locust: `HTTPError('503 Server Error: ...')`) rather than a request that
/// never got one (refused, reset, timed out, DNS).
pub fn is_http_error(text: &str) -> bool {
    let bytes = text.trim_start().as_bytes();
    let status = bytes.len() >= 4
        && bytes[..3].iter().all(u8::is_ascii_digit)
        && matches!(bytes[3], b' ' | b':');
    status || text.starts_with("HTTPError(")
}

/// Refuses a first step whose every request failed without an HTTP answer.
fn check_reachable(
    step: &StepResult,
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> Result<(), Unmeasurable> {
    if step.failures < step.requests {
        return Ok(());
    }
    let new: Vec<(&String, u64)> = after
        .iter()
        .map(|(text, n)| {
            (
                text,
                n.saturating_sub(before.get(text).copied().unwrap_or(0)),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    let transport: u64 = new
        .iter()
        .filter(|(text, _)| !is_http_error(text))
        .map(|(_, n)| n)
        .sum();
    if transport == 0 || transport < step.failures {
        return Ok(());
    }
    let example = new
        .iter()
        .filter(|(text, _)| !is_http_error(text))
        .max_by_key(|(_, n)| *n)
        .map(|(text, _)| text.to_string())
        .unwrap_or_default();
    Err(Unmeasurable::Unreachable {
        users: step.users,
        requests: step.requests,
        example,
    })
}
