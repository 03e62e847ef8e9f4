//! Picking the next token from logits: greedy, or temperature sampling with optional top-k and
//! top-p (nucleus) filtering. Probabilities are computed in f64 so a long tail of tiny
//! probabilities does not round away, and the seeded generator makes generations repeatable.

use std::fmt;

use crate::rng::SplitMix64;

/// How to sample. `temperature = 0` means greedy; `top_k` and `top_p` are ignored then.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplerConfig {
    pub temperature: f32,
    /// Keep only the `k` most likely tokens.
    pub top_k: Option<usize>,
    /// Keep the smallest set of most likely tokens whose probability sums to at least `p`.
    pub top_p: Option<f32>,
    pub seed: u64,
}

impl Default for SamplerConfig {
    /// Greedy: the deterministic choice, and what `run` did before sampling existed.
    fn default() -> SamplerConfig {
        SamplerConfig {
            temperature: 0.0,
            top_k: None,
            top_p: None,
            seed: 0,
        }
    }
}

/// A rejected `SamplerConfig`; the message says what range is allowed.
#[derive(Clone, Debug, PartialEq)]
pub enum SampleError {
    Temperature(f32),
    TopK(usize),
    TopP(f32),
}

impl fmt::Display for SampleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SampleError::Temperature(t) => write!(
                f,
                "temperature must be ≥ 0 and finite, got {t} (0 = greedy, 1 = the model's \
                 distribution)"
            ),
            SampleError::TopK(k) => write!(f, "top-k must be ≥ 1, got {k}"),
            SampleError::TopP(p) => write!(f, "top-p must be in (0, 1], got {p}"),
        }
    }
}

impl std::error::Error for SampleError {}

impl SamplerConfig {
    pub fn validate(&self) -> Result<(), SampleError> {
        let t = self.temperature;
        if !(t >= 0.0 && t.is_finite()) {
            return Err(SampleError::Temperature(t));
        }
        if let Some(k) = self.top_k
            && k == 0
        {
            return Err(SampleError::TopK(k));
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(SampleError::TopP(p));
        }
        Ok(())
    }
}

/// A configured sampler with its own random stream.
#[derive(Clone, Debug)]
pub struct Sampler {
    cfg: SamplerConfig,
    rng: SplitMix64,
}

impl Sampler {
    pub fn new(cfg: SamplerConfig) -> Result<Sampler, SampleError> {
        cfg.validate()?;
        Ok(Sampler {
            cfg,
            rng: SplitMix64::new(cfg.seed),
        })
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// The next token id. NaN logits are never chosen (unless every logit is NaN; then 0);
    /// empty logits give 0. If some logits are +∞ the choice is uniform among them.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if self.cfg.temperature == 0.0 {
            return argmax(logits);
        }
        let mut cands = self.weights(logits);
        if cands.is_empty() {
            return argmax(logits);
        }
        // Most likely first; ties keep index order so results do not depend on sort details.
        cands.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if let Some(k) = self.cfg.top_k {
            cands.truncate(k.max(1));
        }
        if let Some(p) = self.cfg.top_p {
            let total: f64 = cands.iter().map(|c| c.1).sum();
            let goal = f64::from(p) * total;
            let mut cum = 0.0;
            let keep = cands
                .iter()
                .position(|c| {
                    cum += c.1;
                    cum >= goal
                })
                .map_or(cands.len(), |i| i + 1);
            cands.truncate(keep.max(1));
        }
        let total: f64 = cands.iter().map(|c| c.1).sum();
        let u = self.rng.next_f64() * total;
        let mut cum = 0.0;
        for &(i, w) in &cands {
            cum += w;
            if u < cum {
                return i;
            }
        }
        // Rounding can leave `u` a hair above the final sum: that draw belongs to the last one.
        cands.last().map_or(0, |c| c.0)
    }

    /// Unnormalized probabilities `exp((l - max) / T)` of the tokens that can be drawn
    /// (positive weight), as (id, weight).
    fn weights(&self, logits: &[f32]) -> Vec<(u32, f64)> {
        let ids = (0u32..).zip(logits.iter().map(|&l| f64::from(l)));
        if logits.contains(&f32::INFINITY) {
            return ids
                .filter(|&(_, l)| l == f64::INFINITY)
                .map(|(i, _)| (i, 1.0))
                .collect();
        }
        let max = logits
            .iter()
            .filter(|l| l.is_finite())
            .fold(f64::NEG_INFINITY, |m, &l| m.max(f64::from(l)));
        if max == f64::NEG_INFINITY {
            return Vec::new();
        }
        let t = f64::from(self.cfg.temperature);
        ids.filter(|(_, l)| l.is_finite())
            .map(|(i, l)| (i, ((l - max) / t).exp()))
            .filter(|&(_, w)| w > 0.0)
            .collect()
    }
}

/// Index of the largest logit; the first on ties; NaN never wins (all NaN or empty → 0).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best: Option<(u32, f32)> = None;
    for (i, &l) in (0u32..).zip(logits) {
        if l.is_nan() {
            continue;
        }
        if best.is_none_or(|(_, b)| l > b) {
            best = Some((i, l));
        }
    }
    best.map_or(0, |b| b.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(temperature: f32, top_k: Option<usize>, top_p: Option<f32>, seed: u64) -> SamplerConfig {
        SamplerConfig {
            temperature,
            top_k,
            top_p,
            seed,
        }
    }

    fn logits(seed: u64, n: usize) -> Vec<f32> {
        let mut r = SplitMix64::new(seed);
        (0..n).map(|_| (r.next_f64() * 8.0 - 4.0) as f32).collect()
    }

    #[test]
    fn greedy_takes_first_max_and_skips_nan() {
        let mut s = Sampler::new(SamplerConfig::default()).unwrap();
        assert_eq!(s.sample(&[0.1, 3.0, 3.0, -1.0]), 1);
        assert_eq!(s.sample(&[f32::NAN, 1.0, f32::NAN, 2.0]), 3);
        assert_eq!(s.sample(&[f32::NAN, f32::NAN]), 0);
        assert_eq!(s.sample(&[]), 0);
        assert_eq!(s.sample(&[f32::NEG_INFINITY, f32::NEG_INFINITY, -5.0]), 2);
    }

    #[test]
    fn top_k_one_equals_greedy() {
        let mut s = Sampler::new(cfg(1.5, Some(1), None, 3)).unwrap();
        for seed in 0..50 {
            let l = logits(seed, 40);
            assert_eq!(s.sample(&l), argmax(&l));
        }
    }

    #[test]
    fn tiny_top_p_keeps_the_max() {
        let mut s = Sampler::new(cfg(1.0, None, Some(1e-6), 9)).unwrap();
        for seed in 0..50 {
            let l = logits(seed, 40);
            assert_eq!(s.sample(&l), argmax(&l));
        }
    }

    #[test]
    fn same_seed_same_tokens() {
        let l = logits(1, 64);
        let draw = |seed| {
            let mut s = Sampler::new(cfg(0.9, Some(20), Some(0.95), seed)).unwrap();
            (0..100).map(|_| s.sample(&l)).collect::<Vec<_>>()
        };
        assert_eq!(draw(5), draw(5));
        assert_ne!(draw(5), draw(6));
    }

    #[test]
    fn frequencies_follow_the_softmax() {
        // softmax([ln 1, ln 2, ln 3, ln 4]) = [0.1, 0.2, 0.3, 0.4].
        let l: Vec<f32> = [1.0f32, 2.0, 3.0, 4.0].iter().map(|v| v.ln()).collect();
        let mut s = Sampler::new(cfg(1.0, None, None, 17)).unwrap();
        let n = 40_000;
        let mut counts = [0usize; 4];
        for _ in 0..n {
            counts[s.sample(&l) as usize] += 1;
        }
        for (i, &c) in counts.iter().enumerate() {
            let expected = (i + 1) as f64 / 10.0;
            let got = c as f64 / n as f64;
            assert!((got - expected).abs() < 0.02, "{counts:?}");
        }

        // top-k 2 renormalizes over {3, 4}: 3/7 and 4/7.
        let mut s = Sampler::new(cfg(1.0, Some(2), None, 18)).unwrap();
        let mut counts = [0usize; 4];
        for _ in 0..n {
            counts[s.sample(&l) as usize] += 1;
        }
        assert_eq!(counts[0] + counts[1], 0);
        assert!(
            (counts[3] as f64 / n as f64 - 4.0 / 7.0).abs() < 0.02,
            "{counts:?}"
        );

        // top-p 0.65: 0.4 + 0.3 = 0.7 ≥ 0.65, so only {2, 3} survive.
        let mut s = Sampler::new(cfg(1.0, None, Some(0.65), 19)).unwrap();
        for _ in 0..1000 {
            assert!(s.sample(&l) >= 2);
        }

        // A high temperature flattens, a low one sharpens.
        let mut hot = Sampler::new(cfg(100.0, None, None, 20)).unwrap();
        let zeros = (0..n).filter(|_| hot.sample(&l) == 0).count();
        assert!((zeros as f64 / n as f64 - 0.25).abs() < 0.02);
        let mut cold = Sampler::new(cfg(0.01, None, None, 21)).unwrap();
        assert!((0..1000).all(|_| cold.sample(&l) == 3));
    }

    #[test]
    fn odd_logits_never_pick_nan() {
        let mut s = Sampler::new(cfg(1.0, None, None, 4)).unwrap();
        let l = [f32::NAN, 0.0, f32::NAN, f32::NEG_INFINITY];
        assert!((0..200).all(|_| s.sample(&l) == 1));
        let l = [0.0, f32::INFINITY, f32::NAN, f32::INFINITY];
        assert!((0..200).all(|_| matches!(s.sample(&l), 1 | 3)));
        assert_eq!(s.sample(&[f32::NAN; 3]), 0);
        assert_eq!(s.sample(&[]), 0);
        let l = [f32::MAX, -f32::MAX, 0.0];
        assert!((0..200).all(|_| s.sample(&l) == 0));
    }

    #[test]
    fn bad_configs_are_explained() {
        let e = Sampler::new(cfg(-0.5, None, None, 0)).unwrap_err();
        assert!(e.to_string().starts_with("temperature must be ≥ 0"));
        assert!(Sampler::new(cfg(f32::NAN, None, None, 0)).is_err());
        assert!(Sampler::new(cfg(f32::INFINITY, None, None, 0)).is_err());
        let e = Sampler::new(cfg(1.0, Some(0), None, 0)).unwrap_err();
        assert!(e.to_string().starts_with("top-k must be ≥ 1"));
        for p in [0.0, -0.1, 1.01, f32::NAN] {
            let e = Sampler::new(cfg(1.0, None, Some(p), 0)).unwrap_err();
            assert!(e.to_string().starts_with("top-p must be in (0, 1]"));
        }
        assert!(Sampler::new(cfg(1.0, Some(5), Some(1.0), 0)).is_ok());
    }
}
