//! Dead-code elimination: removes every node that no graph output reaches, parameters
//! included. Inputs stay (they are the signature), and so does every parameter an output
//! updates (`@p` names it even where the new value does not read it).

use std::collections::HashSet;

use bfly_grammar::Diagnostic;
use bfly_ir::{Graph, NodeId, Op};

use super::{Pass, PassContext};

pub struct Dce;

impl Pass for Dce {
    fn name(&self) -> &'static str {
        "dce"
    }

    fn description(&self) -> &'static str {
        "remove nodes and params that no output reaches"
    }

    fn run(&self, g: &mut Graph, _cx: &PassContext<'_>) -> Result<(), Vec<Diagnostic>> {
        eliminate_dead_code(g);
        Ok(())
    }
}

/// Removes dead nodes; returns how many.
pub fn eliminate_dead_code(g: &mut Graph) -> usize {
    let live = live_nodes(g);
    let dead: Vec<NodeId> = g
        .node_ids()
        .filter(|id| !live.contains(id) && !matches!(g.node(*id).op, Op::Input { .. }))
        .collect();
    for &id in &dead {
        g.remove_node(id);
    }
    dead.len()
}

/// Nodes some output depends on, plus the params that outputs update.
fn live_nodes(g: &Graph) -> HashSet<NodeId> {
    let mut stack: Vec<NodeId> = g.outputs().iter().map(|o| o.value.node).collect();
    for o in g.outputs().iter().filter(|o| o.param) {
        if let Some(p) = g.find_param(&o.name) {
            stack.push(p.node);
        }
    }
    let mut live = HashSet::new();
    while let Some(id) = stack.pop() {
        if g.contains(id) && live.insert(id) {
            stack.extend(g.operands(id).into_iter().map(|v| v.node));
        }
    }
    live
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::test_graphs::{dead_and_duplicated, eval_bits};
    use bfly_ir::{print_graph, verify};

    #[test]
    fn removes_dead_ops_and_unused_params_only() {
        let mut g = dead_and_duplicated();
        let before = eval_bits(&g);
        let removed = eliminate_dead_code(&mut g);
        assert_eq!(verify(&g), Ok(()));
        let text = print_graph(&g);
        // The dead chain (exp, its own param) goes; the unused input stays.
        assert_eq!(removed, 3, "{text}");
        assert!(!text.contains("@unused"), "{text}");
        assert!(!text.contains("exp"), "{text}");
        assert!(text.contains("%spare: f32[4]"), "{text}");
        assert_eq!(eval_bits(&g), before);
        assert_eq!(eliminate_dead_code(&mut g), 0, "idempotent");
    }

    #[test]
    fn keeps_params_that_outputs_update() {
        let mut g = Graph::new("t");
        let x = g.add_input("x", bfly_ir::Type::fixed(bfly_ir::DType::F32, &[2]));
        let p = g.add_param(
            bfly_ir::Param {
                name: "p".into(),
                init: bfly_ir::Init::Zeros,
                trainable: true,
            },
            bfly_ir::Type::fixed(bfly_ir::DType::F32, &[2]),
        );
        let _ = p;
        g.set_outputs(vec![bfly_ir::Output::param_update("p", x)]);
        eliminate_dead_code(&mut g);
        assert_eq!(verify(&g), Ok(()));
        assert!(g.find_param("p").is_some());
    }
}
