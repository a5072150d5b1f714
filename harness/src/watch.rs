//! [`Watcher`]: a thread that samples a master all through an attack,
//! about every 100 ms — how long `GET /stats/requests` takes to answer
//! and how big the answer is, whether the workers the test cares about are
//! listed and not missing, how many workers are counted, and the master
//! process's resident memory, open descriptors and CPU from `/proc` — and
//! hands the figures back as [`Watched`] when the test is done.
//!
//! It records, it does not judge: the test states its bounds and asserts
//! them on the figures (and prints them), so a failure shows every number
//! at once rather than the first one over.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use swarm::api::{NodeState, StatsRequests};

use crate::http::try_http;
use crate::procfs;

/// The pause between two samples.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// The watcher stops by itself after this long, whatever the test does.
const WATCH_LIMIT: Duration = Duration::from_secs(300);

/// Problems kept word for word (the rest are only counted).
const KEPT: usize = 20;

/// What the watcher saw, from its first sample to its last.
#[derive(Debug, Clone, Default)]
pub struct Watched {
    /// Samples taken.
    pub samples: usize,
    /// `/stats/requests` answers that were 200 and JSON.
    pub answers: usize,
    /// The master's VmRSS at the first sample, KiB.
    pub first_rss_kib: u64,
    /// The highest VmRSS sampled, KiB, and when (seconds into the watch).
    pub peak_rss_kib: u64,
    /// When the peak was sampled, seconds into the watch.
    pub peak_rss_at: f64,
    /// VmRSS at the latest sample, KiB: what the master kept.
    pub last_rss_kib: u64,
    /// Open descriptors at the first sample.
    pub first_fds: usize,
    /// The most open descriptors sampled.
    pub peak_fds: usize,
    /// CPU seconds the master used between the first and last samples.
    pub cpu_seconds: f64,
    /// The slowest `/stats/requests` answer (or failure).
    pub slowest: Duration,
    /// When it was asked, seconds into the watch.
    pub slowest_at: f64,
    /// The biggest `/stats/requests` body, bytes.
    pub largest_body: usize,
    /// The highest `Aggregated` request count any answer showed.
    pub peak_requests: u64,
    /// The most rows (request names) any answer listed.
    pub peak_rows: usize,
    /// The fewest and the most workers counted (`worker_count`).
    pub min_workers: usize,
    /// See `min_workers`.
    pub max_workers: usize,
    /// Answers that failed (not 200, not JSON, no answer): the first
    /// [`KEPT`] word for word, and how many in all.
    pub failures: Vec<String>,
    /// How many answers failed in all.
    pub failure_count: usize,
    /// Samples in which a watched worker was absent or missing: the first
    /// few word for word, and how many in all.
    pub missing: Vec<String>,
    /// How many samples saw a watched worker absent or missing.
    pub missing_count: usize,
    /// The last good answer.
    pub last: Option<StatsRequests>,
    /// How long the watch lasted.
    pub elapsed: Duration,
}

impl Watched {
    /// How far the resident memory rose above the first sample, KiB.
    pub fn rss_growth_kib(&self) -> u64 {
        self.peak_rss_kib.saturating_sub(self.first_rss_kib)
    }

    /// A one-line summary for a test's figures.
    pub fn summary(&self) -> String {
        format!(
            "{} samples over {:.1} s; RSS {:.1} MiB → peak {:.1} MiB (+{:.1}) at {:.1} s, \
             last {:.1} MiB; \
             fds {} → peak {}; master CPU {:.2} s; slowest /stats/requests {} ms at {:.1} s, \
             largest {} KiB; workers counted {}..={}; {} failed answers; {} samples with a \
             watched worker missing",
            self.samples,
            self.elapsed.as_secs_f64(),
            mib(self.first_rss_kib),
            mib(self.peak_rss_kib),
            mib(self.rss_growth_kib()),
            self.peak_rss_at,
            mib(self.last_rss_kib),
            self.first_fds,
            self.peak_fds,
            self.cpu_seconds,
            self.slowest.as_millis(),
            self.slowest_at,
            self.largest_body / 1024,
            self.min_workers,
            self.max_workers,
            self.failure_count,
            self.missing_count,
        )
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// What the sampling thread shares with the test.
#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    /// Workers that must be listed, and not missing, in every answer.
    workers: Mutex<Vec<String>>,
    figures: Mutex<Watched>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Samples a master every [`SAMPLE_EVERY`] on a thread of its own until
/// [`Watcher::finish`] (or drop, or [`WATCH_LIMIT`]).
#[derive(Debug)]
pub struct Watcher {
    shared: Arc<Shared>,
    handle: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Watches the master with process id `pid` and web UI at `api_url`;
    /// `workers` must be listed and not missing in every answer. Returns
    /// once the first sample is taken (its memory is the baseline).
    pub fn start(api_url: &str, pid: u32, workers: &[String]) -> Watcher {
        let shared = Arc::new(Shared::default());
        *lock(&shared.workers) = workers.to_vec();
        let url = format!("{api_url}/stats/requests");
        let handle = {
            let shared = shared.clone();
            thread::spawn(move || sample_until_stopped(&url, pid, &shared))
        };
        let watcher = Watcher {
            shared,
            handle: Some(handle),
        };
        // Bounded: the first sample is one HTTP request away.
        let started = Instant::now();
        while watcher.now().samples == 0 && started.elapsed() < Duration::from_secs(30) {
            thread::sleep(Duration::from_millis(10));
        }
        watcher
    }

    /// Also requires worker `id` from the next sample on (one that joined
    /// during the watch).
    pub fn require_worker(&self, id: &str) {
        lock(&self.shared.workers).push(id.to_string());
    }

    /// The figures so far.
    pub fn now(&self) -> Watched {
        lock(&self.shared.figures).clone()
    }

    /// Stops sampling and returns the figures.
    pub fn finish(mut self) -> Watched {
        self.stop();
        self.now()
    }

    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop();
    }
}

fn sample_until_stopped(url: &str, pid: u32, shared: &Shared) {
    let started = Instant::now();
    let first_cpu = procfs::cpu_seconds(pid).unwrap_or(0.0);
    while !shared.stop.load(Ordering::SeqCst) && started.elapsed() < WATCH_LIMIT {
        let at = started.elapsed().as_secs_f64();
        let rss = procfs::rss_kib(pid).unwrap_or(0);
        let fds = procfs::open_fds(pid).unwrap_or(0);
        let cpu = procfs::cpu_seconds(pid).unwrap_or(first_cpu);
        let asked = Instant::now();
        let answer = try_http("GET", url, None);
        let took = asked.elapsed();
        let workers = lock(&shared.workers).clone();
        {
            let mut f = lock(&shared.figures);
            if f.samples == 0 {
                (f.first_rss_kib, f.first_fds) = (rss, fds);
                f.min_workers = usize::MAX;
            }
            f.samples += 1;
            f.elapsed = started.elapsed();
            f.cpu_seconds = cpu - first_cpu;
            f.last_rss_kib = rss;
            if rss > f.peak_rss_kib {
                (f.peak_rss_kib, f.peak_rss_at) = (rss, at);
            }
            f.peak_fds = f.peak_fds.max(fds);
            if took > f.slowest {
                (f.slowest, f.slowest_at) = (took, at);
            }
            match answer {
                Ok((200, body)) => {
                    f.largest_body = f.largest_body.max(body.len());
                    match serde_json::from_str::<StatsRequests>(&body) {
                        Ok(stats) => {
                            f.answers += 1;
                            check_workers(&mut f, &stats, &workers, at);
                            let requests = stats.aggregated().map_or(0, |row| row.num_requests);
                            f.peak_requests = f.peak_requests.max(requests);
                            f.peak_rows = f.peak_rows.max(stats.stats.len());
                            f.min_workers = f.min_workers.min(stats.worker_count);
                            f.max_workers = f.max_workers.max(stats.worker_count);
                            f.last = Some(stats);
                        }
                        Err(e) => failed(&mut f, format!("{at:.1} s: not JSON ({e})")),
                    }
                }
                Ok((status, body)) => {
                    let body: String = body.chars().take(200).collect();
                    failed(&mut f, format!("{at:.1} s: {status} {body}"));
                }
                Err(e) => failed(&mut f, format!("{at:.1} s: {e}")),
            }
        }
        thread::sleep(SAMPLE_EVERY);
    }
}

fn failed(f: &mut Watched, what: String) {
    f.failure_count += 1;
    if f.failures.len() < KEPT {
        f.failures.push(what);
    }
}

/// Notes a sample where a watched worker is absent or missing.
fn check_workers(f: &mut Watched, stats: &StatsRequests, workers: &[String], at: f64) {
    let absent: Vec<String> = workers
        .iter()
        .filter_map(
            |id| match stats.workers.iter().find(|w| &w.id == id).map(|w| w.state) {
                Some(NodeState::Missing) => Some(format!("{id} missing")),
                None => Some(format!("{id} not listed")),
                Some(_) => None,
            },
        )
        .collect();
    if !absent.is_empty() {
        f.missing_count += 1;
        if f.missing.len() < KEPT {
            f.missing.push(format!("{at:.1} s: {}", absent.join(", ")));
        }
    }
}
