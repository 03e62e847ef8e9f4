//! The lowering driver: a whole optimized graph → one Kernel IR program.
//!
//! It walks the schedule (`Graph::topo_order`, regions as contiguous blocks) and
//! - makes buffers: graph inputs → `Input`, outputs → `Output`, params → `Param`, other
//!   values → `Temp`; a `reshape` result aliases its operand's buffer (row-major bytes are
//!   identical), so it costs no kernel;
//! - in inference, makes weight-time values (see `weight_time`) `State` buffers, computed by
//!   `Load`-phase kernels that run once: a kernel is load-phase when it reads only params and
//!   load-phase results, writes only state (or its own scratch) and uses no runtime symbol.
//!   That also moves lowering-internal work such as twiddle packing and rope tables to load;
//! - lowers every fused region to one kernel: a producer with an elementwise tail folds the
//!   tail into its store (`region`), any other region concatenates its members' sections;
//! - writes optimizer updates (`sgd`, `adamw`) in place into their param (and moment)
//!   buffers and schedules them after every other kernel, which is valid because nothing
//!   reads their results;
//! - names kernels `k{index}` plus a site hint, records the printed value names each kernel
//!   computes, and interns identical bodies.

mod bind;
mod buffers;
mod fused;
mod widen;

use super::layout::copy_kernel;
use super::site::{LowerError, LowerMode, OpLowering};
use super::weight_time::{site_hint, weight_time};
use bfly_ir::kernel::{
    Body, Buffer, BufferId, BufferKind, Kernel, KernelKind, KernelProgram, Phase,
};
use bfly_ir::print::ValueNames;
use bfly_ir::{Graph, NodeId, Type, Value};
use std::collections::{HashMap, HashSet};

type R<T> = Result<T, LowerError>;

/// Lowers an optimized graph for `mode`.
pub fn lower_graph(g: &Graph, mode: LowerMode) -> R<KernelProgram> {
    let order = g.topo_order().ok_or_else(|| {
        LowerError::new("the graph has a cycle, or a fused region that cannot run as one block")
    })?;
    let mut d = Driver::new(g, mode, order);
    d.sources()?;
    d.outputs()?;
    d.walk()?;
    d.finish()
}

/// A kernel bound to buffers, before it is named and its body interned.
struct Bound {
    kind: KernelKind,
    body: Body,
    args: Vec<BufferId>,
    phase: Phase,
    computes: Vec<String>,
    /// The node it came from (for the name), and whether it is that node's main kernel.
    node: NodeId,
    main: bool,
}

/// Where a finished kernel goes in the schedule.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    Body,
    /// Output copies: after every computation, before the optimizers.
    Copy,
    /// In-place optimizer updates: last.
    Optimizer,
}

struct Driver<'g> {
    g: &'g Graph,
    mode: LowerMode,
    order: Vec<NodeId>,
    names: ValueNames,
    /// Weight-time nodes (by the rule, in either mode: hints use it; state only in inference).
    wt: HashSet<NodeId>,
    /// Weight-time `cast f16 → f32` nodes not lowered (inference): their result aliases the
    /// f16 operand's buffer and their readers see an f16 operand (see `widen`).
    elided: HashSet<NodeId>,
    /// Nodes reading each value, and the values that are graph outputs.
    readers: HashMap<Value, Vec<NodeId>>,
    output_values: HashSet<Value>,
    buffers: Vec<Buffer>,
    value_buf: HashMap<Value, BufferId>,
    states: HashMap<String, BufferId>,
    /// Buffers a load-phase kernel may read.
    load_ready: HashSet<BufferId>,
    /// Optimizer nodes whose results live in their param buffers.
    in_place: HashSet<NodeId>,
    /// `(source value, target buffer, assign)`: copies made after everything else (outputs that
    /// need their own buffer; `assign` for param updates not written in place).
    copies: Vec<(Value, BufferId, bool)>,
    kernels: Vec<(Slot, Bound)>,
}

impl<'g> Driver<'g> {
    fn new(g: &'g Graph, mode: LowerMode, order: Vec<NodeId>) -> Driver<'g> {
        let names = ValueNames::new(g, &order);
        let wt = weight_time(g, &order);
        let mut readers: HashMap<Value, Vec<NodeId>> = HashMap::new();
        for &id in &order {
            for v in g.operands(id) {
                let r = readers.entry(v).or_default();
                if !r.contains(&id) {
                    r.push(id);
                }
            }
        }
        let output_values = g.outputs().iter().map(|o| o.value).collect();
        let elided = match mode {
            LowerMode::Inference { .. } => {
                widen::elided_casts(g, &order, &wt, &readers, &output_values)
            }
            LowerMode::Training => HashSet::new(),
        };
        Driver {
            g,
            mode,
            order,
            names,
            wt,
            elided,
            readers,
            output_values,
            buffers: Vec::new(),
            value_buf: HashMap::new(),
            states: HashMap::new(),
            load_ready: HashSet::new(),
            in_place: HashSet::new(),
            copies: Vec::new(),
            kernels: Vec::new(),
        }
    }

    fn inference(&self) -> bool {
        matches!(self.mode, LowerMode::Inference { .. })
    }

    fn add_buffer(&mut self, name: String, ty: &Type, kind: BufferKind) -> BufferId {
        let id = BufferId(self.buffers.len() as u32);
        self.buffers.push(Buffer {
            id,
            name,
            dtype: ty.dtype,
            dims: ty.dims.clone(),
            kind,
        });
        id
    }

    fn walk(&mut self) -> R<()> {
        let order = self.order.clone();
        let mut i = 0;
        while i < order.len() {
            let id = order[i];
            match self.g.node(id).region {
                Some(r) => {
                    let j = order[i..]
                        .iter()
                        .position(|&n| self.g.node(n).region != Some(r))
                        .map_or(order.len(), |k| i + k);
                    self.region(&order[i..j])?;
                    i = j;
                }
                None => {
                    let bound = self.node(id)?;
                    self.push_all(bound);
                    i += 1;
                }
            }
        }
        Ok(())
    }

    fn push_all(&mut self, bound: Vec<Bound>) {
        for b in bound {
            let slot = if self.in_place.contains(&b.node) {
                Slot::Optimizer
            } else {
                Slot::Body
            };
            self.kernels.push((slot, b));
        }
    }

    /// Output copies and param assignments, then the program: load kernels, step kernels,
    /// copies, optimizers; bodies interned.
    fn finish(mut self) -> R<KernelProgram> {
        for (v, target, assign) in std::mem::take(&mut self.copies) {
            let src = self.buf_of(v)?;
            let ty = self.ty(v)?;
            let kind = if assign {
                KernelKind::Optimizer {
                    rule: "assign".into(),
                }
            } else {
                KernelKind::Layout { op: "copy".into() }
            };
            let k = copy_kernel(&ty, kind)?;
            let lowering = OpLowering {
                kernels: vec![k],
                scratch: Vec::new(),
            };
            let name = self.names.get(v).to_string();
            let bound = self.bind(
                v.node,
                &name,
                lowering,
                &[src],
                &[target],
                vec![name.clone()],
            )?;
            let slot = if assign { Slot::Optimizer } else { Slot::Copy };
            for mut b in bound {
                b.phase = Phase::Step;
                self.kernels.push((slot, b));
            }
        }
        let mut kernels = std::mem::take(&mut self.kernels);
        // Stable: load kernels first, then by slot; program order within each group.
        kernels.sort_by_key(|(slot, b)| (b.phase == Phase::Step, *slot));
        let mut program = KernelProgram {
            name: self.g.name.clone(),
            bounds: self.g.bounds.clone(),
            buffers: std::mem::take(&mut self.buffers),
            bodies: Vec::new(),
            kernels: Vec::with_capacity(kernels.len()),
        };
        for (i, (_, b)) in kernels.into_iter().enumerate() {
            let body = program.intern_body(b.body);
            program.kernels.push(Kernel {
                name: format!("k{i}{}", site_hint(self.g, b.node, &self.wt)),
                kind: b.kind,
                body,
                args: b.args,
                phase: b.phase,
                computes: b.computes,
            });
        }
        widen::demote_load_only_state(&mut program);
        Ok(program)
    }
}
