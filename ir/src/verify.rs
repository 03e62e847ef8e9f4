//! The verifier: re-derives every node's types, checks operand wiring, acyclicity, symbol
//! bounds, parameter names and fused regions. Errors name the node as printed and its spec
//! location.
//!
//! Fused regions: the schedule runs each region as one contiguous block (that is how the text
//! form prints it), so the verifier rejects regions that no schedule can keep contiguous — a
//! value that leaves a region and flows back into it, or two regions that feed each other —
//! and sources (inputs, params) inside a region. It does not insist that nodes were added in
//! an order that happens to keep regions together: the schedule does that.
//!
//! Stage groupings (`radix = [4, 4, 2]` on a `butterfly`, see `Node::radix`): only on a
//! butterfly, every radix a power of two ≥ 2, and together they cover the `log2 n` stages of a
//! block exactly (the product of the radices is `n`).

use crate::graph::{Graph, IrError, NodeId, RegionCycle};
use crate::infer::{butterfly_width, infer_types};
use crate::op::Op;
use crate::print::{RegionNames, ValueNames};
use crate::types::{Dim, Type};

fn err(g: &Graph, names: &ValueNames, id: NodeId, message: String) -> IrError {
    let node = g.node(id);
    let what = match &node.op {
        Op::Param(p) => format!("param @{}", p.name),
        Op::Input { name } => format!("input %{name}"),
        op => format!(
            "{} = {}",
            names.get(crate::graph::Value::first(id)),
            op.name()
        ),
    };
    IrError {
        node: Some(id),
        loc: node.loc,
        message: format!("{what}: {message}"),
    }
}

/// Checks a stage grouping against its op (see the module doc).
pub fn check_radix(op: &Op, radix: &[u32]) -> Result<(), String> {
    let Op::Butterfly { n_in, .. } = op else {
        return Err(format!(
            "`radix` groups butterfly stages, but this is a `{}`",
            op.name()
        ));
    };
    if let Some(bad) = radix.iter().find(|r| **r < 2 || !r.is_power_of_two()) {
        return Err(format!("radix {bad} is not a power of two >= 2"));
    }
    let n = butterfly_width(*n_in);
    let stages = n.trailing_zeros();
    let covered: u32 = radix.iter().map(|r| r.trailing_zeros()).sum();
    if covered != stages {
        let list: Vec<String> = radix.iter().map(u32::to_string).collect();
        return Err(format!(
            "radix [{}] groups {covered} stages, but a butterfly with n = {n} has {stages}",
            list.join(", ")
        ));
    }
    Ok(())
}

fn check_symbols(g: &Graph, ty: &Type) -> Result<(), String> {
    for d in &ty.dims {
        if let Dim::Sym(s) = d
            && g.bound(s).is_none()
        {
            return Err(format!(
                "symbol `{s}` in {ty} has no bound; declare it with `where {s} <= N`"
            ));
        }
    }
    Ok(())
}

/// Regions in a dependency cycle: located at the first member of the first region.
fn region_cycle_error(
    g: &Graph,
    names: &ValueNames,
    regions: &RegionNames,
    cycle: &RegionCycle,
) -> IrError {
    let list = |items: Vec<&str>| match items.as_slice() {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    };
    let region_names = list(cycle.regions.iter().map(|r| regions.get(*r)).collect());
    let through: Vec<&str> = cycle
        .nodes
        .iter()
        .flat_map(|&n| {
            (0..g.node(n).results.len()).map(move |r| crate::graph::Value {
                node: n,
                result: r as u32,
            })
        })
        .map(|v| names.get(v))
        .collect();
    let message = match (cycle.regions.len(), through.is_empty()) {
        (1, _) => format!(
            "fused region {region_names} cannot run as one block: a value leaves it and flows back in through {}",
            list(through)
        ),
        (_, true) => {
            format!("fused regions {region_names} feed each other, so neither can run as one block")
        }
        (_, false) => format!(
            "fused regions {region_names} feed each other (through {}), so they cannot each run as one block",
            list(through)
        ),
    };
    let first = cycle
        .regions
        .first()
        .and_then(|r| g.regions().get(r).and_then(|m| m.first().copied()));
    IrError {
        node: first,
        loc: first.and_then(|n| g.node(n).loc),
        message,
    }
}

/// Checks every invariant of `graph.rs`. Returns all errors found, in schedule order.
pub fn verify(g: &Graph) -> Result<(), Vec<IrError>> {
    let (order, cycles) = match g.topo_order() {
        Some(order) => (order, Vec::new()),
        None => match g.dataflow_order() {
            Some(order) => (order, g.region_cycles()),
            None => return Err(vec![IrError::new("the graph has a cycle")]),
        },
    };
    let names = ValueNames::new(g, &order);
    let regions = RegionNames::new(g, &order);
    let mut errors: Vec<IrError> = cycles
        .iter()
        .map(|c| region_cycle_error(g, &names, &regions, c))
        .collect();
    for (name, count) in g.param_name_counts() {
        if count > 1 {
            errors.push(IrError::new(format!(
                "param @{name} is declared {count} times"
            )));
        }
    }
    for &id in &order {
        let node = g.node(id);
        for ty in &node.results {
            if let Err(m) = check_symbols(g, ty) {
                errors.push(err(g, &names, id, m));
            }
        }
        if node.op.is_source() {
            if node.results.len() != 1 {
                errors.push(err(g, &names, id, "sources have exactly one result".into()));
            }
            if let Some(r) = node.region {
                errors.push(err(
                    g,
                    &names,
                    id,
                    format!(
                        "is in fused region {}, but inputs and params are not computed and cannot be fused",
                        regions.get(r)
                    ),
                ));
            }
            continue;
        }
        if let Some(radix) = &node.radix
            && let Err(m) = check_radix(&node.op, radix)
        {
            errors.push(err(g, &names, id, m));
        }
        let operands = g.operands(id);
        let mut slots_ok = true;
        for v in &operands {
            if v.result as usize >= g.node(v.node).results.len() {
                errors.push(err(g, &names, id, format!("reads missing result {v}")));
                slots_ok = false;
            }
        }
        if !slots_ok {
            continue;
        }
        let types: Vec<&Type> = operands.iter().map(|v| g.value_type(*v)).collect();
        match infer_types(&node.op, &types) {
            Ok(want) if want == node.results => {}
            Ok(want) => {
                let show = |ts: &[Type]| {
                    ts.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                errors.push(err(
                    g,
                    &names,
                    id,
                    format!(
                        "declared type {} but the operands give {}",
                        show(&node.results),
                        show(&want)
                    ),
                ));
            }
            Err(m) => errors.push(err(g, &names, id, m)),
        }
    }
    let mut updated = std::collections::HashSet::new();
    for o in g.outputs() {
        if !g.contains(o.value.node) {
            errors.push(IrError::new(format!(
                "output {} is not defined",
                o.sigil_name()
            )));
            continue;
        }
        if !o.param {
            continue;
        }
        match g.find_param(&o.name) {
            None => errors.push(IrError::new(format!(
                "output @{} updates a param that does not exist",
                o.name
            ))),
            Some(p) if g.value_type(p) != g.value_type(o.value) => {
                errors.push(IrError::new(format!(
                    "output @{} is {} but the param is {}",
                    o.name,
                    g.value_type(o.value),
                    g.value_type(p)
                )))
            }
            Some(_) => {}
        }
        if !updated.insert(o.name.as_str()) {
            errors.push(IrError::new(format!("param @{} is updated twice", o.name)));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}
