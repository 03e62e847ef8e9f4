//! The reference interpreter: evaluates the Graph IR directly, op by op, in f64.
//!
//! It shares no lowering code with the JIT backends (DESIGN §1), so it can catch their bugs.
//! Shapes are re-checked against the concrete tensors at every node; symbols (`T`, `B`) are
//! bound from the inputs and checked against the graph's bounds.

use super::interp_grad as grad;
use super::kernels::{self as k, quant::round_to_f16};
use super::tensor::{Data, Tensor};
use super::weights::{MAX_PARAM_ELEMENTS, Weights};
use bfly_ir::{DType, Dim, Graph, NodeId, Op, TwiddleShape, Type, Value, print::ValueNames};
use std::collections::HashMap;
use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub struct EvalError {
    /// The node as printed (`%12 = butterfly`), when the error belongs to one.
    pub node: Option<String>,
    pub message: String,
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.node {
            Some(n) => write!(f, "{n}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for EvalError {}

pub(super) fn fail<T>(message: impl Into<String>) -> Result<T, EvalError> {
    Err(EvalError {
        node: None,
        message: message.into(),
    })
}

/// Evaluates `g` on `inputs` (in signature order) with parameter values `weights`.
pub fn evaluate(g: &Graph, inputs: &[Tensor], weights: &Weights) -> Result<Vec<Tensor>, EvalError> {
    let Some(order) = g.topo_order() else {
        return fail("the graph has a cycle");
    };
    let names = ValueNames::new(g, &order);
    let bind = bind_symbols(g, inputs)?;
    // Remaining uses per value, so intermediates are dropped as soon as they are dead.
    let mut uses: HashMap<Value, usize> = HashMap::new();
    for &id in &order {
        for v in g.operands(id) {
            *uses.entry(v).or_insert(0) += 1;
        }
    }
    for o in g.outputs() {
        *uses.entry(o.value).or_insert(0) += 1;
    }
    let mut env: HashMap<Value, Tensor> = HashMap::new();
    let mut next_input = 0;
    for &id in &order {
        let node = g.node(id);
        let label = || {
            let v = Value::first(id);
            format!("{} = {}", names.get(v), node.op.name())
        };
        let results = match &node.op {
            Op::Input { name } => {
                let idx = g
                    .inputs()
                    .iter()
                    .position(|&i| i == id)
                    .unwrap_or(next_input);
                next_input += 1;
                match inputs.get(idx) {
                    Some(t) => vec![t.clone()],
                    None => return fail(format!("missing input %{name}")),
                }
            }
            Op::Param(p) => match weights.get(&p.name) {
                Some(t) => {
                    let want = node.results[0].const_dims().unwrap_or_default();
                    if t.shape != want {
                        return fail(format!(
                            "weight `{}` has shape {:?}, the graph declares {}",
                            p.name, t.shape, node.results[0]
                        ));
                    }
                    vec![t.clone()]
                }
                None => return fail(format!("no value for param @{}", p.name)),
            },
            op => {
                let operands = g.operands(id);
                let args: Vec<&Tensor> = operands
                    .iter()
                    .map(|v| {
                        env.get(v).ok_or_else(|| EvalError {
                            node: Some(label()),
                            message: format!("operand {v} was not computed"),
                        })
                    })
                    .collect::<Result<_, _>>()?;
                let out = eval_op(op, &args, g, id, &bind).map_err(|e| EvalError {
                    node: Some(label()),
                    message: e.message,
                })?;
                for v in &operands {
                    if let Some(n) = uses.get_mut(v) {
                        *n -= 1;
                        if *n == 0 {
                            env.remove(v);
                        }
                    }
                }
                out
            }
        };
        for (r, t) in results.into_iter().enumerate() {
            let v = Value {
                node: id,
                result: r as u32,
            };
            if uses.get(&v).copied().unwrap_or(0) > 0 {
                env.insert(v, t);
            }
        }
    }
    g.outputs()
        .iter()
        .map(|o| match env.get(&o.value) {
            Some(t) => Ok(t.clone()),
            None => fail(format!("output %{} was not computed", o.name)),
        })
        .collect()
}

/// Binds `T`, `B`, … from the input tensors' shapes and checks the declared bounds.
fn bind_symbols(g: &Graph, inputs: &[Tensor]) -> Result<HashMap<String, usize>, EvalError> {
    if inputs.len() != g.inputs().len() {
        return fail(format!(
            "graph @{} takes {} inputs, got {}",
            g.name,
            g.inputs().len(),
            inputs.len()
        ));
    }
    let mut bind = HashMap::new();
    for (&id, t) in g.inputs().iter().zip(inputs) {
        let ty = &g.node(id).results[0];
        let name = match &g.node(id).op {
            Op::Input { name } => name.as_str(),
            _ => "?",
        };
        if ty.rank() != t.shape.len() || ty.dtype != t.dtype {
            return fail(format!(
                "input %{name} must be {ty}, got {} {:?}",
                t.dtype, t.shape
            ));
        }
        for (d, &actual) in ty.dims.iter().zip(&t.shape) {
            match d {
                Dim::Const(c) if *c as usize != actual => {
                    return fail(format!(
                        "input %{name} must be {ty}, got shape {:?}",
                        t.shape
                    ));
                }
                Dim::Sym(s) => {
                    if let Some(&prev) = bind.get(s)
                        && prev != actual
                    {
                        return fail(format!("symbol {s} is both {prev} and {actual}"));
                    }
                    let max = g.bound(s).unwrap_or(u64::MAX);
                    if actual as u64 > max || actual == 0 {
                        return fail(format!(
                            "input %{name}: {s} = {actual} is outside 1..={max} (the model's bound)"
                        ));
                    }
                    bind.insert(s.clone(), actual);
                }
                Dim::Const(_) => {}
            }
        }
    }
    Ok(bind)
}

pub(super) fn floats<'a>(t: &'a Tensor, what: &str) -> Result<&'a [f64], EvalError> {
    match t.floats() {
        Some(v) => Ok(v),
        None => fail(format!("{what} must be a float tensor")),
    }
}

pub(super) fn ints<'a>(t: &'a Tensor, what: &str) -> Result<&'a [i64], EvalError> {
    match t.ints() {
        Some(v) => Ok(v),
        None => fail(format!("{what} must be an integer tensor")),
    }
}

/// Rounds a freshly computed float result to its declared storage dtype.
pub(super) fn store(dtype: DType, shape: Vec<usize>, mut v: Vec<f64>) -> Tensor {
    if dtype == DType::F16 {
        v.iter_mut().for_each(|x| *x = round_to_f16(*x));
    }
    Tensor::float(dtype, shape, v)
}

pub(super) fn with_last(shape: &[usize], last: usize) -> Vec<usize> {
    let mut s = shape.to_vec();
    if let Some(l) = s.last_mut() {
        *l = last;
    }
    s
}

fn optional_bias<'a>(args: &[&'a Tensor], slot: usize) -> Result<Option<&'a [f64]>, EvalError> {
    args.get(slot).map(|b| floats(b, "bias")).transpose()
}

/// An arity range for messages: `2`, `2 to 3`, `at least 1`.
pub(super) fn operand_count(lo: usize, hi: usize) -> String {
    if lo == hi {
        format!("{lo}")
    } else if hi == usize::MAX {
        format!("at least {lo}")
    } else {
        format!("{lo} to {hi}")
    }
}

/// Result shape of a broadcast, then the flat source index in `a` and in `b` of each element.
pub(super) type Broadcast = (Vec<usize>, Vec<usize>, Vec<usize>);

/// Numpy broadcast of two shapes aligned at the trailing axis: the result shape and, for every
/// result element in row-major order, the flat index it reads in `a` and in `b`. The forward
/// op and its gradient (which scatters back through the same indices) share this one rule.
pub(super) fn broadcast_indices(a: &[usize], b: &[usize]) -> Result<Broadcast, EvalError> {
    let rank = a.len().max(b.len());
    let pad = |s: &[usize]| {
        let mut p = vec![1; rank - s.len()];
        p.extend_from_slice(s);
        p
    };
    let (sa, sb) = (pad(a), pad(b));
    let mut out_shape = Vec::with_capacity(rank);
    for (&x, &y) in sa.iter().zip(&sb) {
        if x != y && x != 1 && y != 1 {
            return fail(format!("shapes {a:?} and {b:?} do not broadcast"));
        }
        out_shape.push(x.max(y));
    }
    // A broadcast (size-1) axis has stride 0, so every output index along it reads element 0.
    let strides = |s: &[usize]| {
        let mut st = vec![0; rank];
        let mut acc = 1;
        for i in (0..rank).rev() {
            st[i] = if s[i] == 1 { 0 } else { acc };
            acc *= s[i];
        }
        st
    };
    let (ta, tb) = (strides(&sa), strides(&sb));
    let numel: usize = out_shape.iter().product();
    let (mut ia, mut ib) = (Vec::with_capacity(numel), Vec::with_capacity(numel));
    let mut idx = vec![0usize; rank];
    for _ in 0..numel {
        ia.push(idx.iter().zip(&ta).map(|(i, s)| i * s).sum());
        ib.push(idx.iter().zip(&tb).map(|(i, s)| i * s).sum());
        for ax in (0..rank).rev() {
            idx[ax] += 1;
            if idx[ax] < out_shape[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
    Ok((out_shape, ia, ib))
}

/// Numpy broadcast of a binary elementwise op.
fn broadcast(a: &Tensor, b: &Tensor, f: impl Fn(f64, f64) -> f64) -> Result<Tensor, EvalError> {
    let (av, bv) = (floats(a, "lhs")?, floats(b, "rhs")?);
    let (out_shape, ia, ib) = broadcast_indices(&a.shape, &b.shape)?;
    let out = ia.iter().zip(&ib).map(|(&i, &j)| f(av[i], bv[j])).collect();
    Ok(store(a.dtype, out_shape, out))
}

fn map(x: &Tensor, f: impl Fn(f64) -> f64) -> Result<Tensor, EvalError> {
    let v = floats(x, "operand")?;
    Ok(store(
        x.dtype,
        x.shape.clone(),
        v.iter().map(|&a| f(a)).collect(),
    ))
}

/// `[batch, t, width]` view of an attention-style tensor `[..., T, width]`.
pub(super) fn seq_view(x: &Tensor) -> (usize, usize, usize) {
    let r = x.shape.len();
    let t = x.shape[r - 2];
    let width = x.shape[r - 1];
    (x.numel() / (t * width).max(1), t, width)
}

/// Row-major strides of a shape.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut st = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        st[i] = st[i + 1] * shape[i + 1];
    }
    st
}

/// Copies a slab `[outer, len, inner]` out of a tensor along `axis`.
pub(super) fn slice_axis(x: &Tensor, axis: usize, start: usize, len: usize) -> Tensor {
    let outer: usize = x.shape[..axis].iter().product();
    let inner: usize = x.shape[axis + 1..].iter().product();
    let d = x.shape[axis];
    let mut shape = x.shape.clone();
    shape[axis] = len;
    let pick = |v: &[f64]| -> Vec<f64> {
        let mut out = Vec::with_capacity(outer * len * inner);
        for o in 0..outer {
            let base = o * d * inner + start * inner;
            out.extend_from_slice(&v[base..base + len * inner]);
        }
        out
    };
    match &x.data {
        Data::F(v) => Tensor::float(x.dtype, shape, pick(v)),
        Data::I(v) => {
            let as_f: Vec<f64> = v.iter().map(|&i| i as f64).collect();
            Tensor::int(
                x.dtype,
                shape,
                pick(&as_f).into_iter().map(|f| f as i64).collect(),
            )
        }
    }
}

/// `y[i_0, …] = x[i_perm[0], …]`: axis `a` of the result is axis `perm[a]` of `x`.
pub(super) fn transpose(x: &Tensor, perm: &[usize]) -> Result<Tensor, EvalError> {
    if perm.len() != x.shape.len() {
        return fail(format!("perm {perm:?} must list all axes of {:?}", x.shape));
    }
    let mut seen = vec![false; x.shape.len()];
    for &p in perm {
        match seen.get_mut(p) {
            Some(s) if !*s => *s = true,
            _ => {
                return fail(format!(
                    "perm {perm:?} is not a permutation of the axes of {:?}",
                    x.shape
                ));
            }
        }
    }
    let src_strides = strides(&x.shape);
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
    let numel = x.numel();
    let mut src_index = Vec::with_capacity(numel);
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..numel {
        src_index.push(
            idx.iter()
                .zip(perm)
                .map(|(i, &p)| i * src_strides[p])
                .sum::<usize>(),
        );
        for ax in (0..shape.len()).rev() {
            idx[ax] += 1;
            if idx[ax] < shape[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
    let data = match &x.data {
        Data::F(v) => Data::F(src_index.iter().map(|&i| v[i]).collect()),
        Data::I(v) => Data::I(src_index.iter().map(|&i| v[i]).collect()),
    };
    Ok(Tensor {
        dtype: x.dtype,
        shape,
        data,
    })
}

/// Shape of `parts` joined along `axis`, checking that every other dim agrees.
pub(super) fn concat_shape(parts: &[&Tensor], axis: usize) -> Result<Vec<usize>, EvalError> {
    let Some(first) = parts.first() else {
        return fail("concat needs at least one operand");
    };
    if axis >= first.shape.len() {
        return fail(format!("axis {axis} out of range for {:?}", first.shape));
    }
    for t in parts {
        let agree = t.shape.len() == first.shape.len()
            && t.shape
                .iter()
                .zip(&first.shape)
                .enumerate()
                .all(|(i, (a, b))| i == axis || a == b);
        if !agree {
            return fail(format!(
                "concat operands {:?} and {:?} differ off axis {axis}",
                first.shape, t.shape
            ));
        }
    }
    let mut shape = first.shape.clone();
    shape[axis] = parts.iter().map(|t| t.shape[axis]).sum();
    Ok(shape)
}

/// Float tensors joined along `axis`.
pub(super) fn concat(parts: &[&Tensor], axis: usize) -> Result<Tensor, EvalError> {
    let shape = concat_shape(parts, axis)?;
    let outer: usize = shape[..axis].iter().product();
    let mut out = Vec::with_capacity(shape.iter().product());
    for o in 0..outer {
        for t in parts {
            let chunk: usize = t.shape[axis..].iter().product();
            out.extend_from_slice(&floats(t, "operand")?[o * chunk..(o + 1) * chunk]);
        }
    }
    Ok(store(parts[0].dtype, shape, out))
}

/// A constant tensor; symbolic dims take the values bound from the inputs.
fn fill(
    value: f64,
    dtype: DType,
    dims: &[Dim],
    bind: &HashMap<String, usize>,
) -> Result<Tensor, EvalError> {
    let ty = Type::new(dtype, dims.iter().cloned());
    let Some(shape) = ty.resolve(&|s| bind.get(s).copied()) else {
        return fail(format!("fill {ty} has a symbol no input binds"));
    };
    // Hand-written IR can declare any dims: refuse what the f64 interpreter cannot hold
    // instead of failing the allocation.
    let numel = match shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)) {
        Some(n) if n <= MAX_PARAM_ELEMENTS => n,
        _ => {
            return fail(format!(
                "fill {ty} is larger than the reference backend's limit of {MAX_PARAM_ELEMENTS} elements"
            ));
        }
    };
    Ok(match dtype {
        DType::F32 | DType::F16 => store(dtype, shape, vec![value; numel]),
        DType::I8 | DType::I32 => Tensor::int(dtype, shape, vec![to_int(value, dtype); numel]),
    })
}

/// Rounds and saturates a float to an integer dtype's range (NaN becomes 0), as `cast` does.
fn to_int(f: f64, to: DType) -> i64 {
    let (lo, hi) = if to == DType::I8 {
        (-128.0, 127.0)
    } else {
        (i32::MIN as f64, i32::MAX as f64)
    };
    f.round().clamp(lo, hi) as i64
}

fn eval_op(
    op: &Op,
    args: &[&Tensor],
    g: &Graph,
    id: NodeId,
    bind: &HashMap<String, usize>,
) -> Result<Vec<Tensor>, EvalError> {
    // Every arm below indexes its operands by slot; an unverified graph with a wrong operand
    // count gets an error here instead of an out-of-bounds panic.
    let (lo, hi) = op.arity();
    if args.len() < lo || args.len() > hi {
        return fail(format!("takes {lo}..={hi} operands, found {}", args.len()));
    }
    let one = |t: Tensor| Ok(vec![t]);
    let declared = &g.node(id).results;
    let out_dtype = declared.first().map_or(DType::F32, |t| t.dtype);
    match op {
        Op::Input { .. } | Op::Param(_) => fail("sources are not evaluated as ops"),
        Op::Embed => {
            let (tok, table) = (args[0], args[1]);
            let (vocab, d) = (table.shape[0], table.shape[1]);
            let v = k::linear::embed(ints(tok, "tokens")?, floats(table, "table")?, vocab, d)
                .map_err(|m| EvalError {
                    node: None,
                    message: m,
                })?;
            let mut shape = tok.shape.clone();
            shape.push(d);
            one(store(out_dtype, shape, v))
        }
        Op::Matmul => {
            let (x, w) = (args[0], args[1]);
            let (g_, n, kk) = match w.shape[..] {
                [n, kk] => (1, n, kk),
                [g_, n, kk] => (g_, n, kk),
                _ => return fail("matmul weight must be rank 2 or 3"),
            };
            let (rows, _) = x.rows_last();
            let y = k::linear::matmul(
                floats(x, "x")?,
                rows,
                floats(w, "w")?,
                g_,
                kk,
                n,
                optional_bias(args, 2)?,
            );
            one(store(out_dtype, with_last(&x.shape, g_ * n), y))
        }
        Op::Butterfly {
            n_in,
            n_out,
            stride,
        } => {
            let (x, tw) = (args[0], args[1]);
            let ts = TwiddleShape::of(&g.value_type(g.operands(id)[1]).clone(), "twiddles")
                .map_err(|m| EvalError {
                    node: None,
                    message: m,
                })?;
            let (rows, _) = x.rows_last();
            let mut y = k::butterfly::butterfly(
                floats(x, "x")?,
                rows,
                floats(tw, "twiddles")?,
                ts.groups as usize,
                *n_in as usize,
                *n_out as usize,
                ts.blocks as usize,
                stride.is_increasing(),
            );
            if let Some(b) = optional_bias(args, 2)? {
                let w = b.len();
                y.iter_mut().enumerate().for_each(|(i, v)| *v += b[i % w]);
            }
            one(store(
                out_dtype,
                with_last(&x.shape, ts.groups as usize * *n_out as usize),
                y,
            ))
        }
        Op::Monarch { n_in, n_out } => {
            let (x, w1, w2) = (args[0], args[1], args[2]);
            let [gg, kk, q, p] = w1.shape[..] else {
                return fail("monarch w1 must be rank 4");
            };
            let [_, l, s, r] = w2.shape[..] else {
                return fail("monarch w2 must be rank 4");
            };
            let (rows, _) = x.rows_last();
            let mut y = k::monarch::monarch(
                floats(x, "x")?,
                rows,
                floats(w1, "w1")?,
                floats(w2, "w2")?,
                gg,
                kk,
                q,
                p,
                l,
                s,
                r,
                *n_in as usize,
                *n_out as usize,
            );
            if let Some(b) = optional_bias(args, 3)? {
                let w = b.len();
                y.iter_mut().enumerate().for_each(|(i, v)| *v += b[i % w]);
            }
            one(store(
                out_dtype,
                with_last(&x.shape, gg * *n_out as usize),
                y,
            ))
        }
        Op::GivensTwiddles => {
            let v = k::butterfly::givens_twiddles(floats(args[0], "theta")?);
            one(store(
                out_dtype,
                declared[0].const_dims().unwrap_or_default(),
                v,
            ))
        }
        Op::DibTwiddles { stride } => {
            let ts = TwiddleShape::of(&declared[0], "twiddles").map_err(|m| EvalError {
                node: None,
                message: m,
            })?;
            let v = k::butterfly::dib_twiddles(
                floats(args[0], "theta")?,
                floats(args[1], "diag")?,
                ts.n as usize,
                ts.blocks as usize,
                stride.is_increasing(),
            );
            one(store(
                out_dtype,
                ts.dims().iter().map(|&d| d as usize).collect(),
                v,
            ))
        }
        Op::HadamardTwiddles {
            groups,
            stacks,
            blocks,
            n,
        } => {
            let v = k::butterfly::hadamard_twiddles(
                *groups as usize,
                *stacks as usize,
                *blocks as usize,
                *n as usize,
            );
            one(store(
                out_dtype,
                declared[0].const_dims().unwrap_or_default(),
                v,
            ))
        }
        Op::TernaryTwiddles { alpha } => {
            let v = k::butterfly::ternary_twiddles(floats(args[0], "w")?, *alpha);
            one(store(
                out_dtype,
                declared[0].const_dims().unwrap_or_default(),
                v,
            ))
        }
        Op::Lora { scale } => {
            let (x, a, b) = (args[0], args[1], args[2]);
            let (rows, kk) = x.rows_last();
            let (r, n) = (a.shape[0], b.shape[0]);
            let ax = k::linear::matmul(floats(x, "x")?, rows, floats(a, "A")?, 1, kk, r, None);
            let mut y = k::linear::matmul(&ax, rows, floats(b, "B")?, 1, r, n, None);
            y.iter_mut().for_each(|v| *v *= scale);
            one(store(out_dtype, with_last(&x.shape, n), y))
        }
        Op::Add => one(broadcast(args[0], args[1], |a, b| a + b)?),
        Op::Sub => one(broadcast(args[0], args[1], |a, b| a - b)?),
        Op::Mul => one(broadcast(args[0], args[1], |a, b| a * b)?),
        Op::Neg => one(map(args[0], |a| -a)?),
        Op::Exp => one(map(args[0], f64::exp)?),
        Op::Silu => one(map(args[0], k::elementwise::silu_scalar)?),
        Op::Gelu => one(map(args[0], k::elementwise::gelu_scalar)?),
        Op::Sigmoid => one(map(args[0], k::elementwise::sigmoid_scalar)?),
        Op::Scale { factor } => one(map(args[0], |a| a * factor)?),
        Op::RmsNorm { eps } => {
            let x = args[0];
            let (rows, d) = x.rows_last();
            let y = k::norm::rmsnorm(floats(x, "x")?, rows, d, floats(args[1], "gain")?, *eps);
            one(store(out_dtype, x.shape.clone(), y))
        }
        Op::LayerNorm { eps } => {
            let x = args[0];
            let (rows, d) = x.rows_last();
            let y = k::norm::layernorm(
                floats(x, "x")?,
                rows,
                d,
                floats(args[1], "gain")?,
                floats(args[2], "bias")?,
                *eps,
            );
            one(store(out_dtype, x.shape.clone(), y))
        }
        Op::Softmax => {
            let x = args[0];
            let (rows, d) = x.rows_last();
            one(store(
                out_dtype,
                x.shape.clone(),
                k::norm::softmax(floats(x, "x")?, rows, d),
            ))
        }
        Op::Rope { heads, base } => {
            let x = args[0];
            let (batch, t, width) = seq_view(x);
            let h = *heads as usize;
            let y = k::attention::rope(floats(x, "x")?, batch, t, h, width / h, *base, 0);
            one(store(out_dtype, x.shape.clone(), y))
        }
        Op::CausalAttention { heads, kv_heads } => {
            let (q, kk, v) = (args[0], args[1], args[2]);
            let (batch, t, width) = seq_view(q);
            let h = *heads as usize;
            let y = k::attention::causal_attention(
                floats(q, "q")?,
                floats(kk, "k")?,
                floats(v, "v")?,
                batch,
                t,
                h,
                *kv_heads as usize,
                width / h,
            );
            one(store(out_dtype, q.shape.clone(), y))
        }
        Op::Reshape { .. } => {
            let Some(shape) = declared[0].resolve(&|s| bind.get(s).copied()) else {
                return fail("reshape target has an unbound symbol");
            };
            let mut t = args[0].clone();
            if shape.iter().product::<usize>() != t.numel() {
                return fail(format!("cannot reshape {:?} to {:?}", t.shape, shape));
            }
            t.shape = shape;
            one(t)
        }
        Op::Transpose { perm } => {
            let perm: Vec<usize> = perm.iter().map(|&p| p as usize).collect();
            one(transpose(args[0], &perm)?)
        }
        Op::Split { axis, sizes } => {
            let mut start = 0;
            let mut out = Vec::new();
            for &s in sizes {
                out.push(slice_axis(args[0], *axis as usize, start, s as usize));
                start += s as usize;
            }
            Ok(out)
        }
        Op::Concat { axis } => one(concat(args, *axis as usize)?),
        Op::Cast { to } => {
            let x = args[0];
            let t = match (&x.data, to) {
                (Data::F(v), DType::F32 | DType::F16) => store(*to, x.shape.clone(), v.clone()),
                (Data::I(v), DType::F32 | DType::F16) => {
                    store(*to, x.shape.clone(), v.iter().map(|&i| i as f64).collect())
                }
                (Data::F(v), DType::I8 | DType::I32) => Tensor::int(
                    *to,
                    x.shape.clone(),
                    v.iter().map(|&f| to_int(f, *to)).collect(),
                ),
                (Data::I(v), DType::I8 | DType::I32) => {
                    Tensor::int(*to, x.shape.clone(), v.clone())
                }
            };
            one(t)
        }
        Op::Quantize => {
            let x = args[0];
            let (rows, d) = x.rows_last();
            let (q, s) = k::quant::quantize_int8_rows(floats(x, "x")?, rows, d);
            Ok(vec![
                Tensor::int(
                    DType::I8,
                    x.shape.clone(),
                    q.into_iter().map(i64::from).collect(),
                ),
                Tensor::f32(x.shape[..x.shape.len() - 1].to_vec(), s),
            ])
        }
        Op::Dequantize => {
            let (q, s) = (args[0], args[1]);
            let (rows, d) = q.rows_last();
            let s = floats(s, "scales")?;
            let q = ints(q, "values")?;
            let y = (0..rows * d)
                .map(|i| q[i] as f64 * s[i / d.max(1)])
                .collect();
            one(Tensor::f32(args[0].shape.clone(), y))
        }
        Op::QMatmul => {
            let (xq, xs, wq, ws) = (args[0], args[1], args[2], args[3]);
            let (rows, kk) = xq.rows_last();
            let n = wq.shape[0];
            let (xv, wv) = (ints(xq, "xq")?, ints(wq, "wq")?);
            let (xs, ws) = (floats(xs, "xs")?, floats(ws, "ws")?);
            let bias = optional_bias(args, 4)?;
            let mut y = vec![0.0; rows * n];
            for r in 0..rows {
                for j in 0..n {
                    let acc: i64 = (0..kk).map(|i| xv[r * kk + i] * wv[j * kk + i]).sum();
                    y[r * n + j] = acc as f64 * xs[r] * ws[j] + bias.map_or(0.0, |b| b[j]);
                }
            }
            one(Tensor::f32(with_last(&xq.shape, n), y))
        }
        Op::CrossEntropy => {
            let (logits, targets) = (args[0], args[1]);
            let (rows, vocab) = logits.rows_last();
            let loss = k::loss::cross_entropy(
                floats(logits, "logits")?,
                rows,
                vocab,
                ints(targets, "targets")?,
            )
            .map_err(|m| EvalError {
                node: None,
                message: m,
            })?;
            one(Tensor::f32(vec![], vec![loss]))
        }
        Op::Fill { value, dtype, dims } => one(fill(*value, *dtype, dims, bind)?),
        Op::Grad(inner) => grad::eval_grad(inner, args),
        Op::Sgd { lr } => one(grad::sgd(args[0], args[1], *lr)?),
        Op::AdamW {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
        } => grad::adamw(
            args,
            &grad::AdamW {
                lr: *lr,
                beta1: *beta1,
                beta2: *beta2,
                eps: *eps,
                weight_decay: *weight_decay,
            },
        ),
    }
}
