//! The reference backend's math: pure functions on row-major `f64` slices.
//!
//! This is the oracle every JIT backend is tested against, so it deliberately depends on no IR
//! type and no lowering code: a bug in shape inference or lowering cannot leak into the answer
//! it is checked against. Everything is computed and accumulated in `f64`.
//!
//! Shape contracts are documented on each function. Callers (the interpreter) validate shapes
//! before calling; the kernels only `debug_assert!` them, because a wrong length here is a bug
//! in the caller, not a user error. Data-dependent errors (token ids, targets) are `Result`s,
//! because no shape check can rule them out.

pub mod attention;
pub mod attention_backward;
pub mod butterfly;
pub mod elementwise;
pub mod elementwise_backward;
pub mod linear;
pub mod linear_backward;
pub mod loss;
pub mod loss_backward;
pub mod monarch;
pub mod monarch_backward;
pub mod norm;
pub mod norm_backward;
pub mod quant;
pub mod ternary_backward;

#[cfg(test)]
mod test_util;
#[cfg(test)]
mod tests_attention_backward;
#[cfg(test)]
mod tests_backward;
#[cfg(test)]
mod tests_butterfly;
#[cfg(test)]
mod tests_grad;
#[cfg(test)]
mod tests_misc;
#[cfg(test)]
mod tests_monarch;
