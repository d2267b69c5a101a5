//! Cluster health with quorum end to end: three real Redis servers collected by Lookout
//! as one cluster (`health.clusters`, majority of 3). One down: degraded, the quorum
//! holds; two down: unhealthy, quorum lost — in `/health` (with the members in
//! `details`) and in the `lookout_cluster_*` metrics.

mod common;
#[path = "../../collect/tests/support/mod.rs"]
mod support;

use std::time::Duration;

use common::*;
use serde_json::Value;
use support::RedisServer;

fn cluster(lk: &Lookout) -> Value {
    lk.health_check("cluster/cache")
}

#[test]
fn a_cluster_keeps_then_loses_its_quorum() {
    let mut servers: Vec<Option<RedisServer>> =
        (0..3).map(|_| Some(RedisServer::start())).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = String::from(
        "global:\n  scrape_interval: 1s\ncollectors:\n  host: { enabled: false }\n  process: { enabled: false }\n  redis:\n",
    );
    for (k, s) in servers.iter().enumerate() {
        yaml.push_str(&format!(
            "    - name: r{k}\n      url: \"{}\"\n",
            s.as_ref().unwrap().url()
        ));
    }
    yaml.push_str("health:\n  clusters:\n    - name: cache\n      members: 'redis_up{job=\"redis\"}'\n      quorum: majority\n      size: 3\n");
    let cfg = write_config(dir.path(), &yaml);
    let lk = Lookout::start(&dir.path().join("data"), &cfg);
    wait_until("a healthy cluster", Duration::from_secs(20), || {
        cluster(&lk)["status"] == "healthy"
    });
    let c = cluster(&lk);
    assert_eq!(c["details"]["quorum"], "available", "{c}");
    assert_eq!(c["details"]["required"], 2);
    assert_eq!(c["details"]["members"].as_array().unwrap().len(), 3);

    servers[0] = None;
    wait_until("one member down", Duration::from_secs(20), || {
        cluster(&lk)["status"] == "degraded"
    });
    let c = cluster(&lk);
    assert_eq!(c["details"]["quorum"], "available", "{c}");
    assert_eq!(
        c["message"],
        "2 of 3 members healthy, 0 degraded, 1 unhealthy; quorum 2 of 3: available"
    );

    servers[1] = None;
    wait_until("quorum lost", Duration::from_secs(20), || {
        cluster(&lk)["status"] == "unhealthy"
    });
    let c = cluster(&lk);
    assert_eq!(c["details"]["quorum"], "lost", "{c}");
    let (code, _) = lk.get("/health");
    assert_eq!(code, 503, "an unhealthy check makes /health answer 503");
    let (_, metrics) = lk.get("/metrics");
    assert!(
        metrics.contains("lookout_cluster_quorum_available{cluster=\"cache\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("lookout_cluster_members{cluster=\"cache\",state=\"unhealthy\"} 2"),
        "{metrics}"
    );
    // Bad cluster configurations are refused by name.
    for (bad, want) in [
        ("quorum: most", "majority or a positive number"),
        ("quorum: 4\n      size: 3", "cannot be met"),
        ("members: 'up{'", "members"),
    ] {
        let body = if bad.starts_with("members") {
            format!("health:\n  clusters:\n    - name: x\n      {bad}\n")
        } else {
            format!("health:\n  clusters:\n    - name: x\n      members: up\n      {bad}\n")
        };
        let cfg = write_config(dir.path(), &body);
        let out = run(&["check", "config", utf8(&cfg)]);
        assert!(!out.status.success(), "{bad}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(want),
            "{bad}: {out:?}"
        );
    }
    assert!(lk.terminate().success());
}
