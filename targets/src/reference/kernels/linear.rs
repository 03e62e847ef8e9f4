//! Dense linear algebra: grouped matmul (weights stored `[out, in]`, as in the artifact) and the
//! embedding lookup.

/// Grouped dense layer: `y[r, g·n + j] = Σ_i x[r, g·k + i] · w[g, j, i] (+ bias[g·n + j])`.
///
/// Shapes: `x: [rows, groups·k]`, `w: [groups, n, k]` (output-major, so each output is a
/// contiguous dot product), `bias: [groups·n]`; returns `[rows, groups·n]`. Sums run in `f64`
/// in index order.
pub fn matmul(
    x: &[f64],
    rows: usize,
    w: &[f64],
    groups: usize,
    k: usize,
    n: usize,
    bias: Option<&[f64]>,
) -> Vec<f64> {
    debug_assert_eq!(x.len(), rows * groups * k);
    debug_assert_eq!(w.len(), groups * n * k);
    debug_assert!(bias.is_none_or(|b| b.len() == groups * n));
    let mut y = vec![0.0; rows * groups * n];
    for r in 0..rows {
        for g in 0..groups {
            let xg = &x[(r * groups + g) * k..][..k];
            for j in 0..n {
                let wj = &w[(g * n + j) * k..][..k];
                let dot: f64 = xg.iter().zip(wj).map(|(a, b)| a * b).sum();
                let b = bias.map_or(0.0, |b| b[g * n + j]);
                y[(r * groups + g) * n + j] = dot + b;
            }
        }
    }
    y
}

/// Embedding lookup: row `i` of the result is row `tokens[i]` of `table`.
///
/// Shapes: `tokens: [rows]`, `table: [vocab, d]`; returns `[rows, d]`. Token ids are data, not
/// shapes, so an id outside `0..vocab` is an `Err` naming the id and its position.
pub fn embed(tokens: &[i64], table: &[f64], vocab: usize, d: usize) -> Result<Vec<f64>, String> {
    debug_assert_eq!(table.len(), vocab * d);
    let mut y = Vec::with_capacity(tokens.len() * d);
    for (pos, &tok) in tokens.iter().enumerate() {
        let id = usize::try_from(tok)
            .ok()
            .filter(|&id| id < vocab)
            .ok_or_else(|| {
                format!(
                    "embed: token id {tok} at position {pos} is outside the vocabulary 0..{vocab}"
                )
            })?;
        y.extend_from_slice(&table[id * d..][..d]);
    }
    Ok(y)
}
