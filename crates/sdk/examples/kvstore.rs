//! A small key-value store instrumented with every `lookout-sdk` metric set: a B+tree
//! over pages with a page cache that writes dirty pages to a data file, a write-ahead
//! log with group-commit fsyncs, and three Raft nodes replicating in one process. It
//! serves `/metrics` and `/health` (plus `GET /kv/{key}`) and runs a steady mixed
//! workload until stopped.
//!
//! ```sh
//! cargo run -p lookout-sdk --example kvstore -- --listen 127.0.0.1:9500
//! ```
//!
//! With the `tracing` feature and `OTEL_EXPORTER_OTLP_ENDPOINT` set, it also exports
//! spans there (B+tree operations, page reads, Raft AppendEntries, the HTTP API, which
//! continues a caller's `traceparent`), sampling `OTEL_TRACES_SAMPLER_ARG` of the traces
//! (default 0.01), and its log lines carry trace ids.
//!
//! For the overhead figure (`lookout-bench sdk`), `--ops N` runs N operations as fast as
//! it can, prints `ops=… cpu_seconds=… user_seconds=… max_rss_bytes=…
//! other_threads_cpu_seconds=…` (all but the workload's thread: the endpoint, the health
//! checker) and exits; `--uninstrumented`
//! runs the same store and workload with no metric set, health checker or endpoint (the
//! baseline: every recording call, and every clock read made only for one, is skipped);
//! `--time-one-in N` times about one operation in N (`Options::time_one_in`: every
//! operation is counted, the latency histograms hold a sample). `--interleave` adds an
//! uninstrumented twin of the store, run on the same thread over the same operations a
//! batch each in turn, and prints `instrumented_seconds=… twin_seconds=…`: the two sides
//! share the machine's moment-to-moment speed, which separate runs on a busy VM do not.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lookout_sdk::health::{
    BoxFuture, DatabaseCheck, DatabaseStats, DiskSpaceCheck, HealthChecker, MemoryCheck,
    MonitoredDatabase,
};
use lookout_sdk::sets::{
    BTreeMetrics, BTreeOp, GrpcCall, MemberState, OpTimer, RaftMetrics, RaftPeer, RaftRole,
    StorageMetrics,
};
use lookout_sdk::{Metrics, Options, Stopwatch};

/// Runs `$body` inside `$span` when spans are exported (feature `tracing`); just `$body`
/// otherwise.
#[cfg(feature = "tracing")]
macro_rules! traced {
    ($span:expr, $body:expr) => {{
        let span = $span;
        let _in = span.enter();
        $body
    }};
}
#[cfg(not(feature = "tracing"))]
macro_rules! traced {
    ($span:expr, $body:expr) => {
        $body
    };
}

/// A metric set, or nothing when the store runs uninstrumented.
struct Rec<T>(Option<T>);

impl<T> Rec<T> {
    /// Records through the set, if there is one.
    fn with(&self, f: impl FnOnce(&T)) {
        if let Some(m) = &self.0 {
            f(m);
        }
    }

    /// The time now, read only when it will be recorded.
    fn clock(&self) -> Option<lookout_sdk::Instant> {
        self.0.as_ref().map(|_| lookout_sdk::Instant::now())
    }

    /// Starts timing with `start` if there is a set (never when uninstrumented); the set
    /// decides whether this one is in its sample.
    fn watch(&self, start: impl FnOnce(&T) -> Stopwatch) -> Stopwatch {
        self.0.as_ref().map_or(Stopwatch::untimed(), start)
    }
}

impl Rec<BTreeMetrics> {
    fn start(&self, op: BTreeOp) -> Option<OpTimer> {
        self.0.as_ref().map(|m| m.start(op))
    }

    fn finish(&self, t: Option<OpTimer>, depth: u32) {
        if let (Some(m), Some(t)) = (&self.0, t) {
            t.finish(m, depth);
        }
    }
}

/// Seconds since `t` (a clock read only when instrumented).
fn secs(t: Option<lookout_sdk::Instant>) -> f64 {
    t.map_or(0.0, |t| t.elapsed().as_secs_f64())
}

const ORDER: usize = 32;
const PAGE: usize = 4096;
const CACHE_PAGES: usize = 256;

enum Node {
    Leaf {
        keys: Vec<u64>,
        vals: Vec<u64>,
    },
    Internal {
        keys: Vec<u64>,
        children: Vec<usize>,
    },
}

/// A B+tree whose nodes are pages; a page cache in front of a data file.
struct Store {
    nodes: Vec<Node>,
    /// Nodes in the tree (internal, leaf), kept as it changes: a gauge is set, never
    /// computed by walking the tree.
    counts: (u64, u64),
    root: usize,
    height: u32,
    cache: VecDeque<usize>,
    cached: HashMap<usize, bool>,
    dirty: HashMap<usize, ()>,
    data: File,
    wal: File,
    wal_unsynced: u32,
    queries: u64,
    tree: Rec<BTreeMetrics>,
    storage: Rec<StorageMetrics>,
}

impl Store {
    fn open(dir: &std::path::Path, m: Option<&Metrics>) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let open = |n: &str| {
            OpenOptions::new()
                .create(true)
                .read(true)
                .write(true)
                .truncate(true)
                .open(dir.join(n))
        };
        let storage = Rec(m.map(Metrics::storage));
        storage.with(|s| s.set_buffer_pool((CACHE_PAGES * PAGE) as u64, 0));
        Ok(Self {
            nodes: vec![Node::Leaf {
                keys: Vec::new(),
                vals: Vec::new(),
            }],
            counts: (0, 1),
            root: 0,
            height: 1,
            cache: VecDeque::new(),
            cached: HashMap::new(),
            dirty: HashMap::new(),
            data: open("data")?,
            wal: open("wal")?,
            wal_unsynced: 0,
            queries: 0,
            tree: Rec(m.map(|m| m.btree("primary"))),
            storage,
        })
    }

    /// Touches a page through the cache: a miss reads it from the data file.
    fn touch(&mut self, page: usize) {
        if self.cached.contains_key(&page) {
            self.storage.with(|s| s.cache_hit());
            return;
        }
        self.storage.with(|s| s.cache_miss());
        let t = self.storage.watch(StorageMetrics::stopwatch);
        let mut buf = [0u8; 64];
        traced!(lookout_sdk::trace::page_read(page as u64), {
            let _ = std::os::unix::fs::FileExt::read_at(&self.data, &mut buf, (page * PAGE) as u64);
        });
        self.storage.with(|s| s.page_read(t.seconds()));
        if self.cache.len() >= CACHE_PAGES
            && let Some(old) = self.cache.pop_front()
        {
            self.cached.remove(&old);
            if self.dirty.remove(&old).is_some() {
                self.write_page(old);
            }
            self.storage.with(|s| s.eviction());
        }
        self.cache.push_back(page);
        self.cached.insert(page, true);
    }

    fn write_page(&mut self, page: usize) {
        let t = self.storage.watch(StorageMetrics::stopwatch);
        let used = match &self.nodes[page] {
            Node::Leaf { keys, .. } | Node::Internal { keys, .. } => keys.len(),
        };
        let mut buf = vec![0u8; PAGE];
        buf[..8].copy_from_slice(&(used as u64).to_le_bytes());
        let _ = std::os::unix::fs::FileExt::write_at(&self.data, &buf, (page * PAGE) as u64);
        self.storage.with(|s| s.page_write(t.seconds()));
        self.tree
            .with(|m| m.observe_utilization(used as f64 / ORDER as f64));
    }

    fn get(&mut self, key: u64) -> Option<u64> {
        let t = self.tree.start(BTreeOp::Search);
        self.queries += 1;
        let mut n = self.root;
        let mut depth = 1;
        loop {
            self.touch(n);
            match &self.nodes[n] {
                Node::Internal { keys, children } => {
                    n = children[keys.partition_point(|k| *k <= key)];
                    depth += 1;
                }
                Node::Leaf { keys, vals } => {
                    let r = keys.binary_search(&key).ok().map(|i| vals[i]);
                    self.tree.finish(t, depth);
                    return r;
                }
            }
        }
    }

    fn log(&mut self, op: u8, key: u64, val: u64) {
        let mut rec = [0u8; 17];
        rec[0] = op;
        rec[1..9].copy_from_slice(&key.to_le_bytes());
        rec[9..].copy_from_slice(&val.to_le_bytes());
        let _ = self.wal.write_all(&rec);
        self.storage.with(|s| s.wal_append(rec.len() as u64));
        self.wal_unsynced += 1;
        if self.wal_unsynced >= 64 {
            let t = self.storage.clock();
            let _ = self.wal.sync_data();
            self.storage.with(|s| s.fsync(secs(t)));
            self.wal_unsynced = 0;
        }
    }

    fn put(&mut self, key: u64, val: u64) {
        self.log(1, key, val);
        let t = self.tree.start(BTreeOp::Insert);
        let (depth, split) = self.insert(self.root, key, val);
        if let Some((sep, right)) = split {
            let old = self.root;
            self.nodes.push(Node::Internal {
                keys: vec![sep],
                children: vec![old, right],
            });
            self.root = self.nodes.len() - 1;
            self.height += 1;
            self.counts.0 += 1;
            let h = self.height;
            self.tree.with(|m| m.set_height(h));
        }
        self.tree.finish(t, depth);
        self.after_write();
    }

    /// Inserts below `n`; returns the depth reached and a split to apply above.
    fn insert(&mut self, n: usize, key: u64, val: u64) -> (u32, Option<(u64, usize)>) {
        self.touch(n);
        self.dirty.insert(n, ());
        match &mut self.nodes[n] {
            Node::Leaf { keys, vals } => {
                match keys.binary_search(&key) {
                    Ok(i) => vals[i] = val,
                    Err(i) => {
                        keys.insert(i, key);
                        vals.insert(i, val);
                    }
                }
                if keys.len() <= ORDER {
                    return (1, None);
                }
                let rk = keys.split_off(ORDER / 2);
                let rv = vals.split_off(ORDER / 2);
                let sep = rk[0];
                self.nodes.push(Node::Leaf { keys: rk, vals: rv });
                self.counts.1 += 1;
                self.tree.with(BTreeMetrics::split);
                (1, Some((sep, self.nodes.len() - 1)))
            }
            Node::Internal { keys, children } => {
                let i = keys.partition_point(|k| *k <= key);
                let child = children[i];
                let (depth, split) = self.insert(child, key, val);
                let Some((sep, right)) = split else {
                    return (depth + 1, None);
                };
                let Node::Internal { keys, children } = &mut self.nodes[n] else {
                    unreachable!("n is internal");
                };
                keys.insert(i, sep);
                children.insert(i + 1, right);
                if keys.len() <= ORDER {
                    return (depth + 1, None);
                }
                let mid = keys.len() / 2;
                let up = keys[mid];
                let rk = keys.split_off(mid + 1);
                keys.pop();
                let rc = children.split_off(mid + 1);
                self.nodes.push(Node::Internal {
                    keys: rk,
                    children: rc,
                });
                self.counts.0 += 1;
                self.tree.with(BTreeMetrics::split);
                (depth + 1, Some((up, self.nodes.len() - 1)))
            }
        }
    }

    fn delete(&mut self, key: u64) {
        self.log(2, key, 0);
        let t = self.tree.start(BTreeOp::Delete);
        let mut n = self.root;
        let mut depth = 1;
        let mut parent: Option<(usize, usize)> = None;
        loop {
            self.touch(n);
            match &self.nodes[n] {
                Node::Internal { keys, children } => {
                    let i = keys.partition_point(|k| *k <= key);
                    parent = Some((n, i));
                    n = children[i];
                    depth += 1;
                }
                Node::Leaf { .. } => break,
            }
        }
        self.dirty.insert(n, ());
        let empty = match &mut self.nodes[n] {
            Node::Leaf { keys, vals } => {
                if let Ok(i) = keys.binary_search(&key) {
                    keys.remove(i);
                    vals.remove(i);
                }
                keys.is_empty()
            }
            Node::Internal { .. } => false,
        };
        // An empty leaf leaves its parent when the parent keeps another child.
        if empty
            && let Some((p, i)) = parent
            && let Node::Internal { keys, children } = &mut self.nodes[p]
            && children.len() > 1
        {
            children.remove(i);
            keys.remove(i.min(keys.len() - 1));
            self.counts.1 -= 1;
            self.tree.with(BTreeMetrics::merge);
        }
        self.tree.finish(t, depth);
        self.after_write();
    }

    fn after_write(&mut self) {
        let dirty = self.dirty.len() as u64;
        self.storage.with(|s| s.set_dirty_pages(dirty));
        if self.dirty.len() >= 64 {
            let t = self.storage.clock();
            let pages: Vec<usize> = self.dirty.drain().map(|(p, ())| p).collect();
            for p in pages {
                self.write_page(p);
            }
            let f = self.storage.clock();
            let _ = self.data.sync_data();
            self.storage.with(|s| {
                s.fsync(secs(f));
                s.flush(secs(t));
            });
            // The log up to here is in the data file now.
            let _ = self.wal.set_len(0);
            let _ = self.wal.seek(SeekFrom::Start(0));
        }
        if self.queries.is_multiple_of(256) {
            let (internal, leaf) = self.counts;
            self.tree.with(|m| m.set_nodes(internal, leaf));
            let used = (self.cache.len() * PAGE) as u64;
            self.storage
                .with(|s| s.set_buffer_pool((CACHE_PAGES * PAGE) as u64, used));
        }
        self.queries += 1;
    }
}

/// Three Raft nodes in one process: the leader appends an entry per write, followers
/// acknowledge at their own pace, and now and then the leader steps down.
struct Raft {
    term: u64,
    leader: usize,
    last: u64,
    matched: [u64; 3],
    acked_at: [lookout_sdk::Instant; 3],
    applied: u64,
    metrics: Rec<RaftMetrics>,
    /// Each follower's lag series, looked up the first time the leader reports it (a
    /// handle shows its series from when it is made, and the leader has no lag of its own).
    peers: [Option<RaftPeer>; 3],
    rng: u64,
    rounds: u64,
}

impl Raft {
    fn next(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn propose(&mut self) {
        self.last += 1;
        self.matched[self.leader] = self.last;
    }

    /// One replication round.
    fn tick(&mut self) {
        for (peer, name) in PEERS.iter().enumerate() {
            if peer == self.leader {
                continue;
            }
            let t = self.metrics.clock();
            let behind = self.last - self.matched[peer];
            // Followers take most of what is sent; one in fifty calls fails.
            let ok = !self.next().is_multiple_of(50);
            let take = if ok {
                behind - behind / (2 + self.next() % 4)
            } else {
                0
            };
            self.matched[peer] += take;
            if take > 0
                && let Some(now) = self.metrics.clock()
            {
                self.acked_at[peer] = now;
            }
            let lag = self.last - self.matched[peer];
            let acked_at = self.acked_at[peer];
            #[cfg(feature = "tracing")]
            {
                let span = lookout_sdk::trace::raft_append(
                    name,
                    self.term,
                    self.last - behind + 1,
                    take as usize,
                );
                span.record("raft.success", ok);
                let _in = span.enter();
            }
            self.metrics
                .with(|m| m.append_entries(take as usize, secs(t) + 0.0005, ok));
            if let Some(m) = &self.metrics.0 {
                let behind = if lag == 0 {
                    0.0
                } else {
                    acked_at.elapsed().as_secs_f64()
                };
                self.peers[peer]
                    .get_or_insert_with(|| m.peer(name))
                    .set_lag(lag, behind);
            }
        }
        let mut m = self.matched;
        m.sort_unstable();
        let commit = m[1];
        self.applied = commit;
        let applied = self.applied;
        self.metrics.with(|m| m.set_indexes(commit, applied));
        if self.next().is_multiple_of(400) {
            // The leader steps down: an election, won by another node.
            self.term += 1;
            self.leader = (self.leader + 1) % 3;
            let (term, leader) = (self.term, self.leader);
            // The new leader has no lag of its own to show.
            self.peers[leader] = None;
            self.metrics.with(|m| {
                m.remove_peer(PEERS[leader]);
                m.set_role(RaftRole::Candidate);
                m.election();
                for _ in 0..2 {
                    m.request_vote(0.001, true);
                }
                m.set_term(term);
                m.leader_changed();
                m.set_role(if leader == 0 {
                    RaftRole::Leader
                } else {
                    RaftRole::Follower
                });
            });
        }
        // A snapshot every 250 rounds (compacting the log).
        self.rounds += 1;
        if self.rounds.is_multiple_of(250) {
            let bytes = self.last * 17;
            self.metrics.with(|m| m.snapshot(bytes, 0.02));
        }
    }
}

/// Operations in a batch: then a Raft replication round.
const BATCH: u64 = 200;

/// One store's workload: the store, its Raft group and the RPC handles it records
/// through (none when uninstrumented), and the generator of its keys.
struct Workload {
    store: Arc<Mutex<Store>>,
    raft: Raft,
    rpc: Rec<GrpcCall>,
    put_rpc: Rec<GrpcCall>,
    x: u64,
}

impl Workload {
    /// The workload over `store`, recording through `metrics` if given; two made alike run
    /// the same operations.
    fn new(store: Arc<Mutex<Store>>, metrics: Option<&Metrics>) -> Self {
        let raft_metrics = Rec(metrics.map(Metrics::raft));
        raft_metrics.with(|m| {
            m.set_term(1);
            m.set_role(RaftRole::Leader);
        });
        let net = metrics.map(Metrics::network);
        Self {
            store,
            raft: Raft {
                term: 1,
                leader: 0,
                last: 0,
                matched: [0; 3],
                acked_at: [lookout_sdk::Instant::now(); 3],
                applied: 0,
                peers: [None, None, None],
                metrics: raft_metrics,
                rng: 0x9e37_79b9_7f4a_7c15,
                rounds: 0,
            },
            rpc: Rec(net.as_ref().map(|n| n.grpc_server("unary", "kv.KV", "Get"))),
            put_rpc: Rec(net.as_ref().map(|n| n.grpc_server("unary", "kv.KV", "Put"))),
            x: 0x2545_f491_4f6c_dd1d,
        }
    }

    /// [`BATCH`] mixed operations (one in twenty a delete, a quarter puts, the rest gets)
    /// and a replication round.
    fn batch(&mut self) {
        for _ in 0..BATCH {
            let x = &mut self.x;
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            let x = *x;
            let key = x % 100_000;
            let t = self.rpc.watch(GrpcCall::stopwatch);
            let mut s = self.store.lock().expect("store lock");
            match x % 20 {
                0 => traced!(
                    lookout_sdk::trace::btree(BTreeOp::Delete, "primary"),
                    s.delete(key)
                ),
                1..=5 => {
                    traced!(
                        lookout_sdk::trace::btree(BTreeOp::Insert, "primary"),
                        s.put(key, x)
                    );
                    self.raft.propose();
                    self.put_rpc.with(|r| {
                        r.start();
                        r.handled(0, t.seconds());
                    });
                }
                _ => {
                    let found = traced!(
                        lookout_sdk::trace::btree(BTreeOp::Search, "primary"),
                        s.get(key).is_some()
                    );
                    self.rpc.with(|r| {
                        r.start();
                        r.handled(if found { 0 } else { 5 }, t.seconds());
                    });
                }
            }
        }
        self.raft.tick();
    }
}

const PEERS: [&str; 3] = ["n1", "n2", "n3"];

struct Db(Arc<Mutex<Store>>);

impl MonitoredDatabase for Db {
    fn ping(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            self.0.lock().map_err(|e| e.to_string())?.get(0);
            Ok(())
        })
    }

    fn stats(&self) -> BoxFuture<'_, DatabaseStats> {
        Box::pin(async move {
            let s = self.0.lock().expect("store lock");
            DatabaseStats {
                connections: 1,
                queries: s.queries,
                storage_bytes: s.data.metadata().map_or(0, |m| m.len()),
                cache_hit_ratio: None,
            }
        })
    }
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// The process's user and system CPU seconds and peak resident memory.
fn usage() -> (f64, f64, u64) {
    let me = procfs::process::Process::myself().expect("/proc/self");
    let stat = me.stat().expect("/proc/self/stat");
    let tick = procfs::ticks_per_second() as f64;
    let hwm = me.status().ok().and_then(|s| s.vmhwm).unwrap_or(0) * 1024;
    (stat.utime as f64 / tick, stat.stime as f64 / tick, hwm)
}

/// The calling thread's user + system CPU seconds (`/proc/thread-self/stat`, fields 14
/// and 15 after the command name).
fn thread_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    ticks as f64 / procfs::ticks_per_second() as f64
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::io::Result<()> {
    let listen = arg("--listen").unwrap_or_else(|| "127.0.0.1:9500".into());
    let dir = arg("--data")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("kvstore-{}", std::process::id())));
    let ops: Option<u64> = arg("--ops").map(|n| n.parse().expect("--ops takes a number"));
    let instrumented = !std::env::args().any(|a| a == "--uninstrumented");
    #[cfg(feature = "tracing")]
    let _tracing = (instrumented && std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some())
        .then(|| {
            lookout_sdk::trace::init(lookout_sdk::trace::TracingOptions {
                service_name: "kvstore".into(),
                service_version: env!("CARGO_PKG_VERSION").into(),
                instance_id: "n1".into(),
                sampling_ratio: std::env::var("OTEL_TRACES_SAMPLER_ARG")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.01),
                ..Default::default()
            })
            .expect("setting up tracing")
        });
    let time_one_in: u32 = arg("--time-one-in").map_or(1, |n| {
        n.parse()
            .expect("--time-one-in takes a number of operations")
    });
    let metrics = instrumented.then(|| {
        Metrics::new(
            Options::default()
                .label("service", "kvstore")
                .label("node", "n1")
                .time_one_in(time_one_in),
        )
    });
    let store = Arc::new(Mutex::new(Store::open(&dir, metrics.as_ref())?));
    let net = metrics.as_ref().map(Metrics::network);
    let get_route = Rec(net.as_ref().map(|n| n.http_server("GET", "/kv/{key}")));
    let health = match &metrics {
        Some(m) => {
            m.process();
            m.info(
                "kvstore_build",
                "Build facts",
                &[("version", env!("CARGO_PKG_VERSION"))],
            );
            let membership = m.membership();
            membership.set_members(MemberState::Alive, 3);
            for _ in 0..3 {
                membership.joined();
            }
            let health = Arc::new(HealthChecker::new(
                Duration::from_secs(5),
                Duration::from_secs(2),
            ));
            health.add(DiskSpaceCheck::new(&dir, 0.05));
            health.add(MemoryCheck::new(1 << 30));
            health.add(DatabaseCheck::new(
                Arc::new(Db(Arc::clone(&store))),
                Duration::from_millis(50),
            ));
            Arc::clone(&health).spawn();
            Some(health)
        }
        None => None,
    };

    // The workload: mixed reads, writes and deletes over 100,000 keys, paced to a steady
    // rate; with --ops, that many as fast as they go, then the figures and exit. With
    // --interleave, an uninstrumented twin of the store runs the same operations on the
    // same thread, a batch each in turn, and each side's time is printed.
    let mut work = Workload::new(Arc::clone(&store), metrics.as_ref());
    let mut twin = match std::env::args().any(|a| a == "--interleave") {
        true => Some(Workload::new(
            Arc::new(Mutex::new(Store::open(&dir.join("twin"), None)?)),
            None,
        )),
        false => None,
    };
    std::thread::spawn(move || {
        let mut done = 0u64;
        // Seconds spent in the instrumented store's batches and in its twin's.
        let mut sides = [0.0f64; 2];
        loop {
            match &mut twin {
                Some(twin) => {
                    // Whichever goes first pays for the other's cache misses: the order
                    // alternates (ABBA) so that neither side always does.
                    let twin_first = (done / BATCH).is_multiple_of(2);
                    for turn in [twin_first, !twin_first] {
                        let t = std::time::Instant::now();
                        if turn {
                            twin.batch();
                        } else {
                            work.batch();
                        }
                        sides[usize::from(turn)] += t.elapsed().as_secs_f64();
                    }
                }
                None => work.batch(),
            }
            done += BATCH;
            match ops {
                Some(n) if done >= n => {
                    let (user, sys, rss) = usage();
                    // What the other threads took: the endpoint, the health checker.
                    let others = (user + sys - thread_cpu()).max(0.0);
                    let interleaved = match twin {
                        Some(_) => format!(
                            " instrumented_seconds={:.6} twin_seconds={:.6}",
                            sides[0], sides[1]
                        ),
                        None => String::new(),
                    };
                    println!(
                        "ops={done} cpu_seconds={:.3} user_seconds={user:.3} max_rss_bytes={rss} other_threads_cpu_seconds={others:.3}{interleaved}",
                        user + sys
                    );
                    std::process::exit(0);
                }
                Some(_) => {}
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });

    let kv = Arc::clone(&store);
    let get_route = Arc::new(get_route);
    let api = axum::Router::new().route(
        "/kv/{key}",
        axum::routing::get(move |axum::extract::Path(key): axum::extract::Path<u64>| {
            let kv = Arc::clone(&kv);
            let route = Arc::clone(&get_route);
            async move {
                let t = route.clock();
                let v = kv.lock().expect("store lock").get(key);
                let (code, body) = match v {
                    Some(v) => (200, v.to_string()),
                    None => (404, "not found".to_string()),
                };
                route.with(|r| r.record(code, secs(t)));
                (axum::http::StatusCode::from_u16(code).expect("valid"), body)
            }
        }),
    );
    #[cfg(feature = "tracing")]
    let api = api.layer(lookout_sdk::trace::TraceLayer);
    let app = match (metrics, health) {
        (Some(m), Some(h)) => lookout_sdk::http::router(m, h).merge(api),
        _ => api,
    };
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}
