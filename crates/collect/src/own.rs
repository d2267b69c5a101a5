//! Lookout's own metrics written into its own store: the process figures
//! ([`ProcessCollector::myself`]) and, once the server has built it, everything its
//! registry serves at `/metrics` (tsdb, collectors, rules, notifier), so the shipped
//! *Lookout* dashboard and rules read them with PromQL as they would read any exporter's.

use std::sync::{Arc, OnceLock};

use prometheus_client::registry::Registry;

use crate::{Collector, Metric, ProcessCollector, Result};

/// The registry, set once the server has built it (collectors are made before it).
pub type RegistryCell = Arc<OnceLock<Arc<Registry>>>;

/// Lookout's own process figures and registry (families named `process_*` in the
/// registry are left out: the process collector writes those).
pub struct OwnMetrics {
    process: Option<ProcessCollector>,
    registry: RegistryCell,
}

impl std::fmt::Debug for OwnMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnMetrics")
            .field("process", &self.process.is_some())
            .field("registry", &self.registry.get().is_some())
            .finish()
    }
}

impl OwnMetrics {
    /// Lookout's own metrics; `process` false leaves the process figures out.
    pub fn new(process: bool, registry: RegistryCell) -> Self {
        Self {
            process: process.then(ProcessCollector::myself),
            registry,
        }
    }
}

impl Collector for OwnMetrics {
    fn name(&self) -> &str {
        "process"
    }

    fn collect(&self, out: &mut Vec<Metric>) -> Result<()> {
        if let Some(p) = &self.process {
            p.collect(out)?;
        }
        let Some(reg) = self.registry.get() else {
            return Ok(());
        };
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, reg).is_err() {
            return Ok(());
        }
        let exp =
            lookout_expfmt::parse(&text, lookout_expfmt::Format::OpenMetrics).map_err(|e| {
                crate::Error::Read {
                    what: "Lookout's own /metrics",
                    message: e.to_string(),
                }
            })?;
        for s in exp.samples {
            if s.name.starts_with("process_") {
                continue;
            }
            let labels: Vec<(&str, &str)> =
                s.labels.iter().map(|(k, v)| (*k, v.as_ref())).collect();
            out.push(Metric::new(s.name, &labels, s.value));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[test]
    fn the_registry_is_read_once_set_and_process_families_are_left_to_the_process_collector() {
        let cell: RegistryCell = Arc::default();
        let own = OwnMetrics::new(true, Arc::clone(&cell));
        let mut out = Vec::new();
        own.collect(&mut out).unwrap();
        let names = |out: &[Metric]| -> Vec<String> {
            out.iter()
                .map(|m| m.labels.get_or_empty("__name__").to_string())
                .collect()
        };
        assert!(
            names(&out).iter().all(|n| n.starts_with("process_")),
            "{:?}",
            names(&out)
        );
        let before = out.len();
        let mut reg = Registry::default();
        let c: Counter = Counter::default();
        c.inc_by(3);
        reg.sub_registry_with_prefix("lookout_tsdb")
            .register("compactions", "help", c);
        reg.register_collector(Box::new(crate::SelfMetrics));
        cell.set(Arc::new(reg)).unwrap();
        let mut out = Vec::new();
        own.collect(&mut out).unwrap();
        let found = out
            .iter()
            .find(|m| m.labels.get_or_empty("__name__") == "lookout_tsdb_compactions_total")
            .unwrap();
        assert_eq!(found.value, 3.0);
        // The registry's process_* families are not written twice.
        assert_eq!(out.len(), before + 1, "{:?}", names(&out));
    }
}
