//! Remote read as a client against peers that misbehave: an answer past the size bound
//! and a peer that closes mid-answer cost only that remote's part; the query answers
//! from the local store and the failure is counted.

use std::sync::Arc;

use lookout_model::{Labels, Matcher};
use lookout_remote::read_client::{Merged, ReadOptions};
use lookout_storage::{Appendable, MemStorage, Queryable, SelectHints};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A peer answering every request with `answer` (raw bytes after the request is read).
async fn peer(answer: Vec<u8>) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/read", l.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 65536];
                let _ = c.read(&mut buf).await;
                let _ = c.write_all(&answer).await;
            });
        }
    });
    url
}

fn remote(name: &str, url: String) -> ReadOptions {
    ReadOptions {
        name: name.into(),
        url,
        timeout: std::time::Duration::from_secs(5),
        headers: vec![],
        http: Default::default(),
        read_recent: true,
        required_matchers: vec![],
        filter_external_labels: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_truncated_answers_cost_only_their_remote() {
    let mut big = b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n".to_vec();
    big.extend(vec![0u8; 1_000_000]);
    let mut chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..100 {
        chunked.extend(b"2710\r\n");
        chunked.extend(vec![0u8; 10_000]);
        chunked.extend(b"\r\n");
    }
    chunked.extend(b"0\r\n\r\n");
    let cut = b"HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\nonly a little".to_vec();
    let local = Arc::new(MemStorage::new());
    let mut app = local.appender();
    app.append(&Labels::from_pairs([("__name__", "up")]), 1000, 1.0)
        .unwrap();
    app.commit().unwrap();
    let mut reg = Registry::default();
    let merged = Merged::new(
        local,
        vec![
            remote("big", peer(big).await),
            remote("chunked", peer(chunked).await),
            remote("cut", peer(cut).await),
        ],
        vec![],
        Arc::new(|| Some(0)),
        tokio::runtime::Handle::current(),
        &mut reg,
    )
    .unwrap()
    .with_max_answer(64 * 1024);
    let got = tokio::task::spawn_blocking(move || {
        let q = merged.querier(0, 10_000).unwrap();
        q.select(&SelectHints::default(), &[Matcher::equal("__name__", "up")])
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(got.len(), 1, "the local series answers");
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    for name in ["big", "chunked", "cut"] {
        assert!(
            text.contains(&format!(
                "lookout_remote_read_failures_total{{remote_name=\"{name}\"}} 1"
            )),
            "{name}: {text}"
        );
    }
}
