//! OTLP traces (`ExportTraceServiceRequest`) in protobuf and in JSON, into [`Span`]s.
//! Messages derived by hand with prost, only the fields read; the common ones
//! (`Resource`, `KeyValue`, `AnyValue`) are `lookout_remote::otlp`'s, shared with OTLP
//! metrics. A span that cannot be kept (ids of the wrong size or zero, an end before its
//! start, a time outside what the store accepts) is refused on its own and counted, as
//! OTLP's partial success reports; bounds on the request's size, its spans, their
//! attributes and events keep a hostile body from costing more than its bytes.

use lookout_remote::otlp::{AnyValue, KeyValue, Resource};
use prost::Message;

use crate::span::{Attribute, Event, Span, StatusCode, Value};
use crate::{Error, Result};

/// `ExportTraceServiceRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportTraceServiceRequest {
    /// Per resource.
    #[prost(message, repeated, tag = "1")]
    pub resource_spans: Vec<ResourceSpans>,
}

/// `ResourceSpans`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceSpans {
    /// The resource.
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    /// Per instrumentation scope.
    #[prost(message, repeated, tag = "2")]
    pub scope_spans: Vec<ScopeSpans>,
}

/// `InstrumentationScope` (its name only).
#[derive(Clone, PartialEq, prost::Message)]
pub struct InstrumentationScope {
    /// The library's name.
    #[prost(string, tag = "1")]
    pub name: String,
}

/// `ScopeSpans`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScopeSpans {
    /// The scope.
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    /// The spans.
    #[prost(message, repeated, tag = "2")]
    pub spans: Vec<OtlpSpan>,
}

/// `Span`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OtlpSpan {
    /// 16 bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    /// 8 bytes.
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    /// 8 bytes, or empty for a root.
    #[prost(bytes = "vec", tag = "4")]
    pub parent_span_id: Vec<u8>,
    /// The operation.
    #[prost(string, tag = "5")]
    pub name: String,
    /// `SpanKind`.
    #[prost(int32, tag = "6")]
    pub kind: i32,
    /// Start (ns since the epoch).
    #[prost(fixed64, tag = "7")]
    pub start_time_unix_nano: u64,
    /// End (ns since the epoch).
    #[prost(fixed64, tag = "8")]
    pub end_time_unix_nano: u64,
    /// Attributes.
    #[prost(message, repeated, tag = "9")]
    pub attributes: Vec<KeyValue>,
    /// Events.
    #[prost(message, repeated, tag = "11")]
    pub events: Vec<OtlpEvent>,
    /// Status.
    #[prost(message, optional, tag = "15")]
    pub status: Option<Status>,
}

/// `Span.Event`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OtlpEvent {
    /// When.
    #[prost(fixed64, tag = "1")]
    pub time_unix_nano: u64,
    /// Its name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Its attributes.
    #[prost(message, repeated, tag = "3")]
    pub attributes: Vec<KeyValue>,
}

/// `Status`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    /// Why, for an error.
    #[prost(string, tag = "2")]
    pub message: String,
    /// 0 unset, 1 ok, 2 error.
    #[prost(int32, tag = "3")]
    pub code: i32,
}

/// Bounds on one request.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest body, in bytes.
    pub max_bytes: usize,
    /// Most spans.
    pub max_spans: usize,
    /// Attributes kept per span, event or resource (OpenTelemetry's default: 128).
    pub max_attributes: usize,
    /// Events kept per span (OpenTelemetry's default: 128).
    pub max_events: usize,
    /// Longest attribute value kept, in bytes (longer ones are cut).
    pub max_value_bytes: usize,
    /// Spans starting earlier than this (ns since the epoch) are refused (past the
    /// retention).
    pub min_start_ns: u64,
    /// Spans starting later than this are refused (too far in the future).
    pub max_start_ns: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 16 << 20,
            max_spans: 100_000,
            max_attributes: 128,
            max_events: 128,
            max_value_bytes: 16 << 10,
            min_start_ns: 0,
            max_start_ns: u64::MAX,
        }
    }
}

/// What a request held: the spans kept and, for OTLP's partial success, how many were
/// refused and the first reason.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Spans to store.
    pub spans: Vec<Span>,
    /// Spans refused.
    pub rejected: u64,
    /// Why the first one was.
    pub first_error: Option<String>,
}

/// `ExportTraceServiceResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportTraceServiceResponse {
    /// Set when some spans were refused.
    #[prost(message, optional, tag = "1")]
    pub partial_success: Option<PartialSuccess>,
}

/// `ExportTracePartialSuccess`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PartialSuccess {
    /// Spans refused.
    #[prost(int64, tag = "1")]
    pub rejected_spans: i64,
    /// Why (the first reason).
    #[prost(string, tag = "2")]
    pub error_message: String,
}

impl Decoded {
    /// The OTLP/HTTP answer to the request this was decoded from: empty, or a partial
    /// success naming what was refused; in the request's encoding.
    pub fn response(&self, json: bool) -> Vec<u8> {
        let partial = (self.rejected > 0).then(|| PartialSuccess {
            rejected_spans: i64::try_from(self.rejected).unwrap_or(i64::MAX),
            error_message: self.first_error.clone().unwrap_or_default(),
        });
        match (json, partial) {
            (true, None) => b"{}".to_vec(),
            (true, Some(p)) => serde_json::json!({"partialSuccess": {
                "rejectedSpans": p.rejected_spans.to_string(),
                "errorMessage": p.error_message,
            }})
            .to_string()
            .into_bytes(),
            (false, partial) => ExportTraceServiceResponse {
                partial_success: partial,
            }
            .encode_to_vec(),
        }
    }
}

/// Decodes an OTLP/HTTP protobuf body.
pub fn decode_protobuf(body: &[u8], limits: &Limits) -> Result<Decoded> {
    check_size(body, limits)?;
    let req = ExportTraceServiceRequest::decode(body)
        .map_err(|e| Error::Invalid(format!("invalid protobuf: {e}")))?;
    convert(req, limits)
}

/// Decodes an OTLP/HTTP JSON body (ids in hex, 64-bit integers as strings or numbers,
/// enums as numbers or names).
pub fn decode_json(body: &[u8], limits: &Limits) -> Result<Decoded> {
    check_size(body, limits)?;
    let req: json::Request = serde_json::from_slice(body)
        .map_err(|e| Error::Invalid(format!("invalid OTLP/JSON: {e}")))?;
    convert(req.into_protobuf()?, limits)
}

fn check_size(body: &[u8], limits: &Limits) -> Result<()> {
    if body.len() > limits.max_bytes {
        return Err(Error::Invalid(format!(
            "the body is {} bytes, more than the limit of {}",
            body.len(),
            limits.max_bytes
        )));
    }
    Ok(())
}

fn value(v: Option<&AnyValue>, max: usize) -> Value {
    let Some(v) = v else {
        return Value::Str(String::new());
    };
    if let Some(b) = v.bool_value {
        Value::Bool(b)
    } else if let Some(i) = v.int_value {
        Value::Int(i)
    } else if let Some(d) = v.double_value {
        Value::Double(d)
    } else {
        let mut s = v.string_value.clone().unwrap_or_default();
        if s.len() > max {
            let mut cut = max;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
        }
        Value::Str(s)
    }
}

fn attributes(kvs: &[KeyValue], limits: &Limits) -> Vec<Attribute> {
    kvs.iter()
        .take(limits.max_attributes)
        .map(|kv| {
            (
                kv.key.chars().take(256).collect(),
                value(kv.value.as_ref(), limits.max_value_bytes),
            )
        })
        .collect()
}

fn convert(req: ExportTraceServiceRequest, limits: &Limits) -> Result<Decoded> {
    let total: usize = req
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    if total > limits.max_spans {
        return Err(Error::Invalid(format!(
            "{total} spans in one request, more than the limit of {}",
            limits.max_spans
        )));
    }
    let mut out = Decoded {
        spans: Vec::with_capacity(total),
        ..Default::default()
    };
    let refuse = |why: String, out: &mut Decoded| {
        out.rejected += 1;
        out.first_error.get_or_insert(why);
    };
    for rs in &req.resource_spans {
        let mut resource = rs
            .resource
            .as_ref()
            .map(|r| attributes(&r.attributes, limits))
            .unwrap_or_default();
        let service = match resource.iter().position(|(k, _)| k == "service.name") {
            Some(i) => resource.remove(i).1.text(),
            None => "unknown_service".to_string(),
        };
        for ss in &rs.scope_spans {
            let scope = ss
                .scope
                .as_ref()
                .map(|s| s.name.clone())
                .unwrap_or_default();
            for s in &ss.spans {
                let (Ok(trace_id), Ok(span_id)) = (
                    <[u8; 16]>::try_from(s.trace_id.as_slice()),
                    <[u8; 8]>::try_from(s.span_id.as_slice()),
                ) else {
                    refuse(
                        format!(
                            "span {:?}: a trace id is 16 bytes and a span id 8 (got {} and {})",
                            s.name,
                            s.trace_id.len(),
                            s.span_id.len()
                        ),
                        &mut out,
                    );
                    continue;
                };
                if trace_id == [0; 16] || span_id == [0; 8] {
                    refuse(
                        format!("span {:?}: an all-zero id is invalid", s.name),
                        &mut out,
                    );
                    continue;
                }
                let parent_span_id = match s.parent_span_id.len() {
                    0 => None,
                    8 => <[u8; 8]>::try_from(s.parent_span_id.as_slice())
                        .ok()
                        .filter(|p| *p != [0; 8]),
                    n => {
                        refuse(
                            format!("span {:?}: a parent span id is 8 bytes, not {n}", s.name),
                            &mut out,
                        );
                        continue;
                    }
                };
                if s.end_time_unix_nano < s.start_time_unix_nano {
                    refuse(format!("span {:?} ends before it starts", s.name), &mut out);
                    continue;
                }
                if s.start_time_unix_nano < limits.min_start_ns
                    || s.start_time_unix_nano > limits.max_start_ns
                {
                    refuse(
                        format!(
                            "span {:?} starts at {} ns, outside what is kept ({}..{})",
                            s.name,
                            s.start_time_unix_nano,
                            limits.min_start_ns,
                            limits.max_start_ns
                        ),
                        &mut out,
                    );
                    continue;
                }
                let status = s.status.as_ref();
                out.spans.push(Span {
                    trace_id,
                    span_id,
                    parent_span_id,
                    service: service.clone(),
                    name: s.name.chars().take(1024).collect(),
                    kind: u8::try_from(s.kind).ok().filter(|k| *k <= 5).unwrap_or(0),
                    start_ns: s.start_time_unix_nano,
                    duration_ns: s.end_time_unix_nano - s.start_time_unix_nano,
                    status: match status.map_or(0, |st| st.code) {
                        1 => StatusCode::Ok,
                        2 => StatusCode::Error,
                        _ => StatusCode::Unset,
                    },
                    status_message: status
                        .map(|st| st.message.chars().take(4096).collect())
                        .unwrap_or_default(),
                    attributes: attributes(&s.attributes, limits),
                    events: s
                        .events
                        .iter()
                        .take(limits.max_events)
                        .map(|e| Event {
                            time_ns: e.time_unix_nano,
                            name: e.name.chars().take(1024).collect(),
                            attributes: attributes(&e.attributes, limits),
                        })
                        .collect(),
                    resource: resource.clone(),
                    scope: scope.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// OTLP/JSON's shapes, read into the protobuf messages.
mod json {
    use lookout_remote::otlp::json::{Kv, int, kvs};
    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    pub(super) struct Request {
        resource_spans: Vec<Rs>,
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct Rs {
        resource: Option<Res>,
        scope_spans: Vec<Ss>,
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct Res {
        attributes: Vec<Kv>,
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct Scope {
        name: String,
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct Ss {
        scope: Option<Scope>,
        spans: Vec<Sp>,
    }
    /// An enum as its number or its name (`SPAN_KIND_SERVER`, `STATUS_CODE_ERROR`).
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Enum {
        N(i32),
        S(String),
    }
    impl Default for Enum {
        fn default() -> Self {
            Enum::N(0)
        }
    }
    impl Enum {
        fn number(&self, names: &[&str]) -> std::result::Result<i32, String> {
            match self {
                Enum::N(n) => Ok(*n),
                Enum::S(s) => names
                    .iter()
                    .position(|n| n == s)
                    .map(|i| i as i32)
                    .ok_or_else(|| format!("unknown enum value {s:?}")),
            }
        }
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct Sp {
        trace_id: String,
        span_id: String,
        parent_span_id: String,
        name: String,
        kind: Enum,
        #[serde(deserialize_with = "int")]
        start_time_unix_nano: u64,
        #[serde(deserialize_with = "int")]
        end_time_unix_nano: u64,
        attributes: Vec<Kv>,
        events: Vec<Ev>,
        status: Option<St>,
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct Ev {
        #[serde(deserialize_with = "int")]
        time_unix_nano: u64,
        name: String,
        attributes: Vec<Kv>,
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct St {
        message: String,
        code: Enum,
    }

    /// Hex ids (the JSON mapping's exception to base64); a malformed one becomes bytes of
    /// the wrong size, refused with the span.
    fn id(s: &str) -> Vec<u8> {
        if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return vec![0];
        }
        (0..s.len() / 2)
            .filter_map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
            .collect()
    }

    impl Request {
        pub(super) fn into_protobuf(self) -> Result<ExportTraceServiceRequest> {
            let bad = |e: String| Error::Invalid(format!("invalid OTLP/JSON: {e}"));
            let mut out = ExportTraceServiceRequest::default();
            for rs in self.resource_spans {
                let mut scope_spans = Vec::new();
                for ss in rs.scope_spans {
                    let mut spans = Vec::with_capacity(ss.spans.len());
                    for s in ss.spans {
                        let status = match s.status {
                            Some(st) => Some(Status {
                                message: st.message,
                                code: st.code.number(&crate::span::STATUS_NAMES).map_err(bad)?,
                            }),
                            None => None,
                        };
                        spans.push(OtlpSpan {
                            trace_id: id(&s.trace_id),
                            span_id: id(&s.span_id),
                            parent_span_id: id(&s.parent_span_id),
                            name: s.name,
                            kind: s.kind.number(&crate::span::KIND_NAMES).map_err(bad)?,
                            start_time_unix_nano: s.start_time_unix_nano,
                            end_time_unix_nano: s.end_time_unix_nano,
                            attributes: kvs(s.attributes),
                            events: s
                                .events
                                .into_iter()
                                .map(|e| OtlpEvent {
                                    time_unix_nano: e.time_unix_nano,
                                    name: e.name,
                                    attributes: kvs(e.attributes),
                                })
                                .collect(),
                            status,
                        });
                    }
                    scope_spans.push(ScopeSpans {
                        scope: ss.scope.map(|s| InstrumentationScope { name: s.name }),
                        spans,
                    });
                }
                out.resource_spans.push(ResourceSpans {
                    resource: rs.resource.map(|r| Resource {
                        attributes: kvs(r.attributes),
                    }),
                    scope_spans,
                });
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                string_value: Some(v.into()),
                ..Default::default()
            }),
        }
    }

    fn request(spans: Vec<OtlpSpan>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "kvstore"), kv("host.name", "db1")],
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "lookout-sdk".into(),
                    }),
                    spans,
                }],
            }],
        }
    }

    fn span(name: &str, trace: u8, span: u8) -> OtlpSpan {
        OtlpSpan {
            trace_id: vec![trace; 16],
            span_id: vec![span; 8],
            parent_span_id: Vec::new(),
            name: name.into(),
            kind: 2,
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_002_000_000,
            attributes: vec![kv("db.operation", "get")],
            events: Vec::new(),
            status: Some(Status {
                message: "boom".into(),
                code: 2,
            }),
        }
    }

    #[test]
    fn protobuf_spans_keep_their_service_times_and_status() {
        let body = request(vec![span("get", 1, 2)]).encode_to_vec();
        let d = decode_protobuf(&body, &Limits::default()).unwrap();
        assert_eq!(d.rejected, 0);
        let s = &d.spans[0];
        assert_eq!(s.service, "kvstore");
        assert_eq!(
            s.resource,
            [("host.name".to_string(), Value::Str("db1".into()))]
        );
        assert_eq!(s.duration_ns, 2_000_000);
        assert_eq!(s.status, StatusCode::Error);
        assert!(s.is_error());
        assert_eq!(s.scope, "lookout-sdk");
        assert_eq!(s.attribute("db.operation"), Some(&Value::Str("get".into())));
    }

    #[test]
    fn bad_spans_are_refused_one_by_one_and_bad_bodies_whole() {
        let mut short = span("short", 1, 3);
        short.trace_id = vec![1; 4];
        let mut backwards = span("backwards", 1, 4);
        backwards.end_time_unix_nano = 1;
        let zero = span("zero", 0, 5);
        let body = request(vec![span("ok", 1, 2), short, backwards, zero]).encode_to_vec();
        let d = decode_protobuf(&body, &Limits::default()).unwrap();
        assert_eq!((d.spans.len(), d.rejected), (1, 3));
        assert!(d.first_error.unwrap().contains("16 bytes"));
        // Times outside the window.
        let limits = Limits {
            min_start_ns: 1_800_000_000_000_000_000,
            ..Default::default()
        };
        let d =
            decode_protobuf(&request(vec![span("old", 1, 2)]).encode_to_vec(), &limits).unwrap();
        assert_eq!(d.rejected, 1);
        assert!(decode_protobuf(b"\xff\xff\xff", &Limits::default()).is_err());
        let limits = Limits {
            max_spans: 1,
            ..Default::default()
        };
        let two = request(vec![span("a", 1, 2), span("b", 1, 3)]).encode_to_vec();
        assert!(
            decode_protobuf(&two, &limits)
                .unwrap_err()
                .to_string()
                .contains("2 spans")
        );
        let limits = Limits {
            max_bytes: 10,
            ..Default::default()
        };
        assert!(decode_protobuf(&two, &limits).is_err());
    }

    #[test]
    fn json_reads_hex_ids_string_integers_and_enum_names() {
        let body = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"py"}}]},
          "scopeSpans":[{"scope":{"name":"t"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
          "parentSpanId":"eee19b7ec3c1b173","name":"op","kind":"SPAN_KIND_CLIENT","startTimeUnixNano":"1544712660000000000",
          "endTimeUnixNano":1544712661000000000,"attributes":[{"key":"n","value":{"intValue":"42"}}],
          "events":[{"timeUnixNano":"1544712660500000000","name":"retry","attributes":[]}],
          "status":{"code":"STATUS_CODE_OK"}}]}]}]}"#;
        let d = decode_json(body, &Limits::default()).unwrap();
        let s = &d.spans[0];
        assert_eq!(
            crate::span::hex(&s.trace_id),
            "5b8efff798038103d269b633813fc60c"
        );
        assert_eq!(
            s.parent_span_id.map(|p| crate::span::hex(&p)).as_deref(),
            Some("eee19b7ec3c1b173")
        );
        assert_eq!(
            (s.kind, s.status, s.duration_ns),
            (3, StatusCode::Ok, 1_000_000_000)
        );
        assert_eq!(s.attributes, [("n".to_string(), Value::Int(42))]);
        assert_eq!(s.events[0].name, "retry");
        for bad in [
            &b"{"[..],
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"NOPE"}]}]}]}"#,
        ] {
            assert!(decode_json(bad, &Limits::default()).is_err());
        }
        // A malformed hex id refuses the span, not the request.
        let d = decode_json(br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz","spanId":"eee19b7ec3c1b174"}]}]}]}"#, &Limits::default()).unwrap();
        assert_eq!(d.rejected, 1);
    }
}
