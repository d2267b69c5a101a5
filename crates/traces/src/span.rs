//! The span as the store keeps it: what OTLP sends, with the resource's `service.name`
//! pulled out, ids as fixed-size arrays and times in nanoseconds since the Unix epoch.

use serde::{Deserialize, Serialize};

/// A 128-bit trace id.
pub type TraceId = [u8; 16];
/// A 64-bit span id.
pub type SpanId = [u8; 8];

/// An attribute value (OTLP's `AnyValue`; arrays and maps are kept as their JSON text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Value {
    /// A string.
    Str(String),
    /// A boolean.
    Bool(bool),
    /// A 64-bit integer.
    Int(i64),
    /// A float.
    Double(f64),
}

impl Value {
    /// The value as text (how tag searches compare it).
    pub fn text(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Double(d) => d.to_string(),
        }
    }
}

/// OTLP's span kinds by number, as its JSON and the spanmetrics connector name them.
pub const KIND_NAMES: [&str; 6] = [
    "SPAN_KIND_UNSPECIFIED",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
];
/// OTLP's status codes by number, likewise.
pub const STATUS_NAMES: [&str; 3] = ["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"];

/// One key and its value.
pub type Attribute = (String, Value);

/// A timed event inside a span (a log line; an exception).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When, in ns since the epoch.
    pub time_ns: u64,
    /// Its name.
    pub name: String,
    /// Its attributes.
    pub attributes: Vec<Attribute>,
}

/// The span's status (OTLP's codes: unset, ok, error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StatusCode {
    /// Not set.
    #[default]
    Unset,
    /// Explicitly OK.
    Ok,
    /// Failed.
    Error,
}

/// One span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// Its trace.
    pub trace_id: TraceId,
    /// Its id.
    pub span_id: SpanId,
    /// Its parent, unless it is a root.
    pub parent_span_id: Option<SpanId>,
    /// The resource's `service.name` (`unknown_service` when it has none, as the SDKs
    /// default).
    pub service: String,
    /// The span's name (Jaeger's operation).
    pub name: String,
    /// OTLP's kind: 0 unspecified, 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
    pub kind: u8,
    /// Start, in ns since the epoch.
    pub start_ns: u64,
    /// Duration in ns.
    pub duration_ns: u64,
    /// Status code.
    pub status: StatusCode,
    /// Status message (empty unless an error says why).
    pub status_message: String,
    /// The span's attributes.
    pub attributes: Vec<Attribute>,
    /// Its events.
    pub events: Vec<Event>,
    /// The resource's attributes other than `service.name` (Jaeger's process tags).
    pub resource: Vec<Attribute>,
    /// The instrumentation scope's name, when given.
    pub scope: String,
}

impl Span {
    /// Whether it failed: an error status, or an `error=true` attribute (Jaeger's
    /// convention).
    pub fn is_error(&self) -> bool {
        self.status == StatusCode::Error
            || self
                .attributes
                .iter()
                .any(|(k, v)| k == "error" && *v == Value::Bool(true))
    }

    /// The value of attribute `key` on the span, else on its resource.
    pub fn attribute(&self, key: &str) -> Option<&Value> {
        self.attributes
            .iter()
            .chain(&self.resource)
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
}

/// Lower-case hex of an id.
pub fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a hex id of exactly `N` bytes (Jaeger also accepts a trace id with its leading
/// zeros left out, as 64-bit ids are written: shorter input is padded on the left).
pub fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.is_empty() || s.len() > 2 * N || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let padded = format!("{s:0>width$}", width = 2 * N);
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&padded[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_hex_and_short_ones_are_padded() {
        let id: TraceId = [0xab; 16];
        assert_eq!(parse_hex::<16>(&hex(&id)), Some(id));
        let short = parse_hex::<16>("1f").unwrap();
        assert_eq!(short[15], 0x1f);
        assert!(short[..15].iter().all(|b| *b == 0));
        for bad in ["", "xyz", &"a".repeat(33)] {
            assert_eq!(parse_hex::<16>(bad), None, "{bad}");
        }
    }
}

/// What is removed or hidden from spans before they are stored (attributes of spans,
/// their events and their resources): keys are exact, or a prefix ending in `*`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Redaction {
    /// Attributes dropped.
    pub drop: Vec<String>,
    /// Attributes whose values are replaced by `sha256:` and the first 16 bytes of the
    /// SHA-256 of their text, in hex: equal values stay equal (and searchable by their
    /// hash), the value itself is not kept.
    pub hash: Vec<String>,
}

fn key_matches(patterns: &[String], key: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => key.starts_with(prefix),
        None => p == key,
    })
}

/// The hash [`Redaction::hash`] stores for a value.
pub fn hashed(v: &Value) -> Value {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(v.text().as_bytes());
    Value::Str(format!("sha256:{}", hex(&digest[..16])))
}

impl Redaction {
    /// Whether it changes anything.
    pub fn is_empty(&self) -> bool {
        self.drop.is_empty() && self.hash.is_empty()
    }

    fn attrs(&self, attrs: &mut Vec<Attribute>) {
        attrs.retain(|(k, _)| !key_matches(&self.drop, k));
        for (k, v) in attrs.iter_mut() {
            if key_matches(&self.hash, k) {
                *v = hashed(v);
            }
        }
    }

    /// Applies it to a span.
    pub fn apply(&self, s: &mut Span) {
        if self.is_empty() {
            return;
        }
        self.attrs(&mut s.attributes);
        self.attrs(&mut s.resource);
        for e in &mut s.events {
            self.attrs(&mut e.attributes);
        }
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    #[test]
    fn dropped_and_hashed_attributes_never_reach_the_store() {
        let r = Redaction {
            drop: vec!["db.statement".into(), "http.request.header.*".into()],
            hash: vec!["user.id".into()],
        };
        let mut s = Span {
            trace_id: [1; 16],
            span_id: [1; 8],
            parent_span_id: None,
            service: "api".into(),
            name: "op".into(),
            kind: 2,
            start_ns: 1,
            duration_ns: 1,
            status: StatusCode::Unset,
            status_message: String::new(),
            attributes: vec![
                ("db.statement".into(), Value::Str("SELECT secret".into())),
                (
                    "http.request.header.authorization".into(),
                    Value::Str("Bearer x".into()),
                ),
                ("user.id".into(), Value::Str("alice".into())),
                ("http.route".into(), Value::Str("/kv".into())),
            ],
            events: vec![Event {
                time_ns: 1,
                name: "e".into(),
                attributes: vec![("user.id".into(), Value::Str("alice".into()))],
            }],
            resource: vec![("db.statement".into(), Value::Str("x".into()))],
            scope: String::new(),
        };
        r.apply(&mut s);
        let keys: Vec<&str> = s.attributes.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["user.id", "http.route"]);
        let h = hashed(&Value::Str("alice".into()));
        assert_eq!(s.attributes[0].1, h);
        assert_eq!(s.events[0].attributes[0].1, h, "equal values, equal hashes");
        assert_ne!(h, hashed(&Value::Str("bob".into())));
        assert!(s.resource.is_empty());
        assert!(!format!("{s:?}").contains("alice"));
    }
}
