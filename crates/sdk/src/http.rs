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
