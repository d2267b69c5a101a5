//! The PostgreSQL and Redis collectors against real servers started here (Debian's
//! packages; `scripts/test` installs them): exporter family names, counters that move
//! under pgbench / redis-benchmark load, missing extensions, outages and recovery.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use lookout_collect::{
    AsyncCollector, BigKeysOptions, Metric, PostgresBoard, PostgresCollector, PostgresTarget,
    RedisBoard, RedisCollector, RedisTarget,
};
use support::{PgServer, RedisServer};

/// Family names checked in from the real exporters' output (see `testdata/families/`).
fn families(file: &str) -> BTreeSet<String> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/families")
        .join(file);
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

fn names(out: &[Metric]) -> BTreeSet<String> {
    out.iter()
        .filter_map(|m| m.labels.metric_name().map(str::to_string))
        .collect()
}

use support::value_in as value;

fn pg(server: &PgServer, db: &str, slow: &PostgresBoard) -> PostgresCollector {
    PostgresCollector::new(
        PostgresTarget {
            name: "main".into(),
            dsn: server.dsn(db),
            password: None,
            top_statements: 50,
            diagnostics: true,
        },
        slow.clone(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_families_and_load() {
    let server = PgServer::start();
    server.psql("postgres", "CREATE DATABASE bench");
    server.psql("bench", "CREATE EXTENSION pg_stat_statements");
    server.pgbench("bench", &["-i", "-s", "1", "-q"]);
    let slow = PostgresBoard::default();
    let c = pg(&server, "bench", &slow);

    let mut before = Vec::new();
    c.collect(&mut before).await.unwrap();
    assert_eq!(value(&before, "pg_up", &[]), Some(1.0));
    assert!(c.notes().is_empty(), "{:?}", c.notes());

    // Every family the real postgres_exporter (Debian's) gave for the same server.
    let missing: Vec<String> = families("postgres.txt")
        .difference(&names(&before))
        .cloned()
        .collect();
    assert!(missing.is_empty(), "families missing: {missing:?}");
    for extra in [
        "pg_stat_bgwriter_checkpoints_timed",
        "pg_stat_user_tables_n_live_tup",
        "pg_statio_user_tables_heap_blocks_hit",
        "pg_replication_is_replica",
        "pg_wal_segments",
        "pg_stat_statements_calls_total",
    ] {
        assert!(names(&before).contains(extra), "{extra} missing");
    }

    server.pgbench("bench", &["-t", "200", "-c", "2", "-n"]);
    let mut after = Vec::new();
    c.collect(&mut after).await.unwrap();
    let commits = |out: &[Metric]| {
        value(out, "pg_stat_database_xact_commit", &[("datname", "bench")]).unwrap()
    };
    assert!(
        commits(&after) >= commits(&before) + 400.0,
        "xact_commit {} -> {}",
        commits(&before),
        commits(&after)
    );
    let updates = value(
        &after,
        "pg_stat_user_tables_n_tup_upd",
        &[("relname", "pgbench_accounts"), ("schemaname", "public")],
    )
    .unwrap();
    assert!(updates >= 400.0, "n_tup_upd {updates}");

    // Statements: bounded labels, text only through PostgresBoard.
    let stmts: Vec<&Metric> = after
        .iter()
        .filter(|m| m.labels.metric_name() == Some("pg_stat_statements_calls_total"))
        .collect();
    assert!(!stmts.is_empty() && stmts.len() <= 50);
    for m in &stmts {
        let keys: Vec<&str> = m.labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(keys, ["__name__", "datname", "queryid", "user"]);
    }
    let snap = slow.statements();
    assert!(
        snap.iter()
            .any(|s| s.query.contains("pgbench_accounts") && s.calls >= 400.0),
        "{snap:?}"
    );
    assert!(
        snap.windows(2)
            .all(|w| w[0].total_seconds >= w[1].total_seconds),
        "{:?}",
        snap.iter()
            .map(|s| (s.total_seconds, &s.query))
            .collect::<Vec<_>>()
    );

    // The interval between the two runs: exactly the load's 400 account updates.
    assert_eq!(
        value(&before, "pg_stat_statements_interval_duration_seconds", &[]),
        None,
        "the first run has no interval"
    );
    assert!(value(&after, "pg_stat_statements_interval_duration_seconds", &[]).unwrap() > 0.0);
    let update = snap
        .iter()
        .find(|s| s.query.starts_with("UPDATE pgbench_accounts"))
        .unwrap_or_else(|| panic!("{snap:?}"));
    let interval = |out: &[Metric], name: &str| {
        value(
            out,
            &format!("pg_stat_statements_interval_{name}"),
            &[("queryid", update.queryid.as_str()), ("datname", "bench")],
        )
    };
    assert_eq!(interval(&after, "calls"), Some(400.0));
    assert_eq!(interval(&after, "rows"), Some(400.0));
    assert!(interval(&after, "seconds").unwrap() > 0.0);
    assert!(interval(&after, "shared_blks_hit").unwrap() > 0.0);
    // Nothing ran since: the next interval has no pgbench statement.
    let mut quiet = Vec::new();
    c.collect(&mut quiet).await.unwrap();
    assert_eq!(interval(&quiet, "calls"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_without_extension_still_reports_the_rest() {
    let server = PgServer::start();
    let slow = PostgresBoard::default();
    let c = pg(&server, "postgres", &slow);
    let mut out = Vec::new();
    c.collect(&mut out).await.unwrap();
    assert_eq!(value(&out, "pg_up", &[]), Some(1.0));
    assert!(names(&out).contains("pg_stat_database_xact_commit"));
    assert!(!names(&out).contains("pg_stat_statements_calls_total"));
    let notes = c.notes();
    assert!(
        notes.iter().any(|n| n.starts_with("pg_stat_statements:")),
        "{notes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_and_recovery() {
    let mut server = PgServer::start();
    let c = pg(&server, "postgres", &PostgresBoard::default());
    let mut out = Vec::new();
    c.collect(&mut out).await.unwrap();
    assert_eq!(value(&out, "pg_up", &[]), Some(1.0));

    server.stop();
    let mut out = Vec::new();
    let err = c.collect(&mut out).await.unwrap_err().to_string();
    assert_eq!(value(&out, "pg_up", &[]), Some(0.0));
    assert!(err.starts_with("postgres main:"), "{err}");

    server.start_again();
    let mut out = Vec::new();
    c.collect(&mut out).await.unwrap();
    assert_eq!(value(&out, "pg_up", &[]), Some(1.0));
}

fn redis_target(name: &str, url: &str, big_keys: Option<BigKeysOptions>) -> RedisTarget {
    RedisTarget {
        name: name.into(),
        url: url.into(),
        password: None,
        slowlog_arguments: false,
        big_keys,
    }
}

/// A real Redis with slow commands and a big key: the slow log is kept with the
/// arguments elided, the doctors report, and the big-key sample finds the big key first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_slow_log_doctors_and_big_keys() {
    let server = RedisServer::start();
    // Every command is slow from now on (logged when it takes ≥ 0 µs).
    server.cli(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]);
    server.cli(&["SET", "secret:token", "hunter2"]);
    // A 300 kB string (zeros up to the offset).
    server.cli(&["SETRANGE", "big:blob", "300000", "x"]);
    for i in 0..50 {
        server.cli(&["SET", &format!("small:{i}"), "v"]);
    }
    let board = RedisBoard::default();
    let opts = BigKeysOptions {
        every: Duration::from_secs(3600),
        max_keys: 1000,
        batch: 10,
        pause: Duration::from_millis(1),
        top: 3,
    };
    let c = RedisCollector::new(
        redis_target("cache", &server.url(), Some(opts)),
        board.clone(),
    )
    .unwrap();
    let mut out = Vec::new();
    c.collect(&mut out).await.unwrap();
    let d = board.diagnostics();
    assert_eq!(d.len(), 1);
    let d = &d[0];
    assert_eq!(d.instance, "cache");
    let set = d
        .slowlog
        .iter()
        .find(|e| e.command.eq_ignore_ascii_case("set") && e.argument_count == 2)
        .unwrap_or_else(|| panic!("{:?}", d.slowlog));
    assert!(set.arguments.is_empty(), "arguments elided: {set:?}");
    assert!(
        d.slowlog.windows(2).all(|w| w[0].id > w[1].id),
        "newest first, no repeats"
    );
    assert!(!format!("{:?}", d.slowlog).contains("hunter2"));
    assert_eq!(
        value(&out, "redis_slowlog_last_id", &[]),
        Some(d.slowlog[0].id as f64)
    );
    for report in [&d.latency_doctor, &d.memory_doctor] {
        assert!(
            report.len() > 20 && !report.contains("DOCTOR failed"),
            "{report}"
        );
    }
    // A second run adds only the entries written since.
    let before = d.slowlog.len();
    server.cli(&["GET", "small:1"]);
    let mut out = Vec::new();
    c.collect(&mut out).await.unwrap();
    let d = board.diagnostics().remove(0);
    assert!(d.slowlog.len() > before, "{} vs {before}", d.slowlog.len());
    assert!(d.slowlog.windows(2).all(|w| w[0].id > w[1].id));
    // The big-key sample runs in the background.
    let mut sample = None;
    for _ in 0..100 {
        if let Some(s) = board.diagnostics().remove(0).big_keys {
            sample = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sample = sample.expect("a big-key sample");
    assert!(sample.complete, "{sample:?}");
    assert_eq!(sample.scanned, 52);
    assert_eq!(sample.keys.len(), 3);
    assert_eq!(sample.keys[0].key, "big:blob");
    assert_eq!(sample.keys[0].key_type, "string");
    assert!(sample.keys[0].bytes >= 300_000.0, "{sample:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_families_and_load() {
    let server = RedisServer::start();
    server.cli(&["SET", "session:1", "x", "EX", "1000"]);
    let c = RedisCollector::new(
        redis_target("cache", &server.url(), None),
        RedisBoard::default(),
    )
    .unwrap();
    let mut before = Vec::new();
    c.collect(&mut before).await.unwrap();
    assert_eq!(value(&before, "redis_up", &[]), Some(1.0));

    server.benchmark(&["-n", "2000", "-t", "set,get"]);
    let mut after = Vec::new();
    c.collect(&mut after).await.unwrap();
    // Every family the real redis_exporter (Debian's) gave for the same kind of server.
    let missing: Vec<String> = families("redis.txt")
        .difference(&names(&after))
        .cloned()
        .collect();
    assert!(missing.is_empty(), "families missing: {missing:?}");
    let sets = value(&after, "redis_commands_total", &[("cmd", "set")]).unwrap();
    assert!(sets >= 2000.0, "set calls {sets}");
    let processed = |o: &[Metric]| value(o, "redis_commands_processed_total", &[]).unwrap();
    assert!(processed(&after) >= processed(&before) + 4000.0);
    assert_eq!(
        value(&after, "redis_db_keys_expiring", &[("db", "db0")]),
        Some(1.0)
    );
    assert!(value(&after, "redis_db_keys", &[("db", "db0")]).unwrap() >= 2.0);
    assert!(value(&after, "redis_instance_info", &[("role", "master")]).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_is_redis_up_zero() {
    let port = support::free_port();
    let c = RedisCollector::new(
        redis_target("gone", &format!("redis://127.0.0.1:{port}"), None),
        RedisBoard::default(),
    )
    .unwrap();
    let mut out = Vec::new();
    let err = c.collect(&mut out).await.unwrap_err().to_string();
    assert_eq!(value(&out, "redis_up", &[]), Some(0.0));
    assert!(err.starts_with("redis gone:"), "{err}");
}

/// Sessions of a real server caught waiting: one blocked on another's table lock, one in
/// `pg_sleep`, one idle in a transaction. The collector's one-second samples name each,
/// and their totals grow with the seconds they wait; the sampled sessions give the lock
/// tree (the holder at its root, the blocked one under it) and the long transactions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_wait_events_are_sampled_every_second() {
    let server = PgServer::start();
    server.psql("postgres", "CREATE TABLE held (x int)");
    let slow = PostgresBoard::default();
    let c = pg(&server, "postgres", &slow);
    let mut out = Vec::new();
    c.collect(&mut out).await.unwrap();
    let connect = || async {
        let (client, conn) =
            tokio_postgres::connect(&server.dsn("postgres"), tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(conn);
        client
    };
    let pid = |c: tokio_postgres::Client| async move {
        let row = c
            .query_one("SELECT pg_backend_pid()::int8", &[])
            .await
            .unwrap();
        (row.get::<_, i64>(0), c)
    };
    let (holder_pid, holder) = pid(connect().await).await;
    holder
        .batch_execute("BEGIN; LOCK TABLE held IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let (waiter_pid, waiter) = pid(connect().await).await;
    let blocked =
        tokio::spawn(async move { waiter.simple_query("SELECT count(*) FROM held").await });
    let sleeper = connect().await;
    let sleeping = tokio::spawn(async move { sleeper.simple_query("SELECT pg_sleep(4)").await });
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let mut out = Vec::new();
    c.collect(&mut out).await.unwrap();
    let samples = |we_type: &str, we: &str, state: &str| {
        value(
            &out,
            "pg_wait_event_samples_total",
            &[
                ("wait_event_type", we_type),
                ("wait_event", we),
                ("state", state),
                ("datname", "postgres"),
                ("usename", "postgres"),
            ],
        )
        .unwrap_or(0.0)
    };
    // About three seconds each: at least two samples, at most five.
    let lock = samples("Lock", "relation", "active");
    assert!(
        (2.0..=5.0).contains(&lock),
        "blocked on the lock: {lock}; {out:?}"
    );
    let sleep = samples("Timeout", "PgSleep", "active");
    assert!((2.0..=5.0).contains(&sleep), "in pg_sleep: {sleep}");
    let idle_tx = samples("Client", "ClientRead", "idle in transaction");
    assert!((2.0..=5.0).contains(&idle_tx), "the lock holder: {idle_tx}");
    assert_eq!(
        value(
            &out,
            "pg_wait_event_sessions",
            &[("wait_event_type", "Lock")]
        ),
        Some(1.0)
    );
    assert!(value(&out, "pg_wait_event_sampling_runs_total", &[]).unwrap() >= 3.0);
    assert_eq!(value(&out, "pg_blocked_sessions", &[]), Some(1.0));
    let wait = value(&out, "pg_lock_wait_max_seconds", &[]).unwrap();
    assert!((2.0..=5.0).contains(&wait), "the longest lock wait: {wait}");
    let sessions = slow.sessions();
    assert_eq!(sessions.len(), 1);
    let s = &sessions[0];
    assert_eq!(s.instance, "main");
    let tree = s.lock_tree();
    assert_eq!(tree.len(), 1, "{tree:#?}");
    let root = &tree[0].session;
    assert_eq!(root.pid, holder_pid);
    assert_eq!(root.state, "idle in transaction");
    assert!(root.query.contains("LOCK TABLE held"), "{root:?}");
    assert!(root.transaction_seconds.unwrap() >= 2.0, "{root:?}");
    assert_eq!(tree[0].blocks.len(), 1);
    let w = &tree[0].blocks[0].session;
    assert_eq!(w.pid, waiter_pid);
    assert_eq!(w.blocked_by, vec![holder_pid]);
    assert_eq!(w.query, "SELECT count(*) FROM held");
    assert_eq!(
        (w.wait_event_type.as_str(), w.wait_event.as_str()),
        ("Lock", "relation")
    );
    let lw = w
        .lock_wait_seconds
        .expect("PostgreSQL 14+ gives the wait's start");
    assert!((2.0..=5.0).contains(&lw), "{w:?}");
    let long: Vec<i64> = s.long_transactions(2.0).iter().map(|x| x.pid).collect();
    assert_eq!(
        long.first(),
        Some(&holder_pid),
        "the oldest first: {long:?}"
    );
    assert!(long.contains(&waiter_pid));
    // The collector's own session and idle sessions are not counted.
    assert!(
        !out.iter()
            .any(|m| m.labels.metric_name() == Some("pg_wait_event_sessions")
                && m.labels.get("state") == Some("idle")),
        "{out:?}"
    );
    holder.batch_execute("COMMIT").await.unwrap();
    blocked.await.unwrap().unwrap();
    sleeping.await.unwrap().unwrap();
    // Once the sessions are done, the last sample has none of them; totals stay.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut out = Vec::new();
    c.collect(&mut out).await.unwrap();
    assert_eq!(
        value(
            &out,
            "pg_wait_event_sessions",
            &[("wait_event_type", "Lock")]
        ),
        None
    );
    assert!(
        value(
            &out,
            "pg_wait_event_samples_total",
            &[("wait_event_type", "Lock")]
        )
        .unwrap()
            >= lock
    );
}

/// A database with maintenance debt: a table with 90% dead tuples and autovacuum off, a
/// table whose rows were deleted and vacuumed (its heap keeps the empty pages), an index
/// never scanned and one indexing the same column as another. The advisor names each
/// with its numbers; the database ages are metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_advisor_names_dead_tuples_bloat_and_useless_indexes() {
    let server = PgServer::start();
    server.psql("postgres", "CREATE DATABASE shop");
    for sql in [
        "CREATE TABLE dead_rows (id int, pad text) WITH (autovacuum_enabled = false)",
        "INSERT INTO dead_rows SELECT g, repeat('x', 120) FROM generate_series(1, 200000) g",
        "CREATE INDEX dead_rows_id_idx ON dead_rows (id)",
        "CREATE INDEX dead_rows_id_again ON dead_rows (id)",
        "CREATE INDEX dead_rows_pad_idx ON dead_rows (pad)",
        "DELETE FROM dead_rows WHERE id % 10 <> 0",
        "CREATE TABLE bloated (id int PRIMARY KEY, pad text) WITH (autovacuum_enabled = false)",
        "INSERT INTO bloated SELECT g, repeat('y', 120) FROM generate_series(1, 200000) g",
        "DELETE FROM bloated WHERE id % 10 <> 0",
        "VACUUM ANALYZE bloated",
        // The planner's statistics give the row width the bloat estimate needs.
        "ANALYZE dead_rows",
        // One scan of the first index: only the others are unused.
        "SELECT count(*) FROM dead_rows WHERE id = 10",
    ] {
        server.psql("shop", sql);
    }
    // The scan is counted once its backend has flushed its statistics (on exit).
    for _ in 0..100 {
        let scans = server.psql(
            "shop",
            "SELECT sum(idx_scan) FROM pg_stat_user_indexes WHERE relname = 'dead_rows'",
        );
        if scans.trim() != "0" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let board = PostgresBoard::default();
    let c = pg(&server, "shop", &board);
    let mut out = Vec::new();
    c.collect(&mut out).await.unwrap();
    // (No pg_stat_statements in this database: that is the only note.)
    assert!(
        c.notes()
            .iter()
            .all(|n| n.starts_with("pg_stat_statements")),
        "{:?}",
        c.notes()
    );
    let age = value(&out, "pg_database_xid_age", &[("datname", "shop")]).unwrap();
    assert!(age > 0.0 && age < 1e6, "{age}");
    assert!(value(&out, "pg_database_mxid_age", &[("datname", "postgres")]).is_some());
    let reports = board.advisor();
    assert_eq!(reports.len(), 1);
    let advice = &reports[0].advice;
    let find = |kind: &str, target: &str| {
        advice
            .iter()
            .find(|a| a.kind == kind && a.target == target)
            .unwrap_or_else(|| panic!("no {kind} advice on {target}: {advice:#?}"))
    };
    let vacuum = find("vacuum", "\"public\".\"dead_rows\"");
    assert_eq!(
        vacuum.action,
        "VACUUM (ANALYZE, VERBOSE) \"public\".\"dead_rows\";"
    );
    assert_eq!(vacuum.figures["dead_tuples"], 180_000.0, "{vacuum:?}");
    assert!(
        (vacuum.figures["dead_ratio"] - 0.9).abs() < 0.01,
        "{vacuum:?}"
    );
    assert_eq!(vacuum.datname, "shop");
    let bloat = find("table_bloat", "\"public\".\"bloated\"");
    let ratio = bloat.figures["estimated_bloat_ratio"];
    assert!((0.8..0.95).contains(&ratio), "{bloat:?}");
    find("unused_index", "\"public\".\"dead_rows_pad_idx\"");
    // Of the two identical indexes, the one the query used is kept and the other is
    // to drop (the planner may pick either).
    let dups: Vec<_> = advice
        .iter()
        .filter(|a| a.kind == "duplicate_index")
        .collect();
    assert_eq!(dups.len(), 1, "{advice:#?}");
    let (dropped, kept) = if dups[0].target.contains("dead_rows_id_again") {
        ("dead_rows_id_again", "dead_rows_id_idx")
    } else {
        ("dead_rows_id_idx", "dead_rows_id_again")
    };
    assert!(
        dups[0].target.contains(dropped) && dups[0].reason.contains(kept),
        "{dups:?}"
    );
    find("unused_index", &format!("\"public\".\"{dropped}\""));
    // Indexes that back a key, and the scanned one, are not called unused.
    assert!(
        !advice.iter().any(|a| a.kind == "unused_index"
            && (a.target.contains("bloated_pkey") || a.target.contains(kept))),
        "{advice:#?}"
    );
    // Nothing to say about the healthy system database.
    assert!(advice.iter().all(|a| a.datname == "shop"), "{advice:#?}");
}
