//! OTLP metrics (`ExportMetricsServiceRequest`, protobuf), translated as Prometheus 3
//! translates them by default: metric names with unit and type suffixes
//! (`http.server.duration` in `s` → `http_server_duration_seconds`, monotonic cumulative
//! sums with `_total`), attributes as labels with invalid characters replaced, resource
//! attributes `service.namespace`/`service.name` → `job` and `service.instance.id` →
//! `instance`, the other resource attributes on `target_info`; gauges, sums, classic
//! histograms (`_bucket{le}`, `_sum`, `_count`) and summaries (`{quantile}`, `_sum`,
//! `_count`), and exponential histograms as native histograms ([`native_histogram`]).
//! Delta temporality is refused by name (Lookout does not convert it to cumulative).
//! Messages derived by hand with prost, only the fields read.

use std::collections::BTreeMap;

use lookout_model::Labels;

use crate::{Error, Result, Series};

/// `ExportMetricsServiceRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportMetricsServiceRequest {
    /// Per resource.
    #[prost(message, repeated, tag = "1")]
    pub resource_metrics: Vec<ResourceMetrics>,
}

/// `ResourceMetrics`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceMetrics {
    /// The resource.
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    /// Per instrumentation scope.
    #[prost(message, repeated, tag = "2")]
    pub scope_metrics: Vec<ScopeMetrics>,
}

/// `Resource`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Resource {
    /// Its attributes.
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
}

/// `ScopeMetrics` (the scope itself is not read).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScopeMetrics {
    /// The metrics.
    #[prost(message, repeated, tag = "2")]
    pub metrics: Vec<Metric>,
}

/// `Metric`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Metric {
    /// The OTel name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The UCUM unit.
    #[prost(string, tag = "3")]
    pub unit: String,
    /// A gauge.
    #[prost(message, optional, tag = "5")]
    pub gauge: Option<Gauge>,
    /// A sum.
    #[prost(message, optional, tag = "7")]
    pub sum: Option<Sum>,
    /// An explicit-bucket histogram.
    #[prost(message, optional, tag = "9")]
    pub histogram: Option<Histogram>,
    /// An exponential histogram (stored as a native histogram).
    #[prost(message, optional, tag = "10")]
    pub exponential_histogram: Option<ExponentialHistogram>,
    /// A summary.
    #[prost(message, optional, tag = "11")]
    pub summary: Option<Summary>,
}

/// `ExponentialHistogram`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExponentialHistogram {
    /// Points.
    #[prost(message, repeated, tag = "1")]
    pub data_points: Vec<ExponentialHistogramDataPoint>,
    /// 1 delta, 2 cumulative.
    #[prost(int32, tag = "2")]
    pub aggregation_temporality: i32,
}

/// `ExponentialHistogramDataPoint`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExponentialHistogramDataPoint {
    /// Attributes.
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
    /// When the cumulative series started (ns; 0: not known).
    #[prost(fixed64, tag = "2")]
    pub start_time_unix_nano: u64,
    /// When (ns).
    #[prost(fixed64, tag = "3")]
    pub time_unix_nano: u64,
    /// Observations.
    #[prost(fixed64, tag = "4")]
    pub count: u64,
    /// Their sum.
    #[prost(double, optional, tag = "5")]
    pub sum: Option<f64>,
    /// The resolution: bucket bounds grow by `2^(2^-scale)`.
    #[prost(sint32, tag = "6")]
    pub scale: i32,
    /// Observations in the zero bucket.
    #[prost(fixed64, tag = "7")]
    pub zero_count: u64,
    /// Buckets above zero.
    #[prost(message, optional, tag = "8")]
    pub positive: Option<ExpBuckets>,
    /// Buckets below zero.
    #[prost(message, optional, tag = "9")]
    pub negative: Option<ExpBuckets>,
    /// Flags (1: no recorded value, a staleness marker).
    #[prost(uint32, tag = "10")]
    pub flags: u32,
    /// The zero bucket's width.
    #[prost(double, tag = "14")]
    pub zero_threshold: f64,
}

/// `ExponentialHistogramDataPoint.Buckets`: counts of consecutive buckets from `offset`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExpBuckets {
    /// The first bucket's index.
    #[prost(sint32, tag = "1")]
    pub offset: i32,
    /// Counts, not cumulative.
    #[prost(uint64, repeated, tag = "2")]
    pub bucket_counts: Vec<u64>,
}

/// An exponential histogram point as a native histogram, as Prometheus's OTLP receiver
/// makes it: the scale is the schema (finer than 8 is merged down to 8; coarser than −4
/// is refused), OTLP's bucket `i` (`(base^i, base^(i+1)]`) is Prometheus's `i + 1`; a
/// point flagged "no recorded value" is a staleness marker.
pub fn native_histogram(
    p: &ExponentialHistogramDataPoint,
) -> std::result::Result<lookout_model::FloatHistogram, String> {
    if p.scale < -4 {
        return Err(format!(
            "scale {} is coarser than native histograms go (-4)",
            p.scale
        ));
    }
    let down = (p.scale - 8).max(0) as u32;
    let side = |b: &Option<ExpBuckets>| -> std::result::Result<BTreeMap<i32, f64>, String> {
        let mut out = BTreeMap::new();
        let Some(b) = b else { return Ok(out) };
        if b.bucket_counts.len() > crate::MAX_HISTOGRAM_BUCKETS {
            return Err(format!(
                "{} buckets, more than {}",
                b.bucket_counts.len(),
                crate::MAX_HISTOGRAM_BUCKETS
            ));
        }
        for (k, c) in b.bucket_counts.iter().enumerate() {
            if *c == 0 {
                continue;
            }
            let i = i64::from(b.offset) + k as i64;
            let idx = (i >> down) + 1;
            let idx = i32::try_from(idx).map_err(|_| format!("bucket index {idx} out of range"))?;
            *out.entry(idx).or_insert(0.0) += *c as f64;
        }
        Ok(out)
    };
    let mut h = lookout_model::FloatHistogram {
        schema: p.scale.min(8),
        zero_threshold: p.zero_threshold,
        zero_count: p.zero_count as f64,
        count: p.count as f64,
        sum: p.sum.unwrap_or(0.0),
        positive: side(&p.positive)?,
        negative: side(&p.negative)?,
        hint: lookout_model::CounterResetHint::Unknown,
        custom_values: Vec::new(),
    };
    if p.flags & 1 != 0 {
        h.sum = lookout_model::stale_nan();
    }
    Ok(h)
}

/// `Gauge`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Gauge {
    /// Points.
    #[prost(message, repeated, tag = "1")]
    pub data_points: Vec<NumberDataPoint>,
}

/// `Sum`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sum {
    /// Points.
    #[prost(message, repeated, tag = "1")]
    pub data_points: Vec<NumberDataPoint>,
    /// 1 delta, 2 cumulative.
    #[prost(int32, tag = "2")]
    pub aggregation_temporality: i32,
    /// Whether it only grows.
    #[prost(bool, tag = "3")]
    pub is_monotonic: bool,
}

/// `Histogram`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Histogram {
    /// Points.
    #[prost(message, repeated, tag = "1")]
    pub data_points: Vec<HistogramDataPoint>,
    /// 1 delta, 2 cumulative.
    #[prost(int32, tag = "2")]
    pub aggregation_temporality: i32,
}

/// `Summary`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    /// Points.
    #[prost(message, repeated, tag = "1")]
    pub data_points: Vec<SummaryDataPoint>,
}

/// `NumberDataPoint`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NumberDataPoint {
    /// Attributes.
    #[prost(message, repeated, tag = "7")]
    pub attributes: Vec<KeyValue>,
    /// When the cumulative series started (ns; 0: not known): its created time.
    #[prost(fixed64, tag = "2")]
    pub start_time_unix_nano: u64,
    /// When (ns).
    #[prost(fixed64, tag = "3")]
    pub time_unix_nano: u64,
    /// A float value.
    #[prost(double, optional, tag = "4")]
    pub as_double: Option<f64>,
    /// An integer value.
    #[prost(sfixed64, optional, tag = "6")]
    pub as_int: Option<i64>,
    /// Flags (1: no recorded value, a staleness marker).
    #[prost(uint32, tag = "8")]
    pub flags: u32,
}

/// `HistogramDataPoint`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HistogramDataPoint {
    /// Attributes.
    #[prost(message, repeated, tag = "9")]
    pub attributes: Vec<KeyValue>,
    /// When the cumulative series started (ns; 0: not known): its created time.
    #[prost(fixed64, tag = "2")]
    pub start_time_unix_nano: u64,
    /// When (ns).
    #[prost(fixed64, tag = "3")]
    pub time_unix_nano: u64,
    /// Observations.
    #[prost(fixed64, tag = "4")]
    pub count: u64,
    /// Their sum.
    #[prost(double, optional, tag = "5")]
    pub sum: Option<f64>,
    /// Per bucket (not cumulative), one more than the bounds.
    #[prost(fixed64, repeated, tag = "6")]
    pub bucket_counts: Vec<u64>,
    /// Upper bounds.
    #[prost(double, repeated, tag = "7")]
    pub explicit_bounds: Vec<f64>,
    /// Flags.
    #[prost(uint32, tag = "10")]
    pub flags: u32,
}

/// `SummaryDataPoint`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryDataPoint {
    /// Attributes.
    #[prost(message, repeated, tag = "7")]
    pub attributes: Vec<KeyValue>,
    /// When the cumulative series started (ns; 0: not known): its created time.
    #[prost(fixed64, tag = "2")]
    pub start_time_unix_nano: u64,
    /// When (ns).
    #[prost(fixed64, tag = "3")]
    pub time_unix_nano: u64,
    /// Observations.
    #[prost(fixed64, tag = "4")]
    pub count: u64,
    /// Their sum.
    #[prost(double, tag = "5")]
    pub sum: f64,
    /// Quantiles.
    #[prost(message, repeated, tag = "6")]
    pub quantile_values: Vec<ValueAtQuantile>,
    /// Flags.
    #[prost(uint32, tag = "8")]
    pub flags: u32,
}

/// `ValueAtQuantile`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueAtQuantile {
    /// The quantile.
    #[prost(double, tag = "1")]
    pub quantile: f64,
    /// Its value.
    #[prost(double, tag = "2")]
    pub value: f64,
}

/// `KeyValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    /// The key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// The value.
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

/// `AnyValue` (arrays, maps and bytes are written as empty).
#[derive(Clone, PartialEq, prost::Message)]
pub struct AnyValue {
    /// A string.
    #[prost(string, optional, tag = "1")]
    pub string_value: Option<String>,
    /// A bool.
    #[prost(bool, optional, tag = "2")]
    pub bool_value: Option<bool>,
    /// An integer.
    #[prost(int64, optional, tag = "3")]
    pub int_value: Option<i64>,
    /// A float.
    #[prost(double, optional, tag = "4")]
    pub double_value: Option<f64>,
}

impl AnyValue {
    /// The value as text (floats as Go formats them; an empty value as empty text).
    pub fn text(&self) -> String {
        if let Some(s) = &self.string_value {
            s.clone()
        } else if let Some(b) = self.bool_value {
            b.to_string()
        } else if let Some(i) = self.int_value {
            i.to_string()
        } else if let Some(d) = self.double_value {
            lookout_model::gofmt::marshal_float(d)
        } else {
            String::new()
        }
    }
}

/// Prometheus's label-name sanitising: anything but letters, digits and `_` becomes `_`,
/// a leading digit gets `key_` in front.
pub fn label_name(key: &str) -> String {
    let mut s: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert_str(0, "key_");
    }
    s
}

/// The UCUM units Prometheus's translator spells out; annotations (`{requests}`) drop.
fn unit_word(unit: &str) -> Option<String> {
    let main = unit.split('{').next().unwrap_or("").trim();
    let word = |u: &str| -> Option<&'static str> {
        Some(match u {
            "d" => "days",
            "h" => "hours",
            "min" => "minutes",
            "s" => "seconds",
            "ms" => "milliseconds",
            "us" => "microseconds",
            "ns" => "nanoseconds",
            "By" => "bytes",
            "KiBy" => "kibibytes",
            "MiBy" => "mebibytes",
            "GiBy" => "gibibytes",
            "KBy" => "kilobytes",
            "MBy" => "megabytes",
            "GBy" => "gigabytes",
            "m" => "meters",
            "V" => "volts",
            "A" => "amperes",
            "J" => "joules",
            "W" => "watts",
            "g" => "grams",
            "Cel" => "celsius",
            "Hz" => "hertz",
            "%" => "percent",
            _ => return None,
        })
    };
    if main.is_empty() || main == "1" {
        return None;
    }
    if let Some((num, den)) = main.split_once('/') {
        let per = match den {
            "s" => "second",
            "m" => "minute",
            "h" => "hour",
            "d" => "day",
            other => return word(num).map(|n| format!("{n}_per_{}", label_name(other))),
        };
        let n = word(num)
            .map(str::to_string)
            .unwrap_or_else(|| label_name(num));
        return Some(format!("{n}_per_{per}"));
    }
    Some(
        word(main)
            .map(str::to_string)
            .unwrap_or_else(|| label_name(main)),
    )
}

/// Prometheus 3's default metric name: sanitised, the unit word appended (unless the
/// name already ends with it), `_ratio` for unit "1" gauges, `_total` for counters.
pub fn metric_name(name: &str, unit: &str, counter: bool, gauge: bool) -> String {
    with_suffixes(escape_metric_name(name), unit, counter, gauge)
}

/// Prometheus's metric-name sanitising: anything but letters, digits, `_` and `:`
/// becomes `_`, a leading digit gets `_` in front.
fn escape_metric_name(name: &str) -> String {
    let mut n: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if n.starts_with(|c: char| c.is_ascii_digit()) {
        n.insert(0, '_');
    }
    n
}

/// `n` with the unit word, `_ratio` and `_total` suffixes Prometheus 3 appends.
fn with_suffixes(mut n: String, unit: &str, counter: bool, gauge: bool) -> String {
    if let Some(w) = unit_word(unit)
        && !n.ends_with(&format!("_{w}"))
    {
        n.push('_');
        n.push_str(&w);
    }
    if gauge && unit.trim() == "1" && !n.ends_with("_ratio") {
        n.push_str("_ratio");
    }
    if counter && !n.ends_with("_total") {
        n.push_str("_total");
    }
    n
}

fn name_of(name: &str, unit: &str, counter: bool, gauge: bool, opts: &Options) -> String {
    match opts.translation {
        Translation::UnderscoreEscapingWithSuffixes => metric_name(name, unit, counter, gauge),
        Translation::UnderscoreEscapingWithoutSuffixes => escape_metric_name(name),
        Translation::NoUTF8EscapingWithSuffixes => {
            with_suffixes(name.to_string(), unit, counter, gauge)
        }
        Translation::NoTranslation => name.to_string(),
    }
}

/// An attribute's label name: sanitised unless the translation keeps UTF-8 names.
fn label_of(key: &str, opts: &Options) -> String {
    match opts.translation {
        Translation::UnderscoreEscapingWithSuffixes
        | Translation::UnderscoreEscapingWithoutSuffixes => label_name(key),
        Translation::NoUTF8EscapingWithSuffixes | Translation::NoTranslation => key.to_string(),
    }
}

/// How OTLP names become Prometheus names: Prometheus 3's `otlp.translation_strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Translation {
    /// Names and labels sanitised to `[a-zA-Z_:][a-zA-Z0-9_:]*`, unit and type suffixes
    /// added (the default).
    #[default]
    UnderscoreEscapingWithSuffixes,
    /// Sanitised, no suffixes.
    UnderscoreEscapingWithoutSuffixes,
    /// UTF-8 names kept as sent (`http.server.duration_seconds`), suffixes added.
    NoUTF8EscapingWithSuffixes,
    /// Names and labels exactly as sent.
    NoTranslation,
}

impl Translation {
    /// The strategy a configuration value names, if it names one.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "UnderscoreEscapingWithSuffixes" => Self::UnderscoreEscapingWithSuffixes,
            "UnderscoreEscapingWithoutSuffixes" => Self::UnderscoreEscapingWithoutSuffixes,
            "NoUTF8EscapingWithSuffixes" => Self::NoUTF8EscapingWithSuffixes,
            "NoTranslation" => Self::NoTranslation,
            _ => return None,
        })
    }
}

/// What a request translated to, and what was refused.
#[derive(Debug, Default)]
pub struct Translated {
    /// Series to append.
    pub series: Vec<Series>,
    /// Native histograms (from exponential histograms) to append.
    pub histograms: Vec<crate::HistogramSeries>,
    /// What could not be stored, by metric (delta temporality, malformed exponential
    /// histograms).
    pub refused: Vec<String>,
}

const CUMULATIVE: i32 = 2;

/// Decodes and translates an OTLP metrics request.
pub fn decode_otlp_metrics(body: &[u8], opts: &Options) -> Result<Translated> {
    let max_bytes = opts.max_bytes;
    if body.len() > max_bytes {
        return Err(Error::TooLarge {
            size: body.len(),
            limit: max_bytes,
        });
    }
    let req = <ExportMetricsServiceRequest as prost::Message>::decode(body)
        .map_err(|e| Error::Protobuf(e.to_string()))?;
    Ok(translate(&req, opts))
}

/// How requests are translated (Prometheus's `otlp:` configuration section).
#[derive(Debug, Clone)]
pub struct Options {
    /// Resource attributes also put on every series (as labels, names sanitised), as
    /// Prometheus's `otlp.promote_resource_attributes`.
    pub promote_resource_attributes: Vec<String>,
    /// How names are translated (`otlp.translation_strategy`).
    pub translation: Translation,
    /// Largest body, in bytes.
    pub max_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            promote_resource_attributes: Vec::new(),
            translation: Translation::default(),
            max_bytes: 64 << 20,
        }
    }
}

/// A point's labels: its attributes (names translated), the resource's labels, `extra`
/// (`le`, `quantile`) and the metric name.
fn point_labels(
    point: &[KeyValue],
    base: &[(String, String)],
    extra: &[(String, String)],
    name: &str,
    opts: &Options,
) -> Labels {
    let mut pairs: Vec<(String, String)> = point
        .iter()
        .map(|kv| {
            (
                label_of(&kv.key, opts),
                kv.value.as_ref().map(AnyValue::text).unwrap_or_default(),
            )
        })
        .collect();
    pairs.extend(base.iter().cloned());
    pairs.extend(extra.iter().cloned());
    pairs.push(("__name__".into(), name.to_string()));
    Labels::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// Translates a decoded request (see the module doc).
pub fn translate(req: &ExportMetricsServiceRequest, opts: &Options) -> Translated {
    let mut out = Translated::default();
    // Exponential histograms' buckets, all told, within a request's budget.
    let mut bucket_budget = crate::MAX_REQUEST_BUCKETS;
    let mut series: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
    // Created times (ms) of cumulative series, from their points' start times.
    let mut created: std::collections::HashMap<Labels, i64> = Default::default();
    let mut hists: BTreeMap<Labels, Vec<(i64, lookout_model::FloatHistogram)>> = BTreeMap::new();
    for rm in &req.resource_metrics {
        let attrs: Vec<(String, String)> = rm
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .map(|kv| {
                (
                    kv.key.clone(),
                    kv.value.as_ref().map(AnyValue::text).unwrap_or_default(),
                )
            })
            .collect();
        let get = |k: &str| attrs.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
        let job = match (get("service.namespace"), get("service.name")) {
            (Some(ns), Some(n)) => Some(format!("{ns}/{n}")),
            (None, Some(n)) => Some(n),
            _ => None,
        };
        let instance = get("service.instance.id");
        let mut base: Vec<(String, String)> = Vec::new();
        if let Some(j) = &job {
            base.push(("job".into(), j.clone()));
        }
        if let Some(i) = &instance {
            base.push(("instance".into(), i.clone()));
        }
        for k in &opts.promote_resource_attributes {
            if let Some(v) = get(k) {
                base.push((label_of(k, opts), v));
            }
        }
        let mut newest = i64::MIN;
        let mut put = |name: &str,
                       extra: &[(String, String)],
                       point: &[KeyValue],
                       t: i64,
                       v: f64,
                       ct: i64| {
            let labels = point_labels(point, &base, extra, name, opts);
            if ct > 0 {
                created.insert(labels.clone(), ct);
            }
            series.entry(labels).or_default().push((t, v));
            newest = newest.max(t);
        };
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                let ms = |ns: u64| (ns / 1_000_000) as i64;
                let num = |p: &NumberDataPoint| {
                    if p.flags & 1 != 0 {
                        lookout_model::stale_nan()
                    } else {
                        p.as_double.or(p.as_int.map(|i| i as f64)).unwrap_or(0.0)
                    }
                };
                if let Some(g) = &m.gauge {
                    let name = name_of(&m.name, &m.unit, false, true, opts);
                    for p in &g.data_points {
                        put(&name, &[], &p.attributes, ms(p.time_unix_nano), num(p), 0);
                    }
                } else if let Some(s) = &m.sum {
                    if s.aggregation_temporality != CUMULATIVE {
                        out.refused.push(format!(
                            "{}: delta temporality is not stored (send cumulative sums)",
                            m.name
                        ));
                        continue;
                    }
                    let name = name_of(&m.name, &m.unit, s.is_monotonic, !s.is_monotonic, opts);
                    for p in &s.data_points {
                        // A monotonic sum's start is its created time, as Prometheus 3 takes it.
                        let ct = if s.is_monotonic {
                            ms(p.start_time_unix_nano)
                        } else {
                            0
                        };
                        put(&name, &[], &p.attributes, ms(p.time_unix_nano), num(p), ct);
                    }
                } else if let Some(h) = &m.histogram {
                    if h.aggregation_temporality != CUMULATIVE {
                        out.refused.push(format!(
                            "{}: delta temporality is not stored (send cumulative histograms)",
                            m.name
                        ));
                        continue;
                    }
                    let name = name_of(&m.name, &m.unit, false, false, opts);
                    for p in &h.data_points {
                        let t = ms(p.time_unix_nano);
                        let ct = ms(p.start_time_unix_nano);
                        let stale = p.flags & 1 != 0;
                        let v = |x: f64| if stale { lookout_model::stale_nan() } else { x };
                        let mut cumulative = 0u64;
                        for (i, c) in p.bucket_counts.iter().enumerate() {
                            cumulative += c;
                            let le = p.explicit_bounds.get(i).map_or("+Inf".to_string(), |b| {
                                lookout_model::gofmt::marshal_float(*b)
                            });
                            put(
                                &format!("{name}_bucket"),
                                &[("le".into(), le)],
                                &p.attributes,
                                t,
                                v(cumulative as f64),
                                ct,
                            );
                        }
                        if p.bucket_counts.is_empty() {
                            put(
                                &format!("{name}_bucket"),
                                &[("le".into(), "+Inf".into())],
                                &p.attributes,
                                t,
                                v(p.count as f64),
                                ct,
                            );
                        }
                        if let Some(sum) = p.sum {
                            put(&format!("{name}_sum"), &[], &p.attributes, t, v(sum), ct);
                        }
                        put(
                            &format!("{name}_count"),
                            &[],
                            &p.attributes,
                            t,
                            v(p.count as f64),
                            ct,
                        );
                    }
                } else if let Some(s) = &m.summary {
                    let name = name_of(&m.name, &m.unit, false, false, opts);
                    for p in &s.data_points {
                        let t = ms(p.time_unix_nano);
                        let ct = ms(p.start_time_unix_nano);
                        for q in &p.quantile_values {
                            let quantile = lookout_model::gofmt::marshal_float(q.quantile);
                            put(
                                &name,
                                &[("quantile".into(), quantile)],
                                &p.attributes,
                                t,
                                q.value,
                                ct,
                            );
                        }
                        put(&format!("{name}_sum"), &[], &p.attributes, t, p.sum, ct);
                        put(
                            &format!("{name}_count"),
                            &[],
                            &p.attributes,
                            t,
                            p.count as f64,
                            ct,
                        );
                    }
                } else if let Some(e) = &m.exponential_histogram {
                    if e.aggregation_temporality != CUMULATIVE {
                        out.refused.push(format!(
                            "{}: delta temporality is not stored (send cumulative histograms)",
                            m.name
                        ));
                        continue;
                    }
                    let name = name_of(&m.name, &m.unit, false, false, opts);
                    for p in &e.data_points {
                        let n = [&p.positive, &p.negative]
                            .into_iter()
                            .flatten()
                            .map(|b| b.bucket_counts.len() as u64)
                            .sum::<u64>();
                        if n > bucket_budget {
                            out.refused.push(format!(
                                "{}: the request's exponential histograms hold more than {} buckets",
                                m.name,
                                crate::MAX_REQUEST_BUCKETS
                            ));
                            break;
                        }
                        bucket_budget -= n;
                        match native_histogram(p) {
                            Ok(h) => {
                                let labels = point_labels(&p.attributes, &base, &[], &name, opts);
                                hists
                                    .entry(labels)
                                    .or_default()
                                    .push((ms(p.time_unix_nano), h));
                            }
                            Err(why) => out.refused.push(format!("{}: {why}", m.name)),
                        }
                    }
                }
            }
        }
        // target_info: the resource's other attributes, at the newest sample's time.
        let info: Vec<(String, String)> = attrs
            .iter()
            .filter(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "service.name" | "service.namespace" | "service.instance.id"
                )
            })
            .map(|(k, v)| (label_of(k, opts), v.clone()))
            .collect();
        if newest != i64::MIN && !info.is_empty() && (job.is_some() || instance.is_some()) {
            let mut pairs = info;
            pairs.extend(base.iter().cloned());
            pairs.push(("__name__".into(), "target_info".into()));
            let labels = Labels::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            series.entry(labels).or_default().push((newest, 1.0));
        }
    }
    out.series = series
        .into_iter()
        .map(|(labels, mut samples)| {
            samples.sort_by_key(|s| s.0);
            Series {
                created: created.get(&labels).copied().unwrap_or(0),
                labels,
                samples,
                exemplars: Vec::new(),
            }
        })
        .collect();
    out.histograms = hists
        .into_iter()
        .map(|(labels, mut samples)| {
            samples.sort_by_key(|s| s.0);
            crate::HistogramSeries { labels, samples }
        })
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                string_value: Some(v.into()),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn names_follow_prometheus_3s_default_translation() {
        assert_eq!(
            metric_name("http.server.duration", "s", false, false),
            "http_server_duration_seconds"
        );
        assert_eq!(
            metric_name("http.server.requests", "{requests}", true, false),
            "http_server_requests_total"
        );
        assert_eq!(metric_name("io.bytes", "By", true, false), "io_bytes_total");
        assert_eq!(
            metric_name("cpu.utilization", "1", false, true),
            "cpu_utilization_ratio"
        );
        assert_eq!(
            metric_name("net.rate", "By/s", false, true),
            "net_rate_bytes_per_second"
        );
        assert_eq!(
            metric_name("latency_seconds", "s", false, false),
            "latency_seconds"
        );
        // The four strategies, on a counter and an attribute.
        for (t, name, label) in [
            (
                "UnderscoreEscapingWithSuffixes",
                "http.requests_total",
                "http_method",
            ),
            (
                "UnderscoreEscapingWithoutSuffixes",
                "http_requests",
                "http_method",
            ),
            (
                "NoUTF8EscapingWithSuffixes",
                "http.requests_total",
                "http.method",
            ),
            ("NoTranslation", "http.requests", "http.method"),
        ] {
            let opts = Options {
                translation: Translation::parse(t).unwrap(),
                ..Options::default()
            };
            let want_name = if t.starts_with("Underscore") {
                name.replace('.', "_")
            } else {
                name.to_string()
            };
            assert_eq!(
                name_of("http.requests", "{requests}", true, false, &opts),
                want_name,
                "{t}"
            );
            assert_eq!(label_of("http.method", &opts), label, "{t}");
        }
        assert_eq!(Translation::parse("Other"), None);
        assert_eq!(label_name("http.method"), "http_method");
        assert_eq!(label_name("0day"), "key_0day");
    }

    #[test]
    fn requests_translate_to_series() {
        let t = 1_700_000_000_000_000_000u64;
        let req = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", "checkout"),
                        kv("service.instance.id", "pod-1"),
                        kv("host.name", "h1"),
                    ],
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![
                        Metric {
                            name: "orders".into(),
                            unit: "{orders}".into(),
                            sum: Some(Sum {
                                data_points: vec![NumberDataPoint {
                                    attributes: vec![kv("region", "eu")],
                                    start_time_unix_nano: t - 60_000_000_000,
                                    time_unix_nano: t,
                                    as_int: Some(5),
                                    ..Default::default()
                                }],
                                aggregation_temporality: 2,
                                is_monotonic: true,
                            }),
                            ..Default::default()
                        },
                        Metric {
                            name: "latency".into(),
                            unit: "ms".into(),
                            histogram: Some(Histogram {
                                data_points: vec![HistogramDataPoint {
                                    time_unix_nano: t,
                                    count: 4,
                                    sum: Some(30.0),
                                    bucket_counts: vec![1, 2, 1],
                                    explicit_bounds: vec![5.0, 10.0],
                                    ..Default::default()
                                }],
                                aggregation_temporality: 2,
                            }),
                            ..Default::default()
                        },
                        Metric {
                            name: "deltas".into(),
                            sum: Some(Sum {
                                aggregation_temporality: 1,
                                is_monotonic: true,
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                    ],
                }],
            }],
        };
        let body = prost::Message::encode_to_vec(&req);
        let got = decode_otlp_metrics(&body, &Options::default()).unwrap();
        let find = |name: &str, extra: &[(&str, &str)]| {
            got.series
                .iter()
                .find(|s| {
                    s.labels.metric_name() == Some(name)
                        && extra.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
                })
                .unwrap_or_else(|| panic!("{name} {extra:?} in {:?}", got.series))
                .samples
                .clone()
        };
        let ms = (t / 1_000_000) as i64;
        assert_eq!(
            find(
                "orders_total",
                &[("job", "checkout"), ("instance", "pod-1"), ("region", "eu")]
            ),
            [(ms, 5.0)]
        );
        assert_eq!(
            find("latency_milliseconds_bucket", &[("le", "5")]),
            [(ms, 1.0)]
        );
        assert_eq!(
            find("latency_milliseconds_bucket", &[("le", "10")]),
            [(ms, 3.0)]
        );
        assert_eq!(
            find("latency_milliseconds_bucket", &[("le", "+Inf")]),
            [(ms, 4.0)]
        );
        assert_eq!(find("latency_milliseconds_sum", &[]), [(ms, 30.0)]);
        // A monotonic sum's start time is its created time; a histogram without one has
        // none.
        let created = |name: &str| {
            got.series
                .iter()
                .find(|s| s.labels.metric_name() == Some(name))
                .unwrap()
                .created
        };
        assert_eq!(created("orders_total"), ms - 60_000);
        assert_eq!(created("latency_milliseconds_count"), 0);
        assert_eq!(
            find("target_info", &[("host_name", "h1"), ("job", "checkout")]),
            [(ms, 1.0)]
        );
        assert_eq!(got.refused.len(), 1);
        assert!(got.refused[0].contains("delta"), "{:?}", got.refused);
        assert!(decode_otlp_metrics(b"\xff\xff", &Options::default()).is_err());
        assert!(matches!(
            decode_otlp_metrics(
                &body,
                &Options {
                    max_bytes: 10,
                    ..Options::default()
                }
            ),
            Err(Error::TooLarge { .. })
        ));
        // Promoted resource attributes and names without suffixes.
        let opts = Options {
            promote_resource_attributes: vec!["host.name".into()],
            translation: Translation::UnderscoreEscapingWithoutSuffixes,
            ..Options::default()
        };
        let got = decode_otlp_metrics(&body, &opts).unwrap();
        let orders = got
            .series
            .iter()
            .find(|s| s.labels.metric_name() == Some("orders"))
            .unwrap();
        assert_eq!(orders.labels.get("host_name"), Some("h1"));
    }

    fn exp_request(scale: i32, temporality: i32) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "api")],
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "rpc.duration".into(),
                        unit: "s".into(),
                        exponential_histogram: Some(ExponentialHistogram {
                            data_points: vec![
                                ExponentialHistogramDataPoint {
                                    attributes: vec![kv("rpc.method", "Get")],
                                    time_unix_nano: 2_000_000_000,
                                    count: 9,
                                    sum: Some(4.5),
                                    scale,
                                    zero_count: 1,
                                    zero_threshold: 0.001,
                                    positive: Some(ExpBuckets {
                                        offset: -1,
                                        bucket_counts: vec![2, 0, 3, 1],
                                    }),
                                    negative: Some(ExpBuckets {
                                        offset: 0,
                                        bucket_counts: vec![2],
                                    }),
                                    ..Default::default()
                                },
                                ExponentialHistogramDataPoint {
                                    attributes: vec![kv("rpc.method", "Get")],
                                    time_unix_nano: 1_000_000_000,
                                    count: 0,
                                    scale,
                                    flags: 1,
                                    ..Default::default()
                                },
                            ],
                            aggregation_temporality: temporality,
                        }),
                        ..Default::default()
                    }],
                }],
            }],
        }
    }

    #[test]
    fn exponential_histograms_become_native_histograms() {
        let got = translate(&exp_request(2, CUMULATIVE), &Options::default());
        assert!(got.refused.is_empty(), "{:?}", got.refused);
        assert_eq!(got.histograms.len(), 1);
        let s = &got.histograms[0];
        assert_eq!(
            s.labels.to_string(),
            r#"rpc_duration_seconds{job="api", rpc_method="Get"}"#
        );
        // Ascending by time: the staleness marker (t = 1 s) first.
        assert_eq!(s.samples[0].0, 1000);
        assert!(lookout_model::is_stale_nan(s.samples[0].1.sum));
        let (t, h) = &s.samples[1];
        assert_eq!(*t, 2000);
        // OTLP's bucket i is Prometheus's i + 1; empty buckets are left out.
        let want = lookout_model::FloatHistogram::parse(
            "{{schema:2 count:9 sum:4.5 z_bucket:1 z_bucket_w:0.001 offset:0 buckets:[2 0 3 1] n_offset:1 n_buckets:[2]}}",
        )
        .unwrap();
        assert!(h.same_as(&want), "{h} vs {want}");
        // Finer than schema 8: merged down (scale 10 → 8, four buckets to one).
        let got = translate(&exp_request(10, CUMULATIVE), &Options::default());
        let h = &got.histograms[0].samples[1].1;
        assert_eq!(h.schema, 8);
        // OTLP indexes -1..=2 at scale 10 fall in scale-8 indexes -1 and 0: 2 and 4.
        assert_eq!(h.positive.get(&0), Some(&2.0));
        assert_eq!(h.positive.get(&1), Some(&4.0));
        // Coarser than -4, and delta temporality, are refused by name.
        let got = translate(&exp_request(-5, CUMULATIVE), &Options::default());
        assert!(got.histograms.is_empty());
        assert!(got.refused[0].contains("coarser"), "{:?}", got.refused);
        let got = translate(&exp_request(2, 1), &Options::default());
        assert!(got.refused[0].contains("delta"), "{:?}", got.refused);
        // Too many buckets.
        let mut wide = exp_request(2, CUMULATIVE);
        if let Some(e) =
            &mut wide.resource_metrics[0].scope_metrics[0].metrics[0].exponential_histogram
        {
            e.data_points[0].positive = Some(ExpBuckets {
                offset: 0,
                bucket_counts: vec![1; crate::MAX_HISTOGRAM_BUCKETS + 1],
            });
        }
        let got = translate(&wide, &Options::default());
        assert!(got.refused[0].contains("more than"), "{:?}", got.refused);
        // And the request's budget over every point.
        let mut many = exp_request(2, CUMULATIVE);
        if let Some(e) =
            &mut many.resource_metrics[0].scope_metrics[0].metrics[0].exponential_histogram
        {
            let p = ExponentialHistogramDataPoint {
                positive: Some(ExpBuckets {
                    offset: 0,
                    bucket_counts: vec![1; 60_000],
                }),
                count: 60_000,
                ..Default::default()
            };
            e.data_points = vec![p; 71];
        }
        let got = translate(&many, &Options::default());
        assert!(
            got.refused
                .iter()
                .any(|r| r.contains("more than 4194304 buckets")),
            "{:?}",
            got.refused
        );
        assert_eq!(
            got.histograms[0].samples.len(),
            69,
            "the points within the budget"
        );
    }

    #[test]
    fn exponential_histograms_read_from_json_too() {
        let body = br#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},
            "scopeMetrics":[{"metrics":[{"name":"rpc.duration","unit":"s","exponentialHistogram":{"aggregationTemporality":2,
            "dataPoints":[{"timeUnixNano":"2000000000","count":"9","sum":4.5,"scale":2,"zeroCount":"1","zeroThreshold":0.001,
            "positive":{"offset":-1,"bucketCounts":["2","0","3","1"]},"negative":{"offset":0,"bucketCounts":[2]}}]}}]}]}]}"#;
        let got = json::decode(body, &Options::default()).unwrap();
        let proto = translate(&exp_request(2, CUMULATIVE), &Options::default());
        assert_eq!(got.histograms[0].samples[0], proto.histograms[0].samples[1]);
    }
}

/// OTLP/JSON: the same messages in the protobuf JSON mapping (lowerCamelCase names,
/// 64-bit integers as strings or numbers, enums as numbers), read into the protobuf
/// types and translated the same way.
pub mod json {
    use serde::Deserialize;

    use super::*;

    /// A 64-bit integer written as a string (the JSON mapping's rule) or a number.
    pub fn int<
        'de,
        D: serde::Deserializer<'de>,
        T: std::str::FromStr + TryFrom<u64> + TryFrom<i64>,
    >(
        d: D,
    ) -> std::result::Result<T, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum N {
            S(String),
            U(u64),
            I(i64),
        }
        let bad = || serde::de::Error::custom("not an integer in range");
        match N::deserialize(d)? {
            N::S(s) => s.parse().map_err(|_| bad()),
            N::U(u) => T::try_from(u).map_err(|_| bad()),
            N::I(i) => T::try_from(i).map_err(|_| bad()),
        }
    }

    fn opt_int<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Option<i64>, D::Error> {
        int::<D, i64>(d).map(Some)
    }

    fn ints<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<u64>, D::Error> {
        #[derive(Deserialize)]
        struct W(#[serde(deserialize_with = "int")] u64);
        Ok(Vec::<W>::deserialize(d)?.into_iter().map(|w| w.0).collect())
    }

    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct Request {
        resource_metrics: Vec<Rm>,
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct Rm {
        resource: Option<Res>,
        scope_metrics: Vec<Sm>,
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct Res {
        attributes: Vec<Kv>,
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct Sm {
        metrics: Vec<M>,
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct M {
        name: String,
        unit: String,
        gauge: Option<Pts>,
        sum: Option<SumJ>,
        histogram: Option<HistJ>,
        exponential_histogram: Option<ExpJ>,
        summary: Option<SummJ>,
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct ExpJ {
        data_points: Vec<Ep>,
        aggregation_temporality: i32,
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct Ep {
        attributes: Vec<Kv>,
        #[serde(deserialize_with = "int")]
        start_time_unix_nano: u64,
        #[serde(deserialize_with = "int")]
        time_unix_nano: u64,
        #[serde(deserialize_with = "int")]
        count: u64,
        sum: Option<f64>,
        scale: i32,
        #[serde(deserialize_with = "int")]
        zero_count: u64,
        positive: Option<Eb>,
        negative: Option<Eb>,
        flags: u32,
        zero_threshold: f64,
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct Eb {
        offset: i32,
        #[serde(deserialize_with = "ints")]
        bucket_counts: Vec<u64>,
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct Pts {
        data_points: Vec<Np>,
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct SumJ {
        data_points: Vec<Np>,
        aggregation_temporality: i32,
        is_monotonic: bool,
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct HistJ {
        data_points: Vec<Hp>,
        aggregation_temporality: i32,
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct SummJ {
        data_points: Vec<Sp>,
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct Np {
        attributes: Vec<Kv>,
        #[serde(deserialize_with = "int")]
        start_time_unix_nano: u64,
        #[serde(deserialize_with = "int")]
        time_unix_nano: u64,
        as_double: Option<f64>,
        #[serde(deserialize_with = "opt_int")]
        as_int: Option<i64>,
        flags: u32,
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct Hp {
        attributes: Vec<Kv>,
        #[serde(deserialize_with = "int")]
        start_time_unix_nano: u64,
        #[serde(deserialize_with = "int")]
        time_unix_nano: u64,
        #[serde(deserialize_with = "int")]
        count: u64,
        sum: Option<f64>,
        #[serde(deserialize_with = "ints")]
        bucket_counts: Vec<u64>,
        explicit_bounds: Vec<f64>,
        flags: u32,
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct Sp {
        attributes: Vec<Kv>,
        #[serde(deserialize_with = "int")]
        start_time_unix_nano: u64,
        #[serde(deserialize_with = "int")]
        time_unix_nano: u64,
        #[serde(deserialize_with = "int")]
        count: u64,
        sum: f64,
        quantile_values: Vec<Q>,
        flags: u32,
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct Q {
        quantile: f64,
        value: f64,
    }
    /// A `KeyValue` in OTLP/JSON (shared with the other OTLP signals).
    #[derive(Debug, Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    pub struct Kv {
        key: String,
        value: Option<Av>,
    }
    #[derive(Debug, Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct Av {
        string_value: Option<String>,
        bool_value: Option<bool>,
        #[serde(deserialize_with = "opt_int")]
        int_value: Option<i64>,
        double_value: Option<f64>,
    }

    /// JSON key-values as the protobuf messages.
    pub fn kvs(v: Vec<Kv>) -> Vec<KeyValue> {
        v.into_iter()
            .map(|k| KeyValue {
                key: k.key,
                value: k.value.map(|a| AnyValue {
                    string_value: a.string_value,
                    bool_value: a.bool_value,
                    int_value: a.int_value,
                    double_value: a.double_value,
                }),
            })
            .collect()
    }

    fn nps(v: Vec<Np>) -> Vec<NumberDataPoint> {
        v.into_iter()
            .map(|p| NumberDataPoint {
                attributes: kvs(p.attributes),
                start_time_unix_nano: p.start_time_unix_nano,
                time_unix_nano: p.time_unix_nano,
                as_double: p.as_double,
                as_int: p.as_int,
                flags: p.flags,
            })
            .collect()
    }

    /// Decodes and translates an OTLP/JSON metrics request.
    pub fn decode(body: &[u8], opts: &Options) -> Result<Translated> {
        let max_bytes = opts.max_bytes;
        if body.len() > max_bytes {
            return Err(Error::TooLarge {
                size: body.len(),
                limit: max_bytes,
            });
        }
        let r: Request =
            serde_json::from_slice(body).map_err(|e| Error::Protobuf(format!("OTLP/JSON: {e}")))?;
        let req = ExportMetricsServiceRequest {
            resource_metrics: r
                .resource_metrics
                .into_iter()
                .map(|rm| ResourceMetrics {
                    resource: rm.resource.map(|r| Resource {
                        attributes: kvs(r.attributes),
                    }),
                    scope_metrics: rm
                        .scope_metrics
                        .into_iter()
                        .map(|sm| ScopeMetrics {
                            metrics: sm
                                .metrics
                                .into_iter()
                                .map(|m| Metric {
                                    name: m.name,
                                    unit: m.unit,
                                    gauge: m.gauge.map(|g| Gauge {
                                        data_points: nps(g.data_points),
                                    }),
                                    sum: m.sum.map(|s| Sum {
                                        data_points: nps(s.data_points),
                                        aggregation_temporality: s.aggregation_temporality,
                                        is_monotonic: s.is_monotonic,
                                    }),
                                    histogram: m.histogram.map(|h| Histogram {
                                        data_points: h
                                            .data_points
                                            .into_iter()
                                            .map(|p| HistogramDataPoint {
                                                attributes: kvs(p.attributes),
                                                start_time_unix_nano: p.start_time_unix_nano,
                                                time_unix_nano: p.time_unix_nano,
                                                count: p.count,
                                                sum: p.sum,
                                                bucket_counts: p.bucket_counts,
                                                explicit_bounds: p.explicit_bounds,
                                                flags: p.flags,
                                            })
                                            .collect(),
                                        aggregation_temporality: h.aggregation_temporality,
                                    }),
                                    exponential_histogram: m.exponential_histogram.map(|e| {
                                        let buckets = |b: Option<Eb>| {
                                            b.map(|b| ExpBuckets {
                                                offset: b.offset,
                                                bucket_counts: b.bucket_counts,
                                            })
                                        };
                                        ExponentialHistogram {
                                            data_points: e
                                                .data_points
                                                .into_iter()
                                                .map(|p| ExponentialHistogramDataPoint {
                                                    attributes: kvs(p.attributes),
                                                    start_time_unix_nano: p.start_time_unix_nano,
                                                    time_unix_nano: p.time_unix_nano,
                                                    count: p.count,
                                                    sum: p.sum,
                                                    scale: p.scale,
                                                    zero_count: p.zero_count,
                                                    positive: buckets(p.positive),
                                                    negative: buckets(p.negative),
                                                    flags: p.flags,
                                                    zero_threshold: p.zero_threshold,
                                                })
                                                .collect(),
                                            aggregation_temporality: e.aggregation_temporality,
                                        }
                                    }),
                                    summary: m.summary.map(|s| Summary {
                                        data_points: s
                                            .data_points
                                            .into_iter()
                                            .map(|p| SummaryDataPoint {
                                                attributes: kvs(p.attributes),
                                                start_time_unix_nano: p.start_time_unix_nano,
                                                time_unix_nano: p.time_unix_nano,
                                                count: p.count,
                                                sum: p.sum,
                                                quantile_values: p
                                                    .quantile_values
                                                    .into_iter()
                                                    .map(|q| ValueAtQuantile {
                                                        quantile: q.quantile,
                                                        value: q.value,
                                                    })
                                                    .collect(),
                                                flags: p.flags,
                                            })
                                            .collect(),
                                    }),
                                })
                                .collect(),
                        })
                        .collect(),
                })
                .collect(),
        };
        Ok(translate(&req, opts))
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn json_requests_translate_like_protobuf() {
            let body = br#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"shop"}}]},
              "scopeMetrics":[{"metrics":[
                {"name":"orders","unit":"{orders}","sum":{"aggregationTemporality":2,"isMonotonic":true,
                  "dataPoints":[{"timeUnixNano":"1700000000000000000","asInt":"7","attributes":[{"key":"region","value":{"stringValue":"eu"}}]}]}},
                {"name":"temp","unit":"Cel","gauge":{"dataPoints":[{"timeUnixNano":1700000000000000000,"asDouble":21.5}]}},
                {"name":"lat","unit":"s","histogram":{"aggregationTemporality":2,"dataPoints":[{"timeUnixNano":"1700000000000000000","count":"3","sum":0.6,"bucketCounts":["1","2"],"explicitBounds":[0.1]}]}}
              ]}]}]}"#;
            let t = super::decode(body, &super::Options::default()).unwrap();
            let get = |n: &str| {
                t.series
                    .iter()
                    .find(|s| s.labels.metric_name() == Some(n))
                    .unwrap_or_else(|| panic!("{n}"))
                    .samples[0]
            };
            assert_eq!(get("orders_total"), (1_700_000_000_000, 7.0));
            assert_eq!(get("temp_celsius"), (1_700_000_000_000, 21.5));
            assert_eq!(get("lat_seconds_count"), (1_700_000_000_000, 3.0));
            for bad in [&b"[1]"[..], br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"gauge":{"dataPoints":[{"timeUnixNano":"soon"}]}}]}]}]}"#] {
                assert!(super::decode(bad, &super::Options::default()).unwrap_err().to_string().contains("OTLP/JSON"));
            }
        }
    }
}
