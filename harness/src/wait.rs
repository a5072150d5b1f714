//! The one polling loop of the test suite: [`wait_until`] (panics when
//! time runs out) and [`try_wait_until`] (answers `None` instead), used by
//! every harness module and every test.
//!
//! A negative check ("X did not happen") is never a fixed sleep followed by
//! an assertion: wait with these for a positive signal that proves X had
//! its chance (a later report, a log line, a counter), then assert.

use std::fmt::Display;
use std::thread;
use std::time::{Duration, Instant};

/// How often a condition is checked: often enough that waits end close to
/// the moment their condition holds, rarely enough to leave a 2-core
/// machine to the processes under test.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Calls `check` until it answers `Some`, at most until `limit` has passed
/// (it is called at least once, and once more at the deadline). `None`
/// when time ran out.
pub fn try_wait_until<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        thread::sleep(POLL_INTERVAL.min(deadline - now));
    }
}

/// [`try_wait_until`], panicking "timed out after {limit} waiting for
/// {what}" when time runs out. For a richer message (process logs, the
/// last value seen), use [`try_wait_until`] and panic yourself.
pub fn wait_until<T>(limit: Duration, what: impl Display, check: impl FnMut() -> Option<T>) -> T {
    try_wait_until(limit, check)
        .unwrap_or_else(|| panic!("timed out after {limit:?} waiting for {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_the_first_some_and_none_after_the_limit() {
        let mut calls = 0;
        let found = wait_until(Duration::from_secs(5), "the third call", || {
            calls += 1;
            (calls == 3).then_some(calls)
        });
        assert_eq!(found, 3);
        let started = Instant::now();
        assert_eq!(
            try_wait_until(Duration::from_millis(120), || None::<()>),
            None
        );
        assert!(started.elapsed() >= Duration::from_millis(120));
    }
}
