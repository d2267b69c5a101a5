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
//!
//! # Recovery
//!
//! Replay reads the newest checkpoint, then every later segment in order. The first
//! record whose frame is incomplete or whose CRC or body does not check out ends replay:
//! that segment is truncated there and later segments are removed, and the caller is told
//! how many bytes were dropped. A write that fails (a full disk) is rolled back by
//! truncating the segment to its last complete record, so a failed write never leaves a
//! torn record in front of later good ones.
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
/// Largest payload a record may declare; anything bigger is corruption.
const MAX_RECORD: u32 = 256 << 20;

/// A decoded WAL record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Record {
    /// A new series and its reference.
    Series { sref: u64, labels: Labels },
    /// Samples `(ref, t, v)`.
    Samples(Vec<(u64, i64, f64)>),
    /// A sealed chunk of a series (checkpoints).
    Chunk { sref: u64, data: Vec<u8> },
    /// Samples of a series in `[mint, maxt]` were deleted.
    Delete { sref: u64, mint: i64, maxt: i64 },
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
    }
}

/// Appends one framed record to `out`.
fn frame(rec: &Record, scratch: &mut Vec<u8>, out: &mut Vec<u8>) {
    scratch.clear();
    encode(rec, scratch);
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
            let data = std::mem::take(&mut c.0).to_vec();
            Record::Chunk { sref, data }
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

/// Reads one file's records into `apply`; returns the offset after the last good record
/// and whether the file ended cleanly.
fn read_file(path: &Path, apply: &mut dyn FnMut(Record)) -> io::Result<(u64, bool, u64)> {
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
    let mut pos = HEADER_LEN as usize;
    let mut records = 0u64;
    while pos < data.len() {
        let Some(frame) = data.get(pos..pos + 8) else {
            break;
        };
        let n = u32::from_le_bytes(frame[..4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(frame[4..].try_into().expect("4 bytes"));
        if n > MAX_RECORD {
            break;
        }
        let Some(payload) = data.get(pos + 8..pos + 8 + n as usize) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Some(rec) = decode(payload) else { break };
        apply(rec);
        records += 1;
        pos += 8 + n as usize;
    }
    Ok((pos as u64, pos == data.len(), records))
}

/// What replay found.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    /// Bytes of torn or corrupt data removed.
    pub(crate) truncated_bytes: u64,
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
            let (_, clean, recs) = read_file(&path.join(segment_name(0)), &mut apply)?;
            if !clean {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("checkpoint {} is corrupt", path.display()),
                ));
            }
            replay.records += recs;
            after = *n;
        }
        let mut last = after;
        let mut broken_at: Option<usize> = None;
        let live: Vec<u64> = segs.iter().copied().filter(|s| *s > after).collect();
        for (i, &s) in live.iter().enumerate() {
            let path = dir.join(segment_name(s));
            let len = fs::metadata(&path)?.len();
            let (good, clean, recs) = match read_file(&path, &mut apply) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::InvalidData && len < HEADER_LEN + 1 => {
                    (0, false, 0)
                }
                Err(e) => return Err(e),
            };
            replay.records += recs;
            replay.segments += 1;
            last = s;
            if !clean {
                replay.truncated_bytes += len - good;
                if good < HEADER_LEN {
                    fs::remove_file(&path)?;
                } else {
                    let f = OpenOptions::new().write(true).open(&path)?;
                    f.set_len(good)?;
                    f.sync_all()?;
                }
                broken_at = Some(i);
                break;
            }
        }
        if let Some(i) = broken_at {
            for &s in &live[i + 1..] {
                let path = dir.join(segment_name(s));
                replay.truncated_bytes += fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                fs::remove_file(&path)?;
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
                data: vec![1, 2, 3],
            },
            Record::Delete {
                sref: 1,
                mint: 0,
                maxt: 5,
            },
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
    fn torn_tail_is_truncated_and_later_segments_dropped() {
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
        // A flipped byte is caught by the CRC.
        let mut data = fs::read(&seg).unwrap();
        let last = data.len() - 1;
        data[last] ^= 0xff;
        fs::write(&seg, &data).unwrap();
        let (got, rep) = replay_all(dir.path());
        assert!(got.is_empty());
        assert!(rep.truncated_bytes > 0);
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
    fn foreign_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(segment_name(1)), b"not a wal at all").unwrap();
        let err = Wal::open(dir.path(), 1 << 20, |_| {}).unwrap_err();
        assert!(err.to_string().contains("bad magic"));
    }
}
