//! What other monitoring systems send and read: Prometheus remote write
//! (`POST /api/v1/write`), OTLP metrics (`POST /api/v1/otlp/v1/metrics`) and remote read
//! (`POST /api/v1/read`). Decoding and translation are `lookout_remote`'s; samples go
//! through the storage seam like any collector's.
//!
//! `POST /api/v1/write`: Prometheus's remote-write receiver, on only with
//! `--web.enable-remote-write-receiver` as in Prometheus. Content negotiation as the 2.0
//! specification says: `proto=prometheus.WriteRequest` (1.0, the default) or
//! `proto=io.prometheus.write.v2.Request` (2.0, answered with the
//! `X-Prometheus-Remote-Write-*-Written` headers); snappy only. Decoding (within limits)
//! is `lookout_remote`'s. 204
//! when everything was stored; 400 naming the problem for a body that cannot be read or
//! samples the store refused (the others of the request are kept, as Prometheus does);
//! 415 for a message or encoding this receiver does not speak. Native histograms (1.0
//! and 2.0) are stored like samples, custom-bucket ones with their bounds.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::AppState;

pub(crate) fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    let mut m = msg.into();
    m.push('\n');
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        m,
    )
        .into_response()
}

/// What one request stored and refused.
struct Outcome {
    stored: usize,
    refused: usize,
    first: Option<String>,
    /// Native-histogram samples stored.
    histograms: usize,
    /// Exemplars stored.
    exemplars: usize,
}

const V1: &str = "prometheus.WriteRequest";
const V2: &str = "io.prometheus.write.v2.Request";

/// Appends every sample of `series` in one batch: what was stored, what the store refused
/// (the first refusal named), or the commit's error.
fn store(
    db: &dyn lookout_storage::Appendable,
    series: &[lookout_remote::Series],
    histograms: &[lookout_remote::HistogramSeries],
) -> lookout_storage::Result<Outcome> {
    let mut app = db.appender();
    let mut out = Outcome {
        stored: 0,
        refused: 0,
        first: None,
        histograms: 0,
        exemplars: 0,
    };
    for s in histograms {
        for (t, h) in &s.samples {
            match app.append_histogram(&s.labels, *t, h) {
                Ok(_) => out.histograms += 1,
                Err(e) => {
                    out.refused += 1;
                    out.first.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }
    for s in series {
        for &(t, v) in &s.samples {
            match app.append(&s.labels, t, v) {
                Ok(_) => out.stored += 1,
                Err(e) => {
                    out.refused += 1;
                    out.first.get_or_insert_with(|| e.to_string());
                }
            }
        }
        // Created times (remote write 2.0, OTLP start times) go on to remote write 2.0.
        if s.created > 0 {
            let _ = app.append_created(&s.labels, s.created);
        }
        // A refused exemplar costs only itself and is not an error of the request, as
        // in Prometheus; the 2.0 answer counts those written.
        for e in &s.exemplars {
            if app.append_exemplar(&s.labels, e).is_ok() {
                out.exemplars += 1;
            }
        }
    }
    app.commit().map(|()| out)
}

/// `POST /api/v1/otlp/v1/metrics`: OTLP metrics over HTTP, on only with
/// `--web.enable-otlp-receiver` as in Prometheus; translated by `lookout_remote::otlp`.
/// 200 with an empty `ExportMetricsServiceResponse` when everything was stored; 400
/// naming what could not be (unreadable body, refused samples, delta temporality) with
/// the rest stored; exponential histograms are stored as native histograms; OTLP/JSON
/// as well as protobuf.
/// Whether an OTLP/HTTP body is JSON (else protobuf), or the 415 that names what is
/// refused: another media type, or a compressed body (Lookout takes them uncompressed).
pub(crate) fn otlp_encoding(headers: &HeaderMap) -> Result<bool, (StatusCode, String)> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/x-protobuf");
    let media = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let json = match media.as_str() {
        "application/x-protobuf" => false,
        "application/json" => true,
        _ => {
            return Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "unsupported content type {ct:?}: OTLP/HTTP is application/x-protobuf or application/json"
                ),
            ));
        }
    };
    if let Some(enc) = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .filter(|e| !e.eq_ignore_ascii_case("identity"))
    {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported content encoding {enc:?}: send OTLP bodies uncompressed"),
        ));
    }
    Ok(json)
}

pub(crate) async fn otlp(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(db) = st.otlp.clone() else {
        return text(
            StatusCode::NOT_FOUND,
            "OTLP receiver needs to be enabled with --web.enable-otlp-receiver",
        );
    };
    let json = match otlp_encoding(&headers) {
        Ok(json) => json,
        Err((code, msg)) => return text(code, msg),
    };
    let opts = st.otlp_options.clone();
    let done = tokio::task::spawn_blocking(move || {
        let t = if json {
            lookout_remote::otlp::json::decode(&body, &opts)?
        } else {
            lookout_remote::otlp::decode_otlp_metrics(&body, &opts)?
        };
        Ok::<_, lookout_remote::Error>((store(db.as_ref(), &t.series, &t.histograms), t.refused))
    })
    .await;
    let (o, refused) = match done {
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("internal error: {e}"),
            );
        }
        Ok(Err(e)) => return text(StatusCode::BAD_REQUEST, e.to_string()),
        Ok(Ok((Err(e), _))) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("storing the samples failed: {e}"),
            );
        }
        Ok(Ok((Ok(o), refused))) => (o, refused),
    };
    if o.refused > 0 || !refused.is_empty() {
        let mut problems = refused;
        if let Some(first) = o.first {
            problems.push(format!("{} samples refused; first: {first}", o.refused));
        }
        return text(
            StatusCode::BAD_REQUEST,
            format!("not stored (the rest was): {}", problems.join("; ")),
        );
    }
    // An empty ExportMetricsServiceResponse, in the request's encoding.
    if json {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{}",
        )
            .into_response()
    } else {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            Vec::<u8>::new(),
        )
            .into_response()
    }
}

pub(crate) async fn write(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(db) = st.remote_write.clone() else {
        return text(
            StatusCode::NOT_FOUND,
            "remote write receiver needs to be enabled with --web.enable-remote-write-receiver",
        );
    };
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/x-protobuf");
    let mut parts = ct.split(';').map(str::trim);
    let media = parts.next().unwrap_or_default();
    let proto = parts
        .find_map(|p| p.strip_prefix("proto="))
        .unwrap_or(V1)
        .to_string();
    if !media.eq_ignore_ascii_case("application/x-protobuf") || (proto != V1 && proto != V2) {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "unsupported content type {ct:?}: this receiver accepts application/x-protobuf with proto={V1} (remote write 1.0) or proto={V2} (2.0)"
            ),
        );
    }
    let v2 = proto == V2;
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("snappy");
    if !encoding.eq_ignore_ascii_case("snappy") {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported content encoding {encoding:?}: remote write bodies are snappy"),
        );
    }
    let done = tokio::task::spawn_blocking(move || {
        let limits = lookout_remote::Limits::default();
        let d = if v2 {
            lookout_remote::decode_v2_request(&body, &limits)?
        } else {
            lookout_remote::decode_write_request_all(&body, &limits)?
        };
        let (series, histograms) = (d.series, d.histogram_series);
        Ok::<_, lookout_remote::Error>(store(db.as_ref(), &series, &histograms))
    })
    .await;
    let o = match done {
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("internal error: {e}"),
            );
        }
        Ok(Err(e)) => return text(StatusCode::BAD_REQUEST, e.to_string()),
        Ok(Ok(Err(e))) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("storing the samples failed: {e}"),
            );
        }
        Ok(Ok(Ok(o))) => o,
    };
    let mut resp = if o.refused > 0 {
        text(
            StatusCode::BAD_REQUEST,
            format!(
                "{} of {} samples refused (the rest stored); first: {}",
                o.refused,
                o.refused + o.stored + o.histograms,
                o.first.unwrap_or_default()
            ),
        )
    } else {
        StatusCode::NO_CONTENT.into_response()
    };
    if v2 {
        let h = resp.headers_mut();
        h.insert("x-prometheus-remote-write-samples-written", o.stored.into());
        h.insert(
            "x-prometheus-remote-write-histograms-written",
            o.histograms.into(),
        );
        h.insert(
            "x-prometheus-remote-write-exemplars-written",
            o.exemplars.into(),
        );
    }
    resp
}

/// `POST /api/v1/read`: Prometheus's remote read (the `SAMPLES` response), through the
/// query gate; a response over the engine's `max_samples` is refused (400) rather than
/// built.
pub(crate) async fn read(State(st): State<AppState>, body: Bytes) -> Response {
    use lookout_remote::read::ResponseType;
    let (queries, kind) = match lookout_remote::read::decode_read_request(
        &body,
        &lookout_remote::Limits::default(),
    ) {
        Ok(q) => q,
        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let db = std::sync::Arc::clone(&st.db);
    let limit = st.engine.options().max_samples;
    let done = st
        .gate
        .run(move |_| {
            let mut results = Vec::with_capacity(queries.len());
            let mut total = 0usize;
            // Native histograms go in the samples response (the streamed one carries
            // XOR float chunks only).
            let with_histograms = kind == ResponseType::Samples;
            for q in &queries {
                let querier = db.querier(q.start, q.end).map_err(|e| e.to_string())?;
                let hints = lookout_storage::SelectHints {
                    start: q.start,
                    end: q.end,
                    func: None,
                    grid: None,
                };
                let mut series = Vec::new();
                for s in querier
                    .select(&hints, &q.matchers)
                    .map_err(|e| e.to_string())?
                {
                    total += s.samples.len();
                    if total > limit {
                        return Err(format!("exceeded the sample limit of {limit}"));
                    }
                    series.push(lookout_remote::Series {
                        labels: s.labels,
                        samples: s.samples.iter().map(|x| (x.t, x.v)).collect(),
                        exemplars: Vec::new(),
                        created: 0,
                    });
                }
                let mut histograms = Vec::new();
                if with_histograms {
                    for s in querier
                        .select_histograms(&hints, &q.matchers)
                        .map_err(|e| e.to_string())?
                    {
                        total += s.samples.len();
                        if total > limit {
                            return Err(format!("exceeded the sample limit of {limit}"));
                        }
                        histograms.push(lookout_remote::HistogramSeries {
                            labels: s.labels,
                            samples: s.samples.iter().map(|x| (x.t, (*x.h).clone())).collect(),
                        });
                    }
                }
                results.push((series, histograms));
            }
            Ok(match kind {
                ResponseType::Samples => lookout_remote::read::encode_read_response_all(&results),
                ResponseType::StreamedXorChunks => {
                    let mut out = Vec::new();
                    for (i, (series, _)) in results.iter().enumerate() {
                        lookout_remote::read::encode_chunked_frames(i, series, &mut out);
                    }
                    out
                }
            })
        })
        .await;
    match done {
        Ok(Ok(bytes)) if kind == ResponseType::StreamedXorChunks => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                lookout_remote::read::STREAMED_CONTENT_TYPE,
            )],
            bytes,
        )
            .into_response(),
        Ok(Ok(bytes)) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/x-protobuf"),
                (header::CONTENT_ENCODING, "snappy"),
            ],
            bytes,
        )
            .into_response(),
        Ok(Err(e)) => text(StatusCode::BAD_REQUEST, e),
        Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}
