//! A tiny seeded generator for training-time randomness (batch windows, sampling).
//!
//! `bfly_ir::init::SplitMix64` runs the same algorithm for weight init, but its state is
//! private, so it cannot be saved and restored. Training must resume bit-exactly from a
//! checkpoint, so this copy exposes its state (`state` / `from_state`); a test checks that both
//! produce the same stream from the same seed.

/// SplitMix64 (Steele, Lea, Flood 2014): one `u64` of state, fast, statistically fine for
/// picking windows and tokens. Not for cryptography.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator seeded with `seed`; equal seeds give equal streams on every platform.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// Restores a generator from `state()`; it continues exactly where the saved one stopped.
    pub fn from_state(state: u64) -> SplitMix64 {
        SplitMix64 { state }
    }

    /// The whole internal state: store it in a checkpoint to resume the stream.
    pub fn state(&self) -> u64 {
        self.state
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits (every value is exactly representable).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `0..n` without modulo bias (Lemire's multiply-and-reject), so every batch
    /// window start is equally likely. The empty range `n = 0` has no valid answer and yields
    /// 0 without consuming randomness; callers check their ranges first.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Products whose low half falls below `threshold` would over-represent some results.
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_ir_init_generator() {
        let mut ours = SplitMix64::new(42);
        let mut theirs = bfly_ir::init::SplitMix64::new(42);
        for _ in 0..100 {
            assert_eq!(ours.next_u64(), theirs.next_u64());
        }
        assert_eq!(ours.next_f64(), theirs.next_f64());
    }

    #[test]
    fn state_round_trip_continues_the_stream() {
        let mut a = SplitMix64::new(7);
        for _ in 0..13 {
            a.next_u64();
        }
        let mut b = SplitMix64::from_state(a.state());
        for _ in 0..50 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn next_f64_is_in_unit_interval() {
        let mut r = SplitMix64::new(1);
        for _ in 0..10_000 {
            let x = r.next_f64();
            assert!((0.0..1.0).contains(&x));
        }
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut r = SplitMix64::new(3);
        assert_eq!(r.below(0), 0);
        assert_eq!(r.below(1), 0);
        let mut seen = [0u32; 7];
        for _ in 0..7_000 {
            let v = r.below(7) as usize;
            seen[v] += 1;
        }
        // Each bucket expects 1000; a loose bound catches gross bias, not noise.
        assert!(seen.iter().all(|&c| (800..1200).contains(&c)), "{seen:?}");
        for _ in 0..1000 {
            assert!(r.below(u64::MAX) < u64::MAX);
        }
    }
}
