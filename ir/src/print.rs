//! Text form of the Graph IR (parsed back by `parse`): `print(parse(print(g))) == print(g)`.
//!
//! Values are numbered `%0, %1, …` in schedule order; inputs keep their names. Parameters are
//! declared first, in insertion order, and referenced as `@name`.
//!
//! A fused region prints as a block around its statements, its members indented one more
//! level; regions are named `@r0, @r1, …` in order of first appearance, whatever their ids:
//!
//! ```text
//!   fused @r0 {
//!     %12 = matmul %11, @layers.0.mlp.up.weight : f32[T, 256]
//!     %13 = gelu %12 : f32[T, 256]
//!   }
//! ```
//!
//! The schedule keeps every region contiguous (`Graph::topo_order`), so each region prints as
//! exactly one block.
//!
//! A butterfly's stage grouping (`Node::radix`, chosen by the fuse pass) prints as one more
//! attribute after the op's own: `butterfly %3, %4 {in = 32, out = 32, radix = [4, 4, 2]}`.

use crate::graph::{Graph, NodeId, RegionId, Value};
use crate::op::{AttrValue, Op};

/// The attribute key of a butterfly's stage grouping (`Node::radix`).
pub const RADIX_ATTR: &str = "radix";
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

/// Names every fused region as printed (`@r0`, `@r1`, … in order of first appearance).
pub struct RegionNames {
    names: HashMap<RegionId, String>,
}

impl RegionNames {
    pub fn new(g: &Graph, order: &[NodeId]) -> RegionNames {
        let mut names = HashMap::new();
        for &id in order {
            if let Some(r) = g.node(id).region {
                let next = names.len();
                names.entry(r).or_insert_with(|| format!("@r{next}"));
            }
        }
        RegionNames { names }
    }

    pub fn get(&self, r: RegionId) -> &str {
        self.names.get(&r).map_or("@r?", String::as_str)
    }
}

/// The order a graph prints in: the schedule, or for a graph `verify` rejects, a plain
/// topological order (regions that cannot be contiguous then print as several blocks) or,
/// with a cycle, id order; either way it can still be looked at.
pub fn print_order(g: &Graph) -> Vec<NodeId> {
    g.topo_order()
        .or_else(|| g.dataflow_order())
        .unwrap_or_else(|| g.node_ids().collect())
}

/// Prints the graph.
pub fn print_graph(g: &Graph) -> String {
    let order = print_order(g);
    let names = ValueNames::new(g, &order);
    let regions = RegionNames::new(g, &order);
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
    let mut open: Option<RegionId> = None;
    for &id in &order {
        let node = g.node(id);
        if node.op.is_source() {
            continue;
        }
        if node.region != open {
            if open.is_some() {
                s.push_str("  }\n");
            }
            if let Some(r) = node.region {
                let _ = writeln!(s, "  fused {} {{", regions.get(r));
            }
            open = node.region;
        }
        if open.is_some() {
            s.push_str("  ");
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
        let mut attrs = node.op.attrs();
        if let Some(radix) = &node.radix {
            let list = radix
                .iter()
                .map(|&r| AttrValue::Int(i64::from(r)))
                .collect();
            attrs.push((RADIX_ATTR, AttrValue::List(list)));
        }
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
    if open.is_some() {
        s.push_str("  }\n");
    }
    let rets: Vec<&str> = g.outputs().iter().map(|o| names.get(o.value)).collect();
    if rets.is_empty() {
        s.push_str("  return\n}\n");
    } else {
        let _ = writeln!(s, "  return {}\n}}", rets.join(", "));
    }
    s
}
