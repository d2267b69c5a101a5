//! Wiring between the rules and where alerts go: Lookout's notifier (an Alertmanager
//! configuration file) and external Alertmanagers (`alerting.alertmanagers`). Alerts are
//! converted as Prometheus's notifier converts them: `startsAt` is when the alert fired,
//! `endsAt` its resolution or how long the last evaluation holds, external labels are
//! added where the alert has no such label, `alert_relabel_configs` apply, and the
//! generator URL links to the expression.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use lookout_model::Labels;
use lookout_model::relabel::RelabelConfig;
use lookout_notify::forward::{Forwarder, Target};
use lookout_notify::{Core, EscalationPolicy, Level, Notifier, Options};

use crate::config::Config;

/// The notifier for `notifier.config_file`, or `None`.
pub(crate) fn notifier(
    config: &Config,
    external_url: &str,
) -> anyhow::Result<Option<Arc<Notifier>>> {
    Ok(core(config, external_url)?
        .map(|(core, text)| Arc::new(Notifier::new(core, external_url.to_string(), text))))
}

/// Reads `notifier.config_file` and builds the notifier's core (with the file's text).
pub(crate) fn core(config: &Config, external_url: &str) -> anyhow::Result<Option<(Core, String)>> {
    let Some(file) = &config.notifier.config_file else {
        return Ok(None);
    };
    let path = match &config.base_dir {
        Some(b) if file.is_relative() => b.join(file),
        _ => file.clone(),
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the notifier configuration {}", path.display()))?;
    let am = lookout_notify::Config::parse(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut escalations = Vec::new();
    for e in &config.notifier.escalations {
        let mut matchers = Vec::new();
        for m in &e.matchers {
            matchers.push(lookout_notify::matchers::parse_matcher(m).map_err(anyhow::Error::msg)?);
        }
        escalations.push(EscalationPolicy {
            name: e.name.clone(),
            matchers,
            levels: e
                .levels
                .iter()
                .map(|l| Level {
                    receivers: l.receivers.clone(),
                    timeout: l.timeout.map_or(Duration::from_secs(900), |d| d.0),
                })
                .collect(),
        });
    }
    let dir = config.storage.path.join("notifier");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let core = Core::new(
        am,
        Options {
            external_url: external_url.to_string(),
            data_dir: Some(dir),
            escalations,
            config_dir: path.parent().map(std::path::Path::to_path_buf),
        },
    )
    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(Some((core, text)))
}

/// The forwarder for `alerting.alertmanagers`, or `None`.
pub(crate) fn forwarder(config: &Config) -> Option<Arc<Forwarder>> {
    let targets: Vec<Target> = config
        .alerting
        .alertmanagers
        .iter()
        .flat_map(|am| {
            am.static_configs.iter().flat_map(move |s| {
                s.targets.iter().map(move |t| Target {
                    base: format!(
                        "{}://{t}{}",
                        am.scheme,
                        am.path_prefix.trim_end_matches('/')
                    ),
                    timeout: am.timeout.0,
                })
            })
        })
        .collect();
    (!targets.is_empty()).then(|| Arc::new(Forwarder::new(targets)))
}

/// Hands the rules' alerts to the notifier and the forwarder.
pub(crate) struct Bridge {
    pub(crate) notifier: Option<Arc<Notifier>>,
    pub(crate) forwarder: Option<Arc<Forwarder>>,
    pub(crate) external_labels: BTreeMap<String, String>,
    pub(crate) external_url: String,
    pub(crate) relabel: Vec<RelabelConfig>,
    pub(crate) runtime: tokio::runtime::Handle,
}

impl Bridge {
    fn convert(&self, a: &lookout_rules::Alert, expr: &str) -> Option<lookout_notify::Alert> {
        let mut labels = a.labels.clone();
        for (k, v) in &self.external_labels {
            if labels.get(k).is_none() {
                labels = labels.with(k, v);
            }
        }
        let labels: Labels = lookout_model::relabel::process(&labels, &self.relabel)?;
        Some(lookout_notify::Alert {
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

impl lookout_rules::AlertSink for Bridge {
    fn send(&self, alerts: Vec<(lookout_rules::Alert, String)>) {
        let out: Vec<lookout_notify::Alert> = alerts
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
