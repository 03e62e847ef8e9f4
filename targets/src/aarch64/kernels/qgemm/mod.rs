//! `qgemm`: the int8 GEMM of `qmatmul` (`KernelKind::QGemm`) — i32 accumulation of
//! `xq[M, K] · wq[N, K]ᵀ`, then `y = f32(acc) · xs[row] · ws[col] (+ bias) (+ links)`.
//!
//! Variants: `qgemm.i8.sdot` with FEAT_DotProd, `qgemm.i8.smull` (SMULL/SMULL2 + SADALP)
//! without. Declined: grouped or non-int8 descriptors, K < 16 or K large enough to overflow
//! i32, epilogue functions other than add/sub/mul/neg/scale, operands broadcast other than
//! per element, per column or per row, and any body that differs from the `qmatmul` form.
//!
//! ```text
//! matcher.rs  strict recognition (read the epilogue, rebuild the section, compare)
//! emit.rs     the register-tiled code for both variants
//! ```

mod emit;
mod matcher;

use super::{SectionCtx, Selection};
use bfly_ir::kernel::KernelKind;
pub use emit::Variant;

/// The family entry point.
pub fn try_emit(ctx: &SectionCtx) -> Selection {
    let KernelKind::QGemm(desc) = &ctx.kernel.kind else {
        return Selection::NotMine;
    };
    let plan = match matcher::recognise(desc, ctx.body, ctx.section) {
        Ok(p) => p,
        Err(why) => return Selection::Declined(format!("qgemm: {why}")),
    };
    let variant = if ctx.features.dotprod {
        Variant::Sdot
    } else {
        Variant::Smull
    };
    match emit::emit(&plan, variant) {
        Ok(m) => Selection::Emitted(m),
        Err(e) => Selection::Declined(format!("qgemm: emission: {e}")),
    }
}
