//! Graphviz export: one box per op (label: op, result types), params as ellipses, edges
//! labelled with the operand slot when an op has several operands, fused regions as dashed
//! clusters named like the text form (`@r0`, `@r1`, …).

use crate::graph::Graph;
use crate::op::Op;
use crate::print::RegionNames;
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
    let order = g.topo_order().unwrap_or_else(|| g.node_ids().collect());
    let region_names = RegionNames::new(g, &order);
    for (region, members) in g.regions() {
        let _ = writeln!(
            s,
            "  subgraph cluster_{} {{\n    label=\"fused {}\"; style=dashed;",
            region.0,
            escape(region_names.get(region))
        );
        for id in members {
            let _ = writeln!(s, "    {};", id.0.index());
        }
        s.push_str("  }\n");
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
