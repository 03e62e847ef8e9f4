//! Backward of the (grouped) matmul `y[M, G·N] = x[M, G·K] · wᵀ (+ bias)`
//! (`reference/kernels/linear_backward.rs`).

use super::Vjp;
use super::finish::{Args, finish};
use super::util::{const_dims, for_maybe, need, rows_text};
use crate::lower::site::{ArgRef, LowerError, OpLowering, numel_expr};
use bfly_ir::kernel::{BodyBuilder, Expr, GemmDesc, KernelKind, Local, LoopKind};

/// Grouped matmul geometry: `x[M, G·K]`, `w[G, N, K]`, `y[M, G·N]`.
struct Gemm {
    groups: u64,
    n: u64,
    k: u64,
}

fn gemm_dims(v: &Vjp) -> Result<Gemm, LowerError> {
    let (x, w) = (&v.fwd[0], &v.fwd[1]);
    let wd = const_dims(w, "matmul weight")?;
    let (groups, n, k) = match wd[..] {
        [n, k] => (1, n, k),
        [g, n, k] => (g, n, k),
        _ => {
            return Err(LowerError::new(format!(
                "matmul weight {w} must be [N, K] or [G, N, K]"
            )));
        }
    };
    need(x.last_const() == Some(groups * k), || {
        format!("matmul input {x} does not match weight {w}")
    })?;
    Ok(Gemm { groups, n, k })
}

/// Weight rows handled together: each load of an `x` (or `w`) element then feeds `RB`
/// products, and each `dx` element is read and written once per `RB` weight rows.
fn row_block(n: u64) -> i64 {
    [4, 2, 1]
        .into_iter()
        .find(|&rb| n.is_multiple_of(rb))
        .unwrap_or(1) as i64
}

/// `matmul.grad x, w [, bias], dy` → `dx, dw [, dbias]`, one kernel of two sections, both
/// walking blocks of `RB` weight rows (`RB` | N, so a block never straddles two groups):
///
/// 1. parallel over rows m: `dx[m, g·K + :] = Σ_j dy[m, g·N + j] · w[g, j, :]`, one
///    contiguous update of the `dx` row per block of `RB` weight rows;
/// 2. parallel over blocks of weight rows `(g, j..j+RB)`:
///    `dw[g, j, :] = Σ_m dy[m, g·N + j] · x[m, g·K + :]` (rows in order, contiguous `k`,
///    each `x` element loaded once for the block), and the bias gradient
///    `Σ_m dy[m, g·N + j]` in locals.
pub fn matmul(v: &Vjp) -> Result<OpLowering, LowerError> {
    let x = &v.fwd[0];
    let Gemm { groups, n, k } = gemm_dims(v)?;
    let rows = numel_expr(x.leading())?;
    let (g_i, n_i, k_i) = (groups as i64, n as i64, k as i64);
    let rb = row_block(n);
    let has_bias = v.fwd.len() > 2;

    let mut b = BodyBuilder::new();
    let mut a = Args::default();
    let xp = a.bind(&mut b, "x", x.dtype, ArgRef::Operand(0));
    let wp = a.bind(&mut b, "w", v.fwd[1].dtype, ArgRef::Operand(1));
    let dy = a.bind(&mut b, "dy", v.ups[0].dtype, v.up(0));
    let dx = a.bind(&mut b, "dx", x.dtype, v.grad_of(0)?);
    let dw = a.bind(&mut b, "dw", v.fwd[1].dtype, v.grad_of(1)?);
    let db = if has_bias {
        Some(a.bind(&mut b, "dbias", v.fwd[2].dtype, v.grad_of(2)?))
    } else {
        None
    };

    b.for_(LoopKind::Parallel, 0, rows.clone(), |b, m| {
        for_maybe(b, groups, |b, g| {
            let xrow = m * (g_i * k_i) + g.clone() * k_i;
            b.for_(LoopKind::Vector, 0, k_i, |b, kk| {
                b.store(dx, xrow.clone() + kk, Expr::f32(0.0));
            });
            b.serial(0, n_i / rb, |b, jb| {
                // Weight row j0 + r of group g is row g·N + j0 + r of w.
                let j0 = g.clone() * n_i + jb * rb;
                let d: Vec<Local> = (0..rb)
                    .map(|r| b.let_(Expr::load(dy, m * (g_i * n_i) + j0.clone() + r)))
                    .collect();
                b.for_(LoopKind::Vector, 0, k_i, |b, kk| {
                    let at = xrow.clone() + kk;
                    let sum = (0..rb)
                        .map(|r| d[r as usize] * Expr::load(wp, (j0.clone() + r) * k_i + kk))
                        .reduce(|acc, t| acc + t)
                        .unwrap_or(Expr::f32(0.0));
                    b.store(dx, at.clone(), Expr::load(dx, at) + sum);
                });
            });
        });
    });
    b.for_(LoopKind::Parallel, 0, g_i * n_i / rb, |b, blk| {
        // First weight row of the block (over all groups), and its group.
        let j0 = Expr::Var(blk) * rb;
        let g = if groups == 1 {
            Expr::Int(0)
        } else {
            j0.clone() / n_i
        };
        b.for_(LoopKind::Vector, 0, k_i, |b, kk| {
            for r in 0..rb {
                b.store(dw, (j0.clone() + r) * k_i + kk, Expr::f32(0.0));
            }
        });
        let acc: Vec<Local> = (0..rb).map(|_| b.let_(Expr::f32(0.0))).collect();
        b.serial(0, rows.clone(), |b, m| {
            let d: Vec<Local> = (0..rb)
                .map(|r| b.let_(Expr::load(dy, m * (g_i * n_i) + j0.clone() + r)))
                .collect();
            b.for_(LoopKind::Vector, 0, k_i, |b, kk| {
                let xv = b.let_(Expr::load(xp, m * (g_i * k_i) + g.clone() * k_i + kk));
                for (r, &dr) in d.iter().enumerate() {
                    let at = (j0.clone() + r as i64) * k_i + kk;
                    b.store(dw, at.clone(), Expr::load(dw, at) + dr * xv);
                }
            });
            if db.is_some() {
                for (&s, &dr) in acc.iter().zip(&d) {
                    b.assign(s, s + dr);
                }
            }
        });
        if let Some(db) = db {
            for (r, &s) in acc.iter().enumerate() {
                b.store(db, j0.clone() + r as i64, s);
            }
        }
    });

    let epilogue = if has_bias {
        vec!["bias".into()]
    } else {
        vec![]
    };
    let kind = KernelKind::Backward(Box::new(KernelKind::Gemm(GemmDesc {
        m: rows_text(x.leading()),
        n,
        k,
        groups,
        dtype: x.dtype,
        epilogue,
    })));
    Ok(OpLowering {
        kernels: vec![finish(b, a, kind)],
        scratch: vec![],
    })
}
