//! Prometheus's `scrape_configs` entries, deserialized with Prometheus's names and
//! defaults. Unknown keys are errors: nothing is silently ignored.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use lookout_model::relabel::RelabelConfig;
use serde::Deserialize;
use serde::de::{self, Deserializer};

/// A duration written as Prometheus writes them (`15s`, `1m30s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromDuration(pub Duration);

impl<'de> Deserialize<'de> for PromDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        lookout_model::parse_duration(&s)
            .map(Self)
            .map_err(de::Error::custom)
    }
}

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Plain HTTP (default).
    #[default]
    Http,
    /// HTTPS.
    Https,
}

impl Scheme {
    /// As written in URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

pub use lookout_http::{BasicAuth, TlsConfig};

/// `static_configs` entry.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    /// `host:port` addresses.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Labels for every target of the group.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `file_sd_configs` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSdConfig {
    /// Files (`.json`, `.yml`, `.yaml`; the last path element may be a `*` glob).
    pub files: Vec<String>,
    /// Re-read at least this often (default 5m); changes are also noticed within
    /// seconds.
    #[serde(default)]
    pub refresh_interval: Option<PromDuration>,
}

/// One `scrape_configs` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfig {
    /// The `job` label.
    pub job_name: String,
    /// Default: the global `scrape_interval`.
    #[serde(default)]
    pub scrape_interval: Option<PromDuration>,
    /// Default: the global `scrape_timeout` (10s), at most the interval.
    #[serde(default)]
    pub scrape_timeout: Option<PromDuration>,
    /// Default `/metrics`.
    #[serde(default = "default_metrics_path")]
    pub metrics_path: String,
    /// Default `http`.
    #[serde(default)]
    pub scheme: Scheme,
    /// URL query parameters.
    #[serde(default)]
    pub params: BTreeMap<String, Vec<String>>,
    /// Keep the scraped labels when they clash with target labels.
    #[serde(default)]
    pub honor_labels: bool,
    /// Use the timestamps the target exposes (default true).
    #[serde(default = "yes")]
    pub honor_timestamps: bool,
    /// Basic authentication.
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// A bearer token.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// A file holding a bearer token (read at every scrape).
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// TLS settings.
    #[serde(default)]
    pub tls_config: Option<TlsConfig>,
    /// An HTTP proxy to scrape through (`http://host:port`).
    #[serde(default)]
    pub proxy_url: Option<String>,
    /// Ask for gzip-compressed responses (default true, as Prometheus 2.49+).
    #[serde(default = "yes")]
    pub enable_compression: bool,
    /// Fixed targets.
    #[serde(default)]
    pub static_configs: Vec<StaticConfig>,
    /// Targets from files.
    #[serde(default)]
    pub file_sd_configs: Vec<FileSdConfig>,
    /// Rules applied to targets before scraping.
    #[serde(default)]
    pub relabel_configs: Vec<RelabelConfig>,
    /// Rules applied to scraped samples.
    #[serde(default)]
    pub metric_relabel_configs: Vec<RelabelConfig>,
    /// Most samples per scrape (0: no limit); more fails the scrape.
    #[serde(default)]
    pub sample_limit: usize,
    /// Most labels per sample (0: no limit); more fails the scrape.
    #[serde(default)]
    pub label_limit: usize,
    /// Longest label name (0: no limit).
    #[serde(default)]
    pub label_name_length_limit: usize,
    /// Longest label value (0: no limit).
    #[serde(default)]
    pub label_value_length_limit: usize,
    /// The exposition formats to ask for, most preferred first (default: the text
    /// formats, with `PrometheusProto` first when native histograms are scraped).
    #[serde(default)]
    pub scrape_protocols: Vec<ScrapeProtocol>,
    /// Store the native histograms a target exposes (in the protobuf format).
    #[serde(default)]
    pub scrape_native_histograms: bool,
    /// Also store the classic buckets of histograms that are native too (or converted
    /// to custom buckets).
    #[serde(default)]
    pub always_scrape_classic_histograms: bool,
    /// Store classic histograms as native histograms with custom buckets (NHCB), one
    /// series instead of one per bucket.
    #[serde(default)]
    pub convert_classic_histograms_to_nhcb: bool,
    /// Largest uncompressed response body a scrape reads (`10MB`; 0: no limit); a larger
    /// one fails the scrape.
    #[serde(default)]
    pub body_size_limit: lookout_model::ByteSize,
}

/// An exposition format a scrape may ask for, by Prometheus's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ScrapeProtocol {
    /// The protobuf format (the only one with native histograms).
    PrometheusProto,
    /// OpenMetrics 1.0.0.
    #[serde(rename = "OpenMetricsText1.0.0")]
    OpenMetrics1,
    /// OpenMetrics 0.0.1.
    #[serde(rename = "OpenMetricsText0.0.1")]
    OpenMetrics0,
    /// The Prometheus text format 1.0.0.
    #[serde(rename = "PrometheusText1.0.0")]
    PrometheusText1,
    /// The Prometheus text format 0.0.4.
    #[serde(rename = "PrometheusText0.0.4")]
    PrometheusText0,
}

impl ScrapeProtocol {
    /// Its media type, as the `Accept` header names it.
    pub fn media_type(self) -> &'static str {
        match self {
            ScrapeProtocol::PrometheusProto => lookout_expfmt::proto::CONTENT_TYPE,
            ScrapeProtocol::OpenMetrics1 => "application/openmetrics-text;version=1.0.0",
            ScrapeProtocol::OpenMetrics0 => "application/openmetrics-text;version=0.0.1",
            ScrapeProtocol::PrometheusText1 => "text/plain;version=1.0.0",
            ScrapeProtocol::PrometheusText0 => "text/plain;version=0.0.4",
        }
    }
}

fn default_metrics_path() -> String {
    "/metrics".into()
}

fn yes() -> bool {
    true
}

impl ScrapeConfig {
    /// Checks what serde cannot: relabel rules, one kind of authentication, a timeout
    /// within the interval. `global_interval`/`global_timeout` fill the defaults.
    pub fn validate(
        &self,
        global_interval: Duration,
        global_timeout: Duration,
    ) -> Result<(), String> {
        let job = &self.job_name;
        if job.is_empty() {
            return Err("scrape_configs: job_name is empty".into());
        }
        for (what, rules) in [
            ("relabel_configs", &self.relabel_configs),
            ("metric_relabel_configs", &self.metric_relabel_configs),
        ] {
            for r in rules {
                r.validate()
                    .map_err(|e| format!("scrape_configs {job:?}: {what}: {e}"))?;
            }
        }
        let auths = [
            self.basic_auth.is_some(),
            self.bearer_token.is_some(),
            self.bearer_token_file.is_some(),
        ];
        if auths.iter().filter(|a| **a).count() > 1 {
            return Err(format!(
                "scrape_configs {job:?}: at most one of basic_auth, bearer_token and bearer_token_file may be set"
            ));
        }
        let (interval, timeout) = self.timing(global_interval, global_timeout);
        if timeout > interval {
            return Err(format!(
                "scrape_configs {job:?}: scrape timeout greater than scrape interval"
            ));
        }
        for (i, p) in self.scrape_protocols.iter().enumerate() {
            if self.scrape_protocols[..i].contains(p) {
                return Err(format!(
                    "scrape_configs {job:?}: scrape_protocols lists {p:?} twice"
                ));
            }
        }
        if !self.metrics_path.starts_with('/') {
            return Err(format!(
                "scrape_configs {job:?}: metrics_path {:?} must start with /",
                self.metrics_path
            ));
        }
        Ok(())
    }

    /// The `Accept` header: the protocols asked for (or the default), each with a
    /// falling weight, then anything.
    pub fn accept_header(&self) -> Option<String> {
        if self.scrape_protocols.is_empty() && !self.scrape_native_histograms {
            // The text formats, as Lookout always asked.
            return None;
        }
        let protocols: Vec<ScrapeProtocol> = if self.scrape_protocols.is_empty() {
            vec![
                ScrapeProtocol::PrometheusProto,
                ScrapeProtocol::OpenMetrics1,
                ScrapeProtocol::OpenMetrics0,
                ScrapeProtocol::PrometheusText1,
                ScrapeProtocol::PrometheusText0,
            ]
        } else {
            self.scrape_protocols.clone()
        };
        let mut weight = protocols.len() + 1;
        let mut out = String::new();
        for p in protocols {
            out.push_str(&format!("{};q=0.{weight},", p.media_type()));
            weight -= 1;
        }
        out.push_str(&format!("*/*;q=0.{weight}"));
        Some(out)
    }

    /// The interval and timeout in effect. As Prometheus: a job without its own
    /// timeout takes the global one, capped at its interval.
    pub fn timing(
        &self,
        global_interval: Duration,
        global_timeout: Duration,
    ) -> (Duration, Duration) {
        let interval = self.scrape_interval.map_or(global_interval, |d| d.0);
        let timeout = match self.scrape_timeout {
            Some(t) => t.0,
            None => global_timeout.min(interval),
        };
        (interval, timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<ScrapeConfig, String> {
        let c: ScrapeConfig = yaml_serde::from_str(yaml).map_err(|e| e.to_string())?;
        c.validate(Duration::from_secs(15), Duration::from_secs(10))?;
        Ok(c)
    }

    #[test]
    fn scrape_protocols_make_the_accept_header_and_are_checked() {
        let c = parse("job_name: a\n").unwrap();
        assert_eq!(c.accept_header(), None, "the text formats by default");
        let c = parse("job_name: a\nscrape_native_histograms: true\n").unwrap();
        let h = c.accept_header().unwrap();
        assert!(
            h.starts_with(
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,"
            ),
            "{h}"
        );
        assert!(
            h.ends_with("text/plain;version=0.0.4;q=0.2,*/*;q=0.1"),
            "{h}"
        );
        let c =
            parse("job_name: a\nscrape_protocols: [ PrometheusText0.0.4, OpenMetricsText1.0.0 ]\n")
                .unwrap();
        assert_eq!(
            c.accept_header().unwrap(),
            "text/plain;version=0.0.4;q=0.3,application/openmetrics-text;version=1.0.0;q=0.2,*/*;q=0.1"
        );
        let e = parse("job_name: a\nscrape_protocols: [ PrometheusProto, PrometheusProto ]\n")
            .unwrap_err();
        assert!(e.contains("twice"), "{e}");
        let e = parse("job_name: a\nscrape_protocols: [ Protobuf ]\n").unwrap_err();
        assert!(e.contains("Protobuf"), "{e}");
    }
}
