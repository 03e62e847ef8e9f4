//! Section 2 of the butterfly backward: the twiddle gradients, parallel over `w = slab ·
//! stages + st`. Each iteration owns `dtw[w]` (`n/2` pairs × 4 entries): it sums
//! `g_out ⊗ x_in` of its stage over all rows, in row order, from the planes section 1 saved
//! (`xs[w]`, `gs[w + slab + 1]`), and stores every entry once — so any `lo..hi` split writes
//! exactly the entries of its own `w`s, as the body does (zero, then accumulate).
//!
//! Vectorized over the twiddle index: a chunk of 8 pairs keeps its 32 sums in 8 registers
//! while the rows stream by (two 8-pair windows of one row per step), then `st4` writes
//! them back in the `[pair][2][2]` layout. Each sum adds the rounded product, in row order,
//! as the body does, so the result is bit-identical to the interpreter's.

use super::Form;
use super::pairs::Chunk;
use super::template::{self, Geo};
use crate::aarch64::emit::{ARGS, Asm, Cond, HI, LO, V, X};
use crate::aarch64::kernels::Microkernel;

const XS: X = X(4);
const GS: X = X(5);
const DTW: X = X(6);
/// Bytes between stage planes (`rows·n·4`).
const PLANE: X = X(7);
const ROWS: X = X(8);
/// `w = slab·stages + st`, from `lo` to `hi`.
const W: X = LO;
const ST: X = X(9);
const SLAB: X = X(10);
/// Row 0 of the current chunk in `xs[w]` and `gs[w + slab + 1]`.
const XB: X = X(11);
const GB: X = X(12);
/// Next twiddle-gradient entry to store.
const DP: X = X(13);
/// The row being read (advances by `n·4` per row).
const XR: X = X(14);
const GR: X = X(15);
const CNT: X = X(0);
const CH: X = X(1);
const BLK: X = X(19);
const T0: X = X(20);
const SAVED: [X; 2] = [BLK, T0];

pub fn emit(form: &Form) -> Result<Microkernel, String> {
    let geo = &form.geo;
    let (n, half, stages) = (geo.n, geo.half(), geo.stages());
    let mut a = Asm::new();

    a.comment("prologue: params, rows, plane size rows·n·4");
    a.save_callee_saved(&[], &SAVED);
    for (reg, param) in [(XS, template::XS), (GS, template::GS), (DTW, template::DTW)] {
        a.ldr_x(reg, ARGS, 8 * param);
    }
    form.emit_rows(&mut a, ROWS, T0);
    a.mul_imm(PLANE, ROWS, 4 * n);
    let (done, next) = (a.new_label(), a.new_label());
    a.cmp(W, HI);
    a.b_cond(Cond::Ge, done);

    let top = a.new_label();
    a.bind(top);
    a.comment("w: slab = w / stages, st = w % stages; planes xs[w], gs[w + slab + 1]");
    a.mov_imm(T0, stages as i64);
    a.udiv(SLAB, W, T0);
    a.mul(T0, SLAB, T0);
    a.sub(ST, W, T0);
    a.mul(XB, W, PLANE);
    a.add(XB, XB, XS);
    a.add(T0, W, SLAB);
    a.add_imm(T0, T0, 1);
    a.mul(T0, T0, PLANE);
    a.add(GB, GS, T0);
    a.mul_imm(DP, W, half * 16);
    a.add(DP, DP, DTW);

    // One code block per distinct stride (as the body has one branch per stride).
    let mut by_stride: Vec<(u64, Vec<u64>)> = Vec::new();
    for st in 0..stages {
        let s = geo.stride(st);
        match by_stride.iter_mut().find(|(v, _)| *v == s) {
            Some((_, list)) => list.push(st),
            None => by_stride.push((s, vec![st])),
        }
    }
    let labels: Vec<_> = by_stride.iter().map(|_| a.new_label()).collect();
    for ((_, list), &l) in by_stride.iter().zip(&labels) {
        for &st in list {
            a.cmp_imm(ST, st);
            a.b_cond(Cond::Eq, l);
        }
    }
    a.b(next);
    let mut useful = 0;
    for (i, ((stride, _), &l)) in by_stride.iter().zip(&labels).enumerate() {
        a.bind(l);
        let u = stride_block(&mut a, geo, *stride, i == 0);
        if i == 0 {
            useful = u;
        }
        a.b(next);
    }

    a.bind(next);
    a.add_imm(W, W, 1);
    a.cmp(W, HI);
    a.b_cond(Cond::Lt, top);
    a.bind(done);
    a.comment("epilogue");
    a.restore_callee_saved(&[], &SAVED);
    a.ret();

    let pairs = Chunk::new(half, 1).pairs;
    let code = a.finish()?;
    Ok(Microkernel {
        name: format!("butterfly_grad.f32.dtw {pairs}p"),
        tile: tile(geo, pairs),
        code,
        useful_per_iter: useful,
    })
}

fn tile(geo: &Geo, pairs: u32) -> String {
    format!(
        "butterfly backward, twiddle-gradient section: n = {n}, {stages} stages, {slabs} slab(s)
one (slab, stage) per iteration of lo..hi; per chunk of {pairs} pairs, all rows in order:
  v0-v3    x:  P0 Q0 P1 Q1 of the row (stage input, xs)
  v4-v7    g:  P0 Q0 P1 Q1 of the row (output gradient, gs)
  v16-v19  Σ g_p·x_p, g_p·x_q, g_q·x_p, g_q·x_q of pairs 0-3 (dT00 dT01 dT10 dT11)
  v20-v23  the same for pairs 4-7; v24-v31 the products
fmul then fadd (no fmla): the body's rounding, bit for bit
one row: {loads} vector loads, {fma} fmul + {fma} fadd; then st4 ×{sets} to dtw",
        n = geo.n,
        stages = geo.stages(),
        slabs = geo.groups * geo.stacks,
        loads = pairs,
        fma = pairs,
        sets = pairs / 4,
    )
}

/// The whole `dtw[w]` for a stage of stride `stride`. Returns the fmul/fadd per row step.
fn stride_block(a: &mut Asm, geo: &Geo, stride: u64, hot: bool) -> u32 {
    let (n, half) = (geo.n, geo.half());
    let chunk = Chunk::new(half, stride);
    let sets = chunk.sets();
    a.comment(chunk.describe());
    let step = u64::from(chunk.step_bytes());
    // Each load advanced the row pointer by one step; the rest of the row is skipped.
    let row_skip = 4 * n - step;
    let chunk_body = |a: &mut Asm| {
        for v in 16..16 + 4 * sets {
            a.zero(V(v));
        }
        let (rows_top, store) = (a.new_label(), a.new_label());
        a.mov(XR, XB);
        a.mov(GR, GB);
        a.mov(CNT, ROWS);
        a.cbz(CNT, store);
        a.bind(rows_top);
        if hot {
            a.mark("hot_loop");
        }
        chunk.load(a, 0, XR);
        chunk.load(a, 4, GR);
        let (x, g) = (chunk.roles(0), chunk.roles(4));
        for k in 0..sets as usize {
            let acc = 16 + 4 * k as u32;
            let (xp, xq, gp, gq) = (x[2 * k], x[2 * k + 1], g[2 * k], g[2 * k + 1]);
            // `dtw = dtw + g·x` rounds the product first: fmul, then fadd (no fmla).
            let prods = [(gp, xp), (gp, xq), (gq, xp), (gq, xq)];
            for (c, (gv, xv)) in prods.into_iter().enumerate() {
                a.fmul_4s(V(acc + 8 + c as u32), gv, xv);
            }
            for c in 0..4 {
                a.fadd_4s(V(acc + c), V(acc + c), V(acc + 8 + c));
            }
        }
        if row_skip > 0 {
            a.add_imm(XR, XR, row_skip);
            a.add_imm(GR, GR, row_skip);
        }
        a.subs_imm(CNT, CNT, 1);
        a.b_cond(Cond::Ne, rows_top);
        if hot {
            a.mark("hot_loop_end");
        }
        a.bind(store);
        for k in 0..sets {
            a.st4_4s(V(16 + 4 * k), DP, true);
        }
        a.add_imm(XB, XB, step);
        a.add_imm(GB, GB, step);
    };
    let chunks = a.new_label();
    match chunk.block_stride() {
        None => {
            a.mov_imm(CH, (half / u64::from(chunk.pairs)) as i64);
            a.bind(chunks);
            chunk_body(a);
            a.subs_imm(CH, CH, 1);
            a.b_cond(Cond::Ne, chunks);
        }
        Some(s) => {
            let s = u64::from(s);
            let block = a.new_label();
            a.mov_imm(BLK, (half / s) as i64);
            a.bind(block);
            a.mov_imm(CH, (s / 8) as i64);
            a.bind(chunks);
            chunk_body(a);
            a.subs_imm(CH, CH, 1);
            a.b_cond(Cond::Ne, chunks);
            a.add_imm(XB, XB, 4 * s);
            a.add_imm(GB, GB, 4 * s);
            a.subs_imm(BLK, BLK, 1);
            a.b_cond(Cond::Ne, block);
        }
    }
    8 * sets
}
