//! State snapshots, wired: what a snapshot holds (the busiest processes, every
//! PostgreSQL instance's sessions, lock tree, old transactions, top statements and
//! advice, every Redis instance's slow log, doctors' reports and key figures, and the
//! bottleneck report), taken on demand through the server's `SnapshotService` seam or
//! when a rule alert of a configured severity starts firing, whose notifications then
//! carry a `snapshot_url` annotation.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use lookout_diagnose::snapshots::{Reason, Snapshot, SnapshotStore, Summary, new_id};
use lookout_promql::Engine;
use lookout_server::{BoxFuture, CollectionView};
use lookout_storage::Queryable;

/// Most sessions, statements and slow-log entries a snapshot keeps per instance.
const MAX_ROWS: usize = 200;
/// Processes in each top list.
const TOP_PROCESSES: usize = 15;
/// The bottleneck report's window in a snapshot.
const REPORT_WINDOW: Duration = Duration::from_secs(900);

/// Takes snapshots and keeps them.
pub(crate) struct Snapshots {
    store: SnapshotStore,
    collection: Arc<dyn CollectionView>,
    db: Arc<dyn Queryable>,
    engine: Engine,
}

impl std::fmt::Debug for Snapshots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshots").finish_non_exhaustive()
    }
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Snapshots {
    pub(crate) fn new(
        store: SnapshotStore,
        collection: Arc<dyn CollectionView>,
        db: Arc<dyn Queryable>,
        engine: Engine,
    ) -> Self {
        Self {
            store,
            collection,
            db,
            engine,
        }
    }

    /// Takes a snapshot under `id` and keeps it.
    pub(crate) async fn take_as(
        self: Arc<Self>,
        id: String,
        reason: Reason,
    ) -> Result<Summary, lookout_diagnose::Error> {
        let at = now_secs();
        let mut sections = BTreeMap::new();
        let mut errors = Vec::new();
        match tokio::task::spawn_blocking(|| {
            lookout_collect::top_processes(Duration::from_millis(500), TOP_PROCESSES)
        })
        .await
        {
            Ok((cpu, mem)) => {
                sections.insert(
                    "processes".to_string(),
                    serde_json::json!({ "by_cpu": cpu, "by_memory": mem }),
                );
            }
            Err(e) => errors.push(format!("processes: {e}")),
        }
        let pg = self.postgres();
        if !pg.is_empty() {
            sections.insert("postgres".to_string(), serde_json::Value::Array(pg));
        }
        let redis = self.redis();
        if !redis.is_empty() {
            sections.insert("redis".to_string(), serde_json::Value::Array(redis));
        }
        let me = Arc::clone(&self);
        let at_ms = (at * 1000.0) as i64;
        match tokio::task::spawn_blocking(move || {
            lookout_diagnose::diagnose(
                &me.engine,
                &*me.db,
                &lookout_diagnose::Options {
                    window: REPORT_WINDOW,
                    at: at_ms,
                },
            )
        })
        .await
        {
            Ok(Ok(r)) => {
                sections.insert(
                    "report".to_string(),
                    serde_json::to_value(r).unwrap_or_default(),
                );
            }
            Ok(Err(e)) => errors.push(format!("bottleneck report: {e}")),
            Err(e) => errors.push(format!("bottleneck report: {e}")),
        }
        let s = Snapshot {
            id,
            at,
            reason,
            sections,
            errors,
        };
        let me = Arc::clone(&self);
        let saved = s.clone();
        tokio::task::spawn_blocking(move || me.store.save(&saved, now_secs()))
            .await
            .map_err(|e| lookout_diagnose::Error::Store(e.to_string()))??;
        Ok(s.summary())
    }

    fn postgres(&self) -> Vec<serde_json::Value> {
        let statements = self.collection.slow_queries();
        let advice = self.collection.postgres_advisor();
        self.collection
            .postgres_sessions()
            .into_iter()
            .map(|s| {
                let top: Vec<_> = statements
                    .iter()
                    .filter(|x| x.instance == s.instance)
                    .take(20)
                    .cloned()
                    .collect();
                let advice = advice
                    .iter()
                    .find(|a| a.instance == s.instance)
                    .map(|a| a.advice.clone())
                    .unwrap_or_default();
                let mut sessions = s.sessions.clone();
                sessions.truncate(MAX_ROWS);
                serde_json::json!({
                    "instance": s.instance,
                    "sampled_at": s.at,
                    "lock_tree": s.lock_tree(),
                    "long_transactions": s.long_transactions(60.0),
                    "sessions": sessions,
                    "top_statements": top,
                    "advice": advice,
                })
            })
            .collect()
    }

    fn redis(&self) -> Vec<serde_json::Value> {
        self.collection
            .redis_diagnostics()
            .into_iter()
            .map(|mut d| {
                d.slowlog.truncate(50);
                let info = self.redis_figures(&d.instance);
                serde_json::json!({
                    "instance": d.instance,
                    "info": info,
                    "slowlog": d.slowlog,
                    "latency_doctor": d.latency_doctor,
                    "memory_doctor": d.memory_doctor,
                    "big_keys": d.big_keys,
                })
            })
            .collect()
    }

    /// The latest value of the Redis figures an on-call engineer looks at first.
    fn redis_figures(&self, instance: &str) -> BTreeMap<String, f64> {
        let q = format!(
            r#"last_over_time({{job="redis",instance="{}",__name__=~"redis_(connected_clients|blocked_clients|memory_used_bytes|memory_max_bytes|mem_fragmentation_ratio|instantaneous_ops_per_sec|connected_slaves|rejected_connections_total|evicted_keys_total|keyspace_hits_total|keyspace_misses_total)"}}[5m])"#,
            instance.replace('\\', "\\\\").replace('"', "\\\"")
        );
        let mut out = BTreeMap::new();
        let Ok(expr) = lookout_promql::parse(&q) else {
            return out;
        };
        let at = (now_secs() * 1000.0) as i64;
        if let Ok(r) = self.engine.instant_query(&*self.db, &q, &expr, at, None)
            && let lookout_promql::Value::Vector(v) = r.value
        {
            for s in v {
                if let Some(name) = s.labels.metric_name() {
                    out.insert(name.to_string(), s.v);
                }
            }
        }
        out
    }
}

/// The server's seam over [`Snapshots`].
pub(crate) struct Service(pub(crate) Arc<Snapshots>);

impl lookout_server::SnapshotService for Service {
    fn take(&self, reason: Reason) -> BoxFuture<'_, Result<Summary, lookout_diagnose::Error>> {
        let me = Arc::clone(&self.0);
        Box::pin(async move {
            let at_ms = (now_secs() * 1000.0) as i64;
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (at_ms, &reason.note, std::process::id()).hash(&mut h);
            me.take_as(new_id(at_ms, h.finish()), reason).await
        })
    }

    fn list(&self) -> (Vec<Summary>, Vec<String>) {
        self.0.store.list()
    }

    fn get(&self, id: &str) -> Result<Option<Snapshot>, lookout_diagnose::Error> {
        self.0.store.get(id)
    }
}

/// A rule-alert sink that takes a snapshot when an alert of one of `severities` starts
/// firing (once per firing), adds its address to the alert's annotations as
/// `snapshot_url` (so templates and receivers carry it), and hands everything on.
pub(crate) struct SnapshotSink {
    pub(crate) inner: Option<Arc<dyn lookout_rules::AlertSink>>,
    pub(crate) snapshots: Arc<Snapshots>,
    pub(crate) severities: Vec<String>,
    pub(crate) external_url: String,
    pub(crate) runtime: tokio::runtime::Handle,
    /// The snapshot of each firing alert (by label hash): when it fired, its id.
    pub(crate) taken: Mutex<HashMap<u64, (i64, String)>>,
}

/// Most firing alerts remembered; past it, the memory starts over (an alert then gets
/// a second snapshot at most).
const MAX_REMEMBERED: usize = 10_000;

impl lookout_rules::AlertSink for SnapshotSink {
    fn send(&self, mut alerts: Vec<(lookout_rules::Alert, String)>) {
        for (a, _) in &mut alerts {
            let (Some(fired), None) = (a.fired_at, a.resolved_at) else {
                continue;
            };
            let severity = a.labels.get("severity").unwrap_or("");
            if !self.severities.iter().any(|s| s == severity) {
                continue;
            }
            let mut h = std::collections::hash_map::DefaultHasher::new();
            a.labels.hash(&mut h);
            let key = h.finish();
            let id = {
                let mut taken = self.taken.lock().expect("lock poisoned");
                match taken.get(&key) {
                    Some((f, id)) if *f == fired => id.clone(),
                    _ => {
                        if taken.len() >= MAX_REMEMBERED {
                            taken.clear();
                        }
                        let id = new_id(fired, key);
                        taken.insert(key, (fired, id.clone()));
                        let reason = Reason {
                            kind: "alert".into(),
                            labels: a
                                .labels
                                .iter()
                                .map(|l| (l.name.to_string(), l.value.to_string()))
                                .collect(),
                            note: String::new(),
                        };
                        let snapshots = Arc::clone(&self.snapshots);
                        let snap_id = id.clone();
                        self.runtime.spawn(async move {
                            if let Err(e) = snapshots.take_as(snap_id.clone(), reason).await {
                                tracing::warn!(id = %snap_id, error = %e, "Taking the alert's snapshot failed");
                            }
                        });
                        id
                    }
                }
            };
            a.annotations.insert(
                "snapshot_url".to_string(),
                format!("{}/snapshots/{id}", self.external_url.trim_end_matches('/')),
            );
        }
        if let Some(inner) = &self.inner {
            inner.send(alerts);
        }
    }
}
