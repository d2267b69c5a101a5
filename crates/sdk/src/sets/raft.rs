//! Raft metrics:
//!
//! | name | type | labels |
//! | --- | --- | --- |
//! | `raft_term` | gauge | |
//! | `raft_state` | gauge (1 for the current role) | `state` (`leader`, `follower`, `candidate`) |
//! | `raft_leader_changes_total`, `raft_elections_total` | counter | |
//! | `raft_commit_index`, `raft_applied_index` | gauge | |
//! | `raft_peer_replication_lag_entries` | gauge | `peer` |
//! | `raft_peer_replication_lag_seconds` | gauge | `peer` |
//! | `raft_append_entries_duration_seconds`, `raft_request_vote_duration_seconds` | histogram | |
//! | `raft_append_entries_failures_total`, `raft_request_vote_failures_total` | counter | |
//! | `raft_append_entries_batch_entries` | histogram | |
//! | `raft_snapshots_total`, `raft_snapshot_bytes_total` | counter | |
//! | `raft_snapshot_duration_seconds` | histogram | |
//! | `raft_proposals_dropped_total` | counter | |

use std::sync::atomic::AtomicU64;

use crate::Counter;
use crate::Gauge;
use crate::Histogram;
use prometheus_client::metrics::family::Family;

use super::{Pairs, handle, pairs};
use crate::{LATENCY_BUCKETS, Metrics};

/// A node's Raft role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaftRole {
    /// Leads the group.
    Leader,
    /// Follows a leader.
    Follower,
    /// Asks for votes.
    Candidate,
}

/// One peer's replication-lag series (`raft_peer_replication_lag_entries` and
/// `_seconds`), from [`RaftMetrics::peer`].
#[derive(Debug, Clone)]
pub struct RaftPeer {
    entries: Gauge,
    seconds: Gauge<f64, AtomicU64>,
}

impl RaftPeer {
    /// How far the peer is behind, in entries and in seconds since it last acknowledged
    /// the leader's last entry.
    #[inline]
    pub fn set_lag(&self, entries: u64, seconds: f64) {
        self.entries.set(i64::try_from(entries).unwrap_or(i64::MAX));
        self.seconds.set(seconds);
    }
}

/// The Raft metric set.
#[derive(Debug, Clone)]
pub struct RaftMetrics {
    term: Gauge,
    roles: [Gauge; 3],
    leader_changes: Counter,
    elections: Counter,
    commit: Gauge,
    applied: Gauge,
    lag_entries: Family<Pairs, Gauge>,
    lag_seconds: Family<Pairs, Gauge<f64, AtomicU64>>,
    append_seconds: Histogram,
    append_failures: Counter,
    append_batch: Histogram,
    vote_seconds: Histogram,
    vote_failures: Counter,
    snapshots: Counter,
    snapshot_bytes: Counter,
    snapshot_seconds: Histogram,
    dropped: Counter,
}

impl RaftMetrics {
    pub(crate) fn new(m: &Metrics) -> Self {
        let state = m.shared(
            "raft_state",
            "1 for this node's current Raft role",
            Family::<Pairs, Gauge>::default,
        );
        let roles = ["leader", "follower", "candidate"].map(|s| handle(&state, &[("state", s)]));
        let lag_entries = m.shared(
            "raft_peer_replication_lag_entries",
            "Entries a peer is behind the leader's last index",
            Family::<Pairs, Gauge>::default,
        );
        let lag_seconds = m.shared(
            "raft_peer_replication_lag_seconds",
            "Time since a peer last acknowledged the leader's last entry",
            Family::<Pairs, Gauge<f64, AtomicU64>>::default,
        );
        Self {
            term: m.gauge("raft_term", "The current Raft term"),
            roles,
            leader_changes: m.counter("raft_leader_changes", "Times the known leader changed"),
            elections: m.counter("raft_elections", "Elections this node started"),
            commit: m.gauge("raft_commit_index", "The highest log index known committed"),
            applied: m.gauge(
                "raft_applied_index",
                "The highest log index applied to the state machine",
            ),
            lag_entries,
            lag_seconds,
            append_seconds: m.histogram(
                "raft_append_entries_duration_seconds",
                "AppendEntries round-trip latency",
                &LATENCY_BUCKETS,
            ),
            append_failures: m.counter(
                "raft_append_entries_failures",
                "AppendEntries calls that failed or were rejected",
            ),
            append_batch: m.histogram(
                "raft_append_entries_batch_entries",
                "Entries per AppendEntries call",
                &[
                    0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0,
                ],
            ),
            vote_seconds: m.histogram(
                "raft_request_vote_duration_seconds",
                "RequestVote round-trip latency",
                &LATENCY_BUCKETS,
            ),
            vote_failures: m.counter(
                "raft_request_vote_failures",
                "RequestVote calls that failed",
            ),
            snapshots: m.counter("raft_snapshots", "Snapshots taken or installed"),
            snapshot_bytes: m.counter(
                "raft_snapshot_bytes",
                "Bytes of snapshots taken or installed",
            ),
            snapshot_seconds: m.histogram(
                "raft_snapshot_duration_seconds",
                "Snapshot duration",
                &LATENCY_BUCKETS,
            ),
            dropped: m.counter(
                "raft_proposals_dropped",
                "Proposals dropped (no leader, queue full)",
            ),
        }
    }

    /// The current term.
    #[inline]
    pub fn set_term(&self, term: u64) {
        self.term.set(term as i64);
    }

    /// This node's role now.
    pub fn set_role(&self, role: RaftRole) {
        for (i, g) in self.roles.iter().enumerate() {
            g.set(i64::from(i == role as usize));
        }
    }

    /// The known leader changed.
    pub fn leader_changed(&self) {
        self.leader_changes.inc();
    }

    /// This node started an election.
    pub fn election(&self) {
        self.elections.inc();
    }

    /// The commit and applied indexes now.
    #[inline]
    pub fn set_indexes(&self, commit: u64, applied: u64) {
        self.commit.set(commit as i64);
        self.applied.set(applied as i64);
    }

    /// How far `peer` is behind, in entries and seconds (leaders report this). Each call
    /// looks the peer's series up by name; a leader reporting lag on every replication
    /// round keeps a [`RaftMetrics::peer`] handle per peer instead.
    pub fn set_peer_lag(&self, peer: &str, entries: u64, seconds: f64) {
        self.peer(peer).set_lag(entries, seconds);
    }

    /// `peer`'s lag series, looked up once: setting them through the handle is two plain
    /// stores. The series show from this call on (at 0 until set), so a leader asks for a
    /// peer's handle when it first has that peer's lag to report. After
    /// [`RaftMetrics::remove_peer`] a handle kept from before no longer shows; ask again if
    /// the peer comes back.
    pub fn peer(&self, peer: &str) -> RaftPeer {
        RaftPeer {
            entries: handle(&self.lag_entries, &[("peer", peer)]),
            seconds: handle(&self.lag_seconds, &[("peer", peer)]),
        }
    }

    /// Forgets a peer that left the group.
    pub fn remove_peer(&self, peer: &str) {
        let l = pairs(&[("peer", peer)]);
        self.lag_entries.remove(&l);
        self.lag_seconds.remove(&l);
    }

    /// An AppendEntries call carrying `entries`, its latency, and whether it succeeded.
    pub fn append_entries(&self, entries: usize, seconds: f64, ok: bool) {
        self.append_seconds.observe(seconds);
        self.append_batch.observe(entries as f64);
        if !ok {
            self.append_failures.inc();
        }
    }

    /// A RequestVote call, its latency, and whether it succeeded.
    pub fn request_vote(&self, seconds: f64, ok: bool) {
        self.vote_seconds.observe(seconds);
        if !ok {
            self.vote_failures.inc();
        }
    }

    /// A snapshot of `bytes` that took `seconds`.
    pub fn snapshot(&self, bytes: u64, seconds: f64) {
        self.snapshots.inc();
        self.snapshot_bytes.inc_by(bytes);
        self.snapshot_seconds.observe(seconds);
    }

    /// A proposal dropped.
    #[inline]
    pub fn proposal_dropped(&self) {
        self.dropped.inc();
    }
}
