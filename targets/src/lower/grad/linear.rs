//! Backward of the embedding lookup and the LoRA side path
//! (`reference/kernels/linear_backward.rs`); the matmul backward is in `matmul`.

use super::Vjp;
use super::finish::{Args, finish};
use super::util::{and, const_dims, f32c, for_col_chunks, need};
use crate::lower::site::{ArgRef, LowerError, OpLowering, numel_expr};
use bfly_ir::kernel::{BodyBuilder, Expr, KernelKind, LoopKind};
use bfly_ir::{DType, Dim};

/// `embed.grad tokens, table, dy` → `dtable`: a deterministic scatter-add.
///
/// Parallel over chunks of table columns; each iteration zeroes its columns of every row,
/// then walks the tokens in order adding `dy[m, cols]` into row `tokens[m]`, so a repeated
/// token sums its rows in token order and no two threads touch one element. Ids outside
/// `0..vocab` add nothing (the reference rejects them; a kernel cannot fail).
pub fn embed(v: &Vjp) -> Result<OpLowering, LowerError> {
    let (tok, table) = (&v.fwd[0], &v.fwd[1]);
    let td = const_dims(table, "embedding table")?;
    let [vocab, d] = td[..] else {
        return Err(LowerError::new(format!(
            "embedding table {table} must be rank 2"
        )));
    };
    let rows = numel_expr(&tok.dims)?;
    let (vocab_i, d_i) = (vocab as i64, d as i64);

    let mut b = BodyBuilder::new();
    let mut a = Args::default();
    let tp = a.bind(&mut b, "tokens", tok.dtype, ArgRef::Operand(0));
    let dy = a.bind(&mut b, "dy", v.ups[0].dtype, v.up(0));
    let dt = a.bind(&mut b, "dtable", table.dtype, v.grad_of(1)?);
    for_col_chunks(&mut b, d, |b, lo, hi| {
        b.serial(0, vocab_i, |b, r| {
            b.for_(LoopKind::Vector, lo.clone(), hi.clone(), |b, j| {
                b.store(dt, r * d_i + j, Expr::f32(0.0));
            });
        });
        b.serial(0, rows, |b, m| {
            let t = b.let_(Expr::load(tp, Expr::Var(m)));
            let ok = and(Expr::int(0).le(t.into()), Expr::from(t).lt(vocab_i.into()));
            b.if_(ok, |b| {
                b.for_(LoopKind::Vector, lo, hi, |b, j| {
                    let at = t * d_i + j;
                    let sum = Expr::load(dt, at.clone()) + Expr::load(dy, m * d_i + j);
                    b.store(dt, at, sum);
                });
            });
        });
    });
    let kind = KernelKind::Backward(Box::new(KernelKind::Embed { vocab, dim: d }));
    Ok(OpLowering {
        kernels: vec![finish(b, a, kind)],
        scratch: vec![],
    })
}

/// `lora.grad x, A[r, K], B[N, r], dy` → `dx, dA, dB` for `y = scale · B(A x)`.
///
/// With `u = A x` recomputed and `gu = scale · dy B` (both `[M, r]` scratch):
/// 1. parallel over rows m: `u[m]`, `gu[m]` and `dx[m] = gu[m] A` (axpys over the rank);
/// 2. parallel over rows j of B: `dB[j, :] = Σ_m scale·dy[m, j] · u[m, :]`;
/// 3. parallel over rows i of A: `dA[i, :] = Σ_m gu[m, i] · x[m, :]`.
pub fn lora(v: &Vjp, scale: f64) -> Result<OpLowering, LowerError> {
    let (x, at, bt) = (&v.fwd[0], &v.fwd[1], &v.fwd[2]);
    let ad = const_dims(at, "lora A")?;
    let bd = const_dims(bt, "lora B")?;
    let (&[rank, ak], &[n, br]) = (&ad[..], &bd[..]) else {
        return Err(LowerError::new("lora A and B must be rank 2"));
    };
    need(x.last_const() == Some(ak) && br == rank, || {
        format!("lora A {at} and B {bt} do not fit input {x}")
    })?;
    let k = ak;
    let rows = numel_expr(x.leading())?;
    let (r_i, k_i, n_i) = (rank as i64, k as i64, n as i64);
    let s = f32c(scale);

    let mut b = BodyBuilder::new();
    let mut a = Args::default();
    let xp = a.bind(&mut b, "x", x.dtype, ArgRef::Operand(0));
    let ap = a.bind(&mut b, "a", at.dtype, ArgRef::Operand(1));
    let bp = a.bind(&mut b, "b", bt.dtype, ArgRef::Operand(2));
    let dy = a.bind(&mut b, "dy", v.ups[0].dtype, v.up(0));
    let u = a.bind(&mut b, "u", DType::F32, ArgRef::Scratch(0));
    let gu = a.bind(&mut b, "gu", DType::F32, ArgRef::Scratch(1));
    let dx = a.bind(&mut b, "dx", x.dtype, v.grad_of(0)?);
    let da = a.bind(&mut b, "da", at.dtype, v.grad_of(1)?);
    let dbp = a.bind(&mut b, "db", bt.dtype, v.grad_of(2)?);

    b.for_(LoopKind::Parallel, 0, rows.clone(), |b, m| {
        b.serial(0, r_i, |b, i| {
            let acc = b.let_(Expr::f32(0.0));
            b.for_(LoopKind::Vector, 0, k_i, |b, kk| {
                let prod = Expr::load(ap, i * k_i + kk) * Expr::load(xp, m * k_i + kk);
                b.assign(acc, acc + prod);
            });
            b.store(u, m * r_i + i, acc);
        });
        b.for_(LoopKind::Vector, 0, r_i, |b, i| {
            b.store(gu, m * r_i + i, Expr::f32(0.0));
        });
        b.serial(0, n_i, |b, j| {
            let d = b.let_(Expr::load(dy, m * n_i + j) * s.clone());
            b.for_(LoopKind::Vector, 0, r_i, |b, i| {
                let at = m * r_i + i;
                let sum = Expr::load(gu, at.clone()) + d * Expr::load(bp, j * r_i + i);
                b.store(gu, at, sum);
            });
        });
        b.for_(LoopKind::Vector, 0, k_i, |b, kk| {
            b.store(dx, m * k_i + kk, Expr::f32(0.0));
        });
        b.serial(0, r_i, |b, i| {
            let g = b.let_(Expr::load(gu, m * r_i + i));
            b.for_(LoopKind::Vector, 0, k_i, |b, kk| {
                let at = m * k_i + kk;
                let sum = Expr::load(dx, at.clone()) + g * Expr::load(ap, i * k_i + kk);
                b.store(dx, at, sum);
            });
        });
    });
    b.for_(LoopKind::Parallel, 0, n_i, |b, j| {
        b.for_(LoopKind::Vector, 0, r_i, |b, i| {
            b.store(dbp, j * r_i + i, Expr::f32(0.0));
        });
        b.serial(0, rows.clone(), |b, m| {
            let d = b.let_(Expr::load(dy, m * n_i + j) * s.clone());
            b.for_(LoopKind::Vector, 0, r_i, |b, i| {
                let at = j * r_i + i;
                let sum = Expr::load(dbp, at.clone()) + d * Expr::load(u, m * r_i + i);
                b.store(dbp, at, sum);
            });
        });
    });
    b.for_(LoopKind::Parallel, 0, r_i, |b, i| {
        b.for_(LoopKind::Vector, 0, k_i, |b, kk| {
            b.store(da, i * k_i + kk, Expr::f32(0.0));
        });
        b.serial(0, rows.clone(), |b, m| {
            let g = b.let_(Expr::load(gu, m * r_i + i));
            b.for_(LoopKind::Vector, 0, k_i, |b, kk| {
                let at = i * k_i + kk;
                let sum = Expr::load(da, at.clone()) + g * Expr::load(xp, m * k_i + kk);
                b.store(da, at, sum);
            });
        });
    });

    let mut per_row: Vec<Dim> = x.leading().to_vec();
    per_row.push(Dim::Const(rank));
    let kind = KernelKind::Backward(Box::new(KernelKind::Other { op: "lora".into() }));
    Ok(OpLowering {
        kernels: vec![finish(b, a, kind)],
        scratch: vec![(DType::F32, per_row.clone()), (DType::F32, per_row)],
    })
}
