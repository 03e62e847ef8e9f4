//! `quantize`: `row{quantize}` of `lower/quant.rs` — symmetric per-row int8 quantization
//! (`scale = max|x| / 127`, 1 for an all-zero row; `q = clamp(round_half_away(x / scale),
//! ±127)`), one parallel iteration per row. Used for the activations of every int8
//! projection at each decode step, and at load for the weights.
//!
//! Matching builds the section with the lowering's own builder
//! (`lower::quant::quantize_section`) for the descriptor's `cols` (`section_match`), so
//! every constant and operation is checked. Declined: any other body, params that are
//! not `x: f32, q: i8, scale: f32`, aliased params.
//!
//! Results are bit-exact with the body (the interpreter and Cranelift):
//! - `max(a, abs(x))` from `0.0` is FABS/FMAX in four vector accumulators, reduced by FMAX
//!   and FMAXV: the values are all `≥ +0.0` (or NaN), where max is exact, associative and
//!   commutative, so the order does not change the result (NaN stays NaN; only a NaN's
//!   payload could differ, and no int8 value depends on it). A NaN input makes the scale
//!   NaN and the row's q 0, as in Cranelift's NaN-propagating `max` (the interpreter's
//!   `f32::max` would drop it).
//! - `scale` and `x / scale` are IEEE FDIVs as written (no reciprocal multiply).
//! - The body's rounding `t = f32(int(|v|)); r = t + (0.5 <= |v| − t); ±r` then
//!   `int(max(min(·, 127), −127))` equals FCVTAS (round to nearest, ties away, saturating
//!   to i32, NaN → 0) followed by a clamp to `[−127, 127]`: for finite `|v| < 2^63`, `t`
//!   is the exact truncation and `|v| − t` the exact fraction, so `r` is `|v|` rounded half
//!   away (exact: `t < 2^24` whenever the fraction is nonzero); larger or infinite `|v|`
//!   clamp to ±127 either way; NaN gives 0 either way (the body: `NaN` through min/max,
//!   `int(NaN) = 0`). The clamp is SQXTN to i16, SQXTN to i8 (saturating at −128/127),
//!   then SMAX with −127.

use super::common::{
    ALIASED, RowSplit as Split, counted, finish, load_params, match_params, parallel_loop,
    parallel_range, row_len, select, template,
};
use super::{Microkernel, SectionCtx, Selection};
use crate::aarch64::emit::{Asm, Cond, LO, V, Width, X};
use crate::lower::quant::quantize_section;
use bfly_ir::DType;
use bfly_ir::kernel::KernelKind;

/// A recognised quantize section: the row length and the actual params.
#[derive(Clone, Copy, Debug, PartialEq)]
struct QuantPlan {
    cols: i64,
    x: u32,
    q: u32,
    scale: u32,
}

/// The family entry point.
pub fn try_emit(ctx: &SectionCtx) -> Selection {
    let KernelKind::RowOp { op, cols } = &ctx.kernel.kind else {
        return Selection::NotMine;
    };
    if op != "quantize" {
        return Selection::NotMine;
    }
    select("quantize", recognise(ctx, *cols), emit)
}

fn recognise(ctx: &SectionCtx, cols: u64) -> Result<QuantPlan, String> {
    let (start, end) = parallel_range(ctx)?;
    let cols = row_len(cols)?;
    let template = template(&["x", "q", "scale"], |b, p| {
        quantize_section(b, start.clone(), end.clone(), cols, (p[0], p[1], p[2]));
    });
    let roles = [("x", DType::F32), ("q", DType::I8), ("scale", DType::F32)];
    let p = match_params(ctx, &template, &roles, ALIASED)?;
    Ok(QuantPlan {
        cols,
        x: p[0],
        q: p[1],
        scale: p[2],
    })
}

// ---------------------------------------------------------------------------------------
// Emission.

// General registers: param bases, the row's pointers and cursors, a loop counter.
const XB: X = X(4);
const QB: X = X(5);
const SB: X = X(6);
const XROW: X = X(7);
const QROW: X = X(8);
const XC: X = X(9);
const QC: X = X(10);
const CNT: X = X(11);
const ROW_BYTES: X = X(12);
const COLS: X = X(13);
const ROW: X = LO;

// Vector registers (none callee-saved).
const ACC: [V; 4] = [V(0), V(1), V(2), V(3)];
const XV: [V; 4] = [V(4), V(5), V(6), V(7)];
const SCALE: V = V(16);
const C127: V = V(17);
const ONE: V = V(18);
const MINUS127: V = V(19);
const H16: [V; 2] = [V(20), V(21)];
const B8: V = V(22);
const S: V = V(23);

/// FABS + FMAX per hot-loop vector, four vectors per iteration.
const USEFUL_PER_ITER: u32 = 8;

fn emit(plan: &QuantPlan) -> Result<Microkernel, String> {
    let mut asm = Asm::new();
    let split = Split::of(plan.cols);
    asm.comment(format!(
        "quantize cols = {}: per row {}×16 + {}×4 + {}×1",
        plan.cols, split.by16, split.by4, split.by1
    ));
    load_params(&mut asm, &[(XB, plan.x), (QB, plan.q), (SB, plan.scale)]);
    asm.mov_imm(ROW_BYTES, 4 * plan.cols);
    asm.mov_imm(COLS, plan.cols);
    asm.const_4s(C127, 127.0);
    asm.const_4s(ONE, 1.0);
    asm.movi_16b(MINUS127, (-127i8) as u8);
    parallel_loop(&mut asm, |asm, _| {
        asm.comment("row loop: row pointers");
        asm.madd(XROW, ROW, ROW_BYTES, XB);
        asm.madd(QROW, ROW, COLS, QB);
        absmax_pass(asm, split);
        asm.comment("scale = absmax == 0 ? 1 : absmax / 127 (FDIV); store it");
        asm.fdiv_s(S, ACC[0], C127);
        asm.fcmp_s_zero(ACC[0]);
        asm.fcsel_s(S, ONE, S, Cond::Eq);
        asm.str_idx(Width::S, S, SB, ROW);
        asm.dup_4s_lane(SCALE, S, 0);
        quantize_pass(asm, split);
    });
    finish(asm, "quantize.f32.i8 4x4".into(), TILE, USEFUL_PER_ITER)
}

const TILE: &str = "\
one row per parallel iteration, 16 floats per loop step:
  pass 1   v0..v3 running max |x| (LD1 ×4 into v4..v7, FABS ×4, FMAX ×4), then
           FMAX ×3 + FMAXV → s0 = absmax
  scale    s23 = s0 == 0 ? 1 (v18) : s0 / 127 (v17, FDIV); STR to scale[row]; v16 = dup
  pass 2   v4..v7 = x / scale (FDIV ×4), FCVTAS (ties away) ×4, SQXTN ×2 → v20/v21 (i16),
           SQXTN ×2 → v22 (i8), SMAX with v19 = −127; STR q (16 bytes)
tails: 4 floats (STR s of 4 bytes), single floats (STR b)
hot loop (pass 1): LD1 ×4, FABS ×4, FMAX ×4";

/// `ACC[0]` lane 0 = max |x| over the row (`XROW`).
fn absmax_pass(asm: &mut Asm, split: Split) {
    asm.comment("pass 1: absmax in v0..v3");
    for a in ACC {
        asm.zero(a);
    }
    asm.mov(XC, XROW);
    counted(asm, CNT, split.by16, true, |asm| {
        asm.ld1_4s(XV[0], 4, XC, true);
        for (a, x) in ACC.into_iter().zip(XV) {
            asm.fabs_4s(x, x);
            asm.fmax_4s(a, a, x);
        }
    });
    for &a in ACC.iter().take(split.by4 as usize) {
        asm.ldr_post(Width::Q, XV[0], XC, 16);
        asm.fabs_4s(XV[0], XV[0]);
        asm.fmax_4s(a, a, XV[0]);
    }
    // Single floats: LDR s zeroes lanes 1..3, and max(acc, +0) leaves acc unchanged.
    for _ in 0..split.by1 {
        asm.ldr_post(Width::S, XV[0], XC, 4);
        asm.fabs_4s(XV[0], XV[0]);
        asm.fmax_4s(ACC[0], ACC[0], XV[0]);
    }
    asm.fmax_4s(ACC[0], ACC[0], ACC[1]);
    asm.fmax_4s(ACC[2], ACC[2], ACC[3]);
    asm.fmax_4s(ACC[0], ACC[0], ACC[2]);
    asm.fmaxv_s(ACC[0], ACC[0]);
}

/// `x / scale` rounded half away from zero, as i32 lanes in `x` itself.
fn divide_round(asm: &mut Asm, x: V) {
    asm.fdiv_4s(x, x, SCALE);
    asm.fcvtas_4s(x, x);
}

/// Clamps the i8 lanes of `B8` (already saturated at −128/127 by SQXTN) to `[−127, 127]`.
fn clamp_to_i8(asm: &mut Asm) {
    asm.smax_16b(B8, B8, MINUS127);
}

/// q = clamp(round_half_away(x / scale), ±127) over the row.
fn quantize_pass(asm: &mut Asm, split: Split) {
    asm.comment("pass 2: q = clamp(round_half_away(x / scale), ±127)");
    asm.mov(XC, XROW);
    asm.mov(QC, QROW);
    counted(asm, CNT, split.by16, false, |asm| {
        asm.ld1_4s(XV[0], 4, XC, true);
        for x in XV {
            divide_round(asm, x);
        }
        asm.sqxtn_4h(H16[0], XV[0]);
        asm.sqxtn2_8h(H16[0], XV[1]);
        asm.sqxtn_4h(H16[1], XV[2]);
        asm.sqxtn2_8h(H16[1], XV[3]);
        asm.sqxtn_8b(B8, H16[0]);
        asm.sqxtn2_16b(B8, H16[1]);
        clamp_to_i8(asm);
        asm.str_post(Width::Q, B8, QC, 16);
    });
    let narrow = |asm: &mut Asm| {
        asm.sqxtn_4h(H16[0], XV[0]);
        asm.sqxtn_8b(B8, H16[0]);
        clamp_to_i8(asm);
    };
    for _ in 0..split.by4 {
        asm.ldr_post(Width::Q, XV[0], XC, 16);
        divide_round(asm, XV[0]);
        narrow(asm);
        asm.str_post(Width::S, B8, QC, 4);
    }
    for _ in 0..split.by1 {
        asm.ldr_post(Width::S, XV[0], XC, 4);
        divide_round(asm, XV[0]);
        narrow(asm);
        asm.str_post(Width::B, B8, QC, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_length_emits() {
        for cols in [1, 3, 4, 15, 16, 17, 64, 100] {
            let m = emit(&QuantPlan {
                cols,
                x: 0,
                q: 1,
                scale: 2,
            })
            .expect("emits");
            assert_eq!(m.useful_per_iter > 0, cols >= 16, "cols {cols}");
        }
    }
}
