//! Prometheus's XOR chunk encoding (`chunkenc.XORChunk`), bit for bit, for remote read's
//! streamed responses: a big-endian 16-bit sample count, then the first timestamp as a
//! signed varint and its value as 64 raw bits, the second timestamp's delta as an
//! unsigned varint and its value XORed, then delta-of-delta timestamps in 1, 2+14, 3+17,
//! 4+20 or 4+64 bits and Gorilla XOR values (a 5-bit leading-zero count, capped at 31,
//! and a 6-bit significant-bit count where 64 is written as 0). Hand-written because it
//! is a wire format with no crate that writes it; the tests compare it with the chunks
//! Debian's Prometheus writes itself.

/// Most samples Prometheus puts in one chunk.
pub const SAMPLES_PER_CHUNK: usize = 120;

/// Prometheus's `bstream`, with its exact byte layout: `free` bits are unused in the last
/// byte, and a whole byte written while aligned leaves an empty byte after it (so a
/// chunk can end in a zero byte exactly when Prometheus's does).
struct Bits {
    bytes: Vec<u8>,
    free: u8,
}

impl Bits {
    fn bit(&mut self, one: bool) {
        if self.free == 0 {
            self.bytes.push(0);
            self.free = 8;
        }
        if one {
            *self.bytes.last_mut().expect("pushed") |= 1 << (self.free - 1);
        }
        self.free -= 1;
    }

    fn byte(&mut self, b: u8) {
        if self.free == 0 {
            self.bytes.push(0);
            self.free = 8;
        }
        let free = u32::from(self.free);
        *self.bytes.last_mut().expect("pushed") |= b.checked_shr(8 - free).unwrap_or(0);
        self.bytes.push(b.checked_shl(free).unwrap_or(0));
    }

    /// The low `n` bits of `v`, most significant first: whole bytes, then bits.
    fn bits(&mut self, v: u64, n: u8) {
        if n == 0 {
            return;
        }
        let mut u = v << (64 - u32::from(n));
        let mut n = n;
        while n >= 8 {
            self.byte((u >> 56) as u8);
            u <<= 8;
            n -= 8;
        }
        while n > 0 {
            self.bit(u >> 63 == 1);
            u <<= 1;
            n -= 1;
        }
    }
}

fn uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn bit_range(x: i64, n: u8) -> bool {
    -((1i64 << (n - 1)) - 1) <= x && x <= 1i64 << (n - 1)
}

/// Encodes up to 65,535 samples (ascending timestamps) as one XOR chunk.
pub fn encode(samples: &[(i64, f64)]) -> Vec<u8> {
    let mut b = Bits {
        bytes: vec![0, 0],
        free: 0,
    };
    let (mut t_prev, mut v_prev, mut delta_prev) = (0i64, 0f64, 0u64);
    let (mut leading, mut trailing) = (0xffu8, 0u8);
    let n = samples.len().min(u16::MAX as usize);
    for (i, &(t, v)) in samples[..n].iter().enumerate() {
        match i {
            0 => {
                let mut buf = Vec::new();
                uvarint(&mut buf, ((t << 1) ^ (t >> 63)) as u64);
                for x in buf {
                    b.byte(x);
                }
                b.bits(v.to_bits(), 64);
            }
            1 => {
                delta_prev = t.wrapping_sub(t_prev) as u64;
                let mut buf = Vec::new();
                uvarint(&mut buf, delta_prev);
                for x in buf {
                    b.byte(x);
                }
                xor_value(&mut b, v, v_prev, &mut leading, &mut trailing);
            }
            _ => {
                let delta = t.wrapping_sub(t_prev) as u64;
                let dod = delta.wrapping_sub(delta_prev) as i64;
                if dod == 0 {
                    b.bit(false);
                } else if bit_range(dod, 14) {
                    b.bits(0b10, 2);
                    b.bits(dod as u64, 14);
                } else if bit_range(dod, 17) {
                    b.bits(0b110, 3);
                    b.bits(dod as u64, 17);
                } else if bit_range(dod, 20) {
                    b.bits(0b1110, 4);
                    b.bits(dod as u64, 20);
                } else {
                    b.bits(0b1111, 4);
                    b.bits(dod as u64, 64);
                }
                delta_prev = delta;
                xor_value(&mut b, v, v_prev, &mut leading, &mut trailing);
            }
        }
        t_prev = t;
        v_prev = v;
    }
    b.bytes[..2].copy_from_slice(&(n as u16).to_be_bytes());
    b.bytes
}

fn xor_value(b: &mut Bits, v: f64, prev: f64, leading: &mut u8, trailing: &mut u8) {
    let delta = v.to_bits() ^ prev.to_bits();
    if delta == 0 {
        b.bit(false);
        return;
    }
    b.bit(true);
    let new_leading = (delta.leading_zeros() as u8).min(31);
    let new_trailing = delta.trailing_zeros() as u8;
    if *leading != 0xff && new_leading >= *leading && new_trailing >= *trailing {
        b.bit(false);
        b.bits(delta >> *trailing, 64 - *leading - *trailing);
        return;
    }
    *leading = new_leading;
    *trailing = new_trailing;
    b.bit(true);
    b.bits(u64::from(new_leading), 5);
    let sig = 64 - new_leading - new_trailing;
    b.bits(u64::from(sig), 6);
    b.bits(delta >> new_trailing, sig);
}

/// Decodes a chunk [`encode`] wrote (or Prometheus did); `None` when it is damaged.
pub fn decode(data: &[u8]) -> Option<Vec<(i64, f64)>> {
    let n = u16::from_be_bytes(data.get(..2)?.try_into().ok()?) as usize;
    let mut r = Reader { data, pos: 16 };
    let mut out = Vec::with_capacity(n);
    let (mut t, mut v, mut delta) = (0i64, 0f64, 0i64);
    let (mut leading, mut trailing) = (0u8, 0u8);
    for i in 0..n {
        match i {
            0 => {
                let z = r.uvarint()?;
                t = ((z >> 1) as i64) ^ -((z & 1) as i64);
                v = f64::from_bits(r.bits(64)?);
            }
            1 => {
                delta = r.uvarint()? as i64;
                t = t.wrapping_add(delta);
                v = r.value(v, &mut leading, &mut trailing)?;
            }
            _ => {
                let mut prefix = 0;
                while prefix < 4 && r.bit()? {
                    prefix += 1;
                }
                let width = [0, 14, 17, 20, 64][prefix];
                let dod = if width == 0 {
                    0
                } else {
                    let raw = r.bits(width)?;
                    // Positive values go up to 2^(width-1) inclusive, as bitRange allows.
                    if width < 64 && raw > 1u64 << (width - 1) {
                        (raw as i64) - (1i64 << width)
                    } else {
                        raw as i64
                    }
                };
                delta = delta.wrapping_add(dod);
                t = t.wrapping_add(delta);
                v = r.value(v, &mut leading, &mut trailing)?;
            }
        }
        out.push((t, v));
    }
    Some(out)
}

struct Reader<'a> {
    data: &'a [u8],
    /// Bit position.
    pos: usize,
}

impl Reader<'_> {
    fn bit(&mut self) -> Option<bool> {
        let byte = *self.data.get(self.pos / 8)?;
        let b = (byte >> (7 - self.pos % 8)) & 1 == 1;
        self.pos += 1;
        Some(b)
    }

    fn bits(&mut self, n: u8) -> Option<u64> {
        let mut v = 0u64;
        for _ in 0..n {
            v = (v << 1) | u64::from(self.bit()?);
        }
        Some(v)
    }

    fn uvarint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.bits(8)?;
            v |= (b & 0x7f) << shift;
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }

    fn value(&mut self, prev: f64, leading: &mut u8, trailing: &mut u8) -> Option<f64> {
        if !self.bit()? {
            return Some(prev);
        }
        if self.bit()? {
            *leading = self.bits(5)? as u8;
            let mut sig = self.bits(6)? as u8;
            if sig == 0 {
                sig = 64;
            }
            *trailing = 64u8.checked_sub(*leading)?.checked_sub(sig)?;
        }
        let sig = 64u8.checked_sub(*leading)?.checked_sub(*trailing)?;
        let x = self.bits(sig)?;
        Some(f64::from_bits(prev.to_bits() ^ (x << *trailing)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_round_trip_any_values_and_gaps() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for case in 0..300 {
            let n = (next() % 130) as usize;
            let mut t = (next() % 1_000_000) as i64 - 500_000;
            let s: Vec<(i64, f64)> = (0..n)
                .map(|i| {
                    t += match case % 4 {
                        0 => 15_000,
                        1 => 1 + (next() % 20_000) as i64,
                        2 => (next() % (1 << 40)) as i64,
                        _ => 15_000 + (next() % 3) as i64 - 1,
                    };
                    let v = match (case + i) % 5 {
                        0 => f64::from_bits(next()),
                        1 => (i % 7) as f64,
                        2 => f64::NAN,
                        3 => i as f64 * 0.1,
                        _ => -0.0,
                    };
                    (t, v)
                })
                .collect();
            let got = decode(&encode(&s)).expect("decodes");
            assert_eq!(got.len(), s.len());
            for (a, b) in got.iter().zip(&s) {
                assert_eq!(a.0, b.0);
                assert_eq!(a.1.to_bits(), b.1.to_bits());
            }
        }
        assert_eq!(decode(&[0, 5, 1]), None, "a truncated chunk is refused");
    }
}
