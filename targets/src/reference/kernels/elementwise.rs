//! Elementwise activations, as scalar functions and as slice maps (`[len] → [len]`).

/// Logistic sigmoid `1/(1 + e^(−x))`, evaluated on the side where `exp` cannot overflow.
pub fn sigmoid_scalar(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// SiLU (swish): `x · σ(x)`.
pub fn silu_scalar(x: f64) -> f64 {
    x * sigmoid_scalar(x)
}

/// GELU, **tanh approximation** (as in GPT-2 and PyTorch `approximate="tanh"`), not the exact
/// erf form: `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`. The JIT backends implement this
/// same formula, so the oracle must use it too.
pub fn gelu_scalar(x: f64) -> f64 {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
}

/// [`sigmoid_scalar`] over a slice of any shape.
pub fn sigmoid(x: &[f64]) -> Vec<f64> {
    x.iter().copied().map(sigmoid_scalar).collect()
}

/// [`silu_scalar`] over a slice of any shape.
pub fn silu(x: &[f64]) -> Vec<f64> {
    x.iter().copied().map(silu_scalar).collect()
}

/// [`gelu_scalar`] (tanh approximation) over a slice of any shape.
pub fn gelu(x: &[f64]) -> Vec<f64> {
    x.iter().copied().map(gelu_scalar).collect()
}
