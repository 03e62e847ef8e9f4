//! Section 1 of the butterfly backward: per row, the forward recompute of every stage input
//! into `xs`, the stages backward into `gs` (or `dx`), and `dx` as the stacks' sum.
//!
//! Memory layout (all f32, `P = rows·n·4` bytes between stage planes):
//! `xs[slab·stages + st][m][n]` is the input of stage `st`; `gs[slab·(stages+1) + st][m][n]`
//! the gradient of that input (`st = stages`: of the stack's output, the padded `dy`);
//! twiddles `tw[slab·stages + st][n/2][2][2]`.

use super::Form;
use super::pairs::Chunk;
use super::template::{self, Geo};
use crate::aarch64::emit::{ARGS, Asm, Cond, HI, LO, V, Width, X};
use crate::aarch64::kernels::Microkernel;
use crate::aarch64::kernels::common::counted;

const XIN: X = X(4);
const TW: X = X(5);
const DY: X = X(6);
const XS: X = X(7);
const GS: X = X(8);
const DX: X = X(9);
/// Bytes between consecutive stage planes of `xs`/`gs`.
const PLANE: X = X(10);
/// The row `r` (runs from `lo` to `hi`).
const R: X = LO;
/// `m·n·4`: the row's offset inside a plane.
const MOFF: X = X(11);
const GRP: X = X(12);
const S: X = X(13);
/// The current plane row (forward: of `xs`, backward: of `gs`).
const CUR: X = X(14);
/// The current stage's twiddles (advanced by `ld4`).
const TWP: X = X(15);
const SRC: X = X(0);
const DST: X = X(1);
const CNT: X = X(19);
const BLK: X = X(20);
const T0: X = X(21);
const T1: X = X(22);
const TWSLAB: X = X(23);
const SLAB: X = X(24);
const SAVED: [X; 6] = [CNT, BLK, T0, T1, TWSLAB, SLAB];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// `y_p = t00·x_p + t01·x_q`, `y_q = t10·x_p + t11·x_q`.
    Forward,
    /// `g_p = t00·g_p + t10·g_q`, `g_q = t01·g_p + t11·g_q` (`Tᵀ·g`).
    Backward,
}

pub fn emit(form: &Form) -> Result<Microkernel, String> {
    let geo = &form.geo;
    let (n, half, stages) = (geo.n, geo.half(), geo.stages());
    let row_bytes = 4 * n;
    let mut a = Asm::new();

    a.comment("prologue: params, plane size rows·n·4");
    a.save_callee_saved(&[], &SAVED);
    for (reg, param) in [
        (XIN, template::X),
        (TW, template::TW),
        (DY, template::DY),
        (XS, template::XS),
        (GS, template::GS),
        (DX, template::DX),
    ] {
        a.ldr_x(reg, ARGS, 8 * param);
    }
    form.emit_rows(&mut a, PLANE, T0);
    a.mul_imm(PLANE, PLANE, row_bytes);
    let done = a.new_label();
    a.cmp(R, HI);
    a.b_cond(Cond::Ge, done);

    let row_top = a.new_label();
    a.bind(row_top);
    a.comment("row r: m = r / groups, g = r % groups");
    if geo.groups == 1 {
        a.mul_imm(MOFF, R, row_bytes);
    } else {
        a.mov_imm(T0, geo.groups as i64);
        a.udiv(T1, R, T0);
        a.mul(T0, T1, T0);
        a.sub(GRP, R, T0);
        a.mul_imm(MOFF, T1, row_bytes);
    }
    a.mov_imm(S, 0);

    let stack_top = a.new_label();
    a.bind(stack_top);
    a.comment("stack s: slab = g·stacks + s");
    if geo.groups == 1 {
        a.mov(SLAB, S);
    } else {
        a.mov_imm(T0, geo.stacks as i64);
        a.madd(SLAB, GRP, T0, S);
    }
    a.mul_imm(T0, SLAB, stages * half * 16);
    a.add(TWSLAB, TW, T0);
    a.mul_imm(T0, SLAB, stages);
    a.mul(T0, T0, PLANE);
    a.add(CUR, XS, T0);
    a.add(CUR, CUR, MOFF);

    a.comment(format!(
        "xs[slab, 0, m] = x[r] ({} values), zero-padded to {n}",
        geo.n_in
    ));
    a.mul_imm(SRC, R, 4 * geo.n_in);
    a.add(SRC, SRC, XIN);
    a.mov(DST, CUR);
    copy(&mut a, geo.n_in);
    zero(&mut a, n - geo.n_in);

    a.mov(TWP, TWSLAB);
    for st in 0..stages.saturating_sub(1) {
        a.comment(format!("forward stage {st}: xs[{st}] → xs[{}]", st + 1));
        a.mov(SRC, CUR);
        a.add(CUR, CUR, PLANE);
        a.mov(DST, CUR);
        stage(&mut a, geo, st, Dir::Forward, false);
    }

    a.comment("gs[slab, stages, m] = dy[r, s·n ..], zero past n_out");
    a.mul_imm(T0, SLAB, stages + 1);
    a.add_imm(T0, T0, stages);
    a.mul(T0, T0, PLANE);
    a.add(CUR, GS, T0);
    a.add(CUR, CUR, MOFF);
    a.mul_imm(SRC, R, 4 * geo.n_out);
    a.add(SRC, SRC, DY);
    a.mul_imm(T0, S, row_bytes);
    a.add(SRC, SRC, T0);
    a.mov(DST, CUR);
    let last_len = geo.n_out - (geo.stacks - 1) * n;
    if last_len == n {
        copy(&mut a, n);
    } else if geo.stacks == 1 {
        copy(&mut a, last_len);
        zero(&mut a, n - last_len);
    } else {
        let (last, join) = (a.new_label(), a.new_label());
        a.cmp_imm(S, geo.stacks - 1);
        a.b_cond(Cond::Eq, last);
        copy(&mut a, n);
        a.b(join);
        a.bind(last);
        copy(&mut a, last_len);
        zero(&mut a, n - last_len);
        a.bind(join);
    }

    a.add_imm(TWP, TWSLAB, (stages - 1) * half * 16);
    let mut useful = 0;
    for st in (0..stages).rev() {
        let into_dx = st == 0 && geo.direct_dx();
        a.comment(format!(
            "backward stage {st}: gs[{}] → {}",
            st + 1,
            if into_dx {
                "dx".to_string()
            } else {
                format!("gs[{st}]")
            }
        ));
        a.mov(SRC, CUR);
        a.sub(CUR, CUR, PLANE);
        if into_dx {
            a.mul_imm(DST, R, row_bytes);
            a.add(DST, DST, DX);
        } else {
            a.mov(DST, CUR);
        }
        let hot = st == stages - 1;
        let u = stage(&mut a, geo, st, Dir::Backward, hot);
        if hot {
            useful = u;
        }
        if st > 0 {
            a.sub_imm(TWP, TWP, 2 * half * 16);
        }
    }
    a.add_imm(S, S, 1);
    a.cmp_imm(S, geo.stacks);
    a.b_cond(Cond::Lo, stack_top);

    if !geo.direct_dx() {
        dx_sum(&mut a, geo);
    }
    a.add_imm(R, R, 1);
    a.cmp(R, HI);
    a.b_cond(Cond::Lt, row_top);

    a.bind(done);
    a.comment("epilogue");
    a.restore_callee_saved(&[], &SAVED);
    a.ret();

    let chunk = Chunk::new(half, 1);
    let code = a.finish()?;
    Ok(Microkernel {
        name: format!("butterfly_grad.f32.rows {}p", chunk.pairs),
        tile: tile(geo, chunk.pairs),
        code,
        useful_per_iter: useful,
    })
}

fn tile(geo: &Geo, pairs: u32) -> String {
    format!(
        "butterfly backward, rows section: n = {n}, {stages} stages, {stacks} stack(s), \
         {groups} group(s), n_in = {n_in}, n_out = {n_out}
one row per iteration of lo..hi; per stack: x → xs[0], {fwd} forward stages, dy → gs[top],
{stages} backward stages, then dx = Σ_stacks gs[0] (or the last stage writes dx)
pairs in lanes, {pairs} pairs per step:
  v0-v3    P0 Q0 P1 Q1   the step's p/q inputs (stride 1: ld2 .4s, 2: ld2 .2d, 4: ld1,
                         ≥ 8: p and q halves)
  v4-v7    t00 t01 t10 t11 of pairs 0-3 (ld4), v24-v27 of pairs 4-7
  v16-v19  outputs, same roles; v20-v23 the second products
  forward  y_p = t00·x_p + t01·x_q, y_q = t10·x_p + t11·x_q   xs[st] → xs[st+1]
  backward g_p = t00·g_p + t10·g_q, g_q = t01·g_p + t11·g_q   gs[st+1] → gs[st]
fmul, fmul, fadd per output (no fmla): the body's rounding, bit for bit
one step: ld4 ×{sets}, {loads} loads, {fma} fmul/fadd, {loads} stores",
        n = geo.n,
        stages = geo.stages(),
        stacks = geo.stacks,
        groups = geo.groups,
        n_in = geo.n_in,
        n_out = geo.n_out,
        fwd = geo.stages() - 1,
        sets = pairs / 4,
        loads = pairs / 2,
        fma = 6 * pairs / 4,
    )
}

/// One stage from `SRC` to `DST` with the twiddles at `TWP` (left just past the stage's).
/// Returns the fmul/fadd per step.
fn stage(a: &mut Asm, geo: &Geo, st: u64, dir: Dir, hot: bool) -> u32 {
    let half = geo.half();
    let chunk = Chunk::new(half, geo.stride(st));
    a.comment(chunk.describe());
    let step = |a: &mut Asm| {
        chunk.load(a, 0, SRC);
        a.ld4_4s(V(4), TWP, true);
        if chunk.sets() == 2 {
            a.ld4_4s(V(24), TWP, true);
        }
        let (inp, out) = (chunk.roles(0), chunk.roles(16));
        for k in 0..chunk.sets() as usize {
            let t = if k == 0 { 4 } else { 24 };
            let [t00, t01, t10, t11] = [V(t), V(t + 1), V(t + 2), V(t + 3)];
            let (pp, pq, qp, qq) = match dir {
                Dir::Forward => (t00, t01, t10, t11),
                Dir::Backward => (t00, t10, t01, t11),
            };
            let (p, q, yp, yq) = (inp[2 * k], inp[2 * k + 1], out[2 * k], out[2 * k + 1]);
            // The body rounds each product, then the sum: fmul, fmul, fadd (no fmla).
            let (tp, tq) = (V(20 + 2 * k as u32), V(21 + 2 * k as u32));
            a.fmul_4s(yp, pp, p);
            a.fmul_4s(yq, qp, p);
            a.fmul_4s(tp, pq, q);
            a.fmul_4s(tq, qq, q);
            a.fadd_4s(yp, yp, tp);
            a.fadd_4s(yq, yq, tq);
        }
        chunk.store(a, 16, DST);
    };
    match chunk.block_stride() {
        None => counted(a, CNT, half / u64::from(chunk.pairs), hot, step),
        Some(s) => {
            let s = u64::from(s);
            let block = a.new_label();
            a.mov_imm(BLK, (half / s) as i64);
            a.bind(block);
            counted(a, CNT, s / 8, hot, step);
            a.add_imm(SRC, SRC, 4 * s);
            a.add_imm(DST, DST, 4 * s);
            a.subs_imm(BLK, BLK, 1);
            a.b_cond(Cond::Ne, block);
        }
    }
    // Per set of 4 pairs: 4 fmul + 2 fadd.
    6 * chunk.sets()
}

/// Copies `count` floats from `SRC` to `DST`, advancing both.
fn copy(a: &mut Asm, count: u64) {
    counted(a, CNT, count / 16, false, |a| {
        a.ld1_4s(V(0), 4, SRC, true);
        a.st1_4s(V(0), 4, DST, true);
    });
    for _ in 0..(count % 16) / 4 {
        a.ldr_post(Width::Q, V(0), SRC, 16);
        a.str_post(Width::Q, V(0), DST, 16);
    }
    for _ in 0..count % 4 {
        a.ldr_post(Width::S, V(0), SRC, 4);
        a.str_post(Width::S, V(0), DST, 4);
    }
}

/// Stores `count` zeros at `DST`, advancing it.
fn zero(a: &mut Asm, count: u64) {
    if count == 0 {
        return;
    }
    for v in 0..4 {
        a.zero(V(v));
    }
    counted(a, CNT, count / 16, false, |a| a.st1_4s(V(0), 4, DST, true));
    for _ in 0..(count % 16) / 4 {
        a.str_post(Width::Q, V(0), DST, 16);
    }
    for _ in 0..count % 4 {
        a.str_post(Width::S, V(0), DST, 4);
    }
}

/// `dx[r, j] = Σ_s gs[slab(g, s), 0, m, j]` for `j < n_in`, summed in stack order.
fn dx_sum(a: &mut Asm, geo: &Geo) {
    let stages = geo.stages();
    a.comment("dx[r] = Σ_s gs[g·stacks + s, 0, m] (stack order)");
    a.mul_imm(DST, R, 4 * geo.n_in);
    a.add(DST, DST, DX);
    if geo.groups == 1 {
        a.mov(SRC, GS);
    } else {
        a.mul_imm(T0, GRP, geo.stacks * (stages + 1));
        a.mul(T0, T0, PLANE);
        a.add(SRC, GS, T0);
    }
    a.add(SRC, SRC, MOFF);
    a.mul_imm(T1, PLANE, stages + 1);
    let sum_one = |a: &mut Asm, w: Width| {
        a.mov(T0, SRC);
        a.ldr(w, V(0), T0, 0);
        for _ in 1..geo.stacks {
            a.add(T0, T0, T1);
            a.ldr(w, V(1), T0, 0);
            match w {
                Width::Q => a.fadd_4s(V(0), V(0), V(1)),
                _ => a.fadd_s(V(0), V(0), V(1)),
            }
        }
        let bytes = w.bytes();
        a.str_post(w, V(0), DST, bytes as i32);
        a.add_imm(SRC, SRC, u64::from(bytes));
    };
    counted(a, CNT, geo.n_in / 4, false, |a| sum_one(a, Width::Q));
    for _ in 0..geo.n_in % 4 {
        sum_one(a, Width::S);
    }
}
