//! Gradient checks of the dense, monarch, norm, activation, loss and ternary backwards against
//! central finite differences of the forward kernels (h = 1e-6).
//!
//! Each check contracts the forward with a fixed random upstream gradient `gout`, so
//! `loss(p) = ⟨gout, f(p)⟩` is one scalar function whose gradient is exactly the VJP under
//! test. Tolerance 1e-6 relative (floored at 1, see `assert_grad`): the losses are O(10), so
//! their f64 round-off is ~1e-14 and the difference quotient carries ~1e-14/2e-6 ≈ 5e-9 of
//! noise; the truncation error h²/6·f''' is ~1e-13 for these smooth O(1)-curvature functions
//! (and exactly zero for the multilinear matmul, monarch, lora and embed).

use super::elementwise::{gelu, sigmoid, silu};
use super::elementwise_backward::{
    exp_backward, gelu_backward, gelu_derivative, sigmoid_backward, sigmoid_derivative,
    silu_backward, silu_derivative,
};
use super::linear::{embed, matmul};
use super::linear_backward::{embed_backward, lora_backward, matmul_backward};
use super::loss::cross_entropy;
use super::loss_backward::cross_entropy_backward;
use super::monarch::monarch;
use super::monarch_backward::monarch_backward;
use super::norm::{layernorm, rmsnorm, softmax};
use super::norm_backward::{layernorm_backward, rmsnorm_backward, softmax_backward};
use super::ternary_backward::ternary_twiddles_backward;
use super::test_util::{Rng, assert_grad, dot, finite_diff};

const H: f64 = 1e-6;
const TOL: f64 = 1e-6;

#[test]
fn matmul_backward_matches_finite_differences() {
    let mut rng = Rng::new(40);
    // (rows, groups, k, n): grouped rectangular, square ungrouped, non-power-of-two grouped.
    for (rows, groups, k, n) in [(3, 2, 5, 3), (2, 1, 4, 4), (4, 3, 7, 2)] {
        let x = rng.vec(rows * groups * k, -1.0, 1.0);
        let w = rng.vec(groups * n * k, -1.0, 1.0);
        let bias = rng.vec(groups * n, -1.0, 1.0);
        let gout = rng.vec(rows * groups * n, -1.0, 1.0);
        let loss = |x: &[f64], w: &[f64], b: &[f64]| {
            dot(&gout, &matmul(x, rows, w, groups, k, n, Some(b)))
        };
        let (gx, gw, gb) = matmul_backward(&x, rows, &w, groups, k, n, &gout);
        let what = format!("rows={rows} G={groups} k={k} n={n}");
        assert_grad(&gx, &finite_diff(&x, H, |x| loss(x, &w, &bias)), TOL, &what);
        assert_grad(&gw, &finite_diff(&w, H, |w| loss(&x, w, &bias)), TOL, &what);
        assert_grad(&gb, &finite_diff(&bias, H, |b| loss(&x, &w, b)), TOL, &what);

        // Without a bias the x and w gradients are the same (the bias only shifts y).
        let loss_nb = |x: &[f64]| dot(&gout, &matmul(x, rows, &w, groups, k, n, None));
        assert_grad(&gx, &finite_diff(&x, H, loss_nb), TOL, &what);
    }
}

#[test]
fn embed_backward_scatter_adds_and_matches_finite_differences() {
    let mut rng = Rng::new(41);
    let (vocab, d) = (5, 3);
    // Token 2 occurs three times and token 1 never: its rows must add, and row 1 stay zero.
    let tokens = [2i64, 0, 2, 4, 2];
    let table = rng.vec(vocab * d, -1.0, 1.0);
    let gout = rng.vec(tokens.len() * d, -1.0, 1.0);
    let g = embed_backward(&tokens, vocab, d, &gout).unwrap();
    let numeric = finite_diff(&table, H, |t| {
        dot(&gout, &embed(&tokens, t, vocab, d).unwrap())
    });
    assert_grad(&g, &numeric, TOL, "embed");
    assert_eq!(&g[d..2 * d], &[0.0; 3]);
    for j in 0..d {
        assert_eq!(g[2 * d + j], gout[j] + gout[2 * d + j] + gout[4 * d + j]);
    }

    let err = embed_backward(&[0, 5], vocab, d, &[0.0; 6]).unwrap_err();
    assert!(
        err.contains("token id 5") && err.contains("position 1"),
        "{err}"
    );
    let err = embed_backward(&[-1], vocab, d, &[0.0; 3]).unwrap_err();
    assert!(err.contains("token id -1"), "{err}");
}

#[test]
fn lora_backward_matches_finite_differences() {
    let mut rng = Rng::new(42);
    for (rows, k, rank, n, scale) in [(3, 6, 2, 5, 1.75), (1, 4, 1, 4, 2.0), (4, 7, 3, 2, -0.5)] {
        let x = rng.vec(rows * k, -1.0, 1.0);
        let a = rng.vec(rank * k, -1.0, 1.0);
        let b = rng.vec(n * rank, -1.0, 1.0);
        let gout = rng.vec(rows * n, -1.0, 1.0);
        // The lora op as the interpreter evaluates it: scale · B(A x), two ungrouped matmuls.
        let loss = |x: &[f64], a: &[f64], b: &[f64]| {
            let u = matmul(x, rows, a, 1, k, rank, None);
            scale * dot(&gout, &matmul(&u, rows, b, 1, rank, n, None))
        };
        let (gx, ga, gb) = lora_backward(&x, rows, &a, &b, k, rank, n, scale, &gout);
        let what = format!("rows={rows} k={k} r={rank} n={n} scale={scale}");
        assert_grad(&gx, &finite_diff(&x, H, |x| loss(x, &a, &b)), TOL, &what);
        assert_grad(&ga, &finite_diff(&a, H, |a| loss(&x, a, &b)), TOL, &what);
        assert_grad(&gb, &finite_diff(&b, H, |b| loss(&x, &a, b)), TOL, &what);
    }
}

/// Shape `(k, q, p, l, s, r, n_in, n_out)`.
type MonarchShape = (usize, usize, usize, usize, usize, usize, usize, usize);

#[test]
fn monarch_backward_matches_finite_differences() {
    let mut rng = Rng::new(43);
    let shapes: [(MonarchShape, usize, usize); 4] = [
        // Square, ungrouped: n = 16.
        ((4, 4, 4, 4, 4, 4, 16, 16), 1, 2),
        // Padded input (5 of 6) and truncated output (13 of 15), grouped.
        ((2, 6, 3, 3, 5, 4, 5, 13), 2, 3),
        // Non-square blocks everywhere, non-power-of-two n = 15.
        ((3, 2, 5, 2, 7, 3, 15, 14), 3, 2),
        // Expanding: 8 → 24.
        ((2, 6, 4, 4, 6, 3, 8, 24), 2, 1),
    ];
    for (shape, groups, rows) in shapes {
        let (k, q, p, l, s, r, n_in, n_out) = shape;
        let x = rng.vec(rows * groups * n_in, -1.0, 1.0);
        let w1 = rng.vec(groups * k * q * p, -1.0, 1.0);
        let w2 = rng.vec(groups * l * s * r, -1.0, 1.0);
        let gout = rng.vec(rows * groups * n_out, -1.0, 1.0);
        let loss = |x: &[f64], w1: &[f64], w2: &[f64]| {
            dot(
                &gout,
                &monarch(x, rows, w1, w2, groups, k, q, p, l, s, r, n_in, n_out),
            )
        };
        let (gx, gw1, gw2) = monarch_backward(
            &x, rows, &w1, &w2, groups, k, q, p, l, s, r, n_in, n_out, &gout,
        );
        let what = format!("{shape:?} G={groups} rows={rows}");
        assert_grad(&gx, &finite_diff(&x, H, |x| loss(x, &w1, &w2)), TOL, &what);
        assert_grad(&gw1, &finite_diff(&w1, H, |w| loss(&x, w, &w2)), TOL, &what);
        assert_grad(&gw2, &finite_diff(&w2, H, |w| loss(&x, &w1, w)), TOL, &what);
    }
}

#[test]
fn rmsnorm_backward_matches_finite_differences() {
    let mut rng = Rng::new(44);
    for (rows, d, eps) in [(3, 5, 1e-5), (2, 8, 0.0), (1, 1, 1e-3)] {
        let x = rng.vec(rows * d, -1.0, 1.0);
        let gain = rng.vec(d, 0.5, 1.5);
        let gout = rng.vec(rows * d, -1.0, 1.0);
        let loss = |x: &[f64], g: &[f64]| dot(&gout, &rmsnorm(x, rows, d, g, eps));
        let (gx, gg) = rmsnorm_backward(&x, rows, d, &gain, eps, &gout);
        let what = format!("rows={rows} d={d} eps={eps}");
        assert_grad(&gx, &finite_diff(&x, H, |x| loss(x, &gain)), TOL, &what);
        assert_grad(&gg, &finite_diff(&gain, H, |g| loss(&x, g)), TOL, &what);
    }
}

#[test]
fn layernorm_backward_matches_finite_differences() {
    let mut rng = Rng::new(45);
    for (rows, d, eps) in [(3, 5, 1e-5), (2, 8, 0.0), (4, 3, 1e-2)] {
        let x = rng.vec(rows * d, -1.0, 1.0);
        let gain = rng.vec(d, 0.5, 1.5);
        let bias = rng.vec(d, -1.0, 1.0);
        let gout = rng.vec(rows * d, -1.0, 1.0);
        let loss = |x: &[f64], g: &[f64], b: &[f64]| dot(&gout, &layernorm(x, rows, d, g, b, eps));
        let (gx, gg, gb) = layernorm_backward(&x, rows, d, &gain, eps, &gout);
        let what = format!("rows={rows} d={d} eps={eps}");
        assert_grad(
            &gx,
            &finite_diff(&x, H, |x| loss(x, &gain, &bias)),
            TOL,
            &what,
        );
        assert_grad(
            &gg,
            &finite_diff(&gain, H, |g| loss(&x, g, &bias)),
            TOL,
            &what,
        );
        assert_grad(
            &gb,
            &finite_diff(&bias, H, |b| loss(&x, &gain, b)),
            TOL,
            &what,
        );
    }
}

#[test]
fn softmax_backward_matches_finite_differences() {
    let mut rng = Rng::new(46);
    for (rows, d) in [(4, 7), (1, 2), (3, 16)] {
        let x = rng.vec(rows * d, -3.0, 3.0);
        let gout = rng.vec(rows * d, -1.0, 1.0);
        let g = softmax_backward(&x, rows, d, &gout);
        let numeric = finite_diff(&x, H, |x| dot(&gout, &softmax(x, rows, d)));
        assert_grad(&g, &numeric, TOL, &format!("rows={rows} d={d}"));
    }
}

/// A slice activation and its VJP, as plain function pointers so they fit in one table.
type Forward = fn(&[f64]) -> Vec<f64>;
type Backward = fn(&[f64], &[f64]) -> Vec<f64>;

#[test]
fn activation_backwards_match_finite_differences() {
    let mut rng = Rng::new(47);
    let x = rng.vec(37, -6.0, 6.0);
    let gout = rng.vec(37, -1.0, 1.0);
    let cases: [(&str, Forward, Backward); 3] = [
        ("silu", silu, silu_backward),
        ("gelu", gelu, gelu_backward),
        ("sigmoid", sigmoid, sigmoid_backward),
    ];
    for (name, f, df) in cases {
        let numeric = finite_diff(&x, H, |x| dot(&gout, &f(x)));
        assert_grad(&df(&x, &gout), &numeric, TOL, name);
    }
    // exp grows fast, so keep its inputs where e^x (and the loss) stay O(10).
    let xe = rng.vec(37, -3.0, 2.0);
    let exp_all = |x: &[f64]| x.iter().map(|v| v.exp()).collect::<Vec<_>>();
    let numeric = finite_diff(&xe, H, |x| dot(&gout, &exp_all(x)));
    assert_grad(&exp_backward(&xe, &gout), &numeric, TOL, "exp");
}

/// Far out in the tails the derivatives keep their tiny values (σ′ is formed as σ(x)·σ(−x),
/// so `1 − σ(x)` never cancels to 0 for large x) and saturate to their limits without NaN.
#[test]
fn activation_derivatives_are_accurate_in_the_tails() {
    for x in [-50.0f64, -30.0, 30.0, 50.0] {
        // σ′(x) = e^(−|x|)/(1 + e^(−|x|))², relative accuracy of a few ulps.
        let e = (-x.abs()).exp();
        let want = e / ((1.0 + e) * (1.0 + e));
        assert!(
            (sigmoid_derivative(x) - want).abs() <= 1e-14 * want,
            "sigmoid {x}"
        );
    }
    // silu′(x) → 0 for x → −∞ and → 1 for x → +∞; gelu′ likewise.
    for x in [-1000.0, -50.0] {
        assert!(silu_derivative(x).abs() < 1e-18, "silu {x}");
        assert!(gelu_derivative(x).abs() < 1e-18, "gelu {x}");
    }
    for x in [50.0, 1000.0] {
        assert!((silu_derivative(x) - 1.0).abs() < 1e-15, "silu {x}");
        assert_eq!(gelu_derivative(x), 1.0, "gelu {x}");
    }
    assert_eq!(sigmoid_derivative(1000.0), 0.0);
    assert_eq!(sigmoid_derivative(-1000.0), 0.0);
    // Known values at 0: σ′(0) = 1/4, silu′(0) = 1/2, gelu′(0) = 1/2.
    assert_eq!(sigmoid_derivative(0.0), 0.25);
    assert_eq!(silu_derivative(0.0), 0.5);
    assert_eq!(gelu_derivative(0.0), 0.5);
}

#[test]
fn cross_entropy_backward_matches_finite_differences() {
    let mut rng = Rng::new(48);
    for (rows, vocab, upstream) in [(4, 7, 1.0), (1, 3, -2.5), (5, 16, 0.3)] {
        let logits = rng.vec(rows * vocab, -4.0, 4.0);
        let targets: Vec<i64> = (0..rows).map(|r| ((r * 5 + 2) % vocab) as i64).collect();
        let g = cross_entropy_backward(&logits, rows, vocab, &targets, upstream).unwrap();
        let numeric = finite_diff(&logits, H, |l| {
            upstream * cross_entropy(l, rows, vocab, &targets).unwrap()
        });
        assert_grad(&g, &numeric, TOL, &format!("rows={rows} vocab={vocab}"));
        // Softmax minus one-hot sums to zero per row: shifting a row's logits changes nothing.
        for row in g.chunks_exact(vocab) {
            assert!(row.iter().sum::<f64>().abs() < 1e-15);
        }
    }
    // Large logits stay finite (the softmax is max-subtracted).
    let g = cross_entropy_backward(&[1000.0, 999.0], 1, 2, &[1], 1.0).unwrap();
    let p0 = 1.0 / (1.0 + (-1.0f64).exp());
    // Target 1, so g = [p0, p1 − 1] = [p0, −p0].
    assert!(
        (g[0] - p0).abs() < 1e-15 && (g[1] + p0).abs() < 1e-15,
        "{g:?}"
    );

    assert_eq!(cross_entropy_backward(&[], 0, 3, &[], 1.0), Ok(vec![]));
    let err = cross_entropy_backward(&[0.0; 6], 2, 3, &[1, 3], 1.0).unwrap_err();
    assert!(err.contains("target 3") && err.contains("row 1"), "{err}");
}

/// The straight-through estimator is a chosen surrogate, not the derivative of the forward:
/// the real producer is piecewise constant in `w`, so its finite differences are zero (or
/// huge across a rounding jump) and say nothing. The STE is therefore checked as an exact
/// formula, `dw = dT01 − dT11`, and against finite differences of the relaxed producer
/// `T(w) = [[1, w], [1, −w]]` (rounding replaced by the identity), which is what the STE
/// claims to differentiate.
#[test]
fn ternary_ste_is_the_exact_pass_through_formula() {
    let mut rng = Rng::new(49);
    let w = rng.vec(12, -1.0, 1.0);
    let gtw = rng.vec(48, -1.0, 1.0);
    let g = ternary_twiddles_backward(&w, &gtw);
    assert_eq!(g.len(), w.len());
    for (i, gi) in g.iter().enumerate() {
        assert_eq!(*gi, gtw[4 * i + 1] - gtw[4 * i + 3], "pair {i}");
    }

    let relaxed = |w: &[f64]| -> Vec<f64> { w.iter().flat_map(|&t| [1.0, t, 1.0, -t]).collect() };
    let numeric = finite_diff(&w, H, |w| dot(&gtw, &relaxed(w)));
    assert_grad(&g, &numeric, TOL, "ternary relaxed");

    // T00 and T10 are the constant 1: their gradients must not leak into dw.
    let only_constants: Vec<f64> = (0..48)
        .map(|i| if i % 4 == 0 || i % 4 == 2 { 1.0 } else { 0.0 })
        .collect();
    assert!(
        ternary_twiddles_backward(&w, &only_constants)
            .iter()
            .all(|&v| v == 0.0)
    );
}

/// The chain a training step of a tiny LM head runs: embed → rmsnorm → grouped matmul with
/// bias → cross entropy, composed from the VJPs above and checked end to end.
#[test]
fn embed_norm_matmul_loss_chain_matches_finite_differences() {
    let mut rng = Rng::new(50);
    let (vocab, d, groups, n) = (6, 4, 2, 3);
    let tokens = [1i64, 4, 1, 0];
    let targets = [3i64, 0, 5, 2];
    let rows = tokens.len();
    let (k, out) = (d / groups, groups * n);
    let table = rng.vec(vocab * d, -1.0, 1.0);
    let gain = rng.vec(d, 0.5, 1.5);
    let w = rng.vec(groups * n * k, -1.0, 1.0);
    let bias = rng.vec(out, -1.0, 1.0);
    let eps = 1e-5;
    let loss = |table: &[f64], gain: &[f64], w: &[f64], bias: &[f64]| {
        let e = embed(&tokens, table, vocab, d).unwrap();
        let h = rmsnorm(&e, rows, d, gain, eps);
        let logits = matmul(&h, rows, w, groups, k, n, Some(bias));
        cross_entropy(&logits, rows, out, &targets).unwrap()
    };

    let e = embed(&tokens, &table, vocab, d).unwrap();
    let h = rmsnorm(&e, rows, d, &gain, eps);
    let logits = matmul(&h, rows, &w, groups, k, n, Some(&bias));
    let dlogits = cross_entropy_backward(&logits, rows, out, &targets, 1.0).unwrap();
    let (dh, dw, db) = matmul_backward(&h, rows, &w, groups, k, n, &dlogits);
    let (de, dgain) = rmsnorm_backward(&e, rows, d, &gain, eps, &dh);
    let dtable = embed_backward(&tokens, vocab, d, &de).unwrap();

    let fd = |p: &[f64], f: &dyn Fn(&[f64]) -> f64| finite_diff(p, H, f);
    assert_grad(
        &dtable,
        &fd(&table, &|t| loss(t, &gain, &w, &bias)),
        TOL,
        "chain table",
    );
    assert_grad(
        &dgain,
        &fd(&gain, &|g| loss(&table, g, &w, &bias)),
        TOL,
        "chain gain",
    );
    assert_grad(
        &dw,
        &fd(&w, &|w| loss(&table, &gain, w, &bias)),
        TOL,
        "chain w",
    );
    assert_grad(
        &db,
        &fd(&bias, &|b| loss(&table, &gain, &w, b)),
        TOL,
        "chain bias",
    );
}
