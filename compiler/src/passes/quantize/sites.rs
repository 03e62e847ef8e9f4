//! Finding the quantizable sites of a graph from its structure alone.
//!
//! A site is a linear op whose input varies per token and whose weights are *weight-time*: they
//! depend on parameters (and constants) only, so they are known once the weights are, and a
//! subgraph over them can be evaluated once at artifact/load time. That covers a bare `@W`
//! and anything a fold pass makes of it (`@W + s·B·A`, twiddles from a producer, …), and it
//! excludes weight-time arithmetic that happens to use the same ops (the `B·A` of a LoRA fold
//! is a `matmul` of two params, not a site).
//!
//! Sites are named after their parameters (`layers.0.attn.q.weight` → `layers.0.attn.q`), so
//! a pass after any other pass still finds them; the tied LM head (a `matmul` whose weight is
//! also an `embed` table) is `head`. A parameter-free butterfly (Hadamard without a bias) has
//! no name in the graph.

use std::collections::HashSet;

use bfly_ir::{DType, Dim, Graph, Loc, NodeId, Op, Value};

/// What kind of linear a site is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteKind {
    /// `matmul x, W [, bias]`.
    Dense,
    /// `matmul h, @embed.weight`: the LM head tied to the embedding table.
    TiedHead,
    /// `monarch x, w1, w2 [, bias]`.
    Monarch,
    /// `butterfly x, twiddles [, bias]`; `source` names where the canonical twiddles come
    /// from: `twiddles` (a parameter), `dib`, `givens`, `hadamard`, `ternary` (the producer,
    /// possibly wrapped by a fold), or `computed`.
    Butterfly { source: &'static str },
}

impl SiteKind {
    /// Short name for reports: `dense`, `head (tied)`, `monarch`, `butterfly (dib)`.
    pub fn label(&self) -> String {
        match self {
            SiteKind::Dense => "dense".into(),
            SiteKind::TiedHead => "dense (tied head)".into(),
            SiteKind::Monarch => "monarch".into(),
            SiteKind::Butterfly { source } => format!("butterfly ({source})"),
        }
    }
}

/// One quantizable linear op of a graph.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantSite {
    /// The linear op node.
    pub node: NodeId,
    pub kind: SiteKind,
    /// The site's name (`layers.0.mlp.up`, `head`), or `None` when no parameter names it.
    pub name: Option<String>,
    /// Spec location of the op, if known.
    pub loc: Option<Loc>,
}

impl QuantSite {
    /// The name, or for an unnamed site its kind and spec line (`butterfly (hadamard) at 12:5`).
    pub fn display_name(&self) -> String {
        match (&self.name, self.loc) {
            (Some(n), _) => n.clone(),
            (None, Some(l)) => format!("{} at {}:{}", self.kind.label(), l.line, l.col),
            (None, None) => format!("{} {}", self.kind.label(), self.node),
        }
    }
}

/// Parameter suffixes that name a linear site's own tensors (the builder's naming).
const SITE_SUFFIXES: &[&str] = &[
    "weight", "w1", "w2", "twiddles", "theta", "diag", "w", "bias",
];

/// The embedding table's parameter (also the tied head's weight).
pub const EMBED_TABLE: &str = "embed.weight";

/// Nodes whose value depends on a graph input or on a symbolic size bound at run time.
pub fn run_time_nodes(g: &Graph, order: &[NodeId]) -> HashSet<NodeId> {
    let mut run = HashSet::new();
    for &id in order {
        let node = g.node(id);
        let varies = match &node.op {
            Op::Input { .. } => true,
            Op::Fill { dims, .. } => dims.iter().any(|d| matches!(d, Dim::Sym(_))),
            _ => g.operands(id).iter().any(|v| run.contains(&v.node)),
        };
        if varies {
            run.insert(id);
        }
    }
    run
}

/// Every site in schedule order. Sites already quantized (by an earlier run) are skipped, so
/// the pass is idempotent. Returns `None` for a cyclic graph.
pub fn find_sites(g: &Graph) -> Option<Vec<QuantSite>> {
    let order = g.topo_order()?;
    let run = run_time_nodes(g, &order);
    let weight_time = |v: &Value| !run.contains(&v.node);
    let f32_value = |v: &Value| g.value_type(*v).dtype == DType::F32;
    let mut sites = Vec::new();
    for &id in &order {
        let node = g.node(id);
        let ops = g.operands(id);
        let Some((x, weights)) = ops.split_first() else {
            continue;
        };
        // The per-token input varies; every other operand (weights, bias) is weight-time.
        let shaped = run.contains(&x.node)
            && f32_value(x)
            && weights.iter().all(|w| weight_time(w) && f32_value(w));
        if !shaped || adapter_only(g, weights) {
            continue;
        }
        let kind = match &node.op {
            Op::Matmul if ops.len() >= 2 => {
                if already_quantized(g, ops[1]) {
                    continue;
                }
                if is_embedding_table(g, ops[1]) {
                    SiteKind::TiedHead
                } else {
                    SiteKind::Dense
                }
            }
            Op::Monarch { .. } if ops.len() >= 3 => {
                if already_quantized(g, ops[1]) || already_quantized(g, ops[2]) {
                    continue;
                }
                SiteKind::Monarch
            }
            Op::Butterfly { .. } if ops.len() >= 2 => {
                if already_quantized(g, ops[1]) || super::rotate::is_rotation(g, id) {
                    continue;
                }
                SiteKind::Butterfly {
                    source: twiddle_source(g, ops[1]),
                }
            }
            _ => continue,
        };
        let name = if kind == SiteKind::TiedHead {
            Some("head".to_string())
        } else {
            site_name(g, weights)
        };
        sites.push(QuantSite {
            node: id,
            kind,
            name,
            loc: node.loc,
        });
    }
    Some(sites)
}

/// Parameters reached from `weights` through weight-time producers, depth first.
fn params_behind<'g>(g: &'g Graph, weights: &[Value]) -> Vec<&'g str> {
    let mut params = Vec::new();
    let mut seen = HashSet::new();
    let mut stack: Vec<NodeId> = weights.iter().rev().map(|v| v.node).collect();
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        match &g.node(id).op {
            Op::Param(p) => params.push(p.name.as_str()),
            _ => stack.extend(g.operands(id).iter().rev().map(|v| v.node)),
        }
    }
    params
}

/// A LoRA side path (`x·Aᵀ`, `·Bᵀ`, or the shared `x·concat(A…)ᵀ`): its weights are adapter
/// tensors only. Adapters stay f32: they are small, and a new adapter file swaps in at run
/// time without recompiling (DESIGN §5), which an int8 copy made at compile time would defeat.
/// A dense site with a folded adapter (`W + s·B·A`) is still quantized: that weight is
/// weight-time, so a swapped adapter is re-folded and re-quantized at load.
fn adapter_only(g: &Graph, weights: &[Value]) -> bool {
    let params = params_behind(g, weights);
    !params.is_empty()
        && params
            .iter()
            .all(|p| p.ends_with(".lora_a") || p.ends_with(".lora_b"))
}

/// Is `w` the output of a quantization round trip (`cast` back to f32, or `dequantize`)?
fn already_quantized(g: &Graph, w: Value) -> bool {
    matches!(
        g.node(w.node).op,
        Op::Cast { to: DType::F32 } | Op::Dequantize
    )
}

/// Is `w` a parameter that an `embed` op also reads as its table (a tied head)?
fn is_embedding_table(g: &Graph, w: Value) -> bool {
    matches!(g.node(w.node).op, Op::Param(_))
        && g.users(w.node)
            .into_iter()
            .any(|u| matches!(g.node(u).op, Op::Embed) && g.operands(u).get(1) == Some(&w))
}

/// Where canonical twiddles come from: the first producer op or `*.twiddles` parameter found
/// depth first (a fold may have wrapped the producer, e.g. scaled it by a norm gain).
fn twiddle_source(g: &Graph, t: Value) -> &'static str {
    let mut seen = HashSet::new();
    let mut stack = vec![t.node];
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        let source = match &g.node(id).op {
            Op::Param(p) if p.name.ends_with(".twiddles") => "twiddles",
            Op::DibTwiddles { .. } => "dib",
            Op::GivensTwiddles => "givens",
            Op::HadamardTwiddles { .. } => "hadamard",
            Op::TernaryTwiddles { .. } => "ternary",
            Op::Param(_) => continue,
            _ => {
                stack.extend(g.operands(id).iter().rev().map(|v| v.node));
                continue;
            }
        };
        return source;
    }
    "computed"
}

/// The site a set of weight-time operands belongs to: the owner of the first parameter
/// (depth first, in operand order) named like a site tensor (`X.weight`, `X.w1`, `X.theta`,
/// `X.bias`, …); failing that, the owner of the first parameter at all.
fn site_name(g: &Graph, weights: &[Value]) -> Option<String> {
    let params = params_behind(g, weights);
    let split = |name: &str| {
        name.rsplit_once('.')
            .map(|(o, s)| (o.to_string(), s.to_string()))
    };
    params
        .iter()
        .filter_map(|p| split(p))
        .find(|(_, suffix)| SITE_SUFFIXES.contains(&suffix.as_str()))
        .map(|(owner, _)| owner)
        .or_else(|| {
            params
                .first()
                .and_then(|p| split(p))
                .map(|(owner, _)| owner)
        })
}
