//! Running the real `loadtest` binary as master and workers, and reading
//! what it writes. Shared by this crate's integration tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[path = "../../../tests/support/mod.rs"]
pub mod support;

use support::{Process, TempDir};

/// The `loadtest` binary with `args`. Every test process gets
/// `AWS_EC2_METADATA_DISABLED=true`, so no worker probes the real metadata
/// address (169.254.169.254); a test that wants a spot watch removes it and
/// points `AWS_EC2_METADATA_SERVICE_ENDPOINT` at a stub.
pub fn loadtest(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_loadtest"));
    cmd.args(args)
        .env("RUST_LOG", "info,goose=error")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

/// A log name no other process of this test binary uses: processes sharing
/// a temp dir must not share (and truncate) each other's log files.
pub fn unique_name(base: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    format!("{base}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// `loadtest master` on free ports; `extra` adds flags. Returns the process
/// and its master port.
pub fn master(dir: &TempDir, extra: &[&str]) -> (Process, u16) {
    let port = support::free_port();
    let process = master_on(dir, port, extra);
    (process, port)
}

/// `loadtest master` bound to 127.0.0.1:`port` (e.g. the port of a master
/// it replaces), once that port listens.
pub fn master_on(dir: &TempDir, port: u16, extra: &[&str]) -> Process {
    let mut args = vec![
        "master",
        "--master-bind-host",
        "127.0.0.1",
        "--master-bind-port",
    ];
    let port_text = port.to_string();
    args.push(&port_text);
    args.extend_from_slice(extra);
    let name = unique_name("loadtest-master");
    let mut process = Process::spawn(&name, loadtest(&args), dir.path());
    process
        .wait_for_port(support_addr(port), Duration::from_secs(20))
        .expect("master listens");
    process
}

/// A master serving its web UI on 127.0.0.1: the process, its master
/// port, and the UI's base URL, once the UI answers.
pub fn master_with_ui(dir: &TempDir, extra: &[&str]) -> (Process, u16, String) {
    let (port, web_port) = (support::free_port(), support::free_port());
    let process = master_with_ui_on(dir, port, web_port, extra);
    (process, port, format!("http://127.0.0.1:{web_port}"))
}

/// A master with its UI on given ports (those of a master it replaces),
/// once both listen.
pub fn master_with_ui_on(dir: &TempDir, port: u16, web_port: u16, extra: &[&str]) -> Process {
    let web_port_text = web_port.to_string();
    let mut args = vec!["--web-host", "127.0.0.1", "--web-port", &web_port_text];
    args.extend_from_slice(extra);
    let mut process = master_on(dir, port, &args);
    process
        .wait_for_port(support_addr(web_port), Duration::from_secs(20))
        .expect("web UI up");
    process
}

/// `loadtest worker` joining the master on `port`.
pub fn worker(dir: &TempDir, port: u16, extra: &[&str]) -> Process {
    spawn_worker(dir, worker_command(port, extra))
}

/// The command line of [`worker`], for a test that changes its environment.
pub fn worker_command(port: u16, extra: &[&str]) -> Command {
    let port_text = port.to_string();
    let mut args = vec![
        "worker",
        "--master-host",
        "127.0.0.1",
        "--master-port",
        &port_text,
    ];
    args.extend_from_slice(extra);
    loadtest(&args)
}

/// Starts a worker command, with logs of its own in `dir`.
pub fn spawn_worker(dir: &TempDir, cmd: Command) -> Process {
    Process::spawn(&unique_name("loadtest-worker"), cmd, dir.path())
}

/// The node id a worker logs in its `worker <node id> connecting to ...`
/// line, once it has logged it.
pub fn node_id(worker: &mut Process) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = strip_ansi(&worker.stderr());
        let id = log.lines().find_map(|line| {
            let rest = &line[line.find("worker ")? + "worker ".len()..];
            let (id, after) = rest.split_once(' ')?;
            after.starts_with("connecting to").then(|| id.to_string())
        });
        if let Some(id) = id {
            return id;
        }
        assert!(
            Instant::now() < deadline && worker.is_running(),
            "{} logged no `worker <id> connecting to` line\n{}",
            worker.name(),
            worker.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `text` without terminal colour codes (tracing colours its levels).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `GET {api}/stats/requests`.
pub fn stats(api: &str) -> serde_json::Value {
    get_json(&format!("{api}/stats/requests"))
}

/// The Aggregated `num_requests` of a `/stats/requests` answer (0 if none).
pub fn total_requests(stats: &serde_json::Value) -> u64 {
    support::aggregated_row(stats)["num_requests"]
        .as_u64()
        .unwrap_or(0)
}

/// The entry of `workers` with this node id, if listed.
pub fn worker_entry<'a>(stats: &'a serde_json::Value, id: &str) -> Option<&'a serde_json::Value> {
    stats["workers"]
        .as_array()?
        .iter()
        .find(|w| w["id"].as_str() == Some(id))
}

/// `(id, state, user_count)` of each listed worker, for messages and checks.
pub fn worker_states(stats: &serde_json::Value) -> Vec<(String, String, u64)> {
    stats["workers"]
        .as_array()
        .map(|workers| {
            workers
                .iter()
                .map(|w| {
                    (
                        w["id"].as_str().unwrap_or_default().to_string(),
                        w["state"].as_str().unwrap_or_default().to_string(),
                        w["user_count"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// POST /swarm with these users and rate (no Origin header, like a
/// script); panics unless it answers `success: true`.
pub fn start_swarm(api: &str, users: u32, rate: u32) {
    let (users, rate) = (users.to_string(), rate.to_string());
    let (status, body) = support::http_post_form(
        &format!("{api}/swarm"),
        &[("user_count", &users), ("spawn_rate", &rate)],
    );
    assert_eq!(status, 200, "POST /swarm: {body}");
    let answer: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("/swarm not JSON ({e}): {body}"));
    assert_eq!(answer["success"], true, "POST /swarm refused: {body}");
}

/// The Aggregated request count once it has not changed for 4 s (longer
/// than a worker's 3 s report interval).
pub fn settled_requests(api: &str, limit: Duration) -> u64 {
    let mut last = u64::MAX;
    let mut stable_since = Instant::now();
    wait_until(limit, "the request count to settle", || {
        let n = total_requests(&stats(api));
        if n != last {
            (last, stable_since) = (n, Instant::now());
        }
        (stable_since.elapsed() >= Duration::from_secs(4)).then_some(n)
    })
}

/// Seconds since the Unix epoch, as nginx's `$msec`.
pub fn epoch_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub fn support_addr(port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
}

/// One row of a Locust-format `_stats.csv`, by header name.
pub fn csv_row(path: &Path, name: &str) -> std::collections::HashMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header line").split(',').collect();
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        if cells.get(1) == Some(&name) {
            return header
                .iter()
                .zip(cells)
                .map(|(h, c)| (h.to_string(), c.to_string()))
                .collect();
        }
    }
    panic!("no row {name:?} in {}:\n{text}", path.display());
}

pub fn num(row: &std::collections::HashMap<String, String>, column: &str) -> f64 {
    row.get(column)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("column {column} in {row:?}"))
}

/// Waits for a process to exit and returns its exit code.
pub fn exit_code(process: &mut Process, limit: Duration) -> i32 {
    let status = process.wait_exit(limit).unwrap_or_else(|| {
        panic!(
            "{} still running after {limit:?}\n{}",
            process.name(),
            process.logs()
        )
    });
    status.code().unwrap_or(-1)
}

/// `GET url` as JSON.
pub fn get_json(url: &str) -> serde_json::Value {
    let (status, body) = support::http_get(url);
    assert_eq!(status, 200, "GET {url}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url} not JSON ({e}): {body}"))
}

/// Polls `check` until it returns Some, or panics after `limit`.
pub fn wait_until<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Within `tolerance` (a fraction) of `expected`.
pub fn assert_close(actual: f64, expected: f64, tolerance: f64, what: &str) {
    let diff = (actual - expected).abs();
    println!("{what}: {actual} vs {expected}");
    assert!(
        expected > 0.0,
        "{what}: nothing to compare (expected {expected})"
    );
    assert!(
        diff <= expected * tolerance,
        "{what}: {actual} vs {expected} differ by {:.3}% (> {:.2}%)",
        diff / expected * 100.0,
        tolerance * 100.0
    );
}

pub fn path_in(dir: &TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}
