//! The protobuf exposition format (`application/vnd.google.protobuf;
//! proto=io.prometheus.client.MetricFamily; encoding=delimited`): length-delimited
//! `MetricFamily` messages, the only format that carries native histograms.
//!
//! The messages are derived by hand with prost (no protoc), only the fields read. A
//! decoded exposition is turned into the same [`Exposition`] the text parsers make
//! (counters, gauges, untyped, summaries and classic histograms as `_bucket{le}`, `_sum`
//! and `_count` samples) plus the native histograms, as Prometheus's scraper does: a
//! histogram is native when it has spans or a zero bucket; its classic buckets are kept
//! too when asked (`always_scrape_classic_histograms`) or when native histograms are not
//! scraped (then a native-only histogram still gives `_count`, `_sum` and the `+Inf`
//! bucket).

use std::borrow::Cow;

use lookout_model::FloatHistogram;
use lookout_model::histogram::Wire;

use crate::{ExemplarLine, Exposition, ParseError, SampleLine};

/// The media type a target answers the protobuf format with.
pub const CONTENT_TYPE: &str =
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited";

/// Most buckets on one side of a scraped native histogram.
pub const MAX_BUCKETS: usize = 1 << 16;

/// Most native-histogram buckets one exposition may hold in all (a bucket costs a byte
/// on the wire and some forty bytes held).
pub const MAX_EXPOSITION_BUCKETS: u64 = 1 << 22;

/// Whether a `Content-Type` announces the protobuf format.
pub fn is_protobuf(content_type: &str) -> bool {
    let mut parts = content_type.split(';').map(str::trim);
    parts
        .next()
        .is_some_and(|m| m.eq_ignore_ascii_case("application/vnd.google.protobuf"))
        && parts.any(|p| {
            p.strip_prefix("proto=")
                .is_some_and(|v| v == "io.prometheus.client.MetricFamily")
        })
}

/// `io.prometheus.client.LabelPair`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelPair {
    /// Name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Timestamp {
    /// Seconds.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `io.prometheus.client.Exemplar`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Exemplar {
    /// Labels.
    #[prost(message, repeated, tag = "1")]
    pub label: Vec<LabelPair>,
    /// Value.
    #[prost(double, tag = "2")]
    pub value: f64,
    /// When.
    #[prost(message, optional, tag = "3")]
    pub timestamp: Option<Timestamp>,
}

/// A value (`Gauge`, `Untyped`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Value {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
}

/// `io.prometheus.client.Counter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Counter {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// An exemplar.
    #[prost(message, optional, tag = "2")]
    pub exemplar: Option<Exemplar>,
    /// When the counter was created.
    #[prost(message, optional, tag = "3")]
    pub created_timestamp: Option<Timestamp>,
}

/// `io.prometheus.client.Quantile`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Quantile {
    /// The quantile.
    #[prost(double, tag = "1")]
    pub quantile: f64,
    /// Its value.
    #[prost(double, tag = "2")]
    pub value: f64,
}

/// `io.prometheus.client.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    /// Observations.
    #[prost(uint64, tag = "1")]
    pub sample_count: u64,
    /// Their sum.
    #[prost(double, tag = "2")]
    pub sample_sum: f64,
    /// Quantiles.
    #[prost(message, repeated, tag = "3")]
    pub quantile: Vec<Quantile>,
    /// When the summary was created.
    #[prost(message, optional, tag = "4")]
    pub created_timestamp: Option<Timestamp>,
}

/// `io.prometheus.client.Bucket`: a classic bucket.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Bucket {
    /// Observations at or below the bound, integer.
    #[prost(uint64, tag = "1")]
    pub cumulative_count: u64,
    /// Observations at or below the bound, float.
    #[prost(double, tag = "4")]
    pub cumulative_count_float: f64,
    /// The bound.
    #[prost(double, tag = "2")]
    pub upper_bound: f64,
    /// An exemplar.
    #[prost(message, optional, tag = "3")]
    pub exemplar: Option<Exemplar>,
}

/// `io.prometheus.client.BucketSpan`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BucketSpan {
    /// Gap before the run.
    #[prost(sint32, tag = "1")]
    pub offset: i32,
    /// Buckets in the run.
    #[prost(uint32, tag = "2")]
    pub length: u32,
}

/// `io.prometheus.client.Histogram`: classic buckets and/or a native histogram.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Histogram {
    /// Observations, integer.
    #[prost(uint64, tag = "1")]
    pub sample_count: u64,
    /// Observations, float.
    #[prost(double, tag = "4")]
    pub sample_count_float: f64,
    /// Their sum.
    #[prost(double, tag = "2")]
    pub sample_sum: f64,
    /// Classic buckets.
    #[prost(message, repeated, tag = "3")]
    pub bucket: Vec<Bucket>,
    /// Native: the schema.
    #[prost(sint32, tag = "5")]
    pub schema: i32,
    /// Native: the zero bucket's width.
    #[prost(double, tag = "6")]
    pub zero_threshold: f64,
    /// Native: the zero bucket's count, integer.
    #[prost(uint64, tag = "7")]
    pub zero_count: u64,
    /// Native: the zero bucket's count, float.
    #[prost(double, tag = "8")]
    pub zero_count_float: f64,
    /// Native: negative spans.
    #[prost(message, repeated, tag = "9")]
    pub negative_span: Vec<BucketSpan>,
    /// Native: negative deltas (integer).
    #[prost(sint64, repeated, tag = "10")]
    pub negative_delta: Vec<i64>,
    /// Native: negative counts (float).
    #[prost(double, repeated, tag = "11")]
    pub negative_count: Vec<f64>,
    /// Native: positive spans.
    #[prost(message, repeated, tag = "12")]
    pub positive_span: Vec<BucketSpan>,
    /// Native: positive deltas (integer).
    #[prost(sint64, repeated, tag = "13")]
    pub positive_delta: Vec<i64>,
    /// Native: positive counts (float).
    #[prost(double, repeated, tag = "14")]
    pub positive_count: Vec<f64>,
    /// When the histogram was created.
    #[prost(message, optional, tag = "15")]
    pub created_timestamp: Option<Timestamp>,
    /// Native: exemplars.
    #[prost(message, repeated, tag = "16")]
    pub exemplars: Vec<Exemplar>,
}

impl Histogram {
    /// Whether it carries a native histogram (Prometheus's test: spans or a zero bucket;
    /// an empty native histogram sends a span of length 0).
    pub fn is_native(&self) -> bool {
        self.zero_threshold != 0.0
            || self.zero_count != 0
            || self.zero_count_float != 0.0
            || !self.positive_span.is_empty()
            || !self.negative_span.is_empty()
    }

    /// Whether its counts are floats.
    fn is_float(&self) -> bool {
        self.sample_count_float > 0.0 || self.zero_count_float > 0.0
    }

    /// The native histogram, or what is wrong with it.
    pub fn native(&self, gauge: bool) -> Result<FloatHistogram, String> {
        let spans = |s: &[BucketSpan]| -> Vec<(i32, u32)> {
            s.iter().map(|s| (s.offset, s.length)).collect()
        };
        let (pos, neg) = (spans(&self.positive_span), spans(&self.negative_span));
        let float = self.is_float();
        Wire {
            schema: self.schema,
            zero_threshold: self.zero_threshold,
            integer: !float,
            count: if float {
                self.sample_count_float
            } else {
                self.sample_count as f64
            },
            zero_count: if float {
                self.zero_count_float
            } else {
                self.zero_count as f64
            },
            sum: self.sample_sum,
            positive: (&pos, &self.positive_delta, &self.positive_count),
            negative: (&neg, &self.negative_delta, &self.negative_count),
            hint: if gauge {
                lookout_model::CounterResetHint::Gauge
            } else {
                lookout_model::CounterResetHint::Unknown
            },
            custom_values: &[],
        }
        .resolve(MAX_BUCKETS)
    }
}

/// `io.prometheus.client.Metric`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Metric {
    /// Labels.
    #[prost(message, repeated, tag = "1")]
    pub label: Vec<LabelPair>,
    /// A gauge.
    #[prost(message, optional, tag = "2")]
    pub gauge: Option<Value>,
    /// A counter.
    #[prost(message, optional, tag = "3")]
    pub counter: Option<Counter>,
    /// A summary.
    #[prost(message, optional, tag = "4")]
    pub summary: Option<Summary>,
    /// Untyped.
    #[prost(message, optional, tag = "5")]
    pub untyped: Option<Value>,
    /// A histogram.
    #[prost(message, optional, tag = "7")]
    pub histogram: Option<Histogram>,
    /// Its timestamp (ms), if given.
    #[prost(int64, optional, tag = "6")]
    pub timestamp_ms: Option<i64>,
}

/// `io.prometheus.client.MetricFamily`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricFamily {
    /// Name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Help.
    #[prost(string, tag = "2")]
    pub help: String,
    /// 0 counter, 1 gauge, 2 summary, 3 untyped, 4 histogram, 5 gauge histogram.
    #[prost(int32, tag = "3")]
    pub r#type: i32,
    /// Its metrics.
    #[prost(message, repeated, tag = "4")]
    pub metric: Vec<Metric>,
    /// Unit.
    #[prost(string, tag = "5")]
    pub unit: String,
}

const COUNTER: i32 = 0;
const GAUGE: i32 = 1;
const SUMMARY: i32 = 2;
const HISTOGRAM: i32 = 4;
const GAUGE_HISTOGRAM: i32 = 5;

/// A decoded protobuf exposition, and the sample names its histograms and summaries need.
#[derive(Debug, Clone, Default)]
pub struct Decoded {
    /// The families, in order.
    pub families: Vec<MetricFamily>,
    /// Per family: `name_bucket`, `name_sum`, `name_count`.
    suffixed: Vec<[String; 3]>,
}

/// Decodes a body of length-delimited `MetricFamily` messages.
pub fn decode(mut body: &[u8]) -> Result<Decoded, ParseError> {
    let mut families = Vec::new();
    while !body.is_empty() {
        let f = <MetricFamily as prost::Message>::decode_length_delimited(&mut body)
            .map_err(|e| ParseError(format!("protobuf exposition: {e}")))?;
        if f.name.is_empty() {
            return Err(ParseError(
                "protobuf exposition: a family without a name".into(),
            ));
        }
        families.push(f);
    }
    let suffixed = families
        .iter()
        .map(|f| ["_bucket", "_sum", "_count"].map(|s| format!("{}{s}", f.name)))
        .collect();
    Ok(Decoded { families, suffixed })
}

/// A native histogram sample of a scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct NativeLine<'a> {
    /// Metric name (the family's).
    pub name: &'a str,
    /// Labels.
    pub labels: Vec<(&'a str, Cow<'a, str>)>,
    /// The histogram.
    pub histogram: FloatHistogram,
    /// Timestamp in ms, if given.
    pub timestamp_ms: Option<i64>,
}

/// What [`Decoded::exposition`] does with histograms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Keep native histograms (`scrape_native_histograms`).
    pub native: bool,
    /// Keep the classic buckets of a histogram that is also native
    /// (`always_scrape_classic_histograms`).
    pub classic_too: bool,
}

fn exemplar(e: &Option<Exemplar>) -> Option<ExemplarLine<'_>> {
    let e = e.as_ref()?;
    Some(ExemplarLine {
        labels: e
            .label
            .iter()
            .map(|l| (l.name.as_str(), Cow::Borrowed(l.value.as_str())))
            .collect(),
        value: e.value,
        timestamp_ms: e.timestamp.as_ref().map(|t| {
            t.seconds
                .saturating_mul(1000)
                .saturating_add(i64::from(t.nanos / 1_000_000))
        }),
    })
}

/// One sample line of `name` with `labels` and, if given, one label more.
fn line<'a>(
    name: &'a str,
    labels: &[(&'a str, Cow<'a, str>)],
    extra: Option<(&'a str, String)>,
    value: f64,
    timestamp_ms: Option<i64>,
    exemplar: Option<ExemplarLine<'a>>,
) -> SampleLine<'a> {
    let mut labels = labels.to_vec();
    if let Some((k, v)) = extra {
        labels.push((k, Cow::Owned(v)));
    }
    SampleLine {
        name,
        labels,
        value,
        timestamp_ms,
        exemplar,
    }
}

impl Decoded {
    /// The exposition's float samples and, with `opts.native`, its native histograms;
    /// a malformed native histogram is an error naming its family.
    pub fn exposition(
        &self,
        opts: Options,
    ) -> Result<(Exposition<'_>, Vec<NativeLine<'_>>), ParseError> {
        let mut out = Exposition::default();
        let mut native = Vec::new();
        let buckets: u64 = self
            .families
            .iter()
            .flat_map(|f| &f.metric)
            .filter_map(|m| m.histogram.as_ref())
            .flat_map(|h| h.positive_span.iter().chain(&h.negative_span))
            .map(|s| u64::from(s.length))
            .sum();
        if opts.native && buckets > MAX_EXPOSITION_BUCKETS {
            return Err(ParseError(format!(
                "protobuf exposition: native histograms hold {buckets} buckets, more than {MAX_EXPOSITION_BUCKETS}"
            )));
        }
        for (f, [bucket, sum, count]) in self.families.iter().zip(&self.suffixed) {
            let kind = match f.r#type {
                COUNTER => "counter",
                GAUGE => "gauge",
                SUMMARY => "summary",
                HISTOGRAM => "histogram",
                GAUGE_HISTOGRAM => "gaugehistogram",
                _ => "untyped",
            };
            out.types.push((f.name.as_str(), kind));
            if !f.help.is_empty() {
                out.help.push((f.name.as_str(), f.help.as_str()));
            }
            if !f.unit.is_empty() {
                out.units.push((f.name.as_str(), f.unit.as_str()));
            }
            for m in &f.metric {
                let labels: Vec<(&str, Cow<'_, str>)> = m
                    .label
                    .iter()
                    .map(|l| (l.name.as_str(), Cow::Borrowed(l.value.as_str())))
                    .collect();
                let t = m.timestamp_ms;
                // A created timestamp goes where the text formats' `_created` lines go.
                let created = match f.r#type {
                    COUNTER => m
                        .counter
                        .as_ref()
                        .and_then(|c| c.created_timestamp.as_ref()),
                    SUMMARY => m
                        .summary
                        .as_ref()
                        .and_then(|s| s.created_timestamp.as_ref()),
                    HISTOGRAM | GAUGE_HISTOGRAM => m
                        .histogram
                        .as_ref()
                        .and_then(|h| h.created_timestamp.as_ref()),
                    _ => None,
                };
                if let Some(ts) = created {
                    let secs = ts.seconds as f64 + f64::from(ts.nanos) / 1e9;
                    if secs.is_finite() && secs > 0.0 {
                        out.created.push((
                            f.name.as_str(),
                            line(&f.name, &labels, None, secs, None, None),
                        ));
                    }
                }
                match f.r#type {
                    COUNTER => {
                        let c = m.counter.as_ref();
                        out.samples.push(line(
                            &f.name,
                            &labels,
                            None,
                            c.map_or(0.0, |c| c.value),
                            t,
                            c.and_then(|c| exemplar(&c.exemplar)),
                        ));
                    }
                    GAUGE => out.samples.push(line(
                        &f.name,
                        &labels,
                        None,
                        m.gauge.as_ref().map_or(0.0, |g| g.value),
                        t,
                        None,
                    )),
                    SUMMARY => {
                        let s = m.summary.clone().unwrap_or_default();
                        for q in &s.quantile {
                            let q_label = lookout_model::gofmt::marshal_float(q.quantile);
                            out.samples.push(line(
                                &f.name,
                                &labels,
                                Some(("quantile", q_label)),
                                q.value,
                                t,
                                None,
                            ));
                        }
                        out.samples
                            .push(line(sum, &labels, None, s.sample_sum, t, None));
                        let n = s.sample_count as f64;
                        out.samples.push(line(count, &labels, None, n, t, None));
                    }
                    HISTOGRAM | GAUGE_HISTOGRAM => {
                        // A histogram metric without its histogram holds nothing to store.
                        let Some(h) = &m.histogram else { continue };
                        let is_native = h.is_native();
                        if is_native && opts.native {
                            let histogram = h
                                .native(f.r#type == GAUGE_HISTOGRAM)
                                .map_err(|e| ParseError(format!("{}: {e}", f.name)))?;
                            native.push(NativeLine {
                                name: &f.name,
                                labels: labels.clone(),
                                histogram,
                                timestamp_ms: m.timestamp_ms,
                            });
                            if !opts.classic_too || h.bucket.is_empty() {
                                continue;
                            }
                        }
                        let float = h.is_float();
                        let mut inf = false;
                        for b in &h.bucket {
                            inf |= b.upper_bound == f64::INFINITY;
                            let c = if float {
                                b.cumulative_count_float
                            } else {
                                b.cumulative_count as f64
                            };
                            let le = lookout_model::gofmt::marshal_float(b.upper_bound);
                            out.samples.push(line(
                                bucket,
                                &labels,
                                Some(("le", le)),
                                c,
                                t,
                                exemplar(&b.exemplar),
                            ));
                        }
                        let total = if float {
                            h.sample_count_float
                        } else {
                            h.sample_count as f64
                        };
                        if !inf {
                            out.samples.push(line(
                                bucket,
                                &labels,
                                Some(("le", "+Inf".into())),
                                total,
                                t,
                                None,
                            ));
                        }
                        out.samples
                            .push(line(sum, &labels, None, h.sample_sum, t, None));
                        out.samples.push(line(count, &labels, None, total, t, None));
                    }
                    _ => out.samples.push(line(
                        &f.name,
                        &labels,
                        None,
                        m.untyped.as_ref().map_or(0.0, |u| u.value),
                        t,
                        None,
                    )),
                }
            }
        }
        Ok((out, native))
    }
}

/// A native histogram as the protobuf exposition writes it (float counts). A
/// custom-bucket histogram, which the exposition cannot carry, becomes classic buckets
/// (cumulative counts at its bounds).
pub fn histogram_message(h: &FloatHistogram) -> Histogram {
    if h.is_custom() {
        let mut cumulative = 0.0;
        let bucket = h
            .custom_values
            .iter()
            .enumerate()
            .map(|(i, &upper_bound)| {
                cumulative += h.positive.get(&(i as i32)).copied().unwrap_or(0.0);
                Bucket {
                    cumulative_count_float: cumulative,
                    upper_bound,
                    ..Default::default()
                }
            })
            .collect();
        return Histogram {
            sample_count_float: h.count,
            sample_sum: h.sum,
            bucket,
            ..Default::default()
        };
    }
    let side = |m| {
        let (spans, counts) = lookout_model::histogram::spans_of(m);
        let spans = spans
            .into_iter()
            .map(|(offset, length)| BucketSpan { offset, length })
            .collect::<Vec<_>>();
        (spans, counts)
    };
    let (positive_span, positive_count) = side(&h.positive);
    let (negative_span, negative_count) = side(&h.negative);
    Histogram {
        sample_count_float: h.count,
        sample_sum: h.sum,
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        zero_count_float: h.zero_count,
        positive_span,
        positive_count,
        negative_span,
        negative_count,
        ..Default::default()
    }
}

/// Encodes families as a protobuf exposition body (delimited messages), for federation,
/// exporters and tests.
pub fn encode(families: &[MetricFamily]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in families {
        prost::Message::encode_length_delimited(f, &mut out).expect("a Vec grows");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lp(n: &str, v: &str) -> LabelPair {
        LabelPair {
            name: n.into(),
            value: v.into(),
        }
    }

    fn families() -> Vec<MetricFamily> {
        vec![
            MetricFamily {
                name: "requests_total".into(),
                help: "Requests.".into(),
                r#type: COUNTER,
                metric: vec![Metric {
                    label: vec![lp("code", "200")],
                    counter: Some(Counter {
                        value: 7.0,
                        exemplar: Some(Exemplar {
                            label: vec![lp("trace_id", "abc")],
                            value: 0.5,
                            timestamp: Some(Timestamp {
                                seconds: 10,
                                nanos: 500_000_000,
                            }),
                        }),
                        created_timestamp: Some(Timestamp {
                            seconds: 1_700_000_000,
                            nanos: 250_000_000,
                        }),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            },
            MetricFamily {
                name: "rpc_seconds".into(),
                r#type: HISTOGRAM,
                metric: vec![Metric {
                    histogram: Some(Histogram {
                        sample_count: 6,
                        sample_sum: 2.5,
                        bucket: vec![Bucket {
                            cumulative_count: 4,
                            upper_bound: 0.5,
                            ..Default::default()
                        }],
                        schema: 0,
                        zero_threshold: 0.001,
                        zero_count: 1,
                        positive_span: vec![
                            BucketSpan {
                                offset: -1,
                                length: 2,
                            },
                            BucketSpan {
                                offset: 1,
                                length: 1,
                            },
                        ],
                        positive_delta: vec![3, -2, 0],
                        ..Default::default()
                    }),
                    timestamp_ms: Some(1234),
                    ..Default::default()
                }],
                ..Default::default()
            },
            MetricFamily {
                name: "q".into(),
                r#type: SUMMARY,
                metric: vec![Metric {
                    summary: Some(Summary {
                        sample_count: 2,
                        sample_sum: 3.0,
                        quantile: vec![Quantile {
                            quantile: 0.5,
                            value: 1.5,
                        }],
                        created_timestamp: None,
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            },
        ]
    }

    fn names(e: &Exposition<'_>) -> Vec<String> {
        e.samples
            .iter()
            .map(|s| {
                let l: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{}{{{}}} {}", s.name, l.join(","), s.value)
            })
            .collect()
    }

    #[test]
    fn families_become_samples_and_native_histograms() {
        let body = encode(&families());
        let d = decode(&body).unwrap();
        let (e, native) = d
            .exposition(Options {
                native: true,
                classic_too: false,
            })
            .unwrap();
        assert_eq!(
            names(&e),
            vec![
                "requests_total{code=200} 7",
                "q{quantile=0.5} 1.5",
                "q_sum{} 3",
                "q_count{} 2",
            ]
        );
        let ex = e.samples[0].exemplar.as_ref().unwrap();
        assert_eq!((ex.value, ex.timestamp_ms), (0.5, Some(10_500)));
        // The counter's created timestamp, as a text exposition's `_created` line.
        assert_eq!(e.created.len(), 1);
        assert_eq!(e.created[0].0, "requests_total");
        assert_eq!(e.created[0].1.value, 1_700_000_000.25);
        assert_eq!(e.created[0].1.labels, vec![("code", Cow::Borrowed("200"))]);
        assert_eq!(native.len(), 1);
        assert_eq!(native[0].timestamp_ms, Some(1234));
        let want = FloatHistogram::parse(
            "{{schema:0 count:6 sum:2.5 z_bucket:1 z_bucket_w:0.001 offset:-1 buckets:[3 1 0 1]}}",
        )
        .unwrap();
        assert!(
            native[0].histogram.same_as(&want),
            "{}",
            native[0].histogram
        );
        assert!(e.types.contains(&("rpc_seconds", "histogram")));
        // Classic buckets too (with the +Inf bucket made up), or only them.
        for opts in [
            Options {
                native: true,
                classic_too: true,
            },
            Options {
                native: false,
                classic_too: false,
            },
        ] {
            let (e, native) = d.exposition(opts).unwrap();
            assert_eq!(native.len(), usize::from(opts.native));
            let n = names(&e);
            for s in [
                "rpc_seconds_bucket{le=0.5} 4",
                "rpc_seconds_bucket{le=+Inf} 6",
                "rpc_seconds_sum{} 2.5",
                "rpc_seconds_count{} 6",
            ] {
                assert!(n.contains(&s.to_string()), "{opts:?}: {n:?}");
            }
        }
    }

    #[test]
    fn damaged_and_hostile_bodies_are_errors() {
        let body = encode(&families());
        for cut in 1..body.len() {
            let _ = decode(&body[..cut]);
        }
        assert!(decode(&body[..body.len() - 1]).is_err());
        assert!(
            decode(&[0xff, 0xff, 0xff, 0xff, 0x0f]).is_err(),
            "a length past the body"
        );
        let mut bad = families();
        bad[1].metric[0].histogram.as_mut().unwrap().positive_delta = vec![3, -5, 0];
        let d = decode(&encode(&bad)).unwrap();
        let e = d
            .exposition(Options {
                native: true,
                classic_too: false,
            })
            .unwrap_err();
        assert!(
            e.0.contains("rpc_seconds") && e.0.contains("negative count"),
            "{e}"
        );
        let wide = vec![MetricFamily {
            name: "w".into(),
            r#type: HISTOGRAM,
            metric: vec![Metric {
                histogram: Some(Histogram {
                    positive_span: vec![BucketSpan {
                        offset: 0,
                        length: u32::MAX,
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }];
        let d = decode(&encode(&wide)).unwrap();
        assert!(
            d.exposition(Options {
                native: true,
                classic_too: false
            })
            .is_err()
        );
        let many: Vec<MetricFamily> = (0..70)
            .map(|i| MetricFamily {
                name: format!("h{i}"),
                r#type: HISTOGRAM,
                metric: vec![Metric {
                    histogram: Some(Histogram {
                        positive_span: vec![BucketSpan {
                            offset: 0,
                            length: 60_000,
                        }],
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect();
        let e = decode(&encode(&many))
            .unwrap()
            .exposition(Options {
                native: true,
                classic_too: false,
            })
            .unwrap_err();
        assert!(e.0.contains("more than 4194304"), "{e}");
        // An exemplar timestamp past what milliseconds hold saturates, never overflows.
        let mut far = families();
        if let Some(c) = &mut far[0].metric[0].counter {
            c.exemplar.as_mut().unwrap().timestamp = Some(Timestamp {
                seconds: i64::MAX,
                nanos: 999_999_999,
            });
        }
        let d = decode(&encode(&far)).unwrap();
        let (e, _) = d
            .exposition(Options {
                native: false,
                classic_too: false,
            })
            .unwrap();
        assert_eq!(
            e.samples[0].exemplar.as_ref().unwrap().timestamp_ms,
            Some(i64::MAX)
        );
        assert!(is_protobuf(CONTENT_TYPE));
        assert!(is_protobuf(
            "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
        ));
        assert!(!is_protobuf("text/plain; version=0.0.4"));
    }
}
