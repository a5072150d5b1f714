//! The `loadtest` tests that strain the machine's limits: descriptor and
//! byte floods, hostile peers and web clients, the master's memory, a
//! generator that runs out of CPU. They
//! are one binary of their own, apart from the functional tests in
//! `tests/it`, and take turns ([`take_turn`]), so none of them shares the
//! two cores, the descriptor table or the memory figures with another.

use std::sync::{Mutex, MutexGuard, PoisonError};

mod flood;
mod generator_bound;
mod hostile;
mod master_memory;
mod web_hostile;

/// One straining test at a time.
static TURN: Mutex<()> = Mutex::new(());

/// Waits for this test's turn; the turn ends when the guard drops. A test
/// that failed (poisoning the lock) does not stop the next from running.
fn take_turn() -> MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(PoisonError::into_inner)
}
