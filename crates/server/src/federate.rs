//! `GET /federate?match[]=…`: Prometheus's federation endpoint. For every series matching
//! a selector, its newest sample within the lookback (stale series left out), in the
//! Prometheus text format with timestamps, external labels added where a series lacks
//! them, so an existing Prometheus can scrape Lookout with `honor_labels: true`. A
//! scraper asking for the protobuf exposition (Prometheus with native histograms on)
//! gets native histograms too (custom-bucket ones as classic buckets, which is all the
//! exposition can say of them); the text format carries float samples only.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lookout_model::{FloatHistogram, Labels};
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
    // A scraper that asks for protobuf (Prometheus with native histograms on) gets the
    // native histograms too; the text format carries floats only.
    let proto = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(lookout_expfmt::proto::is_protobuf);
    let body = st
        .gate
        .run(move |_| {
            let (floats, histograms) = newest(db.as_ref(), &sels, now, lookback, limit)?;
            let with_external = |labels: &Labels| -> Vec<(String, String)> {
                let mut pairs: Vec<(String, String)> = labels
                    .iter()
                    .filter(|l| l.name != lookout_model::METRIC_NAME_LABEL)
                    .map(|l| {
                        (
                            classic_name(&l.name, false).into_owned(),
                            l.value.to_string(),
                        )
                    })
                    .collect();
                for (k, v) in &external {
                    if labels.get(k).is_none() {
                        pairs.push((k.clone(), v.clone()));
                    }
                }
                pairs.sort();
                pairs
            };
            if proto {
                return Ok::<_, ApiError>(protobuf(&floats, &histograms, &with_external));
            }
            let mut out = String::new();
            let mut family = String::new();
            for (labels, (t, v)) in floats {
                let name =
                    classic_name(labels.metric_name().unwrap_or_default(), true).into_owned();
                if name != family {
                    out.push_str(&format!("# TYPE {name} untyped\n"));
                    family = name.clone();
                }
                let body: Vec<String> = with_external(&labels)
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                    .collect();
                out.push_str(&format!(
                    "{name}{{{}}} {} {t}\n",
                    body.join(","),
                    crate::format_float(v)
                ));
            }
            Ok(out.into_bytes())
        })
        .await??;
    let content_type = if proto {
        "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
    } else {
        "text/plain; version=0.0.4; charset=utf-8"
    };
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

/// The newest float sample and the newest native histogram of every series the
/// selectors match, within the lookback and not ended by a staleness marker; a series
/// with both keeps the newer.
#[allow(clippy::type_complexity)]
fn newest(
    db: &dyn lookout_storage::Queryable,
    sels: &[Vec<lookout_model::Matcher>],
    now: i64,
    lookback: i64,
    limit: usize,
) -> Result<
    (
        BTreeMap<Labels, (i64, f64)>,
        BTreeMap<Labels, (i64, Arc<FloatHistogram>)>,
    ),
    ApiError,
> {
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
    let mut floats: BTreeMap<Labels, (i64, f64)> = BTreeMap::new();
    let mut histograms: BTreeMap<Labels, (i64, Arc<FloatHistogram>)> = BTreeMap::new();
    for m in sels {
        for s in querier.select(&hints, m).map_err(crate::api::internal)? {
            if let Some(last) = s.samples.last()
                && !lookout_model::is_stale_nan(last.v)
            {
                floats.insert(s.labels, (last.t, last.v));
            }
        }
        for s in querier
            .select_histograms(&hints, m)
            .map_err(crate::api::internal)?
        {
            if let Some(last) = s.samples.iter().rev().find(|x| x.t <= now)
                && !lookout_model::is_stale_nan(last.h.sum)
            {
                histograms.insert(s.labels, (last.t, Arc::clone(&last.h)));
            }
        }
        if floats.len() + histograms.len() > limit {
            return Err(api_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "execution",
                &format!(
                    "federation of more than {limit} series (query.max_samples); narrow the match[] selectors"
                ),
            ));
        }
    }
    histograms.retain(|l, (t, _)| match floats.get(l) {
        Some((ft, _)) if ft > t => false,
        Some(_) => {
            floats.remove(l);
            true
        }
        None => true,
    });
    Ok((floats, histograms))
}

/// The federation answer in the protobuf exposition: floats as untyped samples, native
/// histograms as histograms (gauge histograms when they say so).
fn protobuf(
    floats: &BTreeMap<Labels, (i64, f64)>,
    histograms: &BTreeMap<Labels, (i64, Arc<FloatHistogram>)>,
    labels_of: &dyn Fn(&Labels) -> Vec<(String, String)>,
) -> Vec<u8> {
    use lookout_expfmt::proto::{LabelPair, Metric, MetricFamily, Value};
    let mut families: BTreeMap<(String, i32), MetricFamily> = BTreeMap::new();
    let mut add = |labels: &Labels, kind: i32, metric: Metric| {
        let name = classic_name(labels.metric_name().unwrap_or_default(), true).into_owned();
        let label = labels_of(labels)
            .into_iter()
            .map(|(name, value)| LabelPair { name, value })
            .collect();
        families
            .entry((name.clone(), kind))
            .or_insert_with(|| MetricFamily {
                name,
                r#type: kind,
                ..Default::default()
            })
            .metric
            .push(Metric { label, ..metric });
    };
    for (labels, (t, v)) in floats {
        add(
            labels,
            3,
            Metric {
                untyped: Some(Value { value: *v }),
                timestamp_ms: Some(*t),
                ..Default::default()
            },
        );
    }
    for (labels, (t, h)) in histograms {
        let kind = if h.hint == lookout_model::CounterResetHint::Gauge {
            5
        } else {
            4
        };
        add(
            labels,
            kind,
            Metric {
                histogram: Some(lookout_expfmt::proto::histogram_message(h)),
                timestamp_ms: Some(*t),
                ..Default::default()
            },
        );
    }
    let families: Vec<MetricFamily> = families.into_values().collect();
    lookout_expfmt::proto::encode(&families)
}
