//! Vector–Jacobian products of the row normalizations: RMSNorm, LayerNorm, softmax. Each row's
//! statistics are recomputed from `x` exactly as the forward computes them.

use super::norm::softmax_row;

/// Backward of [`rmsnorm`](super::norm::rmsnorm): returns `(grad_x, grad_gain)`.
///
/// Shapes: `x: [rows, d]`, `gain: [d]`, `grad_out: [rows, d]`; returns `grad_x: [rows, d]`,
/// `grad_gain: [d]` (summed over rows).
///
/// With `inv = (mean(x²) + eps)^(−1/2)`, `∂inv/∂x_j = −inv³·x_j/d`, so
/// `dx_j = inv·(g_j·dy_j − x_j·inv²·Σ_i dy_i·g_i·x_i / d)` and `dgain_j += dy_j·x_j·inv`.
pub fn rmsnorm_backward(
    x: &[f64],
    rows: usize,
    d: usize,
    gain: &[f64],
    eps: f64,
    grad_out: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    debug_assert_eq!(x.len(), rows * d);
    debug_assert_eq!(gain.len(), d);
    debug_assert_eq!(grad_out.len(), rows * d);
    let mut grad_x = Vec::with_capacity(x.len());
    let mut grad_gain = vec![0.0; d];
    // d = 0 has no elements to normalize; chunks_exact(0) would panic.
    let rows_iter = x
        .chunks_exact(d.max(1))
        .zip(grad_out.chunks_exact(d.max(1)))
        .take(rows);
    for (row, dy) in rows_iter {
        let ms = row.iter().map(|v| v * v).sum::<f64>() / d as f64;
        let inv = 1.0 / (ms + eps).sqrt();
        let proj = dy
            .iter()
            .zip(gain.iter().zip(row))
            .map(|(dy, (g, v))| dy * g * v)
            .sum::<f64>()
            / d as f64;
        let coef = inv * inv * proj;
        for (j, ((&v, &dyj), &g)) in row.iter().zip(dy).zip(gain).enumerate() {
            grad_x.push(inv * (g * dyj - v * coef));
            grad_gain[j] += dyj * v * inv;
        }
    }
    (grad_x, grad_gain)
}

/// Backward of [`layernorm`](super::norm::layernorm): returns `(grad_x, grad_gain,
/// grad_bias)`.
///
/// Shapes: `x: [rows, d]`, `gain: [d]`, `grad_out: [rows, d]`; returns `grad_x: [rows, d]`,
/// `grad_gain: [d]`, `grad_bias: [d]` (both summed over rows). The bias only shifts the
/// output, so its value does not enter the Jacobian and is not an argument.
///
/// With `x̂ = (x − mean)·inv`, `inv = (var + eps)^(−1/2)` (population variance) and
/// `ĝ = dy ⊙ gain`: `dx = inv·(ĝ − mean(ĝ) − x̂·mean(ĝ ⊙ x̂))`, `dgain += dy ⊙ x̂`,
/// `dbias += dy`.
pub fn layernorm_backward(
    x: &[f64],
    rows: usize,
    d: usize,
    gain: &[f64],
    eps: f64,
    grad_out: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    debug_assert_eq!(x.len(), rows * d);
    debug_assert_eq!(gain.len(), d);
    debug_assert_eq!(grad_out.len(), rows * d);
    let mut grad_x = Vec::with_capacity(x.len());
    let mut grad_gain = vec![0.0; d];
    let mut grad_bias = vec![0.0; d];
    let rows_iter = x
        .chunks_exact(d.max(1))
        .zip(grad_out.chunks_exact(d.max(1)))
        .take(rows);
    for (row, dy) in rows_iter {
        // Same two-pass statistics as the forward, so x̂ matches it bit for bit.
        let mean = row.iter().sum::<f64>() / d as f64;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / d as f64;
        let inv = 1.0 / (var + eps).sqrt();
        let xhat: Vec<f64> = row.iter().map(|v| (v - mean) * inv).collect();
        let ghat: Vec<f64> = dy.iter().zip(gain).map(|(a, g)| a * g).collect();
        let mean_g = ghat.iter().sum::<f64>() / d as f64;
        let mean_gx = ghat.iter().zip(&xhat).map(|(a, b)| a * b).sum::<f64>() / d as f64;
        for (j, ((&dyj, &gj), &xj)) in dy.iter().zip(&ghat).zip(&xhat).enumerate() {
            grad_x.push(inv * (gj - mean_g - xj * mean_gx));
            grad_gain[j] += dyj * xj;
            grad_bias[j] += dyj;
        }
    }
    (grad_x, grad_gain, grad_bias)
}

/// Backward of [`softmax`](super::norm::softmax): returns `grad_x: [rows, d]`.
///
/// Shapes: `x: [rows, d]` (the forward's input; the probabilities are recomputed from it with
/// the same max-subtracted row softmax), `grad_out: [rows, d]`.
/// `dx = y ⊙ (dy − Σ_i dy_i·y_i)` per row.
pub fn softmax_backward(x: &[f64], rows: usize, d: usize, grad_out: &[f64]) -> Vec<f64> {
    debug_assert_eq!(x.len(), rows * d);
    debug_assert_eq!(grad_out.len(), rows * d);
    let mut grad_x = Vec::with_capacity(x.len());
    let rows_iter = x
        .chunks_exact(d.max(1))
        .zip(grad_out.chunks_exact(d.max(1)))
        .take(rows);
    for (row, dy) in rows_iter {
        grad_x.extend(softmax_row_backward(&softmax_row(row), dy));
    }
    grad_x
}

/// `y ⊙ (dy − ⟨dy, y⟩)` for one row of probabilities `y`; shared with attention so both
/// differentiate the softmax identically.
pub(crate) fn softmax_row_backward(y: &[f64], dy: &[f64]) -> Vec<f64> {
    debug_assert_eq!(y.len(), dy.len());
    let dot: f64 = y.iter().zip(dy).map(|(a, b)| a * b).sum();
    y.iter().zip(dy).map(|(p, g)| p * (g - dot)).collect()
}
