//! Delivery: the receiver integrations' wire formats and retries.
//!
//! Webhook messages are Alertmanager's version 4 payload (template data plus `version`,
//! `groupKey`, `truncatedAlerts`), POSTed as JSON. Failed deliveries are retried with
//! exponential backoff (0.5 s doubling to 30 s) until the notification's retry window
//! (its group interval) is over; 4xx answers other than 429 are not retried, as
//! Alertmanager does.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::dispatch::{Integration, Notification};

/// The HTTP client notifications go out on (rustls with the ring provider).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(concat!("Lookout/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("an HTTP client with default settings builds")
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

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
#[error("{receiver}/{kind}: {message}")]
pub struct SendError {
    /// Receiver name.
    pub receiver: String,
    /// Integration kind.
    pub kind: &'static str,
    /// What went wrong (last attempt).
    pub message: String,
    /// Attempts made.
    pub attempts: u32,
}

enum Attempt {
    Done,
    Retry(String),
    Fatal(String),
}

async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
    timeout: Duration,
) -> Attempt {
    match client.post(url).timeout(timeout).json(body).send().await {
        Ok(r) if r.status().is_success() => Attempt::Done,
        Ok(r) => {
            let st = r.status();
            let text = r.text().await.unwrap_or_default();
            let msg = format!(
                "unexpected status code {} from {url}: {}",
                st.as_u16(),
                text.trim()
            );
            if st.is_client_error() && st.as_u16() != 429 {
                Attempt::Fatal(msg)
            } else {
                Attempt::Retry(msg)
            }
        }
        Err(e) => Attempt::Retry(format!("POST {url}: {e}")),
    }
}

fn read_secret(file: &str) -> Result<String, String> {
    std::fs::read_to_string(file)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("reading {file}: {e}"))
}

/// Delivers one notification, retrying as described above.
pub async fn deliver(
    client: &reqwest::Client,
    n: &Notification,
    external_url: &str,
) -> Result<u32, SendError> {
    let (kind, url, body, timeout) = match &n.integration {
        Integration::Webhook(w) => {
            let url = match (&w.url, &w.url_file) {
                (Some(u), _) => Ok(u.clone()),
                (None, Some(f)) => read_secret(f),
                (None, None) => Err("no url".to_string()),
            };
            (
                "webhook",
                url,
                webhook_payload(n, external_url, w.max_alerts),
                w.timeout.map_or(Duration::from_secs(10), |d| d.0),
            )
        }
    };
    let err = |message: String, attempts| SendError {
        receiver: n.receiver.clone(),
        kind,
        message,
        attempts,
    };
    let url = url.map_err(|m| err(m, 0))?;
    let started = Instant::now();
    let mut backoff = Duration::from_millis(500);
    let mut attempts = 0;
    loop {
        attempts += 1;
        match post_json(client, &url, &body, timeout).await {
            Attempt::Done => return Ok(attempts),
            Attempt::Fatal(m) => return Err(err(m, attempts)),
            Attempt::Retry(m) => {
                if started.elapsed() + backoff > n.retry_for {
                    return Err(err(m, attempts));
                }
                tracing::debug!(receiver = %n.receiver, attempt = attempts, error = %m, "Notification failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}
