//! Prometheus recording and alerting rules for Lookout.
//!
//! - [`mod@file`]: rule files (Prometheus's `rulefmt`): parsing, validation, glob expansion.
//! - [`template`]: Go text/template expansion of alert labels and annotations, with
//!   Prometheus's variables and functions.
//! - [`rule`]: one evaluation of a recording or alerting rule; alert states and timing.
//! - [`group`]: groups of rules evaluated in order, writing through the storage seam.
//! - [`manager`]: loads rule files, runs every group on its interval, reloads, keeps
//!   alert state across restarts and hands alerts to a notifier.
//! - [`packs`]: the rule packs shipped with Lookout (host, PostgreSQL, Redis).
//! - [`unittest`]: promtool's rule unit-test format.
//!
//! Rules read only through [`lookout_storage::Queryable`] (via the PromQL engine) and
//! write only through [`lookout_storage::Appendable`]; they know nothing of HTTP. Time is
//! passed in, so evaluation is deterministic under test.

pub mod backtest;
mod error;
pub mod file;
pub mod group;
pub mod manager;
pub mod packs;
pub mod rule;
pub mod template;
pub mod unittest;

pub use error::{Error, Result};
pub use group::Group;
pub use manager::{AlertSink, Manager, ManagerOptions, ReloadStatus};
pub use rule::{Alert, AlertState, AlertingRule, EvalContext, Health, RecordingRule, Rule};
