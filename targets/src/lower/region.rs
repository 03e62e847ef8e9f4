//! Fused regions (see `compiler/src/passes/fuse.rs` for how they are formed): which ones
//! fold into one producer's store, and which are concatenated.
//!
//! A region folds when it ends in a producer (`matmul`, `butterfly`, `monarch`, `qmatmul`)
//! followed only by elementwise links, each reading the previous value (its only reader, not
//! a graph output) and another operand that is not itself a folded value. Every link keeps
//! the producer's shape; an intermediate link must be f32 (folding skips the rounding an f16
//! intermediate would get), only the last may change the dtype. Members before the producer
//! (earlier butterflies of a chain) are lowered as they are.

use super::elementwise::Ew;
use super::epilogue::{Epilogue, Link, Other};
use super::ops::takes_epilogue;
use bfly_ir::{DType, Graph, NodeId, Value};

pub(crate) struct EpiloguePlan {
    pub prefix: Vec<NodeId>,
    pub anchor: NodeId,
    pub links: Vec<NodeId>,
    pub epilogue: Epilogue,
    /// The links' other operands, in the order the fused site appends them.
    pub extra: Vec<Value>,
}

/// The epilogue plan of a region (members in schedule order), if it folds. `sole_reader(v)`
/// is the only node reading `v` when exactly one node does and `v` is not a graph output.
pub(crate) fn epilogue_plan(
    g: &Graph,
    members: &[NodeId],
    sole_reader: &dyn Fn(Value) -> Option<NodeId>,
) -> Option<EpiloguePlan> {
    let a = members
        .iter()
        .rposition(|&id| takes_epilogue(&g.node(id).op))?;
    let (anchor, tail) = (members[a], &members[a + 1..]);
    if tail.is_empty() || g.node(anchor).results.len() != 1 {
        return None;
    }
    let shape = &g.node(anchor).results[0];
    if shape.dtype != DType::F32 {
        return None;
    }
    let base = g.operands(anchor).len();
    let mut chain = Value::first(anchor);
    let mut folded = vec![anchor];
    let (mut links, mut extra) = (Vec::new(), Vec::new());
    for (k, &id) in tail.iter().enumerate() {
        let node = g.node(id);
        let last = k + 1 == tail.len();
        let ew = Ew::of(&node.op, g.value_type(chain).dtype)?;
        if node.results.len() != 1
            || node.results[0].dims != shape.dims
            || (!last && node.results[0].dtype != DType::F32)
            || sole_reader(chain) != Some(id)
        {
            return None;
        }
        let ops = g.operands(id);
        let other = match (ew.arity(), &ops[..]) {
            (1, [x]) if *x == chain => Other::Unary,
            (2, [x, y]) if *x == chain && *y == chain => Other::Chain,
            (2, [x, y]) if *x == chain || *y == chain => {
                let (o, chain_lhs) = if *x == chain { (*y, true) } else { (*x, false) };
                if folded.contains(&o.node) {
                    return None;
                }
                extra.push(o);
                Other::Operand {
                    index: base + extra.len() - 1,
                    chain_lhs,
                }
            }
            _ => return None,
        };
        links.push(Link { ew, other });
        folded.push(id);
        chain = Value::first(id);
    }
    Some(EpiloguePlan {
        prefix: members[..a].to_vec(),
        anchor,
        links: tail.to_vec(),
        epilogue: Epilogue { links, base },
        extra,
    })
}
