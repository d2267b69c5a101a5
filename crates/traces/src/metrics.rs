//! Span metrics: request rate, errors and latency per service and operation, derived
//! from every stored span as the OpenTelemetry Collector's `spanmetrics` connector
//! derives them (and Jaeger's monitor tab reads them), under its names with Prometheus's
//! base unit: `traces_span_metrics_calls_total` and
//! `traces_span_metrics_duration_seconds_{bucket,sum,count}`, labelled `service_name`,
//! `span_name`, `span_kind` (`SPAN_KIND_SERVER`, …) and `status_code`
//! (`STATUS_CODE_UNSET`, `…_OK`, `…_ERROR`). They are a `prometheus-client` collector:
//! on Lookout's `/metrics`, and stored (and so in PromQL) with its own metrics.
//!
//! Series are bounded (`max_series`); spans of combinations past it are counted in
//! `traces_span_metrics_dropped_spans_total` instead.

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;

use crate::span::{Span, StatusCode};

/// The connector's default latency buckets (2 ms to 15 s), in seconds.
pub const BUCKETS: [f64; 16] = [
    0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.4, 2.0, 5.0, 10.0, 15.0,
];

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    service: String,
    name: String,
    kind: u8,
    status: u8,
}

#[derive(Debug, Clone, Default)]
struct Agg {
    count: u64,
    sum: f64,
    /// Observations per bucket, not cumulative; the last is `+Inf`.
    buckets: [u64; BUCKETS.len() + 1],
}

#[derive(Debug, Default)]
struct Inner {
    series: HashMap<Key, Agg>,
    dropped: u64,
}

/// The span metrics of everything stored since start.
#[derive(Debug)]
pub struct SpanMetrics {
    inner: Mutex<Inner>,
    max_series: usize,
}

impl SpanMetrics {
    /// Empty, keeping at most `max_series` combinations.
    pub fn new(max_series: usize) -> Self {
        Self {
            inner: Mutex::default(),
            max_series,
        }
    }

    /// Counts stored spans.
    pub fn observe(&self, spans: &[Span]) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for s in spans {
            let key = Key {
                service: s.service.clone(),
                name: s.name.clone(),
                kind: s.kind,
                status: match s.status {
                    StatusCode::Unset => 0,
                    StatusCode::Ok => 1,
                    StatusCode::Error => 2,
                },
            };
            let full = inner.series.len() >= self.max_series;
            let agg = match inner.series.get_mut(&key) {
                Some(a) => a,
                None if full => {
                    inner.dropped += 1;
                    continue;
                }
                None => inner.series.entry(key).or_default(),
            };
            let secs = s.duration_ns as f64 / 1e9;
            agg.count += 1;
            agg.sum += secs;
            let at = BUCKETS.partition_point(|b| *b < secs);
            agg.buckets[at] += 1;
        }
    }
}

struct Hist<'a> {
    sum: f64,
    count: u64,
    buckets: &'a [(f64, u64)],
}

impl EncodeMetric for Hist<'_> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

impl Collector for SpanMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut rows: Vec<(&Key, &Agg)> = inner.series.iter().collect();
        rows.sort_by(|a, b| {
            (&a.0.service, &a.0.name, a.0.kind, a.0.status).cmp(&(
                &b.0.service,
                &b.0.name,
                b.0.kind,
                b.0.status,
            ))
        });
        let labels = |k: &Key| {
            vec![
                ("service_name".to_string(), k.service.clone()),
                ("span_name".to_string(), k.name.clone()),
                (
                    "span_kind".to_string(),
                    crate::span::KIND_NAMES[usize::from(k.kind.min(5))].to_string(),
                ),
                (
                    "status_code".to_string(),
                    crate::span::STATUS_NAMES[usize::from(k.status.min(2))].to_string(),
                ),
            ]
        };
        let mut calls = encoder.encode_descriptor(
            "traces_span_metrics_calls",
            "Spans stored, by service, operation, kind and status",
            None,
            MetricType::Counter,
        )?;
        for (k, a) in &rows {
            ConstCounter::new(a.count).encode(calls.encode_family(&labels(k))?)?;
        }
        let mut durations = encoder.encode_descriptor(
            "traces_span_metrics_duration_seconds",
            "Span durations, by service, operation, kind and status",
            None,
            MetricType::Histogram,
        )?;
        for (k, a) in &rows {
            let buckets: Vec<(f64, u64)> = BUCKETS
                .iter()
                .copied()
                .chain(std::iter::once(f64::INFINITY))
                .zip(a.buckets.iter().copied())
                .collect();
            Hist {
                sum: a.sum,
                count: a.count,
                buckets: &buckets,
            }
            .encode(durations.encode_family(&labels(k))?)?;
        }
        let dropped = encoder.encode_descriptor(
            "traces_span_metrics_dropped_spans",
            "Spans not counted in span metrics because their combination was past the series bound",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(inner.dropped).encode(dropped)?;
        Ok(())
    }
}

/// A store's span metrics to register in a registry (which takes ownership).
#[derive(Debug, Clone)]
pub struct Shared(pub std::sync::Arc<SpanMetrics>);

impl Collector for Shared {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::Value;

    fn span(name: &str, ms: u64, status: StatusCode) -> Span {
        Span {
            trace_id: [1; 16],
            span_id: [1; 8],
            parent_span_id: None,
            service: "api".into(),
            name: name.into(),
            kind: 2,
            start_ns: 0,
            duration_ns: ms * 1_000_000,
            status,
            status_message: String::new(),
            attributes: vec![("k".into(), Value::Int(1))],
            events: Vec::new(),
            resource: Vec::new(),
            scope: String::new(),
        }
    }

    fn text(m: SpanMetrics) -> String {
        let mut r = prometheus_client::registry::Registry::default();
        r.register_collector(Box::new(m));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
        out
    }

    #[test]
    fn calls_errors_and_latency_per_operation() {
        let m = SpanMetrics::new(2);
        m.observe(&[
            span("get", 3, StatusCode::Unset),
            span("get", 30, StatusCode::Unset),
            span("get", 20_000, StatusCode::Error),
            span("put", 1, StatusCode::Unset), // a third combination: past the bound
        ]);
        let t = text(m);
        let l = r#"service_name="api",span_name="get",span_kind="SPAN_KIND_SERVER""#;
        assert!(
            t.contains(&format!(
                r#"traces_span_metrics_calls_total{{{l},status_code="STATUS_CODE_UNSET"}} 2"#
            )),
            "{t}"
        );
        assert!(
            t.contains(&format!(
                r#"traces_span_metrics_calls_total{{{l},status_code="STATUS_CODE_ERROR"}} 1"#
            )),
            "{t}"
        );
        // 3 ms and 30 ms: one at or below 4 ms, both at or below 50 ms.
        assert!(t.contains(&format!(r#"traces_span_metrics_duration_seconds_bucket{{le="0.004",{l},status_code="STATUS_CODE_UNSET"}} 1"#)), "{t}");
        assert!(t.contains(&format!(r#"traces_span_metrics_duration_seconds_bucket{{le="0.05",{l},status_code="STATUS_CODE_UNSET"}} 2"#)), "{t}");
        assert!(t.contains(&format!(r#"traces_span_metrics_duration_seconds_bucket{{le="+Inf",{l},status_code="STATUS_CODE_ERROR"}} 1"#)), "{t}");
        assert!(
            t.contains("traces_span_metrics_dropped_spans_total 1"),
            "{t}"
        );
    }
}
