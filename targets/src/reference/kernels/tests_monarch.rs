//! Monarch known-answer tests. The oracle is the dense matrix written as a sum over paths:
//! input i = a·p + j reaches block row (a, b) of w1, P₁ moves it to z index b·k + a, which is
//! input jj = (b·k + a) mod r of w2 block e = (b·k + a) div r, whose output f lands at f·l + e.
//! This derivation builds no permutation matrix, so it checks `monarch_dense`'s explicit
//! factor product as well as `monarch`'s loops.

use super::monarch::{monarch, monarch_dense};
use super::test_util::{Rng, assert_close, identity, mat_mul, transpose};

/// Shape `(k, q, p, l, s, r, n_in, n_out)`.
type Shape = (usize, usize, usize, usize, usize, usize, usize, usize);

fn path_sum_oracle(w1: &[f64], w2: &[f64], shape: Shape) -> Vec<f64> {
    let (k, q, p, l, s, r, n_in, n_out) = shape;
    let mut m = vec![0.0; n_out * n_in];
    for a in 0..k {
        for j in 0..p {
            let i = a * p + j;
            if i >= n_in {
                continue;
            }
            for b in 0..q {
                let zi = b * k + a;
                let (e, jj) = (zi / r, zi % r);
                for f in 0..s {
                    let o = f * l + e;
                    if o < n_out {
                        m[o * n_in + i] += w2[(e * s + f) * r + jj] * w1[(a * q + b) * p + j];
                    }
                }
            }
        }
    }
    m
}

const SHAPES: [Shape; 4] = [
    // Square: n = 16, 4 blocks of 4×4 twice.
    (4, 4, 4, 4, 4, 4, 16, 16),
    // Rectangular: n = 6 (in 5 padded), k·q = 12 = l·r, l·s = 15 truncated to 13.
    (2, 6, 3, 3, 5, 4, 5, 13),
    // Non-square blocks everywhere: n = 15, k·q = 6 = l·r, l·s = 14.
    (3, 2, 5, 2, 7, 3, 15, 14),
    // Expanding: n = 8 → 24 outputs.
    (2, 6, 4, 4, 6, 3, 8, 24),
];

/// Tolerance 1e-13 relative: each entry is a sum of at most q ≤ 6 products of weights in
/// [−1, 1] (monarch sums p then r ≤ 5 terms), ≲ 12·2.2e-16 ≈ 3e-15.
#[test]
fn monarch_matches_path_sum_oracle() {
    let mut rng = Rng::new(20);
    for shape in SHAPES {
        let (k, q, p, l, s, r, n_in, n_out) = shape;
        let w1 = rng.vec(k * q * p, -1.0, 1.0);
        let w2 = rng.vec(l * s * r, -1.0, 1.0);
        let m = path_sum_oracle(&w1, &w2, shape);
        let what = format!("{shape:?}");

        let dense = monarch_dense(&w1, &w2, k, q, p, l, s, r, n_in, n_out);
        assert_close(&dense, &m, 1e-13, &format!("dense {what}"));

        let got = monarch(
            &identity(n_in),
            n_in,
            &w1,
            &w2,
            1,
            k,
            q,
            p,
            l,
            s,
            r,
            n_in,
            n_out,
        );
        assert_close(
            &got,
            &transpose(&m, n_out, n_in),
            1e-13,
            &format!("apply {what}"),
        );

        let x = rng.vec(3 * n_in, -1.0, 1.0);
        let got = monarch(&x, 3, &w1, &w2, 1, k, q, p, l, s, r, n_in, n_out);
        let want = mat_mul(&x, 3, n_in, &transpose(&m, n_out, n_in), n_out);
        assert_close(&got, &want, 1e-13, &format!("rows {what}"));
    }
}

/// A grouped monarch is exactly each group's monarch run on its own.
#[test]
fn grouped_monarch_equals_separate_groups() {
    let mut rng = Rng::new(21);
    let (k, q, p, l, s, r, n_in, n_out) = SHAPES[1];
    let (groups, rows) = (3, 4);
    let (n1, n2) = (k * q * p, l * s * r);
    let w1 = rng.vec(groups * n1, -1.0, 1.0);
    let w2 = rng.vec(groups * n2, -1.0, 1.0);
    let x = rng.vec(rows * groups * n_in, -1.0, 1.0);
    let got = monarch(&x, rows, &w1, &w2, groups, k, q, p, l, s, r, n_in, n_out);
    for g in 0..groups {
        let xg: Vec<f64> = (0..rows)
            .flat_map(|row| x[(row * groups + g) * n_in..][..n_in].to_vec())
            .collect();
        let (w1g, w2g) = (&w1[g * n1..][..n1], &w2[g * n2..][..n2]);
        let yg = monarch(&xg, rows, w1g, w2g, 1, k, q, p, l, s, r, n_in, n_out);
        for row in 0..rows {
            assert_eq!(
                &got[(row * groups + g) * n_out..][..n_out],
                &yg[row * n_out..][..n_out],
                "group {g} row {row}"
            );
        }
    }
}
