//! Kernel IR lowerings of the backward ops (`OP.grad`) and the optimizer updates (`sgd`,
//! `adamw`).
//!
//! Each lowering mirrors the f64 reference VJP of `reference/interp_grad.rs` and
//! `reference/kernels/*_backward.rs` in f32, with one rule for every body: a top-level
//! parallel loop writes disjoint elements, and every sum over tokens or rows runs inside one
//! iteration in a fixed order, so the results do not depend on the thread count. Multi-phase
//! VJPs (a `dx` over rows, then a `dW` over weights) are one kernel with several sections.
//!
//! Operands of `OP.grad` are the forward operands, then one upstream gradient per forward
//! result; results are the gradients of the float forward operands, in operand order.

mod attention;
pub(crate) mod butterfly;
mod elementwise;
mod finish;
mod layout;
mod linear;
mod matmul;
mod monarch;
mod norm;
mod optim;
mod twiddles;
mod util;

use crate::lower::site::{ArgRef, LowerError, OpLowering, OpSite};
use bfly_ir::{Op, Type};

/// Lowers `OP.grad` for every differentiable forward op, plus `sgd` and `adamw`.
pub fn lower_grad(site: &OpSite) -> Result<OpLowering, LowerError> {
    match site.op {
        Op::Grad(inner) => lower_vjp(site, inner),
        Op::Sgd { lr } => optim::sgd(site, *lr),
        Op::AdamW {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
        } => optim::adamw(
            site,
            &optim::AdamW {
                lr: *lr,
                beta1: *beta1,
                beta2: *beta2,
                eps: *eps,
                weight_decay: *weight_decay,
            },
        ),
        other => Err(LowerError::new(format!(
            "`{}` is not a gradient or optimizer op",
            other.name()
        ))),
    }
}

/// The operands of one `OP.grad` site: the forward operands, then the upstream gradients.
pub(crate) struct Vjp<'a> {
    pub fwd: &'a [Type],
    pub ups: &'a [Type],
}

impl Vjp<'_> {
    /// Operand slot of upstream gradient `i`.
    pub fn up(&self, i: usize) -> ArgRef {
        ArgRef::Operand(self.fwd.len() + i)
    }

    /// Result slot of the gradient of forward operand `j` (integer operands have none).
    pub fn grad_of(&self, j: usize) -> Result<ArgRef, LowerError> {
        let is_float = |t: &Type| t.dtype.is_float();
        match self.fwd.get(j) {
            Some(t) if is_float(t) => Ok(ArgRef::Result(
                self.fwd[..j].iter().filter(|t| is_float(t)).count(),
            )),
            _ => Err(LowerError::new(format!(
                "operand {j} has no gradient (missing or not float)"
            ))),
        }
    }
}

fn lower_vjp(site: &OpSite, inner: &Op) -> Result<OpLowering, LowerError> {
    let name = inner.name();
    if !inner.is_differentiable() {
        return Err(LowerError::new(format!("`{name}` has no gradient")));
    }
    let split = site
        .operands
        .len()
        .checked_sub(inner.num_results())
        .ok_or_else(|| LowerError::new(format!("`{name}.grad` has too few operands")))?;
    let (fwd, ups) = site.operands.split_at(split);
    let (lo, hi) = inner.arity();
    if fwd.len() < lo || fwd.len() > hi {
        return Err(LowerError::new(format!(
            "`{name}.grad` has {} forward operands, `{name}` takes {lo} to {hi}",
            fwd.len()
        )));
    }
    let floats = fwd.iter().filter(|t| t.dtype.is_float()).count();
    if site.results.len() != floats {
        return Err(LowerError::new(format!(
            "`{name}.grad` must have {floats} results (one per float operand), found {}",
            site.results.len()
        )));
    }
    for (r, t) in site
        .results
        .iter()
        .zip(fwd.iter().filter(|t| t.dtype.is_float()))
    {
        if r.dims != t.dims {
            return Err(LowerError::new(format!(
                "`{name}.grad` result {r} must be shaped like its operand {t}"
            )));
        }
    }
    let v = Vjp { fwd, ups };
    match inner {
        Op::Embed => linear::embed(&v),
        Op::Matmul => matmul::matmul(&v),
        Op::Lora { scale } => linear::lora(&v, *scale),
        Op::Butterfly {
            n_in,
            n_out,
            stride,
        } => butterfly::butterfly(&v, *n_in, *n_out, stride.is_increasing()),
        Op::Monarch { n_in, n_out } => monarch::monarch(&v, *n_in, *n_out),
        Op::GivensTwiddles => twiddles::givens(&v),
        Op::DibTwiddles { stride } => twiddles::dib(&v, stride.is_increasing()),
        Op::TernaryTwiddles { .. } => twiddles::ternary(&v),
        Op::Add | Op::Sub | Op::Mul => elementwise::binary(&v, inner),
        Op::Neg | Op::Exp | Op::Silu | Op::Gelu | Op::Sigmoid | Op::Scale { .. } => {
            elementwise::unary(&v, inner)
        }
        Op::RmsNorm { eps } => norm::rmsnorm(&v, *eps),
        Op::LayerNorm { eps } => norm::layernorm(&v, *eps),
        Op::Softmax => norm::softmax(&v),
        Op::CrossEntropy => norm::cross_entropy(&v),
        Op::Rope { heads, base } => attention::rope(&v, *heads, *base),
        Op::CausalAttention { heads, kv_heads } => attention::attention(&v, *heads, *kv_heads),
        Op::Reshape { .. } => layout::reshape(&v),
        Op::Transpose { perm } => layout::transpose(&v, perm),
        Op::Split { axis, sizes } => layout::split(&v, *axis, sizes),
        Op::Concat { axis } => layout::concat(&v, *axis),
        Op::Cast { .. } => layout::cast(&v),
        // Listed rather than `_` so a new op must decide here whether it has a lowering.
        Op::Input { .. }
        | Op::Param(_)
        | Op::HadamardTwiddles { .. }
        | Op::Quantize
        | Op::Dequantize
        | Op::QMatmul
        | Op::Fill { .. }
        | Op::Grad(_)
        | Op::Sgd { .. }
        | Op::AdamW { .. } => Err(LowerError::new(format!("`{name}` has no gradient"))),
    }
}
