//! Row normalizations over the last axis: RMSNorm, LayerNorm, softmax.

/// RMSNorm: `y = x / √(mean(x²) + eps) · gain`, per row.
///
/// Shapes: `x: [rows, d]`, `gain: [d]`; returns `[rows, d]`.
pub fn rmsnorm(x: &[f64], rows: usize, d: usize, gain: &[f64], eps: f64) -> Vec<f64> {
    debug_assert_eq!(x.len(), rows * d);
    debug_assert_eq!(gain.len(), d);
    let mut y = Vec::with_capacity(x.len());
    for row in x.chunks_exact(d.max(1)).take(rows) {
        let ms = row.iter().map(|v| v * v).sum::<f64>() / d as f64;
        let inv = 1.0 / (ms + eps).sqrt();
        y.extend(row.iter().zip(gain).map(|(v, g)| v * inv * g));
    }
    y
}

/// LayerNorm: `y = (x − mean) / √(var + eps) · gain + bias`, per row, with the population
/// (biased, ÷d) variance as in PyTorch.
///
/// Shapes: `x: [rows, d]`, `gain: [d]`, `bias: [d]`; returns `[rows, d]`.
pub fn layernorm(
    x: &[f64],
    rows: usize,
    d: usize,
    gain: &[f64],
    bias: &[f64],
    eps: f64,
) -> Vec<f64> {
    debug_assert_eq!(x.len(), rows * d);
    debug_assert_eq!(gain.len(), d);
    debug_assert_eq!(bias.len(), d);
    let mut y = Vec::with_capacity(x.len());
    for row in x.chunks_exact(d.max(1)).take(rows) {
        let mean = row.iter().sum::<f64>() / d as f64;
        // Two-pass variance: subtracting the mean first avoids the cancellation of E[x²]−E[x]².
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / d as f64;
        let inv = 1.0 / (var + eps).sqrt();
        y.extend(
            row.iter()
                .zip(gain.iter().zip(bias))
                .map(|(v, (g, b))| (v - mean) * inv * g + b),
        );
    }
    y
}

/// Softmax over the last axis, max-subtracted so large logits cannot overflow `exp`.
///
/// Shapes: `x: [rows, d]`; returns `[rows, d]`, each row summing to 1.
pub fn softmax(x: &[f64], rows: usize, d: usize) -> Vec<f64> {
    debug_assert_eq!(x.len(), rows * d);
    let mut y = Vec::with_capacity(x.len());
    for row in x.chunks_exact(d.max(1)).take(rows) {
        y.extend(softmax_row(row));
    }
    y
}

/// Softmax of one row (max-subtracted); shared with attention so both normalize identically.
pub(crate) fn softmax_row(row: &[f64]) -> Vec<f64> {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = row.iter().map(|v| (v - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}
