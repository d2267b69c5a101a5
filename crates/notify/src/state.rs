//! The notifier's state files (silences, notification log, acknowledgements and
//! escalation levels): JSON read at start, replaced durably on every change. One
//! reader and one writer for all of them.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// Reads `path`; `None` when it does not exist. A file that cannot be read or does not
/// parse is an error naming it.
pub(crate) fn load<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let problem = |message: String| Error::StateFile {
        path: path.to_path_buf(),
        message,
    };
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| problem(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(problem(e.to_string())),
    }
}

/// Replaces `path` with `value` durably (file and directory fsynced); `what` names the
/// state in the error and the warning logged on failure (`silences to `, or empty).
pub(crate) fn save<T: Serialize>(path: &Path, value: &T, what: &'static str) -> Result<()> {
    serde_json::to_vec(value)
        .map_err(std::io::Error::other)
        .and_then(|b| lookout_model::durable::replace_file(path, &b))
        .map_err(|source| {
            tracing::warn!(path = %path.display(), error = %source, "Saving notifier state failed");
            Error::Save {
                what,
                path: path.to_path_buf(),
                source,
            }
        })
}
