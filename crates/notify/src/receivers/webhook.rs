//! Webhooks: Alertmanager's version 4 payload (template data plus `version`, `groupKey`,
//! `truncatedAlerts`), POSTed as JSON.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::{read_secret, yes};
use crate::config::Dur;
use crate::notification::Notification;

/// `webhook_configs` entry.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookConfig {
    /// Send resolved alerts too (default true).
    #[serde(default = "yes")]
    pub send_resolved: bool,
    /// Where to POST.
    pub url: Option<String>,
    /// File holding the URL.
    pub url_file: Option<String>,
    /// Most alerts per message; 0: all.
    #[serde(default)]
    pub max_alerts: usize,
    /// Per-request timeout.
    pub timeout: Option<Dur>,
    /// HTTP client settings.
    pub http_config: Option<lookout_http::HttpConfig>,
}

impl WebhookConfig {
    /// Alertmanager's checks of one entry.
    pub(crate) fn validate(&self) -> Result<(), String> {
        match (&self.url, &self.url_file) {
            (None, None) => Err("one of url or url_file must be configured".into()),
            (Some(_), Some(_)) => Err("at most one of url & url_file must be configured".into()),
            _ => Ok(()),
        }
    }

    /// Where to POST, the body and the per-request timeout.
    pub(super) fn request(&self, n: &Notification, external_url: &str) -> super::HttpRequest {
        let url = match (&self.url, &self.url_file) {
            (Some(u), _) => Ok(u.clone()),
            (None, Some(f)) => read_secret(f),
            (None, None) => Err(crate::Error::Config("no url".into())),
        };
        super::HttpRequest {
            url,
            body: Ok(webhook_payload(n, external_url, self.max_alerts)),
            timeout: self.timeout.map_or(Duration::from_secs(10), |d| d.0),
            http: self.http_config.clone(),
        }
    }
}

/// The webhook body for a notification.
pub fn webhook_payload(
    n: &Notification,
    external_url: &str,
    max_alerts: usize,
) -> serde_json::Value {
    let mut data = n.data(external_url);
    let mut truncated = 0;
    if max_alerts > 0
        && let Some(a) = data["alerts"].as_array_mut()
        && a.len() > max_alerts
    {
        truncated = a.len() - max_alerts;
        a.truncate(max_alerts);
    }
    let o = data.as_object_mut().expect("template data is an object");
    o.insert("version".into(), json!("4"));
    o.insert("groupKey".into(), json!(n.group_key));
    o.insert("truncatedAlerts".into(), json!(truncated));
    data
}
