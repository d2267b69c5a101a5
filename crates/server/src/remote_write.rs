//! `POST /api/v1/write`: Prometheus's remote-write receiver (remote write 1.0,
//! `prometheus.WriteRequest`, snappy), on only with `--web.enable-remote-write-receiver`
//! as in Prometheus. Decoding (within limits) is `lookout_remote`'s; samples go through
//! the storage seam like any collector's. 204 when everything was stored; 400 naming the
//! problem for a body that cannot be read or samples the store refused (the others of
//! the request are kept, as Prometheus does); 415 for a message or encoding this
//! receiver does not speak.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::AppState;

fn text(status: StatusCode, msg: impl Into<String>) -> Response {
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
        .unwrap_or("prometheus.WriteRequest");
    if !media.eq_ignore_ascii_case("application/x-protobuf") || proto != "prometheus.WriteRequest" {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "unsupported content type {ct:?}: this receiver accepts application/x-protobuf with prometheus.WriteRequest (remote write 1.0)"
            ),
        );
    }
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
        let series =
            lookout_remote::decode_write_request(&body, &lookout_remote::Limits::default())?;
        let mut app = db.appender();
        let mut out = Outcome {
            stored: 0,
            refused: 0,
            first: None,
        };
        for s in &series {
            for &(t, v) in &s.samples {
                match app.append(&s.labels, t, v) {
                    Ok(_) => out.stored += 1,
                    Err(e) => {
                        out.refused += 1;
                        out.first.get_or_insert_with(|| e.to_string());
                    }
                }
            }
        }
        Ok::<_, lookout_remote::Error>(app.commit().map(|()| out))
    })
    .await;
    match done {
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error: {e}"),
        ),
        Ok(Err(e)) => text(StatusCode::BAD_REQUEST, e.to_string()),
        Ok(Ok(Err(e))) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("storing the samples failed: {e}"),
        ),
        Ok(Ok(Ok(o))) if o.refused > 0 => text(
            StatusCode::BAD_REQUEST,
            format!(
                "{} of {} samples refused (the rest stored); first: {}",
                o.refused,
                o.refused + o.stored,
                o.first.unwrap_or_default()
            ),
        ),
        Ok(Ok(Ok(_))) => StatusCode::NO_CONTENT.into_response(),
    }
}
