//! Test helpers: a deterministic PRNG and small dense-matrix utilities. Nothing here calls the
//! kernels under test, so oracles built from these stay independent of them.

/// Test data from the same SplitMix64 the param init uses (deterministic, no RNG crate).
pub struct Rng(bfly_ir::init::SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(bfly_ir::init::SplitMix64::new(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `[lo, hi)`, from the top 53 bits.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        lo + (hi - lo) * unit
    }

    pub fn vec(&mut self, len: usize, lo: f64, hi: f64) -> Vec<f64> {
        (0..len).map(|_| self.uniform(lo, hi)).collect()
    }
}

/// Row-major `m × m` identity.
pub fn identity(m: usize) -> Vec<f64> {
    let mut a = vec![0.0; m * m];
    for i in 0..m {
        a[i * m + i] = 1.0;
    }
    a
}

/// Plain triple-loop `a (m × inner) · b (inner × cols)`.
pub fn mat_mul(a: &[f64], m: usize, inner: usize, b: &[f64], cols: usize) -> Vec<f64> {
    assert_eq!(a.len(), m * inner);
    assert_eq!(b.len(), inner * cols);
    let mut c = vec![0.0; m * cols];
    for i in 0..m {
        for kk in 0..inner {
            let aik = a[i * inner + kk];
            for j in 0..cols {
                c[i * cols + j] += aik * b[kk * cols + j];
            }
        }
    }
    c
}

/// Transpose of a row-major `m × n` matrix.
pub fn transpose(a: &[f64], m: usize, n: usize) -> Vec<f64> {
    let mut t = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            t[j * m + i] = a[i * n + j];
        }
    }
    t
}

/// Asserts `|a_i − b_i| ≤ tol · max(1, max_j |b_j|)` elementwise: the tolerance is relative to
/// the oracle's overall scale, since round-off grows with the magnitudes summed, not with each
/// entry's own (possibly cancelled) size.
#[track_caller]
pub fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * scale,
            "{what}: index {i}: got {g}, want {w} (tol {tol} × scale {scale})"
        );
    }
}

/// Asserts a gradient against central finite differences with
/// `|analytic − numeric| ≤ tol · max(|analytic|, |numeric|, 1)`. The floor of 1 judges tiny
/// gradients absolutely, since the difference quotient carries ~1e−8 absolute round-off noise.
#[track_caller]
pub fn assert_grad(analytic: &[f64], numeric: &[f64], tol: f64, what: &str) {
    assert_eq!(analytic.len(), numeric.len(), "{what}: length");
    for (i, (a, n)) in analytic.iter().zip(numeric).enumerate() {
        let denom = a.abs().max(n.abs()).max(1.0);
        assert!(
            (a - n).abs() / denom <= tol,
            "{what}: index {i}: analytic {a}, numeric {n}"
        );
    }
}

/// Central differences `(f(p + h e_i) − f(p − h e_i)) / 2h` for every coordinate of `p`.
pub fn finite_diff(p: &[f64], h: f64, mut f: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
    let mut q = p.to_vec();
    (0..p.len())
        .map(|i| {
            q[i] = p[i] + h;
            let up = f(&q);
            q[i] = p[i] - h;
            let down = f(&q);
            q[i] = p[i];
            (up - down) / (2.0 * h)
        })
        .collect()
}

/// `Σ a_i b_i`.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
