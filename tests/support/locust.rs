//! Stock Locust from the project's Python venv: [`venv_dir`] and
//! [`venv_bin`] find the venv `scripts/test` installs, [`write_locustfile`]
//! writes a minimal locustfile, [`Locust`] runs a master or worker, and
//! [`aggregated_row`] picks the totals out of a `/stats/requests` answer.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use super::http::http_get;
use super::process::{loopback, Process, TempDir, START_TIMEOUT};

/// How long Locust's totals must stay unchanged to count as final: longer
/// than its workers' 3 s report interval.
const LOCUST_SETTLE: Duration = Duration::from_millis(3500);

/// The venv `scripts/test` installs locust and moto into.
pub fn venv_dir() -> PathBuf {
    std::env::var_os("SPOTLOAD_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/spotload/venv"))
}

/// A program from the venv, e.g. `venv_bin("locust")`, `venv_bin("moto_server")`.
pub fn venv_bin(name: &str) -> PathBuf {
    let path = venv_dir().join("bin").join(name);
    assert!(
        path.exists(),
        "{} missing: run scripts/test to install (venv from $SPOTLOAD_VENV)",
        path.display()
    );
    path
}

/// Writes `locustfile.py` into `dir`: one `FastHttpUser` looping GET `/`
/// against `host_url` without waiting.
pub fn write_locustfile(dir: &Path, host_url: &str) -> PathBuf {
    let path = dir.join("locustfile.py");
    let source = format!(
        r#"from locust import FastHttpUser, constant, task


class WebsiteUser(FastHttpUser):
    host = "{host_url}"
    wait_time = constant(0)

    @task
    def index(self):
        self.client.get("/")
"#
    );
    fs::write(&path, source).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

/// A stock Locust master or worker from the venv; stopped on drop.
#[derive(Debug)]
pub struct Locust {
    process: Process,
    dir: TempDir,
    web_port: Option<u16>,
}

impl Locust {
    /// `locust --master` bound to 127.0.0.1:`bind_port`, web UI on
    /// 127.0.0.1:`web_port`. Returns once its ports are open (only the
    /// master port when `extra` has `--headless`, which turns the UI off).
    pub fn master(locustfile: &Path, bind_port: u16, web_port: u16, extra: &[&str]) -> Locust {
        let headless = extra.contains(&"--headless");
        let mut cmd = locust_command(locustfile);
        cmd.args(["--master", "--master-bind-host", "127.0.0.1"])
            .arg("--master-bind-port")
            .arg(bind_port.to_string())
            .args(["--web-host", "127.0.0.1"])
            .arg("--web-port")
            .arg(web_port.to_string())
            .args(extra);
        let dir = TempDir::new("locust-master");
        let mut process = Process::spawn("locust-master", cmd, dir.path());
        let mut ports = vec![bind_port];
        if !headless {
            ports.push(web_port);
        }
        for port in ports {
            if let Err(e) = process.wait_for_port(loopback(port), START_TIMEOUT) {
                panic!("locust master did not start: {e}");
            }
        }
        Locust {
            process,
            dir,
            web_port: (!headless).then_some(web_port),
        }
    }

    /// `locust --worker` connecting to 127.0.0.1:`master_port`. Returns at
    /// once: wait on the master (`wait_for_workers`) to know it joined.
    pub fn worker(locustfile: &Path, master_port: u16, extra: &[&str]) -> Locust {
        let mut cmd = locust_command(locustfile);
        cmd.args(["--worker", "--master-host", "127.0.0.1"])
            .arg("--master-port")
            .arg(master_port.to_string())
            .args(extra);
        let dir = TempDir::new("locust-worker");
        let process = Process::spawn("locust-worker", cmd, dir.path());
        Locust {
            process,
            dir,
            web_port: None,
        }
    }

    /// `http://127.0.0.1:WEB_PORT` of a master with its UI on.
    pub fn web_url(&self) -> String {
        let port = self
            .web_port
            .expect("this locust has no web UI (a worker, or a --headless master)");
        format!("http://127.0.0.1:{port}")
    }

    /// Locust's `GET /stats/requests` JSON (`stats`, `total_rps`,
    /// `workers`, `state`, ...).
    pub fn stats_requests(&self) -> serde_json::Value {
        let url = format!("{}/stats/requests", self.web_url());
        let (status, body) = http_get(&url);
        assert_eq!(status, 200, "GET {url} answered {status}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url} is not JSON ({e}): {body}"))
    }

    /// Waits until the master reports at least `n` connected workers.
    pub fn wait_for_workers(&self, n: usize, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let stats = self.stats_requests();
            let count = stats["workers"].as_array().map_or(0, |w| w.len());
            if count >= n {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{count} of {n} workers joined within {timeout:?}\n{}",
                    self.process.logs()
                ));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// `stats_requests` once its `Aggregated` row has stopped changing for
    /// [`LOCUST_SETTLE`]. Locust workers report every 3 s and send nothing
    /// extra on a stop, so counts keep growing for up to 3 s after
    /// `/stop`; call this before comparing them with anything.
    pub fn settled_stats(&self, timeout: Duration) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        let mut stats = self.stats_requests();
        let mut last = aggregated_row(&stats);
        let mut stable_since = Instant::now();
        while stable_since.elapsed() < LOCUST_SETTLE {
            assert!(
                Instant::now() < deadline,
                "locust stats still changing after {timeout:?}: {last}\n{}",
                self.logs()
            );
            thread::sleep(Duration::from_millis(250));
            stats = self.stats_requests();
            let row = aggregated_row(&stats);
            if row != last {
                (last, stable_since) = (row, Instant::now());
            }
        }
        stats
    }

    pub fn logs(&self) -> String {
        self.process.logs()
    }

    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }
}

/// The `Aggregated` row of a `/stats/requests` answer (Locust's or
/// spotload's: same API), `Null` when there is none.
pub fn aggregated_row(stats: &serde_json::Value) -> serde_json::Value {
    stats["stats"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["name"] == "Aggregated"))
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

fn locust_command(locustfile: &Path) -> Command {
    let mut cmd = Command::new(venv_bin("locust"));
    cmd.arg("-f")
        .arg(locustfile)
        // Unbuffered, so the log files are current when a test reads them.
        .env("PYTHONUNBUFFERED", "1");
    cmd
}
