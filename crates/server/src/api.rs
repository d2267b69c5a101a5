//! Handlers of the Prometheus-compatible API, Lookout's own endpoints and health. Library
//! errors become HTTP statuses in one place, [`promql_error`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lookout_model::status::PgSessions;
use lookout_model::{Labels, Matcher, now_ms};
use lookout_promql::Error as QueryError;

use crate::AppState;
use crate::health::{HealthCheck, HealthStatus};
use crate::json;
use crate::params::{BadParam, Params};

/// Most points a range query may return per series, as in Prometheus.
const MAX_POINTS: i64 = 11_000;
/// The earliest and latest times a missing `start`/`end` stand for.
const MIN_TIME: i64 = i64::MIN / 4;
const MAX_TIME: i64 = i64::MAX / 4;

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

pub(crate) fn ok(data: &str) -> Response {
    json_response(StatusCode::OK, json::success(data, &[]))
}

/// A success envelope around a JSON value.
pub(crate) fn ok_value(data: &serde_json::Value) -> Response {
    ok(&data.to_string())
}

/// An API error: Prometheus's error type, message and HTTP status.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    kind: &'static str,
    msg: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, json::error(self.kind, &self.msg))
    }
}

pub(crate) fn api_error(status: StatusCode, kind: &'static str, msg: &str) -> ApiError {
    ApiError {
        status,
        kind,
        msg: msg.to_string(),
    }
}

fn bad_data(msg: &str) -> ApiError {
    api_error(StatusCode::BAD_REQUEST, "bad_data", msg)
}

impl From<BadParam> for ApiError {
    fn from(b: BadParam) -> Self {
        bad_data(&b.0)
    }
}

/// Maps query errors to Prometheus's error types and statuses.
fn promql_error(e: QueryError) -> ApiError {
    let msg = e.to_string();
    match e {
        QueryError::Parse(m) => bad_data(&format!("invalid parameter \"query\": {m}")),
        QueryError::Execution(_)
        | QueryError::TooManySamples(_)
        | QueryError::TooMuchMemory { .. } => {
            api_error(StatusCode::UNPROCESSABLE_ENTITY, "execution", &msg)
        }
        QueryError::Timeout(_) => api_error(StatusCode::SERVICE_UNAVAILABLE, "timeout", &msg),
        QueryError::Canceled(_) => api_error(
            StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            "canceled",
            &msg,
        ),
        QueryError::Storage(_) => api_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &msg),
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        match e {
            crate::Error::ShuttingDown => api_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                &e.to_string(),
            ),
            // A contained panic; web-configuration errors never reach a handler.
            _ => internal(e),
        }
    }
}

/// Runs `work` through the server's [`crate::gate::QueryGate`]: off the async workers, at
/// most `query.max_concurrency` at once, cancelled when the client goes away or the
/// server stops.
async fn heavy<T: Send + 'static>(
    st: &AppState,
    work: impl FnOnce(&AtomicBool) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    st.gate.run(work).await?
}

fn params(q: Option<String>, headers: &HeaderMap, body: &Bytes) -> Result<Params, ApiError> {
    Params::parse(q.as_deref(), headers, body).map_err(ApiError::from)
}

/// The parameters of a GET's query string.
fn query_params(q: Option<String>) -> Result<Params, ApiError> {
    params(q, &HeaderMap::new(), &Bytes::new())
}

/// `v` as the `data` of a success.
fn json_ok<T: serde::Serialize + ?Sized>(v: &T) -> ApiResult {
    Ok(ok(&serde_json::to_string(v).map_err(internal)?))
}

/// `?limit=`, a count, when given.
fn limit_param(p: &Params) -> Result<Option<usize>, ApiError> {
    p.get("limit")
        .map(|l| {
            l.parse::<usize>()
                .map_err(|_| bad_data(&format!("invalid limit {l:?}")))
        })
        .transpose()
}

fn engine_for(st: &AppState, p: &Params) -> Result<lookout_promql::Engine, ApiError> {
    let mut opts = st.engine.options().clone();
    if let Some(ms) = p.duration("timeout")?
        && ms > 0
    {
        opts.timeout = opts
            .timeout
            .min(std::time::Duration::from_millis(ms as u64));
    }
    // `resolution=raw` reads samples only; `auto` (the default) lets range functions
    // read downsampled tiers where their windows line up.
    match p.get("resolution") {
        None | Some("auto") => {}
        Some("raw") => opts.rollups = false,
        Some(other) => {
            return Err(bad_data(&format!(
                "invalid resolution {other:?}: \"raw\" or \"auto\""
            )));
        }
    }
    Ok(lookout_promql::Engine::new(opts))
}

/// What every fallible handler returns; `ApiError` renders Prometheus's error envelope.
type ApiResult = Result<Response, ApiError>;

/// Parses the `query` parameter and evaluates it through the gate with the request's
/// engine options; the query is cancelled when the client goes away.
async fn evaluate(
    st: &AppState,
    p: &Params,
    run: impl FnOnce(
        &lookout_promql::Engine,
        &dyn lookout_storage::Queryable,
        &str,
        &lookout_promql::Expr,
        &AtomicBool,
    ) -> lookout_promql::Result<lookout_promql::QueryResult>
    + Send
    + 'static,
) -> Result<lookout_promql::QueryResult, ApiError> {
    let engine = engine_for(st, p)?;
    let text = p.get("query").unwrap_or("").to_string();
    let db = Arc::clone(&st.db);
    heavy(st, move |flag| {
        let started = Instant::now();
        // Parsed here, not on the async worker: a long query takes a while to parse, and
        // its tree is dropped here too.
        let expr = lookout_promql::parse(&text).map_err(promql_error)?;
        let r = run(&engine, &*db, &text, &expr, flag);
        tracing::debug!(query = %text, elapsed = ?started.elapsed(), "Query evaluated");
        r.map_err(promql_error)
    })
    .await
}

/// Results whose JSON is larger than this are streamed ([`streamed`]).
const STREAM_ABOVE: usize = 1 << 20;
/// The size of a streamed response's pieces.
const STREAM_CHUNK: usize = 256 << 10;
/// How long a streamed response waits for its client to take the next piece before it
/// gives up (the connection is then cut, so the client sees an error, not a short body).
const STREAM_STALL: std::time::Duration = std::time::Duration::from_secs(60);

/// Renders a query result as Prometheus's `data` at evaluation time `t`. A large result
/// is written on a blocking thread in pieces sent as they fill ([`streamed`]), so neither
/// the whole JSON nor the result and its JSON together are ever held in memory.
fn query_response(r: lookout_promql::QueryResult, t: i64) -> Response {
    if json::query_size_hint(&r.value) > STREAM_ABOVE {
        return streamed(move |emit| json::stream_query(r, t, STREAM_CHUNK, emit));
    }
    let mut out = String::with_capacity(128 + json::query_size_hint(&r.value));
    out.push_str(json::SUCCESS_PREFIX);
    json::query_data(&mut out, &r.value, t);
    json::finish_success(&mut out, &r.annotations.warnings, &r.annotations.infos);
    json_response(StatusCode::OK, out)
}

/// A 200 JSON response whose body `write` produces on a blocking thread, piece by piece
/// through `emit` (false once the client has gone or stalled: `write` should stop).
fn streamed(write: impl FnOnce(&mut dyn FnMut(String) -> bool) + Send + 'static) -> Response {
    streamed_with(STREAM_STALL, write)
}

/// [`streamed`], giving up on a client that takes no piece for `stall`. At most four
/// pieces wait for a slow client; a body cut short ends in an error, so the connection
/// is aborted rather than ended as if the JSON were whole.
fn streamed_with(
    stall: std::time::Duration,
    write: impl FnOnce(&mut dyn FnMut(String) -> bool) + Send + 'static,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let whole = Arc::new(AtomicBool::new(false));
    let written = Arc::clone(&whole);
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut cut = false;
        write(&mut |piece| {
            cut = rt
                .block_on(tx.send_timeout(Bytes::from(piece), stall))
                .is_err();
            !cut
        });
        written.store(!cut, Ordering::Release);
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        axum::body::Body::new(ChannelBody { rx, whole }),
    )
        .into_response()
}

/// A response body read from a channel. It ends when the sender is dropped: cleanly if
/// the writer finished, with an error if it gave up.
struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    whole: Arc<AtomicBool>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        this.rx.poll_recv(cx).map(|piece| match piece {
            Some(b) => Some(Ok(http_body::Frame::data(b))),
            None if this.whole.load(Ordering::Acquire) => None,
            None => Some(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the response was cut: the client took no data for too long",
            ))),
        })
    }
}

pub(crate) async fn query(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let p = params(q, &headers, &body)?;
    let t = p.time("time", now_ms())?;
    let r = evaluate(&st, &p, move |e, db, text, expr, flag| {
        e.instant_query(db, text, expr, t, Some(flag))
    })
    .await?;
    Ok(query_response(r, t))
}

fn required_time(p: &Params, key: &str) -> Result<i64, ApiError> {
    if p.get(key).is_none() {
        return Err(bad_data(&format!(
            "invalid parameter \"{key}\": cannot parse \"\" to a valid timestamp"
        )));
    }
    Ok(p.time(key, 0)?)
}

pub(crate) async fn query_range(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let p = params(q, &headers, &body)?;
    let start = required_time(&p, "start")?;
    let end = required_time(&p, "end")?;
    if end < start {
        return Err(bad_data(
            "invalid parameter \"end\": end timestamp must not be before start time",
        ));
    }
    let step = p.duration("step")?.ok_or_else(|| {
        bad_data("invalid parameter \"step\": cannot parse \"\" to a valid duration")
    })?;
    if step <= 0 {
        return Err(bad_data(
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if (i128::from(end) - i128::from(start)) / i128::from(step) > i128::from(MAX_POINTS) {
        return Err(bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    let r = evaluate(&st, &p, move |e, db, text, expr, flag| {
        e.range_query(db, text, expr, start, end, step, Some(flag))
    })
    .await?;
    Ok(query_response(r, end))
}

pub(crate) fn selectors(p: &Params) -> Result<Vec<Vec<Matcher>>, ApiError> {
    let mut out = Vec::new();
    for s in p.all("match[]") {
        let groups = lookout_promql::parse_selector(s)
            .map_err(|e| bad_data(&format!("invalid parameter \"match[]\": {e}")))?;
        out.extend(groups);
    }
    Ok(out)
}

pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
    api_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        &e.to_string(),
    )
}

const TRUNCATED: &str = "results truncated due to limit";

pub(crate) async fn series(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let p = params(q, &headers, &body)?;
    let (start, end) = (p.time("start", MIN_TIME)?, p.time("end", MAX_TIME)?);
    let limit = limit_of(&p)?;
    let db = Arc::clone(&st.db);
    let all = heavy(&st, move |_| {
        let sels = selectors(&p)?;
        if sels.is_empty() {
            return Err(bad_data("no match[] parameter provided"));
        }
        let querier = db.querier(start, end).map_err(internal)?;
        let mut all: BTreeSet<Labels> = BTreeSet::new();
        for m in &sels {
            // Labels only: no sample is decoded for this endpoint.
            all.extend(querier.series_labels(m).map_err(internal)?);
        }
        Ok(all)
    })
    .await?;
    let mut data = String::from("[");
    for (i, ls) in all.iter().take(limit.unwrap_or(usize::MAX)).enumerate() {
        if i > 0 {
            data.push(',');
        }
        json::labels(&mut data, ls);
    }
    data.push(']');
    let warn = match limit {
        Some(n) if all.len() > n => vec![TRUNCATED.to_string()],
        _ => Vec::new(),
    };
    Ok(json_response(StatusCode::OK, json::success(&data, &warn)))
}

fn limit_of(p: &Params) -> Result<Option<usize>, ApiError> {
    match p.get("limit") {
        None => Ok(None),
        Some(l) => match l.parse::<i64>() {
            Ok(0) => Ok(None),
            Ok(n) if n > 0 => Ok(Some(n as usize)),
            _ => Err(bad_data(&format!(
                "invalid parameter \"limit\": cannot parse {l:?} to a valid limit"
            ))),
        },
    }
}

/// Label names or values (`get`) of the series matching the request's `match[]` (all
/// series without one) in `start`–`end`, as a list truncated to `limit`.
async fn label_list(
    st: &AppState,
    p: Params,
    get: impl Fn(&dyn lookout_storage::Querier, &[Matcher]) -> lookout_storage::Result<Vec<String>>
    + Send
    + 'static,
) -> ApiResult {
    let (start, end) = (p.time("start", MIN_TIME)?, p.time("end", MAX_TIME)?);
    let limit = limit_of(&p)?;
    let db = Arc::clone(&st.db);
    let items = heavy(st, move |_| {
        let sels = selectors(&p)?;
        let querier = db.querier(start, end).map_err(internal)?;
        let mut items = BTreeSet::new();
        if sels.is_empty() {
            items.extend(get(&*querier, &[]).map_err(internal)?);
        }
        for m in &sels {
            items.extend(get(&*querier, m).map_err(internal)?);
        }
        Ok(items)
    })
    .await?;
    let (list, warn): (Vec<&String>, Vec<String>) = match limit {
        Some(n) if items.len() > n => (items.iter().take(n).collect(), vec![TRUNCATED.to_string()]),
        _ => (items.iter().collect(), Vec::new()),
    };
    Ok(json_response(
        StatusCode::OK,
        json::success(
            &serde_json::to_string(&list).expect("strings serialize"),
            &warn,
        ),
    ))
}

pub(crate) async fn labels(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let p = params(q, &headers, &body)?;
    label_list(&st, p, |q, m| q.label_names(m)).await
}

pub(crate) async fn label_values(
    State(st): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> ApiResult {
    if !lookout_model::is_valid_label_name(&name) {
        return Err(bad_data(&format!("invalid label name: {name:?}")));
    }
    let p = params(q, &headers, &Bytes::new())?;
    label_list(&st, p, move |q, m| q.label_values(&name, m)).await
}

pub(crate) async fn delete_series(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let Some(admin) = st.admin.clone() else {
        return Err(api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "admin APIs disabled",
        ));
    };
    let p = params(q, &headers, &body)?;
    let sels = selectors(&p)?;
    if sels.is_empty() {
        return Err(bad_data("no match[] parameter provided"));
    }
    admin
        .delete_series(&sels, p.time("start", MIN_TIME)?, p.time("end", MAX_TIME)?)
        .map_err(internal)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn status_config(State(st): State<AppState>) -> Response {
    ok(&serde_json::json!({ "yaml": st.info.config_yaml() }).to_string())
}

pub(crate) async fn status_flags(State(st): State<AppState>) -> Response {
    let map: serde_json::Map<String, serde_json::Value> = st
        .info
        .flags()
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    ok(&serde_json::Value::Object(map).to_string())
}

pub(crate) async fn status_runtime(State(st): State<AppState>) -> Response {
    ok(&st.info.runtime_info().to_string())
}

fn name_values(v: &[(String, u64)]) -> serde_json::Value {
    serde_json::Value::Array(
        v.iter()
            .map(|(n, c)| serde_json::json!({"name": n, "value": c}))
            .collect(),
    )
}

pub(crate) async fn status_tsdb(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> ApiResult {
    let p = params(q, &headers, &Bytes::new())?;
    let limit = match p.get("limit") {
        None => 10,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| bad_data(&format!("limit must be a positive number: {l:?}")))?,
    };
    let t = st.info.tsdb_status(limit);
    let data = serde_json::json!({
        "headStats": {
            "numSeries": t.num_series,
            "numLabelPairs": t.num_label_pairs,
            "chunkCount": t.chunk_count,
            "minTime": t.min_time.unwrap_or(i64::MAX),
            "maxTime": t.max_time.unwrap_or(i64::MIN),
        },
        "seriesCountByMetricName": name_values(&t.series_by_metric),
        "labelValueCountByLabelName": name_values(&t.values_by_label),
        "memoryInBytesByLabelName": name_values(&t.memory_by_label),
        "seriesCountByLabelValuePair": name_values(&t.series_by_pair),
    });
    Ok(ok(&data.to_string()))
}

pub(crate) async fn metadata(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> ApiResult {
    let p = params(q, &headers, &Bytes::new())?;
    let num = |k: &str| -> Result<i64, ApiError> {
        match p.get(k) {
            None => Ok(-1),
            Some(v) => v
                .parse()
                .map_err(|_| bad_data(&format!("{k} must be a number"))),
        }
    };
    let (limit, per_metric) = (num("limit")?, num("limit_per_metric")?);
    let only = p.get("metric");
    let mut out = serde_json::Map::new();
    for m in st.info.metadata() {
        if only.is_some_and(|o| o != m.metric) {
            continue;
        }
        if limit >= 0 && out.len() as i64 >= limit && !out.contains_key(&m.metric) {
            break;
        }
        let entry = out
            .entry(m.metric.clone())
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        let arr = entry.as_array_mut().expect("array");
        if per_metric < 0 || (arr.len() as i64) < per_metric {
            arr.push(serde_json::json!({"type": m.kind, "help": m.help, "unit": m.unit}));
        }
    }
    Ok(ok(&serde_json::Value::Object(out).to_string()))
}

/// The `query` parameter of a request, parsed through the gate and handed to `then`
/// there (the tree never reaches the async worker).
async fn with_parsed_query<T: Send + 'static>(
    st: &AppState,
    q: Option<String>,
    headers: &HeaderMap,
    body: &Bytes,
    then: impl FnOnce(&lookout_promql::Expr) -> T + Send + 'static,
) -> Result<T, ApiError> {
    let p = params(q, headers, body)?;
    let text = p.get("query").unwrap_or("").to_string();
    heavy(st, move |_| {
        let expr = lookout_promql::parse(&text).map_err(promql_error)?;
        Ok(then(&expr))
    })
    .await
}

pub(crate) async fn query_exemplars(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let p = params(q, &headers, &body)?;
    let (start, end) = (p.time("start", MIN_TIME)?, p.time("end", MAX_TIME)?);
    if end < start {
        return Err(bad_data(
            "invalid parameter \"end\": end timestamp must not be before start time",
        ));
    }
    let text = p.get("query").unwrap_or("").to_string();
    let db = Arc::clone(&st.db);
    let found = heavy(&st, move |_| {
        let expr = lookout_promql::parse(&text).map_err(promql_error)?;
        let sels = lookout_promql::selectors(&expr).map_err(promql_error)?;
        let querier = db.querier(start, end).map_err(internal)?;
        // One entry per series, whichever selectors match it.
        let mut all: std::collections::BTreeMap<Labels, Vec<lookout_model::Exemplar>> =
            Default::default();
        for m in &sels {
            for s in querier.select_exemplars(m).map_err(internal)? {
                all.entry(s.labels).or_insert(s.exemplars);
            }
        }
        Ok(all)
    })
    .await?;
    let mut data = String::from("[");
    for (i, (series, exemplars)) in found.iter().enumerate() {
        if i > 0 {
            data.push(',');
        }
        data.push_str("{\"seriesLabels\":");
        json::labels(&mut data, series);
        data.push_str(",\"exemplars\":[");
        for (j, e) in exemplars.iter().enumerate() {
            if j > 0 {
                data.push(',');
            }
            data.push_str("{\"labels\":");
            json::labels(&mut data, &e.labels);
            data.push_str(",\"value\":");
            json::value(&mut data, e.value);
            data.push_str(",\"timestamp\":");
            json::timestamp(&mut data, e.t);
            data.push('}');
        }
        data.push_str("]}");
    }
    data.push(']');
    Ok(ok(&data))
}

pub(crate) async fn format_query(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let pretty = with_parsed_query(&st, q, &headers, &body, |e| e.prettify()).await?;
    Ok(ok(
        &serde_json::to_string(&pretty).expect("string serializes")
    ))
}

pub(crate) async fn buildinfo(State(st): State<AppState>) -> Response {
    let b = &st.build;
    let data = serde_json::json!({
        "version": b.version,
        "revision": b.revision,
        "branch": b.branch,
        "buildUser": b.build_user,
        "buildDate": b.build_date,
        "goVersion": b.toolchain,
    });
    ok(&data.to_string())
}

/// `GET /api/v1/lookout/whoami`: who the request authenticated as and what they may do
/// (`viewer`, `operator`, `admin`), for the UI to offer only what the user may use;
/// without authentication configured, an anonymous admin.
pub(crate) async fn whoami(
    user: Option<axum::Extension<crate::auth::AuthUser>>,
    role: Option<axum::Extension<crate::auth::Role>>,
) -> Response {
    let (name, role) = match (user, role) {
        (Some(axum::Extension(u)), Some(axum::Extension(r))) => (Some(u.0), r),
        _ => (None, crate::auth::Role::Admin),
    };
    ok_value(&serde_json::json!({
        "user": name,
        "authenticated": name.is_some(),
        "role": role.as_str(),
        "may": {
            "read": true,
            "operate": role >= crate::auth::Role::Operator,
            "administer": role >= crate::auth::Role::Admin,
        },
    }))
}

pub(crate) async fn collectors(State(st): State<AppState>) -> Response {
    let items: Vec<serde_json::Value> = st
        .collection
        .collectors()
        .into_iter()
        .map(|s| {
            serde_json::json!({
                "name": s.name,
                "interval_seconds": s.interval.as_secs_f64(),
                "last_run": s.last_run.and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs_f64()),
                "last_duration_seconds": s.last_duration.map(|d| d.as_secs_f64()),
                "last_error": s.last_error,
                "last_samples": s.last_samples,
                "runs": s.runs,
                "failures": s.failures,
                "notes": s.notes,
            })
        })
        .collect();
    ok(&serde_json::Value::Array(items).to_string())
}

/// Prometheus's `/api/v1/targets`: every scrape target with its labels and last scrape.
pub(crate) async fn targets(State(st): State<AppState>) -> Response {
    let labels = |ls: &Labels| {
        serde_json::Value::Object(
            ls.iter()
                .map(|l| (l.name.clone(), serde_json::Value::String(l.value.clone())))
                .collect(),
        )
    };
    let active: Vec<serde_json::Value> = st
        .collection
        .targets()
        .into_iter()
        .map(|t| {
            let last = t
                .last_scrape
                .and_then(|s| s.duration_since(UNIX_EPOCH).ok())
                .map(|d| lookout_model::format_rfc3339(d.as_millis() as i64))
                .unwrap_or_else(|| "0001-01-01T00:00:00Z".into());
            serde_json::json!({
                "discoveredLabels": labels(&t.target.discovered),
                "labels": labels(&t.target.labels),
                "scrapePool": t.job,
                "scrapeUrl": t.target.url,
                "globalUrl": t.target.url,
                "lastError": t.last_error,
                "lastScrape": last,
                "lastScrapeDuration": t.last_duration.map_or(0.0, |d| d.as_secs_f64()),
                "health": t.health,
                "scrapeInterval": lookout_model::format_duration(t.target.interval),
                "scrapeTimeout": lookout_model::format_duration(t.target.timeout),
            })
        })
        .collect();
    ok(&serde_json::json!({ "activeTargets": active, "droppedTargets": [] }).to_string())
}

/// What PostgreSQL's busiest statements did between `?start=` and `?end=` (default: the
/// hour before now), from the per-interval figures the collectors store
/// (`pg_stat_statements_interval_*`): per instance, database, user and query id, the
/// calls, calls per second, total and mean time, share of all statements' time, rows,
/// and shared blocks hit and read, with the statement's text; the most time first.
/// `?instance=` keeps one instance, `?limit=` the first N.
pub(crate) async fn slow_queries(State(st): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let p = query_params(q)?;
    let end = p.time("end", now_ms())?;
    let start = p.time("start", end.saturating_sub(3_600_000))?;
    if end <= start {
        return Err(bad_data(
            "invalid parameter \"end\": end timestamp must be after start time",
        ));
    }
    let limit = limit_param(&p)?;
    let mut matchers = vec![
        Matcher::new(
            lookout_model::MatchOp::Regex,
            "__name__",
            "pg_stat_statements_interval_(calls|seconds|rows|shared_blks_hit|shared_blks_read)",
        )
        .map_err(internal)?,
    ];
    if let Some(i) = p.get("instance") {
        matchers.push(Matcher::equal("instance", i));
    }
    let db = Arc::clone(&st.db);
    // (instance, datname, user, queryid) → calls, seconds, rows, hit, read.
    type Key = (String, String, String, String);
    type Sums = BTreeMap<Key, [f64; 5]>;
    let sums: Sums = heavy(&st, move |_| {
        let q = db.querier(start.saturating_add(1), end).map_err(internal)?;
        let hints = lookout_storage::SelectHints {
            start: start.saturating_add(1),
            end,
            ..Default::default()
        };
        let mut sums = Sums::new();
        for s in q.select(&hints, &matchers).map_err(internal)? {
            let l = &s.labels;
            let slot = match l.metric_name().unwrap_or("") {
                "pg_stat_statements_interval_calls" => 0,
                "pg_stat_statements_interval_seconds" => 1,
                "pg_stat_statements_interval_rows" => 2,
                "pg_stat_statements_interval_shared_blks_hit" => 3,
                _ => 4,
            };
            let get = |n: &str| l.get(n).unwrap_or("").to_string();
            let e = sums
                .entry((get("instance"), get("datname"), get("user"), get("queryid")))
                .or_default();
            e[slot] += s
                .samples
                .iter()
                .map(|x| x.v)
                .filter(|v| v.is_finite())
                .sum::<f64>();
        }
        Ok(sums)
    })
    .await?;
    let texts: std::collections::HashMap<(String, String), String> = st
        .collection
        .slow_queries()
        .into_iter()
        .map(|s| ((s.instance, s.queryid), s.query))
        .collect();
    let all_seconds: f64 = sums.values().map(|v| v[1]).sum();
    let range = (end - start) as f64 / 1000.0;
    let mut v: Vec<(Key, [f64; 5])> = sums.into_iter().filter(|(_, f)| f[0] > 0.0).collect();
    v.sort_by(|a, b| b.1[1].total_cmp(&a.1[1]));
    if let Some(n) = limit {
        v.truncate(n);
    }
    let data: Vec<serde_json::Value> = v
        .into_iter()
        .map(|((instance, datname, user, queryid), f)| {
            let query = texts
                .get(&(instance.clone(), queryid.clone()))
                .cloned()
                .unwrap_or_default();
            serde_json::json!({
                "instance": instance,
                "datname": datname,
                "user": user,
                "queryid": queryid,
                "query": query,
                "calls": f[0],
                "calls_per_second": f[0] / range,
                "total_seconds": f[1],
                "mean_seconds": f[1] / f[0],
                "time_share": if all_seconds > 0.0 { f[1] / all_seconds } else { 0.0 },
                "rows": f[2],
                "shared_blks_hit": f[3],
                "shared_blks_read": f[4],
            })
        })
        .collect();
    let data = serde_json::json!({
        "start": start as f64 / 1000.0,
        "end": end as f64 / 1000.0,
        "statements": data,
    });
    Ok(ok(&data.to_string()))
}

/// The session samples `?instance=` names (all when absent).
fn pg_sessions(st: &AppState, p: &Params) -> Vec<PgSessions> {
    let mut v = st.collection.postgres_sessions();
    if let Some(i) = p.get("instance") {
        v.retain(|s| s.instance == i);
    }
    v
}

/// Who blocks whom on every PostgreSQL instance, from the last one-second session
/// sample: per instance, the sample's time, how many sessions wait on another's lock,
/// and one tree per session at the root of a chain (`blocks` nests those waiting on
/// it), with each session's statement, state and ages. `?instance=` keeps one.
pub(crate) async fn postgres_locks(State(st): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let p = query_params(q)?;
    let data: Vec<serde_json::Value> = pg_sessions(&st, &p)
        .iter()
        .map(|s| {
            serde_json::json!({
                "instance": s.instance,
                "at": s.at,
                "blocked": s.sessions.iter().filter(|x| !x.blocked_by.is_empty()).count(),
                "tree": s.lock_tree(),
            })
        })
        .collect();
    json_ok(&data)
}

/// Sessions in a transaction open for at least `?min_age=` (a duration such as `30s`
/// or seconds; default one minute), oldest first, on every PostgreSQL instance, from the
/// last one-second sample; those idle in transaction say so in `state`, and
/// `state_seconds` is how long they have been idle. `?instance=` keeps one.
pub(crate) async fn postgres_transactions(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let p = query_params(q)?;
    let min = match p.get("min_age") {
        None => 60.0,
        Some(v) => v
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .or_else(|| {
                lookout_model::parse_duration(v)
                    .ok()
                    .map(|d| d.as_secs_f64())
            })
            .ok_or_else(|| {
                bad_data(&format!(
                    "invalid min_age {v:?}: a duration such as 30s, or seconds"
                ))
            })?,
    };
    let data: Vec<serde_json::Value> = pg_sessions(&st, &p)
        .iter()
        .map(|s| {
            serde_json::json!({
                "instance": s.instance,
                "at": s.at,
                "sessions": s.long_transactions(min),
            })
        })
        .collect();
    json_ok(&data)
}

/// The PostgreSQL maintenance advisor's latest findings per instance: when the catalog
/// was read and each piece of advice (kind, severity, target, the SQL to run, why, and
/// the figures behind it), the most severe first. `?instance=` keeps one instance,
/// `?severity=` one severity.
pub(crate) async fn postgres_advisor(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let p = query_params(q)?;
    let mut v = st.collection.postgres_advisor();
    if let Some(i) = p.get("instance") {
        v.retain(|r| r.instance == i);
    }
    if let Some(sev) = p.get("severity") {
        if !["critical", "warning", "info"].contains(&sev) {
            return Err(bad_data(&format!(
                "invalid severity {sev:?}: critical, warning or info"
            )));
        }
        for r in &mut v {
            r.advice.retain(|a| a.severity == sev);
        }
    }
    json_ok(&v)
}

/// The bottleneck report over `?window=` (a duration; default 15m, 10s to 7d) ending at
/// `?time=` (default now): every measured resource scored, the most likely bottleneck
/// first, with the PromQL and values behind each score and what to do.
pub(crate) async fn diagnose(State(st): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let p = query_params(q)?;
    let at = p.time("time", now_ms())?;
    let window = match p.duration("window")? {
        None => std::time::Duration::from_secs(900),
        Some(ms) if ms > 0 => std::time::Duration::from_millis(ms as u64),
        Some(_) => return Err(bad_data("invalid parameter \"window\": must be positive")),
    };
    let engine = engine_for(&st, &p)?;
    let db = Arc::clone(&st.db);
    let report = heavy(&st, move |_| {
        lookout_diagnose::diagnose(&engine, &*db, &lookout_diagnose::Options { window, at })
            .map_err(|e| match e {
                lookout_diagnose::Error::Invalid(m) => bad_data(&m),
                other => internal(other),
            })
    })
    .await?;
    json_ok(&report)
}

/// Largest rule file a backtest takes.
const MAX_BACKTEST_BYTES: usize = 1024 * 1024;

/// Backtests the rule file in the body (YAML or JSON, Prometheus's rule-file format)
/// over the stored history between `?from=` and `?to=` (default: the last 24 hours),
/// each group at its interval or `?step=`: per alerting rule, how often it would have
/// fired, for how long, and the first firings. Nothing is written.
pub(crate) async fn backtest(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult {
    let p = query_params(q)?;
    if body.len() > MAX_BACKTEST_BYTES {
        return Err(bad_data(&format!(
            "the rule file is {} bytes; at most {MAX_BACKTEST_BYTES}",
            body.len()
        )));
    }
    let text = std::str::from_utf8(&body)
        .map_err(|_| bad_data("the rule file is not UTF-8"))?
        .to_string();
    let to = p.time("to", now_ms())?;
    let from = p.time("from", to.saturating_sub(86_400_000))?;
    let step = match p.duration("step")? {
        None => None,
        Some(ms) if ms > 0 => Some(std::time::Duration::from_millis(ms as u64)),
        Some(_) => return Err(bad_data("invalid parameter \"step\": must be positive")),
    };
    let groups = lookout_rules::backtest::groups_from_text(
        &text,
        std::path::Path::new("backtest.yml"),
        std::time::Duration::from_secs(60),
    )
    .map_err(|e| bad_data(&e.join("; ")))?;
    let ctx = lookout_rules::EvalContext {
        engine: engine_for(&st, &p)?,
        db: Arc::clone(&st.db),
        external_labels: Default::default(),
        external_url: String::new(),
    };
    let reports = heavy(&st, move |cancel| {
        lookout_rules::backtest::run(
            groups,
            &ctx,
            &lookout_rules::backtest::BacktestOptions { from, to, step },
            Some(cancel),
        )
        .map_err(|e| bad_data(&e.to_string()))
    })
    .await?;
    json_ok(&reports)
}

/// The remediation audit trail, the newest first: every run of a remediation rule
/// (what was done, or in a dry run would have been, to what, and how it went) and every
/// refusal for the hourly limit. `?rule=` keeps one rule, `?limit=` the newest N.
pub(crate) async fn remediations(State(st): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let p = query_params(q)?;
    let mut v = st
        .remediation
        .as_ref()
        .map(|r| r.records())
        .unwrap_or_default();
    if let Some(rule) = p.get("rule") {
        v.retain(|r| r.rule == rule);
    }
    if let Some(n) = limit_param(&p)? {
        v.truncate(n);
    }
    json_ok(&v)
}

fn snapshot_service(st: &AppState) -> Result<Arc<dyn crate::SnapshotService>, ApiError> {
    st.snapshots.clone().ok_or_else(|| {
        api_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "snapshots are not enabled",
        )
    })
}

fn snapshot_error(e: lookout_diagnose::Error) -> ApiError {
    match e {
        lookout_diagnose::Error::Invalid(m) => bad_data(&m),
        other => internal(other),
    }
}

/// Takes a state snapshot now (`?note=` says why, at most 1,000 bytes) and answers its
/// header.
pub(crate) async fn snapshots_take(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let p = params(q, &headers, &body)?;
    let svc = snapshot_service(&st)?;
    let note = p.get("note").unwrap_or("").to_string();
    if note.len() > 1000 {
        return Err(bad_data(
            "invalid parameter \"note\": longer than 1000 bytes",
        ));
    }
    let summary = svc
        .take(lookout_diagnose::snapshots::Reason {
            kind: "manual".into(),
            labels: Default::default(),
            note,
        })
        .await
        .map_err(snapshot_error)?;
    json_ok(&summary)
}

/// Every snapshot's header, the newest first (`damaged` lists files that could not be
/// read).
pub(crate) async fn snapshots_list(State(st): State<AppState>) -> ApiResult {
    let svc = snapshot_service(&st)?;
    let (list, damaged) = svc.list();
    let data = serde_json::json!({ "snapshots": list, "damaged": damaged });
    Ok(ok(&data.to_string()))
}

/// One snapshot, whole.
pub(crate) async fn snapshot_get(
    State(st): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> ApiResult {
    let svc = snapshot_service(&st)?;
    match svc.get(&id).map_err(snapshot_error)? {
        Some(s) => json_ok(&s),
        None => Err(api_error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no snapshot {id:?}"),
        )),
    }
}

/// The Redis diagnostics `?instance=` names (all when absent).
fn redis_diagnostics(st: &AppState, p: &Params) -> Vec<lookout_model::status::RedisDiagnostics> {
    let mut v = st.collection.redis_diagnostics();
    if let Some(i) = p.get("instance") {
        v.retain(|d| d.instance == i);
    }
    v
}

/// Every Redis instance's slow log as Lookout has kept it, the newest first: command,
/// duration, client, and the arguments only where configured (`slowlog_arguments`);
/// `?instance=` keeps one, `?limit=` the newest N entries of each.
pub(crate) async fn redis_slowlog(State(st): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let p = query_params(q)?;
    let limit = limit_param(&p)?.unwrap_or(usize::MAX);
    let data: Vec<serde_json::Value> = redis_diagnostics(&st, &p)
        .into_iter()
        .map(|d| {
            let entries: Vec<_> = d.slowlog.into_iter().take(limit).collect();
            serde_json::json!({ "instance": d.instance, "at": d.at, "entries": entries })
        })
        .collect();
    json_ok(&data)
}

/// Every Redis instance's `LATENCY DOCTOR` and `MEMORY DOCTOR` reports, as of its last
/// run; `?instance=` keeps one.
pub(crate) async fn redis_doctor(State(st): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let p = query_params(q)?;
    let data: Vec<serde_json::Value> = redis_diagnostics(&st, &p)
        .into_iter()
        .map(|d| {
            serde_json::json!({
                "instance": d.instance,
                "at": d.at,
                "latency_doctor": d.latency_doctor,
                "memory_doctor": d.memory_doctor,
            })
        })
        .collect();
    json_ok(&data)
}

/// Every Redis instance's last big-key sample (`null` until one has run, or when
/// `big_keys` is not configured); `?instance=` keeps one.
pub(crate) async fn redis_big_keys(State(st): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let p = query_params(q)?;
    let data: Vec<serde_json::Value> = redis_diagnostics(&st, &p)
        .into_iter()
        .map(|d| serde_json::json!({ "instance": d.instance, "big_keys": d.big_keys }))
        .collect();
    json_ok(&data)
}

pub(crate) async fn metrics(State(st): State<AppState>) -> Response {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &st.registry) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}\n"),
        )
            .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

#[derive(serde::Serialize)]
struct CheckJson {
    name: String,
    status: HealthStatus,
    message: String,
    duration_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<serde_json::Value>,
}

#[derive(serde::Serialize)]
struct HealthJson {
    status: HealthStatus,
    checks: Vec<CheckJson>,
}

/// Runs checks off the runtime; returns the overall status and the JSON body.
async fn run_checks(
    checks: Vec<Arc<dyn HealthCheck>>,
    extra: Option<(HealthStatus, String)>,
) -> (HealthStatus, String) {
    tokio::task::spawn_blocking(move || {
        let mut overall = HealthStatus::Healthy;
        let mut items = Vec::new();
        if let Some((status, message)) = extra {
            overall = overall.max(status);
            items.push(CheckJson {
                name: "startup".into(),
                status,
                message,
                duration_ms: 0.0,
                details: None,
            });
        }
        for c in checks {
            let started = Instant::now();
            let r = c.check();
            overall = overall.max(r.status);
            items.push(CheckJson {
                name: c.name().to_string(),
                status: r.status,
                message: r.message,
                duration_ms: (started.elapsed().as_secs_f64() * 1e6).round() / 1e3,
                details: r.details,
            });
        }
        let body = serde_json::to_string(&HealthJson {
            status: overall,
            checks: items,
        })
        .expect("health serializes");
        (overall, body)
    })
    .await
    .unwrap_or_else(|e| {
        (
            HealthStatus::Unhealthy,
            json::error("internal", &e.to_string()),
        )
    })
}

fn health_response(status: HealthStatus, body: String) -> Response {
    let code = if status == HealthStatus::Unhealthy {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    json_response(code, body)
}

pub(crate) async fn health_full(State(st): State<AppState>) -> Response {
    let (s, body) = run_checks(st.checks.clone(), None).await;
    health_response(s, body)
}

pub(crate) async fn health_live() -> Response {
    let body = HealthJson {
        status: HealthStatus::Healthy,
        checks: Vec::new(),
    };
    json_response(
        StatusCode::OK,
        serde_json::to_string(&body).expect("health serializes"),
    )
}

async fn readiness(st: &AppState) -> (HealthStatus, String) {
    let gating: Vec<Arc<dyn HealthCheck>> = st
        .checks
        .iter()
        .filter(|c| c.gates_readiness())
        .cloned()
        .collect();
    let extra = (!st.ready.load(Ordering::Acquire))
        .then(|| (HealthStatus::Unhealthy, "Lookout is starting".to_string()));
    run_checks(gating, extra).await
}

pub(crate) async fn health_ready(State(st): State<AppState>) -> Response {
    let (s, body) = readiness(&st).await;
    health_response(s, body)
}

pub(crate) async fn healthy_text() -> Response {
    (StatusCode::OK, "Lookout is Healthy.\n").into_response()
}

pub(crate) async fn ready_text(State(st): State<AppState>) -> Response {
    let (s, _) = readiness(&st).await;
    if s == HealthStatus::Unhealthy {
        (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n").into_response()
    } else {
        (StatusCode::OK, "Lookout is Ready.\n").into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::time::Duration;

    /// A writer of 100 pieces of 1,000 bytes.
    fn hundred(emit: &mut dyn FnMut(String) -> bool) {
        for k in 0..100u8 {
            if !emit(char::from(b'a' + k % 26).to_string().repeat(1000)) {
                return;
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_streamed_body_read_promptly_is_whole() {
        let resp = streamed_with(Duration::from_secs(10), hundred);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 100_000);
        assert_eq!(&body[99_000..99_003], b"vvv");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_client_gets_an_error_not_a_short_body() {
        let gave_up = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&gave_up);
        let resp = streamed_with(Duration::from_millis(100), move |emit| {
            let mut counted = |piece: String| {
                let ok = emit(piece);
                if !ok {
                    flag.store(true, Ordering::Release);
                }
                ok
            };
            hundred(&mut counted);
        });
        // The client takes nothing until the writer has given up: four pieces wait, the
        // fifth times out.
        for _ in 0..200 {
            if gave_up.load(Ordering::Acquire) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(gave_up.load(Ordering::Acquire), "the writer gave up");
        let mut body = resp.into_body();
        let mut got = 0;
        let err = loop {
            match body.frame().await {
                Some(Ok(f)) => got += f.into_data().map_or(0, |d| d.len()),
                Some(Err(e)) => break e,
                None => panic!("the body ended cleanly after {got} bytes"),
            }
        };
        assert_eq!(got, 4_000, "the pieces that waited are delivered first");
        assert!(err.to_string().contains("cut"), "{err}");
    }
}
