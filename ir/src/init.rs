//! Deterministic parameter initialization.
//!
//! Each parameter draws from its own stream, seeded by `splitmix64(seed ⊕ fnv1a(name))`, so
//! adding or removing one parameter never changes another's values, and the values do not
//! depend on a crate's RNG version (hand-written on purpose: the stream is part of the
//! artifact's reproducibility contract). Normals use Box–Muller on 53-bit uniforms.

use crate::op::Init;

/// SplitMix64: tiny, fast, and statistically fine for weight init.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal (Box–Muller, one value per call).
    pub fn next_normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64(); // (0, 1]: ln is finite
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// FNV-1a over the name: stable across platforms and Rust versions (unlike `Hash`).
pub fn fnv1a(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The stream for one parameter.
pub fn param_rng(seed: u64, name: &str) -> SplitMix64 {
    let mut mix = SplitMix64::new(seed ^ fnv1a(name));
    SplitMix64::new(mix.next_u64())
}

/// Materializes `numel` values of a parameter. `External` parameters have no values of their
/// own: the caller must supply weights, so this returns `None`.
pub fn materialize(init: &Init, numel: usize, seed: u64, name: &str) -> Option<Vec<f32>> {
    let mut rng = param_rng(seed, name);
    let v = match *init {
        Init::Zeros => vec![0.0; numel],
        Init::Ones => vec![1.0; numel],
        Init::Const(c) => vec![c as f32; numel],
        Init::Normal { std } => (0..numel)
            .map(|_| (rng.next_normal() * std) as f32)
            .collect(),
        Init::Uniform { lo, hi } => (0..numel)
            .map(|_| (lo + (hi - lo) * rng.next_f64()) as f32)
            .collect(),
        Init::External => return None,
    };
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_per_name_and_reproducible() {
        let a = materialize(&Init::Normal { std: 1.0 }, 4, 7, "a").unwrap();
        let a2 = materialize(&Init::Normal { std: 1.0 }, 4, 7, "a").unwrap();
        let b = materialize(&Init::Normal { std: 1.0 }, 4, 7, "b").unwrap();
        let a3 = materialize(&Init::Normal { std: 1.0 }, 4, 8, "a").unwrap();
        assert_eq!(a, a2);
        assert_ne!(a, b);
        assert_ne!(a, a3);
    }

    #[test]
    fn normal_has_the_requested_moments() {
        let v = materialize(&Init::Normal { std: 0.5 }, 200_000, 1, "w").unwrap();
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = v
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n;
        // Standard error of the mean is 0.5/√2e5 ≈ 0.0011; of the variance ≈ 0.25·√(2/2e5) ≈ 0.0008.
        assert!(mean.abs() < 0.006, "{mean}");
        assert!((var - 0.25).abs() < 0.005, "{var}");
    }

    #[test]
    fn uniform_stays_in_range() {
        let v = materialize(&Init::Uniform { lo: -2.0, hi: 3.0 }, 10_000, 3, "u").unwrap();
        assert!(v.iter().all(|&x| (-2.0..3.0).contains(&x)));
        assert!(materialize(&Init::External, 3, 0, "e").is_none());
    }
}
