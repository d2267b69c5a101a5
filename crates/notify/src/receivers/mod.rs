//! The receiver integrations, one module each (as Alertmanager's `notify/<name>/`): its
//! configuration entry, its checks and global defaults, its wire format. This module
//! holds what they share: the [`Integration`] enum, the HTTP client and delivery with
//! retries ([`deliver`]).
//!
//! Webhook messages are Alertmanager's version 4 payload (template data plus `version`,
//! `groupKey`, `truncatedAlerts`), POSTed as JSON. Slack messages are Alertmanager's
//! (one attachment, fields rendered from the configured or default templates); PagerDuty
//! gets Events API v2 events (`trigger`/`resolve`, `dedup_key` the SHA-256 of the group
//! key, custom details listing the alerts); email goes over SMTP with lettre (STARTTLS
//! when `require_tls`, implicit TLS on port 465). Failed deliveries are retried with
//! exponential backoff (0.5 s doubling to 30 s) until the notification's retry window
//! (its group interval) is over; 4xx answers other than 429 are not retried, as
//! Alertmanager does.

pub mod email;
pub mod pagerduty;
pub mod slack;
pub mod webhook;

use std::time::{Duration, Instant};

use crate::notification::Notification;

pub use email::EmailConfig;
pub use pagerduty::PagerdutyConfig;
pub use slack::SlackConfig;
pub use webhook::WebhookConfig;

/// A receiver integration, with the global defaults filled in.
#[derive(Debug, Clone)]
pub enum Integration {
    /// A webhook.
    Webhook(WebhookConfig),
    /// A Slack incoming webhook.
    Slack(SlackConfig),
    /// PagerDuty Events API v2.
    Pagerduty(PagerdutyConfig),
    /// Email over SMTP.
    Email(Box<EmailConfig>),
}

impl Integration {
    pub(crate) fn send_resolved(&self) -> bool {
        match self {
            Integration::Webhook(w) => w.send_resolved,
            Integration::Slack(s) => s.send_resolved,
            Integration::Pagerduty(p) => p.send_resolved,
            Integration::Email(e) => e.send_resolved,
        }
    }

    /// The integration's kind, as the configuration names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Integration::Webhook(_) => "webhook",
            Integration::Slack(_) => "slack",
            Integration::Pagerduty(_) => "pagerduty",
            Integration::Email(_) => "email",
        }
    }
}

/// The HTTP client notifications go out on (rustls with the ring provider).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(concat!("Lookout/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("an HTTP client with default settings builds")
}

/// What an HTTP integration sends: where, what, and how long one request may take.
pub(crate) struct HttpRequest {
    url: crate::Result<String>,
    body: crate::Result<serde_json::Value>,
    timeout: Duration,
    /// The integration's `http_config` (TLS, authentication, proxy), if it has one.
    http: Option<lookout_http::HttpConfig>,
}

pub(crate) fn yes() -> bool {
    true
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

pub(crate) enum Attempt {
    Done,
    Retry(String),
    Fatal(String),
}

async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
    timeout: Duration,
    http: Option<&lookout_http::HttpConfig>,
) -> Attempt {
    let mut req = client.post(url).timeout(timeout).json(body);
    if let Some(h) = http {
        req = match lookout_http::authorize(req, h) {
            Ok(r) => r,
            Err(e) => return Attempt::Fatal(e.to_string()),
        };
    }
    match req.send().await {
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

pub(crate) fn read_secret(file: &str) -> crate::Result<String> {
    std::fs::read_to_string(file)
        .map(|s| s.trim().to_string())
        .map_err(|source| crate::Error::Secret {
            path: file.to_string(),
            source,
        })
}

pub(crate) fn render(
    n: &Notification,
    data: &lookout_gotmpl::Value,
    given: Option<&str>,
    default: &str,
) -> crate::Result<String> {
    let text = given.map_or_else(
        || format!("{{{{ template \"{default}\" . }}}}"),
        str::to_string,
    );
    n.templates.render(&text, data)
}

/// Delivers one notification, retrying as described above.
pub async fn deliver(
    client: &reqwest::Client,
    n: &Notification,
    external_url: &str,
) -> Result<u32, SendError> {
    let kind = n.integration.kind();
    let err = |message: String, attempts| SendError {
        receiver: n.receiver.clone(),
        kind,
        message,
        attempts,
    };
    // The HTTP integrations' requests; email is handled on its own.
    let http = match &n.integration {
        Integration::Webhook(w) => Some(w.request(n, external_url)),
        Integration::Slack(c) => Some(c.request(n, external_url)),
        Integration::Pagerduty(c) => Some(c.request(n, external_url)),
        Integration::Email(_) => None,
    };
    let started = Instant::now();
    let mut backoff = Duration::from_millis(500);
    let mut attempts = 0;
    let (url, body, timeout, http_config) = match http {
        Some(r) => (
            Some(r.url.map_err(|m| err(m.to_string(), 0))?),
            Some(r.body.map_err(|m| err(format!("rendering: {m}"), 0))?),
            r.timeout,
            r.http,
        ),
        None => (None, None, Duration::ZERO, None),
    };
    // An integration with its own http_config gets its own client (TLS, proxy).
    let own;
    let client = match &http_config {
        Some(h) => {
            own = lookout_http::client(h).map_err(|e| err(e.to_string(), 0))?;
            &own
        }
        None => client,
    };
    loop {
        attempts += 1;
        let res = match (&url, &body, &n.integration) {
            (Some(u), Some(b), _) => post_json(client, u, b, timeout, http_config.as_ref()).await,
            (_, _, Integration::Email(c)) => email::send_email(n, c, external_url).await,
            _ => Attempt::Fatal("nothing to send".into()),
        };
        match res {
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
