//! The master's cost per worker report with microsecond histograms: 1,000
//! `stats` messages of three request names each, as workers send them every
//! 3 s, decoded from the wire and merged — with the `hdr_v2` histograms our
//! workers send, and without them (a Locust worker's buckets only), side by
//! side. Divide a run's time by 1,000 for the cost of one report.

// criterion_group! defines the undocumented bench functions.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use std::hint::black_box;
use swarm::protocol::ToMaster;
use swarm::stats::{RequestStats, StatsReport};

const REPORTS: usize = 1_000;
const NAMES: usize = 3;

/// One worker's 3 s delta: three names, `per_name` requests each, from
/// 0.2 ms to about 50 ms, most of them fast; `seed` varies the times.
fn report(seed: u64, per_name: u64, hdr: bool) -> StatsReport {
    let names = ["/page/0", "/page/1", "/page/2"];
    let mut report = StatsReport::synthetic(seed, &names[..NAMES], per_name, 1_003.0);
    if !hdr {
        for entry in report.stats.iter_mut().chain([&mut report.stats_total]) {
            entry.hdr = None;
        }
    }
    report
}

/// `REPORTS` stats messages as the master receives them.
fn frames(hdr: bool) -> Vec<Vec<u8>> {
    // 20 distinct reports, repeated: enough variety, little set-up time.
    let distinct: Vec<Vec<u8>> = (0..20)
        .map(|seed| ToMaster::Stats(Box::new(report(seed, 2_000, hdr))).to_wire("worker_0"))
        .collect();
    (0..REPORTS)
        .map(|i| distinct[i % distinct.len()].clone())
        .collect()
}

/// Decodes and merges every frame into fresh stats, as the master does.
fn merge_all(frames: &[Vec<u8>]) -> RequestStats {
    let mut stats = RequestStats::new(0.0);
    for frame in frames {
        if let Ok((ToMaster::Stats(report), _)) = ToMaster::from_wire(frame) {
            stats.merge_report(&report, swarm::stats::now_epoch());
        }
    }
    stats
}

fn master_merge(c: &mut Criterion) {
    let mut group = c.benchmark_group("master_merge_1000_reports_3_names");
    group.sample_size(10);
    for (label, hdr) in [("with_hdr", true), ("buckets_only", false)] {
        let frames = frames(hdr);
        let bytes: usize = frames.iter().map(Vec::len).sum();
        println!(
            "{label}: {} bytes per stats message ({NAMES} names + total)",
            bytes / REPORTS
        );
        group.bench_function(label, |b| {
            b.iter_batched(
                || (),
                |()| black_box(merge_all(black_box(&frames))),
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, master_merge);
criterion_main!(benches);
