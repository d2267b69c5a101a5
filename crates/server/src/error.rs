//! The server crate's error type: work the query gate did not run, and web
//! configurations that cannot be used.

use std::path::PathBuf;

/// One failure of the server crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server is shutting down (the query gate runs nothing more).
    #[error("Lookout is shutting down")]
    ShuttingDown,
    /// The work panicked; the panic was contained.
    #[error("internal error: {0}")]
    Panicked(String),
    /// A web configuration file (or a file it names) could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The web configuration is not YAML in the exporter-toolkit format.
    #[error("{0}")]
    Format(String),
    /// A web configuration setting that is wrong or that Lookout cannot honour; names
    /// the key.
    #[error("{key}: {message}")]
    Invalid {
        /// The key, e.g. `tls_server_config.min_version`.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}
