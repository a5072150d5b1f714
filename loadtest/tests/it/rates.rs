//! Rates as Locust 2.47 computes them, for a name seen only at the start
//! of a run (a log-in on start): every row's total requests per second is
//! over the run's span, so its share of the Aggregated rate is its share
//! of the requests; its current rate, over the ten seconds ending two
//! seconds before the run's last request, is 0 once the log-ins are older.
//! The same load test through our master and through a stock Locust
//! master: both show the same.

use std::time::Duration;

use harness::*;
use swarm::api::{StatsRequests, StatsRow};

const USERS: u64 = 3;
/// How long the run goes on once the log-ins were counted: long enough
/// that they leave the current-rate window (the 12 s before the last
/// request).
const RUN: Duration = Duration::from_secs(16);

fn login_once() -> Loadtest {
    Loadtest::new(env!("CARGO_BIN_EXE_login_once"))
}

/// Runs the users through `api` for [`RUN`], then reads the stats while
/// they still run (the current rates are of a running test).
fn run(api: &Api, host: &str) -> StatsRequests {
    api.swarm_at_once(USERS, host);
    wait_until(Duration::from_secs(30), "every user to log in", || {
        let stats = api.requests();
        row(&stats, "login")
            .is_some_and(|r| r.num_requests == USERS)
            .then_some(())
    });
    // From when the log-ins were counted: they happened before. A master
    // reads its window back from its last request, so on a loaded machine
    // (stats arrive late) the log-ins leave it later: wait for that, up to
    // a bound. Under the rates this replaced (a row's window ending at its
    // own last request) they never would.
    let started = std::time::Instant::now();
    let stats = wait_until(RUN * 3, "the log-ins to leave the current window", || {
        let stats = api.requests();
        let gone = row(&stats, "login").is_some_and(|r| r.current_rps == 0.0);
        (started.elapsed() >= RUN && gone).then_some(stats)
    });
    api.stop();
    stats
}

fn row<'a>(stats: &'a StatsRequests, name: &str) -> Option<&'a StatsRow> {
    stats.stats.iter().find(|r| r.name == name)
}

/// What both masters show.
fn check(stats: &StatsRequests, master: &str) {
    let login = row(stats, "login").unwrap_or_else(|| panic!("{master}: no login row"));
    let total = stats
        .aggregated()
        .unwrap_or_else(|| panic!("{master}: no Aggregated"));
    let share = login.num_requests as f64 / total.num_requests as f64;
    let rate_share = login.total_rps / total.total_rps;
    println!(
        "{master}: login {} of {} requests ({share:.5}); total req/s login {:.3}, all {:.1} ({rate_share:.5}); current req/s login {:.3}",
        login.num_requests, total.num_requests, login.total_rps, total.total_rps, login.current_rps
    );
    assert!(
        (rate_share - share).abs() <= share * 0.01,
        "{master}: login's rate over the run's span: {rate_share} vs its share {share}"
    );
    assert_eq!(
        login.current_rps, 0.0,
        "{master}: no log-in in the last ten seconds' window"
    );
    assert!(
        total.current_rps > 0.0,
        "{master}: the front page loads now"
    );
}

#[test]
fn a_name_seen_only_at_start_has_locusts_rates() {
    let nginx = Nginx::start(NginxOptions::default());
    let dir = TempDir::new("rates");
    let wait = ["--wait", "0.05:0.1"];

    let (mut master, port, api) = login_once().master_with_ui(&dir, &["--host", &nginx.url()]);
    let _worker = login_once().worker(&dir, port, &wait);
    let api = Api::new(&api);
    wait_until(Duration::from_secs(30), "the worker to join", || {
        (api.requests().worker_count == 1).then_some(())
    });
    check(&run(&api, &nginx.url()), "our master");
    master.signal("INT");
    exit_code(&mut master, Duration::from_secs(20));

    let locustfile = write_locustfile(dir.path(), &nginx.url());
    let (bind_port, web_port) = (free_port(), free_port());
    let locust = Locust::master(&locustfile, bind_port, web_port, &[]);
    let _worker = login_once().worker(&dir, bind_port, &wait);
    locust
        .wait_for_workers(1, Duration::from_secs(30))
        .expect("the worker joined Locust");
    check(&run(&locust.api(), &nginx.url()), "Locust 2.47's master");
}
