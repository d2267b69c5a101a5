//! Scraping: the real Debian prometheus-node-exporter as a target with relabeling, and a
//! local HTTP target whose exposition the test changes, for honor_labels, timestamps,
//! authentication, limits, staleness and file-based discovery.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use lookout_collect::scrape::{ScrapeConfig, ScrapeDefaults, ScrapeManager};
use lookout_model::{Matcher, is_stale_nan};
use lookout_storage::{MemStorage, Queryable, SelectHints};
use tokio::sync::watch;

fn defaults() -> ScrapeDefaults {
    ScrapeDefaults {
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
    }
}

fn configs(yaml: &str) -> Vec<ScrapeConfig> {
    yaml_serde::from_str(yaml).unwrap()
}

/// The latest samples (value, timestamp) of series matching `eq` pairs.
fn latest(db: &MemStorage, eq: &[(&str, &str)]) -> Vec<(lookout_model::Labels, f64, i64)> {
    let ms: Vec<Matcher> = eq.iter().map(|(k, v)| Matcher::equal(k, v)).collect();
    let q = db.querier(0, i64::MAX).unwrap();
    q.select(&SelectHints::default(), &ms)
        .unwrap()
        .into_iter()
        .filter_map(|s| {
            let last = *s.samples.last()?;
            Some((s.labels, last.v, last.t))
        })
        .collect()
}

async fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_the_real_node_exporter_with_relabeling() {
    let port = support::free_port();
    let _exp = support::Exporter::start(
        "prometheus-node-exporter",
        &[format!("--web.listen-address=127.0.0.1:{port}")],
        &[],
    );
    let db = Arc::new(MemStorage::new());
    let cfg = configs(&format!(
        r#"
- job_name: node
  static_configs:
    - targets: ["127.0.0.1:{port}"]
      labels: {{ env: test }}
  relabel_configs:
    - source_labels: [__address__]
      regex: "127\\.0\\.0\\.1:(\\d+)"
      target_label: instance
      replacement: "host-a:$1"
  metric_relabel_configs:
    - source_labels: [__name__]
      regex: "node_load.*|node_cpu_seconds_total"
      action: keep
    - source_labels: [mode]
      regex: steal
      action: drop
"#
    ));
    let m = ScrapeManager::new(cfg, defaults()).unwrap();
    let board = m.board();
    let (stop_tx, stop_rx) = watch::channel(false);
    let h = m.spawn(db.clone(), stop_rx);
    let instance = format!("host-a:{port}");
    wait("up 1", || {
        latest(&db, &[("__name__", "up"), ("instance", &instance)])
            .first()
            .is_some_and(|s| s.1 == 1.0)
    })
    .await;
    let load = latest(&db, &[("__name__", "node_load1"), ("job", "node")]);
    assert_eq!(load.len(), 1);
    assert_eq!(load[0].0.get("env"), Some("test"));
    assert_eq!(load[0].0.get("instance"), Some(instance.as_str()));
    assert!(latest(&db, &[("__name__", "node_memory_MemTotal_bytes")]).is_empty());
    assert!(
        latest(
            &db,
            &[("__name__", "node_cpu_seconds_total"), ("mode", "steal")]
        )
        .is_empty()
    );
    assert!(
        !latest(
            &db,
            &[("__name__", "node_cpu_seconds_total"), ("mode", "idle")]
        )
        .is_empty()
    );
    let scraped = latest(&db, &[("__name__", "scrape_samples_scraped")])[0].1;
    let kept = latest(
        &db,
        &[("__name__", "scrape_samples_post_metric_relabeling")],
    )[0]
    .1;
    assert!(
        scraped > 100.0 && kept < scraped && kept >= 4.0,
        "{scraped} {kept}"
    );
    let t = &board.snapshot()[0];
    assert_eq!(t.health, "up");
    assert_eq!(t.target.url, format!("http://127.0.0.1:{port}/metrics"));
    stop_tx.send(true).unwrap();
    h.await.unwrap();
    // Stopping ends the target's series.
    assert!(is_stale_nan(
        latest(&db, &[("__name__", "node_load1")])[0].1
    ));
}

#[derive(Clone)]
struct Served {
    body: Arc<Mutex<(String, &'static str)>>,
    auth: Arc<Mutex<Vec<String>>>,
}

async fn metrics(
    axum::extract::State(s): axum::extract::State<Served>,
    headers: HeaderMap,
) -> impl IntoResponse {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    s.auth.lock().unwrap().push(auth.clone());
    if auth != "Bearer s3cret" {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "text/plain")],
            String::new(),
        );
    }
    let (body, ct) = s.body.lock().unwrap().clone();
    (StatusCode::OK, [(header::CONTENT_TYPE, ct)], body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_target_semantics_and_file_discovery() {
    let served = Served {
        body: Arc::new(Mutex::new((
            "# TYPE a counter\na_total{job=\"app\",x=\"1\"} 5 1000\nb 2\n# EOF\n".into(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ))),
        auth: Arc::new(Mutex::new(Vec::new())),
    };
    let app = Router::new()
        .route("/m", get(metrics))
        .with_state(served.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let sd = dir.path().join("targets.json");
    std::fs::write(
        &sd,
        format!(r#"[{{"targets": ["{addr}"], "labels": {{"team": "db"}}}}]"#),
    )
    .unwrap();
    let cfg = configs(&format!(
        r#"
- job_name: app
  metrics_path: /m
  bearer_token_file: {}
  honor_timestamps: false
  sample_limit: 10
  file_sd_configs:
    - files: ["{}/*.json"]
"#,
        token.display(),
        dir.path().display()
    ));
    let db = Arc::new(MemStorage::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let h = ScrapeManager::new(cfg, defaults())
        .unwrap()
        .spawn(db.clone(), stop_rx);
    wait("first scrape", || {
        latest(&db, &[("__name__", "up"), ("job", "app")])
            .first()
            .is_some_and(|s| s.1 == 1.0)
    })
    .await;
    // honor_labels false: the exposed job is kept as exported_job; target labels added.
    let a = latest(&db, &[("__name__", "a_total")]);
    assert_eq!(a[0].0.get("job"), Some("app"));
    assert_eq!(a[0].0.get("exported_job"), Some("app"));
    assert_eq!(a[0].0.get("team"), Some("db"));
    assert_eq!(a[0].0.get("instance"), Some(addr.to_string().as_str()));
    // honor_timestamps false: the scrape time, not the exposed 1000 s.
    assert!(a[0].2 > 1_000_000_000_000);
    assert!(
        served
            .auth
            .lock()
            .unwrap()
            .iter()
            .all(|a| a == "Bearer s3cret")
    );

    // A series that disappears gets a staleness marker.
    served.body.lock().unwrap().0 = "# TYPE a counter\na_total{x=\"1\"} 6\n# EOF\n".into();
    wait("b stale", || {
        latest(&db, &[("__name__", "b")])
            .first()
            .is_some_and(|s| is_stale_nan(s.1))
    })
    .await;

    // More samples than sample_limit fail the scrape: up 0, the series go stale.
    let many: String = (0..20).map(|i| format!("c{{i=\"{i}\"}} 1\n")).collect();
    served.body.lock().unwrap().0 = format!("{many}# EOF\n");
    wait("up 0", || {
        latest(&db, &[("__name__", "up"), ("job", "app")])
            .first()
            .is_some_and(|s| s.1 == 0.0)
    })
    .await;
    assert!(is_stale_nan(latest(&db, &[("__name__", "a_total")])[0].1));

    // The target leaves the file: its report series end too.
    served.body.lock().unwrap().0 = "d 1\n# EOF\n".into();
    wait("d", || !latest(&db, &[("__name__", "d")]).is_empty()).await;
    std::fs::write(&sd, "[]").unwrap();
    wait("up stale", || {
        latest(&db, &[("__name__", "up"), ("job", "app")])
            .first()
            .is_some_and(|s| is_stale_nan(s.1))
    })
    .await;
    stop_tx.send(true).unwrap();
    h.await.unwrap();
}

#[test]
fn bad_scrape_configs_are_named() {
    let e = ScrapeManager::new(
        configs("- job_name: x\n  scrape_interval: 5s\n  scrape_timeout: 10s\n"),
        defaults(),
    )
    .unwrap_err();
    assert!(e.contains("greater than scrape interval"), "{e}");
    let e = ScrapeManager::new(
        configs(
            "- job_name: x\n  relabel_configs:\n    - action: hashmod\n      target_label: s\n",
        ),
        defaults(),
    )
    .unwrap_err();
    assert!(e.contains("\"x\"") && e.contains("modulus"), "{e}");
    let e = ScrapeManager::new(configs("- job_name: x\n- job_name: x\n"), defaults()).unwrap_err();
    assert!(e.contains("multiple scrape configs"), "{e}");
    let e = yaml_serde::from_str::<Vec<ScrapeConfig>>("- job_name: x\n  scrape_intervall: 5s\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("scrape_intervall"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_the_real_database_exporters() {
    let pg = support::PgServer::start();
    let redis = support::RedisServer::start();
    let (pp, rp) = (support::free_port(), support::free_port());
    let _pge = support::Exporter::start(
        "prometheus-postgres-exporter",
        &[format!("--web.listen-address=127.0.0.1:{pp}")],
        &[("DATA_SOURCE_NAME", pg.dsn("postgres"))],
    );
    let _re = support::Exporter::start(
        "prometheus-redis-exporter",
        &[
            "-redis.addr".into(),
            redis.url(),
            "-web.listen-address".into(),
            format!("127.0.0.1:{rp}"),
        ],
        &[],
    );
    let cfg = configs(&format!(
        r#"
- job_name: postgres
  static_configs: [ {{ targets: ["127.0.0.1:{pp}"] }} ]
  relabel_configs:
    - target_label: instance
      replacement: main
- job_name: redis
  static_configs: [ {{ targets: ["127.0.0.1:{rp}"] }} ]
  relabel_configs:
    - target_label: instance
      replacement: cache
  metric_relabel_configs:
    - regex: "go_.*"
      source_labels: [__name__]
      action: drop
"#
    ));
    let db = Arc::new(MemStorage::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let h = ScrapeManager::new(cfg, defaults())
        .unwrap()
        .spawn(db.clone(), stop_rx);
    wait("pg_up", || {
        latest(
            &db,
            &[
                ("__name__", "pg_up"),
                ("job", "postgres"),
                ("instance", "main"),
            ],
        )
        .first()
        .is_some_and(|s| s.1 == 1.0)
    })
    .await;
    wait("redis_up", || {
        latest(
            &db,
            &[
                ("__name__", "redis_up"),
                ("job", "redis"),
                ("instance", "cache"),
            ],
        )
        .first()
        .is_some_and(|s| s.1 == 1.0)
    })
    .await;
    assert!(latest(&db, &[("__name__", "go_goroutines"), ("job", "redis")]).is_empty());
    assert!(!latest(&db, &[("__name__", "go_goroutines"), ("job", "postgres")]).is_empty());
    stop_tx.send(true).unwrap();
    h.await.unwrap();
}

/// Issue 14: scrapes ask for gzip (`enable_compression`, default true) and read a
/// compressed answer; with it off they ask for none. The target here serves only
/// clients that accept gzip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_ask_for_and_read_gzip() {
    async fn gz(headers: HeaderMap) -> axum::response::Response {
        use std::io::Write;
        let accepts = headers
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("gzip"));
        if !accepts {
            return (StatusCode::NOT_ACCEPTABLE, "gzip only").into_response();
        }
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b"# TYPE zipped gauge\nzipped 42\n").unwrap();
        (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "text/plain; version=0.0.4"),
                (header::CONTENT_ENCODING, "gzip"),
            ],
            e.finish().unwrap(),
        )
            .into_response()
    }
    let app = Router::new().route("/metrics", get(gz));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let cfg = configs(&format!(
        "- job_name: zipped\n  static_configs: [{{targets: ['{addr}']}}]\n- job_name: plain\n  enable_compression: false\n  static_configs: [{{targets: ['{addr}']}}]\n"
    ));
    let db = Arc::new(MemStorage::new());
    let (tx, rx) = watch::channel(false);
    let h = ScrapeManager::new(cfg, defaults())
        .unwrap()
        .spawn(db.clone(), rx);
    wait("the compressed sample", || {
        latest(&db, &[("__name__", "zipped")])
            .first()
            .is_some_and(|s| s.1 == 42.0)
    })
    .await;
    wait("the uncompressed job's up", || {
        !latest(&db, &[("__name__", "up"), ("job", "plain")]).is_empty()
    })
    .await;
    assert_eq!(
        latest(&db, &[("__name__", "up"), ("job", "plain")])[0].1,
        0.0
    );
    assert_eq!(
        latest(&db, &[("__name__", "up"), ("job", "zipped")])[0].1,
        1.0
    );
    tx.send(true).unwrap();
    let _ = h.await;
}
