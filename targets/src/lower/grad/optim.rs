//! Optimizer updates: `sgd` and `adamw` (`reference/interp_grad.rs`). Elementwise maps; the
//! driver binds each result to its param's (or moment's) buffer, so every iteration reads
//! element `i` of the operands before writing element `i` of the results, and nothing else.

use super::finish::{Args, finish};
use super::util::{ELEM_CHUNK, ceil_div, f32c, for_elements, need, numel};
use crate::lower::site::{ArgRef, LowerError, OpLowering, OpSite};
use bfly_ir::kernel::{BodyBuilder, Expr, KernelKind, LoopKind};
use bfly_ir::{DType, Type};

fn kind(rule: &str) -> KernelKind {
    KernelKind::Optimizer { rule: rule.into() }
}

/// Arity, and that the first `same` operands and every result are shaped like the param.
fn check(site: &OpSite, operands: usize, results: usize, same: usize) -> Result<(), LowerError> {
    let name = site.op.name();
    need(
        site.operands.len() == operands && site.results.len() == results,
        || {
            format!(
                "`{name}` takes {operands} operands and gives {results} results, found {} and {}",
                site.operands.len(),
                site.results.len()
            )
        },
    )?;
    let p = &site.operands[0];
    for t in site.operands[1..same].iter().chain(&site.results) {
        need(t.dims == p.dims, || {
            format!("`{name}`: {t} must be shaped like the param {p}")
        })?;
    }
    Ok(())
}

/// `sgd p, g` → `p − lr·g`.
pub fn sgd(site: &OpSite, lr: f64) -> Result<OpLowering, LowerError> {
    check(site, 2, 1, 2)?;
    let p = &site.operands[0];
    let mut b = BodyBuilder::new();
    let mut a = Args::default();
    let pp = a.bind(&mut b, "p", p.dtype, ArgRef::Operand(0));
    let gp = a.bind(&mut b, "g", site.operands[1].dtype, ArgRef::Operand(1));
    let out = a.bind(&mut b, "p_new", site.results[0].dtype, ArgRef::Result(0));
    for_elements(&mut b, numel(p)?, |b, i| {
        let value = Expr::load(pp, i.clone()) - f32c(lr) * Expr::load(gp, i.clone());
        b.store(out, i, value);
    });
    Ok(OpLowering {
        kernels: vec![finish(b, a, kind("sgd"))],
        scratch: vec![],
    })
}

/// AdamW hyper-parameters, as on the op.
pub struct AdamW {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

/// `1 − e^x` for `x ≤ 0` without the cancellation of `1 − exp(x)` near 0: a Taylor series
/// for `|x| < 0.1` (truncation below 2e−10 relative), the direct form beyond. With
/// `x = step·ln β` this is Adam's bias correction `1 − β^step`, which for β2 = 0.999 and
/// early steps is ~1e−3: the direct form would lose three digits of f32 there.
fn one_minus_exp(x: Expr) -> Expr {
    let c = |v: f64| Expr::f32(v as f32);
    let series = -x.clone()
        * (c(1.0)
            + x.clone()
                * (c(0.5)
                    + x.clone()
                        * (c(1.0 / 6.0)
                            + x.clone()
                                * (c(1.0 / 24.0)
                                    + x.clone() * (c(1.0 / 120.0) + x.clone() * c(1.0 / 720.0))))));
    Expr::select(x.clone().abs().lt(c(0.1)), series, c(1.0) - x.exp())
}

/// `adamw p, g, m, v, step` → `(p', m', v')`: `m' = β1·m + (1−β1)·g`,
/// `v' = β2·v + (1−β2)·g²`, `p' = p − lr·(m̂/(√v̂ + eps) + wd·p)` with `m̂ = m'/(1−β1^step)`,
/// `v̂ = v'/(1−β2^step)`. The bias corrections are computed once per chunk from the f32[]
/// `step` operand (`β^step = e^(step·ln β)`).
pub fn adamw(site: &OpSite, h: &AdamW) -> Result<OpLowering, LowerError> {
    check(site, 5, 3, 4)?;
    need(site.operands[4] == Type::scalar(DType::F32), || {
        format!("adamw step must be f32[], found {}", site.operands[4])
    })?;
    need(
        (0.0..1.0).contains(&h.beta1) && (0.0..1.0).contains(&h.beta2),
        || {
            format!(
                "adamw betas must be in [0, 1), found {} and {}",
                h.beta1, h.beta2
            )
        },
    )?;
    let p = &site.operands[0];
    let total = numel(p)?;
    let mut b = BodyBuilder::new();
    let mut a = Args::default();
    let ty = |i: usize| site.operands[i].dtype;
    let pp = a.bind(&mut b, "p", ty(0), ArgRef::Operand(0));
    let gp = a.bind(&mut b, "g", ty(1), ArgRef::Operand(1));
    let mp = a.bind(&mut b, "m", ty(2), ArgRef::Operand(2));
    let vp = a.bind(&mut b, "v", ty(3), ArgRef::Operand(3));
    let sp = a.bind(&mut b, "step", ty(4), ArgRef::Operand(4));
    let p_new = a.bind(&mut b, "p_new", site.results[0].dtype, ArgRef::Result(0));
    let m_new = a.bind(&mut b, "m_new", site.results[1].dtype, ArgRef::Result(1));
    let v_new = a.bind(&mut b, "v_new", site.results[2].dtype, ArgRef::Result(2));

    // ln 0 = −∞ gives β^step = e^−∞ = 0 for β = 0 (step ≥ 1).
    let (ln1, ln2) = (h.beta1.ln(), h.beta2.ln());
    b.for_(
        LoopKind::Parallel,
        0,
        ceil_div(total.clone(), ELEM_CHUNK),
        |b, c| {
            // Reciprocals of the bias corrections, once per chunk.
            let step = b.let_(Expr::load(sp, Expr::Int(0)));
            let x1 = b.let_(step * f32c(ln1));
            let x2 = b.let_(step * f32c(ln2));
            let inv1 = b.let_(Expr::f32(1.0) / one_minus_exp(x1.into()));
            let inv2 = b.let_(Expr::f32(1.0) / one_minus_exp(x2.into()));
            let lo = c * ELEM_CHUNK;
            let hi = (lo.clone() + ELEM_CHUNK).min(total);
            b.for_(LoopKind::Vector, lo, hi, |b, i| {
                let (pv, g) = (
                    b.let_(Expr::load(pp, i.into())),
                    b.let_(Expr::load(gp, i.into())),
                );
                let m = b.let_(f32c(h.beta1) * Expr::load(mp, i.into()) + f32c(1.0 - h.beta1) * g);
                let v =
                    b.let_(f32c(h.beta2) * Expr::load(vp, i.into()) + f32c(1.0 - h.beta2) * g * g);
                let (m_hat, v_hat) = (m * inv1, v * inv2);
                let update = m_hat / (v_hat.sqrt() + f32c(h.eps)) + f32c(h.weight_decay) * pv;
                b.store(p_new, Expr::Var(i), pv - f32c(h.lr) * update);
                b.store(m_new, Expr::Var(i), m);
                b.store(v_new, Expr::Var(i), v);
            });
        },
    );
    Ok(OpLowering {
        kernels: vec![finish(b, a, kind("adamw"))],
        scratch: vec![],
    })
}
