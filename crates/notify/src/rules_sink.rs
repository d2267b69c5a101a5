//! Where Lookout's rules hand their alerts: to this notifier and to external
//! Alertmanagers. Alerts are converted as Prometheus's notifier converts them:
//! `startsAt` is when the alert fired, `endsAt` its resolution or how long the last
//! evaluation holds, external labels are added where the alert has no such label,
//! `alert_relabel_configs` apply, and the generator URL links to the expression.

use std::collections::BTreeMap;
use std::sync::Arc;

use lookout_model::Labels;
use lookout_model::relabel::RelabelConfig;

use crate::{Alert, Forwarder, Notifier};

/// A [`lookout_rules::AlertSink`] that hands the rules' alerts to a notifier and a
/// forwarder (either may be absent).
#[derive(Debug)]
pub struct RuleSink {
    /// Lookout's own notifier.
    pub notifier: Option<Arc<Notifier>>,
    /// External Alertmanagers.
    pub forwarder: Option<Arc<Forwarder>>,
    /// Added where an alert has no such label.
    pub external_labels: BTreeMap<String, String>,
    /// The base of generator URLs.
    pub external_url: String,
    /// `alert_relabel_configs`: an alert they drop is not sent.
    pub relabel: Vec<RelabelConfig>,
    /// Where forwarding runs.
    pub runtime: tokio::runtime::Handle,
}

impl RuleSink {
    /// The alert as the notifier and Alertmanager take it, or `None` when relabelling
    /// drops it.
    pub fn convert(&self, a: &lookout_rules::Alert, expr: &str) -> Option<Alert> {
        let mut labels = a.labels.clone();
        for (k, v) in &self.external_labels {
            if labels.get(k).is_none() {
                labels = labels.with(k, v);
            }
        }
        let labels: Labels = lookout_model::relabel::process(&labels, &self.relabel)?;
        Some(Alert {
            labels,
            annotations: a.annotations.clone(),
            starts_at: a.fired_at.unwrap_or(a.active_at),
            ends_at: a.resolved_at.unwrap_or(a.valid_until),
            generator_url: format!(
                "{}/graph?g0.expr={}&g0.tab=1",
                self.external_url.trim_end_matches('/'),
                lookout_gotmpl::funcs::query_escape(expr)
            ),
            updated_at: 0,
        })
    }
}

impl lookout_rules::AlertSink for RuleSink {
    fn send(&self, alerts: Vec<(lookout_rules::Alert, String)>) {
        let out: Vec<Alert> = alerts
            .iter()
            .filter_map(|(a, e)| self.convert(a, e))
            .collect();
        if out.is_empty() {
            return;
        }
        if let Some(f) = &self.forwarder {
            let f = Arc::clone(f);
            let batch = out.clone();
            self.runtime.spawn(async move { f.send(&batch).await });
        }
        if let Some(n) = &self.notifier {
            n.put_alerts(out);
        }
    }
}
