//! The span store: append-only segment files of CRC-framed, zstd-compressed batches, and
//! an in-memory index rebuilt from them at open.
//!
//! # On disk
//!
//! `<dir>/<seq:016>.spans`: the magic `LKSPANS1`, then records, each `len: u32 LE`,
//! `crc32: u32 LE` (of the payload), `payload`: up to 64 spans of one request as JSON,
//! zstd-compressed. A segment is closed at `segment_bytes` and a new one started.
//!
//! Crash safety as the tsdb's WAL: a batch is written to the file (one `write`, no
//! user-space buffer) before it is acknowledged, so it survives the process being killed;
//! it is fsynced within `sync_interval` (power loss). At open, a torn tail of the newest
//! segment is cut; a damaged record elsewhere costs that record, or the rest of its
//! segment when its length cannot be trusted, and is counted.
//!
//! # The index
//!
//! Each segment has an index of its own: one 32-byte entry per span (the segment's
//! numbers for its trace and for its service, operation and kind; its batch; the next
//! span of its trace; start; duration), where each batch is, and its traces' ids with
//! their first and last entries (a list threaded through the entries). About 40 bytes of
//! memory per span with ten spans a trace, the index of a segment gone with it: retention
//! drops whole segments (by age, the newest span in them, and by total size, oldest
//! first) without touching the others. Queries filter entries first and read only the
//! batches of the spans they return (or whose attributes they must check). At open the
//! segments are read on every core, one segment a thread at a time, newest first; with
//! [`TraceStore::open_in_background`] that happens on threads of the store's own while
//! it already takes appends (into a new segment) and answers from what is read.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::span::{Span, TraceId};
use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"LKSPANS1";
/// Spans per record.
const RECORD_SPANS: usize = 64;
/// Most bytes of spans (as JSON) one record holds; a record claiming more is damage.
const MAX_DECODED: usize = 64 << 20;
/// Largest record accepted when reading (a length past it is damage, not data).
const MAX_RECORD: u32 = 256 << 20;

/// The store's settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long spans are kept (by their segment's newest span).
    pub retention: Duration,
    /// Most bytes of segments kept, oldest dropped first; `None`: no bound.
    pub retention_bytes: Option<u64>,
    /// Size at which a segment is closed.
    pub segment_bytes: u64,
    /// How long an acknowledged batch may wait for its fsync.
    pub sync_interval: Duration,
    /// Attributes dropped or hashed before spans are stored.
    pub redact: crate::span::Redaction,
    /// Most series of span metrics (service × operation × kind × status).
    pub max_metric_series: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(7 * 86_400),
            retention_bytes: None,
            segment_bytes: 64 << 20,
            sync_interval: Duration::from_secs(1),
            redact: Default::default(),
            max_metric_series: 10_000,
        }
    }
}

/// Where a span's batch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Loc {
    seg: u64,
    offset: u64,
    len: u32,
}

/// One span in a segment's index (32 bytes).
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The segment's number for its trace.
    trace: u32,
    /// The segment's number for its service, operation and kind.
    key: u32,
    /// Its batch, in the segment's `batches`.
    batch: u32,
    /// The next span of its trace in the segment (`LAST` at the end).
    next: u32,
    start_ns: u64,
    duration_ns: u64,
}

// The index's memory is mostly entries: keep them at 32 bytes.
const _: () = assert!(std::mem::size_of::<Entry>() == 32);

/// No next span of the trace.
const LAST: u32 = u32::MAX;
/// Most spans one segment indexes; a segment reaching it is closed (and spans past it
/// in a foreign file are counted as damage).
const MAX_SEGMENT_SPANS: usize = 1 << 31;

/// Where a batch is in its segment, and its first span's entry.
#[derive(Debug, Clone, Copy)]
struct Batch {
    offset: u64,
    len: u32,
    first: u32,
}

/// A trace's id and its first and last entries in a segment.
#[derive(Debug, Clone, Copy)]
struct TraceSpans {
    id: TraceId,
    first: u32,
    last: u32,
}

/// A segment's file size, newest span end and index.
#[derive(Debug, Default)]
struct Segment {
    bytes: u64,
    max_end_ns: u64,
    batches: Vec<Batch>,
    entries: Vec<Entry>,
    trace_nums: HashMap<TraceId, u32>,
    traces: Vec<TraceSpans>,
    /// Service and operation names by number, each held once (the map shares it).
    names: Vec<Arc<str>>,
    name_ids: HashMap<Arc<str>, u32>,
    /// By key number: service and operation (name numbers) and kind.
    keys: Vec<(u32, u32, u8)>,
    key_nums: HashMap<(u32, u32, u8), u32>,
}

impl Segment {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(i) = self.name_ids.get(s) {
            return *i;
        }
        let i = self.names.len() as u32;
        let name: Arc<str> = Arc::from(s);
        self.names.push(Arc::clone(&name));
        self.name_ids.insert(name, i);
        i
    }

    /// Indexes a batch at `offset` (`len` bytes); returns the spans it could not take.
    fn index(&mut self, spans: &[Span], offset: u64, len: u32) -> usize {
        let room = MAX_SEGMENT_SPANS.saturating_sub(self.entries.len());
        let (spans, refused) = spans.split_at(spans.len().min(room));
        if spans.is_empty() {
            return refused.len();
        }
        let batch = self.batches.len() as u32;
        self.batches.push(Batch {
            offset,
            len,
            first: self.entries.len() as u32,
        });
        for s in spans {
            self.max_end_ns = self
                .max_end_ns
                .max(s.start_ns.saturating_add(s.duration_ns));
            let service = self.intern(&s.service);
            let op = self.intern(&s.name);
            let k = (service, op, s.kind);
            let key = match self.key_nums.get(&k) {
                Some(n) => *n,
                None => {
                    let n = self.keys.len() as u32;
                    self.keys.push(k);
                    self.key_nums.insert(k, n);
                    n
                }
            };
            let n = self.entries.len() as u32;
            let trace = match self.trace_nums.get(&s.trace_id) {
                Some(t) => {
                    let t = *t;
                    let last = self.traces[t as usize].last;
                    self.entries[last as usize].next = n;
                    self.traces[t as usize].last = n;
                    t
                }
                None => {
                    let t = self.traces.len() as u32;
                    self.trace_nums.insert(s.trace_id, t);
                    self.traces.push(TraceSpans {
                        id: s.trace_id,
                        first: n,
                        last: n,
                    });
                    t
                }
            };
            self.entries.push(Entry {
                trace,
                key,
                batch,
                next: LAST,
                start_ns: s.start_ns,
                duration_ns: s.duration_ns,
            });
        }
        refused.len()
    }

    /// Where entry `n`'s span is: its batch and its place in the batch.
    fn place(&self, seq: u64, n: u32) -> (Loc, u32) {
        let b = self.batches[self.entries[n as usize].batch as usize];
        (
            Loc {
                seg: seq,
                offset: b.offset,
                len: b.len,
            },
            n - b.first,
        )
    }

    /// The services and operations (with kinds) it holds, by name.
    fn operations(&self) -> impl Iterator<Item = (&str, &str, u8)> {
        self.keys
            .iter()
            .map(|(s, o, k)| (&*self.names[*s as usize], &*self.names[*o as usize], *k))
    }
}

#[derive(Debug, Default)]
struct Inner {
    segments: BTreeMap<u64, Segment>,
    active: Option<(u64, File)>,
    damaged: u64,
    last_sync: Option<Instant>,
    /// The highest segment number found at open: new segments are numbered past it even
    /// before it is read.
    floor: u64,
    /// Segments found at open are still being read into the index.
    loading: bool,
}

fn lock(inner: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a search asks for (Jaeger's `/api/traces` parameters).
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// The service one span of the trace must belong to.
    pub service: String,
    /// That span's operation, if given.
    pub operation: Option<String>,
    /// Attributes that span must have (on itself or its resource), compared as text;
    /// `error=true` also matches an error status.
    pub tags: Vec<(String, String)>,
    /// Its start, at or after (ns).
    pub start_ns: u64,
    /// Its start, at or before (ns).
    pub end_ns: u64,
    /// Its duration, at least (ns).
    pub min_duration_ns: Option<u64>,
    /// Its duration, at most (ns).
    pub max_duration_ns: Option<u64>,
    /// Most traces returned.
    pub limit: usize,
}

/// Figures of the store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Spans indexed.
    pub spans: u64,
    /// Traces indexed, counted per segment file (a trace whose spans straddle two files
    /// counts in each).
    pub traces: u64,
    /// Segment files.
    pub segments: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Damaged records skipped since open.
    pub damaged: u64,
    /// Segments found at open are still being read (the figures above grow meanwhile).
    pub loading: bool,
}

/// The trace store.
#[derive(Debug)]
pub struct TraceStore {
    dir: PathBuf,
    opts: Options,
    inner: Arc<Mutex<Inner>>,
    metrics: Arc<crate::metrics::SpanMetrics>,
    /// Reads the segments found at open into the index; gives the errors of those it
    /// could not read.
    loader: Mutex<Option<std::thread::JoinHandle<Vec<Error>>>>,
    /// Tells the loader to stop (the store is dropped).
    stop: Arc<AtomicBool>,
}

impl Drop for TraceStore {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // The segments being read are finished (a torn tail cut), no others started.
        let _ = self.wait_loaded();
    }
}

fn seg_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016}.spans"))
}

fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let msg = format!("{what} {}", path.display());
    move |e| Error::Io(format!("{msg}: {e}"))
}

impl TraceStore {
    /// Opens (or creates) the store in `dir`, reading every segment into the index before
    /// it returns; fails with the first segment that cannot be read.
    pub fn open(dir: &Path, opts: Options) -> Result<Self> {
        let store = Self::open_in_background(dir, opts)?;
        match store.wait_loaded().into_iter().next() {
            Some(e) => Err(e),
            None => Ok(store),
        }
    }

    /// Opens (or creates) the store in `dir` and reads its segments into the index on
    /// threads of its own, newest first, so a restart does not wait for them: appends are
    /// taken at once (into a new segment), queries answer from the segments read so far,
    /// retention waits until all are. A segment that cannot be read is logged and costs
    /// only itself.
    pub fn open_in_background(dir: &Path, opts: Options) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
        let mut seqs: Vec<u64> = std::fs::read_dir(dir)
            .map_err(io("reading", dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".spans")?.parse().ok()
            })
            .collect();
        seqs.sort_unstable();
        let inner = Arc::new(Mutex::new(Inner {
            floor: seqs.last().copied().unwrap_or(0),
            loading: !seqs.is_empty(),
            ..Default::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let loader = if seqs.is_empty() {
            None
        } else {
            let (dir, inner, stop) = (dir.to_path_buf(), Arc::clone(&inner), Arc::clone(&stop));
            let h = std::thread::Builder::new()
                .name("trace-index".into())
                .spawn(move || load(&dir, seqs, &inner, &stop))
                .map_err(|e| Error::Io(format!("starting the trace index loader: {e}")))?;
            Some(h)
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            metrics: Arc::new(crate::metrics::SpanMetrics::new(opts.max_metric_series)),
            opts,
            inner,
            loader: Mutex::new(loader),
            stop,
        })
    }

    /// Waits until the segments found at open are read; returns the errors of those that
    /// could not be (each also logged).
    pub fn wait_loaded(&self) -> Vec<Error> {
        let loader = self.loader.lock().unwrap_or_else(|p| p.into_inner()).take();
        match loader {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| vec![Error::Io("the trace index loader panicked".into())]),
            None => Vec::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// The span metrics of what this store took since it opened (a `prometheus-client`
    /// collector to register).
    pub fn span_metrics(&self) -> std::sync::Arc<crate::metrics::SpanMetrics> {
        std::sync::Arc::clone(&self.metrics)
    }

    /// Appends a batch, redacted as configured; when this returns, the spans survive the
    /// process being killed (and, within `sync_interval`, the machine losing power).
    pub fn append(&self, mut spans: Vec<Span>) -> Result<()> {
        if spans.is_empty() {
            return Ok(());
        }
        for s in &mut spans {
            self.opts.redact.apply(s);
        }
        let spans = spans.as_slice();
        // Records of at most RECORD_SPANS spans, so reading one trace back decompresses
        // little besides it; written with one write.
        let mut rec = Vec::new();
        let mut records = Vec::new();
        for chunk in spans.chunks(RECORD_SPANS) {
            let json = serde_json::to_vec(chunk).map_err(|e| Error::Io(e.to_string()))?;
            if json.len() > MAX_DECODED {
                return Err(Error::Invalid(format!(
                    "{} bytes of spans in {} spans, more than a record holds ({MAX_DECODED})",
                    json.len(),
                    chunk.len()
                )));
            }
            let payload = zstd::bulk::compress(&json, 3).map_err(|e| Error::Io(e.to_string()))?;
            let len = u32::try_from(payload.len())
                .ok()
                .filter(|l| *l <= MAX_RECORD)
                .ok_or_else(|| Error::Invalid("a batch too large to store".into()))?;
            records.push((rec.len() as u64, len, chunk));
            rec.extend_from_slice(&len.to_le_bytes());
            rec.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
            rec.extend_from_slice(&payload);
        }

        let mut inner = self.lock();
        let roll = match (&inner.active, inner.segments.last_key_value()) {
            (Some((seq, _)), _) => inner.segments.get(seq).is_some_and(|s| {
                (s.bytes + rec.len() as u64 > self.opts.segment_bytes
                    || s.entries.len() + spans.len() > MAX_SEGMENT_SPANS)
                    && s.bytes > MAGIC.len() as u64
            }),
            (None, _) => true,
        };
        if roll {
            if let Some((_, f)) = inner.active.take() {
                f.sync_data().map_err(io("syncing", &self.dir))?;
            }
            let seq = inner
                .segments
                .keys()
                .next_back()
                .copied()
                .unwrap_or(0)
                .max(inner.floor)
                + 1;
            let path = seg_path(&self.dir, seq);
            let mut f = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)
                .map_err(io("creating", &path))?;
            f.write_all(MAGIC).map_err(io("writing", &path))?;
            inner.segments.insert(
                seq,
                Segment {
                    bytes: MAGIC.len() as u64,
                    ..Default::default()
                },
            );
            inner.active = Some((seq, f));
        }
        let Some((seq, file)) = inner.active.as_mut() else {
            unreachable!("a segment is active after rolling");
        };
        let seq = *seq;
        let path = seg_path(&self.dir, seq);
        if let Err(e) = file.write_all(&rec) {
            // A partial record would be cut at the next open; start a new segment now.
            inner.active = None;
            return Err(io("writing", &path)(e));
        }
        let offset = inner.segments[&seq].bytes;
        inner.segments.get_mut(&seq).expect("active segment").bytes += rec.len() as u64;
        let due = inner
            .last_sync
            .is_none_or(|t| t.elapsed() >= self.opts.sync_interval);
        if due {
            if let Some((_, f)) = &inner.active {
                f.sync_data().map_err(io("syncing", &path))?;
            }
            inner.last_sync = Some(Instant::now());
        }
        let seg = inner.segments.get_mut(&seq).expect("active segment");
        for (at, len, chunk) in records {
            // The segment was rolled above when these would not fit.
            seg.index(chunk, offset + at, len);
        }
        drop(inner);
        self.metrics.observe(spans);
        Ok(())
    }

    /// fsyncs the active segment (for a periodic caller and at shutdown).
    pub fn sync(&self) -> Result<()> {
        let mut inner = self.lock();
        if let Some((_, f)) = &inner.active {
            f.sync_data().map_err(io("syncing", &self.dir))?;
        }
        inner.last_sync = Some(Instant::now());
        Ok(())
    }

    /// Drops segments past the retention (by age at `now_ns`, then by size).
    /// Returns the number of segments removed.
    /// Nothing is dropped while segments found at open are still being read (the oldest
    /// are not known yet).
    pub fn maintain(&self, now_ns: u64) -> Result<usize> {
        let mut inner = self.lock();
        if inner.loading {
            return Ok(0);
        }
        let cutoff = now_ns.saturating_sub(self.opts.retention.as_nanos() as u64);
        let active = inner.active.as_ref().map(|(s, _)| *s);
        let mut drop: Vec<u64> = inner
            .segments
            .iter()
            .filter(|(seq, s)| Some(**seq) != active && s.max_end_ns < cutoff)
            .map(|(seq, _)| *seq)
            .collect();
        if let Some(max) = self.opts.retention_bytes {
            let mut total: u64 = inner
                .segments
                .iter()
                .filter(|(seq, _)| !drop.contains(seq))
                .map(|(_, s)| s.bytes)
                .sum();
            for (seq, s) in &inner.segments {
                if total <= max || Some(*seq) == active {
                    break;
                }
                if !drop.contains(seq) {
                    drop.push(*seq);
                    total -= s.bytes;
                }
            }
        }
        if drop.is_empty() {
            return Ok(0);
        }
        for seq in &drop {
            let path = seg_path(&self.dir, *seq);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("removing", &path)(e)),
            }
            inner.segments.remove(seq);
        }
        Ok(drop.len())
    }

    /// Its settings.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Figures.
    pub fn stats(&self) -> Stats {
        let inner = self.lock();
        Stats {
            spans: inner
                .segments
                .values()
                .map(|s| s.entries.len() as u64)
                .sum(),
            traces: inner.segments.values().map(|s| s.traces.len() as u64).sum(),
            segments: inner.segments.len() as u64,
            bytes: inner.segments.values().map(|s| s.bytes).sum(),
            damaged: inner.damaged,
            loading: inner.loading,
        }
    }

    /// The services with spans, sorted.
    pub fn services(&self) -> Vec<String> {
        let inner = self.lock();
        let v: BTreeSet<&str> = inner
            .segments
            .values()
            .flat_map(|s| s.operations().map(|(svc, _, _)| svc))
            .collect();
        v.into_iter().map(str::to_string).collect()
    }

    /// A service's operations with their span kinds (OTLP's numbers; 0 when unknown),
    /// sorted by name.
    pub fn operations(&self, service: &str) -> Vec<(String, u8)> {
        let inner = self.lock();
        let v: BTreeSet<(&str, u8)> = inner
            .segments
            .values()
            .flat_map(|s| s.operations())
            .filter(|(svc, _, _)| *svc == service)
            .map(|(_, op, kind)| (op, kind))
            .collect();
        v.into_iter().map(|(op, k)| (op.to_string(), k)).collect()
    }

    /// Every stored span of a trace, in start order (at most `max_spans`).
    pub fn trace(&self, id: &TraceId, max_spans: usize) -> Result<Vec<Span>> {
        let wanted: Vec<(Loc, u32)> = {
            let inner = self.lock();
            let mut wanted = Vec::new();
            'segments: for (seq, seg) in &inner.segments {
                let Some(t) = seg.trace_nums.get(id) else {
                    continue;
                };
                let mut n = seg.traces[*t as usize].first;
                while n != LAST {
                    if wanted.len() >= max_spans {
                        break 'segments;
                    }
                    wanted.push(seg.place(*seq, n));
                    n = seg.entries[n as usize].next;
                }
            }
            wanted
        };
        let mut spans = self.load(&wanted)?;
        spans.sort_by_key(|s| (s.start_ns, s.span_id));
        Ok(spans)
    }

    /// The traces with a span matching `q`, newest first (by that span's start).
    pub fn search(&self, q: &Query, max_spans: usize) -> Result<Vec<Vec<Span>>> {
        // Candidates from the index alone, newest first.
        let candidates: Vec<(TraceId, Loc, u32)> = {
            let inner = self.lock();
            // (start, segment, entry), newest first.
            let mut c: Vec<(u64, u64, u32)> = Vec::new();
            for (seq, seg) in &inner.segments {
                // The segment's keys of the service (and operation) asked for.
                let wanted: Vec<bool> = seg
                    .operations()
                    .map(|(svc, op, _)| {
                        svc == q.service && q.operation.as_ref().is_none_or(|o| o == op)
                    })
                    .collect();
                if !wanted.contains(&true) {
                    continue;
                }
                c.extend(
                    seg.entries
                        .iter()
                        .enumerate()
                        .filter(|(_, e)| {
                            wanted[e.key as usize]
                                && e.start_ns >= q.start_ns
                                && e.start_ns <= q.end_ns
                                && q.min_duration_ns.is_none_or(|d| e.duration_ns >= d)
                                && q.max_duration_ns.is_none_or(|d| e.duration_ns <= d)
                        })
                        .map(|(n, e)| (e.start_ns, *seq, n as u32)),
                );
            }
            c.sort_unstable_by_key(|(start, seq, n)| std::cmp::Reverse((*start, *seq, *n)));
            c.iter()
                .map(|(_, seq, n)| {
                    let seg = &inner.segments[seq];
                    let (loc, idx) = seg.place(*seq, *n);
                    (
                        seg.traces[seg.entries[*n as usize].trace as usize].id,
                        loc,
                        idx,
                    )
                })
                .collect()
        };
        let mut found: Vec<TraceId> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        if q.tags.is_empty() {
            for (t, _, _) in &candidates {
                if found.len() >= q.limit {
                    break;
                }
                if seen.insert(*t) {
                    found.push(*t);
                }
            }
        } else {
            // Attributes are in the batches: read candidates a chunk at a time.
            for chunk in candidates.chunks(1024) {
                if found.len() >= q.limit {
                    break;
                }
                let todo: Vec<(Loc, u32)> = chunk
                    .iter()
                    .filter(|(t, _, _)| !seen.contains(t))
                    .map(|(_, l, i)| (*l, *i))
                    .collect();
                let mut spans = self.load(&todo)?;
                spans.sort_by_key(|s| std::cmp::Reverse(s.start_ns));
                for s in spans {
                    if found.len() >= q.limit {
                        break;
                    }
                    if !seen.contains(&s.trace_id) && tags_match(&s, &q.tags) {
                        seen.insert(s.trace_id);
                        found.push(s.trace_id);
                    }
                }
            }
        }
        found.iter().map(|t| self.trace(t, max_spans)).collect()
    }

    /// Reads the spans at these places, each batch once.
    fn load(&self, wanted: &[(Loc, u32)]) -> Result<Vec<Span>> {
        let mut by_batch: BTreeMap<Loc, Vec<u32>> = BTreeMap::new();
        for (loc, idx) in wanted {
            by_batch.entry(*loc).or_default().push(*idx);
        }
        let mut out = Vec::with_capacity(wanted.len());
        let mut file: Option<(u64, File)> = None;
        for (loc, idxs) in by_batch {
            if file.as_ref().is_none_or(|(s, _)| *s != loc.seg) {
                let path = seg_path(&self.dir, loc.seg);
                match File::open(&path) {
                    Ok(f) => file = Some((loc.seg, f)),
                    // Removed by retention since the index was read.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io("opening", &path)(e)),
                }
            }
            let (_, f) = file.as_mut().expect("opened above");
            let mut payload = vec![0u8; loc.len as usize];
            f.seek(SeekFrom::Start(loc.offset + 8))
                .and_then(|_| f.read_exact(&mut payload))
                .map_err(io("reading", &seg_path(&self.dir, loc.seg)))?;
            let mut batch = decode_batch(&payload)?;
            for i in idxs {
                if let Some(s) = batch.get_mut(i as usize) {
                    out.push(std::mem::replace(s, placeholder()));
                }
            }
        }
        Ok(out)
    }
}

fn placeholder() -> Span {
    Span {
        trace_id: [0; 16],
        span_id: [0; 8],
        parent_span_id: None,
        service: String::new(),
        name: String::new(),
        kind: 0,
        start_ns: 0,
        duration_ns: 0,
        status: Default::default(),
        status_message: String::new(),
        attributes: Vec::new(),
        events: Vec::new(),
        resource: Vec::new(),
        scope: String::new(),
    }
}

fn tags_match(s: &Span, tags: &[(String, String)]) -> bool {
    tags.iter().all(|(k, v)| {
        if k == "error" && v == "true" && s.is_error() {
            return true;
        }
        s.attribute(k).is_some_and(|a| a.text() == *v)
    })
}

fn decode_batch(payload: &[u8]) -> Result<Vec<Span>> {
    // One decompression context per thread: a trace read back touches several records.
    thread_local! {
        static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    let json = DCTX
        .with(|d| {
            let mut d = d.borrow_mut();
            if d.is_none() {
                *d = Some(zstd::bulk::Decompressor::new()?);
            }
            // A record never holds more than append lets in.
            d.as_mut()
                .expect("created above")
                .decompress(payload, MAX_DECODED)
        })
        .map_err(|e| Error::Io(format!("a damaged span batch: {e}")))?;
    serde_json::from_slice(&json).map_err(|e| Error::Io(format!("a damaged span batch: {e}")))
}

/// Reads the segments found at open into the index, newest first (recent traces are
/// found first), a segment a thread on every core; each goes into the index as soon as it
/// is read. Returns the errors of the segments that could not be read.
fn load(dir: &Path, seqs: Vec<u64>, inner: &Mutex<Inner>, stop: &AtomicBool) -> Vec<Error> {
    let started = Instant::now();
    let newest = seqs.last().copied();
    let order: Vec<u64> = seqs.into_iter().rev().collect();
    let next = AtomicUsize::new(0);
    let errors = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(order.len());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let Some(seq) = order.get(next.fetch_add(1, Ordering::Relaxed)).copied() else {
                        break;
                    };
                    match read_segment(dir, seq, Some(seq) == newest) {
                        Ok(r) => {
                            let mut g = lock(inner);
                            g.damaged += r.damaged;
                            if let Some(seg) = r.segment {
                                g.segments.insert(seq, seg);
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "A span segment could not be read; skipped");
                            errors.lock().unwrap_or_else(|p| p.into_inner()).push(e);
                        }
                    }
                }
            });
        }
    });
    let mut g = lock(inner);
    g.loading = false;
    let spans: usize = g.segments.values().map(|s| s.entries.len()).sum();
    let (segments, damaged) = (g.segments.len(), g.damaged);
    drop(g);
    if damaged > 0 {
        tracing::warn!(records = damaged, dir = %dir.display(), "Damaged span records skipped");
    }
    let seconds = started.elapsed().as_secs_f64();
    if stop.load(Ordering::Relaxed) {
        tracing::info!(
            spans,
            segments,
            seconds,
            "Trace index loading stopped: the store closed"
        );
    } else {
        tracing::info!(spans, segments, seconds, "Trace index loaded");
    }
    errors.into_inner().unwrap_or_else(|p| p.into_inner())
}

/// A segment read at open: its index (none when it was an empty newest segment, now
/// removed, or not a segment at all) and the damaged records it had.
#[derive(Debug, Default)]
struct Opened {
    segment: Option<Segment>,
    damaged: u64,
}

/// Reads one segment and indexes it; cuts a torn tail when it is the newest.
fn read_segment(dir: &Path, seq: u64, newest: bool) -> Result<Opened> {
    let path = seg_path(dir, seq);
    let file = File::open(&path).map_err(io("reading", &path))?;
    let size = file.metadata().map_err(io("reading", &path))?.len();
    // Record by record: memory stays one record however large (or foreign) the file is.
    let mut r = std::io::BufReader::new(file);
    let mut magic = [0u8; MAGIC.len()];
    if size < MAGIC.len() as u64 || r.read_exact(&mut magic).is_err() || &magic != MAGIC {
        if newest && size < MAGIC.len() as u64 {
            // Created and killed before its magic was written.
            std::fs::remove_file(&path).map_err(io("removing", &path))?;
            return Ok(Opened::default());
        }
        tracing::warn!(path = %path.display(), "Not a span segment; skipped");
        return Ok(Opened {
            segment: None,
            damaged: 1,
        });
    }
    let mut seg = Segment::default();
    let mut damaged = 0;
    let mut at = MAGIC.len() as u64;
    let mut payload = Vec::new();
    while at + 8 <= size {
        let mut head = [0u8; 8];
        r.read_exact(&mut head).map_err(io("reading", &path))?;
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
        let end = at + 8 + u64::from(len);
        if len > MAX_RECORD || end > size {
            break;
        }
        payload.resize(len as usize, 0);
        r.read_exact(&mut payload).map_err(io("reading", &path))?;
        match (crc32fast::hash(&payload) == crc).then(|| decode_batch(&payload)) {
            Some(Ok(spans)) => {
                if seg.index(&spans, at, len) > 0 {
                    damaged += 1;
                }
            }
            _ => damaged += 1,
        }
        at = end;
    }
    if at < size {
        if newest {
            // A record cut short by a crash: drop the torn tail.
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io("opening", &path))?;
            f.set_len(at).map_err(io("truncating", &path))?;
            tracing::info!(path = %path.display(), bytes = size - at, "Cut a torn span record");
        } else {
            // A length that cannot be trusted: the rest of this segment is lost.
            damaged += 1;
        }
    }
    seg.bytes = at;
    Ok(Opened {
        segment: Some(seg),
        damaged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::{StatusCode, Value};

    fn span(trace: u8, id: u8, service: &str, name: &str, start_s: u64, dur_ms: u64) -> Span {
        Span {
            trace_id: [trace; 16],
            span_id: [id; 8],
            parent_span_id: (id > 1).then_some([1; 8]),
            service: service.into(),
            name: name.into(),
            kind: 2,
            start_ns: start_s * 1_000_000_000,
            duration_ns: dur_ms * 1_000_000,
            status: if name == "fail" {
                StatusCode::Error
            } else {
                StatusCode::Unset
            },
            status_message: String::new(),
            attributes: vec![("db.key".into(), Value::Str(format!("k{id}")))],
            events: Vec::new(),
            resource: vec![("host.name".into(), Value::Str("db1".into()))],
            scope: String::new(),
        }
    }

    fn query(service: &str) -> Query {
        Query {
            service: service.into(),
            end_ns: u64::MAX,
            limit: 20,
            ..Default::default()
        }
    }

    #[test]
    fn spans_are_found_by_trace_service_operation_duration_and_tags() {
        let dir = tempfile::tempdir().unwrap();
        let st = TraceStore::open(dir.path(), Options::default()).unwrap();
        st.append(vec![
            span(1, 1, "api", "GET /kv", 100, 30),
            span(1, 2, "kvstore", "get", 100, 20),
        ])
        .unwrap();
        st.append(vec![
            span(2, 1, "api", "PUT /kv", 200, 300),
            span(2, 2, "kvstore", "fail", 200, 250),
        ])
        .unwrap();
        assert_eq!(st.services(), ["api", "kvstore"]);
        assert_eq!(
            st.operations("kvstore"),
            [("fail".to_string(), 2), ("get".to_string(), 2)]
        );
        let t = st.trace(&[1; 16], 1000).unwrap();
        assert_eq!(
            t.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["GET /kv", "get"]
        );
        // Newest first; by operation; by duration; by tag (on the span or its resource).
        let all = st.search(&query("kvstore"), 1000).unwrap();
        assert_eq!(
            all.iter().map(|t| t[0].trace_id[0]).collect::<Vec<_>>(),
            [2, 1]
        );
        let q = Query {
            operation: Some("get".into()),
            ..query("kvstore")
        };
        assert_eq!(st.search(&q, 1000).unwrap().len(), 1);
        let q = Query {
            min_duration_ns: Some(100_000_000),
            ..query("kvstore")
        };
        assert_eq!(st.search(&q, 1000).unwrap()[0][0].trace_id, [2; 16]);
        let q = Query {
            tags: vec![("error".into(), "true".into())],
            ..query("kvstore")
        };
        assert_eq!(st.search(&q, 1000).unwrap()[0][0].trace_id, [2; 16]);
        let q = Query {
            tags: vec![
                ("db.key".into(), "k2".into()),
                ("host.name".into(), "db1".into()),
            ],
            ..query("api")
        };
        assert!(
            st.search(&q, 1000).unwrap().is_empty(),
            "the api spans are k1"
        );
        let q = Query {
            limit: 1,
            ..query("kvstore")
        };
        assert_eq!(st.search(&q, 1000).unwrap().len(), 1);
        assert!(st.search(&query("nobody"), 1000).unwrap().is_empty());
    }

    #[test]
    fn a_reopened_store_has_everything_and_a_torn_tail_costs_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        {
            let st = TraceStore::open(dir.path(), Options::default()).unwrap();
            st.append(vec![span(1, 1, "api", "a", 100, 1)]).unwrap();
            st.append(vec![span(2, 1, "api", "b", 101, 1)]).unwrap();
        }
        // A crash in the middle of a third record.
        let seg = seg_path(dir.path(), 1);
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 5]).unwrap();
        drop(f);
        let before = std::fs::metadata(&seg).unwrap().len();
        let st = TraceStore::open(dir.path(), Options::default()).unwrap();
        assert_eq!(st.stats().spans, 2);
        assert_eq!(
            std::fs::metadata(&seg).unwrap().len(),
            before - 9,
            "the torn tail is cut"
        );
        st.append(vec![span(3, 1, "api", "c", 102, 1)]).unwrap();
        drop(st);
        // Damage inside a record: that record alone is lost.
        let mut data = std::fs::read(&seg).unwrap();
        let first_payload = MAGIC.len() + 8;
        data[first_payload + 3] ^= 0xff;
        std::fs::write(&seg, &data).unwrap();
        let st = TraceStore::open(dir.path(), Options::default()).unwrap();
        let s = st.stats();
        assert_eq!((s.spans, s.damaged), (2, 1));
        assert!(st.trace(&[1; 16], 10).unwrap().is_empty());
        assert_eq!(st.trace(&[3; 16], 10).unwrap().len(), 1);
    }

    #[test]
    fn a_batch_past_what_a_record_holds_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let st = TraceStore::open(dir.path(), Options::default()).unwrap();
        let mut big = span(1, 1, "api", "op", 100, 1);
        big.attributes = vec![("blob".into(), Value::Str("x".repeat(MAX_DECODED + 1)))];
        let e = st.append(vec![big]).unwrap_err();
        assert!(
            matches!(e, Error::Invalid(_)) && e.to_string().contains("more than a record holds"),
            "{e}"
        );
        assert_eq!(st.stats().spans, 0);
        st.append(vec![span(2, 1, "api", "op", 100, 1)]).unwrap();
        assert_eq!(st.stats().spans, 1);
    }

    /// A store in a new directory whose segments hold one batch each, keeping an hour.
    fn one_batch_segments() -> (tempfile::TempDir, Options, TraceStore) {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options {
            segment_bytes: 1,
            retention: Duration::from_secs(3600),
            ..Default::default()
        };
        let st = TraceStore::open(dir.path(), opts.clone()).unwrap();
        (dir, opts, st)
    }

    #[test]
    fn a_trace_across_segments_reads_back_whole_and_loses_only_a_dropped_segment() {
        let (dir, opts, st) = one_batch_segments();
        // Trace 7's spans in three segments (one batch each at this size), other traces
        // between them.
        for i in 0..3u8 {
            st.append(vec![
                span(7, i + 1, "api", "op", 10_000 + u64::from(i) * 1000, 1),
                span(8 + i, 1, "db", "get", 10_000 + u64::from(i) * 1000, 1),
            ])
            .unwrap();
        }
        let ids = |spans: &[Span]| spans.iter().map(|s| s.span_id[0]).collect::<Vec<_>>();
        assert_eq!(st.stats().segments, 3);
        assert_eq!(ids(&st.trace(&[7; 16], 10).unwrap()), [1, 2, 3]);
        assert_eq!(
            ids(&st.trace(&[7; 16], 2).unwrap()),
            [1, 2],
            "at most max_spans"
        );
        let found = st.search(&query("api"), 100).unwrap();
        assert_eq!(found.len(), 1, "one trace, found once");
        assert_eq!(ids(&found[0]), [1, 2, 3]);
        assert_eq!(st.services(), ["api", "db"]);
        drop(st);
        // Read back on every core: the same.
        let st = TraceStore::open(dir.path(), opts).unwrap();
        assert_eq!(st.stats().spans, 6);
        assert_eq!(ids(&st.trace(&[7; 16], 10).unwrap()), [1, 2, 3]);
        // The first segment goes by age: only what it held is lost.
        assert_eq!(st.maintain(14_500 * 1_000_000_000).unwrap(), 1);
        assert_eq!(ids(&st.trace(&[7; 16], 10).unwrap()), [2, 3]);
        assert!(st.trace(&[8; 16], 10).unwrap().is_empty());
        assert_eq!(st.trace(&[9; 16], 10).unwrap().len(), 1);
        assert_eq!(st.stats().spans, 4);
    }

    #[test]
    fn many_segments_open_in_parallel_and_a_damaged_one_costs_only_itself() {
        let (dir, opts, st) = one_batch_segments();
        let now_s = 1_700_000_000;
        for i in 0..40u8 {
            st.append(vec![span(i + 1, 1, "api", "op", now_s + u64::from(i), 1)])
                .unwrap();
        }
        drop(st);
        // The tenth segment's record damaged in its middle (CRC mismatch).
        let path = seg_path(dir.path(), 10);
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() - 4;
        bytes[mid] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let st = TraceStore::open(dir.path(), opts).unwrap();
        let s = st.stats();
        assert_eq!((s.spans, s.segments, s.damaged), (39, 40, 1));
        assert!(st.trace(&[10; 16], 10).unwrap().is_empty());
        for t in (1..=40u8).filter(|t| *t != 10) {
            assert_eq!(st.trace(&[t; 16], 10).unwrap().len(), 1, "trace {t}");
        }
    }

    #[test]
    fn a_store_opened_in_the_background_takes_appends_at_once_and_loses_nothing() {
        let (dir, opts, st) = one_batch_segments();
        let now_s = 1_700_000_000;
        for i in 0..20u8 {
            st.append(vec![span(i + 1, 1, "api", "op", now_s + u64::from(i), 1)])
                .unwrap();
        }
        drop(st);
        let st = TraceStore::open_in_background(dir.path(), opts.clone()).unwrap();
        // Taken while the index may still be loading, into a segment of its own numbered
        // past the others.
        st.append(vec![span(99, 1, "api", "late", now_s + 100, 1)])
            .unwrap();
        assert!(st.wait_loaded().is_empty());
        let s = st.stats();
        assert!(!s.loading);
        assert_eq!((s.spans, s.segments), (21, 21));
        assert!(seg_path(dir.path(), 21).exists());
        for t in (1..=20u8).chain([99]) {
            assert_eq!(st.trace(&[t; 16], 10).unwrap().len(), 1, "trace {t}");
        }
        assert_eq!(
            st.operations("api"),
            [("late".to_string(), 2), ("op".to_string(), 2)]
        );
        drop(st);
        let st = TraceStore::open(dir.path(), opts).unwrap();
        assert_eq!(st.stats().spans, 21);
    }

    #[test]
    fn retention_drops_whole_segments_by_age_and_size() {
        let (dir, opts, st) = one_batch_segments();
        for i in 0..4u8 {
            st.append(vec![span(
                i + 1,
                1,
                "api",
                "op",
                10_000 + u64::from(i) * 1000,
                1,
            )])
            .unwrap();
        }
        assert_eq!(st.stats().segments, 4, "one batch per segment at this size");
        // At 10,000 + 4,000 s, with an hour kept: the first segment (10,000 s) goes.
        assert_eq!(st.maintain(14_000 * 1_000_000_000).unwrap(), 1);
        assert!(st.trace(&[1; 16], 10).unwrap().is_empty());
        assert_eq!(
            st.operations("api"),
            [("op".to_string(), 2)],
            "kinds survive retention"
        );
        assert_eq!(st.stats().spans, 3);
        drop(st);
        let bytes = TraceStore::open(dir.path(), opts.clone())
            .unwrap()
            .stats()
            .bytes;
        let st = TraceStore::open(
            dir.path(),
            Options {
                retention_bytes: Some(bytes / 2),
                ..opts
            },
        )
        .unwrap();
        assert!(st.maintain(14_000 * 1_000_000_000).unwrap() >= 1);
        assert!(st.stats().bytes <= bytes / 2 + bytes / 3);
        assert!(
            !st.trace(&[4; 16], 10).unwrap().is_empty(),
            "the newest is kept"
        );
    }
}
