//! Backward of the canonical butterfly (DESIGN §4; `reference/kernels/butterfly.rs`).
//!
//! Per stage in reverse, each pair's output gradient `g` gives `dx = Tᵀ·g` and
//! `dT += g ⊗ x_stage`. The kernel has up to three sections:
//!
//! 1. parallel over rows `(m, g)`: recompute every stage input into scratch `xs`, then run
//!    the stages backward, storing every stage's output gradient into scratch `gs`, and sum
//!    the stacks' input gradients into `dx`;
//! 2. parallel over stages `(g, s, stage)`: `dT[stage, :] = Σ_m gs ⊗ xs` over rows in order,
//!    so the twiddle-gradient reduction is race-free and has one fixed order;
//! 3. (with a bias) column sums of `dy`.

use super::Vjp;
use super::finish::{Args, finish};
use super::util::{bias_sums, const_dims, for_maybe, for_pairs, need, rows_text};
use crate::lower::site::{ArgRef, LowerError, OpLowering, numel_expr};
use bfly_ir::kernel::{BodyBuilder, ButterflyDesc, Expr, KernelKind, LoopKind};
use bfly_ir::{DType, Dim, infer::butterfly_width};
use std::ops::Rem;

/// The stride of a stage, for the aarch64 microkernels' geometry as well.
pub(crate) use super::util::stage_stride;

/// Geometry of one butterfly layer: `n` wide, `l` stages per block.
pub(crate) struct Geo {
    pub groups: u64,
    pub stacks: u64,
    pub blocks: u64,
    pub n: u64,
    pub l: u64,
    pub n_in: u64,
    pub n_out: u64,
}

impl Geo {
    fn stages(&self) -> u64 {
        self.blocks * self.l
    }
}

fn geometry(v: &Vjp, n_in: u64, n_out: u64) -> Result<Geo, LowerError> {
    let (x, tw) = (&v.fwd[0], &v.fwd[1]);
    let d = const_dims(tw, "butterfly twiddles")?;
    let [groups, stacks, blocks, l, half, 2, 2] = d[..] else {
        return Err(LowerError::new(format!(
            "butterfly twiddles {tw} must be [G, S, B, L, n/2, 2, 2]"
        )));
    };
    let n = butterfly_width(n_in);
    need(
        half * 2 == n
            && u64::from(n.trailing_zeros()) == l
            && stacks == n_out.div_ceil(n)
            && groups > 0
            && blocks > 0,
        || format!("twiddles {tw} do not fit in = {n_in}, out = {n_out}"),
    )?;
    need(x.last_const() == Some(groups * n_in), || {
        format!(
            "butterfly input {x} must have groups·in = {} features",
            groups * n_in
        )
    })?;
    Ok(Geo {
        groups,
        stacks,
        blocks,
        n,
        l,
        n_in,
        n_out,
    })
}

pub fn butterfly(
    v: &Vjp,
    n_in: u64,
    n_out: u64,
    increasing: bool,
) -> Result<OpLowering, LowerError> {
    let geo = geometry(v, n_in, n_out)?;
    let x = &v.fwd[0];
    let rows = numel_expr(x.leading())?;
    let has_bias = v.fwd.len() > 2;

    let mut b = BodyBuilder::new();
    let mut a = Args::default();
    let xp = a.bind(&mut b, "x", x.dtype, ArgRef::Operand(0));
    let tw = a.bind(&mut b, "tw", v.fwd[1].dtype, ArgRef::Operand(1));
    let dy = a.bind(&mut b, "dy", v.ups[0].dtype, v.up(0));
    let xs = a.bind(&mut b, "xs", DType::F32, ArgRef::Scratch(0));
    let gs = a.bind(&mut b, "gs", DType::F32, ArgRef::Scratch(1));
    let dx = a.bind(&mut b, "dx", x.dtype, v.grad_of(0)?);
    let dtw = a.bind(&mut b, "dtw", v.fwd[1].dtype, v.grad_of(1)?);
    let db = if has_bias {
        Some(a.bind(&mut b, "dbias", v.fwd[2].dtype, v.grad_of(2)?))
    } else {
        None
    };

    let p = Params {
        x: xp,
        tw,
        dy,
        xs,
        gs,
        dx,
        dtw,
    };
    vjp_sections(&mut b, &geo, &p, rows.clone(), increasing);
    if let Some(db) = db {
        bias_sums(&mut b, dy, db, rows, geo.groups * geo.n_out);
    }

    let slabs = geo.groups * geo.stacks;
    let mut xs_dims = vec![Dim::Const(slabs * geo.stages())];
    xs_dims.extend(x.leading().iter().cloned());
    xs_dims.push(Dim::Const(geo.n));
    let mut gs_dims = xs_dims.clone();
    gs_dims[0] = Dim::Const(slabs * (geo.stages() + 1));

    let kind = KernelKind::Backward(Box::new(KernelKind::Butterfly(ButterflyDesc {
        n: geo.n,
        stages: geo.l,
        blocks: geo.blocks,
        stacks: geo.stacks,
        groups: geo.groups,
        dtype: x.dtype,
        layout: format!("saved-stages, rows = {}", rows_text(x.leading())),
        radix: Vec::new(),
        epilogue: if has_bias {
            vec!["bias".into()]
        } else {
            vec![]
        },
    })));
    Ok(OpLowering {
        kernels: vec![finish(b, a, kind)],
        scratch: vec![(DType::F32, xs_dims), (DType::F32, gs_dims)],
    })
}

/// Body params of the butterfly backward.
pub(crate) struct Params {
    pub x: u32,
    pub tw: u32,
    pub dy: u32,
    pub xs: u32,
    pub gs: u32,
    pub dx: u32,
    pub dtw: u32,
}

/// Sections 1 (rows) and 2 (twiddle gradients) for `geo` over `rows` rows. The aarch64
/// microkernels (`aarch64/kernels/butterfly_grad`) rebuild their form with this too, so a
/// body matches them only if it is exactly what this lowering produces.
pub(crate) fn vjp_sections(
    b: &mut BodyBuilder,
    geo: &Geo,
    p: &Params,
    rows: Expr,
    increasing: bool,
) {
    rows_section(b, geo, p, rows.clone(), increasing);
    twiddle_section(b, geo, p, rows, increasing);
}

/// Twiddle entry `c` (row-major 2×2) of pair `i` of stage `st` of slab `slab = g·S + s`.
fn twiddle(tw: u32, slab: Expr, st: u64, stages: u64, half: i64, i: Expr, c: i64) -> Expr {
    Expr::load(tw, ((slab * stages as i64 + st as i64) * half + i) * 4 + c)
}

/// Section 1: per row `(m, g)`, forward recompute into `xs`, backward through the stages
/// into `gs`, and `dx` as the sum of the stacks' input gradients.
///
/// Layout: `xs[(slab·stages + st)·M + m, :]` is the input of stage `st`;
/// `gs[(slab·(stages+1) + st)·M + m, :]` the gradient of that input (`st = stages`: of the
/// stack's output, i.e. the padded `dy`). With one unpadded stack, stage 0's input gradient
/// is stored straight into `dx`.
fn rows_section(b: &mut BodyBuilder, geo: &Geo, p: &Params, rows: Expr, increasing: bool) {
    let (groups, stacks, stages) = (geo.groups as i64, geo.stacks as i64, geo.stages());
    let (n, half) = (geo.n as i64, geo.n as i64 / 2);
    let (n_in, n_out) = (geo.n_in as i64, geo.n_out as i64);
    let total = rows.clone() * groups;
    let direct_dx = stacks == 1 && n_in == n;
    b.for_(LoopKind::Parallel, 0, total, |b, r| {
        let (m, g) = if groups == 1 {
            (Expr::Var(r), Expr::Int(0))
        } else {
            (Expr::Var(r) / groups, Expr::Var(r).rem(Expr::Int(groups)))
        };
        let xbase = |slab: &Expr, st: u64| {
            ((slab.clone() * stages as i64 + st as i64) * rows.clone() + m.clone()) * n
        };
        let gbase = |slab: &Expr, st: u64| {
            ((slab.clone() * (stages as i64 + 1) + st as i64) * rows.clone() + m.clone()) * n
        };
        for_maybe(b, geo.stacks, |b, s| {
            let slab = g.clone() * stacks + s.clone();
            let x0 = xbase(&slab, 0);
            b.for_(LoopKind::Vector, 0, n_in, |b, j| {
                b.store(p.xs, x0.clone() + j, Expr::load(p.x, r * n_in + j));
            });
            if n_in < n {
                b.for_(LoopKind::Vector, n_in, n, |b, j| {
                    b.store(p.xs, x0.clone() + j, Expr::f32(0.0));
                });
            }
            // The last stage's output is never needed: only its gradient.
            for st in 0..stages.saturating_sub(1) {
                let stride = stage_stride(st, geo.l, increasing);
                let (src, dst) = (xbase(&slab, st), xbase(&slab, st + 1));
                for_pairs(b, half, stride, |b, i, pp, q| {
                    let t = |c| twiddle(p.tw, slab.clone(), st, stages, half, i.clone(), c);
                    let xp = b.let_(Expr::load(p.xs, src.clone() + pp.clone()));
                    let xq = b.let_(Expr::load(p.xs, src.clone() + q.clone()));
                    b.store(p.xs, dst.clone() + pp, t(0) * xp + t(1) * xq);
                    b.store(p.xs, dst.clone() + q, t(2) * xp + t(3) * xq);
                });
            }
            // Outputs past n_out were truncated away: their gradient is zero.
            let top = gbase(&slab, stages);
            let len = Expr::Int(n).min(Expr::Int(n_out) - s.clone() * n);
            b.for_(LoopKind::Vector, 0, len.clone(), |b, j| {
                let d = Expr::load(p.dy, r * n_out + s.clone() * n + j);
                b.store(p.gs, top.clone() + j, d);
            });
            if n_out % n != 0 {
                b.for_(LoopKind::Vector, len, n, |b, j| {
                    b.store(p.gs, top.clone() + j, Expr::f32(0.0));
                });
            }
            for st in (0..stages).rev() {
                let stride = stage_stride(st, geo.l, increasing);
                let src = gbase(&slab, st + 1);
                // One unpadded stack: the first stage's input gradient is dx itself.
                let (dst_arg, dst) = if st == 0 && direct_dx {
                    (p.dx, Expr::Var(r) * n_in)
                } else {
                    (p.gs, gbase(&slab, st))
                };
                for_pairs(b, half, stride, |b, i, pp, q| {
                    let t = |c| twiddle(p.tw, slab.clone(), st, stages, half, i.clone(), c);
                    let gp = b.let_(Expr::load(p.gs, src.clone() + pp.clone()));
                    let gq = b.let_(Expr::load(p.gs, src.clone() + q.clone()));
                    b.store(dst_arg, dst.clone() + pp, t(0) * gp + t(2) * gq);
                    b.store(dst_arg, dst.clone() + q, t(1) * gp + t(3) * gq);
                });
            }
        });
        if direct_dx {
            return;
        }
        // Every stack read the same padded input, so their gradients add, in stack order.
        b.for_(LoopKind::Vector, 0, n_in, |b, j| {
            let mut sum: Option<Expr> = None;
            for s in 0..stacks {
                let slab = g.clone() * stacks + s;
                let term = Expr::load(p.gs, gbase(&slab, 0) + j);
                sum = Some(match sum {
                    None => term,
                    Some(acc) => acc + term,
                });
            }
            b.store(p.dx, r * n_in + j, sum.unwrap_or(Expr::f32(0.0)));
        });
    });
}

/// Section 2: parallel over `(slab, stage)`; each iteration zeroes its stage's twiddle
/// gradient and sums `g ⊗ x` over all rows in order. The stage's stride is a constant in the
/// code: one branch per distinct stride, selected by the stage index.
fn twiddle_section(b: &mut BodyBuilder, geo: &Geo, p: &Params, rows: Expr, increasing: bool) {
    let stages = geo.stages();
    let (n, half) = (geo.n as i64, geo.n as i64 / 2);
    let st_i = stages as i64;
    let total = (geo.groups * geo.stacks * stages) as i64;
    b.for_(LoopKind::Parallel, 0, total, |b, w| {
        let slab = Expr::Var(w) / st_i;
        let st = b.let_(Expr::Var(w).rem(Expr::Int(st_i)));
        b.for_(LoopKind::Vector, 0, half * 4, |b, e| {
            b.store(p.dtw, w * (half * 4) + e, Expr::f32(0.0));
        });
        let mut by_stride: Vec<(i64, Vec<u64>)> = Vec::new();
        for s in 0..stages {
            let stride = stage_stride(s, geo.l, increasing);
            match by_stride.iter_mut().find(|(v, _)| *v == stride) {
                Some((_, list)) => list.push(s),
                None => by_stride.push((stride, vec![s])),
            }
        }
        for (stride, list) in by_stride {
            // Stage indices are distinct, so at most one comparison is 1.
            let cond = list
                .iter()
                .map(|&s| Expr::from(st).eq_(Expr::Int(s as i64)))
                .reduce(|a, c| a + c)
                .unwrap_or(Expr::Int(0));
            b.if_(cond, |b| {
                b.serial(0, rows.clone(), |b, m| {
                    // Input of this stage, and the gradient of its output.
                    let xrow = (w * rows.clone() + m) * n;
                    let grow = ((Expr::Var(w) + slab.clone() + 1) * rows.clone() + m) * n;
                    for_pairs(b, half, stride, |b, i, pp, q| {
                        let xp = b.let_(Expr::load(p.xs, xrow.clone() + pp.clone()));
                        let xq = b.let_(Expr::load(p.xs, xrow.clone() + q.clone()));
                        let gp = b.let_(Expr::load(p.gs, grow.clone() + pp));
                        let gq = b.let_(Expr::load(p.gs, grow + q));
                        let base = (w * half + i) * 4;
                        for (c, prod) in [(0, gp * xp), (1, gp * xq), (2, gq * xp), (3, gq * xq)] {
                            let at = base.clone() + c;
                            b.store(p.dtw, at.clone(), Expr::load(p.dtw, at) + prod);
                        }
                    });
                });
            });
        }
    });
}
