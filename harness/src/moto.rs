//! moto's server mode from the venv, standing in for the EC2 and SSM APIs.
//!
//! [`Moto::start`] (or [`Moto::start_with`] for extra environment) runs
//! `moto_server -H 127.0.0.1 -p PORT` on a free loopback port, returns once
//! `GET /moto-api/` answers, and stops the server on drop. Every test can
//! start its own, so tests run in parallel without sharing state.
//!
//! The SDK clients (`Moto::ec2`, `Moto::ssm`) and the EC2 queries the
//! cloud tests make live in `moto_sdk`, behind the `aws` feature: only the
//! `spotload` package's tests need the AWS SDK crates.

use std::process::Command;
use std::time::Duration;

use crate::http::{http_get, http_post_form};
use crate::locust::venv_bin;
use crate::process::{start_on_free_port, Process, TempDir};

/// moto needs a second or two to import; a loaded box, with many tests
/// starting one each, can take much longer.
const MOTO_START_TIMEOUT: Duration = Duration::from_secs(60);

/// A moto server on `127.0.0.1:<free port>` (point the SDK's
/// `endpoint_url` at [`Moto::url`], credentials `testing`/`testing`,
/// region `us-east-1`); stopped on drop.
#[derive(Debug)]
pub struct Moto {
    // Declared before `dir`: the process must stop before its dir goes.
    process: Process,
    _dir: TempDir,
    port: u16,
}

impl Moto {
    /// Returns once `GET /moto-api/` answers.
    pub fn start() -> Moto {
        Moto::start_with(&[])
    }

    /// Starts moto with extra environment, e.g.
    /// `MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION=true`.
    pub fn start_with(env: &[(&str, &str)]) -> Moto {
        let dir = TempDir::new("moto");
        let bin = venv_bin("moto_server");
        let (process, port) = start_on_free_port("moto", MOTO_START_TIMEOUT, |port| {
            let mut cmd = Command::new(&bin);
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("PYTHONUNBUFFERED", "1")
                .envs(env.iter().copied());
            Process::spawn("moto", cmd, dir.path())
        });
        let moto = Moto {
            process,
            _dir: dir,
            port,
        };
        let (status, body) = http_get(&format!("{}/moto-api/", moto.url()));
        assert_eq!(status, 200, "moto is not answering: {body}");
        moto
    }

    /// `http://127.0.0.1:PORT`, the `endpoint_url` for every service.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The loopback TCP port moto listens on (e.g. to forward it into a
    /// [`netns::Lan`](crate::netns::Lan) with `forward_loopback`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Forgets every resource (`POST /moto-api/reset`), for tests that
    /// share one server.
    pub fn reset(&self) {
        let (status, body) = http_post_form(&format!("{}/moto-api/reset", self.url()), &[]);
        assert_eq!(status, 200, "moto reset failed: {body}");
    }

    /// moto_server's stdout and stderr, labelled, for a test's failure message.
    pub fn logs(&self) -> String {
        self.process.logs()
    }
}
