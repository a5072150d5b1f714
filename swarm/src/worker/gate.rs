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

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use goose::prelude::{GooseUser, Scenario, TransactionResult};

use super::tap::Tap;

/// How long a transaction that finds the gate closed pauses.
const CLOSED_PAUSE: Duration = Duration::from_millis(50);

/// Shared by every wrapped transaction.
#[derive(Debug, Default)]
struct State {
    closed: AtomicBool,
    in_flight: AtomicUsize,
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

type TransactionFuture<'r> = Pin<Box<dyn Future<Output = TransactionResult> + Send + 'r>>;

/// Pins down the closure's higher-ranked signature for the compiler.
fn transaction_fn<F>(f: F) -> F
where
    F: for<'r> Fn(&'r mut GooseUser) -> TransactionFuture<'r> + Send + Sync + 'static,
{
    f
}

impl Gate {
    pub fn open(&self) {
        self.0.closed.store(false, Ordering::SeqCst);
    }

    /// Closes the gate and waits (at most `limit`) until no transaction is
    /// in flight; returns whether none is.
    pub async fn close_and_drain(&self, limit: Duration) -> bool {
        self.0.closed.store(true, Ordering::SeqCst);
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

    /// The scenario with every transaction reporting to `tap`, and all but
    /// the on-start and on-stop ones (a log-in, a log-out) passing through
    /// this gate.
    pub fn guard(&self, mut scenario: Scenario, tap: &Tap) -> Scenario {
        for transaction in &mut scenario.transactions {
            let inner = transaction.function.clone();
            let tap = tap.clone();
            if transaction.on_start || transaction.on_stop {
                transaction.function = Arc::new(transaction_fn(move |user| {
                    tap.attach(user);
                    inner(user)
                }));
                continue;
            }
            let state = self.0.clone();
            transaction.function = Arc::new(transaction_fn(move |user| {
                tap.attach(user);
                let inner = inner.clone();
                let state = state.clone();
                Box::pin(async move {
                    // Counted before the gate is read (both SeqCst), so a
                    // drain that sees no transaction in flight has not
                    // missed one that is about to send a request.
                    state.in_flight.fetch_add(1, Ordering::SeqCst);
                    let counted = InFlight(state.clone());
                    if state.closed.load(Ordering::SeqCst) {
                        drop(counted);
                        tokio::time::sleep(CLOSED_PAUSE).await;
                        return Ok(());
                    }
                    inner(user).await
                })
            }));
        }
        scenario
    }
}
