//! The configuration in effect as YAML (`/api/v1/status/config`): a serde view of the
//! file's own shape with every default filled in and passwords hidden, so it parses back
//! to the same configuration.

use std::path::Path;

use serde::Serialize;

use crate::file::{Config, WalSync, format_duration};

/// The YAML of `c`'s settings in effect.
pub(crate) fn to_yaml(c: &Config) -> String {
    yaml_serde::to_string(&Rendered::of(c)).expect("the rendered configuration serializes")
}

/// A DSN with any password replaced by `<secret>`, for display.
pub(crate) fn redact(dsn: &str) -> String {
    if let Some((scheme, rest)) = dsn.split_once("://")
        && let Some((cred, host)) = rest.split_once('@')
        && let Some((user, _)) = cred.split_once(':')
    {
        return format!("{scheme}://{user}:<secret>@{host}");
    }
    dsn.split_whitespace()
        .map(|kv| {
            if kv.starts_with("password=") {
                "password=<secret>".to_string()
            } else {
                kv.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What [`Config::to_yaml`] writes: the settings in effect, defaults filled in, in the
/// file's own shape (so it parses back to the same configuration).
#[derive(Serialize)]
struct Rendered<'a> {
    global: RenderedGlobal,
    query: RenderedQuery,
    collectors: RenderedCollectors<'a>,
    storage: RenderedStorage<'a>,
    web: RenderedWeb<'a>,
    rule_packs: Vec<&'static str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    rule_files: &'a [String],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    scrape_configs: Vec<RenderedScrape<'a>>,
}

#[derive(Serialize)]
struct RenderedGlobal {
    scrape_interval: String,
    scrape_timeout: String,
    evaluation_interval: String,
}

#[derive(Serialize)]
struct RenderedQuery {
    lookback_delta: String,
    timeout: String,
    max_samples: usize,
    max_concurrency: usize,
}

#[derive(Serialize)]
struct RenderedCollectors<'a> {
    host: Enabled,
    process: Enabled,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    processes: Vec<Named<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    postgres: Vec<RenderedPostgres<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    redis: Vec<RenderedRedis<'a>>,
}

#[derive(Serialize)]
struct Enabled {
    enabled: bool,
}

#[derive(Serialize)]
struct Named<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct RenderedPostgres<'a> {
    name: &'a str,
    dsn: String,
    top_statements: usize,
    diagnostics: bool,
}

#[derive(Serialize)]
struct RenderedRedis<'a> {
    name: &'a str,
    url: String,
}

#[derive(Serialize)]
struct RenderedStorage<'a> {
    path: &'a Path,
    retention: String,
    retention_size: u64,
    wal_sync: String,
    out_of_order_window: String,
    future_tolerance: String,
    wal_segment_size: u64,
    block_duration: String,
    max_series: usize,
    max_labels_per_series: usize,
    max_label_name_length: usize,
    max_label_value_length: usize,
    exemplars: RenderedExemplars,
}

#[derive(Serialize)]
struct RenderedExemplars {
    max_exemplars: usize,
}

#[derive(Serialize)]
struct RenderedWeb<'a> {
    listen_address: &'a str,
}

#[derive(Serialize)]
struct RenderedScrape<'a> {
    job_name: &'a str,
    scrape_interval: String,
    scrape_timeout: String,
    metrics_path: &'a str,
    scheme: &'static str,
    honor_labels: bool,
    honor_timestamps: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    static_configs: Vec<Targets<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    file_sd_configs: Vec<Files<'a>>,
}

#[derive(Serialize)]
struct Targets<'a> {
    targets: Vec<&'a str>,
}

#[derive(Serialize)]
struct Files<'a> {
    files: &'a [String],
}

impl<'a> Rendered<'a> {
    fn of(c: &'a Config) -> Self {
        let st = &c.storage;
        let co = &c.collectors;
        let (interval, timeout) = (c.global.scrape_interval.0, c.global.timeout());
        Self {
            global: RenderedGlobal {
                scrape_interval: c.global.scrape_interval.to_string(),
                scrape_timeout: format_duration(timeout),
                evaluation_interval: c.global.evaluation_interval.to_string(),
            },
            query: RenderedQuery {
                lookback_delta: c.query.lookback_delta.to_string(),
                timeout: c.query.timeout.to_string(),
                max_samples: c.query.max_samples,
                max_concurrency: c.query.max_concurrency,
            },
            collectors: RenderedCollectors {
                host: Enabled {
                    enabled: co.host.enabled,
                },
                process: Enabled {
                    enabled: co.process.enabled,
                },
                processes: co
                    .processes
                    .iter()
                    .map(|p| Named { name: &p.name })
                    .collect(),
                postgres: co
                    .postgres
                    .iter()
                    .map(|p| RenderedPostgres {
                        name: &p.name,
                        dsn: redact(&p.dsn),
                        top_statements: p.top_statements,
                        diagnostics: p.diagnostics,
                    })
                    .collect(),
                redis: co
                    .redis
                    .iter()
                    .map(|r| RenderedRedis {
                        name: &r.name,
                        url: redact(&r.url),
                    })
                    .collect(),
            },
            storage: RenderedStorage {
                path: &st.path,
                retention: st.retention.to_string(),
                retention_size: st.retention_size.0,
                wal_sync: match st.wal_sync {
                    WalSync::Always => "always".to_string(),
                    WalSync::Every(d) => format_duration(d),
                },
                out_of_order_window: format_duration(st.out_of_order_window.0),
                future_tolerance: format_duration(st.future_tolerance.0),
                wal_segment_size: st.wal_segment_size.0,
                block_duration: st.block_duration.to_string(),
                max_series: st.max_series,
                max_labels_per_series: st.max_labels_per_series,
                max_label_name_length: st.max_label_name_length,
                max_label_value_length: st.max_label_value_length,
                exemplars: RenderedExemplars {
                    max_exemplars: st.exemplars.max_exemplars,
                },
            },
            web: RenderedWeb {
                listen_address: &c.web.listen_address.0,
            },
            rule_packs: c.effective_rule_packs().iter().map(|p| p.name).collect(),
            rule_files: &c.rule_files,
            scrape_configs: c
                .scrape_configs
                .iter()
                .map(|sc| {
                    let (iv, to) = sc.timing(interval, timeout);
                    let targets: Vec<&str> = sc
                        .static_configs
                        .iter()
                        .flat_map(|s| s.targets.iter().map(String::as_str))
                        .collect();
                    RenderedScrape {
                        job_name: &sc.job_name,
                        scrape_interval: format_duration(iv),
                        scrape_timeout: format_duration(to),
                        metrics_path: &sc.metrics_path,
                        scheme: sc.scheme.as_str(),
                        honor_labels: sc.honor_labels,
                        honor_timestamps: sc.honor_timestamps,
                        static_configs: if targets.is_empty() {
                            Vec::new()
                        } else {
                            vec![Targets { targets }]
                        },
                        file_sd_configs: sc
                            .file_sd_configs
                            .iter()
                            .map(|f| Files { files: &f.files })
                            .collect(),
                    }
                })
                .collect(),
        }
    }
}
