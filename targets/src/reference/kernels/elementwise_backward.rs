//! Vector–Jacobian products of the elementwise activations: `dx = f′(x) ⊙ dy`, as scalar
//! derivatives (for the interpreter's elementwise maps) and as slice maps.
//!
//! Shapes: `x` and `grad_out` any shape, equal lengths; the result has the same length.

use super::elementwise::sigmoid_scalar;

/// `σ′(x) = σ(x)·(1 − σ(x))`, evaluated as `σ(x)·σ(−x)` with the overflow-safe
/// [`sigmoid_scalar`]: for large x, `1 − σ(x)` would cancel to 0 while `σ(−x)` keeps full
/// relative precision.
pub fn sigmoid_derivative(x: f64) -> f64 {
    sigmoid_scalar(x) * sigmoid_scalar(-x)
}

/// `d/dx [x·σ(x)] = σ(x)·(1 + x·(1 − σ(x)))`, with `1 − σ(x)` taken as `σ(−x)` for the same
/// cancellation reason as [`sigmoid_derivative`].
pub fn silu_derivative(x: f64) -> f64 {
    sigmoid_scalar(x) * (1.0 + x * sigmoid_scalar(-x))
}

/// Derivative of the **tanh-approximation** GELU of
/// [`gelu_scalar`](super::elementwise::gelu_scalar) (the same formula the forward and the JIT
/// backends use, so the gradient is of the function actually computed): with
/// `u = √(2/π)·(x + 0.044715·x³)`,
/// `0.5·(1 + tanh u) + 0.5·x·(1 − tanh² u)·√(2/π)·(1 + 3·0.044715·x²)`.
pub fn gelu_derivative(x: f64) -> f64 {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    let th = (c * (x + 0.044715 * x * x * x)).tanh();
    0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * c * (1.0 + 3.0 * 0.044715 * x * x)
}

/// `dx = σ′(x) ⊙ dy`.
pub fn sigmoid_backward(x: &[f64], grad_out: &[f64]) -> Vec<f64> {
    map_backward(x, grad_out, sigmoid_derivative)
}

/// `dx = silu′(x) ⊙ dy`.
pub fn silu_backward(x: &[f64], grad_out: &[f64]) -> Vec<f64> {
    map_backward(x, grad_out, silu_derivative)
}

/// `dx = gelu′(x) ⊙ dy` (tanh approximation, see [`gelu_derivative`]).
pub fn gelu_backward(x: &[f64], grad_out: &[f64]) -> Vec<f64> {
    map_backward(x, grad_out, gelu_derivative)
}

/// `dx = eˣ ⊙ dy`. Takes the input rather than the saved output so every activation here has
/// the same calling convention.
pub fn exp_backward(x: &[f64], grad_out: &[f64]) -> Vec<f64> {
    map_backward(x, grad_out, f64::exp)
}

fn map_backward(x: &[f64], grad_out: &[f64], df: impl Fn(f64) -> f64) -> Vec<f64> {
    debug_assert_eq!(x.len(), grad_out.len());
    x.iter().zip(grad_out).map(|(&v, g)| df(v) * g).collect()
}
