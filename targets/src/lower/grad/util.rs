//! Helpers shared by the backward lowerings: the loop shapes every VJP uses (chunked
//! elementwise maps, column chunks for reductions over rows, butterfly stage pairs), shape
//! readers that return errors instead of panicking, and a few scalar expressions.

use crate::lower::site::{LowerError, numel_expr};
use bfly_ir::kernel::{BodyBuilder, Expr, LoopKind};
use bfly_ir::{Dim, Type};
use std::ops::Rem;

/// Elements per parallel iteration of an elementwise map: big enough that the vector loop
/// inside amortizes its setup, small enough to spread a few thousand elements over threads.
pub const ELEM_CHUNK: i64 = 256;

/// Columns per parallel iteration of a reduction over rows: one 64-byte cache line of f32,
/// so two threads never write the same line.
pub const COL_CHUNK: i64 = 16;

/// `ceil(e / c)` for a positive constant `c`, folded when `e` is a literal.
pub fn ceil_div(e: Expr, c: i64) -> Expr {
    match e {
        Expr::Int(v) => Expr::Int((v + c - 1) / c),
        e => (e + (c - 1)) / c,
    }
}

/// An elementwise map over `numel` elements: parallel over chunks of [`ELEM_CHUNK`], a vector
/// loop inside. `f` gets the flat element index.
pub fn for_elements(b: &mut BodyBuilder, numel: Expr, f: impl FnOnce(&mut BodyBuilder, Expr)) {
    let chunks = ceil_div(numel.clone(), ELEM_CHUNK);
    b.for_(LoopKind::Parallel, 0, chunks, |b, c| {
        let lo = c * ELEM_CHUNK;
        let hi = (lo.clone() + ELEM_CHUNK).min(numel);
        b.for_(LoopKind::Vector, lo, hi, |b, i| f(b, Expr::Var(i)));
    });
}

/// A reduction over rows into `cols` outputs: parallel over chunks of [`COL_CHUNK`] columns;
/// `f` gets the chunk's column range `lo..hi` and walks the rows itself, in order, so each
/// column's sum has one fixed order whatever the thread count.
pub fn for_col_chunks(
    b: &mut BodyBuilder,
    cols: u64,
    f: impl FnOnce(&mut BodyBuilder, Expr, Expr),
) {
    let cols = cols as i64;
    let chunks = ceil_div(Expr::Int(cols), COL_CHUNK);
    b.for_(LoopKind::Parallel, 0, chunks, |b, c| {
        let lo = c * COL_CHUNK;
        let hi = (lo.clone() + COL_CHUNK).min(Expr::Int(cols));
        f(b, lo, hi);
    });
}

/// A loop `0..n` when `n > 1`; for `n == 1` the body is emitted once with index 0, so the
/// common ungrouped case carries no one-trip loops.
pub fn for_maybe(b: &mut BodyBuilder, n: u64, f: impl FnOnce(&mut BodyBuilder, Expr)) {
    if n == 1 {
        f(b, Expr::Int(0));
    } else {
        b.serial(0, n as i64, |b, i| f(b, Expr::Var(i)));
    }
}

/// `(rows, cols)` of a type as `[rows, cols]` with the last dim constant; rank 0 is one
/// element.
pub fn rows_cols(ty: &Type) -> Result<(Expr, u64), LowerError> {
    if ty.dims.is_empty() {
        return Ok((Expr::Int(1), 1));
    }
    crate::lower::site::rows_cols(ty)
}

/// Element count of a type as an index expression.
pub fn numel(ty: &Type) -> Result<Expr, LowerError> {
    numel_expr(&ty.dims)
}

/// Every dim of `ty` as a constant, or an error naming `what`.
pub fn const_dims(ty: &Type, what: &str) -> Result<Vec<u64>, LowerError> {
    ty.dims
        .iter()
        .map(|d| {
            d.as_const()
                .ok_or_else(|| LowerError::new(format!("{what} {ty} must have constant dims")))
        })
        .collect()
}

/// Fails with `message` unless `ok`.
pub fn need(ok: bool, message: impl FnOnce() -> String) -> Result<(), LowerError> {
    if ok {
        Ok(())
    } else {
        Err(LowerError::new(message()))
    }
}

/// Text of a row count for kernel descriptors (`B·T`, `64`).
pub fn rows_text(dims: &[Dim]) -> String {
    if dims.is_empty() {
        return "1".into();
    }
    dims.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("·")
}

/// `f32` literal from an attribute.
pub fn f32c(v: f64) -> Expr {
    Expr::f32(v as f32)
}

/// Logistic sigmoid of an f32 expression, `1 / (1 + e^−x)`: at large |x| the exponential
/// saturates to 0 or ∞ and the quotient to 1 or 0, never NaN.
pub fn sigmoid(x: Expr) -> Expr {
    Expr::f32(1.0) / (Expr::f32(1.0) + (-x).exp())
}

/// `cond != 0 ? 1.0 : 0.0`.
pub fn indicator(cond: Expr) -> Expr {
    Expr::select(cond, Expr::f32(1.0), Expr::f32(0.0))
}

/// Integer `a && b` of two 0/1 comparisons.
pub fn and(a: Expr, b: Expr) -> Expr {
    a * b
}

/// `db[j] = Σ_m dy[m, j]` for a `[rows, width]` upstream gradient: the gradient of a bias
/// added to every row. Parallel over column chunks, rows summed in order.
pub fn bias_sums(b: &mut BodyBuilder, dy: u32, db: u32, rows: Expr, width: u64) {
    let w = width as i64;
    for_col_chunks(b, width, |b, lo, hi| {
        b.for_(LoopKind::Vector, lo.clone(), hi.clone(), |b, j| {
            b.store(db, Expr::Var(j), Expr::f32(0.0));
        });
        b.serial(0, rows, |b, m| {
            b.for_(LoopKind::Vector, lo, hi, |b, j| {
                let sum = Expr::load(db, Expr::Var(j)) + Expr::load(dy, m * w + j);
                b.store(db, Expr::Var(j), sum);
            });
        });
    });
}

/// The pairs of one butterfly stage of constant `stride` over `2·half` positions: `f` gets
/// the pair index `i`, and its positions `p = 2(i − i mod stride) + i mod stride`,
/// `q = p + stride`. Wide strides loop over blocks of `2·stride` positions with a contiguous
/// vector loop inside; narrow ones use one vector loop over the pairs.
pub fn for_pairs(
    b: &mut BodyBuilder,
    half: i64,
    stride: i64,
    f: impl FnOnce(&mut BodyBuilder, Expr, Expr, Expr),
) {
    if stride >= 8 {
        for_maybe(b, (half / stride) as u64, |b, blk| {
            b.for_(LoopKind::Vector, 0, stride, |b, low| {
                let i = blk.clone() * stride + low;
                let p = blk * (2 * stride) + low;
                let q = p.clone() + stride;
                f(b, i, p, q);
            });
        });
    } else {
        b.for_(LoopKind::Vector, 0, half, |b, i| {
            let p = i * 2 - Expr::Var(i).rem(Expr::Int(stride));
            let q = p.clone() + stride;
            f(b, Expr::Var(i), p, q);
        });
    }
}

/// Stride of stage `st` (0-based, over all blocks) of a butterfly with `log_n` stages per
/// block: block `b = st / log_n` runs increasing strides when `increasing XOR (b odd)`.
pub fn stage_stride(st: u64, log_n: u64, increasing: bool) -> i64 {
    let (blk, sl) = (st / log_n, st % log_n);
    let inc = increasing ^ (blk % 2 == 1);
    let e = if inc { sl } else { log_n - 1 - sl };
    1i64 << e
}

#[cfg(test)]
mod tests {
    use super::stage_stride;

    #[test]
    fn strides_follow_the_block_parity() {
        // L = 3, two blocks, increasing: 1 2 4 then 4 2 1.
        let got: Vec<i64> = (0..6).map(|s| stage_stride(s, 3, true)).collect();
        assert_eq!(got, vec![1, 2, 4, 4, 2, 1]);
        let got: Vec<i64> = (0..3).map(|s| stage_stride(s, 3, false)).collect();
        assert_eq!(got, vec![4, 2, 1]);
    }
}
