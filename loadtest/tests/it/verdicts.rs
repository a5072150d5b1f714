//! Verdicts given after the fact, as goose documents them (`set_success`,
//! `set_failure`) and as Locust's `catch_response` gives them, reach the
//! master: the `verdicts` load test marks the target's expected 404s a
//! success and its pages without a price a failure, two ways each (see
//! `loadtest/src/bin/verdicts.rs`). Through our master and through a stock
//! Locust master, the expected 404s show no failure, every wrong page is a
//! failure with its reason in the failures table, and the counts per name
//! are nginx's own.

use std::time::Duration;

use harness::*;
use swarm::api::StatsRequests;

const USERS: u64 = 4;

fn verdicts() -> Loadtest {
    Loadtest::new(env!("CARGO_BIN_EXE_verdicts"))
}

fn target() -> Nginx {
    Nginx::start(NginxOptions {
        status_path: Some(("/missing".into(), 404)),
        ..NginxOptions::default()
    })
}

/// Runs the users through `api` until every row has requests, then stops.
fn run(api: &Api, host: &str) {
    api.swarm_at_once(USERS, host);
    wait_until(Duration::from_secs(30), "every way to be counted", || {
        let stats = api.requests();
        let rows = stats.stats.iter().filter(|r| r.num_requests >= 200).count();
        (rows >= 4).then_some(())
    });
    api.stop();
}

/// The number of requests in rows whose name starts with `prefix`, and
/// their failures.
fn counts(stats: &StatsRequests, prefix: &str) -> (u64, u64) {
    stats
        .stats
        .iter()
        .filter(|row| row.name.starts_with(prefix))
        .fold((0, 0), |(n, f), row| {
            (n + row.num_requests, f + row.num_failures)
        })
}

/// What every run must show, against nginx's own log.
fn check(stats: &StatsRequests, nginx: &Nginx, master: &str) {
    nginx.wait_log_quiet();
    let log = nginx.access_log();
    let served = |path: &str| log.iter().filter(|l| l.path == path).count() as u64;
    let (missing, missing_failed) = counts(stats, "404");
    let (pages, pages_failed) = counts(stats, "content");
    println!(
        "{master}: expected 404s {missing} ({missing_failed} failures), nginx {}; wrong pages {pages} ({pages_failed} failures), nginx {}",
        served("/missing"),
        served("/")
    );
    for row in &stats.stats {
        println!(
            "  {}: {} requests, {} failures",
            row.name, row.num_requests, row.num_failures
        );
    }
    println!("  errors: {:?}", stats.errors);
    assert_eq!(missing, served("/missing"), "{master}: /missing vs nginx");
    assert_eq!(pages, served("/"), "{master}: / vs nginx");
    assert_eq!(missing_failed, 0, "{master}: an expected 404 is no failure");
    assert_eq!(pages_failed, pages, "{master}: every wrong page fails");
    let reasons: u64 = stats
        .errors
        .iter()
        .filter(|e| e.error.contains("no price on the page"))
        .map(|e| e.occurrences)
        .sum();
    assert_eq!(
        reasons, pages,
        "{master}: the reason, listed: {:?}",
        stats.errors
    );
    assert!(
        stats.errors.iter().all(|e| !e.error.contains("404")),
        "{master}: no 404 in the failures: {:?}",
        stats.errors
    );
}

#[test]
fn verdicts_reach_our_master() {
    let nginx = target();
    let dir = TempDir::new("verdicts");
    let (mut master, port, api) = verdicts().master_with_ui(&dir, &["--host", &nginx.url()]);
    let _w1 = verdicts().worker(&dir, port, &[]);
    let _w2 = verdicts().worker(&dir, port, &[]);
    let api = Api::new(&api);
    wait_until(Duration::from_secs(30), "two workers to join", || {
        (api.requests().worker_count == 2).then_some(())
    });
    run(&api, &nginx.url());
    settled_requests(api.url(), Duration::from_secs(20));
    check(&api.requests(), &nginx, "our master");
    master.signal("INT");
    exit_code(&mut master, Duration::from_secs(20));
}

#[test]
fn verdicts_reach_a_locust_master() {
    let nginx = target();
    let dir = TempDir::new("verdicts-locust");
    let locustfile = write_locustfile(dir.path(), &nginx.url());
    let (bind_port, web_port) = (free_port(), free_port());
    let locust = Locust::master(&locustfile, bind_port, web_port, &[]);
    let _w1 = verdicts().worker(&dir, bind_port, &[]);
    let _w2 = verdicts().worker(&dir, bind_port, &[]);
    locust
        .wait_for_workers(2, Duration::from_secs(30))
        .expect("both workers joined Locust");
    let api = locust.api();
    run(&api, &nginx.url());
    settled_requests(api.url(), Duration::from_secs(30));
    check(&api.requests(), &nginx, "Locust's master");
}
