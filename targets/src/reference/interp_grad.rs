//! Gradient ops (`OP.grad`) and optimizer updates (`sgd`, `adamw`) of the reference
//! interpreter.
//!
//! Each VJP here is only an adapter: it checks the operand and upstream shapes, calls the f64
//! backward kernel of `kernels/*_backward.rs` (where the math lives and is tested against finite
//! differences), and returns one gradient per **float** forward operand, in operand order, typed
//! like that operand — exactly the results `infer_types` declares for `Op::Grad`. Shapes are
//! checked here rather than trusted because the kernels only `debug_assert!` them and a
//! hand-written graph may be evaluated without being verified.

use super::interp::{
    EvalError, broadcast_indices, concat, concat_shape, fail, floats, ints, operand_count,
    seq_view, slice_axis, store, transpose, with_last,
};
use super::kernels::{
    attention_backward as attn, butterfly as bf, elementwise_backward as ew,
    linear_backward as lin, loss_backward as loss, monarch_backward as mon, norm_backward as norm,
    ternary_backward,
};
use super::tensor::{Data, Tensor};
use bfly_ir::Op;

/// The gradient of each forward operand, in operand order; `None` for an integer operand
/// (tokens, targets), which is not differentiable and gets no result.
type Grads = Vec<Option<Vec<f64>>>;

/// Evaluates `inner.grad`: `args` are the forward operands followed by one upstream gradient
/// per forward result.
pub(super) fn eval_grad(inner: &Op, args: &[&Tensor]) -> Result<Vec<Tensor>, EvalError> {
    if !inner.is_differentiable() {
        return fail(format!("`{}` has no gradient", inner.name()));
    }
    let Some(split) = args.len().checked_sub(inner.num_results()) else {
        return fail(format!(
            "needs {} upstream gradients after the forward operands, found {} operands in all",
            inner.num_results(),
            args.len()
        ));
    };
    let (fwd, ups) = args.split_at(split);
    let (lo, hi) = inner.arity();
    if fwd.len() < lo || fwd.len() > hi {
        return fail(format!(
            "`{}` takes {} forward operands, found {}",
            inner.name(),
            operand_count(lo, hi),
            fwd.len()
        ));
    }
    let grads = match inner {
        Op::Embed => embed(fwd, ups)?,
        Op::Matmul => matmul(fwd, ups)?,
        Op::Butterfly {
            n_in,
            n_out,
            stride,
        } => butterfly(
            fwd,
            ups,
            *n_in as usize,
            *n_out as usize,
            stride.is_increasing(),
        )?,
        Op::Monarch { n_in, n_out } => monarch(fwd, ups, *n_in as usize, *n_out as usize)?,
        Op::GivensTwiddles | Op::DibTwiddles { .. } | Op::TernaryTwiddles { .. } => {
            twiddle_producer(inner, fwd, ups)?
        }
        Op::Lora { scale } => lora(fwd, ups, *scale)?,
        Op::Add | Op::Sub | Op::Mul => binary(inner, fwd, ups)?,
        Op::Neg | Op::Exp | Op::Silu | Op::Gelu | Op::Sigmoid | Op::Scale { .. } => {
            unary(inner, fwd, ups)?
        }
        Op::RmsNorm { .. } | Op::LayerNorm { .. } | Op::Softmax => row_norm(inner, fwd, ups)?,
        Op::Rope { heads, base } => rope(fwd, ups, *heads as usize, *base)?,
        Op::CausalAttention { heads, kv_heads } => {
            attention(fwd, ups, *heads as usize, *kv_heads as usize)?
        }
        Op::Reshape { .. }
        | Op::Transpose { .. }
        | Op::Split { .. }
        | Op::Concat { .. }
        | Op::Cast { .. } => layout(inner, fwd, ups)?,
        Op::CrossEntropy => cross_entropy(fwd, ups)?,
        // Listed rather than `_` so a new op must decide here whether it has a gradient.
        Op::Input { .. }
        | Op::Param(_)
        | Op::HadamardTwiddles { .. }
        | Op::Quantize
        | Op::Dequantize
        | Op::QMatmul
        | Op::Fill { .. }
        | Op::Grad(_)
        | Op::Sgd { .. }
        | Op::AdamW { .. } => return fail(format!("`{}` has no gradient", inner.name())),
    };
    pack(fwd, grads)
}

/// One result per float operand, shaped and typed like it (f16 gradients are rounded to f16,
/// as every f16 result of the interpreter is).
fn pack(fwd: &[&Tensor], grads: Grads) -> Result<Vec<Tensor>, EvalError> {
    if grads.len() != fwd.len() {
        return fail(format!(
            "internal: {} gradients for {} operands",
            grads.len(),
            fwd.len()
        ));
    }
    let mut out = Vec::new();
    for (i, (x, g)) in fwd.iter().zip(grads).enumerate() {
        if !x.dtype.is_float() {
            continue;
        }
        match g {
            Some(v) if v.len() == x.numel() => out.push(store(x.dtype, x.shape.clone(), v)),
            Some(v) => {
                return fail(format!(
                    "internal: gradient of operand {i} has {} values, the operand is {:?}",
                    v.len(),
                    x.shape
                ));
            }
            None => return fail(format!("operand {i} is float but got no gradient")),
        }
    }
    Ok(out)
}

/// Upstream gradient `i` as floats, after checking it has the forward result's shape.
fn upstream<'a>(ups: &[&'a Tensor], i: usize, shape: &[usize]) -> Result<&'a [f64], EvalError> {
    let Some(t) = ups.get(i) else {
        return fail(format!("missing upstream gradient {i}"));
    };
    if t.shape != shape {
        return fail(format!(
            "upstream gradient {i} has shape {:?}, the forward result is {shape:?}",
            t.shape
        ));
    }
    floats(t, "upstream gradient")
}

fn need(ok: bool, message: impl FnOnce() -> String) -> Result<(), EvalError> {
    if ok { Ok(()) } else { fail(message()) }
}

fn kernel_err(message: String) -> EvalError {
    EvalError {
        node: None,
        message,
    }
}

/// Rows and width of a `[..., width]` operand that must have rank ≥ 1.
fn rows_of(x: &Tensor, what: &str) -> Result<(usize, usize), EvalError> {
    need(!x.shape.is_empty(), || format!("{what} must have rank ≥ 1"))?;
    Ok(x.rows_last())
}

/// `Σ_rows dy[row, j]`: the gradient of a bias added to every row.
fn column_sums(dy: &[f64], width: usize) -> Vec<f64> {
    let mut sums = vec![0.0; width];
    for row in dy.chunks_exact(width.max(1)) {
        for (s, v) in sums.iter_mut().zip(row) {
            *s += v;
        }
    }
    sums
}

fn embed(fwd: &[&Tensor], ups: &[&Tensor]) -> Result<Grads, EvalError> {
    let (tok, table) = (fwd[0], fwd[1]);
    let [vocab, d] = table.shape[..] else {
        return fail("embedding table must be rank 2");
    };
    let tokens = ints(tok, "tokens")?;
    let mut shape = tok.shape.clone();
    shape.push(d);
    let dy = upstream(ups, 0, &shape)?;
    let dt = lin::embed_backward(tokens, vocab, d, dy).map_err(kernel_err)?;
    Ok(vec![None, Some(dt)])
}

fn matmul(fwd: &[&Tensor], ups: &[&Tensor]) -> Result<Grads, EvalError> {
    let (x, w) = (fwd[0], fwd[1]);
    let (groups, n, k) = match w.shape[..] {
        [n, k] => (1, n, k),
        [g, n, k] => (g, n, k),
        _ => return fail("matmul weight must be [N, K] or [G, N, K]"),
    };
    let (rows, xk) = rows_of(x, "matmul input")?;
    need(xk == groups * k, || {
        format!(
            "matmul input {:?} does not match weight {:?}",
            x.shape, w.shape
        )
    })?;
    let dy = upstream(ups, 0, &with_last(&x.shape, groups * n))?;
    let (dx, dw, db) =
        lin::matmul_backward(floats(x, "x")?, rows, floats(w, "w")?, groups, k, n, dy);
    let mut grads = vec![Some(dx), Some(dw)];
    if let Some(b) = fwd.get(2) {
        need(b.shape == [groups * n], || {
            format!("bias must be [{}]", groups * n)
        })?;
        grads.push(Some(db));
    }
    Ok(grads)
}

fn butterfly(
    fwd: &[&Tensor],
    ups: &[&Tensor],
    n_in: usize,
    n_out: usize,
    increasing: bool,
) -> Result<Grads, EvalError> {
    let (x, tw) = (fwd[0], fwd[1]);
    let [groups, _, blocks, _, _, _, _] = tw.shape[..] else {
        return fail("butterfly twiddles must be [G, S, B, L, n/2, 2, 2]");
    };
    need(n_in > 0 && n_out > 0, || {
        "butterfly in and out must be ≥ 1".into()
    })?;
    need(
        tw.numel() == bf::twiddle_len(groups, n_in, n_out, blocks),
        || {
            format!(
                "twiddles {:?} do not fit in = {n_in}, out = {n_out}",
                tw.shape
            )
        },
    )?;
    let (rows, xk) = rows_of(x, "butterfly input")?;
    need(xk == groups * n_in, || {
        format!(
            "butterfly input {:?} must have groups·in = {} features",
            x.shape,
            groups * n_in
        )
    })?;
    let width = groups * n_out;
    let dy = upstream(ups, 0, &with_last(&x.shape, width))?;
    let (dx, dtw) = bf::butterfly_backward(
        floats(x, "x")?,
        rows,
        floats(tw, "twiddles")?,
        groups,
        n_in,
        n_out,
        blocks,
        increasing,
        dy,
    );
    let mut grads = vec![Some(dx), Some(dtw)];
    if let Some(b) = fwd.get(2) {
        need(b.shape == [width], || format!("bias must be [{width}]"))?;
        grads.push(Some(column_sums(dy, width)));
    }
    Ok(grads)
}

fn monarch(
    fwd: &[&Tensor],
    ups: &[&Tensor],
    n_in: usize,
    n_out: usize,
) -> Result<Grads, EvalError> {
    let (x, w1, w2) = (fwd[0], fwd[1], fwd[2]);
    let (&[g, k, q, p], &[g2, l, s, r]) = (&w1.shape[..], &w2.shape[..]) else {
        return fail("monarch w1 and w2 must be rank 4");
    };
    need(
        g == g2 && k * q == l * r && (1..=k * p).contains(&n_in) && (1..=l * s).contains(&n_out),
        || {
            format!(
                "monarch w1 {:?} and w2 {:?} do not fit in = {n_in}, out = {n_out}",
                w1.shape, w2.shape
            )
        },
    )?;
    let (rows, xk) = rows_of(x, "monarch input")?;
    need(xk == g * n_in, || {
        format!(
            "monarch input {:?} must have groups·in = {} features",
            x.shape,
            g * n_in
        )
    })?;
    let width = g * n_out;
    let dy = upstream(ups, 0, &with_last(&x.shape, width))?;
    let (dx, dw1, dw2) = mon::monarch_backward(
        floats(x, "x")?,
        rows,
        floats(w1, "w1")?,
        floats(w2, "w2")?,
        g,
        k,
        q,
        p,
        l,
        s,
        r,
        n_in,
        n_out,
        dy,
    );
    let mut grads = vec![Some(dx), Some(dw1), Some(dw2)];
    if let Some(b) = fwd.get(3) {
        need(b.shape == [width], || format!("bias must be [{width}]"))?;
        grads.push(Some(column_sums(dy, width)));
    }
    Ok(grads)
}

/// Givens, DIB and ternary producers: parameters `[G, S, B, L, n/2]` (DIB also a diagonal
/// `[G, S, B, L, n]`) → twiddles `[G, S, B, L, n/2, 2, 2]`.
fn twiddle_producer(op: &Op, fwd: &[&Tensor], ups: &[&Tensor]) -> Result<Grads, EvalError> {
    let theta = fwd[0];
    need(theta.shape.len() == 5, || {
        format!(
            "twiddle parameters must be [G, S, B, L, n/2], found {:?}",
            theta.shape
        )
    })?;
    let mut tw_shape = theta.shape.clone();
    tw_shape.extend([2, 2]);
    let dtw = upstream(ups, 0, &tw_shape)?;
    let th = floats(theta, "twiddle parameters")?;
    Ok(match op {
        Op::DibTwiddles { stride } => {
            let diag = fwd[1];
            let n = 2 * theta.shape[4];
            let mut want = theta.shape.clone();
            want[4] = n;
            let stages_ok = n.is_power_of_two() && theta.shape[3] == n.trailing_zeros() as usize;
            need(diag.shape == want && stages_ok, || {
                format!("DIB diagonal must be {want:?}, found {:?}", diag.shape)
            })?;
            let (dth, dd) = bf::dib_twiddles_backward(
                th,
                floats(diag, "diag")?,
                n,
                theta.shape[2],
                stride.is_increasing(),
                dtw,
            );
            vec![Some(dth), Some(dd)]
        }
        // Straight-through estimator: rounding to {−α, 0, α} counts as the identity.
        Op::TernaryTwiddles { .. } => {
            vec![Some(ternary_backward::ternary_twiddles_backward(th, dtw))]
        }
        _ => vec![Some(bf::givens_twiddles_backward(th, dtw))],
    })
}

fn lora(fwd: &[&Tensor], ups: &[&Tensor], scale: f64) -> Result<Grads, EvalError> {
    let (x, a, b) = (fwd[0], fwd[1], fwd[2]);
    let (&[rank, ak], &[n, br]) = (&a.shape[..], &b.shape[..]) else {
        return fail("lora A and B must be rank 2");
    };
    let (rows, k) = rows_of(x, "lora input")?;
    need(ak == k && br == rank, || {
        format!(
            "lora A {:?} and B {:?} do not fit input {:?}",
            a.shape, b.shape, x.shape
        )
    })?;
    let dy = upstream(ups, 0, &with_last(&x.shape, n))?;
    let (dx, da, db) = lin::lora_backward(
        floats(x, "x")?,
        rows,
        floats(a, "A")?,
        floats(b, "B")?,
        k,
        rank,
        n,
        scale,
        dy,
    );
    Ok(vec![Some(dx), Some(da), Some(db)])
}

/// `add`, `sub`, `mul` with numpy broadcasting: each output element's gradient flows back to
/// the operand elements it read, so a broadcast axis sums its gradients.
fn binary(op: &Op, fwd: &[&Tensor], ups: &[&Tensor]) -> Result<Grads, EvalError> {
    let (a, b) = (fwd[0], fwd[1]);
    let (shape, ia, ib) = broadcast_indices(&a.shape, &b.shape)?;
    let dy = upstream(ups, 0, &shape)?;
    let (av, bv) = (floats(a, "lhs")?, floats(b, "rhs")?);
    let mut da = vec![0.0; a.numel()];
    let mut db = vec![0.0; b.numel()];
    for ((&g, &i), &j) in dy.iter().zip(&ia).zip(&ib) {
        let (ga, gb) = match op {
            Op::Add => (g, g),
            Op::Sub => (g, -g),
            _ => (g * bv[j], g * av[i]),
        };
        da[i] += ga;
        db[j] += gb;
    }
    Ok(vec![Some(da), Some(db)])
}

fn unary(op: &Op, fwd: &[&Tensor], ups: &[&Tensor]) -> Result<Grads, EvalError> {
    let x = fwd[0];
    let dy = upstream(ups, 0, &x.shape)?;
    let xv = floats(x, "operand")?;
    let dx = match op {
        Op::Neg => dy.iter().map(|g| -g).collect(),
        Op::Scale { factor } => dy.iter().map(|g| g * factor).collect(),
        Op::Exp => ew::exp_backward(xv, dy),
        Op::Silu => ew::silu_backward(xv, dy),
        Op::Gelu => ew::gelu_backward(xv, dy),
        _ => ew::sigmoid_backward(xv, dy),
    };
    Ok(vec![Some(dx)])
}

/// RMSNorm, LayerNorm and softmax: per-row maps over the last axis.
fn row_norm(op: &Op, fwd: &[&Tensor], ups: &[&Tensor]) -> Result<Grads, EvalError> {
    let x = fwd[0];
    let (rows, d) = rows_of(x, "norm input")?;
    let dy = upstream(ups, 0, &x.shape)?;
    let xv = floats(x, "x")?;
    for extra in &fwd[1..] {
        need(extra.shape == [d], || {
            format!("norm gain/bias must be [{d}]")
        })?;
    }
    Ok(match op {
        Op::RmsNorm { eps } => {
            let (dx, dg) = norm::rmsnorm_backward(xv, rows, d, floats(fwd[1], "gain")?, *eps, dy);
            vec![Some(dx), Some(dg)]
        }
        Op::LayerNorm { eps } => {
            let (dx, dg, db) =
                norm::layernorm_backward(xv, rows, d, floats(fwd[1], "gain")?, *eps, dy);
            vec![Some(dx), Some(dg), Some(db)]
        }
        _ => vec![Some(norm::softmax_backward(xv, rows, d, dy))],
    })
}

fn rope(fwd: &[&Tensor], ups: &[&Tensor], heads: usize, base: f64) -> Result<Grads, EvalError> {
    let x = fwd[0];
    need(x.shape.len() >= 2, || {
        "rope input must be [.., T, heads·head_dim]".into()
    })?;
    let (batch, t, width) = seq_view(x);
    need(
        heads > 0 && width.is_multiple_of(heads) && (width / heads).is_multiple_of(2),
        || format!("rope: width {width} must split into {heads} heads of even size"),
    )?;
    let dy = upstream(ups, 0, &x.shape)?;
    // Positions start at 0, as in the forward op (a KV-cache offset exists only in decode).
    let dx = attn::rope_backward(dy, batch, t, heads, width / heads, base, 0);
    Ok(vec![Some(dx)])
}

fn attention(
    fwd: &[&Tensor],
    ups: &[&Tensor],
    heads: usize,
    kv_heads: usize,
) -> Result<Grads, EvalError> {
    let (q, k, v) = (fwd[0], fwd[1], fwd[2]);
    need(q.shape.len() >= 2, || {
        "attention q must be [.., T, heads·head_dim]".into()
    })?;
    let (batch, t, width) = seq_view(q);
    need(
        heads > 0 && kv_heads > 0 && heads.is_multiple_of(kv_heads) && width.is_multiple_of(heads),
        || format!("attention: width {width}, heads {heads}, kv_heads {kv_heads} do not fit"),
    )?;
    let head_dim = width / heads;
    let kv_shape = with_last(&q.shape, kv_heads * head_dim);
    need(k.shape == kv_shape && v.shape == kv_shape, || {
        format!(
            "attention k {:?} and v {:?} must be {kv_shape:?}",
            k.shape, v.shape
        )
    })?;
    let dy = upstream(ups, 0, &q.shape)?;
    let (dq, dk, dv) = attn::causal_attention_backward(
        floats(q, "q")?,
        floats(k, "k")?,
        floats(v, "v")?,
        batch,
        t,
        heads,
        kv_heads,
        head_dim,
        dy,
    );
    Ok(vec![Some(dq), Some(dk), Some(dv)])
}

fn into_floats(t: Tensor) -> Result<Vec<f64>, EvalError> {
    match t.data {
        Data::F(v) => Ok(v),
        Data::I(_) => fail("gradient must be a float tensor"),
    }
}

/// Reshape, transpose, split, concat, cast: they move (or retype) values without arithmetic,
/// so the gradient moves back the same way.
fn layout(op: &Op, fwd: &[&Tensor], ups: &[&Tensor]) -> Result<Grads, EvalError> {
    let x = fwd[0];
    Ok(match op {
        Op::Reshape { .. } => {
            let dy = ups[0];
            need(dy.numel() == x.numel(), || {
                format!(
                    "reshape gradient {:?} does not match {:?}",
                    dy.shape, x.shape
                )
            })?;
            vec![Some(floats(dy, "upstream gradient")?.to_vec())]
        }
        Op::Transpose { perm } => {
            let perm: Vec<usize> = perm.iter().map(|&p| p as usize).collect();
            let shape: Vec<usize> = perm
                .iter()
                .filter_map(|&p| x.shape.get(p).copied())
                .collect();
            upstream(ups, 0, &shape)?;
            // Output axis a is input axis perm[a], so input axis perm[a] is output axis a.
            let mut inverse = vec![0; perm.len()];
            for (a, &p) in perm.iter().enumerate() {
                match inverse.get_mut(p) {
                    Some(slot) => *slot = a,
                    None => return fail(format!("perm {perm:?} is out of range")),
                }
            }
            vec![Some(into_floats(transpose(ups[0], &inverse)?)?)]
        }
        Op::Split { axis, sizes } => {
            let ax = *axis as usize;
            need(ax < x.shape.len(), || {
                format!("axis {ax} out of range for {:?}", x.shape)
            })?;
            for (i, &s) in sizes.iter().enumerate() {
                let mut shape = x.shape.clone();
                shape[ax] = s as usize;
                upstream(ups, i, &shape)?;
            }
            let dx = concat(ups, ax)?;
            need(dx.shape == x.shape, || {
                format!("split sizes {sizes:?} do not cover {:?}", x.shape)
            })?;
            vec![Some(into_floats(dx)?)]
        }
        Op::Concat { axis } => {
            let ax = *axis as usize;
            upstream(ups, 0, &concat_shape(fwd, ax)?)?;
            let mut start = 0;
            let mut grads = Vec::with_capacity(fwd.len());
            for t in fwd {
                let len = t.shape[ax];
                grads.push(Some(into_floats(slice_axis(ups[0], ax, start, len))?));
                start += len;
            }
            grads
        }
        // Cast: the gradient is cast back to the operand's dtype (rounded to f16 by `pack` when
        // the operand is f16). The rounding of a float→float cast counts as the identity, as
        // in mixed-precision training; a float→integer cast is piecewise constant, so its
        // gradient is exactly zero.
        _ => {
            let dy = ups[0];
            need(dy.shape == x.shape, || {
                format!("cast gradient {:?} does not match {:?}", dy.shape, x.shape)
            })?;
            if !x.dtype.is_float() {
                vec![None]
            } else if dy.dtype.is_float() {
                vec![Some(floats(dy, "upstream gradient")?.to_vec())]
            } else {
                vec![Some(vec![0.0; x.numel()])]
            }
        }
    })
}

fn cross_entropy(fwd: &[&Tensor], ups: &[&Tensor]) -> Result<Grads, EvalError> {
    let (logits, targets) = (fwd[0], fwd[1]);
    let (rows, vocab) = rows_of(logits, "logits")?;
    need(
        targets.shape[..] == logits.shape[..logits.shape.len() - 1],
        || {
            format!(
                "targets {:?} must have the leading dims of {:?}",
                targets.shape, logits.shape
            )
        },
    )?;
    let dloss = upstream(ups, 0, &[])?;
    let dl = loss::cross_entropy_backward(
        floats(logits, "logits")?,
        rows,
        vocab,
        ints(targets, "targets")?,
        dloss[0],
    )
    .map_err(kernel_err)?;
    Ok(vec![Some(dl), None])
}

fn same_shape(p: &Tensor, t: &Tensor, what: &str) -> Result<(), EvalError> {
    need(t.shape == p.shape, || {
        format!("{what} {:?} must match the param {:?}", t.shape, p.shape)
    })
}

/// `sgd p, g` → `p − lr·g`, stored in the param's dtype.
pub(super) fn sgd(p: &Tensor, g: &Tensor, lr: f64) -> Result<Tensor, EvalError> {
    same_shape(p, g, "gradient")?;
    let v = floats(p, "param")?
        .iter()
        .zip(floats(g, "gradient")?)
        .map(|(p, g)| p - lr * g)
        .collect();
    Ok(store(p.dtype, p.shape.clone(), v))
}

/// AdamW hyper-parameters, as on the op.
pub(super) struct AdamW {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

/// `adamw p, g, m, v, step` → `(p', m', v')`:
/// `m' = β1·m + (1−β1)·g`, `v' = β2·v + (1−β2)·g²`, `m̂ = m'/(1−β1^step)`,
/// `v̂ = v'/(1−β2^step)`, `p' = p − lr·(m̂/(√v̂ + eps) + wd·p)` (decoupled decay, applied to
/// the old `p`). All three results take the param's dtype.
pub(super) fn adamw(args: &[&Tensor], h: &AdamW) -> Result<Vec<Tensor>, EvalError> {
    let (p, g, m, v, step) = (args[0], args[1], args[2], args[3], args[4]);
    same_shape(p, g, "gradient")?;
    same_shape(p, m, "first moment")?;
    same_shape(p, v, "second moment")?;
    let &[step] = floats(step, "step")? else {
        return fail("step must be a scalar f32[]");
    };
    // The step is run-time data: step < 1 would divide by a zero (or negative) bias
    // correction, and so would a β of 1, so both are errors rather than NaN parameters.
    need(step.is_finite() && step >= 1.0, || {
        format!("adamw step must be ≥ 1 (it is 1-based), found {step}")
    })?;
    let (bc1, bc2) = (1.0 - h.beta1.powf(step), 1.0 - h.beta2.powf(step));
    need(bc1 > 0.0 && bc2 > 0.0, || {
        format!(
            "adamw betas must be in [0, 1), found {} and {}",
            h.beta1, h.beta2
        )
    })?;
    let (pv, gv) = (floats(p, "param")?, floats(g, "gradient")?);
    let (mv, vv) = (floats(m, "first moment")?, floats(v, "second moment")?);
    let n = pv.len();
    let (mut p2, mut m2, mut v2) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for i in 0..n {
        let mi = h.beta1 * mv[i] + (1.0 - h.beta1) * gv[i];
        let vi = h.beta2 * vv[i] + (1.0 - h.beta2) * gv[i] * gv[i];
        let (m_hat, v_hat) = (mi / bc1, vi / bc2);
        p2.push(pv[i] - h.lr * (m_hat / (v_hat.sqrt() + h.eps) + h.weight_decay * pv[i]));
        m2.push(mi);
        v2.push(vi);
    }
    Ok(vec![
        store(p.dtype, p.shape.clone(), p2),
        store(p.dtype, p.shape.clone(), m2),
        store(p.dtype, p.shape.clone(), v2),
    ])
}
