//! Graph-rewriting helpers shared by the fold passes (`fold-lora`, `fold-norm-gain`,
//! `compose-butterflies`, `const-fold`).

use bfly_ir::{Graph, NodeId, Op, Value};

/// Every read of `v`: `(user, operand slot)` per operand. Graph outputs are not included.
pub fn reads(g: &Graph, v: Value) -> Vec<(NodeId, usize)> {
    g.users(v.node)
        .into_iter()
        .flat_map(|u| {
            g.operands(u)
                .into_iter()
                .enumerate()
                .filter(move |(_, o)| *o == v)
                .map(move |(slot, _)| (u, slot))
        })
        .collect()
}

pub fn is_output(g: &Graph, v: Value) -> bool {
    g.outputs().iter().any(|o| o.value == v)
}

/// The one node that reads `v`, when `v` is read exactly once and is not a graph output.
/// Folds that replace a value's producer use this so the old value is then dead: otherwise
/// both the old and the folded version would have to be computed (or stored).
pub fn sole_user(g: &Graph, v: Value) -> Option<NodeId> {
    match reads(g, v)[..] {
        [(user, _)] if !is_output(g, v) => Some(user),
        _ => None,
    }
}

/// Adds a one-result op; a type error here means the fold's own legality check missed
/// something, which the pass reports as a compiler bug.
pub fn add1(g: &mut Graph, op: Op, operands: &[Value], loc_of: NodeId) -> Result<Value, String> {
    let loc = g.node(loc_of).loc;
    let name = op.name();
    g.add1(op, operands, loc)
        .map_err(|e| format!("could not add `{name}`: {e}"))
}

/// Replaces node `id` by the same op on `operands` (same spec location), redirects every use
/// of its results to the new node and removes it. The result types must not change, so its
/// users stay valid.
pub fn rebuild(g: &mut Graph, id: NodeId, operands: &[Value]) -> Result<NodeId, String> {
    rebuild_as(g, id, g.node(id).op.clone(), operands)
}

/// [`rebuild`] with a different op.
pub fn rebuild_as(g: &mut Graph, id: NodeId, op: Op, operands: &[Value]) -> Result<NodeId, String> {
    let node = g.node(id);
    let (loc, old_types) = (node.loc, node.results.clone());
    let name = op.name();
    let new = g
        .add_op(op, operands, loc)
        .map_err(|e| format!("could not rebuild `{name}`: {e}"))?;
    let Some(first) = new.first() else {
        return Err(format!("rebuilt `{name}` has no result"));
    };
    let new_types: Vec<_> = new.iter().map(|v| g.value_type(*v).clone()).collect();
    if new_types != old_types {
        return Err(format!(
            "rebuilt `{name}` changed its result types from {old_types:?} to {new_types:?}"
        ));
    }
    let new_id = first.node;
    for r in 0..old_types.len() as u32 {
        g.replace_uses(
            Value {
                node: id,
                result: r,
            },
            Value {
                node: new_id,
                result: r,
            },
        );
    }
    remove_if_dead(g, id);
    Ok(new_id)
}

/// Redirects every use of `old` to `new` (same type), then removes `old`'s node if nothing
/// reads it any more, and with it every operand that only it kept alive (see
/// [`remove_if_dead`]).
pub fn forward(g: &mut Graph, old: Value, new: Value) {
    g.replace_uses(old, new);
    remove_if_dead(g, old.node);
}

/// Removes `id` if it is an op (not an input or param) that no node and no output reads, then
/// does the same for its operands, transitively. A fold thus leaves no dead intermediate of
/// its own behind (so each stage prints only what it computes); params that lose their last
/// reader stay for `dce`, which owns the decision to drop a weight.
pub fn remove_if_dead(g: &mut Graph, id: NodeId) {
    let mut stack = vec![id];
    while let Some(id) = stack.pop() {
        let dead = g.contains(id)
            && !g.node(id).op.is_source()
            && g.users(id).is_empty()
            && !g.outputs().iter().any(|o| o.value.node == id);
        if dead {
            stack.extend(g.operands(id).into_iter().map(|v| v.node));
            g.remove_node(id);
        }
    }
}

/// Hand-built graphs' evaluation for the fold passes' unit tests.
#[cfg(test)]
pub mod testing {
    use bfly_ir::{DType, Graph, Init, Param, Type, Value};
    use bfly_targets::reference::{Tensor, evaluate, init_weights};

    /// An f32 param with a normal(0.5) init: no zeros or ones, so no fold is vacuous.
    pub fn param(g: &mut Graph, name: &str, dims: &[u64]) -> Value {
        g.add_param(
            Param {
                name: name.into(),
                init: Init::Normal { std: 0.5 },
                trainable: false,
            },
            Type::fixed(DType::F32, dims),
        )
    }

    /// How many nodes run op `name`.
    pub fn count_ops(g: &Graph, name: &str) -> usize {
        g.node_ids()
            .filter(|&id| g.node(id).op.name() == name)
            .count()
    }

    /// Every output's values with seed-1 weights and fixed inputs (symbols bound to 3,
    /// floats `sin(1.7·i + k)`, token ids `i mod 5`).
    pub fn eval(g: &Graph) -> Vec<Vec<f64>> {
        let weights = init_weights(g, 1).expect("weights");
        let inputs: Vec<Tensor> = g
            .inputs()
            .iter()
            .enumerate()
            .map(|(k, &id)| {
                let ty = &g.node(id).results[0];
                let shape = ty.resolve(&|_| Some(3)).expect("resolvable");
                let n: usize = shape.iter().product();
                match ty.dtype {
                    DType::I32 | DType::I8 => {
                        Tensor::int(ty.dtype, shape, (0..n as i64).map(|i| i % 5).collect())
                    }
                    _ => Tensor::f32(
                        shape,
                        (0..n).map(|i| (1.7 * i as f64 + k as f64).sin()).collect(),
                    ),
                }
            })
            .collect();
        evaluate(g, &inputs, &weights)
            .expect("evaluates")
            .iter()
            .map(|t| t.floats().unwrap_or_default().to_vec())
            .collect()
    }

    /// `max |a − b| / max |a|` over all outputs (shapes must agree).
    pub fn rel_diff(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
        assert_eq!(a.len(), b.len());
        let mut scale = f64::MIN_POSITIVE;
        let mut diff = 0.0f64;
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x.len(), y.len());
            for (p, q) in x.iter().zip(y) {
                scale = scale.max(p.abs());
                diff = diff.max((p - q).abs());
            }
        }
        diff / scale
    }
}
