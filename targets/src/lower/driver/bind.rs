//! Lowering one node and binding its kernels to buffers, with each kernel's phase.

use super::{Bound, Driver, R};
use crate::lower::emit::uses_syms;
use crate::lower::merge::merge;
use crate::lower::ops::lower_op;
use crate::lower::site::{ArgRef, LowerError, OpLowering};
use bfly_ir::kernel::{Access, Body, BufferId, BufferKind, Phase};
use bfly_ir::{NodeId, Op, Type, Value};
use std::collections::HashSet;

impl<'g> Driver<'g> {
    /// Lowers one node outside a region (or a region member lowered as it is). A reshape, or
    /// an elided widening cast (see `widen`), costs no kernel: its result is its operand's
    /// buffer.
    pub(super) fn node(&mut self, id: NodeId) -> R<Vec<Bound>> {
        let g = self.g;
        let node = g.node(id);
        if node.op.is_source() {
            return Ok(Vec::new());
        }
        let result = Value::first(id);
        let aliases = matches!(node.op, Op::Reshape { .. }) || self.elided.contains(&id);
        if aliases && !self.value_buf.contains_key(&result) {
            let operand = g.operands(id).first().copied().ok_or_else(|| {
                LowerError::new(format!(
                    "{} = {} has no operand",
                    self.names.get(result),
                    node.op.name()
                ))
            })?;
            let b = self.buf_of(operand)?;
            self.value_buf.insert(result, b);
            return Ok(Vec::new());
        }
        let site = self.site(id)?;
        let lowering = lower_op(&site)?;
        let ops = g
            .operands(id)
            .iter()
            .map(|&v| self.buf_of(v))
            .collect::<R<Vec<_>>>()?;
        let res: Vec<BufferId> = (0..node.results.len() as u32)
            .map(|result| self.result_buf(Value { node: id, result }))
            .collect();
        let computes = (0..node.results.len() as u32)
            .map(|result| self.names.get(Value { node: id, result }).to_string())
            .collect();
        self.bind(id, &site.name, lowering, &ops, &res, computes)
    }

    /// Binds a lowering's kernels to buffers and decides each kernel's phase.
    pub(super) fn bind(
        &mut self,
        id: NodeId,
        site_name: &str,
        lowering: OpLowering,
        ops: &[BufferId],
        res: &[BufferId],
        computes: Vec<String>,
    ) -> R<Vec<Bound>> {
        let fail = |m: String| LowerError::new(format!("{site_name}: {m}"));
        let mut scratch: Vec<Option<BufferId>> = vec![None; lowering.scratch.len()];
        let count = lowering.kernels.len();
        let mut out = Vec::with_capacity(count);
        for (ki, k) in lowering.kernels.into_iter().enumerate() {
            if k.args.len() != k.body.params.len() {
                return Err(fail(format!(
                    "a kernel binds {} args to {} params",
                    k.args.len(),
                    k.body.params.len()
                )));
            }
            let mut args = Vec::with_capacity(k.args.len());
            for a in &k.args {
                let b = match a {
                    ArgRef::Operand(i) => ops.get(*i).copied(),
                    ArgRef::Result(i) => res.get(*i).copied(),
                    ArgRef::Scratch(i) => match (scratch.get(*i), lowering.scratch.get(*i)) {
                        (Some(Some(b)), _) => Some(*b),
                        (Some(None), Some((dtype, dims))) => {
                            let ty = Type::new(*dtype, dims.iter().cloned());
                            let b = self.add_buffer(
                                format!("{site_name}.scratch{i}"),
                                &ty,
                                BufferKind::Temp,
                            );
                            scratch[*i] = Some(b);
                            Some(b)
                        }
                        _ => None,
                    },
                    ArgRef::State { role, dtype, dims } => {
                        Some(self.state(format!("{site_name}.{role}"), *dtype, dims)?)
                    }
                };
                args.push(b.ok_or_else(|| fail(format!("kernel arg {a:?} is out of range")))?);
            }
            for (p, b) in k.body.params.iter().zip(&args) {
                let buf = &self.buffers[b.0 as usize];
                if buf.dtype != p.dtype {
                    return Err(fail(format!(
                        "param `{}: {}` is bound to `{}` of dtype {}",
                        p.name, p.dtype, buf.name, buf.dtype
                    )));
                }
            }
            let (body, args) = merge(&[(&k.body, &args)]);
            let own: HashSet<BufferId> = scratch.iter().flatten().copied().collect();
            let phase = self.phase(&body, &args, &own);
            let main = ki + 1 == count;
            let computes = if main {
                computes.clone()
            } else {
                // An auxiliary kernel (a packing, a table, a cache append): what it writes.
                body.params
                    .iter()
                    .zip(&args)
                    .filter(|(p, _)| p.access != Access::Read)
                    .map(|(_, b)| self.buffers[b.0 as usize].name.clone())
                    .collect()
            };
            out.push(Bound {
                kind: k.kind,
                body,
                args,
                phase,
                computes,
                node: id,
                main,
            });
        }
        Ok(out)
    }

    /// Load phase (inference only): reads only load-ready buffers, writes only state or its
    /// lowering's own scratch, and needs no runtime symbol. Its state results become
    /// load-ready.
    pub(super) fn phase(
        &mut self,
        body: &Body,
        args: &[BufferId],
        own: &HashSet<BufferId>,
    ) -> Phase {
        if !self.inference() || uses_syms(body) {
            return Phase::Step;
        }
        let ok = body.params.iter().zip(args).all(|(p, b)| {
            let kind = &self.buffers[b.0 as usize].kind;
            let reads_ok =
                p.access == Access::Write || self.load_ready.contains(b) || own.contains(b);
            let writes_ok =
                p.access == Access::Read || matches!(kind, BufferKind::State) || own.contains(b);
            reads_ok && writes_ok
        });
        if !ok {
            return Phase::Step;
        }
        for (p, b) in body.params.iter().zip(args) {
            if p.access != Access::Read {
                self.load_ready.insert(*b);
            }
        }
        Phase::Load
    }
}
