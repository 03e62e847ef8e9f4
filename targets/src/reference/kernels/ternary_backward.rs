//! Backward of the ternary twiddle producer, by the straight-through estimator.

/// Backward of [`ternary_twiddles`](super::butterfly::ternary_twiddles) by the
/// **straight-through estimator (STE)**: returns `grad_w`, shaped like `w`.
///
/// Shapes: `w: [..., n/2]` (used only for its length), `grad_tw: [..., n/2, 2, 2]`
/// (`4·w.len()` values).
///
/// The forward `t = α·clamp(round(w/α), −1, 1)` is a step function: its true derivative is
/// zero almost everywhere (and undefined at the jumps), which would never train `w`. The STE
/// treats the rounding and clamping as the identity in the backward pass, so `t ≈ w` and
/// `dt/dw = 1`; only the exact dependence of `T = [[1, t], [1, −t]]` on t is kept:
/// `dw = ∂L/∂T01 − ∂L/∂T11`. α does not enter (it cancels: `α·(w/α) = w`), hence is not an
/// argument; no clipping mask is applied, i.e. the plain (unclipped) STE.
pub fn ternary_twiddles_backward(w: &[f64], grad_tw: &[f64]) -> Vec<f64> {
    debug_assert_eq!(grad_tw.len(), w.len() * 4);
    grad_tw.chunks_exact(4).map(|dt| dt[1] - dt[3]).collect()
}
