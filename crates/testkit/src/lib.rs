//! Test support shared by Lookout's crates (a dev-dependency only; nothing in the
//! product uses it): where the upstream reference data is, and a local webhook
//! receiver that records what it is sent.
//!
//! The upstream reference data (`../shared/upstream/` beside the repository) exists in
//! CI and development sessions, never in a user's clone: [`upstream`] says so on stderr
//! when it is absent, so a test that needs it skips visibly.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// The upstream reference directory `rel` (e.g. `prometheus/promql-testdata`) under
/// `../shared/upstream/`, or `None`, saying `SKIPPED: …` on stderr, when it is absent.
pub fn upstream(rel: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/upstream")
        .join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED: {} is absent (reference data, present in CI and dev sessions only)",
            p.display()
        );
        None
    }
}

/// (path, body) of every request a [`WebhookReceiver`] answered with success.
pub type Received = Arc<Mutex<Vec<(String, Value)>>>;

/// A local HTTP receiver on a free port, on its own runtime: records every JSON body
/// POSTed to any path; answers a chosen status, or 500 to the first requests.
pub struct WebhookReceiver {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// `base` + `/hook`.
    pub url: String,
    /// What it was sent and answered with success.
    pub bodies: Received,
    _rt: tokio::runtime::Runtime,
}

impl std::fmt::Debug for WebhookReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookReceiver")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl WebhookReceiver {
    /// A receiver answering `status` after failing the first `fail` requests with 500.
    pub fn start(status: u16, fail: usize) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a test runtime starts");
        let bodies: Received = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(Mutex::new(0usize));
        let b = bodies.clone();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("a free port");
        let addr = listener.local_addr().expect("a bound address");
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri, body: String| {
            let b = b.clone();
            let count = count.clone();
            async move {
                let mut c = count.lock().expect("lock");
                *c += 1;
                if *c <= fail {
                    return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                }
                b.lock().expect("lock").push((
                    uri.path().to_string(),
                    serde_json::from_str(&body).expect("a JSON body"),
                ));
                axum::http::StatusCode::from_u16(status).expect("a valid status")
            }
        });
        rt.spawn(async move { axum::serve(listener, app).await.expect("serving") });
        let base = format!("http://{addr}");
        Self {
            url: format!("{base}/hook"),
            base,
            bodies,
            _rt: rt,
        }
    }

    /// The bodies received so far, emptying the record.
    pub fn take(&self) -> Vec<Value> {
        std::mem::take(&mut *self.bodies.lock().expect("lock"))
            .into_iter()
            .map(|(_, b)| b)
            .collect()
    }

    /// How many bodies were received.
    pub fn count(&self) -> usize {
        self.bodies.lock().expect("lock").len()
    }

    /// The first body received.
    pub fn first(&self) -> Value {
        self.bodies.lock().expect("lock")[0].1.clone()
    }
}
