//! The Graph IR: a `petgraph::StableDiGraph` of typed ops.
//!
//! Invariants (checked by `verify`):
//! - every node's operands are the incoming edges, ordered by `Edge::slot`, each naming one
//!   result of its source node;
//! - the graph is acyclic; result types equal what `infer` derives from the operands;
//! - every symbol used in a type has a bound on the graph;
//! - parameter names are unique;
//! - every fused region can run as one contiguous block of the schedule: no value leaves a
//!   region and flows back into it (directly or through other regions), and no source
//!   (input, param) is a member.
//!
//! Fused regions (`Node::region`) group nodes that the backends compile as one kernel. They
//! never change what the graph computes. The schedule ([`Graph::topo_order`]) places each
//! region's members together, so the text form can print a region as one `fused @rN { ... }`
//! block without the verifier having to insist that builders and passes add nodes in an order
//! that already keeps regions contiguous.

use crate::infer::infer_types;
use crate::op::{Op, Param};
use crate::types::Type;
use petgraph::Direction;
use petgraph::graph::DiGraph;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::{EdgeRef, IntoEdgeReferences, NodeIndexable};
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::fmt;

/// A node of the graph. Prints as `n12`; the text form numbers values in schedule order
/// instead (see `print`), so ids never leak into golden text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub NodeIndex);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0.index())
    }
}

/// One result of one node: the SSA value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Value {
    pub node: NodeId,
    pub result: u32,
}

impl Value {
    pub fn first(node: NodeId) -> Value {
        Value { node, result: 0 }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.node, self.result)
    }
}

/// A fused region. Only an identity: the text form names regions `@r0, @r1, …` in schedule
/// order, so ids never leak into golden text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegionId(pub u32);

impl fmt::Display for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "region{}", self.0)
    }
}

/// Where a node came from in the model spec (1-based line and column).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Loc {
    pub line: u32,
    pub col: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub op: Op,
    pub results: Vec<Type>,
    pub loc: Option<Loc>,
    /// The fused region the node belongs to, if any.
    pub region: Option<RegionId>,
    /// A `butterfly`'s stage grouping, chosen by the fuse pass: the radix of each group of
    /// consecutive stages, in stage order (`[4, 4, 2]`: stages 0–1 and 2–3 as radix-4, stage
    /// 4 as radix-2). The product is the transform size `n`, so the groups cover each block's
    /// `log2 n` stages exactly (`verify` checks it). A schedule hint: it never changes what
    /// the graph computes. Printed as the attribute `radix = [...]` of the op.
    pub radix: Option<Vec<u32>>,
}

/// Operand edge: feeds result `result` of the source into operand slot `slot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    pub slot: u32,
    pub result: u32,
}

/// A graph result: a named value (`%logits`), or the new value of a parameter (`@w`), which
/// is how a training step returns its updates.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    pub name: String,
    pub value: Value,
    /// `name` is a parameter this output overwrites.
    pub param: bool,
}

impl Output {
    pub fn value(name: impl Into<String>, value: Value) -> Output {
        Output {
            name: name.into(),
            value,
            param: false,
        }
    }

    pub fn param_update(param: impl Into<String>, value: Value) -> Output {
        Output {
            name: param.into(),
            value,
            param: true,
        }
    }

    /// The output as the signature prints it: `%logits` or `@w`.
    pub fn sigil_name(&self) -> String {
        format!("{}{}", if self.param { '@' } else { '%' }, self.name)
    }
}

/// Error building or checking a graph: which node (if any) and what is wrong.
#[derive(Clone, Debug, PartialEq)]
pub struct IrError {
    pub node: Option<NodeId>,
    pub loc: Option<Loc>,
    pub message: String,
}

impl IrError {
    pub fn new(message: impl Into<String>) -> IrError {
        IrError {
            node: None,
            loc: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for IrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(loc) = self.loc {
            write!(f, "{}:{}: ", loc.line, loc.col)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for IrError {}

#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub name: String,
    /// Upper bounds of the symbolic dims (`T <= 64`), in declaration order.
    pub bounds: Vec<(String, u64)>,
    g: StableDiGraph<Node, Edge>,
    inputs: Vec<NodeId>,
    outputs: Vec<Output>,
    /// Next fresh region id; never reused, so a stale id cannot alias a new region.
    next_region: u32,
}

impl Graph {
    pub fn new(name: impl Into<String>) -> Graph {
        Graph {
            name: name.into(),
            ..Graph::default()
        }
    }

    pub fn bound(&self, sym: &str) -> Option<u64> {
        self.bounds.iter().find(|(s, _)| s == sym).map(|(_, b)| *b)
    }

    pub fn set_bound(&mut self, sym: &str, max: u64) {
        match self.bounds.iter_mut().find(|(s, _)| s == sym) {
            Some(b) => b.1 = max,
            None => self.bounds.push((sym.to_string(), max)),
        }
    }

    pub fn add_input(&mut self, name: &str, ty: Type) -> Value {
        let id = self.add_node(Op::Input { name: name.into() }, vec![ty], None);
        self.inputs.push(id);
        Value::first(id)
    }

    pub fn add_param(&mut self, param: Param, ty: Type) -> Value {
        Value::first(self.add_node(Op::Param(param), vec![ty], None))
    }

    /// Adds an op, inferring its result types from the operands.
    pub fn add_op(
        &mut self,
        op: Op,
        operands: &[Value],
        loc: Option<Loc>,
    ) -> Result<Vec<Value>, IrError> {
        let types: Vec<&Type> = operands.iter().map(|v| self.value_type(*v)).collect();
        let results = infer_types(&op, &types).map_err(|message| IrError {
            node: None,
            loc,
            message: format!("{}: {message}", op.name()),
        })?;
        Ok(self.add_op_typed(op, operands, results, loc))
    }

    /// Adds an op with one result (most ops), inferring its type.
    pub fn add1(&mut self, op: Op, operands: &[Value], loc: Option<Loc>) -> Result<Value, IrError> {
        let results = self.add_op(op, operands, loc)?;
        results
            .into_iter()
            .next()
            .ok_or_else(|| IrError::new("op has no result"))
    }

    /// Adds an op with declared result types (used by the text parser; `verify` checks them).
    pub fn add_op_typed(
        &mut self,
        op: Op,
        operands: &[Value],
        results: Vec<Type>,
        loc: Option<Loc>,
    ) -> Vec<Value> {
        let n = results.len() as u32;
        let id = self.add_node(op, results, loc);
        for (slot, v) in operands.iter().enumerate() {
            self.g.add_edge(
                v.node.0,
                id.0,
                Edge {
                    slot: slot as u32,
                    result: v.result,
                },
            );
        }
        (0..n).map(|result| Value { node: id, result }).collect()
    }

    fn add_node(&mut self, op: Op, results: Vec<Type>, loc: Option<Loc>) -> NodeId {
        NodeId(self.g.add_node(Node {
            op,
            results,
            loc,
            region: None,
            radix: None,
        }))
    }

    pub fn set_outputs(&mut self, outputs: Vec<Output>) {
        self.outputs = outputs;
    }

    pub fn inputs(&self) -> &[NodeId] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[Output] {
        &self.outputs
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.g[id.0]
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.g[id.0]
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.g.contains_node(id.0)
    }

    pub fn value_type(&self, v: Value) -> &Type {
        &self.g[v.node.0].results[v.result as usize]
    }

    pub fn node_count(&self) -> usize {
        self.g.node_count()
    }

    /// All nodes in insertion order.
    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.g.node_indices().map(NodeId)
    }

    /// Parameter nodes in insertion order.
    pub fn params(&self) -> impl Iterator<Item = (NodeId, &Param, &Type)> + '_ {
        self.g.node_indices().filter_map(|i| match &self.g[i].op {
            Op::Param(p) => Some((NodeId(i), p, &self.g[i].results[0])),
            _ => None,
        })
    }

    pub fn find_param(&self, name: &str) -> Option<Value> {
        self.params()
            .find(|(_, p, _)| p.name == name)
            .map(|(id, _, _)| Value::first(id))
    }

    /// Operands of a node, in slot order.
    pub fn operands(&self, id: NodeId) -> Vec<Value> {
        let mut edges: Vec<(u32, Value)> = self
            .g
            .edges_directed(id.0, Direction::Incoming)
            .map(|e| {
                (
                    e.weight().slot,
                    Value {
                        node: NodeId(e.source()),
                        result: e.weight().result,
                    },
                )
            })
            .collect();
        edges.sort_by_key(|(slot, _)| *slot);
        edges.into_iter().map(|(_, v)| v).collect()
    }

    /// Nodes that read any result of `id` (each once).
    pub fn users(&self, id: NodeId) -> Vec<NodeId> {
        let mut users: Vec<NodeId> = self
            .g
            .neighbors_directed(id.0, Direction::Outgoing)
            .map(NodeId)
            .collect();
        users.sort();
        users.dedup();
        users
    }

    /// A fresh fused region (no members until [`Graph::set_region`] puts nodes in it).
    pub fn new_region(&mut self) -> RegionId {
        let r = RegionId(self.next_region);
        self.next_region = self.next_region.saturating_add(1);
        r
    }

    /// Puts a node into a fused region (`None`: takes it out of its region).
    pub fn set_region(&mut self, id: NodeId, region: Option<RegionId>) {
        self.g[id.0].region = region;
    }

    /// Sets (or with `None` removes) a butterfly's stage grouping (see [`Node::radix`]).
    pub fn set_radix(&mut self, id: NodeId, radix: Option<Vec<u32>>) {
        self.g[id.0].radix = radix;
    }

    /// Takes every node out of its region.
    pub fn clear_regions(&mut self) {
        for i in self.g.node_indices().collect::<Vec<_>>() {
            self.g[i].region = None;
        }
    }

    /// Members of every fused region, each list in node-id order.
    pub fn regions(&self) -> BTreeMap<RegionId, Vec<NodeId>> {
        let mut regions: BTreeMap<RegionId, Vec<NodeId>> = BTreeMap::new();
        for i in self.g.node_indices() {
            if let Some(r) = self.g[i].region {
                regions.entry(r).or_default().push(NodeId(i));
            }
        }
        regions
    }

    /// The schedule: a topological order that prefers lower node ids (so a graph built in
    /// order prints in order) and runs each fused region as one contiguous block, placed
    /// where its lowest node id would put it. Sources come first. Returns `None` on a cycle,
    /// or when regions cannot be contiguous (see [`Graph::region_cycles`]).
    ///
    /// A graph whose node ids already follow such an order (one parsed from text) gets
    /// exactly that order back, which is what makes the text form round-trip.
    pub fn topo_order(&self) -> Option<Vec<NodeId>> {
        let units = self.units();
        let mut indeg = vec![0usize; units.members.len()];
        for e in self.g.edge_references() {
            let (from, to) = (units.of(e.source()), units.of(e.target()));
            if from != to {
                indeg[to] += 1;
            }
        }
        let key = |u: usize| std::cmp::Reverse((units.members[u][0], u));
        let mut ready: BinaryHeap<_> = (0..indeg.len())
            .filter(|&u| indeg[u] == 0)
            .map(key)
            .collect();
        let mut order = Vec::with_capacity(self.g.node_count());
        while let Some(std::cmp::Reverse((_, u))) = ready.pop() {
            let members = &units.members[u];
            // Inside the unit: the same id-preferring topological order.
            let mut inner: HashMap<NodeIndex, usize> = members
                .iter()
                .map(|&i| {
                    let d = self
                        .g
                        .edges_directed(i, Direction::Incoming)
                        .filter(|e| units.of(e.source()) == u)
                        .count();
                    (i, d)
                })
                .collect();
            let mut inner_ready: BinaryHeap<std::cmp::Reverse<NodeIndex>> = inner
                .iter()
                .filter(|(_, d)| **d == 0)
                .map(|(i, _)| std::cmp::Reverse(*i))
                .collect();
            while let Some(std::cmp::Reverse(i)) = inner_ready.pop() {
                order.push(NodeId(i));
                for e in self.g.edges_directed(i, Direction::Outgoing) {
                    let t = units.of(e.target());
                    let d = if t == u {
                        inner.get_mut(&e.target())?
                    } else {
                        indeg.get_mut(t)?
                    };
                    *d -= 1;
                    if *d == 0 {
                        if t == u {
                            inner_ready.push(std::cmp::Reverse(e.target()));
                        } else {
                            ready.push(key(t));
                        }
                    }
                }
            }
        }
        (order.len() == self.g.node_count()).then_some(order)
    }

    /// A topological order that ignores fused regions (lower ids first); `None` only on a
    /// true cycle of the dataflow.
    pub fn dataflow_order(&self) -> Option<Vec<NodeId>> {
        let mut indeg: HashMap<NodeIndex, usize> = HashMap::new();
        for i in self.g.node_indices() {
            indeg.insert(i, self.g.edges_directed(i, Direction::Incoming).count());
        }
        let mut ready: BinaryHeap<std::cmp::Reverse<NodeIndex>> = indeg
            .iter()
            .filter(|(_, d)| **d == 0)
            .map(|(i, _)| std::cmp::Reverse(*i))
            .collect();
        let mut order = Vec::with_capacity(indeg.len());
        while let Some(std::cmp::Reverse(i)) = ready.pop() {
            order.push(NodeId(i));
            for e in self.g.edges_directed(i, Direction::Outgoing) {
                let d = indeg.get_mut(&e.target())?;
                *d -= 1;
                if *d == 0 {
                    ready.push(std::cmp::Reverse(e.target()));
                }
            }
        }
        (order.len() == indeg.len()).then_some(order)
    }

    /// Why [`Graph::topo_order`] fails on an acyclic graph: each returned group is a set of
    /// regions, plus the ordinary nodes between them, that depend on each other in a cycle
    /// (e.g. a value leaves a region and flows back into it through `nodes`). Empty when
    /// every region can run as one contiguous block.
    pub fn region_cycles(&self) -> Vec<RegionCycle> {
        let units = self.units();
        let mut cond: DiGraph<usize, ()> = DiGraph::new();
        let ids: Vec<_> = (0..units.members.len()).map(|u| cond.add_node(u)).collect();
        for e in self.g.edge_references() {
            let (from, to) = (units.of(e.source()), units.of(e.target()));
            if from != to {
                cond.update_edge(ids[from], ids[to], ());
            }
        }
        let mut cycles: Vec<RegionCycle> = petgraph::algo::tarjan_scc(&cond)
            .into_iter()
            .filter(|scc| scc.len() > 1)
            .map(|scc| {
                let mut cycle = RegionCycle::default();
                for c in scc {
                    let members = &units.members[cond[c]];
                    match self.g[members[0]].region {
                        Some(r) => cycle.regions.push(r),
                        None => cycle.nodes.extend(members.iter().map(|&i| NodeId(i))),
                    }
                }
                cycle.regions.sort();
                cycle.nodes.sort();
                cycle
            })
            .collect();
        cycles.sort_by(|a, b| a.regions.cmp(&b.regions));
        cycles
    }

    /// Scheduling units: one per fused region (all its members, in id order) and one per node
    /// outside any region.
    fn units(&self) -> Units {
        let mut units = Units {
            members: Vec::new(),
            of: vec![usize::MAX; self.g.node_bound()],
        };
        let mut by_region: HashMap<RegionId, usize> = HashMap::new();
        for i in self.g.node_indices() {
            let u = match self.g[i].region {
                Some(r) => *by_region.entry(r).or_insert_with(|| {
                    units.members.push(Vec::new());
                    units.members.len() - 1
                }),
                None => {
                    units.members.push(Vec::new());
                    units.members.len() - 1
                }
            };
            units.members[u].push(i);
            units.of[i.index()] = u;
        }
        units
    }

    /// Redirects every use of `old` (operands and graph outputs) to `new`.
    pub fn replace_uses(&mut self, old: Value, new: Value) {
        let edges: Vec<_> = self
            .g
            .edges_directed(old.node.0, Direction::Outgoing)
            .filter(|e| e.weight().result == old.result)
            .map(|e| (e.id(), e.target(), *e.weight()))
            .collect();
        for (eid, target, w) in edges {
            self.g.remove_edge(eid);
            self.g.add_edge(
                new.node.0,
                target,
                Edge {
                    slot: w.slot,
                    result: new.result,
                },
            );
        }
        for o in &mut self.outputs {
            if o.value == old {
                o.value = new;
            }
        }
    }

    /// Removes a node and its edges. Callers make sure nothing uses it any more.
    pub fn remove_node(&mut self, id: NodeId) {
        self.g.remove_node(id.0);
        self.inputs.retain(|i| *i != id);
    }

    /// Read access to the underlying petgraph for analyses (dominators, dot, …).
    pub fn petgraph(&self) -> &StableDiGraph<Node, Edge> {
        &self.g
    }

    /// Number of times each parameter name occurs (for duplicate detection).
    pub fn param_name_counts(&self) -> BTreeMap<&str, usize> {
        let mut counts = BTreeMap::new();
        for (_, p, _) in self.params() {
            *counts.entry(p.name.as_str()).or_insert(0) += 1;
        }
        counts
    }
}

/// Fused regions that cannot each run as one block, and the nodes outside them that close the
/// cycle (see [`Graph::region_cycles`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegionCycle {
    pub regions: Vec<RegionId>,
    pub nodes: Vec<NodeId>,
}

struct Units {
    /// Members of each unit in id order (never empty).
    members: Vec<Vec<NodeIndex>>,
    /// The unit of each node, by node index (`usize::MAX` for vacant indices).
    of: Vec<usize>,
}

impl Units {
    fn of(&self, i: NodeIndex) -> usize {
        self.of.get(i.index()).copied().unwrap_or(usize::MAX)
    }
}
