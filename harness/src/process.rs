//! Temp dirs, child processes and loopback ports: the base every other
//! harness module builds on.
//!
//! [`TempDir`] and [`Process`] clean up on drop, unless the thread is
//! panicking: then the dir is kept and the process's log tails printed.
//! [`free_port`], [`wait_for_port`] and [`loopback`] find and probe
//! 127.0.0.1 ports; `start_on_free_port` starts a server on one, retrying
//! when a parallel test takes the port first.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::wait::try_wait_until;

/// How long a process gets to exit after SIGTERM before it is SIGKILLed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long a started server gets to open its port.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of each log printed when a test panics.
const LOG_TAIL_LINES: usize = 60;

// ---------------------------------------------------------------------------
// Temp dirs
// ---------------------------------------------------------------------------

/// A directory under `$TMPDIR`, removed on drop — unless the thread is
/// panicking: then it is kept so its configs and logs can be inspected.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `$TMPDIR/spotload-<prefix>-<pid>-<n>-<nanos>`; panics when
    /// it cannot.
    pub fn new(prefix: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "spotload-{prefix}-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create temp dir {}: {e}", path.display()));
        TempDir { path }
    }

    /// The directory's absolute path, for configs and logs of the processes
    /// a test starts.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("[harness] kept {} for inspection", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

/// A child process whose stdout and stderr go to files, stopped on drop.
///
/// Children stay in the test's process group, so a Ctrl-C in the terminal
/// reaches them too even though no `Drop` runs then.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    /// Log files the program writes itself (nginx's error.log), shown
    /// with stdout and stderr.
    extra_logs: Vec<PathBuf>,
}

impl Process {
    /// Starts `cmd` with stdin closed and its output in
    /// `<log_dir>/<name>.stdout` and `<log_dir>/<name>.stderr`.
    pub fn spawn(name: &str, mut cmd: Command, log_dir: &Path) -> Process {
        let stdout_path = log_dir.join(format!("{name}.stdout"));
        let stderr_path = log_dir.join(format!("{name}.stderr"));
        let stdout = create_file(&stdout_path);
        let stderr = create_file(&stderr_path);
        cmd.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Process {
            name: name.to_string(),
            child,
            stdout_path,
            stderr_path,
            extra_logs: Vec::new(),
        }
    }

    /// Shows `path` in [`Process::logs`] and in the panic output too.
    pub fn add_log(&mut self, path: PathBuf) {
        self.extra_logs.push(path);
    }

    /// The label given at spawn, used in log headers and panic output.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child's OS process id, e.g. for `kill` or `/proc/<pid>`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process has written to stdout so far (lossy UTF-8).
    pub fn stdout(&self) -> String {
        read_lossy(&self.stdout_path)
    }

    /// Everything the process has written to stderr so far (lossy UTF-8).
    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    /// Every log, labelled, for a test's failure message.
    pub fn logs(&self) -> String {
        self.render_logs(usize::MAX)
    }

    /// `None` while running, the exit status once it has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Whether the process has not exited yet (reaps it if it has).
    pub fn is_running(&mut self) -> bool {
        self.exit_status().is_none()
    }

    /// Sends a signal by name ("TERM", "INT", "HUP", ...) if still running.
    pub fn signal(&mut self, signal: &str) {
        // Only while unreaped: a reaped pid could belong to someone else.
        if self.is_running() {
            send_signal(self.pid(), signal);
        }
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        try_wait_until(timeout, || self.exit_status())
    }

    /// SIGTERM (lets nginx's master take its workers down), then SIGKILL
    /// after [`STOP_GRACE`]. Idempotent.
    pub fn stop(&mut self) {
        self.signal("TERM");
        if self.wait_exit(STOP_GRACE).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Waits until `addr` accepts connections, failing fast (with the logs)
    /// if the process exits first.
    pub fn wait_for_port(&mut self, addr: SocketAddr, timeout: Duration) -> Result<(), String> {
        let outcome = try_wait_until(timeout, || {
            if let Some(status) = self.exit_status() {
                return Some(Err(format!(
                    "{} exited ({status}) before {addr} opened",
                    self.name
                )));
            }
            port_open(addr).then_some(Ok(()))
        });
        let outcome = outcome.unwrap_or_else(|| {
            Err(format!(
                "{} did not open {addr} within {timeout:?}",
                self.name
            ))
        });
        outcome.map_err(|e| format!("{e}\n{}", self.logs()))
    }

    /// The last `lines` lines of each log, labelled.
    fn render_logs(&self, lines: usize) -> String {
        let files = [&self.stdout_path, &self.stderr_path]
            .into_iter()
            .chain(&self.extra_logs);
        let mut out = String::new();
        for path in files {
            let file = path.file_name().unwrap_or_default().to_string_lossy();
            let text = tail_lines(&read_lossy(path), lines);
            let _ = writeln!(out, "--- {} {file} ---\n{text}", self.name);
        }
        out
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            eprintln!("{}", self.render_logs(LOG_TAIL_LINES));
        }
    }
}

fn send_signal(pid: u32, signal: &str) {
    // Through sh's builtin kill: std only sends SIGKILL, and this keeps the
    // harness free of a libc dependency.
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -s {signal} {pid}"))
        .stderr(Stdio::null())
        .status();
    if let Err(e) = status {
        eprintln!("[harness] cannot send SIG{signal} to {pid}: {e}");
    }
}

fn create_file(path: &Path) -> File {
    File::create(path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()))
}

pub(crate) fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------

/// A loopback port that was free a moment ago. Another process may still
/// take it before the caller binds it: servers started here retry on
/// "address in use".
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind 127.0.0.1:0: is loopback up?")
}

/// Polls until `addr` accepts a TCP connection.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    try_wait_until(timeout, || port_open(addr).then_some(()))
        .ok_or_else(|| format!("{addr} did not accept connections within {timeout:?}"))
}

fn port_open(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// `127.0.0.1:port`, where every harness server listens: for
/// [`wait_for_port`] and raw TCP clients.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Starts a server on a free loopback port and waits up to `timeout` (most
/// callers pass [`START_TIMEOUT`]) until it listens. `spawn(port)` starts
/// it; if a parallel test grabbed the port first ("Address already in use"
/// in its logs), it is tried again on another.
pub(crate) fn start_on_free_port(
    name: &str,
    timeout: Duration,
    mut spawn: impl FnMut(u16) -> Process,
) -> (Process, u16) {
    const TRIES: usize = 5;
    for _ in 0..TRIES {
        let port = free_port();
        let mut process = spawn(port);
        match process.wait_for_port(loopback(port), timeout) {
            Ok(()) => return (process, port),
            Err(e) if e.contains("in use") => {
                eprintln!("[harness] {name}: port {port} was taken, trying another");
            }
            Err(e) => panic!("{name} did not start: {e}"),
        }
    }
    panic!("{name} found no free port in {TRIES} tries");
}
