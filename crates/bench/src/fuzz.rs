//! A mutation fuzzer for every parser and file reader, on stable Rust (`cargo fuzz` needs
//! nightly): `lookout-bench fuzz --seconds N` runs it for as long as asked, and the unit
//! test at the bottom runs a few hundred inputs per target in every CI run.
//!
//! Each target starts from valid seed inputs and feeds its parser mutations of them
//! (flipped bits, interesting bytes and numbers, inserted, deleted, duplicated and spliced
//! ranges, tokens of the format) with a fixed seed, so a run is reproducible. A panic is
//! a crash: it is caught, counted, and its input written to the output directory. Work
//! runs on a thread with the server's 16 MiB stack, as queries do. A hang cannot be
//! caught in-process: set `LOOKOUT_FUZZ_TRACE=FILE` and each input is written there just
//! before it runs, so the one a stuck run is on can be read back.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lookout_model::Labels;
use lookout_storage::{Appendable, MemStorage};

/// One thing fuzzed: a name, seed inputs and the function that takes an input.
pub(crate) struct Target {
    pub(crate) name: &'static str,
    seeds: Vec<Vec<u8>>,
    /// Tokens of the format, spliced in by the mutator.
    tokens: &'static [&'static str],
    run: RunFn,
}

/// Seed inputs of a target.
type Seeds = Vec<Vec<u8>>;

/// What a target does with one input.
type RunFn = Box<dyn Fn(&[u8])>;

/// What fuzzing one target found.
#[derive(Debug, Default, Clone)]
pub(crate) struct Report {
    pub(crate) name: &'static str,
    pub(crate) execs: u64,
    pub(crate) crashes: u64,
    /// The first crash's message.
    pub(crate) first: Option<String>,
}

/// xorshift64*: small, fast, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: &[&str] = &[
    "0",
    "-0",
    "1e308",
    "-1e308",
    "1e-320",
    "NaN",
    "+Inf",
    "-Inf",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551616",
    "4294967296",
    "65536",
    "\u{0}",
    "\u{feff}",
    "é",
    "\\",
    "\"",
    "'",
    "`",
    "\n",
    "\r\n",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ":",
    "#",
    "{{",
    "}}",
];

fn mutate(rng: &mut Rng, input: &[u8], tokens: &[&str], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(9) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = [0u8, 0xff, 0x7f, 0x80, b'\n', b'"', b'{', b'(', b'-'][rng.below(9)];
            }
            2 => {
                let t = INTERESTING[rng.below(INTERESTING.len())];
                v.splice(at..at, t.bytes());
            }
            3 if !tokens.is_empty() => {
                let t = tokens[rng.below(tokens.len())];
                v.splice(at..at, t.bytes());
            }
            4 if !v.is_empty() => {
                let len = rng.below(v.len() - at.min(v.len() - 1)).max(1);
                let end = (at + len).min(v.len());
                v.drain(at.min(end)..end);
            }
            5 if !v.is_empty() => {
                // Duplicate a range many times: deep nesting, long lines.
                let a = rng.below(v.len());
                let b = (a + 1 + rng.below(16)).min(v.len());
                let piece = v[a..b].to_vec();
                let times = [2, 10, 100, 2000][rng.below(4)];
                let rep: Vec<u8> = piece
                    .iter()
                    .copied()
                    .cycle()
                    .take(piece.len() * times)
                    .collect();
                v.splice(a..a, rep);
            }
            6 if !other.is_empty() => {
                // Splice in a piece of another seed.
                let a = rng.below(other.len());
                let b = (a + 1 + rng.below(64)).min(other.len());
                v.splice(at..at, other[a..b].iter().copied());
            }
            7 => v.truncate(at),
            _ => {
                let n = rng.below(8);
                for _ in 0..n {
                    v.insert(at.min(v.len()), rng.next() as u8);
                }
            }
        }
    }
    // Keep inputs to a size that parses in milliseconds.
    v.truncate(1 << 20);
    v
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn seeds(items: &[&str]) -> Vec<Vec<u8>> {
    items.iter().map(|s| s.as_bytes().to_vec()).collect()
}

const EXPOSITION: &str = "# HELP http_requests_total Requests.\n# TYPE http_requests_total counter\nhttp_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\nhttp_requests_total{method=\"post\",code=\"400\"}    3 1395066363000\nmetric_without_timestamp_and_labels 12.47\n# TYPE h histogram\nh_bucket{le=\"0.05\"} 24054\nh_bucket{le=\"+Inf\"} 144320\nh_sum 53423\nh_count 144320\nsomething_weird{problem=\"division by zero\"} +Inf -3982045\n";
const OPENMETRICS: &str = "# TYPE a counter\n# HELP a help\na_total{foo=\"bar\"} 1.0 123.456 # {trace_id=\"KOO5S4vxi0o\"} 0.67\na_created 1520430000.123\n# TYPE g gauge\n# UNIT g seconds\ng_seconds 1 1520879607.789\n# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 1\ns_count 1\n# EOF\n";
const ALERTMANAGER: &str = "global:\n  resolve_timeout: 5m\n  smtp_smarthost: 'localhost:25'\n  smtp_from: 'a@example.com'\nroute:\n  receiver: team\n  group_by: [alertname, cluster]\n  group_wait: 30s\n  group_interval: 5m\n  repeat_interval: 4h\n  routes:\n    - matchers: ['severity=~\"page|critical\"', 'team!=\"x\"']\n      receiver: pager\n      continue: true\n      mute_time_intervals: [nights]\ninhibit_rules:\n  - source_matchers: [severity=\"critical\"]\n    target_matchers: [severity=\"warning\"]\n    equal: [alertname]\ntime_intervals:\n  - name: nights\n    time_intervals:\n      - times: [{start_time: '00:00', end_time: '06:00'}]\n        weekdays: ['monday:friday']\nreceivers:\n  - name: team\n    webhook_configs: [{url: 'http://127.0.0.1:1/hook', max_alerts: 3}]\n    email_configs: [{to: 'x@example.com'}]\n  - name: pager\n    slack_configs: [{api_url: 'http://127.0.0.1:1/', channel: '#x', title: '{{ .CommonLabels.alertname }}'}]\n    pagerduty_configs: [{routing_key: 'k', url: 'http://127.0.0.1:1/'}]\n";
const CONFIG: &str = "global:\n  scrape_interval: 15s\n  evaluation_interval: 1m\n  external_labels: {dc: eu}\nstorage:\n  retention: 30d\n  retention_size: 10GB\n  wal_sync: always\n  future_tolerance: 5m\nquery:\n  timeout: 1m\n  max_samples: 1000\nweb:\n  listen_address: 127.0.0.1:9180\nrule_packs: [host]\nscrape_configs:\n  - job_name: node\n    scrape_interval: 5s\n    static_configs: [{targets: ['127.0.0.1:9100'], labels: {env: prod}}]\n    relabel_configs:\n      - {source_labels: [__address__], regex: '(.*):.*', target_label: host, replacement: '$1'}\n      - {action: hashmod, source_labels: [host], modulus: 4, target_label: shard}\n    metric_relabel_configs: [{action: labeldrop, regex: 'tmp_.*'}]\n";
const TEMPLATES: &[&str] = &[
    "{{ $labels.instance }} is down ({{ $value | humanize }})",
    "{{ range $i, $e := .Labels }}{{ $i }}={{ $e }} {{ end }}",
    "{{ if gt $value 1.5 }}high{{ else if eq $value 0.0 }}zero{{ else }}{{ printf \"%.2f\" $value }}{{ end }}",
    "{{ $value | humanizeDuration }} {{ $value | humanizePercentage }} {{ $value | humanize1024 }}",
    "{{ reReplaceAll \"(a+)\" \"$1b\" $labels.job | toUpper | title }} {{ $externalURL }}",
    "{{ define \"x\" }}{{ . }}{{ end }}{{ template \"x\" $labels.job }}",
    "{{ with $labels }}{{ .job }}{{ end }}{{ len $labels }}{{ index $labels \"job\" }}",
];

/// Every target with its seeds.
pub(crate) fn targets() -> Vec<Target> {
    let db = query_store();
    let mut t = vec![
        Target {
            name: "exposition-text",
            seeds: seeds(&[EXPOSITION]),
            tokens: &[
                "# TYPE ", "# HELP ", "{", "}", "=\"", "\",", " ", "\n", "+Inf", "NaN",
            ],
            run: Box::new(|b| {
                let _ = lookout_expfmt::parse(&text(b), lookout_expfmt::Format::Prometheus);
            }),
        },
        Target {
            name: "openmetrics",
            seeds: seeds(&[OPENMETRICS]),
            tokens: &[
                "# EOF\n", "# UNIT ", " # {", "_created", "_total", "} ", "\n",
            ],
            run: Box::new(|b| {
                let _ = lookout_expfmt::parse(&text(b), lookout_expfmt::Format::OpenMetrics);
            }),
        },
        Target {
            name: "promql",
            seeds: promql_seeds(),
            tokens: &[
                "(",
                ")",
                "[5m]",
                "[1h:1m]",
                " offset 1e300",
                " @ 1e18",
                " + ",
                " / on(a) group_left ",
                "sum by (a) (",
                "rate(",
                "topk(1e9, ",
                "label_replace(",
                "\"",
                "{a=~\".*\"}",
                " or ",
                "-",
            ],
            run: Box::new(move |b| {
                let q = text(b);
                let e = lookout_promql::Engine::default();
                if let Ok(expr) = lookout_promql::parse(&q) {
                    let _ = e.instant_query(&db, &q, &expr, 600_000, None);
                    let _ = e.range_query(&db, &q, &expr, 0, 600_000, 60_000, None);
                }
            }),
        },
        Target {
            name: "lookout-config",
            seeds: seeds(&[CONFIG]),
            tokens: &[
                ": ",
                "\n  ",
                "- ",
                "[",
                "]",
                "{",
                "}",
                "&a ",
                "*a",
                "!!binary ",
                "~",
            ],
            run: Box::new(|b| {
                let _ = lookout_config::Config::parse(&text(b));
            }),
        },
        Target {
            name: "rule-file",
            seeds: rule_seeds(),
            tokens: &[
                "  - alert: ",
                "    expr: ",
                "    for: ",
                "keep_firing_for: ",
                "{{ ",
                " }}",
                "\n",
            ],
            run: Box::new(|b| {
                let _ = lookout_rules::file::parse_text(&text(b), false);
            }),
        },
        Target {
            name: "alertmanager-config",
            seeds: seeds(&[ALERTMANAGER]),
            tokens: &[
                "matchers: ['",
                "=~\"",
                "receiver: ",
                "routes:\n  - ",
                "times: ",
                "_file: /dev/null",
            ],
            run: Box::new(|b| {
                let _ = lookout_notify::Config::parse(&text(b));
            }),
        },
        Target {
            name: "template",
            seeds: seeds(TEMPLATES),
            tokens: &[
                "{{",
                "}}",
                " | ",
                "$labels.",
                "$value",
                " end ",
                "range ",
                "printf \"%",
                "(",
                ")",
            ],
            run: Box::new(|b| {
                let data = lookout_rules::template::TemplateData {
                    labels: [("job".to_string(), "node".to_string())].into(),
                    external_labels: Default::default(),
                    external_url: "http://x".into(),
                    value: 2.5,
                };
                let _ = lookout_rules::template::expand("fuzz", &text(b), &data, None);
            }),
        },
    ];
    t.extend(file_targets());
    t.extend(trace_targets());
    t.extend(remote_targets());
    t
}

fn query_store() -> MemStorage {
    let db = MemStorage::new();
    let mut app = db.appender();
    for i in 0..=40 {
        for (a, v) in [("x", 1.0), ("y", -2.5), ("z", f64::NAN)] {
            let l = Labels::from_pairs([("__name__", "m"), ("a", a)]);
            let _ = app.append(&l, i * 15_000, v * i as f64);
            let h = Labels::from_pairs([("__name__", "h_bucket"), ("a", a), ("le", "+Inf")]);
            let _ = app.append(&h, i * 15_000, i as f64);
        }
    }
    let _ = app.commit();
    db
}

fn promql_seeds() -> Vec<Vec<u8>> {
    let mut v = seeds(&[
        "sum by (a) (rate(m[5m])) / on () group_left sum(rate(m[5m]))",
        "histogram_quantile(0.9, sum by (le) (rate(h_bucket[5m])))",
        "max_over_time(deriv(m[2m])[10m:30s] offset 1m) > bool 0",
        "label_replace(m, \"b\", \"$1\", \"a\", \"(.*)\") or vector(1)",
        "topk(2, count_values(\"v\", m)) unless absent(nope)",
        "quantile_over_time(0.5, m[10m]) @ 300 - predict_linear(m[5m], 60)",
    ]);
    for line in include_str!("../../promql/testdata/foundation.test").lines() {
        if let Some(q) = line.trim().strip_prefix("eval instant at ")
            && let Some((_, q)) = q.split_once(' ')
        {
            v.push(q.as_bytes().to_vec());
        }
    }
    v
}

fn rule_seeds() -> Vec<Vec<u8>> {
    seeds(&[
        include_str!("../../rules/packs/host.yml"),
        include_str!("../../rules/packs/postgres.yml"),
        include_str!("../../rules/packs/redis.yml"),
    ])
}

/// The WAL and block targets write the input as a file of a real data directory and
/// open it, as the server does at start.
const OTLP_TRACES_JSON: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"kv"}}]},"scopeSpans":[{"scope":{"name":"s"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","parentSpanId":"eee19b7ec3c1b173","name":"get","kind":"SPAN_KIND_SERVER","startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000","attributes":[{"key":"n","value":{"intValue":"42"}},{"key":"b","value":{"boolValue":true}}],"events":[{"timeUnixNano":"1544712660500000000","name":"retry","attributes":[]}],"status":{"code":2,"message":"boom"}}]}]}]}"#;

/// The trace receiver's decoders, Jaeger's query parameters, and the span store reading a
/// damaged segment file (then searched, as a query after a restart would).
fn trace_targets() -> Vec<Target> {
    let limits = lookout_traces::otlp::Limits::default();
    let json_seed = OTLP_TRACES_JSON.as_bytes().to_vec();
    let proto_seed = {
        use prost::Message;
        let d = lookout_traces::otlp::decode_json(&json_seed, &limits).map(|d| d.spans.len());
        assert_eq!(d.ok(), Some(1), "the OTLP/JSON seed decodes");
        // The same request as protobuf: built from the JSON through the store's model.
        lookout_traces::otlp::ExportTraceServiceRequest {
            resource_spans: vec![lookout_traces::otlp::ResourceSpans {
                resource: None,
                scope_spans: vec![lookout_traces::otlp::ScopeSpans {
                    scope: None,
                    spans: vec![lookout_traces::otlp::OtlpSpan {
                        trace_id: vec![7; 16],
                        span_id: vec![8; 8],
                        parent_span_id: vec![9; 8],
                        name: "get".into(),
                        kind: 2,
                        start_time_unix_nano: 1_544_712_660_000_000_000,
                        end_time_unix_nano: 1_544_712_661_000_000_000,
                        attributes: Vec::new(),
                        events: Vec::new(),
                        status: None,
                    }],
                }],
            }],
        }
        .encode_to_vec()
    };
    let (l1, l2) = (limits.clone(), limits.clone());
    // A store with one segment, whose file the input replaces.
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let base = std::env::temp_dir().join(format!("lookout-fuzz-spans-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let segment = {
        let st = lookout_traces::TraceStore::open(&base, Default::default()).ok();
        if let (Some(st), Ok(d)) = (st, lookout_traces::otlp::decode_json(&json_seed, &limits)) {
            let _ = st.append(d.spans);
        }
        std::fs::read(base.join("0000000000000001.spans")).unwrap_or_default()
    };
    let cleanup = RemoveOnDrop(base.clone());
    vec![
        Target {
            name: "otlp-traces-json",
            seeds: vec![json_seed],
            tokens: &[
                "\"traceId\":\"",
                "\"spans\":[",
                "{",
                "}",
                "\"intValue\":\"",
                "\"kind\":\"SPAN_KIND_",
                "\"",
                ",",
            ],
            run: Box::new(move |b| {
                let _ = lookout_traces::otlp::decode_json(b, &l1);
            }),
        },
        Target {
            name: "otlp-traces-protobuf",
            seeds: vec![proto_seed],
            tokens: &[],
            run: Box::new(move |b| {
                let _ = lookout_traces::otlp::decode_protobuf(b, &l2);
            }),
        },
        Target {
            name: "jaeger-query",
            seeds: seeds(&[
                "service=kv&operation=get&tags=%7B%22error%22%3A%22true%22%7D&minDuration=1.5ms&maxDuration=2s&lookback=1h&limit=20&tag=a:b&start=1&end=2",
            ]),
            tokens: &[
                "&", "=", "%7B", "%22", "ms", "h", "1e400", "-", "tag=", "limit=",
            ],
            run: Box::new(|b| {
                let pairs: Vec<(String, String)> =
                    serde_urlencoded::from_bytes(b).unwrap_or_default();
                let _ = lookout_traces::jaeger::parse_query(&pairs, 1_700_000_000_000_000_000);
            }),
        },
        Target {
            name: "span-segment",
            seeds: vec![segment],
            tokens: &[],
            run: Box::new(move |b| {
                let dir = cleanup.0.join("case");
                let _ = std::fs::remove_dir_all(&dir);
                if std::fs::create_dir_all(&dir).is_ok()
                    && std::fs::write(dir.join("0000000000000001.spans"), b).is_ok()
                    && let Ok(st) = lookout_traces::TraceStore::open(&dir, Default::default())
                {
                    for svc in st.services() {
                        let q = lookout_traces::Query {
                            service: svc,
                            end_ns: u64::MAX,
                            limit: 5,
                            tags: vec![("n".into(), "42".into())],
                            ..Default::default()
                        };
                        let _ = st.search(&q, 1000);
                    }
                }
            }),
        },
    ]
}

/// Remote write (1.0 and 2.0; the input is the uncompressed message, snappy-compressed
/// here so mutations reach the protobuf decoder), OTLP metrics (protobuf and JSON), and a
/// damaged remote-write queue segment read back.
fn remote_targets() -> Vec<Target> {
    use lookout_remote::{Limits, Series};
    let snappy = |b: &[u8]| {
        snap::raw::Encoder::new()
            .compress_vec(b)
            .unwrap_or_default()
    };
    let unsnappy = |b: Vec<u8>| {
        snap::raw::Decoder::new()
            .decompress_vec(&b)
            .unwrap_or_default()
    };
    let series = vec![Series {
        labels: Labels::from_pairs([("__name__", "lat_bucket"), ("le", "0.5")]),
        samples: vec![(1_700_000_000_000, 3.0), (1_700_000_015_000, 4.0)],
        exemplars: vec![lookout_model::Exemplar {
            labels: Labels::from_pairs([("trace_id", "4bf92f3577b34da6")]),
            value: 0.25,
            t: 1_700_000_000_100,
        }],
        created: 1_699_999_000_000,
    }];
    let v1_seed = unsnappy(lookout_remote::encode_write_request(&series));
    let v2_seed = unsnappy(lookout_remote::encode_v2_request(&series));
    let otlp_json = br#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"shop"}}]},"scopeMetrics":[{"metrics":[{"name":"orders","unit":"{orders}","sum":{"aggregationTemporality":2,"isMonotonic":true,"dataPoints":[{"startTimeUnixNano":"1699999000000000000","timeUnixNano":"1700000000000000000","asInt":"7"}]}},{"name":"lat","unit":"s","histogram":{"aggregationTemporality":2,"dataPoints":[{"timeUnixNano":"1700000000000000000","count":"3","sum":0.6,"bucketCounts":["1","2"],"explicitBounds":[0.1]}]}}]}]}]}"#.to_vec();
    let otlp_proto = {
        use lookout_remote::otlp::*;
        let point = NumberDataPoint {
            start_time_unix_nano: 1_699_999_000_000_000_000,
            time_unix_nano: 1_700_000_000_000_000_000,
            as_int: Some(7),
            ..Default::default()
        };
        prost::Message::encode_to_vec(&ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: None,
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "orders".into(),
                        sum: Some(Sum {
                            data_points: vec![point],
                            aggregation_temporality: 2,
                            is_monotonic: true,
                        }),
                        ..Default::default()
                    }],
                }],
            }],
        })
    };
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let base = std::env::temp_dir().join(format!("lookout-fuzz-queue-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let queue_seed = {
        let mut seed = Vec::new();
        if let Ok((mut w, _)) = lookout_remote::queue::open(&base.join("seed"), 1 << 20) {
            let extra = lookout_remote::queue::Extra {
                exemplars: vec![(series[0].labels.clone(), series[0].exemplars[0].clone())],
                created: vec![(series[0].labels.clone(), series[0].created)],
                // A histogram record too, so damaged ones are read as well.
                histograms: vec![(
                    series[0].labels.clone(),
                    1,
                    lookout_model::FloatHistogram::parse(
                        "{{schema:1 count:4 sum:2 z_bucket:1 z_bucket_w:0.001 buckets:[1 2]}}",
                    )
                    .expect("a valid histogram"),
                )],
            };
            let samples: Vec<(Labels, i64, f64)> = series[0]
                .samples
                .iter()
                .map(|&(t, v)| (series[0].labels.clone(), t, v))
                .collect();
            let _ = w.append(1, &samples, &extra, std::time::Duration::ZERO);
            let _ = w.sync();
            for seq in lookout_remote::queue::segments(&base.join("seed")).unwrap_or_default() {
                seed =
                    std::fs::read(base.join("seed").join(format!("{seq:020}"))).unwrap_or_default();
            }
        }
        seed
    };
    let cleanup = RemoveOnDrop(base);
    let limits = Limits::default();
    let l2 = limits.clone();
    vec![
        Target {
            name: "remote-write-1",
            seeds: vec![v1_seed],
            tokens: &[],
            run: Box::new(move |b| {
                let _ = lookout_remote::decode_write_request(&snappy(b), &limits);
            }),
        },
        Target {
            name: "remote-write-2",
            seeds: vec![v2_seed],
            tokens: &[],
            run: Box::new(move |b| {
                let _ = lookout_remote::decode_v2_request(&snappy(b), &l2);
            }),
        },
        Target {
            name: "otlp-metrics-json",
            seeds: vec![otlp_json],
            tokens: &[
                "\"timeUnixNano\":\"",
                "\"startTimeUnixNano\":\"",
                "{",
                "}",
                "[",
                "]",
                "\"",
                ",",
            ],
            run: Box::new(|b| {
                let _ = lookout_remote::otlp::json::decode(b, &Default::default());
            }),
        },
        Target {
            name: "otlp-metrics-protobuf",
            seeds: vec![otlp_proto],
            tokens: &[],
            run: Box::new(|b| {
                let _ = lookout_remote::otlp::decode_otlp_metrics(b, &Default::default());
            }),
        },
        Target {
            name: "remote-queue",
            seeds: vec![queue_seed],
            tokens: &[],
            run: Box::new(move |b| {
                let dir = cleanup.0.join("case");
                let _ = std::fs::remove_dir_all(&dir);
                if std::fs::create_dir_all(&dir).is_ok()
                    && std::fs::write(dir.join(format!("{:020}", 1)), b).is_ok()
                    && let Ok((_w, shared)) = lookout_remote::queue::open(&dir, 1 << 20)
                    && let Ok(mut r) = lookout_remote::queue::Reader::open(&dir, shared)
                {
                    let _ = r.count_pending();
                    while let Ok(Some(_)) = r.next_batch() {}
                }
            }),
        },
    ]
}

fn file_targets() -> Vec<Target> {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let base = std::env::temp_dir().join(format!("lookout-fuzz-{}-{n}", std::process::id()));
    let seed_dir = base.join("seed");
    let _ = std::fs::remove_dir_all(&base);
    // Removed when both targets are dropped.
    let cleanup = std::sync::Arc::new(RemoveOnDrop(base.clone()));
    let keep = std::sync::Arc::clone(&cleanup);
    let (wal, block) = make_seed_files(&seed_dir).unwrap_or_default();
    let wal_dir = base.join("wal-case");
    let block_dir = base.join("block-case");
    vec![
        Target {
            name: "wal-segment",
            seeds: wal,
            tokens: &[],
            run: Box::new(move |b| {
                let _ = &keep;
                open_with_file(&wal_dir, "wal/00000001", b)
            }),
        },
        Target {
            name: "block-files",
            seeds: block.clone(),
            tokens: &[],
            run: Box::new(move |b| {
                let _ = &cleanup;
                // The first byte picks the file: index, chunks or meta.json.
                let (which, rest) = b.split_first().unwrap_or((&0, &[]));
                let name = ["index", "chunks", "meta.json"][*which as usize % 3];
                let _ = std::fs::remove_dir_all(&block_dir);
                if copy_dir(&seed_dir.join("blocks-only"), &block_dir).is_ok()
                    && let Some(id) = first_block(&block_dir)
                {
                    let _ = std::fs::write(id.join(name), rest);
                    open_dir(&block_dir);
                }
            }),
        },
    ]
}

/// Removes a directory when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn open_dir(dir: &Path) {
    let opts = lookout_tsdb::Options {
        maintenance_interval: None,
        ..lookout_tsdb::Options::default()
    };
    if let Ok(db) = lookout_tsdb::Tsdb::open(dir, opts, &mut Default::default()) {
        use lookout_storage::Queryable;
        if let Ok(q) = db.querier(i64::MIN / 4, i64::MAX / 4) {
            let all =
                [
                    lookout_model::Matcher::new(lookout_model::MatchOp::Regex, "__name__", ".+")
                        .expect("valid"),
                ];
            let _ = q.select(&Default::default(), &all);
        }
        let _ = db.close();
    }
}

fn open_with_file(dir: &Path, rel: &str, bytes: &[u8]) {
    let _ = std::fs::remove_dir_all(dir);
    let path = dir.join(rel);
    if std::fs::create_dir_all(path.parent().expect("has a parent")).is_ok()
        && std::fs::write(&path, bytes).is_ok()
    {
        open_dir(dir);
    }
}

fn first_block(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir.join("blocks"))
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.join("meta.json").exists())
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dest = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &dest)?;
        } else {
            std::fs::copy(e.path(), dest)?;
        }
    }
    Ok(())
}

/// A real WAL segment and a real block (a directory holding only it), made with the tsdb.
fn make_seed_files(dir: &Path) -> std::io::Result<(Seeds, Seeds)> {
    let opts = lookout_tsdb::Options {
        maintenance_interval: None,
        ..lookout_tsdb::Options::default()
    };
    let live = dir.join("live");
    {
        let db = lookout_tsdb::Tsdb::open(&live, opts.clone(), &mut Default::default())
            .map_err(std::io::Error::other)?;
        let mut app = db.appender();
        for i in 0..50 {
            let l = Labels::from_pairs([("__name__", "m"), ("i", &*(i % 5).to_string())]);
            let _ = app.append(&l, i * 15_000, i as f64 / 4.0);
            if i % 10 == 0 {
                let e = lookout_model::Exemplar {
                    labels: Labels::from_pairs([("trace_id", "4bf92f3577b34da6")]),
                    value: 0.25,
                    t: i * 15_000,
                };
                let _ = app.append_exemplar(&l, &e);
            }
        }
        let _ = app.commit();
        db.close().map_err(std::io::Error::other)?;
    }
    let mut wal = Vec::new();
    for e in std::fs::read_dir(live.join("wal"))? {
        let p = e?.path();
        if p.is_file() {
            let b = std::fs::read(&p)?;
            if b.len() > 8 {
                wal.push(b);
            }
        }
    }
    let blocks_only = dir.join("blocks-only");
    copy_dir(&live, &blocks_only)?;
    {
        let db = lookout_tsdb::Tsdb::open(&blocks_only, opts, &mut Default::default())
            .map_err(std::io::Error::other)?;
        db.flush_head().map_err(std::io::Error::other)?;
        db.close().map_err(std::io::Error::other)?;
    }
    let _ = std::fs::remove_dir_all(blocks_only.join("wal"));
    let mut block = Vec::new();
    if let Some(b) = first_block(&blocks_only) {
        for (i, f) in ["index", "chunks", "meta.json"].iter().enumerate() {
            let mut v = vec![i as u8];
            v.extend(std::fs::read(b.join(f))?);
            block.push(v);
        }
    }
    Ok((wal, block))
}

/// Fuzzes `t` for `budget` (time) or `max_execs`, whichever ends first; crashing inputs
/// go to `out` when given.
pub(crate) fn fuzz_target(
    t: &Target,
    budget: Duration,
    max_execs: u64,
    seed: u64,
    out: Option<&Path>,
) -> Report {
    let mut rng = Rng(seed | 1);
    let mut r = Report {
        name: t.name,
        ..Report::default()
    };
    if t.seeds.is_empty() {
        return r;
    }
    let started = Instant::now();
    while r.execs < max_execs && started.elapsed() < budget {
        let base = &t.seeds[rng.below(t.seeds.len())];
        let other = &t.seeds[rng.below(t.seeds.len())];
        let input = if r.execs < t.seeds.len() as u64 {
            t.seeds[r.execs as usize].clone()
        } else {
            mutate(&mut rng, base, t.tokens, other)
        };
        if let Ok(p) = std::env::var("LOOKOUT_FUZZ_TRACE") {
            let _ = std::fs::write(p, &input);
        }
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (t.run)(&input)));
        r.execs += 1;
        if let Err(p) = res {
            r.crashes += 1;
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into());
            if r.first.is_none() {
                r.first = Some(msg);
            }
            if let Some(dir) = out {
                let _ = std::fs::create_dir_all(dir);
                let _ = std::fs::write(dir.join(format!("{}-{}", t.name, r.crashes)), &input);
            }
        }
    }
    r
}

/// `lookout-bench fuzz`: every target (or those whose name contains `only`) for
/// `seconds` each, printing executions and crashes; fails when anything crashed.
pub(crate) fn run(
    seconds: u64,
    seed: u64,
    only: Option<String>,
    out: PathBuf,
) -> anyhow::Result<()> {
    let dir = out.clone();
    let handle = std::thread::Builder::new()
        .stack_size(16 << 20)
        .spawn(move || {
            let out = dir;
            // Crashes are counted and saved, not printed one by one.
            std::panic::set_hook(Box::new(|_| {}));
            let mut reports = Vec::new();
            for t in targets() {
                if only.as_deref().is_some_and(|o| !t.name.contains(o)) {
                    continue;
                }
                let r = fuzz_target(&t, Duration::from_secs(seconds), u64::MAX, seed, Some(&out));
                eprintln!(
                    "{:<20} {:>10} execs {:>9.0}/s  {} crashes{}",
                    r.name,
                    r.execs,
                    r.execs as f64 / seconds.max(1) as f64,
                    r.crashes,
                    r.first
                        .as_deref()
                        .map(|m| format!(" (first: {m})"))
                        .unwrap_or_default()
                );
                reports.push(r);
            }
            let _ = std::panic::take_hook();
            reports
        })?;
    let reports = handle
        .join()
        .map_err(|_| anyhow::anyhow!("the fuzzer itself failed"))?;
    let execs: u64 = reports.iter().map(|r| r.execs).sum();
    let crashes: u64 = reports.iter().map(|r| r.crashes).sum();
    println!(
        "fuzz: {execs} executions over {} targets, {crashes} crashes (seed {seed})",
        reports.len()
    );
    anyhow::ensure!(
        crashes == 0,
        "{crashes} crashing inputs written to {}",
        out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12: every parser survives a few hundred mutated inputs per CI run (the long
    /// run is `lookout-bench fuzz`).
    #[test]
    fn no_parser_panics_on_mutated_input() {
        let handle = std::thread::Builder::new()
            .stack_size(16 << 20)
            .spawn(|| {
                let mut failures = Vec::new();
                for t in targets() {
                    assert!(!t.seeds.is_empty(), "{} has no seeds", t.name);
                    let r = fuzz_target(&t, Duration::from_secs(20), 300, 0x5eed, None);
                    assert!(r.execs > 0);
                    if r.crashes > 0 {
                        failures.push(format!(
                            "{}: {} crashes, first: {:?}",
                            r.name, r.crashes, r.first
                        ));
                    }
                }
                failures
            })
            .unwrap();
        let failures = handle.join().unwrap();
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn mutations_are_reproducible() {
        let (mut a, mut b) = (Rng(7), Rng(7));
        let x = mutate(&mut a, b"up{job=\"x\"}", &["("], b"sum(x)");
        let y = mutate(&mut b, b"up{job=\"x\"}", &["("], b"sum(x)");
        assert_eq!(x, y);
    }
}
