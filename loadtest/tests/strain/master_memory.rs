//! Does the master's memory grow with the number of requests it
//! aggregates? It must not: a long run is millions of requests.
//!
//! Fake workers speak the real protocol (ZeroMQ, msgpack) to a real
//! `loadtest master` process and push stats deltas the way a busy swarm
//! does — several request names, response times spread over most of
//! Locust's buckets, a few failures with a handful of error texts, per-second
//! counters at the current seconds. The master's VmRSS is read from
//! /proc after 1 million and after 10 million requests have been
//! aggregated (checked through `GET /stats/requests`).
//!
//! Slow (about a minute), so ignored by default. Run it with
//!
//! ```text
//! cargo test -p loadtest --test strain master_memory -- --ignored --nocapture
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use harness::{loadtest, Api, Process, TempDir};
use swarm::protocol::transport::{connect_worker, DealerSender, SendError};
use swarm::protocol::{Heartbeat, ToMaster, WorkerState, LOCUST_COMPAT_VERSION};
use swarm::stats::{now_epoch, StatsEntry, StatsError, StatsReport, AGGREGATED};

/// Fake workers pushing at once.
const WORKERS: u64 = 8;
/// Requests in one stats delta (a worker at ~1,700 rps reporting every 3 s).
const REQUESTS_PER_REPORT: u64 = 5_000;
/// Pause between one worker's reports.
const REPORT_PAUSE: Duration = Duration::from_millis(150);
/// Request names of the fake load test, with their methods.
const ENDPOINTS: [(&str, &str); 6] = [
    ("GET", "/"),
    ("GET", "/api/items"),
    ("GET", "/api/items/[id]"),
    ("POST", "/api/cart"),
    ("POST", "/login"),
    ("GET", "/static/app.js"),
];
/// Distinct error texts: the errors table stays this small however long the run.
const ERRORS: [&str; 3] = [
    "HTTPError('500 Server Error: Internal Server Error')",
    "ConnectionResetError(104, 'Connection reset by peer')",
    "HTTPError('503 Server Error: Service Unavailable')",
];
/// Response-time samples per endpoint per delta, each standing for
/// `requests / SAMPLES` requests.
const SAMPLES: u64 = 50;

#[test]
#[ignore = "slow: pushes 10 million requests of stats through a real master (run with --ignored)"]
fn master_memory_does_not_grow_with_requests() {
    let _turn = crate::take_turn();
    let dir = TempDir::new("master-memory");
    let web_port = harness::free_port();
    let web = web_port.to_string();
    let (mut master, port) =
        loadtest!().master(&dir, &["--web-host", "127.0.0.1", "--web-port", &web]);
    master
        .wait_for_port(harness::loopback(web_port), Duration::from_secs(20))
        .expect("the web UI listens");
    let web_url = format!("http://127.0.0.1:{web_port}");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<FakeWorker> = (0..WORKERS)
        .map(|i| runtime.block_on(FakeWorker::join(port, i, stop.clone())))
        .collect();
    let api = Api::new(&web_url);
    harness::wait_until(Duration::from_secs(20), "fake workers to join", || {
        (api.requests().worker_count as u64 == WORKERS).then_some(())
    });
    // A running swarm, as in a real test (its spawn orders are ignored).
    api.swarm(800, 800.0);

    let baseline = rss_kib(&master);
    let mut pushed = 0;
    let mut figures = Vec::new();
    for target in [1_000_000u64, 10_000_000] {
        let per_worker = (target - pushed) / WORKERS;
        runtime.block_on(push_all(&workers, per_worker));
        pushed += per_worker * WORKERS;
        wait_for_total(&api, pushed, &master);
        // Let the history sampler and the per-second trim run a few times.
        std::thread::sleep(Duration::from_secs(5));
        let stats = api.requests();
        let total = stats.aggregated().expect("an Aggregated row");
        println!(
            "Aggregated: {} requests, {} failures, median {} ms, p95 {} ms, max {} ms",
            total.num_requests,
            total.num_failures,
            total.median_response_time,
            total.p95,
            total.max_response_time
        );
        let rss = rss_kib(&master);
        println!(
            "master VmRSS after {pushed} requests: {rss} KiB ({:.1} MiB; baseline {:.1} MiB)",
            rss as f64 / 1024.0,
            baseline as f64 / 1024.0
        );
        figures.push(rss);
    }
    stop.store(true, Ordering::Relaxed);
    println!("master VmHWM: {} KiB", proc_status_kib(&master, "VmHWM:"));

    let (after_1m, after_10m) = (figures[0], figures[1]);
    let allowed = after_1m + after_1m / 10 + 2 * 1024;
    assert!(
        after_10m <= allowed,
        "the master's memory grows with the request count: {after_1m} KiB after 1M, \
         {after_10m} KiB after 10M (allowed {allowed} KiB)\n{}",
        master.logs()
    );
}

/// A worker that joins, heartbeats every second and sends what it is told.
struct FakeWorker {
    node_id: String,
    outgoing: DealerSender,
    seed: u64,
}

/// Sends on a connected link, waiting while its queue is full.
async fn send_waiting(outgoing: &DealerSender, payload: Bytes) -> Result<(), SendError> {
    loop {
        match outgoing.try_send(payload.clone()) {
            Err(SendError::Full) => tokio::time::sleep(Duration::from_millis(5)).await,
            done => return done,
        }
    }
}

impl FakeWorker {
    async fn join(port: u16, index: u64, stop: Arc<AtomicBool>) -> FakeWorker {
        let node_id = swarm::protocol::new_node_id();
        let mut link = connect_worker("127.0.0.1", port, &node_id, None).expect("a valid node id");
        tokio::time::timeout(
            Duration::from_secs(10),
            link.connected.wait_for(|count| *count > 0),
        )
        .await
        .expect("connect to the master in time")
        .expect("the worker's socket task is running");
        let worker = FakeWorker {
            node_id,
            outgoing: link.outgoing,
            seed: 0x9E37_79B9_7F4A_7C15 ^ (index + 1),
        };
        worker
            .send(&ToMaster::ClientReady {
                version: LOCUST_COMPAT_VERSION.to_string(),
            })
            .await;
        // Read (and drop) what the master sends, so its queue never fills.
        let mut incoming = link.incoming;
        tokio::spawn(async move { while incoming.recv().await.is_some() {} });
        let beats = worker.outgoing.clone();
        let id = worker.node_id.clone();
        tokio::spawn(async move {
            // Bounded: ten minutes of heartbeats at most.
            for _ in 0..600 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let beat = ToMaster::Heartbeat(Heartbeat {
                    state: WorkerState::Running,
                    cpu_usage: 42.0,
                    memory_usage: 60 << 20,
                    cpu_cores: None,
                });
                if send_waiting(&beats, Bytes::from(beat.to_wire(&id)))
                    .await
                    .is_err()
                {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        worker
    }

    async fn send(&self, message: &ToMaster) {
        send_waiting(&self.outgoing, Bytes::from(message.to_wire(&self.node_id)))
            .await
            .expect("the worker's socket task is running");
    }
}

/// Every worker sends `requests` requests' worth of deltas.
async fn push_all(workers: &[FakeWorker], requests: u64) {
    let mut tasks = Vec::new();
    for (i, worker) in workers.iter().enumerate() {
        let (id, outgoing, seed) = (worker.node_id.clone(), worker.outgoing.clone(), worker.seed);
        tasks.push(tokio::spawn(async move {
            let mut rng = XorShift(seed ^ requests.wrapping_mul(i as u64 + 1));
            let mut left = requests;
            while left > 0 {
                let n = left.min(REQUESTS_PER_REPORT);
                let report = ToMaster::Stats(Box::new(delta(n, &mut rng)));
                send_waiting(&outgoing, Bytes::from(report.to_wire(&id)))
                    .await
                    .expect("the worker's socket task is running");
                left -= n;
                tokio::time::sleep(REPORT_PAUSE).await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("a fake worker's pushing task");
    }
}

/// One stats delta of `requests` requests over the endpoints.
fn delta(requests: u64, rng: &mut XorShift) -> StatsReport {
    let now = now_epoch();
    let mut report = StatsReport {
        stats_total: StatsEntry::new(AGGREGATED, "", now - 3.0),
        user_count: 100,
        ..StatsReport::default()
    };
    let per_endpoint = requests / ENDPOINTS.len() as u64;
    for (k, (method, name)) in ENDPOINTS.iter().enumerate() {
        // The remainder goes to the first endpoint, so totals are exact.
        let n = if k == 0 {
            requests - per_endpoint * (ENDPOINTS.len() as u64 - 1)
        } else {
            per_endpoint
        };
        let mut entry = StatsEntry::new(name, method, now - 3.0);
        let mut left = n;
        for s in 0..SAMPLES {
            let count = if s + 1 == SAMPLES { left } else { n / SAMPLES };
            left -= count;
            // Log-uniform from 0.5 ms to 30 s: most of Locust's ~310 buckets.
            let ms = 0.5 * (60_000f64).powf(rng.unit());
            let failed = rng.unit() < 0.03;
            // Spread over the three seconds the delta covers.
            let at = now - 3.0 * rng.unit();
            entry.log(ms, count, failed, at);
            if failed && count > 0 {
                let error = ERRORS[(rng.next() % ERRORS.len() as u64) as usize];
                add_error(&mut report, method, name, error, count, at);
            }
        }
        entry.total_content_length = n * 1_024;
        report.stats_total.extend(&entry);
        report.stats.push(entry);
    }
    report
}

fn add_error(report: &mut StatsReport, method: &str, name: &str, error: &str, n: u64, at: f64) {
    let row = StatsError {
        method: method.to_string(),
        name: name.to_string(),
        error: error.to_string(),
        occurrences: n,
        first_seen: Some(at),
        last_seen: Some(at),
    };
    report
        .errors
        .entry(row.wire_key())
        .and_modify(|known| known.extend(&row))
        .or_insert(row);
}

/// Waits until the master's `Aggregated` row counts `expected` requests.
fn wait_for_total(api: &Api, expected: u64, master: &Process) {
    let mut seen = 0;
    let reached = harness::try_wait_until(Duration::from_secs(120), || {
        seen = api.total_requests();
        (seen >= expected).then_some(())
    });
    assert!(
        reached.is_some(),
        "the master aggregated {seen} of {expected} requests in 2 minutes\n{}",
        master.logs()
    );
    assert_eq!(seen, expected, "the master counted every request once");
}

fn rss_kib(process: &Process) -> u64 {
    proc_status_kib(process, "VmRSS:")
}

/// A `kB` line of /proc/PID/status.
fn proc_status_kib(process: &Process, field: &str) -> u64 {
    let path = format!("/proc/{}/status", process.pid());
    let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {path}:\n{status}"))
}

/// A small deterministic generator, so runs are comparable.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0.max(1);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}
