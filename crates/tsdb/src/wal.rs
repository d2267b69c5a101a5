//! The write-ahead log: every committed batch is written here before it becomes visible.
//!
//! # Layout
//!
//! ```text
//! wal/00000001, wal/00000002, …        segments, each at most `segment_size` bytes
//! wal/checkpoint.00000007/00000000     a snapshot of the head covering segments ≤ 7
//! ```
//!
//! # Segment format (version 2)
//!
//! Each file starts with 8 bytes: the magic `LKWAL`, two zero bytes and the version (2).
//! Records follow, each framed as `u32 LE payload length`, `u32 LE CRC-32 (IEEE) of the
//! payload`, then the payload: a type byte and a body. All integers little endian.
//!
//! - `1` series: u64 ref, u16 label count, per label u16 name length + name, u32 value
//!   length + value.
//! - `2` samples: u32 count, per sample u64 ref, i64 timestamp (ms), u64 value bits.
//! - `3` chunk (checkpoints only): u64 ref, then one sealed chunk (see `chunk`).
//! - `4` deletion: u64 ref, i64 min time, i64 max time.
//! - `5` exemplars: u32 count, per exemplar u64 ref, i64 timestamp (ms), u64 value bits,
//!   u16 label count, per label u16 name length + name, u16 value length + value.
//!   A build from before exemplars skips these records as damage and keeps the rest.
//! - `6` native histograms: u32 count, per sample u64 ref, u32 length, then the sample as
//!   a histogram chunk of one (see `hchunk`: it carries the timestamp). Checkpoints keep
//!   sealed histogram chunks in `3` records (the chunk's first byte tells them apart).
//!
//! # Recovery
//!
//! Replay reads the newest checkpoint, then every later segment in order. A damaged
//! file costs only what it held, and never data written after it:
//!
//! - A record whose CRC or body does not check out is skipped when a good record follows
//!   it (a flipped byte in the payload), or replay scans forward for the next good frame
//!   (a damaged length); the bytes passed over are reported.
//! - Damage with no good record after it is a torn tail. In the newest segment (a crash
//!   mid-write) the file is truncated there. In an older segment or a checkpoint the file
//!   is left as it is (the next checkpoint replaces it) and replay goes on with the next
//!   file: later, intact segments are never deleted.
//! - A segment whose header is not a Lookout WAL header is skipped and reported.
//!
//! A write that fails (a full disk) is rolled back by truncating the segment to its last
//! complete record, so a failed write never leaves a torn record in front of later good
//! ones. Records are bounded when written: samples go out in records of at most
//! [`MAX_SAMPLES_PER_RECORD`], and label sets that the series record's fields cannot
//! hold are refused by the appender before they reach the log.
//!
//! A checkpoint is written from a snapshot of the head taken while the segment is rotated,
//! into a temporary directory that is fsynced and renamed; then older segments and
//! checkpoints are deleted. Replay time is bounded by what the head holds.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use lookout_model::Labels;

const MAGIC: &[u8; 5] = b"LKWAL";
const VERSION: u8 = 2;
const HEADER_LEN: u64 = 8;
const REC_SERIES: u8 = 1;
const REC_SAMPLES: u8 = 2;
const REC_CHUNK: u8 = 3;
const REC_DELETE: u8 = 4;
const REC_EXEMPLARS: u8 = 5;
const REC_HISTOGRAMS: u8 = 6;
/// The highest record type this build writes (a frame's type byte past it is damage).
const REC_LAST: u8 = REC_HISTOGRAMS;
/// Most histogram samples in one record: a histogram is bounded
/// ([`crate::hchunk::MAX_BUCKETS`] per side, at most about 1.5 MiB encoded), so a record
/// stays far under [`MAX_RECORD`].
const MAX_HISTOGRAMS_PER_RECORD: usize = 100;
/// Largest payload a record may declare; anything bigger is corruption.
const MAX_RECORD: u32 = 256 << 20;
/// Most samples written in one record (24 MiB of payload), far under [`MAX_RECORD`];
/// larger batches are split.
pub(crate) const MAX_SAMPLES_PER_RECORD: usize = 1 << 20;
/// Most exemplars written in one record (at most about 54 MiB: an exemplar's labels
/// are bounded), far under [`MAX_RECORD`]; larger batches are split.
const MAX_EXEMPLARS_PER_RECORD: usize = 100_000;
/// Most labels a series record holds (its count is a u16).
pub(crate) const MAX_LABELS: usize = u16::MAX as usize;
/// Longest label name a series record holds (its length is a u16).
pub(crate) const MAX_LABEL_NAME: usize = u16::MAX as usize;
/// Most bytes of label names and values one series record may carry.
pub(crate) const MAX_SERIES_BYTES: usize = 64 << 20;
/// Most bytes of CRC work a forward scan for the next good frame may do in one file,
/// so a file of garbage cannot make start-up crawl.
const MAX_RESYNC_WORK: u64 = 1 << 30;

/// A decoded WAL record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Record {
    /// A new series and its reference.
    Series { sref: u64, labels: Labels },
    /// Samples `(ref, t, v)`.
    Samples(Vec<(u64, i64, f64)>),
    /// A sealed chunk of a series (checkpoints); shared with the head while written.
    Chunk {
        sref: u64,
        data: std::sync::Arc<[u8]>,
    },
    /// Samples of a series in `[mint, maxt]` were deleted.
    Delete { sref: u64, mint: i64, maxt: i64 },
    /// Exemplars `(ref, exemplar)`.
    Exemplars(Vec<(u64, lookout_model::Exemplar)>),
    /// Native-histogram samples `(ref, sample)`.
    Histograms(Vec<(u64, lookout_storage::HistogramSample)>),
}

fn encode(rec: &Record, buf: &mut Vec<u8>) {
    match rec {
        Record::Series { sref, labels } => {
            buf.push(REC_SERIES);
            buf.extend_from_slice(&sref.to_le_bytes());
            buf.extend_from_slice(&(labels.len() as u16).to_le_bytes());
            for l in labels {
                buf.extend_from_slice(&(l.name.len() as u16).to_le_bytes());
                buf.extend_from_slice(l.name.as_bytes());
                buf.extend_from_slice(&(l.value.len() as u32).to_le_bytes());
                buf.extend_from_slice(l.value.as_bytes());
            }
        }
        Record::Samples(s) => {
            buf.push(REC_SAMPLES);
            buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
            for (r, t, v) in s {
                buf.extend_from_slice(&r.to_le_bytes());
                buf.extend_from_slice(&t.to_le_bytes());
                buf.extend_from_slice(&v.to_bits().to_le_bytes());
            }
        }
        Record::Chunk { sref, data } => {
            buf.push(REC_CHUNK);
            buf.extend_from_slice(&sref.to_le_bytes());
            buf.extend_from_slice(data);
        }
        Record::Delete { sref, mint, maxt } => {
            buf.push(REC_DELETE);
            buf.extend_from_slice(&sref.to_le_bytes());
            buf.extend_from_slice(&mint.to_le_bytes());
            buf.extend_from_slice(&maxt.to_le_bytes());
        }
        Record::Exemplars(es) => {
            // Exemplar labels are bounded (128 characters together), so u16 lengths hold
            // them; the appender checks before they get here.
            buf.push(REC_EXEMPLARS);
            buf.extend_from_slice(&(es.len() as u32).to_le_bytes());
            for (r, e) in es {
                buf.extend_from_slice(&r.to_le_bytes());
                buf.extend_from_slice(&e.t.to_le_bytes());
                buf.extend_from_slice(&e.value.to_bits().to_le_bytes());
                buf.extend_from_slice(&(e.labels.len() as u16).to_le_bytes());
                for l in &e.labels {
                    for part in [&l.name, &l.value] {
                        buf.extend_from_slice(&(part.len() as u16).to_le_bytes());
                        buf.extend_from_slice(part.as_bytes());
                    }
                }
            }
        }
        Record::Histograms(hs) => {
            buf.push(REC_HISTOGRAMS);
            buf.extend_from_slice(&(hs.len() as u32).to_le_bytes());
            for (r, h) in hs {
                let one = crate::hchunk::encode(std::slice::from_ref(h));
                buf.extend_from_slice(&r.to_le_bytes());
                buf.extend_from_slice(&(one.len() as u32).to_le_bytes());
                buf.extend_from_slice(&one);
            }
        }
    }
}

/// Appends `rec` to `out` as one or more framed records (large sample batches split).
fn frame(rec: &Record, scratch: &mut Vec<u8>, out: &mut Vec<u8>) {
    if let Record::Samples(s) = rec
        && s.len() > MAX_SAMPLES_PER_RECORD
    {
        for part in s.chunks(MAX_SAMPLES_PER_RECORD) {
            frame(&Record::Samples(part.to_vec()), scratch, out);
        }
        return;
    }
    if let Record::Exemplars(e) = rec
        && e.len() > MAX_EXEMPLARS_PER_RECORD
    {
        for part in e.chunks(MAX_EXEMPLARS_PER_RECORD) {
            frame(&Record::Exemplars(part.to_vec()), scratch, out);
        }
        return;
    }
    if let Record::Histograms(h) = rec
        && h.len() > MAX_HISTOGRAMS_PER_RECORD
    {
        for part in h.chunks(MAX_HISTOGRAMS_PER_RECORD) {
            frame(&Record::Histograms(part.to_vec()), scratch, out);
        }
        return;
    }
    scratch.clear();
    encode(rec, scratch);
    debug_assert!(scratch.len() <= MAX_RECORD as usize, "record too large");
    out.extend_from_slice(&(scratch.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(scratch).to_le_bytes());
    out.extend_from_slice(scratch);
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
    fn string(&mut self, n: usize) -> Option<String> {
        self.take(n)
            .and_then(|b| String::from_utf8(b.to_vec()).ok())
    }
}

fn decode(payload: &[u8]) -> Option<Record> {
    let mut c = Cursor(payload);
    let rec = match c.u8()? {
        REC_SERIES => {
            let sref = c.u64()?;
            let n = c.u16()? as usize;
            let mut pairs = Vec::with_capacity(n);
            for _ in 0..n {
                let nl = c.u16()? as usize;
                let name = c.string(nl)?;
                let vl = c.u32()? as usize;
                let value = c.string(vl)?;
                pairs.push((name, value));
            }
            Record::Series {
                sref,
                labels: Labels::from_pairs(pairs),
            }
        }
        REC_SAMPLES => {
            let n = c.u32()? as usize;
            if n.checked_mul(24)? != c.0.len() {
                return None;
            }
            let mut s = Vec::with_capacity(n);
            for _ in 0..n {
                let r = c.u64()?;
                let t = c.u64()? as i64;
                let v = f64::from_bits(c.u64()?);
                s.push((r, t, v));
            }
            Record::Samples(s)
        }
        REC_CHUNK => {
            let sref = c.u64()?;
            let data = std::mem::take(&mut c.0).into();
            Record::Chunk { sref, data }
        }
        REC_EXEMPLARS => {
            let n = c.u32()? as usize;
            // Each exemplar takes at least 26 bytes: a count past that is damage.
            if n.checked_mul(26)? > c.0.len() {
                return None;
            }
            let mut es = Vec::with_capacity(n);
            for _ in 0..n {
                let r = c.u64()?;
                let t = c.u64()? as i64;
                let value = f64::from_bits(c.u64()?);
                let k = c.u16()? as usize;
                let mut pairs = Vec::with_capacity(k.min(64));
                for _ in 0..k {
                    let nl = c.u16()? as usize;
                    let name = c.string(nl)?;
                    let vl = c.u16()? as usize;
                    pairs.push((name, c.string(vl)?));
                }
                es.push((
                    r,
                    lookout_model::Exemplar {
                        labels: Labels::from_pairs(pairs),
                        value,
                        t,
                    },
                ));
            }
            Record::Exemplars(es)
        }
        REC_HISTOGRAMS => {
            let n = c.u32()? as usize;
            // Each sample takes at least 16 bytes: a count past that is damage.
            if n.checked_mul(16)? > c.0.len() {
                return None;
            }
            let mut hs = Vec::with_capacity(n);
            for _ in 0..n {
                let r = c.u64()?;
                let len = c.u32()? as usize;
                let mut one = Vec::with_capacity(1);
                crate::hchunk::decode(c.take(len)?, &mut one).ok()?;
                if one.len() != 1 {
                    return None;
                }
                hs.push((r, one.pop()?));
            }
            Record::Histograms(hs)
        }
        REC_DELETE => Record::Delete {
            sref: c.u64()?,
            mint: c.u64()? as i64,
            maxt: c.u64()? as i64,
        },
        _ => return None,
    };
    c.0.is_empty().then_some(rec)
}

fn header() -> [u8; 8] {
    let mut h = [0u8; 8];
    h[..5].copy_from_slice(MAGIC);
    h[7] = VERSION;
    h
}

fn segment_name(n: u64) -> String {
    format!("{n:08}")
}

fn parse_number(name: &str) -> Option<u64> {
    (name.len() == 8 && name.bytes().all(|b| b.is_ascii_digit()))
        .then(|| name.parse().ok())
        .flatten()
}

/// The good record framed at `pos`, and where the next frame starts.
fn frame_at(data: &[u8], pos: usize) -> Option<(Record, usize)> {
    let frame = data.get(pos..pos.checked_add(8)?)?;
    let n = u32::from_le_bytes(frame[..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(frame[4..].try_into().expect("4 bytes"));
    if n == 0 || n > MAX_RECORD {
        return None;
    }
    let end = pos + 8 + n as usize;
    let payload = data.get(pos + 8..end)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    decode(payload).map(|r| (r, end))
}

/// Whether a good record is framed at `pos`, and where it ends; cheap checks first.
fn good_frame_at(data: &[u8], pos: usize, work: &mut u64) -> Option<usize> {
    let frame = data.get(pos..pos.checked_add(9)?)?;
    let n = u32::from_le_bytes(frame[..4].try_into().expect("4 bytes")) as usize;
    if n == 0 || n > data.len() - pos - 8 || !(REC_SERIES..=REC_LAST).contains(&frame[8]) {
        return None;
    }
    *work += n as u64;
    frame_at(data, pos).map(|(_, end)| end)
}

/// What reading one file found.
#[derive(Debug, Default)]
struct FileRead {
    /// Records applied.
    records: u64,
    /// Offset after the last good record.
    good_end: u64,
    /// Bytes of damaged records passed over before good ones.
    skipped: u64,
    /// Bytes after the last good record that are not a good record (a torn tail).
    tail: u64,
}

/// Reads one file's records into `apply`, passing over damaged records that good ones
/// follow. Fails only when the file cannot be read or has no Lookout WAL header.
fn read_file(path: &Path, apply: &mut dyn FnMut(Record)) -> io::Result<FileRead> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    if data.len() < HEADER_LEN as usize || &data[..5] != MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not a Lookout WAL file (bad magic)", path.display()),
        ));
    }
    if data[7] != VERSION {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: unsupported WAL version {}", path.display(), data[7]),
        ));
    }
    let mut out = FileRead::default();
    let mut pos = HEADER_LEN as usize;
    let mut work = 0u64;
    while pos < data.len() {
        if let Some((rec, next)) = frame_at(&data, pos) {
            apply(rec);
            out.records += 1;
            pos = next;
            out.good_end = pos as u64;
            continue;
        }
        // Damaged. A flipped payload byte leaves the length right: is the next frame good?
        let declared = data
            .get(pos..pos + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize);
        let after = declared
            .and_then(|n| pos.checked_add(8 + n))
            .filter(|&e| e <= data.len());
        let resume = match after {
            Some(e) if e == data.len() => None,
            Some(e) if good_frame_at(&data, e, &mut work).is_some() => Some(e),
            _ => {
                // Otherwise scan for the next good frame, within a work budget.
                let mut found = None;
                let mut p = pos + 1;
                while p + 9 <= data.len() && work < MAX_RESYNC_WORK {
                    if good_frame_at(&data, p, &mut work).is_some() {
                        found = Some(p);
                        break;
                    }
                    p += 1;
                }
                found
            }
        };
        match resume {
            Some(next) => {
                out.skipped += (next - pos) as u64;
                pos = next;
            }
            None => break,
        }
    }
    out.good_end = out.good_end.max(HEADER_LEN);
    out.tail = data.len() as u64 - out.good_end.min(data.len() as u64);
    if pos >= data.len() {
        out.tail = 0;
    }
    Ok(out)
}

/// What replay found.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    /// Bytes of torn data cut from the newest segment's end.
    pub(crate) truncated_bytes: u64,
    /// Bytes of damaged records passed over (or left unread at the end of an older file).
    pub(crate) skipped_bytes: u64,
    /// Each damaged file and what was lost, for the log and the health check.
    pub(crate) damaged: Vec<String>,
    /// Records read.
    pub(crate) records: u64,
    /// Segment files read.
    pub(crate) segments: u64,
}

/// An open WAL.
pub(crate) struct Wal {
    dir: PathBuf,
    file: File,
    segment: u64,
    /// Bytes of complete records in the current segment.
    good_len: u64,
    segment_size: u64,
    dirty: bool,
    /// Bytes in all segments (not checkpoints).
    total: u64,
    scratch: Vec<u8>,
    out: Vec<u8>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("segment", &self.segment)
            .finish()
    }
}

/// Segment numbers and checkpoints (number, path), ascending.
type Listing = (Vec<u64>, Vec<(u64, PathBuf)>);

fn list(dir: &Path) -> io::Result<Listing> {
    let mut segs = Vec::new();
    let mut cps = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(n) = parse_number(&name) {
            segs.push(n);
        } else if let Some(n) = name.strip_prefix("checkpoint.").and_then(parse_number) {
            cps.push((n, e.path()));
        } else if name.ends_with(".tmp") {
            // An interrupted checkpoint: never renamed, so never used.
            let _ = fs::remove_dir_all(e.path());
        }
    }
    segs.sort_unstable();
    cps.sort_unstable_by_key(|c| c.0);
    Ok((segs, cps))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Wal {
    /// Opens the WAL in `dir`, replaying the newest checkpoint and later segments into
    /// `apply`, repairing a torn or corrupt tail, and starting a new segment.
    pub(crate) fn open(
        dir: &Path,
        segment_size: u64,
        mut apply: impl FnMut(Record),
    ) -> io::Result<(Self, Replay)> {
        fs::create_dir_all(dir)?;
        let (segs, cps) = list(dir)?;
        let mut replay = Replay::default();
        let mut after = 0u64;
        if let Some((n, path)) = cps.last() {
            let file = path.join(segment_name(0));
            match read_file(&file, &mut apply) {
                Ok(r) => {
                    replay.records += r.records;
                    if r.skipped + r.tail > 0 {
                        replay.skipped_bytes += r.skipped + r.tail;
                        replay.damaged.push(format!(
                            "checkpoint {}: {} damaged bytes passed over, {} records read",
                            file.display(),
                            r.skipped + r.tail,
                            r.records
                        ));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    replay.damaged.push(format!("checkpoint skipped: {e}"));
                }
                Err(e) => return Err(e),
            }
            after = *n;
        }
        let mut last = after;
        let live: Vec<u64> = segs.iter().copied().filter(|s| *s > after).collect();
        for (i, &s) in live.iter().enumerate() {
            let newest = i + 1 == live.len();
            let path = dir.join(segment_name(s));
            let len = fs::metadata(&path)?.len();
            last = s;
            replay.segments += 1;
            let r = match read_file(&path, &mut apply) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    if newest && len <= HEADER_LEN {
                        // Created and cut off before its header was complete.
                        replay.truncated_bytes += len;
                        fs::remove_file(&path)?;
                    } else {
                        replay.skipped_bytes += len;
                        replay.damaged.push(format!("segment skipped: {e}"));
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            replay.records += r.records;
            replay.skipped_bytes += r.skipped;
            if r.tail > 0 && newest {
                // A torn tail: the crash came mid-write.
                replay.truncated_bytes += r.tail;
                let f = OpenOptions::new().write(true).open(&path)?;
                f.set_len(r.good_end)?;
                f.sync_all()?;
            } else if r.tail > 0 {
                replay.skipped_bytes += r.tail;
            }
            if r.skipped > 0 || (r.tail > 0 && !newest) {
                replay.damaged.push(format!(
                    "segment {}: {} damaged bytes passed over, {} records read; later segments are intact",
                    path.display(),
                    r.skipped + if newest { 0 } else { r.tail },
                    r.records
                ));
            }
        }
        // Segments a checkpoint already covers are leftovers of an interrupted cleanup.
        for &s in segs.iter().filter(|s| **s <= after) {
            let _ = fs::remove_file(dir.join(segment_name(s)));
        }
        for (_, p) in cps.iter().rev().skip(1) {
            let _ = fs::remove_dir_all(p);
        }
        let segment = last + 1;
        let file = Self::create_segment(dir, segment)?;
        let total = list(dir)?
            .0
            .iter()
            .map(|s| {
                fs::metadata(dir.join(segment_name(*s)))
                    .map(|m| m.len())
                    .unwrap_or(0)
            })
            .sum();
        Ok((
            Self {
                dir: dir.to_path_buf(),
                file,
                segment,
                good_len: HEADER_LEN,
                segment_size,
                dirty: false,
                total,
                scratch: Vec::new(),
                out: Vec::new(),
            },
            replay,
        ))
    }

    fn create_segment(dir: &Path, n: u64) -> io::Result<File> {
        let path = dir.join(segment_name(n));
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)?;
        f.write_all(&header())?;
        f.sync_all()?;
        sync_dir(dir)?;
        Ok(f)
    }

    /// Starts a new segment; returns the number of the one just finished.
    pub(crate) fn rotate(&mut self) -> io::Result<u64> {
        self.sync()?;
        let done = self.segment;
        self.file = Self::create_segment(&self.dir, done + 1)?;
        self.segment = done + 1;
        self.good_len = HEADER_LEN;
        self.total += HEADER_LEN;
        Ok(done)
    }

    /// Appends records (not yet fsynced). On failure the segment is cut back to its last
    /// complete record, so nothing of the batch remains.
    pub(crate) fn append(&mut self, recs: &[Record]) -> io::Result<()> {
        if self.good_len >= self.segment_size {
            self.rotate()?;
        }
        self.out.clear();
        for r in recs {
            frame(r, &mut self.scratch, &mut self.out);
        }
        if let Err(e) = self.file.write_all(&self.out) {
            let _ = self.file.set_len(self.good_len);
            let _ = std::io::Seek::seek(&mut self.file, io::SeekFrom::Start(self.good_len));
            return Err(e);
        }
        self.good_len += self.out.len() as u64;
        self.total += self.out.len() as u64;
        self.dirty = true;
        if self.out.capacity() > 4 << 20 {
            self.out = Vec::new();
        }
        Ok(())
    }

    /// Fsyncs if anything was written since the last sync.
    pub(crate) fn sync(&mut self) -> io::Result<()> {
        if self.dirty {
            self.file.sync_data()?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Bytes in segments.
    pub(crate) fn size(&self) -> u64 {
        self.total
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Writes checkpoint `n` (covering segments ≤ n) from `recs`, then removes the segments
/// and checkpoints it replaces. Runs without the WAL lock: it touches only older files.
pub(crate) fn write_checkpoint(
    dir: &Path,
    n: u64,
    recs: impl Iterator<Item = Record>,
) -> io::Result<u64> {
    let final_dir = dir.join(format!("checkpoint.{}", segment_name(n)));
    let tmp = dir.join(format!("checkpoint.{}.tmp", segment_name(n)));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    let mut f =
        std::io::BufWriter::with_capacity(1 << 20, File::create(tmp.join(segment_name(0)))?);
    f.write_all(&header())?;
    let (mut scratch, mut out) = (Vec::new(), Vec::new());
    let mut size = HEADER_LEN;
    for r in recs {
        out.clear();
        frame(&r, &mut scratch, &mut out);
        f.write_all(&out)?;
        size += out.len() as u64;
    }
    let f = f.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    sync_dir(&tmp)?;
    let _ = fs::remove_dir_all(&final_dir);
    fs::rename(&tmp, &final_dir)?;
    sync_dir(dir)?;
    let (segs, cps) = list(dir)?;
    for s in segs.into_iter().filter(|s| *s <= n) {
        fs::remove_file(dir.join(segment_name(s)))?;
    }
    for (m, p) in cps {
        if m < n {
            fs::remove_dir_all(p)?;
        }
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(r: u64) -> Record {
        Record::Series {
            sref: r,
            labels: Labels::from_pairs([("__name__", "m"), ("i", &*r.to_string())]),
        }
    }

    fn replay_all(dir: &Path) -> (Vec<Record>, Replay) {
        let mut got = Vec::new();
        let (_, rep) = Wal::open(dir, 1 << 20, |r| got.push(r)).unwrap();
        (got, rep)
    }

    #[test]
    fn records_round_trip_across_segments_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let recs = vec![
            series(1),
            Record::Samples(vec![(1, 5, 1.5), (1, 6, f64::INFINITY)]),
            Record::Chunk {
                sref: 1,
                data: vec![1, 2, 3].into(),
            },
            Record::Delete {
                sref: 1,
                mint: 0,
                maxt: 5,
            },
            Record::Exemplars(vec![
                (
                    1,
                    lookout_model::Exemplar {
                        labels: Labels::from_pairs([("trace_id", "4bf9"), ("span_id", "é")]),
                        value: 0.25,
                        t: -3,
                    },
                ),
                (
                    1,
                    lookout_model::Exemplar {
                        labels: Labels::empty(),
                        value: f64::INFINITY,
                        t: 9,
                    },
                ),
            ]),
            Record::Histograms(
                (0..60)
                    .map(|i| {
                        let h = lookout_model::FloatHistogram::parse(&format!(
                            "{{{{schema:1 count:{i} sum:0.5 offset:-2 buckets:[{i} 0.5]}}}}"
                        ))
                        .unwrap();
                        (
                            i % 3,
                            lookout_storage::HistogramSample {
                                t: i as i64 * 10,
                                h: std::sync::Arc::new(h),
                            },
                        )
                    })
                    .collect(),
            ),
        ];
        {
            let (mut w, _) = Wal::open(dir.path(), 100, |_| {}).unwrap();
            for r in &recs {
                w.append(std::slice::from_ref(r)).unwrap();
            }
            w.sync().unwrap();
        }
        let (got, rep) = replay_all(dir.path());
        assert_eq!(got, recs);
        assert_eq!(rep.truncated_bytes, 0);
        assert!(rep.segments >= 2, "small segment size rotates");
        // Reopening twice more keeps everything (each open starts a new segment).
        let (got, _) = replay_all(dir.path());
        assert_eq!(got, recs);
    }

    #[test]
    fn torn_tail_of_the_newest_segment_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut w, _) = Wal::open(dir.path(), 1 << 20, |_| {}).unwrap();
            w.append(&[series(1), series(2)]).unwrap();
            w.sync().unwrap();
        }
        let seg = dir.path().join(segment_name(1));
        let len = fs::metadata(&seg).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 5)
            .unwrap();
        let (got, rep) = replay_all(dir.path());
        assert_eq!(got, vec![series(1)]);
        assert!(rep.truncated_bytes > 0);
        // A flipped byte is caught by the CRC. The reopen above started segment 2, so
        // segment 1 is now an older segment: its damaged record is passed over and the
        // file left as it is, not truncated.
        let mut data = fs::read(&seg).unwrap();
        let last = data.len() - 1;
        data[last] ^= 0xff;
        fs::write(&seg, &data).unwrap();
        let (got, rep) = replay_all(dir.path());
        assert!(got.is_empty());
        assert_eq!(rep.truncated_bytes, 0);
        assert!(rep.skipped_bytes > 0);
        assert_eq!(fs::read(&seg).unwrap(), data);
    }

    #[test]
    fn checkpoint_replaces_older_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = Wal::open(dir.path(), 1 << 20, |_| {}).unwrap();
        w.append(&[series(1), series(2)]).unwrap();
        let done = w.rotate().unwrap();
        w.append(&[Record::Samples(vec![(2, 10, 1.0)])]).unwrap();
        w.sync().unwrap();
        write_checkpoint(dir.path(), done, [series(2)].into_iter()).unwrap();
        drop(w);
        let (got, _) = replay_all(dir.path());
        assert_eq!(got, vec![series(2), Record::Samples(vec![(2, 10, 1.0)])]);
        assert!(!dir.path().join(segment_name(done)).exists());
    }

    #[test]
    fn foreign_file_is_skipped_and_reported_not_deleted() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(segment_name(1)), b"not a wal at all").unwrap();
        let (_, rep) = Wal::open(dir.path(), 1 << 20, |_| {}).unwrap();
        assert!(rep.damaged[0].contains("bad magic"), "{:?}", rep.damaged);
        assert!(dir.path().join(segment_name(1)).exists());
    }

    /// Segments 1..=4, each holding one series record and one samples record.
    fn four_segments(dir: &Path) -> Vec<Record> {
        let (mut w, _) = Wal::open(dir, 1 << 20, |_| {}).unwrap();
        let mut all = Vec::new();
        for i in 1..=4u64 {
            let recs = vec![series(i), Record::Samples(vec![(i, 10, i as f64)])];
            w.append(&recs).unwrap();
            all.extend(recs);
            if i < 4 {
                w.rotate().unwrap();
            }
        }
        w.sync().unwrap();
        all
    }

    /// Issue 12: one flipped byte in an old segment deleted every later, intact segment.
    #[test]
    fn issue_12_a_flipped_byte_in_an_old_segment_costs_only_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let all = four_segments(dir.path());
        let seg = dir.path().join(segment_name(2));
        let mut data = fs::read(&seg).unwrap();
        // A byte inside the first record's payload (the series' labels).
        data[HEADER_LEN as usize + 8 + 12] ^= 0x01;
        fs::write(&seg, &data).unwrap();
        let (got, rep) = replay_all(dir.path());
        let mut want = all.clone();
        want.remove(2); // segment 2's series record
        assert_eq!(got, want);
        assert_eq!(rep.truncated_bytes, 0);
        assert!(rep.skipped_bytes > 0);
        assert_eq!(rep.damaged.len(), 1, "{:?}", rep.damaged);
        for n in 1..=4 {
            assert!(
                dir.path().join(segment_name(n)).exists(),
                "segment {n} kept"
            );
        }
    }

    #[test]
    fn issue_12_a_damaged_length_is_passed_over_by_scanning_for_the_next_frame() {
        let dir = tempfile::tempdir().unwrap();
        let all = four_segments(dir.path());
        let seg = dir.path().join(segment_name(3));
        let mut data = fs::read(&seg).unwrap();
        data[HEADER_LEN as usize + 2] = 0x7f; // the first record's length, now huge
        fs::write(&seg, &data).unwrap();
        let (got, rep) = replay_all(dir.path());
        let mut want = all.clone();
        want.remove(4);
        assert_eq!(got, want);
        assert!(rep.skipped_bytes > 0);
    }

    #[test]
    fn issue_12_garbage_at_the_end_of_an_old_segment_keeps_later_segments() {
        let dir = tempfile::tempdir().unwrap();
        let all = four_segments(dir.path());
        let seg = dir.path().join(segment_name(1));
        let mut data = fs::read(&seg).unwrap();
        let last = data.len() - 3;
        data[last] ^= 0xff; // inside the last record of segment 1
        fs::write(&seg, &data).unwrap();
        let (got, rep) = replay_all(dir.path());
        let mut want = all.clone();
        want.remove(1);
        assert_eq!(got, want);
        assert_eq!(
            rep.truncated_bytes, 0,
            "only the newest segment is ever cut"
        );
        assert_eq!(
            fs::read(&seg).unwrap(),
            data,
            "older files are left as they are"
        );
    }

    #[test]
    fn issue_12_a_damaged_checkpoint_keeps_its_good_records_and_the_segments_after() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = Wal::open(dir.path(), 1 << 20, |_| {}).unwrap();
        w.append(&[series(1)]).unwrap();
        let done = w.rotate().unwrap();
        w.append(&[Record::Samples(vec![(2, 10, 1.0)])]).unwrap();
        w.sync().unwrap();
        write_checkpoint(
            dir.path(),
            done,
            [series(1), series(2), series(3)].into_iter(),
        )
        .unwrap();
        drop(w);
        let cp = dir
            .path()
            .join(format!("checkpoint.{}", segment_name(done)))
            .join(segment_name(0));
        let mut data = fs::read(&cp).unwrap();
        data[HEADER_LEN as usize + 8 + 12] ^= 0x01;
        fs::write(&cp, &data).unwrap();
        let (got, rep) = replay_all(dir.path());
        assert_eq!(
            got,
            vec![series(2), series(3), Record::Samples(vec![(2, 10, 1.0)])]
        );
        assert_eq!(rep.damaged.len(), 1);
    }

    /// Issue 12: a batch larger than one record may hold was written unreadable.
    #[test]
    fn issue_12_huge_sample_batches_are_split_into_readable_records() {
        let dir = tempfile::tempdir().unwrap();
        let n = MAX_SAMPLES_PER_RECORD + 5;
        let batch: Vec<(u64, i64, f64)> = (0..n).map(|i| (1, i as i64, 1.0)).collect();
        {
            let (mut w, _) = Wal::open(dir.path(), 64 << 20, |_| {}).unwrap();
            w.append(&[series(1), Record::Samples(batch)]).unwrap();
            w.sync().unwrap();
        }
        let mut samples = 0;
        let (_, rep) = Wal::open(dir.path(), 64 << 20, |r| {
            if let Record::Samples(s) = r {
                samples += s.len();
            }
        })
        .unwrap();
        assert_eq!(samples, n);
        assert!(rep.damaged.is_empty() && rep.truncated_bytes == 0);
    }

    proptest::proptest! {
        /// Any damage to any byte of a WAL file is survived: open never fails or panics,
        /// and every record of the other segments is still read.
        #[test]
        fn any_damaged_byte_costs_at_most_its_file(at in 0usize..4096, with in 1u8..=255, seg in 1u64..=4) {
            let dir = tempfile::tempdir().unwrap();
            let all = four_segments(dir.path());
            let path = dir.path().join(segment_name(seg));
            let mut data = fs::read(&path).unwrap();
            let i = at % data.len();
            data[i] ^= with;
            fs::write(&path, &data).unwrap();
            let (got, _) = replay_all(dir.path());
            for (k, r) in all.iter().enumerate() {
                let from = k as u64 / 2 + 1;
                if from != seg {
                    proptest::prop_assert!(got.contains(r), "lost {:?}", r);
                }
            }
        }
    }
}
