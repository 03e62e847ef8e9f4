//! Gradient checks of the butterfly backward and the producer backwards against central finite
//! differences (h = 1e-6).
//!
//! Tolerance 1e-6 relative (floored at 1, see `assert_grad`): the losses are O(10), so their
//! f64 round-off is ~1e-14 and the difference quotient carries ~1e-14/2e-6 ≈ 5e-9 of noise; the
//! truncation error h²/6·f''' is ~1e-13 (the butterfly is even multilinear in each single
//! parameter, so its truncation error is zero).

use super::butterfly::{
    butterfly, butterfly_backward, butterfly_dims, dib_twiddles, dib_twiddles_backward,
    givens_twiddles, givens_twiddles_backward, twiddle_len,
};
use super::test_util::{Rng, assert_grad, dot, finite_diff};

const H: f64 = 1e-6;
const TOL: f64 = 1e-6;

#[test]
fn butterfly_backward_matches_finite_differences() {
    let mut rng = Rng::new(10);
    // Rectangular, stacked, grouped, multi-block; and a square single-block case.
    for (groups, n_in, n_out, nblocks, rows) in [(2, 5, 12, 2, 3), (1, 8, 8, 1, 2), (1, 6, 3, 3, 2)]
    {
        for inc in [true, false] {
            let tw = rng.vec(twiddle_len(groups, n_in, n_out, nblocks), -1.0, 1.0);
            let x = rng.vec(rows * groups * n_in, -1.0, 1.0);
            let gout = rng.vec(rows * groups * n_out, -1.0, 1.0);
            // loss = <grad_out, y>, so dloss/dy = grad_out.
            let loss = |x: &[f64], tw: &[f64]| {
                dot(
                    &gout,
                    &butterfly(x, rows, tw, groups, n_in, n_out, nblocks, inc),
                )
            };
            let (gx, gtw) =
                butterfly_backward(&x, rows, &tw, groups, n_in, n_out, nblocks, inc, &gout);
            let what = format!("G={groups} in={n_in} out={n_out} B={nblocks} inc={inc}");
            assert_grad(&gx, &finite_diff(&x, H, |x| loss(x, &tw)), TOL, &what);
            assert_grad(&gtw, &finite_diff(&tw, H, |tw| loss(&x, tw)), TOL, &what);
        }
    }
}

#[test]
fn givens_backward_matches_finite_differences() {
    let mut rng = Rng::new(11);
    let theta = rng.vec(24, -3.0, 3.0);
    let gtw = rng.vec(96, -1.0, 1.0);
    let analytic = givens_twiddles_backward(&theta, &gtw);
    let numeric = finite_diff(&theta, H, |th| dot(&gtw, &givens_twiddles(th)));
    assert_grad(&analytic, &numeric, TOL, "givens");
}

#[test]
fn dib_backward_matches_finite_differences() {
    let mut rng = Rng::new(12);
    for (n, slabs, nblocks) in [(8usize, 1, 1), (8, 4, 2), (16, 3, 3)] {
        for inc in [true, false] {
            let log_n = n.trailing_zeros() as usize;
            let theta = rng.vec(slabs * log_n * n / 2, -3.0, 3.0);
            let diag = rng.vec(slabs * log_n * n, 0.5, 1.5);
            let gtw = rng.vec(theta.len() * 4, -1.0, 1.0);
            let (g_theta, g_diag) = dib_twiddles_backward(&theta, &diag, n, nblocks, inc, &gtw);
            let what = format!("n={n} slabs={slabs} B={nblocks} inc={inc}");
            let num_theta = finite_diff(&theta, H, |th| {
                dot(&gtw, &dib_twiddles(th, &diag, n, nblocks, inc))
            });
            let num_diag = finite_diff(&diag, H, |d| {
                dot(&gtw, &dib_twiddles(&theta, d, n, nblocks, inc))
            });
            assert_grad(&g_theta, &num_theta, TOL, &what);
            assert_grad(&g_diag, &num_diag, TOL, &what);
        }
    }
}

/// The chain a training step runs: DIB params → twiddles → butterfly → loss.
#[test]
fn dib_through_butterfly_chain_matches_finite_differences() {
    let mut rng = Rng::new(13);
    let (groups, n_in, n_out, nblocks, rows) = (2, 6, 10, 2, 3);
    let (n, log_n, stacks) = butterfly_dims(n_in, n_out);
    let slabs = groups * stacks * nblocks;
    for inc in [true, false] {
        let theta = rng.vec(slabs * log_n * n / 2, -3.0, 3.0);
        let diag = rng.vec(slabs * log_n * n, 0.5, 1.5);
        let x = rng.vec(rows * groups * n_in, -1.0, 1.0);
        let gout = rng.vec(rows * groups * n_out, -1.0, 1.0);
        let loss = |th: &[f64], d: &[f64]| {
            let tw = dib_twiddles(th, d, n, nblocks, inc);
            dot(
                &gout,
                &butterfly(&x, rows, &tw, groups, n_in, n_out, nblocks, inc),
            )
        };
        let tw = dib_twiddles(&theta, &diag, n, nblocks, inc);
        let (_, gtw) = butterfly_backward(&x, rows, &tw, groups, n_in, n_out, nblocks, inc, &gout);
        let (g_theta, g_diag) = dib_twiddles_backward(&theta, &diag, n, nblocks, inc, &gtw);
        assert_grad(
            &g_theta,
            &finite_diff(&theta, H, |th| loss(th, &diag)),
            TOL,
            "chain θ",
        );
        assert_grad(
            &g_diag,
            &finite_diff(&diag, H, |d| loss(&theta, d)),
            TOL,
            "chain d",
        );
    }
}
