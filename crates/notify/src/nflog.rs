//! The notification log: what each receiver integration was last told about each group
//! (firing and resolved alert fingerprints, and when), so a group is not sent again
//! before its repeat interval and a restart sends no duplicates. Kept in a JSON file,
//! replaced atomically after every successful notification.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{Result, state};

/// One integration's last notification of a group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Fingerprints of the firing alerts it was told about.
    pub firing: Vec<u64>,
    /// Fingerprints of the resolved alerts it was told about.
    pub resolved: Vec<u64>,
    /// When (ms).
    pub at: i64,
}

impl Entry {
    /// Every alert of `firing` was already notified as firing.
    pub fn firing_subset(&self, firing: &[u64]) -> bool {
        firing.iter().all(|f| self.firing.contains(f))
    }

    /// Every alert of `resolved` was already notified as resolved.
    pub fn resolved_subset(&self, resolved: &[u64]) -> bool {
        resolved.iter().all(|f| self.resolved.contains(f))
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    version: u32,
    entries: BTreeMap<String, Entry>,
}

/// The log.
#[derive(Debug, Default)]
pub struct NotificationLog {
    entries: BTreeMap<String, Entry>,
    path: Option<PathBuf>,
}

/// The log key of one integration of one group.
pub fn key(group_key: &str, receiver: &str, integration: &str) -> String {
    format!("{group_key}|{receiver}|{integration}")
}

impl NotificationLog {
    /// A log kept in `path` (loaded if it exists).
    pub fn open(path: Option<PathBuf>) -> Result<Self> {
        let mut l = Self {
            entries: BTreeMap::new(),
            path,
        };
        if let Some(f) = l
            .path
            .as_deref()
            .map(state::load::<File>)
            .transpose()?
            .flatten()
        {
            l.entries = f.entries;
        }
        Ok(l)
    }

    /// The last notification under `key`.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// Records a notification and saves the log.
    pub fn record(&mut self, key: String, entry: Entry) {
        self.entries.insert(key, entry);
        self.save();
    }

    /// Drops entries older than `retention_ms`.
    pub fn gc(&mut self, now: i64, retention_ms: i64) {
        let before = self.entries.len();
        self.entries.retain(|_, e| e.at + retention_ms > now);
        if before != self.entries.len() {
            self.save();
        }
    }

    fn save(&self) {
        let Some(p) = &self.path else { return };
        let f = File {
            version: 1,
            entries: self.entries.clone(),
        };
        // A failure is logged by `save`; the next record tries again.
        let _ = state::save(p, &f, "the notification log to ");
    }
}
