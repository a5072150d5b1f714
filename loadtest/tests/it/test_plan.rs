//! `--test-plan` for real: a headless plan on `loadtest master` with a
//! worker against nginx runs its users up, holds them and ends by itself,
//! as `PREFIX_stats_history.csv` shows; a UI run of a plan, started from
//! the page in headless Chromium, shows where it is in `/stats/requests`
//! and on the page, and ends by itself; malformed plans are refused with
//! exit 2 before anything starts.

use std::path::Path;
use std::time::{Duration, Instant};

use harness::webdriver::Browser;
use harness::*;

/// Up to 2 users over 2 s, to 4 over 2 s, 4 held for 4 s, down to 0 in 1 s:
/// the hold spans at least two of the history's 2 s rows.
const PLAN: &str = "2,2s;4,2s;4,4s;0,1s";

/// How long [`PLAN`] lasts.
const PLAN_TIME: Duration = Duration::from_secs(9);

/// Workers pause between requests: a few requests per user and second.
const WAIT: &[&str] = &["--wait", "0.2:0.2"];

/// Every cell of `column` in a CSV file, in order.
fn column(path: &Path, column: &str) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let index = header
        .iter()
        .position(|h| *h == column)
        .unwrap_or_else(|| panic!("no column {column} in {}:\n{text}", path.display()));
    lines
        .map(|line| line.split(',').nth(index).unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_headless_plan_raises_holds_and_ends_by_itself() {
    let nginx = Nginx::start(NginxOptions::default());
    let dir = TempDir::new("test-plan-headless");
    let prefix = dir.path().join("plan");
    let prefix = prefix.to_str().expect("utf-8 temp path");
    let url = nginx.url();
    let args = [
        "--headless",
        "--test-plan",
        PLAN,
        "--host",
        &url,
        "--csv",
        prefix,
    ];
    let (mut master, port) = loadtest!().master(&dir, &args);
    let mut worker = loadtest!().worker(&dir, port, WAIT);
    let started = Instant::now();
    let code = exit_code(&mut master, Duration::from_secs(60));
    let took = started.elapsed();
    assert_eq!(
        code,
        0,
        "the plan ran and no request failed\n{}",
        master.logs()
    );
    assert!(
        took >= PLAN_TIME,
        "the run ends with the plan, not before: {took:?}\n{}",
        master.logs()
    );
    assert!(
        master.stderr().contains("the test plan is over"),
        "{}",
        master.logs()
    );
    assert!(
        master.stdout().contains("Aggregated"),
        "the summary is printed:\n{}",
        master.stdout()
    );
    let status = worker.wait_exit(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "the worker quits when the plan is over ({status:?})\n{}",
        worker.logs()
    );
    let users: Vec<u64> = column(&dir.path().join("plan_stats_history.csv"), "User Count")
        .iter()
        .map(|cell| cell.parse().unwrap_or_else(|_| panic!("a count: {cell:?}")))
        .collect();
    println!("plan {PLAN}: run of {took:?}, history user counts {users:?}");
    let peak = users.iter().position(|n| *n == 4).unwrap_or_else(|| {
        panic!("the users reach 4: {users:?}\n{}", master.logs());
    });
    assert!(
        users[..peak].windows(2).all(|w| w[0] <= w[1]),
        "the users rise to 4: {users:?}"
    );
    assert!(
        users[..peak].iter().any(|n| (1..4).contains(n)),
        "on the way up through fewer users: {users:?}"
    );
    assert!(
        users.iter().filter(|n| **n == 4).count() >= 2,
        "4 users are held over more than one row: {users:?}"
    );
    assert!(users.iter().all(|n| *n <= 4), "never above 4: {users:?}");
    assert_eq!(users.last(), Some(&0), "the last row has none: {users:?}");
    assert!(nginx.count_requests() > 0, "the target was loaded");
}

#[test]
fn malformed_plans_are_refused_before_anything_starts() {
    let dir = TempDir::new("test-plan-refused");
    for (args, says) in [
        (
            vec!["--headless", "--test-plan", "2,5 junk"],
            vec!["\"2,5 junk\"", "{users},{timespan}"],
        ),
        (
            vec!["--headless", "--test-plan", "0,5s;0,1m"],
            vec!["\"0,5s;0,1m\"", "starts no users"],
        ),
        (
            vec!["--headless", "--test-plan", "2,721h"],
            vec!["\"2,721h\"", "longest run"],
        ),
        (
            vec!["--headless", "--test-plan", "2,2s", "-u", "3", "-t", "5s"],
            vec!["drop -u/--users, -t/--run-time"],
        ),
        (
            vec![
                "--test-plan",
                "2,2s",
                "--ramp",
                "1:1:2",
                "--step-time",
                "3s",
            ],
            vec!["drop --ramp"],
        ),
    ] {
        let port = free_port().to_string();
        let mut command = vec!["master", "--master-bind-host", "127.0.0.1"];
        command.extend(["--master-bind-port", &port]);
        command.extend(&args);
        let mut master = Process::spawn(
            &unique_name("loadtest-master"),
            loadtest!().command(&command),
            dir.path(),
        );
        let code = exit_code(&mut master, Duration::from_secs(20));
        assert_eq!(code, 2, "{args:?} is a usage error\n{}", master.logs());
        for text in says {
            assert!(
                master.stderr().contains(text),
                "{args:?}: the message says {text:?}:\n{}",
                master.stderr()
            );
        }
        assert!(
            !master.stderr().contains("listening"),
            "{args:?}: nothing started:\n{}",
            master.stderr()
        );
    }
}

/// `test_plan` of `/stats/requests` as JSON.
fn plan_state(web: &str) -> serde_json::Value {
    let reply = http_request("GET", &format!("{web}/stats/requests"), &[], None)
        .unwrap_or_else(|e| panic!("GET /stats/requests: {e}"));
    let stats: serde_json::Value = serde_json::from_str(&reply.body).expect("JSON");
    stats["test_plan"].clone()
}

#[test]
fn a_ui_plan_starts_from_the_page_shows_where_it_is_and_ends_by_itself() {
    let nginx = Nginx::start(NginxOptions::default());
    let dir = TempDir::new("test-plan-ui");
    let url = nginx.url();
    let plan = "2,2s;2,3s;0,1s";
    let csv = dir.path().join("ui");
    let csv = csv.to_str().expect("utf-8 temp path");
    let (master, port, web) =
        loadtest!().master_with_ui(&dir, &["--host", &url, "--test-plan", plan, "--csv", csv]);
    let _worker = loadtest!().worker(&dir, port, WAIT);
    let api = Api::new(&web);
    wait_until(Duration::from_secs(30), "the worker to join", || {
        (api.requests().worker_count == 1).then_some(())
    });
    let ready = plan_state(&web);
    assert_eq!(ready["plan"], "2,2;2,3;0,1", "{ready}");
    assert_eq!(
        ready["step"],
        serde_json::Value::Null,
        "not started: {ready}"
    );

    let session = Browser::open(&web);
    let shown = |css: &str| -> Result<bool, String> {
        let element = session.find(css)?;
        session.is_displayed(&element)
    };
    session
        .wait_for(Duration::from_secs(10), "the plan's start form", |_| {
            Ok((shown("#start-button")? && shown("#plan-start")?).then_some(()))
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !shown("#user_count").expect("the users field"),
        "a plan sets the users: the field is hidden"
    );
    let start = session.find("#start-button").expect("the Start button");
    session.click(&start).expect("click Start");

    // Meanwhile: the API and the page say where the run is.
    let during = wait_until(Duration::from_secs(15), "the plan's hold", || {
        let state = plan_state(&web);
        (state["step"] == 1 && state["finished"] == false).then_some(state)
    });
    assert_eq!(during["target_users"], 2, "{during}");
    assert!(
        during["elapsed"].as_f64().is_some_and(|e| e >= 2.0),
        "{during}"
    );
    let page = session
        .wait_for(Duration::from_secs(10), "the page's position", |s| {
            let text = s.text_of("#plan-position")?;
            Ok(text.contains("step 2 of 3").then_some(text))
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", master.logs()));
    println!("API during the plan: {during}; page: {page:?}");
    assert!(page.contains("2 users asked now"), "{page}");

    // Then it ends by itself.
    let after = wait_until(Duration::from_secs(20), "the plan to end the run", || {
        let stats = api.requests();
        let state = plan_state(&web);
        (stats.state == swarm::master::RunState::Stopped && state["finished"] == true)
            .then_some(state)
    });
    assert!(
        after["elapsed"]
            .as_f64()
            .is_some_and(|e| (6.0..9.0).contains(&e)),
        "the run ended with the plan's 6 s: {after}"
    );
    let ended = session
        .wait_for(Duration::from_secs(10), "the page to say finished", |s| {
            let text = s.text_of("#plan-position")?;
            Ok(text.starts_with("finished").then_some(text))
        })
        .unwrap_or_else(|e| panic!("{e}"));
    println!("after: {after}; page: {ended:?}");
    let errors = session.script_errors();
    assert_eq!(errors, serde_json::json!([]), "script errors in the page");
    // A UI run's --csv history is written as it goes, as Locust writes it.
    let users = column(&dir.path().join("ui_stats_history.csv"), "User Count");
    assert!(users.iter().any(|n| n == "2"), "the hold's rows: {users:?}");
}
