//! `health.clusters`, wired: each cluster a `cluster/<name>` health check (its status,
//! a sentence, and the members in `details`) and the `lookout_cluster_*` gauges on
//! `/metrics` (so Lookout's own series carry them and the host pack can alert on a lost
//! quorum), both evaluated from the stored metrics when asked.

use std::sync::Arc;

use lookout_diagnose::cluster::{ClusterSpec, ClusterStatus, evaluate};
use lookout_promql::Engine;
use lookout_server::health::{CheckResult, FnCheck, HealthCheck, HealthStatus};
use lookout_storage::Queryable;

/// The configured clusters and what they are read from.
pub(crate) struct Clusters {
    specs: Vec<ClusterSpec>,
    engine: Engine,
    db: Arc<dyn Queryable>,
}

impl std::fmt::Debug for Clusters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clusters")
            .field("specs", &self.specs)
            .finish_non_exhaustive()
    }
}

impl Clusters {
    pub(crate) fn new(specs: Vec<ClusterSpec>, engine: Engine, db: Arc<dyn Queryable>) -> Self {
        Self { specs, engine, db }
    }

    fn status(&self, spec: &ClusterSpec) -> Result<ClusterStatus, lookout_diagnose::Error> {
        evaluate(&self.engine, &*self.db, spec, lookout_model::now_ms())
    }

    /// One health check per cluster.
    pub(crate) fn checks(self: &Arc<Self>) -> Vec<Arc<dyn HealthCheck>> {
        (0..self.specs.len())
            .map(|k| {
                let me = Arc::clone(self);
                let name = format!("cluster/{}", self.specs[k].name);
                Arc::new(FnCheck::new(&name, false, move || {
                    match me.status(&me.specs[k]) {
                        Ok(s) => CheckResult::new(
                            match s.status {
                                "healthy" => HealthStatus::Healthy,
                                "degraded" => HealthStatus::Degraded,
                                _ => HealthStatus::Unhealthy,
                            },
                            s.message(),
                        )
                        .with_details(serde_json::to_value(&s).unwrap_or_default()),
                        Err(e) => CheckResult::new(HealthStatus::Unknown, e.to_string()),
                    }
                })) as Arc<dyn HealthCheck>
            })
            .collect()
    }
}

impl prometheus_client::collector::Collector for Clusters {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::MetricType;
        use prometheus_client::metrics::gauge::ConstGauge;
        let statuses: Vec<ClusterStatus> = self
            .specs
            .iter()
            .filter_map(|s| self.status(s).ok())
            .collect();
        let mut enc = encoder.encode_descriptor(
            "lookout_cluster_members",
            "Members of each health.clusters cluster by state (missing ones count as unhealthy).",
            None,
            MetricType::Gauge,
        )?;
        for s in &statuses {
            for (state, n) in [
                ("healthy", s.healthy),
                ("degraded", s.degraded),
                ("unhealthy", s.unhealthy),
            ] {
                let labels = vec![
                    ("cluster".to_string(), s.name.clone()),
                    ("state".to_string(), state.to_string()),
                ];
                ConstGauge::new(n as i64).encode(enc.encode_family(&labels)?)?;
            }
        }
        for (name, help, f) in [
            (
                "lookout_cluster_quorum_available",
                "1 when the cluster's healthy and degraded members make its quorum, 0 when it is lost.",
                (|s: &ClusterStatus| i64::from(s.quorum == "available"))
                    as fn(&ClusterStatus) -> i64,
            ),
            (
                "lookout_cluster_quorum_required",
                "Members the cluster's quorum needs.",
                |s: &ClusterStatus| s.required as i64,
            ),
            (
                "lookout_cluster_size",
                "Members the cluster's quorum counts from.",
                |s: &ClusterStatus| s.size as i64,
            ),
        ] {
            let mut enc = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for s in &statuses {
                let labels = vec![("cluster".to_string(), s.name.clone())];
                ConstGauge::new(f(s)).encode(enc.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// The collector registered on `/metrics` (the registry takes ownership of a box).
pub(crate) struct Shared(pub(crate) Arc<Clusters>);

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl prometheus_client::collector::Collector for Shared {
    fn encode(
        &self,
        encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }
}
