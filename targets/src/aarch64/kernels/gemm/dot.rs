//! The forward GEMM microkernel in "dot form": both operands are k-contiguous, so a
//! tile of R rows × 4 columns keeps one 4-lane partial-sum vector per (row, column), loads
//! R row vectors of x and 4 of w per k-step of 4, and reduces each row's four vectors with
//! three FADDPs into the four columns' sums at the end — no packing, and `w` is streamed
//! once per tile of rows (decode, M = 1, reads every weight exactly once).
//!
//! Iteration space: the section's column tiles `lo..hi` are columns `lo·nt .. hi·nt`,
//! walked group by group (x's column offset is `g·K`) in quads of 4 columns (the last of a
//! group may have 1..3: its missing w rows repeat the last valid one and only its valid
//! lanes are stored); each quad runs over all M rows in tiles of R (then fewer). Row sums
//! go to the stack and the store template (bias, epilogue) runs once per row.
//!
//! Variants (same loops and epilogue, different tiles):
//! - `gemm.f32.dot 5x4`: f32 weights;
//! - `gemm.f16w.dot 5x4`: f16 weights, each k-step's 4 weights loaded as `.4h` and widened
//!   exactly with FCVTL — every FMLA sees the same f32 operands in the same order as the
//!   f32 kernel on the widened weights, so the results are bit-identical to it;
//! - `gemm.f16.dot 3x4` (FEAT_FP16): both operands f16, FMLA `.8h`, see [`super::dot_f16`].
use super::dot_f16;
use super::form::FwdForm;
use super::intexpr::{IntEnv, emit_int};
use super::neon::{Consts, RowCtx, VPool, emit_row};
use super::template::FUn;
use crate::aarch64::emit::{ARGS, Asm, Cond, HI, LO, Label, V, Width, X};
use crate::aarch64::kernels::Microkernel;
use bfly_ir::DType;

/// First column of the current quad (starts as `lo·nt`) and the end of the section's columns.
const C: X = LO;
const CEND: X = HI;
pub(super) const M: X = X(4);
/// End of the current group's columns within the section.
const GEND: X = X(5);
/// `&x[0, g·K]` of the current group.
pub(super) const XG: X = X(6);
/// Valid columns of the current quad (1..=4).
const LANES: X = X(7);
pub(super) const ROW: X = X(8);
/// Rows of the tile that just ran (for the epilogue).
const RT: X = X(9);
/// `&w[c + j]` for the quad's columns (clamped to the last valid one).
pub(super) const WQ: [X; 4] = [X(10), X(11), X(12), X(13)];
pub(super) const T0: X = X(14);
const T1: X = X(15);
/// The tile's row and weight pointers, advanced through k.
pub(super) const XP: [X; 5] = [X(19), X(20), X(21), X(22), X(23)];
pub(super) const WP: [X; 4] = [X(24), X(25), X(26), X(27)];
pub(super) const KC: X = X(28);
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

/// Rows of the main tile of the f32 / f16w kernels.
const R_MAIN: usize = 5;
/// Stack bytes for the tile's row sums (the largest main tile).
const SPILL: u64 = 16 * R_MAIN as u64;

/// Which tile the kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// f32 weights.
    F32,
    /// f16 weights widened to f32 (any CPU).
    F16w,
    /// f16 weights and activations, f16 FMLA over bounded chunks (FEAT_FP16).
    F16,
}

impl Variant {
    /// The variant for a form's weight dtype on a CPU with or without FEAT_FP16.
    /// The f16 variant also needs x's rows narrowed on the stack (at most
    /// [`dot_f16::SCRATCH_MAX`] bytes); otherwise f16 weights run the f16w tile.
    pub fn for_form(f: &FwdForm, fp16: bool) -> Variant {
        let fits = f
            .max_rows
            .and_then(|m| dot_f16::scratch_bytes(m, f.k as u64))
            .is_some_and(|b| b <= dot_f16::SCRATCH_MAX);
        match (f.w_dtype, fp16 && fits) {
            (DType::F16, true) => Variant::F16,
            (DType::F16, false) => Variant::F16w,
            _ => Variant::F32,
        }
    }
    fn label(self) -> &'static str {
        match self {
            Variant::F32 => "f32",
            Variant::F16w => "f16w",
            Variant::F16 => "f16",
        }
    }
    fn rows(self) -> usize {
        match self {
            Variant::F16 => dot_f16::R_MAIN,
            _ => R_MAIN,
        }
    }
}

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

pub fn tile_comment(f: &FwdForm, variant: Variant) -> String {
    match variant {
        Variant::F32 => f32_tile_comment(f),
        Variant::F16w => format!(
            "{}\nf16w: w rows are f16 — each k-step loads ldr d (4 × f16) into v25..v28 and widens \
             them in place with fcvtl (exact), then the same FMLAs as the f32 kernel",
            f32_tile_comment(f).replacen("gemm.f32.dot", "gemm.f16w.dot", 1)
        ),
        Variant::F16 => dot_f16::tile_comment(f),
    }
}

/// The header every variant's comment starts with: the GEMM and its store block.
pub(super) fn header(name: &str, f: &FwdForm) -> String {
    format!(
        "{name}: y[M, {gn}] = x[M, {gk}]·wᵀ per group (G = {g}, N = {n}, K = {k}), \
         columns lo·{nt}..hi·{nt}\nstore: {store}",
        gn = f.groups * f.n,
        gk = f.groups * f.k,
        g = f.groups,
        n = f.n,
        k = f.k,
        nt = f.nt,
        store = f.store.describe(),
    )
}

fn f32_tile_comment(f: &FwdForm) -> String {
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
edges: 4/3/2/1-row tiles (2 partial-sum sets at 2 rows, to cover FMLA latency; the 1-row
tile — decode — keeps 4 sets fed by ld1 {{4 × .4s}}, 16 k per load),
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

pub fn emit(f: &FwdForm, variant: Variant) -> Result<Microkernel, String> {
    let wsize: u64 = if f.w_dtype == DType::F16 { 2 } else { 4 };
    if (variant == Variant::F32) != (wsize == 4) {
        return Err(format!("{variant:?} kernel for {} weights", f.w_dtype));
    }
    let r_main = variant.rows();
    let kb = f.k as u64 * wsize;
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
    let tiles: Vec<Label> = (0..=r_main).map(|_| a.new_label()).collect();

    a.comment("prologue: save v8..v15, x19..x28; stack for the tile's row sums");
    let vsave: Vec<V> = (8..16).map(V).collect();
    let xsave: Vec<X> = (19..29).map(X).collect();
    a.save_callee_saved(&vsave, &xsave);
    let scratch = match variant {
        Variant::F16 => f
            .max_rows
            .and_then(|m| dot_f16::scratch_bytes(m, f.k as u64))
            .ok_or("no row bound for the f16 x scratch")?,
        _ => 0,
    };
    let frame = SPILL + scratch;
    a.sub_imm(X(31), X(31), frame);
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
    if variant == Variant::F16 {
        dot_f16::emit_narrow(&mut a, f.k as usize, xs, SPILL);
    }

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

    a.comment(format!("row loop: tiles of {r_main} rows, then fewer"));
    a.bind(row_loop);
    a.sub(T0, M, ROW);
    a.cmp_imm(T0, r_main as u64);
    a.b_cond(Cond::Ge, tiles[r_main]);
    for r in (1..r_main).rev() {
        a.cmp_imm(T0, r as u64);
        a.b_cond(Cond::Eq, tiles[r]);
    }
    a.bind(quad_next);
    a.add(C, C, LANES);
    a.b(quad_loop);

    let mut useful = 0;
    for r in (1..=r_main).rev() {
        a.bind(tiles[r]);
        let hot = r == r_main;
        if variant == Variant::F16 {
            let u = dot_f16::emit_tile(&mut a, r, SPILL, f.k as usize, hot);
            if hot {
                useful = u;
            }
        } else if r == 1 {
            emit_row_tile(&mut a, xs, k4, kt, variant == Variant::F16w);
        } else {
            let lay = Layout {
                r,
                sets: if r == 2 { 2 } else { 1 },
            };
            emit_tile(&mut a, &lay, xs, k4, kt, hot, variant == Variant::F16w);
            if hot && k4 > 0 {
                useful = (r * 4) as u32;
            }
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
    a.add_imm(X(31), X(31), frame);
    a.restore_callee_saved(&vsave, &xsave);
    a.ret();
    let code = a.finish()?;
    Ok(Microkernel {
        name: format!("gemm.{}.dot {r_main}x4", variant.label()),
        tile: tile_comment(f, variant),
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

/// Loads one k-step of a weight row (4 lanes with `Width::Q`, 1 with `Width::S`) into
/// `t`, advancing `p` by `post` bytes when given (else reading at `off` bytes): f32
/// directly, f16 (`half`) at half the width and widened exactly with FCVTL (the lanes a
/// narrow load zero-fills widen to +0, as the f32 load's do).
fn load_w(a: &mut Asm, w: Width, t: V, p: X, at: Result<i32, u32>, half: bool) {
    let w = match (half, w) {
        (false, w) => w,
        (true, Width::Q) => Width::D,
        (true, _) => Width::H,
    };
    match at {
        Ok(post) => a.ldr_post(w, t, p, post),
        Err(off) => a.ldr(w, t, p, off),
    }
    if half {
        a.fcvtl_4s(t, t);
    }
}

/// One row tile: pointers, zeroed sums, the k loop (the hot loop when `hot`), the k % 4
/// tail, the reduction to one vector of 4 column sums per row, spilled to the stack.
/// `half`: the weights are f16 (loaded narrow and widened; the arithmetic is unchanged).
fn emit_tile(a: &mut Asm, lay: &Layout, xs: u64, k4: usize, kt: usize, hot: bool, half: bool) {
    let wstep = if half { 8 } else { 16 };
    let r = lay.r;
    a.comment(format!(
        "tile: {r} row(s) × 4 columns, {} partial-sum set(s)",
        lay.sets
    ));
    tile_pointers(a, r, xs);
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
            let wb = if half { bytes / 2 } else { bytes };
            load_w(a, w, lay.wv(0, j), p, Ok(wb), half);
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
                let at = if s == 0 {
                    Ok(wstep * lay.sets as i32)
                } else {
                    Err(wstep as u32 * s as u32)
                };
                load_w(a, Width::Q, lay.wv(s, j), p, at, half);
            }
            fmlas(a, s);
        }
        a.subs_imm(KC, KC, 1);
        a.b_cond(Cond::Ne, top);
        if hot {
            a.mark("hot_loop_end");
        }
    }
    k_leftovers(a, k4 % lay.sets, kt, step);
    a.comment("reduce: 4 partial-sum vectors per row → the row's 4 column sums");
    for s in 1..lay.sets {
        for i in 0..r {
            for j in 0..4 {
                a.fadd_4s(lay.acc(0, i, j), lay.acc(0, i, j), lay.acc(s, i, j));
            }
        }
    }
    spill_row_sums(a, r, |i, j| lay.acc(0, i, j));
}

/// The 1-row tile (decode, T = 1: every weight is read once, so loads bound it): 4
/// partial-sum sets per column, one `ld1 {4 × .4s}` brings 16 k of x and each column's
/// 16 k of w (f16 weights: `ld1 {2 × .8h}` and FCVTL/FCVTL2), so a k-step of 16 is 5 loads
/// (+16 widenings) for 16 FMLAs. Set s takes the k-steps of 4 ≡ s (mod 4); the k4 % 4
/// leftover steps and the k % 4 scalar steps go to set 0; the sets are then added in
/// order 1, 2, 3 — the same per-column order whatever the weights' dtype and wherever the
/// column lands in a quad, so f16w equals f32 bit for bit and thread splits do not matter.
fn emit_row_tile(a: &mut Asm, xs: u64, k4: usize, kt: usize, half: bool) {
    let acc = |s: usize, j: usize| v(4 * s + j);
    let xv = |s: usize| v(16 + s);
    let wv = |c: usize, s: usize| v(20 + 4 * c + s);
    a.comment("tile: 1 row × 4 columns, 4 partial-sum sets (k-steps of 4 mod 4)");
    tile_pointers(a, 1, xs);
    for s in 0..4 {
        for j in 0..4 {
            a.zero(acc(s, j));
        }
    }
    let iters = k4 / 4;
    if iters > 0 {
        a.comment(format!("k loop: {iters} × 16 k"));
        a.mov_imm(KC, iters as i64);
        let top = a.new_label();
        a.bind(top);
        a.mark("decode_loop");
        a.ld1_4s(xv(0), 4, XP[0], true);
        for pair in 0..2 {
            for c in 0..2 {
                let p = WP[2 * pair + c];
                if half {
                    // Raw 16 f16 in wv(c, 0..2), widened top-down so no input is
                    // overwritten before it is read.
                    a.ld1_4s(wv(c, 0), 2, p, true);
                    a.fcvtl2_4s(wv(c, 3), wv(c, 1));
                    a.fcvtl_4s(wv(c, 2), wv(c, 1));
                    a.fcvtl2_4s(wv(c, 1), wv(c, 0));
                    a.fcvtl_4s(wv(c, 0), wv(c, 0));
                } else {
                    a.ld1_4s(wv(c, 0), 4, p, true);
                }
            }
            for c in 0..2 {
                for s in 0..4 {
                    a.fmla_4s(acc(s, 2 * pair + c), xv(s), wv(c, s));
                }
            }
        }
        a.subs_imm(KC, KC, 1);
        a.b_cond(Cond::Ne, top);
        a.mark("decode_loop_end");
    }
    let step = |a: &mut Asm, w: Width| {
        a.ldr_post(w, xv(0), XP[0], w.bytes() as i32);
        for (j, &p) in WP.iter().enumerate() {
            let wb = if half { w.bytes() / 2 } else { w.bytes() };
            load_w(a, w, v(20 + j), p, Ok(wb as i32), half);
        }
        for j in 0..4 {
            a.fmla_4s(acc(0, j), xv(0), v(20 + j));
        }
    };
    k_leftovers(a, k4 % 4, kt, step);
    a.comment("reduce: sets 1..3 into set 0, then the 4 column sums");
    for s in 1..4 {
        for j in 0..4 {
            a.fadd_4s(acc(0, j), acc(0, j), acc(s, j));
        }
    }
    spill_row_sums(a, 1, |_, j| acc(0, j));
}

/// Points `XP[..r]` at the tile's x rows (`xs` bytes apart) and `WP` at the quad's w rows.
/// The k-steps after the unrolled loop: `quads` whole 4-lane steps, then `kt` scalar ones.
fn k_leftovers(a: &mut Asm, quads: usize, kt: usize, step: impl Fn(&mut Asm, Width)) {
    for _ in 0..quads {
        step(a, Width::Q);
    }
    if kt > 0 {
        a.comment(format!("k tail: {kt} scalar step(s)"));
    }
    for _ in 0..kt {
        step(a, Width::S);
    }
}

pub(super) fn tile_pointers(a: &mut Asm, r: usize, xs: u64) {
    a.mul_imm(T0, ROW, xs);
    a.add(XP[0], XG, T0);
    for i in 1..r {
        a.add_imm(XP[i], XP[i - 1], xs);
    }
    for j in 0..4 {
        a.mov(WP[j], WQ[j]);
    }
}

/// Reduces each of `r` rows' four 4-lane partial sums (`acc(row, column)`) to one vector
/// of the four column sums (three FADDPs) and stores it at `sp + 16·row`.
pub(super) fn spill_row_sums(a: &mut Asm, r: usize, acc: impl Fn(usize, usize) -> V) {
    a.add_imm(FP, X(31), 0);
    for i in 0..r {
        let (s0, s1, s2, s3) = (acc(i, 0), acc(i, 1), acc(i, 2), acc(i, 3));
        a.faddp_4s(s0, s0, s1);
        a.faddp_4s(s2, s2, s3);
        a.faddp_4s(s0, s0, s2);
        a.str(Width::Q, s0, FP, 16 * i as u32);
    }
}
