//! f16 weights stay f16 (DESIGN §5), and load-only intermediates leave the state region.
//!
//! The quantize pass records f16 *storage* as `w16 = cast w {to = f16}` then
//! `w32 = cast w16 {to = f32}` feeding the consumer. In inference both casts are weight-time,
//! so lowering them literally would keep an f32 copy of every f16 weight in state and hand
//! the kernels f32 data. Instead, a widening cast whose every reader takes it as a weight
//! operand of a butterfly (twiddles), matmul (weight) or monarch (blocks) is *elided*: its
//! result aliases the f16 buffer, and those consumers see an f16 operand, so their body
//! param for it is `F16` (packed twiddles become f16 state too). Kernel IR loads of an f16
//! param widen exactly f16 → f32, so the consumers compute with the very f32 values the cast
//! would have produced: results are bit-identical.
//!
//! Separately, a state buffer that only load-phase kernels touch (the f16 twiddles a pack
//! reads, a Givens product before its cast, an int8 weight before its dequantization) is
//! dead once the load phase ends: it becomes a temp, so the memory plan overlaps it with
//! the step's scratch in the arena instead of keeping it for the program's lifetime.

use bfly_ir::kernel::{Access, BufferKind, KernelProgram, Phase};
use bfly_ir::{DType, Graph, NodeId, Op, Value};
use std::collections::{HashMap, HashSet};

/// Can `op` read operand `index` with a widening load, i.e. is it a weight its kernel only
/// loads (never stores, never hands to another kernel as f32)?
fn reads_as_weight(op: &Op, index: usize) -> bool {
    match op {
        Op::Butterfly { .. } | Op::Matmul => index == 1,
        Op::Monarch { .. } => index == 1 || index == 2,
        _ => false,
    }
}

/// The weight-time `cast f16 → f32` nodes to elide (see the module doc).
pub(super) fn elided_casts(
    g: &Graph,
    order: &[NodeId],
    wt: &HashSet<NodeId>,
    readers: &HashMap<Value, Vec<NodeId>>,
    outputs: &HashSet<Value>,
) -> HashSet<NodeId> {
    let mut elided = HashSet::new();
    for &id in order {
        let node = g.node(id);
        let v = Value::first(id);
        let operands = g.operands(id);
        let widens = matches!(node.op, Op::Cast { to: DType::F32 })
            && node.results.len() == 1
            && matches!(operands[..], [src] if g.node(src.node).results
                .get(src.result as usize)
                .is_some_and(|t| t.dtype == DType::F16 && t.dims == node.results[0].dims));
        if !widens || !wt.contains(&id) || outputs.contains(&v) {
            continue;
        }
        let Some(users) = readers.get(&v) else {
            continue;
        };
        let weight_only = users.iter().all(|&r| {
            g.operands(r)
                .iter()
                .enumerate()
                .all(|(i, &o)| o != v || reads_as_weight(&g.node(r).op, i))
        });
        if weight_only {
            elided.insert(id);
        }
    }
    elided
}

/// Turns every state buffer that only load-phase kernels use into a temp (see the module
/// doc). Named states (packed twiddles, rope tables, KV caches) are read by step kernels,
/// so they stay.
pub(super) fn demote_load_only_state(program: &mut KernelProgram) {
    let mut load_written: HashSet<u32> = HashSet::new();
    let mut step_used: HashSet<u32> = HashSet::new();
    for k in &program.kernels {
        let Some(body) = program.bodies.get(k.body.0 as usize) else {
            continue;
        };
        for (p, b) in body.params.iter().zip(&k.args) {
            match k.phase {
                Phase::Step => {
                    step_used.insert(b.0);
                }
                Phase::Load if p.access != Access::Read => {
                    load_written.insert(b.0);
                }
                Phase::Load => {}
            }
        }
    }
    for b in &mut program.buffers {
        if b.kind == BufferKind::State
            && load_written.contains(&b.id.0)
            && !step_used.contains(&b.id.0)
        {
            b.kind = BufferKind::Temp;
        }
    }
}
