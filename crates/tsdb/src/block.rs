//! Blocks: immutable on-disk files holding every series' samples for a time range.
//!
//! ```text
//! blocks/<id>/meta.json   id, time range [min_time, max_time), stats, compaction level
//! blocks/<id>/chunks      the samples, in zstd-compressed pages
//! blocks/<id>/index       symbols, series labels and where each series' chunks are
//! ```
//!
//! # `chunks` format (version 1)
//!
//! An 8-byte header, the magic `LKCHK`, two zero bytes and the version (1); then pages,
//! each `u32 LE compressed length`, `u32 LE CRC-32 of the compressed bytes`, `u32 LE
//! uncompressed length`, and a zstd frame. A page holds about 64 KiB of sealed chunks
//! (format in `chunk`) of consecutive series, so the timestamp streams of series scraped
//! together, which are byte-identical, cost almost nothing after compression.
//!
//! # `index` format (version 1)
//!
//! An 8-byte header `LKIDX`, two zero bytes, version 1; then `u32 LE compressed length`,
//! `u32 LE CRC-32`, `u32 LE uncompressed length` and one zstd frame holding, as LEB128
//! varints: the symbol count and each symbol (length, bytes), sorted; the series count;
//! per series (sorted by labels) the label count, the name and value symbol numbers, the
//! chunk count, and per chunk its min time (zigzag delta from the previous chunk's max time),
//! max time − min time, page offset in `chunks`, offset within the page and length.
//! Version 2 (written only by blocks holding native histograms, so float-only blocks stay
//! readable by builds from before histograms) adds per chunk a kind after the length: 0
//! floats (`chunk`), 1 native histograms (`hchunk`); a series' float chunks come first.
//! Postings are rebuilt in memory, as flat arrays (`block_index`), when a block is opened.
//!
//! Blocks are written to `<id>.tmp`, fsynced and renamed, so a crash never leaves a
//! half-written block in place.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use lookout_model::{Labels, Matcher, Sample};
use lookout_storage::HistogramSample;
use serde::{Deserialize, Serialize};

use crate::block_index::{self, BlockIndex, IndexError};
use crate::chunk::{self, MAX_SAMPLES, get_varint, put_varint};
use crate::hchunk;

const CHUNKS_MAGIC: &[u8; 5] = b"LKCHK";
const INDEX_MAGIC: &[u8; 5] = b"LKIDX";
const FORMAT_VERSION: u8 = 1;
/// The index version of blocks holding native histograms.
const INDEX_VERSION_HIST: u8 = 2;
/// The bit of [`ChunkRef::len`] that marks a histogram chunk.
const HIST_BIT: u32 = 1 << 31;
const PAGE_SIZE: usize = 64 << 10;
const ZSTD_LEVEL: i32 = 9;

fn header(magic: &[u8; 5]) -> [u8; 8] {
    let mut h = [0u8; 8];
    h[..5].copy_from_slice(magic);
    h[7] = FORMAT_VERSION;
    h
}

/// A block could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// File system error.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The block's files do not decode.
    #[error("{path}: corrupt block: {what}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BlockError + '_ {
    move |source| BlockError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Figures recorded in `meta.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BlockStats {
    /// Series in the block.
    #[serde(rename = "numSeries")]
    pub series: u64,
    /// Samples in the block.
    #[serde(rename = "numSamples")]
    pub samples: u64,
    /// Chunks in the block.
    #[serde(rename = "numChunks")]
    pub chunks: u64,
}

/// `meta.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BlockMeta {
    /// Format version of the block.
    pub version: u32,
    /// The block's id (its directory name).
    pub id: String,
    /// Inclusive lower bound of sample times (ms).
    #[serde(rename = "minTime")]
    pub min_time: i64,
    /// Exclusive upper bound of sample times (ms).
    #[serde(rename = "maxTime")]
    pub max_time: i64,
    /// Counts.
    pub stats: BlockStats,
    /// Compaction level: 1 for blocks cut from the head or imported.
    pub level: u32,
    /// Written by `lookout import` rather than cut from the head: it does not move the
    /// head's lower bound, so samples of the WAL in its range are kept (and merged with
    /// it by queries and compaction) instead of being dropped at replay.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub imported: bool,
    /// Ids of the blocks this one replaces (compaction, deletion). A block named here that
    /// is still on disk at open was left by a crash before its removal, and is removed
    /// then: its samples are in this block.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<String>,
    /// When its data last changed in Lookout (ms since the epoch): when it was cut,
    /// imported or had samples deleted; a compaction keeps its parents' newest. A tier
    /// block built before a block over its span last changed is built again. 0 when
    /// not known (blocks from before this was kept).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub arrived: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

static ID_COUNTER: AtomicU64 = AtomicU64::new(0);

/// What [`scan_dirs`] found: the blocks that opened, and the names of those that did not
/// with why.
pub(crate) type Scanned<T> = (Vec<T>, Vec<(String, BlockError)>);

/// The blocks in the directories under `dir`, each opened with `open`: a directory left
/// by an interrupted write (`.tmp`) is removed, one without `meta.json` passed over, and
/// one that does not open is left on disk and returned with its name and error instead.
pub(crate) fn scan_dirs<T>(
    dir: &Path,
    open: impl Fn(&Path) -> Result<T, BlockError>,
) -> std::io::Result<Scanned<T>> {
    let (mut opened, mut failed) = (Vec::new(), Vec::new());
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        if name.ends_with(".tmp") {
            // Never renamed into place, so never used.
            let _ = fs::remove_dir_all(e.path());
            continue;
        }
        if !e.path().join("meta.json").exists() {
            continue;
        }
        match open(&e.path()) {
            Ok(b) => opened.push(b),
            Err(err) => failed.push((name, err)),
        }
    }
    Ok((opened, failed))
}

/// A new block id: creation time and a counter, so ids sort by creation.
pub(crate) fn new_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!(
        "{nanos:016x}{:04x}",
        ID_COUNTER.fetch_add(1, Ordering::Relaxed) & 0xffff
    )
}

#[derive(Debug, Clone, Copy)]
struct ChunkRef {
    min_t: i64,
    max_t: i64,
    page: u64,
    offset: u32,
    /// The length, with [`HIST_BIT`] set for a histogram chunk (a chunk is far shorter
    /// than 2 GiB: pages are at most 64 MiB).
    len: u32,
}

impl ChunkRef {
    fn len(&self) -> usize {
        (self.len & !HIST_BIT) as usize
    }

    fn is_hist(&self) -> bool {
        self.len & HIST_BIT != 0
    }

    /// Whether the chunk holds samples in `[mint, maxt]`.
    fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.max_t >= mint && self.min_t <= maxt
    }
}

/// Writes one block. Series may arrive in any order; each series at most once.
pub(crate) struct BlockWriter {
    tmp: PathBuf,
    dir: PathBuf,
    id: String,
    min_time: i64,
    max_time: i64,
    level: u32,
    imported: bool,
    parents: Vec<String>,
    arrived: i64,
    chunks: File,
    chunks_len: u64,
    page: Vec<u8>,
    pending: Vec<(usize, usize, i64, i64)>,
    series: Vec<(Labels, Vec<ChunkRef>)>,
    stats: BlockStats,
    compress: zstd::bulk::Compressor<'static>,
    /// Whether a series has histogram chunks (the index is then version 2).
    has_histograms: bool,
}

impl std::fmt::Debug for BlockWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockWriter")
            .field("dir", &self.dir)
            .finish()
    }
}

impl BlockWriter {
    /// Starts a block for `[min_time, max_time)` under `parent`.
    pub(crate) fn new(
        parent: &Path,
        min_time: i64,
        max_time: i64,
        level: u32,
    ) -> Result<Self, BlockError> {
        let id = new_id();
        let dir = parent.join(&id);
        let tmp = parent.join(format!("{id}.tmp"));
        fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        let path = tmp.join("chunks");
        let mut chunks = File::create(&path).map_err(io_err(&path))?;
        chunks
            .write_all(&header(CHUNKS_MAGIC))
            .map_err(io_err(&path))?;
        Ok(Self {
            tmp,
            dir,
            id,
            min_time,
            max_time,
            level,
            imported: false,
            parents: Vec::new(),
            arrived: lookout_model::now_ms(),
            chunks,
            chunks_len: 8,
            page: Vec::with_capacity(PAGE_SIZE * 2),
            pending: Vec::new(),
            series: Vec::new(),
            stats: BlockStats::default(),
            compress: zstd::bulk::Compressor::new(ZSTD_LEVEL).expect("zstd level is valid"),
            has_histograms: false,
        })
    }

    /// Adds one series with its samples (ascending, unique times, inside the block's range).
    pub(crate) fn add(&mut self, labels: Labels, samples: &[Sample]) -> Result<(), BlockError> {
        self.add_with_histograms(labels, samples, &[])
    }

    /// Adds one series with its float samples and its native-histogram samples (each
    /// ascending, unique times, inside the block's range).
    pub(crate) fn add_with_histograms(
        &mut self,
        labels: Labels,
        samples: &[Sample],
        histograms: &[HistogramSample],
    ) -> Result<(), BlockError> {
        if samples.is_empty() && histograms.is_empty() {
            return Ok(());
        }
        let idx = self.series.len();
        let mut refs = Vec::new();
        let floats = samples
            .chunks(MAX_SAMPLES)
            .map(|part| (chunk::encode(part), part[0].t, part[part.len() - 1].t, 0));
        let hists = hchunk::cut(histograms).map(|part| {
            (
                hchunk::encode(part),
                part[0].t,
                part[part.len() - 1].t,
                HIST_BIT,
            )
        });
        for (data, min_t, max_t, kind) in floats.chain(hists) {
            let off = self.page.len();
            self.page.extend_from_slice(&data);
            self.pending.push((idx, refs.len(), min_t, max_t));
            refs.push(ChunkRef {
                min_t,
                max_t,
                page: 0,
                offset: off as u32,
                len: data.len() as u32 | kind,
            });
            self.stats.chunks += 1;
            // A page takes whole chunks; a series with many big histogram chunks spans
            // pages rather than making one huge.
            if self.page.len() >= PAGE_SIZE {
                self.flush_page(&mut refs)?;
            }
        }
        self.has_histograms |= !histograms.is_empty();
        self.stats.samples += (samples.len() + histograms.len()) as u64;
        self.stats.series += 1;
        self.series.push((labels, refs));
        if self.page.len() >= PAGE_SIZE {
            self.flush_page(&mut [])?;
        }
        Ok(())
    }

    /// Writes the page; `current` holds the chunk references of the series being added
    /// (not in `series` yet).
    fn flush_page(&mut self, current: &mut [ChunkRef]) -> Result<(), BlockError> {
        if self.page.is_empty() {
            return Ok(());
        }
        let path = self.tmp.join("chunks");
        let compressed = self.compress.compress(&self.page).map_err(io_err(&path))?;
        let mut head = Vec::with_capacity(12);
        head.extend_from_slice(&(compressed.len() as u32).to_le_bytes());
        head.extend_from_slice(&crc32fast::hash(&compressed).to_le_bytes());
        head.extend_from_slice(&(self.page.len() as u32).to_le_bytes());
        self.chunks.write_all(&head).map_err(io_err(&path))?;
        self.chunks.write_all(&compressed).map_err(io_err(&path))?;
        for (s, c, _, _) in self.pending.drain(..) {
            match self.series.get_mut(s) {
                Some(series) => series.1[c].page = self.chunks_len,
                None => current[c].page = self.chunks_len,
            }
        }
        self.chunks_len += 12 + compressed.len() as u64;
        self.page.clear();
        Ok(())
    }

    /// Writes the index and meta, fsyncs, and moves the block into place.
    pub(crate) fn finish(mut self) -> Result<Option<BlockMeta>, BlockError> {
        self.flush_page(&mut [])?;
        if self.series.is_empty() {
            let _ = fs::remove_dir_all(&self.tmp);
            return Ok(None);
        }
        let cpath = self.tmp.join("chunks");
        self.chunks.sync_all().map_err(io_err(&cpath))?;
        self.series.sort_by(|a, b| a.0.cmp(&b.0));
        let mut syms: Vec<&str> = self
            .series
            .iter()
            .flat_map(|(ls, _)| ls.iter().flat_map(|l| [l.name.as_str(), l.value.as_str()]))
            .collect();
        syms.sort_unstable();
        syms.dedup();
        let sym_id: HashMap<&str, u64> = syms
            .iter()
            .enumerate()
            .map(|(i, s)| (*s, i as u64))
            .collect();
        let mut body = Vec::new();
        put_varint(&mut body, syms.len() as u64);
        for s in &syms {
            put_varint(&mut body, s.len() as u64);
            body.extend_from_slice(s.as_bytes());
        }
        put_varint(&mut body, self.series.len() as u64);
        for (ls, refs) in &self.series {
            put_varint(&mut body, ls.len() as u64);
            for l in ls {
                put_varint(&mut body, sym_id[l.name.as_str()]);
                put_varint(&mut body, sym_id[l.value.as_str()]);
            }
            put_varint(&mut body, refs.len() as u64);
            let mut prev = self.min_time;
            for c in refs {
                let d = c.min_t.wrapping_sub(prev);
                put_varint(&mut body, ((d << 1) ^ (d >> 63)) as u64);
                put_varint(&mut body, (c.max_t - c.min_t) as u64);
                put_varint(&mut body, c.page);
                put_varint(&mut body, c.offset as u64);
                put_varint(&mut body, c.len() as u64);
                if self.has_histograms {
                    put_varint(&mut body, u64::from(c.is_hist()));
                }
                prev = c.max_t;
            }
        }
        let ipath = self.tmp.join("index");
        let compressed = self.compress.compress(&body).map_err(io_err(&ipath))?;
        let mut f = File::create(&ipath).map_err(io_err(&ipath))?;
        let mut out = Vec::with_capacity(compressed.len() + 20);
        let mut h = header(INDEX_MAGIC);
        if self.has_histograms {
            h[7] = INDEX_VERSION_HIST;
        }
        out.extend_from_slice(&h);
        out.extend_from_slice(&(compressed.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&compressed).to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&compressed);
        f.write_all(&out).map_err(io_err(&ipath))?;
        f.sync_all().map_err(io_err(&ipath))?;
        let meta = BlockMeta {
            version: 1,
            id: self.id.clone(),
            min_time: self.min_time,
            max_time: self.max_time,
            stats: self.stats.clone(),
            level: self.level,
            imported: self.imported,
            parents: std::mem::take(&mut self.parents),
            arrived: self.arrived,
        };
        let mpath = self.tmp.join("meta.json");
        let json = serde_json::to_vec_pretty(&meta).expect("meta serializes");
        let mut f = File::create(&mpath).map_err(io_err(&mpath))?;
        f.write_all(&json).map_err(io_err(&mpath))?;
        f.sync_all().map_err(io_err(&mpath))?;
        File::open(&self.tmp)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.tmp))?;
        fs::rename(&self.tmp, &self.dir).map_err(io_err(&self.dir))?;
        if let Some(parent) = self.dir.parent() {
            File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(io_err(parent))?;
        }
        Ok(Some(meta))
    }

    /// Marks the block as imported (see [`BlockMeta::imported`]).
    pub(crate) fn set_imported(&mut self, imported: bool) {
        self.imported = imported;
    }

    /// When its data last changed (see [`BlockMeta::arrived`]; now by default).
    pub(crate) fn set_arrived(&mut self, arrived: i64) {
        self.arrived = arrived;
    }

    /// Names the blocks this one replaces (see [`BlockMeta::parents`]).
    pub(crate) fn set_parents(&mut self, parents: Vec<String>) {
        self.parents = parents;
    }

    /// Abandons the block, removing its temporary directory.
    pub(crate) fn abort(self) {
        let _ = fs::remove_dir_all(&self.tmp);
    }
}

/// An open, immutable block.
#[derive(Debug)]
pub(crate) struct Block {
    pub(crate) dir: PathBuf,
    pub(crate) meta: BlockMeta,
    /// Symbols, labels and postings.
    index: BlockIndex,
    /// Series `r`'s chunks are `chunk_refs[chunk_start[r]..chunk_start[r + 1]]`.
    chunk_start: Vec<u32>,
    chunk_refs: Vec<ChunkRef>,
    chunks: File,
    /// Earliest and latest sample times, from the chunk references.
    pub(crate) data_range: Option<(i64, i64)>,
    /// Whether any series has a histogram chunk (else a query for histograms skips it).
    pub(crate) has_histograms: bool,
    /// Sizes of the `chunks` and `index` files.
    pub(crate) chunks_bytes: u64,
    pub(crate) index_bytes: u64,
    /// This opening's number, unique in the process: the shared page cache's key.
    serial: u64,
}

fn corrupt(path: &Path, what: impl Into<String>) -> BlockError {
    BlockError::Corrupt {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

/// Decompresses one zstd frame of `ulen` bytes with this thread's reused context (a
/// query reads many pages; creating a context per page costs more than small pages do).
fn decompress(comp: &[u8], ulen: usize) -> std::io::Result<Vec<u8>> {
    thread_local! {
        static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    DCTX.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        d.as_mut().expect("created above").decompress(comp, ulen)
    })
}

impl Block {
    /// Opens the block in `dir`, loading its index.
    pub(crate) fn open(dir: &Path) -> Result<Self, BlockError> {
        let mpath = dir.join("meta.json");
        let meta: BlockMeta = serde_json::from_slice(&fs::read(&mpath).map_err(io_err(&mpath))?)
            .map_err(|e| corrupt(&mpath, e.to_string()))?;
        let ipath = dir.join("index");
        let raw = fs::read(&ipath).map_err(io_err(&ipath))?;
        if raw.len() < 20 || &raw[..5] != INDEX_MAGIC {
            return Err(corrupt(&ipath, "bad magic"));
        }
        if raw[7] != FORMAT_VERSION && raw[7] != INDEX_VERSION_HIST {
            return Err(corrupt(&ipath, format!("unsupported version {}", raw[7])));
        }
        let kinds = raw[7] == INDEX_VERSION_HIST;
        let clen = u32::from_le_bytes(raw[8..12].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(raw[12..16].try_into().expect("4 bytes"));
        let ulen = u32::from_le_bytes(raw[16..20].try_into().expect("4 bytes")) as usize;
        let comp = raw
            .get(20..20 + clen)
            .ok_or_else(|| corrupt(&ipath, "truncated"))?;
        if crc32fast::hash(comp) != crc {
            return Err(corrupt(&ipath, "checksum mismatch"));
        }
        let body = decompress(comp, ulen).map_err(|e| corrupt(&ipath, e.to_string()))?;
        let bad = || corrupt(&ipath, "index body does not decode");
        let mut pos = 0;
        let index_err = |e: IndexError| corrupt(&ipath, format!("index: {e:?}"));
        let nsym = get_varint(&body, &mut pos).ok_or_else(bad)? as usize;
        let mut builder = block_index::Builder::default();
        for _ in 0..nsym {
            let n = get_varint(&body, &mut pos).ok_or_else(bad)? as usize;
            let s = body.get(pos..pos.saturating_add(n)).ok_or_else(bad)?;
            builder
                .symbol(std::str::from_utf8(s).map_err(|_| bad())?)
                .map_err(index_err)?;
            pos += n;
        }
        let nseries = get_varint(&body, &mut pos).ok_or_else(bad)? as usize;
        // Counts come from the file: bound what they reserve by what the body can hold (the
        // loops below end at the body's end, as every varint takes at least a byte).
        let mut chunk_start = Vec::with_capacity(nseries.min(body.len()) + 1);
        chunk_start.push(0u32);
        let mut chunk_refs = Vec::new();
        let mut ids = Vec::new();
        for _ in 0..nseries {
            let nl = get_varint(&body, &mut pos).ok_or_else(bad)? as usize;
            ids.clear();
            for _ in 0..nl.saturating_mul(2) {
                ids.push(get_varint(&body, &mut pos).ok_or_else(bad)? as u32);
            }
            builder.series(&ids).map_err(index_err)?;
            let nc = get_varint(&body, &mut pos).ok_or_else(bad)? as usize;
            let mut prev = meta.min_time;
            for _ in 0..nc {
                let z = get_varint(&body, &mut pos).ok_or_else(bad)?;
                let d = ((z >> 1) as i64) ^ -((z & 1) as i64);
                let min_t = prev.wrapping_add(d);
                let max_t = min_t.wrapping_add(get_varint(&body, &mut pos).ok_or_else(bad)? as i64);
                let page = get_varint(&body, &mut pos).ok_or_else(bad)?;
                let offset = get_varint(&body, &mut pos).ok_or_else(bad)? as u32;
                let len = get_varint(&body, &mut pos).ok_or_else(bad)?;
                if len >= u64::from(HIST_BIT) {
                    return Err(corrupt(&ipath, "chunk length out of range"));
                }
                let kind = if kinds {
                    match get_varint(&body, &mut pos).ok_or_else(bad)? {
                        0 => 0,
                        1 => HIST_BIT,
                        k => return Err(corrupt(&ipath, format!("unknown chunk kind {k}"))),
                    }
                } else {
                    0
                };
                let len = len as u32 | kind;
                chunk_refs.push(ChunkRef {
                    min_t,
                    max_t,
                    page,
                    offset,
                    len,
                });
                prev = max_t;
            }
            chunk_start.push(
                u32::try_from(chunk_refs.len()).map_err(|_| index_err(IndexError::TooLarge))?,
            );
        }
        chunk_refs.shrink_to_fit();
        let index = builder.finish().map_err(index_err)?;
        let cpath = dir.join("chunks");
        let chunks = File::open(&cpath).map_err(io_err(&cpath))?;
        let mut head = [0u8; 8];
        chunks.read_exact_at(&mut head, 0).map_err(io_err(&cpath))?;
        if &head[..5] != CHUNKS_MAGIC || head[7] != FORMAT_VERSION {
            return Err(corrupt(&cpath, "bad magic or version"));
        }
        let chunks_bytes = chunks.metadata().map_err(io_err(&cpath))?.len();
        let data_range = chunk_refs.iter().fold(None, |acc: Option<(i64, i64)>, c| {
            Some(acc.map_or((c.min_t, c.max_t), |(a, b)| {
                (a.min(c.min_t), b.max(c.max_t))
            }))
        });
        let has_histograms = chunk_refs.iter().any(ChunkRef::is_hist);
        Ok(Self {
            dir: dir.to_path_buf(),
            meta,
            index,
            chunk_start,
            chunk_refs,
            chunks,
            data_range,
            has_histograms,
            chunks_bytes,
            index_bytes: raw.len() as u64,
            serial: NEXT_SERIAL.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Series references matching `matchers`.
    pub(crate) fn select(&self, matchers: &[Matcher]) -> Vec<u32> {
        self.index.select(matchers)
    }

    /// Labels of series `r`.
    pub(crate) fn labels(&self, r: u32) -> Labels {
        self.index.labels(r)
    }

    /// Series `r`'s (name, value) pairs, sorted by name, borrowed from the block.
    pub(crate) fn label_pairs(&self, r: u32) -> impl Iterator<Item = (&str, &str)> {
        self.index.label_pairs(r)
    }

    /// Those of `refs` with a chunk in `[mint, maxt]`, in the order their chunks sit in the
    /// file. Series are numbered by labels but their chunks were written in the order they
    /// arrived (the head's order, an import's), so reading a large selection by number
    /// would decompress the same pages again and again; in file order each page is read
    /// once.
    pub(crate) fn read_order(&self, refs: Vec<u32>, mint: i64, maxt: i64) -> Vec<u32> {
        let mut keyed: Vec<(u64, u32, u32)> = refs
            .into_iter()
            .filter_map(|r| {
                self.chunk_refs(r)
                    .iter()
                    .find(|c| c.overlaps(mint, maxt))
                    .map(|c| (c.page, c.offset, r))
            })
            .collect();
        keyed.sort_unstable();
        keyed.into_iter().map(|(_, _, r)| r).collect()
    }

    /// Milliseconds of `[mint, maxt]` that series `r`'s chunks' time bounds cover, and
    /// the most samples those chunks can hold.
    pub(crate) fn covered(&self, r: u32, mint: i64, maxt: i64) -> (i64, usize) {
        self.chunk_refs(r)
            .iter()
            .filter(|c| !c.is_hist() && c.overlaps(mint, maxt))
            .fold((0, 0), |(ms, n), c| {
                let span = c.max_t.min(maxt).saturating_sub(c.min_t.max(mint)).max(0);
                (ms.saturating_add(span), n + MAX_SAMPLES)
            })
    }

    /// Series `r`'s chunk references.
    fn chunk_refs(&self, r: u32) -> &[ChunkRef] {
        let r = r as usize;
        match (self.chunk_start.get(r), self.chunk_start.get(r + 1)) {
            (Some(a), Some(b)) => &self.chunk_refs[*a as usize..*b as usize],
            _ => &[],
        }
    }

    /// Whether series `r` has a chunk (of either kind) overlapping `[mint, maxt]`.
    pub(crate) fn overlaps(&self, r: u32, mint: i64, maxt: i64) -> bool {
        self.chunk_refs(r).iter().any(|c| c.overlaps(mint, maxt))
    }

    /// Whether series `r` has a histogram chunk overlapping `[mint, maxt]`.
    pub(crate) fn hist_overlaps(&self, r: u32, mint: i64, maxt: i64) -> bool {
        self.chunk_refs(r)
            .iter()
            .any(|c| c.is_hist() && c.overlaps(mint, maxt))
    }

    /// The bytes of chunk `c`, from `pages`.
    fn chunk_bytes<'p>(&self, c: &ChunkRef, page: &'p [u8]) -> Result<&'p [u8], BlockError> {
        page.get(c.offset as usize..c.offset as usize + c.len())
            .ok_or_else(|| corrupt(&self.dir.join("chunks"), "chunk outside its page"))
    }

    /// Native-histogram samples of series `r` in `[mint, maxt]`, using and filling
    /// `pages`.
    pub(crate) fn histograms(
        &self,
        r: u32,
        mint: i64,
        maxt: i64,
        pages: &mut PageCache,
    ) -> Result<Vec<HistogramSample>, BlockError> {
        let mut out = Vec::new();
        for c in self
            .chunk_refs(r)
            .iter()
            .filter(|c| c.is_hist() && c.overlaps(mint, maxt))
        {
            let page = pages.get(self, c.page)?;
            let bytes = self.chunk_bytes(c, &page)?;
            hchunk::decode(bytes, &mut out)
                .map_err(|e| corrupt(&self.dir.join("chunks"), e.to_string()))?;
        }
        out.retain(|s| s.t >= mint && s.t <= maxt);
        Ok(out)
    }

    /// Samples of series `r` in `[mint, maxt]`, using and filling `pages`.
    pub(crate) fn samples(
        &self,
        r: u32,
        mint: i64,
        maxt: i64,
        pages: &mut PageCache,
    ) -> Result<Vec<Sample>, BlockError> {
        let cpath = || self.dir.join("chunks");
        // Whole chunks are decoded into the reader's scratch space, and only the samples
        // in range are copied out, into a list of exactly their size: a query holds
        // every series' samples at once, so neither the chunks' samples out of range nor
        // a growing list's spare room may stay with them.
        let mut buf = std::mem::take(&mut pages.decoded);
        buf.clear();
        let mut decode = || -> Result<(), BlockError> {
            for c in self
                .chunk_refs(r)
                .iter()
                .filter(|c| !c.is_hist() && c.overlaps(mint, maxt))
            {
                let page = pages.get(self, c.page)?;
                let bytes = self.chunk_bytes(c, &page)?;
                chunk::decode(bytes, &mut buf).map_err(|e| corrupt(&cpath(), e.to_string()))?;
            }
            Ok(())
        };
        let decoded = decode();
        let in_range = |s: &&Sample| s.t >= mint && s.t <= maxt;
        let mut out = Vec::with_capacity(buf.iter().filter(in_range).count());
        out.extend(buf.iter().filter(in_range));
        pages.decoded = buf;
        decoded.map(|()| out)
    }

    fn read_page(&self, off: u64) -> Result<Arc<Vec<u8>>, BlockError> {
        let cpath = self.dir.join("chunks");
        let mut head = [0u8; 12];
        self.chunks
            .read_exact_at(&mut head, off)
            .map_err(io_err(&cpath))?;
        let clen = u32::from_le_bytes(head[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
        let ulen = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes")) as usize;
        if clen > 64 << 20 || ulen > 64 << 20 {
            return Err(corrupt(&cpath, "page size out of range"));
        }
        let mut comp = vec![0u8; clen];
        self.chunks
            .read_exact_at(&mut comp, off + 12)
            .map_err(io_err(&cpath))?;
        if crc32fast::hash(&comp) != crc {
            return Err(corrupt(
                &cpath,
                format!("checksum mismatch in page at {off}"),
            ));
        }
        decompress(&comp, ulen)
            .map(Arc::new)
            .map_err(|e| corrupt(&cpath, e.to_string()))
    }

    /// Label names across the block's series (all, or those matching).
    pub(crate) fn label_names(&self, refs: Option<&[u32]>) -> Vec<String> {
        self.index.label_names(refs)
    }

    /// Values of `name` (all, or among the given series).
    pub(crate) fn label_values(&self, name: &str, refs: Option<&[u32]>) -> Vec<String> {
        self.index.label_values(name, refs)
    }

    /// Number of series.
    pub(crate) fn num_series(&self) -> usize {
        self.index.num_series()
    }

    /// Heap bytes the open block holds for its index and chunk references.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.index.heap_bytes()
            + 4 * self.chunk_start.capacity()
            + std::mem::size_of::<ChunkRef>() * self.chunk_refs.capacity()
    }
}

/// Numbers for [`Block::serial`].
static NEXT_SERIAL: AtomicU64 = AtomicU64::new(0);

/// Decompressed pages shared by every query, by block opening and page offset, oldest
/// out first, within [`set_shared_page_budget`] bytes. Dashboards and rules read the
/// same recent pages again and again, and decompressing them is most of what a query
/// over blocks costs (zstd was 40% of an instant query over 30,000 series); blocks are
/// immutable, so a page never goes stale.
#[derive(Default)]
struct SharedPages {
    pages: HashMap<(u64, u64), Arc<Vec<u8>>>,
    order: std::collections::VecDeque<(u64, u64)>,
    bytes: usize,
}

static SHARED_PAGES: std::sync::LazyLock<std::sync::Mutex<SharedPages>> =
    std::sync::LazyLock::new(Default::default);
static SHARED_BUDGET: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(64 << 20);

/// Sets the bytes of decompressed pages kept for queries (0: none), for every store in
/// the process; pages past it go, oldest first.
pub(crate) fn set_shared_page_budget(bytes: usize) {
    SHARED_BUDGET.store(bytes, Ordering::Relaxed);
    let mut s = SHARED_PAGES.lock().unwrap_or_else(|e| e.into_inner());
    s.shrink_to(bytes);
}

impl SharedPages {
    fn shrink_to(&mut self, budget: usize) {
        while self.bytes > budget {
            let Some(k) = self.order.pop_front() else {
                break;
            };
            if let Some(p) = self.pages.remove(&k) {
                self.bytes -= p.len();
            }
        }
    }

    fn insert(&mut self, key: (u64, u64), page: &Arc<Vec<u8>>, budget: usize) {
        if page.len() > budget || self.pages.contains_key(&key) {
            return;
        }
        self.shrink_to(budget - page.len());
        self.bytes += page.len();
        self.pages.insert(key, Arc::clone(page));
        self.order.push_back(key);
    }
}

/// Decompressed pages, per query (at most `capacity` at a time), backed by the pages
/// shared between queries when made with [`PageCache::for_queries`].
#[derive(Debug)]
pub(crate) struct PageCache {
    pages: HashMap<(usize, u64), Arc<Vec<u8>>>,
    capacity: usize,
    shared: bool,
    /// Pages read and decompressed (not found in the cache).
    pub(crate) misses: u64,
    /// Scratch space a series' chunks are decoded into ([`Block::samples`]).
    decoded: Vec<Sample>,
}

impl Default for PageCache {
    fn default() -> Self {
        Self::with_capacity(64)
    }
}

impl PageCache {
    /// A cache of at most `capacity` pages, of this reader's own (compaction and
    /// deletion read everything once and leave the shared pages alone).
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            pages: HashMap::new(),
            capacity: capacity.max(1),
            shared: false,
            misses: 0,
            decoded: Vec::new(),
        }
    }

    /// A query's cache: 64 pages of its own, backed by the shared pages.
    pub(crate) fn for_queries() -> Self {
        Self {
            shared: true,
            ..Self::default()
        }
    }

    fn get(&mut self, b: &Block, off: u64) -> Result<Arc<Vec<u8>>, BlockError> {
        let key = (b as *const Block as usize, off);
        if let Some(p) = self.pages.get(&key) {
            return Ok(Arc::clone(p));
        }
        if self.pages.len() >= self.capacity {
            self.pages.clear();
        }
        let budget = SHARED_BUDGET.load(Ordering::Relaxed);
        let shared = self.shared && budget > 0;
        let skey = (b.serial, off);
        let found = shared
            .then(|| {
                SHARED_PAGES
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pages
                    .get(&skey)
                    .cloned()
            })
            .flatten();
        let p = match found {
            Some(p) => p,
            None => {
                let p = b.read_page(off)?;
                self.misses += 1;
                if shared {
                    SHARED_PAGES
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(skey, &p, budget);
                }
                p
            }
        };
        self.pages.insert(key, Arc::clone(&p));
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lookout_model::MatchOp;

    #[test]
    fn block_round_trips_series_and_samples() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = BlockWriter::new(dir.path(), 0, 7_200_000, 1).unwrap();
        let mut expect = Vec::new();
        for i in (0..300).rev() {
            let ls = Labels::from_pairs([
                ("__name__", "m"),
                ("i", &*format!("{i:03}")),
                ("job", if i % 2 == 0 { "even" } else { "odd" }),
            ]);
            let s: Vec<Sample> = (0..480)
                .map(|k| Sample::new(k * 15_000, (i * 1000 + k) as f64 / 100.0))
                .collect();
            w.add(ls.clone(), &s).unwrap();
            expect.push((ls, s));
        }
        let meta = w.finish().unwrap().unwrap();
        assert_eq!(meta.stats.series, 300);
        assert_eq!(meta.stats.samples, 300 * 480);
        let b = Block::open(&dir.path().join(&meta.id)).unwrap();
        let refs = b.select(&[
            Matcher::equal("job", "odd"),
            Matcher::new(MatchOp::Regex, "i", "00.*").unwrap(),
        ]);
        let got: Vec<Labels> = refs.iter().map(|r| b.labels(*r)).collect();
        assert_eq!(got.len(), 5);
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "series sorted by labels"
        );
        let mut cache = PageCache::default();
        for (ls, s) in &expect {
            let r = b.select(&[Matcher::equal("i", ls.get("i").unwrap())])[0];
            assert_eq!(&b.samples(r, 0, i64::MAX, &mut cache).unwrap(), s);
        }
        let r = b.select(&[Matcher::equal("i", "007")])[0];
        assert_eq!(b.samples(r, 15_000, 30_000, &mut cache).unwrap().len(), 2);

        assert_eq!(b.label_values("job", None), vec!["even", "odd"]);
        assert!(
            b.chunks_bytes + b.index_bytes < (300 * 480 * 2) as u64,
            "compact: {} bytes",
            b.chunks_bytes + b.index_bytes
        );
    }

    #[test]
    fn read_order_decompresses_each_page_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = BlockWriter::new(dir.path(), 0, 7_200_000, 1).unwrap();
        // Written in a scrambled order, as a head's series are relative to their labels.
        for k in 0..1000u64 {
            let i = (k * 7919) % 1000;
            let ls = Labels::from_pairs([("__name__", "m"), ("i", &*format!("{i:04}"))]);
            let s: Vec<Sample> = (0..480)
                .map(|t| {
                    let h = (i as i64 * 1_000_003 + t).wrapping_mul(2_654_435_761) % 1_000_003;
                    Sample::new(t * 15_000, h as f64 / 7.0)
                })
                .collect();
            w.add(ls, &s).unwrap();
        }
        let meta = w.finish().unwrap().unwrap();
        let b = Block::open(&dir.path().join(&meta.id)).unwrap();
        let all = b.select(&[Matcher::equal("__name__", "m")]);
        let pages: std::collections::BTreeSet<u64> = all
            .iter()
            .flat_map(|r| b.chunk_refs(*r).iter().map(|c| c.page))
            .collect();
        assert!(pages.len() > 3, "{} pages", pages.len());
        let misses = |order: &[u32]| {
            let mut cache = PageCache::with_capacity(2);
            for r in order {
                b.samples(*r, 0, i64::MAX, &mut cache).unwrap();
            }
            cache.misses
        };
        let ordered = b.read_order(all.clone(), 0, i64::MAX);
        assert_eq!(ordered.len(), all.len());
        assert_eq!(misses(&ordered), pages.len() as u64);
        assert!(
            misses(&all) > 10 * pages.len() as u64,
            "label order rereads pages"
        );
        assert!(b.read_order(all.clone(), 10_000_000, 20_000_000).is_empty());
        // Queries share what they decompressed: a second query reads no page again
        // (unless another test emptied the shared pages meanwhile, which only shrinks).
        let query = || {
            let mut cache = PageCache::for_queries();
            for r in &ordered {
                b.samples(*r, 0, i64::MAX, &mut cache).unwrap();
            }
            cache.misses
        };
        assert_eq!(query(), pages.len() as u64);
        assert!(query() < pages.len() as u64, "the shared pages serve it");
    }

    #[test]
    fn shared_pages_stay_within_their_budget_oldest_out_first() {
        let mut s = SharedPages::default();
        let page = |n: usize| Arc::new(vec![0u8; n]);
        for off in 0..10u64 {
            s.insert((1, off), &page(100), 350);
            assert!(s.bytes <= 350, "{}", s.bytes);
        }
        let kept: std::collections::BTreeSet<u64> = s.pages.keys().map(|k| k.1).collect();
        assert_eq!(kept, [7, 8, 9].into_iter().collect(), "the newest stay");
        s.insert((1, 99), &page(400), 350);
        assert!(
            !s.pages.contains_key(&(1, 99)),
            "a page past the budget is not kept"
        );
        s.shrink_to(0);
        assert!(s.pages.is_empty() && s.bytes == 0 && s.order.is_empty());
    }

    #[test]
    fn corrupt_files_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = BlockWriter::new(dir.path(), 0, 100, 1).unwrap();
        w.add(
            Labels::from_pairs([("__name__", "m")]),
            &[Sample::new(1, 1.0)],
        )
        .unwrap();
        let meta = w.finish().unwrap().unwrap();
        let bdir = dir.path().join(&meta.id);
        let ipath = bdir.join("index");
        let mut raw = fs::read(&ipath).unwrap();
        let n = raw.len();
        raw[n - 1] ^= 0xff;
        fs::write(&ipath, raw).unwrap();
        let err = Block::open(&bdir).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
    }
}
