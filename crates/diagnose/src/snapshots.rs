//! State snapshots: what the system looked like at a moment (taken on demand or when an
//! alert starts firing) kept as JSON documents in the data directory, one file each
//! (`<id>.json`, written atomically), with a retention by age and count.
//!
//! A snapshot is a header (id, time, why) and named sections (`processes`, `postgres`,
//! `redis`, `report`, …) whose content the taker decides: the store keeps documents, not
//! a schema, so a snapshot written by an older Lookout still reads. A damaged file costs
//! only itself: it is skipped in the list (and logged by the caller through the error)
//! and refused by name when asked for.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::Error;

/// Largest snapshot file read back.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// How long snapshots are kept, and how many.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotOptions {
    /// Older ones are deleted.
    pub retention: Duration,
    /// Beyond this many, the oldest are deleted.
    pub max_snapshots: usize,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(7 * 86_400),
            max_snapshots: 200,
        }
    }
}

/// Why a snapshot was taken.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Reason {
    /// `manual` or `alert`.
    pub kind: String,
    /// The alert's labels, when an alert triggered it.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// A note given with a manual snapshot.
    #[serde(default)]
    pub note: String,
}

/// A snapshot.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    /// Its id (digits, lowercase hex and dashes).
    pub id: String,
    /// When it was taken (Unix seconds).
    pub at: f64,
    /// Why.
    pub reason: Reason,
    /// What was seen, by section.
    pub sections: BTreeMap<String, serde_json::Value>,
    /// What could not be read, in words.
    #[serde(default)]
    pub errors: Vec<String>,
}

/// A snapshot in the list: its header.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Summary {
    /// Its id.
    pub id: String,
    /// When it was taken (Unix seconds).
    pub at: f64,
    /// Why.
    pub reason: Reason,
    /// The bottleneck report's performance score, when it has one.
    pub performance_score: Option<f64>,
}

impl Snapshot {
    /// Its header.
    pub fn summary(&self) -> Summary {
        Summary {
            id: self.id.clone(),
            at: self.at,
            reason: self.reason.clone(),
            performance_score: self
                .sections
                .get("report")
                .and_then(|r| r.get("performance_score"))
                .and_then(serde_json::Value::as_f64),
        }
    }
}

/// The snapshot directory.
#[derive(Debug)]
pub struct SnapshotStore {
    dir: PathBuf,
    opts: SnapshotOptions,
}

/// Whether `id` can name a snapshot file (no path tricks).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b'-')
}

/// An id for a snapshot taken at `at_ms` for `key` (an alert's fingerprint, or anything
/// unique for manual ones): the time first, so ids sort by time.
pub fn new_id(at_ms: i64, key: u64) -> String {
    format!("{:013}-{:016x}", at_ms.max(0), key)
}

impl SnapshotStore {
    /// Opens (creating) the directory.
    pub fn open(dir: &Path, opts: SnapshotOptions) -> Result<Self, Error> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Store(format!("{}: {e}", dir.display())))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            opts,
        })
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Writes `s` (replacing one with the same id), then applies the retention.
    pub fn save(&self, s: &Snapshot, now_secs: f64) -> Result<(), Error> {
        if !valid_id(&s.id) {
            return Err(Error::Invalid(format!("invalid snapshot id {:?}", s.id)));
        }
        let bytes = serde_json::to_vec(s).map_err(|e| Error::Store(e.to_string()))?;
        lookout_model::durable::replace_file(&self.path(&s.id), &bytes)
            .map_err(|e| Error::Store(format!("writing snapshot {}: {e}", s.id)))?;
        self.prune(now_secs);
        Ok(())
    }

    /// The snapshot `id`: `None` when there is none, an error when its file is damaged.
    pub fn get(&self, id: &str) -> Result<Option<Snapshot>, Error> {
        if !valid_id(id) {
            return Err(Error::Invalid(format!("invalid snapshot id {id:?}")));
        }
        let path = self.path(id);
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::Store(format!("snapshot {id}: {e}"))),
        };
        if meta.len() > MAX_FILE_BYTES {
            return Err(Error::Store(format!(
                "snapshot {id} is damaged: {} bytes, more than a snapshot can hold",
                meta.len()
            )));
        }
        let bytes =
            std::fs::read(&path).map_err(|e| Error::Store(format!("snapshot {id}: {e}")))?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Store(format!("snapshot {id} is damaged: {e}")))
    }

    /// Every readable snapshot's header, the newest first, and the damaged ones' errors.
    pub fn list(&self) -> (Vec<Summary>, Vec<String>) {
        let mut out = Vec::new();
        let mut damaged = Vec::new();
        for id in self.ids() {
            match self.get(&id) {
                Ok(Some(s)) => out.push(s.summary()),
                Ok(None) => {}
                Err(e) => damaged.push(e.to_string()),
            }
        }
        out.sort_by(|a, b| b.at.total_cmp(&a.at).then_with(|| b.id.cmp(&a.id)));
        (out, damaged)
    }

    /// The ids of the files in the directory, sorted (so by time).
    fn ids(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut ids: Vec<String> = rd
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let id = name.strip_suffix(".json")?;
                valid_id(id).then(|| id.to_string())
            })
            .collect();
        ids.sort();
        ids
    }

    /// Deletes snapshots past the retention: older than it (by the time in their id),
    /// and the oldest beyond the count.
    pub fn prune(&self, now_secs: f64) {
        let ids = self.ids();
        let oldest_kept_ms = ((now_secs - self.opts.retention.as_secs_f64()) * 1000.0) as i64;
        let excess = ids.len().saturating_sub(self.opts.max_snapshots);
        for (k, id) in ids.iter().enumerate() {
            let t: i64 = id
                .split('-')
                .next()
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            if k < excess || t < oldest_kept_ms {
                let _ = std::fs::remove_file(self.path(id));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: &str, at: f64) -> Snapshot {
        let mut sections = BTreeMap::new();
        sections.insert(
            "report".to_string(),
            serde_json::json!({"performance_score": 42.0}),
        );
        Snapshot {
            id: id.to_string(),
            at,
            reason: Reason {
                kind: "manual".into(),
                ..Default::default()
            },
            sections,
            errors: vec![],
        }
    }

    #[test]
    fn snapshots_round_trip_and_the_retention_applies() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(
            dir.path(),
            SnapshotOptions {
                retention: Duration::from_secs(3600),
                max_snapshots: 2,
            },
        )
        .unwrap();
        let now = 1_800_000_000.0;
        let ids: Vec<String> = (0..3)
            .map(|k| new_id((now as i64 - 300 + k * 100) * 1000, k as u64))
            .collect();
        for (k, id) in ids.iter().enumerate() {
            store
                .save(&snap(id, now - 300.0 + k as f64 * 100.0), now)
                .unwrap();
        }
        let (list, damaged) = store.list();
        assert!(damaged.is_empty());
        assert_eq!(
            list.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
            [ids[2].as_str(), ids[1].as_str()],
            "the newest two are kept"
        );
        assert_eq!(list[0].performance_score, Some(42.0));
        assert_eq!(
            store.get(&ids[2]).unwrap().unwrap(),
            snap(&ids[2], now - 100.0)
        );
        assert_eq!(store.get(&ids[0]).unwrap(), None);
        // Past the retention by age.
        store.prune(now + 3600.0);
        assert!(store.list().0.is_empty());
    }

    #[test]
    fn a_damaged_file_costs_only_itself_and_ids_cannot_escape() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path(), SnapshotOptions::default()).unwrap();
        let now = 1_800_000_000.0;
        let good = new_id(1_800_000_000_000, 1);
        store.save(&snap(&good, now), now).unwrap();
        let bad = new_id(1_800_000_000_001, 2);
        std::fs::write(dir.path().join(format!("{bad}.json")), b"{\"id\": \"trunc").unwrap();
        let (list, damaged) = store.list();
        assert_eq!(list.len(), 1);
        assert_eq!(damaged.len(), 1);
        assert!(damaged[0].contains("damaged"), "{damaged:?}");
        assert!(store.get(&bad).unwrap_err().to_string().contains("damaged"));
        for id in ["../etc/passwd", "", "ABC", "a/b", &"1".repeat(65)] {
            assert!(!valid_id(id), "{id}");
            assert!(store.get(id).is_err());
        }
    }
}
