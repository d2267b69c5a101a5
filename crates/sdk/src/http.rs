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
/// service, tonic's among them) in the network set: HTTP requests in
/// `http_server_request_duration_seconds` by method, matched route (axum's
/// `MatchedPath`; `unmatched` otherwise) and status; gRPC requests (`content-type:
/// application/grpc…`, path `/package.Service/Method`) in `grpc_server_*`, with the
/// `grpc-status` of the answer: from its headers for a trailers-only answer, else from
/// the trailers that end its body (recorded when the body ends: `Unknown` when it ends
/// without one, `Canceled` when it is dropped before its end, as when the client goes).
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
    type Response = axum::http::Response<MetricsBody<RB>>;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, S::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Self::Future {
        let started = crate::Instant::now();
        let (grpc, route) = request_kind(&req);
        let route = route.unwrap_or_else(|| "unmatched".into());
        let method = req.method().as_str().to_string();
        let path = req.uri().path().to_string();
        let fut = self.inner.call(req);
        let layer = self.layer.clone();
        Box::pin(async move {
            let resp = fut.await?;
            let call = grpc
                .then(|| path.trim_start_matches('/').split_once('/'))
                .flatten()
                .map(|(service, m)| {
                    layer
                        .grpc
                        .lock()
                        .expect("layer lock")
                        .entry(path.clone())
                        .or_insert_with(|| layer.net.grpc_server("unary", service, m))
                        .clone()
                });
            let pending = match call {
                Some(call) => {
                    call.start();
                    match grpc_status(resp.headers()) {
                        // Trailers-only: the answer is complete.
                        Some(code) => {
                            call.handled(code, started.elapsed().as_secs_f64());
                            None
                        }
                        None => Some((call, started)),
                    }
                }
                None => {
                    if !grpc {
                        layer
                            .net
                            .http_server(&method, &route)
                            .record(resp.status().as_u16(), started.elapsed().as_secs_f64());
                    }
                    None
                }
            };
            Ok(resp.map(|inner| MetricsBody { inner, pending }))
        })
    }
}

/// Whether a request is gRPC (`content-type: application/grpc…`), and the axum route it
/// matched, if any.
pub(crate) fn request_kind<B>(req: &axum::http::Request<B>) -> (bool, Option<String>) {
    let grpc = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/grpc"));
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string());
    (grpc, route)
}

fn grpc_status(h: &axum::http::HeaderMap) -> Option<u8> {
    h.get("grpc-status")?.to_str().ok()?.parse::<u8>().ok()
}

/// A response body as [`MetricsLayer`] passes it on: a gRPC call is recorded when the
/// body ends, with the `grpc-status` of its trailers.
#[derive(Debug)]
pub struct MetricsBody<B> {
    inner: B,
    pending: Option<(crate::sets::GrpcCall, crate::Instant)>,
}

impl<B> MetricsBody<B> {
    fn finish(&mut self, code: u8) {
        if let Some((call, started)) = self.pending.take() {
            call.handled(code, started.elapsed().as_secs_f64());
        }
    }
}

impl<B> Drop for MetricsBody<B> {
    fn drop(&mut self) {
        // Dropped before its end: the client went away.
        self.finish(1);
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for MetricsBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = std::pin::Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            std::task::Poll::Ready(Some(Ok(frame))) => {
                if let Some(t) = frame.trailers_ref() {
                    // No status in the trailers: Unknown, as gRPC's clients read it.
                    this.finish(grpc_status(t).unwrap_or(2));
                }
            }
            std::task::Poll::Ready(Some(Err(_))) => this.finish(2),
            std::task::Poll::Ready(None) => this.finish(2),
            std::task::Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
