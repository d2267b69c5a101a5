//! A local HTTP receiver shared by the notify tests: records every JSON body POSTed to
//! any path; answers `status`, or 500 to the first `fail` requests.

#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex};

use serde_json::Value;

/// A running receiver.
pub struct Http {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// `base` + `/hook`.
    pub url: String,
    /// (path, body) of every request answered with success.
    pub bodies: Arc<Mutex<Vec<(String, Value)>>>,
    _rt: tokio::runtime::Runtime,
}

impl Http {
    /// A receiver answering `status` after failing the first `fail` requests.
    pub fn start(status: u16, fail: usize) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(Mutex::new(0usize));
        let b = bodies.clone();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri, body: String| {
            let b = b.clone();
            let count = count.clone();
            async move {
                let mut c = count.lock().unwrap();
                *c += 1;
                if *c <= fail {
                    return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                }
                b.lock()
                    .unwrap()
                    .push((uri.path().to_string(), serde_json::from_str(&body).unwrap()));
                axum::http::StatusCode::from_u16(status).unwrap()
            }
        });
        rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
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
        std::mem::take(&mut *self.bodies.lock().unwrap())
            .into_iter()
            .map(|(_, b)| b)
            .collect()
    }
}

/// The escalation policy the tests use: `severity="page"` alerts go to `pager`, then
/// after ten minutes without an acknowledgement to `senior`.
pub fn db_oncall_policy() -> lookout_notify::EscalationPolicy {
    use lookout_notify::Level;
    lookout_notify::EscalationPolicy {
        name: "db-oncall".into(),
        matchers: lookout_notify::matchers::parse_matchers("severity=\"page\"").unwrap(),
        levels: vec![
            Level {
                receivers: vec!["pager".into()],
                timeout: std::time::Duration::from_secs(600),
            },
            Level {
                receivers: vec!["senior".into()],
                timeout: std::time::Duration::from_secs(600),
            },
        ],
    }
}
