//! `rope`: the rotary embedding of `lower/attention.rs::rope` — per row, per head,
//! `y[j] = x[j]·cos − x[j+half]·sin`, `y[j+half] = x[j]·sin + x[j+half]·cos` with
//! `(cos, sin)` interleaved in a table row of the row's position.
//!
//! Both lowering forms are matched against the section the lowering's own builder
//! (`lower::attention::rope_section`) makes (`section_match`):
//! inference, position `min(pos + row, context − 1)` (the context read off the body's
//! clamp constant), and training, position `row % T`. Declined: any other body, non-f32
//! params, aliased params.
//!
//! Results are bit-exact with the body: the same FMULs, then FSUB/FADD (no fusion into
//! FMLA/FMLS, which would round once instead of twice).

use super::common::{
    ALIASED, counted, finish, load_params, load_sym, match_params, parallel_loop, parallel_range,
    select, template,
};
use super::{Microkernel, SectionCtx, Selection};
use crate::aarch64::emit::{Asm, Cond, IP0, LO, V, Width, X};
use crate::lower::attention::{Positions, rope_section};
use bfly_ir::DType;
use bfly_ir::kernel::{BinOp, Expr, KernelKind, RtSym, Stmt};

/// Where a row's table position comes from.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Position {
    /// `min(pos + row, context − 1)`.
    Cached { context: i64 },
    /// `row % T`.
    Sequence,
}

/// A recognised rope section.
#[derive(Clone, Copy, Debug, PartialEq)]
struct RopePlan {
    heads: i64,
    head_dim: i64,
    position: Position,
    x: u32,
    table: u32,
    y: u32,
}

/// The family entry point.
pub fn try_emit(ctx: &SectionCtx) -> Selection {
    let KernelKind::Rope { heads, head_dim } = ctx.kernel.kind else {
        return Selection::NotMine;
    };
    select("rope", recognise(ctx, heads, head_dim), emit)
}

fn recognise(ctx: &SectionCtx, heads: u64, head_dim: u64) -> Result<RopePlan, String> {
    let (start, end) = parallel_range(ctx)?;
    let small = |v: u64| i64::try_from(v).ok().filter(|v| (1..=1 << 20).contains(v));
    let (Some(h), Some(hd)) = (small(heads), small(head_dim)) else {
        return Err(format!("heads {heads} × head_dim {head_dim} out of range"));
    };
    if hd % 2 != 0 || h * hd > 1 << 22 {
        return Err(format!("heads {heads} × head_dim {head_dim} not supported"));
    }
    let section = &ctx.body.stmts[ctx.section];
    let position = match read_context(section, hd) {
        Some(context) if (1..=1 << 40).contains(&context) => Position::Cached { context },
        Some(context) => return Err(format!("context {context} out of range")),
        None => Position::Sequence,
    };
    let positions = match position {
        Position::Cached { context } => Positions::Cached { context },
        Position::Sequence => Positions::Sequence {
            t: Expr::Sym(RtSym::T),
        },
    };
    let template = template(&["x", "table", "y"], |b, p| {
        let (start, end) = (start.clone(), end.clone());
        rope_section(
            b,
            start,
            end,
            (h as u64, hd),
            &positions,
            (p[0], p[1], p[2]),
        );
    });
    let roles = [("x", DType::F32), ("table", DType::F32), ("y", DType::F32)];
    let p = match_params(ctx, &template, &roles, ALIASED)?;
    Ok(RopePlan {
        heads: h,
        head_dim: hd,
        position,
        x: p[0],
        table: p[1],
        y: p[2],
    })
}

/// The context of `let tb = min(pos + row, context − 1) · head_dim`, the row loop's first
/// statement in inference.
fn read_context(section: &Stmt, hd: i64) -> Option<i64> {
    let Stmt::For { body, .. } = section else {
        return None;
    };
    let Some(Stmt::Let {
        value: Expr::Bin(BinOp::Mul, pos, scale),
        ..
    }) = body.first()
    else {
        return None;
    };
    match (&**pos, &**scale) {
        (Expr::Bin(BinOp::Min, _, last), Expr::Int(s)) if *s == hd => match **last {
            Expr::Int(c) => c.checked_add(1),
            _ => None,
        },
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// Emission.

// General registers (x0/x1 are free once the params and the symbol are read).
const HEAD_X: X = X(0);
const SYM: X = X(1);
const TB: X = X(4);
const XR: X = X(5);
const YR: X = X(6);
const HALF_BYTES: X = X(7);
const POS: X = X(8);
const TC: X = X(9);
const XL: X = X(10);
const YL: X = X(11);
const HEAD_Y: X = X(12);
const CNT_J: X = X(13);
const CNT_H: X = X(14);
const ROW: X = LO;

// Vector registers (none callee-saved).
const COS: V = V(16);
const SIN: V = V(17);
const LO_V: V = V(4);
const HI_V: V = V(5);
const T: [V; 4] = [V(20), V(21), V(23), V(24)];
const Y_LO: V = V(22);
const Y_HI: V = V(25);

/// FMUL ×4, FSUB, FADD per hot-loop iteration (one head, four pairs).
const USEFUL_PER_ITER: u32 = 6;

fn emit(plan: &RopePlan) -> Result<Microkernel, String> {
    let hd = plan.head_dim;
    let half = hd / 2;
    let (by4, by1) = ((half / 4) as u64, (half % 4) as u64);
    let row_bytes = (4 * plan.heads * hd) as u64;
    let mut asm = Asm::new();
    asm.comment(format!(
        "rope heads = {}, head_dim = {hd}: per row {by4}×4 + {by1}×1 pairs per head",
        plan.heads
    ));
    load_params(&mut asm, &[(TB, plan.table), (XR, plan.x), (YR, plan.y)]);
    let sym = match plan.position {
        Position::Cached { .. } => RtSym::Pos,
        Position::Sequence => RtSym::T,
    };
    load_sym(&mut asm, SYM, sym);
    asm.mov_imm(HALF_BYTES, 4 * half);
    asm.mul_imm(POS, ROW, row_bytes);
    asm.add(XR, XR, POS);
    asm.add(YR, YR, POS);
    parallel_loop(&mut asm, |asm, _| {
        match plan.position {
            Position::Cached { context } => {
                asm.comment("row loop: position = min(pos + row, context − 1)");
                asm.add(POS, SYM, ROW);
                asm.mov_imm(IP0, context - 1);
                asm.cmp(POS, IP0);
                asm.csel(POS, POS, IP0, Cond::Lt);
            }
            Position::Sequence => {
                asm.comment("row loop: position = row % T");
                asm.udiv(POS, ROW, SYM);
                asm.mul(POS, POS, SYM);
                asm.sub(POS, ROW, POS);
            }
        }
        asm.mul_imm(POS, POS, (4 * hd) as u64);
        asm.add(TC, TB, POS);
        asm.mov(XL, XR);
        asm.mov(YL, YR);
        if by4 > 0 {
            asm.comment("4 pairs at a time: LD2 (cos, sin), then every head");
        }
        counted(asm, CNT_J, by4, false, |asm| {
            asm.ld2_4s(COS, TC, true);
            heads_loop(asm, plan, Width::Q, true);
            asm.add_imm(XL, XL, 16);
            asm.add_imm(YL, YL, 16);
        });
        for _ in 0..by1 {
            asm.comment("single pair: LDR s (cos, sin), then every head");
            asm.ldr_post(Width::S, COS, TC, 4);
            asm.ldr_post(Width::S, SIN, TC, 4);
            heads_loop(asm, plan, Width::S, false);
            asm.add_imm(XL, XL, 4);
            asm.add_imm(YL, YL, 4);
        }
        asm.add_imm(XR, XR, row_bytes);
        asm.add_imm(YR, YR, row_bytes);
    });
    let name = format!("rope.f32.{} 4x1", position_name(plan.position));
    finish(asm, name, TILE, USEFUL_PER_ITER)
}

fn position_name(p: Position) -> &'static str {
    match p {
        Position::Cached { .. } => "cached",
        Position::Sequence => "sequence",
    }
}

const TILE: &str = "\
one row per parallel iteration; table row = position · head_dim floats (cos, sin pairs)
  v16/v17  cos/sin of 4 pairs (LD2 de-interleaves the table row), reused by every head
  v4/v5    x[j..j+4], x[j+half..j+half+4] of one head (LDR q, register offset half)
  v20,v21  lo·cos, hi·sin → v22 = y[j]        (FMUL, FMUL, FSUB)
  v23,v24  lo·sin, hi·cos → v25 = y[j+half]   (FMUL, FMUL, FADD)
tails: single pairs with LDR/STR s, same arithmetic
hot loop (heads): LDR q ×2, FMUL ×4, FSUB, FADD, STR q ×2";

/// `x[j + k]`, `x[j + half + k]` → `y` for every head, `k` over the lanes of `w` (`Q`: 4
/// pairs, `S`: one); the pairs' cos/sin are in `COS`/`SIN`, the first head's `x`/`y` at
/// `XL`/`YL`.
fn heads_loop(asm: &mut Asm, plan: &RopePlan, w: Width, hot: bool) {
    let head_bytes = (4 * plan.head_dim) as u64;
    asm.mov(HEAD_X, XL);
    asm.mov(HEAD_Y, YL);
    let top = asm.new_label();
    let looped = plan.heads > 1;
    if looped {
        asm.mov_imm(CNT_H, plan.heads);
    }
    asm.bind(top);
    if hot && looped {
        asm.mark("hot_loop");
    }
    asm.ldr(w, LO_V, HEAD_X, 0);
    asm.ldr_reg(w, HI_V, HEAD_X, HALF_BYTES);
    asm.fmul_4s(T[0], LO_V, COS);
    asm.fmul_4s(T[1], HI_V, SIN);
    asm.fsub_4s(Y_LO, T[0], T[1]);
    asm.fmul_4s(T[2], LO_V, SIN);
    asm.fmul_4s(T[3], HI_V, COS);
    asm.fadd_4s(Y_HI, T[2], T[3]);
    asm.str(w, Y_LO, HEAD_Y, 0);
    asm.str_reg(w, Y_HI, HEAD_Y, HALF_BYTES);
    if looped {
        asm.add_imm(HEAD_X, HEAD_X, head_bytes);
        asm.add_imm(HEAD_Y, HEAD_Y, head_bytes);
        asm.subs_imm(CNT_H, CNT_H, 1);
        asm.b_cond(Cond::Ne, top);
        if hot {
            asm.mark("hot_loop_end");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_head_shape_emits() {
        for (heads, head_dim) in [(1, 2), (1, 8), (4, 16), (3, 6), (2, 10), (8, 128)] {
            for position in [Position::Cached { context: 32 }, Position::Sequence] {
                let plan = RopePlan {
                    heads,
                    head_dim,
                    position,
                    x: 0,
                    table: 1,
                    y: 2,
                };
                let m = emit(&plan).expect("emits");
                let hot = heads > 1 && head_dim >= 8;
                assert_eq!(m.useful_per_iter > 0, hot, "{heads}×{head_dim}");
            }
        }
    }
}
