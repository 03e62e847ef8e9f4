//! Twiddle tensors: the packed layout the butterfly kernel reads, and the producers that fold
//! Givens, DIB, Hadamard and ternary parameters into canonical twiddles (DESIGN §4).
//!
//! Canonical twiddles are `[G, S, B, L, n/2, 2, 2]`: per pair `i` of a stage, the row-major
//! 2×2 `[t00, t01, t10, t11]`. The butterfly kernel walks a stage as `for blk: vector for j`
//! over pairs `i = blk·stride + j`, so it wants each coefficient contiguous over `i`: the
//! packed layout `[G, S, B·L, 4, n/2]` (structure of arrays). Packing is a transpose of the
//! last two axes; in inference it runs once at load, in training once per step.

use super::emit::{Kb, f32c, round_half_away};
use super::shape::{R, arity, const_dims, cprod, err, int, operand, result};
use super::site::{ArgRef, LoweredKernel, OpLowering, OpSite};
use bfly_ir::kernel::{Expr, KernelKind, LoopKind};
use bfly_ir::{Dim, Op, StrideOrder, TwiddleShape, Type};

/// Dims of the packed twiddles for a canonical twiddle type.
pub(crate) fn packed_dims(ts: &TwiddleShape) -> Vec<Dim> {
    [ts.groups, ts.stacks, ts.blocks * ts.stages, 4, ts.n / 2]
        .into_iter()
        .map(Dim::Const)
        .collect()
}

/// `packed[st, c, i] = tw[st, i, c]` over every stage `st` of every (group, stack, block).
pub(crate) fn pack_kernel(site: &OpSite, tw: &Type, from: ArgRef, to: ArgRef) -> R<LoweredKernel> {
    let ts = shape(site, tw)?;
    let half = int(site, ts.n / 2)?;
    let stages = int(
        site,
        cprod(site, &[ts.groups, ts.stacks, ts.blocks, ts.stages])?,
    )?;
    let mut kb = Kb::new();
    let src = kb.arg("tw", tw.dtype, from);
    let dst = kb.arg("packed", tw.dtype, to);
    kb.b.for_(LoopKind::Parallel, 0, stages, |b, st| {
        for c in 0..4i64 {
            b.for_(LoopKind::Vector, 0, half, |b, i| {
                let v = Expr::load(src, (st * half + i) * 4 + c);
                b.store(dst, (st * 4 + c) * half + i, v);
            });
        }
    });
    Ok(kb.finish(KernelKind::Layout { op: "pack".into() }))
}

/// The twiddle geometry, with every index the kernels form (up to the element count
/// `G·S·B·L·n/2·4`) checked to fit.
pub(crate) fn shape(site: &OpSite, tw: &Type) -> R<TwiddleShape> {
    let ts = match TwiddleShape::of(tw, "twiddles") {
        Ok(ts) => ts,
        Err(m) => return err(site, m),
    };
    cprod(site, &[ts.groups, ts.stacks, ts.blocks, ts.stages, ts.n, 2])?;
    Ok(ts)
}

/// Stride of stage `st` of block `blk` (DESIGN §4: block b is increasing XOR b odd).
pub(crate) fn stage_stride(stride: StrideOrder, blk: u64, st: u64, stages: u64) -> u64 {
    let inc = stride.is_increasing() ^ (blk % 2 == 1);
    if inc { 1 << st } else { 1 << (stages - 1 - st) }
}

pub fn lower(site: &OpSite) -> R<OpLowering> {
    let kernel = match site.op {
        Op::GivensTwiddles => givens(site)?,
        Op::DibTwiddles { stride } => dib(site, *stride)?,
        Op::HadamardTwiddles { .. } => hadamard(site)?,
        Op::TernaryTwiddles { alpha } => ternary(site, *alpha)?,
        _ => return err(site, "not a twiddle producer"),
    };
    Ok(OpLowering {
        kernels: vec![kernel],
        scratch: Vec::new(),
    })
}

/// Angles `[.., n/2]` checked against the twiddle result: `(theta, out, shape, n/2)`.
fn angles<'a>(site: &'a OpSite, operands: usize) -> R<(&'a Type, &'a Type, TwiddleShape, i64)> {
    arity(site, site.operands.len(), operands, operands)?;
    let (theta, out) = (operand(site, 0)?, result(site, 0)?);
    let ts = shape(site, out)?;
    let d = const_dims(site, theta, "angles")?;
    let pairs = cprod(
        site,
        &[ts.groups, ts.stacks, ts.blocks, ts.stages, ts.n / 2],
    )?;
    if d.last() != Some(&(ts.n / 2)) || cprod(site, &d)? != pairs {
        return err(site, format!("angles {theta} do not match {out}"));
    }
    Ok((theta, out, ts, int(site, ts.n / 2)?))
}

/// Givens `[[c, −s], [s, c]]` per angle.
fn givens(site: &OpSite) -> R<LoweredKernel> {
    let (theta, out, ts, half) = angles(site, 1)?;
    let stages = int(
        site,
        cprod(site, &[ts.groups, ts.stacks, ts.blocks, ts.stages])?,
    )?;
    let mut kb = Kb::new();
    let pt = kb.arg("theta", theta.dtype, ArgRef::Operand(0));
    let py = kb.arg("tw", out.dtype, ArgRef::Result(0));
    kb.b.for_(LoopKind::Parallel, 0, stages, |b, st| {
        b.for_(LoopKind::Vector, 0, half, |b, i| {
            let a = b.let_(st * half + i);
            let th = b.let_(Expr::load(pt, Expr::Local(a)));
            let c = b.let_(Expr::Local(th).cos());
            let s = b.let_(Expr::Local(th).sin());
            let vals = [
                Expr::Local(c),
                -Expr::Local(s),
                Expr::Local(s),
                Expr::Local(c),
            ];
            for (k, v) in vals.into_iter().enumerate() {
                b.store(py, a * 4 + k as i64, v);
            }
        });
    });
    Ok(kb.finish(KernelKind::Twiddles {
        producer: "givens".into(),
    }))
}

/// DIB `[[d_p c, −d_p s], [d_q s, d_q c]]`, where `p, q` are the pair's positions in its
/// stage: each (block, stage) is unrolled with its own constant stride.
fn dib(site: &OpSite, stride: StrideOrder) -> R<LoweredKernel> {
    let (theta, out, ts, half) = angles(site, 2)?;
    let diag = operand(site, 1)?;
    let n = int(site, ts.n)?;
    let slabs = int(site, cprod(site, &[ts.groups, ts.stacks])?)?;
    let mut kb = Kb::new();
    let pt = kb.arg("theta", theta.dtype, ArgRef::Operand(0));
    let pd = kb.arg("diag", diag.dtype, ArgRef::Operand(1));
    let py = kb.arg("tw", out.dtype, ArgRef::Result(0));
    let (blocks, stages) = (ts.blocks, ts.stages);
    kb.b.for_(LoopKind::Parallel, 0, slabs, |b, gs| {
        for blk in 0..blocks {
            for st in 0..stages {
                let stride = stage_stride(stride, blk, st, stages) as i64;
                let stage = (gs * blocks as i64 + blk as i64) * stages as i64 + st as i64;
                let stage = b.let_(stage);
                b.for_(LoopKind::Vector, 0, half, |b, i| {
                    let a = b.let_(stage * half + i);
                    let p = b.let_(stage * n + i * 2 - (i % stride));
                    let th = b.let_(Expr::load(pt, Expr::Local(a)));
                    let c = b.let_(Expr::Local(th).cos());
                    let s = b.let_(Expr::Local(th).sin());
                    let dp = b.let_(Expr::load(pd, Expr::Local(p)));
                    let dq = b.let_(Expr::load(pd, p + stride));
                    let vals = [
                        Expr::Local(dp) * Expr::Local(c),
                        -(Expr::Local(dp) * Expr::Local(s)),
                        Expr::Local(dq) * Expr::Local(s),
                        Expr::Local(dq) * Expr::Local(c),
                    ];
                    for (k, v) in vals.into_iter().enumerate() {
                        b.store(py, a * 4 + k as i64, v);
                    }
                });
            }
        }
    });
    Ok(kb.finish(KernelKind::Twiddles {
        producer: "dib".into(),
    }))
}

/// Normalized Walsh–Hadamard `[[h, h], [h, −h]]`, `h = 1/√2`.
fn hadamard(site: &OpSite) -> R<LoweredKernel> {
    arity(site, site.operands.len(), 0, 0)?;
    let out = result(site, 0)?;
    let ts = shape(site, out)?;
    let half = int(site, ts.n / 2)?;
    let stages = int(
        site,
        cprod(site, &[ts.groups, ts.stacks, ts.blocks, ts.stages])?,
    )?;
    let h = f32c(std::f64::consts::FRAC_1_SQRT_2);
    let mut kb = Kb::new();
    let py = kb.arg("tw", out.dtype, ArgRef::Result(0));
    kb.b.for_(LoopKind::Parallel, 0, stages, |b, st| {
        b.for_(LoopKind::Vector, 0, half, |b, i| {
            let a = st * half + i;
            for k in 0..4i64 {
                let v = if k == 3 { -h.clone() } else { h.clone() };
                b.store(py, a.clone() * 4 + k, v);
            }
        });
    });
    Ok(kb.finish(KernelKind::Twiddles {
        producer: "hadamard".into(),
    }))
}

/// Ternary `[[1, t], [1, −t]]` with `t = α · clamp(round(w/α), −1, 1)` (ties away from zero);
/// `α = 0` gives `t = 0`.
fn ternary(site: &OpSite, alpha: f64) -> R<LoweredKernel> {
    arity(site, site.operands.len(), 1, 1)?;
    let (w, out) = (operand(site, 0)?, result(site, 0)?);
    let ts = shape(site, out)?;
    let half = int(site, ts.n / 2)?;
    let stages = int(
        site,
        cprod(site, &[ts.groups, ts.stacks, ts.blocks, ts.stages])?,
    )?;
    let mut kb = Kb::new();
    let pw = kb.arg("w", w.dtype, ArgRef::Operand(0));
    let py = kb.arg("tw", out.dtype, ArgRef::Result(0));
    kb.b.for_(LoopKind::Parallel, 0, stages, |b, st| {
        b.for_(LoopKind::Vector, 0, half, |b, i| {
            let a = b.let_(st * half + i);
            let t = if alpha == 0.0 {
                Expr::f32(0.0)
            } else {
                let q = b.let_(Expr::load(pw, Expr::Local(a)) / f32c(alpha));
                let r = round_half_away(b, Expr::Local(q));
                let r = r.min(Expr::f32(1.0)).max(Expr::f32(-1.0));
                Expr::Local(b.let_(f32c(alpha) * r))
            };
            let vals = [Expr::f32(1.0), t.clone(), Expr::f32(1.0), -t];
            for (k, v) in vals.into_iter().enumerate() {
                b.store(py, a * 4 + k as i64, v);
            }
        });
    });
    Ok(kb.finish(KernelKind::Twiddles {
        producer: "ternary".into(),
    }))
}
