//! The chunk codec: how a run of one series' samples is stored, in memory and on disk.
//!
//! Written by hand because it is the storage engine's core: every byte here is multiplied
//! by every sample kept.
//!
//! Timestamps use delta-of-delta with Prometheus-style buckets. Values start from
//! Gorilla XOR (as Prometheus's chunks do) and go further when a chunk is sealed: if every
//! value is a decimal number with at most nine fractional digits (counters in seconds or
//! bytes, gauges scraped as `12.34`), the chunk stores the integers `v × 10^k` instead,
//! as first differences or second differences, whichever is smaller, either in a
//! bit-packed stream that reuses the previous bit width or, when the differences stay in
//! a band (a counter's increments, a gauge's steps), as their offsets from the smallest
//! in one fixed width (frame of reference: no per-value prefix, no sign bit), divided by
//! their common factor (memory in pages of 4096 bytes). Sealing
//! tries every encoding and keeps the smallest; a value only uses the decimal form if it decodes back bit for bit, so NaN,
//! ±Inf, staleness markers and -0 fall back to XOR.
//!
//! Timestamps are sealed the same way: delta-of-delta buckets, or (when smaller, as for
//! scrapes with a few milliseconds of jitter) the deltas in a frame.
//!
//! Timestamps and values are separate streams, so the timestamps of series scraped
//! together are byte-identical and compress away in block files.
//!
//! # Sealed chunk format (version 1 of the block format)
//!
//! ```text
//! u8      encoding: 1 = XOR, 2 = decimal deltas, 3 = decimal delta-of-deltas,
//!         4 = decimal deltas in a frame, 5 = decimal delta-of-deltas in a frame;
//!         plus 128 when the timestamps are in a frame
//! varint  sample count
//! varint  length in bytes of the timestamp stream
//! bytes   timestamp stream: t0 as 64 bits; then each delta-of-delta (the first against 0):
//!         '0' for 0, '10'+14 bits, '110'+17 bits, '1110'+20 bits, '1111'+64 bits
//!         (two's complement); in a frame, the timestamps as the decimal frame below
//!         stores integers (first differences)
//! u8      k, the decimal exponent (encodings 2 and 3 only)
//! bytes   value stream, to the end:
//!         XOR: v0 as 64 bits; then per value '0' if equal to the previous, else '1' and
//!              either '0' + the meaningful bits in the previous window, or '1' + 5 bits
//!              leading zeros + 6 bits length (0 means 64) + the meaningful bits
//!         decimal: the first integer as 7 bits width + that many bits (zigzag); then per
//!              difference (zigzag): '0' for 0, '10' + previous width bits, or '11' +
//!              6 bits (width − 1) + width bits
//!         decimal in a frame: the first integer as above; the smallest difference the
//!              same way; the excesses' greatest common divisor g as 7 bits width +
//!              that many bits (unsigned; 0 for none); 7 bits width; then per
//!              difference its excess over the smallest, divided by g, in that many bits
//! ```
//!
//! Varints are unsigned LEB128. Streams are most-significant-bit first, zero padded.

use lookout_model::Sample;

use crate::bits::{BitReader, BitWriter};

/// Most samples one chunk holds.
pub(crate) const MAX_SAMPLES: usize = 240;

const ENC_XOR: u8 = 1;
const ENC_DEC_DELTA: u8 = 2;
const ENC_DEC_DOD: u8 = 3;
const ENC_FRAME_DELTA: u8 = 4;
const ENC_FRAME_DOD: u8 = 5;
/// Added to the encoding when the timestamps are in a frame.
const TS_FRAME: u8 = 0x80;

/// A chunk's bytes do not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt chunk: {0}")]
pub struct CorruptChunk(pub &'static str);

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn get_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let b = *buf.get(*pos)?;
        *pos += 1;
        if shift >= 64 {
            return None;
        }
        v |= ((b & 0x7f) as u64) << shift;
        if b < 0x80 {
            return Some(v);
        }
        shift += 7;
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

fn width(z: u64) -> u32 {
    64 - z.leading_zeros()
}

fn sign_extend(v: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

fn fits(d: i64, bits: u32) -> bool {
    let lim = 1i64 << (bits - 1);
    (-lim..lim).contains(&d)
}

/// Streaming timestamp encoder.
#[derive(Debug, Clone, Default)]
pub(crate) struct TsEncoder {
    w: BitWriter,
    n: usize,
    prev_t: i64,
    prev_delta: i64,
}

impl TsEncoder {
    fn write_dod(&mut self, d: i64) {
        let w = &mut self.w;
        if d == 0 {
            w.bit(false);
        } else if fits(d, 14) {
            w.write(0b10, 2);
            w.write(d as u64, 14);
        } else if fits(d, 17) {
            w.write(0b110, 3);
            w.write(d as u64, 17);
        } else if fits(d, 20) {
            w.write(0b1110, 4);
            w.write(d as u64, 20);
        } else {
            w.write(0b1111, 4);
            w.write(d as u64, 64);
        }
    }

    pub(crate) fn push(&mut self, t: i64) {
        if self.n == 0 {
            self.w.write(t as u64, 64);
        } else {
            let delta = t.wrapping_sub(self.prev_t);
            self.write_dod(delta.wrapping_sub(self.prev_delta));
            self.prev_delta = delta;
        }
        self.prev_t = t;
        self.n += 1;
    }
}

fn decode_ts(buf: &[u8], n: usize, out: &mut Vec<i64>) -> Result<(), CorruptChunk> {
    let e = CorruptChunk("timestamp stream ends early");
    let mut r = BitReader::new(buf);
    let (mut t, mut delta) = (0i64, 0i64);
    for i in 0..n {
        if i == 0 {
            t = r.read(64).ok_or(e.clone())? as i64;
        } else {
            let dod = if !r.bit().ok_or(e.clone())? {
                0
            } else if !r.bit().ok_or(e.clone())? {
                sign_extend(r.read(14).ok_or(e.clone())?, 14)
            } else if !r.bit().ok_or(e.clone())? {
                sign_extend(r.read(17).ok_or(e.clone())?, 17)
            } else if !r.bit().ok_or(e.clone())? {
                sign_extend(r.read(20).ok_or(e.clone())?, 20)
            } else {
                r.read(64).ok_or(e.clone())? as i64
            };
            delta = delta.wrapping_add(dod);
            t = t.wrapping_add(delta);
        }
        out.push(t);
    }
    Ok(())
}

/// Streaming Gorilla XOR value encoder.
#[derive(Debug, Clone, Default)]
pub(crate) struct XorEncoder {
    w: BitWriter,
    n: usize,
    prev: u64,
    leading: u32,
    trailing: u32,
}

impl XorEncoder {
    pub(crate) fn push(&mut self, v: f64) {
        let bits = v.to_bits();
        if self.n == 0 {
            self.w.write(bits, 64);
        } else {
            let x = bits ^ self.prev;
            if x == 0 {
                self.w.bit(false);
            } else {
                self.w.bit(true);
                let lead = x.leading_zeros().min(31);
                let trail = x.trailing_zeros();
                if self.n > 1
                    && self.leading != u32::MAX
                    && lead >= self.leading
                    && trail >= self.trailing
                {
                    self.w.bit(false);
                    let sig = 64 - self.leading - self.trailing;
                    self.w.write(x >> self.trailing, sig);
                } else {
                    self.w.bit(true);
                    let sig = 64 - lead - trail;
                    self.w.write(lead as u64, 5);
                    self.w.write((sig & 63) as u64, 6);
                    self.w.write(x >> trail, sig);
                    self.leading = lead;
                    self.trailing = trail;
                }
            }
        }
        self.prev = bits;
        self.n += 1;
    }
}

fn decode_xor(buf: &[u8], n: usize, out: &mut Vec<f64>) -> Result<(), CorruptChunk> {
    let e = CorruptChunk("value stream ends early");
    let mut r = BitReader::new(buf);
    let (mut prev, mut leading, mut trailing) = (0u64, 0u32, 0u32);
    for i in 0..n {
        if i == 0 {
            prev = r.read(64).ok_or(e.clone())?;
        } else if r.bit().ok_or(e.clone())? {
            if r.bit().ok_or(e.clone())? {
                leading = r.read(5).ok_or(e.clone())? as u32;
                let mut sig = r.read(6).ok_or(e.clone())? as u32;
                if sig == 0 {
                    sig = 64;
                }
                if leading + sig > 64 {
                    return Err(CorruptChunk("XOR window out of range"));
                }
                trailing = 64 - leading - sig;
            }
            let sig = 64 - leading - trailing;
            let x = r.read(sig).ok_or(e.clone())?;
            prev ^= if sig == 64 { x } else { x << trailing };
        }
        out.push(f64::from_bits(prev));
    }
    Ok(())
}

fn encode_ints(vals: &[i64], second_order: bool) -> Vec<u8> {
    let mut w = BitWriter::new();
    write_wide(&mut w, vals[0]);
    let mut pw = 0u32;
    for x in differences(vals, second_order) {
        let z = zigzag(x);
        if z == 0 {
            w.bit(false);
            continue;
        }
        let zw = width(z);
        if pw > 0 && zw <= pw {
            w.write(0b10, 2);
            w.write(z, pw);
        } else {
            w.write(0b11, 2);
            w.write((zw - 1) as u64, 6);
            w.write(z, zw);
            pw = zw;
        }
    }
    w.finish()
}

/// The first or second differences of `vals` (the first against 0), as the decimal
/// encodings take them.
fn differences(vals: &[i64], second_order: bool) -> Vec<i64> {
    let (mut prev, mut prev_d) = (vals[0], 0i64);
    vals[1..]
        .iter()
        .map(|&v| {
            let d = v.wrapping_sub(prev);
            let x = if second_order {
                d.wrapping_sub(prev_d)
            } else {
                d
            };
            prev = v;
            prev_d = d;
            x
        })
        .collect()
}

/// The greatest common divisor (0 with 0 is 0).
fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Rebuilds integers from their first or second differences, as [`differences`] made
/// them.
struct Integrator {
    prev: i64,
    prev_d: i64,
    second_order: bool,
}

impl Integrator {
    fn new(first: i64, second_order: bool) -> Self {
        Self {
            prev: first,
            prev_d: 0,
            second_order,
        }
    }

    /// The next integer, from its difference `x`.
    fn next(&mut self, x: i64) -> i64 {
        let d = if self.second_order {
            self.prev_d.wrapping_add(x)
        } else {
            x
        };
        self.prev = self.prev.wrapping_add(d);
        self.prev_d = d;
        self.prev
    }
}

/// Writes `v` zigzagged as 7 bits of width and that many bits.
fn write_wide(w: &mut BitWriter, v: i64) {
    let z = zigzag(v);
    let zw = width(z);
    w.write(zw as u64, 7);
    w.write(z, zw);
}

/// Reads what [`write_wide`] wrote.
fn read_wide(r: &mut BitReader<'_>) -> Result<i64, CorruptChunk> {
    let e = CorruptChunk("integer stream ends early");
    let zw = r.read(7).ok_or(e.clone())? as u32;
    if zw > 64 {
        return Err(CorruptChunk("integer width out of range"));
    }
    Ok(unzigzag(r.read(zw).ok_or(e)?))
}

/// The frame-of-reference form: the first integer, the smallest difference, one width,
/// then every difference's excess over the smallest.
fn encode_frame(vals: &[i64], second_order: bool) -> Vec<u8> {
    let mut w = BitWriter::new();
    write_wide(&mut w, vals[0]);
    let xs = differences(vals, second_order);
    let base = xs.iter().copied().min().unwrap_or(0);
    let excess = |x: i64| x.wrapping_sub(base) as u64;
    let g = xs.iter().fold(0u64, |g, &x| gcd(g, excess(x)));
    let top = xs.iter().map(|&x| excess(x)).max().unwrap_or(0) / g.max(1);
    let fw = width(top);
    write_wide(&mut w, base);
    w.write(width(g) as u64, 7);
    w.write(g, width(g));
    w.write(fw as u64, 7);
    for x in xs {
        w.write(excess(x) / g.max(1), fw);
    }
    w.finish()
}

fn decode_frame(
    buf: &[u8],
    n: usize,
    second_order: bool,
    out: &mut Vec<i64>,
) -> Result<(), CorruptChunk> {
    let e = CorruptChunk("integer stream ends early");
    let mut r = BitReader::new(buf);
    let first = read_wide(&mut r)?;
    out.push(first);
    let mut ints = Integrator::new(first, second_order);
    let base = read_wide(&mut r)?;
    let gw = r.read(7).ok_or(e.clone())? as u32;
    if gw > 64 {
        return Err(CorruptChunk("frame factor out of range"));
    }
    let g = r.read(gw).ok_or(e.clone())?.max(1);
    let fw = r.read(7).ok_or(e.clone())? as u32;
    if fw > 64 {
        return Err(CorruptChunk("frame width out of range"));
    }
    for _ in 1..n {
        let o = r.read(fw).ok_or(e.clone())?.wrapping_mul(g);
        out.push(ints.next(base.wrapping_add(o as i64)));
    }
    Ok(())
}

fn decode_ints(
    buf: &[u8],
    n: usize,
    second_order: bool,
    out: &mut Vec<i64>,
) -> Result<(), CorruptChunk> {
    let e = CorruptChunk("integer stream ends early");
    let mut r = BitReader::new(buf);
    let first = read_wide(&mut r)?;
    out.push(first);
    let mut ints = Integrator::new(first, second_order);
    let mut pw = 0u32;
    for _ in 1..n {
        let z = if !r.bit().ok_or(e.clone())? {
            0
        } else if !r.bit().ok_or(e.clone())? {
            if pw == 0 {
                return Err(CorruptChunk("width reused before it was set"));
            }
            r.read(pw).ok_or(e.clone())?
        } else {
            pw = r.read(6).ok_or(e.clone())? as u32 + 1;
            r.read(pw).ok_or(e.clone())?
        };
        out.push(ints.next(unzigzag(z)));
    }
    Ok(())
}

const POW10: [f64; 10] = [1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];

/// The smallest k ≤ 9 such that every value is exactly `i / 10^k` for an integer i.
fn decimal_exponent(vals: &[f64]) -> Option<(u8, Vec<i64>)> {
    'k: for (k, p) in POW10.iter().enumerate() {
        let mut ints = Vec::with_capacity(vals.len());
        for &v in vals {
            if !v.is_finite() || (v == 0.0 && v.is_sign_negative()) {
                return None;
            }
            let scaled = (v * p).round();
            if scaled.abs() >= 9.007_199_254_740_992e15 {
                continue 'k;
            }
            let i = scaled as i64;
            if ((i as f64) / p).to_bits() != v.to_bits() {
                continue 'k;
            }
            ints.push(i);
        }
        return Some((k as u8, ints));
    }
    None
}

/// Encodes samples (ascending, unique timestamps, at most 65535) into the smallest sealed form.
pub(crate) fn encode(samples: &[Sample]) -> Vec<u8> {
    assert!(!samples.is_empty() && samples.len() <= u16::MAX as usize);
    let mut ts = TsEncoder::default();
    for s in samples {
        ts.push(s.t);
    }
    let ts = ts.w.finish();
    let times: Vec<i64> = samples.iter().map(|s| s.t).collect();
    let framed = encode_frame(&times, false);
    let (ts_flag, ts) = if framed.len() < ts.len() {
        (TS_FRAME, framed)
    } else {
        (0, ts)
    };
    let vals: Vec<f64> = samples.iter().map(|s| s.v).collect();
    let mut xor = XorEncoder::default();
    for &v in &vals {
        xor.push(v);
    }
    let mut best: (u8, Option<u8>, Vec<u8>) = (ENC_XOR, None, xor.w.finish());
    if let Some((k, ints)) = decimal_exponent(&vals) {
        for (enc, second, frame) in [
            (ENC_DEC_DELTA, false, false),
            (ENC_DEC_DOD, true, false),
            (ENC_FRAME_DELTA, false, true),
            (ENC_FRAME_DOD, true, true),
        ] {
            let b = if frame {
                encode_frame(&ints, second)
            } else {
                encode_ints(&ints, second)
            };
            if b.len() + 1 < best.2.len() + best.1.map_or(0, |_| 1) {
                best = (enc, Some(k), b);
            }
        }
    }
    let mut out = Vec::with_capacity(ts.len() + best.2.len() + 8);
    out.push(best.0 | ts_flag);
    put_varint(&mut out, samples.len() as u64);
    put_varint(&mut out, ts.len() as u64);
    out.extend_from_slice(&ts);
    if let Some(k) = best.1 {
        out.push(k);
    }
    out.extend_from_slice(&best.2);
    out
}

/// Number of samples in an encoded chunk, without decoding it.
pub(crate) fn count(buf: &[u8]) -> Result<usize, CorruptChunk> {
    let mut pos = 1;
    get_varint(buf, &mut pos)
        .map(|n| n as usize)
        .ok_or(CorruptChunk("truncated header"))
}

/// Decodes an encoded chunk, appending its samples to `out`.
pub(crate) fn decode(buf: &[u8], out: &mut Vec<Sample>) -> Result<(), CorruptChunk> {
    let first = *buf.first().ok_or(CorruptChunk("empty"))?;
    let (enc, ts_framed) = (first & !TS_FRAME, first & TS_FRAME != 0);
    let mut pos = 1;
    let n = get_varint(buf, &mut pos).ok_or(CorruptChunk("truncated header"))? as usize;
    let ts_len = get_varint(buf, &mut pos).ok_or(CorruptChunk("truncated header"))? as usize;
    if n > u16::MAX as usize {
        return Err(CorruptChunk("sample count out of range"));
    }
    let ts_buf = buf
        .get(pos..pos + ts_len)
        .ok_or(CorruptChunk("truncated timestamps"))?;
    pos += ts_len;
    let mut ts = Vec::with_capacity(n);
    if ts_framed {
        if n == 0 {
            return Err(CorruptChunk("empty chunk"));
        }
        decode_frame(ts_buf, n, false, &mut ts)?;
    } else {
        decode_ts(ts_buf, n, &mut ts)?;
    }
    let mut vals = Vec::with_capacity(n);
    match enc {
        ENC_XOR => decode_xor(&buf[pos..], n, &mut vals)?,
        ENC_DEC_DELTA | ENC_DEC_DOD => {
            let k = *buf.get(pos).ok_or(CorruptChunk("missing exponent"))? as usize;
            let p = *POW10.get(k).ok_or(CorruptChunk("exponent out of range"))?;
            let mut ints = Vec::with_capacity(n);
            decode_ints(&buf[pos + 1..], n, enc == ENC_DEC_DOD, &mut ints)?;
            vals.extend(ints.into_iter().map(|i| (i as f64) / p));
        }
        ENC_FRAME_DELTA | ENC_FRAME_DOD => {
            let k = *buf.get(pos).ok_or(CorruptChunk("missing exponent"))? as usize;
            let p = *POW10.get(k).ok_or(CorruptChunk("exponent out of range"))?;
            let mut ints = Vec::with_capacity(n);
            decode_frame(&buf[pos + 1..], n, enc == ENC_FRAME_DOD, &mut ints)?;
            vals.extend(ints.into_iter().map(|i| (i as f64) / p));
        }
        _ => return Err(CorruptChunk("unknown encoding")),
    }
    out.extend(ts.into_iter().zip(vals).map(|(t, v)| Sample::new(t, v)));
    Ok(())
}

/// The chunk a series is appending to: streaming XOR, sealed into the smallest form when full.
#[derive(Debug, Clone, Default)]
pub(crate) struct OpenChunk {
    ts: TsEncoder,
    vs: XorEncoder,
    /// First and last timestamps.
    pub(crate) min_t: i64,
    pub(crate) max_t: i64,
}

impl OpenChunk {
    pub(crate) fn len(&self) -> usize {
        self.ts.n
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ts.n == 0
    }

    pub(crate) fn push(&mut self, t: i64, v: f64) {
        if self.ts.n == 0 {
            self.min_t = t;
        }
        self.max_t = t;
        self.ts.push(t);
        self.vs.push(v);
    }

    /// Appends the chunk's samples to `out`.
    pub(crate) fn samples(&self, out: &mut Vec<Sample>) {
        let n = self.ts.n;
        let mut ts = Vec::with_capacity(n);
        let mut vs = Vec::with_capacity(n);
        decode_ts(&self.ts.w.snapshot(), n, &mut ts).expect("own stream decodes");
        decode_xor(&self.vs.w.snapshot(), n, &mut vs).expect("own stream decodes");
        out.extend(ts.into_iter().zip(vs).map(|(t, v)| Sample::new(t, v)));
    }

    /// Encodes the samples in the smallest sealed form.
    pub(crate) fn seal(&self) -> Vec<u8> {
        let mut s = Vec::with_capacity(self.len());
        self.samples(&mut s);
        encode(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(samples: &[Sample]) -> Vec<Sample> {
        let mut out = Vec::new();
        decode(&encode(samples), &mut out).unwrap();
        out
    }

    fn bits_equal(a: &[Sample], b: &[Sample]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.t == y.t && x.v.to_bits() == y.v.to_bits())
    }

    fn special() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0),
            Just(0.0),
            Just(lookout_model::stale_nan()),
            (-1_000_000i64..1_000_000).prop_map(|i| i as f64 / 100.0),
            (0i64..1000).prop_map(|i| i as f64),
        ]
    }

    proptest! {
        #[test]
        fn any_samples_round_trip_bit_exactly(
            start in any::<i64>().prop_map(|t| t / 4),
            steps in prop::collection::vec(prop_oneof![1i64..100_000, Just(15_000i64), 1i64..i64::MAX / 1024], 1..300),
            values in prop::collection::vec(special(), 300),
        ) {
            let mut t = start;
            let samples: Vec<Sample> = steps.iter().zip(&values).map(|(d, v)| { t = t.saturating_add(*d); Sample::new(t, *v) }).collect();
            let mut dedup = samples.clone();
            dedup.dedup_by_key(|s| s.t);
            prop_assert!(bits_equal(&dedup, &round_trip(&dedup)));
            // The open (streaming) chunk returns the same, and seals to the same.
            let mut open = OpenChunk::default();
            for s in &dedup { open.push(s.t, s.v); }
            let mut got = Vec::new();
            open.samples(&mut got);
            prop_assert!(bits_equal(&dedup, &got));
            let mut sealed = Vec::new();
            decode(&open.seal(), &mut sealed).unwrap();
            prop_assert!(bits_equal(&dedup, &sealed));
        }
    }

    #[test]
    fn decimal_values_use_the_integer_form_and_are_small() {
        let mut v = 1000.0f64;
        let samples: Vec<Sample> = (0..240)
            .map(|i| {
                v += ((i * 37 % 11) as f64) / 100.0;
                Sample::new(1_700_000_000_000 + i * 15_000, (v * 100.0).round() / 100.0)
            })
            .collect();
        let enc = encode(&samples);
        assert!(
            matches!(
                enc[0] & !TS_FRAME,
                ENC_DEC_DELTA | ENC_DEC_DOD | ENC_FRAME_DELTA | ENC_FRAME_DOD
            ),
            "encoding {}",
            enc[0]
        );
        let mut xor = XorEncoder::default();
        for s in &samples {
            xor.push(s.v);
        }
        assert!(
            enc.len() * 2 < xor.w.finish().len() + 60,
            "decimal {} bytes",
            enc.len()
        );
        assert!(bits_equal(&samples, &round_trip(&samples)));
    }

    #[test]
    fn increments_in_a_band_are_stored_as_offsets_in_one_width() {
        // A byte counter growing by 500..1500 a scrape: offsets from the smallest take
        // 10 bits, where zigzagged differences with their prefixes take 14.
        let mut v = 1e9;
        let mut x = 7u64;
        let samples: Vec<Sample> = (0..240)
            .map(|i| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                v += 500.0 + ((x >> 33) % 1000) as f64;
                Sample::new(1_700_000_000_000 + i * 15_000, v)
            })
            .collect();
        let enc = encode(&samples);
        assert_eq!(enc[0] & !TS_FRAME, ENC_FRAME_DELTA);
        let ints: Vec<i64> = samples.iter().map(|s| s.v as i64).collect();
        assert!(encode_frame(&ints, false).len() * 13 < encode_ints(&ints, false).len() * 10);
        assert!(bits_equal(&samples, &round_trip(&samples)));
        // Extremes wrap around and come back.
        for vals in [
            vec![i64::MIN, i64::MAX, 0, -1],
            vec![5],
            vec![3, 3, 3],
            vec![0, 4096, 12288, 8192, 1 << 40],
        ] {
            for second in [false, true] {
                let mut got = Vec::new();
                decode_frame(&encode_frame(&vals, second), vals.len(), second, &mut got).unwrap();
                assert_eq!(got, vals);
            }
        }
    }

    #[test]
    fn jittered_timestamps_are_stored_as_deltas_in_a_frame() {
        // 15 s scrapes a few milliseconds late: each delta in 5 bits, where the
        // delta-of-delta buckets take 16.
        let samples: Vec<Sample> = (0..240)
            .map(|i| Sample::new(1_700_000_000_000 + i * 15_000 + (i * 7 % 10), 1.0))
            .collect();
        let enc = encode(&samples);
        assert_eq!(enc[0] & TS_FRAME, TS_FRAME);
        assert!(enc.len() < 240 * 5 / 8 + 40, "{} bytes", enc.len());
        assert!(bits_equal(&samples, &round_trip(&samples)));
        // Exactly regular ones cost nothing per sample.
        let regular: Vec<Sample> = (0..240)
            .map(|i| Sample::new(1_700_000_000_000 + i * 15_000, 1.0))
            .collect();
        assert!(encode(&regular).len() < 40);
        assert!(bits_equal(&regular, &round_trip(&regular)));
    }

    #[test]
    fn corrupt_bytes_are_an_error_not_a_panic() {
        let samples: Vec<Sample> = (0..50)
            .map(|i| Sample::new(i * 1000, i as f64 * 1.5))
            .collect();
        let enc = encode(&samples);
        for cut in 0..enc.len() {
            let mut out = Vec::new();
            let _ = decode(&enc[..cut], &mut out);
        }
        let mut bad = enc.clone();
        bad[0] = 9;
        assert!(decode(&bad, &mut Vec::new()).is_err());
    }
}
