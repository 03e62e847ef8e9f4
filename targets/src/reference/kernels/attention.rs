//! Rotary position embedding and exact causal softmax attention.

use super::norm::softmax_row;

/// Rotary position embedding, NeoX half-split convention.
///
/// Shapes: `x: [batch, t, heads·head_dim]` (head_dim even); returns the same shape. Row `i` of
/// each batch has position `pos_offset + i` (the offset is the KV-cache length during decode).
/// For `j < head_dim/2`, `freq = base^(−2j/head_dim)`, angle `= pos·freq`, and
/// `(x_j, x_{j+h/2})` becomes `(x_j cos − x_{j+h/2} sin, x_j sin + x_{j+h/2} cos)`.
pub fn rope(
    x: &[f64],
    batch: usize,
    t: usize,
    heads: usize,
    head_dim: usize,
    base: f64,
    pos_offset: usize,
) -> Vec<f64> {
    rotate_pairs(x, batch, t, heads, head_dim, base, pos_offset, 1.0)
}

/// Rotates every `(x_j, x_{j+h/2})` pair by `sin_sign ·` its RoPE angle: `+1` is the forward,
/// `−1` the transpose (the backward, since a rotation's inverse is its transpose).
#[allow(
    clippy::too_many_arguments,
    reason = "rope's arguments plus the direction of the rotation"
)]
pub(crate) fn rotate_pairs(
    x: &[f64],
    batch: usize,
    t: usize,
    heads: usize,
    head_dim: usize,
    base: f64,
    pos_offset: usize,
    sin_sign: f64,
) -> Vec<f64> {
    debug_assert_eq!(x.len(), batch * t * heads * head_dim);
    debug_assert_eq!(head_dim % 2, 0);
    let half = head_dim / 2;
    let freqs: Vec<f64> = (0..half)
        .map(|j| base.powf(-((2 * j) as f64) / head_dim as f64))
        .collect();
    let mut y = x.to_vec();
    for b in 0..batch {
        for i in 0..t {
            let pos = (pos_offset + i) as f64;
            for h in 0..heads {
                let off = ((b * t + i) * heads + h) * head_dim;
                let v = &mut y[off..][..head_dim];
                for (j, f) in freqs.iter().enumerate() {
                    let (s, c) = (pos * f).sin_cos();
                    let s = sin_sign * s;
                    let (lo, hi) = (v[j], v[j + half]);
                    v[j] = lo * c - hi * s;
                    v[j + half] = lo * s + hi * c;
                }
            }
        }
    }
    y
}

/// Attention probabilities of one query row over keys `0..=i`: softmax of the scaled dot
/// products, max-subtracted. The backward recomputes them with this same function, so its
/// probabilities match the forward's bit for bit.
pub(crate) fn causal_probs<'k>(
    qi: &[f64],
    key: impl Fn(usize) -> &'k [f64],
    i: usize,
    scale: f64,
) -> Vec<f64> {
    let scores: Vec<f64> = (0..=i)
        .map(|j| qi.iter().zip(key(j)).map(|(a, c)| a * c).sum::<f64>() * scale)
        .collect();
    softmax_row(&scores)
}

/// Causal softmax attention with grouped-query support.
///
/// Shapes: `q: [batch, t, heads·head_dim]`, `k, v: [batch, t, kv_heads·head_dim]`, `heads` a
/// multiple of `kv_heads` (query head h reads kv head `h / (heads/kv_heads)`); returns
/// `[batch, t, heads·head_dim]`. Scores are scaled by `1/√head_dim`, query i attends to keys
/// `0..=i`, and the softmax is max-subtracted, all in `f64`.
#[allow(
    clippy::too_many_arguments,
    reason = "mirrors the op's attributes one to one; a struct would tie the oracle to an IR type"
)]
pub fn causal_attention(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    batch: usize,
    t: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
) -> Vec<f64> {
    debug_assert_eq!(q.len(), batch * t * heads * head_dim);
    debug_assert_eq!(k.len(), batch * t * kv_heads * head_dim);
    debug_assert_eq!(v.len(), k.len());
    debug_assert_eq!(heads.checked_rem(kv_heads), Some(0));
    let per_kv = heads / kv_heads;
    let scale = 1.0 / (head_dim as f64).sqrt();
    // Offsets of one head's vector in the [batch, t, heads·head_dim] layouts.
    let q_off = |b: usize, i: usize, h: usize| ((b * t + i) * heads + h) * head_dim;
    let kv_off = |b: usize, j: usize, h: usize| ((b * t + j) * kv_heads + h) * head_dim;
    let mut out = vec![0.0; q.len()];
    for b in 0..batch {
        for h in 0..heads {
            let kvh = h / per_kv;
            for i in 0..t {
                let qi = &q[q_off(b, i, h)..][..head_dim];
                let probs = causal_probs(qi, |j| &k[kv_off(b, j, kvh)..][..head_dim], i, scale);
                let o = &mut out[q_off(b, i, h)..][..head_dim];
                for (j, pj) in probs.iter().enumerate() {
                    for (ov, vv) in o.iter_mut().zip(&v[kv_off(b, j, kvh)..][..head_dim]) {
                        *ov += pj * vv;
                    }
                }
            }
        }
    }
    out
}
