//! `lookout-sdk`: what a Rust database engine adds to be watched by Lookout (or any
//! Prometheus): one [`Metrics`] registry with global labels on every series, ready-made
//! metric sets under documented Prometheus names ([`sets`]: B+tree, page cache and
//! storage, Raft, network, membership, process and runtime), a [`health`] checker with
//! timeouts and built-in checks, and an HTTP endpoint ([`http`]: `/metrics`, `/health`,
//! `/health/live`, `/health/ready`) to mount in the engine's own axum server or to run on
//! a port of its own.
//!
//! ```no_run
//! use std::time::Duration;
//! use lookout_sdk::{Metrics, Options, health::HealthChecker};
//!
//! # async fn run() -> std::io::Result<()> {
//! let metrics = Metrics::new(Options::default().label("service", "kvstore").label("node", "n1"));
//! let tree = metrics.btree("primary");
//! let storage = metrics.storage();
//! let raft = metrics.raft();
//! metrics.process();
//!
//! // In the engine:
//! let t = tree.start(lookout_sdk::sets::BTreeOp::Insert);
//! // … insert …
//! t.finish(&tree, 3); // traversal depth
//! storage.cache_hit();
//! raft.set_term(7);
//!
//! let health = HealthChecker::new(Duration::from_secs(10), Duration::from_secs(2));
//! health.add(lookout_sdk::health::DiskSpaceCheck::new("/var/lib/kvstore", 0.10));
//! let health = std::sync::Arc::new(health);
//! health.clone().spawn();
//! lookout_sdk::http::serve("127.0.0.1:9500", metrics.clone(), health).await
//! # }
//! ```
//!
//! Then point Lookout at it: `scrape_configs: [{job_name: kvstore, static_configs:
//! [{targets: ["127.0.0.1:9500"]}]}]`.
//!
//! Recording is cheap: a counter increment or a histogram observation is a plain add to
//! cells the calling thread owns (no lock, no locked instruction, no cache line shared
//! between threads; see [`Counter`]), gauges are atomics whose `set` is a plain store
//! ([`Gauge`], [`Level`]), and labelled families are
//! resolved when a set is built (one handle per operation), so the hot path neither
//! allocates nor hashes. Timers read [`Instant`], the CPU's invariant
//! time-stamp counter where there is one (`quanta`: about 10 ns a read against 30 for the
//! OS clock on a VM), since an engine reads the clock several times per operation. An
//! engine whose operations take a microsecond or two can time a sample of them instead
//! ([`Options::time_one_in`], [`timing`]): every operation is still counted.

mod cells;
pub mod facade;
pub mod health;
mod hist;
#[cfg(feature = "embedded")]
pub mod history;
pub mod http;
pub mod sets;
pub mod snapshot;
pub mod timing;
#[cfg(feature = "tracing")]
pub mod trace;

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Once};

pub use cells::{Counter, Level};
pub use hist::Histogram;
/// The clock the SDK's timers read: monotonic, from the CPU's time-stamp counter where it
/// is invariant (calibrated once), from the OS otherwise. Use it for your own timings on
/// hot paths.
pub use quanta::Instant;
pub use timing::{Stopwatch, Timing};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Metric, Registry};

/// The SDK's gauge: `prometheus-client`'s, over [`Level`] by default, whose `set` is a
/// plain store rather than a locked swap (engines set gauges such as dirty pages on every
/// write).
pub type Gauge<N = i64, A = Level> = prometheus_client::metrics::gauge::Gauge<N, A>;

/// Latency buckets in seconds: 10 µs to about 10 s, doubling (21 buckets).
pub const LATENCY_BUCKETS: [f64; 21] = [
    0.00001, 0.00002, 0.00004, 0.00008, 0.00016, 0.00032, 0.00064, 0.00128, 0.00256, 0.00512,
    0.01024, 0.02048, 0.04096, 0.08192, 0.16384, 0.32768, 0.65536, 1.31072, 2.62144, 5.24288,
    10.48576,
];

/// Size buckets in bytes: 64 B to 64 MiB, ×4 (11 buckets).
pub const SIZE_BUCKETS: [f64; 11] = [
    64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
    67108864.0,
];

/// Ratio buckets: 0.1 to 1.0 by tenths.
pub const RATIO_BUCKETS: [f64; 10] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

/// The exemplar a latency observation carries: the trace (and span) it was made in, when
/// that span is recorded (feature `tracing`), so a slow bucket leads to a slow request's
/// trace. Encoded in OpenMetrics as `# {trace_id="…",span_id="…"} value timestamp`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TraceExemplar {
    /// The trace id, 32 hex digits.
    pub trace_id: String,
    /// The span id, 16 hex digits.
    pub span_id: String,
}

/// The exemplar for an observation made now, if it is made inside a recorded span.
#[cfg(feature = "tracing")]
pub(crate) fn exemplar() -> Option<TraceExemplar> {
    trace::exemplar()
}

/// A histogram with `buckets`.
pub fn histogram(buckets: &[f64]) -> Histogram {
    Histogram::new(buckets.iter().copied())
}

/// A Prometheus-safe metric name: characters other than letters, digits, `_` and `:`
/// become `_`, and a leading digit gets a `_` before it (see [`Metrics`]).
pub(crate) fn sanitize(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) || out.is_empty() {
        out.insert(0, '_');
    }
    out
}

/// A counter's name without the `_total` the exposition adds.
fn counter_name(name: &str) -> &str {
    name.strip_suffix("_total").unwrap_or(name)
}

/// How the registry is set up.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Labels added to every series (`service`, `environment`, `node`, …).
    pub global_labels: Vec<(String, String)>,
    /// When the metric sets read the clock: every operation (the default) or a sample.
    pub timing: Timing,
}

impl Options {
    /// These options with one more global label.
    pub fn label(mut self, name: &str, value: &str) -> Self {
        self.global_labels.push((name.into(), value.into()));
        self
    }

    /// These options with the metric sets timing about one operation in `n` on each
    /// thread ([`timing`]): counters still count every operation, the latency histograms
    /// (and the per-operation value histograms: traversal depth, node utilisation, WAL
    /// record sizes) hold a uniform sample.
    pub fn time_one_in(mut self, n: u32) -> Self {
        self.timing = Timing::one_in(n);
        self
    }
}

/// The registry every metric of the engine lives in; cheap to clone (shared).
///
/// Each name is exposed once, as the exposition formats require (a second `# TYPE` line
/// for a name makes strict parsers refuse the whole scrape): asking again for a metric by
/// a name already taken returns the one registered when it has the same type (a metric
/// set made twice, for a second tree or a second Raft group, shares its families; two
/// subsystems asking for the same counter share it), and otherwise a working metric that
/// is not exposed, with a warning logged through `tracing`. Names are made valid
/// (characters other than letters, digits, `_` and `:` become `_`; a counter's `_total`
/// is the exposition's to add).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Shared>,
    timing: Timing,
}

/// What every clone of a [`Metrics`] shares.
struct Shared {
    registry: Mutex<Registry>,
    /// Whether [`Metrics::process`] registered its collectors.
    process: Once,
    /// What is registered under each name: the metric itself when it can be handed out
    /// again, `None` for what [`Metrics::register`] and [`Metrics::info`] registered.
    names: Mutex<Names>,
}

type Names = HashMap<String, Option<Box<dyn Any + Send + Sync>>>;

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry whose every series carries `opts.global_labels`.
    pub fn new(opts: Options) -> Self {
        let registry = Registry::with_labels(
            opts.global_labels
                .into_iter()
                .map(|(k, v)| (k.into(), v.into())),
        );
        Self {
            inner: Arc::new(Shared {
                registry: Mutex::new(registry),
                names: Mutex::default(),
                process: Once::new(),
            }),
            timing: opts.timing,
        }
    }

    /// Registers any `prometheus-client` metric (a custom one) under `name` made valid;
    /// if the name is taken, the metric is not exposed and a warning is logged.
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        let name = sanitize(name);
        let mut names = self.inner.names.lock().expect("registry lock");
        if names.contains_key(&name) {
            tracing::warn!(metric = %name, "a metric by this name is registered already: the new one is not exposed");
            return;
        }
        self.inner
            .registry
            .lock()
            .expect("registry lock")
            .register(&name, help, metric);
        names.insert(name, None);
    }

    /// The metric registered under `name` (made valid) if it has type `M`; else `make()`'s,
    /// registered if the name is free, only logged if another type holds it.
    pub(crate) fn shared<M: Metric + Clone>(
        &self,
        name: &str,
        help: &str,
        make: impl FnOnce() -> M,
    ) -> M {
        let name = sanitize(name);
        let mut names = self.inner.names.lock().expect("registry lock");
        if let Some(held) = names.get(&name) {
            if let Some(same) = held.as_ref().and_then(|h| h.downcast_ref::<M>()) {
                return same.clone();
            }
            tracing::warn!(metric = %name, "a metric of another kind is registered by this name: the new one is not exposed");
            return make();
        }
        let metric = make();
        self.inner
            .registry
            .lock()
            .expect("registry lock")
            .register(&name, help, metric.clone());
        names.insert(name, Some(Box::new(metric.clone())));
        metric
    }

    /// A counter named `name` (the exposition adds `_total`; a `_total` given is dropped
    /// so it is not doubled). Asked for again by the same name, the same counter.
    pub fn counter(&self, name: &str, help: &str) -> Counter {
        self.shared(counter_name(name), help, Counter::default)
    }

    /// A gauge (the same one when asked for again by its name).
    pub fn gauge(&self, name: &str, help: &str) -> Gauge {
        self.shared(name, help, Gauge::default)
    }

    /// A gauge of floating-point values.
    pub fn gauge_f64(&self, name: &str, help: &str) -> Gauge<f64, std::sync::atomic::AtomicU64> {
        self.shared(
            name,
            help,
            Gauge::<f64, std::sync::atomic::AtomicU64>::default,
        )
    }

    /// A histogram with `buckets` ([`LATENCY_BUCKETS`], [`SIZE_BUCKETS`] or the
    /// author's own); asked for again by its name, the one registered first (with its
    /// buckets).
    pub fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Histogram {
        self.shared(name, help, || histogram(buckets))
    }

    /// A counter family labelled by `L` (a struct deriving `EncodeLabelSet`, or
    /// `Vec<(String, String)>`).
    pub fn counter_family<L>(&self, name: &str, help: &str) -> Family<L, Counter>
    where
        L: EncodeLabelSet + Clone + std::hash::Hash + Eq + Send + Sync + std::fmt::Debug + 'static,
    {
        self.shared(counter_name(name), help, Family::<L, Counter>::default)
    }

    /// A gauge family labelled by `L`.
    pub fn gauge_family<L>(&self, name: &str, help: &str) -> Family<L, Gauge>
    where
        L: EncodeLabelSet + Clone + std::hash::Hash + Eq + Send + Sync + std::fmt::Debug + 'static,
    {
        self.shared(name, help, Family::<L, Gauge>::default)
    }

    /// An info metric (`<name>_info 1` with `labels`): versions, build facts. Label names
    /// are made valid as metric names are; a second info metric by the same name is not
    /// exposed (a warning is logged).
    pub fn info(&self, name: &str, help: &str, labels: &[(&str, &str)]) {
        let labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (sanitize(k).replace(':', "_"), v.to_string()))
            .collect();
        self.register(
            name.strip_suffix("_info").unwrap_or(name),
            help,
            prometheus_client::metrics::info::Info::new(labels),
        );
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(
            &mut out,
            &self.inner.registry.lock().expect("registry lock"),
        )
        .expect("writing to a String cannot fail");
        out
    }

    /// When the metric sets read the clock ([`Options::time_one_in`]); start your own
    /// sampled timings with [`Timing::start`].
    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// The B+tree metric set for the tree (index) named `tree`.
    pub fn btree(&self, tree: &str) -> sets::BTreeMetrics {
        sets::BTreeMetrics::new(self, tree)
    }

    /// The page cache and storage metric set.
    pub fn storage(&self) -> sets::StorageMetrics {
        sets::StorageMetrics::new(self)
    }

    /// The Raft metric set.
    pub fn raft(&self) -> sets::RaftMetrics {
        sets::RaftMetrics::new(self)
    }

    /// The network (gRPC and HTTP) metric set.
    pub fn network(&self) -> sets::NetworkMetrics {
        sets::NetworkMetrics::new(self)
    }

    /// The membership (service discovery) metric set.
    pub fn membership(&self) -> sets::MembershipMetrics {
        sets::MembershipMetrics::new(self)
    }

    /// Registers the process collector (CPU, memory, file descriptors, threads) and, when
    /// called inside a tokio runtime, that runtime's figures; once (later calls do
    /// nothing).
    pub fn process(&self) {
        self.inner.process.call_once(|| {
            let mut r = self.inner.registry.lock().expect("registry lock");
            r.register_collector(Box::new(sets::ProcessCollector));
            if let Ok(h) = tokio::runtime::Handle::try_current() {
                r.register_collector(Box::new(sets::RuntimeCollector::new(h)));
            }
        });
    }
}
