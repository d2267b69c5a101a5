//! Silences: matchers and a time window during which matching alerts send nothing.
//!
//! Alertmanager's semantics: a silence is *pending* before `startsAt`, *active* until
//! `endsAt`, then *expired*; updating an active silence's matchers or start expires it and
//! creates a new one; expiring sets `endsAt` to now. Lookout adds `expireOnResolve`: the
//! silence expires once every alert it silenced has resolved. Silences are kept in a JSON
//! file, replaced atomically on every change, so they survive restarts.

use std::collections::BTreeMap;
use std::path::PathBuf;

use lookout_model::{Labels, MatchOp, Matcher};
use serde::{Deserialize, Serialize};

/// One matcher of a silence, in the API's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SilenceMatcher {
    /// Label name.
    pub name: String,
    /// Value or pattern.
    pub value: String,
    /// Pattern match.
    pub is_regex: bool,
    /// Equal (true) or not equal (false); absent means true.
    #[serde(default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

impl SilenceMatcher {
    /// The label matcher it stands for.
    pub fn matcher(&self) -> Result<Matcher, String> {
        let op = match (self.is_regex, self.is_equal) {
            (false, true) => MatchOp::Equal,
            (false, false) => MatchOp::NotEqual,
            (true, true) => MatchOp::Regex,
            (true, false) => MatchOp::NotRegex,
        };
        Matcher::new(op, &self.name, &self.value).map_err(|e| e.to_string())
    }
}

/// A silence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Silence {
    /// Identifier (a UUID).
    pub id: String,
    /// All must match.
    pub matchers: Vec<SilenceMatcher>,
    /// Start (ms).
    pub starts_at: i64,
    /// End (ms).
    pub ends_at: i64,
    /// Last change (ms).
    pub updated_at: i64,
    /// Who made it.
    pub created_by: String,
    /// Why.
    pub comment: String,
    /// Expire once the alerts it silenced have all resolved (Lookout's extension).
    #[serde(default)]
    pub expire_on_resolve: bool,
    /// Fingerprints of alerts it has silenced while active.
    #[serde(default)]
    pub silenced: Vec<u64>,
}

/// A silence's state at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SilenceState {
    /// Not started.
    Pending,
    /// In force.
    Active,
    /// Over.
    Expired,
}

impl SilenceState {
    /// The API's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Expired => "expired",
        }
    }
}

impl Silence {
    /// Its state at `now`.
    pub fn state(&self, now: i64) -> SilenceState {
        if now >= self.ends_at {
            SilenceState::Expired
        } else if now < self.starts_at {
            SilenceState::Pending
        } else {
            SilenceState::Active
        }
    }

    fn matches(&self, l: &Labels) -> bool {
        self.matchers
            .iter()
            .all(|m| m.matcher().is_ok_and(|m| m.matches_labels(l)))
    }
}

/// A new 128-bit random identifier in UUID form.
pub fn new_id() -> String {
    let mut b = [0u8; 16];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .is_ok();
    if !ok {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = n.to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// What a change did, for the audit log.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A silence was created.
    Created(String),
    /// A silence was changed in place.
    Updated(String),
    /// The old one expired and a new one replaced it.
    Replaced {
        /// Expired.
        old: String,
        /// Created.
        new: String,
    },
}

/// Every silence, persisted.
#[derive(Debug, Default)]
pub struct Silences {
    by_id: BTreeMap<String, Silence>,
    path: Option<PathBuf>,
}

impl Silences {
    /// Silences kept in `path` (loaded if it exists).
    pub fn open(path: Option<PathBuf>) -> Result<Self, String> {
        let mut s = Self {
            by_id: BTreeMap::new(),
            path,
        };
        if let Some(p) = &s.path {
            match std::fs::read(p) {
                Ok(b) => {
                    let list: Vec<Silence> =
                        serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", p.display()))?;
                    s.by_id = list.into_iter().map(|x| (x.id.clone(), x)).collect();
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("{}: {e}", p.display())),
            }
        }
        Ok(s)
    }

    fn save(&self) {
        let Some(p) = &self.path else { return };
        let list: Vec<&Silence> = self.by_id.values().collect();
        let tmp = p.with_extension("tmp");
        let res = serde_json::to_vec(&list)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|()| std::fs::rename(&tmp, p));
        if let Err(e) = res {
            tracing::warn!(path = %p.display(), error = %e, "Saving silences failed");
        }
    }

    /// Creates a silence, or updates the one with `s.id`; returns what happened.
    pub fn set(&mut self, mut s: Silence, now: i64) -> Result<Change, String> {
        if s.matchers.is_empty() {
            return Err("silence invalid: at least one matcher required".into());
        }
        for m in &s.matchers {
            m.matcher().map_err(|e| format!("silence invalid: {e}"))?;
        }
        if s.matchers
            .iter()
            .all(|m| m.matcher().is_ok_and(|m| m.matches_empty()))
        {
            return Err(
                "silence invalid: at least one matcher must not match the empty string".into(),
            );
        }
        if s.ends_at <= s.starts_at {
            return Err("silence invalid: end time must not be before start time".into());
        }
        if s.ends_at <= now {
            return Err("silence invalid: end time can't be in the past".into());
        }
        s.updated_at = now;
        let change = match self.by_id.get_mut(&s.id) {
            Some(old) if !s.id.is_empty() => {
                let st = old.state(now);
                let in_place = st == SilenceState::Pending
                    || (st == SilenceState::Active
                        && old.matchers == s.matchers
                        && old.starts_at == s.starts_at);
                if st == SilenceState::Expired {
                    return Err(format!("silence {} is expired and cannot be changed", s.id));
                }
                if in_place {
                    s.silenced = std::mem::take(&mut old.silenced);
                    *old = s.clone();
                    Change::Updated(s.id)
                } else {
                    old.ends_at = now;
                    old.updated_at = now;
                    let old_id = old.id.clone();
                    s.id = new_id();
                    s.starts_at = s.starts_at.max(now);
                    let new = s.id.clone();
                    self.by_id.insert(new.clone(), s);
                    Change::Replaced { old: old_id, new }
                }
            }
            Some(_) | None if !s.id.is_empty() => {
                return Err(format!("silence {} not found", s.id));
            }
            _ => {
                s.id = new_id();
                s.starts_at = s.starts_at.max(now);
                let id = s.id.clone();
                self.by_id.insert(id.clone(), s);
                Change::Created(id)
            }
        };
        self.save();
        Ok(change)
    }

    /// Expires a silence now.
    pub fn expire(&mut self, id: &str, now: i64) -> Result<(), String> {
        let s = self
            .by_id
            .get_mut(id)
            .ok_or_else(|| format!("silence {id} not found"))?;
        if s.state(now) == SilenceState::Expired {
            return Err(format!("silence {id} already expired"));
        }
        s.ends_at = now;
        s.updated_at = now;
        self.save();
        Ok(())
    }

    /// One silence.
    pub fn get(&self, id: &str) -> Option<&Silence> {
        self.by_id.get(id)
    }

    /// Every silence.
    pub fn list(&self) -> Vec<Silence> {
        self.by_id.values().cloned().collect()
    }

    /// Active silences matching `l`, remembering the alert `fp` for `expireOnResolve`.
    pub fn mutes(&mut self, l: &Labels, fp: u64, now: i64) -> Vec<String> {
        let mut ids = Vec::new();
        for s in self.by_id.values_mut() {
            if s.state(now) == SilenceState::Active && s.matches(l) {
                if s.expire_on_resolve && !s.silenced.contains(&fp) {
                    s.silenced.push(fp);
                }
                ids.push(s.id.clone());
            }
        }
        ids
    }

    /// Expires the `expireOnResolve` silences whose silenced alerts have all resolved
    /// (`firing` tells whether an alert still fires); returns their ids.
    pub fn expire_resolved(&mut self, firing: impl Fn(u64) -> bool, now: i64) -> Vec<String> {
        let mut done = Vec::new();
        for s in self.by_id.values_mut() {
            if s.expire_on_resolve
                && s.state(now) == SilenceState::Active
                && !s.silenced.is_empty()
                && !s.silenced.iter().any(|fp| firing(*fp))
            {
                s.ends_at = now;
                s.updated_at = now;
                done.push(s.id.clone());
            }
        }
        if !done.is_empty() {
            self.save();
        }
        done
    }

    /// Drops silences expired for longer than `retention_ms`.
    pub fn gc(&mut self, now: i64, retention_ms: i64) {
        let before = self.by_id.len();
        self.by_id.retain(|_, s| s.ends_at + retention_ms > now);
        if self.by_id.len() != before {
            self.save();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn silence(matchers: &[(&str, &str)], start: i64, end: i64) -> Silence {
        Silence {
            id: String::new(),
            matchers: matchers
                .iter()
                .map(|(n, v)| SilenceMatcher {
                    name: n.to_string(),
                    value: v.to_string(),
                    is_regex: false,
                    is_equal: true,
                })
                .collect(),
            starts_at: start,
            ends_at: end,
            updated_at: 0,
            created_by: "me".into(),
            comment: "maintenance".into(),
            expire_on_resolve: false,
            silenced: Vec::new(),
        }
    }

    #[test]
    fn lifecycle_and_persistence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("silences.json");
        let mut s = Silences::open(Some(path.clone())).unwrap();
        let Change::Created(id) = s
            .set(silence(&[("alertname", "A")], 0, 10_000), 100)
            .unwrap()
        else {
            panic!()
        };
        let l = Labels::from_pairs([("alertname", "A")]);
        assert_eq!(s.mutes(&l, 1, 200), std::slice::from_ref(&id));
        assert!(
            s.mutes(&Labels::from_pairs([("alertname", "B")]), 2, 200)
                .is_empty()
        );
        // Changing the matchers of an active silence replaces it.
        let mut changed = s.get(&id).unwrap().clone();
        changed.matchers[0].value = "B".into();
        let Change::Replaced { old, new } = s.set(changed, 300).unwrap() else {
            panic!()
        };
        assert_eq!(old, id);
        assert_eq!(s.get(&old).unwrap().state(300), SilenceState::Expired);
        let reopened = Silences::open(Some(path)).unwrap();
        assert_eq!(reopened.get(&new).unwrap().matchers[0].value, "B");
        assert!(s.set(silence(&[("x", "")], 0, 10), 0).is_err());
        assert!(
            s.set(silence(&[("x", "y")], 0, 10), 20)
                .unwrap_err()
                .contains("past")
        );
        s.expire(&new, 400).unwrap();
        assert!(s.expire(&new, 500).is_err());
    }

    #[test]
    fn expire_on_resolve() {
        let mut s = Silences::open(None).unwrap();
        let mut x = silence(&[("alertname", "A")], 0, 1_000_000);
        x.expire_on_resolve = true;
        let Change::Created(id) = s.set(x, 0).unwrap() else {
            panic!()
        };
        s.mutes(&Labels::from_pairs([("alertname", "A")]), 7, 10);
        assert!(s.expire_resolved(|fp| fp == 7, 20).is_empty());
        assert_eq!(s.expire_resolved(|_| false, 30), std::slice::from_ref(&id));
        assert_eq!(s.get(&id).unwrap().state(30), SilenceState::Expired);
    }
}
