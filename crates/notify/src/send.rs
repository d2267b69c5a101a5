//! Delivery: the receiver integrations' wire formats and retries.
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

fn read_secret(file: &str) -> crate::Result<String> {
    std::fs::read_to_string(file)
        .map(|s| s.trim().to_string())
        .map_err(|source| crate::Error::Secret {
            path: file.to_string(),
            source,
        })
}

fn render(
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

/// The Slack message for a notification.
pub fn slack_payload(
    n: &Notification,
    c: &crate::config::SlackConfig,
    external_url: &str,
) -> crate::Result<serde_json::Value> {
    let d = crate::template::data(n, external_url);
    // (JSON key, configured template, default template or none, kept when empty).
    type Field<'a> = (&'a str, &'a Option<String>, Option<&'a str>, bool);
    let fill = |fields: &[Field<'_>]| -> crate::Result<serde_json::Map<String, serde_json::Value>> {
        let mut o = serde_json::Map::new();
        for (key, given, default, always) in fields {
            let v = match (given, default) {
                (_, Some(default)) => render(n, &d, given.as_deref(), default)?,
                (Some(t), None) => n.templates.render(t, &d)?,
                (None, None) => continue,
            };
            if *always || !v.is_empty() {
                o.insert((*key).into(), json!(v));
            }
        }
        Ok(o)
    };
    let mut att = fill(&[
        ("title", &c.title, Some("slack.default.title"), false),
        (
            "title_link",
            &c.title_link,
            Some("slack.default.titlelink"),
            false,
        ),
        ("pretext", &c.pretext, Some("slack.default.pretext"), false),
        ("text", &c.text, Some("slack.default.text"), true),
        (
            "fallback",
            &c.fallback,
            Some("slack.default.fallback"),
            true,
        ),
        (
            "callback_id",
            &c.callback_id,
            Some("slack.default.callbackid"),
            false,
        ),
        ("image_url", &c.image_url, None, false),
        ("thumb_url", &c.thumb_url, None, false),
        ("footer", &c.footer, Some("slack.default.footer"), false),
        ("color", &c.color, Some("slack.default.color"), false),
    ])?;
    att.insert(
        "mrkdwn_in".into(),
        json!(c.mrkdwn_in.clone().unwrap_or_else(|| vec![
            "fallback".into(),
            "pretext".into(),
            "text".into()
        ])),
    );
    let mut req = fill(&[
        ("channel", &c.channel, None, false),
        (
            "username",
            &c.username,
            Some("slack.default.username"),
            false,
        ),
        (
            "icon_emoji",
            &c.icon_emoji,
            Some("slack.default.iconemoji"),
            false,
        ),
        (
            "icon_url",
            &c.icon_url,
            Some("slack.default.iconurl"),
            false,
        ),
    ])?;
    if c.link_names {
        req.insert("link_names".into(), json!(true));
    }
    req.insert(
        "attachments".into(),
        json!([serde_json::Value::Object(att)]),
    );
    Ok(serde_json::Value::Object(req))
}

/// The PagerDuty Events API v2 event for a notification.
pub fn pagerduty_payload(
    n: &Notification,
    c: &crate::config::PagerdutyConfig,
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

/// A rendered email.
#[derive(Debug, Clone, PartialEq)]
pub struct EmailParts {
    /// Subject.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body, when configured.
    pub html: Option<String>,
    /// Other headers.
    pub headers: Vec<(String, String)>,
}

/// The email for a notification.
pub fn email_parts(
    n: &Notification,
    c: &crate::config::EmailConfig,
    external_url: &str,
) -> crate::Result<EmailParts> {
    let d = crate::template::data(n, external_url);
    let mut headers = Vec::new();
    let mut subject = None;
    for (k, v) in &c.headers {
        let v = n.templates.render(v, &d)?;
        if k.eq_ignore_ascii_case("subject") {
            subject = Some(v);
        } else {
            headers.push((k.clone(), v));
        }
    }
    let subject = match subject {
        Some(s) => s,
        None => render(n, &d, None, "email.default.subject")?,
    };
    let text = render(n, &d, c.text.as_deref(), "email.default.text")?;
    let html = c
        .html
        .as_deref()
        .map(|h| n.templates.render(h, &d))
        .transpose()?;
    Ok(EmailParts {
        subject,
        text,
        html,
        headers,
    })
}

async fn send_email(
    n: &Notification,
    c: &crate::config::EmailConfig,
    external_url: &str,
) -> Attempt {
    use lettre::message::{Mailbox, MultiPart, SinglePart, header};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let EmailParts {
        subject,
        text,
        html,
        headers,
    } = match email_parts(n, c, external_url) {
        Ok(p) => p,
        Err(e) => return Attempt::Fatal(format!("rendering the email: {e}")),
    };
    let Some(smarthost) = &c.smarthost else {
        return Attempt::Fatal("no smarthost".into());
    };
    let (host, port) = match smarthost
        .rsplit_once(':')
        .map(|(h, p)| (h, p.parse::<u16>()))
    {
        Some((h, Ok(p))) => (h.to_string(), p),
        _ => return Attempt::Fatal(format!("invalid smarthost {smarthost:?} (use host:port)")),
    };
    let parse = |s: &str| {
        s.trim()
            .parse::<Mailbox>()
            .map_err(|e| format!("invalid address {s:?}: {e}"))
    };
    let build = || -> Result<Message, String> {
        let mut b = Message::builder()
            .from(parse(c.from.as_deref().unwrap_or(""))?)
            .subject(subject.clone());
        for to in
            c.to.as_deref()
                .unwrap_or("")
                .split(',')
                .filter(|t| !t.trim().is_empty())
        {
            b = b.to(parse(to)?);
        }
        for (k, v) in &headers {
            if k.eq_ignore_ascii_case("to") || k.eq_ignore_ascii_case("from") {
                continue;
            }
            b = b.raw_header(header::HeaderValue::new(
                header::HeaderName::new_from_ascii(k.clone())
                    .map_err(|e| format!("header {k:?}: {e}"))?,
                v.clone(),
            ));
        }
        let body = match &html {
            Some(h) => b.multipart(
                MultiPart::alternative()
                    .singlepart(SinglePart::plain(text.clone()))
                    .singlepart(SinglePart::html(h.clone())),
            ),
            None => b.singlepart(SinglePart::plain(text.clone())),
        };
        body.map_err(|e| e.to_string())
    };
    let msg = match build() {
        Ok(m) => m,
        Err(e) => return Attempt::Fatal(e),
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut t = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone()).port(port);
    if port == 465 || c.require_tls.unwrap_or(true) {
        let params = match TlsParameters::new(host.clone()) {
            Ok(p) => p,
            Err(e) => return Attempt::Fatal(format!("TLS for {host}: {e}")),
        };
        t = t.tls(if port == 465 {
            Tls::Wrapper(params)
        } else {
            Tls::Required(params)
        });
    }
    if let Some(user) = &c.auth_username {
        let pass = match (&c.auth_password, &c.auth_password_file) {
            (Some(p), _) => p.clone(),
            (None, Some(f)) => match read_secret(f) {
                Ok(p) => p,
                Err(e) => return Attempt::Fatal(e.to_string()),
            },
            _ => String::new(),
        };
        t = t.credentials(Credentials::new(user.clone(), pass));
    }
    if let Some(h) = &c.hello {
        t = t.hello_name(lettre::transport::smtp::extension::ClientId::Domain(
            h.clone(),
        ));
    }
    match t
        .timeout(Some(Duration::from_secs(30)))
        .build()
        .send(msg)
        .await
    {
        Ok(_) => Attempt::Done,
        Err(e) if e.is_permanent() => Attempt::Fatal(format!("SMTP {smarthost}: {e}")),
        Err(e) => Attempt::Retry(format!("SMTP {smarthost}: {e}")),
    }
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
    // (url, body, timeout) for the HTTP integrations; email is handled on its own.
    let http = match &n.integration {
        Integration::Webhook(w) => {
            let url = match (&w.url, &w.url_file) {
                (Some(u), _) => Ok(u.clone()),
                (None, Some(f)) => read_secret(f),
                (None, None) => Err(crate::Error::Config("no url".into())),
            };
            Some((
                url,
                Ok(webhook_payload(n, external_url, w.max_alerts)),
                w.timeout.map_or(Duration::from_secs(10), |d| d.0),
            ))
        }
        Integration::Slack(c) => {
            let url = match (&c.api_url, &c.api_url_file) {
                (Some(u), _) => Ok(u.clone()),
                (None, Some(f)) => read_secret(f),
                (None, None) => Err(crate::Error::Config("no Slack API URL".into())),
            };
            Some((
                url,
                slack_payload(n, c, external_url),
                Duration::from_secs(10),
            ))
        }
        Integration::Pagerduty(c) => Some((
            c.url
                .clone()
                .ok_or_else(|| crate::Error::Config("no PagerDuty URL".into())),
            pagerduty_payload(n, c, external_url),
            Duration::from_secs(10),
        )),
        Integration::Email(_) => None,
    };
    let started = Instant::now();
    let mut backoff = Duration::from_millis(500);
    let mut attempts = 0;
    let (url, body, timeout) = match http {
        Some((u, b, t)) => (
            Some(u.map_err(|m| err(m.to_string(), 0))?),
            Some(b.map_err(|m| err(format!("rendering: {m}"), 0))?),
            t,
        ),
        None => (None, None, Duration::ZERO),
    };
    loop {
        attempts += 1;
        let res = match (&url, &body, &n.integration) {
            (Some(u), Some(b), _) => post_json(client, u, b, timeout).await,
            (_, _, Integration::Email(c)) => send_email(n, c, external_url).await,
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
