//! Service discovery and membership metrics:
//!
//! | name | type | labels |
//! | --- | --- | --- |
//! | `membership_members` | gauge | `state` (`alive`, `suspect`, `dead`, `left`) |
//! | `membership_changes_total` | counter | `change` (`join`, `leave`, `fail`, `recover`) |
//! | `membership_partitions_detected_total`, `membership_partitions_healed_total` | counter | |

use crate::Counter;
use crate::Gauge;
use prometheus_client::metrics::family::Family;

use super::{Pairs, handle};
use crate::Metrics;

/// A member's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// Answering.
    Alive,
    /// Missed probes.
    Suspect,
    /// Declared failed.
    Dead,
    /// Left on purpose.
    Left,
}

/// The membership metric set.
#[derive(Debug, Clone)]
pub struct MembershipMetrics {
    members: [Gauge; 4],
    joins: Counter,
    leaves: Counter,
    fails: Counter,
    recovers: Counter,
    detected: Counter,
    healed: Counter,
}

impl MembershipMetrics {
    pub(crate) fn new(m: &Metrics) -> Self {
        let members = m.shared(
            "membership_members",
            "Members, by state",
            Family::<Pairs, Gauge>::default,
        );
        let changes = m.shared(
            "membership_changes",
            "Membership changes, by kind",
            Family::<Pairs, Counter>::default,
        );
        let change = |c: &str| handle(&changes, &[("change", c)]);
        Self {
            members: ["alive", "suspect", "dead", "left"]
                .map(|s| handle(&members, &[("state", s)])),
            joins: change("join"),
            leaves: change("leave"),
            fails: change("fail"),
            recovers: change("recover"),
            detected: m.counter(
                "membership_partitions_detected",
                "Network partitions detected",
            ),
            healed: m.counter("membership_partitions_healed", "Network partitions healed"),
        }
    }

    /// Members in `state` now.
    pub fn set_members(&self, state: MemberState, n: u64) {
        self.members[state as usize].set(n as i64);
    }

    /// A member joined.
    pub fn joined(&self) {
        self.joins.inc();
    }

    /// A member left.
    pub fn left(&self) {
        self.leaves.inc();
    }

    /// A member was declared failed.
    pub fn failed(&self) {
        self.fails.inc();
    }

    /// A failed member came back.
    pub fn recovered(&self) {
        self.recovers.inc();
    }

    /// A partition was detected.
    pub fn partition_detected(&self) {
        self.detected.inc();
    }

    /// A partition healed.
    pub fn partition_healed(&self) {
        self.healed.inc();
    }
}
