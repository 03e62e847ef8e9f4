//! The GEMM family: `Gemm` sections (`lower::linear::gemm_section` with its bias and
//! epilogue store) run the register-tiled dot-form NEON kernel of [`dot`].
//!
//! Selection: `Emitted` when the kernel is a `Gemm` over f32 activations whose section is
//! exactly the loop nest the lowering builds for its descriptor's geometry (rebuilt and
//! compared, see [`form`]) and whose store block is one template over the tile's columns
//! that [`neon`] can translate; `Declined` with the reason otherwise (f16 activations, a
//! store that reads the output, an op such as `select`, `log` or `min` in the epilogue, …).
//! The weight picks the variant: f32 → `gemm.f32.dot`; f16 (`quantize { dense = f16 }`)
//! → `gemm.f16.dot` with FEAT_FP16, else `gemm.f16w.dot` (`BFLY_AARCH64_FEATURES` without
//! `fp16` forces the latter).
//!
//! ```text
//! gemm/canon.rs     renumbering for section comparison; rows expression → dims
//! gemm/form.rs      forward matcher (rebuild with `lower_op`, compare, extract the store)
//! gemm/template.rs  the store block as a per-column template (DAG of f32 ops and loads)
//! gemm/neon.rs      NEON translation of a template, one row of 4 (or 1..3) columns
//! gemm/intexpr.rs   integer index expressions into general registers
//! gemm/dot.rs       the forward kernel (5×4 dot-form tiles; f16 weights widened)
//! gemm/dot_f16.rs   its FEAT_FP16 tile (3×4, FMLA .8h over bounded chunks)
//! gemm/axpy.rs      the backward kernels (`gemm_grad`: dx = dy·w, dW = dyᵀ·x)
//! ```

mod axpy;
mod canon;
mod dot;
mod dot_f16;
mod form;
mod intexpr;
mod neon;
mod template;

pub(super) use axpy::{DwForm, DxForm, emit_dw, emit_dx};

use super::{SectionCtx, Selection};
use bfly_ir::DType;
use bfly_ir::kernel::KernelKind;

pub fn try_emit(ctx: &SectionCtx) -> Selection {
    let KernelKind::Gemm(desc) = &ctx.kernel.kind else {
        return Selection::NotMine;
    };
    if desc.dtype != DType::F32 {
        return Selection::Declined(format!("gemm: {} activations", desc.dtype));
    }
    let form = match form::match_forward(ctx, desc) {
        Ok(f) => f,
        Err(why) => return Selection::Declined(format!("gemm: {why}")),
    };
    let variant = dot::Variant::for_form(&form, ctx.features.fp16);
    match dot::emit(&form, variant) {
        Ok(m) => Selection::Emitted(m),
        Err(e) => Selection::Declined(format!("gemm: emission ({variant:?}): {e}")),
    }
}
