//! What on-call engineers did and where escalation stands: acknowledgements and each
//! alert's escalation level, kept in `<data>/notifier/oncall.json` beside the
//! notification log, so a restart changes nothing an operator did: an acknowledged alert
//! does not page again, an escalated one does not start over.
//!
//! After a restart the alerts themselves arrive again only as the rules re-evaluate, so
//! state of an alert the notifier has not seen yet is kept for a grace period after the
//! first tick (ten minutes) rather than dropped as belonging to a resolved alert.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{Result, state};

/// How long restored state waits for its alert to come back after a restart.
pub(crate) const RESTORE_GRACE_MS: i64 = 10 * 60_000;

/// An acknowledgement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    /// Who.
    pub who: String,
    /// Why / what is being done.
    pub comment: String,
    /// When (ms).
    pub at: i64,
    /// When it lapses (ms), if ever.
    pub expires_at: Option<i64>,
}

/// Where an alert stands under one escalation policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EscState {
    /// Current level, 0-based.
    pub(crate) level: usize,
    /// When it reached that level (ms).
    pub(crate) since: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    version: u32,
    acks: Vec<(u64, Ack)>,
    escalations: Vec<(String, u64, EscState)>,
}

/// Acknowledgements and escalation levels, saved on every change.
#[derive(Debug, Default)]
pub(crate) struct OnCall {
    /// By alert fingerprint.
    pub(crate) acks: HashMap<u64, Ack>,
    /// By (policy name, alert fingerprint).
    pub(crate) escalation: HashMap<(String, u64), EscState>,
    path: Option<PathBuf>,
    /// Until when state of alerts not seen since the restart is kept (set at the first
    /// tick after loading any).
    grace_until: Option<i64>,
    restored: bool,
}

impl OnCall {
    /// State kept in `path` (loaded if it exists).
    pub(crate) fn open(path: Option<PathBuf>) -> Result<Self> {
        let mut s = Self {
            path,
            ..Self::default()
        };
        if let Some(f) = s
            .path
            .as_deref()
            .map(state::load::<File>)
            .transpose()?
            .flatten()
        {
            s.acks = f.acks.into_iter().collect();
            s.escalation = f
                .escalations
                .into_iter()
                .map(|(p, fp, st)| ((p, fp), st))
                .collect();
            s.restored = !s.acks.is_empty() || !s.escalation.is_empty();
        }
        Ok(s)
    }

    /// Whether state of an alert absent at `now` must still be kept (just restarted).
    pub(crate) fn in_grace(&mut self, now: i64) -> bool {
        if !self.restored {
            return false;
        }
        let until = *self.grace_until.get_or_insert(now + RESTORE_GRACE_MS);
        if now >= until {
            self.restored = false;
        }
        now < until
    }

    /// Writes the file durably; the error names it.
    pub(crate) fn save(&self) -> Result<()> {
        let Some(p) = &self.path else { return Ok(()) };
        let mut acks: Vec<(u64, Ack)> = self.acks.iter().map(|(k, v)| (*k, v.clone())).collect();
        acks.sort_by_key(|a| a.0);
        let mut escalations: Vec<(String, u64, EscState)> = self
            .escalation
            .iter()
            .map(|((p, fp), st)| (p.clone(), *fp, st.clone()))
            .collect();
        escalations.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        let f = File {
            version: 1,
            acks,
            escalations,
        };
        state::save(p, &f, "")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("oncall.json");
        let mut s = OnCall::open(Some(p.clone())).unwrap();
        s.acks.insert(
            7,
            Ack {
                who: "alice".into(),
                comment: "on it".into(),
                at: 5,
                expires_at: Some(9),
            },
        );
        s.escalation
            .insert(("db".into(), 7), EscState { level: 1, since: 3 });
        s.save().unwrap();
        let mut back = OnCall::open(Some(p)).unwrap();
        assert_eq!(back.acks, s.acks);
        assert_eq!(back.escalation, s.escalation);
        assert!(back.in_grace(100));
        assert!(back.in_grace(100 + RESTORE_GRACE_MS - 1));
        assert!(!back.in_grace(100 + RESTORE_GRACE_MS));
        assert!(!back.in_grace(100), "the grace is over for good");
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("oncall.json");
        std::fs::write(&p, b"{ not json").unwrap();
        let e = OnCall::open(Some(p)).unwrap_err().to_string();
        assert!(e.contains("oncall.json"), "{e}");
    }
}
