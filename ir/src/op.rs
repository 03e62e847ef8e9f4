//! The op set of the Graph IR, with typed attributes.
//!
//! Each op knows its text name, how its attributes print, and how to rebuild itself from a
//! parsed attribute list. Result types are inferred in `infer.rs`; both directions share the
//! attribute names defined here, so the text form round-trips.

use crate::types::{DType, Dim};
use std::fmt;

/// Stride order of a butterfly's first block (block b uses `increasing XOR (b odd)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StrideOrder {
    Increasing,
    Decreasing,
}

impl StrideOrder {
    pub fn name(self) -> &'static str {
        match self {
            StrideOrder::Increasing => "increasing",
            StrideOrder::Decreasing => "decreasing",
        }
    }

    pub fn is_increasing(self) -> bool {
        self == StrideOrder::Increasing
    }

    pub fn from_name(s: &str) -> Option<StrideOrder> {
        match s {
            "increasing" => Some(StrideOrder::Increasing),
            "decreasing" => Some(StrideOrder::Decreasing),
            _ => None,
        }
    }
}

/// How a parameter gets its initial value when no weights are supplied.
#[derive(Clone, Debug, PartialEq)]
pub enum Init {
    Zeros,
    Ones,
    Const(f64),
    Normal {
        std: f64,
    },
    Uniform {
        lo: f64,
        hi: f64,
    },
    /// Values come from a weights file or artifact; there is no initializer.
    External,
}

impl fmt::Display for Init {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Init::Zeros => f.write_str("init zeros"),
            Init::Ones => f.write_str("init ones"),
            Init::Const(v) => write!(f, "init const({})", fmt_float(*v)),
            Init::Normal { std } => write!(f, "init normal({})", fmt_float(*std)),
            Init::Uniform { lo, hi } => {
                write!(f, "init uniform({}, {})", fmt_float(*lo), fmt_float(*hi))
            }
            Init::External => f.write_str("external"),
        }
    }
}

/// Shortest text that parses back to the same f64 (Rust's `{:?}`), e.g. `1e-5`, `10000.0`.
pub fn fmt_float(v: f64) -> String {
    format!("{v:?}")
}

/// A named, possibly trainable tensor of the model.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: String,
    pub init: Init,
    pub trainable: bool,
}

/// An attribute value as it appears in the text form.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    Int(i64),
    Float(f64),
    Bool(bool),
    Ident(String),
    Str(String),
    List(Vec<AttrValue>),
}

impl fmt::Display for AttrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrValue::Int(i) => write!(f, "{i}"),
            AttrValue::Float(v) => f.write_str(&fmt_float(*v)),
            AttrValue::Bool(b) => write!(f, "{b}"),
            AttrValue::Ident(s) => f.write_str(s),
            AttrValue::Str(s) => write!(f, "{s:?}"),
            AttrValue::List(items) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
        }
    }
}

/// Graph IR operations. Sources (`Input`, `Param`) are nodes like any other so that every
/// value is a node result.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Graph input number `index` (name and type live on the graph signature).
    Input {
        name: String,
    },
    Param(Param),

    /// `embed tokens, table` → rows of `table[V, D]` picked by i32 tokens.
    Embed,
    /// `matmul x, w [, bias]`: `y = x · wᵀ` with `w: [N, K]` (or `[G, N, K]` block-diagonal
    /// per group: `x[..., G·K] → y[..., G·N]`).
    Matmul,
    /// `butterfly x, twiddles [, bias]` with canonical twiddles `[G, S, B, L, n/2, 2, 2]`.
    Butterfly {
        n_in: u64,
        n_out: u64,
        stride: StrideOrder,
    },
    /// `monarch x, w1 [G,k,q,p], w2 [G,l,s,r] [, bias]`.
    Monarch {
        n_in: u64,
        n_out: u64,
    },
    /// `givens_twiddles theta[G,S,B,L,n/2]` → `[[c, −s],[s, c]]`.
    GivensTwiddles,
    /// `dib_twiddles theta[G,S,B,L,n/2], diag[G,S,B,L,n]` → `[[d_p c, −d_p s],[d_q s, d_q c]]`.
    DibTwiddles {
        stride: StrideOrder,
    },
    /// Fixed normalized Walsh–Hadamard twiddles, no operands.
    HadamardTwiddles {
        groups: u64,
        stacks: u64,
        blocks: u64,
        n: u64,
    },
    /// `ternary_twiddles w[G,S,B,L,n/2]` → `[[1, t],[1, −t]]`, t ∈ {−α, 0, α}.
    TernaryTwiddles {
        alpha: f64,
    },
    /// `lora x, a[r, K], b[N, r]` → `scale · b·(a·x)` (the adapter's side path only).
    Lora {
        scale: f64,
    },

    Add,
    Sub,
    Mul,
    Neg,
    Exp,
    Silu,
    Gelu,
    Sigmoid,
    /// Multiply by a compile-time constant.
    Scale {
        factor: f64,
    },

    /// `rmsnorm x, gain` over the last axis.
    RmsNorm {
        eps: f64,
    },
    /// `layernorm x, gain, bias` over the last axis.
    LayerNorm {
        eps: f64,
    },
    /// Softmax over the last axis.
    Softmax,
    /// Rotary embedding on `x[..., T, heads·head_dim]`; position = index along the T axis.
    Rope {
        heads: u64,
        base: f64,
    },
    /// `causal_attention q, k, v`, each `[..., T, heads·head_dim]` (k, v: `kv_heads`).
    CausalAttention {
        heads: u64,
        kv_heads: u64,
    },

    Reshape {
        dims: Vec<Dim>,
    },
    Transpose {
        perm: Vec<u64>,
    },
    Split {
        axis: u64,
        sizes: Vec<u64>,
    },
    Concat {
        axis: u64,
    },
    Cast {
        to: DType,
    },

    /// `quantize x` → (i8 values, f32 per-row scales), symmetric over the last axis.
    Quantize,
    /// `dequantize q, scales` → f32.
    Dequantize,
    /// `qmatmul xq, xs, wq, ws [, bias]`: int8 GEMM with per-row activation scales and
    /// per-output-channel weight scales, dequantized in the epilogue.
    QMatmul,

    /// `cross_entropy logits, targets` → mean negative log-likelihood, `f32[]`.
    CrossEntropy,

    /// A constant tensor (dims may be symbolic: bound at run time). Seeds backward (`1.0`).
    Fill {
        value: f64,
        dtype: DType,
        dims: Vec<Dim>,
    },
    /// The vector–Jacobian product of a forward op, printed `OP.grad` with the forward op's
    /// attributes. Operands: the forward operands, then one upstream gradient per forward
    /// result. Results: the gradient of each float forward operand, in operand order
    /// (integer operands such as tokens get none). Broadcasting ops reduce their gradients to
    /// the operand's shape.
    Grad(Box<Op>),
    /// `sgd p, g` → `p − lr·g`.
    Sgd {
        lr: f64,
    },
    /// `adamw p, g, m, v, step` → `(p', m', v')`: Adam with bias correction for the 1-based
    /// `step` (`f32[]`) and decoupled weight decay `p' = p − lr·(m̂/(√v̂ + eps) + wd·p)`.
    AdamW {
        lr: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
    },
}

/// Attribute list of an op, in print order.
pub type Attrs = Vec<(&'static str, AttrValue)>;

fn int(v: u64) -> AttrValue {
    AttrValue::Int(v as i64)
}

fn dims_attr(dims: &[Dim]) -> AttrValue {
    AttrValue::List(
        dims.iter()
            .map(|d| match d {
                Dim::Const(c) => int(*c),
                Dim::Sym(s) => AttrValue::Ident(s.clone()),
            })
            .collect(),
    )
}

fn ints(v: &[u64]) -> AttrValue {
    AttrValue::List(v.iter().map(|&x| int(x)).collect())
}

impl Op {
    /// Every op name of the text form, for error hints.
    pub const NAMES: &'static [&'static str] = &[
        "embed",
        "matmul",
        "butterfly",
        "monarch",
        "givens_twiddles",
        "dib_twiddles",
        "hadamard_twiddles",
        "ternary_twiddles",
        "lora",
        "add",
        "sub",
        "mul",
        "neg",
        "exp",
        "silu",
        "gelu",
        "sigmoid",
        "scale",
        "rmsnorm",
        "layernorm",
        "softmax",
        "rope",
        "causal_attention",
        "reshape",
        "transpose",
        "split",
        "concat",
        "cast",
        "quantize",
        "dequantize",
        "qmatmul",
        "cross_entropy",
        "fill",
        "sgd",
        "adamw",
    ];

    /// The op's name in the text form (`butterfly`, `butterfly.grad`).
    pub fn name(&self) -> std::borrow::Cow<'static, str> {
        match self {
            Op::Grad(inner) => format!("{}.grad", inner.name()).into(),
            op => op.base_name().into(),
        }
    }

    fn base_name(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Param(_) => "param",
            Op::Embed => "embed",
            Op::Matmul => "matmul",
            Op::Butterfly { .. } => "butterfly",
            Op::Monarch { .. } => "monarch",
            Op::GivensTwiddles => "givens_twiddles",
            Op::DibTwiddles { .. } => "dib_twiddles",
            Op::HadamardTwiddles { .. } => "hadamard_twiddles",
            Op::TernaryTwiddles { .. } => "ternary_twiddles",
            Op::Lora { .. } => "lora",
            Op::Add => "add",
            Op::Sub => "sub",
            Op::Mul => "mul",
            Op::Neg => "neg",
            Op::Exp => "exp",
            Op::Silu => "silu",
            Op::Gelu => "gelu",
            Op::Sigmoid => "sigmoid",
            Op::Scale { .. } => "scale",
            Op::RmsNorm { .. } => "rmsnorm",
            Op::LayerNorm { .. } => "layernorm",
            Op::Softmax => "softmax",
            Op::Rope { .. } => "rope",
            Op::CausalAttention { .. } => "causal_attention",
            Op::Reshape { .. } => "reshape",
            Op::Transpose { .. } => "transpose",
            Op::Split { .. } => "split",
            Op::Concat { .. } => "concat",
            Op::Cast { .. } => "cast",
            Op::Quantize => "quantize",
            Op::Dequantize => "dequantize",
            Op::QMatmul => "qmatmul",
            Op::CrossEntropy => "cross_entropy",
            Op::Fill { .. } => "fill",
            Op::Sgd { .. } => "sgd",
            Op::AdamW { .. } => "adamw",
            Op::Grad(_) => "grad",
        }
    }

    /// How many results the op produces (independent of operand types).
    pub fn num_results(&self) -> usize {
        match self {
            Op::Split { sizes, .. } => sizes.len(),
            Op::Quantize => 2,
            Op::AdamW { .. } => 3,
            // One gradient per float operand: known only from types, see `infer`.
            Op::Grad(_) => 0,
            _ => 1,
        }
    }

    /// Can autodiff take the VJP of this op? (Sources have no operands to differentiate;
    /// int8 ops are inference-only; no second derivatives.)
    pub fn is_differentiable(&self) -> bool {
        !matches!(
            self,
            Op::Input { .. }
                | Op::Param(_)
                | Op::HadamardTwiddles { .. }
                | Op::Quantize
                | Op::Dequantize
                | Op::QMatmul
                | Op::Fill { .. }
                | Op::Grad(_)
                | Op::Sgd { .. }
                | Op::AdamW { .. }
        )
    }

    /// Is this a source node (input or parameter) rather than a computation?
    pub fn is_source(&self) -> bool {
        matches!(self, Op::Input { .. } | Op::Param(_))
    }

    /// Accepted operand counts (min, max).
    pub fn arity(&self) -> (usize, usize) {
        match self {
            Op::Input { .. } | Op::Param(_) | Op::HadamardTwiddles { .. } | Op::Fill { .. } => {
                (0, 0)
            }
            Op::Sgd { .. } => (2, 2),
            Op::AdamW { .. } => (5, 5),
            Op::Grad(inner) => {
                let (lo, hi) = inner.arity();
                let r = inner.num_results();
                (lo + r, hi.saturating_add(r))
            }
            Op::Neg
            | Op::Exp
            | Op::Silu
            | Op::Gelu
            | Op::Sigmoid
            | Op::Scale { .. }
            | Op::Softmax
            | Op::Rope { .. }
            | Op::Reshape { .. }
            | Op::Transpose { .. }
            | Op::Split { .. }
            | Op::Cast { .. }
            | Op::Quantize
            | Op::GivensTwiddles
            | Op::TernaryTwiddles { .. } => (1, 1),
            Op::Embed
            | Op::Add
            | Op::Sub
            | Op::Mul
            | Op::RmsNorm { .. }
            | Op::Dequantize
            | Op::CrossEntropy
            | Op::DibTwiddles { .. } => (2, 2),
            Op::Matmul | Op::Butterfly { .. } => (2, 3),
            Op::LayerNorm { .. } | Op::CausalAttention { .. } | Op::Lora { .. } => (3, 3),
            Op::Monarch { .. } => (3, 4),
            Op::QMatmul => (4, 5),
            Op::Concat { .. } => (1, usize::MAX),
        }
    }

    /// Attributes in print order. Defaults are printed too: the text says everything.
    pub fn attrs(&self) -> Attrs {
        match self {
            Op::Butterfly {
                n_in,
                n_out,
                stride,
            } => vec![
                ("in", int(*n_in)),
                ("out", int(*n_out)),
                ("stride", AttrValue::Ident(stride.name().into())),
            ],
            Op::Monarch { n_in, n_out } => vec![("in", int(*n_in)), ("out", int(*n_out))],
            Op::DibTwiddles { stride } => {
                vec![("stride", AttrValue::Ident(stride.name().into()))]
            }
            Op::HadamardTwiddles {
                groups,
                stacks,
                blocks,
                n,
            } => vec![
                ("n", int(*n)),
                ("groups", int(*groups)),
                ("stacks", int(*stacks)),
                ("blocks", int(*blocks)),
            ],
            Op::TernaryTwiddles { alpha } => vec![("alpha", AttrValue::Float(*alpha))],
            Op::Lora { scale } => vec![("scale", AttrValue::Float(*scale))],
            Op::Scale { factor } => vec![("factor", AttrValue::Float(*factor))],
            Op::RmsNorm { eps } | Op::LayerNorm { eps } => vec![("eps", AttrValue::Float(*eps))],
            Op::Rope { heads, base } => {
                vec![("heads", int(*heads)), ("base", AttrValue::Float(*base))]
            }
            Op::CausalAttention { heads, kv_heads } => {
                vec![("heads", int(*heads)), ("kv_heads", int(*kv_heads))]
            }
            Op::Reshape { dims } => vec![("dims", dims_attr(dims))],
            Op::Transpose { perm } => vec![("perm", ints(perm))],
            Op::Split { axis, sizes } => vec![("axis", int(*axis)), ("sizes", ints(sizes))],
            Op::Concat { axis } => vec![("axis", int(*axis))],
            Op::Cast { to } => vec![("to", AttrValue::Ident(to.name().into()))],
            Op::Fill { value, dtype, dims } => vec![
                ("value", AttrValue::Float(*value)),
                ("dtype", AttrValue::Ident(dtype.name().into())),
                ("dims", dims_attr(dims)),
            ],
            Op::Grad(inner) => inner.attrs(),
            Op::Sgd { lr } => vec![("lr", AttrValue::Float(*lr))],
            Op::AdamW {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            } => vec![
                ("lr", AttrValue::Float(*lr)),
                ("beta1", AttrValue::Float(*beta1)),
                ("beta2", AttrValue::Float(*beta2)),
                ("eps", AttrValue::Float(*eps)),
                ("weight_decay", AttrValue::Float(*weight_decay)),
            ],
            _ => Vec::new(),
        }
    }

    /// Rebuilds an op from its text name and attributes. Errors name the attribute and say
    /// what was expected.
    pub fn from_text(name: &str, attrs: &[(String, AttrValue)]) -> Result<Op, String> {
        if let Some(forward) = name.strip_suffix(".grad") {
            let inner = Op::from_text(forward, attrs)?;
            if !inner.is_differentiable() {
                return Err(format!("`{forward}` has no gradient op"));
            }
            return Ok(Op::Grad(Box::new(inner)));
        }
        let mut a = AttrReader::new(name, attrs);
        let op = match name {
            "embed" => Op::Embed,
            "matmul" => Op::Matmul,
            "butterfly" => Op::Butterfly {
                n_in: a.uint("in")?,
                n_out: a.uint("out")?,
                stride: a.stride("stride")?,
            },
            "monarch" => Op::Monarch {
                n_in: a.uint("in")?,
                n_out: a.uint("out")?,
            },
            "givens_twiddles" => Op::GivensTwiddles,
            "dib_twiddles" => Op::DibTwiddles {
                stride: a.stride("stride")?,
            },
            "hadamard_twiddles" => Op::HadamardTwiddles {
                n: a.uint("n")?,
                groups: a.uint("groups")?,
                stacks: a.uint("stacks")?,
                blocks: a.uint("blocks")?,
            },
            "ternary_twiddles" => Op::TernaryTwiddles {
                alpha: a.float("alpha")?,
            },
            "lora" => Op::Lora {
                scale: a.float("scale")?,
            },
            "add" => Op::Add,
            "sub" => Op::Sub,
            "mul" => Op::Mul,
            "neg" => Op::Neg,
            "exp" => Op::Exp,
            "silu" => Op::Silu,
            "gelu" => Op::Gelu,
            "sigmoid" => Op::Sigmoid,
            "scale" => Op::Scale {
                factor: a.float("factor")?,
            },
            "rmsnorm" => Op::RmsNorm {
                eps: a.float("eps")?,
            },
            "layernorm" => Op::LayerNorm {
                eps: a.float("eps")?,
            },
            "softmax" => Op::Softmax,
            "rope" => Op::Rope {
                heads: a.uint("heads")?,
                base: a.float("base")?,
            },
            "causal_attention" => Op::CausalAttention {
                heads: a.uint("heads")?,
                kv_heads: a.uint("kv_heads")?,
            },
            "reshape" => Op::Reshape {
                dims: a.dims("dims")?,
            },
            "transpose" => Op::Transpose {
                perm: a.uints("perm")?,
            },
            "split" => Op::Split {
                axis: a.uint("axis")?,
                sizes: a.uints("sizes")?,
            },
            "concat" => Op::Concat {
                axis: a.uint("axis")?,
            },
            "cast" => Op::Cast { to: a.dtype("to")? },
            "quantize" => Op::Quantize,
            "dequantize" => Op::Dequantize,
            "qmatmul" => Op::QMatmul,
            "cross_entropy" => Op::CrossEntropy,
            "fill" => Op::Fill {
                value: a.float("value")?,
                dtype: a.dtype("dtype")?,
                dims: a.dims("dims")?,
            },
            "sgd" => Op::Sgd { lr: a.float("lr")? },
            "adamw" => Op::AdamW {
                lr: a.float("lr")?,
                beta1: a.float("beta1")?,
                beta2: a.float("beta2")?,
                eps: a.float("eps")?,
                weight_decay: a.float("weight_decay")?,
            },
            _ => return Err(format!("unknown op `{name}`")),
        };
        a.finish()?;
        Ok(op)
    }
}

/// Reads typed attributes out of a parsed list and reports missing, mistyped and unknown
/// keys.
struct AttrReader<'a> {
    op: &'a str,
    attrs: &'a [(String, AttrValue)],
    used: Vec<bool>,
}

impl<'a> AttrReader<'a> {
    fn new(op: &'a str, attrs: &'a [(String, AttrValue)]) -> Self {
        AttrReader {
            op,
            attrs,
            used: vec![false; attrs.len()],
        }
    }

    fn get(&mut self, key: &str) -> Result<&'a AttrValue, String> {
        match self.attrs.iter().position(|(k, _)| k == key) {
            Some(i) => {
                self.used[i] = true;
                Ok(&self.attrs[i].1)
            }
            None => Err(format!("`{}` needs the attribute `{key}`", self.op)),
        }
    }

    fn wrong(&self, key: &str, want: &str, got: &AttrValue) -> String {
        format!(
            "attribute `{key}` of `{}` must be {want}, found `{got}`",
            self.op
        )
    }

    fn uint(&mut self, key: &str) -> Result<u64, String> {
        match self.get(key)? {
            AttrValue::Int(i) if *i >= 0 => Ok(*i as u64),
            v => Err(self.wrong(key, "a non-negative integer", v)),
        }
    }

    fn float(&mut self, key: &str) -> Result<f64, String> {
        match self.get(key)? {
            AttrValue::Float(f) => Ok(*f),
            AttrValue::Int(i) => Ok(*i as f64),
            v => Err(self.wrong(key, "a number", v)),
        }
    }

    fn ident(&mut self, key: &str) -> Result<&'a str, String> {
        match self.get(key)? {
            AttrValue::Ident(s) => Ok(s),
            v => Err(self.wrong(key, "an identifier", v)),
        }
    }

    fn stride(&mut self, key: &str) -> Result<StrideOrder, String> {
        let s = self.ident(key)?;
        StrideOrder::from_name(s)
            .ok_or_else(|| format!("attribute `{key}` must be `increasing` or `decreasing`"))
    }

    fn dtype(&mut self, key: &str) -> Result<DType, String> {
        let s = self.ident(key)?;
        DType::from_name(s)
            .ok_or_else(|| format!("attribute `{key}` must be a dtype (f32, f16, i8, i32)"))
    }

    fn list(&mut self, key: &str) -> Result<&'a [AttrValue], String> {
        match self.get(key)? {
            AttrValue::List(items) => Ok(items),
            v => Err(self.wrong(key, "a list", v)),
        }
    }

    fn uints(&mut self, key: &str) -> Result<Vec<u64>, String> {
        let items = self.list(key)?;
        items
            .iter()
            .map(|v| match v {
                AttrValue::Int(i) if *i >= 0 => Ok(*i as u64),
                v => Err(self.wrong(key, "a list of non-negative integers", v)),
            })
            .collect()
    }

    fn dims(&mut self, key: &str) -> Result<Vec<Dim>, String> {
        let items = self.list(key)?;
        items
            .iter()
            .map(|v| match v {
                AttrValue::Int(i) if *i >= 0 => Ok(Dim::Const(*i as u64)),
                AttrValue::Ident(s) => Ok(Dim::Sym(s.clone())),
                v => Err(self.wrong(key, "a list of dims (integers or symbols)", v)),
            })
            .collect()
    }

    fn finish(self) -> Result<(), String> {
        match self.used.iter().position(|u| !u) {
            Some(i) => Err(format!(
                "`{}` has no attribute `{}`",
                self.op, self.attrs[i].0
            )),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_name_round_trips_through_its_attrs() {
        let samples = [
            Op::Butterfly {
                n_in: 100,
                n_out: 300,
                stride: StrideOrder::Decreasing,
            },
            Op::HadamardTwiddles {
                groups: 4,
                stacks: 1,
                blocks: 2,
                n: 32,
            },
            Op::Reshape {
                dims: vec![Dim::sym("T"), Dim::Const(4), Dim::Const(32)],
            },
            Op::Cast { to: DType::F16 },
            Op::RmsNorm { eps: 1e-5 },
            Op::Split {
                axis: 1,
                sizes: vec![64, 64],
            },
            Op::Grad(Box::new(Op::RmsNorm { eps: 1e-6 })),
            Op::Fill {
                value: 1.0,
                dtype: DType::F32,
                dims: vec![Dim::sym("B"), Dim::Const(3)],
            },
            Op::AdamW {
                lr: 3e-4,
                beta1: 0.9,
                beta2: 0.95,
                eps: 1e-8,
                weight_decay: 0.0,
            },
        ];
        for op in samples {
            let attrs: Vec<(String, AttrValue)> = op
                .attrs()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            assert_eq!(Op::from_text(&op.name(), &attrs), Ok(op));
        }
        for name in Op::NAMES {
            // Ops without attributes rebuild from the bare name; the rest report what is
            // missing instead of panicking.
            let _ = Op::from_text(name, &[]);
        }
    }

    #[test]
    fn reports_unknown_and_missing_attrs() {
        let err = Op::from_text("rmsnorm", &[]).unwrap_err();
        assert!(err.contains("`eps`"), "{err}");
        let err = Op::from_text("add", &[("bogus".into(), AttrValue::Int(1))]).unwrap_err();
        assert!(err.contains("no attribute `bogus`"), "{err}");
    }
}
