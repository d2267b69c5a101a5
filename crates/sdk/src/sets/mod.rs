//! Ready-made metric sets, one struct each with typed methods. Every name follows
//! Prometheus's conventions (base units, `_total` on counters, `_seconds`, `_bytes`) and is
//! listed on its set; labelled handles are resolved when the set is built, so recording
//! is a plain add to the calling thread's own cells ([`crate::Counter`]).

mod btree;
mod membership;
mod network;
mod process;
mod raft;
mod storage;

pub use btree::{BTreeMetrics, BTreeOp, OpTimer};
pub use membership::{MemberState, MembershipMetrics};
pub use network::{GRPC_CODES, GrpcCall, HttpCall, NetworkMetrics};
pub(crate) use process::read_process as process_figures;
pub use process::{ProcessCollector, RuntimeCollector};
pub use raft::{RaftMetrics, RaftPeer, RaftRole};
pub use storage::StorageMetrics;

use crate::Histogram;
#[cfg(feature = "tracing")]
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;

/// Label pairs as the families here key them.
pub(crate) type Pairs = Vec<(String, String)>;

/// A histogram family whose histograms share one bucket layout.
pub(crate) type HistFamily = Family<Pairs, Histogram, fn() -> Histogram>;

/// The metric of `f` labelled `l`, resolved once. A function rather than an inline
/// `get_or_create(..).clone()`: the read guard it holds is released here, where a struct
/// literal would hold it to the end of the statement and the next insert would wait on it.
pub(crate) fn handle<M, C>(f: &Family<Pairs, M, C>, l: &[(&str, &str)]) -> M
where
    M: Clone,
    C: prometheus_client::metrics::family::MetricConstructor<M>,
{
    f.get_or_create(&pairs(l)).clone()
}

/// A latency histogram. With the `tracing` feature, observations inside a recorded span
/// keep that trace as the bucket's exemplar ([`crate::TraceExemplar`]), in
/// `prometheus-client`'s exemplar histogram (only its own metrics can build the exemplars
/// its encoder writes; it takes two locks per observation); without it, the SDK's
/// lock-free [`crate::Histogram`], so instrumentation that traces nothing pays nothing for
/// exemplars.
#[cfg(feature = "tracing")]
pub(crate) type LatencyHistogram = HistogramWithExemplars<crate::TraceExemplar>;
/// A latency histogram (plain: exemplars need the `tracing` feature).
#[cfg(not(feature = "tracing"))]
pub(crate) type LatencyHistogram = Histogram;

/// A family of [`LatencyHistogram`]s sharing one bucket layout.
pub(crate) type LatencyFamily = Family<Pairs, LatencyHistogram, fn() -> LatencyHistogram>;

/// A family of latency histograms ([`crate::LATENCY_BUCKETS`]) with exemplars.
pub(crate) fn latency_family() -> LatencyFamily {
    Family::new_with_constructor(|| LatencyHistogram::new(crate::LATENCY_BUCKETS.iter().copied()))
}

/// Observes `seconds` in `h` (nothing when the operation was not timed: the check is
/// inlined into every set's method, the observation is not), with the current recorded
/// span's trace as the exemplar.
#[cfg(feature = "tracing")]
#[inline]
pub(crate) fn observe_latency(h: &LatencyHistogram, seconds: Option<f64>) {
    if let Some(seconds) = seconds {
        observe_timed(h, seconds);
    }
}

#[cfg(feature = "tracing")]
fn observe_timed(h: &LatencyHistogram, seconds: f64) {
    match crate::exemplar() {
        Some(e) => h.observe(seconds, Some(e), Some(std::time::SystemTime::now())),
        None => h.observe(seconds, None, None),
    }
}

/// Observes `seconds` in `h` (nothing when the operation was not timed).
#[cfg(not(feature = "tracing"))]
#[inline]
pub(crate) fn observe_latency(h: &LatencyHistogram, seconds: Option<f64>) {
    if let Some(seconds) = seconds {
        h.observe(seconds);
    }
}

/// `[(name, value), …]` as owned pairs.
pub(crate) fn pairs(p: &[(&str, &str)]) -> Pairs {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
