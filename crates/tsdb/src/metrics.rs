//! The store's own metrics, registered in the registry it is given.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Handles to the tsdb's metrics.
#[derive(Debug, Clone)]
pub(crate) struct TsdbMetrics {
    pub(crate) head_series: Gauge,
    pub(crate) appended: Counter,
    pub(crate) rejected: Counter,
    pub(crate) wal_corruptions: Counter,
    pub(crate) wal_failures: Counter,
    pub(crate) wal_bytes: Gauge,
    blocks: Gauge,
    blocks_index_bytes: Gauge,
    pub(crate) compactions: Counter,
    pub(crate) ooo_accepted: Counter,
    pub(crate) limit_rejections: Counter,
    pub(crate) future_rejections: Counter,
    pub(crate) blocks_skipped: Gauge,
    pub(crate) head_symbols: Gauge,
    pub(crate) chunk_read_errors: Counter,
    pub(crate) exemplars: Gauge,
    pub(crate) exemplars_appended: Counter,
    pub(crate) exemplars_rejected: Counter,
}

impl TsdbMetrics {
    pub(crate) fn new(reg: &mut Registry) -> Self {
        let m = Self {
            head_series: Gauge::default(),
            appended: Counter::default(),
            rejected: Counter::default(),
            wal_corruptions: Counter::default(),
            wal_failures: Counter::default(),
            wal_bytes: Gauge::default(),
            blocks: Gauge::default(),
            blocks_index_bytes: Gauge::default(),
            compactions: Counter::default(),
            ooo_accepted: Counter::default(),
            limit_rejections: Counter::default(),
            future_rejections: Counter::default(),
            blocks_skipped: Gauge::default(),
            head_symbols: Gauge::default(),
            chunk_read_errors: Counter::default(),
            exemplars: Gauge::default(),
            exemplars_appended: Counter::default(),
            exemplars_rejected: Counter::default(),
        };
        let reg = reg.sub_registry_with_prefix("lookout_tsdb");
        reg.register("head_series", "Series in the head", m.head_series.clone());
        reg.register(
            "exemplars_in_storage",
            "Exemplars kept",
            m.exemplars.clone(),
        );
        reg.register(
            "exemplars_appended",
            "Exemplars stored",
            m.exemplars_appended.clone(),
        );
        reg.register(
            "exemplars_rejected",
            "Exemplars refused: out of order, invalid labels, or no such series",
            m.exemplars_rejected.clone(),
        );
        reg.register(
            "head_symbols",
            "Distinct label strings the head's series use",
            m.head_symbols.clone(),
        );
        reg.register(
            "head_samples_appended",
            "Samples appended to the head",
            m.appended.clone(),
        );
        reg.register(
            "samples_rejected",
            "Samples rejected: out of order, duplicate, out of bounds or too far in the future",
            m.rejected.clone(),
        );
        reg.register(
            "wal_corruptions",
            "Damaged WAL files (torn tails, damaged records, foreign files) found at start",
            m.wal_corruptions.clone(),
        );
        reg.register(
            "wal_write_failures",
            "WAL writes or fsyncs that failed",
            m.wal_failures.clone(),
        );
        reg.register(
            "wal_size_bytes",
            "Size of the WAL segments",
            m.wal_bytes.clone(),
        );
        reg.register("blocks_loaded", "Blocks on disk", m.blocks.clone());
        reg.register(
            "blocks_index_memory_bytes",
            "Memory the open blocks hold for their indexes and chunk references",
            m.blocks_index_bytes.clone(),
        );
        reg.register(
            "compactions",
            "Block compactions run",
            m.compactions.clone(),
        );
        reg.register(
            "out_of_order_samples_accepted",
            "Out-of-order samples accepted within the window",
            m.ooo_accepted.clone(),
        );
        reg.register(
            "future_samples_rejected",
            "Samples rejected as further ahead of the wall clock than the future tolerance",
            m.future_rejections.clone(),
        );
        reg.register(
            "chunk_read_errors",
            "Block chunk pages that failed to decode in a query (their samples skipped)",
            m.chunk_read_errors.clone(),
        );
        reg.register(
            "blocks_skipped",
            "Blocks that could not be opened (damaged files) and are not served",
            m.blocks_skipped.clone(),
        );
        reg.register(
            "limit_rejections",
            "Samples rejected by series or label limits",
            m.limit_rejections.clone(),
        );
        m
    }

    /// Sets the gauges that describe the open blocks.
    pub(crate) fn set_blocks(&self, blocks: &[std::sync::Arc<crate::block::Block>]) {
        self.blocks.set(blocks.len() as i64);
        self.blocks_index_bytes
            .set(blocks.iter().map(|b| b.heap_bytes() as i64).sum());
    }
}
