//! The bottleneck report: which resource most likely limits the system — CPU, memory
//! pressure, disk I/O, network, connections (pool saturation), locks or replication —
//! ranked from the metrics Lookout has stored over a window, each with the evidence
//! (the PromQL and its value) and what to do.
//!
//! This crate owns the signals and their scoring; it reads through the PromQL engine
//! over any [`Queryable`] and knows nothing of HTTP (the server serves [`Report`] at
//! `/api/v1/lookout/diagnose`). It also keeps the state snapshots ([`snapshots`]), of
//! which the report is one section.
//!
//! Each resource has a few signals, each a PromQL expression reduced to one number over
//! the window (`{w}` in the table stands for it) and a ramp turning that number into a
//! score from 0 (below the point where the signal means anything) to 100 (saturated).
//! A resource scores its highest signal; resources none of whose signals have data
//! (no PostgreSQL monitored, say) are listed as `not_measured` instead. The
//! `performance_score` is 100 minus the highest score: one saturated resource is enough
//! to make a system slow. The ramps' points are chosen so a healthy, loaded machine
//! scores 0 everywhere (CPU busy below 60%, disks below 60% utilisation, …).

use std::time::Duration;

pub mod cluster;
pub mod snapshots;

use lookout_promql::{Engine, Value};
use lookout_storage::Queryable;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A signal's query failed.
    #[error("query {query}: {message}")]
    Query {
        /// The query.
        query: String,
        /// Why.
        message: String,
    },
    /// The options (or an id) are unusable.
    #[error("{0}")]
    Invalid(String),
    /// The snapshot store failed.
    #[error("{0}")]
    Store(String),
}

/// How a report is made.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The window the signals are averaged (or maxed) over.
    pub window: Duration,
    /// The window's end (milliseconds since the epoch).
    pub at: i64,
}

impl Options {
    /// The longest window accepted.
    pub const MAX_WINDOW: Duration = Duration::from_secs(7 * 86_400);
    /// The shortest window accepted (a rate needs two scrapes).
    pub const MIN_WINDOW: Duration = Duration::from_secs(10);
}

/// One signal's reading.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Evidence {
    /// What it measures.
    pub description: String,
    /// The PromQL, as run.
    pub query: String,
    /// Its value (none when the metrics are not there).
    pub value: Option<f64>,
    /// The value's unit (`ratio`, `seconds`, `per_second`, `bytes`, `sessions`).
    pub unit: &'static str,
    /// This signal's score (0–100).
    pub score: f64,
}

/// One resource, scored.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Bottleneck {
    /// `cpu`, `memory`, `disk_io`, `network`, `connections`, `locks` or `replication`.
    pub resource: &'static str,
    /// How likely it limits the system (0–100): its highest signal's score.
    pub score: f64,
    /// One line: the strongest signal and its value.
    pub summary: String,
    /// Every signal with data, the strongest first.
    pub evidence: Vec<Evidence>,
    /// What to do, the most telling first.
    pub recommendations: Vec<&'static str>,
}

/// The bottleneck report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Report {
    /// The window's end (Unix seconds).
    pub at: f64,
    /// The window's length in seconds.
    pub window_seconds: f64,
    /// 100 minus the highest resource score.
    pub performance_score: f64,
    /// Measured resources, the most likely bottleneck first.
    pub bottlenecks: Vec<Bottleneck>,
    /// Resources without data.
    pub not_measured: Vec<&'static str>,
}

/// A signal: what it measures, its query (`{w}` is the window), its unit, and where its
/// score starts (0) and saturates (100).
struct Signal {
    description: &'static str,
    query: &'static str,
    unit: &'static str,
    zero: f64,
    full: f64,
}

/// A resource's signals and advice.
struct Resource {
    name: &'static str,
    signals: &'static [Signal],
    recommendations: &'static [&'static str],
}

const RESOURCES: &[Resource] = &[
    Resource {
        name: "cpu",
        signals: &[
            Signal {
                description: "CPU busy, share of all cores (not idle, iowait or steal)",
                query: r#"sum(rate(node_cpu_seconds_total{mode!~"idle|iowait|steal"}[{w}])) / count(node_cpu_seconds_total{mode="idle"})"#,
                unit: "ratio",
                zero: 0.6,
                full: 0.95,
            },
            Signal {
                description: "Runnable tasks per core (1-minute load average)",
                query: r#"max(avg_over_time(node_load1[{w}])) / count(node_cpu_seconds_total{mode="idle"})"#,
                unit: "per_core",
                zero: 1.0,
                full: 3.0,
            },
            Signal {
                description: "CPU time stolen by the hypervisor, share of all cores",
                query: r#"sum(rate(node_cpu_seconds_total{mode="steal"}[{w}])) / count(node_cpu_seconds_total{mode="idle"})"#,
                unit: "ratio",
                zero: 0.05,
                full: 0.3,
            },
        ],
        recommendations: &[
            "Find what burns the CPU: the processes dashboard (namedprocess_namegroup_cpu_seconds_total) and, for PostgreSQL, /api/v1/lookout/slow_queries sorted by total time.",
            "Tune the most expensive statements (EXPLAIN (ANALYZE, BUFFERS)), add missing indexes, cache hot reads.",
            "If the load is legitimate, add cores or spread it (read replicas, connection routing); with high steal, move to a less crowded host.",
        ],
    },
    Resource {
        name: "memory",
        signals: &[
            Signal {
                description: "Memory in use (not available), share of the total",
                query: "max(1 - avg_over_time(node_memory_MemAvailable_bytes[{w}]) / avg_over_time(node_memory_MemTotal_bytes[{w}]))",
                unit: "ratio",
                zero: 0.85,
                full: 0.98,
            },
            Signal {
                description: "Pages swapped in per second",
                query: "sum(rate(node_vmstat_pswpin[{w}]))",
                unit: "per_second",
                zero: 10.0,
                full: 1000.0,
            },
            Signal {
                description: "Major page faults per second (reads from disk to fill memory)",
                query: "sum(rate(node_vmstat_pgmajfault[{w}]))",
                unit: "per_second",
                zero: 100.0,
                full: 5000.0,
            },
            Signal {
                description: "Time some task stalled on memory (pressure stall information)",
                query: "max(rate(node_pressure_memory_waiting_seconds_total[{w}]))",
                unit: "ratio",
                zero: 0.05,
                full: 0.5,
            },
        ],
        recommendations: &[
            "Find the largest consumers (namedprocess_namegroup_memory_bytes); for PostgreSQL check shared_buffers + max_connections × work_mem, for Redis maxmemory and its eviction policy.",
            "Lower per-connection memory (work_mem, connection pooling) or cap caches before the kernel swaps.",
            "Add memory if the working set is legitimately larger than RAM.",
        ],
    },
    Resource {
        name: "disk_io",
        signals: &[
            Signal {
                description: "Busiest disk's utilisation (time with I/O in flight)",
                query: "max(rate(node_disk_io_time_seconds_total[{w}]))",
                unit: "ratio",
                zero: 0.6,
                full: 0.98,
            },
            Signal {
                description: "Busiest disk's average queue (weighted I/O time)",
                query: "max(rate(node_disk_io_time_weighted_seconds_total[{w}]))",
                unit: "requests",
                zero: 2.0,
                full: 16.0,
            },
            Signal {
                description: "Slowest disk's average read latency",
                query: "max(rate(node_disk_read_time_seconds_total[{w}]) / rate(node_disk_reads_completed_total[{w}]) > 0)",
                unit: "seconds",
                zero: 0.02,
                full: 0.2,
            },
            Signal {
                description: "Slowest disk's average write latency",
                query: "max(rate(node_disk_write_time_seconds_total[{w}]) / rate(node_disk_writes_completed_total[{w}]) > 0)",
                unit: "seconds",
                zero: 0.02,
                full: 0.2,
            },
            Signal {
                description: "CPU time waiting for I/O, share of all cores",
                query: r#"sum(rate(node_cpu_seconds_total{mode="iowait"}[{w}])) / count(node_cpu_seconds_total{mode="idle"})"#,
                unit: "ratio",
                zero: 0.1,
                full: 0.5,
            },
        ],
        recommendations: &[
            "Find who does the I/O (namedprocess_namegroup_read_bytes_total / write_bytes_total); for PostgreSQL, statements with many shared blocks read (/api/v1/lookout/slow_queries) and checkpoints too close together (pg_stat_bgwriter_checkpoints_req_total).",
            "Cache more (shared_buffers, the page cache), add indexes that turn scans into lookups, spread checkpoints (checkpoint_completion_target, max_wal_size).",
            "Move WAL and data to separate or faster devices.",
        ],
    },
    Resource {
        name: "network",
        signals: &[
            Signal {
                description: "Interface errors and drops per second",
                query: r#"sum(rate({__name__=~"node_network_(receive|transmit)_(errs|drop)_total", device!="lo"}[{w}]))"#,
                unit: "per_second",
                zero: 1.0,
                full: 100.0,
            },
            Signal {
                description: "Busiest interface's received bandwidth, share of its speed",
                query: r#"max(rate(node_network_receive_bytes_total{device!="lo"}[{w}]) / (node_network_speed_bytes > 0))"#,
                unit: "ratio",
                zero: 0.7,
                full: 0.95,
            },
            Signal {
                description: "Busiest interface's sent bandwidth, share of its speed",
                query: r#"max(rate(node_network_transmit_bytes_total{device!="lo"}[{w}]) / (node_network_speed_bytes > 0))"#,
                unit: "ratio",
                zero: 0.7,
                full: 0.95,
            },
            Signal {
                description: "TCP segments retransmitted, share of those sent",
                query: "sum(rate(node_netstat_Tcp_RetransSegs[{w}])) / sum(rate(node_netstat_Tcp_OutSegs[{w}]) > 0)",
                unit: "ratio",
                zero: 0.01,
                full: 0.1,
            },
        ],
        recommendations: &[
            "Check the interface's errors with ethtool -S and the path with mtr; retransmissions point at loss between hosts.",
            "Reduce what crosses the wire (result sizes, replication of unneeded databases) or move to a faster link.",
        ],
    },
    Resource {
        name: "connections",
        signals: &[
            Signal {
                description: "PostgreSQL connections in use, share of max_connections (fullest instance)",
                query: "max(sum by (instance) (pg_stat_activity_count) / on (instance) max by (instance) (pg_settings_max_connections))",
                unit: "ratio",
                zero: 0.7,
                full: 0.95,
            },
            Signal {
                description: "Redis clients connected, share of maxclients (fullest instance)",
                query: "max(max by (instance) (redis_connected_clients) / on (instance) max by (instance) (redis_config_maxclients))",
                unit: "ratio",
                zero: 0.7,
                full: 0.95,
            },
            Signal {
                description: "Redis connections rejected per second",
                query: "sum(rate(redis_rejected_connections_total[{w}]))",
                unit: "per_second",
                zero: 0.0,
                full: 1.0,
            },
        ],
        recommendations: &[
            "Put a pooler (PgBouncer in transaction mode) in front of PostgreSQL instead of raising max_connections; close idle sessions (idle_in_transaction_session_timeout).",
            "Check clients for connection leaks: /api/v1/lookout/postgres/transactions lists sessions left in open transactions.",
            "For Redis, reuse connections (pools) and raise maxclients only with the file-descriptor limit.",
        ],
    },
    Resource {
        name: "locks",
        signals: &[
            Signal {
                description: "PostgreSQL sessions waiting on a lock (average)",
                query: r#"sum(rate(pg_wait_event_samples_total{wait_event_type="Lock"}[{w}]))"#,
                unit: "sessions",
                zero: 0.5,
                full: 5.0,
            },
            Signal {
                description: "Longest PostgreSQL lock wait seen",
                query: "max(max_over_time(pg_lock_wait_max_seconds[{w}]))",
                unit: "seconds",
                zero: 5.0,
                full: 60.0,
            },
            Signal {
                description: "PostgreSQL deadlocks per minute",
                query: "sum(rate(pg_stat_database_deadlocks[{w}])) * 60",
                unit: "per_minute",
                zero: 0.1,
                full: 5.0,
            },
        ],
        recommendations: &[
            "See who blocks whom now: /api/v1/lookout/postgres/locks; the root of each tree is the session to act on (often idle in transaction).",
            "Keep transactions short, take locks in one order everywhere, and run DDL with a lock_timeout.",
            "Set idle_in_transaction_session_timeout so a forgotten transaction cannot hold locks for long.",
        ],
    },
    Resource {
        name: "replication",
        signals: &[
            Signal {
                description: "PostgreSQL replica replay lag (worst replica)",
                query: "max(max_over_time(pg_stat_replication_replay_lag_seconds[{w}]))",
                unit: "seconds",
                zero: 10.0,
                full: 300.0,
            },
            Signal {
                description: "PostgreSQL replica lag measured on the replica",
                query: "max(max_over_time(pg_replication_lag_seconds[{w}]))",
                unit: "seconds",
                zero: 10.0,
                full: 300.0,
            },
            Signal {
                description: "WAL bytes the worst replica has not replayed",
                query: "max(max_over_time(pg_stat_replication_pg_wal_lsn_diff[{w}]))",
                unit: "bytes",
                zero: 64.0 * 1024.0 * 1024.0,
                full: 1024.0 * 1024.0 * 1024.0,
            },
            Signal {
                description: "Redis replica links down",
                query: "sum(1 - min_over_time(redis_master_link_up[{w}]))",
                unit: "links",
                zero: 0.0,
                full: 1.0,
            },
        ],
        recommendations: &[
            "Check the replica's resources first (replay is single-threaded: its disk and CPU), then the network between primary and replica.",
            "Long queries on a replica delay replay (hot_standby_feedback, max_standby_streaming_delay); find them there with /api/v1/lookout/postgres/transactions.",
            "Watch replication slots' retained WAL (pg_replication_slots_pg_wal_lsn_diff): a stuck slot fills the primary's disk.",
        ],
    },
];

/// Where `v` lies between a signal's zero and full points, as 0–100.
fn ramp(v: f64, zero: f64, full: f64) -> f64 {
    if !v.is_finite() || v <= zero {
        return 0.0;
    }
    if v >= full || full <= zero {
        return 100.0;
    }
    ((v - zero) / (full - zero) * 100.0).clamp(0.0, 100.0)
}

/// The PromQL duration for `d` (whole seconds).
fn promql_duration(d: Duration) -> String {
    format!("{}s", d.as_secs().max(1))
}

/// One number from a signal's result: the largest finite value (signals aggregate to a
/// single series; a scalar is itself).
fn reading(v: &Value) -> Option<f64> {
    match v {
        Value::Scalar(x) => Some(*x).filter(|x| x.is_finite()),
        Value::Vector(s) => s
            .iter()
            .map(|x| x.v)
            .filter(|x| x.is_finite())
            .reduce(f64::max),
        _ => None,
    }
}

/// Makes the report over `db` with `engine`.
pub fn diagnose(engine: &Engine, db: &dyn Queryable, o: &Options) -> Result<Report, Error> {
    if o.window < Options::MIN_WINDOW || o.window > Options::MAX_WINDOW {
        return Err(Error::Invalid(format!(
            "window {}s is out of range ({}s to {}s)",
            o.window.as_secs(),
            Options::MIN_WINDOW.as_secs(),
            Options::MAX_WINDOW.as_secs()
        )));
    }
    let w = promql_duration(o.window);
    let mut measured = Vec::new();
    let mut not_measured = Vec::new();
    for r in RESOURCES {
        let mut evidence = Vec::new();
        for s in r.signals {
            let query = s.query.replace("{w}", &w);
            let expr = lookout_promql::parse(&query).map_err(|e| Error::Query {
                query: query.clone(),
                message: e.to_string(),
            })?;
            let result = engine
                .instant_query(db, &query, &expr, o.at, None)
                .map_err(|e| Error::Query {
                    query: query.clone(),
                    message: e.to_string(),
                })?;
            let value = reading(&result.value);
            evidence.push(Evidence {
                description: s.description.to_string(),
                query,
                value,
                unit: s.unit,
                score: value.map_or(0.0, |v| round1(ramp(v, s.zero, s.full))),
            });
        }
        if evidence.iter().all(|e| e.value.is_none()) {
            not_measured.push(r.name);
            continue;
        }
        evidence.retain(|e| e.value.is_some());
        evidence.sort_by(|a, b| b.score.total_cmp(&a.score));
        let top = &evidence[0];
        let summary = format!(
            "{}: {} {}",
            top.description,
            format_value(top.value.unwrap_or(0.0), top.unit),
            if top.score > 0.0 {
                format!("(score {:.0})", top.score)
            } else {
                "(normal)".to_string()
            }
        );
        measured.push(Bottleneck {
            resource: r.name,
            score: top.score,
            summary,
            evidence,
            recommendations: r.recommendations.to_vec(),
        });
    }
    // Stable: equal scores keep the table's order.
    measured.sort_by(|a, b| b.score.total_cmp(&a.score));
    let worst = measured.first().map_or(0.0, |b| b.score);
    Ok(Report {
        at: o.at as f64 / 1000.0,
        window_seconds: o.window.as_secs_f64(),
        performance_score: round1(100.0 - worst),
        bottlenecks: measured,
        not_measured,
    })
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn format_value(v: f64, unit: &str) -> String {
    match unit {
        "ratio" => format!("{:.1}%", v * 100.0),
        "seconds" if v < 1.0 => format!("{:.1} ms", v * 1000.0),
        "seconds" => format!("{v:.1} s"),
        "bytes" => format!("{:.1} MiB", v / 1024.0 / 1024.0),
        "per_second" => format!("{v:.2}/s"),
        "per_minute" => format!("{v:.2}/min"),
        _ => format!("{v:.2}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramps_start_at_zero_and_saturate() {
        assert_eq!(ramp(0.5, 0.6, 0.95), 0.0);
        assert_eq!(ramp(0.95, 0.6, 0.95), 100.0);
        assert!((ramp(0.775, 0.6, 0.95) - 50.0).abs() < 1e-9);
        assert_eq!(ramp(f64::NAN, 0.0, 1.0), 0.0);
        assert_eq!(ramp(2.0, 0.0, 1.0), 100.0);
    }

    #[test]
    fn every_signal_parses_with_its_window() {
        for r in RESOURCES {
            for s in r.signals {
                let q = s.query.replace("{w}", "900s");
                lookout_promql::parse(&q).unwrap_or_else(|e| panic!("{q}: {e}"));
                assert!(s.full > s.zero, "{q}");
            }
        }
    }
}
