//! Symmetric per-row int8 quantization and its inverse, with the reference's exact rule:
//! `scale = max|x_row| / 127` (1 for an all-zero row), `q = clamp(round(x / scale), ±127)`
//! rounding half away from zero.

use super::emit::{Kb, round_half_away};
use super::shape::{R, arity, err, int, operand, result, view};
use super::site::{ArgRef, OpLowering, OpSite};
use bfly_ir::Op;
use bfly_ir::kernel::{BodyBuilder, Expr, KernelKind, LoopKind};

pub fn lower(site: &OpSite) -> R<OpLowering> {
    let kernel = match site.op {
        Op::Quantize => quantize(site)?,
        Op::Dequantize => dequantize(site)?,
        _ => return err(site, "not a quantization op"),
    };
    Ok(OpLowering {
        kernels: vec![kernel],
        scratch: Vec::new(),
    })
}

fn quantize(site: &OpSite) -> R<super::site::LoweredKernel> {
    arity(site, site.operands.len(), 1, 1)?;
    let (x, q, s) = (operand(site, 0)?, result(site, 0)?, result(site, 1)?);
    let (rows, d) = view(x)?;
    let d = int(site, d)?;
    let mut kb = Kb::new();
    let px = kb.arg("x", x.dtype, ArgRef::Operand(0));
    let pq = kb.arg("q", q.dtype, ArgRef::Result(0));
    let ps = kb.arg("scale", s.dtype, ArgRef::Result(1));
    quantize_section(&mut kb.b, Expr::Int(0), rows, d, (px, pq, ps));
    Ok(kb.finish(KernelKind::RowOp {
        op: "quantize".into(),
        cols: d as u64,
    }))
}

/// The quantize section over rows of `d` floats, params `(x, q, scale)` (also the template
/// the aarch64 `quantize` microkernel matches bodies against).
pub(crate) fn quantize_section(
    b: &mut BodyBuilder,
    start: Expr,
    end: Expr,
    d: i64,
    (px, pq, ps): (u32, u32, u32),
) {
    b.for_(LoopKind::Parallel, start, end, |b, r| {
        let base = b.let_(r * d);
        let m = b.let_(Expr::f32(0.0));
        b.for_(LoopKind::Vector, 0, d, |b, j| {
            b.assign(m, Expr::from(m).max(Expr::load(px, base + j).abs()));
        });
        let scale = b.let_(Expr::select(
            Expr::Local(m).eq_(Expr::f32(0.0)),
            Expr::f32(1.0),
            Expr::Local(m) / Expr::f32(127.0),
        ));
        b.store(ps, r, scale);
        b.for_(LoopKind::Vector, 0, d, |b, j| {
            let v = b.let_(Expr::load(px, base + j) / Expr::Local(scale));
            let rounded = round_half_away(b, Expr::Local(v));
            let clamped = rounded.min(Expr::f32(127.0)).max(Expr::f32(-127.0));
            b.store(pq, base + j, clamped.to_int());
        });
    });
}

/// `x[r, j] = q[r, j] · scales[r]`.
fn dequantize(site: &OpSite) -> R<super::site::LoweredKernel> {
    arity(site, site.operands.len(), 2, 2)?;
    let (q, s, y) = (operand(site, 0)?, operand(site, 1)?, result(site, 0)?);
    let (rows, d) = view(q)?;
    let d = int(site, d)?;
    let mut kb = Kb::new();
    let pq = kb.arg("q", q.dtype, ArgRef::Operand(0));
    let ps = kb.arg("scale", s.dtype, ArgRef::Operand(1));
    let py = kb.arg("y", y.dtype, ArgRef::Result(0));
    kb.b.for_(LoopKind::Parallel, 0, rows, |b, r| {
        let base = b.let_(r * d);
        let sc = b.let_(Expr::load(ps, Expr::Var(r)));
        b.for_(LoopKind::Vector, 0, d, |b, j| {
            let v = Expr::load(pq, base + j).to_f32() * Expr::Local(sc);
            b.store(py, base + j, v);
        });
    });
    Ok(kb.finish(KernelKind::Other {
        op: "dequantize".into(),
    }))
}
