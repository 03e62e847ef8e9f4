//! Backward of the twiddle producers (DESIGN §4; `reference/kernels/butterfly.rs`,
//! `ternary_backward.rs`): each parameter's gradient reads only its own pair's four twiddle
//! gradients, so every lowering is a map with no reduction.

use super::Vjp;
use super::finish::{Args, finish};
use super::util::{const_dims, for_elements, for_pairs, need, numel, stage_stride};
use crate::lower::site::{ArgRef, LowerError, OpLowering};
use bfly_ir::kernel::{BodyBuilder, Expr, KernelKind, LoopKind};
use std::ops::Rem;

fn kind(producer: &str) -> KernelKind {
    KernelKind::Backward(Box::new(KernelKind::Twiddles {
        producer: producer.into(),
    }))
}

/// Binds `theta`, the twiddle gradient and `dtheta`, then maps every angle with `f(theta,
/// d0, d1, d2, d3)`.
fn angle_map(
    v: &Vjp,
    producer: &str,
    f: impl FnOnce(Expr, [Expr; 4]) -> Expr,
) -> Result<OpLowering, LowerError> {
    let theta = &v.fwd[0];
    let mut b = BodyBuilder::new();
    let mut a = Args::default();
    let th = a.bind(&mut b, "theta", theta.dtype, ArgRef::Operand(0));
    let dtw = a.bind(&mut b, "dtw", v.ups[0].dtype, v.up(0));
    let dth = a.bind(&mut b, "dtheta", theta.dtype, v.grad_of(0)?);
    for_elements(&mut b, numel(theta)?, |b, i| {
        let d = [0, 1, 2, 3].map(|c| Expr::load(dtw, i.clone() * 4 + c));
        b.store(dth, i.clone(), f(Expr::load(th, i), d));
    });
    Ok(OpLowering {
        kernels: vec![finish(b, a, kind(producer))],
        scratch: vec![],
    })
}

/// `dθ = dT00(−s) + dT01(−c) + dT10(c) + dT11(−s)` for `T = [[c, −s], [s, c]]`.
pub fn givens(v: &Vjp) -> Result<OpLowering, LowerError> {
    angle_map(v, "givens", |th, [d0, d1, d2, d3]| {
        let (s, c) = (th.clone().sin(), th.cos());
        -d0 * s.clone() - d1 * c.clone() + d2 * c - d3 * s
    })
}

/// Straight-through estimator: the rounding to `{−α, 0, α}` counts as the identity, so
/// `dw = dT01 − dT11` of `T = [[1, t], [1, −t]]`.
pub fn ternary(v: &Vjp) -> Result<OpLowering, LowerError> {
    angle_map(v, "ternary", |_, [_, d1, _, d3]| d1 - d3)
}

/// DIB: `T = [[d_p c, −d_p s], [d_q s, d_q c]]` with `p, q` the pair's positions in its
/// stage. `dθ = dT00(−d_p s) + dT01(−d_p c) + dT10(d_q c) + dT11(−d_q s)`,
/// `dd_p = dT00 c − dT01 s`, `dd_q = dT10 s + dT11 c`; every position is in exactly one pair
/// per stage, so each diagonal gradient is written once.
///
/// Parallel over rows `(g, s, b, stage)`; the stage's stride (it depends on the block's
/// parity and the stage) is a constant in the code: one branch per distinct stride.
pub fn dib(v: &Vjp, increasing: bool) -> Result<OpLowering, LowerError> {
    let (theta, diag) = (&v.fwd[0], &v.fwd[1]);
    let td = const_dims(theta, "DIB angles")?;
    let dd = const_dims(diag, "DIB diagonal")?;
    let [groups, stacks, blocks, l, half] = td[..] else {
        return Err(LowerError::new(format!(
            "DIB angles {theta} must be [G, S, B, L, n/2]"
        )));
    };
    let n = half * 2;
    need(
        n.is_power_of_two()
            && u64::from(n.trailing_zeros()) == l
            && dd == [groups, stacks, blocks, l, n],
        || format!("DIB angles {theta} and diagonal {diag} do not fit"),
    )?;
    let stages = blocks * l;
    let rows = (groups * stacks * stages) as i64;
    let (n, half) = (n as i64, half as i64);

    let mut b = BodyBuilder::new();
    let mut a = Args::default();
    let th = a.bind(&mut b, "theta", theta.dtype, ArgRef::Operand(0));
    let dg = a.bind(&mut b, "diag", diag.dtype, ArgRef::Operand(1));
    let dtw = a.bind(&mut b, "dtw", v.ups[0].dtype, v.up(0));
    let dth = a.bind(&mut b, "dtheta", theta.dtype, v.grad_of(0)?);
    let ddg = a.bind(&mut b, "ddiag", diag.dtype, v.grad_of(1)?);

    let mut by_stride: Vec<(i64, Vec<u64>)> = Vec::new();
    for st in 0..stages {
        let stride = stage_stride(st, l, increasing);
        match by_stride.iter_mut().find(|(s, _)| *s == stride) {
            Some((_, list)) => list.push(st),
            None => by_stride.push((stride, vec![st])),
        }
    }
    b.for_(LoopKind::Parallel, 0, rows, |b, w| {
        let st = b.let_(Expr::Var(w).rem(Expr::Int(stages as i64)));
        for (stride, list) in by_stride {
            let cond = list
                .iter()
                .map(|&s| Expr::from(st).eq_(Expr::Int(s as i64)))
                .reduce(|acc, c| acc + c)
                .unwrap_or(Expr::Int(0));
            b.if_(cond, |b| {
                for_pairs(b, half, stride, |b, i, p, q| {
                    let at = w * half + i;
                    let t = b.let_(Expr::load(th, at.clone()));
                    let (s, c) = (b.let_(Expr::from(t).sin()), b.let_(Expr::from(t).cos()));
                    let (ip, iq) = (w * n + p, w * n + q);
                    let dp = b.let_(Expr::load(dg, ip.clone()));
                    let dq = b.let_(Expr::load(dg, iq.clone()));
                    let d = [0, 1, 2, 3].map(|k| Expr::load(dtw, at.clone() * 4 + k));
                    let [d0, d1, d2, d3] = d;
                    let gth = d0.clone() * (-(dp * s))
                        + d1.clone() * (-(dp * c))
                        + d2.clone() * (dq * c)
                        + d3.clone() * (-(dq * s));
                    b.store(dth, at, gth);
                    b.store(ddg, ip, d0 * c - d1 * s);
                    b.store(ddg, iq, d2 * s + d3 * c);
                });
            });
        }
    });
    Ok(OpLowering {
        kernels: vec![finish(b, a, kind("dib"))],
        scratch: vec![],
    })
}
