//! Common-subexpression elimination: an op whose kind, attributes, operands and result types
//! equal those of an earlier op is replaced by it. Sources are never merged: two params (or
//! inputs) are different tensors even when declared alike.
//!
//! Ops are pure, so a merged op computes bit for bit what the removed one did. The key uses
//! the op's `Debug` form, which spells every attribute exactly (floats round-trip; `-0.0` and
//! `0.0` differ, so ops that could round differently are never merged).

use std::collections::HashMap;

use bfly_grammar::Diagnostic;
use bfly_ir::{Graph, NodeId, Type, Value};

use super::{Pass, PassContext};

pub struct Cse;

impl Pass for Cse {
    fn name(&self) -> &'static str {
        "cse"
    }

    fn description(&self) -> &'static str {
        "merge identical ops on identical operands"
    }

    fn run(&self, g: &mut Graph, cx: &PassContext<'_>) -> Result<(), Vec<Diagnostic>> {
        eliminate_common_subexpressions(g)
            .map(|_| ())
            .ok_or_else(|| vec![cx.bug(self.name(), "the graph has a cycle")])
    }
}

#[derive(PartialEq, Eq, Hash)]
struct Key {
    op: String,
    operands: Vec<Value>,
    results: Vec<Type>,
}

/// Merges duplicates in schedule order, so merging operands first lets their users merge too.
/// Returns how many nodes were removed, or `None` for a cyclic graph.
pub fn eliminate_common_subexpressions(g: &mut Graph) -> Option<usize> {
    let order = g.topo_order()?;
    let mut seen: HashMap<Key, NodeId> = HashMap::new();
    let mut removed = 0;
    for id in order {
        let node = g.node(id);
        if node.op.is_source() {
            continue;
        }
        let key = Key {
            op: format!("{:?}", node.op),
            // Already rewritten: every operand was visited (and maybe merged) before `id`.
            operands: g.operands(id),
            results: node.results.clone(),
        };
        match seen.get(&key) {
            Some(&keep) => {
                for r in 0..key.results.len() as u32 {
                    let result = |node| Value { node, result: r };
                    g.replace_uses(result(id), result(keep));
                }
                g.remove_node(id);
                removed += 1;
            }
            None => {
                seen.insert(key, id);
            }
        }
    }
    Some(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::test_graphs::{dead_and_duplicated, eval_bits};
    use bfly_ir::{DType, Init, Op, Output, Param, print_graph, verify};

    #[test]
    fn merges_duplicates_transitively_and_keeps_results() {
        let mut g = dead_and_duplicated();
        let before = eval_bits(&g);
        let removed = eliminate_common_subexpressions(&mut g);
        assert_eq!(verify(&g), Ok(()));
        // `mul x, w` twice, `sigmoid x` twice, then the two adds that became identical.
        assert_eq!(removed, Some(3), "{}", print_graph(&g));
        assert_eq!(eval_bits(&g), before);
        assert_eq!(eliminate_common_subexpressions(&mut g), Some(0));
    }

    #[test]
    fn never_merges_sources_or_different_attrs() {
        let mut g = Graph::new("t");
        let ty = Type::fixed(DType::F32, &[3]);
        let x = g.add_input("x", ty.clone());
        let param = |name: &str| Param {
            name: name.into(),
            init: Init::Zeros,
            trainable: true,
        };
        let a = g.add_param(param("a"), ty.clone());
        let b = g.add_param(param("b"), ty.clone());
        let xa = g.add1(Op::Add, &[x, a], None).expect("add");
        let xb = g.add1(Op::Add, &[x, b], None).expect("add");
        let s1 = g
            .add1(Op::Scale { factor: 0.0 }, &[x], None)
            .expect("scale");
        let s2 = g
            .add1(Op::Scale { factor: -0.0 }, &[x], None)
            .expect("scale");
        g.set_outputs(
            [xa, xb, s1, s2]
                .iter()
                .enumerate()
                .map(|(i, v)| Output::value(format!("o{i}"), *v))
                .collect(),
        );
        assert_eq!(eliminate_common_subexpressions(&mut g), Some(0));
        assert_eq!(g.node_count(), 7);
    }
}
