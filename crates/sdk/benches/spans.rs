//! What tracing costs on the hot path (feature `tracing`): a span that is not sampled
//! (the common case at a low sampling ratio), a sampled span with five attributes, and
//! the batch exporter's throughput (spans handed to it and exported per second, to an
//! exporter that discards them, so the OTLP encoding and HTTP are not in the figure).
//!
//! `cargo bench -p lookout-sdk --features tracing --bench spans`

use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use lookout_sdk::sets::BTreeOp;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter};
use tracing_subscriber::layer::SubscriberExt;

/// Takes batches and drops them.
#[derive(Debug)]
struct Discard;

impl SpanExporter for Discard {
    async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
        Ok(())
    }
}

fn provider(sampler: Sampler) -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_batch_exporter(Discard)
        .with_sampler(sampler)
        .build()
}

/// The layers `trace::init` installs: OpenTelemetry behind the root sampler.
fn with_subscriber(p: &SdkTracerProvider, ratio: f64, f: impl FnOnce()) {
    let subscriber = tracing_subscriber::registry()
        .with(lookout_sdk::trace::SpanPresence)
        .with(lookout_sdk::trace::layer(p.tracer("bench"), ratio));
    tracing::subscriber::with_default(subscriber, f);
}

fn spans(c: &mut Criterion) {
    let off = provider(Sampler::AlwaysOn);
    with_subscriber(&off, 0.0, || {
        c.bench_function("unsampled span (B+tree get)", |b| {
            b.iter(|| {
                let s = lookout_sdk::trace::btree(BTreeOp::Search, "primary");
                let _in = s.enter();
            })
        });
    });
    let on = provider(Sampler::AlwaysOn);
    with_subscriber(&on, 1.0, || {
        c.bench_function("sampled span, 5 attributes", |b| {
            b.iter(|| {
                let s = tracing::info_span!(
                    "db.btree.put",
                    db.operation.name = "put",
                    db.btree.tree = "primary",
                    // Integers as i64, OpenTelemetry's: a u64 is recorded as a string.
                    db.btree.depth = 3i64,
                    db.btree.nodes_visited = 4i64,
                    db.key.bytes = 16i64,
                );
                let _in = s.enter();
            })
        });
        // Throughput: spans ended and exported (or dropped by a full queue, which the
        // SDK counts); measured end to end with a flush.
        let n = 200_000u64;
        let t = Instant::now();
        for i in 0..n {
            let s = tracing::info_span!("op", i = i as i64);
            drop(s.enter());
        }
        let _ = on.force_flush();
        let secs = t.elapsed().as_secs_f64();
        println!(
            "batch exporter: {n} sampled spans ended and flushed in {secs:.2} s: {:.0} spans/s",
            n as f64 / secs
        );
    });
    let _ = on.shutdown();
    let _ = off.shutdown();
}

criterion_group!(benches, spans);
criterion_main!(benches);
