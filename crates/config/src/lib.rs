//! Lookout's configuration: the file as written ([`Config`], YAML with Prometheus's
//! names, every key optional, errors naming the key and its line) and the same
//! configuration validated once into each component's own options ([`Settings`]). The
//! binary, `check config` and the fuzzer read configuration only through here.

mod file;
mod render;
mod settings;

pub use file::*;
pub use settings::{AlertSettings, NotifierSettings, Settings, TracesSettings, storage_options};

use std::path::PathBuf;

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("reading config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The configuration is invalid; the message names the key (and its line).
    #[error("{0}")]
    Invalid(String),
    /// A file's configuration is invalid; the message names the key and its line.
    #[error("{}: {message}", path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}
