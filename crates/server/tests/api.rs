//! The HTTP API over a real router with an in-memory store: JSON shapes, error mapping
//! and health grading. (The binary's end-to-end tests cover the same over a socket.)

use lookout_model::status::{CollectorStatus, HeadStatus, Statement, TargetStatus};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use lookout_model::Labels;
use lookout_promql::Engine;
use lookout_server::health::FnCheck;
use lookout_server::{AppState, BuildInfo, CheckResult, HealthCheck, HealthStatus, router};
use lookout_storage::{Appendable, MemStorage};
use prometheus_client::registry::Registry;
use tower::ServiceExt;

/// Fixed status facts for the router tests.
struct StaticInfo;

impl lookout_server::ServerInfo for StaticInfo {
    fn config_yaml(&self) -> String {
        "global:\n  scrape_interval: 15s\n".into()
    }
    fn flags(&self) -> Vec<(String, String)> {
        vec![("storage.tsdb.path".into(), "data".into())]
    }
    fn runtime_info(&self) -> serde_json::Value {
        serde_json::json!({"storageRetention": "15d"})
    }
    fn tsdb_status(&self, _limit: usize) -> HeadStatus {
        HeadStatus {
            num_series: 2,
            series_by_metric: vec![("c_total".into(), 1)],
            ..Default::default()
        }
    }
    fn metadata(&self) -> Vec<lookout_server::MetricMetadata> {
        vec![lookout_server::MetricMetadata {
            metric: "c_total".into(),
            kind: "counter".into(),
            help: "A counter.".into(),
            unit: String::new(),
        }]
    }
}

/// No collectors, targets or statements.
struct NoCollection;

impl lookout_server::CollectionView for NoCollection {
    fn collectors(&self) -> Vec<CollectorStatus> {
        Vec::new()
    }
    fn targets(&self) -> Vec<TargetStatus> {
        Vec::new()
    }
    fn slow_queries(&self) -> Vec<Statement> {
        Vec::new()
    }
}

fn state(checks: Vec<Arc<dyn HealthCheck>>) -> AppState {
    let db = MemStorage::new();
    let mut app = db.appender();
    for i in 0..=20 {
        let t = i * 15_000;
        app.append(
            &Labels::from_pairs([("__name__", "node_load1"), ("instance", "h")]),
            t,
            0.5,
        )
        .unwrap();
        app.append(
            &Labels::from_pairs([("__name__", "c_total"), ("job", "x")]),
            t,
            (i * 30) as f64,
        )
        .unwrap();
    }
    for (t, trace) in [
        (30_000, "4bf92f3577b34da6a3ce929d0e0e4736"),
        (200_000, "00f067aa0ba902b700f067aa0ba902b7"),
    ] {
        app.append_exemplar(
            &Labels::from_pairs([("__name__", "c_total"), ("job", "x")]),
            &lookout_model::Exemplar {
                labels: Labels::from_pairs([("trace_id", trace)]),
                value: 1.5,
                t,
            },
        )
        .unwrap();
    }
    app.commit().unwrap();
    AppState {
        db: Arc::new(db),
        engine: Engine::default(),
        gate: Default::default(),
        checks,
        collection: Arc::new(NoCollection),
        audit: Default::default(),
        registry: Arc::new(Registry::default()),
        ready: Arc::new(AtomicBool::new(true)),
        build: BuildInfo {
            version: "0.1.0".into(),
            revision: "abc".into(),
            branch: "main".into(),
            build_user: "test".into(),
            build_date: "today".into(),
            toolchain: "rust1.95".into(),
        },
        admin: None,
        info: Arc::new(StaticInfo),
        rules: None,
        notifier: None,
        reload: None,
        dashboards: Arc::new(
            lookout_dashboards::Library::open(lookout_dashboards::DashboardsOptions {
                shipped: vec!["host".into()],
                ..Default::default()
            })
            .unwrap(),
        ),
        remote_write: None,
        otlp: None,
        otlp_options: Default::default(),
        external_labels: vec![("site".into(), "lab".into())],
        traces: None,
        snapshots: None,
        remediation: None,
        traces_max_request_bytes: 0,
    }
}

async fn call(st: AppState, req: Request<Body>) -> (StatusCode, String) {
    let resp = router(st).oneshot(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

async fn get(st: AppState, uri: &str) -> (StatusCode, String) {
    call(st, Request::get(uri).body(Body::empty()).unwrap()).await
}

#[tokio::test]
async fn instant_query_has_prometheus_shape() {
    let (s, body) = get(state(vec![]), "/api/v1/query?query=node_load1&time=300").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        body,
        r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"node_load1","instance":"h"},"value":[300,"0.5"]}]}}"#
    );
    let (_, body) = get(state(vec![]), "/api/v1/query?query=1%2B1&time=1.5").await;
    assert_eq!(
        body,
        r#"{"status":"success","data":{"resultType":"scalar","result":[1.500,"2"]}}"#
    );
}

#[tokio::test]
async fn form_post_and_range_query() {
    let req = Request::post("/api/v1/query_range")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("query=c_total&start=120&end=180&step=30"))
        .unwrap();
    let (s, body) = call(state(vec![]), req).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"c_total","job":"x"},"values":[[120,"240"],[150,"300"],[180,"360"]]}]}}"#
    );
}

#[tokio::test]
async fn bad_input_is_bad_data_naming_the_problem() {
    let (s, body) = get(state(vec![]), "/api/v1/query?query=up&time=yesterday").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body.contains(r#""errorType":"bad_data""#), "{body}");
    assert!(body.contains(r#"invalid parameter \"time\""#), "{body}");

    let (s, body) = get(state(vec![]), "/api/v1/query?query=sum(").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body.contains(r#"invalid parameter \"query\""#), "{body}");

    let (s, body) = get(
        state(vec![]),
        "/api/v1/query_range?query=up&start=10&end=5&step=1",
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        body.contains("end timestamp must not be before start time"),
        "{body}"
    );

    let (s, body) = get(
        state(vec![]),
        "/api/v1/query_range?query=up&start=0&end=5&step=abc",
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body.contains(r#"invalid parameter \"step\""#), "{body}");

    let (s, body) = get(state(vec![]), "/api/v1/series").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body.contains("no match[] parameter provided"));
}

#[tokio::test]
async fn execution_errors_are_422() {
    let (s, body) = get(
        state(vec![]),
        "/api/v1/query?query=%7B__name__%3D~%22.%2B%22%7D%20%2B%20on()%20vector(1)&time=100",
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains(r#""errorType":"execution""#));
    assert!(
        body.contains("many-to-one matching must be explicit"),
        "{body}"
    );
}

#[tokio::test]
async fn unknown_metric_is_empty_not_error() {
    let (s, body) = get(state(vec![]), "/api/v1/query?query=nope&time=100").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        body,
        r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#
    );
}

#[tokio::test]
async fn metadata_endpoints() {
    let (_, body) = get(state(vec![]), "/api/v1/labels").await;
    assert_eq!(
        body,
        r#"{"status":"success","data":["__name__","instance","job"]}"#
    );
    let (_, body) = get(state(vec![]), "/api/v1/label/__name__/values").await;
    assert_eq!(
        body,
        r#"{"status":"success","data":["c_total","node_load1"]}"#
    );
    let (s, _) = get(state(vec![]), "/api/v1/label/bad-name/values").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (_, body) = get(state(vec![]), "/api/v1/series?match[]=%7Bjob%3D%22x%22%7D").await;
    assert_eq!(
        body,
        r#"{"status":"success","data":[{"__name__":"c_total","job":"x"}]}"#
    );
    let (_, body) = get(state(vec![]), "/api/v1/status/buildinfo").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["version"], "0.1.0");
    assert!(v["data"].get("features").is_none());
    assert_eq!(v["data"].as_object().unwrap().len(), 6);
}

fn fixed(name: &str, status: HealthStatus) -> Arc<dyn HealthCheck> {
    let name = name.to_string();
    Arc::new(FnCheck::new(&name.clone(), true, move || {
        CheckResult::new(status, format!("{name} injected"))
    }))
}

#[tokio::test]
async fn health_grades_by_worst_check() {
    let healthy = vec![fixed("storage", HealthStatus::Healthy)];
    let (s, body) = get(state(healthy), "/health").await;
    assert_eq!(s, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "healthy");
    assert_eq!(v["checks"][0]["name"], "storage");
    assert!(v["checks"][0]["duration_ms"].is_number());

    let degraded = vec![
        fixed("storage", HealthStatus::Healthy),
        fixed("disk", HealthStatus::Degraded),
    ];
    let (s, body) = get(state(degraded), "/health").await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.contains(r#""status":"degraded""#));

    let unhealthy = vec![
        fixed("storage", HealthStatus::Unhealthy),
        fixed("disk", HealthStatus::Degraded),
    ];
    let (s, body) = get(state(unhealthy.clone()), "/health").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "unhealthy");
    assert_eq!(v["checks"][0]["message"], "storage injected");
    let (s, _) = get(state(unhealthy.clone()), "/health/ready").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    let (s, _) = get(state(unhealthy.clone()), "/-/ready").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    // Liveness does not depend on checks.
    let (s, _) = get(state(unhealthy), "/health/live").await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn not_ready_until_startup_finishes() {
    let st = state(vec![]);
    st.ready.store(false, std::sync::atomic::Ordering::Release);
    let (s, body) = get(st, "/health/ready").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("starting"));
}

struct RecordingAdmin(std::sync::Mutex<Vec<(usize, i64, i64)>>);

impl lookout_server::Admin for RecordingAdmin {
    fn delete_series(
        &self,
        sels: &[Vec<lookout_model::Matcher>],
        start: i64,
        end: i64,
    ) -> lookout_storage::Result<()> {
        self.0.lock().unwrap().push((sels.len(), start, end));
        Ok(())
    }
}

#[tokio::test]
async fn admin_api_is_off_unless_enabled() {
    let req = || {
        Request::post("/api/v1/admin/tsdb/delete_series?match[]=up&start=10&end=20")
            .body(Body::empty())
            .unwrap()
    };
    let (s, body) = call(state(vec![]), req()).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("admin APIs disabled"));
    let admin = Arc::new(RecordingAdmin(Default::default()));
    let mut st = state(vec![]);
    st.admin = Some(admin.clone());
    let (s, _) = call(st.clone(), req()).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(admin.0.lock().unwrap()[0], (1, 10_000, 20_000));
    let (s, _) = call(
        st,
        Request::post("/api/v1/admin/tsdb/delete_series")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn status_endpoints_and_limits() {
    let (_, body) = get(state(vec![]), "/api/v1/status/config").await;
    assert_eq!(
        body,
        r#"{"status":"success","data":{"yaml":"global:\n  scrape_interval: 15s\n"}}"#
    );
    let (_, body) = get(state(vec![]), "/api/v1/status/flags").await;
    assert_eq!(
        body,
        r#"{"status":"success","data":{"storage.tsdb.path":"data"}}"#
    );
    let (_, body) = get(state(vec![]), "/api/v1/status/tsdb").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["headStats"]["numSeries"], 2);
    assert_eq!(v["data"]["seriesCountByMetricName"][0]["name"], "c_total");
    let (_, body) = get(state(vec![]), "/api/v1/metadata?metric=c_total").await;
    assert_eq!(
        body,
        r#"{"status":"success","data":{"c_total":[{"help":"A counter.","type":"counter","unit":""}]}}"#
    );
    let (_, body) = get(
        state(vec![]),
        "/api/v1/query_exemplars?query=up&start=0&end=1",
    )
    .await;
    assert_eq!(body, r#"{"status":"success","data":[]}"#);
    // Exemplars of every selector in the query, in range, in Prometheus's shape.
    let (_, body) = get(
        state(vec![]),
        "/api/v1/query_exemplars?query=rate(c_total%5B5m%5D)%20%2B%20node_load1&start=0&end=60",
    )
    .await;
    assert_eq!(
        body,
        r#"{"status":"success","data":[{"seriesLabels":{"__name__":"c_total","job":"x"},"exemplars":[{"labels":{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"},"value":"1.5","timestamp":30}]}]}"#
    );
    let (s, body) = get(
        state(vec![]),
        "/api/v1/query_exemplars?query=c_total&start=10&end=5",
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.contains("end timestamp must not be before start time"),
        "{body}"
    );
    let (s, body) = get(state(vec![]), "/api/v1/query_exemplars?query=sum(").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let (_, body) = get(
        state(vec![]),
        "/api/v1/format_query?query=sum(rate(x%5B5m%5D))by(job)",
    )
    .await;
    assert_eq!(
        body,
        r#"{"status":"success","data":"sum by (job) (rate(x[5m]))"}"#
    );
    let (s, _) = get(state(vec![]), "/api/v1/format_query?query=sum(").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (_, body) = get(state(vec![]), "/api/v1/label/__name__/values?limit=1").await;
    assert_eq!(
        body,
        r#"{"status":"success","data":["c_total"],"warnings":["results truncated due to limit"]}"#
    );
    let (_, body) = get(
        state(vec![]),
        "/api/v1/series?match[]=%7B__name__%3D~%22.%2B%22%7D&limit=1",
    )
    .await;
    assert!(body.contains("results truncated due to limit"), "{body}");
    let (s, _) = get(state(vec![]), "/api/v1/labels?limit=x").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn annotations_become_warnings_and_infos() {
    let (s, body) = get(
        state(vec![]),
        "/api/v1/query?query=rate(node_load1%5B5m%5D)&time=300",
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["infos"][0],
        "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"node_load1\" (1:6)"
    );
    let (_, body) = get(
        state(vec![]),
        "/api/v1/query_range?query=sort(c_total)&start=0&end=60&step=15",
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["warnings"][0]
            .as_str()
            .unwrap()
            .contains("sort is ineffective"),
        "{v}"
    );
    let (_, body) = get(state(vec![]), "/api/v1/query?query=c_total&time=100").await;
    assert!(!body.contains("warnings") && !body.contains("infos"));
}

fn post_form(uri: &str, body: String) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap()
}

/// Issue 12: 60,000 nested parentheses aborted the process through every endpoint that
/// parses a query; now each answers 400 naming the limit.
#[tokio::test]
async fn issue_12_deeply_nested_queries_are_bad_data_everywhere() {
    let deep = format!("{}1{}", "(".repeat(60_000), ")".repeat(60_000));
    let chain = vec!["1"; 20_000].join("%2B");
    for (uri, field) in [
        ("/api/v1/query", "query"),
        ("/api/v1/query_range", "query"),
        ("/api/v1/format_query", "query"),
        ("/api/v1/query_exemplars", "query"),
        ("/api/v1/series", "match[]"),
        ("/api/v1/labels", "match[]"),
    ] {
        let body = format!("{field}={deep}&start=0&end=100&step=10");
        let (s, out) = call(state(vec![]), post_form(uri, body)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}: {out}");
        assert!(out.contains("nests too deeply"), "{uri}: {out}");
        let body = format!("{field}={chain}&start=0&end=100&step=10");
        let (s, out) = call(state(vec![]), post_form(uri, body)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}: {out}");
    }
    let long = format!("query=up{{a=\"{}\"}}", "x".repeat(300_000));
    let (s, out) = call(state(vec![]), post_form("/api/v1/query", long)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{out}");
    assert!(out.contains("bytes long"), "{out}");
}

/// Issue 12: `start=-9e15&end=9e15&step=0.001` wrapped the point count past the
/// 11,000 limit and `time=1e300` was evaluated as -1.
#[tokio::test]
async fn issue_12_time_parameters_cannot_overflow() {
    for uri in [
        "/api/v1/query_range?query=1&start=-9e15&end=9e15&step=0.001",
        "/api/v1/query?query=1&time=1e300",
        "/api/v1/query?query=1&time=-1e300",
        "/api/v1/query_range?query=1&start=0&end=1e300&step=1",
        "/api/v1/series?match[]=up&start=1e300",
        "/api/v1/labels?start=-1e300",
        "/api/v1/query?query=1&timeout=1e300",
    ] {
        let (s, body) = get(state(vec![]), uri).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert!(body.contains("bad_data"), "{uri}: {body}");
    }
    // The widest legal range is still refused by the point limit, not by wrapping.
    let (s, body) = get(
        state(vec![]),
        "/api/v1/query_range?query=1&start=-2e15&end=2e15&step=1",
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body.contains("11,000 points"), "{body}");
    // And a subquery producing billions of points is refused by max_samples.
    let (s, body) = get(
        state(vec![]),
        "/api/v1/query?query=count_over_time(vector(1)%5B30d:1ms%5D)&time=300",
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("too many samples"), "{body}");
}

/// Issue 12: `/api/v1/series` answers from labels only (the store's `series_labels`).
#[tokio::test]
async fn issue_12_series_lists_labels() {
    let (s, body) = get(state(vec![]), "/api/v1/series?match[]=%7Bjob%3D%22x%22%7D").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        r#"{"status":"success","data":[{"__name__":"c_total","job":"x"}]}"#
    );
}

fn post_json(uri: &str, body: &str) -> Request<Body> {
    Request::post(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn dashboards_are_listed_served_in_grafanas_shape_and_imported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mine.json"),
        r#"{"uid":"mine","title":"Mine","tags":["t"]}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("bad.json"), "{").unwrap();
    let mut st = state(vec![]);
    st.dashboards = Arc::new(
        lookout_dashboards::Library::open(lookout_dashboards::DashboardsOptions {
            paths: vec![format!("{}/*.json", dir.path().display())],
            import_dir: Some(dir.path().join("imported")),
            shipped: vec!["host".into()],
            scrape_interval: std::time::Duration::from_secs(30),
            ..Default::default()
        })
        .unwrap(),
    );
    let (s, body) = get(st.clone(), "/api/v1/lookout/dashboards").await;
    assert_eq!(s, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let list = v["data"].as_array().unwrap();
    assert!(
        list.iter()
            .any(|d| d["uid"] == "mine" && d["source"] == "file" && d["tags"][0] == "t")
    );
    assert!(
        list.iter()
            .any(|d| d["uid"] == "lookout-host" && d["source"] == "shipped")
    );
    assert!(
        list.iter()
            .any(|d| d["error"].as_str().is_some_and(|e| e.contains("not JSON")))
    );

    let (s, body) = get(st.clone(), "/api/v1/lookout/dashboards/lookout-host").await;
    assert_eq!(s, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["dashboard"]["title"], "Host overview");
    assert_eq!(v["data"]["meta"]["scrapeInterval"], "30s");
    assert_eq!(v["data"]["meta"]["slug"], "host-overview");
    assert_eq!(v["data"]["meta"]["source"], "shipped");
    let (s, body) = get(st.clone(), "/api/v1/lookout/dashboards/nope").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");

    let (s, body) = call(st.clone(), post_json("/api/v1/lookout/dashboards", r#"{"dashboard":{"uid":"new","title":"New","rows":[{"panels":[{"type":"graph","span":12}]}]},"overwrite":true}"#)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (_, body) = get(st.clone(), "/api/v1/lookout/dashboards/new").await;
    assert!(body.contains(r#""type":"row""#), "{body}");
    assert!(dir.path().join("imported/new.json").exists());
    // Hostile or wrong bodies get named 4xx errors.
    let deep = format!("{}{}", "[".repeat(50_000), "]".repeat(50_000));
    for (body, status, want) in [
        ("not json", StatusCode::BAD_REQUEST, "not JSON"),
        (deep.as_str(), StatusCode::BAD_REQUEST, "recursion limit"),
        (r#"{"title":""}"#, StatusCode::BAD_REQUEST, "title is empty"),
        (
            r#"{"uid":"mine","title":"Taken"}"#,
            StatusCode::CONFLICT,
            "provisioned",
        ),
    ] {
        let (s, text) = call(st.clone(), post_json("/api/v1/lookout/dashboards", body)).await;
        assert_eq!(s, status, "{text}");
        assert!(text.contains(want), "{want} not in {text}");
    }
    // The dashboard page is served for Grafana's addresses.
    for uri in [
        "/",
        "/d/new",
        "/d/new/new-slug",
        "/dashboards",
        "/alerts",
        "/silences/new",
    ] {
        let (s, body) = get(st.clone(), uri).await;
        assert_eq!(s, StatusCode::OK);
        assert!(body.contains("/ui/app.mjs"), "{uri}");
    }
    let (s, _) = get(st.clone(), "/ui/dash/main.mjs").await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_result_is_streamed_whole() {
    // Ten series of 10,001 points: about 1.4 MB of JSON, over the size that is streamed.
    let q = (1..=9).fold("vector(0)".to_string(), |q, k| {
        format!("{q} or label_replace(vector({k}), \"k\", \"{k}\", \"\", \"\")")
    });
    let body = serde_urlencoded::to_string([
        ("query", q.as_str()),
        ("start", "0"),
        ("end", "300"),
        ("step", "0.03"),
    ])
    .unwrap();
    let resp = router(state(vec![]))
        .oneshot(post_form("/api/v1/query_range", body))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()[header::CONTENT_TYPE],
        "application/json",
        "a streamed body keeps its content type"
    );
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(bytes.len() > 1 << 20, "{} bytes", bytes.len());
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["status"], "success");
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 10);
    for (k, s) in result.iter().enumerate() {
        let values = s["values"].as_array().unwrap();
        assert_eq!(values.len(), 10_001);
        assert_eq!(values[0], serde_json::json!([0, k.to_string()]));
        assert_eq!(values[10_000], serde_json::json!([300, k.to_string()]));
        assert_eq!(values[1], serde_json::json!([0.03, k.to_string()]));
    }
}

#[tokio::test]
async fn resolution_raw_reads_samples_and_anything_else_is_named() {
    // A store offering 1 m rollups and an engine that may load 20 points: a rate over
    // whole minutes reads 4 windows; read raw, it needs all 5 samples a minute.
    let db = MemStorage::new();
    let mut app = db.appender();
    for i in 0..=40 {
        app.append(
            &Labels::from_pairs([("__name__", "c_total")]),
            i * 15_000,
            i as f64,
        )
        .unwrap();
    }
    app.commit().unwrap();
    db.set_rollup_resolutions(vec![60_000]);
    let mut st = state(vec![]);
    st.db = Arc::new(db);
    st.engine = Engine::new(lookout_promql::EngineOptions {
        max_samples: 20,
        ..Default::default()
    });
    let q = "/api/v1/query?query=rate(c_total%5B10m%5D)&time=600";
    let (s, body) = get(st.clone(), q).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(body.contains(r#""value":[600,"#), "{body}");
    let (s, body) = get(st.clone(), &format!("{q}&resolution=auto")).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, body) = get(st.clone(), &format!("{q}&resolution=raw")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("too many samples"), "{body}");
    let (s, body) = get(st, &format!("{q}&resolution=5m")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains(r#"invalid resolution \"5m\""#), "{body}");
}
