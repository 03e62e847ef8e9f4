//! `attention`: fused causal softmax attention (`lower/attention.rs::causal_attention`),
//! f32, both forms — inference over the KV cache (query `t` attends to cache rows
//! `0..min(pos + t + 1, context)`) and training (query `i = row % T` of a sequence attends
//! to that sequence's keys `0..=i`) — with grouped KV heads.
//!
//! One parallel iteration is one (query row, head) pair `idx` (`row = idx / heads`), run
//! as the body runs it, phase by phase, with the same memory effect:
//! 1. scores `s_j = (q·k_j)·scale` for four keys at a time (the hot loop: FMUL/FMLA over
//!    the head dim, two partial sums per key, FADDP tree → one vector of four dot products),
//!    then single keys; each stored to `scores` (as the body does) and max-reduced;
//! 2. `e_j = exp(s_j − max)` in place in `scores` (`neon_math::exp_4s`, the Cranelift
//!    sequence), summed;
//! 3. `y = Σ_j (e_j / Σe)·v_j` with the head's y in registers (16 vectors per pass), stored
//!    once — the body zeroes y and accumulates in memory; only the final values are seen,
//!    since no other iteration reads this (row, head)'s y.
//!
//! Matching builds the section with the lowering's own builder
//! (`lower::attention::attention_section`, `section_match`) from the descriptor and the
//! causal bound read off the body (the cache context, or the sequence length `T` / a
//! constant), so scale, bounds, strides and operation order are all checked. Declined: f16
//! params (the f16 result accumulates through an extra scratch), aliased params, head dims
//! above 1024, any other body.
//!
//! Differences from the body's arithmetic: the dot products and `Σe` are reassociated (the
//! body's `vector` loops allow it) and y accumulates with FMLA (fused) — a few ulp.

use super::common::{
    finish, load_params, load_sym, match_params, parallel_loop, parallel_range, preserving, select,
    template,
};
use super::neon_math::{EXP_CONST_REGS, ExpConsts, exp_4s};
use super::{Microkernel, SectionCtx, Selection};
use crate::aarch64::emit::{Asm, Cond, LO, V, Width, X};
use crate::lower::attention::{AttnParams, AttnShape, Positions, attention_section};
use bfly_ir::DType;
use bfly_ir::kernel::{AttentionDesc, BinOp, Expr, KernelKind, RtSym, Stmt};

/// Where a query's keys end.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Causal {
    /// Inference: `n = min(pos + row + 1, context)` keys of the cache from row 0.
    Cached { context: i64 },
    /// Training: query `i = row % t` attends to rows `row − i ..= row` of its sequence.
    Sequence { t: Extent },
}

/// A sequence length: a runtime symbol or a constant.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Extent {
    Sym(RtSym),
    Const(i64),
}

impl Extent {
    fn expr(self) -> Expr {
        match self {
            Extent::Sym(s) => Expr::Sym(s),
            Extent::Const(c) => Expr::Int(c),
        }
    }
}

/// A recognised attention section.
#[derive(Clone, Debug, PartialEq)]
struct AttnPlan {
    heads: i64,
    kv_heads: i64,
    head_dim: i64,
    causal: Causal,
    /// Actual param indices of `q, k, v, scores, y`.
    params: [u32; 5],
}

impl AttnPlan {
    fn width(&self) -> i64 {
        self.heads * self.head_dim
    }

    fn kv_dim(&self) -> i64 {
        self.kv_heads * self.head_dim
    }

    fn shape(&self) -> AttnShape {
        AttnShape {
            heads: self.heads,
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
        }
    }

    /// The lowering's positions: the cache's, or `row % t` of a sequence.
    fn positions(&self) -> Positions {
        match self.causal {
            Causal::Cached { context } => Positions::Cached { context },
            Causal::Sequence { t } => Positions::Sequence { t: t.expr() },
        }
    }
}

/// Largest head dim (keeps every offset within a row in the load/store immediates).
const MAX_HEAD_DIM: i64 = 1024;

/// The family entry point.
pub fn try_emit(ctx: &SectionCtx) -> Selection {
    let KernelKind::Attention(desc) = &ctx.kernel.kind else {
        return Selection::NotMine;
    };
    select("attention", recognise(ctx, desc), emit)
}

// ---------------------------------------------------------------------------------------
// Recognition.

fn recognise(ctx: &SectionCtx, desc: &AttentionDesc) -> Result<AttnPlan, String> {
    let (start, end) = parallel_range(ctx)?;
    let int = |v: u64| i64::try_from(v).ok().filter(|&v| v >= 1);
    let (Some(heads), Some(kv_heads), Some(head_dim)) =
        (int(desc.heads), int(desc.kv_heads), int(desc.head_dim))
    else {
        return Err("heads, kv_heads and head_dim must be ≥ 1".into());
    };
    if heads % kv_heads != 0 || heads > 1 << 16 {
        return Err(format!("{heads} heads over {kv_heads} kv heads"));
    }
    if head_dim > MAX_HEAD_DIM {
        return Err(format!("head_dim {head_dim} > {MAX_HEAD_DIM}"));
    }
    if ctx.body.params.iter().any(|p| p.dtype != DType::F32) {
        return Err("not all params are f32 (an f16 result accumulates through scratch)".into());
    }
    let section = &ctx.body.stmts[ctx.section];
    let causal = read_causal(section, desc.cached).ok_or(if desc.cached {
        "no `min(pos + row + 1, context)` key count"
    } else {
        "no `row % T` sequence position"
    })?;
    let mut plan = AttnPlan {
        heads,
        kv_heads,
        head_dim,
        causal,
        params: [0, 1, 2, 3, 4],
    };
    let (shape, positions) = (plan.shape(), plan.positions());
    let template = template(&ROLES, |b, p| {
        let params = AttnParams {
            q: p[0],
            k: p[1],
            v: p[2],
            scores: p[3],
            y: p[4],
            acc: p[4],
        };
        let (start, end) = (start.clone(), end.clone());
        attention_section(b, start, end, shape, &positions, params);
    });
    let roles = ROLES.map(|n| (n, DType::F32));
    let p = match_params(
        ctx,
        &template,
        &roles,
        "the section differs from the lowering's causal-attention form",
    )?;
    plan.params = [p[0], p[1], p[2], p[3], p[4]];
    Ok(plan)
}

/// The params, in `AttnPlan::params` order (an f32 result: y is its own accumulator).
const ROLES: [&str; 5] = ["q", "k", "v", "scores", "y"];

/// The causal bound from the third statement of the iteration (`let n = min(.., context)`
/// or `let i = row % t`); the template checks the rest.
fn read_causal(section: &Stmt, cached: bool) -> Option<Causal> {
    let Stmt::For { body, .. } = section else {
        return None;
    };
    let Some(Stmt::Let {
        value: Expr::Bin(op, _, bound),
        ..
    }) = body.get(2)
    else {
        return None;
    };
    match (cached, op, &**bound) {
        (true, BinOp::Min, Expr::Int(c)) if *c >= 1 => Some(Causal::Cached { context: *c }),
        (false, BinOp::Rem, Expr::Sym(s)) => Some(Causal::Sequence { t: Extent::Sym(*s) }),
        (false, BinOp::Rem, Expr::Int(c)) if *c >= 1 => Some(Causal::Sequence {
            t: Extent::Const(*c),
        }),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// Emission.

// General registers. x0/x1 become cursors once the params and the symbol are loaded.
const CUR: X = X(0);
const IDX: X = LO;
const QB: X = X(4);
const KB: X = X(5);
const VB: X = X(6);
const SB: X = X(7);
const YB: X = X(8);
/// `pos` (cached) or the sequence length (training).
const SYM: X = X(9);
const ROW: X = X(10);
const HEAD: X = X(11);
const NKEYS: X = X(12);
const T0: X = X(13);
const QP: X = X(14);
const YP: X = X(15);
const KROW: X = X(19);
const VROW: X = X(20);
const SROW: X = X(21);
const REM: X = X(22);
const KP: [X; 4] = [X(23), X(24), X(25), X(26)];
const KSTRIDE: X = X(27);
const ADDR: X = X(28);
const T1: X = X(1);

// Vector registers: see `TILE`.
const KT: [V; 4] = [V(8), V(9), V(10), V(11)];
const SCALE: V = V(12);
const MVEC: V = V(13);
const MSCAL: V = V(14);
const RED: V = V(15);
const QFIRST: u32 = 16;
// Phase 2/3.
const EXP_FIRST: u32 = 16;
const MAXB: V = V(29);
const SUMV: V = V(30);
const SUMS: V = V(31);
const TOTAL: V = V(13);
const PROB: V = V(14);
const YFIRST: u32 = 16;
const _: () = assert!(EXP_FIRST + EXP_CONST_REGS <= MAXB.0);
/// Head-dim chunks held in registers (q resident, or y accumulators per pass).
const RESIDENT: i64 = 16;

const TILE: &str = "\
one (query row, head) per parallel iteration; head dim in 4-float chunks c
phase 1, 4 keys per hot-loop step:
  v16..v31  q chunks (resident when head_dim ≤ 64, else streamed in pairs into v16..v19)
  v0..v7    acc[key][c % 2] = v(2·key + c % 2): FMUL on first touch, then FMLA
  v8..v11   k chunks (LDP pairs per key, two keys in flight)
  then FADD parities, FADDP tree → v15 = [s0 s1 s2 s3], ·scale (v12), STR q to scores,
  FMAX into v13; single keys: FADDP to a scalar, max in v14
phase 2: v16..v28 exp constants, v29 max, e = exp(s − max) in place, Σ in v30/v31 → v13
phase 3: v16..v31 y accumulators (≤ 16 chunks per pass), p = e / Σe in v14,
  FMLA y[c] += v[c]·p[0], v chunks in v8..v11; one store of y per pass";

fn emit(plan: &AttnPlan) -> Result<Microkernel, String> {
    let mut asm = Asm::new();
    let chunks = Chunks::of(plan.head_dim);
    let vsaved: Vec<V> = (8..16).map(V).collect();
    let xsaved: Vec<X> = (19..29).map(X).collect();
    asm.comment(format!(
        "attention {} heads / {} kv heads, head_dim {}, {:?}",
        plan.heads, plan.kv_heads, plan.head_dim, plan.causal
    ));
    preserving(&mut asm, &vsaved, &xsaved, |asm| {
        let [q, k, v, sc, y] = plan.params;
        load_params(asm, &[(QB, q), (KB, k), (VB, v), (SB, sc), (YB, y)]);
        match plan.causal {
            Causal::Cached { .. } => load_sym(asm, SYM, RtSym::Pos),
            Causal::Sequence {
                t: Extent::Sym(s), ..
            } => load_sym(asm, SYM, s),
            Causal::Sequence {
                t: Extent::Const(c),
            } => asm.mov_imm(SYM, c),
        }
        asm.const_4s(SCALE, plan.shape().scale());
        asm.mov_imm(KSTRIDE, 4 * plan.kv_dim());
        parallel_loop(asm, |asm, _| {
            locate(asm, plan);
            scores(asm, chunks);
            exponentials(asm);
            weighted_values(asm, chunks);
        });
    });
    let variant = if chunks.count <= RESIDENT {
        "qres"
    } else {
        "qstream"
    };
    let name = format!("attention.f32.{variant} 4x{}", chunks.count);
    finish(asm, name, TILE, 4 * chunks.count as u32)
}

/// The head dim as 4-float chunks: `full` whole ones, then `tail` (0..3) floats.
#[derive(Clone, Copy)]
struct Chunks {
    full: i64,
    tail: i64,
    count: i64,
}

impl Chunks {
    fn of(hd: i64) -> Chunks {
        Chunks {
            full: hd / 4,
            tail: hd % 4,
            count: (hd + 3) / 4,
        }
    }

    /// Floats of chunk `c` (4, or the tail).
    fn len(&self, c: i64) -> i64 {
        if c < self.full { 4 } else { self.tail }
    }
}

/// Row, head, key count and the pointers of this iteration.
fn locate(asm: &mut Asm, plan: &AttnPlan) {
    asm.comment("row = idx / heads, head = idx % heads, keys n, row pointers");
    asm.mov_imm(T0, plan.heads);
    asm.udiv(ROW, IDX, T0);
    asm.mul(T1, ROW, T0);
    asm.sub(HEAD, IDX, T1);
    // Key-row offset of the head's group: (head / per)·head_dim floats, in bytes.
    asm.mov_imm(T0, plan.heads / plan.kv_heads);
    asm.udiv(T0, HEAD, T0);
    asm.mov_imm(T1, 4 * plan.head_dim);
    asm.mul(T0, T0, T1);
    match plan.causal {
        Causal::Cached { context } => {
            asm.add(NKEYS, SYM, ROW);
            asm.add_imm(NKEYS, NKEYS, 1);
            asm.mov_imm(T1, context);
            asm.cmp(NKEYS, T1);
            asm.csel(NKEYS, NKEYS, T1, Cond::Lt);
            asm.mov_imm(T1, 4 * context);
        }
        Causal::Sequence { .. } => {
            // first = row − row % t = (row / t)·t; n = row − first + 1.
            asm.udiv(T1, ROW, SYM);
            asm.mul(T1, T1, SYM);
            asm.sub(NKEYS, ROW, T1);
            asm.add_imm(NKEYS, NKEYS, 1);
            asm.madd(T0, T1, KSTRIDE, T0);
            asm.lsl_imm(T1, SYM, 2);
        }
    }
    // Scores row: idx · span floats (T1 holds 4·span).
    asm.madd(SROW, IDX, T1, SB);
    asm.add(KROW, KB, T0);
    asm.add(VROW, VB, T0);
    // q and y: row·width + head·head_dim floats.
    asm.mov_imm(T0, 4 * plan.width());
    asm.mul(T1, ROW, T0);
    asm.mov_imm(T0, 4 * plan.head_dim);
    asm.madd(T1, HEAD, T0, T1);
    asm.add(QP, QB, T1);
    asm.add(YP, YB, T1);
}

/// Loads chunk `c` of a row at `base` (byte offset `16·c − shift`) into `v`: whole chunks
/// with LDR q; the tail with LDR s/d (+ LD1 lane 2), upper lanes zero.
fn load_chunk(asm: &mut Asm, chunks: Chunks, v: V, base: X, off: u32, c: i64) {
    match chunks.len(c) {
        4 => asm.ldr(Width::Q, v, base, off),
        1 => asm.ldr(Width::S, v, base, off),
        2 => asm.ldr(Width::D, v, base, off),
        _ => {
            asm.ldr(Width::D, v, base, off);
            asm.add_imm(ADDR, base, u64::from(off) + 8);
            asm.ld1_lane_s(v, 2, ADDR);
        }
    }
}

/// Loads whole chunks `c, c+1` (byte offset `off`) into `a, b`.
fn load_pair(asm: &mut Asm, a: V, b: V, base: X, off: u32) {
    if off <= 1008 {
        asm.ldp_q(a, b, base, off as i32);
    } else {
        asm.ldr(Width::Q, a, base, off);
        asm.ldr(Width::Q, b, base, off + 16);
    }
}

/// Stores chunk `c` of `v` at `base + off` (the tail's floats only).
fn store_chunk(asm: &mut Asm, chunks: Chunks, v: V, base: X, off: u32, c: i64) {
    match chunks.len(c) {
        4 => asm.str(Width::Q, v, base, off),
        1 => asm.str(Width::S, v, base, off),
        2 => asm.str(Width::D, v, base, off),
        _ => {
            asm.str(Width::D, v, base, off);
            asm.add_imm(ADDR, base, u64::from(off) + 8);
            asm.st1_lane_s(v, 2, ADDR);
        }
    }
}

fn acc(key: usize, parity: usize) -> V {
    V((2 * key + parity) as u32)
}

/// The dot products of q with `keys` (1 or 4) key rows at `KP[..keys]` into
/// `acc(key, 0)` (lanes still to be summed).
fn dot_products(asm: &mut Asm, chunks: Chunks, keys: usize) {
    let resident = chunks.count <= RESIDENT;
    let q = |c: i64| {
        if resident {
            V(QFIRST + c as u32)
        } else {
            V(QFIRST + (c % 4) as u32)
        }
    };
    let mut touched = [false; 2];
    let mac = |asm: &mut Asm, key: usize, c: i64, k: V, touched: &[bool; 2]| {
        let par = (c % 2) as usize;
        if touched[par] {
            asm.fmla_4s(acc(key, par), q(c), k);
        } else {
            asm.fmul_4s(acc(key, par), q(c), k);
        }
    };
    let mut c = 0;
    while c + 1 < chunks.full {
        let off = 16 * c as u32;
        if !resident {
            load_pair(asm, q(c), q(c + 1), QP, off);
        }
        for key in 0..keys {
            let (a, b) = (KT[2 * (key % 2)], KT[2 * (key % 2) + 1]);
            load_pair(asm, a, b, KP[key], off);
            mac(asm, key, c, a, &touched);
            mac(asm, key, c + 1, b, &touched);
        }
        touched = [true, true];
        c += 2;
    }
    while c < chunks.count {
        let off = 16 * c as u32;
        if !resident {
            load_chunk(asm, chunks, q(c), QP, off, c);
        }
        for key in 0..keys {
            let k = KT[key % 4];
            load_chunk(asm, chunks, k, KP[key], off, c);
            mac(asm, key, c, k, &touched);
        }
        touched[(c % 2) as usize] = true;
        c += 1;
    }
    if touched[1] {
        for key in 0..keys {
            asm.fadd_4s(acc(key, 0), acc(key, 0), acc(key, 1));
        }
    }
}

/// `body` per block of four keys while four of the `REM` left remain, leaving `REM` the
/// rest (0..3); `hot` marks it as the hot loop.
fn each_four_keys(asm: &mut Asm, hot: bool, body: impl FnOnce(&mut Asm)) {
    let (block, after) = (asm.new_label(), asm.new_label());
    asm.subs_imm(REM, REM, 4);
    asm.b_cond(Cond::Lt, after);
    asm.bind(block);
    if hot {
        asm.mark("hot_loop");
    }
    body(asm);
    asm.subs_imm(REM, REM, 4);
    asm.b_cond(Cond::Ge, block);
    if hot {
        asm.mark("hot_loop_end");
    }
    asm.bind(after);
    asm.add_imm(REM, REM, 4);
}

/// `body` once per key of the `REM` left (none when `REM ≤ 0`), counting `REM` to 0.
fn each_key(asm: &mut Asm, body: impl FnOnce(&mut Asm)) {
    let (key, done) = (asm.new_label(), asm.new_label());
    asm.cmp_imm(REM, 0);
    asm.b_cond(Cond::Le, done);
    asm.bind(key);
    body(asm);
    asm.subs_imm(REM, REM, 1);
    asm.b_cond(Cond::Gt, key);
    asm.bind(done);
}

/// Phase 1: `scores[j] = (q·k_j)·scale` for every key, their max broadcast in `MAXB`.
fn scores(asm: &mut Asm, chunks: Chunks) {
    if chunks.count <= RESIDENT {
        asm.comment("q resident in v16..");
        let mut c = 0;
        while c + 1 < chunks.full {
            load_pair(
                asm,
                V(QFIRST + c as u32),
                V(QFIRST + c as u32 + 1),
                QP,
                16 * c as u32,
            );
            c += 2;
        }
        while c < chunks.count {
            load_chunk(asm, chunks, V(QFIRST + c as u32), QP, 16 * c as u32, c);
            c += 1;
        }
    }
    asm.const_4s(MVEC, f32::NEG_INFINITY);
    asm.mov_v(MSCAL, MVEC);
    asm.mov(CUR, SROW);
    asm.mov(KP[0], KROW);
    asm.mov(REM, NKEYS);
    each_four_keys(asm, true, |asm| {
        asm.comment("four keys: q·k_j for j..j+4");
        for key in 1..4 {
            asm.add(KP[key], KP[key - 1], KSTRIDE);
        }
        dot_products(asm, chunks, 4);
        asm.faddp_4s(acc(0, 1), acc(0, 0), acc(1, 0));
        asm.faddp_4s(acc(2, 1), acc(2, 0), acc(3, 0));
        asm.faddp_4s(RED, acc(0, 1), acc(2, 1));
        asm.fmul_4s(RED, RED, SCALE);
        asm.str_post(Width::Q, RED, CUR, 16);
        asm.fmax_4s(MVEC, MVEC, RED);
        asm.add(KP[0], KP[3], KSTRIDE);
    });
    each_key(asm, |asm| {
        asm.comment("one key");
        dot_products(asm, chunks, 1);
        asm.fsum_4s(RED, acc(0, 0));
        asm.fmul_s(RED, RED, SCALE);
        asm.str_post(Width::S, RED, CUR, 4);
        asm.fmax_s(MSCAL, MSCAL, RED);
        asm.add(KP[0], KP[0], KSTRIDE);
    });
    asm.fmaxv_s(RED, MVEC);
    asm.fmax_s(RED, RED, MSCAL);
    asm.dup_4s_lane(MAXB, RED, 0);
}

/// Phase 2: `scores[j] = exp(scores[j] − max)` in place; `Σ` into scalar `TOTAL`.
fn exponentials(asm: &mut Asm) {
    let c = ExpConsts::load(asm, EXP_FIRST);
    asm.comment("e = exp(s − max) in place, Σe");
    asm.zero(SUMV);
    asm.zero(SUMS);
    asm.mov(CUR, SROW);
    asm.mov(REM, NKEYS);
    let (x, t) = (V(0), [V(1), V(2), V(3)]);
    // `w`: four scores (Q) or one (S; lanes 1..3 compute exp(0 − max), never stored or
    // summed).
    let exp_in_place = |asm: &mut Asm, w: Width, bytes: i32| {
        asm.ldr(w, x, CUR, 0);
        asm.fsub_4s(x, x, MAXB);
        exp_4s(asm, &c, x, t);
        asm.str_post(w, x, CUR, bytes);
    };
    each_four_keys(asm, false, |asm| {
        exp_in_place(asm, Width::Q, 16);
        asm.fadd_4s(SUMV, SUMV, x);
    });
    each_key(asm, |asm| {
        exp_in_place(asm, Width::S, 4);
        asm.fadd_s(SUMS, SUMS, x);
    });
    asm.fsum_4s(TOTAL, SUMV);
    asm.fadd_s(TOTAL, TOTAL, SUMS);
}

/// Phase 3: `y = Σ_j (e_j / Σe)·v_j`, up to 16 chunks of y in registers per pass.
fn weighted_values(asm: &mut Asm, chunks: Chunks) {
    let mut c0 = 0;
    while c0 < chunks.count {
        let c1 = (c0 + RESIDENT).min(chunks.count);
        asm.comment(format!("y chunks {c0}..{c1}: Σ_j p_j·v_j"));
        let y = |c: i64| V(YFIRST + (c - c0) as u32);
        for c in c0..c1 {
            asm.zero(y(c));
        }
        asm.mov(CUR, SROW);
        asm.mov(REM, NKEYS);
        asm.add_imm(KP[0], VROW, 16 * c0 as u64);
        each_key(asm, |asm| {
            asm.ldr_post(Width::S, PROB, CUR, 4);
            asm.fdiv_s(PROB, PROB, TOTAL);
            let mut c = c0;
            while c < c1 {
                let off = 16 * (c - c0) as u32;
                let slot = 2 * (((c - c0) / 2) % 2) as usize;
                if c + 1 < c1 && c + 1 < chunks.full {
                    let (a, b) = (KT[slot], KT[slot + 1]);
                    load_pair(asm, a, b, KP[0], off);
                    asm.fmla_4s_lane(y(c), a, PROB, 0);
                    asm.fmla_4s_lane(y(c + 1), b, PROB, 0);
                    c += 2;
                } else {
                    load_chunk(asm, chunks, KT[slot], KP[0], off, c);
                    asm.fmla_4s_lane(y(c), KT[slot], PROB, 0);
                    c += 1;
                }
            }
            asm.add(KP[0], KP[0], KSTRIDE);
        });
        for c in c0..c1 {
            store_chunk(asm, chunks, y(c), YP, 16 * c as u32, c);
        }
        c0 = c1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_head_dim_and_form_emits() {
        for head_dim in [
            1, 2, 3, 4, 5, 8, 13, 16, 31, 32, 64, 65, 100, 128, 256, 300, 1024,
        ] {
            for causal in [
                Causal::Cached { context: 64 },
                Causal::Sequence {
                    t: Extent::Sym(RtSym::T),
                },
                Causal::Sequence {
                    t: Extent::Const(5),
                },
            ] {
                let plan = AttnPlan {
                    heads: 6,
                    kv_heads: 2,
                    head_dim,
                    causal,
                    params: [0, 1, 2, 3, 4],
                };
                let m = emit(&plan).unwrap_or_else(|e| panic!("{head_dim} {causal:?}: {e}"));
                assert!(m.code.mark("hot_loop").is_some());
            }
        }
    }
}
