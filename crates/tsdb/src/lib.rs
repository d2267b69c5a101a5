//! Lookout's embedded time-series database, first version: an in-memory head and an
//! append-only write-ahead log on disk, replayed at start.
//!
//! [`Tsdb`] implements the storage seams ([`Appendable`], [`Queryable`]); nothing above
//! them knows how data is kept. The storage-engine issue replaces the head's sample vectors
//! with compressed chunks and adds blocks, behind the same seams.
//!
//! Durability: a commit writes its records to the WAL (see [`wal`](crate) module docs for the
//! format) before they become visible; the WAL is fsynced per [`SyncPolicy`] (default every
//! second) and at [`Tsdb::close`]. Retention truncation rewrites the WAL as a checkpoint so
//! replay stays bounded.
//!
//! ```
//! use lookout_model::{Labels, Matcher};
//! use lookout_storage::{Appendable, Queryable, SelectHints};
//! use lookout_tsdb::{Options, Tsdb};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let db = Tsdb::open(dir.path(), Options::default(), &mut Default::default()).unwrap();
//! let mut app = db.appender();
//! app.append(&Labels::from_pairs([("__name__", "up")]), 1000, 1.0).unwrap();
//! app.commit().unwrap();
//! let q = db.querier(0, 2000).unwrap();
//! assert_eq!(q.select(&SelectHints::default(), &[Matcher::equal("__name__", "up")]).unwrap().len(), 1);
//! db.close().unwrap();
//! ```

mod head;
mod metrics;
mod wal;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use lookout_model::{Labels, METRIC_NAME_LABEL, Matcher, Sample};
use lookout_storage::{
    Appendable, Appender, Error, Querier, Queryable, Result, SelectHints, Series, SeriesRef,
};
use prometheus_client::registry::Registry;

use head::Head;
use metrics::TsdbMetrics;
use wal::{Record, Wal};

/// When the WAL is fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// After every commit.
    Always,
    /// Periodically, and at close.
    Interval(Duration),
}

impl Default for SyncPolicy {
    fn default() -> Self {
        Self::Interval(Duration::from_secs(1))
    }
}

/// How a [`Tsdb`] is opened.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long samples are kept; older ones are dropped by [`Tsdb::apply_retention`].
    pub retention: Duration,
    /// WAL fsync policy.
    pub sync: SyncPolicy,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(15 * 24 * 3600),
            sync: SyncPolicy::default(),
        }
    }
}

/// Figures about the stored data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Series in the head.
    pub series: u64,
    /// Samples in the head.
    pub samples: u64,
    /// Earliest sample timestamp, if any.
    pub min_time: Option<i64>,
    /// Latest sample timestamp, if any.
    pub max_time: Option<i64>,
    /// WAL size in bytes.
    pub wal_bytes: u64,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    opts: Options,
    head: RwLock<Head>,
    wal: Mutex<Wal>,
    metrics: TsdbMetrics,
    last_error: Mutex<Option<String>>,
    closed: AtomicBool,
    _lock: File,
}

/// The embedded time-series database. Cheap to share behind an `Arc`; all methods take `&self`.
#[derive(Debug)]
pub struct Tsdb {
    inner: Arc<Inner>,
    syncer: Mutex<Option<(mpsc::Sender<()>, JoinHandle<()>)>>,
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io {
        context: context.into(),
        source,
    }
}

impl Tsdb {
    /// Opens the database in `dir` (created if absent), replaying its WAL. Takes an
    /// exclusive lock on the directory, so two processes cannot share it. Registers the
    /// store's metrics in `registry`.
    pub fn open(dir: &Path, opts: Options, registry: &mut Registry) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(io_err(format!("creating data directory {}", dir.display())))?;
        let lock_path = dir.join("lock");
        let lock = File::create(&lock_path)
            .map_err(io_err(format!("creating {}", lock_path.display())))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |e| Error::Io {
                context: format!(
                    "locking data directory {} (is another Lookout using it?)",
                    dir.display()
                ),
                source: e.into(),
            },
        )?;
        let metrics = TsdbMetrics::new(registry);
        let mut head = Head::default();
        let wal_dir = dir.join("wal");
        let (wal, replay) = Wal::open(&wal_dir, |rec| match rec {
            Record::Series { sref, labels } => {
                if sref == head.next_ref() {
                    head.create(sref, labels);
                }
            }
            Record::Samples(samples) => {
                for (r, t, v) in samples {
                    head.push(r, Sample::new(t, v));
                }
            }
        })
        .map_err(io_err(format!("opening WAL in {}", wal_dir.display())))?;
        if replay.truncated_bytes > 0 {
            metrics.wal_corruptions.inc();
            tracing::warn!(
                dir = %wal_dir.display(),
                truncated_bytes = replay.truncated_bytes,
                "WAL had a torn or corrupt tail; truncated it and kept everything before"
            );
        }
        tracing::info!(
            records = replay.records,
            series = head.series.len(),
            samples = head.samples,
            "WAL replayed"
        );
        metrics.head_series.set(head.series.len() as i64);
        metrics.wal_bytes.set(wal.size() as i64);
        let inner = Arc::new(Inner {
            dir: dir.to_path_buf(),
            opts: opts.clone(),
            head: RwLock::new(head),
            wal: Mutex::new(wal),
            metrics,
            last_error: Mutex::new(None),
            closed: AtomicBool::new(false),
            _lock: lock,
        });
        let syncer = match opts.sync {
            SyncPolicy::Always => None,
            SyncPolicy::Interval(every) => {
                let (tx, rx) = mpsc::channel::<()>();
                let inner2 = Arc::clone(&inner);
                let handle = std::thread::Builder::new()
                    .name("wal-sync".into())
                    .spawn(move || {
                        while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
                            inner2.sync_wal();
                        }
                    })
                    .map_err(io_err("starting WAL sync thread"))?;
                Some((tx, handle))
            }
        };
        Ok(Self {
            inner,
            syncer: Mutex::new(syncer),
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Figures about the stored data.
    pub fn stats(&self) -> Stats {
        let head = self.inner.head.read().expect("lock poisoned");
        let mut st = Stats {
            series: head.series.len() as u64,
            samples: head.samples,
            ..Stats::default()
        };
        for s in &head.series {
            if let (Some(a), Some(b)) = (s.samples.first(), s.samples.last()) {
                st.min_time = Some(st.min_time.map_or(a.t, |m| m.min(a.t)));
                st.max_time = Some(st.max_time.map_or(b.t, |m| m.max(b.t)));
            }
        }
        st.wal_bytes = self.inner.wal.lock().expect("lock poisoned").size();
        st
    }

    /// Checks the store is usable: the last WAL write succeeded and the directory is
    /// writable. Returns a message naming the problem otherwise.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err("storage is closed".into());
        }
        if let Some(e) = self.inner.last_error.lock().expect("lock poisoned").clone() {
            return Err(format!("last WAL write failed: {e}"));
        }
        let probe = self.inner.dir.join(".write-probe");
        std::fs::write(&probe, b"ok")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|e| {
                format!(
                    "data directory {} is not writable: {e}",
                    self.inner.dir.display()
                )
            })
    }

    /// Drops samples older than `now - retention`, then rewrites the WAL as a checkpoint
    /// of what remains. Returns the number of samples dropped; when nothing is old enough
    /// to drop, the WAL is left as it is.
    pub fn apply_retention(&self, now_ms: i64) -> Result<u64> {
        let mint = now_ms - self.inner.opts.retention.as_millis() as i64;
        let mut head = self.inner.head.write().expect("lock poisoned");
        let expired = head
            .series
            .iter()
            .any(|s| s.samples.first().is_some_and(|x| x.t < mint));
        if !expired {
            return Ok(0);
        }
        let before = head.samples;
        let fresh = head.truncate(mint);
        let dropped = before - fresh.samples;
        *head = fresh;
        let mut wal = self.inner.wal.lock().expect("lock poisoned");
        let series = head.series.iter().enumerate().map(|(i, s)| Record::Series {
            sref: i as u64,
            labels: s.labels.clone(),
        });
        let samples = head.series.iter().enumerate().flat_map(|(i, s)| {
            s.samples
                .chunks(4096)
                .map(move |c| Record::Samples(c.iter().map(|x| (i as u64, x.t, x.v)).collect()))
        });
        wal.checkpoint(series.chain(samples))
            .map_err(io_err("writing WAL checkpoint"))?;
        self.inner.metrics.head_series.set(head.series.len() as i64);
        self.inner.metrics.wal_bytes.set(wal.size() as i64);
        Ok(dropped)
    }

    /// Stops the sync thread, fsyncs the WAL and refuses further writes.
    pub fn close(&self) -> Result<()> {
        if let Some((tx, handle)) = self.syncer.lock().expect("lock poisoned").take() {
            drop(tx);
            let _ = handle.join();
        }
        self.inner.closed.store(true, Ordering::Release);
        let mut wal = self.inner.wal.lock().expect("lock poisoned");
        wal.sync().map_err(io_err("syncing WAL at close"))
    }
}

impl Drop for Tsdb {
    fn drop(&mut self) {
        if !self.inner.closed.load(Ordering::Acquire) {
            let _ = self.close();
        }
    }
}

impl Inner {
    fn sync_wal(&self) {
        let res = self.wal.lock().expect("lock poisoned").sync();
        self.record_io(res.as_ref().err());
    }

    fn record_io(&self, err: Option<&std::io::Error>) {
        let mut last = self.last_error.lock().expect("lock poisoned");
        match err {
            Some(e) => {
                self.metrics.wal_failures.inc();
                tracing::error!(error = %e, "WAL write failed");
                *last = Some(e.to_string());
            }
            None => *last = None,
        }
    }
}

fn validate(labels: &Labels) -> Result<()> {
    let bad = |reason: &str| {
        Err(Error::InvalidLabels {
            labels: labels.to_string(),
            reason: reason.to_string(),
        })
    };
    if labels.is_empty() {
        return bad("empty label set");
    }
    if labels.metric_name().is_none() {
        return bad("missing metric name (__name__)");
    }
    if labels.iter().any(|l| l.name.is_empty()) {
        return bad("empty label name");
    }
    Ok(())
}

impl Appendable for Tsdb {
    fn appender(&self) -> Box<dyn Appender + '_> {
        Box::new(TsdbAppender {
            db: &self.inner,
            pending: Vec::new(),
            last: HashMap::new(),
        })
    }
}

struct TsdbAppender<'a> {
    db: &'a Inner,
    pending: Vec<(Labels, Sample)>,
    /// Newest (t, v) per series appended in this batch.
    last: HashMap<Labels, Sample>,
}

/// Whether `s` may follow `last`; `Ok(false)` for an exact duplicate to skip.
fn check_order(labels: &Labels, last: Option<Sample>, s: Sample) -> Result<bool> {
    match last {
        Some(l) if s.t < l.t => Err(Error::OutOfOrder {
            series: labels.to_string(),
            t: s.t,
            last_t: l.t,
        }),
        Some(l) if s.t == l.t => {
            if l.v.to_bits() == s.v.to_bits() {
                Ok(false)
            } else {
                Err(Error::DuplicateSample {
                    series: labels.to_string(),
                    t: s.t,
                })
            }
        }
        _ => Ok(true),
    }
}

impl Appender for TsdbAppender<'_> {
    fn append(&mut self, labels: &Labels, t: i64, v: f64) -> Result<SeriesRef> {
        if self.db.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        validate(labels)?;
        let s = Sample::new(t, v);
        let (last, sref) = match self.last.get(labels) {
            Some(l) => (Some(*l), None),
            None => {
                let head = self.db.head.read().expect("lock poisoned");
                let r = head.get_ref(labels);
                (
                    r.and_then(|r| head.series[r as usize].samples.last().copied()),
                    r,
                )
            }
        };
        let res = check_order(labels, last, s);
        if res.is_err() {
            self.db.metrics.rejected.inc();
        }
        if res? {
            self.last.insert(labels.clone(), s);
            self.pending.push((labels.clone(), s));
        }
        Ok(sref.unwrap_or(u64::MAX))
    }

    fn commit(self: Box<Self>) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let db = self.db;
        let mut head = db.head.write().expect("lock poisoned");
        let mut recs = Vec::new();
        let mut new_refs: HashMap<&Labels, u64> = HashMap::new();
        let mut next = head.next_ref();
        let mut batch = Vec::with_capacity(self.pending.len());
        let mut newest: HashMap<u64, Sample> = HashMap::new();
        for (ls, s) in &self.pending {
            let r = match head.get_ref(ls).or_else(|| new_refs.get(ls).copied()) {
                Some(r) => r,
                None => {
                    recs.push(Record::Series {
                        sref: next,
                        labels: ls.clone(),
                    });
                    new_refs.insert(ls, next);
                    next += 1;
                    next - 1
                }
            };
            // Re-check under the write lock: another appender may have committed since.
            let last = newest.get(&r).copied().or_else(|| {
                head.series
                    .get(r as usize)
                    .and_then(|m| m.samples.last().copied())
            });
            match check_order(ls, last, *s) {
                Ok(true) => {
                    newest.insert(r, *s);
                    batch.push((r, s.t, s.v));
                }
                Ok(false) => {}
                Err(_) => {
                    db.metrics.rejected.inc();
                }
            }
        }
        recs.push(Record::Samples(batch.clone()));
        {
            let mut wal = db.wal.lock().expect("lock poisoned");
            let mut res = wal.append(&recs);
            if res.is_ok() && db.opts.sync == SyncPolicy::Always {
                res = wal.sync();
            }
            db.record_io(res.as_ref().err());
            res.map_err(io_err("writing WAL"))?;
            db.metrics.wal_bytes.set(wal.size() as i64);
        }
        for rec in recs {
            if let Record::Series { sref, labels } = rec {
                head.create(sref, labels);
            }
        }
        for (r, t, v) in &batch {
            head.push(*r, Sample::new(*t, *v));
        }
        db.metrics.appended.inc_by(batch.len() as u64);
        db.metrics.head_series.set(head.series.len() as i64);
        Ok(())
    }

    fn rollback(self: Box<Self>) {}
}

impl Queryable for Tsdb {
    fn querier(&self, mint: i64, maxt: i64) -> Result<Box<dyn Querier + '_>> {
        Ok(Box::new(TsdbQuerier {
            db: &self.inner,
            mint,
            maxt,
        }))
    }
}

struct TsdbQuerier<'a> {
    db: &'a Inner,
    mint: i64,
    maxt: i64,
}

impl TsdbQuerier<'_> {
    fn in_range(&self, samples: &[Sample]) -> bool {
        let a = samples.partition_point(|s| s.t < self.mint);
        samples.get(a).is_some_and(|s| s.t <= self.maxt)
    }
}

impl Querier for TsdbQuerier<'_> {
    fn select(&self, hints: &SelectHints, matchers: &[Matcher]) -> Result<Vec<Series>> {
        if matchers.is_empty() {
            return Ok(Vec::new());
        }
        let (mut lo, mut hi) = (self.mint, self.maxt);
        if hints.start != 0 || hints.end != 0 {
            lo = lo.max(hints.start);
            hi = hi.min(hints.end);
        }
        let head = self.db.head.read().expect("lock poisoned");
        let mut out: Vec<Series> = head
            .postings_for(matchers)
            .into_iter()
            .filter_map(|r| {
                let ms = &head.series[r as usize];
                let a = ms.samples.partition_point(|s| s.t < lo);
                let b = ms.samples.partition_point(|s| s.t <= hi);
                (a < b).then(|| Series {
                    labels: ms.labels.clone(),
                    samples: ms.samples[a..b].to_vec(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }

    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>> {
        let head = self.db.head.read().expect("lock poisoned");
        let refs = if matchers.is_empty() {
            (0..head.series.len() as u64).collect()
        } else {
            head.postings_for(matchers)
        };
        let mut names: Vec<String> = refs
            .into_iter()
            .map(|r| &head.series[r as usize])
            .filter(|s| self.in_range(&s.samples))
            .flat_map(|s| s.labels.iter().map(|l| l.name.clone()))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>> {
        let head = self.db.head.read().expect("lock poisoned");
        let refs = if matchers.is_empty() {
            (0..head.series.len() as u64).collect()
        } else {
            head.postings_for(matchers)
        };
        let mut values: Vec<String> = refs
            .into_iter()
            .map(|r| &head.series[r as usize])
            .filter(|s| self.in_range(&s.samples))
            .filter_map(|s| s.labels.get(name).map(str::to_string))
            .collect();
        values.sort();
        values.dedup();
        let _ = METRIC_NAME_LABEL;
        Ok(values)
    }
}

#[cfg(test)]
mod tests;
