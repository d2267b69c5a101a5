//! Jaeger's HTTP query API (the one its UI and Grafana's Jaeger data source call), as
//! data: the query parameters of `/api/traces` read into a [`Query`], and the answers'
//! JSON: `{"data": …, "total", "limit", "offset", "errors"}`, traces as
//! `{traceID, spans, processes, warnings}`, spans with `references`, `startTime` and
//! `duration` in microseconds, typed `tags`, `logs` and a `processID`.
//!
//! OTLP's meaning is carried the way Jaeger's own OTLP receiver carries it: the span kind
//! as the `span.kind` tag, an error status as `error=true` with `otel.status_code` and
//! `otel.status_description`, the scope as `otel.scope.name`, resource attributes as the
//! process's tags.

use std::collections::BTreeMap;

use serde_json::{Value as Json, json};

use crate::span::{Attribute, Span, StatusCode, Value, hex};
use crate::store::Query;
use crate::{Error, Result};

/// Most traces one search returns (Jaeger UI's own maximum).
pub const MAX_LIMIT: usize = 1500;
/// Traces returned when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 20;

/// `{"data": data, "total": n, …}`.
pub fn envelope(data: Json, total: usize) -> Json {
    json!({"data": data, "total": total, "limit": 0, "offset": 0, "errors": null})
}

/// Jaeger's error answer.
pub fn error(code: u16, msg: &str) -> Json {
    json!({"data": null, "total": 0, "limit": 0, "offset": 0, "errors": [{"code": code, "msg": msg}]})
}

/// A Go duration (`1.5s`, `100ms`, `250us`, `2h45m`) in nanoseconds.
pub fn parse_go_duration(s: &str) -> Option<u64> {
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(0);
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += n * scale;
    }
    (total.is_finite() && total < u64::MAX as f64).then_some(total as u64)
}

/// Reads `/api/traces`'s parameters (`service` required; `operation`; `tags` as a JSON
/// object or `tag=key:value` repeated; `start`/`end` in µs, or `lookback` such as `1h`
/// before `end`; `minDuration`/`maxDuration` as Go durations; `limit`). `now_ns` is the
/// default end.
pub fn parse_query(params: &[(String, String)], now_ns: u64) -> Result<Query> {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let bad = |m: String| Error::Invalid(m);
    let service = get("service")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("parameter 'service' is required".into()))?
        .to_string();
    let micros = |k: &str| -> Result<Option<u64>> {
        match get(k).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .and_then(|us| us.checked_mul(1000))
                .map(Some)
                .ok_or_else(|| {
                    bad(format!(
                        "unable to parse param '{k}': {v:?} is not microseconds since the epoch"
                    ))
                }),
        }
    };
    let end_ns = micros("end")?.unwrap_or(now_ns);
    let start_ns = match micros("start")? {
        Some(s) => s,
        None => {
            let lookback = match get("lookback").filter(|v| !v.is_empty() && *v != "custom") {
                Some(v) => parse_go_duration(v)
                    .ok_or_else(|| bad(format!("unable to parse param 'lookback': {v:?}")))?,
                None => 3600 * 1_000_000_000,
            };
            end_ns.saturating_sub(lookback)
        }
    };
    if start_ns > end_ns {
        return Err(bad("'start' is after 'end'".into()));
    }
    let duration = |k: &str| -> Result<Option<u64>> {
        match get(k).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => parse_go_duration(v).map(Some).ok_or_else(|| {
                bad(format!(
                    "unable to parse param '{k}': {v:?} is not a duration such as 1.2s or 100ms"
                ))
            }),
        }
    };
    let min_duration_ns = duration("minDuration")?;
    let max_duration_ns = duration("maxDuration")?;
    if let (Some(a), Some(b)) = (min_duration_ns, max_duration_ns)
        && a > b
    {
        return Err(bad("'minDuration' is above 'maxDuration'".into()));
    }
    let limit = match get("limit").filter(|v| !v.is_empty()) {
        None => DEFAULT_LIMIT,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| bad(format!("unable to parse param 'limit': {v:?}")))?
            .clamp(1, MAX_LIMIT),
    };
    let mut tags = Vec::new();
    if let Some(t) = get("tags").filter(|v| !v.is_empty()) {
        let map: BTreeMap<String, Json> =
            serde_json::from_str(t).map_err(|e| bad(format!("malformed 'tags' parameter: {e}")))?;
        for (k, v) in map {
            let v = match v {
                Json::String(s) => s,
                other => other.to_string(),
            };
            tags.push((k, v));
        }
    }
    for (_, v) in params.iter().filter(|(k, _)| k == "tag") {
        let (key, value) = v.split_once(':').ok_or_else(|| {
            bad(format!(
                "malformed 'tag' parameter {v:?}: expected key:value"
            ))
        })?;
        tags.push((key.to_string(), value.to_string()));
    }
    if tags.len() > 64 {
        return Err(bad(format!("{} tags, more than 64", tags.len())));
    }
    Ok(Query {
        service,
        operation: get("operation").filter(|o| !o.is_empty()).map(String::from),
        tags,
        start_ns,
        end_ns,
        min_duration_ns,
        max_duration_ns,
        limit,
    })
}

fn tag(key: &str, v: &Value) -> Json {
    match v {
        Value::Str(s) => json!({"key": key, "type": "string", "value": s}),
        Value::Bool(b) => json!({"key": key, "type": "bool", "value": b}),
        Value::Int(i) => json!({"key": key, "type": "int64", "value": i}),
        Value::Double(d) if d.is_finite() => json!({"key": key, "type": "float64", "value": d}),
        Value::Double(d) => json!({"key": key, "type": "string", "value": d.to_string()}),
    }
}

fn tags(attrs: &[Attribute]) -> Vec<Json> {
    attrs.iter().map(|(k, v)| tag(k, v)).collect()
}

/// The span kind as Jaeger's `span.kind` tag writes it.
pub fn kind_name(kind: u8) -> Option<&'static str> {
    match kind {
        1 => Some("internal"),
        2 => Some("server"),
        3 => Some("client"),
        4 => Some("producer"),
        5 => Some("consumer"),
        _ => None,
    }
}

/// One trace as Jaeger answers it (its spans must share the trace id).
pub fn trace(spans: &[Span]) -> Json {
    let trace_id = spans.first().map(|s| hex(&s.trace_id)).unwrap_or_default();
    // One process per distinct (service, resource).
    let mut processes: Vec<(&str, &[Attribute])> = Vec::new();
    let mut out = Vec::with_capacity(spans.len());
    for s in spans {
        let p = match processes
            .iter()
            .position(|(svc, res)| *svc == s.service && *res == s.resource.as_slice())
        {
            Some(i) => i,
            None => {
                processes.push((&s.service, &s.resource));
                processes.len() - 1
            }
        };
        let mut t = tags(&s.attributes);
        if let Some(k) = kind_name(s.kind) {
            t.push(tag("span.kind", &Value::Str(k.into())));
        }
        if !s.scope.is_empty() {
            t.push(tag("otel.scope.name", &Value::Str(s.scope.clone())));
        }
        match s.status {
            StatusCode::Error => {
                if !s.attributes.iter().any(|(k, _)| k == "error") {
                    t.push(tag("error", &Value::Bool(true)));
                }
                t.push(tag("otel.status_code", &Value::Str("ERROR".into())));
                if !s.status_message.is_empty() {
                    t.push(tag(
                        "otel.status_description",
                        &Value::Str(s.status_message.clone()),
                    ));
                }
            }
            StatusCode::Ok => t.push(tag("otel.status_code", &Value::Str("OK".into()))),
            StatusCode::Unset => {}
        }
        let logs: Vec<Json> = s
            .events
            .iter()
            .map(|e| {
                let mut fields = vec![tag("event", &Value::Str(e.name.clone()))];
                fields.extend(tags(&e.attributes));
                json!({"timestamp": e.time_ns / 1000, "fields": fields})
            })
            .collect();
        let references: Vec<Json> = s
            .parent_span_id
            .iter()
            .map(|p| json!({"refType": "CHILD_OF", "traceID": trace_id, "spanID": hex(p)}))
            .collect();
        out.push(json!({
            "traceID": trace_id,
            "spanID": hex(&s.span_id),
            "operationName": s.name,
            "references": references,
            "startTime": s.start_ns / 1000,
            "duration": s.duration_ns / 1000,
            "tags": t,
            "logs": logs,
            "processID": format!("p{}", p + 1),
            "warnings": null,
            "flags": 1,
        }));
    }
    let processes: serde_json::Map<String, Json> = processes
        .iter()
        .enumerate()
        .map(|(i, (svc, res))| {
            (
                format!("p{}", i + 1),
                json!({"serviceName": svc, "tags": tags(res)}),
            )
        })
        .collect();
    json!({"traceID": trace_id, "spans": out, "processes": processes, "warnings": null})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1.5s"), Some(1_500_000_000));
        assert_eq!(parse_go_duration("100ms"), Some(100_000_000));
        assert_eq!(parse_go_duration("250us"), Some(250_000));
        assert_eq!(parse_go_duration("2h45m"), Some(9_900_000_000_000));
        assert_eq!(parse_go_duration("0"), Some(0));
        for bad in ["", "1", "ms", "1x", "1e400s", "-1s"] {
            assert_eq!(parse_go_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn query_parameters_are_read_as_jaeger_reads_them() {
        let now = 10_000 * 1_000_000_000u64;
        let q = parse_query(
            &p(&[
                ("service", "kv"),
                ("operation", "get"),
                ("tags", r#"{"error":"true","http.status_code":500}"#),
                ("tag", "db.system:kv"),
                ("minDuration", "1.2ms"),
                ("lookback", "2h"),
                ("limit", "5"),
            ]),
            now,
        )
        .unwrap();
        assert_eq!(q.service, "kv");
        assert_eq!(q.operation.as_deref(), Some("get"));
        assert_eq!(
            q.tags,
            [
                ("error".to_string(), "true".to_string()),
                ("http.status_code".into(), "500".into()),
                ("db.system".into(), "kv".into())
            ]
        );
        assert_eq!((q.start_ns, q.end_ns), (now - 7200 * 1_000_000_000, now));
        assert_eq!((q.min_duration_ns, q.limit), (Some(1_200_000), 5));
        let q = parse_query(
            &p(&[
                ("service", "kv"),
                ("start", "1000"),
                ("end", "2000"),
                ("limit", "999999"),
            ]),
            now,
        )
        .unwrap();
        assert_eq!(
            (q.start_ns, q.end_ns, q.limit),
            (1_000_000, 2_000_000, MAX_LIMIT)
        );
        for (bad, why) in [
            (p(&[]), "'service' is required"),
            (p(&[("service", "kv"), ("start", "x")]), "'start'"),
            (
                p(&[("service", "kv"), ("start", "99999999999999999999")]),
                "'start'",
            ),
            (
                p(&[("service", "kv"), ("start", "5"), ("end", "4")]),
                "after",
            ),
            (
                p(&[("service", "kv"), ("minDuration", "soon")]),
                "'minDuration'",
            ),
            (
                p(&[
                    ("service", "kv"),
                    ("minDuration", "2s"),
                    ("maxDuration", "1s"),
                ]),
                "above",
            ),
            (p(&[("service", "kv"), ("tags", "{")]), "'tags'"),
            (p(&[("service", "kv"), ("tag", "novalue")]), "'tag'"),
            (p(&[("service", "kv"), ("limit", "-1")]), "'limit'"),
        ] {
            let e = parse_query(&bad, now).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_trace_is_rendered_in_jaegers_shape() {
        let s = |id: u8, parent: Option<u8>, svc: &str| Span {
            trace_id: [0xab; 16],
            span_id: [id; 8],
            parent_span_id: parent.map(|p| [p; 8]),
            service: svc.into(),
            name: format!("op{id}"),
            kind: 2,
            start_ns: 1_500_000_000_123_456_789,
            duration_ns: 2_000_000,
            status: if id == 2 {
                StatusCode::Error
            } else {
                StatusCode::Unset
            },
            status_message: if id == 2 {
                "boom".into()
            } else {
                String::new()
            },
            attributes: vec![("n".into(), Value::Int(3))],
            events: vec![crate::span::Event {
                time_ns: 1_500_000_000_124_000_000,
                name: "retry".into(),
                attributes: vec![("attempt".into(), Value::Int(2))],
            }],
            resource: vec![("host.name".into(), Value::Str("db1".into()))],
            scope: "lookout-sdk".into(),
        };
        let t = trace(&[s(1, None, "api"), s(2, Some(1), "kv"), s(3, Some(1), "kv")]);
        assert_eq!(t["traceID"], "abababababababababababababababab");
        let spans = t["spans"].as_array().unwrap();
        assert_eq!(spans[0]["references"], json!([]));
        assert_eq!(
            spans[1]["references"][0],
            json!({"refType": "CHILD_OF", "traceID": "abababababababababababababababab", "spanID": "0101010101010101"})
        );
        assert_eq!(spans[1]["startTime"], 1_500_000_000_123_456u64);
        assert_eq!(spans[1]["duration"], 2000);
        assert_eq!(
            (
                spans[0]["processID"].as_str(),
                spans[1]["processID"].as_str(),
                spans[2]["processID"].as_str()
            ),
            (Some("p1"), Some("p2"), Some("p2"))
        );
        assert_eq!(
            t["processes"]["p2"],
            json!({"serviceName": "kv", "tags": [{"key": "host.name", "type": "string", "value": "db1"}]})
        );
        let tags = spans[1]["tags"].as_array().unwrap();
        for want in [
            json!({"key": "n", "type": "int64", "value": 3}),
            json!({"key": "span.kind", "type": "string", "value": "server"}),
            json!({"key": "error", "type": "bool", "value": true}),
            json!({"key": "otel.status_description", "type": "string", "value": "boom"}),
        ] {
            assert!(tags.contains(&want), "{want} not in {tags:?}");
        }
        assert_eq!(
            spans[1]["logs"][0],
            json!({"timestamp": 1_500_000_000_124_000u64, "fields": [
            {"key": "event", "type": "string", "value": "retry"},
            {"key": "attempt", "type": "int64", "value": 2}]})
        );
        assert_eq!(envelope(json!([]), 0)["errors"], Json::Null);
        assert_eq!(error(400, "x")["errors"][0]["code"], 400);
    }
}
