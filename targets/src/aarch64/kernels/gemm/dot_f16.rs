//! The FEAT_FP16 tile of the forward GEMM (`gemm.f16.dot 3x4`): f16 weights, activations
//! narrowed to f16 (FCVTN/FCVTN2, round to nearest even), `FMLA .8h` into one 8-lane f16
//! partial sum per (row, column) — 8 k per instruction, twice the f32 rate.
//!
//! x is narrowed once per column group into a stack scratch (rows of K rounded up to 8
//! halves, zero-padded), not once per quad: FCVTN is 2 micro-ops on one vector pipe on
//! Neoverse-N2/Cortex-A710, so narrowing in the k loop would cost more than the FMLAs. The
//! scratch is at most [`SCRATCH_MAX`] bytes (row bound × padded K × 2); a larger section
//! runs the f16w tile instead.
//!
//! Accumulating in f16 is bounded: each f16 partial sum takes [`CHUNK`] products per lane
//! and is then widened exactly (FCVTL/FCVTL2) and added into a 4-lane f32 sum, so the
//! error does not grow with K beyond one chunk. Per output, with u = 2^-11 (f16 unit
//! roundoff) and S = Σ_k |x_k·w_k|:
//! - narrowing x: |x̂ − x| ≤ u·|x| → at most u·S;
//! - a chunk's recursive FMA sum of CHUNK terms per lane: ≤ γ_CHUNK·S_chunk ≈ CHUNK·u·S_chunk
//!   (plus half an f16 subnormal step, 2^-25, per operation when partial sums are tiny);
//! - the f32 adds of chunks and lanes: ≤ K·2^-24·S (negligible).
//!
//! Total ≲ (CHUNK + 1)·u·S + K·2^-25 (CHUNK = 16: ≈ 0.83 % of S), independent of K. Values
//! beyond the f16 range (|x| > 65504, or a chunk's partial sum overflowing) become ±inf —
//! the precision/range trade the `dense = f16` quantization opts into on an FP16 CPU.
//!
//! The k % 8 tail runs in f32 (the narrowed x and w widened, FMLA .4s).

use super::dot::{KC, M, ROW, T0, WP, WQ, XG, XP, header, spill_row_sums};
use super::form::FwdForm;
use crate::aarch64::emit::{Asm, Cond, V, Width, X};

/// Rows of the main tile: 12 f32 sums + 12 f16 sums + 4 w + 3 x = 31 registers.
pub const R_MAIN: usize = 3;
/// Largest stack scratch for the narrowed x rows.
pub const SCRATCH_MAX: u64 = 64 * 1024;

/// Bytes of one narrowed x row: K rounded up to 8 halves.
fn row_bytes(k: u64) -> u64 {
    k.div_ceil(8) * 16
}

/// Scratch bytes for `max_rows` narrowed rows (`None` on overflow).
pub fn scratch_bytes(max_rows: u64, k: u64) -> Option<u64> {
    max_rows.checked_mul(row_bytes(k))
}

/// Narrows the current group's M rows of x (`XG`, `xs` bytes apart) to f16 into the
/// scratch at `sp + base`, each row zero-padded to a multiple of 8 halves.
pub fn emit_narrow(a: &mut Asm, k: usize, xs: u64, base: u64) {
    let (k8, kt) = (k / 8, k % 8);
    let (src, dst, cur) = (XP[0], XP[1], XP[2]);
    a.comment("narrow this group's x rows to f16 into the stack scratch");
    a.mov(src, XG);
    a.add_imm(dst, X(31), base);
    a.mov_imm(ROW, 0);
    let (top, done) = (a.new_label(), a.new_label());
    a.bind(top);
    a.cmp(ROW, M);
    a.b_cond(Cond::Ge, done);
    a.mov(cur, src);
    if k8 > 0 {
        a.mov_imm(KC, k8 as i64);
        let inner = a.new_label();
        a.bind(inner);
        a.ldr_post(Width::Q, v(0), cur, 16);
        a.ldr_post(Width::Q, v(1), cur, 16);
        a.fcvtn_4h(v(0), v(0));
        a.fcvtn2_8h(v(0), v(1));
        a.str_post(Width::Q, v(0), dst, 16);
        a.subs_imm(KC, KC, 1);
        a.b_cond(Cond::Ne, inner);
    }
    if kt > 0 {
        a.zero(v(2));
        a.str(Width::Q, v(2), dst, 0);
        for e in 0..kt {
            a.ldr_post(Width::S, v(0), cur, 4);
            a.fcvtn_4h(v(0), v(0));
            a.str(Width::H, v(0), dst, 2 * e as u32);
        }
        a.add_imm(dst, dst, 16);
    }
    a.add_imm(src, src, xs);
    a.add_imm(ROW, ROW, 1);
    a.b(top);
    a.bind(done);
}
/// k-steps of 8 (products per f16 lane) accumulated in f16 before widening into f32.
/// Longer chunks loosen the bound linearly; shorter ones pay the flush (FCVTL, FCVTL2, two
/// FADDs and a zeroing per sum) more often — at 16 it costs 5 instructions per 16 FMLAs.
pub const CHUNK: usize = 16;

/// Counter of the k-steps left in the current chunk (`XP[3]`, unused by ≤ 3-row tiles).
const IC: X = X(22);

/// Flush temporary (free once the k-step registers are done with).
const TMP: V = V(31);

const fn v(i: usize) -> V {
    V(i as u32)
}
fn accf(i: usize, j: usize) -> V {
    v(4 * i + j)
}
fn acch(i: usize, j: usize) -> V {
    v(12 + 4 * i + j)
}
fn wh(j: usize) -> V {
    v(24 + j)
}
fn xh(i: usize) -> V {
    v(28 + i)
}

pub fn tile_comment(f: &FwdForm) -> String {
    format!(
        "{}
tile 3 rows × 4 columns, one k-step of 8 lanes:
          w0   w1   w2   w3     ← ldr q v24..v27, [x24..x27], #16   (8 × f16)
   x0 →  v12  v13  v14  v15     ← ldr q v28..v30, [x19..x21], #16   (8 × f16, narrowed
   x1 →  v16  v17  v18  v19        once per group into the stack scratch: fcvtn/fcvtn2)
   x2 →  v20  v21  v22  v23
12 × fmla v(12+4i+j).8h += v(28+i) · v(24+j): f16 partial sums of row i · column j
every {CHUNK} k-steps (and after the last): fcvtl/fcvtl2 v(12+4i+j) → fadd into the f32
sums v(4i+j).4s, zero the f16 sums (error bound independent of K)
after k: k % 8 = {kt} f32 steps (ldr h x, ldr h w, fcvtl both, fmla .4s), faddp ×3 per row
→ stack → store template per row
edges: 2/1-row tiles, 1..3-column quads (w rows clamped, lanes stored singly)",
        header("gemm.f16.dot", f),
        kt = f.k % 8,
    )
}

/// One row tile (`r` ≤ 3 rows × 4 columns) over all `k`, x read from the scratch at
/// `sp + base`; the chunk loop's inner k-step loop is the hot loop when `hot`. Returns the
/// FMLAs per hot-loop iteration.
pub fn emit_tile(a: &mut Asm, r: usize, base: u64, k: usize, hot: bool) -> u32 {
    a.comment(format!(
        "tile: {r} row(s) × 4 columns, f16 sums over chunks of {CHUNK} k-steps of 8"
    ));
    let rb = row_bytes(k as u64);
    a.mul_imm(T0, ROW, rb);
    a.add_imm(XP[0], X(31), base);
    a.add(XP[0], XP[0], T0);
    for i in 1..r {
        a.add_imm(XP[i], XP[i - 1], rb);
    }
    for j in 0..4 {
        a.mov(WP[j], WQ[j]);
    }
    for i in 0..r {
        for j in 0..4 {
            a.zero(accf(i, j));
        }
    }
    let (k8, kt) = (k / 8, k % 8);
    let (chunks, rest) = (k8 / CHUNK, k8 % CHUNK);
    let mut marked = false;
    let mut chunk = |a: &mut Asm, steps: usize| {
        for i in 0..r {
            for j in 0..4 {
                a.zero(acch(i, j));
            }
        }
        a.mov_imm(IC, steps as i64);
        let top = a.new_label();
        a.bind(top);
        let mark = hot && !marked;
        if mark {
            a.mark("hot_loop");
            marked = true;
        }
        for (i, &p) in XP[..r].iter().enumerate() {
            a.ldr_post(Width::Q, xh(i), p, 16);
        }
        for (j, &p) in WP.iter().enumerate() {
            a.ldr_post(Width::Q, wh(j), p, 16);
        }
        for i in 0..r {
            for j in 0..4 {
                a.fmla_8h(acch(i, j), xh(i), wh(j));
            }
        }
        a.subs_imm(IC, IC, 1);
        a.b_cond(Cond::Ne, top);
        if mark {
            a.mark("hot_loop_end");
        }
        a.comment("flush: widen the f16 sums into the f32 sums");
        for i in 0..r {
            for j in 0..4 {
                a.fcvtl_4s(TMP, acch(i, j));
                a.fadd_4s(accf(i, j), accf(i, j), TMP);
                a.fcvtl2_4s(TMP, acch(i, j));
                a.fadd_4s(accf(i, j), accf(i, j), TMP);
            }
        }
    };
    if chunks > 0 {
        a.comment(format!("chunk loop: {chunks} × {CHUNK} k-steps of 8"));
        a.mov_imm(KC, chunks as i64);
        let top = a.new_label();
        a.bind(top);
        chunk(a, CHUNK);
        a.subs_imm(KC, KC, 1);
        a.b_cond(Cond::Ne, top);
    }
    if rest > 0 {
        a.comment(format!("last chunk: {rest} k-step(s) of 8"));
        chunk(a, rest);
    }
    if kt > 0 {
        a.comment(format!("k tail: {kt} f32 step(s)"));
    }
    for _ in 0..kt {
        for (i, &p) in XP[..r].iter().enumerate() {
            a.ldr_post(Width::H, xh(i), p, 2);
            a.fcvtl_4s(xh(i), xh(i));
        }
        for (j, &p) in WP.iter().enumerate() {
            a.ldr_post(Width::H, wh(j), p, 2);
            a.fcvtl_4s(wh(j), wh(j));
        }
        for i in 0..r {
            for j in 0..4 {
                a.fmla_4s(accf(i, j), xh(i), wh(j));
            }
        }
    }
    a.comment("reduce: 4 partial-sum vectors per row → the row's 4 column sums");
    spill_row_sums(a, r, accf);
    if marked { (r * 4) as u32 } else { 0 }
}
