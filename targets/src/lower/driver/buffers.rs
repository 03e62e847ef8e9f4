//! Buffers of graph values: inputs, params, outputs (and in-place optimizer results),
//! results made on first use, named state.

use super::{Driver, R};
use crate::lower::site::{LowerError, OpSite};
use bfly_ir::kernel::{BufferId, BufferKind};
use bfly_ir::{DType, Dim, NodeId, Op, Type, Value};

impl<'g> Driver<'g> {
    pub(super) fn sources(&mut self) -> R<()> {
        for (index, &id) in self.g.inputs().iter().enumerate() {
            let v = Value::first(id);
            let ty = self.ty(v)?;
            let b = self.add_buffer(self.names.get(v).into(), &ty, BufferKind::Input { index });
            self.value_buf.insert(v, b);
        }
        for (id, p, ty) in self.g.params() {
            let b = self.add_buffer(
                p.name.clone(),
                ty,
                BufferKind::Param {
                    name: p.name.clone(),
                },
            );
            self.value_buf.insert(Value::first(id), b);
            self.load_ready.insert(b);
        }
        Ok(())
    }

    /// Output buffers, and in-place optimizer results.
    pub(super) fn outputs(&mut self) -> R<()> {
        for (index, o) in self.g.outputs().iter().enumerate() {
            if !self.g.contains(o.value.node) {
                return Err(LowerError::new(format!(
                    "output {} is not a node",
                    o.sigil_name()
                )));
            }
            let ty = self.ty(o.value)?;
            if o.param {
                let target = self
                    .g
                    .find_param(&o.name)
                    .and_then(|p| self.value_buf.get(&p).copied())
                    .ok_or_else(|| {
                        LowerError::new(format!("output @{} updates no param", o.name))
                    })?;
                if self.buffers[target.0 as usize].dtype != ty.dtype {
                    return Err(LowerError::new(format!(
                        "output @{} does not match its param's type",
                        o.name
                    )));
                }
                if self.updates_in_place(o.value, &o.name) && !self.value_buf.contains_key(&o.value)
                {
                    self.value_buf.insert(o.value, target);
                    self.in_place.insert(o.value.node);
                } else {
                    self.copies.push((o.value, target, true));
                }
                continue;
            }
            let b = self.add_buffer(format!("%{}", o.name), &ty, BufferKind::Output { index });
            let node = self.g.node(o.value.node);
            if node.op.is_source() || self.value_buf.contains_key(&o.value) {
                self.copies.push((o.value, b, false));
            } else {
                self.value_buf.insert(o.value, b);
            }
        }
        Ok(())
    }

    /// Can result `v` of an optimizer be written straight into param `name`? Only when the
    /// optimizer reads that same param at the matching slot (`p → p'`, `m → m'`, `v → v'`)
    /// and nothing reads its results (so running it last is valid).
    pub(super) fn updates_in_place(&self, v: Value, name: &str) -> bool {
        let slot = match (&self.g.node(v.node).op, v.result) {
            (Op::Sgd { .. }, 0) | (Op::AdamW { .. }, 0) => 0,
            (Op::AdamW { .. }, 1) => 2,
            (Op::AdamW { .. }, 2) => 3,
            _ => return false,
        };
        let results = self.g.node(v.node).results.len() as u32;
        let unread = (0..results).all(|r| {
            !self.readers.contains_key(&Value {
                node: v.node,
                result: r,
            })
        });
        let operand = self.g.operands(v.node).get(slot).copied();
        unread
            && operand
                .is_some_and(|o| matches!(&self.g.node(o.node).op, Op::Param(p) if p.name == name))
    }

    /// The type of `v`, or an error for an edge naming a result its node does not have (an
    /// unverified graph).
    pub(super) fn ty(&self, v: Value) -> R<Type> {
        let node = self.g.node(v.node);
        node.results.get(v.result as usize).cloned().ok_or_else(|| {
            LowerError::new(format!(
                "{} = {} has no result {}",
                self.names.get(Value::first(v.node)),
                node.op.name(),
                v.result
            ))
        })
    }

    /// The type a reader sees for operand `v`: its own, except that the result of an elided
    /// widening cast is its f16 operand (the buffer it aliases).
    pub(super) fn operand_ty(&self, v: Value) -> R<Type> {
        if self.elided.contains(&v.node)
            && let Some(&src) = self.g.operands(v.node).first()
        {
            return self.ty(src);
        }
        self.ty(v)
    }

    pub(super) fn site(&self, id: NodeId) -> R<OpSite<'g>> {
        let node = self.g.node(id);
        Ok(OpSite {
            op: &node.op,
            operands: self
                .g
                .operands(id)
                .iter()
                .map(|v| self.operand_ty(*v))
                .collect::<R<Vec<_>>>()?,
            results: node.results.clone(),
            mode: self.mode,
            name: self.names.get(Value::first(id)).to_string(),
            radix: node.radix.clone().unwrap_or_default(),
        })
    }

    pub(super) fn buf_of(&self, v: Value) -> R<BufferId> {
        self.value_buf.get(&v).copied().ok_or_else(|| {
            LowerError::new(format!(
                "{} is used before it is computed",
                self.names.get(v)
            ))
        })
    }

    /// The buffer of a node's result, made on first use: state for a weight-time value in
    /// inference (computed at load), else a temp.
    pub(super) fn result_buf(&mut self, v: Value) -> BufferId {
        if let Some(&b) = self.value_buf.get(&v) {
            return b;
        }
        let kind = if self.inference() && self.wt.contains(&v.node) {
            BufferKind::State
        } else {
            BufferKind::Temp
        };
        let ty = self.g.node(v.node).results[v.result as usize].clone();
        let b = self.add_buffer(self.names.get(v).into(), &ty, kind);
        self.value_buf.insert(v, b);
        b
    }

    pub(super) fn state(&mut self, name: String, dtype: DType, dims: &[Dim]) -> R<BufferId> {
        if let Some(&b) = self.states.get(&name) {
            let buf = &self.buffers[b.0 as usize];
            if buf.dtype != dtype || buf.dims != dims {
                return Err(LowerError::new(format!(
                    "state `{name}` is requested with two different types"
                )));
            }
            return Ok(b);
        }
        let b = self.add_buffer(
            name.clone(),
            &Type::new(dtype, dims.iter().cloned()),
            BufferKind::State,
        );
        self.states.insert(name, b);
        Ok(b)
    }
}
