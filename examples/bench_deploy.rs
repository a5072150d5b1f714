//! Benchmark: `spotload deploy` onto 1 and onto 20 worker hosts (plus a
//! webserver and a master) through an operator link shaped to 100 Mbit/s,
//! printing each deploy's wall time, the bytes the operator sent and the
//! CPU time the whole machine spent meanwhile (every host here shares its
//! cores, where on EC2 each has its own), and the 20-host figures as
//! ratios of the 1-host ones. Run it through
//! `scripts/bench-deploy`, which builds what it needs; needs root.
//!
//! Hosts are sshd in network namespaces (`harness::netns`), fresh for every
//! deploy (nothing installed yet); spotload runs in the operator namespace,
//! whose link alone is shaped (`tc ... tbf`), so host-to-host traffic
//! inside the "VPC" runs at the bridge's speed, as it would on EC2.
//!
//! Usage: bench_deploy SPOTLOAD LOADTEST [--mbit 100] [--workers 1,20] [--rounds 1]
//! (`BENCH_VERBOSE=1` prints each deploy's progress lines too).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use harness::netns::Lan;
use harness::{Process, TempDir};

struct Options {
    spotload: PathBuf,
    loadtest: PathBuf,
    mbit: u32,
    workers: Vec<u8>,
    rounds: usize,
}

fn options() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bench_deploy SPOTLOAD LOADTEST [--mbit 100] [--workers 1,20] [--rounds 1]";
    let spotload = PathBuf::from(args.next().ok_or(usage)?);
    let loadtest = PathBuf::from(args.next().ok_or(usage)?);
    let mut options = Options {
        spotload,
        loadtest,
        mbit: 100,
        workers: vec![1, 20],
        rounds: 1,
    };
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or(format!("{flag} needs a value; {usage}"))?;
        let bad = |what: &str| format!("{flag} {value}: expected {what}");
        match flag.as_str() {
            "--mbit" => options.mbit = value.parse().map_err(|_| bad("Mbit/s, e.g. 100"))?,
            "--rounds" => options.rounds = value.parse().map_err(|_| bad("a count"))?,
            "--workers" => {
                options.workers = value
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .map_err(|_| bad("counts like 1,20 (at most 200 each)"))?;
                if options.workers.iter().any(|n| *n == 0 || *n > 200) {
                    return Err(bad("counts from 1 to 200"));
                }
            }
            _ => return Err(format!("unknown flag {flag}; {usage}")),
        }
    }
    for path in [&options.spotload, &options.loadtest] {
        if !path.exists() {
            return Err(format!("{} does not exist", path.display()));
        }
    }
    Ok(options)
}

/// What one deploy cost.
#[derive(Clone, Copy)]
struct Deploy {
    time: Duration,
    /// Bytes out of the operator's link.
    sent: u64,
    /// CPU seconds the whole machine spent during the deploy.
    cpu: f64,
}

/// CPU seconds this machine has spent so far (user, nice, system, irq and
/// softirq over all cores, from `/proc/stat`).
fn machine_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .enumerate()
        .filter(|(i, _)| matches!(i, 0 | 1 | 2 | 5 | 6))
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum();
    // USER_HZ is 100 on every Linux this runs on.
    ticks as f64 / 100.0
}

/// One deploy onto fresh hosts.
fn deploy_once(options: &Options, workers: u8) -> Result<Deploy, String> {
    let work = TempDir::new("bench-deploy");
    let (mut lan, file) = Lan::fleet(work.path(), workers, |i, _| format!("sl-bench{i}"));
    lan.shape_operator(options.mbit);
    let operator = lan.operator();
    let before = lan.operator_tx_bytes();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &operator])
        .arg(&options.spotload)
        .arg("deploy")
        .arg("--inventory")
        .arg(&file)
        .arg("--loadtest-bin")
        .arg(&options.loadtest)
        .arg("--state-dir")
        .arg(work.path().join("state"))
        .args(["--fleet", "bench", "--connect-timeout", "10s"])
        .args(["--join-timeout", "120s", "--no-web-auth"])
        .env("AWS_EC2_METADATA_DISABLED", "true");
    let cpu_before = machine_cpu_seconds();
    let start = Instant::now();
    let mut process = Process::spawn("spotload", cmd, work.path());
    let status = process.wait_exit(Duration::from_secs(900));
    let time = start.elapsed();
    let cpu = machine_cpu_seconds() - cpu_before;
    let sent = lan.operator_tx_bytes() - before;
    if std::env::var_os("BENCH_VERBOSE").is_some() {
        eprintln!(
            "--- deploy onto {workers} worker host(s)\n{}",
            process.stderr()
        );
    }
    match status {
        Some(status) if status.success() => Ok(Deploy { time, sent, cpu }),
        _ => Err(format!(
            "the deploy onto {workers} worker host(s) failed ({status:?}):\n{}",
            process.stderr()
        )),
    }
}

fn main() -> std::process::ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(err) => {
            eprintln!("error: {err}");
            return std::process::ExitCode::from(2);
        }
    };
    println!(
        "deploy through a {} Mbit/s operator link: {} with {}",
        options.mbit,
        options.spotload.display(),
        options.loadtest.display()
    );
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    println!("| worker hosts | round | time (s) | operator sent (MB) | machine CPU (s) | of {cores} cores |");
    println!("| --- | --- | --- | --- | --- | --- |");
    // Rounds alternate between the fleet sizes, so a busy moment of this
    // machine does not land on one size only.
    let mut runs: Vec<Vec<Deploy>> = vec![Vec::new(); options.workers.len()];
    for round in 1..=options.rounds {
        for (i, &workers) in options.workers.iter().enumerate() {
            match deploy_once(&options, workers) {
                Ok(deploy) => {
                    let time = deploy.time.as_secs_f64();
                    println!(
                        "| {workers} | {round} | {time:.1} | {:.1} | {:.1} | {:.0}% |",
                        deploy.sent as f64 / 1e6,
                        deploy.cpu,
                        100.0 * deploy.cpu / (time * cores as f64)
                    );
                    runs[i].push(deploy);
                }
                Err(err) => {
                    eprintln!("error: {err}");
                    return std::process::ExitCode::FAILURE;
                }
            }
        }
    }
    let median = |runs: &[Deploy], pick: fn(&Deploy) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(pick).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let medians: Vec<(u8, f64, f64, f64)> = options
        .workers
        .iter()
        .zip(&runs)
        .map(|(&workers, runs)| {
            (
                workers,
                median(runs, |r| r.time.as_secs_f64()),
                median(runs, |r| r.sent as f64),
                median(runs, |r| r.cpu),
            )
        })
        .collect();
    if let (Some(first), Some(last)) = (medians.first(), medians.last()) {
        if medians.len() > 1 {
            println!(
                "{} vs {} worker hosts (medians): time {:.2}x, operator bytes {:.2}x, machine CPU {:.2}x",
                last.0,
                first.0,
                last.1 / first.1,
                last.2 / first.2,
                last.3 / first.3
            );
        }
    }
    std::process::ExitCode::SUCCESS
}
