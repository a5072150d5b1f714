//! The real `loadtest` binary as master and workers: [`Loadtest`] holds the
//! binary's path, which the test passes in (`env!("CARGO_BIN_EXE_loadtest")`
//! in loadtest's own tests, [`Loadtest::next_to`] elsewhere), and starts
//! it with logs of its own in a [`TempDir`]. [`node_id`] and [`strip_ansi`]
//! read what a worker logs; [`exit_code`] waits for a process to end.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::process::{free_port, loopback, Process, TempDir};
use crate::wait::try_wait_until;

/// How long a master gets to open its ports.
const MASTER_START: Duration = Duration::from_secs(20);

/// The `loadtest` binary at a known path.
#[derive(Debug, Clone)]
pub struct Loadtest {
    bin: PathBuf,
}

impl Loadtest {
    /// The binary at `bin`, e.g. `env!("CARGO_BIN_EXE_loadtest")`.
    pub fn new(bin: impl Into<PathBuf>) -> Loadtest {
        let bin = bin.into();
        assert!(
            bin.exists(),
            "no loadtest binary at {}: build it first (cargo build -p loadtest)",
            bin.display()
        );
        Loadtest { bin }
    }

    /// The `loadtest` next to another binary of the same build, e.g.
    /// `env!("CARGO_BIN_EXE_spotload")`.
    pub fn next_to(sibling: &Path) -> Loadtest {
        Loadtest::new(sibling.with_file_name("loadtest"))
    }

    /// Path of the `loadtest` executable these handles start, for
    /// assertion messages or running it by hand with `Command`.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The binary with `args`. Every test process gets
    /// `AWS_EC2_METADATA_DISABLED=true`, so no worker probes the real
    /// metadata address (169.254.169.254); a test that wants a spot watch
    /// removes it and points `AWS_EC2_METADATA_SERVICE_ENDPOINT` at a stub.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env("RUST_LOG", "info,goose=error")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        cmd
    }

    /// `loadtest master` on a free port; `extra` adds flags. Returns the
    /// process and its master port.
    pub fn master(&self, dir: &TempDir, extra: &[&str]) -> (Process, u16) {
        let port = free_port();
        (self.master_on(dir, port, extra), port)
    }

    /// `loadtest master` bound to 127.0.0.1:`port` (e.g. the port of a
    /// master it replaces), once that port listens.
    pub fn master_on(&self, dir: &TempDir, port: u16, extra: &[&str]) -> Process {
        let port_text = port.to_string();
        let mut args = vec![
            "master",
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            &port_text,
        ];
        args.extend_from_slice(extra);
        let name = unique_name("loadtest-master");
        let mut process = Process::spawn(&name, self.command(&args), dir.path());
        if let Err(e) = process.wait_for_port(loopback(port), MASTER_START) {
            panic!("the master did not listen: {e}");
        }
        process
    }

    /// A master serving its web UI on 127.0.0.1: the process, its master
    /// port, and the UI's base URL, once the UI answers.
    pub fn master_with_ui(&self, dir: &TempDir, extra: &[&str]) -> (Process, u16, String) {
        let (port, web_port) = (free_port(), free_port());
        let process = self.master_with_ui_on(dir, port, web_port, extra);
        (process, port, format!("http://127.0.0.1:{web_port}"))
    }

    /// A master with its UI on given ports (those of a master it
    /// replaces), once both listen.
    pub fn master_with_ui_on(
        &self,
        dir: &TempDir,
        port: u16,
        web_port: u16,
        extra: &[&str],
    ) -> Process {
        let web_port_text = web_port.to_string();
        let mut args = vec!["--web-host", "127.0.0.1", "--web-port", &web_port_text];
        args.extend_from_slice(extra);
        let mut process = self.master_on(dir, port, &args);
        if let Err(e) = process.wait_for_port(loopback(web_port), MASTER_START) {
            panic!("the master's web UI did not listen: {e}");
        }
        process
    }

    /// `loadtest worker` joining the master on `port`.
    pub fn worker(&self, dir: &TempDir, port: u16, extra: &[&str]) -> Process {
        spawn_worker(dir, self.worker_command(port, extra))
    }

    /// The command line of [`Loadtest::worker`], for a test that changes
    /// its environment.
    pub fn worker_command(&self, port: u16, extra: &[&str]) -> Command {
        let port_text = port.to_string();
        let mut args = vec![
            "worker",
            "--master-host",
            "127.0.0.1",
            "--master-port",
            &port_text,
        ];
        args.extend_from_slice(extra);
        self.command(&args)
    }
}

/// A log name no other process of this test binary uses: processes sharing
/// a temp dir must not share (and truncate) each other's log files.
pub fn unique_name(base: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    format!("{base}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Starts a worker command, with logs of its own in `dir`.
pub fn spawn_worker(dir: &TempDir, cmd: Command) -> Process {
    Process::spawn(&unique_name("loadtest-worker"), cmd, dir.path())
}

/// The node id a worker logs in its `worker <node id> connecting to ...`
/// line, once it has logged it.
pub fn node_id(worker: &mut Process) -> String {
    let found = try_wait_until(Duration::from_secs(20), || {
        let log = strip_ansi(&worker.stderr());
        let id = log.lines().find_map(|line| {
            let rest = &line[line.find("worker ")? + "worker ".len()..];
            let (id, after) = rest.split_once(' ')?;
            after.starts_with("connecting to").then(|| id.to_string())
        });
        // A worker that exited will never log it: stop waiting.
        id.map(Some)
            .or_else(|| (!worker.is_running()).then_some(None))
    });
    found.flatten().unwrap_or_else(|| {
        panic!(
            "{} logged no `worker <id> connecting to` line\n{}",
            worker.name(),
            worker.logs()
        )
    })
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

/// Waits for a process to exit and returns its exit code (-1 when a
/// signal ended it).
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
