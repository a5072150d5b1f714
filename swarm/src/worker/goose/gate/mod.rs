//! The users' gate: every transaction of the load test passes through it,
//! so a worker can stop its users *now* — goose's own stop works through
//! its main loop, which wakes twice a second, and its users keep sending
//! requests meanwhile, too late for a Locust master that gives a quitting
//! worker 0.5 s for its last report.
//!
//! Closed, a transaction makes no request: it pauses briefly and returns, so
//! goose's users keep cycling and still notice goose's own stop. The gate
//! counts the transactions in flight, so the worker can wait until the last
//! one has finished (and goose has its metrics) before its final report.
//! The scenarios stay goose's: only their transaction functions, a public
//! field, are wrapped — which is also where each user is attached to the
//! worker's [`Tap`].
//!
//! **Seats: users per class exactly as the master dispatched them.** A
//! Locust master sends each worker a count per user class; goose spreads
//! its users over the scenarios by its own weights. So the gate keeps, per
//! class (scenario), as many seats as the master asked for: a user runs its
//! transactions only while it holds a seat of its class, and a user without
//! one waits (parked, making no request) until one is free. Its on-start
//! transactions (a log-in) wait for the seat too, so a parked user has sent
//! nothing. The driver gives goose at least as many users per class as
//! there are seats (see `GooseDriver::set_classes`).
//!
//! **A seat is a Locust user's life.** When a class has fewer seats (the
//! master stops some of its users), a user that loses its seat stops as a
//! Locust user does: at its next transaction it runs its class's on-stop
//! transactions (a log-out), then parks. If it gets a seat back, it starts
//! as a new Locust user would: its class's on-start transactions first (a
//! fresh HTTP client and cookie jar, a log-in), then its tasks. A user whose
//! seat went but who had not yet reached its next transaction when the
//! swarm stops runs them at goose's stop instead (see `wrap`).
//!
//! **The open model: a pass starts on the schedule.** With an arrival
//! rate ([`Gate::set_arrival_rate`]), a user with a seat that comes to the
//! first transaction of a pass through its class's transactions (goose's
//! iteration; one pick with `pick_by_weight`) waits there, making no
//! request and not in flight, until the worker's [`Arrivals`] schedule hands
//! it a start; a start that finds no user waiting is dropped and counted.
//! The wait takes the place of the wait after the pass: goose's own wait
//! between transactions (`set_wait_time`) is kept, and so is the one goose
//! sleeps after a pass's last transaction, which the gate cannot skip — a
//! user in it is busy, so an open run's scenarios should wait between
//! transactions, not after the last (see `docs/load-models.md`). The gate
//! counts each user's calls to know where its passes begin (goose calls the
//! regular transactions in a fixed order of a fixed length, see
//! [`pass_length`]); a pass that got no start (the gate closed, the seat
//! went) is skipped to its end, so every pass that runs had a start. The
//! user's first request of the pass is then measured from the start's due
//! time ([`note_intended_start`]).
//!
//! **Stopping as Locust stops.** A user's wait inside a transaction
//! ([`pause`], e.g. `constant_pacing`'s) ends as soon as the gate closes or
//! the user loses its seat, as Locust ends a waiting user's sleep at once.
//! And each user the gate sees carries a lifeline (a sender of a channel
//! nobody sends on, in goose's public `shutdown_channel` field, which goose
//! uses only under `--iterations`, never set here): it drops when goose's
//! user ends, after its on-stop transactions. So once goose is told to
//! stop, [`Gate::wait_users_ended`] knows when every user has logged out.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use goose::prelude::{GooseUser, Scenario};
use tokio::sync::Notify;

use super::tap::{note_intended_start, note_parked, Tap};
use crate::worker::arrival::{Arrivals, Start};

/// How long a transaction that finds the gate closed pauses.
const CLOSED_PAUSE: Duration = Duration::from_millis(50);

/// How long a parked user waits for a seat before it lets goose look at
/// its commands (a stop) and tries again; a change of seats wakes it sooner.
const PARK_LIMIT: Duration = Duration::from_secs(1);

/// One class's seats.
#[derive(Debug, Default)]
struct Seats {
    /// Users of this class that may run; `None`: every user runs.
    target: Option<usize>,
    /// Goose's user indexes holding a seat.
    seated: HashSet<usize>,
    /// Goose users of this class seen since the last reset.
    users: usize,
    /// Users that lost their seat and have not run their on-stop
    /// transactions yet: at their next transaction, or at goose's stop.
    retiring: HashSet<usize>,
    /// Users that ran their on-stop transactions after losing their seat:
    /// a seat given back starts them anew, on-start transactions first.
    retired: HashSet<usize>,
    /// Calls to the class's regular transactions in one of goose's passes.
    pass_length: u64,
}

/// Where a user is in its pass through its class's regular transactions.
#[derive(Debug, Default, Clone, Copy)]
struct Pass {
    /// Calls to its regular transactions so far.
    calls: u64,
    /// Whether the pass it is in started: on the schedule, or in the
    /// closed model at once.
    started: bool,
}

/// Calls to a scenario's regular transactions in one of goose's passes:
/// goose repeats each regular transaction its weight divided by the
/// greatest common divisor of all the scenario's weights times (its
/// `allocate_transactions`), whatever its scheduler.
pub(super) fn pass_length(scenario: &Scenario) -> u64 {
    let common = scenario
        .transactions
        .iter()
        .map(|t| t.weight)
        .reduce(super::gcd)
        .unwrap_or(1)
        .max(1);
    scenario
        .transactions
        .iter()
        .filter(|t| !t.on_start && !t.on_stop)
        .map(|t| (t.weight / common) as u64)
        .sum()
}

/// Shared by every wrapped transaction.
#[derive(Debug)]
struct State {
    closed: AtomicBool,
    in_flight: AtomicUsize,
    /// Per class, in the order the scenarios were guarded.
    classes: Mutex<Vec<Seats>>,
    /// Woken when the gate closes or the seats change.
    changed: Notify,
    /// Cloned into each user the gate sees; the gate's own copy is the one
    /// sender left once every user has ended.
    lifeline: flume::Sender<usize>,
    /// Never read: it counts the lifelines still held.
    lives: flume::Receiver<usize>,
    /// The open model's schedule; without a rate, the closed model.
    arrivals: Arrivals,
    /// Each user's place in its pass, by (class, goose's user index).
    passes: Mutex<HashMap<(usize, usize), Pass>>,
}

impl Default for State {
    fn default() -> State {
        // Unbounded: goose sends on it only under `--iterations` (never
        // set by the worker), and a send must never block a user.
        let (lifeline, lives) = flume::unbounded();
        State {
            closed: AtomicBool::default(),
            in_flight: AtomicUsize::default(),
            classes: Mutex::default(),
            changed: Notify::default(),
            lifeline,
            lives,
            arrivals: Arrivals::new(),
            passes: Mutex::default(),
        }
    }
}

/// What a user may do now.
#[derive(Debug, PartialEq)]
enum Admission {
    /// Run: it holds a seat.
    Run,
    /// Start anew, then run: it had stopped, and has a seat again.
    Rejoin,
    /// Wait for a seat.
    Park,
    /// Stop (its on-stop transactions), then wait: its seat went.
    Retire,
    /// Make no request: the worker is halting its users.
    Closed,
}

impl State {
    fn admit(&self, class: usize, user: usize) -> Admission {
        if self.closed.load(Ordering::SeqCst) {
            return Admission::Closed;
        }
        let Ok(mut classes) = self.classes.lock() else {
            return Admission::Run;
        };
        let Some(seats) = classes.get_mut(class) else {
            return Admission::Run;
        };
        let Some(target) = seats.target else {
            return Admission::Run;
        };
        if seats.seated.contains(&user) {
            return Admission::Run;
        }
        if seats.seated.len() < target {
            seats.seated.insert(user);
            // A seat back before the user noticed it had gone: it never
            // stopped, so it runs on.
            seats.retiring.remove(&user);
            if seats.retired.remove(&user) {
                Admission::Rejoin
            } else {
                Admission::Run
            }
        } else if seats.retiring.remove(&user) {
            seats.retired.insert(user);
            Admission::Retire
        } else {
            Admission::Park
        }
    }

    fn seated(&self, class: usize, user: usize) -> bool {
        self.classes.lock().is_ok_and(|classes| {
            classes
                .get(class)
                .is_none_or(|s| s.target.is_none() || s.seated.contains(&user))
        })
    }

    /// Whether goose's stop should run `user`'s on-stop transactions: it
    /// holds a seat, or lost one and has not stopped yet.
    fn owes_on_stop(&self, class: usize, user: usize) -> bool {
        self.classes.lock().is_ok_and(|classes| {
            classes.get(class).is_none_or(|s| {
                s.target.is_none() || s.seated.contains(&user) || s.retiring.contains(&user)
            })
        })
    }

    /// Counts a call to one of `user`'s regular transactions; whether it
    /// begins a pass (a pass not begun on the schedule is marked not
    /// started until [`State::begin_pass`]).
    fn next_call(&self, class: usize, user: usize) -> bool {
        let length = self.classes.lock().map_or(0, |classes| {
            classes.get(class).map_or(0, |seats| seats.pass_length)
        });
        let Ok(mut passes) = self.passes.lock() else {
            return true;
        };
        let pass = passes.entry((class, user)).or_default();
        let first = length == 0 || pass.calls.is_multiple_of(length);
        pass.calls = pass.calls.wrapping_add(1);
        if first {
            pass.started = false;
        }
        first
    }

    /// Marks `user`'s pass as started.
    fn begin_pass(&self, class: usize, user: usize) {
        if let Ok(mut passes) = self.passes.lock() {
            passes.entry((class, user)).or_default().started = true;
        }
    }

    /// Whether `user`'s current pass started (a pass begun before a
    /// schedule was set started in the closed model).
    fn pass_started(&self, class: usize, user: usize) -> bool {
        self.passes
            .lock()
            .is_ok_and(|passes| passes.get(&(class, user)).is_none_or(|p| p.started))
    }

    /// Waits, with a seat, for the schedule's next start; `None` when the
    /// gate closes, the seat goes or the schedule ends first.
    async fn take_start(&self, class: usize, user: usize) -> Option<Start> {
        let mut waiting = self.arrivals.queue()?;
        loop {
            // Registered before the checks, so a change between them wakes us.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.closed.load(Ordering::SeqCst) || !self.seated(class, user) {
                return None;
            }
            tokio::select! {
                start = waiting.start() => return start,
                () = &mut changed => {}
            }
        }
    }

    async fn park(&self) {
        let changed = self.changed.notified();
        let _ = tokio::time::timeout(PARK_LIMIT, changed).await;
    }
}

tokio::task_local! {
    /// The seat of the user whose regular transaction runs in this task,
    /// for [`pause`].
    static SEAT: Seat;
}

/// A user's seat, as [`pause`] watches it.
#[derive(Debug, Clone)]
struct Seat {
    state: Arc<State>,
    class: usize,
    user: usize,
}

/// Sleeps for `duration`, or less in a worker: the pause ends as soon as
/// the worker halts its users (a stop, a quit) or takes this user's seat
/// away (fewer users), as Locust ends a waiting user's sleep at once.
/// Outside a worker's transaction (a plain goose run) it is a plain sleep.
pub(crate) async fn pause(duration: Duration) {
    let Ok(seat) = SEAT.try_with(Seat::clone) else {
        tokio::time::sleep(duration).await;
        return;
    };
    let deadline = tokio::time::Instant::now() + duration;
    loop {
        // Registered before the checks, so a change between them wakes us.
        let changed = seat.state.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if seat.state.closed.load(Ordering::SeqCst) || !seat.state.seated(seat.class, seat.user) {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => return,
            () = &mut changed => {}
        }
    }
}

/// Open or closed, for every user of this worker.
#[derive(Debug, Clone, Default)]
pub struct Gate(Arc<State>);

/// Keeps the in-flight count right even if a transaction is dropped midway.
struct InFlight(Arc<State>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Gate {
    /// Lets users through.
    pub fn open(&self) {
        self.0.closed.store(false, Ordering::SeqCst);
    }

    /// Closes the gate and waits (at most `limit`) until no transaction is
    /// in flight; returns whether none is.
    pub async fn close_and_drain(&self, limit: Duration) -> bool {
        self.0.closed.store(true, Ordering::SeqCst);
        self.0.changed.notify_waiters();
        let deadline = tokio::time::Instant::now() + limit;
        while self.in_flight() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        true
    }

    /// Transactions running now.
    pub fn in_flight(&self) -> usize {
        self.0.in_flight.load(Ordering::SeqCst)
    }

    /// Goose users the gate has seen that have not ended yet.
    pub fn users_alive(&self) -> usize {
        self.0.lives.sender_count().saturating_sub(1)
    }

    /// Waits (at most `limit`) until every user the gate has seen has
    /// ended, its on-stop transactions done; returns whether all have.
    /// Goose ends its users after its `stop`.
    pub async fn wait_users_ended(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.users_alive() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Seats per class, in the order the scenarios were guarded; `None`
    /// lifts the limits (every user runs). Classes beyond `targets` get no
    /// seat. Fewer seats than seated users unseat the newest users at once
    /// (as Locust stops its newest): after the transaction they are in,
    /// they run their on-stop transactions and park, so the class runs its
    /// new count from now on.
    pub fn set_targets(&self, targets: Option<&[usize]>) {
        if let Ok(mut classes) = self.0.classes.lock() {
            for (i, seats) in classes.iter_mut().enumerate() {
                seats.target = targets.map(|t| t.get(i).copied().unwrap_or(0));
                if let Some(target) = seats.target {
                    if seats.seated.len() > target {
                        let mut newest_first: Vec<usize> = seats.seated.iter().copied().collect();
                        newest_first.sort_unstable_by(|a, b| b.cmp(a));
                        let excess = newest_first.len() - target;
                        for user in newest_first.into_iter().take(excess) {
                            seats.seated.remove(&user);
                            seats.retiring.insert(user);
                        }
                    }
                }
            }
        }
        self.0.changed.notify_waiters();
    }

    /// Runs the open model at `rate` iterations per second (this worker's
    /// share), or, with `None`, the closed model: users waiting for a start
    /// go on at once.
    pub fn set_arrival_rate(&self, rate: Option<f64>) {
        self.0.arrivals.set_rate(rate);
        self.0.changed.notify_waiters();
    }

    /// Starts dropped since the last call: no user was free for them.
    pub fn take_dropped(&self) -> u64 {
        self.0.arrivals.take_dropped()
    }

    /// Forgets every user and seat: goose starts new users from here.
    pub fn reset_users(&self) {
        if let Ok(mut passes) = self.0.passes.lock() {
            passes.clear();
        }
        if let Ok(mut classes) = self.0.classes.lock() {
            for seats in classes.iter_mut() {
                seats.seated.clear();
                seats.retiring.clear();
                seats.retired.clear();
                seats.users = 0;
            }
        }
    }

    /// Per class: (goose users seen, users holding a seat — or running, when
    /// there are no seats).
    pub fn occupancy(&self) -> Vec<(usize, usize)> {
        self.0.classes.lock().map_or_else(
            |_| Vec::new(),
            |classes| {
                classes
                    .iter()
                    .map(|s| {
                        let running = if s.target.is_some() {
                            s.seated.len()
                        } else {
                            s.users
                        };
                        (s.users, running)
                    })
                    .collect()
            },
        )
    }

    /// The scenario with every transaction reporting to `tap`, and passing
    /// through this gate and its class's seats: the regular transactions
    /// run only through an open gate and with a seat; the on-start ones (a
    /// log-in) wait for the seat; the on-stop ones run for a user that held
    /// one (see [`wrap`]).
    pub fn guard(&self, mut scenario: Scenario, tap: &Tap) -> Scenario {
        let class = match self.0.classes.lock() {
            Ok(mut classes) => {
                classes.push(Seats {
                    pass_length: pass_length(&scenario),
                    ..Seats::default()
                });
                classes.len() - 1
            }
            Err(_) => usize::MAX,
        };
        let lifecycle = Arc::new(wrap::Lifecycle::of(&scenario));
        for transaction in &mut scenario.transactions {
            let guarded = wrap::Guarded {
                inner: transaction.function.clone(),
                state: self.0.clone(),
                tap: tap.clone(),
                class,
            };
            transaction.function = if transaction.on_stop {
                guarded.on_stop()
            } else if transaction.on_start {
                guarded.on_start()
            } else {
                guarded.regular(lifecycle.clone())
            };
        }
        scenario
    }
}

impl State {
    /// Attaches a user to the tap on its first transaction, and counts it
    /// among its class's users.
    fn arrive(&self, tap: &Tap, class: usize, user: &mut GooseUser) {
        if tap.attach(user) {
            user.shutdown_channel = Some(self.lifeline.clone());
            // A new goose user (one that ended may have had its index):
            // its first pass begins now.
            if let Ok(mut passes) = self.passes.lock() {
                passes.remove(&(class, user.weighted_users_index));
            }
            if let Ok(mut classes) = self.classes.lock() {
                if let Some(seats) = classes.get_mut(class) {
                    seats.users = seats.users.saturating_add(1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
mod wrap;
