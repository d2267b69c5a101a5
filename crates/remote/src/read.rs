//! Prometheus remote read, served: `prometheus.ReadRequest` in (snappy), and out either
//! the `SAMPLES` response (`prometheus.ReadResponse`, snappy) or `STREAMED_XOR_CHUNKS`
//! (frames of `prometheus.ChunkedReadResponse`: uvarint length, big-endian CRC-32C,
//! message; series in XOR chunks of at most 120 samples, frames of about 1 MiB),
//! whichever the client lists first. Messages by hand with prost.

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

/// The response a read request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseType {
    /// `prometheus.ReadResponse`, snappy.
    Samples,
    /// Frames of `prometheus.ChunkedReadResponse`.
    StreamedXorChunks,
}

/// The content type of streamed chunk responses.
pub const STREAMED_CONTENT_TYPE: &str =
    "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse";

/// Decodes a snappy `ReadRequest` into queries and the response type to answer with (the
/// first the client accepts; `SAMPLES` when it names none); refuses unknown response and
/// matcher types and bad regexes, by name.
pub fn decode_read_request(body: &[u8], limits: &Limits) -> Result<(Vec<ReadQuery>, ResponseType)> {
    let raw = decompress(body, limits)?;
    let req = <ReadRequest as prost::Message>::decode(raw.as_slice())
        .map_err(|e| Error::Protobuf(e.to_string()))?;
    let response = match req
        .accepted_response_types
        .iter()
        .find(|t| **t == 0 || **t == 1)
    {
        None if !req.accepted_response_types.is_empty() => {
            return Err(Error::Protobuf(format!(
                "none of the accepted response types {:?} is served (0 SAMPLES, 1 STREAMED_XOR_CHUNKS)",
                req.accepted_response_types
            )));
        }
        Some(1) => ResponseType::StreamedXorChunks,
        _ => ResponseType::Samples,
    };
    let queries = req
        .queries
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
        .collect::<Result<Vec<_>>>()?;
    Ok((queries, response))
}

/// `prometheus.ChunkedReadResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ChunkedReadResponse {
    /// Series with their chunks.
    #[prost(message, repeated, tag = "1")]
    pub chunked_series: Vec<ChunkedSeries>,
    /// Which query of the request these answer.
    #[prost(int64, tag = "2")]
    pub query_index: i64,
}

/// `prometheus.ChunkedSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ChunkedSeries {
    /// The labels.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<crate::Label>,
    /// The chunks, oldest first.
    #[prost(message, repeated, tag = "2")]
    pub chunks: Vec<Chunk>,
}

/// `prometheus.Chunk`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Chunk {
    /// First sample's time.
    #[prost(int64, tag = "1")]
    pub min_time_ms: i64,
    /// Last sample's time.
    #[prost(int64, tag = "2")]
    pub max_time_ms: i64,
    /// 1: XOR.
    #[prost(int32, tag = "3")]
    pub r#type: i32,
    /// The encoded chunk.
    #[prost(bytes = "vec", tag = "4")]
    pub data: Vec<u8>,
}

/// CRC-32 with the Castagnoli polynomial, as the frames carry it.
fn crc32c(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82f6_3b78
                } else {
                    c >> 1
                };
            }
            *e = c;
        }
        t
    });
    !data.iter().fold(!0u32, |c, &b| {
        table[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8)
    })
}

/// Frames larger than this are closed (Prometheus's own 1 MiB).
const FRAME_BYTES: usize = 1 << 20;

/// Appends the streamed-chunks answer to query `index` to `out`: its series in XOR
/// chunks of at most 120 samples, as many series per frame as fit in about 1 MiB.
pub fn encode_chunked_frames(index: usize, series: &[Series], out: &mut Vec<u8>) {
    let mut frame = ChunkedReadResponse {
        chunked_series: Vec::new(),
        query_index: index as i64,
    };
    let mut size = 0;
    let flush = |frame: &mut ChunkedReadResponse, out: &mut Vec<u8>| {
        if frame.chunked_series.is_empty() {
            return;
        }
        let msg = prost::Message::encode_to_vec(&*frame);
        let mut len = msg.len() as u64;
        while len >= 0x80 {
            out.push(len as u8 | 0x80);
            len >>= 7;
        }
        out.push(len as u8);
        out.extend_from_slice(&crc32c(&msg).to_be_bytes());
        out.extend_from_slice(&msg);
        frame.chunked_series.clear();
    };
    for s in series {
        let chunks: Vec<Chunk> = s
            .samples
            .chunks(crate::xor::SAMPLES_PER_CHUNK)
            .map(|c| Chunk {
                min_time_ms: c[0].0,
                max_time_ms: c[c.len() - 1].0,
                r#type: 1,
                data: crate::xor::encode(c),
            })
            .collect();
        size += chunks.iter().map(|c| c.data.len() + 24).sum::<usize>()
            + s.labels
                .iter()
                .map(|l| l.name.len() + l.value.len() + 4)
                .sum::<usize>();
        frame.chunked_series.push(ChunkedSeries {
            labels: crate::wire(s).labels,
            chunks,
        });
        if size >= FRAME_BYTES {
            flush(&mut frame, out);
            size = 0;
        }
    }
    flush(&mut frame, out);
}

/// Encodes one result per query as a snappy `ReadResponse`.
pub fn encode_read_response(results: &[Vec<Series>]) -> Vec<u8> {
    let all: Vec<(Vec<Series>, Vec<crate::HistogramSeries>)> =
        results.iter().map(|s| (s.clone(), Vec::new())).collect();
    encode_read_response_all(&all)
}

/// Encodes one result per query, float series and native-histogram series, as a
/// snappy `ReadResponse`.
pub fn encode_read_response_all(results: &[(Vec<Series>, Vec<crate::HistogramSeries>)]) -> Vec<u8> {
    let resp = ReadResponse {
        results: results
            .iter()
            .map(|(series, histograms)| QueryResult {
                timeseries: series
                    .iter()
                    .map(crate::wire)
                    .chain(histograms.iter().map(|h| {
                        crate::TimeSeries {
                            labels: crate::wire_labels(&h.labels),
                            histograms: h
                                .samples
                                .iter()
                                .map(|(t, x)| crate::wire_histogram(x, *t))
                                .collect(),
                            ..Default::default()
                        }
                    }))
                    .collect(),
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
        let (q, kind) = decode_read_request(&body(&req), &Limits::default()).unwrap();
        assert_eq!((q[0].start, q[0].end, q[0].matchers.len()), (1, 2, 2));
        assert_eq!(kind, ResponseType::Samples);
        assert!(q[0].matchers[1].matches("node"));
        let streamed = ReadRequest {
            accepted_response_types: vec![1, 0],
            ..req.clone()
        };
        let (_, kind) = decode_read_request(&body(&streamed), &Limits::default()).unwrap();
        assert_eq!(kind, ResponseType::StreamedXorChunks);
        let unknown = ReadRequest {
            accepted_response_types: vec![7],
            ..req.clone()
        };
        assert!(
            decode_read_request(&body(&unknown), &Limits::default())
                .unwrap_err()
                .to_string()
                .contains("none of the accepted response types")
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
            exemplars: Vec::new(),
            created: 0,
        };
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&encode_read_response(&[vec![s.clone()]]))
            .unwrap();
        let resp = <ReadResponse as prost::Message>::decode(raw.as_slice()).unwrap();
        assert_eq!(resp.results[0].timeseries[0].samples[0].timestamp, 5);
        // Native histograms follow the float series of their query.
        let h = lookout_model::FloatHistogram::parse("{{schema:0 count:3 sum:2 buckets:[1 2]}}")
            .unwrap();
        let hs = crate::HistogramSeries {
            labels: lookout_model::Labels::from_pairs([("__name__", "lat")]),
            samples: vec![(7, h.clone())],
        };
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&encode_read_response_all(&[(vec![s], vec![hs])]))
            .unwrap();
        let resp = <ReadResponse as prost::Message>::decode(raw.as_slice()).unwrap();
        let ts = &resp.results[0].timeseries;
        assert_eq!(ts.len(), 2);
        assert_eq!(ts[1].histograms[0].timestamp, 7);
        assert!(
            crate::histogram_of(&ts[1].histograms[0])
                .unwrap()
                .same_as(&h)
        );
    }

    #[test]
    fn streamed_frames_carry_checked_chunks_of_at_most_120_samples() {
        assert_eq!(
            crc32c(b"123456789"),
            0xe306_9283,
            "the standard check value"
        );
        let s = Series {
            labels: lookout_model::Labels::from_pairs([("__name__", "up")]),
            samples: (0..250).map(|i| (i * 15_000, i as f64)).collect(),
            exemplars: Vec::new(),
            created: 0,
        };
        let mut out = Vec::new();
        encode_chunked_frames(3, std::slice::from_ref(&s), &mut out);
        let mut at = 0;
        let mut len = 0usize;
        let mut shift = 0;
        loop {
            let b = out[at];
            at += 1;
            len |= ((b & 0x7f) as usize) << shift;
            shift += 7;
            if b < 0x80 {
                break;
            }
        }
        let crc = u32::from_be_bytes(out[at..at + 4].try_into().unwrap());
        let msg = &out[at + 4..at + 4 + len];
        assert_eq!(at + 4 + len, out.len(), "one frame");
        assert_eq!(crc, crc32c(msg));
        let frame = <ChunkedReadResponse as prost::Message>::decode(msg).unwrap();
        assert_eq!(frame.query_index, 3);
        let chunks = &frame.chunked_series[0].chunks;
        assert_eq!(chunks.len(), 3);
        assert_eq!(
            (chunks[1].min_time_ms, chunks[1].max_time_ms),
            (120 * 15_000, 239 * 15_000)
        );
        let back: Vec<(i64, f64)> = chunks
            .iter()
            .flat_map(|c| crate::xor::decode(&c.data).unwrap())
            .collect();
        assert_eq!(back, s.samples);
    }
}
