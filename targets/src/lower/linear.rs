//! Dense products: `matmul` (plain and grouped `[G, N, K]`), the unfolded `lora` side path
//! and the int8 `qmatmul`.
//!
//! Loop nest (`y[M, N] = x[M, K] · w[N, K]ᵀ`): parallel over tiles of output columns (so a
//! decode step with M = 1 still splits over threads), then rows, then a vector reduction over
//! k, which is contiguous in both x and w. A tile of 4 columns keeps 4 accumulators and loads
//! each x element once for all of them. Bias and epilogue are applied in the store.

use super::emit::{Kb, bind};
use super::epilogue::Epilogue;
use super::shape::{R, arity, const_dims, cprod, err, int, operand, result, rows_text, view};
use super::site::{ArgRef, OpLowering, OpSite};
use bfly_ir::DType;
use bfly_ir::kernel::{BodyBuilder, Expr, GemmDesc, KernelKind, LoopKind};

/// One GEMM section: `acc[row, col] = Σ_k x[row, g·k + kk] · w[col, kk]` for output columns
/// `col = g·n + j`, with `groups` block-diagonal groups.
pub(crate) struct Gemm {
    pub x: u32,
    pub w: u32,
    pub rows: Expr,
    pub n: i64,
    pub k: i64,
    pub groups: i64,
    /// int8 operands: the accumulator is an int.
    pub int: bool,
}

/// Columns per accumulator tile.
fn tile(n: i64) -> i64 {
    match n {
        n if n % 4 == 0 => 4,
        n if n % 2 == 0 => 2,
        _ => 1,
    }
}

/// Emits the GEMM as one parallel section; `store(b, row, col, acc)` writes each result.
pub(crate) fn gemm_section(
    b: &mut BodyBuilder,
    g: &Gemm,
    store: &mut dyn FnMut(&mut BodyBuilder, Expr, Expr, Expr),
) {
    let nt = tile(g.n);
    let tiles = g.n / nt;
    let (n, k, groups) = (g.n, g.k, g.groups);
    b.for_(LoopKind::Parallel, 0, groups * tiles, |b, j| {
        let (gi, n0) = if groups == 1 {
            (Expr::Int(0), j * nt)
        } else {
            (j / tiles, (j % tiles) * nt)
        };
        let col0 = bind(b, gi.clone() * n + n0);
        let wrow = bind(b, col0.clone() * k);
        b.serial(0, g.rows.clone(), |b, m| {
            let xrow = bind(b, m * (groups * k) + gi.clone() * k);
            let zero = if g.int { Expr::Int(0) } else { Expr::F32(0.0) };
            let accs: Vec<_> = (0..nt).map(|_| b.let_(zero.clone())).collect();
            b.for_(LoopKind::Vector, 0, k, |b, kk| {
                let xv = b.let_(Expr::load(g.x, xrow.clone() + kk));
                for (t, &acc) in accs.iter().enumerate() {
                    let wv = Expr::load(g.w, wrow.clone() + (t as i64 * k) + kk);
                    b.assign(acc, acc + Expr::Local(xv) * wv);
                }
            });
            for (t, &acc) in accs.iter().enumerate() {
                store(b, Expr::Var(m), col0.clone() + t as i64, Expr::Local(acc));
            }
        });
    });
}

/// `(groups, n, k)` of a `[N, K]` or `[G, N, K]` weight.
fn weight_dims(site: &OpSite, w: &bfly_ir::Type) -> R<(i64, i64, i64)> {
    let d = const_dims(site, w, "weight")?;
    let (g, n, k) = match d[..] {
        [n, k] => (1, n, k),
        [g, n, k] => (g, n, k),
        _ => return err(site, format!("weight {w} must be [N, K] or [G, N, K]")),
    };
    // Every product the kernel forms (g·n·k at most) must fit an index.
    cprod(site, &[g, n, k])?;
    Ok((int(site, g)?, int(site, n)?, int(site, k)?))
}

pub fn matmul(site: &OpSite, epi: &Epilogue) -> R<OpLowering> {
    arity(site, epi.base, 2, 3)?;
    let (x, w, y) = (operand(site, 0)?, operand(site, 1)?, result(site, 0)?);
    let (groups, n, k) = weight_dims(site, w)?;
    let (rows, kx) = view(x)?;
    if kx as i128 != i128::from(groups) * i128::from(k) || y.dims.len() != x.dims.len() {
        return err(site, format!("input {x} does not match weight {w}"));
    }
    let mut kb = Kb::new();
    let px = kb.arg("x", x.dtype, ArgRef::Operand(0));
    let pw = kb.arg("w", w.dtype, ArgRef::Operand(1));
    let bias = if epi.base == 3 {
        Some(kb.arg("bias", operand(site, 2)?.dtype, ArgRef::Operand(2)))
    } else {
        None
    };
    let ep = epi.bind(&mut kb, site, y)?;
    let py = kb.arg("y", y.dtype, ArgRef::Result(0));
    let gn = groups * n;
    let spec = Gemm {
        x: px,
        w: pw,
        rows,
        n,
        k,
        groups,
        int: false,
    };
    gemm_section(&mut kb.b, &spec, &mut |b, row, col, acc| {
        let v = match bias {
            Some(p) => acc + Expr::load(p, col.clone()),
            None => acc,
        };
        let v = ep.apply(b, v, &row, &col);
        b.store(py, row * gn + col, v);
    });
    let mut names: Vec<String> = bias.map(|_| "bias".to_string()).into_iter().collect();
    names.extend(epi.names());
    let desc = GemmDesc {
        m: rows_text(x.leading()),
        n: n as u64,
        k: k as u64,
        groups: groups as u64,
        dtype: x.dtype,
        epilogue: names,
    };
    Ok(OpLowering {
        kernels: vec![kb.finish(KernelKind::Gemm(desc))],
        scratch: Vec::new(),
    })
}

/// `lora x, a[r, K], b[N, r]` = `scale · b·(a·x)`: two GEMM sections in one kernel, the
/// rank-r intermediate in scratch.
pub fn lora(site: &OpSite, scale: f64) -> R<OpLowering> {
    arity(site, site.operands.len(), 3, 3)?;
    let (x, a, bw, y) = (
        operand(site, 0)?,
        operand(site, 1)?,
        operand(site, 2)?,
        result(site, 0)?,
    );
    let (ad, bd) = (
        const_dims(site, a, "lora A")?,
        const_dims(site, bw, "lora B")?,
    );
    let (rows, k) = view(x)?;
    let ([r, ka], [n, rb]) = (&ad[..], &bd[..]) else {
        return err(site, "lora A and B must be rank 2");
    };
    if *ka != k || rb != r {
        return err(site, format!("lora shapes {x}, {a}, {bw} disagree"));
    }
    cprod(site, &[*r, *n, k])?;
    let (r, n, k) = (int(site, *r)?, int(site, *n)?, int(site, k)?);
    let mut kb = Kb::new();
    let px = kb.arg("x", x.dtype, ArgRef::Operand(0));
    let pa = kb.arg("a", a.dtype, ArgRef::Operand(1));
    let pb = kb.arg("b", bw.dtype, ArgRef::Operand(2));
    let ps = kb.arg("ax", DType::F32, ArgRef::Scratch(0));
    let py = kb.arg("y", y.dtype, ArgRef::Result(0));
    let down = Gemm {
        x: px,
        w: pa,
        rows: rows.clone(),
        n: r,
        k,
        groups: 1,
        int: false,
    };
    gemm_section(&mut kb.b, &down, &mut |b, row, col, acc| {
        b.store(ps, row * r + col, acc);
    });
    let up = Gemm {
        x: ps,
        w: pb,
        rows,
        n,
        k: r,
        groups: 1,
        int: false,
    };
    let factor = super::emit::f32c(scale);
    gemm_section(&mut kb.b, &up, &mut |b, row, col, acc| {
        b.store(py, row * n + col, acc * factor.clone());
    });
    let mut dims = x.leading().to_vec();
    dims.push(bfly_ir::Dim::Const(r as u64));
    Ok(OpLowering {
        kernels: vec![kb.finish(KernelKind::Other { op: "lora".into() })],
        scratch: vec![(DType::F32, dims)],
    })
}

/// `qmatmul xq, xs, wq, ws [, bias]`: int8 products summed in an int accumulator, then
/// `acc · xs[row] · ws[col] (+ bias)` in the store, as the reference orders it.
pub fn qmatmul(site: &OpSite, epi: &Epilogue) -> R<OpLowering> {
    arity(site, epi.base, 4, 5)?;
    let (xq, xs, wq, ws, y) = (
        operand(site, 0)?,
        operand(site, 1)?,
        operand(site, 2)?,
        operand(site, 3)?,
        result(site, 0)?,
    );
    let wd = const_dims(site, wq, "weight")?;
    let [n, k] = wd[..] else {
        return err(site, format!("weight {wq} must be [N, K]"));
    };
    let (rows, kx) = view(xq)?;
    if kx != k {
        return err(site, format!("input {xq} does not match weight {wq}"));
    }
    cprod(site, &[n, k])?;
    let (n, k) = (int(site, n)?, int(site, k)?);
    let mut kb = Kb::new();
    let pxq = kb.arg("xq", xq.dtype, ArgRef::Operand(0));
    let pxs = kb.arg("xs", xs.dtype, ArgRef::Operand(1));
    let pwq = kb.arg("wq", wq.dtype, ArgRef::Operand(2));
    let pws = kb.arg("ws", ws.dtype, ArgRef::Operand(3));
    let bias = if epi.base == 5 {
        Some(kb.arg("bias", operand(site, 4)?.dtype, ArgRef::Operand(4)))
    } else {
        None
    };
    let ep = epi.bind(&mut kb, site, y)?;
    let py = kb.arg("y", y.dtype, ArgRef::Result(0));
    let spec = Gemm {
        x: pxq,
        w: pwq,
        rows,
        n,
        k,
        groups: 1,
        int: true,
    };
    gemm_section(&mut kb.b, &spec, &mut |b, row, col, acc| {
        let v = acc.to_f32() * Expr::load(pxs, row.clone()) * Expr::load(pws, col.clone());
        let v = match bias {
            Some(p) => v + Expr::load(p, col.clone()),
            None => v,
        };
        let v = ep.apply(b, v, &row, &col);
        b.store(py, row * n + col, v);
    });
    let mut names = vec!["dequant".to_string()];
    names.extend(bias.map(|_| "bias".to_string()));
    names.extend(epi.names());
    let desc = GemmDesc {
        m: rows_text(xq.leading()),
        n: n as u64,
        k: k as u64,
        groups: 1,
        dtype: DType::I8,
        epilogue: names,
    };
    Ok(OpLowering {
        kernels: vec![kb.finish(KernelKind::QGemm(desc))],
        scratch: Vec::new(),
    })
}
