//! Per-thread cells: the storage under the SDK's [`Counter`] and [`crate::Histogram`].
//!
//! Written here because it is the SDK's hottest path, run several times per database
//! operation. A shared atomic counter costs a locked read-modify-write per increment
//! (about 5.5 ns on this 2-core EPYC, more inside an engine, since a locked instruction
//! waits for the store buffer to drain, and an engine writes pages), and threads that
//! increment the same series bounce its cache line between cores. Here every thread that
//! records owns a block of cells; each metric owns the same few cells (an index range) in
//! every block. Only the owning thread writes a block, so an increment is a plain load and
//! store, found through one thread-local load (the thread's first chunk of 1,024 cells:
//! all of most programs' cells; a metric past it takes a call more); a set's cells sit side by side in a thread's block, so an engine recording
//! through a set touches a line or two of its own, not one line per metric shared with
//! the other threads. A scrape sums the metric's cells over every block.
//!
//! Blocks outlive their threads: a finished thread's block goes to the next thread that
//! starts recording, which goes on adding to it, so a total never goes down and memory
//! grows with the most threads that recorded at once (a block is allocated in chunks of
//! 1,024 cells, 8 KiB, as the metrics need them). A metric dropped gives its cells back,
//! zeroed, for the next one of the same size, so families whose series come and go do not
//! leak. Recording from a thread-local destructor after the thread's block was handed on
//! goes to a shared block with locked adds; if a process ever made more than 1,048,576
//! cells, further metrics keep their own shared cells the same way.
//!
//! A scrape reads the cells one by one while threads go on recording, so it may see an
//! increment in one cell and not yet in another; every cell only grows, so successive
//! scrapes never see a counter go down.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::gauge::Atomic;
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Cells per chunk, and the most one metric may take.
pub(crate) const CHUNK: usize = 1024;
/// Chunks per block.
const CHUNKS: usize = 1024;

type Chunk = [AtomicU64; CHUNK];

/// One thread's cells (or the shared block's), allocated a chunk at a time.
struct Block {
    chunks: [OnceLock<Box<Chunk>>; CHUNKS],
}

impl Block {
    const fn new() -> Self {
        Self {
            chunks: [const { OnceLock::new() }; CHUNKS],
        }
    }

    /// `len` cells from `start`, allocating their chunk if this block has none yet.
    #[inline]
    fn cells(&self, start: usize, len: usize) -> &[AtomicU64] {
        let chunk = self.chunks[start / CHUNK]
            .get_or_init(|| Box::new([const { AtomicU64::new(0) }; CHUNK]));
        &chunk[start % CHUNK..start % CHUNK + len]
    }

    /// `len` cells from `start` if this block has their chunk.
    fn existing(&self, start: usize, len: usize) -> Option<&[AtomicU64]> {
        let chunk = self.chunks[start / CHUNK].get()?;
        Some(&chunk[start % CHUNK..start % CHUNK + len])
    }
}

/// The block threads share, with locked adds: recording after a thread's own block was
/// handed on.
static SHARED: Block = Block::new();

/// Every thread block ever made, and those free for the next thread.
static BLOCKS: Mutex<Vec<&'static Block>> = Mutex::new(Vec::new());
static IDLE: Mutex<Vec<&'static Block>> = Mutex::new(Vec::new());

/// Which cells are taken: the next never used, and those given back, by length.
struct Alloc {
    next: usize,
    free: BTreeMap<usize, Vec<usize>>,
}

static ALLOC: Mutex<Alloc> = Mutex::new(Alloc {
    next: 0,
    free: BTreeMap::new(),
});

/// What a thread records into: its block, and whether the block is the shared one
/// (locked adds).
#[derive(Clone, Copy)]
struct Mine {
    block: &'static Block,
    shared: bool,
}

impl Mine {
    fn new(block: &'static Block, shared: bool) -> Self {
        Self { block, shared }
    }
}

thread_local! {
    /// The hot path's one load: the first chunk of this thread's own block, once it has
    /// one (every cell of most programs). `None` before the thread's first record, while
    /// its block has no first chunk, and once the block was handed on; then recording
    /// takes [`Cells::mine_slow`].
    static FIRST: Cell<Option<&'static Chunk>> = const { Cell::new(None) };
    /// What this thread records into: none before its first record; the shared block
    /// once its own was handed on.
    static MINE: Cell<Option<Mine>> = const { Cell::new(None) };
    static RETURN: GiveBack = const { GiveBack(Cell::new(None)) };
}

/// Hands the thread's block to the next thread when this one ends.
struct GiveBack(Cell<Option<&'static Block>>);

impl Drop for GiveBack {
    fn drop(&mut self) {
        if let Some(b) = self.0.take() {
            let _ = FIRST.try_with(|f| f.set(None));
            let _ = MINE.try_with(|m| m.set(Some(Mine::new(&SHARED, true))));
            IDLE.lock().unwrap_or_else(|e| e.into_inner()).push(b);
        }
    }
}

/// What the calling thread records into.
fn my_block() -> Mine {
    match MINE.try_with(Cell::get) {
        Ok(Some(mine)) => mine,
        Ok(None) => first_block(),
        Err(_) => Mine::new(&SHARED, true),
    }
}

#[cold]
fn first_block() -> Mine {
    let registered = RETURN.try_with(|r| {
        let b = IDLE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_else(|| {
                let b: &'static Block = Box::leak(Box::new(Block::new()));
                BLOCKS.lock().unwrap_or_else(|e| e.into_inner()).push(b);
                b
            });
        r.0.set(Some(b));
        b
    });
    match registered {
        Ok(b) => {
            let mine = Mine::new(b, false);
            MINE.with(|m| m.set(Some(mine)));
            mine
        }
        // The thread is ending: its destructors record into the shared block.
        Err(_) => Mine::new(&SHARED, true),
    }
}

/// The cells one metric owns in every block: `len` from `start`, or (when every cell is
/// taken) its own shared ones; given back when the last handle goes.
#[derive(Debug)]
struct Range {
    start: usize,
    len: usize,
    own: Option<Box<[AtomicU64]>>,
}

impl Range {
    fn new(len: usize) -> Self {
        let mut a = ALLOC.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(start) = a.free.get_mut(&len).and_then(Vec::pop) {
            return Self {
                start,
                len,
                own: None,
            };
        }
        // A range never straddles two chunks.
        let mut start = a.next;
        if start % CHUNK + len > CHUNK {
            start = start.next_multiple_of(CHUNK);
        }
        if start + len > CHUNK * CHUNKS {
            return Self {
                start: OWN,
                len,
                own: Some((0..len).map(|_| AtomicU64::new(0)).collect()),
            };
        }
        a.next = start + len;
        Self {
            start,
            len,
            own: None,
        }
    }

    /// Calls `f` with every block's cells (the shared ones included).
    fn each(&self, mut f: impl FnMut(&[AtomicU64])) {
        if let Some(own) = &self.own {
            f(own);
            return;
        }
        let blocks = BLOCKS.lock().unwrap_or_else(|e| e.into_inner());
        for b in blocks.iter().copied().chain([&SHARED]) {
            if let Some(c) = b.existing(self.start, self.len) {
                f(c);
            }
        }
    }
}

impl Drop for Range {
    fn drop(&mut self) {
        if self.own.is_some() {
            return;
        }
        // No handle is left, so nothing records here any more: zero the cells in every
        // block and give them back.
        self.each(|c| c.iter().for_each(|v| v.store(0, Ordering::Relaxed)));
        ALLOC
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .free
            .entry(self.len)
            .or_default()
            .push(self.start);
    }
}

/// `Range::start` of a metric with cells of its own.
const OWN: usize = usize::MAX;

/// A handle on one metric's cells; clones share them. Where they sit in every block is
/// kept in the handle (16 bytes, so a set's handles share few lines), and recording reads
/// the thread's block, not a line of the metric's own.
#[derive(Clone, Debug)]
pub(crate) struct Cells {
    /// The first cell's index in every block ([`OWN_AT`]: cells of its own, in `range`).
    at: u32,
    len: u32,
    range: Arc<Range>,
}

/// `Cells::at` of a metric with cells of its own.
const OWN_AT: u32 = u32::MAX;

impl Cells {
    /// `len` cells (at most [`CHUNK`]), all 0 (also `0.0_f64`'s bits).
    pub(crate) fn new(len: usize) -> Self {
        let range = Range::new(len.clamp(1, CHUNK));
        Self {
            at: u32::try_from(range.start).unwrap_or(OWN_AT),
            len: range.len as u32,
            range: Arc::new(range),
        }
    }

    /// The calling thread's cells, and whether other threads write them too (then adds
    /// must be locked). The path taken on every record after a thread's first, for cells
    /// in the first chunk: one thread-local load, a range check; anything else is
    /// [`Cells::mine_slow`].
    #[inline]
    pub(crate) fn mine(&self) -> (&[AtomicU64], bool) {
        let start = self.at as usize;
        if let Ok(Some(c)) = FIRST.try_with(Cell::get)
            && let Some(cells) = c.get(start..start.wrapping_add(self.len as usize))
        {
            return (cells, false);
        }
        self.mine_slow()
    }

    /// The calling thread's first cell (a counter's only one), as [`Cells::mine`]. Its
    /// own path rather than `mine()[0]`, without the slice's range check, on a path an
    /// engine runs ten times per operation: one thread-local load and one comparison
    /// before the add (`cargo bench -p lookout-sdk --bench recording`).
    #[inline]
    pub(crate) fn first(&self) -> (&AtomicU64, bool) {
        if let Ok(Some(c)) = FIRST.try_with(Cell::get)
            && let Some(cell) = c.get(self.at as usize)
        {
            return (cell, false);
        }
        let (cells, shared) = self.mine_slow();
        (&cells[0], shared)
    }

    /// A metric with cells of its own or past the first chunk, a thread's first record,
    /// recording into the shared block, or the first record in a chunk of its block.
    #[cold]
    #[inline(never)]
    fn mine_slow(&self) -> (&[AtomicU64], bool) {
        if self.at == OWN_AT {
            return (self.range.own.as_deref().unwrap_or_default(), true);
        }
        let m = my_block();
        let cells = m.block.cells(self.range.start, self.range.len);
        if !m.shared
            && let Some(first) = m.block.chunks[0].get()
        {
            let _ = FIRST.try_with(|f| f.set(Some(&**first)));
        }
        (cells, m.shared)
    }

    /// Calls `f` with every block's cells (the shared ones included).
    pub(crate) fn each(&self, f: impl FnMut(&[AtomicU64])) {
        self.range.each(f);
    }
}

/// Adds `n` to a cell: a plain load and store when only the calling thread writes it
/// (another thread reading it sees the old or the new value, never a torn one), a locked
/// add when it is shared.
#[inline]
pub(crate) fn add(cell: &AtomicU64, n: u64, shared: bool) {
    if shared {
        cell.fetch_add(n, Ordering::Relaxed);
    } else {
        cell.store(
            cell.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }
}

/// Adds `v` to an `f64` kept as bits in a cell, as [`add`] does.
#[inline]
pub(crate) fn add_f64(cell: &AtomicU64, v: f64, shared: bool) {
    let step = |bits: u64| (f64::from_bits(bits) + v).to_bits();
    if shared {
        let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some(step(b)));
    } else {
        cell.store(step(cell.load(Ordering::Relaxed)), Ordering::Relaxed);
    }
}

/// A monotonic counter whose increment is a plain add to the calling thread's own cell;
/// cheap to clone (clones share the count). Registered and encoded through
/// `prometheus-client` like its own counters (the exposition adds `_total`).
#[derive(Clone, Debug)]
pub struct Counter {
    cells: Cells,
}

impl Default for Counter {
    fn default() -> Self {
        Self {
            cells: Cells::new(1),
        }
    }
}

impl Counter {
    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.inc_by(1);
    }

    /// Adds `n`.
    #[inline]
    pub fn inc_by(&self, n: u64) {
        let (c, shared) = self.cells.first();
        add(c, n, shared);
    }

    /// The total over every thread.
    pub fn get(&self) -> u64 {
        let mut total = 0u64;
        self.cells
            .each(|c| total = total.wrapping_add(c[0].load(Ordering::Relaxed)));
        total
    }
}

impl TypedMetric for Counter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for Counter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// The value of a [`crate::Gauge`]: `set` is a plain store (`prometheus-client`'s own
/// value swaps, a locked instruction, to return the old value), `inc` and `dec` stay
/// atomic adds. Two threads setting one gauge at once leave one of their values, as a
/// swap would; the old value `set` returns is the one it read just before.
#[derive(Debug, Default)]
pub struct Level(AtomicI64);

impl Atomic<i64> for Level {
    #[inline]
    fn inc(&self) -> i64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }

    #[inline]
    fn inc_by(&self, v: i64) -> i64 {
        self.0.fetch_add(v, Ordering::Relaxed)
    }

    #[inline]
    fn dec(&self) -> i64 {
        self.0.fetch_sub(1, Ordering::Relaxed)
    }

    #[inline]
    fn dec_by(&self, v: i64) -> i64 {
        self.0.fetch_sub(v, Ordering::Relaxed)
    }

    #[inline]
    fn set(&self, v: i64) -> i64 {
        let old = self.0.load(Ordering::Relaxed);
        self.0.store(v, Ordering::Relaxed);
        old
    }

    #[inline]
    fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;

    #[test]
    fn threads_counting_one_series_lose_nothing() {
        let c = Counter::default();
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let c = c.clone();
                s.spawn(move || {
                    for _ in 0..100_000 {
                        c.inc();
                    }
                    c.inc_by(t);
                });
            }
        });
        assert_eq!(c.get(), 400_000 + 6);
    }

    #[test]
    fn counts_of_finished_threads_stay_and_their_cells_are_reused() {
        let c = Counter::default();
        for _ in 0..50 {
            let c = c.clone();
            std::thread::spawn(move || c.inc_by(2))
                .join()
                .expect("thread");
        }
        c.inc();
        assert_eq!(c.get(), 101, "no finished thread's count is lost");
        assert!(
            BLOCKS.lock().unwrap().len() < 50,
            "finished threads' blocks are reused, not one per thread ever started"
        );
    }

    #[test]
    fn counts_from_thread_local_destructors_are_kept() {
        struct CountOnExit(Counter);
        impl Drop for CountOnExit {
            fn drop(&mut self) {
                self.0.inc_by(10);
            }
        }
        thread_local! {
            static ON_EXIT: std::cell::RefCell<Option<CountOnExit>> =
                const { std::cell::RefCell::new(None) };
        }
        let c = Counter::default();
        for _ in 0..20 {
            let c = c.clone();
            std::thread::spawn(move || {
                c.inc();
                // Registered after the block's give-back, so dropped before or after it
                // as the platform orders them: either way the count lands somewhere.
                ON_EXIT.with(|e| *e.borrow_mut() = Some(CountOnExit(c.clone())));
                c.inc();
            })
            .join()
            .expect("thread");
        }
        assert_eq!(c.get(), 20 * 12);
        // The shared block took any count made after a give-back with locked adds; the
        // threads that took the given-back blocks recorded plainly into them.
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| (0..10_000).for_each(|_| c.inc()));
            }
        });
        assert_eq!(c.get(), 20 * 12 + 40_000);
    }

    #[test]
    fn metrics_past_the_first_chunk_count_on_every_thread() {
        // More cells than a chunk holds: some of these sit past the first (the slow path).
        let counters: Vec<Counter> = (0..2 * CHUNK).map(|_| Counter::default()).collect();
        let hist = crate::Histogram::new([1.0, 2.0]);
        assert!(counters.iter().any(|c| c.cells.at as usize >= CHUNK));
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    for (i, c) in counters.iter().enumerate() {
                        c.inc_by(i as u64);
                        hist.observe(1.5);
                    }
                });
            }
        });
        for (i, c) in counters.iter().enumerate() {
            assert_eq!(c.get(), 3 * i as u64);
        }
        assert_eq!(hist.get().1, 3 * 2 * CHUNK as u64);
    }

    #[test]
    fn cells_given_back_come_back_zeroed_and_ranges_never_straddle_chunks() {
        let a = Counter::default();
        a.inc_by(5);
        let start = a.cells.range.start;
        drop(a);
        let b = Counter::default();
        if b.cells.range.start == start {
            assert_eq!(b.get(), 0, "a reused cell starts from zero");
        }
        let wide: Vec<Cells> = (0..3).map(|_| Cells::new(700)).collect();
        for c in &wide {
            assert!(
                c.at as usize % CHUNK + c.len as usize <= CHUNK,
                "{} + {}",
                c.at,
                c.len
            );
            assert_eq!(c.at as usize, c.range.start);
            assert_eq!(c.mine().0.len(), 700);
        }
        assert_eq!(
            Cells::new(1 << 20).len as usize,
            CHUNK,
            "a metric takes at most a chunk"
        );
    }

    #[test]
    fn a_level_sets_with_a_store_and_adds_atomically() {
        let g: crate::Gauge = crate::Gauge::default();
        assert_eq!(g.set(7), 0);
        assert_eq!(g.set(-3), 7);
        std::thread::scope(|s| {
            for _ in 0..4 {
                let g = g.clone();
                s.spawn(move || {
                    for _ in 0..10_000 {
                        g.inc();
                        g.dec_by(2);
                        g.inc_by(2);
                    }
                });
            }
        });
        assert_eq!(g.get(), 40_000 - 3);
        g.dec();
        assert_eq!(g.get(), 40_000 - 4);
    }

    #[test]
    fn encodes_as_a_counter() {
        let c = Counter::default();
        c.inc_by(41);
        c.inc();
        let mut r = Registry::default();
        r.register("page_reads", "Pages read.", c);
        let mut text = String::new();
        encode(&mut text, &r).unwrap();
        assert!(text.contains("# TYPE page_reads counter"), "{text}");
        assert!(text.contains("page_reads_total 42"), "{text}");
    }
}
