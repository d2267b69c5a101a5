//! B+tree metrics, labelled `tree` (which index):
//!
//! | name | type | labels |
//! | --- | --- | --- |
//! | `btree_operations_total` | counter | `tree`, `op` (`search`, `insert`, `delete`, `scan`) |
//! | `btree_operation_duration_seconds` | histogram | `tree`, `op` |
//! | `btree_traversal_depth` | histogram (levels) | `tree` |
//! | `btree_node_splits_total`, `btree_node_merges_total` | counter | `tree` |
//! | `btree_height` | gauge | `tree` |
//! | `btree_nodes` | gauge | `tree`, `kind` (`internal`, `leaf`) |
//! | `btree_node_utilization_ratio` | histogram (0.1–1.0) | `tree` |
//!
//! With [`crate::Options::time_one_in`], the duration, traversal-depth and utilisation
//! histograms hold the sampled operations; `btree_operations_total` counts every one.

use crate::Counter;
use crate::Gauge;
use crate::Histogram;
use prometheus_client::metrics::family::Family;

use super::{HistFamily, LatencyHistogram, Pairs, handle, latency_family, observe_latency, pairs};
use crate::{Metrics, RATIO_BUCKETS, Stopwatch, Timing};

/// A B+tree operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BTreeOp {
    /// A point lookup.
    Search,
    /// An insert or update.
    Insert,
    /// A delete.
    Delete,
    /// A range scan.
    Scan,
}

impl BTreeOp {
    const ALL: [BTreeOp; 4] = [Self::Search, Self::Insert, Self::Delete, Self::Scan];

    fn as_str(self) -> &'static str {
        match self {
            Self::Search => "search",
            Self::Insert => "insert",
            Self::Delete => "delete",
            Self::Scan => "scan",
        }
    }
}

/// The B+tree metric set of one tree.
#[derive(Debug, Clone)]
#[repr(C)]
pub struct BTreeMetrics {
    /// First: read on every operation, beside the operations' counters (`repr(C)`).
    timing: Timing,
    ops: [(Counter, LatencyHistogram); 4],
    depth: Histogram,
    splits: Counter,
    merges: Counter,
    height: Gauge,
    internal: Gauge,
    leaf: Gauge,
    utilization: Histogram,
}

impl BTreeMetrics {
    pub(crate) fn new(m: &Metrics, tree: &str) -> Self {
        let counters = Family::<Pairs, Counter>::default;
        let gauges = Family::<Pairs, Gauge>::default;
        let ops_total = m.shared(
            "btree_operations",
            "B+tree operations, by tree and operation",
            counters,
        );
        let durations = m.shared(
            "btree_operation_duration_seconds",
            "B+tree operation latency, by tree and operation",
            latency_family,
        );
        let depth = m.shared(
            "btree_traversal_depth",
            "Levels visited from the root per operation",
            || {
                HistFamily::new_with_constructor(|| {
                    Histogram::new([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0])
                })
            },
        );
        let splits = m.shared(
            "btree_node_splits",
            "Nodes split because they were full",
            counters,
        );
        let merges = m.shared(
            "btree_node_merges",
            "Nodes merged because they were underfull",
            counters,
        );
        let height = m.shared("btree_height", "Levels from the root to the leaves", gauges);
        let nodes = m.shared("btree_nodes", "Nodes, by kind (internal, leaf)", gauges);
        let utilization = m.shared(
            "btree_node_utilization_ratio",
            "Fill ratio of nodes when written",
            || HistFamily::new_with_constructor(|| crate::histogram(&RATIO_BUCKETS)),
        );
        let t = pairs(&[("tree", tree)]);
        let ops = BTreeOp::ALL.map(|op| {
            let l = pairs(&[("tree", tree), ("op", op.as_str())]);
            (
                ops_total.get_or_create(&l).clone(),
                durations.get_or_create(&l).clone(),
            )
        });
        Self {
            ops,
            depth: depth.get_or_create(&t).clone(),
            splits: splits.get_or_create(&t).clone(),
            merges: merges.get_or_create(&t).clone(),
            height: height.get_or_create(&t).clone(),
            internal: handle(&nodes, &[("tree", tree), ("kind", "internal")]),
            leaf: handle(&nodes, &[("tree", tree), ("kind", "leaf")]),
            utilization: utilization.get_or_create(&t).clone(),
            timing: m.timing(),
        }
    }

    /// Records one finished operation: it is counted and, when it was timed (`seconds`
    /// given; see [`crate::Options::time_one_in`]), its latency and how many levels it
    /// visited are observed.
    #[inline]
    pub fn record(&self, op: BTreeOp, seconds: impl Into<Option<f64>>, depth: u32) {
        let (count, duration) = &self.ops[op as usize];
        count.inc();
        let seconds = seconds.into();
        if seconds.is_some() {
            observe_latency(duration, seconds);
            self.depth.observe(f64::from(depth));
        }
    }

    /// Starts an operation, timed if it is in the sample; [`OpTimer::finish`] records
    /// it. The timer borrows nothing, so the engine stays free to change itself meanwhile.
    #[inline]
    pub fn start(&self, op: BTreeOp) -> OpTimer {
        OpTimer {
            op,
            watch: self.timing.start(),
        }
    }

    /// A node split.
    #[inline]
    pub fn split(&self) {
        self.splits.inc();
    }

    /// A node merge.
    #[inline]
    pub fn merge(&self) {
        self.merges.inc();
    }

    /// The tree's height now.
    #[inline]
    pub fn set_height(&self, levels: u32) {
        self.height.set(i64::from(levels));
    }

    /// The tree's node counts now.
    pub fn set_nodes(&self, internal: u64, leaf: u64) {
        self.internal.set(internal as i64);
        self.leaf.set(leaf as i64);
    }

    /// A node's fill ratio (0–1) when it was written.
    #[inline]
    pub fn observe_utilization(&self, ratio: f64) {
        if self.timing.sampled() {
            self.utilization.observe(ratio);
        }
    }
}

/// Times one B+tree operation.
#[derive(Debug)]
pub struct OpTimer {
    op: BTreeOp,
    watch: Stopwatch,
}

impl OpTimer {
    /// Records the operation in `set` with the levels it visited.
    #[inline]
    pub fn finish(self, set: &BTreeMetrics, depth: u32) {
        set.record(self.op, self.watch.seconds(), depth);
    }
}
