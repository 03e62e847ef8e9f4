//! Text form of the Graph IR (parsed back by `parse`): `print(parse(print(g))) == print(g)`.
//!
//! Values are numbered `%0, %1, …` in schedule order; inputs keep their names. Parameters are
//! declared first, in insertion order, and referenced as `@name`.

use crate::graph::{Graph, NodeId, Value};
use crate::op::Op;
use std::collections::HashMap;
use std::fmt::Write;

/// Names every value as printed (`%tokens`, `%3`, `@embed`).
pub struct ValueNames {
    names: HashMap<Value, String>,
}

impl ValueNames {
    pub fn new(g: &Graph, order: &[NodeId]) -> ValueNames {
        let mut names = HashMap::new();
        let mut next = 0usize;
        for &id in order {
            let node = g.node(id);
            match &node.op {
                Op::Input { name } => {
                    names.insert(Value::first(id), format!("%{name}"));
                }
                Op::Param(p) => {
                    names.insert(Value::first(id), format!("@{}", p.name));
                }
                _ => {
                    for r in 0..node.results.len() {
                        names.insert(
                            Value {
                                node: id,
                                result: r as u32,
                            },
                            format!("%{next}"),
                        );
                        next += 1;
                    }
                }
            }
        }
        ValueNames { names }
    }

    pub fn get(&self, v: Value) -> &str {
        self.names.get(&v).map_or("%?", String::as_str)
    }
}

/// Prints the graph. A graph with a cycle (which `verify` rejects) prints its nodes in id
/// order so it can still be looked at.
pub fn print_graph(g: &Graph) -> String {
    let order = g.topo_order().unwrap_or_else(|| g.node_ids().collect());
    let names = ValueNames::new(g, &order);
    let mut s = String::new();
    let sig = |ids: Vec<(String, String)>| {
        ids.into_iter()
            .map(|(n, t)| format!("{n}: {t}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let inputs = g
        .inputs()
        .iter()
        .map(|&id| match &g.node(id).op {
            Op::Input { name } => (format!("%{name}"), g.node(id).results[0].to_string()),
            _ => ("%?".into(), String::new()),
        })
        .collect();
    let outputs = g
        .outputs()
        .iter()
        .map(|o| (o.sigil_name(), g.value_type(o.value).to_string()))
        .collect();
    let _ = write!(
        s,
        "graph @{}({}) -> ({})",
        g.name,
        sig(inputs),
        sig(outputs)
    );
    if !g.bounds.is_empty() {
        let b: Vec<String> = g
            .bounds
            .iter()
            .map(|(n, m)| format!("{n} <= {m}"))
            .collect();
        let _ = write!(s, " where {}", b.join(", "));
    }
    s.push_str(" {\n");
    for (_, p, ty) in g.params() {
        let _ = writeln!(
            s,
            "  param @{}: {ty} {} {}",
            p.name,
            p.init,
            if p.trainable { "trainable" } else { "frozen" }
        );
    }
    for &id in &order {
        let node = g.node(id);
        if node.op.is_source() {
            continue;
        }
        let results: Vec<&str> = (0..node.results.len())
            .map(|r| {
                names.get(Value {
                    node: id,
                    result: r as u32,
                })
            })
            .collect();
        let _ = write!(s, "  {} = {}", results.join(", "), node.op.name());
        let operands: Vec<&str> = g.operands(id).into_iter().map(|v| names.get(v)).collect();
        if !operands.is_empty() {
            let _ = write!(s, " {}", operands.join(", "));
        }
        let attrs = node.op.attrs();
        if !attrs.is_empty() {
            let a: Vec<String> = attrs.iter().map(|(k, v)| format!("{k} = {v}")).collect();
            let _ = write!(s, " {{{}}}", a.join(", "));
        }
        let tys: Vec<String> = node.results.iter().map(ToString::to_string).collect();
        let _ = write!(s, " : {}", tys.join(", "));
        if let Some(loc) = node.loc {
            let _ = write!(s, " loc({}:{})", loc.line, loc.col);
        }
        s.push('\n');
    }
    let rets: Vec<&str> = g.outputs().iter().map(|o| names.get(o.value)).collect();
    if rets.is_empty() {
        s.push_str("  return\n}\n");
    } else {
        let _ = writeln!(s, "  return {}\n}}", rets.join(", "));
    }
    s
}
