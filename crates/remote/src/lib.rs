//! Prometheus remote write: the `prometheus.WriteRequest` message (remote write 1.0),
//! snappy-framed as the protocol sends it, decoded into label sets and samples within
//! limits, and encoded for tests and senders.
//!
//! The messages are derived by hand with prost (no protoc, no generated code): only the
//! fields Lookout reads are declared, so anything else in a body (exemplars, native
//! histograms, metadata) is skipped by the decoder, as protobuf allows. Nothing here
//! knows about HTTP or storage: the server decodes with [`decode_write_request`] and
//! appends what it gets.

use lookout_model::Labels;

/// What can be wrong with a remote-write body.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body is not snappy's block format.
    #[error("snappy decode error: {0}")]
    Snappy(String),
    /// The body would decompress to more than the limit.
    #[error("decompressed body is {size} bytes, more than the limit of {limit}")]
    TooLarge {
        /// Its decompressed size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The decompressed body is not a `prometheus.WriteRequest`.
    #[error("invalid protobuf: {0}")]
    Protobuf(String),
    /// A series' labels cannot be stored (names the series and the problem).
    #[error("invalid labels {series}: {message}")]
    Labels {
        /// The series, as sent.
        series: String,
        /// What is wrong.
        message: String,
    },
}

/// This crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Prometheus's `prometheus.Label`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    /// The name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// Prometheus's `prometheus.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Prometheus's `prometheus.TimeSeries` (exemplars and histograms are not read).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// The labels, `__name__` among them.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// The samples, oldest first.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// Prometheus's `prometheus.WriteRequest` (metadata is not read).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// The series.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// Bounds on one request.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest decompressed body, in bytes.
    pub max_decompressed: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_decompressed: 64 << 20,
        }
    }
}

/// One series of a request, ready to append.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its labels.
    pub labels: Labels,
    /// (timestamp ms, value), as sent.
    pub samples: Vec<(i64, f64)>,
}

/// Decodes a snappy-compressed `prometheus.WriteRequest`, refusing bodies that would
/// decompress past the limit before decompressing them, and series whose labels cannot
/// be stored (an invalid or repeated name, no metric name).
pub fn decode_write_request(body: &[u8], limits: &Limits) -> Result<Vec<Series>> {
    let size = snap::raw::decompress_len(body).map_err(|e| Error::Snappy(e.to_string()))?;
    if size > limits.max_decompressed {
        return Err(Error::TooLarge {
            size,
            limit: limits.max_decompressed,
        });
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| Error::Snappy(e.to_string()))?;
    let req = <WriteRequest as prost::Message>::decode(raw.as_slice())
        .map_err(|e| Error::Protobuf(e.to_string()))?;
    let mut out = Vec::with_capacity(req.timeseries.len());
    for ts in req.timeseries {
        let shown = || {
            let parts: Vec<String> = ts
                .labels
                .iter()
                .map(|l| format!("{}={:?}", l.name, l.value))
                .collect();
            format!("{{{}}}", parts.join(", "))
        };
        let mut seen = std::collections::HashSet::new();
        for l in &ts.labels {
            if !lookout_model::is_valid_label_name(&l.name) {
                return Err(Error::Labels {
                    series: shown(),
                    message: format!("invalid label name {:?}", l.name),
                });
            }
            if !seen.insert(l.name.as_str()) {
                return Err(Error::Labels {
                    series: shown(),
                    message: format!("duplicate label name {:?}", l.name),
                });
            }
        }
        let labels = Labels::from_pairs(
            ts.labels
                .iter()
                .map(|l| (l.name.as_str(), l.value.as_str())),
        );
        if labels.metric_name().is_none_or(str::is_empty) {
            return Err(Error::Labels {
                series: shown(),
                message: "no metric name".into(),
            });
        }
        out.push(Series {
            labels,
            samples: ts.samples.iter().map(|s| (s.timestamp, s.value)).collect(),
        });
    }
    Ok(out)
}

/// Encodes series as a snappy-compressed `prometheus.WriteRequest`.
pub fn encode_write_request(series: &[Series]) -> Vec<u8> {
    let req = WriteRequest {
        timeseries: series
            .iter()
            .map(|s| TimeSeries {
                labels: s
                    .labels
                    .iter()
                    .map(|l| Label {
                        name: l.name.to_string(),
                        value: l.value.to_string(),
                    })
                    .collect(),
                samples: s
                    .samples
                    .iter()
                    .map(|&(timestamp, value)| Sample { value, timestamp })
                    .collect(),
            })
            .collect(),
    };
    let raw = prost::Message::encode_to_vec(&req);
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .expect("snappy compresses any input")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(pairs: &[(&str, &str)], samples: &[(i64, f64)]) -> Series {
        Series {
            labels: Labels::from_pairs(pairs.iter().copied()),
            samples: samples.to_vec(),
        }
    }

    #[test]
    fn requests_round_trip() {
        let sent = vec![
            series(
                &[("__name__", "up"), ("job", "node")],
                &[(1000, 1.0), (2000, 0.0)],
            ),
            series(&[("__name__", "temp"), ("room", "é")], &[(1500, f64::NAN)]),
        ];
        let got = decode_write_request(&encode_write_request(&sent), &Limits::default()).unwrap();
        assert_eq!(got[0], sent[0]);
        assert_eq!(got[1].labels, sent[1].labels);
        assert!(got[1].samples[0].1.is_nan());
    }

    #[test]
    fn hostile_bodies_get_named_errors() {
        let limits = Limits::default();
        assert!(matches!(
            decode_write_request(b"not snappy at all", &limits),
            Err(Error::Snappy(_))
        ));
        // Valid snappy around bytes that are not a WriteRequest.
        let junk = snap::raw::Encoder::new().compress_vec(&[0xff; 64]).unwrap();
        assert!(matches!(
            decode_write_request(&junk, &limits),
            Err(Error::Protobuf(_))
        ));
        // A body claiming to decompress to 4 GiB is refused before decompressing.
        let mut huge = vec![0x80, 0x80, 0x80, 0x80, 0x0f];
        huge.extend_from_slice(&[0; 16]);
        assert!(matches!(
            decode_write_request(&huge, &limits),
            Err(Error::TooLarge { .. })
        ));
        let small = Limits {
            max_decompressed: 10,
        };
        let body = encode_write_request(&[series(&[("__name__", "up")], &[(1, 1.0)])]);
        assert!(matches!(
            decode_write_request(&body, &small),
            Err(Error::TooLarge { .. })
        ));
        for (labels, want) in [
            (&[("job", "x")][..], "no metric name"),
            (
                &[("__name__", "up"), ("bad-name", "x")][..],
                "invalid label name",
            ),
        ] {
            let body = encode_write_request(&[series(labels, &[(1, 1.0)])]);
            let e = decode_write_request(&body, &limits)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{e}");
        }
        // Duplicate names, written by hand (Labels would merge them).
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: "up".into(),
                    },
                    Label {
                        name: "a".into(),
                        value: "1".into(),
                    },
                    Label {
                        name: "a".into(),
                        value: "2".into(),
                    },
                ],
                samples: vec![],
            }],
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&prost::Message::encode_to_vec(&req))
            .unwrap();
        assert!(
            decode_write_request(&body, &limits)
                .unwrap_err()
                .to_string()
                .contains("duplicate")
        );
    }
}
