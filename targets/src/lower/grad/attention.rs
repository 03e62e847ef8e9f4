//! Backward of rotary position embedding and causal softmax attention
//! (`reference/kernels/attention_backward.rs`), training layout `[.., T, heads·head_dim]`
//! with positions from 0.

use super::Vjp;
use super::finish::{Args, finish};
use super::util::{f32c, need, rows_cols};
use crate::lower::site::{ArgRef, LowerError, OpLowering, dim_expr, numel_expr};
use bfly_ir::kernel::{AttentionDesc, BodyBuilder, Expr, KernelKind, Local, LoopKind};
use bfly_ir::{DType, Dim, Type};
use std::ops::Rem;

/// `(T, width)` of a `[.., T, width]` operand, `T` as an index expression.
fn seq(x: &Type, what: &str) -> Result<(Expr, u64), LowerError> {
    need(x.rank() >= 2, || {
        format!("{what} {x} must be [.., T, heads·head_dim]")
    })?;
    let (_, width) = rows_cols(x)?;
    Ok((dim_expr(&x.dims[x.rank() - 2])?, width))
}

/// `rope.grad x, dy` → `dx`: the transpose of the rotation, i.e. each `(dy_j, dy_{j+h/2})`
/// pair rotated by `−pos·freq_j`, `freq_j = base^(−2j/head_dim)`. Parallel over rows
/// (position = row mod T), a vector loop over the pairs of each head.
pub fn rope(v: &Vjp, heads: u64, base: f64) -> Result<OpLowering, LowerError> {
    let x = &v.fwd[0];
    let (t, width) = seq(x, "rope input")?;
    need(
        heads > 0 && width.is_multiple_of(heads) && (width / heads).is_multiple_of(2),
        || format!("rope: width {width} must split into {heads} heads of even size"),
    )?;
    let hd = (width / heads) as i64;
    let half = hd / 2;
    let (w, h) = (width as i64, heads as i64);
    let rows = numel_expr(x.leading())?;
    // freq_j = e^(j·c): the f64 constant keeps the f32 exponent's error to one rounding.
    let c = -2.0 * base.ln() / hd as f64;

    let mut b = BodyBuilder::new();
    let mut a = Args::default();
    let dy = a.bind(&mut b, "dy", v.ups[0].dtype, v.up(0));
    let dx = a.bind(&mut b, "dx", x.dtype, v.grad_of(0)?);
    b.for_(LoopKind::Parallel, 0, rows, |b, m| {
        let pos = b.let_(Expr::Var(m).rem(t).to_f32());
        b.serial(0, h, |b, head| {
            b.for_(LoopKind::Vector, 0, half, |b, j| {
                let angle = pos * (Expr::Var(j).to_f32() * f32c(c)).exp();
                let s = b.let_(angle.clone().sin());
                let co = b.let_(angle.cos());
                let lo_at = m * w + head * hd + j;
                let hi_at = lo_at.clone() + half;
                let lo = b.let_(Expr::load(dy, lo_at.clone()));
                let hi = b.let_(Expr::load(dy, hi_at.clone()));
                b.store(dx, lo_at, lo * co + hi * s);
                b.store(dx, hi_at, -(lo * s) + hi * co);
            });
        });
    });
    let kind = KernelKind::Backward(Box::new(KernelKind::Rope {
        heads,
        head_dim: hd as u64,
    }));
    Ok(OpLowering {
        kernels: vec![finish(b, a, kind)],
        scratch: vec![],
    })
}

/// Body params of the attention backward.
struct Params {
    q: u32,
    k: u32,
    v: u32,
    dy: u32,
    stats: u32,
    dq: u32,
    dk: u32,
    dv: u32,
}

/// Geometry: `heads` query heads share `kv_heads` key/value heads of `hd` features.
#[derive(Clone, Copy)]
struct Geo {
    heads: i64,
    kv_heads: i64,
    hd: i64,
    scale: f32,
}

impl Geo {
    fn per_kv(&self) -> i64 {
        self.heads / self.kv_heads
    }
}

/// `⟨a[a_off..], b[b_off..]⟩` over `n` features, as a vector reduction into a new local.
fn dot(b: &mut BodyBuilder, pa: u32, a_off: Expr, pb: u32, b_off: Expr, n: i64) -> Local {
    let acc = b.let_(Expr::f32(0.0));
    b.for_(LoopKind::Vector, 0, n, |b, d| {
        let prod = Expr::load(pa, a_off + d) * Expr::load(pb, b_off + d);
        b.assign(acc, acc + prod);
    });
    acc
}

/// `causal_attention.grad q, k, v, dy` → `dq, dk, dv`, recomputing the probabilities
/// (nothing is saved by the forward).
///
/// 1. Parallel over query rows `(b, i)`: per head, the row's softmax statistics (max and
///    sum, online over keys `0..=i`), `D = ⟨dP, P⟩` with `dP_j = dy_i·v_j`, then
///    `dq_i = Σ_j P_j·(dP_j − D)·k_j/√hd`; the statistics go to scratch.
/// 2. Parallel over key rows `(b, j)`: per kv head, over its query heads and then the
///    queries `i ≥ j` in order (the reference's order), `dv_j += P·dy_i` and
///    `dk_j += P·(dP − D)·q_i/√hd`, with `P` rebuilt from the saved statistics.
pub fn attention(v: &Vjp, heads: u64, kv_heads: u64) -> Result<OpLowering, LowerError> {
    let (q, k) = (&v.fwd[0], &v.fwd[1]);
    let (t, width) = seq(q, "attention q")?;
    need(
        heads > 0 && kv_heads > 0 && heads.is_multiple_of(kv_heads) && width.is_multiple_of(heads),
        || format!("attention: width {width}, heads {heads}, kv_heads {kv_heads} do not fit"),
    )?;
    let hd = width / heads;
    let want = q.with_last(hd * kv_heads);
    need(k.dims == want.dims && v.fwd[2].dims == want.dims, || {
        format!("attention k {k} and v {} must be {want}", v.fwd[2])
    })?;
    let rows = numel_expr(q.leading())?;
    let geo = Geo {
        heads: heads as i64,
        kv_heads: kv_heads as i64,
        hd: hd as i64,
        scale: 1.0 / (hd as f32).sqrt(),
    };

    let mut b = BodyBuilder::new();
    let mut a = Args::default();
    let p = Params {
        q: a.bind(&mut b, "q", q.dtype, ArgRef::Operand(0)),
        k: a.bind(&mut b, "k", k.dtype, ArgRef::Operand(1)),
        v: a.bind(&mut b, "v", v.fwd[2].dtype, ArgRef::Operand(2)),
        dy: a.bind(&mut b, "dy", v.ups[0].dtype, v.up(0)),
        stats: a.bind(&mut b, "stats", DType::F32, ArgRef::Scratch(0)),
        dq: a.bind(&mut b, "dq", q.dtype, v.grad_of(0)?),
        dk: a.bind(&mut b, "dk", k.dtype, v.grad_of(1)?),
        dv: a.bind(&mut b, "dv", v.fwd[2].dtype, v.grad_of(2)?),
    };
    query_section(&mut b, &p, geo, rows.clone(), t.clone());
    key_section(&mut b, &p, geo, rows, t);

    let mut stats: Vec<Dim> = q.leading().to_vec();
    stats.extend([Dim::Const(heads), Dim::Const(3)]);
    let kind = KernelKind::Backward(Box::new(KernelKind::Attention(AttentionDesc {
        heads,
        kv_heads,
        head_dim: hd,
        cached: false,
    })));
    Ok(OpLowering {
        kernels: vec![finish(b, a, kind)],
        scratch: vec![(DType::F32, stats)],
    })
}

fn query_section(b: &mut BodyBuilder, p: &Params, geo: Geo, rows: Expr, t: Expr) {
    let Geo {
        heads,
        kv_heads,
        hd,
        scale,
    } = geo;
    let per = geo.per_kv();
    b.for_(LoopKind::Parallel, 0, rows, |b, row| {
        let i = b.let_(Expr::Var(row).rem(t.clone()));
        // Key row j of this sequence: (row − i + j).
        let first = b.let_(Expr::Var(row) - i);
        b.serial(0, heads, |b, h| {
            let kvh = Expr::Var(h) / per;
            let qoff = (row * heads + h) * hd;
            let koff = |j: Expr| ((Expr::from(first) + j) * kv_heads + kvh.clone()) * hd;
            let score = |b: &mut BodyBuilder, j: Expr| {
                let s = dot(b, p.q, qoff.clone(), p.k, koff(j), hd);
                b.let_(s * Expr::f32(scale))
            };
            // Online max and sum of e^(s − max) over keys 0..=i.
            let mx = score(b, Expr::Int(0));
            let sum = b.let_(Expr::f32(1.0));
            b.serial(1, Expr::from(i) + 1, |b, j| {
                let s = score(b, j.into());
                let new = b.let_(Expr::from(mx).max(s.into()));
                b.assign(sum, sum * (mx - new).exp() + (s - new).exp());
                b.assign(mx, new);
            });
            let prob_and_dp = |b: &mut BodyBuilder, j: Expr| {
                let s = score(b, j.clone());
                let prob = b.let_((s - mx).exp() / sum);
                let dp = dot(b, p.dy, qoff.clone(), p.v, koff(j), hd);
                (prob, dp)
            };
            let dd = b.let_(Expr::f32(0.0));
            b.serial(0, Expr::from(i) + 1, |b, j| {
                let (prob, dp) = prob_and_dp(b, j.into());
                b.assign(dd, dd + prob * dp);
            });
            b.for_(LoopKind::Vector, 0, hd, |b, d| {
                b.store(p.dq, qoff.clone() + d, Expr::f32(0.0));
            });
            b.serial(0, Expr::from(i) + 1, |b, j| {
                let (prob, dp) = prob_and_dp(b, j.into());
                let ds = b.let_(prob * (dp - dd) * Expr::f32(scale));
                b.for_(LoopKind::Vector, 0, hd, |b, d| {
                    let at = qoff.clone() + d;
                    let kv = Expr::load(p.k, koff(j.into()) + d);
                    b.store(p.dq, at.clone(), Expr::load(p.dq, at) + ds * kv);
                });
            });
            let so = (row * heads + h) * 3;
            b.store(p.stats, so.clone(), mx);
            b.store(p.stats, so.clone() + 1, sum);
            b.store(p.stats, so + 2, dd);
        });
    });
}

fn key_section(b: &mut BodyBuilder, p: &Params, geo: Geo, rows: Expr, t: Expr) {
    let Geo {
        heads,
        kv_heads,
        hd,
        scale,
    } = geo;
    let per = geo.per_kv();
    b.for_(LoopKind::Parallel, 0, rows, |b, row| {
        let j = b.let_(Expr::Var(row).rem(t.clone()));
        let first = b.let_(Expr::Var(row) - j);
        b.serial(0, kv_heads, |b, kvh| {
            let koff = (row * kv_heads + kvh) * hd;
            b.for_(LoopKind::Vector, 0, hd, |b, d| {
                b.store(p.dk, koff.clone() + d, Expr::f32(0.0));
                b.store(p.dv, koff.clone() + d, Expr::f32(0.0));
            });
            b.serial(kvh * per, (kvh * per) + per, |b, h| {
                b.serial(j, t.clone(), |b, i| {
                    let qrow = Expr::from(first) + i;
                    let qoff = (qrow.clone() * heads + h) * hd;
                    let so = (qrow * heads + h) * 3;
                    let s = dot(b, p.q, qoff.clone(), p.k, koff.clone(), hd);
                    let mx = Expr::load(p.stats, so.clone());
                    let sum = Expr::load(p.stats, so.clone() + 1);
                    let dd = Expr::load(p.stats, so + 2);
                    let prob = b.let_((s * Expr::f32(scale) - mx).exp() / sum);
                    let dp = dot(b, p.dy, qoff.clone(), p.v, koff.clone(), hd);
                    let ds = b.let_(prob * (dp - dd) * Expr::f32(scale));
                    b.for_(LoopKind::Vector, 0, hd, |b, d| {
                        let at = koff.clone() + d;
                        let gk =
                            Expr::load(p.dk, at.clone()) + ds * Expr::load(p.q, qoff.clone() + d);
                        b.store(p.dk, at.clone(), gk);
                        let gv = Expr::load(p.dv, at.clone()) + prob * Expr::load(p.dy, qoff + d);
                        b.store(p.dv, at, gv);
                    });
                });
            });
        });
    });
}
