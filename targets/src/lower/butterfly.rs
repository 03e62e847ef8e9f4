//! The canonical butterfly layer (DESIGN §4) over packed twiddles.
//!
//! Two kernels: a `pack` of the canonical twiddles into `[G, S, B·L, 4, n/2]` (a load-phase
//! kernel in inference, where the twiddles are weight-time), then the layer itself:
//!
//! ```text
//! parallel for row {
//!   for group, for stack {
//!     work[0..n] = x[row, group] zero-padded to n
//!     for block, for stage (unrolled: each stride is a constant):
//!       for blk in 0..n/(2·stride) { vector for j in 0..stride {     // stride ≥ 4
//!         i = blk·stride + j; p = blk·2·stride + j; q = p + stride
//!         [w_p, w_q] = [[t00_i, t01_i], [t10_i, t11_i]] · [w_p, w_q]
//!       } }                                   // stride < 4: a serial loop over pairs
//!     y[row, group, stack·n ..] = epilogue(work[..] + bias)   // truncated to out
//!   }
//! }
//! ```
//!
//! The work row is the output row itself when nothing is truncated and the output is f32;
//! otherwise a per-row f32 scratch (so f16 outputs round once, like the reference).

use super::emit::{Kb, bind, maybe_loop, tidy};
use super::epilogue::Epilogue;
use super::shape::{R, arity, cprod, err, int, operand, result, view};
use super::site::{ArgRef, LowerMode, OpLowering, OpSite};
use super::twiddles::{pack_kernel, packed_dims, shape, stage_stride};
use bfly_ir::kernel::{Body, BodyBuilder, BodyParam, ButterflyDesc, Expr, KernelKind, LoopKind};
use bfly_ir::{DType, Dim, StrideOrder, butterfly_width};

/// Geometry of one butterfly layer, as index constants.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Geo {
    pub n_in: i64,
    pub n_out: i64,
    pub n: i64,
    pub half: i64,
    pub groups: u64,
    pub stacks: u64,
    pub blocks: u64,
    pub stages: u64,
    pub stride: StrideOrder,
}

/// The body params one section reads and writes (`work == y` when in place).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct SectionParams {
    pub x: u32,
    pub tw: u32,
    pub bias: Option<u32>,
    pub y: u32,
    pub work: u32,
}

/// Row widths and the output form of one section.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct SectionShape {
    /// `groups · n_in` and `groups · n_out`: the row strides of `x` and `y`.
    pub gi_n_in: i64,
    pub gi_n_out: i64,
    /// The work row is the output row itself.
    pub in_place: bool,
    /// A final loop stores bias/epilogue values (or copies a truncated work row) into `y`.
    pub tail: bool,
}

/// The epilogue chain applied to a stored value: `(builder, value, row, column) → value`.
pub(crate) type ApplyEpilogue<'a> = dyn FnMut(&mut BodyBuilder, Expr, &Expr, &Expr) -> Expr + 'a;

pub fn lower(
    site: &OpSite,
    n_in: u64,
    n_out: u64,
    stride: StrideOrder,
    epi: &Epilogue,
) -> R<OpLowering> {
    arity(site, epi.base, 2, 3)?;
    let (x, tw, y) = (operand(site, 0)?, operand(site, 1)?, result(site, 0)?);
    let ts = shape(site, tw)?;
    if ts.n != butterfly_width(n_in) || ts.stacks != n_out.div_ceil(ts.n) {
        return err(
            site,
            format!("twiddles {tw} do not fit in = {n_in}, out = {n_out}"),
        );
    }
    let (rows, xk) = view(x)?;
    if Some(xk) != ts.groups.checked_mul(n_in) {
        return err(site, format!("input {x} does not have groups·in features"));
    }
    cprod(site, &[ts.groups, ts.stacks, ts.blocks, ts.stages, ts.n])?;
    let geo = Geo {
        n_in: int(site, n_in)?,
        n_out: int(site, n_out)?,
        n: int(site, ts.n)?,
        half: int(site, ts.n / 2)?,
        groups: ts.groups,
        stacks: ts.stacks,
        blocks: ts.blocks,
        stages: ts.stages,
        stride,
    };
    // Packed twiddles: persistent state in inference (packed once at load), scratch in
    // training (the twiddles change every step).
    let packed_ref = match site.mode {
        LowerMode::Inference { .. } => ArgRef::State {
            role: "twiddles.packed".into(),
            dtype: tw.dtype,
            dims: packed_dims(&ts),
        },
        LowerMode::Training => ArgRef::Scratch(0),
    };
    let mut scratch = Vec::new();
    if packed_ref == ArgRef::Scratch(0) {
        scratch.push((tw.dtype, packed_dims(&ts)));
    }
    let pack = pack_kernel(site, tw, ArgRef::Operand(1), packed_ref.clone())?;

    let in_place = n_out.is_multiple_of(ts.n) && y.dtype == DType::F32;
    let mut kb = Kb::new();
    let px = kb.arg("x", x.dtype, ArgRef::Operand(0));
    let pt = kb.arg("tw", tw.dtype, packed_ref);
    let bias = if epi.base == 3 {
        Some(kb.arg("bias", operand(site, 2)?.dtype, ArgRef::Operand(2)))
    } else {
        None
    };
    let ep = epi.bind(&mut kb, site, y)?;
    let py = kb.arg("y", y.dtype, ArgRef::Result(0));
    let work = if in_place {
        py
    } else {
        let mut dims = x.leading().to_vec();
        dims.push(Dim::Const(ts.n));
        scratch.push((DType::F32, dims));
        kb.arg("work", DType::F32, ArgRef::Scratch(scratch.len() - 1))
    };
    let params = SectionParams {
        x: px,
        tw: pt,
        bias,
        y: py,
        work,
    };
    let form = SectionShape {
        gi_n_in: int(site, ts.groups * n_in)?,
        gi_n_out: int(site, ts.groups.saturating_mul(n_out))?,
        in_place,
        tail: !(in_place && bias.is_none() && ep.is_empty()),
    };
    build_section(&mut kb.b, &geo, &params, &form, rows, &mut |b, v, r, c| {
        ep.apply(b, v, r, c)
    });
    let mut names: Vec<String> = bias.map(|_| "bias".to_string()).into_iter().collect();
    names.extend(epi.names());
    let desc = ButterflyDesc {
        n: ts.n,
        stages: ts.stages,
        blocks: ts.blocks,
        stacks: ts.stacks,
        groups: ts.groups,
        dtype: tw.dtype,
        layout: "pairs-in-lanes".into(),
        radix: site.radix.clone(),
        epilogue: names,
    };
    Ok(OpLowering {
        kernels: vec![pack, kb.finish(KernelKind::Butterfly(desc))],
        scratch,
    })
}

/// The layer's one section: `parallel for row in 0..rows { … }` (see the module doc).
/// `lower` builds it with the fused epilogue; the aarch64 butterfly microkernel rebuilds it
/// from a body's geometry to check, statement for statement, that the body is this form.
pub(crate) fn build_section(
    b: &mut BodyBuilder,
    g: &Geo,
    p: &SectionParams,
    shape: &SectionShape,
    rows: Expr,
    apply: &mut ApplyEpilogue,
) {
    let &SectionParams {
        x: px,
        tw: pt,
        bias,
        y: py,
        work,
    } = p;
    let &SectionShape {
        gi_n_in,
        gi_n_out,
        in_place,
        tail,
    } = shape;
    b.for_(LoopKind::Parallel, 0, rows, |b, r| {
        maybe_loop(b, g.groups, |b, gi| {
            maybe_loop(b, g.stacks, |b, s| {
                // Output column of this (group, stack)'s first value.
                let col0 = bind(b, gi.clone() * g.n_out + s.clone() * g.n);
                let wb = if in_place {
                    bind(b, r * gi_n_out + col0.clone())
                } else {
                    bind(b, r * g.n)
                };
                let xb = bind(b, r * gi_n_in + gi.clone() * g.n_in);
                b.for_(LoopKind::Vector, 0, g.n_in, |b, j| {
                    b.store(work, wb.clone() + j, Expr::load(px, xb + j));
                });
                if g.n_in < g.n {
                    b.for_(LoopKind::Vector, g.n_in, g.n, |b, j| {
                        b.store(work, wb.clone() + j, Expr::f32(0.0));
                    });
                }
                let slab = (gi * g.stacks as i64 + s.clone()) * (g.blocks * g.stages) as i64;
                let tb = bind(b, slab * (4 * g.half));
                stages(b, g, work, pt, wb.clone(), tb);
                // Values of this stack that survive truncation.
                let count = Expr::Int(g.n).min(Expr::Int(g.n_out) - s * g.n);
                if !tail {
                    return;
                }
                b.for_(LoopKind::Vector, 0, count, |b, j| {
                    let col = col0 + j;
                    let v = Expr::load(work, wb.clone() + j);
                    let v = match bias {
                        Some(p) => v + Expr::load(p, col.clone()),
                        None => v,
                    };
                    let v = apply(b, v, &Expr::Var(r), &col);
                    // In place, the store goes where the value was read.
                    let at = if in_place {
                        wb.clone() + j
                    } else {
                        r * gi_n_out + col
                    };
                    b.store(py, at, v);
                });
            });
        });
    });
}

/// [`build_section`] alone in a body with `params` (names, dtypes), constants folded as
/// `lower` folds them, the epilogue left out of the tail loop (`y = work (+ bias)`).
pub(crate) fn rebuild_section(
    params: &[BodyParam],
    g: &Geo,
    p: &SectionParams,
    shape: &SectionShape,
    rows: Expr,
) -> Body {
    let mut b = BodyBuilder::new();
    for q in params {
        b.param(&q.name, q.dtype, q.access);
    }
    build_section(&mut b, g, p, shape, rows, &mut |_, v, _, _| v);
    let mut body = b.finish();
    tidy(&mut body);
    body
}

/// Every stage of every block, in place on `work[wb .. wb + n]`; `tb` is the first packed
/// twiddle of this (group, stack).
fn stages(b: &mut BodyBuilder, g: &Geo, work: u32, tw: u32, wb: Expr, tb: Expr) {
    let half = g.half;
    for blk in 0..g.blocks {
        for st in 0..g.stages {
            let stride = stage_stride(g.stride, blk, st, g.stages) as i64;
            let stage = (blk * g.stages + st) as i64;
            let t0 = tb.clone() + stage * 4 * half;
            // One pair: `i` indexes the twiddles, `p` the work row.
            let pair = |b: &mut BodyBuilder, i: Expr, p: Expr| {
                let p = b.let_(p);
                let q = p + stride;
                let a = b.let_(Expr::load(work, Expr::Local(p)));
                let c = b.let_(Expr::load(work, q.clone()));
                let coef = |k: i64| Expr::load(tw, t0.clone() + k * half + i.clone());
                b.store(
                    work,
                    Expr::Local(p),
                    coef(0) * Expr::Local(a) + coef(1) * Expr::Local(c),
                );
                b.store(work, q, coef(2) * Expr::Local(a) + coef(3) * Expr::Local(c));
            };
            if stride >= 4 {
                maybe_loop(b, (half / stride) as u64, |b, blk| {
                    b.for_(LoopKind::Vector, 0, stride, |b, j| {
                        let i = blk.clone() * stride + j;
                        let p = wb.clone() + blk.clone() * (2 * stride) + j;
                        pair(b, i, p);
                    });
                });
            } else {
                b.serial(0, half, |b, i| {
                    // p = 2(i − low) + low with low = i mod stride.
                    let p = wb.clone() + i * 2 - (i % stride);
                    pair(b, Expr::Var(i), p);
                });
            }
        }
    }
}
