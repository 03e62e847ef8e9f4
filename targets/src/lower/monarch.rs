//! Monarch layer `M = P₂ · BlockDiag(w2) · P₁ · BlockDiag(w1)` (DESIGN §4), block-diagonal
//! over groups, with the reference's exact index conventions:
//! `z[b·k + a] = Σ_j w1[a, b, j] · x[a·p + j]` (x zero-padded to k·p), then
//! `out[f·l + e] = Σ_j w2[e, f, j] · z[e·r + j]`, truncated to `out`.
//!
//! Loop nest: parallel over rows; per group, the k·q first-stage dot products into a per-row
//! scratch `z`, then one dot product per output (vector reductions over the block width).

use super::emit::{Kb, maybe_loop};
use super::epilogue::Epilogue;
use super::shape::{R, arity, const_dims, cprod, err, int, operand, result, view};
use super::site::{ArgRef, OpLowering, OpSite};
use bfly_ir::kernel::{Expr, KernelKind, LoopKind};
use bfly_ir::{DType, Dim};

pub fn lower(site: &OpSite, n_in: u64, n_out: u64, epi: &Epilogue) -> R<OpLowering> {
    arity(site, epi.base, 3, 4)?;
    let (x, w1, w2, y) = (
        operand(site, 0)?,
        operand(site, 1)?,
        operand(site, 2)?,
        result(site, 0)?,
    );
    let (a, b) = (
        const_dims(site, w1, "monarch w1")?,
        const_dims(site, w2, "monarch w2")?,
    );
    let (&[groups, k, q, p], &[g2, l, s, r]) = (&a[..], &b[..]) else {
        return err(site, "monarch weights must be rank 4");
    };
    let kq = cprod(site, &[k, q])?;
    let (kp, ls) = (cprod(site, &[k, p])?, cprod(site, &[l, s])?);
    if groups != g2 || kq != cprod(site, &[l, r])? || n_in > kp || n_out > ls || l == 0 {
        return err(
            site,
            format!("monarch weights {w1}, {w2} do not fit in = {n_in}, out = {n_out}"),
        );
    }
    let (rows, xk) = view(x)?;
    if Some(xk) != groups.checked_mul(n_in) {
        return err(site, format!("input {x} does not have groups·in features"));
    }
    cprod(site, &[groups, kq, p])?;
    cprod(site, &[groups, ls, r])?;
    let gn_out = int(site, cprod(site, &[groups, n_out])?)?;
    let (gn_in, kq) = (int(site, xk)?, int(site, kq)?);
    let (k, q, p, l, s, r) = (
        int(site, k)?,
        int(site, q)?,
        int(site, p)?,
        int(site, l)?,
        int(site, s)?,
        int(site, r)?,
    );
    let (n_in, n_out) = (int(site, n_in)?, int(site, n_out)?);

    let mut kb = Kb::new();
    let px = kb.arg("x", x.dtype, ArgRef::Operand(0));
    let p1 = kb.arg("w1", w1.dtype, ArgRef::Operand(1));
    let p2 = kb.arg("w2", w2.dtype, ArgRef::Operand(2));
    let bias = if epi.base == 4 {
        Some(kb.arg("bias", operand(site, 3)?.dtype, ArgRef::Operand(3)))
    } else {
        None
    };
    let ep = epi.bind(&mut kb, site, y)?;
    let py = kb.arg("y", y.dtype, ArgRef::Result(0));
    let pz = kb.arg("z", DType::F32, ArgRef::Scratch(0));
    kb.b.for_(LoopKind::Parallel, 0, rows, |bb, row| {
        maybe_loop(bb, groups, |bb, gi| {
            let xb = bb.let_(row * gn_in + gi.clone() * n_in);
            let zb = bb.let_((row * groups as i64 + gi.clone()) * kq);
            bb.serial(0, k, |bb, ai| {
                // Inputs past n_in are the zero padding: they add nothing to the sums.
                let end = if n_in == k * p {
                    Expr::Int(p)
                } else {
                    Expr::Int(p).min(Expr::Int(n_in) - ai * p)
                };
                bb.serial(0, q, |bb, bi| {
                    let wb = bb.let_(((gi.clone() * k + ai) * q + bi) * p);
                    let acc = bb.let_(Expr::f32(0.0));
                    bb.for_(LoopKind::Vector, 0, end, |bb, j| {
                        let v = Expr::load(p1, wb + j) * Expr::load(px, xb + ai * p + j);
                        bb.assign(acc, acc + v);
                    });
                    bb.store(pz, zb + bi * k + ai, acc);
                });
            });
            bb.serial(0, n_out, |bb, o| {
                let e = bb.let_(o % l);
                let f = bb.let_(o / l);
                let wb = bb.let_(((gi.clone() * l + e) * s + f) * r);
                let acc = bb.let_(Expr::f32(0.0));
                bb.for_(LoopKind::Vector, 0, r, |bb, j| {
                    let v = Expr::load(p2, wb + j) * Expr::load(pz, zb + e * r + j);
                    bb.assign(acc, acc + v);
                });
                let col = gi.clone() * n_out + o;
                let v = match bias {
                    Some(pb) => acc + Expr::load(pb, col.clone()),
                    None => Expr::Local(acc),
                };
                let v = ep.apply(bb, v, &Expr::Var(row), &col);
                bb.store(py, row * gn_out + col, v);
            });
        });
    });
    let mut zdims = x.leading().to_vec();
    zdims.push(Dim::Const(groups * kq as u64));
    let mut names: Vec<String> = bias.map(|_| "bias".to_string()).into_iter().collect();
    names.extend(epi.names());
    let kind = KernelKind::Monarch {
        n_in: n_in as u64,
        n_out: n_out as u64,
        groups,
        epilogue: names,
    };
    Ok(OpLowering {
        kernels: vec![kb.finish(kind)],
        scratch: vec![(DType::F32, zdims)],
    })
}
