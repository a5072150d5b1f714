//! The `spotload` binary run the way the cloud tests run it: against a
//! given endpoint (moto, or the fault proxy in front of it), with a scratch
//! HOME and state directory, test credentials and a clean environment, so
//! nothing of the user's leaks in and nothing leaves the machine.
//!
//! The test passes the binary's path, which Cargo sets only in the
//! `spotload` package's tests: [`spotload_cli!`](crate::spotload_cli!)
//! expands `env!("CARGO_BIN_EXE_spotload")` there.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::process::{free_port, TempDir};

/// `BIN ARGS` (split on whitespace) with `--endpoint-url ENDPOINT
/// --state-dir STATE`, a clean environment, HOME at `home`, region
/// us-east-1, test credentials, metadata lookups off and the public-IP
/// service on a closed loopback port.
pub fn spotload_command(
    bin: &Path,
    endpoint: &str,
    home: &Path,
    state: &Path,
    args: &str,
) -> Command {
    let mut all: Vec<String> = args.split_whitespace().map(String::from).collect();
    all.extend(["--endpoint-url".into(), endpoint.into()]);
    all.extend(["--state-dir".into(), state.display().to_string()]);
    let mut command = Command::new(bin);
    command
        .args(&all)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        // Even a wrong default must never send the test to the internet.
        .env(
            "SPOTLOAD_PUBLIC_IP_URL",
            format!("http://127.0.0.1:{}/", free_port()),
        )
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing");
    command
}

/// A scratch HOME and state directory, and the endpoint every run of the
/// binary talks to.
pub struct SpotloadCli {
    bin: PathBuf,
    dir: TempDir,
    endpoint: String,
}

impl SpotloadCli {
    /// A fresh scratch directory for the binary at `bin`, talking to
    /// `endpoint` (e.g. `moto.url()`).
    pub fn new(bin: impl Into<PathBuf>, endpoint: &str) -> SpotloadCli {
        SpotloadCli {
            bin: bin.into(),
            dir: TempDir::new("cli"),
            endpoint: endpoint.to_string(),
        }
    }

    /// The state directory the runs pass as `--state-dir`.
    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// `spotload ARGS` as [`spotload_command`] builds it, not yet started.
    pub fn command(&self, args: &str) -> Command {
        spotload_command(
            &self.bin,
            &self.endpoint,
            self.dir.path(),
            &self.state(),
            args,
        )
    }

    /// Runs `spotload ARGS` to its end and keeps the output.
    pub fn run(&self, args: &str) -> Run {
        let output = self.command(args).output();
        Run {
            args: args.to_string(),
            output: output.expect("run the spotload binary"),
        }
    }
}

/// One finished run of the binary, with its output kept for assertions.
pub struct Run {
    /// The arguments it ran with, for failure messages.
    pub args: String,
    /// Its exit status, stdout and stderr.
    pub output: Output,
}

impl Run {
    /// Standard output as text.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    /// Standard error as text.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// Asserts the run succeeded (showing both streams when not), and
    /// passes it on.
    pub fn ok(self) -> Run {
        assert!(
            self.output.status.success(),
            "spotload {} failed\nstdout:\n{}\nstderr:\n{}",
            self.args,
            self.stdout(),
            self.stderr()
        );
        self
    }

    /// Asserts a failure (exit 1) reported as exactly one `error:` line,
    /// without a panic or backtrace, and returns that line.
    pub fn one_error_line(&self) -> String {
        let stderr = self.stderr();
        assert_eq!(
            self.output.status.code(),
            Some(1),
            "spotload {}\n{stderr}",
            self.args
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!stderr.to_lowercase().contains("backtrace"), "{stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "want one error line in:\n{stderr}");
        errors[0].to_string()
    }
}

/// A [`SpotloadCli`] for the calling test package's `spotload` binary,
/// talking to the endpoint given: `spotload_cli!(&moto.url())`, expanded in
/// the test, where Cargo sets `CARGO_BIN_EXE_spotload`.
#[macro_export]
macro_rules! spotload_cli {
    ($endpoint:expr) => {
        $crate::spotload_cli::SpotloadCli::new(env!("CARGO_BIN_EXE_spotload"), $endpoint)
    };
}

/// The `loadtest` binary the deploy tests ship: beside `spotload` when the
/// workspace was built, else built once now (`CARGO build -p loadtest` in
/// `manifest_dir`, which honours CARGO_TARGET_DIR like the test build
/// did). [`loadtest_beside_spotload!`](crate::loadtest_beside_spotload!)
/// passes the calling test's paths.
pub fn loadtest_beside(spotload: &str, cargo: &str, manifest_dir: &str) -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let bin = Path::new(spotload).with_file_name("loadtest");
        if !bin.exists() {
            let status = Command::new(cargo)
                .args(["build", "-p", "loadtest"])
                .current_dir(manifest_dir)
                .status()
                .expect("cannot run cargo build -p loadtest");
            assert!(status.success(), "cargo build -p loadtest failed");
        }
        assert!(bin.exists(), "no loadtest binary at {}", bin.display());
        bin
    })
}

/// [`loadtest_beside`] for the calling test package's `spotload` binary,
/// expanded in the test, where Cargo sets the paths it needs.
#[macro_export]
macro_rules! loadtest_beside_spotload {
    () => {
        $crate::spotload_cli::loadtest_beside(
            env!("CARGO_BIN_EXE_spotload"),
            env!("CARGO"),
            env!("CARGO_MANIFEST_DIR"),
        )
    };
}
