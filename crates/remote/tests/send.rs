//! The sender against a scripted receiver on loopback: retries on 5xx and 429 deliver
//! everything once and in order; a 4xx drops the batch, counted; `max_backlog` and
//! `max_backlog_bytes` drop the oldest data, counted; a restart resumes where the last
//! acknowledgement left off; 2.0 falls back to 1.0 on 415.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lookout_model::Labels;
use lookout_remote::send::{Options, Protocol, QueueOptions, RemoteOptions, RemoteWrite};
use lookout_storage::{Appendable, MemStorage};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the receiver got and what it answers next.
#[derive(Default)]
struct Script {
    /// Statuses to answer, in order; 200 when empty.
    answers: VecDeque<u16>,
    /// Every (series name, t) acknowledged, in arrival order.
    got: Vec<(String, i64)>,
    /// Requests seen, and their content types.
    requests: Vec<String>,
    /// Every exemplar acknowledged: (series name, trace id, t).
    exemplars: Vec<(String, String, i64)>,
    /// Created timestamps received: (series name, ms).
    created: Vec<(String, i64)>,
}

async fn receiver(script: Arc<Mutex<Script>>) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/write", l.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut c, _)) = l.accept().await else {
                return;
            };
            let script = Arc::clone(&script);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        let mut chunk = [0u8; 65536];
                        match c.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    while buf.len() < end + 4 + len {
                        let mut chunk = [0u8; 65536];
                        match c.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body: Vec<u8> = buf[end + 4..end + 4 + len].to_vec();
                    buf.drain(..end + 4 + len);
                    let ctype = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-type:"))
                        .unwrap_or("")
                        .trim()
                        .to_string();
                    let code = {
                        let mut s = script.lock().unwrap();
                        s.requests.push(ctype.clone());
                        let code = s.answers.pop_front().unwrap_or(200);
                        if code == 200 {
                            let limits = lookout_remote::Limits::default();
                            let series = if ctype.contains("v2") {
                                lookout_remote::decode_v2_request(&body, &limits)
                                    .unwrap()
                                    .series
                            } else {
                                lookout_remote::decode_write_request(&body, &limits).unwrap()
                            };
                            for x in series {
                                let name = x.labels.metric_name().unwrap().to_string();
                                for (t, _) in x.samples {
                                    s.got.push((name.clone(), t));
                                }
                                if x.created != 0 {
                                    s.created.push((name.clone(), x.created));
                                }
                                for e in x.exemplars {
                                    let trace = e.labels.get("trace_id").unwrap_or("").to_string();
                                    s.exemplars.push((name.clone(), trace, e.t));
                                }
                            }
                        }
                        code
                    };
                    let resp = format!("HTTP/1.1 {code} X\r\ncontent-length: 0\r\n\r\n");
                    if c.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

fn remote(url: &str) -> RemoteOptions {
    RemoteOptions {
        name: "r".into(),
        url: url.into(),
        timeout: Duration::from_secs(5),
        headers: vec![],
        http: Default::default(),
        relabel: vec![],
        queue: QueueOptions {
            batch_send_deadline: Duration::from_millis(50),
            min_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            max_samples_per_send: 10,
            max_shards: 4,
            ..Default::default()
        },
        send_metadata: false,
        metadata_interval: Duration::from_secs(60),
        send_exemplars: false,
        send_native_histograms: false,
        protocol: Protocol::V1,
        max_backlog: Duration::from_secs(3600),
        max_backlog_bytes: 0,
        max_lag: Duration::from_secs(60),
    }
}

fn options(dir: &std::path::Path, r: RemoteOptions) -> Options {
    Options {
        dir: dir.to_path_buf(),
        external_labels: vec![("site".into(), "lab".into())],
        remotes: vec![r],
        sync_every: Duration::from_secs(1),
        segment_bytes: 2048,
        metadata: Arc::new(Vec::new),
    }
}

/// Appends `n` samples of series `name` (one commit each, timestamps from `t0`).
fn write(store: &Arc<dyn Appendable>, name: &str, t0: i64, n: i64) {
    for t in t0..t0 + n {
        let mut app = store.appender();
        app.append(&Labels::from_pairs([("__name__", name)]), t, t as f64)
            .unwrap();
        app.commit().unwrap();
    }
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..400 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

fn figure(reg: &Registry, name: &str) -> f64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, reg).unwrap();
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_deliver_everything_once_in_order_and_refusals_are_counted() {
    let script = Arc::new(Mutex::new(Script::default()));
    script.lock().unwrap().answers = [503, 429, 500].into();
    let url = receiver(Arc::clone(&script)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut reg = Registry::default();
    let rw = Arc::new(RemoteWrite::new(options(dir.path(), remote(&url)), &mut reg).unwrap());
    let local = Arc::new(MemStorage::new());
    let store = rw.wrap(local.clone());
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let tasks = rw.spawn(stop);
    write(&store, "a", 1, 50);
    write(&store, "b", 1, 50);
    until("100 samples", || script.lock().unwrap().got.len() >= 100).await;
    {
        let s = script.lock().unwrap();
        for name in ["a", "b"] {
            let ts: Vec<i64> = s.got.iter().filter(|g| g.0 == name).map(|g| g.1).collect();
            assert_eq!(
                ts,
                (1..=50).collect::<Vec<_>>(),
                "{name}: once each, in order"
            );
        }
    }
    assert!(figure(&reg, "prometheus_remote_storage_samples_retried_total") > 0.0);
    assert_eq!(
        figure(&reg, "prometheus_remote_storage_samples_total"),
        100.0
    );
    // A 400 is final: the batch is dropped and counted, later ones flow.
    script.lock().unwrap().answers = [400].into();
    write(&store, "c", 1, 5);
    until("refusal counted", || {
        figure(&reg, "prometheus_remote_storage_samples_failed_total") == 5.0
    })
    .await;
    write(&store, "d", 1, 5);
    until("d arrives", || {
        script
            .lock()
            .unwrap()
            .got
            .iter()
            .filter(|g| g.0 == "d")
            .count()
            == 5
    })
    .await;
    until("nothing pending", || {
        figure(&reg, "prometheus_remote_storage_samples_pending") == 0.0
    })
    .await;
    let _ = stop_tx.send(true);
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_after_the_last_acknowledged_round() {
    let script = Arc::new(Mutex::new(Script::default()));
    let url = receiver(Arc::clone(&script)).await;
    let dir = tempfile::tempdir().unwrap();
    let local: Arc<dyn Appendable> = Arc::new(MemStorage::new());
    {
        let mut reg = Registry::default();
        let rw = Arc::new(RemoteWrite::new(options(dir.path(), remote(&url)), &mut reg).unwrap());
        let store = rw.wrap(Arc::clone(&local));
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let tasks = rw.spawn(stop);
        write(&store, "a", 1, 30);
        until("30 sent", || script.lock().unwrap().got.len() == 30).await;
        // The receiver goes down; more is written; the sender stops.
        script.lock().unwrap().answers = vec![503; 1000].into();
        write(&store, "a", 31, 30);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = stop_tx.send(true);
        for t in tasks {
            t.await.unwrap();
        }
    }
    script.lock().unwrap().answers.clear();
    let mut reg = Registry::default();
    let rw = Arc::new(RemoteWrite::new(options(dir.path(), remote(&url)), &mut reg).unwrap());
    assert_eq!(
        figure(&reg, "prometheus_remote_storage_samples_pending"),
        30.0,
        "the backlog is found"
    );
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let _tasks = rw.spawn(stop);
    until("60 sent", || script.lock().unwrap().got.len() >= 60).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ts: Vec<i64> = script.lock().unwrap().got.iter().map(|g| g.1).collect();
    assert_eq!(
        ts,
        (1..=60).collect::<Vec<_>>(),
        "nothing twice, nothing lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_backlog_the_oldest_is_dropped_and_counted() {
    let script = Arc::new(Mutex::new(Script::default()));
    script.lock().unwrap().answers = vec![503; 1_000_000].into();
    let url = receiver(Arc::clone(&script)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut reg = Registry::default();
    let mut r = remote(&url);
    r.max_backlog = Duration::from_millis(300);
    let rw = Arc::new(RemoteWrite::new(options(dir.path(), r), &mut reg).unwrap());
    let store = rw.wrap(Arc::new(MemStorage::new()));
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let _tasks = rw.spawn(stop);
    write(&store, "old", 1, 20);
    until("old dropped", || {
        figure(
            &reg,
            "prometheus_remote_storage_samples_dropped_total{remote_name=\"r\",url=",
        ) >= 20.0
    })
    .await;
    script.lock().unwrap().answers.clear();
    write(&store, "new", 1, 5);
    until("new arrives", || script.lock().unwrap().got.len() == 5).await;
    assert!(script.lock().unwrap().got.iter().all(|g| g.0 == "new"));

    // By bytes: a small bound drops whole segments while the receiver is down.
    let script = Arc::new(Mutex::new(Script::default()));
    script.lock().unwrap().answers = vec![503; 1_000_000].into();
    let url = receiver(Arc::clone(&script)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut reg = Registry::default();
    let mut r = remote(&url);
    r.max_backlog_bytes = 4096;
    let rw = Arc::new(RemoteWrite::new(options(dir.path(), r), &mut reg).unwrap());
    let store = rw.wrap(Arc::new(MemStorage::new()));
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let _tasks = rw.spawn(stop);
    write(&store, "x", 1, 400);
    until("bytes bound enforced", || {
        figure(&reg, "prometheus_remote_storage_samples_dropped_total") > 0.0
    })
    .await;
    let on_disk: u64 = std::fs::read_dir(dir.path().join("r"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(on_disk < 16 * 1024, "{on_disk} bytes kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_2_0_falls_back_to_1_0_on_415() {
    let script = Arc::new(Mutex::new(Script::default()));
    script.lock().unwrap().answers = [415].into();
    let url = receiver(Arc::clone(&script)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut reg = Registry::default();
    let mut r = remote(&url);
    r.protocol = Protocol::V2;
    let rw = Arc::new(RemoteWrite::new(options(dir.path(), r), &mut reg).unwrap());
    let store = rw.wrap(Arc::new(MemStorage::new()));
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let _tasks = rw.spawn(stop);
    write(&store, "a", 1, 3);
    until("sent", || script.lock().unwrap().got.len() == 3).await;
    let s = script.lock().unwrap();
    assert!(
        s.requests[0].contains("io.prometheus.write.v2.request"),
        "{:?}",
        s.requests
    );
    assert_eq!(s.requests.last().unwrap(), "application/x-protobuf");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exemplars_are_sent_with_send_exemplars_in_both_versions() {
    for (protocol, send) in [
        (Protocol::V1, true),
        (Protocol::V2, true),
        (Protocol::V1, false),
    ] {
        let script = Arc::new(Mutex::new(Script::default()));
        let url = receiver(Arc::clone(&script)).await;
        let dir = tempfile::tempdir().unwrap();
        let mut reg = Registry::default();
        let mut r = remote(&url);
        r.protocol = protocol;
        r.send_exemplars = send;
        let rw = Arc::new(RemoteWrite::new(options(dir.path(), r), &mut reg).unwrap());
        let store = rw.wrap(Arc::new(MemStorage::new()));
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let tasks = rw.spawn(stop);
        let bucket = Labels::from_pairs([("__name__", "lat_bucket"), ("le", "0.1")]);
        for t in 1..=25i64 {
            let mut app = store.appender();
            app.append(&bucket, t, t as f64).unwrap();
            if t % 5 == 0 {
                let e = lookout_model::Exemplar {
                    labels: Labels::from_pairs([("trace_id", format!("{t:032x}"))]),
                    value: 0.05,
                    t,
                };
                app.append_exemplar(&bucket, &e).unwrap();
            }
            app.commit().unwrap();
        }
        until("25 samples", || script.lock().unwrap().got.len() >= 25).await;
        if send {
            until("5 exemplars", || {
                script.lock().unwrap().exemplars.len() >= 5
            })
            .await;
            let got = script.lock().unwrap().exemplars.clone();
            let want: Vec<(String, String, i64)> = (1..=5)
                .map(|i| ("lat_bucket".to_string(), format!("{:032x}", i * 5), i * 5))
                .collect();
            assert_eq!(
                got, want,
                "{protocol:?}: once each, in order, on their series"
            );
            // The sender counts a batch after its request returns, which may be after
            // the receiver has seen it: wait for the count, then check it is exact.
            until("the exemplars counted", || {
                figure(&reg, "prometheus_remote_storage_exemplars_total") >= 5.0
            })
            .await;
            assert_eq!(
                figure(&reg, "prometheus_remote_storage_exemplars_total"),
                5.0
            );
        } else {
            // Nothing is queued for a remote that does not send them.
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(script.lock().unwrap().exemplars.is_empty());
        }
        let _ = stop_tx.send(true);
        for t in tasks {
            t.await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_timestamps_travel_with_2_0_when_they_change() {
    let script = Arc::new(Mutex::new(Script::default()));
    let url = receiver(Arc::clone(&script)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut reg = Registry::default();
    let mut r = remote(&url);
    r.protocol = Protocol::V2;
    let rw = Arc::new(RemoteWrite::new(options(dir.path(), r), &mut reg).unwrap());
    let store = rw.wrap(Arc::new(MemStorage::new()));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let tasks = rw.spawn(stop);
    let counter = Labels::from_pairs([("__name__", "req_total")]);
    // Every scrape says when the counter was created; it resets once (at t = 6).
    for t in 1..=10i64 {
        let mut app = store.appender();
        app.append(&counter, t, t as f64).unwrap();
        app.append_created(&counter, if t < 6 { 1 } else { 6 })
            .unwrap();
        app.commit().unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    until("10 samples", || script.lock().unwrap().got.len() >= 10).await;
    let created = script.lock().unwrap().created.clone();
    assert!(!created.is_empty(), "2.0 carries them");
    assert!(created.iter().all(|(n, _)| n == "req_total"), "{created:?}");
    let mut seen: Vec<i64> = created.iter().map(|c| c.1).collect();
    seen.dedup();
    assert_eq!(seen, [1, 6], "the first, then the new one after the reset");
    let _ = stop_tx.send(true);
    for t in tasks {
        t.await.unwrap();
    }
}
