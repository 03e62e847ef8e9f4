//! Data movement: `reshape` (a copy, only when the driver cannot alias), `transpose`,
//! `split`, `concat`, `cast`, `fill`, and the `embed` gather.

use super::elementwise::{Ew, map_kernel};
use super::emit::{Kb, chunked};
use super::shape::{R, Unflatten, arity, const_dims, err, int, operand, result, view};
use super::site::{ArgRef, LoweredKernel, OpLowering, OpSite, numel_expr};
use bfly_ir::kernel::{Expr, KernelKind, LoopKind};
use bfly_ir::{DType, Dim, Op};

/// Elements per parallel iteration of a flat copy or fill.
const CHUNK: i64 = 1024;

pub fn lower(site: &OpSite) -> R<OpLowering> {
    let kernel = match site.op {
        Op::Reshape { .. } => copy(site)?,
        Op::Transpose { perm } => transpose(site, perm)?,
        Op::Split { axis, sizes } => split(site, *axis, sizes)?,
        Op::Concat { axis } => concat(site, *axis)?,
        Op::Cast { to } => {
            arity(site, site.operands.len(), 1, 1)?;
            let ew = Ew::Cast {
                from: operand(site, 0)?.dtype,
                to: *to,
            };
            map_kernel(site, &ew, KernelKind::Layout { op: "cast".into() })?
        }
        Op::Fill { value, dtype, dims } => fill(site, *value, *dtype, dims)?,
        Op::Embed => embed(site)?,
        _ => return err(site, "not a layout op"),
    };
    Ok(OpLowering {
        kernels: vec![kernel],
        scratch: Vec::new(),
    })
}

/// Flat copy (a reshape whose result needs its own buffer, e.g. a graph output).
fn copy(site: &OpSite) -> R<LoweredKernel> {
    arity(site, site.operands.len(), 1, 1)?;
    let (x, y) = (operand(site, 0)?, result(site, 0)?);
    if x.dtype != y.dtype {
        return err(site, format!("reshape from {x} to {y} changes the dtype"));
    }
    copy_kernel(
        y,
        KernelKind::Layout {
            op: "reshape".into(),
        },
    )
}

/// `Result(0)[i] = Operand(0)[i]` over every element of `ty`.
pub(crate) fn copy_kernel(ty: &bfly_ir::Type, kind: KernelKind) -> R<LoweredKernel> {
    let mut kb = Kb::new();
    let px = kb.arg("x", ty.dtype, ArgRef::Operand(0));
    let py = kb.arg("y", ty.dtype, ArgRef::Result(0));
    chunked(&mut kb.b, numel_expr(&ty.dims)?, CHUNK, |b, e| {
        b.store(py, e.clone(), Expr::load(px, e));
    });
    Ok(kb.finish(kind))
}

/// `y[i_0, …] = x[i_perm[0], …]`: parallel over the result's rows, vector over its columns.
fn transpose(site: &OpSite, perm: &[u64]) -> R<LoweredKernel> {
    arity(site, site.operands.len(), 1, 1)?;
    let (x, y) = (operand(site, 0)?, result(site, 0)?);
    let r = x.rank();
    if perm.len() != r || y.rank() != r || perm.iter().any(|&p| p as usize >= r) {
        return err(site, format!("perm {perm:?} does not fit {x}"));
    }
    let stride = |a: usize| numel_expr(&x.dims[a + 1..]);
    let (rows, cols) = view(y)?;
    let cols = int(site, cols)?;
    // Axes of y walked by the row index, and the stride in x of y's column axis.
    let (outer, col_stride) = match y.last_const() {
        Some(_) => (r - 1, stride(perm[r - 1] as usize)?),
        None => (r, Expr::Int(0)),
    };
    let unflat = Unflatten::new(&y.dims[..outer])?;
    let strides = (0..outer)
        .map(|a| stride(perm[a] as usize))
        .collect::<R<Vec<_>>>()?;
    let mut kb = Kb::new();
    let px = kb.arg("x", x.dtype, ArgRef::Operand(0));
    let py = kb.arg("y", y.dtype, ArgRef::Result(0));
    kb.b.for_(LoopKind::Parallel, 0, rows, |b, o| {
        let base = unflat
            .coords(&Expr::Var(o))
            .into_iter()
            .zip(&strides)
            .fold(Expr::Int(0), |acc, (c, s)| acc + c * s.clone());
        let base = b.let_(base);
        b.for_(LoopKind::Vector, 0, cols, |b, c| {
            let v = Expr::load(px, base + c * col_stride.clone());
            b.store(py, o * cols + c, v);
        });
    });
    Ok(kb.finish(KernelKind::Layout {
        op: "transpose".into(),
    }))
}

/// `(outer, axis size, inner)` of `dims` around `axis`.
fn around(site: &OpSite, dims: &[Dim], axis: usize) -> R<(Expr, i64, Expr)> {
    let Some(d) = dims.get(axis) else {
        return err(site, format!("axis {axis} is out of range"));
    };
    let Some(d) = d.as_const() else {
        return err(site, format!("axis {axis} must have a constant size"));
    };
    Ok((
        numel_expr(&dims[..axis])?,
        int(site, d)?,
        numel_expr(&dims[axis + 1..])?,
    ))
}

/// Each result copies its slab `[start, start + size)` of every outer slice.
fn split(site: &OpSite, axis: u64, sizes: &[u64]) -> R<LoweredKernel> {
    arity(site, site.operands.len(), 1, 1)?;
    let x = operand(site, 0)?;
    let (outer, d, inner) = around(site, &x.dims, axis as usize)?;
    let total = sizes.iter().try_fold(0u64, |a, &s| a.checked_add(s));
    if sizes.len() != site.results.len() || total != Some(d as u64) {
        return err(site, format!("sizes {sizes:?} do not split {x}"));
    }
    let mut kb = Kb::new();
    let px = kb.arg("x", x.dtype, ArgRef::Operand(0));
    let outs: Vec<u32> = site
        .results
        .iter()
        .enumerate()
        .map(|(i, t)| kb.arg(&format!("y{i}"), t.dtype, ArgRef::Result(i)))
        .collect();
    kb.b.for_(LoopKind::Parallel, 0, outer, |b, o| {
        let mut start = 0i64;
        for (&py, &size) in outs.iter().zip(sizes) {
            let len = inner.clone() * size as i64;
            let src = b.let_(o * (inner.clone() * d) + inner.clone() * start);
            let dst = b.let_(o * len.clone());
            b.for_(LoopKind::Vector, 0, len, |b, e| {
                b.store(py, dst + e, Expr::load(px, src + e));
            });
            start += size as i64;
        }
    });
    Ok(kb.finish(KernelKind::Layout { op: "split".into() }))
}

/// The inverse of `split`: each operand's slab lands at its offset along `axis`.
fn concat(site: &OpSite, axis: u64) -> R<LoweredKernel> {
    let y = result(site, 0)?;
    if site.operands.is_empty() {
        return err(site, "takes at least 1 operand");
    }
    let (outer, d, inner) = around(site, &y.dims, axis as usize)?;
    let mut sizes = Vec::new();
    for t in &site.operands {
        let (_, s, _) = around(site, &t.dims, axis as usize)?;
        sizes.push(s);
    }
    if sizes.iter().try_fold(0i64, |a, &s| a.checked_add(s)) != Some(d) {
        return err(site, format!("operands do not concatenate to {y}"));
    }
    let mut kb = Kb::new();
    let ins: Vec<u32> = site
        .operands
        .iter()
        .enumerate()
        .map(|(i, t)| kb.arg(&format!("x{i}"), t.dtype, ArgRef::Operand(i)))
        .collect();
    let py = kb.arg("y", y.dtype, ArgRef::Result(0));
    kb.b.for_(LoopKind::Parallel, 0, outer, |b, o| {
        let mut start = 0i64;
        for (&px, &size) in ins.iter().zip(&sizes) {
            let len = inner.clone() * size;
            let dst = b.let_(o * (inner.clone() * d) + inner.clone() * start);
            let src = b.let_(o * len.clone());
            b.for_(LoopKind::Vector, 0, len, |b, e| {
                b.store(py, dst + e, Expr::load(px, src + e));
            });
            start += size;
        }
    });
    Ok(kb.finish(KernelKind::Layout {
        op: "concat".into(),
    }))
}

/// A constant; int fills round half away from zero and saturate, as the reference does.
fn fill(site: &OpSite, value: f64, dtype: DType, dims: &[Dim]) -> R<LoweredKernel> {
    arity(site, site.operands.len(), 0, 0)?;
    let y = result(site, 0)?;
    let v = if dtype.is_float() {
        Expr::F32(value as f32)
    } else {
        let (lo, hi) = if dtype == DType::I8 {
            (f64::from(i8::MIN), f64::from(i8::MAX))
        } else {
            (f64::from(i32::MIN), f64::from(i32::MAX))
        };
        // NaN saturates to 0 (`as` maps NaN to 0).
        Expr::Int(value.round().clamp(lo, hi) as i64)
    };
    let mut kb = Kb::new();
    let py = kb.arg("y", y.dtype, ArgRef::Result(0));
    chunked(&mut kb.b, numel_expr(dims)?, CHUNK, |b, e| {
        b.store(py, e, v)
    });
    Ok(kb.finish(KernelKind::Layout { op: "fill".into() }))
}

/// Row `r` of the result is row `tokens[r]` of the table. Ids are clamped to the vocabulary:
/// JIT code must stay in bounds whatever the data (the executor rejects bad ids first).
fn embed(site: &OpSite) -> R<LoweredKernel> {
    arity(site, site.operands.len(), 2, 2)?;
    let (tok, table, y) = (operand(site, 0)?, operand(site, 1)?, result(site, 0)?);
    let td = const_dims(site, table, "embedding table")?;
    let [vocab, dim] = td[..] else {
        return err(site, format!("table {table} must be [V, D]"));
    };
    if vocab == 0 {
        return err(site, "empty vocabulary");
    }
    let (v, d) = (int(site, vocab)?, int(site, dim)?);
    let mut kb = Kb::new();
    let pt = kb.arg("tokens", tok.dtype, ArgRef::Operand(0));
    let pw = kb.arg("table", table.dtype, ArgRef::Operand(1));
    let py = kb.arg("y", y.dtype, ArgRef::Result(0));
    kb.b.for_(LoopKind::Parallel, 0, numel_expr(&tok.dims)?, |b, r| {
        let id = b.let_(
            Expr::load(pt, Expr::Var(r))
                .max(Expr::Int(0))
                .min(Expr::Int(v - 1)),
        );
        b.for_(LoopKind::Vector, 0, d, |b, c| {
            b.store(py, r * d + c, Expr::load(pw, id * d + c));
        });
    });
    Ok(kb.finish(KernelKind::Embed { vocab, dim }))
}
