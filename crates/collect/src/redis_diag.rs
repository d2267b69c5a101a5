//! Redis diagnostics beyond the exporter's metrics: the slow log (kept across runs, the
//! command's arguments elided unless configured), `LATENCY DOCTOR` and `MEMORY DOCTOR`,
//! and an opt-in big-key sample, on the [`RedisBoard`] the HTTP API serves.
//!
//! The big-key sample walks the connection's database with `SCAN` (`COUNT` per batch),
//! asks `TYPE` and `MEMORY USAGE` for each key in one pipeline, pauses between batches
//! and stops at a key limit, so a large keyspace costs Redis a bounded, spread-out load
//! (the way `redis-cli --memkeys` does it, with a pause); it runs in the background
//! every `every`, not in the collector's run.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::MultiplexedConnection;

use lookout_model::status::{RedisBigKey, RedisBigKeys, RedisDiagnostics, RedisSlowEntry};

/// Most slow-log entries kept per instance (the newest).
const MAX_SLOW_ENTRIES: usize = 1000;
/// Slow-log entries read per run (Redis keeps 128 by default).
pub(crate) const SLOWLOG_READ: usize = 128;
/// Most bytes of a doctor's report kept.
const MAX_REPORT_BYTES: usize = 16 * 1024;
/// Most bytes of a key name kept in a big-key sample (Redis allows 512 MB names).
const MAX_KEY_BYTES: usize = 1024;

/// How the big-key sample runs.
#[derive(Debug, Clone, PartialEq)]
pub struct BigKeysOptions {
    /// How often.
    pub every: Duration,
    /// Most keys looked at per sample.
    pub max_keys: u64,
    /// `SCAN`'s `COUNT` (keys asked for per batch).
    pub batch: usize,
    /// The pause between batches.
    pub pause: Duration,
    /// How many of the largest keys are kept.
    pub top: usize,
}

impl Default for BigKeysOptions {
    fn default() -> Self {
        Self {
            every: Duration::from_secs(600),
            max_keys: 10_000,
            batch: 100,
            pause: Duration::from_millis(10),
            top: 20,
        }
    }
}

/// What the Redis collectors saw last beyond metrics, by instance. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct RedisBoard(Arc<RwLock<BTreeMap<String, RedisDiagnostics>>>);

impl RedisBoard {
    /// Every instance's diagnostics.
    pub fn diagnostics(&self) -> Vec<RedisDiagnostics> {
        self.0
            .read()
            .expect("lock poisoned")
            .values()
            .cloned()
            .collect()
    }

    fn with(&self, instance: &str, f: impl FnOnce(&mut RedisDiagnostics)) {
        let mut m = self.0.write().expect("lock poisoned");
        let d = m
            .entry(instance.to_string())
            .or_insert_with(|| RedisDiagnostics {
                instance: instance.to_string(),
                ..Default::default()
            });
        f(d);
    }

    /// Merges a run's slow-log read (newest first) and the doctors' reports.
    pub(crate) fn update(
        &self,
        instance: &str,
        read: Vec<RedisSlowEntry>,
        latency: String,
        memory: String,
    ) {
        self.with(instance, |d| {
            d.at = now_secs();
            d.latency_doctor = clip(latency);
            d.memory_doctor = clip(memory);
            merge_slowlog(&mut d.slowlog, read);
        });
    }

    pub(crate) fn set_big_keys(&self, instance: &str, keys: RedisBigKeys) {
        self.with(instance, |d| d.big_keys = Some(keys));
    }
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn clip(mut s: String) -> String {
    lookout_model::truncate_utf8(&mut s, MAX_REPORT_BYTES);
    s
}

/// Adds the entries of `read` not kept yet; when Redis's ids went backwards (a restart
/// or `SLOWLOG RESET`), what was kept is dropped first.
fn merge_slowlog(kept: &mut Vec<RedisSlowEntry>, read: Vec<RedisSlowEntry>) {
    let newest_kept = kept.first().map(|e| (e.id, e.time));
    let newest_read = read.first().map(|e| (e.id, e.time));
    if let (Some((kid, ktime)), Some((rid, rtime))) = (newest_kept, newest_read)
        && (rid < kid || (rid == kid && rtime != ktime))
    {
        kept.clear();
    }
    let top = kept.first().map_or(-1, |e| e.id);
    let mut fresh: Vec<RedisSlowEntry> = read.into_iter().filter(|e| e.id > top).collect();
    fresh.append(kept);
    fresh.truncate(MAX_SLOW_ENTRIES);
    *kept = fresh;
}

/// The entries of a `SLOWLOG GET` reply, newest first; arguments kept only when
/// `keep_arguments`.
pub(crate) fn parse_slowlog(v: &redis::Value, keep_arguments: bool) -> Vec<RedisSlowEntry> {
    let redis::Value::Array(entries) = v else {
        return Vec::new();
    };
    let int = |v: Option<&redis::Value>| match v {
        Some(redis::Value::Int(i)) => Some(*i),
        _ => None,
    };
    let text = |v: Option<&redis::Value>| match v {
        Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(redis::Value::SimpleString(s)) => s.clone(),
        _ => String::new(),
    };
    entries
        .iter()
        .filter_map(|e| {
            let redis::Value::Array(e) = e else {
                return None;
            };
            let args: Vec<String> = match e.get(3) {
                Some(redis::Value::Array(a)) => a.iter().map(|x| text(Some(x))).collect(),
                _ => Vec::new(),
            };
            Some(RedisSlowEntry {
                id: int(e.first())?,
                time: int(e.get(1))?,
                duration_seconds: int(e.get(2))? as f64 / 1e6,
                command: args.first().cloned().unwrap_or_default(),
                argument_count: args.len().saturating_sub(1),
                arguments: if keep_arguments {
                    args.into_iter().skip(1).collect()
                } else {
                    Vec::new()
                },
                client: text(e.get(4)),
                client_name: text(e.get(5)),
            })
        })
        .collect()
}

/// A doctor's report (`LATENCY DOCTOR`, `MEMORY DOCTOR`), or why there is none.
pub(crate) async fn doctor(con: &mut MultiplexedConnection, which: &str) -> String {
    let r: redis::RedisResult<redis::Value> =
        redis::cmd(which).arg("DOCTOR").query_async(con).await;
    match r {
        Ok(redis::Value::BulkString(b)) => String::from_utf8_lossy(&b).into_owned(),
        Ok(redis::Value::SimpleString(s)) => s,
        Ok(redis::Value::VerbatimString { text, .. }) => text,
        Ok(other) => format!("unexpected reply: {other:?}"),
        Err(e) => format!("{which} DOCTOR failed: {e}"),
    }
}

/// Samples the connection's database for its largest keys.
pub(crate) async fn big_keys(
    con: &mut MultiplexedConnection,
    db: u32,
    o: &BigKeysOptions,
) -> redis::RedisResult<RedisBigKeys> {
    let mut cursor: u64 = 0;
    let mut scanned = 0u64;
    let mut keys: Vec<RedisBigKey> = Vec::new();
    let complete = loop {
        let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(o.batch.max(1))
            .query_async(con)
            .await?;
        if !batch.is_empty() {
            let mut pipe = redis::pipe();
            for k in &batch {
                pipe.cmd("TYPE").arg(k).cmd("MEMORY").arg("USAGE").arg(k);
            }
            let replies: Vec<redis::Value> = pipe.query_async(con).await?;
            for (k, pair) in batch.iter().zip(replies.chunks(2)) {
                let key_type = match &pair[0] {
                    redis::Value::SimpleString(s) => s.clone(),
                    redis::Value::Okay => "ok".into(),
                    _ => String::new(),
                };
                let bytes = match pair.get(1) {
                    Some(redis::Value::Int(i)) => *i as f64,
                    // Gone since the scan.
                    _ => continue,
                };
                let mut key =
                    String::from_utf8_lossy(&k[..k.len().min(MAX_KEY_BYTES + 4)]).into_owned();
                lookout_model::truncate_utf8(&mut key, MAX_KEY_BYTES);
                keys.push(RedisBigKey {
                    db,
                    key,
                    key_type,
                    bytes,
                });
            }
            scanned += batch.len() as u64;
            keys.sort_by(|a, b| b.bytes.total_cmp(&a.bytes));
            keys.truncate(o.top);
        }
        cursor = next;
        if cursor == 0 {
            break true;
        }
        if scanned >= o.max_keys {
            break false;
        }
        tokio::time::sleep(o.pause).await;
    };
    Ok(RedisBigKeys {
        at: now_secs(),
        scanned,
        complete,
        keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value;

    fn entry(id: i64, time: i64, usec: i64, args: &[&str]) -> Value {
        Value::Array(vec![
            Value::Int(id),
            Value::Int(time),
            Value::Int(usec),
            Value::Array(
                args.iter()
                    .map(|a| Value::BulkString(a.as_bytes().to_vec()))
                    .collect(),
            ),
            Value::BulkString(b"127.0.0.1:5000".to_vec()),
            Value::BulkString(b"worker".to_vec()),
        ])
    }

    #[test]
    fn slow_entries_elide_arguments_unless_asked() {
        let reply = Value::Array(vec![
            entry(7, 1_700_000_000, 25_000, &["SET", "user:1", "secret"]),
            Value::Int(3),
            entry(6, 1_699_999_999, 11_000, &["DEBUG", "SLEEP", "0.011"]),
        ]);
        let e = parse_slowlog(&reply, false);
        assert_eq!(e.len(), 2, "a malformed entry is skipped");
        assert_eq!(e[0].command, "SET");
        assert_eq!(e[0].argument_count, 2);
        assert!(e[0].arguments.is_empty());
        assert_eq!(e[0].duration_seconds, 0.025);
        assert_eq!(e[0].client_name, "worker");
        let kept = parse_slowlog(&reply, true);
        assert_eq!(kept[0].arguments, vec!["user:1", "secret"]);
        assert!(parse_slowlog(&Value::Nil, true).is_empty());
    }

    #[test]
    fn the_kept_slow_log_grows_without_repeats_and_starts_over_after_a_reset() {
        let e = |id: i64, time: i64| RedisSlowEntry {
            id,
            time,
            duration_seconds: 0.1,
            command: "GET".into(),
            arguments: vec![],
            argument_count: 1,
            client: String::new(),
            client_name: String::new(),
        };
        let mut kept = Vec::new();
        merge_slowlog(&mut kept, vec![e(2, 20), e(1, 10)]);
        merge_slowlog(&mut kept, vec![e(4, 40), e(3, 30), e(2, 20)]);
        assert_eq!(kept.iter().map(|x| x.id).collect::<Vec<_>>(), [4, 3, 2, 1]);
        // Ids went back: Redis restarted or the log was reset.
        merge_slowlog(&mut kept, vec![e(0, 50)]);
        assert_eq!(kept.iter().map(|x| x.id).collect::<Vec<_>>(), [0]);
        let many: Vec<_> = (0..1500).rev().map(|i| e(i + 1, 100 + i)).collect();
        merge_slowlog(&mut kept, many);
        assert_eq!(kept.len(), MAX_SLOW_ENTRIES);
        assert_eq!(kept[0].id, 1500);
    }
}
