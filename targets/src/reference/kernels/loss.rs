//! Cross-entropy loss over a vocabulary.

/// Mean over rows of `−log softmax(logits[r])[targets[r]]`, computed as
/// `logsumexp(row) − row[target]` with the max subtracted inside the log-sum-exp.
///
/// Shapes: `logits: [rows, vocab]`, `targets: [rows]`. Zero rows give `0.0` (an empty batch
/// contributes no loss). Targets are data, so an id outside `0..vocab` is an `Err` naming the
/// id and its row.
pub fn cross_entropy(
    logits: &[f64],
    rows: usize,
    vocab: usize,
    targets: &[i64],
) -> Result<f64, String> {
    debug_assert_eq!(logits.len(), rows * vocab);
    debug_assert_eq!(targets.len(), rows);
    if rows == 0 {
        return Ok(0.0);
    }
    let mut total = 0.0;
    for (r, &tgt) in targets.iter().enumerate() {
        let id = usize::try_from(tgt)
            .ok()
            .filter(|&id| id < vocab)
            .ok_or_else(|| {
                format!(
                    "cross_entropy: target {tgt} at row {r} is outside the vocabulary 0..{vocab}"
                )
            })?;
        let row = &logits[r * vocab..][..vocab];
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
        total += lse - row[id];
    }
    Ok(total / rows as f64)
}
