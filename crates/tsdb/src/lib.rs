//! Lookout's embedded time-series database.
//!
//! [`Tsdb`] implements the storage seams ([`Appendable`], [`Queryable`]); nothing above
//! them knows how data is kept.
//!
//! - **Head** (`head`): recent data in memory: interned labels, stable series references,
//!   an inverted index, compressed chunks (`chunk`), and an out-of-order buffer.
//! - **WAL** (`wal`): every commit is written to segmented, CRC-framed log files before it
//!   becomes visible; fsynced per [`SyncPolicy`] and at [`Tsdb::close`]; checkpoints keep
//!   replay bounded; torn tails are repaired at start.
//! - **Blocks** (`block`): when the head spans 1.5 block ranges, its oldest range is written
//!   to an immutable block and dropped from the head and the WAL. Adjacent blocks are
//!   compacted into larger ones (2 h → 12 h → 3 d); blocks past retention are deleted whole.
//! - Queries merge blocks and head transparently.
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

mod bits;
mod block;
mod chunk;
mod head;
mod import;
mod metrics;
mod postings;
mod wal;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use lookout_model::{Labels, Matcher, Sample, now_ms};
use lookout_storage::{
    Appendable, Appender, Error, Querier, Queryable, Result, SelectHints, Series, SeriesRef,
};
use prometheus_client::registry::Registry;

use block::{Block, BlockWriter, PageCache};
pub use block::{BlockError, BlockMeta, BlockStats};
pub use chunk::CorruptChunk;
use head::{Head, Order};
pub use import::{ImportError, ImportSummary, Importer};
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

/// Limits on what may be stored; exceeding one is a named error and a counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most series in the head (`None`: unlimited).
    pub max_series: Option<usize>,
    /// Most labels per series, `__name__` included.
    pub max_labels: usize,
    /// Longest label name in bytes.
    pub max_label_name_len: usize,
    /// Longest label value in bytes.
    pub max_label_value_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_series: None,
            max_labels: 128,
            max_label_name_len: 1024,
            max_label_value_len: 16 * 1024,
        }
    }
}

/// How a [`Tsdb`] is opened.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long samples are kept (default 15 d); whole blocks past it are deleted.
    pub retention: Duration,
    /// Most bytes blocks and WAL may use together (`None`: no size limit); the oldest
    /// blocks are deleted past it.
    pub retention_size: Option<u64>,
    /// WAL fsync policy.
    pub sync: SyncPolicy,
    /// Time range of a block cut from the head (default 2 h).
    pub block_range: Duration,
    /// How far behind the newest sample an out-of-order sample may be (default 10 min).
    pub ooo_window: Duration,
    /// How far ahead of the wall clock a sample may be (default 10 min); later ones are
    /// rejected with [`Error::TooFarInFuture`], so one bad timestamp cannot move the
    /// head's time range (and with it every block cut) past the present.
    pub future_tolerance: Duration,
    /// Limits.
    pub limits: Limits,
    /// Largest WAL segment file (default 32 MiB).
    pub wal_segment_size: u64,
    /// How often the background thread cuts blocks, compacts and applies retention
    /// (`None`: only when [`Tsdb::maintain`] is called).
    pub maintenance_interval: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(15 * 24 * 3600),
            retention_size: None,
            sync: SyncPolicy::default(),
            block_range: Duration::from_secs(2 * 3600),
            ooo_window: Duration::from_secs(600),
            future_tolerance: Duration::from_secs(600),
            limits: Limits::default(),
            wal_segment_size: 32 << 20,
            maintenance_interval: Some(Duration::from_secs(60)),
        }
    }
}

/// Figures about the stored data.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Stats {
    /// Distinct series across head and blocks.
    pub series: u64,
    /// Samples across head and blocks.
    pub samples: u64,
    /// Series in the head.
    pub head_series: u64,
    /// Samples in the head.
    pub head_samples: u64,
    /// Earliest sample timestamp, if any.
    pub min_time: Option<i64>,
    /// Latest sample timestamp, if any.
    pub max_time: Option<i64>,
    /// WAL size in bytes.
    pub wal_bytes: u64,
    /// Number of blocks.
    pub blocks: u64,
    /// Bytes of block chunk files.
    pub chunk_bytes: u64,
    /// Bytes of block index files.
    pub index_bytes: u64,
    /// Samples in blocks.
    pub block_samples: u64,
    /// Label names with the most distinct values, descending.
    pub top_cardinalities: Vec<(String, usize)>,
}

/// The head's cardinality, as Prometheus's `/api/v1/status/tsdb` reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeadStatus {
    /// Series in the head.
    pub num_series: u64,
    /// Distinct label pairs.
    pub num_label_pairs: u64,
    /// Chunks in the head.
    pub chunk_count: u64,
    /// Earliest sample time (ms), if any.
    pub min_time: Option<i64>,
    /// Latest sample time (ms), if any.
    pub max_time: Option<i64>,
    /// Series per metric name, descending.
    pub series_by_metric: Vec<(String, u64)>,
    /// Distinct values per label name, descending.
    pub values_by_label: Vec<(String, u64)>,
    /// Bytes of label values per label name, descending.
    pub memory_by_label: Vec<(String, u64)>,
    /// Series per `name=value` pair, descending.
    pub series_by_pair: Vec<(String, u64)>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    opts: Options,
    head: RwLock<Head>,
    wal: Mutex<Wal>,
    blocks: RwLock<Vec<Arc<Block>>>,
    metrics: TsdbMetrics,
    last_error: Mutex<Option<String>>,
    closed: AtomicBool,
    /// Samples before this time are out of bounds (already in blocks).
    min_valid: AtomicI64,
    /// Serializes maintenance.
    maint: Mutex<()>,
    /// Samples rejected as too far in the future, and when the last one was.
    future: FutureRejections,
    /// Blocks that could not be opened (damaged files), with why; left on disk untouched.
    skipped_blocks: Vec<String>,
    /// Damaged WAL files found at open, with what was passed over.
    wal_damage: Vec<String>,
    /// Blocks whose chunk data failed to decode in a query, with the first error.
    bad_chunks: Mutex<BTreeMap<String, String>>,
    /// Head series whose creation could not be logged (the WAL write failed after they
    /// were created, and another appender may already refer to them): the next commit
    /// touching one logs it first. Only used with the WAL lock held.
    unlogged: Mutex<HashSet<u32>>,
    _lock: File,
}

/// The embedded time-series database. Share it behind an `Arc`; all methods take `&self`.
#[derive(Debug)]
pub struct Tsdb {
    inner: Arc<Inner>,
    threads: Mutex<Vec<(mpsc::Sender<()>, JoinHandle<()>)>>,
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io {
        context: context.into(),
        source,
    }
}

fn block_err(e: BlockError) -> Error {
    match e {
        BlockError::Io { path, source } => Error::Io {
            context: format!("block file {}", path.display()),
            source,
        },
        BlockError::Corrupt { path, what } => Error::Io {
            context: format!("block file {}", path.display()),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, what),
        },
    }
}

fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

fn spawn_loop(
    name: &str,
    every: Duration,
    inner: Arc<Inner>,
    f: fn(&Inner),
) -> Result<(mpsc::Sender<()>, JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel::<()>();
    let handle = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
                f(&inner);
            }
        })
        .map_err(io_err(format!("starting the {name} thread")))?;
    Ok((tx, handle))
}

impl Tsdb {
    /// Opens the database in `dir` (created if absent): loads blocks and replays the WAL.
    /// Takes an exclusive lock on the directory. Registers metrics in `registry`.
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
        let (blocks, skipped_blocks) = load_blocks(&dir.join("blocks"))?;
        metrics.blocks_skipped.set(skipped_blocks.len() as i64);
        // Imported blocks do not bound the head: the WAL may hold samples in their range.
        let min_valid = blocks
            .iter()
            .filter(|b| !b.meta.imported)
            .map(|b| b.meta.max_time)
            .max()
            .unwrap_or(i64::MIN);
        let mut head = Head::new(ms(opts.block_range));
        let wal_dir = dir.join("wal");
        let started = std::time::Instant::now();
        let mut replayed = 0u64;
        let (wal, replay) = Wal::open(&wal_dir, opts.wal_segment_size, |rec| match rec {
            Record::Series { sref, labels } => {
                if sref as u32 >= head.next_ref() {
                    head.create(sref as u32, &labels);
                }
            }
            Record::Samples(samples) => {
                for (r, t, v) in samples {
                    if t >= min_valid {
                        head.append(r as u32, t, v);
                        replayed += 1;
                    }
                }
            }
            Record::Chunk { sref, data } => {
                let mut s = Vec::new();
                if chunk::decode(&data, &mut s).is_ok() {
                    for x in s.into_iter().filter(|x| x.t >= min_valid) {
                        head.append(sref as u32, x.t, x.v);
                        replayed += 1;
                    }
                }
            }
            Record::Delete { sref, mint, maxt } => head.delete_range(sref as u32, mint, maxt),
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
        for d in &replay.damaged {
            metrics.wal_corruptions.inc();
            tracing::error!(damage = %d, "WAL file damaged; read what was intact and went on with the next");
        }
        let elapsed = started.elapsed();
        tracing::info!(
            records = replay.records,
            segments = replay.segments,
            samples = replayed,
            series = head.num_series(),
            blocks = blocks.len(),
            ?elapsed,
            "WAL replayed"
        );
        metrics.head_series.set(head.num_series() as i64);
        metrics.wal_bytes.set(wal.size() as i64);
        metrics.blocks.set(blocks.len() as i64);
        let inner = Arc::new(Inner {
            dir: dir.to_path_buf(),
            opts: opts.clone(),
            head: RwLock::new(head),
            wal: Mutex::new(wal),
            blocks: RwLock::new(blocks),
            metrics,
            last_error: Mutex::new(None),
            closed: AtomicBool::new(false),
            min_valid: AtomicI64::new(min_valid),
            maint: Mutex::new(()),
            future: FutureRejections::default(),
            skipped_blocks,
            wal_damage: replay.damaged,
            unlogged: Mutex::new(HashSet::new()),
            bad_chunks: Mutex::new(BTreeMap::new()),
            _lock: lock,
        });
        let mut threads = Vec::new();
        if let SyncPolicy::Interval(every) = opts.sync {
            threads.push(spawn_loop(
                "wal-sync",
                every,
                Arc::clone(&inner),
                Inner::sync_wal,
            )?);
        }
        if let Some(every) = opts.maintenance_interval {
            threads.push(spawn_loop(
                "tsdb-maintain",
                every,
                Arc::clone(&inner),
                |i| {
                    if let Err(e) = i.maintain(now_ms()) {
                        tracing::error!(error = %e, "Storage maintenance failed");
                    }
                },
            )?);
        }
        Ok(Self {
            inner,
            threads: Mutex::new(threads),
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Figures about the stored data.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// The head's cardinality; each list keeps its `limit` largest entries.
    pub fn head_status(&self, limit: usize) -> HeadStatus {
        let head = self.inner.head.read().expect("lock poisoned");
        let mut st = HeadStatus {
            num_series: head.num_series() as u64,
            chunk_count: head.chunk_count() as u64,
            ..HeadStatus::default()
        };
        if let Some((a, b)) = head.time_range() {
            st.min_time = Some(a);
            st.max_time = Some(b);
        }
        let mut values: HashMap<&str, (u64, u64)> = HashMap::new();
        for (name, value, n) in head.index.pairs() {
            st.num_label_pairs += 1;
            if name == lookout_model::METRIC_NAME_LABEL {
                st.series_by_metric.push((value.to_string(), n as u64));
            }
            st.series_by_pair
                .push((format!("{name}={value}"), n as u64));
            let e = values.entry(name).or_default();
            e.0 += 1;
            e.1 += (value.len() * n) as u64;
        }
        st.values_by_label = values.iter().map(|(k, v)| (k.to_string(), v.0)).collect();
        st.memory_by_label = values.iter().map(|(k, v)| (k.to_string(), v.1)).collect();
        for list in [
            &mut st.series_by_metric,
            &mut st.values_by_label,
            &mut st.memory_by_label,
            &mut st.series_by_pair,
        ] {
            list.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            list.truncate(limit);
        }
        st
    }

    /// Series and samples in memory: cheap, for health checks (`stats` walks every block).
    pub fn head_counts(&self) -> (u64, u64) {
        let head = self.inner.head.read().expect("lock poisoned");
        (head.num_series() as u64, head.samples)
    }

    /// WAL corruptions repaired since start.
    pub fn wal_corruptions(&self) -> u64 {
        self.inner.metrics.wal_corruptions.get()
    }

    /// What is wrong without stopping the store (the `storage` health check shows these
    /// as degraded): samples rejected as too far in the future in the last
    /// [`WARNING_WINDOW`], blocks skipped as damaged, WAL damage repaired at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(msg) = self.inner.future.recent(now_ms()) {
            out.push(msg);
        }
        for b in &self.inner.skipped_blocks {
            out.push(format!("block skipped: {b}"));
        }
        for d in &self.inner.wal_damage {
            out.push(format!("WAL damaged: {d}"));
        }
        for (id, e) in self.inner.bad_chunks.lock().expect("lock poisoned").iter() {
            out.push(format!(
                "block {id}: damaged chunk data, its samples are skipped: {e}"
            ));
        }
        out
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

    /// Cuts blocks from the head, compacts blocks and applies retention as of `now_ms`.
    /// The background thread calls this every `maintenance_interval`.
    pub fn maintain(&self, now_ms: i64) -> Result<()> {
        self.inner.maintain(now_ms)
    }

    /// Writes everything in the head into blocks (used by import and tests), then
    /// checkpoints the WAL.
    pub fn flush_head(&self) -> Result<()> {
        let _g = self.inner.maint.lock().expect("lock poisoned");
        loop {
            let range = self.inner.head.read().expect("lock poisoned").time_range();
            let Some((lo, _)) = range else { break };
            let r = ms(self.inner.opts.block_range);
            let start = lo.div_euclid(r) * r;
            self.inner.cut_block(start, start + r)?;
        }
        self.inner.checkpoint()
    }

    /// Deletes the samples of series matching `matchers` in `[mint, maxt]`, in the head
    /// (logged to the WAL) and in blocks (rewritten). Returns the number of series touched.
    pub fn delete_series(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<usize> {
        self.inner.delete_series(matchers, mint, maxt)
    }

    /// Stops background threads, fsyncs the WAL and refuses further writes.
    pub fn close(&self) -> Result<()> {
        for (tx, handle) in self.threads.lock().expect("lock poisoned").drain(..) {
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

/// Opens every block in `dir`. A block another block names as a parent is what a crash
/// left behind between writing its replacement and removing it: it is removed. A block
/// that does not open (a damaged file) is skipped, left on disk and reported; the rest
/// are served.
fn load_blocks(dir: &Path) -> Result<(Vec<Arc<Block>>, Vec<String>)> {
    std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
    let mut blocks = Vec::new();
    let mut skipped = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(io_err(format!("reading {}", dir.display())))?;
    for e in entries {
        let e = e.map_err(io_err(format!("reading {}", dir.display())))?;
        let name = e.file_name().to_string_lossy().to_string();
        if name.ends_with(".tmp") {
            // A block whose writing was interrupted: never renamed, never used.
            let _ = std::fs::remove_dir_all(e.path());
            continue;
        }
        if !e.path().join("meta.json").exists() {
            continue;
        }
        match Block::open(&e.path()) {
            Ok(b) => blocks.push(Arc::new(b)),
            Err(err) => {
                tracing::error!(block = %name, error = %err, "Block is damaged; skipping it (its files are left in place)");
                skipped.push(format!("{name}: {err}"));
            }
        }
    }
    let superseded: HashSet<String> = blocks
        .iter()
        .flat_map(|b| b.meta.parents.iter().cloned())
        .collect();
    blocks.retain(|b| {
        if !superseded.contains(&b.meta.id) {
            return true;
        }
        tracing::warn!(block = %b.meta.id, "Block was replaced by compaction or deletion before a crash; removing it");
        let _ = std::fs::remove_dir_all(&b.dir);
        false
    });
    blocks.sort_by_key(|b| (b.meta.min_time, b.meta.max_time));
    Ok((blocks, skipped))
}

/// How long a rejected future sample keeps the `storage` check degraded.
pub const WARNING_WINDOW: Duration = Duration::from_secs(600);

/// Counts samples rejected as too far in the future; logs the first of every minute.
#[derive(Debug, Default)]
struct FutureRejections {
    total: std::sync::atomic::AtomicU64,
    /// Time (ms) of the last rejection and of the last log line.
    last: AtomicI64,
    logged: AtomicI64,
}

impl FutureRejections {
    fn record(&self, series: &str, t: i64, max_t: i64, now: i64) {
        self.total.fetch_add(1, Ordering::Relaxed);
        self.last.store(now, Ordering::Relaxed);
        let logged = self.logged.load(Ordering::Relaxed);
        if (logged == 0 || now - logged >= 60_000)
            && self
                .logged
                .compare_exchange(logged, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                series,
                timestamp = t,
                latest_accepted = max_t,
                rejected_so_far = self.total.load(Ordering::Relaxed),
                "Sample too far in the future rejected (is a target's clock or honor_timestamps wrong?)"
            );
        }
    }

    fn recent(&self, now: i64) -> Option<String> {
        let last = self.last.load(Ordering::Relaxed);
        (last != 0 && now - last < ms(WARNING_WINDOW)).then(|| {
            format!(
                "{} sample(s) rejected as too far in the future since start, the last {}s ago",
                self.total.load(Ordering::Relaxed),
                (now - last) / 1000
            )
        })
    }
}

impl Inner {
    fn sync_wal(&self) {
        let res = self.wal.lock().expect("lock poisoned").sync();
        self.record_io(res.as_ref().err());
    }

    /// Notes chunk data of block `id` that failed to decode: counted every time, logged
    /// once per block.
    fn damaged_chunks(&self, id: &str, e: &BlockError) {
        self.metrics.chunk_read_errors.inc();
        let mut bad = self.bad_chunks.lock().expect("lock poisoned");
        if !bad.contains_key(id) {
            tracing::error!(block = %id, error = %e, "Block chunk data is damaged; skipping the samples it held");
            bad.insert(id.to_string(), e.to_string());
        }
    }

    fn record_io(&self, err: Option<&std::io::Error>) {
        let mut last = self.last_error.lock().expect("lock poisoned");
        match err {
            Some(e) => {
                self.metrics.wal_failures.inc();
                if last.is_none() {
                    tracing::error!(error = %e, "WAL write failed");
                }
                *last = Some(e.to_string());
            }
            None => {
                if last.take().is_some() {
                    tracing::info!("WAL writes succeed again");
                }
            }
        }
    }

    fn stats(&self) -> Stats {
        let mut st = Stats::default();
        let mut seen: HashSet<Labels> = HashSet::new();
        let mut card: HashMap<String, HashSet<String>> = HashMap::new();
        {
            let head = self.head.read().expect("lock poisoned");
            st.head_series = head.num_series() as u64;
            st.head_samples = head.samples;
            if let Some((lo, hi)) = head.time_range() {
                st.min_time = Some(lo);
                st.max_time = Some(hi);
            }
            for r in head.refs() {
                if let Some(ls) = head.labels_of(r) {
                    for l in &ls {
                        card.entry(l.name.clone())
                            .or_default()
                            .insert(l.value.clone());
                    }
                    seen.insert(ls);
                }
            }
        }
        for b in self.blocks.read().expect("lock poisoned").iter() {
            st.blocks += 1;
            st.chunk_bytes += b.chunks_bytes;
            st.index_bytes += b.index_bytes;
            st.block_samples += b.meta.stats.samples;
            if let Some((lo, hi)) = b.data_range {
                st.min_time = Some(st.min_time.map_or(lo, |m| m.min(lo)));
                st.max_time = Some(st.max_time.map_or(hi, |m| m.max(hi)));
            }
            for r in 0..b.num_series() as u32 {
                let ls = b.labels(r);
                for l in &ls {
                    card.entry(l.name.clone())
                        .or_default()
                        .insert(l.value.clone());
                }
                seen.insert(ls);
            }
        }
        st.series = seen.len() as u64;
        st.samples = st.head_samples + st.block_samples;
        st.wal_bytes = self.wal.lock().expect("lock poisoned").size();
        let mut top: Vec<(String, usize)> = card.into_iter().map(|(k, v)| (k, v.len())).collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(10);
        st.top_cardinalities = top;
        st
    }

    fn maintain(&self, now: i64) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        let _g = self.maint.lock().expect("lock poisoned");
        let r = ms(self.opts.block_range);
        let mut cut = false;
        loop {
            let range = self.head.read().expect("lock poisoned").time_range();
            let Some((lo, hi)) = range else { break };
            // Cut by the wall clock, not only by the newest sample: a sample from the
            // future (one that slipped in before the tolerance existed, or a clock that
            // jumped back) must not cut blocks up to it and reject everything after.
            let hi = hi.min(now);
            let start = lo.div_euclid(r) * r;
            if hi - start < r + r / 2 {
                break;
            }
            self.cut_block(start, start + r)?;
            cut = true;
        }
        if cut {
            self.checkpoint()?;
        }
        self.compact()?;
        self.retention(now)?;
        Ok(())
    }

    /// Writes the head's samples in `[start, end)` into a block, then drops them from the head.
    fn cut_block(&self, start: i64, end: i64) -> Result<()> {
        {
            // From now on, appends below `end` are out of bounds: the block will hold them.
            let _head = self.head.write().expect("lock poisoned");
            self.min_valid.fetch_max(end, Ordering::AcqRel);
        }
        let started = std::time::Instant::now();
        let parent = self.dir.join("blocks");
        let mut w = BlockWriter::new(&parent, start, end, 1).map_err(block_err)?;
        let refs = self.head.read().expect("lock poisoned").refs();
        for r in refs {
            let (labels, data) = {
                let head = self.head.read().expect("lock poisoned");
                (head.labels_of(r), head.data(r, start, end - 1))
            };
            let (Some(labels), Some(data)) = (labels, data) else {
                continue;
            };
            let samples = match data.decode(start, end - 1) {
                Ok(s) => s,
                Err(e) => {
                    w.abort();
                    return Err(Error::Io {
                        context: format!("reading head series {labels}"),
                        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                    });
                }
            };
            if let Err(e) = w.add(labels, &samples) {
                w.abort();
                return Err(block_err(e));
            }
        }
        if let Some(meta) = w.finish().map_err(block_err)? {
            let b = Block::open(&parent.join(&meta.id)).map_err(block_err)?;
            tracing::info!(
                id = %meta.id,
                min_time = start,
                max_time = end,
                series = meta.stats.series,
                samples = meta.stats.samples,
                bytes = b.chunks_bytes + b.index_bytes,
                elapsed = ?started.elapsed(),
                "Block written from head"
            );
            let mut blocks = self.blocks.write().expect("lock poisoned");
            blocks.push(Arc::new(b));
            blocks.sort_by_key(|b| (b.meta.min_time, b.meta.max_time));
            self.metrics.blocks.set(blocks.len() as i64);
        }
        let mut head = self.head.write().expect("lock poisoned");
        head.truncate_before(end);
        self.metrics.head_series.set(head.num_series() as i64);
        self.metrics.head_symbols.set(head.num_symbols() as i64);
        Ok(())
    }

    /// Rotates the WAL and replaces every finished segment with a checkpoint of the head.
    ///
    /// The WAL stays locked from the rotation to the end of the snapshot, so the snapshot
    /// holds exactly what segments up to the rotated one hold; the head is only read-locked
    /// (queries go on), sealed chunks are shared rather than copied, and the checkpoint is
    /// written with no lock held.
    fn checkpoint(&self) -> Result<()> {
        let (done, recs) = {
            let mut wal = self.wal.lock().expect("lock poisoned");
            let done = wal.rotate().map_err(io_err("rotating WAL segment"))?;
            let head = self.head.read().expect("lock poisoned");
            let mut recs = Vec::new();
            for r in head.refs() {
                let (Some(labels), Some(s)) = (head.labels_of(r), head.get(r)) else {
                    continue;
                };
                recs.push(Record::Series {
                    sref: r as u64,
                    labels,
                });
                for c in &s.chunks {
                    recs.push(Record::Chunk {
                        sref: r as u64,
                        data: Arc::clone(&c.data),
                    });
                }
                if !s.open.is_empty() {
                    recs.push(Record::Chunk {
                        sref: r as u64,
                        data: s.open.seal().into(),
                    });
                }
                if !s.ooo.is_empty() {
                    recs.push(Record::Samples(
                        s.ooo.iter().map(|x| (r as u64, x.t, x.v)).collect(),
                    ));
                }
            }
            (done, recs)
        };
        let dir = self.wal.lock().expect("lock poisoned").dir().to_path_buf();
        wal::write_checkpoint(&dir, done, recs.into_iter())
            .map_err(io_err("writing WAL checkpoint"))?;
        let size = self.wal.lock().expect("lock poisoned").size();
        self.metrics.wal_bytes.set(size as i64);
        Ok(())
    }

    /// Compacts adjacent blocks inside one 12 h (then 3 d) window once the head has moved past it.
    fn compact(&self) -> Result<()> {
        let r = ms(self.opts.block_range);
        for window in [r * 6, r * 36] {
            loop {
                let group: Vec<Arc<Block>> = {
                    let blocks = self.blocks.read().expect("lock poisoned");
                    // Windows below the newest block's end (imported blocks included) hold
                    // no more head data; queries merge anything that overlaps anyway.
                    let limit = self.min_valid.load(Ordering::Acquire).max(
                        blocks
                            .iter()
                            .map(|b| b.meta.max_time)
                            .max()
                            .unwrap_or(i64::MIN),
                    );
                    let mut groups: BTreeMap<i64, Vec<Arc<Block>>> = BTreeMap::new();
                    for b in blocks.iter() {
                        if b.meta.max_time - b.meta.min_time >= window {
                            continue;
                        }
                        let k = b.meta.min_time.div_euclid(window);
                        if b.meta.max_time > (k + 1) * window {
                            continue;
                        }
                        groups.entry(k).or_default().push(Arc::clone(b));
                    }
                    groups
                        .into_iter()
                        .find(|(k, g)| g.len() >= 2 && (k + 1) * window <= limit)
                        .map(|(_, g)| g)
                        .unwrap_or_default()
                };
                if group.is_empty() {
                    break;
                }
                self.merge_blocks(&group, None)?;
            }
        }
        Ok(())
    }

    /// Writes one block holding every sample of `group` (minus `delete`), then swaps it in.
    fn merge_blocks(
        &self,
        group: &[Arc<Block>],
        delete: Option<(&[Matcher], i64, i64)>,
    ) -> Result<()> {
        let started = std::time::Instant::now();
        let min = group.iter().map(|b| b.meta.min_time).min().unwrap_or(0);
        let max = group.iter().map(|b| b.meta.max_time).max().unwrap_or(0);
        let level =
            group.iter().map(|b| b.meta.level).max().unwrap_or(1) + u32::from(delete.is_none());
        let parent = self.dir.join("blocks");
        let mut w = BlockWriter::new(&parent, min, max, level).map_err(block_err)?;
        w.set_parents(group.iter().map(|b| b.meta.id.clone()).collect());
        w.set_imported(group.iter().all(|b| b.meta.imported));
        let all = vec![
            Matcher::new(
                lookout_model::MatchOp::Regex,
                lookout_model::METRIC_NAME_LABEL,
                ".*",
            )
            .expect("valid regex"),
        ];
        let mut labels: BTreeMap<Labels, Vec<(usize, u32)>> = BTreeMap::new();
        for (i, b) in group.iter().enumerate() {
            for r in b.select(&all) {
                labels.entry(b.labels(r)).or_default().push((i, r));
            }
        }
        let deleted: HashSet<Labels> = match delete {
            Some((ms_, _, _)) => group
                .iter()
                .flat_map(|b| {
                    b.select(ms_)
                        .into_iter()
                        .map(|r| b.labels(r))
                        .collect::<Vec<_>>()
                })
                .collect(),
            None => HashSet::new(),
        };
        let mut cache = PageCache::default();
        for (ls, refs) in labels {
            let mut samples: Vec<Sample> = Vec::new();
            for (i, r) in refs {
                let s = group[i]
                    .samples(r, i64::MIN, i64::MAX, &mut cache)
                    .map_err(block_err)?;
                samples = head::merge(samples, s);
            }
            if let Some((_, dmin, dmax)) = delete
                && deleted.contains(&ls)
            {
                samples.retain(|s| s.t < dmin || s.t > dmax);
            }
            w.add(ls, &samples).map_err(block_err)?;
        }
        let meta = w.finish().map_err(block_err)?;
        let new = match &meta {
            Some(m) => Some(Arc::new(
                Block::open(&parent.join(&m.id)).map_err(block_err)?,
            )),
            None => None,
        };
        {
            let mut blocks = self.blocks.write().expect("lock poisoned");
            blocks.retain(|b| !group.iter().any(|g| Arc::ptr_eq(b, g)));
            if let Some(n) = &new {
                blocks.push(Arc::clone(n));
            }
            blocks.sort_by_key(|b| (b.meta.min_time, b.meta.max_time));
            self.metrics.blocks.set(blocks.len() as i64);
        }
        for b in group {
            let _ = std::fs::remove_dir_all(&b.dir);
        }
        self.metrics.compactions.inc();
        tracing::info!(
            sources = group.len(),
            min_time = min,
            max_time = max,
            level,
            elapsed = ?started.elapsed(),
            "Blocks compacted"
        );
        Ok(())
    }

    fn retention(&self, now: i64) -> Result<()> {
        let cutoff = now.saturating_sub(ms(self.opts.retention));
        let mut doomed: Vec<Arc<Block>> = Vec::new();
        {
            let mut blocks = self.blocks.write().expect("lock poisoned");
            blocks.retain(|b| {
                let keep = b.meta.max_time > cutoff;
                if !keep {
                    doomed.push(Arc::clone(b));
                }
                keep
            });
            if let Some(limit) = self.opts.retention_size {
                let wal = self.wal.lock().expect("lock poisoned").size();
                let mut total: u64 = wal
                    + blocks
                        .iter()
                        .map(|b| b.chunks_bytes + b.index_bytes)
                        .sum::<u64>();
                while total > limit && !blocks.is_empty() {
                    let b = blocks.remove(0);
                    total -= b.chunks_bytes + b.index_bytes;
                    doomed.push(b);
                }
            }
            self.metrics.blocks.set(blocks.len() as i64);
        }
        for b in &doomed {
            tracing::info!(id = %b.meta.id, max_time = b.meta.max_time, "Block deleted by retention");
            std::fs::remove_dir_all(&b.dir)
                .map_err(io_err(format!("deleting {}", b.dir.display())))?;
        }
        Ok(())
    }

    fn delete_series(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<usize> {
        let _g = self.maint.lock().expect("lock poisoned");
        let mut touched: HashSet<Labels> = HashSet::new();
        {
            // The WAL before the head, as commits take them; the deletion is logged (and
            // fsynced) with only a read lock on the head, then applied.
            let mut wal = self.wal.lock().expect("lock poisoned");
            let refs = self.head.read().expect("lock poisoned").select(matchers);
            let recs: Vec<Record> = refs
                .iter()
                .map(|r| Record::Delete {
                    sref: *r as u64,
                    mint,
                    maxt,
                })
                .collect();
            if !recs.is_empty() {
                let res = wal.append(&recs).and_then(|()| wal.sync());
                self.record_io(res.as_ref().err());
                res.map_err(io_err("logging deletion to the WAL"))?;
            }
            let mut head = self.head.write().expect("lock poisoned");
            drop(wal);
            for r in refs {
                if let Some(ls) = head.labels_of(r) {
                    touched.insert(ls);
                }
                head.delete_range(r, mint, maxt);
            }
        }
        let affected: Vec<Arc<Block>> = self
            .blocks
            .read()
            .expect("lock poisoned")
            .iter()
            .filter(|b| b.meta.min_time <= maxt && b.meta.max_time > mint)
            .filter(|b| {
                let refs = b.select(matchers);
                refs.iter().for_each(|r| {
                    touched.insert(b.labels(*r));
                });
                refs.iter().any(|r| b.overlaps(*r, mint, maxt))
            })
            .cloned()
            .collect();
        for b in affected {
            self.merge_blocks(std::slice::from_ref(&b), Some((matchers, mint, maxt)))?;
        }
        Ok(touched.len())
    }
}

impl Appendable for Tsdb {
    fn appender(&self) -> Box<dyn Appender + '_> {
        Box::new(TsdbAppender {
            db: &self.inner,
            max_t: now_ms().saturating_add(ms(self.inner.opts.future_tolerance)),
            pending: Vec::new(),
            new_labels: Vec::new(),
            new_index: HashMap::new(),
            newest: HashMap::new(),
        })
    }
}

/// A series in a batch: an existing head series, or one the batch will create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Ref(u32),
    New(u32),
}

struct TsdbAppender<'a> {
    db: &'a Inner,
    /// The latest timestamp accepted: the wall clock when the appender was made plus the
    /// future tolerance.
    max_t: i64,
    pending: Vec<(Key, Sample)>,
    /// Labels of series this batch creates, by `Key::New` index.
    new_labels: Vec<Labels>,
    new_index: HashMap<Labels, u32>,
    /// Newest timestamp per series in this batch.
    newest: HashMap<Key, i64>,
}

impl TsdbAppender<'_> {
    fn check_labels(&self, labels: &Labels) -> Result<()> {
        let lim = &self.db.opts.limits;
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
        let limit = |what, limit, detail: String| {
            self.db.metrics.limit_rejections.inc();
            Err(Error::LimitExceeded {
                what,
                limit,
                detail,
            })
        };
        // The configured limits, capped by what a WAL series record can hold.
        let max_labels = lim.max_labels.min(wal::MAX_LABELS);
        let max_name = lim.max_label_name_len.min(wal::MAX_LABEL_NAME);
        if labels.len() > max_labels {
            return limit(
                "labels per series",
                max_labels,
                format!("{} has {} labels", short(labels), labels.len()),
            );
        }
        let bytes: usize = labels.iter().map(|l| l.name.len() + l.value.len()).sum();
        if bytes > wal::MAX_SERIES_BYTES {
            return limit(
                "label bytes per series",
                wal::MAX_SERIES_BYTES,
                format!("{} has {bytes} bytes of labels", short(labels)),
            );
        }
        for l in labels {
            if l.name.len() > max_name {
                return limit(
                    "label name length",
                    max_name,
                    format!("label name of {} bytes in {}", l.name.len(), short(labels)),
                );
            }
            if l.value.len() > lim.max_label_value_len {
                return limit(
                    "label value length",
                    lim.max_label_value_len,
                    format!(
                        "value of label {:?} has {} bytes in {}",
                        l.name,
                        l.value.len(),
                        short(labels)
                    ),
                );
            }
        }
        Ok(())
    }
}

/// A label set shortened for error messages.
fn short(ls: &Labels) -> String {
    let s = ls.to_string();
    if s.len() > 200 {
        let cut = s.char_indices().nth(200).map(|(i, _)| i).unwrap_or(s.len());
        format!("{}…", &s[..cut])
    } else {
        s
    }
}

/// Classifies `s` for a series whose head holds samples (via `head`) and which already has
/// `batch` samples in this appender.
fn classify(head: &Head, r: Option<u32>, batch: &[Sample], s: Sample) -> Order {
    if let Some(b) = batch.iter().find(|b| b.t == s.t) {
        return if b.v.to_bits() == s.v.to_bits() {
            Order::Duplicate
        } else {
            Order::Conflict
        };
    }
    let head_order = r.map_or(Order::Newest, |r| head.order(r, s.t, s.v));
    match head_order {
        Order::Newest if batch.iter().any(|b| b.t > s.t) => Order::Older,
        other => other,
    }
}

impl Appender for TsdbAppender<'_> {
    fn append(&mut self, labels: &Labels, t: i64, v: f64) -> Result<SeriesRef> {
        let db = self.db;
        if db.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if t > self.max_t {
            db.metrics.rejected.inc();
            db.metrics.future_rejections.inc();
            let series = short(labels);
            db.future.record(&series, t, self.max_t, now_ms());
            return Err(Error::TooFarInFuture {
                series,
                t,
                max_t: self.max_t,
            });
        }
        let s = Sample::new(t, v);
        let min_valid = db.min_valid.load(Ordering::Acquire);
        let head = db.head.read().expect("lock poisoned");
        let r = head.get_ref(labels);
        let key = match r {
            Some(r) => Some(Key::Ref(r)),
            None => self.new_index.get(labels).map(|i| Key::New(*i)),
        };
        if key.is_none() {
            self.check_labels(labels)?;
            if let Some(max) = db.opts.limits.max_series
                && head.num_series() + self.new_labels.len() >= max
            {
                db.metrics.limit_rejections.inc();
                return Err(Error::LimitExceeded {
                    what: "series",
                    limit: max,
                    detail: format!("cannot add {}", short(labels)),
                });
            }
        }
        if t < min_valid {
            db.metrics.rejected.inc();
            return Err(Error::OutOfBounds {
                series: short(labels),
                t,
                min_t: min_valid,
            });
        }
        let batch_newest = key.and_then(|k| self.newest.get(&k).copied());
        // Only a sample not after this batch's newest needs the batch's other samples.
        let batch: Vec<Sample> = match (key, batch_newest) {
            (Some(k), Some(n)) if t <= n => self
                .pending
                .iter()
                .filter(|(pk, _)| *pk == k)
                .map(|(_, x)| *x)
                .collect(),
            _ => Vec::new(),
        };
        match classify(&head, r, &batch, s) {
            Order::Newest if batch_newest.is_none_or(|n| t > n) => {}
            Order::Newest | Order::Older => {
                let newest = r
                    .and_then(|r| head.get(r))
                    .and_then(|m| m.max_t())
                    .into_iter()
                    .chain(batch_newest)
                    .max()
                    .unwrap_or(t);
                if t < newest - ms(db.opts.ooo_window) {
                    db.metrics.rejected.inc();
                    return Err(Error::OutOfOrder {
                        series: short(labels),
                        t,
                        last_t: newest,
                    });
                }
                db.metrics.ooo_accepted.inc();
            }
            Order::Duplicate => return Ok(r.map_or(u64::MAX, u64::from)),
            Order::Conflict => {
                db.metrics.rejected.inc();
                return Err(Error::DuplicateSample {
                    series: short(labels),
                    t,
                });
            }
        }
        drop(head);
        let key = key.unwrap_or_else(|| {
            let i = self.new_labels.len() as u32;
            self.new_labels.push(labels.clone());
            self.new_index.insert(labels.clone(), i);
            Key::New(i)
        });
        let e = self.newest.entry(key).or_insert(t);
        *e = (*e).max(t);
        self.pending.push((key, s));
        Ok(r.map_or(u64::MAX, u64::from))
    }

    /// Committers take the WAL first, so they commit one at a time in log order. The
    /// head's write lock is held twice, briefly: to create the batch's series and check
    /// its samples against the head, then to apply them; the WAL write and its fsync
    /// happen in between with the head unlocked, so queries never wait for the disk. No
    /// other commit can run between the check and the apply (the WAL lock is held), so the
    /// check still holds; a block cut in between only raises `min_valid`, re-checked.
    fn commit(self: Box<Self>) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let db = self.db;
        let mut wal = db.wal.lock().expect("lock poisoned");
        let mut unlogged = db.unlogged.lock().expect("lock poisoned");
        let mut recs = Vec::new();
        let mut created: Vec<u32> = Vec::new();
        let mut relogged: Vec<u32> = Vec::new();
        {
            let mut head = db.head.write().expect("lock poisoned");
            let min_valid = db.min_valid.load(Ordering::Acquire);
            if !unlogged.is_empty() {
                for (key, _) in &self.pending {
                    if let Key::Ref(r) = key
                        && unlogged.contains(r)
                        && !relogged.contains(r)
                        && let Some(labels) = head.labels_of(*r)
                    {
                        relogged.push(*r);
                        recs.push(Record::Series {
                            sref: u64::from(*r),
                            labels,
                        });
                    }
                }
            }
            // Resolve the series this batch creates (another appender may have created them).
            let mut new_refs = Vec::with_capacity(self.new_labels.len());
            for ls in &self.new_labels {
                let r = match head.get_ref(ls) {
                    Some(r) => r,
                    None => {
                        let r = head.next_ref();
                        head.create(r, ls);
                        created.push(r);
                        recs.push(Record::Series {
                            sref: r as u64,
                            labels: ls.clone(),
                        });
                        r
                    }
                };
                new_refs.push(r);
            }
            let mut batch = Vec::with_capacity(self.pending.len());
            for (key, s) in &self.pending {
                let r = match key {
                    Key::Ref(r) => *r,
                    Key::New(i) => new_refs[*i as usize],
                };
                if s.t < min_valid {
                    db.metrics.rejected.inc();
                    continue;
                }
                // Re-check against the head: another appender may have committed since.
                // Samples of this batch were already checked against each other.
                match head.order(r, s.t, s.v) {
                    Order::Newest | Order::Older => batch.push((r as u64, s.t, s.v)),
                    Order::Duplicate => {}
                    Order::Conflict => {
                        db.metrics.rejected.inc();
                    }
                }
            }
            recs.push(Record::Samples(batch));
        }
        let mut res = wal.append(&recs);
        if res.is_ok() && db.opts.sync == SyncPolicy::Always {
            res = wal.sync();
        }
        db.record_io(res.as_ref().err());
        if let Err(e) = res {
            // The series stay (another appender may already refer to them) and are
            // logged by the next commit that uses them.
            unlogged.extend(created);
            return Err(io_err("writing WAL")(e));
        }
        for r in relogged {
            unlogged.remove(&r);
        }
        drop(unlogged);
        db.metrics.wal_bytes.set(wal.size() as i64);
        let Some(Record::Samples(batch)) = recs.pop() else {
            unreachable!("pushed above")
        };
        let mut head = db.head.write().expect("lock poisoned");
        drop(wal);
        let min_valid = db.min_valid.load(Ordering::Acquire);
        let mut applied = 0u64;
        for (r, t, v) in &batch {
            if *t >= min_valid {
                head.append(*r as u32, *t, *v);
                applied += 1;
            }
        }
        db.metrics.appended.inc_by(applied);
        db.metrics.head_series.set(head.num_series() as i64);
        Ok(())
    }

    fn rollback(self: Box<Self>) {}
}

impl Queryable for Tsdb {
    fn querier(&self, mint: i64, maxt: i64) -> Result<Box<dyn Querier + '_>> {
        let blocks: Vec<Arc<Block>> = self
            .inner
            .blocks
            .read()
            .expect("lock poisoned")
            .iter()
            .filter(|b| b.meta.max_time > mint && b.meta.min_time <= maxt)
            .cloned()
            .collect();
        Ok(Box::new(TsdbQuerier {
            db: &self.inner,
            blocks,
            mint,
            maxt,
        }))
    }
}

struct TsdbQuerier<'a> {
    db: &'a Inner,
    blocks: Vec<Arc<Block>>,
    mint: i64,
    maxt: i64,
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
        // Each series' parts (blocks in time order, then the head), joined at the end so
        // the common case (disjoint, ordered parts) copies each sample once.
        let mut out: BTreeMap<Labels, Vec<Vec<Sample>>> = BTreeMap::new();
        let mut cache = PageCache::default();
        for b in &self.blocks {
            if b.meta.max_time <= lo || b.meta.min_time > hi {
                continue;
            }
            for r in b.select(matchers) {
                if !b.overlaps(r, lo, hi) {
                    continue;
                }
                let s = match b.samples(r, lo, hi, &mut cache) {
                    Ok(s) => s,
                    Err(e) => {
                        // A damaged page costs its series' samples in this block, not
                        // the query.
                        self.db.damaged_chunks(&b.meta.id, &e);
                        continue;
                    }
                };
                let s = match &hints.grid {
                    Some(g) => g.thin(&s),
                    None => s,
                };
                if s.is_empty() {
                    continue;
                }
                out.entry(b.labels(r)).or_default().push(s);
            }
        }
        let datas: Vec<(Labels, head::SeriesData)> = {
            let head = self.db.head.read().expect("lock poisoned");
            head.select(matchers)
                .into_iter()
                .filter(|r| head.overlaps(*r, lo, hi))
                .filter_map(|r| Some((head.labels_of(r)?, head.data(r, lo, hi)?)))
                .collect()
        };
        for (ls, d) in datas {
            let s = d.decode(lo, hi).map_err(|e| Error::Io {
                context: format!("decoding head chunk of {ls}"),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })?;
            // Parts thinned apart keep, together, the newest sample before every point.
            let s = match &hints.grid {
                Some(g) => g.thin(&s),
                None => s,
            };
            if s.is_empty() {
                continue;
            }
            out.entry(ls).or_default().push(s);
        }
        Ok(out
            .into_iter()
            .map(|(labels, parts)| Series {
                labels,
                samples: head::join(parts),
            })
            .collect())
    }

    fn series_labels(&self, matchers: &[Matcher]) -> Result<Vec<Labels>> {
        if matchers.is_empty() {
            return Ok(Vec::new());
        }
        // From the indexes and chunk time ranges only: no sample is decoded.
        let mut out: Vec<Labels> = Vec::new();
        for b in &self.blocks {
            out.extend(
                b.select(matchers)
                    .into_iter()
                    .filter(|r| b.overlaps(*r, self.mint, self.maxt))
                    .map(|r| b.labels(r)),
            );
        }
        {
            let head = self.db.head.read().expect("lock poisoned");
            out.extend(
                head.select(matchers)
                    .into_iter()
                    .filter(|r| head.overlaps(*r, self.mint, self.maxt))
                    .filter_map(|r| head.labels_of(r)),
            );
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>> {
        Ok(self.collect_labels(
            matchers,
            |b, refs| b.label_names(refs),
            |h, refs| h.label_names(refs),
        ))
    }

    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>> {
        Ok(self.collect_labels(
            matchers,
            |b, refs| b.label_values(name, refs),
            |h, refs| h.label_values(name, refs),
        ))
    }
}

impl TsdbQuerier<'_> {
    /// Label names or values across blocks and head, of the series matching `matchers`
    /// (every series when empty), sorted and deduplicated.
    fn collect_labels(
        &self,
        matchers: &[Matcher],
        from_block: impl Fn(&Block, Option<&[u32]>) -> Vec<String>,
        from_head: impl Fn(&Head, &[u32]) -> Vec<String>,
    ) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for b in &self.blocks {
            if matchers.is_empty() {
                out.extend(from_block(b, None));
            } else {
                out.extend(from_block(b, Some(&b.select(matchers))));
            }
        }
        let head = self.db.head.read().expect("lock poisoned");
        let refs: Vec<u32> = if matchers.is_empty() {
            head.refs()
        } else {
            head.select(matchers)
        };
        let refs: Vec<u32> = refs
            .into_iter()
            .filter(|r| head.overlaps(*r, self.mint, self.maxt))
            .collect();
        out.extend(from_head(&head, &refs));
        out.sort();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod hardening_tests;
#[cfg(test)]
mod tests;
