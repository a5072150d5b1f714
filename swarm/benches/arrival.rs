//! How smooth the open model's starts are: one worker's schedule
//! ([`swarm::worker::Arrivals`]) at 1,000 iterations a second for 10 s,
//! taken by 64 users that are always free (each takes its next start as
//! soon as it took the last), on a multi-threaded tokio runtime as the
//! worker runs. For every start it records the lateness against its due
//! time (when the user holds it, minus when the schedule meant it;
//! negative when early, as the schedule wakes half a tick ahead), and
//! prints p50, p99 and max lateness, the p99 distance from the schedule
//! either way, and the count against the 10,000 asked. The bar: p99 within 2 ms (tokio's timers tick in
//! milliseconds), the count within 1%.
//!
//! `harness = false` and no criterion: one run of 10 s is the measurement
//! (criterion would repeat it for minutes). `cargo bench -p swarm --bench
//! arrival`; CI only compiles it (`cargo bench --no-run`).

use std::time::Duration;

use swarm::worker::Arrivals;
use tokio::time::Instant;

/// Starts a second.
const RATE: f64 = 1_000.0;
/// How long the schedule runs.
const RUN: Duration = Duration::from_secs(10);
/// Users waiting for starts: many more than a start's few microseconds
/// of work need, so none is ever missed for want of a user.
const USERS: usize = 64;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let (mut offsets, dropped) = runtime.block_on(measure());
    offsets.sort_unstable();
    let taken = offsets.len();
    let at = |sorted: &[i64], p: f64| {
        let i = ((taken as f64 * p).ceil() as usize).clamp(1, taken.max(1)) - 1;
        sorted.get(i).copied().unwrap_or_default() as f64 / 1000.0
    };
    let mut distance: Vec<i64> = offsets.iter().map(|o| o.abs()).collect();
    distance.sort_unstable();
    let asked = RATE * RUN.as_secs_f64();
    println!(
        "arrival schedule at {RATE}/s for {RUN:?}, {USERS} free users: \
         lateness p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms, earliest {:.3} ms; \
         distance from schedule p99 {:.3} ms; {taken} starts taken, {dropped} dropped, \
         count ratio {:.4} (of {asked})",
        at(&offsets, 0.50),
        at(&offsets, 0.99),
        at(&offsets, 1.0),
        offsets.first().copied().unwrap_or_default() as f64 / 1000.0,
        at(&distance, 0.99),
        taken as f64 / asked
    );
}

/// Runs the schedule for [`RUN`]; every start's offset from its due time
/// (µs, negative when early), and the starts dropped.
async fn measure() -> (Vec<i64>, u64) {
    let arrivals = Arrivals::new();
    arrivals.set_rate(Some(RATE));
    let end = Instant::now() + RUN;
    let users: Vec<_> = (0..USERS)
        .map(|_| {
            let arrivals = arrivals.clone();
            tokio::spawn(async move {
                let mut late = Vec::new();
                // Until the schedule ends (at the run's end); bounded by
                // it too, should it not.
                let limit = end + Duration::from_secs(1);
                while let Ok(Some(start)) = tokio::time::timeout_at(limit, arrivals.wait()).await {
                    let now = Instant::now();
                    let offset = if now >= start.due {
                        micros(now - start.due)
                    } else {
                        -micros(start.due - now)
                    };
                    late.push(offset);
                }
                late
            })
        })
        .collect();
    // The schedule ends with the run: its end lets the users go, so a
    // start counts as dropped only if it fell while they all were busy.
    tokio::time::sleep_until(end).await;
    arrivals.set_rate(None);
    let dropped = arrivals.take_dropped();
    let mut lateness = Vec::new();
    for user in users {
        lateness.extend(user.await.unwrap_or_default());
    }
    (lateness, dropped)
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}
