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

use crate::{Error, Result, state};

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
    pub fn matcher(&self) -> Result<Matcher, lookout_model::MatcherError> {
        let op = match (self.is_regex, self.is_equal) {
            (false, true) => MatchOp::Equal,
            (false, false) => MatchOp::NotEqual,
            (true, true) => MatchOp::Regex,
            (true, false) => MatchOp::NotRegex,
        };
        Matcher::new(op, &self.name, &self.value)
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

    /// Its matchers compiled; fails on an invalid one.
    fn compile(&self) -> Result<Vec<Matcher>, lookout_model::MatcherError> {
        #[cfg(test)]
        tests::COMPILES.with(|c| c.set(c.get() + 1));
        self.matchers.iter().map(SilenceMatcher::matcher).collect()
    }
}

/// Most silences kept (expired ones included, until garbage collection).
pub const MAX_SILENCES: usize = 10_000;
/// Most bytes one silence's matchers and comment may take.
pub const MAX_SILENCE_BYTES: usize = 16 * 1024;

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

/// Every silence, persisted, with its matchers compiled once (not per alert per tick).
#[derive(Debug, Default)]
pub struct Silences {
    by_id: BTreeMap<String, Silence>,
    compiled: BTreeMap<String, Vec<Matcher>>,
    path: Option<PathBuf>,
}

impl Silences {
    /// Silences kept in `path` (loaded if it exists).
    pub fn open(path: Option<PathBuf>) -> Result<Self> {
        let mut s = Self {
            by_id: BTreeMap::new(),
            compiled: BTreeMap::new(),
            path,
        };
        let saved = s.path.as_deref().map(state::load::<Vec<Silence>>);
        if let Some(list) = saved.transpose()?.flatten() {
            s.by_id = list.into_iter().map(|x| (x.id.clone(), x)).collect();
            s.compiled = s
                .by_id
                .values()
                .filter_map(|x| Some((x.id.clone(), x.compile().ok()?)))
                .collect();
        }
        Ok(s)
    }

    /// Writes the file (durably); the error names the file.
    fn save(&self) -> Result<()> {
        let Some(p) = &self.path else { return Ok(()) };
        let list: Vec<&Silence> = self.by_id.values().collect();
        state::save(p, &list, "silences to ")
    }

    /// Creates a silence, or updates the one with `s.id`; returns what happened.
    pub fn set(&mut self, mut s: Silence, now: i64) -> Result<Change> {
        let invalid = |why: &str| Err(Error::Invalid(format!("silence invalid: {why}")));
        if s.matchers.is_empty() {
            return invalid("at least one matcher required");
        }
        let size: usize = s
            .matchers
            .iter()
            .map(|m| m.name.len() + m.value.len())
            .sum::<usize>()
            + s.comment.len()
            + s.created_by.len();
        if size > MAX_SILENCE_BYTES {
            return invalid(&format!(
                "{size} bytes of matchers and comment, more than the limit of {MAX_SILENCE_BYTES}"
            ));
        }
        let compiled = match s.compile() {
            Ok(c) => c,
            Err(e) => return invalid(&e.to_string()),
        };
        if compiled.iter().all(|m| m.matches_empty()) {
            return invalid("at least one matcher must not match the empty string");
        }
        if s.ends_at <= s.starts_at {
            return invalid("end time must not be before start time");
        }
        if s.ends_at <= now {
            return invalid("end time can't be in the past");
        }
        s.updated_at = now;
        let prior = self.by_id.get(&s.id).cloned();
        let adds = s.id.is_empty() || !self.by_id.contains_key(&s.id);
        if adds && self.by_id.len() >= MAX_SILENCES {
            return Err(Error::Invalid(format!(
                "too many silences: {} are kept, the limit is {MAX_SILENCES}; expire some (expired ones are dropped after five days)",
                self.by_id.len()
            )));
        }
        let change = match self.by_id.get_mut(&s.id) {
            Some(old) if !s.id.is_empty() => {
                let st = old.state(now);
                let in_place = st == SilenceState::Pending
                    || (st == SilenceState::Active
                        && old.matchers == s.matchers
                        && old.starts_at == s.starts_at);
                if st == SilenceState::Expired {
                    return Err(Error::Invalid(format!(
                        "silence {} is expired and cannot be changed",
                        s.id
                    )));
                }
                if in_place {
                    s.silenced = std::mem::take(&mut old.silenced);
                    *old = s.clone();
                    self.compiled.insert(s.id.clone(), compiled);
                    Change::Updated(s.id)
                } else {
                    old.ends_at = now;
                    old.updated_at = now;
                    let old_id = old.id.clone();
                    s.id = new_id();
                    s.starts_at = s.starts_at.max(now);
                    let new = s.id.clone();
                    self.by_id.insert(new.clone(), s);
                    self.compiled.insert(new.clone(), compiled);
                    Change::Replaced { old: old_id, new }
                }
            }
            Some(_) | None if !s.id.is_empty() => {
                return Err(Error::NotFound(format!("silence {} not found", s.id)));
            }
            _ => {
                s.id = new_id();
                s.starts_at = s.starts_at.max(now);
                let id = s.id.clone();
                self.by_id.insert(id.clone(), s);
                self.compiled.insert(id.clone(), compiled);
                Change::Created(id)
            }
        };
        if let Err(e) = self.save() {
            // Not kept: undo, so memory and disk agree and the error means no change.
            match &change {
                Change::Created(id) => {
                    self.by_id.remove(id);
                    self.compiled.remove(id);
                }
                Change::Updated(_) | Change::Replaced { .. } => {
                    if let Change::Replaced { new, .. } = &change {
                        self.by_id.remove(new);
                        self.compiled.remove(new);
                    }
                    if let Some(p) = prior {
                        if let Ok(c) = p.compile() {
                            self.compiled.insert(p.id.clone(), c);
                        }
                        self.by_id.insert(p.id.clone(), p);
                    }
                }
            }
            return Err(e);
        }
        Ok(change)
    }

    /// Expires a silence now.
    pub fn expire(&mut self, id: &str, now: i64) -> Result<()> {
        let s = self
            .by_id
            .get_mut(id)
            .ok_or_else(|| Error::NotFound(format!("silence {id} not found")))?;
        if s.state(now) == SilenceState::Expired {
            return Err(Error::Invalid(format!("silence {id} already expired")));
        }
        let (ends, updated) = (s.ends_at, s.updated_at);
        s.ends_at = now;
        s.updated_at = now;
        if let Err(e) = self.save() {
            let s = self.by_id.get_mut(id).expect("just changed");
            s.ends_at = ends;
            s.updated_at = updated;
            return Err(e);
        }
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
            let matches = |l: &Labels| {
                self.compiled
                    .get(&s.id)
                    .is_some_and(|ms| ms.iter().all(|m| m.matches_labels(l)))
            };
            if s.state(now) == SilenceState::Active && matches(l) {
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
            // Saved again at the next change if this fails; the log says so.
            let _ = self.save();
        }
        done
    }

    /// Drops silences expired for longer than `retention_ms`.
    pub fn gc(&mut self, now: i64, retention_ms: i64) {
        let before = self.by_id.len();
        self.by_id.retain(|_, s| s.ends_at + retention_ms > now);
        self.compiled.retain(|id, _| self.by_id.contains_key(id));
        if self.by_id.len() != before {
            let _ = self.save();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// Silences compiled on this test's thread.
        pub(super) static COMPILES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    /// Issue 12, item 8: with 201 regex silences and 1,900 alerts checked on three
    /// ticks, each silence is compiled once (it was 201 × 1,900 × 3 compilations under
    /// the notifier's lock, 320 s for one `GET /api/v2/alerts`).
    #[test]
    fn issue_12_silence_matchers_are_compiled_once_per_silence() {
        let mut s = Silences::open(None).unwrap();
        for i in 0..201 {
            let mut x = silence(&[("instance", "")], 0, 1_000_000);
            x.matchers[0].value = format!("host-{i}-.*|db-{i}[0-9]+");
            x.matchers[0].is_regex = true;
            s.set(x, 0).unwrap();
        }
        COMPILES.with(|c| c.set(0));
        let mut muted = 0;
        for _tick in 0..3 {
            for a in 0..1900 {
                let l = Labels::from_pairs([
                    ("alertname", "Down".to_string()),
                    ("instance", format!("host-{}-x", a % 250)),
                ]);
                muted += usize::from(!s.mutes(&l, a, 10).is_empty());
            }
        }
        assert_eq!(
            COMPILES.with(|c| c.get()),
            0,
            "matchers recompiled per alert"
        );
        // The compiled matchers are the silences' own: hosts 0..=200 are silenced.
        assert_eq!(muted, 3 * (0..1900).filter(|a| a % 250 <= 200).count());
    }

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
                .to_string()
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
