//! `GET /federate?match[]=…`: Prometheus's federation endpoint. For every series matching
//! a selector, its newest sample within the lookback (stale series left out), in the
//! Prometheus text format with timestamps, external labels added where a series lacks
//! them, so an existing Prometheus can scrape Lookout with `honor_labels: true`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lookout_model::Labels;
use lookout_storage::{Grid, SelectHints};

use crate::AppState;
use crate::api::{ApiError, api_error};

/// A name as the classic text format can carry it: Prometheus's underscore escaping
/// (what a Prometheus 3 federation answers without `escaping=allow-utf-8`): every
/// character a classic name may not have there becomes `_`. Names kept in UTF-8 (OTLP's
/// `NoUTF8EscapingWithSuffixes` and `NoTranslation`) leave as classic parsers read them.
fn classic_name(name: &str, metric: bool) -> std::borrow::Cow<'_, str> {
    let ok = |i: usize, c: char| {
        c.is_ascii_alphabetic() || c == '_' || (metric && c == ':') || (i > 0 && c.is_ascii_digit())
    };
    if name.chars().enumerate().all(|(i, c)| ok(i, c)) {
        return name.into();
    }
    name.chars()
        .enumerate()
        .map(|(i, c)| if ok(i, c) { c } else { '_' })
        .collect::<String>()
        .into()
}

fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

pub(crate) async fn federate(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = crate::params::Params::parse(q.as_deref(), &headers, &body).map_err(ApiError::from)?;
    let sels = crate::api::selectors(&p)?;
    if sels.is_empty() {
        return Err(api_error(
            StatusCode::BAD_REQUEST,
            "bad_data",
            "no match[] parameter provided",
        ));
    }
    let db = Arc::clone(&st.db);
    let lookback = st.engine.options().lookback_delta.as_millis() as i64;
    let external = st.external_labels.clone();
    // One sample per series: the engine's sample limit bounds the answer.
    let limit = st.engine.options().max_samples;
    let now = lookout_model::now_ms();
    let text = st
        .gate
        .run(move |_| {
            let querier = db
                .querier(now - lookback, now)
                .map_err(crate::api::internal)?;
            let hints = SelectHints {
                start: now - lookback,
                end: now,
                func: None,
                grid: Some(Grid {
                    first: now,
                    last: now,
                    step: 0,
                }),
            };
            // One entry per series even when several selectors match it.
            let mut newest: BTreeMap<Labels, (i64, f64)> = BTreeMap::new();
            for m in &sels {
                for s in querier.select(&hints, m).map_err(crate::api::internal)? {
                    if let Some(last) = s.samples.last()
                        && !lookout_model::is_stale_nan(last.v)
                    {
                        newest.insert(s.labels, (last.t, last.v));
                    }
                }
                if newest.len() > limit {
                    return Err(api_error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "execution",
                        &format!(
                            "federation of more than {limit} series (query.max_samples); narrow the match[] selectors"
                        ),
                    ));
                }
            }
            let mut out = String::new();
            let mut family = String::new();
            for (labels, (t, v)) in newest {
                let name = classic_name(labels.metric_name().unwrap_or_default(), true).into_owned();
                if name != family {
                    out.push_str(&format!("# TYPE {name} untyped\n"));
                    family = name.clone();
                }
                let mut pairs: Vec<(String, String)> = labels
                    .iter()
                    .filter(|l| l.name != lookout_model::METRIC_NAME_LABEL)
                    .map(|l| (classic_name(&l.name, false).into_owned(), l.value.to_string()))
                    .collect();
                for (k, v) in &external {
                    if labels.get(k).is_none() {
                        pairs.push((k.clone(), v.clone()));
                    }
                }
                pairs.sort();
                let body: Vec<String> = pairs
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                    .collect();
                out.push_str(&format!(
                    "{name}{{{}}} {} {t}\n",
                    body.join(","),
                    crate::format_float(v)
                ));
            }
            Ok::<_, ApiError>(out)
        })
        .await??;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
