//! Locust's `constant_throughput` (and `constant_pacing`) as
//! `swarm::locust` gives them, through a master and a worker, counted in
//! nginx's log over a bounded window: the `paced` load test runs 4 tasks a
//! second per user, each task a GET of a slow path nginx takes about 50 ms
//! to send, so 5 users make 20 requests a second — not the 16.7 a wait of
//! 250 ms after each task makes (Locust's `constant(0.25)`, run here with
//! `--wait 0.25:0.25` for contrast): pacing counts the task's own time.

use std::time::Duration;

use harness::*;

const USERS: u64 = 5;
/// Task runs per second per user (the `paced` load test's rate).
const RATE: f64 = 4.0;
/// The window requests are counted over, seconds.
const WINDOW: f64 = 5.0;

fn paced() -> Loadtest {
    Loadtest::new(env!("CARGO_BIN_EXE_paced"))
}

/// Runs `USERS` users on a worker started with `worker_flags`, and
/// answers how many requests nginx logged in a `WINDOW` once they ran.
fn requests_in_window(nginx: &Nginx, worker_flags: &[&str]) -> usize {
    nginx.clear_access_log();
    let dir = TempDir::new("pacing");
    let (mut master, port, api) = paced().master_with_ui(&dir, &["--host", &nginx.url()]);
    let _worker = paced().worker(&dir, port, worker_flags);
    let api = Api::new(&api);
    wait_until(Duration::from_secs(30), "the worker to join", || {
        (api.requests().worker_count == 1).then_some(())
    });
    api.swarm_at_once(USERS, &nginx.url());
    // Every user has run a few tasks: the pace is steady from here.
    wait_until(Duration::from_secs(30), "the users to run", || {
        (nginx.access_log_now().len() as u64 >= 3 * USERS).then_some(())
    });
    let start = epoch_now() + 0.5;
    let end = start + WINDOW;
    // The positive signal that the window is complete: a request logged
    // after its end.
    let log = wait_until(
        Duration::from_secs_f64(WINDOW + 20.0),
        "a request logged after the window",
        || {
            let log = nginx.access_log_now();
            log.iter().any(|l| l.time >= end + 0.2).then_some(log)
        },
    );
    api.stop();
    master.signal("INT");
    exit_code(&mut master, Duration::from_secs(20));
    let counted = log
        .iter()
        .filter(|l| l.path == "/slow" && (start..end).contains(&l.time))
        .count();
    let times: Vec<f64> = log.iter().map(|l| l.request_time_ms).collect();
    let mean_task_ms = times.iter().sum::<f64>() / times.len().max(1) as f64;
    println!(
        "{worker_flags:?}: {counted} requests in {WINDOW} s ({:.1}/s), the slow path took {mean_task_ms:.0} ms on average",
        counted as f64 / WINDOW
    );
    counted
}

#[test]
fn constant_throughput_paces_each_user_however_long_its_task_takes() {
    let nginx = Nginx::start(NginxOptions {
        // 4,000 bytes at 80,000 bytes a second: about 50 ms.
        slow_path: Some(("/slow".into(), 4_000, 80_000)),
        ..NginxOptions::default()
    });
    let expected = USERS as f64 * RATE * WINDOW;
    let paced = requests_in_window(&nginx, &[]);
    // Each user starts a task exactly every 250 ms: in a 5 s window it has
    // 20, or one more or less at its edges.
    assert!(
        (paced as f64 - expected).abs() <= USERS as f64 + 1.0,
        "paced: {paced} requests in {WINDOW} s, {expected} expected"
    );
    let waited = requests_in_window(&nginx, &["--wait", "0.25:0.25"]);
    // A 250 ms wait after a 50 ms task: 3.3 tasks a second per user, 83.
    assert!(
        (waited as f64) < expected - 2.0 * USERS as f64,
        "a wait after each task ({waited} requests) should fall short of pacing ({paced})"
    );
}
