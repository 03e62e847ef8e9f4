//! Backward of the data-movement ops: the gradient moves back the way the values moved
//! (reshape: same order; transpose: the inverse permutation; split ↔ concat), and `cast`
//! passes it through (a float→int cast is piecewise constant: zero gradient).

use super::Vjp;
use super::finish::{Args, finish};
use super::util::{for_elements, need, numel};
use crate::lower::site::{LowerError, OpLowering, dim_expr, numel_expr};
use bfly_ir::kernel::{BodyBuilder, Expr, KernelKind, LoopKind};
use bfly_ir::{Dim, Type};
use std::ops::Rem;

fn kind(op: &str) -> KernelKind {
    KernelKind::Backward(Box::new(KernelKind::Layout { op: op.into() }))
}

fn one(b: BodyBuilder, a: Args, op: &str) -> OpLowering {
    OpLowering {
        kernels: vec![finish(b, a, kind(op))],
        scratch: vec![],
    }
}

/// `dx = dy` element for element (row-major order is what reshape keeps).
fn copy(v: &Vjp, op: &str) -> Result<OpLowering, LowerError> {
    let x = &v.fwd[0];
    let mut b = BodyBuilder::new();
    let mut a = Args::default();
    let dy = a.bind(&mut b, "dy", v.ups[0].dtype, v.up(0));
    let dx = a.bind(&mut b, "dx", x.dtype, v.grad_of(0)?);
    for_elements(&mut b, numel(x)?, |b, i| {
        b.store(dx, i.clone(), Expr::load(dy, i));
    });
    Ok(one(b, a, op))
}

pub fn reshape(v: &Vjp) -> Result<OpLowering, LowerError> {
    copy(v, "reshape")
}

/// `cast.grad x, dy`: the gradient goes back to the operand's dtype (a float→float cast's
/// rounding counts as the identity); from an integer result it is exactly zero; an integer
/// operand has no gradient, so there is nothing to run.
pub fn cast(v: &Vjp) -> Result<OpLowering, LowerError> {
    let x = &v.fwd[0];
    if !x.dtype.is_float() {
        return Ok(OpLowering::default());
    }
    if v.ups[0].dtype.is_float() {
        return copy(v, "cast");
    }
    let mut b = BodyBuilder::new();
    let mut a = Args::default();
    let dx = a.bind(&mut b, "dx", x.dtype, v.grad_of(0)?);
    for_elements(&mut b, numel(x)?, |b, i| {
        b.store(dx, i, Expr::f32(0.0));
    });
    Ok(one(b, a, "cast"))
}

/// Row-major strides of `dims` as index expressions.
fn strides(dims: &[Dim]) -> Result<Vec<Expr>, LowerError> {
    let mut st = vec![Expr::Int(1); dims.len()];
    for ax in (0..dims.len().saturating_sub(1)).rev() {
        st[ax] = st[ax + 1].clone() * dim_expr(&dims[ax + 1])?;
    }
    Ok(st)
}

/// `transpose.grad x, dy` with `y` axis `a` = `x` axis `perm[a]`: `dx[i] = dy[perm(i)]`.
/// Parallel over the rows of `x`, a vector loop along its last axis (contiguous stores).
pub fn transpose(v: &Vjp, perm: &[u64]) -> Result<OpLowering, LowerError> {
    let x = &v.fwd[0];
    let rank = x.rank();
    let mut inverse = vec![usize::MAX; rank];
    for (a, &p) in perm.iter().enumerate() {
        match inverse.get_mut(p as usize) {
            Some(slot) if *slot == usize::MAX => *slot = a,
            _ => {
                return Err(LowerError::new(format!(
                    "perm {perm:?} is not a permutation"
                )));
            }
        }
    }
    need(perm.len() == rank, || {
        format!("perm {perm:?} must list all axes of {x}")
    })?;
    if rank <= 1 {
        return copy(v, "transpose");
    }
    let y_dims: Vec<Dim> = perm.iter().map(|&p| x.dims[p as usize].clone()).collect();
    let y_strides = strides(&y_dims)?;
    let row_strides = strides(x.leading())?;
    let sizes: Vec<Expr> = x.dims.iter().map(dim_expr).collect::<Result<_, _>>()?;
    let rows = numel_expr(x.leading())?;
    let cols = sizes[rank - 1].clone();
    // Stride of x's axis c inside y.
    let ys = |c: usize| y_strides[inverse[c]].clone();

    let mut b = BodyBuilder::new();
    let mut a = Args::default();
    let dy = a.bind(&mut b, "dy", v.ups[0].dtype, v.up(0));
    let dx = a.bind(&mut b, "dx", x.dtype, v.grad_of(0)?);
    b.for_(LoopKind::Parallel, 0, rows, |b, r| {
        // x's leading indices from the row index.
        let mut src = Expr::Int(0);
        for c in 0..rank - 1 {
            let idx = (Expr::Var(r) / row_strides[c].clone()).rem(sizes[c].clone());
            src = src + idx * ys(c);
        }
        let base = b.let_(src);
        b.for_(LoopKind::Vector, 0, cols.clone(), |b, j| {
            let from = Expr::from(base) + j * ys(rank - 1);
            b.store(dx, r * cols.clone() + j, Expr::load(dy, from));
        });
    });
    Ok(one(b, a, "transpose"))
}

/// `(outer, inner)` around `axis`: the element counts before and after it.
fn around(x: &Type, axis: usize) -> Result<(Expr, Expr), LowerError> {
    need(axis < x.rank(), || {
        format!("axis {axis} out of range for {x}")
    })?;
    Ok((
        numel_expr(&x.dims[..axis])?,
        numel_expr(&x.dims[axis + 1..])?,
    ))
}

/// `split.grad x, dy_0, …` → `dx = concat(dy_i)` along the axis: parallel over the outer
/// index, one contiguous vector copy per part.
pub fn split(v: &Vjp, axis: u64, sizes: &[u64]) -> Result<OpLowering, LowerError> {
    let x = &v.fwd[0];
    let ax = axis as usize;
    let (outer, inner) = around(x, ax)?;
    let d = x.dims.get(ax).and_then(Dim::as_const);
    need(
        d == Some(sizes.iter().sum()) && v.ups.len() == sizes.len(),
        || format!("split sizes {sizes:?} do not cover {x}"),
    )?;
    let d = d.unwrap_or(0) as i64;
    let mut b = BodyBuilder::new();
    let mut a = Args::default();
    let ups: Vec<u32> = (0..sizes.len())
        .map(|i| a.bind(&mut b, &format!("dy{i}"), v.ups[i].dtype, v.up(i)))
        .collect();
    let dx = a.bind(&mut b, "dx", x.dtype, v.grad_of(0)?);
    b.for_(LoopKind::Parallel, 0, outer, |b, o| {
        let mut off = 0i64;
        for (&s, &up) in sizes.iter().zip(&ups) {
            let s = s as i64;
            let len = inner.clone() * s;
            b.for_(LoopKind::Vector, 0, len.clone(), |b, e| {
                let dst = (o * d + off) * inner.clone() + e;
                b.store(dx, dst, Expr::load(up, o * len.clone() + e));
            });
            off += s;
        }
    });
    Ok(one(b, a, "split"))
}

/// `concat.grad x_0, …, dy` → `dx_i` = the slice of `dy` each operand filled.
pub fn concat(v: &Vjp, axis: u64) -> Result<OpLowering, LowerError> {
    let ax = axis as usize;
    let first = &v.fwd[0];
    if !first.dtype.is_float() {
        return Ok(OpLowering::default());
    }
    let (outer, inner) = around(first, ax)?;
    let parts: Vec<i64> = v
        .fwd
        .iter()
        .map(|t| {
            t.dims
                .get(ax)
                .and_then(Dim::as_const)
                .map(|s| s as i64)
                .ok_or_else(|| {
                    LowerError::new(format!("concat operand {t} needs a constant axis {ax}"))
                })
        })
        .collect::<Result<_, _>>()?;
    let total: i64 = parts.iter().sum();
    let mut b = BodyBuilder::new();
    let mut a = Args::default();
    let dy = a.bind(&mut b, "dy", v.ups[0].dtype, v.up(0));
    let dxs: Vec<u32> = (0..parts.len())
        .map(|i| Ok(a.bind(&mut b, &format!("dx{i}"), v.fwd[i].dtype, v.grad_of(i)?)))
        .collect::<Result<_, LowerError>>()?;
    b.for_(LoopKind::Parallel, 0, outer, |b, o| {
        let mut off = 0i64;
        for (&s, &dx) in parts.iter().zip(&dxs) {
            let len = inner.clone() * s;
            b.for_(LoopKind::Vector, 0, len.clone(), |b, e| {
                let src = (o * total + off) * inner.clone() + e;
                b.store(dx, o * len.clone() + e, Expr::load(dy, src));
            });
            off += s;
        }
    });
    Ok(one(b, a, "concat"))
}
