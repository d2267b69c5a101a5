//! OpenTelemetry tracing in one call (feature `tracing`): [`init`] installs a `tracing`
//! subscriber that exports spans over OTLP/HTTP (to Lookout's `tracing_receiver`, Jaeger,
//! Tempo or a collector) with a sampling ratio, prints log lines carrying the current
//! trace id, and sets W3C Trace Context as the propagator. [`btree`], [`raft_append`] and
//! [`page_read`] open spans for the metric sets' operations with the attributes the
//! design documents name; [`TraceLayer`] continues an incoming `traceparent` in a server
//! span for axum or tonic.
//!
//! ```no_run
//! # fn run() -> Result<(), lookout_sdk::trace::Error> {
//! let _guard = lookout_sdk::trace::init(lookout_sdk::trace::TracingOptions {
//!     service_name: "kvstore".into(),
//!     sampling_ratio: 0.01,
//!     ..Default::default()
//! })?; // spans are flushed when the guard drops
//! let span = lookout_sdk::trace::btree(lookout_sdk::sets::BTreeOp::Search, "primary");
//! let _in = span.enter();
//! span.record("db.btree.depth", 3); // integers as i64: a u64 would be recorded as a string
//! tracing::info!("found"); // printed with trace_id=…
//! # Ok(()) }
//! ```
//!
//! The endpoint is `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as given, else
//! `OTEL_EXPORTER_OTLP_ENDPOINT` with `/v1/traces` appended (the OpenTelemetry rules),
//! else `http://localhost:4318/v1/traces`. Sampling is decided when a root span is
//! created ([`RootSampler`]), so a span that is not sampled is never created at all;
//! sampled ones are batched and exported on a thread of their own.

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::{KeyValue, global};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, format::Writer};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::sets::BTreeOp;

/// What goes wrong setting tracing up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The exporter could not be built (a bad endpoint).
    #[error("OTLP exporter: {0}")]
    Exporter(String),
    /// A global `tracing` subscriber is already installed.
    #[error("a tracing subscriber is already installed: {0}")]
    AlreadyInstalled(String),
    /// An option out of range.
    #[error("{0}")]
    Invalid(String),
}

/// How tracing is set up.
#[derive(Debug, Clone)]
pub struct TracingOptions {
    /// `service.name`.
    pub service_name: String,
    /// `service.version` (empty: not set).
    pub service_version: String,
    /// `service.instance.id` (empty: not set).
    pub instance_id: String,
    /// Share of new traces sampled, 0 to 1 (a sampled parent's children always are).
    pub sampling_ratio: f64,
    /// The OTLP/HTTP traces URL; `None`: from the environment (see the module docs).
    pub endpoint: Option<String>,
    /// The `tracing` filter for log lines printed on stderr (`info` by default; `RUST_LOG`
    /// overrides it).
    pub log_filter: String,
    /// Make a recorded span OpenTelemetry's current `Context` while it is entered (off by
    /// default). Only code that reads `opentelemetry::Context::current()` needs it
    /// (another OpenTelemetry instrumentation library in the same process); the SDK's own
    /// helpers and `tracing_opentelemetry::OpenTelemetrySpanExt::context` find the span
    /// without it. It costs about 0.9 µs per sampled span (the span is started on entry
    /// and its context pushed on a thread-local stack), nearly doubling its cost.
    pub context_activation: bool,
}

impl Default for TracingOptions {
    fn default() -> Self {
        Self {
            service_name: "unknown_service".into(),
            service_version: String::new(),
            instance_id: String::new(),
            sampling_ratio: 1.0,
            endpoint: None,
            log_filter: "info".into(),
            context_activation: false,
        }
    }
}

/// The traces URL the options and the environment give.
pub fn endpoint(opts: &TracingOptions) -> String {
    if let Some(e) = &opts.endpoint {
        return e.clone();
    }
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    if let Some(e) = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        return e;
    }
    match env("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Some(base) => format!("{}/v1/traces", base.trim_end_matches('/')),
        None => "http://localhost:4318/v1/traces".into(),
    }
}

/// Keeps the exporter running; dropping it flushes what is batched and stops it.
#[derive(Debug)]
pub struct TracingGuard {
    provider: SdkTracerProvider,
}

impl Drop for TracingGuard {
    fn drop(&mut self) {
        let _ = self.provider.force_flush();
        let _ = self.provider.shutdown();
    }
}

/// Installs the global subscriber, exporter and propagator.
pub fn init(opts: TracingOptions) -> Result<TracingGuard, Error> {
    if !(0.0..=1.0).contains(&opts.sampling_ratio) {
        return Err(Error::Invalid(format!(
            "sampling_ratio {} is not between 0 and 1",
            opts.sampling_ratio
        )));
    }
    // The exporter's HTTP client uses rustls with ring (and no other provider).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint(&opts))
        .build()
        .map_err(|e| Error::Exporter(e.to_string()))?;
    let mut attrs = Vec::new();
    if !opts.service_version.is_empty() {
        attrs.push(KeyValue::new(
            "service.version",
            opts.service_version.clone(),
        ));
    }
    if !opts.instance_id.is_empty() {
        attrs.push(KeyValue::new(
            "service.instance.id",
            opts.instance_id.clone(),
        ));
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        // Roots are sampled by `RootSampler` before they cost anything; what reaches the
        // SDK is recorded, and children follow their parent.
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .with_resource(
            Resource::builder()
                .with_service_name(opts.service_name.clone())
                .with_attributes(attrs)
                .build(),
        )
        .build();
    let tracer = provider.tracer("lookout-sdk");
    global::set_text_map_propagator(TraceContextPropagator::new());
    global::set_tracer_provider(provider.clone());
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&opts.log_filter))
        .map_err(|e| Error::Invalid(format!("log_filter: {e}")))?;
    tracing_subscriber::registry()
        .with(SpanPresence)
        .with(otel_layer(
            tracer,
            opts.sampling_ratio,
            opts.context_activation,
        ))
        .with(
            // Log lines only: spans are the OpenTelemetry layer's (so one that is not
            // sampled is never created at all).
            tracing_subscriber::fmt::layer()
                .event_format(WithTraceId)
                .with_writer(std::io::stderr)
                .with_filter(filter.and(tracing_subscriber::filter::filter_fn(|m| m.is_event()))),
        )
        .try_init()
        .map_err(|e| Error::AlreadyInstalled(e.to_string()))?;
    Ok(TracingGuard { provider })
}

use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::FilterExt as _;

/// The OpenTelemetry layer [`init`] installs, for a subscriber of the caller's own (put
/// [`SpanPresence`] under it): spans reach OpenTelemetry only when [`RootSampler`] records
/// them, with only the attributes they name (no source locations, threads or busy/idle
/// times, and no OpenTelemetry context activation: see
/// [`TracingOptions::context_activation`]), and [`SampledDepth`] counts the recorded spans a
/// thread is in, so latency observations know cheaply whether they have a trace for an
/// exemplar.
pub fn layer<S>(
    tracer: opentelemetry_sdk::trace::Tracer,
    sampling_ratio: f64,
) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    otel_layer(tracer, sampling_ratio, false)
}

fn otel_layer<S>(
    tracer: opentelemetry_sdk::trace::Tracer,
    sampling_ratio: f64,
    context_activation: bool,
) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_context_activation(context_activation)
        .and_then(SampledDepth)
        .with_filter(RootSampler::new(sampling_ratio))
}

/// The target of spans that continue a sampled remote parent ([`TraceLayer`]): always
/// recorded, whatever the ratio.
const REMOTE: &str = "lookout_sdk::trace::remote";

/// Decides which spans reach OpenTelemetry, before it spends anything on them: a span
/// inside a recorded span is recorded and one inside an unrecorded span is not (its
/// trace was not sampled), a root is recorded with the sampling ratio's probability, a
/// span continuing a sampled remote parent always is. Spans still exist for `tracing`
/// (so nesting is known: [`SpanPresence`]), which is all a span not sampled costs.
#[derive(Debug, Clone, Copy)]
pub struct RootSampler {
    /// Roots whose draw is at most this are sampled.
    threshold: u64,
}

impl RootSampler {
    /// Samples this share of new traces (0 to 1).
    pub fn new(ratio: f64) -> Self {
        let threshold = if ratio >= 1.0 {
            u64::MAX
        } else if ratio <= 0.0 {
            0
        } else {
            (ratio * u64::MAX as f64) as u64
        };
        Self { threshold }
    }

    fn draw() -> u64 {
        thread_local! {
            static STATE: std::cell::Cell<u64> = std::cell::Cell::new(
                // A different stream per thread.
                (&STATE as *const _ as u64) ^ 0x9e37_79b9_7f4a_7c15,
            );
        }
        STATE.with(|s| {
            let mut x = s.get();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s.set(x);
            x
        })
    }
}

/// A layer that wants every span and does nothing with it, so `tracing` keeps the span
/// tree (and [`RootSampler`] sees where a span is) while the log layer takes events only.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpanPresence;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SpanPresence {}

impl<S> tracing_subscriber::layer::Filter<S> for RootSampler
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn enabled(
        &self,
        meta: &tracing::Metadata<'_>,
        cx: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        if !meta.is_span() || meta.target() == REMOTE {
            return true;
        }
        if cx.current_span().id().is_some() {
            // Inside a span: recorded when that span is (its trace is sampled).
            return cx.lookup_current().is_some();
        }
        self.threshold > 0 && Self::draw() <= self.threshold
    }

    fn callsite_enabled(
        &self,
        _meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        // Decided span by span.
        tracing::subscriber::Interest::sometimes()
    }
}

/// Log lines as `tracing`'s compact format, with `trace_id=…` and `span_id=…` of the
/// current span when it is sampled, so a log line leads to its trace.
#[derive(Debug, Clone, Copy)]
pub struct WithTraceId;

impl<S, N> FormatEvent<S, N> for WithTraceId
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        tracing_subscriber::fmt::time::FormatTime::format_time(
            &tracing_subscriber::fmt::time::SystemTime,
            &mut w,
        )?;
        write!(w, " {:>5} {}: ", meta.level(), meta.target())?;
        ctx.field_format().format_fields(w.by_ref(), event)?;
        if let Some((trace, span)) = current_ids() {
            write!(w, " trace_id={trace} span_id={span}")?;
        }
        writeln!(w)
    }
}

thread_local! {
    /// Recorded spans entered on this thread and not yet exited ([`SampledDepth`]).
    static SAMPLED: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// A layer behind [`RootSampler`]'s filter (so it sees recorded spans only) that counts
/// the ones entered on each thread: an observation outside any recorded span learns it
/// with one thread-local read instead of asking OpenTelemetry for the span context.
#[derive(Debug, Clone, Copy, Default)]
pub struct SampledDepth;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SampledDepth {
    fn on_enter(&self, _id: &tracing::span::Id, _cx: tracing_subscriber::layer::Context<'_, S>) {
        SAMPLED.with(|c| c.set(c.get().saturating_add(1)));
    }

    fn on_exit(&self, _id: &tracing::span::Id, _cx: tracing_subscriber::layer::Context<'_, S>) {
        SAMPLED.with(|c| c.set(c.get().saturating_sub(1)));
    }
}

/// The exemplar of an observation made now: the recorded span it is made in, if any.
pub(crate) fn exemplar() -> Option<crate::TraceExemplar> {
    if SAMPLED.with(std::cell::Cell::get) == 0 {
        return None;
    }
    current_ids().map(|(trace_id, span_id)| crate::TraceExemplar { trace_id, span_id })
}

/// The current span's trace and span ids (hex), when it is being recorded.
pub fn current_ids() -> Option<(String, String)> {
    let cx = tracing::Span::current().context();
    let sc = cx.span().span_context().clone();
    (sc.is_valid() && sc.is_sampled())
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

/// A span for a B+tree operation (`db.btree.get`, `…put`, `…delete`, `…scan`) with
/// `db.btree.tree`; record `db.btree.depth` and `db.btree.nodes_visited` when known.
pub fn btree(op: BTreeOp, tree: &str) -> tracing::Span {
    // A span named by its call site's static name costs no allocation for the name (an
    // `otel.name` field would be copied into a `String` for every span).
    macro_rules! span {
        ($name:literal) => {
            tracing::info_span!(
                $name,
                db.btree.tree = tree,
                db.btree.depth = tracing::field::Empty,
                db.btree.nodes_visited = tracing::field::Empty,
            )
        };
    }
    match op {
        BTreeOp::Search => span!("db.btree.get"),
        BTreeOp::Insert => span!("db.btree.put"),
        BTreeOp::Delete => span!("db.btree.delete"),
        BTreeOp::Scan => span!("db.btree.scan"),
    }
}

/// A span for one AppendEntries call to `peer`, with the term, the first index and the
/// number of entries; record `raft.success` when it answers.
pub fn raft_append(peer: &str, term: u64, index: u64, entries: usize) -> tracing::Span {
    tracing::info_span!(
        "raft.append_entries",
        otel.kind = "client",
        raft.peer = peer,
        raft.term = int(term),
        raft.index = int(index),
        raft.entries = int(entries as u64),
        raft.success = tracing::field::Empty,
    )
}

/// A span for a page read from the store (a cache miss), with the page number.
pub fn page_read(page: u64) -> tracing::Span {
    tracing::info_span!("storage.page_read", storage.page = int(page))
}

/// An integer attribute's value as OpenTelemetry holds integers (`i64`, saturating):
/// `tracing-opentelemetry` records a `u64` or `u16` field through its `Debug` form, a
/// string allocated for every span, which also reaches the store as a string attribute.
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A tower layer opening a server span per request that continues the caller's W3C
/// `traceparent` (through the global propagator [`init`] sets), named as OpenTelemetry's
/// HTTP conventions say (`GET /route`; `package.Service/Method` for gRPC).
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceLayer;

impl<S> tower::Layer<S> for TraceLayer {
    type Service = TraceService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TraceService { inner }
    }
}

/// The service [`TraceLayer`] wraps around another.
#[derive(Debug, Clone)]
pub struct TraceService<S> {
    inner: S,
}

struct HeaderExtractor<'a>(&'a axum::http::HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

impl<S, B, RB> tower::Service<axum::http::Request<B>> for TraceService<S>
where
    S: tower::Service<axum::http::Request<B>, Response = axum::http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Self::Future {
        let parent =
            global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(req.headers())));
        let (grpc, route) = crate::http::request_kind(&req);
        let route = route.unwrap_or_else(|| req.uri().path().to_string());
        let name = if grpc {
            req.uri().path().trim_start_matches('/').to_string()
        } else {
            format!("{} {route}", req.method())
        };
        let remote = parent.span().span_context().clone();
        // One span shape; a remote sampled parent's continuation has its own target,
        // which `RootSampler` always records.
        macro_rules! request_span {
            ($($target:tt)*) => {
                tracing::info_span!(
                    $($target)*
                    "request",
                    otel.name = name,
                    otel.kind = "server",
                    http.request.method = req.method().as_str(),
                    http.route = route,
                    http.response.status_code = tracing::field::Empty,
                )
            };
        }
        let span = if remote.is_valid() && remote.is_sampled() {
            request_span!(target: REMOTE,)
        } else if remote.is_valid() {
            // The caller decided not to sample this trace.
            tracing::Span::none()
        } else {
            request_span!()
        };
        let _ = span.set_parent(parent);
        let fut = {
            let _in = span.enter();
            self.inner.call(req)
        };
        Box::pin(async move {
            let res = tracing::Instrument::instrument(fut, span.clone()).await;
            if let Ok(r) = &res {
                span.record("http.response.status_code", i64::from(r.status().as_u16()));
            }
            res
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts the spans it is given.
    struct Count(Arc<AtomicUsize>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Count {
        fn on_new_span(
            &self,
            _: &tracing::span::Attributes<'_>,
            _: &tracing::span::Id,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn spans_recorded(ratio: f64, f: impl FnOnce()) -> usize {
        let n = Arc::new(AtomicUsize::new(0));
        let s = tracing_subscriber::registry()
            .with(SpanPresence)
            .with(Count(Arc::clone(&n)).with_filter(RootSampler::new(ratio)));
        tracing::subscriber::with_default(s, f);
        n.load(Ordering::Relaxed)
    }

    #[test]
    fn roots_are_sampled_by_ratio_and_children_follow_their_parent() {
        let tree = || {
            let root = btree(BTreeOp::Search, "primary");
            let _in = root.enter();
            let _child = page_read(7).entered();
        };
        assert_eq!(
            spans_recorded(0.0, tree),
            0,
            "neither the root nor its child"
        );
        assert_eq!(spans_recorded(1.0, tree), 2);
        let half = spans_recorded(0.5, || {
            for _ in 0..10_000 {
                tree();
            }
        });
        // Pairs: a sampled root brings its child.
        assert_eq!(half % 2, 0);
        assert!((9_000..=11_000).contains(&half), "{half} of 20,000");
        // A sampled remote parent is continued whatever the ratio.
        let remote = spans_recorded(0.0, || {
            let _s = tracing::info_span!(target: REMOTE, "request").entered();
        });
        assert_eq!(remote, 1);
    }

    /// Keeps the spans it is given.
    #[derive(Debug, Clone, Default)]
    struct Keep(Arc<std::sync::Mutex<Vec<opentelemetry_sdk::trace::SpanData>>>);

    impl opentelemetry_sdk::trace::SpanExporter for Keep {
        async fn export(
            &self,
            batch: Vec<opentelemetry_sdk::trace::SpanData>,
        ) -> opentelemetry_sdk::error::OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    /// Runs `f` under the layers [`init`] installs (context activation as given) and
    /// returns the spans exported.
    fn exported(activation: bool, f: impl FnOnce()) -> Vec<opentelemetry_sdk::trace::SpanData> {
        let keep = Keep::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(keep.clone())
            .build();
        let s = tracing_subscriber::registry()
            .with(SpanPresence)
            .with(otel_layer(provider.tracer("test"), 1.0, activation));
        tracing::subscriber::with_default(s, f);
        let _ = provider.shutdown();
        std::mem::take(&mut *keep.0.lock().unwrap())
    }

    #[test]
    fn spans_nest_and_name_their_trace_with_or_without_context_activation() {
        for activation in [false, true] {
            let mut ids = None;
            let spans = exported(activation, || {
                let root = btree(BTreeOp::Insert, "primary");
                let _in = root.enter();
                root.record("db.btree.depth", 3i64);
                let child = page_read(7).entered();
                ids = current_ids();
                let otel_current = opentelemetry::Context::current()
                    .span()
                    .span_context()
                    .is_valid();
                assert_eq!(otel_current, activation, "OpenTelemetry's current context");
                drop(child);
            });
            assert_eq!(spans.len(), 2, "{spans:?}");
            let (child, root) = (&spans[0], &spans[1]);
            assert_eq!(child.name, "storage.page_read");
            assert_eq!(root.name, "db.btree.put");
            assert_eq!(child.parent_span_id, root.span_context.span_id());
            assert_eq!(child.span_context.trace_id(), root.span_context.trace_id());
            let (trace, span) = ids.expect("the current span is recorded");
            assert_eq!(trace, root.span_context.trace_id().to_string());
            assert_eq!(span, child.span_context.span_id().to_string());
            let attr = |k: &str| {
                root.attributes
                    .iter()
                    .find(|a| a.key.as_str() == k)
                    .map(|a| a.value.to_string())
            };
            assert_eq!(attr("db.btree.tree").as_deref(), Some("primary"));
            let depth = root
                .attributes
                .iter()
                .find(|a| a.key.as_str() == "db.btree.depth");
            assert_eq!(depth.map(|a| &a.value), Some(&opentelemetry::Value::I64(3)));
            let page = child
                .attributes
                .iter()
                .find(|a| a.key.as_str() == "storage.page");
            assert_eq!(
                page.map(|a| &a.value),
                Some(&opentelemetry::Value::I64(7)),
                "page numbers are integers, not strings"
            );
            assert!(root.end_time >= child.end_time);
        }
    }

    #[test]
    fn the_endpoint_follows_the_opentelemetry_variables() {
        let given = TracingOptions {
            endpoint: Some("http://x:1/v1/traces".into()),
            ..Default::default()
        };
        assert_eq!(endpoint(&given), "http://x:1/v1/traces");
        // The environment is the process's: only the explicit case is checked here; the
        // example's test exercises OTEL_EXPORTER_OTLP_ENDPOINT.
        assert!(
            init(TracingOptions {
                sampling_ratio: 2.0,
                ..Default::default()
            })
            .is_err()
        );
    }
}
