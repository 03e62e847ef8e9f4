//! Per-op dispatch: every graph op except the sources lowers to one or more kernels.

use super::epilogue::Epilogue;
use super::shape::{R, err};
use super::site::{OpLowering, OpSite};
use super::{
    attention, butterfly, elementwise, grad, layout, linear, monarch, norm, quant, twiddles,
};
use bfly_ir::Op;

/// Lowers one node (see `site` for the contract).
pub fn lower_op(site: &OpSite) -> R<OpLowering> {
    lower_fused(site, &Epilogue::none(site))
}

/// Can this op take an epilogue (an elementwise chain folded into its store)?
pub fn takes_epilogue(op: &Op) -> bool {
    matches!(
        op,
        Op::Matmul | Op::QMatmul | Op::Butterfly { .. } | Op::Monarch { .. }
    )
}

/// Lowers a node whose site may carry an epilogue's extra operands after its own (see
/// `epilogue`); only producers accept a non-empty epilogue.
pub fn lower_fused(site: &OpSite, epi: &Epilogue) -> R<OpLowering> {
    if !epi.links.is_empty() && !takes_epilogue(site.op) {
        return err(site, "takes no epilogue");
    }
    if epi.base > site.operands.len() {
        return err(site, "epilogue operands out of range");
    }
    match site.op {
        Op::Input { .. } | Op::Param(_) => err(site, "sources are not lowered"),
        Op::Matmul => linear::matmul(site, epi),
        Op::QMatmul => linear::qmatmul(site, epi),
        Op::Lora { scale } => linear::lora(site, *scale),
        Op::Butterfly {
            n_in,
            n_out,
            stride,
        } => butterfly::lower(site, *n_in, *n_out, *stride, epi),
        Op::Monarch { n_in, n_out } => monarch::lower(site, *n_in, *n_out, epi),
        Op::GivensTwiddles
        | Op::DibTwiddles { .. }
        | Op::HadamardTwiddles { .. }
        | Op::TernaryTwiddles { .. } => twiddles::lower(site),
        Op::Add
        | Op::Sub
        | Op::Mul
        | Op::Neg
        | Op::Exp
        | Op::Silu
        | Op::Gelu
        | Op::Sigmoid
        | Op::Scale { .. } => elementwise::lower(site),
        Op::RmsNorm { .. } | Op::LayerNorm { .. } | Op::Softmax | Op::CrossEntropy => {
            norm::lower(site)
        }
        Op::Rope { heads, base } => attention::rope(site, *heads, *base),
        Op::CausalAttention { heads, kv_heads } => {
            attention::causal_attention(site, *heads, *kv_heads)
        }
        Op::Reshape { .. }
        | Op::Transpose { .. }
        | Op::Split { .. }
        | Op::Concat { .. }
        | Op::Cast { .. }
        | Op::Fill { .. }
        | Op::Embed => layout::lower(site),
        Op::Quantize | Op::Dequantize => quant::lower(site),
        Op::Grad(_) | Op::Sgd { .. } | Op::AdamW { .. } => grad::lower_grad(site),
    }
}
