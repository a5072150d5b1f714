//! Percentiles come from merged histograms: two workers see very different
//! latencies, and the master's p50/p95/p99/p99.9 are those of the union of
//! every request either worker made — not an average of per-worker figures —
//! to the microsecond (within the histograms' 1%, or 20 µs), and within one
//! Locust bucket in Locust's own CSV.

use std::collections::BTreeMap;
use std::time::Duration;

use harness::*;
use harness::{Nginx, NginxOptions, TempDir};
use swarm::stats::{bucket_ms, StatsEntry};

/// Response times (ms, to the microsecond) from a goose JSON request log.
fn logged_times(path: &std::path::Path) -> Vec<f64> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|v| {
            let ms = v["response_time"].as_f64()?;
            let us = v["response_time_fraction_us"].as_f64().unwrap_or(0.0);
            Some(ms + us / 1000.0)
        })
        .collect()
}

/// The exact `q` quantile of `times`: the smallest value that `q` of them
/// are at or below.
fn exact_quantile(times: &[f64], q: f64) -> f64 {
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The Aggregated row of the headless summary's percentile table, by label.
fn summary_percentiles(stdout: &str) -> BTreeMap<String, f64> {
    let mut lines = stdout
        .lines()
        .skip_while(|l| !l.starts_with("Response time percentiles"));
    let header: Vec<String> = lines
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let row = lines
        .find(|l| l.trim_start().starts_with("Aggregated"))
        .unwrap_or_else(|| panic!("no Aggregated percentiles in:\n{stdout}"));
    let cells: Vec<&str> = row.split_whitespace().skip(1).collect();
    header
        .iter()
        .skip(1)
        .zip(cells)
        .filter_map(|(label, cell)| Some((label.clone(), cell.parse().ok()?)))
        .collect()
}

fn entry_of(times: &[f64]) -> StatsEntry {
    let mut entry = StatsEntry::new("/", "GET", 0.0);
    for ms in times {
        entry.log(*ms, 1, false, 1.0);
    }
    entry
}

/// The width of Locust's bucket around `ms`: one bucket is the precision
/// both sides share (goose keeps µs buckets, the log whole ms).
fn bucket_step(ms: f64) -> f64 {
    match ms {
        m if m < 100.0 => 1.0,
        m if m < 1_000.0 => 10.0,
        m if m < 10_000.0 => 100.0,
        _ => 1_000.0,
    }
}

#[test]
fn master_percentiles_are_those_of_the_union_of_samples() {
    let fast = Nginx::start(NginxOptions::default());
    // 100 requests/s at most: with 4 users each request queues ~40 ms.
    let slow = Nginx::start(NginxOptions {
        root_rate: Some(100),
        ..NginxOptions::default()
    });
    let dir = TempDir::new("swarm-percentiles");
    let prefix = dir.path().join("run");
    let (log_a, log_b) = (dir.path().join("fast.jsonl"), dir.path().join("slow.jsonl"));
    // No --host on the master: each worker keeps its own target.
    let mut args: Vec<&str> = "--headless -u 8 -r 8 -t 8s --expect-workers 2 --csv"
        .split(' ')
        .collect();
    args.push(prefix.to_str().expect("utf-8"));
    let (mut master, port) = loadtest!().master(&dir, &args);
    let _a = loadtest!().worker(
        &dir,
        port,
        &[
            "--host",
            &fast.url(),
            "--request-log",
            log_a.to_str().expect("utf-8"),
        ],
    );
    let _b = loadtest!().worker(
        &dir,
        port,
        &[
            "--host",
            &slow.url(),
            "--request-log",
            log_b.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(
        exit_code(&mut master, Duration::from_secs(60)),
        0,
        "{}",
        master.logs()
    );

    let (times_a, times_b) = (logged_times(&log_a), logged_times(&log_b));
    let mut union_times = times_a.clone();
    union_times.extend(&times_b);
    let union = entry_of(&union_times);
    let (a, b) = (entry_of(&times_a), entry_of(&times_b));
    let total = csv_row(&dir.path().join("run_stats.csv"), "Aggregated");
    assert_close(
        num(&total, "Request Count"),
        union.num_requests as f64,
        0.005,
        "requests: master vs request logs",
    );
    let mut seen = BTreeMap::new();
    let mut averaging_would_differ = false;
    for (label, p) in [("50%", 0.5), ("95%", 0.95), ("99%", 0.99)] {
        let master_value = num(&total, label);
        let expected = union.percentile(p) as f64;
        let averaged = ((a.percentile(p) + b.percentile(p)) as f64 / 2.0).round();
        seen.insert(label, (master_value, expected, averaged));
        let step = bucket_step(expected);
        assert!(
            (master_value - expected).abs() <= step,
            "{label}: master {master_value} ms, union of samples {expected} ms (bucket {}) — {seen:?}",
            bucket_ms(expected)
        );
        averaging_would_differ |= (averaged - expected).abs() > step;
    }
    println!(
        "percentiles (master, union, per-worker average): {seen:?}; fast {} slow {} requests",
        a.num_requests, b.num_requests
    );
    assert!(
        averaging_would_differ,
        "the two workers' latencies should differ enough that averaging is wrong: {seen:?}"
    );

    // To the microsecond: the summary reads the merged histograms.
    let stdout = master.stdout();
    assert!(
        stdout.contains("from merged microsecond histograms"),
        "the master says where its percentiles come from:\n{stdout}"
    );
    let precise = summary_percentiles(&stdout);
    for (label, q) in [("50%", 0.5), ("95%", 0.95), ("99%", 0.99), ("99.9%", 0.999)] {
        let exact = exact_quantile(&union_times, q);
        let got = precise
            .get(label)
            .copied()
            .unwrap_or_else(|| panic!("no {label} in {precise:?}"));
        let tolerance = (exact * 0.01).max(0.02);
        println!("{label}: master {got} ms, union of the request logs {exact:.3} ms");
        assert!(
            (got - exact).abs() <= tolerance,
            "{label}: master {got} ms vs exact {exact:.3} ms (allowed {tolerance:.3})"
        );
    }
}
