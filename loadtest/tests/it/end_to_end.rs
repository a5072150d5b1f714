//! The swarm end to end: a `loadtest master` and real `loadtest worker`
//! processes against a real nginx, checked against nginx's access log.

use std::time::Duration;

use harness::*;
use harness::{Nginx, NginxOptions, TempDir};

/// Master + 2 workers, ~10 s: the master's totals are nginx's.
#[test]
fn master_totals_match_the_nginx_access_log() {
    let nginx = Nginx::start(NginxOptions {
        fail_percent: Some(5),
        ..NginxOptions::default()
    });
    let dir = TempDir::new("swarm-counts");
    let prefix = dir.path().join("run");
    let prefix = prefix.to_str().expect("utf-8 temp path");
    let url = nginx.url();
    let mut args: Vec<&str> =
        "--headless -u 8 -r 8 -t 10s --expect-workers 2 --exit-code-on-error 3"
            .split(' ')
            .collect();
    args.extend(["--host", &url, "--csv", prefix]);
    let (mut master, port) = loadtest!().master(&dir, &args);
    let mut workers = [
        loadtest!().worker(&dir, port, &[]),
        loadtest!().worker(&dir, port, &[]),
    ];
    let code = exit_code(&mut master, Duration::from_secs(60));
    assert_eq!(
        code,
        3,
        "failures were seen, so --exit-code-on-error applies\n{}",
        master.logs()
    );
    // The normal end of a run: each worker quits when told, and nobody
    // logs a warning or an error about it.
    for worker in &mut workers {
        let status = worker.wait_exit(Duration::from_secs(30));
        assert!(
            status.is_some_and(|s| s.success()),
            "a worker quits cleanly when the master says quit ({status:?})\n{}",
            worker.logs()
        );
        assert!(
            !worker.stderr().contains("WARN") && !worker.stderr().contains("ERROR"),
            "a worker's normal end logs no warning:\n{}",
            worker.stderr()
        );
    }
    assert!(
        !master.stderr().contains("ERROR"),
        "the master's normal end logs no error:\n{}",
        master.stderr()
    );

    let total = csv_row(&dir.path().join("run_stats.csv"), "Aggregated");
    let requests = num(&total, "Request Count");
    let failures = num(&total, "Failure Count");
    let logged = nginx.count_requests() as f64;
    let logged_failures = nginx.count_non_2xx() as f64;
    println!("master: {requests} requests, {failures} failures; nginx: {logged} lines, {logged_failures} non-2xx");
    assert!(
        requests > 1_000.0,
        "too little load to compare: {requests}\n{}",
        master.logs()
    );
    assert_close(requests, logged, 0.005, "requests: master vs nginx log");
    assert_close(
        failures,
        logged_failures,
        0.005,
        "failures: master vs nginx non-2xx",
    );
    for file in [
        "run_stats_history.csv",
        "run_failures.csv",
        "run_exceptions.csv",
    ] {
        assert!(dir.path().join(file).is_file(), "{file} written");
    }
    let summary = master.stdout();
    assert!(
        summary.contains("Aggregated") && summary.contains("99%"),
        "summary printed:\n{summary}"
    );
}

/// A worker whose master vanishes quits after --master-timeout, saying why;
/// one with no master at all gives up after the same time.
#[test]
fn worker_quits_when_the_master_is_gone() {
    let dir = TempDir::new("swarm-master-gone");
    let (mut master, port) =
        loadtest!().master(&dir, &["--headless", "-u", "1", "--expect-workers", "5"]);
    let mut orphan = loadtest!().worker(&dir, port, &["--master-timeout", "3"]);
    // The orphan has had messages from its master once the master logs it joined.
    wait_until(Duration::from_secs(20), "the orphan to join", || {
        master.stderr().contains("joined").then_some(())
    });
    master.signal("KILL");
    let code = exit_code(&mut orphan, Duration::from_secs(15));
    assert_ne!(code, 0, "losing the master is a failure exit");
    assert!(
        orphan.stderr().contains("no message from the master"),
        "{}",
        orphan.stderr()
    );

    let closed = harness::free_port();
    let mut lonely = loadtest!().worker(&dir, closed, &["--master-timeout", "2"]);
    let code = exit_code(&mut lonely, Duration::from_secs(15));
    assert_ne!(code, 0);
    assert!(
        lonely.stderr().contains("no master answered"),
        "{}",
        lonely.stderr()
    );
}
