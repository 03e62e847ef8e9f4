//! `rows`: the f32 row reductions of `lower/norm.rs` — `row{rmsnorm}`, `row{layernorm}`
//! and `row{softmax}` — one parallel iteration per row, each row in vector passes.
//!
//! Matching builds the section with the lowering's own builders (`lower::norm`) for the
//! descriptor's `cols` and the `eps` read off the body (`section_match`), so every
//! constant, index and operation order is checked. Declined: f16/int params, aliased params (in-place forms), any other body.
//! Other row ops (`cross_entropy`, `quantize`) are `NotMine`.
//!
//! Results: the per-element operations are the body's, in its order, with IEEE FDIV/FSQRT
//! (`1.0 / sqrt(ss / cols + eps)` exactly as written, once per row); the only difference
//! from the Cranelift code is the association (and fusion, FMLA) of the row sums, which the
//! body's `vector` loops allow. Softmax uses `neon_math::exp_4s`, the Cranelift sequence
//! bit for bit.

use super::common::{
    RowSplit as Split, counted, finish, load_params, match_params, parallel_loop, parallel_range,
    row_len, select, template,
};
use super::neon_math::{EXP_OPS, ExpConsts, exp_4s};
use super::{Microkernel, SectionCtx, Selection};
use crate::aarch64::emit::{Asm, LO, V, Width, X};
use crate::lower::norm::{NormParams, norm_section, softmax_section};
use bfly_ir::DType;
use bfly_ir::kernel::{BinOp, Expr, KernelKind, Stmt, UnOp};

/// Which row op.
#[derive(Clone, Copy, Debug, PartialEq)]
enum RowKind {
    RmsNorm { eps: f32 },
    LayerNorm { eps: f32 },
    Softmax,
}

impl RowKind {
    fn name(self) -> &'static str {
        match self {
            RowKind::RmsNorm { .. } => "rmsnorm",
            RowKind::LayerNorm { .. } => "layernorm",
            RowKind::Softmax => "softmax",
        }
    }

    /// Params in the lowering's order.
    fn roles(self) -> &'static [&'static str] {
        match self {
            RowKind::RmsNorm { .. } => &["x", "gain", "y"],
            RowKind::LayerNorm { .. } => &["x", "gain", "bias", "y"],
            RowKind::Softmax => &["x", "y"],
        }
    }
}

/// A recognised row section: the op, the row length and the actual param of each role.
#[derive(Clone, Debug, PartialEq)]
struct RowPlan {
    kind: RowKind,
    cols: i64,
    /// Actual param index per role (`RowKind::roles` order).
    params: Vec<u32>,
}

/// The family entry point.
pub fn try_emit(ctx: &SectionCtx) -> Selection {
    let KernelKind::RowOp { op, cols } = &ctx.kernel.kind else {
        return Selection::NotMine;
    };
    if !matches!(op.as_str(), "rmsnorm" | "layernorm" | "softmax") {
        return Selection::NotMine;
    }
    select(&format!("rows.{op}"), recognise(ctx, op, *cols), emit)
}

// ---------------------------------------------------------------------------------------
// Recognition.

fn recognise(ctx: &SectionCtx, op: &str, cols: u64) -> Result<RowPlan, String> {
    let (start, end) = parallel_range(ctx)?;
    let cols = row_len(cols)?;
    let section = &ctx.body.stmts[ctx.section];
    let kind = match op {
        "softmax" => RowKind::Softmax,
        "rmsnorm" => RowKind::RmsNorm {
            eps: read_eps(section).ok_or("no `1 / sqrt(ss / cols + eps)` statement")?,
        },
        _ => RowKind::LayerNorm {
            eps: read_eps(section).ok_or("no `1 / sqrt(var / cols + eps)` statement")?,
        },
    };
    let template = template(kind.roles(), |b, p| {
        let (start, end) = (start.clone(), end.clone());
        match kind {
            RowKind::Softmax => softmax_section(b, start, end, cols, (p[0], p[1]), true),
            RowKind::RmsNorm { eps } | RowKind::LayerNorm { eps } => {
                let layer = matches!(kind, RowKind::LayerNorm { .. });
                let params = NormParams {
                    x: p[0],
                    gain: p[1],
                    bias: layer.then(|| p[2]),
                    y: p[p.len() - 1],
                };
                norm_section(b, start, end, cols, eps, params);
            }
        }
    });
    let roles: Vec<(&str, DType)> = kind.roles().iter().map(|&n| (n, DType::F32)).collect();
    let params = match_params(
        ctx,
        &template,
        &roles,
        "the section differs from the lowering's form (f16 result, aliased params?)",
    )?;
    Ok(RowPlan { kind, cols, params })
}

/// `eps` of `let inv = 1.0 / sqrt(ss / cols + eps)` anywhere in the row loop.
fn read_eps(section: &Stmt) -> Option<f32> {
    let Stmt::For { body, .. } = section else {
        return None;
    };
    body.iter().find_map(|s| match s {
        Stmt::Let {
            value: Expr::Bin(BinOp::Div, one, root),
            ..
        } if **one == Expr::F32(1.0) => match &**root {
            Expr::Un(UnOp::Sqrt, arg) => match &**arg {
                Expr::Bin(BinOp::Add, _, eps) => match **eps {
                    Expr::F32(e) => Some(e),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        },
        _ => None,
    })
}

// ---------------------------------------------------------------------------------------
// Emission.

// General registers: param bases, the current row's pointers, pass cursors, a counter.
const XB: X = X(4);
const GB: X = X(5);
const BB: X = X(6);
const YB: X = X(7);
const XC: X = X(8);
const YC: X = X(9);
const GC: X = X(10);
const BC: X = X(11);
const CNT: X = X(12);
const ROW_BYTES: X = X(13);
const XROW: X = X(14);
const YROW: X = X(15);
const ROW: X = LO;

// Vector registers (none callee-saved): accumulators v0..v3, row data v4..v7, gain
// v20..v23, bias v24..v27, per-row scalars and constants v16..v19, v28..v31.
const ACC: [V; 4] = [V(0), V(1), V(2), V(3)];
const XV: [V; 4] = [V(4), V(5), V(6), V(7)];
const GV: [V; 4] = [V(20), V(21), V(22), V(23)];
const BV: [V; 4] = [V(24), V(25), V(26), V(27)];
const COLS_F: V = V(16);
const EPS: V = V(17);
const ONE: V = V(18);
const INV: V = V(19);
const MEAN: V = V(28);
// Softmax: exp constants v16..v28, the max v29, two sums v30/v31.
const EXP_FIRST: u32 = 16;
const MAXV: V = V(29);
const SUM: [V; 2] = [V(30), V(31)];

fn emit(plan: &RowPlan) -> Result<Microkernel, String> {
    let mut asm = Asm::new();
    let split = Split::of(plan.cols);
    asm.comment(format!(
        "rows.{} cols = {}: per row {}×16 + {}×4 + {}×1",
        plan.kind.name(),
        plan.cols,
        split.by16,
        split.by4,
        split.by1
    ));
    let bases: &[X] = match plan.kind {
        RowKind::RmsNorm { .. } => &[XB, GB, YB],
        RowKind::LayerNorm { .. } => &[XB, GB, BB, YB],
        RowKind::Softmax => &[XB, YB],
    };
    let args: Vec<(X, u32)> = bases
        .iter()
        .copied()
        .zip(plan.params.iter().copied())
        .collect();
    load_params(&mut asm, &args);
    asm.mov_imm(ROW_BYTES, 4 * plan.cols);
    let exp = match plan.kind {
        RowKind::Softmax => Some(ExpConsts::load(&mut asm, EXP_FIRST)),
        RowKind::RmsNorm { eps } | RowKind::LayerNorm { eps } => {
            asm.const_4s(COLS_F, plan.cols as f32);
            asm.const_4s(EPS, eps);
            asm.const_4s(ONE, 1.0);
            None
        }
    };
    let mut useful = 0;
    parallel_loop(&mut asm, |asm, _| {
        asm.comment("row loop: row pointers");
        asm.madd(XROW, ROW, ROW_BYTES, XB);
        asm.madd(YROW, ROW, ROW_BYTES, YB);
        useful = match (plan.kind, exp) {
            (RowKind::Softmax, Some(c)) => softmax_row(asm, split, &c),
            (RowKind::LayerNorm { .. }, _) => norm_row(asm, split, true),
            _ => norm_row(asm, split, false),
        };
    });
    let name = format!("rows.f32.{} 4x4", plan.kind.name());
    finish(asm, name, tile_comment(plan.kind), useful)
}

fn tile_comment(kind: RowKind) -> &'static str {
    match kind {
        RowKind::RmsNorm { .. } | RowKind::LayerNorm { .. } => {
            "\
one row per parallel iteration, 16 floats per loop step:
  v0..v3   four partial sums (Σx, then Σc² with c = x − mean for layernorm)
  v4..v7   16 row floats (LD1 ×4), v20..v23 gain, v24..v27 bias
  v16 cols, v17 eps, v18 1.0, v19 inv = 1/sqrt(Σc²/cols + eps) (FDIV, FSQRT, FDIV)
  v28 mean (layernorm)
hot loop (Σc²): LD1 ×4, [FSUB ×4], FMLA ×4; store pass: y = c·inv·gain (+ bias)"
        }
        RowKind::Softmax => {
            "\
one row per parallel iteration:
  pass 1   v0..v3 running max over 16 floats per step (FMAX), reduced by FMAXV
  pass 2   8 floats per step: e = exp(x − max) (v4, v0 with temps v5..v7, v1..v3),
           stored to y, summed in v30/v31
  pass 3   y = e / sum (FDIV ×4 per 16 floats)
  v16..v28 exp constants, v29 max
hot loop (pass 2): 2 × (FSUB + 32-op exp + FADD)"
        }
    }
}

/// What a summing pass accumulates.
#[derive(Clone, Copy, PartialEq)]
enum SumOf {
    Values,
    Squares,
    /// `(x − mean)²` with the broadcast mean in the register.
    CenteredSquares(V),
}

/// One norm row: (mean), Σc², inv, then the scaled store. Returns the hot loop's useful
/// vector instructions.
fn norm_row(asm: &mut Asm, split: Split, layer: bool) -> u32 {
    let what = if layer {
        asm.comment("mean = Σx / cols");
        sum_pass(asm, split, SumOf::Values);
        asm.fdiv_s(MEAN, ACC[0], COLS_F);
        asm.dup_4s_lane(MEAN, MEAN, 0);
        SumOf::CenteredSquares(MEAN)
    } else {
        SumOf::Squares
    };
    asm.comment("Σc² (four partial sums); inv = 1 / sqrt(Σc² / cols + eps)");
    sum_pass(asm, split, what);
    asm.fdiv_s(INV, ACC[0], COLS_F);
    asm.fadd_s(INV, INV, EPS);
    asm.fsqrt_s(INV, INV);
    asm.fdiv_s(INV, ONE, INV);
    asm.comment("y = c·inv·gain (+ bias)");
    scale_pass(asm, split, layer);
    if layer { 8 } else { 4 }
}

/// Reduces the row into scalar `ACC[0]` (four vector partial sums, then the tail).
fn sum_pass(asm: &mut Asm, split: Split, what: SumOf) {
    let step = |asm: &mut Asm, acc: V, x: V| match what {
        SumOf::Values => asm.fadd_4s(acc, acc, x),
        SumOf::Squares => asm.fmla_4s(acc, x, x),
        SumOf::CenteredSquares(m) => {
            asm.fsub_4s(x, x, m);
            asm.fmla_4s(acc, x, x);
        }
    };
    for a in ACC {
        asm.zero(a);
    }
    asm.mov(XC, XROW);
    counted(asm, CNT, split.by16, what != SumOf::Values, |asm| {
        asm.ld1_4s(XV[0], 4, XC, true);
        for (a, x) in ACC.into_iter().zip(XV) {
            step(asm, a, x);
        }
    });
    for &a in ACC.iter().take(split.by4 as usize) {
        asm.ldr_post(Width::Q, XV[0], XC, 16);
        step(asm, a, XV[0]);
    }
    asm.fadd_4s(ACC[0], ACC[0], ACC[1]);
    asm.fadd_4s(ACC[2], ACC[2], ACC[3]);
    asm.fadd_4s(ACC[0], ACC[0], ACC[2]);
    asm.fsum_4s(ACC[0], ACC[0]);
    let x = XV[0];
    for _ in 0..split.by1 {
        asm.ldr_post(Width::S, x, XC, 4);
        match what {
            SumOf::Values => asm.fadd_s(ACC[0], ACC[0], x),
            SumOf::Squares => asm.fmadd_s(ACC[0], x, x, ACC[0]),
            SumOf::CenteredSquares(m) => {
                asm.fsub_s(x, x, m);
                asm.fmadd_s(ACC[0], x, x, ACC[0]);
            }
        }
    }
}

/// `y = (x − mean)·inv·gain + bias` (layernorm) or `x·inv·gain` (rmsnorm), in the body's
/// order of operations.
fn scale_pass(asm: &mut Asm, split: Split, layer: bool) {
    asm.mov(XC, XROW);
    asm.mov(YC, YROW);
    asm.mov(GC, GB);
    if layer {
        asm.mov(BC, BB);
    }
    let vec = |asm: &mut Asm, x: V, g: V, b: V| {
        if layer {
            asm.fsub_4s(x, x, MEAN);
        }
        asm.fmul_4s_lane(x, x, INV, 0);
        asm.fmul_4s(x, x, g);
        if layer {
            asm.fadd_4s(x, x, b);
        }
    };
    counted(asm, CNT, split.by16, false, |asm| {
        asm.ld1_4s(XV[0], 4, XC, true);
        asm.ld1_4s(GV[0], 4, GC, true);
        if layer {
            asm.ld1_4s(BV[0], 4, BC, true);
        }
        for i in 0..4 {
            vec(asm, XV[i], GV[i], BV[i]);
        }
        asm.st1_4s(XV[0], 4, YC, true);
    });
    for _ in 0..split.by4 {
        asm.ldr_post(Width::Q, XV[0], XC, 16);
        asm.ldr_post(Width::Q, GV[0], GC, 16);
        if layer {
            asm.ldr_post(Width::Q, BV[0], BC, 16);
        }
        vec(asm, XV[0], GV[0], BV[0]);
        asm.str_post(Width::Q, XV[0], YC, 16);
    }
    let (x, g, b) = (XV[0], GV[0], BV[0]);
    for _ in 0..split.by1 {
        asm.ldr_post(Width::S, x, XC, 4);
        asm.ldr_post(Width::S, g, GC, 4);
        if layer {
            asm.ldr_post(Width::S, b, BC, 4);
            asm.fsub_s(x, x, MEAN);
        }
        asm.fmul_s(x, x, INV);
        asm.fmul_s(x, x, g);
        if layer {
            asm.fadd_s(x, x, b);
        }
        asm.str_post(Width::S, x, YC, 4);
    }
}

/// One softmax row: max, `e = exp(x − max)` stored to y and summed, then `y = e / sum`.
/// Returns the hot loop's vector instructions.
fn softmax_row(asm: &mut Asm, split: Split, c: &ExpConsts) -> u32 {
    asm.comment("pass 1: max");
    asm.const_4s(ACC[0], f32::NEG_INFINITY);
    for a in &ACC[1..] {
        asm.mov_v(*a, ACC[0]);
    }
    asm.mov(XC, XROW);
    counted(asm, CNT, split.by16, false, |asm| {
        asm.ld1_4s(XV[0], 4, XC, true);
        for (a, x) in ACC.into_iter().zip(XV) {
            asm.fmax_4s(a, a, x);
        }
    });
    for &a in ACC.iter().take(split.by4 as usize) {
        asm.ldr_post(Width::Q, XV[0], XC, 16);
        asm.fmax_4s(a, a, XV[0]);
    }
    asm.fmax_4s(ACC[0], ACC[0], ACC[1]);
    asm.fmax_4s(ACC[2], ACC[2], ACC[3]);
    asm.fmax_4s(ACC[0], ACC[0], ACC[2]);
    asm.fmaxv_s(ACC[0], ACC[0]);
    for _ in 0..split.by1 {
        asm.ldr_post(Width::S, XV[0], XC, 4);
        asm.fmax_s(ACC[0], ACC[0], XV[0]);
    }
    asm.dup_4s_lane(MAXV, ACC[0], 0);

    asm.comment("pass 2: e = exp(x − max) → y, Σe");
    asm.mov(XC, XROW);
    asm.mov(YC, YROW);
    asm.zero(SUM[0]);
    asm.zero(SUM[1]);
    // Two independent 4-lane exps per step: (x in v4, temps v5..v7), (v0, temps v1..v3).
    let lanes = [
        (XV[0], [XV[1], XV[2], XV[3]]),
        (ACC[0], [ACC[1], ACC[2], ACC[3]]),
    ];
    let cols = 16 * split.by16 + 4 * split.by4;
    counted(asm, CNT, cols / 8, true, |asm| {
        for (x, _) in lanes {
            asm.ldr_post(Width::Q, x, XC, 16);
            asm.fsub_4s(x, x, MAXV);
        }
        for (x, t) in lanes {
            exp_4s(asm, c, x, t);
        }
        for (i, (x, _)) in lanes.into_iter().enumerate() {
            asm.str_post(Width::Q, x, YC, 16);
            asm.fadd_4s(SUM[i], SUM[i], x);
        }
    });
    let (x, t) = lanes[0];
    if cols % 8 == 4 {
        asm.ldr_post(Width::Q, x, XC, 16);
        asm.fsub_4s(x, x, MAXV);
        exp_4s(asm, c, x, t);
        asm.str_post(Width::Q, x, YC, 16);
        asm.fadd_4s(SUM[0], SUM[0], x);
    }
    asm.fadd_4s(SUM[0], SUM[0], SUM[1]);
    asm.fsum_4s(SUM[0], SUM[0]);
    for _ in 0..split.by1 {
        // Lanes 1..3 hold exp(0 − max): computed, never stored or summed.
        asm.ldr_post(Width::S, x, XC, 4);
        asm.fsub_4s(x, x, MAXV);
        exp_4s(asm, c, x, t);
        asm.str_post(Width::S, x, YC, 4);
        asm.fadd_s(SUM[0], SUM[0], x);
    }
    asm.dup_4s_lane(SUM[0], SUM[0], 0);

    asm.comment("pass 3: y = e / Σe");
    asm.mov(XC, YROW);
    asm.mov(YC, YROW);
    counted(asm, CNT, split.by16, false, |asm| {
        asm.ld1_4s(XV[0], 4, XC, true);
        for x in XV {
            asm.fdiv_4s(x, x, SUM[0]);
        }
        asm.st1_4s(XV[0], 4, YC, true);
    });
    for _ in 0..split.by4 {
        asm.ldr_post(Width::Q, x, XC, 16);
        asm.fdiv_4s(x, x, SUM[0]);
        asm.str_post(Width::Q, x, YC, 16);
    }
    for _ in 0..split.by1 {
        asm.ldr_post(Width::S, x, XC, 4);
        asm.fdiv_s(x, x, SUM[0]);
        asm.str_post(Width::S, x, YC, 4);
    }
    2 * (EXP_OPS + 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_split_emits() {
        for cols in [1, 3, 4, 7, 8, 12, 16, 17, 31, 64, 100, 300] {
            for kind in [
                RowKind::RmsNorm { eps: 1e-5 },
                RowKind::LayerNorm { eps: 1e-6 },
                RowKind::Softmax,
            ] {
                let n = kind.roles().len() as u32;
                let plan = RowPlan {
                    kind,
                    cols,
                    params: (0..n).collect(),
                };
                let m = emit(&plan).unwrap_or_else(|e| panic!("{cols} {kind:?}: {e}"));
                let hot = m.code.mark("hot_loop").is_some();
                assert_eq!(hot, m.useful_per_iter > 0, "{cols} {kind:?}");
            }
        }
    }
}
