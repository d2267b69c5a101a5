//! Remote read, as a client: Prometheus's `remote_read:` entries merged into every
//! query. [`Merged`] is a [`Queryable`] over the local store and the remotes: a select
//! asks each remote whose `required_matchers` the selection carries (and, without
//! `read_recent`, only for the part of the range older than the local store's oldest
//! sample), and merges what comes back with the local series (same labels: one series,
//! the local sample winning a shared timestamp). As in Prometheus, a remote that fails
//! costs only its own part: the query answers from the rest, the failure is logged and
//! counted; label names and values come from the local store.
//!
//! Requests carry the `SAMPLES` response type (snappy `prometheus.ReadRequest`), with
//! the external labels as equality matchers, removed again from the answers
//! (`filter_external_labels`, default true).

use std::sync::Arc;
use std::time::Duration;

use lookout_model::{Labels, MatchOp, Matcher, Sample};
use lookout_storage::{Querier, Queryable, SelectHints, Series};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::read::{LabelMatcher, Query, ReadRequest, ReadResponse};
use crate::{Limits, decompress};

/// One `remote_read` entry.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Its name (metrics, logs).
    pub name: String,
    /// The endpoint.
    pub url: String,
    /// Per request.
    pub timeout: Duration,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// TLS, authentication, proxy.
    pub http: lookout_http::HttpConfig,
    /// Also ask for ranges the local store holds.
    pub read_recent: bool,
    /// Equality matchers a selection must carry for this remote to be asked.
    pub required_matchers: Vec<(String, String)>,
    /// Ask with the external labels as matchers and remove them from the answers.
    pub filter_external_labels: bool,
}

/// Why a remote cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A client that cannot be built.
    #[error("remote_read {name}: {source}")]
    Http {
        /// The remote.
        name: String,
        /// Why.
        #[source]
        source: lookout_http::Error,
    },
}

struct Remote {
    opts: ReadOptions,
    client: reqwest::Client,
    failures: Counter,
}

/// The local store with the remotes merged into every selection.
pub struct Merged {
    local: Arc<dyn Queryable>,
    remotes: Vec<Arc<Remote>>,
    external: Vec<(String, String)>,
    local_start: Arc<dyn Fn() -> Option<i64> + Send + Sync>,
    runtime: tokio::runtime::Handle,
    limits: Limits,
}

impl std::fmt::Debug for Merged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.remotes.iter().map(|r| r.opts.name.as_str()).collect();
        f.debug_struct("Merged").field("remotes", &names).finish()
    }
}

impl Merged {
    /// `local` with `remotes` merged in; `local_start` gives the local store's oldest
    /// sample time. Requests run on `runtime` (the caller's thread waits for them).
    pub fn new(
        local: Arc<dyn Queryable>,
        remotes: Vec<ReadOptions>,
        external_labels: Vec<(String, String)>,
        local_start: Arc<dyn Fn() -> Option<i64> + Send + Sync>,
        runtime: tokio::runtime::Handle,
        registry: &mut Registry,
    ) -> Result<Self, ReadError> {
        let failures: Family<Vec<(String, String)>, Counter> = Family::default();
        registry.register(
            "lookout_remote_read_failures",
            "Remote reads that failed (the query answered without that remote)",
            failures.clone(),
        );
        let remotes = remotes
            .into_iter()
            .map(|o| {
                let client = lookout_http::client(&o.http).map_err(|source| ReadError::Http {
                    name: o.name.clone(),
                    source,
                })?;
                let failures = failures
                    .get_or_create(&vec![("remote_name".into(), o.name.clone())])
                    .clone();
                Ok(Arc::new(Remote {
                    opts: o,
                    client,
                    failures,
                }))
            })
            .collect::<Result<_, ReadError>>()?;
        Ok(Self {
            local,
            remotes,
            external: external_labels,
            local_start,
            runtime,
            limits: Limits {
                max_decompressed: 256 << 20,
            },
        })
    }
}

impl Merged {
    /// The largest answer a remote may send (compressed and decompressed; 256 MiB by
    /// default).
    pub fn with_max_answer(mut self, bytes: usize) -> Self {
        self.limits.max_decompressed = bytes;
        self
    }
}

impl Queryable for Merged {
    fn querier(&self, mint: i64, maxt: i64) -> lookout_storage::Result<Box<dyn Querier + '_>> {
        Ok(Box::new(MergedQuerier {
            local: self.local.querier(mint, maxt)?,
            m: self,
            mint,
            maxt,
        }))
    }
}

struct MergedQuerier<'a> {
    local: Box<dyn Querier + 'a>,
    m: &'a Merged,
    mint: i64,
    maxt: i64,
}

fn wire_matcher(m: &Matcher) -> LabelMatcher {
    LabelMatcher {
        r#type: match m.op {
            MatchOp::Equal => 0,
            MatchOp::NotEqual => 1,
            MatchOp::Regex => 2,
            MatchOp::NotRegex => 3,
        },
        name: m.name.clone(),
        value: m.value.clone(),
    }
}

impl MergedQuerier<'_> {
    /// The range to ask `r` for, if it is to be asked at all.
    fn range_for(
        &self,
        r: &Remote,
        hints: &SelectHints,
        matchers: &[Matcher],
    ) -> Option<(i64, i64)> {
        let carried = |(n, v): &(String, String)| {
            matchers
                .iter()
                .any(|m| m.op == MatchOp::Equal && &m.name == n && &m.value == v)
        };
        if !r.opts.required_matchers.iter().all(carried) {
            return None;
        }
        let (mut lo, mut hi) = if hints.start == 0 && hints.end == 0 {
            (self.mint, self.maxt)
        } else {
            (hints.start.max(self.mint), hints.end.min(self.maxt))
        };
        if !r.opts.read_recent {
            // Only what is older than the local store's oldest sample.
            if let Some(start) = (self.m.local_start)() {
                hi = hi.min(start - 1);
            }
        }
        lo = lo.max(i64::MIN / 2);
        (lo <= hi).then_some((lo, hi))
    }

    fn read(
        &self,
        r: &Remote,
        lo: i64,
        hi: i64,
        matchers: &[Matcher],
    ) -> Result<Vec<Series>, String> {
        let mut wire: Vec<LabelMatcher> = matchers.iter().map(wire_matcher).collect();
        let filter = r.opts.filter_external_labels && !self.m.external.is_empty();
        if filter {
            for (n, v) in &self.m.external {
                wire.push(LabelMatcher {
                    r#type: 0,
                    name: n.clone(),
                    value: v.clone(),
                });
            }
        }
        let req = ReadRequest {
            queries: vec![Query {
                start_timestamp_ms: lo,
                end_timestamp_ms: hi,
                matchers: wire,
            }],
            accepted_response_types: vec![0],
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&prost::Message::encode_to_vec(&req))
            .expect("snappy compresses any input");
        let mut http = r
            .client
            .post(&r.opts.url)
            .timeout(r.opts.timeout)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Read-Version", "0.1.0")
            .body(body);
        for (k, v) in &r.opts.headers {
            http = http.header(k, v);
        }
        let http = lookout_http::authorize(http, &r.opts.http).map_err(|e| e.to_string())?;
        let max = self.m.limits.max_decompressed;
        let fut = async move {
            let mut resp = http.send().await.map_err(|e| e.to_string())?;
            let status = resp.status();
            // Read at most `max` bytes: a peer sending more is refused, not buffered.
            let too_large = || format!("answer larger than {max} bytes");
            if resp.content_length().is_some_and(|n| n > max as u64) {
                return Err(too_large());
            }
            let mut bytes = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
                if bytes.len() + chunk.len() > max {
                    return Err(too_large());
                }
                bytes.extend_from_slice(&chunk);
            }
            if !status.is_success() {
                let text: String = String::from_utf8_lossy(&bytes).chars().take(300).collect();
                return Err(format!("{status}: {}", text.trim()));
            }
            Ok(bytes)
        };
        let handle = self.m.runtime.clone();
        let bytes = tokio::task::block_in_place(|| handle.block_on(fut))?;
        let raw = decompress(&bytes, &self.m.limits).map_err(|e| e.to_string())?;
        let resp = <ReadResponse as prost::Message>::decode(raw.as_slice())
            .map_err(|e| format!("invalid protobuf: {e}"))?;
        let mut out = Vec::new();
        for result in resp.results {
            for ts in result.timeseries {
                let s = crate::series_of(&ts.labels, &ts.samples).map_err(|e| e.to_string())?;
                let labels = if filter {
                    let names: Vec<&str> =
                        self.m.external.iter().map(|(n, _)| n.as_str()).collect();
                    s.labels.without(&names)
                } else {
                    s.labels
                };
                out.push(Series {
                    labels,
                    samples: s
                        .samples
                        .into_iter()
                        .filter(|(t, _)| *t >= lo && *t <= hi)
                        .map(|(t, v)| Sample::new(t, v))
                        .collect(),
                });
            }
        }
        Ok(out)
    }

    fn remote_series(&self, hints: &SelectHints, matchers: &[Matcher]) -> Vec<Series> {
        let mut out = Vec::new();
        if matchers.is_empty() {
            return out;
        }
        for r in &self.m.remotes {
            let Some((lo, hi)) = self.range_for(r, hints, matchers) else {
                continue;
            };
            match self.read(r, lo, hi, matchers) {
                Ok(s) => out.extend(s),
                Err(e) => {
                    r.failures.inc();
                    tracing::warn!(remote = %r.opts.name, url = %r.opts.url, error = %e, "Remote read failed; answering without it");
                }
            }
        }
        out
    }
}

/// Merges `extra` into `base` (sorted by labels): same labels become one series, the
/// samples of `base` winning a shared timestamp.
fn merge(base: Vec<Series>, extra: Vec<Series>) -> Vec<Series> {
    if extra.is_empty() {
        return base;
    }
    let mut by: std::collections::BTreeMap<Labels, Vec<Sample>> = std::collections::BTreeMap::new();
    for s in extra {
        by.entry(s.labels).or_default().extend(s.samples);
    }
    for s in base {
        let e = by.entry(s.labels).or_default();
        // Local samples first so they win in the dedup below (stable sort keeps order).
        let mut mine = s.samples;
        mine.append(e);
        *e = mine;
    }
    by.into_iter()
        .map(|(labels, mut samples)| {
            samples.sort_by_key(|s| s.t);
            samples.dedup_by_key(|s| s.t);
            Series { labels, samples }
        })
        .filter(|s| !s.samples.is_empty())
        .collect()
}

impl Querier for MergedQuerier<'_> {
    fn select(
        &self,
        hints: &SelectHints,
        matchers: &[Matcher],
    ) -> lookout_storage::Result<Vec<Series>> {
        let local = self.local.select(hints, matchers)?;
        let mut remote = self.remote_series(hints, matchers);
        if let Some(g) = &hints.grid {
            for s in &mut remote {
                s.samples = g.thin(&s.samples);
            }
        }
        Ok(merge(local, remote))
    }

    /// Native histograms are Lookout's own: remote read's `SAMPLES` answer carries none.
    fn select_histograms(
        &self,
        hints: &SelectHints,
        matchers: &[Matcher],
    ) -> lookout_storage::Result<Vec<lookout_storage::HistogramSeries>> {
        self.local.select_histograms(hints, matchers)
    }

    /// Exemplars are Lookout's own: remote read carries none.
    fn select_exemplars(
        &self,
        matchers: &[Matcher],
    ) -> lookout_storage::Result<Vec<lookout_storage::ExemplarSeries>> {
        self.local.select_exemplars(matchers)
    }

    fn series_labels(&self, matchers: &[Matcher]) -> lookout_storage::Result<Vec<Labels>> {
        let mut out = self.local.series_labels(matchers)?;
        out.extend(
            self.remote_series(&SelectHints::default(), matchers)
                .into_iter()
                .filter(|s| !s.samples.is_empty())
                .map(|s| s.labels),
        );
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn label_names(&self, matchers: &[Matcher]) -> lookout_storage::Result<Vec<String>> {
        self.local.label_names(matchers)
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
    ) -> lookout_storage::Result<Vec<String>> {
        self.local.label_values(name, matchers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str, pts: &[(i64, f64)]) -> Series {
        Series {
            labels: Labels::from_pairs([("__name__", name)]),
            samples: pts.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
        }
    }

    #[test]
    fn merging_keeps_one_series_per_label_set_and_local_wins() {
        let local = vec![s("a", &[(2, 1.0), (3, 1.0)]), s("c", &[(1, 1.0)])];
        let remote = vec![s("a", &[(1, 9.0), (2, 9.0)]), s("b", &[(5, 5.0)])];
        let got = merge(local, remote);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], s("a", &[(1, 9.0), (2, 1.0), (3, 1.0)]));
        assert_eq!(got[1], s("b", &[(5, 5.0)]));
        assert_eq!(got[2], s("c", &[(1, 1.0)]));
    }
}
