//! Lookout's trace store: spans received over OTLP ([`otlp`]: protobuf and JSON, within
//! limits), kept in an append-only, compressed, crash-safe store with an in-memory index
//! ([`store`]) after sensitive attributes are dropped or hashed
//! ([`span::Redaction`]), counted into span metrics ([`metrics`]), and answered in the
//! shapes of Jaeger's HTTP query API ([`jaeger`]), so Jaeger's UI and Grafana's Jaeger
//! data source read them.
//!
//! Nothing here knows about HTTP serving: the server decodes with [`otlp`], appends to a
//! [`TraceStore`], and renders [`jaeger`]'s answers. The store is written by hand
//! because it is the product's core (its format and recovery decide what survives a
//! crash); batches are compressed with zstd and framed with CRC-32 as the tsdb's WAL is.

pub mod jaeger;
pub mod metrics;
pub mod otlp;
pub mod span;
pub mod store;

pub use span::{Span, TraceId};
pub use store::{Options, Query, Stats, TraceStore};

/// What goes wrong with traces.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request or query that cannot be taken (the problem is named).
    #[error("{0}")]
    Invalid(String),
    /// Reading or writing the store failed.
    #[error("trace store: {0}")]
    Io(String),
}

/// `Result` with this crate's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
