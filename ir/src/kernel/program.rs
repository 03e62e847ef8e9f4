//! A Kernel IR program: buffers, shared loop-nest bodies and the kernels that run them.
//!
//! Lowering (in `bfly-targets`) turns each fused region of the optimized Graph IR into one
//! kernel: a semantic descriptor (`KernelKind`, for reports and for backends with hand-written
//! microkernels) plus a generic body any backend can compile. Kernels whose bodies print the
//! same share one `BodyId`, so identical layers compile once.
//!
//! Invariants (checked by `verify_program`):
//! - every kernel's args match its body's params in number, dtype and access;
//! - a `Param` buffer is written only by optimizer kernels (in place, after every reader);
//! - `Load`-phase kernels read only params and load-phase results, and run once at load.

use super::body::{Body, Expr};
use crate::types::{DType, Dim};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BufferId(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BodyId(pub u32);

impl fmt::Display for BufferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b{}", self.0)
    }
}

impl fmt::Display for BodyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "body{}", self.0)
    }
}

/// Where a buffer's storage comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum BufferKind {
    /// Graph input number `index` (tokens, targets, step), written by the caller.
    Input { index: usize },
    /// Graph output number `index` (logits, loss), read by the caller after a step.
    Output { index: usize },
    /// A model parameter (or optimizer moment), stored with the weights. Read-only except
    /// for in-place optimizer updates.
    Param { name: String },
    /// Persistent storage owned by the program: KV caches, weight-time results computed by
    /// load-phase kernels, packed weight layouts.
    State,
    /// Scratch in the arena; its offset comes from the memory plan.
    Temp,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Buffer {
    pub id: BufferId,
    /// A readable name: the graph value (`%24`), param (`layers.0.attn.q.theta`) or role
    /// (`kv.0.k`).
    pub name: String,
    pub dtype: DType,
    /// Dims; symbols (`T`, `B`) size the buffer at their bound.
    pub dims: Vec<Dim>,
    pub kind: BufferKind,
}

impl Buffer {
    /// Element count with every symbol at its bound (`bound("T")`).
    pub fn max_elements(&self, bound: &dyn Fn(&str) -> Option<u64>) -> Option<u64> {
        self.dims.iter().try_fold(1u64, |acc, d| {
            let v = match d {
                Dim::Const(c) => *c,
                Dim::Sym(s) => bound(s)?,
            };
            acc.checked_mul(v)
        })
    }

    pub fn max_bytes(&self, bound: &dyn Fn(&str) -> Option<u64>) -> Option<u64> {
        self.max_elements(bound)?
            .checked_mul(self.dtype.size_bytes() as u64)
    }
}

/// When a kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Once, after the weights are loaded (weight-time subgraphs, weight packing).
    Load,
    /// Every step (inference forward, or one training step).
    Step,
}

/// A GEMM `y[M, G·N] = x[M, G·K] · wᵀ` per group, with an epilogue.
#[derive(Clone, Debug, PartialEq)]
pub struct GemmDesc {
    /// Rows, as text (`T`, `B·T`, `64`).
    pub m: String,
    pub n: u64,
    pub k: u64,
    pub groups: u64,
    pub dtype: DType,
    /// Ops folded into the store (`bias`, `add`, `silu`, …), in order.
    pub epilogue: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ButterflyDesc {
    pub n: u64,
    /// Stages per block (log2 n) and blocks, stacks, groups of the twiddle tensor.
    pub stages: u64,
    pub blocks: u64,
    pub stacks: u64,
    pub groups: u64,
    pub dtype: DType,
    /// How the body walks the data (`pairs-in-lanes`, `tokens-in-lanes`).
    pub layout: String,
    /// The stage grouping of every block, in stage order (the graph's `radix` attribute,
    /// `Node::radix`): `[8, 4]` fuses stages 0–2 as a radix-8 pass and 3–4 as a radix-4
    /// pass; the product is `n`. Empty: the backend picks its own grouping. Printed as
    /// `radix = [...]` when set.
    pub radix: Vec<u32>,
    pub epilogue: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AttentionDesc {
    pub heads: u64,
    pub kv_heads: u64,
    pub head_dim: u64,
    /// Reads keys/values from a KV cache of `context` rows (inference) instead of the step's
    /// own k, v (training).
    pub cached: bool,
}

/// What a kernel computes, for reports and for backends that bring their own microkernel.
#[derive(Clone, Debug, PartialEq)]
pub enum KernelKind {
    Gemm(GemmDesc),
    /// int8 × int8 → i32 GEMM with a fused dequantize epilogue.
    QGemm(GemmDesc),
    Butterfly(ButterflyDesc),
    Monarch {
        n_in: u64,
        n_out: u64,
        groups: u64,
        epilogue: Vec<String>,
    },
    Attention(AttentionDesc),
    /// Copies the step's keys/values into the KV cache at `pos`.
    KvAppend {
        kv_dim: u64,
    },
    /// A reduction along rows: `rmsnorm`, `layernorm`, `softmax`, `cross_entropy`,
    /// `quantize`.
    RowOp {
        op: String,
        cols: u64,
    },
    /// Elementwise ops fused into one pass; `expr` names them (`silu(x0) * x1`).
    Map {
        expr: String,
    },
    Embed {
        vocab: u64,
        dim: u64,
    },
    Rope {
        heads: u64,
        head_dim: u64,
    },
    /// A twiddle producer (`dib`, `givens`, `hadamard`, `ternary`).
    Twiddles {
        producer: String,
    },
    /// Data movement: `reshape`, `transpose`, `concat`, `split`, `cast`, `pack`, `fill`.
    Layout {
        op: String,
    },
    /// The backward of a forward kind.
    Backward(Box<KernelKind>),
    Optimizer {
        rule: String,
    },
    /// Anything else, by its graph op name (e.g. `lora`, `dequantize`).
    Other {
        op: String,
    },
}

impl fmt::Display for KernelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let epi = |f: &mut fmt::Formatter<'_>, e: &[String]| {
            if e.is_empty() {
                Ok(())
            } else {
                write!(f, ", epilogue = [{}]", e.join(", "))
            }
        };
        match self {
            KernelKind::Gemm(g) | KernelKind::QGemm(g) => {
                let name = if matches!(self, KernelKind::Gemm(_)) {
                    "gemm"
                } else {
                    "qgemm"
                };
                write!(
                    f,
                    "{name}{{m = {}, n = {}, k = {}, groups = {}, {}",
                    g.m, g.n, g.k, g.groups, g.dtype
                )?;
                epi(f, &g.epilogue)?;
                f.write_str("}")
            }
            KernelKind::Butterfly(b) => {
                write!(
                    f,
                    "butterfly{{n = {}, stages = {}, blocks = {}, stacks = {}, groups = {}, {}, {}",
                    b.n, b.stages, b.blocks, b.stacks, b.groups, b.dtype, b.layout
                )?;
                if !b.radix.is_empty() {
                    let r: Vec<String> = b.radix.iter().map(u32::to_string).collect();
                    write!(f, ", radix = [{}]", r.join(", "))?;
                }
                epi(f, &b.epilogue)?;
                f.write_str("}")
            }
            KernelKind::Monarch {
                n_in,
                n_out,
                groups,
                epilogue,
            } => {
                write!(f, "monarch{{in = {n_in}, out = {n_out}, groups = {groups}")?;
                epi(f, epilogue)?;
                f.write_str("}")
            }
            KernelKind::Attention(a) => write!(
                f,
                "attention{{heads = {}, kv_heads = {}, head_dim = {}{}}}",
                a.heads,
                a.kv_heads,
                a.head_dim,
                if a.cached { ", kv_cache" } else { "" }
            ),
            KernelKind::KvAppend { kv_dim } => write!(f, "kv_append{{dim = {kv_dim}}}"),
            KernelKind::RowOp { op, cols } => write!(f, "row{{{op}, cols = {cols}}}"),
            KernelKind::Map { expr } => write!(f, "map{{{expr}}}"),
            KernelKind::Embed { vocab, dim } => write!(f, "embed{{vocab = {vocab}, dim = {dim}}}"),
            KernelKind::Rope { heads, head_dim } => {
                write!(f, "rope{{heads = {heads}, head_dim = {head_dim}}}")
            }
            KernelKind::Twiddles { producer } => write!(f, "twiddles{{{producer}}}"),
            KernelKind::Layout { op } => write!(f, "layout{{{op}}}"),
            KernelKind::Backward(inner) => write!(f, "backward.{inner}"),
            KernelKind::Optimizer { rule } => write!(f, "optimizer{{{rule}}}"),
            KernelKind::Other { op } => write!(f, "{op}"),
        }
    }
}

impl KernelKind {
    /// The short family name used in benchmark and fallback tables (`gemm`,
    /// `backward.butterfly`).
    pub fn family(&self) -> String {
        match self {
            KernelKind::Gemm(_) => "gemm".into(),
            KernelKind::QGemm(_) => "qgemm".into(),
            KernelKind::Butterfly(_) => "butterfly".into(),
            KernelKind::Monarch { .. } => "monarch".into(),
            KernelKind::Attention(_) => "attention".into(),
            KernelKind::KvAppend { .. } => "kv_append".into(),
            KernelKind::RowOp { op, .. } => format!("row.{op}"),
            KernelKind::Map { .. } => "map".into(),
            KernelKind::Embed { .. } => "embed".into(),
            KernelKind::Rope { .. } => "rope".into(),
            KernelKind::Twiddles { producer } => format!("twiddles.{producer}"),
            KernelKind::Layout { op } => format!("layout.{op}"),
            KernelKind::Backward(inner) => format!("backward.{}", inner.family()),
            KernelKind::Optimizer { rule } => format!("optimizer.{rule}"),
            KernelKind::Other { op } => op.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    /// `k7`-style index name plus the graph site it came from (`layers.0.attn.q`), if any.
    pub name: String,
    pub kind: KernelKind,
    pub body: BodyId,
    /// One buffer per body param, in order.
    pub args: Vec<BufferId>,
    pub phase: Phase,
    /// Graph values this kernel computes (`%24`, `%25`), for `inspect`.
    pub computes: Vec<String>,
}

/// A whole program: what `bfly inspect --emit kernels` prints and every backend compiles.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelProgram {
    pub name: String,
    /// Upper bounds of the graph's symbols (`T <= 64`, `B <= 8`).
    pub bounds: Vec<(String, u64)>,
    pub buffers: Vec<Buffer>,
    pub bodies: Vec<Body>,
    /// In execution order; load-phase kernels first.
    pub kernels: Vec<Kernel>,
}

impl KernelProgram {
    pub fn bound(&self, sym: &str) -> Option<u64> {
        self.bounds.iter().find(|(s, _)| s == sym).map(|&(_, v)| v)
    }

    pub fn buffer(&self, id: BufferId) -> &Buffer {
        &self.buffers[id.0 as usize]
    }

    pub fn body(&self, id: BodyId) -> &Body {
        &self.bodies[id.0 as usize]
    }

    /// Extent `(start, end)` of section `section` of a kernel for the given symbol values,
    /// or `None` if that section is not a parallel loop.
    pub fn section_extent(
        &self,
        kernel: &Kernel,
        section: usize,
        syms: &[i64; 3],
    ) -> Option<(i64, i64)> {
        let (start, end) = self.body(kernel.body).section_range(section)?;
        Some((start.eval_int(syms)?, end.eval_int(syms)?))
    }

    /// Adds `body` unless an identical one exists; returns its id either way.
    pub fn intern_body(&mut self, body: Body) -> BodyId {
        if let Some(i) = self.bodies.iter().position(|b| *b == body) {
            return BodyId(i as u32);
        }
        self.bodies.push(body);
        BodyId((self.bodies.len() - 1) as u32)
    }

    /// The text form (`bfly inspect --emit kernels`).
    pub fn print(&self) -> String {
        let mut out = String::new();
        let bounds: Vec<String> = self
            .bounds
            .iter()
            .map(|(s, v)| format!("{s} <= {v}"))
            .collect();
        out.push_str(&format!(
            "program @{} where {}\n\nbuffers:\n",
            self.name,
            if bounds.is_empty() {
                "-".to_string()
            } else {
                bounds.join(", ")
            }
        ));
        for b in &self.buffers {
            let dims: Vec<String> = b.dims.iter().map(ToString::to_string).collect();
            let kind = match &b.kind {
                BufferKind::Input { index } => format!("input {index}"),
                BufferKind::Output { index } => format!("output {index}"),
                BufferKind::Param { name } => format!("param @{name}"),
                BufferKind::State => "state".into(),
                BufferKind::Temp => "temp".into(),
            };
            out.push_str(&format!(
                "  {} {}: {}[{}] {kind}\n",
                b.id,
                b.name,
                b.dtype,
                dims.join(", ")
            ));
        }
        for phase in [Phase::Load, Phase::Step] {
            let ks: Vec<&Kernel> = self.kernels.iter().filter(|k| k.phase == phase).collect();
            if ks.is_empty() {
                continue;
            }
            out.push_str(match phase {
                Phase::Load => "\nload (once):\n",
                Phase::Step => "\nstep:\n",
            });
            for k in ks {
                let args: Vec<String> = k.args.iter().map(ToString::to_string).collect();
                out.push_str(&format!(
                    "  {} = {} {}({})",
                    k.name,
                    k.kind,
                    k.body,
                    args.join(", ")
                ));
                if !k.computes.is_empty() {
                    out.push_str(&format!("  ; {}", k.computes.join(" ")));
                }
                out.push('\n');
            }
        }
        for (i, body) in self.bodies.iter().enumerate() {
            out.push('\n');
            out.push_str(&body.print(&format!("body{i}")));
        }
        out
    }
}

/// The parallel extent expression of a body, as text (for reports).
pub fn extent_text(start: &Expr, end: &Expr) -> String {
    use super::body::ExprDisplay;
    format!(
        "{}..{}",
        ExprDisplay {
            expr: start,
            params: &[]
        },
        ExprDisplay {
            expr: end,
            params: &[]
        }
    )
}
