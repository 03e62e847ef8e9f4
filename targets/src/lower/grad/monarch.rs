//! Backward of the monarch layer (`reference/kernels/monarch_backward.rs`), in its index
//! conventions: `z[b·k + a] = Σ_j w1[a, b, j]·x[a·p + j]`, `out[f·l + e] = Σ_j w2[e, f, j]·
//! z[e·r + j]`, input zero-padded to `k·p`, output truncated to `n_out`.
//!
//! Sections: (1) parallel over rows `(m, g)`: recompute `z`, form `gz = w2ᵀ·dy` and
//! `dx = w1ᵀ·gz` (both intermediates kept in scratch); (2) parallel over rows `(g, e, f)` of
//! `w2`: `dw2 = Σ_m dy ⊗ z`; (3) parallel over rows `(g, a, b)` of `w1`: `dw1 = Σ_m gz ⊗ x`;
//! (4) with a bias, column sums of `dy`. Weight sums walk the rows in order.

use super::Vjp;
use super::finish::{Args, finish};
use super::util::{bias_sums, const_dims, need};
use crate::lower::site::{ArgRef, LowerError, OpLowering, numel_expr};
use bfly_ir::kernel::{BodyBuilder, Expr, KernelKind, LoopKind};
use bfly_ir::{DType, Dim};
use std::ops::Rem;

pub fn monarch(v: &Vjp, n_in: u64, n_out: u64) -> Result<OpLowering, LowerError> {
    let (x, w1t, w2t) = (&v.fwd[0], &v.fwd[1], &v.fwd[2]);
    let d1 = const_dims(w1t, "monarch w1")?;
    let d2 = const_dims(w2t, "monarch w2")?;
    let (&[groups, k, q, p], &[g2, l, s, r]) = (&d1[..], &d2[..]) else {
        return Err(LowerError::new("monarch w1 and w2 must be rank 4"));
    };
    need(
        groups == g2
            && k * q == l * r
            && (1..=k * p).contains(&n_in)
            && (1..=l * s).contains(&n_out)
            && x.last_const() == Some(groups * n_in),
        || {
            format!(
                "monarch w1 {w1t}, w2 {w2t} and input {x} do not fit in = {n_in}, out = {n_out}"
            )
        },
    )?;
    let rows = numel_expr(x.leading())?;
    let has_bias = v.fwd.len() > 3;
    let [gi, k, q, p, l, s, r, n_in, n_out] =
        [groups, k, q, p, l, s, r, n_in, n_out].map(|d| d as i64);
    let kq = k * q;
    let (slab1, slab2) = (k * q * p, l * s * r);

    let mut b = BodyBuilder::new();
    let mut a = Args::default();
    let xp = a.bind(&mut b, "x", x.dtype, ArgRef::Operand(0));
    let w1 = a.bind(&mut b, "w1", w1t.dtype, ArgRef::Operand(1));
    let w2 = a.bind(&mut b, "w2", w2t.dtype, ArgRef::Operand(2));
    let dy = a.bind(&mut b, "dy", v.ups[0].dtype, v.up(0));
    let z = a.bind(&mut b, "z", DType::F32, ArgRef::Scratch(0));
    let gz = a.bind(&mut b, "gz", DType::F32, ArgRef::Scratch(1));
    let dx = a.bind(&mut b, "dx", x.dtype, v.grad_of(0)?);
    let dw1 = a.bind(&mut b, "dw1", w1t.dtype, v.grad_of(1)?);
    let dw2 = a.bind(&mut b, "dw2", w2t.dtype, v.grad_of(2)?);
    let db = if has_bias {
        Some(a.bind(&mut b, "dbias", v.fwd[3].dtype, v.grad_of(3)?))
    } else {
        None
    };
    // Valid (unpadded) inputs of w1 block a: j < min(p, n_in − a·p).
    let valid = move |blk: Expr| Expr::Int(p).min(Expr::Int(n_in) - blk * p);

    b.for_(LoopKind::Parallel, 0, rows.clone() * gi, |b, row| {
        let g = Expr::Var(row).rem(Expr::Int(gi));
        let (w1o, w2o) = (g.clone() * slab1, g * slab2);
        b.serial(0, k, |b, ai| {
            b.serial(0, q, |b, bi| {
                let acc = b.let_(Expr::f32(0.0));
                b.for_(LoopKind::Vector, 0, valid(ai.into()), |b, j| {
                    let w = Expr::load(w1, w1o.clone() + (ai * q + bi) * p + j);
                    b.assign(acc, acc + w * Expr::load(xp, row * n_in + ai * p + j));
                });
                b.store(z, row * kq + bi * k + ai, acc);
            });
        });
        b.serial(0, l, |b, e| {
            b.for_(LoopKind::Vector, 0, r, |b, j| {
                b.store(gz, row * kq + e * r + j, Expr::f32(0.0));
            });
            // Outputs f·l + e ≥ n_out were truncated: they carry no gradient.
            let f_end = (Expr::Int(n_out + l - 1) - e) / l;
            b.serial(0, f_end, |b, f| {
                let go = b.let_(Expr::load(dy, row * n_out + f * l + e));
                b.for_(LoopKind::Vector, 0, r, |b, j| {
                    let at = row * kq + e * r + j;
                    let w = Expr::load(w2, w2o.clone() + (e * s + f) * r + j);
                    b.store(gz, at.clone(), Expr::load(gz, at) + w * go);
                });
            });
        });
        b.serial(0, k, |b, ai| {
            b.for_(LoopKind::Vector, 0, valid(ai.into()), |b, j| {
                b.store(dx, row * n_in + ai * p + j, Expr::f32(0.0));
            });
            b.serial(0, q, |b, bi| {
                let gzv = b.let_(Expr::load(gz, row * kq + bi * k + ai));
                b.for_(LoopKind::Vector, 0, valid(ai.into()), |b, j| {
                    let at = row * n_in + ai * p + j;
                    let w = Expr::load(w1, w1o.clone() + (ai * q + bi) * p + j);
                    b.store(dx, at.clone(), Expr::load(dx, at) + w * gzv);
                });
            });
        });
    });

    b.for_(LoopKind::Parallel, 0, gi * l * s, |b, idx| {
        let g = Expr::Var(idx) / (l * s);
        let e = (Expr::Var(idx) / s).rem(Expr::Int(l));
        let f = Expr::Var(idx).rem(Expr::Int(s));
        b.for_(LoopKind::Vector, 0, r, |b, j| {
            b.store(dw2, idx * r + j, Expr::f32(0.0));
        });
        let col = f * l + e.clone();
        b.if_(col.clone().lt(Expr::Int(n_out)), |b| {
            b.serial(0, rows.clone(), |b, m| {
                let rg = m * gi + g.clone();
                let go = b.let_(Expr::load(dy, rg.clone() * n_out + col));
                b.for_(LoopKind::Vector, 0, r, |b, j| {
                    let at = idx * r + j;
                    let zv = Expr::load(z, rg * kq + e * r + j);
                    b.store(dw2, at.clone(), Expr::load(dw2, at) + go * zv);
                });
            });
        });
    });

    b.for_(LoopKind::Parallel, 0, gi * k * q, |b, idx| {
        let g = Expr::Var(idx) / (k * q);
        let ai = (Expr::Var(idx) / q).rem(Expr::Int(k));
        let bi = Expr::Var(idx).rem(Expr::Int(q));
        b.for_(LoopKind::Vector, 0, p, |b, j| {
            b.store(dw1, idx * p + j, Expr::f32(0.0));
        });
        b.serial(0, rows.clone(), |b, m| {
            let rg = m * gi + g;
            let gzv = b.let_(Expr::load(gz, rg.clone() * kq + bi * k + ai.clone()));
            b.for_(LoopKind::Vector, 0, valid(ai.clone()), |b, j| {
                let at = idx * p + j;
                let xv = Expr::load(xp, rg * n_in + ai * p + j);
                b.store(dw1, at.clone(), Expr::load(dw1, at) + gzv * xv);
            });
        });
    });

    if let Some(db) = db {
        bias_sums(&mut b, dy, db, rows, (gi * n_out) as u64);
    }

    let mut per_row: Vec<Dim> = x.leading().to_vec();
    per_row.push(Dim::Const((gi * kq) as u64));
    let kind = KernelKind::Backward(Box::new(KernelKind::Monarch {
        n_in: n_in as u64,
        n_out: n_out as u64,
        groups,
        epilogue: if has_bias {
            vec!["bias".into()]
        } else {
            vec![]
        },
    }));
    Ok(OpLowering {
        kernels: vec![finish(b, a, kind)],
        scratch: vec![(DType::F32, per_row.clone()), (DType::F32, per_row)],
    })
}
