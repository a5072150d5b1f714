//! The web UI against hostile clients, on a real `loadtest master`:
//!
//! - a DNS rebinding page (Host = Origin = its own name) cannot start a
//!   swarm, while Locust's reads answer under that name and the same
//!   request under the master's IP starts one;
//! - hundreds of clients dripping their request heads are closed at the
//!   header timeout; meanwhile the UI answers within a stated time, a
//!   worker still joins, and the master holds no more sockets than its
//!   connection cap (counted in `/proc/PID/fd`).

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use harness::*;
use harness::{http_post_form_with_headers, try_http_with_headers, Nginx, NginxOptions, TempDir};
use swarm::api::RunState;
use swarm::web::{HEADER_READ_TIMEOUT, IDLE_TIMEOUT, MAX_CONNECTIONS};

/// Workers pause between requests: light on 2 CPUs, enough to count.
const WORKER_WAIT: &[&str] = &["--wait", "0.005:0.01"];
const REBIND: &str = "rebind.example";

#[test]
fn a_rebinding_page_cannot_start_a_swarm_but_reads_answer() {
    let _turn = crate::take_turn();
    let nginx = Nginx::start(NginxOptions::default());
    let dir = TempDir::new("rebind");
    let target = nginx.url();
    let (mut master, port, api) = loadtest!().master_with_ui(&dir, &["--host", &target]);
    let _worker = loadtest!().worker(&dir, port, WORKER_WAIT);
    wait_until(Duration::from_secs(30), "the worker to join", || {
        (stats(&api).worker_count == 1).then_some(())
    });
    let web_port = api.rsplit(':').next().expect("a port").to_string();
    let form = [("user_count", "2"), ("spawn_rate", "2")];

    // The rebinding page's request: its own name in Host and Origin.
    let rebound_host = format!("{REBIND}:{web_port}");
    let rebound_origin = format!("http://{rebound_host}");
    let rebound = [
        ("Host", rebound_host.as_str()),
        ("Origin", rebound_origin.as_str()),
    ];
    let (status, body) = http_post_form_with_headers(&format!("{api}/swarm"), &rebound, &form);
    println!("POST /swarm as {rebound_host}: {status} {body}");
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains(&format!("{rebound_host:?}")),
        "names the Host: {body}"
    );
    assert!(
        body.contains(&format!("--web-allowed-host {REBIND}")),
        "{body}"
    );
    let refused_at = epoch_now();

    // Locust's reads answer under that name.
    let (status, body) = try_http_with_headers(
        "GET",
        &format!("{api}/stats/requests"),
        &[("Host", rebound_host.as_str())],
        None,
    )
    .expect("GET /stats/requests");
    assert_eq!(status, 200, "{body}");
    let read: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(read["state"], "ready", "{read}");

    // A wrongly started run had its chance once the master's sampler has
    // recorded a sample two worker heartbeats after the refusal.
    let samples = wait_until(Duration::from_secs(10), "a later history sample", || {
        let (status, body) = try_http("GET", &format!("{api}/stats/history"), None).ok()?;
        let samples: Vec<serde_json::Value> = serde_json::from_str(&body).ok()?;
        let later = samples
            .iter()
            .any(|s| s["time"].as_f64().is_some_and(|t| t > refused_at + 2.0));
        (status == 200 && later).then_some(samples)
    });
    for sample in &samples {
        assert_eq!(sample["user_count"], 0, "no users ran: {sample}");
    }
    assert_eq!(stats(&api).state, RunState::Ready);
    assert_eq!(nginx.count_requests(), 0, "nginx saw no request");

    // The same request under the master's IP starts the swarm.
    let own_host = format!("127.0.0.1:{web_port}");
    let own_origin = format!("http://{own_host}");
    let own = [("Host", own_host.as_str()), ("Origin", own_origin.as_str())];
    let (status, body) = http_post_form_with_headers(&format!("{api}/swarm"), &own, &form);
    assert_eq!(status, 200, "{body}");
    wait_until(Duration::from_secs(20), "2 users running", || {
        let s = stats(&api);
        (s.state == RunState::Running && s.user_count == 2).then_some(())
    });
    master.signal("INT");
    exit_code(&mut master, Duration::from_secs(20));

    // A master told the name accepts it.
    let (mut named, _, named_api) =
        loadtest!().master_with_ui(&dir, &["--host", &target, "--web-allowed-host", REBIND]);
    let named_port = named_api.rsplit(':').next().expect("a port");
    let host = format!("{REBIND}:{named_port}");
    let origin = format!("http://{host}");
    let headers = [("Host", host.as_str()), ("Origin", origin.as_str())];
    let (status, body) =
        http_post_form_with_headers(&format!("{named_api}/swarm"), &headers, &form);
    assert_eq!(status, 200, "--web-allowed-host {REBIND}: {body}");
    named.signal("INT");
    exit_code(&mut named, Duration::from_secs(20));
}

/// Sockets the process `pid` holds open.
fn sockets_of(pid: u32) -> usize {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

/// One slow client: it sent part of a request head and drips a header
/// line each second, so neither the idle timeout nor a whole head ends it.
struct Slowloris {
    stream: TcpStream,
    opened: Instant,
    /// How long the server held it, once it closed.
    held: Option<Duration>,
}

impl Slowloris {
    fn open(addr: &str) -> Slowloris {
        let mut stream = TcpStream::connect(addr).expect("connects");
        stream
            .write_all(b"GET /stats/requests HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .expect("sends a partial head");
        stream.set_nonblocking(true).expect("nonblocking");
        Slowloris {
            stream,
            opened: Instant::now(),
            held: None,
        }
    }

    /// Notes when the server closed the connection.
    fn check(&mut self) {
        if self.held.is_some() {
            return;
        }
        let mut buf = [0u8; 1024];
        match self.stream.read(&mut buf) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            // An answer (a 408, say) is followed by the close.
            Ok(n) if n > 0 => {}
            Ok(_) | Err(_) => self.held = Some(self.opened.elapsed()),
        }
    }

    fn drip(&mut self) {
        if self.held.is_none() {
            let _ = self.stream.write_all(b"X-Slow: 1\r\n");
        }
    }
}

/// How fast the UI must answer while the slow clients are held.
const UI_ANSWERS_WITHIN: Duration = Duration::from_secs(2);
/// Slow clients opened: more than twice the cap.
const SLOW_CLIENTS: usize = 600;

#[test]
fn slow_header_clients_are_cut_at_the_header_timeout_and_the_ui_keeps_answering() {
    let _turn = crate::take_turn();
    let dir = TempDir::new("slowloris");
    let (master, port, api) = loadtest!().master_with_ui(&dir, &[]);
    let pid = master.pid();
    let addr = api.trim_start_matches("http://").to_string();
    let baseline = sockets_of(pid);
    assert!(baseline > 0, "the master holds its listening sockets");

    let started = Instant::now();
    let mut slow: Vec<Slowloris> = Vec::with_capacity(SLOW_CLIENTS);
    // In batches: closes are noted as they come, not after the last open.
    for _ in 0..SLOW_CLIENTS / 25 {
        slow.extend((0..25).map(|_| Slowloris::open(&addr)));
        slow.iter_mut().for_each(Slowloris::check);
    }
    println!(
        "opened {SLOW_CLIENTS} slow clients in {:?}",
        started.elapsed()
    );
    let mut worker = None;
    let mut most_sockets = 0;
    let mut slowest_answer = Duration::ZERO;
    let mut answers = 0;
    let limit = HEADER_READ_TIMEOUT + Duration::from_secs(10);
    let mut last_drip = Instant::now();
    while slow.iter().any(|s| s.held.is_none()) {
        assert!(
            started.elapsed() < limit,
            "{} slow clients still open after {limit:?}",
            slow.iter().filter(|s| s.held.is_none()).count()
        );
        for client in &mut slow {
            client.check();
        }
        if last_drip.elapsed() >= Duration::from_secs(1) {
            slow.iter_mut().for_each(Slowloris::drip);
            last_drip = Instant::now();
        }
        most_sockets = most_sockets.max(sockets_of(pid));
        if slow.iter().any(|s| s.held.is_none()) {
            let asked = Instant::now();
            let (status, body) = try_http("GET", &format!("{api}/stats/requests"), None)
                .unwrap_or_else(|e| panic!("the UI did not answer during the flood: {e}"));
            let took = asked.elapsed();
            assert_eq!(status, 200, "{body}");
            slowest_answer = slowest_answer.max(took);
            answers += 1;
        }
        // The worker port shares the descriptor table: a worker joins.
        if worker.is_none() {
            worker = Some(loadtest!().worker(&dir, port, WORKER_WAIT));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let held: Vec<Duration> = slow.iter().filter_map(|s| s.held).collect();
    let longest = held.iter().max().copied().unwrap_or_default();
    let mut histogram: BTreeMap<u64, usize> = BTreeMap::new();
    for h in &held {
        *histogram.entry(h.as_secs()).or_default() += 1;
    }
    println!(
        "held (whole seconds: clients) {histogram:?}; longest {longest:?}; \
         master sockets: {baseline} before, at most {most_sockets} during; \
         UI answered {answers} times, slowest in {slowest_answer:?}"
    );
    assert!(
        slowest_answer < UI_ANSWERS_WITHIN,
        "the UI took {slowest_answer:?}"
    );
    // The cap, plus the worker's connection and one being evicted.
    assert!(
        most_sockets <= baseline + MAX_CONNECTIONS + 2,
        "the master held {most_sockets} sockets (baseline {baseline}, cap {MAX_CONNECTIONS})"
    );
    // Over the cap, the longest waiting were evicted as newer ones came,
    // well before the header timeout...
    let evicted = held
        .iter()
        .filter(|h| **h < HEADER_READ_TIMEOUT - Duration::from_secs(1))
        .count();
    assert!(
        evicted >= SLOW_CLIENTS - MAX_CONNECTIONS,
        "{evicted} evicted before the header timeout"
    );
    // ...and the rest held to the header timeout (the UI's own requests
    // evicted one or two).
    let timed_out = held
        .iter()
        .filter(|h| **h >= HEADER_READ_TIMEOUT - Duration::from_millis(500))
        .count();
    assert!(
        timed_out >= MAX_CONNECTIONS / 2,
        "{timed_out} held to the header timeout"
    );
    // The survivors were cut by the header timeout: dripping kept the
    // idle timeout from firing, and nothing held them much longer.
    assert!(HEADER_READ_TIMEOUT > IDLE_TIMEOUT);
    assert!(
        longest >= HEADER_READ_TIMEOUT - Duration::from_millis(500)
            && longest <= HEADER_READ_TIMEOUT + Duration::from_secs(3),
        "longest held {longest:?}, header timeout {HEADER_READ_TIMEOUT:?}"
    );
    wait_until(Duration::from_secs(20), "the worker to join", || {
        (stats(&api).worker_count == 1).then_some(())
    });
    drop(slow);
    wait_until(
        Duration::from_secs(10),
        "the master's sockets back near its baseline",
        || (sockets_of(pid) <= baseline + 2).then_some(()),
    );
}
