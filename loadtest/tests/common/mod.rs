//! Running the real `loadtest` binary as master and workers, and reading
//! what it writes. Shared by this crate's integration tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "../../../tests/support/mod.rs"]
pub mod support;

use support::{Process, TempDir};

pub fn loadtest(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_loadtest"));
    cmd.args(args).env("RUST_LOG", "info,goose=error");
    cmd
}

/// `loadtest master` on free ports; `extra` adds flags. Returns the process
/// and its master port.
pub fn master(dir: &TempDir, extra: &[&str]) -> (Process, u16) {
    let port = support::free_port();
    let mut args = vec![
        "master",
        "--master-bind-host",
        "127.0.0.1",
        "--master-bind-port",
    ];
    let port_text = port.to_string();
    args.push(&port_text);
    args.extend_from_slice(extra);
    let mut process = Process::spawn("loadtest-master", loadtest(&args), dir.path());
    process
        .wait_for_port(support_addr(port), Duration::from_secs(20))
        .expect("master listens");
    (process, port)
}

/// A master serving its web UI on 127.0.0.1: the process, its master
/// port, and the UI's base URL, once the UI answers.
pub fn master_with_ui(dir: &TempDir, extra: &[&str]) -> (Process, u16, String) {
    let web_port = support::free_port();
    let web_port_text = web_port.to_string();
    let mut args = vec!["--web-host", "127.0.0.1", "--web-port", &web_port_text];
    args.extend_from_slice(extra);
    let (mut process, port) = master(dir, &args);
    process
        .wait_for_port(support_addr(web_port), Duration::from_secs(20))
        .expect("web UI up");
    (process, port, format!("http://127.0.0.1:{web_port}"))
}

/// `loadtest worker` joining the master on `port`.
pub fn worker(dir: &TempDir, port: u16, extra: &[&str]) -> Process {
    let port_text = port.to_string();
    let mut args = vec![
        "worker",
        "--master-host",
        "127.0.0.1",
        "--master-port",
        &port_text,
    ];
    args.extend_from_slice(extra);
    Process::spawn("loadtest-worker", loadtest(&args), dir.path())
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
