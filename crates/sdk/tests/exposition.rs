//! Every metric set's names, types and labels as a real scrape reads them: the endpoint
//! served on a free port, `/metrics` fetched over HTTP and parsed by Lookout's own
//! OpenMetrics parser; the health routes answer in Lookout's `/health` shape.

use std::sync::Arc;
use std::time::Duration;

use lookout_sdk::health::{HealthChecker, Status};
use lookout_sdk::sets::{BTreeOp, MemberState, RaftRole};
use lookout_sdk::{Metrics, Options};

async fn serve(m: Metrics, h: Arc<HealthChecker>) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(lookout_sdk::http::serve_on(l, m, h));
    base
}

fn get(url: String) -> (u16, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let r = reqwest::blocking::get(url).unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_set_is_exposed_under_its_documented_names() {
    let m = Metrics::new(
        Options::default()
            .label("service", "kv")
            .label("node", "n1"),
    );
    let tree = m.btree("primary");
    let t = tree.start(BTreeOp::Insert);
    t.finish(&tree, 3);
    tree.record(BTreeOp::Search, 0.000_2, 2);
    tree.split();
    tree.set_height(3);
    tree.set_nodes(10, 90);
    tree.observe_utilization(0.7);
    let st = m.storage();
    st.page_read(0.001);
    st.page_write(0.002);
    st.cache_hit();
    st.cache_miss();
    st.eviction();
    st.set_dirty_pages(4);
    st.set_buffer_pool(1 << 20, 1 << 19);
    st.flush(0.01);
    st.fsync(0.004);
    st.compaction(4096, 0.5);
    st.wal_append(128);
    let raft = m.raft();
    raft.set_term(7);
    raft.set_role(RaftRole::Leader);
    raft.leader_changed();
    raft.election();
    raft.set_indexes(100, 99);
    raft.set_peer_lag("n2", 3, 0.25);
    let n3 = raft.peer("n3");
    n3.set_lag(9, 1.0);
    n3.set_lag(u64::MAX, 0.5);
    raft.append_entries(8, 0.003, true);
    raft.append_entries(0, 0.5, false);
    raft.request_vote(0.002, true);
    raft.snapshot(1 << 20, 1.5);
    raft.proposal_dropped();
    let net = m.network();
    let get_rpc = net.grpc_server("unary", "kv.KV", "Get");
    get_rpc.start();
    get_rpc.handled(0, 0.001);
    get_rpc.handled(5, 0.002);
    net.grpc_client("unary", "raft.Raft", "AppendEntries")
        .handled(14, 0.1);
    net.http_server("GET", "/keys/{key}").record(200, 0.003);
    net.http_client("POST", "n2:7000").record(503, 0.2);
    net.connection_opened(true);
    net.received(100);
    net.sent(200);
    let mem = m.membership();
    mem.set_members(MemberState::Alive, 3);
    mem.joined();
    mem.partition_detected();
    m.process();
    m.info("kvstore_build", "Build facts", &[("version", "1.2.3")]);
    let custom = m.counter("kvstore_compaction_stalls", "Writes stalled by compaction");
    custom.inc();

    let h = Arc::new(HealthChecker::new(
        Duration::from_secs(60),
        Duration::from_secs(2),
    ));
    h.add(lookout_sdk::health::DiskSpaceCheck::new("/", 0.0));
    h.run().await;
    let base = serve(m.clone(), Arc::clone(&h)).await;
    let (code, text) = tokio::task::spawn_blocking({
        let base = base.clone();
        move || get(format!("{base}/metrics"))
    })
    .await
    .unwrap();
    assert_eq!(code, 200);
    let exp = lookout_expfmt::parse(&text, lookout_expfmt::Format::OpenMetrics)
        .unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    let type_of = |family: &str| exp.types.iter().find(|t| t.0 == family).map(|t| t.1);
    for (family, kind) in [
        ("btree_operations", "counter"),
        ("btree_operation_duration_seconds", "histogram"),
        ("btree_traversal_depth", "histogram"),
        ("btree_node_splits", "counter"),
        ("btree_node_merges", "counter"),
        ("btree_height", "gauge"),
        ("btree_nodes", "gauge"),
        ("btree_node_utilization_ratio", "histogram"),
        ("storage_page_reads", "counter"),
        ("storage_page_writes", "counter"),
        ("storage_cache_hits", "counter"),
        ("storage_cache_misses", "counter"),
        ("storage_cache_evictions", "counter"),
        ("storage_cache_dirty_pages", "gauge"),
        ("storage_buffer_pool_bytes", "gauge"),
        ("storage_buffer_pool_used_bytes", "gauge"),
        ("storage_flushes", "counter"),
        ("storage_flush_duration_seconds", "histogram"),
        ("storage_fsyncs", "counter"),
        ("storage_fsync_duration_seconds", "histogram"),
        ("storage_disk_io_duration_seconds", "histogram"),
        ("storage_compactions", "counter"),
        ("storage_compaction_bytes", "counter"),
        ("storage_compaction_duration_seconds", "histogram"),
        ("storage_wal_appends", "counter"),
        ("storage_wal_bytes", "counter"),
        ("storage_wal_append_size_bytes", "histogram"),
        ("raft_term", "gauge"),
        ("raft_state", "gauge"),
        ("raft_leader_changes", "counter"),
        ("raft_elections", "counter"),
        ("raft_commit_index", "gauge"),
        ("raft_applied_index", "gauge"),
        ("raft_peer_replication_lag_entries", "gauge"),
        ("raft_peer_replication_lag_seconds", "gauge"),
        ("raft_append_entries_duration_seconds", "histogram"),
        ("raft_append_entries_failures", "counter"),
        ("raft_append_entries_batch_entries", "histogram"),
        ("raft_request_vote_duration_seconds", "histogram"),
        ("raft_request_vote_failures", "counter"),
        ("raft_snapshots", "counter"),
        ("raft_snapshot_bytes", "counter"),
        ("raft_snapshot_duration_seconds", "histogram"),
        ("raft_proposals_dropped", "counter"),
        ("grpc_server_started", "counter"),
        ("grpc_server_handled", "counter"),
        ("grpc_server_handling_seconds", "histogram"),
        ("grpc_client_handled", "counter"),
        ("http_server_request_duration_seconds", "histogram"),
        ("http_client_request_duration_seconds", "histogram"),
        ("network_connections_open", "gauge"),
        ("network_received_bytes", "counter"),
        ("network_sent_bytes", "counter"),
        ("membership_members", "gauge"),
        ("membership_changes", "counter"),
        ("membership_partitions_detected", "counter"),
        ("membership_partitions_healed", "counter"),
        ("process_cpu_seconds", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_threads", "gauge"),
        ("tokio_workers", "gauge"),
        ("tokio_worker_busy_seconds", "counter"),
        ("kvstore_build", "info"),
        ("kvstore_compaction_stalls", "counter"),
    ] {
        assert_eq!(type_of(family), Some(kind), "{family}");
    }
    let value = |name: &str, want: &[(&str, &str)]| -> f64 {
        exp.samples
            .iter()
            .find(|s| {
                s.name == name
                    && want
                        .iter()
                        .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .unwrap_or_else(|| panic!("{name} {want:?} missing:\n{text}"))
            .value
    };
    // Global labels on every series, the recorded values where they belong.
    assert!(
        exp.samples
            .iter()
            .all(|s| s.labels.iter().any(|(k, v)| *k == "service" && v == "kv")),
        "every series carries the global labels"
    );
    assert_eq!(
        value(
            "btree_operations_total",
            &[("tree", "primary"), ("op", "insert")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "btree_operation_duration_seconds_count",
            &[("op", "search")]
        ),
        1.0
    );
    assert_eq!(value("btree_nodes", &[("kind", "leaf")]), 90.0);
    assert_eq!(value("raft_state", &[("state", "leader")]), 1.0);
    assert_eq!(value("raft_state", &[("state", "follower")]), 0.0);
    assert_eq!(
        value("raft_peer_replication_lag_entries", &[("peer", "n2")]),
        3.0
    );
    assert_eq!(
        value("raft_peer_replication_lag_entries", &[("peer", "n3")]),
        i64::MAX as f64,
        "a peer's handle sets its series; a lag past i64 saturates"
    );
    assert_eq!(
        value("raft_peer_replication_lag_seconds", &[("peer", "n3")]),
        0.5
    );
    assert_eq!(value("raft_append_entries_failures_total", &[]), 1.0);
    assert_eq!(
        value(
            "grpc_server_handled_total",
            &[("grpc_method", "Get"), ("grpc_code", "NotFound")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "grpc_server_handled_total",
            &[("grpc_method", "Get"), ("grpc_code", "Unauthenticated")]
        ),
        0.0,
        "every code exists up front"
    );
    assert_eq!(
        value(
            "http_server_request_duration_seconds_count",
            &[
                ("http_route", "/keys/{key}"),
                ("http_response_status_code", "200")
            ]
        ),
        1.0
    );
    assert_eq!(value("storage_wal_bytes_total", &[]), 128.0);
    assert_eq!(value("membership_members", &[("state", "alive")]), 3.0);
    assert!(value("process_resident_memory_bytes", &[]) > 1e6);
    assert_eq!(value("kvstore_build_info", &[("version", "1.2.3")]), 1.0);

    let (code, body) = tokio::task::spawn_blocking({
        let base = base.clone();
        move || get(format!("{base}/health"))
    })
    .await
    .unwrap();
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "healthy");
    assert_eq!(v["checks"][0]["name"], "disk_space");
    h.add(lookout_sdk::health::DiskSpaceCheck::new(
        "/no/such/place",
        0.1,
    ));
    assert_eq!(h.run().await.status, Status::Unhealthy);
    let (code, _) = tokio::task::spawn_blocking({
        let base = base.clone();
        move || get(format!("{base}/health/ready"))
    })
    .await
    .unwrap();
    assert_eq!(code, 503);
    let (code, _) = tokio::task::spawn_blocking(move || get(format!("{base}/health/live")))
        .await
        .unwrap();
    assert_eq!(code, 200);
}

#[tokio::test]
async fn the_layer_records_http_and_grpc_requests() {
    use tower::ServiceExt;
    let m = Metrics::new(Options::default());
    let layer = lookout_sdk::http::MetricsLayer::new(m.network());
    let app = axum::Router::new()
        .route("/kv/{key}", axum::routing::get(|| async { "v" }))
        .route(
            "/kv.KV/Get",
            axum::routing::post(|| async { ([("grpc-status", "5")], "") }),
        )
        // tonic's usual answer: a message, then the status in the trailers.
        .route(
            "/kv.KV/Put",
            axum::routing::post(|| async {
                let mut trailers = axum::http::HeaderMap::new();
                trailers.insert("grpc-status", "7".parse().unwrap());
                axum::body::Body::new(Frames(
                    [
                        http_body::Frame::data(axum::body::Bytes::from_static(b"\0\0\0\0\0")),
                        http_body::Frame::trailers(trailers),
                    ]
                    .into(),
                ))
            }),
        )
        .route(
            "/kv.KV/Scan",
            axum::routing::post(|| async { "a message and no status" }),
        )
        .layer(layer);
    for uri in ["/kv/a", "/kv/b"] {
        let r = app
            .clone()
            .oneshot(
                axum::http::Request::get(uri)
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let grpc = axum::http::Request::post("/kv.KV/Get")
        .header("content-type", "application/grpc")
        .body(axum::body::Body::empty())
        .unwrap();
    app.clone().oneshot(grpc).await.unwrap();
    let grpc = |path: &str| {
        axum::http::Request::post(path)
            .header("content-type", "application/grpc")
            .body(axum::body::Body::empty())
            .unwrap()
    };
    // Read to the end: the trailers' status is recorded then, not before.
    use http_body_util::BodyExt;
    let r = app.clone().oneshot(grpc("/kv.KV/Put")).await.unwrap();
    assert!(
        !m.encode()
            .contains(r#"grpc_method="Put",grpc_code="PermissionDenied"} 1"#)
    );
    let body = r.into_body().collect().await.unwrap();
    assert_eq!(body.trailers().unwrap()["grpc-status"], "7");
    let r = app.clone().oneshot(grpc("/kv.KV/Scan")).await.unwrap();
    r.into_body().collect().await.unwrap();
    // The client goes before the answer ends.
    drop(app.clone().oneshot(grpc("/kv.KV/Put")).await.unwrap());
    let text = m.encode();
    for (method, code) in [
        ("Put", "PermissionDenied"),
        ("Scan", "Unknown"),
        ("Put", "Canceled"),
    ] {
        assert!(
            text.contains(&format!(r#"grpc_method="{method}",grpc_code="{code}"}} 1"#)),
            "{method} {code}: {text}"
        );
    }
    assert!(text.contains(r#"grpc_server_started_total{grpc_type="unary",grpc_service="kv.KV",grpc_method="Put"} 2"#), "{text}");
    assert!(
        text.contains(r#"http_server_request_duration_seconds_count{http_request_method="GET",http_route="/kv/{key}",http_response_status_code="200"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"grpc_server_handled_total{grpc_type="unary",grpc_service="kv.KV",grpc_method="Get",grpc_code="NotFound"} 1"#),
        "{text}"
    );
}

/// A body made of the given frames, in order (data, then trailers, as gRPC answers).
struct Frames(std::collections::VecDeque<http_body::Frame<axum::body::Bytes>>);

impl http_body::Body for Frames {
    type Data = axum::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(Ok))
    }
}

/// The value of the series `line_start` (name and labels as exposed) in `text`.
fn value(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{line_start} in\n{text}"))
}

#[test]
fn timing_a_sample_counts_every_operation_and_times_about_one_in_n() {
    let m = Metrics::new(Options::default().time_one_in(8));
    assert_eq!(m.timing().rate(), 8);
    let tree = m.btree("primary");
    let st = m.storage();
    let grpc = m.network().grpc_server("unary", "kv.KV", "Get");
    let n = 16_000;
    for _ in 0..n {
        tree.start(BTreeOp::Search).finish(&tree, 3);
        st.page_read(st.stopwatch().seconds());
        let w = grpc.stopwatch();
        grpc.start();
        grpc.handled(0, w.seconds());
        tree.observe_utilization(0.5);
        st.wal_append(17);
    }
    // Not timed: counted, not observed; timed by hand: observed.
    st.fsync(None);
    st.fsync(0.001);
    let text = m.encode();
    let n = f64::from(n);
    assert_eq!(
        value(
            &text,
            r#"btree_operations_total{tree="primary",op="search"}"#
        ),
        n
    );
    assert_eq!(value(&text, "storage_page_reads_total"), n);
    assert_eq!(value(&text, "storage_wal_appends_total"), n);
    assert_eq!(value(&text, "storage_wal_bytes_total"), 17.0 * n);
    assert_eq!(
        value(
            &text,
            r#"grpc_server_handled_total{grpc_type="unary",grpc_service="kv.KV",grpc_method="Get",grpc_code="OK"}"#
        ),
        n
    );
    for sampled in [
        r#"btree_operation_duration_seconds_count{tree="primary",op="search"}"#,
        r#"btree_traversal_depth_count{tree="primary"}"#,
        r#"btree_node_utilization_ratio_count{tree="primary"}"#,
        "storage_wal_append_size_bytes_count",
        r#"storage_disk_io_duration_seconds_count{op="read"}"#,
        r#"grpc_server_handling_seconds_count{grpc_type="unary",grpc_service="kv.KV",grpc_method="Get"}"#,
    ] {
        let c = value(&text, sampled);
        assert!(
            (c - n / 8.0).abs() < n / 8.0 * 0.15,
            "{sampled}: {c} timed of {n}, about one in 8 expected"
        );
    }
    assert_eq!(value(&text, "storage_fsyncs_total"), 2.0);
    assert_eq!(value(&text, "storage_fsync_duration_seconds_count"), 1.0);
}

/// Every `# TYPE` line's family name in `text`, in order.
fn families(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
        .collect()
}

#[test]
fn each_name_is_exposed_once_however_often_it_is_asked_for() {
    let m = Metrics::new(Options::default().label("node", "n1"));
    // Two trees, two Raft groups' sets, the storage and network sets asked for twice,
    // the process collector twice: every family once, the trees told apart by label.
    let primary = m.btree("primary");
    let by_email = m.btree("by_email");
    primary.record(BTreeOp::Search, None, 3);
    by_email.record(BTreeOp::Search, None, 2);
    by_email.record(BTreeOp::Insert, None, 2);
    let (r1, r2) = (m.raft(), m.raft());
    r1.set_term(4);
    r2.election();
    m.storage().cache_hit();
    m.storage().cache_hit();
    m.network().grpc_server("unary", "kv.KV", "Get").start();
    m.network().grpc_server("unary", "kv.KV", "Get").start();
    m.membership().joined();
    m.membership().joined();
    m.process();
    m.process();
    // The same counter asked for twice (once with the `_total` the exposition adds) is
    // one counter; a gauge by a counter's name, an invalid name, a second info metric.
    m.counter("kv_stalls", "Stalls").inc();
    m.counter("kv_stalls_total", "Stalls").inc_by(2);
    m.gauge("kv_stalls", "Not a counter").set(99);
    m.counter("kv.write-stalls", "Dotted").inc();
    m.info(
        "kv_build",
        "Build",
        &[("version", "1.0"), ("git-sha", "abc")],
    );
    m.info("kv_build_info", "Again", &[("version", "2.0")]);

    let text = m.encode();
    let exp = lookout_expfmt::parse(&text, lookout_expfmt::Format::OpenMetrics)
        .unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    let mut seen = std::collections::HashSet::new();
    for f in families(&text) {
        assert!(seen.insert(f), "{f} exposed twice:\n{text}");
    }
    assert!(seen.len() > 40, "{seen:?}");
    assert_eq!(
        value(
            &text,
            r#"btree_operations_total{node="n1",tree="primary",op="search"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"btree_operations_total{node="n1",tree="by_email",op="search"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"btree_operations_total{node="n1",tree="by_email",op="insert"}"#
        ),
        1.0
    );
    assert_eq!(value(&text, r#"raft_term{node="n1"}"#), 4.0);
    assert_eq!(value(&text, r#"raft_elections_total{node="n1"}"#), 1.0);
    assert_eq!(value(&text, r#"storage_cache_hits_total{node="n1"}"#), 2.0);
    assert_eq!(
        value(
            &text,
            r#"grpc_server_started_total{node="n1",grpc_type="unary",grpc_service="kv.KV",grpc_method="Get"}"#
        ),
        2.0
    );
    assert_eq!(value(&text, r#"kv_stalls_total{node="n1"}"#), 3.0);
    assert!(
        !text.contains("kv_stalls{"),
        "the gauge is not exposed:\n{text}"
    );
    assert!(!text.contains("kv_stalls_total_total"), "{text}");
    assert_eq!(value(&text, r#"kv_write_stalls_total{node="n1"}"#), 1.0);
    assert!(
        text.contains(r#"kv_build_info{node="n1",version="1.0",git_sha="abc"} 1"#),
        "{text}"
    );
    assert!(
        !text.contains(r#"version="2.0""#),
        "the second info is not exposed:\n{text}"
    );
    assert!(
        exp.types.iter().any(|t| t.0 == "kv_build"),
        "{:?}",
        exp.types
    );
}
