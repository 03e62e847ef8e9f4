//! Vector–Jacobian products of the dense linear kernels: grouped matmul, embedding lookup and
//! the LoRA side path `scale · B(A x)`.

/// Backward of [`matmul`](super::linear::matmul): returns `(grad_x, grad_w, grad_bias)`.
///
/// Shapes: `x: [rows, groups·k]`, `w: [groups, n, k]`, `grad_out: [rows, groups·n]`; returns
/// `grad_x: [rows, groups·k]`, `grad_w: [groups, n, k]`, `grad_bias: [groups·n]`.
///
/// `dx[r, g·k + i] = Σ_j dy[r, g·n + j] · w[g, j, i]`, `dw[g, j, i] = Σ_r dy[r, g·n + j] ·
/// x[r, g·k + i]`, `dbias[g·n + j] = Σ_r dy[r, g·n + j]`. The bias never enters the Jacobian,
/// so no bias argument is taken; `grad_bias` is always returned (it is only a column sum) and a
/// caller whose forward had no bias drops it.
pub fn matmul_backward(
    x: &[f64],
    rows: usize,
    w: &[f64],
    groups: usize,
    k: usize,
    n: usize,
    grad_out: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    debug_assert_eq!(x.len(), rows * groups * k);
    debug_assert_eq!(w.len(), groups * n * k);
    debug_assert_eq!(grad_out.len(), rows * groups * n);
    let mut grad_x = vec![0.0; x.len()];
    let mut grad_w = vec![0.0; w.len()];
    let mut grad_bias = vec![0.0; groups * n];
    for r in 0..rows {
        for g in 0..groups {
            let row = r * groups + g;
            let xg = &x[row * k..][..k];
            let gx = &mut grad_x[row * k..][..k];
            for j in 0..n {
                let dy = grad_out[row * n + j];
                let wj = &w[(g * n + j) * k..][..k];
                for (a, b) in gx.iter_mut().zip(wj) {
                    *a += dy * b;
                }
                let gw = &mut grad_w[(g * n + j) * k..][..k];
                for (a, b) in gw.iter_mut().zip(xg) {
                    *a += dy * b;
                }
                grad_bias[g * n + j] += dy;
            }
        }
    }
    (grad_x, grad_w, grad_bias)
}

/// Backward of [`embed`](super::linear::embed) with respect to the table: scatter-adds row `i`
/// of `grad_out` into row `tokens[i]` of the result, so a token that occurs several times
/// collects the sum of its rows' gradients. Tokens are integer data and get no gradient.
///
/// Shapes: `tokens: [rows]`, `grad_out: [rows, d]`; returns `grad_table: [vocab, d]`. Only the
/// table's shape enters the Jacobian, so the table itself is not an argument. An id outside
/// `0..vocab` is an `Err` naming the id and its position, exactly as in the forward.
pub fn embed_backward(
    tokens: &[i64],
    vocab: usize,
    d: usize,
    grad_out: &[f64],
) -> Result<Vec<f64>, String> {
    debug_assert_eq!(grad_out.len(), tokens.len() * d);
    let mut grad_table = vec![0.0; vocab * d];
    for (pos, &tok) in tokens.iter().enumerate() {
        let id = usize::try_from(tok)
            .ok()
            .filter(|&id| id < vocab)
            .ok_or_else(|| {
                format!(
                    "embed_backward: token id {tok} at position {pos} is outside the vocabulary \
                     0..{vocab}"
                )
            })?;
        let dst = &mut grad_table[id * d..][..d];
        for (a, b) in dst.iter_mut().zip(&grad_out[pos * d..][..d]) {
            *a += b;
        }
    }
    Ok(grad_table)
}

/// Backward of the LoRA side path `y = scale · B (A x)` (the `lora` op, computed by the
/// interpreter as two ungrouped matmuls): returns `(grad_x, grad_a, grad_b)`.
///
/// Shapes: `x: [rows, k]`, `a: [rank, k]`, `b: [n, rank]` (both output-major like matmul
/// weights), `grad_out: [rows, n]`; returns `grad_x: [rows, k]`, `grad_a: [rank, k]`,
/// `grad_b: [n, rank]`.
///
/// With `u = A x` recomputed: `dB = scale · dyᵀ u`, `du = scale · dy B`, `dA = duᵀ x`,
/// `dx = du A`. Scaling `dy` once up front is the same as scaling each product, and lets both
/// halves reuse [`matmul_backward`] so the adapter cannot drift from the dense layer.
#[allow(
    clippy::too_many_arguments,
    reason = "mirrors the op's operands and attributes one to one; a struct would tie the oracle \
              to an IR type"
)]
pub fn lora_backward(
    x: &[f64],
    rows: usize,
    a: &[f64],
    b: &[f64],
    k: usize,
    rank: usize,
    n: usize,
    scale: f64,
    grad_out: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    debug_assert_eq!(x.len(), rows * k);
    debug_assert_eq!(a.len(), rank * k);
    debug_assert_eq!(b.len(), n * rank);
    debug_assert_eq!(grad_out.len(), rows * n);
    let u = super::linear::matmul(x, rows, a, 1, k, rank, None);
    let scaled: Vec<f64> = grad_out.iter().map(|g| g * scale).collect();
    let (grad_u, grad_b, _) = matmul_backward(&u, rows, b, 1, rank, n, &scaled);
    let (grad_x, grad_a, _) = matmul_backward(x, rows, a, 1, k, rank, &grad_u);
    (grad_x, grad_a, grad_b)
}
