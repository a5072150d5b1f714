//! Checks the test harness itself against the real nginx, wrk and Locust,
//! so that a failure in a spotload integration test can be trusted to be a
//! spotload failure: the target really serves and logs what we think, its
//! capacity limit really produces 503s, and Locust's counts agree with
//! what nginx saw.

use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use harness::{
    free_port, http_get, http_post_form, Locust, Moto, Nginx, NginxOptions, Process, TempDir,
};

const WRK: &str = "/usr/bin/wrk";

/// What wrk reported for one bounded run.
#[derive(Debug)]
struct WrkRun {
    requests: u64,
    non_2xx: u64,
}

/// `wrk -t2 -c<connections> -d<secs>s url`: bounded in time by wrk itself.
fn wrk(url: &str, connections: u32, secs: u32) -> WrkRun {
    assert!(
        Path::new(WRK).exists(),
        "{WRK} missing: run scripts/test to install"
    );
    let out = Command::new(WRK)
        .args(["-t2", &format!("-c{connections}"), &format!("-d{secs}s")])
        .args(["--timeout", "5s", url])
        .output()
        .expect("cannot run wrk");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "wrk failed: {text}");
    WrkRun {
        requests: number_before(&text, " requests in"),
        non_2xx: number_after(&text, "Non-2xx or 3xx responses:").unwrap_or(0),
    }
}

fn number_before(text: &str, marker: &str) -> u64 {
    text.lines()
        .find_map(|l| l.split(marker).next().filter(|_| l.contains(marker)))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no '{marker}' in wrk output:\n{text}"))
}

fn number_after(text: &str, marker: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.split(marker).nth(1))
        .and_then(|n| n.trim().parse().ok())
}

#[test]
fn nginx_serves_index_and_status_path_and_logs_them() {
    let nginx = Nginx::start(NginxOptions {
        status_path: Some(("/fail".into(), 500)),
        ..Default::default()
    });
    let (status, body) = http_get(&format!("{}/", nginx.url()));
    assert_eq!(status, 200);
    assert!(body.contains("It works"), "unexpected index: {body}");
    let (status, _) = http_get(&format!("{}/fail?x=1", nginx.url()));
    assert_eq!(status, 500);
    let (status, _) = http_post_form(&format!("{}/fail", nginx.url()), &[("a b", "c&d")]);
    assert_eq!(status, 500);

    let log = nginx.access_log();
    let seen: Vec<(u16, &str, &str)> = log
        .iter()
        .map(|l| (l.status, l.method.as_str(), l.path.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (200, "GET", "/"),
            (500, "GET", "/fail"),
            (500, "POST", "/fail")
        ]
    );
    assert_eq!(nginx.count_requests(), 3);
    assert_eq!(nginx.count_non_2xx(), 2);
}

#[test]
fn slow_path_takes_about_bytes_over_rate() {
    // 5000 bytes at 10000 B/s: about half a second.
    let nginx = Nginx::start(NginxOptions {
        slow_path: Some(("/slow".into(), 5000, 10_000)),
        ..Default::default()
    });
    let started = Instant::now();
    let (status, body) = http_get(&format!("{}/slow", nginx.url()));
    let elapsed = started.elapsed();
    assert_eq!(status, 200);
    assert_eq!(body.len(), 5000);
    assert!(
        (Duration::from_millis(350)..Duration::from_millis(1500)).contains(&elapsed),
        "slow path took {elapsed:?}"
    );

    let started = Instant::now();
    http_get(&format!("{}/", nginx.url()));
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "/ is slow too"
    );

    let slow = &nginx.access_log()[0];
    assert_eq!(slow.path, "/slow");
    assert!(
        (350.0..1500.0).contains(&slow.request_time_ms),
        "nginx logged {slow:?}"
    );
}

#[test]
fn limit_conn_rejects_requests_beyond_the_limit_with_503() {
    // Each /slow response takes 0.25 s, so every wrk connection has a
    // request in progress nearly all the time.
    let nginx = Nginx::start(NginxOptions {
        worker_processes: 2,
        limit_conn: Some(2),
        slow_path: Some(("/slow".into(), 5000, 20_000)),
        ..Default::default()
    });
    let slow = format!("{}/slow", nginx.url());

    let within = wrk(&slow, 2, 1);
    settle_after_wrk(&nginx);
    eprintln!(
        "limit 2, 2 connections: {within:?}, nginx {}",
        nginx.count_requests()
    );
    assert!(within.requests > 0, "nothing completed: {within:?}");
    assert_eq!(within.non_2xx, 0, "503s within the limit");
    assert_eq!(nginx.count_non_2xx(), 0);
    assert_log_matches_wrk(&nginx, &within, 2);

    nginx.clear_access_log();
    let beyond = wrk(&slow, 20, 1);
    settle_after_wrk(&nginx);
    let (ok, rejected) = (nginx.count_status(200), nginx.count_status(503));
    eprintln!("limit 2, 20 connections: {beyond:?}, nginx 200s {ok} 503s {rejected}");
    assert!(beyond.non_2xx > 0, "no 503s beyond the limit: {beyond:?}");
    assert_eq!(rejected + ok, nginx.count_requests(), "only 200s and 503s");
    // At most 2 slow responses at a time for ~1 s: a handful of 200s.
    assert!(ok <= 2 * 6, "{ok} requests got through a limit of 2");
    assert_log_matches_wrk(&nginx, &beyond, 20);
}

#[test]
fn limit_conn_does_not_count_idle_keepalive_connections() {
    // Documented nginx behaviour the harness relies on: instant responses
    // are over before the next request starts, so 20 keep-alive connections
    // on "/" stay (nearly) clear of a limit of 2. Printed, not asserted
    // exactly: it depends on scheduling.
    let nginx = Nginx::start(NginxOptions {
        limit_conn: Some(2),
        ..Default::default()
    });
    let run = wrk(&format!("{}/", nginx.url()), 20, 1);
    settle_after_wrk(&nginx);
    eprintln!("limit 2, 20 connections on /: {run:?}");
    assert!(run.requests > 1000, "nginx barely served: {run:?}");
    assert!(run.non_2xx * 10 < run.requests, "mostly 503s on /: {run:?}");
    assert_log_matches_wrk(&nginx, &run, 20);
}

/// Lets responses in flight when wrk stopped finish and get logged: until
/// nginx's access log stops growing.
fn settle_after_wrk(nginx: &Nginx) {
    nginx.wait_log_quiet();
}

/// nginx logs every response wrk counted, plus at most one in-flight
/// request per connection that wrk dropped when its time was up.
fn assert_log_matches_wrk(nginx: &Nginx, run: &WrkRun, connections: u64) {
    let logged = nginx.count_requests() as u64;
    assert!(
        (run.requests..=run.requests + connections).contains(&logged),
        "nginx logged {logged}, wrk counted {}",
        run.requests
    );
}

#[test]
fn process_and_nginx_are_gone_after_drop() {
    let dir = TempDir::new("selfcheck");
    let mut cmd = Command::new("sleep");
    cmd.arg("600");
    let sleeper = Process::spawn("sleep", cmd, dir.path());
    let pid = sleeper.pid();
    drop(sleeper);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "sleep {pid} survived"
    );

    let nginx = Nginx::start(NginxOptions {
        worker_processes: 2,
        ..Default::default()
    });
    let addr = nginx.addr();
    let master = nginx_master_pid(&nginx);
    drop(nginx);
    // Once nginx's master is gone, nothing of it can still take a connection.
    assert!(!Path::new(&format!("/proc/{master}")).exists());
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "nginx still listens on {addr} after drop"
    );
}

fn nginx_master_pid(nginx: &Nginx) -> u32 {
    let text = std::fs::read_to_string(nginx.dir().join("nginx.pid")).expect("nginx.pid");
    text.trim().parse().expect("pid in nginx.pid")
}

#[test]
fn locust_master_and_worker_counts_match_nginx_log() {
    let nginx = Nginx::start(NginxOptions::default());
    let dir = TempDir::new("locustfile");
    let locustfile = harness::write_locustfile(dir.path(), &nginx.url());
    let (master_port, web_port) = (free_port(), free_port());
    let master = Locust::master(&locustfile, master_port, web_port, &[]);
    let _worker = Locust::worker(&locustfile, master_port, &[]);
    master
        .wait_for_workers(1, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));

    let swarm = format!("{}/swarm", master.web_url());
    let (status, body) = http_post_form(&swarm, &[("user_count", "5"), ("spawn_rate", "5")]);
    assert_eq!(status, 200, "/swarm: {body}");
    thread::sleep(Duration::from_secs(5));
    let (status, body) = http_post_form(&format!("{}/stop", master.web_url()), &[]);
    assert_eq!(status, 200, "/stop: {body}");

    // Locust's workers report every 3 s and send nothing extra on stop.
    let stats = master.settled_stats(Duration::from_secs(20));
    let total = stats.aggregated().expect("an Aggregated row");
    let (requests, failures) = (total.num_requests, total.num_failures);
    let logged = nginx.count_requests() as u64;
    eprintln!("locust counted {requests} ({failures} failures), nginx logged {logged}");
    assert!(requests > 100, "locust barely ran: {requests}");
    assert_eq!(failures, 0);
    let diff = requests.abs_diff(logged) as f64;
    assert!(
        diff <= requests as f64 * 0.01,
        "locust {requests} vs nginx {logged}"
    );
}

#[test]
fn moto_answers_and_resets() {
    let moto = Moto::start();
    let (status, _) = http_get(&format!("{}/moto-api/", moto.url()));
    assert_eq!(status, 200);
    moto.reset();
}
