//! The configuration validated once into each component's own options type: the tsdb's
//! [`Options`], the engine's [`EngineOptions`], the scheduler's and scrapers' options,
//! the rule manager's [`ManagerOptions`], the notifier's file and escalation policies,
//! the forwarder's targets, the HTTP server's [`ServeOptions`] and the dashboard
//! library's [`DashboardsOptions`]. `serve`, `check
//! config` and reloads build from these; past [`Settings::new`] nothing reads the
//! configuration file's sections again, and nothing here touches the disk.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use lookout_collect::SchedulerOptions;
use lookout_collect::scrape::{ScrapeConfig, ScrapeDefaults};
use lookout_dashboards::DashboardsOptions;
use lookout_model::relabel::RelabelConfig;
use lookout_notify::forward::Target;
use lookout_notify::{EscalationPolicy, Level};
use lookout_promql::EngineOptions;
use lookout_rules::ManagerOptions;
use lookout_server::ServeOptions;
use lookout_tsdb::{Limits, Options, RetentionRule, SyncPolicy, Tier};

use crate::Error;
use crate::file::{CollectorsConfig, Config, WalSync};

/// Every component's options, from one validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The tsdb's options.
    pub storage: Options,
    /// The PromQL engine's options.
    pub engine: EngineOptions,
    /// Most queries, series and label lookups evaluated at once.
    pub max_concurrency: usize,
    /// The built-in collectors' schedule.
    pub scheduler: SchedulerOptions,
    /// Which built-in collectors run, and the databases and processes they watch.
    pub collectors: CollectorsConfig,
    /// Scrape jobs.
    pub scrape_configs: Vec<ScrapeConfig>,
    /// Timing of scrape jobs that name none.
    pub scrape_defaults: ScrapeDefaults,
    /// The rule manager's options; `None` without rule files or packs.
    pub rules: Option<ManagerOptions>,
    /// Lookout's notifier; `None` without `notifier.config_file`.
    pub notifier: Option<NotifierSettings>,
    /// External Alertmanagers alerts are forwarded to.
    pub forward_to: Vec<Target>,
    /// How rule alerts become notifier alerts.
    pub alerts: AlertSettings,
    /// Where the HTTP server listens.
    pub listen_address: String,
    /// `web.external_url`, when set.
    pub external_url: Option<String>,
    /// The HTTP server's options.
    pub serve: ServeOptions,
    /// Roles of basic-auth users.
    pub roles: BTreeMap<String, lookout_server::Role>,
    /// Whether the health probes answer without credentials.
    pub open_probes: bool,
    /// Bearer tokens, not read yet (their files and variables are read at start).
    pub bearer_tokens: Vec<crate::BearerTokenConfig>,
    /// The configuration in effect, as YAML (`/api/v1/status/config`).
    pub yaml: String,
    /// `storage.retention`, as written (status pages).
    pub retention_text: String,
    /// `storage.retention_size` in bytes (status pages).
    pub retention_size: u64,
    /// How the OTLP receiver translates metrics (`otlp:`).
    pub otlp: lookout_remote::otlp::Options,
    /// The stores everything is remote-written to (`remote_write:`).
    pub remote_write: Vec<lookout_remote::send::RemoteOptions>,
    /// The stores merged into every query (`remote_read:`).
    pub remote_read: Vec<lookout_remote::read_client::ReadOptions>,
    /// The trace store and its receiver (`tracing_receiver:`), when enabled.
    pub traces: Option<TracesSettings>,
    /// The dashboard library: shipped dashboards of the collectors that are on, the
    /// files of `dashboards.paths`, imports kept in the data directory.
    pub dashboards: DashboardsOptions,
    /// State snapshots (`snapshots:`).
    pub snapshots: crate::file::SnapshotsConfig,
    /// Remediation rules (`remediation:`).
    pub remediation: Vec<lookout_remediate::RuleConfig>,
    /// Clusters with a quorum (`health.clusters`).
    pub clusters: Vec<lookout_diagnose::cluster::ClusterSpec>,
}

/// The notifier's Alertmanager file and escalation policies.
#[derive(Debug, Clone)]
pub struct NotifierSettings {
    /// The Alertmanager configuration file (resolved against the config's directory).
    pub file: PathBuf,
    /// Escalation policies, matchers parsed.
    pub escalations: Vec<EscalationPolicy>,
    /// How long the notification history keeps deliveries.
    pub history_retention: Option<Duration>,
}

/// What rule alerts get before they reach the notifier or an external Alertmanager.
#[derive(Debug, Clone, Default)]
pub struct AlertSettings {
    /// Added where an alert has no such label.
    pub external_labels: BTreeMap<String, String>,
    /// `alerting.alert_relabel_configs`.
    pub relabel: Vec<RelabelConfig>,
}

/// The trace store's settings and its receiver's bound.
#[derive(Debug, Clone)]
pub struct TracesSettings {
    /// Retention and segment sizes (the store lives in `<data>/traces`).
    pub store: lookout_traces::Options,
    /// Largest OTLP request body.
    pub max_request_bytes: usize,
    /// Where OTLP/gRPC is served, if anywhere.
    pub grpc_listen_address: Option<String>,
}

/// The shipped dashboards offered: those `dashboards.shipped` names, or else the host's
/// (overview, disks and filesystems, network) always, Lookout's own when its metrics are
/// stored (the process collector), a database's when its collector is on, and the
/// `lookout-sdk` engine dashboards (B+tree, storage, Raft) when the `engine` rule pack
/// runs.
fn dashboards(c: &Config) -> DashboardsOptions {
    let available = lookout_dashboards::Library::shipped_names();
    let mut shipped = match &c.dashboards.shipped {
        Some(names) => names.clone(),
        None => {
            let mut v = vec!["host".to_string(), "disks".into(), "network".into()];
            if c.collectors.process.enabled {
                v.push("lookout".into());
            }
            if !c.collectors.postgres.is_empty() {
                v.push("postgres".into());
            }
            if !c.collectors.redis.is_empty() {
                v.push("redis".into());
            }
            if c.effective_rule_packs().iter().any(|p| p.name == "engine") {
                v.extend(["engine-btree", "engine-storage", "engine-raft"].map(String::from));
            }
            v
        }
    };
    shipped.retain(|n| available.contains(n));
    DashboardsOptions {
        paths: c.dashboards.paths.clone(),
        base_dir: c.base_dir.clone(),
        import_dir: Some(c.storage.path.join("dashboards")),
        shipped,
        limits: Default::default(),
        scrape_interval: c.global.scrape_interval.0,
    }
}

/// One `remote_write` entry as the sender's options.
fn remote_write(r: &crate::file::RemoteWriteConfig) -> lookout_remote::send::RemoteOptions {
    use lookout_remote::send::{Protocol, QueueOptions, RemoteOptions};
    let q = &r.queue_config;
    RemoteOptions {
        name: r.effective_name(),
        url: r.url.clone(),
        timeout: r.remote_timeout.0,
        headers: r
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        http: r.http(),
        relabel: r.write_relabel_configs.clone(),
        queue: QueueOptions {
            capacity: q.capacity,
            min_shards: q.min_shards,
            max_shards: q.max_shards,
            max_samples_per_send: q.max_samples_per_send,
            batch_send_deadline: q.batch_send_deadline.0,
            min_backoff: q.min_backoff.0,
            max_backoff: q.max_backoff.0,
            retry_on_http_429: q.retry_on_http_429,
            sample_age_limit: q.sample_age_limit.0,
        },
        send_metadata: r.metadata_config.send,
        send_exemplars: r.send_exemplars,
        send_native_histograms: r.send_native_histograms,
        metadata_interval: r.metadata_config.send_interval.0,
        protocol: match r.protobuf_message.as_deref() {
            Some("io.prometheus.write.v2.Request") => Protocol::V2,
            _ => Protocol::V1,
        },
        max_backlog: r.max_backlog.0,
        max_backlog_bytes: r.max_backlog_bytes.0,
        max_lag: r.max_lag.0,
    }
}

/// The collectors' settings, the textfile directory resolved against the configuration
/// file's directory.
fn collectors(c: &Config) -> CollectorsConfig {
    let mut out = c.collectors.clone();
    if let (Some(dir), Some(base)) = (&mut out.host.textfile_directory, &c.base_dir)
        && dir.is_relative()
    {
        *dir = base.join(&*dir);
    }
    out
}

/// The scrape jobs, with the files they name (file_sd files, password and token files,
/// TLS files) resolved against the configuration file's directory, as Prometheus does.
fn scrape_configs(c: &Config) -> Vec<lookout_collect::scrape::ScrapeConfig> {
    let mut out = c.scrape_configs.clone();
    let Some(base) = &c.base_dir else {
        return out;
    };
    let path = |p: &mut std::path::PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    for sc in &mut out {
        for f in sc
            .file_sd_configs
            .iter_mut()
            .flat_map(|f| f.files.iter_mut())
        {
            if std::path::Path::new(f.as_str()).is_relative() {
                *f = base.join(&*f).to_string_lossy().into_owned();
            }
        }
        if let Some(p) = sc
            .basic_auth
            .as_mut()
            .and_then(|b| b.password_file.as_mut())
        {
            path(p);
        }
        if let Some(p) = sc.bearer_token_file.as_mut() {
            path(p);
        }
        if let Some(t) = sc.tls_config.as_mut() {
            for p in [&mut t.ca_file, &mut t.cert_file, &mut t.key_file]
                .into_iter()
                .flatten()
            {
                path(p);
            }
        }
    }
    out
}

impl Settings {
    /// Every component's options from a configuration [`Config::parse`] accepted;
    /// errors name the key.
    pub fn new(c: &Config) -> Result<Self, Error> {
        let interval = c.global.scrape_interval.0;
        let packs = c.effective_rule_packs();
        let rules = (!c.rule_files.is_empty() || !packs.is_empty()).then(|| ManagerOptions {
            files: c.rule_files.clone(),
            packs,
            base_dir: c.base_dir.clone(),
            default_interval: c.global.evaluation_interval.0,
            state_file: Some(c.storage.path.join("alerts-state.json")),
            ..ManagerOptions::default()
        });
        Ok(Self {
            data_dir: c.storage.path.clone(),
            storage: storage_options(c),
            engine: EngineOptions {
                default_subquery_step: c.global.evaluation_interval.0,
                lookback_delta: c.query.lookback_delta.0,
                timeout: c.query.timeout.0,
                max_samples: c.query.max_samples,
                max_memory: c.query.max_memory.0 as usize,
                ..EngineOptions::default()
            },
            max_concurrency: c.query.max_concurrency,
            scheduler: SchedulerOptions {
                interval,
                timeout: interval.min(Duration::from_secs(10)),
            },
            collectors: collectors(c),
            scrape_configs: scrape_configs(c),
            scrape_defaults: ScrapeDefaults {
                interval,
                timeout: c.global.timeout(),
            },
            rules,
            notifier: notifier(c).map_err(Error::Invalid)?,
            forward_to: forward_targets(c),
            alerts: AlertSettings {
                external_labels: c.global.external_labels.clone(),
                relabel: c.alerting.alert_relabel_configs.clone(),
            },
            listen_address: c.web.listen_address.0.clone(),
            external_url: c.web.external_url.clone(),
            serve: ServeOptions {
                read_header_timeout: c.web.read_header_timeout.0,
                max_connections: c.web.max_connections,
                max_body_bytes: c.web.max_request_body_size.0.max(1024) as usize,
                ..ServeOptions::default()
            },
            dashboards: dashboards(c),
            snapshots: c.snapshots.clone(),
            remediation: c.remediation.clone(),
            clusters: c
                .health
                .clusters
                .iter()
                .map(|k| lookout_diagnose::cluster::ClusterSpec {
                    name: k.name.clone(),
                    members: k.members.clone(),
                    quorum: k
                        .quorum
                        .as_ref()
                        .and_then(|q| q.rule().ok())
                        .unwrap_or(lookout_diagnose::cluster::Quorum::Majority),
                    size: k.size,
                })
                .collect(),
            otlp: lookout_remote::otlp::Options {
                promote_resource_attributes: c.otlp.promote_resource_attributes.clone(),
                translation: c
                    .otlp
                    .translation_strategy
                    .as_deref()
                    .and_then(lookout_remote::otlp::Translation::parse)
                    .unwrap_or_default(),
                ..Default::default()
            },
            remote_write: c.remote_write.iter().map(remote_write).collect(),
            traces: c.tracing_receiver.enabled.then(|| TracesSettings {
                store: lookout_traces::Options {
                    retention: c.tracing_receiver.retention.0,
                    retention_bytes: (c.tracing_receiver.retention_size.0 > 0)
                        .then_some(c.tracing_receiver.retention_size.0),
                    redact: lookout_traces::span::Redaction {
                        drop: c.tracing_receiver.attributes.drop.clone(),
                        hash: c.tracing_receiver.attributes.hash.clone(),
                    },
                    ..Default::default()
                },
                max_request_bytes: c.tracing_receiver.max_request_size.0 as usize,
                grpc_listen_address: (!c.tracing_receiver.grpc_listen_address.is_empty())
                    .then(|| c.tracing_receiver.grpc_listen_address.clone()),
            }),
            remote_read: c
                .remote_read
                .iter()
                .map(|r| lookout_remote::read_client::ReadOptions {
                    name: r.effective_name(),
                    url: r.url.clone(),
                    timeout: r.remote_timeout.0,
                    headers: r
                        .headers
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    http: r.http(),
                    read_recent: r.read_recent,
                    required_matchers: r
                        .required_matchers
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    filter_external_labels: r.filter_external_labels,
                })
                .collect(),
            roles: c.web.roles.clone(),
            open_probes: c.web.open_probes,
            bearer_tokens: c.web.bearer_tokens.clone(),
            yaml: c.to_yaml(),
            retention_text: c.storage.retention.to_string(),
            retention_size: c.storage.retention_size.0,
        })
    }
}

/// The tsdb options a configuration asks for.
pub fn storage_options(config: &Config) -> Options {
    let st = &config.storage;
    Options {
        retention: st.retention.0,
        retention_size: (st.retention_size.0 > 0).then_some(st.retention_size.0),
        sync: match st.wal_sync {
            WalSync::Always => SyncPolicy::Always,
            WalSync::Every(d) => SyncPolicy::Interval(d),
        },
        ooo_window: st.out_of_order_window.0,
        future_tolerance: st.future_tolerance.0,
        wal_segment_size: st.wal_segment_size.0.max(64 << 10),
        block_range: st.block_duration.0,
        limits: Limits {
            max_series: (st.max_series > 0).then_some(st.max_series),
            max_labels: st.max_labels_per_series,
            max_label_name_len: st.max_label_name_length,
            max_label_value_len: st.max_label_value_length,
        },
        max_exemplars: st.exemplars.max_exemplars,
        page_cache_bytes: usize::try_from(st.page_cache_size.0).unwrap_or(usize::MAX),
        retention_rules: st
            .retention_rules
            .iter()
            .flat_map(|r| {
                // Validated with the configuration; an `or` selector is one rule per
                // alternative, in order.
                lookout_promql::parse_selector(&r.matchers)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|matchers| RetentionRule {
                        selector: r.matchers.clone(),
                        matchers,
                        retention: r.retention.0,
                    })
            })
            .collect(),
        downsampling: st
            .downsampling
            .iter()
            .map(|t| Tier {
                after: t.after.0,
                resolution: t.resolution.0,
                retention: t.retention.unwrap_or(st.retention).0,
            })
            .collect(),
        ..Options::default()
    }
}

/// The notifier's file and escalation policies, matchers parsed (once, here).
fn notifier(c: &Config) -> Result<Option<NotifierSettings>, String> {
    let Some(file) = &c.notifier.config_file else {
        return Ok(None);
    };
    let file = match &c.base_dir {
        Some(b) if file.is_relative() => b.join(file),
        _ => file.clone(),
    };
    let mut escalations = Vec::new();
    for e in &c.notifier.escalations {
        let matchers = e
            .matchers
            .iter()
            .map(|m| lookout_notify::matchers::parse_matcher(m))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| format!("notifier.escalations {:?}: {err}", e.name))?;
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
    Ok(Some(NotifierSettings {
        file,
        escalations,
        history_retention: c.notifier.history_retention.map(|d| d.0),
    }))
}

/// One target per `alerting.alertmanagers` static target.
fn forward_targets(c: &Config) -> Vec<Target> {
    c.alerting
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
                    http: lookout_http::HttpConfig {
                        basic_auth: am.basic_auth.clone(),
                        authorization: am.authorization.clone(),
                        tls_config: am.tls_config.clone(),
                        proxy_url: am.proxy_url.clone(),
                        follow_redirects: am.follow_redirects,
                        ..Default::default()
                    },
                })
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escalation_matchers_are_parsed_here_and_named_on_error() {
        let c = Config::parse(
            "notifier:\n  config_file: am.yml\n  escalations:\n  - name: db\n    matchers: ['severity=\"page\"']\n    levels: [{receivers: [a]}]\n",
        )
        .unwrap();
        let s = Settings::new(&c).unwrap();
        let n = s.notifier.unwrap();
        assert_eq!(n.escalations[0].matchers[0].value, "page");
        assert_eq!(n.escalations[0].levels[0].timeout, Duration::from_secs(900));
        let bad = Config::parse(
            "notifier:\n  config_file: am.yml\n  escalations:\n  - name: db\n    matchers: ['severity']\n    levels: [{receivers: [a]}]\n",
        )
        .unwrap();
        let e = Settings::new(&bad).unwrap_err().to_string();
        assert!(
            e.starts_with("notifier.escalations \"db\": bad matcher"),
            "{e}"
        );
    }

    #[test]
    fn files_a_scrape_job_names_are_relative_to_the_configuration_file() {
        let mut c = Config::parse(
            "scrape_configs:\n  - job_name: a\n    file_sd_configs: [ { files: [ 'targets/*.json', /abs/t.yml ] } ]\n    basic_auth: { username: u, password_file: pw }\n    tls_config: { ca_file: ca.pem }\n  - job_name: b\n    bearer_token_file: /abs/tok\n",
        )
        .unwrap();
        c.base_dir = Some(PathBuf::from("/etc/lookout"));
        let s = Settings::new(&c).unwrap();
        let sc = &s.scrape_configs[0];
        assert_eq!(
            sc.file_sd_configs[0].files,
            ["/etc/lookout/targets/*.json", "/abs/t.yml"]
        );
        let pw = sc.basic_auth.as_ref().unwrap().password_file.as_ref();
        assert_eq!(pw.unwrap(), &PathBuf::from("/etc/lookout/pw"));
        let tok = s.scrape_configs[1].bearer_token_file.as_ref();
        assert_eq!(tok.unwrap(), &PathBuf::from("/abs/tok"));
        let ca = sc.tls_config.as_ref().unwrap().ca_file.as_ref();
        assert_eq!(ca.unwrap(), &PathBuf::from("/etc/lookout/ca.pem"));
    }
}
