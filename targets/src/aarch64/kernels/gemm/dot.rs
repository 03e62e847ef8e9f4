//! The forward f32 GEMM microkernel in "dot form": both operands are k-contiguous, so a
//! tile of R rows × 4 columns keeps one 4-lane partial-sum vector per (row, column), loads
//! R row vectors of x and 4 of w per k-step of 4, and reduces each row's four vectors with
//! three FADDPs into the four columns' sums at the end — no packing, and `w` is streamed
//! once per tile of rows (decode, M = 1, reads every weight exactly once).
//!
//! Iteration space: the section's column tiles `lo..hi` are columns `lo·nt .. hi·nt`,
//! walked group by group (x's column offset is `g·K`) in quads of 4 columns (the last of a
//! group may have 1..3: its missing w rows repeat the last valid one and only its valid
//! lanes are stored); each quad runs over all M rows in tiles of 5 (then 4..1). Row sums go
//! to the stack and the store template (bias, epilogue) runs once per row.

use super::form::FwdForm;
use super::intexpr::{IntEnv, emit_int};
use super::neon::{Consts, RowCtx, VPool, emit_row};
use super::template::FUn;
use crate::aarch64::emit::{ARGS, Asm, Cond, HI, LO, Label, V, Width, X};
use crate::aarch64::kernels::Microkernel;

/// First column of the current quad (starts as `lo·nt`) and the end of the section's columns.
const C: X = LO;
const CEND: X = HI;
const M: X = X(4);
/// End of the current group's columns within the section.
const GEND: X = X(5);
/// `&x[0, g·K]` of the current group.
const XG: X = X(6);
/// Valid columns of the current quad (1..=4).
const LANES: X = X(7);
const ROW: X = X(8);
/// Rows of the tile that just ran (for the epilogue).
const RT: X = X(9);
/// `&w[c + j]` for the quad's columns (clamped to the last valid one).
const WQ: [X; 4] = [X(10), X(11), X(12), X(13)];
const T0: X = X(14);
const T1: X = X(15);
/// The tile's row and weight pointers, advanced through k.
const XP: [X; 5] = [X(19), X(20), X(21), X(22), X(23)];
const WP: [X; 4] = [X(24), X(25), X(26), X(27)];
const KC: X = X(28);
/// Epilogue: the spill pointer, the row being stored, the tile's end row, temporaries.
const FP: X = X(14);
const CUR: X = X(15);
const REND: X = X(28);
const ET: [X; 9] = [
    X(19),
    X(20),
    X(21),
    X(22),
    X(23),
    X(24),
    X(25),
    X(26),
    X(27),
];

/// Rows of the main tile.
const R_MAIN: usize = 5;
/// Stack bytes for the tile's row sums.
const SPILL: u64 = 16 * R_MAIN as u64;

const fn v(i: usize) -> V {
    V(i as u32)
}

/// Register layout of a tile with `r` rows and `sets` independent partial-sum sets (more
/// than one when the tile has too few accumulators to hide FMLA latency).
struct Layout {
    r: usize,
    sets: usize,
}

impl Layout {
    fn acc(&self, s: usize, i: usize, j: usize) -> V {
        v((s * self.r + i) * 4 + j)
    }
    fn xv(&self, s: usize, i: usize) -> V {
        v(self.sets * self.r * 4 + s * self.r + i)
    }
    fn wv(&self, s: usize, j: usize) -> V {
        v(self.sets * self.r * 5 + s * 4 + j)
    }
}

pub fn tile_comment(f: &FwdForm) -> String {
    format!(
        "gemm.f32.dot: y[M, {gn}] = x[M, {gk}]·wᵀ per group (G = {g}, N = {n}, K = {k}), \
         columns lo·{nt}..hi·{nt}
store: {store}
tile 5 rows × 4 columns, one k-step of 4 lanes:
          w0   w1   w2   w3     ← ldr q v25..v28, [x24..x27], #16
   x0 →   v0   v1   v2   v3     ← ldr q v20..v24, [x19..x23], #16
   x1 →   v4   v5   v6   v7
   x2 →   v8   v9  v10  v11
   x3 →  v12  v13  v14  v15
   x4 →  v16  v17  v18  v19
20 × fmla v(4i+j).4s += v(20+i) · v(25+j): lane-wise partial sums of row i · column j
after k: faddp ×3 per row → [y(i, c..c+4)] → stack → store template per row
edges: 4/3/2/1-row tiles (3/2 partial-sum sets at 1/2 rows, to cover FMLA latency),
1..3-column quads (w rows clamped, lanes stored singly), k % 4 = {kt} scalar steps (ldr s zero-fills lanes 1..3)",
        gn = f.groups * f.n,
        gk = f.groups * f.k,
        g = f.groups,
        n = f.n,
        k = f.k,
        nt = f.nt,
        kt = f.k % 4,
        store = f.store.describe(),
    )
}

pub fn emit(f: &FwdForm) -> Result<Microkernel, String> {
    let kb = (f.k * 4) as u64;
    let xs = (f.groups * f.k * 4) as u64;
    let mut a = Asm::new();
    let (k4, kt) = ((f.k / 4) as usize, (f.k % 4) as usize);

    // Epilogue constants and registers, from a dry run.
    let consts = {
        let mut dry = Asm::new();
        let uses_exp = f.store.uses(FUn::Exp) || f.store.uses(FUn::Tanh);
        let mut k = Consts::collector(uses_exp);
        k.load(&mut dry);
        let mut pool = VPool::new((0..32).map(V));
        for lanes in [4, 1] {
            let acc = pool.take()?;
            emit_row(
                &mut dry,
                &f.store,
                acc,
                &mut pool,
                &mut k,
                &row_ctx(f, lanes),
            )?;
        }
        if k.count() + pool.high_water() > 32 {
            return Err(format!(
                "the epilogue needs {} constant and {} temporary vector registers",
                k.count(),
                pool.high_water()
            ));
        }
        Consts::assigned(&k)
    };

    let col_loop = a.new_label();
    let quad_loop = a.new_label();
    let row_loop = a.new_label();
    let quad_next = a.new_label();
    let done = a.new_label();
    let epilogue = a.new_label();
    let tiles: Vec<Label> = (0..=R_MAIN).map(|_| a.new_label()).collect();

    a.comment("prologue: save v8..v15, x19..x28; stack for the tile's row sums");
    let vsave: Vec<V> = (8..16).map(V).collect();
    let xsave: Vec<X> = (19..29).map(X).collect();
    a.save_callee_saved(&vsave, &xsave);
    a.sub_imm(X(31), X(31), SPILL);
    emit_int(
        &mut a,
        &f.rows,
        M,
        IntEnv { var: None },
        &[T0, T1, X(19), X(20)],
    )?;
    a.mul_imm(C, LO, f.nt as u64);
    a.mul_imm(CEND, HI, f.nt as u64);

    a.comment("group loop: columns c..gend share x's group offset");
    a.bind(col_loop);
    a.cmp(C, CEND);
    a.b_cond(Cond::Ge, done);
    a.mov_imm(T0, f.n);
    a.udiv(T1, C, T0);
    a.madd(GEND, T1, T0, T0);
    a.cmp(GEND, CEND);
    a.csel(GEND, CEND, GEND, Cond::Gt);
    a.ldr_x(XG, ARGS, 8 * f.x);
    a.mul_imm(T1, T1, (f.k * 4) as u64);
    a.add(XG, XG, T1);

    a.comment("quad loop: 4 columns (fewer at a group's end), w rows clamped");
    a.bind(quad_loop);
    a.sub(LANES, GEND, C);
    a.cmp_imm(LANES, 0);
    a.b_cond(Cond::Le, col_loop);
    a.mov_imm(T0, 4);
    a.cmp(LANES, T0);
    a.csel(LANES, T0, LANES, Cond::Gt);
    a.ldr_x(T0, ARGS, 8 * f.w);
    a.mul_imm(T1, C, kb);
    a.add(WQ[0], T0, T1);
    for j in 1..4 {
        a.add_imm(T0, WQ[j - 1], kb);
        a.cmp_imm(LANES, j as u64);
        a.csel(WQ[j], T0, WQ[j - 1], Cond::Gt);
    }
    a.mov_imm(ROW, 0);

    a.comment("row loop: tiles of 5 rows, then 4..1");
    a.bind(row_loop);
    a.sub(T0, M, ROW);
    a.cmp_imm(T0, R_MAIN as u64);
    a.b_cond(Cond::Ge, tiles[R_MAIN]);
    for r in (1..R_MAIN).rev() {
        a.cmp_imm(T0, r as u64);
        a.b_cond(Cond::Eq, tiles[r]);
    }
    a.bind(quad_next);
    a.add(C, C, LANES);
    a.b(quad_loop);

    let mut useful = 0;
    for r in (1..=R_MAIN).rev() {
        a.bind(tiles[r]);
        let lay = Layout {
            r,
            sets: match r {
                1 => 3,
                2 => 2,
                _ => 1,
            },
        };
        let hot = r == R_MAIN;
        emit_tile(&mut a, &lay, xs, k4, kt, hot);
        if hot && k4 > 0 {
            useful = (r * 4) as u32;
        }
        a.mov_imm(RT, r as i64);
        a.b(epilogue);
    }

    a.comment("store: dispatch on the quad's valid columns");
    a.bind(epilogue);
    let epis: Vec<Label> = (0..=4).map(|_| a.new_label()).collect();
    for lanes in (2..=4).rev() {
        a.cmp_imm(LANES, lanes);
        a.b_cond(Cond::Eq, epis[lanes as usize]);
    }
    a.b(epis[1]);
    let mut consts = consts;
    for lanes in (1..=4u8).rev() {
        a.bind(epis[lanes as usize]);
        a.comment(format!(
            "store {lanes} column(s) per row: constants, then row by row"
        ));
        consts.load(&mut a);
        a.add_imm(FP, X(31), 0);
        a.mov(CUR, ROW);
        a.add(REND, ROW, RT);
        let top = a.new_label();
        a.bind(top);
        let mut pool = VPool::new((0..32 - consts.count() as u32).map(V));
        let acc = pool.take()?;
        a.ldr_post(Width::Q, acc, FP, 16);
        emit_row(
            &mut a,
            &f.store,
            acc,
            &mut pool,
            &mut consts,
            &row_ctx(f, lanes),
        )?;
        a.add_imm(CUR, CUR, 1);
        a.cmp(CUR, REND);
        a.b_cond(Cond::Lt, top);
        a.mov(ROW, REND);
        a.b(row_loop);
    }

    a.bind(done);
    a.comment("exit: restore and return");
    a.add_imm(X(31), X(31), SPILL);
    a.restore_callee_saved(&vsave, &xsave);
    a.ret();
    let code = a.finish()?;
    Ok(Microkernel {
        name: format!("gemm.f32.dot {R_MAIN}x4"),
        tile: tile_comment(f),
        code,
        useful_per_iter: useful,
    })
}

fn row_ctx(f: &FwdForm, lanes: u8) -> RowCtx<'static> {
    RowCtx {
        row_var: f.row_var,
        row: CUR,
        col: C,
        xt: &ET,
        lanes,
    }
}

/// One row tile: pointers, zeroed sums, the k loop (the hot loop when `hot`), the k % 4
/// tail, the reduction to one vector of 4 column sums per row, spilled to the stack.
fn emit_tile(a: &mut Asm, lay: &Layout, xs: u64, k4: usize, kt: usize, hot: bool) {
    let r = lay.r;
    a.comment(format!(
        "tile: {r} row(s) × 4 columns, {} partial-sum set(s)",
        lay.sets
    ));
    a.mul_imm(T0, ROW, xs);
    a.add(XP[0], XG, T0);
    for i in 1..r {
        a.add_imm(XP[i], XP[i - 1], xs);
    }
    for j in 0..4 {
        a.mov(WP[j], WQ[j]);
    }
    for s in 0..lay.sets {
        for i in 0..r {
            for j in 0..4 {
                a.zero(lay.acc(s, i, j));
            }
        }
    }
    let fmlas = |a: &mut Asm, s: usize| {
        for i in 0..r {
            for j in 0..4 {
                a.fmla_4s(lay.acc(s, i, j), lay.xv(s, i), lay.wv(s, j));
            }
        }
    };
    // One k-step (4 lanes, or 1 with `Width::S`) into set 0, advancing the pointers.
    let step = |a: &mut Asm, w: Width| {
        let bytes = w.bytes() as i32;
        for (i, &p) in XP[..r].iter().enumerate() {
            a.ldr_post(w, lay.xv(0, i), p, bytes);
        }
        for (j, &p) in WP.iter().enumerate() {
            a.ldr_post(w, lay.wv(0, j), p, bytes);
        }
        fmlas(a, 0);
    };
    let iters = k4 / lay.sets;
    if iters > 0 {
        a.comment(format!("k loop: {} × {} k-step(s) of 4", iters, lay.sets));
        a.mov_imm(KC, iters as i64);
        let top = a.new_label();
        a.bind(top);
        if hot {
            a.mark("hot_loop");
        }
        // Sets 1.. read at immediate offsets, set 0 last with the one post-increment of
        // each pointer (a single base-register update per pointer per iteration).
        let stride = 16 * lay.sets as i32;
        for s in (0..lay.sets).rev() {
            for (i, &p) in XP[..r].iter().enumerate() {
                if s == 0 {
                    a.ldr_post(Width::Q, lay.xv(0, i), p, stride);
                } else {
                    a.ldr(Width::Q, lay.xv(s, i), p, 16 * s as u32);
                }
            }
            for (j, &p) in WP.iter().enumerate() {
                if s == 0 {
                    a.ldr_post(Width::Q, lay.wv(0, j), p, stride);
                } else {
                    a.ldr(Width::Q, lay.wv(s, j), p, 16 * s as u32);
                }
            }
            fmlas(a, s);
        }
        a.subs_imm(KC, KC, 1);
        a.b_cond(Cond::Ne, top);
        if hot {
            a.mark("hot_loop_end");
        }
    }
    for _ in 0..k4 % lay.sets {
        step(a, Width::Q);
    }
    if kt > 0 {
        a.comment(format!("k tail: {kt} scalar step(s)"));
    }
    for _ in 0..kt {
        step(a, Width::S);
    }
    a.comment("reduce: 4 partial-sum vectors per row → the row's 4 column sums");
    for s in 1..lay.sets {
        for i in 0..r {
            for j in 0..4 {
                a.fadd_4s(lay.acc(0, i, j), lay.acc(0, i, j), lay.acc(s, i, j));
            }
        }
    }
    a.add_imm(FP, X(31), 0);
    for i in 0..r {
        let (s0, s1, s2, s3) = (
            lay.acc(0, i, 0),
            lay.acc(0, i, 1),
            lay.acc(0, i, 2),
            lay.acc(0, i, 3),
        );
        a.faddp_4s(s0, s0, s1);
        a.faddp_4s(s2, s2, s3);
        a.faddp_4s(s0, s0, s2);
        a.str(Width::Q, s0, FP, 16 * i as u32);
    }
}
