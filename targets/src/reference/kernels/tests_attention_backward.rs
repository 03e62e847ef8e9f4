//! Gradient checks of the rope and causal-attention backwards against central finite
//! differences of the forward kernels (h = 1e-6), contracted with a random upstream gradient
//! so each check is one scalar function.
//!
//! Tolerance 1e-6 relative (floored at 1, see `assert_grad`): the contracted losses are O(10),
//! so the difference quotient carries ~1e-14/2e-6 ≈ 5e-9 of round-off noise, and the
//! truncation error h²/6·f''' of the O(1)-curvature softmax is ~1e-13 (rope is linear and
//! attention is linear in v, so those truncation errors are zero).

use super::attention::{causal_attention, rope};
use super::attention_backward::{causal_attention_backward, rope_backward};
use super::test_util::{Rng, assert_close, assert_grad, dot, finite_diff};

const H: f64 = 1e-6;
const TOL: f64 = 1e-6;

#[test]
fn rope_backward_matches_finite_differences() {
    let mut rng = Rng::new(60);
    // (batch, t, heads, head_dim, base, pos_offset): batched with an offset (decode-style),
    // a non-power-of-two head_dim, and a single row at a large position.
    for (batch, t, heads, hd, base, off) in [
        (2, 3, 2, 6, 100.0, 3),
        (1, 5, 3, 4, 10000.0, 0),
        (3, 1, 1, 2, 10000.0, 41),
    ] {
        let x = rng.vec(batch * t * heads * hd, -1.0, 1.0);
        let gout = rng.vec(x.len(), -1.0, 1.0);
        let g = rope_backward(&gout, batch, t, heads, hd, base, off);
        let numeric = finite_diff(&x, H, |x| {
            dot(&gout, &rope(x, batch, t, heads, hd, base, off))
        });
        let what = format!("B={batch} t={t} heads={heads} hd={hd} off={off}");
        assert_grad(&g, &numeric, TOL, &what);

        // The rotation is orthogonal, so the backward also inverts the forward. Tolerance
        // 1e-14: two 2×2 rotations of O(1) values, a few ulps.
        let back = rope_backward(
            &rope(&x, batch, t, heads, hd, base, off),
            batch,
            t,
            heads,
            hd,
            base,
            off,
        );
        assert_close(&back, &x, 1e-14, &what);
    }
}

#[test]
fn causal_attention_backward_matches_finite_differences() {
    let mut rng = Rng::new(61);
    // (batch, t, heads, kv_heads, head_dim): grouped-query 2:1, plain multi-head, multi-query
    // (one kv head for four query heads), and t = 1 where the softmax is the constant 1.
    for (batch, t, heads, kv_heads, hd) in [
        (2, 5, 4, 2, 3),
        (1, 4, 3, 3, 4),
        (2, 3, 4, 1, 2),
        (2, 1, 2, 1, 5),
    ] {
        let q = rng.vec(batch * t * heads * hd, -2.0, 2.0);
        let k = rng.vec(batch * t * kv_heads * hd, -2.0, 2.0);
        let v = rng.vec(batch * t * kv_heads * hd, -1.0, 1.0);
        let gout = rng.vec(q.len(), -1.0, 1.0);
        let loss = |q: &[f64], k: &[f64], v: &[f64]| {
            dot(
                &gout,
                &causal_attention(q, k, v, batch, t, heads, kv_heads, hd),
            )
        };
        let (gq, gk, gv) =
            causal_attention_backward(&q, &k, &v, batch, t, heads, kv_heads, hd, &gout);
        let what = format!("B={batch} t={t} heads={heads} kv={kv_heads} hd={hd}");
        assert_grad(&gq, &finite_diff(&q, H, |q| loss(q, &k, &v)), TOL, &what);
        assert_grad(&gk, &finite_diff(&k, H, |k| loss(&q, k, &v)), TOL, &what);
        assert_grad(&gv, &finite_diff(&v, H, |v| loss(&q, &k, v)), TOL, &what);
    }
}

/// Causality in the backward: the last query's output gradient is the only one that reaches
/// the last key and value, so zeroing it must leave those gradients exactly zero.
#[test]
fn causal_attention_backward_respects_causality() {
    let mut rng = Rng::new(62);
    let (batch, t, heads, kv_heads, hd) = (1, 4, 2, 1, 3);
    let q = rng.vec(batch * t * heads * hd, -1.0, 1.0);
    let k = rng.vec(batch * t * kv_heads * hd, -1.0, 1.0);
    let v = rng.vec(batch * t * kv_heads * hd, -1.0, 1.0);
    let mut gout = rng.vec(q.len(), -1.0, 1.0);
    gout[(t - 1) * heads * hd..].fill(0.0);
    let (_, gk, gv) = causal_attention_backward(&q, &k, &v, batch, t, heads, kv_heads, hd, &gout);
    let last = (t - 1) * kv_heads * hd;
    assert!(gk[last..].iter().all(|&g| g == 0.0));
    assert!(gv[last..].iter().all(|&g| g == 0.0));
}
