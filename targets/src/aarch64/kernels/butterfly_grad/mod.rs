//! Backward of the canonical butterfly (`backward.butterfly`, DESIGN §4): NEON microkernels
//! for the two sections of `lower/grad/butterfly.rs`.
//!
//! - Section 1 (`rows`), parallel over rows `(m, g)`: per stack, copy the row into stage
//!   plane 0 of `xs` and recompute every stage input, copy `dy` into the top plane of `gs`,
//!   run the stages backward (`g_in = Tᵀ·g_out` per pair) into `gs` (stage 0 into `dx` when
//!   there is one unpadded stack), then `dx` = the stacks' input gradients summed in stack
//!   order. Pairs in lanes, 8 pairs per step (see `pairs.rs` for the per-stride loads).
//! - Section 2 (`dtw`), parallel over `(slab, stage)`: `dT[i] = Σ_m g ⊗ x` over rows in
//!   order, vectorized over the twiddle index with the 4 entries of 8 pairs in 8
//!   accumulator registers while the rows stream by; one `st4` writes them back.
//! - Section 3 (bias column sums, with a bias) is declined: a plain column reduction that
//!   Cranelift's code handles.
//!
//! Both do the body's f32 operations in the body's order (each product rounded, then the
//! sum — fmul + fadd, not fmla), so their results are bit-identical to the interpreter's and
//! Cranelift's; a training step's AdamW update (≈ sign of the gradient) then cannot flip on
//! a rounding-level gradient.
//!
//! Matching is by reconstruction (`template.rs`): the body's first two sections must equal
//! the lowering's own form for the descriptor's geometry (`section_match`), statement for
//! statement. Stages with fewer than 4 pairs (`n < 8`) and any non-f32 operand are
//! declined.

mod pairs;
mod reduce;
mod rows;
mod template;

use super::section_match::match_section;
use super::{SectionCtx, Selection};
use crate::aarch64::emit::{Asm, SYMS, X};
use crate::lower::emit::fold_stmts;
use bfly_ir::DType;
use bfly_ir::infer::butterfly_width;
use bfly_ir::kernel::{BinOp, Body, ButterflyDesc, Expr, KernelKind, LoopKind, RtSym, Stmt};
use template::Geo;

/// A recognized butterfly-backward body.
pub struct Form {
    pub geo: Geo,
    /// Rows `B·T` as `constant · Π symbols`.
    pub rows_const: i64,
    pub rows_syms: Vec<RtSym>,
}

impl Form {
    /// `dst = rows` (reads `syms`; clobbers `tmp`).
    pub fn emit_rows(&self, a: &mut Asm, dst: X, tmp: X) {
        a.mov_imm(dst, self.rows_const);
        for s in &self.rows_syms {
            a.ldr_x(tmp, SYMS, 8 * s.slot() as u32);
            a.mul(dst, dst, tmp);
        }
    }
}

pub fn try_emit(ctx: &SectionCtx) -> Selection {
    let KernelKind::Backward(inner) = &ctx.kernel.kind else {
        return Selection::NotMine;
    };
    let KernelKind::Butterfly(desc) = inner.as_ref() else {
        return Selection::NotMine;
    };
    let form = match recognize(ctx.body, desc) {
        Ok(f) => f,
        Err(why) => return Selection::Declined(why),
    };
    let emitted = match ctx.section {
        0 => rows::emit(&form),
        1 => reduce::emit(&form),
        2 => {
            return Selection::Declined(
                "bias column sums: a plain reduction over rows, Cranelift's code".into(),
            );
        }
        s => return Selection::Declined(format!("no section {s} in a butterfly backward")),
    };
    match emitted {
        Ok(m) => Selection::Emitted(m),
        Err(e) => Selection::Declined(format!("emission failed: {e}")),
    }
}

/// Checks the descriptor, then finds the geometry whose canonical body equals this one.
fn recognize(body: &Body, desc: &ButterflyDesc) -> Result<Form, String> {
    if desc.dtype != DType::F32 {
        return Err(format!(
            "{} activations: only f32 has a microkernel",
            desc.dtype
        ));
    }
    let (n, l) = (desc.n, desc.stages);
    if l >= 63 || 1u64 << l != n || desc.groups == 0 || desc.stacks == 0 || desc.blocks == 0 {
        return Err(format!("unexpected geometry n = {n}, stages = {l}"));
    }
    if n < 8 {
        return Err(format!(
            "n = {n}: stages of fewer than 4 pairs fill no vector"
        ));
    }
    let has_bias = match desc.epilogue.as_slice() {
        [] => false,
        [b] if b == "bias" => true,
        other => return Err(format!("epilogue {other:?} is not the bias gradient")),
    };
    if !template::params_match(body, has_bias) {
        return Err("params are not the f32 (x, tw, dy, xs, gs, dx, dtw[, dbias])".into());
    }
    if body.stmts.len() != 2 + usize::from(has_bias) {
        return Err(format!(
            "{} sections, expected the canonical form's",
            body.stmts.len()
        ));
    }
    let rows = twiddle_rows(&body.stmts[1]).ok_or("no loop over rows in section 2")?;
    let (rows_const, rows_syms) =
        product(&rows).ok_or("rows are not a product of constants and T, B")?;

    let mut ints = Vec::new();
    collect_load_ints(&body.stmts[..1], template::X, &mut ints);
    let n_ins = candidates(&ints, |c| butterfly_width(c) == n);
    ints.clear();
    collect_load_ints(&body.stmts[..1], template::DY, &mut ints);
    let n_outs = candidates(&ints, |c| c.div_ceil(n) == desc.stacks);
    // Both sides are folded the same way (a no-op on the lowering's already folded body).
    let mut have = body.stmts[..2].to_vec();
    fold_stmts(&mut have);
    for &n_in in &n_ins {
        for &n_out in &n_outs {
            for increasing in [true, false] {
                let geo = Geo {
                    groups: desc.groups,
                    stacks: desc.stacks,
                    blocks: desc.blocks,
                    n,
                    l,
                    n_in,
                    n_out,
                    increasing,
                };
                let want = template::build(&geo, &rows);
                if same_sections(&have, &want.stmts) {
                    return Ok(Form {
                        geo,
                        rows_const,
                        rows_syms,
                    });
                }
            }
        }
    }
    Err("body is not the canonical butterfly backward (lower/grad/butterfly.rs)".into())
}

/// Whether `have` equals the rebuilt `want` section for section, with every param in the
/// template's place (the emitters address params by the template's indices).
fn same_sections(have: &[Stmt], want: &[Stmt]) -> bool {
    have.len() == want.len()
        && have
            .iter()
            .zip(want)
            .all(|(h, w)| match_section(h, w).is_some_and(|map| map.iter().all(|(t, a)| t == a)))
}

/// The end of the first serial loop in the twiddle section: its loop over rows.
fn twiddle_rows(section: &Stmt) -> Option<Expr> {
    fn find(stmts: &[Stmt]) -> Option<Expr> {
        stmts.iter().find_map(|s| match s {
            Stmt::For {
                kind: LoopKind::Serial,
                end,
                ..
            } => Some(end.clone()),
            Stmt::For { body, .. } | Stmt::If { then: body, .. } => find(body),
            _ => None,
        })
    }
    find(std::slice::from_ref(section))
}

/// `e` as `constant · Π symbols`, if it is a product of those.
fn product(e: &Expr) -> Option<(i64, Vec<RtSym>)> {
    match e {
        Expr::Int(v) if *v >= 0 => Some((*v, Vec::new())),
        Expr::Sym(s) => Some((1, vec![*s])),
        Expr::Bin(BinOp::Mul, a, b) => {
            let (ca, mut sa) = product(a)?;
            let (cb, sb) = product(b)?;
            sa.extend(sb);
            Some((ca.checked_mul(cb)?, sa))
        }
        _ => None,
    }
}

/// Every integer constant inside the index of a load from `arg`.
fn collect_load_ints(stmts: &[Stmt], arg: u32, out: &mut Vec<i64>) {
    fn expr(e: &Expr, arg: u32, inside: bool, out: &mut Vec<i64>) {
        match e {
            Expr::Int(v) if inside => out.push(*v),
            Expr::Load { arg: a, index } => expr(index, arg, inside || *a == arg, out),
            Expr::Bin(_, x, y) => {
                expr(x, arg, inside, out);
                expr(y, arg, inside, out);
            }
            Expr::Un(_, x) => expr(x, arg, inside, out),
            Expr::Select { cond, then, els } => {
                for x in [cond, then, els] {
                    expr(x, arg, inside, out);
                }
            }
            _ => {}
        }
    }
    for s in stmts {
        match s {
            Stmt::For {
                start, end, body, ..
            } => {
                expr(start, arg, false, out);
                expr(end, arg, false, out);
                collect_load_ints(body, arg, out);
            }
            Stmt::Let { value, .. } | Stmt::Assign { value, .. } => expr(value, arg, false, out),
            Stmt::Store { index, value, .. } => {
                expr(index, arg, false, out);
                expr(value, arg, false, out);
            }
            Stmt::If { cond, then } => {
                expr(cond, arg, false, out);
                collect_load_ints(then, arg, out);
            }
        }
    }
}

/// The distinct positive values of `ints` that pass `ok`, in first-seen order.
fn candidates(ints: &[i64], ok: impl Fn(u64) -> bool) -> Vec<u64> {
    let mut out: Vec<u64> = Vec::new();
    for &v in ints {
        if v > 0 && ok(v as u64) && !out.contains(&(v as u64)) {
            out.push(v as u64);
        }
    }
    out
}
