//! Lookout's configuration file: YAML with Prometheus's names.
//!
//! ```yaml
//! global:
//!   scrape_interval: 15s      # how often collectors run
//!   evaluation_interval: 1m   # how often rules run; default subquery step
//! storage:
//!   path: ./lookout-data      # data directory
//!   retention: 15d            # how long samples are kept
//! web:
//!   listen_address: 127.0.0.1:9180
//! ```
//!
//! Every section and key is optional; unknown keys and bad values stop start-up with an
//! error naming the key and its line. Raw YAML is deserialized into these structs, whose
//! field types validate themselves (durations must parse and be positive, addresses need a
//! port), so the YAML parser's location is part of every error.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use crate::Error;

/// A positive duration written as Prometheus writes them (`15s`, `1h30m`, `2w`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromDuration(pub Duration);

pub use lookout_model::parse_duration;

impl<'de> Deserialize<'de> for PromDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let v = parse_duration(&s).map_err(de::Error::custom)?;
        if v.is_zero() {
            return Err(de::Error::custom(format!(
                "duration {s:?} must be greater than 0"
            )));
        }
        Ok(Self(v))
    }
}

pub use lookout_model::format_duration;

impl fmt::Display for PromDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

/// A duration that may be zero (`0s` turns the feature off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZeroableDuration(pub Duration);

impl<'de> Deserialize<'de> for ZeroableDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "0" {
            return Ok(Self(Duration::ZERO));
        }
        parse_duration(&s).map(Self).map_err(de::Error::custom)
    }
}

/// When the WAL is fsynced: `always` (every commit) or an interval such as `1s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalSync {
    /// fsync after every commit.
    Always,
    /// fsync at this interval (and at shutdown).
    Every(Duration),
}

impl<'de> Deserialize<'de> for WalSync {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "always" {
            return Ok(Self::Always);
        }
        match parse_duration(&s) {
            Ok(v) if !v.is_zero() => Ok(Self::Every(v)),
            _ => Err(de::Error::custom(format!(
                "invalid WAL sync policy {s:?}: use `always` or an interval such as 1s"
            ))),
        }
    }
}

pub use lookout_model::ByteSize;

/// A `host:port` listen address; port 0 picks a free port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddress(pub String);

impl ListenAddress {
    /// Validates `host:port`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("listen address {s:?} needs a port, e.g. 127.0.0.1:9180"))?;
        port.parse::<u16>()
            .map_err(|_| format!("listen address {s:?} has an invalid port {port:?}"))?;
        if host.is_empty() {
            return Err(format!(
                "listen address {s:?} needs a host, e.g. 0.0.0.0:{port} for all interfaces"
            ));
        }
        Ok(Self(s.to_string()))
    }
}

impl<'de> Deserialize<'de> for ListenAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(de::Error::custom)
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Settings shared by every part.
    pub global: GlobalConfig,
    /// The embedded time-series store.
    pub storage: StorageConfig,
    /// The HTTP server.
    pub web: WebConfig,
    /// Built-in collectors.
    pub collectors: CollectorsConfig,
    /// Query engine limits (Prometheus's `--query.*` flags).
    pub query: QueryConfig,
    /// Prometheus's scrape jobs.
    pub scrape_configs: Vec<lookout_collect::scrape::ScrapeConfig>,
    /// Prometheus's rule files (globs, relative to the config file's directory).
    pub rule_files: Vec<String>,
    /// Lookout's built-in rule packs to run (`host`, `postgres`, `redis`); when unset,
    /// the packs of the collectors that are on.
    pub rule_packs: Option<Vec<String>>,
    /// The directory of the file this configuration was read from.
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
    /// Prometheus's `alerting:`: external Alertmanagers alerts are forwarded to.
    pub alerting: AlertingConfig,
    /// Lookout's notifier: an Alertmanager configuration file and escalation policies.
    pub notifier: NotifierConfig,
    /// Grafana dashboard JSON files the web UI renders.
    pub dashboards: DashboardsConfig,
    /// Prometheus's `otlp:`: how the OTLP receiver translates what it receives.
    pub otlp: OtlpConfig,
    /// Prometheus's `remote_write:`: stores Lookout sends everything it stores to.
    pub remote_write: Vec<RemoteWriteConfig>,
    /// Prometheus's `remote_read:`: stores merged into every query.
    pub remote_read: Vec<RemoteReadConfig>,
    /// Lookout's trace receiver and store (`tracing_receiver:`); off by default.
    pub tracing_receiver: TracingReceiverConfig,
    /// State snapshots (`snapshots:`): on demand and when alerts of a severity fire.
    pub snapshots: SnapshotsConfig,
    /// Remediation rules (`remediation:`): allow-listed actions run when matching
    /// alerts fire; none by default.
    pub remediation: Vec<lookout_remediate::RuleConfig>,
    /// Health beyond the built-in checks (`health:`): clusters with a quorum.
    pub health: HealthConfig,
}

/// `health:`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// Groups of members with a quorum rule, each a `cluster/<name>` health check and
    /// `lookout_cluster_*` metrics.
    pub clusters: Vec<ClusterConfig>,
}

/// One entry of `health.clusters`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Its name.
    pub name: String,
    /// PromQL returning one series per member, 1 when healthy and 0 when not
    /// (`up{job="redis"}`, `pg_up`, `raft_up`).
    pub members: String,
    /// `majority` (default) or the number of members needed.
    #[serde(default)]
    pub quorum: Option<QuorumConfig>,
    /// How many members there should be (members missing from it are unhealthy);
    /// default: those the expression returns.
    #[serde(default)]
    pub size: Option<usize>,
}

/// `quorum:` as written: `majority` or a number.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum QuorumConfig {
    /// A number of members.
    Count(usize),
    /// `majority` (or a number in a string).
    Name(String),
}

impl QuorumConfig {
    /// The quorum rule, or what is wrong with it.
    pub fn rule(&self) -> Result<lookout_diagnose::cluster::Quorum, String> {
        match self {
            Self::Count(n) => lookout_diagnose::cluster::Quorum::parse(&n.to_string()),
            Self::Name(s) => lookout_diagnose::cluster::Quorum::parse(s),
        }
    }
}

/// `snapshots:`: state snapshots kept in the data directory.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SnapshotsConfig {
    /// Whether snapshots can be taken (on by default).
    pub enabled: bool,
    /// How long they are kept (default 7d).
    pub retention: PromDuration,
    /// Most kept (default 200; the oldest go first).
    pub max_snapshots: usize,
    /// Alerts whose `severity` label is one of these take a snapshot when they start
    /// firing (default `[critical]`; empty: never).
    pub on_alert_severities: Vec<String>,
}

impl Default for SnapshotsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            retention: PromDuration(Duration::from_secs(7 * 86_400)),
            max_snapshots: 200,
            on_alert_severities: vec!["critical".to_string()],
        }
    }
}

/// `tracing_receiver:`: OTLP spans received at `POST /v1/traces`, kept in the data
/// directory and answered through Jaeger's query API.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TracingReceiverConfig {
    /// Whether spans are received and kept.
    pub enabled: bool,
    /// How long spans are kept.
    pub retention: PromDuration,
    /// Most bytes of spans kept on disk, oldest dropped first; 0: no bound.
    pub retention_size: ByteSize,
    /// Largest OTLP request body.
    pub max_request_size: ByteSize,
    /// Span attributes dropped or hashed before they are stored.
    pub attributes: TraceAttributesConfig,
    /// `host:port` OTLP/gRPC is served on (HTTP/2, the web configuration's TLS and
    /// authentication); empty (the default): no gRPC listener. OTLP's port is 4317.
    pub grpc_listen_address: String,
}

/// `tracing_receiver.attributes`: keys (exact, or a prefix ending in `*`) of span,
/// event and resource attributes never stored as sent.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TraceAttributesConfig {
    /// Attributes dropped.
    pub drop: Vec<String>,
    /// Attributes whose values are replaced by a SHA-256 hash (`sha256:…`).
    pub hash: Vec<String>,
}

impl Default for TracingReceiverConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            retention: PromDuration(Duration::from_secs(7 * 86_400)),
            retention_size: ByteSize(0),
            max_request_size: ByteSize(16 << 20),
            attributes: TraceAttributesConfig::default(),
            grpc_listen_address: String::new(),
        }
    }
}

/// What `remote_write` and `remote_read` entries share: the name in effect, the
/// `http_config` part, and the checks on both.
macro_rules! remote_common {
    ($t:ty) => {
        impl $t {
            /// The name in effect: the configured one, or 6 hex digits of the URL's CRC-32.
            pub fn effective_name(&self) -> String {
                self.name.clone().unwrap_or_else(|| {
                    format!("{:08x}", crc32(self.url.as_bytes()))[..6].to_string()
                })
            }

            /// The `http_config` part.
            pub fn http(&self) -> lookout_http::HttpConfig {
                lookout_http::HttpConfig {
                    basic_auth: self.basic_auth.clone(),
                    authorization: self.authorization.clone(),
                    bearer_token: self.bearer_token.clone(),
                    bearer_token_file: self.bearer_token_file.clone(),
                    tls_config: self.tls_config.clone(),
                    proxy_url: self.proxy_url.clone(),
                    follow_redirects: self.follow_redirects,
                    enable_http2: self.enable_http2,
                }
            }

            /// An http(s) URL, a name not used by an earlier entry, no protocol
            /// headers, at most one credential.
            fn check_common(
                &self,
                at: &str,
                names: &mut std::collections::BTreeSet<String>,
            ) -> Result<(), String> {
                if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
                    return Err(format!("{at}: url {:?} must be http:// or https://", self.url));
                }
                let name = self.effective_name();
                if !names.insert(name.clone()) {
                    return Err(format!("{at}: duplicate remote name {name:?}"));
                }
                if let Some(h) = self
                    .headers
                    .keys()
                    .find(|h| lookout_remote::send::reserved_header(h))
                {
                    return Err(format!("{at}: {h} is a reserved header. It must not be changed"));
                }
                if self.basic_auth.is_some() as u8
                    + self.authorization.is_some() as u8
                    + (self.bearer_token.is_some() || self.bearer_token_file.is_some()) as u8
                    > 1
                {
                    return Err(format!(
                        "{at}: at most one of basic_auth, authorization and bearer_token & bearer_token_file must be configured"
                    ));
                }
                Ok(())
            }
        }
    };
}

/// One `remote_write` entry, in Prometheus's shape, plus Lookout's bounds on the
/// durable queue (`max_backlog`, `max_backlog_bytes`, `max_lag`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// Where to send (`http` or `https`).
    pub url: String,
    /// The remote's name (metrics, queue directory); default: a hash of the URL.
    pub name: Option<String>,
    /// Per request (default 30s).
    pub remote_timeout: PromDuration,
    /// Extra headers (not those the protocol sets).
    pub headers: std::collections::BTreeMap<String, String>,
    /// Relabeling applied to every series before it is queued.
    pub write_relabel_configs: Vec<lookout_model::relabel::RelabelConfig>,
    /// Sharding, batching and retries.
    pub queue_config: QueueConfig,
    /// Metadata sending.
    pub metadata_config: MetadataConfig,
    /// Send the exemplars Lookout keeps with their samples.
    pub send_exemplars: bool,
    /// Send native histograms (1.0 and 2.0 both carry them).
    pub send_native_histograms: bool,
    /// `prometheus.WriteRequest` (1.0, the default) or `io.prometheus.write.v2.Request`.
    pub protobuf_message: Option<String>,
    /// Accepted for compatibility (one connection pool serves every address).
    pub round_robin_dns: bool,
    /// Basic authentication.
    pub basic_auth: Option<lookout_http::BasicAuth>,
    /// An `Authorization` header.
    pub authorization: Option<lookout_http::Authorization>,
    /// A bearer token (legacy form of `authorization`).
    pub bearer_token: Option<String>,
    /// A file holding a bearer token.
    pub bearer_token_file: Option<PathBuf>,
    /// TLS settings.
    pub tls_config: Option<lookout_http::TlsConfig>,
    /// An HTTP proxy.
    pub proxy_url: Option<String>,
    /// Follow redirects (default true).
    pub follow_redirects: Option<bool>,
    /// Accepted for compatibility; Lookout speaks HTTP/1.1.
    pub enable_http2: Option<bool>,
    /// Oldest unsent data the queue keeps (default 24h); older is dropped and counted.
    pub max_backlog: PromDuration,
    /// Most bytes the queue keeps unsent (default 0: no bound besides `max_backlog`).
    pub max_backlog_bytes: ByteSize,
    /// Behind by more than this, the remote's health check is degraded (default 5m).
    pub max_lag: PromDuration,
}

impl Default for RemoteWriteConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            name: None,
            remote_timeout: PromDuration(Duration::from_secs(30)),
            headers: Default::default(),
            write_relabel_configs: Vec::new(),
            queue_config: QueueConfig::default(),
            metadata_config: MetadataConfig::default(),
            send_exemplars: false,
            send_native_histograms: false,
            protobuf_message: None,
            round_robin_dns: false,
            basic_auth: None,
            authorization: None,
            bearer_token: None,
            bearer_token_file: None,
            tls_config: None,
            proxy_url: None,
            follow_redirects: None,
            enable_http2: None,
            max_backlog: PromDuration(Duration::from_secs(86_400)),
            max_backlog_bytes: ByteSize(0),
            max_lag: PromDuration(Duration::from_secs(300)),
        }
    }
}

remote_common!(RemoteWriteConfig);

/// One `remote_read` entry, in Prometheus's shape.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteReadConfig {
    /// The endpoint (`http` or `https`).
    pub url: String,
    /// The remote's name (metrics, logs); default: a hash of the URL.
    pub name: Option<String>,
    /// Per request (default 1m).
    pub remote_timeout: PromDuration,
    /// Extra headers.
    pub headers: std::collections::BTreeMap<String, String>,
    /// Equality matchers a selection must carry for this remote to be asked.
    pub required_matchers: std::collections::BTreeMap<String, String>,
    /// Also ask for ranges the local store holds (default false).
    pub read_recent: bool,
    /// Ask with the external labels as matchers, removed from the answers (default true).
    pub filter_external_labels: bool,
    /// Basic authentication.
    pub basic_auth: Option<lookout_http::BasicAuth>,
    /// An `Authorization` header.
    pub authorization: Option<lookout_http::Authorization>,
    /// A bearer token (legacy form of `authorization`).
    pub bearer_token: Option<String>,
    /// A file holding a bearer token.
    pub bearer_token_file: Option<PathBuf>,
    /// TLS settings.
    pub tls_config: Option<lookout_http::TlsConfig>,
    /// An HTTP proxy.
    pub proxy_url: Option<String>,
    /// Follow redirects (default true).
    pub follow_redirects: Option<bool>,
    /// Accepted for compatibility; Lookout speaks HTTP/1.1.
    pub enable_http2: Option<bool>,
}

impl Default for RemoteReadConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            name: None,
            remote_timeout: PromDuration(Duration::from_secs(60)),
            headers: Default::default(),
            required_matchers: Default::default(),
            read_recent: false,
            filter_external_labels: true,
            basic_auth: None,
            authorization: None,
            bearer_token: None,
            bearer_token_file: None,
            tls_config: None,
            proxy_url: None,
            follow_redirects: None,
            enable_http2: None,
        }
    }
}

remote_common!(RemoteReadConfig);

/// CRC-32 (IEEE), bitwise: only names remotes.
fn crc32(b: &[u8]) -> u32 {
    let mut c = !0u32;
    for &x in b {
        c ^= u32::from(x);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xedb8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// `remote_write.queue_config`, with Prometheus 3's defaults.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Samples buffered per shard (accepted; the disk queue holds the backlog).
    pub capacity: usize,
    /// Most shards.
    pub max_shards: usize,
    /// Fewest shards.
    pub min_shards: usize,
    /// Largest batch.
    pub max_samples_per_send: usize,
    /// Longest a sample waits for a batch.
    pub batch_send_deadline: PromDuration,
    /// First retry delay.
    pub min_backoff: PromDuration,
    /// Longest retry delay.
    pub max_backoff: PromDuration,
    /// Retry on 429 (default true; false drops such batches).
    pub retry_on_http_429: bool,
    /// Drop samples older than this when sent (0: never).
    pub sample_age_limit: ZeroableDuration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            max_shards: 50,
            min_shards: 1,
            max_samples_per_send: 2_000,
            batch_send_deadline: PromDuration(Duration::from_secs(5)),
            min_backoff: PromDuration(Duration::from_millis(30)),
            max_backoff: PromDuration(Duration::from_secs(5)),
            retry_on_http_429: true,
            sample_age_limit: ZeroableDuration(Duration::ZERO),
        }
    }
}

/// `remote_write.metadata_config`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetadataConfig {
    /// Send metadata (default true).
    pub send: bool,
    /// How often (1.0; default 1m).
    pub send_interval: PromDuration,
    /// Accepted for compatibility.
    pub max_samples_per_send: usize,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        Self {
            send: true,
            send_interval: PromDuration(Duration::from_secs(60)),
            max_samples_per_send: 500,
        }
    }
}

/// Prometheus's `otlp:` section.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpConfig {
    /// Resource attributes put on every series as labels.
    pub promote_resource_attributes: Vec<String>,
    /// `UnderscoreEscapingWithSuffixes` (the default), `UnderscoreEscapingWithoutSuffixes`,
    /// `NoUTF8EscapingWithSuffixes` or `NoTranslation` (the last two keep UTF-8 names).
    pub translation_strategy: Option<String>,
}

/// `dashboards:`: Grafana dashboards (export JSON) the web UI renders, beside the shipped
/// ones and those imported through the API.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DashboardsConfig {
    /// Glob patterns of dashboard files, relative to the configuration file's directory;
    /// files are re-read when they appear, change or go.
    pub paths: Vec<String>,
    /// The shipped dashboards to offer, by name (`host`, `disks`, `network`, `lookout`,
    /// `postgres`, `redis`, `engine-btree`, `engine-storage`, `engine-raft`); when unset,
    /// the host's, Lookout's own, those of the database collectors that are on, and the
    /// engine dashboards when the `engine` rule pack runs.
    pub shipped: Option<Vec<String>>,
}

/// Prometheus's `alerting:` section.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AlertingConfig {
    /// Relabeling applied to alerts before they are sent anywhere.
    pub alert_relabel_configs: Vec<lookout_model::relabel::RelabelConfig>,
    /// External Alertmanagers.
    pub alertmanagers: Vec<AlertmanagerConfig>,
}

/// One `alerting.alertmanagers` entry.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// `http` or `https`.
    pub scheme: String,
    /// Prefix before `/api/v2/alerts`.
    pub path_prefix: String,
    /// Request timeout (default 10s).
    pub timeout: PromDuration,
    /// Only `v2` (Alertmanager's current API).
    pub api_version: String,
    /// Targets (`host:port`).
    pub static_configs: Vec<lookout_collect::scrape::StaticConfig>,
    /// Basic authentication.
    pub basic_auth: Option<lookout_http::BasicAuth>,
    /// An `Authorization` header.
    pub authorization: Option<lookout_http::Authorization>,
    /// TLS settings.
    pub tls_config: Option<lookout_http::TlsConfig>,
    /// An HTTP proxy.
    pub proxy_url: Option<String>,
    /// Follow redirects (default true).
    pub follow_redirects: Option<bool>,
}

impl Default for AlertmanagerConfig {
    fn default() -> Self {
        Self {
            scheme: "http".into(),
            path_prefix: String::new(),
            timeout: PromDuration(Duration::from_secs(10)),
            api_version: "v2".into(),
            static_configs: Vec::new(),
            basic_auth: None,
            authorization: None,
            tls_config: None,
            proxy_url: None,
            follow_redirects: None,
        }
    }
}

/// `notifier:` settings.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NotifierConfig {
    /// An Alertmanager configuration file (relative to this file), used as is.
    pub config_file: Option<PathBuf>,
    /// Escalation policies.
    pub escalations: Vec<EscalationConfig>,
    /// How long the notification history keeps deliveries (default 7d).
    pub history_retention: Option<PromDuration>,
}

/// One escalation policy.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EscalationConfig {
    /// Name (for the audit log).
    pub name: String,
    /// Alertmanager matchers selecting the alerts it applies to.
    #[serde(default)]
    pub matchers: Vec<String>,
    /// Levels, first to last.
    pub levels: Vec<EscalationLevelConfig>,
}

/// One escalation level.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EscalationLevelConfig {
    /// Receivers of the Alertmanager configuration notified at this level.
    pub receivers: Vec<String>,
    /// How long to wait for an acknowledgement before the next level (default 15m).
    pub timeout: Option<PromDuration>,
}

/// `query:` settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    /// How far back an instant selector looks for a sample (default 5m).
    pub lookback_delta: PromDuration,
    /// Longest a query may run (default 2m).
    pub timeout: PromDuration,
    /// Most samples one query may load (default 50000000).
    pub max_samples: usize,
    /// Most bytes one query may hold (selected samples and labels, subquery and result
    /// points; default 2GB; 0: no limit); past it the query fails with an execution error.
    pub max_memory: ByteSize,
    /// Most queries, series and label lookups evaluated at once; the rest wait
    /// (default 20, as Prometheus's `--query.max-concurrency`).
    pub max_concurrency: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            lookback_delta: PromDuration(Duration::from_secs(300)),
            timeout: PromDuration(Duration::from_secs(120)),
            max_samples: 50_000_000,
            max_memory: ByteSize(2 << 30),
            max_concurrency: lookout_server::gate::DEFAULT_MAX_CONCURRENCY,
        }
    }
}

/// `collectors:` — which built-in collectors run.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorsConfig {
    /// This host's vitals under node_exporter's names (default on).
    pub host: HostConfig,
    /// Lookout's own process metrics (default on).
    pub process: Toggle,
    /// Processes to watch by name (process-exporter's `namedprocess_namegroup_*`).
    pub processes: Vec<ProcessConfig>,
    /// PostgreSQL servers (postgres_exporter's families).
    pub postgres: Vec<PostgresConfig>,
    /// Redis servers (redis_exporter's families).
    pub redis: Vec<RedisConfig>,
}

/// One entry of `collectors.processes`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProcessConfig {
    /// The command name (`postgres`, `redis-server`).
    pub name: String,
}

/// One entry of `collectors.postgres`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// Becomes the `instance` label.
    pub name: String,
    /// libpq connection string or URL.
    pub dsn: String,
    /// File holding the password (trailing newline ignored).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// How many pg_stat_statements entries become metrics (default 50; 0 turns it off).
    #[serde(default = "default_top_statements")]
    pub top_statements: usize,
    /// Lookout's own diagnostics beyond the exporter's families (default true): the
    /// one-second session sampler (wait events, locks, old transactions) and the
    /// maintenance advisor.
    #[serde(default = "default_true")]
    pub diagnostics: bool,
}

fn default_top_statements() -> usize {
    50
}

fn default_true() -> bool {
    true
}

/// One entry of `collectors.redis`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// Becomes the `instance` label.
    pub name: String,
    /// `redis://host:port`.
    pub url: String,
    /// File holding the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Keep slow-log entries' arguments (they may hold user data; elided by default).
    #[serde(default)]
    pub slowlog_arguments: bool,
    /// The opt-in big-key sample: `SCAN` + `MEMORY USAGE`, rate-limited.
    #[serde(default)]
    pub big_keys: Option<BigKeysConfig>,
}

/// `collectors.redis[].big_keys`: how the big-key sample runs.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BigKeysConfig {
    /// How often a sample runs (default 10m).
    #[serde(default = "default_big_keys_every")]
    pub every: PromDuration,
    /// Most keys looked at per sample (default 10,000; at most 10,000,000).
    #[serde(default = "default_big_keys_max")]
    pub max_keys: u64,
    /// Keys asked for per `SCAN` (default 100; 1 to 10,000).
    #[serde(default = "default_big_keys_batch")]
    pub batch: usize,
    /// The pause between batches (default 10ms), which bounds the load on Redis.
    #[serde(default = "default_big_keys_pause")]
    pub pause: ZeroableDuration,
    /// How many of the largest keys are kept (default 20; at most 1,000).
    #[serde(default = "default_big_keys_top")]
    pub top: usize,
}

fn default_big_keys_every() -> PromDuration {
    PromDuration(Duration::from_secs(600))
}
fn default_big_keys_max() -> u64 {
    10_000
}
fn default_big_keys_batch() -> usize {
    100
}
fn default_big_keys_pause() -> ZeroableDuration {
    ZeroableDuration(Duration::from_millis(10))
}
fn default_big_keys_top() -> usize {
    20
}

/// Reads a password from a file or an environment variable (at most one may be set);
/// `what` names the entry in errors.
pub fn read_password(
    what: &str,
    file: &Option<PathBuf>,
    env: &Option<String>,
) -> Result<Option<String>, String> {
    match (file, env) {
        (Some(_), Some(_)) => Err(format!(
            "{what}: set password_file or password_env, not both"
        )),
        (Some(f), None) => std::fs::read_to_string(f)
            .map(|s| Some(s.trim_end_matches(['\n', '\r']).to_string()))
            .map_err(|e| format!("{what}: reading password_file {}: {e}", f.display())),
        (None, Some(v)) => std::env::var(v)
            .map(Some)
            .map_err(|_| format!("{what}: environment variable {v} (password_env) is not set")),
        (None, None) => Ok(None),
    }
}

/// `collectors.host`: whether it runs, and node_exporter's textfile directory.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HostConfig {
    /// Whether it runs.
    pub enabled: bool,
    /// `*.prom` files read on every run, as node_exporter's
    /// `--collector.textfile.directory` (relative to the configuration file).
    pub textfile_directory: Option<PathBuf>,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            textfile_directory: None,
        }
    }
}

/// `{ enabled: bool }`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Toggle {
    /// Whether it runs.
    pub enabled: bool,
}

impl Default for Toggle {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// `global:` settings, named as in Prometheus.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GlobalConfig {
    /// How often collectors run (default 15s).
    pub scrape_interval: PromDuration,
    /// How often rules are evaluated (default 1m); also the default subquery step.
    pub evaluation_interval: PromDuration,
    /// Longest a scrape may take where a job sets no `scrape_timeout` (default 10s, or
    /// the scrape interval when that is shorter); see [`GlobalConfig::timeout`].
    pub scrape_timeout: Option<PromDuration>,
    /// Labels added to alerts and remote writes (kept for when those arrive).
    pub external_labels: std::collections::BTreeMap<String, String>,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        Self {
            scrape_interval: PromDuration(Duration::from_secs(15)),
            evaluation_interval: PromDuration(Duration::from_secs(60)),
            scrape_timeout: None,
            external_labels: Default::default(),
        }
    }
}

impl GlobalConfig {
    /// The scrape timeout in effect, as Prometheus fills it: 10s unless the interval is
    /// shorter.
    pub fn timeout(&self) -> Duration {
        self.scrape_timeout
            .map_or(Duration::from_secs(10).min(self.scrape_interval.0), |t| t.0)
    }
}

/// `storage:` settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Data directory (default `./lookout-data`).
    pub path: PathBuf,
    /// How long samples are kept (default 15d).
    pub retention: PromDuration,
    /// Most bytes blocks and WAL may use (default 0: no size limit).
    pub retention_size: ByteSize,
    /// WAL fsync policy: an interval (default 1s) or `always`.
    pub wal_sync: WalSync,
    /// How far behind the newest sample an out-of-order sample is accepted (default 10m; 0s rejects all).
    pub out_of_order_window: ZeroableDuration,
    /// How far ahead of this machine's clock a sample may be (default 10m; 0s rejects
    /// every sample from the future). Later ones are rejected and counted.
    pub future_tolerance: ZeroableDuration,
    /// Largest WAL segment file (default 32MB), as Prometheus's
    /// `--storage.tsdb.wal-segment-size`; at least 64KB.
    pub wal_segment_size: ByteSize,
    /// Time range of a block cut from the head (default 2h), as Prometheus's
    /// `--storage.tsdb.min-block-duration`: the head holds up to 1.5 times it. Between
    /// 1m and 1d; shorter ranges make more, smaller blocks (tests and benchmarks).
    pub block_duration: PromDuration,
    /// Most series in memory (default 0: unlimited).
    pub max_series: usize,
    /// Most labels per series (default 128).
    pub max_labels_per_series: usize,
    /// Longest label name in bytes (default 1024).
    pub max_label_name_length: usize,
    /// Longest label value in bytes (default 16384).
    pub max_label_value_length: usize,
    /// Exemplars, as Prometheus's `storage.exemplars`.
    pub exemplars: ExemplarsConfig,
    /// Bytes of decompressed block pages kept for queries (default 64MB; 0: none).
    pub page_cache_size: ByteSize,
    /// Retention per series: the first rule whose selector matches a series sets how
    /// long it is kept (shorter or longer than `retention`, which keeps the rest).
    pub retention_rules: Vec<RetentionRuleConfig>,
    /// Downsampling tiers, finest first: data older than a tier's `after` is also kept
    /// as windows of its `resolution` (count, sum, min, max, first, last, counter
    /// increase) for its own `retention`, and `rate`/`increase`/`delta`/`*_over_time`
    /// whose range and step are multiples of the resolution read those.
    pub downsampling: Vec<DownsamplingTier>,
}

/// One `storage.downsampling` entry.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DownsamplingTier {
    /// Data older than this is rolled up into the tier.
    pub after: PromDuration,
    /// The tier's window: it divides `storage.block_duration`, and the next tier's.
    pub resolution: PromDuration,
    /// How long its windows are kept (default: `storage.retention`); longer than `after`.
    #[serde(default)]
    pub retention: Option<PromDuration>,
}

/// Most `storage.downsampling` tiers.
pub const MAX_DOWNSAMPLING_TIERS: usize = 8;

/// One `storage.retention_rules` entry.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetentionRuleConfig {
    /// A series selector: `{job="node", __name__=~"node_softnet.*"}`.
    pub matchers: String,
    /// How long the series it matches are kept.
    pub retention: PromDuration,
}

/// Most `storage.retention_rules` (each is checked against the series of every block at
/// each maintenance pass).
pub const MAX_RETENTION_RULES: usize = 100;

/// `storage.exemplars:` settings (Prometheus's section).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ExemplarsConfig {
    /// Most exemplars kept in memory (and the WAL), the oldest going first (default
    /// 100000; 0 keeps none). Each takes about 100 bytes plus its labels.
    pub max_exemplars: usize,
}

impl Default for ExemplarsConfig {
    fn default() -> Self {
        Self {
            max_exemplars: 100_000,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("./lookout-data"),
            retention: PromDuration(Duration::from_secs(15 * 86_400)),
            retention_size: ByteSize(0),
            wal_sync: WalSync::Every(Duration::from_secs(1)),
            out_of_order_window: ZeroableDuration(Duration::from_secs(600)),
            future_tolerance: ZeroableDuration(Duration::from_secs(600)),
            wal_segment_size: ByteSize(32 << 20),
            block_duration: PromDuration(Duration::from_secs(2 * 3600)),
            max_series: 0,
            max_labels_per_series: 128,
            max_label_name_length: 1024,
            max_label_value_length: 16 * 1024,
            exemplars: ExemplarsConfig::default(),
            retention_rules: Vec::new(),
            downsampling: Vec::new(),
            page_cache_size: ByteSize(64 << 20),
        }
    }
}

/// `web:` settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Address the HTTP server listens on (default `127.0.0.1:9180`).
    pub listen_address: ListenAddress,
    /// The URL users reach Lookout at (`$externalURL` in templates, links in
    /// notifications); default `http://` + the listen address.
    pub external_url: Option<String>,
    /// Longest a client may take to send its request headers (default 10s); slower
    /// connections are closed.
    pub read_header_timeout: PromDuration,
    /// Most connections served at once (default 10000; at most the open-file limit less
    /// 512); past it a connection gets 503 and is closed.
    pub max_connections: usize,
    /// Roles of the web configuration file's basic-auth users (`viewer`, `operator`,
    /// `admin`); unlisted users are viewers.
    pub roles: BTreeMap<String, lookout_server::Role>,
    /// Bearer tokens for machines (Grafana, scripts), each read from a file or an
    /// environment variable, never written here.
    pub bearer_tokens: Vec<BearerTokenConfig>,
    /// Whether the health probes (`/-/healthy`, `/-/ready`, `/health/live`,
    /// `/health/ready`) answer without credentials (default true).
    pub open_probes: bool,
    /// Largest request body accepted (default 2MB); larger ones get 413.
    pub max_request_body_size: ByteSize,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            listen_address: ListenAddress("127.0.0.1:9180".into()),
            external_url: None,
            read_header_timeout: PromDuration(Duration::from_secs(10)),
            max_connections: 10_000,
            roles: BTreeMap::new(),
            bearer_tokens: Vec::new(),
            open_probes: true,
            max_request_body_size: ByteSize(2 << 20),
        }
    }
}

/// One entry of `web.bearer_tokens`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BearerTokenConfig {
    /// Who the token stands for (audit, logs).
    pub name: String,
    /// File holding the token (surrounding whitespace ignored).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Environment variable holding the token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// What it may do (default `viewer`).
    #[serde(default = "viewer")]
    pub role: lookout_server::Role,
}

fn viewer() -> lookout_server::Role {
    lookout_server::Role::Viewer
}

/// Value errors from yaml_serde name the section (`global: …`) and the line of the key;
/// add the key itself (`global.scrape_interval: …`) read from that line of the source.
fn name_key(msg: &str, text: &str, line: usize) -> String {
    let key = text
        .lines()
        .nth(line.saturating_sub(1))
        .and_then(|l| l.trim().trim_start_matches("- ").split_once(':'))
        .map(|(k, _)| k.trim().to_string())
        .filter(|k| !k.is_empty());
    let Some(key) = key else {
        return msg.to_string();
    };
    if msg.contains(&format!("`{key}`")) {
        return msg.to_string();
    }
    match msg.split_once(": ") {
        Some((path, rest)) if !path.contains(' ') => format!("{path}.{key}: {rest}"),
        _ => format!("{key}: {msg}"),
    }
}

impl Config {
    /// The configuration in effect, as YAML with every default filled in (passwords in
    /// DSNs hidden).
    pub fn to_yaml(&self) -> String {
        crate::render::to_yaml(self)
    }

    /// The rule packs in effect: the configured ones, or those of the collectors on.
    pub fn effective_rule_packs(&self) -> Vec<lookout_rules::packs::Pack> {
        let names: Vec<String> = match &self.rule_packs {
            Some(v) => v.clone(),
            None => {
                let c = &self.collectors;
                [
                    ("host", c.host.enabled),
                    ("postgres", !c.postgres.is_empty()),
                    ("redis", !c.redis.is_empty()),
                ]
                .iter()
                .filter(|(_, on)| *on)
                .map(|(n, _)| n.to_string())
                .collect()
            }
        };
        names
            .iter()
            .filter_map(|n| lookout_rules::packs::get(n))
            .collect()
    }

    /// Parses configuration text; errors name the key and its line.
    pub fn parse(text: &str) -> Result<Self, Error> {
        Self::parse_text(text).map_err(Error::Invalid)
    }

    fn parse_text(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let c = yaml_serde::from_str::<Config>(text).map_err(|e| {
            let msg = e.to_string();
            match e.location() {
                Some(loc) => name_key(&msg, text, loc.line()),
                None => msg,
            }
        })?;
        c.validate()?;
        Ok(c)
    }

    /// Checks every `remote_write` entry: an http(s) URL, a unique name usable as a
    /// directory, no protocol headers, shards that make sense, a known message.
    fn validate_remote_write(&self) -> Result<(), String> {
        let mut names = std::collections::BTreeSet::new();
        for (i, r) in self.remote_write.iter().enumerate() {
            let at = format!("remote_write[{i}]");
            r.check_common(&at, &mut names)?;
            let name = r.effective_name();
            if name.is_empty()
                || name.len() > 128
                || name.starts_with('.')
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(format!(
                    "{at}: name {name:?} must be 1-128 letters, digits, '-', '_' or '.', not starting with '.'"
                ));
            }
            let q = &r.queue_config;
            if q.max_samples_per_send == 0 || q.max_shards == 0 || q.min_shards == 0 {
                return Err(format!(
                    "{at}: queue_config: max_samples_per_send, max_shards and min_shards must be at least 1"
                ));
            }
            if q.min_shards > q.max_shards {
                return Err(format!(
                    "{at}: queue_config: min_shards {} is more than max_shards {}",
                    q.min_shards, q.max_shards
                ));
            }
            match r.protobuf_message.as_deref() {
                None | Some("prometheus.WriteRequest") | Some("io.prometheus.write.v2.Request") => {
                }
                Some(m) => {
                    return Err(format!(
                        "{at}: unknown remote write protobuf_message {m:?}; use prometheus.WriteRequest or io.prometheus.write.v2.Request"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks every `remote_read` entry: an http(s) URL, a unique name, one credential.
    fn validate_remote_read(&self) -> Result<(), String> {
        let mut names = std::collections::BTreeSet::new();
        for (i, r) in self.remote_read.iter().enumerate() {
            r.check_common(&format!("remote_read[{i}]"), &mut names)?;
        }
        Ok(())
    }

    /// Checks `storage.retention_rules`: how many, their selectors, their retentions.
    fn validate_retention_rules(&self) -> Result<(), String> {
        let rules = &self.storage.retention_rules;
        if rules.len() > MAX_RETENTION_RULES {
            return Err(format!(
                "storage.retention_rules: {} rules, at most {MAX_RETENTION_RULES}",
                rules.len()
            ));
        }
        // The head holds up to 1.5 block durations, kept whole; rules apply to blocks.
        let least = self.storage.block_duration.0 * 2;
        for (i, r) in rules.iter().enumerate() {
            lookout_promql::parse_selector(&r.matchers).map_err(|e| {
                format!(
                    "storage.retention_rules[{i}].matchers {:?}: {e}",
                    r.matchers
                )
            })?;
            if r.retention.0 < least {
                return Err(format!(
                    "storage.retention_rules[{i}].retention: {} is shorter than twice storage.block_duration ({})",
                    r.retention,
                    PromDuration(least)
                ));
            }
        }
        Ok(())
    }

    /// Checks `storage.downsampling`: each resolution divides the block duration and
    /// the next tier's, `after` grows from tier to tier and leaves the head alone,
    /// each retention outlasts its `after`.
    fn validate_downsampling(&self) -> Result<(), String> {
        let st = &self.storage;
        let tiers = &st.downsampling;
        if tiers.len() > MAX_DOWNSAMPLING_TIERS {
            return Err(format!(
                "storage.downsampling: {} tiers, at most {MAX_DOWNSAMPLING_TIERS}",
                tiers.len()
            ));
        }
        let block = st.block_duration.0;
        let divides = |a: Duration, b: Duration| {
            a.as_millis() > 0 && b.as_millis().is_multiple_of(a.as_millis())
        };
        for (i, t) in tiers.iter().enumerate() {
            let at = format!("storage.downsampling[{i}]");
            if t.resolution.0 < Duration::from_secs(1) || !divides(t.resolution.0, block) {
                return Err(format!(
                    "{at}.resolution: {} does not divide storage.block_duration ({})",
                    t.resolution, st.block_duration
                ));
            }
            if t.after.0 < block * 2 {
                return Err(format!(
                    "{at}.after: {} is shorter than twice storage.block_duration ({})",
                    t.after,
                    PromDuration(block * 2)
                ));
            }
            // The tier's source (the samples, or the previous tier) must still hold a
            // span's data when the span is rolled up, `after` past its end.
            let span = Duration::from_millis(
                lookout_tsdb::tier_span(t.resolution.0.as_millis() as i64, block.as_millis() as i64)
                    .max(0) as u64,
            );
            let (source, named) = match i.checked_sub(1).map(|p| &tiers[p]) {
                None => (st.retention, "storage.retention".to_string()),
                Some(p) => (
                    p.retention.unwrap_or(st.retention),
                    format!("storage.downsampling[{}].retention", i - 1),
                ),
            };
            if source.0 < t.after.0.saturating_add(span) {
                return Err(format!(
                    "{at}: {named} ({source}) must be at least its after ({}) plus the {} a tier block of {} spans, or data is deleted before it is rolled up",
                    t.after,
                    PromDuration(span),
                    t.resolution
                ));
            }
            let kept = t.retention.unwrap_or(st.retention);
            if kept.0 <= t.after.0 {
                return Err(format!(
                    "{at}.retention: {kept} is not longer than its after ({}){}",
                    t.after,
                    if t.retention.is_none() {
                        " (it defaults to storage.retention)"
                    } else {
                        ""
                    }
                ));
            }
            if let Some(p) = i.checked_sub(1).map(|p| &tiers[p]) {
                if t.resolution.0 <= p.resolution.0 || !divides(p.resolution.0, t.resolution.0) {
                    return Err(format!(
                        "{at}.resolution: {} is not a multiple of the previous tier's ({})",
                        t.resolution, p.resolution
                    ));
                }
                if t.after.0 <= p.after.0 {
                    return Err(format!(
                        "{at}.after: {} is not later than the previous tier's ({})",
                        t.after, p.after
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks what the types cannot: sections Lookout does not run yet, scrape jobs,
    /// unique collector names, one password source.
    fn validate(&self) -> Result<(), String> {
        self.validate_remote_write()?;
        self.validate_remote_read()?;
        let mut cluster_names = std::collections::BTreeSet::new();
        for c in &self.health.clusters {
            if !cluster_names.insert(c.name.as_str()) {
                return Err(format!(
                    "health.clusters: the name {:?} is used twice",
                    c.name
                ));
            }
            if let Err(e) = lookout_promql::parse(&c.members) {
                return Err(format!("health.clusters {:?}: members: {e}", c.name));
            }
            let q = match &c.quorum {
                Some(q) => q
                    .rule()
                    .map_err(|e| format!("health.clusters {:?}: {e}", c.name))?,
                None => lookout_diagnose::cluster::Quorum::Majority,
            };
            if let Some(size) = c.size
                && (size == 0 || q.required(size) > size)
            {
                return Err(format!(
                    "health.clusters {:?}: a quorum of {} cannot be met by {size} members",
                    c.name,
                    q.required(size)
                ));
            }
        }
        if !(1..=100_000).contains(&self.snapshots.max_snapshots) {
            return Err(format!(
                "snapshots.max_snapshots: {} is outside 1 to 100000",
                self.snapshots.max_snapshots
            ));
        }
        let block = self.storage.block_duration.0;
        if block < Duration::from_secs(60) || block > Duration::from_secs(86_400) {
            return Err(format!(
                "storage.block_duration: {} is outside 1m to 1d",
                self.storage.block_duration
            ));
        }
        self.validate_retention_rules()?;
        self.validate_downsampling()?;
        if let Some(t) = &self.otlp.translation_strategy
            && lookout_remote::otlp::Translation::parse(t).is_none()
        {
            return Err(format!(
                "otlp.translation_strategy: {t:?} is not one of UnderscoreEscapingWithSuffixes (the default), UnderscoreEscapingWithoutSuffixes, NoUTF8EscapingWithSuffixes, NoTranslation"
            ));
        }
        if self.global.timeout() > self.global.scrape_interval.0 {
            return Err("global: scrape timeout greater than scrape interval".into());
        }
        let mut jobs = std::collections::HashSet::new();
        for sc in &self.scrape_configs {
            sc.validate(self.global.scrape_interval.0, self.global.timeout())?;
            if !jobs.insert(&sc.job_name) {
                return Err(format!(
                    "scrape_configs: found multiple scrape configs with job name {:?}",
                    sc.job_name
                ));
            }
        }
        let c = &self.collectors;
        let mut seen = std::collections::HashSet::new();
        for (kind, name) in c
            .postgres
            .iter()
            .map(|p| ("postgres", &p.name))
            .chain(c.redis.iter().map(|r| ("redis", &r.name)))
        {
            if name.is_empty() {
                return Err(format!("collectors.{kind}: every entry needs a name"));
            }
            if !seen.insert((kind, name)) {
                return Err(format!(
                    "collectors.{kind}: the name {name:?} is used twice (it becomes the instance label)"
                ));
            }
        }
        for p in &c.postgres {
            if p.password_file.is_some() && p.password_env.is_some() {
                return Err(format!(
                    "collectors.postgres {:?}: set password_file or password_env, not both",
                    p.name
                ));
            }
        }
        for r in &c.redis {
            if r.password_file.is_some() && r.password_env.is_some() {
                return Err(format!(
                    "collectors.redis {:?}: set password_file or password_env, not both",
                    r.name
                ));
            }
            if let Some(b) = &r.big_keys {
                if !(1..=10_000).contains(&b.batch) {
                    return Err(format!(
                        "collectors.redis {:?}: big_keys.batch {} is out of range (1 to 10000)",
                        r.name, b.batch
                    ));
                }
                if b.max_keys == 0 || b.max_keys > 10_000_000 {
                    return Err(format!(
                        "collectors.redis {:?}: big_keys.max_keys {} is out of range (1 to 10000000)",
                        r.name, b.max_keys
                    ));
                }
                if b.top == 0 || b.top > 1000 {
                    return Err(format!(
                        "collectors.redis {:?}: big_keys.top {} is out of range (1 to 1000)",
                        r.name, b.top
                    ));
                }
            }
        }
        for am in &self.alerting.alertmanagers {
            if am.api_version != "v2" {
                return Err(format!(
                    "alerting.alertmanagers: api_version {:?} is not supported (Alertmanager serves v2)",
                    am.api_version
                ));
            }
            if am.scheme != "http" && am.scheme != "https" {
                return Err(format!(
                    "alerting.alertmanagers: invalid scheme {:?}",
                    am.scheme
                ));
            }
        }
        for r in &self.alerting.alert_relabel_configs {
            r.validate()
                .map_err(|e| format!("alerting.alert_relabel_configs: {e}"))?;
        }
        if !self.notifier.escalations.is_empty() && self.notifier.config_file.is_none() {
            return Err("notifier.escalations need notifier.config_file (their receivers are defined there)".into());
        }
        for e in &self.notifier.escalations {
            if e.name.is_empty() || e.levels.is_empty() {
                return Err(
                    "notifier.escalations: every policy needs a name and at least one level".into(),
                );
            }
        }
        let shipped = lookout_dashboards::Library::shipped_names();
        for name in self.dashboards.shipped.iter().flatten() {
            if !shipped.contains(name) {
                return Err(format!(
                    "dashboards.shipped: unknown dashboard {name:?} (known: {})",
                    shipped.join(", ")
                ));
            }
        }
        for name in self.rule_packs.iter().flatten() {
            if lookout_rules::packs::get(name).is_none() {
                let known: Vec<&str> = lookout_rules::packs::PACKS.iter().map(|p| p.name).collect();
                return Err(format!(
                    "rule_packs: unknown pack {name:?} (known: {})",
                    known.join(", ")
                ));
            }
        }
        let mut names = std::collections::HashSet::new();
        for t in &self.web.bearer_tokens {
            if t.name.is_empty() || !names.insert(&t.name) {
                return Err(format!(
                    "web.bearer_tokens: every token needs a name of its own ({:?})",
                    t.name
                ));
            }
            if t.token_file.is_some() == t.token_env.is_some() {
                return Err(format!(
                    "web.bearer_tokens {:?}: set token_file or token_env (exactly one; tokens are never written in this file)",
                    t.name
                ));
            }
        }
        if let Some(p) = c.processes.iter().find(|p| p.name.is_empty()) {
            return Err(format!("collectors.processes: empty name in {p:?}"));
        }
        Ok(())
    }

    /// Reads and parses a configuration file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut c = Self::parse_text(&text).map_err(|message| Error::InFile {
            path: path.to_path_buf(),
            message,
        })?;
        c.base_dir = path.parent().map(Path::to_path_buf);
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_documented_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.global.scrape_interval.0, Duration::from_secs(15));
        assert_eq!(c.global.evaluation_interval.0, Duration::from_secs(60));
        assert_eq!(c.storage.path, PathBuf::from("./lookout-data"));
        assert_eq!(c.storage.retention.0, Duration::from_secs(15 * 86_400));
        assert_eq!(c.web.listen_address.0, "127.0.0.1:9180");
    }

    #[test]
    fn full_file_parses() {
        let c = Config::parse(
            "global:\n  scrape_interval: 5s\n  evaluation_interval: 30s\nstorage:\n  path: /tmp/x\n  retention: 30d\nweb:\n  listen_address: 0.0.0.0:0\n",
        )
        .unwrap();
        assert_eq!(c.global.scrape_interval.0, Duration::from_secs(5));
        assert_eq!(c.storage.retention.0, Duration::from_secs(30 * 86_400));
        assert_eq!(c.web.listen_address.0, "0.0.0.0:0");
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let e = Config::parse("global:\n  scrape_interval: 5s\n  scrape_intervall: 5s\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("scrape_intervall"), "{e}");
        assert!(e.contains("line 3"), "{e}");
        let e = Config::parse("storage:\n  path: x\nrules: []\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("rules") && e.contains("line 3"), "{e}");
    }

    #[test]
    fn bad_values_are_named_with_their_line() {
        let e = Config::parse("global:\n  scrape_interval: soon\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("scrape_interval") && e.contains("line 2"), "{e}");
        let e = Config::parse("storage:\n  retention: 0s\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("greater than 0") && e.contains("line 2"), "{e}");
        let e = Config::parse("web:\n  listen_address: localhost\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs a port") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn retention_rules_parse_and_are_checked() {
        let c = Config::parse(
            "storage:\n  retention_rules:\n    - matchers: '{job=\"node\", __name__=~\"node_softnet.*\"}'\n      retention: 3d\n    - matchers: 'up'\n      retention: 90d\n",
        )
        .unwrap();
        assert_eq!(c.storage.retention_rules.len(), 2);
        assert_eq!(
            c.storage.retention_rules[0].retention.0,
            Duration::from_secs(3 * 86_400)
        );
        let o = crate::storage_options(&c);
        assert_eq!(o.retention_rules.len(), 2);
        assert_eq!(o.retention_rules[0].matchers.len(), 2);
        assert_eq!(o.retention_rules[1].selector, "up");
        for (bad, says) in [
            ("'{job=~\"(\"}'", "retention_rules[0].matchers"),
            ("'rate(up[5m])'", "not a series selector"),
            (
                "'{job=\"x\"}'\n      retention: 1h",
                "shorter than twice storage.block_duration",
            ),
        ] {
            let text = if bad.contains("retention:") {
                format!("storage:\n  retention_rules:\n    - matchers: {bad}\n")
            } else {
                format!(
                    "storage:\n  retention_rules:\n    - matchers: {bad}\n      retention: 1d\n"
                )
            };
            let e = Config::parse(&text).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let many: String = (0..=MAX_RETENTION_RULES)
            .map(|i| format!("    - {{ matchers: 'up{{i=\"{i}\"}}', retention: 1d }}\n"))
            .collect();
        let e = Config::parse(&format!("storage:\n  retention_rules:\n{many}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("at most 100"), "{e}");
    }

    #[test]
    fn downsampling_tiers_parse_and_are_checked() {
        let c = Config::parse(
            "storage:\n  retention: 15d\n  downsampling:\n    - { after: 7d, resolution: 5m, retention: 90d }\n    - { after: 30d, resolution: 1h, retention: 1y }\n",
        )
        .unwrap();
        let o = crate::storage_options(&c);
        assert_eq!(o.downsampling.len(), 2);
        assert_eq!(o.downsampling[0].resolution, Duration::from_secs(300));
        assert_eq!(
            o.downsampling[1].retention,
            Duration::from_secs(365 * 86_400)
        );
        for (tiers, says) in [
            (
                "[{ after: 7d, resolution: 7m }]",
                "does not divide storage.block_duration",
            ),
            (
                "[{ after: 7d, resolution: 1d }]",
                "does not divide storage.block_duration",
            ),
            ("[{ after: 1h, resolution: 5m }]", "shorter than twice"),
            (
                "[{ after: 2d, resolution: 5m, retention: 90d }, { after: 30d, resolution: 1h }]",
                "defaults to storage.retention",
            ),
            (
                "[{ after: 13d, resolution: 5m, retention: 90d }]",
                "storage.retention (2w1d) must be at least its after (1w6d) plus the 3d",
            ),
            (
                "[{ after: 2d, resolution: 5m, retention: 20d }, { after: 10d, resolution: 1h, retention: 90d }]",
                "storage.downsampling[0].retention (2w6d) must be at least its after (1w3d) plus the 1w5d",
            ),
            (
                "[{ after: 7d, resolution: 10m, retention: 90d }, { after: 30d, resolution: 15m, retention: 90d }]",
                "not a multiple of the previous",
            ),
            (
                "[{ after: 7d, resolution: 5m, retention: 90d }, { after: 7d, resolution: 1h, retention: 90d }]",
                "not later than the previous",
            ),
            (
                "[{ after: 7d, resolution: 5m, every: 1h }]",
                "unknown field",
            ),
            // An `after` near the largest duration is refused, not overflowed.
            (
                "[{ after: 292y, resolution: 5m }]",
                "must be at least its after",
            ),
        ] {
            let e = Config::parse(&format!("storage:\n  downsampling: {tiers}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{tiers}: {e}");
        }
    }

    #[test]
    fn storage_keys_parse() {
        let c = Config::parse(
            "storage:\n  retention_size: 512MB\n  wal_sync: always\n  out_of_order_window: 0s\n  max_series: 1000\n",
        )
        .unwrap();
        assert_eq!(c.storage.retention_size, ByteSize(512 << 20));
        assert_eq!(c.storage.wal_sync, WalSync::Always);
        assert_eq!(c.storage.out_of_order_window.0, Duration::ZERO);
        assert_eq!(c.storage.max_series, 1000);
        let e = Config::parse("storage:\n  wal_sync: sometimes\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("storage.wal_sync") && e.contains("line 2"),
            "{e}"
        );
        let e = Config::parse("storage:\n  retention_size: 5XB\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("retention_size"), "{e}");
        let c = Config::parse("storage:\n  block_duration: 10m\n").unwrap();
        assert_eq!(c.storage.block_duration.0, Duration::from_secs(600));
        for bad in ["30s", "2d"] {
            let e = Config::parse(&format!("storage:\n  block_duration: {bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("storage.block_duration") && e.contains(bad),
                "{e}"
            );
        }
    }

    #[test]
    fn rendered_config_parses_back_to_itself() {
        let c = Config::parse(
            "global:\n  scrape_interval: 90s\nstorage:\n  wal_sync: always\n  retention: 30d\n",
        )
        .unwrap();
        // Rendering is what parses back: every default filled in, and stable.
        let back = Config::parse(&c.to_yaml()).unwrap();
        assert_eq!(back.to_yaml(), c.to_yaml());
        assert_eq!(back.storage, c.storage);
        assert_eq!(back.global.timeout(), Duration::from_secs(10));
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(14 * 86_400)), "2w");
    }

    #[test]
    fn rendered_config_hides_passwords_and_lists_every_job() {
        let c = Config::parse(
            "collectors:\n  processes: [{name: postgres}]\n  postgres:\n    - name: main\n      dsn: \"postgres://u:hunter2@127.0.0.1/db\"\n  redis:\n    - name: r\n      url: \"redis://x:pw@127.0.0.1:6379\"\nrule_files: [\"a/*.yml\"]\nscrape_configs:\n  - job_name: node\n    static_configs: [{targets: ['127.0.0.1:9100', 'h:1']}]\n    file_sd_configs: [{files: [x.json]}]\n",
        )
        .unwrap();
        let y = c.to_yaml();
        assert!(!y.contains("hunter2") && !y.contains(":pw@"), "{y}");
        assert!(y.contains("postgres://u:<secret>@127.0.0.1/db"), "{y}");
        let back = Config::parse(&y).unwrap();
        assert_eq!(back.scrape_configs[0].static_configs[0].targets.len(), 2);
        assert_eq!(back.scrape_configs[0].file_sd_configs[0].files, ["x.json"]);
        assert_eq!(back.rule_files, ["a/*.yml"]);
        assert_eq!(back.collectors.processes, c.collectors.processes);
        assert_eq!(
            back.effective_rule_packs().len(),
            c.effective_rule_packs().len()
        );
    }

    #[test]
    fn remote_write_entries_parse_as_prometheus_writes_them() {
        let c = Config::parse(
            r#"remote_write:
  - url: https://mimir.example/api/v1/push
    name: mimir
    remote_timeout: 10s
    headers: { X-Scope-OrgID: team-a }
    basic_auth: { username: u, password_file: /run/secrets/pw }
    tls_config: { insecure_skip_verify: false }
    write_relabel_configs:
      - source_labels: [__name__]
        regex: go_.*
        action: drop
    queue_config: { max_shards: 10, min_shards: 2, max_samples_per_send: 1000, batch_send_deadline: 2s, sample_age_limit: 1h, retry_on_http_429: false }
    metadata_config: { send: false, send_interval: 2m }
    protobuf_message: io.prometheus.write.v2.Request
    max_backlog: 6h
    max_backlog_bytes: 2GB
  - url: http://vm:8428/api/v1/write
"#,
        )
        .unwrap();
        let s = crate::Settings::new(&c).unwrap();
        let (a, b) = (&s.remote_write[0], &s.remote_write[1]);
        assert_eq!(a.name, "mimir");
        assert_eq!(
            a.headers,
            vec![("X-Scope-OrgID".to_string(), "team-a".to_string())]
        );
        assert_eq!(a.queue.max_shards, 10);
        assert_eq!(a.queue.sample_age_limit, Duration::from_secs(3600));
        assert!(!a.queue.retry_on_http_429 && !a.send_metadata);
        assert_eq!(a.protocol, lookout_remote::send::Protocol::V2);
        assert_eq!(
            (a.max_backlog, a.max_backlog_bytes),
            (Duration::from_secs(6 * 3600), 2 << 30)
        );
        assert_eq!(b.name.len(), 6, "a hash of the URL: {}", b.name);
        assert_eq!(b.queue.max_samples_per_send, 2000);
        assert_eq!(b.max_backlog, Duration::from_secs(86_400));
        assert_eq!(b.protocol, lookout_remote::send::Protocol::V1);
        let c = Config::parse(
            "remote_read:\n  - url: http://prom:9090/api/v1/read\n    read_recent: true\n    required_matchers: { dc: west }\n",
        )
        .unwrap();
        let s = crate::Settings::new(&c).unwrap();
        let r = &s.remote_read[0];
        assert!(r.read_recent && r.filter_external_labels);
        assert_eq!(
            r.required_matchers,
            vec![("dc".to_string(), "west".to_string())]
        );
        assert_eq!(r.timeout, Duration::from_secs(60));
        for (bad, want) in [
            (
                "remote_write: [{url: ftp://x}]",
                "must be http:// or https://",
            ),
            (
                "remote_write: [{url: http://a}, {url: http://a}]",
                "duplicate remote name",
            ),
            (
                "remote_write: [{url: http://a, name: ../x}]",
                "name \"../x\"",
            ),
            (
                "remote_write: [{url: http://a, headers: {Content-Type: x}}]",
                "reserved header",
            ),
            (
                "remote_write: [{url: http://a, queue_config: {min_shards: 5, max_shards: 2}}]",
                "min_shards 5 is more than max_shards 2",
            ),
            (
                "remote_write: [{url: http://a, protobuf_message: foo}]",
                "unknown remote write protobuf_message",
            ),
            (
                "remote_write: [{url: http://a, oauth2: {client_id: x}}]",
                "oauth2",
            ),
            (
                "remote_write: [{url: http://a, basic_auth: {username: u}, bearer_token: t}]",
                "at most one of",
            ),
            (
                "remote_read: [{url: file:///x}]",
                "must be http:// or https://",
            ),
            (
                "remote_read: [{url: http://a}, {url: http://a}]",
                "duplicate remote name",
            ),
            (
                "remote_read: [{url: http://a, required_matchers: [x]}]",
                "required_matchers",
            ),
        ] {
            let e = Config::parse(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn durations_parse_like_prometheus() {
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("30m1h").is_err());
        assert!(parse_duration("1.5h").is_err());
        assert!(parse_duration("").is_err());
    }
}
