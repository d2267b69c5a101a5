//! Prometheus remote read, served: `prometheus.ReadRequest` in (snappy), the `SAMPLES`
//! response (`prometheus.ReadResponse`, snappy) out. Streamed XOR chunks are not served:
//! a request accepting only them is refused by name. Messages by hand with prost.

use lookout_model::{MatchOp, Matcher};

use crate::{Error, Limits, Result, Series, TimeSeries, decompress};

/// `prometheus.ReadRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadRequest {
    /// The queries.
    #[prost(message, repeated, tag = "1")]
    pub queries: Vec<Query>,
    /// 0 SAMPLES, 1 STREAMED_XOR_CHUNKS; empty means SAMPLES.
    #[prost(int32, repeated, tag = "2")]
    pub accepted_response_types: Vec<i32>,
}

/// `prometheus.Query` (hints are not read).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Query {
    /// From (ms).
    #[prost(int64, tag = "1")]
    pub start_timestamp_ms: i64,
    /// To (ms).
    #[prost(int64, tag = "2")]
    pub end_timestamp_ms: i64,
    /// Matchers, all of which a series must match.
    #[prost(message, repeated, tag = "3")]
    pub matchers: Vec<LabelMatcher>,
}

/// `prometheus.LabelMatcher`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelMatcher {
    /// 0 EQ, 1 NEQ, 2 RE, 3 NRE.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// Label name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Value or pattern.
    #[prost(string, tag = "3")]
    pub value: String,
}

/// `prometheus.ReadResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadResponse {
    /// One result per query, in order.
    #[prost(message, repeated, tag = "1")]
    pub results: Vec<QueryResult>,
}

/// `prometheus.QueryResult`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct QueryResult {
    /// The series.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// One query of a read request, ready to run.
#[derive(Debug, Clone)]
pub struct ReadQuery {
    /// From (ms).
    pub start: i64,
    /// To (ms).
    pub end: i64,
    /// The matchers.
    pub matchers: Vec<Matcher>,
}

/// Decodes a snappy `ReadRequest` into queries; refuses requests that accept only
/// streamed chunks, unknown matcher types and bad regexes, by name.
pub fn decode_read_request(body: &[u8], limits: &Limits) -> Result<Vec<ReadQuery>> {
    let raw = decompress(body, limits)?;
    let req = <ReadRequest as prost::Message>::decode(raw.as_slice())
        .map_err(|e| Error::Protobuf(e.to_string()))?;
    if !req.accepted_response_types.is_empty() && !req.accepted_response_types.contains(&0) {
        return Err(Error::Protobuf(
            "only the SAMPLES response type is served; this request accepts only streamed chunks"
                .into(),
        ));
    }
    req.queries
        .into_iter()
        .map(|q| {
            let matchers = q
                .matchers
                .iter()
                .map(|m| {
                    let op = match m.r#type {
                        0 => MatchOp::Equal,
                        1 => MatchOp::NotEqual,
                        2 => MatchOp::Regex,
                        3 => MatchOp::NotRegex,
                        t => return Err(Error::Protobuf(format!("unknown matcher type {t}"))),
                    };
                    Matcher::new(op, &m.name, &m.value)
                        .map_err(|e| Error::Protobuf(format!("bad matcher: {e}")))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(ReadQuery {
                start: q.start_timestamp_ms,
                end: q.end_timestamp_ms,
                matchers,
            })
        })
        .collect()
}

/// Encodes one result per query as a snappy `ReadResponse`.
pub fn encode_read_response(results: &[Vec<Series>]) -> Vec<u8> {
    let resp = ReadResponse {
        results: results
            .iter()
            .map(|series| QueryResult {
                timeseries: series.iter().map(crate::wire).collect(),
            })
            .collect(),
    };
    snap::raw::Encoder::new()
        .compress_vec(&prost::Message::encode_to_vec(&resp))
        .expect("snappy compresses any input")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(req: &ReadRequest) -> Vec<u8> {
        snap::raw::Encoder::new()
            .compress_vec(&prost::Message::encode_to_vec(req))
            .unwrap()
    }

    #[test]
    fn read_requests_decode_and_refuse_what_is_not_served() {
        let req = ReadRequest {
            queries: vec![Query {
                start_timestamp_ms: 1,
                end_timestamp_ms: 2,
                matchers: vec![
                    LabelMatcher {
                        r#type: 0,
                        name: "__name__".into(),
                        value: "up".into(),
                    },
                    LabelMatcher {
                        r#type: 2,
                        name: "job".into(),
                        value: "no.*".into(),
                    },
                ],
            }],
            accepted_response_types: vec![],
        };
        let q = decode_read_request(&body(&req), &Limits::default()).unwrap();
        assert_eq!((q[0].start, q[0].end, q[0].matchers.len()), (1, 2, 2));
        assert!(q[0].matchers[1].matches("node"));
        let streamed = ReadRequest {
            accepted_response_types: vec![1],
            ..req.clone()
        };
        assert!(
            decode_read_request(&body(&streamed), &Limits::default())
                .unwrap_err()
                .to_string()
                .contains("SAMPLES")
        );
        let mut bad = req.clone();
        bad.queries[0].matchers[1].value = "(".into();
        assert!(
            decode_read_request(&body(&bad), &Limits::default())
                .unwrap_err()
                .to_string()
                .contains("bad matcher")
        );
        bad.queries[0].matchers[1].r#type = 7;
        assert!(
            decode_read_request(&body(&bad), &Limits::default())
                .unwrap_err()
                .to_string()
                .contains("unknown matcher type")
        );
        // The response decodes as Prometheus would read it.
        let s = Series {
            labels: lookout_model::Labels::from_pairs([("__name__", "up")]),
            samples: vec![(5, 1.0)],
        };
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&encode_read_response(&[vec![s]]))
            .unwrap();
        let resp = <ReadResponse as prost::Message>::decode(raw.as_slice()).unwrap();
        assert_eq!(resp.results[0].timeseries[0].samples[0].timestamp, 5);
    }
}
