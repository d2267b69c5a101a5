//! The audit log: every acknowledgement, silence change and escalation as one JSON line
//! (`{"time", "action", "who", …}`), appended and flushed as it happens.

use std::io::Write;
use std::path::PathBuf;

use serde_json::{Value, json};

/// Appends one line to a log file (created if missing), flushed before it returns.
pub(crate) fn append_line(path: &std::path::Path, line: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(f, "{line}")?;
    f.flush()
}

/// Where audit records go.
#[derive(Debug, Default)]
pub struct Audit {
    path: Option<PathBuf>,
    /// Records kept in memory as well (the newest last), for the API and tests.
    pub recent: Vec<Value>,
}

impl Audit {
    /// An audit log appending to `path`.
    pub fn new(path: Option<PathBuf>) -> Self {
        Self {
            path,
            recent: Vec::new(),
        }
    }

    /// Appends a record: `action` by `who` at `now` (ms), with `details` merged in.
    pub fn record(&mut self, now: i64, action: &str, who: &str, details: Value) {
        let mut v = json!({
            "time": crate::alert::go_time(now),
            "action": action,
            "who": who,
        });
        if let (Some(o), Value::Object(d)) = (v.as_object_mut(), details) {
            o.extend(d);
        }
        if let Some(p) = &self.path
            && let Err(e) = append_line(p, &v.to_string())
        {
            tracing::error!(path = %p.display(), error = %e, "Writing the audit log failed");
        }
        self.recent.push(v);
        if self.recent.len() > 1000 {
            self.recent.remove(0);
        }
    }
}
