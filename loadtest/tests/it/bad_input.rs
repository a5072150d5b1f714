//! The web API at its edges: out-of-range `/swarm` forms are refused,
//! naming the field, and the master keeps answering; requests that change
//! state from another origin are refused with 403; run times hold — an
//! Edit without `run_time` keeps the run's deadline, and `-t` applies to a
//! run started from the UI.

use std::time::{Duration, Instant};

use serde_json::Value;

use harness::*;
use harness::{
    http_post_form, http_post_form_with_headers, try_http, try_http_with_headers, Nginx,
    NginxOptions, Process, TempDir,
};
use swarm::api::{RunState, StatsRequests};

/// Workers pause between requests: light on 2 CPUs, enough to count.
const WORKER_WAIT: &[&str] = &["--wait", "0.005:0.01"];
const EVIL_ORIGIN: &str = "http://evil.example";

/// A UI master on nginx with one worker, once the worker has joined.
fn one_worker_master(dir: &TempDir, nginx: &Nginx, extra: &[&str]) -> (Process, Process, String) {
    let target = nginx.url();
    let mut args = vec!["--host", target.as_str()];
    args.extend_from_slice(extra);
    let (master, port, api) = loadtest!().master_with_ui(dir, &args);
    let worker = loadtest!().worker(dir, port, WORKER_WAIT);
    wait_until(Duration::from_secs(30), "the worker to join", || {
        (stats(&api).worker_count == 1).then_some(())
    });
    (master, worker, api)
}

fn json(body: &str, what: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {body}"))
}

/// `/stats/requests` answers 200 (the master did not fall over) and its JSON.
fn still_answers(api: &str, after: &str) -> StatsRequests {
    let (status, body) = try_http("GET", &format!("{api}/stats/requests"), None)
        .unwrap_or_else(|e| panic!("after {after}: /stats/requests unreachable: {e}"));
    assert_eq!(
        status, 200,
        "after {after}: /stats/requests answered {status}: {body}"
    );
    serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("after {after}: /stats/requests unexpected ({e}): {body}"))
}

#[test]
fn out_of_range_forms_are_refused_and_other_origins_change_nothing() {
    let nginx = Nginx::start(NginxOptions::default());
    let dir = TempDir::new("bad-input");
    let (mut master, _worker, api) = one_worker_master(&dir, &nginx, &[]);
    let swarm_url = format!("{api}/swarm");

    // Out of range: refused, naming the field; the master keeps answering.
    // With one worker, at most 100,000 users.
    let cases: [(&str, &str); 8] = [
        ("user_count", "100001"),
        ("spawn_rate", "inf"),
        ("spawn_rate", "NaN"),
        ("spawn_rate", "0"),
        ("spawn_rate", "-1"),
        ("spawn_rate", "100001"),
        ("run_time", "18446744073709551615"),
        ("run_time", "100000h"),
    ];
    for (field, value) in cases {
        let mut form = vec![("user_count", "2"), ("spawn_rate", "2")];
        match field {
            "user_count" => form[0].1 = value,
            "spawn_rate" => form[1].1 = value,
            _ => form.push((field, value)),
        }
        let (status, body) = http_post_form(&swarm_url, &form);
        println!("{field}={value}: {status} {body}");
        assert_eq!(
            status, 200,
            "{field}={value}: a refusal is a 200 with success false: {body}"
        );
        let answer = json(&body, "/swarm");
        assert_eq!(answer["success"], false, "{field}={value}: {answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(field),
            "{field}={value}: the message names {field}: {message:?}"
        );
        let s = still_answers(&api, &format!("{field}={value}"));
        assert_eq!(
            s.state,
            RunState::Ready,
            "{field}={value}: nothing started: {s:?}"
        );
    }

    // Another origin: 403, nothing starts.
    let evil = [("Origin", EVIL_ORIGIN)];
    let good_form = [("user_count", "2"), ("spawn_rate", "2")];
    let (status, body) = http_post_form_with_headers(&swarm_url, &evil, &good_form);
    println!("POST /swarm from {EVIL_ORIGIN}: {status} {body}");
    assert_eq!(status, 403, "a cross-origin /swarm is refused: {body}");
    let s = still_answers(&api, "a cross-origin /swarm");
    assert_eq!(s.state, RunState::Ready, "nothing started: {s:?}");
    assert_eq!(s.user_count, 0, "no users: {s:?}");

    // The UI's own origin: the same request starts the run.
    let own_origin = api.clone(); // http://<Host header>
    let own = [("Origin", own_origin.as_str())];
    let (status, body) = http_post_form_with_headers(&swarm_url, &own, &good_form);
    println!("POST /swarm from {own_origin}: {status} {body}");
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body, "/swarm")["success"], true, "{body}");
    wait_until(
        Duration::from_secs(20),
        "2 users running, requests counted",
        || {
            let s = stats(&api);
            (s.state == RunState::Running && s.user_count == 2 && total_requests(&s) > 200)
                .then_some(())
        },
    );

    // Cross-origin stop and reset, by POST and GET: 403, and the run goes on
    // with its counts.
    for (method, path) in [
        ("POST", "/stop"),
        ("GET", "/stop"),
        ("POST", "/stats/reset"),
        ("GET", "/stats/reset"),
    ] {
        let before = total_requests(&stats(&api));
        let body = (method == "POST").then_some(("application/x-www-form-urlencoded", &b""[..]));
        let (status, answer) = try_http_with_headers(method, &format!("{api}{path}"), &evil, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        println!("{method} {path} from {EVIL_ORIGIN}: {status} {answer}");
        assert_eq!(status, 403, "{method} {path} from another origin: {answer}");
        let s = still_answers(&api, &format!("a cross-origin {method} {path}"));
        assert_eq!(
            s.state,
            RunState::Running,
            "{method} {path} changed nothing: {s:?}"
        );
        assert_eq!(s.user_count, 2, "{method} {path} changed nothing: {s:?}");
        let after = total_requests(&s);
        assert!(
            after >= before,
            "{method} {path} from another origin reset the stats: {before} then {after}"
        );
    }

    // A script (no Origin) may stop it; a good form still starts a run.
    let (status, body) = http_post_form(&format!("{api}/stop"), &[]);
    assert_eq!(status, 200, "POST /stop without Origin: {body}");
    wait_until(Duration::from_secs(15), "the run to stop", || {
        (stats(&api).state == RunState::Stopped).then_some(())
    });
    start_swarm(&api, 3, 3);
    wait_until(Duration::from_secs(20), "a good swarm to run", || {
        let s = stats(&api);
        (s.state == RunState::Running && s.user_count == 3).then_some(())
    });
    let (status, _) = http_post_form(&format!("{api}/stop"), &[]);
    assert_eq!(status, 200);
    master.signal("INT");
    exit_code(&mut master, Duration::from_secs(20));
}

#[test]
fn an_edit_without_run_time_keeps_the_deadline() {
    let nginx = Nginx::start(NginxOptions::default());
    let dir = TempDir::new("edit-deadline");
    let (mut master, _worker, api) = one_worker_master(&dir, &nginx, &[]);
    let swarm_url = format!("{api}/swarm");

    let started = Instant::now();
    let (status, body) = http_post_form(
        &swarm_url,
        &[("user_count", "2"), ("spawn_rate", "2"), ("run_time", "6s")],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body, "/swarm")["success"], true, "{body}");
    wait_until(Duration::from_secs(10), "2 users running", || {
        let s = stats(&api);
        (s.state == RunState::Running && s.user_count == 2).then_some(())
    });
    if let Some(rest) = Duration::from_secs(2).checked_sub(started.elapsed()) {
        std::thread::sleep(rest);
    }
    // The Edit: another user count, no run_time.
    let (status, body) = http_post_form(&swarm_url, &[("user_count", "4"), ("spawn_rate", "4")]);
    println!("edit after {:?}: {status} {body}", started.elapsed());
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body, "/swarm")["success"], true, "{body}");
    wait_until(Duration::from_secs(8), "4 users after the edit", || {
        (stats(&api).user_count == 4).then_some(())
    });
    stops_by_itself(&api, started, "the edited 6 s run", 5, 12);
    master.signal("INT");
    exit_code(&mut master, Duration::from_secs(20));
}

#[test]
fn the_run_time_flag_applies_to_a_run_started_from_the_ui() {
    let nginx = Nginx::start(NginxOptions::default());
    let dir = TempDir::new("ui-run-time");
    let (mut master, _worker, api) = one_worker_master(&dir, &nginx, &["-t", "5s"]);

    let started = Instant::now();
    start_swarm(&api, 2, 2);
    wait_until(Duration::from_secs(10), "the run to start", || {
        let s = stats(&api);
        (s.state == RunState::Running || s.state == RunState::Stopped).then_some(())
    });
    stops_by_itself(&api, started, "the UI run under -t 5s", 4, 15);
    master.signal("INT");
    exit_code(&mut master, Duration::from_secs(20));
}

/// Waits until the run started at `started` stops by itself, at most
/// `latest` seconds after its start, and checks it did not stop before
/// `earliest` seconds.
fn stops_by_itself(api: &str, started: Instant, run: &str, earliest: u64, latest: u64) {
    let limit = Duration::from_secs(latest).saturating_sub(started.elapsed());
    let what = format!("{run} to stop by itself within {latest} s of its start");
    wait_until(limit, &what, || {
        (stats(api).state == RunState::Stopped).then_some(())
    });
    let took = started.elapsed();
    println!("{run} stopped {took:?} after it started");
    assert!(
        took >= Duration::from_secs(earliest),
        "{run} stopped before {earliest} s: {took:?}"
    );
}
