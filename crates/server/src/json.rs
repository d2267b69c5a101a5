//! Prometheus HTTP API JSON, byte for byte: numbers as Prometheus prints them (sample
//! values as strings: "NaN", "+Inf", "1e-07"; timestamps as seconds with up to three
//! decimals), the `{status, data, errorType, error, warnings}` envelope.
//!
//! Written by hand rather than through serde because Prometheus's number formatting (Go's
//! `strconv` shortest representation, seconds without a trailing `.0`) is part of the
//! contract and serde_json would print `1700000000.0`.

use lookout_model::Labels;
pub use lookout_model::gofmt::marshal_float as format_float;
use lookout_model::gofmt::push_marshal_float as push_float;
use lookout_promql::Value;

/// Appends a JSON string literal.
pub(crate) fn string(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).expect("strings serialize"));
}

/// Appends a timestamp (ms) as Prometheus's `MarshalTimestamp`: whole seconds, then, if
/// the milliseconds are not zero, a dot and the milliseconds padded to three digits
/// (`1700000000`, `1700000000.050`).
pub(crate) fn timestamp(out: &mut String, t: i64) {
    // unsigned_abs: i64::MIN has no positive counterpart.
    if t < 0 {
        out.push('-');
    }
    let t = t.unsigned_abs();
    out.push_str(itoa::Buffer::new().format(t / 1000));
    let frac = t % 1000;
    if frac != 0 {
        out.push('.');
        out.push((b'0' + (frac / 100) as u8) as char);
        out.push((b'0' + (frac / 10 % 10) as u8) as char);
        out.push((b'0' + (frac % 10) as u8) as char);
    }
}

/// Appends a sample value as a JSON string.
pub(crate) fn value(out: &mut String, v: f64) {
    out.push('"');
    push_float(out, v);
    out.push('"');
}

/// Appends a label set as a JSON object.
pub(crate) fn labels(out: &mut String, ls: &Labels) {
    out.push('{');
    for (i, l) in ls.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        string(out, &l.name);
        out.push(':');
        string(out, &l.value);
    }
    out.push('}');
}

/// A generous guess of the bytes [`query_data`] writes, so the buffer is allocated once
/// rather than grown (and copied) while a large matrix is written.
pub(crate) fn query_size_hint(v: &Value) -> usize {
    match v {
        Value::Vector(vs) => vs.iter().map(|s| 64 + labels_size(&s.labels)).sum(),
        Value::Matrix(ms) => ms
            .iter()
            .map(|s| {
                32 + labels_size(&s.labels)
                    + 36 * s.samples.len()
                    + s.histograms
                        .iter()
                        .map(|h| 64 + 40 * (h.h.positive.len() + h.h.negative.len()))
                        .sum::<usize>()
            })
            .sum(),
        _ => 64,
    }
}

fn labels_size(ls: &lookout_model::Labels) -> usize {
    ls.iter()
        .map(|l| l.name.len() + l.value.len() + 6)
        .sum::<usize>()
        + 2
}

/// Appends the `data` object of a query result evaluated at `t` (ms).
pub(crate) fn query_data(out: &mut String, v: &Value, t: i64) {
    out.push_str("{\"resultType\":");
    string(out, v.type_name());
    out.push_str(",\"result\":");
    match v {
        Value::Scalar(f) => {
            out.push('[');
            timestamp(out, t);
            out.push(',');
            value(out, *f);
            out.push(']');
        }
        Value::String(s) => {
            out.push('[');
            timestamp(out, t);
            out.push(',');
            string(out, s);
            out.push(']');
        }
        Value::Vector(vs) => {
            out.push('[');
            for (i, s) in vs.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                vector_sample(out, s, t);
            }
            out.push(']');
        }
        Value::Matrix(ms) => {
            out.push('[');
            for (i, s) in ms.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                matrix_series(out, s);
            }
            out.push(']');
        }
    }
    out.push('}');
}

/// Appends one sample of an instant vector evaluated at `t`: `value` for a float,
/// `histogram` for a native histogram, as Prometheus's API writes them.
fn vector_sample(out: &mut String, s: &lookout_promql::VecSample, t: i64) {
    out.push_str("{\"metric\":");
    labels(out, &s.labels);
    match &s.h {
        Some(h) => {
            out.push_str(",\"histogram\":[");
            timestamp(out, t);
            out.push(',');
            histogram(out, h);
        }
        None => {
            out.push_str(",\"value\":[");
            timestamp(out, t);
            out.push(',');
            value(out, s.v);
        }
    }
    out.push_str("]}");
}

/// Appends a native histogram as Prometheus's API does: count, sum and (when any has a
/// count) the buckets as `[boundary rule, lower, upper, count]`.
pub(crate) fn histogram(out: &mut String, h: &lookout_model::FloatHistogram) {
    out.push_str("{\"count\":");
    value(out, h.count);
    out.push_str(",\"sum\":");
    value(out, h.sum);
    let buckets = h.api_buckets();
    if !buckets.is_empty() {
        out.push_str(",\"buckets\":[");
        for (i, (rule, lo, hi, c)) in buckets.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('[');
            out.push((b'0' + rule) as char);
            for v in [lo, hi, c] {
                out.push(',');
                value(out, v);
            }
            out.push(']');
        }
        out.push(']');
    }
    out.push('}');
}

/// Appends one series of a range vector: `values` when it has float samples,
/// `histograms` when it has native-histogram samples (as Prometheus's API writes them).
fn matrix_series(out: &mut String, s: &lookout_promql::RangeSeries) {
    out.push_str("{\"metric\":");
    labels(out, &s.labels);
    if !s.samples.is_empty() || s.histograms.is_empty() {
        out.push_str(",\"values\":[");
        for (j, p) in s.samples.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push('[');
            timestamp(out, p.t);
            out.push(',');
            value(out, p.v);
            out.push(']');
        }
        out.push(']');
    }
    if !s.histograms.is_empty() {
        out.push_str(",\"histograms\":[");
        for (j, p) in s.histograms.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push('[');
            timestamp(out, p.t);
            out.push(',');
            histogram(out, &p.h);
            out.push(']');
        }
        out.push(']');
    }
    out.push('}');
}

/// Writes the whole success response for a query result evaluated at `t` (the bytes
/// [`SUCCESS_PREFIX`], [`query_data`] and [`finish_success`] write) in pieces of about
/// `chunk` bytes, handing each to `emit` as it fills; `emit` returning false (the client
/// went away) stops the writing. The result is consumed as it is written, so a large
/// matrix is never held twice (as series and as its JSON), and no buffer of the whole
/// response is ever allocated.
pub(crate) fn stream_query(
    r: lookout_promql::QueryResult,
    t: i64,
    chunk: usize,
    mut emit: impl FnMut(String) -> bool,
) {
    // Room for a piece and the item that overflows it, within reason (a caller wanting
    // the whole response in one piece passes `usize::MAX`).
    let room = chunk.saturating_add(chunk / 4).min(2 << 20);
    let mut out = String::with_capacity(room);
    out.push_str(SUCCESS_PREFIX);
    let mut flush = |out: &mut String, last: bool| {
        if out.len() >= chunk || (last && !out.is_empty()) {
            emit(std::mem::replace(out, String::with_capacity(room)))
        } else {
            true
        }
    };
    let lookout_promql::QueryResult { value, annotations } = r;
    let (open, items): (&str, Box<dyn Iterator<Item = Item>>) = match value {
        Value::Vector(vs) => (
            "{\"resultType\":\"vector\",\"result\":[",
            Box::new(vs.into_iter().map(Item::Sample)),
        ),
        Value::Matrix(ms) => (
            "{\"resultType\":\"matrix\",\"result\":[",
            Box::new(ms.into_iter().map(Item::Series)),
        ),
        other => {
            query_data(&mut out, &other, t);
            finish_success(&mut out, &annotations.warnings, &annotations.infos);
            flush(&mut out, true);
            return;
        }
    };
    out.push_str(open);
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        match &item {
            Item::Sample(s) => vector_sample(&mut out, s, t),
            Item::Series(s) => matrix_series(&mut out, s),
        }
        // The series is dropped here, before the next one is written.
        drop(item);
        if !flush(&mut out, false) {
            return;
        }
    }
    out.push_str("]}");
    finish_success(&mut out, &annotations.warnings, &annotations.infos);
    flush(&mut out, true);
}

/// One element of a streamed result.
enum Item {
    Sample(lookout_promql::VecSample),
    Series(lookout_promql::RangeSeries),
}

/// Wraps `data` (already JSON) in a success envelope.
pub(crate) fn success(data: &str, warnings: &[String]) -> String {
    success_annotated(data, warnings, &[])
}

/// Wraps `data` in a success envelope with Prometheus's `warnings` and `infos`.
pub(crate) fn success_annotated(data: &str, warnings: &[String], infos: &[String]) -> String {
    let mut out = String::with_capacity(data.len() + 40);
    out.push_str(SUCCESS_PREFIX);
    out.push_str(data);
    finish_success(&mut out, warnings, infos);
    out
}

/// What a success envelope starts with; [`finish_success`] closes it.
pub(crate) const SUCCESS_PREFIX: &str = "{\"status\":\"success\",\"data\":";

/// Closes a success envelope whose data has been written after [`SUCCESS_PREFIX`].
pub(crate) fn finish_success(out: &mut String, warnings: &[String], infos: &[String]) {
    if !warnings.is_empty() {
        out.push_str(",\"warnings\":");
        out.push_str(&serde_json::to_string(warnings).expect("strings serialize"));
    }
    if !infos.is_empty() {
        out.push_str(",\"infos\":");
        out.push_str(&serde_json::to_string(infos).expect("strings serialize"));
    }
    out.push('}');
}

/// An error envelope.
pub(crate) fn error(error_type: &str, message: &str) -> String {
    let mut out = String::from("{\"status\":\"error\",\"errorType\":");
    string(&mut out, error_type);
    out.push_str(",\"error\":");
    string(&mut out, message);
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_written_as_prometheus_does_among_the_float_samples() {
        use lookout_promql::{QueryResult, VecSample};
        let h = lookout_model::FloatHistogram::parse(
            "{{schema:1 count:4 sum:2.5 z_bucket:1 z_bucket_w:0.001 offset:0 buckets:[2 0 1]}}",
        )
        .unwrap();
        let ls = |job: &str| Labels::from_pairs([("__name__", "x"), ("job", job)]);
        let r = QueryResult {
            value: Value::Vector(vec![
                VecSample::new(ls("a"), 1.0),
                VecSample::histogram(ls("b"), std::sync::Arc::new(h)),
                VecSample::new(ls("c"), 2.0),
            ]),
            annotations: Default::default(),
        };
        let mut pieces = Vec::new();
        stream_query(r, 1_000, 1 << 20, |p| {
            pieces.push(p);
            true
        });
        assert_eq!(
            pieces.concat(),
            concat!(
                r#"{"status":"success","data":{"resultType":"vector","result":["#,
                r#"{"metric":{"__name__":"x","job":"a"},"value":[1,"1"]},"#,
                r#"{"metric":{"__name__":"x","job":"b"},"histogram":[1,{"count":"4","sum":"2.5","buckets":["#,
                r#"[3,"-0.001","0.001","1"],[0,"0.7071067811865476","1","2"],[0,"1.4142135623730951","2","1"]]}]},"#,
                r#"{"metric":{"__name__":"x","job":"c"},"value":[1,"2"]}]}}"#
            )
        );
    }

    #[test]
    fn timestamps_format_as_go_does() {
        let f = |t| {
            let mut s = String::new();
            timestamp(&mut s, t);
            s
        };
        assert_eq!(f(1_700_000_000_000), "1700000000");
        assert_eq!(f(1_700_000_000_050), "1700000000.050");
        assert_eq!(f(-1500), "-1.500");
    }

    #[test]
    fn a_streamed_response_is_the_same_bytes_in_pieces() {
        use lookout_model::Sample;
        use lookout_promql::{Annotations, QueryResult, RangeSeries, VecSample};
        let ls = |i: usize| {
            Labels::from_pairs([("__name__", "m"), ("i", &*format!("{i}")), ("q", "\"x\"")])
        };
        let h = std::sync::Arc::new(
            lookout_model::FloatHistogram::parse("{{schema:0 count:3 sum:2 buckets:[1 2]}}")
                .unwrap(),
        );
        let annotations = Annotations {
            warnings: vec!["PromQL warning: w".into()],
            infos: vec!["PromQL info: i".into()],
        };
        let values = [
            Value::Matrix(
                (0..50)
                    .map(|i| RangeSeries {
                        labels: ls(i),
                        samples: (0..20)
                            .map(|k| Sample::new(k * 15_000 + 7, k as f64 / 3.0))
                            .collect(),
                        drop_name: false,
                        // Some series hold histograms too, one only histograms.
                        histograms: (0..(i % 5) as i64)
                            .map(|k| lookout_storage::HistogramSample {
                                t: k * 15_000 + 300_007,
                                h: h.clone(),
                            })
                            .collect(),
                    })
                    .chain([RangeSeries {
                        labels: ls(99),
                        samples: Vec::new(),
                        drop_name: false,
                        histograms: vec![lookout_storage::HistogramSample { t: 7, h: h.clone() }],
                    }])
                    .collect(),
            ),
            Value::Vector(
                (0..50)
                    .map(|i| match i % 7 {
                        0 => VecSample::histogram(ls(i), h.clone()),
                        _ => VecSample::new(ls(i), f64::NAN),
                    })
                    .collect(),
            ),
            Value::Matrix(Vec::new()),
            Value::Scalar(1.5),
            Value::String("s".into()),
        ];
        for v in values {
            let mut whole = String::from(SUCCESS_PREFIX);
            query_data(&mut whole, &v, 1_700_000_000_500);
            finish_success(&mut whole, &annotations.warnings, &annotations.infos);
            for chunk in [1, 100, 1 << 20] {
                let r = QueryResult {
                    value: v.clone(),
                    annotations: annotations.clone(),
                };
                let mut pieces = Vec::new();
                stream_query(r, 1_700_000_000_500, chunk, |p| {
                    pieces.push(p);
                    true
                });
                assert_eq!(pieces.concat(), whole, "chunk {chunk}");
                assert!(pieces.iter().all(|p| !p.is_empty()));
                if chunk == 100 && whole.len() > 1000 {
                    assert!(pieces.len() > 5, "{} pieces", pieces.len());
                }
            }
            // A client gone after the first piece stops the writing.
            let r = QueryResult {
                value: v.clone(),
                annotations: annotations.clone(),
            };
            let mut calls = 0;
            stream_query(r, 0, 1, |_| {
                calls += 1;
                false
            });
            assert_eq!(calls, 1);
        }
    }
}
