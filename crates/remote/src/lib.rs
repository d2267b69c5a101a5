//! Prometheus remote write: the `prometheus.WriteRequest` message (remote write 1.0) and
//! `io.prometheus.write.v2.Request` (2.0: labels as references into one symbol table),
//! snappy-framed as the protocol sends them, decoded into label sets and samples within
//! limits, and encoded for tests and senders.
//!
//! The messages are derived by hand with prost (no protoc, no generated code): only the
//! fields Lookout reads are declared (samples, exemplars, native histograms with their
//! custom bounds, 2.0's metadata and created timestamps), so anything else in a body is
//! skipped by the decoder, as protobuf allows. Nothing here knows about HTTP or storage:
//! the server decodes with [`decode_write_request_all`] / [`decode_v2_request`] and
//! appends what it gets.

use lookout_model::Labels;

pub mod otlp;
pub mod queue;
pub mod read;
pub mod read_client;
pub mod send;
pub mod xor;

/// What can be wrong with a remote-write body.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body is not snappy's block format.
    #[error("snappy decode error: {0}")]
    Snappy(String),
    /// The body would decompress to more than the limit.
    #[error("decompressed body is {size} bytes, more than the limit of {limit}")]
    TooLarge {
        /// Its decompressed size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The decompressed body is not a `prometheus.WriteRequest`.
    #[error("invalid protobuf: {0}")]
    Protobuf(String),
    /// A native histogram cannot be stored (names the series and the problem).
    #[error("invalid native histogram in {series}: {message}")]
    Histogram {
        /// The series.
        series: String,
        /// What is wrong.
        message: String,
    },
    /// A series' labels cannot be stored (names the series and the problem).
    #[error("invalid labels {series}: {message}")]
    Labels {
        /// The series, as sent.
        series: String,
        /// What is wrong.
        message: String,
    },
}

/// This crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Prometheus's `prometheus.Label`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    /// The name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// Prometheus's `prometheus.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Prometheus's `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// The labels, `__name__` among them.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// The samples, oldest first.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    /// The exemplars.
    #[prost(message, repeated, tag = "3")]
    pub exemplars: Vec<Exemplar>,
    /// Native histograms (1.0's `prometheus.Histogram` is 2.0's message).
    #[prost(message, repeated, tag = "4")]
    pub histograms: Vec<v2::Histogram>,
}

/// Prometheus's `prometheus.Exemplar`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Exemplar {
    /// Its labels (`trace_id`, …).
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// The observed value.
    #[prost(double, tag = "2")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

/// Prometheus's `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// The series.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    /// Metric metadata (sent by itself, every `metadata_config.send_interval`).
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

/// Prometheus's `prometheus.MetricMetadata`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricMetadata {
    /// 0 unknown, 1 counter, 2 gauge, 3 histogram, 4 gauge histogram, 5 summary, 6 info,
    /// 7 state set.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// The family's name.
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    /// Its help text.
    #[prost(string, tag = "4")]
    pub help: String,
    /// Its unit.
    #[prost(string, tag = "5")]
    pub unit: String,
}

/// The metric type number both protocol versions use.
fn type_number(t: lookout_model::MetricType) -> i32 {
    use lookout_model::MetricType::*;
    match t {
        Unknown => 0,
        Counter => 1,
        Gauge => 2,
        Histogram => 3,
        Summary => 5,
        Info => 6,
        StateSet => 7,
    }
}

/// Remote write 2.0's `io.prometheus.write.v2.Request`.
pub mod v2 {
    /// The request: every string once in `symbols` (the first one empty).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Request {
        /// The symbol table.
        #[prost(string, repeated, tag = "4")]
        pub symbols: Vec<String>,
        /// The series.
        #[prost(message, repeated, tag = "5")]
        pub timeseries: Vec<TimeSeries>,
    }

    /// A series: label name/value references into `symbols`, pairwise.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        /// `[name, value, name, value, …]` as indexes into the symbols.
        #[prost(uint32, repeated, tag = "1")]
        pub labels_refs: Vec<u32>,
        /// The float samples.
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<super::Sample>,
        /// Native histograms.
        #[prost(message, repeated, tag = "3")]
        pub histograms: Vec<Histogram>,
        /// The exemplars.
        #[prost(message, repeated, tag = "4")]
        pub exemplars: Vec<Exemplar>,
        /// The series' metadata.
        #[prost(message, optional, tag = "5")]
        pub metadata: Option<Metadata>,
        /// When the series (a counter) was created, if known (ms).
        #[prost(int64, tag = "6")]
        pub created_timestamp: i64,
    }

    /// An exemplar: label name/value references into `symbols`, pairwise.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Exemplar {
        /// `[name, value, …]` as indexes into the symbols.
        #[prost(uint32, repeated, tag = "1")]
        pub labels_refs: Vec<u32>,
        /// The observed value.
        #[prost(double, tag = "2")]
        pub value: f64,
        /// Milliseconds since the epoch.
        #[prost(int64, tag = "3")]
        pub timestamp: i64,
    }

    /// A series' metadata: type, and help and unit as symbol references.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metadata {
        /// 0 unspecified, 1 counter, 2 gauge, 3 histogram, 4 gauge histogram, 5 summary,
        /// 6 info, 7 state set.
        #[prost(int32, tag = "1")]
        pub r#type: i32,
        /// The help text's symbol.
        #[prost(uint32, tag = "3")]
        pub help_ref: u32,
        /// The unit's symbol.
        #[prost(uint32, tag = "4")]
        pub unit_ref: u32,
    }

    /// A native histogram sample (the `oneof`s of the schema are optional fields here,
    /// which is the same on the wire).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Histogram {
        /// The count, for an integer histogram.
        #[prost(uint64, optional, tag = "1")]
        pub count_int: Option<u64>,
        /// The count, for a float histogram.
        #[prost(double, optional, tag = "2")]
        pub count_float: Option<f64>,
        /// The sum of the observations.
        #[prost(double, tag = "3")]
        pub sum: f64,
        /// The resolution: −4 to 8, or −53 for custom buckets.
        #[prost(sint32, tag = "4")]
        pub schema: i32,
        /// The zero bucket's width.
        #[prost(double, tag = "5")]
        pub zero_threshold: f64,
        /// The zero bucket's count, integer histograms.
        #[prost(uint64, optional, tag = "6")]
        pub zero_count_int: Option<u64>,
        /// The zero bucket's count, float histograms.
        #[prost(double, optional, tag = "7")]
        pub zero_count_float: Option<f64>,
        /// Where the negative buckets are.
        #[prost(message, repeated, tag = "8")]
        pub negative_spans: Vec<BucketSpan>,
        /// Negative bucket counts as deltas from the previous bucket's (integer).
        #[prost(sint64, repeated, tag = "9")]
        pub negative_deltas: Vec<i64>,
        /// Negative bucket counts (float).
        #[prost(double, repeated, tag = "10")]
        pub negative_counts: Vec<f64>,
        /// Where the positive buckets are.
        #[prost(message, repeated, tag = "11")]
        pub positive_spans: Vec<BucketSpan>,
        /// Positive bucket counts as deltas from the previous bucket's (integer).
        #[prost(sint64, repeated, tag = "12")]
        pub positive_deltas: Vec<i64>,
        /// Positive bucket counts (float).
        #[prost(double, repeated, tag = "13")]
        pub positive_counts: Vec<f64>,
        /// 0 unknown, 1 reset, 2 no reset, 3 gauge.
        #[prost(int32, tag = "14")]
        pub reset_hint: i32,
        /// Its timestamp (ms).
        #[prost(int64, tag = "15")]
        pub timestamp: i64,
        /// Custom bucket bounds (schema −53).
        #[prost(double, repeated, tag = "16")]
        pub custom_values: Vec<f64>,
    }

    /// A run of consecutive buckets: its offset from the end of the previous run (from
    /// index 0 for the first) and its length.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BucketSpan {
        /// Gap before the run.
        #[prost(sint32, tag = "1")]
        pub offset: i32,
        /// Buckets in the run.
        #[prost(uint32, tag = "2")]
        pub length: u32,
    }
}

/// Most buckets on one side of a native histogram a request may carry.
pub const MAX_HISTOGRAM_BUCKETS: usize = 1 << 16;

/// Most native-histogram buckets one request may carry in all: a bucket costs a byte on
/// the wire and some forty bytes held, so the body limit alone would let a request hold
/// gigabytes.
pub const MAX_REQUEST_BUCKETS: u64 = 1 << 22;

/// A native histogram from the wire, as Lookout keeps it: spans resolved to bucket
/// indexes, integer deltas summed to counts, custom bounds kept (schema −53). Schemas
/// out of range, spans that do not match their counts, negative or overflowing counts,
/// bounds that are not finite and ascending and more than [`MAX_HISTOGRAM_BUCKETS`]
/// buckets on a side are refused by name.
pub fn histogram_of(
    h: &v2::Histogram,
) -> std::result::Result<lookout_model::FloatHistogram, String> {
    use lookout_model::CounterResetHint;
    let integer = h.count_float.is_none();
    let spans = |s: &[v2::BucketSpan]| -> Vec<(i32, u32)> {
        s.iter().map(|s| (s.offset, s.length)).collect()
    };
    let (pos, neg) = (spans(&h.positive_spans), spans(&h.negative_spans));
    let wire = lookout_model::histogram::Wire {
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        integer,
        count: h
            .count_int
            .map_or(h.count_float.unwrap_or(0.0), |c| c as f64),
        zero_count: h
            .zero_count_int
            .map_or(h.zero_count_float.unwrap_or(0.0), |c| c as f64),
        sum: h.sum,
        positive: (&pos, &h.positive_deltas, &h.positive_counts),
        negative: (&neg, &h.negative_deltas, &h.negative_counts),
        hint: match h.reset_hint {
            1 => CounterResetHint::Reset,
            2 => CounterResetHint::NotReset,
            3 => CounterResetHint::Gauge,
            _ => CounterResetHint::Unknown,
        },
        custom_values: &h.custom_values,
    };
    wire.resolve(MAX_HISTOGRAM_BUCKETS)
}

/// A series' native-histogram samples from a request.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSeries {
    /// Its labels.
    pub labels: Labels,
    /// (timestamp ms, histogram), as sent.
    pub samples: Vec<(i64, lookout_model::FloatHistogram)>,
}

/// A decoded remote-write 2.0 request: the float series and the native-histogram ones.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedV2 {
    /// The series with float samples (or exemplars).
    pub series: Vec<Series>,
    /// Native histogram samples in the request.
    pub histograms: usize,
    /// The series with native-histogram samples.
    pub histogram_series: Vec<HistogramSeries>,
}

/// Refuses a request whose native histograms hold more than [`MAX_REQUEST_BUCKETS`]
/// buckets (and custom bounds) in all.
fn check_bucket_budget<'a>(histograms: impl Iterator<Item = &'a v2::Histogram>) -> Result<()> {
    let buckets: u64 = histograms
        .map(|h| {
            h.positive_spans
                .iter()
                .chain(&h.negative_spans)
                .map(|s| u64::from(s.length))
                .sum::<u64>()
                + h.custom_values.len() as u64
        })
        .sum();
    if buckets > MAX_REQUEST_BUCKETS {
        return Err(Error::Protobuf(format!(
            "the request's native histograms hold {buckets} buckets, more than {MAX_REQUEST_BUCKETS}"
        )));
    }
    Ok(())
}

/// One series' native histograms from the wire, each checked ([`histogram_of`]).
fn histogram_series(pairs: &[Label], wire: &[v2::Histogram]) -> Result<HistogramSeries> {
    let s = series_of(pairs, &[])?;
    let samples = wire
        .iter()
        .map(|h| {
            histogram_of(h)
                .map(|x| (h.timestamp, x))
                .map_err(|message| Error::Histogram {
                    series: s.labels.to_string(),
                    message,
                })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(HistogramSeries {
        labels: s.labels,
        samples,
    })
}

/// Decodes a snappy-compressed `io.prometheus.write.v2.Request`: every label reference
/// must point into the symbol table, in name/value pairs.
pub fn decode_v2_request(body: &[u8], limits: &Limits) -> Result<DecodedV2> {
    let raw = decompress(body, limits)?;
    let req = <v2::Request as prost::Message>::decode(raw.as_slice())
        .map_err(|e| Error::Protobuf(e.to_string()))?;
    let mut out = DecodedV2 {
        series: Vec::with_capacity(req.timeseries.len()),
        histograms: 0,
        histogram_series: Vec::new(),
    };
    check_bucket_budget(req.timeseries.iter().flat_map(|ts| &ts.histograms))?;
    for ts in req.timeseries {
        out.histograms += ts.histograms.len();
        let pairs = resolve(&req.symbols, &ts.labels_refs)?;
        if !ts.histograms.is_empty() {
            out.histogram_series
                .push(histogram_series(&pairs, &ts.histograms)?);
        }
        if ts.samples.is_empty() && ts.exemplars.is_empty() {
            continue;
        }
        let mut s = series_of(&pairs, &ts.samples)?;
        s.created = ts.created_timestamp;
        for e in &ts.exemplars {
            let labels = resolve(&req.symbols, &e.labels_refs)?;
            s.exemplars.push(exemplar_of(&labels, e.value, e.timestamp));
        }
        out.series.push(s);
    }
    Ok(out)
}

/// Label pairs from references into `symbols`: an even number of them, each in range.
fn resolve(symbols: &[String], refs: &[u32]) -> Result<Vec<Label>> {
    if !refs.len().is_multiple_of(2) {
        return Err(Error::Labels {
            series: format!("{refs:?}"),
            message: "an odd number of label references".into(),
        });
    }
    let sym = |i: u32| {
        symbols.get(i as usize).ok_or_else(|| Error::Labels {
            series: format!("{refs:?}"),
            message: format!("label reference {i} outside the {} symbols", symbols.len()),
        })
    };
    refs.chunks(2)
        .map(|r| {
            Ok(Label {
                name: sym(r[0])?.clone(),
                value: sym(r[1])?.clone(),
            })
        })
        .collect()
}

pub(crate) fn decompress(body: &[u8], limits: &Limits) -> Result<Vec<u8>> {
    let size = snap::raw::decompress_len(body).map_err(|e| Error::Snappy(e.to_string()))?;
    if size > limits.max_decompressed {
        return Err(Error::TooLarge {
            size,
            limit: limits.max_decompressed,
        });
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| Error::Snappy(e.to_string()))
}

/// One series from its wire labels: names valid and not repeated, a metric name present.
pub(crate) fn series_of(wire: &[Label], samples: &[Sample]) -> Result<Series> {
    let shown = || {
        let parts: Vec<String> = wire
            .iter()
            .map(|l| format!("{}={:?}", l.name, l.value))
            .collect();
        format!("{{{}}}", parts.join(", "))
    };
    let mut seen = std::collections::HashSet::new();
    for l in wire {
        if !lookout_model::is_valid_label_name(&l.name) {
            return Err(Error::Labels {
                series: shown(),
                message: format!("invalid label name {:?}", l.name),
            });
        }
        if !seen.insert(l.name.as_str()) {
            return Err(Error::Labels {
                series: shown(),
                message: format!("duplicate label name {:?}", l.name),
            });
        }
    }
    let labels = Labels::from_pairs(wire.iter().map(|l| (l.name.as_str(), l.value.as_str())));
    if labels.metric_name().is_none_or(str::is_empty) {
        return Err(Error::Labels {
            series: shown(),
            message: "no metric name".into(),
        });
    }
    Ok(Series {
        labels,
        samples: samples.iter().map(|s| (s.timestamp, s.value)).collect(),
        exemplars: Vec::new(),
        created: 0,
    })
}

/// Bounds on one request.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest decompressed body, in bytes.
    pub max_decompressed: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_decompressed: 64 << 20,
        }
    }
}

/// One series of a request, ready to append.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its labels.
    pub labels: Labels,
    /// (timestamp ms, value), as sent.
    pub samples: Vec<(i64, f64)>,
    /// Exemplars, as sent.
    pub exemplars: Vec<lookout_model::Exemplar>,
    /// When the series was created (ms; 0: not known), which only 2.0 carries.
    pub created: i64,
}

/// Decodes a snappy-compressed `prometheus.WriteRequest`, refusing bodies that would
/// decompress past the limit before decompressing them, and series whose labels cannot
/// be stored (an invalid or repeated name, no metric name).
pub fn decode_write_request(body: &[u8], limits: &Limits) -> Result<Vec<Series>> {
    Ok(decode_write_request_all(body, limits)?.series)
}

/// [`decode_write_request`] with the request's native histograms (1.0 carries them as
/// Prometheus sends them with `send_native_histograms`), checked as 2.0's are.
pub fn decode_write_request_all(body: &[u8], limits: &Limits) -> Result<DecodedV2> {
    let raw = decompress(body, limits)?;
    let req = <WriteRequest as prost::Message>::decode(raw.as_slice())
        .map_err(|e| Error::Protobuf(e.to_string()))?;
    check_bucket_budget(req.timeseries.iter().flat_map(|ts| &ts.histograms))?;
    let mut out = DecodedV2 {
        series: Vec::with_capacity(req.timeseries.len()),
        histograms: 0,
        histogram_series: Vec::new(),
    };
    for ts in &req.timeseries {
        out.histograms += ts.histograms.len();
        if !ts.histograms.is_empty() {
            out.histogram_series
                .push(histogram_series(&ts.labels, &ts.histograms)?);
            if ts.samples.is_empty() && ts.exemplars.is_empty() {
                continue;
            }
        }
        let mut s = series_of(&ts.labels, &ts.samples)?;
        s.exemplars = ts
            .exemplars
            .iter()
            .map(|e| exemplar_of(&e.labels, e.value, e.timestamp))
            .collect();
        out.series.push(s);
    }
    Ok(out)
}

/// A native histogram as the wire carries it (float counts; spans from the bucket
/// indexes; custom bounds kept), at `t` (ms).
pub fn wire_histogram(h: &lookout_model::FloatHistogram, t: i64) -> v2::Histogram {
    use lookout_model::CounterResetHint as Hint;
    fn side(m: &std::collections::BTreeMap<i32, f64>) -> (Vec<v2::BucketSpan>, Vec<f64>) {
        let (spans, counts) = lookout_model::histogram::spans_of(m);
        let spans = spans
            .into_iter()
            .map(|(offset, length)| v2::BucketSpan { offset, length })
            .collect();
        (spans, counts)
    }
    let (positive_spans, positive_counts) = side(&h.positive);
    let (negative_spans, negative_counts) = side(&h.negative);
    v2::Histogram {
        count_float: Some(h.count),
        sum: h.sum,
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        zero_count_float: Some(h.zero_count),
        negative_spans,
        negative_counts,
        positive_spans,
        positive_counts,
        reset_hint: match h.hint {
            Hint::Unknown => 0,
            Hint::Reset => 1,
            Hint::NotReset => 2,
            Hint::Gauge => 3,
        },
        timestamp: t,
        custom_values: h.custom_values.clone(),
        ..Default::default()
    }
}

/// An exemplar from its wire labels; whether the store takes it (label names, length,
/// order) is the store's to say.
fn exemplar_of(wire: &[Label], value: f64, t: i64) -> lookout_model::Exemplar {
    lookout_model::Exemplar {
        labels: Labels::from_pairs(wire.iter().map(|l| (l.name.as_str(), l.value.as_str()))),
        value,
        t,
    }
}

/// A series as remote write 1.0 and remote read carry it.
pub(crate) fn wire(s: &Series) -> TimeSeries {
    TimeSeries {
        labels: wire_labels(&s.labels),
        samples: s
            .samples
            .iter()
            .map(|&(timestamp, value)| Sample { value, timestamp })
            .collect(),
        exemplars: s
            .exemplars
            .iter()
            .map(|e| Exemplar {
                labels: wire_labels(&e.labels),
                value: e.value,
                timestamp: e.t,
            })
            .collect(),
        histograms: Vec::new(),
    }
}

fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(raw)
        .expect("snappy compresses any input")
}

/// Encodes series as a snappy-compressed `prometheus.WriteRequest`.
pub fn encode_write_request(series: &[Series]) -> Vec<u8> {
    encode_write_request_with(series, &[])
}

/// Appends `series` as the `timeseries` fields of a `prometheus.WriteRequest`, written
/// straight from the label sets (the sender's hot path: no owned strings per label), in
/// the canonical encoding except that a `-0.0` value is kept.
fn put_timeseries(series: &[Series], out: &mut Vec<u8>) {
    use prost::encoding::{encode_varint, encoded_len_varint as vlen};
    fn str_len(s: &str) -> usize {
        if s.is_empty() {
            0
        } else {
            1 + vlen(s.len() as u64) + s.len()
        }
    }
    fn put_str(tag: u8, s: &str, out: &mut Vec<u8>) {
        if !s.is_empty() {
            out.push(tag);
            encode_varint(s.len() as u64, out);
            out.extend_from_slice(s.as_bytes());
        }
    }
    fn sample_len(t: i64, v: f64) -> usize {
        (if v.to_bits() != 0 { 9 } else { 0 }) + if t != 0 { 1 + vlen(t as u64) } else { 0 }
    }
    fn labels_len(ls: &Labels) -> usize {
        ls.iter()
            .map(|l| {
                let n = str_len(&l.name) + str_len(&l.value);
                1 + vlen(n as u64) + n
            })
            .sum()
    }
    fn put_labels(tag: u8, ls: &Labels, out: &mut Vec<u8>) {
        for l in ls.iter() {
            out.push(tag);
            encode_varint((str_len(&l.name) + str_len(&l.value)) as u64, out);
            put_str(0x0a, &l.name, out);
            put_str(0x12, &l.value, out);
        }
    }
    // `prometheus.Exemplar`: labels (1), value (2, fixed64), timestamp (3).
    fn exemplar_len(e: &lookout_model::Exemplar) -> usize {
        labels_len(&e.labels) + sample_len(e.t, e.value)
    }
    for s in series {
        let mut len = labels_len(&s.labels);
        for &(t, v) in &s.samples {
            let n = sample_len(t, v);
            len += 1 + vlen(n as u64) + n;
        }
        for e in &s.exemplars {
            let n = exemplar_len(e);
            len += 1 + vlen(n as u64) + n;
        }
        out.push(0x0a);
        encode_varint(len as u64, out);
        put_labels(0x0a, &s.labels, out);
        for &(t, v) in &s.samples {
            out.push(0x12);
            encode_varint(sample_len(t, v) as u64, out);
            if v.to_bits() != 0 {
                out.push(0x09);
                out.extend_from_slice(&v.to_bits().to_le_bytes());
            }
            if t != 0 {
                out.push(0x10);
                encode_varint(t as u64, out);
            }
        }
        for e in &s.exemplars {
            out.push(0x1a);
            encode_varint(exemplar_len(e) as u64, out);
            put_labels(0x0a, &e.labels, out);
            if e.value.to_bits() != 0 {
                out.push(0x11);
                out.extend_from_slice(&e.value.to_bits().to_le_bytes());
            }
            if e.t != 0 {
                out.push(0x18);
                encode_varint(e.t as u64, out);
            }
        }
    }
}

/// Encodes series and metadata as a snappy-compressed `prometheus.WriteRequest`.
pub fn encode_write_request_with(series: &[Series], metadata: &[send::MetricMeta]) -> Vec<u8> {
    encode_write_request_all(series, &[], metadata)
}

/// The 1.0 wire labels of a label set.
pub(crate) fn wire_labels(ls: &Labels) -> Vec<Label> {
    ls.iter()
        .map(|l| Label {
            name: l.name.to_string(),
            value: l.value.to_string(),
        })
        .collect()
}

/// Encodes series, native-histogram series and metadata as a snappy-compressed
/// `prometheus.WriteRequest`.
pub fn encode_write_request_all(
    series: &[Series],
    histograms: &[HistogramSeries],
    metadata: &[send::MetricMeta],
) -> Vec<u8> {
    let mut raw = Vec::with_capacity(series.len() * 96);
    put_timeseries(series, &mut raw);
    if metadata.is_empty() && histograms.is_empty() {
        return snappy(&raw);
    }
    // Repeated fields of concatenated messages merge: histogram series and metadata
    // follow the float series.
    let req = WriteRequest {
        timeseries: histograms
            .iter()
            .map(|s| TimeSeries {
                labels: wire_labels(&s.labels),
                histograms: s
                    .samples
                    .iter()
                    .map(|(t, h)| wire_histogram(h, *t))
                    .collect(),
                ..Default::default()
            })
            .collect(),
        metadata: metadata
            .iter()
            .map(|m| MetricMetadata {
                r#type: type_number(m.kind),
                metric_family_name: m.name.clone(),
                help: m.help.clone(),
                unit: m.unit.clone(),
            })
            .collect(),
    };
    raw.extend(prost::Message::encode_to_vec(&req));
    snappy(&raw)
}

/// A `prometheus.WriteRequest` carrying only metadata.
pub fn encode_metadata_request(metadata: &[send::MetricMeta]) -> Vec<u8> {
    encode_write_request_with(&[], metadata)
}

/// Encodes series as a snappy-compressed `io.prometheus.write.v2.Request` (one symbol
/// table, the empty string first).
pub fn encode_v2_request(series: &[Series]) -> Vec<u8> {
    encode_v2_request_with(series, &Default::default())
}

/// The metadata of the family a sample name belongs to: the name itself, or without
/// a histogram's or summary's suffix.
fn family_of<'a>(
    name: &str,
    metadata: &'a std::collections::HashMap<String, send::MetricMeta>,
) -> Option<&'a send::MetricMeta> {
    metadata.get(name).or_else(|| {
        ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).and_then(|b| metadata.get(b)))
    })
}

/// Encodes series as a snappy-compressed `io.prometheus.write.v2.Request`, each series
/// with its family's metadata when known.
pub fn encode_v2_request_with(
    series: &[Series],
    metadata: &std::collections::HashMap<String, send::MetricMeta>,
) -> Vec<u8> {
    encode_v2_request_all(series, &[], metadata)
}

/// [`encode_v2_request_with`] with native-histogram series too.
pub fn encode_v2_request_all(
    series: &[Series],
    histograms: &[HistogramSeries],
    metadata: &std::collections::HashMap<String, send::MetricMeta>,
) -> Vec<u8> {
    // Every series (float or histogram) is its labels' references and its family's
    // metadata, then its own samples.
    let mut t = V2Symbols::default();
    let mut timeseries = Vec::with_capacity(series.len() + histograms.len());
    for s in series {
        let mut ts = t.series(&s.labels, metadata);
        ts.samples = s
            .samples
            .iter()
            .map(|&(timestamp, value)| Sample { value, timestamp })
            .collect();
        ts.exemplars = s
            .exemplars
            .iter()
            .map(|e| v2::Exemplar {
                labels_refs: t.refs(&e.labels),
                value: e.value,
                timestamp: e.t,
            })
            .collect();
        ts.created_timestamp = s.created;
        timeseries.push(ts);
    }
    for s in histograms {
        let mut ts = t.series(&s.labels, metadata);
        ts.histograms = s
            .samples
            .iter()
            .map(|(t, h)| wire_histogram(h, *t))
            .collect();
        timeseries.push(ts);
    }
    let symbols = t.symbols;
    encode_v2(&v2::Request {
        symbols,
        timeseries,
    })
}

/// A 2.0 request's symbol table in the making (the empty string first).
struct V2Symbols<'a> {
    symbols: Vec<String>,
    index: std::collections::HashMap<&'a str, u32>,
}

impl Default for V2Symbols<'_> {
    fn default() -> Self {
        Self {
            symbols: vec![String::new()],
            index: [("", 0)].into(),
        }
    }
}

impl<'a> V2Symbols<'a> {
    fn sym(&mut self, s: &'a str) -> u32 {
        let symbols = &mut self.symbols;
        *self.index.entry(s).or_insert_with(|| {
            symbols.push(s.to_string());
            (symbols.len() - 1) as u32
        })
    }

    /// A label set as name/value reference pairs.
    fn refs(&mut self, labels: &'a Labels) -> Vec<u32> {
        labels
            .iter()
            .flat_map(|l| [self.sym(&l.name), self.sym(&l.value)])
            .collect()
    }

    /// A series with its labels and its family's metadata, nothing else yet.
    fn series(
        &mut self,
        labels: &'a Labels,
        metadata: &'a std::collections::HashMap<String, send::MetricMeta>,
    ) -> v2::TimeSeries {
        v2::TimeSeries {
            labels_refs: self.refs(labels),
            metadata: labels
                .metric_name()
                .and_then(|n| family_of(n, metadata))
                .map(|m| v2::Metadata {
                    r#type: type_number(m.kind),
                    help_ref: self.sym(&m.help),
                    unit_ref: self.sym(&m.unit),
                }),
            ..Default::default()
        }
    }
}

/// Encodes a 2.0 request as built by the caller (native histograms, for one), snappy
/// compressed as the protocol sends it.
pub fn encode_v2(req: &v2::Request) -> Vec<u8> {
    snappy(&prost::Message::encode_to_vec(req))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_requests_round_trip_and_bad_references_are_named() {
        let sent = vec![
            series(&[("__name__", "up"), ("job", "node")], &[(1000, 1.0)]),
            series(
                &[("__name__", "up"), ("job", "db")],
                &[(1000, 0.0), (2000, 1.0)],
            ),
        ];
        let got = decode_v2_request(&encode_v2_request(&sent), &Limits::default()).unwrap();
        assert_eq!(got.series, sent);
        assert_eq!(got.histograms, 0);
        let bad = v2::Request {
            symbols: vec![String::new(), "__name__".into(), "up".into()],
            timeseries: vec![v2::TimeSeries {
                labels_refs: vec![1, 2, 1, 9],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: 1,
                }],
                ..Default::default()
            }],
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&prost::Message::encode_to_vec(&bad))
            .unwrap();
        let e = decode_v2_request(&body, &Limits::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("label reference 9 outside the 3 symbols"), "{e}");
        let odd = v2::Request {
            symbols: vec![String::new(), "__name__".into()],
            timeseries: vec![v2::TimeSeries {
                labels_refs: vec![1],
                ..Default::default()
            }],
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&prost::Message::encode_to_vec(&odd))
            .unwrap();
        assert!(
            decode_v2_request(&body, &Limits::default())
                .unwrap_err()
                .to_string()
                .contains("odd number")
        );
        let with_hist = v2::Request {
            symbols: vec![String::new(), "__name__".into(), "h".into()],
            timeseries: vec![v2::TimeSeries {
                labels_refs: vec![1, 2],
                histograms: vec![v2::Histogram {
                    timestamp: 5,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&prost::Message::encode_to_vec(&with_hist))
            .unwrap();
        let got = decode_v2_request(&body, &Limits::default()).unwrap();
        assert_eq!((got.series.len(), got.histograms), (0, 1));
        assert_eq!(got.histogram_series[0].samples[0].0, 5);
    }

    fn span(offset: i32, length: u32) -> v2::BucketSpan {
        v2::BucketSpan { offset, length }
    }

    #[test]
    fn native_histograms_from_the_wire_resolve_spans_and_deltas() {
        // Prometheus's own example: spans [0:2] [2:1] hold buckets 0, 1 and 4 (offset
        // from the previous span's end); integer counts as deltas.
        let h = v2::Histogram {
            count_int: Some(15),
            sum: 18.4,
            schema: 1,
            zero_threshold: 0.001,
            zero_count_int: Some(2),
            positive_spans: vec![span(0, 2), span(2, 1)],
            positive_deltas: vec![2, 1, -1],
            negative_spans: vec![span(-3, 2)],
            negative_deltas: vec![1, 4],
            reset_hint: 2,
            timestamp: 7,
            ..Default::default()
        };
        let got = histogram_of(&h).unwrap();
        let want = lookout_model::FloatHistogram::parse(
            "{{schema:1 count:15 sum:18.4 z_bucket:2 z_bucket_w:0.001 offset:0 buckets:[2 3 0 0 2] n_offset:-3 n_buckets:[1 5] counter_reset_hint:not_reset}}",
        )
        .unwrap();
        assert!(got.same_as(&want), "{got} vs {want}");
        assert_eq!(
            got.positive.keys().copied().collect::<Vec<_>>(),
            vec![0, 1, 4]
        );
        let float = v2::Histogram {
            count_float: Some(2.5),
            zero_count_float: Some(0.5),
            positive_spans: vec![span(-1, 2)],
            positive_counts: vec![1.5, 0.5],
            ..Default::default()
        };
        let got = histogram_of(&float).unwrap();
        assert_eq!((got.count, got.zero_count), (2.5, 0.5));
        assert_eq!(got.positive.get(&-1), Some(&1.5));
        // Hostile and malformed ones are named.
        let bad = |h: v2::Histogram, says: &str| {
            let e = histogram_of(&h).unwrap_err();
            assert!(e.contains(says), "{e}");
        };
        let many = v2::Request {
            symbols: vec![String::new(), "__name__".into(), "h".into()],
            timeseries: vec![v2::TimeSeries {
                labels_refs: vec![1, 2],
                histograms: vec![
                    v2::Histogram {
                        positive_spans: vec![span(0, 60_000)],
                        ..Default::default()
                    };
                    70
                ],
                ..Default::default()
            }],
        };
        let e = decode_v2_request(&encode_v2(&many), &Limits::default()).unwrap_err();
        assert!(e.to_string().contains("more than 4194304"), "{e}");
        bad(
            v2::Histogram {
                count_int: Some(1),
                positive_spans: vec![span(0, 1)],
                positive_deltas: vec![2],
                ..Default::default()
            },
            "2 observations found in buckets, but the count is 1",
        );
        bad(
            v2::Histogram {
                schema: -53,
                custom_values: vec![2.0, 1.0],
                ..Default::default()
            },
            "finite and ascending",
        );
        bad(
            v2::Histogram {
                schema: -53,
                custom_values: vec![1.0],
                count_int: Some(3),
                positive_spans: vec![span(0, 3)],
                positive_deltas: vec![1, 0, 0],
                ..Default::default()
            },
            "past the custom bounds",
        );
        bad(
            v2::Histogram {
                schema: 0,
                custom_values: vec![1.0],
                ..Default::default()
            },
            "custom bucket bounds on an exponential",
        );
        // A custom-bucket histogram is kept with its bounds.
        let nhcb = histogram_of(&v2::Histogram {
            schema: -53,
            custom_values: vec![0.5, 1.0],
            count_int: Some(3),
            sum: 1.5,
            positive_spans: vec![span(0, 3)],
            positive_deltas: vec![1, 0, 0],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(nhcb.custom_values, vec![0.5, 1.0]);
        assert_eq!(nhcb.bucket_bounds(2), (1.0, f64::INFINITY));
        bad(
            v2::Histogram {
                schema: 9,
                ..Default::default()
            },
            "schema 9",
        );
        bad(
            v2::Histogram {
                positive_spans: vec![span(0, 3)],
                positive_deltas: vec![1],
                ..Default::default()
            },
            "3 buckets but 1 counts",
        );
        bad(
            v2::Histogram {
                positive_spans: vec![span(0, 2)],
                positive_deltas: vec![1, -2],
                ..Default::default()
            },
            "negative count",
        );
        bad(
            v2::Histogram {
                positive_spans: vec![span(0, u32::MAX), span(0, u32::MAX)],
                ..Default::default()
            },
            "more than 65536",
        );
        bad(
            v2::Histogram {
                positive_spans: vec![span(i32::MAX, 2)],
                positive_deltas: vec![1, 0],
                ..Default::default()
            },
            "out of range",
        );
        bad(
            v2::Histogram {
                positive_spans: vec![span(0, 1)],
                positive_deltas: vec![i64::MAX],
                positive_counts: vec![1.0],
                ..Default::default()
            },
            "mix",
        );
    }

    #[test]
    fn native_histograms_round_trip_in_both_versions() {
        let hs = vec![HistogramSeries {
            labels: Labels::from_pairs([("__name__", "rpc_seconds"), ("job", "a")]),
            samples: vec![
                (
                    1000,
                    lookout_model::FloatHistogram::parse(
                        "{{schema:1 count:9 sum:4.5 z_bucket:1 z_bucket_w:0.001 offset:-2 buckets:[1 2 0 3] n_offset:5 n_buckets:[1 1] counter_reset_hint:not_reset}}",
                    )
                    .unwrap(),
                ),
                (
                    2000,
                    lookout_model::FloatHistogram::parse(
                        "{{schema:-53 count:3 sum:1 custom_values:[0.5 1] buckets:[1 0 2] counter_reset_hint:gauge}}",
                    )
                    .unwrap(),
                ),
            ],
        }];
        let floats = vec![series(&[("__name__", "up")], &[(1000, 1.0)])];
        let same = |got: &[HistogramSeries]| {
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].labels, hs[0].labels);
            for ((ta, a), (tb, b)) in got[0].samples.iter().zip(&hs[0].samples) {
                assert_eq!(ta, tb);
                assert!(a.same_as(b), "{a} vs {b}");
            }
        };
        let v1 = decode_write_request_all(
            &encode_write_request_all(&floats, &hs, &[]),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(v1.series, floats);
        assert_eq!(v1.histograms, 2);
        same(&v1.histogram_series);
        let v2 = decode_v2_request(
            &encode_v2_request_all(&floats, &hs, &Default::default()),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(v2.series, floats);
        same(&v2.histogram_series);
        // Spans: the first offset from 0, later ones from the previous span's end.
        let w = wire_histogram(&hs[0].samples[0].1, 0);
        assert_eq!(
            w.positive_spans
                .iter()
                .map(|s| (s.offset, s.length))
                .collect::<Vec<_>>(),
            vec![(-2, 4)]
        );
    }

    #[test]
    fn exemplars_are_read_in_both_versions() {
        let v1 = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "__name__".into(),
                    value: "lat_bucket".into(),
                }],
                samples: vec![Sample {
                    value: 3.0,
                    timestamp: 1000,
                }],
                exemplars: vec![Exemplar {
                    labels: vec![Label {
                        name: "trace_id".into(),
                        value: "abc".into(),
                    }],
                    value: 0.25,
                    timestamp: 900,
                }],
                histograms: Vec::new(),
            }],
            ..Default::default()
        };
        let body = snappy(&prost::Message::encode_to_vec(&v1));
        let got = decode_write_request(&body, &Limits::default()).unwrap();
        let want = lookout_model::Exemplar {
            labels: Labels::from_pairs([("trace_id", "abc")]),
            value: 0.25,
            t: 900,
        };
        assert_eq!(got[0].exemplars, vec![want.clone()]);
        let v2 = v2::Request {
            symbols: ["", "__name__", "lat_bucket", "trace_id", "abc"]
                .map(String::from)
                .to_vec(),
            timeseries: vec![v2::TimeSeries {
                labels_refs: vec![1, 2],
                exemplars: vec![v2::Exemplar {
                    labels_refs: vec![3, 4],
                    value: 0.25,
                    timestamp: 900,
                }],
                ..Default::default()
            }],
        };
        let got = decode_v2_request(
            &snappy(&prost::Message::encode_to_vec(&v2)),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(got.series[0].exemplars, vec![want]);
        assert!(got.series[0].samples.is_empty());
        // A bad reference in an exemplar is named like one in a series.
        let mut bad = v2;
        bad.timeseries[0].exemplars[0].labels_refs = vec![3, 40];
        let e = decode_v2_request(
            &snappy(&prost::Message::encode_to_vec(&bad)),
            &Limits::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("label reference 40"), "{e}");
    }

    fn series(pairs: &[(&str, &str)], samples: &[(i64, f64)]) -> Series {
        Series {
            labels: Labels::from_pairs(pairs.iter().copied()),
            samples: samples.to_vec(),
            exemplars: Vec::new(),
            created: 0,
        }
    }

    #[test]
    fn requests_round_trip() {
        let sent = vec![
            series(
                &[("__name__", "up"), ("job", "node")],
                &[(1000, 1.0), (2000, 0.0)],
            ),
            series(&[("__name__", "temp"), ("room", "é")], &[(1500, f64::NAN)]),
        ];
        let got = decode_write_request(&encode_write_request(&sent), &Limits::default()).unwrap();
        assert_eq!(got[0], sent[0]);
        assert_eq!(got[1].labels, sent[1].labels);
        assert!(got[1].samples[0].1.is_nan());
        // Exemplars, by the hand encoder, as prost writes them; a series may carry
        // exemplars alone. Zero values and times are left out, as proto3 does.
        let mut with = sent[0].clone();
        with.exemplars = vec![
            lookout_model::Exemplar {
                labels: Labels::from_pairs([("trace_id", "4bf9"), ("span_id", "00f0")]),
                value: 0.5,
                t: 1000,
            },
            lookout_model::Exemplar {
                labels: Labels::empty(),
                value: 0.0,
                t: 0,
            },
        ];
        let mut only = series(&[("__name__", "lat_bucket")], &[]);
        only.exemplars = with.exemplars[..1].to_vec();
        let both = vec![with, only];
        let body = encode_write_request(&both);
        let by_prost = WriteRequest {
            timeseries: both.iter().map(wire).collect(),
            ..Default::default()
        };
        assert_eq!(
            snap::raw::Decoder::new().decompress_vec(&body).unwrap(),
            prost::Message::encode_to_vec(&by_prost)
        );
        assert_eq!(
            decode_write_request(&body, &Limits::default()).unwrap(),
            both
        );
        let v2 = decode_v2_request(&encode_v2_request(&both), &Limits::default()).unwrap();
        assert_eq!(v2.series, both);
    }

    #[test]
    fn hostile_bodies_get_named_errors() {
        let limits = Limits::default();
        assert!(matches!(
            decode_write_request(b"not snappy at all", &limits),
            Err(Error::Snappy(_))
        ));
        // Valid snappy around bytes that are not a WriteRequest.
        let junk = snap::raw::Encoder::new().compress_vec(&[0xff; 64]).unwrap();
        assert!(matches!(
            decode_write_request(&junk, &limits),
            Err(Error::Protobuf(_))
        ));
        // A body claiming to decompress to 4 GiB is refused before decompressing.
        let mut huge = vec![0x80, 0x80, 0x80, 0x80, 0x0f];
        huge.extend_from_slice(&[0; 16]);
        assert!(matches!(
            decode_write_request(&huge, &limits),
            Err(Error::TooLarge { .. })
        ));
        let small = Limits {
            max_decompressed: 10,
        };
        let body = encode_write_request(&[series(&[("__name__", "up")], &[(1, 1.0)])]);
        assert!(matches!(
            decode_write_request(&body, &small),
            Err(Error::TooLarge { .. })
        ));
        for (labels, want) in [
            (&[("job", "x")][..], "no metric name"),
            (
                &[("__name__", "up"), ("bad-name", "x")][..],
                "invalid label name",
            ),
        ] {
            let body = encode_write_request(&[series(labels, &[(1, 1.0)])]);
            let e = decode_write_request(&body, &limits)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{e}");
        }
        // Duplicate names, written by hand (Labels would merge them).
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: "up".into(),
                    },
                    Label {
                        name: "a".into(),
                        value: "1".into(),
                    },
                    Label {
                        name: "a".into(),
                        value: "2".into(),
                    },
                ],
                samples: vec![],
                exemplars: vec![],
                histograms: vec![],
            }],
            metadata: vec![],
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&prost::Message::encode_to_vec(&req))
            .unwrap();
        assert!(
            decode_write_request(&body, &limits)
                .unwrap_err()
                .to_string()
                .contains("duplicate")
        );
    }
}
