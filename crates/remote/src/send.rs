//! Remote write, sent: every `remote_write` entry gets a durable [`crate::queue`]
//! fed by [`RemoteWrite::wrap`] (an [`Appendable`] around the store: what a commit adds
//! is queued, with external labels and `write_relabel_configs` applied, before the store
//! commits it) and a sender task that reads the queue in rounds and posts them.
//!
//! A round is what the queue holds, up to `max_shards × max_samples_per_send` samples;
//! its samples are spread over shards by series (so each series stays in order), each
//! shard posting batches of at most `max_samples_per_send`. Shards used grow with the
//! backlog (one per `max_samples_per_send` samples waiting, within `min_shards` and
//! `max_shards`) and shrink back as it drains. The queue's position moves past a round
//! only when every batch of it was acknowledged (2xx) or refused for good (4xx other than
//! 429: counted in `…_samples_failed_total`, logged). 5xx, 429 and network errors are
//! retried with doubling backoff from `min_backoff` to `max_backoff` (or the
//! `Retry-After` the receiver names) for as long as the round stays within
//! `max_backlog`: older than that, or the queue past `max_backlog_bytes`, the oldest data
//! is dropped, counted under `reason="backlog"` and logged, never silently.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lookout_model::relabel::RelabelConfig;
use lookout_model::{Exemplar, Labels, MetricType, relabel};
use lookout_storage::{Appendable, Appender, SeriesRef};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::queue::{self, Batch, Position, Reader};
use crate::{HistogramSeries, Series, encode_v2_request_all, encode_write_request_all};

/// Which message a remote is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// `prometheus.WriteRequest` (remote write 1.0).
    #[default]
    V1,
    /// `io.prometheus.write.v2.Request` (remote write 2.0).
    V2,
}

/// `queue_config`, with Prometheus 3's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueOptions {
    /// Samples a shard buffers; the disk queue holds the rest (accepted for
    /// compatibility, it bounds nothing here).
    pub capacity: usize,
    /// Fewest shards.
    pub min_shards: usize,
    /// Most shards.
    pub max_shards: usize,
    /// Largest batch.
    pub max_samples_per_send: usize,
    /// Longest a sample waits for a batch to fill.
    pub batch_send_deadline: Duration,
    /// First retry delay.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Whether 429 is retried (otherwise the batch is dropped).
    pub retry_on_http_429: bool,
    /// Samples older than this when sent are dropped (`reason="too_old"`); zero: never.
    pub sample_age_limit: Duration,
}

impl Default for QueueOptions {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            min_shards: 1,
            max_shards: 50,
            max_samples_per_send: 2_000,
            batch_send_deadline: Duration::from_secs(5),
            min_backoff: Duration::from_millis(30),
            max_backoff: Duration::from_secs(5),
            retry_on_http_429: true,
            sample_age_limit: Duration::ZERO,
        }
    }
}

/// One remote's options.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// Its name (`remote_name` label, queue directory).
    pub name: String,
    /// Where batches are posted.
    pub url: String,
    /// Per request.
    pub timeout: Duration,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// TLS, authentication, proxy.
    pub http: lookout_http::HttpConfig,
    /// `write_relabel_configs`.
    pub relabel: Vec<RelabelConfig>,
    /// `queue_config`.
    pub queue: QueueOptions,
    /// Whether metric metadata is sent (`metadata_config.send`).
    pub send_metadata: bool,
    /// How often metadata is sent with 1.0 (`metadata_config.send_interval`).
    pub metadata_interval: Duration,
    /// `send_exemplars`: exemplars are queued and sent with the samples.
    pub send_exemplars: bool,
    /// `send_native_histograms`: native histograms are queued and sent (both protocols
    /// carry them).
    pub send_native_histograms: bool,
    /// 1.0 or 2.0.
    pub protocol: Protocol,
    /// The oldest unsent data kept; older is dropped and counted.
    pub max_backlog: Duration,
    /// The most bytes the queue keeps unsent; 0: no bound.
    pub max_backlog_bytes: u64,
    /// Behind by more than this, the remote's health check is degraded.
    pub max_lag: Duration,
}

/// A metric family's metadata, sent with remote write.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricMeta {
    /// The family (sample) name.
    pub name: String,
    /// Its type.
    pub kind: MetricType,
    /// Its help text.
    pub help: String,
    /// Its unit, if declared.
    pub unit: String,
}

/// The sender's options.
#[derive(Clone)]
pub struct Options {
    /// Where the queues live (one directory per remote).
    pub dir: PathBuf,
    /// `global.external_labels`, added where a series lacks them, before relabeling.
    pub external_labels: Vec<(String, String)>,
    /// The remotes.
    pub remotes: Vec<RemoteOptions>,
    /// How often queue files are fsynced (the tsdb's WAL interval).
    pub sync_every: Duration,
    /// Queue segment size.
    pub segment_bytes: u64,
    /// Metric metadata known to Lookout.
    pub metadata: Arc<dyn Fn() -> Vec<MetricMeta> + Send + Sync>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("dir", &self.dir)
            .field("remotes", &self.remotes)
            .finish_non_exhaustive()
    }
}

/// Why the sender cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// A queue directory that cannot be opened.
    #[error("remote_write {name}: queue {}: {source}", dir.display())]
    Queue {
        /// The remote.
        name: String,
        /// Its directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A client that cannot be built.
    #[error("remote_write {name}: {source}")]
    Http {
        /// The remote.
        name: String,
        /// Why.
        #[source]
        source: lookout_http::Error,
    },
}

type RemoteLabels = Vec<(String, String)>;

/// The sender's metrics, under Prometheus's names.
#[derive(Clone, Default)]
struct Families {
    samples: Family<RemoteLabels, Counter>,
    failed: Family<RemoteLabels, Counter>,
    retried: Family<RemoteLabels, Counter>,
    dropped: Family<RemoteLabels, Counter>,
    pending: Family<RemoteLabels, Gauge>,
    sent_ts: Family<RemoteLabels, Gauge<f64, AtomicU64>>,
    shards: Family<RemoteLabels, Gauge>,
    shards_desired: Family<RemoteLabels, Gauge>,
    shards_max: Family<RemoteLabels, Gauge>,
    shards_min: Family<RemoteLabels, Gauge>,
    bytes: Family<RemoteLabels, Counter>,
    metadata: Family<RemoteLabels, Counter>,
    exemplars: Family<RemoteLabels, Counter>,
    histograms: Family<RemoteLabels, Counter>,
    backlog_bytes: Family<RemoteLabels, Gauge>,
    lag: Family<RemoteLabels, Gauge<f64, AtomicU64>>,
    highest: Gauge<f64, AtomicU64>,
    samples_in: Counter,
}

impl Families {
    fn register(reg: &mut Registry) -> Self {
        let f = Self::default();
        let p = reg.sub_registry_with_prefix("prometheus_remote_storage");
        p.register(
            "samples",
            "Samples sent to remote storage and acknowledged",
            f.samples.clone(),
        );
        p.register(
            "samples_failed",
            "Samples refused by remote storage for good (4xx other than 429)",
            f.failed.clone(),
        );
        p.register(
            "samples_retried",
            "Samples sent again after a recoverable error (5xx, 429, network)",
            f.retried.clone(),
        );
        p.register("samples_dropped", "Samples dropped before sending, by reason: relabel, too_old (sample_age_limit), backlog (max_backlog), damaged (queue file)", f.dropped.clone());
        p.register(
            "samples_pending",
            "Samples queued and not yet acknowledged",
            f.pending.clone(),
        );
        p.register(
            "queue_highest_sent_timestamp_seconds",
            "Newest timestamp acknowledged by the remote",
            f.sent_ts.clone(),
        );
        p.register(
            "shards",
            "Shards sending the current round",
            f.shards.clone(),
        );
        p.register(
            "shards_desired",
            "Shards the backlog asks for",
            f.shards_desired.clone(),
        );
        p.register("shards_max", "Most shards", f.shards_max.clone());
        p.register("shards_min", "Fewest shards", f.shards_min.clone());
        p.register(
            "bytes",
            "Compressed bytes of samples acknowledged",
            f.bytes.clone(),
        );
        p.register("metadata", "Metadata entries sent", f.metadata.clone());
        p.register(
            "exemplars",
            "Exemplars sent to remote storage and acknowledged",
            f.exemplars.clone(),
        );
        p.register(
            "histograms",
            "Native histograms sent to remote storage and acknowledged",
            f.histograms.clone(),
        );
        p.register(
            "highest_timestamp_in_seconds",
            "Newest timestamp queued for remote storage",
            f.highest.clone(),
        );
        p.register(
            "samples_in",
            "Samples queued for remote storage",
            f.samples_in.clone(),
        );
        let l = reg.sub_registry_with_prefix("lookout_remote_write");
        l.register(
            "backlog_bytes",
            "Bytes of the disk queue not yet acknowledged",
            f.backlog_bytes.clone(),
        );
        l.register(
            "lag_seconds",
            "Age of the oldest unacknowledged data (0 when caught up)",
            f.lag.clone(),
        );
        f
    }
}

/// One remote's handles on its metrics.
#[derive(Clone)]
struct Metrics {
    samples: Counter,
    failed: Counter,
    retried: Counter,
    dropped: Family<RemoteLabels, Counter>,
    labels: RemoteLabels,
    pending: Gauge,
    sent_ts: Gauge<f64, AtomicU64>,
    shards: Gauge,
    shards_desired: Gauge,
    bytes: Counter,
    metadata: Counter,
    exemplars: Counter,
    histograms: Counter,
    backlog_bytes: Gauge,
    lag: Gauge<f64, AtomicU64>,
}

impl Metrics {
    fn new(f: &Families, o: &RemoteOptions) -> Self {
        let labels: RemoteLabels = vec![
            ("remote_name".into(), o.name.clone()),
            ("url".into(), o.url.clone()),
        ];
        f.shards_max
            .get_or_create(&labels)
            .set(o.queue.max_shards as i64);
        f.shards_min
            .get_or_create(&labels)
            .set(o.queue.min_shards as i64);
        Self {
            samples: f.samples.get_or_create(&labels).clone(),
            failed: f.failed.get_or_create(&labels).clone(),
            retried: f.retried.get_or_create(&labels).clone(),
            dropped: f.dropped.clone(),
            pending: f.pending.get_or_create(&labels).clone(),
            sent_ts: f.sent_ts.get_or_create(&labels).clone(),
            shards: f.shards.get_or_create(&labels).clone(),
            shards_desired: f.shards_desired.get_or_create(&labels).clone(),
            bytes: f.bytes.get_or_create(&labels).clone(),
            metadata: f.metadata.get_or_create(&labels).clone(),
            exemplars: f.exemplars.get_or_create(&labels).clone(),
            histograms: f.histograms.get_or_create(&labels).clone(),
            backlog_bytes: f.backlog_bytes.get_or_create(&labels).clone(),
            lag: f.lag.get_or_create(&labels).clone(),
            labels,
        }
    }

    fn drop_samples(&self, reason: &str, n: u64) {
        if n == 0 {
            return;
        }
        let mut l = self.labels.clone();
        l.push(("reason".into(), reason.into()));
        self.dropped.get_or_create(&l).inc_by(n);
    }
}

/// A remote's state as its health check reads it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RemoteStatus {
    /// The remote's name.
    pub name: String,
    /// Its URL.
    pub url: String,
    /// Age of the oldest unacknowledged data.
    pub lag: Duration,
    /// Behind by more than this, the remote is degraded.
    pub max_lag: Duration,
    /// Samples queued, not acknowledged.
    pub pending: u64,
    /// Bytes of queue not acknowledged.
    pub backlog_bytes: u64,
    /// The last error, if the last attempt failed.
    pub last_error: Option<String>,
}

struct Remote {
    opts: RemoteOptions,
    dir: PathBuf,
    external: Vec<(String, String)>,
    writer: Mutex<WriterState>,
    shared: Arc<queue::Shared>,
    reader: Mutex<Option<Reader>>,
    client: reqwest::Client,
    metrics: Metrics,
    status: Mutex<RemoteStatus>,
    /// 2.0 refused with 415: fall back to 1.0.
    downgraded: AtomicBool,
    /// Samples consumed (acknowledged or dropped) and the backlog found at open.
    consumed: AtomicU64,
    initial: u64,
    oldest_unsent_ms: AtomicI64,
    sync_every: Duration,
    metadata: Arc<dyn Fn() -> Vec<MetricMeta> + Send + Sync>,
    /// The metadata by family name, made at the first 2.0 batch (not per batch).
    metadata_index: std::sync::OnceLock<HashMap<String, MetricMeta>>,
    no_metadata: HashMap<String, MetricMeta>,
}

struct WriterState {
    w: queue::Writer,
    /// Input labels → labels as sent (`None`: dropped by relabeling).
    out: HashMap<Labels, Option<Labels>>,
    /// The created timestamp last queued per series (as sent).
    created: HashMap<Labels, i64>,
}

/// The senders: wrap the store with [`RemoteWrite::wrap`], start them with
/// [`RemoteWrite::spawn`].
pub struct RemoteWrite {
    remotes: Vec<Arc<Remote>>,
    families: Families,
    /// Whether any remote sends exemplars (else they are not collected at all).
    send_exemplars: bool,
    /// Whether any remote sends 2.0, which carries created timestamps.
    send_created: bool,
    /// Whether any remote sends native histograms (else they are not collected).
    send_histograms: bool,
}

impl std::fmt::Debug for RemoteWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.remotes.iter().map(|r| r.opts.name.as_str()).collect();
        f.debug_struct("RemoteWrite")
            .field("remotes", &names)
            .finish()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl RemoteWrite {
    /// Opens every remote's queue (resuming where it stopped) and client, registering
    /// the metrics; nothing is sent until [`RemoteWrite::spawn`].
    pub fn new(opts: Options, registry: &mut Registry) -> Result<Self, SendError> {
        let families = Families::register(registry);
        let mut remotes = Vec::new();
        for r in &opts.remotes {
            let dir = opts.dir.join(&r.name);
            let qerr = |source| SendError::Queue {
                name: r.name.clone(),
                dir: dir.clone(),
                source,
            };
            let (w, shared) = queue::open(&dir, opts.segment_bytes).map_err(qerr)?;
            let reader = Reader::open(&dir, Arc::clone(&shared)).map_err(qerr)?;
            let initial = reader.count_pending().map_err(qerr)?;
            if initial > 0 {
                tracing::info!(remote = %r.name, samples = initial, "Remote write resumes with a backlog from before the restart");
            }
            let client = lookout_http::client(&r.http).map_err(|source| SendError::Http {
                name: r.name.clone(),
                source,
            })?;
            let metrics = Metrics::new(&families, r);
            metrics.pending.set(initial as i64);
            remotes.push(Arc::new(Remote {
                status: Mutex::new(RemoteStatus {
                    name: r.name.clone(),
                    url: r.url.clone(),
                    max_lag: r.max_lag,
                    pending: initial,
                    ..Default::default()
                }),
                opts: r.clone(),
                dir,
                external: opts.external_labels.clone(),
                writer: Mutex::new(WriterState {
                    w,
                    out: HashMap::new(),
                    created: HashMap::new(),
                }),
                shared,
                reader: Mutex::new(Some(reader)),
                client,
                metrics,
                downgraded: AtomicBool::new(false),
                consumed: AtomicU64::new(0),
                initial,
                oldest_unsent_ms: AtomicI64::new(0),
                sync_every: opts.sync_every,
                metadata: Arc::clone(&opts.metadata),
                metadata_index: std::sync::OnceLock::new(),
                no_metadata: HashMap::new(),
            }));
        }
        let send_exemplars = opts.remotes.iter().any(|r| r.send_exemplars);
        let send_created = opts.remotes.iter().any(|r| r.protocol == Protocol::V2);
        let send_histograms = opts.remotes.iter().any(|r| r.send_native_histograms);
        Ok(Self {
            remotes,
            families,
            send_exemplars,
            send_created,
            send_histograms,
        })
    }

    /// `inner` with every commit also queued for each remote.
    pub fn wrap(self: &Arc<Self>, inner: Arc<dyn Appendable>) -> Arc<dyn Appendable> {
        if self.remotes.is_empty() {
            return inner;
        }
        Arc::new(Fanout {
            inner,
            rw: Arc::clone(self),
        })
    }

    /// Starts one sender per remote; they stop when `stop` turns true, finishing the
    /// request in flight.
    pub fn spawn(&self, stop: watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
        self.remotes
            .iter()
            .map(|r| {
                let reader = r.reader.lock().expect("reader lock").take();
                let r = Arc::clone(r);
                let stop = stop.clone();
                tokio::spawn(async move {
                    if let Some(reader) = reader {
                        run(r, reader, stop).await;
                    }
                })
            })
            .collect()
    }

    /// Every remote's state.
    pub fn statuses(&self) -> Vec<RemoteStatus> {
        self.remotes
            .iter()
            .map(|r| {
                let mut s = r.status.lock().expect("status lock").clone();
                let oldest = r.oldest_unsent_ms.load(Ordering::Relaxed);
                s.lag = if oldest > 0 {
                    Duration::from_millis((now_ms() - oldest).max(0) as u64)
                } else {
                    Duration::ZERO
                };
                s
            })
            .collect()
    }

    /// Flushes every queue to disk (at shutdown).
    pub fn sync(&self) {
        for r in &self.remotes {
            if let Err(e) = r.writer.lock().expect("writer lock").w.sync() {
                tracing::warn!(remote = %r.opts.name, error = %e, "Remote-write queue sync failed");
            }
        }
    }

    fn enqueue(&self, batch: &[(Labels, i64, f64)], extra: &queue::Extra) {
        let now = now_ms();
        self.families
            .samples_in
            .inc_by((batch.len() + extra.histograms.len()) as u64);
        if let Some(max) = batch.iter().map(|s| s.1).max() {
            let secs = max as f64 / 1000.0;
            if secs > self.families.highest.get() {
                self.families.highest.set(secs);
            }
        }
        for r in &self.remotes {
            let ex = if r.opts.send_exemplars {
                &extra.exemplars[..]
            } else {
                &[]
            };
            let ct = if r.opts.protocol == Protocol::V2 {
                &extra.created[..]
            } else {
                &[]
            };
            let hs = if r.opts.send_native_histograms {
                &extra.histograms[..]
            } else {
                &[]
            };
            r.enqueue(now, batch, ex, ct, hs);
        }
    }
}

impl Remote {
    fn relabel(&self, l: &Labels) -> Option<Labels> {
        let mut l = l.clone();
        for (k, v) in &self.external {
            if l.get(k).is_none() {
                l = l.with(k, v);
            }
        }
        relabel::process(&l, &self.opts.relabel)
    }

    fn enqueue(
        &self,
        now: i64,
        batch: &[(Labels, i64, f64)],
        exemplars: &[(Labels, Exemplar)],
        created: &[(Labels, i64)],
        histograms: &[(Labels, i64, lookout_model::FloatHistogram)],
    ) {
        let mut guard = self.writer.lock().expect("writer lock");
        let st = &mut *guard;
        if st.out.len() > 2_000_000 {
            st.out.clear();
            st.created.clear();
        }
        let out_map = &mut st.out;
        let mut mapped = |l: &Labels| match out_map.get(l) {
            Some(m) => m.clone(),
            None => {
                let m = self.relabel(l);
                out_map.insert(l.clone(), m.clone());
                m
            }
        };
        let mut out = Vec::with_capacity(batch.len());
        let mut dropped = 0u64;
        for (l, t, v) in batch {
            match mapped(l) {
                Some(m) => out.push((m, *t, *v)),
                None => dropped += 1,
            }
        }
        let mut hs = Vec::with_capacity(histograms.len());
        for (l, t, h) in histograms {
            match mapped(l) {
                Some(m) => hs.push((m, *t, h.clone())),
                None => dropped += 1,
            }
        }
        // An exemplar goes where its series goes (relabeling may drop both).
        let mut extra = queue::Extra {
            exemplars: exemplars
                .iter()
                .filter_map(|(l, e)| Some((mapped(l)?, e.clone())))
                .collect(),
            created: Vec::new(),
            histograms: hs,
        };
        // Created timestamps are queued when they change (a counter reset), not with
        // every sample.
        for (l, ct) in created {
            if let Some(m) = mapped(l)
                && st.created.get(&m) != Some(ct)
            {
                st.created.insert(m.clone(), *ct);
                extra.created.push((m, *ct));
            }
        }
        self.metrics.drop_samples("relabel", dropped);
        if let Err(e) = st.w.append(now, &out, &extra, self.sync_every) {
            drop(guard);
            let n = out.len() + extra.histograms.len();
            tracing::error!(remote = %self.opts.name, error = %e, samples = n, "Remote-write queue write failed; these samples will not be sent");
            self.metrics.drop_samples("queue_write", n as u64);
        }
    }

    fn metadata_by_name(&self) -> &HashMap<String, MetricMeta> {
        self.metadata_index.get_or_init(|| {
            (self.metadata)()
                .into_iter()
                .map(|m| (m.name.clone(), m))
                .collect()
        })
    }

    fn pending(&self, reader: &Reader) -> u64 {
        (self.initial + reader.appended()).saturating_sub(self.consumed.load(Ordering::Relaxed))
    }

    fn consume(&self, n: u64) {
        self.consumed.fetch_add(n, Ordering::Relaxed);
    }

    fn set_error(&self, e: Option<String>) {
        self.status.lock().expect("status lock").last_error = e;
    }
}

struct Fanout {
    inner: Arc<dyn Appendable>,
    rw: Arc<RemoteWrite>,
}

impl Appendable for Fanout {
    fn appender(&self) -> Box<dyn Appender + '_> {
        Box::new(FanoutAppender {
            inner: self.inner.appender(),
            rw: &self.rw,
            buf: Vec::new(),
            extra: queue::Extra::default(),
        })
    }
}

struct FanoutAppender<'a> {
    inner: Box<dyn Appender + 'a>,
    rw: &'a RemoteWrite,
    buf: Vec<(Labels, i64, f64)>,
    /// Exemplars the store took (for remotes with `send_exemplars`), created
    /// timestamps (for remotes sending 2.0) and native histograms (for remotes with
    /// `send_native_histograms`).
    extra: queue::Extra,
}

impl Appender for FanoutAppender<'_> {
    fn append(&mut self, labels: &Labels, t: i64, v: f64) -> lookout_storage::Result<SeriesRef> {
        let r = self.inner.append(labels, t, v)?;
        self.buf.push((labels.clone(), t, v));
        Ok(r)
    }

    fn append_histogram(
        &mut self,
        labels: &Labels,
        t: i64,
        h: &lookout_model::FloatHistogram,
    ) -> lookout_storage::Result<SeriesRef> {
        let r = self.inner.append_histogram(labels, t, h)?;
        if self.rw.send_histograms {
            self.extra.histograms.push((labels.clone(), t, h.clone()));
        }
        Ok(r)
    }

    fn append_exemplar(&mut self, labels: &Labels, e: &Exemplar) -> lookout_storage::Result<()> {
        self.inner.append_exemplar(labels, e)?;
        if self.rw.send_exemplars {
            self.extra.exemplars.push((labels.clone(), e.clone()));
        }
        Ok(())
    }

    fn append_created(&mut self, labels: &Labels, created_ms: i64) -> lookout_storage::Result<()> {
        self.inner.append_created(labels, created_ms)?;
        if self.rw.send_created {
            self.extra.created.push((labels.clone(), created_ms));
        }
        Ok(())
    }

    fn commit(self: Box<Self>) -> lookout_storage::Result<()> {
        // Queued first: a crash between the two leaves the remote with samples the
        // store never acknowledged, never the other way round.
        let e = &self.extra;
        if !self.buf.is_empty()
            || !e.exemplars.is_empty()
            || !e.created.is_empty()
            || !e.histograms.is_empty()
        {
            self.rw.enqueue(&self.buf, e);
        }
        self.inner.commit()
    }

    fn rollback(self: Box<Self>) {
        self.inner.rollback();
    }
}

/// What became of a batch.
enum Outcome {
    Sent,
    Refused,
    Abandoned,
    Stopped,
}

fn shard_of(l: &Labels, n: usize) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    l.hash(&mut h);
    (h.finish() % n as u64) as usize
}

/// The sender loop of one remote.
async fn run(r: Arc<Remote>, mut reader: Reader, mut stop: watch::Receiver<bool>) {
    let q = r.opts.queue.clone();
    let per_send = q.max_samples_per_send.max(1);
    let round_max = per_send * q.max_shards.max(1);
    let mut round: Vec<Batch> = Vec::new();
    // The newest created timestamp read per series, sent with 2.0.
    let mut created: HashMap<Labels, i64> = HashMap::new();
    let mut round_samples = 0usize;
    let mut committed = reader.position();
    let mut last_metadata: Option<Instant> = None;
    let mut damage_counted = 0u64;
    loop {
        if *stop.borrow() {
            return;
        }
        // Read what the queue holds, dropping what is past max_backlog.
        let now = now_ms();
        let backlog_ms = r.opts.max_backlog.as_millis() as i64;
        while round_samples < round_max {
            match reader.next_batch() {
                Ok(Some(b)) => {
                    if backlog_ms > 0 && now - b.appended_ms > backlog_ms && round.is_empty() {
                        r.metrics.drop_samples("backlog", b.len() as u64);
                        r.consume(b.len() as u64);
                        warn_backlog(&r, b.len() as u64, "older than max_backlog");
                        committed = b.next;
                        continue;
                    }
                    round_samples += b.len();
                    if created.len() > 2_000_000 {
                        created.clear();
                    }
                    created.extend(b.created.iter().cloned());
                    round.push(b);
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(remote = %r.opts.name, error = %e, "Reading the remote-write queue failed");
                    r.set_error(Some(format!("reading the queue: {e}")));
                    break;
                }
            }
        }
        if reader.damage.samples > damage_counted {
            let n = reader.damage.samples - damage_counted;
            r.metrics.drop_samples("damaged", n);
            r.consume(n);
            damage_counted = reader.damage.samples;
        }
        update_gauges(&r, &reader, round.first().map(|b| b.appended_ms));
        if r.opts.send_metadata
            && last_metadata.is_none_or(|t| t.elapsed() >= r.opts.metadata_interval)
            && protocol(&r) == Protocol::V1
        {
            last_metadata = Some(Instant::now());
            send_metadata(&r).await;
        }
        if round.is_empty() {
            let at = reader.position();
            if committed != at {
                commit(&r, &mut reader, at);
                committed = at;
            }
            wait(&r, &mut stop, Duration::from_secs(1)).await;
            continue;
        }
        let age = Duration::from_millis((now_ms() - round[0].appended_ms).max(0) as u64);
        if round_samples < per_send && age < q.batch_send_deadline {
            wait(&r, &mut stop, q.batch_send_deadline - age).await;
            continue;
        }
        let outcome = send_round(&r, &round, round_samples, &created, &mut stop).await;
        if matches!(outcome, Outcome::Stopped) {
            return;
        }
        let end = round.last().expect("non-empty").next;
        r.consume(round_samples as u64);
        round.clear();
        round_samples = 0;
        commit(&r, &mut reader, end);
        committed = end;
        enforce_bytes(&r, &mut reader, &mut committed);
        update_gauges(&r, &reader, None);
    }
}

fn warn_backlog(r: &Remote, n: u64, why: &str) {
    tracing::warn!(remote = %r.opts.name, samples = n, "Remote write dropped queued samples: {why}");
}

fn commit(r: &Remote, reader: &mut Reader, pos: Position) {
    if let Err(e) = reader.commit(pos, r.sync_every) {
        tracing::error!(remote = %r.opts.name, error = %e, "Saving the remote-write queue position failed");
    }
}

/// Drops whole segments, oldest first, while the queue is past `max_backlog_bytes`.
fn enforce_bytes(r: &Remote, reader: &mut Reader, committed: &mut Position) {
    let max = r.opts.max_backlog_bytes;
    if max == 0 {
        return;
    }
    while reader.backlog_bytes() > max && !reader.in_newest_segment() {
        match reader.drop_segment() {
            Ok(n) => {
                r.metrics.drop_samples("backlog", n);
                r.consume(n);
                warn_backlog(r, n, "queue past max_backlog_bytes");
                *committed = reader.position();
                commit(r, reader, *committed);
            }
            Err(e) => {
                tracing::error!(remote = %r.opts.name, error = %e, "Dropping a remote-write queue segment failed");
                return;
            }
        }
    }
}

fn update_gauges(r: &Remote, reader: &Reader, oldest: Option<i64>) {
    let pending = r.pending(reader);
    r.metrics.pending.set(pending as i64);
    let bytes = reader.backlog_bytes();
    r.metrics.backlog_bytes.set(bytes as i64);
    r.oldest_unsent_ms
        .store(oldest.unwrap_or(0), Ordering::Relaxed);
    let lag = oldest.map_or(0.0, |o| ((now_ms() - o).max(0)) as f64 / 1000.0);
    r.metrics.lag.set(lag);
    let mut st = r.status.lock().expect("status lock");
    st.pending = pending;
    st.backlog_bytes = bytes;
}

async fn wait(r: &Remote, stop: &mut watch::Receiver<bool>, d: Duration) {
    tokio::select! {
        _ = r.shared.notify.notified() => {}
        _ = tokio::time::sleep(d) => {}
        _ = stop.changed() => {}
    }
}

fn protocol(r: &Remote) -> Protocol {
    if r.downgraded.load(Ordering::Relaxed) {
        Protocol::V1
    } else {
        r.opts.protocol
    }
}

/// A round's shards: each series' index in the shard, and the series.
/// One shard's float series and native-histogram series, each found by its labels.
#[derive(Default)]
struct Shard {
    index: HashMap<Labels, usize>,
    series: Vec<Series>,
    hindex: HashMap<Labels, usize>,
    histograms: Vec<HistogramSeries>,
}

/// The series of `l` in its shard, made on first use.
fn series_in<'a>(
    shards: &'a mut [Shard],
    l: &Labels,
    created: &HashMap<Labels, i64>,
) -> &'a mut Series {
    let Shard { index, series, .. } = &mut shards[shard_of(l, shards.len())];
    let i = *index.entry(l.clone()).or_insert_with(|| {
        series.push(Series {
            labels: l.clone(),
            samples: Vec::new(),
            exemplars: Vec::new(),
            created: created.get(l).copied().unwrap_or(0),
        });
        series.len() - 1
    });
    &mut series[i]
}

/// Sends a round over its shards and waits for every batch.
async fn send_round(
    r: &Arc<Remote>,
    round: &[Batch],
    samples: usize,
    created: &HashMap<Labels, i64>,
    stop: &mut watch::Receiver<bool>,
) -> Outcome {
    let q = &r.opts.queue;
    let per_send = q.max_samples_per_send.max(1);
    let desired = samples
        .div_ceil(per_send)
        .clamp(q.min_shards.max(1), q.max_shards.max(1));
    r.metrics.shards_desired.set(desired as i64);
    r.metrics.shards.set(desired as i64);
    let oldest = round[0].appended_ms;
    let now = now_ms();
    let age_limit = q.sample_age_limit.as_millis() as i64;
    let mut shards: Vec<Shard> = (0..desired).map(|_| Default::default()).collect();
    let mut too_old = 0u64;
    for b in round {
        for (l, t, v) in &b.samples {
            if age_limit > 0 && now - t > age_limit {
                too_old += 1;
                continue;
            }
            series_in(&mut shards, l, created).samples.push((*t, *v));
        }
        for (l, e) in &b.exemplars {
            if age_limit > 0 && now - e.t > age_limit {
                continue;
            }
            series_in(&mut shards, l, created).exemplars.push(e.clone());
        }
        for (l, t, h) in &b.histograms {
            if age_limit > 0 && now - t > age_limit {
                too_old += 1;
                continue;
            }
            let n = shards.len();
            let Shard {
                hindex, histograms, ..
            } = &mut shards[shard_of(l, n)];
            let i = *hindex.entry(l.clone()).or_insert_with(|| {
                histograms.push(HistogramSeries {
                    labels: l.clone(),
                    samples: Vec::new(),
                });
                histograms.len() - 1
            });
            histograms[i].samples.push((*t, h.clone()));
        }
    }
    r.metrics.drop_samples("too_old", too_old);
    let abandon = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for s in shards {
        if s.series.is_empty() && s.histograms.is_empty() {
            continue;
        }
        let r = Arc::clone(r);
        let abandon = Arc::clone(&abandon);
        let stop = stop.clone();
        tasks.spawn(
            async move { send_shard(&r, s.series, s.histograms, oldest, &abandon, stop).await },
        );
    }
    let mut outcome = Outcome::Sent;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            done = tasks.join_next() => match done {
                None => break,
                Some(Ok(Outcome::Stopped)) => outcome = Outcome::Stopped,
                Some(Ok(Outcome::Abandoned)) if !matches!(outcome, Outcome::Stopped) => outcome = Outcome::Abandoned,
                Some(Ok(_)) => {}
                Some(Err(e)) => tracing::error!(remote = %r.opts.name, error = %e, "A remote-write shard failed"),
            },
            _ = tick.tick() => {
                // While a receiver is down the queue grows: keep it within its bounds.
                let max = r.opts.max_backlog_bytes;
                let bytes = queue::disk_bytes(&r.dir);
                if max > 0 && bytes > max {
                    abandon.store(true, Ordering::Relaxed);
                }
                r.oldest_unsent_ms.store(oldest, Ordering::Relaxed);
                r.metrics.lag.set(((now_ms() - oldest).max(0)) as f64 / 1000.0);
            }
        }
    }
    if matches!(outcome, Outcome::Abandoned) {
        let n = samples as u64;
        r.metrics.drop_samples("backlog", n);
        warn_backlog(r, n, "the receiver stayed unreachable past max_backlog");
    }
    outcome
}

/// Sends one shard's series in batches of at most `max_samples_per_send`, in order.
async fn send_shard(
    r: &Remote,
    series: Vec<Series>,
    histograms: Vec<HistogramSeries>,
    oldest_ms: i64,
    abandon: &AtomicBool,
    mut stop: watch::Receiver<bool>,
) -> Outcome {
    let per_send = r.opts.queue.max_samples_per_send.max(1);
    let mut result = Outcome::Sent;
    let batches = in_batches(
        series,
        per_send,
        |s| s.samples.len(),
        |s, k| {
            let rest = s.samples.split_off(k);
            Series {
                labels: s.labels.clone(),
                samples: std::mem::replace(&mut s.samples, rest),
                // A series' exemplars go with its first part (alone when it has no
                // samples).
                exemplars: std::mem::take(&mut s.exemplars),
                created: s.created,
            }
        },
    );
    // Native histograms follow in batches of their own, as many per batch.
    let hbatches = in_batches(
        histograms,
        per_send,
        |s| s.samples.len(),
        |s, k| {
            let rest = s.samples.split_off(k);
            HistogramSeries {
                labels: s.labels.clone(),
                samples: std::mem::replace(&mut s.samples, rest),
            }
        },
    );
    let work = batches
        .into_iter()
        .map(|(b, n)| (b, Vec::new(), n))
        .chain(hbatches.into_iter().map(|(h, n)| (Vec::new(), h, n)));
    for (b, h, n) in work {
        match send_batch(r, &b, &h, n, oldest_ms, abandon, &mut stop).await {
            Outcome::Sent => {}
            Outcome::Refused => result = Outcome::Refused,
            other => return other,
        }
    }
    result
}

/// Series in batches of at most `per_send` points, in order: `take(s, k)` splits off a
/// series' first `k` points as a part of its own (a series is cut where a batch fills;
/// one without points still gives a part). Each batch comes with its number of points.
fn in_batches<S>(
    series: Vec<S>,
    per_send: usize,
    len: impl Fn(&S) -> usize,
    take: impl Fn(&mut S, usize) -> S,
) -> Vec<(Vec<S>, usize)> {
    let mut batches = Vec::new();
    let (mut batch, mut n) = (Vec::new(), 0);
    for mut s in series {
        loop {
            let k = (per_send - n).min(len(&s));
            batch.push(take(&mut s, k));
            n += k;
            if n == per_send {
                batches.push((std::mem::take(&mut batch), n));
                n = 0;
            }
            if len(&s) == 0 {
                break;
            }
        }
    }
    if !batch.is_empty() {
        batches.push((batch, n));
    }
    batches
}

/// Posts one batch until it is acknowledged, refused for good, abandoned or stopped.
#[allow(clippy::too_many_arguments)]
async fn send_batch(
    r: &Remote,
    batch: &[Series],
    histograms: &[HistogramSeries],
    n: usize,
    oldest_ms: i64,
    abandon: &AtomicBool,
    stop: &mut watch::Receiver<bool>,
) -> Outcome {
    let q = &r.opts.queue;
    let mut backoff = q.min_backoff.max(Duration::from_millis(1));
    let backlog_ms = r.opts.max_backlog.as_millis() as i64;
    loop {
        let proto = protocol(r);
        let meta = if r.opts.send_metadata && proto == Protocol::V2 {
            r.metadata_by_name()
        } else {
            &r.no_metadata
        };
        let body = match proto {
            Protocol::V1 => encode_write_request_all(batch, histograms, &[]),
            Protocol::V2 => encode_v2_request_all(batch, histograms, meta),
        };
        let len = body.len();
        match post(r, body, proto).await {
            Ok(()) => {
                let hs: usize = histograms.iter().map(|s| s.samples.len()).sum();
                r.metrics.samples.inc_by((n - hs) as u64);
                r.metrics.histograms.inc_by(hs as u64);
                r.metrics
                    .exemplars
                    .inc_by(batch.iter().map(|s| s.exemplars.len() as u64).sum());
                r.metrics.bytes.inc_by(len as u64);
                let newest = batch
                    .iter()
                    .filter_map(|s| s.samples.last().map(|x| x.0))
                    .chain(
                        histograms
                            .iter()
                            .filter_map(|s| s.samples.last().map(|x| x.0)),
                    )
                    .max()
                    .unwrap_or(0) as f64
                    / 1000.0;
                if newest > r.metrics.sent_ts.get() {
                    r.metrics.sent_ts.set(newest);
                }
                r.set_error(None);
                return Outcome::Sent;
            }
            Err(Failure::Downgrade) => {
                if !r.downgraded.swap(true, Ordering::Relaxed) {
                    tracing::warn!(remote = %r.opts.name, "The receiver refused remote write 2.0 (415); sending 1.0");
                }
                continue;
            }
            Err(Failure::Refused(msg)) => {
                tracing::error!(remote = %r.opts.name, samples = n, error = %msg, "Remote write refused a batch for good; dropped");
                r.metrics.failed.inc_by(n as u64);
                r.set_error(Some(msg));
                return Outcome::Refused;
            }
            Err(Failure::Retry(msg, after)) => {
                r.metrics.retried.inc_by(n as u64);
                tracing::debug!(remote = %r.opts.name, error = %msg, "Remote write will retry");
                r.set_error(Some(msg));
                let delay = after.unwrap_or(backoff).min(q.max_backoff.max(backoff));
                backoff = (backoff * 2).min(q.max_backoff.max(Duration::from_millis(1)));
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => {}
                }
                if *stop.borrow() {
                    return Outcome::Stopped;
                }
                if abandon.load(Ordering::Relaxed)
                    || (backlog_ms > 0 && now_ms() - oldest_ms > backlog_ms)
                {
                    abandon.store(true, Ordering::Relaxed);
                    return Outcome::Abandoned;
                }
            }
        }
    }
}

enum Failure {
    Retry(String, Option<Duration>),
    Refused(String),
    Downgrade,
}

const RESERVED_HEADERS: &[&str] = &[
    "host",
    "authorization",
    "content-encoding",
    "content-length",
    "content-type",
    "user-agent",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "www-authenticate",
    "retry-after",
    "x-prometheus-remote-write-version",
];

/// The headers Prometheus refuses in `headers:` (set by the protocol itself).
pub fn reserved_header(name: &str) -> bool {
    RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str())
}

async fn post(r: &Remote, body: Vec<u8>, proto: Protocol) -> Result<(), Failure> {
    let (ctype, version) = match proto {
        Protocol::V1 => ("application/x-protobuf", "0.1.0"),
        Protocol::V2 => (
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
            "2.0.0",
        ),
    };
    let mut req = r
        .client
        .post(&r.opts.url)
        .timeout(r.opts.timeout)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", ctype)
        .header("X-Prometheus-Remote-Write-Version", version);
    for (k, v) in &r.opts.headers {
        req = req.header(k, v);
    }
    let req = lookout_http::authorize(req, &r.opts.http)
        .map_err(|e| Failure::Retry(e.to_string(), None))?;
    let resp = match req.body(body).send().await {
        Ok(resp) => resp,
        Err(e) => return Err(Failure::Retry(format!("{}: {e}", r.opts.url), None)),
    };
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let after = resp
        .headers()
        .get("Retry-After")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text: String = resp
        .text()
        .await
        .unwrap_or_default()
        .chars()
        .take(512)
        .collect();
    let msg = format!("{} answered {status}: {}", r.opts.url, text.trim());
    if status.as_u16() == 415 && proto == Protocol::V2 {
        return Err(Failure::Downgrade);
    }
    if status.is_server_error() || (status.as_u16() == 429 && r.opts.queue.retry_on_http_429) {
        return Err(Failure::Retry(msg, after));
    }
    Err(Failure::Refused(msg))
}

/// Sends the metadata Lookout knows in a 1.0 request of its own, as Prometheus does
/// every `metadata_config.send_interval`.
async fn send_metadata(r: &Remote) {
    let meta = (r.metadata)();
    if meta.is_empty() {
        return;
    }
    let n = meta.len() as u64;
    let body = crate::encode_metadata_request(&meta);
    match post(r, body, Protocol::V1).await {
        Ok(()) => {
            r.metrics.metadata.inc_by(n);
        }
        Err(Failure::Retry(m, _) | Failure::Refused(m)) => {
            tracing::debug!(remote = %r.opts.name, error = %m, "Sending metadata failed; next interval tries again");
        }
        Err(Failure::Downgrade) => {}
    }
}
