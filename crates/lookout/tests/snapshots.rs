//! State snapshots end to end: a critical rule alert takes one when it starts firing and
//! its webhook notification carries the link; one taken by hand through the API; the
//! list, a damaged file that costs only itself, ids that cannot escape the directory,
//! and the snapshot page in Chromium.

mod common;

use std::time::Duration;

use common::*;
use lookout_testkit::WebhookReceiver;
use serde_json::Value;

const RULES: &str = r#"groups:
- name: disks
  interval: 1s
  rules:
  - alert: DiskAlmostFull
    expr: label_replace(vector(1), "device", "sda", "", "")
    labels: {severity: critical}
    annotations:
      summary: 'Disk {{ $labels.device }} is almost full'
"#;

#[test]
fn a_critical_alert_takes_a_snapshot_and_its_notification_links_it() {
    let dir = tempfile::tempdir().unwrap();
    let hook = WebhookReceiver::start(200, 0);
    std::fs::write(dir.path().join("rules.yml"), RULES).unwrap();
    std::fs::write(
        dir.path().join("alertmanager.yml"),
        format!(
            "route:\n  receiver: team\n  group_wait: 1s\nreceivers:\n  - name: team\n    webhook_configs: [{{url: \"{}\"}}]\n",
            hook.url
        ),
    )
    .unwrap();
    let cfg = write_config(
        dir.path(),
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\ncollectors:\n  process: { enabled: false }\nrule_packs: []\nrule_files: [rules.yml]\nnotifier:\n  config_file: alertmanager.yml\nsnapshots:\n  on_alert_severities: [critical]\n  max_snapshots: 10\n",
    );
    let lk = Lookout::start(&dir.path().join("data"), &cfg);
    wait_until("the notification", Duration::from_secs(30), || {
        hook.count() > 0
    });
    let payload = hook.first();
    let url = payload["alerts"][0]["annotations"]["snapshot_url"]
        .as_str()
        .unwrap_or_else(|| panic!("no snapshot link: {payload}"))
        .to_string();
    let prefix = format!("{}/snapshots/", lk.base);
    assert!(url.starts_with(&prefix), "{url}");
    let id = url[prefix.len()..].to_string();
    // The snapshot is written once its parts are read (a moment after the alert fired).
    let mut snap = Value::Null;
    wait_until("the alert's snapshot", Duration::from_secs(20), || {
        let (code, body) = lk.get(&format!("/api/v1/lookout/snapshots/{id}"));
        if code != 200 {
            return false;
        }
        snap = serde_json::from_str::<Value>(&body).unwrap()["data"].clone();
        true
    });
    assert_eq!(snap["reason"]["kind"], "alert");
    assert_eq!(snap["reason"]["labels"]["alertname"], "DiskAlmostFull");
    assert_eq!(snap["reason"]["labels"]["device"], "sda");
    let by_cpu = snap["sections"]["processes"]["by_cpu"].as_array().unwrap();
    assert!(!by_cpu.is_empty(), "{snap}");
    assert!(by_cpu[0]["pid"].as_i64().unwrap() > 0);
    assert!(
        snap["sections"]["report"]["performance_score"].is_number(),
        "{snap}"
    );
    assert_eq!(snap["errors"], Value::Array(vec![]), "{snap}");

    // By hand, with a note; the newest is listed first.
    let (code, body) = lk.post(
        "/api/v1/lookout/snapshots?note=before%20the%20deploy",
        "text/plain",
        "",
    );
    assert_eq!(code, 200, "{body}");
    let manual: Value = serde_json::from_str::<Value>(&body).unwrap()["data"].clone();
    assert_eq!(manual["reason"]["kind"], "manual");
    assert_eq!(manual["reason"]["note"], "before the deploy");
    let (_, body) = lk.get("/api/v1/lookout/snapshots");
    let list: Value = serde_json::from_str::<Value>(&body).unwrap()["data"].clone();
    let ids: Vec<&str> = list["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [manual["id"].as_str().unwrap(), id.as_str()], "{list}");
    // The alert keeps firing: still one snapshot for it.

    // A damaged file costs only itself.
    let damaged = "1700000000000-00000000000000ff";
    std::fs::write(
        dir.path()
            .join("data/snapshots")
            .join(format!("{damaged}.json")),
        b"{\"id\": \"17",
    )
    .unwrap();
    let (_, body) = lk.get("/api/v1/lookout/snapshots");
    let list: Value = serde_json::from_str::<Value>(&body).unwrap()["data"].clone();
    assert_eq!(list["snapshots"].as_array().unwrap().len(), 2, "{list}");
    assert!(
        list["damaged"][0].as_str().unwrap().contains("damaged"),
        "{list}"
    );
    let (code, body) = lk.get(&format!("/api/v1/lookout/snapshots/{damaged}"));
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("is damaged"), "{body}");
    // Ids cannot name anything else.
    for bad in ["..%2F..%2Fetc%2Fpasswd", "ABC", "x.json"] {
        let (code, body) = lk.get(&format!("/api/v1/lookout/snapshots/{bad}"));
        assert_eq!(code, 400, "{bad}: {body}");
    }
    let (code, _) = lk.get("/api/v1/lookout/snapshots/1700000000000-0000000000000001");
    assert_eq!(code, 404);
    let long = "x".repeat(1001);
    let (code, _) = lk.post(
        &format!("/api/v1/lookout/snapshots?note={long}"),
        "text/plain",
        "",
    );
    assert_eq!(code, 400);

    // The snapshot page.
    common::browser::with_browser(&dir.path().join("profile"), |b| {
        let (lk, url) = (&lk, &url);
        async move {
            b.goto(url).await.unwrap();
            let reason =
                common::browser::wait_text(&b, "#snapshot-reason", |t| !t.is_empty()).await;
            assert!(reason.contains("DiskAlmostFull"), "{reason}");
            let rows = b
                .execute(
                    "return document.querySelectorAll('#processes-cpu tbody tr').length",
                    vec![],
                )
                .await
                .unwrap();
            assert!(rows.as_u64().unwrap() > 0);
            b.goto(&format!("{}/snapshots", lk.base)).await.unwrap();
            common::browser::wait_text(&b, "#snapshots tbody", |t| t.contains("before the deploy"))
                .await;
            b
        }
    });
    assert!(lk.terminate().success());
}
