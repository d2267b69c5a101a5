//! Slack incoming webhooks: Alertmanager's message (one attachment, fields rendered from
//! the configured or default templates).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::{read_secret, render};
use crate::config::Global;
use crate::notification::Notification;

/// `slack_configs` entry (incoming-webhook style).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SlackConfig {
    /// Send resolved alerts too (default false).
    #[serde(default)]
    pub send_resolved: bool,
    /// Webhook URL (default: the global one).
    pub api_url: Option<String>,
    /// File holding the webhook URL.
    pub api_url_file: Option<String>,
    /// Channel.
    pub channel: Option<String>,
    /// Bot user name.
    pub username: Option<String>,
    /// Attachment colour (template).
    pub color: Option<String>,
    /// Title (template).
    pub title: Option<String>,
    /// Title link (template).
    pub title_link: Option<String>,
    /// Pretext (template).
    pub pretext: Option<String>,
    /// Text (template).
    pub text: Option<String>,
    /// Footer (template).
    pub footer: Option<String>,
    /// Fallback text (template).
    pub fallback: Option<String>,
    /// Callback id (template).
    pub callback_id: Option<String>,
    /// Emoji icon.
    pub icon_emoji: Option<String>,
    /// Icon URL.
    pub icon_url: Option<String>,
    /// Image URL.
    pub image_url: Option<String>,
    /// Thumbnail URL.
    pub thumb_url: Option<String>,
    /// Link channel names.
    #[serde(default)]
    pub link_names: bool,
    /// Fields rendered as markdown.
    pub mrkdwn_in: Option<Vec<String>>,
    /// HTTP client settings.
    pub http_config: Option<lookout_http::HttpConfig>,
    /// Slack options Lookout does not render yet (fields, actions, …).
    #[serde(flatten)]
    pub other: BTreeMap<String, yaml_serde::Value>,
}

impl SlackConfig {
    /// Alertmanager's checks of one entry, with the global settings it falls back on.
    pub(crate) fn validate(&self, g: &Global) -> Result<(), String> {
        if self.api_url.is_some() && self.api_url_file.is_some() {
            return Err("at most one of api_url & api_url_file must be configured".into());
        }
        if self.api_url.is_none()
            && self.api_url_file.is_none()
            && g.slack_api_url.is_none()
            && g.slack_api_url_file.is_none()
        {
            return Err("no global Slack API URL set either inline or in a file".into());
        }
        Ok(())
    }

    /// This entry with the global API URL filled in where it sets none.
    pub(crate) fn with_defaults(&self, g: &Global) -> Self {
        let mut s = self.clone();
        if s.api_url.is_none() && s.api_url_file.is_none() {
            s.api_url.clone_from(&g.slack_api_url);
            s.api_url_file.clone_from(&g.slack_api_url_file);
        }
        s
    }

    /// Where to POST, the body and the per-request timeout.
    pub(super) fn request(&self, n: &Notification, external_url: &str) -> super::HttpRequest {
        let url = match (&self.api_url, &self.api_url_file) {
            (Some(u), _) => Ok(u.clone()),
            (None, Some(f)) => read_secret(f),
            (None, None) => Err(crate::Error::Config("no Slack API URL".into())),
        };
        super::HttpRequest {
            url,
            body: slack_payload(n, self, external_url),
            timeout: Duration::from_secs(10),
            http: self.http_config.clone(),
        }
    }
}

/// The Slack message for a notification.
pub fn slack_payload(
    n: &Notification,
    c: &SlackConfig,
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
