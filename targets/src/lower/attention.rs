//! Rotary embedding and exact causal softmax attention, in both modes.
//!
//! - Training: `[B, T, ·]` sequences from position 0; query `i` of a sequence attends to that
//!   sequence's keys `0..=i`; rope position = `i`.
//! - Inference: `T` new tokens after `pos` cached ones. A `kv_append` kernel writes this
//!   step's k, v rows into persistent caches (`k_cache`, `v_cache`: `[context, kv_dim]`) at
//!   `pos`; query `t` attends to cache rows `0..=pos + t`; rope position = `pos + t`. Both are
//!   clamped to the cache, so no `pos` can make a kernel touch memory outside its buffers.
//!
//! Attention is parallel over (query row, head); scores cover exactly the causal extent (no
//! mask), are max-subtracted and normalized as the reference does, then weight the values.
//! Rope reads a cos/sin table of every position: computed once at load in inference.

use super::emit::{Kb, bind, maybe_loop};
use super::shape::{R, arity, err, int, operand, result};
use super::site::{ArgRef, LowerMode, LoweredKernel, OpLowering, OpSite, dim_expr, numel_expr};
use bfly_ir::kernel::{AttentionDesc, BodyBuilder, Expr, KernelKind, LoopKind, RtSym};
use bfly_ir::{DType, Dim, Type};

/// `[.., T, width]`: (rows, the T axis, width). In inference the T axis must hold every row:
/// the cache belongs to one sequence.
fn seq(site: &OpSite, x: &Type) -> R<(Expr, Dim, i64)> {
    let r = x.rank();
    if r < 2 {
        return err(site, format!("{x} must be [.., T, width]"));
    }
    let Some(w) = x.last_const() else {
        return err(site, format!("width of {x} must be a constant"));
    };
    if let LowerMode::Inference { context } = site.mode {
        if x.dims[..r - 2].iter().any(|d| *d != Dim::Const(1)) {
            return err(site, format!("a KV-cached sequence {x} must be [T, width]"));
        }
        if context == 0 || int(site, context).is_err() {
            return err(site, format!("context {context} must be in 1..2^63"));
        }
    }
    Ok((
        numel_expr(x.leading())?,
        x.dims[r - 2].clone(),
        int(site, w)?,
    ))
}

pub fn rope(site: &OpSite, heads: u64, base: f64) -> R<OpLowering> {
    arity(site, site.operands.len(), 1, 1)?;
    let (x, y) = (operand(site, 0)?, result(site, 0)?);
    let (rows, t_dim, w) = seq(site, x)?;
    let h = int(site, heads)?;
    if h == 0 || w % h != 0 || (w / h) % 2 != 0 {
        return err(
            site,
            format!("width {w} does not split into {heads} even heads"),
        );
    }
    let hd = w / h;
    let half = hd / 2;
    // The table: positions 0..context (inference, state) or 0..T (training, scratch).
    let (table_ref, positions, scratch) = match site.mode {
        LowerMode::Inference { context } => (
            ArgRef::State {
                role: "rope.table".into(),
                dtype: DType::F32,
                dims: vec![Dim::Const(context), Dim::Const(half as u64), Dim::Const(2)],
            },
            Expr::Int(int(site, context)?),
            Vec::new(),
        ),
        LowerMode::Training => (
            ArgRef::Scratch(0),
            dim_expr(&t_dim)?,
            vec![(
                DType::F32,
                vec![t_dim.clone(), Dim::Const(half as u64), Dim::Const(2)],
            )],
        ),
    };
    let table = table_kernel(hd, base, positions, table_ref.clone());

    let mut kb = Kb::new();
    let px = kb.arg("x", x.dtype, ArgRef::Operand(0));
    let pt = kb.arg("table", DType::F32, table_ref);
    let py = kb.arg("y", y.dtype, ArgRef::Result(0));
    let positions = Positions::of(site.mode, &t_dim)?;
    let geometry = (heads, hd);
    rope_section(
        &mut kb.b,
        Expr::Int(0),
        rows,
        geometry,
        &positions,
        (px, pt, py),
    );
    Ok(OpLowering {
        kernels: vec![
            table,
            kb.finish(KernelKind::Rope {
                heads,
                head_dim: hd as u64,
            }),
        ],
        scratch,
    })
}

/// Where a query row's position comes from, in both modes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Positions {
    /// Inference: row `t` is position `pos + t` of a cache of `context` rows.
    Cached { context: i64 },
    /// Training: row `r` is position `r % t` of its sequence of `t` rows.
    Sequence { t: Expr },
}

impl Positions {
    /// The positions of `mode` (`t_dim` must be a known dim in either mode).
    fn of(mode: LowerMode, t_dim: &Dim) -> R<Positions> {
        let t = dim_expr(t_dim)?;
        Ok(match mode {
            LowerMode::Inference { context } => Positions::Cached {
                context: context as i64,
            },
            LowerMode::Training => Positions::Sequence { t },
        })
    }
}

/// The rope section over rows of `heads × hd` floats, params `(x, table, y)` (also the
/// template the aarch64 `rope` microkernel matches bodies against).
pub(crate) fn rope_section(
    b: &mut BodyBuilder,
    start: Expr,
    end: Expr,
    (heads, hd): (u64, i64),
    positions: &Positions,
    (px, pt, py): (u32, u32, u32),
) {
    let (w, half) = (heads as i64 * hd, hd / 2);
    b.for_(LoopKind::Parallel, start, end, |b, r| {
        let pos = match positions {
            Positions::Cached { context } => {
                (Expr::Sym(RtSym::Pos) + r).min(Expr::Int(context - 1))
            }
            Positions::Sequence { t } => r % t.clone(),
        };
        let tb = b.let_(pos * hd);
        let xb = b.let_(r * w);
        maybe_loop(b, heads, |b, hi| {
            let hb = b.let_(xb + hi * hd);
            b.for_(LoopKind::Vector, 0, half, |b, j| {
                let c = b.let_(Expr::load(pt, tb + j * 2));
                let s = b.let_(Expr::load(pt, tb + j * 2 + 1));
                let lo = b.let_(Expr::load(px, hb + j));
                let hi = b.let_(Expr::load(px, hb + j + half));
                let (c, s, lo, hi) = (
                    Expr::Local(c),
                    Expr::Local(s),
                    Expr::Local(lo),
                    Expr::Local(hi),
                );
                b.store(py, hb + j, lo.clone() * c.clone() - hi.clone() * s.clone());
                b.store(py, hb + j + half, lo * s + hi * c);
            });
        });
    });
}

/// `table[t, j] = (cos, sin)(t · base^(−2j/head_dim))`, frequencies unrolled as f32
/// constants computed in f64.
fn table_kernel(hd: i64, base: f64, positions: Expr, to: ArgRef) -> LoweredKernel {
    let half = hd / 2;
    let mut kb = Kb::new();
    let pt = kb.arg("table", DType::F32, to);
    kb.b.for_(LoopKind::Parallel, 0, positions, |b, t| {
        let tf = b.let_(Expr::Var(t).to_f32());
        for j in 0..half {
            let freq = base.powf(-((2 * j) as f64) / hd as f64);
            let a = b.let_(Expr::Local(tf) * Expr::F32(freq as f32));
            b.store(pt, (t * half + j) * 2, Expr::Local(a).cos());
            b.store(pt, (t * half + j) * 2 + 1, Expr::Local(a).sin());
        }
    });
    kb.finish(KernelKind::Layout {
        op: "rope_table".into(),
    })
}

pub fn causal_attention(site: &OpSite, heads: u64, kv_heads: u64) -> R<OpLowering> {
    arity(site, site.operands.len(), 3, 3)?;
    let (q, k, v, y) = (
        operand(site, 0)?,
        operand(site, 1)?,
        operand(site, 2)?,
        result(site, 0)?,
    );
    let (rows, t_dim, w) = seq(site, q)?;
    let (h, kvh) = (int(site, heads)?, int(site, kv_heads)?);
    if h == 0 || kvh == 0 || h % kvh != 0 || w % h != 0 {
        return err(
            site,
            format!("{heads} heads, {kv_heads} kv heads do not fit {q}"),
        );
    }
    let hd = w / h;
    let kvd = kvh * hd;
    if k.last_const() != Some(kvd as u64) || v.last_const() != Some(kvd as u64) {
        return err(site, format!("k {k} and v {v} must have width {kvd}"));
    }
    let desc = AttentionDesc {
        heads,
        kv_heads,
        head_dim: hd as u64,
        cached: matches!(site.mode, LowerMode::Inference { .. }),
    };
    let mut kernels = Vec::new();
    let mut scratch = Vec::new();
    // Where keys and values come from: (k, v refs, the score row length, per-query extent).
    let (k_ref, v_ref, span) = match site.mode {
        LowerMode::Inference { context } => {
            let cache = |role: &str, t: &Type| ArgRef::State {
                role: role.into(),
                dtype: t.dtype,
                dims: vec![Dim::Const(context), Dim::Const(kvd as u64)],
            };
            let (kc, vc) = (cache("k_cache", k), cache("v_cache", v));
            kernels.push(kv_append(k, v, rows.clone(), kvd, context, &kc, &vc));
            (kc, vc, Dim::Const(context))
        }
        LowerMode::Training => (ArgRef::Operand(1), ArgRef::Operand(2), t_dim.clone()),
    };
    let mut sdims = q.leading().to_vec();
    sdims.push(Dim::Const(heads));
    sdims.push(span.clone());
    scratch.push((DType::F32, sdims));
    let mut kb = Kb::new();
    let pq = kb.arg("q", q.dtype, ArgRef::Operand(0));
    let pk = kb.arg("k", k.dtype, k_ref);
    let pv = kb.arg("v", v.dtype, v_ref);
    let ps = kb.arg("scores", DType::F32, ArgRef::Scratch(0));
    let py = kb.arg("y", y.dtype, ArgRef::Result(0));
    // An f16 result accumulates in f32 scratch and rounds once, like the reference.
    let acc_param = if y.dtype == DType::F32 {
        py
    } else {
        let mut dims = q.leading().to_vec();
        dims.push(Dim::Const(w as u64));
        scratch.push((DType::F32, dims));
        kb.arg("acc", DType::F32, ArgRef::Scratch(1))
    };
    let shape = AttnShape {
        heads: h,
        kv_heads: kvh,
        head_dim: hd,
    };
    let params = AttnParams {
        q: pq,
        k: pk,
        v: pv,
        scores: ps,
        y: py,
        acc: acc_param,
    };
    let positions = Positions::of(site.mode, &t_dim)?;
    attention_section(&mut kb.b, Expr::Int(0), rows * h, shape, &positions, params);
    kernels.push(kb.finish(KernelKind::Attention(desc)));
    Ok(OpLowering { kernels, scratch })
}

/// Heads, KV heads and head dim of an attention section.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct AttnShape {
    pub heads: i64,
    pub kv_heads: i64,
    pub head_dim: i64,
}

impl AttnShape {
    /// `1 / √head_dim`, rounded once to f32.
    pub(crate) fn scale(&self) -> f32 {
        (1.0 / (self.head_dim as f64).sqrt()) as f32
    }
}

/// The params of an attention section; `acc` is `y` itself for an f32 result, else the
/// f32 scratch y accumulates in before one rounding store.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AttnParams {
    pub q: u32,
    pub k: u32,
    pub v: u32,
    pub scores: u32,
    pub y: u32,
    pub acc: u32,
}

/// The causal attention section, `parallel for idx in start..end` over (query row, head)
/// pairs (also the template the aarch64 `attention` microkernel matches bodies against).
/// A row of scores holds `context` (cached) or `t` (sequence) floats.
pub(crate) fn attention_section(
    b: &mut BodyBuilder,
    start: Expr,
    end: Expr,
    shape: AttnShape,
    positions: &Positions,
    p: AttnParams,
) {
    let (h, hd) = (shape.heads, shape.head_dim);
    let (w, kvd, per) = (h * hd, shape.kv_heads * hd, h / shape.kv_heads);
    let scale = Expr::F32(shape.scale());
    let span = match positions {
        Positions::Cached { context } => Expr::Int(*context),
        Positions::Sequence { t } => t.clone(),
    };
    let (pq, pk, pv, ps, py, acc_param) = (p.q, p.k, p.v, p.scores, p.y, p.acc);
    b.for_(LoopKind::Parallel, start, end, |b, idx| {
        let row = b.let_(idx / h);
        let hi = b.let_(idx % h);
        // First key row and number of keys of this query.
        let (first, n) = match positions {
            Positions::Cached { context } => (
                Expr::Int(0),
                (Expr::Sym(RtSym::Pos) + row + 1).min(Expr::Int(*context)),
            ),
            Positions::Sequence { t } => {
                let i = b.let_(row % t.clone());
                (Expr::Local(b.let_(row - i)), i + 1)
            }
        };
        let n = b.let_(n);
        let qo = b.let_(row * w + hi * hd);
        let kvo = b.let_(hi / per * hd);
        let sb = b.let_(idx * span.clone());
        let m = b.let_(Expr::f32(f32::NEG_INFINITY));
        b.serial(0, n, |b, j| {
            let ko = b.let_((first.clone() + j) * kvd + kvo);
            let acc = b.let_(Expr::f32(0.0));
            b.for_(LoopKind::Vector, 0, hd, |b, d| {
                b.assign(acc, acc + Expr::load(pq, qo + d) * Expr::load(pk, ko + d));
            });
            let sc = b.let_(acc * scale.clone());
            b.store(ps, sb + j, sc);
            b.assign(m, Expr::from(m).max(Expr::Local(sc)));
        });
        let sum = b.let_(Expr::f32(0.0));
        b.for_(LoopKind::Vector, 0, n, |b, j| {
            let e = b.let_((Expr::load(ps, sb + j) - Expr::Local(m)).exp());
            b.store(ps, sb + j, e);
            b.assign(sum, sum + Expr::Local(e));
        });
        let ab = bind(
            b,
            if acc_param == py {
                Expr::Local(qo)
            } else {
                idx * hd
            },
        );
        b.for_(LoopKind::Vector, 0, hd, |b, d| {
            b.store(acc_param, ab.clone() + d, Expr::f32(0.0));
        });
        b.serial(0, n, |b, j| {
            let p = b.let_(Expr::load(ps, sb + j) / Expr::Local(sum));
            let vo = b.let_((first.clone() + j) * kvd + kvo);
            b.for_(LoopKind::Vector, 0, hd, |b, d| {
                let cur = Expr::load(acc_param, ab.clone() + d);
                b.store(
                    acc_param,
                    ab.clone() + d,
                    cur + Expr::Local(p) * Expr::load(pv, vo + d),
                );
            });
        });
        if acc_param != py {
            b.for_(LoopKind::Vector, 0, hd, |b, d| {
                b.store(py, qo + d, Expr::load(acc_param, ab.clone() + d));
            });
        }
    });
}

/// Copies this step's `T` rows of k and v into the caches at `pos` (rows past the cache are
/// dropped: the executor never runs such a step, and the kernel stays in bounds anyway).
fn kv_append(
    k: &Type,
    v: &Type,
    rows: Expr,
    kvd: i64,
    context: u64,
    kc: &ArgRef,
    vc: &ArgRef,
) -> LoweredKernel {
    let mut kb = Kb::new();
    let pk = kb.arg("k", k.dtype, ArgRef::Operand(1));
    let pv = kb.arg("v", v.dtype, ArgRef::Operand(2));
    let pkc = kb.arg("k_cache", k.dtype, kc.clone());
    let pvc = kb.arg("v_cache", v.dtype, vc.clone());
    let params = (pk, pv, pkc, pvc);
    kv_append_section(&mut kb.b, Expr::Int(0), rows, kvd, context as i64, params);
    kb.finish(KernelKind::KvAppend { kv_dim: kvd as u64 })
}

/// The kv_append section, params `(k, v, k_cache, v_cache)` (also the template the
/// aarch64 `copy` microkernel matches bodies against).
pub(crate) fn kv_append_section(
    b: &mut BodyBuilder,
    start: Expr,
    end: Expr,
    kvd: i64,
    context: i64,
    (pk, pv, pkc, pvc): (u32, u32, u32, u32),
) {
    b.for_(LoopKind::Parallel, start, end, |b, t| {
        let dst = b.let_(Expr::Sym(RtSym::Pos) + t);
        b.if_(Expr::Local(dst).lt(Expr::Int(context)), |b| {
            b.for_(LoopKind::Vector, 0, kvd, |b, c| {
                b.store(pkc, dst * kvd + c, Expr::load(pk, t * kvd + c));
                b.store(pvc, dst * kvd + c, Expr::load(pv, t * kvd + c));
            });
        });
    });
}
