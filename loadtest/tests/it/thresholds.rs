//! `--threshold` rules end to end: a real master and worker against an
//! nginx whose `/` takes ~100 ms (`/index.html` sent at a limited rate), so
//! what each rule observes is known in advance. A rule that cannot be met
//! stops a long run within seconds with exit code 99, naming the rule and
//! what it observed, and nothing measured is lost; rules that are met exit
//! 0; a malformed rule is refused before anything runs; in a UI run the
//! rules' state is in `/stats/requests` as it goes; in a ramp the rules
//! judge each step.

use std::time::{Duration, Instant};

use harness::webdriver::{ChromeDriver, Session};
use harness::*;

/// `/` is this many bytes sent at `SLOW_RATE` bytes/s: ~100 ms a request.
const SLOW_BYTES: u64 = 2_000;
const SLOW_RATE: u64 = 20_000;

fn slow_nginx() -> Nginx {
    Nginx::start(NginxOptions {
        slow_path: Some(("/index.html".to_string(), SLOW_BYTES, SLOW_RATE)),
        ..NginxOptions::default()
    })
}

/// A headless run of 4 users for `run_time` against `nginx` with `extra`
/// flags, one worker, its CSVs under `dir/run`: the master, and the worker.
fn headless(dir: &TempDir, nginx: &Nginx, run_time: &str, extra: &[&str]) -> (Process, Process) {
    let csv = dir.path().join("run");
    let url = nginx.url();
    let mut args = vec![
        "--headless",
        "-u",
        "4",
        "-r",
        "100",
        "-t",
        run_time,
        "--host",
        &url,
        "--expect-workers-max-wait",
        "30",
        "--csv",
        csv.to_str().expect("utf-8 temp path"),
    ];
    args.extend_from_slice(extra);
    let (master, port) = loadtest!().master(dir, &args);
    let worker = loadtest!().worker(dir, port, &[]);
    (master, worker)
}

/// The `Aggregated` request count of `dir/run_stats.csv`.
fn csv_total(dir: &TempDir) -> u64 {
    let path = dir.path().join("run_stats.csv");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let row = text
        .lines()
        .find(|l| l.contains(",Aggregated,"))
        .unwrap_or_else(|| panic!("no Aggregated row in {}: {text}", path.display()));
    row.split(',')
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no request count in {row}"))
}

#[test]
fn a_rule_that_cannot_be_met_stops_a_long_run_with_exit_code_99() {
    let nginx = slow_nginx();
    let dir = TempDir::new("threshold-stop");
    let started = Instant::now();
    let (mut master, _worker) = headless(
        &dir,
        &nginx,
        "40s",
        &["--threshold", "error-rate<1%", "--threshold", "p95<20ms"],
    );
    // 40 s asked; the rule fails at the first check after the first report.
    let code = exit_code(&mut master, Duration::from_secs(30));
    let took = started.elapsed();
    let (stdout, stderr) = (master.stdout(), master.stderr());
    assert_eq!(code, 99, "{stdout}\n{stderr}");
    assert!(took < Duration::from_secs(30), "stopped after {took:?}");
    println!("a 40 s run stopped after {took:?}:\n{stdout}");
    // Named with what it observed (~100 ms), in the log and the summary.
    assert!(
        stderr.contains("threshold \"p95<20ms\" failed: observed "),
        "{stderr}"
    );
    let row = stdout
        .lines()
        .find(|l| l.starts_with("p95<20ms "))
        .unwrap_or_else(|| panic!("no row for the rule: {stdout}"));
    assert!(row.ends_with("FAIL, stopped the run"), "{row}");
    let passed = stdout
        .lines()
        .find(|l| l.starts_with("error-rate<1% "))
        .unwrap_or_else(|| panic!("no row for the rule: {stdout}"));
    assert!(
        passed.contains(" 0% ") && passed.ends_with("PASS"),
        "{passed}"
    );
    assert!(stdout.contains("1 of 2 passed"), "{stdout}");
    assert!(
        stderr.contains("1 of 2 thresholds failed: \"p95<20ms\"")
            && stderr.contains("exit code 99"),
        "{stderr}"
    );
    // Nothing measured was lost by the stop: the CSV counts nginx's requests.
    nginx.wait_log_quiet();
    assert_eq!(csv_total(&dir), nginx.count_requests() as u64);
}

#[test]
fn rules_that_are_met_exit_0() {
    let nginx = slow_nginx();
    let dir = TempDir::new("threshold-pass");
    let (mut master, _worker) = headless(
        &dir,
        &nginx,
        "7s",
        &[
            "--threshold",
            "p95<2s",
            "--threshold",
            "error-rate<=0%",
            "--threshold",
            "rps>1",
            "--threshold",
            "max<5s for GET /",
        ],
    );
    let code = exit_code(&mut master, Duration::from_secs(60));
    let stdout = master.stdout();
    assert_eq!(code, 0, "{stdout}\n{}", master.stderr());
    assert!(stdout.contains("4 of 4 passed"), "{stdout}");
    for rule in ["p95<2s ", "error-rate<=0% ", "rps>1 ", "max<5s for GET / "] {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(rule))
            .unwrap_or_else(|| panic!("no row for {rule}: {stdout}"));
        assert!(row.ends_with("PASS"), "{row}");
    }
}

#[test]
fn a_malformed_rule_is_refused_before_anything_runs() {
    for (rule, says) in [
        ("p100<1s", "above 0 and below 100"),
        ("p95<0", "never pass"),
        ("latency<1s", "not a metric"),
    ] {
        let port = free_port().to_string();
        let out = loadtest!()
            .command(&[
                "master",
                "--headless",
                "-u",
                "1",
                "--master-bind-host",
                "127.0.0.1",
                "--master-bind-port",
                &port,
                "--threshold",
                rule,
            ])
            .output()
            .expect("loadtest runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{rule}: {stderr}");
        assert!(
            stderr.contains(rule) && stderr.contains(says),
            "{rule}: {stderr}"
        );
        assert!(!stderr.contains("listening"), "nothing ran: {stderr}");
    }
    // A ramp judges all requests together: a rule for one is refused.
    let out = loadtest!()
        .command(&[
            "master",
            "--headless",
            "--ramp",
            "1:1:2",
            "--step-time",
            "3s",
            "--threshold",
            "p95<1s for GET /",
        ])
        .output()
        .expect("loadtest runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("all requests together"), "{stderr}");
}

#[test]
fn a_ui_run_shows_the_rules_as_it_goes_and_is_stopped_by_a_failing_one() {
    let nginx = slow_nginx();
    let dir = TempDir::new("threshold-ui");
    let (mut master, port, url) = loadtest!().master_with_ui(
        &dir,
        &[
            "--host",
            &nginx.url(),
            "--threshold",
            "p50<10s",
            "--threshold",
            "avg<20ms",
            "--threshold-abort-delay",
            "4s",
        ],
    );
    let _worker = loadtest!().worker(&dir, port, &[]);
    let api = Api::new(&url);
    wait_until(Duration::from_secs(30), "the worker to join", || {
        (api.requests().worker_count == 1).then_some(())
    });
    let live = api.requests().thresholds;
    assert_eq!(live.len(), 2, "{live:?}");
    assert!(
        live.iter().all(|v| v.passed && v.value.is_none()),
        "no samples yet: {live:?}"
    );
    // The page, in Chromium, shows each rule's state from here on.
    let driver = ChromeDriver::start();
    let profile = TempDir::new("chromium-profile");
    let page = driver
        .new_session(profile.path())
        .unwrap_or_else(|e| panic!("cannot start Chromium: {e}\n{}", driver.logs()));
    page.goto(&format!("{url}/")).expect("open the page");
    assert_eq!(results(&page, 2), ["waiting", "waiting"]);
    api.swarm_at_once(4, &nginx.url());
    // Observed while the delay runs: the rule fails, the run goes on.
    let seen = wait_until(Duration::from_secs(20), "the rules to observe", || {
        let s = api.requests();
        s.thresholds.iter().all(|v| v.value.is_some()).then_some(s)
    });
    assert!(!seen.thresholds[1].passed, "{:?}", seen.thresholds);
    // Then the delay is over and it stops the run.
    let stopped = wait_until(Duration::from_secs(30), "the rule to stop the run", || {
        let s = api.requests();
        (s.state == swarm::api::RunState::Stopped).then_some(s)
    });
    let verdicts = &stopped.thresholds;
    assert!(verdicts[0].passed && !verdicts[0].aborted, "{verdicts:?}");
    assert!(verdicts[1].aborted && !verdicts[1].passed, "{verdicts:?}");
    assert_eq!(verdicts[0].source.as_deref(), Some("hdr"), "{verdicts:?}");
    let log = master.stderr();
    assert!(log.contains("threshold \"avg<20ms\" failed"), "{log}");
    let shown = page
        .wait_for(Duration::from_secs(10), "the page to show the stop", |p| {
            let shown = rows(p)?;
            let stopped = shown.iter().any(|(_, r)| r == "FAIL, stopped the run");
            Ok(stopped.then_some(shown))
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        shown,
        [
            ("p50<10s".to_string(), "PASS".to_string()),
            ("avg<20ms".to_string(), "FAIL, stopped the run".to_string())
        ]
    );
    // The report of the run carries the table too.
    let report = api.get_text("/stats/report");
    assert!(
        report.contains("avg&lt;20ms") && report.contains("FAIL, stopped the run"),
        "{report}"
    );
    master.signal("INT");
    assert_eq!(exit_code(&mut master, Duration::from_secs(20)), 99, "{log}");
}

/// The page's thresholds table: (rule, result) per row.
fn rows(page: &Session) -> Result<Vec<(String, String)>, String> {
    let mut rows = Vec::new();
    for row in page.find_all("#thresholds-table tbody tr")? {
        let rule = page.attribute(&row, "data-rule")?.unwrap_or_default();
        let result = page.attribute(&row, "data-result")?.unwrap_or_default();
        rows.push((rule, result));
    }
    Ok(rows)
}

/// The results of the page's `count` rules, once it lists them.
fn results(page: &Session, count: usize) -> Vec<String> {
    page.wait_for(Duration::from_secs(10), "the rules on the page", |p| {
        let rows = rows(p)?;
        let shown = p.is_displayed(&p.find("#thresholds-panel")?)?;
        Ok((shown && rows.len() == count).then(|| rows.into_iter().map(|(_, r)| r).collect()))
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn in_a_ramp_the_rules_judge_each_step() {
    let nginx = slow_nginx();
    let dir = TempDir::new("threshold-ramp");
    let (mut master, port) = loadtest!().master(
        &dir,
        &[
            "--headless",
            "--ramp",
            "1:1:3",
            "--step-time",
            "3s",
            "-r",
            "100",
            "--host",
            &nginx.url(),
            "--expect-workers-max-wait",
            "30",
            "--threshold",
            "p95<50ms",
        ],
    );
    let _worker = loadtest!().worker(&dir, port, &[]);
    let code = exit_code(&mut master, Duration::from_secs(90));
    let stdout = master.stdout();
    assert_eq!(code, 0, "{stdout}\n{}", master.stderr());
    assert!(
        stdout.contains("a step is healthy while error-rate<=1% and p95<50ms holds"),
        "{stdout}"
    );
    // ~100 ms a request: the first step breaks the rule (what it observed
    // is near 100 ms, either side).
    assert!(
        stdout.contains("threshold: 1 users (p95<50ms failed: observed "),
        "{stdout}"
    );
}
