//! The rules crate's error type: what can go wrong reading rule files, building rules
//! and evaluating them. Validation that reports every problem of a file at once (as
//! promtool does) returns lists of messages instead; this type is for one failure.

/// One failure of the rules crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A backtest that cannot run as asked.
    #[error("backtest: {0}")]
    Backtest(String),
    /// A rule file that is not YAML in Prometheus's rule-file format.
    #[error("{0}")]
    Format(#[from] yaml_serde::Error),
    /// A `rule_files` pattern that is not a valid glob.
    #[error("invalid rule file pattern {pattern:?}: {message}")]
    Pattern {
        /// The pattern as configured.
        pattern: String,
        /// What is wrong with it.
        message: String,
    },
    /// An expression that does not parse, or whose evaluation failed.
    #[error("{0}")]
    Query(#[from] lookout_promql::Error),
    /// A rule evaluated to something other than a vector or a scalar.
    #[error("rule result is not a vector or scalar: {0}")]
    ResultType(&'static str),
    /// Two output series (or alerts) of a rule have the same labels once the rule's
    /// labels are applied; says whose labels (`rule`, `alert`).
    #[error("vector contains metrics with the same labelset after applying {0} labels")]
    DuplicateLabelset(&'static str),
    /// A group's `limit` was exceeded by a recording rule's series.
    #[error("exceeded limit of {limit} with {found} series")]
    SeriesLimit {
        /// The group's limit.
        limit: usize,
        /// Series the rule produced.
        found: usize,
    },
    /// A group's `limit` was exceeded by an alerting rule's alerts.
    #[error("exceeded limit of {limit} with {found} alerts")]
    AlertLimit {
        /// The group's limit.
        limit: usize,
        /// Alerts the rule produced.
        found: usize,
    },
    /// A label or annotation template that does not parse or failed to run.
    #[error("{0}")]
    Template(#[from] lookout_gotmpl::Error),
    /// A template's `query` function is not available where it was called.
    #[error("query is not available here")]
    NoQuery,
    /// A unit-test file's `start_timestamp` that is neither a number nor RFC 3339.
    #[error("invalid start_timestamp {0}")]
    StartTimestamp(String),
}

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
