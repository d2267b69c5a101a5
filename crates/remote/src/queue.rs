//! The durable queue each `remote_write` entry sends from: what Lookout committed, in
//! order, on disk, with the position up to which the remote has acknowledged it. Written
//! by hand because it is the product's core promise (nothing lost across outages and
//! restarts) and a plain append-only file is all it needs.
//!
//! Prometheus's remote write reads its WAL and loses what the WAL drops at the next
//! checkpoint (prometheus/prometheus #13182, #13539); this queue is kept apart from the
//! tsdb's WAL so an outage is bounded only by `max_backlog`.
//!
//! ## On disk (version 1), in the queue's directory
//!
//! - Segment files named by a 20-digit sequence number. Each starts with the 8-byte
//!   header `LKRQ` + version (u32 LE), then records: payload length (u32 LE), CRC-32 of
//!   the payload (u32 LE), payload. A payload is: kind (u8), the wall-clock time it was
//!   appended (ms, i64 LE), the number of samples (u32 LE, 0 for series records), then a
//!   snappy-compressed body:
//!   - kind 1, series: repeated (reference varint, label count varint, then name and
//!     value as length-prefixed bytes);
//!   - kind 2, samples: repeated (reference varint, timestamp zigzag varint, value as
//!     f64 bits LE);
//!   - kind 3, exemplars (the count field counts them): repeated (reference varint,
//!     timestamp zigzag varint, value as f64 bits LE, label count varint, then name and
//!     value as length-prefixed bytes). Written only for remotes with `send_exemplars`;
//!   - kind 4, created timestamps (the count field counts them): repeated (reference
//!     varint, created time in ms zigzag varint), written when a series' changes;
//!   - kind 5, native histograms (the count field counts them): repeated (reference
//!     varint, timestamp zigzag varint, then the histogram as a length-prefixed
//!     remote-write `Histogram` message). Written only for remotes with
//!     `send_native_histograms`.
//!
//!   References are per segment: a segment defines every series it uses before its
//!   samples, so any segment can be read alone, and dropping one costs only its samples.
//! - `position`: the next unsent record as segment (u64 LE) and offset (u64 LE) plus a
//!   CRC-32 of both, replaced by rename (fsynced about once a second).
//!
//! A process killed mid-write leaves a torn record at the end of the newest segment:
//! opening truncates it (it was never acknowledged: the tsdb commits after the queue).
//! A record that fails its check anywhere else costs the rest of its segment, counted.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lookout_model::{Exemplar, FloatHistogram, Labels};

const MAGIC: &[u8; 4] = b"LKRQ";
const VERSION: u32 = 1;
const HEADER: u64 = 8;
const FRAME: u64 = 8;
const PAYLOAD_HEAD: usize = 13;
const KIND_SERIES: u8 = 1;
const KIND_SAMPLES: u8 = 2;
const KIND_EXEMPLARS: u8 = 3;
const KIND_CREATED: u8 = 4;
const KIND_HISTOGRAMS: u8 = 5;
/// Largest record accepted when reading (a bigger length field means damage).
const MAX_RECORD: u32 = 256 << 20;
/// Most samples one record holds (about 12 MiB before compression, far below
/// [`MAX_RECORD`]).
const SAMPLES_PER_RECORD: usize = 1 << 20;

/// A place in the queue: a segment and a byte offset within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    /// The segment's sequence number.
    pub segment: u64,
    /// Offset of the next record in it.
    pub offset: u64,
}

/// What the writer has made readable: the newest segment and its length.
#[derive(Debug, Default)]
struct End {
    segment: u64,
    len: u64,
    /// Samples appended since the queue was opened.
    appended: u64,
    /// The segment this process started writing in: older ones hold the backlog found
    /// at open.
    session_start: u64,
}

/// The queue's state shared by its writer (commits) and its reader (the sender).
#[derive(Debug)]
pub struct Shared {
    end: Mutex<End>,
    /// Woken after every append.
    pub notify: tokio::sync::Notify,
}

/// The writing half: commits append to it, one record pair per commit.
#[derive(Debug)]
pub struct Writer {
    dir: PathBuf,
    segment: u64,
    file: File,
    len: u64,
    segment_bytes: u64,
    /// Output labels of the series defined in the current segment.
    refs: HashMap<Labels, u32>,
    last_sync: Instant,
    shared: Arc<Shared>,
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}"))
}

/// Bytes of every segment in `dir` (what the queue takes on disk).
pub fn disk_bytes(dir: &Path) -> u64 {
    segments(dir)
        .unwrap_or_default()
        .iter()
        .map(|&s| std::fs::metadata(segment_path(dir, s)).map_or(0, |m| m.len()))
        .sum()
}

/// The segments in `dir`, ascending.
pub fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut out: Vec<u64> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name();
            let n = n.to_str()?;
            (n.len() == 20).then(|| n.parse().ok()).flatten()
        })
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// A label set: count varint, then each name and value length-prefixed.
fn put_labels(out: &mut Vec<u8>, l: &Labels) {
    put_varint(out, l.len() as u64);
    for lb in l.iter() {
        put_varint(out, lb.name.len() as u64);
        out.extend_from_slice(lb.name.as_bytes());
        put_varint(out, lb.value.len() as u64);
        out.extend_from_slice(lb.value.as_bytes());
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

fn get_bytes<'a>(b: &'a [u8], at: &mut usize) -> Option<&'a [u8]> {
    let n = usize::try_from(get_varint(b, at)?).ok()?;
    let s = b.get(*at..at.checked_add(n)?)?;
    *at += n;
    Some(s)
}

fn frame(kind: u8, now_ms: i64, count: u32, body: &[u8]) -> Vec<u8> {
    let compressed = snap::raw::Encoder::new()
        .compress_vec(body)
        .expect("snappy compresses any input");
    let mut payload = Vec::with_capacity(PAYLOAD_HEAD + compressed.len());
    payload.push(kind);
    payload.extend_from_slice(&now_ms.to_le_bytes());
    payload.extend_from_slice(&count.to_le_bytes());
    payload.extend_from_slice(&compressed);
    let mut out = Vec::with_capacity(FRAME as usize + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Reads the record at the file's current offset: `Ok(None)` at a clean end, `Err` with
/// `InvalidData` for a torn or damaged one.
fn read_record(f: &mut File) -> io::Result<Option<Vec<u8>>> {
    let mut head = [0u8; FRAME as usize];
    let mut got = 0;
    while got < head.len() {
        match f.read(&mut head[got..])? {
            0 if got == 0 => return Ok(None),
            0 => return Err(io::Error::new(io::ErrorKind::InvalidData, "torn record")),
            n => got += n,
        }
    }
    let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
    if len > MAX_RECORD || (len as usize) < PAYLOAD_HEAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("record length {len} out of range"),
        ));
    }
    // A damaged length must not make us allocate more than the file still holds.
    let left = f.metadata()?.len().saturating_sub(f.stream_position()?);
    if u64::from(len) > left {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "torn record"));
    }
    let mut payload = vec![0; len as usize];
    f.read_exact(&mut payload).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => io::Error::new(io::ErrorKind::InvalidData, "torn record"),
        _ => e,
    })?;
    if crc32fast::hash(&payload) != crc {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "checksum mismatch",
        ));
    }
    Ok(Some(payload))
}

fn create_segment(dir: &Path, seq: u64) -> io::Result<File> {
    let mut f = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(segment_path(dir, seq))?;
    let mut head = MAGIC.to_vec();
    head.extend_from_slice(&VERSION.to_le_bytes());
    f.write_all(&head)?;
    File::open(dir)?.sync_all()?;
    Ok(f)
}

/// Opens a segment for reading, past its header, checking the header.
fn open_segment(dir: &Path, seq: u64) -> io::Result<File> {
    let mut f = File::open(segment_path(dir, seq))?;
    let mut head = [0u8; HEADER as usize];
    f.read_exact(&mut head)?;
    if &head[..4] != MAGIC || u32::from_le_bytes(head[4..].try_into().expect("4")) != VERSION {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a version 1 queue segment",
        ));
    }
    Ok(f)
}

/// Truncates the torn tail a crash left on `seq`; returns its valid length.
fn truncate_torn_tail(dir: &Path, seq: u64) -> io::Result<u64> {
    let mut f = match open_segment(dir, seq) {
        Ok(f) => f,
        Err(e)
            if e.kind() == io::ErrorKind::InvalidData
                || e.kind() == io::ErrorKind::UnexpectedEof =>
        {
            tracing::warn!(segment = seq, dir = %dir.display(), error = %e, "Remote-write queue segment without a valid header removed");
            std::fs::remove_file(segment_path(dir, seq))?;
            return Ok(0);
        }
        Err(e) => return Err(e),
    };
    let mut valid = HEADER;
    loop {
        match read_record(&mut f) {
            Ok(Some(p)) => valid += FRAME + p.len() as u64,
            Ok(None) => break,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                tracing::warn!(segment = seq, dir = %dir.display(), offset = valid, error = %e, "Remote-write queue: dropping the torn tail of the newest segment (never acknowledged)");
                OpenOptions::new()
                    .write(true)
                    .open(segment_path(dir, seq))?
                    .set_len(valid)?;
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(valid)
}

/// Opens (creating) the queue in `dir`: the newest segment's torn tail is dropped and
/// writing starts in a new segment.
pub fn open(dir: &Path, segment_bytes: u64) -> io::Result<(Writer, Arc<Shared>)> {
    std::fs::create_dir_all(dir)?;
    let existing = segments(dir)?;
    if let Some(&last) = existing.last() {
        truncate_torn_tail(dir, last)?;
    }
    let seq = existing.last().map_or(1, |s| s + 1);
    let file = create_segment(dir, seq)?;
    let shared = Arc::new(Shared {
        end: Mutex::new(End {
            segment: seq,
            len: HEADER,
            appended: 0,
            session_start: seq,
        }),
        notify: tokio::sync::Notify::new(),
    });
    Ok((
        Writer {
            dir: dir.to_path_buf(),
            segment: seq,
            file,
            len: HEADER,
            segment_bytes: segment_bytes.max(1024),
            refs: HashMap::new(),
            last_sync: Instant::now(),
            shared: Arc::clone(&shared),
        },
        shared,
    ))
}

impl Writer {
    /// Whether `labels` already has a reference in the current segment.
    pub fn knows(&self, labels: &Labels) -> bool {
        self.refs.contains_key(labels)
    }

    /// Appends one commit's samples (labels as they will be sent), defining the series
    /// the segment has not seen first; visible to the reader when this returns. Writes
    /// reach the page cache at once (a killed process loses nothing) and are fsynced at
    /// most `sync_every` apart.
    pub fn append(
        &mut self,
        now_ms: i64,
        samples: &[(Labels, i64, f64)],
        extra: &Extra,
        sync_every: Duration,
    ) -> io::Result<()> {
        // A huge commit (a large remote-write request) becomes several records, each
        // well below what a reader accepts; its exemplars and created timestamps go
        // with the last part.
        let mut parts = samples.chunks(SAMPLES_PER_RECORD).peekable();
        if parts.peek().is_none() {
            return self.append_record(now_ms, &[], extra, sync_every);
        }
        let none = Extra::default();
        while let Some(part) = parts.next() {
            let ex = if parts.peek().is_none() { extra } else { &none };
            self.append_record(now_ms, part, ex, sync_every)?;
        }
        Ok(())
    }

    /// The reference of `l` in the current segment, defining it in `series` if new.
    fn reference(&mut self, l: &Labels, series: &mut Vec<u8>) -> u32 {
        if let Some(&r) = self.refs.get(l) {
            return r;
        }
        let r = self.refs.len() as u32;
        self.refs.insert(l.clone(), r);
        put_varint(series, u64::from(r));
        put_labels(series, l);
        r
    }

    fn append_record(
        &mut self,
        now_ms: i64,
        samples: &[(Labels, i64, f64)],
        extra: &Extra,
        sync_every: Duration,
    ) -> io::Result<()> {
        let exemplars = &extra.exemplars;
        if samples.is_empty()
            && exemplars.is_empty()
            && extra.created.is_empty()
            && extra.histograms.is_empty()
        {
            return Ok(());
        }
        if self.len >= self.segment_bytes {
            self.rotate()?;
        }
        let mut series = Vec::new();
        let defined = self.refs.len();
        let mut body = Vec::with_capacity(samples.len() * 12);
        for (l, t, v) in samples {
            let r = self.reference(l, &mut series);
            put_varint(&mut body, u64::from(r));
            put_varint(&mut body, ((t << 1) ^ (t >> 63)) as u64);
            body.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        let mut ex_body = Vec::new();
        for (l, e) in exemplars {
            let r = self.reference(l, &mut series);
            put_varint(&mut ex_body, u64::from(r));
            put_varint(&mut ex_body, ((e.t << 1) ^ (e.t >> 63)) as u64);
            ex_body.extend_from_slice(&e.value.to_bits().to_le_bytes());
            put_labels(&mut ex_body, &e.labels);
        }
        let mut created = Vec::new();
        for (l, ct) in &extra.created {
            let r = self.reference(l, &mut series);
            put_varint(&mut created, u64::from(r));
            put_varint(&mut created, ((ct << 1) ^ (ct >> 63)) as u64);
        }
        let mut hist_body = Vec::new();
        for (l, t, h) in &extra.histograms {
            let r = self.reference(l, &mut series);
            put_varint(&mut hist_body, u64::from(r));
            put_varint(&mut hist_body, ((t << 1) ^ (t >> 63)) as u64);
            let msg = prost::Message::encode_to_vec(&crate::wire_histogram(h, *t));
            put_varint(&mut hist_body, msg.len() as u64);
            hist_body.extend_from_slice(&msg);
        }
        let mut out = Vec::new();
        if self.refs.len() > defined {
            out = frame(KIND_SERIES, now_ms, 0, &series);
        }
        if !created.is_empty() {
            out.extend(frame(
                KIND_CREATED,
                now_ms,
                extra.created.len() as u32,
                &created,
            ));
        }
        if !samples.is_empty() {
            out.extend(frame(KIND_SAMPLES, now_ms, samples.len() as u32, &body));
        }
        if !extra.histograms.is_empty() {
            out.extend(frame(
                KIND_HISTOGRAMS,
                now_ms,
                extra.histograms.len() as u32,
                &hist_body,
            ));
        }
        if !exemplars.is_empty() {
            out.extend(frame(
                KIND_EXEMPLARS,
                now_ms,
                exemplars.len() as u32,
                &ex_body,
            ));
        }
        if let Err(e) = self.file.write_all(&out) {
            // A partial write would corrupt what follows: cut it off and start afresh.
            let _ = self.file.set_len(self.len);
            let _ = self.rotate();
            return Err(e);
        }
        self.len += out.len() as u64;
        if self.last_sync.elapsed() >= sync_every {
            self.file.sync_data()?;
            self.last_sync = Instant::now();
        }
        {
            let mut end = self.shared.end.lock().expect("queue lock");
            end.segment = self.segment;
            end.len = self.len;
            end.appended += (samples.len() + extra.histograms.len()) as u64;
        }
        self.shared.notify.notify_one();
        Ok(())
    }

    /// fsyncs the current segment.
    pub fn sync(&mut self) -> io::Result<()> {
        self.last_sync = Instant::now();
        self.file.sync_data()
    }

    fn rotate(&mut self) -> io::Result<()> {
        let _ = self.file.sync_data();
        let next = self.segment + 1;
        self.file = create_segment(&self.dir, next)?;
        self.segment = next;
        self.len = HEADER;
        self.refs.clear();
        let mut end = self.shared.end.lock().expect("queue lock");
        end.segment = next;
        end.len = HEADER;
        Ok(())
    }
}

/// What a commit carries besides samples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extra {
    /// Exemplars, by series.
    pub exemplars: Vec<(Labels, Exemplar)>,
    /// Created timestamps (ms), by series.
    pub created: Vec<(Labels, i64)>,
    /// Native histograms (series, timestamp ms, histogram).
    pub histograms: Vec<(Labels, i64, FloatHistogram)>,
}

/// One commit's samples read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// When it was appended (wall clock, ms).
    pub appended_ms: i64,
    /// The samples, labels resolved.
    pub samples: Vec<(Labels, i64, f64)>,
    /// The exemplars, series labels resolved.
    pub exemplars: Vec<(Labels, Exemplar)>,
    /// Created timestamps (ms), series labels resolved.
    pub created: Vec<(Labels, i64)>,
    /// Native histograms, series labels resolved.
    pub histograms: Vec<(Labels, i64, FloatHistogram)>,
    /// Where the record after it starts.
    pub next: Position,
}

impl Batch {
    /// Its samples, float and histogram: what the queue counts as pending.
    pub fn len(&self) -> usize {
        self.samples.len() + self.histograms.len()
    }

    /// Whether it holds no sample of either kind.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What reading met besides batches.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Damage {
    /// Segments (or their rest) skipped because a record failed its check.
    pub segments: u64,
    /// Samples those records are known to have held (at least).
    pub samples: u64,
}

/// The reading half, owned by the sender.
#[derive(Debug)]
pub struct Reader {
    dir: PathBuf,
    shared: Arc<Shared>,
    segment: u64,
    offset: u64,
    file: Option<File>,
    dict: HashMap<u32, Labels>,
    /// Damage met so far.
    pub damage: Damage,
    /// Rebuilding the series references at open: sample records are skipped.
    replaying: bool,
    last_position_sync: Instant,
}

fn position_path(dir: &Path) -> PathBuf {
    dir.join("position")
}

fn read_position(dir: &Path) -> Option<Position> {
    let b = std::fs::read(position_path(dir)).ok()?;
    if b.len() != 20 || crc32fast::hash(&b[..16]).to_le_bytes() != b[16..] {
        tracing::warn!(dir = %dir.display(), "Remote-write queue position file is damaged; resending from the oldest segment");
        return None;
    }
    Some(Position {
        segment: u64::from_le_bytes(b[..8].try_into().ok()?),
        offset: u64::from_le_bytes(b[8..16].try_into().ok()?),
    })
}

impl Reader {
    /// Opens the reader at the saved position (the oldest segment without one),
    /// rebuilding the segment's series references up to it.
    pub fn open(dir: &Path, shared: Arc<Shared>) -> io::Result<Self> {
        let segs = segments(dir)?;
        let first = segs.first().copied().unwrap_or(1);
        let mut pos = read_position(dir).unwrap_or(Position {
            segment: first,
            offset: HEADER,
        });
        if !segs.contains(&pos.segment) {
            pos = Position {
                segment: segs
                    .iter()
                    .copied()
                    .find(|&s| s > pos.segment)
                    .unwrap_or(first),
                offset: HEADER,
            };
        }
        let mut r = Self {
            dir: dir.to_path_buf(),
            shared,
            segment: pos.segment,
            offset: HEADER,
            file: None,
            dict: HashMap::new(),
            damage: Damage::default(),
            replaying: false,
            last_position_sync: Instant::now(),
        };
        // Replay the series records before the position (samples are not decoded).
        r.replaying = true;
        while r.offset < pos.offset {
            match r.read_one()? {
                Step::Batch(_) | Step::Series => {}
                Step::Idle | Step::Skipped => break,
            }
        }
        r.replaying = false;
        Ok(r)
    }

    /// The position of the next unread record.
    pub fn position(&self) -> Position {
        Position {
            segment: self.segment,
            offset: self.offset,
        }
    }

    /// Samples appended since open.
    pub fn appended(&self) -> u64 {
        self.shared.end.lock().expect("queue lock").appended
    }

    /// Counts the samples from the position to the segments this process writes
    /// (record headers only): the backlog a restart found. Samples appended since are
    /// [`Reader::appended`].
    pub fn count_pending(&self) -> io::Result<u64> {
        let mut total = 0u64;
        let end_seg = self.shared.end.lock().expect("queue lock").session_start;
        for seq in segments(&self.dir)?
            .into_iter()
            .filter(|&s| s >= self.segment && s < end_seg)
        {
            let Ok(mut f) = open_segment(&self.dir, seq) else {
                continue;
            };
            let mut off = if seq == self.segment {
                self.offset
            } else {
                HEADER
            };
            f.seek(SeekFrom::Start(off))?;
            let mut head = [0u8; FRAME as usize + PAYLOAD_HEAD];
            while f.read_exact(&mut head).is_ok() {
                let len = u32::from_le_bytes(head[..4].try_into().expect("4"));
                if head[8] == KIND_SAMPLES || head[8] == KIND_HISTOGRAMS {
                    total += u64::from(u32::from_le_bytes(head[17..21].try_into().expect("4")));
                }
                off += FRAME + u64::from(len);
                f.seek(SeekFrom::Start(off))?;
            }
        }
        Ok(total)
    }

    /// Bytes on disk from the position to the end of the queue.
    pub fn backlog_bytes(&self) -> u64 {
        let end = self.shared.end.lock().expect("queue lock");
        let (end_seg, end_len) = (end.segment, end.len);
        drop(end);
        let mut total = 0;
        for seq in segments(&self.dir).unwrap_or_default() {
            if seq < self.segment {
                continue;
            }
            let len = if seq == end_seg {
                end_len
            } else {
                std::fs::metadata(segment_path(&self.dir, seq)).map_or(0, |m| m.len())
            };
            let from = if seq == self.segment { self.offset } else { 0 };
            total += len.saturating_sub(from);
        }
        total
    }

    /// Whether the position is in the segment being written.
    pub fn in_newest_segment(&self) -> bool {
        self.shared.end.lock().expect("queue lock").segment == self.segment
    }

    /// Drops the rest of the current segment (when the backlog is over its bound);
    /// returns the samples it held. Never drops the segment being written.
    pub fn drop_segment(&mut self) -> io::Result<u64> {
        if self.in_newest_segment() {
            return Ok(0);
        }
        let mut dropped = 0;
        loop {
            match self.read_one()? {
                Step::Batch(b) => dropped += b.samples.len() as u64,
                Step::Series => {}
                Step::Idle | Step::Skipped => break,
            }
        }
        Ok(dropped)
    }

    /// The next batch of samples, or `None` when everything appended has been read.
    pub fn next_batch(&mut self) -> io::Result<Option<Batch>> {
        loop {
            match self.read_one()? {
                Step::Batch(b) => return Ok(Some(b)),
                Step::Series | Step::Skipped => {}
                Step::Idle => return Ok(None),
            }
        }
    }

    fn next_segment(&mut self) -> io::Result<bool> {
        let next = segments(&self.dir)?.into_iter().find(|&s| s > self.segment);
        match next {
            Some(n) => {
                self.segment = n;
                self.offset = HEADER;
                self.file = None;
                self.dict.clear();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn read_one(&mut self) -> io::Result<Step> {
        let (end_seg, end_len) = {
            let e = self.shared.end.lock().expect("queue lock");
            (e.segment, e.len)
        };
        if self.segment == end_seg && self.offset >= end_len {
            return Ok(Step::Idle);
        }
        if self.segment > end_seg {
            return Ok(Step::Idle);
        }
        if self.file.is_none() {
            match open_segment(&self.dir, self.segment) {
                Ok(mut f) => {
                    f.seek(SeekFrom::Start(self.offset))?;
                    self.file = Some(f);
                }
                Err(e)
                    if e.kind() == io::ErrorKind::NotFound
                        || e.kind() == io::ErrorKind::InvalidData
                        || e.kind() == io::ErrorKind::UnexpectedEof =>
                {
                    if e.kind() != io::ErrorKind::NotFound {
                        tracing::warn!(segment = self.segment, dir = %self.dir.display(), error = %e, "Remote-write queue segment unreadable; skipped");
                        self.damage.segments += 1;
                    }
                    return Ok(if self.next_segment()? {
                        Step::Skipped
                    } else {
                        Step::Idle
                    });
                }
                Err(e) => return Err(e),
            }
        }
        let f = self.file.as_mut().expect("opened above");
        match read_record(f) {
            Ok(Some(p)) => {
                self.offset += FRAME + p.len() as u64;
                self.decode(&p)
            }
            Ok(None) => {
                if self.segment == end_seg {
                    return Ok(Step::Idle);
                }
                Ok(if self.next_segment()? {
                    Step::Skipped
                } else {
                    Step::Idle
                })
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                tracing::warn!(segment = self.segment, offset = self.offset, dir = %self.dir.display(), error = %e, "Remote-write queue record damaged; the rest of its segment is skipped");
                self.damage.segments += 1;
                if self.segment == end_seg {
                    // The writer moves on to a fresh segment at the next append.
                    self.offset = end_len;
                    return Ok(Step::Idle);
                }
                Ok(if self.next_segment()? {
                    Step::Skipped
                } else {
                    Step::Idle
                })
            }
            Err(e) => Err(e),
        }
    }

    fn decode(&mut self, p: &[u8]) -> io::Result<Step> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        let kind = p[0];
        let appended_ms = i64::from_le_bytes(p[1..9].try_into().expect("8"));
        let count = u32::from_le_bytes(p[9..13].try_into().expect("4"));
        if self.replaying && kind != KIND_SERIES {
            return Ok(Step::Series);
        }
        let body = snap::raw::Decoder::new()
            .decompress_vec(&p[PAYLOAD_HEAD..])
            .map_err(|e| bad(&format!("snappy: {e}")));
        let body = match body {
            Ok(b) => b,
            Err(e) => return self.damaged(e, u64::from(count)),
        };
        let mut at = 0;
        match kind {
            KIND_SERIES => {
                while at < body.len() {
                    let Some((r, l)) = decode_series(&body, &mut at) else {
                        return self.damaged(bad("series record"), 0);
                    };
                    self.dict.insert(r, l);
                }
                Ok(Step::Series)
            }
            KIND_SAMPLES => {
                // Each sample takes at least 10 bytes of the body.
                let mut samples = Vec::with_capacity((count as usize).min(body.len() / 10));
                while at < body.len() {
                    let parsed = (|| {
                        let (r, t) = get_ref_time(&body, &mut at)?;
                        Some((r, t, get_f64(&body, &mut at)?))
                    })();
                    let Some((r, t, v)) = parsed else {
                        return self.damaged(bad("samples record"), u64::from(count));
                    };
                    let Some(l) = self.dict.get(&r) else {
                        return self
                            .damaged(bad("sample of an undefined series"), u64::from(count));
                    };
                    samples.push((l.clone(), t, v));
                }
                Ok(Step::Batch(Batch {
                    appended_ms,
                    samples,
                    exemplars: Vec::new(),
                    created: Vec::new(),
                    histograms: Vec::new(),
                    next: self.position(),
                }))
            }
            KIND_EXEMPLARS => {
                // Each exemplar takes at least 11 bytes of the body.
                let mut exemplars = Vec::with_capacity((count as usize).min(body.len() / 11));
                while at < body.len() {
                    let parsed = (|| {
                        let (r, t) = get_ref_time(&body, &mut at)?;
                        let value = get_f64(&body, &mut at)?;
                        let labels = decode_labels(&body, &mut at)?;
                        Some((r, Exemplar { labels, value, t }))
                    })();
                    let Some((r, e)) = parsed else {
                        return self.damaged(bad("exemplars record"), 0);
                    };
                    let Some(l) = self.dict.get(&r) else {
                        return self.damaged(bad("exemplar of an undefined series"), 0);
                    };
                    exemplars.push((l.clone(), e));
                }
                Ok(Step::Batch(Batch {
                    appended_ms,
                    samples: Vec::new(),
                    exemplars,
                    created: Vec::new(),
                    histograms: Vec::new(),
                    next: self.position(),
                }))
            }
            KIND_CREATED => {
                // Each takes at least 2 bytes of the body.
                let mut created = Vec::with_capacity((count as usize).min(body.len() / 2));
                while at < body.len() {
                    let parsed = get_ref_time(&body, &mut at);
                    let Some((r, ct)) = parsed else {
                        return self.damaged(bad("created record"), 0);
                    };
                    let Some(l) = self.dict.get(&r) else {
                        return self.damaged(bad("created time of an undefined series"), 0);
                    };
                    created.push((l.clone(), ct));
                }
                Ok(Step::Batch(Batch {
                    appended_ms,
                    samples: Vec::new(),
                    exemplars: Vec::new(),
                    created,
                    histograms: Vec::new(),
                    next: self.position(),
                }))
            }
            KIND_HISTOGRAMS => {
                // Each takes at least 3 bytes of the body.
                let mut histograms = Vec::with_capacity((count as usize).min(body.len() / 3));
                while at < body.len() {
                    let parsed = (|| {
                        let (r, t) = get_ref_time(&body, &mut at)?;
                        let n = usize::try_from(get_varint(&body, &mut at)?).ok()?;
                        let msg = body.get(at..at.checked_add(n)?)?;
                        at += n;
                        let wire = <crate::v2::Histogram as prost::Message>::decode(msg).ok()?;
                        Some((r, t, crate::histogram_of(&wire).ok()?))
                    })();
                    let Some((r, t, h)) = parsed else {
                        return self.damaged(bad("histograms record"), u64::from(count));
                    };
                    let Some(l) = self.dict.get(&r) else {
                        return self
                            .damaged(bad("histogram of an undefined series"), u64::from(count));
                    };
                    histograms.push((l.clone(), t, h));
                }
                Ok(Step::Batch(Batch {
                    appended_ms,
                    samples: Vec::new(),
                    exemplars: Vec::new(),
                    created: Vec::new(),
                    histograms,
                    next: self.position(),
                }))
            }
            _ => self.damaged(bad("unknown record kind"), 0),
        }
    }

    fn damaged(&mut self, e: io::Error, samples: u64) -> io::Result<Step> {
        tracing::warn!(segment = self.segment, offset = self.offset, dir = %self.dir.display(), error = %e, "Remote-write queue record damaged; skipped");
        self.damage.samples += samples;
        self.damage.segments += 1;
        Ok(Step::Skipped)
    }

    /// Saves `pos` as acknowledged and deletes the segments before it. The file is
    /// replaced by rename (a killed process keeps it); fsynced at most `sync_every`
    /// apart.
    pub fn commit(&mut self, pos: Position, sync_every: Duration) -> io::Result<()> {
        let mut b = Vec::with_capacity(20);
        b.extend_from_slice(&pos.segment.to_le_bytes());
        b.extend_from_slice(&pos.offset.to_le_bytes());
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        let tmp = self.dir.join(".position.tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(&b)?;
        let sync = self.last_position_sync.elapsed() >= sync_every;
        if sync {
            f.sync_data()?;
        }
        std::fs::rename(&tmp, position_path(&self.dir))?;
        if sync {
            File::open(&self.dir)?.sync_all()?;
            self.last_position_sync = Instant::now();
        }
        for seq in segments(&self.dir)? {
            if seq < pos.segment {
                std::fs::remove_file(segment_path(&self.dir, seq))?;
            }
        }
        Ok(())
    }
}

/// A series reference and a zigzag-encoded time, as every record kind but series
/// definitions starts an entry.
fn get_ref_time(b: &[u8], at: &mut usize) -> Option<(u32, i64)> {
    let r = u32::try_from(get_varint(b, at)?).ok()?;
    let z = get_varint(b, at)?;
    Some((r, ((z >> 1) as i64) ^ -((z & 1) as i64)))
}

/// A float as its 8 bits, little endian.
fn get_f64(b: &[u8], at: &mut usize) -> Option<f64> {
    let v = f64::from_bits(u64::from_le_bytes(b.get(*at..*at + 8)?.try_into().ok()?));
    *at += 8;
    Some(v)
}

fn decode_series(b: &[u8], at: &mut usize) -> Option<(u32, Labels)> {
    let r = u32::try_from(get_varint(b, at)?).ok()?;
    Some((r, decode_labels(b, at)?))
}

fn decode_labels(b: &[u8], at: &mut usize) -> Option<Labels> {
    let n = get_varint(b, at)?;
    if n > 1024 {
        return None;
    }
    let mut pairs = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let name = std::str::from_utf8(get_bytes(b, at)?).ok()?;
        let value = std::str::from_utf8(get_bytes(b, at)?).ok()?;
        pairs.push((name.to_string(), value.to_string()));
    }
    Some(Labels::from_pairs(pairs))
}

enum Step {
    Batch(Batch),
    Series,
    Skipped,
    Idle,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(name: &str, job: &str) -> Labels {
        Labels::from_pairs([("__name__", name), ("job", job)])
    }

    const SYNC: Duration = Duration::from_secs(1);

    #[test]
    fn exemplars_and_created_times_are_queued_with_their_commit_and_read_back_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, shared) = open(dir.path(), 1 << 20).unwrap();
        let ex = |t: i64| Exemplar {
            labels: Labels::from_pairs([("trace_id", format!("{t:032x}"))]),
            value: t as f64 / 10.0,
            t,
        };
        // With samples; alone, on a series the segment has not defined yet.
        let bucket = l("lat_bucket", "a");
        let hist =
            FloatHistogram::parse("{{schema:-53 count:3 sum:2 custom_values:[1] buckets:[1 2]}}")
                .unwrap();
        let extra = Extra {
            exemplars: vec![(bucket.clone(), ex(9))],
            created: vec![(bucket.clone(), 3)],
            histograms: vec![(l("lat", "a"), 10, hist.clone())],
        };
        w.append(1, &[(bucket.clone(), 10, 1.0)], &extra, SYNC)
            .unwrap();
        let alone = Extra {
            exemplars: vec![(l("lat_bucket", "b"), ex(20))],
            ..Extra::default()
        };
        w.append(2, &[], &alone, SYNC).unwrap();
        drop((w, shared));
        let (_w, shared) = open(dir.path(), 1 << 20).unwrap();
        let mut r = Reader::open(dir.path(), shared).unwrap();
        assert_eq!(
            r.count_pending().unwrap(),
            2,
            "a sample and a histogram; exemplars are not samples"
        );
        let got: Vec<Batch> = std::iter::from_fn(|| r.next_batch().unwrap()).collect();
        assert_eq!(got.len(), 5);
        assert_eq!(got[0].created, vec![(bucket.clone(), 3)]);
        assert_eq!(got[1].samples, vec![(bucket.clone(), 10, 1.0)]);
        assert_eq!(got[2].histograms.len(), 1);
        assert_eq!(got[2].histograms[0].0, l("lat", "a"));
        assert!(got[2].histograms[0].2.same_as(&hist));
        assert_eq!(got[2].len(), 1);
        assert_eq!(got[3].exemplars, vec![(bucket, ex(9))]);
        assert_eq!(got[4].exemplars, vec![(l("lat_bucket", "b"), ex(20))]);
        assert!(got[4].samples.is_empty());
    }

    #[test]
    fn what_is_appended_is_read_back_in_order_across_segments_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, shared) = open(dir.path(), 1024).unwrap();
        let mut want = Vec::new();
        for i in 0..200i64 {
            let batch = vec![
                (l("up", "a"), i * 1000, i as f64),
                (l(&format!("m{}", i % 7), "b"), -i, f64::NAN),
            ];
            w.append(i, &batch, &Extra::default(), SYNC).unwrap();
            want.push(batch);
        }
        assert!(
            segments(dir.path()).unwrap().len() > 3,
            "small segments rotate"
        );
        let mut r = Reader::open(dir.path(), Arc::clone(&shared)).unwrap();
        assert_eq!(
            r.count_pending().unwrap(),
            0,
            "this session's appends are not backlog"
        );
        assert_eq!(r.appended(), 400);
        let mut got = Vec::new();
        let mut mid = None;
        while let Some(b) = r.next_batch().unwrap() {
            if got.len() == 77 {
                mid = Some(b.next);
            }
            got.push(b);
        }
        assert_eq!(got.len(), 200);
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.samples[0], w[0]);
            assert_eq!(g.samples[1].0, w[1].0);
            assert!(g.samples[1].2.is_nan());
        }
        // Acknowledge up to batch 78, "restart": reading resumes right after it.
        let mid = mid.unwrap();
        r.commit(mid, SYNC).unwrap();
        drop((w, r, shared));
        let (mut w, shared) = open(dir.path(), 1024).unwrap();
        w.append(
            999,
            &[(l("up", "a"), 999_000, 1.0)],
            &Extra::default(),
            SYNC,
        )
        .unwrap();
        let mut r = Reader::open(dir.path(), shared).unwrap();
        assert_eq!(r.count_pending().unwrap(), 2 * (200 - 78));
        let first = r.next_batch().unwrap().unwrap();
        assert_eq!(first.samples[0].1, 78_000);
        let mut n = 1;
        let mut last = first;
        while let Some(b) = r.next_batch().unwrap() {
            n += 1;
            last = b;
        }
        assert_eq!(n, 200 - 78 + 1);
        assert_eq!(last.samples, vec![(l("up", "a"), 999_000, 1.0)]);
        assert!(
            segments(dir.path()).unwrap()[0] >= mid.segment,
            "acknowledged segments go"
        );
    }

    #[test]
    fn a_torn_tail_is_cut_and_damage_costs_only_its_segment() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, shared) = open(dir.path(), 1 << 20).unwrap();
        for i in 0..10 {
            w.append(i, &[(l("up", "a"), i, 1.0)], &Extra::default(), SYNC)
                .unwrap();
        }
        let seg = w.segment;
        drop((w, shared));
        // A crash mid-write: half a record at the end.
        let path = segment_path(dir.path(), seg);
        let len = std::fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&[40, 0, 0, 0, 1, 2])
            .unwrap();
        let (mut w, shared) = open(dir.path(), 1 << 20).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            len,
            "torn tail cut"
        );
        for i in 10..20 {
            w.append(i, &[(l("up", "a"), i, 2.0)], &Extra::default(), SYNC)
                .unwrap();
        }
        // Damage a byte inside the first segment's fifth record.
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let mut r = Reader::open(dir.path(), shared).unwrap();
        let mut ts = Vec::new();
        while let Some(b) = r.next_batch().unwrap() {
            ts.extend(b.samples.iter().map(|s| s.1));
        }
        assert!(ts.len() < 20 && ts.len() >= 10, "{ts:?}");
        assert_eq!(
            &ts[ts.len() - 10..],
            &(10..20).collect::<Vec<i64>>()[..],
            "the next segment is whole"
        );
        assert!(r.damage.segments >= 1);
    }

    #[test]
    fn hostile_files_do_not_panic() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(segment_path(dir.path(), 1), b"garbage").unwrap();
        let mut junk = MAGIC.to_vec();
        junk.extend_from_slice(&VERSION.to_le_bytes());
        junk.extend_from_slice(&[0xff; 64]);
        std::fs::write(segment_path(dir.path(), 2), &junk).unwrap();
        std::fs::write(position_path(dir.path()), b"short").unwrap();
        let (mut w, shared) = open(dir.path(), 1 << 20).unwrap();
        w.append(1, &[(l("up", "x"), 5, 5.0)], &Extra::default(), SYNC)
            .unwrap();
        let mut r = Reader::open(dir.path(), shared).unwrap();
        let b = r.next_batch().unwrap().unwrap();
        assert_eq!(b.samples, vec![(l("up", "x"), 5, 5.0)]);
        assert!(r.next_batch().unwrap().is_none());
    }

    #[test]
    fn a_length_past_the_file_is_damage_not_an_allocation() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = MAGIC.to_vec();
        seg.extend_from_slice(&VERSION.to_le_bytes());
        // A frame claiming 200 MiB (below the record limit) in a 40-byte file.
        seg.extend_from_slice(&(200u32 << 20).to_le_bytes());
        seg.extend_from_slice(&[7; 32]);
        std::fs::write(segment_path(dir.path(), 1), &seg).unwrap();
        let mut f = open_segment(dir.path(), 1).unwrap();
        let e = read_record(&mut f).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("torn"), "{e}");
    }

    #[test]
    fn a_huge_commit_is_split_into_records_a_reader_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, shared) = open(dir.path(), 64 << 20).unwrap();
        let n = SAMPLES_PER_RECORD + 3;
        let batch: Vec<(Labels, i64, f64)> =
            (0..n).map(|i| (l("up", "a"), i as i64, 1.0)).collect();
        w.append(1, &batch, &Extra::default(), SYNC).unwrap();
        let mut r = Reader::open(dir.path(), shared).unwrap();
        let first = r.next_batch().unwrap().unwrap();
        let second = r.next_batch().unwrap().unwrap();
        assert_eq!(
            (first.samples.len(), second.samples.len()),
            (SAMPLES_PER_RECORD, 3)
        );
        assert_eq!(second.samples[2].1, n as i64 - 1);
    }

    #[test]
    fn dropping_a_segment_counts_its_samples() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, shared) = open(dir.path(), 1024).unwrap();
        for i in 0..100 {
            w.append(
                i,
                &[(l("up", "a"), i, 1.0), (l("up", "b"), i, 1.0)],
                &Extra::default(),
                SYNC,
            )
            .unwrap();
        }
        let mut r = Reader::open(dir.path(), shared).unwrap();
        let before = r.backlog_bytes();
        let dropped = r.drop_segment().unwrap();
        assert!(dropped > 0 && dropped.is_multiple_of(2), "{dropped}");
        assert!(r.backlog_bytes() < before);
        let mut rest = 0;
        while let Some(b) = r.next_batch().unwrap() {
            rest += b.samples.len() as u64;
        }
        assert_eq!(dropped + rest, 200);
    }
}
