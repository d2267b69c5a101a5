//! Traces over HTTP: `POST /v1/traces` (OTLP/HTTP, protobuf or JSON) into the trace
//! store, and Jaeger's query API over it: `GET /api/services`,
//! `/api/services/{service}/operations`, `/api/operations?service=&spanKind=`,
//! `/api/traces?service=…` and `/api/traces/{traceID}`. Without `tracing_receiver`
//! every route answers 404 saying how to turn it on.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lookout_traces::jaeger;
use lookout_traces::{Error, TraceStore};
use serde_json::Value as Json;

use crate::AppState;
use crate::params::Params;
use crate::remote::{otlp_encoding, text};

/// Most spans one answer carries per trace.
const MAX_SPANS_PER_TRACE: usize = 100_000;
/// Spans may start this far in the future (clocks disagree).
const FUTURE_NS: u64 = 10 * 60 * 1_000_000_000;

const OFF: &str = "the trace receiver is off: set tracing_receiver: { enabled: true }";

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn jaeger_json(status: StatusCode, body: &Json) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A Jaeger answer or the status and message of its error.
type Answer = Result<Json, (StatusCode, String)>;

fn reply(a: Answer) -> Response {
    match a {
        Ok(data) => jaeger_json(StatusCode::OK, &data),
        Err((status, msg)) => jaeger_json(status, &jaeger::error(status.as_u16(), &msg)),
    }
}

fn store(st: &AppState) -> Result<Arc<TraceStore>, (StatusCode, String)> {
    st.traces
        .clone()
        .ok_or_else(|| (StatusCode::NOT_FOUND, OFF.to_string()))
}

fn params(q: Option<String>) -> Result<Params, (StatusCode, String)> {
    Params::parse(q.as_deref(), &HeaderMap::new(), &[]).map_err(|e| (StatusCode::BAD_REQUEST, e.0))
}

/// Runs blocking store work off the async threads; a store error is a 500 naming it.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> lookout_traces::Result<T> + Send + 'static,
) -> Result<T, (StatusCode, String)> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(Error::Invalid(m))) => Err((StatusCode::BAD_REQUEST, m)),
        Ok(Err(e)) => Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        Err(e) => Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error: {e}"),
        )),
    }
}

/// Decodes an OTLP traces request (OTLP/JSON or protobuf) within the receiver's limits
/// and stores its spans (acknowledged once written: the store fsyncs within a second);
/// what was refused is in the answer. Shared by OTLP/HTTP and OTLP/gRPC.
pub(crate) fn ingest(
    traces: &TraceStore,
    body: &[u8],
    json: bool,
    max_bytes: usize,
) -> lookout_traces::Result<lookout_traces::otlp::Decoded> {
    let now = now_ns();
    let limits = lookout_traces::otlp::Limits {
        max_bytes,
        min_start_ns: now.saturating_sub(traces.options().retention.as_nanos() as u64),
        max_start_ns: now.saturating_add(FUTURE_NS),
        ..Default::default()
    };
    let mut d = if json {
        lookout_traces::otlp::decode_json(body, &limits)?
    } else {
        lookout_traces::otlp::decode_protobuf(body, &limits)?
    };
    traces.append(std::mem::take(&mut d.spans))?;
    Ok(d)
}

/// `POST /v1/traces`.
pub(crate) async fn receive(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(traces) = st.traces.clone() else {
        return text(StatusCode::NOT_FOUND, OFF);
    };
    let json = match otlp_encoding(&headers) {
        Ok(json) => json,
        Err((code, msg)) => return text(code, msg),
    };
    let max = st.traces_max_request_bytes;
    let done = tokio::task::spawn_blocking(move || ingest(&traces, &body, json, max)).await;
    match done {
        Ok(Ok(d)) => {
            let ct = if json {
                "application/json"
            } else {
                "application/x-protobuf"
            };
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, ct)],
                d.response(json),
            )
                .into_response()
        }
        Ok(Err(Error::Invalid(m))) => text(StatusCode::BAD_REQUEST, m),
        Ok(Err(e)) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("storing the spans failed: {e}"),
        ),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error: {e}"),
        ),
    }
}

/// `GET /api/services`.
pub(crate) async fn services(State(st): State<AppState>) -> Response {
    reply(store(&st).map(|t| {
        let v = t.services();
        let n = v.len();
        jaeger::envelope(Json::from(v), n)
    }))
}

/// `GET /api/services/{service}/operations`.
pub(crate) async fn service_operations(
    State(st): State<AppState>,
    Path(service): Path<String>,
) -> Response {
    reply(store(&st).map(|t| {
        let mut names: Vec<String> = t.operations(&service).into_iter().map(|(n, _)| n).collect();
        names.dedup();
        let n = names.len();
        jaeger::envelope(Json::from(names), n)
    }))
}

/// `GET /api/operations?service=&spanKind=`.
pub(crate) async fn operations(State(st): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let answer = || -> Answer {
        let traces = store(&st)?;
        let p = params(q)?;
        let service = p.get("service").filter(|s| !s.is_empty()).ok_or((
            StatusCode::BAD_REQUEST,
            "parameter 'service' is required".to_string(),
        ))?;
        let kind = p.get("spanKind").filter(|k| !k.is_empty());
        let ops: Vec<Json> = traces
            .operations(service)
            .into_iter()
            .map(|(name, k)| (name, jaeger::kind_name(k).unwrap_or("")))
            .filter(|(_, k)| kind.is_none_or(|want| want == *k))
            .map(|(name, k)| serde_json::json!({"name": name, "spanKind": k}))
            .collect();
        let n = ops.len();
        Ok(jaeger::envelope(Json::from(ops), n))
    };
    reply(answer())
}

/// `GET /api/traces?service=…`.
pub(crate) async fn find_traces(State(st): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let answer = async {
        let traces = store(&st)?;
        let p = params(q)?;
        let query = jaeger::parse_query(p.pairs(), now_ns())
            .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
        let found = blocking(move || traces.search(&query, MAX_SPANS_PER_TRACE)).await?;
        let data: Vec<Json> = found.iter().map(|t| jaeger::trace(t)).collect();
        let n = data.len();
        Ok(jaeger::envelope(Json::from(data), n))
    };
    reply(answer.await)
}

/// `GET /api/traces/{traceID}`.
pub(crate) async fn get_trace(State(st): State<AppState>, Path(id): Path<String>) -> Response {
    let answer = async {
        let traces = store(&st)?;
        let trace_id = lookout_traces::span::parse_hex::<16>(&id).ok_or_else(|| {
            (
                StatusCode::BAD_REQUEST,
                format!("malformed trace id {id:?}: up to 32 hex digits"),
            )
        })?;
        let spans = blocking(move || traces.trace(&trace_id, MAX_SPANS_PER_TRACE)).await?;
        if spans.is_empty() {
            return Err((StatusCode::NOT_FOUND, "trace not found".to_string()));
        }
        Ok(jaeger::envelope(Json::from(vec![jaeger::trace(&spans)]), 1))
    };
    reply(answer.await)
}
