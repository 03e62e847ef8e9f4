//! The backward f32 GEMM microkernels (`matmul.grad`), both in "axpy form": the output row
//! is k-contiguous and each step adds a broadcast scalar times a k-contiguous row, so the
//! tile is R output rows × 4·Q k-lanes of accumulators updated by FMLA-by-element.
//!
//! - [`emit_dx`] (section 0, parallel over rows m):
//!   `dx[m, g·K + :] = Σ_j dy[m, g·N + j] · w[g·N + j, :]`; per 4 j's it loads one dy
//!   vector per row and, for each of the 4 weight rows, Q vectors of w.
//! - [`emit_dw`] (section 1, parallel over blocks of weight rows):
//!   `dw[j, :] = Σ_m dy[m, j] · x[m, g·K + :]` for rows j of one group, and
//!   `dbias[j] = Σ_m dy[m, j]` (summed in the body's order, so bit-exact); per m it loads
//!   the R rows' dy values as one vector and Q vectors of x.
//!
//! Both overwrite their outputs (the bodies zero them first, then accumulate). k must be a
//! multiple of 4 (the kernels store whole vectors); the matcher declines other shapes.

use super::intexpr::{IntEnv, emit_int};
use crate::aarch64::emit::{ARGS, Asm, Cond, HI, Label, V, Width, X};
use crate::aarch64::kernels::Microkernel;
use bfly_ir::kernel::Expr;

/// Section 0 of `matmul.grad`: params and geometry.
#[derive(Clone, Debug)]
pub struct DxForm {
    pub w: u32,
    pub dy: u32,
    pub dx: u32,
    pub n: i64,
    pub k: i64,
    pub groups: i64,
}

/// Section 1 of `matmul.grad`.
#[derive(Clone, Debug)]
pub struct DwForm {
    pub x: u32,
    pub dy: u32,
    pub dw: u32,
    pub dbias: Option<u32>,
    pub rows: Expr,
    pub n: i64,
    pub k: i64,
    pub groups: i64,
    /// Weight rows per iteration of the section's parallel loop.
    pub rb: i64,
}

/// Tile rows and k-quads of the main tiles.
const R_MAIN: usize = 4;
const Q_MAIN: usize = 4;

/// Accumulator of row `r`, k-quad `q` (a row's quads are consecutive for `st1`).
fn acc(q_count: usize, r: usize, q: usize) -> V {
    V((r * q_count + q) as u32)
}
const D0: u32 = 16;
const W0: V = V(20);

fn zero_accs(a: &mut Asm, r: usize, q: usize) {
    for i in 0..r * q {
        a.zero(V(i as u32));
    }
}

/// `b.cond` dispatch on `rem` (≥ 1) to `tiles[min(rem, R_MAIN)]`, falling through when
/// `rem ≤ 0`.
fn dispatch(a: &mut Asm, rem: X, tiles: &[Label]) {
    a.cmp_imm(rem, R_MAIN as u64);
    a.b_cond(Cond::Ge, tiles[R_MAIN]);
    for r in (1..R_MAIN).rev() {
        a.cmp_imm(rem, r as u64);
        a.b_cond(Cond::Eq, tiles[r]);
    }
}

fn bytes(v: i64) -> u64 {
    (v * 4) as u64
}

// ---------------------------------------------------------------------------------------
// dx = dy · w

mod dxr {
    use crate::aarch64::emit::X;
    pub const ROW: X = crate::aarch64::emit::LO;
    pub const GI: X = X(4);
    pub const DYB: [X; 4] = [X(5), X(6), X(7), X(8)];
    pub const DXB: [X; 4] = [X(9), X(10), X(11), X(12)];
    pub const WG: X = X(13);
    pub const KOFF: X = X(14);
    pub const KCNT: X = X(15);
    pub const DP: [X; 4] = [X(19), X(20), X(21), X(22)];
    pub const WPT: X = X(23);
    pub const JC: X = X(24);
    pub const T0: X = X(25);
}

pub fn emit_dx(f: &DxForm) -> Result<Microkernel, String> {
    use dxr::*;
    let mut a = Asm::new();
    let vsave: Vec<V> = (8..16).map(V).collect();
    let xsave: Vec<X> = (19..26).map(X).collect();
    let tiles: Vec<Label> = (0..=R_MAIN).map(|_| a.new_label()).collect();
    let (row_loop, done) = (a.new_label(), a.new_label());
    a.comment("prologue: save v8..v15, x19..x25");
    a.save_callee_saved(&vsave, &xsave);
    a.comment("row loop: tiles of 4 rows of dx, then 3..1");
    a.bind(row_loop);
    a.sub(T0, HI, ROW);
    dispatch(&mut a, T0, &tiles);
    a.b(done);
    let mut useful = 0;
    for r in (1..=R_MAIN).rev() {
        a.bind(tiles[r]);
        a.comment(format!("tile: {r} row(s) of dx; group 0 bases"));
        let (dy_row, dx_row) = (bytes(f.groups * f.n), bytes(f.groups * f.k));
        a.ldr_x(DYB[0], ARGS, 8 * f.dy);
        a.mul_imm(T0, ROW, dy_row);
        a.add(DYB[0], DYB[0], T0);
        a.ldr_x(DXB[0], ARGS, 8 * f.dx);
        a.mul_imm(T0, ROW, dx_row);
        a.add(DXB[0], DXB[0], T0);
        for i in 1..r {
            a.add_imm(DYB[i], DYB[i - 1], dy_row);
            a.add_imm(DXB[i], DXB[i - 1], dx_row);
        }
        a.ldr_x(WG, ARGS, 8 * f.w);
        a.mov_imm(GI, f.groups);
        let group = a.new_label();
        a.bind(group);
        a.mov_imm(KOFF, 0);
        for (q, count) in [(Q_MAIN, f.k / 16), (1, (f.k % 16) / 4)] {
            if count == 0 {
                continue;
            }
            a.comment(format!("k chunks of {} lanes × {count}", 4 * q));
            a.mov_imm(KCNT, count);
            let top = a.new_label();
            a.bind(top);
            let hot = r == R_MAIN && q == Q_MAIN;
            dx_chunk(&mut a, f, r, q, hot);
            if hot && f.n >= 4 {
                useful = (4 * r * q) as u32;
            }
            a.add_imm(KOFF, KOFF, 16 * q as u64);
            a.subs_imm(KCNT, KCNT, 1);
            a.b_cond(Cond::Ne, top);
        }
        a.comment("next group");
        for i in 0..r {
            a.add_imm(DYB[i], DYB[i], bytes(f.n));
            a.add_imm(DXB[i], DXB[i], bytes(f.k));
        }
        a.add_imm(WG, WG, bytes(f.n * f.k));
        a.subs_imm(GI, GI, 1);
        a.b_cond(Cond::Ne, group);
        a.add_imm(ROW, ROW, r as u64);
        a.b(row_loop);
    }
    a.bind(done);
    a.comment("exit: restore and return");
    a.restore_callee_saved(&vsave, &xsave);
    a.ret();
    Ok(Microkernel {
        name: format!("gemm_grad.f32.dx {R_MAIN}x{}", 4 * Q_MAIN),
        tile: dx_comment(f),
        code: a.finish()?,
        useful_per_iter: useful,
    })
}

/// One (rows × 4q lanes) chunk of dx over all j of the group.
fn dx_chunk(a: &mut Asm, f: &DxForm, r: usize, q: usize, hot: bool) {
    use dxr::*;
    zero_accs(a, r, q);
    for i in 0..r {
        a.mov(DP[i], DYB[i]);
    }
    a.add(WPT, WG, KOFF);
    let w_row = bytes(f.k);
    let step = |a: &mut Asm, lanes: u8| {
        for l in 0..lanes {
            a.ld1_4s(W0, q as u8, WPT, false);
            a.add_imm(WPT, WPT, w_row);
            for i in 0..r {
                for j in 0..q {
                    a.fmla_4s_lane(acc(q, i, j), V(W0.0 + j as u32), V(D0 + i as u32), l);
                }
            }
        }
    };
    if f.n >= 4 {
        a.mov_imm(JC, f.n / 4);
        let top = a.new_label();
        a.bind(top);
        if hot {
            a.mark("hot_loop");
        }
        for (i, &p) in DP[..r].iter().enumerate() {
            a.ldr_post(Width::Q, V(D0 + i as u32), p, 16);
        }
        step(a, 4);
        a.subs_imm(JC, JC, 1);
        a.b_cond(Cond::Ne, top);
        if hot {
            a.mark("hot_loop_end");
        }
    }
    for _ in 0..f.n % 4 {
        for (i, &p) in DP[..r].iter().enumerate() {
            a.ldr_post(Width::S, V(D0 + i as u32), p, 4);
        }
        step(a, 1);
    }
    for (i, &base) in DXB[..r].iter().enumerate() {
        a.add(T0, base, KOFF);
        a.st1_4s(acc(q, i, 0), q as u8, T0, false);
    }
}

fn dx_comment(f: &DxForm) -> String {
    format!(
        "gemm_grad.f32.dx: dx[m, g·K + :] = Σ_j dy[m, g·N + j] · w[g·N + j, :] \
         (G = {}, N = {}, K = {}), rows lo..hi
tile 4 rows × 16 k-lanes, one step of 4 weight rows j..j+4:
   dy(m+i, j..j+4) → v16..v19          ← ldr q, [x19..x22], #16
   for l in 0..4: w(j+l, k..k+16) → v20..v23   ← ld1 {{v20-v23}}, [x23]; x23 += 4·K
     16 × fmla v(4i+q).4s += v(20+q) · v(16+i).s[l]
   accumulators v0..v15 (row i, k-quad q = v(4i+q)) → st1 to dx (overwrites; the body
   zeroes then accumulates)
edges: 3/2/1-row tiles, k in 4-lane chunks past the 16-lane ones, N % 4 = {} scalar steps",
        f.groups,
        f.n,
        f.k,
        f.n % 4
    )
}

// ---------------------------------------------------------------------------------------
// dW = dyᵀ · x, dbias = Σ dy

mod dwr {
    use crate::aarch64::emit::X;
    pub const J: X = crate::aarch64::emit::LO;
    pub const JEND: X = crate::aarch64::emit::HI;
    pub const M: X = X(4);
    pub const XB: X = X(5);
    pub const DYB: X = X(6);
    pub const DWB: X = X(7);
    pub const KOFF: X = X(8);
    pub const KCNT: X = X(9);
    pub const DYP: X = X(10);
    pub const XPT: X = X(11);
    pub const MC: X = X(12);
    pub const T0: X = X(13);
    pub const T1: X = X(14);
    pub const T2: X = X(15);
}

/// The R rows' `dy[m, j..j+R]` into lanes `0..R` of `v16` (`v18` scratch).
fn load_dy(a: &mut Asm, r: usize, p: X) {
    let d = V(D0);
    match r {
        4 => a.ldr(Width::Q, d, p, 0),
        2 => a.ldr(Width::D, d, p, 0),
        1 => a.ldr(Width::S, d, p, 0),
        _ => {
            a.ldr(Width::D, d, p, 0);
            a.ldr(Width::S, V(18), p, 8);
            a.ins_s(d, 2, V(18), 0);
        }
    }
}

/// Lanes `0..R` of `v` to `[p]` (clobbers `p` for R = 3).
fn store_lanes(a: &mut Asm, v: V, r: usize, p: X) {
    match r {
        4 => a.str(Width::Q, v, p, 0),
        2 => a.str(Width::D, v, p, 0),
        1 => a.str(Width::S, v, p, 0),
        _ => {
            a.str(Width::D, v, p, 0);
            a.add_imm(p, p, 8);
            a.st1_lane_s(v, 2, p);
        }
    }
}

pub fn emit_dw(f: &DwForm) -> Result<Microkernel, String> {
    use dwr::*;
    let mut a = Asm::new();
    let vsave: Vec<V> = (8..16).map(V).collect();
    let tiles: Vec<Label> = (0..=R_MAIN).map(|_| a.new_label()).collect();
    let (row_loop, done) = (a.new_label(), a.new_label());
    a.comment("prologue: save v8..v15; M; weight rows lo·rb..hi·rb");
    a.save_callee_saved(&vsave, &[]);
    emit_int(&mut a, &f.rows, M, IntEnv { var: None }, &[T0, T1, T2])?;
    a.mul_imm(J, J, f.rb as u64);
    a.mul_imm(JEND, JEND, f.rb as u64);
    a.comment("weight-row loop: tiles of 4 rows within one group, then 3..1");
    a.bind(row_loop);
    a.sub(T0, JEND, J);
    a.cmp_imm(T0, 0);
    a.b_cond(Cond::Le, done);
    a.mov_imm(T1, f.n);
    a.udiv(T2, J, T1);
    a.madd(T1, T2, T1, T1);
    a.sub(T1, T1, J);
    a.cmp(T0, T1);
    a.csel(T0, T1, T0, Cond::Gt);
    a.ldr_x(XB, ARGS, 8 * f.x);
    a.mul_imm(T2, T2, bytes(f.k));
    a.add(XB, XB, T2);
    dispatch(&mut a, T0, &tiles);
    a.b(done);
    let dy_row = bytes(f.groups * f.n);
    let mut useful = 0;
    for r in (1..=R_MAIN).rev() {
        a.bind(tiles[r]);
        a.comment(format!("tile: {r} weight row(s)"));
        a.ldr_x(DYB, ARGS, 8 * f.dy);
        a.add_lsl(DYB, DYB, J, 2);
        a.ldr_x(DWB, ARGS, 8 * f.dw);
        a.mul_imm(T0, J, bytes(f.k));
        a.add(DWB, DWB, T0);
        if let Some(db) = f.dbias {
            a.comment("dbias: Σ_m dy[m, j], in the body's order");
            let bacc = V(17);
            a.zero(bacc);
            a.mov(DYP, DYB);
            a.mov(MC, M);
            let (top, skip) = (a.new_label(), a.new_label());
            a.cbz(MC, skip);
            a.bind(top);
            load_dy(&mut a, r, DYP);
            a.fadd_4s(bacc, bacc, V(D0));
            a.add_imm(DYP, DYP, dy_row);
            a.subs_imm(MC, MC, 1);
            a.b_cond(Cond::Ne, top);
            a.bind(skip);
            a.ldr_x(T0, ARGS, 8 * db);
            a.add_lsl(T0, T0, J, 2);
            store_lanes(&mut a, bacc, r, T0);
        }
        a.mov_imm(KOFF, 0);
        for (q, count) in [(Q_MAIN, f.k / 16), (1, (f.k % 16) / 4)] {
            if count == 0 {
                continue;
            }
            a.comment(format!("k chunks of {} lanes × {count}", 4 * q));
            a.mov_imm(KCNT, count);
            let top = a.new_label();
            a.bind(top);
            let hot = r == R_MAIN && q == Q_MAIN;
            if hot {
                useful = (r * q) as u32;
            }
            dw_chunk(&mut a, f, r, q, hot);
            a.add_imm(KOFF, KOFF, 16 * q as u64);
            a.subs_imm(KCNT, KCNT, 1);
            a.b_cond(Cond::Ne, top);
        }
        a.add_imm(J, J, r as u64);
        a.b(row_loop);
    }
    a.bind(done);
    a.comment("exit: restore and return");
    a.restore_callee_saved(&vsave, &[]);
    a.ret();
    Ok(Microkernel {
        name: format!("gemm_grad.f32.dw {R_MAIN}x{}", 4 * Q_MAIN),
        tile: dw_comment(f),
        code: a.finish()?,
        useful_per_iter: useful,
    })
}

/// One (rows × 4q lanes) chunk of dW over all m.
fn dw_chunk(a: &mut Asm, f: &DwForm, r: usize, q: usize, hot: bool) {
    use dwr::*;
    zero_accs(a, r, q);
    a.mov(DYP, DYB);
    a.add(XPT, XB, KOFF);
    a.mov(MC, M);
    let (top, end) = (a.new_label(), a.new_label());
    a.cbz(MC, end);
    a.bind(top);
    if hot {
        a.mark("hot_loop");
    }
    load_dy(a, r, DYP);
    a.add_imm(DYP, DYP, bytes(f.groups * f.n));
    a.ld1_4s(W0, q as u8, XPT, false);
    a.add_imm(XPT, XPT, bytes(f.groups * f.k));
    for i in 0..r {
        for j in 0..q {
            a.fmla_4s_lane(acc(q, i, j), V(W0.0 + j as u32), V(D0), i as u8);
        }
    }
    a.subs_imm(MC, MC, 1);
    a.b_cond(Cond::Ne, top);
    if hot {
        a.mark("hot_loop_end");
    }
    a.bind(end);
    for i in 0..r {
        a.add_imm(T0, DWB, bytes(f.k) * i as u64);
        a.add(T0, T0, KOFF);
        a.st1_4s(acc(q, i, 0), q as u8, T0, false);
    }
}

fn dw_comment(f: &DwForm) -> String {
    format!(
        "gemm_grad.f32.dw: dw[j, :] = Σ_m dy[m, j] · x[m, g·K + :]{} (G = {}, N = {}, K = {}), \
         weight rows lo·{rb}..hi·{rb}
tile 4 weight rows × 16 k-lanes, one step per row m:
   dy(m, j..j+4) → v16                 ← ldr q, [x10]; x10 += 4·G·N
   x(m, k..k+16) → v20..v23            ← ld1 {{v20-v23}}, [x11]; x11 += 4·G·K
   16 × fmla v(4i+q).4s += v(20+q) · v16.s[i]
   accumulators v0..v15 (row i, k-quad q = v(4i+q)) → st1 to dw (overwrites)
edges: 3/2/1-row tiles (a tile never crosses a group), k in 4-lane chunks past the
16-lane ones",
        if f.dbias.is_some() {
            ", dbias[j] = Σ_m dy[m, j]"
        } else {
            ""
        },
        f.groups,
        f.n,
        f.k,
        rb = f.rb
    )
}
