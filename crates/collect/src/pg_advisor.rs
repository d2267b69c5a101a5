//! PostgreSQL maintenance: transaction-id wraparound, vacuum and analyze debt, estimated
//! bloat of tables and B-tree indexes, unused and duplicate indexes — read every
//! [`ADVISOR_EVERY`] (the catalog queries are heavier than the rest of a run) and turned
//! into advice: what to do, on what, why, with the numbers behind each line.
//!
//! Every database's `age(datfrozenxid)` and `mxid_age(datminmxid)` are metrics on every
//! run (`pg_database_xid_age`, `pg_database_mxid_age`); the relations are those of the
//! database the collector connects to (PostgreSQL's catalogs are per database).
//!
//! Bloat is an estimate, as every tool's is without reading the pages: a table's
//! expected size is its row count (`reltuples`) times the row's width from the planner's
//! statistics (`pg_stats.avg_width`, plus the 24-byte tuple header and 4-byte line
//! pointer) over its fillfactor; a B-tree index's is its tuple count times the key's
//! width plus an 8-byte index tuple header and line pointer, over the default 90%
//! leaf fill. Relations never analysed have no widths and get no bloat estimate.
//!
//! Thresholds (so that a healthy, busy database is advised nothing):
//! - wraparound: a database older than half `autovacuum_freeze_max_age` (warning), or
//!   than a billion transactions, half the 2³¹ limit (critical); a table older than
//!   `autovacuum_freeze_max_age` (autovacuum should already have frozen it);
//! - vacuum: more than 10,000 dead tuples making up more than 20% of the table;
//! - analyze: more than 10,000 rows changed since the last analyze, over 20% of the
//!   table, and no analyze for a day (or ever);
//! - bloat: more than 10 MiB estimated waste making up more than 30% of a table, 50% of
//!   an index;
//! - unused index: no scan since the statistics were reset, larger than 1 MiB, not
//!   backing a primary key or unique constraint;
//! - duplicate index: same table, columns, operator classes, expressions and predicate
//!   as another (the one kept backs a constraint, else is the most scanned, else the
//!   first by name).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_postgres::SimpleQueryRow;

use lookout_model::status::PgAdvice;

/// How often the catalog is read for advice.
pub(crate) const ADVISOR_EVERY: Duration = Duration::from_secs(300);

/// Most tables and indexes read (the largest first).
const MAX_RELATIONS: usize = 1000;

const MIB: f64 = 1024.0 * 1024.0;

/// Every database's transaction-id ages, and the freeze setting they are judged by.
pub(crate) const DATABASES_SQL: &str = "SELECT datname, age(datfrozenxid)::float8 AS xid_age, \
     mxid_age(datminmxid)::float8 AS mxid_age, \
     current_setting('autovacuum_freeze_max_age')::float8 AS freeze_max_age \
     FROM pg_database WHERE datallowconn";

/// The connected database's tables, the largest first.
pub(crate) fn tables_sql() -> String {
    format!(
        "SELECT current_database() AS datname, n.nspname AS schemaname, c.relname, \
         age(c.relfrozenxid)::float8 AS xid_age, \
         coalesce(s.n_live_tup, 0)::float8 AS live, coalesce(s.n_dead_tup, 0)::float8 AS dead, \
         coalesce(s.n_mod_since_analyze, 0)::float8 AS modified, \
         extract(epoch FROM now() - greatest(s.last_vacuum, s.last_autovacuum))::float8 AS vacuum_age, \
         extract(epoch FROM now() - greatest(s.last_analyze, s.last_autoanalyze))::float8 AS analyze_age, \
         (c.relpages::float8 * current_setting('block_size')::float8) AS heap_bytes, \
         c.reltuples::float8 AS tuples, \
         (SELECT sum(st.avg_width) FROM pg_stats st WHERE st.schemaname = n.nspname \
          AND st.tablename = c.relname)::float8 AS row_width, \
         coalesce((SELECT option_value::float8 FROM pg_options_to_table(c.reloptions) \
          WHERE option_name = 'fillfactor'), 100) AS fillfactor, \
         current_setting('autovacuum_freeze_max_age')::float8 AS freeze_max_age \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid \
         WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
         AND n.nspname NOT LIKE 'pg_toast%' ORDER BY c.relpages DESC LIMIT {MAX_RELATIONS}"
    )
}

/// The connected database's indexes, the largest first.
pub(crate) fn indexes_sql() -> String {
    format!(
        "SELECT current_database() AS datname, n.nspname AS schemaname, t.relname AS tablename, \
         i.relname AS indexname, coalesce(s.idx_scan, 0)::float8 AS scans, \
         (i.relpages::float8 * current_setting('block_size')::float8) AS bytes, \
         i.reltuples::float8 AS tuples, (x.indisunique OR x.indisprimary)::text AS is_unique, \
         am.amname AS method, (x.indexprs IS NOT NULL)::text AS has_expressions, \
         x.indrelid::text || ' ' || x.indkey::text || ' ' || x.indclass::text || ' ' || \
         coalesce(pg_get_expr(x.indexprs, x.indrelid), '') || ' ' || \
         coalesce(pg_get_expr(x.indpred, x.indrelid), '') AS signature, \
         (SELECT sum(st.avg_width) FROM pg_attribute a JOIN pg_stats st ON st.schemaname = n.nspname \
          AND st.tablename = t.relname AND st.attname = a.attname \
          WHERE a.attrelid = t.oid AND a.attnum = ANY (x.indkey))::float8 AS key_width \
         FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
         JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace \
         JOIN pg_am am ON am.oid = i.relam \
         LEFT JOIN pg_stat_user_indexes s ON s.indexrelid = x.indexrelid \
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') \
         AND n.nspname NOT LIKE 'pg_toast%' ORDER BY i.relpages DESC LIMIT {MAX_RELATIONS}"
    )
}

/// A database's transaction-id ages.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DatabaseFacts {
    pub(crate) datname: String,
    pub(crate) xid_age: f64,
    pub(crate) mxid_age: f64,
    pub(crate) freeze_max_age: f64,
}

/// What the advice about one table is made of.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TableFacts {
    pub(crate) datname: String,
    pub(crate) schema: String,
    pub(crate) name: String,
    pub(crate) xid_age: f64,
    pub(crate) live: f64,
    pub(crate) dead: f64,
    pub(crate) modified: f64,
    pub(crate) vacuum_age: Option<f64>,
    pub(crate) analyze_age: Option<f64>,
    pub(crate) heap_bytes: f64,
    pub(crate) tuples: f64,
    pub(crate) row_width: Option<f64>,
    pub(crate) fillfactor: f64,
    pub(crate) freeze_max_age: f64,
}

/// What the advice about one index is made of.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct IndexFacts {
    pub(crate) datname: String,
    pub(crate) schema: String,
    pub(crate) table: String,
    pub(crate) name: String,
    pub(crate) scans: f64,
    pub(crate) bytes: f64,
    pub(crate) tuples: f64,
    pub(crate) unique: bool,
    pub(crate) btree: bool,
    pub(crate) expressions: bool,
    pub(crate) signature: String,
    pub(crate) key_width: Option<f64>,
}

fn f(r: &SimpleQueryRow, c: &str) -> Option<f64> {
    r.get(c)
        .and_then(|v| v.parse().ok())
        .filter(|v: &f64| v.is_finite())
}

fn s(r: &SimpleQueryRow, c: &str) -> String {
    r.get(c).unwrap_or("").to_string()
}

pub(crate) fn databases(rows: &[SimpleQueryRow]) -> Vec<DatabaseFacts> {
    rows.iter()
        .map(|r| DatabaseFacts {
            datname: s(r, "datname"),
            xid_age: f(r, "xid_age").unwrap_or(0.0),
            mxid_age: f(r, "mxid_age").unwrap_or(0.0),
            freeze_max_age: f(r, "freeze_max_age").unwrap_or(200_000_000.0),
        })
        .collect()
}

pub(crate) fn tables(rows: &[SimpleQueryRow]) -> Vec<TableFacts> {
    rows.iter()
        .map(|r| TableFacts {
            datname: s(r, "datname"),
            schema: s(r, "schemaname"),
            name: s(r, "relname"),
            xid_age: f(r, "xid_age").unwrap_or(0.0),
            live: f(r, "live").unwrap_or(0.0),
            dead: f(r, "dead").unwrap_or(0.0),
            modified: f(r, "modified").unwrap_or(0.0),
            vacuum_age: f(r, "vacuum_age"),
            analyze_age: f(r, "analyze_age"),
            heap_bytes: f(r, "heap_bytes").unwrap_or(0.0),
            tuples: f(r, "tuples").unwrap_or(-1.0),
            row_width: f(r, "row_width"),
            fillfactor: f(r, "fillfactor").unwrap_or(100.0),
            freeze_max_age: f(r, "freeze_max_age").unwrap_or(200_000_000.0),
        })
        .collect()
}

pub(crate) fn indexes(rows: &[SimpleQueryRow]) -> Vec<IndexFacts> {
    rows.iter()
        .map(|r| IndexFacts {
            datname: s(r, "datname"),
            schema: s(r, "schemaname"),
            table: s(r, "tablename"),
            name: s(r, "indexname"),
            scans: f(r, "scans").unwrap_or(0.0),
            bytes: f(r, "bytes").unwrap_or(0.0),
            tuples: f(r, "tuples").unwrap_or(-1.0),
            unique: r.get("is_unique") == Some("true"),
            btree: r.get("method") == Some("btree"),
            expressions: r.get("has_expressions") == Some("true"),
            signature: s(r, "signature"),
            key_width: f(r, "key_width"),
        })
        .collect()
}

/// A table's estimated wasted bytes, when its statistics allow an estimate.
fn table_bloat(t: &TableFacts) -> Option<f64> {
    let width = t.row_width?;
    if t.tuples < 0.0 || t.heap_bytes <= 0.0 {
        return None;
    }
    // Tuple header (23 bytes, aligned to 24) + data aligned to 8 + line pointer.
    let row = 24.0 + (width / 8.0).ceil() * 8.0 + 4.0;
    let fill = (t.fillfactor / 100.0).clamp(0.1, 1.0);
    let expected = (t.tuples * row / fill).max(8192.0);
    Some((t.heap_bytes - expected).max(0.0))
}

/// A B-tree index's estimated wasted bytes, when an estimate is possible.
fn index_bloat(i: &IndexFacts) -> Option<f64> {
    let width = i.key_width?;
    if !i.btree || i.expressions || i.tuples < 0.0 || i.bytes <= 0.0 {
        return None;
    }
    // Index tuple header (8) + key aligned to 8 + line pointer (4), leaves 90% full, and
    // the metapage.
    let row = 8.0 + (width / 8.0).ceil() * 8.0 + 4.0;
    let expected = i.tuples * row / 0.9 + 8192.0;
    Some((i.bytes - expected).max(0.0))
}

fn advice(
    (instance, datname): (&str, &str),
    kind: &str,
    severity: &str,
    target: String,
    action: String,
    reason: String,
    figures: &[(&str, f64)],
) -> PgAdvice {
    PgAdvice {
        instance: instance.to_string(),
        datname: datname.to_string(),
        kind: kind.to_string(),
        severity: severity.to_string(),
        target,
        action,
        reason,
        figures: figures
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// A relation's name as SQL: each part double-quoted.
fn ident(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

/// The advice the facts call for, the most severe first.
pub(crate) fn advise(
    instance: &str,
    dbs: &[DatabaseFacts],
    tables: &[TableFacts],
    indexes: &[IndexFacts],
) -> Vec<PgAdvice> {
    let mut out = Vec::new();
    for d in dbs {
        let warn = d.freeze_max_age / 2.0;
        if d.xid_age > warn || d.xid_age > 1e9 {
            let critical = d.xid_age > 1e9;
            out.push(advice(
                (instance, &d.datname),
                "wraparound",
                if critical { "critical" } else { "warning" },
                d.datname.clone(),
                format!(
                    "VACUUM (FREEZE, VERBOSE) every table of database {}, the oldest first (vacuumdb --freeze --jobs=4 -d {})",
                    d.datname, d.datname
                ),
                format!(
                    "age(datfrozenxid) is {:.0} transactions: {:.0}% of the way to the 2,147,483,647 wraparound limit, where PostgreSQL stops accepting writes",
                    d.xid_age,
                    d.xid_age / 2_147_483_647.0 * 100.0
                ),
                &[
                    ("xid_age", d.xid_age),
                    ("mxid_age", d.mxid_age),
                    ("autovacuum_freeze_max_age", d.freeze_max_age),
                ],
            ));
        }
    }
    for t in tables {
        let name = ident(&[&t.schema, &t.name]);
        let total = t.live + t.dead;
        if t.xid_age > t.freeze_max_age {
            out.push(advice(
                (instance, &t.datname),
                "wraparound",
                "warning",
                name.clone(),
                format!("VACUUM (FREEZE, VERBOSE) {name};"),
                format!(
                    "age(relfrozenxid) is {:.0}, past autovacuum_freeze_max_age ({:.0}): autovacuum has not managed to freeze it (long transactions or a stale replication slot hold it back?)",
                    t.xid_age, t.freeze_max_age
                ),
                &[("xid_age", t.xid_age), ("autovacuum_freeze_max_age", t.freeze_max_age)],
            ));
        }
        if t.dead > 10_000.0 && total > 0.0 && t.dead / total > 0.2 {
            out.push(advice(
                (instance, &t.datname),
                "vacuum",
                "warning",
                name.clone(),
                format!("VACUUM (ANALYZE, VERBOSE) {name};"),
                format!(
                    "{:.0} dead tuples, {:.0}% of the table; last vacuum {}",
                    t.dead,
                    t.dead / total * 100.0,
                    ago(t.vacuum_age)
                ),
                &[
                    ("dead_tuples", t.dead),
                    ("live_tuples", t.live),
                    ("dead_ratio", t.dead / total),
                    ("seconds_since_vacuum", t.vacuum_age.unwrap_or(-1.0)),
                ],
            ));
        }
        if t.modified > 10_000.0
            && t.modified > 0.2 * t.live
            && t.analyze_age.is_none_or(|a| a > 86_400.0)
        {
            out.push(advice(
                (instance, &t.datname),
                "analyze",
                "info",
                name.clone(),
                format!("ANALYZE VERBOSE {name};"),
                format!(
                    "{:.0} rows changed since the last analyze ({}): the planner's statistics are stale",
                    t.modified,
                    ago(t.analyze_age)
                ),
                &[
                    ("modified_since_analyze", t.modified),
                    ("live_tuples", t.live),
                    ("seconds_since_analyze", t.analyze_age.unwrap_or(-1.0)),
                ],
            ));
        }
        if let Some(waste) = table_bloat(t)
            && waste > 10.0 * MIB
            && waste / t.heap_bytes > 0.3
        {
            out.push(advice(
                (instance, &t.datname),
                "table_bloat",
                "warning",
                name.clone(),
                format!(
                    "pg_repack --table={} (online), or VACUUM (FULL, ANALYZE) {name}; (locks the table)",
                    t.name
                ),
                format!(
                    "about {:.0} MiB of its {:.0} MiB heap ({:.0}%) is estimated to be empty space",
                    waste / MIB,
                    t.heap_bytes / MIB,
                    waste / t.heap_bytes * 100.0
                ),
                &[
                    ("heap_bytes", t.heap_bytes),
                    ("estimated_bloat_bytes", waste),
                    ("estimated_bloat_ratio", waste / t.heap_bytes),
                    ("tuples", t.tuples),
                ],
            ));
        }
    }
    // Duplicates: of indexes with one signature, the one backing a constraint, else the
    // most scanned, else the first by name is kept.
    let mut groups: BTreeMap<&str, Vec<&IndexFacts>> = BTreeMap::new();
    for i in indexes.iter().filter(|i| !i.signature.is_empty()) {
        groups.entry(&i.signature).or_default().push(i);
    }
    let mut keeper: BTreeMap<&str, &IndexFacts> = BTreeMap::new();
    for (sig, g) in &groups {
        let mut g = g.clone();
        g.sort_by(|a, b| {
            (b.unique, b.scans)
                .partial_cmp(&(a.unique, a.scans))
                .unwrap_or(std::cmp::Ordering::Equal)
                .then_with(|| (&a.schema, &a.name).cmp(&(&b.schema, &b.name)))
        });
        keeper.insert(sig, g[0]);
    }
    let mut sorted: Vec<&IndexFacts> = indexes.iter().collect();
    sorted.sort_by(|a, b| (&a.schema, &a.name).cmp(&(&b.schema, &b.name)));
    for i in sorted {
        let name = ident(&[&i.schema, &i.name]);
        let table = ident(&[&i.schema, &i.table]);
        if let Some(first) = keeper.get(i.signature.as_str())
            && !std::ptr::eq(*first, i)
        {
            out.push(advice(
                (instance, &i.datname),
                "duplicate_index",
                "warning",
                name.clone(),
                format!("DROP INDEX CONCURRENTLY {name};"),
                format!(
                    "it indexes {table} exactly as {} does (same columns, operator classes, expressions and predicate)",
                    ident(&[&first.schema, &first.name])
                ),
                &[("bytes", i.bytes), ("scans", i.scans)],
            ));
        }
        if i.scans == 0.0 && !i.unique && i.bytes > MIB {
            out.push(advice(
                (instance, &i.datname),
                "unused_index",
                "info",
                name.clone(),
                format!("DROP INDEX CONCURRENTLY {name};"),
                format!(
                    "never scanned since the statistics were reset, yet {:.1} MiB to keep up to date on every write to {table} (check replicas before dropping)",
                    i.bytes / MIB
                ),
                &[("bytes", i.bytes), ("scans", i.scans)],
            ));
        }
        if let Some(waste) = index_bloat(i)
            && waste > 10.0 * MIB
            && waste / i.bytes > 0.5
        {
            out.push(advice(
                (instance, &i.datname),
                "index_bloat",
                "warning",
                name.clone(),
                format!("REINDEX INDEX CONCURRENTLY {name};"),
                format!(
                    "about {:.0} MiB of its {:.0} MiB ({:.0}%) is estimated to be empty space",
                    waste / MIB,
                    i.bytes / MIB,
                    waste / i.bytes * 100.0
                ),
                &[
                    ("bytes", i.bytes),
                    ("estimated_bloat_bytes", waste),
                    ("estimated_bloat_ratio", waste / i.bytes),
                ],
            ));
        }
    }
    let rank = |s: &str| match s {
        "critical" => 0,
        "warning" => 1,
        _ => 2,
    };
    out.sort_by_key(|a| rank(&a.severity));
    out
}

fn ago(seconds: Option<f64>) -> String {
    match seconds {
        None => "never".to_string(),
        Some(s) if s < 3600.0 => format!("{:.0} minutes ago", s / 60.0),
        Some(s) if s < 172_800.0 => format!("{:.1} hours ago", s / 3600.0),
        Some(s) => format!("{:.0} days ago", s / 86_400.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str) -> TableFacts {
        TableFacts {
            datname: "app".into(),
            schema: "public".into(),
            name: name.into(),
            xid_age: 1000.0,
            live: 1_000_000.0,
            dead: 1000.0,
            modified: 100.0,
            vacuum_age: Some(600.0),
            analyze_age: Some(600.0),
            heap_bytes: 1_000_000.0 * 72.0,
            tuples: 1_000_000.0,
            row_width: Some(40.0),
            fillfactor: 100.0,
            freeze_max_age: 200_000_000.0,
        }
    }

    #[test]
    fn a_healthy_database_is_advised_nothing() {
        let db = DatabaseFacts {
            datname: "app".into(),
            xid_age: 5_000_000.0,
            mxid_age: 10.0,
            freeze_max_age: 200_000_000.0,
        };
        let idx = IndexFacts {
            datname: "app".into(),
            schema: "public".into(),
            table: "t".into(),
            name: "t_pkey".into(),
            scans: 0.0,
            // What PostgreSQL builds for a million int4 keys.
            bytes: 22.5 * MIB,
            tuples: 1_000_000.0,
            unique: true,
            btree: true,
            expressions: false,
            signature: "1 1 1978  ".into(),
            key_width: Some(4.0),
        };
        assert_eq!(advise("main", &[db], &[table("t")], &[idx]), vec![]);
    }

    #[test]
    fn each_problem_is_named_with_its_numbers() {
        let old = DatabaseFacts {
            datname: "app".into(),
            xid_age: 1.2e9,
            mxid_age: 10.0,
            freeze_max_age: 200_000_000.0,
        };
        let mut dead = table("dead");
        dead.dead = 400_000.0;
        dead.live = 600_000.0;
        dead.vacuum_age = None;
        let mut bloated = table("bloated");
        bloated.tuples = 100_000.0;
        bloated.heap_bytes = 100.0 * MIB;
        let mut stale = table("stale \"x\"");
        stale.modified = 500_000.0;
        stale.analyze_age = None;
        let plain = IndexFacts {
            datname: "app".into(),
            schema: "public".into(),
            table: "t".into(),
            name: "a_idx".into(),
            scans: 10.0,
            bytes: 2.0 * MIB,
            tuples: 1000.0,
            unique: false,
            btree: true,
            expressions: false,
            signature: "7 2 1978  ".into(),
            key_width: Some(4.0),
        };
        let twin = IndexFacts {
            name: "b_idx".into(),
            scans: 0.0,
            ..plain.clone()
        };
        let bloated_idx = IndexFacts {
            name: "c_idx".into(),
            signature: "7 3 1978  ".into(),
            bytes: 40.0 * MIB,
            tuples: 10_000.0,
            ..plain.clone()
        };
        let a = advise(
            "main",
            &[old],
            &[dead, bloated, stale],
            &[twin, plain, bloated_idx],
        );
        let kinds: Vec<(&str, &str)> = a
            .iter()
            .map(|x| (x.kind.as_str(), x.target.as_str()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("wraparound", "app"),
                ("vacuum", "\"public\".\"dead\""),
                ("table_bloat", "\"public\".\"bloated\""),
                ("duplicate_index", "\"public\".\"b_idx\""),
                ("index_bloat", "\"public\".\"c_idx\""),
                ("analyze", "\"public\".\"stale \"\"x\"\"\""),
                ("unused_index", "\"public\".\"b_idx\""),
            ]
        );
        assert_eq!(a[0].severity, "critical");
        assert!(a[0].reason.contains("56%"), "{}", a[0].reason);
        assert_eq!(
            a[1].action,
            "VACUUM (ANALYZE, VERBOSE) \"public\".\"dead\";"
        );
        assert_eq!(a[1].figures["dead_ratio"], 0.4);
        assert!(a[1].reason.contains("never"));
        assert!(a[2].figures["estimated_bloat_ratio"] > 0.9);
        assert!(
            a[3].reason.contains("\"public\".\"a_idx\""),
            "{}",
            a[3].reason
        );
    }
}
