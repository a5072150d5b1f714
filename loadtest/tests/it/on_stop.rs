//! A user's on-stop transactions (goose's `set_on_stop`, Locust's
//! `on_stop`) run when the user stops, and the master counts what they
//! send, as Locust's do: when the swarm is stopped from the master, when
//! the master asks for fewer users (those it stops log out; started again,
//! they log in anew), and when the worker quits (SIGTERM, as a spot
//! reclaim or a deploy ends it).
//! The `lifecycle` load test logs each user in on start and out on stop
//! (`loadtest/src/bin/lifecycle.rs`); nginx's log tells users and steps
//! apart, and the master's rows must be nginx's counts.

use std::collections::BTreeSet;
use std::time::Duration;

use harness::*;
use swarm::api::StatsRequests;

const USERS: u64 = 4;

fn lifecycle() -> Loadtest {
    Loadtest::new(env!("CARGO_BIN_EXE_lifecycle"))
}

/// nginx's requests for `/session/STEP/...`, and the distinct users.
fn served(log: &[AccessLine], step: &str) -> (u64, usize) {
    let prefix = format!("/session/{step}/");
    let users: Vec<&str> = log
        .iter()
        .filter_map(|l| l.path.strip_prefix(&prefix))
        .collect();
    let distinct: BTreeSet<&str> = users.iter().copied().collect();
    (users.len() as u64, distinct.len())
}

/// The master's request count for `name`.
fn counted(stats: &StatsRequests, name: &str) -> u64 {
    stats
        .stats
        .iter()
        .filter(|row| row.name == name)
        .map(|row| row.num_requests)
        .sum()
}

/// Asks the master for `users` users.
fn swarm(api: &Api, nginx: &Nginx, users: u64) {
    api.swarm_at_once(users, &nginx.url());
}

/// Waits until nginx has logged `logins` log-ins and `logouts` log-outs
/// since its log was cleared, and the users browse.
fn wait_for(nginx: &Nginx, logins: u64, logouts: u64, what: &str) {
    wait_until(Duration::from_secs(30), what, || {
        let log = nginx.access_log_now();
        let pages = served(&log, "page").0;
        (served(&log, "login").0 == logins
            && served(&log, "logout").0 == logouts
            && pages >= 10 * USERS)
            .then_some(())
    });
}

/// Starts `USERS` users and waits until each has logged in and they
/// browse.
fn swarm_until_browsing(api: &Api, nginx: &Nginx) {
    swarm(api, nginx, USERS);
    wait_for(nginx, USERS, 0, "every user to log in and browse");
}

/// The master's rows are nginx's counts, step by step, and every user
/// that logged in logged out: `sessions` log-ins and as many log-outs,
/// by `USERS` users. (A new swarm after a stop starts the master's stats
/// afresh, as Locust's does: nginx's log is cleared too.)
fn check(api: &Api, nginx: &Nginx, when: &str, sessions: u64) {
    settled_requests(api.url(), Duration::from_secs(30));
    let stats = api.requests();
    let log = nginx.access_log();
    for step in ["login", "page", "logout"] {
        let (n, _) = served(&log, step);
        let name = format!("/session/{step}");
        println!(
            "{when}: {name}: nginx {n}, master {}",
            counted(&stats, &name)
        );
    }
    for step in ["login", "page", "logout"] {
        let name = format!("/session/{step}");
        let n = served(&log, step).0;
        assert_eq!(counted(&stats, &name), n, "{when}: {name}, master vs nginx");
    }
    assert_eq!(
        served(&log, "login"),
        (sessions, USERS as usize),
        "{when}: log-ins, and the users who logged in"
    );
    assert_eq!(
        served(&log, "logout"),
        (sessions, USERS as usize),
        "{when}: one log-out per log-in"
    );
    nginx.clear_access_log();
}

#[test]
fn users_log_out_when_the_swarm_stops_and_when_the_worker_quits() {
    let nginx = Nginx::start(NginxOptions {
        any_path: Some("/session/".into()),
        ..NginxOptions::default()
    });
    let dir = TempDir::new("on-stop");
    let (mut master, port, api) = lifecycle().master_with_ui(&dir, &["--host", &nginx.url()]);
    let mut worker = lifecycle().worker(&dir, port, &["--wait", "0.01:0.02"]);
    let api = Api::new(&api);
    wait_until(Duration::from_secs(30), "the worker to join", || {
        (api.requests().worker_count == 1).then_some(())
    });

    swarm_until_browsing(&api, &nginx);
    api.stop();
    // Informative: whether the stop's own report carried the log-outs.
    println!(
        "log-outs counted when the stop was answered: {}",
        counted(&api.requests(), "/session/logout")
    );
    check(&api, &nginx, "after the swarm's stop", USERS);

    // Fewer users: the two the master stops log out; more again: two
    // users start anew, with a log-in.
    swarm_until_browsing(&api, &nginx);
    swarm(&api, &nginx, USERS / 2);
    wait_for(&nginx, USERS, USERS / 2, "two users to log out");
    swarm(&api, &nginx, USERS);
    wait_for(
        &nginx,
        USERS + USERS / 2,
        USERS / 2,
        "two users to log in again",
    );
    api.stop();
    check(
        &api,
        &nginx,
        "after fewer users, more, and a stop",
        USERS + USERS / 2,
    );

    swarm_until_browsing(&api, &nginx);
    worker.signal("TERM");
    assert_eq!(
        exit_code(&mut worker, Duration::from_secs(30)),
        0,
        "{}",
        worker.logs()
    );
    check(&api, &nginx, "after the worker quit", USERS);

    master.signal("INT");
    exit_code(&mut master, Duration::from_secs(20));
}
