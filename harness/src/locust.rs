//! Stock Locust from the project's Python venv: [`venv_dir`] and
//! [`venv_bin`] find the venv `scripts/test` installs, [`write_locustfile`]
//! writes a minimal locustfile, and [`Locust`] runs a master or worker
//! whose web API [`Locust::api`] reads in `swarm::api` types.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use swarm::api::StatsRequests;

use crate::api::Api;
use crate::process::{loopback, Process, TempDir, START_TIMEOUT};
use crate::wait::try_wait_until;

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
    _dir: TempDir,
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
            _dir: dir,
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
            _dir: dir,
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

    /// The master's web API, in `swarm::api` types.
    pub fn api(&self) -> Api {
        Api::new(&self.web_url())
    }

    /// Waits until the master reports at least `n` connected workers.
    pub fn wait_for_workers(&self, n: usize, timeout: Duration) -> Result<(), String> {
        let api = self.api();
        let mut count = 0;
        try_wait_until(timeout, || {
            count = api.requests().workers.len();
            (count >= n).then_some(())
        })
        .ok_or_else(|| {
            format!(
                "{count} of {n} workers joined within {timeout:?}\n{}",
                self.process.logs()
            )
        })
    }

    /// `GET /stats/requests` once its `Aggregated` row has stopped changing
    /// for [`LOCUST_SETTLE`]. Locust workers report every 3 s and send
    /// nothing extra on a stop, so counts keep growing for up to 3 s after
    /// `/stop`; call this before comparing them with anything.
    pub fn settled_stats(&self, timeout: Duration) -> StatsRequests {
        let api = self.api();
        let mut last = None;
        let mut stable_since = Instant::now();
        let settled = try_wait_until(timeout, || {
            let stats = api.requests();
            let row = stats.aggregated().cloned();
            if row != last {
                (last, stable_since) = (row, Instant::now());
            }
            (stable_since.elapsed() >= LOCUST_SETTLE).then_some(stats)
        });
        settled.unwrap_or_else(|| {
            panic!(
                "locust stats still changing after {timeout:?}: {last:?}\n{}",
                self.logs()
            )
        })
    }

    /// The Locust process's stdout and stderr, labelled, for a test's
    /// failure message.
    pub fn logs(&self) -> String {
        self.process.logs()
    }

    /// The underlying Locust process, to signal it, check whether it is
    /// still running or wait for it to exit.
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }
}

fn locust_command(locustfile: &Path) -> Command {
    let mut cmd = Command::new(venv_bin("locust"));
    cmd.arg("-f")
        .arg(locustfile)
        // Unbuffered, so the log files are current when a test reads them.
        .env("PYTHONUNBUFFERED", "1");
    cmd
}
