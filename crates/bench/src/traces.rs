//! `lookout-bench traces`: the trace store under load. Generates traces as a traced
//! service mesh sends them (services × operations, ten spans a trace, five attributes and
//! an event on some spans), encodes them as OTLP/HTTP protobuf requests, and measures in
//! one process: decoding plus storing (spans per CPU-second), bytes per span on disk
//! against bytes per span on the wire (the OTLP request: the same run's baseline), how
//! long opening the store takes (the index is rebuilt from the files), the index's memory
//! (opened again in a process of its own: `traces-open`), and the latency of trace-by-id
//! and of searches (by service and operation; with a tag) as Jaeger's UI issues them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use lookout_remote::otlp::{AnyValue, KeyValue, Resource};
use lookout_traces::otlp::{
    ExportTraceServiceRequest, InstrumentationScope, Limits, OtlpEvent, OtlpSpan, ResourceSpans,
    ScopeSpans, Status,
};
use lookout_traces::{Query, TraceStore};
use prost::Message;

/// Options of `lookout-bench traces`.
#[derive(Debug, clap::Args)]
pub(crate) struct TracesOptions {
    /// Spans to store.
    #[arg(long, default_value_t = 1_000_000)]
    spans: u64,
    /// Spans per OTLP request.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Lookups of each kind timed.
    #[arg(long, default_value_t = 200)]
    lookups: usize,
    /// Directory for the store (default: the system's temporary directory).
    #[arg(long)]
    work: Option<PathBuf>,
}

const SERVICES: usize = 10;
const OPERATIONS: usize = 20;
const SPANS_PER_TRACE: u64 = 10;

fn s(v: &str) -> Option<AnyValue> {
    Some(AnyValue {
        string_value: Some(v.into()),
        ..Default::default()
    })
}

fn kv(k: &str, v: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: v,
    }
}

/// A deterministic stream of numbers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// One request of `n` spans starting at span number `first`, one resource per service.
fn request(first: u64, n: usize, start_ns: u64, rng: &mut Rng) -> ExportTraceServiceRequest {
    let mut by_service: Vec<Vec<OtlpSpan>> = vec![Vec::new(); SERVICES];
    for i in first..first + n as u64 {
        let trace = i / SPANS_PER_TRACE;
        let pos = i % SPANS_PER_TRACE;
        let svc = (trace as usize + pos as usize) % SERVICES;
        let op = (rng.next() % OPERATIONS as u64) as usize;
        let mut trace_id = [0u8; 16];
        trace_id[..8].copy_from_slice(&(trace + 1).to_be_bytes());
        trace_id[8..].copy_from_slice(&0x5eed_u64.to_be_bytes());
        let span_id = (i + 1).to_be_bytes().to_vec();
        let parent = if pos == 0 {
            Vec::new()
        } else {
            (i - pos + 1).to_be_bytes().to_vec()
        };
        let start = start_ns + trace * 1_000_000 + pos * 100_000;
        let dur = 50_000 + rng.next() % 5_000_000;
        let error = rng.next().is_multiple_of(50);
        by_service[svc].push(OtlpSpan {
            trace_id: trace_id.to_vec(),
            span_id,
            parent_span_id: parent,
            name: format!("op-{op}"),
            kind: if pos == 0 { 2 } else { 3 },
            start_time_unix_nano: start,
            end_time_unix_nano: start + dur,
            attributes: vec![
                kv(
                    "http.request.method",
                    s(if op.is_multiple_of(3) { "POST" } else { "GET" }),
                ),
                kv("http.route", s(&format!("/api/v1/items/{op}"))),
                kv("db.system", s("kvstore")),
                kv("user.tier", s(["free", "pro", "team"][(i % 3) as usize])),
                kv(
                    "rows",
                    Some(AnyValue {
                        int_value: Some((rng.next() % 1000) as i64),
                        ..Default::default()
                    }),
                ),
            ],
            events: if i.is_multiple_of(4) {
                vec![OtlpEvent {
                    time_unix_nano: start + dur / 2,
                    name: "cache miss".into(),
                    attributes: vec![kv("page", s("4711"))],
                }]
            } else {
                Vec::new()
            },
            status: Some(Status {
                message: if error {
                    "timeout".into()
                } else {
                    String::new()
                },
                code: if error { 2 } else { 0 },
            }),
        });
    }
    ExportTraceServiceRequest {
        resource_spans: by_service
            .into_iter()
            .enumerate()
            .filter(|(_, v)| !v.is_empty())
            .map(|(svc, spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", s(&format!("svc-{svc}"))),
                        kv("host.name", s(&format!("host-{}", svc % 3))),
                    ],
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "bench".into(),
                    }),
                    spans,
                }],
            })
            .collect(),
    }
}

fn cpu_seconds() -> f64 {
    crate::overhead::cpu_seconds(std::process::id())
}

fn median_us(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e6
}

/// Opens the store in `dir` and prints the resident bytes that added (`traces-open`).
pub(crate) fn open_probe(dir: &std::path::Path) -> anyhow::Result<()> {
    let me = std::process::id().to_string();
    let before = crate::storage::rss(&me).0;
    let store = TraceStore::open(dir, lookout_traces::Options::default())?;
    let after = crate::storage::rss(&me).0;
    anyhow::ensure!(store.stats().spans > 0, "no spans in {}", dir.display());
    println!("{}", after.saturating_sub(before));
    Ok(())
}

/// Runs the benchmark and prints its figures.
pub(crate) fn run(o: TracesOptions) -> anyhow::Result<()> {
    let dir = match &o.work {
        Some(w) => tempfile::tempdir_in(w)?,
        None => tempfile::tempdir()?,
    };
    let opts = lookout_traces::Options::default();
    let store = TraceStore::open(dir.path(), opts.clone())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    let start_ns = now - o.spans / SPANS_PER_TRACE * 1_000_000;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Requests are made first, so only decoding and storing are timed.
    let mut bodies = Vec::new();
    let mut wire = 0u64;
    let mut first = 0;
    while first < o.spans {
        let n = o.batch.min((o.spans - first) as usize);
        let body = request(first, n, start_ns, &mut rng).encode_to_vec();
        wire += body.len() as u64;
        bodies.push(body);
        first += n as u64;
    }
    let limits = Limits::default();
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    for (i, body) in bodies.iter().enumerate() {
        let d = lookout_traces::otlp::decode_protobuf(body, &limits)?;
        anyhow::ensure!(d.rejected == 0, "{:?}", d.first_error);
        store.append(d.spans)?;
        if i % 200 == 199 {
            eprintln!("stored {} spans", (i as u64 + 1) * o.batch as u64);
        }
    }
    store.sync()?;
    let (cpu, wall) = (cpu_seconds() - cpu0, t0.elapsed().as_secs_f64());
    let stats = store.stats();
    drop(store);
    let requests = bodies.len();
    drop(bodies);
    // The index's memory, opened in a process of its own (a fresh heap).
    let probe = std::process::Command::new(std::env::current_exe()?)
        .arg("traces-open")
        .arg(dir.path())
        .output()?;
    anyhow::ensure!(
        probe.status.success(),
        "traces-open: {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let index_bytes: u64 = String::from_utf8_lossy(&probe.stdout).trim().parse()?;
    let t = Instant::now();
    let store = TraceStore::open(dir.path(), opts)?;
    let reopen = t.elapsed().as_secs_f64();
    anyhow::ensure!(store.stats().spans == o.spans, "spans lost across a reopen");

    let traces = o.spans / SPANS_PER_TRACE;
    let mut by_id = Vec::new();
    for _ in 0..o.lookups {
        let tr = rng.next() % traces;
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&(tr + 1).to_be_bytes());
        id[8..].copy_from_slice(&0x5eed_u64.to_be_bytes());
        let t = Instant::now();
        let spans = store.trace(&id, 100_000)?;
        by_id.push(t.elapsed());
        anyhow::ensure!(
            spans.len() as u64 == SPANS_PER_TRACE,
            "trace {tr}: {} spans",
            spans.len()
        );
    }
    let search = |tags: Vec<(String, String)>, rng: &mut Rng| -> anyhow::Result<f64> {
        let mut times = Vec::new();
        for _ in 0..o.lookups.min(50) {
            let q = Query {
                service: format!("svc-{}", rng.next() % SERVICES as u64),
                operation: Some(format!("op-{}", rng.next() % OPERATIONS as u64)),
                tags: tags.clone(),
                start_ns: 0,
                end_ns: u64::MAX,
                limit: 20,
                ..Default::default()
            };
            let t = Instant::now();
            let found = store.search(&q, 100_000)?;
            times.push(t.elapsed());
            anyhow::ensure!(!found.is_empty(), "nothing found for {q:?}");
        }
        Ok(median_us(times))
    };
    let plain = search(Vec::new(), &mut rng)?;
    let tagged = search(vec![("user.tier".into(), "pro".into())], &mut rng)?;

    println!("{} spans in {} requests of {}", o.spans, requests, o.batch);
    println!(
        "ingest (OTLP protobuf decode + store): {:.0} spans/s wall, {:.0} spans per CPU-second",
        o.spans as f64 / wall,
        o.spans as f64 / cpu
    );
    println!(
        "on disk: {:.1} bytes/span ({} MB), on the wire (OTLP protobuf): {:.1} bytes/span: {:.2}× smaller",
        stats.bytes as f64 / o.spans as f64,
        stats.bytes / 1_000_000,
        wire as f64 / o.spans as f64,
        wire as f64 / stats.bytes as f64
    );
    println!("reopen (index rebuilt from the files): {reopen:.2} s");
    println!(
        "index in memory: {:.0} MB, {:.1} bytes/span (resident memory the open added, in a process of its own)",
        index_bytes as f64 / 1e6,
        index_bytes as f64 / o.spans as f64
    );
    println!(
        "trace by id: median {:.0} µs; search by service+operation (limit 20): median {plain:.0} µs; with a tag: median {tagged:.0} µs",
        median_us(by_id)
    );
    Ok(())
}
