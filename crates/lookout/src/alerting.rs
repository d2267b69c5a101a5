//! Wiring between the rules and where alerts go: Lookout's notifier (an Alertmanager
//! configuration file) and external Alertmanagers (`alerting.alertmanagers`), joined by
//! `lookout_notify::rules_sink::RuleSink`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use lookout_notify::forward::{Forwarder, Target};
use lookout_notify::{Core, Notifier, Options};

use lookout_config::NotifierSettings;

/// The notifier for `notifier.config_file`, or `None`; its state is kept under
/// `data_dir/notifier`.
pub(crate) fn notifier(
    settings: Option<&NotifierSettings>,
    external_url: &str,
    data_dir: &Path,
) -> anyhow::Result<Option<Arc<Notifier>>> {
    let Some(settings) = settings else {
        return Ok(None);
    };
    let dir = data_dir.join("notifier");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (core, text) = core(settings, external_url, Some(dir))?;
    Ok(Some(Arc::new(Notifier::new(
        core,
        external_url.to_string(),
        text,
    ))))
}

/// Reads the notifier's Alertmanager file and builds its core (with the file's text);
/// state is kept in `state_dir`, or in memory only when `None` (`check config`).
pub(crate) fn core(
    settings: &NotifierSettings,
    external_url: &str,
    state_dir: Option<PathBuf>,
) -> anyhow::Result<(Core, String)> {
    let path = &settings.file;
    Ok(Core::from_file(
        path,
        Options {
            external_url: external_url.to_string(),
            data_dir: state_dir,
            escalations: settings.escalations.clone(),
            config_dir: path.parent().map(Path::to_path_buf),
            history_retention: settings.history_retention,
        },
    )?)
}

/// The forwarder for `alerting.alertmanagers`, or `None` when there are none.
pub(crate) fn forwarder(targets: &[Target]) -> anyhow::Result<Option<Arc<Forwarder>>> {
    if targets.is_empty() {
        return Ok(None);
    }
    let f = Forwarder::new(targets.to_vec()).context("alerting.alertmanagers")?;
    Ok(Some(Arc::new(f)))
}

/// Rule and notifier figures on Lookout's `/metrics`, under Prometheus's and
/// Alertmanager's own names where they have one, so their self-monitoring dashboards
/// work: `prometheus_rule_group_last_duration_seconds`, `…_interval_seconds`,
/// `…_rules`, `…_last_evaluation_timestamp_seconds` per `rule_group` (`file;name`),
/// `alertmanager_alerts{state}`, `alertmanager_silences{state}`, and
/// `lookout_notifications_total` / `lookout_notifications_failed_total`.
#[derive(Debug)]
pub(crate) struct AlertingMetrics {
    pub(crate) rules: Option<Arc<lookout_rules::Manager>>,
    pub(crate) notifier: Option<Arc<Notifier>>,
}

impl prometheus_client::collector::Collector for AlertingMetrics {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::MetricType;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        if let Some(m) = &self.rules {
            type Figure = fn(&lookout_rules::Group) -> f64;
            let figures: [(&str, &str, Figure); 4] = [
                (
                    "prometheus_rule_group_last_duration_seconds",
                    "The duration of the last rule group evaluation.",
                    |g| g.evaluation_time.as_secs_f64(),
                ),
                (
                    "prometheus_rule_group_interval_seconds",
                    "The interval of a rule group.",
                    |g| g.interval.as_secs_f64(),
                ),
                ("prometheus_rule_group_rules", "The number of rules.", |g| {
                    g.rules.len() as f64
                }),
                (
                    "prometheus_rule_group_last_evaluation_timestamp_seconds",
                    "The timestamp of the last rule group evaluation in seconds.",
                    |g| g.last_evaluation as f64 / 1000.0,
                ),
            ];
            // One pass over the groups, without copying their alerts.
            let rows: Vec<(String, [f64; 4])> = m.map_groups(|g| {
                (
                    g.key(),
                    [
                        figures[0].2(g),
                        figures[1].2(g),
                        figures[2].2(g),
                        figures[3].2(g),
                    ],
                )
            });
            for (i, (name, help, _)) in figures.iter().enumerate() {
                let mut enc = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
                for (key, values) in &rows {
                    let labels = vec![("rule_group".to_string(), key.clone())];
                    ConstGauge::new(values[i]).encode(enc.encode_family(&labels)?)?;
                }
            }
        }
        if let Some(n) = &self.notifier {
            use std::sync::atomic::Ordering::Relaxed;
            let now = lookout_model::now_ms();
            let (active, suppressed, silences) = n.with(|c| {
                let mut active = 0u64;
                let mut suppressed = 0u64;
                for a in c.alerts().iter().filter(|a| !a.resolved_at(now)) {
                    let s = c.suppression(a, now);
                    if s.silenced_by.is_empty() && s.inhibited_by.is_empty() {
                        active += 1;
                    } else {
                        suppressed += 1;
                    }
                }
                let mut by_state = [0u64; 3];
                for s in c.silences.list() {
                    by_state[match s.state(now) {
                        lookout_notify::silence::SilenceState::Active => 0,
                        lookout_notify::silence::SilenceState::Pending => 1,
                        lookout_notify::silence::SilenceState::Expired => 2,
                    }] += 1;
                }
                (active, suppressed, by_state)
            });
            let mut enc = encoder.encode_descriptor(
                "alertmanager_alerts",
                "How many alerts by state.",
                None,
                MetricType::Gauge,
            )?;
            for (state, v) in [("active", active), ("suppressed", suppressed)] {
                ConstGauge::new(v as f64)
                    .encode(enc.encode_family(&vec![("state".to_string(), state.to_string())])?)?;
            }
            let mut enc = encoder.encode_descriptor(
                "alertmanager_silences",
                "How many silences by state.",
                None,
                MetricType::Gauge,
            )?;
            for (state, v) in [
                ("active", silences[0]),
                ("pending", silences[1]),
                ("expired", silences[2]),
            ] {
                ConstGauge::new(v as f64)
                    .encode(enc.encode_family(&vec![("state".to_string(), state.to_string())])?)?;
            }
            let enc = encoder.encode_descriptor(
                "lookout_notifications",
                "Notifications delivered.",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(n.sent.load(Relaxed)).encode(enc)?;
            let enc = encoder.encode_descriptor(
                "lookout_notifications_failed",
                "Notifications that failed after every retry.",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(n.failed.load(Relaxed)).encode(enc)?;
        }
        Ok(())
    }
}
