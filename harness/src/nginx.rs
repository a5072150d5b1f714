//! Debian's nginx as the system under test: [`Nginx`] runs it on a free
//! loopback port from a config generated out of [`NginxOptions`] (slow,
//! failing, rate- or connection-limited locations; HTTPS with a test CA's
//! certificate, [`NginxTls`]), and reads its access log back as
//! [`AccessLine`]s. With HTTPS, a second log says per request which
//! connection carried it and whether its TLS session was resumed
//! ([`TlsLine`]): the access log keeps its format.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::{loopback, read_lossy, start_on_free_port, Process, TempDir, START_TIMEOUT};
use crate::tls::Leaf;
use crate::wait::try_wait_until;

/// How long the nginx access log must stay unchanged to count as complete.
const LOG_QUIET: Duration = Duration::from_millis(150);
/// The most `Nginx::wait_log_quiet` waits for that.
const LOG_QUIET_MAX: Duration = Duration::from_secs(5);

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
    /// `(rate, burst)`: `/` answers at most `rate` requests a second (with
    /// a burst of `burst` beyond it) and refuses the excess at once with a
    /// 503 (`limit_req ... nodelay`): a target that breaks at a known
    /// request rate, whatever its users.
    pub refuse_above: Option<(u32, u32)>,
    /// A prefix (e.g. `/users/`) under which every path answers 200 with
    /// [`ANY_PATH_BODY`], so a load test can name who sent a request in
    /// its path (`/users/reader/3`) and the access log can count them.
    pub any_path: Option<String>,
    /// Serve HTTPS (only) on the port, with this certificate.
    pub tls: Option<NginxTls>,
    /// nginx's `keepalive_requests`: it closes a connection after this many
    /// requests (default: a million, so a load generator keeps its
    /// connections). A few dozen make clients reconnect during a run, and
    /// with HTTPS resume their TLS sessions.
    pub keepalive_requests: Option<u32>,
}

/// HTTPS on nginx's port: TLS 1.2 and 1.3, session tickets and a session
/// cache (a client that reconnects can resume), HTTP/1.1 or, with `http2`,
/// HTTP/2 as well.
#[derive(Debug, Clone)]
pub struct NginxTls {
    /// The certificate nginx serves, and its key (see [`crate::TestCa`]).
    pub leaf: Leaf,
    /// Offer `h2` by ALPN too (`listen ... ssl http2`): a client offering
    /// `h2` gets HTTP/2, one offering only `http/1.1` gets HTTP/1.1.
    pub http2: bool,
}

/// One line of the HTTPS log, per request: which connection carried it,
/// and how that connection's TLS was set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsLine {
    /// nginx's `$connection`: the connection's serial number.
    pub connection: u64,
    /// `$connection_requests`: this request's place on its connection (1
    /// for the first).
    pub request_on_connection: u64,
    /// `$ssl_session_reused`: the connection resumed a TLS session (an
    /// abbreviated handshake) instead of a full handshake.
    pub session_reused: bool,
    /// `$ssl_protocol`, e.g. `TLSv1.3`.
    pub tls_version: String,
    /// `$server_protocol`, e.g. `HTTP/1.1` or `HTTP/2.0`.
    pub http_version: String,
}

/// The body every path under [`NginxOptions::any_path`] answers with.
pub const ANY_PATH_BODY: &str = "ok\n";

impl Default for NginxOptions {
    fn default() -> Self {
        NginxOptions {
            worker_processes: 1,
            limit_conn: None,
            slow_path: None,
            status_path: None,
            fail_percent: None,
            root_rate: None,
            refuse_above: None,
            any_path: None,
            tls: None,
            keepalive_requests: None,
        }
    }
}

/// One access-log line. `path` is the request target as sent, without the
/// query string (so `GET /` logs `/`, not nginx's `/index.html`).
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLine {
    /// HTTP status nginx answered with, e.g. 200, 500 or 503.
    pub status: u16,
    /// The request method as sent, e.g. `GET` or `POST`.
    pub method: String,
    /// The request target as sent, without the query string.
    pub path: String,
    /// nginx's `$request_time`, in milliseconds (millisecond resolution):
    /// from the first byte read until the last byte of the response was sent.
    pub request_time_ms: f64,
    /// When nginx logged the request (its `$msec`): epoch seconds with
    /// millisecond resolution, taken as the response went out.
    pub time: f64,
    /// nginx's `$body_bytes_sent`: the response body's bytes sent, headers
    /// not counted (0 in a line of the older format without it).
    pub body_bytes: u64,
    /// The request's `User-Agent` ("" when it sent none). spotload's
    /// workers send `loadtest/<version> (<node id>)`.
    pub user_agent: String,
}

/// Debian's nginx on `127.0.0.1:<free port>` from a temp config; stopped on
/// drop.
#[derive(Debug)]
pub struct Nginx {
    // Declared before `dir`: the process must stop before its dir goes.
    process: Process,
    dir: TempDir,
    port: u16,
    https: bool,
}

impl Nginx {
    /// Starts nginx on a free loopback port with a config built from
    /// `opts`; returns once it accepts connections, panics if it does not
    /// within 30 s (retrying on another port if a parallel test took it).
    pub fn start(opts: NginxOptions) -> Nginx {
        assert!(
            Path::new(NGINX).exists(),
            "{NGINX} missing: run scripts/test to install"
        );
        let dir = TempDir::new("nginx");
        write_nginx_content(dir.path(), &opts);
        let (process, port) = start_on_free_port("nginx", START_TIMEOUT, |port| {
            fs::write(
                dir.path().join("nginx.conf"),
                nginx_conf(dir.path(), port, &opts),
            )
            .expect("cannot write nginx.conf to the temp dir");
            // nginx appends: start each try with a fresh error.log.
            let _ = fs::remove_file(dir.path().join("error.log"));
            spawn_nginx(dir.path())
        });
        Nginx {
            process,
            dir,
            port,
            https: opts.tls.is_some(),
        }
    }

    /// `http://127.0.0.1:PORT` (`https://` with [`NginxOptions::tls`]),
    /// without a trailing slash.
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The loopback TCP port nginx listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, for raw TCP connections to nginx.
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

    /// The HTTPS log (one line per request, as the access log), once the
    /// access log went quiet; empty without [`NginxOptions::tls`].
    pub fn tls_log(&self) -> Vec<TlsLine> {
        self.wait_log_quiet();
        read_lossy(&self.dir.path().join(TLS_LOG))
            .lines()
            .filter_map(parse_tls_line)
            .collect()
    }

    /// Waits until the access log stops growing for [`LOG_QUIET`], at most
    /// [`LOG_QUIET_MAX`] (then the caller gets what is there).
    pub fn wait_log_quiet(&self) {
        let path = self.access_log_path();
        let len = || fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let (mut last, mut quiet_since) = (len(), Instant::now());
        // Running out of time is fine: the caller gets what is there.
        let _ = try_wait_until(LOG_QUIET_MAX, || {
            let now = len();
            if now != last {
                (last, quiet_since) = (now, Instant::now());
            }
            (quiet_since.elapsed() >= LOG_QUIET).then_some(())
        });
    }

    /// Empties the access log, e.g. between the steps of a ramp. nginx
    /// appends with O_APPEND, so it keeps writing at the new end.
    pub fn clear_access_log(&self) {
        File::create(self.access_log_path()).expect("cannot truncate nginx access.log");
        if self.https {
            File::create(self.dir.path().join(TLS_LOG)).expect("cannot truncate nginx tls.log");
        }
    }

    /// nginx's `error.log` as it is now (lossy UTF-8), for failure messages.
    pub fn error_log(&self) -> String {
        read_lossy(&self.dir.path().join("error.log"))
    }

    /// The temp dir holding nginx's config, content and logs
    /// (`nginx.conf`, `access.log`, `error.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The nginx master process, to signal it (e.g. `HUP` to reload) or
    /// check whether it still runs.
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
    if let Some(tls) = &opts.tls {
        fs::write(dir.join("leaf-cert.pem"), &tls.leaf.cert_pem).expect("cannot write the leaf");
        fs::write(dir.join("leaf-key.pem"), &tls.leaf.key_pem).expect("cannot write its key");
    }
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
    # "/index.html". The parser drops the query string. The user agent
    # has spaces: it goes last, in quotes (nginx escapes quotes in it).
    log_format spotload '$status $request_method $request_uri $request_time $msec $body_bytes_sent "$http_user_agent"';
    access_log {d}/access.log spotload;
    client_body_temp_path {d}/temp/client_body;
    proxy_temp_path {d}/temp/proxy;
    fastcgi_temp_path {d}/temp/fastcgi;
    uwsgi_temp_path {d}/temp/uwsgi;
    scgi_temp_path {d}/temp/scgi;
    # A load generator reuses its connections far beyond the default 1000.
    keepalive_requests {keepalive};
"#,
        workers = opts.worker_processes.max(1),
        keepalive = opts.keepalive_requests.unwrap_or(1_000_000).max(1),
    );
    if opts.tls.is_some() {
        let _ = write!(
            conf,
            "    log_format spotload_tls '$connection $connection_requests $ssl_session_reused $ssl_protocol $server_protocol';\n    access_log {d}/{TLS_LOG} spotload_tls;\n    ssl_session_cache shared:spotload_tls:1m;\n    ssl_session_tickets on;\n    ssl_protocols TLSv1.2 TLSv1.3;\n"
        );
    }
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
    if let Some((rate, _)) = opts.refuse_above {
        let _ = writeln!(
            conf,
            "    limit_req_zone $server_name zone=spotload_refuse:1m rate={rate}r/s;"
        );
    }
    let listen = match &opts.tls {
        Some(NginxTls { http2: true, .. }) => " ssl http2",
        Some(_) => " ssl",
        None => "",
    };
    let _ = write!(
        conf,
        "    server {{\n        listen 127.0.0.1:{port}{listen};\n        server_name spotload;\n        root {d}/html;\n"
    );
    if opts.tls.is_some() {
        let _ = writeln!(
            conf,
            "        ssl_certificate {d}/leaf-cert.pem;\n        ssl_certificate_key {d}/leaf-key.pem;"
        );
    }
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
    if let Some((_, burst)) = opts.refuse_above {
        let _ = writeln!(
            conf,
            "            limit_req zone=spotload_refuse burst={burst} nodelay;\n            limit_req_status 503;"
        );
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
    if let Some(prefix) = &opts.any_path {
        assert!(
            prefix.starts_with('/'),
            "any_path must start with '/': {prefix}"
        );
        let _ = writeln!(
            conf,
            "        location {prefix} {{ default_type text/plain; return 200 \"ok\\n\"; }}"
        );
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

/// The HTTPS log's file, beside `access.log`.
const TLS_LOG: &str = "tls.log";

/// `17 3 r TLSv1.3 HTTP/1.1` → TlsLine (`.` for a full handshake).
fn parse_tls_line(line: &str) -> Option<TlsLine> {
    let mut fields = line.split_whitespace();
    Some(TlsLine {
        connection: fields.next()?.parse().ok()?,
        request_on_connection: fields.next()?.parse().ok()?,
        session_reused: fields.next()? == "r",
        tls_version: fields.next()?.to_string(),
        http_version: fields.next()?.to_string(),
    })
}

/// `200 GET /path?q 0.001 1767225600.123 125 "agent/1.0 (x)"` → AccessLine.
/// The first four fields are required; a line without the rest (an older
/// format) gets time 0, no body bytes and an empty user agent.
fn parse_access_line(line: &str) -> Option<AccessLine> {
    // The fixed fields hold no spaces; the quoted user agent may.
    let mut fields = line.splitn(7, ' ');
    let status = fields.next()?.parse().ok()?;
    let method = fields.next()?.to_string();
    let target = fields.next()?;
    let seconds: f64 = fields.next()?.trim().parse().ok()?;
    let time = fields
        .next()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0.0);
    let body_bytes = fields
        .next()
        .and_then(|b| b.trim().parse().ok())
        .unwrap_or(0);
    let user_agent = fields
        .next()
        .map(|rest| {
            let rest = rest.trim();
            let rest = rest.strip_prefix('"').unwrap_or(rest);
            let rest = rest.strip_suffix('"').unwrap_or(rest);
            // nginx logs a missing header as "-".
            if rest == "-" { "" } else { rest }.to_string()
        })
        .unwrap_or_default();
    let path = target.split('?').next().unwrap_or(target).to_string();
    Some(AccessLine {
        status,
        method,
        path,
        request_time_ms: seconds * 1000.0,
        time,
        body_bytes,
        user_agent,
    })
}

#[cfg(test)]
mod tests {
    use super::{parse_access_line, parse_tls_line, TlsLine};

    #[test]
    fn parses_a_tls_line() {
        assert_eq!(
            parse_tls_line("17 3 r TLSv1.3 HTTP/1.1"),
            Some(TlsLine {
                connection: 17,
                request_on_connection: 3,
                session_reused: true,
                tls_version: "TLSv1.3".into(),
                http_version: "HTTP/1.1".into(),
            })
        );
        let full = parse_tls_line("2 1 . TLSv1.2 HTTP/2.0").expect("a line");
        assert!(!full.session_reused);
        assert!(parse_tls_line("2 1 .").is_none());
    }

    #[test]
    fn parses_time_and_a_user_agent_with_spaces() {
        let line = parse_access_line(
            "200 GET /x?q=1 0.004 1767225600.123 125 \"loadtest/0.1.0 (host_0123abcd)\"",
        )
        .expect("a line");
        assert_eq!(
            (line.status, line.method.as_str(), line.path.as_str()),
            (200, "GET", "/x")
        );
        assert!((line.request_time_ms - 4.0).abs() < 1e-9);
        assert!((line.time - 1_767_225_600.123).abs() < 1e-6);
        assert_eq!(line.user_agent, "loadtest/0.1.0 (host_0123abcd)");
        assert_eq!(line.body_bytes, 125);
        let bare = parse_access_line("404 GET / 0.000 1.5 0 \"-\"").expect("a line");
        assert_eq!(bare.user_agent, "");
        let old = parse_access_line("200 GET / 0.001").expect("an old-format line");
        assert_eq!(
            (old.time, old.body_bytes, old.user_agent.as_str()),
            (0.0, 0, "")
        );
    }
}
