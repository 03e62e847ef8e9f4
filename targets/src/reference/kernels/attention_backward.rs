//! Vector–Jacobian products of rotary position embedding and causal softmax attention.

use super::attention::causal_probs;
use super::norm_backward::softmax_row_backward;

/// Backward of [`rope`](super::attention::rope): returns `grad_x`, shaped like `grad_out`.
///
/// Shapes: `grad_out: [batch, t, heads·head_dim]` (head_dim even); the other arguments are the
/// forward's. Rope is a rotation of each `(x_j, x_{j+h/2})` pair by `pos·freq_j`, a linear map
/// whose Jacobian is that orthogonal rotation, so the VJP is its transpose: rotation by
/// `−pos·freq_j`, i.e. `(dx_j, dx_{j+h/2}) = (dy_j cos + dy_{j+h/2} sin, −dy_j sin +
/// dy_{j+h/2} cos)`. The input itself is not needed, hence not an argument. Frequencies use
/// the forward's exact formula so the two rotations cancel to rounding.
pub fn rope_backward(
    grad_out: &[f64],
    batch: usize,
    t: usize,
    heads: usize,
    head_dim: usize,
    base: f64,
    pos_offset: usize,
) -> Vec<f64> {
    super::attention::rotate_pairs(grad_out, batch, t, heads, head_dim, base, pos_offset, -1.0)
}

/// Backward of [`causal_attention`](super::attention::causal_attention): returns
/// `(grad_q, grad_k, grad_v)` shaped like `q`, `k`, `v`.
///
/// Shapes: `q: [batch, t, heads·head_dim]`, `k, v: [batch, t, kv_heads·head_dim]`,
/// `grad_out: [batch, t, heads·head_dim]`, `heads` a multiple of `kv_heads`.
///
/// Per (batch, head, query i) the probabilities `P = softmax(q_i·k_j/√head_dim, j ≤ i)` are
/// recomputed in `f64` exactly as the forward does (nothing is saved), then with `do = dy_i`:
/// `dv_j += P_j·do`, `dP_j = do·v_j`, `dS = P ⊙ (dP − ⟨dP, P⟩)`, `dq_i += Σ_j dS_j·k_j/√hd`,
/// `dk_j += dS_j·q_i/√hd`. Keys after i were never read, so they get nothing from row i. A kv
/// head shared by `heads/kv_heads` query heads accumulates the gradient of all of them.
#[allow(
    clippy::too_many_arguments,
    reason = "mirrors the op's attributes one to one; a struct would tie the oracle to an IR type"
)]
pub fn causal_attention_backward(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    batch: usize,
    t: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    grad_out: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    debug_assert_eq!(q.len(), batch * t * heads * head_dim);
    debug_assert_eq!(k.len(), batch * t * kv_heads * head_dim);
    debug_assert_eq!(v.len(), k.len());
    debug_assert_eq!(grad_out.len(), q.len());
    debug_assert_eq!(heads.checked_rem(kv_heads), Some(0));
    let per_kv = heads / kv_heads;
    let scale = 1.0 / (head_dim as f64).sqrt();
    let q_off = |b: usize, i: usize, h: usize| ((b * t + i) * heads + h) * head_dim;
    let kv_off = |b: usize, j: usize, h: usize| ((b * t + j) * kv_heads + h) * head_dim;
    let mut grad_q = vec![0.0; q.len()];
    let mut grad_k = vec![0.0; k.len()];
    let mut grad_v = vec![0.0; v.len()];
    for b in 0..batch {
        for h in 0..heads {
            let kvh = h / per_kv;
            for i in 0..t {
                let qi = &q[q_off(b, i, h)..][..head_dim];
                let doi = &grad_out[q_off(b, i, h)..][..head_dim];
                // The forward's own function, so P matches it exactly.
                let probs = causal_probs(qi, |j| &k[kv_off(b, j, kvh)..][..head_dim], i, scale);
                let dprobs: Vec<f64> = (0..=i)
                    .map(|j| {
                        let vj = &v[kv_off(b, j, kvh)..][..head_dim];
                        doi.iter().zip(vj).map(|(a, c)| a * c).sum::<f64>()
                    })
                    .collect();
                let dscores = softmax_row_backward(&probs, &dprobs);
                let gq = &mut grad_q[q_off(b, i, h)..][..head_dim];
                for (j, (&pj, &dsj)) in probs.iter().zip(&dscores).enumerate() {
                    let off = kv_off(b, j, kvh);
                    for (gv, dov) in grad_v[off..][..head_dim].iter_mut().zip(doi) {
                        *gv += pj * dov;
                    }
                    let ds = dsj * scale;
                    for (gqv, kv) in gq.iter_mut().zip(&k[off..][..head_dim]) {
                        *gqv += ds * kv;
                    }
                    for (gk, qv) in grad_k[off..][..head_dim].iter_mut().zip(qi) {
                        *gk += ds * qv;
                    }
                }
            }
        }
    }
    (grad_q, grad_k, grad_v)
}
