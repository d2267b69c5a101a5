//! The endpoint Lookout scrapes: `/metrics` (OpenMetrics text), `/health` (every check,
//! 503 when unhealthy), `/health/live` (the process answers) and `/health/ready` (the
//! checks that gate readiness). [`router`] gives an axum `Router` to merge into the
//! engine's own server; [`serve`] runs it on a port of its own.

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::Metrics;
use crate::health::{HealthChecker, Report, Status};

fn health_response(r: &Report) -> Response {
    let code = if r.status == Status::Unhealthy {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(r).expect("reports serialize"),
    )
        .into_response()
}

/// The four routes over `metrics` and `health` (the checker's cached results).
pub fn router(metrics: Metrics, health: Arc<HealthChecker>) -> Router {
    let ready = Arc::clone(&health);
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.encode(),
                    )
                }
            }),
        )
        .route(
            "/health",
            get(move || {
                let h = Arc::clone(&health);
                async move { health_response(&h.report()) }
            }),
        )
        .route(
            "/health/live",
            get(|| async {
                health_response(&Report {
                    status: Status::Healthy,
                    checks: Vec::new(),
                })
            }),
        )
        .route(
            "/health/ready",
            get(move || {
                let h = Arc::clone(&ready);
                async move { health_response(&h.report().readiness()) }
            }),
        )
}

/// Serves [`router`] on `addr` until the task is dropped; logs nothing, prints nothing.
pub async fn serve(
    addr: &str,
    metrics: Metrics,
    health: Arc<HealthChecker>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    serve_on(listener, metrics, health).await
}

/// Serves [`router`] on a bound listener (port 0 in tests).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    health: Arc<HealthChecker>,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics, health)).await
}

/// A tower layer recording every request through an axum router (or any `http`
/// service) in the network set: HTTP requests in `http_server_request_duration_seconds`
/// by method, matched route (axum's `MatchedPath`; `unmatched` otherwise) and status;
/// gRPC requests (`content-type: application/grpc…`, path `/package.Service/Method`) in
/// `grpc_server_*`, with the `grpc-status` the response headers carry (tonic's
/// trailers-only answers, its errors) and OK otherwise.
#[derive(Debug, Clone)]
pub struct MetricsLayer {
    net: crate::sets::NetworkMetrics,
    grpc: Arc<std::sync::Mutex<std::collections::HashMap<String, crate::sets::GrpcCall>>>,
}

impl MetricsLayer {
    /// A layer recording into `net`.
    pub fn new(net: crate::sets::NetworkMetrics) -> Self {
        Self {
            net,
            grpc: Arc::default(),
        }
    }
}

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`MetricsLayer`] wraps around another.
#[derive(Debug, Clone)]
pub struct MetricsService<S> {
    inner: S,
    layer: MetricsLayer,
}

impl<S, B, RB> tower::Service<axum::http::Request<B>> for MetricsService<S>
where
    S: tower::Service<axum::http::Request<B>, Response = axum::http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Self::Future {
        let started = crate::Instant::now();
        let grpc = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("application/grpc"));
        let method = req.method().as_str().to_string();
        let route = req
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .map_or("unmatched", |p| p.as_str())
            .to_string();
        let path = req.uri().path().to_string();
        let fut = self.inner.call(req);
        let layer = self.layer.clone();
        Box::pin(async move {
            let res = fut.await;
            let secs = started.elapsed().as_secs_f64();
            if let Ok(resp) = &res {
                if grpc {
                    if let Some((service, m)) = path.trim_start_matches('/').split_once('/') {
                        let code = resp
                            .headers()
                            .get("grpc-status")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse::<u8>().ok())
                            .unwrap_or(0);
                        let call = layer
                            .grpc
                            .lock()
                            .expect("layer lock")
                            .entry(path.clone())
                            .or_insert_with(|| layer.net.grpc_server("unary", service, m))
                            .clone();
                        call.start();
                        call.handled(code, secs);
                    }
                } else {
                    layer
                        .net
                        .http_server(&method, &route)
                        .record(resp.status().as_u16(), secs);
                }
            }
            res
        })
    }
}
