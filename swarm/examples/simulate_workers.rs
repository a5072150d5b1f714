//! A fleet of simulated workers for a real `loadtest master`: each speaks
//! our protocol through the worker's own end (`protocol::transport::
//! connect_worker`), says `client_ready`, sends a heartbeat every second and
//! a `stats` report every 3 s with three request names and their HDR
//! histograms, as a real worker does; none runs users. Once every worker
//! has joined, it measures over a window the master's CPU (from
//! `/proc/PID/stat`) and how long its web UI takes to answer
//! `/stats/requests`, and prints both. `scripts/bench-master` runs it at
//! 1,000 and 10,000 workers.
//!
//! Usage: simulate_workers --master HOST:PORT --web URL --master-pid PID
//!        [--workers 1000] [--window 20] [--join-rate 1000]
//! Each worker holds a connection: raise the open-file limit first. For a
//! master with a join secret, set SPOTLOAD_JOIN_SECRET to it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use swarm::protocol::transport::connect_worker;
use swarm::protocol::{
    Heartbeat, JoinSecret, ToMaster, ToWorker, WorkerState, LOCUST_COMPAT_VERSION,
};
use swarm::stats::{now_epoch, StatsReport};
use tokio::sync::watch;

/// What the command line asked for.
struct Plan {
    host: String,
    port: u16,
    web: String,
    master_pid: u32,
    workers: usize,
    window: Duration,
    join_rate: usize,
    /// The master's join secret, from SPOTLOAD_JOIN_SECRET.
    secret: Option<JoinSecret>,
}

fn plan() -> Result<Plan, String> {
    let mut args = std::env::args().skip(1);
    let (mut master, mut web, mut pid) = (None, None, None);
    let (mut workers, mut window, mut join_rate) = (1_000usize, 20u64, 1_000usize);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: not a whole number: {v}"))
        };
        match flag.as_str() {
            "--master" => master = Some(value()?),
            "--web" => web = Some(value()?),
            "--master-pid" => pid = Some(number(value()?)?),
            "--workers" => workers = number(value()?)? as usize,
            "--window" => window = number(value()?)?,
            "--join-rate" => join_rate = number(value()?)? as usize,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    let master = master.ok_or("--master HOST:PORT is required")?;
    let (host, port) = master
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse().ok()?)))
        .ok_or(format!("--master: expected HOST:PORT, got {master}"))?;
    if workers == 0 || window == 0 || join_rate == 0 {
        return Err("--workers, --window and --join-rate must be at least 1".into());
    }
    Ok(Plan {
        host,
        port,
        web: web.ok_or("--web URL (the master's web UI) is required")?,
        master_pid: u32::try_from(pid.ok_or("--master-pid is required")?)
            .map_err(|_| "--master-pid: out of range".to_string())?,
        workers,
        window: Duration::from_secs(window),
        join_rate,
        secret: JoinSecret::from_env().map_err(|err| err.to_string())?,
    })
}

/// A 3 s delta as a busy worker sends it: three names, a spread of times
/// from 0.2 ms to about 50 ms (1% slow), 2% failures.
fn report(seed: u64) -> StatsReport {
    StatsReport::synthetic(seed, &["/", "/search", "/checkout"], 300, now_epoch())
}

/// A worker's id in Locust's form; every one has the same length (ids
/// up to 99,999), so a report encoded once can be signed by each.
fn node_id(id: usize) -> String {
    format!("sim-{id:05}_{:032x}", rand::random::<u128>())
}

/// The stats message every worker sends next: a fresh report each second,
/// encoded once (for the template id `node_id(0)`'s length).
fn publish_reports() -> watch::Receiver<Bytes> {
    let template = node_id(0);
    let encode =
        move |seed| Bytes::from(ToMaster::Stats(Box::new(report(seed))).to_wire(&template));
    let (tx, rx) = watch::channel(encode(0));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        for seed in 1u64.. {
            tick.tick().await;
            if tx.send(encode(seed)).is_err() {
                break;
            }
        }
    });
    rx
}

/// One simulated worker, until the process ends.
async fn worker(
    plan: Arc<Plan>,
    id: usize,
    reports: watch::Receiver<Bytes>,
    joined: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
) {
    let node_id = node_id(id);
    let Ok(mut link) = connect_worker(&plan.host, plan.port, &node_id, plan.secret.clone()) else {
        return;
    };
    while *link.connected.borrow() == 0 {
        if link.connected.changed().await.is_err() {
            return;
        }
    }
    let ready = ToMaster::ClientReady {
        version: LOCUST_COMPAT_VERSION.to_string(),
    };
    let _ = link.outgoing.try_send(Bytes::from(ready.to_wire(&node_id)));
    // The master's messages (its ack, its heartbeats) are read and dropped.
    let mut acked = false;
    let mut beat = tokio::time::interval(Duration::from_secs(1));
    let mut stats = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_millis(id as u64 * 7 % 3_000),
        Duration::from_secs(3),
    );
    loop {
        tokio::select! {
            message = link.incoming.recv() => {
                let Some(message) = message else { return };
                if !acked && matches!(ToWorker::from_wire(&message), Ok(ToWorker::Ack { .. })) {
                    acked = true;
                    joined.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ = beat.tick() => {
                let heartbeat = ToMaster::Heartbeat(Heartbeat {
                    state: WorkerState::Ready,
                    cpu_usage: 12.5,
                    memory_usage: 40 << 20,
                    cpu_cores: Some(2),
                });
                let _ = link.outgoing.try_send(Bytes::from(heartbeat.to_wire(&node_id)));
            }
            _ = stats.tick() => {
                // The latest report, signed with this worker's id (the
                // envelope's last field; every id has the same length).
                let mut message = reports.borrow().to_vec();
                let at = message.len() - node_id.len();
                message[at..].copy_from_slice(node_id.as_bytes());
                if link.outgoing.try_send(Bytes::from(message)).is_ok() {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// The master's CPU seconds so far (user + system).
fn master_cpu(pid: u32) -> Result<f64, String> {
    use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
    let pid = Pid::from_u32(pid);
    let mut system = System::new();
    system.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        true,
        ProcessRefreshKind::nothing().with_cpu(),
    );
    system
        .process(pid)
        .map(|p| p.accumulated_cpu_time() as f64 / 1000.0)
        .ok_or(format!("no master process {pid}"))
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let plan = match plan() {
        Ok(plan) if plan.workers > 99_999 => {
            eprintln!("simulate_workers: at most 99,999 workers");
            return std::process::ExitCode::from(2);
        }
        Ok(plan) => Arc::new(plan),
        Err(why) => {
            eprintln!("simulate_workers: {why}");
            eprintln!("usage: simulate_workers --master HOST:PORT --web URL --master-pid PID [--workers N] [--window S] [--join-rate N]");
            return std::process::ExitCode::from(2);
        }
    };
    let (joined, sent) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let reports = publish_reports();
    let started = Instant::now();
    for id in 0..plan.workers {
        tokio::spawn(worker(
            plan.clone(),
            id,
            reports.clone(),
            joined.clone(),
            sent.clone(),
        ));
        if (id + 1) % plan.join_rate.div_ceil(10).max(1) == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let patience = Duration::from_secs(60 + plan.workers as u64 / 100);
    while joined.load(Ordering::Relaxed) < plan.workers as u64 {
        if started.elapsed() > patience {
            eprintln!(
                "only {} of {} workers joined in {patience:?}: is the open-file limit high enough?",
                joined.load(Ordering::Relaxed),
                plan.workers
            );
            return std::process::ExitCode::FAILURE;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let join_time = started.elapsed();
    // Every worker past its first heartbeats and reports.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let ui = reqwest::Client::new();
    let url = format!("{}/stats/requests", plan.web.trim_end_matches('/'));
    let (cpu0, sent0, t0) = match master_cpu(plan.master_pid) {
        Ok(cpu) => (cpu, sent.load(Ordering::Relaxed), Instant::now()),
        Err(why) => {
            eprintln!("{why}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut latencies = Vec::new();
    let mut known = 0;
    while t0.elapsed() < plan.window {
        let asked = Instant::now();
        match ui.get(&url).send().await {
            Ok(response) => match response.json::<serde_json::Value>().await {
                Ok(body) => {
                    latencies.push(asked.elapsed().as_secs_f64() * 1000.0);
                    known = body["worker_count"].as_u64().unwrap_or(0);
                }
                Err(e) => eprintln!("{url}: not JSON: {e}"),
            },
            Err(e) => eprintln!("{url}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = match master_cpu(plan.master_pid) {
        Ok(cpu1) => (cpu1 - cpu0) / elapsed,
        Err(why) => {
            eprintln!("{why}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let reports = (sent.load(Ordering::Relaxed) - sent0) as f64 / elapsed;
    latencies.sort_by(f64::total_cmp);
    println!(
        "{} workers (joined in {:.1} s; the master lists {known}): master CPU {cpu:.3} cores over {elapsed:.0} s \
         ({reports:.0} stats reports/s, {:.0} heartbeats/s); /stats/requests answered in \
         p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms ({} requests)",
        plan.workers,
        join_time.as_secs_f64(),
        plan.workers,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.95),
        latencies.last().copied().unwrap_or(f64::NAN),
        latencies.len(),
    );
    if known != plan.workers as u64 {
        eprintln!("the master lists {known} workers, not {}", plan.workers);
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}
