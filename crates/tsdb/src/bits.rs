//! Bit-level writer and reader for the chunk codec (most significant bit first).

/// Appends bits to a byte vector.
#[derive(Debug, Clone, Default)]
pub(crate) struct BitWriter {
    buf: Vec<u8>,
    /// Pending bits, right-aligned.
    acc: u64,
    /// Number of pending bits (< 8 between calls).
    pending: u32,
}

impl BitWriter {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Writes the low `n` bits of `v` (n ≤ 64).
    #[inline]
    pub(crate) fn write(&mut self, v: u64, n: u32) {
        if n > 32 {
            self.write(v >> 32, n - 32);
            self.write(v & 0xffff_ffff, 32);
            return;
        }
        if n == 0 {
            return;
        }
        let v = if n == 64 { v } else { v & ((1u64 << n) - 1) };
        self.acc = (self.acc << n) | v;
        self.pending += n;
        while self.pending >= 8 {
            self.pending -= 8;
            self.buf.push((self.acc >> self.pending) as u8);
        }
        self.acc &= (1u64 << self.pending) - 1;
    }

    #[inline]
    pub(crate) fn bit(&mut self, b: bool) {
        self.write(b as u64, 1);
    }

    /// The bytes written so far, the last one zero-padded, without consuming the writer.
    pub(crate) fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.buf.len() + 1);
        out.extend_from_slice(&self.buf);
        if self.pending > 0 {
            out.push((self.acc << (8 - self.pending)) as u8);
        }
        out
    }

    /// Finishes, zero-padding the last byte.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        if self.pending > 0 {
            self.buf.push((self.acc << (8 - self.pending)) as u8);
        }
        self.buf
    }
}

/// Reads bits from a byte slice.
#[derive(Debug, Clone)]
pub(crate) struct BitReader<'a> {
    buf: &'a [u8],
    pos: u64,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Reads `n` bits (n ≤ 64); `None` past the end.
    #[inline]
    pub(crate) fn read(&mut self, n: u32) -> Option<u64> {
        if n == 0 {
            return Some(0);
        }
        if self.pos + n as u64 > self.buf.len() as u64 * 8 {
            return None;
        }
        // Fast path: eight bytes hold the bit offset (≤ 7) plus up to 57 bits.
        let byte = (self.pos / 8) as usize;
        let off = (self.pos % 8) as u32;
        if n <= 57 && byte + 8 <= self.buf.len() {
            let w = u64::from_be_bytes(self.buf[byte..byte + 8].try_into().expect("8 bytes"));
            self.pos += n as u64;
            return Some((w << off) >> (64 - n));
        }
        let mut out = 0u64;
        let mut left = n;
        while left > 0 {
            let byte = self.buf[(self.pos / 8) as usize];
            let used = (self.pos % 8) as u32;
            let avail = 8 - used;
            let take = avail.min(left);
            let bits = (byte >> (avail - take)) & ((1u16 << take) - 1) as u8;
            out = (out << take) | bits as u64;
            left -= take;
            self.pos += take as u64;
        }
        Some(out)
    }

    #[inline]
    pub(crate) fn bit(&mut self) -> Option<bool> {
        self.read(1).map(|b| b == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_mixed_widths() {
        let items: Vec<(u64, u32)> = vec![
            (1, 1),
            (0x3ff, 10),
            (u64::MAX, 64),
            (5, 3),
            (0, 7),
            (0xdead_beef, 33),
        ];
        let mut w = BitWriter::new();
        for (v, n) in &items {
            w.write(*v, *n);
        }
        let bytes = w.finish();
        let bits: u64 = items.iter().map(|x| x.1 as u64).sum();
        assert_eq!(bytes.len() as u64, bits.div_ceil(8));
        let mut r = BitReader::new(&bytes);
        for (v, n) in &items {
            let mask = if *n == 64 { u64::MAX } else { (1u64 << n) - 1 };
            assert_eq!(r.read(*n), Some(v & mask));
        }
    }
}
