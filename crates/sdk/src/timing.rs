//! [`Timing`] and [`Stopwatch`]: reading the clock for every operation, or for a sample.
//!
//! Two clock reads cost about 20 ns here, more than the rest of an operation's recording;
//! an engine whose operations take a microsecond or two pays a percent or more just for
//! the timestamps (PostgreSQL leaves `track_io_timing` off by default for the same
//! reason). With [`crate::Options::time_one_in`] set to `n`, the sets time about one
//! operation in `n` on each thread: every operation is still counted in its `_total`
//! counter, and the latency histograms (and the value histograms observed per operation:
//! the B+tree's traversal depth and node utilisation, WAL record sizes) hold a uniform
//! sample, so their quantiles and averages stay unbiased while their `_count` is about
//! `1/n` of the operations.
//!
//! Which operations are timed is chosen at random (each thread draws the gap to the next
//! timed operation uniformly from `1..2n`), so a workload that repeats with a period (a
//! delete every twentieth operation) is not aliased into always or never being timed.

use std::cell::Cell;

use crate::Instant;

/// When the sets read the clock: for every operation (the default), or for about one in
/// `n` on each thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    one_in: u32,
}

impl Default for Timing {
    fn default() -> Self {
        Self::EVERY
    }
}

thread_local! {
    /// Operations left before the next timed one, and the generator drawing the gaps.
    static GAP: Cell<(u32, u64)> = const { Cell::new((0, 0)) };
}

impl Timing {
    /// Every operation is timed.
    pub const EVERY: Timing = Timing { one_in: 1 };

    /// About one operation in `n` is timed on each thread (`0` and `1` mean every one).
    pub const fn one_in(n: u32) -> Self {
        Timing {
            one_in: if n == 0 { 1 } else { n },
        }
    }

    /// The `n` of one in `n`.
    pub const fn rate(self) -> u32 {
        self.one_in
    }

    /// Starts a stopwatch: running for the operations in the sample, stopped (no clock
    /// read) for the others.
    #[inline]
    pub fn start(self) -> Stopwatch {
        if self.sampled() {
            Stopwatch(Some(Instant::now()))
        } else {
            Stopwatch(None)
        }
    }

    /// Whether this call on this thread is in the sample (always with [`Timing::EVERY`]):
    /// the sets observe their value histograms (node utilisation, WAL record sizes) for
    /// the calls in the sample only, as they do latencies.
    #[inline]
    pub fn sampled(self) -> bool {
        self.one_in == 1 || self.pick()
    }

    /// Whether this call on this thread is in the sample, when sampling.
    #[inline]
    fn pick(self) -> bool {
        GAP.try_with(|g| {
            let (left, rng) = g.get();
            if left > 1 {
                g.set((left - 1, rng));
                return false;
            }
            g.set(next_gap(rng, self.one_in));
            left == 1
        })
        .unwrap_or(false)
    }
}

/// The next gap (uniform in `1..2n`, mean `n`) and the generator's new state.
#[cold]
fn next_gap(rng: u64, n: u32) -> (u32, u64) {
    // xorshift64*, seeded from std's per-thread random hash keys the first time.
    let mut x = if rng == 0 {
        use std::hash::{BuildHasher, Hasher};
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
            | 1
    } else {
        rng
    };
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32;
    let span = u64::from(2 * n - 1);
    ((r % span) as u32 + 1, x)
}

/// A clock read taken when an operation started, if it is in the sample.
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch(Option<Instant>);

impl Stopwatch {
    /// A running stopwatch, whatever the sampling.
    pub fn always() -> Self {
        Stopwatch(Some(Instant::now()))
    }

    /// A stopped stopwatch: the operation is counted, not timed.
    pub const fn untimed() -> Self {
        Stopwatch(None)
    }

    /// Seconds since the start, or `None` when the operation is not timed; the sets'
    /// recording methods take either.
    #[inline]
    pub fn seconds(&self) -> Option<f64> {
        self.0.map(|t| t.elapsed().as_secs_f64())
    }

    /// When it started, if it runs.
    pub fn started(&self) -> Option<Instant> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_timed_by_default() {
        let t = Timing::default();
        assert!((0..1000).all(|_| t.start().seconds().is_some()));
        assert_eq!(Timing::one_in(0), Timing::EVERY);
    }

    #[test]
    fn one_in_n_times_about_that_share_without_aliasing_a_period() {
        let t = Timing::one_in(16);
        let n = 160_000;
        // Every fifth call, as a workload with a period of five would make them.
        let mut timed = 0;
        let mut fifth = 0;
        for i in 0..n {
            let on = t.start().seconds().is_some();
            timed += usize::from(on);
            if i % 5 == 0 {
                fifth += usize::from(on);
            }
        }
        let share = timed as f64 / n as f64;
        assert!((share - 1.0 / 16.0).abs() < 0.005, "{share}");
        let fifth_share = fifth as f64 / (n / 5) as f64;
        assert!(
            (fifth_share - 1.0 / 16.0).abs() < 0.01,
            "every fifth call is timed as often as the rest: {fifth_share}"
        );
        assert!(Stopwatch::untimed().seconds().is_none());
        assert!(Stopwatch::always().started().is_some());
    }
}
