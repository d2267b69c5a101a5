//! The head: the most recent data, in memory. A series registry with interned label
//! strings and stable references, an inverted index (label pair → postings), and per
//! series the sealed chunks plus one open chunk being appended to, and a small sorted
//! buffer of out-of-order samples.
//!
//! Chunks are cut every [`MAX_SAMPLES`](crate::chunk::MAX_SAMPLES) samples and at every
//! multiple of the block range, so no chunk straddles two blocks.
//!
//! A series may also hold native histograms ([`HistData`], only for the series that have
//! any): sealed histogram chunks (`hchunk`), the newest samples not sealed yet, and an
//! out-of-order buffer, cut the same way. Floats and histograms of one series are ordered
//! independently, as Prometheus keeps them in separate chunks.

use std::collections::HashMap;
use std::hash::Hasher;
use std::sync::Arc;

use lookout_model::{FloatHistogram, Labels, Matcher, Sample};
use lookout_storage::HistogramSample;

use crate::chunk::{self, MAX_SAMPLES, OpenChunk};
use crate::hchunk;
use crate::postings::Index;

/// Interned strings: each label name and value is stored once.
#[derive(Debug, Default)]
pub(crate) struct Symbols {
    by_str: HashMap<Arc<str>, u32>,
    strs: Vec<Arc<str>>,
    /// Uses of each symbol by live series; a symbol no series uses is freed.
    uses: Vec<u32>,
    /// Ids of freed symbols, reused before new ones.
    free: Vec<u32>,
}

impl Symbols {
    /// The id of `s`, counting one more use.
    pub(crate) fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.by_str.get(s) {
            self.uses[id as usize] += 1;
            return id;
        }
        let a: Arc<str> = Arc::from(s);
        let id = match self.free.pop() {
            Some(id) => {
                self.strs[id as usize] = Arc::clone(&a);
                self.uses[id as usize] = 1;
                id
            }
            None => {
                self.strs.push(Arc::clone(&a));
                self.uses.push(1);
                (self.strs.len() - 1) as u32
            }
        };
        self.by_str.insert(a, id);
        id
    }

    /// One use of `id` fewer; the string is freed when no series uses it.
    pub(crate) fn release(&mut self, id: u32) {
        let u = &mut self.uses[id as usize];
        *u = u.saturating_sub(1);
        if *u == 0 {
            let s = std::mem::replace(&mut self.strs[id as usize], Arc::from(""));
            self.by_str.remove(&s);
            self.free.push(id);
        }
    }

    pub(crate) fn get(&self, id: u32) -> &Arc<str> {
        &self.strs[id as usize]
    }

    /// Symbols in use.
    pub(crate) fn len(&self) -> usize {
        self.by_str.len()
    }
}

/// A sealed chunk held in memory.
#[derive(Debug, Clone)]
pub(crate) struct HeadChunk {
    pub(crate) min_t: i64,
    pub(crate) max_t: i64,
    pub(crate) data: Arc<[u8]>,
}

/// One series in the head.
#[derive(Debug)]
pub(crate) struct MemSeries {
    /// Alternating name and value symbol ids, sorted by name.
    labels: Box<[u32]>,
    pub(crate) chunks: Vec<HeadChunk>,
    pub(crate) open: OpenChunk,
    last_v: u64,
    /// Out-of-order samples, ascending, unique timestamps.
    pub(crate) ooo: Vec<Sample>,
    /// Native-histogram samples, if the series has any.
    pub(crate) hist: Option<Box<HistData>>,
}

/// A series' native-histogram samples in the head. The newest samples are encoded as
/// they arrive (`hchunk::Encoder`): a histogram is many numbers, and holding a chunk's
/// worth of them decoded for every series would cost the head kilobytes per series.
#[derive(Debug, Default)]
pub(crate) struct HistData {
    /// Sealed histogram chunks (`hchunk`).
    pub(crate) chunks: Vec<HeadChunk>,
    /// The newest samples, encoded, not sealed yet.
    pub(crate) open: hchunk::Encoder,
    /// The first open sample's time.
    open_min_t: i64,
    /// The newest in-order sample (what a repeat of it is compared with).
    last: Option<HistogramSample>,
    /// Out-of-order samples, ascending, unique timestamps.
    pub(crate) ooo: Vec<HistogramSample>,
}

impl HistData {
    /// The newest in-order sample's time.
    pub(crate) fn max_t(&self) -> Option<i64> {
        self.last.as_ref().map(|s| s.t)
    }

    /// The open samples' time range, if there are any.
    fn open_range(&self) -> Option<(i64, i64)> {
        (self.open.len() > 0).then(|| (self.open_min_t, self.max_t().unwrap_or(i64::MAX)))
    }

    fn min_t(&self) -> Option<i64> {
        [
            self.chunks.first().map(|c| c.min_t),
            self.open_range().map(|r| r.0),
            self.ooo.first().map(|s| s.t),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.open.len() == 0 && self.ooo.is_empty()
    }

    fn seal(&mut self) {
        let Some((min_t, max_t)) = self.open_range() else {
            return;
        };
        let data = std::mem::take(&mut self.open).finish();
        self.chunks.push(HeadChunk {
            min_t,
            max_t,
            data: Arc::from(data),
        });
    }

    /// Appends a sample newer than every in-order one, cutting chunks as floats are (at a
    /// block boundary) and as `hchunk::cut` does (by samples and buckets).
    fn push(&mut self, range: i64, s: HistogramSample) {
        if self.open.len() > 0 {
            let boundary = (self.open_min_t.div_euclid(range) + 1).saturating_mul(range);
            if self.open.len() >= hchunk::MAX_SAMPLES
                || self.open.buckets() + hchunk::buckets(&s.h) > hchunk::MAX_CHUNK_BUCKETS
                || s.t >= boundary
            {
                self.seal();
            }
        }
        if self.open.len() == 0 {
            self.open_min_t = s.t;
        }
        self.open.push(&s);
        self.last = Some(s);
    }

    /// The open samples, decoded.
    pub(crate) fn open_samples(&self) -> Vec<HistogramSample> {
        let mut out = Vec::new();
        if self.open.len() > 0 {
            let _ = hchunk::decode(&self.open.finish(), &mut out);
        }
        out
    }

    /// Every sample, ascending (undecodable chunks are skipped: the head made them).
    fn all(&self) -> Vec<HistogramSample> {
        let mut out = Vec::new();
        for c in &self.chunks {
            let _ = hchunk::decode(&c.data, &mut out);
        }
        out.extend(self.open_samples());
        merge(out, self.ooo.clone())
    }

    fn samples(&self) -> u64 {
        let sealed: usize = self
            .chunks
            .iter()
            .map(|c| hchunk::count(&c.data).unwrap_or(0))
            .sum();
        (sealed + self.open.len() + self.ooo.len()) as u64
    }

    /// Drops every sample before `t` (whole chunks: they never straddle a block).
    fn truncate_before(&mut self, t: i64) {
        self.chunks.retain(|c| c.max_t >= t);
        if self.open_range().is_some_and(|(_, hi)| hi < t) {
            self.open = hchunk::Encoder::default();
        }
        if self.max_t().is_some_and(|m| m < t) {
            self.last = None;
        }
        self.ooo.retain(|x| x.t >= t);
    }
}

/// Whether two histograms are the same sample: equal in every field, bit for bit.
pub(crate) fn same_histogram(a: &FloatHistogram, b: &FloatHistogram) -> bool {
    a.identical(b) && a.hint == b.hint
}

/// What a query needs of one series' histograms, copied out under the lock.
#[derive(Debug)]
pub(crate) struct HistSeriesData {
    pub(crate) sealed: Vec<Arc<[u8]>>,
    pub(crate) tail: Vec<HistogramSample>,
    pub(crate) ooo: Vec<HistogramSample>,
}

impl HistSeriesData {
    /// All samples in `[mint, maxt]`, ascending.
    pub(crate) fn decode(
        self,
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<HistogramSample>, chunk::CorruptChunk> {
        let mut out = Vec::new();
        for c in &self.sealed {
            hchunk::decode(c, &mut out)?;
        }
        out.extend(self.tail);
        let mut out = merge(out, self.ooo);
        out.retain(|s| s.t >= mint && s.t <= maxt);
        Ok(out)
    }
}

impl MemSeries {
    pub(crate) fn max_t(&self) -> Option<i64> {
        if !self.open.is_empty() {
            Some(self.open.max_t)
        } else {
            self.chunks.last().map(|c| c.max_t)
        }
    }

    fn min_t(&self) -> Option<i64> {
        let c = self.chunks.first().map(|c| c.min_t);
        let o = (!self.open.is_empty()).then_some(self.open.min_t);
        let x = self.ooo.first().map(|s| s.t);
        let h = self.hist.as_ref().and_then(|h| h.min_t());
        [c, o, x, h].into_iter().flatten().min()
    }

    fn is_empty(&self) -> bool {
        self.chunks.is_empty()
            && self.open.is_empty()
            && self.ooo.is_empty()
            && self.hist.as_ref().is_none_or(|h| h.is_empty())
    }

    fn seal(&mut self) {
        if self.open.is_empty() {
            return;
        }
        let open = std::mem::take(&mut self.open);
        self.chunks.push(HeadChunk {
            min_t: open.min_t,
            max_t: open.max_t,
            data: Arc::from(open.seal()),
        });
    }
}

/// log2 of the slots in one page of the [`SeriesTable`].
const PAGE_BITS: u32 = 10;
/// Slots in one page of the [`SeriesTable`].
const PAGE: usize = 1 << PAGE_BITS;

/// One page of series slots and how many of them hold a series.
#[derive(Debug)]
struct Page {
    slots: Box<[Option<MemSeries>]>,
    live: usize,
}

/// Series by reference, in pages of [`PAGE`] slots.
///
/// References are never reused (the WAL names series by them), so a plain vector would
/// keep a slot for every series ever created; here a page whose series have all left
/// the head is freed, and memory follows the live series. Series that churn together
/// were created together and share pages, so their pages go when they do. Indexing stays
/// two array loads: appends and queries walk references in order (a hash map here halved
/// append throughput).
#[derive(Debug, Default)]
pub(crate) struct SeriesTable {
    pages: Vec<Option<Box<Page>>>,
    /// One past the highest reference created.
    end: u32,
}

impl SeriesTable {
    fn split(r: u32) -> (usize, usize) {
        ((r >> PAGE_BITS) as usize, r as usize & (PAGE - 1))
    }

    /// Series `r`, if it is in the head.
    pub(crate) fn get(&self, r: u32) -> Option<&MemSeries> {
        let (p, i) = Self::split(r);
        self.pages.get(p)?.as_ref()?.slots[i].as_ref()
    }

    fn get_mut(&mut self, r: u32) -> Option<&mut MemSeries> {
        let (p, i) = Self::split(r);
        self.pages.get_mut(p)?.as_mut()?.slots[i].as_mut()
    }

    /// Puts `s` at `r` (a free slot).
    fn insert(&mut self, r: u32, s: MemSeries) {
        let (p, i) = Self::split(r);
        if self.pages.len() <= p {
            self.pages.resize_with(p + 1, || None);
        }
        let page = self.pages[p].get_or_insert_with(|| {
            Box::new(Page {
                slots: (0..PAGE).map(|_| None).collect(),
                live: 0,
            })
        });
        if page.slots[i].replace(s).is_none() {
            page.live += 1;
        }
        self.end = self.end.max(r + 1);
    }

    /// Takes series `r` out; its page is freed when it was the page's last.
    fn take(&mut self, r: u32) -> Option<MemSeries> {
        let (p, i) = Self::split(r);
        let slot = self.pages.get_mut(p)?;
        let page = slot.as_mut()?;
        let s = page.slots[i].take()?;
        page.live -= 1;
        if page.live == 0 {
            *slot = None;
        }
        Some(s)
    }

    /// Every series with its reference, ascending.
    fn iter(&self) -> impl Iterator<Item = (u32, &MemSeries)> {
        self.pages.iter().enumerate().flat_map(|(p, page)| {
            page.iter().flat_map(move |page| {
                page.slots
                    .iter()
                    .enumerate()
                    .filter_map(move |(i, s)| Some((((p << PAGE_BITS) | i) as u32, s.as_ref()?)))
            })
        })
    }

    /// Every series with its reference, ascending, mutably.
    fn iter_mut(&mut self) -> impl Iterator<Item = (u32, &mut MemSeries)> {
        self.pages.iter_mut().enumerate().flat_map(|(p, page)| {
            page.iter_mut().flat_map(move |page| {
                page.slots
                    .iter_mut()
                    .enumerate()
                    .filter_map(move |(i, s)| Some((((p << PAGE_BITS) | i) as u32, s.as_mut()?)))
            })
        })
    }

    /// Slots allocated (in pages held), live or free.
    #[cfg(test)]
    pub(crate) fn slots_held(&self) -> usize {
        self.pages.iter().flatten().count() * PAGE
    }
}

/// What a query needs of one series, copied out under the lock and decoded after.
#[derive(Debug)]
pub(crate) struct SeriesData {
    pub(crate) sealed: Vec<Arc<[u8]>>,
    pub(crate) tail: Vec<Sample>,
    pub(crate) ooo: Vec<Sample>,
    /// Milliseconds of the range asked for that the chunks' time bounds cover, and the
    /// most samples the data can hold.
    pub(crate) covered: (i64, usize),
}

impl SeriesData {
    /// All samples in `[mint, maxt]`, ascending.
    pub(crate) fn decode(self, mint: i64, maxt: i64) -> Result<Vec<Sample>, chunk::CorruptChunk> {
        let mut out = Vec::new();
        for c in &self.sealed {
            chunk::decode(c, &mut out)?;
        }
        out.extend(self.tail);
        if !self.ooo.is_empty() {
            out = merge(out, self.ooo);
        }
        out.retain(|s| s.t >= mint && s.t <= maxt);
        // A query holds every series' samples at once: no spare room stays with them.
        out.shrink_to_fit();
        Ok(out)
    }
}

/// Appends the next part of a series (sorted) to what is read of it so far, earlier
/// parts winning on equal timestamps (as [`merge`]); the list grows by exactly the part,
/// not by doubling, since a query holds every series' list at once.
pub(crate) fn append(acc: &mut Vec<Sample>, part: Vec<Sample>) {
    match (acc.last(), part.first()) {
        (None, _) => *acc = part,
        (_, None) => {}
        (Some(x), Some(y)) if x.t < y.t => {
            acc.reserve_exact(part.len());
            acc.extend_from_slice(&part);
        }
        _ => *acc = merge(std::mem::take(acc), part),
    }
}

/// A sample of either kind: what [`merge`] orders by.
pub(crate) trait Timed {
    /// Its timestamp (ms).
    fn t(&self) -> i64;
}

impl Timed for Sample {
    fn t(&self) -> i64 {
        self.t
    }
}

impl Timed for HistogramSample {
    fn t(&self) -> i64 {
        self.t
    }
}

/// Merges two ascending sample lists (floats or histograms); on equal timestamps `a`
/// wins.
pub(crate) fn merge<T: Timed>(mut a: Vec<T>, b: Vec<T>) -> Vec<T> {
    // Blocks and head rarely overlap: appending is the common case.
    match (a.last(), b.first()) {
        (None, _) => return b,
        (_, None) => return a,
        (Some(x), Some(y)) if x.t() < y.t() => {
            a.extend(b);
            return a;
        }
        _ => {}
    }
    let mut out = Vec::with_capacity(a.len() + b.len());
    let mut b = b.into_iter().peekable();
    for x in a {
        while let Some(y) = b.next_if(|y| y.t() < x.t()) {
            out.push(y);
        }
        b.next_if(|y| y.t() == x.t());
        out.push(x);
    }
    out.extend(b);
    out
}

/// How an append relates to what the series already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// Newer than everything: goes to the open chunk.
    Newest,
    /// Older than the newest sample, new timestamp: goes to the out-of-order buffer.
    Older,
    /// Same timestamp and bit-identical value: nothing to do.
    Duplicate,
    /// Same timestamp, different value.
    Conflict,
}

/// The head.
#[derive(Debug)]
pub(crate) struct Head {
    symbols: Symbols,
    /// Series by reference; freed pages of slots follow departed series.
    pub(crate) series: SeriesTable,
    by_hash: HashKeyed<u32>,
    collisions: HashMap<Labels, u32>,
    pub(crate) index: Index,
    live: usize,
    /// Samples currently held.
    pub(crate) samples: u64,
    /// Block range in ms; chunks are cut at its multiples.
    range: i64,
    /// Whether a native histogram was ever appended since the head was made: a store
    /// that never had one skips looking for them on every query.
    pub(crate) has_histograms: bool,
}

/// A fast non-cryptographic hash of a label set (FxHash's mixing over 8-byte words).
/// Collisions are handled by comparing labels, so quality only affects speed.
fn labels_hash(ls: &Labels) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h: u64 = 0;
    let mut mix = |bytes: &[u8]| {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            h = (h.rotate_left(5) ^ w).wrapping_mul(K);
        }
        let mut last = [0u8; 8];
        let rest = chunks.remainder();
        last[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(last) ^ (rest.len() as u64) << 56)
            .wrapping_mul(K);
    };
    for l in ls {
        mix(l.name.as_bytes());
        mix(l.value.as_bytes());
    }
    h
}

/// A hasher for keys that are already hashes.
#[derive(Default)]
pub(crate) struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type HashKeyed<V> = HashMap<u64, V, std::hash::BuildHasherDefault<IdentityHasher>>;

impl Head {
    pub(crate) fn new(range: i64) -> Self {
        Self {
            symbols: Symbols::default(),
            series: SeriesTable::default(),
            by_hash: HashKeyed::default(),
            collisions: HashMap::new(),
            index: Index::default(),
            live: 0,
            samples: 0,
            range,
            has_histograms: false,
        }
    }

    /// Number of live series.
    pub(crate) fn num_series(&self) -> usize {
        self.live
    }

    /// The next reference a new series gets.
    pub(crate) fn next_ref(&self) -> u32 {
        self.series.end
    }

    /// Distinct strings the live series' labels use.
    pub(crate) fn num_symbols(&self) -> usize {
        self.symbols.len()
    }

    /// The reference of `labels`, if the series exists.
    pub(crate) fn get_ref(&self, labels: &Labels) -> Option<u32> {
        let h = labels_hash(labels);
        match self.by_hash.get(&h) {
            Some(&r) if self.get(r).is_some_and(|s| self.same_labels(s, labels)) => Some(r),
            Some(_) => self.collisions.get(labels).copied(),
            None => None,
        }
    }

    /// Whether series `s` has exactly `labels`, without allocating.
    fn same_labels(&self, s: &MemSeries, labels: &Labels) -> bool {
        s.labels.len() == labels.len() * 2
            && s.labels.chunks(2).zip(labels.iter()).all(|(p, l)| {
                **self.symbols.get(p[0]) == *l.name && **self.symbols.get(p[1]) == *l.value
            })
    }

    /// Creates a series with reference `r` (≥ every existing reference).
    pub(crate) fn create(&mut self, r: u32, labels: &Labels) {
        if r < self.series.end || r == u32::MAX {
            return;
        }
        let mut ids = Vec::with_capacity(labels.len() * 2);
        for l in labels {
            let n = self.symbols.intern(&l.name);
            let v = self.symbols.intern(&l.value);
            ids.push(n);
            ids.push(v);
            let name = Arc::clone(self.symbols.get(n));
            let value = Arc::clone(self.symbols.get(v));
            self.index.add(name, value, r);
        }
        let h = labels_hash(labels);
        if let std::collections::hash_map::Entry::Vacant(e) = self.by_hash.entry(h) {
            e.insert(r);
        } else {
            self.collisions.insert(labels.clone(), r);
        }
        self.series.insert(
            r,
            MemSeries {
                labels: ids.into_boxed_slice(),
                chunks: Vec::new(),
                open: OpenChunk::default(),
                last_v: 0,
                ooo: Vec::new(),
                hist: None,
            },
        );
        self.live += 1;
    }

    pub(crate) fn get(&self, r: u32) -> Option<&MemSeries> {
        self.series.get(r)
    }

    /// The labels of series `r`.
    pub(crate) fn labels_of(&self, r: u32) -> Option<Labels> {
        Some(self.labels_from_ids(&self.get(r)?.labels))
    }

    fn labels_from_ids(&self, ids: &[u32]) -> Labels {
        Labels::from_pairs(ids.chunks(2).map(|p| {
            (
                self.symbols.get(p[0]).to_string(),
                self.symbols.get(p[1]).to_string(),
            )
        }))
    }

    fn label_value(&self, s: &MemSeries, name: &str) -> &str {
        for p in s.labels.chunks(2) {
            if &**self.symbols.get(p[0]) == name {
                return self.symbols.get(p[1]);
            }
        }
        ""
    }

    /// Where a sample at `t` with value `v` would go in series `r`.
    pub(crate) fn order(&self, r: u32, t: i64, v: f64) -> Order {
        let Some(s) = self.get(r) else {
            return Order::Newest;
        };
        match s.max_t() {
            None => Order::Newest,
            Some(max) if t > max => Order::Newest,
            Some(max) if t == max => {
                if s.last_v == v.to_bits() {
                    Order::Duplicate
                } else {
                    Order::Conflict
                }
            }
            Some(_) => match self.find(s, t) {
                Some(old) if old.to_bits() == v.to_bits() => Order::Duplicate,
                Some(_) => Order::Conflict,
                None => Order::Older,
            },
        }
    }

    /// The value stored at exactly `t`, if any (decodes the chunk that covers `t`).
    fn find(&self, s: &MemSeries, t: i64) -> Option<f64> {
        if let Ok(i) = s.ooo.binary_search_by_key(&t, |x| x.t) {
            return Some(s.ooo[i].v);
        }
        let mut buf = Vec::new();
        for c in s.chunks.iter().filter(|c| c.min_t <= t && t <= c.max_t) {
            chunk::decode(&c.data, &mut buf).ok()?;
        }
        if !s.open.is_empty() && s.open.min_t <= t && t <= s.open.max_t {
            s.open.samples(&mut buf);
        }
        buf.iter().find(|x| x.t == t).map(|x| x.v)
    }

    /// Appends a sample already checked with [`Head::order`] (or replayed from the WAL).
    pub(crate) fn append(&mut self, r: u32, t: i64, v: f64) {
        let range = self.range;
        let Some(s) = self.series.get_mut(r) else {
            return;
        };
        match s.max_t() {
            Some(max) if t < max => {
                match s.ooo.binary_search_by_key(&t, |x| x.t) {
                    Ok(_) => return,
                    Err(i) => s.ooo.insert(i, Sample::new(t, v)),
                }
                self.samples += 1;
                return;
            }
            Some(max) if t == max => return,
            _ => {}
        }
        if !s.open.is_empty() {
            let boundary = (s.open.min_t.div_euclid(range) + 1) * range;
            if s.open.len() >= MAX_SAMPLES || t >= boundary {
                s.seal();
            }
        }
        s.open.push(t, v);
        s.last_v = v.to_bits();
        self.samples += 1;
    }

    /// Where a histogram sample at `t` would go in series `r`.
    pub(crate) fn order_histogram(&self, r: u32, t: i64, h: &FloatHistogram) -> Order {
        let Some(hd) = self.get(r).and_then(|s| s.hist.as_deref()) else {
            return Order::Newest;
        };
        let same = |x: &HistogramSample| {
            if same_histogram(&x.h, h) {
                Order::Duplicate
            } else {
                Order::Conflict
            }
        };
        match (hd.max_t(), &hd.last) {
            (Some(max), _) if t > max => return Order::Newest,
            (None, _) => return Order::Newest,
            (Some(max), Some(last)) if t == max => return same(last),
            _ => {}
        }
        if let Ok(i) = hd.ooo.binary_search_by_key(&t, |x| x.t) {
            return same(&hd.ooo[i]);
        }
        let mut buf = Vec::new();
        for c in hd.chunks.iter().filter(|c| c.min_t <= t && t <= c.max_t) {
            let _ = hchunk::decode(&c.data, &mut buf);
        }
        if hd.open_range().is_some_and(|(lo, hi)| lo <= t && t <= hi) {
            buf.extend(hd.open_samples());
        }
        match buf.iter().find(|x| x.t == t) {
            Some(x) => same(x),
            None => Order::Older,
        }
    }

    /// Appends a histogram sample already checked with [`Head::order_histogram`] (or
    /// replayed from the WAL).
    pub(crate) fn append_histogram(&mut self, r: u32, t: i64, h: Arc<FloatHistogram>) {
        let range = self.range;
        let Some(s) = self.series.get_mut(r) else {
            return;
        };
        self.has_histograms = true;
        let hd = s.hist.get_or_insert_with(Box::default);
        let sample = HistogramSample { t, h };
        match hd.max_t() {
            Some(max) if t < max => match hd.ooo.binary_search_by_key(&t, |x| x.t) {
                Ok(_) => return,
                Err(i) => hd.ooo.insert(i, sample),
            },
            Some(max) if t == max => return,
            _ => hd.push(range, sample),
        }
        self.samples += 1;
    }

    /// Copies out what a query over `[mint, maxt]` needs of series `r`'s histograms.
    pub(crate) fn hist_data(&self, r: u32, mint: i64, maxt: i64) -> Option<HistSeriesData> {
        let hd = self.get(r)?.hist.as_deref()?;
        let sealed: Vec<Arc<[u8]>> = hd
            .chunks
            .iter()
            .filter(|c| c.max_t >= mint && c.min_t <= maxt)
            .map(|c| Arc::clone(&c.data))
            .collect();
        let in_range = |x: &HistogramSample| x.t >= mint && x.t <= maxt;
        let mut tail = Vec::new();
        if hd
            .open_range()
            .is_some_and(|(lo, hi)| hi >= mint && lo <= maxt)
        {
            tail = hd.open_samples();
            tail.retain(in_range);
        }
        let ooo: Vec<HistogramSample> = hd.ooo.iter().filter(|x| in_range(x)).cloned().collect();
        (!sealed.is_empty() || !tail.is_empty() || !ooo.is_empty()).then_some(HistSeriesData {
            sealed,
            tail,
            ooo,
        })
    }

    /// Series references matching every matcher, ascending. An empty list matches nothing.
    pub(crate) fn select(&self, matchers: &[Matcher]) -> Vec<u32> {
        self.index.select(
            matchers,
            || self.all_refs(),
            |r, name| self.get(r).map(|s| self.label_value(s, name)),
        )
    }

    fn all_refs(&self) -> Vec<u32> {
        self.series.iter().map(|(r, _)| r).collect()
    }

    /// Copies out what a query over `[mint, maxt]` needs of series `r`.
    pub(crate) fn data(&self, r: u32, mint: i64, maxt: i64) -> Option<SeriesData> {
        let s = self.get(r)?;
        let overlap = |lo: i64, hi: i64| hi.min(maxt).saturating_sub(lo.max(mint)).max(0);
        let mut covered = 0i64;
        let sealed: Vec<Arc<[u8]>> = s
            .chunks
            .iter()
            .filter(|c| c.max_t >= mint && c.min_t <= maxt)
            .map(|c| {
                covered = covered.saturating_add(overlap(c.min_t, c.max_t));
                Arc::clone(&c.data)
            })
            .collect();
        let mut tail = Vec::new();
        if !s.open.is_empty() && s.open.max_t >= mint && s.open.min_t <= maxt {
            s.open.samples(&mut tail);
            covered = covered.saturating_add(overlap(s.open.min_t, s.open.max_t));
        }
        let ooo: Vec<Sample> = s
            .ooo
            .iter()
            .filter(|x| x.t >= mint && x.t <= maxt)
            .copied()
            .collect();
        let most = sealed.len() * MAX_SAMPLES + tail.len() + ooo.len();
        Some(SeriesData {
            sealed,
            tail,
            ooo,
            covered: (covered, most),
        })
    }

    /// Whether series `r` has a sample (float or histogram) in `[mint, maxt]` (by chunk
    /// bounds).
    pub(crate) fn overlaps(&self, r: u32, mint: i64, maxt: i64) -> bool {
        self.get(r).is_some_and(|s| {
            s.chunks.iter().any(|c| c.max_t >= mint && c.min_t <= maxt)
                || (!s.open.is_empty() && s.open.max_t >= mint && s.open.min_t <= maxt)
                || s.ooo.iter().any(|x| x.t >= mint && x.t <= maxt)
                || s.hist.as_deref().is_some_and(|h| {
                    h.chunks.iter().any(|c| c.max_t >= mint && c.min_t <= maxt)
                        || h.open_range()
                            .is_some_and(|(lo, hi)| hi >= mint && lo <= maxt)
                        || h.ooo.iter().any(|x| x.t >= mint && x.t <= maxt)
                })
        })
    }

    /// Label names of the given series.
    pub(crate) fn label_names(&self, refs: &[u32]) -> Vec<String> {
        let mut ids: Vec<u32> = refs
            .iter()
            .filter_map(|r| self.get(*r))
            .flat_map(|s| s.labels.iter().step_by(2).copied())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let mut out: Vec<String> = ids
            .into_iter()
            .map(|i| self.symbols.get(i).to_string())
            .collect();
        out.sort();
        out
    }

    /// Values of label `name` among the given series.
    pub(crate) fn label_values(&self, name: &str, refs: &[u32]) -> Vec<String> {
        let mut out: Vec<String> = refs
            .iter()
            .filter_map(|r| self.get(*r))
            .map(|s| self.label_value(s, name))
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Every live series reference with its labels, for checkpoints and block writing.
    pub(crate) fn refs(&self) -> Vec<u32> {
        self.all_refs()
    }

    /// Earliest and latest sample times held, if any.
    pub(crate) fn time_range(&self) -> Option<(i64, i64)> {
        let mut lo = i64::MAX;
        let mut hi = i64::MIN;
        for (_, s) in self.series.iter() {
            if let Some(a) = s.min_t() {
                lo = lo.min(a);
            }
            if let Some(b) = s.max_t() {
                hi = hi.max(b);
            }
            if let Some(x) = s.ooo.last() {
                hi = hi.max(x.t);
            }
            if let Some(h) = s.hist.as_deref() {
                for t in [h.max_t(), h.ooo.last().map(|x| x.t)].into_iter().flatten() {
                    hi = hi.max(t);
                }
            }
        }
        (lo <= hi).then_some((lo, hi))
    }

    /// Number of chunks held (sealed and open).
    pub(crate) fn chunk_count(&self) -> usize {
        self.series
            .iter()
            .map(|(_, s)| {
                s.chunks.len()
                    + usize::from(!s.open.is_empty())
                    + s.hist
                        .as_deref()
                        .map_or(0, |h| h.chunks.len() + usize::from(h.open.len() > 0))
            })
            .sum()
    }

    /// Removes `r` from the series map and the label-hash lookup (not the postings).
    fn forget(&mut self, r: u32) -> Option<MemSeries> {
        let s = self.series.take(r)?;
        self.live -= 1;
        let labels = self.labels_from_ids(&s.labels);
        let h = labels_hash(&labels);
        if self.by_hash.get(&h) == Some(&r) {
            self.by_hash.remove(&h);
        }
        self.collisions.remove(&labels);
        Some(s)
    }

    fn release_symbols(&mut self, s: &MemSeries) {
        for id in s.labels.iter() {
            self.symbols.release(*id);
        }
    }

    /// Removes many series at once (garbage collection at a block cut): one pass over
    /// the postings instead of one per series, then their symbols are freed.
    fn remove_all(&mut self, refs: &[u32]) {
        let gone: std::collections::HashSet<u32> = refs.iter().copied().collect();
        let mut removed = Vec::with_capacity(refs.len());
        for r in refs {
            if let Some(s) = self.forget(*r) {
                removed.push(s);
            }
        }
        self.index.remove_refs(&gone);
        for s in &removed {
            self.release_symbols(s);
        }
    }

    /// Drops every sample before `t` (written to a block, or past retention) and series
    /// left empty. Chunks never straddle block boundaries, so whole chunks go.
    pub(crate) fn truncate_before(&mut self, t: i64) {
        let mut emptied = Vec::new();
        for (r, s) in self.series.iter_mut() {
            s.chunks.retain(|c| c.max_t >= t);
            if !s.open.is_empty() && s.open.max_t < t {
                s.open = OpenChunk::default();
            }
            s.ooo.retain(|x| x.t >= t);
            if let Some(h) = s.hist.as_deref_mut() {
                h.truncate_before(t);
                if h.is_empty() {
                    s.hist = None;
                }
            }
            if s.is_empty() {
                emptied.push(r);
            }
        }
        self.remove_all(&emptied);
        self.recount();
    }

    /// Recomputes the sample count from chunk headers.
    fn recount(&mut self) {
        let mut n = 0u64;
        for (_, s) in self.series.iter() {
            n += s
                .chunks
                .iter()
                .map(|c| chunk::count(&c.data).unwrap_or(0) as u64)
                .sum::<u64>();
            n += s.open.len() as u64 + s.ooo.len() as u64;
            n += s.hist.as_deref().map_or(0, HistData::samples);
        }
        self.samples = n;
    }

    /// Removes samples of series `r` in `[mint, maxt]` (admin deletion).
    pub(crate) fn delete_range(&mut self, r: u32, mint: i64, maxt: i64) {
        let range = self.range;
        let Some(s) = self.series.get_mut(r) else {
            return;
        };
        let mut all = Vec::new();
        for c in &s.chunks {
            let _ = chunk::decode(&c.data, &mut all);
        }
        s.open.samples(&mut all);
        let all = merge(all, std::mem::take(&mut s.ooo));
        let keep: Vec<Sample> = all
            .into_iter()
            .filter(|x| x.t < mint || x.t > maxt)
            .collect();
        s.chunks.clear();
        s.open = OpenChunk::default();
        for x in keep {
            if !s.open.is_empty() {
                let boundary = (s.open.min_t.div_euclid(range) + 1) * range;
                if s.open.len() >= MAX_SAMPLES || x.t >= boundary {
                    s.seal();
                }
            }
            s.open.push(x.t, x.v);
            s.last_v = x.v.to_bits();
        }
        if let Some(h) = s.hist.take() {
            let mut kept = HistData::default();
            for x in h.all().into_iter().filter(|x| x.t < mint || x.t > maxt) {
                kept.push(range, x);
            }
            if !kept.is_empty() {
                s.hist = Some(Box::new(kept));
            }
        }
        self.recount();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lookout_model::MatchOp;

    fn ls(job: &str, inst: &str) -> Labels {
        Labels::from_pairs([("__name__", "up"), ("job", job), ("instance", inst)])
    }

    #[test]
    fn postings_serve_all_matcher_kinds_and_regex_shortcuts() {
        let mut h = Head::new(7_200_000);
        let jobs = ["api", "apiserver", "db", "web"];
        for (i, j) in jobs.iter().enumerate() {
            h.create(i as u32, &ls(j, "a"));
        }
        h.create(4, &Labels::from_pairs([("__name__", "other")]));
        let q = |ms: Vec<Matcher>| h.select(&ms);
        let re = |op, v: &str| Matcher::new(op, "job", v).unwrap();
        assert_eq!(q(vec![Matcher::equal("job", "db")]), vec![2]);
        assert_eq!(q(vec![re(MatchOp::Regex, "api|web")]), vec![0, 3]);
        assert_eq!(q(vec![re(MatchOp::Regex, "api.*")]), vec![0, 1]);
        assert_eq!(q(vec![re(MatchOp::Regex, "a.i")]), vec![0]);
        assert_eq!(
            q(vec![
                Matcher::equal("__name__", "up"),
                re(MatchOp::NotRegex, "api|web")
            ]),
            vec![1, 2]
        );
        assert_eq!(
            q(vec![
                Matcher::equal("__name__", "up"),
                re(MatchOp::NotEqual, "db")
            ]),
            vec![0, 1, 3]
        );
        assert_eq!(q(vec![Matcher::equal("job", "")]), vec![4]);
        assert_eq!(q(vec![re(MatchOp::Regex, ".*")]), vec![0, 1, 2, 3, 4]);
        assert_eq!(h.get_ref(&ls("db", "a")), Some(2));
        assert_eq!(h.labels_of(2), Some(ls("db", "a")));
    }

    #[test]
    fn open_histograms_are_held_encoded_and_still_checked() {
        let mut h = Head::new(7_200_000);
        let ls = Labels::from_pairs([("__name__", "rpc_seconds")]);
        h.create(0, &ls);
        let hist = |i: u64| {
            let b: Vec<String> = (0..20).map(|k| (i * (k + 1)).to_string()).collect();
            Arc::new(
                FloatHistogram::parse(&format!(
                    "{{{{schema:3 count:{} sum:{i} buckets:[{}]}}}}",
                    i * 210,
                    b.join(" ")
                ))
                .unwrap(),
            )
        };
        for i in 0..100u64 {
            h.append_histogram(0, i as i64 * 1000, hist(i));
        }
        let hd = h.get(0).unwrap().hist.as_deref().unwrap();
        assert_eq!(hd.open.len(), 100);
        // 100 histograms of 22 numbers: a few bytes each, not the kilobyte a decoded one
        // takes.
        assert!(hd.open.heap_bytes() < 100 * 60, "{}", hd.open.heap_bytes());
        assert_eq!(hd.open_samples().len(), 100);
        // Inside the open chunk: the same histogram is a duplicate, another a conflict, a
        // new time out of order.
        assert_eq!(h.order_histogram(0, 50_000, &hist(50)), Order::Duplicate);
        assert_eq!(h.order_histogram(0, 50_000, &hist(51)), Order::Conflict);
        assert_eq!(h.order_histogram(0, 50_500, &hist(51)), Order::Older);
        assert_eq!(h.order_histogram(0, 99_000, &hist(99)), Order::Duplicate);
        assert_eq!(h.order_histogram(0, 100_000, &hist(1)), Order::Newest);
        // Sealed at 120 samples; reading sees every one, in order.
        for i in 100..130u64 {
            h.append_histogram(0, i as i64 * 1000, hist(i));
        }
        let hd = h.get(0).unwrap().hist.as_deref().unwrap();
        assert_eq!((hd.chunks.len(), hd.open.len()), (1, 10));
        let got = h
            .hist_data(0, 0, i64::MAX)
            .unwrap()
            .decode(0, i64::MAX)
            .unwrap();
        assert_eq!(got.len(), 130);
        assert!(got.windows(2).all(|w| w[0].t < w[1].t));
        assert_eq!(got[129].h, hist(129));
        // Truncation drops whole chunks and the open one when it is older.
        h.truncate_before(7_200_000);
        assert!(
            h.get(0).is_none(),
            "every sample went, and the series with them"
        );
    }

    #[test]
    fn appends_cut_chunks_and_accept_out_of_order() {
        let range = 3_600_000;
        let mut h = Head::new(range);
        h.create(0, &ls("a", "b"));
        for i in 0..600 {
            h.append(0, i * 15_000, i as f64);
        }
        let s = h.get(0).unwrap();
        // 240-sample chunks, and a cut at the 1h boundary (sample 240).
        assert!(s.chunks.iter().all(|c| c.max_t < range || c.min_t >= range));
        assert!(s.chunks.len() >= 2);
        assert_eq!(h.order(0, 599 * 15_000, 599.0), Order::Duplicate);
        assert_eq!(h.order(0, 599 * 15_000, 1.0), Order::Conflict);
        assert_eq!(h.order(0, 10 * 15_000, 10.0), Order::Duplicate);
        assert_eq!(h.order(0, 10 * 15_000 + 1, 1.0), Order::Older);
        h.append(0, 10 * 15_000 + 1, -1.0);
        let got = h.data(0, 0, i64::MAX).unwrap().decode(0, i64::MAX).unwrap();
        assert_eq!(got.len(), 601);
        assert_eq!(got[11], Sample::new(150_001, -1.0));
        assert!(got.windows(2).all(|w| w[0].t < w[1].t));
        h.truncate_before(range);
        let got = h.data(0, 0, i64::MAX).unwrap().decode(0, i64::MAX).unwrap();
        assert_eq!(got.first().unwrap().t, range);
        h.truncate_before(i64::MAX);
        assert_eq!(h.num_series(), 0);
        assert!(h.select(&[Matcher::equal("job", "a")]).is_empty());
    }
}
