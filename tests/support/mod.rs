//! Test harness for spotload's integration tests.
//!
//! It starts the real components the tests talk to — Debian's nginx as the
//! system under test, stock Locust and moto's EC2 API from the project's
//! Python venv — each on a free loopback port, with its config and logs in
//! a temp dir of its own. `Process` does the same for any other program.
//! Every process it starts is stopped when its handle is dropped, so a
//! panicking test leaves no orphans; on a panic the handle also prints the
//! tail of the process's stdout/stderr and keeps its temp dir.
//!
//! Include it from an integration test file with `mod support;`. The API is
//! blocking std code, callable from plain `#[test]`s and from
//! `#[tokio::test]`s alike (wrap the long waits in `spawn_blocking` there).
//!
//! Tools come from Debian packages and from the venv that `scripts/test`
//! installs; a missing tool panics with "run scripts/test to install".

// Each test file uses a different slice of the harness.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub mod netns;
pub mod webdriver;

/// How long a process gets to exit after SIGTERM before it is SIGKILLed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long a started server gets to open its port.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout for each step (connect, read, write) of the tiny HTTP client.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the nginx access log must stay unchanged to count as complete.
const LOG_QUIET: Duration = Duration::from_millis(150);
/// The most `Nginx::wait_log_quiet` waits for that.
const LOG_QUIET_MAX: Duration = Duration::from_secs(5);
/// How long Locust's totals must stay unchanged to count as final: longer
/// than its workers' 3 s report interval.
const LOCUST_SETTLE: Duration = Duration::from_millis(3500);
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

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("[support] kept {} for inspection", self.path.display());
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

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout(&self) -> String {
        read_lossy(&self.stdout_path)
    }

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
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
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
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                return Err(format!(
                    "{} exited ({status}) before {addr} opened\n{}",
                    self.name,
                    self.logs()
                ));
            }
            if port_open(addr) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} did not open {addr} within {timeout:?}\n{}",
                    self.name,
                    self.logs()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
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
        eprintln!("[support] cannot send SIG{signal} to {pid}: {e}");
    }
}

fn create_file(path: &Path) -> File {
    File::create(path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()))
}

fn read_lossy(path: &Path) -> String {
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
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if port_open(addr) {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "{addr} did not accept connections within {timeout:?}"
    ))
}

fn port_open(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Starts a server on a free loopback port and waits until it listens.
/// `spawn(port)` starts it; if a parallel test grabbed the port first
/// ("Address already in use" in its logs), it is tried again on another.
fn start_on_free_port(name: &str, mut spawn: impl FnMut(u16) -> Process) -> (Process, u16) {
    const TRIES: usize = 5;
    for _ in 0..TRIES {
        let port = free_port();
        let mut process = spawn(port);
        match process.wait_for_port(loopback(port), START_TIMEOUT) {
            Ok(()) => return (process, port),
            Err(e) if e.contains("in use") => {
                eprintln!("[support] {name}: port {port} was taken, trying another");
            }
            Err(e) => panic!("{name} did not start: {e}"),
        }
    }
    panic!("{name} found no free port in {TRIES} tries");
}

// ---------------------------------------------------------------------------
// A tiny HTTP client
// ---------------------------------------------------------------------------

/// GET `url` (plain `http://host:port/path`); panics if the server cannot
/// be reached. Returns the status and the body.
pub fn http_get(url: &str) -> (u16, String) {
    try_http("GET", url, None).unwrap_or_else(|e| panic!("GET {url} failed: {e}"))
}

/// POST `form` as `application/x-www-form-urlencoded`, like a browser form
/// (this is how Locust's `/swarm` takes its parameters).
pub fn http_post_form(url: &str, form: &[(&str, &str)]) -> (u16, String) {
    let body = form_urlencode(form);
    let content = ("application/x-www-form-urlencoded", body.as_bytes());
    try_http("POST", url, Some(content)).unwrap_or_else(|e| panic!("POST {url} failed: {e}"))
}

/// One HTTP/1.0 request with `Connection: close`: the response then ends
/// at EOF, so no keep-alive or content-length bookkeeping is needed.
/// `body` is `(content_type, bytes)`.
pub fn try_http(method: &str, url: &str, body: Option<(&str, &[u8])>) -> io::Result<(u16, String)> {
    let (authority, path) = split_url(url)?;
    let addr = authority
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other(format!("{authority} resolves to nothing")))?;
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT))?;

    let mut request =
        format!("{method} {path} HTTP/1.0\r\nHost: {authority}\r\nConnection: close\r\n");
    if let Some((content_type, bytes)) = body {
        let _ = write!(
            request,
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            bytes.len()
        );
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    if let Some((_, bytes)) = body {
        stream.write_all(bytes)?;
    }

    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

/// `http://host:port/path?q` → (`host:port`, `/path?q`).
fn split_url(url: &str) -> io::Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| io::Error::other(format!("not an http:// URL: {url}")))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let authority = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((authority, path.to_string()))
}

fn parse_response(raw: &[u8]) -> io::Result<(u16, String)> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| io::Error::other("response without a header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line in {head:?}")))?;
    // An HTTP/1.0 request should never get a chunked answer, but decode one
    // rather than hand a test a body full of chunk sizes.
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        decode_chunked(body)
    } else {
        body.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn decode_chunked(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_field = String::from_utf8_lossy(&data[..eol]);
        let size_hex = size_field.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16).unwrap_or(0);
        let start = eol + 2;
        if size == 0 || start + size > data.len() {
            break;
        }
        out.extend_from_slice(&data[start..start + size]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

fn form_urlencode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Nginx, the system under test
// ---------------------------------------------------------------------------

const NGINX: &str = "/usr/sbin/nginx";
const INDEX_HTML: &str =
    "<!doctype html>\n<html><head><title>spotload target</title></head>\n<body><h1>It works</h1></body></html>\n";

/// What the test nginx serves besides `/`.
#[derive(Debug, Clone)]
pub struct NginxOptions {
    /// nginx `worker_processes` (default 1).
    pub worker_processes: u32,
    /// At most this many requests in progress at once; the excess is
    /// answered 503 at once. nginx counts a connection only while one of
    /// its requests is being processed — idle keep-alive connections do not
    /// count — so instant responses (like `/`) rarely trip it. Combine it
    /// with `slow_path`: N users looping on the slow path all succeed,
    /// N+1 or more get 503s.
    pub limit_conn: Option<u32>,
    /// `(path, body_bytes, bytes_per_sec)`: a location whose response
    /// takes about `body_bytes / bytes_per_sec` seconds (nginx
    /// `limit_rate`, in small chunks so that sub-second times work).
    pub slow_path: Option<(String, u64, u64)>,
    /// `(path, status)`: a location that always answers `status`.
    pub status_path: Option<(String, u16)>,
    /// `/` answers 500 to about this percentage of requests (chosen at
    /// random per request), for failure counting.
    pub fail_percent: Option<u32>,
    /// `/` serves at most this many requests per second; the excess waits
    /// in nginx's queue (`limit_req` without `nodelay`), so time to first
    /// byte grows with the load — a slow target without extra modules.
    /// Requests waiting in that queue do NOT count for `limit_conn` (nginx
    /// delays them before counting); for a breaking point use `limit_conn`
    /// with `slow_path` on `/index.html`.
    pub root_rate: Option<u32>,
}

impl Default for NginxOptions {
    fn default() -> Self {
        NginxOptions {
            worker_processes: 1,
            limit_conn: None,
            slow_path: None,
            status_path: None,
            fail_percent: None,
            root_rate: None,
        }
    }
}

/// One access-log line. `path` is the request target as sent, without the
/// query string (so `GET /` logs `/`, not nginx's `/index.html`).
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLine {
    pub status: u16,
    pub method: String,
    pub path: String,
    pub request_time_ms: f64,
}

/// Debian's nginx on `127.0.0.1:<free port>` from a temp config; stopped on
/// drop.
#[derive(Debug)]
pub struct Nginx {
    // Declared before `dir`: the process must stop before its dir goes.
    process: Process,
    dir: TempDir,
    port: u16,
}

impl Nginx {
    pub fn start(opts: NginxOptions) -> Nginx {
        assert!(
            Path::new(NGINX).exists(),
            "{NGINX} missing: run scripts/test to install"
        );
        let dir = TempDir::new("nginx");
        write_nginx_content(dir.path(), &opts);
        let (process, port) = start_on_free_port("nginx", |port| {
            fs::write(
                dir.path().join("nginx.conf"),
                nginx_conf(dir.path(), port, &opts),
            )
            .expect("cannot write nginx.conf to the temp dir");
            // nginx appends: start each try with a fresh error.log.
            let _ = fs::remove_file(dir.path().join("error.log"));
            spawn_nginx(dir.path())
        });
        Nginx { process, dir, port }
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        loopback(self.port)
    }

    /// Every request nginx has logged, once the log has been quiet for
    /// [`LOG_QUIET`] (nginx writes a line just after the response went out,
    /// so the last one can trail the client by a moment). Call it after the
    /// load stopped; during a run use [`Nginx::access_log_now`].
    pub fn access_log(&self) -> Vec<AccessLine> {
        self.wait_log_quiet();
        self.access_log_now()
    }

    /// The access log as it is this instant.
    pub fn access_log_now(&self) -> Vec<AccessLine> {
        read_lossy(&self.access_log_path())
            .lines()
            .filter_map(parse_access_line)
            .collect()
    }

    /// Requests logged (after the log went quiet, like `access_log`).
    pub fn count_requests(&self) -> usize {
        self.access_log().len()
    }

    /// Responses outside 200..=299 (after the log went quiet).
    pub fn count_non_2xx(&self) -> usize {
        self.access_log()
            .iter()
            .filter(|l| !(200..300).contains(&l.status))
            .count()
    }

    /// Responses with exactly `status` (after the log went quiet).
    pub fn count_status(&self, status: u16) -> usize {
        self.access_log()
            .iter()
            .filter(|l| l.status == status)
            .count()
    }

    /// Waits until the access log stops growing for [`LOG_QUIET`], at most
    /// [`LOG_QUIET_MAX`] (then the caller gets what is there).
    pub fn wait_log_quiet(&self) {
        let path = self.access_log_path();
        let len = || fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let deadline = Instant::now() + LOG_QUIET_MAX;
        let (mut last, mut quiet_since) = (len(), Instant::now());
        while quiet_since.elapsed() < LOG_QUIET && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
            let now = len();
            if now != last {
                (last, quiet_since) = (now, Instant::now());
            }
        }
    }

    /// Empties the access log, e.g. between the steps of a ramp. nginx
    /// appends with O_APPEND, so it keeps writing at the new end.
    pub fn clear_access_log(&self) {
        File::create(self.access_log_path()).expect("cannot truncate nginx access.log");
    }

    pub fn error_log(&self) -> String {
        read_lossy(&self.dir.path().join("error.log"))
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    fn access_log_path(&self) -> PathBuf {
        self.dir.path().join("access.log")
    }
}

fn spawn_nginx(dir: &Path) -> Process {
    let mut cmd = Command::new(NGINX);
    // -p/-e keep nginx away from /usr/share/nginx and /var/log/nginx, which
    // a non-root user cannot write; `daemon off` keeps the master our child.
    cmd.arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .args(["-g", "daemon off;"]);
    let mut process = Process::spawn("nginx", cmd, dir);
    process.add_log(dir.join("error.log"));
    process
}

/// The static files: `/` and, when asked for, the slow path's body.
fn write_nginx_content(dir: &Path, opts: &NginxOptions) {
    let html = dir.join("html");
    fs::create_dir_all(&html).expect("cannot create nginx html dir");
    fs::create_dir_all(dir.join("temp")).expect("cannot create nginx temp dir");
    fs::write(html.join("index.html"), INDEX_HTML).expect("cannot write index.html");
    if let Some((_, bytes, _)) = &opts.slow_path {
        let body = vec![b'x'; usize::try_from(*bytes).expect("slow_path body too large")];
        fs::write(dir.join("slow.bin"), body).expect("cannot write the slow path body");
    }
}

fn nginx_conf(dir: &Path, port: u16, opts: &NginxOptions) -> String {
    let d = dir.display();
    let mut conf = String::new();
    if running_as_root() {
        // Workers would otherwise drop to www-data and fail to read the
        // (0700) temp dir; without root the directive would only warn.
        conf.push_str("user root;\n");
    }
    let _ = write!(
        conf,
        r#"worker_processes {workers};
worker_rlimit_nofile 16384;
pid {d}/nginx.pid;
error_log {d}/error.log notice;
events {{ worker_connections 4096; }}
http {{
    types {{ text/html html; }}
    default_type application/octet-stream;
    # $request_uri, not $uri: after the index redirect $uri of "/" is
    # "/index.html". The parser drops the query string.
    log_format spotload '$status $request_method $request_uri $request_time';
    access_log {d}/access.log spotload;
    client_body_temp_path {d}/temp/client_body;
    proxy_temp_path {d}/temp/proxy;
    fastcgi_temp_path {d}/temp/fastcgi;
    uwsgi_temp_path {d}/temp/uwsgi;
    scgi_temp_path {d}/temp/scgi;
    # A load generator reuses its connections far beyond the default 1000.
    keepalive_requests 1000000;
"#,
        workers = opts.worker_processes.max(1),
    );
    if opts.limit_conn.is_some() {
        conf.push_str("    limit_conn_zone $server_name zone=spotload_conn:1m;\n");
    }
    if let Some(percent) = opts.fail_percent {
        let _ = writeln!(
            conf,
            "    split_clients \"${{request_id}}\" $spotload_fail {{ {percent}% 1; * 0; }}"
        );
    }
    if let Some(rate) = opts.root_rate {
        let _ = writeln!(
            conf,
            "    limit_req_zone $server_name zone=spotload_rate:1m rate={rate}r/s;"
        );
    }
    let _ = write!(
        conf,
        "    server {{\n        listen 127.0.0.1:{port};\n        server_name spotload;\n        root {d}/html;\n"
    );
    if let Some(n) = opts.limit_conn {
        let _ = writeln!(
            conf,
            "        limit_conn spotload_conn {n};\n        limit_conn_status 503;"
        );
    }
    conf.push_str("        location / {\n");
    if opts.fail_percent.is_some() {
        conf.push_str("            if ($spotload_fail) { return 500; }\n");
    }
    if opts.root_rate.is_some() {
        conf.push_str("            limit_req zone=spotload_rate burst=1000000;\n");
    }
    conf.push_str("        }\n");
    if let Some((path, _, rate)) = &opts.slow_path {
        assert!(
            path.starts_with('/'),
            "slow_path must start with '/': {path}"
        );
        // limit_rate sleeps chunk/rate after each chunk; small chunks give
        // a smooth, sub-second-capable response time of about bytes/rate.
        let chunk = (rate / 20).max(1);
        let _ = writeln!(
            conf,
            "        location = {path} {{ limit_rate {rate}; sendfile_max_chunk {chunk}; alias {d}/slow.bin; }}"
        );
    }
    if let Some((path, status)) = &opts.status_path {
        assert!(
            path.starts_with('/'),
            "status_path must start with '/': {path}"
        );
        let _ = writeln!(conf, "        location = {path} {{ return {status}; }}");
    }
    conf.push_str("    }\n}\n");
    conf
}

fn running_as_root() -> bool {
    // The owner of /proc/self is the effective uid: no libc needed.
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// `200 GET /path?q 0.001` → AccessLine.
fn parse_access_line(line: &str) -> Option<AccessLine> {
    let mut fields = line.split_whitespace();
    let status = fields.next()?.parse().ok()?;
    let method = fields.next()?.to_string();
    let target = fields.next()?;
    let seconds: f64 = fields.next()?.parse().ok()?;
    let path = target.split('?').next().unwrap_or(target).to_string();
    Some(AccessLine {
        status,
        method,
        path,
        request_time_ms: seconds * 1000.0,
    })
}

// ---------------------------------------------------------------------------
// The Python venv and Locust
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// moto, the EC2/SSM API
// ---------------------------------------------------------------------------

/// moto's server mode from the venv on `127.0.0.1:<free port>`, standing in
/// for the EC2 and SSM endpoints (point the SDK's `endpoint_url` at
/// [`Moto::url`], credentials `testing`/`testing`, region `us-east-1`).
#[derive(Debug)]
pub struct Moto {
    process: Process,
    dir: TempDir,
    port: u16,
}

impl Moto {
    /// Returns once `GET /moto-api/` answers.
    pub fn start() -> Moto {
        let dir = TempDir::new("moto");
        let bin = venv_bin("moto_server");
        let (process, port) = start_on_free_port("moto", |port| {
            let mut cmd = Command::new(&bin);
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("PYTHONUNBUFFERED", "1");
            Process::spawn("moto", cmd, dir.path())
        });
        let moto = Moto { process, dir, port };
        let (status, body) = http_get(&format!("{}/moto-api/", moto.url()));
        assert_eq!(status, 200, "moto is not answering: {body}");
        moto
    }

    /// `http://127.0.0.1:PORT`, the `endpoint_url` for every service.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Forgets every resource (`POST /moto-api/reset`).
    pub fn reset(&self) {
        let (status, body) = http_post_form(&format!("{}/moto-api/reset", self.url()), &[]);
        assert_eq!(status, 200, "moto reset failed: {body}");
    }

    pub fn logs(&self) -> String {
        self.process.logs()
    }
}
