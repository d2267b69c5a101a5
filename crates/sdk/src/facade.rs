//! A recorder for the `metrics` facade, so crates that record with `metrics::counter!`,
//! `gauge!` and `histogram!` land in the same registry as the metric sets. Names are
//! made Prometheus-safe (`.` and other characters become `_`); a counter's `_total` is
//! written once; histograms get [`crate::SIZE_BUCKETS`] when their name ends in `_bytes`
//! and [`crate::LATENCY_BUCKETS`] otherwise. A name used with two kinds keeps the first;
//! the other records nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{Key, KeyName, Metadata, SharedString, Unit};
use prometheus_client::metrics::counter::Counter as PCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge as PGauge;

use crate::Metrics;

type Labels = Vec<(String, String)>;
type Hists = Family<Labels, crate::Histogram, fn() -> crate::Histogram>;

enum Kind {
    Counter(Family<Labels, PCounter>),
    Gauge(Family<Labels, PGauge<f64, AtomicU64>>),
    Histogram(Hists),
}

/// The recorder; install it with [`Metrics::install_facade`].
pub struct Recorder {
    metrics: Metrics,
    names: Mutex<Names>,
}

/// The families made so far, and the descriptions given (perhaps before their family).
#[derive(Default)]
struct Names {
    kinds: HashMap<String, Kind>,
    help: HashMap<String, String>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

fn labels_of(key: &Key) -> Labels {
    key.labels()
        .map(|l| (crate::sanitize(l.key()), l.value().to_string()))
        .collect()
}

struct CounterHandle(PCounter);

impl metrics::CounterFn for CounterHandle {
    fn increment(&self, value: u64) {
        self.0.inc_by(value);
    }

    fn absolute(&self, value: u64) {
        self.0.inner().fetch_max(value, Ordering::Relaxed);
    }
}

struct GaugeHandle(PGauge<f64, AtomicU64>);

impl metrics::GaugeFn for GaugeHandle {
    fn increment(&self, value: f64) {
        self.0.inc_by(value);
    }

    fn decrement(&self, value: f64) {
        self.0.dec_by(value);
    }

    fn set(&self, value: f64) {
        self.0.set(value);
    }
}

struct HistogramHandle(crate::Histogram);

impl metrics::HistogramFn for HistogramHandle {
    fn record(&self, value: f64) {
        self.0.observe(value);
    }
}

impl Recorder {
    /// A recorder writing into `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        Self {
            metrics,
            names: Mutex::default(),
        }
    }

    fn describe(&self, key: KeyName, description: SharedString) {
        self.names
            .lock()
            .expect("facade lock")
            .help
            .insert(crate::sanitize(key.as_str()), description.to_string());
    }

    /// The family for `name`, made and registered on first use.
    fn kind(&self, name: &str, make: impl FnOnce() -> Kind) -> std::sync::MutexGuard<'_, Names> {
        let mut names = self.names.lock().expect("facade lock");
        if !names.kinds.contains_key(name) {
            let help = names.help.get(name).cloned().unwrap_or_default();
            let k = make();
            let registered = name.strip_suffix("_total").unwrap_or(name);
            match &k {
                Kind::Counter(f) => self.metrics.register(registered, &help, f.clone()),
                Kind::Gauge(f) => self.metrics.register(name, &help, f.clone()),
                Kind::Histogram(f) => self.metrics.register(name, &help, f.clone()),
            }
            names.kinds.insert(name.to_string(), k);
        }
        names
    }
}

impl metrics::Recorder for Recorder {
    fn describe_counter(&self, key: KeyName, _unit: Option<Unit>, description: SharedString) {
        self.describe(key, description);
    }

    fn describe_gauge(&self, key: KeyName, _unit: Option<Unit>, description: SharedString) {
        self.describe(key, description);
    }

    fn describe_histogram(&self, key: KeyName, _unit: Option<Unit>, description: SharedString) {
        self.describe(key, description);
    }

    fn register_counter(&self, key: &Key, _metadata: &Metadata<'_>) -> metrics::Counter {
        let name = crate::sanitize(key.name());
        let kinds = self.kind(&name, || Kind::Counter(Family::default()));
        match kinds.kinds.get(&name) {
            Some(Kind::Counter(f)) => metrics::Counter::from_arc(Arc::new(CounterHandle(
                f.get_or_create(&labels_of(key)).clone(),
            ))),
            _ => metrics::Counter::noop(),
        }
    }

    fn register_gauge(&self, key: &Key, _metadata: &Metadata<'_>) -> metrics::Gauge {
        let name = crate::sanitize(key.name());
        let kinds = self.kind(&name, || Kind::Gauge(Family::default()));
        match kinds.kinds.get(&name) {
            Some(Kind::Gauge(f)) => metrics::Gauge::from_arc(Arc::new(GaugeHandle(
                f.get_or_create(&labels_of(key)).clone(),
            ))),
            _ => metrics::Gauge::noop(),
        }
    }

    fn register_histogram(&self, key: &Key, _metadata: &Metadata<'_>) -> metrics::Histogram {
        let name = crate::sanitize(key.name());
        let sizes = name.ends_with("_bytes");
        let kinds = self.kind(&name, || {
            Kind::Histogram(if sizes {
                Family::new_with_constructor(|| crate::histogram(&crate::SIZE_BUCKETS))
            } else {
                Family::new_with_constructor(|| crate::histogram(&crate::LATENCY_BUCKETS))
            })
        });
        match kinds.kinds.get(&name) {
            Some(Kind::Histogram(f)) => metrics::Histogram::from_arc(Arc::new(HistogramHandle(
                f.get_or_create(&labels_of(key)).clone(),
            ))),
            _ => metrics::Histogram::noop(),
        }
    }
}

impl Metrics {
    /// Installs the `metrics` facade recorder writing into this registry (once per
    /// process; an error when another recorder is installed).
    pub fn install_facade(&self) -> Result<(), metrics::SetRecorderError<Recorder>> {
        metrics::set_global_recorder(Recorder::new(self.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facade_macros_land_in_the_registry() {
        let m = Metrics::new(crate::Options::default().label("service", "t"));
        let r = Recorder::new(m.clone());
        metrics::with_local_recorder(&r, || {
            metrics::describe_counter!("kv.requests_total", "Requests served");
            metrics::counter!("kv.requests_total", "op" => "get").increment(3);
            metrics::counter!("kv.requests_total", "op" => "get").increment(2);
            metrics::gauge!("kv.open_files").set(7.0);
            metrics::gauge!("kv.open_files").decrement(2.0);
            metrics::histogram!("kv.read_bytes").record(5000.0);
            metrics::histogram!("kv.latency_seconds").record(0.002);
            // The same name as another kind records nothing.
            metrics::gauge!("kv.requests_total").set(99.0);
        });
        let text = m.encode();
        assert!(
            text.contains("# HELP kv_requests Requests served"),
            "{text}"
        );
        assert!(
            text.contains(r#"kv_requests_total{service="t",op="get"} 5"#),
            "{text}"
        );
        assert!(text.contains(r#"kv_open_files{service="t"} 5.0"#), "{text}");
        assert!(
            text.contains(r#"kv_read_bytes_bucket{le="16384.0",service="t"} 1"#)
                || text.contains(r#"kv_read_bytes_bucket{service="t",le="16384.0"} 1"#),
            "{text}"
        );
        assert!(text.contains("kv_latency_seconds_count"), "{text}");
        assert!(!text.contains("99"), "{text}");
        assert_eq!(crate::sanitize("1a.b-c"), "_1a_b_c");
    }
}
