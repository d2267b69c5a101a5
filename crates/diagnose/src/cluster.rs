//! Cluster health with quorum: a group of members (the series a PromQL expression
//! returns, such as `up{job="redis"}` or `pg_up`), each healthy (value 1 or more),
//! degraded (between 0 and 1, e.g. an average of several checks) or unhealthy (0, or
//! missing from an expected `size`), and a quorum rule: a majority of the size, or at
//! least N. The cluster is healthy when every member is, degraded while the members
//! not unhealthy still make the quorum, and unhealthy once quorum is lost.

use std::collections::BTreeMap;

use lookout_promql::{Engine, Value};
use lookout_storage::Queryable;

use crate::Error;

/// How many members must be up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quorum {
    /// More than half of the size.
    Majority,
    /// At least this many.
    AtLeast(usize),
}

impl Quorum {
    /// `majority` or a number.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "majority" => Ok(Self::Majority),
            n => n
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .map(Self::AtLeast)
                .ok_or_else(|| format!("quorum {s:?}: majority or a positive number")),
        }
    }

    /// The members needed out of `size`.
    pub fn required(self, size: usize) -> usize {
        match self {
            Self::Majority => size / 2 + 1,
            Self::AtLeast(n) => n,
        }
    }
}

/// A cluster as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSpec {
    /// Its name.
    pub name: String,
    /// PromQL returning one series per member.
    pub members: String,
    /// The quorum rule.
    pub quorum: Quorum,
    /// How many members there should be; members missing from it are unhealthy.
    /// `None`: those the expression returns.
    pub size: Option<usize>,
}

/// One member's state.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Member {
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
    /// `healthy`, `degraded` or `unhealthy`.
    pub state: &'static str,
}

/// A cluster's state now.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ClusterStatus {
    /// Its name.
    pub name: String,
    /// `healthy`, `degraded` or `unhealthy`.
    pub status: &'static str,
    /// `available` or `lost`.
    pub quorum: &'static str,
    /// Members the quorum counts from.
    pub size: usize,
    /// Members needed.
    pub required: usize,
    /// Healthy members.
    pub healthy: usize,
    /// Degraded members (they count toward the quorum).
    pub degraded: usize,
    /// Unhealthy members, missing ones included.
    pub unhealthy: usize,
    /// Members expected (`size`) but not returned.
    pub missing: usize,
    /// The members returned.
    pub members: Vec<Member>,
}

impl ClusterStatus {
    /// One sentence for the health report.
    pub fn message(&self) -> String {
        format!(
            "{} of {} members healthy, {} degraded, {} unhealthy{}; quorum {} of {}: {}",
            self.healthy,
            self.size,
            self.degraded,
            self.unhealthy,
            if self.missing > 0 {
                format!(" ({} missing)", self.missing)
            } else {
                String::new()
            },
            self.required,
            self.size,
            self.quorum
        )
    }
}

/// The cluster's state at `at` (ms).
pub fn evaluate(
    engine: &Engine,
    db: &dyn Queryable,
    spec: &ClusterSpec,
    at: i64,
) -> Result<ClusterStatus, Error> {
    let q = |m: String| Error::Query {
        query: spec.members.clone(),
        message: m,
    };
    let expr = lookout_promql::parse(&spec.members).map_err(|e| q(e.to_string()))?;
    let r = engine
        .instant_query(db, &spec.members, &expr, at, None)
        .map_err(|e| q(e.to_string()))?;
    let samples = match r.value {
        Value::Vector(v) => v,
        Value::Scalar(_) | Value::String(_) | Value::Matrix(_) => {
            return Err(q(
                "members must be an instant vector, one series per member".into(),
            ));
        }
    };
    let mut members: Vec<Member> = samples
        .into_iter()
        .map(|s| Member {
            labels: s
                .labels
                .iter()
                .map(|l| (l.name.to_string(), l.value.to_string()))
                .collect(),
            value: s.v,
            state: if s.v >= 1.0 {
                "healthy"
            } else if s.v > 0.0 {
                "degraded"
            } else {
                "unhealthy"
            },
        })
        .collect();
    members.sort_by(|a, b| a.labels.cmp(&b.labels));
    let count = |st: &str| members.iter().filter(|m| m.state == st).count();
    let (healthy, degraded) = (count("healthy"), count("degraded"));
    let size = spec.size.unwrap_or(members.len()).max(members.len());
    let missing = size - members.len();
    let unhealthy = count("unhealthy") + missing;
    let required = spec.quorum.required(size);
    let available = size > 0 && healthy + degraded >= required;
    Ok(ClusterStatus {
        name: spec.name.clone(),
        status: if !available {
            "unhealthy"
        } else if degraded + unhealthy > 0 {
            "degraded"
        } else {
            "healthy"
        },
        quorum: if available { "available" } else { "lost" },
        size,
        required,
        healthy,
        degraded,
        unhealthy,
        missing,
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lookout_model::Labels;
    use lookout_storage::{Appendable, MemStorage};

    fn db(values: &[(&str, f64)]) -> MemStorage {
        let db = MemStorage::new();
        let mut a = db.appender();
        for (i, v) in values {
            let l = Labels::from_pairs([("__name__", "up"), ("job", "redis"), ("instance", *i)]);
            a.append(&l, 1_000_000, *v).unwrap();
        }
        a.commit().unwrap();
        db
    }

    fn spec(quorum: &str, size: Option<usize>) -> ClusterSpec {
        ClusterSpec {
            name: "cache".into(),
            members: r#"up{job="redis"}"#.into(),
            quorum: Quorum::parse(quorum).unwrap(),
            size,
        }
    }

    #[test]
    fn quorum_is_kept_while_a_majority_is_up() {
        let e = Engine::default();
        let all = evaluate(
            &e,
            &db(&[("a", 1.0), ("b", 1.0), ("c", 1.0)]),
            &spec("majority", None),
            1_000_000,
        )
        .unwrap();
        assert_eq!(
            (all.status, all.quorum, all.required),
            ("healthy", "available", 2)
        );
        let one_down = evaluate(
            &e,
            &db(&[("a", 1.0), ("b", 0.0), ("c", 1.0)]),
            &spec("majority", None),
            1_000_000,
        )
        .unwrap();
        assert_eq!(
            (one_down.status, one_down.quorum),
            ("degraded", "available")
        );
        assert_eq!(
            one_down.message(),
            "2 of 3 members healthy, 0 degraded, 1 unhealthy; quorum 2 of 3: available"
        );
        let two_down = evaluate(
            &e,
            &db(&[("a", 1.0), ("b", 0.0), ("c", 0.0)]),
            &spec("majority", None),
            1_000_000,
        )
        .unwrap();
        assert_eq!((two_down.status, two_down.quorum), ("unhealthy", "lost"));
        // A member gone from the expected five counts as unhealthy.
        let missing = evaluate(
            &e,
            &db(&[("a", 1.0), ("b", 1.0)]),
            &spec("majority", Some(5)),
            1_000_000,
        )
        .unwrap();
        assert_eq!(
            (missing.missing, missing.unhealthy, missing.quorum),
            (3, 3, "lost")
        );
        // A degraded member counts toward the quorum.
        let degraded = evaluate(
            &e,
            &db(&[("a", 0.5), ("b", 1.0), ("c", 0.0)]),
            &spec("2", None),
            1_000_000,
        )
        .unwrap();
        assert_eq!(
            (degraded.status, degraded.degraded, degraded.quorum),
            ("degraded", 1, "available")
        );
        // Nothing returned: no quorum.
        let none = evaluate(&e, &MemStorage::new(), &spec("majority", None), 1_000_000).unwrap();
        assert_eq!(none.quorum, "lost");
    }

    #[test]
    fn bad_quorums_and_expressions_are_named() {
        assert!(Quorum::parse("most").is_err());
        assert!(Quorum::parse("0").is_err());
        let e = Engine::default();
        let mut s = spec("majority", None);
        s.members = "1 + 1".into();
        let err = evaluate(&e, &MemStorage::new(), &s, 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("instant vector"), "{err}");
    }
}
