//! The notification history: the outcome of every delivery (sent, or failed after its
//! retries) with its receiver, integration, group and alerts, one JSON line each in
//! `notifications.log` in the notifier's directory, kept for a retention (default
//! [`RETENTION`], `notifier.history_retention`). Alertmanager
//! has kept none (its issue #172, open since 2015).
//!
//! The newest [`KEPT_IN_MEMORY`] records are also held in memory for searches; at start
//! the file's unexpired lines are read back (damaged lines are skipped and counted), and
//! at most hourly the file is rewritten without the expired ones.

use std::collections::VecDeque;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How long records are kept by default.
pub const RETENTION: std::time::Duration = std::time::Duration::from_secs(7 * 86400);
/// Most records held in memory (and returned by searches).
pub const KEPT_IN_MEMORY: usize = 10_000;
/// How often, at most, the file is rewritten without expired records (ms).
const COMPACT_EVERY_MS: i64 = 3_600_000;

/// One alert of a delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveredAlert {
    /// Its `alertname`.
    pub alertname: String,
    /// Its fingerprint (hex).
    pub fingerprint: String,
    /// `firing` or `resolved` as sent.
    pub status: String,
    /// Its labels.
    pub labels: std::collections::BTreeMap<String, String>,
}

/// One delivery's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// When it ended (RFC 3339).
    pub time: String,
    /// The same, in ms (for searches).
    #[serde(rename = "timeMs")]
    pub time_ms: i64,
    /// The receiver.
    pub receiver: String,
    /// The integration (`webhook`, `email`, `slack`, `pagerduty`).
    pub integration: String,
    /// `notification` (a group's flush) or `escalation` (an escalation page).
    pub kind: String,
    /// Alertmanager's group key.
    #[serde(rename = "groupKey")]
    pub group_key: String,
    /// `firing` or `resolved` (the message's status).
    pub status: String,
    /// The alerts it carried.
    pub alerts: Vec<DeliveredAlert>,
    /// `sent` or `failed`.
    pub result: String,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

/// What to find in the history; empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct Search {
    /// An alert's name, fingerprint or any label value contains this.
    pub alert: Option<String>,
    /// The receiver is this one.
    pub receiver: Option<String>,
    /// `sent` or `failed`.
    pub result: Option<String>,
    /// At or after (ms).
    pub since: Option<i64>,
    /// At or before (ms).
    pub until: Option<i64>,
    /// Most records returned (newest first).
    pub limit: usize,
}

impl Delivery {
    fn matches(&self, q: &Search) -> bool {
        let alert = q.alert.as_deref().is_none_or(|a| {
            self.alerts.iter().any(|x| {
                x.alertname.contains(a)
                    || x.fingerprint == a
                    || x.labels.values().any(|v| v.contains(a))
            })
        });
        alert
            && q.receiver.as_deref().is_none_or(|r| self.receiver == r)
            && q.result.as_deref().is_none_or(|r| self.result == r)
            && q.since.is_none_or(|t| self.time_ms >= t)
            && q.until.is_none_or(|t| self.time_ms <= t)
    }
}

/// The history.
#[derive(Debug, Default)]
pub struct History {
    path: Option<PathBuf>,
    retention_ms: i64,
    records: VecDeque<Delivery>,
    last_compact: i64,
    /// Lines of the file that could not be read at start.
    pub damaged_lines: usize,
}

impl History {
    /// Reads the records of `path` younger than `retention` (none without a path).
    pub fn open(path: Option<PathBuf>, retention: std::time::Duration, now: i64) -> Self {
        let mut h = Self {
            path,
            retention_ms: retention.as_millis().min(i64::MAX as u128) as i64,
            last_compact: now,
            ..Self::default()
        };
        let Some(p) = h.path.clone() else { return h };
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        let horizon = now.saturating_sub(h.retention_ms);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<Delivery>(line) {
                Ok(d) if d.time_ms >= horizon => h.push(d),
                Ok(_) => {}
                Err(_) => h.damaged_lines += 1,
            }
        }
        if h.damaged_lines > 0 {
            tracing::warn!(path = %p.display(), lines = h.damaged_lines, "Damaged notification history lines skipped");
        }
        h
    }

    fn push(&mut self, d: Delivery) {
        self.records.push_back(d);
        while self.records.len() > KEPT_IN_MEMORY {
            self.records.pop_front();
        }
    }

    /// Appends a record (to the file, flushed, and to memory).
    pub fn record(&mut self, d: Delivery, now: i64) {
        if let Some(p) = &self.path {
            let line = serde_json::to_string(&d).expect("a delivery serializes");
            if let Err(e) = crate::audit::append_line(p, &line) {
                tracing::error!(path = %p.display(), error = %e, "Writing the notification history failed");
            }
        }
        self.push(d);
        if now - self.last_compact >= COMPACT_EVERY_MS {
            self.compact(now);
        }
    }

    /// Drops expired records and rewrites the file with the rest.
    pub fn compact(&mut self, now: i64) {
        self.last_compact = now;
        let horizon = now.saturating_sub(self.retention_ms);
        while self.records.front().is_some_and(|d| d.time_ms < horizon) {
            self.records.pop_front();
        }
        let Some(p) = &self.path else { return };
        let mut text = String::new();
        for d in &self.records {
            text.push_str(&serde_json::to_string(d).expect("a delivery serializes"));
            text.push('\n');
        }
        if let Err(e) = lookout_model::durable::replace_file(p, text.as_bytes()) {
            tracing::error!(path = %p.display(), error = %e, "Rewriting the notification history failed");
        }
    }

    /// The records `q` asks for, newest first.
    pub fn search(&self, q: &Search) -> Vec<Delivery> {
        let limit = if q.limit == 0 {
            KEPT_IN_MEMORY
        } else {
            q.limit
        };
        self.records
            .iter()
            .rev()
            .filter(|d| d.matches(q))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Moves the records of `old` (a configuration reload) into this one.
    pub(crate) fn take(&mut self, old: &mut History) {
        self.records = std::mem::take(&mut old.records);
        self.damaged_lines = old.damaged_lines;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn delivery(t: i64, receiver: &str, name: &str, result: &str) -> Delivery {
        Delivery {
            time: String::new(),
            time_ms: t,
            receiver: receiver.into(),
            integration: "webhook".into(),
            kind: "notification".into(),
            group_key: "{}:{}".into(),
            status: "firing".into(),
            alerts: vec![DeliveredAlert {
                alertname: name.into(),
                fingerprint: format!("{t:016x}"),
                status: "firing".into(),
                labels: [
                    ("alertname".to_string(), name.to_string()),
                    ("instance".to_string(), "db-1".to_string()),
                ]
                .into(),
            }],
            result: result.into(),
            error: (result == "failed").then(|| "connection refused".into()),
        }
    }

    #[test]
    fn records_survive_a_restart_are_searchable_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notifications.log");
        let day = 86_400_000;
        let now = 100 * day;
        let mut h = History::open(Some(path.clone()), RETENTION, now);
        h.record(
            delivery(now - 8 * day, "team", "Old", "sent"),
            now - 8 * day,
        );
        h.record(delivery(now - 2, "team", "DiskFull", "sent"), now);
        h.record(delivery(now - 1, "pager", "DiskFull", "failed"), now);
        h.record(delivery(now, "team", "Lag", "sent"), now);
        // A torn line at the end (a crash mid-write) costs only itself.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"time\":")
            .unwrap();
        let h = History::open(Some(path.clone()), RETENTION, now);
        assert_eq!(h.damaged_lines, 1);
        let all = h.search(&Search::default());
        assert_eq!(
            all.iter()
                .map(|d| d.alerts[0].alertname.as_str())
                .collect::<Vec<_>>(),
            ["Lag", "DiskFull", "DiskFull"],
            "newest first, the expired one gone"
        );
        let q = |s: Search| h.search(&s).len();
        let any = Search::default;
        assert_eq!(
            q(Search {
                alert: Some("Disk".into()),
                ..any()
            }),
            2
        );
        assert_eq!(
            q(Search {
                alert: Some("db-1".into()),
                ..any()
            }),
            3
        );
        assert_eq!(
            q(Search {
                receiver: Some("pager".into()),
                ..any()
            }),
            1
        );
        assert_eq!(
            q(Search {
                result: Some("failed".into()),
                ..any()
            }),
            1
        );
        assert_eq!(
            q(Search {
                since: Some(now - 1),
                ..any()
            }),
            2
        );
        assert_eq!(q(Search { limit: 1, ..any() }), 1);
        assert_eq!(
            h.search(&Search {
                result: Some("failed".into()),
                ..Search::default()
            })[0]
                .error
                .as_deref(),
            Some("connection refused")
        );
        // Compaction rewrites the file without expired or damaged lines.
        let mut h = h;
        h.compact(now + 6 * day);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3);
        h.compact(now + 8 * day);
        assert!(std::fs::read_to_string(&path).unwrap().is_empty());
    }
}
