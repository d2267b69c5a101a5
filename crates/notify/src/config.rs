//! Alertmanager's configuration file (`alertmanager.yml`), read as it is.
//!
//! Parsed: `global` (resolve timeout, SMTP, Slack and PagerDuty defaults), `route` (tree
//! with `match`, `match_re`, `matchers`, `group_by` incl. `...`, `group_wait`,
//! `group_interval`, `repeat_interval`, `continue`, `mute_time_intervals`,
//! `active_time_intervals`), `inhibit_rules`, `time_intervals`/`mute_time_intervals`,
//! `templates`, and `receivers` with `webhook_configs`, `slack_configs`,
//! `pagerduty_configs` and `email_configs`. Receivers of other kinds (OpsGenie,
//! VictorOps, …) parse, so a valid file stays valid, and are reported by
//! [`Config::unsupported`]: the notifier refuses to start with them rather than drop
//! their notifications. Validation follows Alertmanager's and uses its wording.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use lookout_model::{MatchOp, Matcher};
use serde::Deserialize;
use serde::de::{self, Deserializer};

use crate::Error;
use crate::matchers::parse_matcher;

/// A duration in Alertmanager's notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "0" {
            return Ok(Self(Duration::ZERO));
        }
        lookout_model::parse_duration(&s)
            .map(Self)
            .map_err(de::Error::custom)
    }
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Defaults for every receiver.
    #[serde(default)]
    pub global: Global,
    /// Template files (globs).
    #[serde(default)]
    pub templates: Vec<String>,
    /// The routing tree.
    #[serde(default)]
    pub route: Option<RouteSpec>,
    /// Receivers, by name.
    #[serde(default)]
    pub receivers: Vec<Receiver>,
    /// Inhibition rules.
    #[serde(default)]
    pub inhibit_rules: Vec<InhibitRuleSpec>,
    /// Named time intervals (the older name).
    #[serde(default)]
    pub mute_time_intervals: Vec<NamedInterval>,
    /// Named time intervals.
    #[serde(default)]
    pub time_intervals: Vec<NamedInterval>,
    /// Alertmanager's `tracing:` section (kept, unused).
    #[serde(default)]
    pub tracing: Option<yaml_serde::Value>,
}

/// `global:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Global {
    /// How long an alert without `endsAt` stays firing after it was last received.
    pub resolve_timeout: Dur,
    /// Default sender address.
    pub smtp_from: Option<String>,
    /// Default SMTP server (`host:port`).
    pub smtp_smarthost: Option<String>,
    /// EHLO host name.
    pub smtp_hello: Option<String>,
    /// SMTP user.
    pub smtp_auth_username: Option<String>,
    /// SMTP password.
    pub smtp_auth_password: Option<String>,
    /// SMTP password file.
    pub smtp_auth_password_file: Option<String>,
    /// SMTP CRAM-MD5 secret.
    pub smtp_auth_secret: Option<String>,
    /// SMTP CRAM-MD5 secret file.
    pub smtp_auth_secret_file: Option<String>,
    /// SMTP identity.
    pub smtp_auth_identity: Option<String>,
    /// Require STARTTLS.
    pub smtp_require_tls: bool,
    /// TLS settings of every email receiver that has none of its own.
    pub smtp_tls_config: Option<lookout_http::TlsConfig>,
    /// Slack webhook URL.
    pub slack_api_url: Option<String>,
    /// File holding the Slack webhook URL.
    pub slack_api_url_file: Option<String>,
    /// PagerDuty Events API URL.
    pub pagerduty_url: String,
    /// HTTP client settings (parsed, not all applied).
    pub http_config: Option<lookout_http::HttpConfig>,
    /// Other receivers' globals (OpsGenie, WeChat, …): kept so files stay valid.
    #[serde(flatten)]
    pub other: BTreeMap<String, yaml_serde::Value>,
}

impl Default for Global {
    fn default() -> Self {
        Self {
            resolve_timeout: Dur(Duration::from_secs(300)),
            smtp_from: None,
            smtp_smarthost: None,
            smtp_hello: None,
            smtp_auth_username: None,
            smtp_auth_password: None,
            smtp_auth_password_file: None,
            smtp_auth_secret: None,
            smtp_auth_secret_file: None,
            smtp_auth_identity: None,
            smtp_require_tls: true,
            smtp_tls_config: None,
            slack_api_url: None,
            slack_api_url_file: None,
            pagerduty_url: "https://events.pagerduty.com/v2/enqueue".into(),
            http_config: None,
            other: BTreeMap::new(),
        }
    }
}

/// One node of the routing tree as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// Receiver for alerts this route takes (inherited).
    pub receiver: Option<String>,
    /// Labels alerts are grouped by (`...`: every label); inherited.
    pub group_by: Option<Vec<String>>,
    /// Keep matching siblings after this one matched.
    #[serde(default, rename = "continue")]
    pub continue_: bool,
    /// Legacy equality matchers.
    #[serde(default, rename = "match")]
    pub match_: BTreeMap<String, String>,
    /// Legacy regex matchers.
    #[serde(default)]
    pub match_re: BTreeMap<String, Option<String>>,
    /// Matchers (`name="value"`, …).
    #[serde(default)]
    pub matchers: Vec<String>,
    /// Wait before the first notification of a new group.
    pub group_wait: Option<Dur>,
    /// Wait between notifications about a changed group.
    pub group_interval: Option<Dur>,
    /// Wait before re-sending an unchanged group.
    pub repeat_interval: Option<Dur>,
    /// Time intervals during which this route sends nothing.
    #[serde(default)]
    pub mute_time_intervals: Vec<String>,
    /// Time intervals outside which this route sends nothing.
    #[serde(default)]
    pub active_time_intervals: Vec<String>,
    /// Child routes.
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
}

/// A receiver and its integrations.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Receiver {
    /// Unique name.
    pub name: String,
    /// Webhooks.
    #[serde(default)]
    pub webhook_configs: Vec<WebhookConfig>,
    /// Slack incoming webhooks.
    #[serde(default)]
    pub slack_configs: Vec<SlackConfig>,
    /// PagerDuty Events API v2.
    #[serde(default)]
    pub pagerduty_configs: Vec<PagerdutyConfig>,
    /// Email over SMTP.
    #[serde(default)]
    pub email_configs: Vec<EmailConfig>,
    /// Integrations Lookout does not send to yet (`opsgenie_configs`, …).
    #[serde(flatten)]
    pub other: BTreeMap<String, yaml_serde::Value>,
}

pub use crate::receivers::email::EmailConfig;
pub use crate::receivers::pagerduty::PagerdutyConfig;
pub use crate::receivers::slack::SlackConfig;
pub use crate::receivers::webhook::WebhookConfig;

/// An inhibition rule as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitRuleSpec {
    /// Legacy source equality matchers.
    #[serde(default)]
    pub source_match: BTreeMap<String, String>,
    /// Legacy source regex matchers.
    #[serde(default)]
    pub source_match_re: BTreeMap<String, Option<String>>,
    /// Source matchers.
    #[serde(default)]
    pub source_matchers: Vec<String>,
    /// Legacy target equality matchers.
    #[serde(default)]
    pub target_match: BTreeMap<String, String>,
    /// Legacy target regex matchers.
    #[serde(default)]
    pub target_match_re: BTreeMap<String, Option<String>>,
    /// Target matchers.
    #[serde(default)]
    pub target_matchers: Vec<String>,
    /// Labels that must be equal in source and target.
    #[serde(default)]
    pub equal: Vec<String>,
}

/// A named list of time intervals.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedInterval {
    /// Name routes refer to.
    pub name: String,
    /// The intervals; the name is active when any is.
    #[serde(default)]
    pub time_intervals: Vec<crate::timeinterval::TimeInterval>,
}

/// A configuration problem, worded as Alertmanager words it; public functions return it
/// as [`Error::Config`].
type Problem = String;

fn matchers_of(
    eq: &BTreeMap<String, String>,
    re: &BTreeMap<String, Option<String>>,
    list: &[String],
) -> Result<Vec<Matcher>, Problem> {
    let mut out = Vec::new();
    for (k, v) in eq {
        check_label_name(k)?;
        out.push(Matcher::equal(k, v));
    }
    for (k, v) in re {
        check_label_name(k)?;
        let v = v
            .as_deref()
            .ok_or_else(|| format!("invalid regular expression for label {k:?}: empty"))?;
        out.push(
            Matcher::new(MatchOp::Regex, k, v)
                .map_err(|e| format!("invalid regular expression for label {k:?}: {e}"))?,
        );
    }
    for m in list {
        out.push(parse_matcher(m).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

fn check_label_name(k: &str) -> Result<(), Problem> {
    if lookout_model::is_valid_label_name(k) {
        Ok(())
    } else {
        Err(format!("{k:?} is not a valid label name"))
    }
}

impl RouteSpec {
    /// This route's matchers.
    pub fn all_matchers(&self) -> crate::Result<Vec<Matcher>> {
        matchers_of(&self.match_, &self.match_re, &self.matchers).map_err(Error::Config)
    }
}

impl InhibitRuleSpec {
    /// Source and target matchers.
    pub fn all_matchers(&self) -> crate::Result<(Vec<Matcher>, Vec<Matcher>)> {
        let source = matchers_of(
            &self.source_match,
            &self.source_match_re,
            &self.source_matchers,
        );
        let target = matchers_of(
            &self.target_match,
            &self.target_match_re,
            &self.target_matchers,
        );
        Ok((
            source.map_err(Error::Config)?,
            target.map_err(Error::Config)?,
        ))
    }
}

impl Config {
    /// Parses and validates a file's text.
    pub fn parse(text: &str) -> crate::Result<Self> {
        let c: Config = yaml_serde::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        c.validate().map_err(Error::Config)?;
        Ok(c)
    }

    /// Reads, parses and validates a file.
    pub fn load(path: &std::path::Path) -> crate::Result<Self> {
        let named = |e: &dyn std::fmt::Display| Error::Config(format!("{}: {e}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| named(&e))?;
        Self::parse(&text).map_err(|e| named(&e))
    }

    /// Every named time interval.
    pub fn intervals(&self) -> impl Iterator<Item = &NamedInterval> {
        self.time_intervals.iter().chain(&self.mute_time_intervals)
    }

    fn validate(&self) -> Result<(), Problem> {
        let g = &self.global;
        if g.slack_api_url.is_some() && g.slack_api_url_file.is_some() {
            return Err(
                "at most one of slack_api_url & slack_api_url_file must be configured".into(),
            );
        }
        if g.smtp_auth_password.is_some() && g.smtp_auth_password_file.is_some() {
            return Err(
                "at most one of smtp_auth_password & smtp_auth_password_file must be configured"
                    .into(),
            );
        }
        if g.smtp_auth_secret.is_some() && g.smtp_auth_secret_file.is_some() {
            return Err(
                "at most one of smtp_auth_secret & smtp_auth_secret_file must be configured".into(),
            );
        }
        let mut names = HashSet::new();
        for r in &self.receivers {
            if r.name.is_empty() {
                return Err("missing name in receiver".into());
            }
            if !names.insert(r.name.as_str()) {
                return Err(format!(
                    "notification config name {:?} is not unique",
                    r.name
                ));
            }
            for w in &r.webhook_configs {
                w.validate()?;
            }
            for s in &r.slack_configs {
                s.validate(g)?;
            }
            for p in &r.pagerduty_configs {
                p.validate()?;
            }
            for e in &r.email_configs {
                e.validate(g)?;
            }
        }
        let mut tnames = HashSet::new();
        for t in self.intervals() {
            if !tnames.insert(t.name.as_str()) {
                return Err(format!("time interval {:?} is not unique", t.name));
            }
        }
        let root = self.route.as_ref().ok_or("no routes provided")?;
        if root.receiver.as_deref().is_none_or(str::is_empty) {
            return Err("root route must specify a default receiver".into());
        }
        if !root.all_matchers().map_err(|e| e.to_string())?.is_empty() {
            return Err("root route must not have any matchers".into());
        }
        if !root.mute_time_intervals.is_empty() {
            return Err("root route must not have any mute time intervals".into());
        }
        if !root.active_time_intervals.is_empty() {
            return Err("root route must not have any active time intervals".into());
        }
        self.check_route(root, &names, &tnames)?;
        for r in &self.inhibit_rules {
            r.all_matchers().map_err(|e| e.to_string())?;
            for l in &r.equal {
                check_label_name(l)?;
            }
        }
        Ok(())
    }

    fn check_route(
        &self,
        r: &RouteSpec,
        receivers: &HashSet<&str>,
        intervals: &HashSet<&str>,
    ) -> Result<(), Problem> {
        if let Some(name) = &r.receiver
            && !receivers.contains(name.as_str())
        {
            return Err(format!("undefined receiver {name:?} used in route"));
        }
        if let Some(gb) = &r.group_by {
            let mut seen = HashSet::new();
            for l in gb {
                if l == "..." {
                    if gb.len() > 1 {
                        return Err("cannot have wildcard group_by (`...`) and other other labels at the same time".into());
                    }
                    continue;
                }
                check_label_name(l)?;
                if !seen.insert(l) {
                    return Err(format!("duplicated label {l:?} in group_by"));
                }
            }
        }
        for t in r.mute_time_intervals.iter().chain(&r.active_time_intervals) {
            if !intervals.contains(t.as_str()) {
                return Err(format!("undefined time interval {t:?} used in route"));
            }
        }
        if r.group_interval.is_some_and(|d| d.0.is_zero()) {
            return Err("group_interval cannot be zero".into());
        }
        if r.repeat_interval.is_some_and(|d| d.0.is_zero()) {
            return Err("repeat_interval cannot be zero".into());
        }
        r.all_matchers().map_err(|e| e.to_string())?;
        for c in &r.routes {
            self.check_route(c, receivers, intervals)?;
        }
        Ok(())
    }

    /// Receiver integrations Lookout cannot send to yet, as `receiver/kind`.
    pub fn unsupported(&self) -> Vec<String> {
        let mut out = Vec::new();
        for r in &self.receivers {
            for (k, v) in &r.other {
                if !v.is_null() {
                    out.push(format!("{}/{k}", r.name));
                }
            }
            if r.pagerduty_configs
                .iter()
                .any(|p| p.routing_key.is_none() && p.routing_key_file.is_none())
            {
                out.push(format!(
                    "{}/pagerduty_configs (service_key: Events API v1)",
                    r.name
                ));
            }
        }
        out
    }
}
/// `text` (an Alertmanager configuration) with every secret replaced by `<secret>`, as
/// Alertmanager shows its configuration: passwords, keys, tokens, credentials, and URLs
/// that carry a secret (Slack and webhook URLs, `*_api_url`). Text that does not parse
/// is withheld whole.
pub fn redacted(text: &str) -> String {
    fn secret(key: &str, parent: &str) -> bool {
        matches!(
            key,
            "password" | "credentials" | "api_url" | "slack_api_url" | "webhook_url"
        ) || (key == "url" && parent == "webhook_configs")
            || ["_password", "_secret", "_token", "_key"]
                .iter()
                .any(|s| key.ends_with(s))
    }
    fn walk(v: &mut yaml_serde::Value, parent: &str) {
        match v {
            yaml_serde::Value::Mapping(m) => {
                for (k, val) in m.iter_mut() {
                    let key = k.as_str().unwrap_or("").to_string();
                    if secret(&key, parent) && !matches!(val, yaml_serde::Value::Null) {
                        *val = yaml_serde::Value::String("<secret>".into());
                    } else {
                        walk(val, &key);
                    }
                }
            }
            yaml_serde::Value::Sequence(s) => {
                for x in s {
                    walk(x, parent);
                }
            }
            _ => {}
        }
    }
    match yaml_serde::from_str::<yaml_serde::Value>(text) {
        Ok(mut v) => {
            walk(&mut v, "");
            yaml_serde::to_string(&v).unwrap_or_default()
        }
        Err(_) => "<secret: the configuration did not parse>".into(),
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::redacted;

    #[test]
    fn secrets_are_hidden_and_the_rest_kept() {
        let text = "global:\n  slack_api_url: https://hooks.slack.com/services/T0/B0/XYZ\n  smtp_auth_password: hunter2\n  smtp_smarthost: mail:25\nroute: {receiver: team}\nreceivers:\n- name: team\n  webhook_configs: [{url: 'https://hook.example/t0ken'}]\n  pagerduty_configs: [{routing_key: abcdef, url: 'https://events.pagerduty.com/v2/enqueue'}]\n  email_configs: [{to: a@b, auth_password: pw2}]\n";
        let r = redacted(text);
        for secret in ["XYZ", "hunter2", "t0ken", "abcdef", "pw2"] {
            assert!(!r.contains(secret), "{secret} in {r}");
        }
        for kept in [
            "mail:25",
            "team",
            "https://events.pagerduty.com/v2/enqueue",
            "a@b",
        ] {
            assert!(r.contains(kept), "{kept} missing from {r}");
        }
        assert_eq!(r.matches("<secret>").count(), 5, "{r}");
        assert!(!redacted("a: [").contains('['));
    }
}
