//! Errors of query parsing and evaluation.

/// A query failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The expression does not parse (Prometheus's `bad_data`).
    #[error("{0}")]
    Parse(String),
    /// Evaluation failed (Prometheus's `execution`).
    #[error("{0}")]
    Execution(String),
    /// The query ran past its timeout.
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    /// The query would load more samples than allowed.
    #[error("query processing would load too many samples into memory in {0}")]
    TooManySamples(&'static str),
    /// The query would hold more bytes than allowed (`query.max_memory`).
    #[error("query processing would use more than {limit} bytes of memory in {stage}")]
    TooMuchMemory {
        /// Where it was found.
        stage: &'static str,
        /// The limit in bytes.
        limit: usize,
    },
    /// The query was cancelled (the client went away).
    #[error("query was canceled in {0}")]
    Canceled(&'static str),
    /// Reading from storage failed.
    #[error("storage: {0}")]
    Storage(#[from] lookout_storage::Error),
}

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn exec<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::Execution(msg.into()))
}
