//! The native-histogram chunk codec: how a run of one series' histogram samples is stored,
//! in memory, in the WAL and in blocks.
//!
//! Written by hand, like the float codec (`chunk`), because it is the storage engine's
//! core. A native histogram is a dozen to a few hundred numbers; from one scrape to the
//! next its bucket layout rarely changes and its counts grow by small integers. So each
//! sample stores its layout (schema, zero threshold, the bucket indices on each side)
//! only when it differs from the previous sample's, and its counts, when they are all
//! whole numbers, as zigzag varints of their difference from the previous sample's count
//! in the same bucket; otherwise (float histograms with fractional counts, NaN, huge
//! values) each count as the XOR of its bits with the previous one's. The sum is a float
//! and is always XORed, which keeps staleness markers (a NaN sum) bit for bit.
//!
//! # Format
//!
//! ```text
//! u8      encoding: 16 = native histograms
//! varint  sample count
//! per sample:
//!   varint  timestamp: t0 zigzag; then the zigzag delta-of-delta (the first against 0)
//!   u8      flags: 1 = a layout follows, 2 = counts are zigzag varint differences
//!           (else varints of XORed bits), bits 2–3 the counter-reset hint (0 unknown,
//!           1 reset, 2 not reset, 3 gauge)
//!   layout  varint zigzag schema; u64 LE zero threshold bits; positive then negative
//!           indices: varint n, then the first index zigzag and n − 1 varint gaps − 1;
//!           for schema −53 (custom buckets) varint n and n u64 LE bound bits
//!   values  count, zero count, each positive bucket, each negative bucket (as flags
//!           say), then the sum: varint of its bits XOR the previous sum's
//! ```
//!
//! "Previous" values are the previous sample's at the same place; after a layout change,
//! and for the first sample, they are zero. Varints are unsigned LEB128.

use std::collections::BTreeMap;
use std::sync::Arc;

use lookout_model::{CounterResetHint, FloatHistogram};
use lookout_storage::HistogramSample;

use crate::chunk::{CorruptChunk, get_varint, put_varint};

/// The first byte of a histogram chunk (float chunks use 1–5, plus 128).
pub(crate) const ENC_HISTOGRAM: u8 = 16;

/// Most samples one histogram chunk holds (a histogram is many numbers: chunks are cut
/// sooner than float ones).
pub(crate) const MAX_SAMPLES: usize = 120;

/// Most buckets (over all its samples) a chunk is cut at, so a chunk of wide histograms
/// stays around a megabyte.
pub(crate) const MAX_CHUNK_BUCKETS: usize = 1 << 17;

/// Buckets of a histogram, both sides.
pub(crate) fn buckets(h: &FloatHistogram) -> usize {
    h.positive.len() + h.negative.len()
}

/// `samples` in runs that one chunk each takes: at most [`MAX_SAMPLES`] samples and
/// [`MAX_CHUNK_BUCKETS`] buckets (a run has at least one sample).
pub(crate) fn cut(samples: &[HistogramSample]) -> impl Iterator<Item = &[HistogramSample]> {
    let mut rest = samples;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut n = 0;
        let mut total = 0;
        while n < rest.len() && n < MAX_SAMPLES {
            total += buckets(&rest[n].h);
            if n > 0 && total > MAX_CHUNK_BUCKETS {
                break;
            }
            n += 1;
        }
        let (run, tail) = rest.split_at(n);
        rest = tail;
        Some(run)
    })
}

/// Most buckets a stored histogram may have on one side (Prometheus's own limit is
/// configurable; 2^16 per side is far past any real schema's span).
pub(crate) const MAX_BUCKETS: usize = 1 << 16;

const F_LAYOUT: u8 = 1;
const F_INTEGRAL: u8 = 2;

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Whether `v` is a whole number that an `i64` holds exactly (and not −0).
fn integral(v: f64) -> bool {
    v.fract() == 0.0 && v.abs() < 9.0e15 && v.to_bits() != (-0.0f64).to_bits()
}

fn hint_bits(h: CounterResetHint) -> u8 {
    match h {
        CounterResetHint::Unknown => 0,
        CounterResetHint::Reset => 1,
        CounterResetHint::NotReset => 2,
        CounterResetHint::Gauge => 3,
    }
}

fn hint_of(bits: u8) -> CounterResetHint {
    match bits & 3 {
        1 => CounterResetHint::Reset,
        2 => CounterResetHint::NotReset,
        3 => CounterResetHint::Gauge,
        _ => CounterResetHint::Unknown,
    }
}

/// A histogram's layout: what a sample repeats only when it changes.
#[derive(Debug, Clone, PartialEq, Default)]
struct Layout {
    schema: i32,
    zero_threshold_bits: u64,
    positive: Vec<i32>,
    negative: Vec<i32>,
    /// Custom bucket bounds (schema −53), as bits.
    custom: Vec<u64>,
}

impl Layout {
    fn of(h: &FloatHistogram) -> Self {
        Layout {
            schema: h.schema,
            zero_threshold_bits: h.zero_threshold.to_bits(),
            positive: h.positive.keys().copied().collect(),
            negative: h.negative.keys().copied().collect(),
            custom: h.custom_values.iter().map(|v| v.to_bits()).collect(),
        }
    }

    /// Numbers a sample of this layout carries besides the sum.
    fn values(&self) -> usize {
        2 + self.positive.len() + self.negative.len()
    }
}

/// The count, the zero count and the buckets (positive, then negative), in layout order.
fn values_of(h: &FloatHistogram) -> Vec<f64> {
    let mut v = Vec::with_capacity(2 + h.positive.len() + h.negative.len());
    v.push(h.count);
    v.push(h.zero_count);
    v.extend(h.positive.values());
    v.extend(h.negative.values());
    v
}

fn put_indices(out: &mut Vec<u8>, idx: &[i32]) {
    put_varint(out, idx.len() as u64);
    let mut prev = None;
    for &i in idx {
        match prev {
            None => put_varint(out, zigzag(i64::from(i))),
            // Indices are ascending and distinct: the gap is at least 1.
            Some(p) => put_varint(out, (i64::from(i) - i64::from(p) - 1) as u64),
        }
        prev = Some(i);
    }
}

fn get_indices(buf: &[u8], pos: &mut usize) -> Result<Vec<i32>, CorruptChunk> {
    let bad = CorruptChunk("histogram bucket indices");
    let n = get_varint(buf, pos).ok_or(bad.clone())? as usize;
    if n > MAX_BUCKETS || n > buf.len() - *pos {
        return Err(bad);
    }
    let mut out = Vec::with_capacity(n);
    let mut cur: i64 = 0;
    for k in 0..n {
        let v = get_varint(buf, pos).ok_or(bad.clone())?;
        cur = if k == 0 {
            unzigzag(v)
        } else {
            cur.checked_add(i64::try_from(v).map_err(|_| bad.clone())?)
                .and_then(|c| c.checked_add(1))
                .ok_or(bad.clone())?
        };
        out.push(i32::try_from(cur).map_err(|_| bad.clone())?);
    }
    Ok(out)
}

/// Encodes `samples` (ascending by time, at most [`MAX_SAMPLES`] is usual but not
/// required) as one chunk.
pub(crate) fn encode(samples: &[HistogramSample]) -> Vec<u8> {
    let mut e = Encoder::default();
    for s in samples {
        e.push(s);
    }
    e.finish()
}

/// A chunk being written a sample at a time (the head's open histogram chunk): the
/// samples' bytes and what the next sample is encoded against. [`Encoder::finish`]
/// gives the chunk; the encoder stays usable.
#[derive(Debug, Default, Clone)]
pub(crate) struct Encoder {
    body: Vec<u8>,
    n: usize,
    /// Buckets of the samples so far (for cutting: [`MAX_CHUNK_BUCKETS`]).
    buckets: usize,
    prev_t: i64,
    prev_delta: i64,
    layout: Option<Layout>,
    prev: Vec<f64>,
    prev_sum: u64,
}

impl Encoder {
    /// Appends a sample newer than the last.
    pub(crate) fn push(&mut self, s: &HistogramSample) {
        let out = &mut self.body;
        if self.n == 0 {
            put_varint(out, zigzag(s.t));
        } else {
            let delta = s.t.wrapping_sub(self.prev_t);
            put_varint(out, zigzag(delta.wrapping_sub(self.prev_delta)));
            self.prev_delta = delta;
        }
        self.prev_t = s.t;
        let h = &*s.h;
        let this = Layout::of(h);
        let new_layout = self.layout.as_ref() != Some(&this);
        let values = values_of(h);
        if new_layout {
            self.prev = vec![0.0; values.len()];
        }
        let whole = values.iter().chain(&self.prev).all(|v| integral(*v));
        let mut flags = hint_bits(h.hint) << 2;
        if new_layout {
            flags |= F_LAYOUT;
        }
        if whole {
            flags |= F_INTEGRAL;
        }
        out.push(flags);
        if new_layout {
            put_varint(out, zigzag(i64::from(this.schema)));
            out.extend_from_slice(&this.zero_threshold_bits.to_le_bytes());
            put_indices(out, &this.positive);
            put_indices(out, &this.negative);
            if this.schema == lookout_model::histogram::CUSTOM_BUCKETS_SCHEMA {
                put_varint(out, this.custom.len() as u64);
                for b in &this.custom {
                    out.extend_from_slice(&b.to_le_bytes());
                }
            }
            self.layout = Some(this);
        }
        for (v, p) in values.iter().zip(&self.prev) {
            if whole {
                put_varint(out, zigzag((*v as i64).wrapping_sub(*p as i64)));
            } else {
                put_varint(out, v.to_bits() ^ p.to_bits());
            }
        }
        put_varint(out, h.sum.to_bits() ^ self.prev_sum);
        self.prev_sum = h.sum.to_bits();
        self.prev = values;
        self.n += 1;
        self.buckets += buckets(h);
    }

    /// Samples written.
    pub(crate) fn len(&self) -> usize {
        self.n
    }

    /// Buckets of the samples written.
    pub(crate) fn buckets(&self) -> usize {
        self.buckets
    }

    /// The chunk of the samples written so far.
    pub(crate) fn finish(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 6);
        out.push(ENC_HISTOGRAM);
        put_varint(&mut out, self.n as u64);
        out.extend_from_slice(&self.body);
        out
    }

    /// Heap bytes held.
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.body.capacity() + 8 * self.prev.capacity()
    }
}

/// Samples in a chunk, from its header.
pub(crate) fn count(buf: &[u8]) -> Result<usize, CorruptChunk> {
    if buf.first() != Some(&ENC_HISTOGRAM) {
        return Err(CorruptChunk("not a histogram chunk"));
    }
    let mut pos = 1;
    get_varint(buf, &mut pos)
        .map(|n| n as usize)
        .ok_or(CorruptChunk("histogram chunk count"))
}

/// Decodes a chunk, appending its samples to `out`.
pub(crate) fn decode(buf: &[u8], out: &mut Vec<HistogramSample>) -> Result<(), CorruptChunk> {
    let n = count(buf)?;
    let mut pos = 1;
    let _ = get_varint(buf, &mut pos);
    // Every sample takes at least three bytes: a bound on what a damaged count claims.
    if n > buf.len() {
        return Err(CorruptChunk("histogram chunk count past its length"));
    }
    let bad = |what| CorruptChunk(what);
    let mut t = 0i64;
    let mut delta = 0i64;
    let mut layout: Option<Layout> = None;
    let mut prev: Vec<f64> = Vec::new();
    let mut prev_sum = 0u64;
    out.reserve(n);
    for k in 0..n {
        let v = get_varint(buf, &mut pos).ok_or(bad("histogram timestamp"))?;
        if k == 0 {
            t = unzigzag(v);
        } else {
            delta = delta.wrapping_add(unzigzag(v));
            t = t.wrapping_add(delta);
        }
        let flags = *buf.get(pos).ok_or(bad("histogram flags"))?;
        pos += 1;
        if flags & F_LAYOUT != 0 {
            let schema = get_varint(buf, &mut pos).ok_or(bad("histogram schema"))?;
            let schema = i32::try_from(unzigzag(schema)).map_err(|_| bad("histogram schema"))?;
            let zt = buf
                .get(pos..pos + 8)
                .ok_or(bad("histogram zero threshold"))?;
            let zero_threshold_bits = u64::from_le_bytes(zt.try_into().unwrap_or_default());
            pos += 8;
            let positive = get_indices(buf, &mut pos)?;
            let negative = get_indices(buf, &mut pos)?;
            let mut custom = Vec::new();
            if schema == lookout_model::histogram::CUSTOM_BUCKETS_SCHEMA {
                let n = get_varint(buf, &mut pos).ok_or(bad("histogram custom bounds"))? as usize;
                if n > MAX_BUCKETS || n.saturating_mul(8) > buf.len() - pos {
                    return Err(bad("histogram custom bounds"));
                }
                for _ in 0..n {
                    let b = buf
                        .get(pos..pos + 8)
                        .ok_or(bad("histogram custom bounds"))?;
                    custom.push(u64::from_le_bytes(b.try_into().unwrap_or_default()));
                    pos += 8;
                }
            }
            let l = Layout {
                schema,
                zero_threshold_bits,
                positive,
                negative,
                custom,
            };
            prev = vec![0.0; l.values()];
            layout = Some(l);
        }
        let l = layout
            .as_ref()
            .ok_or(bad("histogram sample without a layout"))?;
        let mut values = Vec::with_capacity(prev.len());
        for p in &prev {
            let v = get_varint(buf, &mut pos).ok_or(bad("histogram count"))?;
            values.push(if flags & F_INTEGRAL != 0 {
                (*p as i64).wrapping_add(unzigzag(v)) as f64
            } else {
                f64::from_bits(v ^ p.to_bits())
            });
        }
        let sum = get_varint(buf, &mut pos).ok_or(bad("histogram sum"))? ^ prev_sum;
        prev_sum = sum;
        let np = l.positive.len();
        let h = FloatHistogram {
            schema: l.schema,
            zero_threshold: f64::from_bits(l.zero_threshold_bits),
            count: values[0],
            zero_count: values[1],
            sum: f64::from_bits(sum),
            positive: l
                .positive
                .iter()
                .copied()
                .zip(values[2..2 + np].iter().copied())
                .collect::<BTreeMap<_, _>>(),
            negative: l
                .negative
                .iter()
                .copied()
                .zip(values[2 + np..].iter().copied())
                .collect::<BTreeMap<_, _>>(),
            hint: hint_of(flags >> 2),
            custom_values: l.custom.iter().map(|b| f64::from_bits(*b)).collect(),
        };
        prev = values;
        out.push(HistogramSample { t, h: Arc::new(h) });
    }
    if pos != buf.len() {
        return Err(bad("histogram chunk has bytes past its samples"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(text: &str) -> Arc<FloatHistogram> {
        Arc::new(FloatHistogram::parse(text).unwrap())
    }

    type Bits = (
        i32,
        [u64; 4],
        Vec<(i32, u64)>,
        Vec<(i32, u64)>,
        CounterResetHint,
        Vec<u64>,
    );

    /// Every field as bits, so NaN equals the same NaN.
    fn bits(h: &FloatHistogram) -> Bits {
        let side = |m: &BTreeMap<i32, f64>| m.iter().map(|(i, v)| (*i, v.to_bits())).collect();
        (
            h.schema,
            [h.zero_threshold, h.zero_count, h.count, h.sum].map(f64::to_bits),
            side(&h.positive),
            side(&h.negative),
            h.hint,
            h.custom_values.iter().map(|v| v.to_bits()).collect(),
        )
    }

    fn round_trip(samples: &[HistogramSample]) -> Vec<u8> {
        let buf = encode(samples);
        let mut got = Vec::new();
        decode(&buf, &mut got).unwrap();
        assert_eq!(got.len(), samples.len());
        for (a, b) in got.iter().zip(samples) {
            assert_eq!(a.t, b.t);
            assert_eq!(bits(&a.h), bits(&b.h), "at {}", a.t);
        }
        assert_eq!(count(&buf).unwrap(), samples.len());
        buf
    }

    #[test]
    fn integer_histograms_growing_by_scrape_cost_a_few_bytes_each() {
        let mut samples = Vec::new();
        for i in 0..120i64 {
            let n = i as f64;
            samples.push(HistogramSample {
                t: 1_700_000_000_000 + i * 15_000 + (i % 3),
                h: h(&format!(
                    "{{{{schema:3 count:{} sum:{} z_bucket:{} z_bucket_w:0.001 offset:-2 buckets:[{} {} 0 {}] n_offset:1 n_buckets:[{}] counter_reset_hint:not_reset}}}}",
                    7.0 * n + 1.0,
                    0.37 * n,
                    n,
                    2.0 * n,
                    n + 1.0,
                    3.0 * n,
                    0.0
                )),
            });
        }
        let buf = round_trip(&samples);
        // A layout once, then per sample a timestamp, flags, 6 small differences and a
        // XORed sum: far under the 8 bytes per number a plain encoding takes.
        assert!(buf.len() < 120 * 20, "{} bytes", buf.len());
    }

    #[test]
    fn layout_changes_floats_resets_and_staleness_survive() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let mut st = FloatHistogram::parse("{{count:0 sum:0}}").unwrap();
        st.sum = stale;
        let samples = vec![
            HistogramSample {
                t: -5,
                h: h("{{schema:0 count:3.5 sum:1.25 buckets:[1.5 2]}}"),
            },
            HistogramSample {
                t: 10,
                h: h("{{schema:0 count:4.5 sum:2.5 buckets:[2.5 2]}}"),
            },
            HistogramSample {
                t: 20,
                h: h(
                    "{{schema:1 count:1 sum:0.5 offset:-70000 buckets:[1] counter_reset_hint:reset}}",
                ),
            },
            HistogramSample {
                t: 21,
                h: Arc::new(st),
            },
            HistogramSample {
                t: 40,
                h: h(
                    "{{schema:-4 count:NaN sum:Inf z_bucket:1e300 z_bucket_w:1e-300 buckets:[-0 1e300]}}",
                ),
            },
            HistogramSample {
                t: 41,
                h: h(
                    "{{schema:8 count:2 sum:-3 n_offset:5 n_buckets:[1 0 1] counter_reset_hint:gauge}}",
                ),
            },
            // Custom buckets, then other bounds: a new layout each.
            HistogramSample {
                t: 50,
                h: h("{{schema:-53 count:3 sum:2 custom_values:[0.1 0.5 2] buckets:[1 0 2 0]}}"),
            },
            HistogramSample {
                t: 51,
                h: h("{{schema:-53 count:4 sum:3 custom_values:[0.1 0.5 2] buckets:[1 1 2 0]}}"),
            },
            HistogramSample {
                t: 52,
                h: h("{{schema:-53 count:1 sum:1 custom_values:[-1 1] buckets:[0 1]}}"),
            },
        ];
        round_trip(&samples);
        round_trip(&[]);
    }

    #[test]
    fn damaged_chunks_are_errors_not_panics_or_huge_allocations() {
        let samples: Vec<HistogramSample> = (0..30)
            .map(|i| HistogramSample {
                t: i * 1000,
                h: h(&if i % 3 == 0 {
                    // Custom buckets between exponential ones: bounds in the layout.
                    format!("{{{{schema:-53 count:{i} sum:1 custom_values:[0.25 {i}.5] buckets:[{i} 1]}}}}")
                } else {
                    format!("{{{{schema:2 count:{i} sum:{i}.5 buckets:[{i} 1]}}}}")
                }),
            })
            .collect();
        let buf = encode(&samples);
        // Every truncation and every single-byte change either decodes or is an error.
        for cut in 0..buf.len() {
            let mut out = Vec::new();
            assert!(decode(&buf[..cut], &mut out).is_err(), "cut at {cut}");
        }
        for i in 0..buf.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut b = buf.clone();
                b[i] ^= flip;
                let mut out = Vec::new();
                let _ = decode(&b, &mut out);
            }
        }
        // A count of 2^60 samples, or of buckets, is refused before anything is reserved.
        let mut huge = vec![ENC_HISTOGRAM];
        put_varint(&mut huge, 1 << 60);
        assert!(decode(&huge, &mut Vec::new()).is_err());
        let mut many = vec![ENC_HISTOGRAM, 1, 0, F_LAYOUT, 0];
        many.extend_from_slice(&0u64.to_le_bytes());
        put_varint(&mut many, 1 << 40);
        assert!(decode(&many, &mut Vec::new()).is_err());
        // So is a claim of 2^40 custom bounds.
        let mut bounds = vec![ENC_HISTOGRAM, 1, 0, F_LAYOUT];
        put_varint(&mut bounds, zigzag(-53));
        bounds.extend_from_slice(&0u64.to_le_bytes());
        put_varint(&mut bounds, 0);
        put_varint(&mut bounds, 0);
        put_varint(&mut bounds, 1 << 40);
        assert!(decode(&bounds, &mut Vec::new()).is_err());
        assert!(decode(&[1, 0], &mut Vec::new()).is_err(), "a float chunk");
    }
}
