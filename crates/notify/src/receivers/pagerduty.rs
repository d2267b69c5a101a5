//! PagerDuty Events API v2: `trigger`/`resolve` events, `dedup_key` the SHA-256 of the
//! group key, custom details listing the alerts.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::{read_secret, render, yes};
use crate::config::Global;
use crate::notification::Notification;

/// `pagerduty_configs` entry (Events API v2).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PagerdutyConfig {
    /// Send resolved alerts too (default true).
    #[serde(default = "yes")]
    pub send_resolved: bool,
    /// Events API v2 routing key.
    pub routing_key: Option<String>,
    /// File holding the routing key.
    pub routing_key_file: Option<String>,
    /// Events API v1 service key (not supported: v2 only).
    pub service_key: Option<String>,
    /// File holding the service key.
    pub service_key_file: Option<String>,
    /// Events API URL (default: the global one).
    pub url: Option<String>,
    /// Client name.
    pub client: Option<String>,
    /// Client URL.
    pub client_url: Option<String>,
    /// Summary (template).
    pub description: Option<String>,
    /// Custom details (templates).
    pub details: Option<BTreeMap<String, String>>,
    /// Severity (template).
    pub severity: Option<String>,
    /// Source (template).
    pub source: Option<String>,
    /// Class (template).
    pub class: Option<String>,
    /// Component (template).
    pub component: Option<String>,
    /// Group (template).
    pub group: Option<String>,
    /// HTTP client settings.
    pub http_config: Option<lookout_http::HttpConfig>,
    /// Options Lookout does not send yet (images, links).
    #[serde(flatten)]
    pub other: BTreeMap<String, yaml_serde::Value>,
}

impl PagerdutyConfig {
    /// Alertmanager's checks of one entry.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.routing_key.is_none()
            && self.routing_key_file.is_none()
            && self.service_key.is_none()
            && self.service_key_file.is_none()
        {
            return Err("missing service or routing key in PagerDuty config".into());
        }
        Ok(())
    }

    /// This entry with the global Events API URL filled in where it sets none.
    pub(crate) fn with_defaults(&self, g: &Global) -> Self {
        let mut p = self.clone();
        if p.url.is_none() {
            p.url = Some(g.pagerduty_url.clone());
        }
        p
    }

    /// Where to POST, the body and the per-request timeout.
    pub(super) fn request(&self, n: &Notification, external_url: &str) -> super::HttpRequest {
        super::HttpRequest {
            url: self
                .url
                .clone()
                .ok_or_else(|| crate::Error::Config("no PagerDuty URL".into())),
            body: pagerduty_payload(n, self, external_url),
            timeout: Duration::from_secs(10),
            http: self.http_config.clone(),
        }
    }
}

/// The PagerDuty Events API v2 event for a notification.
pub fn pagerduty_payload(
    n: &Notification,
    c: &PagerdutyConfig,
    external_url: &str,
) -> crate::Result<serde_json::Value> {
    use sha2::Digest;
    let d = crate::template::data(n, external_url);
    let r = |given: &Option<String>, default: &str| render(n, &d, given.as_deref(), default);
    let key = match (&c.routing_key, &c.routing_key_file) {
        (Some(k), _) => k.clone(),
        (None, Some(f)) => read_secret(f)?,
        _ => return Err(crate::Error::Config("no routing key".into())),
    };
    let resolved = n.alerts.iter().all(|a| a.resolved_at(n.now));
    let mut summary = r(&c.description, "pagerduty.default.description")?;
    if summary.chars().count() > 1024 {
        summary = summary.chars().take(1023).collect::<String>() + "…";
    }
    let details: serde_json::Map<String, serde_json::Value> = match &c.details {
        Some(m) => m
            .iter()
            .map(|(k, v)| Ok((k.clone(), json!(n.templates.render(v, &d)?))))
            .collect::<crate::Result<_>>()?,
        None => [
            (
                "firing",
                "{{ template \"pagerduty.default.instances\" .Alerts.Firing }}",
            ),
            (
                "resolved",
                "{{ template \"pagerduty.default.instances\" .Alerts.Resolved }}",
            ),
            ("num_firing", "{{ .Alerts.Firing | len }}"),
            ("num_resolved", "{{ .Alerts.Resolved | len }}"),
        ]
        .iter()
        .map(|(k, t)| Ok((k.to_string(), json!(n.templates.render(t, &d)?))))
        .collect::<crate::Result<_>>()?,
    };
    let dedup: String = sha2::Sha256::digest(n.group_key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut payload = json!({
        "summary": summary,
        "source": r(&c.source, "pagerduty.default.client")?,
        "severity": c.severity.as_deref().map_or(Ok("error".to_string()), |s| n.templates.render(s, &d))?,
        "custom_details": details,
    });
    for (k, v) in [
        ("class", &c.class),
        ("component", &c.component),
        ("group", &c.group),
    ] {
        if let Some(t) = v {
            let v = n.templates.render(t, &d)?;
            if !v.is_empty() {
                payload[k] = json!(v);
            }
        }
    }
    Ok(json!({
        "routing_key": key,
        "dedup_key": dedup,
        "event_action": if resolved { "resolve" } else { "trigger" },
        "payload": payload,
        "client": r(&c.client, "pagerduty.default.client")?,
        "client_url": r(&c.client_url, "pagerduty.default.clientURL")?,
    }))
}
