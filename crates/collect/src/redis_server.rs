//! Redis: redis_exporter's families, under its names and labels, from `INFO ALL`,
//! `CONFIG GET`, `SLOWLOG` and the keyspace, over one multiplexed connection kept between
//! runs (reopened after a failure).
//!
//! INFO fields map to the exporter's names through [`FIELDS`] (gauges and counters with
//! its renames and unit conversions); `cmdstat_*` become `redis_commands_total`,
//! `redis_commands_duration_seconds_total`, `redis_commands_rejected_calls_total` and
//! `redis_commands_failed_calls_total` by `cmd`; `latency_percentiles_usec_*` the
//! `redis_latency_percentiles_usec` summary; `errorstat_*` `redis_errors_total` by `err`;
//! `dbN` lines `redis_db_keys`, `redis_db_keys_expiring` and `redis_db_avg_ttl_seconds`
//! (every database up to `databases`, empty ones as 0, as the exporter does).

use std::collections::BTreeMap;

use std::sync::Arc;

use redis::aio::MultiplexedConnection;

use crate::redis_diag;
pub use crate::redis_diag::{BigKeysOptions, RedisBoard};
use crate::{AsyncCollector, CollectFuture, Error, Metric, Result};

/// How to reach one Redis server.
#[derive(Debug, Clone)]
pub struct RedisTarget {
    /// The configured name (the `instance` label).
    pub name: String,
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
    /// The password, when not in the URL.
    pub password: Option<String>,
    /// Whether slow-log entries keep the command's arguments (they may hold user data).
    pub slowlog_arguments: bool,
    /// The big-key sample, when enabled.
    pub big_keys: Option<BigKeysOptions>,
}

/// How long one watch connection is kept before it is renewed at the next run.
const WATCH_FOR: std::time::Duration = std::time::Duration::from_secs(300);

/// The Redis collector for one server.
pub struct RedisCollector {
    target: RedisTarget,
    collector_name: String,
    client: redis::Client,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    board: RedisBoard,
    /// The connection's database (the big-key sample's).
    db: u32,
    /// When the last big-key sample started, and whether one runs now.
    big_keys: Arc<std::sync::Mutex<(Option<std::time::Instant>, bool)>>,
    /// The server's TCP address, watched between runs (`None` for Unix sockets).
    tcp: Option<(String, u16)>,
    /// Notified when the watched connection drops.
    wake: Arc<tokio::sync::Notify>,
    /// Whether a watcher runs.
    watching: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for RedisCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCollector")
            .field("name", &self.target.name)
            .finish()
    }
}

/// How an INFO value becomes a metric value.
#[derive(Clone, Copy)]
enum Conv {
    Plain,
    /// Microseconds to seconds.
    Micros,
    /// `ok` is 1, anything else 0.
    Ok,
    /// `up` is 1, anything else 0.
    Up,
}

/// INFO field → (metric name without `redis_`, conversion), as redis_exporter names them.
const FIELDS: &[(&str, &str, Conv)] = &[
    ("uptime_in_seconds", "uptime_in_seconds", Conv::Plain),
    ("process_id", "process_id", Conv::Plain),
    ("io_threads_active", "io_threads_active", Conv::Plain),
    ("connected_clients", "connected_clients", Conv::Plain),
    ("blocked_clients", "blocked_clients", Conv::Plain),
    ("tracking_clients", "tracking_clients", Conv::Plain),
    (
        "clients_in_timeout_table",
        "clients_in_timeout_table",
        Conv::Plain,
    ),
    ("cluster_connections", "cluster_connections", Conv::Plain),
    (
        "client_recent_max_input_buffer",
        "client_recent_max_input_buffer_bytes",
        Conv::Plain,
    ),
    (
        "client_recent_max_output_buffer",
        "client_recent_max_output_buffer_bytes",
        Conv::Plain,
    ),
    ("used_memory", "memory_used_bytes", Conv::Plain),
    ("used_memory_rss", "memory_used_rss_bytes", Conv::Plain),
    ("used_memory_peak", "memory_used_peak_bytes", Conv::Plain),
    ("used_memory_lua", "memory_used_lua_bytes", Conv::Plain),
    (
        "used_memory_overhead",
        "memory_used_overhead_bytes",
        Conv::Plain,
    ),
    (
        "used_memory_startup",
        "memory_used_startup_bytes",
        Conv::Plain,
    ),
    (
        "used_memory_dataset",
        "memory_used_dataset_bytes",
        Conv::Plain,
    ),
    (
        "used_memory_scripts",
        "memory_used_scripts_bytes",
        Conv::Plain,
    ),
    ("maxmemory", "memory_max_bytes", Conv::Plain),
    (
        "mem_fragmentation_ratio",
        "mem_fragmentation_ratio",
        Conv::Plain,
    ),
    (
        "mem_fragmentation_bytes",
        "mem_fragmentation_bytes",
        Conv::Plain,
    ),
    ("mem_clients_slaves", "mem_clients_slaves", Conv::Plain),
    ("mem_clients_normal", "mem_clients_normal", Conv::Plain),
    (
        "mem_not_counted_for_evict",
        "mem_not_counted_for_eviction_bytes",
        Conv::Plain,
    ),
    ("allocator_active", "allocator_active_bytes", Conv::Plain),
    (
        "allocator_allocated",
        "allocator_allocated_bytes",
        Conv::Plain,
    ),
    (
        "allocator_resident",
        "allocator_resident_bytes",
        Conv::Plain,
    ),
    ("allocator_frag_ratio", "allocator_frag_ratio", Conv::Plain),
    ("allocator_frag_bytes", "allocator_frag_bytes", Conv::Plain),
    ("allocator_rss_ratio", "allocator_rss_ratio", Conv::Plain),
    ("allocator_rss_bytes", "allocator_rss_bytes", Conv::Plain),
    (
        "active_defrag_running",
        "active_defrag_running",
        Conv::Plain,
    ),
    (
        "lazyfree_pending_objects",
        "lazyfree_pending_objects",
        Conv::Plain,
    ),
    (
        "number_of_cached_scripts",
        "number_of_cached_scripts",
        Conv::Plain,
    ),
    ("loading", "loading_dump_file", Conv::Plain),
    (
        "rdb_changes_since_last_save",
        "rdb_changes_since_last_save",
        Conv::Plain,
    ),
    (
        "rdb_bgsave_in_progress",
        "rdb_bgsave_in_progress",
        Conv::Plain,
    ),
    (
        "rdb_last_save_time",
        "rdb_last_save_timestamp_seconds",
        Conv::Plain,
    ),
    ("rdb_last_bgsave_status", "rdb_last_bgsave_status", Conv::Ok),
    (
        "rdb_last_bgsave_time_sec",
        "rdb_last_bgsave_duration_sec",
        Conv::Plain,
    ),
    (
        "rdb_current_bgsave_time_sec",
        "rdb_current_bgsave_duration_sec",
        Conv::Plain,
    ),
    ("rdb_last_cow_size", "rdb_last_cow_size_bytes", Conv::Plain),
    ("aof_enabled", "aof_enabled", Conv::Plain),
    (
        "aof_rewrite_in_progress",
        "aof_rewrite_in_progress",
        Conv::Plain,
    ),
    (
        "aof_rewrite_scheduled",
        "aof_rewrite_scheduled",
        Conv::Plain,
    ),
    (
        "aof_last_rewrite_time_sec",
        "aof_last_rewrite_duration_sec",
        Conv::Plain,
    ),
    (
        "aof_current_rewrite_time_sec",
        "aof_current_rewrite_duration_sec",
        Conv::Plain,
    ),
    ("aof_last_cow_size", "aof_last_cow_size_bytes", Conv::Plain),
    (
        "aof_last_bgrewrite_status",
        "aof_last_bgrewrite_status",
        Conv::Ok,
    ),
    ("aof_last_write_status", "aof_last_write_status", Conv::Ok),
    (
        "module_fork_in_progress",
        "module_fork_in_progress",
        Conv::Plain,
    ),
    (
        "module_fork_last_cow_size",
        "module_fork_last_cow_size",
        Conv::Plain,
    ),
    (
        "expired_stale_perc",
        "expired_stale_percentage",
        Conv::Plain,
    ),
    (
        "expired_time_cap_reached_count",
        "expired_time_cap_reached_total",
        Conv::Plain,
    ),
    ("pubsub_channels", "pubsub_channels", Conv::Plain),
    ("pubsub_patterns", "pubsub_patterns", Conv::Plain),
    ("latest_fork_usec", "latest_fork_seconds", Conv::Micros),
    (
        "migrate_cached_sockets",
        "migrate_cached_sockets_total",
        Conv::Plain,
    ),
    (
        "slave_expires_tracked_keys",
        "slave_expires_tracked_keys",
        Conv::Plain,
    ),
    ("active_defrag_hits", "defrag_hits", Conv::Plain),
    ("active_defrag_misses", "defrag_misses", Conv::Plain),
    ("active_defrag_key_hits", "defrag_key_hits", Conv::Plain),
    ("active_defrag_key_misses", "defrag_key_misses", Conv::Plain),
    ("tracking_total_keys", "tracking_total_keys", Conv::Plain),
    ("tracking_total_items", "tracking_total_items", Conv::Plain),
    (
        "tracking_total_prefixes",
        "tracking_total_prefixes",
        Conv::Plain,
    ),
    ("connected_slaves", "connected_slaves", Conv::Plain),
    (
        "repl_backlog_size",
        "replication_backlog_bytes",
        Conv::Plain,
    ),
    ("repl_backlog_active", "repl_backlog_is_active", Conv::Plain),
    (
        "repl_backlog_first_byte_offset",
        "repl_backlog_first_byte_offset",
        Conv::Plain,
    ),
    (
        "repl_backlog_histlen",
        "repl_backlog_history_bytes",
        Conv::Plain,
    ),
    ("master_repl_offset", "master_repl_offset", Conv::Plain),
    ("second_repl_offset", "second_repl_offset", Conv::Plain),
    ("slave_repl_offset", "slave_repl_offset", Conv::Plain),
    ("master_link_status", "master_link_up", Conv::Up),
    (
        "master_last_io_seconds_ago",
        "master_last_io_seconds_ago",
        Conv::Plain,
    ),
    (
        "master_sync_in_progress",
        "master_sync_in_progress",
        Conv::Plain,
    ),
    ("sync_full", "replica_resyncs_full", Conv::Plain),
    (
        "sync_partial_ok",
        "replica_partial_resync_accepted",
        Conv::Plain,
    ),
    (
        "sync_partial_err",
        "replica_partial_resync_denied",
        Conv::Plain,
    ),
    ("cluster_enabled", "cluster_enabled", Conv::Plain),
    (
        "total_connections_received",
        "connections_received_total",
        Conv::Plain,
    ),
    (
        "total_commands_processed",
        "commands_processed_total",
        Conv::Plain,
    ),
    (
        "rejected_connections",
        "rejected_connections_total",
        Conv::Plain,
    ),
    (
        "total_net_input_bytes",
        "net_input_bytes_total",
        Conv::Plain,
    ),
    (
        "total_net_output_bytes",
        "net_output_bytes_total",
        Conv::Plain,
    ),
    ("expired_keys", "expired_keys_total", Conv::Plain),
    ("evicted_keys", "evicted_keys_total", Conv::Plain),
    ("keyspace_hits", "keyspace_hits_total", Conv::Plain),
    ("keyspace_misses", "keyspace_misses_total", Conv::Plain),
    ("used_cpu_sys", "cpu_sys_seconds_total", Conv::Plain),
    ("used_cpu_user", "cpu_user_seconds_total", Conv::Plain),
    (
        "used_cpu_sys_children",
        "cpu_sys_children_seconds_total",
        Conv::Plain,
    ),
    (
        "used_cpu_user_children",
        "cpu_user_children_seconds_total",
        Conv::Plain,
    ),
    (
        "used_cpu_sys_main_thread",
        "cpu_sys_main_thread_seconds_total",
        Conv::Plain,
    ),
    (
        "used_cpu_user_main_thread",
        "cpu_user_main_thread_seconds_total",
        Conv::Plain,
    ),
    (
        "unexpected_error_replies",
        "unexpected_error_replies",
        Conv::Plain,
    ),
    ("total_error_replies", "total_error_replies", Conv::Plain),
    (
        "dump_payload_sanitizations",
        "dump_payload_sanitizations",
        Conv::Plain,
    ),
    (
        "total_reads_processed",
        "total_reads_processed",
        Conv::Plain,
    ),
    (
        "total_writes_processed",
        "total_writes_processed",
        Conv::Plain,
    ),
    (
        "io_threaded_reads_processed",
        "io_threaded_reads_processed",
        Conv::Plain,
    ),
    (
        "io_threaded_writes_processed",
        "io_threaded_writes_processed",
        Conv::Plain,
    ),
];

/// INFO fields that label `redis_instance_info`.
const INFO_LABELS: &[&str] = &[
    "maxmemory_policy",
    "os",
    "process_id",
    "redis_build_id",
    "redis_mode",
    "redis_version",
    "role",
    "run_id",
    "tcp_port",
];

impl RedisCollector {
    /// A collector for `target`, its slow log, doctors' reports and big keys going to
    /// `board`. Fails when the URL does not parse.
    pub fn new(target: RedisTarget, board: RedisBoard) -> Result<Self> {
        let mut info = redis::IntoConnectionInfo::into_connection_info(target.url.as_str())
            .map_err(|e| Error::Server {
                server: format!("redis {}", target.name),
                message: format!("invalid url: {e}"),
            })?;
        if let Some(p) = &target.password {
            let settings = info.redis_settings().clone().set_password(p.clone());
            info = info.set_redis_settings(settings);
        }
        let db = u32::try_from(info.redis_settings().db()).unwrap_or(0);
        let tcp = match info.addr() {
            redis::ConnectionAddr::Tcp(host, port) => Some((host.clone(), *port)),
            _ => None,
        };
        let client = redis::Client::open(info).map_err(|e| Error::Server {
            server: format!("redis {}", target.name),
            message: e.to_string(),
        })?;
        Ok(Self {
            collector_name: format!("redis/{}", target.name),
            target,
            client,
            conn: tokio::sync::Mutex::new(None),
            board,
            db,
            big_keys: Arc::default(),
            tcp,
            wake: Arc::default(),
            watching: Arc::default(),
        })
    }

    /// Watches the server between runs: one idle TCP connection of its own, which ends
    /// when the server goes away (or restarts); the collector then runs at once. (Redis
    /// closes idle clients only when its `timeout` is set; a close then costs one extra
    /// run.)
    fn watch(&self) {
        let Some((host, port)) = self.tcp.clone() else {
            return;
        };
        if self
            .watching
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        let wake = Arc::downgrade(&self.wake);
        let watching = Arc::clone(&self.watching);
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            if let Ok(mut s) = tokio::net::TcpStream::connect((host.as_str(), port)).await {
                let mut buf = [0u8; 512];
                // Nothing is sent, so nothing should come back: any end is the news. A
                // peer that vanishes without closing (a partition, a powered-off host)
                // would leave the read waiting for ever, so the watch ends quietly after
                // WATCH_FOR and the next successful run starts a fresh one.
                let ended = tokio::time::timeout(WATCH_FOR, async {
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                })
                .await
                .is_ok();
                if ended && let Some(w) = wake.upgrade() {
                    w.notify_one();
                }
            }
            watching.store(false, std::sync::atomic::Ordering::Release);
        });
    }

    /// Starts a big-key sample in the background when one is due and none runs.
    fn maybe_sample_big_keys(&self, con: &MultiplexedConnection) {
        let Some(opts) = self.target.big_keys.clone() else {
            return;
        };
        {
            let mut state = self.big_keys.lock().expect("lock poisoned");
            if state.1 || state.0.is_some_and(|t| t.elapsed() < opts.every) {
                return;
            }
            *state = (Some(std::time::Instant::now()), true);
        }
        let mut con = con.clone();
        let board = self.board.clone();
        let state = Arc::clone(&self.big_keys);
        let instance = self.target.name.clone();
        let db = self.db;
        tokio::spawn(async move {
            match redis_diag::big_keys(&mut con, db, &opts).await {
                Ok(sample) => board.set_big_keys(&instance, sample),
                Err(e) => {
                    tracing::warn!(instance = %instance, error = %e, "Redis big-key sample failed")
                }
            }
            state.lock().expect("lock poisoned").1 = false;
        });
    }

    fn err(&self, message: impl Into<String>) -> Error {
        Error::Server {
            server: format!("redis {}", self.target.name),
            message: message.into(),
        }
    }

    async fn run(&self, out: &mut Vec<Metric>) -> Result<()> {
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            match self.client.get_multiplexed_async_connection().await {
                Ok(c) => *guard = Some(c),
                Err(e) => {
                    out.push(Metric::new("redis_up", &[], 0.0));
                    return Err(self.err(format!("connecting: {e}")));
                }
            }
        }
        let mut con = guard.clone().expect("connected above");
        match read(&mut con, out, self.target.slowlog_arguments).await {
            Ok(slow) => {
                out.push(Metric::new("redis_up", &[], 1.0));
                let latency = redis_diag::doctor(&mut con, "LATENCY").await;
                let memory = redis_diag::doctor(&mut con, "MEMORY").await;
                self.board.update(&self.target.name, slow, latency, memory);
                self.maybe_sample_big_keys(&con);
                self.watch();
                Ok(())
            }
            Err(e) => {
                *guard = None;
                out.clear();
                out.push(Metric::new("redis_up", &[], 0.0));
                Err(self.err(e.to_string()))
            }
        }
    }
}

impl AsyncCollector for RedisCollector {
    fn name(&self) -> &str {
        &self.collector_name
    }

    fn collect<'a>(&'a self, out: &'a mut Vec<Metric>) -> CollectFuture<'a> {
        Box::pin(self.run(out))
    }

    fn wake(&self) -> Option<Arc<tokio::sync::Notify>> {
        Some(Arc::clone(&self.wake))
    }
}

/// Reads the metrics into `out`; returns the slow log's newest entries.
async fn read(
    con: &mut MultiplexedConnection,
    out: &mut Vec<Metric>,
    slowlog_arguments: bool,
) -> redis::RedisResult<Vec<lookout_model::status::RedisSlowEntry>> {
    let info: String = redis::cmd("INFO").arg("ALL").query_async(con).await?;
    let fields = parse_info(&info);
    from_info(&fields, out);
    // CONFIG may be renamed or forbidden (managed Redis): the rest still counts.
    let config: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("*")
        .query_async(con)
        .await;
    let config: BTreeMap<String, String> = match config {
        Ok(v) => v
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (c[0].clone(), c[1].clone()))
            .collect(),
        Err(_) => BTreeMap::new(),
    };
    for (key, name) in [
        ("maxmemory", "redis_config_maxmemory"),
        ("maxclients", "redis_config_maxclients"),
        ("io-threads", "redis_config_io_threads"),
    ] {
        if let Some(v) = config.get(key).and_then(|v| v.parse::<f64>().ok()) {
            out.push(Metric::new(name, &[], v));
        }
    }
    let databases: usize = config
        .get("databases")
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    keyspace(&fields, databases, out);
    let len: i64 = redis::cmd("SLOWLOG").arg("LEN").query_async(con).await?;
    out.push(Metric::new("redis_slowlog_length", &[], len as f64));
    let log: redis::Value = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(redis_diag::SLOWLOG_READ)
        .query_async(con)
        .await?;
    let entries = redis_diag::parse_slowlog(&log, slowlog_arguments);
    let (id, seconds) = entries
        .first()
        .map_or((0.0, 0.0), |e| (e.id as f64, e.duration_seconds));
    out.push(Metric::new("redis_slowlog_last_id", &[], id));
    out.push(Metric::new(
        "redis_last_slow_execution_duration_seconds",
        &[],
        seconds,
    ));
    Ok(entries)
}

/// `field:value` lines of INFO, without section headers.
fn parse_info(info: &str) -> BTreeMap<&str, &str> {
    info.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .collect()
}

/// `a=1,b=2` pairs.
fn pairs(v: &str) -> BTreeMap<&str, &str> {
    v.split(',').filter_map(|p| p.split_once('=')).collect()
}

fn from_info(fields: &BTreeMap<&str, &str>, out: &mut Vec<Metric>) {
    for (field, name, conv) in FIELDS {
        let Some(raw) = fields.get(field) else {
            continue;
        };
        let v = match conv {
            Conv::Plain => raw.parse().ok(),
            Conv::Micros => raw.parse::<f64>().ok().map(|v| v / 1e6),
            Conv::Ok => Some(if *raw == "ok" { 1.0 } else { 0.0 }),
            Conv::Up => Some(if *raw == "up" { 1.0 } else { 0.0 }),
        };
        if let Some(v) = v {
            out.push(Metric::new(&format!("redis_{name}"), &[], v));
        }
    }
    let labels: Vec<(&str, &str)> = INFO_LABELS
        .iter()
        .filter_map(|l| fields.get(l).map(|v| (*l, *v)))
        .collect();
    out.push(Metric::new("redis_instance_info", &labels, 1.0));
    if let (Some(now), Some(up)) = (
        fields
            .get("server_time_usec")
            .and_then(|v| v.parse::<f64>().ok()),
        fields
            .get("uptime_in_seconds")
            .and_then(|v| v.parse::<f64>().ok()),
    ) {
        out.push(Metric::new(
            "redis_start_time_seconds",
            &[],
            (now / 1e6 - up).round(),
        ));
    }
    for (field, value) in fields {
        if let Some(cmd) = field.strip_prefix("cmdstat_") {
            let p = pairs(value);
            let get = |k: &str| p.get(k).and_then(|v| v.parse::<f64>().ok());
            let l = [("cmd", cmd)];
            if let Some(c) = get("calls") {
                out.push(Metric::new("redis_commands_total", &l, c));
            }
            if let Some(u) = get("usec") {
                out.push(Metric::new(
                    "redis_commands_duration_seconds_total",
                    &l,
                    u / 1e6,
                ));
            }
            if let Some(r) = get("rejected_calls") {
                out.push(Metric::new("redis_commands_rejected_calls_total", &l, r));
            }
            if let Some(f) = get("failed_calls") {
                out.push(Metric::new("redis_commands_failed_calls_total", &l, f));
            }
        } else if let Some(cmd) = field.strip_prefix("latency_percentiles_usec_") {
            for (q, v) in pairs(value) {
                if let (Some(q), Ok(v)) = (q.strip_prefix('p'), v.parse::<f64>()) {
                    out.push(Metric::new(
                        "redis_latency_percentiles_usec",
                        &[("cmd", cmd), ("quantile", q)],
                        v,
                    ));
                }
            }
            if let Some(stats) = fields.get(format!("cmdstat_{cmd}").as_str()) {
                let p = pairs(stats);
                let get = |k: &str| p.get(k).and_then(|v| v.parse::<f64>().ok());
                if let (Some(sum), Some(count)) = (get("usec"), get("calls")) {
                    out.push(Metric::new(
                        "redis_latency_percentiles_usec_sum",
                        &[("cmd", cmd)],
                        sum,
                    ));
                    out.push(Metric::new(
                        "redis_latency_percentiles_usec_count",
                        &[("cmd", cmd)],
                        count,
                    ));
                }
            }
        } else if let Some(err) = field.strip_prefix("errorstat_")
            && let Some(c) = pairs(value)
                .get("count")
                .and_then(|v| v.parse::<f64>().ok())
        {
            out.push(Metric::new("redis_errors_total", &[("err", err)], c));
        }
    }
}

fn keyspace(fields: &BTreeMap<&str, &str>, databases: usize, out: &mut Vec<Metric>) {
    for i in 0..databases.max(1) {
        let db = format!("db{i}");
        let p = fields
            .get(db.as_str())
            .map(|v| pairs(v))
            .unwrap_or_default();
        let get = |k: &str| p.get(k).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        let l = [("db", db.as_str())];
        out.push(Metric::new("redis_db_keys", &l, get("keys")));
        out.push(Metric::new("redis_db_keys_expiring", &l, get("expires")));
        if p.contains_key("avg_ttl") {
            out.push(Metric::new(
                "redis_db_avg_ttl_seconds",
                &l,
                get("avg_ttl") / 1000.0,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_maps_to_exporter_names() {
        let info = "# Server\r\nredis_version:7.0.15\r\nrole:master\r\nuptime_in_seconds:10\r\n\
                    server_time_usec:1700000010000000\r\nlatest_fork_usec:250\r\n\
                    rdb_last_bgsave_status:ok\r\nkeyspace_hits:7\r\n\
                    cmdstat_get:calls=3,usec=12,usec_per_call=4.00,rejected_calls=0,failed_calls=1\r\n\
                    latency_percentiles_usec_get:p50=4.015,p99=5.023,p99.9=5.023\r\n\
                    errorstat_ERR:count=2\r\ndb0:keys=5,expires=1,avg_ttl=2500\r\n";
        let f = parse_info(info);
        let mut out = Vec::new();
        from_info(&f, &mut out);
        keyspace(&f, 2, &mut out);
        let get = |name: &str, l: &[(&str, &str)]| {
            out.iter()
                .find(|m| m.labels == Metric::new(name, l, 0.0).labels)
                .map(|m| m.value)
        };
        assert_eq!(get("redis_keyspace_hits_total", &[]), Some(7.0));
        assert_eq!(get("redis_latest_fork_seconds", &[]), Some(0.00025));
        assert_eq!(get("redis_rdb_last_bgsave_status", &[]), Some(1.0));
        assert_eq!(get("redis_start_time_seconds", &[]), Some(1_700_000_000.0));
        assert_eq!(get("redis_commands_total", &[("cmd", "get")]), Some(3.0));
        assert_eq!(
            get("redis_commands_duration_seconds_total", &[("cmd", "get")]),
            Some(12e-6)
        );
        assert_eq!(
            get("redis_commands_failed_calls_total", &[("cmd", "get")]),
            Some(1.0)
        );
        assert_eq!(
            get(
                "redis_latency_percentiles_usec",
                &[("cmd", "get"), ("quantile", "99.9")]
            ),
            Some(5.023)
        );
        assert_eq!(get("redis_errors_total", &[("err", "ERR")]), Some(2.0));
        assert_eq!(get("redis_db_keys", &[("db", "db0")]), Some(5.0));
        assert_eq!(get("redis_db_avg_ttl_seconds", &[("db", "db0")]), Some(2.5));
        assert_eq!(get("redis_db_keys", &[("db", "db1")]), Some(0.0));
        assert_eq!(
            get(
                "redis_instance_info",
                &[("redis_version", "7.0.15"), ("role", "master")]
            ),
            Some(1.0)
        );
    }
}
