//! History inside the engine (feature `embedded`): Lookout's own time-series store,
//! PromQL engine, rules and notifier, running in-process over a [`Metrics`] registry, so
//! an engine can answer "what was my p99 an hour ago" or page someone without any server.
//!
//! Every `interval` the registry is read (its OpenMetrics text, parsed by Lookout's
//! exposition parser) and appended to a store in `dir`, crash-safe as Lookout's own (WAL,
//! blocks, retention by time and size). [`History::query_range`] and [`History::query`]
//! evaluate PromQL over it; [`History::metric`] returns a metric's raw samples. Rule
//! files (Prometheus's format) and Lookout's rule packs are evaluated over the same
//! store; with an `alertmanager.yml`, Lookout's notifier routes their alerts to its
//! receivers (webhook, Slack, PagerDuty, email), keeping its state under `dir`.
//!
//! ```no_run
//! # async fn run() -> Result<(), lookout_sdk::history::Error> {
//! use std::time::{Duration, SystemTime};
//! use lookout_sdk::{Metrics, Options, history::{History, HistoryOptions}};
//!
//! let metrics = Metrics::new(Options::default().label("service", "kvstore"));
//! let tree = metrics.btree("primary");
//! let mut opts = HistoryOptions::new("/var/lib/kvstore/history");
//! opts.retention = Duration::from_secs(3 * 86_400);
//! opts.rule_packs = vec!["engine".into()];
//! let history = History::start(&metrics, opts)?;
//! // … later:
//! let now = SystemTime::now();
//! let p99 = history.query_range(
//!     "histogram_quantile(0.99, sum by (le) (rate(btree_operation_duration_seconds_bucket[5m])))",
//!     now - Duration::from_secs(3600),
//!     now,
//!     Duration::from_secs(60),
//! )?;
//! let splits = history.metric("btree_node_splits_total", now - Duration::from_secs(600), now)?;
//! history.close().await?;
//! # Ok(()) }
//! ```
//!
//! Queries are bounded: a range query may return at most `max_points` points per series
//! (Prometheus's 11,000 by default) and [`History::metric`] at most that many samples per
//! series; past it the call fails naming the count, never allocating it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lookout_model::{Labels, Matcher};
use lookout_notify::Notifier;
use lookout_promql::{Engine, EngineOptions, Value};
use lookout_rules::{AlertState, EvalContext, Manager, ManagerOptions};
use lookout_storage::{Appendable, Queryable, SelectHints};
use lookout_tsdb::Tsdb;
use tokio::sync::watch;

use crate::Metrics;

/// What goes wrong with the embedded history.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store could not be opened, written or closed.
    #[error("history store: {0}")]
    Store(String),
    /// A query that does not parse or fails.
    #[error("query: {0}")]
    Query(String),
    /// A rule file or pack that does not load.
    #[error("rules: {0}")]
    Rules(String),
    /// The notifier's configuration is wrong.
    #[error("notifier: {0}")]
    Notifier(String),
    /// Arguments out of range (an empty range, a zero step, an invalid metric name).
    #[error("{0}")]
    Invalid(String),
    /// A result bigger than `max_points` per series.
    #[error(
        "{points} points per series is more than the {max} allowed: narrow the range or widen the step"
    )]
    TooManyPoints {
        /// Points the call would return for one series.
        points: u64,
        /// The bound.
        max: usize,
    },
}

/// The history's settings.
#[derive(Debug, Clone)]
pub struct HistoryOptions {
    /// Where the store (and the notifier's state) is kept.
    pub dir: PathBuf,
    /// How often the registry is recorded (default 15 s).
    pub interval: Duration,
    /// How long samples are kept (default 7 days).
    pub retention: Duration,
    /// Most bytes the store keeps on disk, oldest blocks dropped first (default none).
    pub retention_bytes: Option<u64>,
    /// Most points per series a query may return (default 11,000, Prometheus's).
    pub max_points: usize,
    /// Prometheus rule files (glob patterns) to evaluate.
    pub rule_files: Vec<String>,
    /// Lookout's rule packs to evaluate (`engine` suits the metric sets).
    pub rule_packs: Vec<String>,
    /// How often rule groups that name no interval are evaluated (default 15 s).
    pub evaluation_interval: Duration,
    /// An `alertmanager.yml` whose receivers the rules' alerts go to.
    pub alertmanager_config: Option<PathBuf>,
    /// The URL notifications link to (default `http://localhost`).
    pub external_url: String,
}

impl HistoryOptions {
    /// The defaults, keeping the store in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            interval: Duration::from_secs(15),
            retention: Duration::from_secs(7 * 86_400),
            retention_bytes: None,
            max_points: 11_000,
            rule_files: Vec::new(),
            rule_packs: Vec::new(),
            evaluation_interval: Duration::from_secs(15),
            alertmanager_config: None,
            external_url: "http://localhost".into(),
        }
    }
}

/// One series of a result: its labels (with `__name__` where the result keeps it) and its
/// points, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The series' labels.
    pub labels: BTreeMap<String, String>,
    /// `(time, value)`, oldest first.
    pub points: Vec<(SystemTime, f64)>,
}

/// An alert of the rules, pending or firing.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveAlert {
    /// Its labels (`alertname` among them).
    pub labels: BTreeMap<String, String>,
    /// Its expanded annotations.
    pub annotations: BTreeMap<String, String>,
    /// `true` once it has been active for its rule's `for`.
    pub firing: bool,
    /// Since when it has been active.
    pub active_since: SystemTime,
    /// The expression's value at the last evaluation.
    pub value: f64,
}

/// The running history: recording, rules and notifier tasks over one store.
pub struct History {
    tsdb: Arc<Tsdb>,
    engine: Engine,
    metrics: Metrics,
    rules: Option<Arc<Manager>>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    max_points: usize,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("dir", &self.tsdb.dir())
            .field("max_points", &self.max_points)
            .finish_non_exhaustive()
    }
}

fn ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

fn time(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

fn label_map(l: &Labels, keep_name: bool) -> BTreeMap<String, String> {
    l.iter()
        .filter(|x| keep_name || x.name != "__name__")
        .map(|x| (x.name.to_string(), x.value.to_string()))
        .collect()
}

impl History {
    /// Opens the store in `opts.dir` and starts recording `metrics` (once now, then every
    /// `interval`), the rules and the notifier. Must be called inside a tokio runtime.
    pub fn start(metrics: &Metrics, opts: HistoryOptions) -> Result<Self, Error> {
        if opts.interval.is_zero() || opts.evaluation_interval.is_zero() || opts.max_points == 0 {
            return Err(Error::Invalid(
                "interval, evaluation_interval and max_points must be above zero".into(),
            ));
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::Invalid("History::start needs a tokio runtime".into()))?;
        let store_opts = lookout_tsdb::Options {
            retention: opts.retention,
            retention_size: opts.retention_bytes,
            // Inside an engine, history queries are few: 4 MiB of decompressed pages
            // rather than Lookout's 64, so the engine's memory stays its own.
            page_cache_bytes: 4 << 20,
            ..Default::default()
        };
        // The store's own figures stay private: the engine's /metrics is the engine's.
        let mut own = prometheus_client::registry::Registry::default();
        let tsdb = Arc::new(
            Tsdb::open(&opts.dir.join("tsdb"), store_opts, &mut own)
                .map_err(|e| Error::Store(e.to_string()))?,
        );
        let engine = Engine::new(EngineOptions {
            timeout: Duration::from_secs(30),
            max_samples: 5_000_000,
            max_memory: 256 << 20,
            default_subquery_step: opts.evaluation_interval,
            ..Default::default()
        });
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();

        let notifier = match &opts.alertmanager_config {
            Some(path) => {
                let state = opts.dir.join("notifier");
                std::fs::create_dir_all(&state).map_err(|e| Error::Store(e.to_string()))?;
                let (core, text) = lookout_notify::Core::from_file(
                    path,
                    lookout_notify::Options {
                        external_url: opts.external_url.clone(),
                        data_dir: Some(state),
                        escalations: Vec::new(),
                        config_dir: path.parent().map(PathBuf::from),
                        history_retention: None,
                    },
                )
                .map_err(|e| Error::Notifier(e.to_string()))?;
                let n = Arc::new(Notifier::new(core, opts.external_url.clone(), text));
                tasks.push(n.spawn(stop_rx.clone()));
                Some(n)
            }
            None => None,
        };

        let rules = if opts.rule_files.is_empty() && opts.rule_packs.is_empty() {
            None
        } else {
            let mut packs = Vec::new();
            for name in &opts.rule_packs {
                packs.push(
                    lookout_rules::packs::get(name)
                        .ok_or_else(|| Error::Rules(format!("no rule pack named {name:?}")))?,
                );
            }
            let sink = notifier.as_ref().map(|n| {
                Arc::new(lookout_notify::rules_sink::RuleSink {
                    notifier: Some(Arc::clone(n)),
                    forwarder: None,
                    external_labels: BTreeMap::new(),
                    external_url: opts.external_url.clone(),
                    relabel: Vec::new(),
                    runtime: runtime.clone(),
                }) as Arc<dyn lookout_rules::AlertSink>
            });
            let m = Arc::new(Manager::new(
                ManagerOptions {
                    files: opts.rule_files.clone(),
                    packs,
                    default_interval: opts.evaluation_interval,
                    state_file: Some(opts.dir.join("rules.state")),
                    watch_interval: None,
                    ..Default::default()
                },
                EvalContext {
                    engine: engine.clone(),
                    db: Arc::clone(&tsdb) as Arc<dyn Queryable>,
                    external_labels: BTreeMap::new(),
                    external_url: opts.external_url.clone(),
                },
                Arc::clone(&tsdb) as Arc<dyn Appendable>,
                sink,
            ));
            m.reload(lookout_model::now_ms())
                .map_err(|errs| Error::Rules(errs.join("; ")))?;
            Some(m)
        };

        record(&tsdb, metrics)?;
        let (t, m) = (Arc::clone(&tsdb), metrics.clone());
        let mut stopped = stop_rx.clone();
        let interval = opts.interval;
        tasks.push(runtime.spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => return,
                }
                let (t, m) = (Arc::clone(&t), m.clone());
                match tokio::task::spawn_blocking(move || record(&t, &m)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "recording the registry into the history")
                    }
                    Err(e) => tracing::error!(error = %e, "recording the registry panicked"),
                }
            }
        }));
        if let Some(m) = &rules {
            tasks.push(m.spawn(stop_rx));
        }
        Ok(Self {
            tsdb,
            engine,
            metrics: metrics.clone(),
            rules,
            stop,
            tasks,
            max_points: opts.max_points,
        })
    }

    /// Records the registry now; returns the number of samples stored.
    pub fn record_now(&self) -> Result<usize, Error> {
        record(&self.tsdb, &self.metrics)
    }

    /// Evaluates `expr` at `at`: one point per series (a scalar is one series with no
    /// labels).
    pub fn query(&self, expr: &str, at: SystemTime) -> Result<Vec<Series>, Error> {
        let v = self
            .engine
            .instant(self.tsdb.as_ref(), expr, ms(at))
            .map_err(|e| Error::Query(e.to_string()))?;
        Ok(match v {
            Value::Scalar(x) => vec![Series {
                labels: BTreeMap::new(),
                points: vec![(at, x)],
            }],
            Value::Vector(v) => v
                .into_iter()
                .map(|s| Series {
                    labels: label_map(&s.labels, !s.drop_name),
                    points: vec![(at, s.v)],
                })
                .collect(),
            Value::Matrix(m) => m
                .into_iter()
                .map(|s| Series {
                    labels: label_map(&s.labels, !s.drop_name),
                    points: s.samples.iter().map(|p| (time(p.t), p.v)).collect(),
                })
                .collect(),
            Value::String(_) => {
                return Err(Error::Query("a string is not a series".into()));
            }
        })
    }

    /// Evaluates `expr` at every `step` from `from` to `to`, as Prometheus's
    /// `/api/v1/query_range` does.
    pub fn query_range(
        &self,
        expr: &str,
        from: SystemTime,
        to: SystemTime,
        step: Duration,
    ) -> Result<Vec<Series>, Error> {
        let (start, end) = (ms(from), ms(to));
        let step_ms = i64::try_from(step.as_millis()).unwrap_or(i64::MAX);
        if end < start || step_ms <= 0 {
            return Err(Error::Invalid(
                "the range must not end before it starts, and the step must be at least 1 ms"
                    .into(),
            ));
        }
        // In i128: the two ends may be far apart on either side of the epoch.
        let points = u64::try_from((i128::from(end) - i128::from(start)) / i128::from(step_ms))
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        if points > self.max_points as u64 {
            return Err(Error::TooManyPoints {
                points,
                max: self.max_points,
            });
        }
        let v = self
            .engine
            .range(self.tsdb.as_ref(), expr, start, end, step_ms)
            .map_err(|e| Error::Query(e.to_string()))?;
        let Value::Matrix(m) = v else {
            return Err(Error::Query("a range query returns a matrix".into()));
        };
        Ok(m.into_iter()
            .map(|s| Series {
                labels: label_map(&s.labels, !s.drop_name),
                points: s.samples.iter().map(|p| (time(p.t), p.v)).collect(),
            })
            .collect())
    }

    /// The raw samples of every series named `name` (as exposed: `…_total`,
    /// `…_bucket`) from `from` to `to`.
    pub fn metric(
        &self,
        name: &str,
        from: SystemTime,
        to: SystemTime,
    ) -> Result<Vec<Series>, Error> {
        let valid = !name.is_empty()
            && name.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            });
        if !valid {
            return Err(Error::Invalid(format!("{name:?} is not a metric name")));
        }
        let (start, end) = (ms(from), ms(to));
        if end < start {
            return Err(Error::Invalid("the range ends before it starts".into()));
        }
        let q = self
            .tsdb
            .querier(start, end)
            .map_err(|e| Error::Store(e.to_string()))?;
        let hints = SelectHints {
            start,
            end,
            ..Default::default()
        };
        let series = q
            .select(&hints, &[Matcher::equal("__name__", name)])
            .map_err(|e| Error::Store(e.to_string()))?;
        let mut out = Vec::with_capacity(series.len());
        for s in series {
            let points: Vec<(SystemTime, f64)> = s
                .samples
                .iter()
                .filter(|p| p.t >= start && p.t <= end && !lookout_model::is_stale_nan(p.v))
                .map(|p| (time(p.t), p.v))
                .collect();
            if points.len() > self.max_points {
                return Err(Error::TooManyPoints {
                    points: points.len() as u64,
                    max: self.max_points,
                });
            }
            out.push(Series {
                labels: label_map(&s.labels, true),
                points,
            });
        }
        Ok(out)
    }

    /// The rules' pending and firing alerts.
    pub fn alerts(&self) -> Vec<ActiveAlert> {
        let Some(m) = &self.rules else {
            return Vec::new();
        };
        m.alerts()
            .into_iter()
            .filter(|a| matches!(a.state, AlertState::Pending | AlertState::Firing))
            .map(|a| ActiveAlert {
                labels: label_map(&a.labels, true),
                annotations: a.annotations,
                firing: a.state == AlertState::Firing,
                active_since: time(a.active_at),
                value: a.value,
            })
            .collect()
    }

    /// Stops recording, the rules and the notifier (each finishing what it is doing),
    /// records a last time and closes the store.
    pub async fn close(self) -> Result<(), Error> {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let tsdb = self.tsdb;
        let metrics = self.metrics;
        tokio::task::spawn_blocking(move || {
            record(&tsdb, &metrics)?;
            tsdb.close().map_err(|e| Error::Store(e.to_string()))
        })
        .await
        .map_err(|e| Error::Store(e.to_string()))?
    }
}

/// Appends one reading of the registry at the current time.
fn record(tsdb: &Tsdb, metrics: &Metrics) -> Result<usize, Error> {
    let text = metrics.encode();
    let exp = lookout_expfmt::parse(&text, lookout_expfmt::Format::OpenMetrics)
        .map_err(|e| Error::Store(format!("reading the registry: {e}")))?;
    let now = lookout_model::now_ms();
    let mut app = tsdb.appender();
    let mut n = 0;
    for s in &exp.samples {
        let labels = Labels::from_pairs(
            std::iter::once(("__name__", s.name.to_string()))
                .chain(s.labels.iter().map(|(k, v)| (*k, v.to_string()))),
        );
        match app.append(&labels, s.timestamp_ms.unwrap_or(now), s.value) {
            Ok(_) => n += 1,
            // One odd sample (a duplicate timestamp) does not lose the others.
            Err(
                lookout_storage::Error::OutOfOrder { .. }
                | lookout_storage::Error::DuplicateSample { .. },
            ) => {}
            Err(e) => {
                app.rollback();
                return Err(Error::Store(e.to_string()));
            }
        }
    }
    app.commit().map_err(|e| Error::Store(e.to_string()))?;
    Ok(n)
}
