//! `loadtest worker`s under a stock Locust master running headless with a
//! run time: when the time is up Locust sends `quit` and waits only 0.5 s
//! for the workers' final stats before it writes its CSV. Our workers' last
//! report must arrive inside that window, so Locust's CSV total is nginx's
//! access-log count.

use std::time::{Duration, Instant};

use harness::*;
use harness::{free_port, write_locustfile, Locust, Nginx, NginxOptions, TempDir};

#[test]
fn a_headless_locust_master_counts_every_request_of_loadtest_workers() {
    let nginx = Nginx::start(NginxOptions::default());
    let dir = TempDir::new("locust-headless");
    let target = nginx.url();
    let locustfile = write_locustfile(dir.path(), &target);
    let prefix = dir.path().join("locust");
    let prefix_text = prefix.to_str().expect("utf-8 temp path");
    let (bind_port, web_port) = (free_port(), free_port());
    // The class's host stays in Python; `--host` goes to the workers in the
    // spawn message.
    let mut args: Vec<&str> = "--headless -u 8 -r 8 -t 12s --expect-workers 2"
        .split(' ')
        .collect();
    args.extend(["--csv", prefix_text, "--host", &target]);
    let mut locust = Locust::master(&locustfile, bind_port, web_port, &args);
    let mut w1 = loadtest!().worker(&dir, bind_port, &[]);
    let mut w2 = loadtest!().worker(&dir, bind_port, &[]);
    let started = Instant::now();
    let code = exit_code(locust.process(), Duration::from_secs(90));
    println!("Locust exited with {code} after {:?}", started.elapsed());

    let csv = dir.path().join("locust_stats.csv");
    assert!(
        csv.is_file(),
        "Locust wrote {}\n{}",
        csv.display(),
        locust.logs()
    );
    let total = csv_row(&csv, "Aggregated");
    let counted = num(&total, "Request Count");
    let failures = num(&total, "Failure Count");
    let logged = nginx.count_requests() as f64;
    println!(
        "Locust CSV: {counted} requests, {failures} failures; nginx: {logged} lines; missing {} ({:.3}%)",
        logged - counted,
        (logged - counted) / logged.max(1.0) * 100.0
    );
    // Locust's `quit` ends our workers, with success.
    let exits: Vec<(i32, String)> = [&mut w1, &mut w2]
        .into_iter()
        .map(|w| (exit_code(w, Duration::from_secs(10)), w.logs()))
        .collect();
    println!(
        "worker exit codes: {:?}",
        exits.iter().map(|(c, _)| c).collect::<Vec<_>>()
    );
    let worker_logs: String = exits.iter().map(|(_, logs)| logs.as_str()).collect();
    assert!(
        counted > 1_000.0,
        "too little load to compare: {counted}\n{}\n{worker_logs}",
        locust.logs()
    );
    assert!(
        (counted - logged).abs() <= 0.005 * logged,
        "requests: Locust's CSV {counted} vs nginx log {logged}: our workers' final reports \
         missed Locust's 0.5 s quit window\n{worker_logs}"
    );
    assert_eq!(
        code,
        0,
        "no request failed, so Locust exits 0\n{}",
        locust.logs()
    );
    for (code, logs) in &exits {
        assert_eq!(*code, 0, "a worker told to quit exits 0\n{logs}");
    }
}
