//! Row operations over the last axis: `rmsnorm`, `layernorm`, `softmax` and the
//! `cross_entropy` loss. Parallel over rows; every reduction over a row is a vector loop, and
//! the formulas follow the reference's order of operations.

use super::emit::{Kb, single};
use super::shape::{R, arity, err, int, operand, result, view};
use super::site::{ArgRef, OpLowering, OpSite};
use bfly_ir::kernel::{BodyBuilder, Expr, KernelKind, LoopKind, LoopVar};
use bfly_ir::{DType, Op};

pub fn lower(site: &OpSite) -> R<OpLowering> {
    let kernels = match site.op {
        Op::RmsNorm { eps } => vec![norm(site, *eps, false)?],
        Op::LayerNorm { eps } => vec![norm(site, *eps, true)?],
        Op::Softmax => vec![softmax(site)?],
        Op::CrossEntropy => return cross_entropy(site),
        _ => return err(site, "not a row op"),
    };
    Ok(OpLowering {
        kernels,
        scratch: Vec::new(),
    })
}

/// RMSNorm `x / √(mean(x²) + eps) · g`, or LayerNorm `(x − mean) / √(var + eps) · g + b`
/// with the two-pass (population) variance.
fn norm(site: &OpSite, eps: f64, layer: bool) -> R<super::site::LoweredKernel> {
    let want = if layer { 3 } else { 2 };
    arity(site, site.operands.len(), want, want)?;
    let (x, y) = (operand(site, 0)?, result(site, 0)?);
    let (rows, d) = view(x)?;
    let d = int(site, d)?;
    let mut kb = Kb::new();
    let px = kb.arg("x", x.dtype, ArgRef::Operand(0));
    let pg = kb.arg("gain", operand(site, 1)?.dtype, ArgRef::Operand(1));
    let pb = if layer {
        Some(kb.arg("bias", operand(site, 2)?.dtype, ArgRef::Operand(2)))
    } else {
        None
    };
    let py = kb.arg("y", y.dtype, ArgRef::Result(0));
    let params = NormParams {
        x: px,
        gain: pg,
        bias: pb,
        y: py,
    };
    norm_section(&mut kb.b, Expr::Int(0), rows, d, eps as f32, params);
    let op = if layer { "layernorm" } else { "rmsnorm" };
    Ok(kb.finish(KernelKind::RowOp {
        op: op.into(),
        cols: d as u64,
    }))
}

/// The params of a norm section, in the lowering's order; `bias` makes it a layernorm.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NormParams {
    pub x: u32,
    pub gain: u32,
    pub bias: Option<u32>,
    pub y: u32,
}

/// The norm section, `parallel for r in start..end` over rows of `d` floats (also what the
/// aarch64 `rows` microkernel matches bodies against, so the two cannot drift apart).
pub(crate) fn norm_section(
    b: &mut BodyBuilder,
    start: Expr,
    end: Expr,
    d: i64,
    eps: f32,
    p: NormParams,
) {
    let layer = p.bias.is_some();
    let (px, pg, pb, py) = (p.x, p.gain, p.bias, p.y);
    let df = Expr::F32(d as f32);
    b.for_(LoopKind::Parallel, start, end, |b, r| {
        let base = b.let_(r * d);
        let xj = |j: LoopVar| Expr::load(px, base + j);
        let mean = if layer {
            let sum = b.let_(Expr::f32(0.0));
            b.for_(LoopKind::Vector, 0, d, |b, j| b.assign(sum, sum + xj(j)));
            Some(b.let_(sum / df.clone()))
        } else {
            None
        };
        let ss = b.let_(Expr::f32(0.0));
        b.for_(LoopKind::Vector, 0, d, |b, j| {
            let c = b.let_(match mean {
                Some(m) => xj(j) - Expr::Local(m),
                None => xj(j),
            });
            b.assign(ss, ss + Expr::Local(c) * Expr::Local(c));
        });
        let inv = b.let_(Expr::f32(1.0) / (ss / df.clone() + Expr::F32(eps)).sqrt());
        b.for_(LoopKind::Vector, 0, d, |b, j| {
            let c = match mean {
                Some(m) => xj(j) - Expr::Local(m),
                None => xj(j),
            };
            let v = c * Expr::Local(inv) * Expr::load(pg, Expr::Var(j));
            let v = match pb {
                Some(p) => v + Expr::load(p, Expr::Var(j)),
                None => v,
            };
            b.store(py, base + j, v);
        });
    });
}

/// Max-subtracted softmax: `e_j = exp(x_j − max)` stored, then divided by their sum.
fn softmax(site: &OpSite) -> R<super::site::LoweredKernel> {
    arity(site, site.operands.len(), 1, 1)?;
    let (x, y) = (operand(site, 0)?, result(site, 0)?);
    let (rows, d) = view(x)?;
    let d = int(site, d)?;
    let mut kb = Kb::new();
    let px = kb.arg("x", x.dtype, ArgRef::Operand(0));
    let py = kb.arg("y", y.dtype, ArgRef::Result(0));
    // Exponentials go through f32 scratch values in y only when y is f32; an f16 result
    // would round them before the division, so it recomputes them instead.
    let keep = y.dtype == DType::F32;
    softmax_section(&mut kb.b, Expr::Int(0), rows, d, (px, py), keep);
    Ok(kb.finish(KernelKind::RowOp {
        op: "softmax".into(),
        cols: d as u64,
    }))
}

/// The softmax section over rows of `d` floats, params `(x, y)`; `keep` stores the
/// exponentials in y between the passes (f32 y only). Also the aarch64 `rows` template.
pub(crate) fn softmax_section(
    b: &mut BodyBuilder,
    start: Expr,
    end: Expr,
    d: i64,
    (px, py): (u32, u32),
    keep: bool,
) {
    b.for_(LoopKind::Parallel, start, end, |b, r| {
        let base = b.let_(r * d);
        let m = b.let_(Expr::f32(f32::NEG_INFINITY));
        b.for_(LoopKind::Vector, 0, d, |b, j| {
            b.assign(m, Expr::from(m).max(Expr::load(px, base + j)));
        });
        let sum = b.let_(Expr::f32(0.0));
        b.for_(LoopKind::Vector, 0, d, |b, j| {
            let e = b.let_((Expr::load(px, base + j) - Expr::Local(m)).exp());
            if keep {
                b.store(py, base + j, e);
            }
            b.assign(sum, sum + Expr::Local(e));
        });
        b.for_(LoopKind::Vector, 0, d, |b, j| {
            let e = if keep {
                Expr::load(py, base + j)
            } else {
                (Expr::load(px, base + j) - Expr::Local(m)).exp()
            };
            b.store(py, base + j, e / Expr::Local(sum));
        });
    });
}

/// Mean over rows of `logsumexp(row) − row[target]`: per-row losses in parallel into
/// scratch, then their sum on one thread (so the result does not depend on the thread count).
/// Targets are clamped into the vocabulary for memory safety; the executor rejects bad ids.
fn cross_entropy(site: &OpSite) -> R<OpLowering> {
    arity(site, site.operands.len(), 2, 2)?;
    let (x, t, y) = (operand(site, 0)?, operand(site, 1)?, result(site, 0)?);
    let (rows, v) = view(x)?;
    let v = int(site, v)?;
    if v == 0 {
        return err(site, "empty vocabulary");
    }
    let mut kb = Kb::new();
    let px = kb.arg("logits", x.dtype, ArgRef::Operand(0));
    let pt = kb.arg("targets", t.dtype, ArgRef::Operand(1));
    let pl = kb.arg("loss", DType::F32, ArgRef::Scratch(0));
    let py = kb.arg("y", y.dtype, ArgRef::Result(0));
    kb.b.for_(LoopKind::Parallel, 0, rows.clone(), |b, r| {
        let base = b.let_(r * v);
        let m = b.let_(Expr::f32(f32::NEG_INFINITY));
        b.for_(LoopKind::Vector, 0, v, |b, j| {
            b.assign(m, Expr::from(m).max(Expr::load(px, base + j)));
        });
        let sum = b.let_(Expr::f32(0.0));
        b.for_(LoopKind::Vector, 0, v, |b, j| {
            b.assign(sum, sum + (Expr::load(px, base + j) - Expr::Local(m)).exp());
        });
        let tgt = b.let_(
            Expr::load(pt, Expr::Var(r))
                .max(Expr::Int(0))
                .min(Expr::Int(v - 1)),
        );
        let lse = Expr::Local(m) + Expr::Local(sum).log();
        b.store(pl, Expr::Var(r), lse - Expr::load(px, base + tgt));
    });
    single(&mut kb.b, |b| {
        let acc = b.let_(Expr::f32(0.0));
        b.for_(LoopKind::Vector, 0, rows.clone(), |b, r| {
            b.assign(acc, acc + Expr::load(pl, Expr::Var(r)));
        });
        // Zero rows give 0, as in the reference (never reached: symbols are ≥ 1).
        let n = rows.clone().max(Expr::Int(1)).to_f32();
        b.store(py, 0, acc / n);
    });
    Ok(OpLowering {
        kernels: vec![kb.finish(KernelKind::RowOp {
            op: "cross_entropy".into(),
            cols: v as u64,
        })],
        scratch: vec![(DType::F32, x.leading().to_vec())],
    })
}
