//! The notifier's error type. The HTTP layer maps its variants to statuses: a bad
//! request is 400, something missing 404, a change that could not be saved 500.

use std::path::PathBuf;

/// One failure of the notifier.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `alertmanager.yml` (or Lookout's escalation section) is invalid; worded as
    /// Alertmanager words it.
    #[error("{0}")]
    Config(String),
    /// A matcher (or a braced list of them) that does not parse.
    #[error("bad {what} {text:?}: {problem}")]
    Matcher {
        /// `matcher` or `matchers`.
        what: &'static str,
        /// The text as given.
        text: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A request the notifier refuses (an invalid silence or acknowledgement, a limit).
    #[error("{0}")]
    Invalid(String),
    /// The silence or alert a request names does not exist (or is not acknowledged).
    #[error("{0}")]
    NotFound(String),
    /// A state file that cannot be read or does not parse.
    #[error("{}: {message}", path.display())]
    StateFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A change could not be saved; nothing changed.
    #[error("saving {what}{}: {source}", path.display())]
    Save {
        /// What was being saved, with its preposition (`silences to `), or empty.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A secret file (`*_file` settings) that cannot be read.
    #[error("reading {path}: {source}")]
    Secret {
        /// The file as configured.
        path: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A notification template that does not parse or failed to run.
    #[error("{0}")]
    Template(#[from] lookout_gotmpl::Error),
}

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
