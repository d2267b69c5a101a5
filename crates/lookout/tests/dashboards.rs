//! Issue 15 in a real browser: `lookout serve` with a real PostgreSQL and Redis renders
//! its shipped dashboards, Grafana dashboards dropped into `dashboards.paths` (the
//! upstream postgres_exporter and redis_exporter dashboards when `../shared/upstream` is
//! there, a legacy `rows` dashboard written here) and imports, in headless Chromium over
//! WebDriver. Every panel says what it drew through `data-panel-state`; screenshots of
//! each page go to the test's temporary directory (or `LOOKOUT_TEST_SCREENSHOTS`).

mod common;
#[path = "../../collect/tests/support/mod.rs"]
mod support;

use std::time::Duration;

use common::browser::*;
use common::*;
use fantoccini::Locator;
use serde_json::Value;
use support::{PgServer, RedisServer};

/// A dashboard in the legacy schema (rows of `span`-wide panels, schemaVersion 14), with
/// a panel type Lookout does not draw and a collapsed row.
const LEGACY: &str = r#"{
  "title": "Legacy rows", "uid": "legacy", "schemaVersion": 14,
  "templating": {"list": [{"type": "custom", "name": "mode", "query": "user,system,idle", "multi": true, "includeAll": true, "current": {"value": ["$__all"]}}]},
  "rows": [
    {"title": "CPU", "height": "250px", "panels": [
      {"id": 1, "type": "graph", "title": "CPU $mode", "span": 8, "stack": true, "fill": 2,
       "targets": [{"expr": "sum by (mode) (rate(node_cpu_seconds_total{mode=~\"$mode\"}[$__rate_interval]))", "legendFormat": "{{mode}}", "refId": "A"}],
       "yaxes": [{"format": "percentunit"}, {}]},
      {"id": 2, "type": "singlestat", "title": "Load", "span": 4, "format": "short", "thresholds": "4,8", "valueName": "current",
       "targets": [{"expr": "node_load1", "refId": "A"}]}
    ]},
    {"title": "Elsewhere", "collapse": true, "panels": [
      {"id": 3, "type": "news", "title": "Feed", "span": 6},
      {"id": 4, "type": "text", "title": "Notes", "span": 6, "mode": "markdown", "content": "**Mode** is $mode"}
    ]}
  ]
}"#;

struct Shots(std::path::PathBuf);

impl Shots {
    async fn take(&self, b: &fantoccini::Client, name: &str) {
        let png = b.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        std::fs::write(self.0.join(format!("{name}.png")), png).unwrap();
    }
}

/// Opens `path` and waits until every panel has settled; returns each panel's
/// `[id, type, state, error]`.
async fn open(
    b: &fantoccini::Client,
    base: &str,
    path: &str,
) -> Vec<(String, String, String, String)> {
    b.goto(&format!("{base}{path}")).await.unwrap();
    settled(b).await
}

async fn settled(b: &fantoccini::Client) -> Vec<(String, String, String, String)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let v = b
            .execute(
                "const p = document.getElementById('page'); return [p.dataset.dashboardState || '', [...document.querySelectorAll('[data-panel-id]')].map(e => [e.dataset.panelId, e.dataset.panelType, e.dataset.panelState, e.dataset.panelError || ''])]",
                vec![],
            )
            .await
            .unwrap();
        let state = v[0].as_str().unwrap_or_default().to_string();
        let panels: Vec<(String, String, String, String)> = v[1]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let s = |i: usize| p[i].as_str().unwrap_or_default().to_string();
                (s(0), s(1), s(2), s(3))
            })
            .collect();
        if state == "error" {
            let msg = b
                .find(Locator::Id("page-error"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            panic!("the page failed: {msg}");
        }
        if state == "settled" && panels.iter().all(|p| p.2 != "loading") {
            return panels;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not settled: {state} {panels:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn no_errors(name: &str, panels: &[(String, String, String, String)]) {
    let broken: Vec<_> = panels.iter().filter(|p| p.2 == "error").collect();
    assert!(broken.is_empty(), "{name}: panels in error: {broken:?}");
}

fn count(panels: &[(String, String, String, String)], state: &str) -> usize {
    panels.iter().filter(|p| p.2 == state).count()
}

#[test]
fn issue_15_dashboards_render_in_chromium_with_real_databases() {
    let pg = PgServer::start();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let shots = Shots(
        std::env::var_os("LOOKOUT_TEST_SCREENSHOTS")
            .map_or_else(|| dir.path().join("screenshots"), Into::into),
    );
    std::fs::create_dir_all(&shots.0).unwrap();
    let dashboards = dir.path().join("dashboards");
    std::fs::create_dir(&dashboards).unwrap();
    std::fs::write(dashboards.join("legacy.json"), LEGACY).unwrap();
    std::fs::write(
        dashboards.join("broken.json"),
        r#"{"title": "Broken", "panels": "#,
    )
    .unwrap();
    let upstream = lookout_testkit::upstream("grafana-dashboards");
    if let Some(up) = &upstream {
        for f in ["postgres-overview.json", "redis-exporter-dashboard.json"] {
            std::fs::copy(up.join(f), dashboards.join(f)).unwrap();
        }
    }
    let pw = dir.path().join("pg-password");
    std::fs::write(&pw, "unused-with-trust\n").unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "global:\n  scrape_interval: 1s\ndashboards:\n  paths: [ 'dashboards/*.json' ]\ncollectors:\n  postgres:\n    - name: main\n      dsn: \"{}\"\n      password_file: {}\n  redis:\n    - name: cache\n      url: \"{}\"\n",
            pg.dsn("postgres"),
            pw.display(),
            redis.url()
        ),
    );
    let lk = Lookout::start(&dir.path().join("data"), &cfg);
    lk.wait_for(r#"pg_up == 1"#, Duration::from_secs(20));
    lk.wait_for(r#"redis_up == 1"#, Duration::from_secs(20));
    // A few scrapes, so rates have two points.
    lk.wait_for(
        r#"count_over_time(node_load1[1m]) > 4"#,
        Duration::from_secs(30),
    );

    let (_, body) = lk.get("/api/v1/lookout/dashboards");
    let list: Value = serde_json::from_str(&body).unwrap();
    let list = list["data"].as_array().unwrap().clone();
    let broken = list
        .iter()
        .find(|d| {
            d["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("broken.json"))
        })
        .unwrap();
    assert!(
        broken["error"].as_str().unwrap().contains("not JSON"),
        "{broken}"
    );
    let served: Vec<String> = list
        .iter()
        .filter(|d| d["error"].is_null())
        .map(|d| d["uid"].as_str().unwrap().to_string())
        .collect();
    // The database collectors that are on bring their shipped dashboards.
    for uid in [
        "lookout-host",
        "lookout-disks",
        "lookout-network",
        "lookout-postgres",
        "lookout-redis",
        "lookout-self",
        "legacy",
    ] {
        assert!(served.contains(&uid.to_string()), "{uid} not in {served:?}");
    }

    let base = &lk.base;
    let (served, shots) = (&served, &shots);
    with_browser(&dir.path().join("profile"), |b| async move {
        b.set_window_size(1400, 1000).await.unwrap();

        // Every dashboard renders with no panel in error; the shipped ones draw data.
        for uid in served {
            let panels = open(&b, base, &format!("/d/{uid}?from=now-5m&to=now")).await;
            shots.take(&b, uid).await;
            assert!(!panels.is_empty(), "{uid}: no panels");
            no_errors(uid, &panels);
            if uid.starts_with("lookout-") {
                // A fresh server has no replication, evictions or maxmemory to show.
                assert!(
                    count(&panels, "ok") + 4 >= panels.len(),
                    "{uid}: {panels:?}"
                );
            }
        }
        // The upstream exporters' dashboards draw the real databases' data.
        if upstream.is_some() {
            let uid_of = |file: &str| {
                list.iter()
                    .find(|d| d["path"].as_str().is_some_and(|p| p.ends_with(file)))
                    .and_then(|d| d["uid"].as_str())
                    .unwrap_or_else(|| panic!("{file} not served: {list:?}"))
                    .to_string()
            };
            let pg_uid = uid_of("postgres-overview.json");
            let p = open(&b, base, &format!("/d/{pg_uid}?from=now-5m&to=now")).await;
            assert!(count(&p, "ok") >= 4, "postgres-overview: {p:?}");
            let redis_uid = uid_of("redis-exporter-dashboard.json");
            let r = open(&b, base, &format!("/d/{redis_uid}?from=now-5m&to=now")).await;
            assert!(count(&r, "ok") >= 6, "redis: {r:?}");
        }

        // Grafana's URL parameters open exactly that view.
        let panels = open(
            &b,
            base,
            "/d/lookout-host?from=now-15m&to=now&var-job=node&refresh=10s",
        )
        .await;
        no_errors("host with parameters", &panels);
        let value = |css: &'static str| {
            let b = &b;
            async move {
                b.find(Locator::Css(css))
                    .await
                    .unwrap()
                    .prop("value")
                    .await
                    .unwrap()
                    .unwrap_or_default()
            }
        };
        assert_eq!(value("#time-from").await, "now-15m");
        assert_eq!(value("#refresh").await, "10s");
        assert_eq!(value("select[data-var=job]").await, "node");

        // The legacy dashboard: rows became row panels, graph and singlestat draw, the
        // collapsed row opens to a placeholder naming the unknown type and the text panel
        // with the variable filled in.
        let panels = open(&b, base, "/d/legacy").await;
        assert_eq!(
            panels
                .iter()
                .map(|p| (p.1.as_str(), p.2.as_str()))
                .collect::<Vec<_>>(),
            [("graph", "ok"), ("singlestat", "ok")]
        );
        b.find(Locator::Css("[data-row-id]:last-of-type"))
            .await
            .unwrap();
        let rows = b.find_all(Locator::Css(".dash-row")).await.unwrap();
        rows[1].click().await.unwrap();
        let panels = settled(&b).await;
        assert_eq!(panels.len(), 4, "{panels:?}");
        let feed = b
            .find(Locator::Css("[data-panel-type=news]"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            feed.contains("Panel type \"news\" is not supported"),
            "{feed}"
        );
        let notes = b
            .find(Locator::Css("[data-panel-type=text] .body"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        // Grafana fills a multi-value "All" into text as the values joined.
        assert!(notes.contains("Mode is (user|system|idle)"), "{notes}");
        shots.take(&b, "legacy-expanded").await;

        // Zoom by dragging across a chart: the range becomes absolute times in the URL.
        let chart = b
            .find(Locator::Css("[data-panel-type=graph] .u-over"))
            .await
            .unwrap();
        use fantoccini::actions::{InputSource, MOUSE_BUTTON_LEFT, MouseActions, PointerAction};
        let drag = MouseActions::new("mouse".into())
            .then(PointerAction::MoveToElement {
                element: chart,
                duration: None,
                x: -100.0,
                y: 0.0,
            })
            .then(PointerAction::Down {
                button: MOUSE_BUTTON_LEFT,
            })
            .then(PointerAction::MoveBy {
                duration: Some(Duration::from_millis(200)),
                x: 150.0,
                y: 0.0,
            })
            .then(PointerAction::Up {
                button: MOUSE_BUTTON_LEFT,
            });
        b.perform_actions(drag).await.unwrap();
        settled(&b).await;
        let url = b.current_url().await.unwrap();
        let from: i64 = url
            .query_pairs()
            .find(|(k, _)| k == "from")
            .unwrap()
            .1
            .parse()
            .expect("an absolute from after zooming");
        let to: i64 = url
            .query_pairs()
            .find(|(k, _)| k == "to")
            .unwrap()
            .1
            .parse()
            .unwrap();
        // 150 of the chart's ~800 pixels of the default 6 hours: about an hour.
        assert!(
            from < to && to - from < 3 * 3_600_000 && to - from > 60_000,
            "{url}"
        );
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert!(
            to <= now_ms && from > now_ms - 6 * 3_600_000 - 60_000,
            "{url}"
        );

        // Import through the page: the new dashboard opens and the API lists it.
        b.goto(&format!("{base}/dashboards")).await.unwrap();
        let area = b
            .wait()
            .for_element(Locator::Id("import-json"))
            .await
            .unwrap();
        area.send_keys(r#"{"dashboard": {"uid": "pasted", "title": "Pasted", "panels": [{"type": "stat", "title": "Up", "gridPos": {"x": 0, "y": 0, "w": 6, "h": 4}, "targets": [{"expr": "sum(up)", "refId": "A"}]}]}}"#).await.unwrap();
        click(&b, "#import").await;
        let panels = settled(&b).await;
        assert_eq!(
            panels,
            [("1".into(), "stat".into(), "ok".into(), String::new())]
        );
        assert!(
            b.current_url()
                .await
                .unwrap()
                .path()
                .starts_with("/d/pasted")
        );
        shots.take(&b, "imported").await;
        b
    });
    let (_, body) = lk.get("/api/v1/lookout/dashboards");
    assert!(
        body.contains(r#""uid":"pasted","title":"Pasted","tags":[],"source":"imported""#),
        "{body}"
    );
    assert!(std::fs::read_dir(&shots.0).unwrap().count() >= served.len() + 2);
    assert!(lk.terminate().success());
}

/// The alert of `name` as the notifier's API shows it.
fn api_alert(lk: &Lookout, name: &str) -> Value {
    let (_, body) = lk.get("/api/v2/alerts?silenced=true&inhibited=true");
    let v: Value = serde_json::from_str(&body).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
fn issue_15_acknowledging_and_silencing_in_the_browser_change_what_the_api_returns() {
    let dir = tempfile::tempdir().unwrap();
    // The team's webhook takes everything but tickets; the ticket system refuses (400).
    let team = lookout_testkit::WebhookReceiver::start(200, 0);
    let tickets = lookout_testkit::WebhookReceiver::start(400, 0);
    std::fs::write(
        dir.path().join("alertmanager.yml"),
        format!(
            "route:\n  receiver: team\n  group_by: [alertname]\n  group_wait: 0s\n  routes: [ {{ receiver: tickets, matchers: [ 'severity=\"ticket\"' ] }} ]\nreceivers:\n  - {{ name: team, webhook_configs: [ {{ url: '{}' }} ] }}\n  - {{ name: tickets, webhook_configs: [ {{ url: '{}' }} ] }}\n",
            team.url, tickets.url
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n  - name: ui\n    rules:\n      - alert: DiskAlmostFull\n        expr: vector(1)\n        labels: {severity: page}\n        annotations: {summary: the disk is almost full, runbook_url: 'https://runbooks.example/disk'}\n      - alert: ReplicaLagging\n        expr: vector(2)\n        labels: {severity: ticket}\n        annotations: {summary: a replica lags}\n      - alert: SlowBurn\n        expr: vector(3)\n        for: 1h\n        annotations: {summary: pending for an hour}\n",
    )
    .unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_packs: []\nrule_files: [rules.yml]\nnotifier:\n  config_file: alertmanager.yml\n  escalations:\n    - name: db-oncall\n      matchers: [ 'severity=\"page\"' ]\n      levels: [ {{ receivers: [team], timeout: 1h }}, {{ receivers: [team] }} ]\ncollectors:\n  host: {{ enabled: false }}\nscrape_configs:\n  - job_name: hooks\n    static_configs: [ {{ targets: ['{}'] }} ]\n    relabel_configs: [ {{ target_label: team, replacement: on-call }} ]\n",
            // A target nobody listens on: down, with the error.
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
        ),
    );
    let lk = Lookout::start(&dir.path().join("data"), &cfg);
    wait_until(
        "two alerts at the notifier",
        Duration::from_secs(20),
        || {
            !api_alert(&lk, "DiskAlmostFull").is_null()
                && !api_alert(&lk, "ReplicaLagging").is_null()
        },
    );
    let shots = Shots(dir.path().to_path_buf());
    let driver = chromedriver();
    // Several threads, so the blocking HTTP client can ask the API from inside the session.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let api = |name: &str| tokio::task::block_in_place(|| api_alert(&lk, name));
    rt.block_on(async {
        let b = browser(&driver, &dir.path().join("profile")).await;
        b.set_window_size(1400, 1000).await.unwrap();
        let base = &lk.base;
        b.goto(&format!("{base}/alerts")).await.unwrap();
        let text = wait_text(&b, "#alert-groups", |t| {
            t.contains("DiskAlmostFull") && t.contains("ReplicaLagging")
        })
        .await;
        assert!(
            text.contains("the disk is almost full") && text.contains("runbook"),
            "{text}"
        );
        let pending = wait_text(&b, "#pending", |t| t.contains("SlowBurn")).await;
        assert!(pending.contains("pending for an hour"), "{pending}");
        shots.take(&b, "alerts").await;
        // The page goes through the escalation policy: level 1 of 2, the next in an hour.
        b.goto(&format!("{base}/escalations")).await.unwrap();
        let esc = wait_text(&b, "section[data-policy=db-oncall]", |t| {
            t.contains("DiskAlmostFull")
        })
        .await;
        assert!(
            esc.contains("1 of 2") && esc.contains("in 60m") && !esc.contains("ReplicaLagging"),
            "{esc}"
        );
        b.goto(&format!("{base}/alerts")).await.unwrap();
        wait_text(&b, "#alert-groups", |t| t.contains("DiskAlmostFull")).await;

        // Acknowledge with a comment and an expiry.
        let fp = api("DiskAlmostFull")["fingerprint"]
            .as_str()
            .unwrap()
            .to_string();
        let row = format!("tr[data-fingerprint='{fp}']");
        click(&b, &format!("{row} button.ack")).await;
        // Without sign-in the form asks who acknowledges.
        b.find(Locator::Css(&format!("{row} .ack-who")))
            .await
            .unwrap()
            .send_keys("dana")
            .await
            .unwrap();
        b.find(Locator::Css(&format!("{row} .ack-comment")))
            .await
            .unwrap()
            .send_keys("on it")
            .await
            .unwrap();
        b.find(Locator::Css(&format!("{row} .ack-expiry")))
            .await
            .unwrap()
            .select_by_value("4h")
            .await
            .unwrap();
        click(&b, &format!("{row} .ack-form button")).await;
        let said = wait_text(&b, "#alerts-status", |t| !t.is_empty()).await;
        assert_eq!(said, "DiskAlmostFull acknowledged");
        wait_text(&b, &row, |t| {
            t.contains("acknowledged") && t.contains("on it")
        })
        .await;
        let ack = &api("DiskAlmostFull")["acknowledged"];
        assert_eq!(ack["comment"], "on it", "{ack}");
        assert_eq!(ack["by"], "dana", "{ack}");
        b.goto(&format!("{base}/escalations")).await.unwrap();
        wait_text(&b, "section[data-policy=db-oncall]", |t| {
            t.contains("stopped: acknowledged")
        })
        .await;
        b.goto(&format!("{base}/alerts")).await.unwrap();
        wait_text(&b, &row, |t| t.contains("on it")).await;
        assert!(ack["expiresAt"].is_string(), "{ack}");

        // Silence the other alert: the form comes filled with its labels and shows that
        // exactly it would be silenced.
        let fp2 = api("ReplicaLagging")["fingerprint"]
            .as_str()
            .unwrap()
            .to_string();
        b.find(Locator::Css(&format!(
            "tr[data-fingerprint='{fp2}'] a.silence"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
        let preview = wait_text(&b, "#silence-preview", |t| t.starts_with("Would silence")).await;
        assert!(
            preview.starts_with("Would silence 1 alert now") && preview.contains("ReplicaLagging"),
            "{preview}"
        );
        // Loosening a matcher widens the preview before anything is saved.
        let value = b
            .find(Locator::Css(".matcher-row:first-child .m-value"))
            .await
            .unwrap();
        value.clear().await.unwrap();
        value.send_keys(".+").await.unwrap();
        b.find(Locator::Css(".matcher-row:first-child .m-op"))
            .await
            .unwrap()
            .select_by_value("=~")
            .await
            .unwrap();
        for r in b
            .find_all(Locator::Css(".matcher-row:not(:first-child) .m-remove"))
            .await
            .unwrap()
        {
            r.click().await.unwrap();
        }
        wait_text(&b, "#silence-preview", |t| {
            t.starts_with("Would silence 2 alerts now")
        })
        .await;
        shots.take(&b, "silence-form").await;
        value.clear().await.unwrap();
        value.send_keys("Replica.*").await.unwrap();
        wait_text(&b, "#silence-preview", |t| {
            t.starts_with("Would silence 1 alert now")
        })
        .await;
        // The name given when acknowledging is remembered for the silence.
        let by = b
            .find(Locator::Id("silence-by"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap();
        assert_eq!(by.as_deref(), Some("dana"));
        b.find(Locator::Id("silence-comment"))
            .await
            .unwrap()
            .send_keys("maintenance")
            .await
            .unwrap();
        click(&b, "#silence-save").await;
        let active = wait_text(&b, "section[data-state=active]", |t| {
            t.contains("maintenance")
        })
        .await;
        assert!(active.contains(r#"alertname=~"Replica.*""#), "{active}");
        let silenced = &api("ReplicaLagging")["status"];
        assert_eq!(silenced["state"], "suppressed", "{silenced}");
        let id = silenced["silencedBy"][0].as_str().unwrap().to_string();
        shots.take(&b, "silences").await;

        // Expire it from the list: the alert is active again.
        b.find(Locator::Css(&format!(
            "tr[data-silence-id='{id}'] button.expire"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
        wait_text(&b, "section[data-state=expired]", |t| {
            t.contains("maintenance")
        })
        .await;
        assert_eq!(api("ReplicaLagging")["status"]["state"], "active");

        // The notification history: the team's page sent, the ticket refused.
        b.goto(&format!("{base}/notifications")).await.unwrap();
        let all = wait_text(&b, "#history-results", |t| {
            t.contains("DiskAlmostFull") && t.contains("ReplicaLagging")
        })
        .await;
        assert!(
            all.contains("team webhook") && all.contains("tickets webhook"),
            "{all}"
        );
        b.find(Locator::Css("#history-form select[name=result]"))
            .await
            .unwrap()
            .select_by_value("failed")
            .await
            .unwrap();
        click(&b, "#history-form button").await;
        let failed = wait_text(&b, "#history-results", |t| !t.contains("DiskAlmostFull")).await;
        assert!(
            failed.contains("ReplicaLagging") && failed.contains("400"),
            "{failed}"
        );
        shots.take(&b, "notifications").await;

        // Rules, targets (labels before and after relabeling), health and explore.
        b.goto(&format!("{base}/rules")).await.unwrap();
        let rule = wait_text(&b, "tr[data-rule=DiskAlmostFull]", |t| t.contains("ok")).await;
        assert!(
            rule.contains("vector(1)") && rule.contains("firing (1)"),
            "{rule}"
        );
        b.goto(&format!("{base}/targets")).await.unwrap();
        let hooks = wait_text(&b, "section[data-job=hooks]", |t| t.contains("down")).await;
        assert!(
            hooks.contains(r#"team="on-call""#)
                && hooks.contains("__address__")
                && hooks.contains("refused"),
            "{hooks}"
        );
        b.goto(&format!("{base}/health-checks")).await.unwrap();
        let checks = wait_text(&b, "#checks", |t| t.contains("notifier")).await;
        assert!(
            checks.contains("storage") && checks.contains("rules"),
            "{checks}"
        );
        b.goto(&format!(
            "{base}/explore?query=rate(ALERTS%5B1m%5D)&mode=range&range=15m&resolution=raw"
        ))
        .await
        .unwrap();
        let notes = wait_text(&b, "#explore-notes", |t| !t.is_empty()).await;
        assert!(notes.contains("might not be a counter"), "{notes}");
        wait_text(&b, "#explore-status", |t| t.contains("series")).await;
        // The query ran with raw samples asked for, and the address keeps the choice.
        let kept = b
            .execute(
                "return [document.getElementById('explore-resolution').value, location.search]",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(kept[0].as_str(), Some("raw"), "{kept:?}");
        assert!(
            kept[1]
                .as_str()
                .unwrap_or_default()
                .contains("resolution=raw"),
            "{kept:?}"
        );
        b.find(Locator::Id("explore-expr"))
            .await
            .unwrap()
            .clear()
            .await
            .unwrap();
        b.find(Locator::Id("explore-expr"))
            .await
            .unwrap()
            .send_keys("sum(")
            .await
            .unwrap();
        click(&b, "#explore-run").await;
        let error = wait_text(&b, "#explore-error", |t| !t.is_empty()).await;
        assert!(error.starts_with("bad_data"), "{error}");
        shots.take(&b, "explore").await;

        // Withdraw the acknowledgement.
        b.goto(&format!("{base}/alerts")).await.unwrap();
        b.wait()
            .for_element(Locator::Css(&format!("{row} button.unack")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_text(&b, &row, |t| {
            t.contains("Acknowledge") && !t.contains("on it")
        })
        .await;
        assert!(api("DiskAlmostFull")["acknowledged"].is_null());
        b.close().await.unwrap();
    });
    assert!(
        std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "png"))
            .count()
            >= 4
    );
    // The history API: searches, and bad parameters named.
    let (code, body) = lk.get("/api/v1/lookout/notifications?receiver=team&result=sent");
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let sent = v["data"].as_array().unwrap();
    assert!(
        !sent.is_empty()
            && sent.iter().all(|d| d["receiver"] == "team"
                && d["result"] == "sent"
                && d["integration"] == "webhook"),
        "{v}"
    );
    assert_eq!(sent[0]["alerts"][0]["alertname"], "DiskAlmostFull");
    assert!(team.count() >= 1);
    for bad in ["result=maybe", "start=soon", "limit=-1"] {
        let (code, body) = lk.get(&format!("/api/v1/lookout/notifications?{bad}"));
        assert_eq!(code, 400, "{bad}: {body}");
        assert!(body.contains(bad.split('=').next().unwrap()), "{body}");
    }
    assert!(lk.terminate().success());
}
