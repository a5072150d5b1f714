//! The open model (`--arrival-rate`, the form's `arrival_rate`) against a
//! target of known latency: nginx sends `/` in about 50 ms (4,000 bytes at
//! 80,000 bytes a second), so one user of the closed model makes about 20
//! requests a second, whatever rate is asked.
//!
//! - 40 users asked for 300 iterations a second (`--arrival-rate`, a
//!   headless run) serve 3,000 requests (±5%) in 10 s of the run, where
//!   the closed model's 40 users would make ~8,000;
//! - 5 users asked for 300 a second for 6 s (an edit of a run in the web
//!   UI) can serve about 600 of the 1,800 starts: the other ~1,200 are
//!   counted as dropped, and what was served is exactly what nginx logged.
//!
//! goose takes most of a second to start its users from idle (its main
//! loop wakes every 250 to 500 ms), and a worker starts its schedule once
//! its users are ready. So the first test counts a 10 s window of nginx's
//! log once the requests began, and the second starts its users at a rate
//! that starts nothing for 100 s (the master's `--arrival-rate 0.01`, the
//! web UI's default) before it edits the run to 300 a second for 6 s.

use std::time::Duration;

use harness::*;
use swarm::api::{RunState, SwarmForm};

/// The asked rate, iterations (here: requests) per second.
const RATE: f64 = 300.0;

/// nginx, whose `/` takes about 50 ms to send.
fn slow_target() -> Nginx {
    Nginx::start(NginxOptions {
        // `/` is served as `/index.html`: this location answers it.
        slow_path: Some(("/index.html".into(), 4_000, 80_000)),
        ..NginxOptions::default()
    })
}

/// The number after `label` on a line of `text`, e.g. the summary's
/// `dropped iterations: 12`.
fn number_after(text: &str, label: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.trim().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// nginx's log lines of the `WINDOW` seconds that begin half a second
/// after the first request.
fn in_window(log: &[AccessLine], window: f64) -> usize {
    let first = log.iter().map(|l| l.time).fold(f64::INFINITY, f64::min);
    let start = first + 0.5;
    log.iter()
        .filter(|l| (start..start + window).contains(&l.time))
        .count()
}

#[test]
fn enough_users_serve_the_asked_rate_not_the_closed_model_s() {
    let nginx = slow_target();
    let dir = TempDir::new("arrival-headless");
    let args = [
        "--headless",
        "-u",
        "40",
        "-r",
        "40",
        "-t",
        "12s",
        "--arrival-rate",
        "300",
        "--expect-workers",
        "1",
        "--host",
        &nginx.url(),
    ];
    let (mut master, port) = loadtest!().master(&dir, &args);
    let _worker = loadtest!().worker(&dir, port, &[]);
    assert_eq!(
        exit_code(&mut master, Duration::from_secs(60)),
        0,
        "{}",
        master.logs()
    );
    let log = nginx.access_log();
    let served = in_window(&log, 10.0) as f64;
    let mean_ms = log.iter().map(|l| l.request_time_ms).sum::<f64>() / log.len().max(1) as f64;
    let stdout = master.stdout();
    let dropped = number_after(&stdout, "dropped iterations:")
        .unwrap_or_else(|| panic!("no dropped iterations in the summary:\n{stdout}"));
    println!(
        "40 users at {RATE}/s: nginx served {served} in 10 s ({} in the run, {mean_ms:.0} ms each), {dropped} dropped",
        log.len()
    );
    assert_eq!(
        number_after(&stdout, "arrival rate:"),
        Some(RATE),
        "{stdout}"
    );
    let expected = RATE * 10.0;
    assert!(
        (served - expected).abs() <= expected * 0.05,
        "{served} requests served in 10 s, {expected} ±5% expected"
    );
    // What the closed model's 40 users would have made: far more.
    let closed = 40.0 * 10.0 * 1000.0 / mean_ms.max(1.0);
    assert!(closed > 2.0 * expected, "{closed} closed-model requests");
    // The summary counts what the master merged: all nginx logged.
    assert_eq!(
        number_after(&stdout, "Aggregated"),
        Some(log.len() as f64),
        "{stdout}"
    );
    // The starts before goose's users were ready are not counted as
    // dropped (the schedule starts with them), nor are later ones: 40
    // users for 15 busy on average (a start falls only while the machine
    // stalls the worker).
    assert!(dropped <= expected * 0.05, "{dropped} iterations dropped");
}

#[test]
fn starts_no_user_is_free_for_are_dropped_and_counted() {
    let nginx = slow_target();
    let dir = TempDir::new("arrival-dropped");
    let (mut master, port, web) =
        loadtest!().master_with_ui(&dir, &["--host", &nginx.url(), "--arrival-rate", "0.01"]);
    let _worker = loadtest!().worker(&dir, port, &[]);
    let api = Api::new(&web);
    wait_until(Duration::from_secs(30), "the worker to join", || {
        (api.requests().worker_count == 1).then_some(())
    });
    // No arrival_rate in the form: the master's --arrival-rate.
    api.swarm_at_once(5, &nginx.url());
    let ready = wait_until(Duration::from_secs(30), "the users to run", || {
        let stats = api.requests();
        (stats.state == RunState::Running && stats.user_count == 5).then_some(stats)
    });
    assert_eq!(ready.arrival_rate, Some(0.01));
    // The edit: 300 a second, for 6 s from now.
    let answer = api.swarm_form(&SwarmForm {
        run_time: Some("6s".into()),
        arrival_rate: Some(RATE),
        ..SwarmForm::new(5, 5.0)
    });
    assert!(answer.success, "{answer:?}");
    assert_eq!(api.requests().arrival_rate, Some(RATE));
    // The master stops the run itself after 6 s, once the worker's last
    // report came with its answer to the stop.
    let stats = wait_until(Duration::from_secs(40), "the run to end", || {
        let stats = api.requests();
        (stats.state == RunState::Stopped).then_some(stats)
    });
    let served = total_requests(&stats);
    let logged = nginx.count_requests() as u64;
    let dropped = stats.dropped_iterations;
    println!(
        "5 users at {RATE}/s for 6 s: {served} served (nginx logged {logged}), {dropped} dropped, {} in all",
        served + dropped
    );
    assert_eq!(
        served, logged,
        "what the master counted is what nginx served"
    );
    let starts = RATE * 6.0;
    let all = (served + dropped) as f64;
    // The master looks at its deadline every 250 ms: a run of 6 s lasts
    // up to 6.25 s (1,875 starts).
    assert!(
        (all - starts).abs() <= starts * 0.05,
        "{served} served + {dropped} dropped = {all}, {starts} starts ±5% expected"
    );
    // 5 users of ~50 ms: about 100 a second, 600 in 6 s.
    assert!(
        (500..=700).contains(&served),
        "{served} served: 5 users of ~50 ms serve about 600"
    );
    assert!(dropped >= 1_000, "{dropped} dropped: about 1,200 expected");
    // A reset forgets them, as it does the requests.
    api.reset_stats();
    assert_eq!(api.requests().dropped_iterations, 0);
    master.signal("INT");
    exit_code(&mut master, Duration::from_secs(20));
}

/// A stock Locust worker never reads the arrival rate: it runs the closed
/// model, and the master says so once it hears from it.
#[test]
fn a_locust_worker_runs_the_closed_model_and_the_master_says_so() {
    let nginx = Nginx::start(NginxOptions::default());
    let dir = TempDir::new("arrival-locust-worker");
    let locustfile = write_locustfile(dir.path(), &nginx.url());
    let (mut master, port, web) = loadtest!().master_with_ui(&dir, &["--arrival-rate", "50"]);
    let _worker = Locust::worker(&locustfile, port, &[]);
    let api = Api::new(&web);
    wait_until(Duration::from_secs(30), "the Locust worker to join", || {
        (api.requests().worker_count == 1).then_some(())
    });
    api.swarm_at_once(1, &nginx.url());
    wait_until(Duration::from_secs(30), "the master's warning", || {
        master
            .stderr()
            .contains("is a Locust worker: it ignores the arrival rate and runs the closed model")
            .then_some(())
    });
    // Its user still runs, closed.
    wait_until(
        Duration::from_secs(30),
        "the Locust worker's requests",
        || (api.total_requests() > 0).then_some(()),
    );
    api.stop();
    master.signal("INT");
    exit_code(&mut master, Duration::from_secs(20));
}
