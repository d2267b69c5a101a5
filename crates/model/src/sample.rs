//! Samples: a millisecond timestamp and a float value, plus Prometheus's staleness marker.

/// Bit pattern of Prometheus's staleness marker, a signalling NaN distinct from ordinary NaN.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Returns the staleness marker value.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// Whether `v` is exactly the staleness marker (not any other NaN).
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// One sample of one series: `t` in milliseconds since the Unix epoch, `v` the value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Timestamp in milliseconds since the Unix epoch.
    pub t: i64,
    /// The value; may be NaN, ±Inf or the staleness marker.
    pub v: f64,
}

impl Sample {
    /// Creates a sample.
    pub fn new(t: i64, v: f64) -> Self {
        Self { t, v }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_marker_is_distinguished_from_plain_nan() {
        assert!(is_stale_nan(stale_nan()));
        assert!(!is_stale_nan(f64::NAN));
        assert!(stale_nan().is_nan());
    }
}
