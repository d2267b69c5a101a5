//! The write-ahead log: every committed batch is appended here before it becomes visible.
//!
//! # Format (version 1)
//!
//! The file `wal/wal.log` starts with an 8-byte header: the magic `LKWAL` (5 bytes), two
//! zero bytes, and the format version (1). Records follow, each framed as
//!
//! ```text
//! u32 LE  payload length (n)
//! u32 LE  CRC-32 (IEEE) of the payload
//! n bytes payload: u8 record type, then the body
//! ```
//!
//! Record types:
//! - `1` series: u64 ref, u16 label count, then per label u16 name length, name bytes,
//!   u32 value length, value bytes.
//! - `2` samples: u32 count, then per sample u64 ref, i64 timestamp (ms), u64 value bits.
//!
//! All integers are little endian. A record whose frame is incomplete or whose CRC does not
//! match ends replay: the file is truncated to the last good record (a torn tail after a
//! crash) and the caller is told how many bytes were dropped.
//!
//! A checkpoint rewrites the log as a snapshot of the head (series records, then sample
//! records) into `wal.log.tmp`, fsyncs it and renames it over `wal.log`, so replay time and
//! size stay bounded by retention.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use lookout_model::{Label, Labels};

const MAGIC: &[u8; 5] = b"LKWAL";
const VERSION: u8 = 1;
const HEADER_LEN: u64 = 8;
const REC_SERIES: u8 = 1;
const REC_SAMPLES: u8 = 2;
/// Largest payload a record may declare; anything bigger is treated as corruption.
const MAX_RECORD: u32 = 256 << 20;

/// A decoded WAL record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Record {
    /// A new series and its reference.
    Series { sref: u64, labels: Labels },
    /// Samples `(ref, t, v)`.
    Samples(Vec<(u64, i64, f64)>),
}

/// Encodes one record's payload (type byte and body) into `buf`.
pub(crate) fn encode(rec: &Record, buf: &mut Vec<u8>) {
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
    }
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

/// Decodes one payload; `None` if it is malformed.
pub(crate) fn decode(payload: &[u8]) -> Option<Record> {
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
                pairs.push(Label { name, value });
            }
            Record::Series {
                sref,
                labels: Labels::from_pairs(pairs.into_iter().map(|l| (l.name, l.value))),
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
        _ => return None,
    };
    c.0.is_empty().then_some(rec)
}

/// What replay found.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    /// Bytes of torn or corrupt tail that were truncated.
    pub(crate) truncated_bytes: u64,
    /// Records read.
    pub(crate) records: u64,
}

/// An open WAL, appending to `wal.log`.
pub(crate) struct Wal {
    dir: PathBuf,
    out: BufWriter<File>,
    /// Bytes written since the last fsync.
    dirty: bool,
    size: u64,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("size", &self.size)
            .finish()
    }
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join("wal.log")
}

fn header() -> [u8; 8] {
    let mut h = [0u8; 8];
    h[..5].copy_from_slice(MAGIC);
    h[7] = VERSION;
    h
}

impl Wal {
    /// Opens (creating if absent) the WAL in `dir`, replaying every good record into `apply`
    /// and truncating a torn or corrupt tail.
    pub(crate) fn open(dir: &Path, mut apply: impl FnMut(Record)) -> io::Result<(Self, Replay)> {
        std::fs::create_dir_all(dir)?;
        let path = log_path(dir);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let len = file.metadata()?.len();
        let mut replay = Replay::default();
        if len == 0 {
            file.write_all(&header())?;
            file.sync_all()?;
        } else {
            let mut data = Vec::with_capacity(len as usize);
            file.read_to_end(&mut data)?;
            if data.len() < HEADER_LEN as usize || &data[..5] != MAGIC {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not a Lookout WAL (bad magic)", path.display()),
                ));
            }
            if data[7] != VERSION {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: unsupported WAL version {}", path.display(), data[7]),
                ));
            }
            let mut pos = HEADER_LEN as usize;
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
                replay.records += 1;
                pos += 8 + n as usize;
            }
            if (pos as u64) < len {
                replay.truncated_bytes = len - pos as u64;
                file.set_len(pos as u64)?;
                file.sync_all()?;
            }
        }
        let size = file.seek(SeekFrom::End(0))?;
        Ok((
            Self {
                dir: dir.to_path_buf(),
                out: BufWriter::with_capacity(1 << 16, file),
                dirty: false,
                size,
                scratch: Vec::new(),
            },
            replay,
        ))
    }

    /// Appends records and flushes them to the OS (not yet fsynced).
    pub(crate) fn append(&mut self, recs: &[Record]) -> io::Result<()> {
        for r in recs {
            self.scratch.clear();
            encode(r, &mut self.scratch);
            let crc = crc32fast::hash(&self.scratch);
            self.out
                .write_all(&(self.scratch.len() as u32).to_le_bytes())?;
            self.out.write_all(&crc.to_le_bytes())?;
            self.out.write_all(&self.scratch)?;
            self.size += 8 + self.scratch.len() as u64;
        }
        self.out.flush()?;
        self.dirty = true;
        Ok(())
    }

    /// Fsyncs if anything was written since the last sync.
    pub(crate) fn sync(&mut self) -> io::Result<()> {
        if self.dirty {
            self.out.flush()?;
            self.out.get_ref().sync_data()?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Current size in bytes.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Replaces the log with `recs` atomically (write temp, fsync, rename, fsync dir).
    pub(crate) fn checkpoint(&mut self, recs: impl Iterator<Item = Record>) -> io::Result<()> {
        self.sync()?;
        let tmp = self.dir.join("wal.log.tmp");
        let mut w = BufWriter::with_capacity(1 << 16, File::create(&tmp)?);
        w.write_all(&header())?;
        let mut size = HEADER_LEN;
        let mut buf = Vec::new();
        for r in recs {
            buf.clear();
            encode(&r, &mut buf);
            w.write_all(&(buf.len() as u32).to_le_bytes())?;
            w.write_all(&crc32fast::hash(&buf).to_le_bytes())?;
            w.write_all(&buf)?;
            size += 8 + buf.len() as u64;
        }
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, log_path(&self.dir))?;
        File::open(&self.dir)?.sync_all()?;
        let mut file = OpenOptions::new().append(true).open(log_path(&self.dir))?;
        file.seek(SeekFrom::End(0))?;
        self.out = BufWriter::with_capacity(1 << 16, file);
        self.size = size;
        self.dirty = false;
        Ok(())
    }
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

    #[test]
    fn records_round_trip_through_replay() {
        let dir = tempfile::tempdir().unwrap();
        let recs = vec![
            series(1),
            Record::Samples(vec![(1, 5, 1.5), (1, 6, f64::INFINITY)]),
        ];
        {
            let (mut w, _) = Wal::open(dir.path(), |_| {}).unwrap();
            w.append(&recs).unwrap();
            w.sync().unwrap();
        }
        let mut got = Vec::new();
        let (_, rep) = Wal::open(dir.path(), |r| got.push(r)).unwrap();
        assert_eq!(got, recs);
        assert_eq!(rep.truncated_bytes, 0);
    }

    #[test]
    fn torn_tail_is_truncated_and_earlier_records_kept() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut w, _) = Wal::open(dir.path(), |_| {}).unwrap();
            w.append(&[series(1), series(2)]).unwrap();
            w.sync().unwrap();
        }
        let path = dir.path().join("wal.log");
        let len = std::fs::metadata(&path).unwrap().len();
        // Tear the last record in half.
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 5)
            .unwrap();
        let mut got = Vec::new();
        let (_, rep) = Wal::open(dir.path(), |r| got.push(r)).unwrap();
        assert_eq!(got, vec![series(1)]);
        assert!(rep.truncated_bytes > 0);
        // Flipping a payload byte is caught by the CRC.
        let mut data = std::fs::read(&path).unwrap();
        let last = data.len() - 1;
        data[last] ^= 0xff;
        std::fs::write(&path, &data).unwrap();
        let mut got = Vec::new();
        let (_, rep) = Wal::open(dir.path(), |r| got.push(r)).unwrap();
        assert!(got.is_empty());
        assert!(rep.truncated_bytes > 0);
    }

    #[test]
    fn foreign_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("wal.log"), b"not a wal at all").unwrap();
        let err = Wal::open(dir.path(), |_| {}).unwrap_err();
        assert!(err.to_string().contains("bad magic"));
    }
}
