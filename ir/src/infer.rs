//! Result-type inference, one rule per op. The builder uses it to create nodes and the
//! verifier re-runs it to check every node, so a shape rule lives in exactly one place.

use crate::op::Op;
use crate::types::{DType, Dim, Type};

type R<T> = Result<T, String>;

fn need_float(t: &Type, what: &str) -> R<()> {
    if t.dtype.is_float() {
        Ok(())
    } else {
        Err(format!("{what} must be f32 or f16, found {t}"))
    }
}

fn need_rank(t: &Type, rank: usize, what: &str) -> R<()> {
    if t.rank() == rank {
        Ok(())
    } else {
        Err(format!("{what} must have rank {rank}, found {t}"))
    }
}

fn need_min_rank(t: &Type, rank: usize, what: &str) -> R<()> {
    if t.rank() >= rank {
        Ok(())
    } else {
        Err(format!("{what} must have rank ≥ {rank}, found {t}"))
    }
}

fn konst(t: &Type, axis: usize, what: &str) -> R<u64> {
    t.dims[axis]
        .as_const()
        .ok_or_else(|| format!("{what}: dim {axis} of {t} must be a constant"))
}

fn last(t: &Type, what: &str) -> R<u64> {
    need_min_rank(t, 1, what)?;
    konst(t, t.rank() - 1, what)
}

fn all_const(t: &Type, what: &str) -> R<Vec<u64>> {
    t.dims
        .iter()
        .map(|d| {
            d.as_const()
                .ok_or_else(|| format!("{what} must have constant dims, found {t}"))
        })
        .collect()
}

fn expect_dims(t: &Type, want: &[u64], what: &str) -> R<()> {
    let got = all_const(t, what)?;
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "{what} must be [{}], found {t}",
            want.iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// `a · b`, or an error instead of an overflow (hand-written IR can declare any dims).
fn mul(a: u64, b: u64) -> R<u64> {
    a.checked_mul(b)
        .ok_or_else(|| format!("dims {a} · {b} overflow 64 bits"))
}

/// `log2 n` for a power of two n ≥ 2.
fn log2_exact(n: u64) -> Option<u64> {
    (n >= 2 && n.is_power_of_two()).then(|| u64::from(n.trailing_zeros()))
}

/// Geometry of a canonical twiddle tensor `[G, S, B, L, n/2, 2, 2]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TwiddleShape {
    pub groups: u64,
    pub stacks: u64,
    pub blocks: u64,
    pub stages: u64,
    pub n: u64,
}

impl TwiddleShape {
    pub fn dims(&self) -> [u64; 7] {
        [
            self.groups,
            self.stacks,
            self.blocks,
            self.stages,
            self.n / 2,
            2,
            2,
        ]
    }

    /// Reads the geometry from a twiddle tensor type, checking `n/2 = 2^(L-1)`.
    pub fn of(t: &Type, what: &str) -> R<TwiddleShape> {
        need_rank(t, 7, what)?;
        let d = all_const(t, what)?;
        if d[5] != 2 || d[6] != 2 {
            return Err(format!("{what} must end in [.., 2, 2], found {t}"));
        }
        let n = mul(d[4], 2)?;
        match log2_exact(n) {
            Some(l) if l == d[3] => {}
            _ => {
                return Err(format!(
                    "{what}: {} stages do not match pairs per stage {} (need n/2 = 2^(L-1)), found {t}",
                    d[3], d[4]
                ));
            }
        }
        if d[0] == 0 || d[1] == 0 || d[2] == 0 {
            return Err(format!(
                "{what}: groups, stacks and blocks must be ≥ 1, found {t}"
            ));
        }
        Ok(TwiddleShape {
            groups: d[0],
            stacks: d[1],
            blocks: d[2],
            stages: d[3],
            n,
        })
    }

    /// Geometry of a producer's angle tensor `[G, S, B, L, n/2]` (or diag `[.., n]`).
    fn of_params(t: &Type, per_stage: u64, what: &str) -> R<TwiddleShape> {
        need_rank(t, 5, what)?;
        let d = all_const(t, what)?;
        let n = mul(d[4], 2)? / per_stage;
        match log2_exact(n) {
            Some(l) if l == d[3] && mul(d[4], 2)? == mul(n, per_stage)? => {}
            _ => return Err(format!("{what}: stage count does not match width in {t}")),
        }
        Ok(TwiddleShape {
            groups: d[0],
            stacks: d[1],
            blocks: d[2],
            stages: d[3],
            n,
        })
    }

    fn out_type(&self, dtype: DType) -> Type {
        Type::fixed(dtype, &self.dims())
    }
}

/// Smallest power of two ≥ max(n, 2): the butterfly width for `n` inputs (saturating at
/// 2^63, which no verified graph reaches: its twiddles could not be declared).
pub fn butterfly_width(n_in: u64) -> u64 {
    n_in.max(2).checked_next_power_of_two().unwrap_or(1 << 63)
}

/// Numpy-style broadcast of two shapes aligned at the trailing axis.
fn broadcast(a: &Type, b: &Type) -> R<Type> {
    if a.dtype != b.dtype {
        return Err(format!("operand dtypes differ: {a} and {b}"));
    }
    let rank = a.rank().max(b.rank());
    let mut dims = Vec::with_capacity(rank);
    for i in 0..rank {
        let da = (i + a.rank()).checked_sub(rank).map(|j| &a.dims[j]);
        let db = (i + b.rank()).checked_sub(rank).map(|j| &b.dims[j]);
        let d = match (da, db) {
            (Some(x), None) | (None, Some(x)) => x.clone(),
            (Some(x), Some(y)) if x == y => x.clone(),
            (Some(Dim::Const(1)), Some(y)) => y.clone(),
            (Some(x), Some(Dim::Const(1))) => x.clone(),
            _ => return Err(format!("shapes {a} and {b} do not broadcast")),
        };
        dims.push(d);
    }
    Ok(Type::new(a.dtype, dims))
}

fn bias_check(bias: Option<&&Type>, n: u64) -> R<()> {
    match bias {
        Some(b) => expect_dims(b, &[n], "bias"),
        None => Ok(()),
    }
}

/// Result types of `op` applied to operands of types `ins`.
pub fn infer_types(op: &Op, ins: &[&Type]) -> R<Vec<Type>> {
    let (lo, hi) = op.arity();
    if ins.len() < lo || ins.len() > hi {
        let want = if lo == hi {
            format!("{lo}")
        } else if hi == usize::MAX {
            format!("at least {lo}")
        } else {
            format!("{lo} to {hi}")
        };
        return Err(format!("takes {want} operands, found {}", ins.len()));
    }
    let one = |t: Type| Ok(vec![t]);
    match op {
        Op::Input { .. } | Op::Param(_) => Err("sources carry declared types".into()),
        Op::Embed => {
            let (tok, table) = (ins[0], ins[1]);
            if tok.dtype != DType::I32 {
                return Err(format!("tokens must be i32, found {tok}"));
            }
            need_rank(table, 2, "embedding table")?;
            need_float(table, "embedding table")?;
            let d = konst(table, 1, "embedding table")?;
            let mut dims = tok.dims.clone();
            dims.push(Dim::Const(d));
            one(Type::new(table.dtype, dims))
        }
        Op::Matmul => {
            let (x, w) = (ins[0], ins[1]);
            need_float(x, "matmul input")?;
            need_float(w, "matmul weight")?;
            let (g, n, k) = match w.rank() {
                2 => {
                    let d = all_const(w, "matmul weight")?;
                    (1, d[0], d[1])
                }
                3 => {
                    let d = all_const(w, "matmul weight")?;
                    (d[0], d[1], d[2])
                }
                _ => {
                    return Err(format!(
                        "matmul weight must be [N, K] or [G, N, K], found {w}"
                    ));
                }
            };
            let xk = last(x, "matmul input")?;
            let (gk, gn) = (mul(g, k)?, mul(g, n)?);
            if xk != gk {
                return Err(format!(
                    "matmul input {x} has {xk} features but the weight {w} expects {gk}"
                ));
            }
            bias_check(ins.get(2), gn)?;
            one(x.with_last(gn))
        }
        Op::Butterfly { n_in, n_out, .. } => {
            let (x, tw) = (ins[0], ins[1]);
            need_float(x, "butterfly input")?;
            let ts = TwiddleShape::of(tw, "butterfly twiddles")?;
            let n = butterfly_width(*n_in);
            if ts.n != n {
                return Err(format!(
                    "butterfly with in = {n_in} needs width n = {n}, but the twiddles {tw} have n = {}",
                    ts.n
                ));
            }
            let stacks = n_out.div_ceil(n);
            if ts.stacks != stacks || *n_out == 0 {
                return Err(format!(
                    "butterfly with out = {n_out}, n = {n} needs {stacks} stacks, the twiddles {tw} have {}",
                    ts.stacks
                ));
            }
            let xk = last(x, "butterfly input")?;
            let (g_in, g_out) = (mul(ts.groups, *n_in)?, mul(ts.groups, *n_out)?);
            if xk != g_in {
                return Err(format!(
                    "butterfly input {x} has {xk} features, expected groups·in = {g_in}"
                ));
            }
            bias_check(ins.get(2), g_out)?;
            one(x.with_last(g_out))
        }
        Op::Monarch { n_in, n_out } => {
            let (x, w1, w2) = (ins[0], ins[1], ins[2]);
            need_float(x, "monarch input")?;
            need_rank(w1, 4, "monarch w1")?;
            need_rank(w2, 4, "monarch w2")?;
            let a = all_const(w1, "monarch w1")?;
            let b = all_const(w2, "monarch w2")?;
            let (g, k, q, p) = (a[0], a[1], a[2], a[3]);
            let (g2, l, s, r) = (b[0], b[1], b[2], b[3]);
            if g != g2 {
                return Err(format!("monarch w1 {w1} and w2 {w2} disagree on groups"));
            }
            if mul(k, q)? != mul(l, r)? {
                return Err(format!(
                    "monarch needs k·q = l·r, found {k}·{q} ≠ {l}·{r} ({w1}, {w2})"
                ));
            }
            let (kp, ls) = (mul(k, p)?, mul(l, s)?);
            if *n_in > kp || *n_in == 0 {
                return Err(format!("monarch in = {n_in} must be in 1..=k·p = {kp}"));
            }
            if *n_out > ls || *n_out == 0 {
                return Err(format!("monarch out = {n_out} must be in 1..=l·s = {ls}"));
            }
            let xk = last(x, "monarch input")?;
            let (g_in, g_out) = (mul(g, *n_in)?, mul(g, *n_out)?);
            if xk != g_in {
                return Err(format!(
                    "monarch input {x} has {xk} features, expected groups·in = {g_in}"
                ));
            }
            bias_check(ins.get(3), g_out)?;
            one(x.with_last(g_out))
        }
        Op::GivensTwiddles | Op::TernaryTwiddles { .. } => {
            need_float(ins[0], "twiddle parameters")?;
            let ts = TwiddleShape::of_params(ins[0], 1, "angles [G, S, B, L, n/2]")?;
            one(ts.out_type(ins[0].dtype))
        }
        Op::DibTwiddles { .. } => {
            need_float(ins[0], "DIB angles")?;
            let ts = TwiddleShape::of_params(ins[0], 1, "DIB angles [G, S, B, L, n/2]")?;
            let mut want = ts.dims()[..4].to_vec();
            want.push(ts.n);
            expect_dims(ins[1], &want, "DIB diagonal [G, S, B, L, n]")?;
            one(ts.out_type(ins[0].dtype))
        }
        Op::HadamardTwiddles {
            groups,
            stacks,
            blocks,
            n,
        } => {
            let stages =
                log2_exact(*n).ok_or_else(|| format!("n = {n} must be a power of two ≥ 2"))?;
            if *groups == 0 || *stacks == 0 || *blocks == 0 {
                return Err("groups, stacks and blocks must be ≥ 1".into());
            }
            let ts = TwiddleShape {
                groups: *groups,
                stacks: *stacks,
                blocks: *blocks,
                stages,
                n: *n,
            };
            one(ts.out_type(DType::F32))
        }
        Op::Lora { .. } => {
            let (x, a, b) = (ins[0], ins[1], ins[2]);
            need_float(x, "lora input")?;
            need_rank(a, 2, "lora A")?;
            need_rank(b, 2, "lora B")?;
            let ad = all_const(a, "lora A")?;
            let bd = all_const(b, "lora B")?;
            let k = last(x, "lora input")?;
            if ad[1] != k {
                return Err(format!("lora A {a} must be [rank, {k}]"));
            }
            if bd[1] != ad[0] {
                return Err(format!("lora B {b} must be [N, {}]", ad[0]));
            }
            one(x.with_last(bd[0]))
        }
        Op::Add | Op::Sub | Op::Mul => {
            need_float(ins[0], "operand")?;
            one(broadcast(ins[0], ins[1])?)
        }
        Op::Neg | Op::Exp | Op::Silu | Op::Gelu | Op::Sigmoid | Op::Scale { .. } | Op::Softmax => {
            need_float(ins[0], "operand")?;
            one(ins[0].clone())
        }
        Op::RmsNorm { .. } | Op::LayerNorm { .. } => {
            let x = ins[0];
            need_float(x, "norm input")?;
            let d = last(x, "norm input")?;
            for extra in &ins[1..] {
                expect_dims(extra, &[d], "norm gain/bias")?;
            }
            one(x.clone())
        }
        Op::Rope { heads, .. } => {
            let x = ins[0];
            need_float(x, "rope input")?;
            need_min_rank(x, 2, "rope input [.., T, heads·head_dim]")?;
            let d = last(x, "rope input")?;
            if *heads == 0 || d % heads != 0 || (d / heads) % 2 != 0 {
                return Err(format!(
                    "rope: width {d} must split into {heads} heads of even size"
                ));
            }
            one(x.clone())
        }
        Op::CausalAttention { heads, kv_heads } => {
            let (q, k, v) = (ins[0], ins[1], ins[2]);
            need_float(q, "attention q")?;
            need_min_rank(q, 2, "attention q [.., T, heads·head_dim]")?;
            if *heads == 0 || *kv_heads == 0 || heads % kv_heads != 0 {
                return Err(format!(
                    "heads = {heads} must be a positive multiple of kv_heads = {kv_heads}"
                ));
            }
            let dq = last(q, "attention q")?;
            if dq % heads != 0 {
                return Err(format!("q width {dq} does not split into {heads} heads"));
            }
            let want = q.with_last(mul(dq / heads, *kv_heads)?);
            if *k != want || *v != want {
                return Err(format!("k {k} and v {v} must both be {want}"));
            }
            one(q.clone())
        }
        Op::Reshape { dims } => {
            let x = ins[0];
            let out = Type::new(x.dtype, dims.iter().cloned());
            let split = |t: &Type| -> R<(u64, Vec<String>)> {
                let mut syms: Vec<&str> = Vec::new();
                let mut prod = 1u64;
                for d in &t.dims {
                    match d {
                        Dim::Const(c) => prod = mul(prod, *c)?,
                        Dim::Sym(s) => syms.push(s),
                    }
                }
                syms.sort_unstable();
                Ok((prod, syms.into_iter().map(String::from).collect()))
            };
            if split(x)? != split(&out)? {
                return Err(format!(
                    "reshape from {x} to {out} changes the element count"
                ));
            }
            one(out)
        }
        Op::Transpose { perm } => {
            let x = ins[0];
            let mut seen = vec![false; x.rank()];
            if perm.len() != x.rank() {
                return Err(format!(
                    "perm {perm:?} must list all {} axes of {x}",
                    x.rank()
                ));
            }
            for &p in perm {
                match seen.get_mut(p as usize) {
                    Some(s) if !*s => *s = true,
                    _ => {
                        return Err(format!(
                            "perm {perm:?} is not a permutation of 0..{}",
                            x.rank()
                        ));
                    }
                }
            }
            one(Type::new(
                x.dtype,
                perm.iter().map(|&p| x.dims[p as usize].clone()),
            ))
        }
        Op::Split { axis, sizes } => {
            let x = ins[0];
            let ax = *axis as usize;
            if ax >= x.rank() {
                return Err(format!("axis {axis} out of range for {x}"));
            }
            let d = konst(x, ax, "split input")?;
            let total = sizes.iter().try_fold(0u64, |acc, &s| acc.checked_add(s));
            if total != Some(d) || sizes.is_empty() {
                return Err(format!("split sizes {sizes:?} must sum to {d}"));
            }
            Ok(sizes
                .iter()
                .map(|&s| {
                    let mut t = x.clone();
                    t.dims[ax] = Dim::Const(s);
                    t
                })
                .collect())
        }
        Op::Concat { axis } => {
            let ax = *axis as usize;
            let first = ins[0];
            if ax >= first.rank() {
                return Err(format!("axis {axis} out of range for {first}"));
            }
            let mut total = 0;
            for t in ins {
                if t.rank() != first.rank() || t.dtype != first.dtype {
                    return Err(format!(
                        "concat operands {first} and {t} differ in rank or dtype"
                    ));
                }
                for (i, (a, b)) in first.dims.iter().zip(&t.dims).enumerate() {
                    if i != ax && a != b {
                        return Err(format!(
                            "concat operands {first} and {t} differ off axis {axis}"
                        ));
                    }
                }
                total = konst(t, ax, "concat operand")?
                    .checked_add(total)
                    .ok_or("concat width overflows 64 bits")?;
            }
            let mut out = first.clone();
            out.dims[ax] = Dim::Const(total);
            one(out)
        }
        Op::Cast { to } => one(ins[0].with_dtype(*to)),
        Op::Quantize => {
            let x = ins[0];
            need_float(x, "quantize input")?;
            last(x, "quantize input")?;
            Ok(vec![
                x.with_dtype(DType::I8),
                Type::new(DType::F32, x.leading().iter().cloned()),
            ])
        }
        Op::Dequantize => {
            let (q, s) = (ins[0], ins[1]);
            if q.dtype != DType::I8 {
                return Err(format!("dequantize input must be i8, found {q}"));
            }
            let want = Type::new(DType::F32, q.leading().iter().cloned());
            if *s != want {
                return Err(format!("scales must be {want}, found {s}"));
            }
            one(q.with_dtype(DType::F32))
        }
        Op::QMatmul => {
            let (xq, xs, wq, ws) = (ins[0], ins[1], ins[2], ins[3]);
            if xq.dtype != DType::I8 || wq.dtype != DType::I8 {
                return Err(format!("qmatmul operands must be i8, found {xq} and {wq}"));
            }
            need_rank(wq, 2, "qmatmul weight")?;
            let w = all_const(wq, "qmatmul weight")?;
            let k = last(xq, "qmatmul input")?;
            if k != w[1] {
                return Err(format!("qmatmul input {xq} does not match weight {wq}"));
            }
            let want_xs = Type::new(DType::F32, xq.leading().iter().cloned());
            if *xs != want_xs {
                return Err(format!("activation scales must be {want_xs}, found {xs}"));
            }
            expect_dims(ws, &[w[0]], "weight scales")?;
            bias_check(ins.get(4), w[0])?;
            one(xq.with_last(w[0]).with_dtype(DType::F32))
        }
        Op::Fill { dtype, dims, .. } => one(Type::new(*dtype, dims.iter().cloned())),
        Op::Grad(inner) => {
            if !inner.is_differentiable() {
                return Err(format!("`{}` has no gradient", inner.name()));
            }
            let r = inner.num_results();
            let (fwd, grads) = ins.split_at(ins.len() - r);
            let outs = infer_types(inner, fwd)?;
            for (i, (g, want)) in grads.iter().zip(&outs).enumerate() {
                if **g != *want {
                    return Err(format!(
                        "upstream gradient {i} must match the forward result {want}, found {g}"
                    ));
                }
            }
            Ok(fwd
                .iter()
                .filter(|t| t.dtype.is_float())
                .map(|t| (*t).clone())
                .collect())
        }
        Op::Sgd { .. } => {
            let (p, g) = (ins[0], ins[1]);
            need_float(p, "sgd param")?;
            if p != g {
                return Err(format!("gradient {g} must match the param {p}"));
            }
            one(p.clone())
        }
        Op::AdamW { .. } => {
            let p = ins[0];
            need_float(p, "adamw param")?;
            for (what, t) in [
                ("gradient", ins[1]),
                ("first moment", ins[2]),
                ("second moment", ins[3]),
            ] {
                if t != p {
                    return Err(format!("{what} {t} must match the param {p}"));
                }
            }
            if *ins[4] != Type::scalar(DType::F32) {
                return Err(format!("step must be f32[], found {}", ins[4]));
            }
            Ok(vec![p.clone(), p.clone(), p.clone()])
        }
        Op::CrossEntropy => {
            let (logits, targets) = (ins[0], ins[1]);
            need_float(logits, "logits")?;
            if targets.dtype != DType::I32 || targets.dims[..] != *logits.leading() {
                return Err(format!(
                    "targets must be i32 with the leading dims of {logits}, found {targets}"
                ));
            }
            one(Type::scalar(DType::F32))
        }
    }
}
