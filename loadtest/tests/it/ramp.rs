//! Headless ramps end to end: a real `loadtest master --headless --ramp`,
//! real workers and an nginx whose breaking point is known in advance.
//!
//! The target: nginx with `limit_conn N` (more than N requests in progress
//! get an instant 503) and a slow `/`: nginx's index module sends `/` to
//! `/index.html`, which `slow_path` serves at a limited rate, so each
//! request stays in progress ~100 ms and every user always has one in
//! progress. With at most N users nothing fails; with more, the extra
//! users' requests fail at once and over and over, so the failure ratio
//! jumps far above 1%. `the_target_breaks_just_above_its_connection_limit`
//! checks that premise directly (fixed-user headless runs) before the ramps
//! rely on it.
//!
//! (`root_rate` does not do for this: `limit_req` delays a request before
//! `limit_conn` counts it, so queued requests are not "in progress".)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use harness::*;
use harness::{free_port, Nginx, NginxOptions, Process, TempDir};
use serde_json::Value;

/// `/` is this many bytes sent at `SLOW_RATE` bytes/s: ~100 ms a request.
const SLOW_BYTES: u64 = 2_000;
const SLOW_RATE: u64 = 20_000;
/// Every ramp step measures one 3 s worker report interval.
const STEP_TIME: &str = "3s";
/// The longest a ramp in these tests may take: steps of ~8 s each, plus
/// workers joining and quitting.
const RAMP_LIMIT: Duration = Duration::from_secs(120);

fn limited_nginx(limit: u32) -> Nginx {
    Nginx::start(NginxOptions {
        limit_conn: Some(limit),
        slow_path: Some(("/index.html".to_string(), SLOW_BYTES, SLOW_RATE)),
        ..NginxOptions::default()
    })
}

/// `loadtest master --headless --ramp SPEC` against `host`, writing its
/// reports to `<dir>/report`, waiting at most 30 s for `workers`.
fn ramp_master(
    dir: &TempDir,
    host: &str,
    spec: &str,
    workers: usize,
    extra: &[&str],
) -> (Process, u16) {
    stepping_master(dir, host, &["--ramp", spec], workers, extra)
}

/// A headless ramp master stepping as `stepped` says (`--ramp SPEC`, or
/// `--ramp-rate SPEC -u POOL`), otherwise as [`ramp_master`].
fn stepping_master(
    dir: &TempDir,
    host: &str,
    stepped: &[&str],
    workers: usize,
    extra: &[&str],
) -> (Process, u16) {
    let report = report_dir(dir);
    let workers = workers.to_string();
    let mut args = vec!["--headless"];
    args.extend_from_slice(stepped);
    args.extend([
        "--step-time",
        STEP_TIME,
        "-r",
        "100",
        "--host",
        host,
        "--expect-workers",
        &workers,
        "--expect-workers-max-wait",
        "30",
        "--report-dir",
        report.to_str().expect("utf-8 temp path"),
    ]);
    args.extend_from_slice(extra);
    loadtest!().master(dir, &args)
}

fn report_dir(dir: &TempDir) -> PathBuf {
    dir.path().join("report")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON ({e}):\n{text}", path.display()))
}

/// Users of each measured step, in order.
fn step_users(report: &Value) -> Vec<u64> {
    report["steps"]
        .as_array()
        .map(|steps| steps.iter().filter_map(|s| s["users"].as_u64()).collect())
        .unwrap_or_default()
}

/// Runs a ramp to its end; returns the exit code and `ramp.json`.
fn run_ramp(dir: &TempDir, master: &mut Process) -> (i32, Value) {
    let started = Instant::now();
    let code = exit_code(master, RAMP_LIMIT);
    println!(
        "ramp took {:.1} s\n{}",
        started.elapsed().as_secs_f64(),
        master.stdout()
    );
    let report = read_json(&report_dir(dir).join("ramp.json"));
    (code, report)
}

/// A fixed-user headless run; returns (requests, failures) from its CSV.
fn fixed_run(nginx: &Nginx, users: u32) -> (f64, f64) {
    let dir = TempDir::new("ramp-premise");
    let prefix = dir.path().join("run");
    let users = users.to_string();
    let (mut master, port) = loadtest!().master(
        &dir,
        &[
            "--headless",
            "-u",
            &users,
            "-r",
            "100",
            "-t",
            "6s",
            "--host",
            &nginx.url(),
            "--csv",
            prefix.to_str().expect("utf-8 temp path"),
        ],
    );
    let _worker = loadtest!().worker(&dir, port, &[]);
    exit_code(&mut master, Duration::from_secs(60));
    let total = csv_row(&dir.path().join("run_stats.csv"), "Aggregated");
    (num(&total, "Request Count"), num(&total, "Failure Count"))
}

/// The premise of the threshold tests: with `limit_conn 4`, 4 users never
/// see a 503 and 5 users see plenty.
#[test]
fn the_target_breaks_just_above_its_connection_limit() {
    let nginx = limited_nginx(4);
    let (requests, failures) = fixed_run(&nginx, 4);
    println!("4 users: {requests} requests, {failures} failures");
    assert!(requests >= 100.0, "too little load: {requests}");
    assert_eq!(failures, 0.0, "4 users stay within limit_conn 4");
    let (requests, failures) = fixed_run(&nginx, 5);
    println!("5 users: {requests} requests, {failures} failures");
    assert!(
        failures / requests > 0.05,
        "5 users break limit_conn 4: {failures} of {requests} failed"
    );
}

/// Ramps 2 by 2 against `limit_conn limit`; the threshold must be the
/// first step above the limit.
fn threshold_for(limit: u32, spec: &str, expected: u64) {
    let nginx = limited_nginx(limit);
    let dir = TempDir::new("ramp-threshold");
    let (mut master, port) = ramp_master(&dir, &nginx.url(), spec, 1, &[]);
    let _worker = loadtest!().worker(&dir, port, &[]);
    let (code, report) = run_ramp(&dir, &mut master);
    assert_eq!(code, 0, "a threshold is an answer\n{}", master.logs());
    assert_eq!(report["threshold_users"], expected, "{report:#}");
    assert_eq!(report["last_healthy_users"], u64::from(limit), "{report:#}");
    assert_eq!(report["criterion"], "error-rate<=1%", "{report:#}");
    assert!(report["error"].is_null(), "{report:#}");
    let users = step_users(&report);
    assert_eq!(
        users.last(),
        Some(&expected),
        "the ramp stops at the first failing step"
    );
    let steps = report["steps"].as_array().cloned().unwrap_or_default();
    for step in &steps[..steps.len() - 1] {
        assert_eq!(step["failures"], 0, "healthy below the limit: {step}");
        assert!(step["requests"].as_u64() > Some(0), "{step}");
        // Floats since the ramp reads microsecond histograms.
        assert!(step["p95_ms"].as_f64() > Some(0.0), "{step}");
    }
    let stdout = master.stdout();
    assert!(
        stdout.contains(&format!(
            "threshold: {expected} users (error-rate<=1% failed: observed"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("last healthy: {limit} users")),
        "{stdout}"
    );
    let csv = std::fs::read_to_string(report_dir(&dir).join("ramp.csv")).unwrap_or_default();
    assert_eq!(csv.lines().count(), steps.len() + 1, "{csv}");
    let html = std::fs::read_to_string(report_dir(&dir).join("ramp.html")).unwrap_or_default();
    assert_eq!(
        html.matches("<svg").count(),
        5,
        "successful and failed req/s, failure ratio, successful and failed times"
    );
}

#[test]
fn ramp_finds_a_limit_of_4() {
    threshold_for(4, "2:2:10", 6);
}

#[test]
fn ramp_finds_a_limit_of_8() {
    threshold_for(8, "4:2:14", 10);
}

/// `--refine` bisects 2:4 steps down to the exact count, going back down
/// in users to do so.
#[test]
fn refine_narrows_the_threshold_to_one_user() {
    let nginx = limited_nginx(4);
    let dir = TempDir::new("ramp-refine");
    let (mut master, port) = ramp_master(&dir, &nginx.url(), "2:4:10", 1, &["--refine"]);
    let _worker = loadtest!().worker(&dir, port, &[]);
    let (code, report) = run_ramp(&dir, &mut master);
    assert_eq!(code, 0, "{}", master.logs());
    assert_eq!(step_users(&report), vec![2, 6, 4, 5], "{report:#}");
    assert_eq!(report["threshold_users"], 5, "{report:#}");
    assert_eq!(report["last_healthy_users"], 4, "{report:#}");
    assert_eq!(report["refine"], true);
}

/// A target that never fails: MAX reached, no threshold, exit 0.
#[test]
fn a_healthy_target_reaches_max() {
    let nginx = Nginx::start(NginxOptions::default());
    let dir = TempDir::new("ramp-healthy");
    let (mut master, port) = ramp_master(&dir, &nginx.url(), "2:2:4", 1, &[]);
    let _worker = loadtest!().worker(&dir, port, &[]);
    let (code, report) = run_ramp(&dir, &mut master);
    assert_eq!(code, 0, "{}", master.logs());
    assert!(report["threshold_users"].is_null(), "{report:#}");
    assert!(report["criterion"].is_null(), "{report:#}");
    assert_eq!(report["last_healthy_users"], 4, "{report:#}");
    assert_eq!(step_users(&report), vec![2, 4]);
    let four = &report["steps"][1];
    let (requests, rps, duration) = (
        four["requests"].as_f64().unwrap_or(0.0),
        four["rps"].as_f64().unwrap_or(0.0),
        four["duration_s"].as_f64().unwrap_or(0.0),
    );
    assert!(requests > 100.0, "{four}");
    assert_close(
        rps,
        requests / duration,
        0.01,
        "rps is requests over the window",
    );
    assert!(master
        .stdout()
        .contains("no threshold: every step up to 4 users was healthy"));
}

/// A closed loopback port: a clear message, exit 1, and ramp.json says why.
#[test]
fn an_unreachable_target_cannot_be_measured() {
    let closed = format!("http://127.0.0.1:{}", free_port());
    let dir = TempDir::new("ramp-unreachable");
    let (mut master, port) = ramp_master(&dir, &closed, "2:2:10", 1, &[]);
    let _worker = loadtest!().worker(&dir, port, &[]);
    let (code, report) = run_ramp(&dir, &mut master);
    assert_eq!(code, 1, "{}", master.logs());
    let error = report["error"].as_str().unwrap_or_default();
    assert!(error.contains("target is unreachable"), "{report:#}");
    assert!(error.contains("check the target address"), "{report:#}");
    assert!(report["threshold_users"].is_null());
    assert_eq!(step_users(&report), Vec::<u64>::new());
    let stderr = master.stderr();
    assert!(
        stderr.contains("the ramp could not measure: the target is unreachable"),
        "{stderr}"
    );
}

/// No worker joins within --expect-workers-max-wait: exit 1, and why.
#[test]
fn no_workers_cannot_be_measured() {
    let dir = TempDir::new("ramp-no-workers");
    let report = report_dir(&dir);
    let (mut master, _port) = loadtest!().master(
        &dir,
        &[
            "--headless",
            "--ramp",
            "1:1:2",
            "--step-time",
            "3s",
            "--host",
            "http://127.0.0.1:9",
            "--expect-workers-max-wait",
            "1",
            "--report-dir",
            report.to_str().expect("utf-8 temp path"),
        ],
    );
    let (code, report) = run_ramp(&dir, &mut master);
    assert_eq!(code, 1, "{}", master.logs());
    let error = report["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("only 0 of 1 workers connected within 1s"),
        "{report:#}"
    );
}

/// A worker killed (SIGKILL) mid-ramp: the ramp goes on with the other,
/// measures the spoiled step again, notes it, and still finds the limit.
#[test]
fn a_killed_worker_is_noted_and_the_ramp_goes_on() {
    let nginx = limited_nginx(4);
    let dir = TempDir::new("ramp-worker-killed");
    let (mut master, port) = ramp_master(&dir, &nginx.url(), "2:2:10", 2, &[]);
    let _survivor = loadtest!().worker(&dir, port, &[]);
    let mut victim = loadtest!().worker(&dir, port, &[]);
    wait_until(Duration::from_secs(60), "the first step's row", || {
        master
            .stdout()
            .lines()
            .any(|l| l.trim_start().starts_with("2 ") && l.ends_with("healthy"))
            .then_some(())
    });
    victim.signal("KILL");
    let (code, report) = run_ramp(&dir, &mut master);
    assert_eq!(code, 0, "{}", master.logs());
    assert_eq!(report["threshold_users"], 6, "{report:#}");
    assert_eq!(report["last_healthy_users"], 4, "{report:#}");
    let notes = report["notes"].to_string();
    assert!(notes.contains("workers changed from 2 to 1"), "{report:#}");
    let workers: Vec<u64> = report["steps"]
        .as_array()
        .map(|s| s.iter().filter_map(|s| s["workers"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(workers.first(), Some(&2), "{report:#}");
    assert_eq!(workers.last(), Some(&1), "{report:#}");
    assert!(master
        .stdout()
        .contains("note: workers changed from 2 to 1"));
}

/// Ramp specs that make no sense: exit 2 and the expected form.
#[test]
fn bad_ramp_specs_exit_2_with_the_expected_form() {
    for bad in ["10:0:100", "100:10:10", "abc"] {
        let output = Command::new(env!("CARGO_BIN_EXE_loadtest"))
            .args(["master", "--headless", "--ramp", bad, "--step-time", "3s"])
            .output()
            .expect("loadtest runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{bad}: {stderr}");
        assert!(stderr.contains("START:STEP:MAX"), "{bad}: {stderr}");
    }
    let output = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["master", "--headless", "--ramp", "1:1:5"])
        .output()
        .expect("loadtest runs");
    assert_eq!(output.status.code(), Some(2), "--step-time is required");
}

/// The same ramp driven from outside over the web API (`POST /swarm`,
/// `GET /stats/total`), as a remote `spotload ramp` will.
#[test]
fn a_ramp_over_http_measures_the_same_way() {
    use swarm::ramp::{
        run_ramp, HttpDriver, Limits, Quiet, RampDriver, RampPlan, RampReport, RampSpec,
    };

    let nginx = limited_nginx(4);
    let dir = TempDir::new("ramp-http");
    let web_port = free_port().to_string();
    let (_master, port) = loadtest!().master(
        &dir,
        &[
            "--web-host",
            "127.0.0.1",
            "--web-port",
            &web_port,
            "--host",
            &nginx.url(),
        ],
    );
    let _worker = loadtest!().worker(&dir, port, &[]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let report = runtime.block_on(async {
        let base = format!("http://127.0.0.1:{web_port}");
        let driver = HttpDriver::new(&base, None, None).expect("client");
        driver
            .wait_for_workers(1, Duration::from_secs(30))
            .await
            .expect("the worker joins");
        let spec = RampSpec::parse("3:2:5").expect("spec");
        let plan = RampPlan::new(spec, Duration::from_secs(3), Limits::default(), 100.0);
        let mut report = RampReport::new(&plan, None, 0.0);
        tokio::time::timeout(
            RAMP_LIMIT,
            run_ramp(&driver, &plan, &mut report, &mut Quiet),
        )
        .await
        .expect("the ramp ends");
        report
    });
    println!("{report:#?}");
    assert_eq!(report.error, None);
    assert_eq!(report.threshold_users, Some(5));
    assert_eq!(report.last_healthy_users, Some(3));
    let three = &report.steps[0];
    assert!(three.requests > 0 && three.failures == 0, "{three:?}");
}

/// A rate ramp (`--ramp-rate`, the open model) against an nginx that
/// answers at most 250 requests a second and refuses the excess with 503s:
/// 100 and 200 iterations a second are healthy, 300 is the threshold —
/// whatever the pool of users, since the load is the rate.
#[test]
fn a_rate_ramp_finds_the_rate_the_target_refuses_beyond() {
    let nginx = Nginx::start(NginxOptions {
        refuse_above: Some((250, 50)),
        ..NginxOptions::default()
    });
    let dir = TempDir::new("ramp-rate");
    let (mut master, port) = stepping_master(
        &dir,
        &nginx.url(),
        &["--ramp-rate", "100:100:400", "-u", "10"],
        1,
        &[],
    );
    let _worker = loadtest!().worker(&dir, port, &[]);
    let (code, report) = run_ramp(&dir, &mut master);
    assert_eq!(code, 0, "{}", master.logs());
    assert_eq!(report["threshold_rps"], 300, "{report:#}");
    assert_eq!(report["last_healthy_rps"], 200, "{report:#}");
    assert!(report["threshold_users"].is_null(), "{report:#}");
    assert_eq!(report["pool_users"], 10, "{report:#}");
    let steps = report["steps"].as_array().cloned().unwrap_or_default();
    let healthy = &steps[1];
    assert_eq!(healthy["arrival_rate"], 200, "{healthy}");
    // The healthy step served its rate (within a report interval's edge).
    let rps = healthy["rps"].as_f64().unwrap_or(0.0);
    assert!((180.0..=220.0).contains(&rps), "{healthy}");
    let stdout = master.stdout();
    assert!(stdout.contains("threshold: 300/s ("), "{stdout}");
    assert!(stdout.contains("last healthy: 200/s:"), "{stdout}");
    let html = std::fs::read_to_string(report_dir(&dir).join("ramp.html")).unwrap_or_default();
    assert!(
        html.contains("against iterations/s"),
        "the charts are drawn against the rate"
    );
}
