//! Code for a recognised quantized GEMM: per column tile (one parallel iteration, `nt`
//! columns) and block of up to 4 rows, i32 accumulators over k in 16-byte steps, then the
//! fused f32 epilogue over the tile's `nt` consecutive columns.
//!
//! Both operands are k-contiguous, so every (row, column) pair keeps a 4-lane partial sum
//! ("dot form") that is reduced across lanes once, at the end (ADDP/ADDV). Integer sums are
//! exact (modulo 2³², and the matcher bounds K so the total fits i32), so the reduction
//! order is free; the epilogue then performs exactly the body's f32 operations in the
//! body's order (SCVTF rounds to nearest like the body's `f32(int)`, and no operation is
//! fused), so results are bit-identical to the Cranelift and interpreter code.

use super::matcher::{Link, Operand, QGemmPlan};
use crate::aarch64::emit::{ARGS, Asm, Cond, HI, LO, SYMS, V, Width, X};
use crate::aarch64::kernels::Microkernel;
use bfly_ir::kernel::{BinOp, Expr};

/// How the int8 products are formed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// `SDOT` (FEAT_DotProd): 16 products into 4 i32 lanes per instruction.
    Sdot,
    /// ARMv8.0: `SMULL`/`SMULL2` into i16 (one product per lane: |p| ≤ 128² fits i16 for
    /// every i8 input, −128 included), then `SADALP` pairs into the i32 lanes.
    Smull,
}

/// Rows per register block.
const MR: usize = 4;

// General registers (x0/x1 are free once the params and the row count are loaded).
const T0: X = X(0);
const T1: X = X(1);
const J: X = LO;
const JEND: X = HI;
const XQ: X = X(4);
const XS: X = X(5);
const WQ: X = X(6);
const WS: X = X(7);
const Y: X = X(8);
const BIAS: X = X(9);
const EPI: [X; 3] = [X(10), X(11), X(12)];
const M: X = X(13);
const COL0: X = X(14);
const ROW: X = X(15);
const XP: [X; MR] = [X(19), X(20), X(21), X(22)];
const WP: [X; 4] = [X(23), X(24), X(25), X(26)];
const KIDX: X = X(27);
const XSP: X = X(28);

// Vector registers: accumulators v0..v15, operands v16..v23 (reused by the epilogue),
// SMULL temporaries v24..v29, zero v31.
const XV: u32 = 16;
const WV: u32 = 20;
const TEMPS: u32 = 24;
const ZERO: V = V(31);
const WSV: V = V(16);
const BIASV: V = V(17);
const COLV: u32 = 18;
const XSB: V = V(21);
const R: V = V(22);
const TMP: V = V(23);
const SCALE: V = V(24);

fn acc(nt: usize, i: usize, t: usize) -> V {
    V((i * nt + t) as u32)
}

/// Emits the microkernel for `plan`.
pub fn emit(plan: &QGemmPlan, variant: Variant) -> Result<Microkernel, String> {
    let epi = epilogue_params(plan)?;
    let cols = plan.col_operands();
    if cols.len() > 3 {
        return Err("more than 3 column-broadcast epilogue operands".into());
    }
    let mut a = Asm::new();
    let nt = plan.nt;
    a.comment("prologue: save v8-v15, x19-x28; params; M from SYMS");
    let vsave: Vec<V> = (8..16).map(V).collect();
    let xsave: Vec<X> = (19..29).map(X).collect();
    a.save_callee_saved(&vsave, &xsave);
    for (reg, p) in [
        (XQ, plan.xq),
        (XS, plan.xs),
        (WQ, plan.wq),
        (WS, plan.ws),
        (Y, plan.y),
    ] {
        a.ldr_x(reg, ARGS, p * 8);
    }
    if let Some(p) = plan.bias {
        a.ldr_x(BIAS, ARGS, p * 8);
    }
    for &(p, reg) in &epi {
        a.ldr_x(reg, ARGS, p * 8);
    }
    eval_rows(&mut a, &plan.rows, M, &[COL0, ROW]);
    a.zero(ZERO);
    let (done, tile_top) = (a.new_label(), a.new_label());
    a.cmp(J, JEND);
    a.b_cond(Cond::Ge, done);

    a.bind(tile_top);
    a.comment(format!(
        "column tile j: columns j·{nt} .. j·{nt}+{nt}; w row pointers"
    ));
    a.mul_imm(COL0, J, nt as u64);
    a.mul_imm(WP[0], COL0, plan.k as u64);
    a.add(WP[0], WQ, WP[0]);
    for t in 1..nt {
        a.add_imm(WP[t], WP[t - 1], plan.k as u64);
    }
    a.mov_imm(ROW, 0);
    let (rows4, rest, next) = (a.new_label(), a.new_label(), a.new_label());
    a.bind(rows4);
    a.sub(T0, M, ROW);
    a.cmp_imm(T0, MR as u64);
    a.b_cond(Cond::Lt, rest);
    block(&mut a, plan, variant, MR, &epi, &cols, true);
    a.add_imm(ROW, ROW, MR as u64);
    a.b(rows4);

    a.bind(rest);
    a.comment("the last M mod 4 rows");
    let tails: Vec<_> = (1..MR).map(|_| a.new_label()).collect();
    for (mr, &l) in (1..MR).zip(&tails) {
        a.cmp_imm(T0, mr as u64);
        a.b_cond(Cond::Eq, l);
    }
    a.b(next);
    for (mr, &l) in (1..MR).zip(&tails).rev() {
        a.bind(l);
        block(&mut a, plan, variant, mr, &epi, &cols, false);
        a.b(next);
    }
    a.bind(next);
    a.add_imm(J, J, 1);
    a.cmp(J, JEND);
    a.b_cond(Cond::Lt, tile_top);
    a.bind(done);
    a.restore_callee_saved(&vsave, &xsave);
    a.ret();
    let code = a.finish()?;
    let (kind, useful) = match variant {
        Variant::Sdot => ("sdot", MR * nt),
        // Every vector arithmetic instruction of the loop: SMULL, SMULL2 and the two
        // SADALPs share the vector pipes, so this measures pipe saturation (each does a
        // quarter of an SDOT's work).
        Variant::Smull => ("smull", 4 * MR * nt),
    };
    Ok(Microkernel {
        name: format!("qgemm.i8.{kind} {MR}x{nt}"),
        tile: tile_comment(plan, variant),
        code,
        useful_per_iter: useful as u32,
    })
}

/// The distinct params the links read, with their registers.
fn epilogue_params(plan: &QGemmPlan) -> Result<Vec<(u32, X)>, String> {
    let mut out: Vec<(u32, X)> = Vec::new();
    for l in &plan.links {
        if let Link::Bin { other, .. } = l {
            let p = match *other {
                Operand::Full(p) | Operand::Col(p) | Operand::Row(p) | Operand::Scalar(p) => p,
                Operand::Chain => continue,
            };
            if out.iter().any(|&(q, _)| q == p) {
                continue;
            }
            let reg = *EPI.get(out.len()).ok_or("more than 3 epilogue operands")?;
            out.push((p, reg));
        }
    }
    Ok(out)
}

/// `dst = rows` from constants and `SYMS` (`spare` holds subexpressions).
fn eval_rows(a: &mut Asm, e: &Expr, dst: X, spare: &[X]) {
    match e {
        Expr::Int(v) => a.mov_imm(dst, *v),
        Expr::Sym(s) => a.ldr_x(dst, SYMS, s.slot() as u32 * 8),
        Expr::Bin(op, l, r) => {
            eval_rows(a, l, dst, spare);
            if let Some((&tmp, rest)) = spare.split_first() {
                eval_rows(a, r, tmp, rest);
                match op {
                    BinOp::Mul => a.mul(dst, dst, tmp),
                    _ => a.add(dst, dst, tmp),
                }
            }
        }
        // `recognise` admits nothing else.
        _ => a.mov_imm(dst, 0),
    }
}

/// The tile's store/load width: `nt` f32 lanes.
fn width(nt: usize) -> Width {
    match nt {
        4 => Width::Q,
        2 => Width::D,
        _ => Width::S,
    }
}

/// One block of `mr` rows starting at `ROW`, all `nt` columns of the tile.
fn block(
    a: &mut Asm,
    plan: &QGemmPlan,
    variant: Variant,
    mr: usize,
    epi: &[(u32, X)],
    cols: &[u32],
    hot: bool,
) {
    let (nt, k) = (plan.nt, plan.k as u64);
    a.comment(format!(
        "{mr}-row block: x row pointers, zero {} accumulators",
        mr * nt
    ));
    a.mul_imm(XP[0], ROW, k);
    a.add(XP[0], XQ, XP[0]);
    for i in 1..mr {
        a.add_imm(XP[i], XP[i - 1], k);
    }
    for i in 0..mr {
        for t in 0..nt {
            a.zero(acc(nt, i, t));
        }
    }
    a.mov_imm(KIDX, 0);
    let top = a.new_label();
    a.comment(format!("k loop: {} steps of 16 bytes", k / 16));
    a.bind(top);
    if hot {
        a.mark("hot_loop");
    }
    products(a, variant, mr, nt, |a, reg, base| {
        a.ldr_idx(Width::Q, reg, base, KIDX)
    });
    a.add_imm(KIDX, KIDX, 1);
    a.cmp_imm(KIDX, k / 16);
    a.b_cond(Cond::Ne, top);
    if hot {
        a.mark("hot_loop_end");
    }
    let rem = k % 16;
    if rem != 0 {
        a.comment(format!(
            "k tail: the last 16 bytes, shifted down by {} so only the {rem} new ones remain",
            16 - rem
        ));
        let tail = |a: &mut Asm, reg: V, base: X| {
            a.add_imm(T0, base, k - 16);
            a.ldr(Width::Q, reg, T0, 0);
            a.ext_16b(reg, reg, ZERO, (16 - rem) as u32);
        };
        products(a, variant, mr, nt, tail);
    }
    epilogue(a, plan, mr, epi, cols);
}

/// Loads the `mr` x rows and `nt` w rows with `load` and accumulates their products.
fn products(a: &mut Asm, variant: Variant, mr: usize, nt: usize, load: impl Fn(&mut Asm, V, X)) {
    for (t, &wp) in WP.iter().enumerate().take(nt) {
        load(a, V(WV + t as u32), wp);
    }
    match variant {
        Variant::Sdot => {
            for (i, &xp) in XP.iter().enumerate().take(mr) {
                let x = V(XV + i as u32);
                load(a, x, xp);
                for t in 0..nt {
                    a.sdot_4s(acc(nt, i, t), x, V(WV + t as u32));
                }
            }
        }
        Variant::Smull => {
            for (i, &xp) in XP.iter().enumerate().take(mr) {
                load(a, V(XV + i as u32), xp);
            }
            // Software-pipelined: the multiplies of pair p issue before the pairwise adds
            // of pair p − 1; three temporary pairs rotate.
            let pairs: Vec<(usize, usize)> =
                (0..mr).flat_map(|i| (0..nt).map(move |t| (i, t))).collect();
            let temps = |p: usize| {
                let s = TEMPS + 2 * (p % 3) as u32;
                (V(s), V(s + 1))
            };
            for p in 0..=pairs.len() {
                if let Some(&(i, t)) = pairs.get(p) {
                    let (lo, hi) = temps(p);
                    let (x, w) = (V(XV + i as u32), V(WV + t as u32));
                    a.smull_8h(lo, x, w);
                    a.smull2_8h(hi, x, w);
                }
                if p > 0 {
                    let (i, t) = pairs[p - 1];
                    let (lo, hi) = temps(p - 1);
                    a.sadalp_4s(acc(nt, i, t), lo);
                    a.sadalp_4s(acc(nt, i, t), hi);
                }
            }
        }
    }
}

/// Reduces, dequantizes, applies bias and links, stores `mr` rows of `nt` columns.
fn epilogue(a: &mut Asm, plan: &QGemmPlan, mr: usize, epi: &[(u32, X)], cols: &[u32]) {
    let nt = plan.nt;
    let w = width(nt);
    let reg = |p: u32| epi.iter().find(|&&(q, _)| q == p).map_or(T0, |&(_, r)| r);
    a.comment("epilogue: ws, bias, column operands of the tile");
    a.add_lsl(T0, WS, COL0, 2);
    a.ldr(w, WSV, T0, 0);
    if plan.bias.is_some() {
        a.add_lsl(T0, BIAS, COL0, 2);
        a.ldr(w, BIASV, T0, 0);
    }
    for (slot, &p) in cols.iter().enumerate() {
        a.add_lsl(T0, reg(p), COL0, 2);
        a.ldr(w, V(COLV + slot as u32), T0, 0);
    }
    a.add_lsl(XSP, XS, ROW, 2);
    a.mul_imm(T1, ROW, plan.n as u64);
    a.add(T1, T1, COL0);
    for i in 0..mr {
        a.comment(format!(
            "row {i}: reduce lanes, f32(acc) · xs[row] · ws[col]{}",
            if plan.bias.is_some() {
                " + bias[col]"
            } else {
                ""
            }
        ));
        match nt {
            4 => {
                a.addp_4s(R, acc(nt, i, 0), acc(nt, i, 1));
                a.addp_4s(TMP, acc(nt, i, 2), acc(nt, i, 3));
                a.addp_4s(R, R, TMP);
            }
            2 => {
                a.addp_4s(R, acc(nt, i, 0), acc(nt, i, 1));
                a.addp_4s(R, R, R);
            }
            _ => a.addv_s(R, acc(nt, i, 0)),
        }
        a.scvtf_4s(R, R);
        a.ld1r_4s(XSB, XSP, true);
        a.fmul_4s(R, R, XSB);
        a.fmul_4s(R, R, WSV);
        if plan.bias.is_some() {
            a.fadd_4s(R, R, BIASV);
        }
        for link in &plan.links {
            match *link {
                Link::Bin {
                    op,
                    other,
                    chain_lhs,
                } => {
                    let o = match other {
                        Operand::Chain => R,
                        Operand::Col(p) => {
                            let slot = cols.iter().position(|&q| q == p).unwrap_or(0);
                            V(COLV + slot as u32)
                        }
                        Operand::Full(p) => {
                            a.add_lsl(T0, reg(p), T1, 2);
                            a.ldr(w, TMP, T0, 0);
                            TMP
                        }
                        Operand::Row(p) => {
                            a.add_lsl(T0, reg(p), ROW, 2);
                            a.add_imm(T0, T0, 4 * i as u64);
                            a.ld1r_4s(TMP, T0, false);
                            TMP
                        }
                        Operand::Scalar(p) => {
                            a.ld1r_4s(TMP, reg(p), false);
                            TMP
                        }
                    };
                    let (l, r) = if chain_lhs { (R, o) } else { (o, R) };
                    match op {
                        BinOp::Add => a.fadd_4s(R, l, r),
                        BinOp::Sub => a.fsub_4s(R, l, r),
                        _ => a.fmul_4s(R, l, r),
                    }
                }
                Link::Neg => a.fneg_4s(R, R),
                Link::Scale(f) => {
                    a.const_4s(SCALE, f);
                    a.fmul_4s(R, R, SCALE);
                }
            }
        }
        a.add_lsl(T0, Y, T1, 2);
        a.str(w, R, T0, 0);
        if i + 1 < mr {
            a.add_imm(T1, T1, plan.n as u64);
        }
    }
}

fn tile_comment(plan: &QGemmPlan, variant: Variant) -> String {
    let nt = plan.nt;
    let last = MR * nt - 1;
    let step = match variant {
        Variant::Sdot => format!(
            "one k step (16 bytes): ldr q x0..x3, w0..w{}; {} × sdot acc[i][t] += x_i · w_t",
            nt - 1,
            MR * nt
        ),
        Variant::Smull => format!(
            "one k step (16 bytes): ldr q x0..x3, w0..w{}; per (i, t): smull/smull2 → \
             i16 (v24..v29, 3 pairs rotating), 2 × sadalp → acc[i][t]",
            nt - 1
        ),
    };
    format!(
        "int8 GEMM {MR} rows × {nt} columns (one parallel iteration = {nt} columns), K = {}\n\
         v0..v{last}   acc[i][t] = v(i·{nt}+t): 4 i32 partial sums of row i · column t\n\
         v16..v19  x rows i = 0..3 (16 int8 of xq)\n\
         v20..v{}  w rows t (16 int8 of wq)\n\
         {step}\n\
         k tail: last 16 bytes shifted down with ext against v31 = 0\n\
         epilogue: addp/addv lanes → scvtf → · xs[row] · ws[col] (+ bias) (+ links) → store\n\
         useful/iter = {} ({})",
        plan.k,
        19 + nt,
        match variant {
            Variant::Sdot => MR * nt,
            Variant::Smull => 4 * MR * nt,
        },
        match variant {
            Variant::Sdot => "SDOTs",
            Variant::Smull => "SMULL+SMULL2+2×SADALP: all vector arithmetic, 1/4 of an SDOT each",
        }
    )
}
