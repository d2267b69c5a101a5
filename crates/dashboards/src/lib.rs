//! Dashboards in Grafana's own model.
//!
//! This crate owns dashboard JSON before it reaches a browser: reading it (files named by
//! `dashboards.paths`, dashboards imported through the API, and the set shipped in the
//! binary), checking it within limits (size, nesting, panel count, a usable `uid` and
//! `title`), bringing legacy schemas onto the model the web UI renders (schemaVersion
//! below 16: `rows` of `span`-wide panels become `row` panels with `gridPos`), and the
//! [`Library`] the server lists and serves, re-reading files when they change. Rendering
//! happens in the browser (the server crate's `ui/js/dashboard`), so nothing here knows
//! about HTTP or PromQL.
//!
//! A dashboard that cannot be read costs only itself: it is listed with its error and the
//! others still load.
//!
//! ```
//! let d = lookout_dashboards::normalize(
//!     br#"{"title": "Old", "rows": [{"title": "CPU", "panels": [{"type": "graph", "span": 6}]}]}"#,
//!     "old",
//!     &lookout_dashboards::Limits::default(),
//! )
//! .unwrap();
//! assert_eq!(d["uid"], "old");
//! assert_eq!(d["panels"][0]["type"], "row");
//! assert_eq!(d["panels"][1]["gridPos"]["w"], 12);
//! ```

mod library;
mod model;

pub use library::{DashboardsOptions, Entry, Library, Source};
pub use model::{Limits, normalize};

/// What can go wrong reading or storing a dashboard.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The JSON is not a usable dashboard (the message names the problem).
    #[error("invalid dashboard: {0}")]
    Invalid(String),
    /// The dashboard is larger than the limit.
    #[error("dashboard is {size} bytes, more than the limit of {limit}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The uid belongs to a dashboard that cannot be replaced through the API.
    #[error("dashboard {uid:?} is provisioned from {path} and cannot be replaced by an import")]
    Provisioned {
        /// The uid.
        uid: String,
        /// The file it comes from.
        path: String,
    },
    /// Imports are not possible (no directory to keep them in) or the library is full.
    #[error("{0}")]
    Unavailable(String),
    /// A `dashboards.paths` pattern is not a valid glob.
    #[error("dashboards.paths: invalid pattern {pattern:?}: {message}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// What is wrong with it.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

/// This crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
