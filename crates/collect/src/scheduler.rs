//! The scheduler: runs each collector on its own task, every interval, with its own
//! timeout, so one slow or failing collector never delays the others. It stamps samples
//! with the run's start time, adds the target labels (`job`, `instance`), writes an `up`
//! series per collector, marks vanished series stale, and records each run in a
//! [`StatusBoard`] that health checks and the UI read.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

pub use lookout_model::status::CollectorStatus;
use lookout_model::{Labels, now_ms};
use lookout_storage::Appendable;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::pipeline::{Pipeline, Run, RunMetrics};
use crate::{AsyncCollector, Collector};

/// How often and how long collectors run.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Time between runs of each collector.
    pub interval: Duration,
    /// Longest one run may take before it counts as failed.
    pub timeout: Duration,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(15),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Shared, read-mostly view of every collector's status.
#[derive(Debug, Clone, Default)]
pub struct StatusBoard(Arc<RwLock<BTreeMap<String, CollectorStatus>>>);

impl StatusBoard {
    /// A copy of every collector's status, by name.
    pub fn snapshot(&self) -> Vec<CollectorStatus> {
        self.0
            .read()
            .expect("lock poisoned")
            .values()
            .cloned()
            .collect()
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut CollectorStatus)) {
        if let Some(s) = self.0.write().expect("lock poisoned").get_mut(name) {
            f(s);
        }
    }

    /// Registers a collector that has not run yet (also used by tests to inject states).
    pub fn insert(&self, status: CollectorStatus) {
        self.0
            .write()
            .expect("lock poisoned")
            .insert(status.name.clone(), status);
    }
}

/// A collector of either kind.
#[derive(Clone)]
enum Source {
    Blocking(Arc<dyn Collector>),
    Async(Arc<dyn AsyncCollector>),
}

impl Source {
    fn name(&self) -> &str {
        match self {
            Source::Blocking(c) => c.name(),
            Source::Async(c) => c.name(),
        }
    }
}

struct Entry {
    collector: Source,
    target: Labels,
}

/// Told the `*_up` metric names (and `up`) of a collector whose state changed: it went
/// down, came back, or one of its `*_up` values moved.
pub type ChangeHook = Arc<dyn Fn(Vec<String>) + Send + Sync>;

/// Runs collectors periodically and writes their samples.
pub struct Scheduler {
    opts: SchedulerOptions,
    entries: Vec<Entry>,
    board: StatusBoard,
    metrics: RunMetrics,
    hook: Option<ChangeHook>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("opts", &self.opts)
            .field("collectors", &self.entries.len())
            .finish()
    }
}

impl Scheduler {
    /// A scheduler with no collectors; registers its metrics in `registry`.
    pub fn new(opts: SchedulerOptions, registry: &mut Registry) -> Self {
        Self {
            opts,
            entries: Vec::new(),
            board: StatusBoard::default(),
            metrics: RunMetrics::new(registry),
            hook: None,
        }
    }

    /// Calls `hook` when a collector's state changes (see [`ChangeHook`]): the rules
    /// manager uses it to evaluate the rules reading those series at once.
    pub fn on_change(&mut self, hook: ChangeHook) {
        self.hook = Some(hook);
    }

    /// Adds a collector whose samples get the `target` labels (e.g. `job`, `instance`).
    pub fn add(&mut self, collector: Arc<dyn Collector>, target: Labels) {
        self.push(Source::Blocking(collector), target);
    }

    /// Adds an async collector (a database, a scrape target) with its `target` labels.
    pub fn add_async(&mut self, collector: Arc<dyn AsyncCollector>, target: Labels) {
        self.push(Source::Async(collector), target);
    }

    fn push(&mut self, collector: Source, target: Labels) {
        self.board
            .insert(CollectorStatus::new(collector.name(), self.opts.interval));
        self.entries.push(Entry { collector, target });
    }

    /// The status board the scheduler updates.
    pub fn board(&self) -> StatusBoard {
        self.board.clone()
    }

    /// The run metrics the scheduler records in; scrapes record in the same ones
    /// ([`ScrapeManager::with_metrics`](crate::scrape::ScrapeManager::with_metrics)).
    pub fn metrics(&self) -> RunMetrics {
        self.metrics.clone()
    }

    /// Starts one task per collector; they run until `shutdown` turns true. The returned
    /// handle completes when every task has stopped.
    pub fn spawn(
        self,
        db: Arc<dyn Appendable>,
        shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let mut handles = Vec::new();
        let shared = Arc::new((self.opts, self.board, self.metrics, self.hook));
        for entry in self.entries {
            let shared = Arc::clone(&shared);
            let db = Arc::clone(&db);
            let mut shutdown = shutdown.clone();
            handles.push(tokio::spawn(async move {
                let (opts, board, metrics, hook) = &*shared;
                let mut ticker = tokio::time::interval(opts.interval);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                let mut pipeline = Pipeline::new(entry.target.clone());
                let wake = match &entry.collector {
                    Source::Async(c) => c.wake(),
                    Source::Blocking(_) => None,
                };
                let mut last: Option<Outcome> = None;
                loop {
                    let woken = async {
                        match &wake {
                            Some(w) => w.notified().await,
                            None => std::future::pending::<()>().await,
                        }
                    };
                    tokio::select! {
                        _ = ticker.tick() => {}
                        _ = woken => {
                            tracing::debug!(collector = %entry.collector.name(), "Source failed between runs; running now");
                        }
                        _ = shutdown.changed() => break,
                    }
                    if *shutdown.borrow() {
                        break;
                    }
                    let outcome = run_once(&entry, opts, board, metrics, &*db, &mut pipeline).await;
                    if let (Some(h), Some(prev)) = (hook, &last)
                        && prev.state != outcome.state
                    {
                        let mut names = outcome.names.clone();
                        names.extend(prev.names.iter().cloned());
                        names.push("up".to_string());
                        names.sort();
                        names.dedup();
                        h(names);
                    }
                    last = Some(outcome);
                }
            }));
        }
        tokio::spawn(async move {
            for h in handles {
                let _ = h.await;
            }
        })
    }
}

/// What a run says about the source's state: whether it worked, and its `*_up` values.
struct Outcome {
    /// Success, then every `*_up` sample's name and value bits, sorted.
    state: (bool, Vec<(String, u64)>),
    /// The `*_up` metric names.
    names: Vec<String>,
}

async fn run_once(
    entry: &Entry,
    opts: &SchedulerOptions,
    board: &StatusBoard,
    metrics: &RunMetrics,
    db: &dyn Appendable,
    pipeline: &mut Pipeline,
) -> Outcome {
    let name = entry.collector.name().to_string();
    let started = Instant::now();
    let started_at = SystemTime::now();
    let t = now_ms();
    let timed_out = || {
        (
            Vec::new(),
            Some(format!("timed out after {:?}", opts.timeout)),
        )
    };
    let (out, error) = match &entry.collector {
        Source::Blocking(c) => {
            let c = Arc::clone(c);
            let res = tokio::time::timeout(
                opts.timeout,
                tokio::task::spawn_blocking(move || {
                    let mut out = Vec::new();
                    let r = c.collect(&mut out);
                    (out, r)
                }),
            )
            .await;
            match res {
                Ok(Ok((out, r))) => (out, r.err().map(|e| e.to_string())),
                Ok(Err(e)) => (Vec::new(), Some(format!("collector panicked: {e}"))),
                Err(_) => timed_out(),
            }
        }
        Source::Async(c) => {
            let mut out = Vec::new();
            match tokio::time::timeout(opts.timeout, c.collect(&mut out)).await {
                Ok(r) => (out, r.err().map(|e| e.to_string())),
                Err(_) => timed_out(),
            }
        }
    };
    let notes = match &entry.collector {
        Source::Async(c) => c.notes(),
        Source::Blocking(_) => Vec::new(),
    };
    let run = Run {
        samples: out
            .iter()
            .map(|m| (pipeline.labelled(&m.labels), t, m.value))
            .collect(),
        exemplars: Vec::new(),
        created: Vec::new(),
        histograms: Vec::new(),
        scraped: out.len(),
        up: error.is_none() || !out.is_empty(),
        duration: started.elapsed(),
    };
    let written = pipeline.write(db, t, &run);
    let commit_err = written
        .commit_error
        .map(|e| format!("storing samples: {e}"));
    let error = error.or(commit_err);
    let mut ups: Vec<(String, u64)> = out
        .iter()
        .filter_map(|m| {
            let n = m.labels.metric_name()?;
            n.ends_with("_up")
                .then(|| (n.to_string(), m.value.to_bits()))
        })
        .collect();
    ups.sort();
    let mut names: Vec<String> = ups.iter().map(|(n, _)| n.clone()).collect();
    names.dedup();
    let outcome = Outcome {
        state: (error.is_none(), ups),
        names,
    };
    let elapsed = started.elapsed();
    metrics.record(&name, elapsed, error.is_some(), written.rejected);
    if let Some(e) = &error {
        tracing::warn!(collector = %name, error = %e, "Collector run failed");
    } else {
        tracing::debug!(collector = %name, samples = written.series, ?elapsed, "Collector run finished");
    }
    board.update(&name, |s| {
        s.last_run = Some(started_at);
        s.last_duration = Some(elapsed);
        s.runs += 1;
        if error.is_some() {
            s.failures += 1;
        }
        s.last_error = error;
        s.last_samples = written.series;
        s.notes = notes;
    });
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Metric;
    use lookout_model::Matcher;
    use lookout_storage::{MemStorage, Queryable, SelectHints};
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Flaky {
        calls: AtomicUsize,
    }

    impl Collector for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }
        fn collect(&self, out: &mut Vec<Metric>) -> crate::Result<()> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            out.push(Metric::new("always", &[], 1.0));
            if n == 0 {
                out.push(Metric::new("first_only", &[], 1.0));
                Ok(())
            } else {
                Err(crate::Error::Read {
                    what: "test",
                    message: "injected".into(),
                })
            }
        }
    }

    struct Slow;

    impl Collector for Slow {
        fn name(&self) -> &str {
            "slow"
        }
        fn collect(&self, _out: &mut Vec<Metric>) -> crate::Result<()> {
            std::thread::sleep(Duration::from_millis(400));
            Ok(())
        }
    }

    #[tokio::test]
    async fn vanished_series_get_stale_markers_and_status_tracks_errors() {
        let db = Arc::new(MemStorage::new());
        let board = StatusBoard::default();
        let metrics = RunMetrics::new(&mut Registry::default());
        let opts = SchedulerOptions::default();
        let entry = Entry {
            collector: Source::Blocking(Arc::new(Flaky {
                calls: AtomicUsize::new(0),
            })),
            target: Labels::from_pairs([("job", "t")]),
        };
        board.insert(CollectorStatus::new("flaky", opts.interval));
        let mut pipeline = Pipeline::new(entry.target.clone());
        run_once(&entry, &opts, &board, &metrics, &*db, &mut pipeline).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        run_once(&entry, &opts, &board, &metrics, &*db, &mut pipeline).await;
        let q = db.querier(0, i64::MAX).unwrap();
        let s = q
            .select(
                &SelectHints::default(),
                &[Matcher::equal("__name__", "first_only")],
            )
            .unwrap();
        assert_eq!(s[0].labels.get("job"), Some("t"));
        assert!(lookout_model::is_stale_nan(s[0].samples.last().unwrap().v));
        let st = &board.snapshot()[0];
        assert_eq!((st.runs, st.failures), (2, 1));
        assert!(st.last_error.as_deref().unwrap().contains("injected"));
    }

    #[tokio::test]
    async fn slow_collector_times_out_with_up_zero() {
        let db = Arc::new(MemStorage::new());
        let board = StatusBoard::default();
        let metrics = RunMetrics::new(&mut Registry::default());
        let opts = SchedulerOptions {
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(50),
        };
        let entry = Entry {
            collector: Source::Blocking(Arc::new(Slow)),
            target: Labels::empty(),
        };
        board.insert(CollectorStatus::new("slow", opts.interval));
        let mut pipeline = Pipeline::new(entry.target.clone());
        run_once(&entry, &opts, &board, &metrics, &*db, &mut pipeline).await;
        let q = db.querier(0, i64::MAX).unwrap();
        let up = q
            .select(&SelectHints::default(), &[Matcher::equal("__name__", "up")])
            .unwrap();
        assert_eq!(up[0].samples[0].v, 0.0);
        assert!(
            board.snapshot()[0]
                .last_error
                .as_deref()
                .unwrap()
                .contains("timed out")
        );
    }
}
