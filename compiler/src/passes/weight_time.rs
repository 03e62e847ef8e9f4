//! Weight-time values: what the fold passes may compute from weights alone.
//!
//! Passes see only the graph, never weight values. A fold therefore does not compute a folded
//! weight itself: it rewrites the graph so that the folded weight is produced by a subgraph
//! whose only sources are parameters and constants. Such a subgraph is *weight-time*: its
//! value is the same for every token, so it is evaluated once when the weights are known (at
//! artifact compile or load time), and — today — by the reference interpreter like any other
//! node, which is what lets the fold tests compare before and after on the reference.
//!
//! A value is weight-time when every source it depends on is
//! - a parameter,
//! - a `fill` whose dims are all constants (a symbolic dim such as `T` is bound per call), or
//! - a `hadamard_twiddles` (a constant with no operands),
//!
//! and no graph input reaches it. Every op is pure, so such a value is a function of the
//! weights only.
//!
//! The invariant every fold keeps: **each node a fold adds is either weight-time, or part of
//! a rewrite that does no more per-token work than the nodes it replaces** (typically the same
//! op on the same activations with a weight-time operand swapped in). Folds check that the
//! weights they combine are weight-time before rewriting, so a folded weight never depends on
//! an activation and is never recomputed per token.

use std::collections::HashMap;

use bfly_ir::{Dim, Graph, NodeId, Op, Value};

/// Does `v` depend only on parameters and constants (see the module doc)?
pub fn is_weight_time(g: &Graph, v: Value) -> bool {
    WeightTime::default().check(g, v.node)
}

/// [`is_weight_time`] with a memo, for passes that ask about many values of one graph. The
/// memo is keyed by node id, so it is valid only until the graph changes: a removed node's id
/// can be reused by a node added later. Passes keep one per unchanged graph (one per
/// rewrite).
#[derive(Default)]
pub struct WeightTime {
    memo: HashMap<NodeId, bool>,
}

impl WeightTime {
    pub fn is(&mut self, g: &Graph, v: Value) -> bool {
        self.check(g, v.node)
    }

    /// Iterative depth-first search: weight subgraphs can be deep (a chain of folds), and a
    /// recursion per node could exhaust the stack on a large hand-written graph.
    fn check(&mut self, g: &Graph, root: NodeId) -> bool {
        let mut stack = vec![(root, false)];
        while let Some((id, expanded)) = stack.pop() {
            if self.memo.contains_key(&id) || !g.contains(id) {
                continue;
            }
            let own = match &g.node(id).op {
                Op::Input { .. } => Some(false),
                Op::Param(_) | Op::HadamardTwiddles { .. } => Some(true),
                Op::Fill { dims, .. } => Some(dims.iter().all(|d| matches!(d, Dim::Const(_)))),
                _ => None,
            };
            if let Some(answer) = own {
                self.memo.insert(id, answer);
                continue;
            }
            let operands = g.operands(id);
            if expanded {
                let answer = operands
                    .iter()
                    .all(|o| self.memo.get(&o.node).copied().unwrap_or(false));
                self.memo.insert(id, answer);
            } else {
                stack.push((id, true));
                stack.extend(
                    operands
                        .iter()
                        .filter(|o| !self.memo.contains_key(&o.node))
                        .map(|o| (o.node, false)),
                );
            }
        }
        self.memo.get(&root).copied().unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bfly_ir::{DType, Init, Param, Type};

    #[test]
    fn params_and_constant_fills_are_weight_time_inputs_and_symbolic_fills_are_not() {
        let mut g = Graph::new("t");
        g.set_bound("T", 4);
        let x = g.add_input("x", Type::new(DType::F32, [Dim::sym("T"), Dim::Const(3)]));
        let w = g.add_param(
            Param {
                name: "w".into(),
                init: Init::Ones,
                trainable: false,
            },
            Type::fixed(DType::F32, &[3]),
        );
        let fill = |dims: Vec<Dim>| Op::Fill {
            value: 2.0,
            dtype: DType::F32,
            dims,
        };
        let c = g.add1(fill(vec![Dim::Const(3)]), &[], None).expect("fill");
        let t = g
            .add1(fill(vec![Dim::sym("T"), Dim::Const(3)]), &[], None)
            .expect("fill");
        let wc = g.add1(Op::Mul, &[w, c], None).expect("mul");
        let deep = (0..10_000).try_fold(wc, |v, _| g.add1(Op::Neg, &[v], None));
        let deep = deep.expect("neg");
        let xw = g.add1(Op::Mul, &[x, wc], None).expect("mul");
        let tw = g.add1(Op::Mul, &[t, wc], None).expect("mul");
        let h = g
            .add1(
                Op::HadamardTwiddles {
                    groups: 1,
                    stacks: 1,
                    blocks: 1,
                    n: 2,
                },
                &[],
                None,
            )
            .expect("hadamard");
        for (v, want) in [
            (w, true),
            (c, true),
            (wc, true),
            (deep, true),
            (h, true),
            (x, false),
            (t, false),
            (xw, false),
            (tw, false),
        ] {
            assert_eq!(is_weight_time(&g, v), want, "{v}");
        }
        let mut memo = WeightTime::default();
        assert!(memo.is(&g, deep));
        assert!(!memo.is(&g, xw));
        assert!(memo.is(&g, wc));
    }
}
