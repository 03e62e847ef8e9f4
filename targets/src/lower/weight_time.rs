//! Which values depend only on the weights, and a readable site name for kernels.
//!
//! The weight-time rule is the compiler's (`compiler/src/passes/weight_time.rs`), restated
//! here because `targets` cannot depend on `compiler`: a value is weight-time when every
//! source it depends on is a parameter, a `fill` whose dims are all constants, or a
//! `hadamard_twiddles`, and no graph input reaches it. In inference such values are computed
//! once, by load-phase kernels, into state buffers.

use bfly_ir::{Dim, Graph, NodeId, Op};
use std::collections::{HashSet, VecDeque};

/// The weight-time nodes of `g`, given a topological `order`.
pub(crate) fn weight_time(g: &Graph, order: &[NodeId]) -> HashSet<NodeId> {
    let mut wt = HashSet::new();
    for &id in order {
        let yes = match &g.node(id).op {
            Op::Input { .. } => false,
            Op::Param(_) | Op::HadamardTwiddles { .. } => true,
            Op::Fill { dims, .. } => dims.iter().all(|d| matches!(d, Dim::Const(_))),
            _ => g.operands(id).iter().all(|v| wt.contains(&v.node)),
        };
        if yes {
            wt.insert(id);
        }
    }
    wt
}

/// Where a kernel comes from, for its name: the model site of a parameter the node reads,
/// directly or through weight-time values (`layers.0.attn.q` for a butterfly whose twiddles
/// come from `@layers.0.attn.q.theta`), else the spec location (`@12:14`), else nothing.
pub(crate) fn site_hint(g: &Graph, id: NodeId, wt: &HashSet<NodeId>) -> String {
    let mut queue: VecDeque<NodeId> = g.operands(id).iter().map(|v| v.node).collect();
    let mut seen: HashSet<NodeId> = HashSet::new();
    while let Some(n) = queue.pop_front() {
        if !seen.insert(n) || seen.len() > 64 {
            continue;
        }
        match &g.node(n).op {
            Op::Param(p) => {
                let site = p.name.rsplit_once('.').map_or(p.name.as_str(), |(s, _)| s);
                return format!(".{site}");
            }
            _ if wt.contains(&n) => queue.extend(g.operands(n).iter().map(|v| v.node)),
            _ => {}
        }
    }
    match g.node(id).loc {
        Some(loc) => format!("@{}:{}", loc.line, loc.col),
        None => String::new(),
    }
}
