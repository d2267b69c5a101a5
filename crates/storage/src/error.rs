//! Errors of the storage seam, shared by every implementation.

/// A storage error. Sample-level variants are matched on by callers (scrapers count them).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The sample is older than the series' newest sample.
    #[error("out of order sample for series {series}: timestamp {t} is before the newest {last_t}")]
    OutOfOrder {
        /// The series, formatted.
        series: String,
        /// Rejected timestamp.
        t: i64,
        /// Newest stored timestamp.
        last_t: i64,
    },
    /// A sample exists at this timestamp with a different value.
    #[error("duplicate sample for timestamp {t} of series {series} with a different value")]
    DuplicateSample {
        /// The series, formatted.
        series: String,
        /// The timestamp.
        t: i64,
    },
    /// The sample is older than anything the store still accepts (already written to a
    /// block, or outside the out-of-order window).
    #[error(
        "out of bounds sample for series {series}: timestamp {t} is before the earliest accepted {min_t}"
    )]
    OutOfBounds {
        /// The series, formatted.
        series: String,
        /// Rejected timestamp.
        t: i64,
        /// Earliest accepted timestamp.
        min_t: i64,
    },
    /// The sample is further in the future than the store accepts: one such sample would
    /// otherwise move the head's time range past the present.
    #[error(
        "sample for series {series} is too far in the future: timestamp {t} is after the latest accepted {max_t} (now + the future tolerance)"
    )]
    TooFarInFuture {
        /// The series, formatted.
        series: String,
        /// Rejected timestamp.
        t: i64,
        /// Latest accepted timestamp.
        max_t: i64,
    },
    /// A configured limit was reached.
    #[error("{what} limit of {limit} exceeded: {detail}")]
    LimitExceeded {
        /// Which limit (`series`, `labels per series`, `label name length`, …).
        what: &'static str,
        /// The configured limit.
        limit: usize,
        /// What exceeded it.
        detail: String,
    },
    /// The label set is unusable (empty, empty name, duplicate name).
    #[error("invalid labels {labels}: {reason}")]
    InvalidLabels {
        /// The label set, formatted.
        labels: String,
        /// What is wrong.
        reason: String,
    },
    /// The exemplar cannot be stored: its labels are invalid or too long, it is older
    /// than the series' newest exemplar, or its series has no sample.
    #[error("exemplar for series {series} refused: {reason}")]
    InvalidExemplar {
        /// The series, formatted.
        series: String,
        /// What is wrong.
        reason: String,
    },
    /// An I/O failure while reading or writing the store.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The store was closed.
    #[error("storage is closed")]
    Closed,
    /// The store does not take this kind of sample.
    #[error("{0} are not stored by this store yet")]
    Unsupported(&'static str),
}

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
