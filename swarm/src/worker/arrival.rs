//! The open model's schedule: [`Arrivals`] hands out iteration starts at a
//! set rate, whatever the target's latency, as k6's arrival-rate executors
//! and wrk2 do. A user free for its next iteration waits for a start; the
//! schedule gives each start, when it falls due, to a waiting user, or,
//! when none waits (every user is busy with an iteration), drops it and
//! counts it (k6's `dropped_iterations`). A start is never queued for
//! later: a late start would measure the schedule, not the target.
//!
//! **Smooth, not bursty.** Start `k` falls due at `t0 + k / rate`, computed
//! from the schedule's origin rather than from the last start, so timer
//! lateness never accumulates; a schedule that wakes late hands out every
//! start due by then at once, each with its own due time, so the count over
//! a run stays exact. tokio's timers tick in milliseconds: the schedule
//! wakes half a tick before a start is due (`EARLY`), so an idle worker
//! hands it out within about half a millisecond of its due time either way
//! (the bench `swarm/benches/arrival.rs` measures it).
//!
//! Each start carries its due time: the user's first request is measured
//! from it (wrk2's intended time; see `docs/load-models.md`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The highest arrival rate, iterations per second across the swarm (and
/// so for any one worker): a million. Each iteration makes at least one
/// request, and a worker makes tens of thousands a second, so no fleet
/// runs this many; at this rate the schedule still hands out a thousand
/// starts per millisecond tick, and a start's number over the longest run
/// (30 days, 2.6e12) stays exact in an `f64`. A rate from a flag, a form
/// or the wire above it is refused (or, from the wire, ignored).
pub const MAX_ARRIVAL_RATE: f64 = 1_000_000.0;

/// How early the schedule may wake for a start: half of tokio's timer
/// tick. tokio rounds a sleep's deadline up to its next millisecond tick,
/// so waking for the due time itself would hand every start out between 0
/// and 1 ms late (and later by the wake-up); waking half a tick before it
/// centres the error on the due time, within half a tick either way. A
/// start handed out early is measured from when its user began (its
/// lateness is 0), never from before.
const EARLY: Duration = Duration::from_micros(500);

/// Whether `rate` is an arrival rate a run can have: a finite number in
/// `0..=MAX_ARRIVAL_RATE` (0 starts nothing).
pub fn valid_arrival_rate(rate: f64) -> bool {
    rate.is_finite() && (0.0..=MAX_ARRIVAL_RATE).contains(&rate)
}

/// One iteration's start, handed to a waiting user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    /// When the schedule meant the iteration to start.
    pub due: Instant,
}

impl Start {
    /// How late the user took the start, at `now`.
    pub fn lateness(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.due)
    }
}

/// What the schedule's task and the waiting users share.
#[derive(Debug, Default)]
struct Shared {
    /// Users waiting for a start, oldest first; a sender whose user went
    /// (its wait was cancelled) is skipped when its turn comes.
    waiting: Mutex<VecDeque<oneshot::Sender<Start>>>,
    /// Starts that found no waiting user since the last
    /// [`Arrivals::take_dropped`]; saturating.
    dropped: AtomicU64,
    /// The rate now; `None`: no schedule (the closed model).
    rate: Mutex<Option<f64>>,
    /// The task handing out starts; aborted when the rate changes or the
    /// last [`Arrivals`] goes.
    task: Mutex<Option<AbortOnDrop>>,
}

/// A task aborted when its owner drops it.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An iteration schedule at a set rate, shared by one worker's users.
/// Cloning shares it; the schedule's task ends with the last clone.
#[derive(Debug, Clone, Default)]
pub struct Arrivals(Arc<Shared>);

impl Arrivals {
    /// A schedule with no rate: every user runs the closed model.
    pub fn new() -> Arrivals {
        Arrivals::default()
    }

    /// The rate now, iterations per second; `None`: the closed model.
    pub fn rate(&self) -> Option<f64> {
        self.0.rate.lock().ok().and_then(|r| *r)
    }

    /// Whether users wait for starts (a rate is set, even 0).
    pub fn is_open(&self) -> bool {
        self.rate().is_some()
    }

    /// Starts `rate` iterations per second from now, or (`None`) ends the
    /// schedule: users waiting are let go, to run the closed model. The
    /// same rate as now keeps the schedule as it is (an edit of the users
    /// does not shift it). A rate beyond [`MAX_ARRIVAL_RATE`], negative or
    /// not a number is taken as the nearest valid one (0 for NaN); callers
    /// check at their edge. Must be called within a tokio runtime when a
    /// rate above 0 is set.
    pub fn set_rate(&self, rate: Option<f64>) {
        let rate = rate.map(|r| {
            if r.is_nan() {
                0.0
            } else {
                r.clamp(0.0, MAX_ARRIVAL_RATE)
            }
        });
        let Ok(mut current) = self.0.rate.lock() else {
            return;
        };
        if *current == rate {
            return;
        }
        *current = rate;
        drop(current);
        let task = match rate {
            Some(r) if r > 0.0 => {
                let shared = Arc::downgrade(&self.0);
                Some(AbortOnDrop(tokio::spawn(schedule(shared, r))))
            }
            _ => None,
        };
        if let Ok(mut slot) = self.0.task.lock() {
            *slot = task;
        }
        if rate.is_none() {
            // The closed model: nobody waits for a start any more.
            if let Ok(mut waiting) = self.0.waiting.lock() {
                waiting.clear();
            }
        }
    }

    /// Waits for the next start given to this caller; `None` once the
    /// schedule ends (no rate), or at once without one. Cancel-safe (see
    /// [`Waiting`]).
    pub async fn wait(&self) -> Option<Start> {
        self.queue()?.start().await
    }

    /// Joins the users waiting for a start; `None` without a schedule.
    pub fn queue(&self) -> Option<Waiting> {
        if !self.is_open() {
            return None;
        }
        let (sender, receiver) = oneshot::channel();
        self.0.waiting.lock().ok()?.push_back(sender);
        Some(Waiting {
            receiver,
            shared: self.0.clone(),
        })
    }

    /// Users waiting for a start now.
    pub fn waiting(&self) -> usize {
        self.0
            .waiting
            .lock()
            .map_or(0, |w| w.iter().filter(|s| !s.is_closed()).count())
    }

    /// Counts a start that a user took but could not run (its worker
    /// halted its users as it came).
    pub fn count_dropped(&self) {
        self.0.count_dropped();
    }

    /// Starts dropped since the last call (none waited for them).
    pub fn take_dropped(&self) -> u64 {
        self.0.dropped.swap(0, Ordering::SeqCst)
    }
}

/// A user's place among those waiting for a start. Dropped before its
/// start came, nothing is lost: the start goes to the next user waiting,
/// or is counted as dropped; a start handed to it in the instant it was
/// dropped is counted as dropped too.
#[derive(Debug)]
pub struct Waiting {
    receiver: oneshot::Receiver<Start>,
    shared: Arc<Shared>,
}

impl Waiting {
    /// The start this user gets; `None` once the schedule ends. Cancel-safe:
    /// the place is kept until the `Waiting` is dropped.
    pub async fn start(&mut self) -> Option<Start> {
        (&mut self.receiver).await.ok()
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.receiver.close();
        if self.receiver.try_recv().is_ok() {
            self.shared.count_dropped();
        }
    }
}

impl Shared {
    /// Counts one start nobody ran.
    fn count_dropped(&self) {
        let _ = self
            .dropped
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_add(1))
            });
    }

    /// Gives the start due at `due` to the user that has waited longest,
    /// or counts it dropped.
    fn hand_out(&self, due: Instant) {
        let start = Start { due };
        if let Ok(mut waiting) = self.waiting.lock() {
            while let Some(user) = waiting.pop_front() {
                if user.send(start).is_ok() {
                    return;
                }
            }
        }
        self.count_dropped();
    }
}

/// Hands out `rate` starts a second from now until aborted (or the
/// [`Arrivals`] it serves is gone).
async fn schedule(shared: Weak<Shared>, rate: f64) {
    let origin = Instant::now();
    let mut k: u64 = 1;
    loop {
        // From the origin, not from the last start: no drift.
        let due = origin + Duration::from_secs_f64(k as f64 / rate);
        if due > Instant::now() + EARLY {
            tokio::time::sleep_until(due - EARLY).await;
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        shared.hand_out(due);
        k = k.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Users that take every start they get, at once, until `until`;
    /// returns the starts they took.
    fn users(arrivals: &Arrivals, n: usize, until: Instant) -> Vec<JoinHandle<u64>> {
        (0..n)
            .map(|_| {
                let arrivals = arrivals.clone();
                tokio::spawn(async move {
                    let mut taken = 0;
                    while let Ok(Some(_)) = tokio::time::timeout_at(until, arrivals.wait()).await {
                        taken += 1;
                    }
                    taken
                })
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn free_users_take_every_start_at_the_rate() {
        let arrivals = Arrivals::new();
        let until = Instant::now() + Duration::from_millis(10_500);
        arrivals.set_rate(Some(100.0));
        let users = users(&arrivals, 4, until);
        let mut taken = 0;
        for user in users {
            taken += user.await.unwrap();
        }
        // 10.5 s at 100/s, from when the rate was set.
        assert!((1049..=1050).contains(&taken), "{taken} starts");
        assert_eq!(arrivals.take_dropped(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_start_no_user_waits_for_is_dropped_and_counted() {
        let arrivals = Arrivals::new();
        arrivals.set_rate(Some(50.0));
        // Nobody waits for 2 s: 100 starts, each counted once.
        tokio::time::sleep(Duration::from_millis(2_010)).await;
        assert_eq!(arrivals.take_dropped(), 100);
        assert_eq!(arrivals.take_dropped(), 0, "taken once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_user_misses_the_starts_of_its_iteration() {
        let arrivals = Arrivals::new();
        arrivals.set_rate(Some(10.0));
        let user = {
            let arrivals = arrivals.clone();
            tokio::spawn(async move {
                let mut late = Vec::new();
                for _ in 0..5 {
                    let start = arrivals.wait().await.expect("a start");
                    late.push(start.lateness(Instant::now()));
                    // An iteration of 250 ms: two starts fall while busy.
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                late
            })
        };
        let late = user.await.unwrap();
        assert!(
            late.iter().all(|l| *l <= Duration::from_millis(1)),
            "{late:?}"
        );
        // Five iterations, each followed by two starts nobody took.
        assert!(arrivals.take_dropped() >= 8);
    }

    #[tokio::test(start_paused = true)]
    async fn ending_the_schedule_lets_waiting_users_go() {
        let arrivals = Arrivals::new();
        assert_eq!(arrivals.wait().await, None, "closed: no wait");
        arrivals.set_rate(Some(0.0));
        let waiter = {
            let arrivals = arrivals.clone();
            tokio::spawn(async move { arrivals.wait().await })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiter.is_finished(), "a rate of 0 starts nothing");
        arrivals.set_rate(None);
        assert_eq!(waiter.await.unwrap(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_start_given_to_a_wait_dropped_meanwhile_is_counted() {
        let arrivals = Arrivals::new();
        arrivals.set_rate(Some(0.0));
        let waiting = arrivals.queue().expect("a schedule");
        arrivals.0.hand_out(Instant::now());
        // Handed to a waiter that goes before it runs the start.
        drop(waiting);
        assert_eq!(arrivals.take_dropped(), 1);
        // A waiter gone before its turn is skipped: the start is dropped
        // once, not lost.
        drop(arrivals.queue());
        arrivals.0.hand_out(Instant::now());
        assert_eq!(arrivals.take_dropped(), 1);
    }

    #[test]
    fn rates_are_bounded() {
        assert!(valid_arrival_rate(0.0));
        assert!(valid_arrival_rate(MAX_ARRIVAL_RATE));
        assert!(!valid_arrival_rate(MAX_ARRIVAL_RATE * 1.01));
        assert!(!valid_arrival_rate(-1.0));
        assert!(!valid_arrival_rate(f64::NAN));
        assert!(!valid_arrival_rate(f64::INFINITY));
    }
}
