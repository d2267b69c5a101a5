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
//! One small entry per span (trace id, service, operation, start, duration, where
//! its batch is), the spans of each trace, and the operations of each service. Queries
//! filter entries first and read only the batches of the spans they return (or whose
//! attributes they must check). Retention drops whole segments: by age (the newest span
//! in them) and by total size, oldest first.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
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

#[derive(Debug, Clone)]
struct Entry {
    trace: TraceId,
    service: u32,
    op: u32,
    kind: u8,
    start_ns: u64,
    duration_ns: u64,
    loc: Loc,
    /// Its place in the batch.
    idx: u32,
}

#[derive(Debug, Default)]
struct Segment {
    bytes: u64,
    max_end_ns: u64,
}

#[derive(Debug, Default)]
struct Inner {
    segments: BTreeMap<u64, Segment>,
    active: Option<(u64, File)>,
    entries: Vec<Entry>,
    by_trace: HashMap<TraceId, Vec<u32>>,
    names: Vec<String>,
    name_ids: HashMap<String, u32>,
    operations: BTreeMap<u32, BTreeSet<(u32, u8)>>,
    damaged: u64,
    last_sync: Option<Instant>,
}

impl Inner {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(i) = self.name_ids.get(s) {
            return *i;
        }
        let i = self.names.len() as u32;
        self.names.push(s.to_string());
        self.name_ids.insert(s.to_string(), i);
        i
    }

    fn index(&mut self, spans: &[Span], loc: Loc) {
        let seg = self.segments.entry(loc.seg).or_default();
        for s in spans {
            seg.max_end_ns = seg.max_end_ns.max(s.start_ns.saturating_add(s.duration_ns));
        }
        for (idx, s) in spans.iter().enumerate() {
            let service = self.intern(&s.service);
            let op = self.intern(&s.name);
            self.operations
                .entry(service)
                .or_default()
                .insert((op, s.kind));
            let n = self.entries.len() as u32;
            self.entries.push(Entry {
                trace: s.trace_id,
                service,
                op,
                kind: s.kind,
                start_ns: s.start_ns,
                duration_ns: s.duration_ns,
                loc,
                idx: idx as u32,
            });
            self.by_trace.entry(s.trace_id).or_default().push(n);
        }
    }

    /// Rebuilds the per-trace and per-service maps after entries went.
    fn reindex(&mut self) {
        self.by_trace.clear();
        self.operations.clear();
        for (n, e) in self.entries.iter().enumerate() {
            self.by_trace.entry(e.trace).or_default().push(n as u32);
            self.operations
                .entry(e.service)
                .or_default()
                .insert((e.op, e.kind));
        }
    }
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
    /// Traces indexed.
    pub traces: u64,
    /// Segment files.
    pub segments: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Damaged records skipped since open.
    pub damaged: u64,
}

/// The trace store.
#[derive(Debug)]
pub struct TraceStore {
    dir: PathBuf,
    opts: Options,
    inner: Mutex<Inner>,
    metrics: std::sync::Arc<crate::metrics::SpanMetrics>,
}

fn seg_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016}.spans"))
}

fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let msg = format!("{what} {}", path.display());
    move |e| Error::Io(format!("{msg}: {e}"))
}

impl TraceStore {
    /// Opens (or creates) the store in `dir`, reading every segment into the index.
    pub fn open(dir: &Path, opts: Options) -> Result<Self> {
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
        let mut inner = Inner::default();
        let newest = seqs.last().copied();
        for seq in seqs {
            read_segment(dir, seq, Some(seq) == newest, &mut inner)?;
        }
        if inner.damaged > 0 {
            tracing::warn!(records = inner.damaged, dir = %dir.display(), "Damaged span records skipped");
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            metrics: std::sync::Arc::new(crate::metrics::SpanMetrics::new(opts.max_metric_series)),
            opts,
            inner: Mutex::new(inner),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
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
                s.bytes + rec.len() as u64 > self.opts.segment_bytes && s.bytes > MAGIC.len() as u64
            }),
            (None, _) => true,
        };
        if roll {
            if let Some((_, f)) = inner.active.take() {
                f.sync_data().map_err(io("syncing", &self.dir))?;
            }
            let seq = inner.segments.keys().next_back().map_or(1, |s| s + 1);
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
                    max_end_ns: 0,
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
        for (at, len, chunk) in records {
            inner.index(
                chunk,
                Loc {
                    seg: seq,
                    offset: offset + at,
                    len,
                },
            );
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
    pub fn maintain(&self, now_ns: u64) -> Result<usize> {
        let mut inner = self.lock();
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
        inner.entries.retain(|e| !drop.contains(&e.loc.seg));
        inner.reindex();
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
            spans: inner.entries.len() as u64,
            traces: inner.by_trace.len() as u64,
            segments: inner.segments.len() as u64,
            bytes: inner.segments.values().map(|s| s.bytes).sum(),
            damaged: inner.damaged,
        }
    }

    /// The services with spans, sorted.
    pub fn services(&self) -> Vec<String> {
        let inner = self.lock();
        let mut v: Vec<String> = inner
            .operations
            .keys()
            .map(|i| inner.names[*i as usize].clone())
            .collect();
        v.sort();
        v
    }

    /// A service's operations with their span kinds (OTLP's numbers; 0 when unknown),
    /// sorted by name.
    pub fn operations(&self, service: &str) -> Vec<(String, u8)> {
        let inner = self.lock();
        let Some(id) = inner.name_ids.get(service) else {
            return Vec::new();
        };
        let mut v: Vec<(String, u8)> = inner
            .operations
            .get(id)
            .into_iter()
            .flatten()
            .map(|(op, kind)| (inner.names[*op as usize].clone(), *kind))
            .collect();
        v.sort();
        v
    }

    /// Every stored span of a trace, in start order (at most `max_spans`).
    pub fn trace(&self, id: &TraceId, max_spans: usize) -> Result<Vec<Span>> {
        let wanted: Vec<(Loc, u32)> = {
            let inner = self.lock();
            inner
                .by_trace
                .get(id)
                .into_iter()
                .flatten()
                .take(max_spans)
                .map(|n| {
                    let e = &inner.entries[*n as usize];
                    (e.loc, e.idx)
                })
                .collect()
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
            let Some(svc) = inner.name_ids.get(&q.service).copied() else {
                return Ok(Vec::new());
            };
            let op = match &q.operation {
                Some(o) => match inner.name_ids.get(o) {
                    Some(i) => Some(*i),
                    None => return Ok(Vec::new()),
                },
                None => None,
            };
            let mut c: Vec<&Entry> = inner
                .entries
                .iter()
                .filter(|e| {
                    e.service == svc
                        && op.is_none_or(|o| e.op == o)
                        && e.start_ns >= q.start_ns
                        && e.start_ns <= q.end_ns
                        && q.min_duration_ns.is_none_or(|d| e.duration_ns >= d)
                        && q.max_duration_ns.is_none_or(|d| e.duration_ns <= d)
                })
                .collect();
            c.sort_by_key(|e| std::cmp::Reverse(e.start_ns));
            c.iter().map(|e| (e.trace, e.loc, e.idx)).collect()
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

/// Reads one segment into the index; cuts a torn tail when it is the newest.
fn read_segment(dir: &Path, seq: u64, newest: bool, inner: &mut Inner) -> Result<()> {
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
            return Ok(());
        }
        tracing::warn!(path = %path.display(), "Not a span segment; skipped");
        inner.damaged += 1;
        return Ok(());
    }
    inner.segments.insert(seq, Segment::default());
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
        let loc = Loc {
            seg: seq,
            offset: at,
            len,
        };
        match (crc32fast::hash(&payload) == crc).then(|| decode_batch(&payload)) {
            Some(Ok(spans)) => inner.index(&spans, loc),
            _ => inner.damaged += 1,
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
            inner.damaged += 1;
        }
    }
    inner.segments.entry(seq).or_default().bytes = at;
    Ok(())
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

    #[test]
    fn retention_drops_whole_segments_by_age_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options {
            segment_bytes: 1,
            retention: Duration::from_secs(3600),
            ..Default::default()
        };
        let st = TraceStore::open(dir.path(), opts.clone()).unwrap();
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
