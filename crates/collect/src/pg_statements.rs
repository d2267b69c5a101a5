//! `pg_stat_statements` as the PostgreSQL collector reads it: cumulative figures for the
//! top statements (postgres_exporter's families) and, Lookout's own, what each statement
//! did over the last interval.
//!
//! Every run reads the view's figures without their text (`pg_stat_statements(false)`:
//! the text lives in a file PostgreSQL reads back on every full read), at most
//! [`MAX_ROWS`] rows, the busiest first. Rows that differ only in `toplevel` are added
//! together, so a statement is one (`datname`, `user`, `queryid`). The difference with
//! the previous run's figures is the interval's work; a statement whose figures went
//! down was reset or evicted and re-admitted, so its figures are the interval's. The
//! first run has nothing to compare with and writes no interval figures.
//!
//! The `top` statements by time spent in the interval are written as gauges whose value
//! is that interval's work (`sum_over_time` over a range adds them up exactly):
//! `pg_stat_statements_interval_{calls,seconds,rows,shared_blks_hit,shared_blks_read}`,
//! with `pg_stat_statements_interval_duration_seconds` the interval's length. The text of
//! the statements written (by either ranking) is read once, by query id, and kept while
//! they stay in the view.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use tokio_postgres::SimpleQueryRow;

use crate::Metric;
use lookout_model::status::Statement;

/// Most rows of `pg_stat_statements` read per run (the extension's own default
/// `pg_stat_statements.max`).
pub(crate) const MAX_ROWS: usize = 5000;
/// Most bytes of a statement's text kept.
const MAX_TEXT_BYTES: usize = 16 * 1024;

/// A statement's identity: database, user, query id.
type Key = (String, String, String);

/// A statement's cumulative figures.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Figures {
    calls: f64,
    seconds: f64,
    rows: f64,
    hit: f64,
    read: f64,
    read_seconds: f64,
    write_seconds: f64,
}

impl Figures {
    fn add(&mut self, o: &Figures) {
        self.calls += o.calls;
        self.seconds += o.seconds;
        self.rows += o.rows;
        self.hit += o.hit;
        self.read += o.read;
        self.read_seconds += o.read_seconds;
        self.write_seconds += o.write_seconds;
    }

    /// What was done since `before`; `self` itself when any figure went down (a reset).
    fn since(&self, before: &Figures) -> Figures {
        let d = Figures {
            calls: self.calls - before.calls,
            seconds: self.seconds - before.seconds,
            rows: self.rows - before.rows,
            hit: self.hit - before.hit,
            read: self.read - before.read,
            read_seconds: self.read_seconds - before.read_seconds,
            write_seconds: self.write_seconds - before.write_seconds,
        };
        let all = [
            d.calls,
            d.seconds,
            d.rows,
            d.hit,
            d.read,
            d.read_seconds,
            d.write_seconds,
        ];
        if all.iter().any(|v| *v < 0.0) {
            *self
        } else {
            d
        }
    }
}

/// The scan: figures without text, the busiest first.
pub(crate) fn scan_sql(version: u32) -> String {
    let (time_col, read_col, write_col) = match version {
        v if v >= 170000 => (
            "total_exec_time",
            "shared_blk_read_time",
            "shared_blk_write_time",
        ),
        v if v >= 130000 => ("total_exec_time", "blk_read_time", "blk_write_time"),
        _ => ("total_time", "blk_read_time", "blk_write_time"),
    };
    format!(
        "SELECT pg_get_userbyid(s.userid) AS user, d.datname, s.queryid::text AS queryid, \
         s.calls::float8 AS calls, ({time_col} / 1000.0)::float8 AS seconds, \
         s.rows::float8 AS rows, s.shared_blks_hit::float8 AS hit, \
         s.shared_blks_read::float8 AS read, \
         ({read_col} / 1000.0)::float8 AS read_seconds, \
         ({write_col} / 1000.0)::float8 AS write_seconds \
         FROM pg_stat_statements(false) s JOIN pg_database d ON d.oid = s.dbid \
         WHERE s.queryid IS NOT NULL ORDER BY {time_col} DESC LIMIT {MAX_ROWS}"
    )
}

/// The texts of the statements with these query ids (numbers only: anything else in
/// `ids` is left out, so nothing but digits reaches the SQL).
pub(crate) fn text_sql<'a>(ids: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let ids: Vec<String> = ids
        .into_iter()
        .filter_map(|i| i.parse::<i64>().ok())
        .map(|i| i.to_string())
        .collect();
    if ids.is_empty() {
        return None;
    }
    Some(format!(
        "SELECT DISTINCT ON (s.queryid) s.queryid::text AS queryid, s.query \
         FROM pg_stat_statements(true) s WHERE s.queryid IN ({})",
        ids.join(", ")
    ))
}

/// What the collector remembers between runs.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    /// The last scan's figures.
    before: HashMap<Key, Figures>,
    /// When it was taken.
    at: Option<Instant>,
    /// Statement texts by query id.
    texts: HashMap<String, String>,
}

/// One run's outcome: the statements whose text is wanted and is not known yet.
pub(crate) struct Update {
    /// Query ids without a known text.
    pub(crate) missing: Vec<String>,
    /// The statements to publish (top by total time, then top by interval time).
    wanted: Vec<(Key, Figures)>,
}

impl Tracker {
    /// Takes one scan's rows: writes the cumulative families of the `top` statements by
    /// total time and the interval gauges of the `top` by interval time to `out`.
    pub(crate) fn update(
        &mut self,
        rows: &[SimpleQueryRow],
        top: usize,
        now: Instant,
        out: &mut Vec<Metric>,
    ) -> Update {
        let mut scan: BTreeMap<Key, Figures> = BTreeMap::new();
        for r in rows {
            let text = |c: &str| r.get(c).unwrap_or("").to_string();
            let num = |c: &str| r.get(c).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            let f = Figures {
                calls: num("calls"),
                seconds: num("seconds"),
                rows: num("rows"),
                hit: num("hit"),
                read: num("read"),
                read_seconds: num("read_seconds"),
                write_seconds: num("write_seconds"),
            };
            scan.entry((text("datname"), text("user"), text("queryid")))
                .or_default()
                .add(&f);
        }
        let mut by_total: Vec<(&Key, &Figures)> = scan.iter().collect();
        by_total.sort_by(|a, b| b.1.seconds.total_cmp(&a.1.seconds));
        by_total.truncate(top);
        let mut wanted: Vec<(Key, Figures)> = Vec::new();
        for (k, f) in &by_total {
            let labels = [
                ("user", k.1.as_str()),
                ("datname", k.0.as_str()),
                ("queryid", k.2.as_str()),
            ];
            for (name, v) in [
                ("calls_total", f.calls),
                ("seconds_total", f.seconds),
                ("rows_total", f.rows),
                ("block_read_seconds_total", f.read_seconds),
                ("block_write_seconds_total", f.write_seconds),
            ] {
                out.push(Metric::new(
                    &format!("pg_stat_statements_{name}"),
                    &labels,
                    v,
                ));
            }
            wanted.push(((*k).clone(), **f));
        }
        if let Some(at) = self.at {
            let mut deltas: Vec<(&Key, Figures)> = scan
                .iter()
                .map(|(k, f)| (k, self.before.get(k).map_or(*f, |b| f.since(b))))
                .filter(|(_, d)| d.calls > 0.0)
                .collect();
            deltas.sort_by(|a, b| b.1.seconds.total_cmp(&a.1.seconds));
            deltas.truncate(top);
            out.push(Metric::new(
                "pg_stat_statements_interval_duration_seconds",
                &[],
                now.duration_since(at).as_secs_f64(),
            ));
            for (k, d) in &deltas {
                let labels = [
                    ("user", k.1.as_str()),
                    ("datname", k.0.as_str()),
                    ("queryid", k.2.as_str()),
                ];
                for (name, v) in [
                    ("calls", d.calls),
                    ("seconds", d.seconds),
                    ("rows", d.rows),
                    ("shared_blks_hit", d.hit),
                    ("shared_blks_read", d.read),
                ] {
                    out.push(Metric::new(
                        &format!("pg_stat_statements_interval_{name}"),
                        &labels,
                        v,
                    ));
                }
                if !wanted.iter().any(|(w, _)| w == *k) {
                    wanted.push(((*k).clone(), scan[*k]));
                }
            }
        }
        // Texts of statements gone from the view are dropped.
        let present: std::collections::HashSet<&str> = scan.keys().map(|k| k.2.as_str()).collect();
        self.texts.retain(|id, _| present.contains(id.as_str()));
        let mut missing: Vec<String> = wanted
            .iter()
            .map(|(k, _)| k.2.clone())
            .filter(|id| !self.texts.contains_key(id))
            .collect();
        missing.sort();
        missing.dedup();
        self.before = scan.into_iter().collect();
        self.at = Some(now);
        Update { missing, wanted }
    }

    /// Takes the rows of [`text_sql`].
    pub(crate) fn add_texts(&mut self, rows: &[SimpleQueryRow]) {
        for r in rows {
            let (Some(id), Some(q)) = (r.get("queryid"), r.get("query")) else {
                continue;
            };
            let mut q = q.to_string();
            lookout_model::truncate_utf8(&mut q, MAX_TEXT_BYTES);
            self.texts.insert(id.to_string(), q);
        }
    }

    /// The statements of `update` with their cumulative figures and text, by total
    /// time, the largest first.
    pub(crate) fn statements(&self, instance: &str, update: &Update) -> Vec<Statement> {
        let mut v: Vec<Statement> = update
            .wanted
            .iter()
            .map(|((datname, user, queryid), f)| Statement {
                instance: instance.to_string(),
                datname: datname.clone(),
                user: user.clone(),
                queryid: queryid.clone(),
                query: self.texts.get(queryid).cloned().unwrap_or_default(),
                calls: f.calls,
                total_seconds: f.seconds,
                mean_seconds: if f.calls > 0.0 {
                    f.seconds / f.calls
                } else {
                    0.0
                },
                rows: f.rows,
            })
            .collect();
        v.sort_by(|a, b| b.total_seconds.total_cmp(&a.total_seconds));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reset_statement_counts_its_figures_as_the_interval() {
        let before = Figures {
            calls: 10.0,
            seconds: 2.0,
            ..Figures::default()
        };
        let grew = Figures {
            calls: 15.0,
            seconds: 3.0,
            ..Figures::default()
        };
        let d = grew.since(&before);
        assert_eq!((d.calls, d.seconds), (5.0, 1.0));
        let reset = Figures {
            calls: 3.0,
            seconds: 0.5,
            ..Figures::default()
        };
        assert_eq!(reset.since(&before), reset);
    }

    #[test]
    fn only_digits_reach_the_text_query() {
        let sql = text_sql(["123", "-45", "1; DROP TABLE x", "abc"]).unwrap();
        assert!(sql.ends_with("IN (123, -45)"), "{sql}");
        assert!(text_sql(["x"]).is_none());
    }
}
