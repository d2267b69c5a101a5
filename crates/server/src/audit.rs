//! The HTTP audit trail: every authentication failure, every refused request and every
//! request that changes something, one JSON line each (`time`, `who`, `role`,
//! `remote_addr`, `action`, `target`, `result`), fsynced before the answer goes out,
//! rotated by size (one previous file kept). The last entries are kept in memory for
//! `/api/v1/lookout/audit`.

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use serde_json::{Value, json};

/// Entries kept in memory for the API.
const RECENT: usize = 1000;

/// Where audit records go.
#[derive(Debug)]
pub struct AuditLog {
    path: Option<PathBuf>,
    max_bytes: u64,
    recent: Mutex<VecDeque<Value>>,
}

impl Default for AuditLog {
    fn default() -> Self {
        Self::memory()
    }
}

/// One audited event.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// Who: the authenticated user or token, or the user a failed login claimed.
    pub who: &'a str,
    /// Their role, when they authenticated.
    pub role: Option<&'a str>,
    /// The client's address.
    pub remote_addr: Option<std::net::SocketAddr>,
    /// What: `auth_failure`, `forbidden`, or the request's method.
    pub action: &'a str,
    /// The path it concerned.
    pub target: &'a str,
    /// The HTTP status it got.
    pub result: u16,
}

impl AuditLog {
    /// Records kept in memory only.
    pub fn memory() -> Self {
        Self {
            path: None,
            max_bytes: 0,
            recent: Mutex::new(VecDeque::new()),
        }
    }

    /// Records appended to `path` (its directory is created), rotated past `max_bytes`.
    pub fn file(path: PathBuf, max_bytes: u64) -> std::io::Result<Self> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        Ok(Self {
            path: Some(path),
            max_bytes,
            recent: Mutex::new(VecDeque::new()),
        })
    }

    /// Records `e`; a failure to write is logged, never hides the request's answer.
    pub fn record(&self, e: Event<'_>) {
        let v = json!({
            "time": lookout_model::format_rfc3339(lookout_model::now_ms()),
            "who": e.who,
            "role": e.role,
            "remote_addr": e.remote_addr.map(|a| a.to_string()),
            "action": e.action,
            "target": e.target,
            "result": e.result,
        });
        let mut recent = self.recent.lock().expect("lock");
        if let Some(p) = &self.path
            && let Err(err) = self.append(p, &v)
        {
            tracing::error!(path = %p.display(), error = %err, "Writing the audit log failed");
        }
        recent.push_back(v);
        if recent.len() > RECENT {
            recent.pop_front();
        }
    }

    /// Appends a line durably, rotating first if the file is past its size.
    fn append(&self, p: &PathBuf, v: &Value) -> std::io::Result<()> {
        if std::fs::metadata(p).is_ok_and(|m| m.len() >= self.max_bytes) {
            let mut old = p.clone().into_os_string();
            old.push(".1");
            std::fs::rename(p, old)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)?;
        writeln!(f, "{v}")?;
        f.sync_data()
    }

    /// The last `limit` records, oldest first.
    pub fn recent(&self, limit: usize) -> Vec<Value> {
        let r = self.recent.lock().expect("lock");
        r.iter()
            .skip(r.len().saturating_sub(limit))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_lines_rotated_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit").join("http.log");
        let log = AuditLog::file(p.clone(), 300).unwrap();
        for i in 0..10 {
            log.record(Event {
                who: "bob",
                role: Some("operator"),
                remote_addr: None,
                action: "POST",
                target: &format!("/-/reload/{i}"),
                result: 200,
            });
        }
        let lines: Vec<Value> = std::fs::read_to_string(&p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(!lines.is_empty() && lines.len() < 10, "rotated");
        assert!(dir.path().join("audit/http.log.1").exists());
        assert_eq!(lines.last().unwrap()["target"], "/-/reload/9");
        assert_eq!(log.recent(3).len(), 3);
        assert_eq!(log.recent(100)[0]["who"], "bob");
    }
}
