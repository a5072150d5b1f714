//! The protocol codec: a worker's `stats` message encoded and decoded, and a
//! heartbeat, as they cross port 5557.

// criterion_group! defines the undocumented bench functions.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use swarm::protocol::{Heartbeat, ToMaster, WorkerState};
use swarm::stats::{StatsEntry, StatsReport};

fn stats_message() -> ToMaster {
    let mut report = StatsReport::default();
    for n in 0..10 {
        let mut entry = StatsEntry::new(&format!("/page/{n}"), "GET", 1_000.0);
        for i in 0..2_000u64 {
            entry.log((i % 300) as f64, 1, false, 1_000.0 + (i % 3) as f64);
        }
        report.stats_total.extend(&entry);
        report.stats.push(entry);
    }
    ToMaster::Stats(Box::new(report))
}

fn codec(c: &mut Criterion) {
    let stats = stats_message();
    let wire = stats.to_wire("bench_0123456789abcdef");
    c.bench_function("encode_stats", |b| {
        b.iter(|| black_box(&stats).to_wire("bench_0123456789abcdef"));
    });
    c.bench_function("decode_stats", |b| {
        b.iter(|| ToMaster::from_wire(black_box(&wire)).expect("decodes"));
    });
    let beat = ToMaster::Heartbeat(Heartbeat {
        state: WorkerState::Running,
        cpu_usage: 12.5,
        memory_usage: 1 << 25,
        cpu_cores: Some(2),
    });
    let beat_wire = beat.to_wire("bench_0123456789abcdef");
    c.bench_function("decode_heartbeat", |b| {
        b.iter(|| ToMaster::from_wire(black_box(&beat_wire)).expect("decodes"));
    });
}

criterion_group!(benches, codec);
criterion_main!(benches);
