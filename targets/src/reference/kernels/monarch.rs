//! Monarch layer `M = P₂ · BlockDiag(w2) · P₁ · BlockDiag(w1)` (DESIGN §4), block-diagonal over
//! groups, plus its explicit dense reconstruction.
//!
//! Dimensions: `w1: [k, q, p]` (k blocks, each q×p), `n = k·p`; `w2: [l, s, r]` (l blocks, each
//! s×r) with `l·r = k·q`. Input is zero-padded from `n_in ≤ n` to n, output truncated from
//! `l·s` to `n_out ≤ l·s`.
//!
//! Index conventions (exact): `x1[a, j] = x[a·p + j]`; `y1[a, b] = Σ_j w1[a, b, j]·x1[a, j]`;
//! P₁: `z[b·k + a] = y1[a, b]`; `z2[e, j] = z[e·r + j]`; `y2[e, f] = Σ_j w2[e, f, j]·z2[e, j]`;
//! P₂: `out[f·l + e] = y2[e, f]`.

/// Monarch dimensions, in the order of the weight shapes: `w1: [k, q, p]`, `w2: [l, s, r]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Dims {
    k: usize,
    q: usize,
    p: usize,
    l: usize,
    s: usize,
    r: usize,
}

/// Applies the monarch layer.
///
/// Shapes: `x: [rows, groups·n_in]`, `w1: [groups, k, q, p]`, `w2: [groups, l, s, r]`;
/// requires `k·q = l·r`, `n_in ≤ k·p`, `n_out ≤ l·s`. Returns `[rows, groups·n_out]`.
#[allow(
    clippy::too_many_arguments,
    reason = "mirrors the op's attributes one to one; a struct would tie the oracle to an IR type"
)]
pub fn monarch(
    x: &[f64],
    rows: usize,
    w1: &[f64],
    w2: &[f64],
    groups: usize,
    k: usize,
    q: usize,
    p: usize,
    l: usize,
    s: usize,
    r: usize,
    n_in: usize,
    n_out: usize,
) -> Vec<f64> {
    let d = Dims { k, q, p, l, s, r };
    let n = k * p;
    debug_assert_eq!(k * q, l * r);
    debug_assert!(n_in <= n && n_out <= l * s);
    debug_assert_eq!(x.len(), rows * groups * n_in);
    debug_assert_eq!(w1.len(), groups * k * q * p);
    debug_assert_eq!(w2.len(), groups * l * s * r);
    let mut y = vec![0.0; rows * groups * n_out];
    let mut xp = vec![0.0; n];
    for row in 0..rows * groups {
        let g = row % groups;
        xp[..n_in].copy_from_slice(&x[row * n_in..][..n_in]);
        xp[n_in..].fill(0.0);
        let out = apply_one(
            &xp,
            &w1[g * k * q * p..][..k * q * p],
            &w2[g * l * s * r..][..l * s * r],
            d,
        );
        y[row * n_out..][..n_out].copy_from_slice(&out[..n_out]);
    }
    y
}

/// One padded vector (length k·p) through one group's weights; returns all l·s outputs.
fn apply_one(x: &[f64], w1: &[f64], w2: &[f64], d: Dims) -> Vec<f64> {
    let Dims { k, q, p, l, s, r } = d;
    let mut z = vec![0.0; k * q];
    for a in 0..k {
        let x1 = &x[a * p..][..p];
        for b in 0..q {
            let w = &w1[(a * q + b) * p..][..p];
            z[b * k + a] = w.iter().zip(x1).map(|(w, x)| w * x).sum();
        }
    }
    let mut out = vec![0.0; l * s];
    for e in 0..l {
        let z2 = &z[e * r..][..r];
        for f in 0..s {
            let w = &w2[(e * s + f) * r..][..r];
            out[f * l + e] = w.iter().zip(z2).map(|(w, z)| w * z).sum();
        }
    }
    out
}

/// Dense `n_out × n_in` matrix (row-major) of one group's monarch layer, built as the explicit
/// product `Trunc · P₂ · BlockDiag(w2) · P₁ · BlockDiag(w1) · Pad`.
///
/// Shapes: `w1: [k, q, p]`, `w2: [l, s, r]` (a single group; slice a grouped tensor per group).
/// Each factor is materialized, so memory is O(max(k·q, l·s)²); the product skips zeros of the
/// left factor, so the time stays O(nnz · n_in). Meant for tests and the `summary` report, not
/// for inference.
#[allow(
    clippy::too_many_arguments,
    reason = "mirrors the op's attributes one to one; a struct would tie the oracle to an IR type"
)]
pub fn monarch_dense(
    w1: &[f64],
    w2: &[f64],
    k: usize,
    q: usize,
    p: usize,
    l: usize,
    s: usize,
    r: usize,
    n_in: usize,
    n_out: usize,
) -> Vec<f64> {
    let n = k * p;
    let (m1, m2) = (k * q, l * s);
    debug_assert_eq!(m1, l * r);
    debug_assert!(n_in <= n && n_out <= m2);
    debug_assert_eq!(w1.len(), k * q * p);
    debug_assert_eq!(w2.len(), l * s * r);

    // Pad: n × n_in, identity on the first n_in rows.
    let mut pad = vec![0.0; n * n_in];
    for i in 0..n_in {
        pad[i * n_in + i] = 1.0;
    }
    // BlockDiag(w1): (k·q) × (k·p); block a maps inputs a·p.. to outputs a·q.. .
    let mut bd1 = vec![0.0; m1 * n];
    for a in 0..k {
        for b in 0..q {
            for j in 0..p {
                bd1[(a * q + b) * n + a * p + j] = w1[(a * q + b) * p + j];
            }
        }
    }
    // P₁: z[b·k + a] = y1[a·q + b].
    let mut p1 = vec![0.0; m1 * m1];
    for a in 0..k {
        for b in 0..q {
            p1[(b * k + a) * m1 + a * q + b] = 1.0;
        }
    }
    // BlockDiag(w2): (l·s) × (l·r); block e maps z[e·r..] to y2[e·s..].
    let mut bd2 = vec![0.0; m2 * m1];
    for e in 0..l {
        for f in 0..s {
            for j in 0..r {
                bd2[(e * s + f) * m1 + e * r + j] = w2[(e * s + f) * r + j];
            }
        }
    }
    // P₂: out[f·l + e] = y2[e·s + f].
    let mut p2 = vec![0.0; m2 * m2];
    for e in 0..l {
        for f in 0..s {
            p2[(f * l + e) * m2 + e * s + f] = 1.0;
        }
    }
    // Trunc: n_out × (l·s), identity on the first n_out columns.
    let mut trunc = vec![0.0; n_out * m2];
    for i in 0..n_out {
        trunc[i * m2 + i] = 1.0;
    }

    let m = dense_mul(&bd1, m1, n, &pad, n_in);
    let m = dense_mul(&p1, m1, m1, &m, n_in);
    let m = dense_mul(&bd2, m2, m1, &m, n_in);
    let m = dense_mul(&p2, m2, m2, &m, n_in);
    dense_mul(&trunc, n_out, m2, &m, n_in)
}

/// `a (m × inner) · b (inner × cols)`, skipping zero entries of `a` (the factors above are
/// permutations and block diagonals, so this keeps the reconstruction fast without changing
/// the result for finite weights: skipped terms are exact zeros).
fn dense_mul(a: &[f64], m: usize, inner: usize, b: &[f64], cols: usize) -> Vec<f64> {
    debug_assert_eq!(a.len(), m * inner);
    debug_assert_eq!(b.len(), inner * cols);
    let mut c = vec![0.0; m * cols];
    for i in 0..m {
        let ci = &mut c[i * cols..][..cols];
        for (kk, &aik) in a[i * inner..][..inner].iter().enumerate() {
            if aik != 0.0 {
                for (cv, bv) in ci.iter_mut().zip(&b[kk * cols..][..cols]) {
                    *cv += aik * bv;
                }
            }
        }
    }
    c
}
