//! Lookout's embedded time-series database.
//!
//! [`Tsdb`] implements the storage seams ([`lookout_storage::Appendable`],
//! [`lookout_storage::Queryable`]); nothing above
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
//! - **Exemplars** (`exemplars`): a bounded ring beside the head, logged in the WAL and
//!   its checkpoints.
//!
//! The code is split as Prometheus's tsdb is: `options` (what a database is opened
//! with), `appender` (checks, then WAL before head), `querier` (blocks and head merged),
//! `maintain` (block cuts, checkpoints, compaction, retention, deletion); this file holds
//! the [`Tsdb`] type, opening, closing and the background threads.
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

mod appender;
mod bits;
mod block;
mod block_index;
mod chunk;
mod exemplars;
mod hchunk;
mod head;
mod import;
mod maintain;
mod metrics;
mod options;
mod postings;
mod querier;
mod tiers;
mod wal;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use lookout_model::{Labels, Matcher, now_ms};
use lookout_storage::{Error, Result};
use prometheus_client::registry::Registry;

use block::Block;
pub use block::{BlockError, BlockMeta, BlockStats};
pub use chunk::CorruptChunk;
use head::Head;
pub use import::{ImportError, ImportSummary, Importer};
pub use lookout_model::status::HeadStatus;
use metrics::TsdbMetrics;
pub use options::{Limits, Options, RetentionRule, SyncPolicy, Tier};

/// The time (ms) one tier block spans for a tier of `resolution` over blocks of
/// `block_range` (ms): a tier's source must keep its data that much longer than the
/// tier's `after`, or a span is rolled up after part of it was deleted.
pub fn tier_span(resolution: i64, block_range: i64) -> i64 {
    tiers::span(resolution, block_range)
}
use wal::{Record, Wal};

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
    /// The series each retention rule keeps (each series counted for the first rule
    /// matching it), then those the global retention keeps; empty without rules.
    pub retention: Vec<RetentionStat>,
    /// The downsampling tiers, finest first; empty without any.
    pub tiers: Vec<TierStat>,
}

/// What one downsampling tier holds.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct TierStat {
    /// Its window, in seconds.
    pub resolution_seconds: u64,
    /// How old data is when it is rolled up into the tier, in seconds.
    pub after_seconds: u64,
    /// How long it keeps windows, in seconds.
    pub retention_seconds: u64,
    /// Its blocks.
    pub blocks: u64,
    /// Windows kept (each series' window counts once).
    pub windows: u64,
    /// Bytes of its blocks' chunks and indexes.
    pub bytes: u64,
    /// The earliest and latest window ends, if any (ms).
    pub range: Option<(i64, i64)>,
}

/// The series one retention rule (or the global retention) applies to.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RetentionStat {
    /// The rule's selector, or `(the rest)` for the global retention.
    pub selector: String,
    /// How long its series are kept, in seconds.
    pub retention_seconds: u64,
    /// Distinct series stored that it applies to.
    pub series: u64,
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
    /// Exemplars; taken after the WAL lock (and after the head's, when both are held).
    exemplars: Mutex<exemplars::Exemplars>,
    /// Downsampling tiers, finest first ([`Options::downsampling`]).
    tiers: Vec<tiers::Level>,
    /// Time ranges `[min, max)` whose samples a deletion changed since the start, and
    /// when (ms since the epoch): a block a deletion emptied leaves no block to say so,
    /// and the tiers over it are made again all the same. Kept in memory only (the
    /// newest [`MAX_CHANGES`]).
    changes: Mutex<Vec<(i64, i64, i64)>>,
    _lock: File,
}

/// Most deletions [`Inner::changes`] remembers.
const MAX_CHANGES: usize = 10_000;

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
        block::set_shared_page_budget(opts.page_cache_bytes);
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
        let (blocks, mut skipped_blocks) = load_blocks(&dir.join("blocks"))?;
        let tiers = opts
            .downsampling
            .iter()
            .map(|t| tiers::Level::open(dir, t, ms(opts.block_range), &mut skipped_blocks))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(io_err(format!("opening the tiers in {}", dir.display())))?;
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
        let mut ring = exemplars::Exemplars::new(opts.max_exemplars);
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
            Record::Chunk { sref, data } if data.first() == Some(&hchunk::ENC_HISTOGRAM) => {
                let mut s = Vec::new();
                if hchunk::decode(&data, &mut s).is_ok() {
                    for x in s.into_iter().filter(|x| x.t >= min_valid) {
                        head.append_histogram(sref as u32, x.t, x.h);
                        replayed += 1;
                    }
                }
            }
            Record::Histograms(hs) => {
                for (r, x) in hs {
                    if x.t >= min_valid {
                        head.append_histogram(r as u32, x.t, x.h);
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
            Record::Exemplars(es) => {
                for (r, e) in es {
                    if let Some(series) = head.labels_of(r as u32) {
                        // A repeat (the checkpoint and a later segment both hold it) or
                        // an older one is dropped, as when it was appended.
                        let _ = ring.add(&series, e);
                    }
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
        metrics.set_blocks(&blocks);
        metrics.exemplars.set(ring.len() as i64);
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
            exemplars: Mutex::new(ring),
            tiers,
            changes: Mutex::new(Vec::new()),
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

    /// The oldest sample's time, from the blocks' ranges and the head's (cheap: no
    /// index is walked); `None` when the store is empty.
    pub fn min_time(&self) -> Option<i64> {
        let head = self.inner.head.read().expect("lock poisoned").time_range();
        let blocks = self.inner.blocks.read().expect("lock poisoned");
        blocks
            .iter()
            .filter_map(|b| b.data_range.map(|r| r.0))
            .chain(head.map(|r| r.0))
            .min()
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
    let (mut blocks, failed) = block::scan_dirs(dir, |p| Block::open(p).map(Arc::new))
        .map_err(io_err(format!("reading {}", dir.display())))?;
    let mut skipped = Vec::new();
    for (name, err) in failed {
        tracing::error!(block = %name, error = %err, "Block is damaged; skipping it (its files are left in place)");
        skipped.push(format!("{name}: {err}"));
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
        let rules = &self.opts.retention_rules;
        if !rules.is_empty() {
            let mut counts = vec![0u64; rules.len() + 1];
            for ls in &seen {
                let i = rules
                    .iter()
                    .position(|r| r.matches(ls))
                    .unwrap_or(rules.len());
                counts[i] += 1;
            }
            st.retention = rules
                .iter()
                .map(|r| (r.selector.clone(), r.retention))
                .chain([("(the rest)".to_string(), self.opts.retention)])
                .zip(counts)
                .map(|((selector, d), series)| RetentionStat {
                    selector,
                    retention_seconds: d.as_secs(),
                    series,
                })
                .collect();
        }
        st.tiers = self
            .tiers
            .iter()
            .map(|l| {
                let blocks = l.blocks.read().expect("lock poisoned");
                TierStat {
                    resolution_seconds: (l.resolution / 1000) as u64,
                    after_seconds: (l.after / 1000) as u64,
                    retention_seconds: (l.retention / 1000) as u64,
                    blocks: blocks.len() as u64,
                    windows: blocks
                        .iter()
                        .map(|b| b.block.meta.stats.samples / tiers::FIELDS as u64)
                        .sum(),
                    bytes: blocks
                        .iter()
                        .map(|b| b.block.chunks_bytes + b.block.index_bytes)
                        .sum(),
                    range: blocks
                        .first()
                        .zip(blocks.last())
                        .map(|(a, z)| (a.from, z.to)),
                }
            })
            .collect();
        st.samples = st.head_samples + st.block_samples;
        st.wal_bytes = self.wal.lock().expect("lock poisoned").size();
        let mut top: Vec<(String, usize)> = card.into_iter().map(|(k, v)| (k, v.len())).collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(10);
        st.top_cardinalities = top;
        st
    }
}

#[cfg(test)]
mod hardening_tests;
#[cfg(test)]
mod tests;
