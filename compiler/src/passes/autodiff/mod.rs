//! The `autodiff` pass: reverse-mode differentiation of `%loss` with respect to every
//! trainable parameter.
//!
//! - The seed `d loss = fill {value = 1.0, dtype = f32, dims = []}`.
//! - Nodes are visited in reverse schedule order, so every user of a value has contributed its
//!   gradient before the value's producer is differentiated.
//! - Each active forward node (see [`activity`]) gets one `OP.grad` node: the forward operands,
//!   then one upstream gradient per forward result; a result with no gradient flowing (an
//!   unused `split` output) gets `fill 0.0` of its type. Its results are the gradients of the
//!   float operands in order; only those of active operands are used.
//! - Fan-out is accumulated with `add` as contributions arrive.
//! - Each trainable param's gradient becomes the output `%grad_NAME`, appended after the
//!   existing outputs in param order (a trainable param the loss does not depend on gets a
//!   zero gradient, so the optimizer still sees every trainable param).
//!
//! Gradient nodes carry the `loc` of their forward node, so a backward op points at the spec
//! line of the layer it differentiates.

mod activity;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};

use bfly_grammar::Diagnostic;
use bfly_ir::{DType, Graph, Loc, Op, Output, Type, Value};

use super::grad_names::grad_output_name;
use super::loss::LOSS_OUTPUT;
use super::{Pass, PassContext};
use activity::{active_nodes, first_non_differentiable};

pub struct Autodiff;

impl Pass for Autodiff {
    fn name(&self) -> &'static str {
        "autodiff"
    }

    fn description(&self) -> &'static str {
        "reverse mode: OP.grad nodes from %loss back to every trainable param, as %grad_NAME outputs"
    }

    fn run(&self, g: &mut Graph, cx: &PassContext<'_>) -> Result<(), Vec<Diagnostic>> {
        let err = |m: String| vec![cx.error(self.name(), m)];
        let bug = |m: String| vec![cx.bug(self.name(), m)];
        let Some(loss) = g
            .outputs()
            .iter()
            .find(|o| !o.param && o.name == LOSS_OUTPUT)
            .map(|o| o.value)
        else {
            return Err(err(format!(
                "the graph has no `%{LOSS_OUTPUT}` output (the `loss` pass adds it)"
            )));
        };
        let scalar = Type::scalar(DType::F32);
        if *g.value_type(loss) != scalar {
            return Err(err(format!(
                "`%{LOSS_OUTPUT}` must be {scalar}, found {}",
                g.value_type(loss)
            )));
        }
        check_grad_names(g).map_err(err)?;
        let order = g
            .topo_order()
            .ok_or_else(|| bug("the graph has a cycle".into()))?;
        let active = active_nodes(g, &order, loss);
        if let Some(id) = first_non_differentiable(g, &order, &active) {
            return Err(err(format!(
                "`{}` has no gradient, but it lies between a trainable param and the loss",
                g.node(id).op.name()
            )));
        }
        let mut b = Backward {
            grads: HashMap::new(),
            active: &active,
        };
        let seed = fill(g, 1.0, &scalar, None).map_err(bug)?;
        b.grads.insert(loss, seed);
        for &id in order.iter().rev() {
            if active.contains(&id) && !g.node(id).op.is_source() {
                b.differentiate(g, id).map_err(bug)?;
            }
        }
        let mut outputs = g.outputs().to_vec();
        let params: Vec<(Value, String, Type)> = g
            .params()
            .filter(|(_, p, _)| p.trainable)
            .map(|(id, p, ty)| (Value::first(id), p.name.clone(), ty.clone()))
            .collect();
        for (value, name, ty) in params {
            let grad = match b.grads.get(&value) {
                Some(&d) => d,
                None => fill(g, 0.0, &ty, None).map_err(bug)?,
            };
            outputs.push(Output::value(grad_output_name(&name), grad));
        }
        g.set_outputs(outputs);
        Ok(())
    }
}

/// Rejects graphs where two trainable params would share a gradient output name, or where an
/// output already uses one.
fn check_grad_names(g: &Graph) -> Result<(), String> {
    let mut seen: HashMap<String, &str> = HashMap::new();
    for (_, p, _) in g.params().filter(|(_, p, _)| p.trainable) {
        let name = grad_output_name(&p.name);
        if let Some(other) = seen.insert(name.clone(), &p.name) {
            return Err(format!(
                "params @{other} and @{} would both have the gradient output `%{name}`; rename one",
                p.name
            ));
        }
    }
    match g.outputs().iter().find(|o| seen.contains_key(&o.name)) {
        Some(o) => Err(format!(
            "the output `%{}` already exists; it would clash with a gradient output",
            o.name
        )),
        None => Ok(()),
    }
}

/// `fill value` of type `ty`.
fn fill(g: &mut Graph, value: f64, ty: &Type, loc: Option<Loc>) -> Result<Value, String> {
    let op = Op::Fill {
        value,
        dtype: ty.dtype,
        dims: ty.dims.clone(),
    };
    g.add1(op, &[], loc).map_err(|e| e.to_string())
}

struct Backward<'a> {
    /// The gradient accumulated so far for each value.
    grads: HashMap<Value, Value>,
    active: &'a HashSet<bfly_ir::NodeId>,
}

impl Backward<'_> {
    /// Emits the `OP.grad` of forward node `id` and hands each active operand its gradient.
    fn differentiate(&mut self, g: &mut Graph, id: bfly_ir::NodeId) -> Result<(), String> {
        let (op, results, loc) = {
            let n = g.node(id);
            (n.op.clone(), n.results.clone(), n.loc)
        };
        let upstream: Vec<Option<Value>> = (0..results.len() as u32)
            .map(|result| self.grads.get(&Value { node: id, result }).copied())
            .collect();
        if upstream.iter().all(Option::is_none) {
            // Active but reached only through values nothing differentiates: no gradient.
            return Ok(());
        }
        let operands = g.operands(id);
        let mut args = operands.clone();
        for (d, ty) in upstream.into_iter().zip(&results) {
            args.push(match d {
                Some(d) => d,
                None => fill(g, 0.0, ty, loc)?,
            });
        }
        let name = op.name();
        let grads = g
            .add_op(Op::Grad(Box::new(op)), &args, loc)
            .map_err(|e| format!("differentiating `{name}`: {e}"))?;
        let float_operands: Vec<Value> = operands
            .into_iter()
            .filter(|v| g.value_type(*v).dtype.is_float())
            .collect();
        for (v, d) in float_operands.into_iter().zip(grads) {
            if self.active.contains(&v.node) {
                self.accumulate(g, v, d, loc)?;
            }
        }
        Ok(())
    }

    /// Adds `d` to the gradient of `v` (fan-out: one contribution per use).
    fn accumulate(
        &mut self,
        g: &mut Graph,
        v: Value,
        d: Value,
        loc: Option<Loc>,
    ) -> Result<(), String> {
        let total = match self.grads.get(&v) {
            Some(&prev) => g
                .add1(Op::Add, &[prev, d], loc)
                .map_err(|e| format!("accumulating a gradient: {e}"))?,
            None => d,
        };
        self.grads.insert(v, total);
        Ok(())
    }
}
