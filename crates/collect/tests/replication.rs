//! Replication against a real streaming standby: a primary, a standby copied from it
//! with `pg_basebackup` through a physical slot, and the PostgreSQL collector on both.
//! The primary reports the replica (state, byte lag, write/flush/replay lag) and the
//! active slot; the standby reports itself as a replica with a replay lag. With the
//! standby stopped, the slot turns inactive and the WAL it retains grows with writes.

mod support;

use std::time::{Duration, Instant};

use lookout_collect::{AsyncCollector, Metric, PostgresBoard, PostgresCollector, PostgresTarget};
use support::PgServer;

fn collector(name: &str, server: &PgServer) -> PostgresCollector {
    PostgresCollector::new(
        PostgresTarget {
            name: name.into(),
            dsn: server.dsn("postgres"),
            password: None,
            top_statements: 10,
            diagnostics: true,
        },
        PostgresBoard::default(),
    )
    .unwrap()
}

use support::value_in as value;

/// Collects from `c` until `ok` holds for what it read (at most 30 s).
async fn collect_until(
    c: &PostgresCollector,
    what: &str,
    ok: impl Fn(&[Metric]) -> bool,
) -> Vec<Metric> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut out = Vec::new();
        c.collect(&mut out).await.unwrap();
        if ok(&out) {
            return out;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_standby_is_seen_from_both_sides() {
    let primary = PgServer::start();
    let mut standby = PgServer::standby_of(&primary, "standby1");
    primary.psql(
        "postgres",
        "CREATE TABLE t (i int); INSERT INTO t SELECT generate_series(1, 10000)",
    );
    let on_primary = collector("main", &primary);
    let on_standby = collector("replica", &standby);

    // Streaming, and replaying: until the standby reports a replay position the lag
    // is NaN (NULL), as postgres_exporter reports it.
    let out = collect_until(&on_primary, "the replica streaming", |o| {
        value(
            o,
            "pg_stat_replication_pg_wal_lsn_diff",
            &[("state", "streaming")],
        )
        .is_some_and(|v| !v.is_nan())
    })
    .await;
    assert!(value(&out, "pg_replication_is_replica", &[]) == Some(0.0));
    let diff = value(&out, "pg_stat_replication_pg_wal_lsn_diff", &[]).unwrap();
    assert!(diff >= 0.0, "byte lag {diff}");
    assert!(value(&out, "pg_stat_replication_pg_current_wal_lsn_bytes", &[]).unwrap() > 0.0);
    assert_eq!(
        value(
            &out,
            "pg_replication_slots_active",
            &[("slot_name", "standby1")]
        ),
        Some(1.0),
        "the slot is in use"
    );
    for lag in [
        "pg_stat_replication_write_lag_seconds",
        "pg_stat_replication_flush_lag_seconds",
        "pg_stat_replication_replay_lag_seconds",
    ] {
        // Lag columns are NULL until the standby has confirmed a write after a change.
        if let Some(v) = value(&out, lag, &[]) {
            assert!((0.0..60.0).contains(&v), "{lag} {v}");
        }
    }

    let out = collect_until(&on_standby, "the standby's own view", |o| {
        value(o, "pg_replication_is_replica", &[]) == Some(1.0)
    })
    .await;
    let lag = value(&out, "pg_replication_lag_seconds", &[]).unwrap();
    assert!((0.0..3600.0).contains(&lag), "replay lag {lag}");
    assert!(
        value(&out, "pg_stat_replication_pg_wal_lsn_diff", &[]).is_none(),
        "a standby with no cascading replica lists none"
    );

    // The standby goes away: the slot is inactive and holds back the WAL written since.
    standby.stop();
    let out = collect_until(&on_primary, "the slot inactive", |o| {
        value(
            o,
            "pg_replication_slots_active",
            &[("slot_name", "standby1")],
        ) == Some(0.0)
    })
    .await;
    assert!(value(&out, "pg_stat_replication_pg_wal_lsn_diff", &[]).is_none());
    let before = value(
        &out,
        "pg_replication_slots_pg_wal_lsn_diff",
        &[("slot_name", "standby1")],
    )
    .unwrap();
    primary.psql(
        "postgres",
        "INSERT INTO t SELECT generate_series(1, 200000); SELECT pg_switch_wal()",
    );
    let mut out = Vec::new();
    on_primary.collect(&mut out).await.unwrap();
    let after = value(
        &out,
        "pg_replication_slots_pg_wal_lsn_diff",
        &[("slot_name", "standby1")],
    )
    .unwrap();
    assert!(
        after > before + 1_000_000.0,
        "retained WAL grows while the replica is away: {before} → {after}"
    );
}

/// Waits (at most 30 s) until `sql` on `server` prints `want`.
fn wait_for_sql(server: &PgServer, sql: &str, want: &str) {
    support::wait_for(&format!("{sql} printing {want}"), || {
        server.psql("postgres", sql).trim() == want
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_cancelled_on_the_standby_is_counted_as_a_conflict() {
    let primary = PgServer::start();
    primary.psql(
        "postgres",
        "CREATE TABLE t (i int); INSERT INTO t SELECT generate_series(1, 10000)",
    );
    let standby = PgServer::standby_of(&primary, "standby2");
    // The standby cancels a query in the way of replay after 100 ms (default: 30 s).
    standby.configure("max_standby_streaming_delay = 100ms");
    wait_for_sql(&standby, "SELECT count(*) FROM t", "10000");
    let on_standby = collector("replica", &standby);
    let mut out = Vec::new();
    on_standby.collect(&mut out).await.unwrap();
    assert_eq!(
        value(
            &out,
            "pg_stat_database_conflicts_confl_snapshot",
            &[("datname", "postgres")]
        ),
        Some(0.0),
        "no conflict yet"
    );
    // A reader on the standby holds a snapshot that still sees the rows; the primary
    // deletes and vacuums them, and replaying the vacuum conflicts with that snapshot.
    let mut reader = standby.psql_background(
        "postgres",
        "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM t; SELECT pg_sleep(60); COMMIT",
    );
    wait_for_sql(
        &standby,
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' \
         AND wait_event = 'PgSleep' AND pid <> pg_backend_pid()",
        "1",
    );
    primary.psql("postgres", "DELETE FROM t");
    primary.psql("postgres", "VACUUM t");
    collect_until(&on_standby, "the conflict counted", |o| {
        value(
            o,
            "pg_stat_database_conflicts_confl_snapshot",
            &[("datname", "postgres")],
        )
        .is_some_and(|v| v >= 1.0)
    })
    .await;
    let status = reader.wait().unwrap();
    assert!(!status.success(), "the standby cancelled the reader");
}
