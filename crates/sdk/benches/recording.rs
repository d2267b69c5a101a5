//! What recording costs on the hot path: a counter increment, a labelled increment (a
//! pre-resolved handle, and a family lookup per call), a histogram observation, a B+tree
//! operation through its metric set (and, as the baseline in the same run,
//! `prometheus-client`'s own histogram), a gRPC call through its handle, and one round of
//! three built-in health checks.
//!
//! `cargo bench -p lookout-sdk --bench recording`

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use lookout_sdk::health::{CpuCheck, DiskSpaceCheck, HealthChecker, MemoryCheck};
use lookout_sdk::sets::BTreeOp;
use lookout_sdk::{LATENCY_BUCKETS, Metrics, Options};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

fn recording(c: &mut Criterion) {
    let m = Metrics::new(Options::default().label("service", "bench"));
    let counter = m.counter("bench_ops", "ops");
    c.bench_function("counter increment", |b| b.iter(|| counter.inc()));
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

criterion_group!(benches, recording);
criterion_main!(benches);
