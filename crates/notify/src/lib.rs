//! Lookout's notifier: Alertmanager's routing, grouping, inhibition, silences and
//! notification log, plus acknowledgement, escalation and an audit log.
//!
//! Written by hand because it is the product's core: its timing and deduplication
//! decide who gets paged. The layers:
//!
//! - [`config`]: `alertmanager.yml` as Alertmanager reads it; [`timeinterval`];
//!   [`matchers`] (Alertmanager's matcher syntax).
//! - [`route`]: the routing tree.
//! - [`dispatch`]: the state machine (store, groups, pipeline, acks, escalation), driven
//!   by the caller's clock.
//! - [`silence`], [`nflog`], [`audit`], `oncall` (acknowledgements and escalation
//!   levels): state kept on disk, each file replaced durably.
//! - [`notification`]: one message to deliver and its template data.
//! - [`receivers`]: one module per integration (webhook, Slack, PagerDuty, email): its
//!   configuration entry, checks, defaults and wire format; delivery with retries.
//! - [`service`]: the running notifier;
//!   [`forward`]: sending to external Alertmanagers.
//!
//! Nothing here knows about HTTP serving: alerts come in through
//! [`dispatch::Core::put_alerts`], from whoever produces them; [`rules_sink`] adapts
//! Lookout's rules (the one place this crate sees them).

pub mod alert;
pub mod audit;
pub mod config;
pub mod dispatch;
mod error;
pub mod forward;
pub mod history;
pub mod matchers;
pub mod nflog;
pub mod notification;
mod oncall;
pub mod receivers;
pub mod route;
pub mod rules_sink;
pub mod service;
pub mod silence;
mod state;
pub mod template;
pub mod timeinterval;

pub use alert::Alert;
pub use config::Config;
pub use dispatch::{Core, EscalationPolicy, Level, Notification, Options};
pub use error::{Error, Result};
pub use forward::Forwarder;
pub use service::Notifier;
