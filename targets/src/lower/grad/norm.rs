//! Backward of the row ops over the last axis: RMSNorm, LayerNorm, softmax and the mean
//! cross-entropy loss (`reference/kernels/norm_backward.rs`, `loss_backward.rs`). Each row's
//! statistics are recomputed from `x` as the forward computes them.
//!
//! `dx` is parallel over rows. Gain and bias gradients sum over rows: a second section,
//! parallel over column chunks, walks the rows in order and reads the per-row statistics the
//! first section saved in scratch.

use super::Vjp;
use super::finish::{Args, finish};
use super::util::{f32c, for_col_chunks, indicator, need, rows_cols};
use crate::lower::site::{ArgRef, LowerError, OpLowering};
use bfly_ir::DType;
use bfly_ir::kernel::{BodyBuilder, Expr, KernelKind, Local, LoopKind, LoopVar};

fn row_kind(op: &str, cols: u64) -> KernelKind {
    KernelKind::Backward(Box::new(KernelKind::RowOp {
        op: op.into(),
        cols,
    }))
}

/// `Σ_j f(j)` over a row of `d` columns, as a vector reduction into a new local.
fn row_sum(b: &mut BodyBuilder, d: i64, f: impl FnOnce(LoopVar) -> Expr) -> Local {
    let acc = b.let_(Expr::f32(0.0));
    b.for_(LoopKind::Vector, 0, d, |b, j| {
        b.assign(acc, acc + f(j));
    });
    acc
}

fn width(v: &Vjp, what: &str) -> Result<(Expr, u64), LowerError> {
    let (rows, d) = rows_cols(&v.fwd[0])?;
    need(d > 0 && !v.fwd[0].dims.is_empty(), || {
        format!("{what} input {} must have a non-empty last axis", v.fwd[0])
    })?;
    Ok((rows, d))
}

/// `rmsnorm.grad x, gain, dy` → `dx, dgain`. With `inv = (mean(x²) + eps)^(−1/2)`:
/// `dx = inv·(g·dy − x·inv²·Σ(dy·g·x)/d)`, `dgain = Σ_rows dy·x·inv`.
pub fn rmsnorm(v: &Vjp, eps: f64) -> Result<OpLowering, LowerError> {
    let (rows, d) = width(v, "rmsnorm")?;
    let di = d as i64;
    let x = &v.fwd[0];
    let mut b = BodyBuilder::new();
    let mut a = Args::default();
    let xp = a.bind(&mut b, "x", x.dtype, ArgRef::Operand(0));
    let gp = a.bind(&mut b, "gain", v.fwd[1].dtype, ArgRef::Operand(1));
    let dy = a.bind(&mut b, "dy", v.ups[0].dtype, v.up(0));
    let st = a.bind(&mut b, "inv", DType::F32, ArgRef::Scratch(0));
    let dx = a.bind(&mut b, "dx", x.dtype, v.grad_of(0)?);
    let dg = a.bind(&mut b, "dgain", v.fwd[1].dtype, v.grad_of(1)?);
    let at = move |m: LoopVar, j: LoopVar| m * di + j;

    b.for_(LoopKind::Parallel, 0, rows.clone(), |b, m| {
        let ss = row_sum(b, di, |j| {
            let xv = Expr::load(xp, at(m, j));
            xv.clone() * xv
        });
        let ms = Expr::from(ss) / Expr::f32(d as f32);
        let inv = b.let_(Expr::f32(1.0) / (ms + f32c(eps)).sqrt());
        let proj = row_sum(b, di, |j| {
            Expr::load(dy, at(m, j)) * Expr::load(gp, Expr::Var(j)) * Expr::load(xp, at(m, j))
        });
        let coef = b.let_(inv * inv * (Expr::from(proj) / Expr::f32(d as f32)));
        b.for_(LoopKind::Vector, 0, di, |b, j| {
            let gdy = Expr::load(gp, Expr::Var(j)) * Expr::load(dy, at(m, j));
            let value = inv * (gdy - Expr::load(xp, at(m, j)) * coef);
            b.store(dx, at(m, j), value);
        });
        b.store(st, Expr::Var(m), inv);
    });
    for_col_chunks(&mut b, d, |b, lo, hi| {
        b.for_(LoopKind::Vector, lo.clone(), hi.clone(), |b, j| {
            b.store(dg, Expr::Var(j), Expr::f32(0.0));
        });
        b.serial(0, rows.clone(), |b, m| {
            let inv = b.let_(Expr::load(st, Expr::Var(m)));
            b.for_(LoopKind::Vector, lo, hi, |b, j| {
                let term = Expr::load(dy, at(m, j)) * Expr::load(xp, at(m, j)) * inv;
                b.store(dg, Expr::Var(j), Expr::load(dg, Expr::Var(j)) + term);
            });
        });
    });
    Ok(OpLowering {
        kernels: vec![finish(b, a, row_kind("rmsnorm", d))],
        scratch: vec![(DType::F32, v.fwd[0].leading().to_vec())],
    })
}

/// `layernorm.grad x, gain, bias, dy` → `dx, dgain, dbias`. With `x̂ = (x − mean)·inv`
/// (population variance) and `ĝ = dy·gain`: `dx = inv·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂))`,
/// `dgain = Σ_rows dy·x̂`, `dbias = Σ_rows dy`.
pub fn layernorm(v: &Vjp, eps: f64) -> Result<OpLowering, LowerError> {
    let (rows, d) = width(v, "layernorm")?;
    let di = d as i64;
    let df = Expr::f32(d as f32);
    let x = &v.fwd[0];
    let mut b = BodyBuilder::new();
    let mut a = Args::default();
    let xp = a.bind(&mut b, "x", x.dtype, ArgRef::Operand(0));
    let gp = a.bind(&mut b, "gain", v.fwd[1].dtype, ArgRef::Operand(1));
    let dy = a.bind(&mut b, "dy", v.ups[0].dtype, v.up(0));
    let st = a.bind(&mut b, "stats", DType::F32, ArgRef::Scratch(0));
    let dx = a.bind(&mut b, "dx", x.dtype, v.grad_of(0)?);
    let dg = a.bind(&mut b, "dgain", v.fwd[1].dtype, v.grad_of(1)?);
    let dbias = a.bind(&mut b, "dbias", v.fwd[2].dtype, v.grad_of(2)?);
    let at = move |m: LoopVar, j: LoopVar| m * di + j;

    b.for_(LoopKind::Parallel, 0, rows.clone(), |b, m| {
        let sum = row_sum(b, di, |j| Expr::load(xp, at(m, j)));
        let mean = b.let_(Expr::from(sum) / df.clone());
        let sq = row_sum(b, di, |j| {
            let c = Expr::load(xp, at(m, j)) - mean;
            c.clone() * c
        });
        let var = Expr::from(sq) / df.clone();
        let inv = b.let_(Expr::f32(1.0) / (var + f32c(eps)).sqrt());
        let xhat = move |j: LoopVar| (Expr::load(xp, at(m, j)) - mean) * inv;
        let ghat = move |j: LoopVar| Expr::load(dy, at(m, j)) * Expr::load(gp, Expr::Var(j));
        let sg = row_sum(b, di, ghat);
        let sgx = row_sum(b, di, |j| ghat(j) * xhat(j));
        let mean_g = b.let_(Expr::from(sg) / df.clone());
        let mean_gx = b.let_(Expr::from(sgx) / df.clone());
        b.for_(LoopKind::Vector, 0, di, |b, j| {
            let value = inv * (ghat(j) - mean_g - xhat(j) * mean_gx);
            b.store(dx, at(m, j), value);
        });
        b.store(st, m * 2, mean);
        b.store(st, m * 2 + 1, inv);
    });
    for_col_chunks(&mut b, d, |b, lo, hi| {
        b.for_(LoopKind::Vector, lo.clone(), hi.clone(), |b, j| {
            b.store(dg, Expr::Var(j), Expr::f32(0.0));
            b.store(dbias, Expr::Var(j), Expr::f32(0.0));
        });
        b.serial(0, rows.clone(), |b, m| {
            let mean = b.let_(Expr::load(st, m * 2));
            let inv = b.let_(Expr::load(st, m * 2 + 1));
            b.for_(LoopKind::Vector, lo, hi, |b, j| {
                let g = b.let_(Expr::load(dy, at(m, j)));
                let xhat = (Expr::load(xp, at(m, j)) - mean) * inv;
                b.store(dg, Expr::Var(j), Expr::load(dg, Expr::Var(j)) + g * xhat);
                b.store(dbias, Expr::Var(j), Expr::load(dbias, Expr::Var(j)) + g);
            });
        });
    });
    let mut stats = v.fwd[0].leading().to_vec();
    stats.push(bfly_ir::Dim::Const(2));
    Ok(OpLowering {
        kernels: vec![finish(b, a, row_kind("layernorm", d))],
        scratch: vec![(DType::F32, stats)],
    })
}

/// Max-subtracted exponentials of one row: returns `(max, Σ e^(x − max))` as locals.
fn row_exp_stats(b: &mut BodyBuilder, xp: u32, m: LoopVar, d: i64) -> (Local, Local) {
    let mx = b.let_(Expr::load(xp, m * d));
    b.for_(LoopKind::Vector, 1, d, |b, j| {
        b.assign(mx, Expr::from(mx).max(Expr::load(xp, m * d + j)));
    });
    let sum = row_sum(b, d, |j| (Expr::load(xp, m * d + j) - mx).exp());
    (mx, sum)
}

/// `softmax.grad x, dy` → `dx = y·(dy − ⟨dy, y⟩)` per row, `y` recomputed (max-subtracted).
/// `y` is first written into `dx`, then scaled in place.
pub fn softmax(v: &Vjp) -> Result<OpLowering, LowerError> {
    let (rows, d) = width(v, "softmax")?;
    let di = d as i64;
    let x = &v.fwd[0];
    let mut b = BodyBuilder::new();
    let mut a = Args::default();
    let xp = a.bind(&mut b, "x", x.dtype, ArgRef::Operand(0));
    let dy = a.bind(&mut b, "dy", v.ups[0].dtype, v.up(0));
    let dx = a.bind(&mut b, "dx", x.dtype, v.grad_of(0)?);
    b.for_(LoopKind::Parallel, 0, rows, |b, m| {
        let (mx, sum) = row_exp_stats(b, xp, m, di);
        let dot = b.let_(Expr::f32(0.0));
        b.for_(LoopKind::Vector, 0, di, |b, j| {
            let y = b.let_((Expr::load(xp, m * di + j) - mx).exp() / sum);
            b.store(dx, m * di + j, y);
            b.assign(dot, dot + y * Expr::load(dy, m * di + j));
        });
        b.for_(LoopKind::Vector, 0, di, |b, j| {
            let at = m * di + j;
            let value = Expr::load(dx, at.clone()) * (Expr::load(dy, at.clone()) - dot);
            b.store(dx, at, value);
        });
    });
    Ok(OpLowering {
        kernels: vec![finish(b, a, row_kind("softmax", d))],
        scratch: vec![],
    })
}

/// `cross_entropy.grad logits, targets, dloss` → `dlogits = dloss/rows · (softmax − onehot)`
/// per row. A target outside `0..vocab` matches no column (the reference rejects it; a
/// kernel cannot fail).
pub fn cross_entropy(v: &Vjp) -> Result<OpLowering, LowerError> {
    let (rows, d) = width(v, "cross_entropy")?;
    let di = d as i64;
    let (logits, targets) = (&v.fwd[0], &v.fwd[1]);
    let mut b = BodyBuilder::new();
    let mut a = Args::default();
    let xp = a.bind(&mut b, "logits", logits.dtype, ArgRef::Operand(0));
    let tp = a.bind(&mut b, "targets", targets.dtype, ArgRef::Operand(1));
    let dl = a.bind(&mut b, "dloss", v.ups[0].dtype, v.up(0));
    let dx = a.bind(&mut b, "dlogits", logits.dtype, v.grad_of(0)?);
    let rows_f = rows.clone().to_f32();
    b.for_(LoopKind::Parallel, 0, rows, |b, m| {
        let scale = b.let_(Expr::load(dl, Expr::Int(0)) / rows_f);
        let (mx, sum) = row_exp_stats(b, xp, m, di);
        let t = b.let_(Expr::load(tp, Expr::Var(m)));
        b.for_(LoopKind::Vector, 0, di, |b, j| {
            let p = (Expr::load(xp, m * di + j) - mx).exp() / sum;
            let onehot = indicator(Expr::Var(j).eq_(t.into()));
            b.store(dx, m * di + j, scale * (p - onehot));
        });
    });
    Ok(OpLowering {
        kernels: vec![finish(b, a, row_kind("cross_entropy", d))],
        scratch: vec![],
    })
}
