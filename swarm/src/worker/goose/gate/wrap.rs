//! The functions the gate puts in place of a scenario's transaction
//! functions, one kind per goose flag:
//!
//! - a regular transaction runs through an open gate and with a seat; a
//!   user without one parks; a user whose seat went runs its class's
//!   on-stop transactions once, then parks; a user given a seat back runs
//!   its class's on-start transactions first ([`Lifecycle`]);
//! - an on-start transaction (a log-in) waits for the user's seat;
//! - an on-stop transaction, which goose runs when its stop ends the
//!   user, runs for a user that held a seat and has not stopped yet.
//!
//! Every one attaches the user to the tap (and its lifeline) first.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use goose::goose::TransactionFunction;
use goose::prelude::{GooseUser, Scenario, TransactionResult};

use super::super::{transaction_fn, TransactionFuture};
use super::{
    note_intended_start, note_parked, Admission, InFlight, Seat, State, Tap, CLOSED_PAUSE, SEAT,
};

/// A class's own on-start and on-stop transaction functions (as written,
/// not the gate's), in goose's order: those with a sequence first, by
/// sequence, then the rest as registered; each once (goose would repeat a
/// weighted one). The gate runs them itself for a user whose seat goes
/// (on-stop) or comes back (on-start).
pub(super) struct Lifecycle {
    on_start: Vec<TransactionFunction>,
    on_stop: Vec<TransactionFunction>,
}

impl Lifecycle {
    pub(super) fn of(scenario: &Scenario) -> Lifecycle {
        let mut ordered: Vec<_> = scenario.transactions.iter().collect();
        // Stable: equals keep their registration order.
        ordered.sort_by_key(|t| (t.sequence == 0, t.sequence));
        let functions = |pick: fn(&goose::prelude::Transaction) -> bool| {
            ordered
                .iter()
                .filter(|t| pick(t))
                .map(|t| t.function.clone())
                .collect()
        };
        Lifecycle {
            on_start: functions(|t| t.on_start),
            on_stop: functions(|t| t.on_stop),
        }
    }
}

/// Runs every function in turn, as goose runs a user's on-start or
/// on-stop transactions; the first error, if any.
async fn run_all(functions: &[TransactionFunction], user: &mut GooseUser) -> TransactionResult {
    let mut result = Ok(());
    for function in functions {
        let ran = function(user).await;
        if result.is_ok() {
            result = ran;
        }
    }
    result
}

/// Whether a regular transaction runs, as far as its pass goes: a pass's
/// first transaction in the open model waits for a start (out of flight)
/// and notes its due time for the first request; a later one runs only in
/// a pass that started. Returns the in-flight count to hold while it runs,
/// or `None` to skip it.
async fn begin(
    state: &Arc<State>,
    first: bool,
    class: usize,
    user: &mut GooseUser,
    counted: InFlight,
) -> Option<InFlight> {
    let index = user.weighted_users_index;
    if !first {
        return state.pass_started(class, index).then_some(counted);
    }
    if !state.arrivals.is_open() {
        state.begin_pass(class, index);
        return Some(counted);
    }
    // Waiting for a start makes no request: a drain need not wait for it.
    drop(counted);
    let start = state.take_start(class, index).await?;
    state.in_flight.fetch_add(1, Ordering::SeqCst);
    let counted = InFlight(state.clone());
    if state.closed.load(Ordering::SeqCst) {
        // The users halted as the start came: nobody runs it.
        state.arrivals.count_dropped();
        return None;
    }
    note_intended_start(user, start.lateness(tokio::time::Instant::now()));
    state.begin_pass(class, index);
    Some(counted)
}

/// One transaction function of one class, and what its wrapper needs.
pub(super) struct Guarded {
    pub(super) inner: TransactionFunction,
    pub(super) state: Arc<State>,
    pub(super) tap: Tap,
    pub(super) class: usize,
}

impl Guarded {
    /// The transaction function goose runs: it attaches the user to the tap
    /// (its first pass), then hands `run` the gate's state, the wrapped
    /// function and the user.
    fn wrap<F>(self, run: F) -> TransactionFunction
    where
        F: for<'r> Fn(Arc<State>, TransactionFunction, &'r mut GooseUser) -> TransactionFuture<'r>
            + Send
            + Sync
            + 'static,
    {
        let Guarded {
            inner,
            state,
            tap,
            class,
        } = self;
        Arc::new(transaction_fn(move |user| {
            state.arrive(&tap, class, user);
            run(state.clone(), inner.clone(), user)
        }))
    }

    /// Runs for a user that holds a seat, or lost one and has not run its
    /// on-stop transactions yet (goose's stop came first).
    pub(super) fn on_stop(self) -> TransactionFunction {
        let class = self.class;
        self.wrap(move |state, inner, user| {
            Box::pin(async move {
                if state.owes_on_stop(class, user.weighted_users_index) {
                    inner(user).await
                } else {
                    Ok(())
                }
            })
        })
    }

    /// Waits for the user's seat, then runs. In flight only while it runs
    /// (a log-in makes requests a drain must wait for); a user waiting
    /// here for a seat makes none and must not hold up a drain.
    pub(super) fn on_start(self) -> TransactionFunction {
        let class = self.class;
        self.wrap(move |state, inner, user| {
            Box::pin(async move {
                loop {
                    state.in_flight.fetch_add(1, Ordering::SeqCst);
                    let counted = InFlight(state.clone());
                    match state.admit(class, user.weighted_users_index) {
                        Admission::Run | Admission::Rejoin => return inner(user).await,
                        Admission::Closed => return Ok(()),
                        Admission::Park | Admission::Retire => {
                            drop(counted);
                            note_parked(user);
                            state.park().await;
                        }
                    }
                }
            })
        })
    }

    /// Runs with a seat; stops or starts the user anew as its seat goes or
    /// comes back; parks without one; makes no request once closed. In the
    /// open model a pass begins only with a start from the schedule.
    pub(super) fn regular(self, lifecycle: Arc<Lifecycle>) -> TransactionFunction {
        let class = self.class;
        self.wrap(move |state, inner, user| {
            let lifecycle = lifecycle.clone();
            Box::pin(async move {
                let index = user.weighted_users_index;
                let first = state.next_call(class, index);
                // Counted before the gate is read (both SeqCst), so a
                // drain that sees no transaction in flight has not missed
                // one that is about to send a request.
                state.in_flight.fetch_add(1, Ordering::SeqCst);
                let counted = InFlight(state.clone());
                let seat = Seat {
                    state: state.clone(),
                    class,
                    user: index,
                };
                match state.admit(class, index) {
                    admission @ (Admission::Run | Admission::Rejoin) => {
                        if admission == Admission::Rejoin {
                            // A new Locust user: its on-start transactions first.
                            run_all(&lifecycle.on_start, user).await?;
                        }
                        let Some(counted) = begin(&state, first, class, user, counted).await else {
                            return Ok(());
                        };
                        let ran = SEAT.scope(seat, inner(user)).await;
                        drop(counted);
                        ran
                    }
                    Admission::Closed => {
                        drop(counted);
                        tokio::time::sleep(CLOSED_PAUSE).await;
                        Ok(())
                    }
                    Admission::Retire => {
                        // Stopped as Locust stops a user in a ramp-down.
                        let stopped = run_all(&lifecycle.on_stop, user).await;
                        drop(counted);
                        note_parked(user);
                        state.park().await;
                        stopped
                    }
                    Admission::Park => {
                        drop(counted);
                        note_parked(user);
                        state.park().await;
                        Ok(())
                    }
                }
            })
        })
    }
}
