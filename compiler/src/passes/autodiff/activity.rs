//! Activity analysis: which nodes lie on a path from a trainable param to the loss. Only they
//! get gradient nodes, so frozen params, integer inputs and everything computed only from
//! them cost nothing in the backward pass.
//!
//! Gradients flow only through float values: an integer result (tokens, targets, a cast to
//! i32) cuts the path in both directions.

use std::collections::HashSet;

use bfly_ir::{Graph, NodeId, Value};

fn is_float(g: &Graph, v: Value) -> bool {
    g.value_type(v).dtype.is_float()
}

/// Nodes that depend on a trainable param (the params included) and that the loss depends on,
/// both through float values. `order` is a schedule of `g`.
pub fn active_nodes(g: &Graph, order: &[NodeId], loss: Value) -> HashSet<NodeId> {
    let mut varied: HashSet<NodeId> = g
        .params()
        .filter(|(_, p, ty)| p.trainable && ty.dtype.is_float())
        .map(|(id, _, _)| id)
        .collect();
    for &id in order {
        if g.node(id).op.is_source() {
            continue;
        }
        if g.operands(id)
            .into_iter()
            .any(|v| varied.contains(&v.node) && is_float(g, v))
        {
            varied.insert(id);
        }
    }
    let mut useful: HashSet<NodeId> = HashSet::from([loss.node]);
    for &id in order.iter().rev() {
        if !useful.contains(&id) {
            continue;
        }
        for v in g.operands(id) {
            if is_float(g, v) {
                useful.insert(v.node);
            }
        }
    }
    varied.retain(|id| useful.contains(id));
    varied
}

/// The first active op that has no gradient (int8 ops, optimizer updates, gradients
/// themselves), if any.
pub fn first_non_differentiable(
    g: &Graph,
    order: &[NodeId],
    active: &HashSet<NodeId>,
) -> Option<NodeId> {
    order.iter().copied().find(|id| {
        let op = &g.node(*id).op;
        active.contains(id) && !op.is_source() && !op.is_differentiable()
    })
}
