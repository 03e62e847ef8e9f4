//! Vector–Jacobian product of the mean cross-entropy loss.

/// Backward of [`cross_entropy`](super::loss::cross_entropy): returns `grad_logits`.
///
/// Shapes: `logits: [rows, vocab]`, `targets: [rows]`, `grad_loss` the upstream gradient of
/// the scalar loss (1.0 when the loss is the objective); returns `[rows, vocab]` with
/// `grad_logits[r] = grad_loss · (softmax(logits[r]) − onehot(targets[r])) / rows`, the
/// `1/rows` because the forward is the mean over rows. The softmax is max-subtracted like the
/// forward's log-sum-exp. Zero rows give an empty gradient (the forward is the constant 0).
/// Targets are data, so an id outside `0..vocab` is an `Err` naming the id and its row.
pub fn cross_entropy_backward(
    logits: &[f64],
    rows: usize,
    vocab: usize,
    targets: &[i64],
    grad_loss: f64,
) -> Result<Vec<f64>, String> {
    debug_assert_eq!(logits.len(), rows * vocab);
    debug_assert_eq!(targets.len(), rows);
    let mut grad = Vec::with_capacity(logits.len());
    if rows == 0 {
        return Ok(grad);
    }
    let scale = grad_loss / rows as f64;
    for (r, &tgt) in targets.iter().enumerate() {
        let id = usize::try_from(tgt)
            .ok()
            .filter(|&id| id < vocab)
            .ok_or_else(|| {
                format!(
                    "cross_entropy_backward: target {tgt} at row {r} is outside the vocabulary \
                     0..{vocab}"
                )
            })?;
        let row = &logits[r * vocab..][..vocab];
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = row.iter().map(|v| (v - max).exp()).collect();
        let sum: f64 = e.iter().sum();
        grad.extend(e.iter().enumerate().map(|(j, ej)| {
            let onehot = if j == id { 1.0 } else { 0.0 };
            scale * (ej / sum - onehot)
        }));
    }
    Ok(grad)
}
