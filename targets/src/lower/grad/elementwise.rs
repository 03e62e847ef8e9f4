//! Backward of the elementwise ops: activations (`dx = f′(x)·dy`, as in
//! `reference/kernels/elementwise_backward.rs`) and `add`/`sub`/`mul` with numpy
//! broadcasting, whose gradients sum over the broadcast axes.

use super::Vjp;
use super::finish::{Args, finish};
use super::util::{f32c, for_elements, numel, sigmoid};
use crate::lower::site::{ArgRef, LowerError, OpLowering, dim_expr};
use bfly_ir::kernel::{BodyBuilder, Expr, KernelKind, LoopKind};
use bfly_ir::{Dim, Op, Type};
use std::ops::Rem;

fn map_kind(expr: &str) -> KernelKind {
    KernelKind::Backward(Box::new(KernelKind::Map { expr: expr.into() }))
}

/// `neg`, `exp`, `silu`, `gelu`, `sigmoid`, `scale`: one chunked map over the elements.
pub fn unary(v: &Vjp, op: &Op) -> Result<OpLowering, LowerError> {
    let x = &v.fwd[0];
    let needs_x = !matches!(op, Op::Neg | Op::Scale { .. });
    let mut b = BodyBuilder::new();
    let mut a = Args::default();
    let xp = needs_x.then(|| a.bind(&mut b, "x", x.dtype, ArgRef::Operand(0)));
    let dy = a.bind(&mut b, "dy", v.ups[0].dtype, v.up(0));
    let dx = a.bind(&mut b, "dx", x.dtype, v.grad_of(0)?);
    let expr_name = match op {
        Op::Scale { factor } => format!("scale({factor:?})"),
        other => other.name().into_owned(),
    };
    for_elements(&mut b, numel(x)?, |b, i| {
        let g = Expr::load(dy, i.clone());
        let xv = xp.map(|xp| b.let_(Expr::load(xp, i.clone())));
        let xe = || xv.map(Expr::from).unwrap_or(Expr::f32(0.0));
        let value = match op {
            Op::Neg => -g,
            Op::Scale { factor } => g * f32c(*factor),
            Op::Exp => xe().exp() * g,
            // σ′(x) = σ(x)·σ(−x): no cancellation in 1 − σ(x) at large x.
            Op::Sigmoid => sigmoid(xe()) * sigmoid(-xe()) * g,
            Op::Silu => sigmoid(xe()) * (Expr::f32(1.0) + xe() * sigmoid(-xe())) * g,
            _ => gelu_derivative(b, xe()) * g,
        };
        b.store(dx, i, value);
    });
    Ok(OpLowering {
        kernels: vec![finish(b, a, map_kind(&format!("{expr_name}'(x0) * x1")))],
        scratch: vec![],
    })
}

/// Derivative of the tanh-approximation GELU (the function the forward computes): with
/// `u = √(2/π)·(x + 0.044715·x³)`,
/// `0.5·(1 + tanh u) + 0.5·x·(1 − tanh² u)·√(2/π)·(1 + 3·0.044715·x²)`.
fn gelu_derivative(b: &mut BodyBuilder, x: Expr) -> Expr {
    let c = f32c((2.0 / std::f64::consts::PI).sqrt());
    let k = f32c(0.044715);
    let u = c.clone() * (x.clone() + k.clone() * x.clone() * x.clone() * x.clone());
    let th = b.let_(u.tanh());
    let half = Expr::f32(0.5);
    half.clone() * (Expr::f32(1.0) + th)
        + half
            * x.clone()
            * (Expr::f32(1.0) - th * th)
            * c
            * (Expr::f32(1.0) + f32c(3.0 * 0.044715) * x.clone() * x)
}

/// `add`, `sub`, `mul`: `(da, db) = (g, g)`, `(g, −g)`, `(g·b, g·a)` per output element,
/// summed over the axes an operand was broadcast along.
///
/// Same-shape operands are one chunked map. Otherwise each operand's gradient is parallel
/// over that operand's elements, and each iteration sums over its broadcast axes in
/// row-major order, the reference's order, in a local.
pub fn binary(v: &Vjp, op: &Op) -> Result<OpLowering, LowerError> {
    let (ta, tb, out) = (&v.fwd[0], &v.fwd[1], &v.ups[0]);
    let rank = out.rank();
    if ta.rank() > rank || tb.rank() > rank {
        return Err(LowerError::new(format!(
            "`{}` result {out} has lower rank than its operands {ta}, {tb}",
            op.name()
        )));
    }
    let mut b = BodyBuilder::new();
    let mut a = Args::default();
    let needs_values = matches!(op, Op::Mul);
    let (pa, pb) = if needs_values {
        (
            Some(a.bind(&mut b, "a", ta.dtype, ArgRef::Operand(0))),
            Some(a.bind(&mut b, "b", tb.dtype, ArgRef::Operand(1))),
        )
    } else {
        (None, None)
    };
    let dy = a.bind(&mut b, "dy", out.dtype, v.up(0));
    let da = a.bind(&mut b, "da", ta.dtype, v.grad_of(0)?);
    let db = a.bind(&mut b, "db", tb.dtype, v.grad_of(1)?);

    // The gradient of operand `which` from the upstream `g` and the other operand's value.
    let contribution = |which: usize, g: Expr, other: Option<Expr>| -> Expr {
        match (op, which, other) {
            (Op::Mul, _, Some(o)) => g * o,
            (Op::Sub, 1, _) => -g,
            _ => g,
        }
    };
    if ta.dims == out.dims && tb.dims == out.dims {
        for_elements(&mut b, numel(out)?, |b, i| {
            let g = b.let_(Expr::load(dy, i.clone()));
            let va = pa.map(|p| Expr::load(p, i.clone()));
            let vb = pb.map(|p| Expr::load(p, i.clone()));
            b.store(da, i.clone(), contribution(0, g.into(), vb));
            b.store(db, i, contribution(1, g.into(), va));
        });
    } else {
        let shape = Shapes::new(ta, tb, out)?;
        shape.reduce_into(&mut b, 0, dy, da, pb, &contribution)?;
        shape.reduce_into(&mut b, 1, dy, db, pa, &contribution)?;
    }
    Ok(OpLowering {
        kernels: vec![finish(b, a, map_kind(&format!("{}.grad", op.name())))],
        scratch: vec![],
    })
}

/// The broadcast geometry of a binary op: both operands' dims padded to the output's rank.
struct Shapes {
    out: Vec<Dim>,
    operands: [Vec<Dim>; 2],
}

fn padded(t: &Type, rank: usize) -> Vec<Dim> {
    let mut dims = vec![Dim::Const(1); rank - t.rank()];
    dims.extend(t.dims.iter().cloned());
    dims
}

/// Row-major strides of `dims` as index expressions; a broadcast (size-1) axis of an
/// operand read against `out` gets stride 0.
fn strides(dims: &[Dim], out: &[Dim]) -> Result<Vec<Expr>, LowerError> {
    let mut st = vec![Expr::Int(0); dims.len()];
    let mut acc = Expr::Int(1);
    for ax in (0..dims.len()).rev() {
        let broadcast = dims[ax] == Dim::Const(1) && out[ax] != Dim::Const(1);
        st[ax] = if broadcast { Expr::Int(0) } else { acc.clone() };
        acc = acc * dim_expr(&dims[ax])?;
    }
    Ok(st)
}

fn flat(idx: &[Expr], strides: &[Expr]) -> Expr {
    idx.iter()
        .zip(strides)
        .fold(Expr::Int(0), |acc, (i, s)| acc + i.clone() * s.clone())
}

impl Shapes {
    fn new(a: &Type, b: &Type, out: &Type) -> Result<Shapes, LowerError> {
        let rank = out.rank();
        let operands = [padded(a, rank), padded(b, rank)];
        for ops in &operands {
            for (d, o) in ops.iter().zip(&out.dims) {
                if d != o && *d != Dim::Const(1) {
                    return Err(LowerError::new(format!(
                        "operands {a} and {b} do not broadcast to {out}"
                    )));
                }
            }
        }
        Ok(Shapes {
            out: out.dims.clone(),
            operands,
        })
    }

    /// `dst[e] = Σ contribution(g[o], other[o])` over the output elements `o` that read
    /// element `e` of operand `which`: parallel over `e`, serial loops over the broadcast
    /// axes (row-major), the sum in a local.
    fn reduce_into(
        &self,
        b: &mut BodyBuilder,
        which: usize,
        dy: u32,
        dst: u32,
        other: Option<u32>,
        contribution: &dyn Fn(usize, Expr, Option<Expr>) -> Expr,
    ) -> Result<(), LowerError> {
        let dims = &self.operands[which];
        let own_strides = strides(dims, &self.out)?;
        let out_strides = strides(&self.out, &self.out)?;
        let other_strides = strides(&self.operands[1 - which], &self.out)?;
        let reduced: Vec<usize> = (0..dims.len())
            .filter(|&ax| dims[ax] == Dim::Const(1) && self.out[ax] != Dim::Const(1))
            .collect();
        let sizes: Vec<Expr> = dims.iter().map(dim_expr).collect::<Result<_, _>>()?;
        let out_sizes: Vec<Expr> = self.out.iter().map(dim_expr).collect::<Result<_, _>>()?;
        let total = numel_of(&sizes);
        b.for_(LoopKind::Parallel, 0, total, |b, e| {
            // The kept axes' indices come from the element index; the broadcast ones loop.
            let mut idx: Vec<Expr> = (0..dims.len())
                .map(|ax| {
                    if own_strides[ax] == Expr::Int(0) {
                        Expr::Int(0)
                    } else {
                        (Expr::Var(e) / own_strides[ax].clone()).rem(sizes[ax].clone())
                    }
                })
                .collect();
            let acc = b.let_(Expr::f32(0.0));
            nest(b, &reduced, &out_sizes, &mut idx, &mut |b, idx| {
                let g = Expr::load(dy, flat(idx, &out_strides));
                let o = other.map(|p| Expr::load(p, flat(idx, &other_strides)));
                b.assign(acc, acc + contribution(which, g, o));
            });
            b.store(dst, Expr::Var(e), acc);
        });
        Ok(())
    }
}

fn numel_of(sizes: &[Expr]) -> Expr {
    sizes.iter().fold(Expr::Int(1), |acc, s| acc * s.clone())
}

/// Serial loops over `axes` (outermost first), filling their entries of `idx`, then `f`.
fn nest(
    b: &mut BodyBuilder,
    axes: &[usize],
    sizes: &[Expr],
    idx: &mut Vec<Expr>,
    f: &mut dyn FnMut(&mut BodyBuilder, &[Expr]),
) {
    match axes.split_first() {
        None => f(b, idx),
        Some((&ax, rest)) => {
            b.serial(0, sizes[ax].clone(), |b, i| {
                idx[ax] = Expr::Var(i);
                nest(b, rest, sizes, idx, f);
            });
        }
    }
}
