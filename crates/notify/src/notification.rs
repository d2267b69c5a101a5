//! One message to deliver ([`Notification`]): which receiver integration, which alerts,
//! and Alertmanager's template data for them. Made by the dispatcher, rendered by the
//! templates, sent by the receivers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use lookout_model::Labels;
use serde_json::json;

use crate::alert::{Alert, fingerprint_hex};
use crate::nflog::Entry;
use crate::receivers::Integration;
use crate::template::Templates;

/// One message to deliver.
#[derive(Debug, Clone)]
pub struct Notification {
    /// Receiver name.
    pub receiver: String,
    /// The integration to deliver through.
    pub integration: Integration,
    /// Alertmanager's group key.
    pub group_key: String,
    /// The group's labels.
    pub group_labels: Labels,
    /// The alerts, sorted as Alertmanager sorts them.
    pub alerts: Vec<Alert>,
    /// When it was decided (ms): alert statuses are as of this time.
    pub now: i64,
    /// How long delivery may be retried.
    pub retry_for: Duration,
    /// The templates messages are rendered with.
    pub templates: Arc<Templates>,
    pub(crate) log: Option<(String, Entry)>,
    /// The aggregation group it was flushed from (none for escalation pages).
    pub(crate) group_id: Option<String>,
}

impl Notification {
    /// Alertmanager's template data (`receiver`, `status`, `alerts`, `groupLabels`,
    /// `commonLabels`, `commonAnnotations`, `externalURL`) as JSON.
    pub fn data(&self, external_url: &str) -> serde_json::Value {
        let now = self.now;
        let alerts: Vec<serde_json::Value> = self
            .alerts
            .iter()
            .map(|a| {
                json!({
                    "status": a.status(now),
                    "labels": json!(a.labels),
                    "annotations": a.annotations,
                    "startsAt": crate::alert::go_time(a.starts_at),
                    // Alertmanager shows no end for an alert still firing.
                    "endsAt": crate::alert::go_time(if a.resolved_at(now) { a.ends_at } else { 0 }),
                    "generatorURL": a.generator_url,
                    "fingerprint": fingerprint_hex(a.fingerprint()),
                })
            })
            .collect();
        let firing = self.alerts.iter().any(|a| !a.resolved_at(now));
        let common_labels = common(self.alerts.iter().map(|a| {
            a.labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect::<BTreeMap<_, _>>()
        }));
        let common_annotations = common(self.alerts.iter().map(|a| a.annotations.clone()));
        json!({
            "receiver": self.receiver,
            "status": if firing { "firing" } else { "resolved" },
            "alerts": alerts,
            "groupLabels": json!(self.group_labels),
            "commonLabels": common_labels,
            "commonAnnotations": common_annotations,
            "externalURL": external_url,
        })
    }
}

/// The pairs every map shares.
fn common(mut maps: impl Iterator<Item = BTreeMap<String, String>>) -> BTreeMap<String, String> {
    let Some(mut acc) = maps.next() else {
        return BTreeMap::new();
    };
    for m in maps {
        acc.retain(|k, v| m.get(k) == Some(v));
    }
    acc
}
