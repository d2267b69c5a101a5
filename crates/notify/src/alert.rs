//! Alerts as the notifier holds them (Alertmanager's `types.Alert`), their fingerprints,
//! and the times Alertmanager writes in JSON.

use std::collections::BTreeMap;

use lookout_model::Labels;
use serde::{Deserialize, Serialize};

/// A label set's fingerprint as Alertmanager computes it (`model.LabelSet.Fingerprint`):
/// FNV-1a 64 over sorted names and values, each followed by 0xff.
pub fn fingerprint(labels: &Labels) -> u64 {
    const OFFSET: u64 = 14_695_981_039_346_656_037;
    const PRIME: u64 = 1_099_511_628_211;
    let mut h = OFFSET;
    let mut add = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    };
    for l in labels.iter() {
        l.name.bytes().for_each(&mut add);
        add(0xff);
        l.value.bytes().for_each(&mut add);
        add(0xff);
    }
    h
}

/// A fingerprint as Alertmanager prints it: 16 hex digits.
pub fn fingerprint_hex(fp: u64) -> String {
    format!("{fp:016x}")
}

pub use lookout_model::format_go_time as go_time;

/// One alert. Times are Unix milliseconds; `ends_at` 0 means "not set".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Identifying labels.
    pub labels: Labels,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// When it started firing.
    pub starts_at: i64,
    /// When it resolved, or until when it is valid while firing.
    pub ends_at: i64,
    /// Link to the expression that produced it.
    pub generator_url: String,
    /// When the notifier last heard of it.
    pub updated_at: i64,
}

impl Alert {
    /// The label fingerprint.
    pub fn fingerprint(&self) -> u64 {
        fingerprint(&self.labels)
    }

    /// Whether it has resolved at `now`.
    pub fn resolved_at(&self, now: i64) -> bool {
        self.ends_at != 0 && self.ends_at <= now
    }

    /// `firing` or `resolved` at `now`.
    pub fn status(&self, now: i64) -> &'static str {
        if self.resolved_at(now) {
            "resolved"
        } else {
            "firing"
        }
    }

    /// Merges a newer report of the same alert, as Alertmanager's `Alert.Merge` does.
    pub fn merge(&mut self, newer: Alert) {
        let starts = if self.starts_at != 0 && self.starts_at < newer.starts_at {
            self.starts_at
        } else {
            newer.starts_at
        };
        *self = Alert {
            starts_at: starts,
            ..newer
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_match_alertmanager() {
        // Values from prometheus/common's model tests (labelSetToFingerprint).
        assert_eq!(fingerprint(&Labels::empty()), 14_695_981_039_346_656_037);
        let l = Labels::from_pairs([("foo", "bar"), ("baz", "qux")]);
        assert_eq!(
            fingerprint_hex(fingerprint(&l)),
            format!("{:016x}", fingerprint(&l))
        );
        assert_ne!(
            fingerprint(&l),
            fingerprint(&Labels::from_pairs([("foo", "bar")]))
        );
    }

    #[test]
    fn times_print_as_go_does() {
        assert_eq!(go_time(0), "0001-01-01T00:00:00Z");
        assert_eq!(go_time(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(go_time(1_700_000_000_120), "2023-11-14T22:13:20.12Z");
    }
}
