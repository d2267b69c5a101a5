//! What recording costs on the hot path: a counter increment, a labelled increment (a
//! pre-resolved handle, and a family lookup per call), a histogram observation, a B+tree
//! operation through its metric set (and, as the baselines in the same run,
//! `prometheus-client`'s own counter and histogram), a gRPC call through its handle, one round of
//! three built-in health checks, and two threads recording into one series at once.
//!
//! `cargo bench -p lookout-sdk --bench recording`

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use lookout_sdk::health::{CpuCheck, DiskSpaceCheck, HealthChecker, MemoryCheck};
use lookout_sdk::sets::BTreeOp;
use lookout_sdk::{Counter, LATENCY_BUCKETS, Metrics, Options};
use prometheus_client::metrics::family::Family;

fn recording(c: &mut Criterion) {
    let m = Metrics::new(Options::default().label("service", "bench"));
    let counter = m.counter("bench_ops", "ops");
    c.bench_function("counter increment", |b| b.iter(|| counter.inc()));
    // The baseline the SDK's per-thread counter replaced: prometheus-client's atomic one.
    let pc = prometheus_client::metrics::counter::Counter::<u64>::default();
    c.bench_function("counter increment (prometheus-client's, baseline)", |b| {
        b.iter(|| pc.inc())
    });
    let family: Family<Vec<(String, String)>, Counter> = m.counter_family("bench_by_op", "ops");
    let labels = vec![("op".to_string(), "get".to_string())];
    let handle = family.get_or_create(&labels).clone();
    c.bench_function("labelled increment (handle)", |b| b.iter(|| handle.inc()));
    c.bench_function("labelled increment (family lookup)", |b| {
        b.iter(|| family.get_or_create(std::hint::black_box(&labels)).inc())
    });
    let h = m.histogram("bench_latency_seconds", "latency", &LATENCY_BUCKETS);
    c.bench_function("histogram observation", |b| {
        b.iter(|| h.observe(std::hint::black_box(0.000_37)))
    });
    // The baseline the SDK's lock-free histogram replaced: prometheus-client's own.
    let p = prometheus_client::metrics::histogram::Histogram::new(LATENCY_BUCKETS.iter().copied());
    c.bench_function(
        "histogram observation (prometheus-client's, baseline)",
        |b| b.iter(|| p.observe(std::hint::black_box(0.000_37))),
    );
    let tree = m.btree("primary");
    c.bench_function("B+tree operation through the set", |b| {
        b.iter(|| tree.record(BTreeOp::Search, std::hint::black_box(0.000_21), 3))
    });
    let rpc = m.network().grpc_server("unary", "kv.KV", "Get");
    c.bench_function("gRPC call through its handle", |b| {
        b.iter(|| {
            rpc.start();
            rpc.handled(0, std::hint::black_box(0.000_5));
        })
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let checker = Arc::new(HealthChecker::new(
        Duration::from_secs(60),
        Duration::from_secs(1),
    ));
    checker.add(MemoryCheck::new(1 << 30));
    checker.add(DiskSpaceCheck::new("/", 0.05));
    checker.add(CpuCheck::new(2.0));
    c.bench_function("health round (3 built-in checks)", |b| {
        b.iter(|| rt.block_on(checker.run()))
    });
}

/// Two threads recording into the same series at once, as an engine's workers do: the
/// time per pair of increments (one on each thread), against prometheus-client's shared
/// atomic counter and mutex histogram in the same run.
fn contended(c: &mut Criterion) {
    fn both(n: u64, record: &(dyn Fn() + Sync)) -> Duration {
        let start = std::time::Instant::now();
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..n {
                        record();
                    }
                });
            }
        });
        start.elapsed()
    }
    let m = Metrics::new(Options::default());
    let ours = m.counter("bench_shared_ops", "ops");
    c.bench_function("counter increment, 2 threads", |b| {
        b.iter_custom(|n| both(n, &|| ours.inc()))
    });
    let theirs = prometheus_client::metrics::counter::Counter::<u64>::default();
    c.bench_function(
        "counter increment, 2 threads (prometheus-client's, baseline)",
        |b| {
            b.iter_custom(|n| {
                both(n, &|| {
                    theirs.inc();
                })
            })
        },
    );
    let h = m.histogram("bench_shared_seconds", "latency", &LATENCY_BUCKETS);
    c.bench_function("histogram observation, 2 threads", |b| {
        b.iter_custom(|n| both(n, &|| h.observe(std::hint::black_box(0.000_37))))
    });
    let p = prometheus_client::metrics::histogram::Histogram::new(LATENCY_BUCKETS.iter().copied());
    c.bench_function(
        "histogram observation, 2 threads (prometheus-client's, baseline)",
        |b| b.iter_custom(|n| both(n, &|| p.observe(std::hint::black_box(0.000_37)))),
    );
}

criterion_group!(benches, recording, contended);
criterion_main!(benches);
