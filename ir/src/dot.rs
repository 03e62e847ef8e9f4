//! Graphviz export: one box per op (label: op, result types), params as ellipses, edges
//! labelled with the operand slot when an op has several operands.

use crate::graph::Graph;
use crate::op::Op;
use std::fmt::Write;

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

pub fn to_dot(g: &Graph) -> String {
    let mut s = format!(
        "digraph \"{}\" {{\n  rankdir=TB;\n  node [fontname=\"monospace\", fontsize=10];\n",
        escape(&g.name)
    );
    for id in g.node_ids() {
        let node = g.node(id);
        let tys: Vec<String> = node.results.iter().map(ToString::to_string).collect();
        let (label, shape) = match &node.op {
            Op::Param(p) => (format!("@{}\\n{}", p.name, tys.join(", ")), "ellipse"),
            Op::Input { name } => (format!("%{name}\\n{}", tys.join(", ")), "invhouse"),
            op => (format!("{}\\n{}", op.name(), tys.join(", ")), "box"),
        };
        let _ = writeln!(
            s,
            "  {} [label=\"{}\", shape={shape}];",
            id.0.index(),
            escape(&label).replace("\\\\n", "\\n")
        );
    }
    for id in g.node_ids() {
        let operands = g.operands(id);
        let many = operands.len() > 1;
        for (slot, v) in operands.iter().enumerate() {
            if many {
                let _ = writeln!(
                    s,
                    "  {} -> {} [label=\"{slot}\"];",
                    v.node.0.index(),
                    id.0.index()
                );
            } else {
                let _ = writeln!(s, "  {} -> {};", v.node.0.index(), id.0.index());
            }
        }
    }
    for (i, o) in g.outputs().iter().enumerate() {
        let _ = writeln!(
            s,
            "  out{i} [label=\"%{}\", shape=house];\n  {} -> out{i};",
            escape(&o.name),
            o.value.node.0.index()
        );
    }
    s.push_str("}\n");
    s
}
