//! Merging worker stats on the master: the per-report cost the master pays
//! for every worker every 3 s, and the percentile read the UI does.

// criterion_group! defines the undocumented bench functions.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use swarm::stats::{RequestStats, StatsEntry, StatsReport};

/// A realistic 3 s delta: `names` request names, times spread over buckets.
fn report(names: usize, per_name: u64) -> StatsReport {
    let mut report = StatsReport::default();
    for n in 0..names {
        let mut entry = StatsEntry::new(&format!("/page/{n}"), "GET", 1_000.0);
        for i in 0..per_name {
            let ms = (i % 200) as f64 * 1.7 + (i % 7) as f64 * 30.0;
            entry.log(ms, 1, i % 50 == 0, 1_000.0 + (i % 3) as f64);
        }
        report.stats_total.extend(&entry);
        report.stats.push(entry);
    }
    report
}

fn merge(c: &mut Criterion) {
    let delta = report(10, 5_000);
    c.bench_function("merge_report_10_names", |b| {
        let mut stats = RequestStats::new(0.0);
        b.iter(|| stats.merge_report(black_box(&delta), swarm::stats::now_epoch()));
    });
    let mut stats = RequestStats::new(0.0);
    for _ in 0..100 {
        stats.merge_report(&delta, swarm::stats::now_epoch());
    }
    c.bench_function("percentile_p99_total", |b| {
        b.iter(|| black_box(&stats.total).percentile(0.99));
    });
}

criterion_group!(benches, merge);
criterion_main!(benches);
