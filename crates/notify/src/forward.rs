//! Forwarding to external Alertmanagers (Prometheus's `alerting.alertmanagers`): alerts
//! are POSTed to each one's `/api/v2/alerts` as Prometheus sends them, for users who run
//! an Alertmanager cluster. Failures are logged and counted; the next evaluation re-sends
//! what still fires, as with Prometheus.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::alert::{Alert, go_time};

/// One external Alertmanager.
#[derive(Debug, Clone)]
pub struct Target {
    /// Base URL (`http://am:9093` plus any path prefix).
    pub base: String,
    /// Request timeout.
    pub timeout: Duration,
    /// TLS, authentication and proxy (Prometheus's `http_config` fields).
    pub http: lookout_http::HttpConfig,
}

/// Sends alerts to external Alertmanagers.
#[derive(Debug)]
pub struct Forwarder {
    targets: Vec<Target>,
    /// One client per target (their TLS settings differ).
    clients: Vec<reqwest::Client>,
    /// Alerts sent (per target).
    pub sent: AtomicU64,
    /// Failed requests.
    pub errors: AtomicU64,
}

/// The body Prometheus POSTs: `[{labels, annotations, startsAt, endsAt, generatorURL}]`.
pub fn body(alerts: &[Alert]) -> serde_json::Value {
    serde_json::Value::Array(
        alerts
            .iter()
            .map(|a| {
                json!({
                    "labels": a.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect::<std::collections::BTreeMap<_, _>>(),
                    "annotations": a.annotations,
                    "startsAt": go_time(a.starts_at),
                    "endsAt": go_time(a.ends_at),
                    "generatorURL": a.generator_url,
                })
            })
            .collect(),
    )
}

impl Forwarder {
    /// A forwarder to `targets`; a target whose TLS or proxy settings cannot be used is
    /// an error naming them.
    pub fn new(targets: Vec<Target>) -> Result<Self, lookout_http::Error> {
        let clients = targets
            .iter()
            .map(|t| lookout_http::client(&t.http))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            targets,
            clients,
            sent: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        })
    }

    /// The targets.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// Sends `alerts` to every target in turn (each bounded by its timeout).
    pub async fn send(&self, alerts: &[Alert]) {
        if alerts.is_empty() {
            return;
        }
        let b = body(alerts);
        let sends = self.targets.iter().zip(&self.clients).map(|(t, client)| {
            let url = format!("{}/api/v2/alerts", t.base.trim_end_matches('/'));
            let req = lookout_http::authorize(client.post(&url).timeout(t.timeout).json(&b), &t.http);
            async move {
                let req = match req {
                    Ok(r) => r,
                    Err(e) => {
                        self.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(url = %url, error = %e, "Sending alerts to Alertmanager failed");
                        return;
                    }
                };
                match req.send().await {
                    Ok(r) if r.status().is_success() => {
                        self.sent.fetch_add(alerts.len() as u64, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        self.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(url = %url, status = r.status().as_u16(), "Alertmanager refused alerts");
                    }
                    Err(e) => {
                        self.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(url = %url, error = %e, "Sending alerts to Alertmanager failed");
                    }
                }
            }
        });
        for s in sends {
            s.await;
        }
    }
}
